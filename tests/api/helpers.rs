//! Spawning the real app for a test: a fresh database (SQLite file, or a new PostgreSQL
//! database when `TEST_DATABASE_URL` is set), a random port, quiet logs unless `TEST_LOG`.

use favicon_finder::app::{Application, Roles};
use favicon_finder::config::Config;
use favicon_finder::store::Store;
use futures::{SinkExt, StreamExt};
use sea_orm::{ConnectionTrait, Statement};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Once;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Which database a test runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs a test body once per backend: SQLite always, PostgreSQL when `TEST_DATABASE_URL` is
/// set (and says so on stderr when it is not).
macro_rules! both_backends {
    ($name:ident, $body:path) => {
        mod $name {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                $body(crate::helpers::Backend::Sqlite).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if !crate::services::available(
                    "TEST_DATABASE_URL",
                    crate::helpers::postgres_url().is_some(),
                ) {
                    return;
                }
                $body(crate::helpers::Backend::Postgres).await;
            }
        }
    };
}
pub(crate) use both_backends;

pub fn postgres_url() -> Option<String> {
    std::env::var("TEST_DATABASE_URL")
        .ok()
        .filter(|s| !s.is_empty())
}

static TRACING: Once = Once::new();

fn init_tracing() {
    TRACING.call_once(|| {
        if std::env::var("TEST_LOG").is_ok() {
            tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(
                    std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
                ))
                .with_test_writer()
                .init();
        }
    });
}

/// A fresh, empty database for one test; SQLite files live as long as the returned guard.
pub struct TestDb {
    pub url: String,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    pub async fn new(backend: Backend) -> Self {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let url = format!("sqlite://{}?mode=rwc", dir.path().join("test.db").display());
                Self {
                    url,
                    _dir: Some(dir),
                }
            }
            Backend::Postgres => {
                let admin_url = postgres_url().expect("TEST_DATABASE_URL");
                let (_, url) = crate::db::create_postgres_database(&admin_url).await;
                Self { url, _dir: None }
            }
        }
    }
}

/// A running app and what a test needs to talk to it.
pub struct TestApp {
    pub base: String,
    pub http: reqwest::Client,
    pub store: Store,
    _db: TestDb,
    vars: HashMap<String, String>,
    shutdown: CancellationToken,
    handle: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    /// The worker pool of an app built by [`TestApp::spawn_drained`]: not running, worked
    /// by [`TestApp::drain`].
    worker: Option<favicon_finder::worker::WorkerPool>,
}

/// Settings every test app gets: loopback only, fast retries, small pools.
pub fn base_vars(db_url: &str) -> HashMap<String, String> {
    [
        ("DATABASE_URL", db_url),
        ("HOST", "127.0.0.1"),
        ("PORT", "0"),
        ("WORKER_CONCURRENCY", "16"),
        ("WORKER_POLL_MS", "100"),
        ("WORKER_LEASE_SECS", "30"),
        ("FETCH_TIMEOUT_SECS", "5"),
        ("FETCH_MAX_TRIES", "2"),
        ("FETCH_RETRY_BACKOFF_MS", "50"),
        ("FETCH_ALLOW_PRIVATE_NETWORKS", "true"),
        ("DATABASE_POOL_SIZE", "5"),
        ("SHUTDOWN_GRACE_SECS", "2"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

impl TestApp {
    /// Starts the app (API and workers) with the base settings plus `overrides`.
    pub async fn spawn(backend: Backend, overrides: &[(&str, &str)]) -> Self {
        Self::spawn_with(
            backend,
            overrides,
            Roles {
                api: true,
                worker: true,
            },
        )
        .await
    }

    /// Starts the app (API and workers) reaching every site through `internet`, plus
    /// `overrides`.
    pub async fn spawn_on(
        backend: Backend,
        internet: &crate::fake::FakeInternet,
        overrides: &[(&str, &str)],
    ) -> Self {
        let resolve = internet.resolve(&[]);
        let mut vars = vec![("FETCH_RESOLVE", resolve.as_str())];
        vars.extend_from_slice(overrides);
        Self::spawn(backend, &vars).await
    }

    /// Starts the app on SQLite with no worker slots (`WORKER_CONCURRENCY=0`), plus
    /// `overrides`: for tests of the API alone, where nothing may change a job under them.
    pub async fn api_only(overrides: &[(&str, &str)]) -> Self {
        let mut vars = vec![("WORKER_CONCURRENCY", "0")];
        vars.extend_from_slice(overrides);
        Self::spawn(Backend::Sqlite, &vars).await
    }

    /// Starts the API alone, with no worker pool: the queue is left to worker processes, or
    /// to the test itself.
    pub async fn spawn_api(backend: Backend, overrides: &[(&str, &str)]) -> Self {
        let roles = Roles {
            api: true,
            worker: false,
        };
        Self::spawn_with(backend, overrides, roles).await
    }

    /// Starts the API with its worker pool built but not running: the test works the queue
    /// with [`TestApp::drain`] when it chooses, instead of polling a running pool.
    pub async fn spawn_drained(backend: Backend, overrides: &[(&str, &str)]) -> Self {
        let roles = Roles {
            api: true,
            worker: true,
        };
        Self::spawn_built(backend, overrides, roles, true).await
    }

    /// Works the queue until nothing is due and every outcome is written; returns how many
    /// rows it finished. Only for an app from [`TestApp::spawn_drained`].
    pub async fn drain(&self) -> u64 {
        let pool = self.worker.as_ref().expect("an app from spawn_drained");
        pool.drain().await.expect("the drain claims")
    }

    /// Drains the queue, then reads `GET /jobs/{id}`, which must be finished by then: for
    /// jobs whose every try is due at once (no retry waits for its backoff).
    pub async fn drain_job(&self, job_id: &str) -> Value {
        self.drain().await;
        let (status, job) = self.get_json(&format!("/jobs/{job_id}")).await;
        assert_eq!(status, 200, "{job}");
        assert_ne!(
            job["status"], "processing",
            "still processing after a drain: {job}"
        );
        job
    }

    /// Waits for a job to finish: by a drain when this app holds its pool
    /// ([`TestApp::spawn_drained`]), else by polling its running pool for up to `within`.
    pub async fn finish_job(&self, job_id: &str, within: Duration) -> Value {
        if self.worker.is_some() {
            self.drain_job(job_id).await
        } else {
            self.wait_for_job(job_id, within).await
        }
    }

    /// Starts the app with chosen roles (for example the API alone, with workers elsewhere).
    pub async fn spawn_with(backend: Backend, overrides: &[(&str, &str)], roles: Roles) -> Self {
        Self::spawn_built(backend, overrides, roles, false).await
    }

    /// Builds and runs the app; with `hold_worker` its pool is kept out of the running app
    /// for [`TestApp::drain`].
    async fn spawn_built(
        backend: Backend,
        overrides: &[(&str, &str)],
        roles: Roles,
        hold_worker: bool,
    ) -> Self {
        init_tracing();
        let db = TestDb::new(backend).await;
        let mut vars = base_vars(&db.url);
        for (k, v) in overrides {
            vars.insert((*k).to_owned(), (*v).to_owned());
        }
        let config = Config::from_vars(vars.clone()).expect("test config");
        let mut app = Application::build(config, roles).await.expect("app builds");
        let worker = if hold_worker {
            Some(
                app.take_worker()
                    .expect("a worker pool (WORKER_CONCURRENCY > 0)"),
            )
        } else {
            None
        };
        let base = format!("http://127.0.0.1:{}", app.port().unwrap());
        let store = app.store().clone();
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn(app.run_until_stopped(shutdown.clone()));
        Self {
            base,
            http: reqwest::Client::new(),
            store,
            _db: db,
            vars,
            shutdown,
            handle: Some(handle),
            worker,
        }
    }

    /// Starts `favicon-finder worker` as a child process on this app's database and settings
    /// (plus `overrides`); it is killed when the guard drops.
    pub fn spawn_worker_process(&self, overrides: &[(&str, &str)]) -> ChildGuard {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_favicon-finder"));
        command.arg("worker").env_clear();
        for key in ["PATH", "HOME"] {
            if let Ok(value) = std::env::var(key) {
                command.env(key, value);
            }
        }
        command.envs(&self.vars).env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
        );
        for (k, v) in overrides {
            command.env(k, v);
        }
        if std::env::var("TEST_LOG").is_err() {
            command.stderr(std::process::Stdio::null());
        }
        ChildGuard(command.spawn().expect("worker process starts"))
    }

    /// The app's database URL, for tests that open connections of their own.
    pub fn database_url(&self) -> String {
        self.vars["DATABASE_URL"].clone()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// POSTs JSON to a path; returns the status and the JSON body.
    pub async fn post_json(&self, path: &str, body: &Value) -> (u16, Value) {
        let response = self
            .http
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// POSTs raw bytes with a JSON content type.
    pub async fn post_raw(&self, path: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
        let response = self
            .http
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        let response = self.http.get(self.url(path)).send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// `/metrics`, parsed: every sample's name (with its labels, as printed) and value.
    pub async fn metrics(&self) -> HashMap<String, f64> {
        let response = self.http.get(self.url("/metrics")).send().await.unwrap();
        assert_eq!(response.status(), 200);
        parse_metrics(&response.text().await.unwrap())
    }

    /// One sample of `/metrics` by its name and labels, as printed.
    pub async fn metric(&self, sample: &str) -> f64 {
        let metrics = self.metrics().await;
        *metrics
            .get(sample)
            .unwrap_or_else(|| panic!("no {sample} in /metrics: {metrics:?}"))
    }

    /// Runs a GraphQL operation; returns the whole response body.
    pub async fn graphql(&self, query: &str, variables: Value) -> Value {
        let (status, body) = self
            .post_json(
                "/graphql",
                &serde_json::json!({"query": query, "variables": variables}),
            )
            .await;
        assert_eq!(status, 200, "GraphQL answered {status}: {body}");
        body
    }

    /// Deletes job `id` through `DELETE /jobs/{id}` without a key; returns the status.
    pub async fn delete_job(&self, id: &str) -> u16 {
        let response = self
            .http
            .delete(self.url(&format!("/jobs/{id}")))
            .send()
            .await
            .unwrap();
        response.status().as_u16()
    }

    /// Creates a job through `POST /jobs`; returns its id.
    pub async fn create_job<D: serde::Serialize>(&self, client: &str, domains: &[D]) -> String {
        crate::client::create_job_at(&self.base, client, domains).await
    }

    /// `GET /jobs/{id}/download`: the CSV export's text, once it is served.
    pub async fn download(&self, job_id: &str) -> String {
        let response = self
            .http
            .get(self.url(&format!("/jobs/{job_id}/download")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{response:?}");
        response.text().await.unwrap()
    }

    /// Polls `GET /jobs/{id}` until the job is no longer processing.
    pub async fn wait_for_job(&self, job_id: &str, within: Duration) -> Value {
        wait_for_job_at(&self.base, job_id, within).await
    }

    /// A `graphql-transport-ws` WebSocket to `/graphql/ws`, initialised and acknowledged.
    pub async fn ws(&self) -> Ws {
        ws_connect(&self.base, "/graphql/ws", Protocol::TransportWs).await
    }

    /// A GraphQL WebSocket to `path` (`/graphql/ws`, or `/graphql` itself) in `protocol`,
    /// initialised and acknowledged.
    pub async fn ws_with(&self, path: &str, protocol: Protocol) -> Ws {
        ws_connect(&self.base, path, protocol).await
    }

    /// A `graphql-transport-ws` WebSocket to `/graphql/ws` from the loopback address `from`
    /// (per-address limits tell clients apart by it), upgraded but not yet initialised: the
    /// caller decides whether and when to send `connection_init` ([`ws_init`]).
    pub async fn ws_from(&self, from: [u8; 4]) -> Ws {
        ws_open(&self.base, "/graphql/ws", Protocol::TransportWs, from).await
    }

    /// Rows in a table, straight from the database.
    pub async fn count_rows(&self, table: &str) -> i64 {
        number(
            self.store.connection(),
            &format!("SELECT COUNT(*) AS n FROM {table}"),
        )
        .await
    }

    /// Stops the app and waits for it to finish.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(handle) = self.handle.take() {
            handle.await.unwrap().unwrap();
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Polls `GET /jobs/{id}` at `base` until the job is no longer processing; returns it.
pub async fn wait_for_job_at(base: &str, job_id: &str, within: Duration) -> Value {
    let http = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let response = http
            .get(format!("{base}/jobs/{job_id}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{response:?}");
        let job: Value = response.json().await.unwrap();
        if job["status"] != "processing" {
            return job;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "job {job_id} still processing after {within:?}: {job}"
        );
        // Wall-clock: the pool works on a real network (the fake internet's sockets); apps
        // that can be drained use `TestApp::finish_job` instead.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Sends `request`, with `key` as a bearer token when there is one; returns the JSON body,
/// whatever the status.
pub async fn json_answer(request: reqwest::RequestBuilder, key: Option<&str>) -> Value {
    let request = match key {
        Some(key) => request.bearer_auth(key),
        None => request,
    };
    request.send().await.unwrap().json().await.unwrap()
}

/// A CSV export parsed by the csv crate: the header, then the records.
pub fn parse_csv(text: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let header = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_owned)
        .collect();
    let records = reader
        .records()
        .map(|r| r.unwrap().iter().map(str::to_owned).collect())
        .collect();
    (header, records)
}

/// The Prometheus text format's samples: name (with labels) → value.
pub fn parse_metrics(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            Some((name.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// The number a query answers in its column `n` (`SELECT COUNT(*) AS n …`).
pub async fn number(db: &impl ConnectionTrait, sql: &str) -> i64 {
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            sql.to_owned(),
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get::<i64>("", "n").unwrap()
}

/// Sends `signal` to process `pid`; panics if it cannot be sent.
pub fn signal(pid: u32, signal: rustix::process::Signal) {
    let target = rustix::process::Pid::from_raw(pid.try_into().unwrap()).unwrap();
    rustix::process::kill_process(target, signal)
        .unwrap_or_else(|e| panic!("signal {signal:?} to {pid}: {e}"));
}

/// A child process killed (and reaped) when dropped, even if the test panics.
pub struct ChildGuard(pub std::process::Child);

impl ChildGuard {
    /// Sends SIGTERM (rustix: no `kill` executable, no unsafe code).
    pub fn terminate(&self) {
        signal(self.0.id(), rustix::process::Signal::TERM);
    }

    /// Waits up to `within` for the child to exit; panics if it is still running then.
    pub async fn exited(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                return status;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "still running after {within:?}"
            );
            // Wall-clock: another process's exit, which no tokio clock can move.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[path = "helpers/ws.rs"]
mod ws;
pub use ws::{Protocol, Ws, ws_connect, ws_init, ws_init_with, ws_open, ws_subscribe};

/// The API address a `favicon-finder serve` child started with `PORT=0` reports in its log
/// (its stderr, at `info` for `favicon_finder::app`), so no test has to pick a port number
/// for a child and hope nothing else takes it. The rest of the log is drained in the
/// background so the child never blocks on a full pipe.
pub fn listening_addr(stderr: std::process::ChildStderr) -> std::net::SocketAddr {
    use std::io::BufRead;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if let Some(rest) = line.split("GraphiQL at http://").nth(1)
                && let Some((addr, _)) = rest.split_once("/graphql")
                && let Ok(addr) = addr.parse()
            {
                let _ = tx.send(addr);
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(20))
        .expect("serve logs its address within 20 s")
}
