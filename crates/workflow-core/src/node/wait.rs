//! Durable waits: `wait_for_signal` (human approval and other messages) and `delay` (timers).
//!
//! Neither holds a worker slot or a lease while it waits: the node returns
//! [`NodeOutcome::Wait`], the worker parks the execution (`waiting`), and the execution is
//! claimed again when a signal arrives or the timer is due. The node then runs again under
//! the same attempt, sees when it began waiting, and decides whether the wait is over.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{BoxError, NodeContext, NodeError, NodeExecutor, NodeOutcome, ResultExt};

pub(crate) const WAIT_FOR_SIGNAL_TYPE: &str = "wait_for_signal";
pub(crate) const DELAY_TYPE: &str = "delay";

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum OnTimeout {
    /// Fail the execution.
    #[default]
    Fail,
    /// Complete, taking the `timeout` branch.
    Branch,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WaitConfig {
    signal: String,
    #[serde(default)]
    timeout: Option<f64>,
    #[serde(default)]
    on_timeout: OnTimeout,
}

fn seconds(value: f64, field: &str) -> Result<std::time::Duration, BoxError> {
    std::time::Duration::try_from_secs_f64(value)
        .map_err(|_| format!("{field} ({value}) must be a number of seconds, 0 or more").into())
}

fn parse_wait(config: &Value) -> Result<(WaitConfig, Option<chrono::Duration>), BoxError> {
    if config.is_null() {
        return Err(r#"config is required: {"signal": "approval", "timeout": 3600}"#.into());
    }
    let parsed = WaitConfig::deserialize(config)?;
    if parsed.signal.trim().is_empty() {
        return Err("signal must not be empty".into());
    }
    let timeout = parsed
        .timeout
        .map(|t| seconds(t, "timeout"))
        .transpose()?
        .map(chrono::Duration::from_std)
        .transpose()?;
    if timeout.is_none() && parsed.on_timeout == OnTimeout::Branch {
        return Err("on_timeout needs a timeout".into());
    }
    Ok((parsed, timeout))
}

/// Waits for a signal named `config.signal`; its payload becomes the node's output.
///
/// ```json
/// {"id": "approval", "type": "wait_for_signal",
///  "config": {"signal": "approval", "timeout": 86400, "on_timeout": "branch"}}
/// ```
///
/// The branch taken is the payload's `decision` when it is a string, else `approved` or
/// `rejected` when the payload has a boolean `approved`. Past `timeout` seconds without the
/// signal the node fails (`"on_timeout": "fail"`, the default) or completes taking the
/// `timeout` branch (`"on_timeout": "branch"`). A signal sent before the node starts waiting
/// is kept and consumed when it does; each signal is consumed once.
#[derive(Debug, Clone, Copy, Default)]
pub struct WaitForSignalNode;

/// The branch a signal's payload chooses.
fn branch_of(payload: &Value) -> Option<String> {
    if let Some(decision) = payload.get("decision").and_then(Value::as_str) {
        return Some(decision.to_owned());
    }
    payload
        .get("approved")
        .and_then(Value::as_bool)
        .map(|approved| if approved { "approved" } else { "rejected" }.to_owned())
}

fn until(due: DateTime<Utc>, now: DateTime<Utc>) -> std::time::Duration {
    (due - now).to_std().unwrap_or_default()
}

#[async_trait]
impl NodeExecutor for WaitForSignalNode {
    fn validate_config(&self, config: &Value) -> Result<(), BoxError> {
        parse_wait(config).map(|_| ())
    }

    async fn execute(&self, ctx: NodeContext) -> Result<NodeOutcome, NodeError> {
        let (config, timeout) = parse_wait(&ctx.config).fatal()?;
        if let Some(signal) = ctx.signals.iter().find(|s| s.name == config.signal) {
            return Ok(NodeOutcome::Signalled {
                signal: signal.id,
                branch: branch_of(&signal.payload),
                output: signal.payload.clone(),
            });
        }
        let Some(timeout) = timeout else {
            return Ok(NodeOutcome::Wait {
                signal: Some(config.signal),
                timeout: None,
            });
        };
        let due = ctx.waiting_since.unwrap_or(ctx.now) + timeout;
        if ctx.now < due {
            return Ok(NodeOutcome::Wait {
                signal: Some(config.signal),
                timeout: Some(until(due, ctx.now)),
            });
        }
        match config.on_timeout {
            OnTimeout::Branch => Ok(NodeOutcome::branch(
                json!({"timed_out": true, "signal": config.signal}),
                "timeout",
            )),
            OnTimeout::Fail => Err(NodeError::fatal(format!(
                "no \"{}\" signal within {}s",
                config.signal,
                timeout.num_milliseconds() as f64 / 1000.0
            ))),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DelayConfig {
    #[serde(default)]
    seconds: Option<f64>,
    #[serde(default)]
    until: Option<DateTime<Utc>>,
}

enum Delay {
    For(chrono::Duration),
    Until(DateTime<Utc>),
}

fn parse_delay(config: &Value) -> Result<Delay, BoxError> {
    if config.is_null() {
        return Err(
            r#"config is required: {"seconds": 60} or {"until": "2030-01-01T09:00:00Z"}"#.into(),
        );
    }
    match DelayConfig::deserialize(config)? {
        DelayConfig {
            seconds: Some(secs),
            until: None,
        } => Ok(Delay::For(chrono::Duration::from_std(seconds(
            secs, "seconds",
        )?)?)),
        DelayConfig {
            seconds: None,
            until: Some(at),
        } => Ok(Delay::Until(at)),
        _ => Err("give exactly one of seconds and until".into()),
    }
}

/// Waits `config.seconds`, or until `config.until` (an RFC 3339 time), then passes its input
/// on. The timer is durable: it survives worker restarts and fires on time.
#[derive(Debug, Clone, Copy, Default)]
pub struct DelayNode;

#[async_trait]
impl NodeExecutor for DelayNode {
    fn validate_config(&self, config: &Value) -> Result<(), BoxError> {
        parse_delay(config).map(|_| ())
    }

    async fn execute(&self, ctx: NodeContext) -> Result<NodeOutcome, NodeError> {
        let due = match parse_delay(&ctx.config).fatal()? {
            Delay::For(wait) => ctx.waiting_since.unwrap_or(ctx.now) + wait,
            Delay::Until(at) => at,
        };
        if ctx.now < due {
            return Ok(NodeOutcome::Wait {
                signal: None,
                timeout: Some(until(due, ctx.now)),
            });
        }
        Ok(NodeOutcome::complete(ctx.input))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::execution::{ExecutionId, Signal, SignalId, WorkflowId};

    fn ctx(node_type: &str, config: Value) -> NodeContext {
        NodeContext::new(ExecutionId::new(), WorkflowId::new(), "n", node_type, 1)
            .config(config)
            .input(json!({"in": 1}))
    }

    fn signal(id: i64, name: &str, payload: Value) -> Signal {
        Signal {
            id: SignalId(id),
            execution_id: ExecutionId::new(),
            name: name.into(),
            payload,
            idempotency_key: None,
            created_at: Utc::now(),
            consumed_at: None,
            consumed_by_node: None,
        }
    }

    #[tokio::test]
    async fn a_matching_signal_is_consumed_and_picks_the_branch() {
        let node = WaitForSignalNode;
        let config = json!({"signal": "approval"});
        let signals = vec![
            signal(1, "other", json!({})),
            signal(2, "approval", json!({"approved": false, "by": "ada"})),
        ];
        let outcome = node
            .execute(ctx("w", config).signals(signals))
            .await
            .unwrap();
        assert_eq!(
            outcome,
            NodeOutcome::Signalled {
                signal: SignalId(2),
                output: json!({"approved": false, "by": "ada"}),
                branch: Some("rejected".into())
            }
        );
        assert_eq!(
            branch_of(&json!({"decision": "escalate"})),
            Some("escalate".into())
        );
        assert_eq!(
            branch_of(&json!({"approved": true})),
            Some("approved".into())
        );
        assert_eq!(branch_of(&json!("yes")), None);
    }

    #[tokio::test]
    async fn without_a_signal_it_waits_then_times_out_as_configured() {
        let node = WaitForSignalNode;
        let now = Utc::now();
        let waiting = node
            .execute(ctx("w", json!({"signal": "s", "timeout": 10})).resumed(None, now))
            .await
            .unwrap();
        assert_eq!(
            waiting,
            NodeOutcome::Wait {
                signal: Some("s".into()),
                timeout: Some(Duration::from_secs(10))
            }
        );
        let began = now - chrono::Duration::seconds(11);
        let err = node
            .execute(ctx("w", json!({"signal": "s", "timeout": 10})).resumed(Some(began), now))
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "no \"s\" signal within 10s");
        let branch = node
            .execute(
                ctx(
                    "w",
                    json!({"signal": "s", "timeout": 10, "on_timeout": "branch"}),
                )
                .resumed(Some(began), now),
            )
            .await
            .unwrap();
        assert_eq!(
            branch,
            NodeOutcome::branch(json!({"timed_out": true, "signal": "s"}), "timeout")
        );
    }

    #[tokio::test]
    async fn a_delay_waits_from_when_it_began_then_passes_its_input_on() {
        let node = DelayNode;
        let now = Utc::now();
        let first = node
            .execute(ctx("d", json!({"seconds": 3})).resumed(None, now))
            .await
            .unwrap();
        assert_eq!(
            first,
            NodeOutcome::Wait {
                signal: None,
                timeout: Some(Duration::from_secs(3))
            }
        );
        let early = node
            .execute(
                ctx("d", json!({"seconds": 3}))
                    .resumed(Some(now), now + chrono::Duration::seconds(2)),
            )
            .await
            .unwrap();
        assert_eq!(
            early,
            NodeOutcome::Wait {
                signal: None,
                timeout: Some(Duration::from_secs(1))
            }
        );
        let done = node
            .execute(
                ctx("d", json!({"seconds": 3}))
                    .resumed(Some(now), now + chrono::Duration::seconds(3)),
            )
            .await
            .unwrap();
        assert_eq!(done, NodeOutcome::complete(json!({"in": 1})));
    }

    #[test]
    fn configs_are_checked_when_saved() {
        assert!(
            WaitForSignalNode
                .validate_config(&json!({"signal": "a"}))
                .is_ok()
        );
        assert!(
            DelayNode
                .validate_config(&json!({"until": "2030-01-01T00:00:00Z"}))
                .is_ok()
        );
        let cases: [(&dyn NodeExecutor, Value, &str); 6] = [
            (
                &WaitForSignalNode,
                json!({"signal": " "}),
                "signal must not be empty",
            ),
            (
                &WaitForSignalNode,
                json!({"signal": "a", "timeout": -1}),
                "timeout (-1)",
            ),
            (
                &WaitForSignalNode,
                json!({"signal": "a", "on_timeout": "branch"}),
                "on_timeout needs a timeout",
            ),
            (&DelayNode, json!({}), "exactly one of seconds and until"),
            (
                &DelayNode,
                json!({"seconds": 1, "until": "2030-01-01T00:00:00Z"}),
                "exactly one",
            ),
            (
                &DelayNode,
                json!({"until": "tomorrow"}),
                "input contains invalid characters",
            ),
        ];
        for (node, config, expected) in cases {
            let err = node.validate_config(&config).unwrap_err().to_string();
            assert!(err.contains(expected), "{config}: {err}");
        }
    }
}
