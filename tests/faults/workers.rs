//! Worker processes on one PostgreSQL queue, killed, stopped, paused and resumed mid-job.

use crate::fake::{FakeInternet, Sites};
use crate::harness::{
    PgDb, Proc, assert_orphans_redone, base_env, check_invariants, create_job, domains, job_row,
    kill_mid_job, leased_by, migrated_store, one_at_a_time, postgres_url, rows, wait_for,
    wait_job_done,
};
use favicon_finder::entities::result::ResultStatus;
use std::time::Duration;
use tokio::time::Instant;

const START: Duration = Duration::from_secs(30);

macro_rules! postgres_or_skip {
    () => {
        match postgres_url() {
            Some(url) => url,
            None => {
                crate::services::available("TEST_DATABASE_URL", false);
                return;
            }
        }
    };
}

/// kill -9 one of two workers while it holds leases: its rows come back when the leases
/// expire, the other worker finishes the job, and the killed rows count one more try.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_one_of_two_workers_mid_job() {
    let admin = postgres_or_skip!();
    let _serial = one_at_a_time().await;
    let db = PgDb::create(&admin).await;
    let store = migrated_store(&db.url).await;
    let delay = Duration::from_millis(400);
    let internet = FakeInternet::start(Sites::every_host(delay)).await;
    let dir = tempfile::tempdir().unwrap();
    let env = base_env(&db.url, &internet.resolve(&[]));
    let lease = Duration::from_secs(2);
    let concurrency = 8;
    let mut a = Proc::spawn("worker-a", &["worker"], &env, dir.path());
    let b = Proc::spawn("worker-b", &["worker"], &env, dir.path());
    let owner_a = a.owner(START).await;
    b.owner(START).await;

    let domains = domains("kill9", 120, 10);
    let job = create_job(&store, &domains).await;
    let leases = kill_mid_job(&mut a, owner_a, &store, job, (16, 4)).await;
    let orphaned = leases.len();
    let j = job_row(&store, job).await;
    let remaining = (j.total - j.completed - j.failed) as u32;

    let took = wait_job_done(&store, job, Duration::from_secs(60)).await;
    // Worker B was claiming all along: it must have left A's rows alone until their leases
    // ran out.
    let retried = assert_orphans_redone(&store, job, &domains, &leases).await;
    // Leases expire at most `lease` after the kill; then one worker drains what is left.
    let drain = delay * remaining.div_ceil(concurrency);
    let bound = lease + drain * 2 + Duration::from_secs(5);
    eprintln!(
        "sigkill: {orphaned} rows orphaned, {remaining} left at the kill, done {took:?} after \
         it (bound {bound:?}), {retried} rows tried twice"
    );
    assert!(took <= bound, "took {took:?}, more than {bound:?}");
    drop(b);
    db.drop_db().await;
}

/// SIGTERM mid-job: the worker exits 0 within the grace period, gives its unfinished rows
/// back (no lease of its own survives it), and the job finishes long before a lease could
/// have expired. A released try is not counted, so every row ends with one try.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_releases_rows_at_once() {
    let admin = postgres_or_skip!();
    let _serial = one_at_a_time().await;
    let db = PgDb::create(&admin).await;
    let store = migrated_store(&db.url).await;
    // Slower than the grace period, so the stopped worker has rows it cannot finish.
    let internet = FakeInternet::start(Sites::every_host(Duration::from_secs(2))).await;
    let dir = tempfile::tempdir().unwrap();
    let mut env = base_env(&db.url, &internet.resolve(&[]));
    let lease = Duration::from_secs(30);
    let grace = Duration::from_secs(1);
    env.insert("WORKER_LEASE_SECS".into(), lease.as_secs().to_string());
    env.insert("SHUTDOWN_GRACE_SECS".into(), grace.as_secs().to_string());
    let mut a = Proc::spawn("worker-a", &["worker"], &env, dir.path());
    let mut b = Proc::spawn("worker-b", &["worker"], &env, dir.path());
    let owner_a = a.owner(START).await;
    b.owner(START).await;

    let domains = domains("sigterm", 40, 10);
    let job = create_job(&store, &domains).await;
    wait_for(
        "worker A to have rows in flight",
        Duration::from_secs(20),
        || async { leased_by(&store, owner_a).await == 8 },
    )
    .await;
    let start = Instant::now();
    a.signal("TERM");
    let status = a.wait_exit(grace + Duration::from_secs(3)).await;
    let stopped_in = start.elapsed();
    assert_eq!(
        status.map(|s| s.code()),
        Some(Some(0)),
        "exits 0 soon after the grace period"
    );
    assert_eq!(
        leased_by(&store, owner_a).await,
        0,
        "no row still carries the stopped worker's lease"
    );
    let released = a.events("released unfinished rows");
    let released = released
        .first()
        .and_then(|l| l["released"].as_u64())
        .unwrap_or(0);
    assert!(released > 0, "rows in flight were released:\n{}", a.log());

    let took = wait_job_done(&store, job, lease).await;
    check_invariants(&store, job, &domains, 3).await;
    assert!(
        rows(&store, job).await.iter().all(|r| r.tries == 1),
        "a released try is not counted"
    );
    eprintln!(
        "sigterm: worker exited 0 in {stopped_in:?} (grace {grace:?}), released {released} rows, \
         job done {took:?} after the signal (lease {lease:?})"
    );
    assert!(
        took < lease / 2,
        "done in {took:?}: the released rows did not wait for a lease"
    );
    b.terminate(Duration::from_secs(10)).await;
    assert_eq!(a.finished() + b.finished(), domains.len() as u64);
    db.drop_db().await;
}

/// Three workers on a job of 5,000 domains: each home page is fetched exactly once, each
/// worker finishes a share, and their shares add up to the job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_share_a_big_job_and_fetch_each_domain_once() {
    let admin = postgres_or_skip!();
    let _serial = one_at_a_time().await;
    let db = PgDb::create(&admin).await;
    let store = migrated_store(&db.url).await;
    let internet = FakeInternet::start(Sites::every_host(Duration::ZERO)).await;
    let dir = tempfile::tempdir().unwrap();
    let mut env = base_env(&db.url, &internet.resolve(&[]));
    // Leases long enough that a busy machine never lets one lapse: this test is about sharing.
    env.insert("WORKER_LEASE_SECS".into(), "20".into());
    env.insert("WORKER_CONCURRENCY".into(), "16".into());
    let mut workers: Vec<Proc> = ["worker-a", "worker-b", "worker-c"]
        .iter()
        .map(|name| Proc::spawn(name, &["worker"], &env, dir.path()))
        .collect();
    for w in &workers {
        w.owner(START).await;
    }

    let domains = domains("share", 5_000, 50);
    let start = Instant::now();
    let job = create_job(&store, &domains).await;
    let took = wait_job_done(&store, job, Duration::from_secs(150)).await;
    check_invariants(&store, job, &domains, 3).await;
    let arrived = internet.arrived();
    let twice: Vec<_> = arrived.iter().filter(|(_, n)| **n != 1).collect();
    assert!(twice.is_empty(), "fetched more than once: {twice:?}");
    assert_eq!(arrived.len(), domains.len(), "every home page fetched");
    assert!(domains.iter().all(|d| arrived.contains_key(d)));

    let mut shares = Vec::new();
    for w in &mut workers {
        w.terminate(Duration::from_secs(10)).await;
        shares.push(w.finished());
    }
    eprintln!(
        "share: 5,000 domains in {took:?} ({:?} with job creation), shares {shares:?}",
        start.elapsed()
    );
    assert_eq!(shares.iter().sum::<u64>(), domains.len() as u64);
    assert!(
        shares.iter().all(|&n| n >= 250),
        "every worker did at least 5%: {shares:?}"
    );
    db.drop_db().await;
}

/// Two workers fetch the same rows: worker A claims them and is frozen (SIGSTOP) mid-fetch,
/// so its heartbeat cannot save its leases; worker B takes the rows over; A is resumed while
/// B still fetches. A's late outcome must change nothing (the stale writer), B's is the one
/// recorded, and the counters count each row once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_worker_resumed_after_takeover_changes_nothing() {
    let admin = postgres_or_skip!();
    let _serial = one_at_a_time().await;
    let db = PgDb::create(&admin).await;
    let store = migrated_store(&db.url).await;
    // Longer than the lease, and long enough to look at the rows between A's late answer
    // and B's.
    let internet = FakeInternet::start(Sites::every_host(Duration::from_secs(5))).await;
    let dir = tempfile::tempdir().unwrap();
    let mut env = base_env(&db.url, &internet.resolve(&[]));
    env.insert("WORKER_LEASE_SECS".into(), "1".into());
    env.insert("WORKER_CONCURRENCY".into(), "10".into());
    let mut a = Proc::spawn("worker-a", &["worker"], &env, dir.path());
    let owner_a = a.owner(START).await;

    let domains = domains("stale", 10, 0);
    let job = create_job(&store, &domains).await;
    wait_for(
        "worker A to be fetching every row",
        Duration::from_secs(20),
        || async {
            leased_by(&store, owner_a).await == domains.len()
                && internet.arrived().len() == domains.len()
        },
    )
    .await;
    a.signal("STOP");
    wait_for("A's leases to expire", Duration::from_secs(10), || async {
        let now = favicon_finder::store::now();
        rows(&store, job)
            .await
            .iter()
            .all(|r| r.lease_until.is_some_and(|t| t < now))
    })
    .await;
    let mut b = Proc::spawn("worker-b", &["worker"], &env, dir.path());
    let owner_b = b.owner(START).await;
    wait_for(
        "B to take every row over",
        Duration::from_secs(10),
        || async { leased_by(&store, owner_b).await == domains.len() },
    )
    .await;
    a.signal("CONT");
    // A gets its (first) answers and writes them; B's answers are still seconds away. A
    // stopped (it finishes its rows in flight and writes their outcomes before it exits) has
    // made every write it ever will.
    wait_for("A's answers", Duration::from_secs(10), || async {
        domains.iter().all(|d| internet.answered(d, "/") >= 1)
    })
    .await;
    a.terminate(Duration::from_secs(10)).await;
    assert!(
        domains.iter().all(|d| internet.answered(d, "/") == 1),
        "B's answers came too early for this check"
    );
    let now = rows(&store, job).await;
    assert!(
        now.iter().all(|r| r.status == ResultStatus::Pending
            && r.lease_owner == Some(owner_b)
            && r.tries == 2),
        "the stale writer changed no row: {now:#?}"
    );
    let j = job_row(&store, job).await;
    assert_eq!((j.completed, j.failed), (0, 0), "nor the counters");

    wait_job_done(&store, job, Duration::from_secs(20)).await;
    check_invariants(&store, job, &domains, 3).await;
    let arrived = internet.arrived();
    assert!(
        domains.iter().all(|d| arrived[d] == 2),
        "both workers fetched every row: {arrived:?}"
    );
    // The icon's width says which fetch was recorded: 20 is the second, B's.
    assert!(
        rows(&store, job)
            .await
            .iter()
            .all(|r| r.width == Some(20) && r.tries == 2),
        "B's outcome is the one recorded"
    );
    assert_eq!(job_row(&store, job).await.completed, domains.len() as i32);
    b.terminate(Duration::from_secs(10)).await;
    assert_eq!((a.finished(), b.finished()), (0, domains.len() as u64));
    eprintln!("stale: 10 rows fetched twice, recorded once, by the lease holder");
    db.drop_db().await;
}

/// A fleet started all at once on a fresh database: every process applies the migrations at
/// start, so they must take turns rather than fail on each other's half-made schema.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_starting_together_on_a_fresh_database() {
    let admin = postgres_or_skip!();
    let _serial = one_at_a_time().await;
    let db = PgDb::create(&admin).await;
    let internet = FakeInternet::start(Sites::every_host(Duration::ZERO)).await;
    let dir = tempfile::tempdir().unwrap();
    let env = base_env(&db.url, &internet.resolve(&[]));
    let mut fleet: Vec<Proc> = (0..4)
        .map(|i| Proc::spawn(&format!("worker-{i}"), &["worker"], &env, dir.path()))
        .collect();
    for w in &mut fleet {
        // A process that lost a migration race exits at once; say so rather than time out.
        let deadline = Instant::now() + START;
        while w.events("worker pool started").is_empty() {
            if let Some(status) = w.wait_exit(Duration::from_millis(50)).await {
                panic!("{} exited with {status} at start:\n{}", w.name, w.log());
            }
            assert!(Instant::now() < deadline, "{} did not start", w.name);
        }
    }
    let store = migrated_store(&db.url).await;
    let domains = domains("fleet", 50, 10);
    let job = create_job(&store, &domains).await;
    wait_job_done(&store, job, Duration::from_secs(30)).await;
    check_invariants(&store, job, &domains, 3).await;
    drop(fleet);
    db.drop_db().await;
}
