//! Small builders for workflow definitions, and helpers to run a worker until executions end.

use std::time::Duration;

use serde_json::{Value, json};

use crate::{
    Edge, ExecutionDetail, ExecutionId, NodeDefinition, NodeRegistry, RetryPolicy, Store,
    WorkflowDefinition, WorkflowGraph, WorkflowVersion, WorkflowWorker,
};

/// Builds a workflow definition node by node.
#[derive(Debug, Clone)]
pub struct WorkflowBuilder {
    definition: WorkflowDefinition,
}

/// Starts a workflow named `name` with a trigger node `start`.
pub fn workflow(name: &str) -> WorkflowBuilder {
    WorkflowBuilder {
        definition: WorkflowDefinition {
            name: name.to_owned(),
            description: None,
            retry: None,
            timeout: None,
            priority: None,
            concurrency: None,
            rate_limits: std::collections::BTreeMap::new(),
            nodes: Vec::new(),
            edges: Vec::new(),
        },
    }
    .node("start", "trigger", Value::Null)
}

impl WorkflowBuilder {
    /// Adds a node.
    #[must_use]
    pub fn node(mut self, id: &str, node_type: &str, config: Value) -> Self {
        self.definition.nodes.push(NodeDefinition {
            id: id.to_owned(),
            node_type: node_type.to_owned(),
            config,
            retry: None,
            timeout: None,
            rate_limit: None,
        });
        self
    }

    /// Sets the timeout of the last node added.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        if let Some(node) = self.definition.nodes.last_mut() {
            node.timeout = Some(timeout);
        }
        self
    }

    /// Sets the retry policy of the last node added.
    #[must_use]
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        if let Some(node) = self.definition.nodes.last_mut() {
            node.retry = Some(policy);
        }
        self
    }

    /// Sets the workflow's default priority.
    #[must_use]
    pub fn priority(mut self, priority: i32) -> Self {
        self.definition.priority = Some(priority);
        self
    }

    /// Sets the workflow's concurrency: a limit, per key at `key` if given.
    #[must_use]
    pub fn concurrency(mut self, limit: Option<u32>, key: Option<&str>) -> Self {
        self.definition.concurrency = Some(crate::flow::Concurrency {
            limit,
            key: key.map(str::to_owned),
        });
        self
    }

    /// Defines a rate limit: at most `limit` starts per `period`, per key at `key` if given,
    /// for every node of `node_types`.
    #[must_use]
    pub fn rate_limit(
        mut self,
        name: &str,
        (limit, period): (u32, Duration),
        key: Option<&str>,
        node_types: &[&str],
    ) -> Self {
        self.definition.rate_limits.insert(
            name.to_owned(),
            crate::flow::RateLimit {
                limit,
                period,
                key: key.map(str::to_owned),
                node_types: node_types.iter().map(|t| (*t).to_owned()).collect(),
            },
        );
        self
    }

    /// Puts the last node added under the rate limit `name`.
    #[must_use]
    pub fn under_rate_limit(mut self, name: &str) -> Self {
        if let Some(node) = self.definition.nodes.last_mut() {
            node.rate_limit = Some(name.to_owned());
        }
        self
    }

    /// Sets the execution timeout (deadline from creation) of the workflow.
    #[must_use]
    pub fn execution_timeout(mut self, timeout: Duration) -> Self {
        self.definition.timeout = Some(timeout);
        self
    }

    /// Adds an edge.
    #[must_use]
    pub fn edge(mut self, from: &str, to: &str) -> Self {
        self.definition.edges.push(Edge {
            from: from.to_owned(),
            to: to.to_owned(),
            branch: None,
        });
        self
    }

    /// Adds an edge taken only on `branch`.
    #[must_use]
    pub fn branch_edge(mut self, from: &str, to: &str, branch: &str) -> Self {
        self.definition.edges.push(Edge {
            from: from.to_owned(),
            to: to.to_owned(),
            branch: Some(branch.to_owned()),
        });
        self
    }

    /// The definition.
    pub fn build(self) -> WorkflowDefinition {
        self.definition
    }

    /// Validates against `registry` and saves; panics on failure.
    pub async fn save(self, store: &impl Store, registry: &NodeRegistry) -> WorkflowVersion {
        let graph = WorkflowGraph::validate(self.definition, registry).expect("fixture is valid");
        store.save_workflow(&graph).await.expect("save workflow")
    }
}

/// The seed's hello workflow: trigger -> code printing `Hello from workflow!`.
pub fn hello() -> WorkflowBuilder {
    workflow("hello")
        .node(
            "say_hello",
            "code",
            json!({"language": "python", "code": "print(\"Hello from workflow!\")"}),
        )
        .edge("start", "say_hello")
}

/// trigger -> `a`, `b` (each sleeping `sleep_ms`) -> join `c`.
pub fn diamond(sleep_ms: u64) -> WorkflowBuilder {
    workflow("diamond")
        .node("a", "sleep", json!({"ms": sleep_ms}))
        .node("b", "sleep", json!({"ms": sleep_ms}))
        .node("c", "echo", Value::Null)
        .edge("start", "a")
        .edge("start", "b")
        .edge("a", "c")
        .edge("b", "c")
}

/// Runs `worker` until every execution in `ids` is terminal, or panics after `deadline`.
/// Returns their details in the order of `ids`.
pub async fn run_until_terminal(
    worker: WorkflowWorker,
    store: &impl Store,
    ids: &[ExecutionId],
    deadline: Duration,
) -> Vec<ExecutionDetail> {
    let stop = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn(worker.run_until(stop.clone().cancelled_owned()));
    let details = wait_until_terminal(store, ids, deadline).await;
    stop.cancel();
    running.await.expect("worker task").expect("worker run");
    details
}

/// Polls until every execution in `ids` is terminal, or panics after `deadline`.
pub async fn wait_until_terminal(
    store: &impl Store,
    ids: &[ExecutionId],
    deadline: Duration,
) -> Vec<ExecutionDetail> {
    let started = tokio::time::Instant::now();
    loop {
        let mut details = Vec::with_capacity(ids.len());
        for id in ids {
            details.push(store.get_execution(*id).await.expect("get execution"));
        }
        let open = details
            .iter()
            .filter(|d| !d.execution.status.is_terminal())
            .count();
        if open == 0 {
            return details;
        }
        assert!(
            started.elapsed() < deadline,
            "{open} of {} executions still not terminal after {deadline:?}",
            ids.len()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A store whose lease renewals silently do nothing, as if the worker's heartbeat were stalled
/// (a long GC pause, a partition): its leases expire while its nodes still run. Everything
/// else goes to the real store.
#[derive(Debug, Clone)]
pub struct StalledHeartbeat<S>(pub S);

#[async_trait::async_trait]
impl<S: Store> Store for StalledHeartbeat<S> {
    async fn save_workflow(
        &self,
        graph: &WorkflowGraph,
    ) -> Result<WorkflowVersion, crate::StoreError> {
        self.0.save_workflow(graph).await
    }

    async fn get_workflow(
        &self,
        workflow: &crate::WorkflowRef,
    ) -> Result<WorkflowVersion, crate::StoreError> {
        self.0.get_workflow(workflow).await
    }

    async fn list_workflows(&self) -> Result<Vec<crate::WorkflowSummary>, crate::StoreError> {
        self.0.list_workflows().await
    }

    async fn get_workflow_version(
        &self,
        workflow_id: crate::WorkflowId,
        version: i32,
    ) -> Result<WorkflowVersion, crate::StoreError> {
        self.0.get_workflow_version(workflow_id, version).await
    }

    async fn start_execution(
        &self,
        params: crate::StartExecutionParams,
    ) -> Result<crate::StartedExecution, crate::StoreError> {
        self.0.start_execution(params).await
    }

    async fn signal_with_start(
        &self,
        params: crate::SignalWithStartParams,
    ) -> Result<crate::SignalledExecution, crate::StoreError> {
        self.0.signal_with_start(params).await
    }

    async fn record_item_runs(
        &self,
        execution_id: ExecutionId,
        lease_token: crate::LeaseToken,
        worker_id: &str,
        runs: &[crate::store::NewItemRun],
    ) -> Result<crate::store::StepRecorded, crate::StoreError> {
        self.0
            .record_item_runs(execution_id, lease_token, worker_id, runs)
            .await
    }

    async fn item_runs(
        &self,
        execution_id: ExecutionId,
        node_id: &str,
    ) -> Result<Vec<crate::ItemRun>, crate::StoreError> {
        self.0.item_runs(execution_id, node_id).await
    }

    async fn start_child_execution(
        &self,
        params: crate::store::StartChildParams,
    ) -> Result<crate::store::StartedChild, crate::StoreError> {
        self.0.start_child_execution(params).await
    }

    async fn claim_executions(
        &self,
        params: crate::store::ClaimParams,
    ) -> Result<Vec<crate::store::ClaimedExecution>, crate::StoreError> {
        self.0.claim_executions(params).await
    }

    async fn record_steps(
        &self,
        steps: &[crate::store::RecordStep],
    ) -> Vec<Result<crate::store::StepRecorded, crate::StoreError>> {
        self.0.record_steps(steps).await
    }

    /// Claims every lease was renewed, renewing none.
    async fn renew_leases(
        &self,
        leases: &[(ExecutionId, crate::LeaseToken)],
        _lease_duration: Duration,
    ) -> Result<Vec<ExecutionId>, crate::StoreError> {
        Ok(leases.iter().map(|(id, _)| *id).collect())
    }

    async fn pause_execution(
        &self,
        id: ExecutionId,
    ) -> Result<crate::Execution, crate::StoreError> {
        self.0.pause_execution(id).await
    }

    async fn resume_execution(
        &self,
        id: ExecutionId,
    ) -> Result<crate::Execution, crate::StoreError> {
        self.0.resume_execution(id).await
    }

    async fn cancel_execution(
        &self,
        id: ExecutionId,
        reason: &str,
    ) -> Result<crate::Execution, crate::StoreError> {
        self.0.cancel_execution(id, reason).await
    }

    async fn retry_execution(
        &self,
        params: crate::RetryExecutionParams,
    ) -> Result<crate::Execution, crate::StoreError> {
        self.0.retry_execution(params).await
    }

    async fn time_out_executions(&self) -> Result<crate::store::DeadlineSweep, crate::StoreError> {
        self.0.time_out_executions().await
    }

    async fn age_priorities(
        &self,
        older_than: std::time::Duration,
        limit: u32,
    ) -> Result<Vec<crate::store::AgedExecution>, crate::StoreError> {
        self.0.age_priorities(older_than, limit).await
    }

    async fn take_rate(
        &self,
        request: &crate::flow::RateRequest,
    ) -> Result<Option<Duration>, crate::StoreError> {
        self.0.take_rate(request).await
    }

    async fn queue_stats(&self) -> Result<crate::QueueStats, crate::StoreError> {
        self.0.queue_stats().await
    }

    async fn prune_executions(
        &self,
        older_than: Duration,
        limit: u32,
    ) -> Result<u64, crate::StoreError> {
        self.0.prune_executions(older_than, limit).await
    }

    async fn send_signal(
        &self,
        params: crate::SendSignalParams,
    ) -> Result<crate::Signal, crate::StoreError> {
        self.0.send_signal(params).await
    }

    async fn get_execution(&self, id: ExecutionId) -> Result<ExecutionDetail, crate::StoreError> {
        self.0.get_execution(id).await
    }

    async fn now(&self) -> Result<chrono::DateTime<chrono::Utc>, crate::StoreError> {
        self.0.now().await
    }

    async fn create_schedule(
        &self,
        params: crate::store::CreateScheduleParams,
    ) -> Result<crate::Schedule, crate::StoreError> {
        self.0.create_schedule(params).await
    }

    async fn list_schedules(&self) -> Result<Vec<crate::Schedule>, crate::StoreError> {
        self.0.list_schedules().await
    }

    async fn get_schedule(
        &self,
        id: crate::ScheduleId,
    ) -> Result<crate::Schedule, crate::StoreError> {
        self.0.get_schedule(id).await
    }

    async fn pause_schedule(
        &self,
        id: crate::ScheduleId,
    ) -> Result<crate::Schedule, crate::StoreError> {
        self.0.pause_schedule(id).await
    }

    async fn resume_schedule(
        &self,
        id: crate::ScheduleId,
        next_fire_at: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<crate::Schedule, crate::StoreError> {
        self.0.resume_schedule(id, next_fire_at).await
    }

    async fn delete_schedule(&self, id: crate::ScheduleId) -> Result<(), crate::StoreError> {
        self.0.delete_schedule(id).await
    }

    async fn trigger_schedule(
        &self,
        id: crate::ScheduleId,
    ) -> Result<crate::Execution, crate::StoreError> {
        self.0.trigger_schedule(id).await
    }

    async fn due_schedules(
        &self,
        limit: u32,
    ) -> Result<crate::store::DueSchedules, crate::StoreError> {
        self.0.due_schedules(limit).await
    }

    async fn fire_schedule(
        &self,
        params: crate::store::FireScheduleParams,
    ) -> Result<u32, crate::StoreError> {
        self.0.fire_schedule(params).await
    }

    async fn wakeups(&self) -> Result<Option<Box<dyn crate::store::Wakeups>>, crate::StoreError> {
        self.0.wakeups().await
    }

    async fn record_worker(
        &self,
        id: &str,
        node_types: &[String],
        ttl: Duration,
    ) -> Result<(), crate::StoreError> {
        self.0.record_worker(id, node_types, ttl).await
    }

    async fn remove_worker(&self, id: &str) -> Result<(), crate::StoreError> {
        self.0.remove_worker(id).await
    }

    async fn live_workers(&self) -> Result<Vec<crate::LiveWorker>, crate::StoreError> {
        self.0.live_workers().await
    }

    async fn list_executions(
        &self,
        params: crate::ListExecutionsParams,
    ) -> Result<Vec<crate::Execution>, crate::StoreError> {
        self.0.list_executions(params).await
    }

    async fn matching_executions(
        &self,
        filter: &crate::ExecutionFilter,
        after: Option<crate::ExecutionId>,
        limit: u32,
    ) -> Result<Vec<crate::ExecutionId>, crate::StoreError> {
        self.0.matching_executions(filter, after, limit).await
    }

    async fn delete_executions(
        &self,
        ids: &[crate::ExecutionId],
        filter: &crate::ExecutionFilter,
    ) -> Result<u64, crate::StoreError> {
        self.0.delete_executions(ids, filter).await
    }
}
