//! The web UI: server-rendered pages over the same [`Client`](crate::Client) as the API, with
//! no JavaScript needed to read or act (a small script only refreshes live pages).
//!
//! Pages: executions (filters, search by id, live refresh), one execution (its graph with
//! each node's state, the timeline of node runs, the signal inbox, the lease, and the
//! actions), workflows (versions, definition, graph), schedules (next ticks in their zone)
//! and health. Every value is escaped by maud, so a node output of `<script>` shows as text,
//! and the content security policy allows no inline script besides. Actions are form POSTs
//! carrying a token that must match the page's cookie (`SameSite=Strict`), from a page of
//! the same origin; in read-only mode they are neither shown nor accepted.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Form;
use axum::Router;
use axum::extract::{FromRequestParts, OriginalUri, Path};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use maud::{DOCTYPE, Markup, PreEscaped, html};
use serde::Deserialize;
use serde_json::Value;

use super::{Api, ApiError, QueryParams, graph};
use crate::execution::{Execution, ExecutionDetail, ExecutionId, NodeRun};
use crate::retry::{RetryFrom, RetryRequest};
use crate::schedule::{CronSchedule, ScheduleId};
use crate::state::ExecutionStatus;
use crate::store::{ExecutionCursor, ListExecutionsParams, SendSignalParams, Store, WorkflowRef};

/// How many item runs of `map` nodes an execution's page shows.
const SHOWN_ITEM_RUNS: usize = 200;

const STYLE: &str = include_str!("ui/style.css");
const SCRIPT: &str = include_str!("ui/app.js");
const CSRF_COOKIE: &str = "wfw_csrf";
const PAGE: u32 = 50;
/// Who a UI action is recorded as asked by.
const UI_CALLER: &str = "ui";

/// The pages and their actions.
pub(super) fn routes() -> Router<Arc<Api>> {
    Router::new()
        .route(
            "/",
            get(|ctx: Ctx| async move { Redirect::to(&ctx.link("/executions")) }),
        )
        .route("/ui/style.css", get(|| async { asset("text/css", STYLE) }))
        .route(
            "/ui/app.js",
            get(|| async { asset("text/javascript", SCRIPT) }),
        )
        .route("/executions", get(executions_page))
        .route("/executions/{id}", get(execution_page))
        .route("/executions/{id}/{action}", post(execution_action))
        .route("/workflows", get(workflows_page))
        .route("/workflows/{workflow}", get(workflow_page))
        .route("/schedules", get(schedules_page))
        .route("/schedules/{id}/{action}", post(schedule_action))
        .route("/health", get(health_page))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}

/// What every page knows of its request: where the UI is mounted, its CSRF token, and
/// whether actions are allowed.
struct Ctx {
    api: Arc<Api>,
    /// The prefix the UI is mounted under (`""` at the root).
    base: String,
    csrf: String,
    /// Set when the request carried no token cookie: the page sets this one.
    new_csrf: bool,
}

impl Ctx {
    fn link(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn writable(&self) -> bool {
        !self.api.options.read_only
    }
}

impl FromRequestParts<Arc<Api>> for Ctx {
    type Rejection = UiError;

    async fn from_request_parts(parts: &mut Parts, api: &Arc<Api>) -> Result<Self, UiError> {
        let original = OriginalUri::from_request_parts(parts, api)
            .await
            .map(|OriginalUri(uri)| uri.path().to_owned())
            .unwrap_or_default();
        let base = original
            .strip_suffix(parts.uri.path())
            .unwrap_or_default()
            .trim_end_matches('/')
            .to_owned();
        let cookie = cookie(&parts.headers, CSRF_COOKIE).filter(|token| token.len() == 32);
        let (csrf, new_csrf) = match cookie {
            Some(token) => (token, false),
            None => (uuid::Uuid::new_v4().simple().to_string(), true),
        };
        Ok(Self {
            api: api.clone(),
            base,
            csrf,
            new_csrf,
        })
    }
}

/// The value of cookie `name`, if the request has it.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_owned())
}

/// Whether a POST comes from a page of this origin: its `Origin` (or, without one, its
/// `Sec-Fetch-Site`) says so. Browsers send one of them with every form post; a request
/// with neither comes from no browser, so no other site can have caused it.
fn same_origin(headers: &HeaderMap) -> bool {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) {
        let origin_host = origin.split_once("://").map(|(_, rest)| rest);
        return origin_host.is_some() && origin_host == host;
    }
    match headers.get("sec-fetch-site").and_then(|s| s.to_str().ok()) {
        Some(site) => site == "same-origin" || site == "none",
        None => true,
    }
}

/// A page that failed: its status and why, as HTML.
#[derive(Debug)]
pub(super) struct UiError(ApiError);

impl From<ApiError> for UiError {
    fn from(err: ApiError) -> Self {
        Self(err)
    }
}

impl From<crate::StoreError> for UiError {
    fn from(err: crate::StoreError) -> Self {
        Self(err.into())
    }
}

impl From<crate::Error> for UiError {
    fn from(err: crate::Error) -> Self {
        Self(err.into())
    }
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        let ApiError { status, body } = self.0;
        let markup = html! {
            (DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    title { (status.as_u16()) " · workflow-worker" }
                    style { (PreEscaped(STYLE)) }
                }
                body {
                    main {
                        h1 { (status.as_u16()) " " (status.canonical_reason().unwrap_or("")) }
                        p.error { (body.error.message) }
                        @for problem in &body.error.problems { p.error { (problem) } }
                        p { a href="javascript:history.back()" { "Back" } }
                    }
                }
            }
        };
        let mut response = (status, markup).into_response();
        secure(response.headers_mut());
        response
    }
}

/// Headers every page gets: no framing, no sniffing, and a content policy that runs only
/// this UI's own script.
fn secure(headers: &mut HeaderMap) {
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self' 'unsafe-inline'; script-src 'self'; \
             img-src 'self' data:; connect-src 'self'; form-action 'self'; \
             frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
}

/// A whole page: the layout around `body`.
fn page(ctx: &Ctx, title: &str, active: &str, body: Markup) -> Response {
    let nav = [
        ("executions", "/executions", "Executions"),
        ("workflows", "/workflows", "Workflows"),
        ("schedules", "/schedules", "Schedules"),
        ("health", "/health", "Health"),
    ];
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · workflow-worker" }
                link rel="stylesheet" href=(ctx.link("/ui/style.css"));
                script src=(ctx.link("/ui/app.js")) defer {}
            }
            body {
                header {
                    a.brand href=(ctx.link("/executions")) { "workflow-worker" }
                    nav {
                        @for (key, path, label) in nav {
                            a.active[key == active] href=(ctx.link(path)) { (label) }
                        }
                    }
                    @if !ctx.writable() { span.badge.readonly { "read-only" } }
                }
                main { (body) }
            }
        }
    };
    let mut response = markup.into_response();
    secure(response.headers_mut());
    if ctx.new_csrf {
        let path = if ctx.base.is_empty() { "/" } else { &ctx.base };
        let cookie = format!(
            "{CSRF_COOKIE}={}; Path={path}; SameSite=Strict; HttpOnly",
            ctx.csrf
        );
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            response.headers_mut().insert(header::SET_COOKIE, value);
        }
    }
    response
}

fn time(at: Option<DateTime<Utc>>) -> String {
    at.map_or_else(
        || "—".to_owned(),
        |at| at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
    )
}

fn duration(from: Option<DateTime<Utc>>, to: Option<DateTime<Utc>>) -> String {
    match (from, to) {
        (Some(from), Some(to)) => {
            let ms = (to - from).num_milliseconds();
            if ms < 1000 {
                format!("{ms} ms")
            } else {
                format!("{:.1} s", ms as f64 / 1000.0)
            }
        }
        _ => "—".to_owned(),
    }
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

fn badge(status: impl std::fmt::Display) -> Markup {
    let status = status.to_string();
    html! { span class={"badge " (status)} { (status) } }
}

/// The hidden token every action form carries.
fn csrf_field(ctx: &Ctx) -> Markup {
    html! { input type="hidden" name="csrf" value=(ctx.csrf); }
}

/// Query of the executions page.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListPage {
    #[serde(default, deserialize_with = "empty_is_none")]
    status: Option<ExecutionStatus>,
    #[serde(default, deserialize_with = "empty_is_none")]
    workflow: Option<String>,
    /// An execution id to open.
    #[serde(default, deserialize_with = "empty_is_none")]
    q: Option<String>,
    #[serde(default, deserialize_with = "empty_is_none")]
    cursor: Option<String>,
}

/// A form field left empty is no value.
fn empty_is_none<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    let text: Option<String> = Option::deserialize(deserializer)?;
    match text.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(text) => text.parse().map(Some).map_err(serde::de::Error::custom),
    }
}

async fn executions_page(
    ctx: Ctx,
    QueryParams(query): QueryParams<ListPage>,
) -> Result<Response, UiError> {
    if let Some(q) = &query.q {
        let id: ExecutionId = q.parse().map_err(|_| {
            ApiError::bad_request(format!("\"{q}\" is not an execution id (a UUID)"))
        })?;
        return Ok(Redirect::to(&ctx.link(&format!("/executions/{id}"))).into_response());
    }
    let before = match &query.cursor {
        Some(cursor) => Some(super::routes::parse_cursor(cursor)?),
        None => None,
    };
    let client = &ctx.api.client;
    let workflow = query.workflow.as_deref().map(WorkflowRef::from);
    let executions = client
        .executions(ListExecutionsParams {
            status: query.status,
            workflow,
            limit: PAGE,
            before,
        })
        .await?;
    let next = (executions.len() == PAGE as usize)
        .then(|| executions.last().map(ExecutionCursor::after))
        .flatten();
    let older = next.map(|cursor| {
        let mut link = format!(
            "{}?cursor={}_{}",
            ctx.link("/executions"),
            cursor.created_at.timestamp_micros(),
            cursor.id
        );
        if let Some(status) = query.status {
            link.push_str(&format!("&status={status}"));
        }
        if let Some(workflow) = &query.workflow {
            link.push_str("&workflow=");
            link.push_str(&form_encode(workflow));
        }
        link
    });
    let body = html! {
        h1 { "Executions" }
        form.filters method="get" action=(ctx.link("/executions")) {
            label { "Status "
                select name="status" {
                    option value="" { "any" }
                    @for status in ExecutionStatus::ALL {
                        option value=(status) selected[query.status == Some(status)] { (status) }
                    }
                }
            }
            label { "Workflow " input name="workflow" value=[query.workflow.as_deref()] placeholder="name or id"; }
            button type="submit" { "Filter" }
        }
        form.filters method="get" action=(ctx.link("/executions")) {
            label { "Open " input name="q" placeholder="execution id" size="36"; }
            button type="submit" { "Open" }
        }
        p.live { label { input id="live" type="checkbox" checked; " live" } }
        div id="executions" data-live="" {
            div.scroll {
                table {
                    thead { tr { th { "Execution" } th { "Workflow" } th { "Status" } th { "Created" } th { "Took" } } }
                    tbody {
                        @for e in &executions {
                            tr {
                                td.mono { a href=(ctx.link(&format!("/executions/{}", e.id))) { (short(e.id)) } }
                                td { (e.workflow_name) " v" (e.workflow_version) }
                                td { (badge(e.status)) }
                                td { (time(Some(e.created_at))) }
                                td { (duration(e.started_at, e.finished_at)) }
                            }
                        }
                    }
                }
            }
            @if executions.is_empty() { p.empty { "No executions match." } }
            @if let Some(older) = older { p { a href=(older) { "Older →" } } }
        }
    };
    Ok(page(&ctx, "Executions", "executions", body))
}

/// `text` as a URL query value.
fn form_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn short(id: ExecutionId) -> String {
    id.to_string()[..8].to_owned()
}

/// Query of the execution page: what an action just did.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Done {
    done: Option<String>,
}

fn notice(done: Option<&str>) -> Option<&'static str> {
    Some(match done? {
        "signalled" => "Signal sent.",
        "cancelled" => "Cancelled.",
        "retried" => "Retrying: it runs again from where it stopped.",
        "paused" => "Paused (a running execution pauses once its running nodes finish).",
        "resumed" => "Resumed.",
        "triggered" => "Started an execution of the schedule's workflow.",
        "schedule-paused" => "Schedule paused.",
        "schedule-resumed" => "Schedule resumed.",
        _ => return None,
    })
}

/// Each node's state on the graph, from its latest run that no retry superseded.
fn node_states(runs: &[NodeRun]) -> HashMap<String, (String, String)> {
    let mut states = HashMap::new();
    for run in runs.iter().filter(|run| run.superseded_by.is_none()) {
        let title = format!(
            "attempt {}, {}, {}",
            run.attempt,
            run.status,
            duration(Some(run.started_at), Some(run.finished_at))
        );
        states.insert(run.node_id.clone(), (run.status.to_string(), title));
    }
    states
}

/// The signals the execution's waiting nodes (those whose latest run is a wait) wait for,
/// while it has not ended.
fn awaited(detail: &ExecutionDetail, definition: &crate::graph::WorkflowDefinition) -> Vec<String> {
    if detail.execution.status.is_terminal() {
        return Vec::new();
    }
    let mut latest: HashMap<&str, crate::execution::NodeRunStatus> = HashMap::new();
    for run in detail
        .node_runs
        .iter()
        .filter(|run| run.superseded_by.is_none())
    {
        latest.insert(run.node_id.as_str(), run.status);
    }
    let waiting: Vec<&str> = latest
        .into_iter()
        .filter(|(_, status)| *status == crate::execution::NodeRunStatus::Waiting)
        .map(|(node, _)| node)
        .collect();
    let mut names: Vec<String> = definition
        .nodes
        .iter()
        .filter(|node| waiting.contains(&node.id.as_str()))
        .filter_map(|node| node.config["signal"].as_str().map(str::to_owned))
        .collect();
    names.sort();
    names.dedup();
    names
}

async fn execution_page(
    ctx: Ctx,
    Path(id): Path<String>,
    QueryParams(done): QueryParams<Done>,
) -> Result<Response, UiError> {
    let id = super::routes::execution_id(&id)?;
    let client = &ctx.api.client;
    let detail = client.execution(id).await?;
    let version = client.workflow_version_of(&detail.execution).await?;
    let e = &detail.execution;
    let states = node_states(&detail.node_runs);
    let signals = awaited(&detail, &version.definition);
    let body = html! {
        @if let Some(notice) = notice(done.done.as_deref()) { p.notice { (notice) } }
        div id="execution" data-live=[(!e.status.is_terminal()).then_some("")] {
            h1 { "Execution " span.mono { (short(e.id)) } " " (badge(e.status)) }
            @if ctx.writable() { (actions(&ctx, &detail, &signals)) }
            section.facts {
                dl {
                    dt { "Id" } dd.mono { (e.id) }
                    dt { "Workflow" } dd { a href=(ctx.link(&format!("/workflows/{}?version={}", e.workflow_name, e.workflow_version))) { (e.workflow_name) " v" (e.workflow_version) } }
                    @if let Some(key) = &e.key { dt { "Key" } dd.mono { (key) } }
                    dt { "Priority" } dd { (e.priority) }
                    @if let Some(group) = &e.concurrency_key {
                        dt { "Concurrency group" } dd {
                            @if group.is_empty() { "the workflow's" } @else { span.mono { (group) } }
                            @if let Some(since) = e.held_since { " (held back by its limit since " (time(Some(since))) ")" }
                        }
                    }
                    @if let Some(parent) = &e.parent {
                        dt { "Parent" } dd {
                            a.mono href=(ctx.link(&format!("/executions/{}", parent.execution_id))) { (short(parent.execution_id)) }
                            " (node " (parent.node_id) ", attempt " (parent.attempt) ")"
                        }
                    }
                    @if !detail.children.is_empty() {
                        dt { "Children" } dd {
                            @for child in &detail.children {
                                div {
                                    a.mono href=(ctx.link(&format!("/executions/{}", child.id))) { (short(child.id)) }
                                    " " (child.workflow_name) " " (badge(child.status))
                                    " " span.muted { "from " (child.node_id) " attempt " (child.attempt) }
                                }
                            }
                        }
                    }
                    dt { "Created" } dd { (time(Some(e.created_at))) }
                    dt { "Started" } dd { (time(e.started_at)) }
                    dt { "Finished" } dd { (time(e.finished_at)) " (" (duration(e.started_at, e.finished_at)) ")" }
                    @if e.deadline.is_some() { dt { "Deadline" } dd { (time(e.deadline)) } }
                    @if !e.status.is_terminal() {
                        dt { "Runnable at" } dd { (time(e.run_at)) }
                        dt { "Lease" } dd {
                            @match &e.lease_owner {
                                Some(owner) => { (owner) " until " (time(e.lease_expires_at)) }
                                None => "none",
                            }
                        }
                    }
                    @if let Some(asked) = e.pause_requested_at { dt { "Pause" } dd { "asked at " (time(Some(asked))) "; it pauses once its running nodes finish" } }
                    @if let Some(schedule) = e.schedule_id { dt { "Schedule" } dd.mono { (schedule) } }
                    @if let Some(error) = &e.error { dt { "Error" } dd.error { (error) } }
                }
            }
            section {
                h2 { "Graph" }
                div.scroll { (graph::svg(&version.definition, &states)) }
            }
            section {
                h2 { "Node runs" }
                div.scroll {
                    table.runs {
                        thead { tr { th { "Node" } th { "Attempt" } th { "Status" } th { "Started" } th { "Took" } th { "Worker" } } }
                        tbody {
                            @for run in &detail.node_runs {
                                tr class=[run.superseded_by.map(|_| "superseded")] data-node=(run.node_id) {
                                    td { (run.node_id) " " span.muted { (run.node_type) } }
                                    td { (run.attempt) }
                                    td { (badge(run.status)) @if let Some(branch) = &run.branch { " → " (branch) } @if let Some(retry) = run.superseded_by { " " span.muted { "superseded by retry " (retry) } } }
                                    td { (time(Some(run.started_at))) }
                                    td { (duration(Some(run.started_at), Some(run.finished_at))) }
                                    td.muted { (run.worker_id.as_deref().unwrap_or("—")) }
                                }
                                tr.detail {
                                    td colspan="6" {
                                        @if let Some(error) = &run.error { pre.error { (error) } }
                                        details {
                                            summary { "input and output" }
                                            @if let Some(input) = &run.input { h3 { "Input" } pre { (pretty(input)) } }
                                            @if let Some(output) = &run.output { h3 { "Output" } pre.output { (pretty(output)) } }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
                @if detail.node_runs.is_empty() { p.empty { "No node has run yet." } }
            }
            @if !detail.item_runs.is_empty() {
                section {
                    h2 { "Map items (" (detail.item_runs.len()) " runs)" }
                    div.scroll {
                        table.runs {
                            thead { tr { th { "Item" } th { "Attempt" } th { "Status" } th { "Took" } th { "Output or error" } } }
                            tbody {
                                @for run in detail.item_runs.iter().take(SHOWN_ITEM_RUNS) {
                                    tr {
                                        td { (run.node_id) "[" (run.item) "]" }
                                        td { (run.attempt) }
                                        td { (badge(run.status)) }
                                        td { (duration(Some(run.started_at), Some(run.finished_at))) }
                                        td.mono {
                                            @match (&run.error, &run.output) {
                                                (Some(error), _) => span.error { (error) },
                                                (None, Some(output)) => (output.to_string()),
                                                (None, None) => "",
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                    @if detail.item_runs.len() > SHOWN_ITEM_RUNS {
                        p.muted { "The first " (SHOWN_ITEM_RUNS) " are shown; the API has every one." }
                    }
                }
            }
            section {
                h2 { "Signals" }
                @if detail.signals.is_empty() { p.empty { "No signal received." } } @else {
                    div.scroll {
                        table {
                            thead { tr { th { "Name" } th { "Payload" } th { "Received" } th { "Consumed" } } }
                            tbody {
                                @for signal in &detail.signals {
                                    tr {
                                        td { (signal.name) }
                                        td { pre { (pretty(&signal.payload)) } }
                                        td { (time(Some(signal.created_at))) }
                                        td { @match &signal.consumed_by_node { Some(node) => { "by " (node) " at " (time(signal.consumed_at)) } None => "pending", } }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            @if !detail.retries.is_empty() {
                section {
                    h2 { "Retries" }
                    ul {
                        @for retry in &detail.retries {
                            li { "retry " (retry.id) ": from " (retry.from.mode()) @if let Some(node) = retry.from.node() { " " (node) } " of " (retry.from_status) " on v" (retry.workflow_version) ", by " (retry.requested_by) " at " (time(Some(retry.requested_at))) }
                        }
                    }
                }
            }
            section {
                h2 { "Input" } pre { (pretty(&e.input)) }
                @if let Some(output) = &e.output { h2 { "Output" } pre.output { (pretty(output)) } }
            }
        }
    };
    Ok(page(
        &ctx,
        &format!("Execution {}", short(e.id)),
        "executions",
        body,
    ))
}

/// The buttons the execution's status allows.
fn actions(ctx: &Ctx, detail: &ExecutionDetail, signals: &[String]) -> Markup {
    let e = &detail.execution;
    let action = |verb: &str| ctx.link(&format!("/executions/{}/{verb}", e.id));
    let paused_by_failure = e.status == ExecutionStatus::Paused && e.error.is_some();
    let retryable = e.status.is_retryable() || paused_by_failure;
    let nodes: Vec<&str> = {
        let mut nodes: Vec<&str> = detail
            .node_runs
            .iter()
            .map(|r| r.node_id.as_str())
            .collect();
        nodes.sort_unstable();
        nodes.dedup();
        nodes
    };
    html! {
        section.actions {
            @for name in signals {
                form method="post" action=(action("signal")) {
                    (csrf_field(ctx))
                    input type="hidden" name="name" value=(name);
                    input type="hidden" name="payload" value=r#"{"approved": true}"#;
                    button.approve type="submit" data-action="approve" { "Approve (" (name) ")" }
                }
                form method="post" action=(action("signal")) {
                    (csrf_field(ctx))
                    input type="hidden" name="name" value=(name);
                    input type="hidden" name="payload" value=r#"{"approved": false}"#;
                    button.reject type="submit" data-action="reject" { "Reject" }
                }
            }
            @if !e.status.is_terminal() {
                @if e.status == ExecutionStatus::Paused || e.pause_requested_at.is_some() {
                    form method="post" action=(action("resume")) { (csrf_field(ctx)) button type="submit" data-action="resume" { "Resume" } }
                } @else {
                    form method="post" action=(action("pause")) { (csrf_field(ctx)) button type="submit" data-action="pause" { "Pause" } }
                }
                form method="post" action=(action("cancel")) { (csrf_field(ctx)) button.danger type="submit" data-action="cancel" { "Cancel" } }
            }
            @if retryable {
                form method="post" action=(action("retry")) {
                    (csrf_field(ctx))
                    select name="from" aria-label="retry from" {
                        option value="stopped" { "from where it stopped" }
                        option value="start" { "from the start" }
                        @for node in &nodes { option value={"node:" (node)} { "from " (node) } }
                    }
                    label { input type="checkbox" name="latest" value="on"; " latest version" }
                    button type="submit" data-action="retry" { "Retry" }
                }
            }
            @if !e.status.is_terminal() {
                details.signal {
                    summary { "Send a signal" }
                    form method="post" action=(action("signal")) {
                        (csrf_field(ctx))
                        label { "Name " input name="name" required value=[signals.first()]; }
                        label { "Payload (JSON) " textarea name="payload" rows="3" { "{}" } }
                        button type="submit" { "Send" }
                    }
                }
            }
        }
    }
}

/// The fields of every action form.
#[derive(Debug, Default, Deserialize)]
struct ActionForm {
    #[serde(default)]
    csrf: String,
    name: Option<String>,
    payload: Option<String>,
    reason: Option<String>,
    from: Option<String>,
    latest: Option<String>,
}

/// Refuses an action without the page's token, from another origin, or when read-only.
fn check_action(ctx: &Ctx, headers: &HeaderMap, form: &ActionForm) -> Result<(), UiError> {
    ctx.api.writable()?;
    let token_ok = !ctx.new_csrf && super::same(form.csrf.as_bytes(), ctx.csrf.as_bytes());
    if !token_ok || !same_origin(headers) {
        return Err(UiError(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "this action did not come from a page of this UI: reload the page and try again",
        )));
    }
    Ok(())
}

async fn execution_action(
    ctx: Ctx,
    Path((id, action)): Path<(String, String)>,
    headers: HeaderMap,
    Form(form): Form<ActionForm>,
) -> Result<Response, UiError> {
    check_action(&ctx, &headers, &form)?;
    let id = super::routes::execution_id(&id)?;
    let client = &ctx.api.client;
    let done = match action.as_str() {
        "signal" => {
            let name = form
                .name
                .filter(|n| !n.trim().is_empty())
                .ok_or_else(|| ApiError::bad_request("a signal needs a name"))?;
            let payload: Value = match form.payload.as_deref().map(str::trim) {
                None | Some("") => Value::Null,
                Some(text) => serde_json::from_str(text).map_err(|err| {
                    ApiError::bad_request(format!("the payload is not JSON: {err}"))
                })?,
            };
            client
                .signal(SendSignalParams {
                    execution_id: id,
                    name,
                    payload,
                    idempotency_key: None,
                })
                .await?;
            "signalled"
        }
        "cancel" => {
            let reason = form.reason.as_deref().unwrap_or("cancelled from the UI");
            client.cancel(id, reason).await?;
            "cancelled"
        }
        "retry" => {
            let from = match form.from.as_deref() {
                None | Some("stopped") => RetryFrom::Stopped,
                Some("start") => RetryFrom::Start,
                Some(other) => match other.strip_prefix("node:") {
                    Some(node) => RetryFrom::Node(node.to_owned()),
                    None => {
                        return Err(ApiError::bad_request(format!(
                            "\"{other}\" is not where a retry runs from"
                        ))
                        .into());
                    }
                },
            };
            let mut request = RetryRequest::new(UI_CALLER).from(from);
            if form.latest.is_some() {
                request = request.latest();
            }
            client.retry(id, request).await?;
            "retried"
        }
        "pause" => {
            client.pause(id).await?;
            "paused"
        }
        "resume" => {
            client.resume(id, UI_CALLER).await?;
            "resumed"
        }
        other => return Err(ApiError::not_found(format!("no action \"{other}\"")).into()),
    };
    Ok(Redirect::to(&ctx.link(&format!("/executions/{id}?done={done}"))).into_response())
}

async fn workflows_page(ctx: Ctx) -> Result<Response, UiError> {
    let workflows = ctx.api.client.workflows().await?;
    let body = html! {
        h1 { "Workflows" }
        div.scroll {
            table {
                thead { tr { th { "Name" } th { "Latest" } th { "Saved" } th { "Executions" } } }
                tbody {
                    @for w in &workflows {
                        tr {
                            td { a href=(ctx.link(&format!("/workflows/{}", w.name))) { (w.name) } }
                            td { "v" (w.latest_version) }
                            td { (time(Some(w.updated_at))) }
                            td { a href=(ctx.link(&format!("/executions?workflow={}", form_encode(&w.name)))) { "executions" } }
                        }
                    }
                }
            }
        }
        @if workflows.is_empty() { p.empty { "No workflow saved yet." } }
    };
    Ok(page(&ctx, "Workflows", "workflows", body))
}

/// Query of a workflow's page.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct VersionQuery {
    version: Option<i32>,
}

async fn workflow_page(
    ctx: Ctx,
    Path(workflow): Path<String>,
    QueryParams(query): QueryParams<VersionQuery>,
) -> Result<Response, UiError> {
    let client = &ctx.api.client;
    let latest = client.workflow(workflow.as_str()).await?;
    let version = match query.version {
        Some(version) if version != latest.version => {
            client.workflow_at(workflow.as_str(), version).await?
        }
        _ => latest.clone(),
    };
    let definition = serde_json::to_value(&version.definition).unwrap_or_default();
    let body = html! {
        h1 { (version.name) " v" (version.version) }
        p {
            "Versions: "
            @for v in (1..=latest.version).rev() {
                @if v == version.version { strong { "v" (v) } " " }
                @else { a href=(ctx.link(&format!("/workflows/{}?version={v}", version.name))) { "v" (v) } " " }
            }
        }
        p { "Saved " (time(Some(version.created_at))) " · " a href=(ctx.link(&format!("/executions?workflow={}", form_encode(&version.name)))) { "its executions" } }
        section { h2 { "Graph" } div.scroll { (graph::svg(&version.definition, &HashMap::new())) } }
        section { h2 { "Definition" } pre { (pretty(&definition)) } }
    };
    Ok(page(&ctx, &version.name, "workflows", body))
}

async fn schedules_page(
    ctx: Ctx,
    QueryParams(done): QueryParams<Done>,
) -> Result<Response, UiError> {
    let client = &ctx.api.client;
    let schedules = client.schedules().await?;
    let now = client.store().now().await?;
    let body = html! {
        @if let Some(notice) = notice(done.done.as_deref()) { p.notice { (notice) } }
        h1 { "Schedules" }
        div.scroll {
            table {
                thead { tr { th { "Workflow" } th { "Cron" } th { "Zone" } th { "State" } th { "Next ticks" } @if ctx.writable() { th {} } } }
                tbody {
                    @for s in &schedules {
                        tr {
                            td { a href=(ctx.link(&format!("/workflows/{}", s.workflow_name))) { (s.workflow_name) } }
                            td.mono { (s.cron) }
                            td { (s.timezone) }
                            td { @if s.enabled { (badge("enabled")) } @else { (badge("paused")) } }
                            td { @for tick in next_ticks(&s.cron, &s.timezone, now) { (tick) br; } }
                            @if ctx.writable() {
                                td.actions {
                                    @let action = |verb: &str| ctx.link(&format!("/schedules/{}/{verb}", s.id));
                                    @if s.enabled {
                                        form method="post" action=(action("pause")) { (csrf_field(&ctx)) button type="submit" { "Pause" } }
                                    } @else {
                                        form method="post" action=(action("resume")) { (csrf_field(&ctx)) button type="submit" { "Resume" } }
                                    }
                                    form method="post" action=(action("trigger")) { (csrf_field(&ctx)) button type="submit" { "Run now" } }
                                }
                            }
                        }
                    }
                }
            }
        }
        @if schedules.is_empty() { p.empty { "No schedule." } }
    };
    Ok(page(&ctx, "Schedules", "schedules", body))
}

/// The next three ticks, in the schedule's own zone.
fn next_ticks(cron: &str, timezone: &str, now: DateTime<Utc>) -> Vec<String> {
    let (Ok(schedule), Ok(zone)) = (
        CronSchedule::parse(cron, timezone),
        timezone.parse::<chrono_tz::Tz>(),
    ) else {
        return vec!["—".to_owned()];
    };
    schedule
        .ticks_after(now)
        .take(3)
        .map(|tick| {
            tick.with_timezone(&zone)
                .format("%Y-%m-%d %H:%M %Z")
                .to_string()
        })
        .collect()
}

async fn schedule_action(
    ctx: Ctx,
    Path((id, action)): Path<(String, String)>,
    headers: HeaderMap,
    Form(form): Form<ActionForm>,
) -> Result<Response, UiError> {
    check_action(&ctx, &headers, &form)?;
    let id: ScheduleId = id
        .parse()
        .map_err(|_| ApiError::bad_request(format!("\"{id}\" is not a schedule id (a UUID)")))?;
    let client = &ctx.api.client;
    let done = match action.as_str() {
        "pause" => {
            client.pause_schedule(id).await?;
            "schedule-paused"
        }
        "resume" => {
            client.resume_schedule(id).await?;
            "schedule-resumed"
        }
        "trigger" => {
            let execution: Execution = client.trigger_schedule(id).await?;
            return Ok(Redirect::to(
                &ctx.link(&format!("/executions/{}?done=triggered", execution.id)),
            )
            .into_response());
        }
        other => return Err(ApiError::not_found(format!("no action \"{other}\"")).into()),
    };
    Ok(Redirect::to(&ctx.link(&format!("/schedules?done={done}"))).into_response())
}

async fn health_page(ctx: Ctx) -> Result<Response, UiError> {
    let client = &ctx.api.client;
    let stats = client.queue_stats().await?;
    let workers = client.live_workers().await?;
    let body = html! {
        h1 { "Health" }
        div id="health" data-live="" {
            section.cards {
                div.card { span.n { (stats.runnable) } " runnable" }
                div.card { span.n { (format!("{:.1}", stats.oldest_runnable_age.as_secs_f64())) " s" } " oldest runnable" }
                div.card { span.n { (stats.waiting) } " waiting" }
                div.card { span.n { (stats.running) } " running" }
                div.card.alert[stats.unrunnable > 0] { span.n { (stats.unrunnable) } " no worker can run" }
            }
            h2 { "Workers seen recently" }
            div.scroll {
                table {
                    thead { tr { th { "Worker" } th { "Node types" } th { "Seen until" } } }
                    tbody {
                        @for w in &workers {
                            tr { td.mono { (w.id) } td { (w.node_types.join(", ")) } td { (time(Some(w.expires_at))) } }
                        }
                    }
                }
            }
            @if workers.is_empty() { p.empty { "No worker is running." } }
        }
    };
    Ok(page(&ctx, "Health", "health", body))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.insert(*name, value.parse().unwrap());
        }
        headers
    }

    #[test]
    fn posts_are_same_origin_only_when_the_browser_says_so_or_no_browser_sent_them() {
        assert!(same_origin(&headers(&[
            ("host", "a:8080"),
            ("origin", "http://a:8080")
        ])));
        assert!(!same_origin(&headers(&[
            ("host", "a:8080"),
            ("origin", "http://evil.example")
        ])));
        assert!(!same_origin(&headers(&[
            ("host", "a:8080"),
            ("origin", "null")
        ])));
        assert!(same_origin(&headers(&[("sec-fetch-site", "same-origin")])));
        assert!(!same_origin(&headers(&[("sec-fetch-site", "cross-site")])));
        assert!(same_origin(&headers(&[])));
    }

    #[test]
    fn cookies_are_found_by_name() {
        let h = headers(&[("cookie", "a=1; wfw_csrf=abc; b=2")]);
        assert_eq!(cookie(&h, "wfw_csrf").as_deref(), Some("abc"));
        assert_eq!(cookie(&h, "c"), None);
    }

    #[test]
    fn query_values_are_encoded() {
        assert_eq!(form_encode("a b&c=é"), "a%20b%26c%3D%C3%A9");
    }

    #[test]
    fn ticks_are_shown_in_the_schedules_zone() {
        let now = DateTime::parse_from_rfc3339("2026-12-01T00:00:00Z")
            .unwrap()
            .to_utc();
        let ticks = next_ticks("0 9 * * *", "Europe/Paris", now);
        assert_eq!(ticks[0], "2026-12-01 09:00 CET");
        assert_eq!(ticks.len(), 3);
        assert_eq!(next_ticks("nope", "UTC", now), vec!["—"]);
    }
}
