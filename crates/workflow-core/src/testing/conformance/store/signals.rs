//! Signals: storing, idempotency keys, and refusal once an execution ended.

use serde_json::json;

use crate::testing::conformance::{approval_workflow, send, start};
use crate::testing::nodes;
use crate::{ExecutionId, ExecutionStatus, Store, StoreError};

/// A retried send with the same idempotency key stores one signal; unknown and ended
/// executions refuse signals with a clear error and nothing stored.
pub async fn signals_are_stored_once_per_key_and_refused_for_ended_executions(
    store: impl Store + Clone,
) {
    approval_workflow().save(&store, &nodes::registry()).await;
    let id = start(&store, "approval", json!({})).await;
    let keyed = || crate::SendSignalParams {
        execution_id: id,
        name: "approval".into(),
        payload: json!({"approved": true}),
        idempotency_key: Some("click-42".into()),
    };
    let first = store.send_signal(keyed()).await.unwrap();
    let again = store.send_signal(keyed()).await.unwrap();
    assert_eq!(first.id, again.id, "a retried send stored a second signal");
    send(&store, id, "other", json!(1)).await;
    assert_eq!(store.get_execution(id).await.unwrap().signals.len(), 2);

    let unknown = ExecutionId::new();
    let err = store
        .send_signal(crate::SendSignalParams {
            execution_id: unknown,
            ..keyed()
        })
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), format!("execution {unknown} not found"));

    store.cancel_execution(id, "done").await.unwrap();
    let err = store.send_signal(keyed()).await.unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::AlreadyEnded { execution_id, status: ExecutionStatus::Cancelled }
                if execution_id == id
        ),
        "{err:?}"
    );
    assert_eq!(store.get_execution(id).await.unwrap().signals.len(), 2);
}
