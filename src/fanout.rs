//! A latest-value channel that wakes its receivers in a stable order.
//!
//! Like `tokio::sync::watch` (the newest value only, so slow receivers skip
//! values rather than queue them), with one difference that matters for a
//! game server: `watch` spreads its waiters over eight `Notify`s picked at
//! random on every wait, so the order in which sessions are woken, and so
//! the moment each client gets its snapshot, was reshuffled every tick. With
//! 800 seed clients the fan-out takes ~20 ms, so a client's gap between
//! snapshots swung by up to that much (server-side send gap p99 65 ms at a
//! 50 ms tick). Here every receiver waits on one `Notify`, which wakes in
//! first-come order: a session re-registers right after it sent, so the order
//! of one tick is the order of the next, and every client's gap stays close
//! to the tick interval.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::Notify;

struct Shared<T> {
    value: Mutex<T>,
    version: AtomicU64,
    closed: AtomicBool,
    notify: Notify,
}

/// The sending half; dropping it closes the channel.
pub struct Sender<T> {
    shared: Arc<Shared<T>>,
}

/// A receiving half; clones start from the version their original has seen.
pub struct Receiver<T> {
    shared: Arc<Shared<T>>,
    seen: u64,
}

impl<T> Clone for Receiver<T> {
    fn clone(&self) -> Self {
        Receiver {
            shared: Arc::clone(&self.shared),
            seen: self.seen,
        }
    }
}

/// The sender is gone: no value will come any more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed;

/// A channel holding `initial`.
pub fn channel<T>(initial: T) -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        value: Mutex::new(initial),
        version: AtomicU64::new(0),
        closed: AtomicBool::new(false),
        notify: Notify::new(),
    });
    (
        Sender {
            shared: Arc::clone(&shared),
        },
        Receiver { shared, seen: 0 },
    )
}

impl<T: Clone> Sender<T> {
    /// Replaces the value and wakes every waiting receiver, in the order
    /// they started waiting.
    pub fn send(&self, value: T) {
        *self
            .shared
            .value
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = value;
        self.shared.version.fetch_add(1, Ordering::Release);
        self.shared.notify.notify_waiters();
    }

    /// The current value.
    pub fn latest(&self) -> T {
        self.shared
            .value
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::Release);
        self.shared.notify.notify_waiters();
    }
}

impl<T: Clone> Receiver<T> {
    /// The current value, marking it seen.
    pub fn latest(&mut self) -> T {
        self.seen = self.shared.version.load(Ordering::Acquire);
        self.shared
            .value
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The current value, without marking it seen.
    pub fn peek(&self) -> T {
        self.shared
            .value
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Marks the current value seen: [`Receiver::changed`] waits for the next.
    pub fn mark_seen(&mut self) {
        self.seen = self.shared.version.load(Ordering::Acquire);
    }

    /// Waits for a value this receiver has not seen, and returns it.
    pub async fn changed(&mut self) -> Result<T, Closed> {
        let shared = Arc::clone(&self.shared);
        loop {
            let notified = shared.notify.notified();
            tokio::pin!(notified);
            // Register first, then check: a send between the two still wakes us.
            notified.as_mut().enable();
            if shared.version.load(Ordering::Acquire) != self.seen {
                return Ok(self.latest());
            }
            if shared.closed.load(Ordering::Acquire) {
                return Err(Closed);
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn receivers_get_the_newest_value_and_see_the_close() {
        let (tx, mut rx) = channel(0);
        tx.send(1);
        tx.send(2);
        assert_eq!(rx.changed().await, Ok(2), "only the newest");
        let waiting = tokio::spawn(async move {
            let v = rx.changed().await;
            (v, rx.changed().await)
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        tx.send(3);
        tokio::time::sleep(Duration::from_millis(10)).await;
        drop(tx);
        assert_eq!(waiting.await.unwrap(), (Ok(3), Err(Closed)));
    }

    /// Waiters are woken in the order they started waiting, every time.
    #[tokio::test(flavor = "current_thread")]
    async fn wakes_in_a_stable_order() {
        let (tx, rx) = channel(0u32);
        let order = Arc::new(Mutex::new(Vec::new()));
        for id in 0..50 {
            let mut rx = rx.clone();
            let order = Arc::clone(&order);
            tokio::spawn(async move {
                while rx.changed().await.is_ok() {
                    order.lock().unwrap().push(id);
                }
            });
            // Let each one start waiting before the next is spawned.
            tokio::task::yield_now().await;
        }
        for v in 1..=5 {
            tx.send(v);
            for _ in 0..10 {
                tokio::task::yield_now().await;
            }
        }
        let order = order.lock().unwrap().clone();
        assert_eq!(order.len(), 250);
        for round in order.chunks(50) {
            assert_eq!(round, (0..50).collect::<Vec<_>>());
        }
    }
}
