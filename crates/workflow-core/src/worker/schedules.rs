//! [`ScheduleFirer`]: starts the executions of cron schedules that are due.
//!
//! Any worker may fire a schedule; [`Store::fire_schedule`] is fenced by the tick it read, so
//! a tick fires once however many workers look. A worker looks at the earliest next tick it
//! knows of, and at least every [`ScheduleConfig::refresh`] to notice new schedules.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;
use tracing::{debug, error, info, warn};

use super::ErrorChain;
use super::decide::MAX_ERROR_BACKOFF;
use crate::metrics;
use crate::schedule::{CronSchedule, Schedule, ScheduleError};
use crate::store::{FireScheduleParams, Store};

/// How often to look for new schedules when none is due sooner, by default.
pub(super) const DEFAULT_REFRESH: Duration = Duration::from_secs(60);
/// The shortest time between two looks, by default.
pub(super) const DEFAULT_MIN_GAP: Duration = Duration::from_secs(1);
/// How many due schedules are fired per look, by default.
pub(super) const DEFAULT_BATCH: u32 = 100;

/// When and how much a [`ScheduleFirer`] fires.
#[derive(Debug, Clone, Copy)]
pub(super) struct ScheduleConfig {
    /// The longest time between two looks.
    pub(super) refresh: Duration,
    /// The shortest time between two looks prompted by the store's hints.
    pub(super) min_gap: Duration,
    /// Due schedules fired per look; a full batch looks again at once.
    pub(super) batch: u32,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        Self {
            refresh: DEFAULT_REFRESH,
            min_gap: DEFAULT_MIN_GAP,
            batch: DEFAULT_BATCH,
        }
    }
}

/// Fires due schedules; the poll loop starts a [`fire`](Self::fire) beside it when its
/// [`Cadence`](super::cadence::Cadence) says a look is due.
pub(super) struct ScheduleFirer {
    config: ScheduleConfig,
    store: Arc<dyn Store>,
    worker_id: Arc<str>,
}

impl ScheduleFirer {
    pub(super) fn new(config: ScheduleConfig, store: Arc<dyn Store>, worker_id: Arc<str>) -> Self {
        Self {
            config,
            store,
            worker_id,
        }
    }

    /// The shortest time between two looks.
    pub(super) fn min_gap(&self) -> Duration {
        self.config.min_gap
    }

    /// Fires the schedules that are due and returns when to look again.
    pub(super) async fn fire(&self, looked: Instant) -> Instant {
        let refresh = looked + self.config.refresh;
        let due = match self.store.due_schedules(self.config.batch).await {
            Ok(due) => due,
            Err(err) => {
                // The claim that follows reports an unreachable store, with backoff; looking
                // starts again when the store is back.
                debug!(error = %ErrorChain(&err), "looking for due schedules failed");
                return looked + MAX_ERROR_BACKOFF;
            }
        };
        // The instant here of a tick in database time.
        let at = |tick: DateTime<Utc>| looked + (tick - due.now).to_std().unwrap_or_default();
        let mut next_look = due.next_at.map_or(refresh, |tick| at(tick).min(refresh));
        let full_batch = due.due.len() == self.config.batch as usize;
        let mut triggered = 0;
        for schedule in due.due {
            let (ticks, next_fire_at) = match plan(&schedule, due.now) {
                Ok(plan) => plan,
                Err(err) => {
                    error!(schedule.id = %schedule.id, error = %err, "schedule cannot fire; pausing it");
                    let _ = self.store.pause_schedule(schedule.id).await;
                    continue;
                }
            };
            if let Some(next) = next_fire_at {
                next_look = next_look.min(at(next));
            }
            let fired = self
                .store
                .fire_schedule(FireScheduleParams {
                    schedule_id: schedule.id,
                    expected_next_fire_at: schedule.next_fire_at,
                    ticks,
                    next_fire_at,
                })
                .await;
            match fired {
                Ok(started) => triggered += started,
                Err(err) => {
                    warn!(schedule.id = %schedule.id, error = %ErrorChain(&err), "firing a schedule failed")
                }
            }
        }
        if triggered > 0 {
            metrics::schedule_executions(triggered);
            info!(worker.id = %self.worker_id, count = triggered, "triggered scheduled executions");
        }
        if full_batch {
            // More may be due: look again at once.
            return Instant::now();
        }
        next_look
    }
}

/// The ticks to fire, and the tick after them.
type Plan = (Vec<DateTime<Utc>>, Option<DateTime<Utc>>);

/// What to fire for a due schedule at `now` (database time): the ticks to start executions
/// for, and the next tick. A resumed or new one (no next tick yet) fires nothing and starts
/// from the first tick after now.
fn plan(schedule: &Schedule, now: DateTime<Utc>) -> Result<Plan, ScheduleError> {
    let parsed = CronSchedule::parse(&schedule.cron, &schedule.timezone)?;
    Ok(match schedule.next_fire_at {
        None => (Vec::new(), parsed.next_after(now)),
        Some(next) => parsed.plan(next, now, schedule.catch_up),
    })
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use serde_json::Value;

    use super::*;
    use crate::execution::WorkflowId;
    use crate::schedule::ScheduleId;

    fn schedule(cron: &str, next_fire_at: Option<DateTime<Utc>>, catch_up: u32) -> Schedule {
        Schedule {
            id: ScheduleId(uuid::Uuid::new_v4()),
            workflow_id: WorkflowId::new(),
            workflow_name: "w".into(),
            cron: cron.into(),
            timezone: "UTC".into(),
            input: Value::Null,
            enabled: true,
            catch_up,
            next_fire_at,
            last_fire_at: None,
            created_at: Utc::now(),
        }
    }

    fn at(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 2, h, m, 0).unwrap()
    }

    #[test]
    fn a_resumed_schedule_fires_nothing_and_starts_after_now() {
        let (ticks, next) = plan(&schedule("*/15 * * * *", None, 1), at(10, 7)).unwrap();
        assert!(ticks.is_empty());
        assert_eq!(next, Some(at(10, 15)));
    }

    #[test]
    fn a_due_schedule_fires_its_latest_missed_ticks_up_to_its_catch_up() {
        let (ticks, next) = plan(&schedule("*/15 * * * *", Some(at(9, 0)), 2), at(10, 7)).unwrap();
        assert_eq!(ticks, vec![at(9, 45), at(10, 0)]);
        assert_eq!(next, Some(at(10, 15)));
    }

    #[test]
    fn a_schedule_that_cannot_be_read_is_an_error_not_a_tick() {
        let err = plan(&schedule("61 * * * *", Some(at(9, 0)), 1), at(10, 0)).unwrap_err();
        assert!(matches!(err, ScheduleError::InvalidCron { .. }), "{err}");
    }
}
