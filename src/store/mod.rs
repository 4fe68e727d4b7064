//! The database: every query the service makes, and the only place with SQL.
//!
//! The result row is the unit of work, so the queue is the database and PostgreSQL (or the
//! SQLite file) is the only truth. The guarantees, in prose:
//!
//! - **Creation is atomic.** The client, the job and every result row are written in one
//!   transaction; a job either exists with all its rows pending, or not at all.
//! - **Claims never overlap.** A claim stamps `lease_owner`, `lease_until` and `tries + 1` on
//!   due rows in one statement (`FOR UPDATE SKIP LOCKED` on PostgreSQL; SQLite serialises
//!   writers). A row whose lease expired is claimable again by anyone.
//! - **Recording happens exactly once.** An outcome is written only if the row is still
//!   `pending`, still leased by the writer and `tries` still equals the value stamped at claim;
//!   the job's counters move only when that write changed a row, in the same transaction. A
//!   worker that lost its lease therefore changes nothing, and two workers that fetched the same
//!   row cannot count it twice. Job rows are updated in id order so writers cannot deadlock.
//! - **A change is recorded with what saw it.** A fetch's outcome is compared with the
//!   domain's icon state in the transaction that records the fetch (a watch's check when its
//!   job ends, a lookup with its row), so a change and its `icon.changed` deliveries commit
//!   with it or not at all.
//! - **A job's end has its webhook events.** The write that ends a job (or cancels it) queues
//!   one delivery per subscribed endpoint in the same transaction, so a committed end always
//!   has them. A delivery is leased like a row; an attempt is recorded only by the lease's
//!   holder, so one attempt at a time is made and recorded, and a dead worker's delivery is
//!   tried again when its lease ends (at least once: the receiver deduplicates on the id).
//!
//! The parts, all methods of the one [`Store`] handle:
//!
//! - this module: the handle, connecting, migrating, the clock ([`now`]) and which database
//!   errors are worth a retry ([`is_transient`]);
//! - `jobs`: creating a job (with the copy of cached results), reading jobs, client usage;
//! - `results`: pages of a job's results and the CSV stream;
//! - `icons`: stored icon bytes (content-addressed, written once), the newest icon of a
//!   domain, and on-demand lookups recorded as finished jobs;
//! - `keys`: API keys (create, list, revoke, find by hash, last use);
//! - `queue`: claim, heartbeat, release, record and reap, with the partial-index clauses the
//!   queries share with the migrations;
//! - `standing`: where a job stands in the shared queue, and the work left per job, from the
//!   counters of processing jobs;
//! - `webhooks`: webhook endpoints, their deliveries and the log of attempts as the APIs
//!   show them; `webhooks/outbox` the deliverer's side (lease, attempt, retry, disable,
//!   progress events);
//! - `lifecycle`: cancel, delete and purge in batches, the per-domain cache that outlives
//!   purged results, icon blob collection, the maintenance lease, giving space back;
//! - `watches`: watches and their domains, the scheduler's check jobs, the changes a
//!   subscription polls, the purge of history and deleted watches;
//! - `write`: the writes those parts share (creating a job, counting finished rows, cancelling
//!   rows, an outcome's row, icon bytes); below it `changes`: what an outcome says about a
//!   domain's icon (`observe`: its state, a change, the `icon.changed` deliveries) and the
//!   outbox's insert; and `sql`: the SQL text they share (index clauses, the job's rules as
//!   SQL). All are leaves: the parts use them and never one another.
//!
//! Reads answer the model's types ([`crate::model::Job`], [`crate::model::ResultView`]…) and every method
//! fails with a [`StoreError`], never a type of the database library.

mod changes;
mod icons;
pub use icons::Served;
mod jobs;
mod keys;
mod lifecycle;
mod queue;
mod results;
mod sql;
mod standing;
mod watches;
mod webhooks;
mod write;

pub use crate::model::CachePolicy;
pub use jobs::Usage;
pub use keys::NewKey;
pub use lifecycle::Purged;
pub use queue::{Claimed, Disposition, JobUpdate, Recorded};
pub use results::EXPORT_HOLD;
pub use webhooks::{AttemptOutcome, AttemptRecord, ClaimedDelivery, StoredEndpoint};
pub use write::CANCELLED_MESSAGE;

use chrono::{DateTime, SubsecRound, Utc};
use migration::{Migrator, MigratorTrait};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, DbErr, Statement,
    TransactionTrait,
};
use std::time::Duration;

/// The PostgreSQL advisory lock key that serialises migrations across processes (any constant
/// this database's other users do not take; it spells "favicon" in ASCII).
const MIGRATION_LOCK: i64 = 0x66_6176_6963_6f6e;

/// The database handle with the queries the service needs.
#[derive(Clone, Debug)]
pub struct Store {
    db: DatabaseConnection,
}

/// Why the store could not answer: the database refused or could not be reached.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct StoreError(#[from] DbErr);

/// The store's answer.
pub type StoreResult<T> = Result<T, StoreError>;

impl StoreError {
    /// Whether the same call may succeed later (see [`is_transient`]).
    pub fn is_transient(&self) -> bool {
        is_transient(&self.0)
    }
}

/// A store failure is the service's own: an internal error, logged with its cause.
impl From<StoreError> for crate::error::AppError {
    fn from(err: StoreError) -> Self {
        Self::Internal(err.into())
    }
}

/// Whether a database error may go away by itself (connection lost, pool exhausted, timeout,
/// lock contention), so the same write should be tried again later. Errors the database
/// raised about the data itself (bad encoding, out of range, constraint violated, too big)
/// will not change on retry.
pub fn is_transient(err: &DbErr) -> bool {
    use sea_orm::sqlx::Error as Sqlx;
    let sqlx = match err {
        DbErr::Conn(sea_orm::RuntimeErr::SqlxError(e))
        | DbErr::Exec(sea_orm::RuntimeErr::SqlxError(e))
        | DbErr::Query(sea_orm::RuntimeErr::SqlxError(e)) => e,
        // A guarded write that must change one row and changed none: the store's own check of
        // the data, which a retry meets again.
        DbErr::Json(_) | DbErr::Type(_) | DbErr::RecordNotUpdated => return false,
        _ => return true,
    };
    match &**sqlx {
        Sqlx::Database(db) => {
            if !matches!(db.kind(), sea_orm::sqlx::error::ErrorKind::Other) {
                // Unique, foreign key, not-null or check violation.
                return false;
            }
            let code = db.code().unwrap_or_default();
            match db.try_downcast_ref::<sea_orm::sqlx::postgres::PgDatabaseError>() {
                // SQLSTATE classes: 22 data exception (invalid encoding, out of range),
                // 23 integrity constraint, 54 program limit (value too large).
                Some(_) => !matches!(code.get(..2), Some("22" | "23" | "54")),
                // SQLite primary codes (the low byte of extended ones): TOOBIG 18,
                // CONSTRAINT 19, MISMATCH 20, RANGE 25.
                None => !matches!(code.parse::<i32>().map(|c| c & 0xff), Ok(18 | 19 | 20 | 25)),
            }
        }
        Sqlx::Encode(_) | Sqlx::TypeNotFound { .. } | Sqlx::ColumnNotFound(_) => false,
        _ => true,
    }
}

/// A query's single integer answer (the first column of the first row; 0 when none).
pub(crate) async fn number(db: &impl ConnectionTrait, sql: &str) -> Result<i64, DbErr> {
    let row = db
        .query_one_raw(Statement::from_string(db.get_database_backend(), sql))
        .await?;
    match row {
        Some(row) => row.try_get_by_index::<i64>(0),
        None => Ok(0),
    }
}

/// Milliseconds are plenty and keep SQLite's text timestamps short and comparable.
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(3)
}

/// The bytes an SQLite WAL is cut back to after a checkpoint (SQLite's `journal_size_limit`).
pub const WAL_SIZE_LIMIT: u64 = 16 << 20;

impl Store {
    /// Connects to SQLite or PostgreSQL, chosen by the URL's scheme.
    pub async fn connect(url: &str, pool_size: u32) -> anyhow::Result<Self> {
        let mut options = ConnectOptions::new(url.to_owned());
        options
            .max_connections(pool_size)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(10))
            .sqlx_logging(false)
            .map_sqlx_sqlite_opts(|opts| {
                // WAL lets readers (pages, CSV) run beside the single writer; the busy timeout
                // makes concurrent writers wait for the lock rather than fail.
                // Incremental auto-vacuum lets purges give pages back (`reclaim_space`); it
                // must be set before the journal mode and before any table exists. The WAL
                // keeps the size it once grew to unless limited: a purge writes every page it
                // frees through it, so without the limit the WAL would hold what the file
                // gave back.
                opts.auto_vacuum(sea_orm::sqlx::sqlite::SqliteAutoVacuum::Incremental)
                    .journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
                    .pragma("journal_size_limit", WAL_SIZE_LIMIT.to_string())
                    .synchronous(sea_orm::sqlx::sqlite::SqliteSynchronous::Normal)
                    .busy_timeout(Duration::from_secs(30))
                    .foreign_keys(true)
            });
        let db = Database::connect(options).await.map_err(|e| {
            anyhow::anyhow!(
                "cannot connect to the database at {}: {e}",
                crate::redact::redact_url(url)
            )
        })?;
        let store = Self { db };
        store.ensure_incremental_vacuum().await?;
        Ok(store)
    }

    /// The underlying connection, for migrations and tests.
    pub fn connection(&self) -> &DatabaseConnection {
        &self.db
    }

    fn backend(&self) -> DbBackend {
        self.db.get_database_backend()
    }

    /// Applies pending migrations.
    ///
    /// On PostgreSQL the processes of a fleet start together and each migrates at start; run
    /// at once on a fresh database they would all create the schema and all but one fail on
    /// duplicate keys. A transaction-scoped advisory lock makes them take turns: the first
    /// migrates, the others then find nothing pending. (SQLite is one process.)
    pub async fn migrate(&self) -> anyhow::Result<()> {
        match self.backend() {
            DbBackend::Postgres => {
                let txn = self.db.begin().await?;
                txn.execute_raw(Statement::from_string(
                    DbBackend::Postgres,
                    format!("SELECT pg_advisory_xact_lock({MIGRATION_LOCK})"),
                ))
                .await?;
                Migrator::up(&txn, None).await?;
                txn.commit().await?;
            }
            _ => Migrator::up(&self.db, None).await?,
        }
        Ok(())
    }

    /// Whether every migration this build knows has been applied.
    pub async fn migrations_applied(&self) -> StoreResult<bool> {
        Ok(Migrator::get_pending_migrations(&self.db).await?.is_empty())
    }

    /// A cheap round trip, for readiness checks.
    pub async fn ping(&self) -> StoreResult<()> {
        Ok(self.db.ping().await?)
    }
}

#[cfg(test)]
mod tests;
