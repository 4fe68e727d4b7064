//! Politeness slots: a semaphore per host name or address, shared by every request of the
//! process, and the seam through which a fleet shares them ([`FleetSlots`]).

use futures::future::BoxFuture;
use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, Weak};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Politeness: at most `limit` requests in flight per key (a host name, or a resolved address)
/// across the process, whichever domains they serve (icons on a shared CDN, `www.` redirects,
/// many names on one shared server).
pub(super) struct Slots<K> {
    limit: usize,
    /// Semaphores live while some request holds a permit; a key nobody is fetching costs a
    /// dead weak entry, pruned as the map grows.
    keys: Mutex<HashMap<K, Weak<Semaphore>>>,
}

/// Live entries kept before dead ones are pruned.
const SLOTS_PRUNE_AT: usize = 4096;

impl<K: Hash + Eq + Clone> Slots<K> {
    pub(super) fn new(limit: usize) -> Self {
        Self {
            limit: limit.max(1),
            keys: Mutex::new(HashMap::new()),
        }
    }

    pub(super) async fn acquire(&self, key: &K) -> OwnedSemaphorePermit {
        let semaphore = {
            let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
            match keys.get(key).and_then(Weak::upgrade) {
                Some(semaphore) => semaphore,
                None => {
                    if keys.len() >= SLOTS_PRUNE_AT {
                        keys.retain(|_, s| s.strong_count() > 0);
                    }
                    let semaphore = Arc::new(Semaphore::new(self.limit));
                    keys.insert(key.clone(), Arc::downgrade(&semaphore));
                    semaphore
                }
            }
        };
        semaphore
            .acquire_owned()
            .await
            .expect("slot semaphores are never closed")
    }
}

/// Politeness shared with the other processes of a fleet: after this process's own slots, a
/// request takes a fleet-wide slot with its host and its address together, so the limits hold
/// across every worker. Absent on the embedded default, where the process's own slots are the
/// whole limit. The implementation lives outside the finder (`crate::politeness`), so the
/// finder names no transport.
pub trait FleetSlots: Send + Sync {
    /// Waits until this request may go to `host` at `address` as far as the fleet is
    /// concerned; the slot is held until the returned value is dropped. Waiting here is our
    /// queue, so the caller wraps it in [`crate::finder::clock::Deadline::wait_for`].
    fn acquire(&self, host: &str, address: IpAddr) -> BoxFuture<'static, FleetSlot>;
}

/// A fleet slot held by one request; dropping it gives the slot back.
pub type FleetSlot = Box<dyn Send + Sync>;
