//! # workflow-worker-core
//!
//! The engine of workflow-worker: workflow definitions and their validation, the execution
//! state machine, the [`NodeExecutor`] trait with the built-in node types, the [`Client`]
//! applications call, the [`Store`] driver trait, and [`WorkflowWorker`], the poll loop that
//! runs executions. It knows nothing of SQL; the `workflow-worker-store` crate provides the
//! stores.
//!
//! ## Embedding the worker
//!
//! ```no_run
//! use async_trait::async_trait;
//! use serde_json::json;
//! use workflow_worker_core::{
//!     NodeContext, NodeError, NodeExecutor, NodeOutcome, StartExecutionParams, Store,
//!     WorkflowDefinition, WorkflowWorker,
//! };
//!
//! /// A custom node type: greets whoever the input names.
//! struct Greet;
//!
//! #[async_trait]
//! impl NodeExecutor for Greet {
//!     async fn execute(&self, ctx: NodeContext) -> Result<NodeOutcome, NodeError> {
//!         let name = ctx.input["name"].as_str().unwrap_or("world");
//!         Ok(NodeOutcome::complete(json!({ "greeting": format!("Hello, {name}!") })))
//!     }
//! }
//!
//! # async fn embed(store: impl Store) -> Result<(), Box<dyn std::error::Error>> {
//! // `store` is a `workflow_worker_store::PgStore` (or any other `Store`).
//! let worker = WorkflowWorker::new(store)
//!     .poll_interval(std::time::Duration::from_secs(1))
//!     .concurrency(10)
//!     .node("greet", Greet);
//!
//! // Save a workflow (validated against the worker's node types) and start it.
//! let client = worker.client();
//! let definition: WorkflowDefinition = serde_json::from_value(json!({
//!     "name": "greeting",
//!     "nodes": [{"id": "start", "type": "trigger"}, {"id": "greet", "type": "greet"}],
//!     "edges": [{"from": "start", "to": "greet"}]
//! }))?;
//! client.save_workflow(definition).await?;
//! client
//!     .start(StartExecutionParams::new("greeting", json!({"name": "Ada"})))
//!     .await?;
//!
//! // Run until Ctrl-C, then finish what is in flight and stop.
//! worker
//!     .run_until(async {
//!         tokio::signal::ctrl_c().await.ok();
//!     })
//!     .await?;
//! # Ok(())
//! # }
//! ```
//!
//! Applications that only start, signal and read executions (a web API, a CLI) use a
//! [`Client`] alone; the [`Store`] trait underneath is the driver interface that backends
//! implement and that the client and the worker call.
//!
//! ## Guarantees
//! - Each execution is advanced by one worker at a time: claims take a lease, and every write
//!   is fenced by the claim's lease token.
//! - A node's result and the execution's progress are committed together, so a recorded node
//!   never runs again; a node interrupted mid-flight may run again (at-least-once), with the
//!   same [`NodeContext::idempotency_key`].
//! - A panicking node is a failed node run, never a dead worker.

pub mod bulk;
pub mod client;
pub mod execution;
pub mod flow;
pub mod graph;
#[cfg(feature = "http")]
pub mod http;
pub mod metrics;
pub mod node;
pub mod retry;
pub mod schedule;
pub mod state;
pub mod store;
pub mod template;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod worker;

pub use bulk::BulkOutcome;
pub use client::{Client, NewSchedule};
pub use execution::{
    ChildExecution, Execution, ExecutionDetail, ExecutionId, ExecutionParent, ItemRun, LeaseToken,
    NodeRun, NodeRunStatus, Signal, SignalId, WorkflowId, WorkflowSummary, WorkflowVersion,
};
pub use graph::{
    Edge, GraphError, NodeDefinition, OnFailure, RetryPolicy, ValidationErrors, WorkflowDefinition,
    WorkflowGraph,
};
pub use node::{
    BoxError, CodeNode, ConditionNode, DelayNode, ErrorKind, HttpNode, MAX_SUBWORKFLOW_DEPTH,
    MapNode, MapRequest, NodeContext, NodeError, NodeExecutor, NodeOutcome, NodeRegistry,
    OnItemFailure, ResultExt, SubworkflowNode, TriggerNode, WaitForSignalNode,
};
pub use retry::{ExecutionRetry, RetryError, RetryFrom, RetryRequest, RetryVersion};
pub use schedule::{CronSchedule, Schedule, ScheduleError, ScheduleId};
pub use state::{ExecutionStatus, TransitionError, transition};
// The driver's own types (claims, steps, sweeps, schedule firing) stay in `store`.
pub use store::{
    ExecutionCursor, ExecutionFilter, KeyReuse, ListExecutionsParams, LiveWorker, MAX_KEY_CHARS,
    QueueStats, RetryExecutionParams, SendSignalParams, SignalWithStartParams, SignalledExecution,
    StartExecutionParams, StartedExecution, Store, StoreError, WorkflowRef,
};
pub use worker::{ConfigError, ConfigRule, WorkerConfig, WorkflowWorker};

/// What the worker and its helpers can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A worker setting is out of range.
    #[error("invalid worker configuration: {0}")]
    Config(#[from] ConfigError),
    /// A workflow definition is invalid.
    #[error(transparent)]
    Validation(#[from] ValidationErrors),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A schedule's cron expression or time zone is invalid.
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
    /// A retry cannot be made as asked.
    #[error(transparent)]
    Retry(#[from] RetryError),
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
