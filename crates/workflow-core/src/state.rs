//! The execution state machine.
//!
//! [`transition`] is the one table of which status may follow which. Every status the worker
//! writes for a claimed execution (completed, failed, retrying, waiting, timed out) is checked
//! against it before the write (`worker/decide.rs`). The other moves are made by a store on
//! an operator's or its own behalf, each one the table allows from every status it applies
//! to: a claim marks a pending, retrying or waiting execution `running` (and re-leases a
//! running one whose lease expired, which changes no status),
//! [`Store::cancel_execution`](crate::Store::cancel_execution) ends one that has not ended as
//! `cancelled`, the deadline sweep ends one as `timed_out`,
//! [`Store::pause_execution`](crate::Store::pause_execution) makes a pending, retrying or
//! waiting one `paused` (a running one is paused by its holder, at its next step) and
//! [`Store::resume_execution`](crate::Store::resume_execution) makes a paused one `pending`.
//! The ended states (`completed`, `failed`, `cancelled`, `timed_out`) change only by an
//! operator's retry ([`Store::retry_execution`](crate::Store::retry_execution)), which makes a
//! failed, cancelled or timed-out execution `pending` again; `completed` never changes. The
//! diagram lives in `docs/state-machine.md`.
//!
//! Claiming is not a decision of the worker: a worker may claim any pending, running,
//! retrying or waiting execution whose `run_at` is due and whose lease is free (see
//! [`ExecutionStatus::is_claimable`]); the claim marks it `running` under a fresh lease. A
//! `running` execution found with an expired lease is resumed by whichever worker claims it.
//! A `paused` one is never claimed.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Where an execution is in its life. The strings are the ones stored in the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExecutionStatus {
    /// Created, not yet claimed by a worker.
    Pending,
    /// Claimed by a worker (or inserted as `running` by another program and not yet claimed).
    Running,
    /// A node failed and will be retried at `run_at`.
    Retrying,
    /// Parked until a signal arrives or a durable timer fires.
    Waiting,
    /// Stopped by an operator (or by a node that failed for good under a retry policy that
    /// pauses): never claimed until resumed, which makes it pending again.
    Paused,
    /// Every node finished; terminal.
    Completed,
    /// A node failed for good; terminal.
    Failed,
    /// Cancelled on request; terminal.
    Cancelled,
    /// The execution deadline passed; terminal.
    TimedOut,
}

impl ExecutionStatus {
    /// Every status, in the order of the state machine.
    pub const ALL: [ExecutionStatus; 9] = [
        Self::Pending,
        Self::Running,
        Self::Retrying,
        Self::Waiting,
        Self::Paused,
        Self::Completed,
        Self::Failed,
        Self::Cancelled,
        Self::TimedOut,
    ];

    /// The snake_case name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Retrying => "retrying",
            Self::Waiting => "waiting",
            Self::Paused => "paused",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::TimedOut => "timed_out",
        }
    }

    /// Whether the execution has ended; only a retry (of a failed, cancelled or timed-out
    /// one) makes it pending again.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Completed | Self::Failed | Self::Cancelled | Self::TimedOut
        )
    }

    /// Whether a retry may run an execution in this status again: failed, cancelled or
    /// timed out.
    pub fn is_retryable(self) -> bool {
        matches!(self, Self::Failed | Self::Cancelled | Self::TimedOut)
    }

    /// Whether a worker may claim an execution in this status (when it is due and unleased):
    /// any that has not ended and is not paused.
    pub fn is_claimable(self) -> bool {
        !self.is_terminal() && self != Self::Paused
    }
}

impl fmt::Display for ExecutionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that names no [`ExecutionStatus`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown execution status \"{0}\" (expected one of pending, running, retrying, waiting, paused, completed, failed, cancelled, timed_out)"
)]
pub struct UnknownStatus(pub String);

impl FromStr for ExecutionStatus {
    type Err = UnknownStatus;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| UnknownStatus(s.to_owned()))
    }
}

/// A transition the state machine does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("illegal execution transition {from} -> {to}")]
pub struct TransitionError {
    /// The current status.
    pub from: ExecutionStatus,
    /// The status that was asked for.
    pub to: ExecutionStatus,
}

/// Decides whether an execution may move from `from` to `to`, returning `to` when it may.
///
/// This is the only place that knows the state machine; every status a worker writes goes
/// through it first (see the [module docs](self) for the moves stores make themselves).
pub fn transition(
    from: ExecutionStatus,
    to: ExecutionStatus,
) -> Result<ExecutionStatus, TransitionError> {
    use ExecutionStatus::*;
    let legal = match from {
        Pending | Retrying | Waiting => matches!(to, Running | Paused | Cancelled | TimedOut),
        Running => matches!(
            to,
            Retrying | Waiting | Paused | Completed | Failed | Cancelled | TimedOut
        ),
        // A resume (or, for one paused by a failure, a retry).
        Paused => matches!(to, Pending | Cancelled | TimedOut),
        // A retry.
        Failed | Cancelled | TimedOut => to == Pending,
        Completed => false,
    };
    if legal {
        Ok(to)
    } else {
        Err(TransitionError { from, to })
    }
}

#[cfg(test)]
mod tests {
    use super::ExecutionStatus::*;
    use super::*;

    const LEGAL: [(ExecutionStatus, ExecutionStatus); 25] = [
        (Pending, Running),
        (Pending, Paused),
        (Pending, Cancelled),
        (Pending, TimedOut),
        (Running, Retrying),
        (Running, Waiting),
        (Running, Paused),
        (Running, Completed),
        (Running, Failed),
        (Running, Cancelled),
        (Running, TimedOut),
        (Retrying, Running),
        (Retrying, Paused),
        (Retrying, Cancelled),
        (Retrying, TimedOut),
        (Waiting, Running),
        (Waiting, Paused),
        (Waiting, Cancelled),
        (Waiting, TimedOut),
        (Paused, Pending),
        (Paused, Cancelled),
        (Paused, TimedOut),
        (Failed, Pending),
        (Cancelled, Pending),
        (TimedOut, Pending),
    ];

    #[test]
    fn every_legal_transition_is_allowed() {
        for (from, to) in LEGAL {
            assert_eq!(transition(from, to), Ok(to), "{from} -> {to}");
        }
    }

    #[test]
    fn every_other_pair_is_rejected() {
        for from in ExecutionStatus::ALL {
            for to in ExecutionStatus::ALL {
                if LEGAL.contains(&(from, to)) {
                    continue;
                }
                assert_eq!(
                    transition(from, to),
                    Err(TransitionError { from, to }),
                    "{from} -> {to} must be illegal"
                );
            }
        }
    }

    #[test]
    fn ended_states_change_only_by_a_retry_and_completed_never() {
        for from in ExecutionStatus::ALL.into_iter().filter(|s| s.is_terminal()) {
            for to in ExecutionStatus::ALL {
                let retry = from != Completed && to == Pending;
                assert_eq!(transition(from, to).is_ok(), retry, "{from} -> {to}");
            }
        }
    }

    #[test]
    fn only_active_unpaused_statuses_are_claimable() {
        let claimable: Vec<ExecutionStatus> = ExecutionStatus::ALL
            .into_iter()
            .filter(|s| s.is_claimable())
            .collect();
        assert_eq!(claimable, vec![Pending, Running, Retrying, Waiting]);
        assert!(!Paused.is_terminal() && !Paused.is_retryable());
    }

    #[test]
    fn illegal_transition_message_names_both_states() {
        let err = transition(Completed, Running).unwrap_err();
        assert_eq!(
            err.to_string(),
            "illegal execution transition completed -> running"
        );
        let err = transition(Pending, Completed).unwrap_err();
        assert_eq!(
            err.to_string(),
            "illegal execution transition pending -> completed"
        );
    }

    #[test]
    fn status_strings_round_trip() {
        for status in ExecutionStatus::ALL {
            assert_eq!(status.as_str().parse::<ExecutionStatus>(), Ok(status));
            assert_eq!(
                serde_json::to_value(status).unwrap(),
                serde_json::json!(status.as_str())
            );
        }
        assert_eq!(
            "done".parse::<ExecutionStatus>(),
            Err(UnknownStatus("done".into()))
        );
    }
}
