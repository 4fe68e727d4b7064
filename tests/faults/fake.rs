//! A fake internet on loopback for the fault tests: every host answers, so a job can hold
//! thousands of domains without a route per site.
//!
//! Only what the fault tests measure is here (tests/api/fake.rs has the full router):
//!
//! - a host named `noicon…` serves a page without an icon (its domain ends `failed`), any
//!   other host a page whose icon is an inline SVG, so a domain costs one request;
//! - the icon's width is ten times the number of the request for that home page (10 for the
//!   first fetch, 20 for the second…), so a test can tell *which* fetch's outcome was recorded;
//! - every `GET /` that reaches the handler is counted per host on arrival, and again when
//!   its answer is sent (after the optional delay). The finder tries https first, which this
//!   plain-HTTP server sees as a garbage request that never reaches the handler, so the counts
//!   are exactly the home-page fetches.

use axum::body::Body;
use axum::extract::State;
use axum::http::{Request, StatusCode, header};
use axum::response::Response;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Default)]
struct Counts {
    /// `GET /` requests per host, counted on arrival.
    arrived: HashMap<String, usize>,
    /// `GET /` answers per host, counted when sent.
    answered: HashMap<String, usize>,
}

struct Shared {
    delay: Duration,
    counts: Mutex<Counts>,
}

/// A running fake internet.
pub struct FakeInternet {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl FakeInternet {
    /// Starts a server whose home pages answer after `delay`.
    pub async fn start(delay: Duration) -> Self {
        let shared = Arc::new(Shared {
            delay,
            counts: Mutex::new(Counts::default()),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new()
            .fallback(serve)
            .with_state(shared.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            addr,
            shared,
            server,
        }
    }

    /// `FETCH_RESOLVE` sending every host here.
    pub fn resolve(&self) -> String {
        format!("*={}", self.addr)
    }

    /// Home-page requests that arrived, per host.
    pub fn arrived(&self) -> HashMap<String, usize> {
        self.shared.counts.lock().unwrap().arrived.clone()
    }

    /// Home-page answers sent for `host`.
    pub fn answered(&self, host: &str) -> usize {
        let counts = self.shared.counts.lock().unwrap();
        counts.answered.get(host).copied().unwrap_or(0)
    }
}

impl Drop for FakeInternet {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn serve(State(shared): State<Arc<Shared>>, request: Request<Body>) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("")
        .split(':')
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    if request.uri().path() != "/" {
        return Response::builder()
            .status(StatusCode::NOT_FOUND)
            .header("content-type", "text/html")
            .body(Body::from("<html><body>Not found</body></html>"))
            .unwrap();
    }
    let nth = {
        let mut counts = shared.counts.lock().unwrap();
        let n = counts.arrived.entry(host.clone()).or_default();
        *n += 1;
        *n
    };
    if !shared.delay.is_zero() {
        tokio::time::sleep(shared.delay).await;
    }
    let body = if host.starts_with("noicon") {
        "<html><head><title>no icon here</title></head></html>".to_owned()
    } else {
        let w = 10 * nth;
        format!(
            "<html><head><link rel=icon href=\"data:image/svg+xml,%3Csvg%20xmlns='http://www.w3.org/2000/svg'%20width='{w}'%20height='{w}'%3E%3C/svg%3E\"></head></html>"
        )
    };
    *shared
        .counts
        .lock()
        .unwrap()
        .answered
        .entry(host)
        .or_default() += 1;
    Response::builder()
        .header("content-type", "text/html; charset=utf-8")
        .body(Body::from(body))
        .unwrap()
}
