//! Node types for tests. [`registry`] holds them all beside the built-ins.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};

use crate::{ExecutionId, NodeContext, NodeError, NodeExecutor, NodeOutcome, NodeRegistry};

/// The built-in node types plus `sleep`, `gauge`, `echo`, `config`, `flaky`, `fatal`, `panic`
/// and `branch`.
pub fn registry() -> NodeRegistry {
    NodeRegistry::builtin()
        .with("sleep", Sleep)
        .with("gauge", Gauge)
        .with("echo", Echo)
        .with("config", ConfigNode)
        .with("flaky", Flaky)
        .with("fatal", Fatal)
        .with("panic", Panic)
        .with("branch", Branch)
}

/// Sleeps `config.ms` milliseconds, then outputs `{"slept_ms": ms}` (with `"tag":
/// config.tag` when the config has one).
#[derive(Debug, Clone, Copy)]
pub struct Sleep;

#[async_trait]
impl NodeExecutor for Sleep {
    async fn execute(&self, ctx: NodeContext) -> Result<NodeOutcome, NodeError> {
        let ms = ctx.config["ms"].as_u64().unwrap_or(0);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        let mut output = json!({ "slept_ms": ms });
        if let Some(tag) = ctx.config.get("tag") {
            output["tag"] = tag.clone();
        }
        Ok(NodeOutcome::complete(output))
    }
}

/// How many `gauge` nodes with each key run now, and the most that ever ran at once.
static GAUGES: Mutex<Option<HashMap<String, (usize, usize)>>> = Mutex::new(None);

/// The most `gauge` nodes with `key` that ran at once, measured in this process.
pub fn gauge_peak(key: &str) -> usize {
    GAUGES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .as_ref()
        .and_then(|gauges| gauges.get(key))
        .map_or(0, |&(_, peak)| peak)
}

/// Counts itself as running under `config.key` for `config.ms` milliseconds (see
/// [`gauge_peak`]), then outputs its input.
#[derive(Debug, Clone, Copy)]
pub struct Gauge;

#[async_trait]
impl NodeExecutor for Gauge {
    async fn execute(&self, ctx: NodeContext) -> Result<NodeOutcome, NodeError> {
        let key = ctx.config["key"].as_str().unwrap_or_default().to_owned();
        let change = |delta: isize| {
            let mut gauges = GAUGES
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let (now, peak) = gauges
                .get_or_insert_with(HashMap::new)
                .entry(key.clone())
                .or_default();
            *now = now.saturating_add_signed(delta);
            *peak = (*peak).max(*now);
        };
        change(1);
        let ms = ctx.config["ms"].as_u64().unwrap_or(0);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        change(-1);
        Ok(NodeOutcome::complete(ctx.input))
    }
}

/// Outputs its input unchanged.
#[derive(Debug, Clone, Copy)]
pub struct Echo;

#[async_trait]
impl NodeExecutor for Echo {
    async fn execute(&self, ctx: NodeContext) -> Result<NodeOutcome, NodeError> {
        Ok(NodeOutcome::complete(ctx.input))
    }
}

/// Outputs its config as the node received it (templates rendered). A config with a key
/// `"reject"` is refused by its check.
#[derive(Debug, Clone, Copy)]
pub struct ConfigNode;

#[async_trait]
impl NodeExecutor for ConfigNode {
    fn validate_config(&self, config: &Value) -> Result<(), crate::BoxError> {
        match config.get("reject") {
            Some(reason) => Err(format!("rejected: {reason}").into()),
            None => Ok(()),
        }
    }

    async fn execute(&self, ctx: NodeContext) -> Result<NodeOutcome, NodeError> {
        Ok(NodeOutcome::complete(ctx.config))
    }
}

/// Fails with a retryable error on attempts up to `config.fail_times`, then completes.
#[derive(Debug, Clone, Copy)]
pub struct Flaky;

#[async_trait]
impl NodeExecutor for Flaky {
    async fn execute(&self, ctx: NodeContext) -> Result<NodeOutcome, NodeError> {
        let fail_times = ctx.config["fail_times"].as_u64().unwrap_or(u64::MAX);
        if u64::from(ctx.attempt) <= fail_times {
            return Err(NodeError::retryable(format!(
                "flaky failure on attempt {}",
                ctx.attempt
            )));
        }
        Ok(NodeOutcome::complete(json!({ "attempt": ctx.attempt })))
    }
}

/// Always fails with a fatal error.
#[derive(Debug, Clone, Copy)]
pub struct Fatal;

#[async_trait]
impl NodeExecutor for Fatal {
    async fn execute(&self, _ctx: NodeContext) -> Result<NodeOutcome, NodeError> {
        Err(NodeError::fatal("bad input, will never work"))
    }
}

/// Panics with `config.message`.
#[derive(Debug, Clone, Copy)]
pub struct Panic;

#[async_trait]
impl NodeExecutor for Panic {
    async fn execute(&self, ctx: NodeContext) -> Result<NodeOutcome, NodeError> {
        let message = ctx.config["message"].as_str().unwrap_or("boom").to_owned();
        panic!("{message}");
    }
}

/// Completes choosing branch `config.branch`, with its input as output.
#[derive(Debug, Clone, Copy)]
pub struct Branch;

#[async_trait]
impl NodeExecutor for Branch {
    fn validate_config(&self, config: &Value) -> Result<(), crate::BoxError> {
        config["branch"]
            .as_str()
            .map(|_| ())
            .ok_or_else(|| "config.branch must be a string".into())
    }

    async fn execute(&self, ctx: NodeContext) -> Result<NodeOutcome, NodeError> {
        let branch = ctx.config["branch"].as_str().unwrap_or_default().to_owned();
        Ok(NodeOutcome::branch(ctx.input, branch))
    }
}

/// Counts how often it ran for each execution, to check that nodes run exactly once.
#[derive(Debug, Clone, Default)]
pub struct Count {
    runs: Arc<Mutex<HashMap<ExecutionId, u32>>>,
}

impl Count {
    /// How often the node ran for each execution.
    pub fn runs(&self) -> HashMap<ExecutionId, u32> {
        self.runs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

#[async_trait]
impl NodeExecutor for Count {
    async fn execute(&self, ctx: NodeContext) -> Result<NodeOutcome, NodeError> {
        *self
            .runs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .entry(ctx.execution_id)
            .or_default() += 1;
        // A little work, so executions overlap between workers.
        tokio::time::sleep(Duration::from_millis(2)).await;
        Ok(NodeOutcome::complete(json!({ "counted": true })))
    }
}

/// Counts executions between their `between` nodes: one with `config.leave` false enters,
/// one with it true leaves. Also counts its runs in flight. Each count keeps its peak.
#[derive(Debug, Clone, Default)]
pub struct Between {
    /// (between now, peak between, running now, peak running).
    counts: Arc<Mutex<[usize; 4]>>,
}

impl Between {
    /// The most executions that were between their nodes at once.
    pub fn peak_between(&self) -> usize {
        self.counts.lock().unwrap_or_else(|p| p.into_inner())[1]
    }

    /// The most of its runs that were in flight at once.
    pub fn peak_running(&self) -> usize {
        self.counts.lock().unwrap_or_else(|p| p.into_inner())[3]
    }

    fn change(&self, between: isize, running: isize) {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        counts[0] = counts[0].saturating_add_signed(between);
        counts[1] = counts[1].max(counts[0]);
        counts[2] = counts[2].saturating_add_signed(running);
        counts[3] = counts[3].max(counts[2]);
    }
}

#[async_trait]
impl NodeExecutor for Between {
    async fn execute(&self, ctx: NodeContext) -> Result<NodeOutcome, NodeError> {
        let leave = ctx.config["leave"].as_bool().unwrap_or(false);
        self.change(if leave { 0 } else { 1 }, 1);
        // A little work, so runs of several executions overlap.
        tokio::time::sleep(Duration::from_millis(1)).await;
        self.change(if leave { -1 } else { 0 }, -1);
        Ok(NodeOutcome::complete(ctx.input))
    }
}

/// Fails while it is broken (with a fatal error, or a retryable one if `config.retryable`),
/// and completes once [`set_fixed`](Self::set_fixed): a bug an operator fixes before retrying.
#[derive(Debug, Clone, Default)]
pub struct Switch {
    fixed: Arc<std::sync::atomic::AtomicBool>,
}

impl Switch {
    /// Whether it completes (`true`) or fails (`false`) from now on.
    pub fn set_fixed(&self, fixed: bool) {
        self.fixed.store(fixed, std::sync::atomic::Ordering::SeqCst);
    }
}

#[async_trait]
impl NodeExecutor for Switch {
    async fn execute(&self, ctx: NodeContext) -> Result<NodeOutcome, NodeError> {
        const BROKEN: &str = "broken until an operator fixes it";
        if self.fixed.load(std::sync::atomic::Ordering::SeqCst) {
            Ok(NodeOutcome::complete(json!({ "fixed": true })))
        } else if ctx.config["retryable"] == json!(true) {
            Err(NodeError::retryable(BROKEN))
        } else {
            Err(NodeError::fatal(BROKEN))
        }
    }
}

/// Runs until [`open`](Self::open)ed, counting its starts: a node that is still running
/// while a test acts on its execution.
#[derive(Debug, Clone)]
pub struct Gate {
    started: Arc<tokio::sync::watch::Sender<u32>>,
    open: Arc<tokio::sync::watch::Sender<bool>>,
}

impl Default for Gate {
    fn default() -> Self {
        Self {
            started: Arc::new(tokio::sync::watch::Sender::new(0)),
            open: Arc::new(tokio::sync::watch::Sender::new(false)),
        }
    }
}

impl Gate {
    /// Lets every attempt waiting, and every later one, complete.
    pub fn open(&self) {
        self.open.send_replace(true);
    }

    /// How many attempts started.
    pub fn starts(&self) -> u32 {
        *self.started.borrow()
    }

    /// Waits until `starts` attempts have started, or panics after `within`.
    pub async fn started(&self, starts: u32, within: Duration) {
        let mut started = self.started.subscribe();
        tokio::time::timeout(within, started.wait_for(|n| *n >= starts))
            .await
            .unwrap_or_else(|_| panic!("{starts} attempts of the gate did not start in {within:?}"))
            .expect("the gate is alive");
    }
}

#[async_trait]
impl NodeExecutor for Gate {
    async fn execute(&self, _ctx: NodeContext) -> Result<NodeOutcome, NodeError> {
        self.started.send_modify(|n| *n += 1);
        let mut open = self.open.subscribe();
        open.wait_for(|open| *open)
            .await
            .map_err(|_| NodeError::fatal("the gate was dropped"))?;
        Ok(NodeOutcome::complete(json!({ "opened": true })))
    }
}
