//! Name resolution and the SSRF guard: the one place that turns a host name into the addresses
//! a connection may use.
//!
//! The guard sits *inside* the DNS resolver handed to reqwest, so the addresses that were
//! checked are exactly the ones the connection uses (no second lookup, no rebinding window).
//! `FETCH_RESOLVE` rules win before any DNS. Otherwise names go to hickory's async resolver
//! (the system's `/etc/resolv.conf`, or `FETCH_DNS_SERVERS`): a lookup is a future, so one that
//! times out or whose request is dropped frees everything it held, and at most
//! `FETCH_DNS_MAX_INFLIGHT` of them run at once, so a silent name server costs sockets and
//! timers only, never the blocking pool's threads.

use super::{ErrorCategory, FinderConfig, ResolveRule};
use hickory_resolver::config::{
    LookupIpStrategy, NameServerConfig, NameServerConfigGroup, ResolveHosts, ResolverConfig,
};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::ProtoErrorKind;
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::{TokioResolver, config::ResolverOpts};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, LazyLock};
use std::time::Duration;
use tokio::sync::Semaphore;

/// A failure of the resolution seam, found again by walking the error's source chain.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// Every address of the host is non-public. The address itself is not in the message:
    /// stored results would otherwise let a caller map internal DNS through this service.
    #[error("{host} resolves to a non-public address")]
    Blocked {
        /// The host name asked for.
        host: String,
    },
    /// The name does not exist or has no address.
    #[error("{0} does not resolve")]
    NotFound(String),
    /// The resolver failed in a way that may pass (SERVFAIL, timeout).
    #[error("temporary DNS failure for {host}: {msg}")]
    Transient {
        /// The host name asked for.
        host: String,
        /// What went wrong, without naming the name servers.
        msg: String,
    },
}

impl ResolveError {
    /// The category a domain ends in when this is why it failed.
    pub fn category(&self) -> ErrorCategory {
        match self {
            Self::Blocked { .. } => ErrorCategory::Blocked,
            Self::NotFound(_) => ErrorCategory::Dns,
            Self::Transient { .. } => ErrorCategory::DnsTransient,
        }
    }
}

/// Answers (a name and a record type each) hickory keeps until their TTL ends. Its default of
/// 32 is less than the names of the domains in flight: every request asks for its name twice
/// (once for its address's politeness slot, once to connect) and a domain makes several, so
/// with the default nearly every one went to the name server again (7.7 queries per domain in
/// the `features` benchmark, where two, A and AAAA, are enough). An entry is a few hundred
/// bytes.
const DNS_CACHE_ENTRIES: usize = 16_384;

/// The DNS half: hickory's resolver behind a cap on lookups in flight and a timeout.
struct Dns {
    resolver: TokioResolver,
    /// At most this many lookups at once; waiting for a permit counts against the timeout.
    inflight: Semaphore,
    timeout: Duration,
}

impl Dns {
    fn new(config: &FinderConfig) -> anyhow::Result<Self> {
        let provider = TokioConnectionProvider::default();
        let mut builder = if config.dns_servers.is_empty() {
            TokioResolver::builder(provider).map_err(|e| {
                anyhow::anyhow!(
                    "cannot read the system DNS configuration ({e}); set FETCH_DNS_SERVERS"
                )
            })?
        } else {
            let mut group = NameServerConfigGroup::new();
            for addr in &config.dns_servers {
                // UDP first; hickory retries a truncated answer over TCP.
                for protocol in [Protocol::Udp, Protocol::Tcp] {
                    group.push(NameServerConfig::new(*addr, protocol));
                }
            }
            let mut b = TokioResolver::builder_with_config(
                ResolverConfig::from_parts(None, vec![], group),
                provider,
            );
            // Explicit name servers are the whole truth (a test's fake DNS, an internal
            // resolver): /etc/hosts is not consulted.
            b.options_mut().use_hosts_file = ResolveHosts::Never;
            b
        };
        let opts: &mut ResolverOpts = builder.options_mut();
        // Both families, as getaddrinfo gives them; the connector tries them in turn.
        opts.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
        opts.timeout = config.dns_timeout;
        opts.attempts = 1;
        opts.cache_size = DNS_CACHE_ENTRIES;
        Ok(Self {
            resolver: builder.build(),
            inflight: Semaphore::new(config.dns_max_inflight.max(1)),
            timeout: config.dns_timeout,
        })
    }

    async fn lookup(&self, host: &str) -> Result<Vec<IpAddr>, ResolveError> {
        // Fully qualified, so the system's search domains never turn a public name into an
        // internal one.
        let fqdn = format!("{host}.");
        let work = async {
            let _permit = self
                .inflight
                .acquire()
                .await
                .expect("the DNS semaphore is never closed");
            self.resolver.lookup_ip(fqdn.as_str()).await
        };
        let transient = |msg: String| ResolveError::Transient {
            host: host.to_owned(),
            msg,
        };
        match tokio::time::timeout(self.timeout, work).await {
            Err(_) => Err(transient(format!(
                "no answer within {} ms",
                self.timeout.as_millis()
            ))),
            Ok(Err(e)) => {
                let code = match e.proto().map(|p| p.kind()) {
                    Some(ProtoErrorKind::NoRecordsFound { response_code, .. }) => {
                        Some(*response_code)
                    }
                    _ => None,
                };
                tracing::debug!(host, error = %e, "DNS lookup failed");
                match code {
                    // NXDOMAIN, or a name that exists without addresses: asking again will
                    // not help.
                    Some(ResponseCode::NXDomain | ResponseCode::NoError) => {
                        Err(ResolveError::NotFound(host.to_owned()))
                    }
                    Some(code) => Err(transient(format!("name server answered {code}"))),
                    None if e.proto().is_some_and(|p| p.is_no_connections()) => {
                        Err(transient("no name server reachable".into()))
                    }
                    None => Err(transient("lookup failed".into())),
                }
            }
            Ok(Ok(found)) => Ok(found.iter().collect()),
        }
    }
}

/// Applies `FETCH_RESOLVE` rules (exact host, then `*`), else DNS, then refuses non-public
/// addresses unless private networks are allowed. Cheap to clone.
#[derive(Clone)]
pub struct GuardedResolver {
    inner: Arc<Inner>,
}

struct Inner {
    rules: Vec<ResolveRule>,
    allow_private: bool,
    /// Hosts whose rule address skips the guard. Always empty outside this crate's unit tests:
    /// they need one "public" site on loopback to prove that its redirects, icons and manifests
    /// are refused when they point at private targets (a rule address is guarded like DNS).
    trusted: Vec<String>,
    dns: Dns,
}

impl GuardedResolver {
    /// A resolver for this configuration; fails when the system DNS configuration is needed
    /// and cannot be read.
    pub fn new(config: &FinderConfig) -> anyhow::Result<Self> {
        Self::with_trusted(config, Vec::new())
    }

    /// As [`GuardedResolver::new`], with `trusted` hosts whose rule addresses skip the guard.
    pub(crate) fn with_trusted(
        config: &FinderConfig,
        trusted: Vec<String>,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            inner: Arc::new(Inner {
                rules: config.resolve.clone(),
                allow_private: config.allow_private_networks,
                trusted,
                dns: Dns::new(config)?,
            }),
        })
    }

    /// Resolves and guards one host name (the port of a rule is kept; 0 means "scheme default"),
    /// in a span of its own.
    pub async fn lookup(&self, host: &str) -> Result<Vec<SocketAddr>, ResolveError> {
        let span = tracing::debug_span!("dns.lookup", server.address = host);
        tracing::Instrument::instrument(self.lookup_in(host), span).await
    }

    /// [`GuardedResolver::lookup`]'s work.
    async fn lookup_in(&self, host: &str) -> Result<Vec<SocketAddr>, ResolveError> {
        let me = &self.inner;
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        let rule = me
            .rules
            .iter()
            .find(|r| r.host == host)
            .or_else(|| me.rules.iter().find(|r| r.host == "*"));
        if let Some(r) = rule
            && me.trusted.contains(&host)
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
            me.dns
                .lookup(&host)
                .await?
                .into_iter()
                .map(|ip| SocketAddr::new(ip, 0))
                .collect()
        };
        if addrs.is_empty() {
            return Err(ResolveError::NotFound(host));
        }
        if me.allow_private {
            return Ok(addrs);
        }
        // Only the public addresses are handed to the connector, so it cannot pick another.
        let public: Vec<SocketAddr> = addrs
            .iter()
            .copied()
            .filter(|a| is_public(a.ip()))
            .collect();
        if public.is_empty() {
            tracing::debug!(host, ip = %addrs[0].ip(), "refused a non-public address");
            return Err(ResolveError::Blocked { host });
        }
        Ok(public)
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let this = self.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs = this.lookup(&host).await?;
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// Parses `FETCH_DNS_SERVERS`: comma-separated `IP:PORT` (IPv6 as `[::1]:53`); whitespace
/// around entries is fine. Err(message naming the bad entry).
pub fn parse_dns_servers(s: &str) -> Result<Vec<SocketAddr>, String> {
    s.split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(|e| {
            e.parse::<SocketAddr>()
                .map_err(|_| format!("bad name server {e:?}: expected IP:PORT (IPv6 as [::1]:53)"))
        })
        .collect()
}

/// Networks no crawler may reach (RFC 6890 and friends).
static V4_BLOCKED: LazyLock<Vec<Ipv4Net>> = LazyLock::new(|| {
    [
        "0.0.0.0/8",       // "this network"
        "10.0.0.0/8",      // private
        "100.64.0.0/10",   // carrier-grade NAT
        "127.0.0.0/8",     // loopback
        "169.254.0.0/16",  // link-local, cloud metadata
        "172.16.0.0/12",   // private
        "192.0.0.0/24",    // IETF protocol assignments
        "192.0.2.0/24",    // documentation
        "192.88.99.0/24",  // 6to4 relay anycast
        "192.168.0.0/16",  // private
        "198.18.0.0/15",   // benchmarking
        "198.51.100.0/24", // documentation
        "203.0.113.0/24",  // documentation
        "224.0.0.0/3",     // multicast, reserved, broadcast
    ]
    .iter()
    .map(|n| n.parse().expect("valid IPv4 network"))
    .collect()
});

/// IPv6 networks refused outright. Local-use NAT64 and Teredo embed an IPv4 address, but where
/// (NAT64: the operator's prefix length) or how (Teredo: obfuscated, plus a server address)
/// varies, so they are refused rather than decoded.
static V6_BLOCKED: LazyLock<Vec<Ipv6Net>> = LazyLock::new(|| {
    [
        "::/96",          // unspecified, loopback, deprecated IPv4-compatible
        "100::/64",       // discard-only
        "64:ff9b:1::/48", // local-use NAT64 (RFC 8215)
        "2001::/32",      // Teredo
        "2001:db8::/32",  // documentation
        "fc00::/7",       // unique local
        "fe80::/10",      // link-local
        "fec0::/10",      // old site-local
        "ff00::/8",       // multicast
    ]
    .iter()
    .map(|n| n.parse().expect("valid IPv6 network"))
    .collect()
});

/// Whether an address is a public unicast address a crawler may connect to.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    !V4_BLOCKED.iter().any(|n| n.contains(&ip))
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = embedded_v4(ip) {
        return is_public_v4(v4);
    }
    !V6_BLOCKED.iter().any(|n| n.contains(&ip))
}

/// The IPv4 address that a mapped, well-known NAT64 (`64:ff9b::/96`) or 6to4 (`2002::/16`)
/// address reaches: that address is what the guard must judge.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    static NAT64: LazyLock<IpNet> = LazyLock::new(|| "64:ff9b::/96".parse().expect("valid"));
    static SIX_TO_FOUR: LazyLock<IpNet> = LazyLock::new(|| "2002::/16".parse().expect("valid"));
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4);
    }
    let o = ip.octets();
    if NAT64.contains(&IpAddr::V6(ip)) {
        return Some(Ipv4Addr::new(o[12], o[13], o[14], o[15]));
    }
    if SIX_TO_FOUR.contains(&IpAddr::V6(ip)) {
        return Some(Ipv4Addr::new(o[2], o[3], o[4], o[5]));
    }
    None
}

#[cfg(test)]
pub(crate) mod tests;
