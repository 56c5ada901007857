//! [`Cadence`]: when a maintenance service looks next, kept by the poll loop for the deadline
//! sweeper and the schedule firer, whose looks run beside it.

use std::time::Duration;

use tokio::time::Instant;

/// Longer than any look says: the next is due when the running look says, unless asked sooner.
const UNTIL_IT_SAYS: Duration = Duration::from_secs(365 * 24 * 3600);

/// When a service last looked and looks next: due at once at first, again when its look
/// says, within `min_gap` of a store hint, and at once when the store is back.
#[derive(Debug, Clone, Copy)]
pub(super) struct Cadence {
    min_gap: Duration,
    /// When the last look started.
    last: Instant,
    /// When the next is due.
    next: Instant,
}

impl Cadence {
    /// Due at once; hints bring the next look within `min_gap` of the last.
    pub(super) fn new(min_gap: Duration) -> Self {
        let now = Instant::now();
        Self {
            min_gap,
            last: now,
            next: now,
        }
    }

    /// When the next look is due.
    pub(super) fn next(&self) -> Instant {
        self.next
    }

    /// Something changed: look again within the minimum gap.
    pub(super) fn hint(&mut self) {
        self.next = self.next.min(self.last + self.min_gap);
    }

    /// The store is back after failing: look now.
    pub(super) fn now_due(&mut self) {
        self.next = Instant::now();
    }

    /// The start of a look, if one is due. Until it [`ended`](Self::ended), only a hint or
    /// [`now_due`](Self::now_due) sets when the next is due: the look says the rest.
    pub(super) fn start(&mut self) -> Option<Instant> {
        let now = Instant::now();
        (now >= self.next).then(|| {
            self.last = now;
            self.next = now + UNTIL_IT_SAYS;
            now
        })
    }

    /// The look that started says when the next is due (sooner if a hint or the store's return
    /// asked for one meanwhile).
    pub(super) fn ended(&mut self, next: Instant) {
        self.next = self.next.min(next);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_look_is_due_at_first_then_when_it_says_or_soon_after_a_hint() {
        let mut cadence = Cadence::new(Duration::from_secs(1));
        let first = cadence.start().expect("due at first");
        cadence.ended(first + Duration::from_secs(60));
        assert!(cadence.start().is_none());
        tokio::time::advance(Duration::from_millis(10)).await;
        cadence.hint();
        assert_eq!(cadence.next(), first + Duration::from_secs(1));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(cadence.start().is_some());
        cadence.ended(Instant::now() + Duration::from_secs(60));
        cadence.now_due();
        assert!(cadence.start().is_some());
    }

    /// A hint or the store's return while a look runs is kept when the look ends, and the look
    /// itself is never due again before it ended.
    #[tokio::test(start_paused = true)]
    async fn what_is_asked_while_a_look_runs_is_kept_when_it_ends() {
        let mut cadence = Cadence::new(Duration::from_secs(1));
        let first = cadence.start().expect("due at first");
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(cadence.start().is_none(), "due again while it runs");
        cadence.hint();
        cadence.ended(first + Duration::from_secs(60));
        assert_eq!(
            cadence.next(),
            first + Duration::from_secs(1),
            "the hint kept"
        );

        let second = cadence.start().expect("due since the hint");
        tokio::time::advance(Duration::from_millis(300)).await;
        cadence.now_due();
        cadence.ended(second + Duration::from_secs(60));
        assert_eq!(
            cadence.next(),
            second + Duration::from_millis(300),
            "the return kept"
        );
    }
}
