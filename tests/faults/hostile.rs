//! Hostile sites: one worker process meets sites built to stop, crash or bloat it, while a
//! second client's healthy job runs beside them.
//!
//! Each case runs on SQLite (one `serve` process doing API and work) and on PostgreSQL (an
//! API-only `serve` and a separate `worker`). In every case:
//!
//! - each hostile domain ends classified (not `pending`) within its deadline:
//!   `FETCH_MAX_TRIES` × (`FETCH_TIMEOUT_SECS` + 1 s) + [`SLACK`];
//! - the healthy job, submitted by another client at the same moment, completes within
//!   [`HEALTHY_WITHIN`] with every icon found;
//! - the working process's peak RSS (`VmHWM` in `/proc/PID/status`) stays under
//!   [`RSS_BOUND_MB`] MB; a watchdog kills the process the moment its RSS passes the bound, so a
//!   case that bloats fails fast instead of taking the machine's memory.
//!
//! Measured (debug build, 2 cores, BENCHMARKS.md): every case peaks at 51–66 MB against the
//! 256 MB bound; without the finder's link caps the huge base passed the bound in seconds.
//!
//! The silent-DNS case needs `FETCH_DNS_SERVERS`; on a build without it, it fails at once
//! saying so (it never lets a lookup leave loopback).

use crate::fake::{FakeInternet, NameServer, Sites};
use crate::harness::{
    PgDb, Proc, base_env, job_row, migrated_store, one_at_a_time, postgres_url, rows, submit,
    wait_for,
};
use favicon_finder::entities::result::ResultStatus;
use favicon_finder::store::Store;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// The working process's peak RSS may not pass this, whatever the sites send.
const RSS_BOUND_MB: u64 = 256;
/// Time past the hostile domains' own deadline for claiming, recording and polling.
const SLACK: Duration = Duration::from_secs(10);
/// The healthy job must finish within this of its submission.
const HEALTHY_WITHIN: Duration = Duration::from_secs(20);
/// The domain deadline the cases run with.
const TIMEOUT_SECS: u64 = 5;
/// Tries per domain the cases run with.
const MAX_TRIES: u64 = 2;
/// The healthy second client's domains.
const HEALTHY: [&str; 2] = ["healthy1.test", "healthy2.test"];

const SVG: &str = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"32\" height=\"32\"></svg>";

/// Which database a case runs on, and so which processes do the work.
#[derive(Clone, Copy, Debug)]
enum Db {
    Sqlite,
    Postgres,
}

/// The fake internet of these cases: the hostile hosts and the healthy ones.
async fn internet() -> FakeInternet {
    let mut sites = Sites::default();
    // A manifest whose declared size and type are a JSON-escaped NUL.
    sites
        .page(
            "nul-manifest.test",
            r#"<html><head><link rel=manifest href="/m.json"></head></html>"#,
        )
        .file(
            "nul-manifest.test",
            "/m.json",
            "application/manifest+json",
            br#"{"icons":[{"src":"/i.svg","sizes":"\u0000","type":"image/svg+xml\u0000"}]}"#,
        )
        .file(
            "nul-manifest.test",
            "/i.svg",
            "image/svg+xml",
            SVG.as_bytes(),
        );
    // Raw NUL bytes in a data: icon and in its declared size and type.
    sites.page(
        "nul-data.test",
        &format!(
            "<html><head><link rel=icon sizes=\"\0\" type=\"image/svg+xml\0\" \
             href=\"data:image/svg+xml,{}\0\"></head></html>",
            SVG.replace('"', "'")
        ),
    );
    // A reason phrase and a redirect `Location` holding NUL bytes: no HTTP library would send
    // them, so the bytes are written as they are.
    let nul_error = b"HTTP/1.1 302 Fo\0und\r\nLocation: /a\0b\r\n\
                      Content-Length: 0\r\nConnection: close\r\n\r\n";
    sites
        .raw("nul-error.test", nul_error)
        .raw("www.nul-error.test", nul_error);
    // A 100 KB base and 20,000 identical relative icon links: 700 KB of page.
    let base = format!("/{}/", "b".repeat(100 * 1024));
    let links = "<link rel=icon href=i.png>".repeat(20_000);
    sites.page(
        "huge-base.test",
        &format!("<html><head><base href=\"{base}\">{links}</head></html>"),
    );
    // 20,000 distinct icon links, every one a 404; /favicon.ico works.
    let links: String = (0..20_000)
        .map(|i| format!("<link rel=icon href=\"/broken/{i}.png\">"))
        .collect();
    sites
        .page(
            "broken-links.test",
            &format!("<html><head>{links}</head></html>"),
        )
        .file(
            "broken-links.test",
            "/favicon.ico",
            "image/svg+xml",
            SVG.as_bytes(),
        );
    for host in HEALTHY {
        sites
            .page(
                host,
                r#"<html><head><link rel=icon href="/i.svg"></head></html>"#,
            )
            .file(host, "/i.svg", "image/svg+xml", SVG.as_bytes());
    }
    FakeInternet::start(sites).await
}

/// Polls the process's resident memory; kills it the moment it passes the bound.
struct Watchdog {
    tripped: Arc<AtomicBool>,
    peak_kb: Arc<AtomicU64>,
    stop: tokio_util::sync::CancellationToken,
}

fn status_kb(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

impl Watchdog {
    fn start(pid: u32) -> Self {
        let tripped = Arc::new(AtomicBool::new(false));
        let peak_kb = Arc::new(AtomicU64::new(0));
        let stop = tokio_util::sync::CancellationToken::new();
        let (t, p, s) = (tripped.clone(), peak_kb.clone(), stop.clone());
        tokio::spawn(async move {
            while !s.is_cancelled() {
                let Some(hwm) = status_kb(pid, "VmHWM:") else {
                    return;
                };
                p.fetch_max(hwm, Ordering::Relaxed);
                if hwm > RSS_BOUND_MB * 1024 {
                    t.store(true, Ordering::Relaxed);
                    if let Some(target) = i32::try_from(pid)
                        .ok()
                        .and_then(rustix::process::Pid::from_raw)
                    {
                        let _ =
                            rustix::process::kill_process(target, rustix::process::Signal::KILL);
                    }
                    return;
                }
                // Wall-clock: sampling another process's memory as it grows in real time.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        Self {
            tripped,
            peak_kb,
            stop,
        }
    }

    /// Panics if the watchdog killed the process, saying so.
    fn assert_alive(&self, case: &str) {
        assert!(
            !self.tripped.load(Ordering::Relaxed),
            "{case}: the working process passed {RSS_BOUND_MB} MB of RSS and was killed"
        );
    }

    /// The peak RSS seen, in MB; panics if the bound was passed.
    fn check(&self, pid: u32, case: &str) -> u64 {
        if let Some(hwm) = status_kb(pid, "VmHWM:") {
            self.peak_kb.fetch_max(hwm, Ordering::Relaxed);
        }
        let peak = self.peak_kb.load(Ordering::Relaxed) / 1024;
        assert!(
            !self.tripped.load(Ordering::Relaxed),
            "{case}: the working process passed {RSS_BOUND_MB} MB of RSS and was killed"
        );
        assert!(peak <= RSS_BOUND_MB, "{case}: peak RSS {peak} MB");
        peak
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The processes of one case: the API, and the process that does the work (the same one on
/// SQLite).
struct Service {
    base: String,
    api: Proc,
    worker: Option<Proc>,
    store: Store,
    _pg: Option<PgDb>,
    _dir: tempfile::TempDir,
}

impl Service {
    async fn start(db: Db, env_extra: &[(&str, &str)], resolve: &str) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let (url, pg) = match db {
            Db::Sqlite => (
                format!("sqlite://{}?mode=rwc", dir.path().join("ff.db").display()),
                None,
            ),
            Db::Postgres => {
                let admin = postgres_url();
                if !crate::services::available("TEST_DATABASE_URL", admin.is_some()) {
                    return None;
                }
                let admin = admin.unwrap();
                let pg = PgDb::create(&admin).await;
                (pg.url.clone(), Some(pg))
            }
        };
        let store = migrated_store(&url).await;
        let mut env = base_env(&url, resolve);
        env.insert("FETCH_TIMEOUT_SECS".into(), TIMEOUT_SECS.to_string());
        env.insert("FETCH_MAX_TRIES".into(), MAX_TRIES.to_string());
        for (k, v) in env_extra {
            env.insert((*k).into(), (*v).into());
        }
        let (api, worker) = match db {
            Db::Sqlite => (spawn(&env, "serve", dir.path()), None),
            Db::Postgres => {
                let mut api_env = env.clone();
                api_env.insert("WORKER_CONCURRENCY".into(), "0".into());
                let api = spawn(&api_env, "serve", dir.path());
                let worker = spawn(&env, "worker", dir.path());
                (api, Some(worker))
            }
        };
        worker
            .as_ref()
            .unwrap_or(&api)
            .owner(Duration::from_secs(30))
            .await;
        let base = api.api_base(Duration::from_secs(30)).await;
        Some(Self {
            base,
            api,
            worker,
            store,
            _pg: pg,
            _dir: dir,
        })
    }

    fn working(&self) -> &Proc {
        self.worker.as_ref().unwrap_or(&self.api)
    }
}

fn spawn(env: &BTreeMap<String, String>, command: &str, dir: &Path) -> Proc {
    Proc::spawn(command, &[command], env, dir)
}

/// Submits `hostile` and the healthy job at once and checks the three promises; returns the
/// hostile job's rows for case-specific checks.
async fn run_case(
    case: &str,
    db: Db,
    hostile: &[&str],
    env_extra: &[(&str, &str)],
    resolve: &str,
) -> Option<Vec<favicon_finder::entities::result::Model>> {
    let service = Service::start(db, env_extra, resolve).await?;
    let pid = service.working().pid();
    let watchdog = Watchdog::start(pid);
    let started = Instant::now();
    let (bad, good) = tokio::join!(
        submit(&service.base, "hostile", hostile),
        submit(&service.base, "healthy", &HEALTHY)
    );

    let healthy = async {
        wait_for("the healthy job", HEALTHY_WITHIN, || async {
            watchdog.assert_alive(case);
            job_row(&service.store, good).await.completed == HEALTHY.len() as i32
        })
        .await;
        started.elapsed()
    };
    let deadline = Duration::from_secs(MAX_TRIES * (TIMEOUT_SECS + 1)) + SLACK;
    let classified = async {
        wait_for("every hostile domain classified", deadline, || async {
            watchdog.assert_alive(case);
            let job = job_row(&service.store, bad).await;
            job.completed + job.failed == job.total
        })
        .await;
        started.elapsed()
    };
    let (healthy_took, hostile_took) = tokio::join!(healthy, classified);
    let peak = watchdog.check(pid, case);
    for row in rows(&service.store, good).await {
        assert_eq!(row.status, ResultStatus::Success, "{row:?}");
    }
    let hostile_rows = rows(&service.store, bad).await;
    for row in &hostile_rows {
        assert_ne!(row.status, ResultStatus::Pending, "{row:?}");
        let kept = row
            .candidates
            .as_ref()
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        assert!(
            kept <= favicon_finder::clean::MAX_CANDIDATES,
            "{} kept {kept}",
            row.domain
        );
    }
    eprintln!(
        "{case} ({db:?}): hostile classified in {hostile_took:?} (deadline {deadline:?}), \
         healthy done in {healthy_took:?}, peak RSS {peak} MB (bound {RSS_BOUND_MB} MB); {}",
        hostile_rows
            .iter()
            .map(|r| format!(
                "{}={} ({})",
                r.domain,
                r.status.as_str(),
                r.error.as_deref().unwrap_or("-")
            ))
            .collect::<Vec<_>>()
            .join(" ")
    );
    Some(hostile_rows)
}

async fn nul_characters(db: Db) {
    let _serial = one_at_a_time().await;
    let internet = internet().await;
    let hostile = ["nul-manifest.test", "nul-data.test", "nul-error.test"];
    let Some(rows) = run_case("nul characters", db, &hostile, &[], &internet.resolve(&[])).await
    else {
        return;
    };
    for row in &rows {
        let text = serde_json::to_string(&(&row.favicon_url, &row.error, &row.candidates)).unwrap();
        assert!(!text.contains("\\u0000"), "{}: {text}", row.domain);
        // The two sites with a real icon keep it; the NULs only cost them their hints.
        if row.domain != "nul-error.test" {
            assert_eq!(row.status, ResultStatus::Success, "{row:?}");
        }
    }
    assert!(
        internet.hits("nul-error.test", "/") >= 1,
        "the NUL answer was read over plain HTTP"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nul_characters_sqlite() {
    nul_characters(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nul_characters_postgres() {
    nul_characters(Db::Postgres).await;
}

async fn huge_base(db: Db) {
    let _serial = one_at_a_time().await;
    let internet = internet().await;
    run_case(
        "huge base",
        db,
        &["huge-base.test"],
        &[],
        &internet.resolve(&[]),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_base_sqlite() {
    huge_base(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_base_postgres() {
    huge_base(Db::Postgres).await;
}

async fn broken_links(db: Db) {
    let _serial = one_at_a_time().await;
    let internet = internet().await;
    let Some(rows) = run_case(
        "broken links",
        db,
        &["broken-links.test"],
        &[],
        &internet.resolve(&[]),
    )
    .await
    else {
        return;
    };
    let row = &rows[0];
    assert_eq!(
        row.status,
        ResultStatus::Success,
        "the fallback gets its turn: {row:?}"
    );
    assert!(
        row.favicon_url
            .as_deref()
            .is_some_and(|u| u.ends_with("/favicon.ico")),
        "{row:?}"
    );
    assert!(row.candidates_dropped > 0, "the cut candidates are counted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_links_sqlite() {
    broken_links(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_links_postgres() {
    broken_links(Db::Postgres).await;
}

/// Whether this build reads `FETCH_DNS_SERVERS`: a build that does refuses a malformed value
/// at start, naming it. Without it, a lookup of the silent case's name would go to the
/// system's resolver, off loopback, so the case must not run.
fn build_reads_dns_servers() -> bool {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_favicon-finder"))
        .args(["find", "probe.test"])
        .env_clear()
        .current_dir(std::env::temp_dir())
        .env("FETCH_DNS_SERVERS", "not-an-address")
        .env("FETCH_TIMEOUT_SECS", "1")
        .output()
        .unwrap();
    !output.status.success()
        && String::from_utf8_lossy(&output.stderr).contains("FETCH_DNS_SERVERS")
}

async fn silent_dns(db: Db) {
    assert!(
        build_reads_dns_servers(),
        "this build ignores FETCH_DNS_SERVERS (it comes with the async resolver), so the \
         silent-DNS case cannot run without its lookups leaving loopback"
    );
    let _serial = one_at_a_time().await;
    let internet = internet().await;
    let silent = NameServer::silent().await;
    let dns = silent.addr.to_string();
    // Only the healthy hosts are pointed at the fake internet; everything else asks the
    // silent server.
    let addr = internet.addr;
    let resolve = HEALTHY
        .iter()
        .map(|h| format!("{h}={addr}"))
        .collect::<Vec<_>>()
        .join(",");
    let hostile: Vec<String> = (0..64)
        .map(|i| format!("silent{i}.hostile-dns.example"))
        .collect();
    let hostile: Vec<&str> = hostile.iter().map(String::as_str).collect();
    let default_share = favicon_finder::config::DEFAULT_JOB_SHARE.to_string();
    let Some(rows) = run_case(
        "silent dns",
        db,
        &hostile,
        // Under the default per-job cap (the harness runs with none) the 64 silent names run
        // in one wave that ends within their own deadline, and the healthy job never waits
        // for them.
        &[
            ("FETCH_DNS_SERVERS", &dns),
            ("WORKER_CONCURRENCY", "128"),
            ("WORKER_MAX_SHARE_PER_JOB", &default_share),
        ],
        &resolve,
    )
    .await
    else {
        return;
    };
    assert!(
        silent.queries() > 0,
        "the lookups went to the silent server"
    );
    for row in &rows {
        assert_eq!(row.status, ResultStatus::Failed, "{row:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_dns_sqlite() {
    silent_dns(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_dns_postgres() {
    silent_dns(Db::Postgres).await;
}
