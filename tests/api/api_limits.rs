//! The API's own limits, each sent the oversized or slow thing: WebSocket message size,
//! connection caps, handshake and idle timeouts; HTTP header-read and idle timeouts; GraphQL
//! complexity by page size; request parsing that stops at the domain limit; the CSV export's
//! byte-bounded chunks; JSON-only POSTs; and `/readyz` answers without error text.

use crate::helpers::{Backend, Protocol, TestApp, Ws, both_backends, ws_init};
use futures::{SinkExt, StreamExt};
use sea_orm::{ConnectionTrait, DbBackend, Statement};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::MaybeTlsStream;
use tokio_tungstenite::tungstenite::Message;

async fn next_frame(ws: &mut Ws, within: Duration) -> Message {
    tokio::time::timeout(within, ws.next())
        .await
        .expect("a frame in time")
        .expect("the stream is open")
        .expect("a readable frame")
}

/// Reads until the server's close frame; returns its code and reason.
async fn close_of(ws: &mut Ws, within: Duration) -> (u16, String) {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, ws.next()).await {
            Err(_) => panic!("no close frame within {within:?}"),
            Ok(Some(Ok(Message::Close(Some(frame))))) => {
                return (u16::from(frame.code), frame.reason.to_string());
            }
            Ok(Some(Ok(_))) => {}
            Ok(other) => panic!("the socket ended without a close frame: {other:?}"),
        }
    }
}

/// A WebSocket upgrade request sent as plain HTTP, to read a refusal's status and body.
async fn upgrade_status(app: &TestApp, from: [u8; 4]) -> (u16, Value) {
    let http = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from(from))
        .build()
        .unwrap();
    let response = http
        .get(app.url("/graphql/ws"))
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .header("sec-websocket-protocol", "graphql-transport-ws")
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    if status == 101 {
        return (status, Value::Null);
    }
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_websocket_message_closes_with_1009() {
    let app = TestApp::api_only(&[("WS_MAX_MESSAGE_BYTES", "1024")]).await;
    let mut ws = app.ws_from([127, 0, 0, 1]).await;
    ws_init(&mut ws).await;
    // Under the limit: an ordinary message is answered (here, a ping with a payload).
    let small = json!({"type": "ping", "payload": {"pad": "x".repeat(500)}}).to_string();
    ws.send(Message::Text(small.into())).await.unwrap();
    let frame = next_frame(&mut ws, Duration::from_secs(5)).await;
    assert!(
        matches!(frame, Message::Text(ref t) if t.contains("pong")),
        "{frame:?}"
    );
    // Over it: the connection closes with "message too big".
    let big = json!({"type": "ping", "payload": {"pad": "x".repeat(2000)}}).to_string();
    ws.send(Message::Text(big.into())).await.unwrap();
    let (code, reason) = close_of(&mut ws, Duration::from_secs(5)).await;
    assert_eq!(code, 1009, "{reason}");
    assert!(reason.contains("WS_MAX_MESSAGE_BYTES"), "{reason}");
    app.stop().await;
}

/// The server reads a socket a few KiB at a time (to keep idle connections small); a
/// message many times that size, under the limit, still arrives whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_larger_than_the_read_chunk_arrives_whole() {
    let app = TestApp::api_only(&[("WS_MAX_MESSAGE_BYTES", "262144")]).await;
    let mut ws = app.ws_from([127, 0, 0, 1]).await;
    ws_init(&mut ws).await;
    let pad = "x".repeat(200_000);
    let big = json!({"type": "ping", "payload": {"pad": pad}}).to_string();
    ws.send(Message::Text(big.into())).await.unwrap();
    let frame = next_frame(&mut ws, Duration::from_secs(5)).await;
    let Message::Text(text) = frame else {
        panic!("not a text frame: {frame:?}");
    };
    let pong: Value = serde_json::from_str(text.as_str()).unwrap();
    assert_eq!(pong["type"], "pong", "{pong}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_connections_are_capped_per_address_and_in_all() {
    let app = TestApp::api_only(&[
        ("WS_MAX_CONNECTIONS_PER_IP", "2"),
        ("WS_MAX_CONNECTIONS", "3"),
    ])
    .await;
    let a1 = app.ws_from([127, 0, 0, 1]).await;
    let _a2 = app.ws_from([127, 0, 0, 1]).await;
    // A third from the same address: 429 with the error shape.
    let (status, body) = upgrade_status(&app, [127, 0, 0, 1]).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["code"], "TOO_MANY_CONNECTIONS", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("WS_MAX_CONNECTIONS_PER_IP"),
        "{body}"
    );
    // Another address has its own allowance, up to the process's cap of 3: then 503.
    let _b1 = app.ws_from([127, 0, 0, 2]).await;
    let (status, body) = upgrade_status(&app, [127, 0, 0, 2]).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "TOO_MANY_CONNECTIONS", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("WS_MAX_CONNECTIONS)"),
        "{body}"
    );
    // Closing one frees its place.
    drop(a1);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, _) = upgrade_status(&app, [127, 0, 0, 2]).await;
        if status == 101 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the closed connection's place never came back"
        );
        // Wall-clock: the server frees the place when it sees the closed socket.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_without_connection_init_closes_with_4408() {
    let app = TestApp::api_only(&[("WS_INIT_TIMEOUT_MS", "300")]).await;
    let started = Instant::now();
    let mut ws = app.ws_from([127, 0, 0, 1]).await;
    let (code, reason) = close_of(&mut ws, Duration::from_secs(5)).await;
    assert_eq!(code, 4408, "{reason}");
    assert!(started.elapsed() >= Duration::from_millis(300));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_that_stops_answering_pings_is_closed() {
    let app = TestApp::api_only(&[
        ("WS_PING_INTERVAL_MS", "100"),
        ("WS_IDLE_TIMEOUT_MS", "400"),
        ("WS_MAX_CONNECTIONS_PER_IP", "1"),
    ])
    .await;
    // A client that keeps reading answers every ping (tungstenite replies with pongs), so it
    // stays open well past the idle timeout.
    let mut live = app.ws_from([127, 0, 0, 2]).await;
    ws_init(&mut live).await;
    let mut pings = 0;
    let until = Instant::now() + Duration::from_millis(1000);
    while Instant::now() < until {
        match tokio::time::timeout(Duration::from_millis(50), live.next()).await {
            Err(_) => {}
            Ok(Some(Ok(Message::Ping(_)))) => pings += 1,
            Ok(Some(Ok(Message::Close(frame)))) => {
                panic!("an answering client was closed: {frame:?}")
            }
            Ok(other) => panic!("unexpected {other:?}"),
        }
    }
    assert!(pings >= 5, "pinged {pings} times in a second");

    // A client that goes silent (reads nothing, so sends no pongs) is closed: its place frees,
    // which a second upgrade from the same address (cap 1) sees.
    let mut silent = app.ws_from([127, 0, 0, 1]).await;
    ws_init(&mut silent).await;
    let MaybeTlsStream::Plain(mut tcp) = silent.into_inner() else {
        unreachable!("plain TCP")
    };
    let silent_since = Instant::now();
    let deadline = silent_since + Duration::from_secs(5);
    loop {
        let (status, _) = upgrade_status(&app, [127, 0, 0, 1]).await;
        if status == 101 {
            break;
        }
        assert_eq!(status, 429);
        assert!(
            Instant::now() < deadline,
            "the silent client was never closed"
        );
        // Wall-clock: the server's ping timer, on a real socket, is what is under test.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(silent_since.elapsed() >= Duration::from_millis(400));
    // What the server sent meanwhile, read raw (tungstenite would answer the pings, and the
    // answer would hit the closed socket): pings, then the close frame.
    let (frames, _) = read_until_closed(&mut tcp, Duration::from_secs(5)).await;
    let (code, reason) = server_close_frame(&frames);
    assert_eq!(code, 1001, "{reason}");
    assert!(reason.contains("WS_IDLE_TIMEOUT_MS"), "{reason}");
    app.stop().await;
}

/// The code and reason of the close frame among a server's raw WebSocket frames (unmasked,
/// each control frame under 126 bytes).
fn server_close_frame(mut bytes: &[u8]) -> (u16, String) {
    while bytes.len() >= 2 {
        let opcode = bytes[0] & 0x0f;
        let len = usize::from(bytes[1] & 0x7f);
        assert!(len < 126, "a control frame");
        let payload = &bytes[2..2 + len];
        if opcode == 0x8 {
            let code = u16::from_be_bytes([payload[0], payload[1]]);
            return (code, String::from_utf8_lossy(&payload[2..]).into_owned());
        }
        bytes = &bytes[2 + len..];
    }
    panic!("no close frame");
}

/// Reads from a raw connection until the server closes it; returns what was read and when.
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> (Vec<u8>, Duration) {
    let started = Instant::now();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = within.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => panic!(
                "still open after {within:?}; read {:?}",
                String::from_utf8_lossy(&answer)
            ),
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => answer.extend_from_slice(&buf[..n]),
        }
    }
    (answer, started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stalls_in_its_request_line_is_cut_off() {
    let app = TestApp::api_only(&[("HTTP_HEADER_TIMEOUT_MS", "300")]).await;
    let mut stream = TcpStream::connect(app.base.trim_start_matches("http://"))
        .await
        .unwrap();
    stream.write_all(b"GET /heal").await.unwrap();
    let (answer, took) = read_until_closed(&mut stream, Duration::from_secs(5)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(took >= Duration::from_millis(250), "closed after {took:?}");
    // hyper ends a connection whose head did not arrive in time without an answer: no
    // request was read, so there is nothing to answer (a 408 would be a change to notice).
    assert!(answer.is_empty(), "{answer:?}");
    // A whole request in time is still served.
    let (status, _) = app.get_json("/healthz").await;
    assert_eq!(status, 200);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed() {
    let app = TestApp::api_only(&[
        ("HTTP_HEADER_TIMEOUT_MS", "10000"),
        ("HTTP_IDLE_TIMEOUT_MS", "300"),
    ])
    .await;
    let mut stream = TcpStream::connect(app.base.trim_start_matches("http://"))
        .await
        .unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    // The answer comes at once; the kept-alive connection then closes after 300 ms of
    // silence, long before the 10 s header timeout.
    let (answer, took) = read_until_closed(&mut stream, Duration::from_secs(5)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
    assert!(took >= Duration::from_millis(250), "closed after {took:?}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graphql_complexity_multiplies_by_page_size() {
    let app = TestApp::api_only(&[("GRAPHQL_MAX_COMPLEXITY", "1000")]).await;
    let (_, created) = app
        .post_json("/jobs", &json!({"client_id": "cx", "domains": ["x.test"]}))
        .await;
    let id = created["job_id"].as_str().unwrap();
    let page = |alias: &str, per_page: u32| {
        format!(
            "{alias}: results(jobId: \"{id}\", perPage: {per_page}) {{ results {{ domain status }} }}"
        )
    };
    let too_complex = |answer: &Value| {
        answer["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("too complex"))
    };
    // 100 rows of 3 fields and the read: 401, allowed.
    let answer = app
        .graphql(&format!("{{ {} }}", page("a", 100)), json!({}))
        .await;
    assert!(answer["errors"].is_null(), "{answer}");
    assert_eq!(answer["data"]["a"]["results"][0]["domain"], "x.test");
    // Four aliases of it: 1,604, refused, though the job has a single result.
    let four: Vec<String> = ["a", "b", "c", "d"].iter().map(|a| page(a, 100)).collect();
    let answer = app
        .graphql(&format!("{{ {} }}", four.join(" ")), json!({}))
        .await;
    assert!(too_complex(&answer), "{answer}");
    // One page of 500: 1,600, refused; the same for a client's jobs.
    let answer = app
        .graphql(&format!("{{ {} }}", page("a", 500)), json!({}))
        .await;
    assert!(too_complex(&answer), "{answer}");
    let answer = app
        .graphql(
            "{ jobs(clientId: \"cx\", perPage: 500) { jobs { id status total } } }",
            json!({}),
        )
        .await;
    assert!(too_complex(&answer), "{answer}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_parsing_stops_at_the_domain_limit() {
    let app = TestApp::api_only(&[("MAX_DOMAINS_PER_JOB", "5")]).await;
    // Six entries then garbage: the reader stops at the sixth, so the answer is
    // TOO_MANY_DOMAINS, not a syntax error about what follows.
    let body = r#"{"client_id":"c","domains":["a.com","b.com","c.com","d.com","e.com","f.com", !!! not json"#;
    let (status, answer) = app.post_raw("/jobs", body).await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["error"]["code"], "TOO_MANY_DOMAINS", "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("at most 5"),
        "{answer}"
    );
    // Five entries then garbage is a syntax error: the limit is not hit.
    let body = r#"{"client_id":"c","domains":["a.com","b.com","c.com","d.com","e.com"] !!!"#;
    let (status, answer) = app.post_raw("/jobs", body).await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (400, Some("INVALID_JSON")),
        "{answer}"
    );
    assert_eq!(app.count_rows("job").await, 0);
    app.stop().await;
}

/// A valid hostname of exactly 253 octets, distinct for each `i`.
fn longest_name(i: usize) -> String {
    let name = format!(
        "h{i:062}.{}.{}.{}.com",
        "b".repeat(63),
        "c".repeat(63),
        "d".repeat(57)
    );
    assert_eq!(name.len(), 253);
    name
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_body_limit_fits_the_largest_legal_job() {
    let app = TestApp::api_only(&[("MAX_DOMAINS_PER_JOB", "300")]).await;
    // 300 names of 253 octets: about 77 KB, over what a flat small limit would allow.
    let domains: Vec<String> = (0..300).map(longest_name).collect();
    let (status, created) = app
        .post_json("/jobs", &json!({"client_id": "big", "domains": domains}))
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["total"], 300);
    // One more is refused for its count, not its size.
    let domains: Vec<String> = (0..301).map(longest_name).collect();
    let (status, answer) = app
        .post_json("/jobs", &json!({"client_id": "big", "domains": domains}))
        .await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["error"]["code"], "TOO_MANY_DOMAINS");
    app.stop().await;
}

async fn csv_export_chunks_by_bytes(backend: Backend) {
    let app = TestApp::spawn(
        backend,
        &[("WORKER_CONCURRENCY", "0"), ("EXPORT_CHUNK_BYTES", "10000")],
    )
    .await;
    let domains: Vec<String> = (0..30).map(|i| format!("site{i:02}.test")).collect();
    let (_, created) = app
        .post_json("/jobs", &json!({"client_id": "csv", "domains": domains}))
        .await;
    let id = created["job_id"].as_str().unwrap().to_owned();
    // Rows of about 3 KB each: 30 of them are 90 KB, nine times the chunk budget.
    let db = app.store.connection();
    let big = match db.get_database_backend() {
        DbBackend::Postgres => "domain || ':' || repeat('x', 3000)",
        _ => "domain || ':' || replace(hex(zeroblob(1500)), '0', 'x')",
    };
    db.execute_raw(Statement::from_string(
        db.get_database_backend(),
        format!("UPDATE result SET status = 'failed', error = {big}"),
    ))
    .await
    .unwrap();

    let uuid: uuid::Uuid = id.parse().unwrap();
    let csv = favicon_finder::model::CsvWriter::new(None, 0);
    let chunks: Vec<_> = app
        .store
        .export_csv(uuid, csv, 10_000)
        .map(|chunk| chunk.unwrap())
        .collect()
        .await;
    assert!(chunks.len() >= 9, "{} chunks", chunks.len());
    for chunk in &chunks {
        let rows = chunk.iter().filter(|&&b| b == b'\n').count();
        assert!(
            rows == 1 || chunk.len() <= 10_000,
            "a chunk of {rows} rows holds {} bytes",
            chunk.len()
        );
        assert!(chunk.ends_with(b"\n"), "chunks end between rows");
    }
    let text: String = chunks
        .iter()
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    let exported: Vec<&str> = text
        .lines()
        .map(|line| line.split(',').next().unwrap())
        .collect();
    assert_eq!(exported, domains);

    // The download carries every row, in order, across the chunk boundaries.
    let csv = app.download(&id).await;
    let lines: Vec<&str> = csv.lines().skip(1).collect();
    assert_eq!(lines.len(), 30);
    for (i, line) in lines.iter().enumerate() {
        let domain = format!("site{i:02}.test");
        assert!(
            line.starts_with(&format!("{domain},failed,,{domain}:xxx")),
            "{line:.80}"
        );
        assert!(line.len() > 3000);
    }
    app.stop().await;
}
both_backends!(csv_chunks_by_bytes, csv_export_chunks_by_bytes);

async fn a_stalled_download_lets_go_of_its_read(backend: Backend) {
    let app = TestApp::spawn(backend, &[("WORKER_CONCURRENCY", "0")]).await;
    let domains: Vec<String> = (0..3_000).map(|i| format!("s{i:04}.test")).collect();
    let (_, created) = app
        .post_json("/jobs", &json!({"client_id": "csv", "domains": domains}))
        .await;
    let id: uuid::Uuid = created["job_id"].as_str().unwrap().parse().unwrap();
    let csv = favicon_finder::model::CsvWriter::new(None, 0);
    let mut chunks = app.store.export_csv(id, csv, 1024);
    let first = chunks.next().await.unwrap().unwrap();
    // The client stalls: the export reads at most a chunk ahead, then lets its statement go.
    tokio::time::sleep(favicon_finder::store::EXPORT_HOLD + Duration::from_millis(500)).await;
    let db = app.store.connection();
    db.execute_unprepared("UPDATE result SET tries = 9")
        .await
        .unwrap();
    let mut text = String::from_utf8(first.to_vec()).unwrap();
    while let Some(chunk) = chunks.next().await {
        text.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
    }
    let rows: Vec<Vec<&str>> = text.lines().map(|l| l.split(',').collect()).collect();
    let exported: Vec<&str> = rows.iter().map(|r| r[0]).collect();
    assert_eq!(
        exported, domains,
        "every row once, in order, across the pause"
    );
    // Rows read before the pause show the job as it was; the rest come from a new statement,
    // which sees the write made while the client stalled.
    let tries: Vec<&str> = rows.iter().map(|r| r[4]).collect();
    let before = tries.iter().take_while(|t| **t == "0").count();
    assert!(
        before > 0 && before < 200,
        "{before} rows read before the pause"
    );
    assert!(tries[before..].iter().all(|t| *t == "9"), "{tries:?}");
    app.stop().await;
}
both_backends!(stalled_download, a_stalled_download_lets_go_of_its_read);

async fn posts_must_be_json(backend: Backend) {
    let app = TestApp::spawn(backend, &[("WORKER_CONCURRENCY", "0")]).await;
    let job = json!({"client_id": "x", "domains": ["a.test"]}).to_string();
    let mutation = json!({
        "query": "mutation { createJob(input: {clientId: \"x\", domains: [\"a.test\"]}) { id } }"
    })
    .to_string();
    for (path, body, content_type) in [
        ("/jobs", &job, Some("text/plain")),
        ("/jobs", &job, Some("application/x-www-form-urlencoded")),
        ("/jobs", &job, None),
        ("/graphql", &mutation, Some("text/plain")),
        (
            "/graphql",
            &mutation,
            Some("multipart/form-data; boundary=x"),
        ),
    ] {
        let mut request = app.http.post(app.url(path)).body(body.clone());
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 415, "{path} {content_type:?}");
        let answer: Value = response.json().await.unwrap();
        // Each API answers in its own error shape.
        let error = if path == "/graphql" {
            answer["errors"][0].clone()
        } else {
            answer["error"].clone()
        };
        let code = if path == "/graphql" {
            &error["extensions"]["code"]
        } else {
            &error["code"]
        };
        assert_eq!(code, "UNSUPPORTED_MEDIA_TYPE", "{answer}");
        assert!(
            error["message"]
                .as_str()
                .unwrap()
                .contains("application/json"),
            "{answer}"
        );
    }
    assert_eq!(app.count_rows("job").await, 0);
    assert_eq!(app.count_rows("result").await, 0);

    // JSON with a charset parameter is JSON; GET /graphql still serves GraphiQL.
    let response = app
        .http
        .post(app.url("/jobs"))
        .header("content-type", "application/json; charset=utf-8")
        .body(job)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let response = app.http.get(app.url("/graphql")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(app.count_rows("job").await, 1);
    app.stop().await;
}
both_backends!(json_only, posts_must_be_json);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_names_the_failed_dependency_without_its_error() {
    let dead = crate::fake::dead_addr().await;
    let redis_url = format!("redis://:hunter2@{dead}");
    let app = TestApp::api_only(&[("REDIS_URL", &redis_url)]).await;
    let (status, ready) = app.get_json("/readyz").await;
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready["status"], "degraded", "{ready}");
    assert_eq!(
        ready["checks"],
        json!({"database": "ok", "redis": "unreachable"})
    );
    // Politeness says it fell back, with a fixed word for why, never the error's text.
    assert_eq!(ready["politeness"]["mode"], "fallback", "{ready}");
    assert_eq!(
        ready["politeness"]["reason"], "redis_unreachable",
        "{ready}"
    );
    assert!(!ready.to_string().contains("hunter2"), "{ready}");
    // A database whose schema is not migrated is promises.rs's
    // `readyz_is_503_while_migrations_are_pending`.
    app.stop().await;
}

/// A client that asks for a large response and never reads it cannot hold the server's
/// shutdown: past `SHUTDOWN_GRACE_SECS` its connection is dropped and the server stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_cannot_hold_shutdown() {
    let app = TestApp::api_only(&[("SHUTDOWN_GRACE_SECS", "1")]).await;
    // Pending rows are exported too: 100,000 of them make a CSV far larger than the socket
    // buffers, so the server's write blocks on this client.
    let domains: Vec<String> = (0..100_000).map(|i| format!("d{i}.test")).collect();
    let (status, created) = app
        .post_json(
            "/jobs",
            &json!({"client_id": "slow-reader", "domains": domains}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let job = created["job_id"].as_str().unwrap().to_owned();
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let addr: SocketAddr = app.base.trim_start_matches("http://").parse().unwrap();
    let mut stream = socket.connect(addr).await.unwrap();
    let request = format!("GET /jobs/{job}/download HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    // The export has begun once its status line is here; from then on nothing is read, so
    // the server's writes fill the small buffers and block on this client.
    let mut head = [0u8; 12];
    tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut head))
        .await
        .expect("the export starts")
        .unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    let started = Instant::now();
    let stopped = tokio::time::timeout(Duration::from_secs(10), app.stop()).await;
    assert!(stopped.is_ok(), "the server never stopped");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(4), "grace 1 s, took {took:?}");
    drop(stream);
}

mod graphql;
