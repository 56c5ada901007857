//! [`WorkflowWorker`]: claims runnable executions from a [`Store`] and runs their nodes.
//!
//! The worker is made of small components, one per file:
//!
//! | file | what it does |
//! |---|---|
//! | `config.rs` | [`WorkerConfig`], its defaults and rules |
//! | `poller.rs` | the loop: claims in the background, starts executions, waits, drains at shutdown |
//! | `claim_ahead.rs` | how many executions to claim beyond the free slots |
//! | `slots.rs` | the concurrency, as owned semaphore permits |
//! | `runner.rs` | one claimed execution: restores its progress, runs its ready nodes |
//! | `attempt.rs` | one node attempt: timeout, panics, cancellation |
//! | `decide.rs` | the pure decisions: retry or fail, park, quarantine, backoff |
//! | `writer.rs` | the fenced writes of one claim |
//! | `step_writer.rs` | the batching of every claim's steps into [`Store::record_steps`] |
//! | `leases.rs` | the leases held, and the heartbeat that renews them |
//! | `listener.rs` | the store's wake-up hints |
//! | `deadlines.rs`, `schedules.rs`, `pruner.rs` | the maintenance services |
//! | `cadence.rs` | when a maintenance service looks next |
//! | `clock.rs`, `graphs.rs` | database time from a claim; the cache of validated graphs |
//!
//! Claims take the free slots' worth of executions and, for a worker whose executions hold
//! their slots for less than a claim takes, some more, queued locally (leased like the
//! others) to start as slots free. Each started execution runs in its own task: the scheduler ([`Progress`](crate::graph::Progress))
//! picks the ready nodes, they run concurrently, and each result is recorded with the
//! execution's progress in one fenced write. A recorded node never runs again; a node
//! interrupted before its result was recorded runs again on whichever worker resumes the
//! execution (at-least-once).
//!
//! A heartbeat renews the leases of executions in flight. A worker that loses a lease (it
//! was paused past the lease, or the database was unreachable) cancels that execution's
//! nodes and drops it without writing more: the new owner's writes stand.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::Error;
use crate::node::{NodeExecutor, NodeRegistry};
use crate::store::Store;

mod attempt;
mod cadence;
mod claim_ahead;
mod clock;
mod config;
mod deadlines;
mod decide;
mod graphs;
mod leases;
mod listener;
mod map;
mod poller;
mod pruner;
mod runner;
mod schedules;
mod slots;
mod step_writer;
mod timers;
mod writer;

pub use config::{
    ConfigError, ConfigRule, DEFAULT_CLAIM_AHEAD, DEFAULT_CONCURRENCY, DEFAULT_HEARTBEAT_INTERVAL,
    DEFAULT_LEASE_DURATION, DEFAULT_MAX_RESCUES, DEFAULT_NODE_OUTPUT_LIMIT, DEFAULT_POLL_INTERVAL,
    DEFAULT_SHUTDOWN_GRACE, MIN_NODE_OUTPUT_LIMIT, MIN_POLL_INTERVAL, WorkerConfig,
};
pub use decide::SUSPECT_AFTER_RESCUES;
pub use pruner::{PRUNE_BATCH, PRUNE_BUSY_PERCENT, prune};

use graphs::GraphCache;
use leases::{Heartbeat, Leases, heartbeat};
use poller::{Poller, RELEASE_TIMEOUT};
use pruner::{PruneConfig, prune_periodically};
use step_writer::StepWriter;
use writer::Fence;

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

    /// How many executions run nodes at once. Defaults to 10 ([`DEFAULT_CONCURRENCY`]). The
    /// binary reads it from `WORKFLOW_WORKER_CONCURRENCY`. While an execution writes a step
    /// between two nodes, its slot may run a node of an execution claimed ahead (see
    /// [`claim_ahead`](Self::claim_ahead)); it waits for a slot before its next node.
    #[must_use]
    pub fn concurrency(mut self, concurrency: usize) -> Self {
        self.config.concurrency = concurrency;
        self
    }

    /// The most executions claimed ahead of free slots, waiting (leased, their leases renewed)
    /// in a local queue to start as slots free. Defaults to 500 ([`DEFAULT_CLAIM_AHEAD`]);
    /// 0 claims only into free slots. The worker keeps as many queued as its slots get
    /// through in two claims' time, measured as it runs: with nodes that take longer than
    /// a claim (a few milliseconds), none, so it never sits on executions another worker
    /// could run; with short ones, claims and step writes come in large batches. Queued
    /// executions are released at shutdown. The binary reads it from
    /// `WORKFLOW_CLAIM_AHEAD`.
    #[must_use]
    pub fn claim_ahead(mut self, max: usize) -> Self {
        self.config.claim_ahead = max;
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
    /// once a minute, in batches of [`PRUNE_BATCH`], resting between them so that it deletes
    /// [`PRUNE_BUSY_PERCENT`] of the time, never touching executions that have not ended.
    /// Defaults to `None`: history is kept until pruned (see also the binary's
    /// `prune` command).
    #[must_use]
    pub fn prune_after(mut self, age: Option<Duration>) -> Self {
        self.config.prune_after = age;
        self
    }

    /// The largest output a node may record, in bytes of JSON: a node whose output is larger
    /// fails for good (no retry) with an error naming the limit, instead of bloating the
    /// history and every read of it. Hand large data between nodes by reference (a URL, an
    /// object store key) instead. Defaults to 1 MiB ([`DEFAULT_NODE_OUTPUT_LIMIT`]); at least
    /// [`MIN_NODE_OUTPUT_LIMIT`].
    #[must_use]
    pub fn node_output_limit(mut self, bytes: usize) -> Self {
        self.config.node_output_limit = bytes;
        self
    }

    /// Priority ageing: an execution runnable for longer than `period` is raised to the
    /// highest priority among the executions that have not ended, so a low-priority
    /// execution waits at most about that long behind newer, higher work (checked with the
    /// deadline sweep, at least once a minute). Defaults to five minutes
    /// ([`DEFAULT_PRIORITY_AGEING`](crate::flow::DEFAULT_PRIORITY_AGEING)); `None` keeps
    /// priorities strict.
    #[must_use]
    pub fn priority_ageing(mut self, period: Option<Duration>) -> Self {
        self.config.priority_ageing = period;
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

    /// A [`Client`](crate::Client) over this worker's store that validates workflows against
    /// its node types. Take it before [`run_until`](Self::run_until), which consumes the
    /// worker.
    pub fn client(&self) -> crate::Client {
        crate::Client::from_shared(self.store.clone(), self.registry.clone())
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
        let config = &self.config;
        info!(
            worker.id = %config.worker_id,
            poll_interval = ?config.poll_interval,
            concurrency = config.concurrency,
            lease = ?config.lease_duration,
            prune_after = ?config.prune_after,
            priority_ageing = ?config.priority_ageing,
            node_types = ?self.registry,
            "worker started"
        );
        let shared = Arc::new(Shared::new(&self));
        let wake = Arc::new(Notify::new());
        let services = Services::start(&shared, Some(wake.clone())).await;
        let mut poller = Poller::new(shared, wake);
        poller.poll(shutdown).await;
        services.stop_looking();
        poller.drain().await;
        services.stop().await;
        info!(
            worker.id = %config.worker_id,
            finished = poller.tally.finished,
            released = poller.tally.released,
            dropped = poller.tally.dropped,
            "worker stopped"
        );
        Ok(())
    }

    /// Claims one batch (up to the concurrency) and runs each claimed execution as far as it
    /// goes (to its end, or until it waits for a retry), then returns how many were claimed.
    /// It runs the machinery of [`run_until`](Self::run_until) (the same claim, runner and
    /// heartbeat) for one poll. Tests use it to step the worker without a poll loop.
    pub async fn run_once(&self) -> Result<usize, Error> {
        self.config.validate()?;
        let shared = Arc::new(Shared::new(self));
        let services = Services::start(&shared, None).await;
        let mut poller = Poller::new(shared, Arc::new(Notify::new()));
        let claimed = poller.claim(self.config.concurrency).await;
        poller.finish().await;
        services.stop().await;
        Ok(claimed?)
    }
}

/// The longest a starting worker waits for its wake-up listener to subscribe.
const LISTEN_WAIT: Duration = Duration::from_secs(5);

/// The tasks beside the poll loop: the heartbeat, and (for `run_until`) the wake-up listener
/// and the pruner.
struct Services {
    shared: Arc<Shared>,
    stop_heartbeat: CancellationToken,
    heartbeat: tokio::task::JoinHandle<()>,
    /// The listener and the pruner, aborted when shutdown begins.
    lookers: Vec<tokio::task::JoinHandle<()>>,
}

impl Services {
    /// Starts the heartbeat, and with `wake` the listener (if configured) and the pruner; waits
    /// (up to [`LISTEN_WAIT`]) until the listener has subscribed, so that hints about what the
    /// worker claims from then on (a cancel, above all) are not missed.
    async fn start(shared: &Arc<Shared>, wake: Option<Arc<Notify>>) -> Self {
        let config = &shared.config;
        let stop_heartbeat = CancellationToken::new();
        let heartbeat = tokio::spawn(heartbeat(shared.heartbeat(), stop_heartbeat.clone()));
        let mut lookers = Vec::new();
        if let Some(wake) = wake {
            if config.wakeups {
                let (subscribed, listening) = tokio::sync::oneshot::channel();
                let store = shared.store.clone();
                lookers.push(tokio::spawn(listener::listen(
                    Box::new(move || {
                        let store = store.clone();
                        Box::pin(async move { store.wakeups().await })
                    }),
                    config.worker_id.clone(),
                    config.poll_interval,
                    wake,
                    shared.fence.leases.clone(),
                    subscribed,
                )));
                // A store that is slow or away holds the start no longer than this: polling
                // and the heartbeat do not depend on hints.
                let _ = tokio::time::timeout(LISTEN_WAIT, listening).await;
            }
            if let Some(age) = config.prune_after {
                lookers.push(tokio::spawn(prune_periodically(
                    PruneConfig::new(age),
                    shared.store.clone(),
                    config.worker_id.as_str().into(),
                )));
            }
        }
        Self {
            shared: shared.clone(),
            stop_heartbeat,
            heartbeat,
            lookers,
        }
    }

    /// Shutdown began: no more wake-ups or pruning.
    fn stop_looking(&self) {
        for task in &self.lookers {
            task.abort();
        }
    }

    /// The executions are drained: stops the heartbeat and removes this worker's presence.
    async fn stop(self) {
        self.stop_looking();
        self.stop_heartbeat.cancel();
        let _ = self.heartbeat.await;
        let worker_id = &self.shared.config.worker_id;
        // Bounded like the releases: a database that is away must not hold the exit.
        let gone =
            tokio::time::timeout(RELEASE_TIMEOUT, self.shared.store.remove_worker(worker_id)).await;
        if !matches!(gone, Ok(Ok(()))) {
            debug!(worker.id = %worker_id, "could not remove this worker's presence; it expires");
        }
    }
}

/// What the poll loop, the heartbeat and the execution tasks of one run share.
struct Shared {
    store: Arc<dyn Store>,
    config: WorkerConfig,
    registry: NodeRegistry,
    /// The registry's node types, as claims ask for them: this worker claims only executions
    /// whose every node type it has.
    node_types: Vec<String>,
    graphs: GraphCache,
    /// How the execution tasks write: the step writer and the leases they are fenced by.
    fence: Fence,
    /// Shutdown requested: start no new nodes, release executions once their nodes finish.
    draining: CancellationToken,
    /// The grace period is over: stop running nodes, record them interrupted, release.
    interrupt: CancellationToken,
    /// When executions parked briefly by this worker become due.
    timers: timers::Timers,
}

impl Shared {
    fn new(worker: &WorkflowWorker) -> Self {
        let config = worker.config.clone();
        let fence = Fence {
            steps: StepWriter::spawn(worker.store.clone()),
            leases: Arc::new(Leases::default()),
            worker_id: config.worker_id.as_str().into(),
            lease_duration: config.lease_duration,
        };
        Self {
            store: worker.store.clone(),
            registry: worker.registry.clone(),
            node_types: worker.registry.types().map(str::to_owned).collect(),
            graphs: GraphCache::default(),
            fence,
            draining: CancellationToken::new(),
            interrupt: CancellationToken::new(),
            timers: timers::Timers::default(),
            config,
        }
    }

    fn heartbeat(&self) -> Heartbeat {
        Heartbeat {
            store: self.store.clone(),
            leases: self.fence.leases.clone(),
            worker_id: self.config.worker_id.clone(),
            node_types: self.node_types.clone(),
            interval: self.config.heartbeat_interval,
            lease_duration: self.config.lease_duration,
        }
    }
}

/// Displays an error with its sources: `database unavailable: connection refused`.
pub(crate) struct ErrorChain<'a>(pub(crate) &'a (dyn std::error::Error + 'static));

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

/// The message of a caught panic.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_shows_with_its_causes() {
        let cause = std::io::Error::other("connection refused");
        let err = crate::StoreError::Unavailable(Box::new(cause));
        assert_eq!(
            ErrorChain(&err).to_string(),
            "database unavailable: connection refused"
        );
    }

    #[test]
    fn panic_messages_are_read_from_str_and_string_payloads() {
        let text = std::panic::catch_unwind(|| panic!("boom")).unwrap_err();
        assert_eq!(panic_message(&*text), "boom");
        let formatted = std::panic::catch_unwind(|| panic!("{}", 42)).unwrap_err();
        assert_eq!(panic_message(&*formatted), "42");
        let other = std::panic::catch_unwind(|| std::panic::panic_any(7_u8)).unwrap_err();
        assert_eq!(panic_message(&*other), "non-string panic payload");
    }
}
