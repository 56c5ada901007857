//! [`StepWriter`]: records the steps of every execution a worker runs, batching them.
//!
//! The batching policy lives here and only here: a step is sent to [`WRITERS`] background
//! tasks taking turns, each handing the store every step waiting (up to [`MAX_STEP_BATCH`]) in
//! one [`Store::record_steps`] call. While the batches in flight are written the next gathers,
//! so under load many executions share one commit, and alone a step is written at once.
//!
//! Two batches in flight rather than one: a step that arrives while a batch is written need
//! not wait for that batch's commit before its own starts, which is most of what an execution
//! of several nodes waits for between them (three-node chains: 6,000 to 9,200 node runs/s at
//! concurrency 10, 11,600 to 16,400 at 32). Four were slower than two: the database has two
//! cores. Batches in flight hold distinct executions (an execution waits for its step before
//! its next) and lock their rows in id order; the rows their triggers touch (a parent its
//! child's end updates) can still make two deadlock, and the database then rolls one back:
//! that is a transient error, and its steps are written again.
//!
//! Executions made runnable by one event (a claim, the answers to the previous batch) reach
//! their writes one after another, so the writer yields once before it cuts a batch: those
//! already runnable join it rather than trickle into the next ones. A last write frees its
//! execution's slot (a [`Freed`]) as soon as it is queued: the execution runs no more nodes,
//! so the next one (from the worker's local queue) starts while the write gathers with
//! others, and under load batches grow to what the worker gets through meanwhile.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use tokio::sync::{mpsc, oneshot};
use tracing::error;

use super::panic_message;
use super::slots::Freed;
use crate::store::{RecordStep, StepRecorded, Store, StoreError};

/// The most steps recorded in one call.
pub(super) const MAX_STEP_BATCH: usize = 512;

/// The most batches written at once.
const WRITERS: usize = 2;

/// What records a batch: the store's [`Store::record_steps`], one result per step in order.
pub(super) type Record = Arc<
    dyn for<'a> Fn(&'a [RecordStep]) -> BoxFuture<'a, Vec<Result<StepRecorded, StoreError>>>
        + Send
        + Sync,
>;

/// A step with where to send it back with its result.
struct Request {
    step: RecordStep,
    reply: oneshot::Sender<Recorded>,
}
/// A step handed back with its result.
pub(super) type Recorded = (RecordStep, Result<StepRecorded, StoreError>);

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

    /// [`spawn`](Self::spawn) with `record` in place of the store.
    pub(super) fn spawn_with(record: Record) -> Self {
        let (sender, queue) = mpsc::unbounded_channel();
        let queue = Arc::new(tokio::sync::Mutex::new(queue));
        for _ in 0..WRITERS {
            tokio::spawn(write_batches(record.clone(), queue.clone()));
        }
        Self(sender)
    }

    /// Records one step (in whatever batch it lands in) and hands it back with the result;
    /// `freed` is dropped once the step is queued. `Err` only if the task is gone: it
    /// panicked, or the runtime is shutting down.
    pub(super) async fn record(
        &self,
        step: RecordStep,
        freed: Option<Freed>,
    ) -> Result<Recorded, StoreError> {
        let stopped =
            || StoreError::Backend("the step writer stopped before recording the step".into());
        let (reply, answer) = oneshot::channel();
        let request = Request { step, reply };
        self.0.send(request).map_err(|_| stopped())?;
        // The execution runs no more nodes and its write is on its way: its slot is free.
        drop(freed);
        answer.await.map_err(|_| stopped())
    }
}

/// One of the tasks writing batches: it takes the queue, gathers a batch, and leaves the queue
/// to the next task while it writes.
async fn write_batches(
    record: Record,
    queue: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<Request>>>,
) {
    let mut requests = Vec::with_capacity(MAX_STEP_BATCH);
    loop {
        {
            let mut queue = queue.lock().await;
            if queue.recv_many(&mut requests, MAX_STEP_BATCH).await == 0 {
                return;
            }
            gather(&mut queue, &mut requests).await;
        }
        let mut steps = Vec::with_capacity(requests.len());
        let mut replies = Vec::with_capacity(requests.len());
        for request in requests.drain(..) {
            steps.push(request.step);
            replies.push(request.reply);
        }
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

/// Yields once, then adds to `requests` (up to [`MAX_STEP_BATCH`]) the steps sent meanwhile:
/// those of executions that were runnable already.
async fn gather(queue: &mut mpsc::UnboundedReceiver<Request>, requests: &mut Vec<Request>) {
    if requests.len() >= MAX_STEP_BATCH {
        return;
    }
    tokio::task::yield_now().await;
    while requests.len() < MAX_STEP_BATCH {
        match queue.try_recv() {
            Ok(request) => requests.push(request),
            Err(_) => break,
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
            lease_token: crate::LeaseToken(1),
            worker_id: "w".into(),
            runs: Vec::new(),
            advance: Advance::Release,
        }
    }

    /// A recorder that holds the first `held` batches until `release` and records the sizes
    /// of all.
    fn gated(
        held: usize,
        sizes: Arc<Mutex<Vec<usize>>>,
        release: Arc<tokio::sync::Semaphore>,
    ) -> Record {
        Arc::new(move |steps: &[RecordStep]| {
            let (sizes, release) = (sizes.clone(), release.clone());
            async move {
                let gated = {
                    let mut sizes = sizes.lock().unwrap();
                    sizes.push(steps.len());
                    sizes.len() <= held
                };
                if gated {
                    release.acquire().await.unwrap().forget();
                }
                steps.iter().map(|_| Ok(StepRecorded::default())).collect()
            }
            .boxed()
        })
    }

    #[tokio::test(start_paused = true)]
    async fn steps_arriving_while_batches_are_written_go_together_in_the_next() {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let release = Arc::new(tokio::sync::Semaphore::new(0));
        let writer = StepWriter::spawn_with(gated(WRITERS, sizes.clone(), release.clone()));
        // One step after another: each goes at once, in a batch of its own, while a writer
        // is free.
        let mut first = Vec::new();
        for written in 1..=WRITERS {
            first.push(tokio::spawn({
                let writer = writer.clone();
                async move { writer.record(step(), None).await }
            }));
            let waiting = tokio::time::Instant::now();
            while sizes.lock().unwrap().len() < written {
                assert!(
                    waiting.elapsed() < Duration::from_secs(1),
                    "step {written} waits for the batches in flight"
                );
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        let later: Vec<_> = (0..3)
            .map(|_| {
                let writer = writer.clone();
                tokio::spawn(async move { writer.record(step(), None).await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(
            sizes.lock().unwrap().len(),
            WRITERS,
            "no third batch in flight"
        );
        release.add_permits(WRITERS);
        for task in first.into_iter().chain(later) {
            assert!(task.await.unwrap().unwrap().1.is_ok());
        }
        let mut expected = vec![1; WRITERS];
        expected.push(3);
        assert_eq!(*sizes.lock().unwrap(), expected);
    }

    /// A recorder that records the sizes of its batches.
    fn sizing(sizes: Arc<Mutex<Vec<usize>>>) -> Record {
        Arc::new(move |steps: &[RecordStep]| {
            sizes.lock().unwrap().push(steps.len());
            async move { steps.iter().map(|_| Ok(StepRecorded::default())).collect() }.boxed()
        })
    }

    #[tokio::test]
    async fn a_step_made_ready_with_the_first_joins_its_batch() {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let writer = StepWriter::spawn_with(sizing(sizes.clone()));
        let (go, ready) = oneshot::channel::<()>();
        let second = tokio::spawn({
            let writer = writer.clone();
            async move {
                ready.await.unwrap();
                writer.record(step(), None).await
            }
        });
        // The second waits for `go`.
        tokio::task::yield_now().await;
        // The first step wakes the writer; `go` then makes the second runnable after it (this
        // runtime runs tasks in the order they were woken): without the writer's yield, the
        // second would go alone in a batch of its own.
        let (reply, answer) = oneshot::channel();
        let first = Request {
            step: step(),
            reply,
        };
        writer.0.send(first).unwrap();
        go.send(()).unwrap();
        assert!(answer.await.unwrap().1.is_ok());
        assert!(second.await.unwrap().unwrap().1.is_ok());
        assert_eq!(*sizes.lock().unwrap(), vec![2]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_last_write_frees_its_slot_once_queued() {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let release = Arc::new(tokio::sync::Semaphore::new(0));
        let writer = StepWriter::spawn_with(gated(1, sizes.clone(), release.clone()));
        let slots = super::super::slots::Slots::new(1, 1, Default::default());
        let mut slot = slots.take(1).remove(0);
        let freed = slot.finishing();
        assert!(freed.is_some());
        assert_eq!(slots.free(), 0, "not before the step is queued");
        let recording = tokio::spawn({
            let writer = writer.clone();
            async move { writer.record(step(), freed).await }
        });
        while slots.free() == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert!(!recording.is_finished(), "free while the step is written");
        release.add_permits(1);
        assert!(recording.await.unwrap().unwrap().1.is_ok());
    }

    #[tokio::test]
    async fn a_store_answering_for_fewer_steps_fails_the_rest_and_a_panic_fails_all() {
        let short: Record = Arc::new(|_steps: &[RecordStep]| {
            async move { vec![Ok(StepRecorded::default())] }.boxed()
        });
        let writer = StepWriter::spawn_with(short);
        // On this single-threaded runtime both are queued before the writer runs: one batch.
        let (a, b) = tokio::join!(writer.record(step(), None), writer.record(step(), None));
        assert!(a.unwrap().1.is_ok());
        let err = b.unwrap().1.unwrap_err();
        assert!(
            format!("{:?}", err).contains("the store returned no result for this step"),
            "{err:?}"
        );

        let panics: Record =
            Arc::new(|_steps: &[RecordStep]| async move { panic!("store bug") }.boxed());
        let writer = StepWriter::spawn_with(panics);
        let (step, result) = writer.record(step(), None).await.unwrap();
        assert!(result.is_err());
        assert_eq!(
            step.lease_token,
            crate::LeaseToken(1),
            "the step is handed back"
        );
        // The writer survives its store's panic.
        assert!(writer.record(step, None).await.unwrap().1.is_err());
    }
}
