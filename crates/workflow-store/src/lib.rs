//! # workflow-store
//!
//! Stores for [workflow-core](workflow_core):
//! - [`PgStore`] on PostgreSQL, for any number of workers on any number of machines;
//! - [`SqliteStore`] on an SQLite file, the embedded default: one machine, no server.
//!
//! Each store embeds its migrations and applies them with `migrate()`. [`open_store`] picks
//! the store from a connection URL's scheme and migrates it.
//!
//! ## Quick start
//!
//! A workflow with a custom node type, run to completion on an SQLite file (use a
//! `postgres://` URL for PostgreSQL; nothing else changes). `cargo test --doc` runs it.
//!
//! ```
//! use std::time::Duration;
//!
//! use async_trait::async_trait;
//! use serde_json::json;
//! use workflow_core::{
//!     ExecutionStatus, NodeContext, NodeError, NodeExecutor, NodeOutcome,
//!     StartExecutionParams, WorkflowDefinition, WorkflowGraph, WorkflowWorker,
//! };
//!
//! struct Greet;
//!
//! #[async_trait]
//! impl NodeExecutor for Greet {
//!     async fn execute(&self, ctx: NodeContext) -> Result<NodeOutcome, NodeError> {
//!         let name = ctx.execution_input["name"].as_str().unwrap_or("world");
//!         Ok(NodeOutcome::complete(json!({ "greeting": format!("Hello, {name}!") })))
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = std::env::temp_dir().join(format!("wfw-doctest-{}", uuid::Uuid::new_v4()));
//! # std::fs::create_dir_all(&dir)?;
//! # let url = format!("sqlite://{}", dir.join("workflows.db").display());
//! // url: "sqlite://workflows.db", or "postgres://user@host/db"
//! let store = workflow_store::open_store(&url).await?;
//! let worker = WorkflowWorker::new(store.clone())
//!     .poll_interval(Duration::from_millis(50))
//!     .node("greet", Greet);
//!
//! let definition: WorkflowDefinition = serde_json::from_value(json!({
//!     "name": "greeting",
//!     "nodes": [{"id": "start", "type": "trigger"}, {"id": "greet", "type": "greet"}],
//!     "edges": [{"from": "start", "to": "greet"}]
//! }))?;
//! store.save_workflow(&WorkflowGraph::validate(definition, worker.registry())?).await?;
//! let started = store
//!     .start_execution(StartExecutionParams::new("greeting", json!({"name": "Ada"})))
//!     .await?;
//!
//! // Run the worker until the execution ends (a service would run until shutdown).
//! let finished = async {
//!     while !store.get_execution(started.id).await.unwrap().execution.status.is_terminal() {
//!         tokio::time::sleep(Duration::from_millis(50)).await;
//!     }
//! };
//! worker.run_until(finished).await?;
//!
//! let execution = store.get_execution(started.id).await?.execution;
//! assert_eq!(execution.status, ExecutionStatus::Completed);
//! assert_eq!(execution.output, Some(json!({"greeting": "Hello, Ada!"})));
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok(())
//! # }
//! ```

use std::collections::HashMap;
use std::sync::Arc;

use workflow_core::{
    ClaimedExecution, Execution, ExecutionId, ExecutionStatus, NodeRun, Signal, Store, StoreError,
};

mod error;
pub mod postgres;
pub mod sqlite;
#[cfg(feature = "testing")]
pub mod testing;

pub use postgres::PgStore;
pub use sqlite::SqliteStore;

/// The database the binary and the examples use when no URL is configured: an SQLite file in
/// the working directory.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://workflow-worker.db";

/// The configured database URL: `DATABASE_URL`, else `SUPABASE_DB_URL`; `None` when neither is
/// set (or both are empty).
pub fn database_url_from_env() -> Option<String> {
    ["DATABASE_URL", "SUPABASE_DB_URL"]
        .into_iter()
        .filter_map(|name| std::env::var(name).ok())
        .find(|url| !url.is_empty())
}

/// Why [`open_store`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The URL names no supported database.
    #[error("unsupported database URL {url}: expected postgres://, postgresql:// or sqlite://")]
    UnsupportedScheme {
        /// The URL, password redacted.
        url: String,
    },
    /// Connecting or migrating failed.
    #[error("cannot open database {url}")]
    Store {
        /// The URL, password redacted.
        url: String,
        /// What failed.
        #[source]
        source: StoreError,
    },
}

/// Opens the store a URL names and applies its migrations: `postgres://` and `postgresql://`
/// give a [`PgStore`], `sqlite://` a [`SqliteStore`] (the file is created if missing).
pub async fn open_store(url: &str) -> Result<Arc<dyn Store>, OpenError> {
    let failed = |source| OpenError::Store {
        url: redact_url(url),
        source,
    };
    match url.split_once("://").map(|(scheme, _)| scheme) {
        Some("postgres" | "postgresql") => {
            let store = PgStore::connect(url).await.map_err(failed)?;
            store.migrate().await.map_err(failed)?;
            Ok(Arc::new(store))
        }
        Some("sqlite") => {
            let store = SqliteStore::connect(url).await.map_err(failed)?;
            store.migrate().await.map_err(failed)?;
            Ok(Arc::new(store))
        }
        _ => Err(OpenError::UnsupportedScheme {
            url: redact_url(url),
        }),
    }
}

/// Groups the node runs and signals read for a claim under their executions.
fn assemble_claims(
    executions: Vec<Execution>,
    runs: Vec<NodeRun>,
    signals: Vec<Signal>,
) -> Vec<ClaimedExecution> {
    let mut runs_of: HashMap<ExecutionId, Vec<NodeRun>> = HashMap::new();
    for run in runs {
        runs_of.entry(run.execution_id).or_default().push(run);
    }
    let mut signals_of: HashMap<ExecutionId, Vec<Signal>> = HashMap::new();
    for signal in signals {
        signals_of
            .entry(signal.execution_id)
            .or_default()
            .push(signal);
    }
    executions
        .into_iter()
        .map(|execution| ClaimedExecution {
            node_runs: runs_of.remove(&execution.id).unwrap_or_default(),
            signals: signals_of.remove(&execution.id).unwrap_or_default(),
            execution,
        })
        .collect()
}

/// A signal may only be sent to an execution that exists and has not ended.
fn check_signal_target(id: ExecutionId, status: Option<&str>) -> Result<(), StoreError> {
    let Some(status) = status else {
        return Err(StoreError::NotFound {
            entity: "execution",
            id: id.to_string(),
        });
    };
    match status.parse::<ExecutionStatus>() {
        Ok(status) if status.is_terminal() => Err(StoreError::Conflict(format!(
            "execution {id} already ended ({status}); signals are not accepted"
        ))),
        Ok(_) => Ok(()),
        Err(err) => Err(StoreError::InvalidData(format!("execution {id}: {err}"))),
    }
}

/// `url` with any password replaced by `***`, for logs and error messages. Text that is not
/// a `scheme://` URL is returned as `<unparseable database URL>` since it may hold a password
/// anyway.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if !parsed.cannot_be_a_base() => {
            if parsed.password().is_some() {
                // Only fails for URLs that cannot have a password, which this one has.
                let _ = parsed.set_password(Some("***"));
            }
            let has_password_param = parsed.query_pairs().any(|(k, _)| k == "password");
            if has_password_param {
                let pairs: Vec<(String, String)> = parsed
                    .query_pairs()
                    .map(|(k, v)| {
                        let v = if k == "password" {
                            "***".into()
                        } else {
                            v.into_owned()
                        };
                        (k.into_owned(), v)
                    })
                    .collect();
                parsed.query_pairs_mut().clear().extend_pairs(pairs);
            }
            parsed.to_string()
        }
        _ => "<unparseable database URL>".to_owned(),
    }
}

/// Compiles the README's Rust examples as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db.example:5432/prod"),
            "postgres://app:***@db.example:5432/prod"
        );
        assert_eq!(
            redact_url("postgres://app@db/prod?sslmode=require&password=s3cret"),
            "postgres://app@db/prod?sslmode=require&password=***"
        );
        assert_eq!(
            redact_url("postgres://postgres@127.0.0.1:5432/test"),
            "postgres://postgres@127.0.0.1:5432/test"
        );
        assert_eq!(redact_url("app:s3cret@db"), "<unparseable database URL>");
    }

    #[test]
    fn both_stores_have_the_same_migration_versions() {
        let versions = |migrator: &sqlx::migrate::Migrator| -> Vec<(i64, String)> {
            migrator
                .iter()
                .map(|m| (m.version, m.description.to_string()))
                .collect()
        };
        let postgres = versions(&postgres::MIGRATOR);
        assert!(!postgres.is_empty());
        assert_eq!(postgres, versions(&sqlite::MIGRATOR));
    }

    #[tokio::test]
    async fn unsupported_scheme_is_rejected_naming_the_accepted_ones() {
        let err = open_store("mysql://root:pw@localhost/db")
            .await
            .err()
            .unwrap();
        assert_eq!(
            err.to_string(),
            "unsupported database URL mysql://root:***@localhost/db: expected postgres://, postgresql:// or sqlite://"
        );
    }
}
