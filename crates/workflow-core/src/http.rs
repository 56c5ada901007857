//! The web UI and the HTTP JSON API (feature `http`): the Executions view operators open
//! after an incident, and what an application in any language calls to save workflows,
//! start, signal, cancel, retry, pause and resume executions, read them, act on many at once,
//! and watch the queue.
//!
//! [`router`] builds an axum [`Router`] over a [`Client`]: the pages at `/executions`,
//! `/workflows`, `/schedules` and `/health` (`ui.rs`), the API under `/api/v1/` and its
//! OpenAPI 3.1 document at `/api/openapi.json`. Mount it in a service of your own (under any
//! prefix, with [`Router::nest`]) or serve it alone:
//!
//! ```no_run
//! # async fn serve(client: workflow_worker_core::Client) -> std::io::Result<()> {
//! use workflow_worker_core::http::{self, ApiOptions};
//!
//! let app = http::router(client, ApiOptions::default());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, app).await
//! # }
//! ```
//!
//! Every route is declared once, in `routes.rs`, with its handler and the types it reads and
//! answers; the router and the OpenAPI document (`openapi.rs`) are both built from that one
//! table, so the document cannot drift from what is served. Errors are JSON,
//! `{"error": {"code": "not_found", "message": "execution … not found"}}`, with the HTTP
//! status that fits (400 malformed input, 404 unknown ids, 409 a state that forbids the
//! action, 415 a body that is not JSON, 422 an invalid workflow, with each problem listed,
//! 503 the database away); a message never carries a database password or driver detail.
//!
//! Actions are POSTs whose body must be JSON (`Content-Type: application/json`; an empty
//! body counts as `{}`), so a page of another site cannot send them: browsers send
//! cross-site only form posts and plain text without asking first. With
//! [`ApiOptions::read_only`] the action routes answer 403.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{Client, Error, StoreError};

mod graph;
mod openapi;
mod routes;
mod ui;

pub use openapi::openapi;
pub use routes::{
    BulkAction, BulkRequest, CancelRequest, ExecutionPage, FilterBody, Health, ListQuery,
    QueueHealth, ResumeRequest, RetryBody, SignalRequest, SignalWithStartRequest, StartRequest,
    WorkflowQuery,
};

/// How the API is served.
#[derive(Clone, Default)]
pub struct ApiOptions {
    /// Refuse every action (403), serving only reads: for a dashboard that must not change
    /// anything.
    pub read_only: bool,
    /// Require this token on every request: `Authorization: Bearer TOKEN`, or basic auth
    /// with any user name and the token as password (what a browser prompts for). Without
    /// one the API is open to whoever reaches its address, so serve it on loopback only.
    pub token: Option<String>,
}

impl std::fmt::Debug for ApiOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiOptions")
            .field("read_only", &self.read_only)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// The UI's pages and the API's routes over `client`, as [`ApiOptions`] say: `/` (the
/// executions page), `/api/v1/...` and `/api/openapi.json`. Links in the pages keep the
/// prefix the router is nested under.
pub fn router(client: Client, options: ApiOptions) -> Router {
    let state = Arc::new(Api { client, options });
    let mut api = Router::new();
    for route in routes::routes() {
        api = api.route(route.path, route.handler);
    }
    Router::new()
        .merge(ui::routes())
        .nest("/api/v1", api)
        .route(
            "/api/openapi.json",
            axum::routing::get(|| async { Json(openapi()) }),
        )
        .fallback(|| async { ApiError::not_found("no such route") })
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            authenticate,
        ))
        .with_state(state)
}

/// Lets a request through if no token is required or it carries the token.
async fn authenticate(
    axum::extract::State(api): axum::extract::State<Arc<Api>>,
    request: Request,
    next: axum::middleware::Next,
) -> Response {
    match &api.options.token {
        Some(token) if !carries(request.headers(), token) => {
            let mut refused = ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "this API requires a token: send Authorization: Bearer <token>",
            )
            .into_response();
            refused.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Basic realm=\"workflow-worker\""),
            );
            refused
        }
        _ => next.run(request).await,
    }
}

/// Whether the request's `Authorization` carries `token`, as a bearer token or as the
/// password of basic auth.
fn carries(headers: &HeaderMap, token: &str) -> bool {
    use base64::Engine;

    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
    else {
        return false;
    };
    let (scheme, credentials) = value.trim().split_once(' ').unwrap_or((value, ""));
    let credentials = credentials.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return same(credentials.as_bytes(), token.as_bytes());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(credentials) else {
            return false;
        };
        let password = match decoded.iter().position(|&b| b == b':') {
            Some(colon) => &decoded[colon + 1..],
            None => return false,
        };
        return same(password, token.as_bytes());
    }
    false
}

/// Compares in time that depends on the lengths only, so the token cannot be guessed a
/// byte at a time from how long refusals take.
fn same(given: &[u8], expected: &[u8]) -> bool {
    given.len() == expected.len()
        && given
            .iter()
            .zip(expected)
            .fold(0u8, |diff, (a, b)| diff | (a ^ b))
            == 0
}

/// What every handler reads.
#[derive(Debug)]
struct Api {
    client: Client,
    options: ApiOptions,
}

impl Api {
    /// Refuses an action in read-only mode.
    fn writable(&self) -> Result<(), ApiError> {
        if self.options.read_only {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "read_only",
                "this API is read-only: actions are turned off",
            ));
        }
        Ok(())
    }
}

/// An error answer: its status, a stable machine-readable code, and a one-line message.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    body: ErrorBody,
}

/// The body of every error answer.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// What went wrong, in [`ErrorBody`].
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct ErrorDetail {
    /// Stable and machine-readable: `bad_request`, `not_found`, `conflict`,
    /// `invalid_workflow`, `unsupported_media_type`, `read_only`, `unavailable`, `internal`.
    pub code: String,
    /// One line for people, naming what is wrong.
    pub message: String,
    /// Every problem, one line each, when there are several (an invalid workflow).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
}

impl ApiError {
    fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            body: ErrorBody {
                error: ErrorDetail {
                    code: code.to_owned(),
                    message: message.into(),
                    problems: Vec::new(),
                },
            },
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        let message = err.to_string();
        match err {
            StoreError::NotFound { .. } => Self::not_found(message),
            StoreError::AlreadyEnded { .. }
            | StoreError::NotRetryable { .. }
            | StoreError::AlreadyRecorded { .. }
            | StoreError::SignalConsumed { .. }
            | StoreError::LeaseLost { .. }
            | StoreError::KeyInUse { .. }
            | StoreError::Constraint { .. } => Self::new(StatusCode::CONFLICT, "conflict", message),
            StoreError::KeyRequired { .. }
            | StoreError::KeyLength { .. }
            | StoreError::ConcurrencyKey(_) => Self::bad_request(message),
            StoreError::Unavailable(_) => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the database is unavailable; try again",
            ),
            // The message names no detail of the driver's (`database error`), and the
            // operator's log has the rest.
            other => {
                tracing::error!(error = %crate::worker::ErrorChain(&other), "API request failed");
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
            }
        }
    }
}

impl From<Error> for ApiError {
    fn from(err: Error) -> Self {
        match err {
            Error::Store(err) => err.into(),
            Error::Validation(errors) => {
                let mut error = Self::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_workflow",
                    errors.to_string(),
                );
                error.body.error.problems = errors.0.iter().map(ToString::to_string).collect();
                error
            }
            Error::Retry(err) => Self::bad_request(err.to_string()),
            Error::Schedule(err) => Self::bad_request(err.to_string()),
            other => Self::bad_request(other.to_string()),
        }
    }
}

/// A JSON request body, parsed strictly: the body must be declared JSON, and a field of the
/// wrong type or an unknown one is a 400 naming where it is. An empty body reads as `{}`.
#[derive(Debug)]
pub(crate) struct JsonBody<T>(pub(crate) T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(req.headers()) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "the body must be JSON, sent with Content-Type: application/json",
            ));
        }
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|err| ApiError::bad_request(err.body_text()))?;
        let text: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &bytes
        };
        let mut deserializer = serde_json::Deserializer::from_slice(text);
        let parsed = serde_path_to_error::deserialize(&mut deserializer).map_err(|err| {
            let path = err.path().to_string();
            let inner = err.into_inner();
            match path.as_str() {
                "." => ApiError::bad_request(format!("invalid JSON body: {inner}")),
                _ => ApiError::bad_request(format!("invalid JSON body at {path}: {inner}")),
            }
        })?;
        deserializer
            .end()
            .map_err(|err| ApiError::bad_request(format!("invalid JSON body: {err}")))?;
        Ok(Self(parsed))
    }
}

/// Query parameters, parsed strictly: an unknown parameter or a value of the wrong type is a
/// 400 naming it.
#[derive(Debug)]
pub(crate) struct QueryParams<T>(pub(crate) T);

impl<S: Send + Sync, T: DeserializeOwned> axum::extract::FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        let axum::extract::Query(query) = axum::extract::Query::from_request_parts(parts, state)
            .await
            .map_err(|err| ApiError::bad_request(err.body_text()))?;
        Ok(Self(query))
    }
}

/// Whether the request says its body is JSON (`application/json`, or a `+json` type).
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .map(|mime| mime.trim().to_ascii_lowercase())
        .is_some_and(|mime| mime == "application/json" || mime.ends_with("+json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_carried_as_bearer_or_as_the_basic_auth_password_only() {
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::AUTHORIZATION, value.parse().unwrap());
            carries(&headers, "s3cret")
        };
        assert!(with("Bearer s3cret"));
        assert!(with("bearer  s3cret "));
        // ops:s3cret and :s3cret
        assert!(with("Basic b3BzOnMzY3JldA=="));
        assert!(with("Basic OnMzY3JldA=="));
        assert!(!with("Bearer s3cre"));
        assert!(!with("Bearer s3cret!"));
        // s3cret as the user name, no password
        assert!(!with("Basic czNjcmV0Og=="));
        assert!(!with("Basic not base64"));
        assert!(!with("Token s3cret"));
        assert!(!carries(&HeaderMap::new(), "s3cret"));
    }

    #[test]
    fn only_json_content_types_are_json() {
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, value.parse().unwrap());
            is_json(&headers)
        };
        assert!(with("application/json"));
        assert!(with("Application/JSON; charset=utf-8"));
        assert!(with("application/merge-patch+json"));
        assert!(!with("text/plain"));
        assert!(!with("application/x-www-form-urlencoded"));
        assert!(!is_json(&HeaderMap::new()));
    }
}
