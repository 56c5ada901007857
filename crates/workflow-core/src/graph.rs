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

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::flow::{Concurrency, RateLimit};
use crate::node::{NodeExecutor, NodeRegistry};
use crate::template::{self, ConfigTemplates, TemplateProblem};

mod json;

pub use json::DefinitionError;

/// The node type every workflow starts from.
pub const TRIGGER_TYPE: &str = "trigger";

/// A workflow as written by its author: nodes and the edges between them.
///
/// ```
/// use workflow_worker_core::WorkflowDefinition;
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(
    title = "workflow-worker workflow definition",
    description = "A workflow: nodes (a trigger first) and the edges between them. Node configs are checked by their node types when the workflow is saved."
)]
pub struct WorkflowDefinition {
    /// Unique name of the workflow; saving the same name again adds a version.
    pub name: String,
    /// Free text for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Retry policy for nodes that have none of their own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,
    /// How long an execution may take from its creation, in seconds in JSON; past it the
    /// execution ends `timed_out`, whichever worker holds it. A start call may set its own.
    #[serde(
        default,
        with = "seconds::option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<f64>", range(min = 0))]
    pub timeout: Option<Duration>,
    /// The priority of executions started without one (else 0); higher runs first
    /// ([`flow`](crate::flow)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i32>,
    /// A limit on the workflow's running executions, per workflow or per key, or fair
    /// dequeue across keys ([`flow`](crate::flow)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<Concurrency>,
    /// Named rate limits on how often its nodes start, and the node types under each
    /// ([`flow`](crate::flow)).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub rate_limits: BTreeMap<String, RateLimit>,
    /// The nodes.
    pub nodes: Vec<NodeDefinition>,
    /// The edges between nodes.
    #[serde(default)]
    pub edges: Vec<Edge>,
}

/// One node of a workflow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
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
    #[schemars(with = "Option<f64>", range(min = 0))]
    pub timeout: Option<Duration>,
    /// The name of one of the workflow's `rate_limits` this node starts under (besides those
    /// listing its type).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<String>,
}

/// An edge from one node to another, optionally taken only on one branch of its source.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    /// Attempts in all, including the first; 1 means no retry.
    pub max_attempts: u32,
    /// Wait before the second attempt. Defaults to 1 s.
    #[serde(default = "RetryPolicy::default_initial_backoff", with = "seconds")]
    #[schemars(with = "f64", range(min = 0))]
    pub initial_backoff: Duration,
    /// Each further wait is the previous one times this. Defaults to 2.
    #[serde(default = "RetryPolicy::default_multiplier")]
    pub multiplier: f64,
    /// No wait is longer than this. Defaults to 5 minutes.
    #[serde(default = "RetryPolicy::default_max_backoff", with = "seconds")]
    #[schemars(with = "f64", range(min = 0))]
    pub max_backoff: Duration,
    /// Spreads each wait randomly by up to this fraction either way (0.1: ±10 %), so
    /// executions that failed together do not retry together. From 0 to 1; defaults to 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub jitter: f64,
    /// What becomes of the execution when the node fails for good (a fatal error, or its
    /// last attempt): it fails (the default), or it pauses with the error, so an operator can
    /// fix the cause and resume it; the node then runs again from attempt 1.
    #[serde(default, skip_serializing_if = "OnFailure::is_fail")]
    pub on_failure: OnFailure,
}

/// What a node that failed for good does to its execution (a retry policy's `on_failure`).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    /// The execution fails.
    #[default]
    Fail,
    /// The execution pauses with the error, to be resumed once the cause is fixed.
    Pause,
}

impl OnFailure {
    fn is_fail(&self) -> bool {
        *self == Self::Fail
    }
}

fn is_zero(value: &f64) -> bool {
    *value == 0.0
}

impl RetryPolicy {
    /// The policy of a node that has none: one attempt, no retry.
    pub const NONE: RetryPolicy = RetryPolicy {
        max_attempts: 1,
        initial_backoff: Duration::from_secs(1),
        multiplier: 2.0,
        max_backoff: Duration::from_secs(300),
        jitter: 0.0,
        on_failure: OnFailure::Fail,
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

    /// [`backoff`](Self::backoff) spread by the jitter; `unit` is a random number in [0, 1).
    pub fn jittered_backoff(&self, attempt: u32, unit: f64) -> Duration {
        let factor = 1.0 + self.jitter * (2.0 * unit - 1.0);
        self.backoff(attempt).mul_f64(factor.max(0.0))
    }

    fn problem(&self) -> Option<String> {
        if self.max_attempts == 0 {
            Some("max_attempts must be at least 1".into())
        } else if !(self.multiplier.is_finite() && self.multiplier >= 1.0) {
            Some(format!(
                "multiplier ({}) must be at least 1",
                self.multiplier
            ))
        } else if !(0.0..=1.0).contains(&self.jitter) {
            Some(format!("jitter ({}) must be between 0 and 1", self.jitter))
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
    /// A rate limit is out of range.
    #[error("rate limit \"{name}\": {reason}")]
    InvalidRateLimit {
        /// The limit's name.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// A node names a rate limit the workflow does not define, or is under two.
    #[error("node \"{node}\": {reason}")]
    NodeRateLimit {
        /// The node id.
        node: String,
        /// What is wrong.
        reason: String,
    },
    /// The `concurrency` setting is out of range.
    #[error("workflow: invalid concurrency: {reason}")]
    InvalidConcurrency {
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
    /// A template in a node's config is malformed or names what templates cannot see.
    #[error("node \"{node}\": {problem}")]
    InvalidTemplate {
        /// The node id.
        node: String,
        /// Where the template is and what is wrong with it.
        problem: TemplateProblem,
    },
    /// A template names a node that does not exist.
    #[error("node \"{node}\": {path}: names node \"{id}\", which does not exist")]
    TemplateUnknownNode {
        /// The node whose config has the template.
        node: String,
        /// Where the template is.
        path: String,
        /// The node id it names.
        id: String,
    },
    /// A template names a node that is not upstream of its own, so that node's output may
    /// not exist when this one runs.
    #[error(
        "node \"{node}\": {path}: names node \"{id}\", which is not upstream of it (only the outputs of nodes on a path to it exist when it runs)"
    )]
    TemplateNotUpstream {
        /// The node whose config has the template.
        node: String,
        /// Where the template is.
        path: String,
        /// The node id it names.
        id: String,
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
    /// For each node whose config has templates, the nodes they name (all upstream of it).
    templates: Vec<Option<Vec<usize>>>,
    /// For each node, the name of the rate limit it starts under.
    rate_limits: Vec<Option<String>>,
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

        if let Some(reason) = definition
            .concurrency
            .as_ref()
            .and_then(Concurrency::problem)
        {
            errors.push(GraphError::InvalidConcurrency { reason });
        }
        for (name, limit) in &definition.rate_limits {
            let reason = if name.trim().is_empty() {
                Some("a rate limit needs a name".to_owned())
            } else {
                limit.problem()
            };
            if let Some(reason) = reason {
                errors.push(GraphError::InvalidRateLimit {
                    name: name.clone(),
                    reason,
                });
            }
            for node_type in &limit.node_types {
                if registry.get(node_type).is_none() {
                    errors.push(GraphError::InvalidRateLimit {
                        name: name.clone(),
                        reason: format!(
                            "unknown node type \"{node_type}\" in node_types (known: {})",
                            registry.types().collect::<Vec<_>>().join(", ")
                        ),
                    });
                }
            }
        }
        let rate_limits = node_rate_limits(&definition, &mut errors);

        let mut scanned: Vec<Option<ConfigTemplates>> = Vec::with_capacity(definition.nodes.len());
        for node in &definition.nodes {
            let (found, problems) = template::scan(&node.config);
            errors.extend(
                problems
                    .into_iter()
                    .map(|problem| GraphError::InvalidTemplate {
                        node: node.id.clone(),
                        problem,
                    }),
            );
            scanned.push(found);
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
                    check_config(executor.as_ref(), node, &mut errors);
                    for nested in executor.nested_nodes(&node.config) {
                        let owner = format!("{} (its {})", node.id, nested.id);
                        match registry.get(&nested.node_type) {
                            None => errors.push(GraphError::UnknownType {
                                node: owner.clone(),
                                node_type: nested.node_type.clone(),
                                known: registry.types().collect::<Vec<_>>().join(", "),
                            }),
                            Some(inner) => check_config(
                                inner.as_ref(),
                                &NodeDefinition {
                                    id: owner.clone(),
                                    ..nested.clone()
                                },
                                &mut errors,
                            ),
                        }
                        if let Some(reason) = nested.retry.as_ref().and_then(RetryPolicy::problem) {
                            errors.push(GraphError::InvalidRetry {
                                owner: format!("node \"{owner}\""),
                                reason,
                            });
                        }
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
                    // A duplicate id was reported already; edges only ever reach its first node.
                    let first_of_its_id = index.get(node.id.as_str()) == Some(&i);
                    if !reached[i] && node.node_type != TRIGGER_TYPE && first_of_its_id {
                        errors.push(GraphError::Unreachable {
                            node: node.id.clone(),
                        });
                    }
                }
            }
        }

        let mut templates = vec![None; n];
        for (i, found) in scanned.iter().enumerate() {
            let Some(found) = found else { continue };
            let upstream = ancestors(&parents, i);
            let mut named = Vec::new();
            for (path, id) in &found.nodes {
                let node = definition.nodes[i].id.clone();
                let (path, id) = (path.clone(), id.clone());
                match index.get(id.as_str()) {
                    None => errors.push(GraphError::TemplateUnknownNode { node, path, id }),
                    // Upstream is known only once the edges are sound (reported otherwise).
                    Some(_) if !edges_ok => {}
                    Some(&target) if !upstream.contains(&target) => {
                        errors.push(GraphError::TemplateNotUpstream { node, path, id });
                    }
                    Some(&target) => named.push(target),
                }
            }
            named.sort_unstable();
            named.dedup();
            templates[i] = Some(named);
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
            templates,
            rate_limits,
        })
    }

    /// The rate limit the node at `index` starts under, with its name.
    pub fn rate_limit(&self, index: usize) -> Option<(&str, &RateLimit)> {
        let name = self.rate_limits[index].as_deref()?;
        Some((name, &self.definition.rate_limits[name]))
    }

    /// The nodes named by the templates of the node at `index` (`None`: its config has no
    /// template).
    pub fn templates(&self, index: usize) -> Option<&[usize]> {
        self.templates[index].as_deref()
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

/// The rate limit each node starts under: the one it names, or the one listing its type; a
/// node under two, or naming one not defined, is an error.
fn node_rate_limits(
    definition: &WorkflowDefinition,
    errors: &mut Vec<GraphError>,
) -> Vec<Option<String>> {
    definition
        .nodes
        .iter()
        .map(|node| {
            let mut names: Vec<&String> = definition
                .rate_limits
                .iter()
                .filter(|(_, limit)| limit.node_types.contains(&node.node_type))
                .map(|(name, _)| name)
                .collect();
            if let Some(named) = &node.rate_limit {
                if !definition.rate_limits.contains_key(named) {
                    let defined: Vec<&str> =
                        definition.rate_limits.keys().map(String::as_str).collect();
                    errors.push(GraphError::NodeRateLimit {
                        node: node.id.clone(),
                        reason: format!(
                            "unknown rate limit \"{named}\" (defined: {})",
                            if defined.is_empty() {
                                "none".to_owned()
                            } else {
                                defined.join(", ")
                            }
                        ),
                    });
                    return None;
                }
                if !names.contains(&named) {
                    names.push(named);
                }
            }
            match names.as_slice() {
                [] => None,
                [name] => Some((*name).clone()),
                several => {
                    errors.push(GraphError::NodeRateLimit {
                        node: node.id.clone(),
                        reason: format!(
                            "starts under more than one rate limit ({}); a node may start under one",
                            several
                                .iter()
                                .map(|name| format!("\"{name}\""))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    });
                    None
                }
            }
        })
        .collect()
}

/// Checks `node`'s config with its type, unless templates outside the keys the type renders
/// itself make its values unknown until the node runs (then the worker checks it, rendered).
fn check_config(executor: &dyn NodeExecutor, node: &NodeDefinition, errors: &mut Vec<GraphError>) {
    let deferred = executor.deferred_config();
    let templated = match &node.config {
        Value::Object(map) if !template::is_template(&node.config) => map
            .iter()
            .filter(|(key, _)| !deferred.contains(&key.as_str()))
            .any(|(_, value)| template::scan(value).0.is_some()),
        other => template::scan(other).0.is_some(),
    };
    if templated {
        return;
    }
    if let Err(source) = executor.validate_config(&node.config) {
        errors.push(GraphError::InvalidConfig {
            node: node.id.clone(),
            source,
        });
    }
}

/// Every node with a path to `node` (given each node's parents; the graph has no cycle).
fn ancestors(parents: &[Vec<usize>], node: usize) -> HashSet<usize> {
    let mut seen = HashSet::new();
    let mut queue: Vec<usize> = parents[node].clone();
    while let Some(next) = queue.pop() {
        if seen.insert(next) {
            queue.extend(&parents[next]);
        }
    }
    seen
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
    /// Attempt `attempt` started but never ended (its worker shut down or died); it runs
    /// again with the same number.
    Interrupted {
        /// The unfinished attempt.
        attempt: u32,
    },
    /// Attempt `attempt` parked to wait for a signal or a timer since `since` (database
    /// time); it runs again with the same number to see whether its wait is over.
    Waiting {
        /// The waiting attempt.
        attempt: u32,
        /// When it began waiting.
        since: chrono::DateTime<chrono::Utc>,
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
                    NodeState::Interrupted { attempt } | NodeState::Waiting { attempt, .. } => {
                        attempt
                    }
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
pub(crate) mod seconds {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub(crate) fn serialize<S: Serializer>(
        value: &Duration,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_f64(value.as_secs_f64())
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::node::{NodeContext, NodeError, NodeExecutor, NodeOutcome};

    struct Noop;

    #[async_trait::async_trait]
    impl NodeExecutor for Noop {
        async fn execute(&self, ctx: NodeContext) -> Result<NodeOutcome, NodeError> {
            Ok(NodeOutcome::complete(ctx.input))
        }
    }

    fn registry() -> NodeRegistry {
        NodeRegistry::builtin().with("noop", Noop)
    }

    fn definition(nodes: &[(&str, &str)], edges: &[(&str, &str)]) -> WorkflowDefinition {
        WorkflowDefinition {
            name: "test".into(),
            description: None,
            retry: None,
            timeout: None,
            priority: None,
            concurrency: None,
            rate_limits: BTreeMap::new(),
            nodes: nodes
                .iter()
                .map(|(id, node_type)| NodeDefinition {
                    id: (*id).into(),
                    node_type: (*node_type).into(),
                    config: Value::Null,
                    retry: None,
                    timeout: None,
                    rate_limit: None,
                })
                .collect(),
            edges: edges
                .iter()
                .map(|(from, to)| Edge {
                    from: (*from).into(),
                    to: (*to).into(),
                    branch: None,
                })
                .collect(),
        }
    }

    fn errors(definition: WorkflowDefinition) -> Vec<String> {
        match WorkflowGraph::validate(definition, &registry()) {
            Ok(_) => panic!("expected validation errors"),
            Err(errors) => errors.0.iter().map(ToString::to_string).collect(),
        }
    }

    fn graph(definition: WorkflowDefinition) -> WorkflowGraph {
        WorkflowGraph::validate(definition, &registry()).expect("valid")
    }

    fn diamond() -> WorkflowGraph {
        graph(definition(
            &[
                ("t", "trigger"),
                ("a", "noop"),
                ("b", "noop"),
                ("c", "noop"),
            ],
            &[("t", "a"), ("t", "b"), ("a", "c"), ("b", "c")],
        ))
    }

    fn complete(progress: &mut Progress, graph: &WorkflowGraph, id: &str, output: Value) {
        let index = graph.node_index(id).unwrap();
        progress.set(
            index,
            NodeState::Completed {
                output,
                branch: None,
            },
        );
    }

    fn ready_ids(progress: &Progress, graph: &WorkflowGraph) -> Vec<String> {
        progress
            .ready(graph, &json!({"in": 1}))
            .into_iter()
            .map(|r| graph.node(r.index).id.clone())
            .collect()
    }

    #[test]
    fn a_valid_chain_passes() {
        let graph = graph(definition(
            &[("t", "trigger"), ("a", "noop")],
            &[("t", "a")],
        ));
        assert_eq!(graph.definition().nodes.len(), 2);
    }

    #[test]
    fn templates_may_name_upstream_nodes_only_and_are_checked_at_save() {
        // The diamond t -> a, t -> b, a -> c, b -> c.
        let mut with_templates = definition(
            &[
                ("t", "trigger"),
                ("a", "noop"),
                ("b", "noop"),
                ("c", "noop"),
            ],
            &[("t", "a"), ("t", "b"), ("a", "c"), ("b", "c")],
        );
        with_templates.nodes[3].config = json!({
            "x": {"$template": "{{ nodes.a.output }} {{ nodes.t.output }} {{ input.b }}"}
        });
        let valid = graph(with_templates.clone());
        assert_eq!(valid.templates(3), Some(&[0, 1][..]));
        assert_eq!(valid.templates(1), None);

        with_templates.nodes[1].config = json!({"y": {"$template": "{{ nodes.b.output }}"}});
        with_templates.nodes[2].config = json!({
            "z": [{"$template": "{{ nodes.ghost.output }}"}, {"$template": "{% if %}"}]
        });
        let errs = errors(with_templates);
        assert_eq!(
            errs,
            vec![
                "node \"b\": config.z[1]: syntax error: unexpected end of block",
                "node \"a\": config.y: names node \"b\", which is not upstream of it (only the outputs of nodes on a path to it exist when it runs)",
                "node \"b\": config.z[0]: names node \"ghost\", which does not exist",
            ]
        );
    }

    #[test]
    fn the_new_node_types_configs_are_checked_naming_the_node() {
        let mut workflow = definition(
            &[
                ("t", "trigger"),
                ("each", "map"),
                ("call", "http"),
                ("child", "subworkflow"),
            ],
            &[("t", "each"), ("t", "call"), ("t", "child")],
        );
        workflow.nodes[1].config = json!({"items": [1], "node": {"type": "teleport"}});
        workflow.nodes[2].config = json!({"url": "ftp://x"});
        workflow.nodes[3].config = json!({"workflow": ""});
        let errs = errors(workflow.clone());
        assert_eq!(errs.len(), 3, "{errs:?}");
        assert!(
            errs[0].starts_with("node \"each (its node)\": unknown node type \"teleport\""),
            "{errs:?}"
        );
        assert!(
            errs[1].starts_with("node \"call\": invalid config: url \"ftp://x\""),
            "{errs:?}"
        );
        assert_eq!(
            errs[2],
            "node \"child\": invalid config: workflow must not be empty"
        );
        // The item node's own config is checked by its type, with the map's node named.
        workflow.nodes[1].config = json!({"items": [1], "node": {"type": "http", "config": {}}});
        workflow.nodes[2].config = json!({"url": "https://example.com"});
        workflow.nodes[3].config = json!({"workflow": "other"});
        let errs = errors(workflow);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].starts_with("node \"each (its node)\": invalid config: missing field `url`"),
            "{errs:?}"
        );
    }

    #[test]
    fn a_config_with_templates_is_left_to_its_type_until_rendered() {
        // The delay node wants a number of seconds: a template is checked when it runs.
        let mut delayed = definition(&[("t", "trigger"), ("d", "delay")], &[("t", "d")]);
        delayed.nodes[1].config = json!({"seconds": {"$template": "{{ input.wait }}"}});
        graph(delayed.clone());
        delayed.nodes[1].config = json!({"seconds": "soon"});
        assert_eq!(errors(delayed).len(), 1);
    }

    #[test]
    fn duplicate_ids_are_named() {
        let errs = errors(definition(
            &[("t", "trigger"), ("a", "noop"), ("a", "noop")],
            &[("t", "a")],
        ));
        assert_eq!(errs, vec!["node \"a\": duplicate node id"]);
    }

    #[test]
    fn edges_to_missing_nodes_are_named() {
        let errs = errors(definition(
            &[("t", "trigger"), ("a", "noop")],
            &[("t", "a"), ("a", "x")],
        ));
        assert_eq!(errs, vec!["edge \"a\" -> \"x\": unknown node \"x\""]);
    }

    #[test]
    fn unknown_types_are_named_with_the_known_ones() {
        let errs = errors(definition(
            &[("t", "trigger"), ("a", "teleport")],
            &[("t", "a")],
        ));
        assert_eq!(
            errs,
            vec![
                "node \"a\": unknown node type \"teleport\" (known: code, condition, delay, http, map, noop, subworkflow, trigger, wait_for_signal)"
            ]
        );
    }

    #[test]
    fn cycles_are_reported_with_their_path() {
        let errs = errors(definition(
            &[
                ("t", "trigger"),
                ("a", "noop"),
                ("b", "noop"),
                ("c", "noop"),
            ],
            &[("t", "a"), ("a", "b"), ("b", "c"), ("c", "a")],
        ));
        assert_eq!(errs, vec!["cycle: \"a\" -> \"b\" -> \"c\" -> \"a\""]);
        let errs = errors(definition(
            &[("t", "trigger"), ("a", "noop")],
            &[("t", "a"), ("a", "a")],
        ));
        assert_eq!(errs, vec!["cycle: \"a\" -> \"a\""]);
    }

    #[test]
    fn exactly_one_trigger_is_required() {
        let errs = errors(definition(&[("a", "noop")], &[]));
        assert_eq!(
            errs,
            vec!["workflow needs exactly one \"trigger\" node, found none"]
        );
        let errs = errors(definition(&[("t1", "trigger"), ("t2", "trigger")], &[]));
        assert_eq!(
            errs,
            vec!["workflow needs exactly one \"trigger\" node, found 2 (\"t1\", \"t2\")"]
        );
    }

    #[test]
    fn edges_into_the_trigger_are_rejected() {
        let errs = errors(definition(
            &[("t", "trigger"), ("a", "noop")],
            &[("t", "a"), ("a", "t")],
        ));
        assert!(
            errs.contains(
                &"edge \"a\" -> \"t\": the trigger node cannot have incoming edges".to_owned()
            ),
            "{errs:?}"
        );
    }

    #[test]
    fn unreachable_nodes_are_named() {
        let errs = errors(definition(
            &[("t", "trigger"), ("a", "noop"), ("island", "noop")],
            &[("t", "a")],
        ));
        assert_eq!(
            errs,
            vec!["node \"island\": not reachable from the trigger"]
        );
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let mut def = definition(
            &[("a", "noop"), ("a", "warp"), ("", "noop")],
            &[("a", "a"), ("a", "a"), ("a", "ghost")],
        );
        def.name = " ".into();
        def.nodes[0].retry = Some(RetryPolicy {
            max_attempts: 0,
            ..RetryPolicy::NONE
        });
        let errs = errors(def);
        assert_eq!(
            errs,
            vec![
                "workflow name must not be empty",
                "node \"a\": invalid retry policy: max_attempts must be at least 1",
                "node \"a\": duplicate node id",
                "node \"a\": unknown node type \"warp\" (known: code, condition, delay, http, map, noop, subworkflow, trigger, wait_for_signal)",
                "node #2: id must not be empty",
                "workflow needs exactly one \"trigger\" node, found none",
                "edge \"a\" -> \"a\": duplicate edge",
                "edge \"a\" -> \"ghost\": unknown node \"ghost\"",
            ]
        );
    }

    #[test]
    fn node_configs_are_checked_by_their_type() {
        let mut def = definition(&[("t", "trigger"), ("run", "code")], &[("t", "run")]);
        def.nodes[1].config = json!({"language": "cobol", "code": "x"});
        let errs = errors(def);
        assert_eq!(errs.len(), 1);
        assert!(
            errs[0].starts_with("node \"run\": invalid config: unknown variant `cobol`"),
            "{errs:?}"
        );
    }

    #[test]
    fn definitions_parse_from_json_with_durations_in_seconds() {
        let def: WorkflowDefinition = serde_json::from_value(json!({
            "name": "w",
            "nodes": [
                {"id": "t", "type": "trigger"},
                {"id": "a", "type": "noop", "timeout": 1.5,
                 "retry": {"max_attempts": 3, "initial_backoff": 0.25}}
            ],
            "edges": [{"from": "t", "to": "a", "branch": "yes"}]
        }))
        .unwrap();
        let node = &def.nodes[1];
        assert_eq!(node.timeout, Some(Duration::from_millis(1500)));
        let retry = node.retry.as_ref().unwrap();
        assert_eq!(retry.initial_backoff, Duration::from_millis(250));
        assert_eq!(retry.max_backoff, Duration::from_secs(300));
        assert_eq!(def.edges[0].branch.as_deref(), Some("yes"));
        let round_trip: WorkflowDefinition =
            serde_json::from_value(serde_json::to_value(&def).unwrap()).unwrap();
        assert_eq!(round_trip, def);

        let err = serde_json::from_value::<WorkflowDefinition>(json!({
            "name": "w", "nodes": [{"id": "t", "type": "trigger", "timeout": -1}]
        }))
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("-1 is not a valid number of seconds"),
            "{err}"
        );
    }

    #[test]
    fn a_retry_policy_fails_by_default_and_may_pause_instead() {
        let policy: RetryPolicy = serde_json::from_value(json!({"max_attempts": 2})).unwrap();
        assert_eq!(policy.on_failure, OnFailure::Fail);
        assert_eq!(
            serde_json::to_value(&policy).unwrap().get("on_failure"),
            None,
            "the default is left out when saved"
        );
        let pausing: RetryPolicy =
            serde_json::from_value(json!({"max_attempts": 2, "on_failure": "pause"})).unwrap();
        assert_eq!(pausing.on_failure, OnFailure::Pause);
        assert_eq!(
            serde_json::to_value(&pausing).unwrap()["on_failure"],
            "pause"
        );
        let err =
            serde_json::from_value::<RetryPolicy>(json!({"max_attempts": 2, "on_failure": "stop"}))
                .unwrap_err();
        assert!(
            err.to_string()
                .contains("unknown variant `stop`, expected `fail` or `pause`"),
            "{err}"
        );
    }

    #[test]
    fn backoff_grows_by_the_multiplier_up_to_the_cap() {
        let policy = RetryPolicy {
            max_attempts: 10,
            initial_backoff: Duration::from_secs(1),
            multiplier: 3.0,
            max_backoff: Duration::from_secs(20),
            jitter: 0.0,
            on_failure: OnFailure::Fail,
        };
        let waits: Vec<u64> = (1..=5).map(|a| policy.backoff(a).as_secs()).collect();
        assert_eq!(waits, vec![1, 3, 9, 20, 20]);
    }

    #[test]
    fn jitter_spreads_the_wait_both_ways() {
        let policy = RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_secs(10),
            jitter: 0.2,
            ..RetryPolicy::NONE
        };
        assert_eq!(policy.jittered_backoff(1, 0.0), Duration::from_secs(8));
        assert_eq!(policy.jittered_backoff(1, 0.5), Duration::from_secs(10));
        assert!(policy.jittered_backoff(1, 0.999) < Duration::from_secs(12));
        let errs = errors({
            let mut def = definition(&[("t", "trigger")], &[]);
            def.retry = Some(RetryPolicy {
                jitter: 1.5,
                ..RetryPolicy::NONE
            });
            def
        });
        assert_eq!(
            errs,
            vec!["workflow: invalid retry policy: jitter (1.5) must be between 0 and 1"]
        );
    }

    #[test]
    fn a_concurrency_setting_is_checked_at_save() {
        let errs = errors({
            let mut def = definition(&[("t", "trigger")], &[]);
            def.concurrency = Some(crate::flow::Concurrency {
                limit: Some(0),
                key: None,
            });
            def
        });
        assert_eq!(
            errs,
            vec!["workflow: invalid concurrency: limit must be from 1 to 2147483647, not 0"]
        );
    }

    #[test]
    fn retry_policy_falls_back_to_the_workflow_default_then_none() {
        let mut def = definition(&[("t", "trigger"), ("a", "noop")], &[("t", "a")]);
        let g = graph(def.clone());
        assert_eq!(g.retry_policy(1).max_attempts, 1);
        def.retry = Some(RetryPolicy {
            max_attempts: 4,
            ..RetryPolicy::NONE
        });
        let g = graph(def);
        assert_eq!(g.retry_policy(1).max_attempts, 4);
    }

    #[test]
    fn the_trigger_gets_the_execution_input() {
        let graph = diamond();
        let progress = Progress::new(&graph);
        let ready = progress.ready(&graph, &json!({"in": 1}));
        assert_eq!(ready.len(), 1);
        assert_eq!(graph.node(ready[0].index).id, "t");
        assert_eq!(ready[0].input, json!({"in": 1}));
        assert_eq!(ready[0].attempt, 1);
    }

    #[test]
    fn parallel_branches_are_ready_together_and_the_join_waits_for_both() {
        let graph = diamond();
        let mut progress = Progress::new(&graph);
        complete(&mut progress, &graph, "t", json!({"in": 1}));
        assert_eq!(ready_ids(&progress, &graph), vec!["a", "b"]);
        let a_input = &progress.ready(&graph, &json!({}))[0].input;
        assert_eq!(
            *a_input,
            json!({"in": 1}),
            "a single parent passes its output"
        );

        complete(&mut progress, &graph, "a", json!("A"));
        progress.set(graph.node_index("b").unwrap(), NodeState::Running);
        assert!(ready_ids(&progress, &graph).is_empty(), "c must wait for b");

        complete(&mut progress, &graph, "b", json!("B"));
        let ready = progress.ready(&graph, &json!({}));
        assert_eq!(ready.len(), 1);
        assert_eq!(ready[0].input, json!({"a": "A", "b": "B"}));

        complete(&mut progress, &graph, "c", json!("C"));
        assert!(progress.is_finished());
        assert_eq!(progress.output(&graph), json!("C"));
    }

    #[test]
    fn untaken_branches_are_skipped_and_skips_propagate() {
        let mut def = definition(
            &[
                ("t", "trigger"),
                ("if", "noop"),
                ("yes", "noop"),
                ("no", "noop"),
                ("no2", "noop"),
                ("join", "noop"),
            ],
            &[("t", "if"), ("yes", "join"), ("no", "no2"), ("no2", "join")],
        );
        for (to, branch) in [("yes", "true"), ("no", "false")] {
            def.edges.push(Edge {
                from: "if".into(),
                to: to.into(),
                branch: Some(branch.into()),
            });
        }
        let graph = graph(def);
        let mut progress = Progress::new(&graph);
        complete(&mut progress, &graph, "t", json!(1));
        progress.set(
            graph.node_index("if").unwrap(),
            NodeState::Completed {
                output: json!(2),
                branch: Some("true".into()),
            },
        );
        let skipped: Vec<&str> = progress
            .skip_untaken(&graph)
            .into_iter()
            .map(|i| graph.node(i).id.as_str())
            .collect();
        assert_eq!(skipped, vec!["no", "no2"]);
        assert_eq!(ready_ids(&progress, &graph), vec!["yes"]);

        complete(&mut progress, &graph, "yes", json!("Y"));
        let ready = progress.ready(&graph, &json!({}));
        assert_eq!(graph.node(ready[0].index).id, "join");
        assert_eq!(
            ready[0].input,
            json!({"yes": "Y"}),
            "only taken parents feed the join"
        );
        complete(&mut progress, &graph, "join", json!("J"));
        assert!(progress.is_finished());
    }

    #[test]
    fn a_node_with_no_taken_edge_in_is_skipped_even_as_a_join() {
        let mut def = definition(
            &[
                ("t", "trigger"),
                ("if", "noop"),
                ("a", "noop"),
                ("b", "noop"),
                ("j", "noop"),
            ],
            &[("t", "if"), ("a", "j"), ("b", "j")],
        );
        for to in ["a", "b"] {
            def.edges.push(Edge {
                from: "if".into(),
                to: to.into(),
                branch: Some("never".into()),
            });
        }
        let graph = graph(def);
        let mut progress = Progress::new(&graph);
        complete(&mut progress, &graph, "t", json!(1));
        complete(&mut progress, &graph, "if", json!(2));
        assert_eq!(progress.skip_untaken(&graph).len(), 3);
        assert!(progress.is_finished());
        assert_eq!(progress.output(&graph), Value::Null);
    }

    #[test]
    fn a_failed_node_due_for_retry_is_ready_with_the_next_attempt() {
        let graph = diamond();
        let mut progress = Progress::new(&graph);
        complete(&mut progress, &graph, "t", json!(1));
        progress.set(
            graph.node_index("a").unwrap(),
            NodeState::RetryDue { attempt: 2 },
        );
        let ready = progress.ready(&graph, &json!({}));
        let a = ready
            .iter()
            .find(|r| graph.node(r.index).id == "a")
            .unwrap();
        assert_eq!(a.attempt, 3);
        assert!(!progress.is_finished());
    }

    #[test]
    fn an_interrupted_attempt_runs_again_with_the_same_number() {
        let graph = diamond();
        let mut progress = Progress::new(&graph);
        complete(&mut progress, &graph, "t", json!(1));
        progress.set(
            graph.node_index("b").unwrap(),
            NodeState::Interrupted { attempt: 2 },
        );
        let ready = progress.ready(&graph, &json!({}));
        let b = ready
            .iter()
            .find(|r| graph.node(r.index).id == "b")
            .unwrap();
        assert_eq!(b.attempt, 2);
    }

    #[test]
    fn several_final_nodes_make_an_output_keyed_by_node() {
        let graph = graph(definition(
            &[("t", "trigger"), ("a", "noop"), ("b", "noop")],
            &[("t", "a"), ("t", "b")],
        ));
        let mut progress = Progress::new(&graph);
        complete(&mut progress, &graph, "t", json!(0));
        complete(&mut progress, &graph, "a", json!(1));
        complete(&mut progress, &graph, "b", json!(2));
        assert_eq!(progress.output(&graph), json!({"a": 1, "b": 2}));
    }
}
