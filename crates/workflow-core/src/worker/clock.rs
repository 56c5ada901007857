//! [`DbClock`]: the database's clock as a claimed execution sees it, so deadlines and waits
//! are measured in database time with no skew from this machine's clock.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;

/// The database's clock as seen from a claim: the lease expires a lease length after the
/// claim, in database time, so database time now is that moment plus the time since.
#[derive(Debug, Clone, Copy)]
pub(super) struct DbClock {
    claimed_at: DateTime<Utc>,
    claimed: Instant,
}

impl DbClock {
    /// The clock of a claim whose lease, of length `lease`, expires at `lease_expires_at`
    /// (database time); this machine's clock if the claim carries no expiry.
    pub(super) fn at_claim(lease_expires_at: Option<DateTime<Utc>>, lease: Duration) -> Self {
        let claimed_at = lease_expires_at
            .zip(chrono::Duration::from_std(lease).ok())
            .map_or_else(Utc::now, |(expires, lease)| expires - lease);
        Self {
            claimed_at,
            claimed: Instant::now(),
        }
    }

    /// Database time now.
    pub(super) fn now(&self) -> DateTime<Utc> {
        self.claimed_at + chrono::Duration::from_std(self.claimed.elapsed()).unwrap_or_default()
    }

    /// The instant in this worker's clock of a database time (now, for one in the past).
    pub(super) fn instant_of(&self, at: DateTime<Utc>) -> Instant {
        self.claimed + (at - self.claimed_at).to_std().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn database_time_is_the_claim_plus_the_time_since() {
        // A database clock an hour ahead of this machine's.
        let claimed_at = Utc::now() + chrono::Duration::hours(1);
        let lease = Duration::from_secs(30);
        let clock = DbClock::at_claim(Some(claimed_at + chrono::Duration::seconds(30)), lease);
        assert_eq!(clock.now(), claimed_at);
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(clock.now(), claimed_at + chrono::Duration::seconds(5));
        // A deadline 10 s after the claim, in database time, is 10 s after the claim here.
        let deadline = clock.instant_of(claimed_at + chrono::Duration::seconds(10));
        assert_eq!(deadline - clock.claimed, Duration::from_secs(10));
        // One already past is now-ish: at the claim.
        assert_eq!(
            clock.instant_of(claimed_at - chrono::Duration::seconds(10)),
            clock.claimed
        );
    }
}
