//! `start`, `signal`, `cancel`, `retry` and `executions list|show`.

use workflow_worker_core::{
    Client, Execution, ListExecutionsParams, RetryFrom, RetryRequest, SendSignalParams,
    StartExecutionParams, WorkflowRef,
};

use super::parse_execution_id;
use crate::cli::{CancelArgs, ListArgs, RetryArgs, SignalArgs, StartArgs};
use crate::render;

/// Starts an execution and prints its id.
pub(super) async fn start(client: &Client, args: StartArgs) -> anyhow::Result<()> {
    let mut params = StartExecutionParams::new(args.workflow.as_str(), args.input);
    params.timeout = args.timeout;
    let execution = client.start(params).await?;
    println!("{}", execution.id);
    Ok(())
}

/// Sends a signal.
pub(super) async fn signal(client: &Client, args: SignalArgs) -> anyhow::Result<()> {
    let signal = client
        .signal(SendSignalParams {
            execution_id: parse_execution_id(&args.id)?,
            name: args.name,
            payload: args.payload,
            idempotency_key: args.idempotency_key,
        })
        .await?;
    println!(
        "signal {} \"{}\" sent to execution {}",
        signal.id, signal.name, signal.execution_id
    );
    Ok(())
}

/// Cancels an execution.
pub(super) async fn cancel(client: &Client, args: CancelArgs) -> anyhow::Result<()> {
    let cancelled = client
        .cancel(parse_execution_id(&args.id)?, &args.reason)
        .await?;
    println!("cancelled execution {}", cancelled.id);
    Ok(())
}

/// Runs an ended execution again.
pub(super) async fn retry(client: &Client, args: RetryArgs) -> anyhow::Result<()> {
    let from = match (args.from_start, args.from) {
        (true, _) => RetryFrom::Start,
        (false, Some(node)) => RetryFrom::Node(node),
        (false, None) => RetryFrom::Stopped,
    };
    let mut request = RetryRequest::new(args.by).from(from);
    if args.latest {
        request = request.latest();
    }
    let retried = client.retry(parse_execution_id(&args.id)?, request).await?;
    println!(
        "retrying execution {} on {} v{}",
        retried.id, retried.workflow_name, retried.workflow_version
    );
    Ok(())
}

/// Lists executions, a line (or a JSON object) each.
pub(super) async fn list(client: &Client, args: ListArgs) -> anyhow::Result<()> {
    let executions = client
        .executions(ListExecutionsParams {
            status: args.status,
            workflow: args.workflow.as_deref().map(WorkflowRef::from),
            limit: args.limit,
        })
        .await?;
    for execution in executions {
        if args.json {
            println!("{}", serde_json::to_string(&execution)?);
        } else {
            println!("{}", render::execution_line(&execution));
        }
    }
    Ok(())
}

/// Shows one execution with its node runs; one that has not ended says who can run it.
pub(super) async fn show(client: &Client, id: &str, json: bool) -> anyhow::Result<()> {
    let detail = client.execution(parse_execution_id(id)?).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&detail)?);
        return Ok(());
    }
    let runners = match detail.execution.status.is_terminal() {
        true => None,
        false => Some(runners(client, &detail.execution).await?),
    };
    print!("{}", render::execution(&detail, runners.as_deref()));
    Ok(())
}

/// Which live workers can run `execution`, or why none can.
async fn runners(client: &Client, execution: &Execution) -> anyhow::Result<String> {
    let version = client.workflow_version_of(execution).await?;
    let mut needed: Vec<String> = version
        .definition
        .nodes
        .iter()
        .map(|node| node.node_type.clone())
        .collect();
    needed.sort();
    needed.dedup();
    let live = client.live_workers().await?;
    let able: Vec<&str> = live
        .iter()
        .filter(|worker| worker.runs(&needed))
        .map(|worker| worker.id.as_str())
        .collect();
    let needed = needed.join(", ");
    Ok(if !able.is_empty() {
        format!("{} (node types {needed})", able.join(", "))
    } else if live.is_empty() {
        format!("no live worker (it needs node types {needed})")
    } else {
        format!("no live worker has all of its node types ({needed}); it waits for one that does")
    })
}
