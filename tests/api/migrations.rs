//! Migrations run up, down and up again on both databases.

use crate::helpers::{Backend, TestDb, both_backends};
use favicon_finder::store::Store;
use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectionTrait, Statement};

async fn table_exists(store: &Store, table: &str) -> bool {
    let backend = store.connection().get_database_backend();
    let sql = match backend {
        sea_orm::DbBackend::Postgres => format!(
            "SELECT COUNT(*) AS n FROM information_schema.tables WHERE table_schema = 'public' AND table_name = '{table}'"
        ),
        _ => format!(
            "SELECT COUNT(*) AS n FROM sqlite_master WHERE type = 'table' AND name = '{table}'"
        ),
    };
    let row = store
        .connection()
        .query_one_raw(Statement::from_string(backend, sql))
        .await
        .unwrap()
        .unwrap();
    row.try_get::<i64>("", "n").unwrap() == 1
}

async fn migrations_go_up_and_down(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = Store::connect(&db.url, 2).await.unwrap();
    assert!(!store.migrations_applied().await.unwrap());
    store.migrate().await.unwrap();
    assert!(store.migrations_applied().await.unwrap());
    for table in ["client", "job", "result"] {
        assert!(table_exists(&store, table).await, "{table} after up");
    }
    Migrator::down(store.connection(), None).await.unwrap();
    for table in ["client", "job", "result"] {
        assert!(!table_exists(&store, table).await, "{table} after down");
    }
    assert!(!store.migrations_applied().await.unwrap());
    store.migrate().await.unwrap();
    assert!(table_exists(&store, "result").await);
    // Applying again is a no-op.
    store.migrate().await.unwrap();
}
both_backends!(up_and_down, migrations_go_up_and_down);

async fn column_exists(store: &Store, table: &str, column: &str) -> bool {
    let backend = store.connection().get_database_backend();
    let sql = match backend {
        sea_orm::DbBackend::Postgres => format!(
            "SELECT COUNT(*) AS n FROM information_schema.columns \
             WHERE table_schema = 'public' AND table_name = '{table}' AND column_name = '{column}'"
        ),
        _ => format!(
            "SELECT COUNT(*) AS n FROM pragma_table_info('{table}') WHERE name = '{column}'"
        ),
    };
    let row = store
        .connection()
        .query_one_raw(Statement::from_string(backend, sql))
        .await
        .unwrap()
        .unwrap();
    row.try_get::<i64>("", "n").unwrap() == 1
}

/// How many of the newest migrations to revert so that `name` is reverted too.
fn steps_back_to(name: &str) -> u32 {
    let names: Vec<String> = Migrator::migrations()
        .iter()
        .map(|m| m.name().to_owned())
        .collect();
    let at = names.iter().position(|n| n == name).unwrap();
    (names.len() - at) as u32
}

/// The candidates_dropped migration (and any after it) goes down and up again over a
/// database holding rows, and its check refuses a negative count.
async fn candidates_dropped_goes_up_and_down(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = Store::connect(&db.url, 2).await.unwrap();
    store.migrate().await.unwrap();
    let domain = favicon_finder::domain::Domain::parse("a.test").unwrap();
    let job = store
        .create_job("m", &[domain], favicon_finder::store::CachePolicy::OFF)
        .await
        .unwrap()
        .job;
    assert!(column_exists(&store, "result", "candidates_dropped").await);
    let negative = Statement::from_string(
        store.connection().get_database_backend(),
        "UPDATE result SET candidates_dropped = -1",
    );
    let refused = store.connection().execute_raw(negative).await.unwrap_err();
    assert!(!favicon_finder::store::is_transient(&refused), "{refused}");

    let steps = steps_back_to("m20261201_000005_candidates_dropped");
    Migrator::down(store.connection(), Some(steps))
        .await
        .unwrap();
    assert!(!column_exists(&store, "result", "candidates_dropped").await);
    assert!(!store.migrations_applied().await.unwrap());
    store.migrate().await.unwrap();
    assert!(column_exists(&store, "result", "candidates_dropped").await);
    let rows = store.results_page(job.id, 1, 10).await.unwrap();
    assert_eq!(rows.len(), 1, "the rows outlive the column");
    assert_eq!(rows[0].candidates_dropped, 0, "existing rows read 0");
}
both_backends!(candidates_dropped, candidates_dropped_goes_up_and_down);

/// The icons migration goes down and up again over a database holding rows: the blob table
/// and the result's pointer leave and come back, and the rows outlive them.
async fn icons_goes_up_and_down(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = Store::connect(&db.url, 2).await.unwrap();
    store.migrate().await.unwrap();
    let domain = favicon_finder::domain::Domain::parse("a.test").unwrap();
    let job = store
        .create_job("m", &[domain], favicon_finder::store::CachePolicy::OFF)
        .await
        .unwrap()
        .job;
    assert!(table_exists(&store, "icon_blob").await);
    assert!(column_exists(&store, "result", "icon_sha256").await);
    let steps = steps_back_to("m20261201_000007_icons");
    Migrator::down(store.connection(), Some(steps))
        .await
        .unwrap();
    assert!(!table_exists(&store, "icon_blob").await);
    assert!(!column_exists(&store, "result", "icon_sha256").await);
    store.migrate().await.unwrap();
    assert!(table_exists(&store, "icon_blob").await);
    let rows = store.results_page(job.id, 1, 10).await.unwrap();
    assert_eq!(rows.len(), 1, "the rows outlive the column");
    assert_eq!(rows[0].icon_sha256, None);
}
both_backends!(icons_migration, icons_goes_up_and_down);
