//! Quick start: save the hello workflow, start it, run a worker until it completes, and print
//! the execution's history.
//!
//! ```sh
//! cargo run --example quickstart
//! ```
//!
//! Uses the PostgreSQL at `DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/test`).

use std::time::Duration;

use anyhow::Context;
use workflow_core::{
    ExecutionId, StartExecutionParams, Store, WorkflowDefinition, WorkflowGraph, WorkflowWorker,
};
use workflow_store::PgStore;

const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,sqlx=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_DATABASE_URL.into());
    let store = PgStore::connect(&url).await.with_context(|| {
        format!(
            "cannot connect to {} (set DATABASE_URL to a PostgreSQL server)",
            workflow_store::redact_url(&url)
        )
    })?;
    store.migrate().await?;

    // The worker knows which node types exist; definitions are validated against them.
    let worker = WorkflowWorker::new(store.clone()).poll_interval(Duration::from_millis(100));
    let definition: WorkflowDefinition = serde_json::from_str(include_str!("hello.json"))?;
    let graph = WorkflowGraph::validate(definition, worker.registry())?;
    let saved = store.save_workflow(&graph).await?;
    println!(
        "saved workflow \"{}\" version {}",
        saved.name, saved.version
    );

    let execution = store
        .start_execution(StartExecutionParams::new("hello", serde_json::json!({})))
        .await?;
    println!("started execution {}", execution.id);

    // Run the worker until the execution ends.
    worker.run_until(finished(&store, execution.id)).await?;

    let detail = store.get_execution(execution.id).await?;
    println!(
        "\nexecution {}: {}",
        detail.execution.id, detail.execution.status
    );
    for run in &detail.node_runs {
        println!(
            "  {:<10} {:<8} attempt {}  {:<9} {:>6.3}s",
            run.node_id,
            run.node_type,
            run.attempt,
            run.status,
            run.duration().as_secs_f64()
        );
        if let Some(stdout) = run.output.as_ref().and_then(|o| o["stdout"].as_str()) {
            println!("    stdout: {}", stdout.trim_end());
        }
        if let Some(error) = &run.error {
            println!("    error:  {error}");
        }
    }
    anyhow::ensure!(
        detail.execution.status == workflow_core::ExecutionStatus::Completed,
        "the execution did not complete: {:?}",
        detail.execution.error
    );
    Ok(())
}

/// Completes once the execution is in a terminal state.
async fn finished(store: &impl Store, id: ExecutionId) {
    loop {
        match store.get_execution(id).await {
            Ok(detail) if detail.execution.status.is_terminal() => return,
            Ok(_) => {}
            Err(err) => eprintln!("reading execution {id}: {err}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
