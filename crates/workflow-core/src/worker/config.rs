//! [`WorkerConfig`]: every setting of a worker, its default, and the rules it must satisfy.

use std::fmt;
use std::time::Duration;

/// How often an idle worker polls for runnable executions by default.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(1);
/// The shortest poll interval accepted.
pub const MIN_POLL_INTERVAL: Duration = Duration::from_millis(10);
/// How many executions a worker runs at once by default.
pub const DEFAULT_CONCURRENCY: usize = 10;
/// The most executions a worker claims ahead of its free slots by default.
pub const DEFAULT_CLAIM_AHEAD: usize = 500;
/// How long a claim's lease lasts by default before another worker may take the execution.
pub const DEFAULT_LEASE_DURATION: Duration = Duration::from_secs(30);
/// How often leases of executions in flight are renewed by default.
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(10);
/// How long in-flight executions may take to finish after shutdown is requested, by default.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// How many times in a row a suspect execution's worker may die while running it alone
/// before the execution is failed as poison, by default.
pub const DEFAULT_MAX_RESCUES: u32 = 3;
/// The largest node output recorded by default, in bytes of JSON: 1 MiB.
pub const DEFAULT_NODE_OUTPUT_LIMIT: usize = 1 << 20;
/// The smallest node output limit accepted, in bytes.
pub const MIN_NODE_OUTPUT_LIMIT: usize = 1024;

/// Everything a [`WorkflowWorker`](super::WorkflowWorker) can be configured with.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WorkerConfig {
    /// See [`WorkflowWorker::poll_interval`](super::WorkflowWorker::poll_interval).
    pub poll_interval: Duration,
    /// See [`WorkflowWorker::concurrency`](super::WorkflowWorker::concurrency).
    pub concurrency: usize,
    /// See [`WorkflowWorker::claim_ahead`](super::WorkflowWorker::claim_ahead).
    pub claim_ahead: usize,
    /// See [`WorkflowWorker::lease_duration`](super::WorkflowWorker::lease_duration).
    pub lease_duration: Duration,
    /// See [`WorkflowWorker::heartbeat_interval`](super::WorkflowWorker::heartbeat_interval).
    pub heartbeat_interval: Duration,
    /// See [`WorkflowWorker::shutdown_grace`](super::WorkflowWorker::shutdown_grace).
    pub shutdown_grace: Duration,
    /// See [`WorkflowWorker::max_rescues`](super::WorkflowWorker::max_rescues).
    pub max_rescues: u32,
    /// See [`WorkflowWorker::wakeups`](super::WorkflowWorker::wakeups).
    pub wakeups: bool,
    /// See [`WorkflowWorker::worker_id`](super::WorkflowWorker::worker_id).
    pub worker_id: String,
    /// See [`WorkflowWorker::prune_after`](super::WorkflowWorker::prune_after).
    pub prune_after: Option<Duration>,
    /// See [`WorkflowWorker::node_output_limit`](super::WorkflowWorker::node_output_limit).
    pub node_output_limit: usize,
    /// See [`WorkflowWorker::priority_ageing`](super::WorkflowWorker::priority_ageing).
    pub priority_ageing: Option<Duration>,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            poll_interval: DEFAULT_POLL_INTERVAL,
            concurrency: DEFAULT_CONCURRENCY,
            claim_ahead: DEFAULT_CLAIM_AHEAD,
            lease_duration: DEFAULT_LEASE_DURATION,
            heartbeat_interval: DEFAULT_HEARTBEAT_INTERVAL,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            max_rescues: DEFAULT_MAX_RESCUES,
            wakeups: true,
            worker_id: default_worker_id(),
            prune_after: None,
            node_output_limit: DEFAULT_NODE_OUTPUT_LIMIT,
            priority_ageing: Some(crate::flow::DEFAULT_PRIORITY_AGEING),
        }
    }
}

impl WorkerConfig {
    /// Checks every setting, naming the first one out of range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let error = |field, value: &dyn fmt::Debug, rule| {
            Err(ConfigError {
                field,
                value: format!("{value:?}"),
                rule,
            })
        };
        if self.poll_interval < MIN_POLL_INTERVAL {
            return error(
                "poll_interval",
                &self.poll_interval,
                ConfigRule::AtLeast(format!("{MIN_POLL_INTERVAL:?}")),
            );
        }
        if self.concurrency == 0 {
            return error(
                "concurrency",
                &self.concurrency,
                ConfigRule::AtLeast("1".into()),
            );
        }
        if self.heartbeat_interval.is_zero() {
            return error(
                "heartbeat_interval",
                &self.heartbeat_interval,
                ConfigRule::Positive,
            );
        }
        if self.heartbeat_interval >= self.lease_duration {
            return error(
                "heartbeat_interval",
                &self.heartbeat_interval,
                ConfigRule::ShorterThan {
                    field: "lease_duration",
                    value: format!("{:?}", self.lease_duration),
                },
            );
        }
        if self.max_rescues == 0 {
            return error(
                "max_rescues",
                &self.max_rescues,
                ConfigRule::AtLeast("1".into()),
            );
        }
        if self.node_output_limit < MIN_NODE_OUTPUT_LIMIT {
            return error(
                "node_output_limit",
                &self.node_output_limit,
                ConfigRule::AtLeast(format!("{MIN_NODE_OUTPUT_LIMIT}")),
            );
        }
        if self.priority_ageing.is_some_and(|period| period.is_zero()) {
            return error(
                "priority_ageing",
                &self.priority_ageing,
                ConfigRule::Positive,
            );
        }
        if self.worker_id.trim().is_empty() {
            return error("worker_id", &self.worker_id, ConfigRule::NotEmpty);
        }
        Ok(())
    }
}

/// A worker setting out of range: which one, its value, and the rule it breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} ({value}) {rule}")]
#[non_exhaustive]
pub struct ConfigError {
    /// The setting, as named in [`WorkerConfig`].
    pub field: &'static str,
    /// Its value, as `Debug` shows it.
    pub value: String,
    /// The rule it breaks.
    pub rule: ConfigRule,
}

/// A rule a [`WorkerConfig`] setting must satisfy.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigRule {
    /// At least this much (as `Debug` shows it).
    AtLeast(String),
    /// More than zero.
    Positive,
    /// Shorter than another setting.
    ShorterThan {
        /// The other setting.
        field: &'static str,
        /// Its value.
        value: String,
    },
    /// Not empty or blank.
    NotEmpty,
}

impl fmt::Display for ConfigRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AtLeast(min) => write!(f, "must be at least {min}"),
            Self::Positive => f.write_str("must be positive"),
            Self::ShorterThan { field, value } => {
                write!(f, "must be shorter than {field} ({value})")
            }
            Self::NotEmpty => f.write_str("must not be empty"),
        }
    }
}

/// `hostname-pid-xxxx`: unique per process, and readable in the lease owner column.
fn default_worker_id() -> String {
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}-{}-{}", std::process::id(), &suffix[..4])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid() {
        assert_eq!(WorkerConfig::default().validate(), Ok(()));
    }

    #[test]
    fn each_rule_names_its_field_value_and_rule() {
        type Breaks = fn(&mut WorkerConfig);
        let cases: Vec<(Breaks, &str, &str)> = vec![
            (
                |c| c.poll_interval = Duration::from_millis(5),
                "poll_interval",
                "poll_interval (5ms) must be at least 10ms",
            ),
            (
                |c| c.concurrency = 0,
                "concurrency",
                "concurrency (0) must be at least 1",
            ),
            (
                |c| c.heartbeat_interval = Duration::ZERO,
                "heartbeat_interval",
                "heartbeat_interval (0ns) must be positive",
            ),
            (
                |c| c.heartbeat_interval = c.lease_duration,
                "heartbeat_interval",
                "heartbeat_interval (30s) must be shorter than lease_duration (30s)",
            ),
            (
                |c| c.max_rescues = 0,
                "max_rescues",
                "max_rescues (0) must be at least 1",
            ),
            (
                |c| c.node_output_limit = 10,
                "node_output_limit",
                "node_output_limit (10) must be at least 1024",
            ),
            (
                |c| c.worker_id = "  ".into(),
                "worker_id",
                "worker_id (\"  \") must not be empty",
            ),
        ];
        for (break_it, field, message) in cases {
            let mut config = WorkerConfig::default();
            break_it(&mut config);
            let err = config.validate().unwrap_err();
            assert_eq!(err.field, field);
            assert_eq!(err.to_string(), message);
        }
    }

    #[test]
    fn default_worker_ids_differ_per_worker_and_name_the_process() {
        let (a, b) = (default_worker_id(), default_worker_id());
        assert_ne!(a, b);
        assert!(a.contains(&format!("-{}-", std::process::id())), "{a}");
    }
}
