//! Serving HTTP/1 with the timeouts `axum::serve` cannot set: the header-read timeout and an
//! idle timeout measured on the socket's own traffic, with graceful shutdown.

use axum::Router;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The HTTP connection timeouts `axum::serve` cannot set.
#[derive(Clone, Copy, Debug)]
pub struct HttpTimeouts {
    /// From waiting for a request (on a new or kept-alive connection) to having its headers.
    pub header: Duration,
    /// With no bytes either way for this long, the connection closes after any response in
    /// flight.
    pub idle: Duration,
    /// How long a connection may take to finish its response once the server stops
    /// (`SHUTDOWN_GRACE_SECS`); past it the connection is dropped.
    pub grace: Duration,
}

/// Serves `app` until `shutdown`, with the header-read and idle timeouts; the peer address
/// reaches handlers as `ConnectInfo`. On shutdown it stops accepting, lets each connection
/// finish its request in flight (hyper's graceful shutdown), and returns when all are closed.
/// Upgraded WebSockets leave hyper at the upgrade; they close on `AppState::shutdown`, and
/// `run_until_stopped` waits for them ([`WsConnections::drain`](super::ws::WsConnections::drain)).
pub async fn serve_http(
    listener: TcpListener,
    app: Router,
    timeouts: HttpTimeouts,
    shutdown: CancellationToken,
) {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use tower::Service;
    let mut make_service = app.into_make_service_with_connect_info::<SocketAddr>();
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(timeouts.header)
        .keep_alive(true);
    let builder = Arc::new(builder);
    let connections = tokio_util::task::TaskTracker::new();
    loop {
        let Some((stream, peer)) = accept(&listener, &shutdown).await else {
            break;
        };
        let Ok(service) = make_service.call(peer).await;
        let service = hyper_util::service::TowerToHyperService::new(service);
        let builder = builder.clone();
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            let traffic = Arc::new(Traffic::new());
            let io = TokioIo::new(Watched {
                inner: stream,
                traffic: traffic.clone(),
            });
            let conn = builder.serve_connection_with_upgrades(io, service);
            tokio::pin!(conn);
            // Once stopping, the response in flight gets until `hard_stop` to finish: a client
            // that never reads it would otherwise hold the connection, and the server's
            // shutdown, forever.
            let mut hard_stop: Option<Instant> = None;
            loop {
                let idle_deadline = traffic.last() + timeouts.idle;
                tokio::select! {
                    result = conn.as_mut() => {
                        if let Err(e) = result {
                            tracing::debug!(%peer, error = %e, "HTTP connection ended with an error");
                        }
                        break;
                    }
                    () = shutdown.cancelled(), if hard_stop.is_none() => {
                        conn.as_mut().graceful_shutdown();
                        hard_stop = Some(Instant::now() + timeouts.grace);
                    }
                    () = tokio::time::sleep_until(idle_deadline), if hard_stop.is_none() => {
                        if traffic.last() + timeouts.idle <= Instant::now() {
                            conn.as_mut().graceful_shutdown();
                            hard_stop = Some(Instant::now() + timeouts.idle);
                        }
                    }
                    () = tokio::time::sleep_until(hard_stop.unwrap_or_else(Instant::now)),
                        if hard_stop.is_some() =>
                    {
                        tracing::debug!(%peer, "HTTP connection dropped: its response did not finish in time");
                        break;
                    }
                }
            }
        });
    }
    drop(listener);
    connections.close();
    connections.wait().await;
}

/// The next connection, ready for small writes; `None` once `shutdown` is cancelled.
async fn accept(
    listener: &TcpListener,
    shutdown: &CancellationToken,
) -> Option<(TcpStream, SocketAddr)> {
    let (stream, peer) = loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => break accepted,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            () = shutdown.cancelled() => return None,
        }
    };
    // Subscription events are pushed one write each while earlier ones may still be
    // unacknowledged; Nagle's algorithm would hold them for the peer's delayed ACK.
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(error = %e, "cannot set TCP_NODELAY");
    }
    Some((stream, peer))
}

/// When a connection last moved bytes, either way.
struct Traffic {
    since: Instant,
    last_ms: AtomicU64,
}

impl Traffic {
    fn new() -> Self {
        Self {
            since: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        self.last_ms
            .store(self.since.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.since + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
}

/// A TCP stream that records its traffic, for the idle timeout.
struct Watched {
    inner: TcpStream,
    traffic: Arc<Traffic>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.traffic.touch();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.traffic.touch();
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.traffic.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
