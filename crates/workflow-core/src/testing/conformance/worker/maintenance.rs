//! Maintenance services of the worker: pruning old history.

use std::time::Duration;

use serde_json::json;

use crate::testing::TestStore;
use crate::testing::conformance::{WAIT, start, worker};
use crate::testing::fixture;
use crate::testing::nodes;
use crate::{ExecutionStatus, StoreError};

/// `prune_after` makes a worker prune history as it starts (and then once a minute): old
/// ended executions go, and what it runs stays.
pub async fn a_worker_with_prune_after_prunes_old_history(store: impl TestStore) {
    fixture::hello().save(&store, &nodes::registry()).await;
    let old = start(&store, "hello", json!({})).await;
    store.cancel_execution(old, "test").await.unwrap();
    store
        .backdate_finished_at(old, Duration::from_millis(600))
        .await;
    let fresh = start(&store, "hello", json!({})).await;

    let worker = worker(store.clone())
        .poll_interval(Duration::from_millis(100))
        .prune_after(Some(Duration::from_millis(400)));
    let pruned_and_done = async {
        let started = tokio::time::Instant::now();
        loop {
            let pruned = matches!(
                store.get_execution(old).await,
                Err(StoreError::NotFound { .. })
            );
            let done = store
                .get_execution(fresh)
                .await
                .is_ok_and(|d| d.execution.status.is_terminal());
            if pruned && done {
                return;
            }
            assert!(
                started.elapsed() < WAIT,
                "pruned: {pruned}, fresh execution done: {done}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    worker.run_until(pruned_and_done).await.unwrap();
    let fresh = store
        .get_execution(fresh)
        .await
        .expect("the fresh one stays");
    assert_eq!(fresh.execution.status, ExecutionStatus::Completed);
}
