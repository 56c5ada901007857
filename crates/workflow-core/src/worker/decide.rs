//! The worker's decisions that are functions of data alone: whether a failed node is retried
//! and after how long, how long an execution parks and for what, what a rescue records and
//! when it quarantines, how a recorded history restores the scheduler, and how long to back
//! off from a failing store. No store and no clock in here, so each is tested directly.

use std::time::Duration;

use serde_json::Value;

use crate::execution::{NodeRun, NodeRunStatus};
use crate::graph::{NodeState, OnFailure, RetryPolicy};
use crate::node::ErrorKind;
use crate::state::{ExecutionStatus, transition};

/// After this many deaths in a row of the workers running it, an execution is a *suspect*
/// and runs alone on a worker, so that its deaths from then on are its own doing.
pub const SUSPECT_AFTER_RESCUES: u32 = 2;

/// The longest wait between claims while the store keeps failing.
pub(super) const MAX_ERROR_BACKOFF: Duration = Duration::from_secs(30);

/// The `rescue_count` from which claims treat an execution as a suspect: claims compare the
/// count before their own rescue, one less than the deaths.
pub(super) fn suspect_from() -> i32 {
    i32::try_from(SUSPECT_AFTER_RESCUES - 1).unwrap_or(i32::MAX)
}

/// Whether a claim that asked for a suspect first got one: a lone execution past the
/// threshold (or one released at shutdown after as many rescues: as risky, so it runs alone
/// too).
pub(super) fn claimed_a_suspect(rescue_counts: &[i32]) -> bool {
    matches!(rescue_counts, [one] if *one > suspect_from())
}

/// How long to wait before claiming again after `failures` failed claims in a row: the poll
/// interval doubled per failure, up to [`MAX_ERROR_BACKOFF`].
pub(super) fn error_backoff(poll_interval: Duration, failures: u32) -> Duration {
    poll_interval
        .saturating_mul(1 << failures.min(16))
        .min(MAX_ERROR_BACKOFF)
}

/// A claimed execution is `running`; this checks the state machine allows `to` from there.
pub(super) fn from_running(to: ExecutionStatus) -> ExecutionStatus {
    match transition(ExecutionStatus::Running, to) {
        Ok(status) => status,
        Err(err) => unreachable!("{err}"),
    }
}

/// What becomes of a node attempt that failed.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum AfterFailure {
    /// Attempt `attempt + 1` runs after `delay`, with the execution parked meanwhile.
    Retry {
        /// The backoff.
        delay: Duration,
    },
    /// The execution fails with this error.
    Fail(String),
    /// The execution pauses with this error (its policy pauses instead of failing).
    Pause(String),
}

/// A failed node attempt, as [`after_failure`] weighs it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Failure<'a> {
    pub(super) node_id: &'a str,
    pub(super) kind: ErrorKind,
    /// The attempt that failed, from 1.
    pub(super) attempt: u32,
    pub(super) error: &'a str,
    /// The shortest wait the node asked for before its next attempt.
    pub(super) retry_after: Option<Duration>,
}

/// Retries a retryable failure while attempts remain, after the policy's (jittered) backoff or
/// the wait the node asked for, whichever is longer; `unit` is a random number in [0, 1).
/// Otherwise the execution fails (or pauses, if the policy says so) with an error naming the
/// node and how many attempts it had.
pub(super) fn after_failure(
    failure: &Failure<'_>,
    policy: &RetryPolicy,
    unit: f64,
) -> AfterFailure {
    let Failure {
        node_id,
        kind,
        attempt,
        error,
        retry_after,
    } = *failure;
    if kind == ErrorKind::Retryable && attempt < policy.max_attempts {
        let backoff = policy.jittered_backoff(attempt, unit);
        return AfterFailure::Retry {
            delay: retry_after.map_or(backoff, |asked| asked.max(backoff)),
        };
    }
    let attempts = if attempt > 1 {
        format!(" after {attempt} attempts")
    } else {
        String::new()
    };
    let error = format!("node \"{node_id}\" failed{attempts}: {error}");
    match policy.on_failure {
        OnFailure::Fail => AfterFailure::Fail(error),
        OnFailure::Pause => AfterFailure::Pause(error),
    }
}

/// What an execution does when no node is ready and none is running.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Settled {
    /// Every node finished: it completes.
    Complete,
    /// Some node waits: it parks until the earliest timer (never, for `None`) or one of the
    /// signals arrives.
    Wait {
        /// Until the earliest timer of its waiting nodes and retries.
        delay: Option<Duration>,
        /// The signal names its waiting nodes wait for, sorted and without repeats.
        signals: Vec<String>,
    },
    /// Some node failed and retries later: it parks until the earliest retry.
    Retry {
        /// Until the earliest retry.
        delay: Duration,
    },
    /// Nothing can run and nothing waits: a scheduler bug, failed rather than spun on.
    Stuck,
}

/// The error of a [`Settled::Stuck`] execution.
pub(super) const STUCK: &str = "no node can run: the graph is stuck (this is a bug)";

/// What an execution with no node ready or running does. `waits` are its waiting nodes'
/// (signal, time until its timer), `retry_in` the time until its earliest retry.
pub(super) fn settle(
    finished: bool,
    waits: &[(Option<String>, Option<Duration>)],
    retry_in: Option<Duration>,
) -> Settled {
    if finished {
        return Settled::Complete;
    }
    if !waits.is_empty() {
        let delay = waits
            .iter()
            .filter_map(|(_, due)| *due)
            .chain(retry_in)
            .min();
        let mut signals: Vec<String> = waits.iter().filter_map(|(s, _)| s.clone()).collect();
        signals.sort();
        signals.dedup();
        return Settled::Wait { delay, signals };
    }
    match retry_in {
        Some(delay) => Settled::Retry { delay },
        None => Settled::Stuck,
    }
}

/// The scheduler state a recorded node run restores, on a claim.
pub(super) fn restored_state(run: &NodeRun) -> NodeState {
    let attempt = u32::try_from(run.attempt).unwrap_or(1);
    match run.status {
        NodeRunStatus::Completed => NodeState::Completed {
            output: run.output.clone().unwrap_or(Value::Null),
            branch: run.branch.clone(),
        },
        NodeRunStatus::Skipped => NodeState::Skipped,
        // The execution was parked until the retry was due, and it is due now.
        NodeRunStatus::Failed | NodeRunStatus::TimedOut => NodeState::RetryDue { attempt },
        NodeRunStatus::Interrupted | NodeRunStatus::Abandoned => NodeState::Interrupted { attempt },
        NodeRunStatus::Waiting => NodeState::Waiting {
            attempt,
            since: run.started_at,
        },
    }
}

/// What the abandoned record of a node says: the worker that ran it died.
pub(super) const ABANDONED: &str = "the worker running it stopped renewing its lease";

/// Whether a rescued execution is quarantined, and the error it fails with. `rescues` is
/// its `rescue_count` (its workers' deaths in a row), `abandoned` the nodes they were
/// running. The deaths past [`SUSPECT_AFTER_RESCUES`] happened while it ran alone; from
/// `max_rescues` of those it is poison and not retried again.
pub(super) fn quarantine(rescues: i32, max_rescues: u32, abandoned: &[&str]) -> Option<String> {
    let rescues = u32::try_from(rescues).unwrap_or(0);
    let alone = rescues.saturating_sub(SUSPECT_AFTER_RESCUES);
    (alone >= max_rescues).then(|| {
        format!(
            "quarantined: its worker died (lease expired) {rescues} times in a row while \
             running it, {alone} of them while it ran alone (nodes: {}); not retried again",
            abandoned.join(", ")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(max_attempts: u32) -> RetryPolicy {
        RetryPolicy {
            max_attempts,
            initial_backoff: Duration::from_secs(2),
            multiplier: 3.0,
            max_backoff: Duration::from_secs(60),
            jitter: 0.5,
            on_failure: OnFailure::Fail,
        }
    }

    fn failed(kind: ErrorKind, attempt: u32, error: &str) -> Failure<'_> {
        Failure {
            node_id: "n",
            kind,
            attempt,
            error,
            retry_after: None,
        }
    }

    #[test]
    fn a_wait_the_node_asked_for_is_honoured_when_longer_than_the_backoff() {
        let asked = |secs| Failure {
            retry_after: Some(Duration::from_secs(secs)),
            ..failed(ErrorKind::Retryable, 1, "x")
        };
        assert_eq!(
            after_failure(&asked(30), &policy(3), 0.5),
            AfterFailure::Retry {
                delay: Duration::from_secs(30)
            }
        );
        assert_eq!(
            after_failure(&asked(1), &policy(3), 0.5),
            AfterFailure::Retry {
                delay: Duration::from_secs(2)
            }
        );
        // It never adds an attempt the policy does not have.
        assert_eq!(
            after_failure(&asked(30), &RetryPolicy::NONE, 0.5),
            AfterFailure::Fail("node \"n\" failed: x".into())
        );
    }

    #[test]
    fn a_retryable_failure_retries_with_the_policys_backoff_while_attempts_remain() {
        let retry = |attempt, unit| {
            after_failure(
                &failed(ErrorKind::Retryable, attempt, "x"),
                &policy(3),
                unit,
            )
        };
        // unit 0.5 is no jitter; 0 and just under 1 are the jitter's ends.
        assert_eq!(
            retry(1, 0.5),
            AfterFailure::Retry {
                delay: Duration::from_secs(2)
            }
        );
        assert_eq!(
            retry(2, 0.5),
            AfterFailure::Retry {
                delay: Duration::from_secs(6)
            }
        );
        assert_eq!(
            retry(2, 0.0),
            AfterFailure::Retry {
                delay: Duration::from_secs(3)
            }
        );
        assert_eq!(
            retry(3, 0.5),
            AfterFailure::Fail("node \"n\" failed after 3 attempts: x".into())
        );
    }

    #[test]
    fn a_fatal_failure_or_a_single_attempt_fails_the_execution_at_once() {
        assert_eq!(
            after_failure(&failed(ErrorKind::Fatal, 1, "bad input"), &policy(5), 0.5),
            AfterFailure::Fail("node \"n\" failed: bad input".into())
        );
        assert_eq!(
            after_failure(
                &failed(ErrorKind::Retryable, 1, "x"),
                &RetryPolicy::NONE,
                0.5
            ),
            AfterFailure::Fail("node \"n\" failed: x".into())
        );
        assert_eq!(
            after_failure(&failed(ErrorKind::Fatal, 2, "x"), &policy(5), 0.5),
            AfterFailure::Fail("node \"n\" failed after 2 attempts: x".into())
        );
    }

    #[test]
    fn a_policy_that_pauses_pauses_where_it_would_fail_and_still_retries_first() {
        let pausing = RetryPolicy {
            on_failure: OnFailure::Pause,
            ..policy(2)
        };
        assert!(matches!(
            after_failure(&failed(ErrorKind::Retryable, 1, "x"), &pausing, 0.5),
            AfterFailure::Retry { .. }
        ));
        assert_eq!(
            after_failure(&failed(ErrorKind::Retryable, 2, "x"), &pausing, 0.5),
            AfterFailure::Pause("node \"n\" failed after 2 attempts: x".into())
        );
        assert_eq!(
            after_failure(&failed(ErrorKind::Fatal, 1, "bad input"), &pausing, 0.5),
            AfterFailure::Pause("node \"n\" failed: bad input".into())
        );
    }

    #[test]
    fn settling_completes_waits_retries_or_reports_a_stuck_graph() {
        let secs = Duration::from_secs;
        assert_eq!(settle(true, &[], None), Settled::Complete);
        assert_eq!(
            settle(false, &[], Some(secs(4))),
            Settled::Retry { delay: secs(4) }
        );
        assert_eq!(settle(false, &[], None), Settled::Stuck);
        // Waiting nodes park it until the earliest of their timers and the retries, for the
        // signals they wait for, each named once.
        let waits = [
            (Some("b".to_owned()), Some(secs(9))),
            (Some("a".to_owned()), None),
            (Some("b".to_owned()), Some(secs(7))),
        ];
        assert_eq!(
            settle(false, &waits, Some(secs(8))),
            Settled::Wait {
                delay: Some(secs(7)),
                signals: vec!["a".into(), "b".into()]
            }
        );
        assert_eq!(
            settle(false, &[(Some("a".to_owned()), None)], None),
            Settled::Wait {
                delay: None,
                signals: vec!["a".into()]
            }
        );
    }

    #[test]
    fn quarantine_counts_only_the_deaths_while_it_ran_alone() {
        // Two deaths make a suspect; three more alone reach max_rescues = 3.
        assert_eq!(quarantine(0, 3, &["a"]), None);
        assert_eq!(quarantine(4, 3, &["a"]), None);
        assert_eq!(
            quarantine(5, 3, &["a", "b"]).as_deref(),
            Some(
                "quarantined: its worker died (lease expired) 5 times in a row while running \
                 it, 3 of them while it ran alone (nodes: a, b); not retried again"
            )
        );
        assert!(quarantine(3, 1, &[]).is_some());
    }

    #[test]
    fn a_suspect_is_a_lone_claim_past_the_threshold() {
        assert_eq!(suspect_from(), 1);
        assert!(claimed_a_suspect(&[2]));
        assert!(!claimed_a_suspect(&[1]));
        assert!(!claimed_a_suspect(&[2, 2]), "suspects are claimed alone");
        assert!(!claimed_a_suspect(&[]));
    }

    #[test]
    fn error_backoff_doubles_from_the_poll_interval_up_to_a_cap() {
        let poll = Duration::from_millis(500);
        assert_eq!(error_backoff(poll, 1), Duration::from_secs(1));
        assert_eq!(error_backoff(poll, 3), Duration::from_secs(4));
        assert_eq!(error_backoff(poll, 40), MAX_ERROR_BACKOFF);
    }

    #[test]
    fn a_history_restores_each_nodes_state() {
        let at = chrono::Utc::now();
        let run = |status, attempt| NodeRun {
            execution_id: crate::execution::ExecutionId(uuid::Uuid::nil()),
            node_id: "n".into(),
            node_type: "t".into(),
            attempt,
            status,
            input: None,
            output: Some(serde_json::json!({"x": 1})),
            branch: Some("yes".into()),
            error: None,
            worker_id: None,
            started_at: at,
            finished_at: at,
            superseded_by: None,
        };
        assert_eq!(
            restored_state(&run(NodeRunStatus::Completed, 1)),
            NodeState::Completed {
                output: serde_json::json!({"x": 1}),
                branch: Some("yes".into())
            }
        );
        assert_eq!(
            restored_state(&run(NodeRunStatus::Skipped, 1)),
            NodeState::Skipped
        );
        assert_eq!(
            restored_state(&run(NodeRunStatus::TimedOut, 2)),
            NodeState::RetryDue { attempt: 2 }
        );
        assert_eq!(
            restored_state(&run(NodeRunStatus::Abandoned, 3)),
            NodeState::Interrupted { attempt: 3 }
        );
        assert_eq!(
            restored_state(&run(NodeRunStatus::Waiting, 1)),
            NodeState::Waiting {
                attempt: 1,
                since: at
            }
        );
    }

    #[test]
    fn every_status_the_worker_ends_a_claim_in_is_allowed_from_running() {
        for to in [
            ExecutionStatus::Completed,
            ExecutionStatus::Failed,
            ExecutionStatus::Retrying,
            ExecutionStatus::Waiting,
            ExecutionStatus::TimedOut,
        ] {
            assert_eq!(from_running(to), to);
        }
    }
}
