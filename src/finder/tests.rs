//! Whole-finder tests against tiny hand-written HTTP servers on 127.0.0.1, reached through
//! `ResolveRule { host: "*" }`; names are made up under `.test`, so nothing leaves the machine.
//! The servers speak plain HTTP only: the finder's first `https://` attempt hits a TLS
//! handshake that the server answers with an HTTP 400 (as nginx does), which exercises the
//! https→http fallback on every test.

use super::image::tests::{gif_bytes, ico_bytes, png_bytes};
use super::*;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use url::Url;

#[derive(Debug, Clone)]
pub(crate) struct Req {
    pub(crate) host: String,
    pub(crate) path: String,
    head: String,
}

enum Body {
    Bytes(Vec<u8>),
    /// Headers, then one byte every 100 ms, forever.
    Drip,
    /// This chunk repeated forever, as fast as the client reads.
    Endless(Vec<u8>),
}

pub(crate) struct Resp {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Body,
}

pub(crate) fn ok(ctype: &str, body: impl Into<Vec<u8>>) -> Resp {
    Resp {
        status: 200,
        headers: vec![("Content-Type", ctype.into())],
        body: Body::Bytes(body.into()),
    }
}

pub(crate) fn html(s: &str) -> Resp {
    ok("text/html; charset=utf-8", s)
}

pub(crate) fn status(code: u16) -> Resp {
    Resp {
        status: code,
        headers: vec![("Content-Type", "text/html".into())],
        body: Body::Bytes(format!("<html><body>{code}</body></html>").into()),
    }
}

fn redirect(code: u16, to: &str) -> Resp {
    Resp {
        status: code,
        headers: vec![("Location", to.into())],
        body: Body::Bytes(Vec::new()),
    }
}

type Handler = Arc<dyn Fn(&Req) -> Resp + Send + Sync>;

pub(crate) struct Server {
    pub(crate) port: u16,
    requests: Arc<Mutex<Vec<Req>>>,
    connections: Arc<AtomicUsize>,
}

impl Server {
    pub(crate) async fn start(h: impl Fn(&Req) -> Resp + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let h: Handler = Arc::new(h);
        let (reqs, conns) = (requests.clone(), connections.clone());
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                conns.fetch_add(1, Ordering::SeqCst);
                let (h, reqs) = (h.clone(), reqs.clone());
                tokio::spawn(async move {
                    let _ =
                        tokio::time::timeout(Duration::from_secs(30), serve(sock, h, reqs)).await;
                });
            }
        });
        Self {
            port,
            requests,
            connections,
        }
    }

    fn paths(&self) -> Vec<String> {
        let r = self.requests.lock().unwrap();
        r.iter().map(|r| format!("{}{}", r.host, r.path)).collect()
    }
}

async fn serve(mut sock: TcpStream, h: Handler, reqs: Arc<Mutex<Vec<Req>>>) {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    loop {
        let Ok(n) = sock.read(&mut tmp).await else {
            return;
        };
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&tmp[..n]);
        if buf[0] == 0x16 {
            // A TLS ClientHello on a plain-HTTP port.
            let _ = sock
                .write_all(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n")
                .await;
            return;
        }
        if buf.windows(4).any(|w| w == b"\r\n\r\n") || buf.len() > 65536 {
            break;
        }
    }
    let head = String::from_utf8_lossy(&buf).to_string();
    let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
    let host = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("host").then(|| v.trim().to_string())
        })
        .unwrap_or_default();
    let host = host.split(':').next().unwrap_or("").to_string();
    let req = Req { host, path, head };
    reqs.lock().unwrap().push(req.clone());
    let resp = h(&req);
    let mut out = format!("HTTP/1.1 {} X\r\nConnection: close\r\n", resp.status);
    for (k, v) in &resp.headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    match resp.body {
        Body::Bytes(b) => {
            out.push_str(&format!("Content-Length: {}\r\n\r\n", b.len()));
            let _ = sock.write_all(out.as_bytes()).await;
            let _ = sock.write_all(&b).await;
        }
        Body::Drip => {
            out.push_str("\r\n");
            let _ = sock.write_all(out.as_bytes()).await;
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                if sock.write_all(b" ").await.is_err() {
                    return;
                }
            }
        }
        Body::Endless(chunk) => {
            out.push_str("\r\n");
            let _ = sock.write_all(out.as_bytes()).await;
            while sock.write_all(&chunk).await.is_ok() {}
        }
    }
    let _ = sock.shutdown().await;
}

pub(crate) fn config(port: u16, allow_private: bool, timeout_ms: u64) -> FinderConfig {
    FinderConfig {
        timeout: Duration::from_millis(timeout_ms),
        allow_private_networks: allow_private,
        resolve: vec![ResolveRule {
            host: "*".into(),
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        }],
        user_agent: "favicon-finder-test".into(),
        ..FinderConfig::default()
    }
}

async fn find_on(server: &Server, domain: &str) -> FindOutcome {
    let f = Finder::new(config(server.port, true, 5000)).unwrap();
    f.find(domain).await
}

#[tokio::test]
async fn link_icon_found_via_http_fallback() {
    let s = Server::start(|r| match r.path.as_str() {
        "/" => html(
            r#"<html><head><link rel="icon" href="/i.png" sizes="32x32"></head><body></body></html>"#,
        ),
        "/i.png" => ok("application/octet-stream", png_bytes(32, 32)),
        _ => status(404),
    })
    .await;
    let found = find_on(&s, "site.test").await.unwrap();
    assert_eq!(found.favicon_url, "http://site.test/i.png");
    assert_eq!(found.final_url.as_deref(), Some("http://site.test/"));
    assert_eq!((found.mime.as_str(), found.width), ("image/png", 32));
    assert_eq!(found.candidates[0].source, CandidateSource::Icon);
    assert!(
        found
            .candidates
            .iter()
            .any(|c| c.url == "http://site.test/favicon.ico")
    );
}

#[tokio::test]
async fn only_default_favicon_ico() {
    let s = Server::start(|r| match r.path.as_str() {
        "/" => html("<html><head><title>x</title></head><body>hi</body></html>"),
        "/favicon.ico" => ok("image/x-icon", ico_bytes(&[16, 32])),
        _ => status(404),
    })
    .await;
    let found = find_on(&s, "site.test").await.unwrap();
    assert_eq!(found.favicon_url, "http://site.test/favicon.ico");
    assert_eq!((found.mime.as_str(), found.width), ("image/x-icon", 32));
    assert_eq!(found.candidates[0].source, CandidateSource::DefaultPath);
}

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
async fn soft_404_favicon_is_rejected() {
    // A single-page app answers every path with its HTML and a 200: a "favicon" that is
    // really a page must be rejected by sniffing, not trusted for its status.
    let s = Server::start(|r| match r.path.as_str() {
        "/" => html("<html><head></head><body>app</body></html>"),
        _ => html("<!doctype html><html><head><title>App</title></head><body></body></html>"),
    })
    .await;
    let err = find_on(&s, "spa.test").await.unwrap_err();
    assert_eq!(err.category, ErrorCategory::NoIcon);
    let ico = err
        .candidates
        .iter()
        .find(|c| c.url == "http://spa.test/favicon.ico")
        .unwrap();
    assert!(ico.error.as_deref().unwrap().contains("soft 404"));
    // Nothing was declared, so the apple-touch paths were probed too.
    assert!(
        s.paths()
            .contains(&"spa.test/apple-touch-icon.png".to_string())
    );
}

#[tokio::test]
async fn missing_icon_is_no_icon_and_broken_candidates_fall_through() {
    // A declared 404, an empty file and a 1x1 placeholder are all rejected, and the finder
    // moves on to the next candidate instead of stopping at the first declared one.
    let s = Server::start(|r| match r.path.as_str() {
        "/" => html(
            r#"<head><link rel=icon href=/gone.png><link rel=icon href=/empty.ico><link rel=icon href=/pixel.gif></head>"#,
        ),
        "/empty.ico" => ok("image/x-icon", Vec::new()),
        "/pixel.gif" => ok("image/gif", gif_bytes(1, 1)),
        _ => status(404),
    })
    .await;
    let err = find_on(&s, "none.test").await.unwrap_err();
    assert_eq!(err.category, ErrorCategory::NoIcon);
    let errors: Vec<_> = err
        .candidates
        .iter()
        .map(|c| c.error.clone().unwrap_or_default())
        .collect();
    assert!(errors.iter().any(|e| e.contains("HTTP 404")), "{errors:?}");
    assert!(errors.iter().any(|e| e.contains("empty")), "{errors:?}");
    assert!(
        errors.iter().any(|e| e.contains("placeholder")),
        "{errors:?}"
    );
}

#[tokio::test]
async fn dead_port_is_connect() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    let f = Finder::new(config(port, true, 3000)).unwrap();
    let err = f.find("dead.test").await.unwrap_err();
    assert_eq!(err.category, ErrorCategory::Connect);
}

#[tokio::test]
async fn slow_drip_times_out_within_deadline() {
    // A server that sends a byte now and then would hold a worker forever without an overall
    // deadline: the find must end within it.
    let s = Server::start(|_| Resp {
        status: 200,
        headers: vec![("Content-Type", "text/html".into())],
        body: Body::Drip,
    })
    .await;
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
        },
        "/big.png" => Resp {
            status: 200,
            headers: vec![("Content-Type", "image/png".into())],
            body: Body::Endless(png_bytes(32, 32)),
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
async fn private_target_blocked_and_never_contacted() {
    // With the guard on, a name that resolves to loopback is refused at connect time: the
    // server must never see a connection.
    let s = Server::start(|_| html("<head><link rel=icon href=/i.png></head>")).await;
    let f = Finder::new(config(s.port, false, 3000)).unwrap();
    let err = f.find("site.test").await.unwrap_err();
    assert_eq!(err.category, ErrorCategory::Blocked);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(s.connections.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn redirect_to_private_literal_blocked() {
    // With the guard on, a redirect to a literal private address is refused before any
    // request, however the literal is spelled.
    let f = Finder::new(FinderConfig {
        timeout: Duration::from_secs(2),
        allow_private_networks: false,
        resolve: vec![],
        user_agent: "t".into(),
        ..FinderConfig::default()
    })
    .unwrap();
    let u = Url::parse("http://2130706433/").unwrap();
    let e = f.fetcher.check_url(&u).unwrap_err();
    assert_eq!(e.category, ErrorCategory::Blocked);
    // An unknown special-use name is answered without any DNS traffic.
    let err = f.find("nothing.test").await.unwrap_err();
    assert_eq!(err.category, ErrorCategory::Dns);
}

#[tokio::test]
async fn rule_for_other_host_only_gives_dns_error() {
    // A name that does not exist is a permanent failure, never retried: the rules do not cover
    // it and `.test` never goes to DNS.
    let s = Server::start(|_| status(404)).await;
    let mut cfg = config(s.port, true, 2000);
    cfg.resolve[0].host = "other.test".into();
    let err = Finder::new(cfg)
        .unwrap()
        .find("missing.test")
        .await
        .unwrap_err();
    assert_eq!(err.category, ErrorCategory::Dns);
    assert!(!err.category.is_transient());
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
async fn manifest_icons_and_real_sizes_decide() {
    // The manifest is fetched and resolved against its own URL; a lying `sizes`
    // loses to the real dimensions among verified head icons.
    let s = Server::start(|r| match r.path.as_str() {
        "/" => html(
            r#"<head><link rel=icon href=/lie.png sizes=192x192><link rel=icon href=/real.png sizes=16x16>
            <link rel=manifest href=/m/site.webmanifest></head>"#,
        ),
        "/lie.png" => ok("image/png", png_bytes(16, 16)),
        "/real.png" => ok("image/png", png_bytes(128, 128)),
        "/m/site.webmanifest" => ok(
            "application/manifest+json",
            r#"{"icons":[{"src":"a.png","sizes":"512x512"}]}"#,
        ),
        "/m/a.png" => ok("image/png", png_bytes(512, 512)),
        _ => status(404),
    })
    .await;
    let found = find_on(&s, "m.test").await.unwrap();
    assert_eq!(found.favicon_url, "http://m.test/real.png");
    assert!(
        found
            .candidates
            .iter()
            .any(|c| c.url == "http://m.test/m/a.png" && c.source == CandidateSource::Manifest)
    );
    let s = Server::start(|r| match r.path.as_str() {
        "/" => html(r#"<head><link rel=manifest href=/m/site.webmanifest></head>"#),
        "/m/site.webmanifest" => ok(
            "text/plain",
            r#"{"icons":[{"src":"a.png","sizes":"192x192"}]}"#,
        ),
        "/m/a.png" => ok("image/png", png_bytes(192, 192)),
        "/favicon.ico" => ok("image/x-icon", ico_bytes(&[16])),
        _ => status(404),
    })
    .await;
    let found = find_on(&s, "m.test").await.unwrap();
    assert_eq!(found.favicon_url, "http://m.test/m/a.png");
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
        },
        "/z.png" => ok("image/png", png_bytes(48, 48)),
        _ => status(404),
    })
    .await;
    let found = find_on(&s, "gz.test").await.unwrap();
    assert_eq!(found.favicon_url, "http://gz.test/z.png");
}

#[test]
fn resolve_rules_parse() {
    assert_eq!(parse_resolve_rules("").unwrap(), []);
    assert_eq!(parse_resolve_rules("  ").unwrap(), []);
    let r =
        parse_resolve_rules(" a.test=127.0.0.1:8080 , *=[::1]:9000,B.Test.=10.0.0.1:80").unwrap();
    assert_eq!(
        r,
        [
            ResolveRule {
                host: "a.test".into(),
                addr: "127.0.0.1:8080".parse().unwrap()
            },
            ResolveRule {
                host: "*".into(),
                addr: "[::1]:9000".parse().unwrap()
            },
            ResolveRule {
                host: "b.test".into(),
                addr: "10.0.0.1:80".parse().unwrap()
            },
        ]
    );
    let e = parse_resolve_rules("a.test=127.0.0.1:1,bad").unwrap_err();
    assert!(e.contains("\"bad\""), "{e}");
    assert!(
        parse_resolve_rules("x=127.0.0.1")
            .unwrap_err()
            .contains("x=127.0.0.1")
    );
    assert!(parse_resolve_rules("x=::1:80").is_err());
    assert!(parse_resolve_rules("a b=127.0.0.1:80").is_err());
}

#[test]
fn bad_pem_names_the_path() {
    let dir = std::env::temp_dir().join(format!("finder-pem-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("bad.pem");
    std::fs::write(&p, "not a certificate").unwrap();
    let mut cfg = config(1, true, 1000);
    cfg.extra_root_certs = Some(p.clone());
    let err = Finder::new(cfg.clone()).err().unwrap().to_string();
    assert!(err.contains("bad.pem"), "{err}");
    cfg.extra_root_certs = Some(dir.join("missing.pem"));
    let err = Finder::new(cfg).err().unwrap().to_string();
    assert!(err.contains("missing.pem"), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn https_to_plain_http_port_is_tls() {
    // A TLS handshake answered with plain HTTP is a TLS failure, not a dead host.
    let s = Server::start(|_| status(404)).await;
    let f = Finder::new(config(s.port, true, 3000)).unwrap();
    let u = Url::parse("https://tls.test/").unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    let e = f
        .fetcher
        .open(u, 0, false, Duration::from_secs(2), deadline)
        .await
        .err()
        .unwrap();
    assert_eq!(e.category, ErrorCategory::Tls, "{}", e.message);
}

#[tokio::test]
async fn non_html_root_still_probes_defaults() {
    // A root that serves JSON (an API host) declares nothing, but its default icon paths may
    // still exist.
    let s = Server::start(|r| match r.path.as_str() {
        "/" => ok("application/json", "{\"hello\":1}"),
        "/apple-touch-icon.png" => ok("image/png", png_bytes(180, 180)),
        _ => status(404),
    })
    .await;
    let found = find_on(&s, "api.test").await.unwrap();
    assert_eq!(found.favicon_url, "http://api.test/apple-touch-icon.png");
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
async fn body_links_rank_after_head_links_and_svg_wins() {
    // Links a CMS injected into <body> count, but below head links; an SVG is scalable, so it
    // beats every raster size.
    let s = Server::start(|r| match r.path.as_str() {
        "/" => html(
            r#"<head><link rel=icon href=/h.png sizes=32x32><link rel=icon type="image/svg+xml" href=/v.svg></head>
            <body><link rel=icon href=/b.png sizes=64x64></body>"#,
        ),
        "/h.png" => ok("image/png", png_bytes(32, 32)),
        "/b.png" => ok("image/png", png_bytes(64, 64)),
        "/v.svg" => ok("text/plain", "<svg viewBox='0 0 10 10'></svg>"),
        _ => status(404),
    })
    .await;
    let found = find_on(&s, "body.test").await.unwrap();
    assert_eq!(found.favicon_url, "http://body.test/v.svg");
    assert_eq!(found.mime, "image/svg+xml");
    let order: Vec<_> = found.candidates.iter().map(|c| c.url.as_str()).collect();
    assert_eq!(
        order[..3],
        [
            "http://body.test/v.svg",
            "http://body.test/h.png",
            "http://body.test/b.png"
        ]
    );
}

#[test]
fn find_future_is_send() {
    fn assert_send<T: Send>(_: &T) {}
    let f = Finder::new(config(1, true, 1000)).unwrap();
    assert_send(&f.find("x.test"));
}

#[test]
fn hostile_bytes_never_panic() {
    use rand::{Rng, SeedableRng, rngs::StdRng};
    let mut rng = StdRng::seed_from_u64(7);
    let seeds: Vec<Vec<u8>> = vec![
        png_bytes(16, 16),
        ico_bytes(&[16, 256]),
        gif_bytes(8, 8),
        b"<svg width='1e309' height='-4' viewBox='0 0 NaN 1e400'>".to_vec(),
        "<html><head><link rel=icon href='data:é'><base href=javascript:x><meta http-equiv=refresh content='0;url=\u{fffd}'></head>".into(),
        br#"{"icons":[{"src":"//[::1]/x","sizes":"99999999999x1"}]}"#.to_vec(),
    ];
    let base = Url::parse("https://x.test/a/b").unwrap();
    for i in 0..3000 {
        let mut b = seeds[i % seeds.len()].clone();
        for _ in 0..rng.random_range(0..8) {
            if b.is_empty() {
                break;
            }
            let at = rng.random_range(0..b.len());
            match rng.random_range(0..3) {
                0 => b[at] = rng.random(),
                1 => b.truncate(at),
                _ => b.insert(at, rng.random()),
            }
        }
        let _ = image::sniff(&b);
        let ex = html::extract(&b, Some("shift_jis"));
        let _ = links::candidates(&ex, &base);
        let text = String::from_utf8_lossy(&b);
        let _ = links::refresh_target(&text);
        let _ = links::resolve_href(&base, &text);
        let _ = rank::parse_sizes(&text);
        let _ = manifest::icons(&b, &base);
        let _ = pipeline::decode_data_url(&format!("data:{text}"));
    }
}

#[tokio::test]
async fn private_targets_behind_a_public_site_are_refused_before_any_connection() {
    // Past the home page too, every redirect hop, icon and manifest URL is guarded.
    // The "public" sites sit on loopback through the test-only trust hook; the private target
    // is a second loopback server that must never see a connection.
    let target = Server::start(|_| ok("image/png", png_bytes(32, 32))).await;
    let tp = target.port;
    let cases: Vec<(&'static str, Resp)> = vec![
        (
            "redirect-loopback-port.test",
            redirect(302, &format!("http://127.0.0.1:{tp}/")),
        ),
        ("redirect-loopback.test", redirect(302, "http://127.0.0.1/")),
        ("redirect-decimal.test", redirect(302, "http://2130706433/")),
        ("redirect-hex.test", redirect(302, "http://0x7f.1/")),
        (
            "redirect-mapped-v6.test",
            redirect(302, "http://[::ffff:127.0.0.1]/"),
        ),
        ("redirect-name.test", redirect(301, "http://inner.test/")),
        (
            "icon-literal.test",
            html(&format!(
                "<head><link rel=icon href=http://127.0.0.1:{tp}/i.png></head>"
            )),
        ),
        (
            "icon-name.test",
            html("<head><link rel=icon href=http://inner.test/i.png></head>"),
        ),
        (
            "icon-redirect.test",
            html("<head><link rel=icon href=/r.png></head>"),
        ),
        (
            "manifest-name.test",
            html("<head><link rel=manifest href=http://inner.test/m.json></head>"),
        ),
    ];
    let hosts: Vec<&'static str> = cases.iter().map(|(h, _)| *h).collect();
    let pages: std::collections::HashMap<&'static str, Resp> = cases.into_iter().collect();
    let pages = Arc::new(Mutex::new(pages));
    let site = Server::start(move |r| {
        if r.path == "/r.png" {
            return redirect(302, "http://inner.test/i.png");
        }
        if r.path != "/" {
            return status(404);
        }
        if r.host == "control.test" {
            return html("<head><title>no icons</title></head>");
        }
        let pages = pages.lock().unwrap();
        match pages.get(r.host.as_str()) {
            Some(p) => Resp {
                status: p.status,
                headers: p.headers.clone(),
                body: match &p.body {
                    Body::Bytes(b) => Body::Bytes(b.clone()),
                    _ => Body::Bytes(Vec::new()),
                },
            },
            None => status(404),
        }
    })
    .await;
    let mut cfg = config(site.port, false, 3000);
    cfg.resolve.insert(
        0,
        ResolveRule {
            host: "inner.test".into(),
            addr: SocketAddr::from(([127, 0, 0, 1], tp)),
        },
    );
    let mut trusted = hosts.clone();
    trusted.push("control.test");
    let f = Finder::new_trusting(cfg, &trusted).unwrap();
    for host in &hosts {
        let err = f.find(host).await.unwrap_err();
        assert_eq!(err.category, ErrorCategory::Blocked, "{host}: {err:?}");
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        target.connections.load(Ordering::SeqCst),
        0,
        "the private target was reached"
    );
    // The control: the hook itself does not refuse, the trusted site is really served.
    let site_paths = site.paths();
    assert!(site_paths.contains(&"redirect-name.test/".to_string()));
    assert!(site_paths.contains(&"icon-redirect.test/r.png".to_string()));
    let err = f.find("control.test").await.unwrap_err();
    assert_eq!(err.category, ErrorCategory::NoIcon, "{err:?}");
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
            },
            ("cf.test", "/") => Resp {
                status: 403,
                headers: vec![("cf-mitigated", "challenge".into())],
                body: Body::Bytes(Vec::new()),
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

#[tokio::test]
async fn noscript_icon_is_a_last_resort() {
    // Browsers that run scripts ignore <noscript>, so its icon is used only when nothing else,
    // `/favicon.ico` included, verified.
    let s = Server::start(|r| match (r.host.as_str(), r.path.as_str()) {
        (_, "/") => html("<head><noscript><link rel=icon href=/ns.png></noscript></head>"),
        (_, "/ns.png") => ok("image/png", png_bytes(32, 32)),
        ("both.test", "/favicon.ico") => ok("image/x-icon", ico_bytes(&[16])),
        _ => status(404),
    })
    .await;
    let found = find_on(&s, "both.test").await.unwrap();
    assert_eq!(found.favicon_url, "http://both.test/favicon.ico");
    let found = find_on(&s, "only.test").await.unwrap();
    assert_eq!(found.favicon_url, "http://only.test/ns.png");
}

#[tokio::test]
async fn entity_in_href_is_fetched_decoded() {
    let s = Server::start(|r| match r.path.as_str() {
        "/" => html(r#"<head><link rel=icon href="/icon.png?v=3&amp;s=32"></head>"#),
        "/icon.png?v=3&s=32" => ok("image/png", png_bytes(32, 32)),
        _ => status(404),
    })
    .await;
    let found = find_on(&s, "amp.test").await.unwrap();
    assert_eq!(found.favicon_url, "http://amp.test/icon.png?v=3&s=32");
    assert!(
        !s.paths().iter().any(|p| p.contains("&amp;")),
        "{:?}",
        s.paths()
    );
}

#[tokio::test]
async fn dark_scheme_icon_loses_to_the_default_one_and_wins_alone() {
    // The dark icon is an SVG declared last: without the colour-scheme rule it would win.
    let s = Server::start(|r| match (r.host.as_str(), r.path.as_str()) {
        ("both.test", "/") => html(
            r#"<head><link rel=icon href=/light.png sizes=16x16>
               <link rel=icon href=/dark.svg type=image/svg+xml media="(prefers-color-scheme: dark)"></head>"#,
        ),
        ("dark.test", "/") => html(
            r#"<head><link rel=icon href=/dark.svg media="screen and (prefers-color-scheme:dark)"></head>"#,
        ),
        (_, "/light.png") => ok("image/png", png_bytes(16, 16)),
        (_, "/dark.svg") => ok(
            "image/svg+xml",
            "<svg xmlns='http://www.w3.org/2000/svg' width='64' height='64'></svg>",
        ),
        _ => status(404),
    })
    .await;
    let found = find_on(&s, "both.test").await.unwrap();
    assert_eq!(found.favicon_url, "http://both.test/light.png");
    let dark = found
        .candidates
        .iter()
        .find(|c| c.url == "http://both.test/dark.svg")
        .expect("the dark icon stays visible");
    assert_eq!(dark.media.as_deref(), Some("(prefers-color-scheme: dark)"));

    let found = find_on(&s, "dark.test").await.unwrap();
    assert_eq!(found.favicon_url, "http://dark.test/dark.svg");
    let dark = &found.candidates[rank::pick(&found.candidates).unwrap()];
    assert_eq!(
        dark.media.as_deref(),
        Some("screen and (prefers-color-scheme:dark)")
    );
    let json = serde_json::to_value(&found.candidates).unwrap();
    assert!(
        json.as_array()
            .unwrap()
            .iter()
            .filter(|c| c["url"] != "http://dark.test/dark.svg")
            .all(|c| c.get("media").is_none()),
        "media is left out when none was declared: {json}"
    );
}

#[tokio::test]
async fn twenty_thousand_broken_links_still_reach_favicon_ico() {
    let mut page = String::from("<html><head>");
    for i in 0..20_000 {
        page.push_str(&format!("<link rel=icon href=/i{i}.png>"));
    }
    page.push_str("</head><body></body></html>");
    assert!(page.len() < page::HTML_CAP);
    let s = Server::start(move |r| match r.path.as_str() {
        "/" => html(&page),
        "/favicon.ico" => ok("image/x-icon", ico_bytes(&[32])),
        _ => status(404),
    })
    .await;
    let timeout = Duration::from_millis(5000);
    let f = Finder::new(config(s.port, true, timeout.as_millis() as u64)).unwrap();
    let t = Instant::now();
    let found = f.find("many.test").await.unwrap();
    assert!(t.elapsed() < timeout, "took {:?}", t.elapsed());
    assert_eq!(found.favicon_url, "http://many.test/favicon.ico");
    assert!(found.candidates.len() <= crate::clean::MAX_CANDIDATES);
    // 20,000 declared and /favicon.ico, of which MAX_CANDIDATES kept.
    assert_eq!(
        found.candidates.len() + found.candidates_dropped as usize,
        20_001
    );
    let icon_requests = s.paths().iter().filter(|p| p.contains("/i")).count();
    assert!(
        icon_requests <= 12,
        "{icon_requests} declared icons fetched"
    );
}

#[tokio::test]
async fn stalled_declared_icons_leave_time_for_favicon_ico() {
    let s = Server::start(|r| match r.path.as_str() {
        "/" => {
            let links: String = (0..20)
                .map(|i| format!("<link rel=icon href=/slow{i}.png>"))
                .collect();
            html(&format!("<head>{links}</head>"))
        }
        "/favicon.ico" => ok("image/x-icon", ico_bytes(&[16])),
        _ => Resp {
            status: 200,
            headers: vec![("Content-Type", "image/png".into())],
            body: Body::Drip,
        },
    })
    .await;
    let timeout = Duration::from_millis(4000);
    let f = Finder::new(config(s.port, true, timeout.as_millis() as u64)).unwrap();
    let t = Instant::now();
    let found = f.find("stall.test").await.unwrap();
    assert!(t.elapsed() < timeout, "took {:?}", t.elapsed());
    assert_eq!(found.favicon_url, "http://stall.test/favicon.ico");
}

#[tokio::test]
async fn huge_base_and_identical_links_are_bounded_and_fast() {
    let mut page = format!(
        "<html><head><base href=\"http://hostile.test/{}/\">",
        "b".repeat(100_000)
    );
    for _ in 0..20_000 {
        page.push_str(r#"<link rel="icon" href="i.png">"#);
    }
    page.push_str("</head><body></body></html>");
    let s = Server::start(move |r| match r.path.as_str() {
        "/" => html(&page),
        "/favicon.ico" => ok("image/x-icon", ico_bytes(&[16])),
        _ => status(404),
    })
    .await;
    let t = Instant::now();
    let found = find_on(&s, "hostile.test").await.unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "took {:?}",
        t.elapsed()
    );
    assert_eq!(found.favicon_url, "http://hostile.test/favicon.ico");
    assert_eq!(
        found.candidates_dropped, 1,
        "the one distinct link needs the unusable base"
    );
    assert!(
        found
            .candidates
            .iter()
            .all(|c| c.url.len() <= crate::clean::MAX_URL_BYTES)
    );
    assert!(s.paths().iter().all(|p| p.len() < 100), "{:?}", s.paths());
}

#[tokio::test]
async fn oversized_data_icon_is_never_chosen() {
    let big = format!(
        "data:image/png;base64,{}",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            png_bytes(64, 64)
                .into_iter()
                .chain(std::iter::repeat_n(0, crate::clean::MAX_DATA_URL_BYTES))
                .collect::<Vec<u8>>()
        )
    );
    let s = Server::start(move |r| match r.path.as_str() {
        "/" => html(&format!("<head><link rel=icon href=\"{big}\"></head>")),
        "/favicon.ico" => ok("image/x-icon", ico_bytes(&[16])),
        _ => status(404),
    })
    .await;
    let found = find_on(&s, "inline.test").await.unwrap();
    assert_eq!(found.favicon_url, "http://inline.test/favicon.ico");
    let data = found
        .candidates
        .iter()
        .find(|c| c.url.starts_with("data:"))
        .unwrap();
    assert!(data.url.len() <= 64, "{}", data.url);
    assert!(data.error.as_deref().unwrap().contains("cap"), "{data:?}");
    assert_eq!(data.mime, None);
}

#[tokio::test]
async fn page_over_the_parser_memory_limit_is_invalid_content() {
    let page = format!(
        "<html><head><meta name=x content=\"{}\"><link rel=icon href=/late.png></head>",
        "a".repeat(html::PARSER_MEMORY * 2)
    );
    let s = Server::start(move |r| match r.path.as_str() {
        "/" => html(&page),
        "/late.png" => ok("image/png", png_bytes(16, 16)),
        _ => status(404),
    })
    .await;
    let err = find_on(&s, "tagbomb.test").await.unwrap_err();
    assert_eq!(err.category, ErrorCategory::InvalidContent, "{err:?}");
    assert!(err.message.contains("memory limit"), "{}", err.message);
}

mod properties {
    //! Hostile bytes through every parser: no panic, and what comes out stays within the
    //! stated bounds. A fixed case budget keeps them to seconds in CI.
    use super::*;
    use crate::clean::{MAX_DATA_URL_BYTES, MAX_TOKEN_BYTES, MAX_URL_BYTES};
    use proptest::prelude::*;

    /// Pieces that steer random HTML into the extractor's interesting paths.
    fn html_piece() -> impl Strategy<Value = String> {
        let attr = "[ -~\\u{e9}\\u{0}\\t&#;x0-9a-z]{0,40}";
        prop_oneof![
            (
                prop_oneof![
                    Just("icon"),
                    Just("apple-touch-icon"),
                    Just("mask-icon"),
                    Just("manifest"),
                    Just("ICON shortcut")
                ],
                attr,
                attr,
                attr
            )
                .prop_map(|(rel, href, sizes, media)| format!(
                    "<link rel=\"{rel}\" href=\"{href}\" sizes='{sizes}' media={media}>"
                )),
            attr.prop_map(|h| format!("<base href=\"{h}\">")),
            attr.prop_map(|c| format!("<meta name=msapplication-TileImage content=\"{c}\">")),
            attr.prop_map(|c| format!("<meta http-equiv=refresh content='{c}'>")),
            Just("<template>".to_string()),
            Just("</template>".to_string()),
            Just("<noscript><link rel=icon href=/n.png></noscript>".to_string()),
            Just("</head><body>".to_string()),
            "[ -~]{0,30}",
        ]
    }

    fn check_candidates(c: &[Candidate]) {
        for c in c {
            let cap = if c.url.starts_with("data:") {
                MAX_DATA_URL_BYTES
            } else {
                MAX_URL_BYTES
            };
            assert!(c.url.len() <= cap, "{}", c.url.len());
            assert!(!c.url.contains('\0'));
            for t in [&c.declared_sizes, &c.declared_type, &c.media]
                .into_iter()
                .flatten()
            {
                assert!(t.len() <= MAX_TOKEN_BYTES && !t.contains('\0'), "{t:?}");
            }
        }
    }

    fn check_html(bytes: &[u8], chunk: usize) {
        let mut p = html::HeadParser::new(Some("utf-8"));
        for c in bytes.chunks(chunk.max(1)) {
            p.write(c);
        }
        let ex = p.finish();
        html::tests::assert_bounded(&ex);
        let page = Url::parse("https://x.test/a/b").unwrap();
        let d = links::candidates(&ex, &page);
        assert!(d.candidates.len() <= html::MAX_LINKS + html::MAX_TILES);
        assert!(d.manifests.len() <= html::MAX_MANIFEST_LINKS);
        check_candidates(&d.candidates);
        check_candidates(&links::noscript_candidates(&ex, &page));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn html_extractor_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..4096), chunk in 1usize..512) {
            check_html(&bytes, chunk);
        }

        #[test]
        fn html_extractor_on_tag_soup(pieces in proptest::collection::vec(html_piece(), 0..200), chunk in 1usize..512) {
            check_html(pieces.concat().as_bytes(), chunk);
        }

        #[test]
        fn manifest_parser(body in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..2048),
            proptest::collection::vec(
                ("[ -~\\u{0}]{0,30}", "[ -~\\u{0}]{0,30}", "(any|maskable|monochrome| ){0,3}")
                    .prop_map(|(src, sizes, purpose)| serde_json::json!({"src": src, "sizes": sizes, "type": sizes, "purpose": purpose})),
                0..80,
            )
            .prop_map(|icons| serde_json::to_vec(&serde_json::json!({ "icons": icons })).unwrap()),
        ]) {
            let base = Url::parse("https://x.test/m/site.webmanifest").unwrap();
            let (icons, _dropped) = manifest::icons(&body, &base);
            assert!(icons.len() <= manifest::MAX_MANIFEST_ICONS);
            check_candidates(&icons);
        }

        #[test]
        fn image_sniffing(
            prefix in prop_oneof![
                Just(b"".to_vec()),
                Just(b"\x89PNG\r\n\x1a\n".to_vec()),
                Just(vec![0u8, 0, 1, 0]),
                Just(b"GIF89a".to_vec()),
                Just(b"\xef\xbb\xbf<?xml version='1.0'?><svg ".to_vec()),
                Just(b"<svg width='".to_vec()),
            ],
            rest in proptest::collection::vec(any::<u8>(), 0..1024),
        ) {
            let bytes = [prefix, rest].concat();
            match image::sniff(&bytes) {
                Ok(info) => {
                    assert!(info.mime.starts_with("image/") && info.mime.len() <= MAX_TOKEN_BYTES);
                    let svg = info.mime == "image/svg+xml";
                    for side in [info.width, info.height] {
                        assert!(side <= image::MAX_SIDE);
                        assert!(side >= 2 || (svg && side == 0), "{info:?}");
                    }
                }
                Err(e) => assert!(e.len() <= crate::clean::MAX_MESSAGE_BYTES, "{e}"),
            }
        }
    }
}
