//! Migrations run up, down and up again on both databases.

use crate::helpers::{Backend, TestDb, both_backends, number};
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
    number(store.connection(), &sql).await == 1
}

async fn migrations_go_up_and_down(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = Store::connect(&db.url, 2).await.unwrap();
    assert!(!store.migrations_applied().await.unwrap());
    store.migrate().await.unwrap();
    assert!(store.migrations_applied().await.unwrap());
    for table in ["client", "job", "result", "api_key"] {
        assert!(table_exists(&store, table).await, "{table} after up");
    }
    Migrator::down(store.connection(), None).await.unwrap();
    for table in ["client", "job", "result", "api_key"] {
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
    number(store.connection(), &sql).await == 1
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

/// A fresh database migrated to the newest schema, holding one job of client `m` for
/// `a.test`: rows for a migration to carry down and up.
async fn migrated_with_a_job(backend: Backend) -> (TestDb, Store, favicon_finder::model::Job) {
    let db = TestDb::new(backend).await;
    let store = Store::connect(&db.url, 2).await.unwrap();
    store.migrate().await.unwrap();
    let domain = favicon_finder::domain::Domain::parse("a.test").unwrap();
    let job = store
        .create_job("m", &[domain], favicon_finder::store::CachePolicy::OFF)
        .await
        .unwrap();
    (db, store, job)
}

/// The candidates_dropped migration (and any after it) goes down and up again over a
/// database holding rows, and its check refuses a negative count.
async fn candidates_dropped_goes_up_and_down(backend: Backend) {
    let (_db, store, job) = migrated_with_a_job(backend).await;
    assert!(column_exists(&store, "result", "candidates_dropped").await);
    let negative = Statement::from_string(
        store.connection().get_database_backend(),
        "UPDATE result SET candidates_dropped = -1",
    );
    let refused = store.connection().execute_raw(negative).await.unwrap_err();
    assert!(!favicon_finder::store::is_transient(&refused), "{refused}");

    // Down to just before migration 5, whatever came after it.
    let after_five = (Migrator::migrations().len() - 4) as u32;
    Migrator::down(store.connection(), Some(after_five))
        .await
        .unwrap();
    assert!(!column_exists(&store, "result", "candidates_dropped").await);
    assert!(!store.migrations_applied().await.unwrap());
    store.migrate().await.unwrap();
    assert!(column_exists(&store, "result", "candidates_dropped").await);
    let rows = store
        .results_page(job.id, &Default::default(), 0, 10)
        .await
        .unwrap();
    assert_eq!(rows.len(), 1, "the rows outlive the column");
    assert_eq!(rows[0].candidates_dropped, 0, "existing rows read 0");
}
both_backends!(candidates_dropped, candidates_dropped_goes_up_and_down);

/// Migration 6 alone goes down and up again over a database holding a key; its hash is
/// unique.
async fn api_keys_go_up_and_down(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = Store::connect(&db.url, 2).await.unwrap();
    store.migrate().await.unwrap();
    let new_key = |hash: &str| favicon_finder::store::NewKey {
        client_id: "acme".into(),
        name: "ci".into(),
        scopes: "read submit".into(),
        hash: hash.into(),
        prefix: "ffk_abcd".into(),
    };
    let hash = "a".repeat(64);
    let key = store.create_api_key(new_key(&hash)).await.unwrap();
    assert_eq!(
        store.api_key_by_hash(&hash).await.unwrap().unwrap().id,
        key.id
    );
    let duplicate = store.create_api_key(new_key(&hash)).await.unwrap_err();
    assert!(!duplicate.is_transient(), "{duplicate}");

    let after_six = (Migrator::migrations().len() - 5) as u32;
    Migrator::down(store.connection(), Some(after_six))
        .await
        .unwrap();
    assert!(!table_exists(&store, "api_key").await);
    assert!(table_exists(&store, "job").await, "older tables stay");
    store.migrate().await.unwrap();
    assert!(table_exists(&store, "api_key").await);
    assert!(store.list_api_keys().await.unwrap().is_empty());
    store.create_api_key(new_key(&hash)).await.unwrap();
}
both_backends!(api_keys, api_keys_go_up_and_down);

/// Migration 7 alone goes down and up again over a job that has an address.
async fn job_source_ip_goes_up_and_down(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = Store::connect(&db.url, 2).await.unwrap();
    store.migrate().await.unwrap();
    let domain = favicon_finder::domain::Domain::parse("a.test").unwrap();
    let ip = "2001:db8::1".parse().unwrap();
    store
        .create_job_from(
            "m",
            Some(ip),
            favicon_finder::model::Priority::Normal,
            &[domain],
            favicon_finder::store::CachePolicy::OFF,
        )
        .await
        .unwrap();
    let since = chrono::Utc::now() - chrono::Duration::hours(1);
    let (jobs, domains, _) = store.address_usage_since(ip, since).await.unwrap();
    assert_eq!((jobs, domains), (1, 1));

    let after_seven = (Migrator::migrations().len() - 6) as u32;
    Migrator::down(store.connection(), Some(after_seven))
        .await
        .unwrap();
    assert!(!column_exists(&store, "job", "source_ip").await);
    assert!(table_exists(&store, "api_key").await, "older tables stay");
    store.migrate().await.unwrap();
    assert!(column_exists(&store, "job", "source_ip").await);
    assert_eq!(store.address_usage_since(ip, since).await.unwrap().0, 0);
    assert_eq!(store.client_usage_since("m", since).await.unwrap().0, 1);
}
both_backends!(job_source_ip, job_source_ip_goes_up_and_down);

/// The icons migration goes down and up again over a database holding rows: the blob table
/// and the result's pointer leave and come back, and the rows outlive them.
async fn icons_goes_up_and_down(backend: Backend) {
    let (_db, store, job) = migrated_with_a_job(backend).await;
    assert!(table_exists(&store, "icon_blob").await);
    assert!(column_exists(&store, "result", "icon_sha256").await);
    let steps = steps_back_to("m20261202_000008_icons");
    Migrator::down(store.connection(), Some(steps))
        .await
        .unwrap();
    assert!(!table_exists(&store, "icon_blob").await);
    assert!(!column_exists(&store, "result", "icon_sha256").await);
    store.migrate().await.unwrap();
    assert!(table_exists(&store, "icon_blob").await);
    let rows = store
        .results_page(job.id, &Default::default(), 0, 10)
        .await
        .unwrap();
    assert_eq!(rows.len(), 1, "the rows outlive the column");
    assert!(column_exists(&store, "result", "icon_sha256").await);
}
both_backends!(icons_migration, icons_goes_up_and_down);
