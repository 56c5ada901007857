//! [`SqliteStore`]: the embedded default store, for one machine and zero setup.
//!
//! It keeps the promises of every [`Store`]: atomic steps, leases and fencing, database time.
//! Its limits, honestly:
//! - **One machine.** Several worker processes may share one database file on a local disk
//!   (never a network file system): every write runs in an immediate transaction, so claims
//!   never interleave and an execution is never handed to two workers at once.
//! - **One writer at a time.** SQLite serialises writes; WAL mode lets reads go on beside
//!   them, and a busy timeout ([`BUSY_TIMEOUT`]) makes writers wait their turn rather than
//!   fail. Throughput is bounded by that single writer: for many workers on many machines,
//!   use [`PgStore`](crate::PgStore).
//!
//! In the file, ids are UUID text, JSON is text and times are Unix milliseconds.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::{Connection, FromRow, Row};
use tokio::sync::{broadcast, watch};
use uuid::Uuid;
use workflow_worker_core::flow::RateRequest;
use workflow_worker_core::node::child_signal;
use workflow_worker_core::store::{
    Advance, AgedExecution, ClaimParams, ClaimedExecution, CreateScheduleParams, DeadlineSweep,
    DueSchedules, ExecutionFilter, FireScheduleParams, NewItemRun, RecordStep, RescueFilter,
    RetryExecutionParams, StartChildParams, StartedChild, StepRecorded, TimedOutExecution, Wakeup,
    Wakeups,
};
use workflow_worker_core::{
    ChildExecution, Execution, ExecutionDetail, ExecutionId, ExecutionRetry, ExecutionStatus,
    ItemRun, KeyReuse, LeaseToken, ListExecutionsParams, LiveWorker, NodeRun, NodeRunStatus,
    QueueStats, RetryFrom, Schedule, ScheduleId, SendSignalParams, Signal, SignalId,
    SignalWithStartParams, SignalledExecution, StartExecutionParams, StartedExecution, Store,
    StoreError, WorkflowDefinition, WorkflowGraph, WorkflowId, WorkflowRef, WorkflowSummary,
    WorkflowVersion,
};

use crate::error::{already_ended, classify, invalid, unchanged_unless_ended};

mod queries;

pub(crate) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

/// How long a writer waits for the database lock before failing.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// How many connections a [`SqliteStore`] opens at most.
pub const MAX_CONNECTIONS: u32 = 4;

/// Starts every transaction that writes: takes the write lock up front, so two claims can
/// never read the same runnable rows.
const BEGIN_IMMEDIATE: &str = "begin immediate";

/// A [`Store`] on an SQLite database file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// Wake-up hints for workers on this store in this process (SQLite has no NOTIFY):
    /// bumped when an execution is started, signalled or released, or a schedule changes.
    hints: Arc<watch::Sender<u64>>,
    /// Executions this store cancelled, for the workers on it in this process: the one holding
    /// such an execution stops its nodes.
    cancelled: broadcast::Sender<ExecutionId>,
}

impl SqliteStore {
    /// Tells workers on this store in this process that something may be runnable now.
    fn hint(&self) {
        self.hints.send_modify(|n| *n = n.wrapping_add(1));
    }

    async fn schedule(&self, id: ScheduleId) -> Result<Schedule, StoreError> {
        let row: Option<ScheduleRow> = sqlx::query_as(queries::GET_SCHEDULE)
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)?;
        row.ok_or_else(|| schedule_not_found(id))?.try_into()
    }

    /// Opens (creating it if missing) the database at `url`, e.g. `sqlite://workflows.db` or
    /// `sqlite:///var/lib/workflows.db`, in WAL mode with a busy timeout and foreign keys on.
    /// Does not migrate.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::open(url, true).await
    }

    /// Opens the database file at `url` only if it exists: for commands that must not leave
    /// a new empty file behind. A missing file is [`StoreError::NotFound`].
    pub async fn connect_existing(url: &str) -> Result<Self, StoreError> {
        Self::open(url, false).await
    }

    async fn open(url: &str, create: bool) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(classify)?
            .create_if_missing(create)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true)
            // A parent's end cancels its children, and theirs: a trigger that fires itself.
            .pragma("recursive_triggers", "on");
        if !create && !options.get_filename().exists() {
            return Err(StoreError::NotFound {
                entity: "database file",
                id: options.get_filename().display().to_string(),
            });
        }
        // One direct connection first: an unwritable path or a file that is not a database
        // fails here, at once, with SQLite's own words.
        let probe = SqliteConnection::connect_with(&options)
            .await
            .map_err(classify)?;
        probe.close().await.map_err(classify)?;
        let pool = SqlitePoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(BUSY_TIMEOUT)
            .connect_lazy_with(options);
        Ok(Self {
            pool,
            hints: Arc::new(watch::Sender::new(0)),
            cancelled: broadcast::Sender::new(CANCELLED_BACKLOG),
        })
    }

    /// The underlying pool.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Applies the embedded migrations that are not yet applied, recording them in
    /// [`MIGRATIONS_TABLE`](crate::MIGRATIONS_TABLE) (history that releases before
    /// it kept in `_sqlx_migrations` moves over first).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let failed = |err: sqlx::migrate::MigrateError| StoreError::Migration(Box::new(err));
        let mut tx = self
            .pool
            .begin_with(BEGIN_IMMEDIATE)
            .await
            .map_err(classify)?;
        let (_, legacy): (bool, bool) = sqlx::query_as(queries::MIGRATIONS_TABLES_EXIST)
            .fetch_one(&mut *tx)
            .await
            .map_err(classify)?;
        if legacy {
            sqlx::raw_sql(queries::MIGRATIONS_TABLE_CREATE)
                .execute(&mut *tx)
                .await
                .map_err(classify)?;
            let ours: Vec<i64> = MIGRATOR.iter().map(|m| m.version).collect();
            let rows: Vec<(i64, Vec<u8>)> = sqlx::query_as(queries::MIGRATIONS_LEGACY_ROWS)
                .fetch_all(&mut *tx)
                .await
                .map_err(classify)?;
            for (version, checksum) in rows {
                let matches = MIGRATOR
                    .iter()
                    .any(|m| m.version == version && *m.checksum == checksum[..]);
                if matches && ours.contains(&version) {
                    sqlx::query(queries::MIGRATIONS_ADOPT_LEGACY)
                        .bind(version)
                        .execute(&mut *tx)
                        .await
                        .map_err(classify)?;
                    sqlx::query(queries::MIGRATIONS_DROP_LEGACY_ROW)
                        .bind(version)
                        .execute(&mut *tx)
                        .await
                        .map_err(classify)?;
                }
            }
        }
        tx.commit().await.map_err(classify)?;
        let mut migrator =
            sqlx::migrate::Migrator::with_migrations(MIGRATOR.iter().cloned().collect());
        migrator.dangerous_set_table_name(crate::MIGRATIONS_TABLE);
        migrator.run(&self.pool).await.map_err(failed)
    }

    /// The schema version the file has (the newest applied migration; `None` for an empty
    /// file) and the one this build needs.
    pub async fn schema_version(&self) -> Result<crate::SchemaVersion, StoreError> {
        let (ours, legacy): (bool, bool) = sqlx::query_as(queries::MIGRATIONS_TABLES_EXIST)
            .fetch_one(&self.pool)
            .await
            .map_err(classify)?;
        let applied = match (ours, legacy) {
            (true, _) => Some(queries::MIGRATIONS_VERSION),
            (false, true) => Some(queries::MIGRATIONS_LEGACY_VERSION),
            (false, false) => None,
        };
        let applied = match applied {
            Some(query) => sqlx::query_scalar(query)
                .fetch_one(&self.pool)
                .await
                .map_err(classify)?,
            None => None,
        };
        Ok(crate::SchemaVersion {
            applied,
            required: crate::latest_version(&MIGRATOR),
        })
    }
}

/// How many cancellations a slow listener may fall behind by before it is told it missed
/// some (then its heartbeat finds them).
const CANCELLED_BACKLOG: usize = 1024;

/// Hints from this process's [`SqliteStore`] handles; changes made by other processes on the
/// same file are found by polling and by the heartbeat.
struct SqliteWakeups {
    hints: watch::Receiver<u64>,
    cancelled: broadcast::Receiver<ExecutionId>,
}

#[async_trait]
impl Wakeups for SqliteWakeups {
    async fn next(&mut self) -> Result<Wakeup, StoreError> {
        tokio::select! {
            changed = self.hints.changed() => match changed {
                Ok(()) => Ok(Wakeup::Runnable),
                // The store (and its sender) is gone: no hint will ever come.
                Err(_) => std::future::pending().await,
            },
            cancelled = self.cancelled.recv() => match cancelled {
                Ok(id) => Ok(Wakeup::Cancelled(id)),
                Err(broadcast::error::RecvError::Lagged(_)) => Ok(Wakeup::Reconnected),
                Err(broadcast::error::RecvError::Closed) => std::future::pending().await,
            },
        }
    }
}

/// Execution `id` as the transaction `tx` sees it.
async fn execution_in(tx: &mut SqliteConnection, id: ExecutionId) -> Result<Execution, StoreError> {
    let row: Option<ExecutionRow> = sqlx::query_as(queries::GET_EXECUTION)
        .bind(id.to_string())
        .fetch_optional(&mut *tx)
        .await
        .map_err(classify)?;
    row.ok_or_else(|| StoreError::NotFound {
        entity: "execution",
        id: id.to_string(),
    })?
    .try_into()
}

#[derive(FromRow)]
struct ChildRow {
    id: String,
    workflow_name: String,
    status: String,
    parent_node_id: String,
    parent_item: Option<i32>,
    parent_attempt: i32,
    detached_by_retry: Option<i64>,
    created_at: i64,
}

impl TryFrom<ChildRow> for ChildExecution {
    type Error = StoreError;

    fn try_from(row: ChildRow) -> Result<Self, StoreError> {
        let what = format!("execution {}", row.id);
        Ok(ChildExecution {
            id: ExecutionId(uuid(&row.id, &what)?),
            status: ExecutionStatus::from_str(&row.status)
                .map_err(|err| invalid(format!("{what}: {err}")))?,
            workflow_name: row.workflow_name,
            node_id: row.parent_node_id,
            item: row.parent_item.and_then(|item| u32::try_from(item).ok()),
            attempt: u32::try_from(row.parent_attempt).unwrap_or_default(),
            detached_by_retry: row.detached_by_retry,
            created_at: time(row.created_at, &what)?,
        })
    }
}

/// [`Store::start_execution`] inside the caller's immediate transaction: the execution that
/// holds the key, if one does, or a new one.
async fn start_or_get_in(
    tx: &mut SqliteConnection,
    params: &StartExecutionParams,
) -> Result<StartedExecution, StoreError> {
    let (workflow_id, name) = workflow_key(&params.workflow);
    if let Some(key) = &params.key {
        let held: Option<String> = sqlx::query_scalar(queries::EXECUTION_WITH_KEY)
            .bind(&workflow_id)
            .bind(name)
            .bind(key)
            .bind(params.key_reuse == KeyReuse::Never)
            .fetch_optional(&mut *tx)
            .await
            .map_err(classify)?;
        if let Some(held) = held {
            let id = ExecutionId(uuid(&held, "execution with key")?);
            return Ok(StartedExecution {
                execution: execution_in(tx, id).await?,
                created: false,
            });
        }
    }
    let id = ExecutionId::new();
    let inserted = sqlx::query(queries::START_EXECUTION)
        .bind(id.to_string())
        .bind(workflow_id)
        .bind(name)
        .bind(to_text(&params.input))
        .bind(params.priority)
        .bind(params.timeout.map(millis))
        .bind(&params.key)
        .bind(&params.concurrency_key)
        .execute(&mut *tx)
        .await
        .map_err(classify);
    let inserted = match inserted {
        Err(StoreError::ConcurrencyKey(generic)) => {
            return Err(concurrency_key_refused(tx, &params.workflow, generic).await);
        }
        other => other?,
    };
    if inserted.rows_affected() == 0 {
        return Err(workflow_not_found(&params.workflow));
    }
    Ok(StartedExecution {
        execution: execution_in(tx, id).await?,
        created: true,
    })
}

/// Says why the insert trigger refused a start's concurrency key, naming the workflow and its
/// key path as PostgreSQL's trigger does (SQLite's RAISE takes only a fixed message).
async fn concurrency_key_refused(
    tx: &mut SqliteConnection,
    workflow: &WorkflowRef,
    generic: String,
) -> StoreError {
    let (workflow_id, name) = workflow_key(workflow);
    let found: Result<Option<(String, Option<String>)>, sqlx::Error> =
        sqlx::query_as(queries::WORKFLOW_CONCURRENCY)
            .bind(workflow_id)
            .bind(name)
            .fetch_optional(&mut *tx)
            .await;
    StoreError::ConcurrencyKey(match found {
        Ok(Some((name, Some(path)))) if generic.contains("no value") => format!(
            "the input has no value at \"{path}\", the concurrency key of workflow \"{name}\""
        ),
        Ok(Some((name, None))) if generic.contains("no concurrency") => format!(
            "workflow \"{name}\" has no concurrency setting, so its executions take no concurrency key"
        ),
        _ => generic,
    })
}

/// Stores a signal for execution `id` inside the caller's transaction, or returns the one
/// stored before with the same idempotency key.
async fn insert_signal_in(
    tx: &mut SqliteConnection,
    id: ExecutionId,
    name: &str,
    payload: &Value,
    idempotency_key: Option<&str>,
) -> Result<Signal, StoreError> {
    let execution = id.to_string();
    let inserted: Option<SignalRow> = sqlx::query_as(queries::INSERT_SIGNAL)
        .bind(&execution)
        .bind(name)
        .bind(to_text(payload))
        .bind(idempotency_key)
        .fetch_optional(&mut *tx)
        .await
        .map_err(classify)?;
    let row = match inserted {
        Some(row) => row,
        None => sqlx::query_as(queries::SIGNAL_BY_KEY)
            .bind(&execution)
            .bind(idempotency_key)
            .fetch_one(&mut *tx)
            .await
            .map_err(classify)?,
    };
    row.try_into()
}

/// One claim round's runnable executions, at most `limit`, with their status and group (an
/// idle worker's claim looks for one suspect first), inside the claim's transaction.
async fn runnable_in(
    tx: &mut SqliteConnection,
    params: &ClaimParams,
    limit: u32,
    node_types: Option<&str>,
) -> Result<Vec<sqlx::sqlite::SqliteRow>, StoreError> {
    let runnable = match params.rescues {
        RescueFilter::SuspectFirst(threshold) => {
            // A suspect runs alone; without one, the others as a busy worker claims them.
            let suspect = sqlx::query(queries::RUNNABLE_SUSPECT)
                .bind(threshold)
                .bind(node_types)
                .fetch_all(&mut *tx)
                .await
                .map_err(classify)?;
            if suspect.is_empty() {
                sqlx::query(queries::RUNNABLE)
                    .bind(i64::from(limit))
                    .bind(threshold)
                    .bind(None::<i32>)
                    .bind(node_types)
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(classify)?
            } else {
                suspect
            }
        }
        rescues => {
            let (not_suspect_below, suspect_from) = rescues.thresholds();
            sqlx::query(queries::RUNNABLE)
                .bind(i64::from(limit))
                .bind(not_suspect_below)
                .bind(suspect_from)
                .bind(node_types)
                .fetch_all(&mut *tx)
                .await
                .map_err(classify)?
        }
    };
    Ok(runnable)
}

/// How many claim rounds one claim runs at most while they hold back executions.
const MAX_CLAIM_ROUNDS: usize = 4;

/// Lets go, in the caller's immediate transaction, the held executions of workflow `workflow`
/// (of every workflow if `None`) that their groups' windows have room for; returns how many.
async fn release_held_in(
    tx: &mut SqliteConnection,
    workflow: Option<&str>,
) -> Result<u64, StoreError> {
    let groups: Vec<(String, String)> = sqlx::query_as(queries::HELD_GROUPS)
        .bind(workflow)
        .fetch_all(&mut *tx)
        .await
        .map_err(classify)?;
    let mut released = 0;
    for (workflow_id, key) in groups {
        released += sqlx::query(queries::RELEASE_GROUP)
            .bind(&workflow_id)
            .bind(&key)
            .execute(&mut *tx)
            .await
            .map_err(classify)?
            .rows_affected();
    }
    Ok(released)
}

/// One step of [`Store::record_steps`] inside the caller's transaction (a savepoint of it).
/// What [`write_step`] did beyond the step: whether it ended a child execution, whose parent
/// a trigger has just signalled (and woken, if it waits).
struct Written {
    recorded: StepRecorded,
    ended_a_child: bool,
    /// It stopped running an execution of a concurrency group, whose release trigger may
    /// have let a held one go.
    left_a_group: bool,
}

async fn write_step(tx: &mut SqliteConnection, params: &RecordStep) -> Result<Written, StoreError> {
    let RecordStep {
        execution_id,
        lease_token,
        worker_id,
        runs,
        advance,
    } = params;
    let id = execution_id.to_string();
    let fence = match advance {
        Advance::Continue { lease_duration } => sqlx::query(queries::ADVANCE_CONTINUE)
            .bind(&id)
            .bind(lease_token.0)
            .bind(millis(*lease_duration)),
        Advance::Retry { delay } => sqlx::query(queries::ADVANCE_RETRY)
            .bind(&id)
            .bind(lease_token.0)
            .bind(millis(*delay)),
        Advance::Wait { delay, signals } => sqlx::query(queries::ADVANCE_WAIT)
            .bind(&id)
            .bind(lease_token.0)
            .bind(delay.map(millis))
            .bind(Value::from(signals.clone()).to_string()),
        Advance::Release => sqlx::query(queries::ADVANCE_RELEASE)
            .bind(&id)
            .bind(lease_token.0),
        Advance::Pause { error } => sqlx::query(queries::ADVANCE_PAUSE)
            .bind(&id)
            .bind(lease_token.0)
            .bind(error),
        Advance::Finish {
            status,
            output,
            error,
        } => sqlx::query(queries::ADVANCE_FINISH)
            .bind(&id)
            .bind(lease_token.0)
            .bind(status.as_str())
            .bind(output.as_ref().map(to_text))
            .bind(error),
    };
    let fenced = fence.fetch_optional(&mut *tx).await.map_err(classify)?;
    let Some(fenced) = fenced else {
        return Err(StoreError::LeaseLost {
            execution_id: *execution_id,
            lease_token: *lease_token,
        });
    };
    let recorded = StepRecorded {
        pause_requested: fenced.try_get(0).map_err(classify)?,
    };
    let ended_a_child = match advance {
        Advance::Finish { .. } => fenced.try_get(1).map_err(classify)?,
        _ => false,
    };
    let left_a_group = match advance {
        Advance::Finish { .. } => fenced.try_get(2).map_err(classify)?,
        Advance::Wait { .. } | Advance::Retry { .. } | Advance::Pause { .. } => {
            fenced.try_get(1).map_err(classify)?
        }
        Advance::Continue { .. } | Advance::Release => false,
    };
    for run in runs {
        if let Some(signal) = run.consumed_signal {
            let consumed = sqlx::query(queries::CONSUME_SIGNAL)
                .bind(signal.0)
                .bind(&id)
                .bind(&run.node_id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(classify)?;
            if consumed.is_none() {
                return Err(crate::error::signal_taken(signal, *execution_id));
            }
        }
        sqlx::query(queries::INSERT_NODE_RUN)
            .bind(&id)
            .bind(&run.node_id)
            .bind(&run.node_type)
            .bind(i64::from(run.attempt))
            .bind(run.status.as_str())
            .bind(run.input.as_ref().map(to_text))
            .bind(run.output.as_ref().map(to_text))
            .bind(&run.branch)
            .bind(&run.error)
            .bind(worker_id)
            .bind(millis(run.duration))
            .bind(millis(run.ended_ago))
            .execute(&mut *tx)
            .await
            .map_err(|err| crate::error::already_recorded(classify(err), *execution_id))?;
    }
    Ok(Written {
        recorded,
        ended_a_child,
        left_a_group,
    })
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

fn time(ms: i64, what: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_millis(ms).ok_or_else(|| invalid(format!("{what}: bad time {ms}")))
}

fn optional_time(ms: Option<i64>, what: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
    ms.map(|ms| time(ms, what)).transpose()
}

fn uuid(text: &str, what: &str) -> Result<Uuid, StoreError> {
    Uuid::parse_str(text).map_err(|err| invalid(format!("{what}: bad id \"{text}\": {err}")))
}

fn json(text: &str, what: &str) -> Result<Value, StoreError> {
    serde_json::from_str(text).map_err(|err| invalid(format!("{what}: bad JSON: {err}")))
}

fn optional_json(text: Option<&str>, what: &str) -> Result<Option<Value>, StoreError> {
    text.map(|text| json(text, what)).transpose()
}

#[derive(FromRow)]
struct WorkflowRow {
    workflow_id: String,
    name: String,
    version: i32,
    definition: String,
    created_at: i64,
}

impl TryFrom<WorkflowRow> for WorkflowVersion {
    type Error = StoreError;

    fn try_from(row: WorkflowRow) -> Result<Self, StoreError> {
        let what = format!("workflow \"{}\" version {}", row.name, row.version);
        let definition = serde_json::from_str::<WorkflowDefinition>(&row.definition)
            .map_err(|err| invalid(format!("{what}: {err}")))?;
        Ok(Self {
            workflow_id: WorkflowId(uuid(&row.workflow_id, &what)?),
            definition,
            created_at: time(row.created_at, &what)?,
            name: row.name,
            version: row.version,
        })
    }
}

#[derive(FromRow)]
struct ExecutionRow {
    id: String,
    workflow_id: String,
    workflow_name: String,
    workflow_version: i32,
    status: String,
    input: String,
    output: Option<String>,
    error: Option<String>,
    priority: i32,
    run_at: Option<i64>,
    deadline: Option<i64>,
    schedule_id: Option<String>,
    scheduled_for: Option<i64>,
    lease_owner: Option<String>,
    lease_expires_at: Option<i64>,
    lease_token: i64,
    rescue_count: i32,
    created_at: i64,
    started_at: Option<i64>,
    finished_at: Option<i64>,
    pause_requested_at: Option<i64>,
    key: Option<String>,
    parent_execution_id: Option<String>,
    parent_node_id: Option<String>,
    parent_item: Option<i32>,
    parent_attempt: Option<i32>,
    depth: i32,
    concurrency_key: Option<String>,
    held_since: Option<i64>,
}

impl ExecutionRow {
    /// The execution, and what of it could not be read (read as `null`).
    fn read(self) -> Result<(Execution, Option<String>), StoreError> {
        let what = format!("execution {}", self.id);
        let (input, output, defect) =
            crate::lenient_input_output(&self.input, self.output.as_deref());
        let execution = Execution {
            id: ExecutionId(uuid(&self.id, &what)?),
            workflow_id: WorkflowId(uuid(&self.workflow_id, &what)?),
            workflow_name: self.workflow_name,
            workflow_version: self.workflow_version,
            status: ExecutionStatus::from_str(&self.status)
                .map_err(|err| invalid(format!("{what}: {err}")))?,
            input,
            output,
            error: self.error,
            priority: self.priority,
            run_at: optional_time(self.run_at, &what)?,
            deadline: optional_time(self.deadline, &what)?,
            schedule_id: self
                .schedule_id
                .as_deref()
                .map(|id| uuid(id, &what).map(ScheduleId))
                .transpose()?,
            scheduled_for: optional_time(self.scheduled_for, &what)?,
            lease_owner: self.lease_owner,
            lease_expires_at: optional_time(self.lease_expires_at, &what)?,
            lease_token: LeaseToken(self.lease_token),
            rescue_count: self.rescue_count,
            created_at: time(self.created_at, &what)?,
            started_at: optional_time(self.started_at, &what)?,
            finished_at: optional_time(self.finished_at, &what)?,
            pause_requested_at: optional_time(self.pause_requested_at, &what)?,
            key: self.key,
            parent: crate::parent_of(
                self.parent_execution_id
                    .as_deref()
                    .map(|id| uuid(id, &what))
                    .transpose()?,
                self.parent_node_id,
                self.parent_item,
                self.parent_attempt,
            ),
            depth: u32::try_from(self.depth).unwrap_or_default(),
            concurrency_key: self.concurrency_key,
            held_since: optional_time(self.held_since, &what)?,
        };
        Ok((execution, defect))
    }
}

impl TryFrom<ExecutionRow> for Execution {
    type Error = StoreError;

    fn try_from(row: ExecutionRow) -> Result<Self, StoreError> {
        row.read().map(|(execution, _)| execution)
    }
}

#[derive(FromRow)]
struct NodeRunRow {
    execution_id: String,
    node_id: String,
    node_type: String,
    attempt: i32,
    status: String,
    input: Option<String>,
    output: Option<String>,
    branch: Option<String>,
    error: Option<String>,
    worker_id: Option<String>,
    started_at: i64,
    finished_at: i64,
    superseded_by: Option<i64>,
}

impl TryFrom<NodeRunRow> for NodeRun {
    type Error = StoreError;

    fn try_from(row: NodeRunRow) -> Result<Self, StoreError> {
        let what = format!("execution {} node \"{}\"", row.execution_id, row.node_id);
        Ok(Self {
            execution_id: ExecutionId(uuid(&row.execution_id, &what)?),
            status: NodeRunStatus::from_str(&row.status)
                .map_err(|err| invalid(format!("{what}: {err}")))?,
            input: optional_json(row.input.as_deref(), &what)?,
            output: optional_json(row.output.as_deref(), &what)?,
            started_at: time(row.started_at, &what)?,
            finished_at: time(row.finished_at, &what)?,
            node_id: row.node_id,
            node_type: row.node_type,
            attempt: row.attempt,
            branch: row.branch,
            error: row.error,
            worker_id: row.worker_id,
            superseded_by: row.superseded_by,
        })
    }
}

#[derive(FromRow)]
struct ItemRunRow {
    execution_id: String,
    node_id: String,
    item: i32,
    node_type: String,
    attempt: i32,
    status: String,
    input: Option<String>,
    output: Option<String>,
    error: Option<String>,
    fatal: bool,
    worker_id: Option<String>,
    started_at: i64,
    finished_at: i64,
}

impl TryFrom<ItemRunRow> for ItemRun {
    type Error = StoreError;

    fn try_from(row: ItemRunRow) -> Result<Self, StoreError> {
        let what = format!(
            "execution {} node \"{}\" item {}",
            row.execution_id, row.node_id, row.item
        );
        Ok(Self {
            execution_id: ExecutionId(uuid(&row.execution_id, &what)?),
            status: NodeRunStatus::from_str(&row.status)
                .map_err(|err| invalid(format!("{what}: {err}")))?,
            input: optional_json(row.input.as_deref(), &what)?,
            output: optional_json(row.output.as_deref(), &what)?,
            started_at: time(row.started_at, &what)?,
            finished_at: time(row.finished_at, &what)?,
            node_id: row.node_id,
            item: u32::try_from(row.item).unwrap_or_default(),
            node_type: row.node_type,
            attempt: u32::try_from(row.attempt).unwrap_or_default(),
            error: row.error,
            fatal: row.fatal,
            worker_id: row.worker_id,
        })
    }
}

#[derive(FromRow)]
struct RetryRow {
    id: i64,
    requested_by: String,
    requested_at: i64,
    from_status: String,
    mode: String,
    from_node: Option<String>,
    workflow_version: i32,
}

impl TryFrom<RetryRow> for ExecutionRetry {
    type Error = StoreError;

    fn try_from(row: RetryRow) -> Result<Self, StoreError> {
        let what = format!("retry {}", row.id);
        Ok(Self {
            from_status: row
                .from_status
                .parse()
                .map_err(|err| invalid(format!("{what}: {err}")))?,
            from: RetryFrom::from_parts(&row.mode, row.from_node.clone())
                .ok_or_else(|| invalid(format!("{what}: unknown mode \"{}\"", row.mode)))?,
            requested_at: time(row.requested_at, &what)?,
            id: row.id,
            requested_by: row.requested_by,
            workflow_version: row.workflow_version,
        })
    }
}

#[derive(FromRow)]
struct SignalRow {
    id: i64,
    execution_id: String,
    name: String,
    payload: String,
    idempotency_key: Option<String>,
    created_at: i64,
    consumed_at: Option<i64>,
    consumed_by_node: Option<String>,
}

impl SignalRow {
    /// The signal, and what of it could not be read (read as `null`).
    fn read(self) -> Result<(Signal, Option<String>), StoreError> {
        let what = format!("signal {}", self.id);
        let (payload, defect) = crate::lenient_json(&self.payload, &format!("{what} payload"));
        let signal = Signal {
            id: SignalId(self.id),
            execution_id: ExecutionId(uuid(&self.execution_id, &what)?),
            payload,
            created_at: time(self.created_at, &what)?,
            consumed_at: optional_time(self.consumed_at, &what)?,
            name: self.name,
            idempotency_key: self.idempotency_key,
            consumed_by_node: self.consumed_by_node,
        };
        Ok((signal, defect))
    }
}

impl TryFrom<SignalRow> for Signal {
    type Error = StoreError;

    fn try_from(row: SignalRow) -> Result<Self, StoreError> {
        row.read().map(|(signal, _)| signal)
    }
}

#[derive(FromRow)]
struct ScheduleRow {
    id: String,
    workflow_id: String,
    workflow_name: String,
    cron: String,
    timezone: String,
    input: String,
    enabled: bool,
    catch_up: i64,
    next_fire_at: Option<i64>,
    last_fire_at: Option<i64>,
    created_at: i64,
}

impl TryFrom<ScheduleRow> for Schedule {
    type Error = StoreError;

    fn try_from(row: ScheduleRow) -> Result<Self, StoreError> {
        let what = format!("schedule {}", row.id);
        Ok(Self {
            id: ScheduleId(uuid(&row.id, &what)?),
            workflow_id: WorkflowId(uuid(&row.workflow_id, &what)?),
            input: json(&row.input, &what)?,
            catch_up: u32::try_from(row.catch_up)
                .map_err(|_| invalid(format!("{what}: catch_up {}", row.catch_up)))?,
            next_fire_at: optional_time(row.next_fire_at, &what)?,
            last_fire_at: optional_time(row.last_fire_at, &what)?,
            created_at: time(row.created_at, &what)?,
            workflow_name: row.workflow_name,
            cron: row.cron,
            timezone: row.timezone,
            enabled: row.enabled,
        })
    }
}

fn schedule_not_found(id: ScheduleId) -> StoreError {
    StoreError::NotFound {
        entity: "schedule",
        id: id.to_string(),
    }
}

fn ms(at: DateTime<Utc>) -> i64 {
    at.timestamp_millis()
}

fn convert<R, T: TryFrom<R, Error = StoreError>>(rows: Vec<R>) -> Result<Vec<T>, StoreError> {
    rows.into_iter().map(T::try_from).collect()
}

/// `(id, name)` parameters for queries that name a workflow either way.
fn workflow_key(workflow: &WorkflowRef) -> (Option<String>, Option<&str>) {
    match workflow {
        WorkflowRef::Id(id) => (Some(id.to_string()), None),
        WorkflowRef::Name(name) => (None, Some(name.as_str())),
    }
}

fn workflow_not_found(workflow: &WorkflowRef) -> StoreError {
    StoreError::NotFound {
        entity: "workflow",
        id: workflow.to_string(),
    }
}

fn to_text(value: &Value) -> String {
    value.to_string()
}

#[async_trait]
impl Store for SqliteStore {
    async fn save_workflow(&self, graph: &WorkflowGraph) -> Result<WorkflowVersion, StoreError> {
        let definition = graph.definition();
        let text = serde_json::to_string(definition)
            .map_err(|err| invalid(format!("workflow \"{}\": {err}", definition.name)))?;
        let mut tx = self
            .pool
            .begin_with(BEGIN_IMMEDIATE)
            .await
            .map_err(classify)?;
        let row = sqlx::query(queries::UPSERT_WORKFLOW)
            .bind(Uuid::new_v4().to_string())
            .bind(&definition.name)
            .fetch_one(&mut *tx)
            .await
            .map_err(classify)?;
        let id: String = row.try_get(0).map_err(classify)?;
        let version: i32 = row.try_get(1).map_err(classify)?;
        sqlx::query(queries::INSERT_WORKFLOW_VERSION)
            .bind(&id)
            .bind(version)
            .bind(text)
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        let saved: WorkflowRow = sqlx::query_as(queries::GET_WORKFLOW_VERSION)
            .bind(&id)
            .bind(version)
            .fetch_one(&mut *tx)
            .await
            .map_err(classify)?;
        // The new version may raise the workflow's limit, or drop it: let go what it allows.
        let released = release_held_in(&mut tx, Some(&id)).await?;
        tx.commit().await.map_err(classify)?;
        if released > 0 {
            self.hint();
        }
        saved.try_into()
    }

    async fn get_workflow(&self, workflow: &WorkflowRef) -> Result<WorkflowVersion, StoreError> {
        let (id, name) = workflow_key(workflow);
        let row: Option<WorkflowRow> = sqlx::query_as(queries::GET_WORKFLOW)
            .bind(id)
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)?;
        row.ok_or_else(|| workflow_not_found(workflow))?.try_into()
    }

    async fn list_workflows(&self) -> Result<Vec<WorkflowSummary>, StoreError> {
        let rows: Vec<(String, String, i32, i64, i64)> = sqlx::query_as(queries::LIST_WORKFLOWS)
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?;
        rows.into_iter()
            .map(|(id, name, latest_version, created_at, updated_at)| {
                let what = format!("workflow \"{name}\"");
                Ok(WorkflowSummary {
                    workflow_id: WorkflowId(uuid(&id, &what)?),
                    latest_version,
                    created_at: time(created_at, &what)?,
                    updated_at: time(updated_at, &what)?,
                    name,
                })
            })
            .collect()
    }

    async fn get_workflow_version(
        &self,
        workflow_id: WorkflowId,
        version: i32,
    ) -> Result<WorkflowVersion, StoreError> {
        let row: Option<WorkflowRow> = sqlx::query_as(queries::GET_WORKFLOW_VERSION)
            .bind(workflow_id.to_string())
            .bind(version)
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)?;
        row.ok_or_else(|| StoreError::NotFound {
            entity: "workflow version",
            id: format!("{workflow_id} v{version}"),
        })?
        .try_into()
    }

    async fn start_execution(
        &self,
        params: StartExecutionParams,
    ) -> Result<StartedExecution, StoreError> {
        params.check_keys()?;
        // A keyed start reads and inserts in one immediate transaction: starts on the file
        // are serialised, so two with one key never both insert.
        let mut tx = self
            .pool
            .begin_with(BEGIN_IMMEDIATE)
            .await
            .map_err(classify)?;
        let started = start_or_get_in(&mut tx, &params).await?;
        tx.commit().await.map_err(classify)?;
        if started.created {
            self.hint();
        }
        Ok(started)
    }

    async fn start_child_execution(
        &self,
        params: StartChildParams,
    ) -> Result<StartedChild, StoreError> {
        let parent = &params.parent;
        let parent_id = parent.execution_id.to_string();
        let attempt = i32::try_from(parent.attempt).unwrap_or(i32::MAX);
        let item = parent
            .item
            .map(|item| i32::try_from(item).unwrap_or(i32::MAX));
        let mut tx = self
            .pool
            .begin_with(BEGIN_IMMEDIATE)
            .await
            .map_err(classify)?;
        let held: Option<bool> = sqlx::query_scalar(queries::HOLDS_LEASE)
            .bind(&parent_id)
            .bind(params.lease_token.0)
            .fetch_optional(&mut *tx)
            .await
            .map_err(classify)?;
        if held.is_none() {
            return Err(StoreError::LeaseLost {
                execution_id: parent.execution_id,
                lease_token: params.lease_token,
            });
        }
        let existing: Option<String> = sqlx::query_scalar(queries::CHILD_OF)
            .bind(&parent_id)
            .bind(&parent.node_id)
            .bind(attempt)
            .bind(item)
            .fetch_optional(&mut *tx)
            .await
            .map_err(classify)?;
        if let Some(existing) = existing {
            let id = ExecutionId(uuid(&existing, "child execution")?);
            let execution = execution_in(&mut tx, id).await?;
            let end_signal: Option<i64> = if execution.status.is_terminal() {
                sqlx::query_scalar(queries::PENDING_SIGNAL_NAMED)
                    .bind(&parent_id)
                    .bind(child_signal(id))
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(classify)?
            } else {
                None
            };
            tx.commit().await.map_err(classify)?;
            return Ok(StartedChild {
                execution,
                created: false,
                end_signal: end_signal.map(SignalId),
            });
        }
        let id = ExecutionId::new();
        let (workflow_id, name) = workflow_key(&params.workflow);
        let inserted = sqlx::query(queries::START_CHILD_EXECUTION)
            .bind(id.to_string())
            .bind(workflow_id)
            .bind(name)
            .bind(to_text(&params.input))
            .bind(params.priority)
            .bind(&parent_id)
            .bind(&parent.node_id)
            .bind(attempt)
            .bind(i32::try_from(params.depth).unwrap_or(i32::MAX))
            .bind(item)
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        if inserted.rows_affected() == 0 {
            return Err(workflow_not_found(&params.workflow));
        }
        sqlx::query(queries::MARK_PARENT)
            .bind(&parent_id)
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        let execution = execution_in(&mut tx, id).await?;
        tx.commit().await.map_err(classify)?;
        self.hint();
        Ok(StartedChild {
            execution,
            created: true,
            end_signal: None,
        })
    }

    async fn signal_with_start(
        &self,
        params: SignalWithStartParams,
    ) -> Result<SignalledExecution, StoreError> {
        params.checked_key()?;
        let mut tx = self
            .pool
            .begin_with(BEGIN_IMMEDIATE)
            .await
            .map_err(classify)?;
        let started = start_or_get_in(&mut tx, &params.start).await?;
        // Only a key that is never reused returns an ended execution.
        if started.execution.status.is_terminal() {
            return Err(already_ended(started.execution));
        }
        let signal = insert_signal_in(
            &mut tx,
            started.execution.id,
            &params.name,
            &params.payload,
            params.idempotency_key.as_deref(),
        )
        .await?;
        tx.commit().await.map_err(classify)?;
        self.hint();
        Ok(SignalledExecution { started, signal })
    }

    async fn claim_executions(
        &self,
        params: ClaimParams,
    ) -> Result<Vec<ClaimedExecution>, StoreError> {
        let mut tx = self
            .pool
            .begin_with(BEGIN_IMMEDIATE)
            .await
            .map_err(classify)?;
        let node_types = params
            .node_types
            .as_ref()
            .map(|types| Value::from(types.clone()).to_string());
        let mut claimed: Vec<String> = Vec::new();
        let mut woken = Vec::new();
        // Executions of a group with a limit are admitted while fewer than the limit run (the
        // transaction is the only writer, so the count stays true until it commits), else
        // held back; each round claims what it admitted, and a round that held some back
        // looks again for the slots they would have taken.
        let mut running_in: HashMap<(String, String), i64> = HashMap::new();
        for _ in 0..MAX_CLAIM_ROUNDS {
            let want = params.limit - u32::try_from(claimed.len()).unwrap_or(params.limit);
            let runnable = runnable_in(&mut tx, &params, want, node_types.as_deref()).await?;
            let mut admitted = Vec::with_capacity(runnable.len());
            let mut held = 0;
            for row in &runnable {
                let id: String = row.try_get(0).map_err(classify)?;
                let status: String = row.try_get(1).map_err(classify)?;
                let workflow_id: String = row.try_get(2).map_err(classify)?;
                let key: Option<String> = row.try_get(3).map_err(classify)?;
                let limit: Option<i64> = row.try_get(4).map_err(classify)?;
                // A running execution (rescued or released) holds its place already.
                if let (Some(key), Some(limit)) = (key, limit)
                    && status != ExecutionStatus::Running.as_str()
                {
                    let running = match running_in.entry((workflow_id, key)) {
                        Entry::Occupied(entry) => entry.into_mut(),
                        Entry::Vacant(entry) => {
                            let (workflow_id, key) = entry.key();
                            let count: i64 = sqlx::query_scalar(queries::RUNNING_IN_GROUP)
                                .bind(workflow_id)
                                .bind(key)
                                .fetch_one(&mut *tx)
                                .await
                                .map_err(classify)?;
                            entry.insert(count)
                        }
                    };
                    if *running >= limit {
                        sqlx::query(queries::HOLD_EXECUTION)
                            .bind(&id)
                            .execute(&mut *tx)
                            .await
                            .map_err(classify)?;
                        held += 1;
                        continue;
                    }
                    *running += 1;
                }
                // Only executions woken from waiting need their signals.
                if status == ExecutionStatus::Waiting.as_str() {
                    woken.push(id.clone());
                }
                admitted.push(id);
            }
            if !admitted.is_empty() {
                sqlx::query(queries::CLAIM_EXECUTIONS)
                    .bind(Value::from(admitted.clone()).to_string())
                    .bind(&params.worker_id)
                    .bind(millis(params.lease_duration))
                    .execute(&mut *tx)
                    .await
                    .map_err(classify)?;
            }
            let full = admitted.len() >= want as usize;
            claimed.append(&mut admitted);
            if full || held == 0 {
                break;
            }
        }
        if claimed.is_empty() {
            // Holds, if any, stand.
            tx.commit().await.map_err(classify)?;
            return Ok(Vec::new());
        }
        let ids = Value::from(claimed).to_string();
        let rows: Vec<ExecutionRow> = sqlx::query_as(queries::EXECUTIONS_BY_IDS)
            .bind(&ids)
            .fetch_all(&mut *tx)
            .await
            .map_err(classify)?;
        // Node runs are only ever written under a claim, so a first claim has none to read.
        let resumed: Vec<&str> = rows
            .iter()
            .filter(|row| row.lease_token > 1)
            .map(|row| row.id.as_str())
            .collect();
        let runs: Vec<NodeRunRow> = if resumed.is_empty() {
            Vec::new()
        } else {
            sqlx::query_as(queries::NODE_RUNS_OF_MANY)
                .bind(Value::from(resumed).to_string())
                .fetch_all(&mut *tx)
                .await
                .map_err(classify)?
        };
        let signals: Vec<SignalRow> = if woken.is_empty() {
            Vec::new()
        } else {
            sqlx::query_as(queries::PENDING_SIGNALS_OF_MANY)
                .bind(Value::from(woken).to_string())
                .fetch_all(&mut *tx)
                .await
                .map_err(classify)?
        };
        tx.commit().await.map_err(classify)?;
        Ok(crate::assemble_claims(
            rows.into_iter()
                .map(ExecutionRow::read)
                .collect::<Result<_, _>>()?,
            convert(runs)?,
            signals
                .into_iter()
                .map(SignalRow::read)
                .collect::<Result<_, _>>()?,
        ))
    }

    /// All steps in one immediate transaction (one commit, one sync to disk); each in a
    /// savepoint, so a step whose lease was lost or that conflicts leaves the others.
    async fn record_steps(&self, steps: &[RecordStep]) -> Vec<Result<StepRecorded, StoreError>> {
        let outcome: Result<(Vec<Result<StepRecorded, StoreError>>, bool), StoreError> = async {
            let mut tx = self
                .pool
                .begin_with(BEGIN_IMMEDIATE)
                .await
                .map_err(classify)?;
            let mut results = Vec::with_capacity(steps.len());
            // Whether something may have become runnable: the waiting parent of a child that
            // ended, or a held execution let go.
            let mut woke = false;
            for step in steps {
                sqlx::query("savepoint step")
                    .execute(&mut *tx)
                    .await
                    .map_err(classify)?;
                let result = write_step(&mut tx, step).await.map(|written| {
                    woke |= written.ended_a_child || written.left_a_group;
                    written.recorded
                });
                match &result {
                    Ok(_) => {}
                    // The database is away (busy past its timeout, say): the whole batch may
                    // try again (dropping the transaction rolls it back).
                    Err(StoreError::Unavailable(_)) => return Err(result.expect_err("an error")),
                    // This step alone fails: its lease was lost, or its data was refused.
                    Err(_) => {
                        sqlx::query("rollback to step")
                            .execute(&mut *tx)
                            .await
                            .map_err(classify)?;
                    }
                }
                sqlx::query("release step")
                    .execute(&mut *tx)
                    .await
                    .map_err(classify)?;
                results.push(result);
            }
            tx.commit().await.map_err(classify)?;
            Ok((results, woke))
        }
        .await;
        let woke = matches!(outcome, Ok((_, true)));
        let outcome = outcome.map(|(results, _)| results);
        // A released execution is runnable now, and so are the waiting parent of a child that
        // ended and a held execution let go.
        if woke
            || steps
                .iter()
                .any(|step| matches!(step.advance, Advance::Release))
        {
            self.hint();
        }
        outcome.unwrap_or_else(|err| {
            crate::error::share(err, steps.len())
                .into_iter()
                .map(Err)
                .collect()
        })
    }

    async fn record_item_runs(
        &self,
        execution_id: ExecutionId,
        lease_token: LeaseToken,
        worker_id: &str,
        runs: &[NewItemRun],
    ) -> Result<StepRecorded, StoreError> {
        let id = execution_id.to_string();
        let mut tx = self
            .pool
            .begin_with(BEGIN_IMMEDIATE)
            .await
            .map_err(classify)?;
        let held: Option<bool> = sqlx::query_scalar(queries::HOLDS_LEASE)
            .bind(&id)
            .bind(lease_token.0)
            .fetch_optional(&mut *tx)
            .await
            .map_err(classify)?;
        let Some(pause_requested) = held else {
            return Err(StoreError::LeaseLost {
                execution_id,
                lease_token,
            });
        };
        for run in runs {
            sqlx::query(queries::INSERT_ITEM_RUN)
                .bind(&id)
                .bind(worker_id)
                .bind(&run.node_id)
                .bind(i64::from(run.item))
                .bind(&run.node_type)
                .bind(i64::from(run.attempt))
                .bind(run.status.as_str())
                .bind(run.input.as_ref().map(to_text))
                .bind(run.output.as_ref().map(to_text))
                .bind(&run.error)
                .bind(millis(run.duration))
                .bind(millis(run.ended_ago))
                .bind(run.fatal)
                .execute(&mut *tx)
                .await
                .map_err(|err| crate::error::already_recorded(classify(err), execution_id))?;
            if let Some(signal) = run.consumed_signal {
                // Consumed if still pending; one consumed already stays as it is.
                sqlx::query(queries::CONSUME_SIGNAL)
                    .bind(signal.0)
                    .bind(&id)
                    .bind(format!("{}[{}]", run.node_id, run.item))
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(classify)?;
            }
        }
        tx.commit().await.map_err(classify)?;
        Ok(StepRecorded { pause_requested })
    }

    async fn item_runs(
        &self,
        execution_id: ExecutionId,
        node_id: &str,
    ) -> Result<Vec<ItemRun>, StoreError> {
        let rows: Vec<ItemRunRow> = sqlx::query_as(queries::ITEM_RUNS_OF_NODE)
            .bind(execution_id.to_string())
            .bind(node_id)
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?;
        convert(rows)
    }

    async fn renew_leases(
        &self,
        leases: &[(ExecutionId, LeaseToken)],
        lease_duration: Duration,
    ) -> Result<Vec<ExecutionId>, StoreError> {
        let mut tx = self
            .pool
            .begin_with(BEGIN_IMMEDIATE)
            .await
            .map_err(classify)?;
        let mut renewed = Vec::new();
        for (id, token) in leases {
            let updated = sqlx::query(queries::RENEW_LEASE)
                .bind(id.to_string())
                .bind(token.0)
                .bind(millis(lease_duration))
                .execute(&mut *tx)
                .await
                .map_err(classify)?;
            if updated.rows_affected() == 1 {
                renewed.push(*id);
            }
        }
        tx.commit().await.map_err(classify)?;
        Ok(renewed)
    }

    async fn cancel_execution(
        &self,
        id: ExecutionId,
        reason: &str,
    ) -> Result<Execution, StoreError> {
        let mut tx = self
            .pool
            .begin_with(BEGIN_IMMEDIATE)
            .await
            .map_err(classify)?;
        // Its children are cancelled with it (a trigger), and theirs.
        let descendants: Vec<String> = sqlx::query_scalar(queries::UNENDED_DESCENDANTS)
            .bind(id.to_string())
            .fetch_all(&mut *tx)
            .await
            .map_err(classify)?;
        let cancelled = sqlx::query(queries::CANCEL_EXECUTION)
            .bind(id.to_string())
            .bind(reason)
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        let execution = execution_in(&mut tx, id).await?;
        tx.commit().await.map_err(classify)?;
        if cancelled.rows_affected() == 0 {
            return Err(already_ended(execution));
        }
        // Whoever holds them (if anyone does) stops their nodes now. No receiver is no error.
        let _ = self.cancelled.send(id);
        for descendant in descendants {
            let _ = self
                .cancelled
                .send(ExecutionId(uuid(&descendant, "child execution")?));
        }
        Ok(execution)
    }

    async fn pause_execution(&self, id: ExecutionId) -> Result<Execution, StoreError> {
        let mut tx = self
            .pool
            .begin_with(BEGIN_IMMEDIATE)
            .await
            .map_err(classify)?;
        let paused = sqlx::query(queries::PAUSE_EXECUTION)
            .bind(id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        let execution = execution_in(&mut tx, id).await?;
        tx.commit().await.map_err(classify)?;
        if paused.rows_affected() == 0 {
            // Paused already, or ended.
            return unchanged_unless_ended(execution);
        }
        Ok(execution)
    }

    async fn resume_execution(&self, id: ExecutionId) -> Result<Execution, StoreError> {
        let mut tx = self
            .pool
            .begin_with(BEGIN_IMMEDIATE)
            .await
            .map_err(classify)?;
        let after: Option<String> = sqlx::query_scalar(queries::RESUME_EXECUTION)
            .bind(id.to_string())
            .fetch_optional(&mut *tx)
            .await
            .map_err(classify)?;
        // As the resume left it, before a worker can claim it.
        let execution = execution_in(&mut tx, id).await?;
        tx.commit().await.map_err(classify)?;
        match after.as_deref() {
            Some("pending") => {
                self.hint();
                Ok(execution)
            }
            Some(_) => Ok(execution),
            None => unchanged_unless_ended(execution),
        }
    }

    async fn retry_execution(&self, params: RetryExecutionParams) -> Result<Execution, StoreError> {
        let id = params.execution_id;
        let key = id.to_string();
        let mut tx = self
            .pool
            .begin_with(BEGIN_IMMEDIATE)
            .await
            .map_err(classify)?;
        let retry: Option<i64> = sqlx::query_scalar(queries::INSERT_RETRY)
            .bind(&key)
            .bind(&params.requested_by)
            .bind(params.from.mode())
            .bind(params.from.node())
            .bind(params.workflow_version)
            .fetch_optional(&mut *tx)
            .await
            .map_err(classify)?;
        let Some(retry) = retry else {
            drop(tx);
            return Err(StoreError::NotRetryable {
                execution_id: id,
                status: self.get_execution(id).await?.execution.status,
            });
        };
        let rerun = Value::from(params.rerun).to_string();
        for supersede in [
            queries::SUPERSEDE_RUNS,
            queries::SUPERSEDE_ITEM_RUNS,
            queries::DETACH_CHILDREN,
        ] {
            sqlx::query(supersede)
                .bind(&key)
                .bind(retry)
                .bind(&rerun)
                .execute(&mut *tx)
                .await
                .map_err(classify)?;
        }
        // Another execution took its business key after it ended.
        let holder: Option<(String, String, String)> = sqlx::query_as(queries::KEY_HOLDER)
            .bind(&key)
            .fetch_optional(&mut *tx)
            .await
            .map_err(classify)?;
        if let Some((holder, workflow_id, business_key)) = holder {
            return Err(StoreError::KeyInUse {
                workflow_id: WorkflowId(uuid(&workflow_id, "workflow")?),
                key: business_key,
                holder: ExecutionId(uuid(&holder, "execution holding a key")?),
            });
        }
        sqlx::query(queries::RESET_FOR_RETRY)
            .bind(&key)
            .bind(params.workflow_version)
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        // As the retry left it, before a worker can claim it.
        let execution = execution_in(&mut tx, id).await?;
        tx.commit().await.map_err(classify)?;
        self.hint();
        Ok(execution)
    }

    async fn time_out_executions(&self) -> Result<DeadlineSweep, StoreError> {
        let mut tx = self
            .pool
            .begin_with(BEGIN_IMMEDIATE)
            .await
            .map_err(classify)?;
        let rows: Vec<(String, String)> = sqlx::query_as(queries::TIME_OUT_EXECUTIONS)
            .fetch_all(&mut *tx)
            .await
            .map_err(classify)?;
        let (now, next_deadline): (i64, Option<i64>) = sqlx::query_as(queries::NEXT_DEADLINE)
            .fetch_one(&mut *tx)
            .await
            .map_err(classify)?;
        let released = release_held_in(&mut tx, None).await?;
        tx.commit().await.map_err(classify)?;
        if released > 0 {
            self.hint();
        }
        Ok(DeadlineSweep {
            released,
            now: time(now, "database clock")?,
            next_deadline: next_deadline.map(|at| time(at, "deadline")).transpose()?,
            timed_out: rows
                .into_iter()
                .map(|(id, workflow_name)| {
                    Ok(TimedOutExecution {
                        id: ExecutionId(uuid(&id, "timed-out execution")?),
                        workflow_name,
                    })
                })
                .collect::<Result<_, StoreError>>()?,
        })
    }

    async fn queue_stats(&self) -> Result<QueueStats, StoreError> {
        let (runnable, oldest_ms, waiting, running, unrunnable): (i64, i64, i64, i64, i64) =
            sqlx::query_as(queries::QUEUE_STATS)
                .fetch_one(&self.pool)
                .await
                .map_err(classify)?;
        let held: Vec<(String, i64)> = sqlx::query_as(queries::HELD_BY_WORKFLOW)
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?;
        Ok(QueueStats {
            runnable: u64::try_from(runnable).unwrap_or_default(),
            oldest_runnable_age: Duration::from_millis(
                u64::try_from(oldest_ms).unwrap_or_default(),
            ),
            waiting: u64::try_from(waiting).unwrap_or_default(),
            running: u64::try_from(running).unwrap_or_default(),
            unrunnable: u64::try_from(unrunnable).unwrap_or_default(),
            held: held
                .into_iter()
                .map(|(name, held)| (name, u64::try_from(held).unwrap_or_default()))
                .collect(),
        })
    }

    async fn age_priorities(
        &self,
        older_than: Duration,
        limit: u32,
    ) -> Result<Vec<AgedExecution>, StoreError> {
        let mut tx = self
            .pool
            .begin_with(BEGIN_IMMEDIATE)
            .await
            .map_err(classify)?;
        let starved: Vec<(String, i32, i32)> = sqlx::query_as(queries::STARVED)
            .bind(millis(older_than))
            .bind(i64::from(limit))
            .fetch_all(&mut *tx)
            .await
            .map_err(classify)?;
        let Some(&(_, _, top)) = starved.first() else {
            return Ok(Vec::new());
        };
        let ids: Vec<&str> = starved.iter().map(|(id, _, _)| id.as_str()).collect();
        sqlx::query(queries::RAISE_PRIORITY)
            .bind(Value::from(ids).to_string())
            .bind(top)
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        tx.commit().await.map_err(classify)?;
        starved
            .into_iter()
            .map(|(id, from, to)| {
                Ok(AgedExecution {
                    id: ExecutionId(uuid(&id, "aged execution")?),
                    from,
                    to,
                })
            })
            .collect()
    }

    async fn take_rate(&self, request: &RateRequest) -> Result<Option<Duration>, StoreError> {
        let mut tx = self
            .pool
            .begin_with(BEGIN_IMMEDIATE)
            .await
            .map_err(classify)?;
        let now: i64 = sqlx::query_scalar(queries::NOW)
            .fetch_one(&mut *tx)
            .await
            .map_err(classify)?;
        let stored: Option<String> = sqlx::query_scalar(queries::RATE_STARTS)
            .bind(&request.name)
            .bind(&request.key)
            .fetch_optional(&mut *tx)
            .await
            .map_err(classify)?;
        let starts: Vec<i64> = match stored {
            Some(text) => serde_json::from_str(&text)
                .map_err(|err| invalid(format!("rate limit \"{}\": {err}", request.name)))?,
            None => Vec::new(),
        };
        let period = millis(request.period).max(1);
        let mut recent: Vec<i64> = starts.into_iter().filter(|&at| at > now - period).collect();
        recent.sort_unstable();
        let limit = usize::try_from(request.limit).unwrap_or(usize::MAX);
        let wait = if recent.len() < limit {
            recent.push(now);
            None
        } else {
            let frees_at = recent[recent.len() - limit] + period;
            Some(Duration::from_millis(
                u64::try_from(frees_at - now).unwrap_or_default().max(1),
            ))
        };
        sqlx::query(queries::SET_RATE_STARTS)
            .bind(&request.name)
            .bind(&request.key)
            .bind(Value::from(recent).to_string())
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        tx.commit().await.map_err(classify)?;
        Ok(wait)
    }

    async fn record_worker(
        &self,
        id: &str,
        node_types: &[String],
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let mut tx = self
            .pool
            .begin_with(BEGIN_IMMEDIATE)
            .await
            .map_err(classify)?;
        sqlx::query(queries::FORGET_WORKERS)
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        sqlx::query(queries::RECORD_WORKER)
            .bind(id)
            .bind(Value::from(node_types.to_vec()).to_string())
            .bind(millis(ttl))
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        tx.commit().await.map_err(classify)
    }

    async fn remove_worker(&self, id: &str) -> Result<(), StoreError> {
        sqlx::query(queries::REMOVE_WORKER)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(classify)?;
        Ok(())
    }

    async fn live_workers(&self) -> Result<Vec<LiveWorker>, StoreError> {
        let rows: Vec<(String, String, i64)> = sqlx::query_as(queries::LIVE_WORKERS)
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?;
        rows.into_iter()
            .map(|(id, node_types, expires_at)| {
                let what = format!("worker {id}");
                Ok(LiveWorker {
                    node_types: serde_json::from_str(&node_types)
                        .map_err(|err| invalid(format!("{what}: node types: {err}")))?,
                    expires_at: time(expires_at, &what)?,
                    id,
                })
            })
            .collect()
    }

    async fn prune_executions(&self, older_than: Duration, limit: u32) -> Result<u64, StoreError> {
        let older_than_ms = i64::try_from(older_than.as_millis()).unwrap_or(i64::MAX);
        let pruned = sqlx::query(queries::PRUNE_EXECUTIONS)
            .bind(older_than_ms)
            .bind(i64::from(limit))
            .execute(&self.pool)
            .await
            .map_err(classify)?;
        Ok(pruned.rows_affected())
    }

    async fn send_signal(&self, params: SendSignalParams) -> Result<Signal, StoreError> {
        // The check that it has not ended and the insert in one immediate transaction, so it
        // cannot end in between.
        let mut tx = self
            .pool
            .begin_with(BEGIN_IMMEDIATE)
            .await
            .map_err(classify)?;
        let status: Option<String> = sqlx::query_scalar(queries::EXECUTION_STATUS)
            .bind(params.execution_id.to_string())
            .fetch_optional(&mut *tx)
            .await
            .map_err(classify)?;
        crate::check_signal_target(params.execution_id, status.as_deref())?;
        let signal = insert_signal_in(
            &mut tx,
            params.execution_id,
            &params.name,
            &params.payload,
            params.idempotency_key.as_deref(),
        )
        .await?;
        tx.commit().await.map_err(classify)?;
        self.hint();
        Ok(signal)
    }

    async fn wakeups(&self) -> Result<Option<Box<dyn Wakeups>>, StoreError> {
        Ok(Some(Box::new(SqliteWakeups {
            hints: self.hints.subscribe(),
            cancelled: self.cancelled.subscribe(),
        })))
    }

    async fn now(&self) -> Result<DateTime<Utc>, StoreError> {
        let now: i64 = sqlx::query_scalar(queries::NOW)
            .fetch_one(&self.pool)
            .await
            .map_err(classify)?;
        time(now, "database clock")
    }

    async fn create_schedule(&self, params: CreateScheduleParams) -> Result<Schedule, StoreError> {
        let id = ScheduleId(Uuid::new_v4());
        let (workflow_id, name) = workflow_key(&params.workflow);
        let created = sqlx::query(queries::CREATE_SCHEDULE)
            .bind(id.to_string())
            .bind(workflow_id)
            .bind(name)
            .bind(&params.cron)
            .bind(&params.timezone)
            .bind(to_text(&params.input))
            .bind(i64::from(params.catch_up))
            .bind(ms(params.next_fire_at))
            .execute(&self.pool)
            .await
            .map_err(classify)?;
        if created.rows_affected() == 0 {
            return Err(workflow_not_found(&params.workflow));
        }
        self.hint();
        self.schedule(id).await
    }

    async fn list_schedules(&self) -> Result<Vec<Schedule>, StoreError> {
        let rows: Vec<ScheduleRow> = sqlx::query_as(queries::LIST_SCHEDULES)
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?;
        convert(rows)
    }

    async fn get_schedule(&self, id: ScheduleId) -> Result<Schedule, StoreError> {
        self.schedule(id).await
    }

    async fn pause_schedule(&self, id: ScheduleId) -> Result<Schedule, StoreError> {
        let updated = sqlx::query(queries::PAUSE_SCHEDULE)
            .bind(id.to_string())
            .execute(&self.pool)
            .await
            .map_err(classify)?;
        if updated.rows_affected() == 0 {
            return Err(schedule_not_found(id));
        }
        self.schedule(id).await
    }

    async fn resume_schedule(
        &self,
        id: ScheduleId,
        next_fire_at: Option<DateTime<Utc>>,
    ) -> Result<Schedule, StoreError> {
        let updated = sqlx::query(queries::RESUME_SCHEDULE)
            .bind(id.to_string())
            .bind(next_fire_at.map(ms))
            .execute(&self.pool)
            .await
            .map_err(classify)?;
        if updated.rows_affected() > 0 {
            self.hint();
        }
        // Not found, or enabled already and left as it was.
        self.schedule(id).await
    }

    async fn delete_schedule(&self, id: ScheduleId) -> Result<(), StoreError> {
        let deleted = sqlx::query(queries::DELETE_SCHEDULE)
            .bind(id.to_string())
            .execute(&self.pool)
            .await
            .map_err(classify)?;
        if deleted.rows_affected() == 0 {
            return Err(schedule_not_found(id));
        }
        Ok(())
    }

    async fn trigger_schedule(&self, id: ScheduleId) -> Result<Execution, StoreError> {
        let started: Option<String> = sqlx::query_scalar(queries::TRIGGER_SCHEDULE)
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)?;
        let started = started.ok_or_else(|| schedule_not_found(id))?;
        self.hint();
        let started = ExecutionId(uuid(&started, "execution")?);
        Ok(self.get_execution(started).await?.execution)
    }

    async fn due_schedules(&self, limit: u32) -> Result<DueSchedules, StoreError> {
        let (now, next_at): (i64, Option<i64>) = sqlx::query_as(queries::NEXT_SCHEDULE_TICK)
            .fetch_one(&self.pool)
            .await
            .map_err(classify)?;
        let rows: Vec<ScheduleRow> = sqlx::query_as(queries::DUE_SCHEDULES)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?;
        Ok(DueSchedules {
            now: time(now, "database clock")?,
            due: convert(rows)?,
            next_at: optional_time(next_at, "next schedule tick")?,
        })
    }

    async fn fire_schedule(&self, params: FireScheduleParams) -> Result<u32, StoreError> {
        let id = params.schedule_id.to_string();
        let mut tx = self
            .pool
            .begin_with(BEGIN_IMMEDIATE)
            .await
            .map_err(classify)?;
        let advanced: Option<(String, String)> = sqlx::query_as(queries::ADVANCE_SCHEDULE)
            .bind(&id)
            .bind(params.expected_next_fire_at.map(ms))
            .bind(params.next_fire_at.map(ms))
            .bind(params.ticks.iter().max().copied().map(ms))
            .fetch_optional(&mut *tx)
            .await
            .map_err(classify)?;
        let Some((workflow_id, input)) = advanced else {
            // Another worker fired it first, or it was paused: nothing to do.
            return Ok(0);
        };
        let mut started = 0;
        for tick in &params.ticks {
            let inserted = sqlx::query(queries::START_SCHEDULED)
                .bind(&id)
                .bind(&workflow_id)
                .bind(&input)
                .bind(ms(*tick))
                .execute(&mut *tx)
                .await
                .map_err(classify)?;
            started += u32::try_from(inserted.rows_affected()).unwrap_or(0);
        }
        tx.commit().await.map_err(classify)?;
        Ok(started)
    }

    async fn get_execution(&self, id: ExecutionId) -> Result<ExecutionDetail, StoreError> {
        let key = id.to_string();
        let row: Option<ExecutionRow> = sqlx::query_as(queries::GET_EXECUTION)
            .bind(&key)
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)?;
        let execution = row
            .ok_or_else(|| StoreError::NotFound {
                entity: "execution",
                id: key.clone(),
            })?
            .try_into()?;
        let runs: Vec<NodeRunRow> = sqlx::query_as(queries::NODE_RUNS_OF)
            .bind(&key)
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?;
        let signals: Vec<SignalRow> = sqlx::query_as(queries::SIGNALS_OF)
            .bind(&key)
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?;
        let retries: Vec<RetryRow> = sqlx::query_as(queries::RETRIES_OF)
            .bind(&key)
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?;
        let children: Vec<ChildRow> = sqlx::query_as(queries::CHILDREN_OF)
            .bind(&key)
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?;
        let item_runs: Vec<ItemRunRow> = sqlx::query_as(queries::ITEM_RUNS_OF)
            .bind(&key)
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?;
        Ok(ExecutionDetail {
            execution,
            node_runs: convert(runs)?,
            signals: convert(signals)?,
            retries: convert(retries)?,
            children: convert(children)?,
            item_runs: convert(item_runs)?,
        })
    }

    async fn list_executions(
        &self,
        params: ListExecutionsParams,
    ) -> Result<Vec<Execution>, StoreError> {
        let (workflow_id, workflow_name) = match &params.workflow {
            Some(workflow) => workflow_key(workflow),
            None => (None, None),
        };
        let shape = queries::ListShape {
            status: params.status.map(ExecutionStatus::as_str),
            workflow: match (&workflow_id, workflow_name) {
                (Some(_), _) => Some(queries::WorkflowKey::Id),
                (None, Some(_)) => Some(queries::WorkflowKey::Name),
                (None, None) => None,
            },
            cursor: params.before.is_some(),
        };
        let sql = queries::list_executions(shape);
        let mut query = sqlx::query_as(sqlx::AssertSqlSafe(sql));
        if let Some(status) = shape.status {
            query = query.bind(status);
        }
        if let Some(id) = workflow_id {
            query = query.bind(id);
        } else if let Some(name) = workflow_name {
            query = query.bind(name);
        }
        if let Some(cursor) = params.before {
            query = query
                .bind(cursor.created_at.timestamp_millis())
                .bind(cursor.id.to_string());
        }
        let rows: Vec<ExecutionRow> = query
            .bind(i64::from(params.limit))
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?;
        convert(rows)
    }

    async fn matching_executions(
        &self,
        filter: &ExecutionFilter,
        after: Option<ExecutionId>,
        limit: u32,
    ) -> Result<Vec<ExecutionId>, StoreError> {
        let ids: Vec<String> =
            bind_filter!(sqlx::query_scalar(queries::MATCHING_EXECUTIONS), filter)
                .bind(after.map(|id| id.to_string()))
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await
                .map_err(classify)?;
        ids.iter()
            .map(|id| uuid(id, "execution").map(ExecutionId))
            .collect()
    }

    async fn delete_executions(
        &self,
        ids: &[ExecutionId],
        filter: &ExecutionFilter,
    ) -> Result<u64, StoreError> {
        let ids: Vec<String> = ids.iter().map(ExecutionId::to_string).collect();
        let deleted = bind_filter!(sqlx::query(queries::DELETE_EXECUTIONS), filter)
            .bind(Value::from(ids).to_string())
            .execute(&self.pool)
            .await
            .map_err(classify)?;
        Ok(deleted.rows_affected())
    }
}

/// An [`ExecutionFilter`] as `$1` to `$6` of [`queries::MATCHING_EXECUTIONS`] and
/// [`queries::DELETE_EXECUTIONS`].
macro_rules! bind_filter {
    ($query:expr, $filter:expr) => {{
        let filter: &ExecutionFilter = $filter;
        let (workflow_id, workflow_name) = match &filter.workflow {
            Some(workflow) => workflow_key(workflow),
            None => (None, None),
        };
        let statuses = (!filter.statuses.is_empty()).then(|| {
            let names: Vec<&str> = filter.statuses.iter().map(|s| s.as_str()).collect();
            Value::from(names).to_string()
        });
        $query
            .bind(statuses)
            .bind(workflow_id)
            .bind(workflow_name)
            .bind(filter.created_before.map(ms))
            .bind(filter.created_after.map(ms))
            .bind(filter.error_contains.clone())
    }};
}
use bind_filter;
