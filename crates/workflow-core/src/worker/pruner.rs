//! The pruner: deletes executions that ended long enough ago, in small batches, resting
//! between them so that live work keeps most of the database.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use tracing::{info, warn};

use super::ErrorChain;
use crate::store::{Store, StoreError};

/// How often a worker with [`prune_after`](super::WorkflowWorker::prune_after) set prunes.
pub(super) const DEFAULT_PRUNE_INTERVAL: Duration = Duration::from_secs(60);
/// How many executions one prune statement deletes at most.
pub const PRUNE_BATCH: u32 = 1000;
/// The share of its time, in percent, the worker's pruner (and `workflow-worker prune` by
/// default) spends deleting: after each full batch it rests three times as long as the batch
/// took. Measured with the harness's `prune` scenario on two cores: a drain beside the prune
/// of a 1,000,000-execution history slowed by 25-47 % at 100 and by under 20 % at 25.
pub const PRUNE_BUSY_PERCENT: u8 = 25;

/// What the pruner deletes, and how often.
#[derive(Debug, Clone, Copy)]
pub(super) struct PruneConfig {
    /// Executions that ended more than this long ago.
    pub(super) older_than: Duration,
    /// How often it looks.
    pub(super) interval: Duration,
    /// At most this many per statement.
    pub(super) batch: u32,
    /// The share of its time it deletes.
    pub(super) busy_percent: u8,
}

impl PruneConfig {
    /// Prunes what ended more than `older_than` ago, with the default interval and batch.
    pub(super) fn new(older_than: Duration) -> Self {
        Self {
            older_than,
            interval: DEFAULT_PRUNE_INTERVAL,
            batch: PRUNE_BATCH,
            busy_percent: PRUNE_BUSY_PERCENT,
        }
    }
}

/// Deletes every execution that ended more than `older_than` ago, `batch` per statement
/// (one short transaction each) until none is left, and returns how many it deleted.
/// Executions that have not ended are never touched. See [`Store::prune_executions`].
///
/// Between batches it rests, so that deleting takes `busy_percent` of its time (1 to 100;
/// 100 deletes batch after batch): a prune of a large history at full speed takes much of a
/// small database's CPU from the workers beside it. [`PRUNE_BUSY_PERCENT`] is the worker's.
pub async fn prune(
    store: &(impl Store + ?Sized),
    older_than: Duration,
    batch: u32,
    busy_percent: u8,
) -> Result<u64, StoreError> {
    in_batches(batch, busy_percent, |limit| {
        store.prune_executions(older_than, limit)
    })
    .await
}

/// Calls `delete` with `batch` (at least 1) until it deletes fewer, and adds up the counts;
/// after each full batch, rests long enough that deleting takes `busy_percent` (1 to 100)
/// of the time.
async fn in_batches<F, Fut>(batch: u32, busy_percent: u8, mut delete: F) -> Result<u64, StoreError>
where
    F: FnMut(u32) -> Fut,
    Fut: std::future::Future<Output = Result<u64, StoreError>>,
{
    let batch = batch.max(1);
    let busy = u32::from(busy_percent.clamp(1, 100));
    let mut pruned = 0;
    loop {
        let started = Instant::now();
        let count = delete(batch).await?;
        pruned += count;
        if count < u64::from(batch) {
            return Ok(pruned);
        }
        if busy < 100 {
            tokio::time::sleep(started.elapsed() * (100 - busy) / busy).await;
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
        match prune(
            &*store,
            config.older_than,
            config.batch,
            config.busy_percent,
        )
        .await
        {
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
        let pruned = in_batches(batch, 100, |limit| {
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
        let err = in_batches(10, 100, |_| {
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

    /// Prunes `left` executions, each batch taking 100 ms, and returns the time it took.
    async fn paced(left: u64, busy_percent: u8) -> Duration {
        let started = Instant::now();
        let mut left = left;
        let pruned = in_batches(10, busy_percent, |limit| {
            let count = left.min(u64::from(limit));
            left -= count;
            async move {
                tokio::time::sleep(Duration::from_millis(100)).await;
                Ok(count)
            }
        })
        .await
        .unwrap();
        assert_eq!(pruned, 25);
        started.elapsed()
    }

    #[tokio::test(start_paused = true)]
    async fn it_rests_after_each_full_batch_for_its_share_of_the_time() {
        // Three batches (10, 10, 5): rests after the two full ones only.
        assert_eq!(paced(25, 100).await, Duration::from_millis(300));
        assert_eq!(paced(25, 25).await, Duration::from_millis(300 + 2 * 300));
        assert_eq!(paced(25, 50).await, Duration::from_millis(300 + 2 * 100));
        assert_eq!(
            paced(25, 0).await,
            Duration::from_millis(300 + 2 * 9_900),
            "0 % is 1 %"
        );
    }
}
