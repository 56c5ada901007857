//! Workflows that do more: an order is fulfilled by reserving each of its lines at an
//! inventory API (a `map` over the lines, an `http` call per line, four at a time), then a
//! sub-workflow notifies the customer (a `subworkflow` whose child calls the API again). Values
//! reach the node configs through templates.
//!
//! ```sh
//! cargo run --example fulfil_order
//! ```
//!
//! The inventory API is a small HTTP server this example starts on a loopback port. Uses the
//! database at `DATABASE_URL`, or the embedded SQLite file `workflow-worker.db`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use axum::Json;
use axum::extract::Path;
use axum::routing::post;
use serde_json::{Value, json};
use workflow_worker_core::{
    Client, ExecutionId, ExecutionStatus, StartExecutionParams, WorkflowDefinition, WorkflowWorker,
};

/// The child: tells the customer what was reserved.
const NOTIFY: &str = r#"{
  "name": "notify_customer",
  "nodes": [
    {"id": "start", "type": "trigger"},
    {"id": "send", "type": "http", "config": {
      "method": "POST",
      "url": {"$template": "{{ input.api }}/notifications"},
      "body": {
        "order": {"$template": "{{ input.order }}"},
        "text": {"$template": "{{ input.reserved }} lines of order {{ input.order }} are on their way"}
      }
    }}
  ],
  "edges": [{"from": "start", "to": "send"}]
}"#;

/// The parent: reserve every line, then notify.
const FULFIL: &str = r#"{
  "name": "fulfil_order",
  "nodes": [
    {"id": "order", "type": "trigger"},
    {"id": "reserve", "type": "map", "config": {
      "items": {"$template": "{{ input.lines }}"},
      "max_parallel": 4,
      "node": {"type": "http", "retry": {"max_attempts": 3, "initial_backoff": 0.1},
        "config": {
          "method": "POST",
          "url": {"$template": "{{ execution.input.api }}/reservations/{{ input.sku | urlencode }}"},
          "body": {"quantity": {"$template": "{{ input.quantity }}"}}
        }}
    }},
    {"id": "notify", "type": "subworkflow", "config": {
      "workflow": "notify_customer",
      "input": {
        "api": {"$template": "{{ execution.input.api }}"},
        "order": {"$template": "{{ execution.input.order }}"},
        "reserved": {"$template": "{{ nodes.reserve.output | length }}"}
      }
    }}
  ],
  "edges": [{"from": "order", "to": "reserve"}, {"from": "reserve", "to": "notify"}]
}"#;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,sqlx=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let api = inventory_api().await?;
    let url = workflow_worker_store::database_url_from_env()
        .unwrap_or_else(|| workflow_worker_store::DEFAULT_DATABASE_URL.to_owned());
    println!("database: {}", workflow_worker_store::redact_url(&url));
    let store = workflow_worker_store::open_store(&url).await?;

    let worker = WorkflowWorker::new(store).poll_interval(Duration::from_millis(100));
    let client = worker.client();
    for definition in [NOTIFY, FULFIL] {
        let definition: WorkflowDefinition = serde_json::from_str(definition)?;
        let saved = client.save_workflow(definition).await?;
        println!(
            "saved workflow \"{}\" version {}",
            saved.name, saved.version
        );
    }
    let lines: Vec<Value> = ["apple", "pear", "plum", "fig", "kiwi", "lime"]
        .iter()
        .zip(1..)
        .map(|(sku, quantity)| json!({"sku": sku, "quantity": quantity}))
        .collect();
    let order = client
        .start(StartExecutionParams::new(
            "fulfil_order",
            json!({"order": 42, "api": api, "lines": lines}),
        ))
        .await?
        .execution;
    println!("started execution {}", order.id);
    worker.run_until(finished(&client, order.id)).await?;

    let detail = client.execution(order.id).await?;
    println!(
        "\nexecution {}: {}",
        detail.execution.id, detail.execution.status
    );
    for run in &detail.node_runs {
        println!(
            "  {:<8} {:<12} attempt {}  {}",
            run.node_id, run.node_type, run.attempt, run.status
        );
    }
    for item in &detail.item_runs {
        println!(
            "    reserve[{}] attempt {}  {}  {}",
            item.item,
            item.attempt,
            item.status,
            item.output.as_ref().map_or_else(
                || item.error.clone().unwrap_or_default(),
                |o| o["body"].to_string()
            )
        );
    }
    for child in &detail.children {
        let child = client.execution(child.id).await?.execution;
        println!(
            "  child {} ({}): {}",
            child.workflow_name,
            child.status,
            child.output.unwrap_or_default()["body"]
        );
    }
    anyhow::ensure!(
        detail.execution.status == ExecutionStatus::Completed,
        "the order was not fulfilled: {:?}",
        detail.execution.error
    );
    let reserved = detail
        .node_runs
        .iter()
        .find(|run| run.node_id == "reserve")
        .and_then(|run| run.output.clone())
        .unwrap_or_default();
    anyhow::ensure!(
        reserved.as_array().map(Vec::len) == Some(lines.len()),
        "every line is reserved, in order: {reserved}"
    );
    Ok(())
}

/// Starts the inventory API on a loopback port and returns its base URL. Reserving `fig`
/// answers 503 the first time, so the map retries that one line on its own.
async fn inventory_api() -> anyhow::Result<String> {
    let busy_once = Arc::new(AtomicU32::new(0));
    let app = axum::Router::new()
        .route(
            "/reservations/{sku}",
            post(move |Path(sku): Path<String>, Json(body): Json<Value>| {
                let busy = sku == "fig" && busy_once.fetch_add(1, Ordering::SeqCst) == 0;
                async move {
                    if busy {
                        return Err((axum::http::StatusCode::SERVICE_UNAVAILABLE, "busy"));
                    }
                    Ok(Json(json!({"sku": sku, "reserved": body["quantity"]})))
                }
            }),
        )
        .route(
            "/notifications",
            post(|Json(body): Json<Value>| async move {
                Json(json!({"sent": true, "text": body["text"]}))
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(base)
}

/// Completes once the execution is in a terminal state.
async fn finished(client: &Client, id: ExecutionId) {
    loop {
        match client.execution(id).await {
            Ok(detail) if detail.execution.status.is_terminal() => return,
            Ok(_) => {}
            Err(err) => eprintln!("reading execution {id}: {err}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
