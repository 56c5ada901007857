//! The operator endpoint of the binary (`--metrics-addr`): counters scraped after real
//! executions, and readiness following the database through an outage.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{Worker, get, save, wait_for};
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use workflow_worker_core::{ExecutionStatus, StartExecutionParams, Store};
use workflow_worker_store::testing::TestDatabase;

/// A TCP proxy to the database that the test can cut: stopping it closes the listener and
/// every connection through it, which is what the worker sees when the database goes away.
struct Proxy {
    addr: SocketAddr,
    upstream: String,
    task: Option<JoinHandle<()>>,
}

impl Proxy {
    async fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = Some(tokio::spawn(forward(listener, upstream.clone())));
        Self {
            addr,
            upstream,
            task,
        }
    }

    fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }

    /// Listens again on the same port.
    async fn restart(&mut self) {
        let listener = TcpListener::bind(self.addr).await.unwrap();
        self.task = Some(tokio::spawn(forward(listener, self.upstream.clone())));
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Accepts and forwards connections; aborting it drops the connections with it.
async fn forward(listener: TcpListener, upstream: String) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let Ok((mut client, _)) = listener.accept().await else {
            continue;
        };
        let upstream = upstream.clone();
        connections.spawn(async move {
            if let Ok(mut server) = TcpStream::connect(&upstream).await {
                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
            }
        });
    }
}

/// The value of one sample line (`name{labels} value`) in a Prometheus text exposition.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let value = line.strip_prefix(series)?.strip_prefix(' ')?;
        value.parse().ok()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_executions_and_readiness_follows_the_database() {
    let db = TestDatabase::create().await;
    save(
        &db.store,
        json!({
            "name": "hello",
            "nodes": [
                {"id": "start", "type": "trigger"},
                {"id": "greet", "type": "code", "config": {"language": "shell", "code": "echo hi"}}
            ],
            "edges": [{"from": "start", "to": "greet"}]
        }),
    )
    .await;
    save(
        &db.store,
        json!({
            "name": "broken",
            "nodes": [
                {"id": "start", "type": "trigger"},
                {"id": "fail", "type": "code", "config": {"language": "shell", "code": "exit 3"},
                 "retry": {"max_attempts": 2, "initial_backoff": 0.05}}
            ],
            "edges": [{"from": "start", "to": "fail"}]
        }),
    )
    .await;
    let mut ids = Vec::new();
    for workflow in ["hello", "hello", "hello", "broken"] {
        let started = db
            .store
            .start_execution(StartExecutionParams::new(workflow, json!({})))
            .await
            .unwrap();
        ids.push(started.execution.id);
    }

    let database = url::Url::parse(&db.url).unwrap();
    let upstream = format!(
        "{}:{}",
        database.host_str().unwrap(),
        database.port().unwrap_or(5432)
    );
    let mut proxy = Proxy::start(upstream).await;
    let mut proxied = database.clone();
    proxied.set_port(Some(proxy.addr.port())).unwrap();
    let worker = Worker::run(
        proxied.as_str(),
        &["--poll-interval", "0.1", "--metrics-addr", "127.0.0.1:0"],
    );
    let endpoint: SocketAddr = wait_for("the metrics address in the log", WAIT, || async {
        let log = worker.log();
        let line = log.lines().find(|line| line.contains("serving /metrics"))?;
        line.split("addr=")
            .nth(1)?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    })
    .await;

    let store = &db.store;
    wait_for("every execution to end", WAIT, || async {
        for id in &ids {
            let status = store.get_execution(*id).await.unwrap().execution.status;
            if !status.is_terminal() {
                return None;
            }
        }
        Some(())
    })
    .await;
    let (status, metrics) = get(endpoint, "/metrics").await.expect("scrape /metrics");
    assert_eq!(status, 200, "{metrics}");
    for (series, expected) in [
        (
            r#"workflow_executions_started_total{workflow="hello"}"#,
            3.0,
        ),
        (
            r#"workflow_executions_started_total{workflow="broken"}"#,
            1.0,
        ),
        (
            r#"workflow_executions_finished_total{workflow="hello",status="completed"}"#,
            3.0,
        ),
        (
            r#"workflow_executions_finished_total{workflow="broken",status="failed"}"#,
            1.0,
        ),
        (
            r#"workflow_node_runs_total{node_type="trigger",status="completed"}"#,
            4.0,
        ),
        (
            r#"workflow_node_runs_total{node_type="code",status="completed"}"#,
            3.0,
        ),
        (
            r#"workflow_node_runs_total{node_type="code",status="failed"}"#,
            2.0,
        ),
        (
            r#"workflow_retries_total{workflow="broken",node_type="code"}"#,
            1.0,
        ),
        (
            r#"workflow_node_run_duration_seconds_count{node_type="code"}"#,
            5.0,
        ),
        ("workflow_executions_runnable", 0.0),
        ("workflow_executions_running", 0.0),
    ] {
        assert_eq!(
            sample(&metrics, series),
            Some(expected),
            "{series} in\n{metrics}"
        );
    }
    assert!(
        sample(&metrics, "workflow_claim_duration_seconds_count").is_some_and(|n| n >= 1.0),
        "{metrics}"
    );
    assert_eq!(
        store.get_execution(ids[3]).await.unwrap().execution.status,
        ExecutionStatus::Failed
    );

    assert_eq!(get(endpoint, "/healthz").await.map(|r| r.0), Some(200));
    assert_eq!(get(endpoint, "/readyz").await.map(|r| r.0), Some(200));

    // The database goes away: the process stays up, but it is not ready.
    proxy.stop();
    let body = wait_for("/readyz to report the outage", WAIT, || async {
        get(endpoint, "/readyz")
            .await
            .filter(|(status, _)| *status == 503)
            .map(|(_, body)| body)
    })
    .await;
    assert!(body.starts_with("database"), "{body}");
    assert_eq!(get(endpoint, "/healthz").await.map(|r| r.0), Some(200));

    // It comes back: ready again, without a restart.
    proxy.restart().await;
    wait_for("/readyz to recover", WAIT, || async {
        get(endpoint, "/readyz")
            .await
            .filter(|(status, _)| *status == 200)
    })
    .await;
    let log = worker.stop();
    assert!(log.contains("worker stopped"), "{log}");
}

const WAIT: Duration = Duration::from_secs(30);
