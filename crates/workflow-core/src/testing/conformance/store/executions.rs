//! Executions: starting, reading, listing, queue statistics and pruning.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::json;

use crate::store::Advance;
use crate::testing::TestStore;
use crate::testing::conformance::{
    LEASE, RecordOne, WAIT, WORKER, claim_one, completed_run, record, start,
};
use crate::testing::fixture::{self, workflow};
use crate::testing::nodes;
use crate::{
    ExecutionId, ExecutionStatus, ListExecutionsParams, StartExecutionParams, Store, StoreError,
    WorkflowRef,
};

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
            before: None,
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
            before: None,
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

/// Pages of a listing, each after the cursor where the previous one ended, return every
/// execution exactly once, newest first, with filters applied on every page.
pub async fn listing_pages_through_every_execution_once_by_cursor(store: impl Store) {
    let registry = nodes::registry();
    fixture::hello().save(&store, &registry).await;
    workflow("other").save(&store, &registry).await;
    let mut started = HashSet::new();
    for i in 0..7 {
        started.insert(start(&store, "hello", json!({"i": i})).await);
        start(&store, "other", json!({})).await;
    }
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let page = store
            .list_executions(ListExecutionsParams {
                status: None,
                workflow: Some(WorkflowRef::Name("hello".into())),
                limit: 3,
                before,
            })
            .await
            .unwrap();
        assert!(page.len() <= 3);
        let Some(last) = page.last() else { break };
        before = Some(crate::ExecutionCursor::after(last));
        seen.extend(page);
    }
    let ids: Vec<ExecutionId> = seen.iter().map(|e| e.id).collect();
    assert_eq!(ids.len(), 7, "every execution once: {ids:?}");
    assert_eq!(ids.iter().copied().collect::<HashSet<_>>(), started);
    assert!(
        seen.windows(2).all(|w| w[0].created_at >= w[1].created_at),
        "newest first across pages"
    );
}
