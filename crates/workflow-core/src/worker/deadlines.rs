//! [`DeadlineSweeper`]: ends executions past their deadline that no worker holds, lets go
//! held executions whose concurrency groups have room, and ages priorities.
//!
//! A worker holding an execution enforces its deadline itself, to the moment. The ones nobody
//! holds (waiting, retrying, pending) are ended by whichever worker sweeps first, at the
//! earliest deadline it knows of, and at least every [`DeadlineConfig::refresh`]. The same
//! sweep raises the priority of executions runnable for longer than the priority ageing
//! period ([`WorkflowWorker::priority_ageing`](super::WorkflowWorker::priority_ageing)).

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::ErrorChain;
use super::decide::MAX_ERROR_BACKOFF;
use crate::metrics;
use crate::state::ExecutionStatus;
use crate::store::{DeadlineSweep, Store};

/// How often to sweep when no deadline is known, by default.
pub(super) const DEFAULT_REFRESH: Duration = Duration::from_secs(60);
/// The shortest time between two sweeps, by default.
pub(super) const DEFAULT_MIN_GAP: Duration = Duration::from_secs(1);
/// At most this many executions have their priority raised per sweep.
const AGEING_BATCH: u32 = 1000;

/// When a [`DeadlineSweeper`] sweeps.
#[derive(Debug, Clone, Copy)]
pub(super) struct DeadlineConfig {
    /// The longest time between two sweeps: new executions may carry deadlines.
    pub(super) refresh: Duration,
    /// The shortest time between two sweeps, however many deadlines follow each other.
    pub(super) min_gap: Duration,
    /// Raise executions runnable for longer than this to the top priority; `None`: never.
    pub(super) priority_ageing: Option<Duration>,
}

impl DeadlineConfig {
    /// The default sweep, ageing priorities past `priority_ageing`: it sweeps at least that
    /// often, so an execution waits little longer than the period before it is raised.
    pub(super) fn ageing(priority_ageing: Option<Duration>) -> Self {
        Self {
            refresh: priority_ageing.map_or(DEFAULT_REFRESH, |period| {
                period.clamp(DEFAULT_MIN_GAP, DEFAULT_REFRESH)
            }),
            min_gap: DEFAULT_MIN_GAP,
            priority_ageing,
        }
    }
}

/// Sweeps deadlines; the poll loop starts a [`sweep`](Self::sweep) beside it when its
/// [`Cadence`](super::cadence::Cadence) says one is due.
pub(super) struct DeadlineSweeper {
    config: DeadlineConfig,
    store: Arc<dyn Store>,
    worker_id: Arc<str>,
}

impl DeadlineSweeper {
    pub(super) fn new(config: DeadlineConfig, store: Arc<dyn Store>, worker_id: Arc<str>) -> Self {
        Self {
            config,
            store,
            worker_id,
        }
    }

    /// The shortest time between two sweeps.
    pub(super) fn min_gap(&self) -> Duration {
        self.config.min_gap
    }

    /// Sweeps (a sweep that started at `looked`) and returns when the next is due.
    pub(super) async fn sweep(&self, looked: Instant) -> Instant {
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
                        worker.id = %self.worker_id,
                        "execution timed out: deadline passed"
                    );
                }
                if sweep.released > 0 {
                    info!(
                        released = sweep.released,
                        worker.id = %self.worker_id,
                        "held executions let go: their concurrency groups had room"
                    );
                }
                self.age_priorities().await;
                next_sweep(&self.config, looked, &sweep)
            }
            // The claim that follows reports an unreachable store, with backoff; sweeping
            // starts again when the store is back.
            Err(err) => {
                debug!(error = %ErrorChain(&err), "deadline sweep failed");
                looked + MAX_ERROR_BACKOFF
            }
        }
    }
}

impl DeadlineSweeper {
    /// Raises the priority of executions runnable for longer than the ageing period.
    async fn age_priorities(&self) {
        let Some(period) = self.config.priority_ageing else {
            return;
        };
        match self.store.age_priorities(period, AGEING_BATCH).await {
            Ok(aged) => {
                for execution in &aged {
                    debug!(
                        execution.id = %execution.id,
                        from = execution.from,
                        to = execution.to,
                        "execution priority raised by ageing"
                    );
                }
                if let Some(first) = aged.first() {
                    info!(
                        executions = aged.len(),
                        to = first.to,
                        runnable_for_over = ?period,
                        worker.id = %self.worker_id,
                        "priorities raised by ageing"
                    );
                }
            }
            Err(err) => debug!(error = %ErrorChain(&err), "priority ageing failed"),
        }
    }
}

/// When to sweep again after a sweep that started at `looked`: at the next deadline but not
/// sooner than the minimum gap, and at least every refresh.
fn next_sweep(config: &DeadlineConfig, looked: Instant, sweep: &DeadlineSweep) -> Instant {
    let refresh = looked + config.refresh;
    match sweep.next_deadline {
        // `looked` is a little before the database read its clock, so this is a little
        // early: a few milliseconds more, and the sweep finds it passed.
        Some(deadline) if deadline > sweep.now => {
            let wait = (deadline - sweep.now).to_std().unwrap_or_default();
            (looked + wait + Duration::from_millis(5)).clamp(looked + config.min_gap, refresh)
        }
        // It passed but the row was held by another statement: look again soon.
        Some(_) => looked + config.min_gap,
        None => refresh,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sweep(next_in: Option<i64>) -> DeadlineSweep {
        let now = chrono::Utc::now();
        DeadlineSweep {
            now,
            timed_out: Vec::new(),
            next_deadline: next_in.map(|ms| now + chrono::Duration::milliseconds(ms)),
            released: 0,
        }
    }

    #[test]
    fn the_next_sweep_is_at_the_next_deadline_within_the_gap_and_the_refresh() {
        let config = DeadlineConfig::ageing(Some(crate::flow::DEFAULT_PRIORITY_AGEING));
        assert_eq!(config.refresh, DEFAULT_REFRESH);
        assert_eq!(
            DeadlineConfig::ageing(Some(Duration::from_secs(20))).refresh,
            Duration::from_secs(20),
            "sweeps at least as often as priorities age"
        );
        let looked = Instant::now();
        let after = |next_in| next_sweep(&config, looked, &sweep(next_in)) - looked;
        assert_eq!(after(Some(5_000)), Duration::from_millis(5_005));
        assert_eq!(after(Some(10)), config.min_gap, "not sooner than the gap");
        assert_eq!(after(Some(-10)), config.min_gap, "passed but held: soon");
        assert_eq!(after(Some(3_600_000)), config.refresh);
        assert_eq!(after(None), config.refresh);
    }
}
