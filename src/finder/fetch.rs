//! The HTTP side: the resolution seam with the SSRF guard, manual redirects, capped body reads
//! and the classification of failures into [`ErrorCategory`].
//!
//! The guard sits *inside* the DNS resolver handed to reqwest, so the addresses that were
//! checked are exactly the ones the connection uses (no second lookup, no rebinding window).
//! IP-literal URL hosts never reach a resolver, so [`Fetcher::check_url`] checks them before
//! every request, together with the scheme and the port.

use super::{ErrorCategory, FinderConfig, ResolveRule};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header::{self, HeaderMap, HeaderValue};
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use url::{Host, Url};

/// No single request may take longer than this, whatever the remaining budget.
pub const MAX_REQUEST_TIME: Duration = Duration::from_secs(10);
/// A DNS lookup that takes longer than this is a transient failure.
const DNS_TIMEOUT: Duration = Duration::from_secs(5);

/// A failure of the resolution seam, found again by walking the error's source chain.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// Every address of the host is non-public.
    #[error("{host} resolves to non-public address {ip}")]
    Blocked {
        /// The host name asked for.
        host: String,
        /// The first refused address.
        ip: IpAddr,
    },
    /// The name does not exist or has no address.
    #[error("{0} does not resolve")]
    NotFound(String),
    /// The resolver failed in a way that may pass (SERVFAIL, timeout).
    #[error("temporary DNS failure for {host}: {msg}")]
    Transient {
        /// The host name asked for.
        host: String,
        /// What the system resolver said.
        msg: String,
    },
}

impl ResolveError {
    fn category(&self) -> ErrorCategory {
        match self {
            Self::Blocked { .. } => ErrorCategory::Blocked,
            Self::NotFound(_) => ErrorCategory::Dns,
            Self::Transient { .. } => ErrorCategory::DnsTransient,
        }
    }
}

/// Applies `FETCH_RESOLVE` rules (exact host, then `*`), else the system resolver, then refuses
/// non-public addresses unless private networks are allowed.
pub struct GuardedResolver {
    rules: Arc<[ResolveRule]>,
    allow_private: bool,
    /// Hosts whose rule address skips the guard. Always empty outside this crate's unit tests:
    /// they need one "public" site on loopback to prove that its redirects, icons and manifests
    /// are refused when they point at private targets (a rule address is guarded like DNS).
    trusted: Arc<[String]>,
}

impl GuardedResolver {
    /// A resolver over these rules.
    pub fn new(rules: &[ResolveRule], allow_private: bool) -> Self {
        Self {
            rules: rules.into(),
            allow_private,
            trusted: Arc::new([]),
        }
    }

    /// Resolves and guards one host name (the port of a rule is kept; 0 means "scheme default").
    pub async fn lookup(&self, host: &str) -> Result<Vec<SocketAddr>, ResolveError> {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        let rule = self
            .rules
            .iter()
            .find(|r| r.host == host)
            .or_else(|| self.rules.iter().find(|r| r.host == "*"));
        if let Some(r) = rule
            && self.trusted.contains(&host)
        {
            return Ok(vec![r.addr]);
        }
        let addrs: Vec<SocketAddr> = if let Some(r) = rule {
            vec![r.addr]
        } else if host == "localhost" || host.ends_with(".localhost") {
            // RFC 6761: always loopback, never asked of DNS.
            vec![
                SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
                SocketAddr::from((Ipv6Addr::LOCALHOST, 0)),
            ]
        } else if host.ends_with(".invalid") || host.ends_with(".test") || host == "invalid" {
            // RFC 6761 special-use names: answered negatively without a lookup, so tests that
            // use them can never leak to real DNS.
            return Err(ResolveError::NotFound(host));
        } else {
            let looked =
                tokio::time::timeout(DNS_TIMEOUT, tokio::net::lookup_host((host.as_str(), 0)))
                    .await
                    .map(|r| r.map(|a| a.collect::<Vec<_>>()));
            match looked {
                Err(_) => {
                    return Err(ResolveError::Transient {
                        host,
                        msg: "lookup timed out".into(),
                    });
                }
                Ok(Err(e)) => {
                    let msg = e.to_string();
                    // getaddrinfo gives no structured code through std: EAI_AGAIN/EAI_FAIL
                    // ("Temporary failure…", "Non-recoverable…") are SERVFAIL-like.
                    let lower = msg.to_ascii_lowercase();
                    if lower.contains("temporary") || lower.contains("non-recoverable") {
                        return Err(ResolveError::Transient { host, msg });
                    }
                    return Err(ResolveError::NotFound(host));
                }
                Ok(Ok(a)) => a,
            }
        };
        if addrs.is_empty() {
            return Err(ResolveError::NotFound(host));
        }
        if self.allow_private {
            return Ok(addrs);
        }
        // Only the public addresses are handed to the connector, so it cannot pick another.
        let public: Vec<SocketAddr> = addrs
            .iter()
            .copied()
            .filter(|a| is_public(a.ip()))
            .collect();
        if public.is_empty() {
            return Err(ResolveError::Blocked {
                host,
                ip: addrs[0].ip(),
            });
        }
        Ok(public)
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let this = Self {
            rules: self.rules.clone(),
            allow_private: self.allow_private,
            trusted: self.trusted.clone(),
        };
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs = this.lookup(&host).await?;
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// Whether an address is a public unicast address a crawler may connect to.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    let in_net = |net: [u8; 4], bits: u32| {
        let mask = if bits == 0 {
            0
        } else {
            u32::MAX << (32 - bits)
        };
        (u32::from(ip) & mask) == (u32::from_be_bytes(net) & mask)
    };
    !(o[0] == 0 // 0.0.0.0/8 "this network"
        || o[0] == 10
        || o[0] == 127
        || in_net([100, 64, 0, 0], 10) // CGNAT
        || in_net([169, 254, 0, 0], 16)
        || in_net([172, 16, 0, 0], 12)
        || in_net([192, 168, 0, 0], 16)
        || in_net([192, 0, 0, 0], 24) // IETF protocol assignments
        || in_net([192, 0, 2, 0], 24) // documentation
        || in_net([198, 51, 100, 0], 24)
        || in_net([203, 0, 113, 0], 24)
        || in_net([192, 88, 99, 0], 24) // 6to4 relay anycast
        || in_net([198, 18, 0, 0], 15) // benchmarking
        || o[0] >= 224) // multicast, reserved, broadcast
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    // NAT64 (64:ff9b::/96) and 6to4 (2002::/16) carry a v4 address that is what gets reached.
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
        return is_public_v4(Ipv4Addr::new(
            (s[6] >> 8) as u8,
            s[6] as u8,
            (s[7] >> 8) as u8,
            s[7] as u8,
        ));
    }
    if s[0] == 0x2002 {
        return is_public_v4(Ipv4Addr::new(
            (s[1] >> 8) as u8,
            s[1] as u8,
            (s[2] >> 8) as u8,
            s[2] as u8,
        ));
    }
    !(s[0..6] == [0, 0, 0, 0, 0, 0] // ::, ::1, deprecated v4-compatible ::/96
        || (s[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
        || (s[0] & 0xffc0) == 0xfe80 // link-local
        || (s[0] & 0xffc0) == 0xfec0 // old site-local
        || (s[0] & 0xff00) == 0xff00 // multicast
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        || (s[0] == 0x0100 && s[1..4] == [0, 0, 0])) // discard-only 100::/64
}

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
    /// This request's slot with its host, held until the body is read and dropped.
    _slot: OwnedSemaphorePermit,
}

/// Politeness: at most `per_host` requests in flight to one host name across the process,
/// whichever domains they serve (icons on a shared CDN, `www.` redirects).
struct HostSlots {
    per_host: usize,
    /// Semaphores live while some request holds a permit; a host nobody is fetching costs a
    /// dead weak entry, pruned as the map grows.
    hosts: Mutex<HashMap<String, Weak<Semaphore>>>,
}

/// Live entries kept before dead ones are pruned.
const HOST_SLOTS_PRUNE_AT: usize = 4096;

impl HostSlots {
    fn new(per_host: usize) -> Self {
        Self {
            per_host: per_host.max(1),
            hosts: Mutex::new(HashMap::new()),
        }
    }

    async fn acquire(&self, host: &str) -> OwnedSemaphorePermit {
        let semaphore = {
            let mut hosts = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
            match hosts.get(host).and_then(Weak::upgrade) {
                Some(semaphore) => semaphore,
                None => {
                    if hosts.len() >= HOST_SLOTS_PRUNE_AT {
                        hosts.retain(|_, s| s.strong_count() > 0);
                    }
                    let semaphore = Arc::new(Semaphore::new(self.per_host));
                    hosts.insert(host.to_owned(), Arc::downgrade(&semaphore));
                    semaphore
                }
            }
        };
        semaphore
            .acquire_owned()
            .await
            .expect("host semaphores are never closed")
    }
}

/// The reqwest client with the guard, plus what requests need to know.
pub struct Fetcher {
    client: reqwest::Client,
    allow_private: bool,
    slots: HostSlots,
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

impl Fetcher {
    /// Builds the client; extra root certificates are read here so a bad file fails at start.
    pub fn new(config: &FinderConfig) -> anyhow::Result<Self> {
        Self::build(
            config,
            GuardedResolver::new(&config.resolve, config.allow_private_networks),
        )
    }

    /// Test-only: a fetcher whose `trusted` hosts' rule addresses skip the guard (see
    /// [`GuardedResolver`]); everything else is guarded as in production.
    #[cfg(test)]
    pub(crate) fn new_trusting(config: &FinderConfig, trusted: &[&str]) -> anyhow::Result<Self> {
        let mut resolver = GuardedResolver::new(&config.resolve, config.allow_private_networks);
        resolver.trusted = trusted.iter().map(|h| h.to_string()).collect();
        Self::build(config, resolver)
    }

    fn build(config: &FinderConfig, resolver: GuardedResolver) -> anyhow::Result<Self> {
        let mut b = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(Arc::new(resolver))
            // A proxy would resolve names itself and bypass the guard.
            .no_proxy()
            .connect_timeout(Duration::from_secs(5))
            // Every domain is its own host: a connection is reused between a site's page and
            // its icons, milliseconds apart, and rarely after. A long idle timeout kept one
            // open socket per finished domain (thousands of descriptors and hundreds of MB
            // in a large job, see BENCHMARKS.md).
            .pool_idle_timeout(Duration::from_millis(500))
            .pool_max_idle_per_host(1)
            .user_agent(config.user_agent.clone());
        if let Some(path) = &config.extra_root_certs {
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
            b = b.tls_certs_merge(certs);
        }
        Ok(Self {
            client: b.build()?,
            allow_private: config.allow_private_networks,
            slots: HostSlots::new(config.per_host_concurrency),
        })
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

    /// GETs `url`, following at most `max_redirects` redirects by hand (each hop checked);
    /// the request and its body must be done within `budget` and before `deadline`.
    pub async fn open(
        &self,
        url: Url,
        max_redirects: usize,
        browser: bool,
        budget: Duration,
        deadline: Instant,
    ) -> Result<Opened, FetchError> {
        let now = Instant::now();
        if now >= deadline {
            return Err(FetchError::new(ErrorCategory::Timeout, "deadline passed"));
        }
        let until = deadline.min(now + budget.min(MAX_REQUEST_TIME));
        let mut url = url;
        let mut seen = HashSet::new();
        let mut origin: Option<Url> = None;
        for hop in 0..=max_redirects {
            self.check_url(&url).map_err(|mut e| {
                e.origin = origin.clone();
                e
            })?;
            seen.insert(url.to_string());
            // Waiting for a slot counts against this request's time, like a slow server.
            let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
            let Ok(slot) = tokio::time::timeout_at(until, self.slots.acquire(&host)).await else {
                let mut e = FetchError::new(
                    ErrorCategory::Timeout,
                    format!("no free slot for {host} in time (per-host limit)"),
                );
                e.origin = origin;
                return Err(e);
            };
            let mut req = self.client.get(url.clone());
            if browser {
                req = req.headers(browser_headers());
            } else {
                req = req.header(header::ACCEPT, "*/*");
            }
            let resp = match tokio::time::timeout_at(until, req.send()).await {
                Err(_) => {
                    let mut e = FetchError::new(
                        ErrorCategory::Timeout,
                        format!("no answer from {url} in time"),
                    );
                    e.origin = origin;
                    return Err(e);
                }
                Ok(Err(e)) => {
                    let (category, message) = classify(&e);
                    return Err(FetchError {
                        category,
                        message,
                        origin,
                    });
                }
                Ok(Ok(r)) => r,
            };
            origin = Some(url.clone());
            let status = resp.status();
            let location = resp
                .headers()
                .get(header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .map(str::trim)
                .filter(|l| !l.is_empty());
            let Some(location) = location.filter(|_| status.is_redirection()) else {
                return Ok(Opened {
                    url,
                    resp,
                    until,
                    _slot: slot,
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
            url = next;
        }
        Err(FetchError {
            category: ErrorCategory::TooManyRedirects,
            message: format!("more than {max_redirects} redirects"),
            origin,
        })
    }

    /// Reads the body chunk by chunk (decompressed bytes) until `on_chunk` says stop, the cap,
    /// or the end. Returns whether the cap was exceeded.
    pub async fn read_capped(
        opened: &mut Opened,
        cap: usize,
        mut on_chunk: impl FnMut(&[u8]) -> bool,
    ) -> Result<bool, FetchError> {
        let mut total = 0usize;
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
            let room = cap - total;
            if chunk.len() > room {
                on_chunk(&chunk[..room]);
                return Ok(true);
            }
            total += chunk.len();
            if !on_chunk(&chunk) {
                return Ok(false);
            }
        }
    }
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

/// Every error in the chain, outermost first, including the payloads of `io::Error`s (whose
/// `source()` skips the payload itself).
fn error_chain<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> Vec<&'a (dyn std::error::Error + 'static)> {
    let mut out = Vec::new();
    let mut cur = Some(err);
    while let Some(e) = cur {
        if out.len() > 32 {
            break;
        }
        out.push(e);
        cur = match e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        };
    }
    out
}

/// Classifies a reqwest error by walking its source chain: our resolver's error first, then
/// rustls and I/O errors, then reqwest's own flags.
pub fn classify(err: &reqwest::Error) -> (ErrorCategory, String) {
    let mut message = err.to_string();
    let mut found = None;
    for e in error_chain(err) {
        message = e.to_string();
        if let Some(r) = e.downcast_ref::<ResolveError>() {
            return (r.category(), r.to_string());
        }
        if e.downcast_ref::<rustls::Error>().is_some() {
            // The innermost cause wins over the I/O wrappers that carried it.
            found = Some((ErrorCategory::Tls, e.to_string()));
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind as K;
            let cat = match io.kind() {
                K::TimedOut => Some(ErrorCategory::Timeout),
                K::ConnectionRefused
                | K::ConnectionReset
                | K::ConnectionAborted
                | K::NotConnected
                | K::AddrNotAvailable
                | K::HostUnreachable
                | K::NetworkUnreachable
                | K::BrokenPipe
                | K::UnexpectedEof => Some(ErrorCategory::Connect),
                _ => None,
            };
            if let Some(c) = cat {
                found.get_or_insert((c, io.to_string()));
            }
        }
    }
    if let Some((c, m)) = found {
        return (c, m);
    }
    let lower = message.to_ascii_lowercase();
    let cat = if err.is_timeout() {
        ErrorCategory::Timeout
    } else if lower.contains("certificate") || lower.contains("tls") || lower.contains("handshake")
    {
        ErrorCategory::Tls
    } else if err.is_decode() {
        ErrorCategory::InvalidContent
    } else {
        ErrorCategory::Connect
    };
    (cat, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn blocklist() {
        for bad in [
            "127.0.0.1",
            "127.8.9.10",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.254",
            "0.0.0.0",
            "0.1.2.3",
            "255.255.255.255",
            "224.0.0.1",
            "240.0.0.1",
            "192.0.2.5",
            "198.51.100.7",
            "203.0.113.9",
            "198.18.0.1",
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "ff02::1",
            "2001:db8::1",
            "64:ff9b::7f00:1",
            "2002:7f00:1::1",
        ] {
            assert!(!is_public(ip(bad)), "{bad} must be blocked");
        }
        for good in [
            "93.184.216.34",
            "8.8.8.8",
            "1.1.1.1",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
        ] {
            assert!(is_public(ip(good)), "{good} must be allowed");
        }
    }

    fn cfg(allow: bool, rules: Vec<ResolveRule>) -> FinderConfig {
        FinderConfig {
            timeout: Duration::from_secs(5),
            allow_private_networks: allow,
            resolve: rules,
            extra_root_certs: None,
            user_agent: "t".into(),
            per_host_concurrency: 4,
        }
    }

    #[test]
    fn url_checks_literals_ports_and_schemes() {
        let f = Fetcher::new(&cfg(false, vec![])).unwrap();
        let chk = |u: &str| f.check_url(&Url::parse(u).unwrap()).map_err(|e| e.category);
        // Case 75: odd literals are normalised by the url crate, then refused.
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
        let open = Fetcher::new(&cfg(true, vec![])).unwrap();
        assert!(
            open.check_url(&Url::parse("http://127.0.0.1/").unwrap())
                .is_ok()
        );
        assert!(
            open.check_url(&Url::parse("http://127.0.0.1:6379/").unwrap())
                .is_err()
        );
    }

    #[tokio::test]
    async fn resolver_rules_and_guard() {
        let rules = vec![
            ResolveRule {
                host: "a.test".into(),
                addr: "127.0.0.1:8080".parse().unwrap(),
            },
            ResolveRule {
                host: "*".into(),
                addr: "93.184.216.34:443".parse().unwrap(),
            },
        ];
        let r = GuardedResolver::new(&rules, false);
        assert!(matches!(
            r.lookup("a.test").await,
            Err(ResolveError::Blocked { .. })
        ));
        assert_eq!(
            r.lookup("B.test").await.unwrap(),
            ["93.184.216.34:443".parse().unwrap()]
        );
        let open = GuardedResolver::new(&rules, true);
        assert_eq!(
            open.lookup("a.test").await.unwrap(),
            ["127.0.0.1:8080".parse().unwrap()]
        );
        let none = GuardedResolver::new(&[], true);
        assert!(matches!(
            none.lookup("nothing.invalid").await,
            Err(ResolveError::NotFound(_))
        ));
        assert!(matches!(
            GuardedResolver::new(&[], false).lookup("localhost").await,
            Err(ResolveError::Blocked { .. })
        ));
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
