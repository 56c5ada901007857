//! [`Poller`]: the worker's loop. Each turn it reaps finished execution tasks, starts
//! executions from its local queue in the free slots, starts a claim in the background when
//! the queue runs low, and the maintenance services' looks (deadline sweep, schedules) in the
//! background when due; then it waits for whatever comes first: the claim's answer, a slot
//! freeing, the next poll, a store hint, the end of the looks or the next one's time, or
//! shutdown. Nothing the loop waits for sits behind a maintenance statement. The queue holds
//! executions claimed ahead of free slots ([`ClaimAhead`] sizes it; nothing ahead for nodes
//! slower than a claim), so slots never wait for a claim's round trip while work is waiting.
//! After shutdown, [`drain`](Poller::drain) releases what is queued and lets the tasks finish
//! within the grace period.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use tokio::sync::Notify;
use tokio::task::{JoinError, JoinHandle, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, trace, warn};

use super::cadence::Cadence;
use super::claim_ahead::ClaimAhead;
use super::deadlines::{DeadlineConfig, DeadlineSweeper};
use super::decide::{self, error_backoff};
use super::runner::{Claim, run_execution};
use super::schedules::{ScheduleConfig, ScheduleFirer};
use super::slots::Slots;
use super::writer::Ended;
use super::{ErrorChain, Shared};
use crate::execution::ExecutionId;
use crate::metrics;
use crate::store::{ClaimParams, ClaimedExecution, RescueFilter, StoreError};

/// How long executions get to record their release once the grace period is over.
pub(super) const RELEASE_TIMEOUT: Duration = Duration::from_secs(5);

/// The loop's state. Only the loop reads and writes these fields; the execution tasks talk
/// back through their slots (freed when their last write starts) and their task results.
pub(super) struct Poller {
    shared: Arc<Shared>,
    /// One task per execution started, spawned by [`dispatch`](Self::dispatch) and reaped
    /// by the loop into the tally.
    tasks: JoinSet<(ExecutionId, Ended)>,
    /// The worker's concurrency: executions start only in free slots.
    slots: Slots,
    /// Executions claimed and not started yet, in the order claimed: leased (the heartbeat
    /// renews them), each started as a slot frees.
    queue: VecDeque<Queued>,
    /// How many executions to keep queued.
    ahead: ClaimAhead,
    /// The claim on its way, if any: at most one at a time.
    claiming: Option<JoinHandle<Claimed>>,
    /// No claim before this (the next poll, or the backoff after a failed claim), unless the
    /// last claim got all it asked for.
    next_claim: Instant,
    /// The last claim got all it asked for: more may be waiting.
    more: bool,
    /// How the tasks ended, for the stop line.
    pub(super) tally: Tally,
    /// Failed claims in a row: sets the backoff, and "reachable again" when it ends.
    failures: u32,
    /// A suspect execution (its workers died while running it, again and again) running
    /// alone: if it kills this worker too, it takes no other execution down with it. No
    /// claims while it runs.
    isolated: Option<ExecutionId>,
    /// The maintenance services. Their looks run in a task beside the loop, so that neither a
    /// claim (a wake-up's, say) nor shutdown waits behind their statements.
    deadlines: Arc<DeadlineSweeper>,
    schedules: Arc<ScheduleFirer>,
    /// When each looks next.
    sweeps: Cadence,
    looks: Cadence,
    /// The looks on their way, if any: one round at a time.
    housekeeping: Option<JoinHandle<Housekept>>,
    /// Notified by the wake-up listener.
    wake: Arc<Notify>,
}

/// An execution claimed ahead: its claim, and what cancels it once started.
struct Queued {
    claimed: ClaimedExecution,
    cancel: CancellationToken,
}

/// A claim's answer.
struct Claimed {
    asked: usize,
    /// It was an idle worker's claim (a suspect first).
    idle: bool,
    took: Duration,
    result: Result<Vec<ClaimedExecution>, StoreError>,
}

/// A round of maintenance: when the next sweep and the next look are due, for those it ran.
struct Housekept {
    swept: Option<Instant>,
    looked: Option<Instant>,
}

/// What the loop does after a turn.
enum Turn {
    Again,
    Stop,
}

impl Poller {
    pub(super) fn new(shared: Arc<Shared>, wake: Arc<Notify>) -> Self {
        let worker_id: Arc<str> = shared.config.worker_id.as_str().into();
        let config = &shared.config;
        let ahead = ClaimAhead::new(config.claim_ahead, config.concurrency);
        let deadlines = Arc::new(DeadlineSweeper::new(
            DeadlineConfig::ageing(config.priority_ageing),
            shared.store.clone(),
            worker_id.clone(),
        ));
        let schedules = Arc::new(ScheduleFirer::new(
            ScheduleConfig::default(),
            shared.store.clone(),
            worker_id,
        ));
        Self {
            slots: Slots::new(
                config.concurrency,
                config.concurrency + config.claim_ahead,
                ahead.slot_time.clone(),
            ),
            ahead,
            queue: VecDeque::new(),
            claiming: None,
            next_claim: Instant::now(),
            more: false,
            deadlines: deadlines.clone(),
            schedules: schedules.clone(),
            sweeps: Cadence::new(deadlines.min_gap()),
            looks: Cadence::new(schedules.min_gap()),
            housekeeping: None,
            shared,
            tasks: JoinSet::new(),
            tally: Tally::default(),
            failures: 0,
            isolated: None,
            wake,
        }
    }

    /// Polls until `shutdown` completes.
    pub(super) async fn poll(&mut self, shutdown: impl Future<Output = ()> + Send) {
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            while let Some(done) = self.tasks.try_join_next() {
                self.tally.add(done, &mut self.isolated);
            }
            self.dispatch();
            self.claim_if_due();
            self.housekeep_if_due();
            if let Turn::Stop = self.wait(&mut shutdown).await {
                return;
            }
        }
    }

    /// Starts queued executions in the free slots.
    fn dispatch(&mut self) {
        let count = self.queue.len().min(self.slots.free());
        for slot in self.slots.take(count) {
            let Queued { claimed, cancel } = self.queue.pop_front().expect("counted above");
            let claim = Claim {
                claimed,
                cancel,
                slot,
            };
            self.tasks.spawn(run_execution(self.shared.clone(), claim));
        }
        self.slots.set_queued(!self.queue.is_empty());
    }

    /// How many executions a claim would ask for now; 0 when none is needed or allowed.
    fn wanted(&self) -> usize {
        if self.isolated.is_some() || self.claiming.is_some() {
            return 0;
        }
        self.ahead.wanted(self.slots.free(), self.queue.len())
    }

    /// Starts a claim in the background if one is wanted and due. An idle worker asks for a
    /// suspect first, in the same statement, and runs one alone; a busy one claims among the
    /// others only.
    fn claim_if_due(&mut self) {
        let wanted = self.wanted();
        if wanted == 0 || (!self.more && Instant::now() < self.next_claim) {
            return;
        }
        let idle = self.tasks.is_empty() && self.queue.is_empty();
        let shared = self.shared.clone();
        self.claiming = Some(tokio::spawn(async move {
            claim_executions(&shared, wanted, idle).await
        }));
    }

    /// Starts the deadline sweep and the schedule look that are due, one after the other in a
    /// task beside the loop, unless the last round is still on its way.
    fn housekeep_if_due(&mut self) {
        if self.housekeeping.is_some() {
            return;
        }
        let sweep = self.sweeps.start();
        let look = self.looks.start();
        if sweep.is_none() && look.is_none() {
            return;
        }
        let deadlines = self.deadlines.clone();
        let schedules = self.schedules.clone();
        self.housekeeping = Some(tokio::spawn(async move {
            let swept = match sweep {
                Some(started) => Some(deadlines.sweep(started).await),
                None => None,
            };
            let looked = match look {
                Some(started) => Some(schedules.fire(started).await),
                None => None,
            };
            Housekept { swept, looked }
        }));
    }

    /// Takes a round of maintenance's answer: when each service looks next. A round that died
    /// (a panic) is tried again after the error backoff.
    fn housekept(&mut self, done: Result<Housekept, JoinError>) {
        match done {
            Ok(Housekept { swept, looked }) => {
                if let Some(next) = swept {
                    self.sweeps.ended(next);
                }
                if let Some(next) = looked {
                    self.looks.ended(next);
                }
            }
            Err(err) => {
                error!(error = %err, "the maintenance task died");
                let again = Instant::now() + decide::MAX_ERROR_BACKOFF;
                self.sweeps.ended(again);
                self.looks.ended(again);
            }
        }
    }

    /// Takes a claim's answer: queues what it got, holding the leases, or backs off.
    fn claimed(&mut self, claimed: Claimed) {
        let poll_interval = self.shared.config.poll_interval;
        match claimed.result {
            Ok(batch) => {
                if self.failures > 0 {
                    info!(worker.id = %self.shared.config.worker_id, failures = self.failures, "store reachable again");
                    self.failures = 0;
                    // Sweeps and schedule looks were put off while it was away.
                    self.sweeps.now_due();
                    self.looks.now_due();
                }
                self.ahead.claim_time.add(claimed.took);
                self.more = batch.len() == claimed.asked;
                self.next_claim = Instant::now() + poll_interval;
                if claimed.idle {
                    let counts: Vec<i32> = batch.iter().map(|c| c.execution.rescue_count).collect();
                    if decide::claimed_a_suspect(&counts) {
                        self.isolated = Some(batch[0].execution.id);
                        self.more = false;
                    }
                }
                for claimed in batch {
                    let execution = &claimed.execution;
                    let cancel = self
                        .shared
                        .fence
                        .leases
                        .hold(execution.id, execution.lease_token);
                    self.queue.push_back(Queued { claimed, cancel });
                }
                self.slots.set_queued(!self.queue.is_empty());
            }
            Err(err) => {
                self.failures += 1;
                let wait = error_backoff(poll_interval, self.failures);
                self.more = false;
                self.next_claim = Instant::now() + wait;
                // Log the 1st, 2nd, 4th, 8th... failure in a row, not every poll.
                if self.failures.is_power_of_two() {
                    error!(
                        worker.id = %self.shared.config.worker_id,
                        error = %ErrorChain(&err),
                        failures = self.failures,
                        retry_in = ?wait,
                        "claiming executions failed"
                    );
                }
            }
        }
    }

    /// Waits for the next turn: a claim's answer, a slot freeing while none is free, the next
    /// claim falling due (the poll, or an execution this worker parked briefly), a hint, a
    /// maintenance deadline, or shutdown.
    async fn wait(&mut self, shutdown: &mut (impl Future<Output = ()> + Unpin)) -> Turn {
        // Start what is queued in slots freed since (execution tasks run beside this loop),
        // and claim again at once after a full claim, if more is wanted.
        // One reading of the free slots for both decisions: with none free, the wait below
        // wakes for the first one freed after this reading.
        let out_of_slots = self.slots.free() == 0;
        let startable = !self.queue.is_empty() && !out_of_slots;
        if startable || (self.more && self.wanted() > 0) {
            return match shutdown.now_or_never() {
                Some(()) => Turn::Stop,
                None => Turn::Again,
            };
        }
        // Wake for the next schedule tick and deadline too, not only at the next poll; while a
        // round of maintenance is on its way, for its end instead.
        let housekeeping = self
            .housekeeping
            .is_none()
            .then(|| self.sweeps.next().min(self.looks.next()));
        let could_claim = self.wanted() > 0;
        let claim_at = [could_claim.then_some(self.next_claim), housekeeping]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or_else(|| Instant::now() + self.shared.config.poll_interval);
        enum Woken {
            Shutdown,
            Claimed(Result<Claimed, JoinError>),
            Housekept(Result<Housekept, JoinError>),
            TaskEnded(Option<Result<(ExecutionId, Ended), JoinError>>),
            SlotFreed,
            ParkedDue,
            Timer,
            Store,
        }
        let timers = &self.shared.timers;
        let woken = loop {
            // An execution this worker parked briefly becomes due before the next poll.
            let parked = timers.next(Instant::now()).filter(|_| could_claim);
            break tokio::select! {
                () = &mut *shutdown => Woken::Shutdown,
                claimed = async { self.claiming.as_mut().expect("guarded").await },
                    if self.claiming.is_some() => Woken::Claimed(claimed),
                kept = async { self.housekeeping.as_mut().expect("guarded").await },
                    if self.housekeeping.is_some() => Woken::Housekept(kept),
                done = self.tasks.join_next(), if self.isolated.is_some() => Woken::TaskEnded(done),
                // An execution started its last write: start or claim its successor.
                () = self.slots.freed(), if out_of_slots => Woken::SlotFreed,
                () = tokio::time::sleep_until(parked.unwrap_or(claim_at)), if parked.is_some_and(|at| at < claim_at) => Woken::ParkedDue,
                () = tokio::time::sleep_until(claim_at) => Woken::Timer,
                // An earlier one was parked meanwhile: wait for it instead.
                () = timers.earlier(), if could_claim => continue,
                () = self.wake.notified() => Woken::Store,
            };
        };
        match woken {
            Woken::Shutdown => return Turn::Stop,
            Woken::Claimed(claimed) => {
                self.claiming = None;
                match claimed {
                    Ok(claimed) => self.claimed(claimed),
                    Err(err) => error!(error = %err, "the claim task died"),
                }
            }
            Woken::Housekept(kept) => {
                self.housekeeping = None;
                self.housekept(kept);
            }
            Woken::TaskEnded(Some(done)) => self.tally.add(done, &mut self.isolated),
            Woken::TaskEnded(None) | Woken::Timer => {}
            Woken::SlotFreed | Woken::ParkedDue => self.next_claim = Instant::now(),
            // Something changed: a new execution may be runnable or carry a deadline, a
            // schedule may have been added or resumed. Claim now, and look within a second.
            Woken::Store => {
                trace!(worker.id = %self.shared.config.worker_id, "woken by the store");
                self.next_claim = Instant::now();
                self.sweeps.hint();
                self.looks.hint();
            }
        }
        Turn::Again
    }

    /// Claims up to `free` executions and starts them, returning how many (what
    /// [`run_once`] does: one claim, awaited).
    ///
    /// [`run_once`]: super::WorkflowWorker::run_once
    pub(super) async fn claim(&mut self, free: usize) -> Result<usize, StoreError> {
        let idle = self.tasks.is_empty() && self.queue.is_empty();
        let Claimed {
            asked,
            took,
            result,
            ..
        } = claim_executions(&self.shared, free, idle).await;
        let batch = result?;
        let claimed = batch.len();
        self.claimed(Claimed {
            asked,
            idle,
            took,
            result: Ok(batch),
        });
        self.dispatch();
        Ok(claimed)
    }

    /// Waits for every task to end, however long it takes (what [`run_once`] does).
    ///
    /// [`run_once`]: super::WorkflowWorker::run_once
    pub(super) async fn finish(&mut self) {
        while let Some(done) = self.tasks.join_next().await {
            self.tally.add(done, &mut self.isolated);
        }
    }

    /// After shutdown: no new nodes start; what is queued (and what a claim on its way gets)
    /// is released at once; the tasks get the grace period to finish, then their nodes are
    /// interrupted and they get [`RELEASE_TIMEOUT`] to release; the rest are aborted (their
    /// executions resume when their leases expire).
    pub(super) async fn drain(&mut self) {
        let config = &self.shared.config;
        info!(
            worker.id = %config.worker_id,
            in_flight = self.tasks.len(),
            queued = self.queue.len(),
            grace = ?config.shutdown_grace,
            "worker stopping: no new claims or nodes; letting running nodes finish"
        );
        self.shared.draining.cancel();
        // A sweep or schedule look cut short is done again by the next worker to look: each of
        // its statements is atomic.
        if let Some(housekeeping) = self.housekeeping.take() {
            housekeeping.abort();
        }
        if let Some(claiming) = self.claiming.take() {
            match tokio::time::timeout(RELEASE_TIMEOUT, claiming).await {
                Ok(Ok(claimed)) => self.claimed(claimed),
                Ok(Err(err)) => error!(error = %err, "the claim task died"),
                Err(_) => warn!(
                    worker.id = %self.shared.config.worker_id,
                    "a claim still on its way at shutdown; what it took resumes when its leases expire"
                ),
            }
        }
        // Each queued execution is released by a task of its own, as a running one is once
        // its nodes end: shutdown has begun, so it starts no node.
        for Queued { claimed, cancel } in self.queue.drain(..) {
            let claim = Claim {
                claimed,
                cancel,
                slot: Slots::detached(),
            };
            self.tasks.spawn(run_execution(self.shared.clone(), claim));
        }
        self.slots.set_queued(false);
        let grace = self.shared.config.shutdown_grace;
        if tokio::time::timeout(grace, self.finish()).await.is_ok() {
            return;
        }
        warn!(
            worker.id = %self.shared.config.worker_id,
            in_flight = self.tasks.len(),
            "grace period exceeded; interrupting the nodes still running"
        );
        self.shared.interrupt.cancel();
        if tokio::time::timeout(RELEASE_TIMEOUT, self.finish())
            .await
            .is_ok()
        {
            return;
        }
        warn!(
            worker.id = %self.shared.config.worker_id,
            abandoned = self.tasks.len(),
            "could not release every execution; the rest resume when their leases expire"
        );
        self.tasks.shutdown().await;
    }
}

/// Claims up to `limit` executions for this worker (a suspect first when `idle`), timed.
async fn claim_executions(shared: &Shared, limit: usize, idle: bool) -> Claimed {
    let config = &shared.config;
    let rescues = if idle {
        RescueFilter::SuspectFirst(decide::suspect_from())
    } else {
        RescueFilter::NotSuspect(decide::suspect_from())
    };
    let started = Instant::now();
    let result = shared
        .store
        .claim_executions(ClaimParams {
            worker_id: config.worker_id.clone(),
            limit: u32::try_from(limit.max(1)).unwrap_or(u32::MAX),
            lease_duration: config.lease_duration,
            rescues,
            node_types: Some(shared.node_types.clone()),
        })
        .await;
    let took = started.elapsed();
    match &result {
        Ok(batch) if batch.is_empty() => {
            metrics::claimed(took);
            trace!(worker.id = %config.worker_id, "nothing to claim");
        }
        Ok(batch) => {
            metrics::claimed(took);
            debug!(worker.id = %config.worker_id, claimed = batch.len(), "claimed executions");
        }
        Err(_) => {}
    }
    Claimed {
        asked: limit,
        idle,
        took,
        result,
    }
}

/// How the execution tasks of a worker ended, for its stop line.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Tally {
    /// Completed, failed, timed out, or parked (for a retry, a signal or a timer).
    pub(super) finished: usize,
    /// Released on shutdown for another worker to take over.
    pub(super) released: usize,
    /// Dropped: lease lost, store unreachable, or aborted.
    pub(super) dropped: usize,
}

impl Tally {
    /// Counts a task's end, and clears `isolated` when it was the isolated execution.
    fn add(
        &mut self,
        result: Result<(ExecutionId, Ended), JoinError>,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_tally_counts_each_end_and_the_isolated_executions_end_lifts_isolation() {
        let mut tally = Tally::default();
        let (suspect, other) = (ExecutionId::new(), ExecutionId::new());
        let mut isolated = Some(suspect);
        tally.add(Ok((other, Ended::Finished)), &mut isolated);
        assert_eq!(
            isolated,
            Some(suspect),
            "another execution's end changes nothing"
        );
        tally.add(Ok((suspect, Ended::Dropped)), &mut isolated);
        assert_eq!(isolated, None);
        tally.add(Ok((other, Ended::Released)), &mut isolated);

        // A task that died while one was isolated was the isolated one's.
        let mut isolated = Some(suspect);
        let panicked = tokio::spawn(async { panic!("worker bug") })
            .await
            .unwrap_err();
        tally.add(Err(panicked), &mut isolated);
        assert_eq!(isolated, None);
        assert_eq!(
            tally,
            Tally {
                finished: 1,
                released: 1,
                dropped: 2
            }
        );
    }
}
