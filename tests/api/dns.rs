//! DNS through `FETCH_DNS_SERVERS`: names asked of a name server that never answers end
//! `dns_transient` within their deadline while a second client's job on names served through
//! `FETCH_RESOLVE` completes with every icon found; an answer pointing at loopback is refused
//! by the SSRF guard without naming the address. The resolver on its own: its DNS answers are
//! guarded too, an answer re-pointed inside is blocked on the very next lookup when its TTL is
//! 0, and silent name servers hold no thread.

use crate::fake::{FakeInternet, NameServer, Sites, png};
use crate::helpers::{Backend, TestApp, both_backends};
use favicon_finder::finder::resolve::GuardedResolver;
use favicon_finder::finder::{ErrorCategory, FinderConfig, ResolveRule};
use serde_json::json;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

async fn a_silent_name_server_starves_nothing(backend: Backend) {
    let dns = NameServer::silent().await.addr;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dns_answer_pointing_inside_is_blocked_without_naming_it() {
    let dns = NameServer::loopback().await.addr.to_string();
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

/// The resolver's settings for these tests: `dns` as the name servers, no rules.
fn resolver(allow_private: bool, rules: Vec<ResolveRule>, dns: SocketAddr) -> GuardedResolver {
    GuardedResolver::new(&FinderConfig {
        timeout: Duration::from_secs(5),
        allow_private_networks: allow_private,
        resolve: rules,
        user_agent: "t".into(),
        dns_servers: vec![dns],
        ..FinderConfig::default()
    })
    .unwrap()
}

#[tokio::test]
async fn dns_answers_are_guarded() {
    let dns = NameServer::loopback().await;
    let open = resolver(true, vec![], dns.addr);
    assert_eq!(
        open.lookup("icons.example").await.unwrap(),
        ["127.0.0.1:0".parse().unwrap()],
        "hickory asked the fake name server"
    );
    assert!(dns.queries() >= 1);
    let guarded = resolver(false, vec![], dns.addr);
    let err = guarded.lookup("icons.example").await.unwrap_err();
    assert_eq!(err.category(), ErrorCategory::Blocked, "{err}");
    assert_eq!(
        err.to_string(),
        "icons.example resolves to a non-public address"
    );
}

/// Names looked up again while their answers live are answered from the resolver's cache,
/// also when more names are in flight than hickory's default cache holds (32): a job's
/// domains ask for their names several times each.
#[tokio::test]
async fn names_asked_again_are_answered_from_the_cache() {
    let dns = NameServer::loopback().await;
    let resolver = resolver(true, vec![], dns.addr);
    let names: Vec<String> = (0..200).map(|i| format!("site{i}.example")).collect();
    for name in &names {
        resolver.lookup(name).await.unwrap();
    }
    let first = dns.queries();
    // A and AAAA per name.
    assert_eq!(first, 2 * names.len());
    for name in &names {
        assert_eq!(
            resolver.lookup(name).await.unwrap(),
            ["127.0.0.1:0".parse().unwrap()]
        );
    }
    assert_eq!(
        dns.queries(),
        first,
        "the second round went to the name server"
    );
}

#[test]
fn silent_name_servers_hold_no_thread() {
    // One worker thread and one blocking thread: lookups that used the blocking pool
    // (getaddrinfo) would queue behind each other here, and the FETCH_RESOLVE name and the
    // answering name server below would wait for all of them.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(1)
        .build()
        .unwrap();
    rt.block_on(async {
        let silent = NameServer::silent().await;
        let answering = NameServer::loopback().await;
        let pinned_rule = ResolveRule {
            host: "pinned.example".into(),
            addr: "127.0.0.1:8080".parse().unwrap(),
        };
        let mut config = FinderConfig {
            allow_private_networks: true,
            resolve: vec![pinned_rule],
            dns_servers: vec![silent.addr],
            dns_timeout: Duration::from_millis(600),
            dns_max_inflight: 32,
            ..FinderConfig::default()
        };
        config.user_agent = "t".into();
        let r = GuardedResolver::new(&config).unwrap();
        let started = Instant::now();
        let stuck: Vec<_> = (0..200)
            .map(|i| {
                let r = r.clone();
                tokio::spawn(async move { r.lookup(&format!("silent{i}.example")).await })
            })
            .collect();
        tokio::task::yield_now().await;
        // Rules win before any DNS, whatever the name servers are doing.
        let pinned = Instant::now();
        assert_eq!(
            r.lookup("pinned.example").await.unwrap(),
            ["127.0.0.1:8080".parse().unwrap()]
        );
        assert!(pinned.elapsed() < Duration::from_millis(100));
        // Another resolver on the same runtime still gets answers meanwhile.
        let other = resolver(true, vec![], answering.addr);
        let asked = Instant::now();
        assert!(other.lookup("icons.example").await.is_ok());
        assert!(asked.elapsed() < Duration::from_millis(500), "{asked:?}");
        for task in stuck {
            let err = task.await.unwrap().unwrap_err();
            assert_eq!(err.category(), ErrorCategory::DnsTransient, "{err}");
        }
        // Every lookup, including those that waited for one of the 32 permits, ended
        // within its own timeout (plus scheduling slack), not 200 / 32 timeouts later.
        let took = started.elapsed();
        assert!(took < Duration::from_millis(600 + 400), "{took:?}");
    });
}

/// A name re-pointed inside between two lookups: with TTL 0 the very next lookup asks again
/// and is blocked; with the loopback server's TTL 60 the same change stays unseen (the cache
/// works, so it is the TTL that defeats it). The public address is only resolved, never
/// connected to.
#[tokio::test]
async fn an_answer_changed_at_runtime_is_seen_at_once_with_ttl_zero() {
    let dns = NameServer::answering(Ipv4Addr::new(8, 8, 8, 8)).await;
    let guarded = resolver(false, vec![], dns.addr);
    assert_eq!(
        guarded.lookup("hook.example").await.unwrap(),
        ["8.8.8.8:0".parse().unwrap()]
    );
    dns.set_answer(Ipv4Addr::LOCALHOST);
    let err = guarded.lookup("hook.example").await.unwrap_err();
    assert_eq!(err.category(), ErrorCategory::Blocked, "{err}");

    let cached = NameServer::loopback().await;
    let open = resolver(true, vec![], cached.addr);
    open.lookup("hook.example").await.unwrap();
    let asked = cached.queries();
    cached.set_answer(Ipv4Addr::new(8, 8, 8, 8));
    assert_eq!(
        open.lookup("hook.example").await.unwrap(),
        ["127.0.0.1:0".parse().unwrap()]
    );
    assert_eq!(cached.queries(), asked, "a TTL-60 answer was asked again");
}
