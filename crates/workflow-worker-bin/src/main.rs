//! The `workflow-worker` binary: parses options, opens the store, wires the worker.

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::Context;
use workflow_worker_core::{
    ExecutionDetail, ExecutionId, ListExecutionsParams, NodeRegistry, Schedule, ScheduleId,
    SendSignalParams, StartExecutionParams, Store, WorkflowDefinition, WorkflowGraph, WorkflowRef,
    WorkflowWorker,
};

mod cli;
mod http;

use cli::{Cli, Command, ExecutionsCommand, LogFormat, RunArgs, ScheduleCommand, WorkflowCommand};

/// Log filter when `RUST_LOG` is not set: our events, and only warnings from sqlx (its
/// notices about already-applied migrations are noise).
const DEFAULT_LOG_FILTER: &str = "info,sqlx=warn";

fn main() -> ExitCode {
    let cli = match parse_cli() {
        Ok(cli) => cli,
        // Usage mistakes get one line naming the problem; --help and --version print as usual.
        Err(err) if err.use_stderr() => {
            eprintln!("workflow-worker: error: {} (see --help)", usage_error(&err));
            return ExitCode::from(2);
        }
        Err(err) => err.exit(),
    };
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_LOG_FILTER)),
        )
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => logs.json().with_current_span(false).init(),
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("workflow-worker: error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("workflow-worker: error: {}", one_line(&err));
            ExitCode::FAILURE
        }
    }
}

/// Parses the command line. The worker's options are accepted before or after `run` (they
/// are global flags), and refused on any other command rather than silently ignored.
fn parse_cli() -> Result<Cli, clap::Error> {
    use clap::parser::ValueSource;
    use clap::{CommandFactory, FromArgMatches};

    let mut command = Cli::command();
    let matches = command.try_get_matches_from_mut(std::env::args_os())?;
    if let Some((name, sub)) = matches.subcommand()
        && name != "run"
    {
        // Global flags are visible in the subcommand's matches wherever they were typed.
        let typed = RunArgs::NAMES
            .iter()
            .find(|id| sub.value_source(id) == Some(ValueSource::CommandLine));
        if let Some(id) = typed {
            let flag = id.replace('_', "-");
            return Err(command.error(
                clap::error::ErrorKind::ArgumentConflict,
                format!("--{flag} is an option of `workflow-worker run`, not of `{name}`"),
            ));
        }
    }
    Cli::from_arg_matches(&matches).map_err(|err| err.format(&mut command))
}

/// clap's message without its usage section, on one line: `the following required arguments
/// were not provided: <ID>`.
fn usage_error(err: &clap::Error) -> String {
    let rendered = err.render().to_string();
    let message: Vec<&str> = rendered
        .lines()
        .take_while(|line| !line.is_empty() && !line.starts_with("Usage:"))
        .map(str::trim)
        .collect();
    message.join(" ").trim_start_matches("error: ").to_owned()
}

/// The error and its causes on one line, leaving out causes the previous message already
/// quotes (sqlx errors repeat their source in their own message).
fn one_line(err: &anyhow::Error) -> String {
    let mut line = String::new();
    let mut previous = String::new();
    for cause in err.chain() {
        let message = cause.to_string();
        if !previous.contains(&message) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&message);
        }
        previous = message;
    }
    line
}

/// What a command may do to the database's schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    /// `run` and `migrate`: apply pending migrations.
    Migrate,
    /// Commands that write: a missing SQLite file is created (with its schema); an existing
    /// database must have the current schema.
    Write,
    /// Commands that only read: the database must exist with the current schema.
    Read,
}

impl Command {
    fn access(&self) -> Access {
        match self {
            Command::Run | Command::Migrate => Access::Migrate,
            Command::Executions(_) | Command::Schedule(ScheduleCommand::List) => Access::Read,
            _ => Access::Write,
        }
    }

    /// The connection's `application_name` for commands other than `run`.
    fn name(&self) -> &'static str {
        match self {
            Command::Run => "run",
            Command::Migrate => "migrate",
            Command::Workflow(_) => "workflow",
            Command::Start { .. } => "start",
            Command::Signal { .. } => "signal",
            Command::Cancel { .. } => "cancel",
            Command::Executions(_) => "executions",
            Command::Schedule(_) => "schedule",
            Command::Prune { .. } => "prune",
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let command = cli.command.unwrap_or(Command::Run);
    // Check the worker's settings before touching the database.
    let config = match command {
        Command::Run => Some(worker_config(cli.run.clone())?),
        _ => None,
    };
    let (url, embedded_default) = database_url(cli.database_url);
    let application_name = match &config {
        Some(config) => config.worker_id.clone(),
        None => format!("workflow-worker {}", command.name()),
    };
    let access = command.access();
    let options = workflow_worker_store::OpenOptions {
        migrate: access == Access::Migrate,
        create_missing: access == Access::Write,
        postgres: workflow_worker_store::PgStoreOptions::default()
            .max_connections(cli.connection.max_connections)
            .connect_timeout(cli.connection.connect_timeout)
            .statement_timeout(Some(cli.connection.statement_timeout))
            .application_name(application_name)
            .pooler(cli.connection.pooler),
    };
    if let Command::Workflow(WorkflowCommand::Schema) = command {
        let schema = WorkflowDefinition::json_schema();
        println!("{}", serde_json::to_string_pretty(&schema)?);
        return Ok(());
    }
    // Only `run` has a worker config.
    if let Some(config) = config {
        return run_worker(
            &url,
            embedded_default,
            &options,
            config,
            cli.run.metrics_addr,
        )
        .await;
    }
    let store = workflow_worker_store::open_store_with(&url, &options).await?;
    match command {
        Command::Run => unreachable!("handled above"),
        Command::Prune {
            older_than,
            batch_size,
        } => {
            anyhow::ensure!(batch_size > 0, "--batch-size must be at least 1");
            let pruned =
                workflow_worker_core::worker::prune(&*store, older_than, batch_size).await?;
            println!(
                "pruned {pruned} executions that ended more than {} ago",
                humantime::format_duration(older_than)
            );
        }
        Command::Migrate => {
            println!(
                "migrations applied to {}",
                workflow_worker_store::redact_url(&url)
            );
        }
        Command::Workflow(WorkflowCommand::Save { file }) => save_workflow(&*store, &file).await?,
        Command::Workflow(WorkflowCommand::Schema) => unreachable!("handled above"),
        Command::Start {
            workflow,
            input,
            timeout,
        } => {
            let mut params = StartExecutionParams::new(workflow.as_str(), input);
            params.timeout = timeout;
            let execution = store.start_execution(params).await?;
            println!("{}", execution.id);
        }
        Command::Signal {
            id,
            name,
            payload,
            idempotency_key,
        } => {
            let signal = store
                .send_signal(SendSignalParams {
                    execution_id: parse_id(&id)?,
                    name,
                    payload,
                    idempotency_key,
                })
                .await?;
            println!(
                "signal {} \"{}\" sent to execution {}",
                signal.id, signal.name, signal.execution_id
            );
        }
        Command::Schedule(command) => schedule(&*store, command).await?,
        Command::Cancel { id, reason } => {
            let cancelled = store.cancel_execution(parse_id(&id)?, &reason).await?;
            println!("cancelled execution {}", cancelled.id);
        }
        Command::Executions(ExecutionsCommand::List {
            status,
            workflow,
            limit,
            json,
        }) => {
            let executions = store
                .list_executions(ListExecutionsParams {
                    status,
                    workflow: workflow.as_deref().map(WorkflowRef::from),
                    limit,
                })
                .await?;
            for execution in executions {
                if json {
                    println!("{}", serde_json::to_string(&execution)?);
                } else {
                    println!(
                        "{}  {:<10} {} v{}  created {}",
                        execution.id,
                        execution.status,
                        execution.workflow_name,
                        execution.workflow_version,
                        execution.created_at.format("%Y-%m-%d %H:%M:%S%.3f UTC"),
                    );
                }
            }
        }
        Command::Executions(ExecutionsCommand::Show { id, json }) => {
            let detail = store.get_execution(parse_id(&id)?).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&detail)?);
            } else {
                let runners = match detail.execution.status.is_terminal() {
                    true => None,
                    false => Some(runners(&*store, &detail.execution).await?),
                };
                print!("{}", render_execution(&detail, runners.as_deref()));
            }
        }
    }
    Ok(())
}

/// `workflow-worker run`: serves the health endpoint at once (it answers while the database
/// does not), connects and migrates, then runs the worker until SIGINT or SIGTERM.
async fn run_worker(
    url: &str,
    embedded_default: bool,
    options: &workflow_worker_store::OpenOptions,
    config: workflow_worker_core::WorkerConfig,
    metrics_addr: Option<std::net::SocketAddr>,
) -> anyhow::Result<()> {
    let stop_metrics = tokio_util::sync::CancellationToken::new();
    let (endpoint, served) = match metrics_addr {
        Some(addr) => {
            let server = http::MetricsServer::bind(addr).await?;
            let endpoint = server.endpoint();
            tracing::info!(addr = %server.local_addr()?, "serving /metrics, /healthz and /readyz");
            (
                Some(endpoint),
                Some(tokio::spawn(server.serve(stop_metrics.clone()))),
            )
        }
        None => (None, None),
    };
    let shown = workflow_worker_store::redact_url(url);
    if embedded_default {
        tracing::info!(
            database = %shown,
            "no DATABASE_URL set: using the embedded SQLite store in the working directory"
        );
    }
    tracing::info!(database = %shown, timeout = ?options.postgres.get_connect_timeout(), "connecting to the database and applying migrations");
    let opened = tokio::select! {
        opened = workflow_worker_store::open_store_with(url, options) => opened,
        () = shutdown_signal() => {
            stop_metrics.cancel();
            return Ok(());
        }
    };
    let ran = match opened {
        Ok(store) => {
            tracing::info!(database = %shown, "database ready");
            if let Some(endpoint) = &endpoint {
                endpoint.set_store(store.clone());
            }
            WorkflowWorker::new(store)
                .config(config)
                .run_until(shutdown_signal())
                .await
                .map_err(anyhow::Error::from)
        }
        Err(err) => Err(err.into()),
    };
    // The endpoint stays up while the worker drains, then stops with it.
    stop_metrics.cancel();
    if let Some(served) = served {
        served.await??;
    }
    ran
}

async fn schedule(store: &dyn Store, command: ScheduleCommand) -> anyhow::Result<()> {
    let parse = |id: &str| -> anyhow::Result<ScheduleId> {
        id.parse()
            .with_context(|| format!("invalid schedule id \"{id}\""))
    };
    let print = |s: &Schedule| {
        let time = |t: Option<chrono::DateTime<chrono::Utc>>| {
            t.map_or_else(
                || "-".to_owned(),
                |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
            )
        };
        println!(
            "{}  {:<8} {}  \"{}\" {}  next {}  last {}",
            s.id,
            if s.enabled { "enabled" } else { "paused" },
            s.workflow_name,
            s.cron,
            s.timezone,
            time(s.next_fire_at),
            time(s.last_fire_at),
        );
    };
    match command {
        ScheduleCommand::Add {
            workflow,
            cron,
            tz,
            input,
            catch_up,
        } => {
            let created = workflow_worker_core::schedule::create(
                store,
                WorkflowRef::from(workflow.as_str()),
                &cron,
                &tz,
                input,
                catch_up,
            )
            .await?;
            print(&created);
        }
        ScheduleCommand::List => store.list_schedules().await?.iter().for_each(print),
        ScheduleCommand::Pause { id } => {
            print(&store.set_schedule_enabled(parse(&id)?, false).await?)
        }
        ScheduleCommand::Resume { id } => {
            print(&workflow_worker_core::schedule::resume(store, parse(&id)?).await?)
        }
        ScheduleCommand::Delete { id } => {
            let id = parse(&id)?;
            store.delete_schedule(id).await?;
            println!("deleted schedule {id}");
        }
    }
    Ok(())
}

fn parse_id(id: &str) -> anyhow::Result<ExecutionId> {
    id.parse()
        .with_context(|| format!("invalid execution id \"{id}\""))
}

fn worker_config(args: RunArgs) -> anyhow::Result<workflow_worker_core::WorkerConfig> {
    let mut config = workflow_worker_core::WorkerConfig::default();
    config.concurrency = args.concurrency;
    config.poll_interval = args.poll_interval;
    config.lease_duration = args.lease_duration;
    config.heartbeat_interval = args.heartbeat_interval;
    config.shutdown_grace = args.shutdown_grace;
    config.max_rescues = args.max_rescues;
    config.wakeups = args.wakeups;
    config.prune_after = args.prune_after;
    if let Some(id) = args.worker_id {
        config.worker_id = id;
    }
    config.validate()?;
    Ok(config)
}

/// `--database-url`/`DATABASE_URL`, else `SUPABASE_DB_URL`, else the embedded SQLite file;
/// `true` beside the URL when it is that default.
fn database_url(flag_or_env: Option<String>) -> (String, bool) {
    match flag_or_env
        .filter(|url| !url.is_empty())
        .or_else(workflow_worker_store::database_url_from_env)
    {
        Some(url) => (url, false),
        None => (workflow_worker_store::DEFAULT_DATABASE_URL.to_owned(), true),
    }
}

async fn save_workflow(store: &dyn Store, file: &std::path::Path) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let definition = WorkflowDefinition::from_json(&text)
        .with_context(|| format!("{} is not a valid workflow definition", file.display()))?;
    let graph = WorkflowGraph::validate(definition, &NodeRegistry::builtin())
        .with_context(|| format!("{} was not saved", file.display()))?;
    let saved = store.save_workflow(&graph).await?;
    println!(
        "saved workflow \"{}\" version {} ({})",
        saved.name, saved.version, saved.workflow_id
    );
    Ok(())
}

/// Which live workers can run `execution`, or why none can, for `executions show`.
async fn runners(
    store: &dyn Store,
    execution: &workflow_worker_core::Execution,
) -> anyhow::Result<String> {
    let version = store
        .get_workflow_version(execution.workflow_id, execution.workflow_version)
        .await?;
    let mut needed: Vec<String> = version
        .definition
        .nodes
        .iter()
        .map(|node| node.node_type.clone())
        .collect();
    needed.sort();
    needed.dedup();
    let live = store.live_workers().await?;
    let able: Vec<&str> = live
        .iter()
        .filter(|worker| worker.runs(&needed))
        .map(|worker| worker.id.as_str())
        .collect();
    Ok(if !able.is_empty() {
        format!("{} (node types {})", able.join(", "), needed.join(", "))
    } else if live.is_empty() {
        format!("no live worker (it needs node types {})", needed.join(", "))
    } else {
        format!(
            "no live worker has all of its node types ({}); it waits for one that does",
            needed.join(", ")
        )
    })
}

fn render_execution(detail: &ExecutionDetail, runners: Option<&str>) -> String {
    use std::fmt::Write;

    let e = &detail.execution;
    let time = |t: Option<chrono::DateTime<chrono::Utc>>| {
        t.map_or_else(
            || "-".to_owned(),
            |t| t.format("%Y-%m-%d %H:%M:%S%.3f UTC").to_string(),
        )
    };
    let mut out = String::new();
    let _ = writeln!(out, "execution {}", e.id);
    let _ = writeln!(
        out,
        "  workflow:  {} v{} ({})",
        e.workflow_name, e.workflow_version, e.workflow_id
    );
    let _ = writeln!(out, "  status:    {}", e.status);
    if !e.status.is_terminal() {
        let _ = writeln!(out, "  run at:    {}", time(e.run_at));
        if let Some(runners) = runners {
            let _ = writeln!(out, "  run by:    {runners}");
        }
        if let Some(owner) = &e.lease_owner {
            let _ = writeln!(
                out,
                "  leased by: {owner} until {}",
                time(e.lease_expires_at)
            );
        }
    }
    if let Some(deadline) = e.deadline {
        let _ = writeln!(out, "  deadline:  {}", time(Some(deadline)));
    }
    let _ = writeln!(out, "  created:   {}", time(Some(e.created_at)));
    let _ = writeln!(out, "  started:   {}", time(e.started_at));
    let _ = writeln!(out, "  finished:  {}", time(e.finished_at));
    if let (Some(start), Some(end)) = (e.started_at, e.finished_at) {
        let _ = writeln!(out, "  duration:  {:.3}s", (end - start).as_seconds_f64());
    }
    let _ = writeln!(out, "  input:     {}", e.input);
    if let Some(output) = &e.output {
        let _ = writeln!(out, "  output:    {output}");
    }
    if let Some(error) = &e.error {
        let _ = writeln!(out, "  error:     {error}");
    }
    for signal in &detail.signals {
        let consumed = match (&signal.consumed_by_node, signal.consumed_at) {
            (Some(node), Some(at)) => format!("consumed by {node} at {}", time(Some(at))),
            _ => "pending".to_owned(),
        };
        let _ = writeln!(
            out,
            "  signal:    {} {} ({consumed})",
            signal.name, signal.payload
        );
    }
    let _ = writeln!(out, "node runs ({}):", detail.node_runs.len());
    let mut rows = vec![[
        "NODE".to_owned(),
        "TYPE".to_owned(),
        "ATTEMPT".to_owned(),
        "STATUS".to_owned(),
        "DURATION".to_owned(),
        "OUTPUT".to_owned(),
    ]];
    for run in &detail.node_runs {
        let result = match (&run.error, &run.output) {
            (Some(error), _) => format!("error: {error}"),
            (None, Some(output)) => output.to_string(),
            (None, None) => String::new(),
        };
        rows.push([
            run.node_id.clone(),
            run.node_type.clone(),
            run.attempt.to_string(),
            run.status.to_string(),
            format!("{:.3}s", run.duration().as_secs_f64()),
            shorten(&result, SHOWN_OUTPUT_CHARS),
        ]);
    }
    let mut widths = [0; 6];
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    for row in &rows {
        let mut line = String::from(" ");
        for (cell, width) in row.iter().zip(widths) {
            let _ = write!(line, " {cell:<width$} ");
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
    out
}

/// How much of a node run's output or error `executions show` prints (`--json` shows all).
const SHOWN_OUTPUT_CHARS: usize = 72;

/// `text` on one line, cut to `max` characters with an ellipsis.
fn shorten(text: &str, max: usize) -> String {
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() <= max {
        return line;
    }
    let mut cut: String = line.chars().take(max - 1).collect();
    cut.push('…');
    cut
}

/// Completes on the first SIGINT or SIGTERM; a second one exits the process at once.
async fn shutdown_signal() {
    wait_for_signal().await;
    tracing::info!("shutdown requested; finishing executions in flight (signal again to exit now)");
    tokio::spawn(async {
        wait_for_signal().await;
        tracing::warn!("second signal; exiting now");
        std::process::exit(130);
    });
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::shorten;

    #[test]
    fn shorten_keeps_short_text_and_cuts_long_text_to_one_line() {
        assert_eq!(shorten("{\"a\":1}", 10), "{\"a\":1}");
        assert_eq!(shorten("line one\n  line two", 40), "line one line two");
        let cut = shorten(&"x".repeat(100), 10);
        assert_eq!(cut, format!("{}…", "x".repeat(9)));
        assert_eq!(cut.chars().count(), 10);
    }
}
