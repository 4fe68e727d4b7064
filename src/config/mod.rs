//! Configuration: every variable the service reads, in one place.
//!
//! Values come from the process environment, after an optional `.env` file has been loaded by
//! `main`. Each key is documented here and in `.env.template`; a value that does not parse stops
//! start-up with an error naming the variable, so a typo never silently falls back to a default.

use crate::finder::resolve::parse_dns_servers;
use crate::finder::{self, FinderConfig, ResolveRule, parse_resolve_rules};
use crate::redact::redact_url;
use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

mod parse;
mod traces;
mod values;
use parse::{Vars, check_redis_url, parse_proxy_headers, parse_public_url};
pub use parse::{parse_hosts, parse_origins};
pub use traces::{DEFAULT_SERVICE_NAME, OtlpProtocol, Sampler, TracesConfig};
pub use values::{AuthMode, ConfigError, IconStore, LogFormat, ProxyHeader};

/// The default SQLite file, created on first start in the working directory.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://favicon-finder.db?mode=rwc";

pub use crate::finder::DEFAULT_USER_AGENT;

/// The longest legal domain entry as it appears in a job's JSON: a 253-octet hostname, its
/// two quotes and the comma after it.
pub const MAX_ENTRY_JSON_BYTES: usize = 253 + 2 + 1;
/// Room in a job request for everything besides the domain entries (`client_id` of at most
/// 255 characters, `max_age_seconds`, keys, brackets, whitespace), generously.
pub const REQUEST_OVERHEAD_BYTES: usize = 64 * 1024;
/// `WORKER_MAX_SHARE_PER_JOB`'s default. With [`DEFAULT_WORKER_CONCURRENCY`] it lets a lone
/// job hold 409 slots and keeps 103 for other jobs, so a job of silent sites cannot take them
/// all (README, "Fair claims").
pub const DEFAULT_JOB_SHARE: f64 = 0.8;
/// `WORKER_CONCURRENCY`'s default: the most domains in flight measured to keep ≥ 90 % of the
/// ideal throughput on the slow web (heavy-tailed latency, mean domain time about 0.58 s)
/// within 0.6 cores and 70 MB; 1,000 stayed at 56–81 % (BENCHMARKS.md, issue 29).
pub const DEFAULT_WORKER_CONCURRENCY: usize = 512;
/// The largest `MAX_REQUEST_BYTES` accepted, set or derived (1 GiB).
pub const MAX_REQUEST_BYTES_CEILING: usize = 1024 * 1024 * 1024;

/// The default `MAX_REQUEST_BYTES`: the largest legal job of `max_domains` entries,
/// `max_domains × 256 + 64 KiB` (25,665,536 bytes for the default 100,000 domains), capped at
/// 1 GiB. A body of legal entries written without escapes or padding always fits.
pub fn default_max_request_bytes(max_domains: usize) -> usize {
    max_domains
        .saturating_mul(MAX_ENTRY_JSON_BYTES)
        .saturating_add(REQUEST_OVERHEAD_BYTES)
        .min(MAX_REQUEST_BYTES_CEILING)
}

/// The whole configuration of one process. `PartialEq` lets a test check the documented
/// defaults by behaviour (tests/api/config_docs.rs).
#[derive(Clone, PartialEq)]
pub struct Config {
    /// `DATABASE_URL`: SQLite (`sqlite://…`) or PostgreSQL (`postgres://…`).
    pub database_url: String,
    /// `DATABASE_POOL_SIZE`: connections per process (PostgreSQL; SQLite uses what it needs).
    pub database_pool_size: u32,
    /// `REDIS_URL`: Redis for events and wake-ups across processes; `None` means in-process.
    pub redis_url: Option<String>,
    /// `REDIS_CA_CERT`: PEM file of the CA that signed the Redis server's certificate, for
    /// `rediss://` (unset: the system's roots).
    pub redis_ca_cert: Option<PathBuf>,
    /// `REDIS_PREFIX`: the start of every channel name, so deployments can share a Redis.
    pub redis_prefix: String,
    /// `HOST`: the address the API listens on.
    pub host: IpAddr,
    /// `PORT`: the port the API listens on (0 picks a free one).
    pub port: u16,
    /// `WORKER_HTTP_PORT`: where a `worker` process serves `/healthz`, `/readyz` and
    /// `/metrics` (unset: it listens on no port).
    pub worker_http_port: Option<u16>,
    /// `WORKER_CONCURRENCY`: domains fetched at once by this process (0: no worker pool).
    pub worker_concurrency: usize,
    /// `WORKER_MAX_SHARE_PER_JOB`: the fraction of this process's slots one job may hold
    /// (at least one slot), so a job of slow or silent sites cannot take them all.
    pub worker_max_share_per_job: f64,
    /// `WORKER_LEASE_SECS`: how long a claimed row stays reserved without a heartbeat.
    pub worker_lease: Duration,
    /// `WORKER_POLL_MS`: how often an idle worker looks for work without a wake-up signal.
    pub worker_poll: Duration,
    /// `FETCH_TIMEOUT_SECS`: the whole-domain deadline, on the site's own clock (waits for our
    /// politeness slots are not counted).
    pub fetch_timeout: Duration,
    /// `FETCH_SLOT_WAIT_SECS`: the most time one domain may wait for politeness slots, in total;
    /// past it the domain fails as a transient `timeout` (retried), so a worker slot is never
    /// held forever by our own queue.
    pub fetch_slot_wait: Duration,
    /// `FETCH_MAX_TRIES`: tries before a transient failure is final.
    pub fetch_max_tries: u32,
    /// `FETCH_RETRY_BACKOFF_MS`: the first retry delay; later ones double, with jitter.
    pub fetch_retry_backoff: Duration,
    /// `FETCH_ALLOW_PRIVATE_NETWORKS`: allow loopback/private targets (tests, intranets).
    pub fetch_allow_private_networks: bool,
    /// `FETCH_EXTRA_ROOT_CERTS`: PEM file of extra trusted CAs, for fetches and webhook
    /// deliveries alike.
    pub fetch_extra_root_certs: Option<PathBuf>,
    /// `FETCH_RESOLVE`: `HOST=IP:PORT,…` overrides of name resolution (`*` = any host).
    pub fetch_resolve: Vec<ResolveRule>,
    /// `FETCH_USER_AGENT`: the User-Agent sent to sites.
    pub fetch_user_agent: String,
    /// `FETCH_PER_HOST_CONCURRENCY`: requests in flight to one host at most, per process.
    pub fetch_per_host_concurrency: usize,
    /// `FETCH_PER_ADDRESS_CONCURRENCY`: requests in flight to one resolved IP address at most,
    /// per process, whatever names point at it.
    pub fetch_per_address_concurrency: usize,
    /// `FETCH_DNS_SERVERS`: `IP:PORT,…` name servers used instead of the system's
    /// configuration (empty: `/etc/resolv.conf`).
    pub fetch_dns_servers: Vec<SocketAddr>,
    /// `FETCH_DNS_MAX_INFLIGHT`: DNS lookups in flight at once, per process.
    pub fetch_dns_max_inflight: usize,
    /// `FETCH_DNS_TIMEOUT_MS`: how long one DNS lookup may take.
    pub fetch_dns_timeout: Duration,
    /// `FETCH_HTTPS_REFUSAL_TTL_SECS`: how long a host that refused https while http worked
    /// is fetched over http first (0: never).
    pub fetch_https_refusal_ttl: Duration,
    /// `CACHE_MAX_AGE_SECS`: reuse a domain's success from an earlier job fetched at most this
    /// long ago (0: always fetch); a job may ask for less or more.
    pub cache_max_age: Duration,
    /// `CACHE_FAILURE_MAX_AGE_SECS`: the same for permanent failures (never longer than the
    /// success age; transient failures are never reused).
    pub cache_failure_max_age: Duration,
    /// `RETENTION_DAYS`: finished jobs last updated longer ago than this many days are purged
    /// with their results (0: keep everything).
    pub retention_days: u64,
    /// `RETENTION_INTERVAL_SECS`: how often the retention task looks for work.
    pub retention_interval: Duration,
    /// `RETENTION_BATCH_ROWS`: result rows deleted per transaction (retention and deletes).
    pub retention_batch_rows: usize,
    /// `MAX_DOMAINS_PER_JOB`: the most domains one job may hold.
    pub max_domains_per_job: usize,
    /// `RATE_LIMIT_JOBS_PER_HOUR`: jobs one client may create per rolling hour (0: no limit).
    pub rate_limit_jobs_per_hour: u64,
    /// `RATE_LIMIT_DOMAINS_PER_HOUR`: domains one client may submit per rolling hour (0: no
    /// limit).
    pub rate_limit_domains_per_hour: u64,
    /// `GRAPHQL_MAX_DEPTH`: the deepest GraphQL query accepted.
    pub graphql_max_depth: usize,
    /// `GRAPHQL_MAX_COMPLEXITY`: the most fields a GraphQL query may select.
    pub graphql_max_complexity: usize,
    /// `WS_MAX_SUBSCRIPTIONS`: operations (subscriptions, queries, mutations) one WebSocket
    /// connection may run at once.
    pub ws_max_subscriptions: usize,
    /// `WS_MAX_SUBSCRIPTIONS_PER_IP`: subscriptions one client address (IPv6: its /64) may
    /// run at once across all its connections, so more connections buy no more of them.
    pub ws_max_subscriptions_per_ip: usize,
    /// `WS_MAX_SUBSCRIPTIONS_PER_KEY`: subscriptions one API key may run at once across all
    /// its connections and addresses.
    pub ws_max_subscriptions_per_key: usize,
    /// `MAX_REQUEST_BYTES`: the largest request body the API accepts (default: sized to the
    /// largest legal job, see [`default_max_request_bytes`]).
    pub max_request_bytes: usize,
    /// `EXPORT_CHUNK_BYTES`: the most CSV one chunk of the export holds (a longer row is a
    /// chunk of its own).
    pub export_chunk_bytes: usize,
    /// `WS_MAX_MESSAGE_BYTES`: the largest WebSocket message (and frame) a client may send.
    pub ws_max_message_bytes: usize,
    /// `WS_MAX_CONNECTIONS`: open WebSocket connections this process accepts in all.
    pub ws_max_connections: usize,
    /// `WS_MAX_CONNECTIONS_PER_IP`: open WebSocket connections from one client address.
    pub ws_max_connections_per_ip: usize,
    /// `WS_INIT_TIMEOUT_MS`: how long a new WebSocket may take to send `connection_init`.
    pub ws_init_timeout: Duration,
    /// `WS_PING_INTERVAL_MS`: how often an open WebSocket is pinged.
    pub ws_ping_interval: Duration,
    /// `WS_IDLE_TIMEOUT_MS`: a WebSocket that sends nothing (not even a pong) for this long is
    /// closed.
    pub ws_idle_timeout: Duration,
    /// `HTTP_HEADER_TIMEOUT_MS`: how long a client may take to send a request's headers once
    /// the connection waits for a request.
    pub http_header_timeout: Duration,
    /// `HTTP_IDLE_TIMEOUT_MS`: an HTTP connection with no traffic for this long is closed
    /// (after any response in flight).
    pub http_idle_timeout: Duration,
    /// `HTTP_BODY_TIMEOUT_MS`: how long a request's whole body may take to arrive, however it
    /// trickles.
    pub http_body_timeout: Duration,
    /// `RUN_MIGRATIONS`: apply migrations at start of `serve` and `worker`.
    pub run_migrations: bool,
    /// `SENTRY_DSN`: where to report errors and panics; unset means no reporting.
    pub sentry_dsn: Option<String>,
    /// `SENTRY_ENVIRONMENT`: the environment name shown in Sentry.
    pub sentry_environment: Option<String>,
    /// `SENTRY_TRACES_SAMPLE_RATE`: share of worker batches sent as transactions (0 to 1).
    pub sentry_traces_sample_rate: f32,
    /// The `OTEL_*` settings: where spans are exported, or `None` when traces are off.
    pub traces: Option<TracesConfig>,
    /// `LOG_FORMAT`: `text` (default) or `json`.
    pub log_format: LogFormat,
    /// `SHUTDOWN_GRACE_SECS`: how long a stopping process finishes in-flight work.
    pub shutdown_grace: Duration,
    /// `ICON_STORE`: keep the chosen icon's bytes (`chosen`) or not (`off`).
    pub icon_store: IconStore,
    /// `ICON_MAX_BYTES`: the largest icon whose bytes are kept.
    pub icon_max_bytes: usize,
    /// `ICON_CACHE_CONTROL`: the `Cache-Control` of every `/icons/{domain}` answer.
    pub icon_cache_control: String,
    /// `ICON_FIND_TIMEOUT_MS`: how long `/icons/{domain}?find=1` waits for the finder.
    pub icon_find_timeout: Duration,
    /// `ICONS_PUBLIC`: serve stored icons without credentials (`<img>` cannot send headers).
    pub icons_public: bool,
    /// `ICON_RESIZE_CACHE_BYTES`: memory for resized icons kept for the next request (0: none).
    pub icon_resize_cache_bytes: u64,
    /// `ICON_RENDER_MS_PER_MINUTE`: time each caller (a key's client, or an address without a
    /// key) may spend resizing icons per minute; over it, 429.
    pub icon_render_per_minute: Duration,
    /// `ICON_REFRESH_AFTER_SECS`: how old the decisive fetch `GET /icons/{domain}` serves may
    /// be before the request also starts a background re-find (stale-while-revalidate).
    pub icon_refresh_after: Duration,
    /// `ICON_REFRESH_PER_MINUTE`: refreshes (`POST /icons/{domain}/refresh`, `refreshIcon`)
    /// each client (or address without a key) may ask for per minute; over it, 429.
    pub icon_refresh_per_minute: u32,
    /// `AUTH_MODE`: whether requests need an API key (unset: `off` on a loopback `HOST`,
    /// `required` otherwise).
    pub auth_mode: AuthMode,
    /// `BOOTSTRAP_API_KEY` (secret): an admin key created (or kept) at start, so a container
    /// fleet needs no manual step before its first request.
    pub bootstrap_api_key: Option<String>,
    /// `CORS_ALLOWED_ORIGINS`: exact origins (`https://app.example.com`) a browser may call
    /// from, and open WebSockets from; empty: no cross-origin access.
    pub cors_allowed_origins: Vec<String>,
    /// `ALLOWED_HOSTS`: the names requests may be addressed to (`Host`) besides `PUBLIC_URL`'s,
    /// IP addresses and `localhost`; `*`: any (no DNS-rebinding guard).
    pub allowed_hosts: Vec<String>,
    /// `METRICS_TOKEN` (secret): the bearer token `/metrics` requires, when set.
    pub metrics_token: Option<String>,
    /// `OPS_ADDR`: a separate listener for `/metrics`, `/healthz` and `/readyz`; when set, the
    /// API listener no longer serves `/metrics`.
    pub ops_addr: Option<SocketAddr>,
    /// `GRAPHIQL`: serve the GraphiQL page on `GET /graphql` (unset: only when auth is off).
    pub graphiql: bool,
    /// `INTROSPECTION`: answer GraphQL introspection queries (unset: only when auth is off).
    pub introspection: bool,
    /// `DOWNLOAD_URL_SECRET` (secret): the HMAC key of signed download links (unset: a random
    /// key per process, so links do not survive a restart or work on another replica).
    pub download_url_secret: Option<String>,
    /// `DOWNLOAD_URL_TTL_SECS`: how long a signed download link works.
    pub download_url_ttl: Duration,
    /// The `WEBHOOK_*` settings.
    pub webhooks: WebhookConfig,
    /// The `WATCH_*` settings.
    pub watches: WatchConfig,
    /// `PUBLIC_URL`: where clients reach the API (`https://favicons.example.com`, no trailing
    /// slash); download links are absolute under it (unset: paths such as `/jobs/…`).
    pub public_url: Option<String>,
    /// `TRUSTED_PROXY_HEADERS`: headers that carry the client's address from a trusted proxy,
    /// for per-address limits (empty: the TCP peer's address).
    pub trusted_proxy_headers: Vec<ProxyHeader>,
}

/// Sending events to clients' webhook endpoints (`WEBHOOK_*`).
#[derive(Clone, PartialEq)]
pub struct WebhookConfig {
    /// `WEBHOOK_SECRET_KEY`: 32 bytes in base64 that seal the endpoints' secrets in the
    /// database; without it no endpoint can be registered.
    pub secret_key: Option<String>,
    /// `WEBHOOK_MAX_ATTEMPTS`: attempts per event, the first included.
    pub max_attempts: u32,
    /// `WEBHOOK_RETRY_BASE_MS`: the wait after the first failed attempt; each next one is
    /// three times longer.
    pub retry_base: Duration,
    /// `WEBHOOK_RETRY_MAX_SECS`: the longest wait between attempts.
    pub retry_max: Duration,
    /// `WEBHOOK_TIMEOUT_SECS`: one attempt's whole time, connecting included.
    pub timeout: Duration,
    /// `WEBHOOK_DISABLE_AFTER_SECS`: an endpoint whose attempts have all failed for this long
    /// is disabled.
    pub disable_after: Duration,
    /// `WEBHOOK_ROTATION_OVERLAP_SECS`: how long a rotated-out secret keeps signing.
    pub rotation_overlap: Duration,
    /// `WEBHOOK_CONCURRENCY`: attempts in flight per worker process (0: it sends none).
    pub concurrency: usize,
    /// `WEBHOOK_PROGRESS_INTERVAL_SECS`: the least time between two `job.progress` events of
    /// one job to one endpoint.
    pub progress_interval: Duration,
    /// `WEBHOOK_POLL_MS`: how often a worker looks for due deliveries.
    pub poll: Duration,
}

/// Watches: re-checking clients' domains on a schedule (`WATCH_*`).
#[derive(Clone, Debug, PartialEq)]
pub struct WatchConfig {
    /// `WATCH_TICK_MS`: how often each worker process looks for due watched domains (and a
    /// subscription for new changes).
    pub tick: Duration,
    /// `WATCH_MIN_EVERY_SECS`: the shortest period a watch may ask for.
    pub min_every: Duration,
    /// `WATCH_MAX_DOMAINS`: the most domains one client's watches may hold together.
    pub max_domains: usize,
    /// `WATCH_CHECK_RETENTION_HOURS`: a finished check job is purged this long after it ended.
    pub check_retention: Duration,
    /// `WATCH_HISTORY_DAYS`: recorded icon changes are kept this long.
    pub history: Duration,
}

impl Config {
    /// Reads the configuration from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(std::env::vars().collect())
    }

    /// Reads the configuration from a map of variables (the environment, or a test's own).
    pub fn from_vars(vars: HashMap<String, String>) -> Result<Self, ConfigError> {
        let env = Vars(vars);
        let max_domains_per_job = env.parse_in("MAX_DOMAINS_PER_JOB", 100_000, 1..=10_000_000)?;
        let largest_job = default_max_request_bytes(max_domains_per_job);
        // Loopback by default: `cargo run` must keep working without a key, and a keyless
        // service must not be reachable from the network unless someone says so.
        let host = env.parse("HOST", IpAddr::from([127, 0, 0, 1]))?;
        let auth_mode = auth_mode(&env, host)?;
        let job_share = env.fraction("WORKER_MAX_SHARE_PER_JOB", DEFAULT_JOB_SHARE)?;
        // Browsing the schema is a convenience for a local, keyless service; behind keys it
        // is something to switch on deliberately.
        let open_by_default = auth_mode == AuthMode::Off;
        Ok(Self {
            database_url: env.string("DATABASE_URL", DEFAULT_DATABASE_URL),
            database_pool_size: env.parse_in("DATABASE_POOL_SIZE", 10, 1..=1000)?,
            redis_url: env.optional("REDIS_URL").map(check_redis_url).transpose()?,
            redis_ca_cert: env.optional("REDIS_CA_CERT").map(PathBuf::from),
            redis_prefix: env.string("REDIS_PREFIX", "favicon-finder"),
            host,
            port: env.parse("PORT", 3000)?,
            worker_http_port: env.parse_opt("WORKER_HTTP_PORT")?,
            worker_concurrency: env.parse_in(
                "WORKER_CONCURRENCY",
                DEFAULT_WORKER_CONCURRENCY,
                0..=10_000,
            )?,
            worker_max_share_per_job: job_share,
            worker_lease: env.secs("WORKER_LEASE_SECS", 60, 1..=86_400)?,
            worker_poll: env.millis_in("WORKER_POLL_MS", 1000, 10..=600_000)?,
            fetch_timeout: env.secs("FETCH_TIMEOUT_SECS", 15, 1..=600)?,
            fetch_slot_wait: env.secs("FETCH_SLOT_WAIT_SECS", 120, 1..=3600)?,
            fetch_max_tries: env.parse_in("FETCH_MAX_TRIES", 3, 1..=100)?,
            fetch_retry_backoff: env.millis_in("FETCH_RETRY_BACKOFF_MS", 5000, 0..=3_600_000)?,
            fetch_allow_private_networks: env.bool("FETCH_ALLOW_PRIVATE_NETWORKS", false)?,
            fetch_extra_root_certs: env.optional("FETCH_EXTRA_ROOT_CERTS").map(PathBuf::from),
            fetch_resolve: env.list("FETCH_RESOLVE", parse_resolve_rules)?,
            fetch_user_agent: env.string("FETCH_USER_AGENT", DEFAULT_USER_AGENT),
            fetch_per_host_concurrency: env.parse_in("FETCH_PER_HOST_CONCURRENCY", 4, 1..=1000)?,
            fetch_per_address_concurrency: env.count(
                "FETCH_PER_ADDRESS_CONCURRENCY",
                16,
                10_000,
            )?,
            fetch_dns_servers: env.list("FETCH_DNS_SERVERS", parse_dns_servers)?,
            fetch_dns_max_inflight: env.parse_in("FETCH_DNS_MAX_INFLIGHT", 256, 1..=100_000)?,
            fetch_dns_timeout: env.millis_in("FETCH_DNS_TIMEOUT_MS", 5000, 50..=60_000)?,
            fetch_https_refusal_ttl: env.secs("FETCH_HTTPS_REFUSAL_TTL_SECS", 600, 0..=86_400)?,
            cache_max_age: env.secs("CACHE_MAX_AGE_SECS", 86_400, 0..=31_536_000)?,
            cache_failure_max_age: env.secs("CACHE_FAILURE_MAX_AGE_SECS", 3_600, 0..=31_536_000)?,
            retention_days: env.parse_in("RETENTION_DAYS", 30, 0..=36_500)?,
            retention_interval: env.secs("RETENTION_INTERVAL_SECS", 3_600, 1..=604_800)?,
            retention_batch_rows: env.parse_in("RETENTION_BATCH_ROWS", 2_000, 1..=100_000)?,
            max_domains_per_job,
            rate_limit_jobs_per_hour: env.parse("RATE_LIMIT_JOBS_PER_HOUR", 600)?,
            rate_limit_domains_per_hour: env.parse("RATE_LIMIT_DOMAINS_PER_HOUR", 1_000_000)?,
            graphql_max_depth: env.parse_in("GRAPHQL_MAX_DEPTH", 16, 2..=1000)?,
            graphql_max_complexity: env.parse_in(
                "GRAPHQL_MAX_COMPLEXITY",
                10_000,
                10..=10_000_000,
            )?,
            ws_max_subscriptions: env.parse_in("WS_MAX_SUBSCRIPTIONS", 10, 1..=10_000)?,
            ws_max_subscriptions_per_ip: env.client_cap("WS_MAX_SUBSCRIPTIONS_PER_IP", 100)?,
            ws_max_subscriptions_per_key: env.client_cap("WS_MAX_SUBSCRIPTIONS_PER_KEY", 100)?,
            max_request_bytes: env.parse_in(
                "MAX_REQUEST_BYTES",
                largest_job,
                KIB..=MAX_REQUEST_BYTES_CEILING,
            )?,
            export_chunk_bytes: env.parse_in("EXPORT_CHUNK_BYTES", MIB, KIB..=256 * MIB)?,
            ws_max_message_bytes: env.parse_in("WS_MAX_MESSAGE_BYTES", 64 * KIB, KIB..=64 * MIB)?,
            ws_max_connections: env.parse_in("WS_MAX_CONNECTIONS", 10_000, 1..=1_000_000)?,
            ws_max_connections_per_ip: env.client_cap("WS_MAX_CONNECTIONS_PER_IP", 1_000)?,
            ws_init_timeout: env.millis("WS_INIT_TIMEOUT_MS", 10_000)?,
            ws_ping_interval: env.millis("WS_PING_INTERVAL_MS", 15_000)?,
            ws_idle_timeout: env.millis("WS_IDLE_TIMEOUT_MS", 45_000)?,
            http_header_timeout: env.millis("HTTP_HEADER_TIMEOUT_MS", 10_000)?,
            http_idle_timeout: env.millis("HTTP_IDLE_TIMEOUT_MS", 60_000)?,
            http_body_timeout: env.millis("HTTP_BODY_TIMEOUT_MS", 120_000)?,
            run_migrations: env.bool("RUN_MIGRATIONS", true)?,
            sentry_dsn: env.optional("SENTRY_DSN"),
            sentry_environment: env.optional("SENTRY_ENVIRONMENT"),
            sentry_traces_sample_rate: env.share("SENTRY_TRACES_SAMPLE_RATE", 0.05)?,
            traces: traces::traces(&env)?,
            log_format: env.choice("LOG_FORMAT", LOG_FORMATS, LogFormat::Text)?,
            shutdown_grace: env.secs("SHUTDOWN_GRACE_SECS", 30, 0..=3600)?,
            icon_store: env.choice("ICON_STORE", ICON_STORES, IconStore::Chosen)?,
            // The finder reads at most ICON_CAP bytes of an icon, so more could never be kept.
            icon_max_bytes: env.parse_in("ICON_MAX_BYTES", 256 * KIB, KIB..=finder::ICON_CAP)?,
            icon_cache_control: env.header_value("ICON_CACHE_CONTROL", "public, max-age=86400")?,
            icon_find_timeout: env.millis("ICON_FIND_TIMEOUT_MS", 10_000)?,
            icons_public: env.bool("ICONS_PUBLIC", true)?,
            icon_resize_cache_bytes: env.parse_in("ICON_RESIZE_CACHE_BYTES", 16 << 20, 0..=GIB)?,
            icon_render_per_minute: env.millis("ICON_RENDER_MS_PER_MINUTE", 10_000)?,
            icon_refresh_after: env.secs("ICON_REFRESH_AFTER_SECS", 604_800, 1..=31_536_000)?,
            icon_refresh_per_minute: env.parse_in("ICON_REFRESH_PER_MINUTE", 10, 1..=100_000)?,
            auth_mode,
            bootstrap_api_key: env.secret("BOOTSTRAP_API_KEY")?,
            cors_allowed_origins: env.list("CORS_ALLOWED_ORIGINS", parse_origins)?,
            allowed_hosts: env.list("ALLOWED_HOSTS", parse_hosts)?,
            metrics_token: env.secret("METRICS_TOKEN")?,
            ops_addr: env.parse_opt("OPS_ADDR")?,
            graphiql: env.bool("GRAPHIQL", open_by_default)?,
            introspection: env.bool("INTROSPECTION", open_by_default)?,
            download_url_secret: env.secret("DOWNLOAD_URL_SECRET")?,
            download_url_ttl: env.secs("DOWNLOAD_URL_TTL_SECS", 900, 10..=86_400)?,
            public_url: env.checked("PUBLIC_URL", parse_public_url)?,
            trusted_proxy_headers: env.list("TRUSTED_PROXY_HEADERS", parse_proxy_headers)?,
            webhooks: webhooks(&env)?,
            watches: watches(&env)?,
        })
    }

    /// The finder's share of the configuration.
    pub fn finder(&self) -> FinderConfig {
        FinderConfig {
            timeout: self.fetch_timeout,
            max_slot_wait: self.fetch_slot_wait,
            allow_private_networks: self.fetch_allow_private_networks,
            resolve: self.fetch_resolve.clone(),
            extra_root_certs: self.fetch_extra_root_certs.clone(),
            user_agent: self.fetch_user_agent.clone(),
            per_host_concurrency: self.fetch_per_host_concurrency,
            per_address_concurrency: self.fetch_per_address_concurrency,
            dns_servers: self.fetch_dns_servers.clone(),
            dns_max_inflight: self.fetch_dns_max_inflight,
            dns_timeout: self.fetch_dns_timeout,
            https_refusal_ttl: self.fetch_https_refusal_ttl,
            icon_max_bytes: match self.icon_store {
                IconStore::Chosen => self.icon_max_bytes,
                IconStore::Off => 0,
            },
        }
    }
}

/// A kibibyte, for the byte-sized settings.
const KIB: usize = 1024;
/// A mebibyte.
const MIB: usize = 1024 * KIB;

/// A gibibyte, for the memory budgets counted in `u64`.
const GIB: u64 = 1 << 30;

/// The words `ICON_STORE` takes.
const ICON_STORES: &[(&str, IconStore)] = &[("chosen", IconStore::Chosen), ("off", IconStore::Off)];
/// The words `LOG_FORMAT` takes.
const LOG_FORMATS: &[(&str, LogFormat)] = &[("text", LogFormat::Text), ("json", LogFormat::Json)];

/// The `WEBHOOK_*` settings. The retry defaults (5 s growing threefold to 6 h, 12 attempts)
/// keep trying for about 22 hours.
fn webhooks(env: &Vars) -> Result<WebhookConfig, ConfigError> {
    let secret_key = env.checked("WEBHOOK_SECRET_KEY", check_webhook_key)?;
    Ok(WebhookConfig {
        secret_key,
        max_attempts: env.parse_in("WEBHOOK_MAX_ATTEMPTS", 12, 1..=100)?,
        retry_base: env.millis_in("WEBHOOK_RETRY_BASE_MS", 5_000, 10..=3_600_000)?,
        retry_max: env.secs("WEBHOOK_RETRY_MAX_SECS", 21_600, 1..=604_800)?,
        timeout: env.secs("WEBHOOK_TIMEOUT_SECS", 10, 1..=120)?,
        disable_after: env.secs("WEBHOOK_DISABLE_AFTER_SECS", 432_000, 1..=31_536_000)?,
        rotation_overlap: env.secs("WEBHOOK_ROTATION_OVERLAP_SECS", 86_400, 0..=2_592_000)?,
        concurrency: env.parse_in("WEBHOOK_CONCURRENCY", 16, 0..=1_000)?,
        progress_interval: env.secs("WEBHOOK_PROGRESS_INTERVAL_SECS", 60, 1..=86_400)?,
        poll: env.millis_in("WEBHOOK_POLL_MS", 250, 10..=60_000)?,
    })
}

/// The `WATCH_*` settings: an hourly minimum period, 100,000 watched domains per client, a
/// day of check jobs and 90 days of changes.
fn watches(env: &Vars) -> Result<WatchConfig, ConfigError> {
    Ok(WatchConfig {
        tick: env.millis_in("WATCH_TICK_MS", 1_000, 10..=60_000)?,
        min_every: env.secs("WATCH_MIN_EVERY_SECS", 3_600, 1..=2_592_000)?,
        max_domains: env.parse_in("WATCH_MAX_DOMAINS", 100_000, 1..=10_000_000)?,
        check_retention: Duration::from_secs(
            3_600 * env.parse_in("WATCH_CHECK_RETENTION_HOURS", 24u64, 1..=8_760)?,
        ),
        history: Duration::from_secs(
            86_400 * env.parse_in("WATCH_HISTORY_DAYS", 90u64, 1..=36_500)?,
        ),
    })
}

/// `WEBHOOK_SECRET_KEY` must be 32 bytes in base64; the value itself is never echoed.
fn check_webhook_key(value: &str) -> Result<String, String> {
    use base64::Engine;
    match base64::engine::general_purpose::STANDARD.decode(value.trim()) {
        Ok(bytes) if bytes.len() == 32 => Ok(value.trim().to_owned()),
        Ok(bytes) => Err(format!(
            "decodes to {} bytes; it must be 32 (make one with `openssl rand -base64 32`)",
            bytes.len()
        )),
        Err(_) => Err("is not base64 (make one with `openssl rand -base64 32`)".into()),
    }
}

/// `AUTH_MODE`, whose default follows `HOST`: off on loopback, required anywhere else.
fn auth_mode(env: &Vars, host: IpAddr) -> Result<AuthMode, ConfigError> {
    let words = [("required", AuthMode::Required), ("off", AuthMode::Off)];
    Ok(match env.choice_opt("AUTH_MODE", &words)? {
        Some(mode) => mode,
        None if host.is_loopback() => AuthMode::Off,
        None => AuthMode::Required,
    })
}

/// Never print credentials: URLs may carry passwords.
impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("database_url", &redact_url(&self.database_url))
            .field("redis_url", &self.redis_url.as_deref().map(redact_url))
            .field("redis_ca_cert", &self.redis_ca_cert)
            .field("sentry_dsn", &self.sentry_dsn.as_ref().map(|_| "***"))
            .field(
                "bootstrap_api_key",
                &self.bootstrap_api_key.as_ref().map(|_| "***"),
            )
            .field("metrics_token", &self.metrics_token.as_ref().map(|_| "***"))
            .field(
                "download_url_secret",
                &self.download_url_secret.as_ref().map(|_| "***"),
            )
            .field(
                "webhook_secret_key",
                &self.webhooks.secret_key.as_ref().map(|_| "***"),
            )
            .field(
                "traces_endpoint",
                &self.traces.as_ref().map(|t| redact_url(&t.endpoint)),
            )
            .field("auth_mode", &self.auth_mode)
            .field("cors_allowed_origins", &self.cors_allowed_origins)
            .field("allowed_hosts", &self.allowed_hosts)
            .field("ops_addr", &self.ops_addr)
            .field("public_url", &self.public_url)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("worker_concurrency", &self.worker_concurrency)
            .field("worker_max_share_per_job", &self.worker_max_share_per_job)
            .field("fetch_timeout", &self.fetch_timeout)
            .field("fetch_max_tries", &self.fetch_max_tries)
            .field(
                "fetch_allow_private_networks",
                &self.fetch_allow_private_networks,
            )
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
