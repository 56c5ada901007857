//! Signals and durable timers: approvals, signal timeouts, delays across restarts, and waiting
//! without a slot.

use std::time::Duration;

use serde_json::{Value, json};

use crate::testing::conformance::{
    WAIT, approval_workflow, send, start, wait_until_waiting, worker,
};
use crate::testing::fixture::{self, run_until_terminal, workflow};
use crate::testing::nodes;
use crate::{ExecutionStatus, NodeRunStatus, Store};

/// An approval parks the execution (no lease, no timer) until its signal; approving one
/// execution and rejecting another runs only the chosen branch of each, the other shows as
/// skipped, and a signal sent before the wait began is not lost.
pub async fn approval_runs_only_the_branch_the_signal_chose(store: impl Store + Clone) {
    approval_workflow().save(&store, &nodes::registry()).await;
    let approved = start(&store, "approval", json!({"order": 1})).await;
    let rejected = start(&store, "approval", json!({"order": 2})).await;
    let early = start(&store, "approval", json!({"order": 3})).await;
    send(
        &store,
        early,
        "approval",
        json!({"approved": true, "by": "early"}),
    )
    .await;

    let stop = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn(worker(store.clone()).run_until(stop.clone().cancelled_owned()));
    wait_until_waiting(&store, &[approved, rejected]).await;
    let parked = store.get_execution(approved).await.unwrap();
    assert_eq!(
        parked.execution.lease_owner, None,
        "a waiting execution holds no lease"
    );
    assert_eq!(
        parked.execution.run_at, None,
        "it waits for the signal alone"
    );
    let waiting_row = parked
        .node_runs
        .iter()
        .find(|r| r.node_id == "approval")
        .unwrap();
    assert_eq!(waiting_row.status, NodeRunStatus::Waiting);

    send(
        &store,
        approved,
        "approval",
        json!({"approved": true, "by": "ada"}),
    )
    .await;
    send(
        &store,
        rejected,
        "approval",
        json!({"approved": false, "by": "bob"}),
    )
    .await;
    let details = fixture::wait_until_terminal(&store, &[approved, rejected, early], WAIT).await;
    stop.cancel();
    running.await.unwrap().unwrap();

    let outcome = |detail: &crate::ExecutionDetail| {
        let status = |node: &str| {
            detail
                .node_runs
                .iter()
                .rev()
                .find(|r| r.node_id == node)
                .map(|r| r.status)
        };
        (status("approval"), status("ship"), status("refund"))
    };
    let done = Some(NodeRunStatus::Completed);
    let skipped = Some(NodeRunStatus::Skipped);
    assert_eq!(outcome(&details[0]), (done, done, skipped));
    assert_eq!(outcome(&details[1]), (done, skipped, done));
    assert_eq!(
        outcome(&details[2]),
        (done, done, skipped),
        "the early signal was lost"
    );
    for detail in &details {
        assert_eq!(detail.execution.status, ExecutionStatus::Completed);
        assert_eq!(detail.signals.len(), 1);
        assert_eq!(
            detail.signals[0].consumed_by_node.as_deref(),
            Some("approval")
        );
        assert!(detail.signals[0].consumed_at.is_some());
    }
    let approval = details[1]
        .node_runs
        .iter()
        .rev()
        .find(|r| r.node_id == "approval")
        .unwrap();
    assert_eq!(
        approval.output,
        Some(json!({"approved": false, "by": "bob"}))
    );
    assert_eq!(approval.branch.as_deref(), Some("rejected"));
}

/// Without its signal, a wait with a timeout takes its `timeout` branch when it passes.
pub async fn a_wait_for_signal_times_out_down_its_timeout_branch(store: impl Store + Clone) {
    workflow("impatient")
        .node(
            "approval",
            "wait_for_signal",
            json!({"signal": "approval", "timeout": 0.5, "on_timeout": "branch"}),
        )
        .node("escalate", "echo", Value::Null)
        .edge("start", "approval")
        .branch_edge("approval", "escalate", "timeout")
        .save(&store, &nodes::registry())
        .await;
    let id = start(&store, "impatient", json!({})).await;
    let detail = run_until_terminal(worker(store.clone()), &store, &[id], WAIT)
        .await
        .remove(0);
    assert_eq!(detail.execution.status, ExecutionStatus::Completed);
    let escalate = detail
        .node_runs
        .iter()
        .find(|r| r.node_id == "escalate")
        .unwrap();
    assert_eq!(escalate.status, NodeRunStatus::Completed);
    assert_eq!(
        escalate.input,
        Some(json!({"timed_out": true, "signal": "approval"}))
    );
}

/// A 3 s delay survives the worker stopping in the middle: another worker completes it after
/// about 3 s, not earlier, and no worker slot is held meanwhile.
pub async fn a_delay_resumes_on_time_after_a_worker_restart(store: impl Store + Clone) {
    workflow("delayed")
        .node("wait", "delay", json!({"seconds": 3}))
        .node("after", "echo", Value::Null)
        .edge("start", "wait")
        .edge("wait", "after")
        .save(&store, &nodes::registry())
        .await;
    let id = start(&store, "delayed", json!({"carry": "on"})).await;
    let started = tokio::time::Instant::now();
    let stop = tokio_util::sync::CancellationToken::new();
    let first = tokio::spawn(worker(store.clone()).run_until(stop.clone().cancelled_owned()));
    wait_until_waiting(&store, &[id]).await;
    stop.cancel();
    first.await.unwrap().unwrap();
    let parked = store.get_execution(id).await.unwrap().execution;
    assert!(parked.run_at.is_some(), "a timer sets when it wakes");

    let poll = Duration::from_millis(100);
    let detail = run_until_terminal(
        worker(store.clone()).poll_interval(poll),
        &store,
        &[id],
        WAIT,
    )
    .await
    .remove(0);
    let took = started.elapsed();
    assert_eq!(detail.execution.status, ExecutionStatus::Completed);
    assert!(
        took >= Duration::from_millis(2950),
        "the delay ended early, after {took:?}"
    );
    assert!(
        took < Duration::from_secs(3) + poll + Duration::from_millis(1500),
        "late: {took:?}"
    );
    let after = detail
        .node_runs
        .iter()
        .find(|r| r.node_id == "after")
        .unwrap();
    assert_eq!(
        after.input,
        Some(json!({"carry": "on"})),
        "the delay passes its input on"
    );
}

/// While 10 executions wait for signals, a worker with 2 slots completes 20 others.
pub async fn waiting_executions_hold_no_worker_slot(store: impl Store + Clone) {
    approval_workflow().save(&store, &nodes::registry()).await;
    workflow("quick")
        .node("work", "echo", Value::Null)
        .edge("start", "work")
        .save(&store, &nodes::registry())
        .await;
    let mut waiting = Vec::new();
    for _ in 0..10 {
        waiting.push(start(&store, "approval", json!({})).await);
    }
    let stop = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn(
        worker(store.clone())
            .concurrency(2)
            .run_until(stop.clone().cancelled_owned()),
    );
    wait_until_waiting(&store, &waiting).await;
    let mut quick = Vec::new();
    for _ in 0..20 {
        quick.push(start(&store, "quick", json!({})).await);
    }
    let done = fixture::wait_until_terminal(&store, &quick, WAIT).await;
    assert!(
        done.iter()
            .all(|d| d.execution.status == ExecutionStatus::Completed)
    );
    for id in &waiting {
        assert_eq!(
            store.get_execution(*id).await.unwrap().execution.status,
            ExecutionStatus::Waiting
        );
    }
    stop.cancel();
    running.await.unwrap().unwrap();
}
