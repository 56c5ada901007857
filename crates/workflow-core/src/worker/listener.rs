//! The wake-up listener: turns the store's hints (PostgreSQL LISTEN/NOTIFY) into wakes of
//! the poll loop, so an idle worker claims a new or signalled execution at once, and into
//! cancellations of the executions it holds that were cancelled, so their nodes stop at once
//! rather than at the next heartbeat.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::sync::{Notify, oneshot};
use tracing::{debug, warn};

use super::ErrorChain;
use super::decide::error_backoff;
use super::leases::Leases;
use crate::store::{StoreError, Wakeup, Wakeups};

/// Opens a stream of hints: [`Store::wakeups`](crate::Store::wakeups).
pub(super) type Subscribe =
    Box<dyn FnMut() -> BoxFuture<'static, Result<Option<Box<dyn Wakeups>>, StoreError>> + Send>;

/// Listens until aborted, waking `wake` on every hint and cancelling, among `leases`, the
/// claims of executions the store says were cancelled. Hints coalesce: many while the loop is
/// busy make one wake. If the listening connection fails it reconnects with backoff, and
/// wakes the loop on reconnecting (hints may have been missed); polling and the heartbeat
/// cover the gap. Ends at once if the store sends no hints. `subscribed` is told when the
/// first subscription is made (or failed, or the store sends no hints), so the worker can
/// start claiming only once it would hear about what it claims.
pub(super) async fn listen(
    mut subscribe: Subscribe,
    worker_id: String,
    poll_interval: Duration,
    wake: Arc<Notify>,
    leases: Arc<Leases>,
    subscribed: oneshot::Sender<()>,
) {
    let mut failures = 0u32;
    let mut subscribed = Some(subscribed);
    loop {
        let subscription = subscribe().await;
        if let Some(first) = subscribed.take() {
            // The worker may have stopped waiting (it waits a bounded time).
            let _ = first.send(());
        }
        let mut stream = match subscription {
            Ok(Some(stream)) => stream,
            Ok(None) => return,
            Err(err) => {
                failures += 1;
                if failures.is_power_of_two() {
                    warn!(
                        worker.id = %worker_id,
                        error = %ErrorChain(&err),
                        "listening for wake-ups failed; polling meanwhile"
                    );
                }
                tokio::time::sleep(error_backoff(poll_interval, failures)).await;
                continue;
            }
        };
        failures = 0;
        loop {
            match stream.next().await {
                // A hint, or a reconnection after which hints may have been missed: check now.
                Ok(Wakeup::Runnable | Wakeup::Reconnected) => wake.notify_one(),
                Ok(Wakeup::Cancelled(id)) => {
                    if leases.cancel(id) {
                        debug!(execution.id = %id, "cancelled by request; stopping its nodes");
                    }
                }
                Err(err) => {
                    debug!(error = %ErrorChain(&err), "wake-up listener lost; reconnecting");
                    wake.notify_one();
                    tokio::time::sleep(poll_interval).await;
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use async_trait::async_trait;
    use tokio::sync::mpsc;

    use super::*;
    use crate::execution::{ExecutionId, LeaseToken};

    /// Hints from a channel; a closed channel is a lost connection.
    struct Channel(mpsc::UnboundedReceiver<Wakeup>);

    #[async_trait]
    impl Wakeups for Channel {
        async fn next(&mut self) -> Result<Wakeup, StoreError> {
            self.0
                .recv()
                .await
                .ok_or_else(|| StoreError::Backend("connection lost".into()))
        }
    }

    /// Subscriptions handing out the given channels in turn, then none.
    fn subscriptions(channels: Vec<Channel>) -> (Subscribe, Arc<Mutex<usize>>) {
        let opened = Arc::new(Mutex::new(0));
        let channels = Arc::new(Mutex::new(channels.into_iter()));
        let count = opened.clone();
        let subscribe: Subscribe = Box::new(move || {
            *count.lock().unwrap() += 1;
            let next = channels.lock().unwrap().next();
            Box::pin(async move { Ok(next.map(|c| Box::new(c) as Box<dyn Wakeups>)) })
        });
        (subscribe, opened)
    }

    async fn woken(wake: &Notify) {
        tokio::time::timeout(Duration::from_secs(60), wake.notified())
            .await
            .expect("woken");
    }

    #[tokio::test(start_paused = true)]
    async fn hints_wake_the_loop_and_a_lost_connection_wakes_it_and_reconnects() {
        let (first, first_stream) = mpsc::unbounded_channel();
        let (second, second_stream) = mpsc::unbounded_channel();
        let (subscribe, opened) =
            subscriptions(vec![Channel(first_stream), Channel(second_stream)]);
        let wake = Arc::new(Notify::new());
        let task = tokio::spawn(listen(
            subscribe,
            "w".into(),
            Duration::from_millis(100),
            wake.clone(),
            Arc::default(),
            oneshot::channel().0,
        ));
        first.send(Wakeup::Runnable).unwrap();
        woken(&wake).await;
        // A lost connection wakes the loop (hints may have been missed) and reconnects.
        drop(first);
        woken(&wake).await;
        second.send(Wakeup::Reconnected).unwrap();
        woken(&wake).await;
        assert_eq!(*opened.lock().unwrap(), 2);
        // With no stream to open, the listener ends: the worker polls alone.
        drop(second);
        woken(&wake).await;
        tokio::time::timeout(Duration::from_secs(60), task)
            .await
            .expect("the listener ended")
            .unwrap();
        assert_eq!(*opened.lock().unwrap(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancellation_stops_the_claim_held_of_that_execution_only() {
        let (hints, stream) = mpsc::unbounded_channel();
        let (subscribe, _) = subscriptions(vec![Channel(stream)]);
        let wake = Arc::new(Notify::new());
        let (subscribed, listening) = oneshot::channel();
        let leases = Arc::new(Leases::default());
        let (cancelled, other) = (ExecutionId::new(), ExecutionId::new());
        let cancelled_claim = leases.hold(cancelled, LeaseToken(3));
        let other_claim = leases.hold(other, LeaseToken(1));
        let task = tokio::spawn(listen(
            subscribe,
            "w".into(),
            Duration::from_millis(100),
            wake.clone(),
            leases.clone(),
            subscribed,
        ));
        listening.await.expect("told once subscribed");
        // One this worker does not hold changes nothing.
        hints.send(Wakeup::Cancelled(ExecutionId::new())).unwrap();
        hints.send(Wakeup::Cancelled(cancelled)).unwrap();
        tokio::time::timeout(Duration::from_secs(60), cancelled_claim.cancelled())
            .await
            .expect("the cancelled execution's claim was stopped");
        assert!(!other_claim.is_cancelled());
        // The lease stays held until the claim's task forgets it.
        assert_eq!(leases.held().len(), 2);
        task.abort();
    }
}
