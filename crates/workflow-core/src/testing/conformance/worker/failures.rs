//! Failures: fatal and retryable errors, exhausted retries, and poison executions that kill their
//! workers.

use std::time::Duration;

use serde_json::{Value, json};

use crate::testing::TestStore;
use crate::testing::conformance::{LEASE, WAIT, claim_one, start, worker};
use crate::testing::fixture::{self, run_until_terminal, workflow};
use crate::testing::nodes;
use crate::{ExecutionStatus, NodeRunStatus, OnFailure, RetryPolicy, Store};

/// A code node that exits non-zero, one that times out, a fatal error and a panic each fail
/// their execution with a clear error, and the worker completes the next execution.
pub async fn failing_nodes_fail_their_execution_and_the_worker_goes_on(store: impl Store + Clone) {
    let registry = nodes::registry();
    workflow("exits")
        .node(
            "run",
            "code",
            json!({"language": "shell", "code": "echo 'disk full' >&2; exit 3"}),
        )
        .edge("start", "run")
        .save(&store, &registry)
        .await;
    workflow("hangs")
        .node(
            "run",
            "code",
            json!({"language": "shell", "code": "sleep 30"}),
        )
        .timeout(Duration::from_millis(500))
        .edge("start", "run")
        .save(&store, &registry)
        .await;
    workflow("fatal")
        .node("run", "fatal", Value::Null)
        .edge("start", "run")
        .save(&store, &registry)
        .await;
    workflow("panics")
        .node("run", "panic", json!({"message": "node bug"}))
        .edge("start", "run")
        .save(&store, &registry)
        .await;
    fixture::hello().save(&store, &registry).await;

    let mut ids = Vec::new();
    for name in ["exits", "hangs", "fatal", "panics"] {
        ids.push(start(&store, name, json!({})).await);
    }
    let started = tokio::time::Instant::now();
    let failed = run_until_terminal(worker(store.clone()), &store, &ids, WAIT).await;
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the timed-out node was not stopped"
    );
    let errors: Vec<(ExecutionStatus, Option<&str>)> = failed
        .iter()
        .map(|d| (d.execution.status, d.execution.error.as_deref()))
        .collect();
    assert_eq!(
        errors,
        vec![
            (
                ExecutionStatus::Failed,
                Some("node \"run\" failed: sh failed with exit status 3: disk full")
            ),
            (
                ExecutionStatus::Failed,
                Some("node \"run\" failed: timed out after 500ms")
            ),
            (
                ExecutionStatus::Failed,
                Some("node \"run\" failed: bad input, will never work")
            ),
            (
                ExecutionStatus::Failed,
                Some("node \"run\" failed: node panicked: node bug")
            ),
        ]
    );
    let statuses: Vec<NodeRunStatus> = failed.iter().map(|d| d.node_runs[1].status).collect();
    assert_eq!(
        statuses,
        vec![
            NodeRunStatus::Failed,
            NodeRunStatus::TimedOut,
            NodeRunStatus::Failed,
            NodeRunStatus::Failed
        ]
    );

    // The same worker setup goes on to complete the next execution.
    let next = start(&store, "hello", json!({})).await;
    let next = run_until_terminal(worker(store.clone()), &store, &[next], WAIT)
        .await
        .remove(0);
    assert_eq!(next.execution.status, ExecutionStatus::Completed);
}

/// A node failing twice then succeeding completes on attempt 3, each attempt after its
/// backoff, with all three attempts in the history.
pub async fn retryable_failure_is_retried_after_its_backoff(store: impl Store + Clone) {
    let backoff = Duration::from_millis(300);
    workflow("flaky")
        .node("run", "flaky", json!({"fail_times": 2}))
        .retry(RetryPolicy {
            max_attempts: 3,
            initial_backoff: backoff,
            multiplier: 1.0,
            max_backoff: backoff,
            jitter: 0.0,
            on_failure: OnFailure::Fail,
        })
        .edge("start", "run")
        .save(&store, &nodes::registry())
        .await;
    let id = start(&store, "flaky", json!({})).await;
    let detail = run_until_terminal(worker(store.clone()), &store, &[id], WAIT)
        .await
        .remove(0);
    assert_eq!(
        detail.execution.status,
        ExecutionStatus::Completed,
        "{detail:?}"
    );
    let attempts: Vec<(i32, NodeRunStatus)> = detail
        .node_runs
        .iter()
        .filter(|r| r.node_id == "run")
        .map(|r| (r.attempt, r.status))
        .collect();
    assert_eq!(
        attempts,
        vec![
            (1, NodeRunStatus::Failed),
            (2, NodeRunStatus::Failed),
            (3, NodeRunStatus::Completed)
        ]
    );
    let runs: Vec<_> = detail
        .node_runs
        .iter()
        .filter(|r| r.node_id == "run")
        .collect();
    for pair in runs.windows(2) {
        let gap = (pair[1].started_at - pair[0].finished_at)
            .to_std()
            .unwrap_or_default();
        assert!(
            gap >= backoff - Duration::from_millis(50),
            "retried after only {gap:?}"
        );
    }
    assert_eq!(detail.execution.output, Some(json!({"attempt": 3})));
}

/// The last allowed attempt failing fails the execution with that attempt's error.
pub async fn exhausted_retries_fail_with_the_last_error(store: impl Store + Clone) {
    workflow("doomed")
        .node("run", "flaky", json!({}))
        .retry(RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(100),
            multiplier: 2.0,
            max_backoff: Duration::from_secs(1),
            jitter: 0.5,
            on_failure: OnFailure::Fail,
        })
        .edge("start", "run")
        .save(&store, &nodes::registry())
        .await;
    let id = start(&store, "doomed", json!({})).await;
    let detail = run_until_terminal(worker(store.clone()), &store, &[id], WAIT)
        .await
        .remove(0);
    assert_eq!(detail.execution.status, ExecutionStatus::Failed);
    assert_eq!(
        detail.execution.error.as_deref(),
        Some("node \"run\" failed after 3 attempts: flaky failure on attempt 3")
    );
    assert_eq!(
        detail
            .node_runs
            .iter()
            .filter(|r| r.node_id == "run")
            .count(),
        3
    );
}

/// An execution whose workers keep dying while running it is failed once it has been
/// rescued `max_rescues` times in a row, with the abandoned attempts in its history.
pub async fn poison_execution_is_failed_after_max_rescues(store: impl TestStore) {
    fixture::hello().save(&store, &nodes::registry()).await;
    let id = start(&store, "hello", json!({})).await;
    // Four claims whose workers "die": they never write, and their leases expire. The first
    // two make it a suspect; the next two died while it ran alone.
    for _ in 0..4 {
        claim_one(&store, "doomed-worker", LEASE).await;
        store.expire_lease(id).await;
    }
    let claimed = worker(store.clone())
        .max_rescues(2)
        .run_once()
        .await
        .unwrap();
    assert_eq!(claimed, 1);

    let detail = store.get_execution(id).await.unwrap();
    assert_eq!(detail.execution.status, ExecutionStatus::Failed);
    let error = detail.execution.error.unwrap_or_default();
    assert!(
        error.starts_with(
            "quarantined: its worker died (lease expired) 4 times in a row while running it, \
             2 of them while it ran alone"
        ),
        "{error}"
    );
    assert!(error.contains("nodes: start"), "{error}");
    let runs: Vec<(&str, NodeRunStatus)> = detail
        .node_runs
        .iter()
        .map(|r| (r.node_id.as_str(), r.status))
        .collect();
    assert_eq!(runs, vec![("start", NodeRunStatus::Abandoned)]);
}

/// Deaths of workers that ran an execution among others never count toward quarantine: an
/// execution whose workers died for reasons of their own completes, however unlucky.
pub async fn deaths_in_company_do_not_quarantine(store: impl TestStore) {
    fixture::hello().save(&store, &nodes::registry()).await;
    let id = start(&store, "hello", json!({})).await;
    // Two deaths in company make it a suspect; one more while alone is below max_rescues.
    for _ in 0..3 {
        claim_one(&store, "unlucky-worker", LEASE).await;
        store.expire_lease(id).await;
    }
    let detail = run_until_terminal(worker(store.clone()).max_rescues(2), &store, &[id], WAIT)
        .await
        .remove(0);
    assert_eq!(
        detail.execution.status,
        ExecutionStatus::Completed,
        "{:?}",
        detail.execution.error
    );
}

/// A node whose output is over the worker's node output limit fails for good, whatever its
/// retry policy, with an error naming the limit; a smaller output completes.
pub async fn an_output_over_the_node_output_limit_fails_its_node_at_once(
    store: impl Store + Clone,
) {
    let registry = nodes::registry();
    for (name, bytes) in [("big", 5000), ("small", 1000)] {
        workflow(name)
            .node(
                "print",
                "code",
                json!({"language": "shell", "code": format!("head -c {bytes} /dev/zero | tr '\\0' x")}),
            )
            .retry(RetryPolicy {
                max_attempts: 3,
                initial_backoff: Duration::from_millis(10),
                ..RetryPolicy::NONE
            })
            .edge("start", "print")
            .save(&store, &registry)
            .await;
    }
    let over = start(&store, "big", json!({})).await;
    let under = start(&store, "small", json!({})).await;
    let ended = run_until_terminal(
        worker(store.clone()).node_output_limit(4096),
        &store,
        &[over, under],
        WAIT,
    )
    .await;
    let failed = &ended[0];
    assert_eq!(failed.execution.status, ExecutionStatus::Failed);
    let error = failed.execution.error.as_deref().unwrap_or_default();
    assert!(
        error.contains("larger than the node output limit of 4096 bytes"),
        "{error}"
    );
    let runs: Vec<_> = failed
        .node_runs
        .iter()
        .filter(|r| r.node_id == "print")
        .collect();
    assert_eq!(runs.len(), 1, "no retry: {runs:?}");
    assert_eq!(runs[0].status, NodeRunStatus::Failed);
    assert_eq!(runs[0].output, None);
    assert_eq!(ended[1].execution.status, ExecutionStatus::Completed);
}
