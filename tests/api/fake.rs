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
}

/// Sites by host, routes by path (the query string is ignored).
#[derive(Default, Clone)]
pub struct Sites {
    routes: HashMap<String, HashMap<String, Route>>,
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
}

#[derive(Default)]
struct Shared {
    sites: Sites,
    hits: Mutex<HashMap<(String, String), usize>>,
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
    let route = shared
        .sites
        .routes
        .get(&host)
        .and_then(|site| site.get(&path))
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
