//! Flow control a workflow definition asks for: its default priority, its concurrency
//! limit, per workflow or per key, and the rate limits its nodes start under.
//!
//! ```json
//! {"name": "sync_customer", "priority": 5,
//!  "concurrency": {"limit": 2, "key": "customer.id"},
//!  "rate_limits": {"crm_api": {"limit": 10, "period": 1, "node_types": ["http"]}},
//!  "nodes": [...], "edges": [...]}
//! ```
//!
//! - `priority`: executions started without one get it (else 0). Higher runs first; an
//!   execution runnable for longer than the worker's priority ageing period
//!   ([`DEFAULT_PRIORITY_AGEING`]) is raised to the highest priority waiting, so none waits
//!   forever behind newer, higher work.
//! - `concurrency.limit`: at most that many executions of the workflow run at once (hold a
//!   lease), across every worker; with `key`, at most that many per value of `key`, a
//!   dot-separated path into the execution's input (numbers index arrays, as the `condition`
//!   node's `path`). A start may give the key itself
//!   ([`StartExecutionParams::concurrency_key`](crate::StartExecutionParams::concurrency_key)).
//!   Executions waiting for a signal or a retry hold no place.
//! - `concurrency.key` without `limit`: no cap, but fair dequeue across the key's values: at
//!   most [`FAIR_WINDOW`] executions of one value wait to be claimed at a time, so a value
//!   with 100,000 executions does not hold back one with 10.
//!
//! - `rate_limits`: named limits on how often nodes start: at most `limit` starts in any
//!   `period` (seconds), per value of `key` when set (a path into the execution's input,
//!   as `concurrency.key`). Every node whose type is in `node_types` starts under the limit,
//!   and so does any node that names it (`"rate_limit": "crm_api"`). A node that would
//!   exceed it does not start: its execution waits, holding no slot, until the oldest
//!   start in the window is `period` old, then tries again. The starts are counted per
//!   name (and key) across every workflow and worker: workflows that name the same limit
//!   share it, each start checked against its own workflow's numbers.
//!
//! The stores enforce all of it in the database (docs/ARCHITECTURE.md, "Flow control"): the
//! limits hold however many workers run.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How many executions of one concurrency key may wait to be claimed at a time when the
/// workflow sets a key without a limit (fair dequeue); the others are held until those are
/// claimed, and each one let go joins the back of the queue.
pub const FAIR_WINDOW: u32 = 10;

/// The priority ageing period the worker uses unless told otherwise: an execution runnable
/// for longer is raised to the highest priority among the executions waiting.
pub const DEFAULT_PRIORITY_AGEING: Duration = Duration::from_secs(300);

/// The longest concurrency key, in characters (the schema's limit too).
pub const MAX_CONCURRENCY_KEY_CHARS: usize = 512;

/// A workflow's `concurrency`: a limit on its running executions, per workflow or per key,
/// or fair dequeue across keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Concurrency {
    /// At most this many executions run at once (per key value, with `key`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 2_147_483_647))]
    pub limit: Option<u32>,
    /// A dot-separated path into the execution input whose value is the key (`customer.id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

impl Concurrency {
    /// What is wrong with it, if anything.
    pub fn problem(&self) -> Option<String> {
        match (self.limit, &self.key) {
            (None, None) => Some("needs a limit, a key, or both".into()),
            (Some(limit), _) if limit == 0 || i32::try_from(limit).is_err() => {
                Some(format!("limit must be from 1 to {}, not {limit}", i32::MAX))
            }
            (_, Some(key)) => path_problem(key),
            _ => None,
        }
    }
}

/// A named rate limit of a workflow definition (`rate_limits`): at most `limit` node starts
/// in any `period`, per value of `key` when set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// At most this many starts in any period (per key value, with `key`).
    #[schemars(range(min = 1, max = 100_000))]
    pub limit: u32,
    /// The period, in seconds in JSON.
    #[serde(with = "crate::graph::seconds")]
    #[schemars(with = "f64", range(min = 0.001, max = 86_400))]
    pub period: Duration,
    /// A dot-separated path into the execution input whose value is the key (`customer.id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Every node of these types in the workflow starts under this limit.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub node_types: Vec<String>,
}

/// The most starts a rate limit may allow per period: the store keeps the time of each
/// start in the window.
pub const MAX_RATE_LIMIT: u32 = 100_000;

/// The longest rate limit period.
pub const MAX_RATE_PERIOD: Duration = Duration::from_secs(86_400);

impl RateLimit {
    /// What is wrong with it, if anything.
    pub fn problem(&self) -> Option<String> {
        if self.limit == 0 || self.limit > MAX_RATE_LIMIT {
            return Some(format!(
                "limit must be from 1 to {MAX_RATE_LIMIT}, not {}",
                self.limit
            ));
        }
        if self.period < Duration::from_millis(1) || self.period > MAX_RATE_PERIOD {
            return Some(format!(
                "period must be from 0.001 to {} seconds, not {}",
                MAX_RATE_PERIOD.as_secs(),
                self.period.as_secs_f64()
            ));
        }
        self.key.as_deref().and_then(path_problem)
    }

    /// The key of a node start in an execution whose input is `input`: the value at `key`
    /// (a string as it is, anything else as JSON), `""` without a key; or why there is none.
    pub fn key_in(&self, input: &serde_json::Value) -> Result<String, String> {
        let Some(path) = &self.key else {
            return Ok(String::new());
        };
        let value = crate::node::condition::lookup(input, path)
            .filter(|value| !value.is_null())
            .ok_or_else(|| format!("its key path \"{path}\" is not in the execution input"))?;
        let key = match value {
            serde_json::Value::String(text) => text.clone(),
            other => other.to_string(),
        };
        let chars = key.chars().count();
        if chars > MAX_CONCURRENCY_KEY_CHARS {
            return Err(format!(
                "its key is {chars} characters; at most {MAX_CONCURRENCY_KEY_CHARS}"
            ));
        }
        Ok(key)
    }
}

/// What is wrong with a key path, if anything.
fn path_problem(key: &str) -> Option<String> {
    if key.split('.').any(str::is_empty) {
        Some(format!(
            "key \"{key}\" must be a dot-separated path with no empty segment"
        ))
    } else if key.contains(['"', '[', ']']) {
        Some(format!(
            "key \"{key}\" must be a dot-separated path of names and indexes, without \", [ or ]"
        ))
    } else {
        None
    }
}

/// One node start asked of a rate limit ([`Store::take_rate`](crate::Store::take_rate)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateRequest {
    /// The limit's name.
    pub name: String,
    /// The key value (`""` for a limit without a key).
    pub key: String,
    /// At most this many starts...
    pub limit: u32,
    /// ...in any period this long.
    pub period: Duration,
}

/// Checks a concurrency key's length.
pub fn check_concurrency_key(key: &str) -> Result<(), String> {
    let chars = key.chars().count();
    if chars > MAX_CONCURRENCY_KEY_CHARS {
        return Err(format!(
            "concurrency key is {chars} characters; at most {MAX_CONCURRENCY_KEY_CHARS}"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn concurrency(value: Value) -> Concurrency {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn a_concurrency_setting_needs_a_limit_or_a_key_and_well_formed_ones() {
        assert_eq!(concurrency(json!({"limit": 2})).problem(), None);
        assert_eq!(concurrency(json!({"key": "a.b"})).problem(), None);
        assert_eq!(
            concurrency(json!({})).problem().as_deref(),
            Some("needs a limit, a key, or both")
        );
        assert_eq!(
            concurrency(json!({"limit": 0})).problem().as_deref(),
            Some("limit must be from 1 to 2147483647, not 0")
        );
        assert!(
            concurrency(json!({"limit": 3_000_000_000_u64}))
                .problem()
                .unwrap()
                .contains("not 3000000000")
        );
        assert_eq!(
            concurrency(json!({"limit": 1, "key": "a..b"}))
                .problem()
                .as_deref(),
            Some("key \"a..b\" must be a dot-separated path with no empty segment")
        );
        assert!(
            concurrency(json!({"key": "lines[0]"}))
                .problem()
                .unwrap()
                .contains("without")
        );
        let unknown = serde_json::from_value::<Concurrency>(json!({"limit": 1, "per": "x"}));
        assert!(
            unknown
                .unwrap_err()
                .to_string()
                .contains("unknown field `per`")
        );
    }
}
