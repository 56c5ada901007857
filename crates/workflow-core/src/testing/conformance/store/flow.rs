//! Flow control in the store: default priorities, concurrency groups (the key each execution
//! joins, executions held back while their group is full and let go as places free), fair
//! windows, priority ageing, and rate limits.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::{Value, json};

use crate::flow::{FAIR_WINDOW, RateRequest};
use crate::store::Advance;
use crate::testing::TestStore;
use crate::testing::conformance::{
    LEASE, RecordOne, WORKER, claim_one, claim_params, completed_run, record, start,
};
use crate::testing::fixture::workflow;
use crate::testing::nodes;
use crate::{
    ExecutionId, ExecutionStatus, StartExecutionParams, Store, StoreError, WorkflowVersion,
};

/// Saves workflow `name` (a trigger and an `echo`), with `concurrency` and `priority`.
async fn save(
    store: &impl Store,
    name: &str,
    concurrency: Option<(Option<u32>, Option<&str>)>,
    priority: Option<i32>,
) -> WorkflowVersion {
    let mut builder = workflow(name)
        .node("work", "echo", Value::Null)
        .edge("start", "work");
    if let Some((limit, key)) = concurrency {
        builder = builder.concurrency(limit, key);
    }
    if let Some(priority) = priority {
        builder = builder.priority(priority);
    }
    builder.save(store, &nodes::registry()).await
}

async fn execution(store: &impl Store, id: ExecutionId) -> crate::Execution {
    store.get_execution(id).await.unwrap().execution
}

async fn held(store: &impl Store, id: ExecutionId) -> bool {
    execution(store, id).await.held_since.is_some()
}

/// Claims up to `limit` executions and returns their ids.
async fn claim_ids(store: &impl Store, limit: u32) -> Vec<ExecutionId> {
    store
        .claim_executions(claim_params(WORKER, limit, LEASE))
        .await
        .unwrap()
        .into_iter()
        .map(|claimed| claimed.execution.id)
        .collect()
}

/// Ends a claimed execution as completed.
async fn finish(store: &impl Store, claimed: &crate::store::ClaimedExecution) {
    store
        .record_step(record(
            claimed,
            vec![completed_run("start", 1)],
            Advance::Finish {
                status: ExecutionStatus::Completed,
                output: None,
                error: None,
            },
        ))
        .await
        .unwrap();
}

/// An execution started without a priority takes its workflow's (else 0); a start may give
/// its own, and a schedule's executions take the workflow's too.
pub async fn a_workflow_priority_is_the_default_and_a_start_may_override_it(
    store: impl Store + Clone,
) {
    save(&store, "urgent", None, Some(7)).await;
    save(&store, "plain", None, None).await;
    let by_default = start(&store, "urgent", json!({})).await;
    assert_eq!(execution(&store, by_default).await.priority, 7);
    let given = store
        .start_execution(StartExecutionParams::new("urgent", json!({})).priority(-2))
        .await
        .unwrap()
        .execution;
    assert_eq!(given.priority, -2);
    let zero = store
        .start_execution(StartExecutionParams::new("urgent", json!({})).priority(0))
        .await
        .unwrap()
        .execution;
    assert_eq!(zero.priority, 0, "an explicit 0 is kept");
    let plain = start(&store, "plain", json!({})).await;
    assert_eq!(execution(&store, plain).await.priority, 0);

    let client = crate::Client::new(store.clone());
    let schedule = client
        .create_schedule(crate::NewSchedule::new("urgent", "0 0 1 1 *"))
        .await
        .unwrap();
    let fired = client.trigger_schedule(schedule.id).await.unwrap();
    assert_eq!(fired.priority, 7);
}

/// An execution joins its workflow's concurrency group: the key given at start, else the
/// value at the workflow's key path in its input (a string as is, anything else as JSON;
/// numbers index arrays), else the workflow's one group. An input without the value, a key
/// for a workflow without concurrency, and a key too long are refused with what is wrong,
/// and nothing is written.
pub async fn executions_join_their_concurrency_group(store: impl Store) {
    save(
        &store,
        "per_customer",
        Some((Some(2), Some("customer.id"))),
        None,
    )
    .await;
    save(&store, "per_line", Some((Some(2), Some("lines.1"))), None).await;
    save(&store, "one_at_a_time", Some((Some(1), None)), None).await;
    save(&store, "free", None, None).await;
    let key_of = |input: Value| {
        let store = &store;
        async move {
            let id = start(store, "per_customer", input).await;
            execution(store, id).await.concurrency_key
        }
    };
    assert_eq!(
        key_of(json!({"customer": {"id": "c-1"}})).await.as_deref(),
        Some("c-1")
    );
    assert_eq!(
        key_of(json!({"customer": {"id": 42}})).await.as_deref(),
        Some("42")
    );
    assert_eq!(
        key_of(json!({"customer": {"id": true}})).await.as_deref(),
        Some("true")
    );
    let line = start(&store, "per_line", json!({"lines": ["a", "b"]})).await;
    assert_eq!(
        execution(&store, line).await.concurrency_key.as_deref(),
        Some("b")
    );
    let whole = start(&store, "one_at_a_time", json!({})).await;
    assert_eq!(
        execution(&store, whole).await.concurrency_key.as_deref(),
        Some("")
    );
    let free = start(&store, "free", json!({})).await;
    assert_eq!(execution(&store, free).await.concurrency_key, None);
    let given = store
        .start_execution(
            StartExecutionParams::new("per_customer", json!({})).concurrency_key("vip"),
        )
        .await
        .unwrap()
        .execution;
    assert_eq!(given.concurrency_key.as_deref(), Some("vip"));

    let before = store
        .list_executions(crate::ListExecutionsParams::default())
        .await
        .unwrap()
        .len();
    let refused = |params: StartExecutionParams| {
        let store = &store;
        async move {
            match store.start_execution(params).await {
                Err(StoreError::ConcurrencyKey(message)) => message,
                other => panic!("expected a concurrency key error, got {other:?}"),
            }
        }
    };
    let missing = refused(StartExecutionParams::new(
        "per_customer",
        json!({"customer": {"name": "Ada"}}),
    ))
    .await;
    assert!(missing.contains("customer.id"), "{missing}");
    let null = refused(StartExecutionParams::new(
        "per_customer",
        json!({"customer": {"id": null}}),
    ))
    .await;
    assert!(null.contains("customer.id"), "{null}");
    let unwanted = refused(StartExecutionParams::new("free", json!({})).concurrency_key("k")).await;
    assert!(unwanted.contains("no concurrency"), "{unwanted}");
    let long = refused(
        StartExecutionParams::new("per_customer", json!({})).concurrency_key("k".repeat(513)),
    )
    .await;
    assert!(long.contains("512"), "{long}");
    let keyed_too_long = refused(StartExecutionParams::new(
        "per_customer",
        json!({"customer": {"id": "k".repeat(513)}}),
    ))
    .await;
    assert!(keyed_too_long.contains("512"), "{keyed_too_long}");
    let after = store
        .list_executions(crate::ListExecutionsParams::default())
        .await
        .unwrap()
        .len();
    assert_eq!(before, after, "a refused start writes nothing");
}

/// With a limit of 2 per key, executions past the limit are held as they are inserted, no
/// claim takes them, and each place that frees (an end, a wait) lets the next one go, best
/// priority first; another key is never held back by this one. The queue stats count them.
pub async fn a_full_group_holds_executions_until_a_place_frees(store: impl Store) {
    save(&store, "sync", Some((Some(2), Some("customer"))), None).await;
    let mut a = Vec::new();
    for _ in 0..4 {
        a.push(start(&store, "sync", json!({"customer": "a"})).await);
        // Held ones go oldest first; SQLite's created_at counts milliseconds, and two starts
        // within one would tie (broken by their random ids).
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let urgent = store
        .start_execution(StartExecutionParams::new("sync", json!({"customer": "a"})).priority(9))
        .await
        .unwrap()
        .execution
        .id;
    let b = start(&store, "sync", json!({"customer": "b"})).await;
    for (id, want) in [(a[0], false), (a[1], false), (a[2], true), (a[3], true)] {
        assert_eq!(held(&store, id).await, want);
    }
    assert!(held(&store, urgent).await);
    assert!(!held(&store, b).await);
    let stats = store.queue_stats().await.unwrap();
    assert_eq!(stats.held.get("sync"), Some(&3));
    assert_eq!(stats.runnable, 3, "held executions are not runnable");

    let first = store
        .claim_executions(claim_params(WORKER, 10, LEASE))
        .await
        .unwrap();
    let claimed: HashSet<ExecutionId> = first.iter().map(|c| c.execution.id).collect();
    assert_eq!(claimed, HashSet::from([a[0], a[1], b]));
    assert!(
        claim_ids(&store, 10).await.is_empty(),
        "a's places are taken"
    );

    // a[0] ends: the best held one (priority 9) goes, and only it.
    let a0 = first.iter().find(|c| c.execution.id == a[0]).unwrap();
    finish(&store, a0).await;
    assert!(!held(&store, urgent).await);
    assert!(held(&store, a[2]).await && held(&store, a[3]).await);
    let next = claim_one(&store, WORKER, LEASE).await;
    assert_eq!(next.execution.id, urgent);

    // a[1] waits for a signal: it holds no place, so the oldest held one goes.
    let a1 = first.iter().find(|c| c.execution.id == a[1]).unwrap();
    store
        .record_step(record(
            a1,
            vec![completed_run("start", 1)],
            Advance::Wait {
                delay: None,
                signals: vec!["go".into()],
            },
        ))
        .await
        .unwrap();
    assert!(!held(&store, a[2]).await);
    assert_eq!(claim_ids(&store, 10).await, vec![a[2]]);
    assert!(held(&store, a[3]).await);
    assert_eq!(
        store.queue_stats().await.unwrap().held.get("sync"),
        Some(&1)
    );
}

/// A claim admits an execution of a full group (one woken by its signal, say) only while
/// fewer than the limit run: it holds it back instead, and the next end lets it go.
pub async fn a_claim_holds_what_its_limit_leaves_no_room_for(store: impl Store) {
    save(&store, "serial", Some((Some(1), None)), None).await;
    let waiter = start(&store, "serial", json!({})).await;
    let claimed = claim_one(&store, WORKER, LEASE).await;
    store
        .record_step(record(
            &claimed,
            vec![completed_run("start", 1)],
            Advance::Wait {
                delay: None,
                signals: vec!["go".into()],
            },
        ))
        .await
        .unwrap();
    // The waiter holds no place: the next one is admitted and runs.
    let runner = start(&store, "serial", json!({})).await;
    assert!(!held(&store, runner).await);
    let running = claim_one(&store, WORKER, LEASE).await;
    assert_eq!(running.execution.id, runner);

    crate::testing::conformance::send(&store, waiter, "go", json!(null)).await;
    assert!(
        claim_ids(&store, 10).await.is_empty(),
        "the woken execution would be a second one running"
    );
    let waiting = execution(&store, waiter).await;
    assert!(waiting.held_since.is_some());
    assert_eq!(waiting.status, ExecutionStatus::Waiting);
    assert_eq!(
        waiting.lease_token, claimed.execution.lease_token,
        "not claimed"
    );

    finish(&store, &running).await;
    let resumed = claim_one(&store, WORKER, LEASE).await;
    assert_eq!(resumed.execution.id, waiter);
    assert_eq!(resumed.signals.len(), 1, "it gets its signal");
}

/// Claims racing from many tasks never run more than the limit of one group at once, and
/// every execution is claimed once its turn comes.
pub async fn concurrent_claims_never_pass_a_limit(store: impl Store + Clone) {
    save(&store, "limited", Some((Some(3), Some("k"))), None).await;
    let mut pending = HashSet::new();
    for i in 0..24 {
        let key = if i % 4 == 0 { "other" } else { "hot" };
        pending.insert(start(&store, "limited", json!({"k": key})).await);
    }
    let mut done = 0;
    while !pending.is_empty() {
        let claims = (0..6).map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .claim_executions(claim_params(&format!("w{i}"), 2, LEASE))
                    .await
                    .unwrap()
            })
        });
        let mut round = Vec::new();
        for claim in claims {
            round.extend(claim.await.unwrap());
        }
        let mut running: std::collections::HashMap<String, usize> = Default::default();
        for claimed in &round {
            assert!(pending.remove(&claimed.execution.id), "claimed twice");
            let key = claimed.execution.concurrency_key.clone().unwrap();
            *running.entry(key).or_default() += 1;
        }
        for (key, n) in &running {
            assert!(*n <= 3, "{n} of key {key} running at once (limit 3)");
        }
        assert!(
            !round.is_empty(),
            "nothing claimable, {} pending",
            pending.len()
        );
        for claimed in &round {
            finish(&store, claimed).await;
            done += 1;
        }
    }
    assert_eq!(done, 24);
}

/// A key with no limit is dequeued fairly: at most `FAIR_WINDOW` of one key wait to be
/// claimed, the rest are held and let go as those are claimed, each to the back of the queue,
/// so a few executions of another key started later are claimed long before the big key's
/// backlog.
pub async fn a_fair_window_lets_a_small_key_in_before_a_big_backlog(store: impl Store) {
    save(&store, "tenants", Some((None, Some("tenant"))), None).await;
    let window = FAIR_WINDOW as usize;
    let mut big = Vec::new();
    for _ in 0..window * 3 {
        big.push(start(&store, "tenants", json!({"tenant": "big"})).await);
    }
    let mut small = HashSet::new();
    for _ in 0..3 {
        small.insert(start(&store, "tenants", json!({"tenant": "small"})).await);
    }
    let mut admitted = 0;
    for id in &big {
        admitted += usize::from(!held(&store, *id).await);
    }
    assert_eq!(admitted, window);

    let mut order = Vec::new();
    while order.len() < big.len() + small.len() {
        let ids = claim_ids(&store, 1).await;
        assert_eq!(ids.len(), 1, "one claimable at each turn");
        order.extend(ids);
    }
    let last_small = order.iter().rposition(|id| small.contains(id)).unwrap();
    assert!(
        last_small < window + small.len() + 1,
        "the small key's last execution was claimed {}th of {}",
        last_small + 1,
        order.len()
    );
}

/// A new version that raises the limit lets held executions go at once, as many as it has
/// room for; one without concurrency lets them all go.
pub async fn saving_a_higher_limit_lets_held_executions_go(store: impl Store) {
    save(&store, "batch", Some((Some(1), None)), None).await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(start(&store, "batch", json!({})).await);
    }
    let count = |ids: Vec<ExecutionId>| {
        let store = &store;
        async move {
            let mut n = 0;
            for id in ids {
                n += usize::from(held(store, id).await);
            }
            n
        }
    };
    assert_eq!(count(ids.clone()).await, 4);
    save(&store, "batch", Some((Some(3), None)), None).await;
    assert_eq!(count(ids.clone()).await, 2);
    save(&store, "batch", None, None).await;
    assert_eq!(count(ids.clone()).await, 0);
    assert_eq!(claim_ids(&store, 10).await.len(), 5);
}

/// Priority ageing raises executions runnable for longer than the period to the highest
/// priority among those that have not ended, oldest first and at most the limit, and leaves
/// younger ones, ones at the top already, and held ones alone; the raised one is claimed
/// first.
pub async fn ageing_raises_long_runnable_executions_to_the_top_priority(store: impl TestStore) {
    save(&store, "jobs", None, None).await;
    save(&store, "serial", Some((Some(1), None)), None).await;
    let old = start(&store, "jobs", json!({})).await;
    let older = start(&store, "jobs", json!({})).await;
    let young = start(&store, "jobs", json!({})).await;
    let top = store
        .start_execution(StartExecutionParams::new("jobs", json!({})).priority(5))
        .await
        .unwrap()
        .execution
        .id;
    start(&store, "serial", json!({})).await;
    let held_back = start(&store, "serial", json!({})).await;
    assert!(held(&store, held_back).await);
    store.backdate_run_at(old, Duration::from_secs(600)).await;
    store.backdate_run_at(older, Duration::from_secs(900)).await;
    store.backdate_run_at(top, Duration::from_secs(900)).await;
    store
        .backdate_run_at(held_back, Duration::from_secs(900))
        .await;

    let aged = store
        .age_priorities(Duration::from_secs(300), 1)
        .await
        .unwrap();
    let aged: Vec<(ExecutionId, i32, i32)> = aged.iter().map(|a| (a.id, a.from, a.to)).collect();
    assert_eq!(
        aged,
        vec![(older, 0, 5)],
        "the oldest first, at most the limit"
    );
    let aged = store
        .age_priorities(Duration::from_secs(300), 10)
        .await
        .unwrap();
    let aged: Vec<ExecutionId> = aged.iter().map(|a| a.id).collect();
    assert_eq!(aged, vec![old]);
    assert_eq!(execution(&store, young).await.priority, 0);
    assert_eq!(execution(&store, held_back).await.priority, 0);
    assert!(
        store
            .age_priorities(Duration::from_secs(300), 10)
            .await
            .unwrap()
            .is_empty()
    );
    // Priority 5, runnable longest: `older` and `top` (900 s), then `old`.
    let first: HashSet<ExecutionId> = claim_ids(&store, 2).await.into_iter().collect();
    assert_eq!(first, HashSet::from([older, top]));
    assert_eq!(claim_one(&store, WORKER, LEASE).await.execution.id, old);
}

fn rate(name: &str, key: &str, limit: u32, period: Duration) -> RateRequest {
    RateRequest {
        name: name.into(),
        key: key.into(),
        limit,
        period,
    }
}

/// A rate limit gives at most its limit of starts per period, per name and key; once full it
/// says how long until the oldest start leaves the window (no longer than the period).
pub async fn a_rate_limit_gives_at_most_its_limit_per_period_and_key(store: impl Store) {
    let hour = Duration::from_secs(3600);
    for _ in 0..3 {
        assert_eq!(
            store.take_rate(&rate("api", "a", 3, hour)).await.unwrap(),
            None
        );
    }
    let wait = store
        .take_rate(&rate("api", "a", 3, hour))
        .await
        .unwrap()
        .expect("the fourth start in the hour waits");
    assert!(
        wait <= hour && wait > hour - Duration::from_secs(600),
        "it waits for the first start to be an hour old: {wait:?}"
    );
    assert_eq!(
        store.take_rate(&rate("api", "b", 3, hour)).await.unwrap(),
        None,
        "another key has its own window"
    );
    assert_eq!(
        store.take_rate(&rate("mail", "a", 3, hour)).await.unwrap(),
        None,
        "another name has its own window"
    );
    // A workflow sharing the name with a higher limit still counts the three.
    assert_eq!(
        store.take_rate(&rate("api", "a", 4, hour)).await.unwrap(),
        None
    );
    assert!(
        store
            .take_rate(&rate("api", "a", 4, hour))
            .await
            .unwrap()
            .is_some()
    );
}

/// Once the wait it was told has passed, a start is taken: the window moves with the
/// database's clock.
pub async fn a_full_rate_limit_has_room_again_after_the_wait_it_gives(store: impl Store) {
    let period = Duration::from_millis(300);
    assert_eq!(
        store.take_rate(&rate("api", "", 2, period)).await.unwrap(),
        None
    );
    assert_eq!(
        store.take_rate(&rate("api", "", 2, period)).await.unwrap(),
        None
    );
    let wait = store
        .take_rate(&rate("api", "", 2, period))
        .await
        .unwrap()
        .expect("full");
    assert!(wait <= period, "{wait:?}");
    tokio::time::sleep(wait).await;
    assert_eq!(
        store.take_rate(&rate("api", "", 2, period)).await.unwrap(),
        None,
        "a place freed after {wait:?}"
    );
}

/// Takes from many connections at once never give more than the limit.
pub async fn concurrent_rate_takes_never_pass_the_limit(store: impl Store + Clone) {
    let hour = Duration::from_secs(3600);
    let takes = (0..24).map(|_| {
        let store = store.clone();
        tokio::spawn(async move { store.take_rate(&rate("api", "k", 5, hour)).await })
    });
    let mut taken = 0;
    for take in takes {
        if take.await.unwrap().unwrap().is_none() {
            taken += 1;
        }
    }
    assert_eq!(taken, 5);
}
