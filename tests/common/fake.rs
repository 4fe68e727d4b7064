//! The tests' fake internet, for both test binaries: many sites behind one loopback port,
//! told apart by the Host header, over plain HTTP and HTTPS on the same port.
//!
//! The app reaches it through its `FETCH_RESOLVE` seam (`*=127.0.0.1:PORT`), so tests never
//! touch real DNS or the real network. Every request is counted per host and path, and per
//! scheme.
//!
//! HTTPS: a connection whose first byte is a TLS handshake record gets a certificate for the
//! name it asked for (SNI), issued by a test CA made once per test process
//! (tests/common/tls.rs). The app trusts that CA only when a test sets
//! `FETCH_EXTRA_ROOT_CERTS` to `ca_file()`; otherwise every https try fails with `tls` and the
//! finder falls back to http, as it does for a site without a certificate.
//!
//! The fault tests use [`Sites::every_host`]: every host answers its home page, so a job can
//! hold thousands of domains without a route per site.

#![allow(
    dead_code,
    reason = "each test binary uses a different part of this module"
)]

use crate::tls::TestCa;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use axum::response::Response;
use hyper_util::rt::TokioIo;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// One canned response.
#[derive(Clone, Debug)]
pub struct Route {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub delay: Duration,
}

impl Route {
    /// A response with a status, a content type and a body.
    pub fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        Self {
            status,
            headers: vec![("content-type".into(), content_type.into())],
            body: body.into(),
            delay: Duration::ZERO,
        }
    }

    /// A 200 HTML page.
    pub fn html(body: &str) -> Self {
        Self::new(200, "text/html; charset=utf-8", body)
    }

    /// A redirect to `location`.
    pub fn redirect(status: u16, location: &str) -> Self {
        Self {
            status,
            headers: vec![("location".into(), location.into())],
            body: Vec::new(),
            delay: Duration::ZERO,
        }
    }

    /// The same response with one more header.
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// The same response, sent only after `delay`.
    pub fn with_delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// `body` gzip-compressed, with `Content-Encoding: gzip`.
    pub fn gzip(content_type: &str, body: &[u8]) -> Self {
        use std::io::Write;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(body).unwrap();
        Self::new(200, content_type, enc.finish().unwrap()).with_header("content-encoding", "gzip")
    }

    /// `body` raw-deflate-compressed (no zlib header), with `Content-Encoding: deflate`: what
    /// some servers send for deflate.
    pub fn raw_deflate(content_type: &str, body: &[u8]) -> Self {
        use std::io::Write;
        let mut enc = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(body).unwrap();
        Self::new(200, content_type, enc.finish().unwrap())
            .with_header("content-encoding", "deflate")
    }

    /// `body` zlib-compressed, with `Content-Encoding: deflate` (what HTTP calls deflate).
    pub fn deflate(content_type: &str, body: &[u8]) -> Self {
        use std::io::Write;
        let mut enc = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(body).unwrap();
        Self::new(200, content_type, enc.finish().unwrap())
            .with_header("content-encoding", "deflate")
    }
}

/// Bodies a canned response cannot express: what hostile or broken servers send.
#[derive(Clone, Debug)]
pub enum Stream {
    /// This chunk again and again, forever, as fast as the client reads.
    Endless(Vec<u8>),
    /// One byte per second, forever.
    Drip,
    /// `total` bytes of this chunk repeated, announced by `Content-Length`.
    Sized { chunk: Vec<u8>, total: u64 },
}

/// Sites by host, routes by path (the query string is ignored).
#[derive(Default, Clone)]
pub struct Sites {
    routes: HashMap<String, HashMap<String, Route>>,
    /// Routes served only to browser-like requests (`Sec-Fetch-Mode` present); anything else
    /// gets a 403 "Just a moment..." challenge, as bot walls answer.
    browser_only: HashMap<(String, String), Route>,
    /// Streamed bodies, by host and path, with their content type.
    streams: HashMap<(String, String), (String, Stream)>,
    /// Hosts whose plain-HTTP requests are dropped unanswered (a closed connection, what a
    /// client sees from a host with nothing on port 80).
    https_only: HashSet<String>,
    /// Hosts whose TLS certificate names another host (a name mismatch).
    wrong_certificate: HashSet<String>,
    /// When set, any host without a route answers `GET /` after this delay
    /// ([`Sites::every_host`]).
    every_host: Option<Duration>,
    /// Hosts answered with these exact bytes, whatever was asked ([`Sites::raw`]).
    raw: HashMap<String, Vec<u8>>,
}

impl Sites {
    /// Every host answers its home page after `delay`, so a job of thousands of domains needs
    /// no route per site. A host named `noicon…` serves a page without an icon (its domain
    /// ends `failed`); any other host a page whose icon is an inline SVG, so a domain costs
    /// one request. The icon's width is ten times the number of that home page's request
    /// (10 for the first fetch, 20 for the second…), so a test can tell *which* fetch's
    /// outcome was recorded.
    pub fn every_host(delay: Duration) -> Self {
        Self {
            every_host: Some(delay),
            ..Self::default()
        }
    }

    /// Serves `route` at `host` and `path`.
    pub fn route(&mut self, host: &str, path: &str, route: Route) -> &mut Self {
        self.routes
            .entry(host.to_owned())
            .or_default()
            .insert(path.to_owned(), route);
        self
    }

    /// A site whose home page is `html`.
    pub fn page(&mut self, host: &str, html: &str) -> &mut Self {
        self.route(host, "/", Route::html(html))
    }

    /// A site whose home page declares `/i.png`, a real 16×16 PNG.
    pub fn icon_site(&mut self, host: &str) -> &mut Self {
        self.slow_icon_site(host, Duration::ZERO)
    }

    /// [`Sites::icon_site`] whose home page is answered only after `delay`.
    pub fn slow_icon_site(&mut self, host: &str, delay: Duration) -> &mut Self {
        self.route(
            host,
            "/",
            Route::html("<link rel=icon href=/i.png>").with_delay(delay),
        )
        .file(host, "/i.png", "image/png", &png(16, 16))
    }

    /// A file served with a content type.
    pub fn file(&mut self, host: &str, path: &str, content_type: &str, body: &[u8]) -> &mut Self {
        self.route(host, path, Route::new(200, content_type, body))
    }

    /// `route` for browser-like requests, a 403 challenge page for the rest (a bot wall).
    pub fn browser_only(&mut self, host: &str, path: &str, route: Route) -> &mut Self {
        self.browser_only
            .insert((host.to_owned(), path.to_owned()), route);
        self
    }

    /// A streamed body (endless, dripping or huge) served with a content type.
    pub fn stream(
        &mut self,
        host: &str,
        path: &str,
        content_type: &str,
        stream: Stream,
    ) -> &mut Self {
        self.streams.insert(
            (host.to_owned(), path.to_owned()),
            (content_type.to_owned(), stream),
        );
        self
    }

    /// `host` answers over HTTPS only: a plain-HTTP request is counted, then its connection
    /// is closed without an answer.
    pub fn https_only(&mut self, host: &str) -> &mut Self {
        self.https_only.insert(host.to_owned());
        self
    }

    /// `host` answers every plain-HTTP request with exactly `bytes` and hangs up: answers no
    /// HTTP library would send (NUL bytes in the reason phrase or a header). A TLS handshake
    /// is hung up on, so a client falls back to plain HTTP. These hosts sit on a listener of
    /// their own, which [`FakeInternet::resolve`] points them at.
    pub fn raw(&mut self, host: &str, bytes: &[u8]) -> &mut Self {
        self.raw.insert(host.to_owned(), bytes.to_vec());
        self
    }

    /// `host`'s TLS certificate is issued for another name (valid CA, wrong name).
    pub fn wrong_certificate(&mut self, host: &str) -> &mut Self {
        self.wrong_certificate.insert(host.to_owned());
        self
    }

    /// Every host that has at least one route.
    pub fn hosts(&self) -> Vec<String> {
        let mut hosts: Vec<String> = self
            .routes
            .keys()
            .cloned()
            .chain(self.browser_only.keys().map(|(h, _)| h.clone()))
            .chain(self.streams.keys().map(|(h, _)| h.clone()))
            .collect();
        hosts.sort();
        hosts.dedup();
        hosts
    }
}

/// Requests per (host, path).
type Counts = HashMap<(String, String), usize>;

#[derive(Default)]
struct Shared {
    sites: Sites,
    /// Routes set while running ([`FakeInternet::set_route`]), ahead of `sites`' own: a
    /// site that changes its icon, or starts or stops failing, between two fetches.
    switched: Mutex<HashMap<(String, String), Route>>,
    /// Requests seen, any scheme, counted on arrival.
    hits: Mutex<Counts>,
    /// The subset of `hits` that came over HTTPS.
    https_hits: Mutex<Counts>,
    /// Answers sent (after any delay).
    answered: Mutex<Counts>,
    /// Per host: requests being handled now, and the most ever at once.
    active: Mutex<HashMap<String, (usize, usize)>>,
    /// Across every host (the fake internet is one address): in flight now, and the most ever.
    active_total: Mutex<(usize, usize)>,
    /// Per host (its SNI name): TLS handshakes completed, full and resumed.
    handshakes: Mutex<HashMap<String, (usize, usize)>>,
}

/// Counts a request as in flight for its host until dropped.
struct InFlight {
    shared: Arc<Shared>,
    host: String,
}

impl InFlight {
    fn enter(shared: &Arc<Shared>, host: &str) -> Self {
        let mut active = shared.active.lock().unwrap();
        let entry = active.entry(host.to_owned()).or_default();
        entry.0 += 1;
        entry.1 = entry.1.max(entry.0);
        let mut total = shared.active_total.lock().unwrap();
        total.0 += 1;
        total.1 = total.1.max(total.0);
        Self {
            shared: shared.clone(),
            host: host.to_owned(),
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(entry) = self.shared.active.lock().unwrap().get_mut(&self.host) {
            entry.0 -= 1;
        }
        self.shared.active_total.lock().unwrap().0 -= 1;
    }
}

/// The test process's CA: made once, since issuing it costs a key generation per test.
fn test_ca() -> Arc<TestCa> {
    static CA: OnceLock<Arc<TestCa>> = OnceLock::new();
    CA.get_or_init(|| Arc::new(TestCa::new("favicon-finder test CA")))
        .clone()
}

/// The certificate by SNI, or another name's for the hosts that must mismatch.
#[derive(Debug)]
struct Certificates {
    ca: Arc<TestCa>,
    wrong: HashSet<String>,
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let name = hello.server_name()?;
        if self.wrong.contains(name) {
            self.ca.cert_for(&format!("not-{name}"))
        } else {
            self.ca.cert_for(name)
        }
    }
}

/// A running fake internet; it stops accepting connections when dropped.
pub struct FakeInternet {
    pub addr: SocketAddr,
    /// Where the [`Sites::raw`] hosts answer.
    raw_addr: SocketAddr,
    shared: Arc<Shared>,
    /// Holds `ca.pem`, the test CA a test hands the app to make HTTPS succeed.
    dir: tempfile::TempDir,
    servers: [tokio::task::JoinHandle<()>; 2],
}

impl FakeInternet {
    /// Serves `sites` on a fresh loopback port, over HTTP and HTTPS.
    pub async fn start(sites: Sites) -> Self {
        Self::start_at(sites, std::net::Ipv4Addr::LOCALHOST).await
    }

    /// [`FakeInternet::start`] on another loopback address (all of 127.0.0.0/8 is loopback):
    /// a server of its own as the finder's per-address politeness sees it, e.g. a CDN apart
    /// from the shared host of the sites that use it. [`FakeInternet::max_concurrent_total`]
    /// is then what that one address saw.
    pub async fn start_at(sites: Sites, ip: std::net::Ipv4Addr) -> Self {
        let ca = test_ca();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
        let certificates = Arc::new(Certificates {
            ca,
            wrong: sites.wrong_certificate.clone(),
        });
        // Issued now rather than during the first handshake, so a test's timings never
        // include minting a certificate.
        for host in sites.hosts() {
            certificates.ca.cert_for(&host);
        }
        let tls = tokio_rustls::TlsAcceptor::from(Arc::new(TestCa::server_config(certificates)));
        let shared = Arc::new(Shared {
            sites,
            ..Shared::default()
        });
        let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let raw = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let raw_addr = raw.local_addr().unwrap();
        let servers = [
            tokio::spawn(accept(listener, shared.clone(), tls)),
            tokio::spawn(accept_raw(raw, shared.clone())),
        ];
        Self {
            addr,
            raw_addr,
            shared,
            dir,
            servers,
        }
    }

    /// The [`Sites::raw`] hosts' rules, ahead of any other.
    fn raw_rules(&self) -> impl Iterator<Item = String> + '_ {
        let mut hosts: Vec<&String> = self.shared.sites.raw.keys().collect();
        hosts.sort();
        hosts
            .into_iter()
            .map(|host| format!("{host}={}", self.raw_addr))
    }

    /// From now on `host` answers `route` at `path`, whatever it was started with: the one
    /// way a test changes a site between fetches (a new icon, an outage, a recovery).
    pub fn set_route(&self, host: &str, path: &str, route: Route) {
        self.shared
            .switched
            .lock()
            .unwrap()
            .insert((host.to_owned(), path.to_owned()), route);
    }

    /// The test CA's certificate (PEM file): `FETCH_EXTRA_ROOT_CERTS` for a test whose app
    /// must trust this fake internet's HTTPS.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// `FETCH_RESOLVE` pointing every host here, after any `extra` host-specific rules.
    pub fn resolve(&self, extra: &[(&str, SocketAddr)]) -> String {
        let mut rules: Vec<String> = extra.iter().map(|(h, a)| format!("{h}={a}")).collect();
        rules.extend(self.raw_rules());
        rules.push(format!("*={}", self.addr));
        rules.join(",")
    }

    /// `FETCH_RESOLVE` naming each host of the sites (and `extra`), without a wildcard: any
    /// other name gets the finder's "does not resolve" answer (`.test` never reaches DNS).
    pub fn resolve_exact(&self, extra: &[(&str, SocketAddr)]) -> String {
        let mut rules: Vec<String> = extra.iter().map(|(h, a)| format!("{h}={a}")).collect();
        rules.extend(self.raw_rules());
        for host in self.shared.sites.hosts() {
            if !extra.iter().any(|(h, _)| *h == host) {
                rules.push(format!("{host}={}", self.addr));
            }
        }
        rules.join(",")
    }

    /// Requests seen for `host` and `path`, over either scheme.
    pub fn hits(&self, host: &str, path: &str) -> usize {
        count(&self.shared.hits, host, path)
    }

    /// Requests for `host` and `path` that came over HTTPS.
    pub fn https_hits(&self, host: &str, path: &str) -> usize {
        count(&self.shared.https_hits, host, path)
    }

    /// Answers sent for `host` and `path` (after any delay).
    pub fn answered(&self, host: &str, path: &str) -> usize {
        count(&self.shared.answered, host, path)
    }

    /// Home-page (`GET /`) requests that arrived, per host.
    pub fn arrived(&self) -> HashMap<String, usize> {
        self.shared
            .hits
            .lock()
            .unwrap()
            .iter()
            .filter(|((_, path), _)| path == "/")
            .map(|((host, _), n)| (host.clone(), *n))
            .collect()
    }

    /// TLS handshakes completed for `host` (its SNI name): full ones, and resumed ones.
    pub fn tls_handshakes(&self, host: &str) -> (usize, usize) {
        self.shared
            .handshakes
            .lock()
            .unwrap()
            .get(host)
            .copied()
            .unwrap_or_default()
    }

    /// The most requests to `host` the fake internet was handling at once.
    pub fn max_concurrent(&self, host: &str) -> usize {
        self.shared
            .active
            .lock()
            .unwrap()
            .get(host)
            .map_or(0, |(_, max)| *max)
    }

    /// The requests to `host` the fake internet is handling right now.
    pub fn in_flight(&self, host: &str) -> usize {
        self.shared
            .active
            .lock()
            .unwrap()
            .get(host)
            .map_or(0, |(now, _)| *now)
    }

    /// The most requests in flight at once across every host.
    pub fn max_concurrent_total(&self) -> usize {
        self.shared.active_total.lock().unwrap().1
    }

    /// Requests seen, any host and path.
    pub fn host_hits_total(&self) -> usize {
        self.shared.hits.lock().unwrap().values().sum()
    }

    /// Requests seen for `host`, any path.
    pub fn host_hits(&self, host: &str) -> usize {
        self.shared
            .hits
            .lock()
            .unwrap()
            .iter()
            .filter(|((h, _), _)| h == host)
            .map(|(_, n)| n)
            .sum()
    }
}

impl Drop for FakeInternet {
    fn drop(&mut self) {
        for server in &self.servers {
            server.abort();
        }
    }
}

fn count(counts: &Mutex<Counts>, host: &str, path: &str) -> usize {
    counts
        .lock()
        .unwrap()
        .get(&(host.to_owned(), path.to_owned()))
        .copied()
        .unwrap_or(0)
}

mod server;
use server::{accept, accept_raw};

mod names;
#[allow(
    unused_imports,
    reason = "each test binary uses a different part of this module"
)]
pub use names::NameServer;

/// A loopback address that refuses every connection, for as long as the test process lives.
///
/// A socket is bound to it and never listens: the kernel answers a connection attempt with a
/// reset (connection refused), and since the port stays bound no other test can be handed it
/// and start answering. (Binding a listener, dropping it and reusing its number is a race.)
pub async fn dead_addr() -> SocketAddr {
    static REFUSING: OnceLock<(tokio::net::TcpSocket, SocketAddr)> = OnceLock::new();
    REFUSING
        .get_or_init(|| {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.bind(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
            let addr = socket.local_addr().unwrap();
            (socket, addr)
        })
        .1
}

mod images;
#[allow(
    unused_imports,
    reason = "each test binary uses a different part of this module"
)]
pub use images::{bomb_png, gif, hostile_svg, huge_svg, ico, png, png_claiming, svg, webp};
