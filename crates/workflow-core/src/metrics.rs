//! Metrics the worker records through the [`metrics`] facade.
//!
//! The library installs no recorder: with none installed, recording costs next to nothing.
//! To export them, install any `metrics` recorder in the embedding application (the
//! `workflow-worker` binary installs a Prometheus one with `--metrics-addr`), call [`describe`]
//! once for help texts, and call [`record_queue_stats`] before each scrape (or on a timer) for
//! the gauges that come from the database.
//!
//! | name | type | labels | what it counts |
//! |---|---|---|---|
//! | `workflow_executions_started_total` | counter | `workflow` | executions claimed for the first time |
//! | `workflow_executions_finished_total` | counter | `workflow`, `status` | executions this worker ended (`completed`, `failed`, `timed_out`) or saw end while it ran them (`cancelled`) |
//! | `workflow_executions_rescued_total` | counter | `workflow` | claims of executions whose previous worker stopped renewing the lease |
//! | `workflow_retries_total` | counter | `workflow`, `node_type` | failed node attempts that will be retried |
//! | `workflow_node_runs_total` | counter | `node_type`, `status` | node attempts that ended (`completed`, `failed`, `timed_out`) |
//! | `workflow_node_run_duration_seconds` | histogram | `node_type` | how long those attempts ran |
//! | `workflow_leases_lost_total` | counter | | claims lost to another worker, a cancel or a deadline |
//! | `workflow_claim_duration_seconds` | histogram | | one claim statement, round trip included |
//! | `workflow_schedule_executions_total` | counter | | executions started by schedules |
//! | `workflow_executions_runnable` | gauge | | executions a worker could claim now |
//! | `workflow_oldest_runnable_age_seconds` | gauge | | how long the oldest of them has waited |
//! | `workflow_executions_waiting` | gauge | | executions waiting for a signal or a timer |
//! | `workflow_executions_running` | gauge | | executions held under a live lease, by any worker |
//! | `workflow_executions_unrunnable` | gauge | | runnable executions no live worker can run (it lacks one of their node types) |
//! | `workflow_executions_held` | gauge | `workflow` | executions held back by their workflow's concurrency (limit reached, or fair window full) |
//! | `workflow_rate_limited_total` | counter | `rate_limit` | node starts put off by a rate limit (each one parks its execution until the window moves) |

use std::collections::BTreeSet;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use metrics::{Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge};

use crate::{QueueStats, Store, StoreError};

/// Counter: executions claimed for the first time, by `workflow`.
pub const EXECUTIONS_STARTED: &str = "workflow_executions_started_total";
/// Counter: executions ended, by `workflow` and `status`.
pub const EXECUTIONS_FINISHED: &str = "workflow_executions_finished_total";
/// Counter: executions rescued from a worker that stopped renewing its lease, by `workflow`.
pub const EXECUTIONS_RESCUED: &str = "workflow_executions_rescued_total";
/// Counter: failed node attempts that will be retried, by `workflow` and `node_type`.
pub const RETRIES: &str = "workflow_retries_total";
/// Counter: node attempts that ended, by `node_type` and `status`.
pub const NODE_RUNS: &str = "workflow_node_runs_total";
/// Histogram: node attempt duration in seconds, by `node_type`.
pub const NODE_RUN_DURATION: &str = "workflow_node_run_duration_seconds";
/// Counter: claims this worker lost.
pub const LEASES_LOST: &str = "workflow_leases_lost_total";
/// Histogram: claim statement duration in seconds.
pub const CLAIM_DURATION: &str = "workflow_claim_duration_seconds";
/// Counter: executions started by schedules.
pub const SCHEDULE_EXECUTIONS: &str = "workflow_schedule_executions_total";
/// Gauge: executions a worker could claim now.
pub const EXECUTIONS_RUNNABLE: &str = "workflow_executions_runnable";
/// Gauge: seconds the oldest runnable execution has been runnable.
pub const OLDEST_RUNNABLE_AGE: &str = "workflow_oldest_runnable_age_seconds";
/// Gauge: executions waiting for a signal or a timer.
pub const EXECUTIONS_WAITING: &str = "workflow_executions_waiting";
/// Gauge: executions held under a live lease.
pub const EXECUTIONS_RUNNING: &str = "workflow_executions_running";
/// Gauge: runnable executions that no live worker can run (it lacks one of their node types).
pub const EXECUTIONS_UNRUNNABLE: &str = "workflow_executions_unrunnable";

/// Gauge: executions held back by their workflow's concurrency, by `workflow`.
pub const EXECUTIONS_HELD: &str = "workflow_executions_held";

/// Counter: node starts put off by a rate limit, by `rate_limit`.
pub const RATE_LIMITED: &str = "workflow_rate_limited_total";

/// Registers a help text and unit for every metric, with the installed recorder. Call it once,
/// after installing the recorder.
pub fn describe() {
    describe_counter!(EXECUTIONS_STARTED, "Executions claimed for the first time.");
    describe_counter!(
        EXECUTIONS_FINISHED,
        "Executions ended by this worker, or cancelled while it ran them."
    );
    describe_counter!(
        EXECUTIONS_RESCUED,
        "Claims of executions whose previous worker stopped renewing the lease."
    );
    describe_counter!(RETRIES, "Failed node attempts that will be retried.");
    describe_counter!(NODE_RUNS, "Node attempts that ended.");
    describe_histogram!(
        NODE_RUN_DURATION,
        Unit::Seconds,
        "How long node attempts ran."
    );
    describe_counter!(
        LEASES_LOST,
        "Claims lost to another worker, a cancel or a deadline."
    );
    describe_histogram!(
        CLAIM_DURATION,
        Unit::Seconds,
        "How long one claim statement took, round trip included."
    );
    describe_counter!(SCHEDULE_EXECUTIONS, "Executions started by schedules.");
    describe_gauge!(EXECUTIONS_RUNNABLE, "Executions a worker could claim now.");
    describe_gauge!(
        OLDEST_RUNNABLE_AGE,
        Unit::Seconds,
        "How long the oldest runnable execution has been runnable."
    );
    describe_gauge!(
        EXECUTIONS_WAITING,
        "Executions waiting for a signal or a timer."
    );
    describe_gauge!(
        EXECUTIONS_RUNNING,
        "Executions held by a worker under a live lease."
    );
    describe_gauge!(
        EXECUTIONS_UNRUNNABLE,
        "Runnable executions that no live worker can run: none has all of their node types."
    );
    describe_counter!(
        RATE_LIMITED,
        "Node starts put off by a rate limit: the execution waited for the window to move."
    );
    describe_gauge!(
        EXECUTIONS_HELD,
        "Executions held back by their workflow's concurrency: its limit is reached, or its fair window is full."
    );
}

/// Reads [`Store::queue_stats`] and sets the queue gauges from it. One small query over the
/// executions that have not ended; call it before a scrape or on a timer.
pub async fn record_queue_stats<S: Store + ?Sized>(store: &S) -> Result<QueueStats, StoreError> {
    let stats = store.queue_stats().await?;
    gauge!(EXECUTIONS_RUNNABLE).set(stats.runnable as f64);
    gauge!(OLDEST_RUNNABLE_AGE).set(stats.oldest_runnable_age.as_secs_f64());
    gauge!(EXECUTIONS_WAITING).set(stats.waiting as f64);
    gauge!(EXECUTIONS_RUNNING).set(stats.running as f64);
    gauge!(EXECUTIONS_UNRUNNABLE).set(stats.unrunnable as f64);
    // A workflow with none held any more reads 0, not its last count.
    static HELD_REPORTED: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());
    let mut reported = HELD_REPORTED.lock().unwrap_or_else(PoisonError::into_inner);
    for workflow in reported.iter() {
        if !stats.held.contains_key(workflow) {
            gauge!(EXECUTIONS_HELD, "workflow" => workflow.clone()).set(0.0);
        }
    }
    for (workflow, held) in &stats.held {
        gauge!(EXECUTIONS_HELD, "workflow" => workflow.clone()).set(*held as f64);
    }
    *reported = stats.held.keys().cloned().collect();
    Ok(stats)
}

pub(crate) fn execution_started(workflow: &str) {
    counter!(EXECUTIONS_STARTED, "workflow" => workflow.to_owned()).increment(1);
}

pub(crate) fn execution_finished(workflow: &str, status: crate::ExecutionStatus) {
    counter!(
        EXECUTIONS_FINISHED,
        "workflow" => workflow.to_owned(),
        "status" => status.as_str()
    )
    .increment(1);
}

pub(crate) fn execution_rescued(workflow: &str) {
    counter!(EXECUTIONS_RESCUED, "workflow" => workflow.to_owned()).increment(1);
}

pub(crate) fn rate_limited(name: &str) {
    counter!(RATE_LIMITED, "rate_limit" => name.to_owned()).increment(1);
}

pub(crate) fn retry(workflow: &str, node_type: &str) {
    counter!(
        RETRIES,
        "workflow" => workflow.to_owned(),
        "node_type" => node_type.to_owned()
    )
    .increment(1);
}

pub(crate) fn node_run(node_type: &str, status: crate::NodeRunStatus, duration: Duration) {
    counter!(
        NODE_RUNS,
        "node_type" => node_type.to_owned(),
        "status" => status.as_str()
    )
    .increment(1);
    metrics::histogram!(NODE_RUN_DURATION, "node_type" => node_type.to_owned())
        .record(duration.as_secs_f64());
}

pub(crate) fn lease_lost() {
    counter!(LEASES_LOST).increment(1);
}

pub(crate) fn claimed(duration: Duration) {
    metrics::histogram!(CLAIM_DURATION).record(duration.as_secs_f64());
}

pub(crate) fn schedule_executions(count: u32) {
    counter!(SCHEDULE_EXECUTIONS).increment(u64::from(count));
}
