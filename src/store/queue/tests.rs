//! The partial-index clauses the queue's queries splice in, checked against the migrated
//! schema on both databases.

use super::*;
use std::collections::BTreeSet;

/// Each partial index on `result`, with the clause the queries repeat for it.
const PARTIAL_INDEXES: [(&str, &str); 5] = [
    ("idx_result_pending_order", PENDING),
    ("idx_result_leased", LEASED),
    ("idx_result_fetched", FETCHED),
    ("idx_result_icon", HAS_ICON),
    ("idx_result_job_failure", FAILED),
];

/// The partial indexes on `result` and their clauses, as the database holds them: the text
/// as written on SQLite, PostgreSQL's own rendering of the parsed clause on PostgreSQL.
async fn partial_indexes(db: &impl ConnectionTrait) -> BTreeMap<String, String> {
    let sql = match db.get_database_backend() {
        DbBackend::Postgres => {
            "SELECT c.relname AS name, pg_get_expr(i.indpred, i.indrelid) AS clause \
             FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
             WHERE i.indrelid = 'result'::regclass AND i.indpred IS NOT NULL"
        }
        _ => {
            "SELECT name, substr(sql, instr(sql, ' WHERE ') + 7) AS clause \
             FROM sqlite_master \
             WHERE type = 'index' AND tbl_name = 'result' AND sql LIKE '% WHERE %'"
        }
    };
    let rows = db
        .query_all_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .unwrap();
    rows.iter()
        .map(|row| {
            (
                row.try_get::<String>("", "name").unwrap(),
                row.try_get::<String>("", "clause").unwrap(),
            )
        })
        .collect()
}

/// Every partial index the migrations leave has a constant, and each constant is the
/// index's clause: the database renders a probe index made from the constant exactly as
/// it renders the migrated index (on PostgreSQL after parsing both, so only a difference
/// in meaning or form fails, never one of spacing).
async fn check_partial_indexes(store: &Store) {
    let db = store.connection();
    let live = partial_indexes(db).await;
    assert_eq!(
        live.keys().map(String::as_str).collect::<BTreeSet<_>>(),
        PARTIAL_INDEXES.iter().map(|(name, _)| *name).collect(),
        "every partial index on result needs its clause as a constant in store/queue.rs"
    );
    for (name, clause) in PARTIAL_INDEXES {
        let txn = db.begin().await.unwrap();
        txn.execute_unprepared(&format!(
            "CREATE INDEX ff_probe ON result (id) WHERE {clause}"
        ))
        .await
        .unwrap();
        let probe = partial_indexes(&txn).await.remove("ff_probe").unwrap();
        txn.rollback().await.unwrap();
        assert_eq!(live[name], probe, "{name} no longer matches its constant");
    }
}

#[tokio::test]
async fn partial_index_clauses_match_the_migrations_on_sqlite() {
    let store = Store::connect("sqlite::memory:", 1).await.unwrap();
    store.migrate().await.unwrap();
    check_partial_indexes(&store).await;
}

#[tokio::test]
async fn partial_index_clauses_match_the_migrations_on_postgres() {
    let Some(admin_url) = std::env::var("TEST_DATABASE_URL")
        .ok()
        .filter(|url| !url.is_empty())
    else {
        // The same rule as the integration tests' `services::available`.
        assert!(
            std::env::var("REQUIRE_SERVICES").as_deref() != Ok("1"),
            "REQUIRE_SERVICES=1 but TEST_DATABASE_URL is missing"
        );
        eprintln!("skipped: TEST_DATABASE_URL is missing");
        return;
    };
    let admin = Store::connect(&admin_url, 1).await.unwrap();
    let name = format!("ff_test_{}", Uuid::new_v4().simple());
    admin
        .connection()
        .execute_unprepared(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    let mut url = url::Url::parse(&admin_url).unwrap();
    url.set_path(&format!("/{name}"));
    let store = Store::connect(url.as_str(), 1).await.unwrap();
    store.migrate().await.unwrap();
    check_partial_indexes(&store).await;
    store.connection().clone().close().await.unwrap();
    admin
        .connection()
        .execute_unprepared(&format!("DROP DATABASE {name}"))
        .await
        .unwrap();
}
