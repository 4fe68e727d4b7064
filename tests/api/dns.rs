//! DNS through `FETCH_DNS_SERVERS`: names asked of a name server that never answers end
//! `dns_transient` within their deadline while a second client's job on names served through
//! `FETCH_RESOLVE` completes with every icon found; an answer pointing at loopback is refused
//! by the SSRF guard without naming the address.

use crate::fake::{FakeInternet, Sites, png};
use crate::helpers::{Backend, TestApp, both_backends};
use serde_json::json;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

/// A name server on loopback that reads every query and never answers (UDP), and accepts TCP
/// connections it never answers either, so neither of hickory's transports gets a reply.
async fn silent_name_server() -> SocketAddr {
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let udp = tokio::net::UdpSocket::bind(addr).await.unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        while udp.recv_from(&mut buf).await.is_ok() {}
    });
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = tcp.accept().await {
            held.push(sock);
        }
    });
    addr
}

async fn a_silent_name_server_starves_nothing(backend: Backend) {
    let dns = silent_name_server().await;
    let mut sites = Sites::default();
    let healthy = ["one.test", "two.test", "three.test"];
    for (i, host) in healthy.iter().enumerate() {
        sites.page(host, &format!(r#"<link rel=icon href="/i{i}.png">"#));
        sites.route(
            host,
            &format!("/i{i}.png"),
            crate::fake::Route::new(200, "image/png", png(16, 16)),
        );
    }
    let internet = FakeInternet::start(sites).await;
    // Only the healthy names have rules; every other name goes to the silent name server.
    let resolve = internet.resolve_exact(&[]);
    let dns = dns.to_string();
    let app = TestApp::spawn(
        backend,
        &[
            ("FETCH_RESOLVE", &resolve),
            ("FETCH_DNS_SERVERS", &dns),
            ("FETCH_DNS_TIMEOUT_MS", "400"),
            ("FETCH_DNS_MAX_INFLIGHT", "16"),
            ("FETCH_TIMEOUT_SECS", "2"),
            ("FETCH_MAX_TRIES", "1"),
            ("WORKER_CONCURRENCY", "64"),
        ],
    )
    .await;
    let silent: Vec<String> = (0..150).map(|i| format!("silent{i}.example")).collect();
    let started = Instant::now();
    let (status, hostile) = app
        .post_json("/jobs", &json!({"client_id": "hostile", "domains": silent}))
        .await;
    assert_eq!(status, 201, "{hostile}");
    let (status, second) = app
        .post_json("/jobs", &json!({"client_id": "second", "domains": healthy}))
        .await;
    assert_eq!(status, 201, "{second}");

    let second_id = second["job_id"].as_str().unwrap();
    let done = app.wait_for_job(second_id, Duration::from_secs(30)).await;
    assert_eq!(done["completed"], 3, "{done}");
    let (_, rows) = app.get_json(&format!("/jobs/{second_id}/results")).await;
    for row in rows["results"].as_array().unwrap() {
        assert_eq!(row["status"], "success", "{row}");
        assert!(row["favicon_url"].as_str().unwrap().contains("/i"), "{row}");
    }

    let hostile_id = hostile["job_id"].as_str().unwrap();
    let done = app.wait_for_job(hostile_id, Duration::from_secs(30)).await;
    // 150 names, 64 at a time, each bounded by the 2 s domain deadline: about three rounds.
    let took = started.elapsed();
    assert!(took < Duration::from_secs(12), "{took:?}: {done}");
    let (_, rows) = app
        .get_json(&format!("/jobs/{hostile_id}/results?per_page=500"))
        .await;
    let rows = rows["results"].as_array().unwrap();
    assert_eq!(rows.len(), 150);
    for row in rows {
        assert_eq!(row["status"], "failed", "{row}");
        let code = row["error_code"].as_str().unwrap();
        assert!(code == "dns_transient" || code == "timeout", "{row}");
    }
    assert!(
        rows.iter().any(|r| r["error_code"] == "dns_transient"),
        "the resolver's own timeout classifies them"
    );
    app.stop().await;
}

both_backends!(
    a_silent_name_server_starves_nothing_on,
    a_silent_name_server_starves_nothing
);

/// A name server on loopback that answers every A query with 127.0.0.1 (and every other query
/// with an empty NOERROR), as a hostile or misconfigured zone would.
async fn loopback_name_server() -> SocketAddr {
    use hickory_resolver::proto::op::{Message, MessageType};
    use hickory_resolver::proto::rr::{RData, Record, RecordType, rdata::A};
    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = udp.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        while let Ok((n, from)) = udp.recv_from(&mut buf).await {
            let Ok(query) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let mut answer = Message::new();
            answer
                .set_id(query.id())
                .set_message_type(MessageType::Response)
                .set_op_code(query.op_code())
                .set_recursion_desired(query.recursion_desired())
                .set_recursion_available(true);
            for q in query.queries() {
                answer.add_query(q.clone());
                if q.query_type() == RecordType::A {
                    answer.add_answer(Record::from_rdata(
                        q.name().clone(),
                        60,
                        RData::A(A(Ipv4Addr::LOCALHOST)),
                    ));
                }
            }
            let _ = udp.send_to(&answer.to_vec().unwrap(), from).await;
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dns_answer_pointing_inside_is_blocked_without_naming_it() {
    let dns = loopback_name_server().await.to_string();
    let app = TestApp::spawn(
        Backend::Sqlite,
        &[
            ("FETCH_DNS_SERVERS", &dns),
            ("FETCH_ALLOW_PRIVATE_NETWORKS", "false"),
        ],
    )
    .await;
    let (status, created) = app
        .post_json(
            "/jobs",
            &json!({"client_id": "c", "domains": ["inside.example"]}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let job_id = created["job_id"].as_str().unwrap();
    app.wait_for_job(job_id, Duration::from_secs(20)).await;
    let (_, rows) = app.get_json(&format!("/jobs/{job_id}/results")).await;
    let row = &rows["results"][0];
    assert_eq!(row["status"], "failed", "{row}");
    assert_eq!(row["error_code"], "blocked", "{row}");
    let message = row["error"].as_str().unwrap();
    assert!(message.contains("non-public address"), "{row}");
    assert!(!message.contains("127.0.0.1"), "{row}");
    app.stop().await;
}
