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
        mime: "image/x-icon".into(),
        width: 32,
        height: 32,
        candidates: Vec::new(),
        candidates_dropped: 0,
        icon: None,
        dark: None,
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
        .unwrap();
    (db, store, job.id)
}

async fn counters(store: &Store, job: Uuid) -> (i32, i32, JobStatus) {
    let view = store.job(job).await.unwrap().unwrap();
    (view.completed, view.failed, view.status)
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
            .updates
            .is_empty()
    );
    assert_eq!(counters(&store, job).await, (0, 0, JobStatus::Processing));

    // The holder records once; the same write again changes nothing.
    let updates = store
        .record(vec![(mine[0].clone(), found("http://a.test/f.png"))])
        .await
        .unwrap()
        .updates;
    assert_eq!(updates.len(), 1);
    assert_eq!(updates[0].finished.len(), 1);
    assert_eq!(updates[0].finished[0].domain, mine[0].domain);
    assert!(
        store
            .record(vec![(mine[0].clone(), found("http://a.test/f.png"))])
            .await
            .unwrap()
            .updates
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
        .unwrap()
        .updates;
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
    // Waiting out the 1 ms lease is the scenario; leases are stamped and compared by the
    // database's clock, which paused tokio time cannot move.
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
            .updates
            .is_empty()
    );
    assert_eq!(
        store
            .record(vec![(second[0].clone(), failed())])
            .await
            .unwrap()
            .updates
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
    let retried = store
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
    // A retry finishes nothing and is refused nothing: the row stays pending, unleased.
    assert!(retried.refused.is_empty(), "{retried:?}");
    assert!(
        retried.updates.iter().all(|u| u.finished.is_empty()),
        "{retried:?}"
    );
    assert_eq!(counters(&store, job).await, (0, 0, JobStatus::Processing));
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
    assert_eq!(
        store.release(&again).await.unwrap(),
        1,
        "crashy is given back"
    );
    let dying = store
        .claim(b, 1, Duration::from_millis(1), 2)
        .await
        .unwrap();
    assert_eq!(dying[0].tries, 1);
    // Each wait outlasts a 1 ms lease: a worker that died with it (the database's clock, so
    // wall-clock).
    tokio::time::sleep(Duration::from_millis(20)).await;
    let last = store
        .claim(b, 1, Duration::from_millis(1), 2)
        .await
        .unwrap();
    assert_eq!(last[0].tries, 2);
    // The second 1 ms lease runs out the same way, on the database's clock.
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(
        store.claim(b, 1, LEASE, 2).await.unwrap().is_empty(),
        "tries are used up"
    );
    let reaped = store.reap_exhausted(2).await.unwrap();
    assert_eq!(reaped.len(), 1);
    assert_eq!(
        reaped[0].finished[0].error_code,
        Some(ErrorCategory::Internal)
    );
    assert_eq!(counters(&store, job).await, (0, 1, JobStatus::Processing));
}
both_backends!(retries_and_releases, retries_releases_and_exhausted_rows);

/// An outcome the database itself refuses: a NUL in text (PostgreSQL refuses it in any text
/// column) and a dropped-candidates count that, unconverted, is negative (both databases
/// refuse it by the column's check). Only `record_uncleaned` can send it.
fn unstorable() -> Disposition {
    let mut err = FindError::new(ErrorCategory::HttpStatus, "404 Not\u{0}Found");
    err.candidates_dropped = u32::MAX;
    Disposition::Finish(Err(err))
}

async fn an_unstorable_row_never_blocks_its_batch(backend: Backend) {
    let domains = ["a.test", "b.test", "c.test", "bad.test", "d.test", "e.test"];
    let (_db, store, job) = store_with_job(backend, &domains).await;
    let claims = store.claim(Uuid::new_v4(), 10, LEASE, 3).await.unwrap();
    assert_eq!(claims.len(), domains.len());
    let batch: Vec<_> = claims
        .iter()
        .map(|c| {
            let disposition = if c.domain == "bad.test" {
                unstorable()
            } else {
                found(&format!("http://{}/f.png", c.domain))
            };
            (c.clone(), disposition)
        })
        .collect();

    // `refused` lists only rows whose write the database answered with an error.
    let recorded = store.record_uncleaned(batch).await.unwrap();
    assert_eq!(recorded.refused.len(), 1, "{recorded:?}");
    assert_eq!(recorded.refused[0].domain, "bad.test");
    let finished: usize = recorded.updates.iter().map(|u| u.finished.len()).sum();
    assert_eq!(
        finished,
        domains.len(),
        "every row is finished, the bad one as failed"
    );
    assert_eq!(counters(&store, job).await, (5, 1, JobStatus::Completed));

    let rows = store
        .results_page(job, &Default::default(), 0, 10)
        .await
        .unwrap();
    for row in rows {
        if row.domain == "bad.test" {
            assert_eq!(row.status.as_str(), "failed");
            assert_eq!(row.error_code, Some(ErrorCategory::Internal));
            let error = row.error.clone().unwrap();
            assert!(
                error.starts_with("internal: the outcome could not be stored"),
                "{error}"
            );
            assert!(!error.contains('\u{0}'));
            assert_eq!(row.candidates_dropped, 0);
        } else {
            assert_eq!(row.status.as_str(), "success", "{}", row.domain);
            assert_eq!(
                row.favicon_url,
                Some(format!("http://{}/f.png", row.domain))
            );
        }
    }
}
both_backends!(unstorable_row, an_unstorable_row_never_blocks_its_batch);

async fn the_same_outcome_cleaned_is_stored(backend: Backend) {
    let (_db, store, job) = store_with_job(backend, &["bad.test"]).await;
    let claims = store.claim(Uuid::new_v4(), 1, LEASE, 3).await.unwrap();
    let recorded = store
        .record(vec![(claims[0].clone(), unstorable())])
        .await
        .unwrap();
    assert!(recorded.refused.is_empty());
    let row = &store
        .results_page(job, &Default::default(), 0, 1)
        .await
        .unwrap()[0];
    assert_eq!(row.error_code, Some(ErrorCategory::HttpStatus));
    assert_eq!(row.error.as_deref(), Some("http_status: 404 NotFound"));
    assert_eq!(row.candidates_dropped, i32::MAX);
}
both_backends!(cleaned_outcome, the_same_outcome_cleaned_is_stored);

/// Many claimers on two separate stores (two connection pools, as two processes would have)
/// claim from one queue at the same moment, again and again until it is empty: every row is
/// claimed exactly once. The sequential test above cannot see a race; this one is built
/// to provoke it.
async fn concurrent_claims_never_overlap(backend: Backend) {
    const ROWS: usize = 300;
    const CLAIMERS: usize = 8;
    let names: Vec<String> = (0..ROWS).map(|i| format!("race{i}.test")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let (db, first, _job) = store_with_job(backend, &refs).await;
    let second = Store::connect(&db.url, 4).await.unwrap();
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(CLAIMERS));
    let tasks: Vec<_> = (0..CLAIMERS)
        .map(|i| {
            let store = if i % 2 == 0 {
                first.clone()
            } else {
                second.clone()
            };
            let start = start.clone();
            tokio::spawn(async move {
                let owner = Uuid::new_v4();
                let mut mine = Vec::new();
                start.wait().await;
                loop {
                    let claimed = store.claim(owner, 7, LEASE, 3).await.unwrap();
                    if claimed.is_empty() {
                        return mine;
                    }
                    // A second try on a fresh queue means another claimer had the row too.
                    for c in &claimed {
                        assert_eq!(c.owner, owner);
                        assert_eq!(c.tries, 1, "{} was claimed twice", c.domain);
                    }
                    mine.extend(claimed.into_iter().map(|c| c.id));
                }
            })
        })
        .collect();
    let mut per_claimer = Vec::new();
    for task in tasks {
        per_claimer.push(task.await.unwrap());
    }
    let all: Vec<Uuid> = per_claimer.iter().flatten().copied().collect();
    let distinct: std::collections::HashSet<Uuid> = all.iter().copied().collect();
    assert_eq!(
        all.len(),
        distinct.len(),
        "{} rows were claimed twice",
        all.len() - distinct.len()
    );
    assert_eq!(distinct.len(), ROWS, "every row was claimed");
    // The claimers really ran side by side: more than one of them got work.
    let busy = per_claimer.iter().filter(|c| !c.is_empty()).count();
    eprintln!("concurrent claims ({backend:?}): {busy} of {CLAIMERS} claimers got rows");
    assert!(
        busy > 1,
        "only one claimer got rows: nothing ran concurrently"
    );
}
both_backends!(concurrent_claims, concurrent_claims_never_overlap);
