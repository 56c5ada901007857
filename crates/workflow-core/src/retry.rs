//! Retrying an execution that failed, timed out or was cancelled, from where it stopped.
//!
//! A retry decides here, from the workflow's definition and the runs recorded, which nodes
//! run again ([`nodes_to_rerun`]); the store then marks those nodes' runs as superseded by the
//! retry (they stay in the history, but no longer count for the execution's progress or its
//! attempt numbers) and makes the execution pending again, in one transaction
//! ([`Store::retry_execution`](crate::Store::retry_execution)). Nodes that completed keep
//! their results and do not run again; the nodes that run again start from attempt 1.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::execution::{NodeRun, NodeRunStatus};
use crate::graph::WorkflowDefinition;
use crate::state::ExecutionStatus;

/// Where a retry runs the execution again from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "mode", content = "node", rename_all = "snake_case")]
pub enum RetryFrom {
    /// From where it stopped: every node that did not complete (or was not skipped) runs
    /// again; the others keep their results.
    Stopped,
    /// From the start: every node runs again.
    Start,
    /// From this node: it and every node downstream of it run again, as do the nodes that
    /// did not complete.
    Node(String),
}

impl RetryFrom {
    /// How it is stored: `stopped`, `start` or `node`.
    pub fn mode(&self) -> &'static str {
        match self {
            Self::Stopped => "stopped",
            Self::Start => "start",
            Self::Node(_) => "node",
        }
    }

    /// The node it reruns from, for [`RetryFrom::Node`].
    pub fn node(&self) -> Option<&str> {
        match self {
            Self::Node(node) => Some(node),
            _ => None,
        }
    }

    /// Reads back a stored mode and node; `None` for a mode this version does not know.
    pub fn from_parts(mode: &str, node: Option<String>) -> Option<Self> {
        match (mode, node) {
            ("stopped", _) => Some(Self::Stopped),
            ("start", _) => Some(Self::Start),
            ("node", Some(node)) => Some(Self::Node(node)),
            _ => None,
        }
    }
}

/// Which version of its workflow a retried execution runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RetryVersion {
    /// The version it was pinned to when it started.
    #[default]
    Pinned,
    /// The workflow's latest version: for a fix saved since. The nodes that completed keep
    /// their results if the latest version still has them.
    Latest,
}

/// What [`Client::retry`](crate::Client::retry) is asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryRequest {
    /// Who asks, recorded with the retry (an operator's name, `cli`, an API client).
    pub requested_by: String,
    /// Where it runs again from.
    pub from: RetryFrom,
    /// Which version it runs.
    pub version: RetryVersion,
}

impl RetryRequest {
    /// A retry from where it stopped, on its pinned version, asked by `requested_by`.
    pub fn new(requested_by: impl Into<String>) -> Self {
        Self {
            requested_by: requested_by.into(),
            from: RetryFrom::Stopped,
            version: RetryVersion::Pinned,
        }
    }

    /// Runs again from `from` instead.
    pub fn from(mut self, from: RetryFrom) -> Self {
        self.from = from;
        self
    }

    /// Runs the workflow's latest version instead of the pinned one.
    pub fn latest(mut self) -> Self {
        self.version = RetryVersion::Latest;
        self
    }
}

/// A retry recorded in an execution's history.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct ExecutionRetry {
    /// Its id, in the order retries were asked; the node runs it superseded carry it.
    pub id: i64,
    /// Who asked.
    pub requested_by: String,
    /// When (database time).
    pub requested_at: DateTime<Utc>,
    /// The status the execution had ended in.
    pub from_status: ExecutionStatus,
    /// Where it ran again from.
    pub from: RetryFrom,
    /// The version it ran after the retry.
    pub workflow_version: i32,
}

/// A retry that cannot be made as asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RetryError {
    /// The node to run again from is not in the workflow version the retry runs.
    #[error("workflow \"{workflow}\" version {version} has no node \"{node}\" to retry from")]
    UnknownNode {
        /// The node asked for.
        node: String,
        /// The workflow.
        workflow: String,
        /// The version the retry runs.
        version: i32,
    },
}

/// The ids of the nodes whose runs a retry supersedes (they run again), sorted: from the
/// runs recorded (`runs`, oldest first, including ones earlier retries superseded, which are
/// ignored) and `definition`, the version the retry runs. A node in the list may have no run
/// of its own yet: a `map` that had not finished has only its items' runs, which the retry
/// supersedes with it (from where it stopped, such a map keeps them and resumes).
pub fn nodes_to_rerun(
    definition: &WorkflowDefinition,
    version: i32,
    runs: &[NodeRun],
    from: &RetryFrom,
) -> Result<Vec<String>, RetryError> {
    let mut latest: HashMap<&str, NodeRunStatus> = HashMap::new();
    for run in runs.iter().filter(|run| run.superseded_by.is_none()) {
        latest.insert(&run.node_id, run.status);
    }
    let stopped = latest
        .iter()
        .filter(|(_, status)| !matches!(status, NodeRunStatus::Completed | NodeRunStatus::Skipped));
    let mut rerun: BTreeSet<&str> = stopped.map(|(node, _)| *node).collect();
    match from {
        RetryFrom::Stopped => {}
        RetryFrom::Start => rerun.extend(definition.nodes.iter().map(|n| n.id.as_str())),
        RetryFrom::Node(node) => {
            if !definition.nodes.iter().any(|n| &n.id == node) {
                return Err(RetryError::UnknownNode {
                    node: node.clone(),
                    workflow: definition.name.clone(),
                    version,
                });
            }
            let mut seen = BTreeSet::new();
            let mut todo = vec![node.as_str()];
            while let Some(at) = todo.pop() {
                if seen.insert(at) {
                    rerun.insert(at);
                    todo.extend(
                        definition
                            .edges
                            .iter()
                            .filter(|edge| edge.from == at)
                            .map(|edge| edge.to.as_str()),
                    );
                }
            }
        }
    }
    Ok(rerun.into_iter().map(str::to_owned).collect())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::execution::ExecutionId;

    /// a -> b -> c, and a -> d (a branch on its own).
    fn definition() -> WorkflowDefinition {
        serde_json::from_value(json!({
            "name": "w",
            "nodes": [
                {"id": "a", "type": "trigger"},
                {"id": "b", "type": "code"},
                {"id": "c", "type": "code"},
                {"id": "d", "type": "code"}
            ],
            "edges": [
                {"from": "a", "to": "b"},
                {"from": "b", "to": "c"},
                {"from": "a", "to": "d"}
            ]
        }))
        .unwrap()
    }

    fn run(node: &str, status: NodeRunStatus, superseded_by: Option<i64>) -> NodeRun {
        NodeRun {
            execution_id: ExecutionId::new(),
            node_id: node.into(),
            node_type: "code".into(),
            attempt: 1,
            status,
            input: None,
            output: None,
            branch: None,
            error: None,
            worker_id: None,
            started_at: Utc::now(),
            finished_at: Utc::now(),
            superseded_by,
        }
    }

    use NodeRunStatus::*;

    #[test]
    fn from_where_it_stopped_reruns_only_the_nodes_that_did_not_complete() {
        let runs = [
            run("a", Completed, None),
            run("b", Failed, None),
            run("b", Failed, None),
            run("d", Completed, None),
        ];
        let rerun = nodes_to_rerun(&definition(), 1, &runs, &RetryFrom::Stopped).unwrap();
        assert_eq!(rerun, ["b"]);
        // A node whose last run completed after failures is kept.
        let runs = [run("b", Failed, None), run("b", Completed, None)];
        let rerun = nodes_to_rerun(&definition(), 1, &runs, &RetryFrom::Stopped).unwrap();
        assert!(rerun.is_empty(), "{rerun:?}");
    }

    #[test]
    fn from_the_start_reruns_every_node() {
        let runs = [
            run("a", Completed, None),
            run("b", TimedOut, None),
            run("d", Skipped, None),
        ];
        let rerun = nodes_to_rerun(&definition(), 1, &runs, &RetryFrom::Start).unwrap();
        assert_eq!(rerun, ["a", "b", "c", "d"]);
    }

    #[test]
    fn from_a_node_reruns_it_what_is_downstream_and_what_did_not_complete() {
        let runs = [
            run("a", Completed, None),
            run("b", Completed, None),
            run("c", Completed, None),
            run("d", Waiting, None),
        ];
        let from_b = RetryFrom::Node("b".into());
        let rerun = nodes_to_rerun(&definition(), 1, &runs, &from_b).unwrap();
        assert_eq!(rerun, ["b", "c", "d"]);
        let from_a = RetryFrom::Node("a".into());
        let rerun = nodes_to_rerun(&definition(), 1, &runs, &from_a).unwrap();
        assert_eq!(rerun, ["a", "b", "c", "d"]);
    }

    #[test]
    fn runs_an_earlier_retry_superseded_do_not_count() {
        // b failed, was retried (its failed run superseded by retry 1), then completed; c
        // failed after it.
        let runs = [
            run("a", Completed, None),
            run("b", Failed, Some(1)),
            run("b", Completed, None),
            run("c", Failed, None),
        ];
        let rerun = nodes_to_rerun(&definition(), 1, &runs, &RetryFrom::Stopped).unwrap();
        assert_eq!(rerun, ["c"]);
    }

    #[test]
    fn an_unknown_node_is_an_error_naming_it_and_the_version() {
        let err = nodes_to_rerun(&definition(), 3, &[], &RetryFrom::Node("zz".into())).unwrap_err();
        assert_eq!(
            err.to_string(),
            "workflow \"w\" version 3 has no node \"zz\" to retry from"
        );
    }

    #[test]
    fn modes_round_trip_through_their_stored_parts() {
        for from in [
            RetryFrom::Stopped,
            RetryFrom::Start,
            RetryFrom::Node("b".into()),
        ] {
            let node = from.node().map(str::to_owned);
            assert_eq!(RetryFrom::from_parts(from.mode(), node), Some(from));
        }
        assert_eq!(RetryFrom::from_parts("node", None), None);
        assert_eq!(RetryFrom::from_parts("later", None), None);
    }
}
