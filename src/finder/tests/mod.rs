//! Whole-finder tests against tiny hand-written HTTP servers on 127.0.0.1, reached through
//! `ResolveRule { host: "*" }`; names are made up under `.test`, so nothing leaves the machine.
//! The servers speak plain HTTP only: the finder's first `https://` attempt hits a TLS
//! handshake that the server answers with an HTTP 400 (as nginx does), which exercises the
//! https→http fallback on every test.
//!
//! The tests are grouped by what they exercise; this file holds the server they share.

use super::image::tests::{gif_bytes, ico_bytes, png_bytes};
use super::*;
use std::sync::Mutex;
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use url::Url;

mod bounds;
mod choosing;
mod fetching;
mod pool;
mod properties;
mod safety;
pub(super) mod shapes;

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
    /// How long the server waits before answering.
    delay: Duration,
}

/// `resp`, answered only after `delay`: sites that take their time, and differ in it.
pub(crate) fn delayed(resp: Resp, delay: Duration) -> Resp {
    Resp { delay, ..resp }
}

pub(crate) fn ok(ctype: &str, body: impl Into<Vec<u8>>) -> Resp {
    Resp {
        status: 200,
        headers: vec![("Content-Type", ctype.into())],
        body: Body::Bytes(body.into()),
        delay: Duration::ZERO,
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
        delay: Duration::ZERO,
    }
}

/// Headers, then a byte now and then, forever: a fetch of it only ends at a deadline.
pub(crate) fn drip(ctype: &str) -> Resp {
    Resp {
        status: 200,
        headers: vec![("Content-Type", ctype.into())],
        body: Body::Drip,
        delay: Duration::ZERO,
    }
}

fn redirect(code: u16, to: &str) -> Resp {
    Resp {
        status: code,
        headers: vec![("Location", to.into())],
        body: Body::Bytes(Vec::new()),
        delay: Duration::ZERO,
    }
}

type Handler = Arc<dyn Fn(&Req) -> Resp + Send + Sync>;

pub(crate) struct Server {
    pub(crate) port: u16,
    requests: Arc<Mutex<Vec<Req>>>,
    /// The peer address of every connection accepted, in the order accepted.
    peers: Arc<Mutex<Vec<SocketAddr>>>,
    /// TLS handshakes attempted (each answered with a 400: the server speaks plain HTTP).
    pub(crate) tls_hellos: Arc<std::sync::atomic::AtomicUsize>,
}

impl Server {
    pub(crate) async fn start(h: impl Fn(&Req) -> Resp + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let peers = Arc::new(Mutex::new(Vec::new()));
        let h: Handler = Arc::new(h);
        let tls_hellos = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (reqs, accepted, hellos) = (requests.clone(), peers.clone(), tls_hellos.clone());
        tokio::spawn(async move {
            while let Ok((sock, peer)) = listener.accept().await {
                accepted.lock().unwrap().push(peer);
                let (h, reqs, hellos) = (h.clone(), reqs.clone(), hellos.clone());
                tokio::spawn(async move {
                    let serving = serve(sock, h, reqs, hellos);
                    let _ = tokio::time::timeout(Duration::from_secs(30), serving).await;
                });
            }
        });
        Self {
            port,
            requests,
            peers,
            tls_hellos,
        }
    }

    /// How many connections reached the server before this call. The server accepts in
    /// arrival order, so a probe connection made now is accepted after every earlier one:
    /// once the probe is in, the count before it is final, with no wait for something not to
    /// happen.
    pub(crate) async fn connections_before_now(&self) -> usize {
        let probe = TcpStream::connect(("127.0.0.1", self.port)).await.unwrap();
        let me = probe.local_addr().unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(at) = self.peers.lock().unwrap().iter().position(|p| *p == me) {
                return at;
            }
            assert!(Instant::now() < deadline, "the probe was never accepted");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    fn paths(&self) -> Vec<String> {
        let r = self.requests.lock().unwrap();
        r.iter().map(|r| format!("{}{}", r.host, r.path)).collect()
    }
}

async fn serve(
    mut sock: TcpStream,
    h: Handler,
    reqs: Arc<Mutex<Vec<Req>>>,
    hellos: Arc<std::sync::atomic::AtomicUsize>,
) {
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
            hellos.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
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
    tokio::time::sleep(resp.delay).await;
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
