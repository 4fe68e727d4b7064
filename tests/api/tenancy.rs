//! Accounts, phase two: each client sees only its own jobs. The access matrix tries every way
//! of reading a job with every kind of caller; the hourly allowances follow the key (or, without
//! one, the address too); signed links; and no key material in the log.

use crate::accounts::ws_open;
use crate::helpers::{Backend, ChildGuard, TestApp, both_backends, json_answer, ws_init_with};
use favicon_finder::auth::{Accounts, LinkSigner, Scope};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

const SECRET: &str = "tenancy-download-secret-0123456789abcdef";

mod ways;
pub(crate) use ways::{Answer, Target, WAYS, Way, read};

/// A caller in the matrix, and what it should be told about a job of `client`.
struct Actor {
    name: &'static str,
    key: Option<String>,
    /// The client whose jobs it sees, if it is a client's key.
    owner: Option<&'static str>,
    /// What it is told of every other job.
    otherwise: Answer,
}

/// An app that wants keys, signs download links with [`SECRET`] and runs no worker (jobs stay
/// as created), with the accounts handle that makes its keys.
async fn keyed_app(backend: Backend) -> (TestApp, Accounts) {
    let app = TestApp::spawn(
        backend,
        &[
            ("AUTH_MODE", "required"),
            ("DOWNLOAD_URL_SECRET", SECRET),
            ("WORKER_CONCURRENCY", "0"),
        ],
    )
    .await;
    let accounts = Accounts::new(
        app.store.clone(),
        LinkSigner::new(None, Duration::from_secs(60)),
    );
    (app, accounts)
}

/// Two clients with keys, an admin, a key without `read`, and no key at all each try every way
/// of reading each client's job; a revoked key is refused at its next request. Over REST a
/// signed link serves its one job's CSV untouched, and nothing altered, moved or expired.
async fn access_matrix(backend: Backend) {
    let (app, accounts) = keyed_app(backend).await;
    let key = |client: &'static str, scopes: &'static [Scope]| {
        let accounts = accounts.clone();
        async move {
            let (row, key) = accounts.create_key(client, "matrix", scopes).await.unwrap();
            (row.id, key)
        }
    };
    let (acme_id, acme) = key("acme", &[Scope::Submit, Scope::Read]).await;
    let (_, globex) = key("globex", &[Scope::Submit, Scope::Read]).await;
    let (_, admin) = key("ops", &[Scope::Admin]).await;
    let (_, acme_submit_only) = key("acme", &[Scope::Submit]).await;

    let mut jobs = Vec::new();
    for (client, key) in [("acme", &acme), ("globex", &globex)] {
        let response = app
            .http
            .post(app.url("/jobs"))
            .bearer_auth(key)
            .json(&json!({"domains": [format!("{client}.test")]}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        let body: Value = response.json().await.unwrap();
        jobs.push(Target {
            id: body["job_id"].as_str().unwrap().to_owned(),
            client,
        });
    }

    let actor = |name, key: Option<&String>, owner, otherwise| Actor {
        name,
        key: key.cloned(),
        owner,
        otherwise,
    };
    let actors = [
        actor("acme", Some(&acme), Some("acme"), Answer::NotFound),
        actor("globex", Some(&globex), Some("globex"), Answer::NotFound),
        actor("admin", Some(&admin), None, Answer::Sees),
        actor(
            "acme without read",
            Some(&acme_submit_only),
            None,
            Answer::Forbidden,
        ),
        actor("no key", None, None, Answer::Unauthorized),
    ];
    let mut wrong = Vec::new();
    for actor in &actors {
        for job in &jobs {
            for way in WAYS {
                let mut expected = if actor.owner == Some(job.client) {
                    Answer::Sees
                } else {
                    actor.otherwise
                };
                // Naming another client in `jobs(clientId:)` is refused outright; a job is
                // never shown to it either way.
                if matches!(way, Way::GraphqlJobs) && expected == Answer::NotFound {
                    expected = Answer::Forbidden;
                }
                let got = read(&app, actor.key.as_deref(), way, job).await;
                if got != expected {
                    wrong.push(format!(
                        "{} reading {}'s job by {way:?}: {got:?}, expected {expected:?}",
                        actor.name, job.client
                    ));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));

    // `jobs` without `clientId` lists the caller's own jobs and nothing else.
    let body = json_answer(
        app.http
            .post(app.url("/graphql"))
            .json(&json!({"query": "{ jobs { total jobs { id clientId } } }"})),
        Some(&acme),
    )
    .await;
    assert_eq!(body["data"]["jobs"]["total"], 1, "{body}");
    assert_eq!(body["data"]["jobs"]["jobs"][0]["id"], jobs[0].id.as_str());

    // The signed link from the job's answer works without a key for that job's CSV only.
    let (acme_job, globex_job) = (&jobs[0].id, &jobs[1].id);
    let status = json_answer(
        app.http.get(app.url(&format!("/jobs/{acme_job}"))),
        Some(&acme),
    )
    .await;
    let link = status["download_url"].as_str().unwrap().to_owned();
    assert!(
        link.starts_with(&format!("/jobs/{acme_job}/download?")),
        "{link}"
    );
    let request = app
        .http
        .post(app.url("/graphql"))
        .json(&json!({"query": "query($id: ID!) { job(id: $id) { downloadUrl } }", "variables": {"id": acme_job}}));
    let graphql_link = json_answer(request, Some(&admin)).await["data"]["job"]["downloadUrl"]
        .as_str()
        .unwrap()
        .to_owned();
    let signer = LinkSigner::new(Some(SECRET), Duration::from_secs(900));
    let expired = signer.link(
        acme_job.parse().unwrap(),
        chrono::Utc::now() - chrono::Duration::hours(1),
    );
    let links = [
        ("untouched", link.clone(), 200, ""),
        ("from GraphQL", graphql_link, 200, ""),
        (
            "altered",
            link.replacen("sig=", "sig=x", 1),
            403,
            "FORBIDDEN",
        ),
        (
            "moved to another job",
            link.replace(acme_job.as_str(), globex_job),
            403,
            "FORBIDDEN",
        ),
        ("expired", expired, 403, "LINK_EXPIRED"),
    ];
    for (what, path, status, code) in links {
        let response = app.http.get(app.url(&path)).send().await.unwrap();
        assert_eq!(response.status().as_u16(), status, "{what}: {path}");
        let text = response.text().await.unwrap();
        if status == 200 {
            assert!(text.contains("acme.test"), "{what}: {text}");
        } else {
            let body: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(body["error"]["code"], code, "{what}: {body}");
        }
    }

    // A revoked key is refused at its next request, by every door.
    app.store.revoke_api_key(acme_id).await.unwrap();
    for way in WAYS {
        let got = read(&app, Some(&acme), way, &jobs[0]).await;
        assert_eq!(got, Answer::Unauthorized, "revoked key by {way:?}");
    }
    app.stop().await;
}
both_backends!(access_matrix_on, access_matrix);

/// With keys, the hourly allowance follows the key's client whatever `client_id` says: it
/// cannot be dodged by writing another name, and another client's key has its own.
#[tokio::test]
async fn the_hourly_limit_follows_the_key_not_client_id() {
    let app = TestApp::spawn(
        Backend::Sqlite,
        &[
            ("AUTH_MODE", "required"),
            ("RATE_LIMIT_JOBS_PER_HOUR", "1"),
            ("WORKER_CONCURRENCY", "0"),
        ],
    )
    .await;
    let accounts = Accounts::new(
        app.store.clone(),
        LinkSigner::new(None, Duration::from_secs(60)),
    );
    let scopes = [Scope::Submit, Scope::Read];
    let (_, acme) = accounts.create_key("acme", "", &scopes).await.unwrap();
    let (_, globex) = accounts.create_key("globex", "", &scopes).await.unwrap();
    let post = |key: &str, body: Value| {
        let request = app.http.post(app.url("/jobs")).bearer_auth(key).json(&body);
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap())
        }
    };
    let (status, body) = post(&acme, json!({"domains": ["a.test"]})).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = post(&acme, json!({"client_id": "acme", "domains": ["b.test"]})).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (429, &json!("RATE_LIMITED"))
    );
    let (status, body) = post(&acme, json!({"client_id": "acme-2", "domains": ["b.test"]})).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (403, &json!("FORBIDDEN")),
        "another name is not another allowance: {body}"
    );
    let answer = json_answer(app.http.post(app.url("/graphql")).json(&json!({"query": "mutation { createJob(input: {clientId: \"acme-3\", domains: [\"c.test\"]}) { id } }"})), Some(&acme)).await;
    assert_eq!(
        answer["errors"][0]["extensions"]["code"], "FORBIDDEN",
        "{answer}"
    );
    let (status, body) = post(&globex, json!({"domains": ["a.test"]})).await;
    assert_eq!(status, 201, "globex has its own allowance: {body}");
    assert_eq!(app.count_rows("job").await, 2);
}

/// Without a key anyone may write any `client_id`, so the allowances also hold per address
/// (from `TRUSTED_PROXY_HEADERS` behind a proxy), over REST and GraphQL alike.
#[tokio::test]
async fn without_keys_the_hourly_limit_also_follows_the_address() {
    let app = TestApp::spawn(
        Backend::Sqlite,
        &[
            ("RATE_LIMIT_JOBS_PER_HOUR", "1"),
            ("TRUSTED_PROXY_HEADERS", "x-forwarded-for"),
            ("WORKER_CONCURRENCY", "0"),
        ],
    )
    .await;
    let post = |from: &'static str, client: &'static str| {
        let request = app
            .http
            .post(app.url("/jobs"))
            .header("x-forwarded-for", from)
            .json(&json!({"client_id": client, "domains": ["a.test"]}));
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap())
        }
    };
    assert_eq!(post("192.0.2.1", "a").await.0, 201);
    let (status, body) = post("192.0.2.1", "b").await;
    assert_eq!(status, 429, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("address 192.0.2.1"),
        "{body}"
    );
    let answer = json_answer(app.http.post(app.url("/graphql")).header("x-forwarded-for", "192.0.2.1").json(&json!({"query": "mutation { createJob(input: {clientId: \"c\", domains: [\"a.test\"]}) { id } }"})), None).await;
    assert_eq!(
        answer["errors"][0]["extensions"]["code"], "RATE_LIMITED",
        "{answer}"
    );
    assert_eq!(post("192.0.2.2", "b").await.0, 201, "another address");
    assert_eq!(app.count_rows("job").await, 2);
}

/// `PUBLIC_URL` makes download links absolute.
#[tokio::test]
async fn download_urls_are_absolute_under_public_url() {
    let app = TestApp::spawn(
        Backend::Sqlite,
        &[
            ("PUBLIC_URL", "https://favicons.example.test/"),
            ("WORKER_CONCURRENCY", "0"),
        ],
    )
    .await;
    let (_, created) = app
        .post_json("/jobs", &json!({"client_id": "c", "domains": ["a.test"]}))
        .await;
    let id = created["job_id"].as_str().unwrap();
    let (_, status) = app.get_json(&format!("/jobs/{id}")).await;
    let url = status["download_url"].as_str().unwrap();
    let path = format!("/jobs/{id}/download?");
    assert!(
        url.starts_with(&format!("https://favicons.example.test{path}")),
        "{url}"
    );
    let response = app
        .http
        .get(app.url(url.trim_start_matches("https://favicons.example.test")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

/// Starts `favicon-finder serve` as a child at `RUST_LOG=debug`; its whole log is collected.
fn serve_logging(vars: &[(&str, &str)]) -> (ChildGuard, String, Arc<Mutex<String>>) {
    use std::io::BufRead;
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_favicon-finder"));
    command
        .arg("serve")
        .env_clear()
        .env("HOST", "127.0.0.1")
        .env("PORT", "0")
        .env("RUST_LOG", "debug")
        .env("WORKER_CONCURRENCY", "0")
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped());
    for (name, value) in vars {
        command.env(name, value);
    }
    let mut child = command.spawn().unwrap();
    let log = Arc::new(Mutex::new(String::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    for stream in [
        Box::new(child.stderr.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(child.stdout.take().unwrap()),
    ] {
        let log = log.clone();
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.split("GraphiQL at http://").nth(1)
                    && let Some((addr, _)) = rest.split_once("/graphql")
                {
                    let _ = tx.send(addr.to_owned());
                }
                let mut log = log.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
    }
    let addr = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("serve logs its address within 20 s");
    (ChildGuard(child), format!("http://{addr}"), log)
}

/// One request of each kind (a key made on the command line, REST, GraphQL over HTTP, a
/// WebSocket's `connection_init`, a signed download, a bad key) at the most talkative log
/// level: the log names the key by its id, and never holds the key, its secret part, the
/// bootstrap key or the link secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_material_never_reaches_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}?mode=rwc", dir.path().join("log.db").display());
    let bootstrap = "ffk_bootstrap-secret-for-the-log-test-0123456789";
    let (_child, base, log) = serve_logging(&[
        ("DATABASE_URL", &db),
        ("AUTH_MODE", "required"),
        ("BOOTSTRAP_API_KEY", bootstrap),
        ("DOWNLOAD_URL_SECRET", SECRET),
    ]);
    // The command line, with its own log.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_favicon-finder"))
        .args(["keys", "create", "--client", "acme"])
        .env_clear()
        .env("DATABASE_URL", &db)
        .env("RUST_LOG", "debug")
        .output()
        .unwrap();
    assert!(output.status.success());
    let key = String::from_utf8(output.stdout).unwrap().trim().to_owned();
    let cli_log = String::from_utf8(output.stderr).unwrap();
    let key_id = cli_log
        .split("Created key ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap()
        .to_owned();

    let http = reqwest::Client::new();
    let created = json_answer(
        http.post(format!("{base}/jobs"))
            .json(&json!({"domains": ["a.test"]})),
        Some(&key),
    )
    .await;
    let job_id = created["job_id"].as_str().unwrap().to_owned();
    let answer = json_answer(http.post(format!("{base}/graphql")).json(&json!({"query": "query($id: ID!) { job(id: $id) { downloadUrl } }", "variables": {"id": job_id}})), Some(&key)).await;
    let link = answer["data"]["job"]["downloadUrl"].as_str().unwrap();
    let csv = http.get(format!("{base}{link}")).send().await.unwrap();
    assert_eq!(csv.status(), 200);
    let bad = http
        .get(format!("{base}/jobs/{job_id}"))
        .bearer_auth(format!("{key}x"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 401);
    let ws_base = base.replacen("http://", "ws://", 1);
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(format!(
            "{ws_base}/graphql/ws"
        ))
        .unwrap();
    request.headers_mut().insert(
        "sec-websocket-protocol",
        "graphql-transport-ws".parse().unwrap(),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let init = json!({"type": "connection_init", "payload": {"apiKey": key}});
    ws.send(Message::Text(init.to_string().into()))
        .await
        .unwrap();
    let ack = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(ack.to_text().unwrap().contains("connection_ack"), "{ack}");
    drop(ws);

    // The key's id is logged by the door (so the log is really captured), then the log is
    // checked as a whole.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !log.lock().unwrap().contains(&key_id) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the key id never logged"
        );
        // Wall-clock: another process writes the log.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = format!("{}\n{cli_log}", log.lock().unwrap());
    let secret_part = key.strip_prefix("ffk_").unwrap();
    for (what, material) in [
        ("the key", key.as_str()),
        ("the key's secret part", secret_part),
        ("the key past its shown prefix", &key[8..]),
        ("the bootstrap key", bootstrap),
        ("the bootstrap key's secret part", &bootstrap[4..]),
        ("the link secret", SECRET),
    ] {
        assert!(!log.contains(material), "{what} is in the log");
    }
}

/// A key with `submit` but not `read` creates and cancels jobs, but no answer to it is a way
/// to read them: no signed CSV link and no failure groups (REST leaves both out, GraphQL
/// answers null), whether the job is running or already finished. A key that also has `read`
/// still gets both.
async fn submit_only_answers_hold_nothing_to_read(backend: Backend) {
    let (app, accounts) = keyed_app(backend).await;
    let (_, writer) = accounts
        .create_key("acme", "writer", &[Scope::Submit])
        .await
        .unwrap();
    let (_, reader) = accounts
        .create_key("acme", "reader", &[Scope::Submit, Scope::Read])
        .await
        .unwrap();
    let post = |path: String, body: Value, key: String| {
        let request = app.http.post(app.url(&path)).json(&body);
        async move { json_answer(request, Some(&key)).await }
    };
    let created = post(
        "/jobs".into(),
        json!({"domains": ["a.test"]}),
        writer.clone(),
    )
    .await;
    let id = created["job_id"].as_str().unwrap().to_owned();
    assert!(created.get("download_url").is_none(), "{created}");
    // Running, then finished: both cancels answer the job, and neither a way to read it.
    for round in ["running", "finished"] {
        let job = post(format!("/jobs/{id}/cancel"), json!({}), writer.clone()).await;
        assert_eq!(job["status"], "cancelled", "{round}: {job}");
        for field in ["download_url", "failures_by_reason"] {
            assert!(
                job.get(field).is_none(),
                "a submit-only key's cancel of a {round} job answered {field}: {job}"
            );
        }
    }
    let job = post(format!("/jobs/{id}/cancel"), json!({}), reader.clone()).await;
    assert!(job["download_url"].is_string(), "{job}");
    assert_eq!(job["failures_by_reason"][0]["error_code"], "cancelled");

    let fields = "id status downloadUrl failuresByReason { errorCode count }";
    let graphql = |query: String, variables: Value, key: String| {
        let request = app
            .http
            .post(app.url("/graphql"))
            .json(&json!({"query": query, "variables": variables}));
        async move { json_answer(request, Some(&key)).await }
    };
    let create =
        format!("mutation {{ createJob(input: {{domains: [\"b.test\"]}}) {{ {fields} }} }}");
    let cancel = format!("mutation($id: ID!) {{ cancelJob(id: $id) {{ {fields} }} }}");
    let body = graphql(create.clone(), json!({}), writer.clone()).await;
    let created = &body["data"]["createJob"];
    assert!(body["errors"].is_null(), "{body}");
    let id = created["id"].as_str().unwrap().to_owned();
    let mut answers = vec![("createJob", created.clone())];
    for _ in ["running", "finished"] {
        let body = graphql(cancel.clone(), json!({"id": id}), writer.clone()).await;
        assert!(body["errors"].is_null(), "{body}");
        answers.push(("cancelJob", body["data"]["cancelJob"].clone()));
    }
    for (mutation, job) in answers {
        assert!(
            job["downloadUrl"].is_null() && job["failuresByReason"].is_null(),
            "{mutation} answered a submit-only key a way to read the job: {job}"
        );
    }
    let body = graphql(create, json!({}), reader.clone()).await;
    assert!(
        body["data"]["createJob"]["downloadUrl"].is_string(),
        "{body}"
    );
    assert!(
        body["data"]["createJob"]["failuresByReason"].is_array(),
        "{body}"
    );
    app.stop().await;
}
both_backends!(
    submit_only_answers,
    submit_only_answers_hold_nothing_to_read
);
