//! [`PgStore`]: the production store, for many workers on many machines.
//!
//! Claims use `for update skip locked` in one statement, so any number of workers can poll
//! one database. Leases and fencing follow the [`Store`] contract; all time is the database's
//! `now()`. The schema (`migrations/postgres/`) is a public contract documented in the README:
//! other programs may start executions with a plain `insert into workflow_executions`.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool};
use sqlx::{Connection, FromRow};
use uuid::Uuid;
use workflow_worker_core::flow::RateRequest;
use workflow_worker_core::node::child_signal;
use workflow_worker_core::store::{
    Advance, AgedExecution, ClaimParams, ClaimedExecution, CreateScheduleParams, DeadlineSweep,
    DueSchedules, ExecutionFilter, FireScheduleParams, NewItemRun, NewNodeRun, RecordStep,
    RescueFilter, RetryExecutionParams, StartChildParams, StartedChild, StepRecorded,
    TimedOutExecution, Wakeup, Wakeups,
};
use workflow_worker_core::{
    ChildExecution, Execution, ExecutionDetail, ExecutionId, ExecutionRetry, ExecutionStatus,
    ItemRun, LeaseToken, ListExecutionsParams, LiveWorker, NodeRun, NodeRunStatus, QueueStats,
    RetryFrom, Schedule, ScheduleId, SendSignalParams, Signal, SignalId, SignalWithStartParams,
    SignalledExecution, StartExecutionParams, StartedExecution, Store, StoreError,
    WorkflowDefinition, WorkflowGraph, WorkflowId, WorkflowRef, WorkflowSummary, WorkflowVersion,
};

use crate::error::{already_ended, classify, invalid, unchanged_unless_ended};

mod connection;
mod migrate;
mod queries;

pub use connection::{
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_MAX_CONNECTIONS, DEFAULT_STATEMENT_TIMEOUT, PING_IF_IDLE_FOR,
    PgStoreOptions, PoolerMode,
};

use connection::Db;

pub(crate) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// The channel workers LISTEN on for wake-up hints. Triggers send on it when executions are
/// inserted (once per statement, not per row), when a signal wakes a waiting execution, and
/// when a worker releases one on shutdown.
pub const WAKEUP_CHANNEL: &str = "workflow_worker_wakeup";

/// The channel workers LISTEN on to learn that an execution they run was cancelled: a trigger
/// (migration 0013) sends the execution's id when a running execution under a lease is
/// cancelled, so its holder stops its nodes at once rather than at its next heartbeat.
pub const CANCELLED_CHANNEL: &str = "workflow_execution_cancelled";

/// A [`Store`] on PostgreSQL.
#[derive(Debug, Clone)]
pub struct PgStore {
    db: Db,
    /// Where migrations connect: the same server, without the statement timeout.
    migrate_options: Arc<PgConnectOptions>,
    connect_timeout: Duration,
}

impl PgStore {
    /// Connects to the database at `url` (`postgres://user:password@host:port/database`,
    /// with libpq's parameters such as `sslmode`) with [`PgStoreOptions::default`]. Does not
    /// migrate.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, PgStoreOptions::default()).await
    }

    /// Connects to the database at `url` with `options`. Does not migrate.
    ///
    /// One connection is made at once, so a wrong password, an unknown database or a server
    /// that does not answer within the connect timeout fails here with the cause.
    pub async fn connect_with(url: &str, options: PgStoreOptions) -> Result<Self, StoreError> {
        let target = connection::parse(url, &options).map_err(classify)?;
        let connect_timeout = options.get_connect_timeout();
        // One direct connection first: it fails at once with the real cause (refused,
        // authentication, unknown database) where the pool would retry until its timeout.
        let probe = connect_within(&target.connect, connect_timeout).await?;
        probe.close().await.map_err(classify)?;
        if target.transaction_pooler {
            tracing::info!(
                "transaction-mode pooler: statements unprepared, each in a transaction; \
                 no wake-ups (workers poll)"
            );
        }
        let pool = connection::pool_options(options.max_connections_value(), connect_timeout)
            .connect_lazy_with(target.connect);
        Ok(Self {
            db: Db::new(
                pool,
                target.transaction_pooler,
                options.statement_timeout_value(),
            ),
            migrate_options: Arc::new(target.migrate),
            connect_timeout,
        })
    }

    /// Wraps an existing pool of direct connections (no transaction pooler in between); size
    /// it for the worker's concurrency plus a few connections.
    pub fn from_pool(pool: PgPool) -> Self {
        let migrate_options = Arc::new(pool.connect_options().as_ref().clone());
        Self {
            db: Db::new(pool, false, None),
            migrate_options,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        }
    }

    /// The underlying pool.
    pub fn pool(&self) -> &PgPool {
        &self.db.pool
    }

    /// Whether statements go the way a transaction-mode pooler needs (see [`PoolerMode`]).
    pub fn behind_transaction_pooler(&self) -> bool {
        self.db.transaction_pooler
    }

    /// Applies the embedded migrations that are not yet applied, all in one transaction,
    /// recording them in [`MIGRATIONS_TABLE`](crate::MIGRATIONS_TABLE). Safe to run from several workers at once (they
    /// take turns on an advisory lock) and through a transaction-mode pooler.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let mut conn = connect_within(&self.migrate_options, self.connect_timeout).await?;
        let migrated = migrate::run(&mut conn, &MIGRATOR).await;
        let _ = conn.close().await;
        migrated.map_err(|err| StoreError::Migration(Box::new(err)))
    }

    /// The schema version the database has (the newest applied migration; `None` for an
    /// empty database) and the one this build needs.
    pub async fn schema_version(&self) -> Result<crate::SchemaVersion, StoreError> {
        Ok(crate::SchemaVersion {
            applied: migrate::applied_version(&self.db).await.map_err(classify)?,
            required: crate::latest_version(&MIGRATOR),
        })
    }
}

/// Opens one connection, failing as unavailable when it takes longer than `timeout`.
async fn connect_within(
    options: &PgConnectOptions,
    timeout: Duration,
) -> Result<PgConnection, StoreError> {
    match tokio::time::timeout(timeout, PgConnection::connect_with(options)).await {
        Ok(connected) => connected.map_err(classify),
        Err(_) => Err(StoreError::Unavailable(
            format!(
                "no answer from {}:{} within {} (connect timeout)",
                options.get_host(),
                options.get_port(),
                humanize(timeout)
            )
            .into(),
        )),
    }
}

fn humanize(duration: Duration) -> String {
    if duration.subsec_millis() == 0 {
        format!("{}s", duration.as_secs())
    } else {
        format!("{:.1}s", duration.as_secs_f64())
    }
}

#[derive(FromRow)]
struct WorkflowRow {
    workflow_id: Uuid,
    name: String,
    version: i32,
    definition: Value,
    created_at: DateTime<Utc>,
}

impl TryFrom<WorkflowRow> for WorkflowVersion {
    type Error = StoreError;

    fn try_from(row: WorkflowRow) -> Result<Self, StoreError> {
        let definition =
            serde_json::from_value::<WorkflowDefinition>(row.definition).map_err(|err| {
                invalid(format!(
                    "workflow \"{}\" version {}: {err}",
                    row.name, row.version
                ))
            })?;
        Ok(Self {
            workflow_id: WorkflowId(row.workflow_id),
            name: row.name,
            version: row.version,
            definition,
            created_at: row.created_at,
        })
    }
}

#[derive(FromRow)]
struct ExecutionRow {
    id: Uuid,
    workflow_id: Uuid,
    workflow_name: String,
    workflow_version: i32,
    status: String,
    input: String,
    output: Option<String>,
    error: Option<String>,
    priority: i32,
    run_at: Option<DateTime<Utc>>,
    deadline: Option<DateTime<Utc>>,
    schedule_id: Option<Uuid>,
    scheduled_for: Option<DateTime<Utc>>,
    lease_owner: Option<String>,
    lease_expires_at: Option<DateTime<Utc>>,
    lease_token: i64,
    rescue_count: i32,
    created_at: DateTime<Utc>,
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
    pause_requested_at: Option<DateTime<Utc>>,
    key: Option<String>,
    parent_execution_id: Option<Uuid>,
    parent_node_id: Option<String>,
    parent_item: Option<i32>,
    parent_attempt: Option<i32>,
    depth: i32,
    concurrency_key: Option<String>,
    held_since: Option<DateTime<Utc>>,
}

impl ExecutionRow {
    /// The execution, and what of it could not be read (read as `null`).
    fn read(self) -> Result<(Execution, Option<String>), StoreError> {
        let (input, output, defect) =
            crate::lenient_input_output(&self.input, self.output.as_deref());
        let execution = Execution {
            status: ExecutionStatus::from_str(&self.status)
                .map_err(|err| invalid(format!("execution {}: {err}", self.id)))?,
            id: ExecutionId(self.id),
            workflow_id: WorkflowId(self.workflow_id),
            workflow_name: self.workflow_name,
            workflow_version: self.workflow_version,
            input,
            output,
            error: self.error,
            priority: self.priority,
            run_at: self.run_at,
            deadline: self.deadline,
            schedule_id: self.schedule_id.map(ScheduleId),
            scheduled_for: self.scheduled_for,
            lease_owner: self.lease_owner,
            lease_expires_at: self.lease_expires_at,
            lease_token: LeaseToken(self.lease_token),
            rescue_count: self.rescue_count,
            created_at: self.created_at,
            started_at: self.started_at,
            finished_at: self.finished_at,
            pause_requested_at: self.pause_requested_at,
            key: self.key,
            parent: crate::parent_of(
                self.parent_execution_id,
                self.parent_node_id,
                self.parent_item,
                self.parent_attempt,
            ),
            depth: u32::try_from(self.depth).unwrap_or_default(),
            concurrency_key: self.concurrency_key,
            held_since: self.held_since,
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
    execution_id: Uuid,
    node_id: String,
    node_type: String,
    attempt: i32,
    status: String,
    input: Option<Value>,
    output: Option<Value>,
    branch: Option<String>,
    error: Option<String>,
    worker_id: Option<String>,
    started_at: DateTime<Utc>,
    finished_at: DateTime<Utc>,
    superseded_by: Option<i64>,
}

impl TryFrom<NodeRunRow> for NodeRun {
    type Error = StoreError;

    fn try_from(row: NodeRunRow) -> Result<Self, StoreError> {
        Ok(Self {
            status: NodeRunStatus::from_str(&row.status).map_err(|err| {
                invalid(format!(
                    "execution {} node \"{}\": {err}",
                    row.execution_id, row.node_id
                ))
            })?,
            execution_id: ExecutionId(row.execution_id),
            node_id: row.node_id,
            node_type: row.node_type,
            attempt: row.attempt,
            input: row.input,
            output: row.output,
            branch: row.branch,
            error: row.error,
            worker_id: row.worker_id,
            started_at: row.started_at,
            finished_at: row.finished_at,
            superseded_by: row.superseded_by,
        })
    }
}

#[derive(FromRow)]
struct ItemRunRow {
    execution_id: Uuid,
    node_id: String,
    item: i32,
    node_type: String,
    attempt: i32,
    status: String,
    input: Option<Value>,
    output: Option<Value>,
    error: Option<String>,
    fatal: bool,
    worker_id: Option<String>,
    started_at: DateTime<Utc>,
    finished_at: DateTime<Utc>,
}

impl TryFrom<ItemRunRow> for ItemRun {
    type Error = StoreError;

    fn try_from(row: ItemRunRow) -> Result<Self, StoreError> {
        Ok(Self {
            status: NodeRunStatus::from_str(&row.status).map_err(|err| {
                invalid(format!(
                    "execution {} node \"{}\" item {}: {err}",
                    row.execution_id, row.node_id, row.item
                ))
            })?,
            execution_id: ExecutionId(row.execution_id),
            node_id: row.node_id,
            item: u32::try_from(row.item).unwrap_or_default(),
            node_type: row.node_type,
            attempt: u32::try_from(row.attempt).unwrap_or_default(),
            input: row.input,
            output: row.output,
            error: row.error,
            fatal: row.fatal,
            worker_id: row.worker_id,
            started_at: row.started_at,
            finished_at: row.finished_at,
        })
    }
}

#[derive(FromRow)]
struct RetryRow {
    id: i64,
    requested_by: String,
    requested_at: DateTime<Utc>,
    from_status: String,
    mode: String,
    from_node: Option<String>,
    workflow_version: i32,
}

impl TryFrom<RetryRow> for ExecutionRetry {
    type Error = StoreError;

    fn try_from(row: RetryRow) -> Result<Self, StoreError> {
        let what = || format!("retry {}", row.id);
        Ok(Self {
            from_status: row
                .from_status
                .parse()
                .map_err(|err| invalid(format!("{}: {err}", what())))?,
            from: RetryFrom::from_parts(&row.mode, row.from_node.clone())
                .ok_or_else(|| invalid(format!("{}: unknown mode \"{}\"", what(), row.mode)))?,
            id: row.id,
            requested_by: row.requested_by,
            requested_at: row.requested_at,
            workflow_version: row.workflow_version,
        })
    }
}

#[derive(FromRow)]
struct ClaimRow {
    previous_status: String,
    #[sqlx(flatten)]
    execution: ExecutionRow,
}

#[derive(FromRow)]
struct ChildRow {
    id: Uuid,
    workflow_name: String,
    status: String,
    parent_node_id: String,
    parent_item: Option<i32>,
    parent_attempt: i32,
    detached_by_retry: Option<i64>,
    created_at: DateTime<Utc>,
}

impl TryFrom<ChildRow> for ChildExecution {
    type Error = StoreError;

    fn try_from(row: ChildRow) -> Result<Self, StoreError> {
        Ok(ChildExecution {
            status: ExecutionStatus::from_str(&row.status)
                .map_err(|err| invalid(format!("execution {}: {err}", row.id)))?,
            id: ExecutionId(row.id),
            workflow_name: row.workflow_name,
            node_id: row.parent_node_id,
            item: row.parent_item.and_then(|item| u32::try_from(item).ok()),
            attempt: u32::try_from(row.parent_attempt).unwrap_or_default(),
            detached_by_retry: row.detached_by_retry,
            created_at: row.created_at,
        })
    }
}

#[derive(FromRow)]
struct SignalRow {
    id: i64,
    execution_id: Uuid,
    name: String,
    payload: String,
    idempotency_key: Option<String>,
    created_at: DateTime<Utc>,
    consumed_at: Option<DateTime<Utc>>,
    consumed_by_node: Option<String>,
}

impl SignalRow {
    /// The signal, and what of it could not be read (read as `null`).
    fn read(self) -> (Signal, Option<String>) {
        let (payload, defect) =
            crate::lenient_json(&self.payload, &format!("signal {} payload", self.id));
        let signal = Signal {
            id: SignalId(self.id),
            execution_id: ExecutionId(self.execution_id),
            name: self.name,
            payload,
            idempotency_key: self.idempotency_key,
            created_at: self.created_at,
            consumed_at: self.consumed_at,
            consumed_by_node: self.consumed_by_node,
        };
        (signal, defect)
    }
}

impl TryFrom<SignalRow> for Signal {
    type Error = StoreError;

    fn try_from(row: SignalRow) -> Result<Self, StoreError> {
        Ok(row.read().0)
    }
}

#[derive(FromRow)]
struct ScheduleRow {
    id: Uuid,
    workflow_id: Uuid,
    workflow_name: String,
    cron: String,
    timezone: String,
    input: Value,
    enabled: bool,
    catch_up: i32,
    next_fire_at: Option<DateTime<Utc>>,
    last_fire_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
}

impl TryFrom<ScheduleRow> for Schedule {
    type Error = StoreError;

    fn try_from(row: ScheduleRow) -> Result<Self, StoreError> {
        Ok(Self {
            id: ScheduleId(row.id),
            workflow_id: WorkflowId(row.workflow_id),
            workflow_name: row.workflow_name,
            cron: row.cron,
            timezone: row.timezone,
            input: row.input,
            enabled: row.enabled,
            catch_up: u32::try_from(row.catch_up)
                .map_err(|_| invalid(format!("schedule {}: catch_up {}", row.id, row.catch_up)))?,
            next_fire_at: row.next_fire_at,
            last_fire_at: row.last_fire_at,
            created_at: row.created_at,
        })
    }
}

fn schedule_not_found(id: ScheduleId) -> StoreError {
    StoreError::NotFound {
        entity: "schedule",
        id: id.to_string(),
    }
}

fn convert<R, T: TryFrom<R, Error = StoreError>>(rows: Vec<R>) -> Result<Vec<T>, StoreError> {
    rows.into_iter().map(T::try_from).collect()
}

/// `(id, name)` parameters for queries that name a workflow either way.
fn workflow_key(workflow: &WorkflowRef) -> (Option<Uuid>, Option<&str>) {
    match workflow {
        WorkflowRef::Id(id) => (Some(id.0), None),
        WorkflowRef::Name(name) => (None, Some(name.as_str())),
    }
}

/// A workflow as the SQL API's functions take it: its id, or its name.
fn workflow_text(workflow: &WorkflowRef) -> String {
    match workflow {
        WorkflowRef::Id(id) => id.to_string(),
        WorkflowRef::Name(name) => name.clone(),
    }
}

/// An error of a SQL API function that starts an execution of `workflow`: an unknown workflow
/// raises `no_data_found`.
fn sql_api_error(err: sqlx::Error, workflow: &WorkflowRef) -> StoreError {
    match &err {
        sqlx::Error::Database(db) if db.code().as_deref() == Some("P0002") => {
            workflow_not_found(workflow)
        }
        _ => classify(err),
    }
}

fn workflow_not_found(workflow: &WorkflowRef) -> StoreError {
    StoreError::NotFound {
        entity: "workflow",
        id: workflow.to_string(),
    }
}

/// How many claim statements one claim sends at most while they hold back executions.
const MAX_CLAIM_ROUNDS: usize = 4;

impl PgStore {
    /// One claim statement: the executions claimed, and how many it held back instead.
    async fn claim_round(
        &self,
        params: &ClaimParams,
    ) -> Result<(Vec<ClaimedExecution>, usize), StoreError> {
        let sql = match params.rescues {
            RescueFilter::SuspectFirst(_) => queries::CLAIM_SUSPECT_FIRST,
            _ => queries::CLAIM_EXECUTIONS,
        };
        let claim = sqlx::query_as(sql)
            .bind(i64::from(params.limit))
            .bind(&params.worker_id)
            .bind(params.lease_duration.as_secs_f64());
        let node_types = params
            .node_types
            .as_ref()
            .map(|types| Value::from(types.clone()));
        let claim = match params.rescues {
            RescueFilter::SuspectFirst(threshold) => claim.bind(threshold).bind(node_types),
            rescues => {
                let (not_suspect_below, suspect_from) = rescues.thresholds();
                claim
                    .bind(not_suspect_below)
                    .bind(suspect_from)
                    .bind(node_types)
            }
        };
        let rows: Vec<ClaimRow> = claim.fetch_all(&self.db).await.map_err(classify)?;
        // The rows the statement held back instead of claiming (their group was full) come
        // back as they were, not running.
        let (rows, held): (Vec<ClaimRow>, Vec<ClaimRow>) = rows
            .into_iter()
            .partition(|row| row.execution.status == ExecutionStatus::Running.as_str());
        if rows.is_empty() {
            return Ok((Vec::new(), held.len()));
        }
        // Only executions woken from waiting need their signals.
        let woken: Vec<Uuid> = rows
            .iter()
            .filter(|row| row.previous_status == ExecutionStatus::Waiting.as_str())
            .map(|row| row.execution.id)
            .collect();
        let executions: Vec<(Execution, Option<String>)> = rows
            .into_iter()
            .map(|row| row.execution.read())
            .collect::<Result<_, _>>()?;
        // Node runs are only ever written under a claim, so a first claim has none to read.
        let resumed: Vec<Uuid> = executions
            .iter()
            .filter(|(e, _)| e.lease_token > LeaseToken(1))
            .map(|(e, _)| e.id.0)
            .collect();
        let runs: Vec<NodeRunRow> = if resumed.is_empty() {
            Vec::new()
        } else {
            sqlx::query_as(queries::NODE_RUNS_OF_MANY)
                .bind(resumed)
                .fetch_all(&self.db)
                .await
                .map_err(classify)?
        };
        let signals: Vec<SignalRow> = if woken.is_empty() {
            Vec::new()
        } else {
            sqlx::query_as(queries::PENDING_SIGNALS_OF_MANY)
                .bind(woken)
                .fetch_all(&self.db)
                .await
                .map_err(classify)?
        };
        let claims = crate::assemble_claims(
            executions,
            convert(runs)?,
            signals.into_iter().map(SignalRow::read).collect(),
        );
        Ok((claims, held.len()))
    }
}

#[async_trait]
impl Store for PgStore {
    async fn save_workflow(&self, graph: &WorkflowGraph) -> Result<WorkflowVersion, StoreError> {
        let definition = graph.definition();
        let json = serde_json::to_value(definition)
            .map_err(|err| invalid(format!("workflow \"{}\": {err}", definition.name)))?;
        let mut tx = self.db.begin().await.map_err(classify)?;
        let row: WorkflowRow = sqlx::query_as(queries::SAVE_WORKFLOW)
            .bind(&definition.name)
            .bind(json)
            .fetch_one(&mut tx)
            .await
            .map_err(classify)?;
        // The new version may raise the workflow's limit, or drop it: let go what it allows.
        sqlx::query(queries::RELEASE_HELD)
            .bind(row.workflow_id)
            .execute(&mut tx)
            .await
            .map_err(classify)?;
        tx.commit().await.map_err(classify)?;
        row.try_into()
    }

    async fn get_workflow(&self, workflow: &WorkflowRef) -> Result<WorkflowVersion, StoreError> {
        let (id, name) = workflow_key(workflow);
        let row: Option<WorkflowRow> = sqlx::query_as(queries::GET_WORKFLOW)
            .bind(id)
            .bind(name)
            .fetch_optional(&self.db)
            .await
            .map_err(classify)?;
        row.ok_or_else(|| workflow_not_found(workflow))?.try_into()
    }

    async fn list_workflows(&self) -> Result<Vec<WorkflowSummary>, StoreError> {
        let rows: Vec<(Uuid, String, i32, DateTime<Utc>, DateTime<Utc>)> =
            sqlx::query_as(queries::LIST_WORKFLOWS)
                .fetch_all(&self.db)
                .await
                .map_err(classify)?;
        Ok(rows
            .into_iter()
            .map(
                |(id, name, latest_version, created_at, updated_at)| WorkflowSummary {
                    workflow_id: WorkflowId(id),
                    name,
                    latest_version,
                    created_at,
                    updated_at,
                },
            )
            .collect())
    }

    async fn get_workflow_version(
        &self,
        workflow_id: WorkflowId,
        version: i32,
    ) -> Result<WorkflowVersion, StoreError> {
        let row: Option<WorkflowRow> = sqlx::query_as(queries::GET_WORKFLOW_VERSION)
            .bind(workflow_id.0)
            .bind(version)
            .fetch_optional(&self.db)
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
        if params.key.is_some() {
            let (id, created): (Uuid, bool) = sqlx::query_as(queries::START_OR_GET)
                .bind(workflow_text(&params.workflow))
                .bind(&params.input)
                .bind(params.timeout.map(|t| t.as_secs_f64()))
                .bind(params.priority)
                .bind(&params.key)
                .bind(params.key_reuse.as_str())
                .bind(&params.concurrency_key)
                .fetch_one(&self.db)
                .await
                .map_err(|err| sql_api_error(err, &params.workflow))?;
            let execution = self.execution_row(ExecutionId(id)).await?;
            return Ok(StartedExecution { execution, created });
        }
        // Without a key, one statement that returns the row it inserted.
        let (id, name) = workflow_key(&params.workflow);
        let row: Option<ExecutionRow> = sqlx::query_as(queries::START_EXECUTION)
            .bind(id)
            .bind(name)
            .bind(&params.input)
            .bind(params.priority)
            .bind(params.timeout.map(|t| t.as_secs_f64()))
            .bind(&params.concurrency_key)
            .fetch_optional(&self.db)
            .await
            .map_err(classify)?;
        let execution = row
            .ok_or_else(|| workflow_not_found(&params.workflow))?
            .try_into()?;
        Ok(StartedExecution {
            execution,
            created: true,
        })
    }

    async fn start_child_execution(
        &self,
        params: StartChildParams,
    ) -> Result<StartedChild, StoreError> {
        let (id, name) = workflow_key(&params.workflow);
        let parent = &params.parent;
        let attempt = i32::try_from(parent.attempt).unwrap_or(i32::MAX);
        let item = parent
            .item
            .map(|item| i32::try_from(item).unwrap_or(i32::MAX));
        // Under the parent's row lock, held only by a worker with its lease: the child of an
        // attempt is looked for, then started, with no other start in between.
        let mut tx = self.db.begin().await.map_err(classify)?;
        let held: Option<Uuid> = sqlx::query_scalar(queries::HOLD_PARENT)
            .bind(parent.execution_id.0)
            .bind(params.lease_token.0)
            .fetch_optional(&mut tx)
            .await
            .map_err(classify)?;
        if held.is_none() {
            return Err(StoreError::LeaseLost {
                execution_id: parent.execution_id,
                lease_token: params.lease_token,
            });
        }
        let existing: Option<ExecutionRow> = sqlx::query_as(queries::CHILD_OF)
            .bind(parent.execution_id.0)
            .bind(&parent.node_id)
            .bind(attempt)
            .bind(item)
            .fetch_optional(&mut tx)
            .await
            .map_err(classify)?;
        if let Some(existing) = existing {
            let execution: Execution = existing.try_into()?;
            // The child's end stored its signal in the same transaction as its status, so
            // this statement, with a snapshot taken after the one that read it ended, sees it.
            let end_signal: Option<i64> = if execution.status.is_terminal() {
                sqlx::query_scalar(queries::PENDING_SIGNAL_NAMED)
                    .bind(parent.execution_id.0)
                    .bind(child_signal(execution.id))
                    .fetch_optional(&mut tx)
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
        let started: Option<ExecutionRow> = sqlx::query_as(queries::START_CHILD_EXECUTION)
            .bind(id)
            .bind(name)
            .bind(&params.input)
            .bind(params.priority)
            .bind(parent.execution_id.0)
            .bind(&parent.node_id)
            .bind(attempt)
            .bind(i32::try_from(params.depth).unwrap_or(i32::MAX))
            .bind(item)
            .fetch_optional(&mut tx)
            .await
            .map_err(classify)?;
        let Some(started) = started else {
            return Err(workflow_not_found(&params.workflow));
        };
        tx.commit().await.map_err(classify)?;
        Ok(StartedChild {
            execution: started.try_into()?,
            created: true,
            end_signal: None,
        })
    }

    async fn signal_with_start(
        &self,
        params: SignalWithStartParams,
    ) -> Result<SignalledExecution, StoreError> {
        let key = params.checked_key()?;
        let start = &params.start;
        let sent: Result<(Uuid, i64, bool), sqlx::Error> =
            sqlx::query_as(queries::SIGNAL_WITH_START)
                .bind(workflow_text(&start.workflow))
                .bind(key)
                .bind(&params.name)
                .bind(&params.payload)
                .bind(&start.input)
                .bind(&params.idempotency_key)
                .bind(start.key_reuse.as_str())
                .bind(start.timeout.map(|t| t.as_secs_f64()))
                .bind(start.priority)
                .bind(&start.concurrency_key)
                .fetch_one(&self.db)
                .await;
        let (id, signal_id, created) = match sent {
            Ok(sent) => sent,
            // The key's execution ended and the key is not reused: say which it is.
            Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("55000") => {
                let workflow = self.get_workflow(&start.workflow).await?.workflow_id;
                let row: Option<ExecutionRow> = sqlx::query_as(queries::EXECUTION_BY_KEY)
                    .bind(workflow.0)
                    .bind(key)
                    .fetch_optional(&self.db)
                    .await
                    .map_err(classify)?;
                let ended: Execution = row
                    .ok_or_else(|| StoreError::NotFound {
                        entity: "execution with key",
                        id: key.to_owned(),
                    })?
                    .try_into()?;
                return Err(already_ended(ended));
            }
            Err(err) => return Err(sql_api_error(err, &start.workflow)),
        };
        let execution = self.execution_row(ExecutionId(id)).await?;
        let signal: SignalRow = sqlx::query_as(queries::SIGNAL_BY_ID)
            .bind(signal_id)
            .fetch_one(&self.db)
            .await
            .map_err(classify)?;
        Ok(SignalledExecution {
            started: StartedExecution { execution, created },
            signal: signal.try_into()?,
        })
    }

    /// Claims as [`Store::claim_executions`] asks. A claim that held back executions (their
    /// concurrency groups were full) claims again for the slots they would have taken: each
    /// held execution has left the runnable set, so this ends.
    async fn claim_executions(
        &self,
        params: ClaimParams,
    ) -> Result<Vec<ClaimedExecution>, StoreError> {
        let mut claimed: Vec<ClaimedExecution> = Vec::new();
        for _ in 0..MAX_CLAIM_ROUNDS {
            let want = params.limit - u32::try_from(claimed.len()).unwrap_or(params.limit);
            let (mut round, held) = self
                .claim_round(&ClaimParams {
                    limit: want,
                    ..params.clone()
                })
                .await?;
            let full = round.len() >= want as usize;
            claimed.append(&mut round);
            if full || held == 0 {
                break;
            }
        }
        Ok(claimed)
    }

    async fn record_steps(&self, steps: &[RecordStep]) -> Vec<Result<StepRecorded, StoreError>> {
        let mut results: Vec<Option<Result<StepRecorded, StoreError>>> =
            std::iter::repeat_with(|| None).take(steps.len()).collect();
        // Round k holds the k-th step of each execution, so an execution's steps apply in
        // order; usually there is one round.
        for round in rounds(steps) {
            for (i, result) in round.iter().zip(self.record_round(steps, &round).await) {
                results[*i] = Some(result);
            }
        }
        results
            .into_iter()
            .map(|result| result.expect("every step is in a round"))
            .collect()
    }

    async fn record_item_runs(
        &self,
        execution_id: ExecutionId,
        lease_token: LeaseToken,
        worker_id: &str,
        runs: &[NewItemRun],
    ) -> Result<StepRecorded, StoreError> {
        let held: Option<bool> = sqlx::query_scalar(queries::RECORD_ITEM_RUNS)
            .bind(execution_id.0)
            .bind(lease_token.0)
            .bind(worker_id)
            .bind(runs.iter().map(|r| r.node_id.clone()).collect::<Vec<_>>())
            .bind(
                runs.iter()
                    .map(|r| i32::try_from(r.item).unwrap_or(i32::MAX))
                    .collect::<Vec<_>>(),
            )
            .bind(runs.iter().map(|r| r.node_type.clone()).collect::<Vec<_>>())
            .bind(
                runs.iter()
                    .map(|r| i32::try_from(r.attempt).unwrap_or(i32::MAX))
                    .collect::<Vec<_>>(),
            )
            .bind(runs.iter().map(|r| r.status.as_str()).collect::<Vec<_>>())
            .bind(
                runs.iter()
                    .map(|r| r.input.as_ref().map(storable_json))
                    .collect::<Vec<_>>(),
            )
            .bind(
                runs.iter()
                    .map(|r| r.output.as_ref().map(storable_json))
                    .collect::<Vec<_>>(),
            )
            .bind(
                runs.iter()
                    .map(|r| r.error.as_deref().map(storable_text))
                    .collect::<Vec<_>>(),
            )
            .bind(
                runs.iter()
                    .map(|r| r.duration.as_secs_f64())
                    .collect::<Vec<_>>(),
            )
            .bind(
                runs.iter()
                    .map(|r| r.ended_ago.as_secs_f64())
                    .collect::<Vec<_>>(),
            )
            .bind(
                runs.iter()
                    .map(|r| r.consumed_signal.map(|s| s.0))
                    .collect::<Vec<_>>(),
            )
            .bind(runs.iter().map(|r| r.fatal).collect::<Vec<_>>())
            .fetch_optional(&self.db)
            .await
            .map_err(|err| crate::error::already_recorded(classify(err), execution_id))?;
        match held {
            Some(pause_requested) => Ok(StepRecorded { pause_requested }),
            None => Err(StoreError::LeaseLost {
                execution_id,
                lease_token,
            }),
        }
    }

    async fn item_runs(
        &self,
        execution_id: ExecutionId,
        node_id: &str,
    ) -> Result<Vec<ItemRun>, StoreError> {
        let rows: Vec<ItemRunRow> = sqlx::query_as(queries::ITEM_RUNS_OF_NODE)
            .bind(execution_id.0)
            .bind(node_id)
            .fetch_all(&self.db)
            .await
            .map_err(classify)?;
        convert(rows)
    }

    async fn renew_leases(
        &self,
        leases: &[(ExecutionId, LeaseToken)],
        lease_duration: Duration,
    ) -> Result<Vec<ExecutionId>, StoreError> {
        let (ids, tokens): (Vec<Uuid>, Vec<i64>) =
            leases.iter().map(|(id, token)| (id.0, token.0)).unzip();
        let ids: Vec<Uuid> = sqlx::query_scalar(queries::RENEW_LEASES)
            .bind(ids)
            .bind(tokens)
            .bind(lease_duration.as_secs_f64())
            .fetch_all(&self.db)
            .await
            .map_err(classify)?;
        Ok(ids.into_iter().map(ExecutionId).collect())
    }

    async fn pause_execution(&self, id: ExecutionId) -> Result<Execution, StoreError> {
        self.pause_or_resume(queries::PAUSE_EXECUTION, id).await
    }

    async fn resume_execution(&self, id: ExecutionId) -> Result<Execution, StoreError> {
        self.pause_or_resume(queries::RESUME_EXECUTION, id).await
    }

    async fn cancel_execution(
        &self,
        id: ExecutionId,
        reason: &str,
    ) -> Result<Execution, StoreError> {
        let row: Option<ExecutionRow> = sqlx::query_as(queries::CANCEL_EXECUTION)
            .bind(id.0)
            .bind(reason)
            .fetch_optional(&self.db)
            .await
            .map_err(classify)?;
        match row {
            Some(row) => row.try_into(),
            None => Err(already_ended(self.get_execution(id).await?.execution)),
        }
    }

    async fn retry_execution(&self, params: RetryExecutionParams) -> Result<Execution, StoreError> {
        let id = params.execution_id;
        let row: Result<Option<ExecutionRow>, StoreError> =
            sqlx::query_as(queries::RETRY_EXECUTION)
                .bind(id.0)
                .bind(&params.requested_by)
                .bind(params.from.mode())
                .bind(params.from.node())
                .bind(params.workflow_version)
                .bind(&params.rerun)
                .fetch_optional(&self.db)
                .await
                .map_err(classify);
        let row = match row {
            // Another execution took its business key after it ended.
            Err(StoreError::Constraint { constraint })
                if constraint == "workflow_executions_active_key" =>
            {
                let holder: Option<(Uuid, Uuid, String)> = sqlx::query_as(queries::KEY_HOLDER)
                    .bind(id.0)
                    .fetch_optional(&self.db)
                    .await
                    .map_err(classify)?;
                return Err(match holder {
                    Some((holder, workflow_id, key)) => StoreError::KeyInUse {
                        workflow_id: WorkflowId(workflow_id),
                        key,
                        holder: ExecutionId(holder),
                    },
                    None => StoreError::Constraint { constraint },
                });
            }
            row => row?,
        };
        match row {
            Some(row) => row.try_into(),
            None => Err(StoreError::NotRetryable {
                execution_id: id,
                status: self.get_execution(id).await?.execution.status,
            }),
        }
    }

    async fn time_out_executions(&self) -> Result<DeadlineSweep, StoreError> {
        let (now, next_deadline, ended): (DateTime<Utc>, Option<DateTime<Utc>>, Value) =
            sqlx::query_as(queries::TIME_OUT_EXECUTIONS)
                .fetch_one(&self.db)
                .await
                .map_err(classify)?;
        let ended: Vec<(Uuid, String)> = serde_json::from_value(ended)
            .map_err(|err| invalid(format!("timed-out executions: {err}")))?;
        let released: i32 = sqlx::query_scalar(queries::RELEASE_HELD)
            .bind(None::<Uuid>)
            .fetch_one(&self.db)
            .await
            .map_err(classify)?;
        Ok(DeadlineSweep {
            now,
            next_deadline,
            released: u64::try_from(released).unwrap_or_default(),
            timed_out: ended
                .into_iter()
                .map(|(id, workflow_name)| TimedOutExecution {
                    id: ExecutionId(id),
                    workflow_name,
                })
                .collect(),
        })
    }

    async fn queue_stats(&self) -> Result<QueueStats, StoreError> {
        let (runnable, oldest, waiting, running, unrunnable): (i64, f64, i64, i64, i64) =
            sqlx::query_as(queries::QUEUE_STATS)
                .fetch_one(&self.db)
                .await
                .map_err(classify)?;
        let held: Vec<(String, i64)> = sqlx::query_as(queries::HELD_BY_WORKFLOW)
            .fetch_all(&self.db)
            .await
            .map_err(classify)?;
        Ok(QueueStats {
            runnable: u64::try_from(runnable).unwrap_or_default(),
            oldest_runnable_age: Duration::try_from_secs_f64(oldest).unwrap_or_default(),
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
        let rows: Vec<(Uuid, i32, i32)> = sqlx::query_as(queries::AGE_PRIORITIES)
            .bind(older_than.as_secs_f64())
            .bind(i64::from(limit))
            .fetch_all(&self.db)
            .await
            .map_err(classify)?;
        Ok(rows
            .into_iter()
            .map(|(id, from, to)| AgedExecution {
                id: ExecutionId(id),
                from,
                to,
            })
            .collect())
    }

    async fn take_rate(&self, request: &RateRequest) -> Result<Option<Duration>, StoreError> {
        let wait: Option<f64> = sqlx::query_scalar(queries::TAKE_RATE)
            .bind(&request.name)
            .bind(&request.key)
            .bind(i32::try_from(request.limit).unwrap_or(i32::MAX))
            .bind(request.period.as_secs_f64())
            .fetch_one(&self.db)
            .await
            .map_err(classify)?;
        Ok(wait.map(|secs| Duration::try_from_secs_f64(secs).unwrap_or_default()))
    }

    async fn record_worker(
        &self,
        id: &str,
        node_types: &[String],
        ttl: Duration,
    ) -> Result<(), StoreError> {
        sqlx::query(queries::RECORD_WORKER)
            .bind(id)
            .bind(Value::from(node_types.to_vec()))
            .bind(ttl.as_secs_f64())
            .execute(&self.db)
            .await
            .map_err(classify)?;
        Ok(())
    }

    async fn remove_worker(&self, id: &str) -> Result<(), StoreError> {
        sqlx::query(queries::REMOVE_WORKER)
            .bind(id)
            .execute(&self.db)
            .await
            .map_err(classify)?;
        Ok(())
    }

    async fn live_workers(&self) -> Result<Vec<LiveWorker>, StoreError> {
        let rows: Vec<(String, Value, DateTime<Utc>)> = sqlx::query_as(queries::LIVE_WORKERS)
            .fetch_all(&self.db)
            .await
            .map_err(classify)?;
        rows.into_iter()
            .map(|(id, node_types, expires_at)| {
                let node_types = serde_json::from_value(node_types)
                    .map_err(|err| invalid(format!("worker {id}: node types: {err}")))?;
                Ok(LiveWorker {
                    id,
                    node_types,
                    expires_at,
                })
            })
            .collect()
    }

    async fn prune_executions(&self, older_than: Duration, limit: u32) -> Result<u64, StoreError> {
        let pruned = sqlx::query(queries::PRUNE_EXECUTIONS)
            .bind(older_than.as_secs_f64())
            .bind(i64::from(limit))
            .execute(&self.db)
            .await
            .map_err(classify)?;
        Ok(pruned.rows_affected())
    }

    async fn send_signal(&self, params: SendSignalParams) -> Result<Signal, StoreError> {
        // The SQL API's function (migration 0008): the check that the execution has not
        // ended and the insert happen under its row lock, as for every other program.
        let sent = sqlx::query_scalar(queries::SEND_SIGNAL)
            .bind(params.execution_id.0)
            .bind(&params.name)
            .bind(&params.payload)
            .bind(&params.idempotency_key)
            .fetch_one(&self.db)
            .await;
        let code = match &sent {
            Err(sqlx::Error::Database(db)) => db.code().map(|code| code.into_owned()),
            _ => None,
        };
        let id: i64 = match (sent, code.as_deref()) {
            (Ok(id), _) => id,
            (Err(_), Some("P0002")) => {
                return Err(StoreError::NotFound {
                    entity: "execution",
                    id: params.execution_id.to_string(),
                });
            }
            // It ended.
            (Err(_), Some("55000")) => {
                let execution = self.get_execution(params.execution_id).await?.execution;
                return Err(already_ended(execution));
            }
            (Err(err), _) => return Err(classify(err)),
        };
        let row: SignalRow = sqlx::query_as(queries::SIGNAL_BY_ID)
            .bind(id)
            .fetch_one(&self.db)
            .await
            .map_err(classify)?;
        row.try_into()
    }

    async fn now(&self) -> Result<DateTime<Utc>, StoreError> {
        sqlx::query_scalar(queries::NOW)
            .fetch_one(&self.db)
            .await
            .map_err(classify)
    }

    async fn create_schedule(&self, params: CreateScheduleParams) -> Result<Schedule, StoreError> {
        let (id, name) = workflow_key(&params.workflow);
        let row: Option<ScheduleRow> = sqlx::query_as(queries::CREATE_SCHEDULE)
            .bind(id)
            .bind(name)
            .bind(&params.cron)
            .bind(&params.timezone)
            .bind(&params.input)
            .bind(i32::try_from(params.catch_up).unwrap_or(i32::MAX))
            .bind(params.next_fire_at)
            .fetch_optional(&self.db)
            .await
            .map_err(classify)?;
        row.ok_or_else(|| workflow_not_found(&params.workflow))?
            .try_into()
    }

    async fn list_schedules(&self) -> Result<Vec<Schedule>, StoreError> {
        let rows: Vec<ScheduleRow> = sqlx::query_as(queries::LIST_SCHEDULES)
            .fetch_all(&self.db)
            .await
            .map_err(classify)?;
        convert(rows)
    }

    async fn get_schedule(&self, id: ScheduleId) -> Result<Schedule, StoreError> {
        let row: Option<ScheduleRow> = sqlx::query_as(queries::GET_SCHEDULE)
            .bind(id.0)
            .fetch_optional(&self.db)
            .await
            .map_err(classify)?;
        row.ok_or_else(|| schedule_not_found(id))?.try_into()
    }

    async fn pause_schedule(&self, id: ScheduleId) -> Result<Schedule, StoreError> {
        let row: Option<ScheduleRow> = sqlx::query_as(queries::PAUSE_SCHEDULE)
            .bind(id.0)
            .fetch_optional(&self.db)
            .await
            .map_err(classify)?;
        row.ok_or_else(|| schedule_not_found(id))?.try_into()
    }

    async fn resume_schedule(
        &self,
        id: ScheduleId,
        next_fire_at: Option<DateTime<Utc>>,
    ) -> Result<Schedule, StoreError> {
        let row: Option<ScheduleRow> = sqlx::query_as(queries::RESUME_SCHEDULE)
            .bind(id.0)
            .bind(next_fire_at)
            .fetch_optional(&self.db)
            .await
            .map_err(classify)?;
        row.ok_or_else(|| schedule_not_found(id))?.try_into()
    }

    async fn delete_schedule(&self, id: ScheduleId) -> Result<(), StoreError> {
        let deleted = sqlx::query(queries::DELETE_SCHEDULE)
            .bind(id.0)
            .execute(&self.db)
            .await
            .map_err(classify)?;
        if deleted.rows_affected() == 0 {
            return Err(schedule_not_found(id));
        }
        Ok(())
    }

    async fn trigger_schedule(&self, id: ScheduleId) -> Result<Execution, StoreError> {
        let started: Option<Uuid> = sqlx::query_scalar(queries::TRIGGER_SCHEDULE)
            .bind(id.0)
            .fetch_optional(&self.db)
            .await
            .map_err(classify)?;
        let started = started.ok_or_else(|| schedule_not_found(id))?;
        Ok(self.get_execution(ExecutionId(started)).await?.execution)
    }

    async fn due_schedules(&self, limit: u32) -> Result<DueSchedules, StoreError> {
        let (now, next_at): (DateTime<Utc>, Option<DateTime<Utc>>) =
            sqlx::query_as(queries::NEXT_SCHEDULE_TICK)
                .fetch_one(&self.db)
                .await
                .map_err(classify)?;
        let rows: Vec<ScheduleRow> = sqlx::query_as(queries::DUE_SCHEDULES)
            .bind(i64::from(limit))
            .fetch_all(&self.db)
            .await
            .map_err(classify)?;
        Ok(DueSchedules {
            now,
            due: convert(rows)?,
            next_at,
        })
    }

    async fn wakeups(&self) -> Result<Option<Box<dyn Wakeups>>, StoreError> {
        if self.db.transaction_pooler {
            // LISTEN needs a session of its own, which a transaction pooler does not keep.
            return Ok(None);
        }
        let mut listener = sqlx::postgres::PgListener::connect_with(&self.db.pool)
            .await
            .map_err(classify)?;
        listener
            .listen_all([WAKEUP_CHANNEL, CANCELLED_CHANNEL])
            .await
            .map_err(classify)?;
        Ok(Some(Box::new(PgWakeups(listener))))
    }

    async fn fire_schedule(&self, params: FireScheduleParams) -> Result<u32, StoreError> {
        let mut tx = self.db.begin().await.map_err(classify)?;
        let advanced: Option<(Uuid, Value)> = sqlx::query_as(queries::ADVANCE_SCHEDULE)
            .bind(params.schedule_id.0)
            .bind(params.expected_next_fire_at)
            .bind(params.next_fire_at)
            .bind(params.ticks.iter().max().copied())
            .fetch_optional(&mut tx)
            .await
            .map_err(classify)?;
        let Some((workflow_id, input)) = advanced else {
            // Another worker fired it first, or it was paused: nothing to do.
            return Ok(0);
        };
        let started = if params.ticks.is_empty() {
            0
        } else {
            sqlx::query(queries::START_SCHEDULED)
                .bind(params.schedule_id.0)
                .bind(workflow_id)
                .bind(input)
                .bind(&params.ticks)
                .execute(&mut tx)
                .await
                .map_err(classify)?
                .rows_affected()
        };
        tx.commit().await.map_err(classify)?;
        Ok(u32::try_from(started).unwrap_or(u32::MAX))
    }

    async fn get_execution(&self, id: ExecutionId) -> Result<ExecutionDetail, StoreError> {
        let execution = self.execution_row(id).await?;
        let runs: Vec<NodeRunRow> = sqlx::query_as(queries::NODE_RUNS_OF)
            .bind(id.0)
            .fetch_all(&self.db)
            .await
            .map_err(classify)?;
        let signals: Vec<SignalRow> = sqlx::query_as(queries::SIGNALS_OF)
            .bind(id.0)
            .fetch_all(&self.db)
            .await
            .map_err(classify)?;
        let retries: Vec<RetryRow> = sqlx::query_as(queries::RETRIES_OF)
            .bind(id.0)
            .fetch_all(&self.db)
            .await
            .map_err(classify)?;
        let children: Vec<ChildRow> = sqlx::query_as(queries::CHILDREN_OF)
            .bind(id.0)
            .fetch_all(&self.db)
            .await
            .map_err(classify)?;
        let item_runs: Vec<ItemRunRow> = sqlx::query_as(queries::ITEM_RUNS_OF)
            .bind(id.0)
            .fetch_all(&self.db)
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
        let rows: Vec<ExecutionRow> = sqlx::query_as(queries::LIST_EXECUTIONS)
            .bind(params.status.map(ExecutionStatus::as_str))
            .bind(workflow_id)
            .bind(workflow_name)
            .bind(i64::from(params.limit))
            .bind(params.before.map(|cursor| cursor.created_at))
            .bind(params.before.map(|cursor| cursor.id.0))
            .fetch_all(&self.db)
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
        let ids: Vec<Uuid> = bind_filter!(sqlx::query_scalar(queries::MATCHING_EXECUTIONS), filter)
            .bind(after.map(|id| id.0))
            .bind(i64::from(limit))
            .fetch_all(&self.db)
            .await
            .map_err(classify)?;
        Ok(ids.into_iter().map(ExecutionId).collect())
    }

    async fn delete_executions(
        &self,
        ids: &[ExecutionId],
        filter: &ExecutionFilter,
    ) -> Result<u64, StoreError> {
        let ids: Vec<Uuid> = ids.iter().map(|id| id.0).collect();
        let deleted = bind_filter!(sqlx::query(queries::DELETE_EXECUTIONS), filter)
            .bind(ids)
            .execute(&self.db)
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
        let statuses: Option<Vec<&str>> = (!filter.statuses.is_empty())
            .then(|| filter.statuses.iter().map(|s| s.as_str()).collect());
        $query
            .bind(statuses)
            .bind(workflow_id)
            .bind(workflow_name)
            .bind(filter.created_before)
            .bind(filter.created_after)
            .bind(filter.error_contains.as_deref())
    }};
}
use bind_filter;

/// Hints from LISTEN; the listener reconnects by itself after a dropped connection.
struct PgWakeups(sqlx::postgres::PgListener);

#[async_trait]
impl Wakeups for PgWakeups {
    async fn next(&mut self) -> Result<Wakeup, StoreError> {
        loop {
            let Some(notification) = self.0.try_recv().await.map_err(classify)? else {
                return Ok(Wakeup::Reconnected);
            };
            if notification.channel() != CANCELLED_CHANNEL {
                return Ok(Wakeup::Runnable);
            }
            // Sent by our trigger only; a payload that is no id (someone else's NOTIFY) is
            // not ours to act on.
            if let Ok(id) = notification.payload().parse() {
                return Ok(Wakeup::Cancelled(id));
            }
        }
    }
}

/// `text` as PostgreSQL can store it: its text type cannot hold a NUL character, which a
/// node's output (a process's stderr, say) may carry; each becomes U+FFFD, so such a step is
/// recorded rather than refused again on every attempt.
fn storable_text(text: &str) -> String {
    text.replace('\0', "\u{fffd}")
}

/// `value` with every NUL character in its strings and keys replaced, as in
/// [`storable_text`] (`jsonb` cannot hold `\u0000` either).
fn storable_json(value: &Value) -> Value {
    match value {
        Value::String(text) if text.contains('\0') => Value::String(storable_text(text)),
        Value::Array(items) => Value::Array(items.iter().map(storable_json).collect()),
        Value::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(key, field)| (storable_text(key), storable_json(field)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The steps' indices in rounds: each execution at most once per round, its steps in order.
fn rounds(steps: &[RecordStep]) -> Vec<Vec<usize>> {
    let mut rounds: Vec<Vec<usize>> = Vec::new();
    let mut seen: HashMap<ExecutionId, usize> = HashMap::new();
    for (i, step) in steps.iter().enumerate() {
        let round = seen.entry(step.execution_id).or_insert(0);
        if rounds.len() == *round {
            rounds.push(Vec::new());
        }
        rounds[*round].push(i);
        *round += 1;
    }
    rounds
}

impl PgStore {
    /// An execution's row alone, without its history.
    async fn execution_row(&self, id: ExecutionId) -> Result<Execution, StoreError> {
        let row: Option<ExecutionRow> = sqlx::query_as(queries::GET_EXECUTION)
            .bind(id.0)
            .fetch_optional(&self.db)
            .await
            .map_err(classify)?;
        row.ok_or_else(|| StoreError::NotFound {
            entity: "execution",
            id: id.to_string(),
        })?
        .try_into()
    }

    /// Runs `sql` (a pause or a resume of execution $1): the execution it changed, or as it
    /// is when it changed nothing, unless it ended.
    async fn pause_or_resume(
        &self,
        sql: &'static str,
        id: ExecutionId,
    ) -> Result<Execution, StoreError> {
        let row: Option<ExecutionRow> = sqlx::query_as(sql)
            .bind(id.0)
            .fetch_optional(&self.db)
            .await
            .map_err(classify)?;
        match row {
            Some(row) => row.try_into(),
            None => unchanged_unless_ended(self.get_execution(id).await?.execution),
        }
    }

    /// Records the steps `round` of `steps` (each execution once) in one statement, and
    /// says for each whether it was recorded and if not, why.
    async fn record_round(
        &self,
        steps: &[RecordStep],
        round: &[usize],
    ) -> Vec<Result<StepRecorded, StoreError>> {
        let batch: Vec<&RecordStep> = round.iter().map(|&i| &steps[i]).collect();
        match record_batch(&self.db, &batch).await {
            Ok(recorded) => {
                let missed: Vec<&RecordStep> = batch
                    .iter()
                    .copied()
                    .filter(|step| !recorded.contains_key(&step.execution_id.0))
                    .collect();
                let mut why = self.why_not_recorded(&missed).await.into_iter();
                batch
                    .iter()
                    .map(|step| match recorded.get(&step.execution_id.0) {
                        Some(&pause_requested) => Ok(StepRecorded { pause_requested }),
                        None => Err(why.next().expect("a reason per step not recorded")),
                    })
                    .collect()
            }
            // The database is away: every step may try again.
            Err(err @ StoreError::Unavailable(_)) => crate::error::share(err, batch.len())
                .into_iter()
                .map(Err)
                .collect(),
            // A step alone: its run is recorded already, or its data was refused.
            Err(err) if batch.len() == 1 => {
                vec![Err(crate::error::already_recorded(
                    err,
                    batch[0].execution_id,
                ))]
            }
            // One step's data failed the statement (a retried write that had committed, a
            // value the database refuses): record them one by one, so only that step fails.
            Err(_) => {
                let mut results = Vec::with_capacity(round.len());
                for &i in round {
                    results.extend(Box::pin(self.record_round(steps, &[i])).await);
                }
                results
            }
        }
    }

    /// Why each of `steps` was not recorded: its lease was lost, or (its lease still held)
    /// a signal it consumes was consumed already.
    async fn why_not_recorded(&self, steps: &[&RecordStep]) -> Vec<StoreError> {
        let lost = |step: &RecordStep| StoreError::LeaseLost {
            execution_id: step.execution_id,
            lease_token: step.lease_token,
        };
        let signals: Vec<i64> = steps
            .iter()
            .flat_map(|step| {
                step.runs
                    .iter()
                    .filter_map(|run| run.consumed_signal.map(|id| id.0))
            })
            .collect();
        if signals.is_empty() {
            return steps.iter().map(|step| lost(step)).collect();
        }
        let looked = async {
            let ids: Vec<Uuid> = steps.iter().map(|step| step.execution_id.0).collect();
            let tokens: Vec<i64> = steps.iter().map(|step| step.lease_token.0).collect();
            let held: Vec<Uuid> = sqlx::query_scalar(queries::LEASES_HELD)
                .bind(ids)
                .bind(tokens)
                .fetch_all(&self.db)
                .await
                .map_err(classify)?;
            let consumed: Vec<i64> = sqlx::query_scalar(queries::SIGNALS_CONSUMED)
                .bind(signals)
                .fetch_all(&self.db)
                .await
                .map_err(classify)?;
            Ok::<_, StoreError>((held, consumed))
        };
        match looked.await {
            Ok((held, consumed)) => steps
                .iter()
                .map(|step| {
                    let taken = step
                        .runs
                        .iter()
                        .filter_map(|run| run.consumed_signal)
                        .find(|signal| consumed.contains(&signal.0));
                    match taken {
                        Some(signal) if held.contains(&step.execution_id.0) => {
                            crate::error::signal_taken(signal, step.execution_id)
                        }
                        _ => lost(step),
                    }
                })
                .collect(),
            Err(err) => crate::error::share(err, steps.len()),
        }
    }
}

/// Records steps of distinct executions with [`queries::RECORD_STEPS`] (or its variant without
/// signals when no step waits or consumes one); returns the ids of the executions whose steps
/// were recorded, each with whether a pause is asked of it. Waits take a second statement,
/// [`queries::WAKE_IF_SIGNALLED`], in the same transaction.
async fn record_batch(db: &Db, steps: &[&RecordStep]) -> Result<HashMap<Uuid, bool>, StoreError> {
    let mut step = StepColumns::default();
    let mut runs = NodeRunColumns::default();
    let mut awaited: (Vec<Uuid>, Vec<String>) = (Vec::new(), Vec::new());
    for params in steps {
        let id = params.execution_id.0;
        step.id.push(id);
        step.lease_token.push(params.lease_token.0);
        step.worker_id.push(params.worker_id.clone());
        let (advance, status, output, error, seconds) = match &params.advance {
            Advance::Continue { lease_duration } => (
                "continue",
                None,
                None,
                None,
                Some(lease_duration.as_secs_f64()),
            ),
            Advance::Finish {
                status,
                output,
                error,
            } => (
                "finish",
                Some(status.as_str()),
                output.as_ref().map(storable_json),
                error.as_deref().map(storable_text),
                None,
            ),
            Advance::Retry { delay } => ("retry", None, None, None, Some(delay.as_secs_f64())),
            Advance::Wait { delay, signals } => {
                for signal in signals {
                    awaited.0.push(id);
                    awaited.1.push(signal.clone());
                }
                ("wait", None, None, None, delay.map(|d| d.as_secs_f64()))
            }
            Advance::Release => ("release", None, None, None, None),
            Advance::Pause { error } => (
                "pause",
                None,
                None,
                error.as_deref().map(storable_text),
                None,
            ),
        };
        step.advance.push(advance);
        step.status.push(status);
        step.output.push(output);
        step.error.push(error);
        step.seconds.push(seconds);
        for run in &params.runs {
            runs.execution_id.push(id);
            runs.push(run);
        }
    }
    let waits = !awaited.0.is_empty();
    // Most batches neither wait nor consume a signal: they take the statement without the
    // signal parts, cheaper to plan.
    let signals = steps
        .iter()
        .any(|step| matches!(step.advance, Advance::Wait { .. }))
        || runs.consumed_signal.iter().any(Option::is_some);
    let sql = if signals {
        queries::RECORD_STEPS
    } else {
        queries::RECORD_STEPS_WITHOUT_SIGNALS
    };
    let mut record = sqlx::query_as(sql)
        .bind(step.id)
        .bind(step.lease_token)
        .bind(step.advance)
        .bind(step.status)
        .bind(step.output)
        .bind(step.error)
        .bind(step.seconds)
        .bind(step.worker_id)
        .bind(runs.execution_id)
        .bind(runs.node_id)
        .bind(runs.node_type)
        .bind(runs.attempt)
        .bind(runs.status)
        .bind(runs.input)
        .bind(runs.output)
        .bind(runs.branch)
        .bind(runs.error)
        .bind(runs.duration)
        .bind(runs.consumed_signal)
        .bind(runs.ended_ago);
    if signals {
        record = record.bind(&awaited.0).bind(&awaited.1);
    }
    let recorded: Vec<(Uuid, bool)> = if waits {
        let mut tx = db.begin().await.map_err(classify)?;
        let recorded = record.fetch_all(&mut tx).await.map_err(classify)?;
        sqlx::query(queries::WAKE_IF_SIGNALLED)
            .bind(&awaited.0)
            .bind(&awaited.1)
            .execute(&mut tx)
            .await
            .map_err(classify)?;
        tx.commit().await.map_err(classify)?;
        recorded
    } else {
        record.fetch_all(db).await.map_err(classify)?
    };
    Ok(recorded.into_iter().collect())
}

/// Steps as parallel arrays, for [`queries::RECORD_STEPS`].
#[derive(Default)]
struct StepColumns {
    id: Vec<Uuid>,
    lease_token: Vec<i64>,
    advance: Vec<&'static str>,
    status: Vec<Option<&'static str>>,
    output: Vec<Option<Value>>,
    error: Vec<Option<String>>,
    seconds: Vec<Option<f64>>,
    worker_id: Vec<String>,
}

/// Node runs as parallel arrays keyed by execution id, for [`queries::RECORD_STEPS`].
#[derive(Default)]
struct NodeRunColumns {
    execution_id: Vec<Uuid>,
    node_id: Vec<String>,
    node_type: Vec<String>,
    attempt: Vec<i32>,
    status: Vec<&'static str>,
    input: Vec<Option<Value>>,
    output: Vec<Option<Value>>,
    branch: Vec<Option<String>>,
    error: Vec<Option<String>>,
    duration: Vec<f64>,
    consumed_signal: Vec<Option<i64>>,
    ended_ago: Vec<f64>,
}

impl NodeRunColumns {
    fn push(&mut self, run: &NewNodeRun) {
        self.node_id.push(run.node_id.clone());
        self.node_type.push(run.node_type.clone());
        self.attempt
            .push(i32::try_from(run.attempt).unwrap_or(i32::MAX));
        self.status.push(run.status.as_str());
        self.input.push(run.input.as_ref().map(storable_json));
        self.output.push(run.output.as_ref().map(storable_json));
        self.branch.push(run.branch.clone());
        self.error.push(run.error.as_deref().map(storable_text));
        self.duration.push(run.duration.as_secs_f64());
        self.consumed_signal
            .push(run.consumed_signal.map(|id| id.0));
        self.ended_ago.push(run.ended_ago.as_secs_f64());
    }
}
