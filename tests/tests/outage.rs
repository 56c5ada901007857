//! The database going away under a running worker: connections killed, the server restarted.
//! The worker logs, backs off, keeps running, and every execution still completes.

use std::time::{Duration, Instant};

use serde_json::json;
use sqlx::Connection;
use workflow_worker_core::testing::fixture::{self, workflow};
use workflow_worker_core::testing::nodes;
use workflow_worker_core::{
    ExecutionDetail, ExecutionId, ExecutionStatus, NodeRunStatus, StartExecutionParams, Store,
    WorkflowWorker,
};
use workflow_worker_store::testing::TestDatabase;

const EXECUTIONS: usize = 60;

/// Starts a worker on `db`, runs `disrupt` while it works through 60 executions of
/// trigger -> sleep -> echo, and checks every execution completed with each node recorded
/// once.
async fn survives(db: &TestDatabase, disrupt: impl std::future::Future<Output = ()>) {
    workflow("steady")
        .node("sleep", "sleep", json!({"ms": 100}))
        .node("echo", "echo", serde_json::Value::Null)
        .edge("start", "sleep")
        .edge("sleep", "echo")
        .save(&db.store, &nodes::registry())
        .await;
    let mut ids: Vec<ExecutionId> = Vec::new();
    for i in 0..EXECUTIONS {
        let params = StartExecutionParams::new("steady", json!({"i": i}));
        ids.push(db.store.start_execution(params).await.unwrap().execution.id);
    }
    let stop = tokio_util::sync::CancellationToken::new();
    let worker = WorkflowWorker::new(db.store.clone())
        .nodes(nodes::registry())
        .concurrency(6)
        .poll_interval(Duration::from_millis(50))
        .lease_duration(Duration::from_secs(3))
        .heartbeat_interval(Duration::from_secs(1));
    let running = tokio::spawn(worker.run_until(stop.clone().cancelled_owned()));

    disrupt.await;

    let details = fixture::wait_until_terminal(&db.store, &ids, Duration::from_secs(120)).await;
    stop.cancel();
    running.await.unwrap().unwrap();
    check(&details);
}

fn check(details: &[ExecutionDetail]) {
    for detail in details {
        assert_eq!(
            detail.execution.status,
            ExecutionStatus::Completed,
            "{detail:?}"
        );
        for node in ["start", "sleep", "echo"] {
            let completed = detail
                .node_runs
                .iter()
                .filter(|r| r.node_id == node && r.status == NodeRunStatus::Completed)
                .count();
            assert_eq!(completed, 1, "{node} of {}", detail.execution.id);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_survives_its_database_connections_being_killed() {
    let db = TestDatabase::create().await;
    let killer_url = db.url.clone();
    survives(&db, async move {
        let mut killer = sqlx::PgConnection::connect(&killer_url).await.unwrap();
        let mut killed = 0i64;
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(4) {
            let (n,): (i64,) = sqlx::query_as(
                "select count(pg_terminate_backend(pid)) from pg_stat_activity \
                 where datname = current_database() and pid <> pg_backend_pid()",
            )
            .fetch_one(&mut killer)
            .await
            .unwrap();
            killed += n;
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        assert!(
            killed > 0,
            "no connection was killed: the test proved nothing"
        );
    })
    .await;
}

/// Restarts the local PostgreSQL server mid-run. Ignored by default because it disturbs
/// every other test using the server; `.ci/run` runs it on its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "restarts the database server; run alone by .ci/run"]
async fn worker_survives_a_database_restart() {
    let Some(version) = std::fs::read_dir("/etc/postgresql")
        .ok()
        .and_then(|mut dirs| dirs.next())
        .and_then(|dir| dir.ok())
        .map(|dir| dir.file_name().to_string_lossy().into_owned())
    else {
        eprintln!("SKIPPED: no local PostgreSQL cluster under /etc/postgresql to restart");
        return;
    };
    let db = TestDatabase::create().await;
    let url = db.url.clone();
    survives(&db, async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
        let (open,): (i64,) =
            sqlx::query_as("select count(*) from workflow_executions where finished_at is null")
                .fetch_one(&mut conn)
                .await
                .unwrap();
        assert!(
            open > 0,
            "every execution ended before the restart: the test proved nothing"
        );
        drop(conn);
        let restarted = tokio::process::Command::new("pg_ctlcluster")
            .args(["--skip-systemctl-redirect", &version, "main", "restart"])
            .status()
            .await;
        match restarted {
            Ok(status) if status.success() => {}
            other => panic!("could not restart PostgreSQL {version}: {other:?}"),
        }
    })
    .await;
}
