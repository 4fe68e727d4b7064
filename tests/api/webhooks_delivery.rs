//! Webhook delivery end to end, on both databases: the real app sends to a receiver that
//! verifies every request with the npm `standardwebhooks` package (tests/common/webhooks.rs).
//! A job's end reaches it within a second, signed, with the job's counts, its failures by
//! reason and a download link that downloads; a receiver that answers 500 twice gets the
//! third attempt under the same `webhook-id`, and the attempt log and `/metrics` say so;
//! redelivery and test events; both secrets sign during a rotation's overlap, the new one
//! alone after it; `job.progress` only for those who asked, at most once per interval. The unsafe receivers (DNS re-pointed inside, redirects, huge or silent answers)
//! and disabling are in `webhooks_safety.rs`.

use crate::common::webhooks::{Delivery, Receiver};
use crate::fake::{FakeInternet, Sites};
use crate::helpers::{Backend, TestApp, both_backends};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

/// `WEBHOOK_SECRET_KEY`: 32 bytes in base64, as the settings require.
pub const SECRET_KEY: (&str, &str) = (
    "WEBHOOK_SECRET_KEY",
    "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
);
/// How long a test waits for what should take a second or two.
pub const WAIT: Duration = Duration::from_secs(15);

/// Registers `url` for client `client` (`events`: `None` for the default three); returns the
/// endpoint's id and its secret.
pub async fn register(
    app: &TestApp,
    client: &str,
    url: &str,
    events: Option<&[&str]>,
) -> (String, String) {
    let mut body = json!({"url": url, "client_id": client});
    if let Some(events) = events {
        body["events"] = json!(events);
    }
    let (status, created) = app.post_json("/webhooks", &body).await;
    assert_eq!(status, 201, "{created}");
    let secret = created["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"), "{created}");
    (created["id"].as_str().unwrap().to_owned(), secret)
}

/// `GET /webhooks/{id}/deliveries`, newest first.
pub async fn deliveries(app: &TestApp, webhook: &str) -> Vec<Value> {
    let (status, body) = app
        .get_json(&format!("/webhooks/{webhook}/deliveries"))
        .await;
    assert_eq!(status, 200, "{body}");
    body["deliveries"].as_array().unwrap().clone()
}

/// Polls the endpoint's deliveries until `done` holds for them; panics with them after `within`.
pub async fn deliveries_until(
    app: &TestApp,
    webhook: &str,
    within: Duration,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let found = deliveries(app, webhook).await;
        if done(&found) {
            return found;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "deliveries after {within:?}: {found:#?}"
        );
        // Wall-clock: the deliverer runs on its own poll, against a real socket.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Submits `domains` for `client`; returns the job's id.
pub async fn submit(app: &TestApp, client: &str, domains: &[&str]) -> String {
    let (status, created) = app
        .post_json("/jobs", &json!({"client_id": client, "domains": domains}))
        .await;
    assert_eq!(status, 201, "{created}");
    created["job_id"].as_str().unwrap().to_owned()
}

/// The requests among `seen` whose body is event `event` of job `job`.
pub fn events_of<'a>(seen: &'a [Delivery], event: &str, job: &str) -> Vec<&'a Delivery> {
    seen.iter()
        .filter(|d| d.body["type"] == event && d.body["data"]["job_id"] == job)
        .collect()
}

/// An event's body without its download link, which each attempt signs afresh.
fn without_link(body: &Value) -> Value {
    let mut body = body.clone();
    body["data"].as_object_mut().unwrap().remove("download_url");
    body
}

/// Waits for event `event` of job `job` at the receiver (the order of events is not promised).
pub async fn wait_event(receiver: &Receiver, event: &str, job: &str) -> Delivery {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(found) = events_of(&receiver.deliveries(), event, job).first() {
            return (*found).clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no {event} of {job}: {:#?}",
            receiver.deliveries()
        );
        // Wall-clock: the receiver is another process.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A time as the APIs print it (RFC 3339).
fn parse_time(v: &Value) -> DateTime<Utc> {
    v.as_str()
        .unwrap_or_else(|| panic!("not a time: {v}"))
        .parse()
        .unwrap()
}

/// The job's failures by reason, counted from its results as `GET /jobs/{id}/results` shows.
async fn failures_by_reason(app: &TestApp, job: &str) -> Value {
    let (_, rows) = app
        .get_json(&format!("/jobs/{job}/results?per_page=100"))
        .await;
    let mut counts = BTreeMap::<String, u64>::new();
    for row in rows["results"].as_array().unwrap() {
        if row["status"] == "failed" {
            *counts
                .entry(row["error_code"].as_str().unwrap().to_owned())
                .or_default() += 1;
        }
    }
    json!(counts)
}

/// Checks one job event against the job as `GET /jobs/{id}` shows it, within a second of its
/// end, verified with the endpoint's one secret; downloads its CSV through its link.
async fn check_job_event(app: &TestApp, event: &Delivery, kind: &str, job: &Value) {
    let job_id = job["job_id"].as_str().unwrap();
    assert_eq!(event.verified_with, [0], "{event:#?}");
    assert_eq!(event.body["type"], kind, "{event:#?}");
    let data = &event.body["data"];
    for field in ["status", "total", "completed", "failed", "client_id"] {
        assert_eq!(data[field], job[field], "{field}: {event:#?} vs {job}");
    }
    assert_eq!(
        data["failures_by_reason"],
        failures_by_reason(app, job_id).await
    );
    let finished = parse_time(&job["updated_at"]);
    assert_eq!(parse_time(&data["finished_at"]), finished, "{data}");
    // The event's timestamp is printed to the millisecond.
    let stamp = parse_time(&event.body["timestamp"]) - finished;
    assert!(stamp.num_milliseconds().abs() < 1, "{stamp}: {data}");
    let received: DateTime<Utc> = event.received_at.into();
    let after = received - finished;
    eprintln!(
        "{kind}: received {} ms after the job ended",
        after.num_milliseconds()
    );
    assert!(
        after >= chrono::Duration::zero() && after < chrono::Duration::seconds(1),
        "{kind} arrived {after} after the job ended"
    );
    let link = data["download_url"].as_str().unwrap();
    let csv = reqwest::get(app.url(link)).await.unwrap();
    assert_eq!(csv.status(), 200, "{link}");
    let (header, records) = crate::helpers::parse_csv(&csv.text().await.unwrap());
    assert!(header.iter().any(|h| h == "domain"), "{header:?}");
    assert_eq!(records.len() as u64, job["total"].as_u64().unwrap());
}

/// How long the sites of the job that is cancelled take to answer: longer than the other two
/// jobs take, so it is cancelled with its domains in flight.
const SLOW: Duration = Duration::from_secs(4);

async fn a_job_end_reaches_a_verifying_receiver_within_a_second(backend: Backend) {
    let Some(receiver) = Receiver::start(&[], &[]).await else {
        return;
    };
    let mut sites = Sites::default();
    sites.icon_site("one.test").icon_site("two.test");
    sites.page("bare.test", "<p>no icon here</p>");
    for host in ["slow1.test", "slow2.test", "slow3.test"] {
        sites.slow_icon_site(host, SLOW);
    }
    let internet = FakeInternet::start(sites).await;
    let app = TestApp::spawn_on(backend, &internet, &[SECRET_KEY]).await;
    let (_, secret) = register(&app, "acme", &receiver.url(), None).await;
    receiver.set_secrets(&[&secret]).await;

    let completed = submit(&app, "acme", &["one.test", "two.test", "bare.test"]).await;
    let failed = submit(&app, "acme", &["bare.test"]).await;
    let slow = submit(&app, "acme", &["slow1.test", "slow2.test", "slow3.test"]).await;
    let slow_submitted = tokio::time::Instant::now();
    let done = app.wait_for_job(&completed, WAIT).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["failed"], 1, "{done}");
    let event = wait_event(&receiver, "job.completed", &completed).await;
    check_job_event(&app, &event, "job.completed", &done).await;
    let gone = app.wait_for_job(&failed, WAIT).await;
    assert_eq!(gone["status"], "failed", "{gone}");
    let event = wait_event(&receiver, "job.failed", &failed).await;
    check_job_event(&app, &event, "job.failed", &gone).await;

    let (status, cancelled) = app
        .post_json(&format!("/jobs/{slow}/cancel"), &json!({}))
        .await;
    assert_eq!(status, 200, "{cancelled}");
    let event = wait_event(&receiver, "job.cancelled", &slow).await;
    let (_, cancelled) = app.get_json(&format!("/jobs/{slow}")).await;
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");
    check_job_event(&app, &event, "job.cancelled", &cancelled).await;
    // Nothing else, also once the cancelled job's sites have answered: one event per job's
    // end, each sent once.
    tokio::time::sleep_until(slow_submitted + SLOW + Duration::from_secs(1)).await;
    let (_, still) = app.get_json(&format!("/jobs/{slow}")).await;
    assert_eq!(still["status"], "cancelled", "{still}");
    let seen = receiver.deliveries();
    assert_eq!(seen.len(), 3, "{seen:#?}");
    let ids: std::collections::HashSet<&str> =
        seen.iter().map(|d| d.header("webhook-id")).collect();
    assert_eq!(ids.len(), 3, "each event has its own webhook-id");
    app.stop().await;
}

both_backends!(
    a_job_end_reaches_a_verifying_receiver_within_a_second_on,
    a_job_end_reaches_a_verifying_receiver_within_a_second
);

async fn two_failures_then_the_third_attempt_lands(backend: Backend) {
    let Some(receiver) = Receiver::start(&[], &[500, 500]).await else {
        return;
    };
    let mut sites = Sites::default();
    sites.icon_site("one.test");
    let internet = FakeInternet::start(sites).await;
    let app = TestApp::spawn_on(
        backend,
        &internet,
        &[SECRET_KEY, ("WEBHOOK_RETRY_BASE_MS", "100")],
    )
    .await;
    let (webhook, secret) = register(&app, "acme", &receiver.url(), None).await;
    receiver.set_secrets(&[&secret]).await;
    let job = submit(&app, "acme", &["one.test"]).await;
    app.wait_for_job(&job, WAIT).await;
    let seen = receiver.wait_for(3, WAIT).await;
    let statuses: Vec<u16> = seen.iter().map(|d| d.status).collect();
    assert_eq!(statuses, [500, 500, 204]);
    let id = seen[0].header("webhook-id");
    assert!(id.starts_with("msg_"), "{id}");
    for attempt in &seen {
        assert_eq!(attempt.header("webhook-id"), id, "{attempt:#?}");
        assert_eq!(attempt.verified_with, [0], "{attempt:#?}");
        assert_eq!(
            without_link(&attempt.body),
            without_link(&seen[0].body),
            "the same event each time, its link signed afresh"
        );
    }
    let found = deliveries_until(&app, &webhook, WAIT, |d| {
        d.first().is_some_and(|d| d["status"] == "delivered")
    })
    .await;
    assert_eq!(found.len(), 1, "{found:#?}");
    let delivery = &found[0];
    assert_eq!(delivery["event_id"], id);
    assert_eq!(delivery["event_type"], "job.completed");
    assert_eq!(delivery["job_id"], job.as_str());
    assert_eq!(delivery["attempts"], 3);
    assert_eq!(delivery["last_status_code"], 204);
    assert_eq!(delivery["last_error"], Value::Null, "{delivery}");
    assert!(delivery["delivered_at"].is_string(), "{delivery}");
    let log = delivery["attempt_log"].as_array().unwrap();
    let codes: Vec<&Value> = log.iter().map(|a| &a["status_code"]).collect();
    assert_eq!(
        codes,
        [&json!(500), &json!(500), &json!(204)],
        "{delivery:#}"
    );
    let numbers: Vec<&Value> = log.iter().map(|a| &a["attempt"]).collect();
    assert_eq!(numbers, [&json!(1), &json!(2), &json!(3)]);
    let gaps: Vec<i64> = log
        .windows(2)
        .map(|w| (parse_time(&w[1]["at"]) - parse_time(&w[0]["at"])).num_milliseconds())
        .collect();
    eprintln!("retry gaps: {gaps:?} ms");
    // 100 ms, then 300 ms, each -20 % at worst (the times are printed to the millisecond).
    assert!(gaps[0] >= 79 && gaps[1] >= 239, "{gaps:?}");
    for (attempt, arrived) in log.iter().zip(&seen) {
        let latency = attempt["latency_ms"].as_u64().unwrap();
        assert!(latency < 1_000, "{attempt}");
        let at: SystemTime = parse_time(&attempt["at"]).into();
        let lag = arrived.received_at.duration_since(at).unwrap_or_default();
        assert!(lag < Duration::from_secs(1), "{attempt} vs {arrived:?}");
    }
    // The receiver's empty 500 leaves nothing to quote.
    assert_eq!(log[0]["error"], "HTTP 500", "{delivery:#}");
    assert_eq!(log[2]["error"], Value::Null, "{delivery:#}");

    let metrics = app.metrics().await;
    let count = |outcome: &str| {
        metrics
            .get(&format!(
                "favicon_finder_webhook_attempts_total{{outcome=\"{outcome}\"}}"
            ))
            .copied()
            .unwrap_or_else(|| panic!("no {outcome} in {metrics:?}"))
    };
    assert_eq!(
        (
            count("retry"),
            count("delivered"),
            count("failed"),
            count("refused")
        ),
        (2.0, 1.0, 0.0, 0.0)
    );
    app.stop().await;
}

both_backends!(
    two_failures_then_the_third_attempt_lands_on,
    two_failures_then_the_third_attempt_lands
);

async fn redeliver_and_test_events_are_signed_and_keep_their_id(backend: Backend) {
    let Some(receiver) = Receiver::start(&[], &[]).await else {
        return;
    };
    let mut sites = Sites::default();
    sites.icon_site("one.test");
    let internet = FakeInternet::start(sites).await;
    let app = TestApp::spawn_on(backend, &internet, &[SECRET_KEY]).await;
    let (webhook, secret) = register(&app, "acme", &receiver.url(), None).await;
    receiver.set_secrets(&[&secret]).await;
    let job = submit(&app, "acme", &["one.test"]).await;
    app.wait_for_job(&job, WAIT).await;
    let first = receiver.wait_for(1, WAIT).await.remove(0);
    let found = deliveries_until(&app, &webhook, WAIT, |d| {
        d.first().is_some_and(|d| d["status"] == "delivered")
    })
    .await;
    let original = &found[0];

    let (status, again) = app
        .post_json(
            &format!(
                "/webhooks/deliveries/{}/redeliver",
                original["id"].as_str().unwrap()
            ),
            &json!({}),
        )
        .await;
    assert_eq!(status, 202, "{again}");
    assert_ne!(again["id"], original["id"], "a new delivery: {again}");
    assert_eq!(again["event_id"], original["event_id"], "{again}");
    let second = receiver.wait_for(2, WAIT).await.remove(1);
    assert_eq!(second.verified_with, [0], "{second:#?}");
    assert_eq!(second.header("webhook-id"), first.header("webhook-id"));
    assert_eq!(without_link(&second.body), without_link(&first.body));
    assert_eq!(second.body["type"], "job.completed");

    let (status, queued) = app
        .post_json(&format!("/webhooks/{webhook}/test"), &json!({}))
        .await;
    assert_eq!(status, 202, "{queued}");
    assert_eq!(queued["event_type"], "webhook.test", "{queued}");
    let test = receiver.wait_for(3, WAIT).await.remove(2);
    assert_eq!(test.verified_with, [0], "{test:#?}");
    assert_eq!(test.body["type"], "webhook.test", "{test:#?}");
    assert_eq!(test.body["data"]["webhook_id"], webhook.as_str());
    assert_eq!(test.header("webhook-id"), queued["event_id"]);
    assert_ne!(test.header("webhook-id"), first.header("webhook-id"));
    let found = deliveries_until(&app, &webhook, WAIT, |d| {
        d.len() == 3 && d.iter().all(|d| d["status"] == "delivered")
    })
    .await;
    assert_eq!(
        found[0]["event_type"], "webhook.test",
        "newest first: {found:#?}"
    );
    app.stop().await;
}

both_backends!(
    redeliver_and_test_events_are_signed_and_keep_their_id_on,
    redeliver_and_test_events_are_signed_and_keep_their_id
);

/// Rotates the endpoint's secret with `overlap_secs`; returns the new secret.
async fn rotate(app: &TestApp, webhook: &str, overlap_secs: u64) -> String {
    let (status, rotated) = app
        .post_json(
            &format!("/webhooks/{webhook}/rotate-secret"),
            &json!({"overlap_secs": overlap_secs}),
        )
        .await;
    assert_eq!(status, 200, "{rotated}");
    rotated["secret"].as_str().unwrap().to_owned()
}

/// Sends a test event and returns it as the receiver got it (its `n`th request).
async fn test_event(app: &TestApp, receiver: &Receiver, webhook: &str, n: usize) -> Delivery {
    let (status, queued) = app
        .post_json(&format!("/webhooks/{webhook}/test"), &json!({}))
        .await;
    assert_eq!(status, 202, "{queued}");
    receiver.wait_for(n, WAIT).await.remove(n - 1)
}

async fn both_secrets_sign_during_a_rotation_only(backend: Backend) {
    let Some(receiver) = Receiver::start(&[], &[]).await else {
        return;
    };
    let app = TestApp::spawn(backend, &[SECRET_KEY]).await;
    let (webhook, first) = register(&app, "acme", &receiver.url(), None).await;
    let second = rotate(&app, &webhook, 3_600).await;
    assert_ne!(first, second);
    receiver.set_secrets(&[&first, &second]).await;
    let during = test_event(&app, &receiver, &webhook, 1).await;
    assert_eq!(during.verified_with, [0, 1], "{during:#?}");
    assert_eq!(during.header("webhook-signature").split(' ').count(), 2);

    // Without an overlap the secret it replaces stops signing at once.
    let third = rotate(&app, &webhook, 0).await;
    receiver.set_secrets(&[&first, &second, &third]).await;
    let after = test_event(&app, &receiver, &webhook, 2).await;
    assert_eq!(after.verified_with, [2], "{after:#?}");
    assert_eq!(after.header("webhook-signature").split(' ').count(), 1);
    app.stop().await;
}

both_backends!(
    both_secrets_sign_during_a_rotation_only_on,
    both_secrets_sign_during_a_rotation_only
);

async fn progress_only_for_those_who_asked_at_most_once_an_interval(backend: Backend) {
    let Some(watcher) = Receiver::start(&[], &[]).await else {
        return;
    };
    let Some(quiet) = Receiver::start(&[], &[]).await else {
        return;
    };
    // Twenty domains of 180 ms each, one at a time on the fake internet's one address (the
    // per-address politeness): a job of about 3.6 s that moves twenty times.
    let internet = FakeInternet::start(Sites::every_host(Duration::from_millis(180))).await;
    let app = TestApp::spawn_on(
        backend,
        &internet,
        &[
            SECRET_KEY,
            ("WEBHOOK_PROGRESS_INTERVAL_SECS", "1"),
            ("WORKER_CONCURRENCY", "2"),
        ],
    )
    .await;
    let events = ["job.progress", "job.completed"];
    let (_, secret) = register(&app, "acme", &watcher.url(), Some(&events)).await;
    watcher.set_secrets(&[&secret]).await;
    let (_, other) = register(&app, "acme", &quiet.url(), None).await;
    quiet.set_secrets(&[&other]).await;
    let domains: Vec<String> = (0..20).map(|i| format!("site{i}.test")).collect();
    let domains: Vec<&str> = domains.iter().map(String::as_str).collect();
    let started = std::time::Instant::now();
    let job = submit(&app, "acme", &domains).await;
    let done = app.wait_for_job(&job, Duration::from_secs(30)).await;
    let ran = started.elapsed();
    quiet.wait_for(1, WAIT).await;
    let seen = watcher.wait_for(1, WAIT).await;
    // The job's end is the last event; wait for it, then a little for any stray progress.
    let deadline = tokio::time::Instant::now() + WAIT;
    while events_of(&watcher.deliveries(), "job.completed", &job).is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "{seen:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let seen = watcher.deliveries();
    let progress = events_of(&seen, "job.progress", &job);
    let stamps: Vec<DateTime<Utc>> = progress
        .iter()
        .map(|d| parse_time(&d.body["timestamp"]))
        .collect();
    eprintln!(
        "job ran {ran:?}; {} progress events at {:?}",
        progress.len(),
        stamps
            .iter()
            .map(|t| t.format("%S%.3f").to_string())
            .collect::<Vec<_>>()
    );
    assert!(ran >= Duration::from_millis(2_500), "the job ran {ran:?}");
    // One at the first tick, then at most one per second while it runs.
    let most = ran.as_secs() as usize + 2;
    assert!(
        (2..=most).contains(&progress.len()) && progress.len() < 10,
        "a few progress events (at most {most}), not one per domain: {}",
        progress.len()
    );
    for pair in stamps.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap >= chrono::Duration::milliseconds(999),
            "{gap} between two: {stamps:?}"
        );
    }
    let mut last = -1;
    for event in &progress {
        assert_eq!(event.verified_with, [0], "{event:#?}");
        let data = &event.body["data"];
        assert_eq!(data["status"], "processing", "{data}");
        assert_eq!(data["total"], 20, "{data}");
        let moved = data["completed"].as_i64().unwrap() + data["failed"].as_i64().unwrap();
        assert!(moved > last && moved < 20, "progress goes forward: {data}");
        last = moved;
    }
    assert_eq!(events_of(&seen, "job.completed", &job).len(), 1);
    assert_eq!(seen.len(), progress.len() + 1, "{seen:#?}");
    let other = quiet.deliveries();
    assert_eq!(
        other.len(),
        1,
        "no progress for an endpoint that did not ask: {other:#?}"
    );
    assert_eq!(other[0].body["type"], "job.completed");
    assert_eq!(done["completed"], 20, "{done}");
    app.stop().await;
}

both_backends!(
    progress_only_for_those_who_asked_at_most_once_an_interval_on,
    progress_only_for_those_who_asked_at_most_once_an_interval
);
