//! Several workers: node types a worker lacks, each node exactly once, and a late write fenced out.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::{Value, json};

use crate::testing::TestStore;
use crate::testing::conformance::{WAIT, start, worker};
use crate::testing::fixture::{self, run_until_terminal, workflow};
use crate::testing::nodes::{self, Count};
use crate::{ExecutionStatus, NodeRunStatus, Store, WorkflowWorker};

/// A worker claims only executions whose every node type it has: one that lacks a type
/// leaves the execution waiting (not failed) for a worker that has it, which runs it.
pub async fn workers_claim_only_executions_whose_node_types_they_have(store: impl Store + Clone) {
    workflow("custom")
        .node("special", "echo", Value::Null)
        .edge("start", "special")
        .save(&store, &nodes::registry())
        .await;
    fixture::hello().save(&store, &nodes::registry()).await;
    let custom = start(&store, "custom", json!({"n": 1})).await;
    let hello = start(&store, "hello", json!({})).await;
    // A worker with only the built-in node types runs what it can.
    let plain = || WorkflowWorker::new(store.clone()).poll_interval(Duration::from_millis(50));
    let done = run_until_terminal(plain(), &store, &[hello], WAIT).await;
    assert_eq!(done[0].execution.status, ExecutionStatus::Completed);
    assert_eq!(
        plain().run_once().await.unwrap(),
        0,
        "it claimed what it cannot run"
    );
    let waiting = store.get_execution(custom).await.unwrap();
    assert_eq!(waiting.execution.status, ExecutionStatus::Pending);
    assert!(waiting.node_runs.is_empty());
    assert_eq!(waiting.execution.lease_owner, None);
    // A worker with the `echo` type takes it.
    let detail = run_until_terminal(worker(store.clone()), &store, &[custom], WAIT)
        .await
        .remove(0);
    assert_eq!(detail.execution.status, ExecutionStatus::Completed);
    assert_eq!(detail.execution.output, Some(json!({"n": 1})));
}

/// Workers record their presence and node types; queue stats count the runnable executions
/// that no live worker can run, and an expired or removed worker no longer counts.
pub async fn unrunnable_executions_are_counted_against_live_workers(store: impl Store + Clone) {
    workflow("custom")
        .node("special", "echo", Value::Null)
        .edge("start", "special")
        .save(&store, &nodes::registry())
        .await;
    start(&store, "custom", json!({})).await;
    let unrunnable = || async { store.queue_stats().await.unwrap().unrunnable };
    assert_eq!(unrunnable().await, 1, "no worker is live");
    let builtin: Vec<String> = crate::NodeRegistry::builtin()
        .types()
        .map(str::to_owned)
        .collect();
    let lease = Duration::from_secs(60);
    store.record_worker("plain", &builtin, lease).await.unwrap();
    assert_eq!(unrunnable().await, 1, "the live worker lacks echo");
    let with_echo: Vec<String> = nodes::registry().types().map(str::to_owned).collect();
    store
        .record_worker("full", &with_echo, lease)
        .await
        .unwrap();
    assert_eq!(unrunnable().await, 0);
    let live = store.live_workers().await.unwrap();
    let ids: Vec<&str> = live.iter().map(|w| w.id.as_str()).collect();
    assert_eq!(ids, ["full", "plain"]);
    assert!(live[0].runs(&["trigger".into(), "echo".into()]));
    assert!(!live[1].runs(&["trigger".into(), "echo".into()]));
    // Recording again replaces: "full" now without echo, then gone.
    store.record_worker("full", &builtin, lease).await.unwrap();
    assert_eq!(unrunnable().await, 1);
    store.remove_worker("full").await.unwrap();
    store
        .record_worker("plain", &with_echo, Duration::ZERO)
        .await
        .unwrap();
    assert!(
        store.live_workers().await.unwrap().is_empty(),
        "a worker past its expiry is not live"
    );
    assert_eq!(unrunnable().await, 1);
}

/// Two workers on one store run 200 executions: every execution completes, each node run is
/// recorded once, and each node ran once.
pub async fn two_workers_run_each_node_exactly_once(store: impl Store + Clone) {
    let count = Count::default();
    workflow("counted")
        .node("count", "count", Value::Null)
        .edge("start", "count")
        .save(&store, &nodes::registry().with("count", count.clone()))
        .await;
    let stop = tokio_util::sync::CancellationToken::new();
    // Claims into free slots only: claiming ahead, the first worker up may take all 200 in
    // one claim, and the two would not compete for rows. (Claimed-ahead executions are
    // exactly-once too: the chaos test runs three processes with the default.)
    let workers: Vec<_> = ["worker-a", "worker-b"]
        .into_iter()
        .map(|id| {
            let worker = WorkflowWorker::new(store.clone())
                .worker_id(id)
                .poll_interval(Duration::from_millis(20))
                .concurrency(8)
                .claim_ahead(0)
                .node("count", count.clone());
            tokio::spawn(worker.run_until(stop.clone().cancelled_owned()))
        })
        .collect();
    // Both are up before the executions come, one at a time, so the two compete for them: a
    // worker slow to start on a busy machine once found the other had run all 200.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let live: HashSet<String> = store
            .live_workers()
            .await
            .unwrap()
            .into_iter()
            .map(|w| w.id)
            .collect();
        if live.contains("worker-a") && live.contains("worker-b") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "both workers up: {live:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut ids = Vec::new();
    for i in 0..200 {
        ids.push(start(&store, "counted", json!({"i": i})).await);
    }
    let details = fixture::wait_until_terminal(&store, &ids, Duration::from_secs(120)).await;
    stop.cancel();
    for worker in workers {
        worker.await.unwrap().unwrap();
    }

    assert!(
        details
            .iter()
            .all(|d| d.execution.status == ExecutionStatus::Completed)
    );
    for detail in &details {
        let nodes: Vec<&str> = detail
            .node_runs
            .iter()
            .map(|r| r.node_id.as_str())
            .collect();
        assert_eq!(nodes, vec!["start", "count"], "{}", detail.execution.id);
    }
    let runs = count.runs();
    assert_eq!(runs.len(), 200);
    assert!(runs.values().all(|&n| n == 1), "a node ran twice: {runs:?}");
    let owners: HashSet<&str> = details
        .iter()
        .flat_map(|d| d.node_runs.iter().filter_map(|r| r.worker_id.as_deref()))
        .collect();
    assert_eq!(
        owners,
        HashSet::from(["worker-a", "worker-b"]),
        "both workers took part"
    );
}

/// A worker whose heartbeat stalled past its lease loses the execution to another worker;
/// its late result is rejected, and the history shows only the new owner's result.
pub async fn late_write_of_a_worker_whose_lease_was_taken_over_is_rejected(store: impl TestStore) {
    // `ready` is recorded before `slow` starts (the trigger's run waits for the next write).
    workflow("slow")
        .node("ready", "echo", Value::Null)
        .node("slow", "sleep", json!({"ms": 1500}))
        .edge("start", "ready")
        .edge("ready", "slow")
        .save(&store, &nodes::registry())
        .await;
    let id = start(&store, "slow", json!({})).await;

    let stalled = WorkflowWorker::new(fixture::StalledHeartbeat(store.clone()))
        .worker_id("stalled")
        .nodes(nodes::registry())
        .poll_interval(Duration::from_millis(50));
    let stalled = tokio::spawn(async move { stalled.run_once().await });
    // Let the stalled worker claim first and start the slow node.
    let started = tokio::time::Instant::now();
    while store.get_execution(id).await.unwrap().node_runs.is_empty() {
        assert!(
            started.elapsed() < WAIT,
            "the stalled worker never recorded its first step"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Its heartbeat stalled past the lease.
    store.expire_lease(id).await;
    let rescuer = worker(store.clone()).worker_id("rescuer");
    let detail = run_until_terminal(rescuer, &store, &[id], WAIT)
        .await
        .remove(0);
    // The stalled worker's run ends once its late write is refused.
    stalled.await.unwrap().unwrap();

    assert_eq!(detail.execution.status, ExecutionStatus::Completed);
    let slow: Vec<(NodeRunStatus, Option<&str>, i32)> = detail
        .node_runs
        .iter()
        .filter(|r| r.node_id == "slow")
        .map(|r| (r.status, r.worker_id.as_deref(), r.attempt))
        .collect();
    assert_eq!(
        slow,
        vec![
            (NodeRunStatus::Abandoned, Some("rescuer"), 1),
            (NodeRunStatus::Completed, Some("rescuer"), 1)
        ],
        "only the new owner's result is recorded"
    );
    let after = store.get_execution(id).await.unwrap();
    assert_eq!(
        after.node_runs.len(),
        detail.node_runs.len(),
        "a late write landed"
    );
}
