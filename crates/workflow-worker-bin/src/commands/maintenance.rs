//! `migrate` and `prune`.

use workflow_worker_core::Client;

use super::{Access, Database};
use crate::cli::PruneArgs;

/// Applies pending migrations.
pub(super) async fn migrate(db: &Database) -> anyhow::Result<()> {
    db.open("migrate", Access::Migrate).await?;
    println!("migrations applied to {}", db.shown());
    Ok(())
}

/// Deletes executions that ended long enough ago, in batches.
pub(super) async fn prune(client: &Client, args: PruneArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.batch_size > 0, "--batch-size must be at least 1");
    let pruned = client
        .prune(args.older_than, args.batch_size, args.busy_percent)
        .await?;
    println!(
        "pruned {pruned} executions that ended more than {} ago",
        humantime::format_duration(args.older_than)
    );
    Ok(())
}
