//! [`Slots`]: how many executions a worker runs at once, as owned semaphore permits.
//!
//! Each claimed execution holds a [`Slot`] for as long as its task lives. When it starts its
//! last write it runs no more nodes, so [`Slot::finishing`] gives up its running slot (as a
//! [`Freed`], free once dropped) and keeps a *finishing* permit instead: at most `finishing`
//! of those (the concurrency plus what the worker may claim ahead), so a slow store never
//! piles up more tasks than that. How long each execution held its running slot feeds the
//! average [`ClaimAhead`](super::claim_ahead::ClaimAhead) sizes the local queue with.
//!
//! An execution writing a step between two nodes runs no node meanwhile either: while
//! executions claimed ahead wait in the local queue, [`Slot::lend`] gives its running slot to
//! one of them for the write (holding a finishing permit, so the same bound holds), and
//! [`Slot::take_back`] waits for a running slot again before the next node starts. Without a
//! queue (nodes slower than a claim) an execution keeps its slot from claim to end.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::claim_ahead::Average;

/// The slots of one worker.
#[derive(Debug, Clone)]
pub(super) struct Slots {
    /// One permit per execution that may run nodes.
    running: Arc<Semaphore>,
    /// One permit per execution writing its last step after giving its running permit back.
    finishing: Arc<Semaphore>,
    /// How long executions hold their running slots.
    held: Average,
    /// Whether executions claimed ahead wait in the local queue.
    queued: Arc<AtomicBool>,
}

impl Slots {
    /// `concurrency` slots, all free, and `finishing` permits for executions writing their
    /// last step.
    pub(super) fn new(concurrency: usize, finishing: usize, held: Average) -> Self {
        Self {
            running: Arc::new(Semaphore::new(concurrency)),
            finishing: Arc::new(Semaphore::new(finishing)),
            held,
            queued: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Says whether executions claimed ahead wait for a slot: only then do writes between
    /// nodes [`lend`](Slot::lend) their slots.
    pub(super) fn set_queued(&self, queued: bool) {
        self.queued.store(queued, Ordering::Relaxed);
    }

    /// How many executions could be claimed now.
    pub(super) fn free(&self) -> usize {
        self.running.available_permits()
    }

    /// Takes up to `count` free slots.
    pub(super) fn take(&self, count: usize) -> Vec<Slot> {
        std::iter::from_fn(|| self.running.clone().try_acquire_owned().ok())
            .take(count)
            .map(|permit| Slot {
                permit,
                finishing: Some(self.finishing.clone()),
                taken: Some((Instant::now(), self.held.clone())),
                queued: self.queued.clone(),
            })
            .collect()
    }

    /// A slot outside the concurrency: for an execution claimed ahead that is only released
    /// (at shutdown), which runs no node.
    pub(super) fn detached() -> Slot {
        let permit = Arc::new(Semaphore::new(1))
            .try_acquire_owned()
            .expect("a new semaphore has a permit");
        Slot {
            permit,
            finishing: None,
            taken: None,
            queued: Arc::default(),
        }
    }

    /// Waits until a slot is free (and leaves it free).
    pub(super) async fn freed(&self) {
        // The semaphore is never closed, so this only ever waits.
        if let Ok(permit) = self.running.acquire().await {
            drop(permit);
        }
    }
}

/// One execution's slot, given back when it is dropped.
#[derive(Debug)]
pub(super) struct Slot {
    permit: OwnedSemaphorePermit,
    /// The finishing permits, until this slot took one.
    finishing: Option<Arc<Semaphore>>,
    /// When the running slot was taken, and where to say how long it was held; `None` once
    /// said (or for a detached slot).
    taken: Option<(Instant, Average)>,
    /// Whether executions claimed ahead wait for a slot.
    queued: Arc<AtomicBool>,
}

impl Slot {
    /// The execution runs no more nodes: gives up its running slot, to be freed for the next
    /// claim when the [`Freed`] is dropped, and holds a finishing permit while the last write
    /// goes on. `None` if the finishing permits are all taken (then it keeps its slot until it
    /// ends), or if it gave its slot up before.
    pub(super) fn finishing(&mut self) -> Option<Freed> {
        let finishing = self.finishing.as_ref()?;
        let permit = finishing.clone().try_acquire_owned().ok()?;
        self.finishing = None;
        self.time_held();
        Some(Freed {
            _running: std::mem::replace(&mut self.permit, permit),
        })
    }

    /// The execution writes a step before its next node: if executions claimed ahead wait
    /// for a slot and a finishing permit is free, gives its running slot up (to be freed when
    /// the [`Lent`]'s `freed` is dropped) and holds the finishing permit instead, until
    /// [`take_back`](Self::take_back). `None` otherwise: it keeps its slot.
    pub(super) fn lend(&mut self) -> Option<Lent> {
        if !self.queued.load(Ordering::Relaxed) {
            return None;
        }
        let finishing = self.finishing.as_ref()?;
        let permit = finishing.clone().try_acquire_owned().ok()?;
        let held = self.taken.as_ref().map(|(_, held)| held.clone());
        self.time_held();
        let running = std::mem::replace(&mut self.permit, permit);
        Some(Lent {
            running: running.semaphore().clone(),
            held,
            freed: Freed { _running: running },
        })
    }

    /// Waits for a running slot again after [`lend`](Self::lend) (in line before claims
    /// starting new executions), and gives the finishing permit back; or, if `until` comes
    /// first (shutdown or a lost lease: no node starts any more), keeps the finishing permit
    /// and returns.
    pub(super) async fn take_back(
        &mut self,
        running: Arc<Semaphore>,
        held: Option<Average>,
        until: impl Future<Output = ()>,
    ) {
        tokio::select! {
            permit = running.acquire_owned() => {
                let permit = permit.expect("the running slots are never closed");
                drop(std::mem::replace(&mut self.permit, permit));
                self.taken = held.map(|held| (Instant::now(), held));
            }
            () = until => {}
        }
    }

    fn time_held(&mut self) {
        if let Some((taken, held)) = self.taken.take() {
            held.add(taken.elapsed());
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.time_held();
    }
}

/// A running slot lent for a write between nodes: `freed` frees it, and
/// [`Slot::take_back`] takes one from `running` again, timing it in `held`.
#[derive(Debug)]
pub(super) struct Lent {
    pub(super) freed: Freed,
    pub(super) running: Arc<Semaphore>,
    pub(super) held: Option<Average>,
}

/// A running slot an execution gave up; the next claim may take it once this is dropped.
#[derive(Debug)]
pub(super) struct Freed {
    _running: OwnedSemaphorePermit,
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn slots_are_taken_up_to_the_concurrency_and_freed_when_dropped() {
        let slots = Slots::new(3, 3, Average::default());
        let first = slots.take(2);
        assert_eq!((first.len(), slots.free()), (2, 1));
        let rest = slots.take(5);
        assert_eq!(rest.len(), 1, "only what is free");
        assert_eq!(slots.free(), 0);
        drop(first);
        assert_eq!(slots.free(), 2);
        drop(rest);
        assert_eq!(slots.free(), 3);
    }

    #[test]
    fn a_finishing_execution_frees_its_slot_up_to_one_concurrencys_worth() {
        let slots = Slots::new(2, 2, Average::default());
        let mut all = slots.take(2);
        let freed = all[0].finishing().expect("a finishing permit is free");
        assert_eq!(
            slots.free(),
            0,
            "the slot frees when the freed permit is dropped"
        );
        drop(freed);
        assert_eq!(slots.free(), 1);
        // Finishing twice does not free a second slot.
        assert!(all[0].finishing().is_none());
        assert_eq!(slots.free(), 1);
        let mut more = slots.take(1);
        drop(all[1].finishing());
        // Two are finishing already: the third keeps its slot.
        assert!(more[0].finishing().is_none());
        assert_eq!(slots.free(), 1);
        drop(all);
        assert_eq!(slots.free(), 1, "the finishing ones held no running slot");
        drop(more);
        assert_eq!(slots.free(), 2);
        // And the finishing permits are back too.
        let mut again = slots.take(2);
        drop(again[0].finishing());
        drop(again[1].finishing());
        assert_eq!(slots.free(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn freed_waits_for_a_slot_to_come_back() {
        let slots = Slots::new(1, 1, Average::default());
        let taken = slots.take(1);
        let waiter = tokio::spawn({
            let slots = slots.clone();
            async move { slots.freed().await }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!waiter.is_finished());
        drop(taken);
        tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .expect("woken when the slot was freed")
            .unwrap();
        assert_eq!(slots.free(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_between_nodes_lends_its_slot_only_to_a_queue_and_waits_to_take_one_back() {
        let slots = Slots::new(1, 1, Average::default());
        let mut slot = slots.take(1).remove(0);
        assert!(slot.lend().is_none(), "nothing queued: the slot is kept");

        slots.set_queued(true);
        let lent = slot.lend().expect("lent to the queue");
        assert_eq!(slots.free(), 0, "free once the write goes out");
        drop(lent.freed);
        let mut other = slots.take(1);
        assert_eq!(other.len(), 1, "a queued execution starts in it");
        // The finishing permit is held while lent: no second lend, and a last write of
        // another execution keeps its slot.
        assert!(other[0].lend().is_none());
        assert!(other[0].finishing().is_none());

        let back = tokio::spawn(async move {
            slot.take_back(lent.running, lent.held, std::future::pending())
                .await;
            slot
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!back.is_finished(), "waits while the slot is in use");
        drop(other);
        let slot = tokio::time::timeout(Duration::from_secs(1), back)
            .await
            .expect("taken back once freed, before any claim")
            .unwrap();
        assert_eq!(slots.free(), 0);
        assert!(slots.take(1).is_empty());
        drop(slot);
        assert_eq!(slots.free(), 1);
        let mut again = slots.take(1);
        assert!(
            again[0].finishing().is_some(),
            "the finishing permit came back"
        );
    }
}
