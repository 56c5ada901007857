//! Bulk actions by filter through the Client: what matches, idempotence, and that nothing
//! else is touched.

use serde_json::{Value, json};

use crate::store::Advance;
use crate::testing::conformance::{
    LEASE, RecordOne, WORKER, claim_one, quick_workflow, record, start,
};
use crate::testing::fixture::workflow;
use crate::testing::nodes;
use crate::{
    BulkOutcome, Client, ExecutionFilter, ExecutionId, ExecutionStatus, RetryRequest, Store,
    StoreError, WorkflowRef,
};

/// Starts an execution of `name` and ends it as `status` with `error`, through a claim and a
/// step as a worker would.
async fn ended(
    store: &impl Store,
    name: &str,
    status: ExecutionStatus,
    error: Option<&str>,
) -> ExecutionId {
    let id = start(store, name, json!({})).await;
    let claimed = claim_one(store, WORKER, LEASE).await;
    assert_eq!(claimed.execution.id, id);
    let finish = Advance::Finish {
        status,
        output: (status == ExecutionStatus::Completed).then(|| json!({})),
        error: error.map(str::to_owned),
    };
    store
        .record_step(record(&claimed, Vec::new(), finish))
        .await
        .unwrap();
    id
}

async fn status(store: &impl Store, id: ExecutionId) -> Option<ExecutionStatus> {
    match store.get_execution(id).await {
        Ok(detail) => Some(detail.execution.status),
        Err(StoreError::NotFound { .. }) => None,
        Err(err) => panic!("{err}"),
    }
}

/// Count, cancel, retry and delete act on what the filter matches and nothing else, say how
/// many they matched and changed, and change nothing when run again.
pub async fn bulk_actions_touch_only_what_matches_and_repeat_as_no_ops(store: impl Store + Clone) {
    quick_workflow(&store).await;
    workflow("other")
        .node("work", "echo", Value::Null)
        .edge("start", "work")
        .save(&store, &nodes::registry())
        .await;
    let client = Client::with_registry(store.clone(), nodes::registry());
    let failed = ExecutionStatus::Failed;
    let unavailable = ended(&store, "tick", failed, Some("HTTP 503 from billing")).await;
    let bad_input = ended(&store, "tick", failed, Some("bad input")).await;
    let done = ended(&store, "tick", ExecutionStatus::Completed, None).await;
    let other = ended(&store, "other", failed, Some("http 503")).await;
    let pending = start(&store, "tick", json!({})).await;

    let tick = || Some(WorkflowRef::Name("tick".into()));
    let of_tick = ExecutionFilter {
        workflow: tick(),
        ..Default::default()
    };
    assert_eq!(client.count_matching(&of_tick).await.unwrap(), 4);
    let outage = ExecutionFilter {
        statuses: vec![failed],
        error_contains: Some("Http 503".into()),
        ..Default::default()
    };
    assert_eq!(client.count_matching(&outage).await.unwrap(), 2);
    let everything = client.count_matching(&ExecutionFilter::default()).await;
    assert_eq!(everything.unwrap(), 5);
    let nope = ExecutionFilter {
        workflow: Some(WorkflowRef::Name("nope".into())),
        ..Default::default()
    };
    let err = client.count_matching(&nope).await.unwrap_err();
    assert_eq!(err.to_string(), "workflow \"nope\" not found");

    // Pages: in id order, each after the last id of the one before.
    let all = ExecutionFilter::default();
    let first = store.matching_executions(&all, None, 3).await.unwrap();
    let rest = store
        .matching_executions(&all, first.last().copied(), 3)
        .await
        .unwrap();
    assert_eq!((first.len(), rest.len()), (3, 2));
    let mut walked = [first, rest].concat();
    let mut sorted = walked.clone();
    sorted.sort_unstable_by_key(|id| id.to_string());
    assert_eq!(walked, sorted, "in id order");
    walked.dedup();
    assert_eq!(walked.len(), 5, "no id twice");

    // Cancel the pending executions of tick: one; again, none.
    let waiting = ExecutionFilter {
        statuses: vec![ExecutionStatus::Pending],
        workflow: tick(),
        ..Default::default()
    };
    let cancelled = client.cancel_matching(&waiting, "cleanup").await.unwrap();
    assert_eq!(
        cancelled,
        BulkOutcome {
            matched: 1,
            affected: 1
        }
    );
    let detail = store.get_execution(pending).await.unwrap();
    assert_eq!(detail.execution.status, ExecutionStatus::Cancelled);
    assert_eq!(detail.execution.error.as_deref(), Some("cleanup"));
    let again = client.cancel_matching(&waiting, "cleanup").await.unwrap();
    assert_eq!(again, BulkOutcome::default());
    // Ended executions match a cancel's filter but are not cancelled.
    let ended_ones = client.cancel_matching(&outage, "late").await.unwrap();
    assert_eq!(
        ended_ones,
        BulkOutcome {
            matched: 2,
            affected: 0
        }
    );
    assert_eq!(status(&store, unavailable).await, Some(failed));

    // Retry what failed with a 503, in either workflow; the other failure stays.
    let retried = client
        .retry_matching(&outage, &RetryRequest::new("ops"))
        .await
        .unwrap();
    assert_eq!(
        retried,
        BulkOutcome {
            matched: 2,
            affected: 2
        }
    );
    for id in [unavailable, other] {
        let detail = store.get_execution(id).await.unwrap();
        assert_eq!(detail.execution.status, ExecutionStatus::Pending);
        assert_eq!(detail.retries.len(), 1);
        assert_eq!(detail.retries[0].requested_by, "ops");
    }
    assert_eq!(status(&store, bad_input).await, Some(failed));
    let again = client
        .retry_matching(&outage, &RetryRequest::new("ops"))
        .await
        .unwrap();
    assert_eq!(
        again,
        BulkOutcome::default(),
        "now pending: no longer matched"
    );

    // Delete tick's executions: those that ended go; the retried one, pending, stays.
    let deleted = client.delete_matching(&of_tick).await.unwrap();
    assert_eq!(
        deleted,
        BulkOutcome {
            matched: 4,
            affected: 3
        }
    );
    for id in [bad_input, done, pending] {
        assert_eq!(status(&store, id).await, None, "{id} deleted");
    }
    assert_eq!(
        status(&store, unavailable).await,
        Some(ExecutionStatus::Pending)
    );
    assert_eq!(status(&store, other).await, Some(ExecutionStatus::Pending));
    let again = client.delete_matching(&of_tick).await.unwrap();
    assert_eq!(
        again,
        BulkOutcome {
            matched: 1,
            affected: 0
        }
    );
}
