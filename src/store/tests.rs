//! The job's rules as the store writes them, checked against [`crate::model::job`]'s Rust
//! forms on SQLite, and the cleaning of every outcome the store writes.

use super::write::{insert_job, settle};
use super::*;
use crate::model::job::final_status;
use crate::model::{ErrorCategory, FindError, JobStatus, Priority, ResultFilter, Tally};

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
        settle(&txn, job.id, tally, now(), false).await.unwrap();
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
        .record_lookup("lookups", None, "a.test", outcome)
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
