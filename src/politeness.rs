//! Politeness across a fleet: `FETCH_PER_HOST_CONCURRENCY` and `FETCH_PER_ADDRESS_CONCURRENCY`
//! held by every process together, through leased counters in Redis; each process's share of
//! them while Redis is down; nothing at all on the embedded default.
//!
//! The finder asks for a fleet slot through its seam ([`FleetSlots`]), after its own
//! per-process slots, with the host and the address of one request. The guarantees, in prose:
//!
//! - **Leases, not counters.** A slot is a member of a sorted set per host and per address
//!   (`{REDIS_PREFIX}:polite:host:NAME`, `…:addr:IP`), scored by when its lease ends on Redis's
//!   own clock. One Lua script drops expired members and admits the request into both sets
//!   only when both have room, so a request never holds one fleet slot while waiting for the
//!   other. A lease lasts as long as a request can hold its slot
//!   ([`crate::finder::FinderConfig::max_slot_hold`]) plus [`spare::REUSE_WINDOW`]; a process
//!   killed mid-request leaks its slots for that long, never longer.
//! - **One lease for a site's next request.** A lease a request gives up stays with this
//!   process for a moment ([`spare::PARK`]): the next request of this process to the same host
//!   and address (a site's page over http after https, then its icon, milliseconds apart) takes
//!   it without asking Redis, as long as it is at most [`spare::REUSE_WINDOW`] old, so its rest
//!   still covers the longest hold. Meanwhile it counts in Redis as held, which errs on the
//!   polite side. Only in `fleet` mode.
//! - **Given back together**, off the request's path: every few milliseconds one command
//!   `ZREM`s all the leases due (best effort: one not given back ends with its lease).
//! - **Waiting is ours.** A full set is asked again after a short, growing, jittered nap (or
//!   at once when a slot of this process is given back), so waiters do not hammer Redis; the
//!   finder waits inside its `Deadline::wait_for`, off the site's clock.
//! - **Without Redis, a share.** A failed or slow command turns the process to `fallback`:
//!   each process may hold `max(1, limit / live workers)` per host and per address, where the
//!   live workers are the distinct lease owners of the queue's rows in the database (read
//!   every few seconds, with Redis or without: it needs no Redis, it follows workers that come
//!   and go, and a killed worker keeps counting until its rows' leases end, which errs on the
//!   polite side). The count kept is the most seen since the process started, because a
//!   worker between two claims holds no lease, and an outage that begins while the fleet is
//!   idle must not give each worker the whole limit; a worker that only starts during the
//!   outage is counted at the next read, a few seconds later. Until the database has answered,
//!   the share is 1. For one lease after the switch no slot is given at all: slots the fleet
//!   gave out before Redis went away may still be in use, and no process can see them any more.
//! - **Back to the fleet, carefully.** When Redis runs the script again (a probe takes and
//!   gives back a lease on a key of its own: a PING would pass on a Redis that refuses
//!   writes), for one lease (and two probe intervals) a slot needs both the fleet's lease and the share, since other processes
//!   may not have noticed yet and still give slots Redis does not count; then the fleet alone.
//! - The switch is logged once each way (a warning, then an info), shown in `/readyz`
//!   (`politeness`), and counted in `/metrics` with the requests that waited for a fleet slot.

mod spare;

use crate::events::redis_builder;
use crate::finder::fetch::{FleetSlot, FleetSlots};
use crate::metrics::Metrics;
use fred::prelude::{ClientLike, LuaInterface};
use futures::future::BoxFuture;
use prometheus::IntCounter;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// Drops expired leases from both sets, then admits the token into both, or neither when
/// either is full. KEYS: host set, address set. ARGV: lease ms, host limit, address limit,
/// token. Redis's own clock scores the leases, so the processes' clocks need not agree.
const TAKE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2])
  or redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[3]) then
  return 0
end
for i = 1, 2 do
  redis.call('ZADD', KEYS[i], now + lease, ARGV[4])
  redis.call('PEXPIRE', KEYS[i], lease)
end
return 1
";

/// One politeness command may take this long before Redis counts as away: a slot is on the
/// path of a request, so a slow Redis must not stall fetching for long.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(1);
/// The first and the longest nap before asking again for a full set.
const NAP_MIN: Duration = Duration::from_millis(20);
const NAP_MAX: Duration = Duration::from_millis(320);
/// How often the background task probes Redis (in fallback) and checks the connection.
const PROBE: Duration = Duration::from_secs(1);
/// How often the live workers are read from the database while Redis is away.
const WORKERS_EVERY: Duration = Duration::from_secs(3);
/// How long start-up waits for the first connection before it starts in fallback.
const CONNECT_WAIT: Duration = Duration::from_secs(3);

/// Counts the worker processes alive now without Redis (the database's distinct lease
/// owners); handed in by `app`, so this module names no store.
pub type LiveWorkers = Arc<dyn Fn() -> BoxFuture<'static, anyhow::Result<usize>> + Send + Sync>;

/// What fleet-wide politeness needs: where Redis is, and the limits and the lease.
pub struct PolitenessSettings {
    /// `REDIS_URL`.
    pub redis_url: String,
    /// `REDIS_CA_CERT`, for `rediss://`.
    pub ca_cert: Option<PathBuf>,
    /// `REDIS_PREFIX`: every key starts with it.
    pub prefix: String,
    /// `FETCH_PER_HOST_CONCURRENCY`, now for the whole fleet.
    pub per_host: usize,
    /// `FETCH_PER_ADDRESS_CONCURRENCY`, now for the whole fleet.
    pub per_address: usize,
    /// How long a slot's lease lasts: the longest a request holds its slot.
    pub lease: Duration,
}

/// This process's politeness across the fleet: fleet-wide through Redis, or process-local;
/// cheap to clone.
#[derive(Clone)]
pub struct Politeness {
    fleet: Option<Arc<Fleet>>,
}

impl Politeness {
    /// The embedded default: the finder's own per-process slots are the whole limit.
    pub fn process_local() -> Self {
        Self { fleet: None }
    }

    /// Fleet-wide limits through Redis. Waits a moment for the first connection; without one
    /// the process starts in fallback, and the fleet's slots follow when Redis comes.
    pub async fn redis(
        settings: PolitenessSettings,
        metrics: &Metrics,
        live_workers: LiveWorkers,
    ) -> anyhow::Result<Self> {
        let client = redis_builder(
            &settings.redis_url,
            settings.ca_cert.as_deref(),
            COMMAND_TIMEOUT,
        )?
        .build()?;
        // The connection task runs detached for the life of the process, reconnecting forever.
        drop(client.connect());
        let connected = tokio::time::timeout(CONNECT_WAIT, client.wait_for_connect()).await;
        let waits = IntCounter::new(
            "politeness_fleet_waits_total",
            "Requests that waited for a fleet-wide politeness slot (Redis or the fallback share)",
        )?;
        let fallbacks = IntCounter::new(
            "politeness_fallbacks_total",
            "Times this process fell back to its share of the politeness limits (Redis away)",
        )?;
        metrics.register(Box::new(waits.clone()));
        metrics.register(Box::new(fallbacks.clone()));
        let fleet = Arc::new(Fleet {
            client,
            keys: format!("{}:polite", settings.prefix),
            per_host: settings.per_host.max(1),
            per_address: settings.per_address.max(1),
            lease: settings.lease + spare::REUSE_WINDOW,
            state: Mutex::new(State::default()),
            released: Notify::new(),
            spare_wake: Arc::new(Notify::new()),
            live_workers,
            waits,
            fallbacks,
            redis_errors: metrics.redis_errors.clone(),
        });
        if !matches!(connected, Ok(Ok(()))) {
            fleet.fall_back("not connected at start");
        }
        tokio::spawn(watch(Arc::downgrade(&fleet)));
        tokio::spawn(spare::give_back_loop(
            Arc::downgrade(&fleet),
            fleet.spare_wake.clone(),
        ));
        Ok(Self { fleet: Some(fleet) })
    }

    /// The finder's seam, when the process is one of a fleet.
    pub fn slots(&self) -> Option<Arc<dyn FleetSlots>> {
        self.fleet
            .as_ref()
            .map(|f| Arc::new(Handle(f.clone())) as Arc<dyn FleetSlots>)
    }

    /// What `/readyz` shows: `{"mode": "process-local" | "fleet" | "recovering" |
    /// "fallback"}`, with the share (and the live workers it was made from) when it applies,
    /// and a fixed word for why it fell back.
    pub fn status(&self) -> Value {
        let Some(fleet) = &self.fleet else {
            return json!({ "mode": "process-local" });
        };
        let mut state = fleet.state();
        state.settle(Instant::now());
        let share = |state: &State| {
            let [per_host, per_address] = fleet.shares(state);
            json!({ "per_host": per_host, "per_address": per_address })
        };
        match &state.mode {
            Mode::Fleet => json!({ "mode": "fleet" }),
            Mode::Recovering { .. } => json!({
                "mode": "recovering",
                "share": share(&state),
                "live_workers": state.workers,
            }),
            Mode::Fallback { .. } => json!({
                "mode": "fallback",
                "reason": "redis_unreachable",
                "share": share(&state),
                "live_workers": state.workers,
            }),
        }
    }
}

/// The shared part of fleet-wide politeness.
struct Fleet {
    client: fred::clients::Client,
    /// The start of every key: `{REDIS_PREFIX}:polite`.
    keys: String,
    per_host: usize,
    per_address: usize,
    /// How long Redis counts a slot: the longest hold plus [`spare::REUSE_WINDOW`].
    lease: Duration,
    state: Mutex<State>,
    /// Rung when a slot of this process is given back, so a waiter here asks again at once
    /// rather than at the end of its nap.
    released: Notify,
    /// Rung when a lease is parked or due to be given back.
    spare_wake: Arc<Notify>,
    live_workers: LiveWorkers,
    waits: IntCounter,
    fallbacks: IntCounter,
    /// The service's count of failed Redis commands, which politeness's failures join.
    redis_errors: IntCounter,
}

#[derive(Default)]
struct State {
    mode: Mode,
    /// Live workers: the most the database has counted since this process started (a
    /// worker between two claims holds no lease, and a fleet idle when Redis goes away
    /// must not look like one worker); `None` until it has answered.
    workers: Option<usize>,
    /// When they were last read.
    workers_read: Option<Instant>,
    /// Slots this process holds now, per set, whatever mode gave them: what the share is
    /// checked against.
    held: HashMap<String, usize>,
    /// Leases no request holds: parked for the next request, or due to be given back.
    spare: spare::Spare,
}

#[derive(Default)]
enum Mode {
    /// Redis counts every slot.
    #[default]
    Fleet,
    /// Redis failed at `since`; no slot for one lease after it, then the share.
    Fallback { since: Instant },
    /// Redis answered again; until `until`, a slot needs the fleet's lease and the share.
    Recovering { until: Instant },
}

impl State {
    /// Ends a recovery whose time is up.
    fn settle(&mut self, now: Instant) {
        if let Mode::Recovering { until } = self.mode
            && now >= until
        {
            self.mode = Mode::Fleet;
            tracing::debug!("fleet-wide politeness: back on Redis's counters alone");
        }
    }

    /// Counts one more slot held in both sets, if `shares` allow it (`None`: no cap).
    fn take(&mut self, keys: &[String; 2], shares: Option<[usize; 2]>) -> bool {
        if let Some(shares) = shares {
            let full = keys
                .iter()
                .zip(shares)
                .any(|(k, share)| self.held.get(k).copied().unwrap_or(0) >= share);
            if full {
                return false;
            }
        }
        for k in keys {
            *self.held.entry(k.clone()).or_default() += 1;
        }
        true
    }

    fn give_back(&mut self, keys: &[String; 2]) {
        for k in keys {
            if let Some(n) = self.held.get_mut(k) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.held.remove(k);
                }
            }
        }
    }
}

/// What one look at the slots decided.
enum Step {
    Got,
    /// Look again after at most this long.
    Wait(Duration),
}

impl Fleet {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// This process's share of each limit: `max(1, limit / live workers)`, 1 while the
    /// number of workers is unknown.
    fn shares(&self, state: &State) -> [usize; 2] {
        let share = |limit: usize| match state.workers {
            Some(n) => (limit / n.max(1)).max(1),
            None => 1,
        };
        [share(self.per_host), share(self.per_address)]
    }

    /// Turns to fallback (once: a process already there stays as it is).
    fn fall_back(&self, why: &str) {
        let mut state = self.state();
        if matches!(state.mode, Mode::Fallback { .. }) {
            return;
        }
        state.mode = Mode::Fallback {
            since: Instant::now(),
        };
        // Read the fleet again at once; the most seen so far stays the floor of the count.
        state.workers_read = None;
        self.fallbacks.inc();
        tracing::warn!(
            error = why,
            lease = ?self.lease,
            "Redis unreachable: politeness falls back to this process's share of each limit, after one lease"
        );
    }

    /// Waits for a fleet slot for the sets `keys`.
    async fn acquire(self: Arc<Self>, keys: [String; 2]) -> FleetSlot {
        let mut held = Held {
            fleet: self.clone(),
            keys,
            token: uuid::Uuid::new_v4().simple().to_string(),
            counted: false,
            in_redis: false,
            taken: None,
        };
        let mut nap = NAP_MIN;
        let mut waited = false;
        loop {
            match self.step(&mut held).await {
                Step::Got => {
                    if waited {
                        self.waits.inc();
                    }
                    return Box::new(held);
                }
                Step::Wait(at_most) => {
                    waited = true;
                    let jittered = nap.mul_f64(rand::random_range(0.5..=1.0));
                    tokio::select! {
                        () = tokio::time::sleep(jittered.min(at_most)) => {}
                        () = self.released.notified() => {}
                    }
                    nap = (nap * 2).min(NAP_MAX);
                }
            }
        }
    }

    /// One look: counts the slot here (within the share when one applies), then asks Redis
    /// unless Redis is away.
    async fn step(&self, held: &mut Held) -> Step {
        let now = Instant::now();
        {
            let mut state = self.state();
            state.settle(now);
            let shares = self.shares(&state);
            match state.mode {
                Mode::Fallback { since } => {
                    let opens = since + self.lease;
                    if now < opens {
                        return Step::Wait(opens - now);
                    }
                    if state.take(&held.keys, Some(shares)) {
                        held.counted = true;
                        return Step::Got;
                    }
                    return Step::Wait(NAP_MAX);
                }
                Mode::Recovering { .. } => {
                    if !state.take(&held.keys, Some(shares)) {
                        return Step::Wait(NAP_MAX);
                    }
                }
                Mode::Fleet => {
                    state.take(&held.keys, None);
                    if let Some((token, taken)) = state.spare.reuse(&held.keys, now) {
                        held.counted = true;
                        held.token = token;
                        held.taken = Some(taken);
                        held.in_redis = true;
                        return Step::Got;
                    }
                }
            }
            held.counted = true;
        }
        // The script may add the token before its answer arrives; a wait given up meanwhile
        // (the find's deadline, an abort) must still give the slot back, not leave it to the
        // lease.
        held.in_redis = true;
        // The lease starts when the script runs, after this: counting from here errs early.
        let asked = Instant::now();
        match self.take_lease(held).await {
            Ok(true) => {
                held.taken = Some(asked);
                Step::Got
            }
            Ok(false) => {
                held.in_redis = false;
                held.uncount();
                Step::Wait(NAP_MAX)
            }
            Err(e) => {
                self.redis_errors.inc();
                // The script may have run before the answer was lost: give it back later.
                held.in_redis = true;
                held.uncount();
                self.fall_back(&e);
                Step::Wait(Duration::ZERO)
            }
        }
    }

    /// Whether Redis runs the politeness script now: a lease taken and given back on a key
    /// of its own, with no limit that could refuse it.
    async fn probe(&self) -> bool {
        let keys = vec![format!("{}:probe", self.keys); 2];
        let token = uuid::Uuid::new_v4().to_string();
        let unlimited = u32::MAX.to_string();
        let args = vec![
            self.lease.as_millis().to_string(),
            unlimited.clone(),
            unlimited,
            token.clone(),
        ];
        let took = self
            .client
            .eval::<i64, _, _, _>(TAKE, keys.clone(), args)
            .await;
        let gave = self
            .client
            .eval::<i64, _, _, _>(spare::GIVE_BACK, keys, token)
            .await;
        matches!(took, Ok(1)) && gave.is_ok()
    }

    async fn take_lease(&self, held: &Held) -> Result<bool, String> {
        if !self.client.is_connected() {
            return Err("not connected (reconnecting)".to_owned());
        }
        let lease_ms = self.lease.as_millis().to_string();
        let args = vec![
            lease_ms,
            self.per_host.to_string(),
            self.per_address.to_string(),
            held.token.clone(),
        ];
        self.client
            .eval::<i64, _, _, _>(TAKE, held.keys.to_vec(), args)
            .await
            .map(|admitted| admitted == 1)
            .map_err(|e| e.to_string())
    }
}

/// The finder's side of the seam.
struct Handle(Arc<Fleet>);

impl FleetSlots for Handle {
    fn acquire(&self, host: &str, address: IpAddr) -> BoxFuture<'static, FleetSlot> {
        let keys = [
            format!("{}:host:{host}", self.0.keys),
            format!("{}:addr:{address}", self.0.keys),
        ];
        Box::pin(self.0.clone().acquire(keys))
    }
}

/// A slot being taken or held; dropping it (the request done, or its wait given up) gives it
/// back here at once and in Redis soon after.
struct Held {
    fleet: Arc<Fleet>,
    keys: [String; 2],
    token: String,
    /// Counted in this process's `held`.
    counted: bool,
    /// Maybe a member of the sets in Redis.
    in_redis: bool,
    /// When its lease was taken (a moment before Redis ran the script), once it was.
    taken: Option<Instant>,
}

impl Held {
    fn uncount(&mut self) {
        if std::mem::take(&mut self.counted) {
            self.fleet.state().give_back(&self.keys);
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let was_counted = self.counted;
        self.uncount();
        // Not in Redis, or Redis away (the lease ends it): nothing to give back.
        if self.in_redis && self.fleet.client.is_connected() {
            let keys = std::mem::take(&mut self.keys);
            let token = std::mem::take(&mut self.token);
            let mut state = self.fleet.state();
            let fleet_mode = matches!(state.mode, Mode::Fleet);
            state
                .spare
                .put(keys, token, self.taken.filter(|_| fleet_mode));
            drop(state);
            self.fleet.spare_wake.notify_one();
        }
        if was_counted {
            self.fleet.released.notify_one();
        }
    }
}

/// Background: notices a lost connection without waiting for a request, probes Redis while
/// in fallback, and reads the live workers while Redis is away. Ends with the fleet.
async fn watch(fleet: Weak<Fleet>) {
    loop {
        tokio::time::sleep(PROBE).await;
        let Some(fleet) = fleet.upgrade() else { return };
        let (in_fallback, away, read_due) = {
            let mut state = fleet.state();
            state.settle(Instant::now());
            let in_fallback = matches!(state.mode, Mode::Fallback { .. });
            let away = !matches!(state.mode, Mode::Fleet);
            let due = state
                .workers_read
                .is_none_or(|at| at.elapsed() >= WORKERS_EVERY);
            (in_fallback, away, due)
        };
        if !away && !fleet.client.is_connected() {
            fleet.fall_back("connection lost");
            continue;
        }
        // A PING is not enough: a Redis that answers it but refuses the script (out of
        // memory, an ACL without EVAL) would send the process back and forth between
        // recovering and fallback and never give a slot. Only a lease taken and given back
        // ends the fallback.
        if in_fallback && fleet.client.is_connected() && fleet.probe().await {
            let mut state = fleet.state();
            // Two probes on top of the lease: a peer that notices Redis a probe later may
            // still hold slots its share gave it.
            state.mode = Mode::Recovering {
                until: Instant::now() + fleet.lease + 2 * PROBE,
            };
            tracing::info!(
                lease = ?fleet.lease,
                "Redis answers again: fleet-wide politeness resumes (with this process's share too for one lease)"
            );
        }
        // Read in every mode, so a fallback starts from the fleet seen while Redis was up:
        // an outage that begins while few rows are leased must not give each worker the
        // whole limit.
        if read_due {
            match (fleet.live_workers)().await {
                Ok(n) => {
                    let mut state = fleet.state();
                    // The most seen since start: a worker between two claims holds no
                    // lease and would otherwise take a moment to count again.
                    state.workers = Some(state.workers.map_or(n, |seen| seen.max(n)));
                    state.workers_read = Some(Instant::now());
                }
                Err(e) => {
                    tracing::debug!(error = %e, "live workers not read; the share stays as it was");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
