//! The conformance suite: each case is an async fn over any [`Store`], written once and run
//! against every store by [`conformance_tests!`](crate::conformance_tests). Two halves:
//!
//! - [`store`]: the driver contract, one module per entity of the [`Store`] trait (workflows,
//!   executions, keys, claims, leases, steps, signals, schedules), calling the store directly;
//! - [`worker`]: scenarios that run real workers over the store, one module per behaviour.
//!
//! Time that a case does not wait for on purpose is moved through
//! [`TestStore`](crate::testing::TestStore) instead of slept.

use std::time::Duration;

use serde_json::{Value, json};

use super::fixture::{self, workflow};
use super::nodes;
use crate::store::{
    Advance, ClaimParams, ClaimedExecution, NewNodeRun, RecordStep, RescueFilter, StepRecorded,
};
use crate::{
    ExecutionId, ExecutionStatus, NodeRunStatus, StartExecutionParams, Store, StoreError,
    WorkflowWorker,
};

pub mod store;
pub mod worker;

/// Stamps one `#[tokio::test]` per conformance case into a module named `$name`, laid out as
/// the suite is: `$name::store::claims::claim_respects_the_limit`,
/// `$name::worker::graphs::hello_workflow_completes_with_its_node_history`, and so on.
///
/// `$setup` is an async expression returning `(guard, store)`: the guard lives until the test
/// ends (a per-test database, say) and `store` is any `Store + Clone` that also implements
/// [`TestStore`](crate::testing::TestStore).
#[macro_export]
macro_rules! conformance_tests {
    ($name:ident, $setup:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            mod store {
                #[allow(unused_imports)]
                use super::*;

                $crate::conformance_tests!(@group $setup; store::workflows;
                    save_workflow_adds_a_version_per_save,
                    workflows_are_listed_by_name_and_read_at_any_version,
                    the_client_saves_only_workflows_valid_for_its_node_types,
                );
                $crate::conformance_tests!(@group $setup; store::executions;
                    start_execution_pins_the_latest_version,
                    start_execution_of_an_unknown_workflow_is_not_found,
                    get_execution_of_an_unknown_id_is_not_found,
                    list_executions_filters_by_status_and_workflow,
                    listing_pages_through_every_execution_once_by_cursor,
                    queue_stats_count_runnable_waiting_and_running_executions,
                    prune_deletes_only_executions_that_ended_long_enough_ago,
                );
                $crate::conformance_tests!(@group $setup; store::keys;
                    a_start_with_a_key_returns_the_execution_that_holds_it,
                    an_ended_execution_keeps_its_key_or_hands_it_on_as_key_reuse_says,
                    concurrent_starts_with_one_key_create_one_execution,
                    signal_with_start_creates_one_execution_holding_every_signal,
                    a_retry_cannot_take_back_a_key_another_execution_holds,
                );
                $crate::conformance_tests!(@group $setup; store::flow;
                    a_workflow_priority_is_the_default_and_a_start_may_override_it,
                    executions_join_their_concurrency_group,
                    a_full_group_holds_executions_until_a_place_frees,
                    a_claim_holds_what_its_limit_leaves_no_room_for,
                    concurrent_claims_never_pass_a_limit,
                    a_fair_window_lets_a_small_key_in_before_a_big_backlog,
                    saving_a_higher_limit_lets_held_executions_go,
                    ageing_raises_long_runnable_executions_to_the_top_priority,
                    a_rate_limit_gives_at_most_its_limit_per_period_and_key,
                    a_full_rate_limit_has_room_again_after_the_wait_it_gives,
                    concurrent_rate_takes_never_pass_the_limit,
                );
                $crate::conformance_tests!(@group $setup; store::items;
                    item_runs_are_fenced_recorded_once_and_superseded_by_a_retry,
                );
                $crate::conformance_tests!(@group $setup; store::children;
                    a_node_attempt_starts_one_child_and_the_parent_lists_it,
                );
                $crate::conformance_tests!(@group $setup; store::bulk;
                    bulk_actions_touch_only_what_matches_and_repeat_as_no_ops,
                );
                $crate::conformance_tests!(@group $setup; store::claims;
                    claim_marks_running_under_a_new_lease,
                    claim_respects_the_limit,
                    claim_prefers_higher_priority,
                    concurrent_claims_never_return_the_same_execution,
                    claims_count_rescues_until_a_step_is_recorded,
                    suspects_are_claimed_only_when_asked_for,
                    an_idle_claim_takes_a_suspect_alone_and_else_the_others,
                );
                $crate::conformance_tests!(@group $setup; store::leases;
                    expired_lease_is_reclaimed_with_a_new_token,
                    renew_leases_reports_lost_leases,
                );
                $crate::conformance_tests!(@group $setup; store::pauses;
                    a_paused_execution_is_never_claimed_until_resumed,
                    a_pause_asked_of_a_running_execution_is_told_to_its_holder_at_each_step,
                );
                $crate::conformance_tests!(@group $setup; store::steps;
                    stale_lease_token_cannot_record_a_step,
                    recording_the_same_attempt_twice_is_already_recorded,
                    a_consumed_signal_cannot_be_consumed_again,
                    steps_of_one_execution_in_one_batch_apply_in_order,
                    finishing_ends_the_execution_and_releases_the_lease,
                    retry_parks_the_execution_until_its_backoff,
                    record_steps_fences_each_step_on_its_own,
                );
                $crate::conformance_tests!(@group $setup; store::signals;
                    signals_are_stored_once_per_key_and_refused_for_ended_executions,
                );
                $crate::conformance_tests!(@group $setup; store::schedules;
                    invalid_schedules_are_rejected_and_nothing_is_written,
                    resuming_sets_the_next_tick_in_one_write_and_leaves_an_enabled_schedule_alone,
                    triggering_starts_an_execution_now_and_leaves_the_ticks_alone,
                );
            }

            mod worker {
                #[allow(unused_imports)]
                use super::*;

                $crate::conformance_tests!(@group $setup; worker::graphs;
                    hello_workflow_completes_with_its_node_history,
                    diamond_runs_branches_concurrently_and_joins_their_outputs,
                    branches_not_taken_are_skipped_and_joins_still_run,
                    condition_node_routes_each_execution_down_one_branch,
                    templates_fill_configs_from_the_input_and_upstream_outputs,
                    quick_chains_interleave_while_writing_but_never_exceed_the_concurrency,
                );
                $crate::conformance_tests!(@group $setup; worker::failures;
                    failing_nodes_fail_their_execution_and_the_worker_goes_on,
                    retryable_failure_is_retried_after_its_backoff,
                    exhausted_retries_fail_with_the_last_error,
                    poison_execution_is_failed_after_max_rescues,
                    deaths_in_company_do_not_quarantine,
                    an_output_over_the_node_output_limit_fails_its_node_at_once,
                );
                $crate::conformance_tests!(@group $setup; worker::workers;
                    workers_claim_only_executions_whose_node_types_they_have,
                    unrunnable_executions_are_counted_against_live_workers,
                    two_workers_run_each_node_exactly_once,
                    late_write_of_a_worker_whose_lease_was_taken_over_is_rejected,
                );
                $crate::conformance_tests!(@group $setup; worker::shutdown;
                    shutdown_interrupts_running_nodes_and_releases_the_execution,
                    shutdown_lets_running_nodes_finish_within_the_grace_period,
                    executions_claimed_ahead_are_released_at_shutdown,
                );
                $crate::conformance_tests!(@group $setup; worker::cancellation;
                    cancelling_ends_an_execution_at_once_and_only_once,
                    cancelling_a_running_code_node_kills_its_process,
                    a_cancel_stops_the_running_node_at_once_without_waiting_for_the_heartbeat,
                    an_execution_past_its_deadline_times_out_while_running,
                    a_deadline_is_enforced_when_the_worker_holding_it_died,
                );
                $crate::conformance_tests!(@group $setup; worker::retries;
                    a_retry_reruns_a_failed_execution_from_where_it_stopped,
                    a_retry_from_a_node_reruns_it_and_what_follows,
                    a_retry_wakes_an_idle_worker_at_once,
                );
                $crate::conformance_tests!(@group $setup; worker::pausing;
                    a_running_execution_pauses_at_its_next_step_and_resumes_where_it_stopped,
                    a_node_that_fails_for_good_pauses_its_execution_and_a_resume_reruns_it,
                    a_pause_asked_before_its_worker_died_is_honoured_by_the_rescuer,
                );
                $crate::conformance_tests!(@group $setup; worker::signals;
                    approval_runs_only_the_branch_the_signal_chose,
                    a_wait_for_signal_times_out_down_its_timeout_branch,
                    a_delay_resumes_on_time_after_a_worker_restart,
                    waiting_executions_hold_no_worker_slot,
                );
                $crate::conformance_tests!(@group $setup; worker::maps;
                    a_map_runs_each_item_once_at_most_max_parallel_at_once_in_order,
                    failing_items_retry_on_their_own_then_fail_the_map_or_are_collected,
                    a_map_whose_worker_died_resumes_with_its_finished_items,
                    a_paused_map_resumes_where_it_stopped,
                    a_map_runs_a_sub_workflow_per_item_without_holding_a_slot,
                );
                $crate::conformance_tests!(@group $setup; worker::subworkflows;
                    a_subworkflow_node_completes_with_its_childs_output,
                    a_failed_child_fails_its_node_and_a_retry_starts_a_new_child,
                    cancelling_a_parent_cancels_its_children_and_theirs,
                    a_workflow_calling_itself_without_end_stops_at_the_depth_limit,
                    a_retried_parent_starts_a_new_child_for_its_node,
                );
                $crate::conformance_tests!(@group $setup; worker::schedules;
                    every_tick_starts_one_execution_across_four_workers,
                    pausing_stops_a_schedule_and_resuming_fires_no_burst,
                    missed_ticks_fire_once_by_default_or_up_to_catch_up,
                );
                $crate::conformance_tests!(@group $setup; worker::flow;
                    a_rate_limited_node_waits_without_a_slot_and_starts_when_the_window_moves,
                    a_rate_limit_key_missing_from_the_input_fails_the_node,
                );
                $crate::conformance_tests!(@group $setup; worker::maintenance;
                    a_worker_with_prune_after_prunes_old_history,
                );
            }
        }
    };
    (@group $setup:expr; $kind:ident :: $group:ident; $($case:ident,)*) => {
        mod $group {
            #[allow(unused_imports)]
            use super::*;

            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let (_guard, store) = $setup.await;
                    $crate::testing::conformance::$kind::$group::$case(store).await;
                }
            )*
        }
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
        .execution
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
        ended_ago: Duration::ZERO,
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
    async fn record_step(&self, step: RecordStep) -> Result<StepRecorded, StoreError>;
}

#[async_trait::async_trait]
impl<S: Store + ?Sized> RecordOne for S {
    async fn record_step(&self, step: RecordStep) -> Result<StepRecorded, StoreError> {
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

/// Runs `worker` until execution `id` has recorded its first step, then shuts the worker
/// down; returns how long it all took. The trigger's run waits for the next write, so a
/// workflow has a quick node after it to make that step mean "the next node is starting".
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

async fn quick_workflow(store: &impl Store) {
    workflow("tick")
        .node("work", "echo", Value::Null)
        .edge("start", "work")
        .save(store, &nodes::registry())
        .await;
}
