//! The runner of one claimed execution: restores its progress from the recorded history,
//! runs its ready nodes concurrently, records each result, and ends the claim when the
//! execution completes, fails, parks (for a retry, a signal or a timer), pauses, times out,
//! is released at shutdown, or its lease is lost.
//!
//! [`run_execution`] is the task's body; [`Run`] holds the state of the claim as documented
//! fields, and each of its methods is one step: [`Run::start`] a node, wait for the
//! [`next_event`](Run::next_event), [`on_attempt`](Run::on_attempt) record what a node did,
//! [`settle`](Run::settle) when nothing is left to run.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};
use tokio::task::{AbortHandle, JoinError, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, error, info, info_span, warn};

use super::attempt::{self, Attempt};
use super::clock::DbClock;
use super::decide::{self, AfterFailure, Settled};
use super::graphs::Loaded;
use super::map::{AfterItem, MapRun};
use super::slots::Slot;
use super::writer::{Ended, Interrupted, Writer};
use super::{ErrorChain, Shared};
use crate::execution::ExecutionParent;
use crate::execution::{Execution, ExecutionId, LeaseToken, NodeRunStatus, Signal, SignalId};
use crate::flow::RateRequest;
use crate::graph::{NodeState, Progress, ReadyNode, WorkflowGraph};
use crate::metrics;
use crate::node::{
    ErrorKind, MAX_SUBWORKFLOW_DEPTH, MapRequest, NodeContext, NodeExecutor, NodeOutcome,
    NodeRegistry, child_signal,
};
use crate::state::ExecutionStatus;
use crate::store::{
    ClaimedExecution, NewItemRun, NewNodeRun, StartChildParams, StoreError, WorkflowRef,
};
use crate::template;

/// A claimed execution with what its task holds for the claim.
pub(super) struct Claim {
    pub(super) claimed: ClaimedExecution,
    /// Cancelled by the heartbeat when the lease is found lost.
    pub(super) cancel: CancellationToken,
    pub(super) slot: Slot,
}

/// Runs a claimed execution as far as this claim goes, and says how its task ended.
pub(super) async fn run_execution(shared: Arc<Shared>, claim: Claim) -> (ExecutionId, Ended) {
    let execution = &claim.claimed.execution;
    let span = info_span!(
        "execution",
        execution.id = %execution.id,
        workflow = %execution.workflow_name,
        worker.id = %shared.config.worker_id,
    );
    let (id, token) = (execution.id, execution.lease_token);
    let workflow = execution.workflow_name.clone();
    let result = drive(&shared, claim).instrument(span.clone()).await;
    shared.fence.leases.forget(id, token);
    let ended = match result {
        Ok(ended) => ended,
        Err(Interrupted::LeaseLost) => {
            explain_lost_lease(&shared, id, &workflow)
                .instrument(span)
                .await;
            Ended::Dropped
        }
        Err(Interrupted::Store(err)) => {
            let _entered = span.enter();
            error!(
                error = %ErrorChain(&err),
                "store error; the execution resumes when its lease expires"
            );
            Ended::Dropped
        }
    };
    (id, ended)
}

/// Says why the lease was lost: the execution was cancelled, timed out, or taken over.
async fn explain_lost_lease(shared: &Shared, id: ExecutionId, workflow: &str) {
    metrics::lease_lost();
    let status = shared
        .store
        .get_execution(id)
        .await
        .map(|d| d.execution.status);
    match status {
        Ok(ExecutionStatus::Cancelled) => {
            metrics::execution_finished(workflow, ExecutionStatus::Cancelled);
            info!("execution cancelled; its running nodes were stopped");
        }
        Ok(ExecutionStatus::TimedOut) => {
            warn!("execution timed out; its running nodes were stopped");
        }
        _ => warn!("lease lost; dropping the execution to its new owner"),
    }
}

/// Prepares the claim (its graph, its deadline, its history, a rescue's records) and runs it.
async fn drive(shared: &Shared, claim: Claim) -> Result<Ended, Interrupted> {
    let Claim {
        claimed:
            ClaimedExecution {
                execution,
                node_runs,
                signals,
                unreadable,
            },
        cancel,
        slot,
    } = claim;
    log_claim(&execution);
    let mut writer = Writer::new(
        &shared.fence,
        execution.id,
        execution.lease_token,
        &execution.workflow_name,
        slot,
    );
    let graph = match runnable_graph(shared, &execution, unreadable).await? {
        Ok(graph) => graph,
        Err(error) => return writer.fail(error).await,
    };
    let clock = DbClock::at_claim(execution.lease_expires_at, shared.config.lease_duration);
    // The deadline in this worker's clock, measured in database time from the claim.
    let deadline_at = execution.deadline.map(|at| clock.instant_of(at));
    if deadline_at.is_some_and(|at| at <= Instant::now()) {
        return writer.time_out().await;
    }
    let mut progress = Progress::new(&graph);
    for run in &node_runs {
        if let Some(index) = graph.node_index(&run.node_id) {
            progress.set(index, decide::restored_state(run));
        }
    }
    let input = Arc::new(execution.input.clone());
    if execution.rescue_count > 0 {
        let abandoned = record_rescue(&graph, &mut progress, &input, &mut writer);
        let quarantined = decide::quarantine(
            execution.rescue_count,
            shared.config.max_rescues,
            &abandoned,
        );
        if let Some(error) = quarantined {
            return writer.fail(error).await;
        }
    }
    Run {
        shared,
        graph: &graph,
        execution: &execution,
        input,
        clock,
        deadline_at,
        cancel,
        // Asked while its previous holder ran it, and not honoured before that one stopped.
        pausing: execution.pause_requested_at.is_some(),
        writer,
        progress,
        signals,
        running: JoinSet::new(),
        in_flight: HashMap::new(),
        backing_off: HashSet::new(),
        retry_at: None,
        parked: HashMap::new(),
        maps: HashMap::new(),
        item_runs: Vec::new(),
        item_runs_since: None,
    }
    .run()
    .await
}

/// The graph the execution runs, or why it cannot run here and never will (so it fails): its
/// row could not be read, or its definition is invalid for this worker's node types.
async fn runnable_graph(
    shared: &Shared,
    execution: &Execution,
    unreadable: Option<String>,
) -> Result<Loaded, Interrupted> {
    // A row the worker cannot read will not read better on another claim.
    if let Some(defect) = unreadable {
        return Ok(Err(format!("execution cannot be read: {defect}")));
    }
    match load_graph(shared, execution).await {
        Ok(loaded) => Ok(loaded),
        // A stored definition this worker cannot read will not get better on retry.
        Err(StoreError::InvalidData(error)) => Ok(Err(error)),
        Err(err) => Err(err.into()),
    }
}

/// Says how this claim began: a first start, a rescue, or a resumption.
fn log_claim(execution: &Execution) {
    if execution.lease_token == LeaseToken(1) {
        metrics::execution_started(&execution.workflow_name);
        info!(status = %execution.status, "execution started");
    } else if execution.rescue_count > 0 {
        metrics::execution_rescued(&execution.workflow_name);
        warn!(
            lease_token = execution.lease_token.0,
            rescues = execution.rescue_count,
            "execution rescued: its previous worker stopped renewing the lease"
        );
    } else {
        info!(lease_token = execution.lease_token.0, "execution resumed");
    }
}

/// The graph of the execution's version, validated against this worker's node types.
async fn load_graph(shared: &Shared, execution: &Execution) -> Result<Loaded, StoreError> {
    let (workflow_id, version) = (execution.workflow_id, execution.workflow_version);
    shared
        .graphs
        .get(workflow_id, version, || async {
            let saved = shared
                .store
                .get_workflow_version(workflow_id, version)
                .await?;
            Ok(
                match WorkflowGraph::validate(saved.definition, &shared.registry) {
                    Ok(graph) => Ok(Arc::new(graph)),
                    Err(errors) => Err(format!(
                        "workflow \"{}\" version {version} cannot run on worker {}: {errors}",
                        saved.name, shared.config.worker_id
                    )),
                },
            )
        })
        .await
}

/// The previous worker died: the nodes due then are the ones it was running. Records them
/// abandoned (they run again under the same attempt) and returns their ids. A replayable node
/// due may have run without its run being written (it waits for the next write), so the one
/// after it may be what was running: this claim writes every run before it goes on, so a
/// node that keeps killing workers right after a replayable one is found by the next rescue.
fn record_rescue<'g>(
    graph: &'g WorkflowGraph,
    progress: &mut Progress,
    input: &Value,
    writer: &mut Writer,
) -> Vec<&'g str> {
    writer.no_deferred_runs();
    for index in progress.skip_untaken(graph) {
        writer.push(skipped_run(graph, index));
    }
    let mut abandoned = Vec::new();
    for node in progress.ready(graph, input) {
        let mut run = unfinished_run(graph, &node, NodeRunStatus::Abandoned);
        run.error = Some(decide::ABANDONED.into());
        writer.push(run);
        abandoned.push(graph.node(node.index).id.as_str());
    }
    abandoned
}

/// The state of one claim while its nodes run.
struct Run<'a> {
    shared: &'a Shared,
    graph: &'a WorkflowGraph,
    execution: &'a Execution,
    /// The execution input, shared with every node.
    input: Arc<Value>,
    clock: DbClock,
    /// When the execution's deadline passes, in this worker's clock.
    deadline_at: Option<Instant>,
    /// Cancelled when the lease is lost: stops every node.
    cancel: CancellationToken,
    /// Set once a pause is asked (a step or the claim says so): no node starts from then
    /// on, and the execution pauses once those running have finished.
    pausing: bool,
    writer: Writer,
    /// The state of each node.
    progress: Progress,
    /// Its signals not yet consumed, offered to the nodes that start.
    signals: Vec<Signal>,
    /// The attempts running.
    running: JoinSet<Finished>,
    /// The attempts in `running`, with when they started, for interruption.
    in_flight: HashMap<usize, (ReadyNode, Instant)>,
    /// Nodes that failed during this claim: they wait out their backoff with the execution
    /// parked, not here (nodes that failed before the claim are due now).
    backing_off: HashSet<usize>,
    /// When the earliest of those retries is due.
    retry_at: Option<Instant>,
    /// Nodes that chose to wait during this claim: the signal each waits for, and when its
    /// timer is due. They run again when the execution is woken.
    parked: HashMap<usize, (Option<String>, Option<Instant>)>,
    /// The `map` nodes running their items, by node index.
    maps: HashMap<usize, MapState>,
    /// Item runs that finished and are not recorded yet (recorded in batches), with when
    /// each ended.
    item_runs: Vec<(NewItemRun, Instant)>,
    /// When the oldest of `item_runs` finished.
    item_runs_since: Option<Instant>,
}

/// A `map` node while its items run.
struct MapState {
    run: MapRun,
    /// The map node's attempt and input, for its own node run once it ends.
    attempt: u32,
    input: Value,
    /// When the map started here.
    started: Instant,
    /// Whether the item node's config has templates (rendered per item).
    templated: bool,
    /// The running items' tasks, to stop them when the map fails.
    handles: HashMap<u32, AbortHandle>,
}

/// What became of a node attempt's child execution.
enum Child {
    /// It has not ended: the node waits for `signal`, which its end stores.
    Running { signal: String },
    /// It ended: its output, or why it did not complete; and the signal its end stored, if
    /// not consumed yet, to consume with the node's run (this claim may not have loaded it:
    /// the child may have ended since).
    Ended {
        result: Result<Value, String>,
        signal: Option<SignalId>,
    },
}

/// Why a child execution could not be started.
enum ChildFailure {
    /// It cannot start: for good, or for now.
    Failed(ErrorKind, String),
    /// The execution's lease was lost: this worker writes nothing more for it.
    LeaseLost,
}

/// Item runs are recorded once this many are waiting...
const ITEM_BATCH: usize = 64;
/// ...or once the oldest waited this long.
const ITEM_FLUSH_EVERY: Duration = Duration::from_millis(100);

/// An attempt that ended, with what it resumed.
struct Finished {
    ready: ReadyNode,
    /// The item of a `map` node this attempt ran, if it ran one.
    item: Option<u32>,
    /// When the attempt began waiting, if it was resumed from a wait.
    waiting_since: Option<DateTime<Utc>>,
    attempt: Attempt,
    duration: Duration,
}

/// What the runner waits for while nodes run.
enum Event {
    /// A node attempt ended (boxed: it is large, and the other events small).
    Attempt(Box<Finished>),
    /// The lease was lost.
    LeaseLost,
    /// The execution's deadline passed.
    Deadline,
    /// The grace period after shutdown ended.
    Interrupt,
    /// A node's task died outside the node (a worker bug).
    Crashed(JoinError),
    /// Look again: shutdown began, or nothing was running.
    Again,
}

impl Run<'_> {
    async fn run(mut self) -> Result<Ended, Interrupted> {
        loop {
            for index in self.progress.skip_untaken(self.graph) {
                self.writer.push(skipped_run(self.graph, index));
            }
            let ready = self.ready();
            if ready.is_empty() && self.running.is_empty() {
                return self.settle().await;
            }
            if self.pausing && self.running.is_empty() {
                self.flush_items(true).await?;
                return self.writer.pause(None).await;
            }
            let draining = self.shared.draining.is_cancelled();
            if draining && self.running.is_empty() {
                self.flush_items(true).await?;
                return self.writer.release().await;
            }
            self.flush_items(false).await?;
            // A write lending the slot waits for one again until shutdown or a lost lease.
            let (shared, cancel) = (self.shared, &self.cancel);
            let idle = self.running.is_empty().then_some(async move {
                tokio::select! {
                    () = shared.draining.cancelled() => {}
                    () = cancel.cancelled() => {}
                }
            });
            if self.writer.flush(idle).await?.pause_requested && !self.pausing {
                info!("pause requested; starting no new node");
                self.pausing = true;
                continue;
            }
            // Read again: the lease may have been lost, or shutdown begun, while the write
            // waited for a slot.
            if self.cancel.is_cancelled() {
                return Err(Interrupted::LeaseLost);
            }
            let draining = self.shared.draining.is_cancelled();
            if !draining && !self.pausing {
                for node in ready {
                    self.start_if_allowed(node).await?;
                }
            }
            match self.next_event(draining).await {
                Event::Attempt(finished) => {
                    if let Some(ended) = self.on_attempt(*finished).await {
                        return ended;
                    }
                }
                Event::LeaseLost => return Err(Interrupted::LeaseLost),
                Event::Deadline => {
                    self.stop_all(NodeRunStatus::TimedOut, "the execution deadline passed");
                    self.flush_items(true).await?;
                    return self.writer.time_out().await;
                }
                Event::Interrupt => {
                    self.stop_all(
                        NodeRunStatus::Interrupted,
                        "the worker shut down before the node finished",
                    );
                    self.flush_items(true).await?;
                    return self.writer.release().await;
                }
                Event::Crashed(err) => {
                    self.running.abort_all();
                    return self.writer.fail(format!("node task crashed: {err}")).await;
                }
                Event::Again => {}
            }
        }
    }

    /// The nodes ready to start now: not backing off, not parked.
    fn ready(&self) -> Vec<ReadyNode> {
        self.progress
            .ready(self.graph, &self.input)
            .into_iter()
            .filter(|node| {
                !self.backing_off.contains(&node.index) && !self.parked.contains_key(&node.index)
            })
            .collect()
    }

    /// Nothing is ready or running: the claim ends as [`decide::settle`] says, except that an
    /// execution asked to pause pauses where it would park.
    async fn settle(&mut self) -> Result<Ended, Interrupted> {
        self.flush_items(true).await?;
        let now = Instant::now();
        let until = |at: Instant| at.saturating_duration_since(now);
        let mut waits: Vec<(Option<String>, Option<Duration>)> = self
            .parked
            .values()
            .map(|(signal, due)| (signal.clone(), due.map(until)))
            .collect();
        // A map with items waiting for their children waits with them; one whose items
        // stopped starting (a pause or a shutdown) resumes from its recorded items once the
        // execution runs again.
        if !self.maps.is_empty() {
            let children: Vec<String> = self
                .maps
                .values()
                .flat_map(|state| state.run.parked_signals())
                .collect();
            if self.pausing {
                return self.writer.pause(None).await;
            }
            if children.is_empty() {
                return self.writer.release().await;
            }
            waits.extend(children.into_iter().map(|signal| (Some(signal), None)));
        }
        match decide::settle(
            self.progress.is_finished(),
            &waits,
            self.retry_at.map(until),
        ) {
            Settled::Complete => {
                let output = self.progress.output(self.graph);
                self.writer.complete(output).await
            }
            Settled::Wait { .. } | Settled::Retry { .. } if self.pausing => {
                self.writer.pause(None).await
            }
            Settled::Wait { delay, signals } => {
                let ended = self.writer.wait(delay, signals).await;
                self.due_in(delay);
                ended
            }
            Settled::Retry { delay } => {
                let ended = self.writer.park(delay).await;
                self.due_in(Some(delay));
                ended
            }
            Settled::Stuck => self.writer.fail(decide::STUCK.into()).await,
        }
    }

    /// The execution was just parked until `delay` passes: if that is sooner than the next
    /// poll, the poller claims it then.
    fn due_in(&self, delay: Option<Duration>) {
        if let Some(delay) = delay.filter(|&d| d < self.shared.config.poll_interval) {
            self.shared.timers.add(Instant::now() + delay);
        }
    }

    /// Starts an attempt of `node` unless its rate limit says to wait: then the node is
    /// parked until a start can be taken, and the execution waits for it without a slot.
    async fn start_if_allowed(&mut self, node: ReadyNode) -> Result<(), Interrupted> {
        let Some((name, limit)) = self.graph.rate_limit(node.index) else {
            self.start(node);
            return Ok(());
        };
        let key = match limit.key_in(&self.input) {
            Ok(key) => key,
            Err(reason) => {
                let waiting_since = match self.progress.state(node.index) {
                    NodeState::Waiting { since, .. } => Some(*since),
                    _ => None,
                };
                self.progress.set(node.index, NodeState::Running);
                self.in_flight
                    .insert(node.index, (node.clone(), Instant::now()));
                let error = format!("rate limit \"{name}\": {reason}");
                self.fail_at_start(node, waiting_since, error);
                return Ok(());
            }
        };
        let request = RateRequest {
            name: name.to_owned(),
            key,
            limit: limit.limit,
            period: limit.period,
        };
        match self.shared.store.take_rate(&request).await? {
            None => self.start(node),
            Some(wait) => {
                metrics::rate_limited(name);
                info!(
                    node.id = %self.graph.node(node.index).id,
                    rate_limit = name,
                    key = %request.key,
                    wait_ms = wait.as_millis(),
                    "node waiting for its rate limit"
                );
                self.parked
                    .insert(node.index, (None, Some(Instant::now() + wait)));
            }
        }
        Ok(())
    }

    /// Starts an attempt of `node`.
    fn start(&mut self, node: ReadyNode) {
        let waiting_since = match self.progress.state(node.index) {
            NodeState::Waiting { since, .. } => Some(*since),
            _ => None,
        };
        self.progress.set(node.index, NodeState::Running);
        self.in_flight
            .insert(node.index, (node.clone(), Instant::now()));
        let definition = self.graph.node(node.index);
        let executor = self.shared.registry.get(&definition.node_type).cloned();
        let timeout = definition
            .timeout
            .or_else(|| executor.as_ref().and_then(|e| e.default_timeout()));
        let config = match self.graph.templates(node.index) {
            None => definition.config.clone(),
            Some(named) => match self.rendered_config(&node, named, executor.as_deref()) {
                Ok(config) => config,
                Err(error) => return self.fail_at_start(node, waiting_since, error),
            },
        };
        let execution = self.execution;
        let mut ctx = NodeContext::new(
            execution.id,
            execution.workflow_id,
            definition.id.clone(),
            definition.node_type.clone(),
            node.attempt,
        )
        .config(config)
        .input(node.input.clone())
        .execution_input(self.input.clone())
        .signals(self.signals.clone())
        .resumed(waiting_since, self.clock.now());
        ctx.cancellation = self.cancel.child_token();
        info!(
            node.id = %definition.id,
            node.type = %definition.node_type,
            attempt = node.attempt,
            "node executing"
        );
        let attempt = attempt::run(executor, ctx, timeout, self.shared.config.node_output_limit);
        self.running.spawn(async move {
            let (attempt, duration) = attempt.await;
            Finished {
                ready: node,
                item: None,
                waiting_since,
                attempt,
                duration,
            }
        });
    }

    /// The config of `node` with its templates rendered (see [`crate::template`]) from its
    /// input, the execution and the outputs of the upstream nodes `named`, checked by its
    /// node type; or why it cannot run (for good: the same input renders the same way).
    fn rendered_config(
        &self,
        node: &ReadyNode,
        named: &[usize],
        executor: Option<&dyn NodeExecutor>,
    ) -> Result<Value, String> {
        self.render(
            &self.graph.node(node.index).config,
            &node.input,
            named,
            executor,
        )
    }

    /// `config` with its templates rendered for a node whose input is `input`, checked by
    /// `executor`.
    fn render(
        &self,
        config: &Value,
        input: &Value,
        named: &[usize],
        executor: Option<&dyn NodeExecutor>,
    ) -> Result<Value, String> {
        let nodes: Map<String, Value> = named
            .iter()
            .filter_map(|&index| match self.progress.state(index) {
                NodeState::Completed { output, .. } => Some((
                    self.graph.node(index).id.clone(),
                    json!({ "output": output }),
                )),
                _ => None,
            })
            .collect();
        let scope = json!({
            "input": input,
            "execution": {
                "id": self.execution.id,
                "workflow": self.execution.workflow_name,
                "input": *self.input,
            },
            "nodes": nodes,
        });
        let deferred = executor.map_or(&[][..], NodeExecutor::deferred_config);
        let config = template::render(config, &scope, deferred).map_err(|problem| {
            format!("template at {} failed: {}", problem.path, problem.reason)
        })?;
        if let Some(executor) = executor {
            executor
                .validate_config(&config)
                .map_err(|err| format!("invalid config once its templates were rendered: {err}"))?;
        }
        Ok(config)
    }

    /// An attempt of `node` that fails for good before it starts, with `error`.
    fn fail_at_start(
        &mut self,
        node: ReadyNode,
        waiting_since: Option<DateTime<Utc>>,
        error: String,
    ) {
        self.running.spawn(async move {
            Finished {
                ready: node,
                item: None,
                waiting_since,
                attempt: Attempt::Failed {
                    kind: ErrorKind::Fatal,
                    error,
                    retry_after: None,
                },
                duration: Duration::ZERO,
            }
        });
    }

    /// Waits for whatever happens next to a claim with nodes running.
    async fn next_event(&mut self, draining: bool) -> Event {
        tokio::select! {
            () = self.cancel.cancelled() => Event::LeaseLost,
            () = sleep_until_some(self.deadline_at) => Event::Deadline,
            () = self.shared.interrupt.cancelled() => Event::Interrupt,
            // Wake up once when shutdown starts, to stop starting nodes.
            () = self.shared.draining.cancelled(), if !draining => Event::Again,
            () = sleep_until_some(self.item_runs_since.map(|at| at + ITEM_FLUSH_EVERY)) => {
                Event::Again
            }
            joined = self.running.join_next() => match joined {
                Some(Ok(finished)) => Event::Attempt(Box::new(finished)),
                // The items a failing map stopped.
                Some(Err(err)) if err.is_cancelled() => Event::Again,
                // Node panics are caught inside the task, so only a worker bug lands here.
                Some(Err(err)) => Event::Crashed(err),
                None => Event::Again,
            },
        }
    }

    /// Stops every running attempt and records it unfinished with `status` and `error`.
    fn stop_all(&mut self, status: NodeRunStatus, error: &str) {
        self.running.abort_all();
        for (node, started) in std::mem::take(&mut self.in_flight).into_values() {
            let mut run = unfinished_run(self.graph, &node, status);
            run.duration = started.elapsed();
            run.error = Some(error.into());
            self.writer.push(run);
        }
    }

    /// Records what an attempt did. `Some` ends the claim (the execution failed).
    async fn on_attempt(&mut self, finished: Finished) -> Option<Result<Ended, Interrupted>> {
        if let Some(item) = finished.item {
            return self.on_item(finished, item).await;
        }
        let Finished {
            ready,
            waiting_since,
            attempt: outcome,
            duration,
            item: _,
        } = finished;
        let index = ready.index;
        self.in_flight.remove(&index);
        let node = self.graph.node(index);
        let mut run = node_run(
            self.graph,
            index,
            ready.attempt,
            NodeRunStatus::Completed,
            Some(ready.input),
        );
        run.duration = duration;
        let (kind, error, retry_after) = match outcome {
            Attempt::Completed(NodeOutcome::StartChild { workflow, input }) => {
                return self
                    .start_child(index, run, waiting_since, workflow, input)
                    .await;
            }
            Attempt::Completed(NodeOutcome::Map(request)) => {
                return self.start_map(run, request).await;
            }
            Attempt::Completed(NodeOutcome::Wait { signal, timeout }) => {
                self.waiting(index, run, waiting_since, duration, (signal, timeout));
                return None;
            }
            Attempt::Completed(NodeOutcome::Signalled {
                signal,
                output,
                branch,
            }) => {
                info!(node.id = %node.id, signal.id = signal.0, "signal consumed");
                self.signals.retain(|s| s.id != signal);
                run.consumed_signal = Some(signal);
                self.completed(index, run, output, branch);
                return None;
            }
            Attempt::Completed(NodeOutcome::Complete { output, branch }) => {
                self.completed(index, run, output, branch);
                return None;
            }
            Attempt::Failed {
                kind,
                error,
                retry_after,
            } => {
                run.status = NodeRunStatus::Failed;
                (kind, error, retry_after)
            }
            Attempt::TimedOut(limit) => {
                run.status = NodeRunStatus::TimedOut;
                (
                    ErrorKind::Retryable,
                    format!("timed out after {limit:?}"),
                    None,
                )
            }
        };
        self.failed(index, run, kind, error, retry_after).await
    }

    /// A `map` node asked for its items to run: reads what was recorded of them (a map that
    /// resumes runs only the items not completed) and starts as many as it may.
    async fn start_map(
        &mut self,
        mut run: NewNodeRun,
        request: MapRequest,
    ) -> Option<Result<Ended, Interrupted>> {
        let index = self.graph.node_index(&run.node_id)?;
        let recorded = match self
            .shared
            .store
            .item_runs(self.execution.id, &run.node_id)
            .await
        {
            Ok(recorded) => recorded,
            Err(err) => {
                run.status = NodeRunStatus::Failed;
                let error = format!("cannot read the map's recorded items: {}", ErrorChain(&err));
                return self
                    .failed(index, run, ErrorKind::Retryable, error, None)
                    .await;
            }
        };
        let map = MapRun::new(request, &recorded);
        info!(
            node.id = %run.node_id,
            items = map.len(),
            recorded = recorded.len(),
            "map started"
        );
        if let Some(error) = map.failure() {
            run.status = NodeRunStatus::Failed;
            return self.failed(index, run, ErrorKind::Fatal, error, None).await;
        }
        let templated = template::scan(&map.request.node.config).0.is_some();
        self.progress.set(index, NodeState::Running);
        self.maps.insert(
            index,
            MapState {
                run: map,
                attempt: run.attempt,
                input: run.input.take().unwrap_or_default(),
                started: Instant::now(),
                templated,
                handles: HashMap::new(),
            },
        );
        self.start_items(index);
        self.finish_map_if_done(index).await
    }

    /// Starts the items of map `index` that may start now (none while pausing or draining).
    fn start_items(&mut self, index: usize) {
        if self.pausing || self.shared.draining.is_cancelled() {
            return;
        }
        let Some(state) = self.maps.get_mut(&index) else {
            return;
        };
        let mut due = Vec::new();
        while let Some(next) = state.run.next() {
            due.push(next);
        }
        for (item, attempt) in due {
            self.spawn_item(index, item, attempt, Duration::ZERO);
        }
    }

    /// Starts attempt `attempt` of item `item` of map `index`, after `delay`.
    fn spawn_item(&mut self, index: usize, item: u32, attempt: u32, delay: Duration) {
        let Some(state) = self.maps.get(&index) else {
            return;
        };
        let definition = &state.run.request.node;
        let input = state
            .run
            .request
            .items
            .get(item as usize)
            .cloned()
            .unwrap_or_default();
        let executor = self.shared.registry.get(&definition.node_type).cloned();
        let config = if state.templated {
            let named = self.graph.templates(index).unwrap_or_default();
            self.render(&definition.config, &input, named, executor.as_deref())
        } else {
            Ok(definition.config.clone())
        };
        let timeout = definition
            .timeout
            .or_else(|| executor.as_ref().and_then(|e| e.default_timeout()));
        let ready = ReadyNode {
            index,
            attempt,
            input: input.clone(),
        };
        let attempt_future = match config {
            Ok(config) => {
                let mut ctx = NodeContext::new(
                    self.execution.id,
                    self.execution.workflow_id,
                    format!("{}[{item}]", self.graph.node(index).id),
                    definition.node_type.clone(),
                    attempt,
                )
                .config(config)
                .input(input)
                .execution_input(self.input.clone())
                .signals(self.signals.clone())
                .resumed(None, self.clock.now());
                ctx.cancellation = self.cancel.child_token();
                attempt::run(executor, ctx, timeout, self.shared.config.node_output_limit)
            }
            Err(error) => {
                let failed = Attempt::Failed {
                    kind: ErrorKind::Fatal,
                    error,
                    retry_after: None,
                };
                let handle = self.running.spawn(async move {
                    Finished {
                        ready,
                        item: Some(item),
                        waiting_since: None,
                        attempt: failed,
                        duration: Duration::ZERO,
                    }
                });
                if let Some(state) = self.maps.get_mut(&index) {
                    state.handles.insert(item, handle);
                }
                return;
            }
        };
        let handle = self.running.spawn(async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let (attempt, duration) = attempt_future.await;
            Finished {
                ready,
                item: Some(item),
                waiting_since: None,
                attempt,
                duration,
            }
        });
        if let Some(state) = self.maps.get_mut(&index) {
            state.handles.insert(item, handle);
        }
    }

    /// An item attempt ended: records it, retries it, fails the map, or completes the map
    /// once every item is done.
    async fn on_item(
        &mut self,
        finished: Finished,
        item: u32,
    ) -> Option<Result<Ended, Interrupted>> {
        let index = finished.ready.index;
        let state = self.maps.get_mut(&index)?;
        state.handles.remove(&item);
        let node_type = state.run.request.node.node_type.clone();
        let node_id = self.graph.node(index).id.clone();
        let mut run = NewItemRun {
            node_id: node_id.clone(),
            item,
            node_type: node_type.clone(),
            attempt: finished.ready.attempt,
            status: NodeRunStatus::Completed,
            input: Some(finished.ready.input),
            output: None,
            error: None,
            duration: finished.duration,
            ended_ago: Duration::ZERO,
            consumed_signal: None,
            fatal: false,
        };
        let failure = |run: &mut NewItemRun, kind, error: String, retry_after| {
            run.status = NodeRunStatus::Failed;
            run.error = Some(error.clone());
            run.fatal = kind == ErrorKind::Fatal;
            Err((kind, error, retry_after))
        };
        let result = match finished.attempt {
            Attempt::Completed(NodeOutcome::Complete { output, .. }) => {
                run.output = Some(output.clone());
                Ok(output)
            }
            Attempt::Completed(NodeOutcome::Signalled { signal, output, .. }) => {
                self.signals.retain(|s| s.id != signal);
                run.consumed_signal = Some(signal);
                run.output = Some(output.clone());
                Ok(output)
            }
            Attempt::Completed(NodeOutcome::StartChild { workflow, input }) => {
                match self
                    .child(&node_id, Some(item), run.attempt, &workflow, input)
                    .await
                {
                    Ok(Child::Running { signal }) => {
                        self.maps.get_mut(&index)?.run.parked(item, signal);
                        return None;
                    }
                    Ok(Child::Ended { result, signal }) => {
                        if let Some(signal) = signal {
                            self.signals.retain(|s| s.id != signal);
                        }
                        run.consumed_signal = signal;
                        match result {
                            Ok(output) => {
                                run.output = Some(output.clone());
                                Ok(output)
                            }
                            Err(error) => failure(&mut run, ErrorKind::Retryable, error, None),
                        }
                    }
                    Err(ChildFailure::Failed(kind, error)) => failure(&mut run, kind, error, None),
                    Err(ChildFailure::LeaseLost) => return Some(Err(Interrupted::LeaseLost)),
                }
            }
            Attempt::Completed(NodeOutcome::Wait { .. } | NodeOutcome::Map(_)) => {
                let error = format!(
                    "a map's item node completes, fails or runs a sub-workflow; \"{node_type}\" \
                     asked to wait or to map"
                );
                failure(&mut run, ErrorKind::Fatal, error, None)
            }
            Attempt::Failed {
                kind,
                error,
                retry_after,
            } => failure(&mut run, kind, error, retry_after),
            Attempt::TimedOut(limit) => {
                let error = format!("timed out after {limit:?}");
                run.status = NodeRunStatus::TimedOut;
                run.error = Some(error.clone());
                Err((ErrorKind::Retryable, error, None))
            }
        };
        let state = self.maps.get_mut(&index)?;
        metrics::node_run(&run.node_type, run.status, run.duration);
        if let Err((_, error, _)) = &result {
            warn!(node.id = %run.node_id, item, attempt = run.attempt, error = %error, "map item failed");
        }
        self.item_runs.push((run, Instant::now()));
        self.item_runs_since.get_or_insert_with(Instant::now);
        match state.run.finished(item, result, random_unit()) {
            AfterItem::Continue => {}
            AfterItem::Retry { attempt, delay } => {
                state.run.retrying(item, attempt);
                self.spawn_item(index, item, attempt, delay);
            }
            AfterItem::Fail(error) => {
                let mut state = self.maps.remove(&index)?;
                for (item, handle) in state.handles.drain() {
                    handle.abort();
                    state.run.stopped(item);
                }
                if let Err(interrupted) = self.flush_items(true).await {
                    return Some(Err(interrupted));
                }
                let mut run = node_run(
                    self.graph,
                    index,
                    state.attempt,
                    NodeRunStatus::Failed,
                    Some(state.input),
                );
                run.duration = state.started.elapsed();
                return self.failed(index, run, ErrorKind::Fatal, error, None).await;
            }
        }
        self.start_items(index);
        self.finish_map_if_done(index).await
    }

    /// Completes map `index` once every item is done, after recording its items.
    async fn finish_map_if_done(&mut self, index: usize) -> Option<Result<Ended, Interrupted>> {
        if !self.maps.get(&index)?.run.is_done() {
            return None;
        }
        let state = self.maps.remove(&index)?;
        if let Err(interrupted) = self.flush_items(true).await {
            return Some(Err(interrupted));
        }
        let mut run = node_run(
            self.graph,
            index,
            state.attempt,
            NodeRunStatus::Completed,
            Some(state.input),
        );
        run.duration = state.started.elapsed();
        let output = state.run.output();
        let limit = self.shared.config.node_output_limit;
        if attempt::exceeds(&output, limit) {
            run.status = NodeRunStatus::Failed;
            let error = format!(
                "the map's output (its {} items' results) is larger than the node output limit \
                 of {limit} bytes of JSON; have the items hand large data over by reference",
                state.run.len()
            );
            return self.failed(index, run, ErrorKind::Fatal, error, None).await;
        }
        info!(node.id = %run.node_id, items = state.run.len(), "map completed");
        self.completed(index, run, output, None);
        None
    }

    /// Records the item runs waiting, when `force`d or when enough wait or the oldest waited
    /// long enough. A failed write keeps them to try again, unless forced (the caller is about
    /// to record a step that depends on them).
    async fn flush_items(&mut self, force: bool) -> Result<(), Interrupted> {
        let due = force
            || self.item_runs.len() >= ITEM_BATCH
            || self
                .item_runs_since
                .is_some_and(|since| since.elapsed() >= ITEM_FLUSH_EVERY);
        if self.item_runs.is_empty() || !due {
            return Ok(());
        }
        let waiting = std::mem::take(&mut self.item_runs);
        self.item_runs_since = None;
        let runs: Vec<NewItemRun> = waiting
            .iter()
            .map(|(run, ended)| NewItemRun {
                ended_ago: ended.elapsed(),
                ..run.clone()
            })
            .collect();
        let written = self
            .shared
            .store
            .record_item_runs(
                self.execution.id,
                self.execution.lease_token,
                &self.shared.config.worker_id,
                &runs,
            )
            .await;
        match written {
            Ok(recorded) => {
                if recorded.pause_requested && !self.pausing {
                    info!("pause requested; starting no new node or item");
                    self.pausing = true;
                }
                Ok(())
            }
            Err(StoreError::LeaseLost { .. }) => Err(Interrupted::LeaseLost),
            Err(err) if force => Err(Interrupted::Store(err)),
            Err(err) => {
                warn!(error = %ErrorChain(&err), items = runs.len(), "recording item runs failed; trying again");
                self.item_runs = waiting;
                self.item_runs_since = Some(Instant::now());
                Ok(())
            }
        }
    }

    /// A node asked for a child execution of `workflow`: starts it (or finds the one this
    /// attempt started before) and parks the node until the child's end wakes the execution;
    /// once the child has ended, completes the node with its output or fails it. A workflow
    /// that is not there, or a child past the depth limit, fails the node for good.
    async fn start_child(
        &mut self,
        index: usize,
        mut run: NewNodeRun,
        waiting_since: Option<DateTime<Utc>>,
        workflow: String,
        input: Value,
    ) -> Option<Result<Ended, Interrupted>> {
        let node_id = self.graph.node(index).id.clone();
        let (kind, error) = match self
            .child(&node_id, None, run.attempt, &workflow, input)
            .await
        {
            Ok(Child::Running { signal }) => {
                let took = run.duration;
                self.waiting(index, run, waiting_since, took, (Some(signal), None));
                return None;
            }
            Ok(Child::Ended { result, signal }) => {
                if let Some(signal) = signal {
                    info!(node.id = %node_id, signal.id = signal.0, "signal consumed");
                    self.signals.retain(|s| s.id != signal);
                }
                run.consumed_signal = signal;
                match result {
                    Ok(output) => {
                        self.completed(index, run, output, None);
                        return None;
                    }
                    Err(error) => (ErrorKind::Retryable, error),
                }
            }
            Err(ChildFailure::Failed(kind, error)) => (kind, error),
            Err(ChildFailure::LeaseLost) => return Some(Err(Interrupted::LeaseLost)),
        };
        run.status = NodeRunStatus::Failed;
        self.failed(index, run, kind, error, None).await
    }

    /// Starts the child execution of `workflow` for node `node_id` (its item `item`, for a
    /// map) and `attempt`, or finds the one that attempt started before, and says whether it
    /// runs or how it ended; or why it cannot start: a workflow that is not there, or the
    /// depth limit, is for good.
    async fn child(
        &self,
        node_id: &str,
        item: Option<u32>,
        attempt: u32,
        workflow: &str,
        input: Value,
    ) -> Result<Child, ChildFailure> {
        let depth = self.execution.depth + 1;
        if depth > MAX_SUBWORKFLOW_DEPTH {
            return Err(ChildFailure::Failed(
                ErrorKind::Fatal,
                format!(
                    "sub-workflow depth limit ({MAX_SUBWORKFLOW_DEPTH}) reached starting \
                     workflow \"{workflow}\": does a workflow call itself without end?"
                ),
            ));
        }
        let params = StartChildParams {
            parent: ExecutionParent {
                execution_id: self.execution.id,
                node_id: node_id.to_owned(),
                item,
                attempt,
            },
            lease_token: self.execution.lease_token,
            workflow: WorkflowRef::from(workflow),
            input,
            depth,
            priority: self.execution.priority,
        };
        let started = match self.shared.store.start_child_execution(params).await {
            Ok(started) => started,
            Err(StoreError::LeaseLost { .. }) => return Err(ChildFailure::LeaseLost),
            Err(StoreError::NotFound { .. }) => {
                return Err(ChildFailure::Failed(
                    ErrorKind::Fatal,
                    format!("cannot start a child execution: workflow \"{workflow}\" not found"),
                ));
            }
            Err(err) => {
                return Err(ChildFailure::Failed(
                    ErrorKind::Retryable,
                    format!(
                        "cannot start a child execution of \"{workflow}\": {}",
                        ErrorChain(&err)
                    ),
                ));
            }
        };
        let child = started.execution;
        if !child.status.is_terminal() {
            if started.created {
                info!(
                    node.id = %node_id,
                    item,
                    child.id = %child.id,
                    child.workflow = %child.workflow_name,
                    "child execution started"
                );
            }
            return Ok(Child::Running {
                signal: child_signal(child.id),
            });
        }
        let result = if child.status == ExecutionStatus::Completed {
            Ok(child.output.unwrap_or(Value::Null))
        } else {
            Err(format!(
                "child execution {} of workflow \"{}\" {}: {}",
                child.id,
                child.workflow_name,
                child.status,
                child.error.as_deref().unwrap_or("no error recorded")
            ))
        };
        Ok(Child::Ended {
            result,
            signal: started.end_signal,
        })
    }

    /// A node chose to wait for `signal` or `timeout`: it is parked until the execution is
    /// woken. The first time, its waiting run records when the wait began.
    fn waiting(
        &mut self,
        index: usize,
        mut run: NewNodeRun,
        waiting_since: Option<DateTime<Utc>>,
        duration: Duration,
        (signal, timeout): (Option<String>, Option<Duration>),
    ) {
        let node = self.graph.node(index);
        info!(node.id = %node.id, signal = signal.as_deref(), timeout = ?timeout, "node waiting");
        let attempt = run.attempt;
        let since = match waiting_since {
            Some(since) => since,
            None => {
                // In database time.
                run.status = NodeRunStatus::Waiting;
                self.writer.push(run);
                self.clock.now() - chrono::Duration::from_std(duration).unwrap_or_default()
            }
        };
        self.progress
            .set(index, NodeState::Waiting { attempt, since });
        self.parked
            .insert(index, (signal, timeout.map(|t| Instant::now() + t)));
    }

    /// Records a node's result and marks it completed.
    fn completed(
        &mut self,
        index: usize,
        mut run: NewNodeRun,
        output: Value,
        branch: Option<String>,
    ) {
        info!(
            node.id = %run.node_id,
            attempt = run.attempt,
            duration_ms = run.duration.as_millis(),
            branch = branch.as_deref(),
            "node completed"
        );
        metrics::node_run(&run.node_type, run.status, run.duration);
        run.output = Some(output.clone());
        run.branch = branch.clone();
        if replayable(&self.shared.registry, self.graph, index) {
            self.writer.push_replayable(run);
        } else {
            self.writer.push(run);
        }
        self.progress
            .set(index, NodeState::Completed { output, branch });
    }

    /// Records a failed attempt, then retries the node later or fails the execution.
    async fn failed(
        &mut self,
        index: usize,
        mut run: NewNodeRun,
        kind: ErrorKind,
        error: String,
        retry_after: Option<Duration>,
    ) -> Option<Result<Ended, Interrupted>> {
        let node = self.graph.node(index);
        let attempt = run.attempt;
        metrics::node_run(&run.node_type, run.status, run.duration);
        run.error = Some(error.clone());
        self.writer.push(run);
        let policy = self.graph.retry_policy(index);
        error!(
            node.id = %node.id,
            attempt,
            max_attempts = policy.max_attempts,
            error = %error,
            "node failed"
        );
        let failure = decide::Failure {
            node_id: &node.id,
            kind,
            attempt,
            error: &error,
            retry_after,
        };
        match decide::after_failure(&failure, policy, random_unit()) {
            AfterFailure::Retry { delay } => {
                metrics::retry(&self.execution.workflow_name, &node.node_type);
                warn!(
                    node.id = %node.id,
                    next_attempt = attempt + 1,
                    max_attempts = policy.max_attempts,
                    delay = ?delay,
                    "retrying execution"
                );
                self.progress.set(index, NodeState::RetryDue { attempt });
                self.backing_off.insert(index);
                let due = Instant::now() + delay;
                self.retry_at = Some(self.retry_at.map_or(due, |at| at.min(due)));
                None
            }
            AfterFailure::Fail(error) => {
                self.running.abort_all();
                Some(self.writer.fail(error).await)
            }
            AfterFailure::Pause(error) => {
                // The other branches' nodes in flight run again once it is resumed.
                self.stop_all(
                    NodeRunStatus::Interrupted,
                    "the execution paused because another node failed",
                );
                Some(self.writer.pause(Some(error)).await)
            }
        }
    }
}

/// Sleeps until `at`, or forever when there is no `at`.
async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// A random number in [0, 1), for retry jitter.
fn random_unit() -> f64 {
    let bits = uuid::Uuid::new_v4().as_u64_pair().0 >> 11;
    // 53 random bits scaled into [0, 1): exactly representable in an f64.
    bits as f64 / (1u64 << 53) as f64
}

/// A record of attempt `attempt` of node `index` that ended with `status`, with `input`; the
/// rest is filled in by whoever knows it.
fn node_run(
    graph: &WorkflowGraph,
    index: usize,
    attempt: u32,
    status: NodeRunStatus,
    input: Option<Value>,
) -> NewNodeRun {
    let node = graph.node(index);
    NewNodeRun {
        node_id: node.id.clone(),
        node_type: node.node_type.clone(),
        attempt,
        status,
        input,
        output: None,
        branch: None,
        error: None,
        duration: Duration::ZERO,
        ended_ago: Duration::ZERO,
        consumed_signal: None,
    }
}

/// Whether node `index` runs with a [replayable](crate::NodeExecutor::replayable) executor.
fn replayable(registry: &NodeRegistry, graph: &WorkflowGraph, index: usize) -> bool {
    registry
        .get(&graph.node(index).node_type)
        .is_some_and(|executor| executor.replayable())
}

/// The record of a node not taken by a branch.
fn skipped_run(graph: &WorkflowGraph, index: usize) -> NewNodeRun {
    node_run(graph, index, 1, NodeRunStatus::Skipped, None)
}

/// A record of an attempt that started and did not end: interrupted or abandoned.
fn unfinished_run(graph: &WorkflowGraph, node: &ReadyNode, status: NodeRunStatus) -> NewNodeRun {
    node_run(
        graph,
        node.index,
        node.attempt,
        status,
        Some(node.input.clone()),
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::graph::WorkflowDefinition;

    /// trigger → a → (b, c): a fan-out of two after one step.
    fn graph() -> WorkflowGraph {
        let definition: WorkflowDefinition = serde_json::from_value(json!({
            "name": "fan",
            "nodes": [
                {"id": "start", "type": "trigger"},
                {"id": "a", "type": "step"},
                {"id": "b", "type": "step"},
                {"id": "c", "type": "step"}
            ],
            "edges": [
                {"from": "start", "to": "a"},
                {"from": "a", "to": "b"},
                {"from": "a", "to": "c"}
            ]
        }))
        .unwrap();
        let registry = NodeRegistry::builtin().with("step", Step);
        WorkflowGraph::validate(definition, &registry).unwrap()
    }

    struct Step;

    #[async_trait::async_trait]
    impl crate::node::NodeExecutor for Step {
        async fn execute(&self, _ctx: NodeContext) -> Result<NodeOutcome, crate::NodeError> {
            Ok(NodeOutcome::complete(json!({})))
        }
    }

    #[test]
    fn unfinished_and_skipped_records_carry_the_node_and_attempt() {
        let graph = graph();
        let b = graph.node_index("b").unwrap();
        let ready = ReadyNode {
            index: b,
            attempt: 3,
            input: json!({"x": 1}),
        };
        let run = unfinished_run(&graph, &ready, NodeRunStatus::Abandoned);
        assert_eq!(
            (run.node_id.as_str(), run.attempt, run.status, run.input),
            ("b", 3, NodeRunStatus::Abandoned, Some(json!({"x": 1})))
        );
        let skipped = skipped_run(&graph, b);
        assert_eq!(
            (skipped.node_id.as_str(), skipped.attempt, skipped.status),
            ("b", 1, NodeRunStatus::Skipped)
        );
    }

    #[tokio::test]
    async fn a_rescue_records_the_nodes_due_when_the_worker_died_as_abandoned() {
        use futures_util::FutureExt;

        use super::super::slots::Slots;
        use super::super::step_writer::StepWriter;
        use super::super::writer::Fence;

        let graph = graph();
        let mut progress = Progress::new(&graph);
        for id in ["start", "a"] {
            let index = graph.node_index(id).unwrap();
            progress.set(
                index,
                NodeState::Completed {
                    output: json!({}),
                    branch: None,
                },
            );
        }
        let fence = Fence {
            steps: StepWriter::spawn_with(Arc::new(|steps: &[_]| {
                let results = steps
                    .iter()
                    .map(|_| Ok(crate::store::StepRecorded::default()))
                    .collect();
                async move { results }.boxed()
            })),
            leases: Arc::default(),
            worker_id: "w".into(),
            lease_duration: Duration::from_secs(30),
        };
        let slots = Slots::new(1, 1, Default::default());
        let mut writer = Writer::new(
            &fence,
            ExecutionId::new(),
            LeaseToken(2),
            "fan",
            slots.take(1).remove(0),
        );
        let mut abandoned = record_rescue(&graph, &mut progress, &json!({}), &mut writer);
        abandoned.sort();
        assert_eq!(abandoned, vec!["b", "c"]);
        let records: Vec<(&str, NodeRunStatus, Option<&str>)> = writer
            .pending()
            .map(|r| (r.node_id.as_str(), r.status, r.error.as_deref()))
            .collect();
        assert_eq!(records.len(), 2);
        assert!(
            records
                .iter()
                .all(|(_, status, error)| *status == NodeRunStatus::Abandoned
                    && *error == Some(decide::ABANDONED))
        );

        // With only the trigger due, the trigger is what was running as far as anyone can
        // tell: it is abandoned, and this claim writes its next run at the next flush rather
        // than with the node after it.
        let slots = Slots::new(1, 1, Default::default());
        let mut writer = Writer::new(
            &fence,
            ExecutionId::new(),
            LeaseToken(2),
            "fan",
            slots.take(1).remove(0),
        );
        let mut fresh = Progress::new(&graph);
        let abandoned = record_rescue(&graph, &mut fresh, &json!({}), &mut writer);
        assert_eq!(abandoned, ["start"]);
        let start = graph.node_index("start").unwrap();
        writer.push_replayable(node_run(&graph, start, 1, NodeRunStatus::Completed, None));
        writer.flush(Some(std::future::pending())).await.unwrap();
        assert_eq!(writer.pending().count(), 0, "written at the flush");
    }

    #[test]
    fn random_units_are_in_the_unit_interval_and_vary() {
        let units: Vec<f64> = (0..100).map(|_| random_unit()).collect();
        assert!(units.iter().all(|u| (0.0..1.0).contains(u)));
        assert!(units.iter().any(|u| *u != units[0]));
    }
}
