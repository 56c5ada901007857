//! Business keys: idempotent starts, key reuse once an execution ended, starts and
//! signal-with-starts racing on one key, and retries that would take back a key.

use std::collections::{HashMap, HashSet};

use futures_util::future::join_all;
use serde_json::json;

use crate::testing::conformance::quick_workflow;
use crate::testing::fixture::workflow;
use crate::testing::nodes;
use crate::{
    Client, ExecutionId, ExecutionStatus, KeyReuse, MAX_KEY_CHARS, RetryRequest,
    SignalWithStartParams, StartExecutionParams, StartedExecution, Store, StoreError,
};

async fn start_keyed(store: &impl Store, key: &str, reuse: KeyReuse) -> StartedExecution {
    store
        .start_execution(
            StartExecutionParams::new("tick", json!({"key": key}))
                .key(key)
                .key_reuse(reuse),
        )
        .await
        .expect("start with a key")
}

/// A second start with a key returns the execution that holds it, unchanged; other keys,
/// other workflows and starts without a key start executions of their own; a key that is
/// empty or too long is refused, naming the rule.
pub async fn a_start_with_a_key_returns_the_execution_that_holds_it(store: impl Store) {
    quick_workflow(&store).await;
    workflow("other")
        .node("work", "echo", serde_json::Value::Null)
        .edge("start", "work")
        .save(&store, &nodes::registry())
        .await;

    let first = start_keyed(&store, "order-7", KeyReuse::Never).await;
    assert!(first.created);
    assert_eq!(first.execution.key.as_deref(), Some("order-7"));
    assert_eq!(first.execution.status, ExecutionStatus::Pending);

    // A retried start (say its answer was lost) with another input.
    let again = store
        .start_execution(StartExecutionParams::new("tick", json!({"n": 2})).key("order-7"))
        .await
        .unwrap();
    assert!(!again.created);
    assert_eq!(again.execution.id, first.execution.id);
    assert_eq!(again.execution.input, json!({"key": "order-7"}));

    let other_key = start_keyed(&store, "order-8", KeyReuse::Never).await;
    assert!(other_key.created);
    let other_workflow = store
        .start_execution(StartExecutionParams::new("other", json!({})).key("order-7"))
        .await
        .unwrap();
    assert!(other_workflow.created);
    let unkeyed = [
        store
            .start_execution(StartExecutionParams::new("tick", json!({})))
            .await
            .unwrap(),
        store
            .start_execution(StartExecutionParams::new("tick", json!({})))
            .await
            .unwrap(),
    ];
    assert!(
        unkeyed
            .iter()
            .all(|s| s.created && s.execution.key.is_none())
    );
    assert_ne!(unkeyed[0].execution.id, unkeyed[1].execution.id);
    let ids: HashSet<ExecutionId> = [
        first.execution.id,
        other_key.execution.id,
        other_workflow.execution.id,
        unkeyed[0].execution.id,
        unkeyed[1].execution.id,
    ]
    .into();
    assert_eq!(ids.len(), 5);

    // The key is read back with the execution.
    let read = store.get_execution(first.execution.id).await.unwrap();
    assert_eq!(read.execution.key.as_deref(), Some("order-7"));

    for key in [String::new(), "k".repeat(MAX_KEY_CHARS + 1)] {
        let chars = key.chars().count();
        let err = store
            .start_execution(StartExecutionParams::new("tick", json!({})).key(key))
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::KeyLength { chars: c } if c == chars),
            "{err}"
        );
        assert_eq!(
            err.to_string(),
            format!("a business key must be 1 to 512 characters, not {chars}")
        );
    }
    // The longest key is accepted, counted in characters, not bytes.
    let longest = "é".repeat(MAX_KEY_CHARS);
    let started = store
        .start_execution(StartExecutionParams::new("tick", json!({})).key(longest.as_str()))
        .await
        .unwrap();
    assert_eq!(started.execution.key, Some(longest));
}

/// Once the key's execution ended, `Never` keeps returning it and `AfterEnd` starts a new one,
/// which from then on is the one both return while it runs.
pub async fn an_ended_execution_keeps_its_key_or_hands_it_on_as_key_reuse_says(store: impl Store) {
    quick_workflow(&store).await;
    let first = start_keyed(&store, "nightly", KeyReuse::AfterEnd).await;
    // While it has not ended, both policies return it.
    for reuse in [KeyReuse::Never, KeyReuse::AfterEnd] {
        let again = start_keyed(&store, "nightly", reuse).await;
        assert_eq!(
            (again.created, again.execution.id),
            (false, first.execution.id)
        );
    }
    store
        .cancel_execution(first.execution.id, "done")
        .await
        .unwrap();

    let kept = start_keyed(&store, "nightly", KeyReuse::Never).await;
    assert!(!kept.created);
    assert_eq!(kept.execution.id, first.execution.id);
    assert_eq!(kept.execution.status, ExecutionStatus::Cancelled);

    let second = start_keyed(&store, "nightly", KeyReuse::AfterEnd).await;
    assert!(second.created);
    assert_ne!(second.execution.id, first.execution.id);
    assert_eq!(second.execution.key.as_deref(), Some("nightly"));
    for reuse in [KeyReuse::Never, KeyReuse::AfterEnd] {
        let again = start_keyed(&store, "nightly", reuse).await;
        assert_eq!(
            (again.created, again.execution.id),
            (false, second.execution.id)
        );
    }
}

/// Many starts with one key at once, from as many connections, create one execution, and
/// every one of them answers with it.
pub async fn concurrent_starts_with_one_key_create_one_execution(store: impl Store + Clone) {
    quick_workflow(&store).await;
    const KEYS: usize = 10;
    const RACERS: usize = 6;
    for reuse in [KeyReuse::Never, KeyReuse::AfterEnd] {
        let starts = (0..KEYS * RACERS).map(|i| {
            let store = store.clone();
            let key = format!("{}-{}", reuse.as_str(), i % KEYS);
            tokio::spawn(async move { (key.clone(), start_keyed(&store, &key, reuse).await) })
        });
        let mut by_key: HashMap<String, Vec<StartedExecution>> = HashMap::new();
        for started in join_all(starts).await {
            let (key, started) = started.expect("a start task");
            by_key.entry(key).or_default().push(started);
        }
        assert_eq!(by_key.len(), KEYS);
        for (key, starts) in by_key {
            let ids: HashSet<ExecutionId> = starts.iter().map(|s| s.execution.id).collect();
            assert_eq!(ids.len(), 1, "key {key}: {ids:?}");
            let created = starts.iter().filter(|s| s.created).count();
            assert_eq!(
                created, 1,
                "key {key}: {created} starts say they created it"
            );
        }
    }
    let all = store
        .list_executions(crate::ListExecutionsParams {
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 2 * KEYS);
}

/// Signal-with-start from many connections at once creates one execution per key holding
/// every signal; a key whose execution ended refuses the signal unless it may be reused, and
/// a call without a key is refused before anything is written.
pub async fn signal_with_start_creates_one_execution_holding_every_signal(
    store: impl Store + Clone,
) {
    quick_workflow(&store).await;
    const KEYS: usize = 8;
    const RACERS: usize = 6;
    let sends = (0..KEYS * RACERS).map(|i| {
        let store = store.clone();
        tokio::spawn(async move {
            let key = format!("cart-{}", i % KEYS);
            let start = StartExecutionParams::new("tick", json!({"cart": i % KEYS})).key(&key);
            let sent = store
                .signal_with_start(SignalWithStartParams::new(
                    start,
                    "item",
                    json!({"sender": i}),
                ))
                .await
                .expect("signal with start");
            (key, sent)
        })
    });
    let mut by_key: HashMap<String, Vec<crate::SignalledExecution>> = HashMap::new();
    for sent in join_all(sends).await {
        let (key, sent) = sent.expect("a send task");
        by_key.entry(key).or_default().push(sent);
    }
    assert_eq!(by_key.len(), KEYS);
    for (key, sends) in &by_key {
        let ids: HashSet<ExecutionId> = sends.iter().map(|s| s.started.execution.id).collect();
        assert_eq!(ids.len(), 1, "key {key}: {ids:?}");
        assert_eq!(sends.iter().filter(|s| s.started.created).count(), 1);
        let id = *ids.iter().next().unwrap();
        let detail = store.get_execution(id).await.unwrap();
        let mut senders: Vec<i64> = detail
            .signals
            .iter()
            .map(|s| s.payload["sender"].as_i64().unwrap())
            .collect();
        senders.sort_unstable();
        let mut expected: Vec<i64> = sends
            .iter()
            .map(|s| s.signal.payload["sender"].as_i64().unwrap())
            .collect();
        expected.sort_unstable();
        assert_eq!(senders, expected, "key {key}: every signal, once");
        assert_eq!(senders.len(), RACERS);
        assert!(detail.signals.iter().all(|s| s.name == "item"));
    }

    // An ended execution keeps its key: the signal is refused, naming it.
    let ended = by_key["cart-0"][0].started.execution.id;
    store.cancel_execution(ended, "abandoned").await.unwrap();
    let signal = |reuse| {
        SignalWithStartParams::new(
            StartExecutionParams::new("tick", json!({}))
                .key("cart-0")
                .key_reuse(reuse),
            "item",
            json!({"sender": "late"}),
        )
    };
    let err = store
        .signal_with_start(signal(KeyReuse::Never))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::AlreadyEnded { execution_id, status: ExecutionStatus::Cancelled } if execution_id == ended),
        "{err}"
    );
    assert_eq!(
        store.get_execution(ended).await.unwrap().signals.len(),
        RACERS
    );
    // Reused after it ended: a new execution gets the signal.
    let reused = store
        .signal_with_start(signal(KeyReuse::AfterEnd))
        .await
        .unwrap();
    assert!(reused.started.created);
    assert_ne!(reused.started.execution.id, ended);
    assert_eq!(reused.signal.execution_id, reused.started.execution.id);

    // An idempotency key stores the signal once.
    let mut once = signal(KeyReuse::Never);
    once.idempotency_key = Some("late-1".into());
    let first = store.signal_with_start(once.clone()).await.unwrap();
    let second = store.signal_with_start(once).await.unwrap();
    assert_eq!(first.signal.id, second.signal.id);

    let before = store
        .list_executions(crate::ListExecutionsParams {
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .len();
    let keyless = SignalWithStartParams::new(
        StartExecutionParams::new("tick", json!({})),
        "item",
        json!({}),
    );
    let err = store.signal_with_start(keyless).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "a business key is required to signal with start"
    );
    let after = store
        .list_executions(crate::ListExecutionsParams {
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .len();
    assert_eq!(before, after);
}

/// A retry makes an ended execution hold its key again, so it is refused while another
/// execution holds the key, naming that one, and goes through once it ended.
pub async fn a_retry_cannot_take_back_a_key_another_execution_holds(store: impl Store + Clone) {
    quick_workflow(&store).await;
    let client = Client::with_registry(store.clone(), nodes::registry());
    let first = start_keyed(&store, "invoice-3", KeyReuse::AfterEnd)
        .await
        .execution
        .id;
    store.cancel_execution(first, "wrong amount").await.unwrap();
    let second = start_keyed(&store, "invoice-3", KeyReuse::AfterEnd)
        .await
        .execution
        .id;

    let err = client
        .retry(first, RetryRequest::new("operator"))
        .await
        .unwrap_err();
    match err {
        crate::Error::Store(StoreError::KeyInUse { key, holder, .. }) => {
            assert_eq!((key.as_str(), holder), ("invoice-3", second));
        }
        other => panic!("expected KeyInUse, got {other}"),
    }
    let detail = store.get_execution(first).await.unwrap();
    assert_eq!(detail.execution.status, ExecutionStatus::Cancelled);
    assert!(detail.retries.is_empty(), "a refused retry records nothing");

    store.cancel_execution(second, "superseded").await.unwrap();
    let retried = client
        .retry(first, RetryRequest::new("operator"))
        .await
        .unwrap();
    assert_eq!(retried.status, ExecutionStatus::Pending);
    // It holds the key again.
    let again = start_keyed(&store, "invoice-3", KeyReuse::AfterEnd).await;
    assert_eq!((again.created, again.execution.id), (false, first));
}
