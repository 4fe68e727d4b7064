//! The job's rules as the store writes them, checked against [`crate::model::job`]'s Rust
//! forms on SQLite, and the cleaning of every outcome the store writes.

use super::write::{insert_job, settle};
use super::*;
use crate::model::job::final_status;
use crate::model::{
    ChangeSource, ErrorCategory, FindError, JobStatus, Priority, ResultFilter, Tally,
};

async fn sqlite() -> Store {
    let store = Store::connect("sqlite::memory:", 1).await.unwrap();
    store.migrate().await.unwrap();
    store
}

#[tokio::test]
async fn the_final_status_sql_agrees_with_the_model() {
    let store = sqlite().await;
    let cases = [
        (3, 0, 0),
        (3, 1, 1),
        (3, 0, 3),
        (3, 1, 2),
        (3, 3, 0),
        (1, 0, 1),
        (0, 0, 0),
    ];
    for (total, completed, failed) in cases {
        let txn = store.connection().begin().await.unwrap();
        let job = insert_job(&txn, "rules", None, Priority::Normal, total, now())
            .await
            .unwrap();
        let tally = Tally { completed, failed };
        settle(&txn, job.id, tally, now(), false, true)
            .await
            .unwrap();
        txn.commit().await.unwrap();
        let read = store.job(job.id).await.unwrap().unwrap();
        let expected = final_status(total, completed, failed).unwrap_or(JobStatus::Processing);
        assert_eq!(
            read.status, expected,
            "{total} domains, {completed} + {failed}"
        );
        assert_eq!((read.completed, read.failed), (completed, failed));
        assert_eq!(
            read.progress,
            crate::model::job::progress(total, completed, failed)
        );
    }
}

#[tokio::test]
async fn a_cancelled_job_keeps_its_status_when_its_rows_are_counted() {
    let store = sqlite().await;
    let domains = [crate::domain::Domain::parse("a.test").unwrap()];
    let job = store
        .create_job("rules", &domains, CachePolicy::OFF)
        .await
        .unwrap();
    let cancelled = store.cancel_job(job.id).await.unwrap().unwrap();
    // The one unheld row is cancelled and counted as failed; the job stays cancelled.
    assert_eq!(cancelled.status, JobStatus::Cancelled);
    assert_eq!((cancelled.completed, cancelled.failed), (0, 1));
    assert_eq!(cancelled.progress, 100);
}

#[tokio::test]
async fn a_lookup_is_cleaned_before_it_is_written() {
    let store = sqlite().await;
    let message = format!(
        "bad\0bytes {}",
        "x".repeat(4 * crate::clean::MAX_MESSAGE_BYTES)
    );
    let outcome = Err(FindError::new(ErrorCategory::NoIcon, message));
    let id = store
        .record_lookup("lookups", None, "a.test", outcome, ChangeSource::Find)
        .await
        .unwrap();
    let rows = store
        .results_page(id, &ResultFilter::default(), 0, 10)
        .await
        .unwrap();
    let error = rows[0].columns.error.clone().unwrap();
    assert!(!error.contains('\0'), "{error:?}");
    // The stored text is the category and the cleaned message, not the whole raw one.
    assert!(
        error.len() <= crate::clean::MAX_MESSAGE_BYTES + "no_icon: ".len(),
        "{} bytes",
        error.len()
    );
    let job = store.job(id).await.unwrap().unwrap();
    assert_eq!(job.status, JobStatus::Failed);
    assert_eq!(job.progress, 100);
}

/// A batch's finished rows, written in one statement, are stored as the driver stores a bound
/// value on SQLite: times as its exact text (SQLite compares times as text, so the cache's
/// cut-offs and the newest-fetch order depend on it), ids as blobs the guard matches, the
/// candidates as JSON that reads back whole, and the icon's blob once for rows that share it.
#[tokio::test]
async fn a_recorded_batch_is_stored_as_the_driver_stores_values() {
    use crate::model::{Candidate, CandidateSource, Found, IconBytes};
    let store = sqlite().await;
    let domains: Vec<_> = ["a.test", "b.test", "c.test"]
        .iter()
        .map(|d| crate::domain::Domain::parse(d).unwrap())
        .collect();
    let job = store
        .create_job("batch", &domains, CachePolicy::OFF)
        .await
        .unwrap();
    let owner = uuid::Uuid::new_v4();
    let claimed = store
        .claim(owner, 10, std::time::Duration::from_secs(60), 3)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 3);
    let mut candidate = Candidate::new("https://a.test/i.png", CandidateSource::Icon);
    candidate.width = Some(32);
    let found = |domain: &str| Found {
        favicon_url: format!("https://{domain}/i.png"),
        final_url: Some(format!("https://{domain}/")),
        mime: "image/png".into(),
        width: 32,
        height: 32,
        candidates: vec![candidate.clone()],
        candidates_dropped: 2,
        icon: Some(IconBytes::new(&b"the same icon"[..])),
        dark: None,
    };
    let batch = claimed
        .into_iter()
        .map(|claim| {
            let outcome = match claim.domain.as_str() {
                "c.test" => Err(FindError::new(ErrorCategory::NoIcon, "nothing")),
                domain => Ok(found(domain)),
            };
            (claim, Disposition::Finish(outcome))
        })
        .collect();
    let recorded = store.record(batch).await.unwrap();
    assert_eq!(recorded.updates[0].job.completed, 2);
    assert_eq!(recorded.updates[0].job.failed, 1);
    let raw = store
        .db
        .query_all_raw(Statement::from_string(
            DbBackend::Sqlite,
            "SELECT fetched_at, updated_at, typeof(width) AS w, lease_owner IS NULL AS free \
             FROM result ORDER BY position",
        ))
        .await
        .unwrap();
    for row in raw {
        // `fetched_at` came through the JSON, `updated_at` was bound: the same time, the same text.
        let fetched: String = row.try_get("", "fetched_at").unwrap();
        let updated: String = row.try_get("", "updated_at").unwrap();
        assert_eq!(fetched, updated);
        assert!(row.try_get::<bool>("", "free").unwrap());
    }
    let rows = store
        .results_page(job.id, &ResultFilter::default(), 0, 10)
        .await
        .unwrap();
    assert_eq!(
        rows[0].columns.favicon_url.as_deref(),
        Some("https://a.test/i.png")
    );
    assert_eq!(rows[0].columns.width, Some(32));
    assert_eq!(rows[0].candidates, vec![candidate]);
    assert_eq!(rows[0].candidates_dropped, 2);
    assert!(rows[1].columns.icon_url.is_some() || rows[1].icon.is_some());
    assert_eq!(rows[2].columns.error_code, Some(ErrorCategory::NoIcon));
    let blobs = store
        .db
        .query_one_raw(Statement::from_string(
            DbBackend::Sqlite,
            "SELECT COUNT(*) AS n FROM icon_blob",
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get::<i64>("", "n")
        .unwrap();
    assert_eq!(blobs, 1);
}
