//! Accounts, phase one: keys from the command line, the door every request passes (REST,
//! GraphQL, WebSocket), signed download links, browsers let in on purpose, and the metrics
//! guard. Per-job tenancy (who sees which job) is in `tenancy.rs`.

use crate::helpers::{Backend, TestApp, both_backends, ws_init_with};
use favicon_finder::auth::LinkSigner;
use serde_json::{Value, json};
use std::process::Command;
use std::time::Duration;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const SECRET: &str = "download-secret-download-secret-0123";
pub(crate) const BOOTSTRAP: &str = "ffk_bootstrap-key-for-tests-0123456789abcdef";

/// An app that wants a key on every request, with `BOOTSTRAP` as its admin key and no
/// workers, plus `overrides`.
pub(crate) async fn required_app(backend: Backend, overrides: &[(&str, &str)]) -> TestApp {
    let mut vars = vec![
        ("AUTH_MODE", "required"),
        ("BOOTSTRAP_API_KEY", BOOTSTRAP),
        ("WORKER_CONCURRENCY", "0"),
    ];
    vars.extend_from_slice(overrides);
    TestApp::spawn(backend, &vars).await
}

/// Runs `favicon-finder keys …` on the app's database; returns (exit code, stdout, stderr).
pub(crate) async fn keys(app: &TestApp, args: &[&str]) -> (Option<i32>, String, String) {
    let url = app.database_url();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let output = Command::new(env!("CARGO_BIN_EXE_favicon-finder"))
            .arg("keys")
            .args(&args)
            .env_clear()
            .env("DATABASE_URL", url)
            // The most talkative level, so the test can see no key reaches the log.
            .env("RUST_LOG", "debug")
            .output()
            .unwrap();
        (
            output.status.code(),
            String::from_utf8(output.stdout).unwrap(),
            String::from_utf8(output.stderr).unwrap(),
        )
    })
    .await
    .unwrap()
}

/// Creates a key with the CLI; returns (its id, the key).
pub(crate) async fn create_key(app: &TestApp, client: &str, scopes: &[&str]) -> (String, String) {
    let mut args = vec!["create", "--client", client, "--name", "test key"];
    for scope in scopes {
        args.extend(["--scope", scope]);
    }
    let (code, stdout, stderr) = keys(app, &args).await;
    assert_eq!(code, Some(0), "{stderr}");
    let key = stdout.trim().to_owned();
    assert!(key.starts_with("ffk_") && key.len() >= 40, "{stdout}");
    // The positive control: the debug log is really captured, and holds the key's line.
    assert!(
        stderr.contains("API key created"),
        "the log was not captured: {stderr}"
    );
    assert!(!stderr.contains(&key), "the key reached the log: {stderr}");
    let id = stderr
        .split("Created key ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no key id in {stderr}"))
        .to_owned();
    (id, key)
}

async fn get(app: &TestApp, path: &str, key: Option<&str>) -> (u16, Value) {
    let mut request = app.http.get(app.url(path));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn post(app: &TestApp, path: &str, body: &Value, key: Option<&str>) -> (u16, Value) {
    let mut request = app.http.post(app.url(path)).json(body);
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn job_body() -> Value {
    json!({"client_id": "acme", "domains": ["a.test"]})
}

fn assert_unauthorized(status: u16, body: &Value, what: &str) {
    assert_eq!(status, 401, "{what}: {body}");
    assert_eq!(body["error"]["code"], "UNAUTHORIZED", "{what}: {body}");
}

/// With `AUTH_MODE=required`: no key, a bad key and a revoked key are all 401 over REST and
/// GraphQL, with nothing written; a key from `keys create` works until `keys revoke`; `keys
/// list` shows everything but the key.
async fn keys_open_the_door_until_revoked(backend: Backend) {
    let app = TestApp::spawn(
        backend,
        &[("AUTH_MODE", "required"), ("WORKER_CONCURRENCY", "0")],
    )
    .await;
    let (status, body) = post(&app, "/jobs", &job_body(), None).await;
    assert_unauthorized(status, &body, "no key");
    let bad = "ffk_this-is-not-a-key-0000000000000000000000";
    let (status, body) = post(&app, "/jobs", &job_body(), Some(bad)).await;
    assert_unauthorized(status, &body, "unknown key");
    assert!(!body.to_string().contains(bad), "the key is echoed: {body}");
    let response = app
        .http
        .get(app.url("/jobs/00000000-0000-0000-0000-000000000000"))
        .header("authorization", "Basic dXNlcjpwYXNz")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    let (status, body) = post(&app, "/graphql", &json!({"query": "{ __typename }"}), None).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["errors"][0]["extensions"]["code"], "UNAUTHORIZED");
    assert_eq!(app.count_rows("job").await, 0, "nothing written");
    assert_eq!(app.count_rows("client").await, 0, "nothing written");

    let (id, key) = create_key(&app, "acme", &["submit", "read"]).await;
    let (status, body) = post(&app, "/jobs", &job_body(), Some(&key)).await;
    assert_eq!(status, 201, "{body}");
    let job_id = body["job_id"].as_str().unwrap().to_owned();
    let (status, body) = get(&app, &format!("/jobs/{job_id}"), Some(&key)).await;
    assert_eq!(status, 200, "{body}");
    let body = app
        .http
        .post(app.url("/graphql"))
        .bearer_auth(&key)
        .json(&json!({"query": "{ __typename }"}))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(body["data"]["__typename"], "QueryRoot", "{body}");

    let (code, listed, stderr) = keys(&app, &["list"]).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!listed.contains(&key), "the list shows the key: {listed}");
    let row = listed
        .lines()
        .find(|l| l.starts_with(&id))
        .unwrap_or_else(|| panic!("{id} not listed: {listed}"));
    let cells: Vec<&str> = row.split('\t').collect();
    assert_eq!(&cells[1..4], ["acme", "test key", "submit,read"], "{row}");
    assert_ne!(cells[6], "-", "last use noted: {row}");
    assert_eq!(cells[7], "-", "not revoked: {row}");

    let (code, _, stderr) = keys(&app, &["revoke", &id]).await;
    assert_eq!(code, Some(0), "{stderr}");
    let (status, body) = get(&app, &format!("/jobs/{job_id}"), Some(&key)).await;
    assert_unauthorized(status, &body, "revoked key");
    let (code, listed, _) = keys(&app, &["list"]).await;
    assert_eq!(code, Some(0));
    let row = listed.lines().find(|l| l.starts_with(&id)).unwrap();
    assert_ne!(row.split('\t').nth(7), Some("-"), "revoked: {row}");
    let (code, _, stderr) = keys(&app, &["revoke", "00000000-0000-0000-0000-000000000000"]).await;
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(app.count_rows("job").await, 1);
    app.stop().await;
}
both_backends!(keys_and_the_door, keys_open_the_door_until_revoked);

/// `keys create` refuses what no request could use: an unknown scope, and a client name that
/// jobs would refuse (checked by `Accounts`, the same rule as a job's `client_id`).
#[tokio::test]
async fn keys_create_refuses_an_unknown_scope_or_a_bad_client() {
    let app = TestApp::spawn(Backend::Sqlite, &[("WORKER_CONCURRENCY", "0")]).await;
    let (code, stdout, stderr) =
        keys(&app, &["create", "--client", "acme", "--scope", "root"]).await;
    assert_ne!(code, Some(0));
    assert!(stdout.is_empty(), "{stdout}");
    assert!(stderr.contains("root"), "{stderr}");
    let long = "c".repeat(256);
    for bad in ["  ", long.as_str()] {
        let (code, stdout, stderr) = keys(&app, &["create", "--client", bad]).await;
        assert_ne!(code, Some(0), "{bad:?}");
        assert!(stdout.is_empty(), "{stdout}");
        assert!(stderr.contains("--client: client_id must"), "{stderr}");
    }
    assert_eq!(app.count_rows("api_key").await, 0);
    let (code, _, stderr) = keys(&app, &["create", "--client", " acme "]).await;
    assert_eq!(code, Some(0), "{stderr}");
    let (_, listed, _) = keys(&app, &["list"]).await;
    assert!(listed.contains("\tacme\t"), "the name is trimmed: {listed}");
}

/// `AUTH_MODE=off` (the loopback default): no key works as before, but a key that is sent
/// must be good.
#[tokio::test]
async fn off_mode_still_checks_a_key_that_is_sent() {
    let app = TestApp::spawn(Backend::Sqlite, &[("WORKER_CONCURRENCY", "0")]).await;
    let (status, body) = post(&app, "/jobs", &job_body(), None).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = post(&app, "/jobs", &job_body(), Some("ffk_wrong")).await;
    assert_unauthorized(status, &body, "bad key in off mode");
    assert_eq!(app.count_rows("job").await, 1);
}

/// `BOOTSTRAP_API_KEY` is an admin key from the first request; starting again keeps it, and
/// a new value replaces (revokes) the old one.
async fn bootstrap_key_is_created_and_kept(backend: Backend) {
    let app = required_app(backend, &[]).await;
    let (status, body) = post(&app, "/jobs", &job_body(), Some(BOOTSTRAP)).await;
    assert_eq!(status, 201, "admin may act for any client: {body}");
    let accounts = favicon_finder::auth::Accounts::new(
        app.store.clone(),
        LinkSigner::new(None, Duration::from_secs(60)),
    );
    let first = app.store.list_api_keys().await.unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].scopes, "admin");
    assert_eq!(
        accounts.bootstrap(BOOTSTRAP).await.unwrap(),
        first[0].id,
        "kept"
    );
    let rotated = "ffk_rotated-bootstrap-key-0123456789abcdef";
    let second = accounts.bootstrap(rotated).await.unwrap();
    assert_ne!(second, first[0].id);
    let (status, body) = get(
        &app,
        "/jobs/00000000-0000-0000-0000-000000000000",
        Some(BOOTSTRAP),
    )
    .await;
    assert_unauthorized(status, &body, "the replaced bootstrap key");
    let (status, _) = get(
        &app,
        "/jobs/00000000-0000-0000-0000-000000000000",
        Some(rotated),
    )
    .await;
    assert_eq!(status, 404);
    app.stop().await;
}
both_backends!(bootstrap_key, bootstrap_key_is_created_and_kept);

/// A signed link downloads its job's CSV without a key; altered or expired it is a 403 with
/// the error shape.
#[tokio::test]
async fn signed_download_links() {
    let app = required_app(Backend::Sqlite, &[("DOWNLOAD_URL_SECRET", SECRET)]).await;
    let (_, body) = post(&app, "/jobs", &job_body(), Some(BOOTSTRAP)).await;
    let job_id: uuid::Uuid = body["job_id"].as_str().unwrap().parse().unwrap();
    let signer = LinkSigner::new(Some(SECRET), Duration::from_secs(900));
    let now = chrono::Utc::now();
    let path = signer.link(job_id, now);

    let response = app.http.get(app.url(&path)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let csv = response.text().await.unwrap();
    assert!(csv.contains("a.test"), "{csv}");

    let (status, _) = get(&app, &format!("/jobs/{job_id}/download"), None).await;
    assert_eq!(status, 401, "no link, no key");
    let other = uuid::Uuid::now_v7();
    let moved = path.replace(&job_id.to_string(), &other.to_string());
    let altered = path.replacen("sig=", "sig=A", 1);
    let expires: i64 = path
        .split("expires=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let extended = path.replace(
        &format!("expires={expires}"),
        &format!("expires={}", expires + 3600),
    );
    for (what, path) in [
        ("moved", &moved),
        ("altered", &altered),
        ("extended", &extended),
    ] {
        let (status, body) = get(&app, path, None).await;
        assert_eq!(status, 403, "{what}: {body}");
        assert_eq!(body["error"]["code"], "FORBIDDEN", "{what}: {body}");
    }
    let old = signer.link(job_id, now - chrono::Duration::hours(1));
    let (status, body) = get(&app, &old, None).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "LINK_EXPIRED", "{body}");
}

/// Preflights from an allowed origin are answered with that origin; from any other, without
/// the header a browser needs. Refusals carry the CORS headers too, so pages can read them.
#[tokio::test]
async fn cors_preflight_allowed_and_refused() {
    let app = TestApp::spawn(
        Backend::Sqlite,
        &[
            ("CORS_ALLOWED_ORIGINS", "https://app.example.test"),
            ("WORKER_CONCURRENCY", "0"),
        ],
    )
    .await;
    let preflight = |origin: &'static str| {
        app.http
            .request(reqwest::Method::OPTIONS, app.url("/jobs"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization, content-type",
            )
            .send()
    };
    let allowed = preflight("https://app.example.test").await.unwrap();
    assert!(allowed.status().is_success(), "{}", allowed.status());
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://app.example.test"
    );
    let methods = allowed.headers()["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(methods.contains("POST"), "{methods}");
    let headers = allowed.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(
        headers.contains("authorization") && headers.contains("content-type"),
        "{headers}"
    );

    let refused = preflight("https://evil.example.test").await.unwrap();
    assert!(
        refused
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );

    let created = app
        .http
        .post(app.url("/jobs"))
        .header("origin", "https://app.example.test")
        .json(&job_body())
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    assert_eq!(
        created.headers()["access-control-allow-origin"],
        "https://app.example.test"
    );
}

/// A `text/plain` POST (what a cross-site form can send) is refused before anything is read,
/// with a good key too.
#[tokio::test]
async fn text_plain_posts_are_refused_with_nothing_written() {
    let app = required_app(Backend::Sqlite, &[]).await;
    for path in ["/jobs", "/graphql"] {
        let body = if path == "/jobs" {
            job_body().to_string()
        } else {
            json!({"query": "mutation { createJob(input: {clientId: \"acme\", domains: [\"a.test\"]}) { id } }"}).to_string()
        };
        let response = app
            .http
            .post(app.url(path))
            .bearer_auth(BOOTSTRAP)
            .header("content-type", "text/plain")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 415, "{path}");
        let body: Value = response.json().await.unwrap();
        let code = if path == "/jobs" {
            &body["error"]["code"]
        } else {
            &body["errors"][0]["extensions"]["code"]
        };
        assert_eq!(code, "UNSUPPORTED_MEDIA_TYPE", "{path}: {body}");
    }
    assert_eq!(app.count_rows("job").await, 0);
}

/// `/metrics` wants its token when `METRICS_TOKEN` is set; with `OPS_ADDR` it moves to the
/// ops listener.
#[tokio::test]
async fn metrics_need_their_token_or_the_ops_listener() {
    let token = "metrics-token-metrics-token-0123456789";
    let app = TestApp::spawn(
        Backend::Sqlite,
        &[("METRICS_TOKEN", token), ("WORKER_CONCURRENCY", "0")],
    )
    .await;
    let (status, body) = get(&app, "/metrics", None).await;
    assert_unauthorized(status, &body, "no token");
    let (status, _) = get(&app, "/metrics", Some("metrics-token-wrong")).await;
    assert_eq!(status, 401);
    let response = app
        .http
        .get(app.url("/metrics"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.text().await.unwrap().contains("# TYPE"));
    let (status, _) = get(&app, "/healthz", None).await;
    assert_eq!(status, 200, "probes need nothing");
    app.stop().await;

    // Required mode without a token: the API listener wants an admin key.
    let app = required_app(Backend::Sqlite, &[]).await;
    let (status, _) = get(&app, "/metrics", None).await;
    assert_eq!(status, 401);
    let (status, _) = get(&app, "/readyz", None).await;
    assert_eq!(status, 200, "probes need nothing");
    let response = app
        .http
        .get(app.url("/metrics"))
        .bearer_auth(BOOTSTRAP)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn ops_addr_serves_metrics_apart_from_the_api() {
    use favicon_finder::app::{Application, Roles};
    let db = crate::helpers::TestDb::new(Backend::Sqlite).await;
    let mut vars = crate::helpers::base_vars(&db.url);
    vars.insert("OPS_ADDR".into(), "127.0.0.1:0".into());
    vars.insert("WORKER_CONCURRENCY".into(), "0".into());
    let config = favicon_finder::config::Config::from_vars(vars).unwrap();
    let app = Application::build(
        config,
        Roles {
            api: true,
            worker: false,
        },
    )
    .await
    .unwrap();
    let api = format!("http://127.0.0.1:{}", app.port().unwrap());
    let ops = format!("http://127.0.0.1:{}", app.ops_port().unwrap());
    let shutdown = tokio_util::sync::CancellationToken::new();
    let handle = tokio::spawn(app.run_until_stopped(shutdown.clone()));
    let http = reqwest::Client::new();
    let status = |url: String| {
        let http = http.clone();
        async move { http.get(url).send().await.unwrap().status().as_u16() }
    };
    assert_eq!(status(format!("{api}/metrics")).await, 404);
    assert_eq!(status(format!("{ops}/metrics")).await, 200);
    assert_eq!(status(format!("{ops}/readyz")).await, 200);
    assert_eq!(
        status(format!("{ops}/jobs/x")).await,
        404,
        "only ops routes"
    );
    shutdown.cancel();
    handle.await.unwrap().unwrap();
}

/// `GRAPHIQL=false` serves no page; `INTROSPECTION=false` answers no `__schema`.
#[tokio::test]
async fn graphiql_and_introspection_can_be_switched_off() {
    let app = TestApp::spawn(
        Backend::Sqlite,
        &[
            ("GRAPHIQL", "false"),
            ("INTROSPECTION", "false"),
            ("WORKER_CONCURRENCY", "0"),
        ],
    )
    .await;
    let (status, _) = get(&app, "/graphql", None).await;
    assert_eq!(status, 404);
    let body = app
        .graphql("{ __schema { queryType { name } } }", json!({}))
        .await;
    // `graphql` has checked the answer is a 200; the null must be the refusal (the field
    // resolved to null, with no error), not a request that failed for another reason.
    assert!(body["errors"].is_null(), "the request failed: {body}");
    assert_eq!(body["data"], json!({"__schema": null}), "{body}");
    let body = app.graphql("{ __typename }", json!({})).await;
    assert_eq!(body["data"]["__typename"], "QueryRoot");
    app.stop().await;

    let app = TestApp::spawn(Backend::Sqlite, &[("WORKER_CONCURRENCY", "0")]).await;
    let response = app.http.get(app.url("/graphql")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.text().await.unwrap().contains("graphiql"));
    let body = app
        .graphql("{ __schema { queryType { name } } }", json!({}))
        .await;
    assert_eq!(body["data"]["__schema"]["queryType"]["name"], "QueryRoot");
}

mod websockets;
pub(crate) use websockets::{ws_open, ws_open_with};
