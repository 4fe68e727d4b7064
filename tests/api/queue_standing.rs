//! Who a job shares the workers with: its queue standing in `GET /jobs/{id}` and GraphQL
//! `Job.queue` (counts only, never another client's name or job), and the queue depth per
//! client and per job in `/metrics`, with its labels bounded.

use crate::helpers::{Backend, TestApp, both_backends};
use favicon_finder::metrics::TOP_QUEUES as TOP;
use sea_orm::{ConnectionTrait, Statement};
use serde_json::{Value, json};
use std::collections::HashMap;
use uuid::Uuid;

const STANDING: &str = "query($id: ID!) { job(id: $id) { queue { pending inFlight otherJobs \
                        otherClients otherClientsPending } } }";

/// Creates a job of `n` domains for `client` (domains unique to this test's jobs).
async fn job_of(app: &TestApp, client: &str, n: usize) -> String {
    let domains: Vec<String> = (0..n).map(|i| format!("{client}-{i}.test")).collect();
    app.create_job(client, &domains).await
}

/// Stamps a live lease on the first `n` rows of job `id`, as a claim does: these are the
/// rows a worker holds now.
async fn lease(app: &TestApp, id: &str, n: i64) {
    let db = app.store.connection();
    let until = chrono::Utc::now() + chrono::Duration::minutes(10);
    let sql = "UPDATE result SET lease_owner = $1, lease_until = $2, tries = tries + 1 \
               WHERE id IN (SELECT id FROM result WHERE job_id = $3 ORDER BY position LIMIT $4)";
    let done = db
        .execute_raw(Statement::from_sql_and_values(
            db.get_database_backend(),
            sql,
            [
                Uuid::new_v4().into(),
                until.into(),
                Uuid::parse_str(id).unwrap().into(),
                n.into(),
            ],
        ))
        .await
        .unwrap();
    assert_eq!(done.rows_affected(), n as u64);
}

/// The REST standing of job `id`.
async fn rest_standing(app: &TestApp, id: &str) -> Value {
    let (status, job) = app.get_json(&format!("/jobs/{id}")).await;
    assert_eq!(status, 200, "{job}");
    assert!(
        job.get("queue").is_some(),
        "no queue in GET /jobs/{id}: {job}"
    );
    job["queue"].clone()
}

/// The GraphQL standing of job `id`, in REST's spelling so the two compare.
async fn graphql_standing(app: &TestApp, id: &str) -> Value {
    let answer = app.graphql(STANDING, json!({"id": id})).await;
    assert!(answer["errors"].is_null(), "{answer}");
    let q = &answer["data"]["job"]["queue"];
    if q.is_null() {
        return Value::Null;
    }
    json!({
        "pending": q["pending"],
        "in_flight": q["inFlight"],
        "other_jobs": q["otherJobs"],
        "other_clients": q["otherClients"],
        "other_clients_pending": q["otherClientsPending"],
    })
}

/// Alpha has two jobs (two of the first one's domains held by a worker), beta one, gamma a
/// cancelled one. Each job's standing counts what is waiting beside it, the same over REST
/// and GraphQL, names no other client or job, and is null once the job is final.
async fn a_job_sees_who_it_shares_the_workers_with(backend: Backend) {
    // No worker: the queue stays as the test sets it.
    let app = TestApp::spawn_api(backend, &[]).await;
    let alpha = job_of(&app, "alpha", 5).await;
    lease(&app, &alpha, 2).await;
    let alpha2 = job_of(&app, "alpha", 3).await;
    let beta = job_of(&app, "beta", 4).await;
    let gamma = job_of(&app, "gamma", 6).await;
    let cancelled = app
        .http
        .post(app.url(&format!("/jobs/{gamma}/cancel")))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(cancelled.status(), 200);

    let expected = [
        (
            &alpha,
            json!({"pending": 5, "in_flight": 2, "other_jobs": 2, "other_clients": 1,
                   "other_clients_pending": 4}),
        ),
        (
            &alpha2,
            json!({"pending": 3, "in_flight": 0, "other_jobs": 2, "other_clients": 1,
                   "other_clients_pending": 4}),
        ),
        (
            &beta,
            json!({"pending": 4, "in_flight": 0, "other_jobs": 2, "other_clients": 1,
                   "other_clients_pending": 8}),
        ),
        (&gamma, Value::Null),
    ];
    for (id, want) in expected {
        let rest = rest_standing(&app, id).await;
        assert_eq!(rest, want, "REST standing of {id}");
        assert_eq!(
            graphql_standing(&app, id).await,
            want,
            "GraphQL standing of {id}"
        );
    }
    // Tenancy: nothing in an answer names another client or its job.
    let (_, job) = app.get_json(&format!("/jobs/{beta}")).await;
    let text = job.to_string();
    for other in [
        "alpha",
        "gamma",
        alpha.as_str(),
        alpha2.as_str(),
        gamma.as_str(),
    ] {
        assert!(!text.contains(other), "beta's job names {other}: {text}");
    }
}
both_backends!(
    a_job_sees_who_it_shares_the_workers_with,
    a_job_sees_who_it_shares_the_workers_with
);

/// The `/metrics` samples of one queue gauge: label value → depth.
fn series(metrics: &HashMap<String, f64>, name: &str, label: &str) -> HashMap<String, f64> {
    let prefix = format!("favicon_finder_{name}{{{label}=\"");
    metrics
        .iter()
        .filter_map(|(sample, value)| {
            let rest = sample.strip_prefix(&prefix)?;
            Some((rest.strip_suffix("\"}")?.to_owned(), *value))
        })
        .collect()
}

/// Two clients' jobs each show as a client series and a job series; with more clients and
/// jobs than [`TOP`], the deepest keep their own series, the rest are summed under `other`,
/// and the number of series stays bounded.
#[tokio::test]
async fn queue_depth_per_client_and_per_job_is_bounded() {
    let app = TestApp::spawn_api(Backend::Sqlite, &[]).await;
    let alpha = job_of(&app, "alpha", 3).await;
    let beta = job_of(&app, "beta", 2).await;
    let metrics = app.metrics().await;
    let clients = series(&metrics, "queue_pending_by_client", "client");
    let jobs = series(&metrics, "queue_pending_by_job", "job");
    assert_eq!(
        clients,
        HashMap::from([("alpha".into(), 3.0), ("beta".into(), 2.0)]),
        "{metrics:?}"
    );
    assert_eq!(
        jobs,
        HashMap::from([(alpha, 3.0), (beta, 2.0)]),
        "{metrics:?}"
    );

    // Another app, so the first scrape reads (the gauges are reused for a few seconds).
    let app = TestApp::spawn_api(Backend::Sqlite, &[]).await;
    // Client c{k} has one job of k + 1 domains: four more clients and jobs than the top, all
    // depths distinct.
    let mut ids = Vec::new();
    for k in 0..TOP + 4 {
        ids.push(job_of(&app, &format!("c{k}"), k + 1).await);
    }
    // The four smallest (1 + 2 + 3 + 4 domains) are the rest.
    let all = ((TOP + 4) * (TOP + 5) / 2) as f64;
    let metrics = app.metrics().await;
    for (name, label) in [
        ("queue_pending_by_client", "client"),
        ("queue_pending_by_job", "job"),
    ] {
        let got = series(&metrics, name, label);
        assert_eq!(got.len(), TOP + 1, "{name}: {got:?}");
        assert_eq!(got.get("other"), Some(&10.0), "{name}: {got:?}");
        assert_eq!(got.values().sum::<f64>(), all, "{name}: {got:?}");
    }
    let clients = series(&metrics, "queue_pending_by_client", "client");
    for k in 4..TOP + 4 {
        assert_eq!(clients.get(&format!("c{k}")), Some(&(k as f64 + 1.0)));
    }
    let jobs = series(&metrics, "queue_pending_by_job", "job");
    assert_eq!(
        jobs.get(&ids[TOP + 3]),
        Some(&((TOP + 4) as f64)),
        "{jobs:?}"
    );
    assert!(!jobs.contains_key(&ids[0]), "{jobs:?}");
}
