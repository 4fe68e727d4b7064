//! The HTTP side: manual redirects, politeness slots, capped body reads and the classification
//! of failures into [`ErrorCategory`].
//!
//! Names are resolved and guarded by [`GuardedResolver`] (see `resolve`), which reqwest's
//! connector uses, so the addresses checked are the ones connected to. IP-literal URL hosts
//! never reach a resolver, so [`Fetcher::check_url`] checks them before every request,
//! together with the scheme and the port.

use super::clock::{Deadline, WaitedTooLong};
use super::resolve::{GuardedResolver, ResolveError, is_public};
use super::{ErrorCategory, FinderConfig};
use reqwest::header::{self, HeaderMap, HeaderValue};
use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;
use url::{Host, Url};

mod classify;
mod connect_span;
mod inflate;
mod slots;
pub use classify::classify;
use classify::malformed_answer;
use inflate::Inflate;
use slots::Slots;
pub use slots::{FleetSlot, FleetSlots};

/// No single request may take longer than this, whatever the remaining budget.
pub const MAX_REQUEST_TIME: Duration = Duration::from_secs(10);
/// Header lines an answer may carry. hyper's default of 100 refuses real sites that repeat a
/// header a few hundred times, which browsers (that count bytes, not lines) read; the bytes of
/// the header section stay bounded by hyper's read buffer (about 400 KiB).
pub const MAX_RESPONSE_HEADERS: usize = 512;
/// How long a finished request's connection waits for the same site's next request (its
/// icon after its page). hyper-util reaps idle connections every `max(this, 90 ms)`.
const POOL_IDLE: Duration = Duration::from_millis(100);
/// The encodings offered. `deflate` is decoded here, not by reqwest (see [`Inflate`]).
const ACCEPT_ENCODING: &str = "gzip, deflate, br";

/// A classified failure, with the origin that did answer when there was one (so that its
/// `/favicon.ico` can still be tried).
#[derive(Debug, Clone)]
pub struct FetchError {
    /// The category.
    pub category: ErrorCategory,
    /// What happened.
    pub message: String,
    /// An origin that connected and answered before the failure (e.g. a redirect loop).
    pub origin: Option<Url>,
}

impl FetchError {
    /// A failure without an origin.
    pub fn new(category: ErrorCategory, message: impl Into<String>) -> Self {
        Self {
            category,
            message: message.into(),
            origin: None,
        }
    }
}

/// A response after redirects, body not yet read.
pub struct Opened {
    /// The URL that answered (after redirects).
    pub url: Url,
    /// The response, body unread.
    pub resp: reqwest::Response,
    /// When this request must be over (body included).
    pub until: Instant,
    /// This request's slots with its host and its address, held until the body is read and
    /// dropped.
    _slots: Held,
    /// The decoder of a `Content-Encoding: deflate` body.
    inflate: Option<Inflate>,
}

/// The slots one request holds: this process's, with its host and its address, and the
/// fleet's when the process is one of a fleet.
struct Held {
    _host: OwnedSemaphorePermit,
    _address: OwnedSemaphorePermit,
    _fleet: Option<FleetSlot>,
}

/// The reqwest client with the guard, plus what requests need to know.
pub struct Fetcher {
    client: reqwest::Client,
    allow_private: bool,
    /// The resolver reqwest connects through, also asked by [`Fetcher::open`] for the address
    /// whose slot a request takes.
    resolver: GuardedResolver,
    host_slots: Slots<String>,
    address_slots: Slots<IpAddr>,
    /// The fleet's slots, taken after this process's own; `None` on the embedded default.
    fleet: Option<Arc<dyn FleetSlots>>,
    /// Hosts to fetch over http first, shared by every find of this process.
    pub(super) https_refusals: super::refusals::HttpsRefusals,
}

/// Browser-like headers for the one retry after a 403/503 (bot walls look at these).
fn browser_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        header::ACCEPT,
        HeaderValue::from_static(
            "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8",
        ),
    );
    h.insert(
        header::ACCEPT_LANGUAGE,
        HeaderValue::from_static("en-US,en;q=0.9"),
    );
    h.insert(
        header::UPGRADE_INSECURE_REQUESTS,
        HeaderValue::from_static("1"),
    );
    h.insert("sec-fetch-dest", HeaderValue::from_static("document"));
    h.insert("sec-fetch-mode", HeaderValue::from_static("navigate"));
    h.insert("sec-fetch-site", HeaderValue::from_static("none"));
    h
}

/// The CAs of the PEM file `path` (`FETCH_EXTRA_ROOT_CERTS`), trusted beside the system's by
/// the fetches and the webhook deliveries; read at start, so a bad file stops the start.
pub fn extra_root_certs(path: &std::path::Path) -> anyhow::Result<Vec<reqwest::Certificate>> {
    let pem = std::fs::read(path).map_err(|e| {
        anyhow::anyhow!(
            "cannot read extra root certificates {}: {e}",
            path.display()
        )
    })?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
        anyhow::anyhow!("bad PEM in extra root certificates {}: {e}", path.display())
    })?;
    if certs.is_empty() {
        anyhow::bail!("no certificate found in {}", path.display());
    }
    Ok(certs)
}

impl Fetcher {
    /// Builds the client; extra root certificates are read here so a bad file fails at start.
    pub fn new(config: &FinderConfig) -> anyhow::Result<Self> {
        Self::build(config, GuardedResolver::new(config)?)
    }

    /// Test-only: a fetcher whose `trusted` hosts' rule addresses skip the guard (see
    /// [`GuardedResolver`]); everything else is guarded as in production.
    #[cfg(test)]
    pub(crate) fn new_trusting(config: &FinderConfig, trusted: &[&str]) -> anyhow::Result<Self> {
        let trusted = trusted.iter().map(|h| h.to_string()).collect();
        Self::build(config, GuardedResolver::with_trusted(config, trusted)?)
    }

    fn build(config: &FinderConfig, resolver: GuardedResolver) -> anyhow::Result<Self> {
        let mut b = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(Arc::new(resolver.clone()))
            .connector_layer(connect_span::ConnectSpanLayer)
            // A proxy would resolve names itself and bypass the guard.
            .no_proxy()
            .connect_timeout(Duration::from_secs(5))
            // Most domains are their own host: a connection is reused between a site's page
            // and its icons, milliseconds apart, and rarely after. A long idle timeout kept
            // one open socket per finished domain (thousands of descriptors and hundreds of
            // MB in a large job, see BENCHMARKS.md). Even 500 ms (reaped every 500 ms, so held
            // 0.5–1 s) kept more idle connections than busy ones on the slow web, each with
            // hyper's two 8 KiB buffers (BENCHMARKS.md, issue 29). A host many sites share (a
            // CDN serving their icons) has up to its per-host limit of requests at once:
            // keeping as many idle connections lets each next request skip a TCP and TLS
            // handshake, where one kept idle made about every other icon open a new one.
            .pool_idle_timeout(POOL_IDLE)
            .pool_max_idle_per_host(config.per_host_concurrency)
            .http1_max_headers(MAX_RESPONSE_HEADERS)
            // Offered as before, decoded by `Inflate`; gzip and brotli stay with reqwest.
            .no_deflate()
            .default_headers(HeaderMap::from_iter([(
                header::ACCEPT_ENCODING,
                HeaderValue::from_static(ACCEPT_ENCODING),
            )]))
            .user_agent(config.user_agent.clone());
        if let Some(path) = &config.extra_root_certs {
            b = b.tls_certs_merge(extra_root_certs(path)?);
        }
        Ok(Self {
            client: b.build()?,
            allow_private: config.allow_private_networks,
            resolver,
            host_slots: Slots::new(config.per_host_concurrency),
            address_slots: Slots::new(config.per_address_concurrency),
            fleet: None,
            https_refusals: super::refusals::HttpsRefusals::new(
                config.https_refusal_ttl,
                super::refusals::MAX_HOSTS,
            ),
        })
    }

    /// The same fetcher, whose requests also take the fleet's slots after their own.
    pub fn with_fleet(mut self, fleet: Arc<dyn FleetSlots>) -> Self {
        self.fleet = Some(fleet);
        self
    }

    /// Refuses URLs we must not request: scheme, port, and IP-literal hosts.
    pub fn check_url(&self, url: &Url) -> Result<(), FetchError> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(FetchError::new(
                ErrorCategory::Blocked,
                format!("scheme of {url} not allowed"),
            ));
        }
        if let Some(p) = url.port()
            && p != 80
            && p != 443
        {
            return Err(FetchError::new(
                ErrorCategory::Blocked,
                format!("port {p} of {url} not allowed (80 and 443 only)"),
            ));
        }
        let ip = match url.host() {
            Some(Host::Ipv4(v4)) => IpAddr::V4(v4),
            Some(Host::Ipv6(v6)) => IpAddr::V6(v6),
            Some(Host::Domain(_)) => return Ok(()),
            None => {
                return Err(FetchError::new(
                    ErrorCategory::Blocked,
                    format!("{url} has no host"),
                ));
            }
        };
        if !self.allow_private && !is_public(ip) {
            return Err(FetchError::new(
                ErrorCategory::Blocked,
                format!("{url} is a non-public address"),
            ));
        }
        Ok(())
    }

    /// Takes this request's slot with its host name, then with its address. Waiting for
    /// either is our queue, not the site's slowness: the site's clock stops meanwhile (see
    /// [`Deadline::wait_for`]), and only the find's total allowance for waiting can end it, as
    /// a transient timeout. The address is the first that the guarded resolver gives (the one
    /// the connector tries first); hickory caches the answer, so the connector's own lookup a
    /// moment later normally sees the same addresses, and it is guarded again whatever it sees.
    /// In a fleet, the fleet's slot with both comes last, taken as one, so a request never
    /// holds a fleet slot while it waits for another.
    async fn slots(&self, url: &Url, deadline: &Deadline) -> Result<Held, FetchError> {
        let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
        let no_slot = |what: &str, WaitedTooLong(waited): WaitedTooLong| {
            FetchError::new(
                ErrorCategory::Timeout,
                format!(
                    "no free slot for {host} after waiting {} ms in all (per-{what} limit)",
                    waited.as_millis()
                ),
            )
        };
        let host_slot = deadline
            .wait_for(self.host_slots.acquire(&host))
            .await
            .map_err(|w| no_slot("host", w))?;
        let ip = match url.host() {
            Some(Host::Ipv4(v4)) => IpAddr::V4(v4),
            Some(Host::Ipv6(v6)) => IpAddr::V6(v6),
            _ => {
                let looked =
                    tokio::time::timeout(deadline.remaining(), self.resolver.lookup(&host))
                        .await
                        .map_err(|_| {
                            FetchError::new(
                                ErrorCategory::DnsTransient,
                                format!("temporary DNS failure for {host}: no answer in time"),
                            )
                        })?;
                let addrs = looked.map_err(|e| FetchError::new(e.category(), e.to_string()))?;
                // A successful lookup is never empty; an empty one would be `NotFound`.
                let first = addrs.first().ok_or_else(|| {
                    let e = ResolveError::NotFound(host.clone());
                    FetchError::new(e.category(), e.to_string())
                })?;
                first.ip()
            }
        };
        let address_slot = deadline
            .wait_for(self.address_slots.acquire(&ip))
            .await
            .map_err(|w| no_slot("address", w))?;
        let fleet = match &self.fleet {
            Some(fleet) => Some(
                deadline
                    .wait_for(fleet.acquire(&host, ip))
                    .await
                    .map_err(|w| no_slot("fleet host and address", w))?,
            ),
            None => None,
        };
        Ok(Held {
            _host: host_slot,
            _address: address_slot,
            _fleet: fleet,
        })
    }

    /// GETs `url`, following at most `max_redirects` redirects by hand (each hop checked);
    /// the request and its body must be done within `budget` and before `deadline`, both on
    /// the site's clock: waits for our own slots (every hop takes its slots anew) are not
    /// counted.
    pub async fn open(
        &self,
        url: Url,
        max_redirects: usize,
        browser: bool,
        budget: Duration,
        deadline: &Deadline,
    ) -> Result<Opened, FetchError> {
        if deadline.remaining().is_zero() {
            return Err(FetchError::new(ErrorCategory::Timeout, "deadline passed"));
        }
        // This request's own time, spent hop by hop.
        let mut left = budget.min(MAX_REQUEST_TIME);
        let mut url = url;
        let mut seen = HashSet::new();
        let mut origin: Option<Url> = None;
        for hop in 0..=max_redirects {
            self.check_url(&url).map_err(|mut e| {
                e.origin = origin.clone();
                e
            })?;
            seen.insert(url.to_string());
            let slots = self.slots(&url, deadline).await.map_err(|mut e| {
                e.origin = origin.clone();
                e
            })?;
            let sent = Instant::now();
            let until = sent + left.min(deadline.remaining());
            let resp = self.send(&url, browser, until, origin).await?;
            origin = Some(url.clone());
            let status = resp.status();
            let location = redirect_location(&resp);
            let Some(location) = location.filter(|_| status.is_redirection()) else {
                let inflate = deflated(&resp).then(Inflate::new);
                return Ok(Opened {
                    url,
                    resp,
                    until,
                    _slots: slots,
                    inflate,
                });
            };
            let next = url.join(location).map_err(|e| FetchError {
                category: ErrorCategory::InvalidContent,
                message: format!("bad redirect Location {location:?}: {e}"),
                origin: origin.clone(),
            })?;
            if seen.contains(next.as_str()) {
                return Err(FetchError {
                    category: ErrorCategory::TooManyRedirects,
                    message: format!("redirect loop at {next}"),
                    origin,
                });
            }
            if hop == max_redirects {
                break;
            }
            left = left.saturating_sub(sent.elapsed());
            url = next;
        }
        Err(FetchError {
            category: ErrorCategory::TooManyRedirects,
            message: format!("more than {max_redirects} redirects"),
            origin,
        })
    }

    /// Sends one GET that must answer by `until`. A failure keeps `origin` (the last host
    /// that answered), or names `url` itself when its server answered in a form the client
    /// could not take.
    async fn send(
        &self,
        url: &Url,
        browser: bool,
        until: Instant,
        origin: Option<Url>,
    ) -> Result<reqwest::Response, FetchError> {
        let mut req = self.client.get(url.clone());
        if browser {
            req = req.headers(browser_headers());
        } else {
            req = req.header(header::ACCEPT, "*/*");
        }
        // One span per request: its host and answer, never its URL (a page may link an
        // icon with anything in its query string).
        let span = tracing::debug_span!(
            "http.get",
            otel.kind = "client",
            server.address = url.host_str().unwrap_or_default(),
            url.scheme = url.scheme(),
            http.response.status_code = tracing::field::Empty,
        );
        let sent = tracing::Instrument::instrument(
            tokio::time::timeout_at(until, req.send()),
            span.clone(),
        )
        .await;
        if let Ok(Ok(answer)) = &sent {
            span.record("http.response.status_code", answer.status().as_u16());
        }
        match sent {
            Err(_) => {
                let mut e = FetchError::new(
                    ErrorCategory::Timeout,
                    format!("no answer from {url} in time"),
                );
                e.origin = origin;
                Err(e)
            }
            Ok(Err(e)) => {
                let (category, message) = classify(&e);
                // An answer the client cannot take (more headers than it allows, a broken
                // status line) still came from a server that works: its default paths are
                // worth trying, rather than the other host.
                let origin = if malformed_answer(&e) {
                    Some(url.clone())
                } else {
                    origin
                };
                Err(FetchError {
                    category,
                    message,
                    origin,
                })
            }
            Ok(Ok(r)) => Ok(r),
        }
    }

    /// Reads the body chunk by chunk (decompressed bytes) until `on_chunk` says stop, the cap,
    /// or the end. Returns whether the cap was exceeded.
    pub async fn read_capped(
        opened: &mut Opened,
        cap: usize,
        mut on_chunk: impl FnMut(&[u8]) -> bool,
    ) -> Result<bool, FetchError> {
        let mut total = 0usize;
        // `Some(over_cap)` once reading must stop.
        let mut take = |piece: &[u8]| -> Option<bool> {
            let room = cap - total;
            if piece.len() > room {
                on_chunk(&piece[..room]);
                return Some(true);
            }
            total += piece.len();
            (!on_chunk(piece)).then_some(false)
        };
        loop {
            let chunk = match tokio::time::timeout_at(opened.until, opened.resp.chunk()).await {
                Err(_) => {
                    return Err(FetchError::new(
                        ErrorCategory::Timeout,
                        format!("body of {} too slow", opened.url),
                    ));
                }
                Ok(Err(e)) => {
                    let (cat, msg) = classify(&e);
                    let cat = if e.is_decode() || (e.is_body() && cat == ErrorCategory::Connect) {
                        ErrorCategory::InvalidContent
                    } else {
                        cat
                    };
                    return Err(FetchError::new(cat, msg));
                }
                Ok(Ok(None)) => return Ok(false),
                Ok(Ok(Some(c))) => c,
            };
            let Some(inflate) = opened.inflate.as_mut() else {
                match take(&chunk) {
                    Some(over) => return Ok(over),
                    None => continue,
                }
            };
            let mut stop = None;
            inflate
                .push(&chunk, |piece| {
                    stop = take(piece);
                    stop.is_none()
                })
                .map_err(|e| {
                    FetchError::new(
                        ErrorCategory::InvalidContent,
                        format!("body of {} could not be decoded: {e}", opened.url),
                    )
                })?;
            if let Some(over) = stop {
                return Ok(over);
            }
            if inflate.ended {
                return Ok(false);
            }
        }
    }
}

/// A response's non-empty `Location`, trimmed (whatever its status).
fn redirect_location(resp: &reqwest::Response) -> Option<&str> {
    resp.headers()
        .get(header::LOCATION)
        .and_then(|l| l.to_str().ok())
        .map(str::trim)
        .filter(|l| !l.is_empty())
}

/// Whether a body comes raw- or zlib-deflated, which the client does not undo itself.
fn deflated(resp: &reqwest::Response) -> bool {
    resp.headers()
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("deflate"))
}

/// `Retry-After` as seconds (the delta form; an HTTP date is ignored), capped at a day.
pub fn retry_after(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(|s| s.min(86_400))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::finder::resolve::tests::cfg;

    #[test]
    fn url_checks_literals_ports_and_schemes() {
        let f = Fetcher::new(&cfg(false, vec![], &[])).unwrap();
        let chk = |u: &str| f.check_url(&Url::parse(u).unwrap()).map_err(|e| e.category);
        // Loopback spelled as a decimal or hex literal must not slip past the guard: the url
        // crate normalises odd literals, then the guard refuses them.
        assert_eq!(chk("http://2130706433/"), Err(ErrorCategory::Blocked));
        assert_eq!(chk("http://0x7f.1/"), Err(ErrorCategory::Blocked));
        assert_eq!(
            chk("http://[::ffff:127.0.0.1]/"),
            Err(ErrorCategory::Blocked)
        );
        assert_eq!(chk("http://example.com:6379/"), Err(ErrorCategory::Blocked));
        assert_eq!(chk("ftp://example.com/"), Err(ErrorCategory::Blocked));
        assert_eq!(chk("https://example.com:443/x"), Ok(()));
        assert_eq!(chk("http://example.com:443/x"), Ok(()));
        assert_eq!(chk("http://93.184.216.34/"), Ok(()));
        let open = Fetcher::new(&cfg(true, vec![], &[])).unwrap();
        assert!(
            open.check_url(&Url::parse("http://127.0.0.1/").unwrap())
                .is_ok()
        );
        assert!(
            open.check_url(&Url::parse("http://127.0.0.1:6379/").unwrap())
                .is_err()
        );
    }

    #[test]
    fn retry_after_seconds() {
        let mut h = HeaderMap::new();
        h.insert(header::RETRY_AFTER, HeaderValue::from_static(" 120 "));
        assert_eq!(retry_after(&h), Some(120));
        h.insert(
            header::RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&h), None);
    }
}
