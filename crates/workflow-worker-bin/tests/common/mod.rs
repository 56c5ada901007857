//! Helpers shared by the binary's test files: running `workflow-worker`, and worker processes.

#![allow(
    dead_code,
    reason = "each test file uses a different subset of these helpers"
)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use workflow_worker_core::{NodeRegistry, Store, WorkflowDefinition, WorkflowGraph};

/// The binary, with none of the caller's configuration in its environment.
pub(crate) fn bin(database_url: Option<&str>) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_workflow-worker"));
    for name in [
        "DATABASE_URL",
        "SUPABASE_DB_URL",
        "WORKFLOW_WORKER_CONCURRENCY",
        "WORKFLOW_POLL_INTERVAL",
        "WORKFLOW_WORKER_ID",
        "WORKFLOW_LEASE_DURATION",
        "WORKFLOW_HEARTBEAT_INTERVAL",
        "WORKFLOW_SHUTDOWN_GRACE",
        "WORKFLOW_MAX_RESCUES",
        "WORKFLOW_WAKEUPS",
        "WORKFLOW_METRICS_ADDR",
        "WORKFLOW_PRUNE_AFTER",
        "WORKFLOW_UI_ADDR",
        "WORKFLOW_UI_READ_ONLY",
        "WORKFLOW_UI_TOKEN",
        "WORKFLOW_LOG_FORMAT",
        "RUST_LOG",
    ] {
        command.env_remove(name);
    }
    if let Some(url) = database_url {
        command.env("DATABASE_URL", url);
    }
    command
}

/// A worker process whose log goes to a file (a pipe nobody reads would fill up and block it).
pub(crate) struct Worker {
    child: std::process::Child,
    log: PathBuf,
}

impl Worker {
    pub(crate) fn spawn(command: &mut Command) -> Self {
        let log =
            std::env::temp_dir().join(format!("wfw-worker-{}.log", uuid::Uuid::new_v4().simple()));
        let file = std::fs::File::create(&log).unwrap();
        let child = command
            .stderr(Stdio::from(file))
            .spawn()
            .expect("start the worker");
        Self { child, log }
    }

    /// Starts `workflow-worker run` on `url` with extra arguments.
    pub(crate) fn run(url: &str, args: &[&str]) -> Self {
        Self::spawn(bin(Some(url)).arg("run").args(args))
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process has exited.
    pub(crate) fn exited(&mut self) -> bool {
        self.child.try_wait().unwrap().is_some()
    }

    /// The log so far.
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends SIGTERM, checks the worker exits cleanly, and returns its log.
    pub(crate) fn stop(self) -> String {
        signal(self.pid(), "TERM");
        self.stopped()
    }

    /// Checks a worker sent SIGTERM or SIGINT exits cleanly, and returns its log. A worker that
    /// has not exited a minute later (its shutdown is bounded by the grace period and the
    /// release timeout, seconds here) is killed and fails the test with its log.
    pub(crate) fn stopped(mut self) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "worker did not exit within 60 s of SIGTERM:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let log = self.log();
        std::fs::remove_file(&self.log).unwrap();
        assert!(status.success(), "worker exit {status:?}:\n{log}");
        log
    }

    /// Kills the process with SIGKILL and returns its log.
    pub(crate) fn kill(mut self) -> String {
        signal(self.pid(), "KILL");
        self.child.wait().unwrap();
        self.wait_dead()
    }

    /// Waits for a process that is dying by itself and returns its log.
    pub(crate) fn wait_dead(mut self) -> String {
        self.child.wait().unwrap();
        let log = self.log();
        let _ = std::fs::remove_file(&self.log);
        log
    }
}

impl Drop for Worker {
    /// A test that fails halfway leaves no worker running behind it.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Sends `signal` to the process group `pgid` leads, as a terminal's Ctrl-C does.
pub(crate) fn signal_group(pgid: u32, signal: &str) {
    let sent = Command::new("kill")
        .args([&format!("-{signal}"), "--", &format!("-{pgid}")])
        .status()
        .unwrap();
    assert!(sent.success(), "kill -{signal} -- -{pgid}");
}

pub(crate) fn signal(pid: u32, signal: &str) {
    let sent = Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(sent.success(), "kill -{signal} {pid}");
}

/// Validates a JSON definition against the built-in node types and saves it.
pub(crate) async fn save(store: &impl Store, definition: serde_json::Value) {
    let definition: WorkflowDefinition = serde_json::from_value(definition).unwrap();
    let graph = WorkflowGraph::validate(definition, &NodeRegistry::builtin()).unwrap();
    store.save_workflow(&graph).await.unwrap();
}

/// Polls `check` every 50 ms until it returns `Some`, or panics with `what` after `deadline`.
pub(crate) async fn wait_for<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            started.elapsed() < deadline,
            "timed out after {deadline:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `GET path` over a plain connection: the status code and the body.
pub(crate) async fn get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await.ok()?;
    let status = response.split(' ').nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n")?.1.to_owned();
    Some((status, body))
}

/// trigger -> wait for "approval" -> ship (prints `<script>alert(1)</script>`, HTML a page
/// must show as text) or refund.
pub(crate) fn approval_workflow() -> serde_json::Value {
    serde_json::json!({
        "name": "order_approval",
        "nodes": [
            {"id": "order", "type": "trigger"},
            {"id": "approval", "type": "wait_for_signal", "config": {"signal": "approval"}},
            {"id": "ship", "type": "code",
             "config": {"language": "shell", "code": "echo '<script>alert(1)</script>'"}},
            {"id": "refund", "type": "code", "config": {"language": "shell", "code": "echo refunded"}}
        ],
        "edges": [
            {"from": "order", "to": "approval"},
            {"from": "approval", "to": "ship", "branch": "approved"},
            {"from": "approval", "to": "refund", "branch": "rejected"}
        ]
    })
}
