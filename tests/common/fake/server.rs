//! The fake internet's server: accepting HTTP, HTTPS and raw connections, answering by route.

use super::*;

pub(super) async fn accept(
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
pub(super) async fn accept_raw(listener: tokio::net::TcpListener, shared: Arc<Shared>) {
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
            let conn = stream.get_ref().1;
            let resumed = conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
            if let Some(host) = conn.server_name() {
                let mut handshakes = shared.handshakes.lock().unwrap();
                let entry = handshakes.entry(host.to_ascii_lowercase()).or_default();
                if resumed {
                    entry.1 += 1;
                } else {
                    entry.0 += 1;
                }
            }
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
    let switched = shared.switched.lock().unwrap().get(&key).cloned();
    let route = switched
        .as_ref()
        .or_else(|| shared.sites.browser_only.get(&key))
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
