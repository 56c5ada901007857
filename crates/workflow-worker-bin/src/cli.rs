//! Command-line options: flags first, then environment variables, then defaults.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use workflow_core::ExecutionStatus;

/// Runs durable workflows stored in PostgreSQL or an embedded SQLite file.
#[derive(Debug, Parser)]
#[command(name = "workflow-worker", version, about)]
pub(crate) struct Cli {
    /// Database URL: postgres://user:password@host:5432/db or sqlite://path/to/file.db. Falls
    /// back to SUPABASE_DB_URL, then to the embedded SQLite file sqlite://workflow-worker.db.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, global = true)]
    pub(crate) database_url: Option<String>,

    /// Log format: one line of text per event, or one JSON object per line.
    #[arg(long, env = "WORKFLOW_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub(crate) log_format: LogFormat,

    #[command(subcommand)]
    pub(crate) command: Option<Command>,

    #[command(flatten)]
    pub(crate) run: RunArgs,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LogFormat {
    /// `2026-11-27T10:00:00Z INFO execution{execution.id=…}: node completed node.id=…`
    Text,
    /// One JSON object per line, with every field and span.
    Json,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the worker (the default when no command is given).
    Run(RunArgs),
    /// Apply database migrations and exit.
    Migrate,
    /// Manage workflow definitions.
    #[command(subcommand)]
    Workflow(WorkflowCommand),
    /// Start an execution of a workflow and print its id.
    Start {
        /// Workflow name or id.
        workflow: String,
        /// Execution input as JSON.
        #[arg(long, default_value = "{}", value_parser = parse_json)]
        input: serde_json::Value,
        /// Seconds the execution may take before it ends timed_out (default: the workflow's
        /// timeout, if any).
        #[arg(long, value_parser = parse_seconds)]
        timeout: Option<Duration>,
    },
    /// Send a signal (e.g. an approval) to an execution; a waiting execution wakes at once.
    Signal {
        /// Execution id.
        id: String,
        /// Signal name, e.g. approval.
        name: String,
        /// Payload as JSON, e.g. '{"approved": true}'.
        #[arg(long, default_value = "null", value_parser = parse_json)]
        payload: serde_json::Value,
        /// Sending again with the same key stores the signal once.
        #[arg(long)]
        idempotency_key: Option<String>,
    },
    /// Cancel an execution that has not ended; a running node is stopped.
    Cancel {
        /// Execution id.
        id: String,
        /// Recorded as the execution's error.
        #[arg(long, default_value = "cancelled by request")]
        reason: String,
    },
    /// Inspect executions.
    #[command(subcommand)]
    Executions(ExecutionsCommand),
    /// Manage cron schedules that start workflows.
    #[command(subcommand)]
    Schedule(ScheduleCommand),
    /// Delete executions that ended (completed, failed, cancelled, timed out) longer ago than
    /// --older-than, with their node runs and signals, in batches. Running, waiting and
    /// pending executions are never touched.
    Prune {
        /// Age of the executions to delete, e.g. 30d, 12h, 90m.
        #[arg(long, value_parser = parse_age)]
        older_than: Duration,
        /// Executions deleted per statement (one short transaction each).
        #[arg(long, default_value_t = workflow_core::worker::PRUNE_BATCH)]
        batch_size: u32,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum ScheduleCommand {
    /// Start WORKFLOW on every tick of CRON ("*/5 * * * *", or six fields with seconds).
    Add {
        /// Workflow name or id.
        workflow: String,
        /// Cron expression.
        cron: String,
        /// IANA time zone the expression is read in.
        #[arg(long, default_value = "UTC")]
        tz: String,
        /// Input of every execution, as JSON.
        #[arg(long, default_value = "{}", value_parser = parse_json)]
        input: serde_json::Value,
        /// How many missed ticks to fire after an outage (default: once for the period).
        #[arg(long, default_value_t = 1)]
        catch_up: u32,
    },
    /// List schedules.
    List,
    /// Stop a schedule from firing.
    Pause {
        /// Schedule id.
        id: String,
    },
    /// Fire a paused schedule again, from its next tick (no burst for the paused period).
    Resume {
        /// Schedule id.
        id: String,
    },
    /// Delete a schedule; the executions it started stay.
    Delete {
        /// Schedule id.
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum WorkflowCommand {
    /// Validate a workflow definition (JSON file) and save it as a new version.
    Save {
        /// Path of the JSON definition.
        file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum ExecutionsCommand {
    /// List executions, newest first.
    List {
        /// Only executions in this status.
        #[arg(long, value_parser = parse_status)]
        status: Option<ExecutionStatus>,
        /// Only executions of this workflow (name or id).
        #[arg(long)]
        workflow: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Print JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show an execution with every node run.
    Show {
        /// Execution id.
        id: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// Options of the worker itself.
#[derive(Debug, Clone, Args)]
pub(crate) struct RunArgs {
    /// Executions run at once.
    #[arg(long, env = "WORKFLOW_WORKER_CONCURRENCY", default_value_t = workflow_core::worker::DEFAULT_CONCURRENCY)]
    pub(crate) concurrency: usize,

    /// Seconds between polls when idle.
    #[arg(long, env = "WORKFLOW_POLL_INTERVAL", default_value = "1.0", value_parser = parse_seconds)]
    pub(crate) poll_interval: Duration,

    /// Lease owner id recorded on claimed executions. Defaults to hostname-pid-random.
    #[arg(long, env = "WORKFLOW_WORKER_ID")]
    pub(crate) worker_id: Option<String>,

    /// Seconds a claim holds an execution without a heartbeat; a dead worker's executions are
    /// rescued after this.
    #[arg(long, env = "WORKFLOW_LEASE_DURATION", default_value = "30", value_parser = parse_seconds)]
    pub(crate) lease_duration: Duration,

    /// Seconds between lease renewals; must be shorter than the lease.
    #[arg(long, env = "WORKFLOW_HEARTBEAT_INTERVAL", default_value = "10", value_parser = parse_seconds)]
    pub(crate) heartbeat_interval: Duration,

    /// Seconds running nodes get to finish after SIGINT/SIGTERM before they are interrupted
    /// and their executions released.
    #[arg(long, env = "WORKFLOW_SHUTDOWN_GRACE", default_value = "30", value_parser = parse_seconds)]
    pub(crate) shutdown_grace: Duration,

    /// Listen for wake-up hints (PostgreSQL NOTIFY) to start new and signalled executions at
    /// once; `false` behind a transaction-mode pooler, where LISTEN does not work.
    #[arg(long, env = "WORKFLOW_WAKEUPS", default_value_t = true, action = clap::ArgAction::Set)]
    pub(crate) wakeups: bool,

    /// Rescues in a row after which an execution whose worker keeps dying is failed.
    #[arg(long, env = "WORKFLOW_MAX_RESCUES", default_value_t = workflow_core::worker::DEFAULT_MAX_RESCUES)]
    pub(crate) max_rescues: u32,

    /// Serve Prometheus metrics at http://ADDR/metrics, with /healthz (the process is up) and
    /// /readyz (the database answers), e.g. 127.0.0.1:9464.
    #[arg(long, env = "WORKFLOW_METRICS_ADDR")]
    pub(crate) metrics_addr: Option<std::net::SocketAddr>,

    /// Delete executions that ended longer ago than this (e.g. 30d), once a minute in batches.
    /// Off by default: history is kept until pruned.
    #[arg(long, env = "WORKFLOW_PRUNE_AFTER", value_parser = parse_age)]
    pub(crate) prune_after: Option<Duration>,
}

fn parse_seconds(value: &str) -> Result<Duration, String> {
    let secs: f64 = value
        .parse()
        .map_err(|_| format!("\"{value}\" is not a number of seconds"))?;
    Duration::try_from_secs_f64(secs).map_err(|_| format!("{value} must be 0 or more seconds"))
}

/// A duration with a unit: 30d, 12h, 90m, 45s (see the humantime crate).
fn parse_age(value: &str) -> Result<Duration, String> {
    humantime::parse_duration(value)
        .map_err(|err| format!("\"{value}\" is not a duration such as 30d, 12h or 90m: {err}"))
}

fn parse_json(value: &str) -> Result<serde_json::Value, String> {
    serde_json::from_str(value).map_err(|err| format!("invalid JSON: {err}"))
}

fn parse_status(value: &str) -> Result<ExecutionStatus, String> {
    value
        .parse()
        .map_err(|err: workflow_core::state::UnknownStatus| err.to_string())
}
