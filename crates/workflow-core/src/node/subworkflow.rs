//! The `subworkflow` node: runs another workflow as a child execution and waits for it.

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::Value;

use super::{BoxError, NodeContext, NodeError, NodeExecutor, NodeOutcome, ResultExt};

pub(crate) const SUBWORKFLOW_TYPE: &str = "subworkflow";

/// How many levels of sub-workflows an execution may have above it.
pub const MAX_SUBWORKFLOW_DEPTH: u32 = 16;

/// The name of the signal that tells node `node_id`'s attempt `attempt` that its child ended.
pub fn child_signal(node_id: &str, attempt: u32) -> String {
    format!("child:{node_id}:{attempt}")
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
/// records its parent; when it ends, the parent wakes and the node completes with the child's
/// output, or fails (retryably: the node's retry policy decides, and a retry starts a new
/// child) if the child failed, timed out or was cancelled. When the parent ends, its children
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
        let name = child_signal(&ctx.node_id, ctx.attempt);
        let Some(ended) = ctx.signals.iter().find(|s| s.name == name) else {
            return Ok(NodeOutcome::StartChild {
                workflow: config.workflow,
                input: config.input.unwrap_or(ctx.input),
            });
        };
        let child = ended.payload["execution_id"].as_str().unwrap_or("?");
        match ended.payload["status"].as_str() {
            Some("completed") => Ok(NodeOutcome::Signalled {
                signal: ended.id,
                output: ended.payload["output"].clone(),
                branch: None,
            }),
            status => {
                let status = status.unwrap_or("ended");
                let error = ended.payload["error"]
                    .as_str()
                    .unwrap_or("no error recorded");
                Err(NodeError::retryable(format!(
                    "child execution {child} of workflow \"{}\" {status}: {error}",
                    config.workflow
                )))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::ErrorKind;
    use crate::execution::{ExecutionId, Signal, SignalId, WorkflowId};

    fn ctx(signals: Vec<Signal>) -> NodeContext {
        NodeContext::new(
            ExecutionId::new(),
            WorkflowId::new(),
            "ship",
            "subworkflow",
            2,
        )
        .config(json!({"workflow": "shipping"}))
        .input(json!({"order": 7}))
        .signals(signals)
    }

    fn ended(name: &str, payload: Value) -> Signal {
        Signal {
            id: SignalId(9),
            execution_id: ExecutionId::new(),
            name: name.into(),
            payload,
            idempotency_key: None,
            created_at: chrono::Utc::now(),
            consumed_at: None,
            consumed_by_node: None,
        }
    }

    #[tokio::test]
    async fn it_starts_a_child_then_completes_with_its_output_or_fails_with_its_error() {
        let start = SubworkflowNode.execute(ctx(Vec::new())).await.unwrap();
        assert_eq!(
            start,
            NodeOutcome::StartChild {
                workflow: "shipping".into(),
                input: json!({"order": 7})
            }
        );
        // The end of another attempt's child is not this attempt's.
        let other = ended("child:ship:1", json!({"status": "completed"}));
        assert!(matches!(
            SubworkflowNode.execute(ctx(vec![other])).await.unwrap(),
            NodeOutcome::StartChild { .. }
        ));
        let done = ended(
            "child:ship:2",
            json!({"execution_id": "c1", "status": "completed", "output": {"tracking": "T1"}}),
        );
        assert_eq!(
            SubworkflowNode.execute(ctx(vec![done])).await.unwrap(),
            NodeOutcome::Signalled {
                signal: SignalId(9),
                output: json!({"tracking": "T1"}),
                branch: None
            }
        );
        let failed = ended(
            "child:ship:2",
            json!({"execution_id": "c1", "status": "failed", "error": "no stock"}),
        );
        let err = SubworkflowNode
            .execute(ctx(vec![failed]))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Retryable);
        assert_eq!(
            err.to_string(),
            "child execution c1 of workflow \"shipping\" failed: no stock"
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
