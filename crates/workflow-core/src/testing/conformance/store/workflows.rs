//! Workflows: saving versions, and the Client validating what it saves.

use serde_json::{Value, json};

use crate::testing::fixture;
use crate::testing::nodes;
use crate::{Client, Store, StoreError, WorkflowRef};

/// Saving a name again adds a version; the latest is what `get_workflow` returns.
pub async fn save_workflow_adds_a_version_per_save(store: impl Store) {
    let registry = nodes::registry();
    let v1 = fixture::hello().save(&store, &registry).await;
    let v2 = fixture::hello()
        .node("more", "echo", Value::Null)
        .edge("say_hello", "more")
        .save(&store, &registry)
        .await;
    assert_eq!((v1.version, v2.version), (1, 2));
    assert_eq!(v1.workflow_id, v2.workflow_id);

    let latest = store
        .get_workflow(&WorkflowRef::Name("hello".into()))
        .await
        .unwrap();
    assert_eq!(latest.version, 2);
    assert_eq!(latest.definition.nodes.len(), 3);
    let by_id = store
        .get_workflow(&WorkflowRef::Id(v1.workflow_id))
        .await
        .unwrap();
    assert_eq!(by_id.version, 2);
    let first = store.get_workflow_version(v1.workflow_id, 1).await.unwrap();
    assert_eq!(first.definition, v1.definition);
    assert!(matches!(
        store.get_workflow_version(v1.workflow_id, 3).await,
        Err(StoreError::NotFound { .. })
    ));
}

/// The client validates a definition against its node types before saving it: one its
/// registry lacks is refused with the node named, and nothing is written.
pub async fn the_client_saves_only_workflows_valid_for_its_node_types(store: impl Store + Clone) {
    let definition: crate::WorkflowDefinition = serde_json::from_value(json!({
        "name": "echoing",
        "nodes": [{"id": "start", "type": "trigger"}, {"id": "say", "type": "echo"}],
        "edges": [{"from": "start", "to": "say"}]
    }))
    .unwrap();
    let builtin = Client::new(store.clone());
    let err = builtin
        .save_workflow(definition.clone())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("say") && err.contains("echo"), "{err}");
    let missing = store
        .get_workflow(&WorkflowRef::Name("echoing".into()))
        .await
        .unwrap_err();
    assert!(
        matches!(missing, StoreError::NotFound { .. }),
        "{missing:?}"
    );

    let with_echo = Client::with_registry(store.clone(), nodes::registry());
    let saved = with_echo.save_workflow(definition).await.unwrap();
    assert_eq!((saved.name.as_str(), saved.version), ("echoing", 1));
    assert_eq!(with_echo.workflow("echoing").await.unwrap(), saved);
}
