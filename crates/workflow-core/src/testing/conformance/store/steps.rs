//! Steps: `record_steps`, fenced by the lease token, step by step within a batch, with each
//! advance.

use std::time::Duration;

use serde_json::json;

use crate::store::{Advance, ClaimedExecution, NewNodeRun};
use crate::testing::TestStore;
use crate::testing::conformance::{
    LEASE, RecordOne, WORKER, claim_one, claim_params, completed_run, keep_running, record, start,
};
use crate::testing::fixture;
use crate::testing::nodes;
use crate::{ExecutionStatus, LeaseToken, NodeRunStatus, Store, StoreError};

/// A write carrying a superseded lease token changes nothing and says the lease was lost.
pub async fn stale_lease_token_cannot_record_a_step(store: impl TestStore) {
    fixture::hello().save(&store, &nodes::registry()).await;
    let id = start(&store, "hello", json!({})).await;
    let stale = claim_one(&store, WORKER, LEASE).await;
    store.expire_lease(id).await;
    let current = claim_one(&store, "worker-b", LEASE).await;

    let finish = Advance::Finish {
        status: ExecutionStatus::Completed,
        output: Some(json!("stale")),
        error: None,
    };
    let err = store
        .record_step(record(&stale, vec![completed_run("start", 1)], finish))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::LeaseLost { execution_id, lease_token: LeaseToken(1) } if execution_id == id),
        "{err:?}"
    );
    let detail = store.get_execution(id).await.unwrap();
    assert!(
        detail.node_runs.is_empty(),
        "the stale write recorded a node run"
    );
    assert_eq!(detail.execution.status, ExecutionStatus::Running);
    assert_eq!(detail.execution.lease_owner.as_deref(), Some("worker-b"));

    store
        .record_step(record(
            &current,
            vec![completed_run("start", 1)],
            keep_running(),
        ))
        .await
        .expect("the current owner can write");
    assert_eq!(store.get_execution(id).await.unwrap().node_runs.len(), 1);
}

/// One (execution, node, attempt) is recorded at most once; a second record writes nothing.
pub async fn recording_the_same_attempt_twice_is_already_recorded(store: impl Store) {
    fixture::hello().save(&store, &nodes::registry()).await;
    let id = start(&store, "hello", json!({})).await;
    let claimed = claim_one(&store, WORKER, LEASE).await;
    store
        .record_step(record(
            &claimed,
            vec![completed_run("start", 1)],
            keep_running(),
        ))
        .await
        .unwrap();
    let finish = Advance::Finish {
        status: ExecutionStatus::Completed,
        output: None,
        error: None,
    };
    let err = store
        .record_step(record(&claimed, vec![completed_run("start", 1)], finish))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::AlreadyRecorded { execution_id } if execution_id == id),
        "{err:?}"
    );
    let detail = store.get_execution(id).await.unwrap();
    assert_eq!(detail.node_runs.len(), 1);
    assert_eq!(
        detail.execution.status,
        ExecutionStatus::Running,
        "the failed step must not finish the execution"
    );
}

/// A node consumes a signal with its step; a second step consuming it again writes nothing
/// and names the signal, and the first consumption stands.
pub async fn a_consumed_signal_cannot_be_consumed_again(store: impl Store) {
    fixture::hello().save(&store, &nodes::registry()).await;
    let id = start(&store, "hello", json!({})).await;
    let signal = store
        .send_signal(crate::SendSignalParams {
            execution_id: id,
            name: "go".into(),
            payload: json!({"ok": true}),
            idempotency_key: None,
        })
        .await
        .unwrap();
    let claimed = claim_one(&store, WORKER, LEASE).await;
    let mut consuming = completed_run("start", 1);
    consuming.consumed_signal = Some(signal.id);
    store
        .record_step(record(&claimed, vec![consuming], keep_running()))
        .await
        .unwrap();
    let mut again = completed_run("say_hello", 1);
    again.consumed_signal = Some(signal.id);
    let err = store
        .record_step(record(&claimed, vec![again], keep_running()))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::SignalConsumed { execution_id, signal_id }
            if execution_id == id && signal_id == signal.id),
        "{err:?}"
    );
    let detail = store.get_execution(id).await.unwrap();
    let runs: Vec<&str> = detail
        .node_runs
        .iter()
        .map(|r| r.node_id.as_str())
        .collect();
    assert_eq!(runs, ["start"], "the refused step recorded nothing");
    assert_eq!(detail.signals.len(), 1);
    assert_eq!(detail.signals[0].consumed_by_node.as_deref(), Some("start"));
}

/// Two steps of one execution in one batch apply one after the other, as if sent apart.
pub async fn steps_of_one_execution_in_one_batch_apply_in_order(store: impl Store) {
    fixture::hello().save(&store, &nodes::registry()).await;
    let id = start(&store, "hello", json!({})).await;
    let claimed = claim_one(&store, WORKER, LEASE).await;
    let steps = [
        record(&claimed, vec![completed_run("start", 1)], keep_running()),
        record(
            &claimed,
            vec![completed_run("say_hello", 1)],
            Advance::Finish {
                status: ExecutionStatus::Completed,
                output: Some(json!({"done": true})),
                error: None,
            },
        ),
    ];
    let results = store.record_steps(&steps).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let detail = store.get_execution(id).await.unwrap();
    assert_eq!(detail.execution.status, ExecutionStatus::Completed);
    let runs: Vec<&str> = detail
        .node_runs
        .iter()
        .map(|r| r.node_id.as_str())
        .collect();
    assert_eq!(runs, ["start", "say_hello"]);
}

/// Finishing records the status, output and time, releases the lease, and fences out any
/// later write. A run that ended before the write (`ended_ago`) keeps its own times.
pub async fn finishing_ends_the_execution_and_releases_the_lease(store: impl Store) {
    fixture::hello().save(&store, &nodes::registry()).await;
    let id = start(&store, "hello", json!({})).await;
    let claimed = claim_one(&store, WORKER, LEASE).await;
    let earlier = NewNodeRun {
        ended_ago: Duration::from_secs(60),
        ..completed_run("start", 1)
    };
    store
        .record_step(record(
            &claimed,
            vec![earlier, completed_run("say_hello", 1)],
            Advance::Finish {
                status: ExecutionStatus::Completed,
                output: Some(json!({"done": true})),
                error: None,
            },
        ))
        .await
        .unwrap();

    let detail = store.get_execution(id).await.unwrap();
    let execution = &detail.execution;
    assert_eq!(execution.status, ExecutionStatus::Completed);
    assert_eq!(execution.output, Some(json!({"done": true})));
    assert!(execution.finished_at.is_some());
    assert_eq!(execution.lease_owner, None);
    assert_eq!(detail.node_runs.len(), 2);
    for run in &detail.node_runs {
        // 5 ms, and what passes between the two reads of the clock.
        let ran = run.finished_at - run.started_at;
        assert!(
            (5..1000).contains(&ran.num_milliseconds()),
            "{ran} for {run:?}"
        );
    }
    let ended = execution.finished_at.unwrap();
    let before = ended - detail.node_runs[0].finished_at;
    // The execution's end is the transaction's time, the runs' the clock's as they are
    // written: a little later.
    assert!(
        (59_000..65_000).contains(&before.num_milliseconds()),
        "the trigger's run ended {before} before the execution, not 60 s"
    );
    assert!(
        (ended - detail.node_runs[1].finished_at).num_seconds() < 5,
        "{:?}",
        detail.node_runs[1]
    );
    assert!(
        store
            .claim_executions(claim_params(WORKER, 10, LEASE))
            .await
            .unwrap()
            .is_empty()
    );
    let late = store
        .record_step(record(
            &claimed,
            vec![completed_run("late", 1)],
            keep_running(),
        ))
        .await;
    assert!(
        matches!(late, Err(StoreError::LeaseLost { .. })),
        "{late:?}"
    );
}

/// A retry releases the lease and makes the execution claimable only after the backoff.
pub async fn retry_parks_the_execution_until_its_backoff(store: impl TestStore) {
    fixture::hello().save(&store, &nodes::registry()).await;
    let id = start(&store, "hello", json!({})).await;
    let claimed = claim_one(&store, WORKER, LEASE).await;
    let mut failed = completed_run("start", 1);
    failed.status = NodeRunStatus::Failed;
    failed.output = None;
    failed.error = Some("flaky".into());
    store
        .record_step(record(
            &claimed,
            vec![failed],
            Advance::Retry {
                delay: Duration::from_secs(60),
            },
        ))
        .await
        .unwrap();

    let execution = store.get_execution(id).await.unwrap().execution;
    assert_eq!(execution.status, ExecutionStatus::Retrying);
    assert_eq!(execution.lease_owner, None);
    let early = store
        .claim_executions(claim_params(WORKER, 10, LEASE))
        .await
        .unwrap();
    assert!(early.is_empty(), "claimed before the backoff passed");

    store.backdate_run_at(id, Duration::from_secs(60)).await;
    let again = claim_one(&store, WORKER, LEASE).await;
    assert_eq!(again.execution.id, id);
    assert_eq!(again.execution.lease_token, LeaseToken(2));
    assert_eq!(again.node_runs.len(), 1);
    assert_eq!(again.node_runs[0].status, NodeRunStatus::Failed);
    assert_eq!(again.node_runs[0].error.as_deref(), Some("flaky"));
}

/// Steps of several executions recorded together: each is fenced by its own token, a stale
/// or conflicting step changes nothing and the others are recorded, in order.
pub async fn record_steps_fences_each_step_on_its_own(store: impl Store) {
    fixture::hello().save(&store, &nodes::registry()).await;
    for _ in 0..5 {
        start(&store, "hello", json!({})).await;
    }
    let claimed = store
        .claim_executions(claim_params(WORKER, 5, LEASE))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 5);
    let [finished, continued, retried, stale, waiting] = &claimed[..] else {
        unreachable!("five claims");
    };
    let finish = Advance::Finish {
        status: ExecutionStatus::Completed,
        output: Some(json!({"done": true})),
        error: None,
    };
    let mut failed = completed_run("start", 1);
    failed.status = NodeRunStatus::Failed;
    failed.output = None;
    failed.error = Some("flaky".into());
    let mut stale_step = record(stale, vec![completed_run("start", 1)], finish.clone());
    stale_step.lease_token = LeaseToken(stale_step.lease_token.0 - 1);
    let steps = [
        record(
            finished,
            vec![completed_run("start", 1), completed_run("say_hello", 1)],
            finish.clone(),
        ),
        record(continued, vec![completed_run("start", 1)], keep_running()),
        record(
            retried,
            vec![failed],
            Advance::Retry {
                delay: Duration::from_secs(60),
            },
        ),
        stale_step,
        record(
            waiting,
            vec![completed_run("start", 1)],
            Advance::Wait {
                delay: None,
                signals: vec!["go".into()],
            },
        ),
    ];
    let results = store.record_steps(&steps).await;
    assert_eq!(results.len(), 5);
    for (i, result) in results.iter().enumerate() {
        if i == 3 {
            assert!(
                matches!(result, Err(StoreError::LeaseLost { .. })),
                "stale step: {result:?}"
            );
        } else {
            assert!(result.is_ok(), "step {i}: {result:?}");
        }
    }
    let detail = |claimed: &ClaimedExecution| store.get_execution(claimed.execution.id);
    let done = detail(finished).await.unwrap();
    assert_eq!(done.execution.status, ExecutionStatus::Completed);
    assert_eq!(done.execution.output, Some(json!({"done": true})));
    let order: Vec<&str> = done.node_runs.iter().map(|r| r.node_id.as_str()).collect();
    assert_eq!(order, ["start", "say_hello"]);
    let running = detail(continued).await.unwrap();
    assert_eq!(running.execution.status, ExecutionStatus::Running);
    assert_eq!(running.node_runs.len(), 1);
    let parked = detail(retried).await.unwrap();
    assert_eq!(parked.execution.status, ExecutionStatus::Retrying);
    assert_eq!(parked.node_runs[0].error.as_deref(), Some("flaky"));
    let untouched = detail(stale).await.unwrap();
    assert_eq!(untouched.execution.status, ExecutionStatus::Running);
    assert!(untouched.node_runs.is_empty());
    assert_eq!(
        detail(waiting).await.unwrap().execution.status,
        ExecutionStatus::Waiting
    );

    // The same attempt recorded twice conflicts; the step beside it is still recorded.
    let again = [
        record(continued, vec![completed_run("start", 1)], keep_running()),
        record(stale, vec![completed_run("start", 1)], finish),
    ];
    let results = store.record_steps(&again).await;
    assert!(
        matches!(results[0], Err(StoreError::AlreadyRecorded { execution_id })
            if execution_id == continued.execution.id),
        "{:?}",
        results[0]
    );
    assert!(results[1].is_ok(), "{:?}", results[1]);
    assert_eq!(detail(continued).await.unwrap().node_runs.len(), 1);

    // A NUL character (which PostgreSQL's text and jsonb cannot hold) in a node's error or
    // output does not fail the step: it is stored as is or as U+FFFD.
    let mut odd = completed_run("say_hello", 1);
    odd.status = NodeRunStatus::Failed;
    odd.output = Some(json!({"stdout": "a\u{0}b", "k\u{0}": 1}));
    odd.error = Some("stderr: \u{0}".into());
    start(&store, "hello", json!({})).await;
    let another = claim_one(&store, WORKER, LEASE).await;
    let mixed = [
        record(continued, vec![odd], keep_running()),
        record(
            &another,
            vec![completed_run("start", 1)],
            Advance::Finish {
                status: ExecutionStatus::Completed,
                output: None,
                error: None,
            },
        ),
    ];
    let results = store.record_steps(&mixed).await;
    assert_eq!(results.len(), 2);
    assert!(results[0].is_ok(), "{:?}", results[0]);
    assert!(results[1].is_ok(), "{:?}", results[1]);
    let runs = detail(continued).await.unwrap().node_runs;
    let error = runs[1].error.as_deref().unwrap_or_default();
    assert!(
        error == "stderr: \u{0}" || error == "stderr: \u{fffd}",
        "{error:?}"
    );
    assert_eq!(
        detail(&another).await.unwrap().execution.status,
        ExecutionStatus::Completed
    );
    assert_eq!(
        detail(stale).await.unwrap().execution.status,
        ExecutionStatus::Completed
    );
}
