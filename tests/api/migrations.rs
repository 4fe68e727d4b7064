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
