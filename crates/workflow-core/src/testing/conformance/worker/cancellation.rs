//! Cancellation and deadlines, on a live worker and on one that died.

use std::time::Duration;

use serde_json::json;

use crate::store::Advance;
use crate::testing::conformance::{
    LEASE, RecordOne, WAIT, WORKER, claim_one, record, start, worker,
};
use crate::testing::fixture::{self, run_until_terminal, workflow};
use crate::testing::nodes;
use crate::testing::{pid_written_to, process_running};
use crate::{ExecutionId, ExecutionStatus, NodeRunStatus, StartExecutionParams, Store, StoreError};

/// Pending and retrying executions are cancelled at once with the reason as their error; an
/// ended execution cannot be cancelled, and an unknown one is not found.
pub async fn cancelling_ends_an_execution_at_once_and_only_once(store: impl Store + Clone) {
    fixture::hello().save(&store, &nodes::registry()).await;
    let pending = start(&store, "hello", json!({})).await;
    let retrying = start(&store, "hello", json!({})).await;
    // Park the second for a retry far in the future.
    let mut claimed = claim_one(&store, WORKER, LEASE).await;
    if claimed.execution.id != retrying {
        store
            .record_step(record(&claimed, vec![], Advance::Release))
            .await
            .unwrap();
        claimed = claim_one(&store, WORKER, LEASE).await;
    }
    store
        .record_step(record(
            &claimed,
            vec![],
            Advance::Retry {
                delay: Duration::from_secs(3600),
            },
        ))
        .await
        .unwrap();
    let (cancel_first, cancel_second) = if claimed.execution.id == retrying {
        (pending, retrying)
    } else {
        (retrying, pending)
    };
    for id in [cancel_first, cancel_second] {
        let cancelled = store
            .cancel_execution(id, "no longer needed")
            .await
            .unwrap();
        assert_eq!(cancelled.status, ExecutionStatus::Cancelled);
        assert_eq!(cancelled.error.as_deref(), Some("no longer needed"));
        assert!(cancelled.finished_at.is_some());
        assert_eq!(cancelled.lease_owner, None);
    }
    let again = store.cancel_execution(pending, "twice").await.unwrap_err();
    assert_eq!(
        again.to_string(),
        format!("execution {pending} already ended (cancelled)")
    );
    assert!(matches!(
        again,
        StoreError::AlreadyEnded { execution_id, status: ExecutionStatus::Cancelled }
            if execution_id == pending
    ));
    assert_eq!(
        store
            .get_execution(pending)
            .await
            .unwrap()
            .execution
            .error
            .as_deref(),
        Some("no longer needed"),
        "a second cancel changed nothing"
    );
    let unknown = ExecutionId::new();
    let err = store.cancel_execution(unknown, "x").await.unwrap_err();
    assert_eq!(err.to_string(), format!("execution {unknown} not found"));
    // The worker has nothing left to claim.
    assert_eq!(worker(store.clone()).run_once().await.unwrap(), 0);
}

/// Cancelling an execution whose code node is running stops the node and kills its process;
/// the execution stays cancelled.
pub async fn cancelling_a_running_code_node_kills_its_process(store: impl Store + Clone) {
    cancel_a_running_code_node(store, Duration::from_millis(200)).await;
}

/// A cancel reaches the worker running the execution at once (PostgreSQL NOTIFY, or the
/// SQLite store's in-process hint): its node's process is killed within seconds although the
/// worker's heartbeat, the fallback, is ten minutes away. A store that sends no hints (behind
/// a transaction pooler) relies on the heartbeat, so there the heartbeat is short.
pub async fn a_cancel_stops_the_running_node_at_once_without_waiting_for_the_heartbeat(
    store: impl Store + Clone,
) {
    let hints = store.wakeups().await.expect("wake-ups").is_some();
    let heartbeat = if hints {
        Duration::from_secs(600)
    } else {
        Duration::from_millis(200)
    };
    cancel_a_running_code_node(store, heartbeat).await;
}

/// Starts a code node that runs for a minute under a worker with `heartbeat`, cancels its
/// execution, and checks that the node's process is gone within 10 s and nothing was
/// recorded after the cancel.
async fn cancel_a_running_code_node(store: impl Store + Clone, heartbeat: Duration) {
    let dir = std::env::temp_dir().join(format!("wfw-cancel-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let pid_file = dir.join("pid");
    workflow("long_code")
        .node(
            "run",
            "code",
            json!({"language": "shell",
                   "code": format!("echo $$ > {}; exec sleep 60", pid_file.display())}),
        )
        .timeout(Duration::from_secs(120))
        .edge("start", "run")
        .save(&store, &nodes::registry())
        .await;
    let id = start(&store, "long_code", json!({})).await;
    let stop = tokio_util::sync::CancellationToken::new();
    let running = worker(store.clone())
        .lease_duration(heartbeat.max(Duration::from_millis(200)) * 25)
        .heartbeat_interval(heartbeat);
    let running = tokio::spawn(running.run_until(stop.clone().cancelled_owned()));

    let pid = pid_written_to(&pid_file, WAIT).await;
    assert!(process_running(pid), "the node's process is running");
    store
        .cancel_execution(id, "cancelled by test")
        .await
        .unwrap();

    let cancelled_at = tokio::time::Instant::now();
    while process_running(pid) {
        assert!(
            cancelled_at.elapsed() < Duration::from_secs(10),
            "the node's process {pid} outlived the cancellation"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.cancel();
    running.await.unwrap().unwrap();
    let detail = store.get_execution(id).await.unwrap();
    assert_eq!(detail.execution.status, ExecutionStatus::Cancelled);
    assert_eq!(detail.execution.error.as_deref(), Some("cancelled by test"));
    assert!(
        detail.node_runs.iter().all(|r| r.node_id != "run"),
        "nothing was written after the cancel"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// An execution whose deadline (the workflow's timeout) passes while its node runs ends
/// `timed_out` at the deadline, not when the node would have finished.
pub async fn an_execution_past_its_deadline_times_out_while_running(store: impl Store + Clone) {
    workflow("too_slow")
        .execution_timeout(Duration::from_secs(2))
        .node("slow", "sleep", json!({"ms": 10_000}))
        .edge("start", "slow")
        .save(&store, &nodes::registry())
        .await;
    let id = start(&store, "too_slow", json!({})).await;
    let execution = store.get_execution(id).await.unwrap().execution;
    let deadline = execution
        .deadline
        .expect("the workflow's timeout set a deadline");
    assert_eq!((deadline - execution.created_at).num_milliseconds(), 2000);

    let poll = Duration::from_millis(200);
    let started = tokio::time::Instant::now();
    let detail = run_until_terminal(
        worker(store.clone()).poll_interval(poll),
        &store,
        &[id],
        WAIT,
    )
    .await
    .remove(0);
    let took = started.elapsed();
    assert_eq!(detail.execution.status, ExecutionStatus::TimedOut);
    // Well before the node's 10 s, with room for a busy machine (a 1.5 s margin was missed
    // beside two CPU burners).
    assert!(
        took < Duration::from_secs(2) + poll + Duration::from_secs(5),
        "timed out only after {took:?}"
    );
    assert!(
        took >= Duration::from_millis(1900),
        "timed out early, after {took:?}"
    );
    // The holder records the stopped node as timed out, unless a deadline sweep (its own or
    // another worker's) ended the execution first; then the node was stopped through the lost
    // lease and has no row. Either way it never completed.
    let slow: Vec<NodeRunStatus> = detail
        .node_runs
        .iter()
        .filter(|r| r.node_id == "slow")
        .map(|r| r.status)
        .collect();
    assert!(
        slow.is_empty() || slow == [NodeRunStatus::TimedOut],
        "the slow node: {slow:?}"
    );
}

/// A running execution whose worker died is timed out at its deadline by another worker,
/// without waiting for the dead worker's lease to expire.
pub async fn a_deadline_is_enforced_when_the_worker_holding_it_died(store: impl Store + Clone) {
    fixture::hello().save(&store, &nodes::registry()).await;
    let mut params = StartExecutionParams::new("hello", json!({}));
    params.timeout = Some(Duration::from_secs(1));
    let id = store.start_execution(params).await.unwrap().execution.id;
    // A worker claims it with a long lease and dies.
    claim_one(&store, "dead-worker", Duration::from_secs(600)).await;

    let poll = Duration::from_millis(200);
    let started = tokio::time::Instant::now();
    let detail = run_until_terminal(
        worker(store.clone()).poll_interval(poll),
        &store,
        &[id],
        WAIT,
    )
    .await
    .remove(0);
    let took = started.elapsed();
    assert_eq!(detail.execution.status, ExecutionStatus::TimedOut);
    assert!(
        detail
            .execution
            .error
            .as_deref()
            .is_some_and(|e| e.starts_with("deadline passed at ")),
        "{:?}",
        detail.execution.error
    );
    assert!(
        took < Duration::from_secs(1) + Duration::from_secs(1) + poll + Duration::from_millis(1500),
        "timed out only after {took:?}"
    );
}
