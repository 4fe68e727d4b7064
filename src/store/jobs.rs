//! Jobs: creating one (with the copy of earlier jobs' results, the cross-job cache), reading
//! them, and what a client has asked for lately (for its rate limit).

use super::queue::FETCHED;
use super::{Store, now};
use crate::domain::Domain;
use crate::entities::{client, job};
use crate::model::{ErrorCategory, JobStatus, ResultColumns, ResultStatus};
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect, Statement, TransactionTrait,
};
use std::net::IpAddr;
use std::time::Duration;
use uuid::Uuid;

/// Result rows per insert statement: each statement binds a handful of arrays (or one JSON text
/// on SQLite), so this only bounds the statement's size, not its parameter count.
const INSERT_CHUNK: usize = 10_000;

/// Jobs not being deleted: a deleted job is hidden from every read at once, while its
/// results are removed in batches (`lifecycle`).
const NOT_DELETED: &str = "job.deleted_at IS NULL";

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

impl Store {
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
        self.create_job_from(client_name, None, domains, cache)
            .await
    }

    /// [`Store::create_job`], noting the address a job without a key came from (see
    /// [`Store::address_usage_since`]).
    pub async fn create_job_from(
        &self,
        client_name: &str,
        source_ip: Option<IpAddr>,
        domains: &[Domain],
        cache: CachePolicy,
    ) -> Result<JobView, DbErr> {
        let now = now();
        let txn = self.db.begin().await?;
        let client = upsert_client(&txn, client_name, now).await?;
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
            source_ip: source_ip.map(|ip| ip.to_string()),
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
            super::results::number_finished(&txn, job.id, false).await?;
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
            .filter(Expr::cust(NOT_DELETED))
            .find_also_related(client::Entity)
            .one(&self.db)
            .await?;
        Ok(found.map(|(job, client)| JobView {
            job,
            client_name: client.map(|c| c.client_id).unwrap_or_default(),
        }))
    }

    /// A client's jobs, newest first, `per_page` of them after the first `offset`, and how
    /// many there are in all.
    pub async fn jobs_for_client(
        &self,
        client_name: &str,
        offset: u64,
        per_page: u64,
    ) -> Result<(Vec<JobView>, u64), DbErr> {
        let Some(client) = client_named(&self.db, client_name).await? else {
            return Ok((Vec::new(), 0));
        };
        let query = job::Entity::find()
            .filter(job::Column::ClientId.eq(client.id))
            .filter(Expr::cust(NOT_DELETED))
            .order_by_desc(job::Column::CreatedAt)
            .order_by_desc(job::Column::Id);
        let total = query.clone().count(&self.db).await?;
        let jobs = query.offset(offset).limit(per_page).all(&self.db).await?;
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

    /// A client's jobs created at or after `since`: (count, domains, the oldest one's time).
    pub async fn client_usage_since(
        &self,
        client_name: &str,
        since: DateTime<Utc>,
    ) -> Result<(u64, u64, Option<DateTime<Utc>>), DbErr> {
        let Some(client) = client_named(&self.db, client_name).await? else {
            return Ok((0, 0, None));
        };
        self.usage_since(job::Column::ClientId.eq(client.id), since)
            .await
    }

    /// The jobs made without a key from `ip` at or after `since`: (count, domains, the oldest
    /// one's time).
    pub async fn address_usage_since(
        &self,
        ip: IpAddr,
        since: DateTime<Utc>,
    ) -> Result<(u64, u64, Option<DateTime<Utc>>), DbErr> {
        self.usage_since(job::Column::SourceIp.eq(ip.to_string()), since)
            .await
    }

    async fn usage_since(
        &self,
        whose: impl sea_orm::sea_query::IntoCondition,
        since: DateTime<Utc>,
    ) -> Result<(u64, u64, Option<DateTime<Utc>>), DbErr> {
        // Bounded by the rate limit itself: a client has at most that many jobs in the window.
        let jobs = job::Entity::find()
            .filter(whose)
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
                "SELECT status, COUNT(*) AS n FROM job WHERE deleted_at IS NULL GROUP BY status",
            ))
            .await?;
        rows.into_iter()
            .map(|row| Ok((row.try_get("", "status")?, row.try_get("", "n")?)))
            .collect()
    }
}

/// The client a caller's name stands for, if it ever created a job.
/// The client row named `name`, created if this is its first job (two jobs of a new client
/// may race; the unique name makes one insert win and both read the same row).
pub(super) async fn upsert_client(
    db: &impl ConnectionTrait,
    name: &str,
    now: DateTime<Utc>,
) -> Result<client::Model, DbErr> {
    let inserted = client::Entity::insert(client::ActiveModel {
        id: Set(Uuid::now_v7()),
        client_id: Set(name.to_owned()),
        created_at: Set(now),
        updated_at: Set(now),
    })
    .on_conflict(
        OnConflict::column(client::Column::ClientId)
            .do_nothing()
            .to_owned(),
    )
    .exec(db)
    .await;
    match inserted {
        Ok(_) | Err(DbErr::RecordNotInserted) => {}
        Err(e) => return Err(e),
    }
    client_named(db, name)
        .await?
        .ok_or_else(|| DbErr::RecordNotFound("client just upserted".into()))
}

pub(super) async fn client_named(
    db: &impl ConnectionTrait,
    name: &str,
) -> Result<Option<client::Model>, DbErr> {
    client::Entity::find()
        .filter(client::Column::ClientId.eq(name))
        .one(db)
        .await
}

/// The cutoffs of a [`CachePolicy`] at one moment; `None` when the cache is off.
#[derive(Clone, Copy, Debug)]
pub(super) struct Cutoffs {
    /// A success fetched at or after this may be reused.
    success: DateTime<Utc>,
    /// A permanent failure fetched at or after this may be reused.
    failure: DateTime<Utc>,
}

/// What a new job may reuse, if anything.
pub(super) type Reuse = Option<Cutoffs>;

impl Cutoffs {
    pub(super) fn new(cache: CachePolicy, now: DateTime<Utc>) -> Reuse {
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

/// The columns a cache hit copies from the earlier result: every column the views show
/// except the row's own (its domain, status, tries and whether it is a copy), the
/// candidates, and the stored icon's address (the blob itself is shared, not copied; the
/// views make `icon_url` from it). Each is nullable, so a domain without a hit gets NULL in each.
fn copied_columns() -> Vec<&'static str> {
    ResultColumns::NAMES
        .into_iter()
        .filter(|c| !matches!(*c, "domain" | "status" | "tries" | "cached" | "icon_url"))
        .chain(["candidates", "icon_sha256"])
        .collect()
}

/// The columns of a `domain_cache` row: the domain, its status and what a cache hit copies.
pub(super) fn cached_columns() -> Vec<&'static str> {
    ["domain", "status"]
        .into_iter()
        .chain(copied_columns())
        .chain(["candidates_dropped"])
        .collect()
}

/// One statement that inserts `domains` into job `job_id` from position `first` on: a copy of
/// each domain's reusable earlier result (the cross-job cache, when `reuse` allows it), a
/// `pending` row for every other domain.
///
/// The rows travel as two arrays (PostgreSQL) or one JSON text (SQLite) rather than as bound
/// values per column per row, and cache hits are found and copied inside the database: binding
/// values, and reading earlier rows out only to write them back, dominated creating a job (see
/// BENCHMARKS.md).
pub(super) fn insert_results(
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
        // for by many jobs would otherwise make every lookup read all its copies. The lookup
        // repeats the cache index's clause ([`FETCHED`]) word for word so SQLite uses it.
        Some(cut) => {
            let (success, failure) = (values.len() + 1, values.len() + 2);
            values.push(cut.success.into());
            values.push(cut.failure.into());
            let permanent = ErrorCategory::ALL
                .iter()
                .filter(|c| c.is_cacheable())
                .map(|c| format!("'{}'", c.as_str()))
                .collect::<Vec<_>>()
                .join(", ");
            let reusable = |t: &str| {
                format!(
                    "({t}.status = 'success' OR ({t}.fetched_at >= ${failure} \
                     AND {t}.error_code IN ({permanent})))"
                )
            };
            let (reuse_p, reuse_k) = (reusable("p"), reusable("k"));
            let copied = copied_columns();
            let into = copied.join(", ");
            let from = copied
                .iter()
                .map(|c| format!("COALESCE(p.{c}, k.{c})"))
                .collect::<Vec<_>>()
                .join(", ");
            // A domain's newest fetch may also sit in `domain_cache`, kept there when its job
            // was purged: `k0` is that row when it is newer than the results' newest (`p0`),
            // and then it decides; `p` and `k` are the one that decides, when reusable, so at
            // most one of them is there and COALESCE takes its columns.
            format!(
                "INSERT INTO result (id, job_id, position, domain, status, tries, \
                   candidates_dropped, cached, run_at, created_at, updated_at, {into}) \
                 SELECT s.id, $1, s.position, s.domain, COALESCE(p.status, k.status, 'pending'), \
                   0, COALESCE(p.candidates_dropped, k.candidates_dropped, 0), \
                   (p.id IS NOT NULL OR k.domain IS NOT NULL), $2, $2, $2, {from} \
                 FROM (SELECT r.*, (SELECT q.id FROM result q \
                     WHERE q.domain = r.domain AND {FETCHED} \
                       AND q.fetched_at >= ${success} ORDER BY q.fetched_at DESC LIMIT 1) \
                   AS source FROM ({rows}) AS r) AS s \
                 LEFT JOIN result p0 ON p0.id = s.source \
                 LEFT JOIN domain_cache k0 ON k0.domain = s.domain \
                   AND k0.fetched_at >= ${success} \
                   AND (p0.id IS NULL OR k0.fetched_at > p0.fetched_at) \
                 LEFT JOIN result p ON p.id = s.source AND k0.domain IS NULL AND {reuse_p} \
                 LEFT JOIN domain_cache k ON k.domain = k0.domain AND {reuse_k}"
            )
        }
    };
    Statement::from_sql_and_values(backend, sql, values)
}
