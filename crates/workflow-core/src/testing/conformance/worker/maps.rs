//! Maps: a node type run once per item, at most `max_parallel` at once, each item retried on
//! its own, results in order; and a map whose worker died resumes with its finished items.

use std::time::Duration;

use serde_json::{Value, json};

use crate::testing::TestStore;
use crate::testing::conformance::{WAIT, start, worker};
use crate::testing::fixture::{StalledHeartbeat, run_until_terminal, workflow};
use crate::testing::nodes;
use crate::{ExecutionStatus, NodeRunStatus, Store};

/// Every item of a 1,000-item list runs once, never more than `max_parallel` (8) at once
/// (counted by the item node itself as it runs), and the map's output holds the results in
/// the list's order.
pub async fn a_map_runs_each_item_once_at_most_max_parallel_at_once_in_order(
    store: impl Store + Clone,
) {
    workflow("fan_out")
        .node(
            "each",
            "map",
            json!({
                "items": {"$template": "{{ input.list }}"},
                "node": {"type": "gauge", "config": {"ms": 5, "key": {"$template": "{{ execution.id }}"}}},
                "max_parallel": 8
            }),
        )
        .edge("start", "each")
        .save(&store, &nodes::registry())
        .await;
    let list: Vec<Value> = (0..1000).map(|i| json!(format!("item-{i}"))).collect();
    let id = start(&store, "fan_out", json!({ "list": list })).await;
    let detail = run_until_terminal(worker(store.clone()), &store, &[id], WAIT * 4)
        .await
        .remove(0);
    assert_eq!(
        detail.execution.status,
        ExecutionStatus::Completed,
        "{:?}",
        detail.execution.error
    );
    assert_eq!(
        detail.execution.output,
        Some(Value::Array(list)),
        "results in the list's order"
    );

    let runs = &detail.item_runs;
    assert_eq!(runs.len(), 1000, "each item once");
    assert!(runs.iter().all(|r| r.status == NodeRunStatus::Completed));
    let mut items: Vec<u32> = runs.iter().map(|r| r.item).collect();
    items.sort_unstable();
    items.dedup();
    assert_eq!(items.len(), 1000);
    assert!(
        runs.iter()
            .all(|r| r.node_id == "each" && r.node_type == "gauge")
    );
    let peak = nodes::gauge_peak(&id.to_string());
    assert!(
        (2..=8).contains(&peak),
        "{peak} items ran at once (max_parallel 8)"
    );
    // The map's own run is one, completed, after its items.
    let map_runs: Vec<_> = detail
        .node_runs
        .iter()
        .filter(|r| r.node_id == "each")
        .collect();
    assert_eq!(map_runs.len(), 1);
    assert_eq!(map_runs[0].status, NodeRunStatus::Completed);
}

/// Each item is retried by the item node's policy; an item that fails for good fails the map
/// (`fail`), or is reported in the output beside the others (`collect`).
pub async fn failing_items_retry_on_their_own_then_fail_the_map_or_are_collected(
    store: impl Store + Clone,
) {
    let registry = nodes::registry();
    let retry = json!({"max_attempts": 2, "initial_backoff": 0.01});
    workflow("retried")
        .node(
            "each",
            "map",
            json!({"items": [1, 2, 3], "node": {"type": "flaky", "config": {"fail_times": 1}, "retry": retry}}),
        )
        .edge("start", "each")
        .save(&store, &registry)
        .await;
    workflow("collected")
        .node(
            "each",
            "map",
            json!({
                "items": [{"n": 1}, {"m": 2}],
                "node": {"type": "condition", "config": {"path": "n", "op": ">", "value": 1}},
                "on_item_failure": "collect"
            }),
        )
        .node("after", "echo", Value::Null)
        .edge("start", "each")
        .edge("each", "after")
        .save(&store, &registry)
        .await;
    workflow("failing")
        .node(
            "each",
            "map",
            json!({"items": [1, 2, 3], "node": {"type": "fatal"}, "max_parallel": 1}),
        )
        .edge("start", "each")
        .save(&store, &registry)
        .await;
    workflow("not_a_list")
        .node(
            "each",
            "map",
            json!({"items": {"$template": "{{ input }}"}, "node": {"type": "echo"}}),
        )
        .edge("start", "each")
        .save(&store, &registry)
        .await;
    let ids = [
        start(&store, "retried", json!({})).await,
        start(&store, "collected", json!({})).await,
        start(&store, "failing", json!({})).await,
        start(&store, "not_a_list", json!({"a": 1})).await,
    ];
    let ended = run_until_terminal(worker(store.clone()), &store, &ids, WAIT).await;

    let retried = &ended[0];
    assert_eq!(retried.execution.status, ExecutionStatus::Completed);
    assert_eq!(
        retried.execution.output,
        Some(json!([{"attempt": 2}, {"attempt": 2}, {"attempt": 2}]))
    );
    assert_eq!(retried.item_runs.len(), 6, "two attempts per item");
    for item in 0..3 {
        let statuses: Vec<(u32, NodeRunStatus)> = retried
            .item_runs
            .iter()
            .filter(|r| r.item == item)
            .map(|r| (r.attempt, r.status))
            .collect();
        assert_eq!(
            statuses,
            vec![(1, NodeRunStatus::Failed), (2, NodeRunStatus::Completed)]
        );
    }

    // The condition fails for good on the item without its path; a collected map outputs
    // each item's result and goes on.
    let collected = &ended[1];
    assert_eq!(collected.execution.status, ExecutionStatus::Completed);
    let results = collected.execution.output.as_ref().unwrap();
    assert_eq!(
        results[0],
        json!({"status": "completed", "output": {"n": 1}})
    );
    assert_eq!(results[1]["status"], "failed");
    assert!(
        results[1]["error"].as_str().unwrap().contains("\"n\""),
        "{results}"
    );

    let failing = &ended[2];
    assert_eq!(failing.execution.status, ExecutionStatus::Failed);
    assert_eq!(
        failing.execution.error.as_deref(),
        Some("node \"each\" failed: item 0 failed: bad input, will never work")
    );
    assert_eq!(
        failing.item_runs.len(),
        1,
        "no item starts after the map failed"
    );

    let not_a_list = &ended[3];
    assert_eq!(not_a_list.execution.status, ExecutionStatus::Failed);
    assert_eq!(
        not_a_list.execution.error.as_deref(),
        Some(
            "node \"each\" failed: invalid config once its templates were rendered: items must \
             be a list (or a template that makes one), not an object"
        )
    );
}

/// A worker that dies halfway through a map leaves its finished items recorded; the worker
/// that rescues the execution runs only the others, and every item completes exactly once.
pub async fn a_map_whose_worker_died_resumes_with_its_finished_items(store: impl TestStore) {
    workflow("long_map")
        .node(
            "each",
            "map",
            json!({
                "items": {"$template": "{{ input.list }}"},
                "node": {"type": "sleep", "config": {"ms": 20, "tag": {"$template": "{{ input }}"}}},
                "max_parallel": 4
            }),
        )
        .edge("start", "each")
        .save(&store, &nodes::registry())
        .await;
    let list: Vec<Value> = (0..60).map(|i| json!(i)).collect();
    let id = start(&store, "long_map", json!({ "list": list })).await;

    // The first worker runs some items, then dies: its task is dropped mid-flight, and its
    // heartbeat (a task of its own) renews nothing.
    let first = tokio::spawn(worker(StalledHeartbeat(store.clone())).run());
    let started = tokio::time::Instant::now();
    loop {
        let recorded = store.get_execution(id).await.unwrap().item_runs.len();
        if recorded >= 12 {
            break;
        }
        assert!(started.elapsed() < WAIT, "no items recorded");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    first.abort();
    let _ = first.await;
    let before = store.get_execution(id).await.unwrap().item_runs.len();
    assert!(before < 60, "the map finished before its worker died");
    store.expire_lease(id).await;

    let detail = run_until_terminal(worker(store.clone()), &store, &[id], WAIT)
        .await
        .remove(0);
    assert_eq!(detail.execution.status, ExecutionStatus::Completed);
    let tags: Vec<Value> = detail
        .execution
        .output
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["tag"].clone())
        .collect();
    assert_eq!(tags, list);
    let mut completed: Vec<u32> = detail
        .item_runs
        .iter()
        .filter(|r| r.status == NodeRunStatus::Completed)
        .map(|r| r.item)
        .collect();
    completed.sort_unstable();
    assert_eq!(
        completed,
        (0..60).collect::<Vec<u32>>(),
        "each item exactly once"
    );
}

/// A map paused halfway stops starting items, pauses once its running items are recorded,
/// and after a resume runs only the rest.
pub async fn a_paused_map_resumes_where_it_stopped(store: impl Store + Clone) {
    workflow("paced")
        .node(
            "each",
            "map",
            json!({
                "items": {"$template": "{{ input.list }}"},
                "node": {"type": "sleep", "config": {"ms": 30, "tag": {"$template": "{{ input }}"}}},
                "max_parallel": 2
            }),
        )
        .edge("start", "each")
        .save(&store, &nodes::registry())
        .await;
    let list: Vec<Value> = (0..30).map(|i| json!(i)).collect();
    let id = start(&store, "paced", json!({ "list": list })).await;
    let stop = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn(worker(store.clone()).run_until(stop.clone().cancelled_owned()));
    let started = tokio::time::Instant::now();
    while store.get_execution(id).await.unwrap().item_runs.len() < 4 {
        assert!(started.elapsed() < WAIT, "no items recorded");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    store.pause_execution(id).await.unwrap();
    let paused = loop {
        let detail = store.get_execution(id).await.unwrap();
        if detail.execution.status == ExecutionStatus::Paused {
            break detail;
        }
        assert!(started.elapsed() < WAIT, "the map never paused: {detail:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert!(
        paused.item_runs.len() < 30,
        "it paused only when the map was done"
    );
    store.resume_execution(id).await.unwrap();
    let detail = loop {
        let detail = store.get_execution(id).await.unwrap();
        if detail.execution.status.is_terminal() {
            break detail;
        }
        assert!(started.elapsed() < WAIT * 2, "the map never finished");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    stop.cancel();
    running.await.unwrap().unwrap();
    assert_eq!(detail.execution.status, ExecutionStatus::Completed);
    let mut items: Vec<u32> = detail.item_runs.iter().map(|r| r.item).collect();
    items.sort_unstable();
    assert_eq!(items, (0..30).collect::<Vec<u32>>(), "each item once");
}

/// A map whose item node is a `subworkflow` runs a child execution per item; the parent waits
/// for them without holding a slot (one worker with one slot runs them all), and completes
/// with the children's outputs in order.
pub async fn a_map_runs_a_sub_workflow_per_item_without_holding_a_slot(store: impl Store + Clone) {
    let registry = nodes::registry();
    workflow("double")
        .node(
            "calc",
            "config",
            json!({"n": {"$template": "{{ input.n * 2 }}"}}),
        )
        .edge("start", "calc")
        .save(&store, &registry)
        .await;
    workflow("fan_out_children")
        .node(
            "each",
            "map",
            json!({
                "items": {"$template": "{{ input.list }}"},
                "node": {"type": "subworkflow", "config": {"workflow": "double"}},
                "max_parallel": 2
            }),
        )
        .edge("start", "each")
        .save(&store, &registry)
        .await;
    let list: Vec<Value> = (1..=5).map(|n| json!({ "n": n })).collect();
    let id = start(&store, "fan_out_children", json!({ "list": list })).await;
    let detail = run_until_terminal(worker(store.clone()).concurrency(1), &store, &[id], WAIT)
        .await
        .remove(0);
    assert_eq!(
        detail.execution.status,
        ExecutionStatus::Completed,
        "{:?}",
        detail.execution.error
    );
    assert_eq!(
        detail.execution.output,
        Some(json!([{"n": 2}, {"n": 4}, {"n": 6}, {"n": 8}, {"n": 10}]))
    );
    let mut items: Vec<Option<u32>> = detail.children.iter().map(|c| c.item).collect();
    items.sort_unstable();
    assert_eq!(
        items,
        (0..5).map(Some).collect::<Vec<_>>(),
        "a child per item"
    );
    assert!(
        detail
            .children
            .iter()
            .all(|c| c.status == ExecutionStatus::Completed && c.node_id == "each")
    );
    assert_eq!(detail.item_runs.len(), 5);
    assert!(
        detail.signals.iter().all(|s| s.consumed_at.is_some()),
        "every child's end was consumed by its item: {:?}",
        detail.signals
    );
}
