//! A webhook event outlives the worker that finished its job: PostgreSQL, an API process and
//! a worker process that is killed with SIGKILL after the job ended but before its event went
//! out; two new workers then deliver it, once, signed with the endpoint's secret.

use crate::common::webhooks::Receiver;
use crate::fake::{FakeInternet, Sites};
use crate::harness::{
    PgDb, Proc, base_env, migrated_store, one_at_a_time, postgres_url, submit, wait_for,
    wait_job_done,
};
use sea_orm::{ConnectionTrait, Statement};
use serde_json::{Value, json};
use std::time::Duration;
use tokio::time::Instant;

const START: Duration = Duration::from_secs(30);
/// `WEBHOOK_TIMEOUT_SECS` for these processes: a delivery's lease is this plus 30 s.
const TIMEOUT_SECS: u64 = 1;

/// The outbox row of the job's event, straight from the database: status, attempts, whether
/// a lease is held.
async fn outbox(store: &favicon_finder::store::Store) -> Vec<(String, i32, bool)> {
    let rows = store
        .connection()
        .query_all_raw(Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT status, attempts, lease_owner IS NOT NULL AS leased FROM webhook_delivery"
                .to_owned(),
        ))
        .await
        .unwrap();
    rows.iter()
        .map(|r| {
            (
                r.try_get("", "status").unwrap(),
                r.try_get("", "attempts").unwrap(),
                r.try_get("", "leased").unwrap(),
            )
        })
        .collect()
}

/// Why the first worker runs with `WEBHOOK_CONCURRENCY=0`: it finishes the job (so the event
/// is written by the transaction that ends it) and never sends, so the SIGKILL always lands
/// in the window the promise is about (the job's end committed, its event not sent) instead
/// of racing a 250 ms poll. A worker killed in the middle of an attempt is a different case:
/// the receiver may have taken the request, and the event is sent again with the same
/// `webhook-id` (at least once, by design); this test does not claim that one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_survives_a_sigkilled_worker_and_is_delivered_once() {
    let Some(admin) = postgres_url() else {
        crate::services::available("TEST_DATABASE_URL", false);
        return;
    };
    let Some(receiver) = Receiver::start(&[], &[]).await else {
        return;
    };
    let _serial = one_at_a_time().await;
    let db = PgDb::create(&admin).await;
    let store = migrated_store(&db.url).await;
    let mut sites = Sites::default();
    sites.icon_site("one.test").icon_site("two.test");
    let internet = FakeInternet::start(sites).await;
    let dir = tempfile::tempdir().unwrap();
    let mut env = base_env(&db.url, &internet.resolve(&[]));
    for (k, v) in [
        (
            "WEBHOOK_SECRET_KEY",
            "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
        ),
        ("WEBHOOK_TIMEOUT_SECS", &TIMEOUT_SECS.to_string()),
        ("WEBHOOK_POLL_MS", "100"),
    ] {
        env.insert(k.into(), v.into());
    }
    let mut api_env = env.clone();
    api_env.insert("WORKER_CONCURRENCY".into(), "0".into());
    let api = Proc::spawn("api", &["serve"], &api_env, dir.path());
    let mut silent_env = env.clone();
    silent_env.insert("WEBHOOK_CONCURRENCY".into(), "0".into());
    let mut first = Proc::spawn("worker-a", &["worker"], &silent_env, dir.path());
    let base = api.api_base(START).await;
    first.owner(START).await;

    let http = reqwest::Client::new();
    let created: Value = http
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
    let job = submit(&base, "acme", &["one.test", "two.test"]).await;
    wait_job_done(&store, job, Duration::from_secs(30)).await;
    assert_eq!(outbox(&store).await, [(String::from("pending"), 0, false)]);
    first.kill9();
    let killed = Instant::now();
    assert!(
        receiver.deliveries().is_empty(),
        "{:#?}",
        receiver.deliveries()
    );

    let second = Proc::spawn("worker-b", &["worker"], &env, dir.path());
    let third = Proc::spawn("worker-c", &["worker"], &env, dir.path());
    second.owner(START).await;
    third.owner(START).await;
    let seen = receiver.wait_for(1, START).await;
    let after = killed.elapsed();
    let event = &seen[0];
    assert_eq!(event.verified_with, [0], "{event:#?}");
    assert_eq!(event.body["type"], "job.completed", "{event:#?}");
    assert_eq!(event.body["data"]["job_id"], job.to_string());
    assert_eq!(event.body["data"]["completed"], 2);
    let id = event.header("webhook-id").to_owned();

    // Well past a lease (the attempt's timeout plus 30 s): were the delivery still claimable,
    // or claimed twice, a second request would have come by now.
    let lease = Duration::from_secs(TIMEOUT_SECS + 30);
    tokio::time::sleep(lease + Duration::from_secs(5)).await;
    let seen = receiver.deliveries();
    let same: Vec<_> = seen
        .iter()
        .filter(|d| d.header("webhook-id") == id)
        .collect();
    eprintln!(
        "delivered {after:?} after the kill; {} request(s) with its webhook-id after {:?}",
        same.len(),
        killed.elapsed()
    );
    assert_eq!(same.len(), 1, "{seen:#?}");
    assert_eq!(seen.len(), 1, "{seen:#?}");
    assert_eq!(
        outbox(&store).await,
        [(String::from("delivered"), 1, false)]
    );
    wait_for("the API to list the delivery", START, || async {
        let listed: Value = http
            .get(format!("{base}/webhooks/{webhook}/deliveries"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        listed["deliveries"][0]["status"] == "delivered"
            && listed["deliveries"][0]["event_id"] == id.as_str()
    })
    .await;
    drop((second, third, api));
    db.drop_db().await;
}
