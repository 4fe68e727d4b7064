//! A cable between a client (a browser, the npm graphql-ws client) and the app that a test
//! can pull: a TCP relay on loopback. Everything passes through until [`Cable::cut`], which
//! drops every open WebSocket connection at once, without a close frame (as a lost network or
//! a restarted proxy would), and fails new WebSocket handshakes for a while. Plain HTTP keeps
//! passing, so only the subscription feels the cut, and the app itself never learns it was a
//! test.
#![allow(
    dead_code,
    reason = "each test binary uses a different part of the common modules"
)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// The longest request head read to tell a WebSocket handshake from plain HTTP.
const MAX_HEAD: usize = 64 * 1024;

/// A relay in front of one app.
pub struct Cable {
    /// The relay's origin (`http://127.0.0.1:port`): the page is opened here.
    pub base: String,
    /// Bumped by every cut; each WebSocket relay ends when it changes.
    cuts: watch::Sender<u64>,
    /// Until when WebSocket handshakes fail.
    down_until: Arc<Mutex<Option<Instant>>>,
    /// WebSocket connections relayed so far (a client that came back shows here).
    websockets: Arc<AtomicUsize>,
    accept: tokio::task::JoinHandle<()>,
}

impl Cable {
    /// Starts a relay to the app whose base URL is `target` (`http://127.0.0.1:port`).
    pub async fn start(target: &str) -> Self {
        let target: SocketAddr = target.trim_start_matches("http://").parse().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (cuts, seen) = watch::channel(0);
        let down_until: Arc<Mutex<Option<Instant>>> = Arc::default();
        let down = down_until.clone();
        let websockets = Arc::new(AtomicUsize::new(0));
        let counted = websockets.clone();
        let accept = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let mut cuts = seen.clone();
                // Only cuts after this connection opened end it.
                cuts.borrow_and_update();
                tokio::spawn(relay(inbound, target, cuts, down.clone(), counted.clone()));
            }
        });
        Self {
            base,
            cuts,
            down_until,
            websockets,
            accept,
        }
    }

    /// `path` on the relay's origin.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// WebSocket connections relayed so far.
    pub fn websockets(&self) -> usize {
        self.websockets.load(Ordering::Relaxed)
    }

    /// Drops every open WebSocket connection now and fails new handshakes for `down`.
    pub fn cut(&self, down: Duration) {
        *self.down_until.lock().unwrap() = Some(Instant::now() + down);
        self.cuts.send_modify(|n| *n += 1);
    }
}

impl Drop for Cable {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Relays one connection; a WebSocket one until the next cut.
async fn relay(
    mut inbound: TcpStream,
    target: SocketAddr,
    mut cuts: watch::Receiver<u64>,
    down_until: Arc<Mutex<Option<Instant>>>,
    websockets: Arc<AtomicUsize>,
) {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_HEAD {
        match inbound.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let websocket = String::from_utf8_lossy(&head)
        .to_ascii_lowercase()
        .contains("upgrade: websocket");
    let down = down_until
        .lock()
        .unwrap()
        .is_some_and(|until| Instant::now() < until);
    if websocket && down {
        // Dropped unanswered: the handshake fails as on a dead network.
        return;
    }
    let Ok(mut outbound) = TcpStream::connect(target).await else {
        return;
    };
    if outbound.write_all(&head).await.is_err() {
        return;
    }
    if websocket {
        websockets.fetch_add(1, Ordering::Relaxed);
        tokio::select! {
            _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
            _ = cuts.changed() => {}
        }
    } else {
        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
    }
}
