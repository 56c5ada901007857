//! `run`: the worker, with its metrics and health endpoint.

use workflow_worker_core::{Client, NodeRegistry, WorkerConfig, WorkflowWorker};

use super::signals::shutdown_on_signal;
use super::{Access, Database};
use crate::cli::RunArgs;
use crate::http;
use crate::ui::UiServer;

/// Checks the settings, serves the health endpoint at once (it answers while the database
/// does not), connects and migrates, then runs the worker until SIGINT or SIGTERM.
pub(super) async fn run(db: &Database, args: RunArgs) -> anyhow::Result<()> {
    // Check the worker's settings before touching the database.
    let config = config(&args)?;
    let shutdown = shutdown_on_signal("finishing executions in flight")?;
    let stop_metrics = tokio_util::sync::CancellationToken::new();
    let (endpoint, served) = match args.metrics_addr {
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
    let ui = match args.ui_addr {
        Some(addr) => Some(UiServer::bind(addr, "--ui-addr", args.ui_read_only).await?),
        None => None,
    };
    let shown = db.shown();
    if db.embedded_default {
        tracing::info!(
            database = %shown,
            "no DATABASE_URL set: using the embedded SQLite store in the working directory"
        );
    }
    let options = db.options(config.worker_id.clone(), Access::Migrate);
    tracing::info!(database = %shown, timeout = ?options.postgres.get_connect_timeout(), "connecting to the database and applying migrations");
    let opened = tokio::select! {
        opened = workflow_worker_store::open_store_with(&db.url, &options) => opened,
        () = shutdown.cancelled() => {
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
            let stop_ui = tokio_util::sync::CancellationToken::new();
            let ui = ui.map(|server| {
                let client = Client::from_shared(store.clone(), NodeRegistry::builtin());
                tokio::spawn(server.serve(client, stop_ui.clone()))
            });
            let ran = WorkflowWorker::new(store)
                .config(config)
                .run_until(shutdown.cancelled_owned())
                .await
                .map_err(anyhow::Error::from);
            stop_ui.cancel();
            if let Some(ui) = ui {
                ui.await??;
            }
            ran
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

/// The worker's settings from the command line and environment, checked.
fn config(args: &RunArgs) -> anyhow::Result<WorkerConfig> {
    let mut config = WorkerConfig::default();
    config.concurrency = args.concurrency;
    config.claim_ahead = args.claim_ahead;
    config.poll_interval = args.poll_interval;
    config.lease_duration = args.lease_duration;
    config.heartbeat_interval = args.heartbeat_interval;
    config.shutdown_grace = args.shutdown_grace;
    config.max_rescues = args.max_rescues;
    config.wakeups = args.wakeups;
    config.prune_after = args.prune_after;
    config.priority_ageing = Some(args.priority_ageing).filter(|period| !period.is_zero());
    config.node_output_limit = args.node_output_limit;
    if let Some(id) = &args.worker_id {
        config.worker_id = id.clone();
    }
    config.validate()?;
    Ok(config)
}
