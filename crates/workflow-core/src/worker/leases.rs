//! [`Leases`]: the leases this worker holds on executions in flight, and the [`heartbeat`]
//! that renews them (and this worker's presence) and cancels the executions whose lease was
//! lost.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::ErrorChain;
use crate::execution::{ExecutionId, LeaseToken};
use crate::store::Store;

/// The leases held, by execution: the claim's token, and what cancels the execution's task.
#[derive(Debug, Default)]
pub(super) struct Leases(Mutex<HashMap<ExecutionId, Lease>>);

#[derive(Debug)]
struct Lease {
    token: LeaseToken,
    cancel: CancellationToken,
}

impl Leases {
    /// Holds the lease of a claim: the heartbeat renews it from now on. The token returned is
    /// cancelled when the lease is found lost.
    pub(super) fn hold(&self, id: ExecutionId, token: LeaseToken) -> CancellationToken {
        let cancel = CancellationToken::new();
        self.lock().insert(
            id,
            Lease {
                token,
                cancel: cancel.clone(),
            },
        );
        cancel
    }

    /// Stops renewing the lease of this claim (`token`), leaving a newer claim of the same
    /// execution (by this worker, after the step that ended this one) alone.
    pub(super) fn forget(&self, id: ExecutionId, token: LeaseToken) {
        let mut leases = self.lock();
        if leases.get(&id).is_some_and(|lease| lease.token == token) {
            leases.remove(&id);
        }
    }

    /// Cancels the claim held of execution `id`, if any (it was cancelled by request): its
    /// task stops its nodes and drops it. The lease stays held until the task forgets it.
    /// Returns whether a claim was held.
    pub(super) fn cancel(&self, id: ExecutionId) -> bool {
        let leases = self.lock();
        match leases.get(&id) {
            Some(lease) => {
                lease.cancel.cancel();
                true
            }
            None => false,
        }
    }

    /// The leases to renew.
    pub(super) fn held(&self) -> Vec<(ExecutionId, LeaseToken)> {
        self.lock()
            .iter()
            .map(|(id, lease)| (*id, lease.token))
            .collect()
    }

    /// After renewing `held`, of which `renewed` were still held: cancels and forgets the
    /// others, if the same claim is still in flight (it may have just finished), and returns
    /// them.
    pub(super) fn lost(
        &self,
        held: &[(ExecutionId, LeaseToken)],
        renewed: &[ExecutionId],
    ) -> Vec<(ExecutionId, LeaseToken)> {
        let mut leases = self.lock();
        let mut lost = Vec::new();
        for &(id, token) in held {
            if renewed.contains(&id) {
                continue;
            }
            if let Some(lease) = leases.get(&id)
                && lease.token == token
            {
                lease.cancel.cancel();
                leases.remove(&id);
                lost.push((id, token));
            }
        }
        lost
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<ExecutionId, Lease>> {
        // The map stays consistent even if a holder panicked: every critical section is one
        // call.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// What the heartbeat renews, and how often.
pub(super) struct Heartbeat {
    pub(super) store: Arc<dyn Store>,
    pub(super) leases: Arc<Leases>,
    pub(super) worker_id: String,
    /// Recorded with this worker's presence.
    pub(super) node_types: Vec<String>,
    pub(super) interval: Duration,
    /// How long each renewal (and the presence) lasts.
    pub(super) lease_duration: Duration,
}

/// Every heartbeat interval until `stop`: records this worker's presence, renews the leases
/// of executions in flight, and cancels the ones found lost.
pub(super) async fn heartbeat(beat: Heartbeat, stop: CancellationToken) {
    let mut ticker = tokio::time::interval(beat.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticker.tick() => {}
        }
        // This worker's presence, so an execution no live worker can run is told apart.
        if let Err(err) = beat
            .store
            .record_worker(&beat.worker_id, &beat.node_types, beat.lease_duration)
            .await
        {
            debug!(worker.id = %beat.worker_id, error = %ErrorChain(&err), "recording this worker's presence failed");
        }
        let held = beat.leases.held();
        if held.is_empty() {
            continue;
        }
        match beat.store.renew_leases(&held, beat.lease_duration).await {
            Ok(renewed) => {
                for (id, token) in beat.leases.lost(&held, &renewed) {
                    warn!(execution.id = %id, lease_token = token.0, "lease lost");
                }
            }
            Err(err) => warn!(
                worker.id = %beat.worker_id,
                error = %ErrorChain(&err),
                "renewing leases failed"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lost_leases_are_cancelled_and_forgotten_and_renewed_ones_kept() {
        let leases = Leases::default();
        let (a, b) = (ExecutionId::new(), ExecutionId::new());
        let cancel_a = leases.hold(a, LeaseToken(1));
        let cancel_b = leases.hold(b, LeaseToken(7));
        let held = leases.held();
        assert_eq!(held.len(), 2);
        assert_eq!(leases.lost(&held, &[a]), vec![(b, LeaseToken(7))]);
        assert!(cancel_b.is_cancelled());
        assert!(!cancel_a.is_cancelled());
        assert_eq!(leases.held(), vec![(a, LeaseToken(1))]);
    }

    #[test]
    fn a_newer_claim_of_the_same_execution_survives_the_old_ones_loss_and_forgetting() {
        let leases = Leases::default();
        let id = ExecutionId::new();
        leases.hold(id, LeaseToken(1));
        let held = leases.held();
        // The claim ended and this worker claimed the execution again meanwhile.
        leases.forget(id, LeaseToken(1));
        let newer = leases.hold(id, LeaseToken(2));
        assert_eq!(leases.lost(&held, &[]), vec![]);
        leases.forget(id, LeaseToken(1));
        assert!(!newer.is_cancelled());
        assert_eq!(leases.held(), vec![(id, LeaseToken(2))]);
    }
}
