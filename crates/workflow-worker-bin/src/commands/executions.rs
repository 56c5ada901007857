//! `start`, `signal`, `cancel`, `retry`, `pause`, `resume` and
//! `executions list|show|cancel|retry|pause|resume|delete`.

use workflow_worker_core::{
    Client, Execution, ExecutionFilter, ExecutionStatus, ListExecutionsParams, RetryFrom,
    RetryRequest, SendSignalParams, SignalWithStartParams, WorkflowRef,
};

use super::parse_execution_id;
use crate::cli::{
    CancelArgs, FilterArgs, ListArgs, PauseArgs, ResumeArgs, RetryArgs, RetryOptions, SignalArgs,
    SignalWithStartArgs, StartArgs,
};
use crate::render;

/// Starts an execution and prints its id: the id of the one holding the key, if one does
/// (and says so on stderr).
pub(super) async fn start(client: &Client, args: StartArgs) -> anyhow::Result<()> {
    let started = client.start(args.params()).await?;
    let execution = &started.execution;
    if !started.created {
        eprintln!("{}", holds_key(execution));
    }
    println!("{}", execution.id);
    Ok(())
}

/// Sends a signal to the execution holding a key, starting it first if none does.
pub(super) async fn signal_with_start(
    client: &Client,
    args: SignalWithStartArgs,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.start.key.is_some(),
        "signal-with-start needs --key: the business key of the execution to signal"
    );
    let mut params = SignalWithStartParams::new(args.start.params(), args.signal, args.payload);
    params.idempotency_key = args.idempotency_key;
    let sent = client.signal_with_start(params).await?;
    let execution = &sent.started.execution;
    if sent.started.created {
        println!("started execution {}", execution.id);
    } else {
        println!("{}", holds_key(execution));
    }
    println!(
        "signal {} \"{}\" sent to execution {}",
        sent.signal.id, sent.signal.name, execution.id
    );
    Ok(())
}

/// What a start says of an execution that held its key.
fn holds_key(execution: &Execution) -> String {
    format!(
        "execution {} ({}) holds key \"{}\": none started",
        execution.id,
        execution.status,
        execution.key.as_deref().unwrap_or_default()
    )
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

/// Pauses an execution, or asks its worker to.
pub(super) async fn pause(client: &Client, args: PauseArgs) -> anyhow::Result<()> {
    let execution = client.pause(parse_execution_id(&args.id)?).await?;
    if execution.status == ExecutionStatus::Paused {
        println!("paused execution {}", execution.id);
    } else {
        println!(
            "pausing execution {}: it pauses once its running nodes finish",
            execution.id
        );
    }
    Ok(())
}

/// Resumes a paused execution, or withdraws a pause not yet honoured.
pub(super) async fn resume(client: &Client, args: ResumeArgs) -> anyhow::Result<()> {
    let id = parse_execution_id(&args.id)?;
    let before = client.execution(id).await?.execution;
    let after = client.resume(id, &args.by).await?;
    if before.status == ExecutionStatus::Paused {
        println!("resumed execution {id}");
    } else if before.pause_requested_at.is_some() {
        println!("execution {id} will not pause: the pause asked is withdrawn");
    } else {
        println!(
            "execution {id} is {}, not paused: nothing to resume",
            after.status
        );
    }
    Ok(())
}

/// The retry the options ask for.
fn retry_request(how: RetryOptions) -> RetryRequest {
    let from = match (how.from_start, how.from) {
        (true, _) => RetryFrom::Start,
        (false, Some(node)) => RetryFrom::Node(node),
        (false, None) => RetryFrom::Stopped,
    };
    let request = RetryRequest::new(how.by).from(from);
    if how.latest {
        request.latest()
    } else {
        request
    }
}

/// Runs an ended execution again.
pub(super) async fn retry(client: &Client, args: RetryArgs) -> anyhow::Result<()> {
    let request = retry_request(args.how);
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
            before: None,
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

/// A bulk action of `executions cancel|retry|delete`.
pub(super) enum Bulk {
    /// Cancel, with this reason.
    Cancel(String),
    /// Retry, so.
    Retry(RetryOptions),
    /// Delete what ended.
    Delete,
}

/// Runs `action` on every execution the filter matches, or with `--dry-run` only says how
/// many match.
pub(super) async fn bulk(client: &Client, filter: &FilterArgs, action: Bulk) -> anyhow::Result<()> {
    let (dry_run, filter) = execution_filter(filter)?;
    if dry_run {
        let matched = client.count_matching(&filter).await?;
        println!("{matched} executions match (dry run: nothing changed)");
        return Ok(());
    }
    let (verb, outcome) = match action {
        Bulk::Cancel(reason) => ("cancelled", client.cancel_matching(&filter, &reason).await?),
        Bulk::Retry(how) => {
            let request = retry_request(how);
            ("retried", client.retry_matching(&filter, &request).await?)
        }
        Bulk::Delete => ("deleted", client.delete_matching(&filter).await?),
    };
    println!(
        "{verb} {} of {} matching executions",
        outcome.affected, outcome.matched
    );
    Ok(())
}

/// The filter the options give, and whether this is a dry run. An empty filter needs
/// `--all`: a bulk action on every execution is never an accident.
fn execution_filter(args: &FilterArgs) -> anyhow::Result<(bool, ExecutionFilter)> {
    let filter = ExecutionFilter {
        statuses: args.status.clone(),
        workflow: args.workflow.as_deref().map(WorkflowRef::from),
        created_before: args.before,
        created_after: args.after,
        error_contains: args.error.clone(),
    };
    if filter.is_empty() && !args.all {
        anyhow::bail!(
            "no filter given: pass --status, --workflow, --before, --after or --error, \
             or --all to act on every execution"
        );
    }
    if !filter.is_empty() && args.all {
        anyhow::bail!("--all cannot be combined with a filter");
    }
    Ok((args.dry_run, filter))
}
