//! Command-line options: flags first, then environment variables, then defaults.

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand};
use workflow_worker_core::{ExecutionStatus, KeyReuse, StartExecutionParams};

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

    #[command(flatten)]
    pub(crate) connection: ConnectionArgs,

    #[command(subcommand)]
    pub(crate) command: Option<Command>,

    /// The worker's options, accepted before or after `run`; other commands refuse them.
    #[command(flatten)]
    pub(crate) run: RunArgs,
}

/// How every command connects to PostgreSQL.
#[derive(Debug, Clone, Args)]
pub(crate) struct ConnectionArgs {
    /// Connections the worker's pool opens at most (PostgreSQL).
    #[arg(long, env = "WORKFLOW_MAX_CONNECTIONS", global = true,
          default_value_t = workflow_worker_store::postgres::DEFAULT_MAX_CONNECTIONS)]
    pub(crate) max_connections: u32,

    /// How long connecting to PostgreSQL may take (30, 10s, 1m).
    #[arg(long, env = "WORKFLOW_CONNECT_TIMEOUT", global = true, default_value = "10s",
          value_parser = parse_duration)]
    pub(crate) connect_timeout: Duration,

    /// How long one statement may run before PostgreSQL cancels it; 0 for no limit.
    /// Migrations are not limited.
    #[arg(long, env = "WORKFLOW_STATEMENT_TIMEOUT", global = true, default_value = "30s",
          value_parser = parse_duration)]
    pub(crate) statement_timeout: Duration,

    /// Whether a transaction-mode pooler (PgBouncer, Supabase's port 6543) is in the way:
    /// `detect` (from the URL: Supabase's and Neon's pooler hosts, `pgbouncer=true`),
    /// `transaction` or `direct`. Behind one, statements are not prepared and wake-ups are off.
    #[arg(long, env = "WORKFLOW_POOLER", global = true, default_value = "detect")]
    pub(crate) pooler: workflow_worker_store::PoolerMode,
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
    Run,
    /// Apply database migrations and exit.
    Migrate,
    /// Manage workflow definitions.
    #[command(subcommand)]
    Workflow(WorkflowCommand),
    /// Start an execution of a workflow and print its id.
    Start(StartArgs),
    /// Send a signal (e.g. an approval) to an execution; a waiting execution wakes at once.
    Signal(SignalArgs),
    /// Send a signal to the execution of a workflow holding --key, starting it first (with
    /// --input) if none does, in one atomic step.
    SignalWithStart(SignalWithStartArgs),
    /// Cancel an execution that has not ended; a running node is stopped.
    Cancel(CancelArgs),
    /// Run a failed, timed-out or cancelled execution again from where it stopped: the nodes
    /// that completed keep their results, the others run again from attempt 1.
    Retry(RetryArgs),
    /// Pause an execution: no worker runs it until it is resumed. A running one finishes the
    /// nodes it is running and starts no new one.
    Pause(PauseArgs),
    /// Resume a paused execution where it stopped (one a failure paused runs its failed node
    /// again from attempt 1).
    Resume(ResumeArgs),
    /// Inspect executions.
    #[command(subcommand)]
    Executions(ExecutionsCommand),
    /// Manage cron schedules that start workflows.
    #[command(subcommand)]
    Schedule(ScheduleCommand),
    /// Serve the web UI (the Executions view and the repair actions) and the HTTP API (/api/v1,
    /// its OpenAPI document at /api/openapi.json) without running a worker.
    Ui(UiCommandArgs),
    /// Delete executions that ended (completed, failed, cancelled, timed out) longer ago than
    /// --older-than, with their node runs and signals, in batches. Running, waiting and
    /// pending executions are never touched.
    Prune(PruneArgs),
}

/// `workflow-worker start`.
#[derive(Debug, Args)]
pub(crate) struct StartArgs {
    /// Workflow name or id.
    pub(crate) workflow: String,
    /// Execution input as JSON.
    #[arg(long, default_value = "{}", value_parser = parse_json)]
    pub(crate) input: serde_json::Value,
    /// Seconds the execution may take before it ends timed_out (default: the workflow's
    /// timeout, if any).
    #[arg(long, value_parser = parse_duration)]
    pub(crate) timeout: Option<Duration>,
    /// Higher runs first among runnable executions (default: the workflow's priority, else
    /// 0).
    #[arg(long, allow_negative_numbers = true)]
    pub(crate) priority: Option<i32>,
    /// A business key (an order number, a request id): while an execution of the workflow
    /// with this key has not ended, the start prints its id instead of starting another.
    #[arg(long)]
    pub(crate) key: Option<String>,
    /// With --key, once the key's execution ended: never (print it) or after_end (start a
    /// new one).
    #[arg(long, default_value = "never", value_parser = parse_key_reuse, requires = "key")]
    pub(crate) key_reuse: KeyReuse,
    /// The execution's concurrency key, for a workflow whose concurrency limits running
    /// executions per key (default: the value at the workflow's key path in --input).
    #[arg(long)]
    pub(crate) concurrency_key: Option<String>,
}

impl StartArgs {
    /// The start the flags ask for.
    pub(crate) fn params(self) -> StartExecutionParams {
        let mut params = StartExecutionParams::new(self.workflow.as_str(), self.input);
        params.timeout = self.timeout;
        params.priority = self.priority;
        params.key = self.key;
        params.key_reuse = self.key_reuse;
        params.concurrency_key = self.concurrency_key;
        params
    }
}

/// `workflow-worker signal-with-start`.
#[derive(Debug, Args)]
pub(crate) struct SignalWithStartArgs {
    /// The execution to start if no execution of the workflow holds --key (required).
    #[command(flatten)]
    pub(crate) start: StartArgs,
    /// Signal name, e.g. approval.
    #[arg(long)]
    pub(crate) signal: String,
    /// Payload as JSON, e.g. '{"approved": true}'.
    #[arg(long, default_value = "null", value_parser = parse_json)]
    pub(crate) payload: serde_json::Value,
    /// Sending again with the same key stores the signal once.
    #[arg(long)]
    pub(crate) idempotency_key: Option<String>,
}

/// `workflow-worker signal`.
#[derive(Debug, Args)]
pub(crate) struct SignalArgs {
    /// Execution id.
    pub(crate) id: String,
    /// Signal name, e.g. approval.
    pub(crate) name: String,
    /// Payload as JSON, e.g. '{"approved": true}'.
    #[arg(long, default_value = "null", value_parser = parse_json)]
    pub(crate) payload: serde_json::Value,
    /// Sending again with the same key stores the signal once.
    #[arg(long)]
    pub(crate) idempotency_key: Option<String>,
}

/// `workflow-worker cancel`.
#[derive(Debug, Args)]
pub(crate) struct CancelArgs {
    /// Execution id.
    pub(crate) id: String,
    /// Recorded as the execution's error.
    #[arg(long, default_value = "cancelled by request")]
    pub(crate) reason: String,
}

/// `workflow-worker pause` and `executions pause`.
#[derive(Debug, Args)]
pub(crate) struct PauseArgs {
    /// Execution id.
    pub(crate) id: String,
}

/// `workflow-worker resume` and `executions resume`.
#[derive(Debug, Args)]
pub(crate) struct ResumeArgs {
    /// Execution id.
    pub(crate) id: String,
    /// Who asks, recorded with the retry when a failure had paused it.
    #[arg(long, default_value = "cli")]
    pub(crate) by: String,
}

/// `workflow-worker retry`.
#[derive(Debug, Args)]
pub(crate) struct RetryArgs {
    /// Execution id.
    pub(crate) id: String,
    #[command(flatten)]
    pub(crate) how: RetryOptions,
}

/// How a retry runs, for one execution or many.
#[derive(Debug, Args)]
pub(crate) struct RetryOptions {
    /// Run every node again.
    #[arg(long, conflicts_with = "from")]
    pub(crate) from_start: bool,
    /// Run this node and everything downstream of it again (and any node that did not
    /// complete).
    #[arg(long, value_name = "NODE")]
    pub(crate) from: Option<String>,
    /// Run the workflow's latest version instead of the one the execution was pinned to.
    #[arg(long)]
    pub(crate) latest: bool,
    /// Who asks, recorded with the retry.
    #[arg(long, default_value = "cli")]
    pub(crate) by: String,
}

/// `workflow-worker ui`.
#[derive(Debug, Args)]
pub(crate) struct UiCommandArgs {
    /// Where to listen, e.g. 127.0.0.1:8080. An address other than loopback needs
    /// WORKFLOW_UI_TOKEN.
    #[arg(long, env = "WORKFLOW_UI_ADDR", default_value = "127.0.0.1:8080")]
    pub(crate) addr: std::net::SocketAddr,
    /// Serve reads only: every action answers 403.
    #[arg(long, env = "WORKFLOW_UI_READ_ONLY")]
    pub(crate) read_only: bool,
}

/// `workflow-worker prune`.
#[derive(Debug, Args)]
pub(crate) struct PruneArgs {
    /// Age of the executions to delete, e.g. 30d, 12h, 90m.
    #[arg(long, value_parser = parse_duration)]
    pub(crate) older_than: Duration,
    /// Executions deleted per statement (one short transaction each).
    #[arg(long, default_value_t = workflow_worker_core::worker::PRUNE_BATCH)]
    pub(crate) batch_size: u32,
    /// Share of the time spent deleting, in percent: after each batch it rests for the rest,
    /// leaving the database to live work. 100 deletes batch after batch.
    #[arg(long, default_value_t = workflow_worker_core::worker::PRUNE_BUSY_PERCENT,
          value_parser = clap::value_parser!(u8).range(1..=100))]
    pub(crate) busy_percent: u8,
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
    /// Start an execution from a schedule now, paused or not, and print its id; the
    /// schedule's ticks do not move.
    Trigger {
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
    /// List the saved workflows: name, latest version, id, when each was first and last saved.
    List,
    /// Show a workflow's definition (its latest version unless --version).
    Show {
        /// Workflow name or id.
        workflow: String,
        /// Which version (default: the latest).
        #[arg(long)]
        version: Option<i32>,
    },
    /// Print the JSON Schema of workflow definitions (no database needed).
    Schema,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ExecutionsCommand {
    /// List executions, newest first.
    List(ListArgs),
    /// Cancel one execution by id, or every execution the filter matches that has not ended.
    Cancel {
        /// Execution id (instead of a filter).
        #[arg(conflicts_with_all = FILTER_ARGS)]
        id: Option<String>,
        #[command(flatten)]
        filter: FilterArgs,
        /// Recorded as each execution's error.
        #[arg(long, default_value = "cancelled by request")]
        reason: String,
    },
    /// Retry one execution by id, or every failed, timed-out or cancelled execution the filter
    /// matches.
    Retry {
        /// Execution id (instead of a filter).
        #[arg(conflicts_with_all = FILTER_ARGS)]
        id: Option<String>,
        #[command(flatten)]
        filter: FilterArgs,
        #[command(flatten)]
        how: RetryOptions,
    },
    /// Pause an execution: no worker runs it until it is resumed. A running one finishes the
    /// nodes it is running and starts no new one.
    Pause(PauseArgs),
    /// Resume a paused execution where it stopped.
    Resume(ResumeArgs),
    /// Delete every execution the filter matches that has ended, with its history.
    Delete {
        #[command(flatten)]
        filter: FilterArgs,
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

/// The options of [`FilterArgs`], which an execution id excludes.
const FILTER_ARGS: [&str; 7] = [
    "status", "workflow", "before", "after", "error", "all", "dry_run",
];

/// Which executions a bulk action touches: every option given must hold.
#[derive(Debug, Args)]
pub(crate) struct FilterArgs {
    /// In this status (repeat for several).
    #[arg(long, value_parser = parse_status)]
    pub(crate) status: Vec<ExecutionStatus>,
    /// Of this workflow (name or id).
    #[arg(long)]
    pub(crate) workflow: Option<String>,
    /// Created before this time (RFC 3339, e.g. 2026-12-01T09:00:00Z).
    #[arg(long, value_parser = parse_time)]
    pub(crate) before: Option<DateTime<Utc>>,
    /// Created at or after this time (RFC 3339).
    #[arg(long, value_parser = parse_time)]
    pub(crate) after: Option<DateTime<Utc>>,
    /// Whose error contains this text, ignoring case.
    #[arg(long, value_name = "TEXT")]
    pub(crate) error: Option<String>,
    /// Match every execution (required when no other filter is given).
    #[arg(long)]
    pub(crate) all: bool,
    /// Only count the executions that match; change nothing.
    #[arg(long)]
    pub(crate) dry_run: bool,
}

/// `workflow-worker executions list`.
#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// Only executions in this status.
    #[arg(long, value_parser = parse_status)]
    pub(crate) status: Option<ExecutionStatus>,
    /// Only executions of this workflow (name or id).
    #[arg(long)]
    pub(crate) workflow: Option<String>,
    /// At most this many.
    #[arg(long, default_value_t = 50)]
    pub(crate) limit: u32,
    /// Print JSON lines instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
}

/// Parses the command line. The worker's options are accepted before or after `run` (they
/// are global flags), and refused on any other command rather than silently ignored.
pub(crate) fn parse() -> Result<Cli, clap::Error> {
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
pub(crate) fn usage_error(err: &clap::Error) -> String {
    let rendered = err.render().to_string();
    let message: Vec<&str> = rendered
        .lines()
        .take_while(|line| !line.is_empty() && !line.starts_with("Usage:"))
        .map(str::trim)
        .collect();
    message.join(" ").trim_start_matches("error: ").to_owned()
}

/// Options of the worker itself.
#[derive(Debug, Clone, Args)]
pub(crate) struct RunArgs {
    /// Executions run at once.
    #[arg(long, global = true, env = "WORKFLOW_WORKER_CONCURRENCY", default_value_t = workflow_worker_core::worker::DEFAULT_CONCURRENCY)]
    pub(crate) concurrency: usize,

    /// The most executions claimed ahead of free slots (leased, started as slots free): as
    /// many as the slots get through in two claims' time, none for nodes slower than a
    /// claim; 0 claims only into free slots.
    #[arg(long, global = true, env = "WORKFLOW_CLAIM_AHEAD", default_value_t = workflow_worker_core::worker::DEFAULT_CLAIM_AHEAD)]
    pub(crate) claim_ahead: usize,

    /// Time between polls when idle (1, 0.5, 2s).
    #[arg(long, global = true, env = "WORKFLOW_POLL_INTERVAL", default_value = "1.0", value_parser = parse_duration)]
    pub(crate) poll_interval: Duration,

    /// Lease owner id recorded on claimed executions. Defaults to hostname-pid-random.
    #[arg(long, global = true, env = "WORKFLOW_WORKER_ID")]
    pub(crate) worker_id: Option<String>,

    /// How long a claim holds an execution without a heartbeat; a dead worker's executions are
    /// rescued after this.
    #[arg(long, global = true, env = "WORKFLOW_LEASE_DURATION", default_value = "30", value_parser = parse_duration)]
    pub(crate) lease_duration: Duration,

    /// Time between lease renewals; must be shorter than the lease.
    #[arg(long, global = true, env = "WORKFLOW_HEARTBEAT_INTERVAL", default_value = "10", value_parser = parse_duration)]
    pub(crate) heartbeat_interval: Duration,

    /// Time running nodes get to finish after SIGINT/SIGTERM before they are interrupted
    /// and their executions released.
    #[arg(long, global = true, env = "WORKFLOW_SHUTDOWN_GRACE", default_value = "30", value_parser = parse_duration)]
    pub(crate) shutdown_grace: Duration,

    /// Listen for wake-up hints (PostgreSQL NOTIFY) to start new and signalled executions at
    /// once; `false` behind a transaction-mode pooler, where LISTEN does not work.
    #[arg(long, global = true, env = "WORKFLOW_WAKEUPS", default_value_t = true, action = clap::ArgAction::Set)]
    pub(crate) wakeups: bool,

    /// Deaths in a row of the worker running a suspect execution alone (after 2 deaths that
    /// made it a suspect) after which the execution is failed as quarantined.
    #[arg(long, global = true, env = "WORKFLOW_MAX_RESCUES", default_value_t = workflow_worker_core::worker::DEFAULT_MAX_RESCUES)]
    pub(crate) max_rescues: u32,

    /// The largest output a node may record, in bytes of JSON (1048576, 512KiB, 1MiB): a node
    /// with a larger output fails for good, naming the limit.
    #[arg(long, global = true, env = "WORKFLOW_NODE_OUTPUT_LIMIT", value_parser = parse_size, default_value = "1MiB")]
    pub(crate) node_output_limit: usize,

    /// Serve Prometheus metrics at http://ADDR/metrics, with /healthz (the process is up) and
    /// /readyz (the database answers), e.g. 127.0.0.1:9464.
    #[arg(long, global = true, env = "WORKFLOW_METRICS_ADDR")]
    pub(crate) metrics_addr: Option<std::net::SocketAddr>,

    /// Delete executions that ended longer ago than this (e.g. 30d), once a minute in batches.
    /// Off by default: history is kept until pruned.
    #[arg(long, global = true, env = "WORKFLOW_PRUNE_AFTER", value_parser = parse_duration)]
    pub(crate) prune_after: Option<Duration>,

    /// Priority ageing: raise an execution runnable for longer than this (e.g. 5m) to the
    /// highest priority waiting, so none waits forever behind newer, higher work; 0 keeps
    /// priorities strict.
    #[arg(long, global = true, env = "WORKFLOW_PRIORITY_AGEING", default_value = "5m", value_parser = parse_duration)]
    pub(crate) priority_ageing: Duration,

    /// Serve the web UI and the HTTP API beside the worker, e.g. 127.0.0.1:8080 (see `ui`).
    #[arg(long, global = true, env = "WORKFLOW_UI_ADDR")]
    pub(crate) ui_addr: Option<std::net::SocketAddr>,

    /// With --ui-addr: serve reads only, every action answering 403.
    #[arg(long, global = true, env = "WORKFLOW_UI_READ_ONLY")]
    pub(crate) ui_read_only: bool,
}

impl RunArgs {
    /// The long names of the options, to refuse them on commands other than `run`.
    pub(crate) const NAMES: &[&str] = &[
        "concurrency",
        "claim_ahead",
        "poll_interval",
        "worker_id",
        "lease_duration",
        "heartbeat_interval",
        "shutdown_grace",
        "wakeups",
        "max_rescues",
        "node_output_limit",
        "metrics_addr",
        "prune_after",
        "priority_ageing",
        "ui_addr",
        "ui_read_only",
    ];
}

/// The one duration syntax of every flag and environment variable: a number of seconds
/// (`30`, `0.5`) or a number with a unit (`30s`, `5m`, `2h`, `30d`, `1h 30m`).
pub(crate) fn parse_duration(value: &str) -> Result<Duration, String> {
    let value = value.trim();
    let invalid = || {
        format!("\"{value}\" is not a duration: use seconds (30, 0.5) or a unit (30s, 5m, 2h, 30d)")
    };
    if let Ok(secs) = value.parse::<f64>() {
        return Duration::try_from_secs_f64(secs).map_err(|_| invalid());
    }
    humantime::parse_duration(value).map_err(|_| invalid())
}

/// A size in bytes: a number, optionally with a unit (`KiB`, `MiB`, `GiB`; `KB`, `MB`, `GB`
/// in powers of ten).
pub(crate) fn parse_size(value: &str) -> Result<usize, String> {
    let value = value.trim();
    let invalid =
        || format!("\"{value}\" is not a size: use bytes (1048576) or a unit (512KiB, 1MiB)");
    let split = value
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(value.len());
    let (number, unit) = value.split_at(split);
    let number: usize = number.parse().map_err(|_| invalid())?;
    let unit = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => return Err(invalid()),
    };
    number.checked_mul(unit).ok_or_else(invalid)
}

fn parse_key_reuse(value: &str) -> Result<KeyReuse, String> {
    value.parse()
}

fn parse_json(value: &str) -> Result<serde_json::Value, String> {
    serde_json::from_str(value).map_err(|err| format!("invalid JSON: {err}"))
}

fn parse_time(value: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(value)
        .map(|at| at.with_timezone(&Utc))
        .map_err(|err| format!("\"{value}\" is not an RFC 3339 time (2026-12-01T09:00:00Z): {err}"))
}

fn parse_status(value: &str) -> Result<ExecutionStatus, String> {
    value
        .parse()
        .map_err(|err: workflow_worker_core::state::UnknownStatus| err.to_string())
}

#[cfg(test)]
mod tests {
    use super::{parse_duration, parse_size};
    use std::time::Duration;

    #[test]
    fn sizes_are_bytes_or_numbers_with_a_unit() {
        for (text, expected) in [
            ("1048576", 1 << 20),
            ("512KiB", 512 << 10),
            ("1MiB", 1 << 20),
            ("2 GiB", 2 << 30),
            ("3MB", 3_000_000),
            ("7B", 7),
        ] {
            assert_eq!(parse_size(text), Ok(expected), "{text}");
        }
        for text in ["big", "-1", "1.5MiB", "1 parsec", ""] {
            let err = parse_size(text).unwrap_err();
            assert!(err.contains("is not a size"), "{text}: {err}");
        }
    }

    #[test]
    fn durations_are_seconds_or_numbers_with_a_unit() {
        for (text, expected) in [
            ("30", Duration::from_secs(30)),
            ("0.5", Duration::from_millis(500)),
            ("30s", Duration::from_secs(30)),
            ("5m", Duration::from_secs(300)),
            ("2h", Duration::from_secs(7200)),
            ("30d", Duration::from_secs(30 * 86_400)),
            ("1h 30m", Duration::from_secs(5400)),
            ("250ms", Duration::from_millis(250)),
            ("0", Duration::ZERO),
        ] {
            assert_eq!(parse_duration(text), Ok(expected), "{text}");
        }
        for text in ["soon", "-1", "5 parsecs", ""] {
            let err = parse_duration(text).unwrap_err();
            assert!(err.contains("is not a duration"), "{text}: {err}");
        }
    }
}
