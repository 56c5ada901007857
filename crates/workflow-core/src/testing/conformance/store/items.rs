//! Map item runs: fenced by the lease, one completed run per item and one run per attempt,
//! read back by node, and superseded by a retry of their map.

use std::time::Duration;

use serde_json::json;

use crate::store::{Advance, NewItemRun};
use crate::testing::conformance::{
    LEASE, RecordOne, WORKER, claim_one, quick_workflow, record, start,
};
use crate::testing::nodes;
use crate::{
    Client, ExecutionStatus, LeaseToken, NodeRunStatus, RetryFrom, RetryRequest, Store, StoreError,
};

fn item(item: u32, attempt: u32, status: NodeRunStatus) -> NewItemRun {
    NewItemRun {
        node_id: "work".into(),
        item,
        node_type: "echo".into(),
        attempt,
        status,
        input: Some(json!({"item": item})),
        output: (status == NodeRunStatus::Completed).then(|| json!({"done": item})),
        error: (status != NodeRunStatus::Completed).then(|| "boom".to_owned()),
        fatal: false,
        duration: Duration::from_millis(20),
        ended_ago: Duration::from_millis(5),
        consumed_signal: None,
    }
}

/// Item runs are written only under the execution's live lease, read back by node in item and
/// attempt order, never twice for an attempt or a completed item (nothing of such a batch is
/// written), and a retry of their map node supersedes them.
pub async fn item_runs_are_fenced_recorded_once_and_superseded_by_a_retry(
    store: impl Store + Clone,
) {
    quick_workflow(&store).await;
    let id = start(&store, "tick", json!({})).await;
    let claimed = claim_one(&store, WORKER, LEASE).await;
    let token = claimed.execution.lease_token;
    let recorded = store
        .record_item_runs(
            id,
            token,
            WORKER,
            &[
                item(1, 1, NodeRunStatus::Failed),
                item(0, 1, NodeRunStatus::Completed),
            ],
        )
        .await
        .unwrap();
    assert!(!recorded.pause_requested);
    let runs = store.item_runs(id, "work").await.unwrap();
    let seen: Vec<(u32, u32, NodeRunStatus)> =
        runs.iter().map(|r| (r.item, r.attempt, r.status)).collect();
    assert_eq!(
        seen,
        vec![
            (0, 1, NodeRunStatus::Completed),
            (1, 1, NodeRunStatus::Failed)
        ]
    );
    assert_eq!(runs[0].output, Some(json!({"done": 0})));
    assert_eq!(runs[0].worker_id.as_deref(), Some(WORKER));
    assert!(runs[0].started_at < runs[0].finished_at);
    assert!(store.item_runs(id, "other").await.unwrap().is_empty());

    // A completed item does not complete again, and an attempt is recorded once.
    for repeat in [
        item(0, 2, NodeRunStatus::Completed),
        item(1, 1, NodeRunStatus::Completed),
    ] {
        let err = store
            .record_item_runs(
                id,
                token,
                WORKER,
                &[item(2, 1, NodeRunStatus::Completed), repeat],
            )
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::AlreadyRecorded { .. }), "{err}");
    }
    assert_eq!(
        store.item_runs(id, "work").await.unwrap().len(),
        2,
        "nothing written"
    );

    // A stale token writes nothing.
    let err = store
        .record_item_runs(
            id,
            LeaseToken(token.0 - 1),
            WORKER,
            &[item(2, 1, NodeRunStatus::Completed)],
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::LeaseLost { .. }), "{err}");

    // The write says when a pause is asked.
    store.pause_execution(id).await.unwrap();
    let recorded = store
        .record_item_runs(id, token, WORKER, &[item(1, 2, NodeRunStatus::Completed)])
        .await
        .unwrap();
    assert!(recorded.pause_requested);
    assert_eq!(store.get_execution(id).await.unwrap().item_runs.len(), 3);

    // A retry from the map node supersedes its item runs.
    let finish = Advance::Finish {
        status: ExecutionStatus::Failed,
        output: None,
        error: Some("node \"work\" failed".into()),
    };
    store
        .record_step(record(&claimed, Vec::new(), finish))
        .await
        .unwrap();
    let client = Client::with_registry(store.clone(), nodes::registry());
    let mut retry = RetryRequest::new("operator");
    retry.from = RetryFrom::Node("work".into());
    let retried = client.retry(id, retry).await.unwrap();
    let detail = store.get_execution(id).await.unwrap();
    assert!(
        store.item_runs(id, "work").await.unwrap().is_empty(),
        "{retried:?} {:?}",
        detail.retries
    );
    assert!(store.get_execution(id).await.unwrap().item_runs.is_empty());
}
