//! Child executions: one per node attempt, linked both ways.

use serde_json::json;

use crate::store::StartChildParams;
use crate::testing::conformance::{quick_workflow, start};
use crate::{ExecutionParent, ExecutionStatus, Store, StoreError, WorkflowRef};

fn child_of(parent: crate::ExecutionId, attempt: u32, workflow: &str) -> StartChildParams {
    StartChildParams {
        parent: ExecutionParent {
            execution_id: parent,
            node_id: "call".into(),
            item: None,
            attempt,
        },
        workflow: WorkflowRef::from(workflow),
        input: json!({"attempt": attempt}),
        depth: 1,
        priority: 3,
    }
}

/// A node attempt starts one child: starting it again returns that one; the next attempt
/// starts another; the child records its parent, depth and priority, and the parent lists its
/// children; an unknown workflow is not found and writes nothing.
pub async fn a_node_attempt_starts_one_child_and_the_parent_lists_it(store: impl Store) {
    quick_workflow(&store).await;
    let parent = start(&store, "tick", json!({})).await;

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
            execution_id: parent,
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

    let listed = store.get_execution(parent).await.unwrap().children;
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
}
