//! The `http` node through the real binary, against an HTTP server the test starts: a URL and
//! a body from templates, a secret from the worker's environment that reaches the server and
//! nothing else (not the history, not the log), and a 503 retried after its `Retry-After`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use axum::Json;
use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use serde_json::{Value, json};
use workflow_worker_core::{ExecutionId, ExecutionStatus, Store};
use workflow_worker_store::testing::TestSqlite;

mod common;

use common::{Worker, bin, save, wait_for};

const SECRET: &str = "tok-8f3a9d1e-never-logged";

/// A billing API: `POST /charges/{customer}` answers 503 with `Retry-After: 1` the first
/// time, then charges; it checks the bearer token and says whether it matched.
async fn billing() -> (String, Arc<AtomicU32>) {
    let calls = Arc::new(AtomicU32::new(0));
    let counted = calls.clone();
    let app = axum::Router::new().route(
        "/charges/{customer}",
        post(
            move |Path(customer): Path<String>, headers: HeaderMap, Json(body): Json<Value>| {
                let n = counted.fetch_add(1, Ordering::SeqCst);
                async move {
                    if n == 0 {
                        return (
                            StatusCode::SERVICE_UNAVAILABLE,
                            [("retry-after", "1")],
                            "busy",
                        )
                            .into_response();
                    }
                    let authorized = headers
                        .get("authorization")
                        .is_some_and(|v| v == format!("Bearer {SECRET}").as_str());
                    Json(json!({
                        "customer": customer,
                        "amount": body["amount"],
                        "authorized": authorized,
                        "charge": format!("ch_{customer}"),
                    }))
                    .into_response()
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, calls)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_node_calls_an_api_with_a_secret_that_stays_out_of_history_and_log() {
    let db = TestSqlite::create().await;
    let (base, calls) = billing().await;
    save(
        &db.store,
        json!({
            "name": "charge",
            "nodes": [
                {"id": "order", "type": "trigger"},
                {"id": "charge", "type": "http",
                 "retry": {"max_attempts": 3, "initial_backoff": 0.01},
                 "config": {
                    "method": "POST",
                    "url": {"$template": format!("{base}/charges/{{{{ input.customer }}}}")},
                    "secret_headers": {"Authorization": {"secret": "BILLING", "prefix": "Bearer "}},
                    "body": {"amount": {"$template": "{{ input.amount }}"}}
                 }},
                {"id": "receipt", "type": "code",
                 "config": {"language": "shell", "code": "cat"}}
            ],
            "edges": [{"from": "order", "to": "charge"}, {"from": "charge", "to": "receipt"}]
        }),
    )
    .await;
    let started = bin(Some(&db.url))
        .args([
            "start",
            "charge",
            "--input",
            r#"{"customer": "c42", "amount": 1250}"#,
        ])
        .output()
        .unwrap();
    assert!(started.status.success(), "{started:?}");
    let id: ExecutionId = String::from_utf8(started.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap();

    let worker = Worker::spawn(
        bin(Some(&db.url))
            .args(["run", "--poll-interval", "0.05"])
            .env("WORKFLOW_SECRET_BILLING", SECRET),
    );
    let detail = wait_for(
        "the charge to complete",
        Duration::from_secs(60),
        || async {
            let detail = db.store.get_execution(id).await.ok()?;
            detail.execution.status.is_terminal().then_some(detail)
        },
    )
    .await;
    let log = worker.stop();
    assert_eq!(
        detail.execution.status,
        ExecutionStatus::Completed,
        "{detail:#?}\n{log}"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2, "one 503, one charge");

    let charges: Vec<_> = detail
        .node_runs
        .iter()
        .filter(|r| r.node_id == "charge")
        .collect();
    assert_eq!(charges.len(), 2);
    assert_eq!(
        charges[0].error.as_deref(),
        Some(format!("POST {base}/charges/c42 answered 503 Service Unavailable: busy").as_str())
    );
    // The second attempt waited out the answer's Retry-After, not the policy's 10 ms.
    let waited = charges[1].started_at - charges[0].finished_at;
    assert!(
        waited >= chrono::Duration::milliseconds(950),
        "retried after {waited}"
    );
    let output = charges[1].output.as_ref().unwrap();
    assert_eq!(output["status"], 200);
    assert_eq!(
        output["body"],
        json!({"customer": "c42", "amount": 1250, "authorized": true, "charge": "ch_c42"})
    );
    // The next node got the answer as its input.
    let receipt = detail
        .node_runs
        .iter()
        .find(|r| r.node_id == "receipt")
        .unwrap();
    assert_eq!(receipt.input.as_ref(), Some(output));

    // The secret reached the server, and nothing else.
    let history = serde_json::to_string(&detail).unwrap();
    assert!(!history.contains(SECRET), "the secret is in the history");
    assert!(!log.contains(SECRET), "the secret is in the log:\n{log}");
    let shown = bin(Some(&db.url))
        .args(["executions", "show", &id.to_string(), "--json"])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&shown.stdout).contains(SECRET));
}
