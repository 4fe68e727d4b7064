//! Promises of README, `.env.template` and SECURITY.md that no other test held the binary to:
//! the icon settings, signed download links (their lifetime, and a restart with and without
//! `DOWNLOAD_URL_SECRET`), the shape of a 500 `INTERNAL`, and a fully qualified domain.

use crate::fake::{FakeInternet, Route, Sites, png};
use crate::helpers::{Backend, TestApp, TestDb, base_vars, both_backends, wait_for_job_at};
use favicon_finder::app::{Application, Roles};
use favicon_finder::config::Config;
use sea_orm::ConnectionTrait;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// `GET path` on the app; the answer itself, for its headers.
async fn get(app: &TestApp, path: &str) -> reqwest::Response {
    app.http.get(app.url(path)).send().await.unwrap()
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    response.headers().get(name).map(|v| v.to_str().unwrap())
}

/// `ICON_STORE=off`: the icon is still found, but no bytes are kept, so the result has no
/// `icon_url` and `/icons/{domain}` answers the fallback.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn icon_store_off_keeps_no_bytes() {
    let mut sites = Sites::default();
    sites.icon_site("found.test");
    let internet = FakeInternet::start(sites).await;
    let app = TestApp::spawn_on(Backend::Sqlite, &internet, &[("ICON_STORE", "off")]).await;
    let id = app.create_job("off", &["found.test"]).await;
    let job = app.wait_for_job(&id, Duration::from_secs(30)).await;
    assert_eq!(job["completed"], 1, "{job}");
    let (_, page) = app.get_json(&format!("/jobs/{id}/results")).await;
    let row = &page["results"][0];
    assert_eq!(row["status"], "success", "{row}");
    assert!(row["favicon_url"].is_string(), "{row}");
    assert_eq!(row["icon_url"], Value::Null, "{row}");
    assert_eq!(app.count_rows("icon_blob").await, 0);
    let icon = get(&app, "/icons/found.test?fallback=404").await;
    assert_eq!(icon.status(), 404);
    assert_eq!(header(&icon, "x-icon-fallback"), Some("letter"));
}

/// `ICON_MAX_BYTES`: an icon over it is found but not kept (its answer is the fallback); one
/// under it is kept and served, with the configured `ICON_CACHE_CONTROL`. `?find=1` waits at
/// most `ICON_FIND_TIMEOUT_MS` for a slow site, then answers the fallback; the lookup still
/// finishes and stores the icon.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn icon_size_cache_control_and_find_timeout() {
    let small = png(8, 8);
    let big = png(32, 32);
    assert!(
        small.len() < 1024 && big.len() > 1024,
        "the sizes straddle the cap"
    );
    let mut sites = Sites::default();
    for (host, body) in [("small.test", &small), ("big.test", &big)] {
        sites
            .page(host, "<link rel=icon href=/i.png>")
            .file(host, "/i.png", "image/png", body);
    }
    // Under the size cap too, so the lookup that outlives the wait can keep it.
    let slow_page =
        Route::html("<link rel=icon href=/i.png>").with_delay(Duration::from_millis(1500));
    sites
        .route("slow.test", "/", slow_page)
        .file("slow.test", "/i.png", "image/png", &small);
    let internet = FakeInternet::start(sites).await;
    let app = TestApp::spawn_on(
        Backend::Sqlite,
        &internet,
        &[
            ("ICON_MAX_BYTES", "1024"),
            ("ICON_CACHE_CONTROL", "private, max-age=7"),
            ("ICON_FIND_TIMEOUT_MS", "300"),
        ],
    )
    .await;
    let id = app.create_job("sizes", &["small.test", "big.test"]).await;
    let job = app.wait_for_job(&id, Duration::from_secs(30)).await;
    assert_eq!(job["completed"], 2, "both icons are found: {job}");
    assert_eq!(
        app.count_rows("icon_blob").await,
        1,
        "only the small one is kept"
    );

    let kept = get(&app, "/icons/small.test").await;
    assert_eq!(kept.status(), 200);
    assert_eq!(header(&kept, "x-icon-fallback"), None);
    assert_eq!(
        header(&kept, "cache-control"),
        Some("private, max-age=7, stale-while-revalidate=604800")
    );
    assert_eq!(kept.bytes().await.unwrap().as_ref(), &small[..]);
    let too_big = get(&app, "/icons/big.test?fallback=404").await;
    assert_eq!(too_big.status(), 404);
    assert_eq!(header(&too_big, "x-icon-fallback"), Some("letter"));

    let started = Instant::now();
    let slow = get(&app, "/icons/slow.test?find=1&fallback=404").await;
    let waited = started.elapsed();
    assert_eq!(slow.status(), 404);
    assert_eq!(header(&slow, "x-icon-fallback"), Some("letter"));
    assert!(
        waited < Duration::from_millis(1200),
        "answered after {waited:?}, not after ICON_FIND_TIMEOUT_MS (the site takes 1.5 s)"
    );
    // The lookup goes on without the caller: once the site answers, the icon is served, so
    // the fallback above was the wait running out, not a failure.
    crate::subscriptions::wait_until("the slow lookup to store its icon", || async {
        get(&app, "/icons/slow.test?fallback=404").await.status() == 200
    })
    .await;
}

/// `(base URL, stop token, task)` of an app started on an existing database, so a test can
/// stop it and start another process on the same data: a restart.
struct Running {
    base: String,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Running {
    async fn start(db_url: &str, overrides: &[(&str, &str)]) -> Self {
        let mut vars = base_vars(db_url);
        for (k, v) in overrides {
            vars.insert((*k).to_owned(), (*v).to_owned());
        }
        let config = Config::from_vars(vars).expect("test config");
        let roles = Roles {
            api: true,
            worker: true,
        };
        let app = Application::build(config, roles).await.expect("app builds");
        let base = format!("http://127.0.0.1:{}", app.port().unwrap());
        let stop = CancellationToken::new();
        let task = tokio::spawn(app.run_until_stopped(stop.clone()));
        Self { base, stop, task }
    }

    async fn stop(self) {
        self.stop.cancel();
        self.task.await.unwrap().unwrap();
    }

    /// A finished job's signed `download_url`.
    async fn finished_job_link(&self) -> String {
        let id = crate::client::create_job_at(&self.base, "links", &["linked.test"]).await;
        let job = wait_for_job_at(&self.base, &id, Duration::from_secs(30)).await;
        let link = job["download_url"].as_str().unwrap().to_owned();
        assert!(link.contains("sig="), "{link}");
        link
    }
}

/// The status and error code a signed link gets from `base`.
async fn open_link(base: &str, link: &str) -> (u16, Value) {
    let response = reqwest::get(format!("{base}{link}")).await.unwrap();
    let status = response.status().as_u16();
    let body = if status == 200 {
        Value::Null
    } else {
        response.json::<Value>().await.unwrap()["error"]["code"].clone()
    };
    (status, body)
}

/// Without `DOWNLOAD_URL_SECRET` a link dies when the process restarts; with one it survives.
async fn download_links_across_a_restart(backend: Backend) {
    let mut sites = Sites::default();
    sites.icon_site("linked.test");
    let internet = FakeInternet::start(sites).await;
    let resolve = internet.resolve(&[]);
    let db = TestDb::new(backend).await;
    let secret = "a-download-secret-of-at-least-32-characters";
    for (setting, after_restart) in [
        (None, (403, json!("FORBIDDEN"))),
        (Some(secret), (200, Value::Null)),
    ] {
        let mut vars = vec![("FETCH_RESOLVE", resolve.as_str())];
        if let Some(secret) = setting {
            vars.push(("DOWNLOAD_URL_SECRET", secret));
        }
        let first = Running::start(&db.url, &vars).await;
        let link = first.finished_job_link().await;
        assert_eq!(open_link(&first.base, &link).await, (200, Value::Null));
        first.stop().await;
        let second = Running::start(&db.url, &vars).await;
        assert_eq!(
            open_link(&second.base, &link).await,
            after_restart,
            "DOWNLOAD_URL_SECRET {setting:?}"
        );
        second.stop().await;
    }
}
both_backends!(links_across_restart, download_links_across_a_restart);

/// `DOWNLOAD_URL_TTL_SECS`: a link expires that many seconds after it was made, then answers
/// 403 `LINK_EXPIRED`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_link_expires_after_its_ttl() {
    let mut sites = Sites::default();
    sites.icon_site("linked.test");
    let internet = FakeInternet::start(sites).await;
    let app = TestApp::spawn_on(
        Backend::Sqlite,
        &internet,
        &[("DOWNLOAD_URL_TTL_SECS", "10")],
    )
    .await;
    let made = chrono::Utc::now().timestamp();
    let id = app.create_job("ttl", &["linked.test"]).await;
    let job = app.wait_for_job(&id, Duration::from_secs(30)).await;
    let link = job["download_url"].as_str().unwrap().to_owned();
    let expires: i64 = link
        .split(['?', '&'])
        .find_map(|p| p.strip_prefix("expires="))
        .unwrap()
        .parse()
        .unwrap();
    let ttl = expires - made;
    assert!(
        (9..=12).contains(&ttl),
        "expires {ttl} s after it was made: {link}"
    );
    assert_eq!(open_link(&app.base, &link).await, (200, Value::Null));
    // The link's clock is the wall clock of the real server, which paused time cannot move:
    // wait until the expiry has passed.
    let wait = expires + 1 - chrono::Utc::now().timestamp();
    tokio::time::sleep(Duration::from_secs(wait.max(0) as u64)).await;
    assert_eq!(
        open_link(&app.base, &link).await,
        (403, json!("LINK_EXPIRED"))
    );
}

/// A database failure under a request is a 500 `INTERNAL` in the JSON error shape (GraphQL:
/// `extensions.code`), and the message says nothing of the SQL or the database's error.
async fn a_database_failure_is_a_bare_internal(backend: Backend) {
    let mut sites = Sites::default();
    sites.icon_site("gone.test");
    let internet = FakeInternet::start(sites).await;
    let app = TestApp::spawn_on(backend, &internet, &[]).await;
    let id = app.create_job("broken", &["gone.test"]).await;
    app.wait_for_job(&id, Duration::from_secs(30)).await;
    let (status, _) = app.get_json(&format!("/jobs/{id}/results")).await;
    assert_eq!(status, 200, "the page works before the table is gone");
    app.store
        .connection()
        .execute_unprepared("DROP TABLE result CASCADE")
        .await
        .or(app
            .store
            .connection()
            .execute_unprepared("DROP TABLE result")
            .await)
        .unwrap();

    let response = get(&app, &format!("/jobs/{id}/results")).await;
    assert_eq!(response.status(), 500);
    assert_eq!(header(&response, "content-type"), Some("application/json"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "INTERNAL", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(!message.is_empty());
    let graphql = app
        .graphql(
            "query($id: ID!) { results(jobId: $id) { total } }",
            json!({"id": id}),
        )
        .await;
    assert_eq!(
        graphql["errors"][0]["extensions"]["code"], "INTERNAL",
        "{graphql}"
    );
    for text in [body.to_string(), graphql.to_string()] {
        let lower = text.to_lowercase();
        for leak in [
            "select",
            "from ",
            "no such table",
            "does not exist",
            "relation",
            "sqlx",
            "sqlite",
            "postgres",
        ] {
            assert!(
                !lower.contains(leak),
                "{leak:?} shown to the client: {text}"
            );
        }
    }
}
both_backends!(internal_error, a_database_failure_is_a_bare_internal);

/// A domain written fully qualified (`dot.test.`) is the same domain: normalised without the
/// dot, fetched, and answered from the cache for the unqualified name and back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fully_qualified_domain_is_the_same_domain() {
    let mut sites = Sites::default();
    sites.icon_site("dot.test");
    let internet = FakeInternet::start(sites).await;
    let app = TestApp::spawn_on(Backend::Sqlite, &internet, &[]).await;
    let (status, created) = app
        .post_json(
            "/jobs",
            &json!({"client_id": "fq", "domains": ["dot.test.", "DOT.test"]}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["total"], 1, "one domain, written twice: {created}");
    let id = created["job_id"].as_str().unwrap();
    let job = app.wait_for_job(id, Duration::from_secs(30)).await;
    assert_eq!(job["completed"], 1, "{job}");
    let (_, page) = app.get_json(&format!("/jobs/{id}/results")).await;
    assert_eq!(page["results"][0]["domain"], "dot.test", "{page}");
    assert_eq!(page["results"][0]["status"], "success", "{page}");
    assert!(internet.hits("dot.test", "/") >= 1, "fetched by its name");
    let again = app.create_job("fq", &["dot.test."]).await;
    app.wait_for_job(&again, Duration::from_secs(30)).await;
    let (_, page) = app.get_json(&format!("/jobs/{again}/results")).await;
    assert_eq!(page["results"][0]["cached"], true, "{page}");
}
