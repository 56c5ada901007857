//! The pruner: deletes executions that ended long enough ago, in small batches.

use std::sync::Arc;
use std::time::Duration;

use tracing::{info, warn};

use super::ErrorChain;
use crate::store::{Store, StoreError};

/// How often a worker with [`prune_after`](super::WorkflowWorker::prune_after) set prunes.
pub(super) const DEFAULT_PRUNE_INTERVAL: Duration = Duration::from_secs(60);
/// How many executions one prune statement deletes at most.
pub const PRUNE_BATCH: u32 = 1000;

/// What the pruner deletes, and how often.
#[derive(Debug, Clone, Copy)]
pub(super) struct PruneConfig {
    /// Executions that ended more than this long ago.
    pub(super) older_than: Duration,
    /// How often it looks.
    pub(super) interval: Duration,
    /// At most this many per statement.
    pub(super) batch: u32,
}

impl PruneConfig {
    /// Prunes what ended more than `older_than` ago, with the default interval and batch.
    pub(super) fn new(older_than: Duration) -> Self {
        Self {
            older_than,
            interval: DEFAULT_PRUNE_INTERVAL,
            batch: PRUNE_BATCH,
        }
    }
}

/// Deletes every execution that ended more than `older_than` ago, `batch` per statement
/// (one short transaction each) until none is left, and returns how many it deleted.
/// Executions that have not ended are never touched. See [`Store::prune_executions`].
pub async fn prune(
    store: &(impl Store + ?Sized),
    older_than: Duration,
    batch: u32,
) -> Result<u64, StoreError> {
    in_batches(batch, |limit| store.prune_executions(older_than, limit)).await
}

/// Calls `delete` with `batch` (at least 1) until it deletes fewer, and adds up the counts.
async fn in_batches<F, Fut>(batch: u32, mut delete: F) -> Result<u64, StoreError>
where
    F: FnMut(u32) -> Fut,
    Fut: std::future::Future<Output = Result<u64, StoreError>>,
{
    let batch = batch.max(1);
    let mut pruned = 0;
    loop {
        let count = delete(batch).await?;
        pruned += count;
        if count < u64::from(batch) {
            return Ok(pruned);
        }
    }
}

/// Prunes every interval until aborted, logging what it deleted or why it could not.
pub(super) async fn prune_periodically(
    config: PruneConfig,
    store: Arc<dyn Store>,
    worker_id: Arc<str>,
) {
    let mut ticker = tokio::time::interval(config.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        match prune(&*store, config.older_than, config.batch).await {
            Ok(0) => {}
            Ok(pruned) => {
                info!(worker.id = %worker_id, count = pruned, older_than = ?config.older_than, "pruned finished executions");
            }
            Err(err) => {
                warn!(worker.id = %worker_id, error = %ErrorChain(&err), "pruning finished executions failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deletes from `left` executions, up to each limit, and counts the calls.
    async fn prune_from(left: u64, batch: u32) -> (u64, u32) {
        let mut left = left;
        let mut calls = 0;
        let pruned = in_batches(batch, |limit| {
            calls += 1;
            let count = left.min(u64::from(limit));
            left -= count;
            std::future::ready(Ok(count))
        })
        .await
        .unwrap();
        (pruned, calls)
    }

    #[tokio::test]
    async fn batches_go_on_until_one_comes_back_short() {
        assert_eq!(prune_from(2_500, 1_000).await, (2_500, 3));
        assert_eq!(
            prune_from(2_000, 1_000).await,
            (2_000, 3),
            "an empty one ends it"
        );
        assert_eq!(prune_from(0, 1_000).await, (0, 1));
        assert_eq!(
            prune_from(3, 0).await,
            (3, 4),
            "a batch of 0 is a batch of 1"
        );
    }

    #[tokio::test]
    async fn a_failing_batch_stops_pruning_with_its_error() {
        let mut calls = 0;
        let err = in_batches(10, |_| {
            calls += 1;
            std::future::ready(if calls == 1 {
                Ok(10)
            } else {
                Err(StoreError::Unavailable("gone".into()))
            })
        })
        .await
        .unwrap_err();
        assert!(matches!(err, StoreError::Unavailable(_)));
        assert_eq!(calls, 2);
    }
}
