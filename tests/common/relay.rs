//! A TCP relay on loopback that can cut every connection passing through it, as a network
//! failure would: clients see their sockets drop (no close frame, no FIN from the server) and
//! reconnect through the same relay, which keeps accepting.
#![allow(
    dead_code,
    reason = "each test binary uses a different part of the common modules"
)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A relay to one server; dropped, it stops accepting and cuts what is open.
pub struct Relay {
    addr: SocketAddr,
    cuts: watch::Sender<u64>,
    accepted: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    /// Starts relaying a new port on 127.0.0.1 to `target`.
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (cuts, _) = watch::channel(0u64);
        let accepted = Arc::new(AtomicUsize::new(0));
        let task = {
            let cuts = cuts.clone();
            let accepted = accepted.clone();
            tokio::spawn(async move {
                while let Ok((client, _)) = listener.accept().await {
                    accepted.fetch_add(1, Ordering::Relaxed);
                    let mut cut = cuts.subscribe();
                    cut.mark_unchanged();
                    tokio::spawn(async move {
                        let Ok(mut server) = TcpStream::connect(target).await else {
                            return;
                        };
                        let mut client = client;
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                            _ = cut.changed() => {
                                // A reset, not a clean close: what a dropped network looks like.
                                let _ = client.set_zero_linger();
                            }
                        }
                    });
                }
            })
        };
        Self {
            addr,
            cuts,
            accepted,
            task,
        }
    }

    /// `http://127.0.0.1:port` of the relay.
    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Cuts every connection open now; new ones are relayed as before.
    pub fn cut(&self) {
        self.cuts.send_modify(|n| *n += 1);
    }

    /// Connections accepted so far (a client that reconnected shows here).
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::Relaxed)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
        self.cut();
    }
}
