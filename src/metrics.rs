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

use std::sync::Mutex;
use std::time::{Duration, Instant};

use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

/// How long the fleet-wide gauges read from the database are reused between scrapes.
pub const FLEET_GAUGES_TTL: Duration = Duration::from_secs(5);

/// The outcomes `icon_renders_total` counts (see [`Metrics::icon_renders`]).
pub const ICON_RENDER_OUTCOMES: [&str; 6] = [
    "rendered",
    "refused",
    "failed",
    "timeout",
    "cached_failure",
    "over_budget",
];

/// Every metric of one process, in its own registry (so tests can run many side by side).
pub struct Metrics {
    registry: Registry,
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
    /// `cache_rows` (per-domain cache rows too old to reuse).
    pub purged: IntCounterVec,
    /// The longest single transaction of the retention task's last pass that purged a job.
    pub purge_longest_transaction: Gauge,
    /// Resizes of stored icons (`/icons/{domain}?size=N`), by outcome: `rendered`, `refused`
    /// (measured too complex to draw), `failed` (undecodable), `timeout`, `cached_failure` (a
    /// failure remembered, answered without drawing), `over_budget` (the caller's render time
    /// is spent: 429).
    pub icon_renders: IntCounterVec,
    /// Jobs by status, read at scrape time.
    jobs: IntGaugeVec,
    /// Result rows not yet finished, by state (`queued`, `leased`), read at scrape time.
    queue: IntGaugeVec,
    /// When the fleet-wide gauges were last read from the database.
    fleet_read_at: Mutex<Option<Instant>>,
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let registry = Registry::new_custom(Some("favicon_finder".into()), None)
            .expect("a valid metric namespace");
        let batch_buckets = vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];
        let metrics = Self {
            domains: IntCounterVec::new(
                Opts::new(
                    "domains_total",
                    "Domains finished or retried, by outcome and error code",
                ),
                &["outcome", "error_code"],
            )
            .unwrap(),
            fetch_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "fetch_duration_seconds",
                    "Time to find one domain's favicon",
                )
                .buckets(vec![
                    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0, 60.0,
                ]),
            )
            .unwrap(),
            in_flight: IntGauge::new("in_flight_fetches", "Domains being fetched now").unwrap(),
            claim_batch: Histogram::with_opts(
                HistogramOpts::new("claim_batch_size", "Rows taken per claim")
                    .buckets(batch_buckets.clone()),
            )
            .unwrap(),
            record_batch: Histogram::with_opts(
                HistogramOpts::new("record_batch_size", "Outcomes written per transaction")
                    .buckets(batch_buckets),
            )
            .unwrap(),
            subscriptions: IntGauge::new("subscriptions", "Open jobProgress subscriptions")
                .unwrap(),
            redis_errors: IntCounter::new("redis_errors_total", "Redis commands that failed")
                .unwrap(),
            progress_rereads: IntCounter::new(
                "progress_rereads_total",
                "Database re-reads for progress subscribers (per job per silence, per lagging subscriber)",
            )
            .unwrap(),
            progress_renders: IntCounter::new(
                "progress_renders_total",
                "Progress events rendered for subscribers (per event and distinct selection)",
            )
            .unwrap(),
            database_errors: IntCounter::new(
                "database_errors_total",
                "Worker database operations that failed and were retried",
            )
            .unwrap(),
            record_failures: IntCounterVec::new(
                Opts::new(
                    "record_failures_total",
                    "Failed writes of outcomes, by kind (transient: retried; permanent: row refused)",
                ),
                &["kind"],
            )
            .unwrap(),
            purged: IntCounterVec::new(
                Opts::new(
                    "purged_total",
                    "Rows removed by the retention task, by kind (jobs, results, icon_blobs, cache_rows)",
                ),
                &["kind"],
            )
            .unwrap(),
            purge_longest_transaction: Gauge::new(
                "purge_longest_transaction_seconds",
                "The longest single transaction of the last retention pass that purged a job",
            )
            .unwrap(),
            icon_renders: IntCounterVec::new(
                Opts::new(
                    "icon_renders_total",
                    "Icon resizes, by outcome (rendered, refused, failed, timeout, cached_failure, over_budget)",
                ),
                &["outcome"],
            )
            .unwrap(),
            jobs: IntGaugeVec::new(Opts::new("jobs", "Jobs by status"), &["status"]).unwrap(),
            queue: IntGaugeVec::new(
                Opts::new("queue_rows", "Unfinished result rows, by state"),
                &["state"],
            )
            .unwrap(),
            registry,
            fleet_read_at: Mutex::new(None),
        };
        // Both kinds show from the start, so a rate over them never starts from nothing.
        for kind in ["transient", "permanent"] {
            metrics.record_failures.with_label_values(&[kind]);
        }
        for kind in ["jobs", "results", "icon_blobs", "cache_rows"] {
            metrics.purged.with_label_values(&[kind]);
        }
        for outcome in ICON_RENDER_OUTCOMES {
            metrics.icon_renders.with_label_values(&[outcome]);
        }
        let collectors: [Box<dyn prometheus::core::Collector>; 16] = [
            Box::new(metrics.domains.clone()),
            Box::new(metrics.fetch_seconds.clone()),
            Box::new(metrics.in_flight.clone()),
            Box::new(metrics.claim_batch.clone()),
            Box::new(metrics.record_batch.clone()),
            Box::new(metrics.subscriptions.clone()),
            Box::new(metrics.redis_errors.clone()),
            Box::new(metrics.progress_rereads.clone()),
            Box::new(metrics.progress_renders.clone()),
            Box::new(metrics.database_errors.clone()),
            Box::new(metrics.record_failures.clone()),
            Box::new(metrics.jobs.clone()),
            Box::new(metrics.queue.clone()),
            Box::new(metrics.purged.clone()),
            Box::new(metrics.purge_longest_transaction.clone()),
            Box::new(metrics.icon_renders.clone()),
        ];
        for collector in collectors {
            metrics
                .registry
                .register(collector)
                .expect("unique metric names");
        }
        metrics
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
