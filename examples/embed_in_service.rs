//! The worker inside a tokio application, beside the application's own HTTP API, both
//! stopped by one shutdown signal.
//!
//! ```sh
//! cargo run --example embed_in_service            # listens on 127.0.0.1:3000 (ADDR to change)
//! curl -s -X POST localhost:3000/greetings -H 'content-type: application/json' -d '{"name": "Ada"}'
//! curl -s localhost:3000/greetings/<id>
//! ```
//!
//! Ctrl-C (or SIGTERM) stops both: the HTTP server stops accepting and finishes its requests
//! while the worker stops claiming, lets running nodes finish and releases the rest.
//!
//! Uses the database at `DATABASE_URL` (PostgreSQL or SQLite); without one, the embedded
//! SQLite file `workflow-worker.db` in the working directory.

use std::time::Duration;

use async_trait::async_trait;
use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use workflow_worker_core::{
    Client, ExecutionId, NodeContext, NodeError, NodeExecutor, NodeOutcome, StartExecutionParams,
    StoreError, WorkflowDefinition, WorkflowWorker,
};

/// The application's own node type.
struct Greet;

#[async_trait]
impl NodeExecutor for Greet {
    async fn execute(&self, ctx: NodeContext) -> Result<NodeOutcome, NodeError> {
        let name = ctx.execution_input["name"].as_str().unwrap_or("world");
        Ok(NodeOutcome::complete(
            json!({ "greeting": format!("Hello, {name}!") }),
        ))
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,sqlx=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let url = workflow_worker_store::database_url_from_env()
        .unwrap_or_else(|| workflow_worker_store::DEFAULT_DATABASE_URL.to_owned());
    let store = workflow_worker_store::open_store(&url).await?;

    let worker = WorkflowWorker::new(store)
        .poll_interval(Duration::from_millis(200))
        .concurrency(8)
        .node("greet", Greet);
    let definition: WorkflowDefinition = serde_json::from_value(json!({
        "name": "greeting",
        "nodes": [{"id": "start", "type": "trigger"}, {"id": "greet", "type": "greet"}],
        "edges": [{"from": "start", "to": "greet"}]
    }))?;
    // The worker's client validates against its node types, `greet` included.
    let client = worker.client();
    client.save_workflow(definition).await?;

    let app = Router::new()
        .route("/greetings", post(start_greeting))
        .route("/greetings/{id}", get(show_greeting))
        .with_state(client);
    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on http://{}", listener.local_addr()?);

    // One shutdown for the whole application: the first Ctrl-C or SIGTERM cancels it.
    let shutdown = CancellationToken::new();
    tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            shutdown_signal().await;
            shutdown.cancel();
        }
    });
    let server = async {
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.clone().cancelled_owned())
            .await
    };
    let (served, worked) =
        tokio::join!(server, worker.run_until(shutdown.clone().cancelled_owned()));
    served?;
    worked?;
    println!("stopped");
    Ok(())
}

/// `POST /greetings {"name": "Ada"}`: starts an execution and answers with its id.
async fn start_greeting(
    State(client): State<Client>,
    Json(input): Json<Value>,
) -> Result<(StatusCode, Json<Value>), (StatusCode, String)> {
    let execution = client
        .start(StartExecutionParams::new("greeting", input))
        .await
        .map_err(internal)?
        .execution;
    Ok((StatusCode::ACCEPTED, Json(json!({ "id": execution.id }))))
}

/// `GET /greetings/{id}`: the execution's status and, once completed, its output.
async fn show_greeting(
    State(client): State<Client>,
    Path(id): Path<String>,
) -> Result<Json<Value>, (StatusCode, String)> {
    let id: ExecutionId = id
        .parse()
        .map_err(|_| (StatusCode::BAD_REQUEST, format!("invalid id \"{id}\"\n")))?;
    let detail = client.execution(id).await.map_err(|err| match err {
        StoreError::NotFound { .. } => (StatusCode::NOT_FOUND, format!("{err}\n")),
        err => internal(err),
    })?;
    let execution = detail.execution;
    Ok(Json(json!({
        "id": execution.id,
        "status": execution.status,
        "output": execution.output,
        "error": execution.error,
    })))
}

fn internal(err: StoreError) -> (StatusCode, String) {
    (StatusCode::INTERNAL_SERVER_ERROR, format!("{err}\n"))
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).expect("install the SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
