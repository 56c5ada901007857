//! The state of one `map` node while its items run: which item runs next and with which
//! attempt, what each item's failure means, and the map's output. Pure decisions: the runner
//! spawns the attempts and records their runs.
//!
//! A map resumes from what was recorded: items with a completed run keep their output and
//! do not run again; the others run from their next attempt.

use std::time::Duration;

use serde_json::{Value, json};

use crate::execution::{ItemRun, NodeRunStatus};
use crate::graph::RetryPolicy;
use crate::node::{ErrorKind, MapRequest, OnItemFailure};

/// Where one item is.
#[derive(Debug, Clone, PartialEq)]
enum Item {
    /// Not running; `attempts` of it are recorded (all failed).
    Due { attempts: u32 },
    /// Attempt `attempt` is running (or waiting out its backoff).
    Running { attempt: u32 },
    /// Attempt `attempt` waits for its child execution, whose end comes as `signal`; it runs
    /// again (under the same attempt) when the execution is resumed.
    Parked { attempt: u32, signal: String },
    /// It completed with this output.
    Completed(Value),
    /// It failed for good with this error.
    Failed(String),
}

/// What the runner does after an item attempt ended.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum AfterItem {
    /// Start more items if there is room (none for a map that is done or failing).
    Continue,
    /// Run the item again as `attempt` after `delay`.
    Retry { attempt: u32, delay: Duration },
    /// The map fails for good with this error (policy `fail`): stop its other items.
    Fail(String),
}

/// One map node's items.
#[derive(Debug)]
pub(super) struct MapRun {
    pub(super) request: MapRequest,
    /// The item node's retry policy.
    policy: RetryPolicy,
    items: Vec<Item>,
    /// Items before this index are not due (running or done), so the search for the next
    /// one starts here.
    cursor: usize,
    running: usize,
    failed: bool,
}

impl MapRun {
    /// A map of `request`, resuming from the item runs `recorded` for it.
    pub(super) fn new(request: MapRequest, recorded: &[ItemRun]) -> Self {
        let policy = request.node.retry.clone().unwrap_or(RetryPolicy::NONE);
        let mut items = vec![Item::Due { attempts: 0 }; request.items.len()];
        for run in recorded {
            let Some(item) = items.get_mut(run.item as usize) else {
                continue;
            };
            match (&*item, run.status) {
                (Item::Completed(_), _) => {}
                (_, NodeRunStatus::Completed) => {
                    *item = Item::Completed(run.output.clone().unwrap_or(Value::Null));
                }
                (Item::Due { attempts }, _) => {
                    let attempts = (*attempts).max(run.attempt);
                    *item = if run.fatal || attempts >= policy.max_attempts {
                        Item::Failed(run.error.clone().unwrap_or_default())
                    } else {
                        Item::Due { attempts }
                    };
                }
                _ => {}
            }
        }
        let mut map = Self {
            request,
            policy,
            items,
            cursor: 0,
            running: 0,
            failed: false,
        };
        // An item that failed for good before a resume fails the map again.
        if map.request.on_item_failure == OnItemFailure::Fail
            && map.items.iter().any(|item| matches!(item, Item::Failed(_)))
        {
            map.failed = true;
        }
        map
    }

    /// How many items the map has.
    pub(super) fn len(&self) -> usize {
        self.items.len()
    }

    /// The first item that failed for good and its error, if the map fails.
    pub(super) fn failure(&self) -> Option<String> {
        if !self.failed {
            return None;
        }
        self.items
            .iter()
            .enumerate()
            .find_map(|(i, item)| match item {
                Item::Failed(error) => Some(item_error(i, error)),
                _ => None,
            })
    }

    /// The next item to start and its attempt, while fewer than `max_parallel` run and the
    /// map is not failing.
    pub(super) fn next(&mut self) -> Option<(u32, u32)> {
        if self.failed || self.running >= self.request.max_parallel.max(1) {
            return None;
        }
        while self.cursor < self.items.len() {
            let index = self.cursor;
            self.cursor += 1;
            if let Item::Due { attempts } = self.items[index] {
                let attempt = attempts + 1;
                self.items[index] = Item::Running { attempt };
                self.running += 1;
                return Some((u32::try_from(index).unwrap_or(u32::MAX), attempt));
            }
        }
        None
    }

    /// Item `item`'s attempt ended with `result`; `unit` is a random number in [0, 1) for
    /// the backoff's jitter.
    pub(super) fn finished(
        &mut self,
        item: u32,
        result: Result<Value, (ErrorKind, String, Option<Duration>)>,
        unit: f64,
    ) -> AfterItem {
        let index = item as usize;
        let Some(Item::Running { attempt }) = self.items.get(index).cloned() else {
            return AfterItem::Continue;
        };
        match result {
            Ok(output) => {
                self.running -= 1;
                self.items[index] = Item::Completed(output);
                AfterItem::Continue
            }
            Err((kind, _, retry_after))
                if kind == ErrorKind::Retryable
                    && attempt < self.policy.max_attempts
                    && !self.failed =>
            {
                let backoff = self.policy.jittered_backoff(attempt, unit);
                AfterItem::Retry {
                    attempt: attempt + 1,
                    delay: retry_after.map_or(backoff, |asked| asked.max(backoff)),
                }
            }
            Err((_, error, _)) => {
                self.running -= 1;
                let failure = item_error(index, &error);
                self.items[index] = Item::Failed(error);
                match self.request.on_item_failure {
                    OnItemFailure::Fail if !self.failed => {
                        self.failed = true;
                        AfterItem::Fail(failure)
                    }
                    _ => AfterItem::Continue,
                }
            }
        }
    }

    /// Item `item`'s attempt started a child execution and waits for `signal`: it keeps its
    /// place among the items running, and the execution parks once nothing else runs.
    pub(super) fn parked(&mut self, item: u32, signal: String) {
        if let Some(slot) = self.items.get_mut(item as usize)
            && let Item::Running { attempt } = *slot
        {
            *slot = Item::Parked { attempt, signal };
        }
    }

    /// The signals the parked items wait for.
    pub(super) fn parked_signals(&self) -> Vec<String> {
        self.items
            .iter()
            .filter_map(|item| match item {
                Item::Parked { signal, .. } => Some(signal.clone()),
                _ => None,
            })
            .collect()
    }

    /// Records that `item` runs again as `attempt` (after a [`AfterItem::Retry`]).
    pub(super) fn retrying(&mut self, item: u32, attempt: u32) {
        if let Some(slot) = self.items.get_mut(item as usize) {
            *slot = Item::Running { attempt };
        }
    }

    /// An item that was running will not finish here (the map failed and stopped it).
    pub(super) fn stopped(&mut self, item: u32) {
        if let Some(slot @ (Item::Running { .. } | Item::Parked { .. })) =
            self.items.get_mut(item as usize)
        {
            *slot = Item::Due { attempts: 0 };
            self.running -= 1;
        }
    }

    /// Whether every item completed or failed for good (for `collect`; a failing map is
    /// never done).
    pub(super) fn is_done(&self) -> bool {
        !self.failed
            && self
                .items
                .iter()
                .all(|item| matches!(item, Item::Completed(_) | Item::Failed(_)))
    }

    /// The map's output, once done: the outputs in the list's order, or with `collect` each
    /// item's result or error.
    pub(super) fn output(&self) -> Value {
        let collect = self.request.on_item_failure == OnItemFailure::Collect;
        Value::Array(
            self.items
                .iter()
                .map(|item| match (item, collect) {
                    (Item::Completed(output), false) => output.clone(),
                    (Item::Completed(output), true) => {
                        json!({"status": "completed", "output": output})
                    }
                    (Item::Failed(error), _) => json!({"status": "failed", "error": error}),
                    _ => Value::Null,
                })
                .collect(),
        )
    }
}

fn item_error(index: usize, error: &str) -> String {
    format!("item {index} failed: {error}")
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use serde_json::json;

    use super::*;
    use crate::execution::ExecutionId;
    use crate::graph::{NodeDefinition, OnFailure};

    fn request(items: usize, max_parallel: usize, attempts: u32) -> MapRequest {
        let mut request = MapRequest::new(
            (0..items).map(|i| json!(i)).collect(),
            NodeDefinition {
                id: "node".into(),
                node_type: "echo".into(),
                config: Value::Null,
                retry: Some(RetryPolicy {
                    max_attempts: attempts,
                    initial_backoff: Duration::from_secs(1),
                    multiplier: 2.0,
                    max_backoff: Duration::from_secs(60),
                    jitter: 0.0,
                    on_failure: OnFailure::Fail,
                }),
                timeout: None,
                rate_limit: None,
            },
        );
        request.max_parallel = max_parallel;
        request
    }

    fn run(item: u32, attempt: u32, status: NodeRunStatus, output: Option<Value>) -> ItemRun {
        ItemRun {
            execution_id: ExecutionId::new(),
            node_id: "each".into(),
            item,
            node_type: "echo".into(),
            attempt,
            status,
            input: None,
            output,
            error: (status != NodeRunStatus::Completed).then(|| "boom".to_owned()),
            fatal: false,
            worker_id: None,
            started_at: Utc::now(),
            finished_at: Utc::now(),
        }
    }

    fn retryable(error: &str) -> Result<Value, (ErrorKind, String, Option<Duration>)> {
        Err((ErrorKind::Retryable, error.to_owned(), None))
    }

    #[test]
    fn items_start_in_order_and_never_more_than_max_parallel_at_once() {
        let mut map = MapRun::new(request(5, 2, 1), &[]);
        assert_eq!(map.next(), Some((0, 1)));
        assert_eq!(map.next(), Some((1, 1)));
        assert_eq!(map.next(), None, "two run at once");
        assert_eq!(map.finished(1, Ok(json!("b")), 0.5), AfterItem::Continue);
        assert_eq!(map.next(), Some((2, 1)));
        for item in [0, 2] {
            map.finished(item, Ok(json!(item)), 0.5);
        }
        assert_eq!(map.next(), Some((3, 1)));
        assert_eq!(map.next(), Some((4, 1)));
        assert!(!map.is_done());
        map.finished(3, Ok(json!(3)), 0.5);
        map.finished(4, Ok(json!(4)), 0.5);
        assert!(map.is_done());
        assert_eq!(map.output(), json!([0, "b", 2, 3, 4]));
    }

    #[test]
    fn a_resumed_map_keeps_completed_items_and_counts_failed_attempts() {
        let recorded = [
            run(0, 1, NodeRunStatus::Completed, Some(json!("zero"))),
            run(1, 1, NodeRunStatus::Failed, None),
            run(1, 2, NodeRunStatus::TimedOut, None),
        ];
        let mut map = MapRun::new(request(3, 10, 3), &recorded);
        assert_eq!(
            map.next(),
            Some((1, 3)),
            "item 1 goes on with its third attempt"
        );
        assert_eq!(map.next(), Some((2, 1)));
        assert_eq!(map.next(), None);
        map.finished(1, Ok(json!("one")), 0.5);
        map.finished(2, Ok(json!("two")), 0.5);
        assert_eq!(map.output(), json!(["zero", "one", "two"]));
    }

    #[test]
    fn a_failing_item_is_retried_by_its_policy_then_fails_the_map() {
        let mut map = MapRun::new(request(3, 3, 2), &[]);
        for _ in 0..3 {
            map.next();
        }
        assert_eq!(
            map.finished(1, retryable("flaky"), 0.5),
            AfterItem::Retry {
                attempt: 2,
                delay: Duration::from_secs(1)
            }
        );
        map.retrying(1, 2);
        assert_eq!(
            map.finished(1, retryable("still"), 0.5),
            AfterItem::Fail("item 1 failed: still".into())
        );
        assert_eq!(map.failure().as_deref(), Some("item 1 failed: still"));
        assert_eq!(map.next(), None, "a failing map starts nothing");
        map.stopped(0);
        map.stopped(2);
        assert_eq!(map.running, 0);
        assert!(!map.is_done());
        // A fatal error does not retry; a Retry-After longer than the backoff is honoured.
        let mut fatal = MapRun::new(request(1, 1, 5), &[]);
        fatal.next();
        assert!(matches!(
            fatal.finished(0, Err((ErrorKind::Fatal, "bad".into(), None)), 0.5),
            AfterItem::Fail(_)
        ));
        let mut asked = MapRun::new(request(1, 1, 5), &[]);
        asked.next();
        assert_eq!(
            asked.finished(
                0,
                Err((
                    ErrorKind::Retryable,
                    "429".into(),
                    Some(Duration::from_secs(30))
                )),
                0.5
            ),
            AfterItem::Retry {
                attempt: 2,
                delay: Duration::from_secs(30)
            }
        );
    }

    #[test]
    fn a_parked_item_keeps_its_place_and_names_its_signal() {
        let mut map = MapRun::new(request(3, 2, 1), &[]);
        assert_eq!(map.next(), Some((0, 1)));
        assert_eq!(map.next(), Some((1, 1)));
        map.parked(0, "child:each[0]:1".into());
        assert_eq!(map.next(), None, "a parked item holds its place");
        assert_eq!(map.parked_signals(), vec!["child:each[0]:1".to_owned()]);
        map.finished(1, Ok(json!(1)), 0.5);
        assert_eq!(map.next(), Some((2, 1)));
        assert!(!map.is_done());
    }

    #[test]
    fn collect_runs_every_item_and_reports_each_result() {
        let mut req = request(3, 3, 1);
        req.on_item_failure = OnItemFailure::Collect;
        let mut map = MapRun::new(req, &[]);
        for _ in 0..3 {
            map.next();
        }
        map.finished(0, Ok(json!("a")), 0.5);
        assert_eq!(map.finished(1, retryable("nope"), 0.5), AfterItem::Continue);
        map.finished(2, Ok(json!("c")), 0.5);
        assert!(map.is_done());
        assert_eq!(
            map.output(),
            json!([
                {"status": "completed", "output": "a"},
                {"status": "failed", "error": "nope"},
                {"status": "completed", "output": "c"}
            ])
        );
    }

    #[test]
    fn an_item_that_failed_fatally_before_a_resume_is_not_run_again() {
        let mut fatal = run(1, 1, NodeRunStatus::Failed, None);
        fatal.fatal = true;
        let mut req = request(2, 2, 5);
        req.on_item_failure = OnItemFailure::Collect;
        let mut map = MapRun::new(req, &[fatal]);
        assert_eq!(map.next(), Some((0, 1)));
        assert_eq!(map.next(), None, "item 1 failed for good");
        map.finished(0, Ok(json!("a")), 0.5);
        assert!(map.is_done());
        assert_eq!(map.output()[1]["status"], "failed");
    }

    #[test]
    fn an_item_that_failed_for_good_before_a_resume_fails_the_map_at_once() {
        let recorded = [run(2, 1, NodeRunStatus::Failed, None)];
        let mut map = MapRun::new(request(3, 3, 1), &recorded);
        assert_eq!(map.failure().as_deref(), Some("item 2 failed: boom"));
        assert_eq!(map.next(), None);
    }
}
