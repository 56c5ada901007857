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

/// Listing gives every workflow once, by name, with its latest version; the client reads any
/// version of one by name or id, and an unknown version is not found.
pub async fn workflows_are_listed_by_name_and_read_at_any_version(store: impl Store + Clone) {
    let client = Client::with_registry(store.clone(), nodes::registry());
    assert!(client.workflows().await.unwrap().is_empty());
    let registry = nodes::registry();
    let b1 = fixture::workflow("b").save(&store, &registry).await;
    let a1 = fixture::hello().save(&store, &registry).await;
    let b2 = fixture::workflow("b")
        .node("more", "echo", Value::Null)
        .edge("start", "more")
        .save(&store, &registry)
        .await;

    let listed = client.workflows().await.unwrap();
    let names: Vec<(&str, i32)> = listed
        .iter()
        .map(|w| (w.name.as_str(), w.latest_version))
        .collect();
    assert_eq!(names, [("b", 2), ("hello", 1)]);
    let b = &listed[0];
    assert_eq!(b.workflow_id, b1.workflow_id);
    // Database times; a store may take them in separate statements of one save.
    assert!(
        b.created_at <= b1.created_at,
        "created with its first version"
    );
    assert!(
        a1.created_at <= b.updated_at && b.updated_at <= b2.created_at,
        "updated with its latest version, saved after `hello`"
    );
    assert_eq!(listed[1].workflow_id, a1.workflow_id);

    let first = client.workflow_at("b", 1).await.unwrap();
    assert_eq!(first.definition, b1.definition);
    let latest = client
        .workflow_at(WorkflowRef::Id(b1.workflow_id), 2)
        .await
        .unwrap();
    assert_eq!(latest.definition, b2.definition);
    assert!(matches!(
        client.workflow_at("b", 3).await,
        Err(StoreError::NotFound {
            entity: "workflow version",
            ..
        })
    ));
    assert!(matches!(
        client.workflow_at("nope", 1).await,
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
