//! Cron schedules: which ticks are due, and when the next one is.
//!
//! A schedule starts a workflow on every tick of a cron expression in an IANA time zone
//! (default UTC). Workers fire due schedules each poll; a unique key per schedule and tick
//! makes each tick start exactly one execution however many workers poll at once.
//!
//! # Expressions
//! Exactly what crontab means by them (Vixie cron, cronie, crontab.guru): five fields
//! `minute hour day-of-month month day-of-week`, days of the week 0-7 (0 and 7 Sunday, 1
//! Monday) or `SUN`-`SAT`, months 1-12 or `JAN`-`DEC`, lists, ranges and steps, a day matching
//! either a restricted day of month or a restricted day of week, and `@hourly`, `@daily`,
//! `@weekly`, `@monthly`, `@yearly`. Six fields put seconds first and seven add years
//! (1970-2099) last, with the same rules for the other fields: `*/10 * * * * *` ticks every
//! ten seconds. The tests check the five-field rules against a reference implementation.
//!
//! # Time zones and daylight saving
//! Ticks are computed in the schedule's time zone, as cron handles clock changes: a job at a
//! fixed time of day (neither minute nor hour starts with `*`) whose local time is skipped
//! when clocks spring forward runs once right after the jump, and once (the first time) when
//! its local time repeats as they fall back; a job with `*` in its minute or hour field runs
//! at every local time that matches, so not in a skipped hour and twice in a repeated one.
//!
//! # Missed ticks
//! When more than one tick is due at once (every worker was down for a while, or workers
//! poll less often than the schedule ticks), the schedule fires its `catch_up` most recent
//! due ticks (default 1: once for the missed period, no burst) and moves on to the first tick
//! after now.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::execution::WorkflowId;

mod crontab;

/// Identifies a schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(transparent)]
pub struct ScheduleId(pub Uuid);

impl fmt::Display for ScheduleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for ScheduleId {
    type Err = uuid::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(Self)
    }
}

/// A stored schedule.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Schedule {
    /// Its id.
    pub id: ScheduleId,
    /// The workflow it starts.
    pub workflow_id: WorkflowId,
    /// The workflow's name.
    pub workflow_name: String,
    /// The cron expression.
    pub cron: String,
    /// The IANA time zone the expression is read in.
    pub timezone: String,
    /// The input of every execution it starts.
    pub input: Value,
    /// Paused schedules fire nothing.
    pub enabled: bool,
    /// How many missed ticks to fire when several are due at once.
    pub catch_up: u32,
    /// The next tick (database time).
    pub next_fire_at: Option<DateTime<Utc>>,
    /// The last tick fired.
    pub last_fire_at: Option<DateTime<Utc>>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

/// A cron expression or time zone that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScheduleError {
    /// The expression does not parse.
    #[error("invalid cron expression \"{expression}\": {reason}")]
    InvalidCron {
        /// The expression as given.
        expression: String,
        /// What the parser said.
        reason: String,
    },
    /// The time zone is not an IANA name.
    #[error("unknown time zone \"{0}\" (expected an IANA name such as UTC or Europe/Berlin)")]
    InvalidTimeZone(String),
    /// The expression never ticks after now.
    #[error("cron expression \"{0}\" has no future tick")]
    NoFutureTick(String),
    /// `catch_up` is 0.
    #[error("catch_up must be at least 1")]
    InvalidCatchUp,
}

/// A parsed cron expression in a time zone.
#[derive(Debug, Clone)]
pub struct CronSchedule {
    crontab: crontab::Crontab,
    timezone: Tz,
}

impl CronSchedule {
    /// Parses `expression` (5, 6 or 7 fields, or an `@` name) in the IANA time zone
    /// `timezone`.
    pub fn parse(expression: &str, timezone: &str) -> Result<Self, ScheduleError> {
        let crontab =
            crontab::Crontab::parse(expression).map_err(|reason| ScheduleError::InvalidCron {
                expression: expression.to_owned(),
                reason,
            })?;
        let timezone = Tz::from_str(timezone)
            .map_err(|_| ScheduleError::InvalidTimeZone(timezone.to_owned()))?;
        Ok(Self { crontab, timezone })
    }

    /// The ticks after `after`, in order (see the module docs for daylight saving).
    pub fn ticks_after(&self, after: DateTime<Utc>) -> impl Iterator<Item = DateTime<Utc>> + '_ {
        self.crontab.ticks_after(self.timezone, after)
    }

    /// The first tick after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.ticks_after(after).next()
    }

    /// What to fire at `now` for a schedule whose next tick was `next_fire_at`: the due ticks
    /// to start executions for (at most `catch_up` of the latest when several are due), and
    /// the next tick after `now`.
    pub fn plan(
        &self,
        next_fire_at: DateTime<Utc>,
        now: DateTime<Utc>,
        catch_up: u32,
    ) -> (Vec<DateTime<Utc>>, Option<DateTime<Utc>>) {
        if next_fire_at > now {
            return (Vec::new(), Some(next_fire_at));
        }
        // A stored tick the expression does not have (computed by an earlier release's
        // rules, before expressions meant what crontab means) is not fired.
        let genuine = self
            .ticks_after(next_fire_at - chrono::Duration::seconds(1))
            .next()
            == Some(next_fire_at);
        let mut due = if genuine {
            vec![next_fire_at]
        } else {
            Vec::new()
        };
        let mut next = None;
        for tick in self.ticks_after(next_fire_at) {
            if tick > now {
                next = Some(tick);
                break;
            }
            due.push(tick);
            // Only the latest `catch_up` matter; keep the list short after long outages.
            if due.len() > 2 * catch_up as usize + 1024 {
                due.drain(..due.len() - catch_up as usize);
            }
        }
        let keep = (catch_up as usize).max(1).min(due.len());
        if keep == 0 {
            return (Vec::new(), next);
        }
        let fired = due.split_off(due.len() - keep);
        (fired, next)
    }
}

/// Checks a schedule's settings as they will be stored.
pub fn validate(
    expression: &str,
    timezone: &str,
    catch_up: u32,
) -> Result<CronSchedule, ScheduleError> {
    if catch_up == 0 {
        return Err(ScheduleError::InvalidCatchUp);
    }
    CronSchedule::parse(expression, timezone)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn five_field_expressions_tick_at_second_zero() {
        let every_15 = CronSchedule::parse("*/15 * * * *", "UTC").unwrap();
        let ticks: Vec<_> = every_15
            .ticks_after(utc("2026-01-01T10:07:30Z"))
            .take(2)
            .collect();
        assert_eq!(
            ticks,
            vec![utc("2026-01-01T10:15:00Z"), utc("2026-01-01T10:30:00Z")]
        );
    }

    #[test]
    fn ticks_follow_the_time_zone() {
        let nine_berlin = CronSchedule::parse("0 9 * * *", "Europe/Berlin").unwrap();
        // Winter: UTC+1.
        assert_eq!(
            nine_berlin.next_after(utc("2026-01-15T00:00:00Z")),
            Some(utc("2026-01-15T08:00:00Z"))
        );
        // Summer: UTC+2.
        assert_eq!(
            nine_berlin.next_after(utc("2026-07-15T00:00:00Z")),
            Some(utc("2026-07-15T07:00:00Z"))
        );
    }

    #[test]
    fn a_fixed_local_time_skipped_by_daylight_saving_ticks_right_after_the_jump() {
        // Berlin springs forward on 2026-03-29 at 02:00 -> 03:00: 02:30 does not exist.
        let half_past_two = CronSchedule::parse("30 2 * * *", "Europe/Berlin").unwrap();
        let ticks: Vec<_> = half_past_two
            .ticks_after(utc("2026-03-27T12:00:00Z"))
            .take(3)
            .collect();
        let berlin = |y, m, d, h, min| {
            chrono_tz::Europe::Berlin
                .with_ymd_and_hms(y, m, d, h, min, 0)
                .single()
                .unwrap()
                .with_timezone(&Utc)
        };
        assert_eq!(
            ticks,
            vec![
                berlin(2026, 3, 28, 2, 30),
                // As cron does: once, at 03:00, right after the jump.
                berlin(2026, 3, 29, 3, 0),
                berlin(2026, 3, 30, 2, 30),
            ]
        );
    }

    #[test]
    fn a_local_time_repeated_by_daylight_saving_ticks_once() {
        // Berlin falls back on 2026-10-25 at 03:00 -> 02:00: 02:30 happens twice.
        let half_past_two = CronSchedule::parse("30 2 * * *", "Europe/Berlin").unwrap();
        let ticks: Vec<_> = half_past_two
            .ticks_after(utc("2026-10-24T12:00:00Z"))
            .take(2)
            .collect();
        assert_eq!(
            ticks,
            // The first 02:30 (still UTC+2), then the next day's (UTC+1).
            vec![utc("2026-10-25T00:30:00Z"), utc("2026-10-26T01:30:00Z")]
        );
    }

    #[test]
    fn a_normal_poll_fires_the_one_due_tick() {
        let every_second = CronSchedule::parse("* * * * * *", "UTC").unwrap();
        let (fired, next) = every_second.plan(
            utc("2026-01-01T00:00:05Z"),
            utc("2026-01-01T00:00:05.300Z"),
            1,
        );
        assert_eq!(fired, vec![utc("2026-01-01T00:00:05Z")]);
        assert_eq!(next, Some(utc("2026-01-01T00:00:06Z")));
    }

    #[test]
    fn missed_ticks_fire_once_by_default_or_up_to_catch_up() {
        let every_minute = CronSchedule::parse("* * * * *", "UTC").unwrap();
        let last_due = utc("2026-01-01T10:00:00Z");
        let now = utc("2026-01-01T10:09:30Z");
        let (fired, next) = every_minute.plan(last_due, now, 1);
        assert_eq!(fired, vec![utc("2026-01-01T10:09:00Z")]);
        assert_eq!(next, Some(utc("2026-01-01T10:10:00Z")));
        let (fired, _) = every_minute.plan(last_due, now, 3);
        assert_eq!(
            fired,
            vec![
                utc("2026-01-01T10:07:00Z"),
                utc("2026-01-01T10:08:00Z"),
                utc("2026-01-01T10:09:00Z")
            ]
        );
        let (fired, next) = every_minute.plan(utc("2026-01-01T10:10:00Z"), now, 1);
        assert!(fired.is_empty(), "nothing is due before the next tick");
        assert_eq!(next, Some(utc("2026-01-01T10:10:00Z")));
    }

    #[test]
    fn a_stored_tick_the_expression_does_not_have_is_not_fired() {
        // Stored by a release that read 1-5 as Sunday to Thursday: Sunday 2026-03-01 09:00.
        let weekdays = CronSchedule::parse("0 9 * * 1-5", "UTC").unwrap();
        let (fired, next) =
            weekdays.plan(utc("2026-03-01T09:00:00Z"), utc("2026-03-01T09:00:01Z"), 1);
        assert!(fired.is_empty(), "{fired:?}");
        assert_eq!(next, Some(utc("2026-03-02T09:00:00Z")));
        // Its real ticks still fire.
        let (fired, _) = weekdays.plan(utc("2026-03-02T09:00:00Z"), utc("2026-03-02T09:00:01Z"), 1);
        assert_eq!(fired, vec![utc("2026-03-02T09:00:00Z")]);
    }

    #[test]
    fn bad_expressions_and_time_zones_are_named() {
        let err = validate("61 * * * *", "UTC", 1).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("invalid cron expression \"61 * * * *\""),
            "{err}"
        );
        let err = validate("not cron", "UTC", 1).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("invalid cron expression \"not cron\""),
            "{err}"
        );
        let err = validate("* * * * *", "Mars/Olympus", 1).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown time zone \"Mars/Olympus\" (expected an IANA name such as UTC or Europe/Berlin)"
        );
        assert_eq!(
            validate("* * * * *", "UTC", 0).unwrap_err().to_string(),
            "catch_up must be at least 1"
        );
    }
}
