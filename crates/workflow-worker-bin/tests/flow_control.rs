//! Flow control across worker processes of the real binary, on both stores: concurrency
//! limits per key and per workflow, measured from the start and finish times the database
//! recorded (not from any worker's counters); priorities over a backlog; fair dequeue of
//! a small key beside a big one; and a rate limit shared by every worker.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use workflow_worker_core::{
    Execution, ExecutionStatus, ListExecutionsParams, StartExecutionParams, Store,
};
use workflow_worker_store::testing::{TestDatabase, TestSqlite};

mod common;

use common::{Worker, save, wait_for};

const WAIT: Duration = Duration::from_secs(180);

/// A database for one test, on either store.
struct Db {
    kind: Kind,
    store: Arc<dyn Store>,
}

enum Kind {
    Postgres(TestDatabase),
    Sqlite(TestSqlite),
}

impl Db {
    async fn postgres() -> Self {
        let db = TestDatabase::create().await;
        Self {
            store: Arc::new(db.store.clone()),
            kind: Kind::Postgres(db),
        }
    }

    async fn sqlite() -> Self {
        let db = TestSqlite::create().await;
        Self {
            store: Arc::new(db.store.clone()),
            kind: Kind::Sqlite(db),
        }
    }

    fn url(&self) -> &str {
        match &self.kind {
            Kind::Postgres(db) => &db.url,
            Kind::Sqlite(db) => &db.url,
        }
    }

    fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    async fn seed(&self, workflow: &str, count: u64, input: &Value) {
        let seeded = match &self.kind {
            Kind::Postgres(db) => db.seed_pending(workflow, count, input).await,
            Kind::Sqlite(db) => db.seed_pending(workflow, count, input).await,
        };
        assert_eq!(seeded, count);
    }

    /// Every execution, oldest first.
    async fn executions(&self) -> Vec<Execution> {
        let mut all = self
            .store()
            .list_executions(ListExecutionsParams {
                limit: 100_000,
                ..Default::default()
            })
            .await
            .unwrap();
        all.reverse();
        all
    }

    /// Waits until no execution is left that has not ended; returns them all.
    async fn drained(&self, workers: Vec<Worker>) -> Vec<Execution> {
        wait_for("every execution to end", WAIT, || async {
            let stats = self.store().queue_stats().await.unwrap();
            (stats.runnable + stats.running + stats.waiting == 0 && stats.held.is_empty())
                .then_some(())
        })
        .await;
        for worker in workers {
            worker.stop();
        }
        self.executions().await
    }
}

/// Three worker processes polling every 100 ms, `concurrency` slots each.
fn three_workers(url: &str, concurrency: &str) -> Vec<Worker> {
    (0..3)
        .map(|i| {
            Worker::run(
                url,
                &[
                    "--worker-id",
                    &format!("flow-{i}"),
                    "--concurrency",
                    concurrency,
                    "--poll-interval",
                    "0.1",
                ],
            )
        })
        .collect()
}

/// trigger -> `work` (a shell snippet), with `concurrency`.
fn workflow(name: &str, work: &str, concurrency: Value) -> Value {
    json!({
        "name": name,
        "concurrency": concurrency,
        "nodes": [
            {"id": "start", "type": "trigger"},
            {"id": "work", "type": "code", "config": {"language": "shell", "code": work}}
        ],
        "edges": [{"from": "start", "to": "work"}]
    })
}

/// The most executions of each group that ran at once, from their recorded start and finish
/// times (a half-open interval each: one that ended as another started does not overlap it).
fn most_at_once(executions: &[Execution]) -> HashMap<String, usize> {
    let mut events: HashMap<String, Vec<(DateTime<Utc>, i32)>> = HashMap::new();
    for e in executions {
        let group = e.concurrency_key.clone().expect("a concurrency key");
        let started = e.started_at.expect("started");
        let finished = e.finished_at.expect("finished");
        assert!(finished >= started);
        let events = events.entry(group).or_default();
        events.push((started, 1));
        events.push((finished, -1));
    }
    events
        .into_iter()
        .map(|(group, mut events)| {
            // Ends before starts at the same instant.
            events.sort();
            let (mut now, mut most) = (0, 0);
            for (_, change) in events {
                now += change;
                most = most.max(now);
            }
            (group, usize::try_from(most).unwrap())
        })
        .collect()
}

async fn a_per_key_limit_holds_across_three_worker_processes(db: Db) {
    save(
        db.store(),
        workflow("sync", "sleep 0.05", json!({"limit": 2, "key": "customer"})),
    )
    .await;
    for customer in ["a", "b", "c", "d", "e"] {
        db.seed("sync", 60, &json!({"customer": customer})).await;
    }
    // 12 slots for 10 places: the limit, not the slots, is what holds them back.
    let workers = three_workers(db.url(), "4");
    let executions = db.drained(workers).await;
    assert_eq!(executions.len(), 300);
    assert!(
        executions
            .iter()
            .all(|e| e.status == ExecutionStatus::Completed),
        "every execution completes"
    );
    let most = most_at_once(&executions);
    assert_eq!(most.len(), 5);
    for (customer, most) in &most {
        assert!(
            *most <= 2,
            "{most} executions of customer {customer} ran at once (limit 2)"
        );
    }
    assert!(
        most.values().any(|&most| most == 2),
        "the limit was reached: {most:?}"
    );
}

async fn a_per_workflow_limit_holds_across_three_worker_processes(db: Db) {
    save(
        db.store(),
        workflow("report", "sleep 0.05", json!({"limit": 3})),
    )
    .await;
    db.seed("report", 60, &json!({})).await;
    let workers = three_workers(db.url(), "4");
    let executions = db.drained(workers).await;
    assert_eq!(executions.len(), 60);
    assert!(
        executions
            .iter()
            .all(|e| e.status == ExecutionStatus::Completed)
    );
    let most = most_at_once(&executions);
    assert_eq!(most.len(), 1, "one group: the workflow's");
    assert_eq!(most[""], 3, "at most 3 at once, and 3 at times");
}

async fn high_priority_executions_started_last_run_first(db: Db) {
    save(
        db.store(),
        json!({
            "name": "jobs",
            "nodes": [{"id": "start", "type": "trigger"}]
        }),
    )
    .await;
    db.seed("jobs", 200, &json!({"kind": "low"})).await;
    // Started last, through the binary's own flag.
    for _ in 0..5 {
        let out = common::bin(Some(db.url()))
            .args([
                "start",
                "jobs",
                "--priority",
                "10",
                "--input",
                r#"{"kind": "high"}"#,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let workers = three_workers(db.url(), "1");
    let executions = db.drained(workers).await;
    assert_eq!(executions.len(), 205);
    let kind = |e: &Execution| (e.input["kind"].as_str().unwrap().to_owned(), e.priority);
    let high: Vec<&Execution> = executions.iter().filter(|e| e.priority == 10).collect();
    assert_eq!(high.len(), 5);
    assert!(high.iter().all(|e| kind(e) == ("high".to_owned(), 10)));
    // A claim's start time is its statement's start, one for every execution it takes. A
    // worker whose claim began before another worker took the last high one, and found it
    // locked, takes low ones stamped earlier: at most one such claim per other worker (its
    // next claim begins after). Every other low one starts after every high one.
    let last_high = high.iter().map(|e| e.started_at.unwrap()).max().unwrap();
    let claims_before: std::collections::BTreeSet<_> = executions
        .iter()
        .filter(|e| e.priority == 0 && e.started_at.unwrap() < last_high)
        .map(|e| e.started_at.unwrap())
        .collect();
    assert!(
        claims_before.len() <= 2,
        "claims of low-priority executions before the last high one: {claims_before:?}"
    );
}

async fn a_small_key_completes_while_a_big_one_drains(db: Db) {
    save(
        db.store(),
        json!({
            "name": "tenants",
            "concurrency": {"key": "tenant"},
            "nodes": [{"id": "start", "type": "trigger"}]
        }),
    )
    .await;
    db.seed("tenants", 10_000, &json!({"tenant": "big"})).await;
    let mut small = Vec::new();
    for _ in 0..10 {
        small.push(
            db.store()
                .start_execution(StartExecutionParams::new(
                    "tenants",
                    json!({"tenant": "small"}),
                ))
                .await
                .unwrap()
                .execution
                .id,
        );
    }
    let workers = three_workers(db.url(), "10");
    let started = std::time::Instant::now();
    let small_done = wait_for("the small key's executions to complete", WAIT, || async {
        let mut last = None;
        for id in &small {
            let e = db.store().get_execution(*id).await.unwrap().execution;
            if e.status != ExecutionStatus::Completed {
                return None;
            }
            last = last.max(e.finished_at);
        }
        last
    })
    .await;
    let small_took = started.elapsed();
    let executions = db.drained(workers).await;
    assert_eq!(executions.len(), 10_010);
    assert!(
        executions
            .iter()
            .all(|e| e.status == ExecutionStatus::Completed)
    );
    let big_before = executions
        .iter()
        .filter(|e| e.input["tenant"] == "big" && e.finished_at.unwrap() <= small_done)
        .count();
    // First in, first out would finish all 10,000 first.
    assert!(
        big_before < 500,
        "{big_before} of the big key's executions completed before the small key's last"
    );
    assert!(
        small_took < Duration::from_secs(30),
        "the small key took {small_took:?}"
    );
}

/// A rate limit of 10 node starts per second over 100 node runs, shared by three worker
/// processes with 12 slots between them: from the first node's start to the last one's end
/// (as recorded) takes at least 9 s (the 91st start is a second after the 81st, and so on)
/// and at most 12 s. (A recorded start is the record's time less the run's duration, which a
/// busy writer delays, so the window itself is checked on the store: the conformance cases of
/// `store::flow`.)
async fn a_rate_limit_of_10_per_second_spaces_100_node_runs(db: Db) {
    save(
        db.store(),
        json!({
            "name": "call_api",
            "rate_limits": {"api": {"limit": 10, "period": 1, "node_types": ["code"]}},
            "nodes": [
                {"id": "start", "type": "trigger"},
                {"id": "call", "type": "code", "config": {"language": "shell", "code": "sleep 0.2"}}
            ],
            "edges": [{"from": "start", "to": "call"}]
        }),
    )
    .await;
    db.seed("call_api", 100, &json!({})).await;
    let workers = three_workers(db.url(), "4");
    let executions = db.drained(workers).await;
    assert_eq!(executions.len(), 100);
    let mut runs = Vec::new();
    for execution in &executions {
        assert_eq!(execution.status, ExecutionStatus::Completed);
        let detail = db.store().get_execution(execution.id).await.unwrap();
        let call: Vec<_> = detail
            .node_runs
            .into_iter()
            .filter(|run| run.node_id == "call")
            .collect();
        assert_eq!(call.len(), 1, "one run of the node per execution");
        runs.push((call[0].started_at, call[0].finished_at));
    }
    runs.sort();
    let first_start = runs[0].0;
    let last_end = runs.iter().map(|run| run.1).max().unwrap();
    let took = (last_end - first_start).to_std().unwrap();
    eprintln!("100 node runs at 10 per second took {took:?}");
    assert!(
        took >= Duration::from_secs(9) && took <= Duration::from_secs(12),
        "100 runs at 10 per second took {took:?}"
    );
}

macro_rules! on_both_stores {
    ($($case:ident),* $(,)?) => {
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(super::Db::postgres().await).await;
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(super::Db::sqlite().await).await;
                }
            )*
        }
    };
}

on_both_stores!(
    a_per_key_limit_holds_across_three_worker_processes,
    a_per_workflow_limit_holds_across_three_worker_processes,
    high_priority_executions_started_last_run_first,
    a_small_key_completes_while_a_big_one_drains,
    a_rate_limit_of_10_per_second_spaces_100_node_runs,
);
