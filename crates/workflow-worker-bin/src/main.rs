//! The `workflow-worker` binary: parses the command line, sets up logging, and runs the
//! command (see `commands`).

use std::io::IsTerminal;
use std::process::ExitCode;

mod cli;
mod commands;
mod http;
mod render;
mod ui;

use cli::LogFormat;

/// Log filter when `RUST_LOG` is not set: our events, and only warnings from sqlx (its
/// notices about already-applied migrations are noise).
const DEFAULT_LOG_FILTER: &str = "info,sqlx=warn";

fn main() -> ExitCode {
    let cli = match cli::parse() {
        Ok(cli) => cli,
        // Usage mistakes get one line naming the problem; --help and --version print as usual.
        Err(err) if err.use_stderr() => {
            eprintln!(
                "workflow-worker: error: {} (see --help)",
                cli::usage_error(&err)
            );
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
    match runtime.block_on(commands::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("workflow-worker: error: {}", one_line(&err));
            ExitCode::FAILURE
        }
    }
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
