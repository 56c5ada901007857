//! Signals sent by other programs with plain SQL, on PostgreSQL: a signal never goes
//! unnoticed, however its commit interleaves with a worker parking the execution it is for.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::json;
use tokio::sync::{Notify, mpsc};
use workflow_worker_core::testing::fixture::workflow;
use workflow_worker_core::testing::nodes;
use workflow_worker_core::{
    ExecutionStatus, NodeContext, NodeError, NodeExecutor, NodeOutcome, StartExecutionParams,
    Store, WorkflowWorker,
};
use workflow_worker_store::testing::TestDatabase;

/// Waits for signal `go`. Before it parks its execution the first time it tells the test and
/// waits for the test's word, so the test can line up its transaction against the park.
struct Gate {
    running: mpsc::UnboundedSender<()>,
    proceed: Arc<Notify>,
    /// The wait's timeout; none waits for the signal forever.
    timeout: Option<Duration>,
}

#[async_trait]
impl NodeExecutor for Gate {
    async fn execute(&self, ctx: NodeContext) -> Result<NodeOutcome, NodeError> {
        if let Some(signal) = ctx.signals.iter().find(|s| s.name == "go") {
            return Ok(NodeOutcome::Signalled {
                signal: signal.id,
                branch: None,
                output: signal.payload.clone(),
            });
        }
        let _ = self.running.send(());
        self.proceed.notified().await;
        Ok(NodeOutcome::Wait {
            signal: Some("go".into()),
            timeout: self.timeout,
        })
    }
}

/// The interleaving that lost signals: the worker's park reads the inbox (finding nothing),
/// then waits for the execution's row, which another program's transaction holds while it
/// stores the signal; that program's wake-up finds the execution still running and does
/// nothing. The worker must notice the signal once it gets the row, not sleep for a day.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_committed_while_its_execution_is_being_parked_still_wakes_it() {
    signal_racing_the_park_wakes(Some(Duration::from_secs(86_400))).await;
}

/// The same for a wait with no timeout, which parks with no `run_at` at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_racing_the_park_of_a_wait_without_timeout_still_wakes_it() {
    signal_racing_the_park_wakes(None).await;
}

async fn signal_racing_the_park_wakes(timeout: Option<Duration>) {
    let db = TestDatabase::create().await;
    let (running, mut gate_running) = mpsc::unbounded_channel();
    let proceed = Arc::new(Notify::new());
    let registry = nodes::registry().with(
        "gate",
        Gate {
            running,
            proceed: proceed.clone(),
            timeout,
        },
    );
    workflow("gated")
        .node("gate", "gate", serde_json::Value::Null)
        .edge("start", "gate")
        .save(&db.store, &registry)
        .await;
    let stop = tokio_util::sync::CancellationToken::new();
    let worker = WorkflowWorker::new(db.store.clone())
        .nodes(registry)
        .poll_interval(Duration::from_millis(100));
    let worker = tokio::spawn(worker.run_until(stop.clone().cancelled_owned()));
    let id = db
        .store
        .start_execution(StartExecutionParams::new("gated", json!({})))
        .await
        .unwrap()
        .execution
        .id;

    // The gate runs; hold the execution's row, then let the gate ask to park.
    tokio::time::timeout(Duration::from_secs(60), gate_running.recv())
        .await
        .expect("the gate node runs")
        .unwrap();
    let other = sqlx::PgPool::connect(&db.url).await.unwrap();
    let mut tx = other.begin().await.unwrap();
    sqlx::query("select 1 from workflow_executions where id = $1 for update")
        .bind(id.0)
        .execute(&mut *tx)
        .await
        .unwrap();
    proceed.notify_one();
    // Until the worker's park statement (the store's one step statement, RECORD_STEPS,
    // here parking the execution to wait) waits for the row.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let blocked: i64 = sqlx::query_scalar(
            "select count(*) from pg_stat_activity
             where datname = current_database() and wait_event_type = 'Lock'
               and query like '%with step as%'",
        )
        .fetch_one(&other)
        .await
        .unwrap();
        if blocked > 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the park never waited"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    sqlx::query(
        "insert into workflow_signals (execution_id, name, payload) values ($1, 'go', '\"now\"')",
    )
    .bind(id.0)
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();

    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let execution = loop {
        let execution = db.store.get_execution(id).await.unwrap().execution;
        if execution.status.is_terminal() || tokio::time::Instant::now() > deadline {
            break execution;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    stop.cancel();
    worker.await.unwrap().unwrap();
    assert_eq!(
        execution.status,
        ExecutionStatus::Completed,
        "left {} until {:?} with its signal in the inbox",
        execution.status,
        execution.run_at
    );
    assert_eq!(execution.output, Some(json!("now")));
}
