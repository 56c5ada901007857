//! [`ClaimAhead`]: how many executions a worker claims beyond its free slots.
//!
//! A worker whose executions each hold a slot for much less time than a claim takes would
//! spend most of its time waiting for claims if it claimed only into free slots. It keeps a
//! local queue instead: executions claimed (leased, renewed by the heartbeat, released at
//! shutdown like any other) that start as slots free. The queue holds what the worker's slots
//! get through in two claims' time (`2 × concurrency × claim time / slot time`), measured as
//! it runs, at most [`WorkflowWorker::claim_ahead`](super::WorkflowWorker::claim_ahead). A
//! worker whose nodes take longer than a claim (most real work) keeps nothing ahead, so it
//! never sits on executions another worker could run.

use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The weight of a new sample in the moving averages.
const WEIGHT: f64 = 1.0 / 16.0;

/// A moving average of durations, shared by the slots (how long each was held) and the
/// poller (how long claims take).
#[derive(Debug, Default, Clone)]
pub(super) struct Average(Arc<Mutex<Option<f64>>>);

impl Average {
    /// Adds one sample.
    pub(super) fn add(&self, sample: Duration) {
        let sample = sample.as_secs_f64();
        let mut average = self.0.lock().expect("average lock");
        *average = Some(match *average {
            Some(average) => average + WEIGHT * (sample - average),
            None => sample,
        });
    }

    /// The average, once there is a sample.
    pub(super) fn get(&self) -> Option<f64> {
        *self.0.lock().expect("average lock")
    }
}

/// The size of a worker's local queue of executions claimed ahead.
#[derive(Debug)]
pub(super) struct ClaimAhead {
    /// The most executions claimed ahead; 0 turns the queue off.
    max: usize,
    concurrency: usize,
    /// How long executions hold their slots.
    pub(super) slot_time: Average,
    /// How long claims take.
    pub(super) claim_time: Average,
}

impl ClaimAhead {
    pub(super) fn new(max: usize, concurrency: usize) -> Self {
        Self {
            max,
            concurrency,
            slot_time: Average::default(),
            claim_time: Average::default(),
        }
    }

    /// How many executions to keep claimed beyond the free slots: none until both averages
    /// are known.
    pub(super) fn target(&self) -> usize {
        let (Some(slot), Some(claim)) = (self.slot_time.get(), self.claim_time.get()) else {
            return 0;
        };
        // A slot held for no measurable time: as many as allowed.
        let through = 2.0 * self.concurrency as f64 * claim / slot.max(1e-6);
        if through >= self.max as f64 {
            self.max
        } else {
            // `through` is finite, non-negative and below `max` here.
            through as usize
        }
    }

    /// How many executions to claim now, with `free` slots and `queued` executions claimed
    /// ahead already: enough for the free slots and the target, once the queue is down to
    /// half the target (so claims are few and large); 0 if none is needed.
    pub(super) fn wanted(&self, free: usize, queued: usize) -> usize {
        let target = self.target();
        let stock = free + target;
        if queued >= stock || queued > free + target / 2 {
            return 0;
        }
        stock - queued
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ahead(max: usize, concurrency: usize, slot_ms: u64, claim_ms: u64) -> ClaimAhead {
        let ahead = ClaimAhead::new(max, concurrency);
        ahead.slot_time.add(Duration::from_millis(slot_ms));
        ahead.claim_time.add(Duration::from_millis(claim_ms));
        ahead
    }

    #[test]
    fn nothing_ahead_until_slots_and_claims_were_timed() {
        let ahead = ClaimAhead::new(500, 10);
        assert_eq!(ahead.target(), 0);
        ahead.claim_time.add(Duration::from_millis(2));
        assert_eq!(ahead.target(), 0);
        assert_eq!(
            ahead.wanted(10, 0),
            10,
            "the free slots, as without a queue"
        );
        assert_eq!(ahead.wanted(0, 0), 0);
    }

    #[test]
    fn the_target_is_two_claims_worth_of_slot_turnover_at_most_the_maximum() {
        // Slots held 1 ms, claims of 5 ms: 10 slots get through 50 executions per claim.
        assert_eq!(ahead(500, 10, 1, 5).target(), 100);
        // Nodes much longer than a claim: nothing ahead.
        assert_eq!(ahead(500, 10, 60_000, 5).target(), 0);
        assert_eq!(ahead(500, 10, 0, 5).target(), 500);
        assert_eq!(ahead(0, 10, 0, 5).target(), 0, "0 turns it off");
    }

    #[test]
    fn the_queue_is_refilled_at_half_the_target() {
        let ahead = ahead(500, 10, 1, 5); // target 100
        assert_eq!(ahead.wanted(0, 0), 100);
        assert_eq!(ahead.wanted(0, 50), 50, "down to half: refill");
        assert_eq!(ahead.wanted(0, 51), 0, "above half: wait");
        assert_eq!(ahead.wanted(4, 0), 104, "free slots come on top");
        assert_eq!(ahead.wanted(0, 100), 0);
    }

    #[test]
    fn averages_move_a_sixteenth_towards_each_sample() {
        let average = Average::default();
        assert_eq!(average.get(), None);
        average.add(Duration::from_millis(16));
        average.add(Duration::from_millis(32));
        let got = average.get().unwrap();
        assert!((got - 0.017).abs() < 1e-9, "{got}");
    }
}
