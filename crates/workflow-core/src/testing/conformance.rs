//! The conformance suite: each case is an async fn over any [`Store`], written once and run
//! against every store by [`conformance_tests!`](crate::conformance_tests). Cases are grouped
//! like the `Store` trait: workflows, executions and claims, fencing, then the worker.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde_json::{Value, json};

use super::TestStore;
use super::fixture::{self, run_until_terminal, workflow};
use super::nodes::{self, Count};
use crate::store::{Advance, ClaimParams, ClaimedExecution, NewNodeRun, RecordStep, RescueFilter};
use crate::{
    Client, ExecutionId, ExecutionStatus, LeaseToken, ListExecutionsParams, NewSchedule,
    NodeRunStatus, RetryPolicy, StartExecutionParams, Store, StoreError, WorkflowRef,
    WorkflowWorker,
};

/// Stamps one `#[tokio::test]` per conformance case into a module named `$name`.
///
/// `$setup` is an async expression returning `(guard, store)`: the guard lives until the test
/// ends (a per-test database, say) and `store` is any `Store + Clone`.
#[macro_export]
macro_rules! conformance_tests {
    ($name:ident, $setup:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            $crate::conformance_tests!(@cases $setup;
                save_workflow_adds_a_version_per_save,
                start_execution_pins_the_latest_version,
                start_execution_of_an_unknown_workflow_is_not_found,
                get_execution_of_an_unknown_id_is_not_found,
                list_executions_filters_by_status_and_workflow,
                claim_marks_running_under_a_new_lease,
                claim_respects_the_limit,
                claim_prefers_higher_priority,
                concurrent_claims_never_return_the_same_execution,
                expired_lease_is_reclaimed_with_a_new_token,
                stale_lease_token_cannot_record_a_step,
                recording_the_same_attempt_twice_is_already_recorded,
                a_consumed_signal_cannot_be_consumed_again,
                steps_of_one_execution_in_one_batch_apply_in_order,
                finishing_ends_the_execution_and_releases_the_lease,
                retry_parks_the_execution_until_its_backoff,
                renew_leases_reports_lost_leases,
                record_steps_fences_each_step_on_its_own,
                queue_stats_count_runnable_waiting_and_running_executions,
                prune_deletes_only_executions_that_ended_long_enough_ago,
                a_worker_with_prune_after_prunes_old_history,
                hello_workflow_completes_with_its_node_history,
                diamond_runs_branches_concurrently_and_joins_their_outputs,
                branches_not_taken_are_skipped_and_joins_still_run,
                condition_node_routes_each_execution_down_one_branch,
                failing_nodes_fail_their_execution_and_the_worker_goes_on,
                retryable_failure_is_retried_after_its_backoff,
                exhausted_retries_fail_with_the_last_error,
                workers_claim_only_executions_whose_node_types_they_have,
                unrunnable_executions_are_counted_against_live_workers,
                two_workers_run_each_node_exactly_once,
                claims_count_rescues_until_a_step_is_recorded,
                suspects_are_claimed_only_when_asked_for,
                an_idle_claim_takes_a_suspect_alone_and_else_the_others,
                poison_execution_is_failed_after_max_rescues,
                deaths_in_company_do_not_quarantine,
                late_write_of_a_worker_whose_lease_was_taken_over_is_rejected,
                shutdown_interrupts_running_nodes_and_releases_the_execution,
                shutdown_lets_running_nodes_finish_within_the_grace_period,
                cancelling_ends_an_execution_at_once_and_only_once,
                cancelling_a_running_code_node_kills_its_process,
                an_execution_past_its_deadline_times_out_while_running,
                a_deadline_is_enforced_when_the_worker_holding_it_died,
                approval_runs_only_the_branch_the_signal_chose,
                signals_are_stored_once_per_key_and_refused_for_ended_executions,
                a_wait_for_signal_times_out_down_its_timeout_branch,
                a_delay_resumes_on_time_after_a_worker_restart,
                waiting_executions_hold_no_worker_slot,
                every_tick_starts_one_execution_across_four_workers,
                pausing_stops_a_schedule_and_resuming_fires_no_burst,
                missed_ticks_fire_once_by_default_or_up_to_catch_up,
                invalid_schedules_are_rejected_and_nothing_is_written,
                resuming_sets_the_next_tick_in_one_write_and_leaves_an_enabled_schedule_alone,
                the_client_saves_only_workflows_valid_for_its_node_types,
            );
        }
    };
    (@cases $setup:expr; $($case:ident,)*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let (_guard, store) = $setup.await;
                $crate::testing::conformance::$case(store).await;
            }
        )*
    };
}

const WORKER: &str = "worker-a";
const LEASE: Duration = Duration::from_secs(30);
const WAIT: Duration = Duration::from_secs(30);

fn claim_params(worker: &str, limit: u32, lease: Duration) -> ClaimParams {
    ClaimParams {
        worker_id: worker.to_owned(),
        limit,
        lease_duration: lease,
        rescues: RescueFilter::Any,
        node_types: None,
    }
}

async fn start(store: &impl Store, workflow: &str, input: Value) -> ExecutionId {
    store
        .start_execution(StartExecutionParams::new(workflow, input))
        .await
        .expect("start execution")
        .id
}

async fn claim_one(store: &impl Store, worker: &str, lease: Duration) -> ClaimedExecution {
    let mut claimed = store
        .claim_executions(claim_params(worker, 1, lease))
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 1, "expected one claimable execution");
    claimed.remove(0)
}

fn completed_run(node_id: &str, attempt: u32) -> NewNodeRun {
    NewNodeRun {
        node_id: node_id.to_owned(),
        node_type: "echo".to_owned(),
        attempt,
        status: NodeRunStatus::Completed,
        input: Some(json!({})),
        output: Some(json!({"node": node_id})),
        branch: None,
        error: None,
        duration: Duration::from_millis(5),
        consumed_signal: None,
    }
}

fn record(claimed: &ClaimedExecution, runs: Vec<NewNodeRun>, advance: Advance) -> RecordStep {
    RecordStep {
        execution_id: claimed.execution.id,
        lease_token: claimed.execution.lease_token,
        worker_id: WORKER.to_owned(),
        runs,
        advance,
    }
}

/// Records one step: a batch of one, as the worker's writer sends a lone step.
#[async_trait::async_trait]
trait RecordOne {
    async fn record_step(&self, step: RecordStep) -> Result<(), StoreError>;
}

#[async_trait::async_trait]
impl<S: Store + ?Sized> RecordOne for S {
    async fn record_step(&self, step: RecordStep) -> Result<(), StoreError> {
        let mut results = self.record_steps(std::slice::from_ref(&step)).await;
        assert_eq!(results.len(), 1, "one result per step");
        results.remove(0)
    }
}

fn keep_running() -> Advance {
    Advance::Continue {
        lease_duration: LEASE,
    }
}

fn worker(store: impl Store) -> WorkflowWorker {
    WorkflowWorker::new(store)
        .poll_interval(Duration::from_millis(50))
        .concurrency(8)
        .nodes(nodes::registry())
}

// --- workflows ---

/// Saving a name again adds a version; the latest is what `get_workflow` returns.
pub async fn save_workflow_adds_a_version_per_save(store: impl Store) {
    let registry = nodes::registry();
    let v1 = fixture::hello().save(&store, &registry).await;
    let v2 = fixture::hello()
        .node("more", "echo", Value::Null)
        .edge("say_hello", "more")
        .save(&store, &registry)
        .await;
    assert_eq!((v1.version, v2.version), (1, 2));
    assert_eq!(v1.workflow_id, v2.workflow_id);

    let latest = store
        .get_workflow(&WorkflowRef::Name("hello".into()))
        .await
        .unwrap();
    assert_eq!(latest.version, 2);
    assert_eq!(latest.definition.nodes.len(), 3);
    let by_id = store
        .get_workflow(&WorkflowRef::Id(v1.workflow_id))
        .await
        .unwrap();
    assert_eq!(by_id.version, 2);
    let first = store.get_workflow_version(v1.workflow_id, 1).await.unwrap();
    assert_eq!(first.definition, v1.definition);
    assert!(matches!(
        store.get_workflow_version(v1.workflow_id, 3).await,
        Err(StoreError::NotFound { .. })
    ));
}

/// An execution runs the version that was latest when it started, whatever is saved later.
pub async fn start_execution_pins_the_latest_version(store: impl Store) {
    let registry = nodes::registry();
    fixture::hello().save(&store, &registry).await;
    let first = start(&store, "hello", json!({})).await;
    fixture::hello().save(&store, &registry).await;
    let second = start(&store, "hello", json!({"n": 2})).await;

    let first = store.get_execution(first).await.unwrap().execution;
    let second = store.get_execution(second).await.unwrap().execution;
    assert_eq!(first.workflow_version, 1);
    assert_eq!(second.workflow_version, 2);
    assert_eq!(first.status, ExecutionStatus::Pending);
    assert_eq!(second.input, json!({"n": 2}));
    assert_eq!(first.workflow_name, "hello");
}

/// Starting an unknown workflow names it and writes nothing.
pub async fn start_execution_of_an_unknown_workflow_is_not_found(store: impl Store) {
    let err = store
        .start_execution(StartExecutionParams::new("nope", json!({})))
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "workflow \"nope\" not found");
    let all = store
        .list_executions(ListExecutionsParams {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(all.is_empty());
}

/// An unknown execution id is `NotFound`, naming the id.
pub async fn get_execution_of_an_unknown_id_is_not_found(store: impl Store) {
    let id = ExecutionId::new();
    let err = store.get_execution(id).await.unwrap_err();
    assert_eq!(err.to_string(), format!("execution {id} not found"));
}

/// Listing filters by status and by workflow name or id, newest first, up to the limit.
pub async fn list_executions_filters_by_status_and_workflow(store: impl Store) {
    let registry = nodes::registry();
    let hello = fixture::hello().save(&store, &registry).await;
    workflow("other").save(&store, &registry).await;
    let h1 = start(&store, "hello", json!({})).await;
    let h2 = start(&store, "hello", json!({})).await;
    let o1 = start(&store, "other", json!({})).await;
    // Claim one so statuses differ: exactly one execution becomes running.
    let claimed = claim_one(&store, WORKER, LEASE).await.execution.id;

    let list = |status, workflow, limit| {
        store.list_executions(ListExecutionsParams {
            status,
            workflow,
            limit,
        })
    };
    let ids = |executions: Vec<crate::Execution>| -> HashSet<ExecutionId> {
        executions.into_iter().map(|e| e.id).collect()
    };
    assert_eq!(
        ids(list(None, None, 10).await.unwrap()),
        HashSet::from([h1, h2, o1])
    );
    assert_eq!(list(None, None, 2).await.unwrap().len(), 2);
    assert_eq!(
        ids(list(None, Some(WorkflowRef::Name("hello".into())), 10)
            .await
            .unwrap()),
        HashSet::from([h1, h2])
    );
    assert_eq!(
        ids(list(None, Some(WorkflowRef::Id(hello.workflow_id)), 10)
            .await
            .unwrap()),
        HashSet::from([h1, h2])
    );
    assert_eq!(
        ids(list(Some(ExecutionStatus::Running), None, 10)
            .await
            .unwrap()),
        HashSet::from([claimed])
    );
    assert_eq!(
        list(Some(ExecutionStatus::Pending), None, 10)
            .await
            .unwrap()
            .len(),
        2
    );
    let newest = list(None, None, 10).await.unwrap();
    assert!(
        newest
            .windows(2)
            .all(|w| w[0].created_at >= w[1].created_at)
    );
}

// --- executions and claims ---

/// A claim marks the execution running, owned by the worker, with token 1 and a lease that
/// keeps other claims away.
pub async fn claim_marks_running_under_a_new_lease(store: impl Store) {
    fixture::hello().save(&store, &nodes::registry()).await;
    let id = start(&store, "hello", json!({"x": 1})).await;

    let claimed = claim_one(&store, WORKER, LEASE).await;
    let execution = &claimed.execution;
    assert_eq!(execution.id, id);
    assert_eq!(execution.status, ExecutionStatus::Running);
    assert_eq!(execution.lease_owner.as_deref(), Some(WORKER));
    assert_eq!(execution.lease_token, LeaseToken(1));
    assert_eq!(execution.input, json!({"x": 1}));
    assert!(execution.started_at.is_some());
    let expires = execution.lease_expires_at.expect("lease expiry");
    let started = execution.started_at.expect("started");
    assert!(
        expires > started + chrono::Duration::seconds(20),
        "{expires} vs {started}"
    );
    assert!(claimed.node_runs.is_empty());

    let again = store
        .claim_executions(claim_params("worker-b", 10, LEASE))
        .await
        .unwrap();
    assert!(
        again.is_empty(),
        "a leased execution must not be claimed again"
    );
}

/// A claim returns at most `limit` executions.
pub async fn claim_respects_the_limit(store: impl Store) {
    fixture::hello().save(&store, &nodes::registry()).await;
    for _ in 0..5 {
        start(&store, "hello", json!({})).await;
    }
    let first = store
        .claim_executions(claim_params(WORKER, 2, LEASE))
        .await
        .unwrap();
    let rest = store
        .claim_executions(claim_params(WORKER, 10, LEASE))
        .await
        .unwrap();
    assert_eq!((first.len(), rest.len()), (2, 3));
}

/// Among runnable executions, higher priority is claimed first.
pub async fn claim_prefers_higher_priority(store: impl Store) {
    fixture::hello().save(&store, &nodes::registry()).await;
    start(&store, "hello", json!({})).await;
    let mut urgent = StartExecutionParams::new("hello", json!({}));
    urgent.priority = 5;
    let urgent = store.start_execution(urgent).await.unwrap().id;
    assert_eq!(claim_one(&store, WORKER, LEASE).await.execution.id, urgent);
}

/// Concurrent claims hand out every execution exactly once.
pub async fn concurrent_claims_never_return_the_same_execution(store: impl Store + Clone) {
    fixture::hello().save(&store, &nodes::registry()).await;
    let mut started = HashSet::new();
    for _ in 0..60 {
        started.insert(start(&store, "hello", json!({})).await);
    }
    let claimers = (0..6).map(|i| {
        let store = store.clone();
        tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let batch = store
                    .claim_executions(claim_params(&format!("worker-{i}"), 7, LEASE))
                    .await
                    .expect("claim");
                if batch.is_empty() {
                    return mine;
                }
                mine.extend(batch.into_iter().map(|c| c.execution.id));
            }
        })
    });
    let mut claimed = Vec::new();
    for claimer in claimers {
        claimed.extend(claimer.await.unwrap());
    }
    let unique: HashSet<_> = claimed.iter().copied().collect();
    assert_eq!(
        claimed.len(),
        unique.len(),
        "an execution was claimed twice"
    );
    assert_eq!(unique, started);
}

/// Once its lease expires, an execution is claimed by another worker under a new token,
/// with the node runs recorded so far.
pub async fn expired_lease_is_reclaimed_with_a_new_token(store: impl TestStore) {
    fixture::hello().save(&store, &nodes::registry()).await;
    start(&store, "hello", json!({})).await;
    let first = claim_one(&store, WORKER, LEASE).await;
    store
        .record_step(record(
            &first,
            vec![completed_run("start", 1)],
            keep_running(),
        ))
        .await
        .unwrap();
    assert!(
        store
            .claim_executions(claim_params("worker-b", 1, LEASE))
            .await
            .unwrap()
            .is_empty(),
        "claimed while the lease held"
    );
    store.expire_lease(first.execution.id).await;

    let second = claim_one(&store, "worker-b", LEASE).await;
    assert_eq!(second.execution.id, first.execution.id);
    assert_eq!(
        second.execution.lease_token,
        LeaseToken(first.execution.lease_token.0 + 1)
    );
    assert_eq!(second.execution.lease_owner.as_deref(), Some("worker-b"));
    assert_eq!(second.node_runs.len(), 1);
    assert_eq!(second.node_runs[0].node_id, "start");
    assert_eq!(second.node_runs[0].worker_id.as_deref(), Some(WORKER));
}

// --- fencing ---

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
/// later write.
pub async fn finishing_ends_the_execution_and_releases_the_lease(store: impl Store) {
    fixture::hello().save(&store, &nodes::registry()).await;
    let id = start(&store, "hello", json!({})).await;
    let claimed = claim_one(&store, WORKER, LEASE).await;
    store
        .record_step(record(
            &claimed,
            vec![completed_run("start", 1), completed_run("say_hello", 1)],
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
    assert!(
        detail
            .node_runs
            .iter()
            .all(|r| r.finished_at >= r.started_at)
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

/// The queue gauges: runnable (due, unleased), waiting (parked) and running (leased), and how
/// long the oldest runnable execution has waited.
pub async fn queue_stats_count_runnable_waiting_and_running_executions(store: impl TestStore) {
    fixture::hello().save(&store, &nodes::registry()).await;
    let empty = store.queue_stats().await.unwrap();
    assert_eq!(empty, crate::QueueStats::default());

    for _ in 0..3 {
        let id = start(&store, "hello", json!({})).await;
        // Runnable for 300 ms already.
        store.backdate_run_at(id, Duration::from_millis(300)).await;
    }
    let queued = store.queue_stats().await.unwrap();
    assert_eq!((queued.runnable, queued.waiting, queued.running), (3, 0, 0));
    assert!(
        queued.oldest_runnable_age >= Duration::from_millis(250)
            && queued.oldest_runnable_age < WAIT,
        "oldest runnable age {:?}",
        queued.oldest_runnable_age
    );

    let parked = claim_one(&store, WORKER, LEASE).await;
    let held = claim_one(&store, WORKER, LEASE).await;
    let claimed = store.queue_stats().await.unwrap();
    assert_eq!(
        (claimed.runnable, claimed.waiting, claimed.running),
        (1, 0, 2)
    );

    store
        .record_step(record(
            &parked,
            vec![completed_run("start", 1)],
            Advance::Wait {
                delay: None,
                signals: vec!["go".into()],
            },
        ))
        .await
        .unwrap();
    store
        .record_step(record(
            &held,
            vec![completed_run("start", 1), completed_run("say_hello", 1)],
            Advance::Finish {
                status: ExecutionStatus::Completed,
                output: None,
                error: None,
            },
        ))
        .await
        .unwrap();
    let later = store.queue_stats().await.unwrap();
    assert_eq!((later.runnable, later.waiting, later.running), (1, 1, 0));
}

/// Pruning deletes ended executions older than the cut-off, in batches of at most `limit`,
/// with their history; executions that have not ended, or ended recently, stay.
pub async fn prune_deletes_only_executions_that_ended_long_enough_ago(store: impl TestStore) {
    fixture::hello().save(&store, &nodes::registry()).await;
    let completed = start(&store, "hello", json!({})).await;
    let claimed = claim_one(&store, WORKER, LEASE).await;
    store
        .record_step(record(
            &claimed,
            vec![completed_run("start", 1), completed_run("say_hello", 1)],
            Advance::Finish {
                status: ExecutionStatus::Completed,
                output: None,
                error: None,
            },
        ))
        .await
        .unwrap();
    let cancelled = start(&store, "hello", json!({})).await;
    store.cancel_execution(cancelled, "test").await.unwrap();
    let pending = start(&store, "hello", json!({})).await;
    // The first two ended 1.2 s ago.
    for ended in [completed, cancelled] {
        store
            .backdate_finished_at(ended, Duration::from_millis(1200))
            .await;
    }
    let recent = start(&store, "hello", json!({})).await;
    store.cancel_execution(recent, "test").await.unwrap();

    let hour = Duration::from_secs(3600);
    assert_eq!(store.prune_executions(hour, 100).await.unwrap(), 0);
    let cut_off = Duration::from_millis(800);
    assert_eq!(store.prune_executions(cut_off, 1).await.unwrap(), 1);
    assert_eq!(store.prune_executions(cut_off, 1).await.unwrap(), 1);
    assert_eq!(store.prune_executions(cut_off, 100).await.unwrap(), 0);

    for gone in [completed, cancelled] {
        assert!(
            matches!(
                store.get_execution(gone).await,
                Err(StoreError::NotFound { .. })
            ),
            "execution {gone} was not pruned"
        );
    }
    for kept in [pending, recent] {
        store.get_execution(kept).await.expect("kept");
    }
}

/// `prune_after` makes a worker prune history as it starts (and then once a minute): old
/// ended executions go, and what it runs stays.
pub async fn a_worker_with_prune_after_prunes_old_history(store: impl TestStore) {
    fixture::hello().save(&store, &nodes::registry()).await;
    let old = start(&store, "hello", json!({})).await;
    store.cancel_execution(old, "test").await.unwrap();
    store
        .backdate_finished_at(old, Duration::from_millis(600))
        .await;
    let fresh = start(&store, "hello", json!({})).await;

    let worker = worker(store.clone())
        .poll_interval(Duration::from_millis(100))
        .prune_after(Some(Duration::from_millis(400)));
    let pruned_and_done = async {
        let started = tokio::time::Instant::now();
        loop {
            let pruned = matches!(
                store.get_execution(old).await,
                Err(StoreError::NotFound { .. })
            );
            let done = store
                .get_execution(fresh)
                .await
                .is_ok_and(|d| d.execution.status.is_terminal());
            if pruned && done {
                return;
            }
            assert!(
                started.elapsed() < WAIT,
                "pruned: {pruned}, fresh execution done: {done}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    worker.run_until(pruned_and_done).await.unwrap();
    let fresh = store
        .get_execution(fresh)
        .await
        .expect("the fresh one stays");
    assert_eq!(fresh.execution.status, ExecutionStatus::Completed);
}

/// Renewal extends leases still held and leaves out the ones another claim took over.
pub async fn renew_leases_reports_lost_leases(store: impl TestStore) {
    fixture::hello().save(&store, &nodes::registry()).await;
    start(&store, "hello", json!({})).await;
    start(&store, "hello", json!({})).await;
    let kept = claim_one(&store, WORKER, LEASE).await;
    let lost = claim_one(&store, WORKER, LEASE).await;
    store.expire_lease(lost.execution.id).await;
    let taken = claim_one(&store, "worker-b", LEASE).await;
    assert_eq!(taken.execution.id, lost.execution.id);

    let renewed = store
        .renew_leases(
            &[
                (kept.execution.id, kept.execution.lease_token),
                (lost.execution.id, lost.execution.lease_token),
            ],
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    assert_eq!(renewed, vec![kept.execution.id]);
    let kept_now = store
        .get_execution(kept.execution.id)
        .await
        .unwrap()
        .execution;
    assert!(kept_now.lease_expires_at > kept.execution.lease_expires_at);
}

// --- the worker ---

/// The seed's scenario: trigger -> code; both node runs completed, the greeting in the output.
pub async fn hello_workflow_completes_with_its_node_history(store: impl Store + Clone) {
    fixture::hello().save(&store, &nodes::registry()).await;
    let id = start(&store, "hello", json!({"who": "tests"})).await;
    let claimed = worker(store.clone()).run_once().await.unwrap();
    assert_eq!(claimed, 1);

    let detail = store.get_execution(id).await.unwrap();
    assert_eq!(
        detail.execution.status,
        ExecutionStatus::Completed,
        "{detail:?}"
    );
    let runs: Vec<(&str, NodeRunStatus)> = detail
        .node_runs
        .iter()
        .map(|r| (r.node_id.as_str(), r.status))
        .collect();
    assert_eq!(
        runs,
        vec![
            ("start", NodeRunStatus::Completed),
            ("say_hello", NodeRunStatus::Completed)
        ]
    );
    assert_eq!(detail.node_runs[0].output, Some(json!({"who": "tests"})));
    let stdout = &detail.node_runs[1].output.as_ref().unwrap()["stdout"];
    assert_eq!(stdout, "Hello from workflow!\n");
    assert_eq!(detail.execution.output.as_ref().unwrap()["stdout"], *stdout);
}

/// Independent branches overlap in time, and the join receives both outputs keyed by parent.
pub async fn diamond_runs_branches_concurrently_and_joins_their_outputs(store: impl Store + Clone) {
    fixture::diamond(400).save(&store, &nodes::registry()).await;
    let id = start(&store, "diamond", json!({})).await;
    let detail = run_until_terminal(worker(store.clone()), &store, &[id], WAIT)
        .await
        .remove(0);
    assert_eq!(
        detail.execution.status,
        ExecutionStatus::Completed,
        "{detail:?}"
    );

    let run = |node: &str| {
        detail
            .node_runs
            .iter()
            .find(|r| r.node_id == node)
            .unwrap_or_else(|| panic!("no run of {node}"))
    };
    let (a, b, c) = (run("a"), run("b"), run("c"));
    assert!(
        a.started_at < b.finished_at && b.started_at < a.finished_at,
        "a ({} - {}) and b ({} - {}) did not overlap",
        a.started_at,
        a.finished_at,
        b.started_at,
        b.finished_at
    );
    let expected = json!({"a": {"slept_ms": 400}, "b": {"slept_ms": 400}});
    assert_eq!(c.input, Some(expected.clone()));
    assert_eq!(detail.execution.output, Some(expected));
    assert!(c.started_at >= a.finished_at && c.started_at >= b.finished_at);
}

/// Edges on branches not chosen are not followed; nodes behind them are skipped, and a join
/// with one path taken still runs.
pub async fn branches_not_taken_are_skipped_and_joins_still_run(store: impl Store + Clone) {
    workflow("branching")
        .node("pick", "branch", json!({"branch": "yes"}))
        .node("yes", "echo", Value::Null)
        .node("no", "echo", Value::Null)
        .node("after_no", "echo", Value::Null)
        .node("join", "echo", Value::Null)
        .edge("start", "pick")
        .branch_edge("pick", "yes", "yes")
        .branch_edge("pick", "no", "no")
        .edge("no", "after_no")
        .edge("yes", "join")
        .edge("after_no", "join")
        .save(&store, &nodes::registry())
        .await;
    let id = start(&store, "branching", json!({"v": 1})).await;
    let detail = run_until_terminal(worker(store.clone()), &store, &[id], WAIT)
        .await
        .remove(0);
    assert_eq!(
        detail.execution.status,
        ExecutionStatus::Completed,
        "{detail:?}"
    );
    let status: HashMap<&str, NodeRunStatus> = detail
        .node_runs
        .iter()
        .map(|r| (r.node_id.as_str(), r.status))
        .collect();
    assert_eq!(status["pick"], NodeRunStatus::Completed);
    assert_eq!(status["yes"], NodeRunStatus::Completed);
    assert_eq!(status["no"], NodeRunStatus::Skipped);
    assert_eq!(status["after_no"], NodeRunStatus::Skipped);
    assert_eq!(status["join"], NodeRunStatus::Completed);
    let join = detail
        .node_runs
        .iter()
        .find(|r| r.node_id == "join")
        .unwrap();
    assert_eq!(join.input, Some(json!({"yes": {"v": 1}})));
    let pick = detail
        .node_runs
        .iter()
        .find(|r| r.node_id == "pick")
        .unwrap();
    assert_eq!(pick.branch.as_deref(), Some("yes"));
}

/// The built-in condition node picks `true` or `false` from its input; a path missing from
/// the input fails the execution with an error naming it.
pub async fn condition_node_routes_each_execution_down_one_branch(store: impl Store + Clone) {
    workflow("routing")
        .node(
            "check",
            "condition",
            json!({"path": "order.total", "op": ">", "value": 100}),
        )
        .node("big", "echo", Value::Null)
        .node("small", "echo", Value::Null)
        .edge("start", "check")
        .branch_edge("check", "big", "true")
        .branch_edge("check", "small", "false")
        .save(&store, &nodes::registry())
        .await;
    let big = start(&store, "routing", json!({"order": {"total": 150}})).await;
    let small = start(&store, "routing", json!({"order": {"total": 50}})).await;
    let missing = start(&store, "routing", json!({"order": {}})).await;
    let details =
        run_until_terminal(worker(store.clone()), &store, &[big, small, missing], WAIT).await;
    let ran =
        |detail: &crate::ExecutionDetail| -> std::collections::BTreeMap<String, NodeRunStatus> {
            detail
                .node_runs
                .iter()
                .filter(|r| r.node_id == "big" || r.node_id == "small")
                .map(|r| (r.node_id.clone(), r.status))
                .collect()
        };
    let expect = |big, small| {
        std::collections::BTreeMap::from([("big".to_owned(), big), ("small".to_owned(), small)])
    };
    assert_eq!(
        ran(&details[0]),
        expect(NodeRunStatus::Completed, NodeRunStatus::Skipped)
    );
    assert_eq!(
        ran(&details[1]),
        expect(NodeRunStatus::Skipped, NodeRunStatus::Completed)
    );
    assert_eq!(details[2].execution.status, ExecutionStatus::Failed);
    assert_eq!(
        details[2].execution.error.as_deref(),
        Some("node \"check\" failed: path \"order.total\" not found in the input")
    );
}

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
    let mut ids = Vec::new();
    for i in 0..200 {
        ids.push(start(&store, "counted", json!({"i": i})).await);
    }
    let stop = tokio_util::sync::CancellationToken::new();
    let workers: Vec<_> = ["worker-a", "worker-b"]
        .into_iter()
        .map(|id| {
            let worker = WorkflowWorker::new(store.clone())
                .worker_id(id)
                .poll_interval(Duration::from_millis(20))
                .concurrency(8)
                .node("count", count.clone());
            tokio::spawn(worker.run_until(stop.clone().cancelled_owned()))
        })
        .collect();
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

// --- leases, rescues and shutdown ---

/// A claim that finds the previous lease expired counts a rescue; a recorded step resets the
/// count, and a release does not count.
pub async fn claims_count_rescues_until_a_step_is_recorded(store: impl TestStore) {
    fixture::hello().save(&store, &nodes::registry()).await;
    let id = start(&store, "hello", json!({})).await;
    let first = claim_one(&store, WORKER, LEASE).await;
    assert_eq!(first.execution.rescue_count, 0);
    store.expire_lease(id).await;
    let second = claim_one(&store, WORKER, LEASE).await;
    assert_eq!(second.execution.rescue_count, 1);
    store.expire_lease(id).await;
    let third = claim_one(&store, WORKER, LEASE).await;
    assert_eq!(third.execution.rescue_count, 2);

    store
        .record_step(record(
            &third,
            vec![completed_run("start", 1)],
            keep_running(),
        ))
        .await
        .unwrap();
    assert_eq!(
        store
            .get_execution(id)
            .await
            .unwrap()
            .execution
            .rescue_count,
        0
    );
    store.expire_lease(id).await;
    let fourth = claim_one(&store, WORKER, LEASE).await;
    assert_eq!(
        fourth.execution.rescue_count, 1,
        "counted again from the last step"
    );

    store
        .record_step(record(&fourth, vec![], Advance::Release))
        .await
        .unwrap();
    let released = store.get_execution(id).await.unwrap().execution;
    assert_eq!(released.status, ExecutionStatus::Running);
    assert_eq!(
        (released.lease_owner, released.lease_expires_at),
        (None, None)
    );
    let fifth = claim_one(&store, "worker-b", LEASE).await;
    assert_eq!(
        fifth.execution.rescue_count, 1,
        "a released lease is not a rescue"
    );
    assert_eq!(
        fifth.execution.lease_token,
        LeaseToken(fourth.execution.lease_token.0 + 1)
    );
}

/// Executions whose lease expired after enough rescues are claimed only by a claim that asks
/// for suspects, and such a claim takes nothing else.
pub async fn suspects_are_claimed_only_when_asked_for(store: impl TestStore) {
    fixture::hello().save(&store, &nodes::registry()).await;
    let suspect = start(&store, "hello", json!({})).await;
    // Two deaths: rescue_count 1 with an expired lease.
    claim_one(&store, "dead-1", LEASE).await;
    store.expire_lease(suspect).await;
    claim_one(&store, "dead-2", LEASE).await;
    store.expire_lease(suspect).await;
    let healthy = start(&store, "hello", json!({})).await;

    let claim = |rescues| {
        let mut params = claim_params(WORKER, 10, LEASE);
        params.rescues = rescues;
        store.claim_executions(params)
    };
    let others = claim(RescueFilter::NotSuspect(1)).await.unwrap();
    let others: Vec<ExecutionId> = others.iter().map(|c| c.execution.id).collect();
    assert_eq!(
        others,
        vec![healthy],
        "a suspect was claimed with the others"
    );
    let none = claim(RescueFilter::Suspect(2)).await.unwrap();
    assert!(
        none.is_empty(),
        "rescued once is not a suspect at threshold 2"
    );
    let suspects = claim(RescueFilter::Suspect(1)).await.unwrap();
    assert_eq!(suspects.len(), 1);
    assert_eq!(suspects[0].execution.id, suspect);
    assert_eq!(suspects[0].execution.rescue_count, 2);
}

/// What an idle worker asks for, in one claim: a suspect alone while there is one, and
/// otherwise the others.
pub async fn an_idle_claim_takes_a_suspect_alone_and_else_the_others(store: impl TestStore) {
    fixture::hello().save(&store, &nodes::registry()).await;
    let suspect = start(&store, "hello", json!({})).await;
    claim_one(&store, "dead-1", LEASE).await;
    store.expire_lease(suspect).await;
    claim_one(&store, "dead-2", LEASE).await;
    store.expire_lease(suspect).await;
    let healthy = [
        start(&store, "hello", json!({})).await,
        start(&store, "hello", json!({})).await,
    ];
    let claim = || {
        let mut params = claim_params(WORKER, 10, LEASE);
        params.rescues = RescueFilter::SuspectFirst(1);
        store.claim_executions(params)
    };
    let alone: Vec<ExecutionId> = claim()
        .await
        .unwrap()
        .iter()
        .map(|c| c.execution.id)
        .collect();
    assert_eq!(alone, vec![suspect], "the suspect was not claimed alone");
    let mut others: Vec<ExecutionId> = claim()
        .await
        .unwrap()
        .iter()
        .map(|c| c.execution.id)
        .collect();
    others.sort_by_key(|id| id.0);
    let mut expected = healthy.to_vec();
    expected.sort_by_key(|id| id.0);
    assert_eq!(others, expected);
    assert!(claim().await.unwrap().is_empty());
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

/// A worker whose heartbeat stalled past its lease loses the execution to another worker;
/// its late result is rejected, and the history shows only the new owner's result.
pub async fn late_write_of_a_worker_whose_lease_was_taken_over_is_rejected(store: impl TestStore) {
    workflow("slow")
        .node("slow", "sleep", json!({"ms": 1500}))
        .edge("start", "slow")
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
            "the stalled worker never recorded the trigger"
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

/// Runs `worker` until execution `id` has recorded its first step, then shuts the worker
/// down; returns how long it all took.
async fn shut_down_after_first_step(
    store: &impl Store,
    id: ExecutionId,
    worker: WorkflowWorker,
) -> Duration {
    let stop = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn(worker.run_until(stop.clone().cancelled_owned()));
    let started = tokio::time::Instant::now();
    while store.get_execution(id).await.unwrap().node_runs.is_empty() {
        assert!(started.elapsed() < WAIT, "the worker never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.cancel();
    running.await.unwrap().unwrap();
    started.elapsed()
}

/// On shutdown a node still running after the grace period is stopped and recorded as
/// interrupted, and the execution is released: another worker claims it at once and runs the
/// node again under the same attempt number.
pub async fn shutdown_interrupts_running_nodes_and_releases_the_execution(
    store: impl Store + Clone,
) {
    workflow("long")
        .node("long", "sleep", json!({"ms": 20_000}))
        .edge("start", "long")
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
        .node("first_step", "sleep", json!({"ms": 600}))
        .node("second_step", "echo", Value::Null)
        .edge("start", "first_step")
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

// --- cancellation and deadlines ---

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
        .lease_duration(Duration::from_secs(5))
        .heartbeat_interval(Duration::from_millis(200));
    let running = tokio::spawn(running.run_until(stop.clone().cancelled_owned()));

    let started = tokio::time::Instant::now();
    let pid = loop {
        if let Some(pid) = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|text| text.trim().parse::<u32>().ok())
        {
            break pid;
        }
        assert!(started.elapsed() < WAIT, "the code node never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let proc = std::path::PathBuf::from(format!("/proc/{pid}"));
    assert!(proc.exists(), "the node's process is running");
    store
        .cancel_execution(id, "cancelled by test")
        .await
        .unwrap();

    let cancelled_at = tokio::time::Instant::now();
    while proc.exists() && !is_zombie(&proc) {
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

/// A process that was killed but not yet reaped by its parent.
fn is_zombie(proc: &std::path::Path) -> bool {
    std::fs::read_to_string(proc.join("stat"))
        .map(|stat| {
            stat.split(") ")
                .nth(1)
                .is_some_and(|rest| rest.starts_with('Z'))
        })
        .unwrap_or(true)
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
    assert!(
        took < Duration::from_secs(2) + poll + Duration::from_millis(1500),
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
    let id = store.start_execution(params).await.unwrap().id;
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

// --- signals and durable timers ---

fn approval_workflow() -> fixture::WorkflowBuilder {
    workflow("approval")
        .node("approval", "wait_for_signal", json!({"signal": "approval"}))
        .node("ship", "echo", Value::Null)
        .node("refund", "echo", Value::Null)
        .edge("start", "approval")
        .branch_edge("approval", "ship", "approved")
        .branch_edge("approval", "refund", "rejected")
}

async fn send(store: &impl Store, id: ExecutionId, name: &str, payload: Value) -> crate::Signal {
    store
        .send_signal(crate::SendSignalParams {
            execution_id: id,
            name: name.into(),
            payload,
            idempotency_key: None,
        })
        .await
        .expect("send signal")
}

/// Polls until every execution in `ids` is `waiting`.
async fn wait_until_waiting(store: &impl Store, ids: &[ExecutionId]) {
    let started = tokio::time::Instant::now();
    loop {
        let mut all = true;
        for id in ids {
            all &= store.get_execution(*id).await.unwrap().execution.status
                == ExecutionStatus::Waiting;
        }
        if all {
            return;
        }
        assert!(started.elapsed() < WAIT, "executions never parked to wait");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

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

/// A retried send with the same idempotency key stores one signal; unknown and ended
/// executions refuse signals with a clear error and nothing stored.
pub async fn signals_are_stored_once_per_key_and_refused_for_ended_executions(
    store: impl Store + Clone,
) {
    approval_workflow().save(&store, &nodes::registry()).await;
    let id = start(&store, "approval", json!({})).await;
    let keyed = || crate::SendSignalParams {
        execution_id: id,
        name: "approval".into(),
        payload: json!({"approved": true}),
        idempotency_key: Some("click-42".into()),
    };
    let first = store.send_signal(keyed()).await.unwrap();
    let again = store.send_signal(keyed()).await.unwrap();
    assert_eq!(first.id, again.id, "a retried send stored a second signal");
    send(&store, id, "other", json!(1)).await;
    assert_eq!(store.get_execution(id).await.unwrap().signals.len(), 2);

    let unknown = ExecutionId::new();
    let err = store
        .send_signal(crate::SendSignalParams {
            execution_id: unknown,
            ..keyed()
        })
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), format!("execution {unknown} not found"));

    store.cancel_execution(id, "done").await.unwrap();
    let err = store.send_signal(keyed()).await.unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::AlreadyEnded { execution_id, status: ExecutionStatus::Cancelled }
                if execution_id == id
        ),
        "{err:?}"
    );
    assert_eq!(store.get_execution(id).await.unwrap().signals.len(), 2);
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

// --- schedules ---

async fn quick_workflow(store: &impl Store) {
    workflow("tick")
        .node("work", "echo", Value::Null)
        .edge("start", "work")
        .save(store, &nodes::registry())
        .await;
}

async fn scheduled_ticks(store: &impl Store) -> Vec<chrono::DateTime<chrono::Utc>> {
    let mut ticks: Vec<_> = store
        .list_executions(ListExecutionsParams {
            workflow: Some(WorkflowRef::Name("tick".into())),
            limit: 10_000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_iter()
        .filter_map(|e| e.scheduled_for)
        .collect();
    ticks.sort();
    ticks
}

async fn every_second(store: &(impl Store + Clone), catch_up: u32) -> crate::Schedule {
    let mut schedule = NewSchedule::new("tick", "* * * * * *");
    schedule.input = json!({"scheduled": true});
    schedule.catch_up = catch_up;
    Client::new(store.clone())
        .create_schedule(schedule)
        .await
        .expect("create schedule")
}

/// An every-second schedule polled by 4 workers for 10 s starts one execution per tick: no
/// tick twice, none skipped.
pub async fn every_tick_starts_one_execution_across_four_workers(store: impl Store + Clone) {
    quick_workflow(&store).await;
    // Catch-up room, so a worker delayed past a tick on a loaded machine skips none.
    let schedule = every_second(&store, 5).await;
    let stop = tokio_util::sync::CancellationToken::new();
    let workers: Vec<_> = (0..4)
        .map(|i| {
            let worker = worker(store.clone())
                .worker_id(format!("scheduler-{i}"))
                .poll_interval(Duration::from_millis(100));
            tokio::spawn(worker.run_until(stop.clone().cancelled_owned()))
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(10)).await;
    stop.cancel();
    for worker in workers {
        worker.await.unwrap().unwrap();
    }
    let stopped = store.now().await.unwrap();

    let ticks = scheduled_ticks(&store).await;
    let first = schedule.next_fire_at.expect("a first tick");
    let expected = (stopped - first).num_seconds() + 1;
    let fired = i64::try_from(ticks.len()).unwrap();
    assert!(
        (expected - 2..=expected).contains(&fired),
        "{fired} executions for {expected} ticks"
    );
    assert_eq!(ticks.first(), Some(&first), "the first tick was skipped");
    for pair in ticks.windows(2) {
        assert_eq!(
            (pair[1] - pair[0]).num_milliseconds(),
            1000,
            "ticks must be consecutive and unique: {ticks:?}"
        );
    }
    let inputs = store
        .list_executions(ListExecutionsParams {
            limit: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(inputs[0].input, json!({"scheduled": true}));
}

/// A paused schedule starts nothing; resuming it starts from the next tick, with no burst for
/// the paused period.
pub async fn pausing_stops_a_schedule_and_resuming_fires_no_burst(store: impl Store + Clone) {
    quick_workflow(&store).await;
    let schedule = every_second(&store, 10).await;
    let stop = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn(
        worker(store.clone())
            .poll_interval(Duration::from_millis(100))
            .run_until(stop.clone().cancelled_owned()),
    );
    let started = tokio::time::Instant::now();
    while scheduled_ticks(&store).await.len() < 2 {
        assert!(started.elapsed() < WAIT, "the schedule never fired");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let client = Client::new(store.clone());
    let paused = client.pause_schedule(schedule.id).await.unwrap();
    assert!(!paused.enabled);
    let paused_at = store.now().await.unwrap();
    // The paused period: real seconds must pass for ticks to be missed.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let resumed = client.resume_schedule(schedule.id).await.unwrap();
    let resumed_at = store.now().await.unwrap();
    assert!(resumed.enabled);
    assert!(
        resumed
            .next_fire_at
            .is_some_and(|next| next > resumed_at - chrono::Duration::seconds(1)),
        "resuming sets the next tick from now on: {resumed:?}"
    );
    // Workers learn of the resumed schedule at once through a wake-up, or at their next look
    // at the schedules without one (behind a transaction pooler): wait for either.
    let deadline = tokio::time::Instant::now() + WAIT + Duration::from_secs(60);
    let ticks = loop {
        let ticks = scheduled_ticks(&store).await;
        if ticks
            .iter()
            .any(|tick| *tick >= resumed_at - chrono::Duration::seconds(1))
        {
            break ticks;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the resumed schedule never fired: {ticks:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    stop.cancel();
    running.await.unwrap().unwrap();
    // A tick due as the pause began may still have fired; none of the paused period may
    // (a burst on resuming would start them all).
    let in_pause: Vec<_> = ticks
        .iter()
        .filter(|tick| {
            **tick > paused_at + chrono::Duration::seconds(1)
                && **tick < resumed_at - chrono::Duration::seconds(1)
        })
        .collect();
    assert!(
        in_pause.is_empty(),
        "ticks of the paused period fired: {in_pause:?} (paused {paused_at}, resumed {resumed_at})"
    );
}

/// After every worker was down for several ticks, a schedule fires once for the missed
/// period by default, or up to its catch-up count.
pub async fn missed_ticks_fire_once_by_default_or_up_to_catch_up(store: impl TestStore) {
    let registry = nodes::registry();
    for name in ["once", "thrice"] {
        workflow(name)
            .node("work", "echo", Value::Null)
            .edge("start", "work")
            .save(&store, &registry)
            .await;
    }
    for (name, catch_up) in [("once", 1), ("thrice", 3)] {
        let mut schedule = NewSchedule::new(name, "* * * * * *");
        schedule.catch_up = catch_up;
        let schedule = Client::new(store.clone())
            .create_schedule(schedule)
            .await
            .unwrap();
        // As if no worker had run for 5 s: five ticks (four if one is just due) are missed.
        store
            .backdate_next_fire_at(schedule.id, Duration::from_secs(5))
            .await;
    }
    let back = store.now().await.unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn(
        worker(store.clone())
            .poll_interval(Duration::from_millis(100))
            .run_until(stop.clone().cancelled_owned()),
    );
    // The first fire after the outage is the catch-up; note its last tick per workflow.
    let started = tokio::time::Instant::now();
    let caught_up: HashMap<String, chrono::DateTime<chrono::Utc>> = loop {
        let schedules = store.list_schedules().await.unwrap();
        if schedules.iter().all(|s| s.last_fire_at.is_some()) {
            break schedules
                .into_iter()
                .map(|s| (s.workflow_name.clone(), s.last_fire_at.unwrap_or(back)))
                .collect();
        }
        assert!(started.elapsed() < WAIT, "the schedules never fired");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    stop.cancel();
    running.await.unwrap().unwrap();

    let mut counts = Vec::new();
    for name in ["once", "thrice"] {
        let executions = store
            .list_executions(ListExecutionsParams {
                workflow: Some(WorkflowRef::Name(name.into())),
                limit: 1000,
                ..Default::default()
            })
            .await
            .unwrap();
        // The catch-up fire's ticks, not the regular ones that followed it.
        counts.push(
            executions
                .iter()
                .filter(|e| e.scheduled_for.is_some_and(|t| t <= caught_up[name]))
                .count(),
        );
    }
    assert_eq!(
        counts,
        vec![1, 3],
        "executions for the missed ticks, per schedule"
    );
    for (name, last) in caught_up {
        assert!(
            last >= back - chrono::Duration::seconds(1),
            "{name} fired stale ticks"
        );
    }
}

/// Bad cron expressions, time zones, catch-up counts and workflows are refused with an error
/// naming them, and nothing is stored.
pub async fn invalid_schedules_are_rejected_and_nothing_is_written(store: impl Store + Clone) {
    quick_workflow(&store).await;
    let create = |workflow: &str, cron: &str, tz: &str, catch_up| {
        let store = store.clone();
        let (workflow, cron, tz) = (workflow.to_owned(), cron.to_owned(), tz.to_owned());
        async move {
            let mut schedule = NewSchedule::new(workflow, cron);
            schedule.timezone = tz;
            schedule.catch_up = catch_up;
            Client::new(store)
                .create_schedule(schedule)
                .await
                .unwrap_err()
                .to_string()
        }
    };
    let err = create("tick", "every day", "UTC", 1).await;
    assert!(
        err.starts_with("invalid cron expression \"every day\""),
        "{err}"
    );
    let err = create("tick", "0 9 * * *", "Europe/Nowhere", 1).await;
    assert!(
        err.starts_with("unknown time zone \"Europe/Nowhere\""),
        "{err}"
    );
    let err = create("tick", "0 9 * * *", "UTC", 0).await;
    assert_eq!(err, "catch_up must be at least 1");
    let err = create("missing", "0 9 * * *", "UTC", 1).await;
    assert_eq!(err, "workflow \"missing\" not found");
    assert!(store.list_schedules().await.unwrap().is_empty());
    let unknown = crate::ScheduleId(uuid::Uuid::new_v4());
    for err in [
        store.pause_schedule(unknown).await.unwrap_err(),
        store.resume_schedule(unknown, None).await.unwrap_err(),
        store.get_schedule(unknown).await.unwrap_err(),
    ] {
        assert_eq!(err.to_string(), format!("schedule {unknown} not found"));
    }
}

/// A resume sets the paused schedule's next tick in the same write that enables it, and
/// leaves an enabled schedule's tick as it is; pausing keeps the tick.
pub async fn resuming_sets_the_next_tick_in_one_write_and_leaves_an_enabled_schedule_alone(
    store: impl Store + Clone,
) {
    quick_workflow(&store).await;
    let client = Client::new(store.clone());
    let schedule = client
        .create_schedule(NewSchedule::new("tick", "0 9 * * *"))
        .await
        .unwrap();
    let tick = schedule.next_fire_at.expect("a first tick");
    let week_later = tick + chrono::Duration::days(7);

    let same = store
        .resume_schedule(schedule.id, Some(week_later))
        .await
        .unwrap();
    assert!(same.enabled);
    assert_eq!(
        same.next_fire_at,
        Some(tick),
        "an enabled schedule is left alone"
    );
    let paused = store.pause_schedule(schedule.id).await.unwrap();
    assert!(!paused.enabled);
    assert_eq!(paused.next_fire_at, Some(tick));
    let resumed = store
        .resume_schedule(schedule.id, Some(week_later))
        .await
        .unwrap();
    assert!(resumed.enabled);
    assert_eq!(resumed.next_fire_at, Some(week_later));
    assert_eq!(store.get_schedule(schedule.id).await.unwrap(), resumed);

    // The client resumes from the first tick after now.
    store.pause_schedule(schedule.id).await.unwrap();
    let before = store.now().await.unwrap();
    let resumed = client.resume_schedule(schedule.id).await.unwrap();
    let next = resumed.next_fire_at.expect("a next tick");
    assert!(resumed.enabled);
    assert!(
        next > before && next <= before + chrono::Duration::days(1),
        "{next} is not the first 09:00 after {before}"
    );
}

/// The client validates a definition against its node types before saving it: one its
/// registry lacks is refused with the node named, and nothing is written.
pub async fn the_client_saves_only_workflows_valid_for_its_node_types(store: impl Store + Clone) {
    let definition: crate::WorkflowDefinition = serde_json::from_value(json!({
        "name": "echoing",
        "nodes": [{"id": "start", "type": "trigger"}, {"id": "say", "type": "echo"}],
        "edges": [{"from": "start", "to": "say"}]
    }))
    .unwrap();
    let builtin = Client::new(store.clone());
    let err = builtin
        .save_workflow(definition.clone())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("say") && err.contains("echo"), "{err}");
    let missing = store
        .get_workflow(&WorkflowRef::Name("echoing".into()))
        .await
        .unwrap_err();
    assert!(
        matches!(missing, StoreError::NotFound { .. }),
        "{missing:?}"
    );

    let with_echo = Client::with_registry(store.clone(), nodes::registry());
    let saved = with_echo.save_workflow(definition).await.unwrap();
    assert_eq!((saved.name.as_str(), saved.version), ("echoing", 1));
    assert_eq!(with_echo.workflow("echoing").await.unwrap(), saved);
}
