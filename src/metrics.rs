//! Prometheus metrics, served at `/metrics` in the text format.
//!
//! Counters and histograms are updated where things happen (worker, recorder, events,
//! subscriptions) and describe this process only, so they sum across a fleet. The gauges that
//! describe the database (jobs by status, queue depth) are fleet-wide: only API processes
//! serve them (a worker's `/metrics` carries process-local series only), read at most every
//! [`FLEET_GAUGES_TTL`] so frequent scrapes do not each run their `COUNT`s. Every API process
//! reports the same numbers: aggregate them with `max`, not `sum`.

#![expect(
    clippy::unwrap_used,
    reason = "metric definitions are constants: a bad one fails the first start and every test, never later"
)]

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// How long the fleet-wide gauges read from the database are reused between scrapes.
pub const FLEET_GAUGES_TTL: Duration = Duration::from_secs(5);

/// The most clients, and the most jobs, whose queue depth `/metrics` names one by one; the
/// rest are summed under [`OTHER`], so the series stay this many however many clients and
/// jobs there are.
pub const TOP_QUEUES: usize = 10;

/// The label of the clients or jobs past the [`TOP_QUEUES`] deepest.
pub const OTHER: &str = "other";

/// The outcomes `icon_renders_total` counts (see [`Metrics::icon_renders`]).
pub const ICON_RENDER_OUTCOMES: [&str; 6] = [
    "rendered",
    "refused",
    "failed",
    "timeout",
    "cached_failure",
    "over_budget",
];

/// The label of a request no route matched: the raw path is never a label, so the series
/// stay as many as the routes however many paths are asked for.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// The request methods named in labels; any other is counted as `_OTHER`, as the
/// OpenTelemetry conventions say, so a client inventing methods cannot add series.
const KNOWN_METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

/// The bounds of the request duration histograms: the OpenTelemetry conventions' advice for
/// `http.server.request.duration`.
const REQUEST_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// Every metric of one process, in its own registry (so tests can run many side by side).
/// The registry's namespace gives every name the `favicon_finder_` prefix, those other parts
/// register too (see [`Metrics::register`]).
pub struct Metrics {
    registry: Registry,
    /// HTTP requests by route template, method and status class (`2xx`…), time to the
    /// answer's head (a streamed body, such as a CSV, goes on after it).
    http_duration: HistogramVec,
    /// GraphQL queries and mutations by operation type and outcome (`ok`, `error`), over HTTP
    /// and WebSocket alike, from the parse to the response.
    graphql_duration: HistogramVec,
    /// Open WebSocket connections, read at scrape time.
    websocket_connections: IntGauge,
    /// Domains finished or retried, by outcome (`success`, `failed`, `retry`) and error code.
    pub domains: IntCounterVec,
    /// How long finding one domain took, whatever the outcome.
    pub fetch_seconds: Histogram,
    /// Domains being fetched right now.
    pub in_flight: IntGauge,
    /// Rows taken per claim.
    pub claim_batch: Histogram,
    /// Outcomes written per record transaction.
    pub record_batch: Histogram,
    /// Open `jobProgress` subscriptions.
    pub subscriptions: IntGauge,
    /// Redis commands that failed.
    pub redis_errors: IntCounter,
    /// Database re-reads for progress subscribers: one per watched job per silence, plus
    /// one per subscriber that fell too far behind its job's feed.
    pub progress_rereads: IntCounter,
    /// Progress events rendered for subscribers: once per event and distinct selection, not
    /// once per subscriber.
    pub progress_renders: IntCounter,
    /// Database operations of the worker that failed (and were retried).
    pub database_errors: IntCounter,
    /// Record writes that failed, by `kind`: `transient` (the batch is retried) or `permanent`
    /// (one row the database refused for good, recorded as failed instead).
    pub record_failures: IntCounterVec,
    /// Rows removed by the retention task, by `kind`: `jobs`, `results`, `icon_blobs`, and
    /// `cache_rows` (per-domain cache rows too old to reuse), `webhook_deliveries` (finished
    /// deliveries as old as the purged jobs, with their attempts).
    pub purged: IntCounterVec,
    /// The longest single transaction of the retention task's last pass that purged a job.
    pub purge_longest_transaction: Gauge,
    /// Resizes of stored icons (`/icons/{domain}?size=N`), by outcome: `rendered`, `refused`
    /// (measured too complex to draw), `failed` (undecodable), `timeout`, `cached_failure` (a
    /// failure remembered, answered without drawing), `over_budget` (the caller's render time
    /// is spent: 429).
    pub icon_renders: IntCounterVec,
    /// Webhook delivery attempts, by outcome: `delivered` (2xx), `retry` (failed, tried again
    /// later), `failed` (the last attempt failed), `refused` (the SSRF guard stopped it; retried
    /// like a failure).
    pub webhook_attempts: IntCounterVec,
    /// Webhook endpoints disabled for failing too long.
    pub webhooks_disabled: IntCounter,
    /// Jobs by status, read at scrape time.
    jobs: IntGaugeVec,
    /// Result rows not yet finished, by state (`queued`, `leased`), read at scrape time.
    queue: IntGaugeVec,
    /// Domains not finished of processing jobs, per client: the deepest [`TOP_QUEUES`] and
    /// [`OTHER`], read at scrape time.
    queue_by_client: IntGaugeVec,
    /// The same per job.
    queue_by_job: IntGaugeVec,
    /// When the fleet-wide gauges were last read from the database.
    fleet_read_at: Mutex<Option<Instant>>,
}

/// The outcomes a webhook attempt is counted under.
pub const WEBHOOK_OUTCOMES: [&str; 4] = ["delivered", "retry", "failed", "refused"];

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let registry = Registry::new_custom(Some("favicon_finder".into()), None)
            .expect("a valid metric namespace");
        let batch_buckets = vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];
        let fetch_buckets = vec![0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0, 60.0];
        let metrics = Self {
            http_duration: histogram_vec(
                "http_server_request_duration_seconds",
                "HTTP requests by route template, method and status class: time to the answer's head",
                &["http_route", "http_request_method", "http_response_status_class"],
            ),
            graphql_duration: histogram_vec(
                "graphql_server_operation_duration_seconds",
                "GraphQL queries and mutations by operation type and outcome (ok, error)",
                &["graphql_operation_type", "outcome"],
            ),
            websocket_connections: IntGauge::new(
                "websocket_connections",
                "Open WebSocket connections (GraphQL subscriptions)",
            )
            .unwrap(),
            domains: counter_vec(
                "domains_total",
                "Domains finished or retried, by outcome and error code",
                &["outcome", "error_code"],
            ),
            fetch_seconds: histogram(
                "fetch_duration_seconds",
                "Time to find one domain's favicon",
                fetch_buckets,
            ),
            in_flight: IntGauge::new("in_flight_fetches", "Domains being fetched now").unwrap(),
            claim_batch: histogram(
                "claim_batch_size",
                "Rows taken per claim",
                batch_buckets.clone(),
            ),
            record_batch: histogram(
                "record_batch_size",
                "Outcomes written per transaction",
                batch_buckets,
            ),
            subscriptions: IntGauge::new("subscriptions", "Open jobProgress subscriptions")
                .unwrap(),
            redis_errors: counter("redis_errors_total", "Redis commands that failed"),
            progress_rereads: counter(
                "progress_rereads_total",
                "Database re-reads for progress subscribers (per job per silence, per lagging subscriber)",
            ),
            progress_renders: counter(
                "progress_renders_total",
                "Progress events rendered for subscribers (per event and distinct selection)",
            ),
            database_errors: counter(
                "database_errors_total",
                "Worker database operations that failed and were retried",
            ),
            record_failures: counter_vec(
                "record_failures_total",
                "Failed writes of outcomes, by kind (transient: retried; permanent: row refused)",
                &["kind"],
            ),
            purged: counter_vec(
                "purged_total",
                "Rows removed by the retention task, by kind (jobs, results, icon_blobs, cache_rows, webhook_deliveries)",
                &["kind"],
            ),
            purge_longest_transaction: Gauge::new(
                "purge_longest_transaction_seconds",
                "The longest single transaction of the last retention pass that purged a job",
            )
            .unwrap(),
            icon_renders: counter_vec(
                "icon_renders_total",
                "Icon resizes, by outcome (rendered, refused, failed, timeout, cached_failure, over_budget)",
                &["outcome"],
            ),
            jobs: IntGaugeVec::new(Opts::new("jobs", "Jobs by status"), &["status"]).unwrap(),
            queue: IntGaugeVec::new(
                Opts::new("queue_rows", "Unfinished result rows, by state"),
                &["state"],
            )
            .unwrap(),
            queue_by_client: IntGaugeVec::new(
                Opts::new(
                    "queue_pending_by_client",
                    format!("Domains not finished of processing jobs, per client (the deepest {TOP_QUEUES}, the rest as {OTHER})"),
                ),
                &["client"],
            )
            .unwrap(),
            queue_by_job: IntGaugeVec::new(
                Opts::new(
                    "queue_pending_by_job",
                    format!("Domains not finished of processing jobs, per job (the deepest {TOP_QUEUES}, the rest as {OTHER})"),
                ),
                &["job"],
            )
            .unwrap(),
            webhook_attempts: counter_vec(
                "webhook_attempts_total",
                "Webhook delivery attempts, by outcome",
                &["outcome"],
            ),
            webhooks_disabled: counter(
                "webhooks_disabled_total",
                "Webhook endpoints disabled for failing too long",
            ),
            registry,
            fleet_read_at: Mutex::new(None),
        };
        metrics.show_every_label();
        metrics.register_all();
        metrics.register(Box::new(trace_spans_dropped()));
        metrics
    }

    /// Creates the labelled series of every known kind up front: they show from the start,
    /// so a rate over them never starts from nothing.
    fn show_every_label(&self) {
        for kind in ["transient", "permanent"] {
            self.record_failures.with_label_values(&[kind]);
        }
        for kind in [
            "jobs",
            "results",
            "icon_blobs",
            "cache_rows",
            "webhook_deliveries",
        ] {
            self.purged.with_label_values(&[kind]);
        }
        for outcome in ICON_RENDER_OUTCOMES {
            self.icon_renders.with_label_values(&[outcome]);
        }
        for outcome in WEBHOOK_OUTCOMES {
            self.webhook_attempts.with_label_values(&[outcome]);
        }
    }

    /// Registers every metric in this process's registry, which `/metrics` encodes.
    fn register_all(&self) {
        let collectors: [Box<dyn prometheus::core::Collector>; 23] = [
            Box::new(self.http_duration.clone()),
            Box::new(self.graphql_duration.clone()),
            Box::new(self.websocket_connections.clone()),
            Box::new(self.webhook_attempts.clone()),
            Box::new(self.webhooks_disabled.clone()),
            Box::new(self.domains.clone()),
            Box::new(self.fetch_seconds.clone()),
            Box::new(self.in_flight.clone()),
            Box::new(self.claim_batch.clone()),
            Box::new(self.record_batch.clone()),
            Box::new(self.subscriptions.clone()),
            Box::new(self.redis_errors.clone()),
            Box::new(self.progress_rereads.clone()),
            Box::new(self.progress_renders.clone()),
            Box::new(self.database_errors.clone()),
            Box::new(self.record_failures.clone()),
            Box::new(self.jobs.clone()),
            Box::new(self.queue.clone()),
            Box::new(self.queue_by_client.clone()),
            Box::new(self.queue_by_job.clone()),
            Box::new(self.purged.clone()),
            Box::new(self.purge_longest_transaction.clone()),
            Box::new(self.icon_renders.clone()),
        ];
        for collector in collectors {
            self.registry
                .register(collector)
                .expect("unique metric names");
        }
    }

    /// Counts one HTTP request of `route` (a template such as `/jobs/{id}`, or
    /// [`UNMATCHED_ROUTE`]) that took `elapsed` to its answer's head.
    pub fn observe_http(&self, route: &str, method: &str, status: u16, elapsed: Duration) {
        let method = KNOWN_METHODS
            .into_iter()
            .find(|m| *m == method)
            .unwrap_or("_OTHER");
        let class = match status {
            100..=199 => "1xx",
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            _ => "5xx",
        };
        self.http_duration
            .with_label_values(&[route, method, class])
            .observe(elapsed.as_secs_f64());
    }

    /// Counts one GraphQL operation of `kind` (`query`, `mutation`, or `invalid` when the
    /// document did not parse or named no operation it holds).
    pub fn observe_graphql(&self, kind: &str, ok: bool, elapsed: Duration) {
        self.graphql_duration
            .with_label_values(&[kind, if ok { "ok" } else { "error" }])
            .observe(elapsed.as_secs_f64());
    }

    /// Sets the open WebSocket connections, read when `/metrics` is scraped.
    pub fn set_websocket_connections(&self, open: usize) {
        self.websocket_connections
            .set(i64::try_from(open).unwrap_or(i64::MAX));
    }

    /// Whether the fleet-wide gauges are older than [`FLEET_GAUGES_TTL`]; if so, marks them
    /// as being read now (so concurrent scrapes read once).
    pub fn fleet_gauges_due(&self) -> bool {
        let mut at = self.fleet_read_at.lock().unwrap_or_else(|p| p.into_inner());
        let due = at.is_none_or(|t| t.elapsed() >= FLEET_GAUGES_TTL);
        if due {
            *at = Some(Instant::now());
        }
        due
    }

    /// Sets the gauges read from the database.
    pub fn set_database_gauges(&self, jobs: &[(String, i64)], queued: i64, leased: i64) {
        self.jobs.reset();
        for status in ["processing", "completed", "failed", "cancelled"] {
            let count = jobs
                .iter()
                .find(|(s, _)| s == status)
                .map_or(0, |(_, n)| *n);
            self.jobs.with_label_values(&[status]).set(count);
        }
        self.queue.with_label_values(&["queued"]).set(queued);
        self.queue.with_label_values(&["leased"]).set(leased);
    }

    /// Sets the queue depth per client and per job from every processing job's (id, client,
    /// domains left). The label sets are replaced, so a finished job's series (and a client's
    /// with nothing left) goes away.
    pub fn set_queue_owners(&self, jobs: &[(uuid::Uuid, String, i64)]) {
        let mut clients: HashMap<&str, i64> = HashMap::new();
        for (_, client, left) in jobs {
            *clients.entry(client).or_default() += left;
        }
        let clients = top_with_other(clients.into_iter().map(|(c, n)| (c.to_owned(), n)));
        let jobs = top_with_other(jobs.iter().map(|(id, _, n)| (id.to_string(), *n)));
        for (gauge, depths) in [(&self.queue_by_client, clients), (&self.queue_by_job, jobs)] {
            gauge.reset();
            for (label, depth) in depths {
                // Added, not set: a client may be named `other` itself.
                gauge.with_label_values(&[label.as_str()]).add(depth);
            }
        }
    }

    /// Registers a series a part of the service owns itself (e.g. `politeness`'s counters),
    /// so it is rendered with the rest.
    pub fn register(&self, collector: Box<dyn prometheus::core::Collector>) {
        self.registry
            .register(collector)
            .expect("unique metric names");
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding of gathered metrics");
        String::from_utf8(out).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// The [`TOP_QUEUES`] deepest of `depths` (name, depth), deepest first, ties by name, and
/// the rest summed as [`OTHER`] when there are more.
fn top_with_other(depths: impl IntoIterator<Item = (String, i64)>) -> Vec<(String, i64)> {
    let mut depths: Vec<_> = depths.into_iter().collect();
    depths.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    if depths.len() > TOP_QUEUES {
        let rest = depths.split_off(TOP_QUEUES).iter().map(|(_, n)| n).sum();
        depths.push((OTHER.to_owned(), rest));
    }
    depths
}

/// Spans the trace exporter dropped (its queue full, or an export failed). One per process,
/// like the tracing pipeline that counts into it, and shown by every registry of the process.
pub fn trace_spans_dropped() -> IntCounter {
    static DROPPED: std::sync::OnceLock<IntCounter> = std::sync::OnceLock::new();
    DROPPED
        .get_or_init(|| {
            counter(
                "trace_spans_dropped_total",
                "Spans not exported: the export queue was full or the collector failed",
            )
        })
        .clone()
}

/// A counter; its name and help are constants, so a bad one fails the first start.
fn counter(name: &str, help: &str) -> IntCounter {
    IntCounter::new(name, help).unwrap()
}

/// A counter with labels.
fn counter_vec(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help), labels).unwrap()
}

/// A histogram of request durations ([`REQUEST_BUCKETS`]) with labels.
fn histogram_vec(name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    let opts = HistogramOpts::new(name, help).buckets(REQUEST_BUCKETS.to_vec());
    HistogramVec::new(opts, labels).unwrap()
}

/// A histogram over the given bucket bounds.
fn histogram(name: &str, help: &str, buckets: Vec<f64>) -> Histogram {
    Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets)).unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The depth samples of one gauge in the exposition: label value → depth.
    fn samples(metrics: &Metrics, name: &str) -> Vec<(String, i64)> {
        let prefix = format!("favicon_finder_{name}{{");
        let mut found: Vec<_> = metrics
            .render()
            .lines()
            .filter_map(|l| l.strip_prefix(&prefix))
            .map(|l| {
                let (label, value) = l.rsplit_once(' ').unwrap();
                let label = label.split('"').nth(1).unwrap().to_owned();
                (label, value.parse().unwrap())
            })
            .collect();
        found.sort();
        found
    }

    #[test]
    fn a_finished_jobs_series_goes_at_the_next_refresh() {
        let metrics = Metrics::new();
        let (a, b) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
        metrics.set_queue_owners(&[(a, "acme".into(), 5), (b, "globex".into(), 2)]);
        assert_eq!(samples(&metrics, "queue_pending_by_job").len(), 2);
        metrics.set_queue_owners(&[(b, "globex".into(), 1)]);
        assert_eq!(
            samples(&metrics, "queue_pending_by_job"),
            [(b.to_string(), 1)]
        );
        assert_eq!(
            samples(&metrics, "queue_pending_by_client"),
            [("globex".to_owned(), 1)]
        );
    }

    #[test]
    fn past_the_top_the_rest_is_other_and_a_client_named_other_adds_to_it() {
        let depths = (1..=12).map(|n| (format!("c{n:02}"), n));
        let top = top_with_other(depths);
        assert_eq!(top.len(), TOP_QUEUES + 1);
        assert_eq!(top[0], ("c12".to_owned(), 12));
        assert_eq!(top[TOP_QUEUES], (OTHER.to_owned(), 1 + 2));
        let metrics = Metrics::new();
        let mut jobs: Vec<_> = (1..=11)
            .map(|n| (uuid::Uuid::now_v7(), format!("c{n:02}"), 100 + n))
            .collect();
        // A client named `other` deep enough to be among the top.
        jobs.push((uuid::Uuid::now_v7(), OTHER.to_owned(), 500));
        metrics.set_queue_owners(&jobs);
        let clients = samples(&metrics, "queue_pending_by_client");
        // The client `other` and the rest share one series.
        assert_eq!(clients.len(), TOP_QUEUES);
        let other = clients.iter().find(|(c, _)| c == OTHER).unwrap();
        assert_eq!(other.1, 500 + 101 + 102, "{clients:?}");
    }
}
