//! `ui`: the HTTP API without a worker, until SIGINT or SIGTERM.

use tokio_util::sync::CancellationToken;

use super::signals::shutdown_on_signal;
use super::{Access, Database};
use crate::cli::UiCommandArgs;
use crate::ui::UiServer;

/// Binds first (a taken port or an exposed address without a token fails before anything
/// else), opens the database, and serves.
pub(super) async fn run(db: &Database, args: UiCommandArgs) -> anyhow::Result<()> {
    let shutdown = shutdown_on_signal("stopping the server")?;
    let server = UiServer::bind(args.addr, "--addr", args.read_only).await?;
    let access = match args.read_only {
        true => Access::Read,
        false => Access::Write,
    };
    // A signal while the database is slow to answer stops the command as it would later.
    let client = tokio::select! {
        client = db.client("ui", access) => client?,
        () = shutdown.cancelled() => return Ok(()),
    };
    let stop = CancellationToken::new();
    let mut serving = tokio::spawn(server.serve(client, stop.clone()));
    tokio::select! {
        () = shutdown.cancelled() => {
            stop.cancel();
            serving.await?
        }
        served = &mut serving => served?,
    }
}
