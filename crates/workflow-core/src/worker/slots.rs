//! [`Slots`]: how many executions a worker runs at once, as owned semaphore permits.
//!
//! Each claimed execution holds a [`Slot`] for as long as its task lives. When it starts its
//! last write it runs no more nodes, so [`Slot::finishing`] hands its slot back for the next
//! claim and keeps a *finishing* permit instead: at most one concurrency's worth of those, so
//! a slow store never piles up more than twice the concurrency in tasks.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The slots of one worker.
#[derive(Debug, Clone)]
pub(super) struct Slots {
    /// One permit per execution that may run nodes.
    running: Arc<Semaphore>,
    /// One permit per execution writing its last step after giving its running permit back.
    finishing: Arc<Semaphore>,
}

impl Slots {
    /// `concurrency` slots, all free.
    pub(super) fn new(concurrency: usize) -> Self {
        Self {
            running: Arc::new(Semaphore::new(concurrency)),
            finishing: Arc::new(Semaphore::new(concurrency)),
        }
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
            })
            .collect()
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
}

impl Slot {
    /// The execution runs no more nodes: gives the slot back for the next claim while the
    /// last write goes on, unless one concurrency's worth of executions are finishing already
    /// (then it keeps its slot until it ends).
    pub(super) fn finishing(&mut self) {
        let Some(finishing) = &self.finishing else {
            return;
        };
        if let Ok(permit) = finishing.clone().try_acquire_owned() {
            // The running permit is dropped here, freeing the slot.
            self.permit = permit;
            self.finishing = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn slots_are_taken_up_to_the_concurrency_and_freed_when_dropped() {
        let slots = Slots::new(3);
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
        let slots = Slots::new(2);
        let mut all = slots.take(2);
        all[0].finishing();
        assert_eq!(slots.free(), 1);
        // Finishing twice does not free a second slot.
        all[0].finishing();
        assert_eq!(slots.free(), 1);
        let mut more = slots.take(1);
        all[1].finishing();
        more[0].finishing();
        // Two are finishing already: the third keeps its slot.
        assert_eq!(slots.free(), 1);
        drop(all);
        assert_eq!(slots.free(), 1, "the finishing ones held no running slot");
        drop(more);
        assert_eq!(slots.free(), 2);
        // And the finishing permits are back too.
        let mut again = slots.take(2);
        again[0].finishing();
        again[1].finishing();
        assert_eq!(slots.free(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn freed_waits_for_a_slot_to_come_back() {
        let slots = Slots::new(1);
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
}
