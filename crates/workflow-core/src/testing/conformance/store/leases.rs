//! Leases: expiry and renewal.

use std::time::Duration;

use serde_json::json;

use crate::LeaseToken;
use crate::testing::TestStore;
use crate::testing::conformance::{
    LEASE, RecordOne, WORKER, claim_one, claim_params, completed_run, keep_running, record, start,
};
use crate::testing::fixture;
use crate::testing::nodes;

/// Once its lease expires, an execution is claimed by another worker under a new token,
/// with the node runs recorded so far.
pub async fn expired_lease_is_reclaimed_with_a_new_token(store: impl TestStore) {
    fixture::hello().save(&store, &nodes::registry()).await;
    start(&store, "hello", json!({})).await;
    let first = claim_one(&store, WORKER, LEASE).await;
    store
        .record_step(record(
            &first,
            vec![completed_run("start", 1)],
            keep_running(),
        ))
        .await
        .unwrap();
    assert!(
        store
            .claim_executions(claim_params("worker-b", 1, LEASE))
            .await
            .unwrap()
            .is_empty(),
        "claimed while the lease held"
    );
    store.expire_lease(first.execution.id).await;

    let second = claim_one(&store, "worker-b", LEASE).await;
    assert_eq!(second.execution.id, first.execution.id);
    assert_eq!(
        second.execution.lease_token,
        LeaseToken(first.execution.lease_token.0 + 1)
    );
    assert_eq!(second.execution.lease_owner.as_deref(), Some("worker-b"));
    assert_eq!(second.node_runs.len(), 1);
    assert_eq!(second.node_runs[0].node_id, "start");
    assert_eq!(second.node_runs[0].worker_id.as_deref(), Some(WORKER));
}

/// Renewal extends leases still held and leaves out the ones another claim took over.
pub async fn renew_leases_reports_lost_leases(store: impl TestStore) {
    fixture::hello().save(&store, &nodes::registry()).await;
    start(&store, "hello", json!({})).await;
    start(&store, "hello", json!({})).await;
    let kept = claim_one(&store, WORKER, LEASE).await;
    let lost = claim_one(&store, WORKER, LEASE).await;
    store.expire_lease(lost.execution.id).await;
    let taken = claim_one(&store, "worker-b", LEASE).await;
    assert_eq!(taken.execution.id, lost.execution.id);

    let renewed = store
        .renew_leases(
            &[
                (kept.execution.id, kept.execution.lease_token),
                (lost.execution.id, lost.execution.lease_token),
            ],
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    assert_eq!(renewed, vec![kept.execution.id]);
    let kept_now = store
        .get_execution(kept.execution.id)
        .await
        .unwrap()
        .execution;
    assert!(kept_now.lease_expires_at > kept.execution.lease_expires_at);
}
