//! The embedded default: one `serve` process on a SQLite file, killed mid-job and started again
//! on the same file. Needs no services, so it always runs.

use crate::fake::{FakeInternet, Sites};
use crate::harness::{
    Proc, assert_leases_honoured, base_env, check_invariants, job_row, leased_by, leases_of,
    migrated_store, one_at_a_time, rows, wait_for,
};
use serde_json::{Value, json};
use std::time::Duration;
use tokio::time::Instant;
use uuid::Uuid;

/// A free port on loopback for a child's API (the child binds it a moment later).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn get_job(http: &reqwest::Client, base: &str, job: &str) -> Option<Value> {
    let response = http.get(format!("{base}/jobs/{job}")).send().await.ok()?;
    response.json().await.ok()
}

/// `serve` on SQLite, SIGKILLed mid-job, started again on the same file: the job resumes —
/// the rows the dead process had leased come back once their leases expire — and completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_serve_killed_and_restarted_resumes_the_job() {
    let _serial = one_at_a_time().await;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("ff.db").display());
    let store = migrated_store(&url).await;
    let delay = Duration::from_millis(500);
    let internet = FakeInternet::start(Sites::every_host(delay)).await;
    let lease = Duration::from_secs(2);
    let mut env = base_env(&url, &internet.resolve(&[]));
    env.insert("PORT".into(), free_port().to_string());
    let base = format!("http://127.0.0.1:{}", env["PORT"]);
    let mut first = Proc::spawn("serve-1", &["serve"], &env, dir.path());
    let owner = first.owner(Duration::from_secs(30)).await;
    let http = reqwest::Client::new();
    wait_for("the API", Duration::from_secs(30), || async {
        http.get(format!("{base}/healthz")).send().await.is_ok()
    })
    .await;

    let domains = crate::harness::domains("sqlite", 60, 7);
    let response = http
        .post(format!("{base}/jobs"))
        .json(&json!({"client_id": "faults", "domains": domains}))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{response:?}");
    let body: Value = response.json().await.unwrap();
    let job_id = body["job_id"].as_str().unwrap().to_owned();
    let job: Uuid = job_id.parse().unwrap();

    wait_for(
        "the first process to be mid-job",
        Duration::from_secs(30),
        || async {
            let j = job_row(&store, job).await;
            j.completed + j.failed >= 8 && leased_by(&store, owner).await >= 4
        },
    )
    .await;
    first.kill9();
    let killed = Instant::now();
    let leases = leases_of(&store, owner).await;
    let orphaned = leases.len();
    assert!(orphaned > 0, "the dead process's leases outlive it");
    let before = job_row(&store, job).await;

    env.insert("PORT".into(), free_port().to_string());
    let base = format!("http://127.0.0.1:{}", env["PORT"]);
    let second = Proc::spawn("serve-2", &["serve"], &env, dir.path());
    second.owner(Duration::from_secs(30)).await;
    wait_for(
        "the job to complete through the restarted API",
        Duration::from_secs(60),
        || async {
            get_job(&http, &base, &job_id)
                .await
                .is_some_and(|j| j["status"] != "processing" && j["progress"] == 100)
        },
    )
    .await;
    let took = killed.elapsed();
    // The orphaned rows waited for their leases: each was finished only after the lease it
    // held at the kill ran out (the restarted process starts sooner than that).
    assert_leases_honoured(&store, job, &leases).await;
    check_invariants(&store, job, &domains, 3).await;
    let retried = rows(&store, job)
        .await
        .iter()
        .filter(|r| r.tries == 2)
        .count();
    assert!(
        retried >= 1 && retried <= orphaned,
        "the dead process's rows were tried again ({retried} of {orphaned})"
    );
    eprintln!(
        "sqlite: killed with {} of {} done and {orphaned} rows leased; restarted, done {took:?} \
         after the kill (lease {lease:?}), {retried} rows tried twice",
        before.completed + before.failed,
        before.total
    );
    assert!(took < Duration::from_secs(40), "took {took:?}");
}
