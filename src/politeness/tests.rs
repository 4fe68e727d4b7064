//! The share bookkeeping and the end of a recovery, without Redis; a parked lease taken
//! again, on a real Redis.

use super::*;

fn keys() -> [String; 2] {
    ["p:host:cdn".to_owned(), "p:addr:10.0.0.1".to_owned()]
}

#[test]
fn a_share_caps_every_slot_held_here_whatever_gave_it() {
    let mut state = State::default();
    let k = keys();
    // Two slots the fleet gave (no cap), then the share of 2 is already used up.
    assert!(state.take(&k, None));
    assert!(state.take(&k, None));
    assert!(!state.take(&k, Some([2, 8])));
    state.give_back(&k);
    assert!(state.take(&k, Some([2, 8])));
    // The address's share binds as well as the host's.
    let other_host = ["p:host:www".to_owned(), k[1].clone()];
    assert!(state.take(&other_host, Some([2, 3])));
    assert!(
        !state.take(&other_host, Some([2, 3])),
        "4 held at the address"
    );
    for _ in 0..3 {
        state.give_back(&k);
    }
    state.give_back(&other_host);
    assert!(state.held.is_empty(), "nothing held is nothing kept");
}

#[tokio::test]
async fn a_recovery_ends_on_time() {
    let mut state = State {
        mode: Mode::Recovering {
            until: Instant::now() + Duration::from_millis(50),
        },
        ..State::default()
    };
    state.settle(Instant::now());
    assert!(matches!(state.mode, Mode::Recovering { .. }));
    state.settle(Instant::now() + Duration::from_millis(60));
    assert!(matches!(state.mode, Mode::Fleet));
}

/// A fleet on `TEST_REDIS_URL` with limits of 1 and keys of its own, or `None` without Redis
/// (a failure under `REQUIRE_SERVICES=1`).
async fn fleet_on_redis(lease: Duration) -> Option<(Politeness, String)> {
    let Ok(url) = std::env::var("TEST_REDIS_URL") else {
        assert!(
            std::env::var("REQUIRE_SERVICES").as_deref() != Ok("1"),
            "REQUIRE_SERVICES=1 but TEST_REDIS_URL is missing"
        );
        return None;
    };
    let prefix = format!("ff-spare-{}", uuid::Uuid::new_v4().simple());
    let settings = PolitenessSettings {
        redis_url: url,
        ca_cert: None,
        prefix: prefix.clone(),
        per_host: 1,
        per_address: 1,
        lease,
    };
    let live: LiveWorkers = Arc::new(|| Box::pin(async { Ok(1) }));
    let politeness = Politeness::redis(settings, &Metrics::new(), live)
        .await
        .unwrap();
    Some((politeness, format!("{prefix}:polite:host:site.test")))
}

/// The members of the sorted set `key`, with their scores, and Redis's clock in ms.
async fn members(politeness: &Politeness, key: &str) -> (Vec<(String, u64)>, u64) {
    let fleet = politeness.fleet.as_ref().unwrap();
    let script = "local t = redis.call('TIME') \
         return {t[1] * 1000 + math.floor(t[2] / 1000), redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')}";
    let (now, set): (u64, Vec<String>) = fleet
        .client
        .eval(script, vec![key.to_owned()], Vec::<String>::new())
        .await
        .unwrap();
    let set = set
        .chunks(2)
        .map(|m| (m[0].clone(), m[1].parse().unwrap()))
        .collect();
    (set, now)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sites_next_request_to_the_same_host_and_address_takes_the_same_lease() {
    let hold = Duration::from_secs(5);
    let Some((politeness, host_set)) = fleet_on_redis(hold).await else {
        return;
    };
    let slots = politeness.slots().unwrap();
    let ip: IpAddr = "10.0.0.7".parse().unwrap();
    let page = slots.acquire("site.test", ip).await;
    let (taken, now) = members(&politeness, &host_set).await;
    assert_eq!(taken.len(), 1, "{taken:?}");
    let (token, ends) = taken[0].clone();
    // The lease covers the longest hold of a request that takes it within the window.
    let lease = (hold + spare::REUSE_WINDOW).as_millis() as u64;
    assert!(ends + 100 >= now + lease, "lease ends {ends}, now {now}");
    drop(page);
    // The icon, a moment later: no second take, so the limit of 1 does not make it wait.
    let icon = tokio::time::timeout(Duration::from_millis(200), slots.acquire("site.test", ip))
        .await
        .expect("the parked lease serves the next request at once");
    let (again, _) = members(&politeness, &host_set).await;
    assert_eq!(
        again,
        vec![(token.clone(), ends)],
        "the same lease, not a new one"
    );
    // Another host at the same address does not take it: the address's limit of 1 is held.
    let other =
        tokio::time::timeout(Duration::from_millis(100), slots.acquire("other.test", ip)).await;
    assert!(other.is_err(), "the address's one slot is held");
    drop(icon);
    // Unused, it goes back to Redis within a few ticks.
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let (left, _) = members(&politeness, &host_set).await;
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "not given back: {left:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_older_than_the_window_is_not_taken_again() {
    let Some((politeness, host_set)) = fleet_on_redis(Duration::from_secs(5)).await else {
        return;
    };
    let slots = politeness.slots().unwrap();
    let ip: IpAddr = "10.0.0.8".parse().unwrap();
    let first = slots.acquire("site.test", ip).await;
    let (taken, _) = members(&politeness, &host_set).await;
    tokio::time::sleep(spare::REUSE_WINDOW + Duration::from_millis(50)).await;
    drop(first);
    let second = tokio::time::timeout(Duration::from_secs(3), slots.acquire("site.test", ip))
        .await
        .expect("given back, then taken anew");
    let (now_held, _) = members(&politeness, &host_set).await;
    assert_eq!(now_held.len(), 1, "{now_held:?}");
    assert_ne!(
        now_held[0].0, taken[0].0,
        "a fresh lease, with the whole hold ahead"
    );
    drop(second);
}
