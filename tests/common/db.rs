//! The one way a test makes a PostgreSQL database of its own, shared by both test binaries.

use sea_orm::{ConnectionTrait, Database, DbBackend, Statement};

/// A new, empty database `ff_test_<uuid>` on the server `admin_url` points at: its name and
/// its URL. CI drops every `ff_test_%` database before a run.
pub async fn create_postgres_database(admin_url: &str) -> (String, String) {
    let admin = Database::connect(admin_url).await.unwrap();
    let name = format!("ff_test_{}", uuid::Uuid::new_v4().simple());
    admin
        .execute_raw(Statement::from_string(
            DbBackend::Postgres,
            format!("CREATE DATABASE {name}"),
        ))
        .await
        .unwrap();
    admin.close().await.unwrap();
    let mut url = url::Url::parse(admin_url).unwrap();
    url.set_path(&format!("/{name}"));
    (name, url.to_string())
}
