//! A webhook event outlives the worker that was to send it: PostgreSQL, an API process and
//! worker processes killed with SIGKILL. Killed after the job ended but before its event went
//! out, the next workers deliver it once, signed with the endpoint's secret; killed in the
//! middle of an attempt, the event waits for that attempt's lease and is then sent again,
//! under the same `webhook-id` (at least once, as promised: a receiver deduplicates by it).

use crate::common::webhooks::Receiver;
use crate::fake::{FakeInternet, Sites};
use crate::harness::{
    PgDb, Proc, base_env, migrated_store, one_at_a_time, postgres_url, submit, wait_for,
    wait_job_done,
};
use chrono::{DateTime, Utc};
use favicon_finder::store::Store;
use sea_orm::{ConnectionTrait, Statement};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::time::Instant;

const START: Duration = Duration::from_secs(30);
/// A delivery's lease outlives its attempt's timeout by this much (`LEASE_MARGIN`).
const LEASE_MARGIN: Duration = Duration::from_secs(30);

/// What the outbox holds, straight from the database: each delivery's status, attempts and
/// lease end.
async fn outbox(store: &Store) -> Vec<(String, i32, Option<DateTime<Utc>>)> {
    let rows = store
        .connection()
        .query_all_raw(Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT status, attempts, lease_until FROM webhook_delivery".to_owned(),
        ))
        .await
        .unwrap();
    rows.iter()
        .map(|r| {
            (
                r.try_get("", "status").unwrap(),
                r.try_get("", "attempts").unwrap(),
                r.try_get("", "lease_until").unwrap(),
            )
        })
        .collect()
}

/// PostgreSQL, a fake internet, an API process (no worker slots), a receiver and an endpoint
/// registered through the API for client `acme`.
struct World {
    db: PgDb,
    store: Store,
    _internet: FakeInternet,
    dir: tempfile::TempDir,
    /// The workers' environment.
    env: BTreeMap<String, String>,
    api: Proc,
    base: String,
    receiver: Receiver,
    webhook: String,
}

impl World {
    /// `None` when PostgreSQL or node is not there (the test is skipped).
    async fn start(timeout_secs: u64) -> Option<Self> {
        let Some(admin) = postgres_url() else {
            crate::services::available("TEST_DATABASE_URL", false);
            return None;
        };
        let receiver = Receiver::start(&[], &[]).await?;
        let db = PgDb::create(&admin).await;
        let store = migrated_store(&db.url).await;
        let mut sites = Sites::default();
        sites.icon_site("one.test").icon_site("two.test");
        let internet = FakeInternet::start(sites).await;
        let dir = tempfile::tempdir().unwrap();
        let mut env = base_env(&db.url, &internet.resolve(&[]));
        let timeout = timeout_secs.to_string();
        for (k, v) in [
            (
                "WEBHOOK_SECRET_KEY",
                "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
            ),
            ("WEBHOOK_TIMEOUT_SECS", timeout.as_str()),
            ("WEBHOOK_POLL_MS", "100"),
        ] {
            env.insert(k.into(), v.into());
        }
        let mut api_env = env.clone();
        api_env.insert("WORKER_CONCURRENCY".into(), "0".into());
        let api = Proc::spawn("api", &["serve"], &api_env, dir.path());
        let base = api.api_base(START).await;
        let created: Value = reqwest::Client::new()
            .post(format!("{base}/webhooks"))
            .json(&json!({"url": receiver.url(), "client_id": "acme"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let webhook = created["id"].as_str().unwrap().to_owned();
        receiver
            .set_secrets(&[created["secret"].as_str().unwrap()])
            .await;
        Some(Self {
            db,
            store,
            _internet: internet,
            dir,
            env,
            api,
            base,
            receiver,
            webhook,
        })
    }

    /// Starts a worker process with the workers' environment plus `extra`.
    async fn worker(&self, name: &str, extra: &[(&str, &str)]) -> Proc {
        let mut env = self.env.clone();
        for (k, v) in extra {
            env.insert((*k).into(), (*v).into());
        }
        let worker = Proc::spawn(name, &["worker"], &env, self.dir.path());
        worker.owner(START).await;
        worker
    }

    /// Waits until the API lists the endpoint's one delivery as delivered with `event_id`.
    async fn listed_delivered(&self, event_id: &str) {
        let url = format!("{}/webhooks/{}/deliveries", self.base, self.webhook);
        wait_for("the API to list the delivery", START, || async {
            let listed: Value = reqwest::get(&url).await.unwrap().json().await.unwrap();
            let first = &listed["deliveries"][0];
            listed["deliveries"].as_array().unwrap().len() == 1
                && first["status"] == "delivered"
                && first["event_id"] == event_id
        })
        .await;
    }

    async fn finish(self) {
        drop(self.api);
        self.db.drop_db().await;
    }
}

/// Why the first worker runs with `WEBHOOK_CONCURRENCY=0`: it finishes the job (so the event
/// is written by the transaction that ends it) and never sends, so the SIGKILL always lands
/// in the window the promise is about (the job's end committed, its event not sent) instead
/// of racing a 100 ms poll. The kill in the middle of an attempt is the next test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_survives_a_sigkilled_worker_and_is_delivered_once() {
    let _serial = one_at_a_time().await;
    let timeout_secs = 1;
    let Some(world) = World::start(timeout_secs).await else {
        return;
    };
    let mut first = world
        .worker("worker-a", &[("WEBHOOK_CONCURRENCY", "0")])
        .await;
    let job = submit(&world.base, "acme", &["one.test", "two.test"]).await;
    wait_job_done(&world.store, job, START).await;
    assert_eq!(
        outbox(&world.store).await,
        [(String::from("pending"), 0, None)]
    );
    first.kill9();
    let killed = Instant::now();
    let receiver = &world.receiver;
    assert!(
        receiver.deliveries().is_empty(),
        "{:#?}",
        receiver.deliveries()
    );

    // Two workers, so the one delivery is also claimed by one of them only.
    let second = world.worker("worker-b", &[]).await;
    let third = world.worker("worker-c", &[]).await;
    let seen = receiver.wait_for(1, START).await;
    let after = killed.elapsed();
    let event = &seen[0];
    assert_eq!(event.verified_with, [0], "{event:#?}");
    assert_eq!(event.body["type"], "job.completed", "{event:#?}");
    assert_eq!(event.body["data"]["job_id"], job.to_string());
    assert_eq!(event.body["data"]["completed"], 2);
    let id = event.header("webhook-id").to_owned();

    // Well past a lease: were the delivery still claimable, or claimed twice, a second
    // request would have come by now.
    let lease = Duration::from_secs(timeout_secs) + LEASE_MARGIN;
    tokio::time::sleep(lease + Duration::from_secs(5)).await;
    let seen = receiver.deliveries();
    let same = seen.iter().filter(|d| d.header("webhook-id") == id).count();
    eprintln!(
        "delivered {after:?} after the kill; {same} request(s) with its webhook-id {:?} \
         after the kill",
        killed.elapsed()
    );
    assert_eq!(same, 1, "{seen:#?}");
    assert_eq!(seen.len(), 1, "{seen:#?}");
    assert_eq!(
        outbox(&world.store).await,
        [(String::from("delivered"), 1, None)]
    );
    world.listed_delivered(&id).await;
    drop((second, third));
    world.finish().await;
}

/// A worker killed while its attempt waits for the receiver's answer: no other worker sends
/// the event until that attempt's lease has run out (one attempt at a time), then one does,
/// with the same `webhook-id`, and the delivery ends delivered after one recorded attempt
/// (the killed one never recorded its own).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_attempt_leaves_the_event_to_the_next_after_its_lease() {
    let _serial = one_at_a_time().await;
    let timeout_secs = 5;
    let Some(world) = World::start(timeout_secs).await else {
        return;
    };
    let receiver = &world.receiver;
    // Slower than nothing, faster than the timeout: the first attempt is in flight for 3 s.
    receiver.set_delay(Duration::from_secs(3)).await;
    let mut first = world.worker("worker-a", &[]).await;
    let job = submit(&world.base, "acme", &["one.test"]).await;
    receiver.wait_for(1, START).await;
    let held = outbox(&world.store).await;
    let lease_until = held[0].2.expect("the attempt in flight holds a lease");
    first.kill9();
    let killed = Instant::now();
    let second = world.worker("worker-b", &[]).await;
    let seen = receiver.wait_for(2, LEASE_MARGIN * 2).await;
    let resent: DateTime<Utc> = seen[1].received_at.into();
    eprintln!(
        "sent again {:?} after the kill, {} ms after the lease ran out",
        killed.elapsed(),
        (resent - lease_until).num_milliseconds()
    );
    assert!(
        resent >= lease_until,
        "sent again at {resent}, leased until {lease_until}"
    );
    assert_eq!(seen[0].header("webhook-id"), seen[1].header("webhook-id"));
    assert!(seen.iter().all(|d| d.verified_with == [0]), "{seen:#?}");
    assert_eq!(seen[1].body["data"]["job_id"], job.to_string());
    let id = seen[1].header("webhook-id").to_owned();
    world.listed_delivered(&id).await;
    assert_eq!(
        outbox(&world.store).await,
        [(String::from("delivered"), 1, None)]
    );
    drop(second);
    world.finish().await;
}
