//! The `map` node: runs a node type once per item of a list.

use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::Value;

use super::{BoxError, NodeContext, NodeError, NodeExecutor, NodeOutcome, ResultExt};
use crate::graph::{NodeDefinition, RetryPolicy};

pub(crate) const MAP_TYPE: &str = "map";

/// How many items of one map run at once, when the config does not say.
pub const DEFAULT_MAX_PARALLEL: usize = 10;
/// The most items of one map that may run at once.
pub const MAX_PARALLEL_LIMIT: usize = 1000;

/// What a map does when an item fails for good (its own retries used up).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnItemFailure {
    /// The map node fails at the first item that fails for good; the items running are
    /// stopped and none starts.
    #[default]
    Fail,
    /// Every item runs; the output holds each item's result or error.
    Collect,
}

/// The node run for each item: a node definition without an id.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ItemNode {
    #[serde(rename = "type")]
    node_type: String,
    #[serde(default)]
    config: Value,
    #[serde(default)]
    retry: Option<RetryPolicy>,
    #[serde(default)]
    timeout: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MapConfig {
    items: Value,
    node: ItemNode,
    #[serde(default)]
    max_parallel: Option<usize>,
    #[serde(default)]
    on_item_failure: OnItemFailure,
}

/// What a map asks the worker to run: [`NodeOutcome::Map`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct MapRequest {
    /// The items, in order; item `i` is the input of the node's run for it.
    pub items: Vec<Value>,
    /// The node run for each item (its `id` is unused). Templates in its config are rendered
    /// for each item, with the item as `input`.
    pub node: NodeDefinition,
    /// How many items run at once, at most.
    pub max_parallel: usize,
    /// What happens when an item fails for good.
    pub on_item_failure: OnItemFailure,
}

impl MapRequest {
    /// Runs `node` for each of `items`, [`DEFAULT_MAX_PARALLEL`] at a time, failing at the
    /// first item that fails for good.
    pub fn new(items: Vec<Value>, node: NodeDefinition) -> Self {
        Self {
            items,
            node,
            max_parallel: DEFAULT_MAX_PARALLEL,
            on_item_failure: OnItemFailure::Fail,
        }
    }
}

fn parse(config: &Value) -> Result<MapConfig, BoxError> {
    if config.is_null() {
        return Err(
            r#"config is required: {"items": [...], "node": {"type": "...", "config": {...}}}"#
                .into(),
        );
    }
    let parsed = MapConfig::deserialize(config)?;
    if let Some(max) = parsed.max_parallel
        && !(1..=MAX_PARALLEL_LIMIT).contains(&max)
    {
        return Err(format!("max_parallel ({max}) must be 1 to {MAX_PARALLEL_LIMIT}").into());
    }
    if let Some(timeout) = parsed.node.timeout
        && (timeout <= 0.0 || Duration::try_from_secs_f64(timeout).is_err())
    {
        return Err(
            format!("node.timeout ({timeout}) must be a positive number of seconds").into(),
        );
    }
    Ok(parsed)
}

fn definition(node: ItemNode) -> NodeDefinition {
    NodeDefinition {
        id: "node".to_owned(),
        node_type: node.node_type,
        config: node.config,
        retry: node.retry,
        // Checked by `parse`.
        timeout: node
            .timeout
            .and_then(|seconds| Duration::try_from_secs_f64(seconds).ok()),
        rate_limit: None,
    }
}

/// The `map` node: runs a node type once per item of a list and completes with the results
/// in the list's order.
///
/// ```json
/// {"id": "charge_all", "type": "map", "config": {
///     "items": {"$template": "{{ input.orders }}"},
///     "node": {"type": "http", "retry": {"max_attempts": 3},
///              "config": {"method": "POST", "url": {"$template": "https://api.example.com/orders/{{ input.id }}/charge"}}},
///     "max_parallel": 8,
///     "on_item_failure": "collect"
/// }}
/// ```
///
/// - `items`: the list (usually a template); `node`: the node run for each item, whose input
///   is the item (`{"type", "config", "retry", "timeout"}`, as in a workflow's nodes; its
///   config's templates see the item as `input`); `max_parallel`: how many items run at once
///   (10); `on_item_failure`: `fail` (the default: the map fails at the first item that fails
///   for good) or `collect`.
/// - Each item is retried by the node's own `retry` policy. Items are recorded as they
///   finish, in batches (`workflow_item_runs`), fenced by the execution's lease: a worker
///   killed halfway leaves the finished items recorded, and the worker that resumes the
///   execution runs only the others. An item completes at most once.
/// - The output is the items' outputs in the list's order; with `collect`, each entry is
///   `{"status": "completed", "output": …}` or `{"status": "failed", "error": …}`.
/// - While a map runs it holds its execution's slot and lease, as any running node does.
#[derive(Debug, Clone, Copy, Default)]
pub struct MapNode;

#[async_trait]
impl NodeExecutor for MapNode {
    fn validate_config(&self, config: &Value) -> Result<(), BoxError> {
        let parsed = parse(config)?;
        // A template (not rendered yet) or a list.
        if !(parsed.items.is_array() || crate::template::is_template(&parsed.items)) {
            return Err(format!(
                "items must be a list (or a template that makes one), not {}",
                kind_of(&parsed.items)
            )
            .into());
        }
        Ok(())
    }

    fn deferred_config(&self) -> &'static [&'static str] {
        &["node"]
    }

    fn nested_nodes(&self, config: &Value) -> Vec<NodeDefinition> {
        parse(config)
            .map(|parsed| vec![definition(parsed.node)])
            .unwrap_or_default()
    }

    async fn execute(&self, ctx: NodeContext) -> Result<NodeOutcome, NodeError> {
        let parsed = parse(&ctx.config).fatal()?;
        let Value::Array(items) = parsed.items else {
            return Err(NodeError::fatal(format!(
                "items must be a list, not {}",
                kind_of(&parsed.items)
            )));
        };
        Ok(NodeOutcome::Map(MapRequest {
            items,
            node: definition(parsed.node),
            max_parallel: parsed.max_parallel.unwrap_or(DEFAULT_MAX_PARALLEL),
            on_item_failure: parsed.on_item_failure,
        }))
    }
}

/// A JSON value's kind, for errors.
fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::execution::{ExecutionId, WorkflowId};

    #[tokio::test]
    async fn a_map_asks_for_its_items_with_its_node() {
        let config = json!({
            "items": [1, 2, 3],
            "node": {"type": "echo", "retry": {"max_attempts": 2}, "timeout": 5},
            "max_parallel": 2,
            "on_item_failure": "collect"
        });
        MapNode.validate_config(&config).unwrap();
        let ctx = NodeContext::new(ExecutionId::new(), WorkflowId::new(), "each", "map", 1)
            .config(config);
        let NodeOutcome::Map(request) = MapNode.execute(ctx).await.unwrap() else {
            panic!("a map request")
        };
        assert_eq!(request.items, vec![json!(1), json!(2), json!(3)]);
        assert_eq!(request.node.node_type, "echo");
        assert_eq!(request.node.timeout, Some(Duration::from_secs(5)));
        assert_eq!(request.node.retry.unwrap().max_attempts, 2);
        assert_eq!(request.max_parallel, 2);
        assert_eq!(request.on_item_failure, OnItemFailure::Collect);
    }

    #[tokio::test]
    async fn items_that_are_not_a_list_fail_for_good() {
        let ctx = NodeContext::new(ExecutionId::new(), WorkflowId::new(), "each", "map", 1)
            .config(json!({"items": {"a": 1}, "node": {"type": "echo"}}));
        let err = MapNode.execute(ctx).await.unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Fatal);
        assert_eq!(err.to_string(), "items must be a list, not an object");
    }

    #[test]
    fn configs_are_checked_naming_what_is_wrong() {
        for (config, expected) in [
            (Value::Null, "config is required"),
            (
                json!({"items": 3, "node": {"type": "echo"}}),
                "items must be a list",
            ),
            (
                json!({"items": [], "node": {"type": "echo"}, "max_parallel": 0}),
                "max_parallel (0) must be 1 to 1000",
            ),
            (
                json!({"items": [], "node": {"config": {}}}),
                "missing field `type`",
            ),
            (
                json!({"items": [], "node": {"type": "echo"}, "on_item_failure": "shrug"}),
                "unknown variant `shrug`",
            ),
            (
                json!({"items": [], "node": {"type": "echo", "timeout": 1e30}}),
                "must be a positive number of seconds",
            ),
        ] {
            let err = MapNode.validate_config(&config).unwrap_err().to_string();
            assert!(err.contains(expected), "{config}: {err}");
        }
        let templated =
            json!({"items": {"$template": "{{ input.list }}"}, "node": {"type": "echo"}});
        MapNode.validate_config(&templated).unwrap();
    }
}
