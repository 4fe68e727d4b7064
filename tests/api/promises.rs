//! Promises the README makes that no other test held the service to: CSV quoting, IDN
//! domains end to end, the export across its chunk boundary, `INVALID_ID` on every path,
//! `TOO_MANY_DOMAINS` over GraphQL, `/readyz` when the database is gone, and the
//! `FETCH_USER_AGENT` a site sees.

use crate::fake::{FakeInternet, Sites};
use crate::helpers::{Backend, TestApp, both_backends, json_answer, parse_csv};
use sea_orm::{ConnectionTrait, DbBackend, Statement};
use serde_json::json;
use std::time::Duration;

fn column(header: &[String], name: &str) -> usize {
    header.iter().position(|h| h == name).unwrap()
}

/// Sets every row of the database to a finished state with this error text, by SQL: what a
/// site could make the finder store, without needing a site that says it.
async fn fail_all_with(app: &TestApp, error: &str, favicon_url: &str) {
    let db = app.store.connection();
    db.execute_raw(Statement::from_sql_and_values(
        db.get_database_backend(),
        match db.get_database_backend() {
            DbBackend::Postgres => {
                "UPDATE result SET status = 'failed', error = $1, final_url = $2, tries = 1"
            }
            _ => "UPDATE result SET status = 'failed', error = ?, final_url = ?, tries = 1",
        },
        [error.into(), favicon_url.into()],
    ))
    .await
    .unwrap();
}

async fn csv_quotes_commas_quotes_and_newlines(backend: Backend) {
    let app = TestApp::spawn(backend, &[("WORKER_CONCURRENCY", "0")]).await;
    let job = app
        .create_job("promises", &["tricky.test".to_owned()])
        .await;
    let error = "http_status: 500, said \"no\"\nsecond line,\r\nthird; 'end'";
    let final_url = "http://tricky.test/a,b?q=\"x\"";
    fail_all_with(&app, error, final_url).await;

    let (header, records) = parse_csv(&app.download(&job).await);
    assert_eq!(records.len(), 1, "{records:?}");
    let row = &records[0];
    assert_eq!(row.len(), header.len(), "{row:?}");
    assert_eq!(row[column(&header, "domain")], "tricky.test");
    assert_eq!(
        row[column(&header, "error")],
        error,
        "the error survives the CSV"
    );
    assert_eq!(row[column(&header, "final_url")], final_url);
    app.stop().await;
}
both_backends!(csv_quoting, csv_quotes_commas_quotes_and_newlines);

async fn an_idn_domain_goes_through_job_results_and_csv(backend: Backend) {
    let ascii = idna::domain_to_ascii("bücher.test").unwrap();
    assert_eq!(ascii, "xn--bcher-kva.test");
    let mut sites = Sites::default();
    sites.icon_site(&ascii);
    let internet = FakeInternet::start(sites).await;
    let app = TestApp::spawn_on(backend, &internet, &[]).await;
    // Submitted in Unicode and upper case; the same name in punycode is the same domain.
    let job = app
        .create_job("promises", &["BÜCHER.test".to_owned(), ascii.clone()])
        .await;
    let done = app.wait_for_job(&job, Duration::from_secs(30)).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["total"], 1, "both spellings are one domain: {done}");

    let (_, page) = app.get_json(&format!("/jobs/{job}/results")).await;
    let result = &page["results"][0];
    assert_eq!(result["domain"], ascii.as_str(), "{result}");
    assert_eq!(result["status"], "success", "{result}");
    let icon = format!("http://{ascii}/i.png");
    assert_eq!(result["favicon_url"], icon.as_str(), "{result}");
    assert!(internet.hits(&ascii, "/i.png") >= 1);

    let answer = app
        .graphql(
            "query($id: ID!) { results(jobId: $id) { results { domain faviconUrl } } }",
            json!({"id": job}),
        )
        .await;
    assert_eq!(
        answer["data"]["results"]["results"][0]["domain"],
        ascii.as_str(),
        "{answer}"
    );

    let (header, records) = parse_csv(&app.download(&job).await);
    assert_eq!(records.len(), 1);
    assert_eq!(records[0][column(&header, "domain")], ascii);
    assert_eq!(records[0][column(&header, "favicon_url")], icon);
    app.stop().await;
}
both_backends!(idn_domain, an_idn_domain_goes_through_job_results_and_csv);

async fn the_export_crosses_its_chunk_boundary(backend: Backend) {
    // Many more rows than one chunk holds (the smallest `EXPORT_CHUNK_BYTES`), so the export
    // sends dozens of chunks, each ending between two rows.
    let rows = 2_037;
    let app = TestApp::spawn(
        backend,
        &[("WORKER_CONCURRENCY", "0"), ("EXPORT_CHUNK_BYTES", "1024")],
    )
    .await;
    let domains: Vec<String> = (0..rows).map(|i| format!("d{i:05}.test")).collect();
    let job = app.create_job("promises", &domains).await;
    let (header, records) = parse_csv(&app.download(&job).await);
    let exported: Vec<&str> = records
        .iter()
        .map(|r| r[column(&header, "domain")].as_str())
        .collect();
    assert_eq!(exported.len(), rows, "every row once");
    assert_eq!(
        exported,
        domains.iter().map(String::as_str).collect::<Vec<_>>(),
        "in submission order, none repeated or skipped at a boundary"
    );
    app.stop().await;
}
both_backends!(export_chunk_boundary, the_export_crosses_its_chunk_boundary);

async fn invalid_ids_are_refused_on_every_path(backend: Backend) {
    let app = TestApp::spawn(backend, &[("WORKER_CONCURRENCY", "0")]).await;
    for path in [
        "/jobs/not-a-uuid",
        "/jobs/not-a-uuid/results",
        "/jobs/not-a-uuid/results?page=2",
        "/jobs/not-a-uuid/download",
        "/jobs/12345/download",
    ] {
        let (status, answer) = app.get_json(path).await;
        assert_eq!(status, 400, "{path}: {answer}");
        assert_eq!(answer["error"]["code"], "INVALID_ID", "{path}: {answer}");
    }
    for query in [
        "{ job(id: \"not-a-uuid\") { id } }",
        "{ results(jobId: \"not-a-uuid\") { total } }",
        "{ results(jobId: \"12345\", page: 2) { total } }",
    ] {
        let answer = app.graphql(query, json!({})).await;
        assert_eq!(
            answer["errors"][0]["extensions"]["code"], "INVALID_ID",
            "{query}: {answer}"
        );
    }
    app.stop().await;
}
both_backends!(invalid_ids, invalid_ids_are_refused_on_every_path);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_domains_over_graphql() {
    let app = TestApp::api_only(&[("MAX_DOMAINS_PER_JOB", "3")]).await;
    let mutation = "mutation($d: [String!]!) { createJob(input: {clientId: \"g\", domains: $d}) { id total } }";
    let answer = app
        .graphql(
            mutation,
            json!({"d": ["a.test", "b.test", "c.test", "d.test"]}),
        )
        .await;
    assert_eq!(
        answer["errors"][0]["extensions"]["code"], "TOO_MANY_DOMAINS",
        "{answer}"
    );
    assert_eq!(app.count_rows("job").await, 0, "nothing written");
    // At the limit it is accepted: the refusal above was for the count.
    let answer = app
        .graphql(mutation, json!({"d": ["a.test", "b.test", "c.test"]}))
        .await;
    assert_eq!(answer["data"]["createJob"]["total"], 3, "{answer}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_503_when_the_postgres_database_is_dropped() {
    let Some(admin_url) = crate::helpers::postgres_url() else {
        crate::services::available("TEST_DATABASE_URL", false);
        return;
    };
    let app = TestApp::spawn(Backend::Postgres, &[("WORKER_CONCURRENCY", "0")]).await;
    let (status, ready) = app.get_json("/readyz").await;
    assert_eq!(status, 200, "{ready}");
    let url = url::Url::parse(&app.database_url()).unwrap();
    let name = url.path().trim_start_matches('/').to_owned();
    let admin = sea_orm::Database::connect(&admin_url).await.unwrap();
    admin
        .execute_raw(Statement::from_string(
            DbBackend::Postgres,
            format!("DROP DATABASE {name} WITH (FORCE)"),
        ))
        .await
        .unwrap();
    let (status, ready) = app.get_json("/readyz").await;
    assert_eq!(status, 503, "{ready}");
    assert_eq!(ready["status"], "unavailable", "{ready}");
    assert_eq!(ready["checks"]["database"], "unreachable", "{ready}");
    let (status, _) = app.get_json("/healthz").await;
    assert_eq!(status, 200, "liveness does not depend on the database");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_503_while_migrations_are_pending() {
    let app = TestApp::api_only(&[("RUN_MIGRATIONS", "false")]).await;
    let (status, ready) = app.get_json("/readyz").await;
    assert_eq!(status, 503, "{ready}");
    assert_eq!(ready["checks"]["database"], "migrations_pending", "{ready}");
    // RUN_MIGRATIONS=false really left the schema alone.
    let db = app.store.connection();
    let tables = db
        .query_all_raw(Statement::from_string(
            DbBackend::Sqlite,
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'job'",
        ))
        .await
        .unwrap();
    assert!(tables.is_empty(), "no table was created");
    app.migrate_then_ready().await;
}

impl TestApp {
    /// Applies the migrations the app was told not to run, then expects `/readyz` to be 200.
    async fn migrate_then_ready(self) {
        self.store.migrate().await.unwrap();
        let (status, ready) = self.get_json("/readyz").await;
        assert_eq!(status, 200, "{ready}");
        self.stop().await;
    }
}

/// A site that remembers the User-Agent of every request it gets.
async fn user_agent_site() -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::Mutex<Vec<String>>>,
) {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = seen.clone();
    let app = axum::Router::new().fallback(move |headers: axum::http::HeaderMap| {
        let record = record.clone();
        async move {
            let agent = headers
                .get("user-agent")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            record.lock().unwrap().push(agent);
            axum::response::Html("<html><head><title>no icon</title></head></html>")
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sites_see_the_configured_user_agent() {
    let (addr, seen) = user_agent_site().await;
    let agent = "PromisesBot/1.0 (+https://example.invalid/bot)";
    let resolve = format!("ua.test={addr},www.ua.test={addr}");
    let app = TestApp::spawn(
        Backend::Sqlite,
        &[("FETCH_RESOLVE", &resolve), ("FETCH_USER_AGENT", agent)],
    )
    .await;
    let job = app.create_job("promises", &["ua.test".to_owned()]).await;
    let done = app.wait_for_job(&job, Duration::from_secs(30)).await;
    assert_eq!(done["total"], 1, "{done}");
    let seen: Vec<String> = seen.lock().unwrap().clone();
    assert!(!seen.is_empty(), "the site was fetched");
    assert!(seen.iter().all(|a| a == agent), "{seen:?}");
    app.stop().await;
}

/// `serve --no-worker` serves the API and claims nothing: a job it accepts stays untouched
/// through many poll intervals, until a `worker` process on the same database does it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_no_worker_claims_nothing() {
    let mut sites = Sites::default();
    sites.icon_site("nw.test");
    let internet = FakeInternet::start(sites).await;
    let dir = tempfile::tempdir().unwrap();
    let db_url = format!("sqlite://{}?mode=rwc", dir.path().join("nw.db").display());
    let log = dir.path().join("serve.log");
    let poll = Duration::from_millis(50);
    let start = |args: &[&str], log: &std::path::Path| {
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_favicon-finder"))
            .args(args)
            .env_clear()
            .env("DATABASE_URL", &db_url)
            .env("HOST", "127.0.0.1")
            .env("PORT", "0")
            .env("FETCH_RESOLVE", internet.resolve(&[]))
            .env("FETCH_ALLOW_PRIVATE_NETWORKS", "true")
            .env("WORKER_POLL_MS", poll.as_millis().to_string())
            .env("LOG_FORMAT", "json")
            .env(
                "RUST_LOG",
                "info,sqlx=warn,sea_orm=warn,sea_orm_migration=warn",
            )
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap();
        crate::helpers::ChildGuard(child)
    };
    let lines = |log: &std::path::Path| -> Vec<serde_json::Value> {
        std::fs::read_to_string(log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    };
    let _serve = start(&["serve", "--no-worker"], &log);
    // The port the API bound (PORT=0), from its log: no port is guessed.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let addr = loop {
        let listening = lines(&log).into_iter().find_map(|l| {
            let message = l["fields"]["message"]
                .as_str()
                .or(l["message"].as_str())?
                .to_owned();
            message
                .starts_with("API listening")
                .then(|| {
                    l["fields"]["addr"]
                        .as_str()
                        .or(l["addr"].as_str())
                        .map(str::to_owned)
                })
                .flatten()
        });
        if let Some(addr) = listening {
            break addr;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no API address in the log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        // Wall-clock: another process writes its log.
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let http = reqwest::Client::new();
    let base = format!("http://{addr}");
    let job = crate::client::create_job_at(&base, "nw", &["nw.test"]).await;
    // Waiting for something not to happen needs a window: twenty poll intervals, in which
    // any worker would have claimed the row many times over. Wall-clock: the workers that
    // must not claim are other processes.
    tokio::time::sleep(poll * 20).await;
    assert_eq!(internet.host_hits("nw.test"), 0, "nothing was fetched");
    let results = json_answer(http.get(format!("{base}/jobs/{job}/results")), None).await;
    assert_eq!(results["results"][0]["tries"], 0, "{results}");
    assert!(
        !lines(&log)
            .iter()
            .any(|l| l.to_string().contains("worker pool started")),
        "no worker pool in a --no-worker process"
    );

    // The row was claimable all along: a worker process does it.
    let _worker = start(&["worker"], &dir.path().join("worker.log"));
    let done = crate::helpers::wait_for_job_at(&base, &job, Duration::from_secs(30)).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert!(internet.hits("nw.test", "/") >= 1);
}
