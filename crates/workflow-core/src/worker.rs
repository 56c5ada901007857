//! [`WorkflowWorker`]: the poll loop that claims runnable executions and runs their nodes.
//!
//! Each poll claims at most as many executions as the worker has free slots. Each claimed
//! execution runs in its own task: the scheduler ([`Progress`]) picks the ready nodes, they
//! run concurrently, and each result is recorded with the execution's progress in one fenced
//! write. A recorded node never runs again; a node interrupted before its result was recorded
//! runs again on whichever worker resumes the execution (at-least-once).
//!
//! A heartbeat renews the leases of executions in flight. A worker that loses a lease (it was
//! paused past the lease, or the database was unreachable) cancels that execution's nodes
//! and drops it without writing more: the new owner's writes stand.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::FutureExt;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, error, info, info_span, trace, warn};

use crate::Error;
use crate::execution::{ExecutionId, NodeRunStatus, WorkflowId};
use crate::graph::{NodeState, Progress, ReadyNode, WorkflowGraph};
use crate::metrics;
use crate::node::{ErrorKind, NodeContext, NodeExecutor, NodeOutcome, NodeRegistry};
use crate::schedule::CronSchedule;
use crate::state::{ExecutionStatus, transition};
use crate::store::{
    Advance, ClaimParams, ClaimedExecution, FireScheduleParams, NewNodeRun, RecordNodeRunsParams,
    RescueFilter, Store, StoreError,
};

/// How often an idle worker polls for runnable executions by default.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(1);
/// The shortest poll interval accepted.
pub const MIN_POLL_INTERVAL: Duration = Duration::from_millis(10);
/// How many executions a worker runs at once by default.
pub const DEFAULT_CONCURRENCY: usize = 10;
/// How long a claim's lease lasts by default before another worker may take the execution.
pub const DEFAULT_LEASE_DURATION: Duration = Duration::from_secs(30);
/// How often leases of executions in flight are renewed by default.
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(10);
/// How long in-flight executions may take to finish after shutdown is requested, by default.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// How many times in a row a suspect execution's worker may die while running it alone
/// before the execution is failed as poison, by default.
pub const DEFAULT_MAX_RESCUES: u32 = 3;
/// After this many deaths in a row of the workers running it, an execution is a *suspect*
/// and runs alone on a worker, so that its deaths from then on are its own doing.
pub const SUSPECT_AFTER_RESCUES: u32 = 2;
/// The longest wait between claims while the store keeps failing.
const MAX_ERROR_BACKOFF: Duration = Duration::from_secs(30);
/// How often a worker looks for new schedules and deadlines when none is due sooner. A
/// wake-up from the store (a new execution, a changed schedule) makes it look again sooner,
/// but at most once per [`HOUSEKEEPING_MIN_GAP`].
const HOUSEKEEPING_REFRESH: Duration = Duration::from_secs(60);
/// The shortest time between two looks for schedules, or two deadline sweeps.
const HOUSEKEEPING_MIN_GAP: Duration = Duration::from_secs(1);
/// How many due schedules a worker fires per look.
const SCHEDULE_BATCH: u32 = 100;
/// How often a worker with [`WorkflowWorker::prune_after`] set prunes finished executions.
const PRUNE_INTERVAL: Duration = Duration::from_secs(60);
/// How many executions one prune statement deletes at most.
pub const PRUNE_BATCH: u32 = 1000;
/// How long executions get to record their release once the grace period is over.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(5);

/// A worker setting out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

/// Everything a [`WorkflowWorker`] can be configured with.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WorkerConfig {
    /// See [`WorkflowWorker::poll_interval`].
    pub poll_interval: Duration,
    /// See [`WorkflowWorker::concurrency`].
    pub concurrency: usize,
    /// See [`WorkflowWorker::lease_duration`].
    pub lease_duration: Duration,
    /// See [`WorkflowWorker::heartbeat_interval`].
    pub heartbeat_interval: Duration,
    /// See [`WorkflowWorker::shutdown_grace`].
    pub shutdown_grace: Duration,
    /// See [`WorkflowWorker::max_rescues`].
    pub max_rescues: u32,
    /// See [`WorkflowWorker::wakeups`].
    pub wakeups: bool,
    /// See [`WorkflowWorker::worker_id`].
    pub worker_id: String,
    /// See [`WorkflowWorker::prune_after`].
    pub prune_after: Option<Duration>,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            poll_interval: DEFAULT_POLL_INTERVAL,
            concurrency: DEFAULT_CONCURRENCY,
            lease_duration: DEFAULT_LEASE_DURATION,
            heartbeat_interval: DEFAULT_HEARTBEAT_INTERVAL,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            max_rescues: DEFAULT_MAX_RESCUES,
            wakeups: true,
            worker_id: default_worker_id(),
            prune_after: None,
        }
    }
}

impl WorkerConfig {
    /// Checks every setting, naming the first one out of range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.poll_interval < MIN_POLL_INTERVAL {
            return Err(ConfigError(format!(
                "poll_interval ({:?}) must be at least {MIN_POLL_INTERVAL:?}",
                self.poll_interval
            )));
        }
        if self.concurrency == 0 {
            return Err(ConfigError("concurrency must be at least 1".into()));
        }
        if self.heartbeat_interval.is_zero() {
            return Err(ConfigError("heartbeat_interval must be positive".into()));
        }
        if self.heartbeat_interval >= self.lease_duration {
            return Err(ConfigError(format!(
                "heartbeat_interval ({:?}) must be shorter than lease_duration ({:?})",
                self.heartbeat_interval, self.lease_duration
            )));
        }
        if self.max_rescues == 0 {
            return Err(ConfigError("max_rescues must be at least 1".into()));
        }
        if self.worker_id.trim().is_empty() {
            return Err(ConfigError("worker_id must not be empty".into()));
        }
        Ok(())
    }
}

/// `hostname-pid-xxxx`: unique per process, and readable in the lease owner column.
fn default_worker_id() -> String {
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}-{}-{}", std::process::id(), &suffix[..4])
}

/// Runs workflow executions from a [`Store`].
///
/// ```no_run
/// # use workflow_worker_core::{Store, WorkflowWorker};
/// # async fn run(store: impl Store) -> Result<(), workflow_worker_core::Error> {
/// use std::time::Duration;
///
/// WorkflowWorker::new(store)
///     .poll_interval(Duration::from_millis(500))
///     .concurrency(20)
///     .run_until(async { tokio::signal::ctrl_c().await.ok(); })
///     .await
/// # }
/// ```
pub struct WorkflowWorker {
    store: Arc<dyn Store>,
    config: WorkerConfig,
    registry: NodeRegistry,
}

impl fmt::Debug for WorkflowWorker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkflowWorker")
            .field("config", &self.config)
            .field("registry", &self.registry)
            .finish_non_exhaustive()
    }
}

impl WorkflowWorker {
    /// A worker over `store` with the default settings and the built-in node types.
    pub fn new(store: impl Store) -> Self {
        Self {
            store: Arc::new(store),
            config: WorkerConfig::default(),
            registry: NodeRegistry::builtin(),
        }
    }

    /// Replaces every setting at once.
    #[must_use]
    pub fn config(mut self, config: WorkerConfig) -> Self {
        self.config = config;
        self
    }

    /// How long an idle worker waits between polls. Defaults to 1 s
    /// ([`DEFAULT_POLL_INTERVAL`]); at least [`MIN_POLL_INTERVAL`]. The binary reads it from
    /// `WORKFLOW_POLL_INTERVAL` (seconds).
    #[must_use]
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.config.poll_interval = interval;
        self
    }

    /// How many executions run at once. Defaults to 10 ([`DEFAULT_CONCURRENCY`]). The binary
    /// reads it from `WORKFLOW_WORKER_CONCURRENCY`.
    #[must_use]
    pub fn concurrency(mut self, concurrency: usize) -> Self {
        self.config.concurrency = concurrency;
        self
    }

    /// How long a claim holds an execution without a heartbeat. Defaults to 30 s
    /// ([`DEFAULT_LEASE_DURATION`]). A crashed worker's executions are resumed after this.
    #[must_use]
    pub fn lease_duration(mut self, duration: Duration) -> Self {
        self.config.lease_duration = duration;
        self
    }

    /// How often leases of executions in flight are renewed. Defaults to 10 s
    /// ([`DEFAULT_HEARTBEAT_INTERVAL`]); must be shorter than the lease duration.
    #[must_use]
    pub fn heartbeat_interval(mut self, interval: Duration) -> Self {
        self.config.heartbeat_interval = interval;
        self
    }

    /// How long the nodes running when shutdown is requested may take to finish. Executions
    /// start no new nodes once shutdown is requested; each is released (its lease freed, so
    /// another worker takes it over at once) when its running nodes have finished, or when
    /// the grace period ends, whichever is first. Nodes still running then are stopped and
    /// recorded as interrupted; they run again elsewhere without using up an attempt.
    /// Defaults to 30 s ([`DEFAULT_SHUTDOWN_GRACE`]).
    #[must_use]
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.config.shutdown_grace = grace;
        self
    }

    /// How many times in a row a worker may die while running a suspect execution alone
    /// before the execution is failed as poison, so one execution that crashes its worker
    /// cannot take the fleet down forever. An execution becomes a suspect, and runs alone on a
    /// worker, once [`SUSPECT_AFTER_RESCUES`] workers died in a row while running it (their
    /// leases expired with no step recorded since); deaths in the company of other executions
    /// never count, so executions that merely shared a dying worker are not quarantined. A
    /// recorded step clears the count. Defaults to 3 ([`DEFAULT_MAX_RESCUES`]).
    #[must_use]
    pub fn max_rescues(mut self, rescues: u32) -> Self {
        self.config.max_rescues = rescues;
        self
    }

    /// Whether to listen for the store's wake-up hints (PostgreSQL LISTEN/NOTIFY), so an idle
    /// worker claims a new or signalled execution at once rather than at its next poll.
    /// Turn it off behind a connection pooler in transaction mode, where LISTEN does not
    /// work; polling alone still finds everything. Defaults to on.
    #[must_use]
    pub fn wakeups(mut self, listen: bool) -> Self {
        self.config.wakeups = listen;
        self
    }

    /// Deletes executions that ended more than `age` ago, with their node runs and signals:
    /// once a minute, in batches of [`PRUNE_BATCH`], never touching executions that have not
    /// ended. Defaults to `None`: history is kept until pruned (see also the binary's
    /// `prune` command).
    #[must_use]
    pub fn prune_after(mut self, age: Option<Duration>) -> Self {
        self.config.prune_after = age;
        self
    }

    /// The id recorded as lease owner. Defaults to `hostname-pid-xxxx`.
    #[must_use]
    pub fn worker_id(mut self, id: impl Into<String>) -> Self {
        self.config.worker_id = id.into();
        self
    }

    /// Registers `executor` for nodes of type `node_type`, replacing any executor of that
    /// name (including a built-in one).
    #[must_use]
    pub fn node(mut self, node_type: impl Into<String>, executor: impl NodeExecutor) -> Self {
        self.registry.insert(node_type, Arc::new(executor));
        self
    }

    /// Replaces the node types this worker runs with `registry`. Defaults to
    /// [`NodeRegistry::builtin`].
    #[must_use]
    pub fn nodes(mut self, registry: NodeRegistry) -> Self {
        self.registry = registry;
        self
    }

    /// The node types this worker runs; validate definitions against it before saving them.
    pub fn registry(&self) -> &NodeRegistry {
        &self.registry
    }

    /// The current settings.
    pub fn settings(&self) -> &WorkerConfig {
        &self.config
    }

    /// Runs until the process ends. See [`run_until`](Self::run_until).
    pub async fn run(self) -> Result<(), Error> {
        self.run_until(std::future::pending()).await
    }

    /// Runs until `shutdown` completes, then stops claiming, lets the nodes in flight finish
    /// within the shutdown grace period, releases the executions still in flight so other
    /// workers take them over at once, and returns.
    ///
    /// Fails at once if the configuration is invalid; store errors while running are logged
    /// and retried with backoff, never returned.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send) -> Result<(), Error> {
        self.config.validate()?;
        let config = self.config.clone();
        info!(
            worker.id = %config.worker_id,
            poll_interval = ?config.poll_interval,
            concurrency = config.concurrency,
            lease = ?config.lease_duration,
            prune_after = ?config.prune_after,
            node_types = ?self.registry,
            "worker started"
        );
        let inner = Arc::new(Inner::new(&self));
        let stop_heartbeat = CancellationToken::new();
        let heartbeat = tokio::spawn(heartbeat(inner.clone(), stop_heartbeat.clone()));
        let wake = Arc::new(tokio::sync::Notify::new());
        let listener = config
            .wakeups
            .then(|| tokio::spawn(listen(inner.clone(), wake.clone())));
        let pruner = config
            .prune_after
            .map(|age| tokio::spawn(prune_periodically(inner.clone(), age)));

        let mut tasks = JoinSet::new();
        let mut tally = Tally::default();
        let mut shutdown = std::pin::pin!(shutdown);
        let mut failures = 0u32;
        // A suspect execution (its workers died while running it, again and again) runs alone:
        // if it kills this worker too, it takes no other execution down with it.
        let mut isolated: Option<ExecutionId> = None;
        // Claims compare the count before their own rescue: one less than the deaths.
        let suspect_from = i32::try_from(SUSPECT_AFTER_RESCUES - 1).unwrap_or(i32::MAX);
        // Deadlines of executions nobody holds are enforced by whichever worker sweeps first,
        // at the earliest deadline it knows of (holders enforce their own, to the moment).
        let mut last_sweep = Instant::now();
        let mut next_sweep = last_sweep;
        let mut last_schedule_check = last_sweep;
        let mut next_schedule_check = last_sweep;
        loop {
            while let Some(done) = tasks.try_join_next() {
                tally.add(done, &mut isolated);
            }
            if Instant::now() >= next_sweep {
                last_sweep = Instant::now();
                next_sweep = inner.time_out_executions().await;
            }
            if Instant::now() >= next_schedule_check {
                last_schedule_check = Instant::now();
                next_schedule_check = inner.fire_schedules().await;
            }
            let mut wait = config.poll_interval;
            // A claim that filled every free slot may have left more behind: claim again as
            // soon as a slot frees, not at the next poll.
            let mut full = false;
            let free = config
                .concurrency
                .saturating_sub(inner.slots_in_use(tasks.len()));
            if isolated.is_none() && free > 0 {
                let claimed = inner
                    .claim_batch(free, tasks.is_empty(), suspect_from)
                    .await;
                match claimed {
                    Ok((batch, suspect)) => {
                        if failures > 0 {
                            info!(worker.id = %config.worker_id, failures, "store reachable again");
                            failures = 0;
                            // Sweeps and schedule looks were put off while it was away.
                            next_sweep = Instant::now();
                            next_schedule_check = Instant::now();
                        }
                        if suspect {
                            isolated = batch.first().map(|claimed| claimed.execution.id);
                        }
                        full = !suspect && free > 0 && batch.len() == free;
                        for claimed in batch {
                            tasks.spawn(inner.clone().run_execution(claimed));
                        }
                    }
                    Err(err) => {
                        failures += 1;
                        wait = error_backoff(config.poll_interval, failures);
                        // Log the 1st, 2nd, 4th, 8th... failure in a row, not every poll.
                        if failures.is_power_of_two() {
                            error!(
                                worker.id = %config.worker_id,
                                error = %ErrorChain(&err),
                                failures,
                                retry_in = ?wait,
                                "claiming executions failed"
                            );
                        }
                    }
                }
            }
            // Wake for the next schedule tick and deadline too, not only at the next poll.
            let housekeeping = next_schedule_check.min(next_sweep);
            wait = wait.min(housekeeping.saturating_duration_since(Instant::now()));
            let busy = isolated.is_some() || inner.slots_in_use(tasks.len()) >= config.concurrency;
            if full && !busy {
                if (&mut shutdown).now_or_never().is_some() {
                    break;
                }
                continue;
            }
            tokio::select! {
                () = &mut shutdown => break,
                done = tasks.join_next(), if busy => {
                    if let Some(done) = done {
                        tally.add(done, &mut isolated);
                    }
                }
                // An execution started its last write: claim its successor meanwhile.
                () = inner.slot_freed.notified(), if busy => {}
                // A busy worker still fires schedules and sweeps deadlines on time.
                () = tokio::time::sleep_until(housekeeping), if busy => {}
                () = tokio::time::sleep(wait), if !busy => {}
                // Something changed: a new execution may carry a deadline, a schedule may have
                // been added or resumed. Idle or busy, look within a second (a busy worker has
                // no slot to claim with, so it only looks).
                () = wake.notified() => {
                    trace!(worker.id = %config.worker_id, "woken by the store");
                    next_sweep = next_sweep.min(last_sweep + HOUSEKEEPING_MIN_GAP);
                    next_schedule_check =
                        next_schedule_check.min(last_schedule_check + HOUSEKEEPING_MIN_GAP);
                }
            }
        }
        for task in listener.into_iter().chain(pruner) {
            task.abort();
        }

        info!(
            worker.id = %config.worker_id,
            in_flight = tasks.len(),
            grace = ?config.shutdown_grace,
            "worker stopping: no new claims or nodes; letting running nodes finish"
        );
        inner.draining.cancel();
        let drained = tokio::time::timeout(config.shutdown_grace, async {
            while let Some(done) = tasks.join_next().await {
                tally.add(done, &mut None);
            }
        })
        .await;
        if drained.is_err() {
            warn!(
                worker.id = %config.worker_id,
                in_flight = tasks.len(),
                "grace period exceeded; interrupting the nodes still running"
            );
            inner.interrupt.cancel();
            let released = tokio::time::timeout(RELEASE_TIMEOUT, async {
                while let Some(done) = tasks.join_next().await {
                    tally.add(done, &mut None);
                }
            })
            .await;
            if released.is_err() {
                warn!(
                    worker.id = %config.worker_id,
                    abandoned = tasks.len(),
                    "could not release every execution; the rest resume when their leases expire"
                );
                tasks.shutdown().await;
            }
        }
        stop_heartbeat.cancel();
        let _ = heartbeat.await;
        // Bounded like the releases: a database that is away must not hold the exit.
        let gone = tokio::time::timeout(
            RELEASE_TIMEOUT,
            inner.store.remove_worker(&config.worker_id),
        )
        .await;
        if !matches!(gone, Ok(Ok(()))) {
            debug!(worker.id = %config.worker_id, "could not remove this worker's presence; it expires");
        }
        info!(
            worker.id = %config.worker_id,
            finished = tally.finished,
            released = tally.released,
            dropped = tally.dropped,
            "worker stopped"
        );
        Ok(())
    }

    /// Claims one batch (up to the concurrency) and runs each claimed execution as far as it
    /// goes (to its end, or until it waits for a retry), then returns how many were claimed.
    /// Tests use it to step the worker without a poll loop.
    pub async fn run_once(&self) -> Result<usize, Error> {
        self.config.validate()?;
        let inner = Arc::new(Inner::new(self));
        let batch = inner
            .claim(self.config.concurrency, RescueFilter::Any)
            .await?;
        let claimed = batch.len();
        let mut tasks = JoinSet::new();
        for execution in batch {
            tasks.spawn(inner.clone().run_execution(execution));
        }
        while let Some(done) = tasks.join_next().await {
            Tally::default().add(done, &mut None);
        }
        Ok(claimed)
    }
}

fn error_backoff(poll_interval: Duration, failures: u32) -> Duration {
    poll_interval
        .saturating_mul(1 << failures.min(16))
        .min(MAX_ERROR_BACKOFF)
}

/// How the execution tasks of a worker ended, for its stop line.
#[derive(Debug, Default)]
struct Tally {
    /// Completed, failed, timed out, or parked (for a retry, a signal or a timer).
    finished: usize,
    /// Released on shutdown for another worker to take over.
    released: usize,
    /// Dropped: lease lost, store unreachable, or aborted.
    dropped: usize,
}

impl Tally {
    /// Counts a task's end, and clears `isolated` when it was the isolated execution.
    fn add(
        &mut self,
        result: Result<(ExecutionId, Ended), tokio::task::JoinError>,
        isolated: &mut Option<ExecutionId>,
    ) {
        // An isolated execution runs alone, so a task that panicked while one is isolated
        // was that execution's.
        match &result {
            Ok((id, _)) if *isolated == Some(*id) => *isolated = None,
            Err(_) => *isolated = None,
            Ok(_) => {}
        }
        match result {
            Ok((_, Ended::Finished)) => self.finished += 1,
            Ok((_, Ended::Released)) => self.released += 1,
            Ok((_, Ended::Dropped)) => self.dropped += 1,
            Err(err) => {
                self.dropped += 1;
                if err.is_panic() {
                    // Node panics are caught per node; reaching this is a worker bug.
                    error!(error = %err, "execution task panicked");
                }
            }
        }
    }
}

/// Displays an error with its sources: `database unavailable: connection refused`.
struct ErrorChain<'a>(&'a (dyn std::error::Error + 'static));

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(err) = source {
            write!(f, ": {err}")?;
            source = err.source();
        }
        Ok(())
    }
}

/// A lease this worker holds on an execution in flight.
#[derive(Debug)]
struct Lease {
    token: i64,
    cancel: CancellationToken,
}

/// State shared by the poll loop, the heartbeat and the execution tasks.
struct Inner {
    store: Arc<dyn Store>,
    config: WorkerConfig,
    registry: NodeRegistry,
    /// The registry's node types, as claims ask for them: this worker claims only executions
    /// whose every node type it has.
    node_types: Vec<String>,
    /// Validated graphs by workflow version (or why this worker cannot run it); versions are
    /// immutable, so never invalidated. One load per version, however many executions of it
    /// are claimed at once.
    graphs: Mutex<HashMap<(WorkflowId, i32), Arc<GraphCell>>>,
    leases: Mutex<HashMap<ExecutionId, Lease>>,
    /// Shutdown requested: start no new nodes, release executions once their nodes finish.
    draining: CancellationToken,
    /// The grace period is over: stop running nodes, record them interrupted, release.
    interrupt: CancellationToken,
    /// Steps on their way to [`write_steps`], which records them in batches.
    steps: mpsc::UnboundedSender<StepRequest>,
    /// Executions whose last write is on its way: they run no more nodes, so the poll loop
    /// counts their slots free and claims more while those writes complete.
    finishing: AtomicUsize,
    /// Wakes the poll loop when an execution starts its last write.
    slot_freed: tokio::sync::Notify,
}

/// A workflow version's graph, loaded once.
type GraphCell = tokio::sync::OnceCell<Result<Arc<WorkflowGraph>, String>>;

/// A step for [`write_steps`], with where to send it back with its result.
type StepRequest = (RecordNodeRunsParams, oneshot::Sender<StepResult>);
type StepResult = (RecordNodeRunsParams, Result<(), StoreError>);

/// The most steps [`write_steps`] records in one call.
const MAX_STEP_BATCH: usize = 128;

/// Records the steps of every execution this worker runs, as many per call to
/// [`Store::record_steps`] as are waiting: while one batch is written the next gathers, so under
/// load many executions share one commit, and alone a step is written at once.
async fn write_steps(store: Arc<dyn Store>, mut queue: mpsc::UnboundedReceiver<StepRequest>) {
    let mut requests = Vec::with_capacity(MAX_STEP_BATCH);
    while queue.recv_many(&mut requests, MAX_STEP_BATCH).await > 0 {
        let (steps, replies): (Vec<_>, Vec<_>) = requests.drain(..).unzip();
        // A store that panics or answers for fewer steps than it was given fails those steps
        // (their executions resume when their leases expire), never the writer.
        let mut results = match AssertUnwindSafe(store.record_steps(&steps))
            .catch_unwind()
            .await
        {
            Ok(results) => results,
            Err(panic) => {
                let message = panic_message(&*panic);
                error!(error = %message, "recording steps panicked");
                Vec::new()
            }
        }
        .into_iter();
        for (step, reply) in steps.into_iter().zip(replies) {
            let result = results.next().unwrap_or_else(|| {
                Err(StoreError::Backend(
                    "the store returned no result for this step".into(),
                ))
            });
            // The execution's task may be gone (aborted at shutdown): nobody to tell.
            let _ = reply.send((step, result));
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The maps stay consistent even if a holder panicked: every critical section is one call.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// How an execution task ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    /// The execution ended, or was parked (for a retry, a signal or a timer).
    Finished,
    /// The worker is shutting down and released it for another worker.
    Released,
    /// The task stopped without ending it: lease lost or store unreachable.
    Dropped,
}

/// Why an execution task stopped without ending the execution.
enum Interrupted {
    LeaseLost,
    Store(StoreError),
}

impl From<StoreError> for Interrupted {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::LeaseLost { .. } => Self::LeaseLost,
            other => Self::Store(other),
        }
    }
}

/// How one node attempt ended.
enum Attempt {
    Completed(NodeOutcome),
    Failed { kind: ErrorKind, error: String },
    TimedOut(Duration),
}

struct AttemptResult {
    ready: ReadyNode,
    duration: Duration,
    attempt: Attempt,
    /// When the attempt began waiting, if it was resumed from a wait.
    waiting_since: Option<DateTime<Utc>>,
}

/// What a node attempt resumes with.
struct Resume {
    signals: Vec<crate::execution::Signal>,
    waiting_since: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
}

/// The database's clock as seen from a claim: the lease expires a lease length after the
/// claim, in database time, so database time now is that moment plus the time since. No
/// clock skew between the worker and the database creeps in.
struct DbClock {
    claimed_at: DateTime<Utc>,
    claimed: Instant,
}

impl DbClock {
    fn at_claim(execution: &crate::execution::Execution, lease: Duration) -> Self {
        let claimed_at = execution
            .lease_expires_at
            .zip(chrono::Duration::from_std(lease).ok())
            .map_or_else(Utc::now, |(expires, lease)| expires - lease);
        Self {
            claimed_at,
            claimed: Instant::now(),
        }
    }

    /// Database time now.
    fn now(&self) -> DateTime<Utc> {
        self.claimed_at + chrono::Duration::from_std(self.claimed.elapsed()).unwrap_or_default()
    }

    /// The instant in this worker's clock of a database time.
    fn instant_of(&self, at: DateTime<Utc>) -> Instant {
        self.claimed + (at - self.claimed_at).to_std().unwrap_or_default()
    }
}

impl Inner {
    fn new(worker: &WorkflowWorker) -> Self {
        let (steps, queue) = mpsc::unbounded_channel();
        tokio::spawn(write_steps(worker.store.clone(), queue));
        Self {
            steps,
            finishing: AtomicUsize::new(0),
            slot_freed: tokio::sync::Notify::new(),
            store: worker.store.clone(),
            config: worker.config.clone(),
            registry: worker.registry.clone(),
            node_types: worker.registry.types().map(str::to_owned).collect(),
            graphs: Mutex::default(),
            leases: Mutex::default(),
            draining: CancellationToken::new(),
            interrupt: CancellationToken::new(),
        }
    }

    /// Stops renewing the lease of this claim (`token`), leaving a newer claim of the same
    /// execution (by this worker, after the step that ended this one) alone.
    fn forget_lease(&self, id: ExecutionId, token: i64) {
        let mut leases = lock(&self.leases);
        if leases.get(&id).is_some_and(|lease| lease.token == token) {
            leases.remove(&id);
        }
    }

    /// Slots taken among `tasks` execution tasks: those busy writing their last step run no
    /// more nodes and do not count, up to one concurrency's worth, so a slow store never
    /// piles up more than twice the concurrency in tasks.
    fn slots_in_use(&self, tasks: usize) -> usize {
        let finishing = self.finishing.load(Ordering::SeqCst);
        tasks.saturating_sub(finishing.min(self.config.concurrency))
    }

    /// Records one step through [`write_steps`] and hands it back with the result.
    async fn record(&self, step: RecordNodeRunsParams) -> Result<StepResult, Interrupted> {
        // The writer lives as long as the worker; it is gone only if it panicked or the
        // runtime is shutting down. Then the execution resumes when its lease expires.
        let stopped = || {
            Interrupted::Store(StoreError::Backend(
                "the step writer stopped before recording the step".into(),
            ))
        };
        let (reply, answer) = oneshot::channel();
        self.steps.send((step, reply)).map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())
    }

    /// One poll's claim, of up to `free` executions. An idle worker asks for a suspect first,
    /// in the same statement, and runs one alone (the `true` beside the batch); a busy one
    /// claims among the others only.
    async fn claim_batch(
        &self,
        free: usize,
        idle: bool,
        suspect_from: i32,
    ) -> Result<(Vec<ClaimedExecution>, bool), StoreError> {
        if idle {
            let batch = self
                .claim(free.max(1), RescueFilter::SuspectFirst(suspect_from))
                .await?;
            // A lone claim past the threshold is the suspect (or an execution released at
            // shutdown after as many rescues: as risky, so it runs alone too).
            let suspect = matches!(&batch[..], [one] if one.execution.rescue_count > suspect_from);
            return Ok((batch, suspect));
        }
        let batch = self
            .claim(free, RescueFilter::NotSuspect(suspect_from))
            .await?;
        Ok((batch, false))
    }

    async fn claim(
        &self,
        limit: usize,
        rescues: RescueFilter,
    ) -> Result<Vec<ClaimedExecution>, StoreError> {
        let started = Instant::now();
        let batch = self
            .store
            .claim_executions(ClaimParams {
                worker_id: self.config.worker_id.clone(),
                limit: u32::try_from(limit).unwrap_or(u32::MAX),
                lease_duration: self.config.lease_duration,
                rescues,
                node_types: Some(self.node_types.clone()),
            })
            .await?;
        metrics::claimed(started.elapsed());
        if batch.is_empty() {
            trace!(worker.id = %self.config.worker_id, "nothing to claim");
        } else {
            debug!(worker.id = %self.config.worker_id, claimed = batch.len(), "claimed executions");
        }
        let mut leases = lock(&self.leases);
        for claimed in &batch {
            leases.insert(
                claimed.execution.id,
                Lease {
                    token: claimed.execution.lease_token,
                    cancel: CancellationToken::new(),
                },
            );
        }
        Ok(batch)
    }

    /// Fires the schedules that are due and returns when to look again: at the earliest next
    /// tick, and at least every [`HOUSEKEEPING_REFRESH`] to notice new schedules.
    async fn fire_schedules(&self) -> Instant {
        let looked = Instant::now();
        let refresh = looked + HOUSEKEEPING_REFRESH;
        let due = match self.store.due_schedules(SCHEDULE_BATCH).await {
            Ok(due) => due,
            Err(err) => {
                // The claim that follows reports an unreachable store, with backoff; looking
                // starts again when the store is back.
                debug!(error = %ErrorChain(&err), "looking for due schedules failed");
                return looked + MAX_ERROR_BACKOFF;
            }
        };
        let at =
            |tick: chrono::DateTime<Utc>| looked + (tick - due.now).to_std().unwrap_or_default();
        let mut next_check = due.next_at.map_or(refresh, |tick| at(tick).min(refresh));
        let mut triggered = 0;
        let full_batch = due.due.len() == SCHEDULE_BATCH as usize;
        for schedule in due.due {
            let parsed = match CronSchedule::parse(&schedule.cron, &schedule.timezone) {
                Ok(parsed) => parsed,
                Err(err) => {
                    error!(schedule.id = %schedule.id, error = %err, "schedule cannot fire; pausing it");
                    let _ = self.store.set_schedule_enabled(schedule.id, false).await;
                    continue;
                }
            };
            let (ticks, next_fire_at) = match schedule.next_fire_at {
                // Resumed (or new): start from the first tick after now, firing nothing.
                None => (Vec::new(), parsed.next_after(due.now)),
                Some(next) => parsed.plan(next, due.now, schedule.catch_up),
            };
            if let Some(next) = next_fire_at {
                next_check = next_check.min(at(next));
            }
            match self
                .store
                .fire_schedule(FireScheduleParams {
                    schedule_id: schedule.id,
                    expected_next_fire_at: schedule.next_fire_at,
                    ticks,
                    next_fire_at,
                })
                .await
            {
                Ok(started) => triggered += started,
                Err(err) => {
                    warn!(schedule.id = %schedule.id, error = %ErrorChain(&err), "firing a schedule failed")
                }
            }
        }
        if triggered > 0 {
            metrics::schedule_executions(triggered);
            info!(worker.id = %self.config.worker_id, count = triggered, "triggered scheduled executions");
        }
        if full_batch {
            // More may be due: look again at once.
            return Instant::now();
        }
        next_check
    }

    /// Ends executions past their deadline and returns when to sweep again: at the next
    /// deadline but not sooner than [`HOUSEKEEPING_MIN_GAP`], and at least every
    /// [`HOUSEKEEPING_REFRESH`].
    async fn time_out_executions(&self) -> Instant {
        let looked = Instant::now();
        match self.store.time_out_executions().await {
            Ok(sweep) => {
                for execution in &sweep.timed_out {
                    metrics::execution_finished(
                        &execution.workflow_name,
                        ExecutionStatus::TimedOut,
                    );
                    warn!(
                        execution.id = %execution.id,
                        workflow = %execution.workflow_name,
                        worker.id = %self.config.worker_id,
                        "execution timed out: deadline passed"
                    );
                }
                let refresh = looked + HOUSEKEEPING_REFRESH;
                match sweep.next_deadline {
                    // `looked` is a little before the database read its clock, so this is a
                    // little early: a few milliseconds more, and the sweep finds it passed.
                    // Not sooner than the minimum gap, however many deadlines follow each other.
                    Some(deadline) if deadline > sweep.now => {
                        let wait = (deadline - sweep.now).to_std().unwrap_or_default();
                        (looked + wait + Duration::from_millis(5))
                            .clamp(looked + HOUSEKEEPING_MIN_GAP, refresh)
                    }
                    // It passed but the row was held by another statement: look again soon.
                    Some(_) => looked + HOUSEKEEPING_MIN_GAP,
                    None => refresh,
                }
            }
            // The claim that follows reports an unreachable store, with backoff; sweeping
            // starts again when the store is back.
            Err(err) => {
                debug!(error = %ErrorChain(&err), "deadline sweep failed");
                looked + MAX_ERROR_BACKOFF
            }
        }
    }

    async fn run_execution(self: Arc<Self>, claimed: ClaimedExecution) -> (ExecutionId, Ended) {
        let execution = &claimed.execution;
        let span = info_span!(
            "execution",
            execution.id = %execution.id,
            workflow = %execution.workflow_name,
            worker.id = %self.config.worker_id,
        );
        let id = execution.id;
        let token = execution.lease_token;
        let workflow = execution.workflow_name.clone();
        let result = self.drive(claimed).instrument(span.clone()).await;
        self.forget_lease(id, token);
        let _entered = span.enter();
        let ended = match result {
            Ok(ended) => ended,
            Err(Interrupted::LeaseLost) => {
                metrics::lease_lost();
                // Say why: it was cancelled, timed out, or taken over by another worker.
                match self
                    .store
                    .get_execution(id)
                    .await
                    .map(|d| d.execution.status)
                {
                    Ok(ExecutionStatus::Cancelled) => {
                        metrics::execution_finished(&workflow, ExecutionStatus::Cancelled);
                        info!("execution cancelled; its running nodes were stopped");
                    }
                    Ok(ExecutionStatus::TimedOut) => {
                        warn!("execution timed out; its running nodes were stopped");
                    }
                    _ => warn!("lease lost; dropping the execution to its new owner"),
                }
                Ended::Dropped
            }
            Err(Interrupted::Store(err)) => {
                error!(
                    error = %ErrorChain(&err),
                    "store error; the execution resumes when its lease expires"
                );
                Ended::Dropped
            }
        };
        (id, ended)
    }

    async fn graph(
        &self,
        workflow_id: WorkflowId,
        version: i32,
    ) -> Result<Result<Arc<WorkflowGraph>, String>, StoreError> {
        let cell = lock(&self.graphs)
            .entry((workflow_id, version))
            .or_default()
            .clone();
        // A store error is not kept: the next execution of this version tries again.
        let loaded = cell
            .get_or_try_init(|| async {
                let saved = self
                    .store
                    .get_workflow_version(workflow_id, version)
                    .await?;
                Ok::<_, StoreError>(
                    match WorkflowGraph::validate(saved.definition, &self.registry) {
                        Ok(graph) => Ok(Arc::new(graph)),
                        Err(errors) => Err(format!(
                            "workflow \"{}\" version {version} cannot run on worker {}: {errors}",
                            saved.name, self.config.worker_id
                        )),
                    },
                )
            })
            .await?;
        Ok(loaded.clone())
    }

    /// Runs a claimed execution until it ends, parks for a retry, is released on shutdown,
    /// or the claim is lost.
    async fn drive(&self, claimed: ClaimedExecution) -> Result<Ended, Interrupted> {
        let ClaimedExecution {
            execution,
            node_runs,
            mut signals,
            unreadable,
        } = claimed;
        let clock = DbClock::at_claim(&execution, self.config.lease_duration);
        let cancel = lock(&self.leases)
            .get(&execution.id)
            .map(|lease| lease.cancel.clone())
            .unwrap_or_default();
        if execution.lease_token == 1 {
            metrics::execution_started(&execution.workflow_name);
            info!(status = %execution.status, "execution started");
        } else if execution.rescue_count > 0 {
            metrics::execution_rescued(&execution.workflow_name);
            warn!(
                lease_token = execution.lease_token,
                rescues = execution.rescue_count,
                "execution rescued: its previous worker stopped renewing the lease"
            );
        } else {
            info!(lease_token = execution.lease_token, "execution resumed");
        }
        let mut writer = Writer {
            inner: self,
            execution_id: execution.id,
            workflow: &execution.workflow_name,
            lease_token: execution.lease_token,
            pending: Vec::new(),
        };
        // A row the worker cannot read will not read better on another claim.
        if let Some(defect) = unreadable {
            return writer
                .fail(format!("execution cannot be read: {defect}"))
                .await;
        }
        let graph = match self
            .graph(execution.workflow_id, execution.workflow_version)
            .await
        {
            Ok(Ok(graph)) => graph,
            Ok(Err(error)) => return writer.fail(error).await,
            // A stored definition this worker cannot read will not get better on retry.
            Err(StoreError::InvalidData(error)) => return writer.fail(error).await,
            Err(err) => return Err(err.into()),
        };

        // The deadline in this worker's clock, measured in database time from the claim.
        let deadline_at = execution
            .deadline
            .map(|deadline| clock.instant_of(deadline));
        if deadline_at.is_some_and(|at| at <= Instant::now()) {
            return writer.time_out().await;
        }

        let mut progress = Progress::new(&graph);
        for run in &node_runs {
            let Some(index) = graph.node_index(&run.node_id) else {
                continue;
            };
            let attempt = u32::try_from(run.attempt).unwrap_or(1);
            progress.set(
                index,
                match run.status {
                    NodeRunStatus::Completed => NodeState::Completed {
                        output: run.output.clone().unwrap_or(Value::Null),
                        branch: run.branch.clone(),
                    },
                    NodeRunStatus::Skipped => NodeState::Skipped,
                    // The execution was parked until the retry was due, and it is due now.
                    NodeRunStatus::Failed | NodeRunStatus::TimedOut => {
                        NodeState::RetryDue { attempt }
                    }
                    NodeRunStatus::Interrupted | NodeRunStatus::Abandoned => {
                        NodeState::Interrupted { attempt }
                    }
                    NodeRunStatus::Waiting => NodeState::Waiting {
                        attempt,
                        since: run.started_at,
                    },
                },
            );
        }

        let execution_input = Arc::new(execution.input.clone());
        if execution.rescue_count > 0 {
            // The nodes that were due when the previous worker died are the ones it was
            // running: record them abandoned (they run again under the same attempt).
            for index in progress.skip_untaken(&graph) {
                writer.pending.push(skipped_run(&graph, index));
            }
            for node in progress.ready(&graph, &execution_input) {
                let mut run = unfinished_run(&graph, &node, NodeRunStatus::Abandoned);
                run.error = Some("the worker running it stopped renewing its lease".into());
                writer.pending.push(run);
            }
            let rescues = u32::try_from(execution.rescue_count).unwrap_or(u32::MAX);
            // The deaths past the suspect threshold happened while it ran alone.
            let alone = rescues.saturating_sub(SUSPECT_AFTER_RESCUES);
            if alone >= self.config.max_rescues {
                let nodes: Vec<&str> = writer
                    .pending
                    .iter()
                    .filter(|run| run.status == NodeRunStatus::Abandoned)
                    .map(|run| run.node_id.as_str())
                    .collect();
                let error = format!(
                    "quarantined: its worker died (lease expired) {rescues} times in a row while \
                     running it, {alone} of them while it ran alone (nodes: {}); not retried \
                     again",
                    nodes.join(", ")
                );
                return writer.fail(error).await;
            }
        }

        let mut running: JoinSet<AttemptResult> = JoinSet::new();
        // The attempts in `running`, with when they started, for interruption.
        let mut in_flight: HashMap<usize, (ReadyNode, Instant)> = HashMap::new();
        // Nodes that failed during this claim wait out their backoff with the execution parked,
        // not here; nodes that failed before the claim are due now (`run_at` has passed).
        let mut backing_off = HashSet::new();
        // When the earliest of those retries is due.
        let mut retry_at: Option<Instant> = None;
        // Nodes that chose to wait during this claim: the signal each waits for, and when its
        // timer is due. They run again when the execution is woken.
        let mut parked: HashMap<usize, (Option<String>, Option<Instant>)> = HashMap::new();
        loop {
            for index in progress.skip_untaken(&graph) {
                writer.pending.push(skipped_run(&graph, index));
            }
            let ready: Vec<ReadyNode> = progress
                .ready(&graph, &execution_input)
                .into_iter()
                .filter(|node| {
                    !backing_off.contains(&node.index) && !parked.contains_key(&node.index)
                })
                .collect();
            if ready.is_empty() && running.is_empty() {
                if progress.is_finished() {
                    let output = progress.output(&graph);
                    return writer.complete(output).await;
                }
                if !parked.is_empty() {
                    let timers = parked.values().filter_map(|(_, due)| *due).chain(retry_at);
                    let delay = timers
                        .min()
                        .map(|at| at.saturating_duration_since(Instant::now()));
                    let mut awaited: Vec<String> = parked
                        .values()
                        .filter_map(|(signal, _)| signal.clone())
                        .collect();
                    awaited.sort();
                    awaited.dedup();
                    return writer.wait(delay, awaited).await;
                }
                if let Some(at) = retry_at {
                    return writer
                        .park(at.saturating_duration_since(Instant::now()))
                        .await;
                }
                return writer
                    .fail("no node can run: the graph is stuck (this is a bug)".into())
                    .await;
            }
            let draining = self.draining.is_cancelled();
            if draining && running.is_empty() {
                return writer.release().await;
            }
            writer.flush().await?;
            if !draining {
                for node in ready {
                    let waiting_since = match progress.state(node.index) {
                        NodeState::Waiting { since, .. } => Some(*since),
                        _ => None,
                    };
                    progress.set(node.index, NodeState::Running);
                    in_flight.insert(node.index, (node.clone(), Instant::now()));
                    let resume = Resume {
                        signals: signals.clone(),
                        waiting_since,
                        now: clock.now(),
                    };
                    running.spawn(self.run_node(
                        &graph,
                        &execution,
                        &execution_input,
                        node,
                        &cancel,
                        resume,
                    ));
                }
            }

            let result = tokio::select! {
                () = cancel.cancelled() => return Err(Interrupted::LeaseLost),
                () = sleep_until_some(deadline_at) => {
                    running.abort_all();
                    for (node, started) in in_flight.into_values() {
                        let mut run = unfinished_run(&graph, &node, NodeRunStatus::TimedOut);
                        run.duration = started.elapsed();
                        run.error = Some("the execution deadline passed".into());
                        writer.pending.push(run);
                    }
                    return writer.time_out().await;
                }
                () = self.interrupt.cancelled() => {
                    running.abort_all();
                    for (node, started) in in_flight.into_values() {
                        let mut run = unfinished_run(&graph, &node, NodeRunStatus::Interrupted);
                        run.duration = started.elapsed();
                        run.error = Some("the worker shut down before the node finished".into());
                        writer.pending.push(run);
                    }
                    return writer.release().await;
                }
                // Wake up once when shutdown starts, to stop starting nodes.
                () = self.draining.cancelled(), if !draining => continue,
                joined = running.join_next() => match joined {
                    Some(Ok(result)) => result,
                    // Node panics are caught inside the task, so only a worker bug lands here.
                    Some(Err(err)) => {
                        running.abort_all();
                        return writer.fail(format!("node task crashed: {err}")).await;
                    }
                    None => continue,
                },
            };
            let index = result.ready.index;
            in_flight.remove(&index);
            let node = graph.node(index);
            let attempt = result.ready.attempt;
            let mut run = NewNodeRun {
                node_id: node.id.clone(),
                node_type: node.node_type.clone(),
                attempt,
                status: NodeRunStatus::Completed,
                input: Some(result.ready.input),
                output: None,
                branch: None,
                error: None,
                duration: result.duration,
                consumed_signal: None,
            };
            let (kind, error) = match result.attempt {
                Attempt::Completed(NodeOutcome::Wait { signal, timeout }) => {
                    info!(
                        node.id = %node.id,
                        signal = signal.as_deref(),
                        timeout = ?timeout,
                        "node waiting"
                    );
                    let since = match result.waiting_since {
                        Some(since) => since,
                        None => {
                            // The first time: record when the wait began, in database time.
                            run.status = NodeRunStatus::Waiting;
                            writer.pending.push(run);
                            clock.now()
                                - chrono::Duration::from_std(result.duration).unwrap_or_default()
                        }
                    };
                    progress.set(index, NodeState::Waiting { attempt, since });
                    parked.insert(index, (signal, timeout.map(|t| Instant::now() + t)));
                    continue;
                }
                Attempt::Completed(NodeOutcome::Signalled {
                    signal,
                    output,
                    branch,
                }) => {
                    info!(node.id = %node.id, signal.id = signal, "signal consumed");
                    signals.retain(|s| s.id != signal);
                    run.consumed_signal = Some(signal);
                    node_completed(&mut writer, &mut progress, index, run, output, branch);
                    continue;
                }
                Attempt::Completed(NodeOutcome::Complete { output, branch }) => {
                    node_completed(&mut writer, &mut progress, index, run, output, branch);
                    continue;
                }
                Attempt::Failed { kind, error } => {
                    run.status = NodeRunStatus::Failed;
                    (kind, error)
                }
                Attempt::TimedOut(limit) => {
                    run.status = NodeRunStatus::TimedOut;
                    (ErrorKind::Retryable, format!("timed out after {limit:?}"))
                }
            };
            metrics::node_run(&run.node_type, run.status, run.duration);
            run.error = Some(error.clone());
            writer.pending.push(run);
            let policy = graph.retry_policy(index);
            error!(
                node.id = %node.id,
                attempt,
                max_attempts = policy.max_attempts,
                error = %error,
                "node failed"
            );
            if kind == ErrorKind::Retryable && attempt < policy.max_attempts {
                metrics::retry(&execution.workflow_name, &node.node_type);
                let delay = policy.jittered_backoff(attempt, random_unit());
                warn!(
                    node.id = %node.id,
                    next_attempt = attempt + 1,
                    max_attempts = policy.max_attempts,
                    delay = ?delay,
                    "retrying execution"
                );
                progress.set(index, NodeState::RetryDue { attempt });
                backing_off.insert(index);
                let due = Instant::now() + delay;
                retry_at = Some(retry_at.map_or(due, |at| at.min(due)));
                continue;
            }
            running.abort_all();
            let attempts = if attempt > 1 {
                format!(" after {attempt} attempts")
            } else {
                String::new()
            };
            return writer
                .fail(format!("node \"{}\" failed{attempts}: {error}", node.id))
                .await;
        }
    }

    fn run_node(
        &self,
        graph: &WorkflowGraph,
        execution: &crate::execution::Execution,
        execution_input: &Arc<Value>,
        ready: ReadyNode,
        cancel: &CancellationToken,
        resume: Resume,
    ) -> impl Future<Output = AttemptResult> + Send + 'static {
        let node = graph.node(ready.index);
        let executor = self.registry.get(&node.node_type).cloned();
        let timeout = node
            .timeout
            .or_else(|| executor.as_ref().and_then(|e| e.default_timeout()));
        let mut ctx = NodeContext::new(
            execution.id,
            execution.workflow_id,
            node.id.clone(),
            node.node_type.clone(),
            ready.attempt,
        )
        .config(node.config.clone())
        .input(ready.input.clone())
        .execution_input(execution_input.clone())
        .signals(resume.signals)
        .resumed(resume.waiting_since, resume.now);
        ctx.cancellation = cancel.child_token();
        let waiting_since = resume.waiting_since;
        info!(
            node.id = %node.id,
            node.type = %node.node_type,
            attempt = ready.attempt,
            "node executing"
        );
        let span = tracing::Span::current();
        async move {
            let started = Instant::now();
            let node_cancel = ctx.cancellation.clone();
            let attempt = match executor {
                // Validation against this registry passed, so this cannot happen; fail safe.
                None => Attempt::Failed {
                    kind: ErrorKind::Fatal,
                    error: "node type is not registered".into(),
                },
                Some(executor) => {
                    let call = AssertUnwindSafe(executor.execute(ctx)).catch_unwind();
                    let outcome = match timeout {
                        Some(limit) => tokio::time::timeout(limit, call).await.ok(),
                        None => Some(call.await),
                    };
                    match outcome {
                        None => {
                            node_cancel.cancel();
                            Attempt::TimedOut(timeout.unwrap_or_default())
                        }
                        Some(Ok(Ok(outcome))) => Attempt::Completed(outcome),
                        Some(Ok(Err(err))) => Attempt::Failed {
                            kind: err.kind(),
                            error: ErrorChain(&err).to_string(),
                        },
                        Some(Err(panic)) => Attempt::Failed {
                            kind: ErrorKind::Retryable,
                            error: format!("node panicked: {}", panic_message(&*panic)),
                        },
                    }
                }
            };
            AttemptResult {
                ready,
                duration: started.elapsed(),
                attempt,
                waiting_since,
            }
        }
        .instrument(span)
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

/// Records a node's result and marks it completed.
fn node_completed(
    writer: &mut Writer<'_>,
    progress: &mut Progress,
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
    writer.pending.push(run);
    progress.set(index, NodeState::Completed { output, branch });
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".to_owned())
}

fn skipped_run(graph: &WorkflowGraph, index: usize) -> NewNodeRun {
    let node = graph.node(index);
    NewNodeRun {
        node_id: node.id.clone(),
        node_type: node.node_type.clone(),
        attempt: 1,
        status: NodeRunStatus::Skipped,
        input: None,
        output: None,
        branch: None,
        error: None,
        duration: Duration::ZERO,
        consumed_signal: None,
    }
}

/// A record of an attempt that started and did not end: interrupted or abandoned.
fn unfinished_run(graph: &WorkflowGraph, node: &ReadyNode, status: NodeRunStatus) -> NewNodeRun {
    let definition = graph.node(node.index);
    NewNodeRun {
        node_id: definition.id.clone(),
        node_type: definition.node_type.clone(),
        attempt: node.attempt,
        status,
        input: Some(node.input.clone()),
        output: None,
        branch: None,
        error: None,
        duration: Duration::ZERO,
        consumed_signal: None,
    }
}

/// Writes for one claimed execution, every one fenced by its lease token.
struct Writer<'a> {
    inner: &'a Inner,
    execution_id: ExecutionId,
    /// The execution's workflow name, for metrics.
    workflow: &'a str,
    lease_token: i64,
    /// Node runs not yet recorded; they go out with the next write.
    pending: Vec<NewNodeRun>,
}

impl Writer<'_> {
    /// Writes pending runs with `advance`. While the store is unreachable the write is
    /// retried with backoff for up to a lease duration: the lease is still ours meanwhile,
    /// and fencing makes a retry safe. If an attempt committed but its answer was lost, the
    /// retry finds its runs already recorded, which is success.
    async fn write(&mut self, advance: Advance) -> Result<(), Interrupted> {
        let mut step = RecordNodeRunsParams {
            execution_id: self.execution_id,
            lease_token: self.lease_token,
            worker_id: self.inner.config.worker_id.clone(),
            runs: std::mem::take(&mut self.pending),
            advance,
        };
        let give_up = Instant::now() + self.inner.config.lease_duration;
        let mut backoff = Duration::from_millis(100);
        let mut retried = false;
        loop {
            let (returned, result) = self.inner.record(step).await?;
            step = returned;
            match result {
                Ok(()) => return Ok(()),
                Err(StoreError::Conflict(_)) if retried => return Ok(()),
                Err(StoreError::Unavailable(err)) if Instant::now() + backoff < give_up => {
                    warn!(error = %ErrorChain(&*err), retry_in = ?backoff, "recording a step failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    retried = true;
                }
                Err(err) => return Err(err.into()),
            }
        }
    }

    /// Records pending node runs, keeping the execution running. Records of unfinished
    /// attempts alone wait for a real result, so they never count as progress.
    async fn flush(&mut self) -> Result<(), Interrupted> {
        let unfinished = |run: &NewNodeRun| {
            matches!(
                run.status,
                NodeRunStatus::Abandoned | NodeRunStatus::Interrupted
            )
        };
        if self.pending.iter().all(unfinished) {
            return Ok(());
        }
        self.write(Advance::Continue {
            lease_duration: self.inner.config.lease_duration,
        })
        .await
    }

    /// The last write of this claim: the heartbeat stops renewing the lease first, so it
    /// cannot mistake the released lease for a lost one.
    async fn last_write(&mut self, advance: Advance) -> Result<(), Interrupted> {
        self.inner.forget_lease(self.execution_id, self.lease_token);
        let _finishing = Finishing::start(self.inner);
        self.write(advance).await
    }

    async fn complete(&mut self, output: Value) -> Result<Ended, Interrupted> {
        let status = finish_status(ExecutionStatus::Completed);
        self.last_write(Advance::Finish {
            status,
            output: Some(output),
            error: None,
        })
        .await?;
        metrics::execution_finished(self.workflow, status);
        info!("execution completed");
        Ok(Ended::Finished)
    }

    async fn fail(&mut self, error: String) -> Result<Ended, Interrupted> {
        let status = finish_status(ExecutionStatus::Failed);
        self.last_write(Advance::Finish {
            status,
            output: None,
            error: Some(error.clone()),
        })
        .await?;
        metrics::execution_finished(self.workflow, status);
        error!(error = %error, "execution failed");
        Ok(Ended::Finished)
    }

    async fn park(&mut self, delay: Duration) -> Result<Ended, Interrupted> {
        let _ = finish_status(ExecutionStatus::Retrying);
        self.last_write(Advance::Retry { delay }).await?;
        info!(retry_in = ?delay, "execution waiting to retry");
        Ok(Ended::Finished)
    }

    async fn wait(
        &mut self,
        delay: Option<Duration>,
        signals: Vec<String>,
    ) -> Result<Ended, Interrupted> {
        let _ = finish_status(ExecutionStatus::Waiting);
        let awaited = signals.join(", ");
        self.last_write(Advance::Wait { delay, signals }).await?;
        info!(signals = %awaited, wake_in = ?delay, "execution waiting");
        Ok(Ended::Finished)
    }

    async fn time_out(&mut self) -> Result<Ended, Interrupted> {
        let status = finish_status(ExecutionStatus::TimedOut);
        self.last_write(Advance::Finish {
            status,
            output: None,
            error: Some("the execution deadline passed".into()),
        })
        .await?;
        metrics::execution_finished(self.workflow, status);
        warn!("execution timed out: deadline passed");
        Ok(Ended::Finished)
    }

    async fn release(&mut self) -> Result<Ended, Interrupted> {
        let interrupted = self
            .pending
            .iter()
            .filter(|run| run.status == NodeRunStatus::Interrupted)
            .count();
        self.last_write(Advance::Release).await?;
        info!(
            interrupted_nodes = interrupted,
            "execution released for another worker"
        );
        Ok(Ended::Released)
    }
}

/// Counts an execution among those writing their last step while it lives (so also when the
/// write is dropped half-way), and wakes the poll loop to claim in its slot.
struct Finishing<'a>(&'a Inner);

impl<'a> Finishing<'a> {
    fn start(inner: &'a Inner) -> Self {
        inner.finishing.fetch_add(1, Ordering::SeqCst);
        inner.slot_freed.notify_one();
        Self(inner)
    }
}

impl Drop for Finishing<'_> {
    fn drop(&mut self) {
        self.0.finishing.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A claimed execution is `running`; this checks the state machine allows `to` from there.
fn finish_status(to: ExecutionStatus) -> ExecutionStatus {
    match transition(ExecutionStatus::Running, to) {
        Ok(status) => status,
        Err(err) => unreachable!("{err}"),
    }
}

/// Turns the store's wake-up hints into wakes of the poll loop. Hints coalesce: many while
/// the loop is busy make one wake. If the listening connection fails, it retries with backoff;
/// polling covers the gap.
async fn listen(inner: Arc<Inner>, wake: Arc<tokio::sync::Notify>) {
    let mut failures = 0u32;
    loop {
        let mut stream = match inner.store.wakeups().await {
            Ok(Some(stream)) => stream,
            Ok(None) => return,
            Err(err) => {
                failures += 1;
                if failures.is_power_of_two() {
                    warn!(
                        worker.id = %inner.config.worker_id,
                        error = %ErrorChain(&err),
                        "listening for wake-ups failed; polling meanwhile"
                    );
                }
                tokio::time::sleep(error_backoff(inner.config.poll_interval, failures)).await;
                continue;
            }
        };
        failures = 0;
        loop {
            match stream.next().await {
                // A hint, or a reconnection after which hints may have been missed: check now.
                Ok(_) => wake.notify_one(),
                Err(err) => {
                    debug!(error = %ErrorChain(&err), "wake-up listener lost; reconnecting");
                    wake.notify_one();
                    tokio::time::sleep(inner.config.poll_interval).await;
                    break;
                }
            }
        }
    }
}

/// Deletes every execution that ended more than `older_than` ago, `batch` per statement
/// (one short transaction each) until none is left, and returns how many it deleted.
/// Executions that have not ended are never touched. See [`Store::prune_executions`].
pub async fn prune(
    store: &(impl Store + ?Sized),
    older_than: Duration,
    batch: u32,
) -> Result<u64, StoreError> {
    let batch = batch.max(1);
    let mut pruned = 0;
    loop {
        let count = store.prune_executions(older_than, batch).await?;
        pruned += count;
        if count < u64::from(batch) {
            return Ok(pruned);
        }
    }
}

/// Prunes executions that ended more than `age` ago, every [`PRUNE_INTERVAL`], in batches.
async fn prune_periodically(inner: Arc<Inner>, age: Duration) {
    let mut ticker = tokio::time::interval(PRUNE_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        match prune(&*inner.store, age, PRUNE_BATCH).await {
            Ok(0) => {}
            Ok(pruned) => {
                info!(worker.id = %inner.config.worker_id, count = pruned, older_than = ?age, "pruned finished executions");
            }
            Err(err) => {
                warn!(worker.id = %inner.config.worker_id, error = %ErrorChain(&err), "pruning finished executions failed");
            }
        }
    }
}

/// Renews the leases of executions in flight every heartbeat interval, and cancels the ones
/// found lost.
async fn heartbeat(inner: Arc<Inner>, stop: CancellationToken) {
    let mut ticker = tokio::time::interval(inner.config.heartbeat_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticker.tick() => {}
        }
        // This worker's presence, so an execution no live worker can run is told apart.
        if let Err(err) = inner
            .store
            .record_worker(
                &inner.config.worker_id,
                &inner.node_types,
                inner.config.lease_duration,
            )
            .await
        {
            debug!(worker.id = %inner.config.worker_id, error = %ErrorChain(&err), "recording this worker's presence failed");
        }
        let held: Vec<(ExecutionId, i64)> = lock(&inner.leases)
            .iter()
            .map(|(id, lease)| (*id, lease.token))
            .collect();
        if held.is_empty() {
            continue;
        }
        match inner
            .store
            .renew_leases(&held, inner.config.lease_duration)
            .await
        {
            Ok(renewed) => {
                let mut leases = lock(&inner.leases);
                for (id, token) in held {
                    if renewed.contains(&id) {
                        continue;
                    }
                    // Only if the same claim is still in flight: it may have just finished.
                    if let Some(lease) = leases.get(&id)
                        && lease.token == token
                    {
                        warn!(execution.id = %id, lease_token = token, "lease lost");
                        lease.cancel.cancel();
                        leases.remove(&id);
                    }
                }
            }
            Err(err) => warn!(
                worker.id = %inner.config.worker_id,
                error = %ErrorChain(&err),
                "renewing leases failed"
            ),
        }
    }
}
