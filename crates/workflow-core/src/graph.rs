//! Workflow definitions, their validation, and graph scheduling.
//!
//! A [`WorkflowDefinition`] is plain JSON-friendly data. [`WorkflowGraph::validate`] checks it
//! once, when it is saved (unique ids, edges naming existing nodes, exactly one entry
//! `trigger`, no cycles, every node reachable, known node types, node configs) and reports
//! every problem it finds, each naming the node or edge at fault.
//!
//! [`Progress`] is the scheduler: given what has been recorded for an execution it says which
//! nodes are ready, which are skipped, what each ready node receives as input, and when the
//! execution is done. A node runs when all of its parents have finished and at least one edge
//! into it was taken; a node none of whose edges in was taken is skipped, and skips propagate.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::node::NodeRegistry;

/// The node type every workflow starts from.
pub const TRIGGER_TYPE: &str = "trigger";

/// A workflow as written by its author: nodes and the edges between them.
///
/// ```
/// use workflow_core::WorkflowDefinition;
///
/// let definition: WorkflowDefinition = serde_json::from_str(r#"{
///     "name": "hello",
///     "nodes": [
///         {"id": "start", "type": "trigger"},
///         {"id": "greet", "type": "code",
///          "config": {"language": "python", "code": "print('Hello from workflow!')"},
///          "timeout": 10}
///     ],
///     "edges": [{"from": "start", "to": "greet"}]
/// }"#).unwrap();
/// assert_eq!(definition.nodes[1].timeout, Some(std::time::Duration::from_secs(10)));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkflowDefinition {
    /// Unique name of the workflow; saving the same name again adds a version.
    pub name: String,
    /// Free text for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Retry policy for nodes that have none of their own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,
    /// The nodes.
    pub nodes: Vec<NodeDefinition>,
    /// The edges between nodes.
    #[serde(default)]
    pub edges: Vec<Edge>,
}

/// One node of a workflow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeDefinition {
    /// Unique id within the workflow.
    pub id: String,
    /// The node type, as registered with the worker (`trigger`, `code`, or a custom type).
    #[serde(rename = "type")]
    pub node_type: String,
    /// Type-specific configuration, checked by the node type when the workflow is saved.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub config: Value,
    /// How often and how soon to retry this node when it fails with a retryable error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,
    /// How long one attempt may run, in seconds in JSON; past it the attempt is stopped and
    /// counts as a retryable failure.
    #[serde(
        default,
        with = "seconds::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub timeout: Option<Duration>,
}

/// An edge from one node to another, optionally taken only on one branch of its source.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Edge {
    /// Source node id.
    pub from: String,
    /// Target node id.
    pub to: String,
    /// When set, the edge is taken only if the source node chose this branch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
}

impl fmt::Display for Edge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{}\" -> \"{}\"", self.from, self.to)?;
        if let Some(branch) = &self.branch {
            write!(f, " [{branch}]")?;
        }
        Ok(())
    }
}

/// How a failing node is retried. Durations are seconds in JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// Attempts in all, including the first; 1 means no retry.
    pub max_attempts: u32,
    /// Wait before the second attempt. Defaults to 1 s.
    #[serde(default = "RetryPolicy::default_initial_backoff", with = "seconds")]
    pub initial_backoff: Duration,
    /// Each further wait is the previous one times this. Defaults to 2.
    #[serde(default = "RetryPolicy::default_multiplier")]
    pub multiplier: f64,
    /// No wait is longer than this. Defaults to 5 minutes.
    #[serde(default = "RetryPolicy::default_max_backoff", with = "seconds")]
    pub max_backoff: Duration,
}

impl RetryPolicy {
    /// The policy of a node that has none: one attempt, no retry.
    pub const NONE: RetryPolicy = RetryPolicy {
        max_attempts: 1,
        initial_backoff: Duration::from_secs(1),
        multiplier: 2.0,
        max_backoff: Duration::from_secs(300),
    };

    fn default_initial_backoff() -> Duration {
        Self::NONE.initial_backoff
    }

    fn default_multiplier() -> f64 {
        Self::NONE.multiplier
    }

    fn default_max_backoff() -> Duration {
        Self::NONE.max_backoff
    }

    /// The wait after failed attempt `attempt` (1-based) before the next one.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exponent = i32::try_from(attempt.saturating_sub(1)).unwrap_or(i32::MAX);
        let secs = self.initial_backoff.as_secs_f64() * self.multiplier.powi(exponent);
        Duration::try_from_secs_f64(secs)
            .unwrap_or(self.max_backoff)
            .min(self.max_backoff)
    }

    fn problem(&self) -> Option<String> {
        if self.max_attempts == 0 {
            Some("max_attempts must be at least 1".into())
        } else if !(self.multiplier.is_finite() && self.multiplier >= 1.0) {
            Some(format!(
                "multiplier ({}) must be at least 1",
                self.multiplier
            ))
        } else if self.max_backoff < self.initial_backoff {
            Some(format!(
                "max_backoff ({:?}) must not be shorter than initial_backoff ({:?})",
                self.max_backoff, self.initial_backoff
            ))
        } else {
            None
        }
    }
}

/// One problem found while validating a workflow definition.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GraphError {
    /// The workflow has no name.
    #[error("workflow name must not be empty")]
    EmptyName,
    /// A node id is empty.
    #[error("node #{index}: id must not be empty")]
    EmptyNodeId {
        /// Position of the node in `nodes`, from 0.
        index: usize,
    },
    /// Two nodes share an id.
    #[error("node \"{id}\": duplicate node id")]
    DuplicateNode {
        /// The repeated id.
        id: String,
    },
    /// An edge names a node that does not exist.
    #[error("edge {edge}: unknown node \"{id}\"")]
    UnknownNode {
        /// The edge, as `"from" -> "to"`.
        edge: String,
        /// The missing node id.
        id: String,
    },
    /// The same edge appears twice.
    #[error("edge {edge}: duplicate edge")]
    DuplicateEdge {
        /// The edge, as `"from" -> "to"`.
        edge: String,
    },
    /// A node's type is not registered.
    #[error("node \"{node}\": unknown node type \"{node_type}\" (known: {known})")]
    UnknownType {
        /// The node id.
        node: String,
        /// Its unknown type.
        node_type: String,
        /// The registered types, comma-separated.
        known: String,
    },
    /// The node type rejected the node's config.
    #[error("node \"{node}\": invalid config: {source}")]
    InvalidConfig {
        /// The node id.
        node: String,
        /// What the node type said.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A retry policy is out of range.
    #[error("{owner}: invalid retry policy: {reason}")]
    InvalidRetry {
        /// `workflow` or `node "id"`.
        owner: String,
        /// What is wrong.
        reason: String,
    },
    /// There is not exactly one trigger node.
    #[error("workflow needs exactly one \"trigger\" node, found {}", found_list(.found))]
    EntryTrigger {
        /// The ids of the trigger nodes found.
        found: Vec<String>,
    },
    /// An edge leads into the trigger.
    #[error("edge {edge}: the trigger node cannot have incoming edges")]
    IntoTrigger {
        /// The edge, as `"from" -> "to"`.
        edge: String,
    },
    /// The edges form a cycle.
    #[error("cycle: {}", .path.iter().map(|id| format!("\"{id}\"")).collect::<Vec<_>>().join(" -> "))]
    Cycle {
        /// Node ids along the cycle; the first is repeated at the end.
        path: Vec<String>,
    },
    /// A node cannot be reached from the trigger.
    #[error("node \"{node}\": not reachable from the trigger")]
    Unreachable {
        /// The node id.
        node: String,
    },
}

fn found_list(found: &[String]) -> String {
    if found.is_empty() {
        "none".to_owned()
    } else {
        format!(
            "{} ({})",
            found.len(),
            found
                .iter()
                .map(|id| format!("\"{id}\""))
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}

/// Every problem found in a workflow definition; never empty.
#[derive(Debug)]
pub struct ValidationErrors(pub Vec<GraphError>);

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid workflow: ")?;
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ValidationErrors {}

/// A validated workflow definition with the indexes the scheduler needs.
///
/// The only way to build one is [`WorkflowGraph::validate`], so a `WorkflowGraph` is always
/// well formed; [`Store::save_workflow`](crate::Store::save_workflow) takes one for that reason.
#[derive(Debug, Clone)]
pub struct WorkflowGraph {
    definition: WorkflowDefinition,
    /// For each node, the indexes of the edges into it.
    incoming: Vec<Vec<usize>>,
    /// For each node, the indexes of its distinct parent nodes.
    parents: Vec<Vec<usize>>,
    /// For each edge, the indexes of its source and target nodes.
    endpoints: Vec<(usize, usize)>,
    /// Nodes with no outgoing edge.
    leaves: Vec<usize>,
}

impl WorkflowGraph {
    /// Checks `definition` against the node types in `registry`, reporting every problem.
    pub fn validate(
        definition: WorkflowDefinition,
        registry: &NodeRegistry,
    ) -> Result<Self, ValidationErrors> {
        let mut errors = Vec::new();
        if definition.name.trim().is_empty() {
            errors.push(GraphError::EmptyName);
        }
        if let Some(reason) = definition.retry.as_ref().and_then(RetryPolicy::problem) {
            errors.push(GraphError::InvalidRetry {
                owner: "workflow".into(),
                reason,
            });
        }

        let mut index = HashMap::new();
        for (i, node) in definition.nodes.iter().enumerate() {
            if node.id.trim().is_empty() {
                errors.push(GraphError::EmptyNodeId { index: i });
            } else if index.insert(node.id.as_str(), i).is_some() {
                errors.push(GraphError::DuplicateNode {
                    id: node.id.clone(),
                });
            }
            match registry.get(&node.node_type) {
                None => errors.push(GraphError::UnknownType {
                    node: node.id.clone(),
                    node_type: node.node_type.clone(),
                    known: registry.types().collect::<Vec<_>>().join(", "),
                }),
                Some(executor) => {
                    if let Err(source) = executor.validate_config(&node.config) {
                        errors.push(GraphError::InvalidConfig {
                            node: node.id.clone(),
                            source,
                        });
                    }
                }
            }
            if let Some(reason) = node.retry.as_ref().and_then(RetryPolicy::problem) {
                errors.push(GraphError::InvalidRetry {
                    owner: format!("node \"{}\"", node.id),
                    reason,
                });
            }
        }

        let triggers: Vec<usize> = (0..definition.nodes.len())
            .filter(|&i| definition.nodes[i].node_type == TRIGGER_TYPE)
            .collect();
        if triggers.len() != 1 {
            errors.push(GraphError::EntryTrigger {
                found: triggers
                    .iter()
                    .map(|&i| definition.nodes[i].id.clone())
                    .collect(),
            });
        }

        let mut endpoints = Vec::with_capacity(definition.edges.len());
        let mut seen_edges = HashSet::new();
        let mut edges_ok = true;
        for edge in &definition.edges {
            let from = index.get(edge.from.as_str()).copied();
            let to = index.get(edge.to.as_str()).copied();
            for (id, found) in [(&edge.from, from), (&edge.to, to)] {
                if found.is_none() {
                    errors.push(GraphError::UnknownNode {
                        edge: edge.to_string(),
                        id: id.clone(),
                    });
                }
            }
            if !seen_edges.insert(edge) {
                errors.push(GraphError::DuplicateEdge {
                    edge: edge.to_string(),
                });
            }
            match (from, to) {
                (Some(from), Some(to)) => {
                    if definition.nodes[to].node_type == TRIGGER_TYPE {
                        errors.push(GraphError::IntoTrigger {
                            edge: edge.to_string(),
                        });
                    }
                    endpoints.push((from, to));
                }
                _ => edges_ok = false,
            }
        }

        let n = definition.nodes.len();
        let mut incoming = vec![Vec::new(); n];
        let mut outgoing = vec![Vec::new(); n];
        let mut parents: Vec<Vec<usize>> = vec![Vec::new(); n];
        if edges_ok {
            for (e, &(from, to)) in endpoints.iter().enumerate() {
                incoming[to].push(e);
                outgoing[from].push(to);
                if !parents[to].contains(&from) {
                    parents[to].push(from);
                }
            }
            if let Some(path) = find_cycle(&outgoing) {
                errors.push(GraphError::Cycle {
                    path: path
                        .into_iter()
                        .map(|i| definition.nodes[i].id.clone())
                        .collect(),
                });
            } else if let [trigger] = triggers[..] {
                let mut reached = vec![false; n];
                let mut queue = VecDeque::from([trigger]);
                reached[trigger] = true;
                while let Some(node) = queue.pop_front() {
                    for &child in &outgoing[node] {
                        if !reached[child] {
                            reached[child] = true;
                            queue.push_back(child);
                        }
                    }
                }
                for (i, node) in definition.nodes.iter().enumerate() {
                    if !reached[i] && node.node_type != TRIGGER_TYPE {
                        errors.push(GraphError::Unreachable {
                            node: node.id.clone(),
                        });
                    }
                }
            }
        }

        if !errors.is_empty() {
            return Err(ValidationErrors(errors));
        }
        let leaves = (0..n).filter(|&i| outgoing[i].is_empty()).collect();
        Ok(Self {
            definition,
            incoming,
            parents,
            endpoints,
            leaves,
        })
    }

    /// The definition this graph was built from.
    pub fn definition(&self) -> &WorkflowDefinition {
        &self.definition
    }

    /// The node at `index`.
    pub fn node(&self, index: usize) -> &NodeDefinition {
        &self.definition.nodes[index]
    }

    /// The index of the node with id `id`.
    pub fn node_index(&self, id: &str) -> Option<usize> {
        self.definition.nodes.iter().position(|node| node.id == id)
    }

    /// The retry policy that applies to the node at `index`.
    pub fn retry_policy(&self, index: usize) -> &RetryPolicy {
        self.node(index)
            .retry
            .as_ref()
            .or(self.definition.retry.as_ref())
            .unwrap_or(&RetryPolicy::NONE)
    }
}

/// Depth-first search for a cycle; returns its node indexes with the first repeated at the end.
fn find_cycle(outgoing: &[Vec<usize>]) -> Option<Vec<usize>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnPath,
        Done,
    }
    let mut marks = vec![Mark::New; outgoing.len()];
    for start in 0..outgoing.len() {
        if marks[start] != Mark::New {
            continue;
        }
        // Each frame is a node and the position of the next child to visit.
        let mut stack = vec![(start, 0usize)];
        marks[start] = Mark::OnPath;
        while let Some(frame) = stack.last_mut() {
            let (node, next) = *frame;
            if let Some(&child) = outgoing[node].get(next) {
                frame.1 += 1;
                match marks[child] {
                    Mark::New => {
                        marks[child] = Mark::OnPath;
                        stack.push((child, 0));
                    }
                    Mark::OnPath => {
                        let begin = stack.iter().position(|&(n, _)| n == child)?;
                        let mut path: Vec<usize> = stack[begin..].iter().map(|&(n, _)| n).collect();
                        path.push(child);
                        return Some(path);
                    }
                    Mark::Done => {}
                }
            } else {
                marks[node] = Mark::Done;
                stack.pop();
            }
        }
    }
    None
}

/// What is known about one node of an execution.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeState {
    /// Not started.
    Pending,
    /// Started by this worker and not yet finished.
    Running,
    /// Finished with an output, having chosen `branch` if any.
    Completed {
        /// The node's output.
        output: Value,
        /// The branch it chose.
        branch: Option<String>,
    },
    /// Failed attempt `attempt` and is due to be retried.
    RetryDue {
        /// The failed attempt.
        attempt: u32,
    },
    /// Not run because no path into it was taken.
    Skipped,
}

impl NodeState {
    fn is_finished(&self) -> bool {
        matches!(self, Self::Completed { .. } | Self::Skipped)
    }
}

/// A node that may start now.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadyNode {
    /// Its index in the graph.
    pub index: usize,
    /// The attempt about to start, from 1.
    pub attempt: u32,
    /// Its input: its parent's output, an object keyed by parent id when it has several
    /// parents, or the execution input for the trigger.
    pub input: Value,
}

/// The scheduler's view of one execution: the state of each node.
#[derive(Debug, Clone)]
pub struct Progress {
    states: Vec<NodeState>,
}

impl Progress {
    /// A fresh execution: every node pending.
    pub fn new(graph: &WorkflowGraph) -> Self {
        Self {
            states: vec![NodeState::Pending; graph.definition.nodes.len()],
        }
    }

    /// The state of the node at `index`.
    pub fn state(&self, index: usize) -> &NodeState {
        &self.states[index]
    }

    /// Sets the state of the node at `index`.
    pub fn set(&mut self, index: usize, state: NodeState) {
        self.states[index] = state;
    }

    /// Whether any node is running.
    pub fn any_running(&self) -> bool {
        self.states.iter().any(|s| *s == NodeState::Running)
    }

    /// Whether any node waits for a retry.
    pub fn any_retry_due(&self) -> bool {
        self.states
            .iter()
            .any(|s| matches!(s, NodeState::RetryDue { .. }))
    }

    /// Whether every node completed or was skipped.
    pub fn is_finished(&self) -> bool {
        self.states.iter().all(NodeState::is_finished)
    }

    /// Marks every node none of whose paths in was taken as skipped (propagating), and returns
    /// the indexes it marked.
    pub fn skip_untaken(&mut self, graph: &WorkflowGraph) -> Vec<usize> {
        let mut skipped = Vec::new();
        loop {
            let before = skipped.len();
            for node in 0..self.states.len() {
                if self.states[node] == NodeState::Pending
                    && self.parents_finished(graph, node)
                    && !graph.incoming[node].is_empty()
                    && !graph.incoming[node]
                        .iter()
                        .any(|&e| self.edge_taken(graph, e))
                {
                    self.states[node] = NodeState::Skipped;
                    skipped.push(node);
                }
            }
            if skipped.len() == before {
                return skipped;
            }
        }
    }

    /// The nodes that may start now, given the execution's input. Call
    /// [`skip_untaken`](Self::skip_untaken) first so skips have propagated.
    pub fn ready(&self, graph: &WorkflowGraph, execution_input: &Value) -> Vec<ReadyNode> {
        (0..self.states.len())
            .filter_map(|node| {
                let attempt = match self.states[node] {
                    NodeState::Pending => 1,
                    NodeState::RetryDue { attempt } => attempt + 1,
                    _ => return None,
                };
                if !self.parents_finished(graph, node) {
                    return None;
                }
                if !graph.incoming[node].is_empty()
                    && !graph.incoming[node]
                        .iter()
                        .any(|&e| self.edge_taken(graph, e))
                {
                    return None;
                }
                Some(ReadyNode {
                    index: node,
                    attempt,
                    input: self.input(graph, node, execution_input),
                })
            })
            .collect()
    }

    /// The execution's output: the output of its one final node, or an object keyed by node id
    /// when several final nodes completed.
    pub fn output(&self, graph: &WorkflowGraph) -> Value {
        let completed: Vec<(&str, &Value)> = graph
            .leaves
            .iter()
            .filter_map(|&leaf| match &self.states[leaf] {
                NodeState::Completed { output, .. } => Some((graph.node(leaf).id.as_str(), output)),
                _ => None,
            })
            .collect();
        match completed[..] {
            [] => Value::Null,
            [(_, output)] if graph.leaves.len() == 1 => output.clone(),
            _ => Value::Object(
                completed
                    .into_iter()
                    .map(|(id, output)| (id.to_owned(), output.clone()))
                    .collect(),
            ),
        }
    }

    fn parents_finished(&self, graph: &WorkflowGraph, node: usize) -> bool {
        graph.parents[node]
            .iter()
            .all(|&parent| self.states[parent].is_finished())
    }

    fn edge_taken(&self, graph: &WorkflowGraph, edge: usize) -> bool {
        let (from, _) = graph.endpoints[edge];
        match &self.states[from] {
            NodeState::Completed { branch, .. } => match &graph.definition.edges[edge].branch {
                None => true,
                wanted => wanted == branch,
            },
            _ => false,
        }
    }

    fn input(&self, graph: &WorkflowGraph, node: usize, execution_input: &Value) -> Value {
        let parents = &graph.parents[node];
        let output_of = |parent: usize| match &self.states[parent] {
            NodeState::Completed { output, .. } => Some(output.clone()),
            _ => None,
        };
        match parents[..] {
            [] => execution_input.clone(),
            [parent] => output_of(parent).unwrap_or(Value::Null),
            _ => {
                let mut object = Map::new();
                for &parent in parents {
                    let taken = graph.incoming[node]
                        .iter()
                        .any(|&e| graph.endpoints[e].0 == parent && self.edge_taken(graph, e));
                    if let (true, Some(output)) = (taken, output_of(parent)) {
                        object.insert(graph.node(parent).id.clone(), output);
                    }
                }
                Value::Object(object)
            }
        }
    }
}

/// Serde helpers for durations written as (fractional) seconds.
mod seconds {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub(super) fn serialize<S: Serializer>(
        value: &Duration,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_f64(value.as_secs_f64())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Duration, D::Error> {
        let secs = f64::deserialize(deserializer)?;
        Duration::try_from_secs_f64(secs).map_err(|_| {
            D::Error::custom(format!(
                "{secs} is not a valid number of seconds (must be 0 or more)"
            ))
        })
    }

    pub(super) mod option {
        use std::time::Duration;

        use serde::{Deserialize, Deserializer, Serializer};

        pub(in super::super) fn serialize<S: Serializer>(
            value: &Option<Duration>,
            serializer: S,
        ) -> Result<S::Ok, S::Error> {
            match value {
                Some(duration) => super::serialize(duration, serializer),
                None => serializer.serialize_none(),
            }
        }

        pub(in super::super) fn deserialize<'de, D: Deserializer<'de>>(
            deserializer: D,
        ) -> Result<Option<Duration>, D::Error> {
            #[derive(Deserialize)]
            struct Wrapper(#[serde(with = "super")] Duration);
            Ok(Option::<Wrapper>::deserialize(deserializer)?.map(|Wrapper(d)| d))
        }
    }
}
