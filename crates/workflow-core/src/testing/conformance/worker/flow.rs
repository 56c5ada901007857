//! Rate limits in a running worker: a node that would exceed its limit waits without holding
//! a slot and starts once the window moves; a key missing from the input fails the node.

use std::time::Duration;

use serde_json::{Value, json};

use crate::testing::conformance::{WAIT, start, wait_until_waiting, worker};
use crate::testing::fixture::{wait_until_terminal, workflow};
use crate::testing::nodes;
use crate::{ExecutionStatus, Store};

/// With one slot and a limit of one start per second, the second execution's node waits for
/// the window parked (status `waiting`, no lease), and another workflow's execution started
/// meanwhile completes in the slot it left; the waiting node then starts a period after the
/// first.
pub async fn a_rate_limited_node_waits_without_a_slot_and_starts_when_the_window_moves(
    store: impl Store + Clone,
) {
    let period = Duration::from_secs(2);
    workflow("call")
        .rate_limit("api", (1, period), None, &["echo"])
        .node("call", "echo", Value::Null)
        .edge("start", "call")
        .save(&store, &nodes::registry())
        .await;
    workflow("other")
        .node("work", "sleep", json!({"ms": 1}))
        .edge("start", "work")
        .save(&store, &nodes::registry())
        .await;
    let first = start(&store, "call", json!({})).await;
    let second = start(&store, "call", json!({})).await;

    let stop = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn(
        worker(store.clone())
            .concurrency(1)
            .run_until(stop.clone().cancelled_owned()),
    );
    wait_until_terminal(&store, &[first], WAIT).await;
    wait_until_waiting(&store, &[second]).await;
    let parked = store.get_execution(second).await.unwrap().execution;
    assert_eq!(parked.lease_owner, None, "it waits holding no lease");
    assert!(parked.run_at.is_some(), "it waits for a time");
    let other = start(&store, "other", json!({})).await;
    let details = wait_until_terminal(&store, &[first, second, other], WAIT).await;
    stop.cancel();
    running.await.unwrap().unwrap();

    let call_started = |i: usize| {
        let detail = &details[i];
        assert_eq!(detail.execution.status, ExecutionStatus::Completed);
        let runs: Vec<_> = detail
            .node_runs
            .iter()
            .filter(|r| r.node_id == "call")
            .collect();
        assert_eq!(runs.len(), 1, "the waiting node has one run: {runs:?}");
        runs[0].started_at
    };
    // The limit spaces the takes of the window, which the store makes in its own time: the
    // first after its execution was claimed (the claim's `started_at`), the second before its
    // node started. A node run's recorded start can come a few milliseconds late (it is the
    // write's time less the run's age), so the first run's start is no bound under load. The
    // store's clocks count milliseconds: one of rounding.
    let first_claimed = details[0].execution.started_at.expect("claimed");
    let (_, second_at) = (call_started(0), call_started(1));
    let spaced = chrono::Duration::from_std(period - Duration::from_millis(1)).unwrap();
    assert!(
        second_at - first_claimed >= spaced,
        "the second start came {:?} after the first execution was claimed (limit: 1 per \
         {period:?})",
        second_at - first_claimed
    );
    let other = &details[2].execution;
    assert_eq!(other.status, ExecutionStatus::Completed);
    assert!(
        other.finished_at.unwrap() < second_at,
        "the other execution ran in the slot the waiting one left"
    );
}

/// A rate limit keyed by a path the input lacks fails the node, naming the limit and the
/// path, and the worker goes on with the executions that have it.
pub async fn a_rate_limit_key_missing_from_the_input_fails_the_node(store: impl Store + Clone) {
    workflow("call")
        .rate_limit(
            "per_customer",
            (5, Duration::from_secs(60)),
            Some("customer.id"),
            &[],
        )
        .node("call", "echo", Value::Null)
        .under_rate_limit("per_customer")
        .edge("start", "call")
        .save(&store, &nodes::registry())
        .await;
    let missing = start(&store, "call", json!({"customer": {}})).await;
    let keyed = start(&store, "call", json!({"customer": {"id": 7}})).await;
    let stop = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn(worker(store.clone()).run_until(stop.clone().cancelled_owned()));
    let details = wait_until_terminal(&store, &[missing, keyed], WAIT).await;
    stop.cancel();
    running.await.unwrap().unwrap();
    assert_eq!(details[0].execution.status, ExecutionStatus::Failed);
    let error = details[0].execution.error.as_deref().unwrap();
    assert!(
        error.contains("rate limit \"per_customer\"")
            && error.contains("key path \"customer.id\" is not in the execution input"),
        "{error}"
    );
    assert_eq!(details[1].execution.status, ExecutionStatus::Completed);
}
