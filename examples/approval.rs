//! An approval workflow driven from code: start two orders, wait until each waits for its
//! approval, approve one and reject the other, and read what each did.
//!
//! ```sh
//! cargo run --example approval
//! ```
//!
//! Uses the database at `DATABASE_URL` (PostgreSQL or SQLite); without one, the embedded
//! SQLite file `workflow-worker.db` in the working directory.

use std::time::Duration;

use serde_json::json;
use workflow_worker_core::{
    Client, ExecutionId, ExecutionStatus, SendSignalParams, StartExecutionParams,
    WorkflowDefinition, WorkflowWorker,
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
    let store = workflow_worker_store::open_store(&url).await?;

    // trigger -> wait for "approval" -> ship (approved) or refund (rejected).
    let definition: WorkflowDefinition = serde_json::from_value(json!({
        "name": "order_approval",
        "nodes": [
            {"id": "order", "type": "trigger"},
            {"id": "approval", "type": "wait_for_signal",
             "config": {"signal": "approval", "timeout": 86400}},
            {"id": "ship", "type": "code",
             "config": {"language": "shell", "code": "echo shipped"}},
            {"id": "refund", "type": "code",
             "config": {"language": "shell", "code": "echo refunded"}}
        ],
        "edges": [
            {"from": "order", "to": "approval"},
            {"from": "approval", "to": "ship", "branch": "approved"},
            {"from": "approval", "to": "refund", "branch": "rejected"}
        ]
    }))?;
    let worker = WorkflowWorker::new(store).poll_interval(Duration::from_millis(100));
    let client = worker.client();
    client.save_workflow(definition).await?;
    let mut orders = Vec::new();
    for order in [1, 2] {
        let params = StartExecutionParams::new("order_approval", json!({"order": order}));
        orders.push(client.start(params).await?.execution.id);
    }

    // The worker runs in the background, as it would in a service.
    let stop = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn(worker.run_until(stop.clone().cancelled_owned()));

    // Both park at the approval: `waiting`, holding no worker slot.
    wait_for(&client, &orders, |status| {
        status == ExecutionStatus::Waiting
    })
    .await?;
    println!("both orders wait for approval");

    // A person decides: approve the first, reject the second.
    for (id, approved, by) in [(orders[0], true, "ada"), (orders[1], false, "bob")] {
        client
            .signal(SendSignalParams {
                execution_id: id,
                name: "approval".into(),
                payload: json!({"approved": approved, "by": by}),
                // A retried click sends the same key and is stored once.
                idempotency_key: Some(format!("{id}-decision")),
            })
            .await?;
    }
    wait_for(&client, &orders, ExecutionStatus::is_terminal).await?;
    stop.cancel();
    running.await??;

    for id in &orders {
        let detail = client.execution(*id).await?;
        let ran: Vec<String> = detail
            .node_runs
            .iter()
            .map(|r| format!("{} {}", r.node_id, r.status))
            .collect();
        println!(
            "order {} {}: {}",
            detail.execution.input["order"],
            detail.execution.status,
            ran.join(", ")
        );
        anyhow::ensure!(detail.execution.status == ExecutionStatus::Completed);
    }
    Ok(())
}

/// Polls until every execution's status satisfies `done`.
async fn wait_for(
    client: &Client,
    ids: &[ExecutionId],
    done: impl Fn(ExecutionStatus) -> bool,
) -> anyhow::Result<()> {
    for _ in 0..600 {
        let mut all = true;
        for id in ids {
            all &= done(client.execution(*id).await?.execution.status);
        }
        if all {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("executions did not reach the expected status within 30 s")
}
