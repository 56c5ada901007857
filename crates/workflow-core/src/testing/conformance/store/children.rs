//! Child executions: one per node attempt, linked both ways.

use serde_json::json;

use crate::node::child_signal;
use crate::store::StartChildParams;
use crate::testing::conformance::{LEASE, WORKER, claim_one, quick_workflow, start};
use crate::{ExecutionParent, ExecutionStatus, LeaseToken, Store, StoreError, WorkflowRef};

fn child_of(
    (parent, lease_token): (crate::ExecutionId, LeaseToken),
    attempt: u32,
    workflow: &str,
) -> StartChildParams {
    StartChildParams {
        parent: ExecutionParent {
            execution_id: parent,
            node_id: "call".into(),
            item: None,
            attempt,
        },
        lease_token,
        workflow: WorkflowRef::from(workflow),
        input: json!({"attempt": attempt}),
        depth: 1,
        priority: 3,
    }
}

/// A node attempt starts one child, only while its parent runs under the lease it asks with:
/// starting it again returns that one; the next attempt starts another; the child records its
/// parent, depth and priority, and the parent lists its children; once it ended, the signal
/// its end stored comes with it; an unknown workflow is not found and writes nothing.
pub async fn a_node_attempt_starts_one_child_and_the_parent_lists_it(store: impl Store) {
    quick_workflow(&store).await;
    let id = start(&store, "tick", json!({})).await;
    let stale = (id, LeaseToken(0));
    let err = store
        .start_child_execution(child_of(stale, 1, "tick"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::LeaseLost { .. }),
        "a pending parent: {err}"
    );
    let claimed = claim_one(&store, WORKER, LEASE).await;
    let parent = (id, claimed.execution.lease_token);

    let first = store
        .start_child_execution(child_of(parent, 1, "tick"))
        .await
        .unwrap();
    assert!(first.created);
    let child = &first.execution;
    assert_eq!(child.status, ExecutionStatus::Pending);
    assert_eq!(child.input, json!({"attempt": 1}));
    assert_eq!((child.depth, child.priority), (1, 3));
    assert_eq!(
        child.parent,
        Some(ExecutionParent {
            execution_id: id,
            node_id: "call".into(),
            item: None,
            attempt: 1
        })
    );
    let again = store
        .start_child_execution(child_of(parent, 1, "tick"))
        .await
        .unwrap();
    assert_eq!((again.created, again.execution.id), (false, child.id));
    assert_eq!(
        again.end_signal, None,
        "a running child has stored no signal"
    );

    // Once the child ended, its signal waits in the parent's inbox, and asking for the child
    // again returns it, consumed or not by the parent's claim.
    store.cancel_execution(child.id, "test").await.unwrap();
    let ended = store
        .start_child_execution(child_of(parent, 1, "tick"))
        .await
        .unwrap();
    assert_eq!(ended.execution.status, ExecutionStatus::Cancelled);
    let inbox = store.get_execution(id).await.unwrap().signals;
    let stored: Vec<_> = inbox
        .iter()
        .filter(|s| s.name == child_signal(child.id))
        .map(|s| s.id)
        .collect();
    assert_eq!(ended.end_signal.map(|s| vec![s]), Some(stored));

    let second = store
        .start_child_execution(child_of(parent, 2, "tick"))
        .await
        .unwrap();
    assert!(second.created);
    assert_ne!(second.execution.id, child.id);

    // A map's items start one child each per attempt.
    let mut for_item = child_of(parent, 1, "tick");
    for_item.parent.item = Some(4);
    let item_child = store.start_child_execution(for_item.clone()).await.unwrap();
    assert!(item_child.created);
    assert_ne!(item_child.execution.id, child.id);
    assert_eq!(item_child.execution.parent.as_ref().unwrap().item, Some(4));
    let again = store.start_child_execution(for_item).await.unwrap();
    assert_eq!(
        (again.created, again.execution.id),
        (false, item_child.execution.id)
    );

    let err = store
        .start_child_execution(child_of(parent, 3, "nope"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err}");

    let listed = store.get_execution(id).await.unwrap().children;
    let summary: Vec<(crate::ExecutionId, &str, Option<u32>, u32)> = listed
        .iter()
        .map(|c| (c.id, c.node_id.as_str(), c.item, c.attempt))
        .collect();
    assert_eq!(
        summary,
        vec![
            (child.id, "call", None, 1),
            (second.execution.id, "call", None, 2),
            (item_child.execution.id, "call", Some(4), 1)
        ]
    );
    assert!(listed.iter().all(|c| c.workflow_name == "tick"));
    assert!(
        store
            .get_execution(child.id)
            .await
            .unwrap()
            .children
            .is_empty()
    );
    assert!(listed.iter().all(|c| c.detached_by_retry.is_none()));
    // A stale token starts nothing.
    let stale = (id, LeaseToken(claimed.execution.lease_token.0 - 1));
    let err = store
        .start_child_execution(child_of(stale, 9, "tick"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::LeaseLost { .. }), "{err}");
    assert_eq!(store.get_execution(id).await.unwrap().children.len(), 3);
}
