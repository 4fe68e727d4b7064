//! The finder: given one domain, fetch its home page, discover icon candidates, verify them and
//! pick the favicon, within a deadline and byte caps, refusing non-public addresses.
//!
//! Layout:
//! - `resolve`: name resolution (`FETCH_RESOLVE` rules, then async DNS with a cap on lookups in
//!   flight) and the SSRF guard pinned at connect time.
//! - `fetch`: the HTTP client (redirects, per-host and per-address politeness, body caps) and
//!   the classification of network failures into [`ErrorCategory`].
//! - `html`: streaming `<head>` extraction with lol_html.
//! - `links`: what the page declared, resolved into candidates and manifest URLs.
//! - `image`: sniffing image bytes and reading real dimensions.
//! - `rank`: the pure ranking policy over candidates.
//! - `manifest`: lenient web app manifest parsing.
//! - `page`: the home page over https/http × apex/www, and bot-wall recognition.
//! - `pipeline`: one domain from home page to verified icon, and the error mapping.

pub mod fetch;
pub mod html;
pub mod image;
pub mod links;
pub mod manifest;
mod page;
mod pipeline;
pub mod rank;
pub mod resolve;
pub use pipeline::ICON_CAP;
#[cfg(test)]
pub(crate) mod tests;

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// How the finder fetches: limits, safety switches and the test resolution seam.
#[derive(Debug, Clone)]
pub struct FinderConfig {
    /// Whole-domain deadline: everything for one domain happens within it.
    pub timeout: Duration,
    /// Allow loopback/private targets (tests, intranets); off in production.
    pub allow_private_networks: bool,
    /// `FETCH_RESOLVE` rules: host (or `*`) pointed at a fixed socket address.
    pub resolve: Vec<ResolveRule>,
    /// PEM file of extra trusted root certificates.
    pub extra_root_certs: Option<PathBuf>,
    /// The User-Agent sent with every request.
    pub user_agent: String,
    /// Requests in flight to one host at most, across this process (politeness).
    pub per_host_concurrency: usize,
    /// Requests in flight to one resolved address at most, across this process, so many names
    /// on one server share its slots.
    pub per_address_concurrency: usize,
    /// Name servers asked instead of the system's configuration (empty: the system's).
    pub dns_servers: Vec<SocketAddr>,
    /// DNS lookups in flight at once, across this process.
    pub dns_max_inflight: usize,
    /// How long one DNS lookup may take (the request's deadline bounds it too).
    pub dns_timeout: Duration,
    /// The chosen icon's bytes travel out with a [`Found`] when they are at most this many
    /// (0: never; `ICON_STORE=off`).
    pub icon_max_bytes: usize,
}

/// The defaults of the settings (see `src/config.rs`): production-safe, no resolution rules.
impl Default for FinderConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(15),
            allow_private_networks: false,
            resolve: Vec::new(),
            extra_root_certs: None,
            user_agent: crate::config::DEFAULT_USER_AGENT.to_owned(),
            per_host_concurrency: 4,
            per_address_concurrency: 16,
            dns_servers: Vec::new(),
            dns_max_inflight: 256,
            dns_timeout: Duration::from_secs(5),
            icon_max_bytes: 256 * 1024,
        }
    }
}

/// One `FETCH_RESOLVE` entry: `HOST=IP:PORT`, where `HOST` may be `*` for any host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolveRule {
    /// Lower-case host name, or `*`.
    pub host: String,
    /// Where connections to that host go instead of DNS.
    pub addr: SocketAddr,
}

/// Why a domain has no favicon: a small fixed set that drives retries and reporting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCategory {
    /// The name does not resolve (NXDOMAIN, or no usable address).
    Dns,
    /// A temporary resolution failure (SERVFAIL, resolver timeout).
    DnsTransient,
    /// TCP connection refused, reset or unreachable.
    Connect,
    /// TLS handshake or certificate failure.
    Tls,
    /// The per-request or per-domain deadline passed.
    Timeout,
    /// The home page answered with an HTTP error status.
    HttpStatus,
    /// The server asked to slow down (429) or is unavailable (503).
    RateLimited,
    /// More than the redirect limit, or a loop.
    TooManyRedirects,
    /// The site worked but no candidate was a real image.
    NoIcon,
    /// The target address is not public (SSRF guard) or the port is not allowed.
    Blocked,
    /// The response could not be used (too large, undecodable, not what was expected).
    InvalidContent,
    /// A bug or a panic while handling the domain.
    Internal,
}

impl ErrorCategory {
    /// Every category, in documentation order.
    pub const ALL: [ErrorCategory; 12] = [
        Self::Dns,
        Self::DnsTransient,
        Self::Connect,
        Self::Tls,
        Self::Timeout,
        Self::HttpStatus,
        Self::RateLimited,
        Self::TooManyRedirects,
        Self::NoIcon,
        Self::Blocked,
        Self::InvalidContent,
        Self::Internal,
    ];

    /// The stable snake_case code stored and shown to clients.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Dns => "dns",
            Self::DnsTransient => "dns_transient",
            Self::Connect => "connect",
            Self::Tls => "tls",
            Self::Timeout => "timeout",
            Self::HttpStatus => "http_status",
            Self::RateLimited => "rate_limited",
            Self::TooManyRedirects => "too_many_redirects",
            Self::NoIcon => "no_icon",
            Self::Blocked => "blocked",
            Self::InvalidContent => "invalid_content",
            Self::Internal => "internal",
        }
    }

    /// Parses a stored code back.
    pub fn from_code(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == code)
    }

    /// Whether trying again later may give a different answer (so the worker retries).
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            Self::DnsTransient | Self::Connect | Self::Timeout | Self::RateLimited | Self::Internal
        )
    }
}

/// Where a candidate was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CandidateSource {
    /// `<link rel=icon>` / `shortcut icon` in the head.
    Icon,
    /// `apple-touch-icon` or `apple-touch-icon-precomposed`.
    AppleTouch,
    /// `rel=fluid-icon`.
    FluidIcon,
    /// Safari's monochrome `mask-icon`: recorded, never chosen.
    MaskIcon,
    /// An entry of the web app manifest.
    Manifest,
    /// `msapplication-TileImage`.
    Tile,
    /// A well-known path probed on the final origin (`/favicon.ico`, ...).
    DefaultPath,
}

/// One possible icon, with what was declared and what verification found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    /// Absolute URL (http, https or data).
    pub url: String,
    /// Where it was found.
    pub source: CandidateSource,
    /// The declared `sizes` (or manifest `sizes`), as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub declared_sizes: Option<String>,
    /// The declared `type`, as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub declared_type: Option<String>,
    /// True when the link was in `<body>` rather than `<head>` (ranked lower).
    #[serde(default)]
    pub in_body: bool,
    /// The declared `media` query, as written (capped): one that targets a non-default colour
    /// scheme makes the icon a candidate only when nothing else verifies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media: Option<String>,
    /// Sniffed mime type, when the candidate was fetched and was an image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mime: Option<String>,
    /// Real width in pixels (0 for a scalable SVG without size), when verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    /// Real height in pixels, when verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    /// Why verification rejected it, when it was fetched and rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Candidate {
    /// A candidate as found, with nothing declared or verified yet.
    pub fn new(url: impl Into<String>, source: CandidateSource) -> Self {
        Self {
            url: url.into(),
            source,
            declared_sizes: None,
            declared_type: None,
            in_body: false,
            media: None,
            mime: None,
            width: None,
            height: None,
            error: None,
        }
    }
}

/// A found favicon.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Found {
    /// The chosen, verified icon.
    pub favicon_url: String,
    /// The home page URL after redirects, when the page was fetched.
    pub final_url: Option<String>,
    /// Sniffed mime of the chosen icon.
    pub mime: String,
    /// Real width of the chosen icon (0 when an SVG has no intrinsic size).
    pub width: u32,
    /// Real height of the chosen icon.
    pub height: u32,
    /// Every candidate found, in rank order (at most [`crate::clean::MAX_CANDIDATES`]).
    pub candidates: Vec<Candidate>,
    /// How many more candidates the page declared than were kept.
    #[serde(default)]
    pub candidates_dropped: u32,
    /// The chosen icon's own bytes, when kept (see [`FinderConfig::icon_max_bytes`]). Not
    /// serialised: the bytes go to `icon_blob`, never into a result's JSON.
    #[serde(skip)]
    pub icon: Option<IconBytes>,
}

/// The bytes of a chosen icon, as verified, with their content address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IconBytes {
    /// Lowercase hex SHA-256 of `bytes`.
    pub sha256: String,
    /// The icon exactly as the site served it (or as its `data:` URL decoded).
    pub bytes: bytes::Bytes,
}

impl IconBytes {
    /// Hashes `bytes`.
    pub fn new(bytes: impl Into<bytes::Bytes>) -> Self {
        use sha2::Digest;
        let bytes = bytes.into();
        let digest = sha2::Sha256::digest(&bytes);
        let sha256 = digest.iter().map(|b| format!("{b:02x}")).collect();
        Self { sha256, bytes }
    }
}

/// Why no favicon was found, classified.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FindError {
    /// The category that drives retry and reporting.
    pub category: ErrorCategory,
    /// A human-readable explanation.
    pub message: String,
    /// The home page URL after redirects, when the page was fetched.
    pub final_url: Option<String>,
    /// Seconds the server asked us to wait (`Retry-After`), if any.
    pub retry_after_secs: Option<u64>,
    /// Candidates found and rejected, in rank order (at most [`crate::clean::MAX_CANDIDATES`]).
    pub candidates: Vec<Candidate>,
    /// How many more candidates the page declared than were kept.
    #[serde(default)]
    pub candidates_dropped: u32,
}

impl FindError {
    /// A failure with no page and no candidates.
    pub fn new(category: ErrorCategory, message: impl Into<String>) -> Self {
        Self {
            category,
            message: message.into(),
            final_url: None,
            retry_after_secs: None,
            candidates: Vec::new(),
            candidates_dropped: 0,
        }
    }
}

/// What the finder says about one domain.
pub type FindOutcome = Result<Found, FindError>;

/// Finds favicons; cheap to clone, one per process is enough (it holds the connection pool).
#[derive(Clone)]
pub struct Finder {
    fetcher: Arc<fetch::Fetcher>,
    config: Arc<FinderConfig>,
}

/// Slack past `config.timeout` that the hard backstop allows before giving up on a find.
const DEADLINE_SLACK: Duration = Duration::from_millis(250);

impl Finder {
    /// Builds the HTTP client from the config (extra root certs loaded here; a bad PEM file is an
    /// error naming the path).
    pub fn new(config: FinderConfig) -> anyhow::Result<Self> {
        Ok(Self {
            fetcher: Arc::new(fetch::Fetcher::new(&config)?),
            config: Arc::new(config),
        })
    }

    /// Test-only: a finder whose `trusted` hosts may sit on loopback although private networks
    /// are refused, so tests can prove what a "public" site's redirects, icons and manifests
    /// may not reach.
    #[cfg(test)]
    pub(crate) fn new_trusting(config: FinderConfig, trusted: &[&str]) -> anyhow::Result<Self> {
        Ok(Self {
            fetcher: Arc::new(fetch::Fetcher::new_trusting(&config, trusted)?),
            config: Arc::new(config),
        })
    }

    /// Finds the favicon of one already-normalised domain (lowercase ASCII hostname, e.g.
    /// "example.com"). Never panics on hostile input, always returns within config.timeout
    /// (+ small slack).
    pub async fn find(&self, domain: &str) -> FindOutcome {
        let timeout = self.config.timeout;
        let deadline = tokio::time::Instant::now() + timeout;
        let fetcher = self.fetcher.clone();
        let keep = self.config.icon_max_bytes;
        let domain = domain.to_string();
        // A task of its own so that a panic deep in a dependency becomes `Internal` instead of
        // taking the worker down.
        // The caller's Sentry hub (tagged with the job and domain) goes along into the task,
        // so a panic in there is reported with them.
        let hub = sentry::Hub::current();
        let mut task = AbortOnDrop(tokio::spawn(sentry::SentryFutureExt::bind_hub(
            async move {
                match tokio::time::timeout_at(
                    deadline,
                    pipeline::find(&fetcher, &domain, deadline, keep),
                )
                .await
                {
                    Ok(outcome) => outcome,
                    Err(_) => Err(timeout_error(timeout)),
                }
            },
            hub,
        )));
        match tokio::time::timeout(timeout + DEADLINE_SLACK, &mut task.0).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(join)) => Err(FindError::new(
                ErrorCategory::Internal,
                format!("finder task failed: {join}"),
            )),
            Err(_) => Err(timeout_error(timeout)),
        }
    }
}

/// Aborts the find task when the caller stops waiting (timeout, or its own future dropped).
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn timeout_error(timeout: Duration) -> FindError {
    FindError::new(
        ErrorCategory::Timeout,
        format!("no favicon found within {} ms", timeout.as_millis()),
    )
}

/// Parses FETCH_RESOLVE: "HOST=IP:PORT,HOST2=IP:PORT" ("*" = any host; IPv6 as `[::1]:8080`;
/// whitespace around entries ok; empty string = no rules). Err(message naming the bad entry).
pub fn parse_resolve_rules(s: &str) -> Result<Vec<ResolveRule>, String> {
    let mut rules = Vec::new();
    for entry in s.split(',') {
        let entry = entry.trim();
        if entry.is_empty() {
            continue;
        }
        let bad = |why: &str| format!("bad FETCH_RESOLVE entry {entry:?}: {why}");
        let (host, addr) = entry
            .split_once('=')
            .ok_or_else(|| bad("expected HOST=IP:PORT"))?;
        let host = host.trim().trim_end_matches('.').to_ascii_lowercase();
        let valid_host = host == "*"
            || (!host.is_empty()
                && host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')));
        if !valid_host {
            return Err(bad("host must be a name or *"));
        }
        let addr: SocketAddr = addr
            .trim()
            .parse()
            .map_err(|_| bad("address must be IP:PORT (IPv6 as [::1]:PORT)"))?;
        rules.push(ResolveRule { host, addr });
    }
    Ok(rules)
}
