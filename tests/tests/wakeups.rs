//! Wake-ups: with LISTEN/NOTIFY on PostgreSQL, and hints within the process on SQLite, an
//! idle worker starts new and signalled executions at once, not at its next poll, and looks
//! at a new schedule at once, not at its next periodic look. The poll interval here is 30 s
//! (and the periodic look once a minute), so only a wake-up explains an execution finishing
//! within a few seconds.

use std::time::Duration;

use serde_json::json;
use workflow_worker_core::testing;
use workflow_worker_core::testing::fixture::{self, workflow};
use workflow_worker_core::testing::nodes;
use workflow_worker_core::{
    ExecutionId, ExecutionStatus, SendSignalParams, StartExecutionParams, Store, WorkflowWorker,
};
use workflow_worker_store::testing::{TestDatabase, TestSqlite};

const POLL: Duration = Duration::from_secs(30);
/// Far below the poll interval, with room for a loaded machine.
const PROMPT: Duration = Duration::from_secs(8);

async fn start(store: &impl Store, workflow: &str) -> ExecutionId {
    store
        .start_execution(StartExecutionParams::new(workflow, json!({})))
        .await
        .unwrap()
        .execution
        .id
}

async fn until_status(store: &impl Store, id: ExecutionId, status: ExecutionStatus) {
    let started = tokio::time::Instant::now();
    while store.get_execution(id).await.unwrap().execution.status != status {
        assert!(
            started.elapsed() < PROMPT,
            "execution {id} did not become {status} within {PROMPT:?}: no wake-up"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Saves `quick` (one node) and `approval` (waits for signal `go`); returns their node types.
async fn save_quick_and_approval(store: &impl Store) -> workflow_worker_core::NodeRegistry {
    let registry = nodes::registry();
    workflow("quick")
        .node("work", "echo", serde_json::Value::Null)
        .edge("start", "work")
        .save(store, &registry)
        .await;
    workflow("approval")
        .node("approval", "wait_for_signal", json!({"signal": "go"}))
        .edge("start", "approval")
        .save(store, &registry)
        .await;
    registry
}

/// Runs a worker with `registry` polling every [`POLL`] until the token is cancelled.
fn spawn_worker(
    store: &(impl Store + Clone),
    registry: workflow_worker_core::NodeRegistry,
) -> (
    tokio_util::sync::CancellationToken,
    tokio::task::JoinHandle<Result<(), workflow_worker_core::Error>>,
) {
    let stop = tokio_util::sync::CancellationToken::new();
    let worker = WorkflowWorker::new(store.clone())
        .nodes(registry)
        .poll_interval(POLL);
    let running = tokio::spawn(worker.run_until(stop.clone().cancelled_owned()));
    (stop, running)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_workers_are_woken_by_new_executions_signals_and_bulk_inserts() {
    let db = TestDatabase::create().await;
    let registry = save_quick_and_approval(&db.store).await;
    // Claimed by the worker's first poll.
    let warm_up = start(&db.store, "quick").await;
    let (stop, running) = spawn_worker(&db.store, registry);
    until_status(&db.store, warm_up, ExecutionStatus::Completed).await;

    // A new execution wakes the idle worker.
    let fresh = start(&db.store, "quick").await;
    until_status(&db.store, fresh, ExecutionStatus::Completed).await;

    // A signal wakes it for a waiting execution.
    let approval = start(&db.store, "approval").await;
    until_status(&db.store, approval, ExecutionStatus::Waiting).await;
    db.store
        .send_signal(SendSignalParams {
            execution_id: approval,
            name: "go".into(),
            payload: json!({}),
            idempotency_key: None,
        })
        .await
        .unwrap();
    until_status(&db.store, approval, ExecutionStatus::Completed).await;

    // Fifty rows in one plain-SQL statement: one notification, and all of them run.
    let workflow_id = db
        .store
        .get_workflow(&workflow_worker_core::WorkflowRef::Name("quick".into()))
        .await
        .unwrap()
        .workflow_id;
    let ids: Vec<(uuid::Uuid,)> = sqlx::query_as(
        "insert into workflow_executions (workflow_id) \
         select $1 from generate_series(1, 50) returning id",
    )
    .bind(workflow_id.0)
    .fetch_all(db.store.pool())
    .await
    .unwrap();
    let ids: Vec<ExecutionId> = ids.into_iter().map(|(id,)| ExecutionId(id)).collect();
    let done = fixture::wait_until_terminal(&db.store, &ids, PROMPT).await;
    assert!(
        done.iter()
            .all(|d| d.execution.status == ExecutionStatus::Completed)
    );

    stop.cancel();
    running.await.unwrap().unwrap();
}

/// A cancel made by another program in plain SQL (here the SQL API's
/// `workflow_cancel_execution`) reaches the worker running the execution through NOTIFY: its
/// node's process is gone within seconds, with the worker's heartbeat (the fallback) ten
/// minutes away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_in_sql_stops_the_running_node_at_once() {
    let db = TestDatabase::create().await;
    let dir =
        std::env::temp_dir().join(format!("wfw-sql-cancel-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let pid_file = dir.join("pid");
    workflow("long")
        .node(
            "run",
            "code",
            json!({"language": "shell",
                   "code": format!("echo $$ > {}; exec sleep 120", pid_file.display())}),
        )
        .edge("start", "run")
        .save(&db.store, &nodes::registry())
        .await;
    let id = start(&db.store, "long").await;
    let stop = tokio_util::sync::CancellationToken::new();
    let worker = WorkflowWorker::new(db.store.clone())
        .nodes(nodes::registry())
        .poll_interval(Duration::from_millis(100))
        .heartbeat_interval(Duration::from_secs(600))
        .lease_duration(Duration::from_secs(1200));
    let running = tokio::spawn(worker.run_until(stop.clone().cancelled_owned()));
    let pid = testing::pid_written_to(&pid_file, Duration::from_secs(30)).await;
    let (status,): (String,) = sqlx::query_as("select workflow_cancel_execution($1)")
        .bind(id.0)
        .fetch_one(db.store.pool())
        .await
        .unwrap();
    assert_eq!(status, "cancelled");
    let cancelled = tokio::time::Instant::now();
    while testing::process_running(pid) {
        assert!(
            cancelled.elapsed() < PROMPT,
            "the node's process {pid} outlived the cancel by {PROMPT:?}: no notification"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.cancel();
    running.await.unwrap().unwrap();
    let detail = db.store.get_execution(id).await.unwrap();
    assert_eq!(detail.execution.status, ExecutionStatus::Cancelled);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The worker's maintenance (the deadline sweep, the schedule look) runs beside its loop: with
/// its look at schedules stuck behind another session's lock on a due schedule's row (an
/// operator's long transaction, say), the worker still claims and runs executions, a wake-up
/// still starts a new one at once, and the worker still stops when asked. All of them waited
/// for the look while it ran in the loop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_schedule_look_holds_up_neither_executions_nor_shutdown() {
    let db = TestDatabase::create().await;
    let registry = save_quick_and_approval(&db.store).await;
    let schedule = workflow_worker_core::Client::new(db.store.clone())
        .create_schedule(workflow_worker_core::NewSchedule::new(
            "quick",
            "* * * * * *",
        ))
        .await
        .unwrap();
    let mut operator = db.store.pool().begin().await.unwrap();
    sqlx::query("select 1 from workflow_schedules where id = $1 for update")
        .bind(schedule.id.0)
        .execute(&mut *operator)
        .await
        .unwrap();
    let warm_up = start(&db.store, "quick").await;
    let (stop, running) = spawn_worker(&db.store, registry);
    until_status(&db.store, warm_up, ExecutionStatus::Completed).await;

    // The schedule falls due within a second: the look that fires it waits for the row.
    let waiting_since = tokio::time::Instant::now();
    loop {
        let stuck: bool = sqlx::query_scalar(
            "select exists (select 1 from pg_stat_activity \
             where datname = current_database() and wait_event_type = 'Lock' \
               and query like '%update workflow_schedules%')",
        )
        .fetch_one(db.store.pool())
        .await
        .unwrap();
        if stuck {
            break;
        }
        assert!(
            waiting_since.elapsed() < Duration::from_secs(20),
            "the worker's look never reached the locked schedule"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let woken = start(&db.store, "quick").await;
    until_status(&db.store, woken, ExecutionStatus::Completed).await;
    stop.cancel();
    tokio::time::timeout(PROMPT, running)
        .await
        .expect("the worker did not stop while its schedule look was stuck")
        .unwrap()
        .unwrap();
    operator.rollback().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_schedule_wakes_idle_workers() {
    let db = TestDatabase::create().await;
    let registry = nodes::registry();
    workflow("ticking")
        .node("work", "echo", serde_json::Value::Null)
        .edge("start", "work")
        .save(&db.store, &registry)
        .await;
    let (stop, running) = spawn_worker(&db.store, registry);
    // Past the worker's first look at schedules (it found none).
    tokio::time::sleep(Duration::from_secs(1)).await;

    workflow_worker_core::Client::new(db.store.clone())
        .create_schedule(workflow_worker_core::NewSchedule::new(
            "ticking",
            "* * * * * *",
        ))
        .await
        .unwrap();
    let started = tokio::time::Instant::now();
    loop {
        let fired = db
            .store
            .list_executions(workflow_worker_core::ListExecutionsParams {
                status: Some(ExecutionStatus::Completed),
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        if !fired.is_empty() {
            break;
        }
        assert!(
            started.elapsed() < PROMPT,
            "the new schedule did not fire within {PROMPT:?}: no wake-up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.cancel();
    running.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_workers_are_woken_by_starts_and_signals_in_their_process() {
    let db = TestSqlite::create().await;
    let registry = save_quick_and_approval(&db.store).await;
    let (stop, running) = spawn_worker(&db.store, registry);
    // Past the worker's first poll: from here on only a hint wakes it.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let fresh = start(&db.store, "quick").await;
    until_status(&db.store, fresh, ExecutionStatus::Completed).await;

    let approval = start(&db.store, "approval").await;
    until_status(&db.store, approval, ExecutionStatus::Waiting).await;
    db.store
        .send_signal(SendSignalParams {
            execution_id: approval,
            name: "go".into(),
            payload: json!({}),
            idempotency_key: None,
        })
        .await
        .unwrap();
    until_status(&db.store, approval, ExecutionStatus::Completed).await;

    stop.cancel();
    running.await.unwrap().unwrap();
}
