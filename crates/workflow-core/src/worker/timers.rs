//! [`Timers`]: when executions this worker parked for less than a poll interval become due,
//! so the poller claims them then and not at its next poll. A rate-limited node waits for
//! the window to move (often a fraction of a second); a short retry backoff likewise.
//!
//! Only a hint: another worker may claim the execution first, and an execution parked for
//! longer is found by the regular poll.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Mutex;

use tokio::sync::Notify;
use tokio::time::Instant;

/// At most this many instants are kept; past it the latest are dropped (the poll finds
/// their executions).
const MAX_TIMERS: usize = 1024;

/// The instants at which parked executions become due, earliest first.
#[derive(Debug, Default)]
pub(super) struct Timers {
    due: Mutex<BinaryHeap<Reverse<Instant>>>,
    /// Notified when an instant earlier than every other one is added.
    earlier: Notify,
}

impl Timers {
    /// Remembers that an execution becomes due at `at`.
    pub(super) fn add(&self, at: Instant) {
        let mut due = self
            .due
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let earliest = due.peek().is_none_or(|Reverse(first)| at < *first);
        due.push(Reverse(at));
        if due.len() > MAX_TIMERS {
            let mut kept = std::mem::take(&mut *due).into_sorted_vec();
            // Sorted by `Reverse`: the latest instants come first.
            kept.drain(..kept.len() - MAX_TIMERS);
            *due = kept.into();
        }
        drop(due);
        if earliest {
            self.earlier.notify_one();
        }
    }

    /// The earliest instant not yet passed, forgetting those that have passed by `now`.
    pub(super) fn next(&self, now: Instant) -> Option<Instant> {
        let mut due = self
            .due
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        while let Some(&Reverse(first)) = due.peek() {
            if first > now {
                return Some(first);
            }
            due.pop();
        }
        None
    }

    /// Completes when an instant earlier than the others is added.
    pub(super) async fn earlier(&self) {
        self.earlier.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_next_instant_is_the_earliest_not_yet_passed() {
        let timers = Timers::default();
        let now = Instant::now();
        assert_eq!(timers.next(now), None);
        timers.add(now + Duration::from_millis(300));
        timers.add(now + Duration::from_millis(100));
        timers.add(now + Duration::from_millis(200));
        assert_eq!(timers.next(now), Some(now + Duration::from_millis(100)));
        assert_eq!(
            timers.next(now + Duration::from_millis(100)),
            Some(now + Duration::from_millis(200)),
            "an instant that has come is forgotten"
        );
        assert_eq!(timers.next(now + Duration::from_millis(300)), None);
    }

    #[tokio::test(start_paused = true)]
    async fn an_earlier_instant_wakes_the_waiter_and_a_later_one_does_not() {
        let timers = Timers::default();
        let now = Instant::now();
        timers.add(now + Duration::from_millis(100));
        // The first add left a permit: consume it.
        timers.earlier().await;
        timers.add(now + Duration::from_millis(500));
        let woken = tokio::time::timeout(Duration::from_secs(5), timers.earlier()).await;
        assert!(woken.is_err(), "a later instant does not wake the poller");
        timers.add(now + Duration::from_millis(50));
        let woken = tokio::time::timeout(Duration::from_secs(5), timers.earlier()).await;
        assert!(woken.is_ok(), "an earlier instant wakes the poller");
    }

    #[tokio::test(start_paused = true)]
    async fn it_keeps_the_earliest_instants_when_full() {
        let timers = Timers::default();
        let now = Instant::now();
        for ms in (1..=MAX_TIMERS as u64 + 10).rev() {
            timers.add(now + Duration::from_millis(ms));
        }
        assert_eq!(timers.due.lock().unwrap().len(), MAX_TIMERS);
        assert_eq!(timers.next(now), Some(now + Duration::from_millis(1)));
        let last = timers
            .due
            .lock()
            .unwrap()
            .iter()
            .map(|r| r.0)
            .max()
            .unwrap();
        assert_eq!(last, now + Duration::from_millis(MAX_TIMERS as u64));
    }
}
