//! Documented promises about the process and its surroundings: the loud start-up warning of
//! `AUTH_MODE=off` beyond loopback, no proxy for fetches whatever the environment says, IPv6
//! clients counted by their /64, and two `REDIS_PREFIX`es sharing one Redis unseen.

use crate::fake::{FakeInternet, Sites};
use crate::helpers::{Backend, ChildGuard, TestApp};
use favicon_finder::events::{Events, ProgressEvent};
use favicon_finder::metrics::Metrics;
use favicon_finder::model::JobStatus;
use std::collections::HashSet;
use std::io::BufRead;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use uuid::Uuid;

const LOUD: &str = "AUTH_MODE=off on a non-loopback address";

/// The log of `favicon-finder serve` on `host` with `AUTH_MODE=off`, up to the line that says
/// where it listens (start-up is over then); the process is stopped after.
fn start_up_log(host: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_favicon-finder"));
    command
        .arg("serve")
        .env_clear()
        // Its own directory: no `.env` of the checkout is read.
        .current_dir(dir.path())
        .envs([
            ("DATABASE_URL", db.as_str()),
            ("HOST", host),
            ("PORT", "0"),
            ("AUTH_MODE", "off"),
            ("WORKER_CONCURRENCY", "0"),
            ("LOG_FORMAT", "text"),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    if let Ok(path) = std::env::var("PATH") {
        command.env("PATH", path);
    }
    let mut child = ChildGuard(command.spawn().expect("serve starts"));
    let stderr = child.0.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut log = String::new();
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("serve on {host} never said where it listens: {log}"));
        log.push_str(&line);
        log.push('\n');
        if line.contains("API listening") {
            return log;
        }
    }
}

/// README: "A server that listens beyond loopback with `AUTH_MODE=off` says so loudly in its
/// log at start"; on loopback, where that is the default, it says nothing of the kind.
#[test]
fn auth_off_beyond_loopback_is_loud_and_quiet_on_loopback() {
    let wide = start_up_log("0.0.0.0");
    assert!(wide.contains(LOUD), "no warning on 0.0.0.0: {wide}");
    assert!(wide.contains("WARN"), "at warn level: {wide}");
    let local = start_up_log("127.0.0.1");
    assert!(!local.contains(LOUD), "warned on loopback: {local}");
    assert!(local.contains("API listening"), "{local}");
}

/// A loopback listener standing in for a proxy: counts the connections it is offered and
/// closes them.
async fn recording_proxy() -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(AtomicUsize::new(0));
    let count = seen.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            drop(socket);
        }
    });
    (url, seen)
}

/// "No proxy is used": a worker process whose environment names a proxy for every scheme
/// still fetches the site directly, and the proxy is never offered a connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetches_never_go_through_a_proxy() {
    let mut sites = Sites::default();
    sites.icon_site("direct.test");
    let internet = FakeInternet::start(sites).await;
    let (proxy, seen) = recording_proxy().await;
    // The listener does record a client that uses it as a proxy.
    let via_proxy = reqwest::Client::builder()
        .proxy(reqwest::Proxy::all(&proxy).unwrap())
        .build()
        .unwrap()
        .get("http://direct.test/")
        .send()
        .await;
    assert!(via_proxy.is_err());
    assert_eq!(
        seen.swap(0, Ordering::SeqCst),
        1,
        "the control reached the proxy"
    );

    let resolve = internet.resolve(&[]);
    let app = TestApp::spawn_api(
        Backend::Sqlite,
        &[("FETCH_RESOLVE", &resolve), ("WORKER_CONCURRENCY", "0")],
    )
    .await;
    let mut vars = vec![("WORKER_CONCURRENCY", "2")];
    for name in ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"] {
        vars.push((name, &proxy));
    }
    let lower: Vec<(String, String)> = ["http_proxy", "https_proxy", "all_proxy"]
        .iter()
        .map(|n| ((*n).to_owned(), proxy.clone()))
        .collect();
    vars.extend(lower.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let _worker = app.spawn_worker_process(&vars);
    let id = app.create_job("direct", &["direct.test"]).await;
    let job = app.wait_for_job(&id, Duration::from_secs(30)).await;
    assert_eq!(job["completed"], 1, "{job}");
    assert!(
        internet.hits("direct.test", "/") >= 1,
        "the site was reached directly"
    );
    assert!(internet.hits("direct.test", "/i.png") >= 1);
    assert_eq!(seen.load(Ordering::SeqCst), 0, "the proxy saw a connection");
    app.stop().await;
}

/// Upgrades a WebSocket to the app as the client the trusted proxy header names; the HTTP
/// status the upgrade got (101 when it worked), and the socket to hold open.
async fn ws_as(app: &TestApp, client: &str) -> (u16, Option<crate::helpers::Ws>) {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = format!("{}/graphql/ws", app.base.replace("http://", "ws://"))
        .into_client_request()
        .unwrap();
    let headers = request.headers_mut();
    headers.insert(
        "sec-websocket-protocol",
        "graphql-transport-ws".parse().unwrap(),
    );
    headers.insert("x-forwarded-for", client.parse().unwrap());
    match tokio_tungstenite::connect_async(request).await {
        Ok((ws, response)) => (response.status().as_u16(), Some(ws)),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            (response.status().as_u16(), None)
        }
        Err(e) => panic!("upgrade as {client}: {e}"),
    }
}

/// `WS_MAX_CONNECTIONS_PER_IP` counts an IPv6 client by its /64: a second address in the same
/// /64 is over the cap, an address in the next /64 is not, and IPv4 addresses count alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_clients_are_counted_by_their_64() {
    let app = TestApp::api_only(&[
        ("TRUSTED_PROXY_HEADERS", "x-forwarded-for"),
        ("WS_MAX_CONNECTIONS_PER_IP", "1"),
    ])
    .await;
    let (first, _held) = ws_as(&app, "2001:db8:1:2::1").await;
    assert_eq!(first, 101);
    let (same_64, _) = ws_as(&app, "2001:db8:1:2:ffff:ffff:ffff:fffe").await;
    assert_eq!(same_64, 429, "the same /64 shares one allowance");
    let (next_64, _held_next) = ws_as(&app, "2001:db8:1:3::1").await;
    assert_eq!(next_64, 101, "another /64 is another client");
    let (v4, _held_v4) = ws_as(&app, "192.0.2.1").await;
    assert_eq!(v4, 101);
    let (v4_neighbour, _held_neighbour) = ws_as(&app, "192.0.2.2").await;
    assert_eq!(v4_neighbour, 101, "IPv4 addresses are not grouped");
}

/// A hub on `prefix` of Redis at `url`, as the app builds one.
fn hub(url: &str, prefix: &str) -> Events {
    Events::redis(url, prefix, None, Arc::new(Metrics::new())).unwrap()
}

/// Publishes a final event of a made-up job on `hub` until `hub` hears it back from Redis
/// (so its subscription is in place); returns that job's id.
async fn probe(hub: &Events) -> Uuid {
    let job_id = Uuid::now_v7();
    let mut heard = hub.subscribe_progress();
    let event = ProgressEvent {
        job_id,
        status: JobStatus::Completed,
        total: 1,
        completed: 1,
        failed: 0,
        progress: 100,
        finished: Vec::new(),
        cursor: 0,
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        hub.publish_progress(event.clone());
        // Re-published every 200 ms until the subscription (made in the background) hears it.
        if let Ok(Ok(got)) = tokio::time::timeout(Duration::from_millis(200), heard.recv()).await
            && got.job_id == job_id
        {
            return job_id;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "Redis never echoed the probe"
        );
    }
}

/// Job ids a hub has heard so far.
fn drain(heard: &mut tokio::sync::broadcast::Receiver<Arc<ProgressEvent>>) -> HashSet<Uuid> {
    let mut ids = HashSet::new();
    while let Ok(event) = heard.try_recv() {
        ids.insert(event.job_id);
    }
    ids
}

/// Two deployments with different `REDIS_PREFIX`es on one Redis: each hears its own jobs'
/// progress, never the other's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_prefixes_share_one_redis_unseen() {
    let redis_url = std::env::var("TEST_REDIS_URL").ok();
    if !crate::services::available("TEST_REDIS_URL", redis_url.is_some()) {
        return;
    }
    let redis_url = redis_url.unwrap_or_default();
    let mut sites = Sites::default();
    sites.icon_site("a.test").icon_site("b.test");
    let internet = FakeInternet::start(sites).await;
    let prefixes = [0, 1].map(|_| format!("ff-test-{}", Uuid::new_v4().simple()));
    let (listen_a, listen_b) = (hub(&redis_url, &prefixes[0]), hub(&redis_url, &prefixes[1]));
    let (mut heard_a, mut heard_b) = (listen_a.subscribe_progress(), listen_b.subscribe_progress());
    let (probe_a, probe_b) = (probe(&listen_a).await, probe(&listen_b).await);
    let mut apps = Vec::new();
    for prefix in &prefixes {
        let vars = [("REDIS_URL", redis_url.as_str()), ("REDIS_PREFIX", prefix)];
        apps.push(TestApp::spawn_on(Backend::Sqlite, &internet, &vars).await);
    }
    let job_a: Uuid = apps[0].create_job("p", &["a.test"]).await.parse().unwrap();
    let job_b: Uuid = apps[1].create_job("p", &["b.test"]).await.parse().unwrap();
    let (mut seen_a, mut seen_b) = (HashSet::new(), HashSet::new());
    crate::subscriptions::wait_until("each job's final event on its own prefix", || {
        seen_a.extend(drain(&mut heard_a));
        seen_b.extend(drain(&mut heard_b));
        let done = seen_a.contains(&job_a) && seen_b.contains(&job_b);
        async move { done }
    })
    .await;
    // Anything still on its way from Redis arrives within the final event's flush.
    for app in apps {
        app.stop().await;
    }
    seen_a.extend(drain(&mut heard_a));
    seen_b.extend(drain(&mut heard_b));
    assert!(seen_a.contains(&probe_a) && seen_b.contains(&probe_b));
    for (seen, foreign) in [(&seen_a, [job_b, probe_b]), (&seen_b, [job_a, probe_a])] {
        for id in foreign {
            assert!(!seen.contains(&id), "{id} crossed prefixes: {seen:?}");
        }
    }
}
