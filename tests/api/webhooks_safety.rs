//! Webhook receivers that misbehave, on both databases: a name re-pointed at loopback after
//! registration is refused on every attempt and the receiver listening there gets nothing;
//! redirects are not followed; an endless answer is cut short; a silent receiver times out
//! and is tried again; an endpoint that keeps failing is disabled, says why, and sends its
//! waiting delivery once enabled. An HTTPS endpoint is called over TLS, trusting what the
//! fetches trust (`FETCH_EXTRA_ROOT_CERTS` beside the system's CAs) and nothing else.

use crate::common::webhooks::Receiver;
use crate::fake::{FakeInternet, NameServer, Route, Sites};
use crate::helpers::{Backend, TestApp, both_backends};
use crate::webhooks_delivery::{SECRET_KEY, WAIT, deliveries, deliveries_until, register, submit};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Whether every delivery of `found` has ended (delivered or failed).
fn settled(found: &[Value], n: usize) -> bool {
    found.len() == n && found.iter().all(|d| d["status"] != "pending")
}

async fn a_name_re_pointed_inside_is_refused_on_every_attempt(backend: Backend) {
    let Some(receiver) = Receiver::start(&[], &[]).await else {
        return;
    };
    let dns = NameServer::answering(Ipv4Addr::LOCALHOST).await;
    let dns_addr = dns.addr.to_string();
    // The job's one domain is a `.test` name, answered "not found" without any lookup: the
    // job fails at once and every question the name server reads is the webhook's.
    let app = TestApp::spawn(
        backend,
        &[
            SECRET_KEY,
            ("FETCH_DNS_SERVERS", &dns_addr),
            ("FETCH_ALLOW_PRIVATE_NETWORKS", "false"),
            ("WEBHOOK_RETRY_BASE_MS", "100"),
            ("WEBHOOK_MAX_ATTEMPTS", "3"),
        ],
    )
    .await;
    let port = receiver.url().rsplit_once(':').unwrap().1.to_owned();
    let url = format!("http://hook.example:{port}");
    let (status, refused) = app
        .post_json("/webhooks", &json!({"url": url, "client_id": "acme"}))
        .await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(refused["error"]["code"], "WEBHOOK_URL_REFUSED", "{refused}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("non-public address"),
        "{refused}"
    );

    dns.set_answer(Ipv4Addr::new(8, 8, 8, 8));
    let (webhook, _) = register(&app, "acme", &url, None).await;
    // Switched before any job exists, so no attempt can have been made while the name
    // pointed at 8.8.8.8: registering only looked the name up.
    assert!(deliveries(&app, &webhook).await.is_empty());
    dns.set_answer(Ipv4Addr::LOCALHOST);
    let asked = dns.queries();
    let job = submit(&app, "acme", &["gone.test"]).await;
    let done = app.wait_for_job(&job, WAIT).await;
    assert_eq!(done["status"], "failed", "{done}");
    let found = deliveries_until(&app, &webhook, WAIT, |d| settled(d, 1)).await;
    let delivery = &found[0];
    assert_eq!(delivery["status"], "failed", "{delivery:#}");
    assert_eq!(delivery["event_type"], "job.failed", "{delivery:#}");
    let log = delivery["attempt_log"].as_array().unwrap();
    assert_eq!(log.len(), 3, "{delivery:#}");
    // A connection to 8.8.8.8 (unreachable here) would have ended in a connect error or a
    // timeout with a latency to match; each attempt was stopped by the guard instead.
    for attempt in log {
        let error = attempt["error"].as_str().unwrap();
        assert!(error.starts_with("refused: "), "{attempt}");
        assert!(error.contains("non-public address"), "{attempt}");
        assert!(!error.contains("127.0.0.1"), "{attempt}");
        assert_eq!(attempt["status_code"], Value::Null, "{attempt}");
        assert!(attempt["latency_ms"].as_u64().unwrap() < 1_000, "{attempt}");
    }
    assert!(
        dns.queries() > asked,
        "each attempt asked the name server again"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        receiver.deliveries().is_empty(),
        "{:#?}",
        receiver.deliveries()
    );
    let metrics = app.metrics().await;
    assert_eq!(
        metrics.get("favicon_finder_webhook_attempts_total{outcome=\"refused\"}"),
        Some(&3.0),
        "{metrics:?}"
    );
    app.stop().await;
}

both_backends!(
    a_name_re_pointed_inside_is_refused_on_every_attempt_on,
    a_name_re_pointed_inside_is_refused_on_every_attempt
);

/// How a [`RawEndpoint`] answers.
#[derive(Clone)]
enum Answer {
    /// 302 to this URL.
    Redirect(String),
    /// 500, then a body that never ends.
    Endless,
}

/// A loopback HTTP endpoint written on the socket, so it can answer what no framework would
/// let it: it counts requests by path, and the connections whose endless answer the client
/// hung up on.
struct RawEndpoint {
    port: u16,
    hits: Arc<Mutex<HashMap<String, usize>>>,
    hung_up: Arc<AtomicUsize>,
}

impl RawEndpoint {
    async fn start(answer: impl Fn(u16) -> Answer + Send + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let hits = Arc::new(Mutex::new(HashMap::new()));
        let hung_up = Arc::new(AtomicUsize::new(0));
        let (h, u) = (hits.clone(), hung_up.clone());
        let answer = answer(port);
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(serve(socket, answer.clone(), h.clone(), u.clone()));
            }
        });
        Self {
            port,
            hits,
            hung_up,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn hits(&self, path: &str) -> usize {
        self.hits.lock().unwrap().get(path).copied().unwrap_or(0)
    }
}

/// Reads one request (its head, then `Content-Length` bytes) and answers it.
async fn serve(
    mut socket: TcpStream,
    answer: Answer,
    hits: Arc<Mutex<HashMap<String, usize>>>,
    hung_up: Arc<AtomicUsize>,
) {
    let mut read = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = read.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        match socket.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => read.extend_from_slice(&buf[..n]),
        }
    };
    let head = String::from_utf8_lossy(&read[..head_end]).to_string();
    let path = head.split(' ').nth(1).unwrap_or("").to_owned();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0);
    // The body is read so that closing the socket sends no reset ahead of the answer.
    while read.len() < head_end + length {
        match socket.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => read.extend_from_slice(&buf[..n]),
        }
    }
    *hits.lock().unwrap().entry(path).or_default() += 1;
    match answer {
        Answer::Redirect(to) => {
            let reply = format!(
                "HTTP/1.1 302 Found\r\nLocation: {to}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            let _ = socket.write_all(reply.as_bytes()).await;
        }
        Answer::Endless => {
            let head = "HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain\r\n\
                        Connection: close\r\n\r\n";
            if socket.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            let chunk = vec![b'x'; 16 * 1024];
            while socket.write_all(&chunk).await.is_ok() {}
            hung_up.fetch_add(1, Ordering::SeqCst);
        }
    }
}

async fn redirects_endless_and_silent_answers_are_bounded(backend: Backend) {
    let Some(silent) = Receiver::start(&[], &[]).await else {
        return;
    };
    let app = TestApp::spawn(
        backend,
        &[
            SECRET_KEY,
            ("WEBHOOK_RETRY_BASE_MS", "100"),
            ("WEBHOOK_MAX_ATTEMPTS", "2"),
            ("WEBHOOK_TIMEOUT_SECS", "1"),
        ],
    )
    .await;
    let redirecting =
        RawEndpoint::start(|port| Answer::Redirect(format!("http://127.0.0.1:{port}/landing")))
            .await;
    let endless = RawEndpoint::start(|_| Answer::Endless).await;
    silent.set_delay(Duration::from_secs(5)).await;
    let (to_redirect, _) = register(&app, "acme", &redirecting.url("/hook"), None).await;
    let (to_endless, _) = register(&app, "acme", &endless.url("/hook"), None).await;
    let (to_silent, secret) = register(&app, "acme", &silent.url(), None).await;
    silent.set_secrets(&[&secret]).await;
    let started = Instant::now();
    for webhook in [&to_redirect, &to_endless, &to_silent] {
        let (status, queued) = app
            .post_json(&format!("/webhooks/{webhook}/test"), &json!({}))
            .await;
        assert_eq!(status, 202, "{queued}");
    }

    let found = deliveries_until(&app, &to_redirect, WAIT, |d| settled(d, 1)).await;
    let log = found[0]["attempt_log"].as_array().unwrap();
    assert_eq!(log.len(), 2, "{found:#?}");
    for attempt in log {
        assert_eq!(attempt["status_code"], 302, "{attempt}");
        assert_eq!(attempt["error"], "HTTP 302", "{attempt}");
    }
    assert_eq!(found[0]["status"], "failed");
    assert_eq!(redirecting.hits("/hook"), 2);
    assert_eq!(redirecting.hits("/landing"), 0, "a redirect was followed");

    let found = deliveries_until(&app, &to_endless, WAIT, |d| settled(d, 1)).await;
    let log = found[0]["attempt_log"].as_array().unwrap();
    assert_eq!(log.len(), 2, "{found:#?}");
    for attempt in log {
        assert_eq!(attempt["status_code"], 500, "{attempt}");
        let error = attempt["error"].as_str().unwrap();
        assert!(error.starts_with("HTTP 500: xxx"), "{attempt}");
        assert!(error.len() <= 210, "{} bytes kept: {attempt}", error.len());
        let latency = attempt["latency_ms"].as_u64().unwrap();
        assert!(
            latency < 1_000,
            "an endless answer held the attempt: {attempt}"
        );
    }
    assert_eq!(endless.hits("/hook"), 2);
    // Each endless answer ended because the sender hung up, not because it was read whole.
    let deadline = Instant::now() + WAIT;
    while endless.hung_up.load(Ordering::SeqCst) < 2 {
        assert!(Instant::now() < deadline, "the sender kept reading");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let found = deliveries_until(&app, &to_silent, WAIT, |d| settled(d, 1)).await;
    let took = started.elapsed();
    let delivery = &found[0];
    assert_eq!(delivery["status"], "failed", "{delivery:#}");
    let log = delivery["attempt_log"].as_array().unwrap();
    assert_eq!(log.len(), 2, "tried again after the timeout: {delivery:#}");
    for attempt in log {
        assert_eq!(attempt["error"], "no answer within 1 s", "{attempt}");
        assert_eq!(attempt["status_code"], Value::Null, "{attempt}");
        let latency = attempt["latency_ms"].as_u64().unwrap();
        assert!((1_000..2_000).contains(&latency), "{attempt}");
    }
    let seen = silent.wait_for(2, WAIT).await;
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].header("webhook-id"), seen[1].header("webhook-id"));
    assert!(seen.iter().all(|d| d.verified_with == [0]), "{seen:#?}");
    eprintln!("redirect, endless and silent endpoints settled within {took:?}");
    app.stop().await;
}

both_backends!(
    redirects_endless_and_silent_answers_are_bounded_on,
    redirects_endless_and_silent_answers_are_bounded
);

async fn a_failing_endpoint_is_disabled_then_enabled(backend: Backend) {
    let Some(receiver) = Receiver::start(&[], &[500; 100]).await else {
        return;
    };
    let app = TestApp::spawn(
        backend,
        &[
            SECRET_KEY,
            ("WEBHOOK_RETRY_BASE_MS", "100"),
            ("WEBHOOK_RETRY_MAX_SECS", "1"),
            ("WEBHOOK_DISABLE_AFTER_SECS", "2"),
        ],
    )
    .await;
    let (webhook, secret) = register(&app, "acme", &receiver.url(), None).await;
    receiver.set_secrets(&[&secret]).await;
    let (status, queued) = app
        .post_json(&format!("/webhooks/{webhook}/test"), &json!({}))
        .await;
    assert_eq!(status, 202, "{queued}");
    let first = receiver.wait_for(1, WAIT).await.remove(0);
    let disabled = wait_until_disabled(&app, &webhook).await;
    let reason = disabled["disabled_reason"].as_str().unwrap();
    assert!(reason.contains("2 s"), "{disabled}");
    assert!(reason.ends_with("HTTP 500"), "{disabled}");
    let failing: chrono::DateTime<chrono::Utc> =
        disabled["failing_since"].as_str().unwrap().parse().unwrap();
    let off: chrono::DateTime<chrono::Utc> =
        disabled["disabled_at"].as_str().unwrap().parse().unwrap();
    let after = off - failing;
    eprintln!("disabled {after} after the first failure");
    assert!(after >= chrono::Duration::seconds(2), "{disabled}");
    assert!(after < chrono::Duration::seconds(4), "{disabled}");
    assert_eq!(
        app.metric("favicon_finder_webhooks_disabled_total").await,
        1.0
    );

    // A disabled endpoint is sent nothing more; its delivery waits.
    let sent = receiver.deliveries().len();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(receiver.deliveries().len(), sent);
    let waiting = &deliveries(&app, &webhook).await[0];
    assert_eq!(waiting["status"], "pending", "{waiting:#}");
    assert_eq!(waiting["attempts"], sent, "{waiting:#}");

    receiver.set_statuses(&[]).await;
    let (status, enabled) = app
        .post_json(&format!("/webhooks/{webhook}/enable"), &json!({}))
        .await;
    assert_eq!(status, 200, "{enabled}");
    assert_eq!(enabled["enabled"], true, "{enabled}");
    assert_eq!(enabled["disabled_reason"], Value::Null, "{enabled}");
    let last = receiver.wait_for(sent + 1, WAIT).await.remove(sent);
    assert_eq!(last.status, 204);
    assert_eq!(last.verified_with, [0], "{last:#?}");
    assert_eq!(last.header("webhook-id"), first.header("webhook-id"));
    let found = deliveries_until(&app, &webhook, WAIT, |d| settled(d, 1)).await;
    assert_eq!(found[0]["status"], "delivered", "{found:#?}");
    let (_, listed) = app.get_json("/webhooks?client_id=acme").await;
    assert_eq!(
        listed["webhooks"][0]["failing_since"],
        Value::Null,
        "{listed}"
    );
    app.stop().await;
}

/// Polls `GET /webhooks` until the endpoint shows as disabled; returns it.
async fn wait_until_disabled(app: &TestApp, webhook: &str) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let (status, listed) = app.get_json("/webhooks?client_id=acme").await;
        assert_eq!(status, 200, "{listed}");
        let found = listed["webhooks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|w| w["id"] == webhook)
            .cloned()
            .unwrap();
        if found["enabled"] == false {
            return found;
        }
        assert!(Instant::now() < deadline, "never disabled: {found}");
        // Wall-clock: the deliverer's retries run on real time.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

both_backends!(
    a_failing_endpoint_is_disabled_then_enabled_on,
    a_failing_endpoint_is_disabled_then_enabled
);

async fn an_https_endpoint_is_called_over_tls_it_trusts(backend: Backend) {
    let mut sites = Sites::default();
    sites.route("hooks.test", "/hook", Route::new(204, "text/plain", ""));
    let internet = FakeInternet::start(sites).await;
    let resolve = internet.resolve_exact(&[]);
    let ca = internet.ca_file().display().to_string();
    let url = "https://hooks.test/hook";
    let mut vars = vec![
        SECRET_KEY,
        ("FETCH_RESOLVE", resolve.as_str()),
        ("WEBHOOK_MAX_ATTEMPTS", "1"),
    ];
    // Without the test CA, the fake internet's certificate is trusted by nothing.
    let untrusting = TestApp::spawn(backend, &vars).await;
    let (webhook, _) = register(&untrusting, "acme", url, None).await;
    untrusting
        .post_json(&format!("/webhooks/{webhook}/test"), &json!({}))
        .await;
    let found = deliveries_until(&untrusting, &webhook, WAIT, |d| settled(d, 1)).await;
    assert_eq!(found[0]["status"], "failed", "{found:#?}");
    assert_eq!(found[0]["last_status_code"], Value::Null, "{found:#?}");
    let error = found[0]["last_error"].as_str().unwrap();
    assert!(error.starts_with("TLS failed: "), "{error}");
    assert!(error.contains("certificate"), "{error}");
    eprintln!("untrusted HTTPS endpoint: {error}");
    assert_eq!(internet.hits("hooks.test", "/hook"), 0);
    untrusting.stop().await;

    vars.push(("FETCH_EXTRA_ROOT_CERTS", ca.as_str()));
    let app = TestApp::spawn(backend, &vars).await;
    let (webhook, _) = register(&app, "acme", url, None).await;
    app.post_json(&format!("/webhooks/{webhook}/test"), &json!({}))
        .await;
    let found = deliveries_until(&app, &webhook, WAIT, |d| settled(d, 1)).await;
    assert_eq!(found[0]["status"], "delivered", "{found:#?}");
    assert_eq!(found[0]["last_status_code"], 204, "{found:#?}");
    assert_eq!(internet.https_hits("hooks.test", "/hook"), 1);
    assert_eq!(internet.hits("hooks.test", "/hook"), 1);
    app.stop().await;
}

both_backends!(
    an_https_endpoint_is_called_over_tls_it_trusts_on,
    an_https_endpoint_is_called_over_tls_it_trusts
);
