//! How the commands print what they read: one line per execution or schedule, and the
//! detail of one execution.

use std::fmt::Write;

use chrono::{DateTime, Utc};
use workflow_worker_core::{
    Execution, ExecutionDetail, ExecutionStatus, NodeRunStatus, Schedule, WorkflowSummary,
    WorkflowVersion,
};

/// How much of a node run's output or error `executions show` prints (`--json` shows all).
const SHOWN_OUTPUT_CHARS: usize = 72;

/// `executions list`: id, status, workflow and version, creation time.
pub(crate) fn execution_line(execution: &Execution) -> String {
    format!(
        "{}  {:<10} {} v{}  created {}",
        execution.id,
        execution.status,
        execution.workflow_name,
        execution.workflow_version,
        execution.created_at.format("%Y-%m-%d %H:%M:%S%.3f UTC"),
    )
}

/// `workflow list`: name, latest version, id, first and last save.
pub(crate) fn workflow_line(w: &WorkflowSummary) -> String {
    format!(
        "{}  v{}  {}  created {}  updated {}",
        w.name,
        w.latest_version,
        w.workflow_id,
        w.created_at.format("%Y-%m-%d %H:%M:%S UTC"),
        w.updated_at.format("%Y-%m-%d %H:%M:%S UTC"),
    )
}

/// `workflow show`: which version is shown, of how many, and when it was saved.
pub(crate) fn workflow_version_line(v: &WorkflowVersion, latest: i32) -> String {
    format!(
        "workflow \"{}\" ({}) version {} of {}, saved {}",
        v.name,
        v.workflow_id,
        v.version,
        latest,
        v.created_at.format("%Y-%m-%d %H:%M:%S UTC"),
    )
}

/// `schedule list` and the other schedule commands: one schedule.
pub(crate) fn schedule_line(s: &Schedule) -> String {
    let time = |t: Option<DateTime<Utc>>| {
        t.map_or_else(
            || "-".to_owned(),
            |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
        )
    };
    format!(
        "{}  {:<8} {}  \"{}\" {}  next {}  last {}",
        s.id,
        if s.enabled { "enabled" } else { "paused" },
        s.workflow_name,
        s.cron,
        s.timezone,
        time(s.next_fire_at),
        time(s.last_fire_at),
    )
}

/// `executions show`: the execution, its signals and a table of its node runs. `runners`
/// says which live workers can run it (for executions that have not ended).
pub(crate) fn execution(detail: &ExecutionDetail, runners: Option<&str>) -> String {
    let mut out = header(&detail.execution, runners);
    for signal in &detail.signals {
        let consumed = match (&signal.consumed_by_node, signal.consumed_at) {
            (Some(node), Some(at)) => format!("consumed by {node} at {}", time(Some(at))),
            _ => "pending".to_owned(),
        };
        let _ = writeln!(
            out,
            "  signal:    {} {} ({consumed})",
            signal.name, signal.payload
        );
    }
    for retry in &detail.retries {
        let from = match retry.from.node() {
            Some(node) => format!("from node {node}"),
            None => format!("from {}", retry.from.mode()),
        };
        let _ = writeln!(
            out,
            "  retry {}:   {from} of {} on v{}, by {} at {}",
            retry.id,
            retry.from_status,
            retry.workflow_version,
            retry.requested_by,
            time(Some(retry.requested_at)),
        );
    }
    for child in &detail.children {
        let _ = writeln!(
            out,
            "  child:     {} {} ({}), started by {} attempt {}",
            child.id, child.workflow_name, child.status, child.node_id, child.attempt
        );
    }
    let mut maps: Vec<&str> = detail
        .item_runs
        .iter()
        .map(|r| r.node_id.as_str())
        .collect();
    maps.dedup();
    for map in maps {
        let runs: Vec<_> = detail
            .item_runs
            .iter()
            .filter(|r| r.node_id == map)
            .collect();
        let mut items: Vec<u32> = runs.iter().map(|r| r.item).collect();
        items.dedup();
        let completed = runs
            .iter()
            .filter(|r| r.status == NodeRunStatus::Completed)
            .count();
        let _ = writeln!(
            out,
            "  items:     {map}: {} items run in {} attempts, {completed} completed",
            items.len(),
            runs.len()
        );
        for failed in runs
            .iter()
            .filter(|r| r.status != NodeRunStatus::Completed)
            .take(5)
        {
            let _ = writeln!(
                out,
                "             {map}[{}] attempt {} {}: {}",
                failed.item,
                failed.attempt,
                failed.status,
                failed.error.as_deref().unwrap_or_default()
            );
        }
    }
    let _ = writeln!(out, "node runs ({}):", detail.node_runs.len());
    let mut rows =
        vec![["NODE", "TYPE", "ATTEMPT", "STATUS", "DURATION", "OUTPUT"].map(str::to_owned)];
    for run in &detail.node_runs {
        let result = match (&run.error, &run.output) {
            (Some(error), _) => format!("error: {error}"),
            (None, Some(output)) => output.to_string(),
            (None, None) => String::new(),
        };
        rows.push([
            run.node_id.clone(),
            run.node_type.clone(),
            run.attempt.to_string(),
            match run.superseded_by {
                Some(retry) => format!("{} (superseded by retry {retry})", run.status),
                None => run.status.to_string(),
            },
            format!("{:.3}s", run.duration().as_secs_f64()),
            shorten(&result, SHOWN_OUTPUT_CHARS),
        ]);
    }
    out.push_str(&table(&rows));
    out
}

fn time(t: Option<DateTime<Utc>>) -> String {
    t.map_or_else(
        || "-".to_owned(),
        |t| t.format("%Y-%m-%d %H:%M:%S%.3f UTC").to_string(),
    )
}

/// The execution's own fields, one per line.
fn header(e: &Execution, runners: Option<&str>) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "execution {}", e.id);
    let _ = writeln!(
        out,
        "  workflow:  {} v{} ({})",
        e.workflow_name, e.workflow_version, e.workflow_id
    );
    let _ = writeln!(out, "  status:    {}", e.status);
    let _ = writeln!(out, "  priority:  {}", e.priority);
    if let Some(key) = &e.key {
        let _ = writeln!(out, "  key:       {key}");
    }
    if let Some(group) = &e.concurrency_key {
        let group = if group.is_empty() {
            "the workflow's (one for all its executions)".to_owned()
        } else {
            format!("key \"{group}\"")
        };
        let held = e.held_since.map_or_else(String::new, |since| {
            format!(
                "; held back since {}: its group's limit is reached (or fair window full)",
                time(Some(since))
            )
        });
        let _ = writeln!(out, "  concurrency: {group}{held}");
    }
    if let Some(parent) = &e.parent {
        let _ = writeln!(
            out,
            "  parent:    {} (node {} attempt {}), depth {}",
            parent.execution_id, parent.node_id, parent.attempt, e.depth
        );
    }
    if e.status == ExecutionStatus::Paused {
        let _ = writeln!(
            out,
            "  paused:    no worker runs it until `workflow-worker executions resume {}`",
            e.id
        );
    }
    if let Some(asked) = e.pause_requested_at {
        let _ = writeln!(
            out,
            "  pause:     asked at {}; it pauses once its running nodes finish",
            time(Some(asked))
        );
    }
    if !e.status.is_terminal() {
        let _ = writeln!(out, "  run at:    {}", time(e.run_at));
        if let Some(runners) = runners {
            let _ = writeln!(out, "  run by:    {runners}");
        }
        if let Some(owner) = &e.lease_owner {
            let _ = writeln!(
                out,
                "  leased by: {owner} until {}",
                time(e.lease_expires_at)
            );
        }
    }
    if let Some(deadline) = e.deadline {
        let _ = writeln!(out, "  deadline:  {}", time(Some(deadline)));
    }
    if let Some(schedule) = e.schedule_id {
        let how = e.scheduled_for.map_or_else(
            || "triggered".to_owned(),
            |tick| format!("tick {}", time(Some(tick))),
        );
        let _ = writeln!(out, "  schedule:  {schedule} ({how})");
    }
    let _ = writeln!(out, "  created:   {}", time(Some(e.created_at)));
    let _ = writeln!(out, "  started:   {}", time(e.started_at));
    let _ = writeln!(out, "  finished:  {}", time(e.finished_at));
    if let (Some(start), Some(end)) = (e.started_at, e.finished_at) {
        let _ = writeln!(out, "  duration:  {:.3}s", (end - start).as_seconds_f64());
    }
    let _ = writeln!(out, "  input:     {}", e.input);
    if let Some(output) = &e.output {
        let _ = writeln!(out, "  output:    {output}");
    }
    if let Some(error) = &e.error {
        let _ = writeln!(out, "  error:     {error}");
    }
    out
}

/// Rows as left-aligned columns, each as wide as its widest cell, indented by two spaces.
fn table<const N: usize>(rows: &[[String; N]]) -> String {
    let mut widths = [0; N];
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::from(" ");
        for (cell, width) in row.iter().zip(widths) {
            let _ = write!(line, " {cell:<width$} ");
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
    out
}

/// `text` on one line, cut to `max` characters with an ellipsis.
fn shorten(text: &str, max: usize) -> String {
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() <= max {
        return line;
    }
    let mut cut: String = line.chars().take(max - 1).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shorten_keeps_short_text_and_cuts_long_text_to_one_line() {
        assert_eq!(shorten("{\"a\":1}", 10), "{\"a\":1}");
        assert_eq!(shorten("line one\n  line two", 40), "line one line two");
        let cut = shorten(&"x".repeat(100), 10);
        assert_eq!(cut, format!("{}…", "x".repeat(9)));
        assert_eq!(cut.chars().count(), 10);
    }

    #[test]
    fn table_columns_are_as_wide_as_their_widest_cell() {
        let rows = [
            ["NODE".to_owned(), "STATUS".to_owned()],
            ["a-long-node".to_owned(), "ok".to_owned()],
        ];
        assert_eq!(table(&rows), "  NODE         STATUS\n  a-long-node  ok\n");
    }
}
