//! [`Writer`]: every write made for one claimed execution, fenced by its lease token.
//!
//! Node runs gather in the writer and go out with the next step: a flush keeps the execution
//! running, and one last write ends the claim (completes, fails, parks, waits,
//! pauses, times out or releases it). Steps go through the worker's [`StepWriter`], which batches
//! them with other executions'.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;
use tracing::{error, info, warn};

use super::ErrorChain;
use super::decide::from_running;
use super::leases::Leases;
use super::slots::{Freed, Slot};
use super::step_writer::StepWriter;
use crate::execution::{ExecutionId, LeaseToken, NodeRunStatus};
use crate::metrics;
use crate::state::ExecutionStatus;
use crate::store::{Advance, NewNodeRun, RecordStep, StepRecorded, StoreError};

/// How an execution's task ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ended {
    /// The execution ended, or was parked (for a retry, a signal or a timer).
    Finished,
    /// The worker is shutting down and released it for another worker.
    Released,
    /// The task stopped without ending it: lease lost or store unreachable.
    Dropped,
}

/// Why an execution's task stopped without ending the execution.
#[derive(Debug)]
pub(super) enum Interrupted {
    /// Another worker claimed it since, or it was cancelled or timed out.
    LeaseLost,
    /// The store failed past retrying.
    Store(StoreError),
}

impl From<StoreError> for Interrupted {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::LeaseLost { .. } => Self::LeaseLost,
            other => Self::Store(other),
        }
    }
}

/// The writes of one claim.
pub(super) struct Writer {
    fence: Fence,
    execution_id: ExecutionId,
    /// The execution's workflow name, for metrics.
    workflow: String,
    lease_token: LeaseToken,
    /// Given back for the next claim when the last write starts.
    slot: Slot,
    /// Node runs not yet recorded; they go out with the next write.
    pending: Vec<Pending>,
    /// Whether a replayable node's run may wait for a later write than the next flush: not
    /// in a claim that rescued the execution, which records what it finds before going on.
    defer_replayable: bool,
}

/// A node run waiting for the next write.
struct Pending {
    run: NewNodeRun,
    /// When the attempt ended.
    ended: Instant,
    /// Whether it must be recorded before another node starts: a real result (not an
    /// unfinished attempt, nor a replayable node's).
    progress: bool,
}

/// Who writes, for every [`Writer`] of a worker.
#[derive(Clone)]
pub(super) struct Fence {
    pub(super) steps: StepWriter,
    pub(super) leases: Arc<Leases>,
    pub(super) worker_id: Arc<str>,
    pub(super) lease_duration: Duration,
}

impl Writer {
    /// The writer of the claim of `execution_id` with `lease_token`, holding `slot`.
    pub(super) fn new(
        fence: &Fence,
        execution_id: ExecutionId,
        lease_token: LeaseToken,
        workflow: &str,
        slot: Slot,
    ) -> Self {
        Self {
            fence: fence.clone(),
            execution_id,
            workflow: workflow.to_owned(),
            lease_token,
            slot,
            pending: Vec::new(),
            defer_replayable: true,
        }
    }

    /// Records the runs of replayable nodes with the next flush, like any other: for a claim
    /// that rescued the execution.
    pub(super) fn no_deferred_runs(&mut self) {
        self.defer_replayable = false;
    }

    /// Adds a node run to the next write.
    pub(super) fn push(&mut self, run: NewNodeRun) {
        let progress = !matches!(
            run.status,
            NodeRunStatus::Abandoned | NodeRunStatus::Interrupted
        );
        self.pending.push(Pending {
            run,
            ended: Instant::now(),
            progress,
        });
    }

    /// Adds the completed run of a replayable node ([`crate::NodeExecutor::replayable`]):
    /// unless the claim rescued the execution, no flush needs to write it, and it goes out
    /// with the next write made for another reason.
    pub(super) fn push_replayable(&mut self, run: NewNodeRun) {
        let progress = !self.defer_replayable;
        self.pending.push(Pending {
            run,
            ended: Instant::now(),
            progress,
        });
    }

    /// The node runs not yet recorded.
    pub(super) fn pending(&self) -> impl Iterator<Item = &NewNodeRun> {
        self.pending.iter().map(|pending| &pending.run)
    }

    /// Writes pending runs with `advance`. While the store is unreachable the write is
    /// retried with backoff for up to a lease duration: the lease is still ours meanwhile,
    /// and fencing makes a retry safe. If an attempt committed but its answer was lost, the
    /// retry finds its runs already recorded, which is success.
    async fn write(&mut self, advance: Advance) -> Result<StepRecorded, Interrupted> {
        self.write_freeing(advance, None).await
    }

    /// [`write`](Self::write), freeing the slot given up in `freed` when the step goes to the
    /// store.
    async fn write_freeing(
        &mut self,
        advance: Advance,
        mut freed: Option<Freed>,
    ) -> Result<StepRecorded, Interrupted> {
        let mut step = RecordStep {
            execution_id: self.execution_id,
            lease_token: self.lease_token,
            worker_id: self.fence.worker_id.to_string(),
            runs: self.take_pending(),
            advance,
        };
        let give_up = Instant::now() + self.fence.lease_duration;
        let mut backoff = Duration::from_millis(100);
        let mut retried = false;
        loop {
            let (returned, result) = self.fence.steps.record(step, freed.take()).await?;
            step = returned;
            match result {
                Ok(recorded) => return Ok(recorded),
                // An earlier attempt committed: its runs (and signals) are recorded. A pause
                // asked meanwhile is heard at the next step.
                Err(StoreError::AlreadyRecorded { .. } | StoreError::SignalConsumed { .. })
                    if retried =>
                {
                    return Ok(StepRecorded::default());
                }
                Err(StoreError::Unavailable(err)) if Instant::now() + backoff < give_up => {
                    warn!(error = %ErrorChain(&*err), retry_in = ?backoff, "recording a step failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    retried = true;
                }
                Err(err) => return Err(err.into()),
            }
        }
    }

    /// The pending runs for a write, each with how long ago it ended.
    fn take_pending(&mut self) -> Vec<NewNodeRun> {
        let now = Instant::now();
        self.pending
            .drain(..)
            .map(|pending| NewNodeRun {
                ended_ago: now.saturating_duration_since(pending.ended),
                ..pending.run
            })
            .collect()
    }

    /// Records pending node runs, keeping the execution running, and says whether a pause is
    /// asked of it; called before nodes start. Writes nothing unless a run is progress:
    /// records of unfinished attempts wait for a real result, so they never count as
    /// progress, and a replayable node's run waits for the next write.
    ///
    ///
    /// With no node of the execution running (`idle` is `Some`), the write may lend the
    /// execution's slot to one claimed ahead ([`Slot::lend`]) and wait for a slot again
    /// after it, or until the future in `idle` (shutdown, a lost lease) completes.
    pub(super) async fn flush(
        &mut self,
        idle: Option<impl Future<Output = ()>>,
    ) -> Result<StepRecorded, Interrupted> {
        if !self.pending.iter().any(|pending| pending.progress) {
            return Ok(StepRecorded::default());
        }
        let advance = Advance::Continue {
            lease_duration: self.fence.lease_duration,
        };
        let Some((lent, until)) = idle.and_then(|until| Some((self.slot.lend()?, until))) else {
            return self.write(advance).await;
        };
        let recorded = self.write_freeing(advance, Some(lent.freed)).await?;
        self.slot.take_back(lent.running, lent.held, until).await;
        Ok(recorded)
    }

    /// The last write of this claim. The heartbeat stops renewing the lease first, so it
    /// cannot mistake the released lease for a lost one, and the slot goes to the next
    /// claim as the write goes to the store: this execution runs no more nodes.
    async fn last_write(&mut self, advance: Advance) -> Result<(), Interrupted> {
        self.fence
            .leases
            .forget(self.execution_id, self.lease_token);
        let freed = self.slot.finishing();
        self.write_freeing(advance, freed).await.map(drop)
    }

    /// Completes the execution with `output`.
    pub(super) async fn complete(&mut self, output: Value) -> Result<Ended, Interrupted> {
        let status = from_running(ExecutionStatus::Completed);
        self.last_write(Advance::Finish {
            status,
            output: Some(output),
            error: None,
        })
        .await?;
        metrics::execution_finished(&self.workflow, status);
        info!("execution completed");
        Ok(Ended::Finished)
    }

    /// Fails the execution with `error`.
    pub(super) async fn fail(&mut self, error: String) -> Result<Ended, Interrupted> {
        let status = from_running(ExecutionStatus::Failed);
        self.last_write(Advance::Finish {
            status,
            output: None,
            error: Some(error.clone()),
        })
        .await?;
        metrics::execution_finished(&self.workflow, status);
        error!(error = %error, "execution failed");
        Ok(Ended::Finished)
    }

    /// Parks the execution until a retry is due in `delay`.
    pub(super) async fn park(&mut self, delay: Duration) -> Result<Ended, Interrupted> {
        from_running(ExecutionStatus::Retrying);
        self.last_write(Advance::Retry { delay }).await?;
        info!(retry_in = ?delay, "execution waiting to retry");
        Ok(Ended::Finished)
    }

    /// Parks the execution until `delay` passes (never, for `None`) or one of `signals`
    /// arrives.
    pub(super) async fn wait(
        &mut self,
        delay: Option<Duration>,
        signals: Vec<String>,
    ) -> Result<Ended, Interrupted> {
        from_running(ExecutionStatus::Waiting);
        let awaited = signals.join(", ");
        self.last_write(Advance::Wait { delay, signals }).await?;
        info!(signals = %awaited, wake_in = ?delay, "execution waiting");
        Ok(Ended::Finished)
    }

    /// Pauses the execution: an operator asked for it (`error` is `None`), or a node failed
    /// for good under a policy that pauses instead of failing.
    pub(super) async fn pause(&mut self, error: Option<String>) -> Result<Ended, Interrupted> {
        from_running(ExecutionStatus::Paused);
        self.last_write(Advance::Pause {
            error: error.clone(),
        })
        .await?;
        match error {
            None => info!("execution paused by request"),
            Some(error) => {
                warn!(error = %error, "execution paused instead of failing; resume it once the cause is fixed")
            }
        }
        Ok(Ended::Finished)
    }

    /// Ends the execution as timed out: its deadline passed.
    pub(super) async fn time_out(&mut self) -> Result<Ended, Interrupted> {
        let status = from_running(ExecutionStatus::TimedOut);
        self.last_write(Advance::Finish {
            status,
            output: None,
            error: Some("the execution deadline passed".into()),
        })
        .await?;
        metrics::execution_finished(&self.workflow, status);
        warn!("execution timed out: deadline passed");
        Ok(Ended::Finished)
    }

    /// Releases the execution for another worker (shutdown), with its interrupted nodes.
    pub(super) async fn release(&mut self) -> Result<Ended, Interrupted> {
        let interrupted = self
            .pending()
            .filter(|run| run.status == NodeRunStatus::Interrupted)
            .count();
        self.last_write(Advance::Release).await?;
        info!(
            interrupted_nodes = interrupted,
            "execution released for another worker"
        );
        Ok(Ended::Released)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use futures_util::FutureExt;

    use super::*;
    use crate::worker::slots::Slots;

    type Answers = Arc<Mutex<Vec<Result<StepRecorded, StoreError>>>>;

    /// The writer of a first claim of a new execution, in one of `slots`.
    fn first_claim(fence: &Fence, slots: &Slots) -> Writer {
        Writer::new(
            fence,
            ExecutionId::new(),
            LeaseToken(1),
            "w",
            slots.take(1).remove(0),
        )
    }

    /// A fence whose store answers each step with the next of `answers` (then `Ok`), and
    /// keeps what it was asked to record.
    fn fence(
        answers: Vec<Result<StepRecorded, StoreError>>,
    ) -> (Fence, Arc<Mutex<Vec<RecordStep>>>) {
        let answers: Answers = Arc::new(Mutex::new(answers.into_iter().rev().collect()));
        let asked = Arc::new(Mutex::new(Vec::new()));
        let seen = asked.clone();
        let steps = StepWriter::spawn_with(Arc::new(move |steps: &[RecordStep]| {
            let results = steps
                .iter()
                .map(|step| {
                    seen.lock().unwrap().push(step.clone());
                    answers
                        .lock()
                        .unwrap()
                        .pop()
                        .unwrap_or(Ok(StepRecorded::default()))
                })
                .collect();
            async move { results }.boxed()
        }));
        let fence = Fence {
            steps,
            leases: Arc::default(),
            worker_id: "w".into(),
            lease_duration: Duration::from_secs(30),
        };
        (fence, asked)
    }

    fn run(status: NodeRunStatus) -> NewNodeRun {
        NewNodeRun {
            node_id: "n".into(),
            node_type: "t".into(),
            attempt: 1,
            status,
            input: None,
            output: None,
            branch: None,
            error: None,
            duration: Duration::ZERO,
            ended_ago: Duration::ZERO,
            consumed_signal: None,
        }
    }

    fn unavailable() -> StoreError {
        StoreError::Unavailable("connection refused".into())
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_the_store_could_not_take_is_retried_and_an_already_recorded_retry_succeeds() {
        let recorded = StoreError::AlreadyRecorded {
            execution_id: ExecutionId::new(),
        };
        let (fence, asked) = fence(vec![Err(unavailable()), Err(recorded)]);
        let slots = Slots::new(1, 1, Default::default());
        let mut writer = first_claim(&fence, &slots);
        writer.push(run(NodeRunStatus::Completed));
        writer.flush(Some(std::future::pending())).await.unwrap();
        assert_eq!(asked.lock().unwrap().len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_store_away_for_longer_than_the_lease_drops_the_execution() {
        let (fence, asked) = fence((0..100).map(|_| Err(unavailable())).collect());
        let slots = Slots::new(1, 1, Default::default());
        let mut writer = first_claim(&fence, &slots);
        let started = Instant::now();
        let err = writer.complete(Value::Null).await.unwrap_err();
        assert!(
            matches!(err, Interrupted::Store(StoreError::Unavailable(_))),
            "{err:?}"
        );
        assert!(started.elapsed() <= fence.lease_duration);
        assert!(asked.lock().unwrap().len() > 2);
    }

    #[tokio::test]
    async fn a_flush_of_unfinished_attempts_alone_writes_nothing() {
        let (fence, asked) = fence(Vec::new());
        let slots = Slots::new(1, 1, Default::default());
        let mut writer = first_claim(&fence, &slots);
        writer.push(run(NodeRunStatus::Abandoned));
        writer.flush(Some(std::future::pending())).await.unwrap();
        assert!(asked.lock().unwrap().is_empty());
        assert_eq!(writer.pending().count(), 1, "kept for the next write");
    }

    #[tokio::test]
    async fn the_last_write_forgets_the_lease_and_frees_the_slot_and_a_lost_lease_says_so() {
        let id = ExecutionId::new();
        let lost = StoreError::LeaseLost {
            execution_id: id,
            lease_token: LeaseToken(3),
        };
        let (fence, asked) = fence(vec![Err(lost)]);
        fence.leases.hold(id, LeaseToken(3));
        let slots = Slots::new(1, 1, Default::default());
        let mut writer = Writer::new(&fence, id, LeaseToken(3), "w", slots.take(1).remove(0));
        let err = writer.park(Duration::from_secs(5)).await.unwrap_err();
        assert!(matches!(err, Interrupted::LeaseLost), "{err:?}");
        assert!(fence.leases.held().is_empty());
        assert_eq!(slots.free(), 1);
        let asked: Vec<Advance> = asked
            .lock()
            .unwrap()
            .iter()
            .map(|s| s.advance.clone())
            .collect();
        assert_eq!(
            asked,
            vec![Advance::Retry {
                delay: Duration::from_secs(5)
            }]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_replayable_run_waits_for_the_next_write_and_keeps_when_it_ended() {
        let (fence, asked) = fence(Vec::new());
        let slots = Slots::new(1, 1, Default::default());
        let mut writer = first_claim(&fence, &slots);
        writer.push_replayable(run(NodeRunStatus::Completed));
        writer.flush(Some(std::future::pending())).await.unwrap();
        assert!(asked.lock().unwrap().is_empty(), "no write of its own");
        assert_eq!(writer.pending().count(), 1, "kept for the next write");

        tokio::time::advance(Duration::from_secs(2)).await;
        writer.push(run(NodeRunStatus::Completed));
        writer.flush(Some(std::future::pending())).await.unwrap();
        let asked = asked.lock().unwrap();
        let [step] = &asked[..] else {
            panic!("one write, not {}", asked.len());
        };
        let ago: Vec<Duration> = step.runs.iter().map(|r| r.ended_ago).collect();
        assert_eq!(ago, [Duration::from_secs(2), Duration::ZERO]);
    }

    #[tokio::test]
    async fn a_claim_that_rescued_the_execution_writes_replayable_runs_at_once() {
        let (fence, asked) = fence(Vec::new());
        let slots = Slots::new(1, 1, Default::default());
        let mut writer = first_claim(&fence, &slots);
        writer.no_deferred_runs();
        writer.push_replayable(run(NodeRunStatus::Completed));
        writer.flush(Some(std::future::pending())).await.unwrap();
        assert_eq!(asked.lock().unwrap().len(), 1);
        assert_eq!(writer.pending().count(), 0);
    }
}
