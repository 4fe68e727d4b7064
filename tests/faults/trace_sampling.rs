//! What a trace holds beyond one job's finds: work whose trace is not sampled runs beside
//! sampled work without hiding any of its spans (and exports nothing of its own); and a job's
//! Redis wake-up, its webhook delivery and a GraphQL WebSocket's operations join the trace
//! they belong to.

use crate::common::webhooks::Receiver;
use crate::fake::{FakeInternet, Sites};
use crate::harness::{
    PgDb, Proc, base_env, migrated_store, one_at_a_time, postgres_url, wait_for, wait_job_done,
};
use crate::otlp::{Collector, Span, descends};
use crate::redis::OwnRedis;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::time::Duration;

const START: Duration = Duration::from_secs(30);
/// The sampled trace the client starts, and its span.
const TRACE_ID: &str = "5af7183fb1d4cf5f3a6c1a2b3c4d5e6f";
const CLIENT_SPAN: &str = "53995c3f42cd8ad8";
/// A trace the client started and did not sample (flags `00`).
const UNSAMPLED_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";

/// Creates a job of `domains` through REST, with `traceparent` if given; returns its id.
async fn create(base: &str, domains: &[String], traceparent: Option<String>) -> uuid::Uuid {
    let mut request = reqwest::Client::new()
        .post(format!("{base}/jobs"))
        .json(&json!({"client_id": "tracer", "domains": domains}));
    if let Some(traceparent) = traceparent {
        request = request.header("traceparent", traceparent);
    }
    let created = request.send().await.unwrap();
    assert_eq!(created.status(), 201, "{created:?}");
    let body: Value = created.json().await.unwrap();
    body["job_id"].as_str().unwrap().parse().unwrap()
}

/// One process sampling only what its callers sampled (`parentbased_always_off`) runs two
/// unsampled jobs (one with no `traceparent`, one whose caller did not sample) and a small
/// sampled one at the same time, on the same worker threads. Unsampled work builds and
/// exports nothing; every find of the sampled job still has its steps under it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsampled_work_beside_sampled_work_hides_none_of_its_spans() {
    let _serial = one_at_a_time().await;
    let collector = Collector::start().await;
    let internet = FakeInternet::start(Sites::every_host(Duration::from_millis(15))).await;
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}?mode=rwc", dir.path().join("ff.db").display());
    let store = migrated_store(&db).await;
    let mut env = base_env(&db, &internet.resolve(&[]));
    for (k, v) in [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.endpoint().as_str()),
        ("OTEL_TRACES_SAMPLER", "parentbased_always_off"),
        ("WORKER_CONCURRENCY", "32"),
        ("CACHE_MAX_AGE_SECS", "0"),
    ] {
        env.insert(k.into(), v.into());
    }
    let mut proc = Proc::spawn("sampling", &["serve"], &env, dir.path());
    let base = proc.api_base(START).await;
    let names = |prefix: &str, n: usize| -> Vec<String> {
        (0..n)
            .map(|i| format!("{prefix}{i}.sampling.test"))
            .collect()
    };
    let untraced = create(&base, &names("plain", 150), None).await;
    let declined = create(
        &base,
        &names("declined", 100),
        Some(format!("00-{UNSAMPLED_TRACE}-{CLIENT_SPAN}-00")),
    )
    .await;
    let sampled_domains = names("kept", 12);
    let sampled = create(
        &base,
        &sampled_domains,
        Some(format!("00-{TRACE_ID}-{CLIENT_SPAN}-01")),
    )
    .await;
    for job in [untraced, declined, sampled] {
        wait_job_done(&store, job, Duration::from_secs(60)).await;
    }
    // A stop sends what is still queued.
    proc.terminate(Duration::from_secs(10)).await;
    let spans = collector.spans();

    let strays: Vec<&Span> = spans.iter().filter(|s| s.trace_id != TRACE_ID).collect();
    assert!(
        strays.is_empty(),
        "only the sampled trace is exported: {strays:#?}"
    );
    let finds: Vec<&Span> = spans.iter().filter(|s| s.name == "domain.find").collect();
    let mut found: Vec<&str> = finds
        .iter()
        .map(|s| s.attributes["domain"].as_str())
        .collect();
    found.sort_unstable();
    let mut expected: Vec<&str> = sampled_domains.iter().map(String::as_str).collect();
    expected.sort_unstable();
    assert_eq!(
        found, expected,
        "one find span per domain of the sampled job"
    );
    for find in &finds {
        for step in ["http.get", "icon.verify"] {
            assert!(
                spans
                    .iter()
                    .any(|s| s.name == step && descends(&spans, s, &find.span_id)),
                "the find of {} has no {step} under it: {spans:#?}",
                find.attributes["domain"]
            );
        }
    }
    eprintln!(
        "sampling: {} spans exported, all in the sampled job's trace ({} finds)",
        spans.len(),
        finds.len()
    );
}

/// A GraphQL WebSocket opened with a `traceparent`: sends `Ping`, then closes.
async fn websocket_operation(base: &str) {
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = format!("{}/graphql", base.replace("http://", "ws://"))
        .into_client_request()
        .unwrap();
    let headers = request.headers_mut();
    headers.insert(
        "sec-websocket-protocol",
        "graphql-transport-ws".parse().unwrap(),
    );
    headers.insert(
        "traceparent",
        format!("00-{TRACE_ID}-{CLIENT_SPAN}-01").parse().unwrap(),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let send = |value: Value| Message::Text(value.to_string().into());
    ws.send(send(json!({"type": "connection_init", "payload": {}})))
        .await
        .unwrap();
    ws.send(send(json!({
        "id": "1",
        "type": "subscribe",
        "payload": {"query": "query Ping { __typename }", "operationName": "Ping"},
    })))
    .await
    .unwrap();
    tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(message) = ws.next().await {
            if let Message::Text(text) = message.unwrap() {
                let frame: Value = serde_json::from_str(&text).unwrap();
                match frame["type"].as_str() {
                    Some("complete") => return,
                    Some("connection_ack") => continue,
                    _ => {}
                }
                assert!(
                    frame["payload"]["data"]["__typename"].is_string(),
                    "{frame}"
                );
            }
        }
    })
    .await
    .expect("the operation completes within 10 s");
    ws.close(None).await.unwrap();
}

/// A fleet on PostgreSQL and Redis (an API process and a worker process): a job created with
/// a `traceparent` wakes the worker through Redis, and the wake-up, the webhook delivery of
/// the job's end, and a WebSocket operation opened in the same trace are all in the trace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_s_wake_up_webhook_and_websocket_join_its_trace() {
    let Some(admin) = postgres_url() else {
        crate::services::available("TEST_DATABASE_URL", false);
        return;
    };
    let _serial = one_at_a_time().await;
    let Some(receiver) = Receiver::start(&[], &[]).await else {
        return;
    };
    let redis = OwnRedis::start_on_free_port().expect("redis-server starts");
    let collector = Collector::start().await;
    let db = PgDb::create(&admin).await;
    let store = migrated_store(&db.url).await;
    let internet = FakeInternet::start(Sites::every_host(Duration::from_millis(10))).await;
    let dir = tempfile::tempdir().unwrap();
    let mut env = base_env(&db.url, &internet.resolve(&[]));
    for (k, v) in [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.endpoint()),
        ("REDIS_URL", redis.url()),
        ("REDIS_PREFIX", "ff-trace".into()),
        (
            "WEBHOOK_SECRET_KEY",
            "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=".into(),
        ),
        ("WEBHOOK_POLL_MS", "100".into()),
        // Idle workers sleep long, so the job is found by the wake-up, not by a poll.
        ("WORKER_POLL_MS", "30000".into()),
    ] {
        env.insert(k.into(), v);
    }
    let mut api_env = env.clone();
    api_env.insert("OTEL_RESOURCE_ATTRIBUTES".into(), "process.role=api".into());
    let mut worker_env = env;
    worker_env.insert(
        "OTEL_RESOURCE_ATTRIBUTES".into(),
        "process.role=worker".into(),
    );
    let mut api = Proc::spawn("api", &["serve", "--no-worker"], &api_env, dir.path());
    let mut worker = Proc::spawn("worker", &["worker"], &worker_env, dir.path());
    let base = api.api_base(START).await;
    worker.owner(START).await;
    let http = reqwest::Client::new();
    let hook: Value = http
        .post(format!("{base}/webhooks"))
        .json(&json!({
            "url": receiver.url(),
            "client_id": "tracer",
            "events": ["job.completed"],
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    receiver
        .set_secrets(&[hook["secret"].as_str().expect("a secret")])
        .await;
    // The worker subscribes to wake-ups a moment after it has an owner id.
    wait_for("the worker to hear Redis", START, || async {
        !worker.events("subscribed to Redis events").is_empty()
    })
    .await;

    let domains: Vec<String> = (0..3).map(|i| format!("s{i}.fleet-trace.test")).collect();
    let job = create(
        &base,
        &domains,
        Some(format!("00-{TRACE_ID}-{CLIENT_SPAN}-01")),
    )
    .await;
    wait_job_done(&store, job, Duration::from_secs(30)).await;
    receiver.wait_for(1, Duration::from_secs(30)).await;
    websocket_operation(&base).await;
    // Stops send what is still queued.
    api.terminate(Duration::from_secs(10)).await;
    worker.terminate(Duration::from_secs(10)).await;
    let spans: Vec<Span> = collector
        .spans()
        .into_iter()
        .filter(|s| s.trace_id == TRACE_ID)
        .collect();
    let one = |name: &str| -> &Span {
        spans
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no {name} span in the trace: {spans:#?}"))
    };
    let create_span = one("job.create");
    // Every process that listens hears it; the worker is the one it is for.
    let wakeup = spans
        .iter()
        .find(|s| s.name == "work.wakeup" && s.resource["process.role"] == "worker")
        .unwrap_or_else(|| panic!("no wake-up in the worker: {spans:#?}"));
    assert!(
        descends(&spans, wakeup, &one("POST /jobs").span_id),
        "the wake-up continues the request that announced the work"
    );
    let delivery = one("webhook.deliver");
    assert_eq!(
        delivery.parent_span_id, create_span.span_id,
        "the delivery is a child of the job's creation"
    );
    assert_eq!(delivery.attributes["webhook.outcome"], "delivered");
    let socket = one("graphql.websocket");
    assert_eq!(socket.resource["process.role"], "api");
    let upgrade = one("GET /graphql");
    assert_eq!(socket.parent_span_id, upgrade.span_id, "{spans:#?}");
    let operation = one("query Ping");
    assert!(
        descends(&spans, operation, &socket.span_id),
        "the operation runs on the socket"
    );
    drop(redis);
    db.drop_db().await;
}
