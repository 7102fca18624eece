//! The in-process fan-out: every open `/v1/events` connection of this pod, by user.
//!
//! Delivery never waits on a client. Each connection has a bounded queue; a
//! push that finds it full removes the connection and cancels it, so a client
//! that stops reading is dropped instead of slowing everyone else.
//!
//! Connections are capped per user and per pod ([`Caps`]): each one costs a queue,
//! a task and a share of every ticket push, so one user cannot open hundreds.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use axum::extract::ws::Utf8Bytes;
use chrono::{DateTime, Utc};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::telemetry::metrics;

/// One queue item: the JSON texts of one or more client events, shared by every
/// connection that receives them (a ticket flush reaches everyone as one item), and the
/// commit times of its order updates (timed again when the item is written to a socket).
/// It derefs to the texts.
#[derive(Clone)]
pub struct Batch(Arc<Items>);

struct Items {
    texts: Box<[Utf8Bytes]>,
    commits: Box<[DateTime<Utc>]>,
}

impl Batch {
    /// Order updates, with the commit (`processedAt`) of each that has one.
    pub fn orders(texts: Vec<Utf8Bytes>, commits: Vec<DateTime<Utc>>) -> Self {
        Batch(Arc::new(Items { texts: texts.into(), commits: commits.into() }))
    }

    /// The commits of the batch's order updates (none for stock).
    pub fn commits(&self) -> &[DateTime<Utc>] {
        &self.0.commits
    }
}

impl std::ops::Deref for Batch {
    type Target = [Utf8Bytes];

    fn deref(&self) -> &[Utf8Bytes] {
        &self.0.texts
    }
}

/// Texts without commit times (stock).
impl FromIterator<Utf8Bytes> for Batch {
    fn from_iter<I: IntoIterator<Item = Utf8Bytes>>(texts: I) -> Self {
        Batch::orders(texts.into_iter().collect(), Vec::new())
    }
}

/// Why a connection's token was cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Its queue was full: it reads slower than events arrive.
    TooSlow,
    /// The server is shutting down.
    Shutdown,
}

struct Slot {
    id: u64,
    queue: mpsc::Sender<Batch>,
    cancel: CancellationToken,
}

/// How many connections one user, and the whole pod, may hold (`usize::MAX`: no cap).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    /// Per user.
    pub per_user: usize,
    /// Per pod.
    pub per_pod: usize,
}

impl Caps {
    /// No cap at all.
    pub const NONE: Caps = Caps { per_user: usize::MAX, per_pod: usize::MAX };

    /// Caps from settings in which 0 means none.
    pub fn new(per_user: usize, per_pod: usize) -> Self {
        let cap = |n: usize| if n == 0 { usize::MAX } else { n };
        Caps { per_user: cap(per_user), per_pod: cap(per_pod) }
    }
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The user holds [`Caps::per_user`] already.
    User,
    /// The pod holds [`Caps::per_pod`] already.
    Pod,
}

/// The connections of this pod, grouped by user so an order event finds its owner in one lookup.
pub struct Hub {
    users: RwLock<HashMap<Arc<str>, Vec<Slot>>>,
    /// Connections in `users`, kept with it under its lock.
    open: AtomicUsize,
    caps: Caps,
    next_id: AtomicU64,
    buffer: usize,
    shutdown: CancellationToken,
}

/// A registered connection: its queue and its cancellation. Dropping it unregisters.
pub struct Subscription {
    hub: Arc<Hub>,
    user: Arc<str>,
    id: u64,
    /// Batches to send, in order.
    pub queue: mpsc::Receiver<Batch>,
    /// Cancelled when the hub drops this connection (too slow) or the server stops.
    pub cancel: CancellationToken,
}

impl Subscription {
    /// Why the connection was cancelled; `None` while it was not.
    pub fn ended(&self) -> Option<Ended> {
        if !self.cancel.is_cancelled() {
            None
        } else if self.hub.shutdown.is_cancelled() {
            Some(Ended::Shutdown)
        } else {
            Some(Ended::TooSlow)
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub.remove(&self.user, self.id);
        metrics().ws_clients.dec();
    }
}

impl Hub {
    /// A hub whose connections each queue at most `buffer` batches, with no caps.
    pub fn new(buffer: usize) -> Arc<Self> {
        Self::with_caps(buffer, Caps::NONE)
    }

    /// A hub whose connections each queue at most `buffer` batches, within `caps`.
    pub fn with_caps(buffer: usize, caps: Caps) -> Arc<Self> {
        Arc::new(Self {
            users: RwLock::default(),
            open: AtomicUsize::new(0),
            caps,
            next_id: AtomicU64::new(0),
            buffer: buffer.max(1),
            shutdown: CancellationToken::new(),
        })
    }

    /// Registers a connection of `user`, or refuses it when a cap is reached
    /// (counted in `tps_api_events_refused_total{by="user"|"pod"}`).
    pub fn try_subscribe(self: &Arc<Self>, user: &str) -> Result<Subscription, Refused> {
        let (tx, rx) = mpsc::channel(self.buffer);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let cancel = self.shutdown.child_token();
        let slot = Slot { id, queue: tx, cancel: cancel.clone() };
        let mut users = self.write();
        let refused = if self.open.load(Ordering::Relaxed) >= self.caps.per_pod {
            Some(Refused::Pod)
        } else if users.get(user).map_or(0, Vec::len) >= self.caps.per_user {
            Some(Refused::User)
        } else {
            None
        };
        if let Some(refused) = refused {
            drop(users);
            let by = if refused == Refused::User { "user" } else { "pod" };
            metrics().events_refused.get(by).inc();
            return Err(refused);
        }
        let user: Arc<str> = match users.get_key_value(user) {
            Some((known, _)) => known.clone(),
            None => Arc::from(user),
        };
        users.entry(user.clone()).or_default().push(slot);
        self.open.fetch_add(1, Ordering::Relaxed);
        drop(users);
        metrics().ws_clients.inc();
        Ok(Subscription { hub: self.clone(), user, id, queue: rx, cancel })
    }

    /// Registers a connection of `user` whatever the caps (tests, internal use).
    pub fn subscribe(self: &Arc<Self>, user: &str) -> Subscription {
        let (tx, rx) = mpsc::channel(self.buffer);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let cancel = self.shutdown.child_token();
        let user: Arc<str> = Arc::from(user);
        let slot = Slot { id, queue: tx, cancel: cancel.clone() };
        self.write().entry(user.clone()).or_default().push(slot);
        self.open.fetch_add(1, Ordering::Relaxed);
        metrics().ws_clients.inc();
        Subscription { hub: self.clone(), user, id, queue: rx, cancel }
    }

    /// Queues `batch` on every connection of `user`.
    pub fn to_user(&self, user: &str, batch: &Batch) {
        let full = self.read().get(user).map(|slots| offer(slots, batch)).unwrap_or_default();
        for id in full {
            self.drop_slow(user, id);
        }
    }

    /// Queues `batch` on every connection, [`PACE`] connections at a time, yielding between
    /// them. Each queued connection wakes its task; waking 10,000 at once would put an order
    /// update woken just after them behind all 10,000 writes, so the connections are woken a
    /// slice at a time and an order update waits for one slice at most.
    pub async fn to_everyone(&self, batch: &Batch) {
        let everyone: Vec<(Arc<str>, u64, mpsc::Sender<Batch>)> = self
            .read()
            .iter()
            .flat_map(|(user, slots)| slots.iter().map(move |s| (user.clone(), s.id, s.queue.clone())))
            .collect();
        for (n, slice) in everyone.chunks(PACE).enumerate() {
            if n > 0 {
                tokio::task::yield_now().await;
            }
            for (user, id, queue) in slice {
                if let Err(mpsc::error::TrySendError::Full(_)) = queue.try_send(batch.clone()) {
                    self.drop_slow(user, *id);
                }
            }
        }
    }

    /// Cancels every connection, now and from now on: the server is stopping.
    pub fn close_all(&self) {
        self.shutdown.cancel();
    }

    /// Waits until every connection has ended, at most `within`; whether they all did.
    /// After [`Hub::close_all`], each WebSocket sends its close frame (at most 1 s) and ends.
    pub async fn all_ended(&self, within: std::time::Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        while !self.is_empty() {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        true
    }

    /// Open connections.
    pub fn len(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Whether no connection is open (users without connections are removed).
    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }

    /// Whether `user` has a connection here.
    pub fn has_user(&self, user: &str) -> bool {
        self.read().contains_key(user)
    }

    fn drop_slow(&self, user: &str, id: u64) {
        if let Some(slot) = self.remove(user, id) {
            slot.cancel.cancel();
            metrics().events_dropped_clients.get("slow").inc();
        }
    }

    fn remove(&self, user: &str, id: u64) -> Option<Slot> {
        let mut users = self.write();
        let slots = users.get_mut(user)?;
        let slot = slots.iter().position(|s| s.id == id).map(|i| slots.swap_remove(i));
        if slots.is_empty() {
            users.remove(user);
        }
        if slot.is_some() {
            self.open.fetch_sub(1, Ordering::Relaxed);
        }
        slot
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<Arc<str>, Vec<Slot>>> {
        self.users.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<Arc<str>, Vec<Slot>>> {
        self.users.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// Connections a broadcast wakes before it lets other tasks run (see [`Hub::to_everyone`]).
pub const PACE: usize = 256;

/// Tries each slot without waiting; returns the ids of those whose queue is full.
fn offer(slots: &[Slot], batch: &Batch) -> Vec<u64> {
    slots
        .iter()
        .filter(|slot| matches!(slot.queue.try_send(batch.clone()), Err(mpsc::error::TrySendError::Full(_))))
        .map(|slot| slot.id)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(text: &str) -> Batch {
        std::iter::once(Utf8Bytes::from(text)).collect()
    }

    #[tokio::test]
    async fn order_batches_reach_the_owner_only_and_ticket_batches_everyone() {
        let hub = Hub::new(8);
        let mut alice = hub.subscribe("alice");
        let mut alice_too = hub.subscribe("alice");
        let mut bob = hub.subscribe("bob");
        hub.to_user("alice", &batch("mine"));
        hub.to_user("carol", &batch("nobody's here"));
        hub.to_everyone(&batch("stock")).await;
        for sub in [&mut alice, &mut alice_too] {
            assert_eq!(sub.queue.try_recv().unwrap()[0], "mine");
            assert_eq!(sub.queue.try_recv().unwrap()[0], "stock");
        }
        assert_eq!(bob.queue.try_recv().unwrap()[0], "stock");
        assert!(bob.queue.try_recv().is_err());
    }

    #[tokio::test]
    async fn a_full_queue_drops_that_client_and_no_other() {
        let hub = Hub::new(2);
        let slow = hub.subscribe("slow");
        let mut fine = hub.subscribe("fine");
        for i in 0..3 {
            hub.to_everyone(&batch(&i.to_string())).await;
            assert_eq!(fine.queue.try_recv().unwrap()[0], i.to_string().as_str());
        }
        assert_eq!(slow.ended(), Some(Ended::TooSlow));
        assert!(fine.ended().is_none());
        assert!(!hub.has_user("slow"));
        assert_eq!(hub.len(), 1);
    }

    #[tokio::test]
    async fn a_broadcast_to_more_than_a_slice_reaches_everyone_and_yields_between_slices() {
        let hub = Hub::new(2);
        let mut subs: Vec<Subscription> =
            (0..PACE * 3 + 1).map(|i| hub.subscribe(&format!("u{i}"))).collect();
        // A task queued before the broadcast runs before its second slice is offered.
        let (tx, rx) = tokio::sync::oneshot::channel();
        let probe = hub.clone();
        let local = tokio::task::LocalSet::new();
        local
            .run_until(async {
                tokio::task::spawn_local(async move {
                    let offered = probe.read().values().flatten().filter(|s| s.queue.capacity() < 2).count();
                    let _ = tx.send(offered);
                });
                hub.to_everyone(&batch("stock")).await;
            })
            .await;
        assert_eq!(rx.await.unwrap(), PACE, "the first slice only, then a yield");
        for sub in &mut subs {
            assert_eq!(sub.queue.try_recv().unwrap()[0], "stock");
        }
    }

    #[test]
    fn caps_refuse_per_user_then_per_pod_and_free_up_on_drop() {
        let hub = Hub::with_caps(2, Caps::new(2, 3));
        let a1 = hub.try_subscribe("a").unwrap();
        let _a2 = hub.try_subscribe("a").unwrap();
        assert_eq!(hub.try_subscribe("a").err(), Some(Refused::User));
        let _b1 = hub.try_subscribe("b").unwrap();
        assert_eq!(hub.try_subscribe("c").err(), Some(Refused::Pod));
        assert_eq!(hub.len(), 3);
        drop(a1);
        assert_eq!(hub.len(), 2);
        assert!(hub.try_subscribe("c").is_ok(), "a closed connection frees its place");
        assert_eq!(Caps::new(0, 0), Caps::NONE);
    }

    #[test]
    fn dropping_unregisters_and_close_all_ends_everyone_for_good() {
        let hub = Hub::new(2);
        drop(hub.subscribe("gone"));
        assert!(hub.is_empty());
        let before = hub.subscribe("a");
        hub.close_all();
        let after = hub.subscribe("b");
        assert_eq!(before.ended(), Some(Ended::Shutdown));
        assert_eq!(after.ended(), Some(Ended::Shutdown));
    }
}
