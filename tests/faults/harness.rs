//! What every fault test needs: the real binary as a child process that can be killed, stopped
//! and resumed; a database per test; a job; waiting; and the invariants checked in SQL.

use favicon_finder::domain::Domain;
use favicon_finder::entities::job::JobStatus;
use favicon_finder::entities::{job, result};
use favicon_finder::store::{CachePolicy, Store};
use sea_orm::{
    ColumnTrait, ConnectionTrait, Database, DbBackend, EntityTrait, QueryFilter, Statement,
};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;
use tokio::time::Instant;
use uuid::Uuid;

/// The fault tests measure time and share the machine with their children, so they run one at
/// a time: hold this for the whole test.
pub async fn one_at_a_time() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}

/// `TEST_DATABASE_URL`, the PostgreSQL server the tests may create databases on.
pub fn postgres_url() -> Option<String> {
    std::env::var("TEST_DATABASE_URL")
        .ok()
        .filter(|s| !s.is_empty())
}

/// A fresh PostgreSQL database `ff_test_<uuid>` on the server at `admin_url`, migrated.
pub struct PgDb {
    pub url: String,
    admin_url: String,
    name: String,
}

impl PgDb {
    pub async fn create(admin_url: &str) -> Self {
        let (name, url) = crate::db::create_postgres_database(admin_url).await;
        Self {
            url,
            admin_url: admin_url.to_owned(),
            name,
        }
    }

    /// Drops the database after a passing test (a failing one leaves it for inspection; CI
    /// drops every `ff_test_%` before it runs).
    pub async fn drop_db(self) {
        if let Ok(admin) = Database::connect(&self.admin_url).await {
            let _ = admin
                .execute_raw(Statement::from_string(
                    DbBackend::Postgres,
                    format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
                ))
                .await;
        }
    }
}

/// Connects to `url` and applies the migrations, before any child starts: processes that
/// start together would otherwise all race to create the schema.
pub async fn migrated_store(url: &str) -> Store {
    let store = Store::connect(url, 4).await.unwrap();
    store.migrate().await.unwrap();
    store
}

/// The environment every child gets (and nothing else from ours, so neither a stray `.env`
/// nor `REDIS_URL` leaks in): the database, the fake internet, loopback only, JSON logs, and
/// short leases, polls and backoffs.
pub fn base_env(database_url: &str, resolve: &str) -> BTreeMap<String, String> {
    [
        ("DATABASE_URL", database_url),
        ("FETCH_RESOLVE", resolve),
        ("FETCH_ALLOW_PRIVATE_NETWORKS", "true"),
        ("FETCH_TIMEOUT_SECS", "10"),
        ("FETCH_MAX_TRIES", "3"),
        ("FETCH_RETRY_BACKOFF_MS", "50"),
        ("WORKER_CONCURRENCY", "8"),
        // These cases are about leases and recording, with one job at a time: they count on
        // a worker filling every slot with it. The per-job cap has its own cases
        // (tests/api/fairness.rs, and the silent-DNS case here).
        ("WORKER_MAX_SHARE_PER_JOB", "1"),
        ("WORKER_LEASE_SECS", "2"),
        ("WORKER_POLL_MS", "100"),
        ("SHUTDOWN_GRACE_SECS", "2"),
        ("DATABASE_POOL_SIZE", "4"),
        ("HOST", "127.0.0.1"),
        ("PORT", "0"),
        ("LOG_FORMAT", "json"),
        (
            "RUST_LOG",
            "info,sqlx=warn,sea_orm=warn,sea_orm_migration=warn",
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// A child `favicon-finder` process. It is killed (SIGKILL) when dropped, so a failing test
/// never leaves workers behind; a failing test also prints the tail of its log.
pub struct Proc {
    pub name: String,
    child: Child,
    log: PathBuf,
}

impl Proc {
    /// Starts `favicon-finder ARGS` in `dir` with exactly `env`, its stderr (the log) going to
    /// `dir/NAME.log`.
    pub fn spawn(name: &str, args: &[&str], env: &BTreeMap<String, String>, dir: &Path) -> Self {
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_favicon-finder"))
            .args(args)
            .env_clear()
            .envs(env)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .unwrap();
        Self {
            name: name.to_owned(),
            child,
            log,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal by name (`TERM`, `STOP`, `CONT`) with rustix: no `kill` executable
    /// and no unsafe code needed.
    pub fn signal(&self, signal: &str) {
        use rustix::process::Signal;
        let sig = match signal {
            "TERM" => Signal::TERM,
            "STOP" => Signal::STOP,
            "CONT" => Signal::CONT,
            other => panic!("no such signal in the harness: {other}"),
        };
        let pid = rustix::process::Pid::from_raw(self.pid().try_into().unwrap()).unwrap();
        rustix::process::kill_process(pid, sig)
            .unwrap_or_else(|e| panic!("signal {signal} to {} failed: {e}", self.name));
    }

    /// SIGKILL, and reap it.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for the process to exit, up to `within`; `None` if it is still running.
    pub async fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            // Wall-clock: another process's exit, which no tokio clock can move.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGTERM, then waits (up to `within`) for the clean exit a stop promises: code 0.
    pub async fn terminate(&mut self, within: Duration) {
        self.signal("TERM");
        let status = self.wait_exit(within).await;
        assert_eq!(
            status.and_then(|s| s.code()),
            Some(0),
            "{} exits 0 within {within:?}",
            self.name
        );
    }

    /// The log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The log's JSON lines whose message is `message`.
    pub fn events(&self, message: &str) -> Vec<Value> {
        self.log()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["message"] == message)
            .collect()
    }

    /// The first value `pick` finds in a line of the log, waiting for it up to `within`;
    /// panics naming `what` (with the log) when none comes.
    async fn find_in_log<T>(
        &self,
        what: &str,
        within: Duration,
        pick: impl Fn(&Value) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + within;
        loop {
            let log = self.log();
            let found = log
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .find_map(|l| pick(&l));
            if let Some(found) = found {
                return found;
            }
            assert!(
                Instant::now() < deadline,
                "{}: no {what} after {within:?}; log:\n{log}",
                self.name
            );
            // Wall-clock: another process writes its log.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the worker pool has started and returns its lease-owner id.
    pub async fn owner(&self, within: Duration) -> Uuid {
        self.find_in_log("worker pool", within, |l| {
            (l["message"] == "worker pool started").then(|| l["owner"].as_str()?.parse().ok())?
        })
        .await
    }

    /// The API's base URL: a `serve` child started with `PORT=0` binds a port of the
    /// system's choosing and logs it, so no port number is guessed ahead of time.
    pub async fn api_base(&self, within: Duration) -> String {
        self.find_in_log("API address", within, |l| {
            let listening = l["message"].as_str()?.starts_with("API listening");
            listening.then(|| Some(format!("http://{}", l["addr"].as_str()?)))?
        })
        .await
    }

    /// The health and metrics base URL of a `worker` child started with
    /// `WORKER_HTTP_PORT=0`, from its log like [`Proc::api_base`].
    pub async fn ops_base(&self, within: Duration) -> String {
        self.find_in_log("health address", within, |l| {
            let listening = l["message"].as_str()? == "health and metrics listening";
            listening.then(|| Some(format!("http://{}", l["addr"].as_str()?)))?
        })
        .await
    }

    /// The number of rows the pool said it finished when it stopped.
    pub fn finished(&self) -> u64 {
        let stopped = self.events("worker pool stopped");
        let line = stopped.first().unwrap_or_else(|| {
            panic!(
                "{}: no `worker pool stopped` line; log:\n{}",
                self.name,
                self.log()
            )
        });
        line["finished"].as_u64().unwrap()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("--- last log lines of {} ---", self.name);
            for line in tail.into_iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

/// `n` distinct domains; every `fail_every`-th has no icon (0: none fails).
pub fn domains(prefix: &str, n: usize, fail_every: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            if fail_every > 0 && i % fail_every == 0 {
                format!("noicon{i}.{prefix}.test")
            } else {
                format!("site{i}.{prefix}.test")
            }
        })
        .collect()
}

/// Creates a job straight through the store (the API is not what these tests are about).
pub async fn create_job(store: &Store, domains: &[String]) -> Uuid {
    let parsed: Vec<Domain> = domains.iter().map(|d| Domain::parse(d).unwrap()).collect();
    store
        .create_job("faults", &parsed, CachePolicy::OFF)
        .await
        .unwrap()
        .id
}

/// Submits a job through the REST API at `base`; returns its id.
pub async fn submit<D: serde::Serialize>(base: &str, client: &str, domains: &[D]) -> Uuid {
    let id = crate::client::create_job_at(base, client, domains).await;
    id.parse().unwrap()
}

/// Polls `check` every 50 ms until it holds; panics naming `what` after `within`.
pub async fn wait_for<F, Fut>(what: &str, within: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        // Wall-clock: what the fault tests wait for happens in other processes (the workers,
        // PostgreSQL, Redis, the proxies between them).
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The job's status and counters.
pub async fn job_row(store: &Store, job_id: Uuid) -> job::Model {
    job::Entity::find_by_id(job_id)
        .one(store.connection())
        .await
        .unwrap()
        .unwrap()
}

/// Waits until the job is no longer processing; returns how long that took.
pub async fn wait_job_done(store: &Store, job_id: Uuid, within: Duration) -> Duration {
    let start = Instant::now();
    wait_for("the job to finish", within, || async {
        job_row(store, job_id).await.status != JobStatus::Processing
    })
    .await;
    start.elapsed()
}

/// Every row of the job.
pub async fn rows(store: &Store, job_id: Uuid) -> Vec<result::Model> {
    result::Entity::find()
        .filter(result::Column::JobId.eq(job_id))
        .all(store.connection())
        .await
        .unwrap()
}

/// Pending rows still leased by `owner`.
pub async fn leased_by(store: &Store, owner: Uuid) -> usize {
    leases_of(store, owner).await.len()
}

/// The lease end of every pending row `owner` holds, by row id: what a killed worker leaves.
pub async fn leases_of(store: &Store, owner: Uuid) -> HashMap<Uuid, chrono::DateTime<chrono::Utc>> {
    result::Entity::find()
        .filter(result::Column::LeaseOwner.eq(owner))
        .filter(result::Column::Status.eq(result::ResultStatus::Pending))
        .all(store.connection())
        .await
        .unwrap()
        .into_iter()
        .filter_map(|r| Some((r.id, r.lease_until?)))
        .collect()
}

/// Waits until the job has `done` rows finished while `proc` (lease owner `owner`) holds at
/// least `leased` rows, SIGKILLs it there, and returns the leases it leaves behind (at least
/// one: a dead process's leases outlive it).
pub async fn kill_mid_job(
    proc: &mut Proc,
    owner: Uuid,
    store: &Store,
    job: Uuid,
    (done, leased): (i32, usize),
) -> HashMap<Uuid, chrono::DateTime<chrono::Utc>> {
    wait_for(
        &format!("{} to be mid-job", proc.name),
        Duration::from_secs(30),
        || async {
            let j = job_row(store, job).await;
            j.completed + j.failed >= done && leased_by(store, owner).await >= leased
        },
    )
    .await;
    proc.kill9();
    let leases = leases_of(store, owner).await;
    assert!(!leases.is_empty(), "{}'s leases outlive it", proc.name);
    leases
}

/// The end of a case whose worker was killed holding `leases`: every orphaned row waited for
/// its lease, the invariants hold, and some (never more) of the orphans were tried again.
/// Returns how many were.
pub async fn assert_orphans_redone(
    store: &Store,
    job_id: Uuid,
    domains: &[String],
    leases: &HashMap<Uuid, chrono::DateTime<chrono::Utc>>,
) -> usize {
    assert_leases_honoured(store, job_id, leases).await;
    check_invariants(store, job_id, domains, 3).await;
    let retried = rows(store, job_id)
        .await
        .iter()
        .filter(|r| r.tries == 2)
        .count();
    assert!(
        retried >= 1 && retried <= leases.len(),
        "the dead worker's rows were tried again ({retried} of {} orphaned)",
        leases.len()
    );
    retried
}

/// Asserts that no row `leases` names was finished before the lease it had at the kill ran
/// out: the proof that a dead worker's lease was honoured, row by row, whatever the timings.
pub async fn assert_leases_honoured(
    store: &Store,
    job_id: Uuid,
    leases: &HashMap<Uuid, chrono::DateTime<chrono::Utc>>,
) {
    let rows = rows(store, job_id).await;
    for (id, until) in leases {
        let row = rows.iter().find(|r| r.id == *id).expect("the orphaned row");
        assert!(
            row.updated_at >= *until,
            "{} was finished at {} under a lease that ran until {until}",
            row.domain,
            row.updated_at
        );
    }
}

/// The invariants every fault test ends with:
///
/// - every domain of the job has exactly one result row, none left `pending` or leased;
/// - the job's `completed`/`failed` equal the row counts by status and sum to `total`;
/// - its final status follows the rule (all failed → `failed`, else `completed`);
/// - every row's `tries` is between 1 and `max_tries`.
pub async fn check_invariants(store: &Store, job_id: Uuid, domains: &[String], max_tries: i32) {
    let rows = rows(store, job_id).await;
    // Every row exists from the job's creation, so counting rows proves nothing about the
    // work: count the rows a worker finished (an outcome and its time recorded).
    let mut finished: HashMap<&str, usize> = HashMap::new();
    for row in rows.iter().filter(|r| {
        r.status != result::ResultStatus::Pending && r.fetched_at.is_some() && r.tries >= 1
    }) {
        *finished.entry(row.domain.as_str()).or_default() += 1;
    }
    assert_eq!(rows.len(), domains.len(), "one row per domain");
    for domain in domains {
        assert_eq!(
            finished.get(domain.as_str()),
            Some(&1),
            "{domain} has exactly one finished row"
        );
    }
    let by_status = |s: result::ResultStatus| rows.iter().filter(|r| r.status == s).count() as i32;
    let (success, failed) = (
        by_status(result::ResultStatus::Success),
        by_status(result::ResultStatus::Failed),
    );
    assert_eq!(by_status(result::ResultStatus::Pending), 0, "none pending");
    assert!(
        rows.iter()
            .all(|r| r.lease_owner.is_none() && r.lease_until.is_none()),
        "finished rows hold no lease"
    );
    let job = job_row(store, job_id).await;
    assert_eq!(job.total, domains.len() as i32);
    assert_eq!(
        (job.completed, job.failed),
        (success, failed),
        "counters equal the rows"
    );
    assert_eq!(job.completed + job.failed, job.total);
    let expected = if job.completed == 0 {
        JobStatus::Failed
    } else {
        JobStatus::Completed
    };
    assert_eq!(job.status, expected, "final status follows the rule");
    for row in &rows {
        assert!(
            (1..=max_tries).contains(&row.tries),
            "{} has {} tries (limit {max_tries})",
            row.domain,
            row.tries
        );
    }
}
