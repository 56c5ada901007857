//! Pausing and resuming: a paused execution is never claimed until resumed; a running one is
//! asked to pause, and its holder hears at its next step.

use std::time::Duration;

use serde_json::json;

use crate::store::Advance;
use crate::testing::TestStore;
use crate::testing::conformance::{
    LEASE, RecordOne, WORKER, claim_one, claim_params, completed_run, keep_running, record, start,
};
use crate::testing::fixture;
use crate::testing::nodes;
use crate::{ExecutionId, ExecutionStatus, SendSignalParams, Store, StoreError};

/// Pending, retrying and waiting executions pause at once and no claim takes them, even
/// when signalled; a second pause changes nothing; resuming makes each pending and
/// claimable again. A paused execution can be cancelled. Ended and unknown executions are
/// refused with errors that say so.
pub async fn a_paused_execution_is_never_claimed_until_resumed(store: impl Store) {
    fixture::hello().save(&store, &nodes::registry()).await;
    let retrying = start(&store, "hello", json!({})).await;
    let claimed = claim_one(&store, WORKER, LEASE).await;
    assert_eq!(claimed.execution.id, retrying);
    store
        .record_step(record(
            &claimed,
            vec![],
            Advance::Retry {
                delay: Duration::from_secs(3600),
            },
        ))
        .await
        .unwrap();
    let waiting = start(&store, "hello", json!({})).await;
    let claimed = claim_one(&store, WORKER, LEASE).await;
    store
        .record_step(record(
            &claimed,
            vec![],
            Advance::Wait {
                delay: None,
                signals: vec!["go".into()],
            },
        ))
        .await
        .unwrap();
    let pending = start(&store, "hello", json!({})).await;

    for id in [retrying, waiting, pending] {
        let paused = store.pause_execution(id).await.expect("pause");
        assert_eq!(paused.status, ExecutionStatus::Paused, "{id}");
        assert_eq!(
            (paused.run_at, paused.lease_owner, paused.pause_requested_at),
            (None, None, None)
        );
        let again = store.pause_execution(id).await.expect("pause again");
        assert_eq!(again.status, ExecutionStatus::Paused);
        assert_eq!(again.error, None);
    }
    // A signal is kept in the inbox, and wakes nothing while it is paused.
    store
        .send_signal(SendSignalParams {
            execution_id: waiting,
            name: "go".into(),
            payload: json!({}),
            idempotency_key: None,
        })
        .await
        .expect("a paused execution receives signals");
    let claimed = store
        .claim_executions(claim_params(WORKER, 10, LEASE))
        .await
        .unwrap();
    assert!(claimed.is_empty(), "claimed paused executions: {claimed:?}");

    for id in [retrying, waiting] {
        let resumed = store.resume_execution(id).await.expect("resume");
        assert_eq!(resumed.status, ExecutionStatus::Pending);
        assert!(resumed.run_at.is_some());
        // Resuming what is not paused changes nothing.
        let again = store.resume_execution(id).await.expect("resume again");
        assert_eq!(again.status, ExecutionStatus::Pending);
    }
    let mut claimed: Vec<ExecutionId> = store
        .claim_executions(claim_params(WORKER, 10, LEASE))
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.execution.id)
        .collect();
    claimed.sort();
    let mut expected = vec![retrying, waiting];
    expected.sort();
    assert_eq!(claimed, expected);
    assert_eq!(
        store.get_execution(waiting).await.unwrap().signals.len(),
        1,
        "the signal sent while paused is still in the inbox"
    );

    let cancelled = store
        .cancel_execution(pending, "not needed")
        .await
        .expect("a paused execution can be cancelled");
    assert_eq!(cancelled.status, ExecutionStatus::Cancelled);
    for err in [
        store.pause_execution(pending).await.unwrap_err(),
        store.resume_execution(pending).await.unwrap_err(),
    ] {
        assert!(
            matches!(
                err,
                StoreError::AlreadyEnded {
                    status: ExecutionStatus::Cancelled,
                    ..
                }
            ),
            "{err:?}"
        );
    }
    let unknown = ExecutionId::new();
    for err in [
        store.pause_execution(unknown).await.unwrap_err(),
        store.resume_execution(unknown).await.unwrap_err(),
    ] {
        assert_eq!(err.to_string(), format!("execution {unknown} not found"));
    }
}

/// Pausing a running execution only asks: it stays running and leased, and each step that
/// keeps it running tells its holder so, until a step that releases it (a retry, here)
/// pauses it. A resume before then withdraws the request, and the holder's pause (which
/// carries no error) then releases it for any worker instead. A pause with an error (a node
/// that failed for good) pauses it whatever was asked.
pub async fn a_pause_asked_of_a_running_execution_is_told_to_its_holder_at_each_step(
    store: impl TestStore,
) {
    fixture::hello().save(&store, &nodes::registry()).await;
    let id = start(&store, "hello", json!({})).await;
    let claimed = claim_one(&store, WORKER, LEASE).await;
    let recorded = store
        .record_step(record(&claimed, vec![], keep_running()))
        .await
        .unwrap();
    assert!(!recorded.pause_requested, "no pause was asked yet");

    let asked = store.pause_execution(id).await.expect("pause");
    assert_eq!(asked.status, ExecutionStatus::Running);
    assert!(asked.pause_requested_at.is_some());
    assert_eq!(asked.lease_owner.as_deref(), Some(WORKER));
    let recorded = store
        .record_step(record(
            &claimed,
            vec![completed_run("start", 1)],
            keep_running(),
        ))
        .await
        .unwrap();
    assert!(recorded.pause_requested, "the step tells the holder");
    let recorded = store
        .record_step(record(
            &claimed,
            vec![],
            Advance::Retry {
                delay: Duration::ZERO,
            },
        ))
        .await
        .unwrap();
    assert!(!recorded.pause_requested);
    let paused = store.get_execution(id).await.unwrap().execution;
    assert_eq!(paused.status, ExecutionStatus::Paused);
    assert_eq!(
        (paused.run_at, paused.lease_owner, paused.pause_requested_at),
        (None, None, None)
    );

    // Withdrawn: the holder's pause releases it.
    store.resume_execution(id).await.unwrap();
    let claimed = claim_one(&store, WORKER, LEASE).await;
    store.pause_execution(id).await.unwrap();
    let withdrawn = store.resume_execution(id).await.expect("withdraw");
    assert_eq!(withdrawn.status, ExecutionStatus::Running);
    assert_eq!(withdrawn.pause_requested_at, None);
    store
        .record_step(record(&claimed, vec![], Advance::Pause { error: None }))
        .await
        .unwrap();
    let released = store.get_execution(id).await.unwrap().execution;
    assert_eq!(released.status, ExecutionStatus::Running);
    assert_eq!(released.lease_owner, None);
    let claimed = claim_one(&store, "worker-b", LEASE).await;
    assert_eq!(claimed.execution.id, id, "released for any worker");

    store
        .record_step(record(
            &claimed,
            vec![],
            Advance::Pause {
                error: Some("node \"a\" failed: broken".into()),
            },
        ))
        .await
        .unwrap();
    let paused = store.get_execution(id).await.unwrap().execution;
    assert_eq!(paused.status, ExecutionStatus::Paused);
    assert_eq!(paused.error.as_deref(), Some("node \"a\" failed: broken"));
    assert_eq!(paused.lease_owner, None);

    // A running execution whose worker died is asked the same way; the next claim sees it.
    store.resume_execution(id).await.unwrap();
    let claimed = claim_one(&store, WORKER, LEASE).await;
    store.pause_execution(id).await.unwrap();
    store.expire_lease(id).await;
    let rescued = claim_one(&store, "worker-b", LEASE).await;
    assert_eq!(rescued.execution.id, claimed.execution.id);
    assert!(rescued.execution.pause_requested_at.is_some());
}
