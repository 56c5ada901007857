//! [`Client`]: what applications, the binary and the examples call to save workflows, start,
//! signal, cancel and read executions, prune history and manage schedules.
//!
//! The client holds the rules that are not the store's to know: a workflow is validated
//! against the node types before it is saved, a schedule's cron expression and time zone are
//! checked and its first tick computed from the database's clock before it is stored, and a
//! resumed schedule gets its next tick in the same write that enables it. Everything else
//! goes straight to the [`Store`], the driver interface the backends implement.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::execution::{
    Execution, ExecutionDetail, ExecutionId, Signal, WorkflowSummary, WorkflowVersion,
};
use crate::graph::{WorkflowDefinition, WorkflowGraph};
use crate::node::NodeRegistry;
use crate::retry::{self, RetryRequest, RetryVersion};
use crate::schedule::{self, CronSchedule, Schedule, ScheduleError, ScheduleId};
use crate::state::ExecutionStatus;
use crate::store::{
    CreateScheduleParams, ListExecutionsParams, LiveWorker, QueueStats, RetryExecutionParams,
    SendSignalParams, SignalWithStartParams, SignalledExecution, StartExecutionParams,
    StartedExecution, Store, StoreError, WorkflowRef,
};

/// The application's handle on the engine, over any [`Store`]. Cheap to clone.
///
/// ```no_run
/// # async fn example(store: impl workflow_worker_core::Store) -> workflow_worker_core::Result<()> {
/// use serde_json::json;
/// use workflow_worker_core::{Client, StartExecutionParams, WorkflowDefinition};
///
/// let client = Client::new(store);
/// let definition: WorkflowDefinition = serde_json::from_value(json!({
///     "name": "hello",
///     "nodes": [{"id": "start", "type": "trigger"}],
///     "edges": []
/// }))
/// .expect("a definition");
/// client.save_workflow(definition).await?;
/// let started = client
///     .start(StartExecutionParams::new("hello", json!({"name": "Ada"})).key("order-7"))
///     .await?;
/// // A second start with the key returns the same execution.
/// println!("execution {} (new: {})", started.execution.id, started.created);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Client {
    store: Arc<dyn Store>,
    registry: NodeRegistry,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("registry", &self.registry)
            .finish_non_exhaustive()
    }
}

/// A schedule to create with [`Client::create_schedule`].
#[derive(Debug, Clone)]
pub struct NewSchedule {
    /// The workflow to start on every tick (the version current at each tick).
    pub workflow: WorkflowRef,
    /// A cron expression: five fields (minute first) or six (second first).
    pub cron: String,
    /// The IANA time zone the expression is read in.
    pub timezone: String,
    /// The input of every execution it starts.
    pub input: Value,
    /// How many missed ticks to fire when several are due at once (at least 1).
    pub catch_up: u32,
}

impl NewSchedule {
    /// Starts `workflow` at every tick of `cron` in UTC with an empty input, firing only the
    /// latest of missed ticks.
    pub fn new(workflow: impl Into<WorkflowRef>, cron: impl Into<String>) -> Self {
        Self {
            workflow: workflow.into(),
            cron: cron.into(),
            timezone: "UTC".to_owned(),
            input: Value::Object(serde_json::Map::new()),
            catch_up: 1,
        }
    }
}

impl Client {
    /// A client whose workflows are validated against the built-in node types.
    pub fn new(store: impl Store) -> Self {
        Self::with_registry(store, NodeRegistry::builtin())
    }

    /// A client whose workflows are validated against `registry`: the node types of the
    /// workers that will run them (see [`WorkflowWorker::client`](crate::WorkflowWorker::client)).
    pub fn with_registry(store: impl Store, registry: NodeRegistry) -> Self {
        Self::from_shared(Arc::new(store), registry)
    }

    /// A client over a store shared with others (a worker, an HTTP server).
    pub fn from_shared(store: Arc<dyn Store>, registry: NodeRegistry) -> Self {
        Self { store, registry }
    }

    /// The store underneath, for what only the driver interface offers.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The node types workflows are validated against.
    pub fn registry(&self) -> &NodeRegistry {
        &self.registry
    }

    /// Validates `definition` against the node types and saves it as the workflow's next
    /// version. Nothing is written if it is invalid: the error lists every problem.
    pub async fn save_workflow(
        &self,
        definition: WorkflowDefinition,
    ) -> crate::Result<WorkflowVersion> {
        let graph = WorkflowGraph::validate(definition, &self.registry)?;
        Ok(self.store.save_workflow(&graph).await?)
    }

    /// The latest version of a workflow.
    pub async fn workflow(
        &self,
        workflow: impl Into<WorkflowRef>,
    ) -> Result<WorkflowVersion, StoreError> {
        self.store.get_workflow(&workflow.into()).await
    }

    /// Every saved workflow, by name.
    pub async fn workflows(&self) -> Result<Vec<WorkflowSummary>, StoreError> {
        self.store.list_workflows().await
    }

    /// Version `version` of a workflow (named by name or id).
    pub async fn workflow_at(
        &self,
        workflow: impl Into<WorkflowRef>,
        version: i32,
    ) -> Result<WorkflowVersion, StoreError> {
        let latest = self.store.get_workflow(&workflow.into()).await?;
        if latest.version == version {
            return Ok(latest);
        }
        self.store
            .get_workflow_version(latest.workflow_id, version)
            .await
    }

    /// The version an execution is pinned to.
    pub async fn workflow_version_of(
        &self,
        execution: &Execution,
    ) -> Result<WorkflowVersion, StoreError> {
        self.store
            .get_workflow_version(execution.workflow_id, execution.workflow_version)
            .await
    }

    /// Starts an execution of the latest version of a workflow. With a
    /// [`key`](StartExecutionParams::key), returns the execution that holds the key instead
    /// (`created: false`), as [`KeyReuse`](crate::KeyReuse) says; see
    /// [`Store::start_execution`].
    pub async fn start(
        &self,
        params: StartExecutionParams,
    ) -> Result<StartedExecution, StoreError> {
        self.store.start_execution(params).await
    }

    /// Sends a signal to the execution that holds `params.start`'s key, starting it first if
    /// none does, in one atomic step; see [`Store::signal_with_start`].
    pub async fn signal_with_start(
        &self,
        params: SignalWithStartParams,
    ) -> Result<SignalledExecution, StoreError> {
        self.store.signal_with_start(params).await
    }

    /// Sends a signal to an execution that has not ended, in one atomic step: a signal to an
    /// ended execution is [`StoreError::AlreadyEnded`], and one with an idempotency key sent
    /// before returns the first.
    pub async fn signal(&self, params: SendSignalParams) -> Result<Signal, StoreError> {
        self.store.send_signal(params).await
    }

    /// Cancels an execution that has not ended. The worker running it, if any, is told at once
    /// (PostgreSQL NOTIFY, or in-process on SQLite) and stops its nodes; one that cannot be
    /// told (behind a transaction pooler, or another process on an SQLite file) stops them at
    /// its next heartbeat.
    pub async fn cancel(&self, id: ExecutionId, reason: &str) -> Result<Execution, StoreError> {
        self.store.cancel_execution(id, reason).await
    }

    /// Runs a failed, timed-out or cancelled execution (or one a failure paused) again, as
    /// `request` says: from where
    /// it stopped (the nodes that completed keep their results and do not run again; the
    /// others run again from attempt 1), from the start, or from a node and everything
    /// downstream of it; on its pinned version or the latest. The earlier runs stay in its
    /// history, marked superseded by the retry, which records who asked and when. Another
    /// status is [`StoreError::NotRetryable`]; a node the version does not have is
    /// [`RetryError::UnknownNode`](crate::RetryError::UnknownNode).
    pub async fn retry(&self, id: ExecutionId, request: RetryRequest) -> crate::Result<Execution> {
        let detail = self.store.get_execution(id).await?;
        self.retry_read(detail, request).await
    }

    /// Pauses an execution that has not ended: at once if it is not running, else at its
    /// next step (the nodes running finish and are recorded, and no new one starts). See
    /// [`Store::pause_execution`].
    pub async fn pause(&self, id: ExecutionId) -> Result<Execution, StoreError> {
        self.store.pause_execution(id).await
    }

    /// Resumes a paused execution (or withdraws a pause not yet honoured). One that a failure
    /// paused (its node's retry policy says `"on_failure": "pause"`) resumes as a retry from
    /// where it stopped, recorded as asked by `requested_by`: the failed node runs again from
    /// attempt 1 and the nodes that completed keep their results. See
    /// [`Store::resume_execution`].
    pub async fn resume(&self, id: ExecutionId, requested_by: &str) -> crate::Result<Execution> {
        let detail = self.store.get_execution(id).await?;
        if paused_by_failure(&detail.execution) {
            return self
                .retry_read(detail, RetryRequest::new(requested_by))
                .await;
        }
        Ok(self.store.resume_execution(id).await?)
    }

    /// [`retry`](Self::retry) of an execution read already.
    pub(crate) async fn retry_read(
        &self,
        detail: ExecutionDetail,
        request: RetryRequest,
    ) -> crate::Result<Execution> {
        let execution = &detail.execution;
        let id = execution.id;
        if !execution.status.is_retryable() && !paused_by_failure(execution) {
            return Err(StoreError::NotRetryable {
                execution_id: id,
                status: execution.status,
            }
            .into());
        }
        let version = match request.version {
            RetryVersion::Pinned => self.workflow_version_of(execution).await?,
            RetryVersion::Latest => {
                self.store
                    .get_workflow(&WorkflowRef::Id(execution.workflow_id))
                    .await?
            }
        };
        let rerun = retry::nodes_to_rerun(
            &version.definition,
            version.version,
            &detail.node_runs,
            &request.from,
        )?;
        // The store checks the status again in its transaction: of two retries at once, one
        // wins and the other is told it is pending.
        Ok(self
            .store
            .retry_execution(RetryExecutionParams {
                execution_id: id,
                requested_by: request.requested_by,
                from: request.from,
                workflow_version: version.version,
                rerun,
            })
            .await?)
    }

    /// An execution with its node runs and signals.
    pub async fn execution(&self, id: ExecutionId) -> Result<ExecutionDetail, StoreError> {
        self.store.get_execution(id).await
    }

    /// Executions, newest first.
    pub async fn executions(
        &self,
        params: ListExecutionsParams,
    ) -> Result<Vec<Execution>, StoreError> {
        self.store.list_executions(params).await
    }

    /// Deletes every execution that ended more than `older_than` ago, with its history, in
    /// short transactions of at most `batch` executions, resting between them so that it
    /// deletes `busy_percent` (1 to 100) of the time (the worker's pruner uses
    /// [`PRUNE_BATCH`](crate::worker::PRUNE_BATCH) and
    /// [`PRUNE_BUSY_PERCENT`](crate::worker::PRUNE_BUSY_PERCENT)); returns how many it deleted.
    pub async fn prune(
        &self,
        older_than: Duration,
        batch: u32,
        busy_percent: u8,
    ) -> Result<u64, StoreError> {
        crate::worker::prune(&*self.store, older_than, batch, busy_percent).await
    }

    /// How many executions are runnable, waiting and running.
    pub async fn queue_stats(&self) -> Result<QueueStats, StoreError> {
        self.store.queue_stats().await
    }

    /// The workers seen recently, with the node types each runs.
    pub async fn live_workers(&self) -> Result<Vec<LiveWorker>, StoreError> {
        self.store.live_workers().await
    }

    /// Validates a schedule and stores it, its first tick computed from the database's clock.
    pub async fn create_schedule(&self, schedule: NewSchedule) -> crate::Result<Schedule> {
        let parsed = schedule::validate(&schedule.cron, &schedule.timezone, schedule.catch_up)?;
        let next_fire_at = next_tick(&parsed, &schedule.cron, self.store.now().await?)?;
        let created = self
            .store
            .create_schedule(CreateScheduleParams {
                workflow: schedule.workflow,
                cron: schedule.cron,
                timezone: schedule.timezone,
                input: schedule.input,
                catch_up: schedule.catch_up,
                next_fire_at,
            })
            .await?;
        Ok(created)
    }

    /// Every schedule.
    pub async fn schedules(&self) -> Result<Vec<Schedule>, StoreError> {
        self.store.list_schedules().await
    }

    /// Pauses a schedule: no tick fires until it is resumed.
    pub async fn pause_schedule(&self, id: ScheduleId) -> Result<Schedule, StoreError> {
        self.store.pause_schedule(id).await
    }

    /// Resumes a paused schedule from its first tick after now, in one write: nothing fires
    /// for the paused period, and workers fire the next tick on time however long until they
    /// next look. Resuming an enabled schedule changes nothing.
    pub async fn resume_schedule(&self, id: ScheduleId) -> crate::Result<Schedule> {
        let paused = self.store.get_schedule(id).await?;
        if paused.enabled {
            return Ok(paused);
        }
        let parsed = CronSchedule::parse(&paused.cron, &paused.timezone)?;
        let next_fire_at = parsed.next_after(self.store.now().await?);
        Ok(self.store.resume_schedule(id, next_fire_at).await?)
    }

    /// Deletes a schedule; executions it started stay.
    pub async fn delete_schedule(&self, id: ScheduleId) -> Result<(), StoreError> {
        self.store.delete_schedule(id).await
    }

    /// Starts an execution from a schedule now ("trigger now"), whether it is paused or not,
    /// without moving its ticks; see [`Store::trigger_schedule`].
    pub async fn trigger_schedule(&self, id: ScheduleId) -> Result<Execution, StoreError> {
        self.store.trigger_schedule(id).await
    }
}

/// The first tick of `parsed` after `now`, or why it has none.
fn next_tick(
    parsed: &CronSchedule,
    cron: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<chrono::DateTime<chrono::Utc>, ScheduleError> {
    parsed
        .next_after(now)
        .ok_or_else(|| ScheduleError::NoFutureTick(cron.to_owned()))
}

/// Whether a node's failure paused `execution` (rather than an operator): it carries the error.
fn paused_by_failure(execution: &Execution) -> bool {
    execution.status == ExecutionStatus::Paused && execution.error.is_some()
}
