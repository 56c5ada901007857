//! Every route of the API, once: its method and path, what it reads and answers (for the
//! OpenAPI document), and its handler. [`routes`] is the table; the handlers follow it.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::handler::Handler;
use axum::http::StatusCode;
use axum::routing::{MethodFilter, MethodRouter, on};
use chrono::{DateTime, Utc};
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Api, ApiError, JsonBody, QueryParams};
use crate::bulk::BulkOutcome;
use crate::execution::{
    Execution, ExecutionDetail, ExecutionId, Signal, WorkflowSummary, WorkflowVersion,
};
use crate::graph::WorkflowDefinition;
use crate::retry::{RetryFrom, RetryRequest};
use crate::schedule::{Schedule, ScheduleId};
use crate::state::ExecutionStatus;
use crate::store::{
    ExecutionCursor, ExecutionFilter, KeyReuse, ListExecutionsParams, LiveWorker, SendSignalParams,
    SignalWithStartParams, SignalledExecution, StartExecutionParams, WorkflowRef,
};

/// Who is recorded as asking, when a request names no one.
const API_CALLER: &str = "api";

/// The most executions one page lists, and how many when a request does not say.
const MAX_PAGE: u32 = 500;
const DEFAULT_PAGE: u32 = 50;

type Handlers = MethodRouter<Arc<Api>>;
type SchemaOf = fn(&mut SchemaGenerator) -> Schema;

/// One route: what the OpenAPI document says of it, and what serves it.
pub(super) struct Route {
    pub(super) method: &'static str,
    /// Under `/api/v1`, with `{name}` for a path parameter.
    pub(super) path: &'static str,
    pub(super) operation_id: &'static str,
    pub(super) summary: &'static str,
    /// Whether it changes something (refused in read-only mode).
    pub(super) action: bool,
    /// The query parameters, as the properties of one object.
    pub(super) query: Option<SchemaOf>,
    /// The JSON body.
    pub(super) body: Option<SchemaOf>,
    /// The status of a success and its body.
    pub(super) answers: (StatusCode, SchemaOf),
    /// Another success status with the same body, and what it means.
    pub(super) also: Option<(StatusCode, &'static str)>,
    /// The error statuses it may answer with besides 400, 415 (actions), 403 (actions), 503
    /// and 500.
    pub(super) errors: &'static [StatusCode],
    pub(super) handler: Handlers,
}

impl Route {
    fn new<H, T>(
        method: &'static str,
        path: &'static str,
        operation_id: &'static str,
        summary: &'static str,
        handler: H,
    ) -> Self
    where
        H: Handler<T, Arc<Api>>,
        T: 'static,
    {
        let (filter, action) = match method {
            "get" => (MethodFilter::GET, false),
            _ => (MethodFilter::POST, true),
        };
        Self {
            method,
            path,
            operation_id,
            summary,
            action,
            query: None,
            body: None,
            answers: (StatusCode::OK, |g| g.subschema_for::<Value>()),
            also: None,
            errors: &[],
            handler: on(filter, handler),
        }
    }

    fn get<H: Handler<T, Arc<Api>>, T: 'static>(
        path: &'static str,
        operation_id: &'static str,
        summary: &'static str,
        handler: H,
    ) -> Self {
        Self::new("get", path, operation_id, summary, handler)
    }

    fn post<H: Handler<T, Arc<Api>>, T: 'static>(
        path: &'static str,
        operation_id: &'static str,
        summary: &'static str,
        handler: H,
    ) -> Self {
        Self::new("post", path, operation_id, summary, handler)
    }

    fn answers<T: JsonSchema>(mut self, status: StatusCode) -> Self {
        self.answers = (status, |g| g.subschema_for::<T>());
        self
    }

    fn also_answers(mut self, status: StatusCode, meaning: &'static str) -> Self {
        self.also = Some((status, meaning));
        self
    }

    fn reads<T: JsonSchema>(mut self) -> Self {
        self.body = Some(|g| g.subschema_for::<T>());
        self
    }

    fn query<T: JsonSchema>(mut self) -> Self {
        self.query = Some(|g| g.root_schema_for::<T>());
        self
    }

    fn errors(mut self, errors: &'static [StatusCode]) -> Self {
        self.errors = errors;
        self
    }
}

const NOT_FOUND: &[StatusCode] = &[StatusCode::NOT_FOUND];
const NOT_FOUND_OR_CONFLICT: &[StatusCode] = &[StatusCode::NOT_FOUND, StatusCode::CONFLICT];

/// The table.
pub(super) fn routes() -> Vec<Route> {
    vec![
        Route::get(
            "/workflows",
            "listWorkflows",
            "Every saved workflow, by name",
            list_workflows,
        )
        .answers::<Vec<WorkflowSummary>>(StatusCode::OK),
        Route::post(
            "/workflows",
            "saveWorkflow",
            "Save a definition as its workflow's next version (validated first)",
            save_workflow,
        )
        .reads::<WorkflowDefinition>()
        .answers::<WorkflowVersion>(StatusCode::CREATED)
        .errors(&[StatusCode::UNPROCESSABLE_ENTITY]),
        Route::get(
            "/workflows/{workflow}",
            "getWorkflow",
            "A workflow (by name or id) at its latest version, or at ?version=N, with its definition",
            get_workflow,
        )
        .query::<WorkflowQuery>()
        .answers::<WorkflowVersion>(StatusCode::OK)
        .errors(NOT_FOUND),
        Route::get(
            "/executions",
            "listExecutions",
            "Executions, newest first, a page at a time (follow next_cursor)",
            list_executions,
        )
        .query::<ListQuery>()
        .answers::<ExecutionPage>(StatusCode::OK)
        .errors(NOT_FOUND),
        Route::post(
            "/executions",
            "startExecution",
            "Start an execution of a workflow's latest version",
            start_execution,
        )
        .reads::<StartRequest>()
        .answers::<Execution>(StatusCode::CREATED)
        .also_answers(
            StatusCode::OK,
            "an execution with the key existed: it is returned and none is created",
        )
        .errors(NOT_FOUND),
        Route::post(
            "/executions/signal-with-start",
            "signalWithStart",
            "Send a signal to the execution of a workflow holding a key, starting it first if none does",
            signal_with_start,
        )
        .reads::<SignalWithStartRequest>()
        .answers::<SignalledExecution>(StatusCode::CREATED)
        .also_answers(
            StatusCode::OK,
            "an execution with the key existed: the signal was sent to it",
        )
        .errors(NOT_FOUND_OR_CONFLICT),
        Route::get(
            "/executions/{id}",
            "getExecution",
            "An execution with its node runs, signals and retries",
            get_execution,
        )
        .answers::<ExecutionDetail>(StatusCode::OK)
        .errors(NOT_FOUND),
        Route::post(
            "/executions/{id}/signals",
            "sendSignal",
            "Send a signal (an approval, say) to an execution; a waiting one wakes at once",
            send_signal,
        )
        .reads::<SignalRequest>()
        .answers::<Signal>(StatusCode::CREATED)
        .errors(NOT_FOUND_OR_CONFLICT),
        Route::post(
            "/executions/{id}/cancel",
            "cancelExecution",
            "Cancel an execution that has not ended; its running nodes are stopped",
            cancel_execution,
        )
        .reads::<CancelRequest>()
        .answers::<Execution>(StatusCode::OK)
        .errors(NOT_FOUND_OR_CONFLICT),
        Route::post(
            "/executions/{id}/retry",
            "retryExecution",
            "Run a failed, timed-out or cancelled execution again, from where it stopped by default",
            retry_execution,
        )
        .reads::<RetryBody>()
        .answers::<Execution>(StatusCode::OK)
        .errors(NOT_FOUND_OR_CONFLICT),
        Route::post(
            "/executions/{id}/pause",
            "pauseExecution",
            "Pause an execution: at once, or (a running one) once its running nodes finish",
            pause_execution,
        )
        .answers::<Execution>(StatusCode::OK)
        .errors(NOT_FOUND_OR_CONFLICT),
        Route::post(
            "/executions/{id}/resume",
            "resumeExecution",
            "Resume a paused execution where it stopped",
            resume_execution,
        )
        .reads::<ResumeRequest>()
        .answers::<Execution>(StatusCode::OK)
        .errors(NOT_FOUND_OR_CONFLICT),
        Route::post(
            "/executions/bulk",
            "bulkAction",
            "Cancel, retry or delete every execution a filter matches (or count them)",
            bulk_action,
        )
        .reads::<BulkRequest>()
        .answers::<BulkOutcome>(StatusCode::OK)
        .errors(NOT_FOUND),
        Route::get(
            "/schedules",
            "listSchedules",
            "Every cron schedule",
            list_schedules,
        )
        .answers::<Vec<Schedule>>(StatusCode::OK),
        Route::post(
            "/schedules/{id}/pause",
            "pauseSchedule",
            "Pause a schedule: no tick fires until it is resumed",
            pause_schedule,
        )
        .answers::<Schedule>(StatusCode::OK)
        .errors(NOT_FOUND),
        Route::post(
            "/schedules/{id}/resume",
            "resumeSchedule",
            "Resume a schedule from its next tick (missed ticks do not fire in a burst)",
            resume_schedule,
        )
        .answers::<Schedule>(StatusCode::OK)
        .errors(NOT_FOUND),
        Route::post(
            "/schedules/{id}/trigger",
            "triggerSchedule",
            "Start an execution of a schedule's workflow now, its ticks unchanged",
            trigger_schedule,
        )
        .answers::<Execution>(StatusCode::CREATED)
        .errors(NOT_FOUND),
        Route::get(
            "/health",
            "health",
            "Queue health: runnable, oldest runnable age, waiting, running, and the live workers",
            health,
        )
        .answers::<Health>(StatusCode::OK),
    ]
}

/// Query parameters of `GET /workflows/{workflow}`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkflowQuery {
    /// A version number instead of the latest.
    pub version: Option<i32>,
}

/// Query parameters of `GET /executions`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Only executions in this status.
    pub status: Option<ExecutionStatus>,
    /// Only executions of this workflow (name or id).
    pub workflow: Option<String>,
    /// Executions per page, from 1 to 500; 50 when not given.
    pub limit: Option<u32>,
    /// Where the previous page ended: its `next_cursor`.
    pub cursor: Option<String>,
}

/// A page of executions.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ExecutionPage {
    /// Newest first.
    pub executions: Vec<Execution>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// The body of `POST /executions`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StartRequest {
    /// The workflow, by name or id; its latest version runs.
    pub workflow: String,
    /// The execution input, available to every node; `{}` when not given.
    #[serde(default = "empty_object")]
    pub input: Value,
    /// Higher runs first among runnable executions; the workflow's `priority` (else 0) when
    /// not given.
    pub priority: Option<i32>,
    /// Seconds the execution may take before it ends `timed_out`; the workflow's `timeout`
    /// when not given.
    pub timeout_seconds: Option<f64>,
    /// A business key (an order number, a request id): while an execution of the workflow
    /// with this key has not ended, a start with it returns that execution (status 200)
    /// instead of creating one; at most 512 characters. Also the idempotency key of a start
    /// retried after a lost answer.
    pub key: Option<String>,
    /// What a start with a key does when the key's execution ended: `never` (the default)
    /// returns it, `after_end` starts a new one.
    #[serde(default)]
    pub key_reuse: KeyReuse,
    /// The execution's concurrency key, for a workflow whose `concurrency` limits running
    /// executions per key; the value at the workflow's key path in the input when not given.
    pub concurrency_key: Option<String>,
}

impl StartRequest {
    /// The start it asks for; a malformed timeout is a 400 naming it.
    fn params(self) -> Result<StartExecutionParams, ApiError> {
        let mut params = StartExecutionParams::new(self.workflow.as_str(), self.input);
        params.priority = self.priority;
        params.key = self.key;
        params.key_reuse = self.key_reuse;
        params.concurrency_key = self.concurrency_key;
        params.timeout = self
            .timeout_seconds
            .map(|seconds| {
                Duration::try_from_secs_f64(seconds).map_err(|_| {
                    ApiError::bad_request(format!(
                        "timeout_seconds must be a positive number of seconds, not {seconds}"
                    ))
                })
            })
            .transpose()?;
        Ok(params)
    }
}

/// The body of `POST /executions/signal-with-start`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SignalWithStartRequest {
    /// The execution to signal: the one holding `key` (required), else one started from
    /// this.
    #[serde(flatten)]
    pub start: StartRequest,
    /// The signal.
    pub signal: SignalRequest,
}

fn empty_object() -> Value {
    Value::Object(serde_json::Map::new())
}

/// The body of `POST /executions/{id}/signals`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SignalRequest {
    /// Its name, e.g. `approval`.
    pub name: String,
    /// Its payload, e.g. `{"approved": true}`; null when not given.
    #[serde(default)]
    pub payload: Value,
    /// Sending again with the same key stores the signal once.
    pub idempotency_key: Option<String>,
}

/// The body of `POST /executions/{id}/cancel`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelRequest {
    /// Recorded as the execution's error; `cancelled by request` when not given.
    pub reason: Option<String>,
}

/// How a retry runs: the body of `POST /executions/{id}/retry`, and part of a bulk retry.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryBody {
    /// Where it runs again from: `{"mode": "stopped"}` (the default: the nodes that did not
    /// complete), `{"mode": "start"}`, or `{"mode": "node", "node": "charge"}` (that node and
    /// everything downstream of it).
    pub from: Option<RetryFrom>,
    /// Run the workflow's latest version instead of the one the execution was pinned to.
    #[serde(default)]
    pub latest: bool,
    /// Who asks, recorded with the retry; `api` when not given.
    pub requested_by: Option<String>,
}

impl RetryBody {
    fn request(self) -> RetryRequest {
        let request = RetryRequest::new(self.requested_by.unwrap_or_else(|| API_CALLER.into()))
            .from(self.from.unwrap_or(RetryFrom::Stopped));
        if self.latest {
            request.latest()
        } else {
            request
        }
    }
}

/// The body of `POST /executions/{id}/resume`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResumeRequest {
    /// Who asks, recorded with the retry when a failure had paused the execution; `api`
    /// when not given.
    pub requested_by: Option<String>,
}

/// Which executions a bulk action touches: every condition given must hold.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FilterBody {
    /// In any of these statuses.
    #[serde(default)]
    pub statuses: Vec<ExecutionStatus>,
    /// Of this workflow (name or id).
    pub workflow: Option<String>,
    /// Created before this instant.
    pub created_before: Option<DateTime<Utc>>,
    /// Created at or after this instant.
    pub created_after: Option<DateTime<Utc>>,
    /// Whose error contains this text, ignoring case.
    pub error_contains: Option<String>,
    /// Match every execution: required when no other condition is given.
    #[serde(default)]
    pub all: bool,
}

/// What a bulk action does.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum BulkAction {
    /// Count the executions that match, changing nothing.
    Count,
    /// Cancel those that have not ended.
    Cancel,
    /// Retry those that failed, timed out or were cancelled.
    Retry,
    /// Delete those that ended, with their history.
    Delete,
}

/// The body of `POST /executions/bulk`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkRequest {
    /// What to do.
    pub action: BulkAction,
    /// To which executions.
    pub filter: FilterBody,
    /// For `cancel`: recorded as each execution's error.
    pub reason: Option<String>,
    /// For `retry`: how each runs again.
    #[serde(default)]
    pub retry: RetryBody,
}

/// Queue health, from `GET /health`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Health {
    /// Queued work.
    pub queue: QueueHealth,
    /// The workers seen recently (not yet expired), with the node types each runs.
    pub workers: Vec<LiveWorker>,
}

/// Queued work, in [`Health`].
#[derive(Debug, Serialize, JsonSchema)]
pub struct QueueHealth {
    /// Executions a worker could claim now.
    pub runnable: u64,
    /// Seconds the oldest runnable execution has waited; 0 when none is runnable.
    pub oldest_runnable_age_seconds: f64,
    /// Executions parked for a signal or a timer.
    pub waiting: u64,
    /// Executions a worker holds under a live lease.
    pub running: u64,
    /// Runnable executions no live worker has the node types for.
    pub unrunnable: u64,
}

async fn list_workflows(
    State(api): State<Arc<Api>>,
) -> Result<Json<Vec<WorkflowSummary>>, ApiError> {
    Ok(Json(api.client.workflows().await?))
}

async fn save_workflow(
    State(api): State<Arc<Api>>,
    JsonBody(definition): JsonBody<Value>,
) -> Result<(StatusCode, Json<WorkflowVersion>), ApiError> {
    api.writable()?;
    let definition = WorkflowDefinition::from_value(definition)
        .map_err(|err| ApiError::bad_request(format!("invalid workflow definition: {err}")))?;
    let saved = api.client.save_workflow(definition).await?;
    Ok((StatusCode::CREATED, Json(saved)))
}

async fn get_workflow(
    State(api): State<Arc<Api>>,
    Path(workflow): Path<String>,
    QueryParams(query): QueryParams<WorkflowQuery>,
) -> Result<Json<WorkflowVersion>, ApiError> {
    let version = match query.version {
        Some(version) => api.client.workflow_at(workflow.as_str(), version).await?,
        None => api.client.workflow(workflow.as_str()).await?,
    };
    Ok(Json(version))
}

async fn list_executions(
    State(api): State<Arc<Api>>,
    QueryParams(query): QueryParams<ListQuery>,
) -> Result<Json<ExecutionPage>, ApiError> {
    let limit = query.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit must be from 1 to {MAX_PAGE}, not {limit}"
        )));
    }
    let before = query.cursor.as_deref().map(parse_cursor).transpose()?;
    let workflow = query.workflow.as_deref().map(WorkflowRef::from);
    if let Some(workflow) = &workflow {
        // An unknown workflow is a 404, not an empty page.
        api.client.store().get_workflow(workflow).await?;
    }
    let executions = api
        .client
        .executions(ListExecutionsParams {
            status: query.status,
            workflow,
            limit,
            before,
        })
        .await?;
    let next_cursor = match executions.last() {
        Some(last) if executions.len() == limit as usize => Some(cursor_text(last)),
        _ => None,
    };
    Ok(Json(ExecutionPage {
        executions,
        next_cursor,
    }))
}

/// A cursor as the API hands it out: the creation time in microseconds and the id.
fn cursor_text(execution: &Execution) -> String {
    format!(
        "{}_{}",
        execution.created_at.timestamp_micros(),
        execution.id
    )
}

pub(super) fn parse_cursor(text: &str) -> Result<ExecutionCursor, ApiError> {
    let bad = || ApiError::bad_request(format!("invalid cursor \"{text}\": pass a next_cursor"));
    let (micros, id) = text.split_once('_').ok_or_else(bad)?;
    let created_at = micros
        .parse()
        .ok()
        .and_then(DateTime::from_timestamp_micros)
        .ok_or_else(bad)?;
    let id = id.parse().map_err(|_| bad())?;
    Ok(ExecutionCursor { created_at, id })
}

/// 201 for an execution a call created, 200 for one that existed.
fn started_status(created: bool) -> StatusCode {
    if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    }
}

async fn start_execution(
    State(api): State<Arc<Api>>,
    JsonBody(request): JsonBody<StartRequest>,
) -> Result<(StatusCode, Json<Execution>), ApiError> {
    api.writable()?;
    let started = api.client.start(request.params()?).await?;
    Ok((started_status(started.created), Json(started.execution)))
}

async fn signal_with_start(
    State(api): State<Arc<Api>>,
    JsonBody(request): JsonBody<SignalWithStartRequest>,
) -> Result<(StatusCode, Json<SignalledExecution>), ApiError> {
    api.writable()?;
    let mut params = SignalWithStartParams::new(
        request.start.params()?,
        request.signal.name,
        request.signal.payload,
    );
    params.idempotency_key = request.signal.idempotency_key;
    let signalled = api.client.signal_with_start(params).await?;
    Ok((started_status(signalled.started.created), Json(signalled)))
}

/// An execution id from the path: a malformed one is a 400 naming it.
pub(super) fn execution_id(text: &str) -> Result<ExecutionId, ApiError> {
    text.parse()
        .map_err(|_| ApiError::bad_request(format!("\"{text}\" is not an execution id (a UUID)")))
}

fn schedule_id(text: &str) -> Result<ScheduleId, ApiError> {
    text.parse()
        .map_err(|_| ApiError::bad_request(format!("\"{text}\" is not a schedule id (a UUID)")))
}

async fn get_execution(
    State(api): State<Arc<Api>>,
    Path(id): Path<String>,
) -> Result<Json<ExecutionDetail>, ApiError> {
    Ok(Json(api.client.execution(execution_id(&id)?).await?))
}

async fn send_signal(
    State(api): State<Arc<Api>>,
    Path(id): Path<String>,
    JsonBody(request): JsonBody<SignalRequest>,
) -> Result<(StatusCode, Json<Signal>), ApiError> {
    api.writable()?;
    let signal = api
        .client
        .signal(SendSignalParams {
            execution_id: execution_id(&id)?,
            name: request.name,
            payload: request.payload,
            idempotency_key: request.idempotency_key,
        })
        .await?;
    Ok((StatusCode::CREATED, Json(signal)))
}

async fn cancel_execution(
    State(api): State<Arc<Api>>,
    Path(id): Path<String>,
    JsonBody(request): JsonBody<CancelRequest>,
) -> Result<Json<Execution>, ApiError> {
    api.writable()?;
    let reason = request.reason.as_deref().unwrap_or("cancelled by request");
    Ok(Json(api.client.cancel(execution_id(&id)?, reason).await?))
}

async fn retry_execution(
    State(api): State<Arc<Api>>,
    Path(id): Path<String>,
    JsonBody(request): JsonBody<RetryBody>,
) -> Result<Json<Execution>, ApiError> {
    api.writable()?;
    let id = execution_id(&id)?;
    Ok(Json(api.client.retry(id, request.request()).await?))
}

async fn pause_execution(
    State(api): State<Arc<Api>>,
    Path(id): Path<String>,
    JsonBody(_): JsonBody<Empty>,
) -> Result<Json<Execution>, ApiError> {
    api.writable()?;
    Ok(Json(api.client.pause(execution_id(&id)?).await?))
}

async fn resume_execution(
    State(api): State<Arc<Api>>,
    Path(id): Path<String>,
    JsonBody(request): JsonBody<ResumeRequest>,
) -> Result<Json<Execution>, ApiError> {
    api.writable()?;
    let by = request.requested_by.as_deref().unwrap_or(API_CALLER);
    Ok(Json(api.client.resume(execution_id(&id)?, by).await?))
}

/// A body with nothing in it: `{}` or none.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Empty {}

async fn bulk_action(
    State(api): State<Arc<Api>>,
    JsonBody(request): JsonBody<BulkRequest>,
) -> Result<Json<BulkOutcome>, ApiError> {
    if !matches!(request.action, BulkAction::Count) {
        api.writable()?;
    }
    let body = request.filter;
    let filter = ExecutionFilter {
        statuses: body.statuses,
        workflow: body.workflow.as_deref().map(WorkflowRef::from),
        created_before: body.created_before,
        created_after: body.created_after,
        error_contains: body.error_contains,
    };
    if filter.is_empty() && !body.all {
        return Err(ApiError::bad_request(
            "the filter is empty: give statuses, workflow, created_before, created_after or \
             error_contains, or all: true to act on every execution",
        ));
    }
    if !filter.is_empty() && body.all {
        return Err(ApiError::bad_request(
            "all: true cannot be combined with a filter",
        ));
    }
    let client = &api.client;
    let outcome = match request.action {
        BulkAction::Count => BulkOutcome {
            matched: client.count_matching(&filter).await?,
            affected: 0,
        },
        BulkAction::Cancel => {
            let reason = request.reason.as_deref().unwrap_or("cancelled by request");
            client.cancel_matching(&filter, reason).await?
        }
        BulkAction::Retry => {
            client
                .retry_matching(&filter, &request.retry.request())
                .await?
        }
        BulkAction::Delete => client.delete_matching(&filter).await?,
    };
    Ok(Json(outcome))
}

async fn list_schedules(State(api): State<Arc<Api>>) -> Result<Json<Vec<Schedule>>, ApiError> {
    Ok(Json(api.client.schedules().await?))
}

async fn pause_schedule(
    State(api): State<Arc<Api>>,
    Path(id): Path<String>,
    JsonBody(_): JsonBody<Empty>,
) -> Result<Json<Schedule>, ApiError> {
    api.writable()?;
    Ok(Json(api.client.pause_schedule(schedule_id(&id)?).await?))
}

async fn resume_schedule(
    State(api): State<Arc<Api>>,
    Path(id): Path<String>,
    JsonBody(_): JsonBody<Empty>,
) -> Result<Json<Schedule>, ApiError> {
    api.writable()?;
    Ok(Json(api.client.resume_schedule(schedule_id(&id)?).await?))
}

async fn trigger_schedule(
    State(api): State<Arc<Api>>,
    Path(id): Path<String>,
    JsonBody(_): JsonBody<Empty>,
) -> Result<(StatusCode, Json<Execution>), ApiError> {
    api.writable()?;
    let execution = api.client.trigger_schedule(schedule_id(&id)?).await?;
    Ok((StatusCode::CREATED, Json(execution)))
}

async fn health(State(api): State<Arc<Api>>) -> Result<Json<Health>, ApiError> {
    let stats = api.client.queue_stats().await?;
    let workers = api.client.live_workers().await?;
    Ok(Json(Health {
        queue: QueueHealth {
            runnable: stats.runnable,
            oldest_runnable_age_seconds: stats.oldest_runnable_age.as_secs_f64(),
            waiting: stats.waiting,
            running: stats.running,
            unrunnable: stats.unrunnable,
        },
        workers,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_bad_ones_are_named() {
        let at = DateTime::from_timestamp_micros(1_764_000_000_123_456).unwrap();
        let id = ExecutionId::new();
        let text = format!("{}_{id}", at.timestamp_micros());
        assert_eq!(
            parse_cursor(&text).unwrap(),
            ExecutionCursor { created_at: at, id }
        );
        for bad in ["", "12", "x_y", "12_not-a-uuid"] {
            let err = parse_cursor(bad).unwrap_err();
            assert_eq!(err.status, StatusCode::BAD_REQUEST);
            assert!(err.body.error.message.contains(bad), "{bad}");
        }
    }

    #[test]
    fn every_route_has_a_unique_operation_and_method_and_path() {
        let routes = routes();
        let mut operations: Vec<&str> = routes.iter().map(|r| r.operation_id).collect();
        operations.sort_unstable();
        operations.dedup();
        assert_eq!(operations.len(), routes.len());
        let mut endpoints: Vec<(&str, &str)> = routes.iter().map(|r| (r.method, r.path)).collect();
        endpoints.sort_unstable();
        endpoints.dedup();
        assert_eq!(endpoints.len(), routes.len());
        assert!(routes.iter().all(|r| r.action == (r.method == "post")));
    }
}
