//! A custom node type on an embedded worker: config checked when the workflow is saved,
//! retryable and fatal errors, and a retry policy.
//!
//! ```sh
//! cargo run --example custom_node
//! ```
//!
//! Uses the database at `DATABASE_URL` (PostgreSQL or SQLite); without one, the embedded
//! SQLite file `workflow-worker.db` in the working directory: nothing to install.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};
use workflow_worker_core::{
    BoxError, ExecutionStatus, NodeContext, NodeError, NodeExecutor, NodeOutcome, ResultExt,
    StartExecutionParams, WorkflowDefinition, WorkflowWorker,
};

/// Converts `input.amount` from one currency to another at a fixed rate.
///
/// Config: `{"rate": 0.92, "currency": "EUR"}`.
struct ConvertCurrency;

#[async_trait]
impl NodeExecutor for ConvertCurrency {
    /// Runs when a workflow using this type is saved: a bad config never reaches a worker.
    fn validate_config(&self, config: &Value) -> Result<(), BoxError> {
        let rate = config["rate"]
            .as_f64()
            .ok_or("config.rate must be a number")?;
        if rate <= 0.0 {
            return Err(format!("config.rate must be positive, got {rate}").into());
        }
        config["currency"]
            .as_str()
            .ok_or("config.currency must be a string")?;
        Ok(())
    }

    async fn execute(&self, ctx: NodeContext) -> Result<NodeOutcome, NodeError> {
        // Bad input will never convert: fail the execution now, no retries.
        let amount = ctx.input["amount"]
            .as_f64()
            .ok_or("input.amount must be a number")
            .fatal()?;
        // A flaky rate service: the first attempt fails with a retryable error. The worker
        // records the failure and retries after the node's backoff.
        if ctx.attempt == 1 {
            return Err(NodeError::retryable("rate service timed out"));
        }
        let rate = ctx.config["rate"].as_f64().unwrap_or(1.0);
        Ok(NodeOutcome::complete(json!({
            "amount": (amount * rate * 100.0).round() / 100.0,
            "currency": ctx.config["currency"],
            "idempotency_key": ctx.idempotency_key,
        })))
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
        .poll_interval(Duration::from_millis(100))
        .node("convert_currency", ConvertCurrency);
    let client = worker.client();

    // A config the node type rejects is refused at save time, naming the node.
    let bad: WorkflowDefinition = serde_json::from_value(json!({
        "name": "convert",
        "nodes": [
            {"id": "start", "type": "trigger"},
            {"id": "to_eur", "type": "convert_currency", "config": {"rate": -1, "currency": "EUR"}}
        ],
        "edges": [{"from": "start", "to": "to_eur"}]
    }))?;
    let err = client.save_workflow(bad).await.unwrap_err();
    println!("rejected: {err}");

    let definition: WorkflowDefinition = serde_json::from_value(json!({
        "name": "convert",
        "nodes": [
            {"id": "start", "type": "trigger"},
            {"id": "to_eur", "type": "convert_currency",
             "config": {"rate": 0.92, "currency": "EUR"},
             "retry": {"max_attempts": 3, "initial_backoff": 0.2}}
        ],
        "edges": [{"from": "start", "to": "to_eur"}]
    }))?;
    client.save_workflow(definition).await?;
    let good = client
        .start(StartExecutionParams::new("convert", json!({"amount": 100})))
        .await?
        .execution
        .id;
    let bad_input = client
        .start(StartExecutionParams::new(
            "convert",
            json!({"amount": "lots"}),
        ))
        .await?
        .execution
        .id;

    let watch = client.clone();
    worker
        .run_until(async move {
            loop {
                let mut open = 0;
                for id in [good, bad_input] {
                    if let Ok(d) = watch.execution(id).await {
                        open += usize::from(!d.execution.status.is_terminal());
                    }
                }
                if open == 0 {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await?;

    let good = client.execution(good).await?;
    let bad_input = client.execution(bad_input).await?;
    println!(
        "converted: {} after {} attempts -> {}",
        good.execution.status,
        good.node_runs
            .iter()
            .filter(|r| r.node_id == "to_eur")
            .count(),
        good.execution.output.clone().unwrap_or_default()
    );
    println!(
        "bad input: {} -> {}",
        bad_input.execution.status,
        bad_input.execution.error.clone().unwrap_or_default()
    );
    anyhow::ensure!(good.execution.status == ExecutionStatus::Completed);
    anyhow::ensure!(bad_input.execution.status == ExecutionStatus::Failed);
    Ok(())
}
