//! Graceful shutdown of `serve`, with the real binary: on SIGTERM it closes open WebSockets
//! cleanly (1001), hands back the rows it was fetching, and exits 0 within the grace period.

use crate::client::create_job_at;
use crate::fake::{FakeInternet, Sites};
use crate::helpers::{ChildGuard, Protocol, Ws, number, ws_connect, ws_subscribe};
use futures::StreamExt;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

/// The subscription every socket here holds.
const PROGRESS: &str = "subscription($id: ID!) { jobProgress(jobId: $id) { status completed } }";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_stops_cleanly_on_sigterm() {
    let mut sites = Sites::default();
    let mut domains = Vec::new();
    for i in 0..6 {
        let host = format!("slow{i}.test");
        sites.slow_icon_site(&host, Duration::from_secs(20));
        domains.push(host);
    }
    let internet = FakeInternet::start(sites).await;
    let dir = tempfile::tempdir().unwrap();
    let db_url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("serve.db").display()
    );
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_favicon-finder"))
        .arg("serve")
        .env("DATABASE_URL", &db_url)
        .env("HOST", "127.0.0.1")
        .env("PORT", "0")
        .env("FETCH_RESOLVE", internet.resolve(&[]))
        .env("FETCH_ALLOW_PRIVATE_NETWORKS", "true")
        .env("FETCH_TIMEOUT_SECS", "30")
        .env("WORKER_CONCURRENCY", "4")
        .env("SHUTDOWN_GRACE_SECS", "1")
        // The app's start-up line says which port it was given.
        .env("RUST_LOG", "warn,favicon_finder::app=info")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let addr = crate::helpers::listening_addr(child.stderr.take().unwrap());
    let mut child = ChildGuard(child);
    let base = format!("http://{addr}");
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while http.get(format!("{base}/healthz")).send().await.is_err() {
        assert!(Instant::now() < deadline, "serve did not start");
        // Wall-clock: another process starting.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let job_id = create_job_at(&base, "stop", &domains).await;

    // A live subscription, then wait until the worker holds rows.
    let mut ws = ws_connect(&base, "/graphql/ws", Protocol::TransportWs).await;
    ws_subscribe(
        &mut ws,
        Protocol::TransportWs,
        "1",
        PROGRESS,
        json!({"id": job_id}),
    )
    .await;
    let store = favicon_finder::store::Store::connect(&db_url, 1)
        .await
        .unwrap();
    let leased = || {
        number(
            store.connection(),
            "SELECT COUNT(*) AS n FROM result WHERE lease_owner IS NOT NULL",
        )
    };
    // Not all 4 slots: one job holds at most WORKER_MAX_SHARE_PER_JOB (0.8) of them.
    while leased().await < 2 {
        assert!(Instant::now() < deadline, "the worker never claimed rows");
        // Wall-clock: another process claiming.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let stopped_at = Instant::now();
    child.terminate();

    // The WebSocket ends with a close frame saying "going away", not a cut connection.
    let close = loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .unwrap()
        {
            Some(Ok(Message::Close(frame))) => break frame,
            Some(Ok(_)) => continue,
            other => panic!("the socket ended without a close frame: {other:?}"),
        }
    };
    assert_eq!(close.map(|f| u16::from(f.code)), Some(1001));

    let status = child
        .exited(Duration::from_secs(10).saturating_sub(stopped_at.elapsed()))
        .await;
    assert!(status.success(), "exit status {status:?}");
    // Grace of 1 s for the in-flight fetches (20 s each), then the rows are handed back.
    assert!(
        stopped_at.elapsed() < Duration::from_secs(6),
        "{:?}",
        stopped_at.elapsed()
    );
    assert_eq!(
        leased().await,
        0,
        "unfinished rows were released, not left leased"
    );
    let tries = number(
        store.connection(),
        "SELECT COALESCE(MAX(tries), 0) AS n FROM result",
    )
    .await;
    assert_eq!(tries, 0, "a released try does not count");
    // New connections are refused once it is gone.
    assert!(http.get(format!("{base}/healthz")).send().await.is_err());
}

/// Opens a socket on `path`, runs `jobProgress` as operation `id`, and returns once its first
/// event (the snapshot) has arrived, so the subscription is live on the server.
async fn live_subscription(
    base: &str,
    path: &str,
    protocol: Protocol,
    id: &str,
    job_id: &str,
) -> Ws {
    let mut ws = ws_connect(base, path, protocol).await;
    ws_subscribe(&mut ws, protocol, id, PROGRESS, json!({"id": job_id})).await;
    loop {
        let message = tokio::time::timeout(Duration::from_secs(20), ws.next())
            .await
            .expect("the snapshot arrives")
            .expect("the socket stays open")
            .unwrap();
        let Message::Text(text) = message else {
            continue;
        };
        let frame: Value = serde_json::from_str(&text).unwrap();
        if frame["type"] == protocol.next() && frame["id"] == id {
            assert_eq!(
                frame["payload"]["data"]["jobProgress"]["status"],
                "PROCESSING"
            );
            return ws;
        }
        assert_eq!(frame["type"], "ka", "{frame}");
    }
}

/// Reads a socket to its end after shutdown: `complete` for operation `id`, then a close frame
/// with 1001, then the end of the stream; anything else (a reset, a missing completion, another
/// code) is the error returned.
async fn read_to_clean_close(mut ws: Ws, id: String) -> Result<(), String> {
    let mut completed = false;
    loop {
        let message = match tokio::time::timeout(Duration::from_secs(20), ws.next()).await {
            Err(_) => return Err(format!("{id}: nothing ended the socket")),
            Ok(None) => return Err(format!("{id}: the stream ended without a close frame")),
            Ok(Some(Err(e))) => return Err(format!("{id}: the socket failed: {e}")),
            Ok(Some(Ok(message))) => message,
        };
        match message {
            Message::Text(text) => {
                let frame: Value = serde_json::from_str(&text).unwrap();
                match frame["type"].as_str() {
                    Some("complete") if frame["id"] == id.as_str() => completed = true,
                    Some("next" | "data") if !completed => {}
                    _ => return Err(format!("{id}: unexpected {frame}")),
                }
            }
            Message::Close(frame) => {
                let code = frame.map(|f| u16::from(f.code));
                if !completed {
                    return Err(format!("{id}: closed ({code:?}) before `complete`"));
                }
                if code != Some(1001) {
                    return Err(format!("{id}: closed with {code:?}, not 1001"));
                }
                break;
            }
            _ => {}
        }
    }
    // The close handshake finishes (our reply goes out as we read) and the stream ends
    // without an error: no reset after the close frame either.
    match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
        Ok(None) => Ok(()),
        other => Err(format!("{id}: after the close frame: {other:?}")),
    }
}

/// An API-only app (no workers, so the job stays `processing`) started by hand, to keep
/// its state and the task running `run_until_stopped`.
struct StoppableApp {
    base: String,
    state: favicon_finder::api::AppState,
    shutdown: tokio_util::sync::CancellationToken,
    /// The task running `run_until_stopped`, until a stop takes it.
    handle: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _db: crate::helpers::TestDb,
}

impl StoppableApp {
    /// Stops the app; panics unless `run_until_stopped` returns within `within`. Returns how
    /// long it took.
    async fn stop_within(&mut self, within: Duration) -> Duration {
        let stopped_at = Instant::now();
        self.shutdown.cancel();
        let handle = self.handle.take().expect("stopped once");
        tokio::time::timeout(within, handle)
            .await
            .unwrap_or_else(|_| panic!("run_until_stopped did not return within {within:?}"))
            .unwrap()
            .unwrap();
        stopped_at.elapsed()
    }
}

async fn start_api_only(backend: crate::helpers::Backend, grace_secs: &str) -> StoppableApp {
    let db = crate::helpers::TestDb::new(backend).await;
    let mut vars = crate::helpers::base_vars(&db.url);
    vars.insert("SHUTDOWN_GRACE_SECS".into(), grace_secs.into());
    let config = favicon_finder::config::Config::from_vars(vars).unwrap();
    let roles = favicon_finder::app::Roles {
        api: true,
        worker: false,
    };
    let app = favicon_finder::app::Application::build(config, roles)
        .await
        .unwrap();
    let base = format!("http://127.0.0.1:{}", app.port().unwrap());
    let state = app.state().clone();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let handle = tokio::spawn(app.run_until_stopped(shutdown.clone()));
    StoppableApp {
        base,
        state,
        shutdown,
        handle: Some(handle),
        _db: db,
    }
}

crate::helpers::both_backends!(
    shutdown_completes_and_closes_50_sockets,
    shutdown_completes_and_closes_50_sockets_body
);

async fn shutdown_completes_and_closes_50_sockets_body(backend: crate::helpers::Backend) {
    const SOCKETS: usize = 50;
    let mut app = start_api_only(backend, "10").await;
    let job_id = create_job_at(&app.base, "stop", &["a.test", "b.test"]).await;
    // Both protocols, and both upgrade routes.
    let opened = (0..SOCKETS).map(|i| {
        let (path, protocol) = match i % 4 {
            0 => ("/graphql/ws", Protocol::TransportWs),
            1 => ("/graphql/ws", Protocol::LegacyWs),
            2 => ("/graphql", Protocol::TransportWs),
            _ => ("/graphql", Protocol::LegacyWs),
        };
        let (base, job_id) = (app.base.clone(), job_id.clone());
        async move {
            let id = format!("op-{i}");
            let ws = live_subscription(&base, path, protocol, &id, &job_id).await;
            (ws, id)
        }
    });
    let sockets = futures::future::join_all(opened).await;
    assert_eq!(app.state.ws_connections.open(), SOCKETS);
    let readers: Vec<_> = sockets
        .into_iter()
        .map(|(ws, id)| tokio::spawn(read_to_clean_close(ws, id)))
        .collect();

    let took = app.stop_within(Duration::from_secs(10)).await;
    // Returned only after every socket task ended (each holds its place in the count).
    assert_eq!(app.state.ws_connections.open(), 0);
    // Every client answered at once, so nothing waited for the 10 s grace to cut it.
    assert!(took < Duration::from_secs(5), "stopping took {took:?}");

    let mut failures = Vec::new();
    for reader in readers {
        if let Err(e) = reader.await.unwrap() {
            failures.push(e);
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {SOCKETS} sockets did not end cleanly: {failures:#?}",
        failures.len()
    );
}

/// A client that stops reading never answers the close frame: at the end of the grace
/// period its connection is cut, and `run_until_stopped` still returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_cuts_sockets_still_open_after_the_grace_period() {
    let mut app = start_api_only(crate::helpers::Backend::Sqlite, "1").await;
    let job_id = create_job_at(&app.base, "stop", &["a.test", "b.test"]).await;
    let _silent = live_subscription(
        &app.base,
        "/graphql/ws",
        Protocol::TransportWs,
        "op-silent",
        &job_id,
    )
    .await;
    assert_eq!(app.state.ws_connections.open(), 1);

    let took = app.stop_within(Duration::from_secs(5)).await;
    assert!(
        took >= Duration::from_millis(900),
        "the socket had its grace period: {took:?}"
    );
    assert!(took < Duration::from_secs(3), "stopping took {took:?}");
    assert_eq!(app.state.ws_connections.open(), 0);
}
