//! The fleet's round trips: a claim that skips the WAL flush, a batch's finished rows in one
//! statement.

use super::super::claim::claim_sql;
use super::super::*;
use sea_orm::{ConnectionTrait, DbBackend};

/// A claim on PostgreSQL commits without waiting for the WAL flush, and only the claim: the
/// setting ends with its transaction (the store has one connection, so both reads see it).
pub(super) async fn check_claim_skips_the_flush(store: &Store) {
    let db = store.connection();
    let show = || async {
        db.query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SHOW synchronous_commit",
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get::<String>("", "synchronous_commit")
        .unwrap()
    };
    let txn = db.begin().await.unwrap();
    let values: Vec<sea_orm::Value> = vec![
        Uuid::new_v4().into(),
        now().into(),
        now().into(),
        3i32.into(),
        vec![Uuid::new_v4()].into(),
        vec![1i32].into(),
    ];
    txn.query_all_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        claim_sql(DbBackend::Postgres, 1),
        values,
    ))
    .await
    .unwrap();
    let inside = txn
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SHOW synchronous_commit",
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get::<String>("", "synchronous_commit")
        .unwrap();
    txn.commit().await.unwrap();
    assert_eq!(inside, "off", "the claim's own transaction skips the flush");
    assert_eq!(show().await, "on", "and only the claim's");
}

#[test]
fn a_finished_row_is_written_in_the_batch_statement() {
    let claim = Claimed {
        id: Uuid::new_v4(),
        job_id: Uuid::new_v4(),
        domain: "example.com".into(),
        tries: 1,
        owner: Uuid::new_v4(),
        trace_context: None,
    };
    let found = crate::model::Found {
        favicon_url: "https://example.com/favicon.ico".into(),
        final_url: Some("https://example.com/".into()),
        mime: "image/png".into(),
        width: 32,
        height: 32,
        candidates: Vec::new(),
        candidates_dropped: 0,
        icon: None,
        dark: None,
    };
    let failed = FindError::new(ErrorCategory::Dns, "no such name".to_owned());
    for outcome in [Ok(found), Err(failed)] {
        let (row, _) = written(&claim, &Disposition::Finish(outcome), now());
        let record = bulk::record(DbBackend::Sqlite, &claim, &row);
        // A column added to the finished row and not to the statement would send every row
        // through its own statement again: one round trip per domain.
        assert!(record.is_some(), "{row:?}");
    }
}
