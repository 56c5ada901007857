//! Pausing: a running execution pauses at its next step and resumes where it stopped; a node
//! that fails for good under a policy that pauses pauses its execution, and resuming it runs
//! that node again from attempt 1.

use std::time::Duration;

use serde_json::{Value, json};

use crate::testing::TestStore;
use crate::testing::conformance::{LEASE, WAIT, WORKER, claim_one, start, worker};
use crate::testing::fixture::{wait_until_terminal, workflow};
use crate::testing::nodes::{self, Count, Gate, Switch};
use crate::{
    Client, ExecutionDetail, ExecutionId, ExecutionStatus, NodeRunStatus, OnFailure, RetryPolicy,
    Store, WorkflowWorker,
};

/// Polls until execution `id` is in `status`, or panics after `within`.
async fn wait_for_status(
    store: &impl Store,
    id: ExecutionId,
    status: ExecutionStatus,
    within: Duration,
) -> ExecutionDetail {
    let started = tokio::time::Instant::now();
    loop {
        let detail = store.get_execution(id).await.expect("get execution");
        if detail.execution.status == status {
            return detail;
        }
        assert!(
            started.elapsed() < within,
            "execution {id} is still {} after {within:?}, not {status}",
            detail.execution.status
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Runs `worker` in the background until the returned stop is called.
fn spawn(worker: WorkflowWorker) -> impl AsyncFnOnce() {
    let stop = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn(worker.run_until(stop.clone().cancelled_owned()));
    async move || {
        stop.cancel();
        running.await.expect("worker task").expect("worker run");
    }
}

/// A pause asked while a node runs lets that node finish and record its result, and starts
/// nothing after it: the execution is paused, unleased, with the next node not run. Resumed,
/// it runs on from there: the finished node does not run again.
pub async fn a_running_execution_pauses_at_its_next_step_and_resumes_where_it_stopped(
    store: impl Store + Clone,
) {
    let (gate, after) = (Gate::default(), Count::default());
    let registry = nodes::registry()
        .with("gate", gate.clone())
        .with("after", after.clone());
    workflow("pausable")
        .node("a", "gate", Value::Null)
        .node("b", "after", Value::Null)
        .edge("start", "a")
        .edge("a", "b")
        .save(&store, &registry)
        .await;
    let client = Client::with_registry(store.clone(), registry.clone());
    let id = start(&store, "pausable", json!({})).await;
    let stop = spawn(worker(store.clone()).nodes(registry));

    gate.started(1, WAIT).await;
    let asked = client.pause(id).await.expect("pause");
    assert_eq!(
        asked.status,
        ExecutionStatus::Running,
        "it pauses at its next step"
    );
    assert!(asked.pause_requested_at.is_some());
    gate.open();
    let paused = wait_for_status(&store, id, ExecutionStatus::Paused, WAIT).await;
    let ran: Vec<(&str, NodeRunStatus)> = paused
        .node_runs
        .iter()
        .map(|r| (r.node_id.as_str(), r.status))
        .collect();
    assert_eq!(
        ran,
        vec![
            ("start", NodeRunStatus::Completed),
            ("a", NodeRunStatus::Completed)
        ],
        "the running node finished and nothing started after it"
    );
    assert_eq!(after.runs().get(&id), None);
    assert_eq!(paused.execution.lease_owner, None);
    assert_eq!(paused.execution.error, None);

    let resumed = client.resume(id, "operator ada").await.expect("resume");
    assert_eq!(resumed.status, ExecutionStatus::Pending);
    let done = wait_until_terminal(&store, &[id], WAIT).await.remove(0);
    stop().await;
    assert_eq!(done.execution.status, ExecutionStatus::Completed);
    assert_eq!(after.runs().get(&id), Some(&1));
    assert_eq!(gate.starts(), 1, "the finished node did not run again");
    assert!(done.retries.is_empty(), "a plain resume is no retry");
}

/// With `"on_failure": "pause"`, a node whose retries ran out pauses its execution with the
/// error instead of failing it; no worker claims it meanwhile. Once the cause is fixed, a
/// resume runs that node again from attempt 1 (recorded as a retry from `paused`, with who
/// asked), the earlier attempts kept and superseded, and the nodes before it not run again.
pub async fn a_node_that_fails_for_good_pauses_its_execution_and_a_resume_reruns_it(
    store: impl Store + Clone,
) {
    let (before, switch) = (Count::default(), Switch::default());
    let registry = nodes::registry()
        .with("before", before.clone())
        .with("switch", switch.clone());
    let backoff = Duration::from_millis(50);
    workflow("held")
        .node("a", "before", Value::Null)
        .node("b", "switch", json!({"retryable": true}))
        .retry(RetryPolicy {
            max_attempts: 2,
            initial_backoff: backoff,
            multiplier: 1.0,
            max_backoff: backoff,
            jitter: 0.0,
            on_failure: OnFailure::Pause,
        })
        .edge("start", "a")
        .edge("a", "b")
        .save(&store, &registry)
        .await;
    let client = Client::with_registry(store.clone(), registry.clone());
    let id = start(&store, "held", json!({})).await;
    let stop = spawn(worker(store.clone()).nodes(registry));

    let paused = wait_for_status(&store, id, ExecutionStatus::Paused, WAIT).await;
    assert_eq!(
        paused.execution.error.as_deref(),
        Some("node \"b\" failed after 2 attempts: broken until an operator fixes it")
    );
    assert_eq!(paused.execution.finished_at, None);
    let attempts = |detail: &ExecutionDetail| -> Vec<(i32, NodeRunStatus, bool)> {
        detail
            .node_runs
            .iter()
            .filter(|r| r.node_id == "b")
            .map(|r| (r.attempt, r.status, r.superseded_by.is_some()))
            .collect()
    };
    assert_eq!(
        attempts(&paused),
        vec![
            (1, NodeRunStatus::Failed, false),
            (2, NodeRunStatus::Failed, false)
        ]
    );

    switch.set_fixed(true);
    let resumed = client.resume(id, "operator ada").await.expect("resume");
    assert_eq!(resumed.status, ExecutionStatus::Pending);
    assert_eq!(resumed.error, None);
    let done = wait_until_terminal(&store, &[id], WAIT).await.remove(0);
    stop().await;
    assert_eq!(done.execution.status, ExecutionStatus::Completed);
    assert_eq!(
        attempts(&done),
        vec![
            (1, NodeRunStatus::Failed, true),
            (2, NodeRunStatus::Failed, true),
            (1, NodeRunStatus::Completed, false)
        ]
    );
    assert_eq!(before.runs().get(&id), Some(&1), "a kept its result");
    assert_eq!(done.retries.len(), 1);
    let retry = &done.retries[0];
    assert_eq!(
        (retry.requested_by.as_str(), retry.from_status),
        ("operator ada", ExecutionStatus::Paused)
    );
}

/// A pause asked of an execution whose worker then died is honoured by the worker that
/// rescues it: it records the node that was due as abandoned and pauses without running it.
/// Resumed, the execution completes with that node run once.
pub async fn a_pause_asked_before_its_worker_died_is_honoured_by_the_rescuer(
    store: impl TestStore,
) {
    let count = Count::default();
    let registry = nodes::registry().with("count", count.clone());
    workflow("orphan")
        .node("a", "count", Value::Null)
        .edge("start", "a")
        .save(&store, &registry)
        .await;
    let client = Client::with_registry(store.clone(), registry.clone());
    let id = start(&store, "orphan", json!({})).await;
    claim_one(&store, WORKER, LEASE).await;
    client.pause(id).await.expect("pause");
    store.expire_lease(id).await;
    let stop = spawn(worker(store.clone()).nodes(registry));

    let paused = wait_for_status(&store, id, ExecutionStatus::Paused, WAIT).await;
    let ran: Vec<(&str, NodeRunStatus)> = paused
        .node_runs
        .iter()
        .map(|r| (r.node_id.as_str(), r.status))
        .collect();
    assert_eq!(ran, vec![("start", NodeRunStatus::Abandoned)]);
    assert_eq!(count.runs().get(&id), None);

    client.resume(id, "operator ada").await.expect("resume");
    let done = wait_until_terminal(&store, &[id], WAIT).await.remove(0);
    stop().await;
    assert_eq!(done.execution.status, ExecutionStatus::Completed);
    assert_eq!(count.runs().get(&id), Some(&1));
}
