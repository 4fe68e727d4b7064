//! The fake internet on loopback: the sites' HTTP/HTTPS servers, their PNGs and request counters.

use super::*;

// ---------------------------------------------------------------------------------------------
// The fake internet
// ---------------------------------------------------------------------------------------------

pub(crate) const HOME: &str = "<!doctype html><html><head><meta charset=\"utf-8\"><title>A bench site</title>\
<link rel=\"icon\" href=\"/favicon.png\"></head><body><h1>Hello</h1><p>A synthetic site.</p></body></html>";

/// `png` with a `tEXt` chunk naming site `i` before its `IEND`: the same picture, other bytes.
pub(crate) fn distinct_png(png: &[u8], i: usize) -> Bytes {
    let (body, iend) = png.split_at(png.len() - 12);
    let data = format!("site\0{i}");
    let mut out = body.to_vec();
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let mut crc = flate2::Crc::new();
    crc.update(b"tEXt");
    crc.update(data.as_bytes());
    out.extend_from_slice(b"tEXt");
    out.extend_from_slice(data.as_bytes());
    out.extend_from_slice(&crc.sum().to_be_bytes());
    out.extend_from_slice(iend);
    Bytes::from(out)
}

/// A real 32×32 RGBA PNG (zlib IDAT, CRCs from flate2).
pub(crate) fn png32() -> Vec<u8> {
    use std::io::Write;
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut crc = flate2::Crc::new();
        crc.update(kind);
        crc.update(data);
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        out.extend_from_slice(&crc.sum().to_be_bytes());
    }
    let (w, h) = (32u32, 32u32);
    let mut raw = Vec::new();
    for y in 0..h {
        raw.push(0);
        for x in 0..w {
            raw.extend_from_slice(&[(x * 8) as u8, (y * 8) as u8, 0x80, 0xff]);
        }
    }
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(&raw).unwrap();
    let idat = z.finish().unwrap();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 6, 0, 0, 0]);
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(&mut out, b"IDAT", &idat);
    chunk(&mut out, b"IEND", &[]);
    out
}

#[derive(Default)]
struct Counters {
    pub(crate) connections: AtomicU64,
    pub(crate) http: AtomicU64,
    home: AtomicU64,
    icon: AtomicU64,
    other: AtomicU64,
    pub(crate) tls_refused: AtomicU64,
    pub(crate) tls_ok: AtomicU64,
}

#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Snapshot {
    pub(crate) connections: u64,
    pub(crate) http: u64,
    home: u64,
    icon: u64,
    other: u64,
    pub(crate) tls_refused: u64,
    pub(crate) tls_ok: u64,
}

impl Snapshot {
    pub(crate) fn minus(self, b: Snapshot) -> Snapshot {
        Snapshot {
            connections: self.connections - b.connections,
            http: self.http - b.http,
            home: self.home - b.home,
            icon: self.icon - b.icon,
            other: self.other - b.other,
            tls_refused: self.tls_refused - b.tls_refused,
            tls_ok: self.tls_ok - b.tls_ok,
        }
    }
}

pub(crate) struct Net {
    counters: Counters,
    pub(crate) latency: Duration,
    tls: Option<TlsAcceptor>,
    gate: watch::Receiver<bool>,
    /// First icon request per site index, unix µs (0 = not yet).
    pub(crate) icon_seen: Vec<AtomicI64>,
    home: Bytes,
    pub(crate) png: Bytes,
    /// Each site's icon differs (a text chunk naming the site), so none is deduplicated.
    pub(crate) distinct_icons: std::sync::atomic::AtomicBool,
    /// Hosts with behaviours of their own, instead of every `siteN.bench` answering alike.
    web: Option<Web>,
}

/// A web whose hosts behave each in its own way, served instead of the plain sites.
#[derive(Clone)]
pub(crate) enum Web {
    /// The slow web of `slow-web`: hosts on many addresses, a listener per address.
    Slow(Arc<slow_web::Web>),
    /// The web of `two-clients`: every name on the one address, told apart by `Host`.
    Clients(Arc<two_clients::Web>),
}

pub(crate) struct FakeInternet {
    pub(crate) net: Arc<Net>,
    pub(crate) port: u16,
    /// Also listening on 127.0.0.1:80 and :443 (for the peer).
    pub(crate) low_ports: bool,
    gate_tx: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    pub(crate) ca_file: Option<PathBuf>,
    /// The slow web's listeners: one port per address.
    web_ports: Vec<(std::net::IpAddr, u16)>,
}

impl Drop for FakeInternet {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

pub(crate) struct NetOpts {
    pub(crate) tls: bool,
    pub(crate) latency: Duration,
    pub(crate) sites: usize,
    pub(crate) low_ports: bool,
    pub(crate) gated: bool,
    /// Serve this web (the slow web: a listener per address, besides the one address).
    pub(crate) web: Option<Web>,
}

impl FakeInternet {
    pub(crate) async fn start(o: NetOpts, dir: &Path) -> Result<Self> {
        let (tls, ca_file) = if o.tls {
            let certs = Arc::new(TestCa::new("favicon-finder bench CA"));
            let pem = certs.pem().to_owned();
            let started = Instant::now();
            let warm = certs.clone();
            let n = o.sites;
            // Issue every site's certificate before timing anything.
            tokio::task::spawn_blocking(move || {
                for d in domains(n) {
                    warm.cert_for(&d);
                }
            })
            .await?;
            eprintln!(
                "  fake internet: {} certificates issued in {:.1}s",
                o.sites,
                started.elapsed().as_secs_f64()
            );
            let path = dir.join("bench-ca.pem");
            std::fs::write(&path, pem)?;
            let cfg = TestCa::server_config(certs);
            (Some(TlsAcceptor::from(Arc::new(cfg))), Some(path))
        } else {
            (None, None)
        };
        let (gate_tx, gate) = watch::channel(!o.gated);
        let net = Arc::new(Net {
            counters: Counters::default(),
            latency: o.latency,
            tls,
            gate,
            icon_seen: (0..o.sites.max(1)).map(|_| AtomicI64::new(0)).collect(),
            home: Bytes::from_static(HOME.as_bytes()),
            png: Bytes::from(png32()),
            distinct_icons: std::sync::atomic::AtomicBool::new(false),
            web: o.web.clone(),
        });
        let main = TcpListener::bind("127.0.0.1:0").await?;
        let port = main.local_addr()?.port();
        let mut tasks = vec![tokio::spawn(accept_loop(main, net.clone()))];
        let mut web_ports = Vec::new();
        let slow = match &o.web {
            Some(Web::Slow(w)) => Some(w),
            _ => None,
        };
        for addr in slow.iter().flat_map(|w| w.addresses()) {
            let l = listen_wide(addr).with_context(|| format!("binding {addr}"))?;
            web_ports.push((addr, l.local_addr()?.port()));
            tasks.push(tokio::spawn(accept_loop(l, net.clone())));
        }
        let mut low_ports = false;
        if o.low_ports {
            match (
                TcpListener::bind("127.0.0.1:80").await,
                TcpListener::bind("127.0.0.1:443").await,
            ) {
                (Ok(a), Ok(b)) => {
                    tasks.push(tokio::spawn(accept_loop(a, net.clone())));
                    tasks.push(tokio::spawn(accept_loop(b, net.clone())));
                    low_ports = true;
                }
                _ => eprintln!("  fake internet: 127.0.0.1:80/443 busy; the peer uses {port}"),
            }
        }
        Ok(Self {
            net,
            port,
            low_ports,
            gate_tx,
            tasks,
            ca_file,
            web_ports,
        })
    }

    pub(crate) fn resolve(&self) -> String {
        match &self.net.web {
            Some(Web::Slow(web)) => web.resolve(&self.web_ports),
            _ => format!("*=127.0.0.1:{}", self.port),
        }
    }

    /// Whether every site is on one address (every net but the slow web).
    pub(crate) fn one_address(&self) -> bool {
        !matches!(self.net.web, Some(Web::Slow(_)))
    }

    pub(crate) fn open_gate(&self) {
        let _ = self.gate_tx.send(true);
    }

    pub(crate) fn snapshot(&self) -> Snapshot {
        let c = &self.net.counters;
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Snapshot {
            connections: l(&c.connections),
            http: l(&c.http),
            home: l(&c.home),
            icon: l(&c.icon),
            other: l(&c.other),
            tls_refused: l(&c.tls_refused),
            tls_ok: l(&c.tls_ok),
        }
    }
}

/// Connections waiting to be accepted at one of the slow web's listeners: the kernel's
/// ceiling (`net.core.somaxconn`, 4096 here). With tokio's 1,024, the `concurrency` sweep's
/// thousands of names on one address overflowed the queue when a level started, and every
/// dropped SYN cost its domain a second's retransmission (`TcpExtListenOverflows`).
const WIDE_BACKLOG: u32 = 4096;

/// A listener on `addr` (any port) with [`WIDE_BACKLOG`].
fn listen_wide(addr: std::net::IpAddr) -> std::io::Result<TcpListener> {
    let socket = match addr {
        std::net::IpAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        std::net::IpAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.bind((addr, 0).into())?;
    socket.listen(WIDE_BACKLOG)
}

async fn accept_loop(listener: TcpListener, net: Arc<Net>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let net = net.clone();
                tokio::spawn(async move {
                    let _ = serve_conn(stream, net).await;
                });
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
}

async fn serve_conn(stream: TcpStream, net: Arc<Net>) -> Result<()> {
    stream.set_nodelay(true)?;
    net.counters.connections.fetch_add(1, Ordering::Relaxed);
    // Which of the slow web's addresses the service connected to.
    let local = stream.local_addr()?.ip();
    if let Some(Web::Slow(web)) = &net.web
        && web.is_silent(local)
    {
        web.hold(stream, local).await;
        return Ok(());
    }
    let mut first = [0u8; 1];
    let n = tokio::time::timeout(Duration::from_secs(30), stream.peek(&mut first)).await??;
    if n == 0 {
        return Ok(());
    }
    if first[0] == 0x16 {
        let Some(acceptor) = &net.tls else {
            // Plain mode: a TLS ClientHello is refused at once, so https fails fast.
            net.counters.tls_refused.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        };
        let tls = acceptor.accept(stream).await?;
        net.counters.tls_ok.fetch_add(1, Ordering::Relaxed);
        serve_http(TokioIo::new(tls), net, local).await
    } else {
        serve_http(TokioIo::new(stream), net, local).await
    }
}

async fn serve_http<I>(io: I, net: Arc<Net>, local: std::net::IpAddr) -> Result<()>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |req| {
        let net = net.clone();
        async move { Ok::<_, Infallible>(handle(req, &net, local).await) }
    });
    hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .keep_alive(true)
        .serve_connection(io, svc)
        .await?;
    Ok(())
}

async fn handle(
    req: hyper::Request<Incoming>,
    net: &Net,
    local: std::net::IpAddr,
) -> hyper::Response<Full<Bytes>> {
    let c = &net.counters;
    c.http.fetch_add(1, Ordering::Relaxed);
    // In flight from its arrival, the wait at the gate included: the service holds its
    // per-address slot all that time too.
    let _in_flight = match &net.web {
        Some(Web::Slow(w)) => Some(w.enter(local)),
        _ => None,
    };
    if !*net.gate.borrow() {
        let mut g = net.gate.clone();
        let _ = g.wait_for(|open| *open).await;
    }
    if !net.latency.is_zero() {
        tokio::time::sleep(net.latency).await;
    }
    let host = req
        .headers()
        .get(hyper::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let (status, ctype, body) = if let Some(Web::Slow(web)) = &net.web {
        web.answer(host, req.uri().path()).await
    } else if let Some(Web::Clients(web)) = &net.web {
        web.answer(host, req.uri().path()).await
    } else {
        match req.uri().path() {
            "/" => {
                c.home.fetch_add(1, Ordering::Relaxed);
                (200, "text/html; charset=utf-8", net.home.clone())
            }
            "/favicon.png" => {
                c.icon.fetch_add(1, Ordering::Relaxed);
                if let Some(slot) = site_index(host).and_then(|i| net.icon_seen.get(i)) {
                    let _ =
                        slot.compare_exchange(0, unix_us(), Ordering::Relaxed, Ordering::Relaxed);
                }
                let png = match site_index(host) {
                    Some(i) if net.distinct_icons.load(Ordering::Relaxed) => {
                        distinct_png(&net.png, i)
                    }
                    _ => net.png.clone(),
                };
                (200, "image/png", png)
            }
            _ => {
                c.other.fetch_add(1, Ordering::Relaxed);
                (404, "text/plain", Bytes::from_static(b"not found"))
            }
        }
    };
    hyper::Response::builder()
        .status(status)
        .header("content-type", ctype)
        .body(Full::new(body))
        .unwrap()
}
