//! Jobs: creating one (with the copy of earlier jobs' results, the cross-job cache), reading
//! them, and what a client has asked for lately (for its rate limit).

use super::sql::{self, FETCHED, NOT_A_CHECK, NOT_DELETED};
use super::write::{client_named, insert_job, read_job, settle};
use super::{Store, StoreResult, now};
use crate::domain::Domain;
use crate::entities::job;
use crate::model::{CachePolicy, Cutoffs, Job, Priority, ResultStatus, Tally};
use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, Statement, TransactionTrait,
};
use std::fmt::Write as _;
use std::net::IpAddr;
use uuid::Uuid;

/// Result rows per insert statement: each statement binds a handful of arrays (or one JSON text
/// on SQLite), so this only bounds the statement's size, not its parameter count.
const INSERT_CHUNK: usize = 10_000;

/// A client's (or an address's) jobs in a window: (count, domains, the oldest one's time).
pub type Usage = (u64, u64, Option<DateTime<Utc>>);

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
    ) -> StoreResult<Job> {
        self.create_job_from(client_name, None, Priority::Normal, domains, cache)
            .await
    }

    /// [`Store::create_job`], noting the address a job without a key came from (see
    /// [`Store::address_usage_since`]).
    pub async fn create_job_from(
        &self,
        client_name: &str,
        source_ip: Option<IpAddr>,
        priority: Priority,
        domains: &[Domain],
        cache: CachePolicy,
    ) -> StoreResult<Job> {
        let now = now();
        let txn = self.db.begin().await?;
        let total = domains.len() as i32;
        let job = insert_job(&txn, client_name, source_ip, priority, total, now).await?;
        let reuse = cache.cutoffs(now);
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
        let mut copied = Tally::default();
        if reuse.is_some() {
            let rows = txn
                .query_all_raw(Statement::from_sql_and_values(
                    self.backend(),
                    "SELECT status, COUNT(*) AS n FROM result \
                     WHERE job_id = $1 AND cached = true GROUP BY status",
                    [job.id.into()],
                ))
                .await?;
            for row in rows {
                let n = row.try_get::<i64>("", "n")? as i32;
                copied.add(row.try_get::<ResultStatus>("", "status")?, n);
            }
        }
        // Copies are finished rows, and an empty job is finished at once.
        if !copied.is_empty() || total == 0 {
            settle(&txn, job.id, copied, now, false, true).await?;
        }
        let job = read_job(&txn, job.id, false)
            .await?
            .ok_or(sea_orm::DbErr::RecordNotUpdated)?;
        txn.commit().await?;
        Ok(job)
    }

    /// One job with its client's name.
    pub async fn job(&self, id: Uuid) -> StoreResult<Option<Job>> {
        Ok(read_job(&self.db, id, false).await?)
    }

    /// A client's jobs, newest first, `per_page` of them after the first `offset`, and how
    /// many there are in all.
    pub async fn jobs_for_client(
        &self,
        client_name: &str,
        offset: u64,
        per_page: u64,
    ) -> StoreResult<(Vec<Job>, u64)> {
        let Some(client) = client_named(&self.db, client_name).await? else {
            return Ok((Vec::new(), 0));
        };
        let query = job::Entity::find()
            .filter(job::Column::ClientRef.eq(client.id))
            .filter(Expr::cust(NOT_DELETED))
            // A watch's checks are the watch's business, not jobs the client submitted.
            .filter(Expr::cust(NOT_A_CHECK))
            .order_by_desc(job::Column::CreatedAt)
            .order_by_desc(job::Column::Id);
        let total = query.clone().count(&self.db).await?;
        let jobs = query.offset(offset).limit(per_page).all(&self.db).await?;
        Ok((
            jobs.into_iter()
                .map(|job| job.into_job(client.client_id.clone()))
                .collect(),
            total,
        ))
    }

    /// A client's jobs created at or after `since`: (count, domains, the oldest one's time).
    pub async fn client_usage_since(
        &self,
        client_name: &str,
        since: DateTime<Utc>,
    ) -> StoreResult<Usage> {
        let Some(client) = client_named(&self.db, client_name).await? else {
            return Ok((0, 0, None));
        };
        self.usage_since(job::Column::ClientRef.eq(client.id), since)
            .await
    }

    /// The jobs made without a key from `ip` at or after `since`: (count, domains, the oldest
    /// one's time).
    pub async fn address_usage_since(
        &self,
        ip: IpAddr,
        since: DateTime<Utc>,
    ) -> StoreResult<Usage> {
        self.usage_since(job::Column::SourceIp.eq(ip.to_string()), since)
            .await
    }

    async fn usage_since(
        &self,
        whose: impl sea_orm::sea_query::IntoCondition,
        since: DateTime<Utc>,
    ) -> StoreResult<Usage> {
        // Bounded by the rate limit itself: a client has at most that many jobs in the window.
        let jobs = job::Entity::find()
            .filter(whose)
            .filter(job::Column::CreatedAt.gte(since))
            // A watch's checks spend no allowance: watches are bounded by WATCH_MAX_DOMAINS.
            .filter(Expr::cust(NOT_A_CHECK))
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
    pub async fn job_status_counts(&self) -> StoreResult<Vec<(String, i64)>> {
        let backend = self.backend();
        let rows = self
            .db
            .query_all_raw(Statement::from_string(
                backend,
                "SELECT status, COUNT(*) AS n FROM job WHERE deleted_at IS NULL GROUP BY status",
            ))
            .await?;
        Ok(rows
            .into_iter()
            .map(|row| Ok((row.try_get("", "status")?, row.try_get("", "n")?)))
            .collect::<Result<_, sea_orm::DbErr>>()?)
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
pub(super) fn insert_results(
    backend: DbBackend,
    job_id: Uuid,
    now: DateTime<Utc>,
    reuse: Option<Cutoffs>,
    first: i32,
    domains: &[Domain],
) -> Statement {
    let mut values: Vec<sea_orm::Value> = vec![job_id.into(), now.into()];
    let rows = match backend {
        DbBackend::Postgres => {
            values.push(row_ids(now, domains.len()).collect::<Vec<_>>().into());
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
            // sqlx stores a UUID as a 16-byte blob on SQLite; hex travels in JSON. Written
            // by hand: a domain is a hostname and an id hex, so neither needs escaping, and
            // a `serde_json::Value` per row cost more than the text.
            let mut json = String::with_capacity(domains.len() * 64 + 2);
            json.push('[');
            for (i, (id, d)) in row_ids(now, domains.len()).zip(domains).enumerate() {
                if i > 0 {
                    json.push(',');
                }
                let _ = write!(json, "[\"{}\",\"{}\"]", id.simple(), d.as_str());
            }
            json.push(']');
            values.push(json.into());
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
            let failure = format!("${failure}");
            let (reuse_p, reuse_k) = (sql::reusable("p", &failure), sql::reusable("k", &failure));
            let copied = sql::copied_columns();
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

/// `n` UUIDv7 ids for new rows, made at `now`: in increasing order from a random start (so
/// the primary key grows at its end, as with `Uuid::now_v7`), with one draw from the
/// thread's generator for them all. `Uuid::now_v7` asked the kernel for randomness per row:
/// 5 % of creating a job of 100,000 domains (BENCHMARKS.md, issue 29).
pub(super) fn row_ids(now: DateTime<Utc>, n: usize) -> impl Iterator<Item = Uuid> {
    const VERSION: u128 = 0x7 << 76;
    const VARIANT: u128 = 0b10 << 62;
    const RAND_B: u128 = (1 << 62) - 1;
    let millis = u128::from(u64::try_from(now.timestamp_millis()).unwrap_or(0)) & ((1 << 48) - 1);
    // 74 random bits (12 of `rand_a`, 62 of `rand_b`); the top one clear, so adding a row
    // count never carries into the version.
    let start = rand::random::<u128>() & ((1 << 73) - 1);
    (0..n as u128).map(move |i| {
        let counter = start + i;
        Uuid::from_u128(
            (millis << 80) | VERSION | ((counter >> 62) << 64) | VARIANT | (counter & RAND_B),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ids are version-7 UUIDs of the creation's millisecond, each larger than the one
    /// before, as `Uuid::now_v7` made them.
    #[test]
    fn row_ids_are_increasing_v7_ids_of_their_time() {
        let now = crate::store::now();
        let ids: Vec<Uuid> = row_ids(now, 10_000).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
        for id in [ids[0], ids[9_999]] {
            assert_eq!(id.get_version_num(), 7);
            assert_eq!(id.get_variant(), uuid::Variant::RFC4122);
            let (secs, nanos) = id.get_timestamp().unwrap().to_unix();
            assert_eq!(
                secs as i64 * 1000 + i64::from(nanos / 1_000_000),
                now.timestamp_millis()
            );
        }
        assert_ne!(row_ids(now, 1).next(), row_ids(now, 1).next());
    }
}
