//! Sentry reporting, against a fake Sentry on loopback that records envelopes: a domain given
//! up after its worker died is reported at error level with its job and domain as tags, a
//! recorded batch sends a transaction, and no secret leaves the process.

use crate::fake::{FakeInternet, Sites};
use crate::helpers::{Backend, TestApp, both_backends};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The DSN's secret key: never sent in a payload.
const DSN_SECRET: &str = "dsn-secret-5be1c";
/// The worker's database password (on PostgreSQL, which ignores it under trust auth): never
/// sent either.
const DB_PASSWORD: &str = "db-password-9d2e4";
/// The worker's link-signing secret: a secret it holds on every backend (a SQLite URL
/// cannot carry a password), never sent.
const LINK_SECRET: &str = "link-secret-3f9a1c7e-0b2d-4e6f-8a5c-1d3e5f7a9b0c";

/// Every envelope item received, as (item type, payload JSON).
type Received = Arc<Mutex<Vec<(String, Value)>>>;

async fn fake_sentry() -> (String, Received, Arc<Mutex<Vec<u8>>>) {
    let received: Received = Arc::default();
    let raw: Arc<Mutex<Vec<u8>>> = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new()
        .route("/api/{project}/envelope/", axum::routing::post(envelope))
        .with_state((received.clone(), raw.clone()));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    // A DSN with a secret key (the old form Sentry still accepts): it must not travel.
    (
        format!("http://public:{DSN_SECRET}@{addr}/42"),
        received,
        raw,
    )
}

async fn envelope(
    State((received, raw)): State<(Received, Arc<Mutex<Vec<u8>>>)>,
    headers: HeaderMap,
    body: Bytes,
) -> &'static str {
    let body = if headers.get("content-encoding").is_some_and(|v| v == "gzip") {
        use std::io::Read;
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&body[..])
            .read_to_end(&mut out)
            .unwrap();
        out
    } else {
        body.to_vec()
    };
    raw.lock().unwrap().extend_from_slice(&body);
    // Envelope: a header line, then (item header line, payload) pairs; a payload's length is
    // given in its header or runs to the end of the line.
    let mut rest = &body[..];
    let next_line = |rest: &mut &[u8]| -> Option<Vec<u8>> {
        if rest.is_empty() {
            return None;
        }
        let end = rest.iter().position(|b| *b == b'\n').unwrap_or(rest.len());
        let line = rest[..end].to_vec();
        *rest = &rest[(end + 1).min(rest.len())..];
        Some(line)
    };
    let _header = next_line(&mut rest);
    while let Some(item_header) = next_line(&mut rest) {
        if item_header.is_empty() {
            continue;
        }
        let item: Value = serde_json::from_slice(&item_header).unwrap_or(Value::Null);
        let payload = match item["length"].as_u64() {
            Some(n) => {
                let n = n as usize;
                let payload = rest[..n].to_vec();
                rest = &rest[n..];
                if rest.first() == Some(&b'\n') {
                    rest = &rest[1..];
                }
                payload
            }
            None => next_line(&mut rest).unwrap_or_default(),
        };
        let kind = item["type"].as_str().unwrap_or_default().to_owned();
        received.lock().unwrap().push((
            kind,
            serde_json::from_slice(&payload).unwrap_or(Value::Null),
        ));
    }
    "{}"
}

async fn a_dead_workers_domain_is_reported_with_its_tags(backend: Backend) {
    let (dsn, received, raw) = fake_sentry().await;
    let mut sites = Sites::default();
    sites.icon_site("fine.test");
    let internet = FakeInternet::start(sites).await;
    let resolve = internet.resolve(&[]);
    let app = TestApp::spawn_api(
        backend,
        &[
            ("FETCH_RESOLVE", &resolve),
            ("WORKER_CONCURRENCY", "0"),
            ("FETCH_MAX_TRIES", "1"),
            ("WORKER_LEASE_SECS", "1"),
        ],
    )
    .await;
    let (_, created) = app
        .post_json(
            "/jobs",
            &json!({"client_id": "s", "domains": ["stuck.test", "fine.test"]}),
        )
        .await;
    let job_id = created["job_id"].as_str().unwrap().to_owned();
    // A worker that died holding stuck.test on its last try: the lease runs out, nobody
    // may try again, so the row must be finished as failed and reported.
    let dead = uuid::Uuid::new_v4();
    let stuck = app
        .store
        .claim(dead, 1, Duration::from_millis(1), 1)
        .await
        .unwrap();
    assert_eq!(stuck[0].domain, "stuck.test");

    let mut worker_db = url::Url::parse(&app.database_url()).unwrap();
    // On PostgreSQL the worker's database URL carries a password, so the check below has a
    // password to look for; SQLite URLs cannot carry one.
    if backend == Backend::Postgres {
        worker_db.set_password(Some(DB_PASSWORD)).unwrap();
        assert!(worker_db.as_str().contains(DB_PASSWORD), "{worker_db}");
    }
    let worker_db = worker_db.to_string();
    let _worker = app.spawn_worker_process(&[
        ("DATABASE_URL", &worker_db),
        ("WORKER_CONCURRENCY", "4"),
        ("SENTRY_DSN", &dsn),
        ("SENTRY_TRACES_SAMPLE_RATE", "1"),
        ("SENTRY_ENVIRONMENT", "test"),
        ("DOWNLOAD_URL_SECRET", LINK_SECRET),
    ]);
    let job = app.wait_for_job(&job_id, Duration::from_secs(30)).await;
    assert_eq!(
        (job["completed"].as_i64(), job["failed"].as_i64()),
        (Some(1), Some(1)),
        "{job}"
    );

    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let (event, transaction) = loop {
        let items = received.lock().unwrap().clone();
        let event = items
            .iter()
            .find(|(kind, e)| kind == "event" && e["tags"]["domain"] == "stuck.test")
            .map(|(_, e)| e.clone());
        let transaction = items
            .iter()
            .find(|(kind, _)| kind == "transaction")
            .map(|(_, t)| t.clone());
        if let (Some(event), Some(transaction)) = (&event, &transaction) {
            break (event.clone(), transaction.clone());
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no event and transaction reached the fake Sentry: {items:?}"
        );
        // Wall-clock: another process's Sentry client sends over a real socket.
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Sentry leaves out the level when it is the default, error.
    assert!(
        event["level"].is_null() || event["level"] == "error",
        "{}",
        event["level"]
    );
    assert_eq!(event["tags"]["job_id"], job_id.as_str(), "{event}");
    assert_eq!(event["environment"], "test");
    let text = event.to_string();
    assert!(text.contains("gave up on a domain"), "{text}");
    assert_eq!(transaction["transaction"], "record batch", "{transaction}");
    assert_eq!(
        transaction["tags"]["job_id"],
        job_id.as_str(),
        "{transaction}"
    );
    assert!(event["request"].is_null(), "no request data is sent");
    // Nothing secret: neither the database's location or password nor the DSN's key.
    let raw = String::from_utf8_lossy(&raw.lock().unwrap()).into_owned();
    let database = url::Url::parse(&worker_db).unwrap();
    let db_name = database.path().trim_start_matches('/');
    let db_name = db_name.rsplit('/').next().unwrap_or(db_name);
    assert!(!db_name.is_empty());
    // The positive control: what was sent is really in the capture.
    assert!(raw.contains(&job_id), "the capture misses the payloads");
    let mut secrets = vec![
        &worker_db[..],
        db_name,
        DSN_SECRET,
        LINK_SECRET,
        "DATABASE_URL",
    ];
    if backend == Backend::Postgres {
        secrets.push(DB_PASSWORD);
    }
    for secret in secrets {
        assert!(!raw.contains(secret), "{secret} was sent to Sentry");
    }
    app.stop().await;
}
both_backends!(
    dead_worker_report,
    a_dead_workers_domain_is_reported_with_its_tags
);
