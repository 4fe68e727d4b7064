//! The embedded default: one `serve` process on a SQLite file, killed mid-job and started again
//! on the same file. Needs no services, so it always runs.

use crate::fake::{FakeInternet, Sites};
use crate::harness::{
    Proc, assert_orphans_redone, base_env, job_row, kill_mid_job, migrated_store, one_at_a_time,
    submit, wait_for,
};
use serde_json::Value;
use std::time::Duration;
use tokio::time::Instant;

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
    let env = base_env(&url, &internet.resolve(&[]));
    let mut first = Proc::spawn("serve-1", &["serve"], &env, dir.path());
    let owner = first.owner(Duration::from_secs(30)).await;
    let base = first.api_base(Duration::from_secs(30)).await;
    let domains = crate::harness::domains("sqlite", 60, 7);
    let job = submit(&base, "faults", &domains).await;
    let job_id = job.to_string();

    let leases = kill_mid_job(&mut first, owner, &store, job, (8, 4)).await;
    let killed = Instant::now();
    let orphaned = leases.len();
    let before = job_row(&store, job).await;

    let second = Proc::spawn("serve-2", &["serve"], &env, dir.path());
    second.owner(Duration::from_secs(30)).await;
    let base = second.api_base(Duration::from_secs(30)).await;
    let http = reqwest::Client::new();
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
    let retried = assert_orphans_redone(&store, job, &domains, &leases).await;
    eprintln!(
        "sqlite: killed with {} of {} done and {orphaned} rows leased; restarted, done {took:?} \
         after the kill (lease {lease:?}), {retried} rows tried twice",
        before.completed + before.failed,
        before.total
    );
    assert!(took < Duration::from_secs(40), "took {took:?}");
}
