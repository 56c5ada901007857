//! Retries: an ended execution run again from where it stopped, from the start, or from a
//! node, with its history kept.

use std::collections::HashMap;

use serde_json::{Value, json};

use crate::testing::conformance::{WAIT, start, worker};
use crate::testing::fixture::{run_until_terminal, workflow};
use crate::testing::nodes::{self, Count, Switch};
use crate::{
    Client, Error, ExecutionDetail, ExecutionStatus, NodeRunStatus, RetryError, RetryFrom,
    RetryRequest, Store, StoreError,
};

/// Node id -> (attempt, status, superseded by) of each run, in the order recorded.
fn history(detail: &ExecutionDetail) -> Vec<(&str, i32, NodeRunStatus, Option<i64>)> {
    detail
        .node_runs
        .iter()
        .map(|r| (r.node_id.as_str(), r.attempt, r.status, r.superseded_by))
        .collect()
}

/// A retry runs a failed execution again from its failed node: the node before it keeps its
/// result and does not run again, the failed one runs from attempt 1, and the history keeps
/// the first attempt marked superseded, with who asked. From the start every node runs again;
/// a completed execution, or an unknown node, is refused with an error that says so.
pub async fn a_retry_reruns_a_failed_execution_from_where_it_stopped(store: impl Store + Clone) {
    let (first, last, switch) = (Count::default(), Count::default(), Switch::default());
    let registry = nodes::registry()
        .with("first", first.clone())
        .with("last", last.clone())
        .with("switch", switch.clone());
    workflow("repairable")
        .node("a", "first", Value::Null)
        .node("b", "switch", Value::Null)
        .node("c", "last", Value::Null)
        .edge("start", "a")
        .edge("a", "b")
        .edge("b", "c")
        .save(&store, &registry)
        .await;
    let run = |ids: Vec<_>| {
        let worker = worker(store.clone()).nodes(registry.clone());
        let store = store.clone();
        async move { run_until_terminal(worker, &store, &ids, WAIT).await }
    };
    let client = Client::with_registry(store.clone(), registry.clone());

    let id = start(&store, "repairable", json!({})).await;
    let failed = run(vec![id]).await.remove(0);
    assert_eq!(failed.execution.status, ExecutionStatus::Failed);

    switch.set_fixed(true);
    let retried = client
        .retry(id, RetryRequest::new("operator ada"))
        .await
        .expect("retry");
    assert_eq!(retried.status, ExecutionStatus::Pending);
    assert_eq!(retried.error, None);
    let done = run(vec![id]).await.remove(0);
    assert_eq!(
        done.execution.status,
        ExecutionStatus::Completed,
        "{done:?}"
    );
    assert_eq!(done.execution.error, None);
    assert_eq!(
        first.runs().get(&id),
        Some(&1),
        "a completed: it keeps its result"
    );
    assert_eq!(last.runs().get(&id), Some(&1));
    assert_eq!(done.retries.len(), 1);
    let retry = &done.retries[0];
    assert_eq!(retry.requested_by, "operator ada");
    assert_eq!(retry.from_status, ExecutionStatus::Failed);
    assert_eq!(retry.from, RetryFrom::Stopped);
    assert_eq!(retry.workflow_version, 1);
    use NodeRunStatus::*;
    assert_eq!(
        history(&done),
        [
            ("start", 1, Completed, None),
            ("a", 1, Completed, None),
            ("b", 1, Failed, Some(retry.id)),
            ("b", 1, Completed, None),
            ("c", 1, Completed, None),
        ]
    );

    // A completed execution is not retried, and nothing is written.
    let refused = client.retry(id, RetryRequest::new("operator ada")).await;
    assert!(
        matches!(
            refused,
            Err(Error::Store(StoreError::NotRetryable {
                status: ExecutionStatus::Completed,
                ..
            }))
        ),
        "{refused:?}"
    );
    assert_eq!(store.get_execution(id).await.unwrap().retries.len(), 1);

    // From the start, after a node that is not in the workflow was refused.
    switch.set_fixed(false);
    let again = start(&store, "repairable", json!({})).await;
    assert_eq!(
        run(vec![again]).await[0].execution.status,
        ExecutionStatus::Failed
    );
    let unknown = client
        .retry(
            again,
            RetryRequest::new("ops").from(RetryFrom::Node("zz".into())),
        )
        .await;
    match unknown {
        Err(Error::Retry(err @ RetryError::UnknownNode { .. })) => assert_eq!(
            err.to_string(),
            "workflow \"repairable\" version 1 has no node \"zz\" to retry from"
        ),
        other => panic!("expected an unknown node, got {other:?}"),
    }
    switch.set_fixed(true);
    client
        .retry(again, RetryRequest::new("ops").from(RetryFrom::Start))
        .await
        .expect("retry from the start");
    let done = run(vec![again]).await.remove(0);
    assert_eq!(done.execution.status, ExecutionStatus::Completed);
    assert_eq!(
        first.runs().get(&again),
        Some(&2),
        "from the start, a runs again"
    );
    let superseded: HashMap<&str, usize> =
        history(&done)
            .iter()
            .fold(HashMap::new(), |mut by_node, (node, _, _, superseded)| {
                if superseded.is_some() {
                    *by_node.entry(*node).or_default() += 1;
                }
                by_node
            });
    assert_eq!(
        superseded,
        HashMap::from([("start", 1), ("a", 1), ("b", 1)])
    );
}

/// From a node: it and what is downstream run again, what is upstream keeps its result; of
/// two retries at once one wins and the other is told the execution is pending. A cancelled
/// execution is retried the same way.
pub async fn a_retry_from_a_node_reruns_it_and_what_follows(store: impl Store + Clone) {
    let (first, switch) = (Count::default(), Switch::default());
    let registry = nodes::registry()
        .with("first", first.clone())
        .with("switch", switch.clone());
    workflow("rerun")
        .node("a", "first", Value::Null)
        .node("b", "echo", Value::Null)
        .node("c", "switch", Value::Null)
        .edge("start", "a")
        .edge("a", "b")
        .edge("b", "c")
        .save(&store, &registry)
        .await;
    let run = |ids: Vec<_>| {
        let worker = worker(store.clone()).nodes(registry.clone());
        let store = store.clone();
        async move { run_until_terminal(worker, &store, &ids, WAIT).await }
    };
    let client = Client::with_registry(store.clone(), registry.clone());
    let id = start(&store, "rerun", json!({})).await;
    assert_eq!(
        run(vec![id]).await[0].execution.status,
        ExecutionStatus::Failed
    );

    switch.set_fixed(true);
    let from_b = || RetryRequest::new("ops").from(RetryFrom::Node("b".into()));
    let (one, two) = tokio::join!(client.retry(id, from_b()), client.retry(id, from_b()));
    let pending = |r: &crate::Result<crate::Execution>| {
        matches!(
            r,
            Err(Error::Store(StoreError::NotRetryable {
                status: ExecutionStatus::Pending,
                ..
            }))
        )
    };
    assert!(
        (one.is_ok() && pending(&two)) || (two.is_ok() && pending(&one)),
        "{one:?} {two:?}"
    );
    let done = run(vec![id]).await.remove(0);
    assert_eq!(done.execution.status, ExecutionStatus::Completed);
    assert_eq!(first.runs().get(&id), Some(&1), "a is upstream of b: kept");
    let retry = done.retries[0].id;
    assert_eq!(done.retries.len(), 1);
    assert_eq!(done.retries[0].from, RetryFrom::Node("b".into()));
    use NodeRunStatus::*;
    assert_eq!(
        history(&done),
        [
            ("start", 1, Completed, None),
            ("a", 1, Completed, None),
            ("b", 1, Completed, Some(retry)),
            ("c", 1, Failed, Some(retry)),
            ("b", 1, Completed, None),
            ("c", 1, Completed, None),
        ]
    );

    // Cancelled before it ran: a retry runs it all.
    let cancelled = start(&store, "rerun", json!({})).await;
    client
        .cancel(cancelled, "by mistake")
        .await
        .expect("cancel");
    let retried = client
        .retry(cancelled, RetryRequest::new("ops"))
        .await
        .expect("retry a cancelled execution");
    assert_eq!(retried.status, ExecutionStatus::Pending);
    let done = run(vec![cancelled]).await.remove(0);
    assert_eq!(done.execution.status, ExecutionStatus::Completed);
    assert_eq!(done.retries[0].from_status, ExecutionStatus::Cancelled);
    assert_eq!(first.runs().get(&cancelled), Some(&1));
}

/// A retry wakes an idle worker at once (PostgreSQL NOTIFY from the status trigger, or the
/// SQLite store's in-process hint), instead of at its next poll, ten minutes away. A store
/// that sends no hints (behind a transaction pooler) relies on polling, so there the worker
/// polls often.
pub async fn a_retry_wakes_an_idle_worker_at_once(store: impl Store + Clone) {
    let hints = store.wakeups().await.expect("wake-ups").is_some();
    let poll = if hints {
        std::time::Duration::from_secs(600)
    } else {
        std::time::Duration::from_millis(50)
    };
    let switch = Switch::default();
    let registry = nodes::registry().with("switch", switch.clone());
    workflow("repairable")
        .node("a", "switch", Value::Null)
        .edge("start", "a")
        .save(&store, &registry)
        .await;
    let id = start(&store, "repairable", json!({})).await;
    let idle = worker(store.clone())
        .nodes(registry.clone())
        .poll_interval(poll);
    let stop = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn(idle.run_until(stop.clone().cancelled_owned()));
    // Its first claims ran it to failure; from now on it waits for a hint or its next poll.
    let ended = wait_for_status(&store, id, ExecutionStatus::Failed).await;
    assert_eq!(ended.execution.status, ExecutionStatus::Failed);

    switch.set_fixed(true);
    Client::with_registry(store.clone(), registry)
        .retry(id, RetryRequest::new("ops"))
        .await
        .expect("retry");
    let done = wait_for_status(&store, id, ExecutionStatus::Completed).await;
    assert_eq!(done.retries.len(), 1);
    stop.cancel();
    running.await.unwrap().unwrap();
}

/// Waits (up to [`WAIT`]) until execution `id` is in `status`.
async fn wait_for_status(
    store: &impl Store,
    id: crate::ExecutionId,
    status: ExecutionStatus,
) -> ExecutionDetail {
    let started = tokio::time::Instant::now();
    loop {
        let detail = store.get_execution(id).await.unwrap();
        if detail.execution.status == status {
            return detail;
        }
        assert!(
            started.elapsed() < WAIT,
            "execution {id} is {} after {WAIT:?}, not {status}",
            detail.execution.status
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
