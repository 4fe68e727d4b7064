//! Hosts that refused https while plain http worked, remembered for a while so a re-run or
//! the www fallback goes straight to http instead of paying for the refused handshake again.
//!
//! Bounded: at most [`MAX_HOSTS`] names; the oldest go first. Every entry lives the same
//! time, so insertion order is expiry order and a queue finds what to drop without a scan.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Hosts remembered at most, whatever the TTL: a bound on memory, ~100 bytes each.
pub const MAX_HOSTS: usize = 10_000;

/// Each host's expiry, and the same entries in insertion (= expiry) order; the queue may
/// hold a stale entry for a host remembered again, which the map tells apart.
type Entries = (HashMap<String, Instant>, VecDeque<(String, Instant)>);

/// The hosts whose https is known to be refused, each until its entry expires.
pub struct HttpsRefusals {
    /// How long a host is remembered.
    ttl: Duration,
    /// Hosts remembered at most.
    cap: usize,
    /// The remembered hosts.
    inner: Mutex<Entries>,
}

impl HttpsRefusals {
    /// A memory of `ttl` (zero: remember nothing) holding at most `cap` hosts.
    pub fn new(ttl: Duration, cap: usize) -> Self {
        Self {
            ttl,
            cap,
            inner: Mutex::new((HashMap::new(), VecDeque::new())),
        }
    }

    /// Whether `host` refused https recently enough that http should be tried first.
    pub fn remembers(&self, host: &str) -> bool {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner
            .0
            .get(host)
            .is_some_and(|until| *until > Instant::now())
    }

    /// `host` refused https and answered http: remember it for the TTL.
    pub fn remember(&self, host: &str) {
        if self.ttl.is_zero() || self.cap == 0 {
            return;
        }
        let now = Instant::now();
        let until = now + self.ttl;
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let (hosts, order) = &mut *inner;
        hosts.insert(host.to_owned(), until);
        order.push_back((host.to_owned(), until));
        while let Some((oldest, at)) = order.front() {
            if *at > now && order.len() <= self.cap {
                break;
            }
            if hosts.get(oldest) == Some(at) {
                hosts.remove(oldest);
            }
            order.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_for_the_ttl_and_at_most_cap_hosts() {
        let memory = HttpsRefusals::new(Duration::from_secs(600), 2);
        memory.remember("a.test");
        memory.remember("b.test");
        assert!(memory.remembers("a.test") && memory.remembers("b.test"));
        memory.remember("c.test");
        assert!(!memory.remembers("a.test"), "the oldest goes past the cap");
        assert!(memory.remembers("b.test") && memory.remembers("c.test"));

        let brief = HttpsRefusals::new(Duration::from_millis(20), 10);
        brief.remember("a.test");
        assert!(brief.remembers("a.test"));
        std::thread::sleep(Duration::from_millis(30));
        assert!(!brief.remembers("a.test"), "forgotten once expired");

        let off = HttpsRefusals::new(Duration::ZERO, 10);
        off.remember("a.test");
        assert!(!off.remembers("a.test"));
    }
}
