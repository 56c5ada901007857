//! Executions, node runs and saved workflows: the records a [`Store`](crate::Store) returns.
//!
//! An execution is one run of one workflow version. It is pinned to that version when it is
//! created, so saving a new version never changes an execution in flight. Its progress is the
//! list of [`NodeRun`]s recorded for it: a recorded completed node never runs again.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::graph::WorkflowDefinition;
use crate::state::ExecutionStatus;

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
            schemars::JsonSchema,
        )]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A new random id.
            pub fn new() -> Self {
                Self(Uuid::new_v4())
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }

        impl From<Uuid> for $name {
            fn from(id: Uuid) -> Self {
                Self(id)
            }
        }
    };
}

uuid_id!(
    /// Identifies an execution (`workflow_executions.id`).
    ExecutionId
);
uuid_id!(
    /// Identifies a workflow across its versions (`workflows.id`).
    WorkflowId
);

macro_rules! number_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
            schemars::JsonSchema,
        )]
        #[serde(transparent)]
        pub struct $name(pub i64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl From<i64> for $name {
            fn from(n: i64) -> Self {
                Self(n)
            }
        }
    };
}

number_id!(
    /// The token of one claim of an execution (`workflow_executions.lease_token`): it grows
    /// by one on every claim, and every write of the claim carries it, so a write of an
    /// earlier claim changes nothing ([`StoreError::LeaseLost`](crate::StoreError::LeaseLost)).
    LeaseToken
);
number_id!(
    /// Identifies a signal (`workflow_signals.id`); ids grow in the order signals arrive.
    SignalId
);

/// One saved, immutable version of a workflow.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct WorkflowVersion {
    /// The workflow this is a version of.
    pub workflow_id: WorkflowId,
    /// The workflow's unique name.
    pub name: String,
    /// Version number, starting at 1 and increasing by one on every save.
    pub version: i32,
    /// The definition as saved.
    pub definition: WorkflowDefinition,
    /// When this version was saved (database time).
    pub created_at: DateTime<Utc>,
}

/// A saved workflow, without its definition: what a list of workflows shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct WorkflowSummary {
    /// The workflow's id.
    pub workflow_id: WorkflowId,
    /// Its unique name.
    pub name: String,
    /// Its newest version, the one new executions run.
    pub latest_version: i32,
    /// When its first version was saved (database time).
    pub created_at: DateTime<Utc>,
    /// When its newest version was saved (database time).
    pub updated_at: DateTime<Utc>,
}

/// One execution of a workflow version, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Execution {
    /// The execution's id.
    pub id: ExecutionId,
    /// The workflow it runs.
    pub workflow_id: WorkflowId,
    /// The workflow's name.
    pub workflow_name: String,
    /// The workflow version it is pinned to.
    pub workflow_version: i32,
    /// Where it is in the state machine.
    pub status: ExecutionStatus,
    /// The input it was started with.
    pub input: Value,
    /// The output of its final nodes, once completed.
    pub output: Option<Value>,
    /// Why it failed, once failed.
    pub error: Option<String>,
    /// Higher runs first among runnable executions.
    pub priority: i32,
    /// Its concurrency group within its workflow, when the workflow has `concurrency`: `""`
    /// for a limit per workflow, else the key's value ([`flow`](crate::flow)).
    pub concurrency_key: Option<String>,
    /// Since when it has been held back by its concurrency group (its limit is reached, or
    /// its fair window is full); `None` when it is not held.
    pub held_since: Option<DateTime<Utc>>,
    /// Its business key, unique among the workflow's executions that have not ended (see
    /// [`StartExecutionParams::key`](crate::StartExecutionParams::key)).
    pub key: Option<String>,
    /// When it may next be advanced; `None` while it waits with no timer.
    pub run_at: Option<DateTime<Utc>>,
    /// Past this it ends `timed_out`.
    pub deadline: Option<DateTime<Utc>>,
    /// The schedule that started it, on a tick or by a trigger; `None` for other starts (and
    /// once the schedule is deleted).
    pub schedule_id: Option<crate::schedule::ScheduleId>,
    /// The schedule tick it was started for; `None` unless a schedule fired it on a tick.
    pub scheduled_for: Option<DateTime<Utc>>,
    /// The worker holding its lease, if any.
    pub lease_owner: Option<String>,
    /// When that lease expires (database time).
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// Increments on every claim; every write for a claimed execution is fenced by it.
    pub lease_token: LeaseToken,
    /// Claims in a row that found the previous lease expired with no step recorded since:
    /// how often a worker died while running it.
    pub rescue_count: i32,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When a worker first claimed it.
    pub started_at: Option<DateTime<Utc>>,
    /// When it reached a terminal status.
    pub finished_at: Option<DateTime<Utc>>,
    /// When a pause was asked of it while it was running and not yet honoured: its holder
    /// starts no new node and pauses it once the nodes in flight have finished.
    pub pause_requested_at: Option<DateTime<Utc>>,
    /// The node attempt of another execution that started this one as a sub-workflow.
    pub parent: Option<ExecutionParent>,
    /// How many parents are above it: 0 for an execution started otherwise.
    pub depth: u32,
}

/// The node attempt of another execution (the parent) that started an execution as a
/// sub-workflow, and waits for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct ExecutionParent {
    /// The parent execution.
    pub execution_id: ExecutionId,
    /// The node that started it.
    pub node_id: String,
    /// The item of that node (a `map`) it was started for, if it was.
    pub item: Option<u32>,
    /// That node's (or item's) attempt: each attempt starts at most one child.
    pub attempt: u32,
}

/// An execution another one started as a sub-workflow, as the parent's detail lists it.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct ChildExecution {
    /// The child's id.
    pub id: ExecutionId,
    /// Its workflow's name.
    pub workflow_name: String,
    /// Where it is in the state machine.
    pub status: ExecutionStatus,
    /// The parent's node that started it.
    pub node_id: String,
    /// The item of that node (a `map`) it was started for, if it was.
    pub item: Option<u32>,
    /// That node's (or item's) attempt.
    pub attempt: u32,
    /// The parent's retry that ran the node again, after which this child no longer answers
    /// for it; `None` while it does.
    pub detached_by_retry: Option<i64>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

/// How a node run ended. The strings are the ones stored in the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum NodeRunStatus {
    /// The node produced its output.
    Completed,
    /// The node returned an error or panicked.
    Failed,
    /// The node ran past its timeout and was stopped.
    TimedOut,
    /// No path into the node was taken, so it did not run.
    Skipped,
    /// The worker shut down before the attempt ended and released the execution; the attempt
    /// runs again with the same number, so it does not use up a retry.
    Interrupted,
    /// The attempt's worker died (its lease expired); recorded by the worker that rescued the
    /// execution, which runs the attempt again with the same number.
    Abandoned,
    /// The node parked the execution to wait for a signal or a timer (`started_at` is when it
    /// began waiting); its result follows under the same attempt number when it resumes.
    Waiting,
}

impl NodeRunStatus {
    /// Every node run status.
    pub const ALL: [NodeRunStatus; 7] = [
        Self::Completed,
        Self::Failed,
        Self::TimedOut,
        Self::Skipped,
        Self::Interrupted,
        Self::Abandoned,
        Self::Waiting,
    ];

    /// The snake_case name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::TimedOut => "timed_out",
            Self::Skipped => "skipped",
            Self::Interrupted => "interrupted",
            Self::Abandoned => "abandoned",
            Self::Waiting => "waiting",
        }
    }
}

impl fmt::Display for NodeRunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that names no [`NodeRunStatus`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown node run status \"{0}\"")]
pub struct UnknownNodeRunStatus(pub String);

impl FromStr for NodeRunStatus {
    type Err = UnknownNodeRunStatus;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| UnknownNodeRunStatus(s.to_owned()))
    }
}

/// One recorded attempt of one node of an execution.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct NodeRun {
    /// The execution it belongs to.
    pub execution_id: ExecutionId,
    /// The node's id in the workflow definition.
    pub node_id: String,
    /// The node's type.
    pub node_type: String,
    /// Attempt number, from 1.
    pub attempt: i32,
    /// How the attempt ended.
    pub status: NodeRunStatus,
    /// The input the node received.
    pub input: Option<Value>,
    /// The node's output, when completed.
    pub output: Option<Value>,
    /// The branch the node chose, if any.
    pub branch: Option<String>,
    /// The error, when failed or timed out.
    pub error: Option<String>,
    /// The worker that ran it.
    pub worker_id: Option<String>,
    /// When it started (database time).
    pub started_at: DateTime<Utc>,
    /// When it ended (database time).
    pub finished_at: DateTime<Utc>,
    /// The retry that made this node run again, if one did: the run stays in the history but
    /// no longer counts for the execution's progress (see [`crate::retry`]).
    pub superseded_by: Option<i64>,
}

impl NodeRun {
    /// How long the attempt took.
    pub fn duration(&self) -> Duration {
        (self.finished_at - self.started_at)
            .to_std()
            .unwrap_or_default()
    }
}

/// One recorded attempt of one item of a `map` node: the node type the map runs, run once
/// for item `item` of its list.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct ItemRun {
    /// The execution it belongs to.
    pub execution_id: ExecutionId,
    /// The map node's id.
    pub node_id: String,
    /// The item's index in the map's list, from 0.
    pub item: u32,
    /// The node type run for it.
    pub node_type: String,
    /// The item's attempt, from 1: each item is retried by its own policy.
    pub attempt: u32,
    /// How the attempt ended: `completed`, `failed` or `timed_out`.
    pub status: NodeRunStatus,
    /// The item.
    pub input: Option<Value>,
    /// Its output, when completed.
    pub output: Option<Value>,
    /// The error, when failed or timed out.
    pub error: Option<String>,
    /// Whether it failed for good: no other attempt of the item runs.
    pub fatal: bool,
    /// The worker that ran it.
    pub worker_id: Option<String>,
    /// When it started (database time).
    pub started_at: DateTime<Utc>,
    /// When it ended (database time).
    pub finished_at: DateTime<Utc>,
}

/// A message sent to an execution, kept in its durable inbox until a node consumes it.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Signal {
    /// Its id, in the order signals arrived.
    pub id: SignalId,
    /// The execution it was sent to.
    pub execution_id: ExecutionId,
    /// Its name, e.g. `approval`.
    pub name: String,
    /// Its JSON payload.
    pub payload: Value,
    /// The sender's key: a retried send with the same key is stored once.
    pub idempotency_key: Option<String>,
    /// When it arrived.
    pub created_at: DateTime<Utc>,
    /// When a node consumed it.
    pub consumed_at: Option<DateTime<Utc>>,
    /// The node that consumed it.
    pub consumed_by_node: Option<String>,
}

/// An execution with its node runs and signals, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct ExecutionDetail {
    /// The execution.
    #[serde(flatten)]
    pub execution: Execution,
    /// Every recorded node run, in the order they were recorded.
    pub node_runs: Vec<NodeRun>,
    /// Every signal sent to it, in the order they arrived.
    pub signals: Vec<Signal>,
    /// Every retry asked of it, oldest first.
    pub retries: Vec<crate::retry::ExecutionRetry>,
    /// The executions its nodes started as sub-workflows, oldest first.
    pub children: Vec<ChildExecution>,
    /// The item runs of its `map` nodes, by node, item and attempt (those a retry superseded
    /// are left out).
    pub item_runs: Vec<ItemRun>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_display_and_parse_as_uuids() {
        let id = ExecutionId::new();
        assert_eq!(id.to_string().parse::<ExecutionId>().unwrap(), id);
        assert!("not-a-uuid".parse::<WorkflowId>().is_err());
    }

    #[test]
    fn node_run_status_strings_round_trip() {
        for status in NodeRunStatus::ALL {
            assert_eq!(status.as_str().parse::<NodeRunStatus>(), Ok(status));
        }
        assert!("running".parse::<NodeRunStatus>().is_err());
    }
}
