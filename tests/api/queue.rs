//! The work queue's guarantees, driven directly through the store on both databases: claims
//! never overlap, a stale writer changes nothing, a row is counted once, expired leases are
//! re-claimed, released rows are claimable at once, exhausted rows are finished.

use crate::helpers::{Backend, TestDb, both_backends};
use favicon_finder::domain::Domain;
use favicon_finder::entities::job::JobStatus;
use favicon_finder::finder::{ErrorCategory, FindError, Found};
use favicon_finder::store::{CachePolicy, Claimed, Disposition, Store};
use std::time::Duration;
use uuid::Uuid;

const LEASE: Duration = Duration::from_secs(30);

fn found(url: &str) -> Disposition {
    Disposition::Finish(Ok(Found {
        favicon_url: url.to_owned(),
        final_url: None,
        mime: "image/png".into(),
        width: 16,
        height: 16,
        candidates: vec![],
        candidates_dropped: 0,
    }))
}

fn failed() -> Disposition {
    Disposition::Finish(Err(FindError::new(ErrorCategory::NoIcon, "nothing")))
}

async fn store_with_job(backend: Backend, domains: &[&str]) -> (TestDb, Store, Uuid) {
    let db = TestDb::new(backend).await;
    let store = Store::connect(&db.url, 4).await.unwrap();
    store.migrate().await.unwrap();
    let domains: Vec<Domain> = domains.iter().map(|d| Domain::parse(d).unwrap()).collect();
    let job = store
        .create_job("queue-test", &domains, CachePolicy::OFF)
        .await
        .unwrap()
        .job;
    (db, store, job.id)
}

async fn counters(store: &Store, job: Uuid) -> (i32, i32, JobStatus) {
    let view = store.job(job).await.unwrap().unwrap();
    (view.job.completed, view.job.failed, view.job.status)
}

async fn claims_are_exclusive_and_records_exactly_once(backend: Backend) {
    let (_db, store, job) = store_with_job(backend, &["a.test", "b.test", "c.test"]).await;
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());

    let mine = store.claim(a, 2, LEASE, 3).await.unwrap();
    assert_eq!(mine.len(), 2, "never more rows than asked for");
    assert!(mine.iter().all(|c| c.tries == 1 && c.owner == a));
    let theirs = store.claim(b, 10, LEASE, 3).await.unwrap();
    assert_eq!(theirs.len(), 1, "leased rows are not claimed again");
    assert!(mine.iter().all(|c| c.id != theirs[0].id));
    assert!(store.claim(b, 10, LEASE, 3).await.unwrap().is_empty());

    // A writer that does not hold the lease changes nothing.
    let forged = Claimed {
        owner: b,
        ..mine[0].clone()
    };
    assert!(
        store
            .record(vec![(forged, found("http://x/"))])
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(counters(&store, job).await, (0, 0, JobStatus::Processing));

    // The holder records once; the same write again changes nothing.
    let updates = store
        .record(vec![(mine[0].clone(), found("http://a.test/f.png"))])
        .await
        .unwrap();
    assert_eq!(updates.len(), 1);
    assert_eq!(updates[0].finished.len(), 1);
    assert_eq!(updates[0].finished[0].domain, mine[0].domain);
    assert!(
        store
            .record(vec![(mine[0].clone(), found("http://a.test/f.png"))])
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(counters(&store, job).await, (1, 0, JobStatus::Processing));

    // The last two finish the job, in one batch.
    let updates = store
        .record(vec![
            (mine[1].clone(), failed()),
            (theirs[0].clone(), failed()),
        ])
        .await
        .unwrap();
    assert_eq!(updates[0].job.status, JobStatus::Completed);
    assert_eq!(counters(&store, job).await, (1, 2, JobStatus::Completed));
}
both_backends!(
    exclusive_claims,
    claims_are_exclusive_and_records_exactly_once
);

async fn expired_leases_move_to_the_next_worker(backend: Backend) {
    let (_db, store, job) = store_with_job(backend, &["slow.test"]).await;
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let first = store
        .claim(a, 1, Duration::from_millis(1), 3)
        .await
        .unwrap();
    assert_eq!(first.len(), 1);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let second = store.claim(b, 1, LEASE, 3).await.unwrap();
    assert_eq!(second.len(), 1, "an expired lease is claimable");
    assert_eq!(second[0].tries, 2);
    // The first worker finishes late: its write is refused; the new holder's counts.
    assert!(
        store
            .record(vec![(first[0].clone(), found("http://late/"))])
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store
            .record(vec![(second[0].clone(), failed())])
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(counters(&store, job).await, (0, 1, JobStatus::Failed));
}
both_backends!(expired_leases, expired_leases_move_to_the_next_worker);

async fn retries_releases_and_exhausted_rows(backend: Backend) {
    let (_db, store, job) = store_with_job(backend, &["flaky.test", "crashy.test"]).await;
    let a = Uuid::new_v4();
    let claims = store.claim(a, 2, LEASE, 2).await.unwrap();
    let (flaky, crashy) = if claims[0].domain == "flaky.test" {
        (claims[0].clone(), claims[1].clone())
    } else {
        (claims[1].clone(), claims[0].clone())
    };

    // A retry due in the future is not claimable yet; one due now is.
    let later = favicon_finder::store::now() + chrono::Duration::seconds(60);
    store
        .record(vec![(
            flaky.clone(),
            Disposition::Retry {
                run_at: later,
                category: ErrorCategory::Timeout,
                message: "slow".into(),
            },
        )])
        .await
        .unwrap();
    // Releasing gives the row back at once, without counting the try.
    assert_eq!(
        store.release(std::slice::from_ref(&crashy)).await.unwrap(),
        1
    );
    let again = store.claim(a, 2, LEASE, 2).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].domain, "crashy.test");
    assert_eq!(again[0].tries, 1, "a released try does not count");

    // A row at its last try whose lease expires (its worker died) is finished as failed.
    let second = store.claim(a, 1, Duration::ZERO, 2).await;
    assert!(
        second.unwrap().is_empty(),
        "crashy is leased, flaky is not due"
    );
    let b = Uuid::new_v4();
    let _ = store.release(&again).await.unwrap();
    let dying = store
        .claim(b, 1, Duration::from_millis(1), 2)
        .await
        .unwrap();
    assert_eq!(dying[0].tries, 1);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let last = store
        .claim(b, 1, Duration::from_millis(1), 2)
        .await
        .unwrap();
    assert_eq!(last[0].tries, 2);
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(
        store.claim(b, 1, LEASE, 2).await.unwrap().is_empty(),
        "tries are used up"
    );
    let reaped = store.reap_exhausted(2).await.unwrap();
    assert_eq!(reaped.len(), 1);
    assert_eq!(
        reaped[0].finished[0].error_code.as_deref(),
        Some("internal")
    );
    assert_eq!(counters(&store, job).await, (0, 1, JobStatus::Processing));
}
both_backends!(retries_and_releases, retries_releases_and_exhausted_rows);
