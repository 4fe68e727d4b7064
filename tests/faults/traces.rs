//! OpenTelemetry traces across processes: an API process and a worker process export to a
//! collector in the test (`common::otlp`), and one job's life is one trace. Also: no span
//! carries a secret, a collector that is down costs nothing but the dropped spans, and one
//! behind TLS is reached over both protocols when its CA is named.

use crate::fake::{FakeInternet, Sites};
use crate::harness::{PgDb, Proc, base_env, migrated_store, one_at_a_time, postgres_url, wait_for};
use crate::otlp::{Collector, Span, descends};
use favicon_finder::entities::job::JobStatus;
use sea_orm::{ConnectionTrait, Database, DbBackend, Statement};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::time::Instant;

const START: Duration = Duration::from_secs(30);
/// The bootstrap key the API requires: a secret no span may show.
const API_KEY: &str = "ffk_trace_test_key_0123456789abcdefghijklmnop";
/// The trace the client starts, and its span, as it sends them in `traceparent`.
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

/// A PostgreSQL database whose owner logs in with a password (the tests' server takes none),
/// so the services' `DATABASE_URL` holds a secret for the spans to leak.
struct PasswordDb {
    db: PgDb,
    admin: String,
    role: String,
    password: String,
    url: String,
}

impl PasswordDb {
    async fn create(admin: &str) -> Self {
        let db = PgDb::create(admin).await;
        let name = url::Url::parse(&db.url)
            .unwrap()
            .path()
            .trim_start_matches('/')
            .to_owned();
        let role = format!("ff_trace_{}", uuid::Uuid::new_v4().simple());
        let password = format!("pw{}", uuid::Uuid::new_v4().simple());
        let conn = Database::connect(admin).await.unwrap();
        for sql in [
            format!("CREATE ROLE {role} LOGIN PASSWORD '{password}'"),
            format!("ALTER DATABASE {name} OWNER TO {role}"),
        ] {
            conn.execute_raw(Statement::from_string(DbBackend::Postgres, sql))
                .await
                .unwrap();
        }
        let mut url = url::Url::parse(&db.url).unwrap();
        url.set_username(&role).unwrap();
        url.set_password(Some(&password)).unwrap();
        // The owner's own schema: public is not writable by every owner on every version.
        let url = url.to_string();
        let own = Database::connect(&url).await.unwrap();
        own.execute_raw(Statement::from_string(
            DbBackend::Postgres,
            format!("CREATE SCHEMA IF NOT EXISTS {role} AUTHORIZATION {role}"),
        ))
        .await
        .unwrap();
        Self {
            db,
            admin: admin.to_owned(),
            role,
            password,
            url,
        }
    }

    async fn drop_db(self) {
        self.db.drop_db().await;
        if let Ok(conn) = Database::connect(&self.admin).await {
            let _ = conn
                .execute_raw(Statement::from_string(
                    DbBackend::Postgres,
                    format!("DROP ROLE IF EXISTS {}", self.role),
                ))
                .await;
        }
    }
}

/// What one traced run left: the spans, and the secrets that were in play.
struct Run {
    spans: Vec<Span>,
    secrets: Vec<(&'static str, String)>,
}

/// An API process and a worker process on PostgreSQL, both exporting to one collector; a job
/// created with a `traceparent`, finished, and its CSV fetched through a signed link.
async fn traced_run(admin: &str) -> Run {
    let _serial = one_at_a_time().await;
    let collector = Collector::start().await;
    let db = PasswordDb::create(admin).await;
    migrated_store(&db.url).await;
    let internet = FakeInternet::start(Sites::every_host(Duration::from_millis(20))).await;
    let dir = tempfile::tempdir().unwrap();
    let mut env: BTreeMap<String, String> = base_env(&db.url, &internet.resolve(&[]));
    env.extend(
        [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.endpoint().as_str()),
            ("OTEL_SERVICE_NAME", "favicon-finder-test"),
            ("AUTH_MODE", "required"),
            ("BOOTSTRAP_API_KEY", API_KEY),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    let mut api_env = env.clone();
    api_env.insert("OTEL_RESOURCE_ATTRIBUTES".into(), "process.role=api".into());
    let mut worker_env = env;
    worker_env.insert(
        "OTEL_RESOURCE_ATTRIBUTES".into(),
        "process.role=worker".into(),
    );
    let api = Proc::spawn("api", &["serve", "--no-worker"], &api_env, dir.path());
    let worker = Proc::spawn("worker", &["worker"], &worker_env, dir.path());
    let base = api.api_base(START).await;
    worker.owner(START).await;

    let http = reqwest::Client::new();
    let created = http
        .post(format!("{base}/jobs"))
        .bearer_auth(API_KEY)
        .header("traceparent", format!("00-{TRACE_ID}-{CLIENT_SPAN}-01"))
        .json(&serde_json::json!({"domains": ["a.trace.test", "b.trace.test", "c.trace.test"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201, "{created:?}");
    let traceresponse = created.headers()["traceresponse"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        traceresponse.starts_with(&format!("00-{TRACE_ID}-")) && traceresponse.ends_with("-01"),
        "the answer names the request's span in the caller's trace: {traceresponse}"
    );
    assert!(created.headers().contains_key("x-request-id"));
    let job: serde_json::Value = created.json().await.unwrap();
    let job_id = job["job_id"].as_str().unwrap().to_owned();

    let store = migrated_store(&db.url).await;
    let id: uuid::Uuid = job_id.parse().unwrap();
    wait_for("the job to finish", Duration::from_secs(30), || async {
        crate::harness::job_row(&store, id).await.status != JobStatus::Processing
    })
    .await;
    // The signed link, fetched without a key: its signature is a secret too.
    let shown: serde_json::Value = http
        .get(format!("{base}/jobs/{job_id}"))
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let link = shown["download_url"].as_str().unwrap().to_owned();
    let signature = url::Url::parse(&format!("http://x{link}"))
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "sig")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    let csv = http.get(format!("{base}{link}")).send().await.unwrap();
    assert_eq!(csv.status(), 200);
    // A named GraphQL operation in the same trace, with the key in a variable it does not
    // use: the span names the operation, never the variables.
    let read: serde_json::Value = http
        .post(format!("{base}/graphql"))
        .bearer_auth(API_KEY)
        .header("traceparent", format!("00-{TRACE_ID}-{CLIENT_SPAN}-01"))
        .json(&serde_json::json!({
            "query": "query ShowJob($id: ID!) { job(id: $id) { id status } }",
            "operationName": "ShowJob",
            "variables": {"id": job_id, "note": API_KEY},
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(read["data"]["job"]["id"], job_id.as_str(), "{read}");
    // The API's log line of the job's creation names the trace it was written in.
    let created_line = api.events("job created");
    let line = created_line.first().expect("a `job created` line");
    assert_eq!(line["trace_id"], TRACE_ID, "{line}");
    assert_eq!(line["span_id"].as_str().map(str::len), Some(16), "{line}");

    let spans = collector
        .wait_for(
            "the download's span and a find",
            Duration::from_secs(20),
            |spans| {
                spans.iter().any(|s| s.name == "GET /jobs/{id}/download")
                    && spans.iter().any(|s| s.name == "query ShowJob")
                    && spans
                        .iter()
                        .any(|s| s.name == "domain.find" && s.trace_id == TRACE_ID)
            },
        )
        .await;
    drop((api, worker));
    assert!(
        db.url.contains(&db.password),
        "the services' DATABASE_URL holds the password"
    );
    let secrets = vec![
        ("API key", API_KEY.to_owned()),
        ("download signature", signature),
        ("database password", db.password.clone()),
    ];
    db.drop_db().await;
    Run { spans, secrets }
}

/// A job created with a `traceparent` is one trace: the API's request span continues the
/// caller's, the job's creation is its child, and each domain's find, in the worker process,
/// is a child of the creation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_is_one_trace_from_the_request_to_the_worker() {
    let Some(admin) = postgres_url() else {
        crate::services::available("TEST_DATABASE_URL", false);
        return;
    };
    let Run { spans, .. } = traced_run(&admin).await;
    let in_trace: Vec<&Span> = spans.iter().filter(|s| s.trace_id == TRACE_ID).collect();
    let one = |name: &str| -> &Span {
        in_trace
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no {name} span in the trace: {in_trace:#?}"))
    };
    let request = one("POST /jobs");
    assert_eq!(
        request.parent_span_id, CLIENT_SPAN,
        "continues the caller's span"
    );
    assert_eq!(request.resource["process.role"], "api");
    assert_eq!(request.resource["service.name"], "favicon-finder-test");
    assert_eq!(request.attributes["http.route"], "/jobs");
    assert_eq!(request.attributes["http.response.status_code"], "201");
    let create = one("job.create");
    assert_eq!(create.resource["process.role"], "api");
    // The creation runs inside the request (through the handler's own spans, if any).
    assert!(
        descends(&in_trace, create, &request.span_id),
        "job.create is in the request"
    );
    let operation = one("query ShowJob");
    assert_eq!(operation.attributes["graphql.operation.type"], "query");
    assert_eq!(operation.attributes["graphql.operation.name"], "ShowJob");
    assert!(
        descends(&in_trace, operation, CLIENT_SPAN),
        "in the caller's trace"
    );
    let finds: Vec<&&Span> = in_trace
        .iter()
        .filter(|s| s.name == "domain.find")
        .collect();
    assert!(!finds.is_empty());
    for find in &finds {
        assert_eq!(
            find.resource["process.role"], "worker",
            "found in the worker process"
        );
        assert_eq!(
            find.parent_span_id, create.span_id,
            "a child of the job's creation"
        );
    }
    // The find's own steps are its descendants: the name lookups, new connections, the
    // requests it made, the icon's check.
    for step in ["dns.lookup", "http.connect", "http.get", "icon.verify"] {
        let under_a_find = in_trace
            .iter()
            .filter(|s| s.name == step && finds.iter().any(|f| descends(&in_trace, s, &f.span_id)));
        assert!(
            under_a_find.count() > 0,
            "no {step} span under a find: {in_trace:#?}"
        );
    }
    let mut names: Vec<&str> = in_trace.iter().map(|s| s.name.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    eprintln!(
        "traces: {} spans in the job's trace ({} finds): {names:?}",
        in_trace.len(),
        finds.len()
    );
}

/// No attribute of any span (nor of its events, links or resource) holds the API key, the
/// download link's signature or the database password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_span_holds_a_key_a_signature_or_a_password() {
    let Some(admin) = postgres_url() else {
        crate::services::available("TEST_DATABASE_URL", false);
        return;
    };
    let Run { spans, secrets } = traced_run(&admin).await;
    assert!(spans.len() > 10, "enough spans to search: {}", spans.len());
    let download = spans
        .iter()
        .find(|s| s.name == "GET /jobs/{id}/download")
        .unwrap();
    assert_eq!(download.attributes["http.route"], "/jobs/{id}/download");
    for span in &spans {
        let texts = span
            .attributes
            .iter()
            .chain(span.resource.iter())
            .flat_map(|(k, v)| [k.as_str(), v.as_str()])
            .chain(span.other_text.iter().map(String::as_str))
            .chain([span.name.as_str()]);
        for text in texts {
            for (what, secret) in &secrets {
                assert!(
                    !text.contains(secret.as_str()),
                    "span {} holds the {what}: {text}",
                    span.name
                );
            }
        }
    }
}

/// With the collector down (a port nobody listens on), requests are answered and a job
/// finishes as fast as without traces, and the spans that could not be sent are counted in
/// `/metrics`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_collector_costs_nothing_but_dropped_spans() {
    let _serial = one_at_a_time().await;
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_port = dead.local_addr().unwrap().port();
    drop(dead);
    let internet = FakeInternet::start(Sites::every_host(Duration::from_millis(10))).await;
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}?mode=rwc", dir.path().join("ff.db").display());
    let store = migrated_store(&db).await;
    let domains: Vec<String> = (0..200).map(|i| format!("site{i}.dead.test")).collect();
    let mut took = Vec::new();
    for traced in [false, true] {
        let mut env = base_env(&db, &internet.resolve(&[]));
        env.insert("WORKER_CONCURRENCY".into(), "32".into());
        env.insert("CACHE_MAX_AGE_SECS".into(), "0".into());
        if traced {
            env.insert(
                "OTEL_EXPORTER_OTLP_ENDPOINT".into(),
                format!("http://127.0.0.1:{dead_port}"),
            );
            env.insert("OTEL_TRACES_SAMPLER".into(), "always_on".into());
            env.insert("OTEL_BSP_MAX_QUEUE_SIZE".into(), "64".into());
        }
        let name = if traced { "traced" } else { "untraced" };
        let mut proc = Proc::spawn(name, &["serve"], &env, dir.path());
        let base = proc.api_base(START).await;
        let started = Instant::now();
        let job = crate::harness::submit(&base, name, &domains).await;
        let answered = started.elapsed();
        let elapsed =
            crate::harness::wait_job_done(&store, job, Duration::from_secs(60)).await + answered;
        let row = crate::harness::job_row(&store, job).await;
        assert_eq!(row.completed, domains.len() as i32, "every domain found");
        eprintln!("dead collector: traced={traced}: created in {answered:?}, done in {elapsed:?}");
        assert!(
            answered < Duration::from_secs(2),
            "the request was answered at once"
        );
        let metrics = reqwest::get(format!("{base}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let dropped = metrics
            .lines()
            .find_map(|l| l.strip_prefix("favicon_finder_trace_spans_dropped_total "))
            .map(|v| v.trim().parse::<f64>().unwrap())
            .unwrap_or_else(|| panic!("no dropped-span counter in /metrics:\n{metrics}"));
        if traced {
            assert!(dropped > 0.0, "spans that could not be sent are counted");
        } else {
            assert_eq!(dropped, 0.0, "nothing is traced, so nothing is dropped");
        }
        took.push(elapsed);
        proc.terminate(Duration::from_secs(10)).await;
    }
    // Generous: the two runs share a machine with other tests; a blocked worker would take
    // many times longer (a 10 s export timeout per batch, or a stall on a full queue).
    assert!(
        took[1] < took[0] * 2 + Duration::from_secs(2),
        "with the collector down the job took {:?}, without traces {:?}",
        took[1],
        took[0]
    );
}

/// The same spans reach a collector over gRPC (`OTEL_EXPORTER_OTLP_PROTOCOL=grpc`): a
/// request's span, continuing the caller's trace, with the resource's attributes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_a_grpc_collector() {
    let _serial = one_at_a_time().await;
    let collector = Collector::start_grpc().await;
    let internet = FakeInternet::start(Sites::every_host(Duration::from_millis(10))).await;
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}?mode=rwc", dir.path().join("ff.db").display());
    let mut env = base_env(&db, &internet.resolve(&[]));
    env.insert("OTEL_EXPORTER_OTLP_ENDPOINT".into(), collector.endpoint());
    env.insert("OTEL_EXPORTER_OTLP_PROTOCOL".into(), "grpc".into());
    env.insert(
        "OTEL_RESOURCE_ATTRIBUTES".into(),
        "process.role=grpc".into(),
    );
    let mut proc = Proc::spawn("grpc", &["serve"], &env, dir.path());
    let base = proc.api_base(START).await;
    let answer = reqwest::Client::new()
        .get(format!("{base}/healthz"))
        .header("traceparent", format!("00-{TRACE_ID}-{CLIENT_SPAN}-01"))
        .send()
        .await
        .unwrap();
    assert!(answer.headers().contains_key("traceresponse"));
    let spans = collector
        .wait_for(
            "the health check's span",
            Duration::from_secs(15),
            |spans| spans.iter().any(|s| s.name == "GET /healthz"),
        )
        .await;
    let health = spans.iter().find(|s| s.name == "GET /healthz").unwrap();
    assert_eq!(health.trace_id, TRACE_ID);
    assert_eq!(health.parent_span_id, CLIENT_SPAN);
    assert_eq!(health.resource["process.role"], "grpc");
    proc.terminate(Duration::from_secs(10)).await;
}

/// A collector behind TLS, over both protocols: its certificate, from a CA only
/// `OTEL_EXPORTER_OTLP_CERTIFICATE` names, is trusted, and spans arrive. Without that
/// variable the certificate is not trusted: nothing is sent, the drops are counted, and the
/// service answers as ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_a_collector_over_tls_that_its_certificate_names() {
    let _serial = one_at_a_time().await;
    let ca = crate::tls::TestCa::new("favicon-finder collector test CA");
    let internet = FakeInternet::start(Sites::every_host(Duration::from_millis(10))).await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("collector-ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let db = format!("sqlite://{}?mode=rwc", dir.path().join("ff.db").display());
    for (protocol, grpc, trusted) in [
        ("http/protobuf", false, true),
        ("grpc", true, true),
        ("http/protobuf", false, false),
    ] {
        let collector = Collector::start_tls(&ca, grpc).await;
        let mut env = base_env(&db, &internet.resolve(&[]));
        env.insert(
            "OTEL_EXPORTER_OTLP_ENDPOINT".into(),
            collector.tls_endpoint(),
        );
        env.insert("OTEL_EXPORTER_OTLP_PROTOCOL".into(), protocol.into());
        if trusted {
            env.insert(
                "OTEL_EXPORTER_OTLP_CERTIFICATE".into(),
                ca_file.display().to_string(),
            );
        }
        let mut proc = Proc::spawn("tls", &["serve"], &env, dir.path());
        let base = proc.api_base(START).await;
        let answer = reqwest::Client::new()
            .get(format!("{base}/healthz"))
            .header("traceparent", format!("00-{TRACE_ID}-{CLIENT_SPAN}-01"))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
        if trusted {
            let spans = collector
                .wait_for(
                    &format!("the health check's span over {protocol} with TLS"),
                    Duration::from_secs(15),
                    |spans| spans.iter().any(|s| s.name == "GET /healthz"),
                )
                .await;
            let health = spans.iter().find(|s| s.name == "GET /healthz").unwrap();
            assert_eq!(health.trace_id, TRACE_ID);
        } else {
            wait_for(
                "the untrusted collector's drops to be counted",
                Duration::from_secs(15),
                || async {
                    let metrics = reqwest::get(format!("{base}/metrics"))
                        .await
                        .unwrap()
                        .text()
                        .await
                        .unwrap();
                    metrics
                        .lines()
                        .find_map(|l| l.strip_prefix("favicon_finder_trace_spans_dropped_total "))
                        .is_some_and(|v| v.trim().parse::<f64>().unwrap() > 0.0)
                },
            )
            .await;
            assert!(
                collector.spans().is_empty(),
                "nothing reached a collector whose certificate is not trusted"
            );
        }
        proc.terminate(Duration::from_secs(10)).await;
    }
}
