//! Cancelling and deleting a job: what stops, what finishes, who may, and that a deleted job
//! is gone everywhere, with its subscribers told and its in-flight rows harmless.

use crate::fake::{FakeInternet, Sites};
use crate::helpers::{
    Backend, Protocol, TestApp, both_backends, json_answer, number, ws_subscribe,
};
use crate::subscriptions::{Delivery, SUBSCRIPTION, read_events, wait_until};
use crate::tenancy::{Answer, Target, WAYS, read};
use favicon_finder::auth::{Accounts, LinkSigner, Scope};
use favicon_finder::store::{CachePolicy, Disposition};
use serde_json::{Value, json};
use std::time::Duration;
use uuid::Uuid;

/// Two sites whose home pages answer after `hold` (first in the job, so the two worker slots
/// take them), then `fast` quick ones the workers would take next.
fn held_world(hold: Duration, fast: usize) -> (Sites, Vec<String>) {
    let mut sites = Sites::default();
    let mut domains = Vec::new();
    for n in 0..2 {
        let host = format!("held{n}.test");
        sites.slow_icon_site(&host, hold);
        domains.push(host);
    }
    for n in 0..fast {
        let host = format!("fast{n}.test");
        sites.icon_site(&host);
        domains.push(host);
    }
    (sites, domains)
}

/// Waits until both held sites are being fetched: the worker's two slots are full.
async fn until_held(internet: &FakeInternet) {
    wait_until("both held sites in flight", || async {
        internet.hits("held0.test", "/") == 1 && internet.hits("held1.test", "/") == 1
    })
    .await;
}

/// Subscribes to `job_id`'s progress and reads the rest in the background. Returns once the
/// snapshot has arrived: the server joins the job's feed before it reads the snapshot, so
/// whatever happens to the job from then on reaches this subscriber.
async fn watching(app: &TestApp, job_id: &str) -> tokio::task::JoinHandle<Delivery> {
    let mut ws = crate::helpers::ws_connect(&app.base, "/graphql/ws", Protocol::TransportWs).await;
    let variables = json!({"id": job_id});
    ws_subscribe(&mut ws, Protocol::TransportWs, "1", SUBSCRIPTION, variables).await;
    let (mut events, completed) = read_events(&mut ws, |events| !events.is_empty()).await;
    assert!(!completed, "the job was still running: {events:?}");
    tokio::spawn(async move {
        let (rest, completed) = read_events(&mut ws, |_| false).await;
        let _ = ws.close(None).await;
        events.extend(rest);
        Delivery {
            events,
            // `read_events` fails the test on any error frame.
            errors: Vec::new(),
            completed,
        }
    })
}

fn ends_cancelled(delivery: &Delivery) {
    assert!(delivery.errors.is_empty(), "{:?}", delivery.errors);
    assert!(delivery.completed, "the subscription completes");
    let last = delivery.events.last().expect("at least the snapshot");
    assert_eq!(last["status"], "CANCELLED", "{:?}", delivery.events);
}

/// Cancelling a running job: its domains no worker holds fail with `cancelled` and are never
/// fetched, the two in flight finish and count, the job stays `cancelled` at 100 %, and a
/// subscriber hears the end. Cancelling again answers the same job.
async fn cancel_stops_what_no_worker_holds(backend: Backend) {
    let (sites, domains) = held_world(Duration::from_secs(2), 6);
    let internet = FakeInternet::start(sites).await;
    let app = TestApp::spawn_on(backend, &internet, &[("WORKER_CONCURRENCY", "2")]).await;
    let id = app.create_job("c", &domains).await;
    until_held(&internet).await;
    let subscriber = watching(&app, &id).await;

    let (status, job) = app
        .post_json(&format!("/jobs/{id}/cancel"), &json!({}))
        .await;
    assert_eq!(status, 200, "{job}");
    assert_eq!(job["status"], "cancelled", "{job}");
    assert_eq!(job["job_id"], id.as_str());
    assert_eq!(
        job["failed"], 6,
        "the six waiting domains fail at once: {job}"
    );
    ends_cancelled(&subscriber.await.unwrap());

    wait_until("the held domains to be recorded", || async {
        let (_, job) = app.get_json(&format!("/jobs/{id}")).await;
        job["completed"].as_i64().unwrap_or(0) + job["failed"].as_i64().unwrap_or(0) == 8
    })
    .await;
    let (_, job) = app.get_json(&format!("/jobs/{id}")).await;
    assert_eq!(
        (&job["status"], &job["completed"], &job["progress"]),
        (&json!("cancelled"), &json!(2), &json!(100)),
        "the job stays cancelled when its last rows finish: {job}"
    );
    for host in &domains[2..] {
        assert_eq!(
            internet.host_hits(host),
            0,
            "{host} was fetched after the cancel"
        );
    }
    let (_, page) = app
        .get_json(&format!("/jobs/{id}/results?per_page=20"))
        .await;
    let cancelled: Vec<&Value> = page["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["error_code"] == "cancelled")
        .collect();
    assert_eq!(cancelled.len(), 6, "{page}");
    assert!(
        cancelled[0]["error"]
            .as_str()
            .unwrap()
            .contains("job cancelled before this domain was fetched")
    );

    // Idempotent, and GraphQL answers the same job.
    let body = app
        .graphql(
            "mutation($id: ID!) { cancelJob(id: $id) { status completed failed } }",
            json!({"id": id}),
        )
        .await;
    assert_eq!(
        body["data"]["cancelJob"],
        json!({"status": "CANCELLED", "completed": 2, "failed": 6}),
        "{body}"
    );
    // No more fetches happened while we looked.
    for host in &domains[2..] {
        assert_eq!(internet.host_hits(host), 0, "{host}");
    }
}
both_backends!(
    cancel_stops_pending_domains,
    cancel_stops_what_no_worker_holds
);

/// Rows of `job` in the result table.
async fn result_rows(app: &TestApp, job: &str) -> i64 {
    let id = Uuid::parse_str(job).unwrap();
    let sql = match app.store.connection().get_database_backend() {
        sea_orm::DbBackend::Postgres => {
            format!("SELECT COUNT(*) AS n FROM result WHERE job_id = '{id}'")
        }
        _ => format!(
            "SELECT COUNT(*) AS n FROM result WHERE job_id = x'{}'",
            id.simple()
        ),
    };
    number(app.store.connection(), &sql).await
}

async fn delete(app: &TestApp, key: &str, id: &str) -> (u16, String) {
    let response = app
        .http
        .delete(app.url(&format!("/jobs/{id}")))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    (
        response.status().as_u16(),
        response.text().await.unwrap_or_default(),
    )
}

/// Another client's delete is a 404 that removes nothing; a key without `submit` is refused;
/// the owner's delete is a 204 after which every way of reading the job (and its signed
/// download link) is a 404 and its rows are gone; an admin may delete any job over GraphQL.
async fn delete_by_owner_other_and_admin(backend: Backend) {
    let app = TestApp::spawn(
        backend,
        &[("AUTH_MODE", "required"), ("WORKER_CONCURRENCY", "0")],
    )
    .await;
    let accounts = Accounts::new(
        app.store.clone(),
        LinkSigner::new(None, Duration::from_secs(60)),
    );
    let key = |client: &'static str, scopes: &'static [Scope]| {
        let accounts = accounts.clone();
        async move { accounts.create_key(client, "life", scopes).await.unwrap().1 }
    };
    let acme = key("acme", &[Scope::Submit, Scope::Read]).await;
    let acme_reader = key("acme", &[Scope::Read]).await;
    let globex = key("globex", &[Scope::Submit, Scope::Read]).await;
    let admin = key("ops", &[Scope::Admin]).await;
    let create = |key: String| {
        let app = &app;
        async move {
            let request = app
                .http
                .post(app.url("/jobs"))
                .json(&json!({"domains": ["a.test", "b.test", "c.test"]}));
            json_answer(request, Some(&key)).await["job_id"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let mine = create(acme.clone()).await;
    let theirs = create(globex.clone()).await;
    let request = app.http.get(app.url(&format!("/jobs/{mine}")));
    let link = json_answer(request, Some(&acme)).await["download_url"]
        .as_str()
        .unwrap()
        .to_owned();

    let (status, body) = delete(&app, &globex, &mine).await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("NOT_FOUND"), "{body}");
    let (status, body) = delete(&app, &acme_reader, &mine).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(result_rows(&app, &mine).await, 3, "nothing removed");
    let target = Target {
        id: mine.clone(),
        client: "acme",
    };
    assert_eq!(
        read(&app, Some(&acme), WAYS[0], &target).await,
        Answer::Sees
    );

    let (status, body) = delete(&app, &acme, &mine).await;
    assert_eq!((status, body.as_str()), (204, ""));
    for way in WAYS {
        for key in [&acme, &admin] {
            assert_eq!(
                read(&app, Some(key), way, &target).await,
                Answer::NotFound,
                "{way:?} after the delete"
            );
        }
    }
    let response = app.http.get(app.url(&link)).send().await.unwrap();
    assert_eq!(response.status(), 404, "the signed link dies with the job");
    assert_eq!(result_rows(&app, &mine).await, 0);
    let (status, _) = delete(&app, &acme, &mine).await;
    assert_eq!(status, 404, "a second delete finds nothing");
    let cancel = app
        .http
        .post(app.url(&format!("/jobs/{mine}/cancel")))
        .bearer_auth(&acme)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(cancel.status(), 404);

    let request = app.http.post(app.url("/graphql")).json(&json!({
        "query": "mutation($id: ID!) { deleteJob(id: $id) }",
        "variables": {"id": theirs},
    }));
    let body = json_answer(request, Some(&admin)).await;
    assert_eq!(body["data"]["deleteJob"], true, "{body}");
    assert_eq!(result_rows(&app, &theirs).await, 0);
    assert_eq!(app.count_rows("job").await, 0);
    let request = app.http.post(app.url("/graphql")).json(&json!({
        "query": "mutation($id: ID!) { deleteJob(id: $id) }",
        "variables": {"id": theirs},
    }));
    let body = json_answer(request, Some(&globex)).await;
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "NOT_FOUND",
        "{body}"
    );
}
both_backends!(delete_access, delete_by_owner_other_and_admin);

/// Deleting a job whose two domains are being fetched, with a subscriber attached: the
/// subscriber hears a final `CANCELLED` and completion, the waiting domains are never
/// fetched, the in-flight ones are recorded without error and without bringing a row back,
/// and a job running beside it finishes untouched.
async fn delete_while_running(backend: Backend) {
    let (mut sites, domains) = held_world(Duration::from_secs(2), 4);
    sites.icon_site("other.test");
    sites.icon_site("marker.test");
    let internet = FakeInternet::start(sites).await;
    let app = TestApp::spawn_on(backend, &internet, &[("WORKER_CONCURRENCY", "2")]).await;
    let id = app.create_job("d", &domains).await;
    until_held(&internet).await;
    let subscriber = watching(&app, &id).await;

    assert_eq!(app.delete_job(&id).await, 204);
    ends_cancelled(&subscriber.await.unwrap());
    let other = app.create_job("d", &["other.test"]).await;
    let job = app.wait_for_job(&other, Duration::from_secs(30)).await;
    assert_eq!(job["completed"], 1, "{job}");

    wait_until("the held sites to answer", || async {
        internet.answered("held0.test", "/") == 1 && internet.answered("held1.test", "/") == 1
    })
    .await;
    // The recorder has taken all three rows (the other job's and the two held ones) once its
    // batches add up to three; it writes batch after batch, so a job created now is recorded
    // after them, and seeing it finish means the held rows' write is done.
    wait_until("the held rows handed to the recorder", || async {
        app.metric("favicon_finder_record_batch_size_sum").await >= 3.0
    })
    .await;
    let marker = app.create_job("d", &["marker.test"]).await;
    let job = app.wait_for_job(&marker, Duration::from_secs(30)).await;
    assert_eq!(job["completed"], 1, "{job}");
    assert_eq!(result_rows(&app, &id).await, 0, "no row came back");
    assert_eq!(
        app.count_rows("job").await,
        2,
        "only the other jobs are left"
    );
    for kind in ["transient", "permanent"] {
        let sample = format!("favicon_finder_record_failures_total{{kind=\"{kind}\"}}");
        assert_eq!(app.metric(&sample).await, 0.0, "{kind} record failures");
    }
    for host in &domains[2..] {
        assert_eq!(
            internet.host_hits(host),
            0,
            "{host} was fetched after the delete"
        );
    }
    let (status, _) = app.get_json(&format!("/jobs/{id}")).await;
    assert_eq!(status, 404);
}
both_backends!(delete_during_a_running_job, delete_while_running);

/// The recorder's side, step by step: a batch holding a leased row of a job deleted meanwhile
/// and a row of another job commits, moves only the other job, and brings nothing back.
async fn recording_a_row_of_a_deleted_job(backend: Backend) {
    let app = TestApp::spawn(backend, &[("WORKER_CONCURRENCY", "0")]).await;
    let store = &app.store;
    let a = favicon_finder::domain::Domain::parse("gone.test").unwrap();
    let b = favicon_finder::domain::Domain::parse("kept.test").unwrap();
    let gone = store.create_job("r", &[a], CachePolicy::OFF).await.unwrap();
    let kept = store.create_job("r", &[b], CachePolicy::OFF).await.unwrap();
    let owner = Uuid::now_v7();
    let claims = store
        .claim(owner, 10, Duration::from_secs(60), 3)
        .await
        .unwrap();
    assert_eq!(claims.len(), 2);
    assert!(store.mark_deleted(gone.id).await.unwrap());
    let purged = store.purge_job(gone.id, 1, None).await.unwrap();
    assert_eq!((purged.jobs, purged.results), (1, 1));

    let failure = |claim| {
        (
            claim,
            Disposition::Finish(Err(favicon_finder::model::FindError::new(
                favicon_finder::model::ErrorCategory::NoIcon,
                "none",
            ))),
        )
    };
    let recorded = store
        .record(claims.into_iter().map(failure).collect())
        .await
        .expect("the batch commits");
    assert_eq!(recorded.updates.len(), 1);
    assert_eq!(recorded.updates[0].job.id, kept.id);
    assert!(recorded.refused.is_empty());
    assert_eq!(result_rows(&app, &gone.id.to_string()).await, 0);
    assert!(store.job(gone.id).await.unwrap().is_none());
}
both_backends!(recording_after_delete, recording_a_row_of_a_deleted_job);

/// Rows a worker held when their job was cancelled are never fetched afterwards: released at
/// its shutdown they finish `cancelled` at once, and left behind by a worker that died they
/// are not claimed when the lease runs out, and the reaper finishes them.
async fn rows_held_at_a_cancel(backend: Backend) {
    let app = TestApp::spawn(backend, &[("WORKER_CONCURRENCY", "0")]).await;
    let store = &app.store;
    let domains: Vec<_> = (0..4)
        .map(|i| favicon_finder::domain::Domain::parse(&format!("held{i}.test")).unwrap())
        .collect();
    let job = store
        .create_job("r", &domains, CachePolicy::OFF)
        .await
        .unwrap();
    let (stopping, dying) = (Uuid::now_v7(), Uuid::now_v7());
    let released = store
        .claim(stopping, 2, Duration::from_secs(60), 3)
        .await
        .unwrap();
    let abandoned = store
        .claim(dying, 2, Duration::from_millis(300), 3)
        .await
        .unwrap();
    assert_eq!((released.len(), abandoned.len()), (2, 2));
    let cancelled = store
        .cancel_job(job.id)
        .await
        .unwrap()
        .expect("it was running");
    assert_eq!(
        cancelled.failed, 0,
        "every row was held, so none finished at the cancel"
    );

    assert_eq!(store.release(&released).await.unwrap(), 2);
    let after_release = store.job(job.id).await.unwrap().unwrap();
    assert_eq!(after_release.failed, 2, "released rows finish as cancelled");

    // Waiting out the abandoned rows' 300 ms lease is the scenario; the database's clock
    // judges it, so the wait is wall-clock.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let other = Uuid::now_v7();
    assert!(
        store
            .claim(other, 10, Duration::from_secs(60), 3)
            .await
            .unwrap()
            .is_empty(),
        "rows of a cancelled job are never claimed again"
    );
    assert_eq!(store.reap_cancelled().await.unwrap(), 2);
    assert_eq!(
        store.reap_cancelled().await.unwrap(),
        0,
        "nothing is left to finish"
    );
    let done = store.job(job.id).await.unwrap().unwrap();
    assert_eq!((done.completed, done.failed), (0, 4));
    let (_, body) = app
        .get_json(&format!("/jobs/{}/results?per_page=10", job.id))
        .await;
    let codes: Vec<_> = body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["error_code"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(codes, vec!["cancelled"; 4], "{body}");
}
both_backends!(held_rows_after_a_cancel, rows_held_at_a_cancel);

/// The SQLite file gives its pages back when a job is deleted: the page count shrinks and no
/// free page is left over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_gives_space_back_after_a_delete() {
    let app = TestApp::spawn(Backend::Sqlite, &[("WORKER_CONCURRENCY", "0")]).await;
    let db = app.store.connection();
    assert_eq!(
        number(db, "SELECT auto_vacuum AS n FROM pragma_auto_vacuum()").await,
        2,
        "incremental"
    );
    let domains: Vec<String> = (0..3000).map(|n| format!("padding-{n:05}.test")).collect();
    let id = app.create_job("s", &domains).await;
    let before = number(db, "SELECT page_count AS n FROM pragma_page_count()").await;
    assert_eq!(app.delete_job(&id).await, 204);
    let after = number(db, "SELECT page_count AS n FROM pragma_page_count()").await;
    assert!(
        after < before * 2 / 3,
        "pages before {before}, after {after}"
    );
    assert_eq!(
        number(
            db,
            "SELECT freelist_count AS n FROM pragma_freelist_count()"
        )
        .await,
        0
    );
    // On disk too: the checkpoint after the vacuum cuts the file to its pages.
    use sea_orm::ConnectionTrait;
    let path = db
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Sqlite,
            "SELECT file FROM pragma_database_list WHERE name = 'main'",
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get::<String>("", "file")
        .unwrap();
    let page_size = number(db, "SELECT page_size AS n FROM pragma_page_size()").await;
    let file = std::fs::metadata(&path).unwrap().len() as i64;
    assert_eq!(file, after * page_size, "{path} is {file} bytes");
}

/// An SQLite file made before incremental auto-vacuum is switched at start (one VACUUM).
#[tokio::test]
async fn an_old_sqlite_file_switches_to_incremental_vacuum() {
    use sea_orm::ConnectionTrait;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("old.db").display());
    let plain = sea_orm::Database::connect(&url).await.unwrap();
    plain
        .execute_unprepared("CREATE TABLE old_data (x INTEGER)")
        .await
        .unwrap();
    assert_eq!(
        number(&plain, "SELECT auto_vacuum AS n FROM pragma_auto_vacuum()").await,
        0
    );
    drop(plain);
    let store = favicon_finder::store::Store::connect(&url, 2)
        .await
        .unwrap();
    assert_eq!(
        number(
            store.connection(),
            "SELECT auto_vacuum AS n FROM pragma_auto_vacuum()"
        )
        .await,
        2
    );
}
