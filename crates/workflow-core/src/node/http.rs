//! The `http` node: calls an HTTP API and outputs its answer.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, StatusCode};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use url::Url;

use super::{BoxError, NodeContext, NodeError, NodeExecutor, NodeOutcome};
use crate::worker::ErrorChain;

pub(crate) const HTTP_TYPE: &str = "http";

/// How long one request may take, when the config does not say.
pub const DEFAULT_HTTP_TIMEOUT: Duration = Duration::from_secs(30);
/// The most bytes of a response body read, when the config does not say: 1 MiB.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 1 << 20;
/// How many redirects are followed, when the config does not say.
pub const DEFAULT_MAX_REDIRECTS: usize = 5;
/// The prefix of the environment variables secrets are read from.
pub const SECRET_ENV_PREFIX: &str = "WORKFLOW_SECRET_";
/// The longest wait a `Retry-After` asks for that is honoured.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// How much of an error response's body an error quotes.
const ERROR_BODY_CHARS: usize = 300;

type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpConfig {
    #[serde(default = "default_method")]
    method: String,
    url: String,
    #[serde(default)]
    headers: BTreeMap<String, Value>,
    #[serde(default)]
    query: BTreeMap<String, Value>,
    /// Headers whose values are secrets. Never rendered from templates (the worker leaves
    /// these keys alone), so only the definition names secrets.
    #[serde(default)]
    secret_headers: BTreeMap<String, SecretRef>,
    /// Query parameters whose values are secrets, likewise.
    #[serde(default)]
    secret_query: BTreeMap<String, SecretRef>,
    /// A JSON body.
    #[serde(default)]
    body: Option<Value>,
    /// A text body.
    #[serde(default)]
    text: Option<String>,
    /// Seconds one request may take.
    #[serde(default)]
    timeout: Option<f64>,
    #[serde(default)]
    max_response_bytes: Option<usize>,
    #[serde(default)]
    max_redirects: Option<usize>,
}

fn default_method() -> String {
    "GET".to_owned()
}

/// A header or query value from the config: a string, a number or a boolean.
fn param(kind: &str, name: &str, value: &Value) -> Result<String, String> {
    match value {
        Value::String(text) => Ok(text.clone()),
        Value::Number(number) => Ok(number.to_string()),
        Value::Bool(flag) => Ok(flag.to_string()),
        other => Err(format!(
            "{kind} \"{name}\": a string, a number or a boolean, not {other}; a secret goes in \
             secret_{kind}s as {{\"secret\": \"NAME\"}}"
        )),
    }
}

/// A secret from the worker's environment, by name, with what goes before it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretRef {
    secret: String,
    #[serde(default)]
    prefix: String,
}

/// Where secrets are read from.
#[derive(Clone)]
enum Secrets {
    /// `WORKFLOW_SECRET_<NAME>` in the process environment, when the node runs.
    Environment,
    /// A fixed set, by name.
    Given(Arc<BTreeMap<String, String>>),
}

/// The `http` node: calls an HTTP API and outputs its answer.
///
/// ```json
/// {"id": "charge", "type": "http", "retry": {"max_attempts": 5},
///  "config": {
///    "method": "POST",
///    "url": {"$template": "https://api.example.com/customers/{{ input.customer }}/charges"},
///    "secret_headers": {"Authorization": {"secret": "BILLING_TOKEN", "prefix": "Bearer "}},
///    "query": {"currency": "eur"},
///    "body": {"amount": {"$template": "{{ input.amount }}"}}
/// }}
/// ```
///
/// The output is `{"status", "headers", "body"}`: the status code, the response headers
/// (lowercase names; repeated ones joined with `, `) and the body, parsed when the response
/// says it is JSON, else as text. A 2xx completes the node. A 408, a 429, a 5xx and a
/// connection failure or timeout are retryable, waiting at least as long as the answer's
/// `Retry-After` asks (at most an hour); any other status fails the node for good. Redirects
/// are followed up to `max_redirects` (5), dropping `Authorization`, cookies and the headers
/// that hold secrets when they lead to another origin. The body read is capped at
/// `max_response_bytes` (1 MiB), and each request (redirects and body included) at `timeout`
/// seconds (30).
///
/// **Secrets** come from the worker's environment by name, never from the definition: an
/// entry `{"secret": "NAME"}` (optionally with a `prefix`) of `secret_headers` or
/// `secret_query` is the value of `WORKFLOW_SECRET_NAME` in the worker's environment when the
/// node runs. Only variables with that prefix can be read, so a definition cannot send the
/// worker's `DATABASE_URL` anywhere, and those two keys are never rendered from templates, so
/// an execution's input cannot name a secret either. Secret values never appear in the
/// node's output (an answer that echoes one has it replaced by `[secret NAME]`), its errors,
/// the history or the log.
#[derive(Clone)]
pub struct HttpNode {
    secrets: Secrets,
    /// Made on first use and shared by the clones, so connections are reused.
    client: Arc<OnceLock<HttpClient>>,
}

impl std::fmt::Debug for HttpNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secrets = match &self.secrets {
            Secrets::Environment => "environment",
            Secrets::Given(_) => "given",
        };
        f.debug_struct("HttpNode")
            .field("secrets", &secrets)
            .finish_non_exhaustive()
    }
}

impl Default for HttpNode {
    fn default() -> Self {
        Self {
            secrets: Secrets::Environment,
            client: Arc::default(),
        }
    }
}

impl HttpNode {
    /// Reads secrets from `secrets` by name (from a vault, say) instead of the worker's
    /// environment.
    #[must_use]
    pub fn secrets(mut self, secrets: BTreeMap<String, String>) -> Self {
        self.secrets = Secrets::Given(Arc::new(secrets));
        self
    }

    fn secret(&self, name: &str) -> Result<String, NodeError> {
        let found = match &self.secrets {
            Secrets::Environment => std::env::var(format!("{SECRET_ENV_PREFIX}{name}")).ok(),
            Secrets::Given(given) => given.get(name).cloned(),
        };
        found.ok_or_else(|| {
            NodeError::fatal(format!(
                "secret \"{name}\" is not set: set {SECRET_ENV_PREFIX}{name} in the worker's environment"
            ))
        })
    }

    /// The client: TLS by rustls with ring and the webpki roots, HTTP/1.1.
    fn client(&self) -> Result<&HttpClient, NodeError> {
        if let Some(client) = self.client.get() {
            return Ok(client);
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(NodeError::fatal)?
        .with_root_certificates(rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        })
        .with_no_client_auth();
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .build();
        let client = Client::builder(TokioExecutor::new()).build(connector);
        Ok(self.client.get_or_init(|| client))
    }

    /// Sends the request, following redirects up to `max_redirects`: a 303 (and a 301 or 302
    /// of a POST) continues as a GET without the body, and a redirect to another origin drops
    /// `Authorization`, `Cookie` and every header that holds a secret.
    async fn send(
        &self,
        mut request: Outgoing,
        max_redirects: usize,
        what: &str,
    ) -> Result<hyper::Response<hyper::body::Incoming>, NodeError> {
        let client = self.client()?;
        let mut redirects = 0;
        loop {
            let mut outgoing = Request::builder()
                .method(request.method.clone())
                .uri(request.url.as_str())
                .body(Full::new(request.body.clone().unwrap_or_default()))
                .map_err(|err| NodeError::fatal(format!("{what}: {err}")))?;
            *outgoing.headers_mut() = request.headers.clone();
            let response = client
                .request(outgoing)
                .await
                .map_err(|err| NodeError::retryable(format!("{what}: {}", ErrorChain(&err))))?;
            let status = response.status();
            let location = response
                .headers()
                .get(header::LOCATION)
                .and_then(|l| l.to_str().ok());
            let (true, Some(location)) = (status.is_redirection(), location) else {
                return Ok(response);
            };
            if redirects == max_redirects {
                return Err(NodeError::fatal(format!(
                    "{what}: more than {max_redirects} redirects (max_redirects)"
                )));
            }
            redirects += 1;
            let next = request.url.join(location).map_err(|err| {
                NodeError::fatal(format!("{what}: a redirect to \"{location}\": {err}"))
            })?;
            if !matches!(next.scheme(), "http" | "https") {
                return Err(NodeError::fatal(format!(
                    "{what}: a redirect to \"{location}\", which is not http or https"
                )));
            }
            if next.origin() != request.url.origin() {
                let sensitive: Vec<HeaderName> = request
                    .headers
                    .iter()
                    .filter(|(_, value)| value.is_sensitive())
                    .map(|(name, _)| name.clone())
                    .collect();
                for name in sensitive.iter().chain([
                    &header::AUTHORIZATION,
                    &header::COOKIE,
                    &header::PROXY_AUTHORIZATION,
                ]) {
                    request.headers.remove(name);
                }
            }
            let post = request.method == Method::POST;
            if status == StatusCode::SEE_OTHER
                || (post && matches!(status, StatusCode::MOVED_PERMANENTLY | StatusCode::FOUND))
            {
                request.method = Method::GET;
                request.body = None;
                request.headers.remove(header::CONTENT_TYPE);
            }
            request.url = next;
        }
    }
}

/// A request as it goes out, and as a redirect changes it.
struct Outgoing {
    method: Method,
    url: Url,
    headers: HeaderMap,
    body: Option<Bytes>,
}

/// Reads and checks a config.
fn parse(config: &Value) -> Result<(HttpConfig, Method, Url), BoxError> {
    if config.is_null() {
        return Err(r#"config is required: {"url": "https://…"}"#.into());
    }
    let config = HttpConfig::deserialize(config)?;
    let method = Method::from_bytes(config.method.to_ascii_uppercase().as_bytes())
        .map_err(|_| format!("method \"{}\" is not an HTTP method", config.method))?;
    let url = Url::parse(&config.url).map_err(|err| format!("url \"{}\": {err}", config.url))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("url \"{}\": only http and https are supported", config.url).into());
    }
    if config.body.is_some() && config.text.is_some() {
        return Err("give either body (JSON) or text, not both".into());
    }
    for name in config.headers.keys().chain(config.secret_headers.keys()) {
        HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("header \"{name}\" is not a valid header name"))?;
    }
    for (name, value) in &config.headers {
        param("header", name, value)?;
    }
    for (name, value) in &config.query {
        param("query", name, value)?;
    }
    for secret in config
        .secret_headers
        .values()
        .chain(config.secret_query.values())
    {
        let valid = !secret.secret.is_empty()
            && secret
                .secret
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(format!(
                "secret \"{}\": a name of letters, digits and _ (read from {SECRET_ENV_PREFIX}<name>)",
                secret.secret
            )
            .into());
        }
    }
    if let Some(timeout) = config.timeout
        && (timeout <= 0.0 || Duration::try_from_secs_f64(timeout).is_err())
    {
        return Err(format!("timeout ({timeout}) must be a positive number of seconds").into());
    }
    if config.max_response_bytes == Some(0) {
        return Err("max_response_bytes must be at least 1".into());
    }
    Ok((config, method, url))
}

/// Adds header `name: text`; a secret's is marked sensitive (hyper keeps it out of debug
/// output, and a redirect to another origin drops it).
fn append_header(
    headers: &mut HeaderMap,
    name: &str,
    text: &str,
    sensitive: bool,
) -> Result<(), NodeError> {
    let mut value = HeaderValue::from_str(text)
        .map_err(|_| NodeError::fatal(format!("header \"{name}\": not a valid header value")))?;
    value.set_sensitive(sensitive);
    let name = HeaderName::from_bytes(name.as_bytes()).map_err(NodeError::fatal)?;
    headers.append(name, value);
    Ok(())
}

/// `text` with every secret value in `secrets` replaced by `[secret NAME]`.
fn redact(text: &str, secrets: &[(String, String)]) -> String {
    let mut text = text.to_owned();
    for (name, value) in secrets {
        if !value.is_empty() && text.contains(value.as_str()) {
            text = text.replace(value.as_str(), &format!("[secret {name}]"));
        }
    }
    text
}

/// The URL as errors show it: without its query (which may hold a secret) or credentials.
fn shown(url: &Url) -> String {
    let mut shown = url.clone();
    shown.set_query(None);
    let _ = shown.set_password(None);
    let _ = shown.set_username("");
    shown.to_string()
}

/// How long a `Retry-After` header asks to wait (seconds, or an HTTP date), at most
/// [`MAX_RETRY_AFTER`].
fn retry_after(headers: &HeaderMap, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    let value = headers.get(header::RETRY_AFTER)?.to_str().ok()?.trim();
    let wait = match value.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => {
            let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
            (at.with_timezone(&chrono::Utc) - now)
                .to_std()
                .unwrap_or_default()
        }
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

/// The response headers as a JSON object: lowercase names, repeated values joined.
fn headers_json(headers: &HeaderMap) -> Value {
    let mut out: Map<String, Value> = Map::new();
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        match out.get_mut(name.as_str()) {
            Some(Value::String(existing)) => {
                existing.push_str(", ");
                existing.push_str(&value);
            }
            _ => {
                out.insert(name.as_str().to_owned(), Value::String(value));
            }
        }
    }
    Value::Object(out)
}

/// Reads at most `limit` bytes of the body; more is an error naming the limit.
async fn read_body(
    response: hyper::Response<hyper::body::Incoming>,
    limit: usize,
    what: &str,
) -> Result<Bytes, NodeError> {
    let too_large = || {
        NodeError::fatal(format!(
            "{what}: the response body is larger than max_response_bytes ({limit})"
        ))
    };
    let declared = response
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(too_large());
    }
    match Limited::new(response.into_body(), limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(err) if err.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Err(err) => Err(NodeError::retryable(format!(
            "{what}: reading the answer: {}",
            ErrorChain(&*err)
        ))),
    }
}

#[async_trait]
impl NodeExecutor for HttpNode {
    fn validate_config(&self, config: &Value) -> Result<(), BoxError> {
        parse(config).map(|_| ())
    }

    fn deferred_config(&self) -> &'static [&'static str] {
        // Never rendered: only the definition names secrets.
        &["secret_headers", "secret_query"]
    }

    async fn execute(&self, ctx: NodeContext) -> Result<NodeOutcome, NodeError> {
        let (config, method, mut url) = parse(&ctx.config).map_err(NodeError::fatal)?;
        let what = format!("{method} {}", shown(&url));
        // The secrets this call sends, to keep them out of what it records.
        let mut secrets: Vec<(String, String)> = Vec::new();
        let mut secret = |reference: &SecretRef| -> Result<String, NodeError> {
            let value = self.secret(&reference.secret)?;
            secrets.push((reference.secret.clone(), value.clone()));
            Ok(format!("{}{value}", reference.prefix))
        };
        let mut pairs = Vec::new();
        for (name, value) in &config.query {
            pairs.push((
                name.clone(),
                param("query", name, value).map_err(NodeError::fatal)?,
            ));
        }
        for (name, reference) in &config.secret_query {
            pairs.push((name.clone(), secret(reference)?));
        }
        if !pairs.is_empty() {
            url.query_pairs_mut().extend_pairs(pairs);
        }
        let mut headers = HeaderMap::new();
        for (name, value) in &config.headers {
            let text = param("header", name, value).map_err(NodeError::fatal)?;
            append_header(&mut headers, name, &text, false)?;
        }
        for (name, reference) in &config.secret_headers {
            let text = secret(reference)?;
            append_header(&mut headers, name, &text, true)?;
        }
        let body = match (&config.body, &config.text) {
            (Some(json), _) => {
                headers
                    .entry(header::CONTENT_TYPE)
                    .or_insert(HeaderValue::from_static("application/json"));
                Some(Bytes::from(
                    serde_json::to_vec(json).map_err(NodeError::fatal)?,
                ))
            }
            (None, Some(text)) => {
                headers
                    .entry(header::CONTENT_TYPE)
                    .or_insert(HeaderValue::from_static("text/plain; charset=utf-8"));
                Some(Bytes::from(text.clone()))
            }
            (None, None) => None,
        };
        headers
            .entry(header::USER_AGENT)
            .or_insert(HeaderValue::from_static(concat!(
                "workflow-worker/",
                env!("CARGO_PKG_VERSION")
            )));
        headers
            .entry("idempotency-key")
            .or_insert(HeaderValue::from_str(&ctx.idempotency_key).map_err(NodeError::fatal)?);
        let request = Outgoing {
            method,
            url,
            headers,
            body,
        };
        let limit = config
            .max_response_bytes
            .unwrap_or(DEFAULT_MAX_RESPONSE_BYTES);
        // Checked by `parse`.
        let timeout = config
            .timeout
            .and_then(|seconds| Duration::try_from_secs_f64(seconds).ok())
            .unwrap_or(DEFAULT_HTTP_TIMEOUT);
        let exchange = async {
            let response = self
                .send(
                    request,
                    config.max_redirects.unwrap_or(DEFAULT_MAX_REDIRECTS),
                    &what,
                )
                .await?;
            let status = response.status();
            let headers = response.headers().clone();
            let body = read_body(response, limit, &what).await?;
            Ok::<_, NodeError>((status, headers, body))
        };
        let (status, response_headers, body) = tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| NodeError::retryable(format!("{what}: no answer within {timeout:?}")))??;
        let is_json = response_headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| {
                t.split(';')
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .ends_with("json")
            });
        let text = redact(&String::from_utf8_lossy(&body), &secrets);
        let parsed = is_json
            .then(|| serde_json::from_str(&text).ok())
            .flatten()
            .unwrap_or_else(|| Value::String(text.clone()));
        if status.is_success() {
            let response_headers = redact(&headers_json(&response_headers).to_string(), &secrets);
            return Ok(NodeOutcome::complete(json!({
                "status": status.as_u16(),
                "headers": serde_json::from_str::<Value>(&response_headers).unwrap_or_default(),
                "body": parsed,
            })));
        }
        let excerpt: String = text.chars().take(ERROR_BODY_CHARS).collect();
        let message = format!("{what} answered {status}: {excerpt}");
        let retryable = status.is_server_error()
            || status == StatusCode::TOO_MANY_REQUESTS
            || status == StatusCode::REQUEST_TIMEOUT;
        if !retryable {
            return Err(NodeError::fatal(message));
        }
        let error = NodeError::retryable(message);
        Err(match retry_after(&response_headers, ctx.now) {
            Some(wait) => error.retry_after(wait),
            None => error,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use axum::Json;
    use axum::extract::{Path, Query};
    use axum::http::{HeaderMap as Headers, StatusCode as Status};
    use axum::response::{IntoResponse, Redirect};
    use axum::routing::{get, post};

    use super::*;
    use crate::ErrorKind;
    use crate::execution::{ExecutionId, WorkflowId};

    const TOKEN: &str = "s3cret-t0ken";

    /// A server on a loopback port; returns its base URL and how often `/flaky` was called.
    async fn serve() -> (String, Arc<AtomicU32>) {
        let calls = Arc::new(AtomicU32::new(0));
        let counted = calls.clone();
        let app = axum::Router::new()
            .route(
                "/orders/{id}",
                post(
                    |Path(id): Path<u32>,
                     Query(query): Query<BTreeMap<String, String>>,
                     headers: Headers,
                     Json(body): Json<Value>| async move {
                        let authorized = headers
                            .get("authorization")
                            .is_some_and(|v| v == format!("Bearer {TOKEN}").as_str());
                        Json(json!({
                            "id": id,
                            "query": query,
                            "body": body,
                            "authorized": authorized,
                            "idempotency_key": headers.get("idempotency-key").map(|v| v.to_str().unwrap().to_owned()),
                        }))
                    },
                ),
            )
            .route("/text", get(|| async { "plain words" }))
            .route(
                "/echo",
                get(|headers: Headers, Query(query): Query<BTreeMap<String, String>>| async move {
                    let auth = headers
                        .get("authorization")
                        .map(|v| v.to_str().unwrap().to_owned());
                    (
                        [("x-echo", auth.clone().unwrap_or_default())],
                        Json(json!({"authorization": auth, "key": query.get("key")})),
                    )
                }),
            )
            .route(
                "/flaky",
                get(move || {
                    let n = counted.fetch_add(1, Ordering::SeqCst);
                    async move {
                        if n == 0 {
                            (Status::SERVICE_UNAVAILABLE, [("retry-after", "7")], "busy").into_response()
                        } else {
                            (Status::TOO_MANY_REQUESTS, "slow down").into_response()
                        }
                    }
                }),
            )
            .route("/missing", get(|| async { (Status::NOT_FOUND, "no such order") }))
            .route("/big", get(|| async { "x".repeat(5000) }))
            .route(
                "/hop/{n}",
                get(|Path(n): Path<u32>| async move {
                    if n == 0 {
                        Redirect::temporary("/text").into_response()
                    } else {
                        Redirect::temporary(&format!("/hop/{}", n - 1)).into_response()
                    }
                }),
            )
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    "late"
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let base = format!("http://127.0.0.1:{port}");
        // The same server under another host name, and who asks.
        let app = app
            .route(
                "/elsewhere",
                get(move || async move {
                    Redirect::temporary(&format!("http://localhost:{port}/whoami"))
                }),
            )
            .route(
                "/whoami",
                get(|headers: Headers| async move {
                    Json(json!({
                        "authorization": headers.contains_key("authorization"),
                        "api_key": headers.contains_key("x-api-key"),
                    }))
                }),
            );
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (base, calls)
    }

    fn node() -> HttpNode {
        HttpNode::default().secrets(BTreeMap::from([("BILLING".to_owned(), TOKEN.to_owned())]))
    }

    async fn call(config: Value) -> Result<Value, NodeError> {
        node().validate_config(&config).map_err(NodeError::fatal)?;
        let ctx = NodeContext::new(ExecutionId::new(), WorkflowId::new(), "call", "http", 2)
            .config(config);
        match node().execute(ctx).await? {
            NodeOutcome::Complete { output, .. } => Ok(output),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_call_sends_its_query_headers_secret_and_body_and_outputs_the_answer() {
        let (base, _) = serve().await;
        let output = call(json!({
            "method": "post",
            "url": format!("{base}/orders/7"),
            "query": {"currency": "eur", "page": 2, "live": true},
            "secret_headers": {"Authorization": {"secret": "BILLING", "prefix": "Bearer "}},
            "body": {"amount": 12.5}
        }))
        .await
        .unwrap();
        assert_eq!(output["status"], 200);
        assert_eq!(output["headers"]["content-type"], "application/json");
        let body = &output["body"];
        assert_eq!(body["id"], 7);
        assert_eq!(
            body["query"],
            json!({"currency": "eur", "page": "2", "live": "true"})
        );
        assert_eq!(body["body"], json!({"amount": 12.5}));
        assert_eq!(body["authorized"], true);
        assert!(
            body["idempotency_key"]
                .as_str()
                .unwrap()
                .ends_with(":call:2"),
            "{body}"
        );
        assert!(
            !output.to_string().contains(TOKEN),
            "the secret stays out of the output"
        );

        let text = call(json!({"url": format!("{base}/text")})).await.unwrap();
        assert_eq!(text["body"], "plain words");
    }

    #[tokio::test]
    async fn server_errors_and_429_are_retryable_after_their_retry_after_and_4xx_is_fatal() {
        let (base, calls) = serve().await;
        let url = format!("{base}/flaky?key=hidden");
        let busy = call(json!({"url": url})).await.unwrap_err();
        assert_eq!(busy.kind(), ErrorKind::Retryable);
        assert_eq!(busy.min_delay(), Some(Duration::from_secs(7)));
        assert_eq!(
            busy.to_string(),
            format!("GET {base}/flaky answered 503 Service Unavailable: busy")
        );
        let limited = call(json!({"url": url})).await.unwrap_err();
        assert_eq!(limited.kind(), ErrorKind::Retryable);
        assert_eq!(limited.min_delay(), None);
        assert!(
            limited.to_string().contains("429 Too Many Requests"),
            "{limited}"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 2);

        let missing = call(json!({"url": format!("{base}/missing")}))
            .await
            .unwrap_err();
        assert_eq!(missing.kind(), ErrorKind::Fatal);
        assert!(
            missing
                .to_string()
                .ends_with("404 Not Found: no such order"),
            "{missing}"
        );
    }

    #[tokio::test]
    async fn redirects_are_followed_up_to_the_limit() {
        let (base, _) = serve().await;
        let followed = call(json!({"url": format!("{base}/hop/2")})).await.unwrap();
        assert_eq!(followed["body"], "plain words");
        let err = call(json!({"url": format!("{base}/hop/2"), "max_redirects": 1}))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Fatal);
        assert!(
            err.to_string()
                .ends_with("more than 1 redirects (max_redirects)"),
            "{err}"
        );

        // A token is not handed to another host a redirect points to.
        let secret = json!({
            "Authorization": {"secret": "BILLING", "prefix": "Bearer "},
            "X-Api-Key": {"secret": "BILLING"}
        });
        let same_host = call(json!({"url": format!("{base}/whoami"), "secret_headers": secret}))
            .await
            .unwrap();
        assert_eq!(
            same_host["body"],
            json!({"authorization": true, "api_key": true})
        );
        let other_host =
            call(json!({"url": format!("{base}/elsewhere"), "secret_headers": secret}))
                .await
                .unwrap();
        assert_eq!(
            other_host["body"],
            json!({"authorization": false, "api_key": false})
        );
    }

    #[tokio::test]
    async fn a_body_over_the_limit_a_slow_server_and_a_closed_port_fail_as_they_should() {
        let (base, _) = serve().await;
        let big = call(json!({"url": format!("{base}/big"), "max_response_bytes": 1000}))
            .await
            .unwrap_err();
        assert_eq!(big.kind(), ErrorKind::Fatal);
        assert!(
            big.to_string()
                .ends_with("the response body is larger than max_response_bytes (1000)"),
            "{big}"
        );
        let slow = call(json!({"url": format!("{base}/slow"), "timeout": 0.2}))
            .await
            .unwrap_err();
        assert_eq!(slow.kind(), ErrorKind::Retryable);
        let closed = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap()
        };
        let refused = call(json!({"url": format!("http://{closed}/")}))
            .await
            .unwrap_err();
        assert_eq!(refused.kind(), ErrorKind::Retryable, "{refused}");
    }

    #[tokio::test]
    async fn a_secret_an_answer_echoes_is_replaced_in_the_output() {
        let (base, _) = serve().await;
        let output = call(json!({
            "url": format!("{base}/echo"),
            "secret_headers": {"Authorization": {"secret": "BILLING", "prefix": "Bearer "}},
            "secret_query": {"key": {"secret": "BILLING"}}
        }))
        .await
        .unwrap();
        assert_eq!(
            output["body"],
            json!({"authorization": "Bearer [secret BILLING]", "key": "[secret BILLING]"})
        );
        assert_eq!(output["headers"]["x-echo"], "Bearer [secret BILLING]");
        assert!(!output.to_string().contains(TOKEN));
    }

    #[tokio::test]
    async fn a_missing_secret_fails_for_good_naming_the_variable() {
        let (base, _) = serve().await;
        let err = call(json!({
            "url": format!("{base}/text"),
            "secret_headers": {"X-Key": {"secret": "NOPE"}}
        }))
        .await
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Fatal);
        assert_eq!(
            err.to_string(),
            "secret \"NOPE\" is not set: set WORKFLOW_SECRET_NOPE in the worker's environment"
        );
    }

    #[test]
    fn configs_are_checked_naming_what_is_wrong() {
        let node = HttpNode::default();
        for (config, expected) in [
            (Value::Null, "config is required"),
            (
                json!({"url": "ftp://x"}),
                "only http and https are supported",
            ),
            (json!({"url": "not a url"}), "url \"not a url\""),
            (
                json!({"url": "http://x", "method": "FETCH ME"}),
                "is not an HTTP method",
            ),
            (
                json!({"url": "http://x", "body": {}, "text": "t"}),
                "not both",
            ),
            (
                json!({"url": "http://x", "headers": {"bad header": "v"}}),
                "not a valid header name",
            ),
            (
                json!({"url": "http://x", "secret_headers": {"A": {"secret": "../etc"}}}),
                "letters, digits and _",
            ),
            (
                json!({"url": "http://x", "headers": {"A": {"secret": "B"}}}),
                "header \"A\": a string, a number or a boolean, not {\"secret\":\"B\"}; a secret goes in secret_headers",
            ),
            (
                json!({"url": "http://x", "timeout": 0}),
                "must be a positive number",
            ),
            (
                json!({"url": "http://x", "timeout": 1e300}),
                "must be a positive number",
            ),
            (
                json!({"url": "http://x", "retries": 3}),
                "unknown field `retries`",
            ),
        ] {
            let err = node.validate_config(&config).unwrap_err().to_string();
            assert!(err.contains(expected), "{config}: {err}");
        }
    }

    #[test]
    fn retry_after_reads_seconds_or_a_date_and_is_capped() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-12-07T10:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::RETRY_AFTER, HeaderValue::from_str(value).unwrap());
            retry_after(&headers, now)
        };
        assert_eq!(with("120"), Some(Duration::from_secs(120)));
        assert_eq!(
            with("Mon, 07 Dec 2026 10:01:30 GMT"),
            Some(Duration::from_secs(90))
        );
        assert_eq!(with("Mon, 07 Dec 2026 09:00:00 GMT"), Some(Duration::ZERO));
        assert_eq!(with("999999"), Some(MAX_RETRY_AFTER));
        assert_eq!(with("soon"), None);
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
    }
}
