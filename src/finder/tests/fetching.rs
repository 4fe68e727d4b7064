//! Getting the page and the icons over HTTP: the https→http fallback, redirects (chains,
//! loops, `<meta refresh>`), dead and slow hosts, endless and compressed bodies, status codes
//! and their classification, and the one browser-like retry a bot wall or an overload gets.

use super::*;

#[tokio::test]
async fn redirect_chain_resolves_against_final_url() {
    // http→www→/home, then a path-relative href: it must resolve against the page the
    // redirects ended on, not the origin root or the first URL.
    let s = Server::start(|r| match (r.host.as_str(), r.path.as_str()) {
        ("site.test", "/") => redirect(301, "http://www.site.test/"),
        ("www.site.test", "/") => redirect(302, "/blog/home"),
        ("www.site.test", "/blog/home") => {
            html(r#"<head><link rel="SHORTCUT ICON" href="img/f.gif"></head>"#)
        }
        ("www.site.test", "/blog/img/f.gif") => ok("image/gif", gif_bytes(16, 16)),
        _ => status(404),
    })
    .await;
    let found = find_on(&s, "site.test").await.unwrap();
    assert_eq!(
        found.final_url.as_deref(),
        Some("http://www.site.test/blog/home")
    );
    assert_eq!(found.favicon_url, "http://www.site.test/blog/img/f.gif");
}

#[tokio::test]
async fn redirect_loop_is_too_many_redirects_but_favicon_still_tried() {
    // A redirect loop must end as too_many_redirects instead of spinning, and the default
    // paths still get their turn.
    let s = Server::start(|r| match r.path.as_str() {
        "/" => redirect(302, "/a"),
        "/a" => redirect(302, "/"),
        _ => status(404),
    })
    .await;
    let err = find_on(&s, "loop.test").await.unwrap_err();
    assert_eq!(err.category, ErrorCategory::TooManyRedirects);
    assert!(s.paths().contains(&"loop.test/favicon.ico".to_string()));

    let s = Server::start(|r| match r.path.as_str() {
        "/" => redirect(302, "/a"),
        "/a" => redirect(302, "/"),
        "/favicon.ico" => ok("image/x-icon", ico_bytes(&[32])),
        _ => status(404),
    })
    .await;
    let found = find_on(&s, "loop.test").await.unwrap();
    assert_eq!(found.favicon_url, "http://loop.test/favicon.ico");
    assert_eq!(found.final_url, None);
}

#[tokio::test]
async fn too_many_hops_without_loop() {
    let s = Server::start(|r| {
        let n: u32 = r.path.trim_start_matches("/r").parse().unwrap_or(0);
        if r.path == "/" || r.path.starts_with("/r") {
            redirect(302, &format!("/r{}", n + 1))
        } else {
            status(404)
        }
    })
    .await;
    let err = find_on(&s, "hops.test").await.unwrap_err();
    assert_eq!(err.category, ErrorCategory::TooManyRedirects);
}

#[tokio::test]
async fn data_url_icon_and_meta_refresh() {
    // A `<meta refresh>` to another page is followed once (it is how some sites redirect
    // without HTTP), and a `data:` icon there is used without a fetch.
    let s = Server::start(|r| match r.path.as_str() {
        "/" => html(r#"<head><meta http-equiv="Refresh" content="0; URL='/en/'"></head>"#),
        "/en/" => html(
            r#"<head><link rel=icon href="data:image/svg+xml,%3Csvg%20width='24'%20height='24'%3E%3C/svg%3E"></head>"#,
        ),
        _ => status(404),
    })
    .await;
    let found = find_on(&s, "refresh.test").await.unwrap();
    assert_eq!(found.final_url.as_deref(), Some("http://refresh.test/en/"));
    assert!(found.favicon_url.starts_with("data:image/svg+xml"));
    assert_eq!((found.mime.as_str(), found.width), ("image/svg+xml", 24));
    assert!(
        !s.paths().iter().any(|p| p.contains("svg")),
        "data: icons are never fetched"
    );
}

#[tokio::test]
async fn dead_port_is_connect() {
    // A socket bound and never listening refuses connections, and holds its port so no other
    // test can be handed it meanwhile.
    let refusing = tokio::net::TcpSocket::new_v4().unwrap();
    refusing
        .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .unwrap();
    let port = refusing.local_addr().unwrap().port();
    let f = Finder::new(config(port, true, 3000)).unwrap();
    let err = f.find("dead.test").await.unwrap_err();
    assert_eq!(err.category, ErrorCategory::Connect);
}

#[tokio::test]
async fn slow_drip_times_out_within_deadline() {
    // A server that sends a byte now and then would hold a worker forever without an overall
    // deadline: the find must end within it.
    let s = Server::start(|_| drip("text/html")).await;
    let f = Finder::new(config(s.port, true, 1500)).unwrap();
    let t = Instant::now();
    let err = f.find("drip.test").await.unwrap_err();
    let took = t.elapsed();
    assert_eq!(err.category, ErrorCategory::Timeout, "{err:?}");
    assert!(took < Duration::from_millis(1900), "took {took:?}");
}

#[tokio::test]
async fn endless_bodies_are_capped() {
    // An endless page is parsed up to the cap (what was found is kept); an endless icon is
    // rejected, so neither can exhaust memory.
    let s = Server::start(|r| match r.path.as_str() {
        "/" => Resp {
            status: 200,
            headers: vec![("Content-Type", "text/html".into())],
            body: Body::Endless(b"<link rel=icon href=/big.png><!-- padding -->".to_vec()),
            delay: Duration::ZERO,
        },
        "/big.png" => Resp {
            status: 200,
            headers: vec![("Content-Type", "image/png".into())],
            body: Body::Endless(png_bytes(32, 32)),
            delay: Duration::ZERO,
        },
        "/favicon.ico" => ok("image/x-icon", ico_bytes(&[48])),
        _ => status(404),
    })
    .await;
    let found = find_on(&s, "big.test").await.unwrap();
    assert_eq!(found.favicon_url, "http://big.test/favicon.ico");
    let big = found
        .candidates
        .iter()
        .find(|c| c.url.ends_with("/big.png"))
        .unwrap();
    assert!(big.error.as_deref().unwrap().contains("cap"), "{big:?}");
}

#[tokio::test]
async fn gzip_page_is_decompressed() {
    // Servers compress HTML whether or not it helps: the page must be decompressed before
    // parsing.
    use flate2::{Compression, write::GzEncoder};
    use std::io::Write;
    let mut enc = GzEncoder::new(Vec::new(), Compression::default());
    enc.write_all(b"<head><link rel=icon href=/z.png></head>")
        .unwrap();
    let gz = enc.finish().unwrap();
    let s = Server::start(move |r| match r.path.as_str() {
        "/" => Resp {
            status: 200,
            headers: vec![
                ("Content-Type", "text/html".into()),
                ("Content-Encoding", "gzip".into()),
            ],
            body: Body::Bytes(gz.clone()),
            delay: Duration::ZERO,
        },
        "/z.png" => ok("image/png", png_bytes(48, 48)),
        _ => status(404),
    })
    .await;
    let found = find_on(&s, "gz.test").await.unwrap();
    assert_eq!(found.favicon_url, "http://gz.test/z.png");
}

#[tokio::test]
async fn apex_dead_www_alive() {
    // Many sites answer on only one of the apex and www: the other one must be tried.
    let s = Server::start(|r| match (r.host.as_str(), r.path.as_str()) {
        ("www.apex.test", "/") => html("<head><link rel=icon href=/i.png></head>"),
        ("www.apex.test", "/i.png") => ok("image/png", png_bytes(64, 64)),
        _ => status(404),
    })
    .await;
    let mut cfg = config(s.port, true, 5000);
    cfg.resolve[0].host = "www.apex.test".into();
    let found = Finder::new(cfg).unwrap().find("apex.test").await.unwrap();
    assert_eq!(found.favicon_url, "http://www.apex.test/i.png");
}

#[tokio::test]
async fn https_to_plain_http_port_is_tls() {
    // A TLS handshake answered with plain HTTP is a TLS failure, not a dead host.
    let s = Server::start(|_| status(404)).await;
    let f = Finder::new(config(s.port, true, 3000)).unwrap();
    let u = Url::parse("https://tls.test/").unwrap();
    let deadline = clock::Deadline::start(Duration::from_secs(2), Duration::from_secs(2));
    let e = f
        .fetcher
        .open(u, 0, false, Duration::from_secs(2), &deadline)
        .await
        .err()
        .unwrap();
    assert_eq!(e.category, ErrorCategory::Tls, "{}", e.message);
}

#[tokio::test]
async fn error_page_still_gets_favicon_and_404_is_http_status() {
    let s = Server::start(|r| match r.path.as_str() {
        "/favicon.ico" => ok("image/x-icon", ico_bytes(&[32])),
        _ => status(404),
    })
    .await;
    let found = find_on(&s, "err.test").await.unwrap();
    assert_eq!(found.favicon_url, "http://err.test/favicon.ico");
    let s = Server::start(|_| status(404)).await;
    let err = find_on(&s, "err.test").await.unwrap_err();
    assert_eq!(err.category, ErrorCategory::HttpStatus);
}

#[tokio::test]
async fn server_error_page_is_transient() {
    let s = Server::start(|_| status(500)).await;
    let err = find_on(&s, "broken.test").await.unwrap_err();
    assert_eq!(err.category, ErrorCategory::RateLimited);
    assert!(err.message.contains("500"), "{}", err.message);
    assert!(err.category.is_transient());
}

#[tokio::test]
async fn rate_limited_with_retry_after_and_browser_retry() {
    // An overloaded server (503 + Retry-After) is asked once more with browser-like headers,
    // then failed as transient, carrying its Retry-After for the retry's backoff.
    let s = Server::start(|r| {
        let mut resp = status(503);
        resp.headers.push(("Retry-After", "120".into()));
        let _ = r;
        resp
    })
    .await;
    let err = find_on(&s, "busy.test").await.unwrap_err();
    assert_eq!(err.category, ErrorCategory::RateLimited);
    assert_eq!(err.retry_after_secs, Some(120));
    assert!(err.category.is_transient());
    let reqs = s.requests.lock().unwrap().clone();
    let home: Vec<_> = reqs.iter().filter(|r| r.path == "/").collect();
    assert_eq!(home.len(), 2, "one retry with browser headers");
    assert!(
        home[1]
            .head
            .to_ascii_lowercase()
            .contains("accept-language")
    );
}

/// The browser-like retry after a 403 needs a host slot of its own: with one slot per host,
/// it must not wait on the slot the first answer still held (which took the whole budget).
#[tokio::test]
async fn the_browser_retry_does_not_wait_on_its_own_first_answer() {
    let s = Server::start(|r| {
        let browser = r.head.to_ascii_lowercase().contains("sec-fetch-mode");
        match r.path.as_str() {
            "/" if !browser => status(403),
            "/" => html("<head><link rel=icon href=/b.png></head>"),
            "/b.png" => ok("image/png", png_bytes(32, 32)),
            _ => status(404),
        }
    })
    .await;
    let mut one_slot = config(s.port, true, 5000);
    one_slot.per_host_concurrency = 1;
    one_slot.per_address_concurrency = 1;
    let started = std::time::Instant::now();
    let found = Finder::new(one_slot).unwrap().find("walled.test").await;
    let took = started.elapsed();
    assert_eq!(found.unwrap().favicon_url, "http://walled.test/b.png");
    assert!(took < Duration::from_secs(2), "took {took:?}");
}

#[tokio::test]
async fn bot_wall_that_survives_the_browser_retry_is_http_status() {
    // A bot wall: one browser-like retry, then a classified, permanent failure; a 503 challenge
    // is not "rate limited" (retrying with the same client meets the same wall).
    let s = Server::start(|r| {
        let browser = r.head.to_ascii_lowercase().contains("sec-fetch-mode");
        match (r.host.as_str(), r.path.as_str()) {
            ("wall.test", "/") => Resp {
                status: 503,
                headers: vec![("Content-Type", "text/html".into())],
                body: Body::Bytes(
                    b"<html><head><title>Just a moment...</title></head></html>".to_vec(),
                ),
                delay: Duration::ZERO,
            },
            ("cf.test", "/") => Resp {
                status: 403,
                headers: vec![("cf-mitigated", "challenge".into())],
                body: Body::Bytes(Vec::new()),
                delay: Duration::ZERO,
            },
            ("plain403.test", "/") => status(403),
            ("browser.test", "/") if !browser => status(403),
            ("browser.test", "/") => html("<head><link rel=icon href=/b.png></head>"),
            ("browser.test", "/b.png") => ok("image/png", png_bytes(32, 32)),
            _ => status(404),
        }
    })
    .await;
    for host in ["wall.test", "cf.test"] {
        let err = find_on(&s, host).await.unwrap_err();
        assert_eq!(err.category, ErrorCategory::HttpStatus, "{host}: {err:?}");
        assert!(err.message.starts_with("bot wall:"), "{err:?}");
        assert!(!err.category.is_transient());
    }
    let err = find_on(&s, "plain403.test").await.unwrap_err();
    assert_eq!(err.category, ErrorCategory::HttpStatus);
    assert!(err.message.contains("browser-like retry"), "{err:?}");
    let found = find_on(&s, "browser.test").await.unwrap();
    assert_eq!(found.favicon_url, "http://browser.test/b.png");
    let tried: Vec<String> = s.paths();
    assert_eq!(
        tried.iter().filter(|p| *p == "wall.test/").count(),
        2,
        "one plain request and one browser-like retry: {tried:?}"
    );
}

#[test]
fn find_future_is_send() {
    fn assert_send<T: Send>(_: &T) {}
    let f = Finder::new(config(1, true, 1000)).unwrap();
    assert_send(&f.find("x.test"));
}

/// A host that refused https while http worked is fetched over http first for the TTL: a
/// second find (a re-run) makes no TLS handshake; with the memory off it does.
#[tokio::test]
async fn a_host_that_refused_https_is_fetched_over_http_next_time() {
    use std::sync::atomic::Ordering;
    let s = Server::start(|r| match r.path.as_str() {
        "/" => html("<head><link rel=icon href=/i.png></head>"),
        "/i.png" => ok("image/png", png_bytes(32, 32)),
        _ => status(404),
    })
    .await;
    let f = Finder::new(config(s.port, true, 5000)).unwrap();
    assert!(f.find("plain.test").await.is_ok());
    assert_eq!(
        s.tls_hellos.load(Ordering::SeqCst),
        1,
        "https is the first try"
    );
    assert!(f.find("plain.test").await.is_ok());
    assert_eq!(
        s.tls_hellos.load(Ordering::SeqCst),
        1,
        "the refused handshake is not paid again"
    );

    let forgetful = Finder::new(FinderConfig {
        https_refusal_ttl: Duration::ZERO,
        ..config(s.port, true, 5000)
    })
    .unwrap();
    assert!(forgetful.find("plain.test").await.is_ok());
    assert!(forgetful.find("plain.test").await.is_ok());
    assert_eq!(
        s.tls_hellos.load(Ordering::SeqCst),
        3,
        "without the memory, every find tries https"
    );
}

/// `no_icon` only when every candidate answered: a linked icon that never answers, refuses
/// connections or answers 503 (or a manifest or `<meta refresh>` target that does) leaves the
/// failure transient, in that fetch's category, so it is retried and never cached; 404, 410
/// and non-images are definite.
#[tokio::test]
async fn a_candidate_that_did_not_answer_makes_the_failure_transient() {
    let refusing = tokio::net::TcpSocket::new_v4().unwrap();
    refusing
        .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .unwrap();
    let dead = refusing.local_addr().unwrap();
    let s = Server::start(|r| match (r.host.as_str(), r.path.as_str()) {
        ("silent.test", "/") => html("<head><link rel=icon href=/i.png></head>"),
        ("silent.test", "/i.png") => delayed(ok("image/png", vec![]), Duration::from_secs(30)),
        ("busy.test", "/") => html("<head><link rel=icon href=/i.png></head>"),
        ("busy.test", "/i.png") => status(503),
        ("refused.test", "/") => {
            html("<head><link rel=icon href=http://dead.test/i.png></head>")
        }
        ("manifest.test", "/") => html("<head><link rel=manifest href=/m.json></head>"),
        ("manifest.test", "/m.json") => status(500),
        ("refresh.test", "/") => html(r#"<head><meta http-equiv=refresh content="0; url=/en/"></head>"#),
        ("refresh.test", "/en/") => delayed(html("<head></head>"), Duration::from_secs(30)),
        ("gone.test", "/") => html(
            "<head><link rel=icon href=/a.png><link rel=icon href=/b.png><link rel=icon href=/c.png></head>",
        ),
        ("gone.test", "/a.png") => status(410),
        ("gone.test", "/b.png") => html("<html>not an image</html>"),
        _ => status(404),
    })
    .await;
    let mut cfg = config(s.port, true, 2000);
    cfg.resolve.insert(
        0,
        ResolveRule {
            host: "dead.test".into(),
            addr: dead,
        },
    );
    let f = Finder::new(cfg).unwrap();
    for (domain, category) in [
        ("silent.test", ErrorCategory::Timeout),
        ("busy.test", ErrorCategory::RateLimited),
        ("refused.test", ErrorCategory::Connect),
        ("manifest.test", ErrorCategory::RateLimited),
        ("refresh.test", ErrorCategory::Timeout),
        ("gone.test", ErrorCategory::NoIcon),
    ] {
        let err = f.find(domain).await.unwrap_err();
        assert_eq!(err.category, category, "{domain}: {err:?}");
        assert_eq!(
            category.is_cacheable(),
            category == ErrorCategory::NoIcon,
            "{domain}: only a definite answer may be reused"
        );
    }
}

/// A site's deadline is the site's own time: ten sites on one address with one slot, each
/// answering in 150 ms per request, queue for far longer than their 1 s deadline, and all
/// still find their icon; the wait is bounded only by `max_slot_wait`.
#[tokio::test]
async fn waiting_for_our_own_slot_is_not_the_sites_time() {
    let s = Server::start(|r| match r.path.as_str() {
        "/" => delayed(
            html("<head><link rel=icon href=/i.png></head>"),
            Duration::from_millis(150),
        ),
        "/i.png" => delayed(
            ok("image/png", png_bytes(32, 32)),
            Duration::from_millis(150),
        ),
        _ => status(404),
    })
    .await;
    let mut one_slot = config(s.port, true, 1000);
    one_slot.per_address_concurrency = 1;
    let f = Finder::new(one_slot.clone()).unwrap();
    let finds = (0..10).map(|i| {
        let f = f.clone();
        async move { f.find(&format!("shared{i}.test")).await }
    });
    let started = std::time::Instant::now();
    for outcome in futures::future::join_all(finds).await {
        assert!(outcome.is_ok(), "{outcome:?}");
    }
    assert!(
        started.elapsed() > Duration::from_secs(2),
        "the sites really queued: {:?}",
        started.elapsed()
    );

    // The wait itself is bounded: past `max_slot_wait` it ends as a transient timeout.
    one_slot.max_slot_wait = Duration::from_millis(200);
    let f = Finder::new(one_slot).unwrap();
    let finds = (0..6).map(|i| {
        let f = f.clone();
        async move { f.find(&format!("queued{i}.test")).await }
    });
    let outcomes = futures::future::join_all(finds).await;
    let waited_out: Vec<_> = outcomes.iter().filter_map(|o| o.as_ref().err()).collect();
    assert!(!waited_out.is_empty(), "some waited too long");
    for e in waited_out {
        assert_eq!(e.category, ErrorCategory::Timeout, "{e:?}");
    }
}

/// A bot wall whose browser-like retry never answers said nothing final: the failure is a
/// transient timeout, not the wall's permanent `http_status`, and `/favicon.ico` is still tried.
#[tokio::test]
async fn a_bot_wall_retry_that_does_not_answer_is_transient() {
    let s = Server::start(|r| {
        let browser = r.head.to_ascii_lowercase().contains("sec-fetch-mode");
        match r.path.as_str() {
            "/" if !browser => status(403),
            "/" => delayed(html("<head></head>"), Duration::from_secs(30)),
            _ => status(404),
        }
    })
    .await;
    let f = Finder::new(config(s.port, true, 1500)).unwrap();
    let err = f.find("walled.test").await.unwrap_err();
    assert_eq!(err.category, ErrorCategory::Timeout, "{err:?}");
    assert!(s.paths().contains(&"walled.test/favicon.ico".to_owned()));
}
