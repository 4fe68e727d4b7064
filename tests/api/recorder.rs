//! The recorder under a database that refuses or stalls: a refused row fails alone and is
//! counted, a stuck recorder makes `/healthz` fail, and both show in `/metrics`.

use crate::fake::{FakeInternet, Route, Sites, png};
use crate::helpers::{Backend, TestApp, both_backends};
use sea_orm::{ConnectionTrait, DbBackend, Statement};
use serde_json::{Value, json};
use std::time::Duration;

/// Makes the database refuse every finished write of `refused.test` except a failure
/// recorded as `internal`: a constraint on PostgreSQL, a trigger on SQLite (whose tables take
/// no new constraints). A refusal the store cannot foresee, as a real one would be.
async fn refuse_refused_test(app: &TestApp) {
    let db = app.store.connection();
    let backend = db.get_database_backend();
    let sql = match backend {
        DbBackend::Postgres => {
            "ALTER TABLE result ADD CONSTRAINT test_refuses CHECK \
             (domain <> 'refused.test' OR status = 'pending' \
             OR COALESCE(error_code, '') = 'internal')"
        }
        _ => {
            "CREATE TRIGGER test_refuses BEFORE UPDATE ON result \
             WHEN NEW.domain = 'refused.test' AND NEW.status <> 'pending' \
               AND NEW.error_code IS NOT 'internal' \
             BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
        }
    };
    db.execute_raw(Statement::from_string(backend, sql))
        .await
        .unwrap();
}

fn sites(hosts: &[&str]) -> Sites {
    let mut sites = Sites::default();
    for host in hosts {
        sites.icon_site(host);
    }
    sites
}

async fn a_refused_row_fails_alone_and_is_counted(backend: Backend) {
    let hosts = ["a.test", "b.test", "refused.test", "c.test"];
    let internet = FakeInternet::start(sites(&hosts)).await;
    let app = TestApp::spawn(backend, &[("FETCH_RESOLVE", &internet.resolve(&[]))]).await;
    refuse_refused_test(&app).await;
    let permanent = r#"favicon_finder_record_failures_total{kind="permanent"}"#;
    assert_eq!(app.metric(permanent).await, 0.0);

    let (status, created) = app
        .post_json("/jobs", &json!({"client_id": "r", "domains": hosts}))
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["job_id"].as_str().unwrap();
    let job = app.wait_for_job(id, Duration::from_secs(30)).await;
    assert_eq!(
        (job["completed"].clone(), job["failed"].clone()),
        (json!(3), json!(1)),
        "{job}"
    );

    let (_, page) = app.get_json(&format!("/jobs/{id}/results")).await;
    for row in page["results"].as_array().unwrap() {
        assert_eq!(row["candidates_dropped"], 0, "{row}");
        if row["domain"] == "refused.test" {
            assert_eq!(row["status"], "failed", "{row}");
            assert_eq!(row["error_code"], "internal", "{row}");
            let error = row["error"].as_str().unwrap();
            assert!(error.contains("could not be stored"), "{error}");
        } else {
            assert_eq!(row["status"], "success", "{row}");
        }
    }
    let gql = app
        .graphql(
            "query($id: ID!) { results(jobId: $id) { results { domain candidatesDropped } } }",
            json!({"id": id}),
        )
        .await;
    assert_eq!(
        gql["data"]["results"]["results"][0]["candidatesDropped"], 0,
        "{gql}"
    );
    assert_eq!(app.metric(permanent).await, 1.0);
    app.stop().await;
}
both_backends!(refused_row, a_refused_row_fails_alone_and_is_counted);

/// A connection holding the database's write lock (SQLite) or the job table's (PostgreSQL)
/// until `release`, so the recorder's writes wait.
enum WriteLock {
    Sqlite(sea_orm::sqlx::SqliteConnection),
    Postgres(sea_orm::sqlx::PgConnection),
}

impl WriteLock {
    async fn take(app: &TestApp) -> Self {
        use sea_orm::sqlx::Connection;
        let url = app.database_url();
        // A bare connection, not a pool: a pool may reset a connection left in a transaction.
        match app.store.connection().get_database_backend() {
            DbBackend::Postgres => {
                let mut conn = sea_orm::sqlx::PgConnection::connect(&url).await.unwrap();
                for sql in ["BEGIN", "LOCK TABLE job IN EXCLUSIVE MODE"] {
                    sea_orm::sqlx::query(sql).execute(&mut conn).await.unwrap();
                }
                Self::Postgres(conn)
            }
            _ => {
                let mut conn = sea_orm::sqlx::SqliteConnection::connect(&url)
                    .await
                    .unwrap();
                sea_orm::sqlx::query("BEGIN IMMEDIATE")
                    .execute(&mut conn)
                    .await
                    .unwrap();
                Self::Sqlite(conn)
            }
        }
    }

    async fn release(self) {
        match self {
            Self::Postgres(mut conn) => {
                sea_orm::sqlx::query("ROLLBACK")
                    .execute(&mut conn)
                    .await
                    .unwrap();
            }
            Self::Sqlite(mut conn) => {
                sea_orm::sqlx::query("ROLLBACK")
                    .execute(&mut conn)
                    .await
                    .unwrap();
            }
        }
    }
}

async fn healthz(app: &TestApp) -> (u16, Value) {
    app.get_json("/healthz").await
}

/// Polls `/healthz` until it answers `want`, within `within`.
async fn wait_for_health(app: &TestApp, want: u16, within: Duration) -> Value {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let (status, body) = healthz(app).await;
        if status == want {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "/healthz still {status} after {within:?}: {body}"
        );
        // Wall-clock: the recorder's stall is judged against its lease, a real timer.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn a_stuck_recorder_fails_healthz_until_it_writes_again(backend: Backend) {
    let mut sites = sites(&["slow.test"]);
    sites.route(
        "slow.test",
        "/i.png",
        Route::new(200, "image/png", png(32, 32)).with_delay(Duration::from_millis(1500)),
    );
    let internet = FakeInternet::start(sites).await;
    let app = TestApp::spawn(
        backend,
        &[
            ("FETCH_RESOLVE", &internet.resolve(&[])),
            ("WORKER_LEASE_SECS", "1"),
            // The lock outlives the 1 s lease, so the row may be claimed again after it:
            // tries to spare keep that from ending the domain as exhausted.
            ("FETCH_MAX_TRIES", "5"),
        ],
    )
    .await;
    assert_eq!(healthz(&app).await.0, 200);
    let (_, created) = app
        .post_json(
            "/jobs",
            &json!({"client_id": "h", "domains": ["slow.test"]}),
        )
        .await;
    let id = created["job_id"].as_str().unwrap().to_owned();
    // Taken once the row is claimed (on SQLite the lock would hold up the claim itself, and
    // a worker with nothing finished is not stalled) while its icon is still on its way, so
    // the outcome finds the lock.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while app.store.queue_depth().await.unwrap().1 == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the row is never claimed"
        );
        // Wall-clock: the running pool claims on its own poll timer.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let lock = WriteLock::take(&app).await;
    // Generous deadlines: these wait for progress, not for a bound (the suite shares 2 cores).
    let body = wait_for_health(&app, 503, Duration::from_secs(30)).await;
    assert_eq!(body["status"], "unhealthy", "{body}");
    let reason = body["reason"].as_str().unwrap();
    assert!(
        reason.contains("recorder") && reason.contains("1 finished"),
        "{reason}"
    );

    lock.release().await;
    wait_for_health(&app, 200, Duration::from_secs(30)).await;
    // Finished exactly once: by the blocked outcome if its lease still held when the lock
    // went, else by a later try (the stale write is refused).
    let job = app.wait_for_job(&id, Duration::from_secs(30)).await;
    assert_eq!(job["completed"], 1, "{job}");
    assert_eq!(job["failed"], 0, "{job}");
    app.stop().await;
}
both_backends!(
    stuck_recorder,
    a_stuck_recorder_fails_healthz_until_it_writes_again
);
