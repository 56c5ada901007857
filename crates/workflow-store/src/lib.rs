//! # workflow-worker-store
//!
//! Stores for [workflow-worker-core](workflow_worker_core):
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
//! use workflow_worker_core::{
//!     ExecutionStatus, NodeContext, NodeError, NodeExecutor, NodeOutcome,
//!     StartExecutionParams, WorkflowDefinition, WorkflowWorker,
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
//! let store = workflow_worker_store::open_store(&url).await?;
//! let worker = WorkflowWorker::new(store)
//!     .poll_interval(Duration::from_millis(50))
//!     .node("greet", Greet);
//! let client = worker.client();
//!
//! let definition: WorkflowDefinition = serde_json::from_value(json!({
//!     "name": "greeting",
//!     "nodes": [{"id": "start", "type": "trigger"}, {"id": "greet", "type": "greet"}],
//!     "edges": [{"from": "start", "to": "greet"}]
//! }))?;
//! client.save_workflow(definition).await?;
//! let started = client
//!     .start(StartExecutionParams::new("greeting", json!({"name": "Ada"})))
//!     .await?
//!     .execution;
//!
//! // Run the worker until the execution ends (a service would run until shutdown).
//! let finished = async {
//!     while !client.execution(started.id).await.unwrap().execution.status.is_terminal() {
//!         tokio::time::sleep(Duration::from_millis(50)).await;
//!     }
//! };
//! worker.run_until(finished).await?;
//!
//! let execution = client.execution(started.id).await?.execution;
//! assert_eq!(execution.status, ExecutionStatus::Completed);
//! assert_eq!(execution.output, Some(json!({"greeting": "Hello, Ada!"})));
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok(())
//! # }
//! ```

use std::collections::HashMap;
use std::sync::Arc;

use workflow_worker_core::store::ClaimedExecution;
use workflow_worker_core::{
    Execution, ExecutionId, ExecutionStatus, NodeRun, Signal, Store, StoreError,
};

mod error;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "sqlite")]
pub mod sqlite;
#[cfg(feature = "testing")]
pub mod testing;

#[cfg(feature = "postgres")]
pub use postgres::{PgStore, PgStoreOptions, PoolerMode};
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteStore;

/// The table that records which of our migrations a database has (each store's own, so an
/// embedding application's sqlx migrations in `_sqlx_migrations` live beside it).
pub const MIGRATIONS_TABLE: &str = "_workflow_worker_migrations";

/// A database's schema version against the one this build needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchemaVersion {
    /// The newest migration the database has; `None` when it has none.
    pub applied: Option<i64>,
    /// The newest migration this build has.
    pub required: i64,
}

impl SchemaVersion {
    /// Whether the database has every migration this build needs.
    pub fn is_current(&self) -> bool {
        self.applied.is_some_and(|applied| applied >= self.required)
    }
}

#[cfg(any(feature = "postgres", feature = "sqlite"))]
fn latest_version(migrator: &sqlx::migrate::Migrator) -> i64 {
    migrator.iter().map(|m| m.version).max().unwrap_or(0)
}

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
    #[error("unsupported database URL {url}: expected {accepted}")]
    UnsupportedScheme {
        /// The URL, password redacted.
        url: String,
        /// The schemes this build accepts.
        accepted: &'static str,
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
    /// The database lacks migrations this build needs, and the caller asked not to migrate.
    #[error(
        "database {url} has {applied}, this build needs schema version {required}: \
         run `workflow-worker migrate` first"
    )]
    SchemaBehind {
        /// The URL, password redacted.
        url: String,
        /// What the database has: `no workflow-worker schema` or `schema version N`.
        applied: String,
        /// What this build needs.
        required: i64,
    },
    /// The SQLite file does not exist, and the caller asked not to create it.
    #[error("no database at {url}: run `workflow-worker migrate` to create it")]
    Missing {
        /// The URL.
        url: String,
    },
}

/// What [`open_store_with`] does besides connecting.
#[derive(Debug, Clone, Default)]
pub struct OpenOptions {
    /// Apply pending migrations (creating an SQLite file that is missing). Without it the
    /// store only opens a database that exists and whose schema is current, and says
    /// [`OpenError::SchemaBehind`] or [`OpenError::Missing`] otherwise.
    pub migrate: bool,
    /// Without `migrate`: create a missing SQLite file with the current schema (for commands
    /// that write, so the embedded store needs no set-up), instead of [`OpenError::Missing`].
    pub create_missing: bool,
    /// How a PostgreSQL store connects.
    #[cfg(feature = "postgres")]
    pub postgres: PgStoreOptions,
}

impl OpenOptions {
    /// Connect and migrate, with default connection options.
    pub fn migrating() -> Self {
        Self {
            migrate: true,
            ..Self::default()
        }
    }
}

/// The schemes [`open_store`] accepts in this build.
const ACCEPTED_SCHEMES: &str = match (cfg!(feature = "postgres"), cfg!(feature = "sqlite")) {
    (true, true) => "postgres://, postgresql:// or sqlite://",
    (true, false) => "postgres:// or postgresql:// (this build has no SQLite store)",
    (false, true) => "sqlite:// (this build has no PostgreSQL store)",
    (false, false) => "nothing (this build has no store: enable feature postgres or sqlite)",
};

/// Opens the store a URL names and applies its migrations: `postgres://` and `postgresql://`
/// give a [`PgStore`], `sqlite://` a [`SqliteStore`] (the file is created if missing).
pub async fn open_store(url: &str) -> Result<Arc<dyn Store>, OpenError> {
    open_store_with(url, &OpenOptions::migrating()).await
}

/// Opens the store a URL names, as `options` say.
pub async fn open_store_with(
    url: &str,
    options: &OpenOptions,
) -> Result<Arc<dyn Store>, OpenError> {
    let failed = |source| OpenError::Store {
        url: redact_url(url),
        source,
    };
    let check = |version: SchemaVersion| {
        if options.migrate || version.is_current() {
            Ok(())
        } else {
            Err(OpenError::SchemaBehind {
                url: redact_url(url),
                applied: version.applied.map_or_else(
                    || "no workflow-worker schema".to_owned(),
                    |v| format!("schema version {v}"),
                ),
                required: version.required,
            })
        }
    };
    match url.split_once("://").map(|(scheme, _)| scheme) {
        #[cfg(feature = "postgres")]
        Some("postgres" | "postgresql") => {
            let store = PgStore::connect_with(url, options.postgres.clone())
                .await
                .map_err(failed)?;
            if options.migrate {
                store.migrate().await.map_err(failed)?;
            } else {
                check(store.schema_version().await.map_err(failed)?)?;
            }
            Ok(Arc::new(store))
        }
        #[cfg(feature = "sqlite")]
        Some("sqlite") => {
            let create = options.create_missing && !sqlite_file_exists(url);
            let store = if options.migrate || create {
                let store = SqliteStore::connect(url).await.map_err(failed)?;
                store.migrate().await.map_err(failed)?;
                store
            } else {
                let store = match SqliteStore::connect_existing(url).await {
                    Err(StoreError::NotFound { .. }) => {
                        return Err(OpenError::Missing {
                            url: redact_url(url),
                        });
                    }
                    opened => opened.map_err(failed)?,
                };
                check(store.schema_version().await.map_err(failed)?)?;
                store
            };
            Ok(Arc::new(store))
        }
        _ => Err(OpenError::UnsupportedScheme {
            url: redact_url(url),
            accepted: ACCEPTED_SCHEMES,
        }),
    }
}

/// Whether the file an `sqlite://` URL names exists (`false` for in-memory databases too).
#[cfg(feature = "sqlite")]
fn sqlite_file_exists(url: &str) -> bool {
    use std::str::FromStr;
    sqlx::sqlite::SqliteConnectOptions::from_str(url)
        .is_ok_and(|options| options.get_filename().exists())
}

/// Groups the node runs and signals read for a claim under their executions; what could not
/// be read of an execution or of one of its signals becomes its `unreadable`.
#[cfg(any(feature = "postgres", feature = "sqlite"))]
fn assemble_claims(
    executions: Vec<(Execution, Option<String>)>,
    runs: Vec<NodeRun>,
    signals: Vec<(Signal, Option<String>)>,
) -> Vec<ClaimedExecution> {
    let mut runs_of: HashMap<ExecutionId, Vec<NodeRun>> = HashMap::new();
    for run in runs {
        runs_of.entry(run.execution_id).or_default().push(run);
    }
    let mut signals_of: HashMap<ExecutionId, Vec<Signal>> = HashMap::new();
    let mut signal_defects: HashMap<ExecutionId, String> = HashMap::new();
    for (signal, defect) in signals {
        if let Some(defect) = defect {
            signal_defects.entry(signal.execution_id).or_insert(defect);
        }
        signals_of
            .entry(signal.execution_id)
            .or_default()
            .push(signal);
    }
    executions
        .into_iter()
        .map(|(execution, defect)| ClaimedExecution {
            node_runs: runs_of.remove(&execution.id).unwrap_or_default(),
            signals: signals_of.remove(&execution.id).unwrap_or_default(),
            unreadable: defect.or_else(|| signal_defects.remove(&execution.id)),
            execution,
        })
        .collect()
}

/// The parent of an execution from its columns: the execution, node and attempt set, or
/// none.
#[cfg(any(feature = "postgres", feature = "sqlite"))]
fn parent_of(
    execution_id: Option<uuid::Uuid>,
    node_id: Option<String>,
    item: Option<i32>,
    attempt: Option<i32>,
) -> Option<workflow_worker_core::ExecutionParent> {
    Some(workflow_worker_core::ExecutionParent {
        execution_id: workflow_worker_core::ExecutionId(execution_id?),
        node_id: node_id?,
        item: item.and_then(|item| u32::try_from(item).ok()),
        attempt: u32::try_from(attempt?).ok()?,
    })
}

/// An execution's input and output columns read as text, parsed as [`lenient_json`] does;
/// the third value says what could not be read.
#[cfg(any(feature = "postgres", feature = "sqlite"))]
fn lenient_input_output(
    input: &str,
    output: Option<&str>,
) -> (serde_json::Value, Option<serde_json::Value>, Option<String>) {
    let (input, input_defect) = lenient_json(input, "input");
    let (output, output_defect) = match output {
        Some(text) => {
            let (output, defect) = lenient_json(text, "output");
            (Some(output), defect)
        }
        None => (None, None),
    };
    (input, output, input_defect.or(output_defect))
}

/// Parses a JSON column read as text. What serde cannot read (JSON nested deeper than its
/// recursion limit, say, which the database accepts) reads as `null`, with the reason.
#[cfg(any(feature = "postgres", feature = "sqlite"))]
fn lenient_json(text: &str, what: &str) -> (serde_json::Value, Option<String>) {
    match serde_json::from_str(text) {
        Ok(value) => (value, None),
        Err(err) => (
            serde_json::Value::Null,
            Some(format!(
                "its {what} is JSON this worker cannot read ({err})"
            )),
        ),
    }
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
        Ok(status) if status.is_terminal() => Err(StoreError::AlreadyEnded {
            execution_id: id,
            status,
        }),
        Ok(_) => Ok(()),
        Err(err) => Err(StoreError::InvalidData(format!("execution {id}: {err}"))),
    }
}

/// `url` with any password replaced by `***`, for logs and error messages; everything else
/// (scheme, user, host, port, database, parameters) stays, so the URL is recognisable. Works
/// on text no URL parser accepts, such as a password with an unescaped `@`, `#` or `/`: the
/// user information is everything before the last `@`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        // Not a URL: it may be a bare connection string or a password; show none of it.
        return "<not a scheme:// URL>".to_owned();
    };
    let (userinfo, location) = match rest.rfind('@') {
        Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
        None => (None, rest),
    };
    let mut redacted = format!("{scheme}://");
    if let Some(userinfo) = userinfo {
        match userinfo.split_once(':') {
            Some((user, _password)) => {
                redacted.push_str(user);
                redacted.push_str(":***@");
            }
            None => {
                redacted.push_str(userinfo);
                redacted.push('@');
            }
        }
    }
    match location.split_once('?') {
        Some((path, query)) => {
            redacted.push_str(path);
            redacted.push('?');
            let params: Vec<String> = query
                .split('&')
                .map(|param| match param.split_once('=') {
                    Some((key, _)) if key.eq_ignore_ascii_case("password") => {
                        format!("{key}=***")
                    }
                    _ => param.to_owned(),
                })
                .collect();
            redacted.push_str(&params.join("&"));
        }
        None => redacted.push_str(location),
    }
    redacted
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
        assert_eq!(redact_url("app:s3cret@db"), "<not a scheme:// URL>");
        // Passwords no URL parser accepts unescaped: the user, host, port and database stay.
        assert_eq!(
            redact_url(
                "postgresql://postgres.abcd:p@ss#w/rd@aws-0-eu.pooler.supabase.com:6543/postgres"
            ),
            "postgresql://postgres.abcd:***@aws-0-eu.pooler.supabase.com:6543/postgres"
        );
        assert_eq!(
            redact_url("sqlite://data/workflows.db"),
            "sqlite://data/workflows.db"
        );
    }

    #[cfg(all(feature = "postgres", feature = "sqlite"))]
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
