//! Politeness across worker processes: with Redis, the per-host and per-address limits are
//! the fleet's, not each process's; with Redis stopped mid-job each worker keeps to its
//! share; a killed worker's slots come back when their leases end, not before and not never.
//!
//! Each test runs two real `worker` processes on one PostgreSQL queue and a Redis server of
//! its own, against a fake internet that counts the requests it is handling at once.

use crate::fake::{FakeInternet, Route, Sites, png};
use crate::harness::{
    PgDb, Proc, base_env, check_invariants, create_job, job_row, migrated_store, one_at_a_time,
    postgres_url, wait_for, wait_job_done,
};
use crate::redis::OwnRedis;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Duration;

const START: Duration = Duration::from_secs(30);

/// The CDN's own address, apart from the shops' (127.0.0.1).
const CDN_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

/// PostgreSQL and `redis-server`, or the test is skipped (failed under `REQUIRE_SERVICES=1`).
fn services() -> Option<String> {
    let admin = postgres_url();
    if !crate::services::available("TEST_DATABASE_URL", admin.is_some())
        || !crate::services::available("redis-server", crate::services::on_path("redis-server"))
    {
        return None;
    }
    admin
}

/// `n` shops on 127.0.0.1, each a page whose icon is `cdn.test/{kind}/{i}.png`; the CDN (on an
/// address of its own) answers each icon after `delay`.
async fn shops_on_a_cdn(
    kind: &str,
    n: usize,
    delay: Duration,
) -> (FakeInternet, FakeInternet, Vec<String>) {
    let mut shops = Sites::default();
    let mut cdn = Sites::default();
    let mut domains = Vec::new();
    for i in 0..n {
        let host = format!("{kind}{i}.shop.test");
        shops.page(
            &host,
            &format!(r#"<link rel=icon href="http://cdn.test/{kind}/{i}.png">"#),
        );
        cdn.route(
            "cdn.test",
            &format!("/{kind}/{i}.png"),
            Route::new(200, "image/png", png(16, 16)).with_delay(delay),
        );
        domains.push(host);
    }
    let cdn = FakeInternet::start_at(cdn, CDN_IP).await;
    let shops = FakeInternet::start(shops).await;
    (shops, cdn, domains)
}

/// The children's environment: the harness's, Redis, and the politeness limits.
fn fleet_env(
    database_url: &str,
    resolve: &str,
    redis: &OwnRedis,
    limits: &[(&str, &str)],
) -> BTreeMap<String, String> {
    let mut env = base_env(database_url, resolve);
    env.insert("REDIS_URL".into(), redis.url());
    env.insert("REDIS_PREFIX".into(), "ff-polite".into());
    env.insert("WORKER_CONCURRENCY".into(), "16".into());
    // A request's bound, and so a fleet slot's lease: 2 s + the 5 s margin.
    env.insert("FETCH_TIMEOUT_SECS".into(), "2".into());
    env.insert("WORKER_HTTP_PORT".into(), "0".into());
    for (k, v) in limits {
        env.insert((*k).into(), (*v).into());
    }
    env
}

/// One test's world: its database and Redis, `n` shops whose icons are on one CDN (see
/// [`shops_on_a_cdn`]), and the workers' environment with a per-host limit of `per_host`.
struct CdnFleet {
    db: PgDb,
    store: favicon_finder::store::Store,
    redis: OwnRedis,
    shops: FakeInternet,
    cdn: FakeInternet,
    domains: Vec<String>,
    env: BTreeMap<String, String>,
    /// The workers' directory, kept as long as they run.
    dir: tempfile::TempDir,
}

impl CdnFleet {
    async fn start(admin: &str, kind: &str, n: usize, delay: Duration, per_host: &str) -> Self {
        let db = PgDb::create(admin).await;
        let store = migrated_store(&db.url).await;
        let redis = OwnRedis::start_on_free_port().expect("redis-server starts");
        let (shops, cdn, domains) = shops_on_a_cdn(kind, n, delay).await;
        let dir = tempfile::tempdir().unwrap();
        let resolve = shops.resolve(&[("cdn.test", cdn.addr)]);
        let env = fleet_env(
            &db.url,
            &resolve,
            &redis,
            &[("FETCH_PER_HOST_CONCURRENCY", per_host)],
        );
        Self {
            db,
            store,
            redis,
            shops,
            cdn,
            domains,
            env,
            dir,
        }
    }
}

/// Two workers with `env`, both started.
async fn two_workers(env: &BTreeMap<String, String>, dir: &std::path::Path) -> (Proc, Proc) {
    let a = Proc::spawn("worker-a", &["worker"], env, dir);
    let b = Proc::spawn("worker-b", &["worker"], env, dir);
    a.owner(START).await;
    b.owner(START).await;
    (a, b)
}

/// Two workers of 16 slots each, one CDN serving 80 shops' icons (150 ms each), a limit of 4
/// per host: the CDN never sees more than 4 requests at once (each worker alone would send 4).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_keep_to_one_per_host_limit() {
    let Some(admin) = services() else { return };
    let _serial = one_at_a_time().await;
    let CdnFleet {
        db,
        store,
        redis,
        shops,
        cdn,
        domains,
        env,
        dir,
    } = CdnFleet::start(&admin, "host", 80, Duration::from_millis(150), "4").await;
    let (a, b) = two_workers(&env, dir.path()).await;
    let job = create_job(&store, &domains).await;
    wait_job_done(&store, job, Duration::from_secs(90)).await;
    check_invariants(&store, job, &domains, 3).await;
    assert_eq!(job_row(&store, job).await.completed, 80);
    let most = cdn.max_concurrent("cdn.test");
    eprintln!("per-host: at most {most} requests at once at the CDN (limit 4, two workers)");
    let mut waits = 0.0;
    for worker in [&a, &b] {
        let metrics = reqwest::get(format!("{}/metrics", worker.ops_base(START).await))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        waits += metrics
            .lines()
            .find_map(|l| l.strip_prefix("favicon_finder_politeness_fleet_waits_total "))
            .and_then(|n| n.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no fleet waits counter:\n{metrics}"));
    }
    assert!(
        waits >= 1.0,
        "requests that waited for a fleet slot are counted"
    );
    // What waiting costs Redis: every take, give-back and renewed ask is one EVAL.
    let stats = redis.info("commandstats");
    let evals: f64 = stats
        .lines()
        .find_map(|l| l.strip_prefix("cmdstat_eval:calls="))
        .and_then(|l| l.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no EVAL in {stats}"));
    let requests = (cdn.host_hits("cdn.test") + shops.host_hits_total()) as f64;
    eprintln!("per-host: {evals} EVALs for {requests} requests");
    assert!(
        evals <= 30.0 * requests,
        "waiting for a fleet slot must not hammer Redis: {evals} EVALs for {requests} requests"
    );
    assert!(most <= 4, "{most} requests to one host at once, limit 4");
    assert!(
        most >= 3,
        "the limit is reached, so the test can tell: {most}"
    );
    drop((a, b));
    db.drop_db().await;
}

/// Two workers, 60 names on one address (pages and icons 100 ms each), a limit of 3 per
/// address: the address never sees more than 3 requests at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_keep_to_one_per_address_limit() {
    let Some(admin) = services() else { return };
    let _serial = one_at_a_time().await;
    let db = PgDb::create(&admin).await;
    let store = migrated_store(&db.url).await;
    let redis = OwnRedis::start_on_free_port().expect("redis-server starts");
    let mut sites = Sites::default();
    let mut domains = Vec::new();
    let slow = Duration::from_millis(100);
    for i in 0..60 {
        let host = format!("name{i}.shared.test");
        sites.route(
            &host,
            "/",
            Route::html("<link rel=icon href=/i.png>").with_delay(slow),
        );
        sites.route(
            &host,
            "/i.png",
            Route::new(200, "image/png", png(16, 16)).with_delay(slow),
        );
        domains.push(host);
    }
    let internet = FakeInternet::start(sites).await;
    let dir = tempfile::tempdir().unwrap();
    let env = fleet_env(
        &db.url,
        &internet.resolve(&[]),
        &redis,
        &[("FETCH_PER_ADDRESS_CONCURRENCY", "3")],
    );
    let (a, b) = two_workers(&env, dir.path()).await;
    let job = create_job(&store, &domains).await;
    wait_job_done(&store, job, Duration::from_secs(90)).await;
    check_invariants(&store, job, &domains, 3).await;
    assert_eq!(job_row(&store, job).await.completed, 60);
    let most = internet.max_concurrent_total();
    eprintln!("per-address: at most {most} requests at once at the address (limit 3, two workers)");
    assert!(most <= 3, "{most} requests to one address at once, limit 3");
    assert!(
        most >= 2,
        "the limit is reached, so the test can tell: {most}"
    );
    drop((a, b));
    db.drop_db().await;
}

/// Redis stopped mid-job: each of the two workers falls back to its share of the per-host
/// limit (4 / 2 live workers = 2), so the CDN still never sees more than 4 at once; the job
/// finishes; a worker's `/readyz` says `fallback` with the share.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stopped_mid_job_leaves_each_worker_its_share() {
    let Some(admin) = services() else { return };
    let _serial = one_at_a_time().await;
    let CdnFleet {
        db,
        store,
        mut redis,
        shops: _shops,
        cdn,
        domains,
        env,
        dir,
    } = CdnFleet::start(&admin, "outage", 240, Duration::from_millis(100), "4").await;
    let (a, b) = two_workers(&env, dir.path()).await;
    let ops = a.ops_base(START).await;
    let job = create_job(&store, &domains).await;
    wait_for(
        "the job to be under way",
        Duration::from_secs(60),
        || async { job_row(&store, job).await.completed >= 30 },
    )
    .await;
    let before = cdn.max_concurrent("cdn.test");
    redis.stop();
    let took = wait_job_done(&store, job, Duration::from_secs(120)).await;
    check_invariants(&store, job, &domains, 3).await;
    let most = cdn.max_concurrent("cdn.test");
    eprintln!(
        "outage: at most {before} at once before the stop, {most} in all; job done {took:?} \
         after the stop"
    );
    assert_eq!(
        job_row(&store, job).await.completed,
        240,
        "the job finishes without Redis"
    );
    assert!(
        most <= 4,
        "{most} requests at once to one host: more than 2 workers × a share of 2"
    );
    // Redis is still away: the worker says so.
    let ready: serde_json::Value = reqwest::get(format!("{ops}/readyz"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    eprintln!("outage: worker A's /readyz {ready}");
    assert_eq!(ready["status"], "degraded", "{ready}");
    assert_eq!(ready["politeness"]["mode"], "fallback", "{ready}");
    assert_eq!(ready["politeness"]["share"]["per_host"], 2, "{ready}");
    assert_eq!(ready["politeness"]["live_workers"], 2, "{ready}");
    let warned = a.events(
        "Redis unreachable: politeness falls back to this process's share of each limit, after one lease",
    );
    assert_eq!(warned.len(), 1, "one warning, not one per request");

    // Redis back: the worker says so once, and after one lease (7 s) and a probe it is on the
    // fleet's counters again.
    redis.restart();
    wait_for(
        "worker A back on the fleet's slots",
        Duration::from_secs(30),
        || async {
            let ready: serde_json::Value = reqwest::get(format!("{ops}/readyz"))
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            ready["politeness"] == serde_json::json!({"mode": "fleet"})
        },
    )
    .await;
    let recovered = a.events(
        "Redis answers again: fleet-wide politeness resumes (with this process's share too for one lease)",
    );
    assert_eq!(recovered.len(), 1, "one info line when Redis is back");
    let metrics = reqwest::get(format!("{ops}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("favicon_finder_politeness_fallbacks_total 1"),
        "{metrics}"
    );
    drop((a, b));
    db.drop_db().await;
}

/// Redis that still answers PING (and carries events) but refuses the politeness script (an
/// ACL without scripting): the workers stay on their share rather than turning back to the
/// fleet's counters on each PING and failing again, so the job finishes, with one warning.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_refusing_the_script_leaves_each_worker_its_share() {
    let Some(admin) = services() else { return };
    let _serial = one_at_a_time().await;
    let CdnFleet {
        db,
        store,
        redis,
        shops: _shops,
        cdn,
        domains,
        env,
        dir,
    } = CdnFleet::start(&admin, "acl", 120, Duration::from_millis(100), "4").await;
    let (a, b) = two_workers(&env, dir.path()).await;
    let ops = a.ops_base(START).await;
    let job = create_job(&store, &domains).await;
    wait_for(
        "the job to be under way",
        Duration::from_secs(60),
        || async { job_row(&store, job).await.completed >= 20 },
    )
    .await;
    let refused = redis.strings("ACL SETUSER default -@scripting");
    assert_eq!(refused, ["+OK"], "{refused:?}");
    wait_job_done(&store, job, Duration::from_secs(90)).await;
    check_invariants(&store, job, &domains, 3).await;
    assert_eq!(job_row(&store, job).await.completed, 120);
    let most = cdn.max_concurrent("cdn.test");
    assert!(most <= 4, "{most} requests at once to one host, limit 4");
    let ready: serde_json::Value = reqwest::get(format!("{ops}/readyz"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["politeness"]["mode"], "fallback", "{ready}");
    let warned = a.events(
        "Redis unreachable: politeness falls back to this process's share of each limit, after one lease",
    );
    assert_eq!(warned.len(), 1, "one warning, not one per probe");
    drop((a, b));
    db.drop_db().await;
}

/// A worker killed (SIGKILL) while it holds both of the CDN's fleet slots: another worker
/// gets one only when the dead worker's leases end (2 s request bound + 5 s margin after they
/// were taken), and then soon. Timed on Redis's own clock, against the leases' own ends, so a
/// slow machine can only make the check later, never wrong.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_workers_slots_come_back_with_its_leases() {
    let Some(admin) = services() else { return };
    let _serial = one_at_a_time().await;
    // Icons that never answer within a request's time: whoever asks holds the slot.
    let CdnFleet {
        db,
        store,
        redis,
        shops: _shops,
        cdn,
        domains,
        env,
        dir,
    } = CdnFleet::start(&admin, "hang", 4, Duration::from_secs(60), "2").await;
    let lease_ms = 7_000;
    let mut a = Proc::spawn("worker-a", &["worker"], &env, dir.path());
    a.owner(START).await;
    create_job(&store, &domains).await;
    wait_for(
        "worker A to hold both CDN slots",
        Duration::from_secs(30),
        || async { cdn.in_flight("cdn.test") == 2 },
    )
    .await;
    a.kill9();
    let hits_at_kill = cdn.host_hits("cdn.test");
    // The dead worker's two leases, as Redis scores them: when each ends.
    let set = "ff-polite:polite:host:cdn.test";
    let held = redis.strings(&format!("ZRANGE {set} 0 -1 WITHSCORES"));
    let ends: Vec<u64> = held.chunks(2).map(|m| m[1].parse().unwrap()).collect();
    assert_eq!(ends.len(), 2, "the dead worker's two leases: {held:?}");
    let killed_at = redis.now_ms();
    let first_end = *ends.iter().min().unwrap();
    assert!(
        first_end > killed_at + lease_ms / 2,
        "the leases were fresh at the kill: end {first_end}, now {killed_at}"
    );
    let b = Proc::spawn("worker-b", &["worker"], &env, dir.path());
    b.owner(START).await;
    wait_for(
        "worker B to reach the CDN",
        Duration::from_millis(lease_ms) + Duration::from_secs(15),
        || async { cdn.host_hits("cdn.test") > hits_at_kill },
    )
    .await;
    let reached_at = redis.now_ms();
    eprintln!(
        "kill: the dead worker's first lease ended {} ms after the kill; worker B reached the \
         CDN {} ms after the kill",
        first_end - killed_at,
        reached_at - killed_at
    );
    assert!(
        reached_at >= first_end,
        "worker B reached the host at {reached_at}, before the dead worker's lease ended at {first_end}"
    );
    assert!(
        reached_at <= first_end + 5_000,
        "the slot came back {} ms after its lease ended",
        reached_at - first_end
    );
    drop(b);
    db.drop_db().await;
}
