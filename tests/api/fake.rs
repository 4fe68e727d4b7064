//! A fake internet on loopback: many sites behind one port, told apart by the Host header.
//!
//! The app reaches it through its `FETCH_RESOLVE` seam (`*=127.0.0.1:PORT`), so tests never
//! touch real DNS or the real network. Every request is counted per host and path.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Request, StatusCode, header};
use axum::response::Response;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
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
    pub fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        Self {
            status,
            headers: vec![("content-type".into(), content_type.into())],
            body: body.into(),
            delay: Duration::ZERO,
        }
    }

    pub fn html(body: &str) -> Self {
        Self::new(200, "text/html; charset=utf-8", body)
    }

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
}

impl Sites {
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

#[derive(Default)]
struct Shared {
    sites: Sites,
    hits: Mutex<HashMap<(String, String), usize>>,
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

/// A running fake internet.
pub struct FakeInternet {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
}

impl FakeInternet {
    pub async fn start(sites: Sites) -> Self {
        let shared = Arc::new(Shared {
            sites,
            hits: Mutex::new(HashMap::new()),
            active: Mutex::new(HashMap::new()),
            active_total: Mutex::new((0, 0)),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new()
            .fallback(serve)
            .with_state(shared.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, shared }
    }

    /// `FETCH_RESOLVE` pointing every host here, after any `extra` host-specific rules.
    pub fn resolve(&self, extra: &[(&str, SocketAddr)]) -> String {
        let mut rules: Vec<String> = extra.iter().map(|(h, a)| format!("{h}={a}")).collect();
        rules.push(format!("*={}", self.addr));
        rules.join(",")
    }

    /// `FETCH_RESOLVE` naming each host of the sites (and `extra`), without a wildcard: any
    /// other name gets the finder's "does not resolve" answer (`.test` never reaches DNS).
    pub fn resolve_exact(&self, extra: &[(&str, SocketAddr)]) -> String {
        let mut rules: Vec<String> = extra.iter().map(|(h, a)| format!("{h}={a}")).collect();
        for host in self.shared.sites.hosts() {
            if !extra.iter().any(|(h, _)| *h == host) {
                rules.push(format!("{host}={}", self.addr));
            }
        }
        rules.join(",")
    }

    /// Requests seen for `host` and `path`.
    pub fn hits(&self, host: &str, path: &str) -> usize {
        self.shared
            .hits
            .lock()
            .unwrap()
            .get(&(host.to_owned(), path.to_owned()))
            .copied()
            .unwrap_or(0)
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

async fn serve(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    request: Request<Body>,
) -> Response {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("")
        .split(':')
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    let path = request.uri().path().to_owned();
    *shared
        .hits
        .lock()
        .unwrap()
        .entry((host.clone(), path.clone()))
        .or_default() += 1;
    let _in_flight = InFlight::enter(&shared, &host);
    let key = (host.clone(), path.clone());
    if let Some((content_type, stream)) = shared.sites.streams.get(&key) {
        return streamed(content_type, stream.clone());
    }
    let browser_like = headers.contains_key("sec-fetch-mode");
    if shared.sites.browser_only.contains_key(&key) && !browser_like {
        return Response::builder()
            .status(StatusCode::FORBIDDEN)
            .header("content-type", "text/html")
            .body(Body::from(
                "<html><head><title>Just a moment...</title></head><body>Checking your browser</body></html>",
            ))
            .unwrap();
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
        .cloned();
    let Some(route) = route else {
        return Response::builder()
            .status(StatusCode::NOT_FOUND)
            .header("content-type", "text/html")
            .body(Body::from("<html><body>Not found</body></html>"))
            .unwrap();
    };
    if !route.delay.is_zero() {
        tokio::time::sleep(route.delay).await;
    }
    let mut response = Response::builder().status(route.status);
    for (k, v) in &route.headers {
        response = response.header(k, v);
    }
    response.body(Body::from(route.body)).unwrap()
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

/// A closed port on loopback: connections are refused.
pub async fn dead_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    addr
}

/// A real, decodable RGBA PNG of `width`×`height` (stored deflate blocks, so no compressor
/// is needed).
pub fn png(width: u32, height: u32) -> Vec<u8> {
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut crc_input = kind.to_vec();
        crc_input.extend_from_slice(data);
        out.extend_from_slice(&crc_input);
        out.extend_from_slice(&crc32(&crc_input).to_be_bytes());
    }
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
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 6, 0, 0, 0]);
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(&mut out, b"IDAT", &z);
    chunk(&mut out, b"IEND", &[]);
    out
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
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut chunk = |kind: &[u8; 4], data: &[u8]| {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut crc_input = kind.to_vec();
        crc_input.extend_from_slice(data);
        out.extend_from_slice(&crc_input);
        out.extend_from_slice(&crc32(&crc_input).to_be_bytes());
    };
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 6, 0, 0, 0]);
    chunk(b"IHDR", &ihdr);
    chunk(
        b"IDAT",
        &[0x78, 0x01, 0x01, 0x00, 0x00, 0xff, 0xff, 0, 0, 0, 1],
    );
    chunk(b"IEND", &[]);
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
