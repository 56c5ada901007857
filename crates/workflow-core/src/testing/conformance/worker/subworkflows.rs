//! Sub-workflows: a node runs another workflow as a child execution and waits for it; the
//! child's failure fails the node (a retry starts a new child); the parent's end cancels its
//! children; a workflow calling itself without end stops at the depth limit.

use std::time::Duration;

use serde_json::{Value, json};

use crate::testing::conformance::{WAIT, start, worker};
use crate::testing::fixture::{run_until_terminal, workflow};
use crate::testing::nodes;
use crate::{
    ExecutionDetail, ExecutionId, ExecutionStatus, MAX_SUBWORKFLOW_DEPTH, NodeRunStatus,
    RetryPolicy, Store,
};

async fn detail(store: &impl Store, id: ExecutionId) -> ExecutionDetail {
    store.get_execution(id).await.expect("get execution")
}

/// Polls until `check` holds for execution `id`'s detail.
async fn until(
    store: &impl Store,
    id: ExecutionId,
    what: &str,
    check: impl Fn(&ExecutionDetail) -> bool,
) -> ExecutionDetail {
    let started = tokio::time::Instant::now();
    loop {
        let detail = detail(store, id).await;
        if check(&detail) {
            return detail;
        }
        assert!(started.elapsed() < WAIT, "{what}: {detail:#?}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The parent's node starts the child with an input from a template, waits for it, and
/// completes with its output; the two are linked both ways.
pub async fn a_subworkflow_node_completes_with_its_childs_output(store: impl Store + Clone) {
    let registry = nodes::registry();
    workflow("shipping")
        .node(
            "pack",
            "config",
            json!({"packed": {"$template": "{{ input.order }}"}}),
        )
        .edge("start", "pack")
        .save(&store, &registry)
        .await;
    workflow("order")
        .node(
            "ship",
            "subworkflow",
            json!({"workflow": "shipping", "input": {"order": {"$template": "{{ input.id }}"}}}),
        )
        .node("done", "echo", Value::Null)
        .edge("start", "ship")
        .edge("ship", "done")
        .save(&store, &registry)
        .await;
    let parent = start(&store, "order", json!({"id": 7})).await;
    let ended = run_until_terminal(worker(store.clone()), &store, &[parent], WAIT).await;
    let parent_detail = &ended[0];
    assert_eq!(
        parent_detail.execution.status,
        ExecutionStatus::Completed,
        "{parent_detail:#?}"
    );
    assert_eq!(parent_detail.execution.output, Some(json!({"packed": 7})));
    let ship: Vec<NodeRunStatus> = parent_detail
        .node_runs
        .iter()
        .filter(|r| r.node_id == "ship")
        .map(|r| r.status)
        .collect();
    assert_eq!(ship, vec![NodeRunStatus::Waiting, NodeRunStatus::Completed]);

    let [child] = &parent_detail.children[..] else {
        panic!("one child: {:?}", parent_detail.children)
    };
    assert_eq!(
        (
            child.workflow_name.as_str(),
            child.node_id.as_str(),
            child.attempt
        ),
        ("shipping", "ship", 1)
    );
    assert_eq!(child.status, ExecutionStatus::Completed);
    let child_detail = detail(&store, child.id).await;
    let linked = child_detail.execution.parent.as_ref().expect("a parent");
    assert_eq!(
        (linked.execution_id, linked.node_id.as_str(), linked.attempt),
        (parent, "ship", 1)
    );
    assert_eq!(child_detail.execution.depth, 1);
    assert_eq!(child_detail.execution.input, json!({"order": 7}));
    assert_eq!(parent_detail.execution.depth, 0);
    assert!(parent_detail.execution.parent.is_none());
    // The child's end reached the parent as a signal, consumed by the node.
    let [signal] = &parent_detail.signals[..] else {
        panic!("one signal: {:?}", parent_detail.signals)
    };
    assert_eq!(signal.name, format!("child:{}", child.id));
    assert_eq!(signal.consumed_by_node.as_deref(), Some("ship"));
}

/// A child that fails fails its node; the node's retry starts a new child, and once its
/// attempts are used up the parent fails saying why.
pub async fn a_failed_child_fails_its_node_and_a_retry_starts_a_new_child(
    store: impl Store + Clone,
) {
    let registry = nodes::registry();
    workflow("broken")
        .node("boom", "fatal", Value::Null)
        .edge("start", "boom")
        .save(&store, &registry)
        .await;
    workflow("caller")
        .node("call", "subworkflow", json!({"workflow": "broken"}))
        .retry(RetryPolicy {
            max_attempts: 2,
            initial_backoff: Duration::from_millis(10),
            ..RetryPolicy::NONE
        })
        .edge("start", "call")
        .save(&store, &registry)
        .await;
    let parent = start(&store, "caller", json!({})).await;
    let ended = run_until_terminal(worker(store.clone()), &store, &[parent], WAIT)
        .await
        .remove(0);
    assert_eq!(ended.execution.status, ExecutionStatus::Failed);
    let error = ended.execution.error.as_deref().unwrap_or_default();
    assert!(
        error.starts_with("node \"call\" failed after 2 attempts: child execution ")
            && error.ends_with(
                "of workflow \"broken\" failed: node \"boom\" failed: bad input, will never work"
            ),
        "{error}"
    );
    let attempts: Vec<u32> = ended.children.iter().map(|c| c.attempt).collect();
    assert_eq!(attempts, vec![1, 2], "a new child per attempt");
    assert!(
        ended
            .children
            .iter()
            .all(|c| c.status == ExecutionStatus::Failed)
    );
    assert_ne!(ended.children[0].id, ended.children[1].id);
}

/// Cancelling a parent cancels its child and the child's own child, whose holders are told;
/// the cancelled child's end does not reach the ended parent.
pub async fn cancelling_a_parent_cancels_its_children_and_theirs(store: impl Store + Clone) {
    let registry = nodes::registry();
    workflow("leaf")
        .node("hold", "wait_for_signal", json!({"signal": "never"}))
        .edge("start", "hold")
        .save(&store, &registry)
        .await;
    workflow("middle")
        .node("down", "subworkflow", json!({"workflow": "leaf"}))
        .edge("start", "down")
        .save(&store, &registry)
        .await;
    workflow("top")
        .node("down", "subworkflow", json!({"workflow": "middle"}))
        .edge("start", "down")
        .save(&store, &registry)
        .await;
    let top = start(&store, "top", json!({})).await;
    let stop = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn(worker(store.clone()).run_until(stop.clone().cancelled_owned()));

    let top_waiting = until(&store, top, "the top waits for its child", |d| {
        d.execution.status == ExecutionStatus::Waiting && d.children.len() == 1
    })
    .await;
    let middle = top_waiting.children[0].id;
    let middle_waiting = until(&store, middle, "the middle waits for its child", |d| {
        d.execution.status == ExecutionStatus::Waiting && d.children.len() == 1
    })
    .await;
    let leaf = middle_waiting.children[0].id;
    until(&store, leaf, "the leaf waits for its signal", |d| {
        d.execution.status == ExecutionStatus::Waiting
    })
    .await;

    store.cancel_execution(top, "operator").await.unwrap();
    for (id, parent) in [(middle, top), (leaf, middle)] {
        let cancelled = detail(&store, id).await.execution;
        assert_eq!(
            cancelled.status,
            ExecutionStatus::Cancelled,
            "{cancelled:?}"
        );
        assert_eq!(
            cancelled.error,
            Some(format!("parent execution {parent} ended (cancelled)"))
        );
    }
    let top = detail(&store, top).await;
    assert_eq!(top.execution.error.as_deref(), Some("operator"));
    assert!(
        top.signals.is_empty(),
        "an ended parent gets no signal: {:?}",
        top.signals
    );
    stop.cancel();
    running.await.unwrap().unwrap();
}

/// A workflow that starts itself without end fails at the depth limit, and every level
/// above fails with it.
pub async fn a_workflow_calling_itself_without_end_stops_at_the_depth_limit(
    store: impl Store + Clone,
) {
    let registry = nodes::registry();
    workflow("forever")
        .node("again", "subworkflow", json!({"workflow": "forever"}))
        .edge("start", "again")
        .save(&store, &registry)
        .await;
    let root = start(&store, "forever", json!({})).await;
    let ended = run_until_terminal(worker(store.clone()), &store, &[root], WAIT)
        .await
        .remove(0);
    assert_eq!(ended.execution.status, ExecutionStatus::Failed);
    // Down the chain to the deepest execution, which could not start a child.
    let mut deepest = ended;
    let mut levels = 0;
    while let [child] = &deepest.children[..] {
        deepest = detail(&store, child.id).await;
        levels += 1;
        assert_eq!(deepest.execution.status, ExecutionStatus::Failed);
    }
    assert_eq!(levels, MAX_SUBWORKFLOW_DEPTH);
    assert_eq!(deepest.execution.depth, MAX_SUBWORKFLOW_DEPTH);
    let error = deepest.execution.error.unwrap_or_default();
    assert!(
        error.contains(&format!(
            "sub-workflow depth limit ({MAX_SUBWORKFLOW_DEPTH}) reached starting workflow \"forever\""
        )),
        "{error}"
    );
}

/// A parent cancelled while its child waited (the child was cancelled with it and stored no
/// signal) runs its sub-workflow node again after a retry from where it stopped: with a new
/// child, the old one detached, not waiting for a signal that never came.
pub async fn a_retried_parent_starts_a_new_child_for_its_node(store: impl Store + Clone) {
    let registry = nodes::registry();
    workflow("approve")
        .node("ok", "wait_for_signal", json!({"signal": "ok"}))
        .edge("start", "ok")
        .save(&store, &registry)
        .await;
    workflow("with_child")
        .node("call", "subworkflow", json!({"workflow": "approve"}))
        .edge("start", "call")
        .save(&store, &registry)
        .await;
    let parent = start(&store, "with_child", json!({})).await;
    let stop = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn(worker(store.clone()).run_until(stop.clone().cancelled_owned()));
    let waiting = until(&store, parent, "the parent to wait for its child", |d| {
        d.execution.status == ExecutionStatus::Waiting && d.children.len() == 1
    })
    .await;
    let old = waiting.children[0].id;
    // Once the child's own step is written: a child row another transaction holds when the
    // parent ends is left to the deadline sweep (up to a minute), which is not under test.
    until(&store, old, "the child to wait", |d| {
        d.execution.status == ExecutionStatus::Waiting
    })
    .await;
    store.cancel_execution(parent, "operator").await.unwrap();
    until(&store, old, "the child to be cancelled", |d| {
        d.execution.status == ExecutionStatus::Cancelled
    })
    .await;

    let client = crate::Client::with_registry(store.clone(), registry);
    client
        .retry(parent, crate::RetryRequest::new("operator"))
        .await
        .unwrap();
    let waiting = until(&store, parent, "a new child", |d| {
        d.children.iter().any(|c| c.id != old)
            && d.children
                .iter()
                .any(|c| c.id == old && c.detached_by_retry.is_some())
    })
    .await;
    let new = waiting.children.iter().find(|c| c.id != old).unwrap().id;
    until(&store, new, "the new child to wait", |d| {
        d.execution.status == ExecutionStatus::Waiting
    })
    .await;
    store
        .send_signal(crate::SendSignalParams {
            execution_id: new,
            name: "ok".into(),
            payload: json!({"approved": true}),
            idempotency_key: None,
        })
        .await
        .unwrap();
    let done = until(&store, parent, "the parent to end", |d| {
        d.execution.status.is_terminal()
    })
    .await;
    stop.cancel();
    running.await.unwrap().unwrap();
    assert_eq!(
        done.execution.status,
        ExecutionStatus::Completed,
        "{done:#?}"
    );
    assert_eq!(done.execution.output, Some(json!({"approved": true})));
}
