//! The `condition` node: compares a value in its input and picks the `true` or `false` branch.
//!
//! ```json
//! {"id": "big_order", "type": "condition",
//!  "config": {"path": "order.total", "op": ">", "value": 100}}
//! ```
//!
//! `path` is dot-separated keys into the node input (numbers index arrays: `items.0.price`).
//! `op` is one of `==`, `!=`, `>`, `>=`, `<`, `<=` (comparing numbers with numbers and strings
//! with strings) or `exists` (no `value`). The node's output is its input, unchanged; edges
//! labelled `true` or `false` choose what runs next. A path missing from the input, or an
//! ordering between values of different kinds, fails the node (fatal): it would fail the
//! same way every time.

use std::cmp::Ordering;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::Value;

use super::{BoxError, NodeContext, NodeError, NodeExecutor, NodeOutcome, ResultExt};

pub(crate) const CONDITION_TYPE: &str = "condition";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
enum Op {
    #[serde(rename = "==", alias = "eq")]
    Eq,
    #[serde(rename = "!=", alias = "ne")]
    Ne,
    #[serde(rename = ">", alias = "gt")]
    Gt,
    #[serde(rename = ">=", alias = "gte")]
    Gte,
    #[serde(rename = "<", alias = "lt")]
    Lt,
    #[serde(rename = "<=", alias = "lte")]
    Lte,
    #[serde(rename = "exists")]
    Exists,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConditionConfig {
    path: String,
    op: Op,
    #[serde(default)]
    value: Option<Value>,
}

fn parse(config: &Value) -> Result<ConditionConfig, BoxError> {
    if config.is_null() {
        return Err(r#"config is required: {"path": "...", "op": ">", "value": ...}"#.into());
    }
    let config = ConditionConfig::deserialize(config)?;
    if config.path.split('.').any(str::is_empty) {
        return Err(format!("path \"{}\" has an empty segment", config.path).into());
    }
    match (config.op, &config.value) {
        (Op::Exists, Some(_)) => Err("op \"exists\" takes no value".into()),
        (Op::Exists, None) => Ok(config),
        (_, None) => Err("value is required for this op".into()),
        (_, Some(_)) => Ok(config),
    }
}

/// Picks the `true` or `false` branch by comparing a value at a path in its input.
#[derive(Debug, Clone, Copy, Default)]
pub struct ConditionNode;

#[async_trait]
impl NodeExecutor for ConditionNode {
    fn validate_config(&self, config: &Value) -> Result<(), BoxError> {
        parse(config).map(|_| ())
    }

    async fn execute(&self, ctx: NodeContext) -> Result<NodeOutcome, NodeError> {
        let config = parse(&ctx.config).fatal()?;
        let found = lookup(&ctx.input, &config.path);
        let holds = match (config.op, found, config.value.as_ref()) {
            (Op::Exists, found, _) => found.is_some(),
            (_, None, _) => {
                return Err(NodeError::fatal(format!(
                    "path \"{}\" not found in the input",
                    config.path
                )));
            }
            (_, Some(_), None) => return Err(NodeError::fatal("value is required for this op")),
            (op, Some(left), Some(right)) => compare(op, left, right)
                .map_err(|kinds| {
                    format!(
                        "cannot order {kinds} at path \"{}\" with {}",
                        config.path, right
                    )
                })
                .fatal()?,
        };
        Ok(NodeOutcome::branch(ctx.input, holds.to_string()))
    }
}

/// The value at a dot-separated `path` into `value` (numbers index arrays), if any: the path
/// syntax of `condition` and of flow control's keys.
pub(crate) fn lookup<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(value, |value, key| match value {
        Value::Object(map) => map.get(key),
        Value::Array(items) => key.parse::<usize>().ok().and_then(|i| items.get(i)),
        _ => None,
    })
}

/// Whether `left op right` holds; `Err` names the kind of `left` when it cannot be ordered.
fn compare(op: Op, left: &Value, right: &Value) -> Result<bool, String> {
    if op == Op::Eq {
        return Ok(json_eq(left, right));
    }
    if op == Op::Ne {
        return Ok(!json_eq(left, right));
    }
    let ordering = match (left, right) {
        (Value::Number(a), Value::Number(b)) => a
            .as_f64()
            .zip(b.as_f64())
            .and_then(|(a, b)| a.partial_cmp(&b)),
        (Value::String(a), Value::String(b)) => Some(a.cmp(b)),
        _ => None,
    }
    .ok_or_else(|| format!("{} {left}", kind(left)))?;
    Ok(match op {
        Op::Gt => ordering == Ordering::Greater,
        Op::Gte => ordering != Ordering::Less,
        Op::Lt => ordering == Ordering::Less,
        Op::Lte => ordering != Ordering::Greater,
        Op::Eq | Op::Ne | Op::Exists => unreachable!("handled above"),
    })
}

/// Equality that treats `1` and `1.0` as equal.
fn json_eq(left: &Value, right: &Value) -> bool {
    match (left, right) {
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        _ => left == right,
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::execution::{ExecutionId, WorkflowId};
    use crate::node::ErrorKind;

    async fn run(config: Value, input: Value) -> Result<String, NodeError> {
        let ctx = NodeContext::new(
            ExecutionId::new(),
            WorkflowId::new(),
            "c",
            CONDITION_TYPE,
            1,
        )
        .config(config)
        .input(input.clone());
        match ConditionNode.execute(ctx).await? {
            NodeOutcome::Complete { output, branch } => {
                assert_eq!(output, input, "the input passes through");
                Ok(branch.unwrap_or_default())
            }
            other => panic!("a condition completes or fails, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn comparisons_pick_true_or_false() {
        let input = json!({"order": {"total": 150, "items": [{"sku": "a"}], "tag": "vip"}});
        let cases = [
            (
                json!({"path": "order.total", "op": ">", "value": 100}),
                "true",
            ),
            (
                json!({"path": "order.total", "op": "<=", "value": 100}),
                "false",
            ),
            (
                json!({"path": "order.total", "op": "==", "value": 150.0}),
                "true",
            ),
            (
                json!({"path": "order.tag", "op": "!=", "value": "vip"}),
                "false",
            ),
            (
                json!({"path": "order.tag", "op": "gte", "value": "vip"}),
                "true",
            ),
            (
                json!({"path": "order.items.0.sku", "op": "eq", "value": "a"}),
                "true",
            ),
            (json!({"path": "order.items.1", "op": "exists"}), "false"),
            (json!({"path": "order", "op": "exists"}), "true"),
        ];
        for (config, expected) in cases {
            assert_eq!(
                run(config.clone(), input.clone()).await.unwrap(),
                expected,
                "{config}"
            );
        }
    }

    #[tokio::test]
    async fn a_missing_path_is_a_fatal_error_naming_it() {
        let err = run(
            json!({"path": "order.total", "op": ">", "value": 1}),
            json!({"order": {}}),
        )
        .await
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Fatal);
        assert_eq!(
            err.to_string(),
            "path \"order.total\" not found in the input"
        );
    }

    #[tokio::test]
    async fn ordering_different_kinds_is_a_fatal_error() {
        let err = run(
            json!({"path": "a", "op": ">", "value": 1}),
            json!({"a": "text"}),
        )
        .await
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Fatal);
        assert_eq!(
            err.to_string(),
            "cannot order string \"text\" at path \"a\" with 1"
        );
    }

    #[test]
    fn config_is_checked_when_saved() {
        let node = ConditionNode;
        assert!(
            node.validate_config(&json!({"path": "a.b", "op": "<", "value": 3}))
                .is_ok()
        );
        let errors = [
            (Value::Null, "config is required"),
            (
                json!({"path": "a", "op": "~", "value": 1}),
                "unknown variant `~`",
            ),
            (
                json!({"path": "a..b", "op": "<", "value": 1}),
                "path \"a..b\" has an empty segment",
            ),
            (
                json!({"path": "a", "op": "<"}),
                "value is required for this op",
            ),
            (
                json!({"path": "a", "op": "exists", "value": 1}),
                "op \"exists\" takes no value",
            ),
            (
                json!({"path": "a", "op": "<", "value": 1, "extra": 2}),
                "unknown field `extra`",
            ),
        ];
        for (config, expected) in errors {
            let err = node.validate_config(&config).unwrap_err().to_string();
            assert!(err.contains(expected), "{config}: {err}");
        }
    }
}
