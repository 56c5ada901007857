//! Node types: the [`NodeExecutor`] trait, what a node receives ([`NodeContext`]) and returns
//! ([`NodeOutcome`], [`NodeError`]), and the [`NodeRegistry`] that maps type names to executors.
//!
//! # Guarantees a node can rely on, and must allow for
//! - **At-least-once.** A completed node's result is recorded in the same transaction as the
//!   execution's progress, so a recorded node never runs again. But a worker can die after a
//!   node's side effect and before that commit; another worker then runs the node again. Use
//!   [`NodeContext::idempotency_key`] (stable for one execution, node and attempt) to make
//!   external side effects safe to repeat.
//! - **Cancellation.** When the node's timeout passes, or the worker loses the execution's
//!   lease, the node's future is dropped and [`NodeContext::cancellation`] fires. Hold
//!   resources that must be cleaned up in values whose `Drop` does it (for example
//!   `tokio::process::Command::kill_on_drop`).
//! - **Panics** are caught: a panicking node is a failed node run carrying the panic message;
//!   the worker keeps running.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use chrono::{DateTime, Utc};

use crate::execution::{ExecutionId, Signal, WorkflowId};

mod code;
pub(crate) mod condition;
mod http;
mod map;
mod subworkflow;
mod trigger;
mod wait;

pub use map::{DEFAULT_MAX_PARALLEL, MAX_PARALLEL_LIMIT, MapNode, MapRequest, OnItemFailure};
pub use subworkflow::{MAX_SUBWORKFLOW_DEPTH, SubworkflowNode, child_signal};

pub use code::{CodeNode, DEFAULT_CODE_TIMEOUT, DEFAULT_MAX_OUTPUT_BYTES};
pub use condition::ConditionNode;
pub use http::{
    DEFAULT_HTTP_TIMEOUT, DEFAULT_MAX_REDIRECTS, DEFAULT_MAX_RESPONSE_BYTES, HttpNode,
    MAX_RETRY_AFTER, SECRET_ENV_PREFIX,
};
pub use trigger::TriggerNode;
pub use wait::{DelayNode, WaitForSignalNode};

/// Runs one type of node.
///
/// Register an implementation with [`WorkflowWorker::node`](crate::WorkflowWorker::node) under
/// the type name workflow definitions use.
///
/// ```
/// use async_trait::async_trait;
/// use serde_json::json;
/// use workflow_worker_core::{NodeContext, NodeError, NodeExecutor, NodeOutcome, ResultExt};
///
/// /// Adds `config.amount` to `input.total`.
/// struct AddNode;
///
/// #[async_trait]
/// impl NodeExecutor for AddNode {
///     fn validate_config(&self, config: &serde_json::Value) -> Result<(), workflow_worker_core::BoxError> {
///         config.get("amount").and_then(|a| a.as_f64()).ok_or("config.amount must be a number")?;
///         Ok(())
///     }
///
///     async fn execute(&self, ctx: NodeContext) -> Result<NodeOutcome, NodeError> {
///         let total = ctx.input["total"].as_f64().ok_or("input.total must be a number").fatal()?;
///         let amount = ctx.config["amount"].as_f64().unwrap_or_default();
///         Ok(NodeOutcome::complete(json!({ "total": total + amount })))
///     }
/// }
/// ```
#[async_trait]
pub trait NodeExecutor: Send + Sync + 'static {
    /// Runs one attempt of a node.
    ///
    /// Return [`NodeError::retryable`] for failures worth another attempt (a timeout talking
    /// to a service) and [`NodeError::fatal`] for ones that will never succeed (bad input).
    async fn execute(&self, ctx: NodeContext) -> Result<NodeOutcome, NodeError>;

    /// Checks a node's `config` when a workflow using this type is saved. The default accepts
    /// anything.
    fn validate_config(&self, config: &Value) -> Result<(), BoxError> {
        let _ = config;
        Ok(())
    }

    /// The timeout of an attempt when the node definition sets none. Defaults to none.
    fn default_timeout(&self) -> Option<Duration> {
        None
    }

    /// Top-level config keys whose templates the worker leaves for this node type to have
    /// rendered later (a `map` has its item node's config rendered once per item, with the
    /// item as `input`). Defaults to none: the worker renders every template before an
    /// attempt.
    fn deferred_config(&self) -> &'static [&'static str] {
        &[]
    }

    /// Node definitions inside `config` (a `map`'s item node), which a save checks against
    /// the node types as it checks the workflow's own nodes. Defaults to none.
    fn nested_nodes(&self, config: &Value) -> Vec<crate::graph::NodeDefinition> {
        let _ = config;
        Vec::new()
    }

    /// Whether a completed attempt may go unrecorded until the execution's next write, rather
    /// than be recorded before the nodes after it start. Only for nodes without effects whose
    /// output follows from their input alone: a worker that dies before that write leaves the
    /// node to run again, to the same result, and no record of it. The built-in `trigger` is
    /// one, which saves an execution a write (and its start a round trip) before its first
    /// real node. Defaults to false.
    fn replayable(&self) -> bool {
        false
    }
}

/// A boxed error, as node types return from [`NodeExecutor::validate_config`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Everything a node attempt receives.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct NodeContext {
    /// The execution being run.
    pub execution_id: ExecutionId,
    /// The workflow it belongs to.
    pub workflow_id: WorkflowId,
    /// The node's id in the workflow definition.
    pub node_id: String,
    /// The node's type.
    pub node_type: String,
    /// The node's config from the definition.
    pub config: Value,
    /// The node's input: its parent's output, or an object keyed by parent id when it has
    /// several parents. For the trigger, the execution input.
    pub input: Value,
    /// The input the execution was started with.
    pub execution_input: Arc<Value>,
    /// This attempt's number, from 1.
    pub attempt: u32,
    /// `{execution_id}:{node_id}:{attempt}`: the same every time this attempt is run, so
    /// external side effects can be deduplicated.
    pub idempotency_key: String,
    /// Fires when the attempt should stop: its timeout passed, the worker lost the lease, or
    /// the worker is shutting down.
    pub cancellation: CancellationToken,
    /// The execution's signals not yet consumed, oldest first. Complete with
    /// [`NodeOutcome::Signalled`] to consume one.
    pub signals: Vec<Signal>,
    /// When this attempt began waiting (database time), if it parked before with
    /// [`NodeOutcome::Wait`] and is now resumed.
    pub waiting_since: Option<DateTime<Utc>>,
    /// The database's clock now, as well as the worker knows it: the claim's database time
    /// plus the time since.
    pub now: DateTime<Utc>,
}

impl NodeContext {
    /// A context for one attempt; the worker builds these, and tests of node types may too.
    pub fn new(
        execution_id: ExecutionId,
        workflow_id: WorkflowId,
        node_id: impl Into<String>,
        node_type: impl Into<String>,
        attempt: u32,
    ) -> Self {
        let node_id = node_id.into();
        Self {
            idempotency_key: format!("{execution_id}:{node_id}:{attempt}"),
            execution_id,
            workflow_id,
            node_id,
            node_type: node_type.into(),
            config: Value::Null,
            input: Value::Null,
            execution_input: Arc::new(Value::Null),
            attempt,
            cancellation: CancellationToken::new(),
            signals: Vec::new(),
            waiting_since: None,
            now: Utc::now(),
        }
    }

    /// Sets the node config.
    #[must_use]
    pub fn config(mut self, config: Value) -> Self {
        self.config = config;
        self
    }

    /// Sets the node input.
    #[must_use]
    pub fn input(mut self, input: Value) -> Self {
        self.input = input;
        self
    }

    /// Sets the execution input.
    #[must_use]
    pub fn execution_input(mut self, input: Arc<Value>) -> Self {
        self.execution_input = input;
        self
    }

    /// Sets the pending signals.
    #[must_use]
    pub fn signals(mut self, signals: Vec<Signal>) -> Self {
        self.signals = signals;
        self
    }

    /// Marks the attempt as resumed from a wait that began at `since`, with the database
    /// clock at `now`.
    #[must_use]
    pub fn resumed(mut self, since: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Self {
        self.waiting_since = since;
        self.now = now;
        self
    }
}

/// How a node attempt ended successfully.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum NodeOutcome {
    /// The node produced `output`; when `branch` is set, only edges labelled with it (or with
    /// no label) are followed.
    Complete {
        /// The node's output, passed to its children.
        output: Value,
        /// The branch chosen, for nodes with labelled outgoing edges.
        branch: Option<String>,
    },
    /// Like `Complete`, and consumes the signal with id `signal` (from
    /// [`NodeContext::signals`]) in the same transaction that records the result: a signal
    /// is consumed exactly once.
    Signalled {
        /// The consumed signal's id.
        signal: crate::SignalId,
        /// The node's output.
        output: Value,
        /// The branch chosen.
        branch: Option<String>,
    },
    /// Starts an execution of `workflow` (its latest version) with `input` as this node
    /// attempt's child, and parks like [`Wait`](Self::Wait) until it ends (the signal
    /// [`child_signal`]`(child)` wakes the parent). The node then runs again under the same
    /// attempt, asks again, and the worker, finding the child ended, completes the node with
    /// the child's output or fails it (retryably) with the child's error. An attempt starts
    /// at most one child: asking again finds the child it started. The parent's end cancels
    /// the child.
    StartChild {
        /// The workflow to start, by name or id.
        workflow: String,
        /// The child's input.
        input: Value,
    },
    /// Runs a node once per item of a list, as [`MapNode`] describes, and completes with the
    /// results in the list's order. The worker runs the items (at most
    /// [`MapRequest::max_parallel`] at once, each retried by the item node's policy), records
    /// each as it finishes, and on resuming runs only the items not recorded as completed.
    Map(MapRequest),
    /// Parks the execution without holding a worker slot or a lease, until a signal named
    /// `signal` arrives or `timeout` passes (whichever is set; at least one should be). The
    /// node then runs again under the same attempt, with [`NodeContext::waiting_since`] set,
    /// and decides whether its wait is over.
    Wait {
        /// The signal name to wake up for.
        signal: Option<String>,
        /// How long to wait at most from now.
        timeout: Option<Duration>,
    },
}

impl NodeOutcome {
    /// Completes with `output`, following every outgoing edge without a branch label.
    pub fn complete(output: Value) -> Self {
        Self::Complete {
            output,
            branch: None,
        }
    }

    /// Completes with `output` and picks `branch`.
    pub fn branch(output: Value, branch: impl Into<String>) -> Self {
        Self::Complete {
            output,
            branch: Some(branch.into()),
        }
    }
}

/// Whether a failed attempt may be retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Another attempt may succeed; the node's retry policy decides whether there is one.
    Retryable,
    /// No attempt will succeed; the execution fails now.
    Fatal,
}

/// A failed node attempt.
#[derive(Debug)]
pub struct NodeError {
    kind: ErrorKind,
    source: BoxError,
    retry_after: Option<Duration>,
}

impl NodeError {
    /// A failure another attempt may not repeat.
    pub fn retryable(error: impl Into<BoxError>) -> Self {
        Self {
            kind: ErrorKind::Retryable,
            source: error.into(),
            retry_after: None,
        }
    }

    /// A failure no attempt can fix.
    pub fn fatal(error: impl Into<BoxError>) -> Self {
        Self {
            kind: ErrorKind::Fatal,
            source: error.into(),
            retry_after: None,
        }
    }

    /// Asks that the next attempt wait at least `delay` (an HTTP `Retry-After`, a rate
    /// limit's reset), even when the retry policy's backoff is shorter. The policy still
    /// decides whether there is a next attempt.
    #[must_use]
    pub fn retry_after(mut self, delay: Duration) -> Self {
        self.retry_after = Some(delay);
        self
    }

    /// Whether the failure may be retried.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The shortest wait before the next attempt that the node asked for, if any.
    pub fn min_delay(&self) -> Option<Duration> {
        self.retry_after
    }
}

impl fmt::Display for NodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.source.fmt(f)
    }
}

impl std::error::Error for NodeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.source()
    }
}

/// Turns any error into a [`NodeError`] with a retry intent: `call().await.retryable()?`.
pub trait ResultExt<T> {
    /// Marks the error retryable.
    fn retryable(self) -> Result<T, NodeError>;
    /// Marks the error fatal.
    fn fatal(self) -> Result<T, NodeError>;
}

impl<T, E: Into<BoxError>> ResultExt<T> for Result<T, E> {
    fn retryable(self) -> Result<T, NodeError> {
        self.map_err(NodeError::retryable)
    }

    fn fatal(self) -> Result<T, NodeError> {
        self.map_err(NodeError::fatal)
    }
}

impl<T> ResultExt<T> for Option<T> {
    fn retryable(self) -> Result<T, NodeError> {
        self.ok_or_else(|| NodeError::retryable("missing value"))
    }

    fn fatal(self) -> Result<T, NodeError> {
        self.ok_or_else(|| NodeError::fatal("missing value"))
    }
}

/// Node types by name.
#[derive(Clone)]
pub struct NodeRegistry {
    executors: BTreeMap<String, Arc<dyn NodeExecutor>>,
}

impl NodeRegistry {
    /// A registry with the built-in types: `trigger`, `code`, `http`, `subworkflow`, `map`,
    /// `condition`, `wait_for_signal` and `delay`.
    pub fn builtin() -> Self {
        Self::empty()
            .with(crate::graph::TRIGGER_TYPE, TriggerNode)
            .with(code::CODE_TYPE, CodeNode::default())
            .with(http::HTTP_TYPE, HttpNode::default())
            .with(subworkflow::SUBWORKFLOW_TYPE, SubworkflowNode)
            .with(map::MAP_TYPE, MapNode)
            .with(condition::CONDITION_TYPE, ConditionNode)
            .with(wait::WAIT_FOR_SIGNAL_TYPE, WaitForSignalNode)
            .with(wait::DELAY_TYPE, DelayNode)
    }

    /// A registry with no types at all.
    pub fn empty() -> Self {
        Self {
            executors: BTreeMap::new(),
        }
    }

    /// Registers `executor` under `node_type`, replacing any executor of that name.
    #[must_use]
    pub fn with(mut self, node_type: impl Into<String>, executor: impl NodeExecutor) -> Self {
        self.insert(node_type, Arc::new(executor));
        self
    }

    /// Registers `executor` under `node_type`, replacing any executor of that name.
    pub fn insert(&mut self, node_type: impl Into<String>, executor: Arc<dyn NodeExecutor>) {
        self.executors.insert(node_type.into(), executor);
    }

    /// The executor for `node_type`.
    pub fn get(&self, node_type: &str) -> Option<&Arc<dyn NodeExecutor>> {
        self.executors.get(node_type)
    }

    /// The registered type names, sorted.
    pub fn types(&self) -> impl Iterator<Item = &str> {
        self.executors.keys().map(String::as_str)
    }
}

impl Default for NodeRegistry {
    fn default() -> Self {
        Self::builtin()
    }
}

impl fmt::Debug for NodeRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.types()).finish()
    }
}
