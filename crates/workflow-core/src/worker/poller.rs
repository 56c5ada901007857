//! [`Poller`]: the worker's loop. Each turn it reaps finished execution tasks, lets the
//! maintenance services run if due, claims as many executions as there are free slots and
//! dispatches each to its own task, then waits for whatever comes first: a slot freeing, the
//! next poll, a store hint, a maintenance deadline, or shutdown. After shutdown,
//! [`drain`](Poller::drain) lets the tasks finish within the grace period.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use tokio::sync::Notify;
use tokio::task::{JoinError, JoinSet};
use tokio::time::Instant;
use tracing::{debug, error, info, trace, warn};

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
    /// One task per claimed execution, spawned by [`claim`](Self::claim) and reaped by the
    /// loop into the tally.
    tasks: JoinSet<(ExecutionId, Ended)>,
    /// The worker's concurrency: a claim takes at most the free slots.
    slots: Slots,
    /// How the tasks ended, for the stop line.
    pub(super) tally: Tally,
    /// Failed claims in a row: sets the backoff, and "reachable again" when it ends.
    failures: u32,
    /// A suspect execution (its workers died while running it, again and again) running
    /// alone: if it kills this worker too, it takes no other execution down with it. No
    /// claims while it runs.
    isolated: Option<ExecutionId>,
    deadlines: DeadlineSweeper,
    schedules: ScheduleFirer,
    /// Notified by the wake-up listener.
    wake: Arc<Notify>,
}

/// What the loop does after a turn.
enum Turn {
    Again,
    Stop,
}

impl Poller {
    pub(super) fn new(shared: Arc<Shared>, wake: Arc<Notify>) -> Self {
        let worker_id: Arc<str> = shared.config.worker_id.as_str().into();
        Self {
            slots: Slots::new(shared.config.concurrency),
            deadlines: DeadlineSweeper::new(
                DeadlineConfig::ageing(shared.config.priority_ageing),
                shared.store.clone(),
                worker_id.clone(),
            ),
            schedules: ScheduleFirer::new(
                ScheduleConfig::default(),
                shared.store.clone(),
                worker_id,
            ),
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
            self.deadlines.sweep_if_due().await;
            self.schedules.fire_if_due().await;
            let (wait, full) = self.claim_turn().await;
            if let Turn::Stop = self.wait(wait, full, &mut shutdown).await {
                return;
            }
        }
    }

    /// Claims into the free slots unless a suspect runs alone; returns how long to wait
    /// before polling again, and whether the claim filled every free slot (more may be
    /// waiting: claim again as soon as a slot frees, not at the next poll).
    async fn claim_turn(&mut self) -> (Duration, bool) {
        let poll_interval = self.shared.config.poll_interval;
        let free = self.slots.free();
        if self.isolated.is_some() || free == 0 {
            return (poll_interval, false);
        }
        match self.claim(free).await {
            Ok(claimed) => {
                if self.failures > 0 {
                    info!(worker.id = %self.shared.config.worker_id, failures = self.failures, "store reachable again");
                    self.failures = 0;
                    // Sweeps and schedule looks were put off while it was away.
                    self.deadlines.cadence.now_due();
                    self.schedules.cadence.now_due();
                }
                (poll_interval, self.isolated.is_none() && claimed == free)
            }
            Err(err) => {
                self.failures += 1;
                let wait = error_backoff(poll_interval, self.failures);
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
                (wait, false)
            }
        }
    }

    /// Waits for the next turn: at once after a full claim with slots left, else for a slot
    /// (busy) or the poll (idle), a hint, a maintenance deadline, or shutdown.
    async fn wait(
        &mut self,
        wait: Duration,
        full: bool,
        shutdown: &mut (impl Future<Output = ()> + Unpin),
    ) -> Turn {
        // Wake for the next schedule tick and deadline too, not only at the next poll.
        let housekeeping = self
            .deadlines
            .cadence
            .next()
            .min(self.schedules.cadence.next());
        let wait = wait.min(housekeeping.saturating_duration_since(Instant::now()));
        let idle_until = Instant::now() + wait;
        let out_of_slots = self.slots.free() == 0;
        let busy = self.isolated.is_some() || out_of_slots;
        if full && !busy {
            return match shutdown.now_or_never() {
                Some(()) => Turn::Stop,
                None => Turn::Again,
            };
        }
        enum Woken {
            Shutdown,
            TaskEnded(Option<Result<(ExecutionId, Ended), JoinError>>),
            Store,
            Timer,
        }
        let timers = &self.shared.timers;
        let woken = loop {
            // An execution this worker parked briefly becomes due before the next poll.
            let until = timers
                .next(Instant::now())
                .map_or(idle_until, |due| due.min(idle_until));
            break tokio::select! {
                () = &mut *shutdown => Woken::Shutdown,
                done = self.tasks.join_next(), if busy => Woken::TaskEnded(done),
                // An execution started its last write: claim its successor meanwhile.
                () = self.slots.freed(), if out_of_slots => Woken::Timer,
                // A busy worker still fires schedules and sweeps deadlines on time.
                () = tokio::time::sleep_until(housekeeping), if busy => Woken::Timer,
                () = tokio::time::sleep_until(until), if !busy => Woken::Timer,
                // An earlier one was parked meanwhile: wait for it instead.
                () = timers.earlier(), if !busy => continue,
                () = self.wake.notified() => Woken::Store,
            };
        };
        match woken {
            Woken::Shutdown => return Turn::Stop,
            Woken::TaskEnded(Some(done)) => self.tally.add(done, &mut self.isolated),
            Woken::TaskEnded(None) | Woken::Timer => {}
            // Something changed: a new execution may carry a deadline, a schedule may have
            // been added or resumed. Idle or busy, look within a second (a busy worker has
            // no slot to claim with, so it only looks).
            Woken::Store => {
                trace!(worker.id = %self.shared.config.worker_id, "woken by the store");
                self.deadlines.cadence.hint();
                self.schedules.cadence.hint();
            }
        }
        Turn::Again
    }

    /// Claims up to `free` executions and dispatches each to its task, returning how many.
    /// An idle worker asks for a suspect first, in the same statement, and runs one alone; a
    /// busy one claims among the others only.
    pub(super) async fn claim(&mut self, free: usize) -> Result<usize, StoreError> {
        let idle = self.tasks.is_empty();
        let rescues = if idle {
            RescueFilter::SuspectFirst(decide::suspect_from())
        } else {
            RescueFilter::NotSuspect(decide::suspect_from())
        };
        let limit = if idle { free.max(1) } else { free };
        let batch = self.claim_executions(limit, rescues).await?;
        if idle {
            let counts: Vec<i32> = batch.iter().map(|c| c.execution.rescue_count).collect();
            if decide::claimed_a_suspect(&counts) {
                self.isolated = Some(batch[0].execution.id);
            }
        }
        let claimed = batch.len();
        for (claimed, slot) in batch.into_iter().zip(self.slots.take(claimed)) {
            let execution = &claimed.execution;
            let cancel = self
                .shared
                .fence
                .leases
                .hold(execution.id, execution.lease_token);
            let claim = Claim {
                claimed,
                cancel,
                slot,
            };
            self.tasks.spawn(run_execution(self.shared.clone(), claim));
        }
        Ok(claimed)
    }

    async fn claim_executions(
        &self,
        limit: usize,
        rescues: RescueFilter,
    ) -> Result<Vec<ClaimedExecution>, StoreError> {
        let config = &self.shared.config;
        let started = Instant::now();
        let batch = self
            .shared
            .store
            .claim_executions(ClaimParams {
                worker_id: config.worker_id.clone(),
                limit: u32::try_from(limit).unwrap_or(u32::MAX),
                lease_duration: config.lease_duration,
                rescues,
                node_types: Some(self.shared.node_types.clone()),
            })
            .await?;
        metrics::claimed(started.elapsed());
        if batch.is_empty() {
            trace!(worker.id = %config.worker_id, "nothing to claim");
        } else {
            debug!(worker.id = %config.worker_id, claimed = batch.len(), "claimed executions");
        }
        Ok(batch)
    }

    /// Waits for every task to end, however long it takes (what [`run_once`] does).
    ///
    /// [`run_once`]: super::WorkflowWorker::run_once
    pub(super) async fn finish(&mut self) {
        while let Some(done) = self.tasks.join_next().await {
            self.tally.add(done, &mut self.isolated);
        }
    }

    /// After shutdown: no new nodes start; the tasks get the grace period to finish, then
    /// their nodes are interrupted and they get [`RELEASE_TIMEOUT`] to release; the rest
    /// are aborted (their executions resume when their leases expire).
    pub(super) async fn drain(&mut self) {
        let config = &self.shared.config;
        info!(
            worker.id = %config.worker_id,
            in_flight = self.tasks.len(),
            grace = ?config.shutdown_grace,
            "worker stopping: no new claims or nodes; letting running nodes finish"
        );
        self.shared.draining.cancel();
        let grace = config.shutdown_grace;
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
