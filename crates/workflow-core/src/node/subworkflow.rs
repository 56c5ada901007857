//! The `subworkflow` node: runs another workflow as a child execution and waits for it.

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::Value;

use super::{BoxError, NodeContext, NodeError, NodeExecutor, NodeOutcome, ResultExt};
use crate::execution::ExecutionId;

pub(crate) const SUBWORKFLOW_TYPE: &str = "subworkflow";

/// How many levels of sub-workflows an execution may have above it.
pub const MAX_SUBWORKFLOW_DEPTH: u32 = 16;

/// The name of the signal that wakes a parent when its child execution `child` ends.
pub fn child_signal(child: ExecutionId) -> String {
    format!("child:{child}")
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SubworkflowConfig {
    workflow: String,
    #[serde(default)]
    input: Option<Value>,
}

fn parse(config: &Value) -> Result<SubworkflowConfig, BoxError> {
    if config.is_null() {
        return Err(r#"config is required: {"workflow": "name of the child workflow"}"#.into());
    }
    let parsed = SubworkflowConfig::deserialize(config)?;
    if parsed.workflow.trim().is_empty() {
        return Err("workflow must not be empty".into());
    }
    Ok(parsed)
}

/// The `subworkflow` node: runs another workflow as a child execution and completes with its
/// output.
///
/// ```json
/// {"id": "ship", "type": "subworkflow", "retry": {"max_attempts": 3},
///  "config": {"workflow": "shipping", "input": {"order": {"$template": "{{ input.order }}"}}}}
/// ```
///
/// The node starts an execution of `workflow` (the version current at that moment, pinned
/// from then on) with `input` (the node's own input when not given), and waits for it as
/// `wait_for_signal` does: the parent holds no worker slot and no lease meanwhile. The child
/// records its parent; when it ends, the parent wakes (the signal `child:<child id>`) and the
/// node completes with the child's output, or fails (retryably: the node's retry policy
/// decides, and a retry starts a new child) if the child failed, timed out or was cancelled. When the parent ends, its children
/// that have not ended are cancelled. Children of children are allowed up to
/// [`MAX_SUBWORKFLOW_DEPTH`] levels, so a workflow that calls itself without end fails with
/// that error instead of running forever.
#[derive(Debug, Clone, Copy, Default)]
pub struct SubworkflowNode;

#[async_trait]
impl NodeExecutor for SubworkflowNode {
    fn validate_config(&self, config: &Value) -> Result<(), BoxError> {
        parse(config).map(|_| ())
    }

    async fn execute(&self, ctx: NodeContext) -> Result<NodeOutcome, NodeError> {
        let config = parse(&ctx.config).fatal()?;
        // The worker starts the child, or finds the one this attempt started, and completes
        // the node from it once it has ended.
        Ok(NodeOutcome::StartChild {
            workflow: config.workflow,
            input: config.input.unwrap_or(ctx.input),
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::execution::WorkflowId;

    #[tokio::test]
    async fn it_asks_for_its_child_with_the_configured_or_its_own_input() {
        let ctx = NodeContext::new(
            ExecutionId::new(),
            WorkflowId::new(),
            "ship",
            "subworkflow",
            2,
        )
        .input(json!({"order": 7}));
        let own = ctx.clone().config(json!({"workflow": "shipping"}));
        assert_eq!(
            SubworkflowNode.execute(own).await.unwrap(),
            NodeOutcome::StartChild {
                workflow: "shipping".into(),
                input: json!({"order": 7})
            }
        );
        let given = ctx.config(json!({"workflow": "shipping", "input": {"n": 1}}));
        assert_eq!(
            SubworkflowNode.execute(given).await.unwrap(),
            NodeOutcome::StartChild {
                workflow: "shipping".into(),
                input: json!({"n": 1})
            }
        );
    }

    #[test]
    fn the_config_names_a_workflow() {
        assert!(
            SubworkflowNode
                .validate_config(&json!({"workflow": "x"}))
                .is_ok()
        );
        for config in [Value::Null, json!({"workflow": " "}), json!({"flow": "x"})] {
            assert!(
                SubworkflowNode.validate_config(&config).is_err(),
                "{config}"
            );
        }
    }
}
