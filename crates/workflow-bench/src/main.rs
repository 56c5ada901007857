//! `workflow-bench`: measures workflow-worker against a real database and prints one JSON
//! line per scenario and store.
//!
//! ```sh
//! cargo run --release -p workflow-bench                      # every scenario, both stores
//! cargo run --release -p workflow-bench -- drain --store postgres
//! ```
//!
//! Each scenario creates its own database (a new PostgreSQL database on the server at
//! `DATABASE_URL`, default `postgres://postgres@127.0.0.1:5432/test`, or a new SQLite file)
//! and drops it afterwards. The worker runs in this process, so its memory and CPU are this
//! process's. What each figure means is in `docs/BENCHMARKS.md`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use async_trait::async_trait;
use clap::{Parser, ValueEnum};
use serde_json::{Value, json};
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use workflow_worker_core::flow::Concurrency;
use workflow_worker_core::store::{ClaimParams, RescueFilter};
use workflow_worker_core::{
    CodeNode, ExecutionId, ListExecutionsParams, NodeContext, NodeError, NodeExecutor, NodeOutcome,
    StartExecutionParams, Store, WorkflowDefinition, WorkflowGraph, WorkflowWorker,
};
use workflow_worker_store::testing::{TestDatabase, TestSqlite};

#[derive(Debug, Parser)]
#[command(name = "workflow-bench", about)]
struct Args {
    /// Scenarios to run; all of them when none is given.
    #[arg(value_enum)]
    scenarios: Vec<Scenario>,
    /// Stores to run them on.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "postgres,sqlite"
    )]
    store: Vec<StoreKind>,
    /// Executions queued for `drain` and `drain3`.
    #[arg(long, default_value_t = 20_000)]
    executions: u64,
    /// Worker concurrencies `drain` and `drain3` run with.
    #[arg(long, value_delimiter = ',', default_value = "10,32")]
    concurrency: Vec<usize>,
    /// Executions started one at a time by `latency`.
    #[arg(long, default_value_t = 200)]
    latency_samples: usize,
    /// Runnable executions in the large `backlog` case.
    #[arg(long, default_value_t = 100_000)]
    backlog_runnable: u64,
    /// Finished executions in the large `backlog` case.
    #[arg(long, default_value_t = 1_000_000)]
    backlog_finished: u64,
    /// Whether `backlog` also times the limited case (its own table of the same size).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    backlog_limited: bool,
    /// Seconds `idle` watches an idle worker.
    #[arg(long, default_value_t = 30)]
    idle_secs: u64,
    /// Finished executions in the table `list` pages through.
    #[arg(long, default_value_t = 1_000_000)]
    list_executions: u64,
    /// Items of the one execution `map` runs.
    #[arg(long, default_value_t = 10_000)]
    map_items: usize,
    /// The `max_parallel`s `map` runs its items with.
    #[arg(long, value_delimiter = ',', default_value = "10,100")]
    map_parallel: Vec<usize>,
    /// Executions of `examples/hello.json` queued for `hello`.
    #[arg(long, default_value_t = 1_000)]
    hello_executions: u64,
    /// Worker concurrency `hello` runs with.
    #[arg(long, default_value_t = 10)]
    hello_concurrency: usize,
    /// Finished executions (a day old) `prune` deletes while a drain runs.
    #[arg(long, default_value_t = 1_000_000)]
    prune_history: u64,
    /// The share of its time `prune`'s pruner spends deleting, in percent (100: full speed).
    #[arg(long, default_value_t = workflow_worker_core::worker::PRUNE_BUSY_PERCENT)]
    prune_busy: u8,
    /// How many worker processes `workers` drains with, one run each.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4")]
    processes: Vec<usize>,
    /// The `workflow-worker` binary `workers` runs; by default the one built beside this
    /// harness (`cargo build --release -p workflow-worker-bin`).
    #[arg(long)]
    worker_bin: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    /// Pre-queued single-node executions drained by one worker.
    Drain,
    /// The same with a 3-node chain.
    Drain3,
    /// Executions started one at a time on an idle worker: start to first node.
    Latency,
    /// Claim time with a small and a large backlog and history, and with a per-key limit.
    Backlog,
    /// What an idle worker costs.
    Idle,
    /// The Executions page and the API's list over a large history, through HTTP.
    List,
    /// One execution whose `map` node runs a no-op node for each of many items.
    Map,
    /// The seed's `examples/hello.json` (a Python code node), forked and spawned.
    Hello,
    /// Pre-queued single-node executions drained by 1, 2 and 4 processes of the
    /// `workflow-worker` binary (PostgreSQL only).
    Workers,
    /// `drain` beside a history of finished executions, alone and while the history is
    /// pruned (PostgreSQL only).
    Prune,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum StoreKind {
    Postgres,
    Sqlite,
}

impl StoreKind {
    fn name(self) -> &'static str {
        match self {
            Self::Postgres => "postgres",
            Self::Sqlite => "sqlite",
        }
    }
}

/// A fresh database for one scenario, dropped with it.
enum Db {
    Postgres(TestDatabase),
    Sqlite(TestSqlite),
}

impl Db {
    async fn create(kind: StoreKind) -> Self {
        match kind {
            StoreKind::Postgres => Self::Postgres(TestDatabase::create().await),
            StoreKind::Sqlite => Self::Sqlite(TestSqlite::create().await),
        }
    }

    fn store(&self) -> Arc<dyn Store> {
        match self {
            Self::Postgres(db) => Arc::new(db.store.clone()),
            Self::Sqlite(db) => Arc::new(db.store.clone()),
        }
    }

    async fn seed(&self, workflow: &str, count: u64, finished: bool) -> u64 {
        match self {
            Self::Postgres(db) => db.seed_executions(workflow, count, finished).await,
            Self::Sqlite(db) => db.seed_executions(workflow, count, finished).await,
        }
    }

    async fn seed_pending(&self, workflow: &str, count: u64, input: &Value) -> u64 {
        match self {
            Self::Postgres(db) => db.seed_pending(workflow, count, input).await,
            Self::Sqlite(db) => db.seed_pending(workflow, count, input).await,
        }
    }
}

/// A node that does nothing: what the engine costs without the work.
struct Noop;

#[async_trait]
impl NodeExecutor for Noop {
    async fn execute(&self, _ctx: NodeContext) -> Result<NodeOutcome, NodeError> {
        Ok(NodeOutcome::complete(Value::Null))
    }
}

/// Records when each execution's first node after the trigger started.
#[derive(Clone, Default)]
struct Stamp(Arc<Mutex<HashMap<ExecutionId, Instant>>>);

#[async_trait]
impl NodeExecutor for Stamp {
    async fn execute(&self, ctx: NodeContext) -> Result<NodeOutcome, NodeError> {
        let now = Instant::now();
        self.0
            .lock()
            .expect("stamp lock")
            .entry(ctx.execution_id)
            .or_insert(now);
        Ok(NodeOutcome::complete(Value::Null))
    }
}

/// Counts the SQL statements sqlx sends while switched on (sqlx logs each one as a
/// `sqlx::query` event).
#[derive(Default)]
struct StatementCounter {
    on: AtomicBool,
    count: AtomicU64,
}

impl StatementCounter {
    fn start(&self) {
        self.count.store(0, Ordering::SeqCst);
        self.on.store(true, Ordering::SeqCst);
    }

    fn stop(&self) -> u64 {
        self.on.store(false, Ordering::SeqCst);
        self.count.load(Ordering::SeqCst)
    }
}

struct CountStatements(Arc<StatementCounter>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for CountStatements {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        if self.0.on.load(Ordering::Relaxed) && event.metadata().target() == "sqlx::query" {
            self.0.count.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let statements = Arc::new(StatementCounter::default());
    // sqlx::query at debug: every statement becomes an event the counter sees. The printed
    // log stays at warnings (RUST_LOG to change).
    let printed = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_filter(printed),
        )
        .with(
            CountStatements(statements.clone()).with_filter(
                tracing_subscriber::filter::Targets::new()
                    .with_target("sqlx::query", tracing::Level::DEBUG),
            ),
        )
        .init();

    let scenarios = if args.scenarios.is_empty() {
        Scenario::value_variants().to_vec()
    } else {
        args.scenarios.clone()
    };
    for &kind in &args.store {
        for &scenario in &scenarios {
            let results = match scenario {
                Scenario::Drain => {
                    let mut lines = Vec::new();
                    for &concurrency in &args.concurrency {
                        lines.push(drain(kind, &args, 1, concurrency, &statements).await?);
                    }
                    lines
                }
                Scenario::Drain3 => {
                    let mut lines = Vec::new();
                    for &concurrency in &args.concurrency {
                        lines.push(drain(kind, &args, 3, concurrency, &statements).await?);
                    }
                    lines
                }
                Scenario::Latency => {
                    let mut lines = vec![latency(kind, &args, true).await?];
                    if kind == StoreKind::Postgres {
                        lines.push(latency(kind, &args, false).await?);
                    }
                    lines
                }
                Scenario::Backlog => vec![backlog(kind, &args).await?],
                Scenario::Idle => vec![idle(kind, &args, &statements).await?],
                Scenario::List => vec![list(kind, &args).await?],
                Scenario::Map => {
                    let mut lines = Vec::new();
                    for &parallel in &args.map_parallel {
                        lines.push(map(kind, &args, parallel, &statements).await?);
                    }
                    lines
                }
                Scenario::Hello => vec![
                    hello(kind, &args, true, &statements).await?,
                    hello(kind, &args, false, &statements).await?,
                ],
                // Processes of the binary on one SQLite file share its one writer; a prune
                // takes that writer from the drain.
                Scenario::Workers | Scenario::Prune if kind == StoreKind::Sqlite => Vec::new(),
                Scenario::Prune => vec![prune(kind, &args, &statements).await?],
                Scenario::Workers => {
                    let mut lines = Vec::new();
                    for &processes in &args.processes {
                        lines.push(workers(kind, &args, processes).await?);
                    }
                    lines
                }
            };
            for line in results {
                println!("{line}");
            }
        }
    }
    Ok(())
}

/// A workflow of `nodes` nodes in a chain: the trigger, then `noop`s.
fn chain(name: &str, nodes: usize, last: &str) -> WorkflowDefinition {
    let mut definition = json!({
        "name": name,
        "nodes": [{"id": "n1", "type": "trigger"}],
        "edges": []
    });
    for i in 2..=nodes {
        let node_type = if i == nodes { last } else { "noop" };
        definition["nodes"]
            .as_array_mut()
            .expect("nodes")
            .push(json!({"id": format!("n{i}"), "type": node_type}));
        definition["edges"]
            .as_array_mut()
            .expect("edges")
            .push(json!({"from": format!("n{}", i - 1), "to": format!("n{i}")}));
    }
    serde_json::from_value(definition).expect("a valid definition")
}

async fn save(store: &dyn Store, worker: &WorkflowWorker, def: WorkflowDefinition) {
    let graph = WorkflowGraph::validate(def, worker.registry()).expect("valid workflow");
    store.save_workflow(&graph).await.expect("save workflow");
}

/// Waits until no execution is runnable, running or waiting.
async fn drained(store: &dyn Store) {
    loop {
        match store.queue_stats().await {
            Ok(stats) if stats.runnable + stats.running + stats.waiting == 0 => return,
            Ok(_) => {}
            Err(err) => eprintln!("queue stats: {err}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn drain(
    kind: StoreKind,
    args: &Args,
    nodes: usize,
    concurrency: usize,
    statements: &StatementCounter,
) -> anyhow::Result<Value> {
    let db = Db::create(kind).await;
    let store = db.store();
    let worker = WorkflowWorker::new(store.clone())
        .concurrency(concurrency)
        .node("noop", Noop);
    save(&*store, &worker, chain("drain", nodes, "noop")).await;
    let queued = db.seed("drain", args.executions, false).await;
    let drained = drain_queued(&*store, worker, queued, statements).await?;
    Ok(json!({
        "scenario": if nodes == 1 { "drain" } else { "drain3" },
        "store": kind.name(),
        "concurrency": concurrency,
        "executions": queued,
        "nodes_per_execution": nodes,
        "seconds": round(drained.seconds, 3),
        "executions_per_sec": round(queued as f64 / drained.seconds, 0),
        "node_runs_per_sec": round((queued * nodes as u64) as f64 / drained.seconds, 0),
        "statements_per_execution": round(drained.statements as f64 / queued as f64, 2),
        "worker_cpu_percent_of_one_core": drained.cpu_percent,
        "peak_rss_mb": drained.peak_rss_mb,
    }))
}

/// The seed's own workflow (`examples/hello.json`: a trigger, then a Python `print`) drained
/// with the code node as a user gets it, Python snippets forked from a warm interpreter
/// (`"python": "forked"`), and with the fork server off, each snippet starting `python3`
/// (`"spawned"`), back to back.
async fn hello(
    kind: StoreKind,
    args: &Args,
    forked: bool,
    statements: &StatementCounter,
) -> anyhow::Result<Value> {
    let db = Db::create(kind).await;
    let store = db.store();
    let mut worker = WorkflowWorker::new(store.clone()).concurrency(args.hello_concurrency);
    if !forked {
        worker = worker.node("code", CodeNode::default().python_fork_server(false));
    }
    let definition = serde_json::from_str(include_str!("../../../examples/hello.json"))?;
    save(&*store, &worker, definition).await;
    let queued = db.seed("hello", args.hello_executions, false).await;
    let drained = drain_queued(&*store, worker, queued, statements).await?;
    Ok(json!({
        "scenario": "hello",
        "store": kind.name(),
        "python": if forked { "forked" } else { "spawned" },
        "concurrency": args.hello_concurrency,
        "executions": queued,
        "seconds": round(drained.seconds, 3),
        "executions_per_sec": round(queued as f64 / drained.seconds, 1),
        "worker_cpu_percent_of_one_core": drained.cpu_percent,
        "peak_rss_mb": drained.peak_rss_mb,
    }))
}

/// What draining a queue cost.
struct Drained {
    /// From the first claim to the last completion, in database time.
    seconds: f64,
    statements: u64,
    cpu_percent: f64,
    peak_rss_mb: Option<f64>,
}

/// Runs `worker` until the `queued` executions in `store` have ended; all must complete.
async fn drain_queued(
    store: &dyn Store,
    worker: WorkflowWorker,
    queued: u64,
    statements: &StatementCounter,
) -> anyhow::Result<Drained> {
    reset_peak_rss();
    let cpu = cpu_seconds();
    statements.start();
    let wall = Instant::now();
    worker.run_until(drained(store)).await?;
    let wall = wall.elapsed();
    let sent = statements.stop();
    let cpu = cpu_seconds() - cpu;
    let peak_rss = peak_rss_mb();
    Ok(Drained {
        seconds: drain_seconds(store, queued).await?,
        statements: sent,
        cpu_percent: round(100.0 * cpu / wall.as_secs_f64(), 1),
        peak_rss_mb: peak_rss,
    })
}

/// `drain` with the real binary: `processes` processes of `workflow-worker run`, each at
/// the first `--concurrency`, on one PostgreSQL database, started together once the
/// executions are queued and stopped once all have ended.
async fn workers(kind: StoreKind, args: &Args, processes: usize) -> anyhow::Result<Value> {
    let Db::Postgres(db) = Db::create(kind).await else {
        anyhow::bail!("`workers` runs on PostgreSQL only");
    };
    let bin = match &args.worker_bin {
        Some(bin) => bin.clone(),
        None => std::env::current_exe()?.with_file_name("workflow-worker"),
    };
    anyhow::ensure!(
        bin.exists(),
        "no worker binary at {}: build it with `cargo build --release -p workflow-worker-bin`, or pass --worker-bin",
        bin.display()
    );
    let store: Arc<dyn Store> = Arc::new(db.store.clone());
    let concurrency = args.concurrency.first().copied().unwrap_or(10);
    save(
        &*store,
        &WorkflowWorker::new(store.clone()),
        chain("drain", 1, "noop"),
    )
    .await;
    let queued = db.seed_executions("drain", args.executions, false).await;
    let mut children = Vec::new();
    for i in 0..processes {
        let child = tokio::process::Command::new(&bin)
            .args(["run", "--database-url", &db.url])
            .args(["--concurrency", &concurrency.to_string()])
            .args(["--worker-id", &format!("bench-{i}")])
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        children.push(child);
    }
    let deadline = Duration::from_secs(600);
    let ended = tokio::time::timeout(deadline, drained(&*store)).await;
    for child in &mut children {
        // SIGTERM: each shuts down as an operator's would; nothing is left running.
        if let Some(pid) = child.id() {
            let _ = std::process::Command::new("kill")
                .arg(pid.to_string())
                .status();
        }
    }
    for child in &mut children {
        child.wait().await?;
    }
    ended.map_err(|_| anyhow::anyhow!("not drained within {deadline:?}"))?;
    let seconds = drain_seconds(&*store, queued).await?;
    Ok(json!({
        "scenario": "workers",
        "store": kind.name(),
        "processes": processes,
        "concurrency_per_process": concurrency,
        "executions": queued,
        "seconds": round(seconds, 3),
        "executions_per_sec": round(queued as f64 / seconds, 0),
    }))
}

/// `drain` (at the first `--concurrency`) with `--prune-history` finished executions a day
/// old in the table: alone, then while a task prunes that history, then alone again (executions
/// finished over an hour ago, as `workflow-worker prune --busy-percent <--prune-busy>` does).
async fn prune(
    kind: StoreKind,
    args: &Args,
    statements: &StatementCounter,
) -> anyhow::Result<Value> {
    let db = Db::create(kind).await;
    let store = db.store();
    let concurrency = args.concurrency.first().copied().unwrap_or(10);
    let worker = || {
        WorkflowWorker::new(store.clone())
            .concurrency(concurrency)
            .node("noop", Noop)
    };
    let Db::Postgres(pg) = &db else {
        anyhow::bail!("prune runs on PostgreSQL only");
    };
    // Each drain starts from a vacuumed, analyzed table: the two runs differ only in the prune
    // beside the second, not in an autovacuum of what the seeding or the first drain left.
    let db = &db;
    let seed = |count: u64, finished: bool| async move {
        let seeded = db.seed("drain", count, finished).await;
        sqlx::query("vacuum analyze")
            .execute(pg.store.pool())
            .await?;
        anyhow::Ok(seeded)
    };
    save(&*store, &worker(), chain("drain", 1, "noop")).await;
    let history = seed(args.prune_history, true).await?;

    let queued = seed(args.executions, false).await?;
    let alone = drain_queued(&*store, worker(), queued, statements).await?;

    let queued = seed(args.executions, false).await?;
    let pruning = tokio::spawn({
        let store = store.clone();
        let busy = args.prune_busy;
        async move {
            workflow_worker_core::worker::prune(&*store, Duration::from_secs(3600), 1000, busy)
                .await
        }
    });
    let pruned_drain = drain_queued(&*store, worker(), queued, statements).await;
    pruning.abort();
    // Aborted as the drain ended, unless it ended first: with nothing left, or failing.
    if let Ok(Err(err)) = pruning.await {
        anyhow::bail!("pruning failed: {err}");
    }
    let pruned_drain = pruned_drain?;
    let left: i64 = sqlx::query_scalar(
        "select count(*) from workflow_executions where finished_at < now() - interval '1 hour'",
    )
    .fetch_one(pg.store.pool())
    .await?;
    let pruned = history - u64::try_from(left)?;

    // Alone again: the drift between the two alone runs is the noise the slowdown sits in.
    let queued = seed(args.executions, false).await?;
    let again = drain_queued(&*store, worker(), queued, statements).await?;
    let alone_seconds = (alone.seconds + again.seconds) / 2.0;
    Ok(json!({
        "scenario": "prune",
        "store": kind.name(),
        "concurrency": concurrency,
        "executions": queued,
        "history": history,
        "busy_percent": args.prune_busy,
        "alone_executions_per_sec": [
            round(queued as f64 / alone.seconds, 0),
            round(queued as f64 / again.seconds, 0),
        ],
        "pruning_executions_per_sec": round(queued as f64 / pruned_drain.seconds, 0),
        "pruned_during_drain": pruned,
        "slowdown_percent": round(100.0 * (pruned_drain.seconds / alone_seconds - 1.0), 1),
    }))
}

/// Checks that the `queued` executions in `store` all completed, and returns the time from
/// the first claim to the last end, in database time.
async fn drain_seconds(store: &dyn Store, queued: u64) -> anyhow::Result<f64> {
    let executions = store
        .list_executions(ListExecutionsParams {
            limit: u32::try_from(queued).unwrap_or(u32::MAX),
            before: None,
            ..Default::default()
        })
        .await?;
    let completed = executions
        .iter()
        .filter(|e| e.status == workflow_worker_core::ExecutionStatus::Completed)
        .count();
    anyhow::ensure!(
        completed as u64 == queued,
        "{completed} of {queued} completed"
    );
    let first = executions.iter().filter_map(|e| e.started_at).min();
    let last = executions.iter().filter_map(|e| e.finished_at).max();
    let (Some(first), Some(last)) = (first, last) else {
        anyhow::bail!("no execution ran");
    };
    Ok((last - first).as_seconds_f64())
}

/// One execution mapping a no-op node over `args.map_items` items, `parallel` at a time:
/// items per second from the map's start to its end (database time), and the statements sent
/// per item (item runs are written in batches).
async fn map(
    kind: StoreKind,
    args: &Args,
    parallel: usize,
    statements: &StatementCounter,
) -> anyhow::Result<Value> {
    let db = Db::create(kind).await;
    let store = db.store();
    let worker = WorkflowWorker::new(store.clone()).node("noop", Noop);
    let definition = serde_json::from_value(json!({
        "name": "map",
        "nodes": [
            {"id": "start", "type": "trigger"},
            {"id": "each", "type": "map", "config": {
                "items": {"$template": "{{ input.items }}"},
                "node": {"type": "noop"},
                "max_parallel": parallel
            }}
        ],
        "edges": [{"from": "start", "to": "each"}]
    }))?;
    save(&*store, &worker, definition).await;
    let items: Vec<usize> = (0..args.map_items).collect();
    let id = store
        .start_execution(StartExecutionParams::new("map", json!({ "items": items })))
        .await?
        .execution
        .id;
    reset_peak_rss();
    statements.start();
    worker.run_until(drained(&*store)).await?;
    let sent = statements.stop();
    let peak_rss = peak_rss_mb();
    let detail = store.get_execution(id).await?;
    let execution = &detail.execution;
    anyhow::ensure!(
        execution.status == workflow_worker_core::ExecutionStatus::Completed,
        "the map ended {}: {:?}",
        execution.status,
        execution.error
    );
    anyhow::ensure!(
        detail.item_runs.len() == args.map_items,
        "{} item runs for {} items",
        detail.item_runs.len(),
        args.map_items
    );
    let map_run = detail
        .node_runs
        .iter()
        .find(|run| run.node_id == "each")
        .context("the map's run")?;
    let seconds = map_run.duration().as_secs_f64();
    Ok(json!({
        "scenario": "map",
        "store": kind.name(),
        "items": args.map_items,
        "max_parallel": parallel,
        "seconds": round(seconds, 3),
        "items_per_sec": round(args.map_items as f64 / seconds, 0),
        "statements_per_item": round(sent as f64 / args.map_items as f64, 3),
        "peak_rss_mb": peak_rss,
    }))
}

async fn latency(kind: StoreKind, args: &Args, wakeups: bool) -> anyhow::Result<Value> {
    let db = Db::create(kind).await;
    let store = db.store();
    let stamp = Stamp::default();
    let poll = Duration::from_secs(1);
    let worker = WorkflowWorker::new(store.clone())
        .poll_interval(poll)
        .wakeups(wakeups)
        .node("stamp", stamp.clone());
    save(&*store, &worker, chain("latency", 2, "stamp")).await;
    reset_peak_rss();
    let stop = Arc::new(tokio::sync::Notify::new());
    let running = tokio::spawn({
        let stop = stop.clone();
        worker.run_until(async move { stop.notified().await })
    });
    // Let the worker go idle (and its listener connect).
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let mut started = Vec::with_capacity(args.latency_samples);
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    for _ in 0..args.latency_samples {
        tick.tick().await;
        let at = Instant::now();
        let execution = store
            .start_execution(StartExecutionParams::new("latency", json!({})))
            .await?
            .execution;
        started.push((execution.id, at));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while stamp.0.lock().expect("stamp lock").len() < started.len() {
        anyhow::ensure!(Instant::now() < deadline, "not every execution started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.notify_one();
    running.await??;

    let stamps = stamp.0.lock().expect("stamp lock");
    let mut millis: Vec<f64> = started
        .iter()
        .map(|(id, at)| (stamps[id] - *at).as_secs_f64() * 1000.0)
        .collect();
    millis.sort_by(f64::total_cmp);
    Ok(json!({
        "scenario": "latency",
        "store": kind.name(),
        "wakeups": wakeups && kind == StoreKind::Postgres,
        "poll_interval_ms": poll.as_millis(),
        "samples": millis.len(),
        "p50_ms": round(percentile(&millis, 0.50), 2),
        "p90_ms": round(percentile(&millis, 0.90), 2),
        "p99_ms": round(percentile(&millis, 0.99), 2),
        "max_ms": round(millis.last().copied().unwrap_or_default(), 2),
        "peak_rss_mb": peak_rss_mb(),
    }))
}

async fn backlog(kind: StoreKind, args: &Args) -> anyhow::Result<Value> {
    const CLAIMS: usize = 200;
    let db = Db::create(kind).await;
    let store = db.store();
    let worker = WorkflowWorker::new(store.clone());
    save(&*store, &worker, chain("backlog", 1, "noop")).await;
    reset_peak_rss();

    db.seed("backlog", 1000, false).await;
    let small = claim_times(&*store, CLAIMS).await?;
    let seeding = Instant::now();
    db.seed("backlog", args.backlog_finished, true).await;
    db.seed("backlog", args.backlog_runnable, false).await;
    let seeded_in = seeding.elapsed();
    let large = claim_times(&*store, CLAIMS).await?;
    drop(db);
    let limited = if args.backlog_limited {
        limited_backlog(kind, args, CLAIMS).await?
    } else {
        Vec::new()
    };
    Ok(json!({
        "scenario": "backlog",
        "store": kind.name(),
        "claims_per_case": CLAIMS,
        "small": {"runnable": 1000, "finished": 0,
                  "claim_p50_ms": round(percentile(&small, 0.5), 3),
                  "claim_p99_ms": round(percentile(&small, 0.99), 3)},
        "large": {"runnable": args.backlog_runnable + 1000 - CLAIMS as u64,
                  "finished": args.backlog_finished,
                  "claim_p50_ms": round(percentile(&large, 0.5), 3),
                  "claim_p99_ms": round(percentile(&large, 0.99), 3)},
        "p99_ratio_large_to_small": round(percentile(&large, 0.99) / percentile(&small, 0.99), 2),
        "limited": {"runnable": args.backlog_runnable, "finished": args.backlog_finished,
                    "keys": LIMITED_KEYS, "limit_per_key": LIMIT_PER_KEY,
                    "claim_p50_ms": round(percentile(&limited, 0.5), 3),
                    "claim_p99_ms": round(percentile(&limited, 0.99), 3)},
        "p99_ratio_limited_to_large": (!limited.is_empty())
            .then(|| round(percentile(&limited, 0.99) / percentile(&large, 0.99), 2)),
        "seconds_to_seed_large": round(seeded_in.as_secs_f64(), 1),
        "peak_rss_mb": peak_rss_mb(),
    }))
}

/// Keys of the `backlog` scenario's limited case...
const LIMITED_KEYS: u64 = 100;
/// ...and the limit per key: its runnable executions are mostly held.
const LIMIT_PER_KEY: u32 = 5;

/// The large `backlog` case again, for a workflow with a per-key concurrency limit: the
/// runnable executions spread over [`LIMITED_KEYS`] keys, at most [`LIMIT_PER_KEY`] running
/// per key; returns the claim times (every claim is admitted, so each one counts its group).
async fn limited_backlog(kind: StoreKind, args: &Args, claims: usize) -> anyhow::Result<Vec<f64>> {
    let db = Db::create(kind).await;
    let store = db.store();
    let worker = WorkflowWorker::new(store.clone());
    let mut definition = chain("limited", 1, "noop");
    definition.concurrency = Some(Concurrency {
        limit: Some(LIMIT_PER_KEY),
        key: Some("customer".into()),
    });
    save(&*store, &worker, definition).await;
    // The history, as in the large case (finished executions take no concurrency key).
    save(&*store, &worker, chain("backlog", 1, "noop")).await;
    db.seed("backlog", args.backlog_finished, true).await;
    for key in 0..LIMITED_KEYS {
        let input = json!({"customer": format!("c{key}")});
        db.seed_pending("limited", args.backlog_runnable / LIMITED_KEYS, &input)
            .await;
    }
    claim_times(&*store, claims).await
}

/// Times pages of the Executions view and the API's list, served over loopback HTTP, with
/// `--list-executions` completed executions (inserted by one statement, so they share their
/// creation time) and a few failed, pending and running ones in the table.
async fn list(kind: StoreKind, args: &Args) -> anyhow::Result<Value> {
    const REQUESTS: usize = 50;
    let db = Db::create(kind).await;
    let store = db.store();
    let worker = WorkflowWorker::new(store.clone());
    save(&*store, &worker, chain("listed", 1, "noop")).await;
    let seeding = Instant::now();
    db.seed("listed", args.list_executions, true).await;
    // Some of every other kind, newer than the history, as a live system has.
    for _ in 0..100 {
        let id = store
            .start_execution(StartExecutionParams::new("listed", json!({})))
            .await?
            .execution
            .id;
        store.cancel_execution(id, "bench").await?;
    }
    db.seed("listed", 100, false).await;
    let seeded_in = seeding.elapsed();
    // A cursor halfway down the history: where a page deep in it starts.
    let mut cursor = None;
    let mut seen = 0u64;
    while seen < args.list_executions / 2 {
        let page = store
            .list_executions(ListExecutionsParams {
                limit: 500,
                before: cursor,
                ..ListExecutionsParams::default()
            })
            .await?;
        let last = page.last().context("the history ended early")?;
        cursor = Some(workflow_worker_core::ExecutionCursor::after(last));
        seen += page.len() as u64;
    }
    let deep = cursor.context("no cursor")?;
    let deep = format!("{}_{}", deep.created_at.timestamp_micros(), deep.id);

    let client = workflow_worker_core::Client::from_shared(store.clone(), Default::default());
    let app = workflow_worker_core::http::router(client, Default::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let http = reqwest::Client::new();
    let mut cases = serde_json::Map::new();
    for (name, path) in [
        ("page", "/executions".to_owned()),
        ("page_cancelled", "/executions?status=cancelled".to_owned()),
        ("page_pending", "/executions?status=pending".to_owned()),
        ("page_failed_none", "/executions?status=failed".to_owned()),
        ("page_workflow", "/executions?workflow=listed".to_owned()),
        ("page_deep", format!("/executions?cursor={deep}")),
        ("api", "/api/v1/executions?limit=50".to_owned()),
        (
            "api_deep",
            format!("/api/v1/executions?limit=50&cursor={deep}"),
        ),
    ] {
        let mut times = Vec::with_capacity(REQUESTS);
        let mut bytes = 0;
        for _ in 0..REQUESTS {
            let started = Instant::now();
            let response = http.get(format!("{base}{path}")).send().await?;
            anyhow::ensure!(
                response.status().is_success(),
                "{path}: {}",
                response.status()
            );
            bytes = response.bytes().await?.len();
            times.push(started.elapsed().as_secs_f64() * 1000.0);
        }
        times.sort_by(f64::total_cmp);
        cases.insert(
            name.into(),
            json!({"p50_ms": round(percentile(&times, 0.5), 2),
                   "p99_ms": round(percentile(&times, 0.99), 2),
                   "bytes": bytes}),
        );
    }
    server.abort();
    Ok(json!({
        "scenario": "list",
        "store": kind.name(),
        "executions": args.list_executions + 200,
        "requests_per_case": REQUESTS,
        "cases": cases,
        "seconds_to_seed": round(seeded_in.as_secs_f64(), 1),
    }))
}

/// Times `count` claims of one execution each (held under a long lease), in milliseconds,
/// sorted.
async fn claim_times(store: &dyn Store, count: usize) -> anyhow::Result<Vec<f64>> {
    let mut times = Vec::with_capacity(count);
    for _ in 0..count {
        let started = Instant::now();
        let claimed = store
            .claim_executions(ClaimParams {
                worker_id: "bench".into(),
                limit: 1,
                lease_duration: Duration::from_secs(3600),
                rescues: RescueFilter::Any,
                node_types: None,
            })
            .await?;
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        anyhow::ensure!(claimed.len() == 1, "nothing left to claim");
    }
    times.sort_by(f64::total_cmp);
    Ok(times)
}

async fn idle(
    kind: StoreKind,
    args: &Args,
    statements: &StatementCounter,
) -> anyhow::Result<Value> {
    let db = Db::create(kind).await;
    let store = db.store();
    let worker = WorkflowWorker::new(store.clone());
    let poll = worker.settings().poll_interval;
    reset_peak_rss();
    let watched = Duration::from_secs(args.idle_secs);
    let measured = async {
        // Past start-up (listener connected, first sweeps done).
        tokio::time::sleep(Duration::from_secs(2)).await;
        let cpu = cpu_seconds();
        statements.start();
        tokio::time::sleep(watched).await;
        (statements.stop(), cpu_seconds() - cpu)
    };
    let result = Arc::new(Mutex::new(None));
    let sink = result.clone();
    worker
        .run_until(async move {
            let measured = measured.await;
            *sink.lock().expect("idle result") = Some(measured);
        })
        .await?;
    let (sent, cpu) = result
        .lock()
        .expect("idle result")
        .take()
        .context("the idle measurement did not finish")?;
    let secs = watched.as_secs_f64();
    Ok(json!({
        "scenario": "idle",
        "store": kind.name(),
        "seconds": args.idle_secs,
        "poll_interval_ms": poll.as_millis(),
        "statements_per_sec": round(sent as f64 / secs, 2),
        "statements_per_poll_interval": round(sent as f64 / secs * poll.as_secs_f64(), 2),
        "cpu_percent_of_one_core": round(100.0 * cpu / secs, 3),
        "peak_rss_mb": peak_rss_mb(),
    }))
}

/// The value below which `fraction` of the sorted `values` lie (nearest rank).
fn percentile(sorted: &[f64], fraction: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (fraction * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn round(value: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (value * scale).round() / scale
}

/// Resets the peak resident set size the kernel reports (VmHWM) to the current size.
fn reset_peak_rss() {
    if let Err(err) = std::fs::write("/proc/self/clear_refs", "5") {
        eprintln!("cannot reset the peak RSS ({err}); it includes earlier scenarios");
    }
}

/// The peak resident set size since the last reset, in MB (VmHWM in /proc/self/status).
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(round(kb / 1024.0, 1))
}

/// CPU time this process has used (user + system), in seconds, from /proc/self/stat.
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return f64::NAN;
    };
    // Fields after the command name (which may contain spaces) end with ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<f64>().ok())
        .sum();
    ticks / CLOCK_TICKS_PER_SEC
}

/// USER_HZ: the unit of /proc CPU times, 100 on every Linux architecture in use.
const CLOCK_TICKS_PER_SEC: f64 = 100.0;
