//! The HTTP API over a real HTTP connection to a real server on PostgreSQL: every operation
//! of the OpenAPI document is called, and every answer is checked against the schema the
//! document gives for that operation and status.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use workflow_worker_core::http::{self, ApiOptions};
use workflow_worker_core::{Client, NewSchedule, WorkflowWorker};
use workflow_worker_store::testing::TestDatabase;

mod common;

use common::{Worker, approval_workflow, bin, wait_for};

/// A server on a loopback port, with the document it serves.
struct Api {
    base: String,
    http: reqwest::Client,
    document: Value,
    /// The operations called so far.
    called: Mutex<BTreeSet<String>>,
}

impl Api {
    async fn serve(client: Client, options: ApiOptions) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            axum::serve(listener, http::router(client, options))
                .await
                .unwrap();
        });
        let http = reqwest::Client::new();
        let document: Value = http
            .get(format!("{base}/api/openapi.json"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        Self {
            base,
            http,
            document,
            called: Mutex::default(),
        }
    }

    /// Calls `operation` (its id in the document) at `path` with `body` (JSON, if any),
    /// checks the answer against the document, and returns its status and body.
    async fn call(&self, operation: &str, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let method = self.method_of(operation);
        let url = format!("{}/api/v1{path}", self.base);
        let request = match method.as_str() {
            "get" => self.http.get(url),
            _ => self.http.post(url),
        };
        let request = match body {
            Some(body) => request.json(&body),
            None if method == "post" => request.header("content-type", "application/json"),
            None => request,
        };
        let response = request.send().await.unwrap();
        let status = response.status();
        let body: Value = response.json().await.expect("every answer is JSON");
        self.check(operation, status, &body);
        self.called.lock().unwrap().insert(operation.to_owned());
        (status, body)
    }

    /// Sends raw `body` with `content_type` to `path`: for malformed requests.
    async fn send_raw(&self, path: &str, content_type: &str, body: &str) -> (StatusCode, Value) {
        let response = self
            .http
            .post(format!("{}/api/v1{path}", self.base))
            .header("content-type", content_type)
            .body(body.to_owned())
            .send()
            .await
            .unwrap();
        let status = response.status();
        (status, response.json().await.expect("every answer is JSON"))
    }

    fn operations(&self) -> impl Iterator<Item = (&str, &str, &Value)> {
        self.document["paths"]
            .as_object()
            .unwrap()
            .iter()
            .flat_map(|(path, methods)| {
                methods
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(move |(method, operation)| (path.as_str(), method.as_str(), operation))
            })
    }

    fn method_of(&self, operation: &str) -> String {
        self.operations()
            .find(|(_, _, op)| op["operationId"] == operation)
            .unwrap_or_else(|| panic!("no operation {operation} in the document"))
            .1
            .to_owned()
    }

    /// Checks `body` against the schema the document gives `operation` for `status`.
    fn check(&self, operation: &str, status: StatusCode, body: &Value) {
        let errors = self.mismatches(operation, status, body);
        assert!(
            errors.is_empty(),
            "{operation} {status} does not match its schema: {errors:?}\n{body:#}"
        );
    }

    /// How `body` differs from the schema the document gives `operation` for `status`.
    fn mismatches(&self, operation: &str, status: StatusCode, body: &Value) -> Vec<String> {
        let (_, _, op) = self
            .operations()
            .find(|(_, _, op)| op["operationId"] == operation)
            .unwrap();
        let answer = &op["responses"][status.as_str()];
        assert!(
            answer.is_object(),
            "{operation} answered {status}, which the document does not list: {body}"
        );
        let schema = &answer["content"]["application/json"]["schema"];
        let root = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "components": self.document["components"],
            "allOf": [schema],
        });
        let validator = jsonschema::validator_for(&root)
            .unwrap_or_else(|err| panic!("the schema of {operation} {status} is invalid: {err}"));
        validator
            .iter_errors(body)
            .map(|err| format!("{} at {}", err, err.instance_path()))
            .collect()
    }
}

/// Polls the execution through the API until it is in `status`.
async fn wait_for_status(api: &Api, id: &str, status: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (code, detail) = api
            .call("getExecution", &format!("/executions/{id}"), None)
            .await;
        assert_eq!(code, StatusCode::OK);
        if detail["status"] == status {
            return detail;
        }
        assert!(
            Instant::now() < deadline,
            "execution {id} is still {} after 60 s, not {status}",
            detail["status"]
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The whole life of an approval through the API, every other operation once, and the
/// errors bad input gets: each answer checked against the document.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_answers_as_its_openapi_document_says() {
    let db = TestDatabase::create().await;
    let client = Client::new(db.store.clone());
    let api = Api::serve(client.clone(), ApiOptions::default()).await;
    assert_eq!(api.document["openapi"], "3.1.0");
    // The check can fail: answers unlike their schema are caught.
    let wrong = json!({"id": 42, "status": "sleeping"});
    let mismatches = api.mismatches("getExecution", StatusCode::OK, &wrong);
    assert!(
        mismatches.iter().any(|m| m.contains("sleeping")) && mismatches.len() > 2,
        "{mismatches:?}"
    );
    assert!(
        !api.mismatches("getExecution", StatusCode::NOT_FOUND, &json!({"error": {}}))
            .is_empty()
    );

    // Workflows: save (a definition with a cycle is refused with its problem named), list,
    // show.
    let (status, saved) = api
        .call("saveWorkflow", "/workflows", Some(approval_workflow()))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{saved}");
    assert_eq!(
        (saved["name"].clone(), saved["version"].clone()),
        (json!("order_approval"), json!(1))
    );
    let mut cyclic = approval_workflow();
    cyclic["name"] = json!("cyclic");
    cyclic["edges"] = json!([
        {"from": "order", "to": "approval"},
        {"from": "approval", "to": "ship"},
        {"from": "ship", "to": "approval"}
    ]);
    let (status, refused) = api.call("saveWorkflow", "/workflows", Some(cyclic)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    assert_eq!(refused["error"]["code"], "invalid_workflow");
    let problems = refused["error"]["problems"].as_array().unwrap();
    assert!(
        problems
            .iter()
            .any(|p| p.as_str().unwrap().contains("cycle")),
        "{refused}"
    );
    let (status, refused) = api
        .call(
            "saveWorkflow",
            "/workflows",
            Some(json!({"name": "x", "nodez": []})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("nodez"),
        "{refused}"
    );
    let (_, workflows) = api.call("listWorkflows", "/workflows", None).await;
    assert_eq!(workflows.as_array().unwrap().len(), 1);
    let (status, shown) = api
        .call("getWorkflow", "/workflows/order_approval?version=1", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(shown["definition"]["nodes"][1]["id"], "approval");
    let (status, missing) = api.call("getWorkflow", "/workflows/nope", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(missing["error"]["message"], "workflow \"nope\" not found");

    // Start, wait for approval, approve: the approved branch runs; its output (HTML) comes
    // back as data.
    let (status, started) = api
        .call(
            "startExecution",
            "/executions",
            Some(json!({"workflow": "order_approval", "input": {"order": 7}})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{started}");
    let id = started["id"].as_str().unwrap().to_owned();
    let stop = tokio_util::sync::CancellationToken::new();
    let worker = WorkflowWorker::new(db.store.clone()).poll_interval(Duration::from_millis(50));
    let running = tokio::spawn(worker.run_until(stop.clone().cancelled_owned()));
    wait_for_status(&api, &id, "waiting").await;
    let (status, signal) = api
        .call(
            "sendSignal",
            &format!("/executions/{id}/signals"),
            Some(json!({"name": "approval", "payload": {"approved": true}})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{signal}");
    let done = wait_for_status(&api, &id, "completed").await;
    let ran: Vec<(&str, &str)> = done["node_runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["node_id"].as_str().unwrap(),
                r["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert!(
        ran.contains(&("ship", "completed")) && ran.contains(&("refund", "skipped")),
        "{ran:?}"
    );
    let ship = done["node_runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["node_id"] == "ship")
        .unwrap();
    assert_eq!(ship["output"]["stdout"], "<script>alert(1)</script>\n");
    assert_eq!(done["signals"][0]["name"], "approval");

    // A start with a key answers 201 once and then 200 with the same execution: the
    // idempotency key of a start retried after a lost answer.
    let keyed = json!({"workflow": "order_approval", "input": {"order": 8}, "key": "order-8"});
    let (status, first) = api
        .call("startExecution", "/executions", Some(keyed.clone()))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    assert_eq!(first["key"], "order-8");
    let (status, again) = api.call("startExecution", "/executions", Some(keyed)).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["id"], first["id"]);
    // Signal-with-start approves the execution holding a key, starting one if none does.
    let approve = |key: &str| {
        json!({
            "workflow": "order_approval",
            "key": key,
            "input": {"order": 9},
            "signal": {"name": "approval", "payload": {"approved": true}}
        })
    };
    let (status, sent) = api
        .call(
            "signalWithStart",
            "/executions/signal-with-start",
            Some(approve("order-8")),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{sent}");
    assert_eq!(
        (&sent["execution"]["id"], &sent["created"]),
        (&first["id"], &json!(false))
    );
    let (status, fresh) = api
        .call(
            "signalWithStart",
            "/executions/signal-with-start",
            Some(approve("order-9")),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{fresh}");
    assert_eq!(fresh["execution"]["input"], json!({"order": 9}));
    assert_eq!(fresh["signal"]["execution_id"], fresh["execution"]["id"]);
    for id in [&first["id"], &fresh["execution"]["id"]] {
        let done = wait_for_status(&api, id.as_str().unwrap(), "completed").await;
        assert!(
            done["node_runs"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["node_id"] == "ship" && r["status"] == "completed"),
            "{done}"
        );
    }
    // Ended and its key not reused: the signal is a conflict naming the execution.
    let (status, conflict) = api
        .call(
            "signalWithStart",
            "/executions/signal-with-start",
            Some(approve("order-8")),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{conflict}");
    assert!(
        conflict["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&format!(
                "{} already ended (completed)",
                first["id"].as_str().unwrap()
            )),
        "{conflict}"
    );
    let mut keyless = approve("x");
    keyless.as_object_mut().unwrap().remove("key");
    let (status, bad) = api
        .call(
            "signalWithStart",
            "/executions/signal-with-start",
            Some(keyless),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
    assert_eq!(
        bad["error"]["message"],
        "a business key is required to signal with start"
    );
    let (status, bad) = api
        .call(
            "startExecution",
            "/executions",
            Some(json!({"workflow": "order_approval", "key": "k".repeat(513)})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
    assert_eq!(
        bad["error"]["message"],
        "a business key must be 1 to 512 characters, not 513"
    );

    // Ended: a cancel is a conflict; a signal too.
    let (status, conflict) = api
        .call("cancelExecution", &format!("/executions/{id}/cancel"), None)
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{conflict}");
    assert!(
        conflict["error"]["message"]
            .as_str()
            .unwrap()
            .contains("already ended (completed)")
    );

    // Pause, resume, cancel and retry another: each answers the execution after.
    stop.cancel();
    running.await.unwrap().unwrap();
    let (_, other) = api
        .call(
            "startExecution",
            "/executions",
            Some(json!({"workflow": "order_approval"})),
        )
        .await;
    let other = other["id"].as_str().unwrap().to_owned();
    let (_, paused) = api
        .call(
            "pauseExecution",
            &format!("/executions/{other}/pause"),
            None,
        )
        .await;
    assert_eq!(paused["status"], "paused");
    let (_, resumed) = api
        .call(
            "resumeExecution",
            &format!("/executions/{other}/resume"),
            Some(json!({"requested_by": "ops ada"})),
        )
        .await;
    assert_eq!(resumed["status"], "pending");
    let (_, cancelled) = api
        .call(
            "cancelExecution",
            &format!("/executions/{other}/cancel"),
            Some(json!({"reason": "not needed"})),
        )
        .await;
    assert_eq!(
        (cancelled["status"].clone(), cancelled["error"].clone()),
        (json!("cancelled"), json!("not needed"))
    );
    let (status, retried) = api
        .call(
            "retryExecution",
            &format!("/executions/{other}/retry"),
            Some(json!({"from": {"mode": "start"}, "requested_by": "ops ada"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{retried}");
    assert_eq!(retried["status"], "pending");
    let (status, unknown_node) = api
        .call(
            "retryExecution",
            &format!("/executions/{id}/retry"),
            Some(json!({"from": {"mode": "node", "node": "nope"}})),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "a completed execution: {unknown_node}"
    );

    // Pages: every execution once, newest first, by cursor.
    for _ in 0..3 {
        api.call(
            "startExecution",
            "/executions",
            Some(json!({"workflow": "order_approval"})),
        )
        .await;
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(cursor) => format!("/executions?limit=2&workflow=order_approval&cursor={cursor}"),
            None => "/executions?limit=2&workflow=order_approval".to_owned(),
        };
        let (status, page) = api.call("listExecutions", &path, None).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        seen.extend(
            page["executions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["id"].clone()),
        );
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    // The three above, the approved one, the one paused and retried, and the two keyed ones.
    assert_eq!(seen.len(), 7);
    assert_eq!(
        seen.iter()
            .map(Value::to_string)
            .collect::<BTreeSet<_>>()
            .len(),
        7
    );
    assert_eq!(seen.last().unwrap(), &json!(id), "the oldest comes last");
    let (_, pending) = api
        .call("listExecutions", "/executions?status=pending", None)
        .await;
    assert_eq!(pending["executions"].as_array().unwrap().len(), 4);

    // Bulk: count, then cancel what is pending.
    let (_, counted) = api
        .call(
            "bulkAction",
            "/executions/bulk",
            Some(json!({"action": "count", "filter": {"statuses": ["pending"]}})),
        )
        .await;
    assert_eq!(counted, json!({"matched": 4, "affected": 0}));
    let (_, cancelled) = api
        .call(
            "bulkAction",
            "/executions/bulk",
            Some(json!({"action": "cancel", "filter": {"workflow": "order_approval", "statuses": ["pending"]}, "reason": "outage"})),
        )
        .await;
    assert_eq!(cancelled, json!({"matched": 4, "affected": 4}));
    let (status, refused) = api
        .call(
            "bulkAction",
            "/executions/bulk",
            Some(json!({"action": "delete", "filter": {}})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("the filter is empty")
    );

    // Schedules and health.
    let schedule = client
        .create_schedule(NewSchedule::new("order_approval", "0 9 * * *"))
        .await
        .unwrap();
    let (_, schedules) = api.call("listSchedules", "/schedules", None).await;
    assert_eq!(schedules[0]["id"], json!(schedule.id));
    let path = |verb: &str| format!("/schedules/{}/{verb}", schedule.id);
    let (_, paused) = api.call("pauseSchedule", &path("pause"), None).await;
    assert_eq!(paused["enabled"], false);
    let (_, resumed) = api.call("resumeSchedule", &path("resume"), None).await;
    assert_eq!(resumed["enabled"], true);
    let (status, triggered) = api.call("triggerSchedule", &path("trigger"), None).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(triggered["schedule_id"], json!(schedule.id));
    let (_, health) = api.call("health", "/health", None).await;
    assert_eq!(health["queue"]["runnable"], 1, "{health}");

    // Bad ids and bad input: 4xx with a JSON error naming the problem.
    let unknown = uuid::Uuid::new_v4();
    let (status, missing) = api
        .call("getExecution", &format!("/executions/{unknown}"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        missing["error"]["message"],
        format!("execution {unknown} not found")
    );
    let (status, bad) = api.call("getExecution", "/executions/42", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        bad["error"]["message"],
        "\"42\" is not an execution id (a UUID)"
    );
    let (status, bad) = api
        .call("listExecutions", "/executions?limit=0", None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
    let (status, bad) = api
        .call("listExecutions", "/executions?sort=asc", None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
    assert!(
        bad["error"]["message"].as_str().unwrap().contains("sort"),
        "{bad}"
    );
    let (status, bad) = api
        .call("listExecutions", "/executions?cursor=yesterday", None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
    let (status, bad) = api
        .call(
            "startExecution",
            "/executions",
            Some(json!({"workflow": "nope"})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{bad}");
    let (status, bad) = api
        .call("startExecution", "/executions", Some(json!({"input": {}})))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        bad["error"]["message"]
            .as_str()
            .unwrap()
            .contains("missing field `workflow`"),
        "{bad}"
    );
    let (status, bad) = api
        .send_raw("/executions", "application/json", "{\"workflow\": ")
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
    assert!(
        bad["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("invalid JSON body"),
        "{bad}"
    );
    let (status, bad) = api
        .send_raw(
            "/executions",
            "text/plain",
            "{\"workflow\": \"order_approval\"}",
        )
        .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{bad}");
    assert_eq!(bad["error"]["code"], "unsupported_media_type");
    let (status, bad) = api
        .send_raw(
            &format!("/executions/{id}/pause"),
            "application/x-www-form-urlencoded",
            "",
        )
        .await;
    assert_eq!(
        status,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "a form post is refused: {bad}"
    );

    // Every operation of the document was called, and checked.
    let documented: BTreeSet<String> = api
        .operations()
        .map(|(_, _, op)| op["operationId"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(*api.called.lock().unwrap(), documented);
}

/// Read-only, the API reads and refuses every action with a 403 that says so; a password in
/// the database URL appears in no answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_api_refuses_every_action() {
    let db = TestDatabase::create().await;
    let client = Client::new(db.store.clone());
    client
        .save_workflow(serde_json::from_value(approval_workflow()).unwrap())
        .await
        .unwrap();
    let api = Api::serve(
        client,
        ApiOptions {
            read_only: true,
            ..ApiOptions::default()
        },
    )
    .await;
    let (status, _) = api.call("listWorkflows", "/workflows", None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, refused) = api
        .call(
            "startExecution",
            "/executions",
            Some(json!({"workflow": "order_approval"})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(refused["error"]["code"], "read_only");
    let (status, counted) = api
        .call(
            "bulkAction",
            "/executions/bulk",
            Some(json!({"action": "count", "filter": {"all": true}})),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "counting changes nothing: {counted}"
    );
    let (status, refused) = api
        .call(
            "bulkAction",
            "/executions/bulk",
            Some(json!({"action": "delete", "filter": {"all": true}})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{refused}");
    let (_, health) = api.call("health", "/health", None).await;
    let url = url::Url::parse(&db.url).unwrap();
    for answer in [health, api.document.clone()] {
        let text = answer.to_string();
        assert!(!text.contains(&db.url), "the database URL leaked: {text}");
        if let Some(password) = url.password() {
            assert!(!text.contains(password), "the password leaked");
        }
    }
}

/// The address a `workflow-worker` process logged it serves the API at.
async fn api_addr(process: &Worker) -> std::net::SocketAddr {
    wait_for(
        "the API address in the log",
        Duration::from_secs(60),
        || async {
            let log = process.log();
            let line = log
                .lines()
                .find(|line| line.contains("the HTTP API at /api/v1"))?;
            line.split("addr=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        },
    )
    .await
}

/// `run --ui-addr` serves the API beside the worker, which runs what the API starts;
/// `ui` serves it alone and, given a token, refuses requests without it; an address beyond
/// loopback without a token is refused at start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_serves_the_api_beside_its_worker_or_alone_behind_a_token() {
    let db = TestDatabase::create().await;
    let url = db.url.as_str();
    let exposed = bin(Some(url))
        .args(["ui", "--addr", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert!(!exposed.status.success());
    let err = String::from_utf8_lossy(&exposed.stderr);
    assert!(
        err.contains("--addr 0.0.0.0:0 is not a loopback address: set WORKFLOW_UI_TOKEN"),
        "{err}"
    );

    let worker = Worker::run(url, &["--poll-interval", "0.1", "--ui-addr", "127.0.0.1:0"]);
    let base = format!("http://{}/api/v1", api_addr(&worker).await);
    let http = reqwest::Client::new();
    let hello: Value = serde_json::from_str(include_str!("../../../examples/hello.json")).unwrap();
    let saved = http
        .post(format!("{base}/workflows"))
        .json(&hello)
        .send()
        .await
        .unwrap();
    assert_eq!(saved.status(), StatusCode::CREATED);
    let started: Value = http
        .post(format!("{base}/executions"))
        .json(&json!({"workflow": "hello"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = started["id"].as_str().unwrap().to_owned();
    let status = wait_for(
        "the worker to complete it",
        Duration::from_secs(60),
        || async {
            let detail: Value = http
                .get(format!("{base}/executions/{id}"))
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            (detail["status"] == "completed").then_some(detail["status"].clone())
        },
    )
    .await;
    assert_eq!(status, "completed");
    worker.stop();

    let alone = Worker::spawn(
        bin(Some(url))
            .args(["ui", "--addr", "127.0.0.1:0"])
            .env("WORKFLOW_UI_TOKEN", "s3cret"),
    );
    let base = format!("http://{}/api/v1", api_addr(&alone).await);
    let refused = http.get(format!("{base}/workflows")).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert!(refused.headers().contains_key("www-authenticate"));
    let refused: Value = refused.json().await.unwrap();
    assert_eq!(refused["error"]["code"], "unauthorized");
    let wrong = http
        .get(format!("{base}/workflows"))
        .bearer_auth("guess")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let listed: Value = http
        .get(format!("{base}/workflows"))
        .bearer_auth("s3cret")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed[0]["name"], "hello");
    let log = alone.stop();
    assert!(!log.contains("s3cret"), "the token is never logged:\n{log}");
}
