//! The [`Store`] trait: the driver interface every backend implements, and that the
//! [`Client`](crate::Client) and the worker call. Applications use the client, which adds the
//! rules that are not a store's to know (validation before a save, a schedule's first tick).
//!
//! Implementations live in the `workflow-worker-store` crate. Each method is one atomic step; core
//! decides every status change (see [`transition`](crate::transition)) and a store only
//! persists it. Time is always the database's clock: callers pass durations (a lease length,
//! a backoff), never instants from their own clock.
//!
//! # Claims, leases and fencing
//! [`Store::claim_executions`] hands out runnable executions (non-terminal, `run_at` due,
//! lease free or expired) under a lease: an owner, an expiry, and a `lease_token` that
//! increments on every claim. Every later write for that execution passes the token it was
//! claimed with; if another worker has claimed it since, the write changes nothing and returns
//! [`StoreError::LeaseLost`].

use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;
use serde_json::Value;

use crate::execution::{
    Execution, ExecutionDetail, ExecutionId, ItemRun, LeaseToken, NodeRun, NodeRunStatus, Signal,
    SignalId, WorkflowId, WorkflowSummary, WorkflowVersion,
};
use crate::flow::RateRequest;
use crate::graph::WorkflowGraph;
use crate::schedule::{Schedule, ScheduleId};
use crate::state::ExecutionStatus;

/// A store failure: one variant per situation, carrying the ids it is about, so a caller
/// never reads a message to tell them apart. Stores classify their backend's errors into
/// these portable variants.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The named thing does not exist.
    #[error("{entity} {id} not found")]
    NotFound {
        /// What kind of thing: `workflow`, `execution`, `schedule`, ...
        entity: &'static str,
        /// How it was named.
        id: String,
    },
    /// A node run of the step is recorded already (the same execution, node and attempt):
    /// nothing of the step was written. A writer that retried a step whose first attempt
    /// committed meets this, and it means the step is done.
    #[error("a node run of this step of execution {execution_id} is recorded already")]
    AlreadyRecorded {
        /// The execution.
        execution_id: ExecutionId,
    },
    /// The execution already ended, so it cannot be cancelled or signalled.
    #[error("execution {execution_id} already ended ({status})")]
    AlreadyEnded {
        /// The execution.
        execution_id: ExecutionId,
        /// The terminal status it ended in.
        status: ExecutionStatus,
    },
    /// The execution has not ended as failed, timed out or cancelled, so it cannot be
    /// retried (it is running, waiting, completed, or another retry made it pending).
    #[error(
        "execution {execution_id} is {status}: only a failed, timed-out or cancelled execution can be retried"
    )]
    NotRetryable {
        /// The execution.
        execution_id: ExecutionId,
        /// Its status.
        status: ExecutionStatus,
    },
    /// The signal a node consumed was consumed already (by an earlier write of the same
    /// step): nothing of the step was written.
    #[error("signal {signal_id} of execution {execution_id} was already consumed")]
    SignalConsumed {
        /// The execution.
        execution_id: ExecutionId,
        /// The signal.
        signal_id: SignalId,
    },
    /// The execution was claimed by another worker since (or it ended): the write was dropped.
    #[error("lease lost on execution {execution_id} (lease token {lease_token} is stale)")]
    LeaseLost {
        /// The execution.
        execution_id: ExecutionId,
        /// The token the write carried.
        lease_token: LeaseToken,
    },
    /// The write breaks a constraint of the schema that none of the variants above
    /// describes (a row another program inserted meanwhile, say).
    #[error("the write breaks constraint {constraint}")]
    Constraint {
        /// The constraint's name, or the database's message when it names none.
        constraint: String,
    },
    /// The database cannot be reached, or the connection pool is closed or exhausted.
    #[error("database unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Applying migrations failed.
    #[error("database migration failed")]
    Migration(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The business key is held by another execution of the workflow that has not ended: a
    /// retry of an ended execution cannot take it back while another holds it.
    #[error(
        "key \"{key}\" of workflow {workflow_id} is held by execution {holder}, which has not ended"
    )]
    KeyInUse {
        /// The workflow.
        workflow_id: WorkflowId,
        /// The key.
        key: String,
        /// The execution that holds it.
        holder: ExecutionId,
    },
    /// A call that needs a business key was made without one.
    #[error("a business key is required to {action}")]
    KeyRequired {
        /// What was asked: `signal with start`.
        action: &'static str,
    },
    /// A business key is empty or longer than [`MAX_KEY_CHARS`].
    #[error("a business key must be 1 to {max} characters, not {chars}", max = MAX_KEY_CHARS)]
    KeyLength {
        /// How many characters it has.
        chars: usize,
    },
    /// A start's concurrency key is missing from its input, too long, or given for a
    /// workflow without concurrency.
    #[error("cannot start: {0}")]
    ConcurrencyKey(String),
    /// A stored value could not be read back (for example an unknown status string).
    #[error("invalid stored data: {0}")]
    InvalidData(String),
    /// Any other database error.
    #[error("database error")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// How a workflow is named when starting an execution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkflowRef {
    /// By unique name.
    Name(String),
    /// By id.
    Id(WorkflowId),
}

impl std::fmt::Display for WorkflowRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Name(name) => write!(f, "\"{name}\""),
            Self::Id(id) => write!(f, "{id}"),
        }
    }
}

impl From<&str> for WorkflowRef {
    /// A UUID names a workflow by id, anything else by name.
    fn from(s: &str) -> Self {
        match s.parse() {
            Ok(id) => Self::Id(id),
            Err(_) => Self::Name(s.to_owned()),
        }
    }
}

impl From<String> for WorkflowRef {
    /// A UUID names a workflow by id, anything else by name.
    fn from(s: String) -> Self {
        match s.parse() {
            Ok(id) => Self::Id(id),
            Err(_) => Self::Name(s),
        }
    }
}

/// Parameters of [`Store::start_execution`].
#[derive(Debug, Clone)]
pub struct StartExecutionParams {
    /// The workflow; the execution is pinned to its latest version.
    pub workflow: WorkflowRef,
    /// The execution input, available to every node.
    pub input: Value,
    /// Higher runs first among runnable executions; `None` takes the workflow's `priority`
    /// (else 0).
    pub priority: Option<i32>,
    /// The deadline, from now; `None` takes the workflow's `timeout`, if any.
    pub timeout: Option<Duration>,
    /// A business key (an order number, a request id), unique per workflow: a start with the
    /// key of an execution that has not ended returns that execution instead of creating
    /// one; what a start does once it ended is [`key_reuse`](Self::key_reuse)'s to say.
    pub key: Option<String>,
    /// What a start with a [`key`](Self::key) does when the key's latest execution ended.
    pub key_reuse: KeyReuse,
    /// The execution's concurrency key, for a workflow whose `concurrency` limits running
    /// executions per key (or dequeues fairly across keys); `None` takes the value at the
    /// workflow's key path in the input ([`flow`](crate::flow)).
    pub concurrency_key: Option<String>,
}

impl StartExecutionParams {
    /// Starts `workflow` with `input` at the workflow's priority, with no key.
    pub fn new(workflow: impl Into<WorkflowRef>, input: Value) -> Self {
        Self {
            workflow: workflow.into(),
            input,
            priority: None,
            timeout: None,
            key: None,
            key_reuse: KeyReuse::default(),
            concurrency_key: None,
        }
    }

    /// Starts at `priority` rather than the workflow's.
    #[must_use]
    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = Some(priority);
        self
    }

    /// Puts the execution in the concurrency group `key` (see
    /// [`concurrency_key`](Self::concurrency_key)).
    #[must_use]
    pub fn concurrency_key(mut self, key: impl Into<String>) -> Self {
        self.concurrency_key = Some(key.into());
        self
    }

    /// Starts at most one execution for `key` (see [`key`](Self::key)).
    #[must_use]
    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// What a start with a key does once the key's execution ended. Defaults to
    /// [`KeyReuse::Never`].
    #[must_use]
    pub fn key_reuse(mut self, reuse: KeyReuse) -> Self {
        self.key_reuse = reuse;
        self
    }

    /// Checks the keys' lengths ([`StoreError::KeyLength`], [`StoreError::ConcurrencyKey`]),
    /// as stores do before they write.
    pub fn check_keys(&self) -> Result<(), StoreError> {
        if let Some(key) = &self.concurrency_key {
            crate::flow::check_concurrency_key(key).map_err(StoreError::ConcurrencyKey)?;
        }
        match &self.key {
            Some(key) => {
                let chars = key.chars().count();
                if (1..=MAX_KEY_CHARS).contains(&chars) {
                    Ok(())
                } else {
                    Err(StoreError::KeyLength { chars })
                }
            }
            None => Ok(()),
        }
    }
}

/// The longest business key, in characters (the schema's limit too).
pub const MAX_KEY_CHARS: usize = 512;

/// What a start with a business key does when an execution with that key ended already. An
/// execution that has not ended always holds its key: a start with it returns that execution.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum KeyReuse {
    /// The key names one execution for good: a start returns the latest execution with the
    /// key, whether it ended or not (an idempotent start).
    #[default]
    Never,
    /// Once the key's execution ended, a start with the key creates a new execution (one at a
    /// time per key: a singleton per business key).
    AfterEnd,
}

impl KeyReuse {
    /// The name used by the CLI, the HTTP API and the SQL functions: `never`, `after_end`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Never => "never",
            Self::AfterEnd => "after_end",
        }
    }
}

impl std::str::FromStr for KeyReuse {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "never" => Ok(Self::Never),
            "after_end" => Ok(Self::AfterEnd),
            other => Err(format!(
                "unknown key reuse \"{other}\" (expected never or after_end)"
            )),
        }
    }
}

/// What [`Store::start_execution`] returns: the execution, and whether this start created it
/// (`false`: a start with the same key returned an execution that existed).
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct StartedExecution {
    /// The execution started, or the one that holds the key.
    pub execution: Execution,
    /// Whether this start created it.
    pub created: bool,
}

/// Parameters of [`Store::signal_with_start`]: a signal to the execution of a workflow that
/// holds a business key, started first if none does.
#[derive(Debug, Clone)]
pub struct SignalWithStartParams {
    /// The execution to send the signal to, or to start (its [`key`](StartExecutionParams::key)
    /// is required: [`StoreError::KeyRequired`] without one).
    pub start: StartExecutionParams,
    /// The signal's name, e.g. `approval`.
    pub name: String,
    /// Its payload.
    pub payload: Value,
    /// A sender's key: sending again with the same key stores nothing new.
    pub idempotency_key: Option<String>,
}

impl SignalWithStartParams {
    /// Sends signal `name` with `payload` to the execution holding `start`'s key, started
    /// from `start` if none does.
    pub fn new(start: StartExecutionParams, name: impl Into<String>, payload: Value) -> Self {
        Self {
            start,
            name: name.into(),
            payload,
            idempotency_key: None,
        }
    }

    /// The key, checked: [`StoreError::KeyRequired`] without one, [`StoreError::KeyLength`]
    /// for an empty or long one. Stores call it before they write.
    pub fn checked_key(&self) -> Result<&str, StoreError> {
        self.start.check_keys()?;
        self.start.key.as_deref().ok_or(StoreError::KeyRequired {
            action: "signal with start",
        })
    }
}

/// What [`Store::signal_with_start`] returns.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct SignalledExecution {
    /// The execution signalled, and whether this call started it.
    #[serde(flatten)]
    pub started: StartedExecution,
    /// The signal stored (or the one stored before with the same idempotency key).
    pub signal: Signal,
}

/// What [`Store::start_child_execution`] returns.
#[derive(Debug, Clone, PartialEq)]
pub struct StartedChild {
    /// The child execution, as it is now (one started before may have ended).
    pub execution: Execution,
    /// Whether this call started it.
    pub created: bool,
    /// Once the child has ended: the signal its end stored in the parent's inbox, if not
    /// consumed yet, read in the same transaction as the child, so a parent claimed before
    /// the child ended still finds it.
    pub end_signal: Option<SignalId>,
}

/// Parameters of [`Store::start_child_execution`]: a node attempt starts a sub-workflow.
#[derive(Debug, Clone)]
pub struct StartChildParams {
    /// The node attempt starting it.
    pub parent: crate::ExecutionParent,
    /// The token the parent was claimed with: the child is started only while the parent is
    /// running under it.
    pub lease_token: LeaseToken,
    /// The child's workflow; it is pinned to its latest version.
    pub workflow: WorkflowRef,
    /// The child's input.
    pub input: Value,
    /// The child's depth: its parent's plus one.
    pub depth: u32,
    /// The child's priority (its parent's).
    pub priority: i32,
}

/// Parameters of [`Store::claim_executions`].
#[derive(Debug, Clone)]
pub struct ClaimParams {
    /// Recorded as the lease owner.
    pub worker_id: String,
    /// Claim at most this many.
    pub limit: u32,
    /// How long the lease lasts from the claim (database time).
    pub lease_duration: Duration,
    /// Which executions to claim by how often their workers died while running them.
    pub rescues: RescueFilter,
    /// Only executions whose workflow version uses no node type outside these (the claiming
    /// worker's), so workers with different node types can share a database; `None` claims
    /// regardless of node types.
    pub node_types: Option<Vec<String>>,
}

/// Sorts runnable executions by their `rescue_count` for a claim. A *suspect* is an
/// execution whose lease expired (its worker died) and whose `rescue_count` before this claim
/// is at least the threshold: one more death in the company of others could get them
/// quarantined too, so workers run suspects alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RescueFilter {
    /// Every runnable execution.
    Any,
    /// Only executions that are not suspects at this threshold.
    NotSuspect(i32),
    /// Only suspects at this threshold.
    Suspect(i32),
    /// One suspect at this threshold, alone, if one is runnable; else up to the limit of the
    /// others (as [`NotSuspect`](Self::NotSuspect)). What an idle worker asks for, in one
    /// statement.
    SuspectFirst(i32),
}

impl RescueFilter {
    /// The threshold below which expired executions are claimed normally, and the one from
    /// which only suspects are claimed: `(not_suspect_below, suspect_from)` for queries with
    /// two nullable parameters. [`SuspectFirst`](Self::SuspectFirst) needs a query of its
    /// own; a store that reads only these gets the [`NotSuspect`](Self::NotSuspect) ones.
    pub fn thresholds(self) -> (Option<i32>, Option<i32>) {
        match self {
            Self::Any => (None, None),
            Self::NotSuspect(n) => (Some(n), None),
            Self::Suspect(n) => (None, Some(n)),
            Self::SuspectFirst(n) => (Some(n), None),
        }
    }
}

/// An execution claimed under a lease, with what has been recorded for it so far.
#[derive(Debug, Clone)]
pub struct ClaimedExecution {
    /// The execution; its `lease_token` fences every write made for this claim.
    pub execution: Execution,
    /// Its recorded node runs, oldest first.
    pub node_runs: Vec<NodeRun>,
    /// Its signals not yet consumed, oldest first, when it was claimed out of `waiting`
    /// (otherwise empty: an execution that parks while one is pending is woken at once, and
    /// then gets them).
    pub signals: Vec<Signal>,
    /// Set when a value of the claimed row could not be read (JSON the database accepted
    /// but that nests deeper than the parser allows, say): what was wrong. The unreadable
    /// value reads as `null`; the worker fails the execution with this message at once,
    /// without running a node, and the rest of the claim is unaffected.
    pub unreadable: Option<String>,
}

/// Parameters of [`Store::send_signal`].
#[derive(Debug, Clone)]
pub struct SendSignalParams {
    /// The execution to send it to.
    pub execution_id: ExecutionId,
    /// Its name, e.g. `approval`.
    pub name: String,
    /// Its payload.
    pub payload: Value,
    /// A sender's key: sending again with the same key stores nothing new.
    pub idempotency_key: Option<String>,
}

/// Parameters of [`Store::retry_execution`]: what [`Client::retry`](crate::Client::retry)
/// decided.
#[derive(Debug, Clone)]
pub struct RetryExecutionParams {
    /// The execution to run again.
    pub execution_id: ExecutionId,
    /// Who asked, recorded with the retry.
    pub requested_by: String,
    /// Where it runs again from, recorded with the retry.
    pub from: crate::retry::RetryFrom,
    /// The version of its workflow it runs from now on.
    pub workflow_version: i32,
    /// The nodes whose runs the retry supersedes (see [`crate::retry::nodes_to_rerun`]).
    pub rerun: Vec<String>,
}

/// A node run to record.
#[derive(Debug, Clone)]
pub struct NewNodeRun {
    /// The node's id.
    pub node_id: String,
    /// The node's type.
    pub node_type: String,
    /// Attempt number, from 1.
    pub attempt: u32,
    /// How it ended.
    pub status: NodeRunStatus,
    /// Its input.
    pub input: Option<Value>,
    /// Its output, when completed.
    pub output: Option<Value>,
    /// The branch it chose.
    pub branch: Option<String>,
    /// The error, when failed.
    pub error: Option<String>,
    /// How long it ran.
    pub duration: Duration,
    /// How long before the write it ended (a replayable node's run waits for the execution's
    /// next write): the store records `finished_at = now() - ended_ago` and `started_at`
    /// `duration` before that, in database time.
    pub ended_ago: Duration,
    /// The signal the node consumed; it is marked consumed in the same transaction, and the
    /// whole step fails with [`StoreError::SignalConsumed`] if it already was.
    pub consumed_signal: Option<SignalId>,
}

/// An item run of a `map` node to record, with [`Store::record_item_runs`].
#[derive(Debug, Clone)]
pub struct NewItemRun {
    /// The map node's id.
    pub node_id: String,
    /// The item's index, from 0.
    pub item: u32,
    /// The node type run for it.
    pub node_type: String,
    /// The item's attempt, from 1.
    pub attempt: u32,
    /// `Completed`, `Failed` or `TimedOut`.
    pub status: NodeRunStatus,
    /// The item.
    pub input: Option<Value>,
    /// Its output, when completed.
    pub output: Option<Value>,
    /// The error, when it failed.
    pub error: Option<String>,
    /// Whether it failed for good (no other attempt of the item runs).
    pub fatal: bool,
    /// How long it ran.
    pub duration: Duration,
    /// How long before the write it ended: item runs are written in batches, so the store
    /// records `finished_at = now() - ended_ago` and `started_at` `duration` before that, in
    /// database time.
    pub ended_ago: Duration,
    /// The signal the item's node consumed (the end of its child, for an item that ran a
    /// sub-workflow): marked consumed in the same transaction, if it is still pending.
    pub consumed_signal: Option<SignalId>,
}

/// What happens to the execution in the step that records node runs.
#[derive(Debug, Clone, PartialEq)]
pub enum Advance {
    /// It stays `running`; the lease is extended by `lease_duration`.
    Continue {
        /// The new lease length from now.
        lease_duration: Duration,
    },
    /// It moves to `retrying`, releases its lease, and is runnable again after `delay`.
    Retry {
        /// The backoff before the retry.
        delay: Duration,
    },
    /// It moves to `waiting` and releases its lease. It is runnable again after `delay`
    /// (never, for `None`) or as soon as a signal named in `signals` arrives; if one is
    /// already pending, at once.
    Wait {
        /// The earliest timer among its waiting nodes.
        delay: Option<Duration>,
        /// The signal names its waiting nodes wait for.
        signals: Vec<String>,
    },
    /// It moves to `paused` and releases its lease: no worker claims it until
    /// [`Store::resume_execution`] (or a retry, for one paused by a failure). Without an
    /// `error` this honours a pause asked of it ([`Execution::pause_requested_at`]); if a
    /// resume withdrew that request meanwhile, it is released instead, as by
    /// [`Release`](Self::Release).
    Pause {
        /// Why, when a node failed for good under a policy that pauses instead of failing;
        /// `None` for a pause an operator asked for.
        error: Option<String>,
    },
    /// It stays `running` but its lease is released, so any worker may claim it at once
    /// (graceful shutdown). Unlike the others, this does not count as progress for poison
    /// detection.
    Release,
    /// It ends in terminal `status`, releasing its lease.
    Finish {
        /// A terminal status decided by [`transition`](crate::transition).
        status: ExecutionStatus,
        /// The execution's output.
        output: Option<Value>,
        /// Why it failed.
        error: Option<String>,
    },
}

/// One step of one execution for [`Store::record_steps`]: node runs, and what happens to the
/// execution with them.
#[derive(Debug, Clone)]
pub struct RecordStep {
    /// The execution.
    pub execution_id: ExecutionId,
    /// The token it was claimed with.
    pub lease_token: LeaseToken,
    /// The worker recording them.
    pub worker_id: String,
    /// The runs to record.
    pub runs: Vec<NewNodeRun>,
    /// What happens to the execution in the same transaction.
    pub advance: Advance,
}

/// What [`Store::record_steps`] says of a step it recorded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StepRecorded {
    /// The step kept the execution running ([`Advance::Continue`]) and a pause is asked of it
    /// ([`Execution::pause_requested_at`]): its holder starts no new node and pauses it once
    /// the nodes in flight have finished. Always `false` for the other advances.
    pub pause_requested: bool,
}

/// Parameters of [`Store::create_schedule`]; [`Client::create_schedule`](crate::Client::create_schedule)
/// validates them and computes the first tick.
#[derive(Debug, Clone)]
pub struct CreateScheduleParams {
    /// The workflow to start on every tick.
    pub workflow: WorkflowRef,
    /// A cron expression.
    pub cron: String,
    /// An IANA time zone.
    pub timezone: String,
    /// The input of every execution.
    pub input: Value,
    /// How many missed ticks to fire when several are due at once.
    pub catch_up: u32,
    /// The first tick.
    pub next_fire_at: chrono::DateTime<chrono::Utc>,
}

/// What [`Store::due_schedules`] found.
#[derive(Debug, Clone)]
pub struct DueSchedules {
    /// The database's clock when it looked.
    pub now: chrono::DateTime<chrono::Utc>,
    /// Enabled schedules whose next tick is due, or not yet computed.
    pub due: Vec<Schedule>,
    /// The earliest next tick of the other enabled schedules.
    pub next_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// Parameters of [`Store::fire_schedule`].
#[derive(Debug, Clone)]
pub struct FireScheduleParams {
    /// The schedule.
    pub schedule_id: ScheduleId,
    /// Its `next_fire_at` as read: the step applies only if it is still that (fencing out a
    /// worker that fired it meanwhile).
    pub expected_next_fire_at: Option<chrono::DateTime<chrono::Utc>>,
    /// The ticks to start executions for.
    pub ticks: Vec<chrono::DateTime<chrono::Utc>>,
    /// The tick after them.
    pub next_fire_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// Which executions a bulk action touches ([`Client::cancel_matching`] and its kin, and
/// [`Store::matching_executions`]): every condition given must hold. An empty filter matches
/// every execution, so the Client refuses one unless asked for all.
///
/// [`Client::cancel_matching`]: crate::Client::cancel_matching
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecutionFilter {
    /// In any of these statuses (any status when empty).
    pub statuses: Vec<ExecutionStatus>,
    /// Of this workflow.
    pub workflow: Option<WorkflowRef>,
    /// Created before this instant.
    pub created_before: Option<chrono::DateTime<chrono::Utc>>,
    /// Created at or after this instant.
    pub created_after: Option<chrono::DateTime<chrono::Utc>>,
    /// Whose error contains this text, ignoring case (ASCII case on SQLite).
    pub error_contains: Option<String>,
}

impl ExecutionFilter {
    /// Whether no condition is set (every execution matches).
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Whether `execution` matches, as the stores decide it: what a bulk action checks again
    /// on a fresh read right before it acts.
    pub fn matches(&self, execution: &Execution) -> bool {
        let workflow = match &self.workflow {
            None => true,
            Some(WorkflowRef::Id(id)) => execution.workflow_id == *id,
            Some(WorkflowRef::Name(name)) => execution.workflow_name == *name,
        };
        let error = match &self.error_contains {
            None => true,
            Some(text) => execution
                .error
                .as_deref()
                .is_some_and(|error| error.to_lowercase().contains(&text.to_lowercase())),
        };
        (self.statuses.is_empty() || self.statuses.contains(&execution.status))
            && workflow
            && self
                .created_before
                .is_none_or(|at| execution.created_at < at)
            && self
                .created_after
                .is_none_or(|at| execution.created_at >= at)
            && error
    }
}

/// Parameters of [`Store::list_executions`].
#[derive(Debug, Clone, Default)]
pub struct ListExecutionsParams {
    /// Only executions in this status.
    pub status: Option<ExecutionStatus>,
    /// Only executions of this workflow.
    pub workflow: Option<WorkflowRef>,
    /// At most this many, newest first.
    pub limit: u32,
    /// Only those after this one in that order: the next page after a page that ended there.
    pub before: Option<ExecutionCursor>,
}

/// A place in the list of executions, newest first (by creation, then id, both descending):
/// where a page
/// ended, for [`ListExecutionsParams::before`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExecutionCursor {
    /// The creation time of the last execution of the page.
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// Its id.
    pub id: ExecutionId,
}

impl ExecutionCursor {
    /// The place right after `execution`.
    pub fn after(execution: &Execution) -> Self {
        Self {
            created_at: execution.created_at,
            id: execution.id,
        }
    }
}

/// How much work is queued, from [`Store::queue_stats`]: what the runnable, waiting and
/// running gauges of [`crate::metrics`] show.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueueStats {
    /// Executions a worker could claim now: not ended, due, and with no live lease.
    pub runnable: u64,
    /// How long the oldest runnable execution has been runnable (now minus its `run_at`);
    /// zero when none is.
    pub oldest_runnable_age: Duration,
    /// Executions parked in `waiting` (for a signal or a timer).
    pub waiting: u64,
    /// Executions held by a worker under a live lease.
    pub running: u64,
    /// Runnable executions that no live worker can run: their workflow uses a node type
    /// that none of the workers recorded by [`Store::record_worker`] and not expired has (all
    /// of them when no worker is live). They wait, untouched, for such a worker.
    pub unrunnable: u64,
    /// Executions held back by their workflow's concurrency (a limit reached or a fair
    /// window full), by workflow name; workflows with none held are left out.
    pub held: std::collections::BTreeMap<String, u64>,
}

/// A worker as [`Store::record_worker`] recorded it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
pub struct LiveWorker {
    /// Its worker id (the lease owner it writes).
    pub id: String,
    /// The node types it runs.
    pub node_types: Vec<String>,
    /// When it counts as gone unless it is recorded again (database time).
    pub expires_at: chrono::DateTime<chrono::Utc>,
}

impl LiveWorker {
    /// Whether it can run a workflow that uses `node_types`.
    pub fn runs(&self, node_types: &[String]) -> bool {
        node_types.iter().all(|t| self.node_types.contains(t))
    }
}

/// What [`Store::time_out_executions`] did, and when to look again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadlineSweep {
    /// The database's clock when it looked.
    pub now: chrono::DateTime<chrono::Utc>,
    /// The executions it ended.
    pub timed_out: Vec<TimedOutExecution>,
    /// The earliest deadline among the executions that have not ended (it may have passed,
    /// for one another statement held during the sweep).
    pub next_deadline: Option<chrono::DateTime<chrono::Utc>>,
    /// How many held executions it let go: their groups had room that no status change
    /// released (a limit raised, say).
    pub released: u64,
}

/// An execution whose priority [`Store::age_priorities`] raised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgedExecution {
    /// The execution.
    pub id: ExecutionId,
    /// Its priority before.
    pub from: i32,
    /// Its priority now: the highest among the executions that have not ended.
    pub to: i32,
}

/// An execution [`Store::time_out_executions`] ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimedOutExecution {
    /// The execution.
    pub id: ExecutionId,
    /// Its workflow's name.
    pub workflow_name: String,
}

/// Hints from the store, so workers act at once instead of at their next poll or heartbeat:
/// an execution may have become runnable (started, signalled, released), or one that was
/// running was cancelled. Hints are coalesced and may be lost; polling and the heartbeat
/// alone still find everything.
#[async_trait]
pub trait Wakeups: Send {
    /// Waits for the next hint.
    async fn next(&mut self) -> Result<Wakeup, StoreError>;
}

/// One hint of a [`Wakeups`] stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Wakeup {
    /// An execution may have become runnable: claim now.
    Runnable,
    /// The connection was lost and re-established: hints may have been missed meanwhile,
    /// so check now.
    Reconnected,
    /// A running execution was cancelled: the worker holding its lease stops its nodes now
    /// rather than at its next heartbeat.
    Cancelled(ExecutionId),
}

/// Persistence for workflows and executions.
///
/// Implementations must keep every promise in the [module docs](self): each method is atomic,
/// claims hand out each runnable execution to one worker at a time, and fenced writes with a
/// stale token change nothing and return [`StoreError::LeaseLost`].
#[async_trait]
pub trait Store: Send + Sync + 'static {
    // --- workflows ---

    /// Saves `graph` as the next version of the workflow of its name (version 1 for a new
    /// name) and returns it.
    async fn save_workflow(&self, graph: &WorkflowGraph) -> Result<WorkflowVersion, StoreError>;

    /// The latest version of a workflow.
    async fn get_workflow(&self, workflow: &WorkflowRef) -> Result<WorkflowVersion, StoreError>;

    /// Every saved workflow, by name, without definitions.
    async fn list_workflows(&self) -> Result<Vec<WorkflowSummary>, StoreError>;

    /// One version of a workflow.
    async fn get_workflow_version(
        &self,
        workflow_id: WorkflowId,
        version: i32,
    ) -> Result<WorkflowVersion, StoreError>;

    // --- executions ---

    /// Creates a `pending` execution pinned to the workflow's latest version, in one atomic
    /// step. With a [`key`](StartExecutionParams::key), it first looks for the workflow's
    /// latest execution with that key (only among those that have not ended, for
    /// [`KeyReuse::AfterEnd`]) and returns it, `created: false`, instead; two starts with one
    /// key at once, from any number of connections, create one execution. At most one
    /// execution per workflow and key has not ended, which the database enforces (a plain
    /// SQL insert too).
    async fn start_execution(
        &self,
        params: StartExecutionParams,
    ) -> Result<StartedExecution, StoreError>;

    /// Claims up to `limit` runnable executions, highest priority and oldest `run_at` first,
    /// marking them `running` under a new lease owned by `worker_id`. Two concurrent claims
    /// never return the same execution. Claiming an execution whose previous lease expired
    /// (a rescue) increments its `rescue_count`; recording a step (any advance but
    /// [`Advance::Release`]) resets it.
    async fn claim_executions(
        &self,
        params: ClaimParams,
    ) -> Result<Vec<ClaimedExecution>, StoreError>;

    /// Records steps (node runs with the advance of their execution), possibly of several
    /// executions, and returns one result per step, in order. This is the only way a step is
    /// recorded: a single step is a batch of one.
    ///
    /// Each step is atomic and fenced by its own lease token: with a stale token (or an
    /// execution no longer `running`) nothing of it is written and its result is
    /// [`StoreError::LeaseLost`]. A run with the same (execution, node, attempt) as a
    /// recorded one is [`StoreError::AlreadyRecorded`], a consumed signal consumed already
    /// [`StoreError::SignalConsumed`]; either way nothing of that step is written. A step
    /// that fails leaves the others of the batch to be recorded, and an execution that
    /// appears twice has its steps applied in order. Stores should commit the steps together
    /// where they can (one transaction, one flush to disk): a crash before a commit loses the
    /// steps it held, and only their nodes run again.
    async fn record_steps(&self, steps: &[RecordStep]) -> Vec<Result<StepRecorded, StoreError>>;

    /// Records item runs of `map` nodes of an execution this worker holds, fenced by its
    /// lease token like a step ([`StoreError::LeaseLost`] if it was claimed since or is not
    /// running), in one transaction, and says whether a pause is asked of it (as
    /// [`record_steps`](Store::record_steps) does for a step that keeps it running). An item
    /// completes at most once and an attempt is recorded at most once (each enforced by the
    /// database): a run that repeats one is [`StoreError::AlreadyRecorded`], and nothing of
    /// the call is written.
    async fn record_item_runs(
        &self,
        execution_id: ExecutionId,
        lease_token: LeaseToken,
        worker_id: &str,
        runs: &[NewItemRun],
    ) -> Result<StepRecorded, StoreError>;

    /// The item runs recorded for map node `node_id` of an execution, by item and attempt,
    /// leaving out those a retry superseded: where a map resumes from.
    async fn item_runs(
        &self,
        execution_id: ExecutionId,
        node_id: &str,
    ) -> Result<Vec<ItemRun>, StoreError>;

    /// Extends the leases of executions this worker holds by `lease_duration` from now and
    /// returns the ids whose lease was still held (the others were lost).
    async fn renew_leases(
        &self,
        leases: &[(ExecutionId, LeaseToken)],
        lease_duration: Duration,
    ) -> Result<Vec<ExecutionId>, StoreError>;

    /// Cancels an execution that has not ended, whatever it is doing, recording `reason` as
    /// its error; the worker running it (if any) loses its lease, stops its nodes and writes
    /// nothing more. A store with [`wakeups`](Store::wakeups) sends
    /// [`Wakeup::Cancelled`] for a running execution it cancels, so its holder stops at
    /// once. An execution that already ended is [`StoreError::AlreadyEnded`].
    async fn cancel_execution(
        &self,
        id: ExecutionId,
        reason: &str,
    ) -> Result<Execution, StoreError>;

    /// Pauses an execution that has not ended. A pending, retrying or waiting one becomes
    /// `paused` at once: unleased, with no `run_at`, never claimed until resumed. A running
    /// one is asked to pause ([`Execution::pause_requested_at`] is set): its holder hears at
    /// its next step ([`StepRecorded::pause_requested`]), starts no new node from then on,
    /// and records [`Advance::Pause`] once the nodes in flight have finished and recorded
    /// (any advance that releases its lease, but finishing, pauses it too); a worker that
    /// claims it with the request set pauses it at once. Pausing a paused execution, or
    /// asking again, changes nothing. An execution that already ended is [`StoreError::AlreadyEnded`].
    /// A paused execution can still be cancelled, still times out at its deadline and still
    /// receives signals (which wake it once it is resumed).
    async fn pause_execution(&self, id: ExecutionId) -> Result<Execution, StoreError>;

    /// Resumes a paused execution: it becomes `pending`, runnable at once, and workers are
    /// woken as for a new one. For a running execution asked to pause, the request is
    /// withdrawn. Any other execution that has not ended is returned unchanged; one that
    /// ended is [`StoreError::AlreadyEnded`]. One paused by a failure resumes through
    /// [`retry_execution`](Store::retry_execution) instead, so its failed node runs again from
    /// attempt 1 ([`Client::resume`](crate::Client::resume) decides which).
    async fn resume_execution(&self, id: ExecutionId) -> Result<Execution, StoreError>;

    /// Runs a failed, timed-out or cancelled execution again, in one transaction: records
    /// the retry (who, when, from where, from which status), marks the runs of the nodes in
    /// `rerun` as superseded by it, and makes the execution pending on `workflow_version`
    /// with no output, error or lease, its rescue count cleared and its deadline taken anew
    /// from that version's `timeout` (counted from now). Workers are woken as for a new
    /// execution. A paused execution is retried the same way (the Client retries one only if
    /// a failure paused it). Any other status is [`StoreError::NotRetryable`]. Which nodes to
    /// rerun is the [`Client::retry`](crate::Client::retry)'s decision, not the store's.
    async fn retry_execution(&self, params: RetryExecutionParams) -> Result<Execution, StoreError>;

    /// Ends every execution past its deadline as `timed_out` (whoever holds it) and returns
    /// them, with the next deadline to watch for. Rows another statement holds at that
    /// moment may be left for the next sweep. It also lets go the held executions whose
    /// concurrency groups have room that no status change released.
    async fn time_out_executions(&self) -> Result<DeadlineSweep, StoreError>;

    /// Priority ageing: raises up to `limit` executions that have been runnable (not held)
    /// for longer than `older_than` to the highest priority among the executions that have
    /// not ended, oldest first, so none waits forever behind newer, higher work. Executions
    /// at that priority already are left alone.
    async fn age_priorities(
        &self,
        older_than: Duration,
        limit: u32,
    ) -> Result<Vec<AgedExecution>, StoreError>;

    /// Takes one node start from a rate limit ([`flow`](crate::flow)): `None` when the start
    /// was taken (fewer than `request.limit` starts of that name and key in the last
    /// `request.period`, this one now counted among them), else how long until the oldest
    /// of those starts leaves the window, in database time. Atomic across every worker on
    /// the database: two takers never both get the last start of a window.
    async fn take_rate(&self, request: &RateRequest) -> Result<Option<Duration>, StoreError>;

    /// Counts queued work: runnable, waiting and running executions, and the age of the
    /// oldest runnable one. It reads only executions that have not ended.
    async fn queue_stats(&self) -> Result<QueueStats, StoreError>;

    /// Deletes up to `limit` executions that ended more than `older_than` ago, with their
    /// node runs and signals, oldest first, and returns how many it deleted. Executions that
    /// have not ended are never touched. Call it repeatedly to prune in small batches.
    async fn prune_executions(&self, older_than: Duration, limit: u32) -> Result<u64, StoreError>;

    // --- signals ---

    /// Stores a signal in an execution's inbox and wakes the execution if it is waiting. A
    /// second send with the same idempotency key returns the stored signal and stores
    /// nothing. An unknown execution is [`StoreError::NotFound`]; one that ended is
    /// [`StoreError::AlreadyEnded`].
    async fn send_signal(&self, params: SendSignalParams) -> Result<Signal, StoreError>;

    /// Starts the child execution of a node attempt (a sub-workflow), `pending` on the latest
    /// version of `params.workflow`, recording its parent and depth, and marks the parent as
    /// having children; or, if that attempt started one already (its worker died after
    /// starting it), returns that one with `created: false`, as it is now (it may have ended).
    /// Fenced by the parent's lease like a step: [`StoreError::LeaseLost`] if the parent is not
    /// running under `params.lease_token`. When the child ends, the store stores the signal
    /// `child:<child id>` in the parent's inbox (payload `{execution_id, status, output,
    /// error}`), which wakes the parent; when the parent ends, its children that have not
    /// ended are cancelled; a retry of the parent that runs the node again detaches the
    /// node's children, so its attempts start new ones. `NotFound` for an unknown workflow.
    async fn start_child_execution(
        &self,
        params: StartChildParams,
    ) -> Result<StartedChild, StoreError>;

    /// In one atomic step, starts the execution of `params.start` as
    /// [`start_execution`](Store::start_execution) does with its key (or finds the one that
    /// holds the key) and stores the signal in its inbox, as [`send_signal`](Store::send_signal)
    /// does. Two calls at once with one key create one execution holding both signals. If the
    /// key's execution ended and [`KeyReuse::Never`] keeps it, the signal is refused with
    /// [`StoreError::AlreadyEnded`]; under [`KeyReuse::AfterEnd`] a new execution is started.
    /// Without a key: [`StoreError::KeyRequired`].
    async fn signal_with_start(
        &self,
        params: SignalWithStartParams,
    ) -> Result<SignalledExecution, StoreError>;

    /// An execution with its node runs.
    async fn get_execution(&self, id: ExecutionId) -> Result<ExecutionDetail, StoreError>;

    // --- schedules ---

    /// The database's clock.
    async fn now(&self) -> Result<chrono::DateTime<chrono::Utc>, StoreError>;

    /// Stores a schedule, enabled.
    async fn create_schedule(&self, params: CreateScheduleParams) -> Result<Schedule, StoreError>;

    /// Every schedule, oldest first.
    async fn list_schedules(&self) -> Result<Vec<Schedule>, StoreError>;

    /// One schedule.
    async fn get_schedule(&self, id: ScheduleId) -> Result<Schedule, StoreError>;

    /// Pauses a schedule: no tick fires until it is resumed. Its next tick stays as it was.
    async fn pause_schedule(&self, id: ScheduleId) -> Result<Schedule, StoreError>;

    /// Resumes a paused schedule with `next_fire_at` as its next tick, in one write (`None`:
    /// the next worker to look computes it). A schedule that is enabled already is left as it
    /// is, so a resume racing a worker's firing never moves its tick.
    async fn resume_schedule(
        &self,
        id: ScheduleId,
        next_fire_at: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<Schedule, StoreError>;

    /// Deletes a schedule; executions it started stay.
    async fn delete_schedule(&self, id: ScheduleId) -> Result<(), StoreError>;

    /// Starts an execution of the schedule's workflow (its latest version) with the
    /// schedule's input now, paused or not: its `schedule_id` is the schedule's, and its
    /// `scheduled_for` is `None` (no tick), so it never takes a tick's place; the schedule's
    /// ticks do not move. `NotFound` if there is no such schedule.
    async fn trigger_schedule(&self, id: ScheduleId) -> Result<Execution, StoreError>;

    /// Up to `limit` enabled schedules that are due (or whose next tick is not computed).
    async fn due_schedules(&self, limit: u32) -> Result<DueSchedules, StoreError>;

    /// In one transaction, and only if the schedule's next tick is still the expected one:
    /// moves it to `next_fire_at` and starts one execution per tick (a tick that already has
    /// one is skipped). Returns how many executions it started.
    async fn fire_schedule(&self, params: FireScheduleParams) -> Result<u32, StoreError>;

    // --- wake-ups ---

    /// A stream of wake-up hints, if this store can send them (PostgreSQL: LISTEN/NOTIFY);
    /// `None` if it cannot, and then workers rely on polling alone.
    async fn wakeups(&self) -> Result<Option<Box<dyn Wakeups>>, StoreError> {
        Ok(None)
    }

    // --- worker presence ---

    /// Records that worker `id`, which runs `node_types`, is alive for `ttl` from now
    /// (database time), replacing what was recorded for it. Workers call it when they start
    /// and on every heartbeat, so operators see which node types some live worker runs.
    async fn record_worker(
        &self,
        id: &str,
        node_types: &[String],
        ttl: Duration,
    ) -> Result<(), StoreError>;

    /// Forgets worker `id` (a clean stop).
    async fn remove_worker(&self, id: &str) -> Result<(), StoreError>;

    /// The workers recorded and not yet expired, by id.
    async fn live_workers(&self) -> Result<Vec<LiveWorker>, StoreError>;

    /// Executions, newest first (by creation time, then id, both descending), after
    /// `params.before` if given;
    /// filtered by status and workflow. A page reads only the index of creation times from
    /// where it starts, however deep it is.
    async fn list_executions(
        &self,
        params: ListExecutionsParams,
    ) -> Result<Vec<Execution>, StoreError>;

    /// Up to `limit` ids of executions matching `filter`, in id order, after `after` when
    /// given: the pages a bulk action walks.
    async fn matching_executions(
        &self,
        filter: &ExecutionFilter,
        after: Option<ExecutionId>,
        limit: u32,
    ) -> Result<Vec<ExecutionId>, StoreError>;

    /// Deletes those of `ids` that have ended (completed, failed, cancelled, timed out) and
    /// still match `filter`, with their node runs, signals and retries, in one statement;
    /// returns how many. Running, waiting and pending executions are never deleted.
    async fn delete_executions(
        &self,
        ids: &[ExecutionId],
        filter: &ExecutionFilter,
    ) -> Result<u64, StoreError>;
}

/// A shared store is a store, so `Arc<dyn Store>` (what the binary holds) can be handed to
/// [`WorkflowWorker::new`](crate::WorkflowWorker::new) like any concrete store.
#[async_trait]
impl<S: Store + ?Sized> Store for std::sync::Arc<S> {
    async fn save_workflow(&self, graph: &WorkflowGraph) -> Result<WorkflowVersion, StoreError> {
        (**self).save_workflow(graph).await
    }

    async fn get_workflow(&self, workflow: &WorkflowRef) -> Result<WorkflowVersion, StoreError> {
        (**self).get_workflow(workflow).await
    }

    async fn list_workflows(&self) -> Result<Vec<WorkflowSummary>, StoreError> {
        (**self).list_workflows().await
    }

    async fn get_workflow_version(
        &self,
        workflow_id: WorkflowId,
        version: i32,
    ) -> Result<WorkflowVersion, StoreError> {
        (**self).get_workflow_version(workflow_id, version).await
    }

    async fn start_execution(
        &self,
        params: StartExecutionParams,
    ) -> Result<StartedExecution, StoreError> {
        (**self).start_execution(params).await
    }

    async fn signal_with_start(
        &self,
        params: SignalWithStartParams,
    ) -> Result<SignalledExecution, StoreError> {
        (**self).signal_with_start(params).await
    }

    async fn start_child_execution(
        &self,
        params: StartChildParams,
    ) -> Result<StartedChild, StoreError> {
        (**self).start_child_execution(params).await
    }

    async fn claim_executions(
        &self,
        params: ClaimParams,
    ) -> Result<Vec<ClaimedExecution>, StoreError> {
        (**self).claim_executions(params).await
    }

    async fn record_steps(&self, steps: &[RecordStep]) -> Vec<Result<StepRecorded, StoreError>> {
        (**self).record_steps(steps).await
    }

    async fn record_item_runs(
        &self,
        execution_id: ExecutionId,
        lease_token: LeaseToken,
        worker_id: &str,
        runs: &[NewItemRun],
    ) -> Result<StepRecorded, StoreError> {
        (**self)
            .record_item_runs(execution_id, lease_token, worker_id, runs)
            .await
    }

    async fn item_runs(
        &self,
        execution_id: ExecutionId,
        node_id: &str,
    ) -> Result<Vec<ItemRun>, StoreError> {
        (**self).item_runs(execution_id, node_id).await
    }

    async fn renew_leases(
        &self,
        leases: &[(ExecutionId, LeaseToken)],
        lease_duration: Duration,
    ) -> Result<Vec<ExecutionId>, StoreError> {
        (**self).renew_leases(leases, lease_duration).await
    }

    async fn pause_execution(&self, id: ExecutionId) -> Result<Execution, StoreError> {
        (**self).pause_execution(id).await
    }

    async fn resume_execution(&self, id: ExecutionId) -> Result<Execution, StoreError> {
        (**self).resume_execution(id).await
    }

    async fn cancel_execution(
        &self,
        id: ExecutionId,
        reason: &str,
    ) -> Result<Execution, StoreError> {
        (**self).cancel_execution(id, reason).await
    }

    async fn retry_execution(&self, params: RetryExecutionParams) -> Result<Execution, StoreError> {
        (**self).retry_execution(params).await
    }

    async fn time_out_executions(&self) -> Result<DeadlineSweep, StoreError> {
        (**self).time_out_executions().await
    }

    async fn age_priorities(
        &self,
        older_than: Duration,
        limit: u32,
    ) -> Result<Vec<AgedExecution>, StoreError> {
        (**self).age_priorities(older_than, limit).await
    }

    async fn take_rate(&self, request: &RateRequest) -> Result<Option<Duration>, StoreError> {
        (**self).take_rate(request).await
    }

    async fn queue_stats(&self) -> Result<QueueStats, StoreError> {
        (**self).queue_stats().await
    }

    async fn prune_executions(&self, older_than: Duration, limit: u32) -> Result<u64, StoreError> {
        (**self).prune_executions(older_than, limit).await
    }

    async fn send_signal(&self, params: SendSignalParams) -> Result<Signal, StoreError> {
        (**self).send_signal(params).await
    }

    async fn get_execution(&self, id: ExecutionId) -> Result<ExecutionDetail, StoreError> {
        (**self).get_execution(id).await
    }

    async fn now(&self) -> Result<chrono::DateTime<chrono::Utc>, StoreError> {
        (**self).now().await
    }

    async fn create_schedule(&self, params: CreateScheduleParams) -> Result<Schedule, StoreError> {
        (**self).create_schedule(params).await
    }

    async fn list_schedules(&self) -> Result<Vec<Schedule>, StoreError> {
        (**self).list_schedules().await
    }

    async fn get_schedule(&self, id: ScheduleId) -> Result<Schedule, StoreError> {
        (**self).get_schedule(id).await
    }

    async fn pause_schedule(&self, id: ScheduleId) -> Result<Schedule, StoreError> {
        (**self).pause_schedule(id).await
    }

    async fn resume_schedule(
        &self,
        id: ScheduleId,
        next_fire_at: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<Schedule, StoreError> {
        (**self).resume_schedule(id, next_fire_at).await
    }

    async fn delete_schedule(&self, id: ScheduleId) -> Result<(), StoreError> {
        (**self).delete_schedule(id).await
    }

    async fn trigger_schedule(&self, id: ScheduleId) -> Result<Execution, StoreError> {
        (**self).trigger_schedule(id).await
    }

    async fn due_schedules(&self, limit: u32) -> Result<DueSchedules, StoreError> {
        (**self).due_schedules(limit).await
    }

    async fn fire_schedule(&self, params: FireScheduleParams) -> Result<u32, StoreError> {
        (**self).fire_schedule(params).await
    }

    async fn wakeups(&self) -> Result<Option<Box<dyn Wakeups>>, StoreError> {
        (**self).wakeups().await
    }

    async fn record_worker(
        &self,
        id: &str,
        node_types: &[String],
        ttl: Duration,
    ) -> Result<(), StoreError> {
        (**self).record_worker(id, node_types, ttl).await
    }

    async fn remove_worker(&self, id: &str) -> Result<(), StoreError> {
        (**self).remove_worker(id).await
    }

    async fn live_workers(&self) -> Result<Vec<LiveWorker>, StoreError> {
        (**self).live_workers().await
    }

    async fn list_executions(
        &self,
        params: ListExecutionsParams,
    ) -> Result<Vec<Execution>, StoreError> {
        (**self).list_executions(params).await
    }

    async fn matching_executions(
        &self,
        filter: &ExecutionFilter,
        after: Option<ExecutionId>,
        limit: u32,
    ) -> Result<Vec<ExecutionId>, StoreError> {
        (**self).matching_executions(filter, after, limit).await
    }

    async fn delete_executions(
        &self,
        ids: &[ExecutionId],
        filter: &ExecutionFilter,
    ) -> Result<u64, StoreError> {
        (**self).delete_executions(ids, filter).await
    }
}
