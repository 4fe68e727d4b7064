//! The finder: given one domain, fetch its home page, discover icon candidates, verify them and
//! pick the favicon, within a deadline and byte caps, refusing non-public addresses.
//!
//! Layout:
//! - `resolve`: name resolution (`FETCH_RESOLVE` rules, then async DNS with a cap on lookups in
//!   flight) and the SSRF guard pinned at connect time.
//! - `clock`: a site's deadline on its own clock, stopped while we wait for our own slots.
//! - `fetch`: the HTTP client (redirects, per-host and per-address politeness, body caps) and
//!   the classification of network failures into [`ErrorCategory`].
//! - `html`: streaming `<head>` extraction with lol_html.
//! - `links`: what the page declared, resolved into candidates and manifest URLs.
//! - `image`: sniffing image bytes and reading real dimensions.
//! - `rank`: the pure ranking policy over candidates.
//! - `manifest`: lenient web app manifest parsing.
//! - `browserconfig`: the tiles of IE and Edge's `browserconfig.xml`.
//! - `page`: the home page over https/http × apex/www, and bot-wall recognition.
//! - `pipeline`: one domain from home page to verified icon, and the error mapping.

pub mod browserconfig;
pub mod clock;
pub mod fetch;
pub mod html;
pub mod image;
pub mod links;
pub mod manifest;
mod page;
mod pipeline;
pub mod rank;
pub mod refusals;
pub mod resolve;
pub use pipeline::ICON_CAP;
#[cfg(test)]
pub(crate) mod tests;

pub use crate::model::{
    Candidate, CandidateError, CandidateSource, DarkIcon, ErrorCategory, FindError, FindOutcome,
    Found, IconBytes,
};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// A browser-like User-Agent that names the software. It names no URL: the project has no
/// public page to point at, and a made-up one would send site owners nowhere. Operators set
/// `FETCH_USER_AGENT` with their own contact (README, `.env.template`).
pub const DEFAULT_USER_AGENT: &str = "Mozilla/5.0 (compatible; favicon-finder/0.1)";

/// How the finder fetches: limits, safety switches and the test resolution seam.
#[derive(Debug, Clone)]
pub struct FinderConfig {
    /// Whole-domain deadline: everything for one domain happens within it, on the site's own
    /// clock (waits for our politeness slots are not counted).
    pub timeout: Duration,
    /// The most time one domain may wait for politeness slots, in total, on top of `timeout`;
    /// past it the domain fails as a transient `timeout`, so a worker slot is never held
    /// forever.
    pub max_slot_wait: Duration,
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
    /// How long a host that refused https while http worked is fetched over http first
    /// (zero: never remembered).
    pub https_refusal_ttl: Duration,
}

/// The defaults of the settings (see `src/config/mod.rs`): production-safe, no resolution rules.
impl Default for FinderConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(15),
            max_slot_wait: Duration::from_secs(120),
            allow_private_networks: false,
            resolve: Vec::new(),
            extra_root_certs: None,
            user_agent: DEFAULT_USER_AGENT.to_owned(),
            per_host_concurrency: 4,
            per_address_concurrency: 16,
            dns_servers: Vec::new(),
            dns_max_inflight: 256,
            dns_timeout: Duration::from_secs(5),
            icon_max_bytes: 256 * 1024,
            https_refusal_ttl: Duration::from_secs(600),
        }
    }
}

impl FinderConfig {
    /// How long one request can hold its politeness slots: its own bound (the whole-domain
    /// deadline, never more than [`fetch::MAX_REQUEST_TIME`]) and a margin for what its caller
    /// does with the answer. A fleet's leases on slots last this long, so a dead process's
    /// slots come back.
    pub fn max_slot_hold(&self) -> Duration {
        self.timeout.min(fetch::MAX_REQUEST_TIME) + SLOT_HOLD_MARGIN
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

/// Finds favicons; cheap to clone, one per process is enough (it holds the connection pool).
#[derive(Clone)]
pub struct Finder {
    fetcher: Arc<fetch::Fetcher>,
    config: Arc<FinderConfig>,
}

/// Past a request's own time limit, how long its caller may still hold its slots: the body is
/// read within the limit, and what follows (parsing, decoding the image) is CPU work that a
/// busy machine can slow down.
const SLOT_HOLD_MARGIN: Duration = Duration::from_secs(5);

/// Slack past a find's longest time that the hard backstop allows before giving up on it.
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

    /// A finder whose requests also take the fleet's politeness slots (see
    /// [`fetch::FleetSlots`]), so the per-host and per-address limits hold across processes.
    pub fn with_fleet(
        config: FinderConfig,
        fleet: Arc<dyn fetch::FleetSlots>,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            fetcher: Arc::new(fetch::Fetcher::new(&config)?.with_fleet(fleet)),
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

    /// The longest one find can take in real time: the site's deadline, all the waiting for
    /// slots it may do, and a little slack. Callers that bound a find from outside (the
    /// worker's backstop) must allow at least this.
    pub fn max_find_time(&self) -> Duration {
        self.config.timeout + self.config.max_slot_wait + DEADLINE_SLACK
    }

    /// Finds the favicon of one already-normalised domain (lowercase ASCII hostname, e.g.
    /// "example.com"). Never panics on hostile input, always returns within
    /// [`Finder::max_find_time`].
    pub async fn find(&self, domain: &str) -> FindOutcome {
        let timeout = self.config.timeout;
        let deadline = clock::Deadline::start(timeout, self.config.max_slot_wait);
        let backstop = self.max_find_time();
        let fetcher = self.fetcher.clone();
        let keep = self.config.icon_max_bytes;
        let domain = domain.to_string();
        // A task of its own so that a panic deep in a dependency becomes `Internal` instead of
        // taking the worker down.
        // The caller's Sentry hub (tagged with the job and domain) goes along into the task,
        // so a panic in there is reported with them.
        // So does the caller's span: the find's requests are its children (and, when the
        // caller's trace is not sampled, they are not built: the task is as quiet as it).
        let hub = sentry::Hub::current();
        let work = async move {
            tokio::select! {
                outcome = pipeline::find(&fetcher, &domain, &deadline, keep) => outcome,
                () = deadline.passed() => Err(timeout_error(timeout)),
            }
        };
        let work = crate::quiet::as_quiet_as_now(tracing::Instrument::instrument(
            work,
            tracing::Span::current(),
        ));
        let mut task = AbortOnDrop(tokio::spawn(sentry::SentryFutureExt::bind_hub(work, hub)));
        match tokio::time::timeout(backstop, &mut task.0).await {
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
