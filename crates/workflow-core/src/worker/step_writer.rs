//! [`StepWriter`]: records the steps of every execution a worker runs, batching them.
//!
//! The batching policy lives here and only here: a step is sent to one background task,
//! which hands the store every step waiting (up to [`MAX_STEP_BATCH`]) in one
//! [`Store::record_steps`] call. While one batch is written the next gathers, so under load
//! many executions share one commit, and alone a step is written at once.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use tokio::sync::{mpsc, oneshot};
use tracing::error;

use super::panic_message;
use crate::store::{RecordStep, Store, StoreError};

/// The most steps recorded in one call.
pub(super) const MAX_STEP_BATCH: usize = 128;

/// What records a batch: the store's [`Store::record_steps`], one result per step in order.
pub(super) type Record = Arc<
    dyn for<'a> Fn(&'a [RecordStep]) -> BoxFuture<'a, Vec<Result<(), StoreError>>> + Send + Sync,
>;

/// A step with where to send it back with its result.
type Request = (RecordStep, oneshot::Sender<Recorded>);
/// A step handed back with its result.
pub(super) type Recorded = (RecordStep, Result<(), StoreError>);

/// A handle to the background task recording steps; cloned into every execution.
#[derive(Debug, Clone)]
pub(super) struct StepWriter(mpsc::UnboundedSender<Request>);

impl StepWriter {
    /// Starts the task recording steps into `store`; it ends when every handle is dropped.
    pub(super) fn spawn(store: Arc<dyn Store>) -> Self {
        Self::spawn_with(Arc::new(move |steps| {
            let store = store.clone();
            async move { store.record_steps(steps).await }.boxed()
        }))
    }

    pub(super) fn spawn_with(record: Record) -> Self {
        let (sender, queue) = mpsc::unbounded_channel();
        tokio::spawn(write_batches(record, queue));
        Self(sender)
    }

    /// Records one step (in whatever batch it lands in) and hands it back with the result.
    /// `Err` only if the task is gone: it panicked, or the runtime is shutting down.
    pub(super) async fn record(&self, step: RecordStep) -> Result<Recorded, StoreError> {
        let stopped =
            || StoreError::Backend("the step writer stopped before recording the step".into());
        let (reply, answer) = oneshot::channel();
        self.0.send((step, reply)).map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())
    }
}

async fn write_batches(record: Record, mut queue: mpsc::UnboundedReceiver<Request>) {
    let mut requests = Vec::with_capacity(MAX_STEP_BATCH);
    while queue.recv_many(&mut requests, MAX_STEP_BATCH).await > 0 {
        let (steps, replies): (Vec<_>, Vec<_>) = requests.drain(..).unzip();
        // A store that panics or answers for fewer steps than it was given fails those steps
        // (their executions resume when their leases expire), never the writer.
        let results = match AssertUnwindSafe(record(&steps)).catch_unwind().await {
            Ok(results) => results,
            Err(panic) => {
                error!(error = %panic_message(&*panic), "recording steps panicked");
                Vec::new()
            }
        };
        let mut results = results.into_iter();
        for (step, reply) in steps.into_iter().zip(replies) {
            let result = results.next().unwrap_or_else(|| {
                Err(StoreError::Backend(
                    "the store returned no result for this step".into(),
                ))
            });
            // The execution's task may be gone (aborted at shutdown): nobody to tell.
            let _ = reply.send((step, result));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use super::*;
    use crate::execution::ExecutionId;
    use crate::store::Advance;

    fn step() -> RecordStep {
        RecordStep {
            execution_id: ExecutionId::new(),
            lease_token: 1,
            worker_id: "w".into(),
            runs: Vec::new(),
            advance: Advance::Release,
        }
    }

    /// A recorder that holds the first batch until `release` and records the sizes of all.
    fn gated(sizes: Arc<Mutex<Vec<usize>>>, release: Arc<tokio::sync::Notify>) -> Record {
        Arc::new(move |steps: &[RecordStep]| {
            let (sizes, release) = (sizes.clone(), release.clone());
            async move {
                let first = {
                    let mut sizes = sizes.lock().unwrap();
                    sizes.push(steps.len());
                    sizes.len() == 1
                };
                if first {
                    release.notified().await;
                }
                steps.iter().map(|_| Ok(())).collect()
            }
            .boxed()
        })
    }

    #[tokio::test(start_paused = true)]
    async fn steps_arriving_while_a_batch_is_written_go_together_in_the_next() {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let release = Arc::new(tokio::sync::Notify::new());
        let writer = StepWriter::spawn_with(gated(sizes.clone(), release.clone()));
        let first = tokio::spawn({
            let writer = writer.clone();
            async move { writer.record(step()).await }
        });
        while sizes.lock().unwrap().is_empty() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let later: Vec<_> = (0..3)
            .map(|_| {
                let writer = writer.clone();
                tokio::spawn(async move { writer.record(step()).await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(10)).await;
        release.notify_one();
        assert!(first.await.unwrap().unwrap().1.is_ok());
        for task in later {
            assert!(task.await.unwrap().unwrap().1.is_ok());
        }
        assert_eq!(*sizes.lock().unwrap(), vec![1, 3]);
    }

    #[tokio::test]
    async fn a_store_answering_for_fewer_steps_fails_the_rest_and_a_panic_fails_all() {
        let short: Record = Arc::new(|_steps: &[RecordStep]| async move { vec![Ok(())] }.boxed());
        let writer = StepWriter::spawn_with(short);
        // On this single-threaded runtime both are queued before the writer runs: one batch.
        let (a, b) = tokio::join!(writer.record(step()), writer.record(step()));
        assert!(a.unwrap().1.is_ok());
        let err = b.unwrap().1.unwrap_err();
        assert!(
            format!("{:?}", err).contains("the store returned no result for this step"),
            "{err:?}"
        );

        let panics: Record =
            Arc::new(|_steps: &[RecordStep]| async move { panic!("store bug") }.boxed());
        let writer = StepWriter::spawn_with(panics);
        let (step, result) = writer.record(step()).await.unwrap();
        assert!(result.is_err());
        assert_eq!(step.lease_token, 1, "the step is handed back");
        // The writer survives its store's panic.
        assert!(writer.record(step).await.unwrap().1.is_err());
    }
}
