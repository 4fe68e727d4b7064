//! Safety, end to end: the SSRF guard with `FETCH_ALLOW_PRIVATE_NETWORKS=false`, and hostile
//! sites that must end classified within the per-domain deadline.
//!
//! Names pointing at loopback run as a real job against the fake internet and must give
//! `blocked` with no request reaching it. Names pointing at other private ranges are checked on
//! the resolver alone, so nothing ever tries to connect outside loopback even if the guard
//! broke. Redirects, icon hrefs and manifests that point at private targets need a "public" site
//! that is itself on loopback, which the app cannot have while private networks are refused
//! (a `FETCH_RESOLVE` address is guarded like a DNS answer); those refusals are proven at the
//! finder level in `src/finder/tests.rs`
//! (`private_targets_behind_a_public_site_are_refused_before_any_connection`).

use crate::fake::{FakeInternet, Route, Sites, Stream, ico};
use crate::helpers::{Backend, TestApp, both_backends};
use favicon_finder::finder::ErrorCategory;
use favicon_finder::finder::resolve::{GuardedResolver, ResolveError};
use favicon_finder::finder::{FinderConfig, ResolveRule};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Runs one job over `domains` and returns its rows by domain, with how long the job took.
async fn run_job(app: &TestApp, domains: &[&str], within: Duration) -> HashMap<String, Value> {
    let (status, created) = app
        .post_json("/jobs", &json!({"client_id": "safety", "domains": domains}))
        .await;
    assert_eq!(status, 201, "{created}");
    let job_id = created["job_id"].as_str().unwrap().to_owned();
    app.wait_for_job(&job_id, within).await;
    let (_, body) = app
        .get_json(&format!("/jobs/{job_id}/results?per_page=100"))
        .await;
    body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["domain"].as_str().unwrap().to_owned(), r.clone()))
        .collect()
}

async fn loopback_names_are_blocked(backend: Backend) {
    // A public-looking name that resolves to loopback (here through FETCH_RESOLVE) must be
    // refused although a site is waiting there: that is how SSRF reaches internal services.
    let mut sites = Sites::default();
    for host in ["s-loopback4.test", "s-mapped.test", "s-loopback6.test"] {
        sites
            .page(host, "<head><link rel=icon href=/i.ico></head>")
            .file(host, "/i.ico", "image/x-icon", &ico(&[32]))
            .file(host, "/favicon.ico", "image/x-icon", &ico(&[32]));
    }
    let internet = FakeInternet::start(sites).await;
    let port = internet.addr.port();
    let v6: SocketAddr = format!("[::1]:{port}").parse().unwrap();
    let mapped: SocketAddr = format!("[::ffff:127.0.0.1]:{port}").parse().unwrap();
    let resolve = format!(
        "s-loopback4.test={},s-loopback6.test={v6},s-mapped.test={mapped},s-control.test={}",
        internet.addr, internet.addr
    );
    let app = TestApp::spawn(
        backend,
        &[
            ("FETCH_RESOLVE", &resolve),
            ("FETCH_ALLOW_PRIVATE_NETWORKS", "false"),
            ("FETCH_MAX_TRIES", "1"),
            ("FETCH_TIMEOUT_SECS", "3"),
        ],
    )
    .await;
    let rows = run_job(
        &app,
        &["s-loopback4.test", "s-loopback6.test", "s-mapped.test"],
        Duration::from_secs(20),
    )
    .await;
    for (domain, row) in &rows {
        assert_eq!(row["status"], "failed", "{domain}: {row}");
        assert_eq!(row["error_code"], "blocked", "{domain}: {row}");
        assert_eq!(row["tries"], 1, "a refusal is permanent: {row}");
    }
    assert_eq!(rows.len(), 3);
    for host in ["s-loopback4.test", "s-loopback6.test", "s-mapped.test"] {
        assert_eq!(internet.host_hits(host), 0, "{host} was reached");
    }
    app.stop().await;
}
both_backends!(loopback_blocked, loopback_names_are_blocked);

#[tokio::test]
async fn private_ranges_are_refused_by_the_resolver() {
    // The same for private ranges with nothing listening: classified on the resolver alone, so
    // no connection outside loopback is ever attempted. Port 80 as a real site would use.
    let cases = [
        ("ten.test", "10.1.2.3:80"),
        ("rfc1918-172.test", "172.16.0.1:80"),
        ("rfc1918-192.test", "192.168.1.1:80"),
        ("metadata.test", "169.254.169.254:80"),
        ("cgnat.test", "100.64.0.1:80"),
        ("ula.test", "[fc00::1]:80"),
        ("link-local6.test", "[fe80::1]:80"),
        ("mapped-ten.test", "[::ffff:10.0.0.1]:80"),
        ("unspecified.test", "0.0.0.0:80"),
        ("broadcast.test", "255.255.255.255:80"),
    ];
    let rules: Vec<ResolveRule> = cases
        .iter()
        .map(|(host, addr)| ResolveRule {
            host: (*host).into(),
            addr: addr.parse().unwrap(),
        })
        .collect();
    let config = |allow_private_networks| FinderConfig {
        timeout: Duration::from_secs(3),
        allow_private_networks,
        resolve: rules.clone(),
        user_agent: "test".into(),
        ..FinderConfig::default()
    };
    let guarded = GuardedResolver::new(&config(false)).unwrap();
    for (host, addr) in cases {
        match guarded.lookup(host).await {
            Err(e @ ResolveError::Blocked { .. }) => {
                assert!(e.to_string().contains("non-public"), "{e}");
                // The address is not named: results must not map internal DNS for a caller.
                let ip = addr.rsplit_once(':').unwrap().0.trim_matches(['[', ']']);
                assert!(!e.to_string().contains(ip), "{e}");
            }
            other => panic!("{host} ({addr}) must be blocked, got {other:?}"),
        }
    }
    // The same rules are honoured when private networks are allowed: the refusal is the guard.
    let open = GuardedResolver::new(&config(true)).unwrap();
    assert_eq!(
        open.lookup("metadata.test").await.unwrap(),
        ["169.254.169.254:80".parse::<SocketAddr>().unwrap()]
    );
    // And the finder turns the refusal into `blocked` without connecting (a `.test` www
    // variant has no rule, so it does not resolve either).
    let finder = favicon_finder::finder::Finder::new(config(false)).unwrap();
    for host in ["metadata.test", "ula.test", "cgnat.test"] {
        let err = finder.find(host).await.unwrap_err();
        assert_eq!(err.category, ErrorCategory::Blocked, "{host}: {err:?}");
    }
}

/// A gzip stream of `n` MiB of spaces: a few KiB on the wire, far past every cap once inflated.
fn gzip_bomb(mib: usize) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let block = vec![b' '; 1024 * 1024];
    for _ in 0..mib {
        enc.write_all(&block).unwrap();
    }
    enc.finish().unwrap()
}

async fn hostile_sites_end_classified_within_the_deadline(backend: Backend) {
    // Endless bodies, slow drips, redirect loops, bombs: every hostile shape in one job, each
    // ends classified within FETCH_TIMEOUT_SECS and none hangs the worker.
    let mut sites = Sites::default();
    let endless_html = b"<div>endless</div>".repeat(1000);
    sites
        .stream(
            "h-endless.test",
            "/",
            "text/html",
            Stream::Endless(endless_html),
        )
        .stream(
            "h-endless.test",
            "/favicon.ico",
            "image/x-icon",
            Stream::Endless(vec![0; 64 * 1024]),
        );
    for path in [
        "/",
        "/favicon.ico",
        "/apple-touch-icon.png",
        "/apple-touch-icon-precomposed.png",
    ] {
        sites.stream("h-drip.test", path, "text/html", Stream::Drip);
    }
    let bomb = gzip_bomb(16);
    sites
        .route(
            "h-bomb.test",
            "/",
            Route::new(200, "text/html", bomb.clone()).with_header("content-encoding", "gzip"),
        )
        .route(
            "h-bomb.test",
            "/favicon.ico",
            Route::new(200, "image/x-icon", bomb).with_header("content-encoding", "gzip"),
        );
    sites
        .route(
            "h-loop.test",
            "/",
            Route::redirect(302, "http://www.h-loop.test/"),
        )
        .route(
            "www.h-loop.test",
            "/",
            Route::redirect(302, "http://h-loop.test/"),
        );
    sites
        .stream(
            "h-100mb.test",
            "/",
            "text/html",
            Stream::Sized {
                chunk: b"lorem ipsum dolor sit amet ".repeat(2_400),
                total: 100 * 1024 * 1024,
            },
        )
        .stream(
            "h-100mb.test",
            "/favicon.ico",
            "image/x-icon",
            Stream::Sized {
                chunk: vec![0; 64 * 1024],
                total: 100 * 1024 * 1024,
            },
        );
    sites.route(
        "h-stalled.test",
        "/",
        Route::html("<head></head>").with_delay(Duration::from_secs(30)),
    );
    sites.route(
        "h-stalled.test",
        "/favicon.ico",
        Route::new(200, "image/x-icon", ico(&[16])).with_delay(Duration::from_secs(30)),
    );
    let internet = FakeInternet::start(sites).await;
    let resolve = internet.resolve_exact(&[]);
    let app = TestApp::spawn(
        backend,
        &[
            ("FETCH_RESOLVE", &resolve),
            ("FETCH_MAX_TRIES", "1"),
            ("FETCH_TIMEOUT_SECS", "3"),
        ],
    )
    .await;
    let expect = [
        ("h-endless.test", "no_icon"),
        ("h-drip.test", "timeout"),
        ("h-bomb.test", "no_icon"),
        ("h-loop.test", "too_many_redirects"),
        ("h-100mb.test", "no_icon"),
        ("h-stalled.test", "timeout"),
    ];
    let domains: Vec<&str> = expect.iter().map(|(d, _)| *d).collect();
    let started = Instant::now();
    // All run at once; each must be over within its 3 s deadline (plus the worker's slack).
    let rows = run_job(&app, &domains, Duration::from_secs(8)).await;
    let took = started.elapsed();
    for (domain, code) in expect {
        let row = &rows[domain];
        assert_eq!(row["status"], "failed", "{domain}: {row}");
        assert_eq!(row["error_code"], code, "{domain}: {row}");
    }
    assert!(took < Duration::from_secs(8), "the job took {took:?}");
    // The caps, not the end of the bodies, stopped the reads: the endless sites were read.
    assert!(internet.hits("h-endless.test", "/favicon.ico") >= 1);
    assert!(internet.hits("h-100mb.test", "/") >= 1);
    app.stop().await;
}
both_backends!(
    hostile_sites,
    hostile_sites_end_classified_within_the_deadline
);
