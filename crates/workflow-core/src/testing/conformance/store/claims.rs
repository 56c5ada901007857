//! Claims: the lease a claim takes, its limit and order, concurrent claims, and how rescues and
//! suspects are counted and chosen.

use std::collections::HashSet;

use serde_json::json;

use crate::store::{Advance, RescueFilter};
use crate::testing::TestStore;
use crate::testing::conformance::{
    LEASE, RecordOne, WORKER, claim_one, claim_params, completed_run, keep_running, record, start,
};
use crate::testing::fixture;
use crate::testing::nodes;
use crate::{ExecutionId, ExecutionStatus, LeaseToken, StartExecutionParams, Store};

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
    urgent.priority = Some(5);
    let urgent = store.start_execution(urgent).await.unwrap().execution.id;
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
