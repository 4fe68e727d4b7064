//! Leases no request holds any more: parked a moment for this process's next request to the
//! same host and address, then given back to Redis, many in one command.
//!
//! Per site, the finder asks for a slot for its page over https, then over http, then for its
//! icon, all on one host and address and milliseconds apart: one lease serves them all, where
//! each used to cost a take and a give-back, two round trips.

use super::{Fleet, Mode};
use fred::prelude::LuaInterface;
use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// How long after its take a lease may still serve another request: Redis counts it this much
/// longer than the longest hold, so whichever request takes it within the window is covered.
pub const REUSE_WINDOW: Duration = Duration::from_secs(1);
/// How long a lease freed by a request waits for the next request to the same host and
/// address before it is given back: a site's next request comes within a few milliseconds.
pub const PARK: Duration = Duration::from_millis(10);
/// How often due leases are given back, all in one command.
const GIVE_BACK_EVERY: Duration = Duration::from_millis(5);
/// The most leases one command gives back.
const GIVE_BACK_MOST: usize = 256;

/// Gives tokens' slots back. KEYS: each token's host set and address set, in turn. ARGV: the
/// tokens.
pub(super) const GIVE_BACK: &str = r"
for i = 1, #ARGV do
  redis.call('ZREM', KEYS[2 * i - 1], ARGV[i])
  redis.call('ZREM', KEYS[2 * i], ARGV[i])
end
return #ARGV
";

/// A lease a request gave up, kept for the next one.
struct Parked {
    token: String,
    /// When it was taken.
    taken: Instant,
    /// When it was given up.
    at: Instant,
}

/// The leases of this process that no request holds.
#[derive(Default)]
pub(super) struct Spare {
    /// Parked, by the sets they are members of.
    parked: HashMap<[String; 2], Vec<Parked>>,
    /// To give back at the next tick: (sets, token).
    due: Vec<([String; 2], String)>,
}

impl Spare {
    /// A parked lease on `keys` young enough to serve a request now: its token and when it
    /// was taken. Older ones found on the way are given back.
    pub(super) fn reuse(&mut self, keys: &[String; 2], now: Instant) -> Option<(String, Instant)> {
        let parked = self.parked.get_mut(keys)?;
        let mut found = None;
        while let Some(lease) = parked.pop() {
            if now < lease.taken + REUSE_WINDOW {
                found = Some((lease.token, lease.taken));
                break;
            }
            self.due.push((keys.clone(), lease.token));
        }
        if parked.is_empty() {
            self.parked.remove(keys);
        }
        found
    }

    /// A lease no request holds now: parked when it was taken at `taken` (in `fleet` mode),
    /// else given back at the next tick.
    pub(super) fn put(&mut self, keys: [String; 2], token: String, taken: Option<Instant>) {
        let now = Instant::now();
        match taken {
            Some(taken) if now < taken + REUSE_WINDOW => {
                self.parked.entry(keys).or_default().push(Parked {
                    token,
                    taken,
                    at: now,
                });
            }
            _ => self.due.push((keys, token)),
        }
    }

    /// Takes the leases to give back now: the due ones, and the ones parked [`PARK`] ago or
    /// too old to serve (every parked one when `all`).
    fn take_due(&mut self, now: Instant, all: bool) -> Vec<([String; 2], String)> {
        let mut due = std::mem::take(&mut self.due);
        self.parked.retain(|keys, parked| {
            parked.retain_mut(|lease| {
                let keep = !all && now < lease.at + PARK && now < lease.taken + REUSE_WINDOW;
                if !keep {
                    due.push((keys.clone(), std::mem::take(&mut lease.token)));
                }
                keep
            });
            !parked.is_empty()
        });
        due
    }

    fn is_empty(&self) -> bool {
        self.due.is_empty() && self.parked.is_empty()
    }
}

/// Background: every [`GIVE_BACK_EVERY`] while some lease is spare, gives back the due ones in
/// one command; waits for `wake` otherwise. Ends with the fleet.
pub(super) async fn give_back_loop(fleet: Weak<Fleet>, wake: Arc<Notify>) {
    loop {
        wake.notified().await;
        loop {
            tokio::time::sleep(GIVE_BACK_EVERY).await;
            let Some(fleet) = fleet.upgrade() else { return };
            let (due, more) = {
                let mut state = fleet.state();
                let all = !matches!(state.mode, Mode::Fleet);
                let due = state.spare.take_due(Instant::now(), all);
                (due, !state.spare.is_empty())
            };
            if !due.is_empty() {
                give_back(&fleet, due).await;
                // Slots of other hosts at the same address, or of other processes' waiters,
                // are free now in Redis: whoever waits here may ask again.
                fleet.released.notify_waiters();
            }
            if !more {
                break;
            }
        }
    }
}

/// Gives `leases` back, a best effort: a lease not given back ends when it runs out.
async fn give_back(fleet: &Fleet, leases: Vec<([String; 2], String)>) {
    use fred::prelude::ClientLike;
    if !fleet.client.is_connected() {
        return;
    }
    for chunk in leases.chunks(GIVE_BACK_MOST) {
        let keys: Vec<String> = chunk.iter().flat_map(|(k, _)| k.iter().cloned()).collect();
        let tokens: Vec<String> = chunk.iter().map(|(_, t)| t.clone()).collect();
        if let Err(e) = fleet
            .client
            .eval::<i64, _, _, _>(GIVE_BACK, keys, tokens)
            .await
        {
            tracing::debug!(error = %e, "politeness slots not given back; their leases end them");
        }
    }
}
