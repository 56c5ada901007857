//! Quick start: save the hello workflow, start it, run a worker until it completes, and print
//! the execution's history.
//!
//! ```sh
//! cargo run --example quickstart
//! ```
//!
//! Uses the database at `DATABASE_URL` (PostgreSQL or SQLite); without one, the embedded
//! SQLite file `workflow-worker.db` in the working directory: nothing to install.

use std::time::Duration;

use workflow_worker_core::{
    Client, ExecutionId, StartExecutionParams, WorkflowDefinition, WorkflowWorker,
};

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
    println!("database: {}", workflow_worker_store::redact_url(&url));
    let store = workflow_worker_store::open_store(&url).await?;

    // The worker knows which node types exist; its client validates definitions against them.
    let worker = WorkflowWorker::new(store).poll_interval(Duration::from_millis(100));
    let client = worker.client();
    let definition: WorkflowDefinition = serde_json::from_str(include_str!("hello.json"))?;
    let saved = client.save_workflow(definition).await?;
    println!(
        "saved workflow \"{}\" version {}",
        saved.name, saved.version
    );

    let execution = client
        .start(StartExecutionParams::new("hello", serde_json::json!({})))
        .await?
        .execution;
    println!("started execution {}", execution.id);

    // Run the worker until the execution ends.
    worker.run_until(finished(&client, execution.id)).await?;

    let detail = client.execution(execution.id).await?;
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
        detail.execution.status == workflow_worker_core::ExecutionStatus::Completed,
        "the execution did not complete: {:?}",
        detail.execution.error
    );
    Ok(())
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
