//! Shutdown: the grace period, then interruption and release.

use std::time::Duration;

use serde_json::{Value, json};

use crate::store::NewNodeRun;
use crate::testing::conformance::{
    LEASE, RecordOne, WAIT, claim_one, completed_run, keep_running, record,
    shut_down_after_first_step, start, worker,
};
use crate::testing::fixture::{run_until_terminal, workflow};
use crate::testing::nodes;
use crate::{ExecutionStatus, NodeRunStatus, Store};

/// On shutdown a node still running after the grace period is stopped and recorded as
/// interrupted, and the execution is released: another worker claims it at once and runs the
/// node again under the same attempt number.
pub async fn shutdown_interrupts_running_nodes_and_releases_the_execution(
    store: impl Store + Clone,
) {
    workflow("long")
        .node("ready", "echo", Value::Null)
        .node("long", "sleep", json!({"ms": 20_000}))
        .edge("start", "ready")
        .edge("ready", "long")
        .save(&store, &nodes::registry())
        .await;
    let id = start(&store, "long", json!({})).await;
    let first = worker(store.clone())
        .worker_id("first")
        .shutdown_grace(Duration::from_millis(300));
    let took = shut_down_after_first_step(&store, id, first).await;
    assert!(
        took < Duration::from_secs(15),
        "shutdown waited for the node instead of interrupting it"
    );

    let released = store.get_execution(id).await.unwrap();
    assert_eq!(released.execution.status, ExecutionStatus::Running);
    assert_eq!(
        released.execution.lease_owner, None,
        "the lease was not released"
    );
    let long: Vec<(NodeRunStatus, i32)> = released
        .node_runs
        .iter()
        .filter(|r| r.node_id == "long")
        .map(|r| (r.status, r.attempt))
        .collect();
    assert_eq!(long, vec![(NodeRunStatus::Interrupted, 1)]);

    // Claimable at once, not after the lease would have expired; resumed with attempt 1.
    let resumed = claim_one(&store, "second", LEASE).await;
    assert_eq!(resumed.execution.id, id);
    assert_eq!(resumed.execution.rescue_count, 0);
    let mut again = NewNodeRun {
        node_type: "sleep".into(),
        ..completed_run("long", 1)
    };
    again.output = Some(json!({"slept_ms": 0}));
    store
        .record_step(record(&resumed, vec![again], keep_running()))
        .await
        .expect("the same attempt can complete after an interruption");
}

/// On shutdown, nodes that finish within the grace period are recorded, no new node starts,
/// and the execution is released for another worker to finish.
pub async fn shutdown_lets_running_nodes_finish_within_the_grace_period(store: impl Store + Clone) {
    workflow("two_steps")
        .node("ready", "echo", Value::Null)
        .node("first_step", "sleep", json!({"ms": 600}))
        .node("second_step", "echo", Value::Null)
        .edge("start", "ready")
        .edge("ready", "first_step")
        .edge("first_step", "second_step")
        .save(&store, &nodes::registry())
        .await;
    let id = start(&store, "two_steps", json!({})).await;
    let first = worker(store.clone())
        .worker_id("first")
        .shutdown_grace(Duration::from_secs(20));
    shut_down_after_first_step(&store, id, first).await;

    let released = store.get_execution(id).await.unwrap();
    assert_eq!(released.execution.status, ExecutionStatus::Running);
    assert_eq!(released.execution.lease_owner, None);
    let runs: Vec<(&str, NodeRunStatus)> = released
        .node_runs
        .iter()
        .map(|r| (r.node_id.as_str(), r.status))
        .collect();
    assert_eq!(
        runs,
        vec![
            ("start", NodeRunStatus::Completed),
            ("ready", NodeRunStatus::Completed),
            ("first_step", NodeRunStatus::Completed)
        ],
        "the running node finished and no new node started"
    );

    let detail = run_until_terminal(
        worker(store.clone()).worker_id("second"),
        &store,
        &[id],
        WAIT,
    )
    .await
    .remove(0);
    assert_eq!(detail.execution.status, ExecutionStatus::Completed);
    let last = detail.node_runs.last().unwrap();
    assert_eq!(
        (last.node_id.as_str(), last.worker_id.as_deref()),
        ("second_step", Some("second"))
    );
}

/// A worker running short executions claims ahead of its free slots, and lends an
/// execution's slot to them while it writes between two nodes. At shutdown, what it holds and
/// runs no node for (claimed and never started, or waiting for a slot to run its next node)
/// is released at once, like the execution it was running: no lease left for another worker
/// to wait out.
pub async fn executions_claimed_ahead_are_released_at_shutdown(store: impl Store + Clone) {
    workflow("quick").save(&store, &nodes::registry()).await;
    workflow("slow")
        .node("ready", "echo", Value::Null)
        .node("long", "sleep", json!({"ms": 20_000}))
        .edge("start", "ready")
        .edge("ready", "long")
        .save(&store, &nodes::registry())
        .await;
    let mut quick = Vec::new();
    for _ in 0..200 {
        quick.push(start(&store, "quick", json!({})).await);
    }
    let mut slow = Vec::new();
    for _ in 0..20 {
        slow.push(start(&store, "slow", json!({})).await);
    }
    // One slot: the quick executions teach the worker that a slot turns over much faster
    // than a claim takes, so it queues; a slow one then holds the slot in `long`.
    let first = worker(store.clone())
        .worker_id("first")
        .concurrency(1)
        .claim_ahead(50)
        .shutdown_grace(Duration::from_millis(300));
    let stop = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn(first.run_until(stop.clone().cancelled_owned()));
    // Until a slow execution ran `ready` (so one is in `long` or about to be, holding the one
    // slot) and another is held beside it, queued or waiting for the slot.
    let started = tokio::time::Instant::now();
    loop {
        let (mut ready, mut claimed) = (0, 0);
        for &id in &slow {
            let detail = store.get_execution(id).await.unwrap();
            if detail.execution.started_at.is_some() {
                claimed += 1;
            }
            if !detail.node_runs.is_empty() {
                ready += 1;
            }
        }
        if ready > 0 && claimed > 1 {
            break;
        }
        assert!(
            started.elapsed() < WAIT,
            "no slow execution held beside a running one ({ready} ran `ready`, {claimed} claimed)"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.cancel();
    running.await.unwrap().unwrap();

    // A claim's rows come back in no particular order, so the last quick ones may have been
    // queued behind a slow one: completed, or released with the rest.
    for &id in &quick {
        let execution = store.get_execution(id).await.unwrap().execution;
        assert!(
            execution.status == ExecutionStatus::Completed
                || (execution.status == ExecutionStatus::Running
                    && execution.lease_owner.is_none()),
            "{execution:?}"
        );
    }
    let (mut held, mut ran_long) = (0, 0);
    for &id in &slow {
        let execution = store.get_execution(id).await.unwrap();
        assert_eq!(
            execution.execution.lease_owner, None,
            "{id} is still leased after shutdown"
        );
        if execution.node_runs.iter().any(|run| run.node_id == "long") {
            ran_long += 1;
        } else if execution.execution.started_at.is_some() {
            held += 1;
        }
    }
    assert!(ran_long <= 1, "{ran_long} ran `long` in one slot");
    assert!(
        held > 0,
        "no slow execution was held without running `long`"
    );
    // Any worker takes them (or a quick one released with them) at once.
    let taken = claim_one(&store, "second", LEASE).await;
    assert!(
        slow.contains(&taken.execution.id) || quick.contains(&taken.execution.id),
        "{:?}",
        taken.execution
    );
}
