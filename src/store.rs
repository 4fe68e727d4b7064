//! Every database query: creating jobs, the work queue (claim, record, heartbeat, release,
//! reap), counters, pages and the CSV stream.
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

use crate::domain::Domain;
use crate::entities::{client, job, result};
use crate::entities::{job::JobStatus, result::ResultStatus};
use crate::finder::{Candidate, ErrorCategory, FindOutcome};
use chrono::{DateTime, SubsecRound, Utc};
use futures::Stream;
use migration::{Migrator, MigratorTrait};
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectOptions, ConnectionTrait, Database, DatabaseConnection,
    DbBackend, DbErr, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, Statement,
    TransactionTrait,
};
use std::collections::BTreeMap;
use std::time::Duration;
use uuid::Uuid;

/// Result rows per insert statement: each statement binds a handful of arrays (or one JSON text
/// on SQLite), so this only bounds the statement's size, not its parameter count.
const INSERT_CHUNK: usize = 10_000;
/// The PostgreSQL advisory lock key that serialises migrations across processes (any constant
/// this database's other users do not take; it spells "favicon" in ASCII).
const MIGRATION_LOCK: i64 = 0x66_6176_6963_6f6e;
/// The pending-rows filter as a literal: the claim index is partial on exactly this clause
/// (migration 4), and a bound parameter in its place would not match it.
const PENDING: &str = "status = 'pending'";
/// Rows per read when streaming a job's results. Larger chunks were no faster once only the
/// exported columns are read, and 5,000 grew the RSS by 26 MB instead of 10 (BENCHMARKS.md).
pub const STREAM_CHUNK: usize = 1_000;
/// What a CSV row costs besides its text columns (status, numbers, timestamp, separators),
/// counted against the export's byte budget.
const ROW_FIXED_BYTES: i64 = 64;

/// The database handle with the queries the service needs.
#[derive(Clone, Debug)]
pub struct Store {
    db: DatabaseConnection,
}

/// How a new job may reuse earlier jobs' results instead of fetching (the cross-job cache).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CachePolicy {
    /// Reuse a success fetched at most this long ago; zero turns the cache off.
    pub max_age: Duration,
    /// Reuse a permanent failure (no such domain, no icon, blocked…) fetched at most this long
    /// ago. Transient failures are never reused.
    pub failure_max_age: Duration,
}

impl CachePolicy {
    /// Always fetch.
    pub const OFF: Self = Self {
        max_age: Duration::ZERO,
        failure_max_age: Duration::ZERO,
    };
}

/// A job with its client's name, as the API shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct JobView {
    /// The job row.
    pub job: job::Model,
    /// The caller's `client_id`.
    pub client_name: String,
}

/// The columns of one result that the CSV export writes.
#[derive(Clone, Debug, PartialEq, sea_orm::FromQueryResult)]
pub struct ExportRow {
    /// Place in the job, for paging through it.
    pub position: i32,
    /// The domain.
    pub domain: String,
    /// Outcome so far.
    pub status: ResultStatus,
    /// The chosen icon, on success.
    pub favicon_url: Option<String>,
    /// Human-readable failure.
    pub error: Option<String>,
    /// Tries started so far.
    pub tries: i32,
    /// Failure category code.
    pub error_code: Option<String>,
    /// The home page after redirects.
    pub final_url: Option<String>,
    /// Sniffed mime of the chosen icon.
    pub mime: Option<String>,
    /// Real width of the chosen icon.
    pub width: Option<i32>,
    /// Real height of the chosen icon.
    pub height: Option<i32>,
    /// When the outcome was produced.
    pub fetched_at: Option<DateTime<Utc>>,
    /// Copied from an earlier job's result.
    pub cached: bool,
}

/// A row a worker has claimed and must now find.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claimed {
    /// The result row.
    pub id: Uuid,
    /// Its job.
    pub job_id: Uuid,
    /// The domain to find.
    pub domain: String,
    /// `tries` as stamped by the claim: the guard for recording.
    pub tries: i32,
    /// The lease owner stamped by the claim: the other half of the guard.
    pub owner: Uuid,
}

/// What to write for a claimed row.
#[derive(Clone, Debug)]
pub enum Disposition {
    /// The row is finished with this outcome.
    Finish(FindOutcome),
    /// A transient failure: put the row back, due again at `run_at`.
    Retry {
        /// When the row may be claimed again.
        run_at: DateTime<Utc>,
        /// The failure category of this try.
        category: ErrorCategory,
        /// The failure message of this try.
        message: String,
    },
}

/// One domain that just finished, as carried by progress events.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FinishedDomain {
    /// The domain.
    pub domain: String,
    /// `success` or `failed`.
    pub status: String,
    /// The icon, on success.
    pub favicon_url: Option<String>,
    /// The failure category, on failure.
    pub error_code: Option<String>,
}

/// What [`Store::record`] wrote.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Recorded {
    /// The jobs whose counters moved, with the domains that moved them.
    pub updates: Vec<JobUpdate>,
    /// Rows the database refused for good, each finished as `failed` / `internal` instead.
    pub refused: Vec<Claimed>,
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
        DbErr::Json(_) | DbErr::Type(_) => return false,
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

/// A retry message cleaned like any finished outcome.
fn clean_disposition(disposition: Disposition) -> Disposition {
    match disposition {
        Disposition::Finish(outcome) => Disposition::Finish(crate::clean::outcome(outcome)),
        Disposition::Retry {
            run_at,
            category,
            message,
        } => Disposition::Retry {
            run_at,
            category,
            message: crate::clean::text(&message, crate::clean::MAX_MESSAGE_BYTES),
        },
    }
}

/// A job whose counters a record moved, with the domains that moved them.
#[derive(Clone, Debug, PartialEq)]
pub struct JobUpdate {
    /// The job after the write.
    pub job: job::Model,
    /// The domains that finished in that write, in no particular order.
    pub finished: Vec<FinishedDomain>,
}

/// Milliseconds are plenty and keep SQLite's text timestamps short and comparable.
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(3)
}

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
                opts.journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
                    .synchronous(sea_orm::sqlx::sqlite::SqliteSynchronous::Normal)
                    .busy_timeout(Duration::from_secs(30))
                    .foreign_keys(true)
            });
        let db = Database::connect(options).await.map_err(|e| {
            anyhow::anyhow!(
                "cannot connect to the database at {}: {e}",
                crate::config::redact_url(url)
            )
        })?;
        Ok(Self { db })
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
    pub async fn migrations_applied(&self) -> Result<bool, DbErr> {
        Ok(Migrator::get_pending_migrations(&self.db).await?.is_empty())
    }

    /// A cheap round trip, for readiness checks.
    pub async fn ping(&self) -> Result<(), DbErr> {
        self.db.ping().await
    }

    /// Creates a job with one row per domain, all in one transaction: a domain with a recent
    /// enough result in an earlier job (see [`CachePolicy`]) gets a finished copy of it
    /// (`cached`), every other one a `pending` row for the workers.
    ///
    /// `domains` must already be distinct; their order becomes the rows' `position`.
    pub async fn create_job(
        &self,
        client_name: &str,
        domains: &[Domain],
        cache: CachePolicy,
    ) -> Result<JobView, DbErr> {
        let now = now();
        let txn = self.db.begin().await?;
        let inserted = client::Entity::insert(client::ActiveModel {
            id: Set(Uuid::now_v7()),
            client_id: Set(client_name.to_owned()),
            created_at: Set(now),
            updated_at: Set(now),
        })
        .on_conflict(
            OnConflict::column(client::Column::ClientId)
                .do_nothing()
                .to_owned(),
        )
        .exec(&txn)
        .await;
        match inserted {
            Ok(_) | Err(DbErr::RecordNotInserted) => {}
            Err(e) => return Err(e),
        }
        let client = client::Entity::find()
            .filter(client::Column::ClientId.eq(client_name))
            .one(&txn)
            .await?
            .ok_or_else(|| DbErr::RecordNotFound("client just upserted".into()))?;
        let total = domains.len() as i32;
        let mut job = job::Model {
            id: Uuid::now_v7(),
            client_id: client.id,
            status: JobStatus::Processing,
            total,
            completed: 0,
            failed: 0,
            created_at: now,
            updated_at: now,
        };
        job::Entity::insert(job::ActiveModel::from(job.clone()))
            .exec_without_returning(&txn)
            .await?;
        let reuse = Cutoffs::new(cache, now);
        for (n, chunk) in domains.chunks(INSERT_CHUNK).enumerate() {
            let first = (n * INSERT_CHUNK) as i32;
            txn.execute_raw(insert_results(
                self.backend(),
                job.id,
                now,
                reuse,
                first,
                chunk,
            ))
            .await?;
        }
        if reuse.is_some() {
            let copied = txn
                .query_all_raw(Statement::from_sql_and_values(
                    self.backend(),
                    "SELECT status, COUNT(*) AS n FROM result \
                     WHERE job_id = $1 AND cached = true GROUP BY status",
                    [job.id.into()],
                ))
                .await?;
            for row in copied {
                let n = row.try_get::<i64>("", "n")? as i32;
                match row.try_get::<ResultStatus>("", "status")? {
                    ResultStatus::Success => job.completed = n,
                    _ => job.failed += n,
                }
            }
        }
        if job.completed + job.failed > 0 || total == 0 {
            if job.completed + job.failed == total {
                job.status = if job.completed == 0 && total > 0 {
                    JobStatus::Failed
                } else {
                    JobStatus::Completed
                };
            }
            job::Entity::update_many()
                .col_expr(job::Column::Status, Expr::value(job.status))
                .col_expr(job::Column::Completed, Expr::value(job.completed))
                .col_expr(job::Column::Failed, Expr::value(job.failed))
                .filter(job::Column::Id.eq(job.id))
                .exec(&txn)
                .await?;
        }
        txn.commit().await?;
        Ok(JobView {
            job,
            client_name: client.client_id,
        })
    }

    /// One job with its client's name.
    pub async fn job(&self, id: Uuid) -> Result<Option<JobView>, DbErr> {
        let found = job::Entity::find_by_id(id)
            .find_also_related(client::Entity)
            .one(&self.db)
            .await?;
        Ok(found.map(|(job, client)| JobView {
            job,
            client_name: client.map(|c| c.client_id).unwrap_or_default(),
        }))
    }

    /// A client's jobs, newest first, one page of them, and how many there are in all.
    pub async fn jobs_for_client(
        &self,
        client_name: &str,
        page: u64,
        per_page: u64,
    ) -> Result<(Vec<JobView>, u64), DbErr> {
        let Some(client) = client::Entity::find()
            .filter(client::Column::ClientId.eq(client_name))
            .one(&self.db)
            .await?
        else {
            return Ok((Vec::new(), 0));
        };
        let query = job::Entity::find()
            .filter(job::Column::ClientId.eq(client.id))
            .order_by_desc(job::Column::CreatedAt)
            .order_by_desc(job::Column::Id);
        let total = query.clone().count(&self.db).await?;
        let jobs = query
            .offset((page - 1) * per_page)
            .limit(per_page)
            .all(&self.db)
            .await?;
        Ok((
            jobs.into_iter()
                .map(|job| JobView {
                    job,
                    client_name: client.client_id.clone(),
                })
                .collect(),
            total,
        ))
    }

    /// One page of a job's results in submission order (`page` starts at 1).
    ///
    /// Positions are dense, so a page is a range of positions: the cost does not grow with
    /// the page number the way `OFFSET` does.
    pub async fn results_page(
        &self,
        job_id: Uuid,
        page: u64,
        per_page: u64,
    ) -> Result<Vec<result::Model>, DbErr> {
        let start = (page - 1).saturating_mul(per_page);
        if start >= i32::MAX as u64 {
            return Ok(Vec::new());
        }
        self.results_from(job_id, start as i32, per_page).await
    }

    async fn results_from(
        &self,
        job_id: Uuid,
        start: i32,
        limit: u64,
    ) -> Result<Vec<result::Model>, DbErr> {
        result::Entity::find()
            .filter(result::Column::JobId.eq(job_id))
            .filter(result::Column::Position.gte(start))
            .order_by_asc(result::Column::Position)
            .limit(limit)
            .all(&self.db)
            .await
    }

    /// Domains of a job finished at or after `since`, at most `limit`: what a subscriber that
    /// missed events still has to hear about.
    pub async fn finished_since(
        &self,
        job_id: Uuid,
        since: DateTime<Utc>,
        limit: u64,
    ) -> Result<Vec<FinishedDomain>, DbErr> {
        let rows = result::Entity::find()
            .filter(result::Column::JobId.eq(job_id))
            .filter(result::Column::Status.ne(ResultStatus::Pending))
            .filter(result::Column::UpdatedAt.gte(since))
            .order_by_asc(result::Column::UpdatedAt)
            .limit(limit)
            .all(&self.db)
            .await?;
        Ok(rows
            .into_iter()
            .map(|row| FinishedDomain {
                domain: row.domain,
                status: row.status.as_str().to_owned(),
                favicon_url: row.favicon_url,
                error_code: row.error_code,
            })
            .collect())
    }

    /// A client's jobs created at or after `since`: (count, domains, the oldest one's time).
    pub async fn client_usage_since(
        &self,
        client_name: &str,
        since: DateTime<Utc>,
    ) -> Result<(u64, u64, Option<DateTime<Utc>>), DbErr> {
        let Some(client) = client::Entity::find()
            .filter(client::Column::ClientId.eq(client_name))
            .one(&self.db)
            .await?
        else {
            return Ok((0, 0, None));
        };
        // Bounded by the rate limit itself: a client has at most that many jobs in the window.
        let jobs = job::Entity::find()
            .filter(job::Column::ClientId.eq(client.id))
            .filter(job::Column::CreatedAt.gte(since))
            .order_by_asc(job::Column::CreatedAt)
            .all(&self.db)
            .await?;
        let domains = jobs
            .iter()
            .map(|j| u64::try_from(j.total).unwrap_or(0))
            .sum();
        Ok((
            jobs.len() as u64,
            domains,
            jobs.first().map(|j| j.created_at),
        ))
    }

    /// How many jobs are in each status.
    pub async fn job_status_counts(&self) -> Result<Vec<(String, i64)>, DbErr> {
        let backend = self.backend();
        let rows = self
            .db
            .query_all_raw(Statement::from_string(
                backend,
                "SELECT status, COUNT(*) AS n FROM job GROUP BY status",
            ))
            .await?;
        rows.into_iter()
            .map(|row| Ok((row.try_get("", "status")?, row.try_get("", "n")?)))
            .collect()
    }

    /// Unfinished rows: (waiting to be claimed, leased by a worker now).
    pub async fn queue_depth(&self) -> Result<(i64, i64), DbErr> {
        let now = now();
        let pending = result::Entity::find().filter(Expr::cust(PENDING));
        let leased = pending
            .clone()
            .filter(result::Column::LeaseUntil.gte(now))
            .count(&self.db)
            .await?;
        let all = pending.count(&self.db).await?;
        Ok((all as i64 - leased as i64, leased as i64))
    }

    /// Streams a job's results in submission order, as chunks of at most [`STREAM_CHUNK`] rows
    /// and about `max_bytes` of text: a chunk ends before the row that would take it past
    /// `max_bytes` (every chunk holds at least one row), so memory stays bounded however large
    /// the rows are.
    pub fn results_stream(
        &self,
        job_id: Uuid,
        max_bytes: usize,
    ) -> impl Stream<Item = Result<Vec<ExportRow>, DbErr>> + Send + 'static {
        let store = self.clone();
        let backend = self.backend();
        // Only the exported columns: decoding the candidates JSON of every row cost more than
        // writing the CSV (see BENCHMARKS.md). The database sums the rows' sizes, so rows
        // past the byte budget are never sent to this process; the first row always is
        // (`upto = size`), so the export moves on however large a row is.
        let octets = |column: &str| match backend {
            DbBackend::Postgres => format!("COALESCE(OCTET_LENGTH({column}), 0)"),
            _ => format!("COALESCE(LENGTH(CAST({column} AS BLOB)), 0)"),
        };
        let size = format!(
            "({} + {} + {} + {} + {} + {} + {ROW_FIXED_BYTES})",
            octets("domain"),
            octets("favicon_url"),
            octets("error"),
            octets("error_code"),
            octets("final_url"),
            octets("mime"),
        );
        let columns = "position, domain, status, favicon_url, error, tries, error_code, \
                       final_url, mime, width, height, fetched_at, cached";
        let [p1, p2, p3, p4] = match backend {
            DbBackend::Postgres => ["$1", "$2", "$3", "$4"],
            _ => ["?", "?", "?", "?"],
        };
        let sql = format!(
            "SELECT {columns} FROM (\
               SELECT {columns}, {size} AS size, \
                 SUM({size}) OVER (ORDER BY position) AS upto \
               FROM (SELECT {columns} FROM result WHERE job_id = {p1} AND position >= {p2} \
                 ORDER BY position LIMIT {p3}) AS page\
             ) AS sized WHERE upto <= {p4} OR upto = size ORDER BY position"
        );
        let budget = i64::try_from(max_bytes).unwrap_or(i64::MAX);
        futures::stream::try_unfold(0i32, move |next| {
            let store = store.clone();
            let sql = sql.clone();
            async move {
                let statement = Statement::from_sql_and_values(
                    backend,
                    sql,
                    [
                        job_id.into(),
                        next.into(),
                        (STREAM_CHUNK as i64).into(),
                        budget.into(),
                    ],
                );
                let rows = <ExportRow as sea_orm::FromQueryResult>::find_by_statement(statement)
                    .all(&store.db)
                    .await?;
                match rows.last() {
                    None => Ok(None),
                    Some(last) => {
                        let after = last.position + 1;
                        Ok(Some((rows, after)))
                    }
                }
            }
        })
    }

    /// Claims up to `limit` due rows for `owner`, stamping a lease and counting a try.
    ///
    /// Rows whose tries are used up are not claimed; [`Store::reap_exhausted`] finishes them.
    pub async fn claim(
        &self,
        owner: Uuid,
        limit: usize,
        lease: Duration,
        max_tries: u32,
    ) -> Result<Vec<Claimed>, DbErr> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let now = now();
        let lease_until = now + chrono::Duration::from_std(lease).unwrap_or_default();
        let backend = self.backend();
        // The two statements differ only in the row lock: SQLite has no SKIP LOCKED and needs
        // none, since it runs one writer at a time.
        let sql = match backend {
            DbBackend::Postgres => {
                "UPDATE result SET lease_owner = $1, lease_until = $2, tries = tries + 1, updated_at = $3 \
                 WHERE id IN (SELECT id FROM result \
                   WHERE status = 'pending' AND run_at <= $3 \
                     AND (lease_until IS NULL OR lease_until < $3) AND tries < $4 \
                   ORDER BY run_at, position LIMIT $5 FOR UPDATE SKIP LOCKED) \
                 RETURNING id, job_id, domain, tries"
            }
            _ => {
                "UPDATE result SET lease_owner = $1, lease_until = $2, tries = tries + 1, updated_at = $3 \
                 WHERE id IN (SELECT id FROM result \
                   WHERE status = 'pending' AND run_at <= $3 \
                     AND (lease_until IS NULL OR lease_until < $3) AND tries < $4 \
                   ORDER BY run_at, position LIMIT $5) \
                 RETURNING id, job_id, domain, tries"
            }
        };
        let rows = self
            .db
            .query_all_raw(Statement::from_sql_and_values(
                backend,
                sql,
                [
                    owner.into(),
                    lease_until.into(),
                    now.into(),
                    (max_tries as i32).into(),
                    (limit as i64).into(),
                ],
            ))
            .await?;
        rows.into_iter()
            .map(|row| {
                Ok(Claimed {
                    id: row.try_get("", "id")?,
                    job_id: row.try_get("", "job_id")?,
                    domain: row.try_get("", "domain")?,
                    tries: row.try_get("", "tries")?,
                    owner,
                })
            })
            .collect()
    }

    /// Extends the leases of every row `owner` still holds.
    pub async fn heartbeat(&self, owner: Uuid, lease: Duration) -> Result<u64, DbErr> {
        let now = now();
        let res = result::Entity::update_many()
            .col_expr(
                result::Column::LeaseUntil,
                Expr::value(now + chrono::Duration::from_std(lease).unwrap_or_default()),
            )
            .filter(result::Column::LeaseOwner.eq(owner))
            .filter(result::Column::Status.eq(ResultStatus::Pending))
            .exec(&self.db)
            .await?;
        Ok(res.rows_affected)
    }

    /// Gives back claimed rows that were not finished, claimable at once; their try is not
    /// counted.
    pub async fn release(&self, claims: &[Claimed]) -> Result<u64, DbErr> {
        let mut released = 0;
        for claim in claims {
            let res = unleased()
                .col_expr(result::Column::Tries, Expr::value(claim.tries - 1))
                .filter(guard(claim))
                .exec(&self.db)
                .await?;
            released += res.rows_affected;
        }
        Ok(released)
    }

    /// Writes outcomes for claimed rows and moves the job counters, in one transaction when
    /// the database takes every row.
    ///
    /// Every string taken from the web is cleaned first ([`crate::clean::outcome`]). A row the
    /// database still refuses for a reason that will not change (a data or constraint error,
    /// see [`is_transient`]) must not hold back the rest: the batch is split in halves until
    /// the refused row is alone, that row is finished as `failed` / `internal` with a clean
    /// message, and every other row lands. A transient error (connection, pool, timeout) is
    /// returned for the caller to retry the whole batch; rows already written by then are
    /// guarded, so the retry cannot count them twice.
    pub async fn record(&self, batch: Vec<(Claimed, Disposition)>) -> Result<Recorded, DbErr> {
        let batch = batch
            .into_iter()
            .map(|(claim, disposition)| (claim, clean_disposition(disposition)))
            .collect();
        self.record_splitting(batch).await
    }

    /// [`Store::record`] without cleaning: only for tests that need a row the database
    /// really refuses, to prove it cannot block its batch.
    #[doc(hidden)]
    pub async fn record_uncleaned(
        &self,
        batch: Vec<(Claimed, Disposition)>,
    ) -> Result<Recorded, DbErr> {
        self.record_splitting(batch).await
    }

    async fn record_splitting(
        &self,
        batch: Vec<(Claimed, Disposition)>,
    ) -> Result<Recorded, DbErr> {
        let mut recorded = Recorded::default();
        // Parts still to write, the next one last: halves are pushed second-half first so
        // rows are written in their batch order.
        let mut parts = vec![batch];
        while let Some(part) = parts.pop() {
            let err = match self.write_batch(&part).await {
                Ok(updates) => {
                    recorded.updates.extend(updates);
                    continue;
                }
                Err(err) if is_transient(&err) => return Err(err),
                Err(err) => err,
            };
            if part.len() > 1 {
                let mut first = part;
                let second = first.split_off(first.len() / 2);
                parts.push(second);
                parts.push(first);
                continue;
            }
            let Some((claim, _)) = part.into_iter().next() else {
                continue;
            };
            let reason = crate::clean::text(&err.to_string(), crate::clean::MAX_MESSAGE_BYTES);
            tracing::error!(
                job_id = %claim.job_id,
                domain = %claim.domain,
                error = %reason,
                "the database refused a result row; recording it as failed"
            );
            let message = crate::clean::text(
                &format!("the outcome could not be stored: {reason}"),
                crate::clean::MAX_MESSAGE_BYTES,
            );
            let stand_in = Disposition::Finish(Err(crate::finder::FindError::new(
                ErrorCategory::Internal,
                message,
            )));
            match self.write_batch(&[(claim.clone(), stand_in)]).await {
                Ok(updates) => recorded.updates.extend(updates),
                Err(err) if is_transient(&err) => return Err(err),
                // Nothing of the site is left in the stand-in, so this is not expected; the
                // row keeps its lease, which expires, and it is fetched again.
                Err(err) => tracing::error!(
                    job_id = %claim.job_id,
                    domain = %claim.domain,
                    error = %err,
                    "the database refused even the failure record of a row"
                ),
            }
            recorded.refused.push(claim);
        }
        Ok(recorded)
    }

    /// Writes one batch in one transaction; returns the jobs whose counters moved, after the
    /// write, in job id order.
    async fn write_batch(&self, batch: &[(Claimed, Disposition)]) -> Result<Vec<JobUpdate>, DbErr> {
        let now = now();
        let txn = self.db.begin().await?;
        // Per job: (newly completed, newly failed, finished domains).
        let mut moved: BTreeMap<Uuid, (i32, i32, Vec<FinishedDomain>)> = BTreeMap::new();
        for (claim, disposition) in batch {
            let claim = claim.clone();
            let mut update = unleased().col_expr(result::Column::UpdatedAt, Expr::value(now));
            let finished = match disposition {
                Disposition::Retry {
                    run_at,
                    category,
                    message,
                } => {
                    update = update
                        .col_expr(result::Column::RunAt, Expr::value(*run_at))
                        .col_expr(result::Column::ErrorCode, Expr::value(category.as_str()))
                        .col_expr(result::Column::Error, Expr::value(message.clone()));
                    None
                }
                Disposition::Finish(outcome) => {
                    let row = FinishedRow::from_outcome(outcome);
                    update = update
                        .col_expr(result::Column::Status, Expr::value(row.status))
                        .col_expr(
                            result::Column::FaviconUrl,
                            Expr::value(row.favicon_url.clone()),
                        )
                        .col_expr(result::Column::Error, Expr::value(row.error))
                        .col_expr(
                            result::Column::ErrorCode,
                            Expr::value(row.error_code.clone()),
                        )
                        .col_expr(result::Column::FinalUrl, Expr::value(row.final_url))
                        .col_expr(result::Column::Mime, Expr::value(row.mime))
                        .col_expr(result::Column::Width, Expr::value(row.width))
                        .col_expr(result::Column::Height, Expr::value(row.height))
                        .col_expr(result::Column::Candidates, Expr::value(row.candidates))
                        .col_expr(
                            result::Column::CandidatesDropped,
                            Expr::value(row.candidates_dropped),
                        )
                        .col_expr(result::Column::FetchedAt, Expr::value(Some(now)));
                    Some(FinishedDomain {
                        domain: claim.domain.clone(),
                        status: row.status.as_str().to_owned(),
                        favicon_url: row.favicon_url,
                        error_code: row.error_code,
                    })
                }
            };
            let res = update.filter(guard(&claim)).exec(&txn).await?;
            if let (1, Some(done)) = (res.rows_affected, finished) {
                let entry = moved.entry(claim.job_id).or_default();
                if done.status == ResultStatus::Success.as_str() {
                    entry.0 += 1;
                } else {
                    entry.1 += 1;
                }
                entry.2.push(done);
            }
        }
        let mut updates = Vec::with_capacity(moved.len());
        for (job_id, (completed, failed, finished)) in moved {
            job::Entity::update_many()
                .col_expr(
                    job::Column::Completed,
                    Expr::col(job::Column::Completed).add(completed),
                )
                .col_expr(
                    job::Column::Failed,
                    Expr::col(job::Column::Failed).add(failed),
                )
                .col_expr(job::Column::UpdatedAt, Expr::value(now))
                .filter(job::Column::Id.eq(job_id))
                .exec(&txn)
                .await?;
            // The write that brings completed + failed to total decides the final status.
            job::Entity::update_many()
                .col_expr(
                    job::Column::Status,
                    Expr::cust("CASE WHEN completed = 0 THEN 'failed' ELSE 'completed' END"),
                )
                .filter(job::Column::Id.eq(job_id))
                .filter(job::Column::Status.eq(JobStatus::Processing))
                .filter(Expr::cust("completed + failed >= total"))
                .exec(&txn)
                .await?;
            if let Some(job) = job::Entity::find_by_id(job_id).one(&txn).await? {
                updates.push(JobUpdate { job, finished });
            }
        }
        txn.commit().await?;
        Ok(updates)
    }

    /// Finishes as `failed` the rows whose tries are used up and whose lease expired (their
    /// worker died or hung on every try), so no domain holds its job open forever.
    pub async fn reap_exhausted(&self, max_tries: u32) -> Result<Vec<JobUpdate>, DbErr> {
        let now = now();
        let stuck = result::Entity::find()
            .filter(Expr::cust(PENDING))
            .filter(result::Column::Tries.gte(max_tries as i32))
            .filter(result::Column::LeaseUntil.lt(now))
            .limit(500)
            .all(&self.db)
            .await?;
        if stuck.is_empty() {
            return Ok(Vec::new());
        }
        let batch = stuck
            .into_iter()
            .filter_map(|row| {
                let owner = row.lease_owner?;
                let message = format!(
                    "gave up after {} tries: the worker handling it stopped or ran past its lease",
                    row.tries
                );
                Some((
                    Claimed {
                        id: row.id,
                        job_id: row.job_id,
                        domain: row.domain,
                        tries: row.tries,
                        owner,
                    },
                    Disposition::Finish(Err(crate::finder::FindError::new(
                        ErrorCategory::Internal,
                        message,
                    ))),
                ))
            })
            .collect();
        Ok(self.record(batch).await?.updates)
    }
}

/// The cutoffs of a [`CachePolicy`] at one moment; `None` when the cache is off.
#[derive(Clone, Copy, Debug)]
struct Cutoffs {
    /// A success fetched at or after this may be reused.
    success: DateTime<Utc>,
    /// A permanent failure fetched at or after this may be reused.
    failure: DateTime<Utc>,
}

/// What a new job may reuse, if anything.
type Reuse = Option<Cutoffs>;

impl Cutoffs {
    fn new(cache: CachePolicy, now: DateTime<Utc>) -> Reuse {
        if cache.max_age.is_zero() {
            return None;
        }
        let age =
            |d: Duration| now - chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX);
        Some(Self {
            success: age(cache.max_age),
            // failure_max_age ≤ max_age, so the success cutoff is the older one and bounds
            // the search.
            failure: age(cache.failure_max_age.min(cache.max_age)),
        })
    }
}

/// One statement that inserts `domains` into job `job_id` from position `first` on: a copy of
/// each domain's reusable earlier result (the cross-job cache, when `reuse` allows it), a
/// `pending` row for every other domain.
///
/// The rows travel as two arrays (PostgreSQL) or one JSON text (SQLite) rather than as bound
/// values per column per row, and cache hits are found and copied inside the database: binding
/// values, and reading earlier rows out only to write them back, dominated creating a job (see
/// BENCHMARKS.md).
fn insert_results(
    backend: DbBackend,
    job_id: Uuid,
    now: DateTime<Utc>,
    reuse: Reuse,
    first: i32,
    domains: &[Domain],
) -> Statement {
    let mut values: Vec<sea_orm::Value> = vec![job_id.into(), now.into()];
    let rows = match backend {
        DbBackend::Postgres => {
            values.push(
                domains
                    .iter()
                    .map(|_| Uuid::now_v7())
                    .collect::<Vec<_>>()
                    .into(),
            );
            values.push(
                domains
                    .iter()
                    .map(|d| d.as_str().to_owned())
                    .collect::<Vec<_>>()
                    .into(),
            );
            format!(
                "SELECT id, domain, (position - 1 + {first})::int4 AS position \
                 FROM unnest($3::uuid[], $4::text[]) WITH ORDINALITY AS u(id, domain, position)"
            )
        }
        _ => {
            // sqlx stores a UUID as a 16-byte blob on SQLite; hex travels in JSON.
            let json: Vec<_> = domains
                .iter()
                .map(|d| serde_json::json!([Uuid::now_v7().simple().to_string(), d.as_str()]))
                .collect();
            values.push(serde_json::Value::Array(json).to_string().into());
            format!(
                "SELECT unhex(value ->> 0) AS id, value ->> 1 AS domain, \
                   key + {first} AS position FROM json_each($3)"
            )
        }
    };
    let sql = match reuse {
        // Without the cache there is nothing to join (and SQLite would scan the table per row
        // for a join on a constant).
        None => format!(
            "INSERT INTO result (id, job_id, position, domain, status, tries, cached, run_at, \
               created_at, updated_at) \
             SELECT s.id, $1, s.position, s.domain, 'pending', 0, false, $2, $2, $2 \
             FROM ({rows}) AS s"
        ),
        // The newest fetch of a domain decides, so an old success does not outlive a newer
        // failure that says the site changed; it is reused if it is a success, or a permanent
        // failure recent enough. Copies are skipped: they repeat a fetch, and a domain asked
        // for by many jobs would otherwise make every lookup read all its copies. The `cached`
        // and `status` terms repeat the partial index's clause (migration 4) so SQLite uses it.
        Some(cut) => {
            let (success, failure) = (values.len() + 1, values.len() + 2);
            values.push(cut.success.into());
            values.push(cut.failure.into());
            let permanent = ErrorCategory::ALL
                .iter()
                .filter(|c| !c.is_transient())
                .map(|c| format!("'{}'", c.as_str()))
                .collect::<Vec<_>>()
                .join(", ");
            format!(
                "INSERT INTO result (id, job_id, position, domain, status, favicon_url, error, \
                   error_code, tries, final_url, mime, width, height, candidates, \
                   candidates_dropped, fetched_at, \
                   cached, run_at, created_at, updated_at) \
                 SELECT s.id, $1, s.position, s.domain, COALESCE(p.status, 'pending'), \
                   p.favicon_url, p.error, p.error_code, 0, p.final_url, p.mime, p.width, \
                   p.height, p.candidates, COALESCE(p.candidates_dropped, 0), p.fetched_at, \
                   p.id IS NOT NULL, $2, $2, $2 \
                 FROM (SELECT r.*, (SELECT q.id FROM result q \
                     WHERE q.domain = r.domain AND q.cached = false AND q.status <> 'pending' \
                       AND q.fetched_at >= ${success} ORDER BY q.fetched_at DESC LIMIT 1) \
                   AS source FROM ({rows}) AS r) AS s \
                 LEFT JOIN result p ON p.id = s.source AND (p.status = 'success' \
                   OR (p.fetched_at >= ${failure} AND p.error_code IN ({permanent})))"
            )
        }
    };
    Statement::from_sql_and_values(backend, sql, values)
}

/// An update of result rows that clears their lease.
fn unleased() -> sea_orm::UpdateMany<result::Entity> {
    result::Entity::update_many()
        .col_expr(
            result::Column::LeaseOwner,
            Expr::value(Option::<Uuid>::None),
        )
        .col_expr(
            result::Column::LeaseUntil,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
}

/// The record guard: still pending, still ours, and not claimed again since.
fn guard(claim: &Claimed) -> sea_orm::Condition {
    sea_orm::Condition::all()
        .add(result::Column::Id.eq(claim.id))
        .add(result::Column::Status.eq(ResultStatus::Pending))
        .add(result::Column::LeaseOwner.eq(claim.owner))
        .add(result::Column::Tries.eq(claim.tries))
}

/// The columns a finished outcome writes.
///
/// Counts are converted with `as`: [`crate::clean::outcome`] keeps them within `i32`, and an
/// outcome that skipped it shows up as a negative count the database refuses.
struct FinishedRow {
    status: ResultStatus,
    favicon_url: Option<String>,
    error: Option<String>,
    error_code: Option<String>,
    final_url: Option<String>,
    mime: Option<String>,
    width: Option<i32>,
    height: Option<i32>,
    candidates: Option<serde_json::Value>,
    candidates_dropped: i32,
}

impl FinishedRow {
    fn from_outcome(outcome: &FindOutcome) -> Self {
        let candidates = |c: &[Candidate]| {
            if c.is_empty() {
                None
            } else {
                serde_json::to_value(c).ok()
            }
        };
        match outcome {
            Ok(found) => Self {
                status: ResultStatus::Success,
                favicon_url: Some(found.favicon_url.clone()),
                error: None,
                error_code: None,
                final_url: found.final_url.clone(),
                mime: Some(found.mime.clone()),
                width: Some(found.width as i32),
                height: Some(found.height as i32),
                candidates: candidates(&found.candidates),
                candidates_dropped: found.candidates_dropped as i32,
            },
            Err(err) => Self {
                status: ResultStatus::Failed,
                favicon_url: None,
                error: Some(format!("{}: {}", err.category.as_str(), err.message)),
                error_code: Some(err.category.as_str().to_owned()),
                final_url: err.final_url.clone(),
                mime: None,
                width: None,
                height: None,
                candidates: candidates(&err.candidates),
                candidates_dropped: err.candidates_dropped as i32,
            },
        }
    }
}
