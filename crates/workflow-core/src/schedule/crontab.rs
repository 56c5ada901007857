//! Cron expressions read exactly as crontab reads them (Vixie cron and its descendant cronie,
//! which crontab.guru describes), and their ticks in a time zone.
//!
//! - Five fields: `minute hour day-of-month month day-of-week`; six put seconds first; seven
//!   add years (1970-2099) last. Five-field expressions tick at second 0.
//! - Each field is a list (`1,15`) of values, ranges (`1-5`) and steps (`*/15`, `0-20/2`,
//!   `5/10` = `5-max/10`). Months take `JAN`-`DEC`, days of the week `SUN`-`SAT` (any case,
//!   also in ranges: `MON-FRI`); days of the week are 0-7 with 0 and 7 both Sunday.
//! - When both day of month and day of week are restricted (neither field starts with `*`),
//!   a day matches if either does: `0 0 1,15 * 1` fires on the 1st, the 15th and every
//!   Monday. When either starts with `*` (`*/2` too), both must match.
//! - `@yearly` (`@annually`), `@monthly`, `@weekly`, `@daily` (`@midnight`), `@hourly`.
//!
//! Daylight saving, as cron does it: a job at a fixed time (neither minute nor hour starts
//! with `*`) whose local time is skipped when clocks spring forward runs once right after the
//! jump, and runs once (the first time) in an hour that repeats when they fall back; a job
//! with `*` in its minute or hour runs at every wall-clock time that matches, so not at all in
//! a skipped hour and twice in a repeated one.

use chrono::offset::LocalResult;
use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, TimeZone, Timelike, Utc};
use chrono_tz::Tz;

/// How far ahead a tick is looked for before an expression is said to have none.
const HORIZON_DAYS: i64 = 366 * 10;

/// A parsed expression: which values each field allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Crontab {
    seconds: Values,
    minutes: Values,
    hours: Values,
    days: Values,
    months: Values,
    weekdays: Values,
    years: Option<Values>,
    /// The day-of-month field starts with `*` (cron's `DOM_STAR`).
    day_star: bool,
    /// The day-of-week field starts with `*` (cron's `DOW_STAR`).
    weekday_star: bool,
    /// Neither minute nor hour starts with `*`: the job runs at fixed times of day.
    fixed_time: bool,
}

/// The allowed values of one field, by offset from its minimum.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Values {
    min: u32,
    allowed: Vec<bool>,
}

impl Values {
    fn contains(&self, value: u32) -> bool {
        value
            .checked_sub(self.min)
            .and_then(|i| self.allowed.get(i as usize))
            .copied()
            .unwrap_or(false)
    }

    /// The smallest allowed value at or above `from`.
    fn first_from(&self, from: u32) -> Option<u32> {
        let start = from.saturating_sub(self.min) as usize;
        self.allowed
            .iter()
            .enumerate()
            .skip(start)
            .find(|(_, allowed)| **allowed)
            .map(|(i, _)| self.min + i as u32)
    }
}

/// What a field accepts.
struct Field {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
    /// The allowed values as the error message states them.
    allowed: &'static str,
}

const SECOND: Field = Field {
    name: "second",
    min: 0,
    max: 59,
    names: &[],
    allowed: "0-59",
};
const MINUTE: Field = Field {
    name: "minute",
    min: 0,
    max: 59,
    names: &[],
    allowed: "0-59",
};
const HOUR: Field = Field {
    name: "hour",
    min: 0,
    max: 23,
    names: &[],
    allowed: "0-23",
};
const DAY: Field = Field {
    name: "day of month",
    min: 1,
    max: 31,
    names: &[],
    allowed: "1-31",
};
const MONTH: Field = Field {
    name: "month",
    min: 1,
    max: 12,
    names: &[
        "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
    ],
    allowed: "1-12 or JAN-DEC",
};
const WEEKDAY: Field = Field {
    name: "day of week",
    min: 0,
    max: 7,
    names: &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"],
    allowed: "0-7 (0 and 7 are Sunday) or SUN-SAT",
};
const YEAR: Field = Field {
    name: "year",
    min: 1970,
    max: 2099,
    names: &[],
    allowed: "1970-2099",
};

/// Why an expression does not parse, in the user's terms.
pub(super) type ParseError = String;

impl Crontab {
    /// Parses an expression of 5, 6 or 7 fields, or an `@` name.
    pub(super) fn parse(expression: &str) -> Result<Self, ParseError> {
        let trimmed = expression.trim();
        let expanded = if let Some(name) = trimmed.strip_prefix('@') {
            match name.to_ascii_lowercase().as_str() {
                "yearly" | "annually" => "0 0 1 1 *",
                "monthly" => "0 0 1 * *",
                "weekly" => "0 0 * * 0",
                "daily" | "midnight" => "0 0 * * *",
                "hourly" => "0 * * * *",
                _ => {
                    return Err(format!(
                        "unknown \"{trimmed}\": expected @hourly, @daily (@midnight), @weekly, \
                         @monthly or @yearly (@annually)"
                    ));
                }
            }
        } else {
            trimmed
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        let (second, rest) = match fields.len() {
            5 => ("0", &fields[..]),
            6 | 7 => (fields[0], &fields[1..]),
            n => {
                return Err(format!(
                    "it has {n} field{}; crontab has 5 (minute hour day-of-month month \
                     day-of-week), 6 with seconds first, or 7 with years last, or is one of \
                     @hourly, @daily, @weekly, @monthly, @yearly",
                    if n == 1 { "" } else { "s" }
                ));
            }
        };
        let mut weekdays = parse_field(rest[4], &WEEKDAY)?;
        // 7 is Sunday too.
        if weekdays.allowed[7] {
            weekdays.allowed[0] = true;
        }
        weekdays.allowed.truncate(7);
        let starts_with_star = |text: &str| text.starts_with('*');
        Ok(Self {
            seconds: parse_field(second, &SECOND)?,
            minutes: parse_field(rest[0], &MINUTE)?,
            hours: parse_field(rest[1], &HOUR)?,
            days: parse_field(rest[2], &DAY)?,
            months: parse_field(rest[3], &MONTH)?,
            weekdays,
            years: rest
                .get(5)
                .map(|text| parse_field(text, &YEAR))
                .transpose()?,
            day_star: starts_with_star(rest[2]),
            weekday_star: starts_with_star(rest[4]),
            fixed_time: !starts_with_star(rest[0]) && !starts_with_star(rest[1]),
        })
    }

    /// Whether the job runs on `date`.
    fn runs_on(&self, date: NaiveDate) -> bool {
        let year_ok = self
            .years
            .as_ref()
            .is_none_or(|years| u32::try_from(date.year()).is_ok_and(|year| years.contains(year)));
        if !year_ok || !self.months.contains(date.month()) {
            return false;
        }
        let day = self.days.contains(date.day());
        let weekday = self
            .weekdays
            .contains(date.weekday().num_days_from_sunday());
        if self.day_star || self.weekday_star {
            day && weekday
        } else {
            day || weekday
        }
    }

    /// The first local time at or after `from` that the fields match, before `until`.
    fn next_local(&self, from: NaiveDateTime, until: NaiveDate) -> Option<NaiveDateTime> {
        let mut date = from.date();
        let mut time = Some((from.hour(), from.minute(), from.second()));
        while date < until {
            if self.runs_on(date)
                && let Some(found) = self.next_time_of_day(time.unwrap_or((0, 0, 0)))
            {
                return date.and_hms_opt(found.0, found.1, found.2);
            }
            date = date.succ_opt()?;
            time = None;
        }
        None
    }

    /// The first (hour, minute, second) at or after `from` that the fields allow that day.
    fn next_time_of_day(&self, from: (u32, u32, u32)) -> Option<(u32, u32, u32)> {
        let (mut hour, mut minute, mut second) = from;
        loop {
            let h = self.hours.first_from(hour)?;
            if h != hour {
                (hour, minute, second) = (h, 0, 0);
            }
            let Some(m) = self.minutes.first_from(minute) else {
                (hour, minute, second) = (hour + 1, 0, 0);
                continue;
            };
            if m != minute {
                (minute, second) = (m, 0);
            }
            match self.seconds.first_from(second) {
                Some(s) => return Some((hour, minute, s)),
                None => (minute, second) = (minute + 1, 0),
            }
            if minute > 59 {
                (hour, minute, second) = (hour + 1, 0, 0);
            }
        }
    }

    /// The ticks after `after` in `timezone`, in order.
    pub(super) fn ticks_after(&self, timezone: Tz, after: DateTime<Utc>) -> Ticks<'_> {
        let local = after.with_timezone(&timezone).naive_local();
        let until = local.date() + Duration::days(HORIZON_DAYS);
        let until = match &self.years {
            Some(years) => {
                let last = years.min + years.allowed.iter().rposition(|a| *a).unwrap_or(0) as u32;
                NaiveDate::from_ymd_opt(last as i32 + 1, 1, 1).unwrap_or(until)
            }
            None => until,
        };
        Ticks {
            crontab: self,
            timezone,
            after,
            // Local times a little before `after` can map to instants after it (a fixed time
            // skipped by a jump runs after it); the filter below drops the earlier ones.
            cursor: Some(local - Duration::hours(3)),
            until,
            pending: std::collections::VecDeque::new(),
        }
    }
}

/// The ticks of a [`Crontab`] after an instant: see [`Crontab::ticks_after`].
#[derive(Debug)]
pub(super) struct Ticks<'a> {
    crontab: &'a Crontab,
    timezone: Tz,
    /// Only ticks after this are returned; raised to each tick returned.
    after: DateTime<Utc>,
    /// Where the search of local times goes on; `None` once past the horizon.
    cursor: Option<NaiveDateTime>,
    until: NaiveDate,
    /// Instants found and not yet returned, in order.
    pending: std::collections::VecDeque<DateTime<Utc>>,
}

impl Iterator for Ticks<'_> {
    type Item = DateTime<Utc>;

    fn next(&mut self) -> Option<DateTime<Utc>> {
        loop {
            while let Some(tick) = self.pending.pop_front() {
                if tick > self.after {
                    self.after = tick;
                    return Some(tick);
                }
            }
            let local = self.crontab.next_local(self.cursor?, self.until);
            let Some(local) = local else {
                self.cursor = None;
                return None;
            };
            self.cursor = Some(local + Duration::seconds(1));
            match self.timezone.from_local_datetime(&local) {
                LocalResult::Single(tick) => self.pending.push_back(tick.with_timezone(&Utc)),
                LocalResult::None => {
                    if self.crontab.fixed_time {
                        self.pending.extend(first_after_gap(self.timezone, local));
                    }
                }
                LocalResult::Ambiguous(first, second) => {
                    if self.crontab.fixed_time {
                        self.pending.push_back(first.with_timezone(&Utc));
                    } else {
                        self.repeated_hour(
                            local,
                            first.with_timezone(&Utc),
                            second.with_timezone(&Utc),
                        );
                    }
                }
            }
        }
    }
}

impl Ticks<'_> {
    /// Queues every matching local time of a repeated stretch starting at `local`: each
    /// once in the first pass, then each again in the second, so instants stay in order.
    fn repeated_hour(&mut self, local: NaiveDateTime, first: DateTime<Utc>, second: DateTime<Utc>) {
        let mut firsts = vec![first];
        let mut seconds = vec![second];
        let mut cursor = local + Duration::seconds(1);
        while let Some(next) = self.crontab.next_local(cursor, self.until) {
            match self.timezone.from_local_datetime(&next) {
                LocalResult::Ambiguous(a, b) => {
                    firsts.push(a.with_timezone(&Utc));
                    seconds.push(b.with_timezone(&Utc));
                    cursor = next + Duration::seconds(1);
                }
                _ => break,
            }
        }
        self.cursor = Some(cursor);
        self.pending.extend(firsts);
        self.pending.extend(seconds);
    }
}

/// The instant clocks jumped past `local`, a local time that does not exist: the first
/// existing local minute after it.
fn first_after_gap(timezone: Tz, local: NaiveDateTime) -> Option<DateTime<Utc>> {
    let mut probe = local.with_second(0)?;
    // Real gaps are an hour or two; stop well past that.
    for _ in 0..(26 * 60) {
        probe += Duration::minutes(1);
        if let Some(tick) = timezone.from_local_datetime(&probe).earliest() {
            return Some(tick.with_timezone(&Utc));
        }
    }
    None
}

/// Parses one field against what it accepts.
fn parse_field(text: &str, field: &Field) -> Result<Values, ParseError> {
    let fail = |problem: String| format!("{} \"{text}\": {problem}", field.name);
    let mut allowed = vec![false; (field.max - field.min + 1) as usize];
    for item in text.split(',') {
        if item.is_empty() {
            return Err(fail("a list item is empty".into()));
        }
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => {
                let step: u32 = step
                    .parse()
                    .ok()
                    .filter(|step| (1..=field.max.max(1)).contains(step))
                    .ok_or_else(|| {
                        fail(format!(
                            "step \"{step}\" must be a number from 1 to {}",
                            field.max.max(1)
                        ))
                    })?;
                (range, Some(step))
            }
            None => (item, None),
        };
        let (first, last) = if range == "*" {
            (field.min, field.max)
        } else if let Some((from, to)) = range.split_once('-') {
            let (from, to) = (
                value(from, field).map_err(fail)?,
                value(to, field).map_err(fail)?,
            );
            if from > to {
                return Err(fail(format!("the range {from}-{to} runs backwards")));
            }
            (from, to)
        } else {
            let single = value(range, field).map_err(fail)?;
            // `5/10` is `5-max/10`, as cronie reads it.
            (single, if step.is_some() { field.max } else { single })
        };
        let mut v = first;
        while v <= last {
            allowed[(v - field.min) as usize] = true;
            v += step.unwrap_or(1);
        }
    }
    Ok(Values {
        min: field.min,
        allowed,
    })
}

/// One value of a field: a number or, where the field has them, a name.
fn value(text: &str, field: &Field) -> Result<u32, String> {
    let number = match text.parse::<u32>() {
        Ok(number) => number,
        Err(_) => {
            let upper = text.to_ascii_uppercase();
            match field.names.iter().position(|name| *name == upper) {
                Some(i) => return Ok(i as u32 + if field.min == 1 { 1 } else { 0 }),
                None if text.is_empty() => {
                    return Err(format!(
                        "a range is missing a value; allowed: {}",
                        field.allowed
                    ));
                }
                None => {
                    return Err(format!(
                        "\"{text}\" is not a {}; allowed: {}",
                        if field.names.is_empty() {
                            "number"
                        } else {
                            "number or name"
                        },
                        field.allowed
                    ));
                }
            }
        }
    };
    if !(field.min..=field.max).contains(&number) {
        return Err(format!(
            "{number} is out of range; allowed: {}",
            field.allowed
        ));
    }
    Ok(number)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn ticks(expression: &str, zone: &str, after: &str, n: usize) -> Vec<DateTime<Utc>> {
        let crontab = Crontab::parse(expression).unwrap();
        crontab
            .ticks_after(zone.parse().unwrap(), utc(after))
            .take(n)
            .collect()
    }

    #[derive(serde::Deserialize)]
    struct Reference {
        generator: String,
        cases: Vec<Case>,
    }

    #[derive(serde::Deserialize)]
    struct Case {
        expression: String,
        timezone: String,
        after: String,
        ticks: Vec<String>,
    }

    /// The ticks of the reference (croniter) that cron does not make, in America/New_York;
    /// every other tick must be the same. Cron's rules (its `cron.c` handling of clock
    /// changes): a job with `*` at the start of its minute or hour field is not run for
    /// times a jump skipped, and a fixed-time job is run once in a repeated hour.
    const NOT_CRON: &[(&str, &str)] = &[
        // 02:00 does not exist on 2026-03-08; croniter runs it at 03:00, cron does not.
        ("0 */2 * * *", "2026-03-08T07:00:00Z"),
        // 01:30 happens twice on 2026-11-01; croniter runs it both times, cron once.
        ("30 1 * * *", "2026-11-01T06:30:00Z"),
    ];

    /// Every expression and zone of `crontab_reference.json` (made by
    /// `crontab_reference.py` with croniter; see there) ticks exactly as the reference says.
    #[test]
    fn five_field_expressions_tick_as_the_crontab_reference_says() {
        let reference: Reference =
            serde_json::from_str(include_str!("crontab_reference.json")).unwrap();
        assert!(reference.generator.starts_with("croniter"));
        assert!(
            reference.cases.len() >= 200,
            "{} cases",
            reference.cases.len()
        );
        let end = utc("2029-01-01T00:00:00Z");
        let mut compared = 0;
        let mut departures = 0;
        for case in &reference.cases {
            let crontab = Crontab::parse(&case.expression)
                .unwrap_or_else(|err| panic!("{}: {err}", case.expression));
            let mut expected: Vec<DateTime<Utc>> = case.ticks.iter().map(|t| utc(t)).collect();
            for (expression, not_cron) in NOT_CRON {
                if case.expression == *expression && case.timezone == "America/New_York" {
                    let before = expected.len();
                    expected.retain(|tick| *tick != utc(not_cron));
                    departures += before - expected.len();
                }
            }
            // The reference stops at 40 ticks or at the end of 2028, whichever comes first.
            let full = case.ticks.len() == 40;
            let ours: Vec<DateTime<Utc>> = crontab
                .ticks_after(case.timezone.parse().unwrap(), utc(&case.after))
                .take_while(|tick| *tick < end)
                .take(if full { expected.len() } else { usize::MAX })
                .collect();
            assert_eq!(
                ours, expected,
                "\"{}\" in {} after {}",
                case.expression, case.timezone, case.after
            );
            compared += expected.len();
        }
        assert!(compared > 5000, "{compared} ticks compared");
        assert_eq!(
            departures,
            NOT_CRON.len(),
            "each listed departure is in the table"
        );
    }

    #[test]
    fn days_of_week_are_crontab_numbers_and_names() {
        // 2026-03-02 is a Monday.
        let monday = ticks("0 12 * * 1", "UTC", "2026-03-01T00:00:00Z", 1);
        assert_eq!(monday, vec![utc("2026-03-02T12:00:00Z")]);
        let sundays = ticks("0 9 * * 0", "UTC", "2026-03-01T10:00:00Z", 1);
        assert_eq!(
            sundays,
            ticks("0 9 * * 7", "UTC", "2026-03-01T10:00:00Z", 1)
        );
        assert_eq!(sundays, vec![utc("2026-03-08T09:00:00Z")]);
        assert_eq!(
            Crontab::parse("0 9 * * MON-FRI"),
            Crontab::parse("0 9 * * 1-5")
        );
        assert_eq!(Crontab::parse("0 0 1 jan *"), Crontab::parse("0 0 1 1 *"));
        let weekdays: Vec<_> = ticks("0 9 * * 1-5", "UTC", "2026-03-06T10:00:00Z", 2);
        assert_eq!(
            weekdays,
            vec![utc("2026-03-09T09:00:00Z"), utc("2026-03-10T09:00:00Z")],
            "Friday's tick is followed by Monday's"
        );
    }

    #[test]
    fn a_restricted_day_of_month_and_day_of_week_match_either() {
        // The 1st and the 15th, and every Monday (2026-06-01 is a Monday, the 8th too).
        let days: Vec<u32> = ticks("0 0 1,15 * 1", "UTC", "2026-05-31T12:00:00Z", 5)
            .iter()
            .map(|t| t.day())
            .collect();
        assert_eq!(days, vec![1, 8, 15, 22, 29]);
        // With `*` at the start of either field, both must match: odd days that are Mondays.
        let both: Vec<u32> = ticks("0 0 */2 * 1", "UTC", "2026-05-31T12:00:00Z", 3)
            .iter()
            .map(|t| t.day())
            .collect();
        assert_eq!(both, vec![1, 15, 29]);
    }

    #[test]
    fn six_and_seven_fields_add_seconds_first_and_years_last() {
        let every_ten = ticks("*/10 * * * * *", "UTC", "2026-01-01T00:00:05Z", 2);
        assert_eq!(
            every_ten,
            vec![utc("2026-01-01T00:00:10Z"), utc("2026-01-01T00:00:20Z")]
        );
        let only_2027 = ticks("0 0 9 1 1 * 2027", "UTC", "2026-01-01T00:00:00Z", 2);
        assert_eq!(only_2027, vec![utc("2027-01-01T09:00:00Z")]);
        assert!(ticks("0 0 0 1 1 * 2020", "UTC", "2026-01-01T00:00:00Z", 1).is_empty());
    }

    #[test]
    fn daylight_saving_follows_cron() {
        // New York springs forward 2026-03-08 02:00 -> 03:00 and falls back 2026-11-01
        // 02:00 -> 01:00.
        let fixed = ticks("30 2 * * *", "America/New_York", "2026-03-07T12:00:00Z", 3);
        assert_eq!(
            fixed,
            vec![
                utc("2026-03-08T07:00:00Z"), // 03:00 EDT, right after the jump
                utc("2026-03-09T06:30:00Z"),
                utc("2026-03-10T06:30:00Z"),
            ]
        );
        let once = ticks("30 1 * * *", "America/New_York", "2026-10-31T12:00:00Z", 2);
        assert_eq!(
            once,
            vec![utc("2026-11-01T05:30:00Z"), utc("2026-11-02T06:30:00Z")]
        );
        let wildcard = ticks(
            "*/30 * * * *",
            "America/New_York",
            "2026-11-01T04:45:00Z",
            5,
        );
        assert_eq!(
            wildcard,
            vec![
                utc("2026-11-01T05:00:00Z"), // 01:00 EDT
                utc("2026-11-01T05:30:00Z"), // 01:30 EDT
                utc("2026-11-01T06:00:00Z"), // 01:00 EST
                utc("2026-11-01T06:30:00Z"), // 01:30 EST
                utc("2026-11-01T07:00:00Z"), // 02:00 EST
            ]
        );
        let skipped = ticks(
            "*/30 * * * *",
            "America/New_York",
            "2026-03-08T06:15:00Z",
            3,
        );
        assert_eq!(
            skipped,
            vec![
                utc("2026-03-08T06:30:00Z"), // 01:30 EST
                utc("2026-03-08T07:00:00Z"), // 03:00 EDT: 02:00 and 02:30 do not exist
                utc("2026-03-08T07:30:00Z"),
            ]
        );
    }

    #[test]
    fn errors_name_the_field_the_value_and_the_allowed_range() {
        let cases = [
            (
                "0 9 * * 8",
                "day of week \"8\": 8 is out of range; allowed: 0-7 (0 and 7 are Sunday) or SUN-SAT",
            ),
            (
                "61 * * * *",
                "minute \"61\": 61 is out of range; allowed: 0-59",
            ),
            (
                "0 24 * * *",
                "hour \"24\": 24 is out of range; allowed: 0-23",
            ),
            (
                "0 0 0 * *",
                "day of month \"0\": 0 is out of range; allowed: 1-31",
            ),
            (
                "0 0 1 13 *",
                "month \"13\": 13 is out of range; allowed: 1-12 or JAN-DEC",
            ),
            (
                "0 0 * * FUN",
                "day of week \"FUN\": \"FUN\" is not a number or name; allowed: 0-7 (0 and 7 are Sunday) or SUN-SAT",
            ),
            (
                "*/0 * * * *",
                "minute \"*/0\": step \"0\" must be a number from 1 to 59",
            ),
            (
                "5-3 * * * *",
                "minute \"5-3\": the range 5-3 runs backwards",
            ),
            ("1,,2 * * * *", "minute \"1,,2\": a list item is empty"),
            (
                "0 9 * *",
                "it has 4 fields; crontab has 5 (minute hour day-of-month month day-of-week), 6 with seconds first, or 7 with years last, or is one of @hourly, @daily, @weekly, @monthly, @yearly",
            ),
            (
                "@reboot",
                "unknown \"@reboot\": expected @hourly, @daily (@midnight), @weekly, @monthly or @yearly (@annually)",
            ),
            (
                "0 0 0 1 1 * 1900",
                "year \"1900\": 1900 is out of range; allowed: 1970-2099",
            ),
        ];
        for (expression, expected) in cases {
            assert_eq!(
                Crontab::parse(expression).unwrap_err(),
                expected,
                "{expression}"
            );
        }
    }
}
