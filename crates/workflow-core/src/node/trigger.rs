//! The `trigger` node: the entry of every workflow.

use async_trait::async_trait;

use super::{NodeContext, NodeError, NodeExecutor, NodeOutcome};

/// The entry node of every workflow: outputs the execution input unchanged.
#[derive(Debug, Clone, Copy, Default)]
pub struct TriggerNode;

#[async_trait]
impl NodeExecutor for TriggerNode {
    async fn execute(&self, ctx: NodeContext) -> Result<NodeOutcome, NodeError> {
        Ok(NodeOutcome::complete(ctx.input))
    }

    /// Its output is its input: run again, it gives the same.
    fn replayable(&self) -> bool {
        true
    }
}
