//! One node attempt: calls the node's executor under its timeout, catching panics, and
//! reports how it ended as an [`Attempt`]. It knows nothing of stores.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use serde_json::Value;
use tracing::Instrument;

use super::{ErrorChain, panic_message};
use crate::node::{ErrorKind, NodeContext, NodeExecutor, NodeOutcome};

/// How one node attempt ended.
#[derive(Debug)]
pub(super) enum Attempt {
    /// The executor returned an outcome.
    Completed(NodeOutcome),
    /// The executor failed (or panicked: a retryable failure).
    Failed {
        /// Whether a retry may help.
        kind: ErrorKind,
        /// The error with its causes.
        error: String,
        /// The shortest wait before the next attempt the node asked for.
        retry_after: Option<Duration>,
    },
    /// It ran past its timeout and was stopped.
    TimedOut(Duration),
}

/// Runs `ctx`'s node with `executor` (none: the type is not registered here), within
/// `timeout`. On a timeout the node's cancellation token is cancelled, so a node that
/// spawned work (a process) stops it. An output over `output_limit` bytes of JSON fails the
/// attempt for good. Resolves to how it ended and how long it took.
pub(super) fn run(
    executor: Option<Arc<dyn NodeExecutor>>,
    ctx: NodeContext,
    timeout: Option<Duration>,
    output_limit: usize,
) -> impl Future<Output = (Attempt, Duration)> + Send + 'static {
    let span = tracing::Span::current();
    async move {
        let started = tokio::time::Instant::now();
        let node_cancel = ctx.cancellation.clone();
        let attempt = match executor {
            // Validation against this registry passed, so this cannot happen; fail safe.
            None => Attempt::Failed {
                kind: ErrorKind::Fatal,
                error: "node type is not registered".into(),
                retry_after: None,
            },
            Some(executor) => {
                let call = AssertUnwindSafe(executor.execute(ctx)).catch_unwind();
                let outcome = match timeout {
                    Some(limit) => tokio::time::timeout(limit, call).await.ok(),
                    None => Some(call.await),
                };
                match outcome {
                    None => {
                        node_cancel.cancel();
                        Attempt::TimedOut(timeout.unwrap_or_default())
                    }
                    Some(Ok(Ok(outcome))) => match output_of(&outcome) {
                        Some(output) if exceeds(output, output_limit) => Attempt::Failed {
                            kind: ErrorKind::Fatal,
                            retry_after: None,
                            error: format!(
                                "the node's output is larger than the node output limit of \
                                 {output_limit} bytes of JSON; hand large data to the next \
                                 node by reference (a URL or a storage key), not in the output"
                            ),
                        },
                        _ => Attempt::Completed(outcome),
                    },
                    Some(Ok(Err(err))) => Attempt::Failed {
                        kind: err.kind(),
                        error: ErrorChain(&err).to_string(),
                        retry_after: err.min_delay(),
                    },
                    Some(Err(panic)) => Attempt::Failed {
                        kind: ErrorKind::Retryable,
                        error: format!("node panicked: {}", panic_message(&*panic)),
                        retry_after: None,
                    },
                }
            }
        };
        (attempt, started.elapsed())
    }
    .instrument(span)
}

/// The output an outcome records, if it records one.
fn output_of(outcome: &NodeOutcome) -> Option<&Value> {
    match outcome {
        NodeOutcome::Complete { output, .. } | NodeOutcome::Signalled { output, .. } => {
            Some(output)
        }
        NodeOutcome::Wait { .. } | NodeOutcome::StartChild { .. } | NodeOutcome::Map(_) => None,
    }
}

/// Whether `value` takes more than `limit` bytes as JSON. Stops counting past the limit.
pub(super) fn exceeds(value: &Value, limit: usize) -> bool {
    /// Counts bytes, failing once past the limit so serialization stops there.
    struct Counter {
        left: usize,
    }

    impl std::io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.left = self
                .left
                .checked_sub(buf.len())
                .ok_or_else(|| std::io::Error::other("over the limit"))?;
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    serde_json::to_writer(&mut Counter { left: limit }, value).is_err()
}

#[cfg(test)]
mod tests {
    use async_trait::async_trait;
    use serde_json::json;

    use super::*;
    use crate::execution::{ExecutionId, WorkflowId};
    use crate::node::NodeError;

    struct Behaves(fn() -> Result<NodeOutcome, NodeError>);

    #[async_trait]
    impl NodeExecutor for Behaves {
        async fn execute(&self, _ctx: NodeContext) -> Result<NodeOutcome, NodeError> {
            (self.0)()
        }
    }

    /// Waits until cancelled, then says so.
    struct UntilCancelled(Arc<tokio::sync::Notify>);

    #[async_trait]
    impl NodeExecutor for UntilCancelled {
        async fn execute(&self, ctx: NodeContext) -> Result<NodeOutcome, NodeError> {
            let stopped = self.0.clone();
            tokio::spawn(async move {
                ctx.cancellation.cancelled().await;
                stopped.notify_one();
            });
            std::future::pending().await
        }
    }

    fn ctx() -> NodeContext {
        NodeContext::new(ExecutionId::new(), WorkflowId::new(), "n", "t", 1)
    }

    async fn attempt(executor: impl NodeExecutor, timeout: Option<Duration>) -> Attempt {
        run(Some(Arc::new(executor)), ctx(), timeout, 1 << 20)
            .await
            .0
    }

    #[tokio::test]
    async fn an_outcome_or_an_error_is_reported_with_its_kind_and_causes() {
        let done = attempt(Behaves(|| Ok(NodeOutcome::complete(json!(1)))), None).await;
        assert!(
            matches!(done, Attempt::Completed(NodeOutcome::Complete { .. })),
            "{done:?}"
        );
        let failed = attempt(
            Behaves(|| {
                let io = std::io::Error::other("disk full");
                Err(NodeError::fatal(io))
            }),
            None,
        )
        .await;
        match failed {
            Attempt::Failed { kind, error, .. } => {
                assert_eq!(kind, ErrorKind::Fatal);
                assert!(error.contains("disk full"), "{error}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_panicking_node_is_a_retryable_failure_naming_the_panic() {
        let panicked = attempt(Behaves(|| panic!("boom")), None).await;
        match panicked {
            Attempt::Failed { kind, error, .. } => {
                assert_eq!(kind, ErrorKind::Retryable);
                assert_eq!(error, "node panicked: boom");
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_node_past_its_timeout_is_stopped_and_cancelled() {
        let stopped = Arc::new(tokio::sync::Notify::new());
        let timed_out = attempt(
            UntilCancelled(stopped.clone()),
            Some(Duration::from_secs(3)),
        )
        .await;
        assert!(
            matches!(timed_out, Attempt::TimedOut(limit) if limit == Duration::from_secs(3)),
            "{timed_out:?}"
        );
        tokio::time::timeout(Duration::from_secs(60), stopped.notified())
            .await
            .expect("the node's cancellation token was cancelled");
    }

    #[tokio::test]
    async fn an_unregistered_type_fails_for_good() {
        let (attempt, _) = run(None, ctx(), None, 1 << 20).await;
        assert!(
            matches!(
                attempt,
                Attempt::Failed {
                    kind: ErrorKind::Fatal,
                    ..
                }
            ),
            "{attempt:?}"
        );
    }

    #[test]
    fn exceeds_counts_bytes_of_json() {
        let value = json!({"a": "xyz"});
        let bytes = serde_json::to_vec(&value).unwrap().len();
        assert!(!exceeds(&value, bytes));
        assert!(exceeds(&value, bytes - 1));
        assert!(
            exceeds(&json!("é".repeat(600)), 1024),
            "bytes, not characters"
        );
    }

    #[tokio::test]
    async fn an_output_over_the_limit_fails_for_good_naming_the_limit() {
        struct Big;

        #[async_trait]
        impl NodeExecutor for Big {
            async fn execute(&self, _ctx: NodeContext) -> Result<NodeOutcome, NodeError> {
                Ok(NodeOutcome::complete(json!({"blob": "x".repeat(5000)})))
            }
        }

        let (over, _) = run(Some(Arc::new(Big)), ctx(), None, 4096).await;
        match over {
            Attempt::Failed { kind, error, .. } => {
                assert_eq!(kind, ErrorKind::Fatal);
                assert!(
                    error.contains("larger than the node output limit of 4096 bytes"),
                    "{error}"
                );
            }
            other => panic!("{other:?}"),
        }
        let (under, _) = run(Some(Arc::new(Big)), ctx(), None, 8192).await;
        assert!(matches!(under, Attempt::Completed(_)), "{under:?}");
    }
}
