//! Safe to expose, round two: what an attack pass found at the sockets and the door. An open
//! WebSocket follows its key; a page of another site can neither open a socket here nor
//! reach the server through a name of its own (DNS rebinding); and behind a trusted proxy the
//! per-address socket cap counts clients, not the proxy.

use crate::accounts::{BOOTSTRAP, create_key, keys, required_app, ws_open, ws_open_with};
use crate::helpers::{Backend, TestApp, both_backends, ws_init_with};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

/// The longest a revoked key may keep an open socket: the documented bound, with room.
const REVOCATION_REACHES_SOCKETS: Duration = Duration::from_secs(5);

/// Sends `query` as operation `id` on a graphql-transport-ws socket and returns its first
/// `next` payload, or the close frame's code if the socket closes first.
async fn ask(ws: &mut crate::helpers::Ws, id: &str, query: &str) -> Result<Value, u16> {
    let subscribe = json!({"id": id, "type": "subscribe", "payload": {"query": query}});
    if ws
        .send(Message::Text(subscribe.to_string().into()))
        .await
        .is_err()
    {
        return Err(1006);
    }
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => {
                let frame: Value = serde_json::from_str(&text).unwrap();
                if frame["type"] == "next" && frame["id"] == id {
                    return Ok(frame["payload"].clone());
                }
            }
            Some(Ok(Message::Close(Some(frame)))) => return Err(frame.code.into()),
            Some(Ok(_)) => {}
            _ => return Err(1006),
        }
    }
}

/// The first frame for operation `id` that `wanted` accepts.
async fn first_frame_of(
    ws: &mut crate::helpers::Ws,
    id: &str,
    wanted: impl Fn(&Value) -> bool,
) -> Value {
    loop {
        let Some(Ok(Message::Text(text))) = ws.next().await else {
            panic!("the socket closed");
        };
        let frame: Value = serde_json::from_str(&text).unwrap();
        if frame["id"] == id && wanted(&frame) {
            return frame;
        }
    }
}

/// A socket opened with a key that is then revoked closes with 4403 within the stated time,
/// and runs nothing more: before the fix it still listed and created jobs 75 s later.
async fn a_revoked_key_loses_its_open_sockets(backend: Backend) {
    let app = required_app(backend, &[]).await;
    let (id, key) = create_key(&app, "tenant", &["submit", "read"]).await;
    let mut ws = ws_open(&app, "graphql-transport-ws", None, None)
        .await
        .unwrap();
    let ack = ws_init_with(&mut ws, json!({"apiKey": key})).await.unwrap();
    assert_eq!(ack["type"], "connection_ack", "{ack}");
    let listed = ask(&mut ws, "1", "{ jobs { total } }").await.unwrap();
    assert!(listed["errors"].is_null(), "{listed}");

    let (code, _, stderr) = keys(&app, &["revoke", &id]).await;
    assert_eq!(code, Some(0), "{stderr}");
    let revoked = tokio::time::Instant::now();
    let closed = tokio::time::timeout(REVOCATION_REACHES_SOCKETS, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(Some(frame)))) => return u16::from(frame.code),
                Some(Ok(_)) => {}
                _ => return 1006,
            }
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!("the socket was still open {REVOCATION_REACHES_SOCKETS:?} after the revocation")
    });
    assert_eq!(closed, 4403, "closed with 4403 Forbidden");
    assert!(revoked.elapsed() < REVOCATION_REACHES_SOCKETS);
    let after = ask(
        &mut ws,
        "2",
        r#"mutation { createJob(domains: ["a.test"]) { id } }"#,
    )
    .await;
    assert!(
        after.is_err(),
        "the socket still ran an operation: {after:?}"
    );

    // A key that stays valid keeps its socket past several rechecks.
    let mut admin = ws_open(&app, "graphql-transport-ws", None, None)
        .await
        .unwrap();
    ws_init_with(&mut admin, json!({"apiKey": BOOTSTRAP}))
        .await
        .unwrap();
    // Wall-clock: the server's recheck timer on open sockets is what is under test.
    tokio::time::sleep(REVOCATION_REACHES_SOCKETS).await;
    let still = ask(&mut admin, "3", "{ jobs { total } }").await.unwrap();
    assert!(still["errors"].is_null(), "{still}");
    app.stop().await;
}
both_backends!(revoked_keys, a_revoked_key_loses_its_open_sockets);

/// With the defaults (no `CORS_ALLOWED_ORIGINS`, no keys on loopback), a page of another
/// origin cannot open a socket; the service's own pages and non-browser clients can.
#[tokio::test]
async fn sockets_from_another_origin_are_refused_by_default() {
    let app = TestApp::spawn_api(Backend::Sqlite, &[]).await;
    let evil = ws_open(
        &app,
        "graphql-transport-ws",
        Some("https://evil.example"),
        None,
    )
    .await;
    assert_eq!(evil.err(), Some(403), "a foreign origin opened a socket");
    let own = app.base.clone();
    let mut ws = ws_open(&app, "graphql-transport-ws", Some(&own), None)
        .await
        .expect("the dashboard's own origin");
    assert_eq!(
        ws_init_with(&mut ws, json!({})).await.unwrap()["type"],
        "connection_ack"
    );
    ws_open(&app, "graphql-transport-ws", None, None)
        .await
        .expect("a client that is not a browser sends no Origin");
    app.stop().await;
}

/// A request addressed to a name this server does not answer to is refused, on every door:
/// a page that points its own name at 127.0.0.1 (DNS rebinding) reaches nothing. IP
/// addresses, `localhost`, `PUBLIC_URL`'s host and `ALLOWED_HOSTS` pass.
#[tokio::test]
async fn requests_to_a_foreign_host_name_are_refused() {
    let app = TestApp::spawn_api(
        Backend::Sqlite,
        &[
            ("PUBLIC_URL", "https://favicons.example.test"),
            ("ALLOWED_HOSTS", "internal.example.test"),
        ],
    )
    .await;
    let client = reqwest::Client::new();
    let port = app.base.rsplit(':').next().unwrap().to_owned();
    let status = |host: String, path: &'static str| {
        let client = client.clone();
        let url = format!("{}{path}", app.base);
        async move {
            let response = client.get(url).header("host", host).send().await.unwrap();
            let status = response.status().as_u16();
            (status, response.text().await.unwrap())
        }
    };
    for path in ["/openapi.json", "/healthz", "/graphql", "/"] {
        let (code, body) = status(format!("rebound.evil.example:{port}"), path).await;
        assert_eq!(code, 403, "{path}: {body}");
        assert!(body.contains("ALLOWED_HOSTS"), "{body}");
    }
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        "favicons.example.test".to_owned(),
        "favicons.example.test.".to_owned(),
        format!("internal.example.test:{port}"),
        format!("[::1]:{port}"),
    ] {
        let (code, body) = status(host.clone(), "/healthz").await;
        assert_eq!(code, 200, "{host}: {body}");
    }
    let upgrade = ws_open_with(
        &app,
        "graphql-transport-ws",
        &[("host", &format!("rebound.evil.example:{port}"))],
    )
    .await;
    assert_eq!(upgrade.err(), Some(403));
    app.stop().await;
}

/// Behind a trusted proxy every socket comes from the proxy's address: the per-address cap
/// counts the client's, so three sockets of one client do not lock out another.
#[tokio::test]
async fn the_socket_cap_counts_clients_behind_a_trusted_proxy() {
    let app = TestApp::spawn_api(
        Backend::Sqlite,
        &[
            ("TRUSTED_PROXY_HEADERS", "x-forwarded-for"),
            ("WS_MAX_CONNECTIONS_PER_IP", "2"),
        ],
    )
    .await;
    let from = |ip: &'static str| [("x-forwarded-for", ip)];
    let _a1 = ws_open_with(&app, "graphql-transport-ws", &from("203.0.113.5"))
        .await
        .unwrap();
    let _a2 = ws_open_with(&app, "graphql-transport-ws", &from("203.0.113.5"))
        .await
        .unwrap();
    let third = ws_open_with(&app, "graphql-transport-ws", &from("203.0.113.5")).await;
    assert_eq!(third.err(), Some(429), "the client's own cap");
    let other = ws_open_with(&app, "graphql-transport-ws", &from("198.51.100.7")).await;
    assert!(
        other.is_ok(),
        "another client behind the same proxy was refused: {:?}",
        other.err()
    );
    app.stop().await;
}

/// No deployment starts with a secret everyone knows: compose has no default for the admin
/// key or the link secret (it refuses to start without them) and publishes the API on
/// loopback unless told; the service refuses the k8s example's placeholders.
#[test]
fn deployments_carry_no_known_secrets() {
    let root = env!("CARGO_MANIFEST_DIR");
    let compose = std::fs::read_to_string(format!("{root}/docker-compose.yml")).unwrap();
    for secret in ["BOOTSTRAP_API_KEY", "DOWNLOAD_URL_SECRET"] {
        let line = compose
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{secret}:")))
            .unwrap_or_else(|| panic!("{secret} is not set in docker-compose.yml"));
        assert!(
            line.contains(&format!("${{{secret}:?")),
            "compose must refuse to start without {secret}, not fall back to a value: {line}"
        );
    }
    let published: Vec<&str> = compose
        .lines()
        .skip_while(|l| l.trim() != "ports:")
        .skip(1)
        .take_while(|l| l.trim_start().starts_with('-'))
        .collect();
    assert!(!published.is_empty(), "the API's ports are published");
    for port in published {
        assert!(
            port.contains("127.0.0.1"),
            "published beyond loopback by default: {port}"
        );
    }

    let example =
        std::fs::read_to_string(format!("{root}/deploy/k8s/secret.example.yaml")).unwrap();
    for secret in ["BOOTSTRAP_API_KEY", "DOWNLOAD_URL_SECRET", "METRICS_TOKEN"] {
        let value = example
            .lines()
            .find_map(|l| l.trim().strip_prefix(&format!("{secret}: ")))
            .unwrap()
            .trim_matches('"')
            .to_owned();
        let mut vars = std::collections::HashMap::new();
        vars.insert(secret.to_owned(), value);
        let refused = favicon_finder::config::Config::from_vars(vars)
            .expect_err("the example's placeholder was accepted");
        assert!(refused.to_string().contains("CHANGE-ME"), "{refused}");
        assert!(refused.to_string().contains(secret), "{refused}");
    }
}

/// A body trickled a byte at a time cannot hold a connection and a handler: past
/// `HTTP_BODY_TIMEOUT_MS` the answer is 408 and the connection closes. Before, one byte
/// every 30 s was still open after 211 s (each byte reset the idle timeout).
#[tokio::test]
async fn a_trickled_body_is_cut_at_its_deadline() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = TestApp::spawn_api(
        Backend::Sqlite,
        &[
            ("HTTP_BODY_TIMEOUT_MS", "1000"),
            ("HTTP_IDLE_TIMEOUT_MS", "3000"),
        ],
    )
    .await;
    let address = app.base.trim_start_matches("http://").to_owned();
    let mut socket = tokio::net::TcpStream::connect(&address).await.unwrap();
    let head = format!(
        "POST /jobs HTTP/1.1\r\nhost: {address}\r\ncontent-type: application/json\r\n\
         content-length: 1000\r\n\r\n{{"
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    let started = tokio::time::Instant::now();
    let (mut read, mut write) = socket.split();
    let mut answer = Vec::new();
    // Drips a byte every 200 ms, faster than the idle timeout, until the server answers and
    // closes, or for longer than the body deadline.
    let outcome = tokio::time::timeout(Duration::from_secs(6), async {
        let mut buf = [0u8; 4096];
        loop {
            tokio::select! {
                n = read.read(&mut buf) => match n {
                    Ok(0) | Err(_) => break,
                    Ok(n) => answer.extend_from_slice(&buf[..n]),
                },
                // A client's drip, under the server's real socket timers.
                () = tokio::time::sleep(Duration::from_millis(200)) => {
                    if write.write_all(b" ").await.is_err() {
                        break;
                    }
                }
            }
        }
    })
    .await;
    assert!(
        outcome.is_ok(),
        "the connection was still open after {:?}",
        started.elapsed()
    );
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("REQUEST_TIMEOUT"), "{answer}");
    assert!(answer.contains("HTTP_BODY_TIMEOUT_MS"), "{answer}");
    app.stop().await;
}

/// Keys issued on a service whose door is open (`AUTH_MODE=off`) protect nothing: a keyless
/// request reads their clients' jobs. The service says so loudly when it starts like that.
#[tokio::test]
async fn an_open_door_with_keys_issued_is_warned_about_at_start() {
    use tokio::io::AsyncBufReadExt;
    let dir = tempfile::tempdir().unwrap();
    let mut serve = tokio::process::Command::new(env!("CARGO_BIN_EXE_favicon-finder"))
        .arg("serve")
        .env_clear()
        .env(
            "DATABASE_URL",
            format!("sqlite://{}?mode=rwc", dir.path().join("k.db").display()),
        )
        .env("PORT", "0")
        .env("AUTH_MODE", "off")
        .env("BOOTSTRAP_API_KEY", BOOTSTRAP)
        .env("WORKER_CONCURRENCY", "0")
        .env("LOG_FORMAT", "json")
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(serve.stderr.take().unwrap()).lines();
    let warned = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let line: Value = serde_json::from_str(&line).unwrap_or_default();
            let message = line["message"].as_str().unwrap_or_default().to_owned();
            if message.contains("AUTH_MODE=off WHILE API KEYS ARE ISSUED") {
                return Some((line["level"].clone(), line["keys"].clone()));
            }
            if message.contains("listening") {
                return None;
            }
        }
        None
    })
    .await
    .expect("the service starts");
    let _ = serve.kill().await;
    let (level, keys) = warned.expect("no warning before the service listened");
    assert_eq!(level, "WARN");
    assert_eq!(keys, 1);
}

/// Every operation on a socket counts against `WS_MAX_SUBSCRIPTIONS`, queries too: before,
/// a socket at its subscription limit still ran any number of queries at once. An operation
/// the client stops frees its place.
#[tokio::test]
async fn queries_on_a_socket_count_against_its_operation_limit() {
    let app = TestApp::spawn_api(Backend::Sqlite, &[("WS_MAX_SUBSCRIPTIONS", "2")]).await;
    // No workers: the job stays running, so its subscriptions stay open.
    let job = app.create_job("ops", &["a.test"]).await;
    let mut ws = app.ws().await;
    let progress = format!(r#"subscription {{ jobProgress(jobId: "{job}") {{ status }} }}"#);
    for id in ["1", "2"] {
        let first = ask(&mut ws, id, &progress).await.unwrap();
        assert!(first["errors"].is_null(), "{first}");
    }
    let query = json!({"id": "3", "type": "subscribe",
        "payload": {"query": "{ jobs(clientId: \"ops\") { total } }"}});
    ws.send(Message::Text(query.to_string().into()))
        .await
        .unwrap();
    let refused = first_frame_of(&mut ws, "3", |_| true).await;
    assert_eq!(refused["type"], "error", "the query ran: {refused}");
    assert_eq!(
        refused["payload"][0]["extensions"]["code"], "TOO_MANY_SUBSCRIPTIONS",
        "{refused}"
    );
    assert!(
        refused.to_string().contains("WS_MAX_SUBSCRIPTIONS"),
        "{refused}"
    );
    // An id that is running cannot be started again (the server would replace it unseen).
    let again = json!({"id": "2", "type": "subscribe", "payload": {"query": progress}});
    ws.send(Message::Text(again.to_string().into()))
        .await
        .unwrap();
    // Events of the running operation "2" may come first.
    let refused = first_frame_of(&mut ws, "2", |frame| frame["type"] != "next").await;
    assert_eq!(refused["type"], "error", "{refused}");
    assert!(refused.to_string().contains("is running"), "{refused}");
    // The client stops one subscription: a query runs again.
    let stop = json!({"id": "1", "type": "complete"});
    ws.send(Message::Text(stop.to_string().into()))
        .await
        .unwrap();
    let answer = ask(&mut ws, "4", r#"{ jobs(clientId: "ops") { total } }"#)
        .await
        .unwrap();
    assert!(answer["errors"].is_null(), "{answer}");
    app.stop().await;
}

/// `?find=1` makes the service fetch a site: a page of another site must not be able to make
/// a visitor's browser start that through an `<img>` (Fetch Metadata says where a request
/// comes from). The service's own pages and clients that are not browsers still can.
#[tokio::test]
async fn a_lookup_is_not_started_by_a_page_of_another_site() {
    let app = TestApp::spawn_api(Backend::Sqlite, &[("ICON_FIND_TIMEOUT_MS", "200")]).await;
    let client = reqwest::Client::new();
    let get = |site: Option<&'static str>| {
        let mut request = client.get(format!("{}/icons/example.test?find=1", app.base));
        if let Some(site) = site {
            request = request.header("sec-fetch-site", site);
        }
        async move {
            let response = request.send().await.unwrap();
            (
                response.status().as_u16(),
                response.text().await.unwrap_or_default(),
            )
        }
    };
    for site in ["cross-site", "same-site"] {
        let (status, body) = get(Some(site)).await;
        assert_eq!(status, 403, "{site}: {body}");
        assert!(body.contains("find=1"), "{body}");
    }
    for site in [Some("same-origin"), Some("none"), None] {
        let (status, body) = get(site).await;
        assert_ne!(status, 403, "{site:?}: {body}");
    }
    app.stop().await;
}
