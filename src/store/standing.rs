//! Where jobs stand in the shared queue: one job's standing (`GET /jobs/{id}`, GraphQL
//! `Job.queue`) and the work left per job for `/metrics`.
//!
//! Both read the counters of processing jobs through `idx_job_processing`, never by counting
//! result rows: a job's work left is `total - completed - failed`, kept exact by the one
//! statement that moves the counters (`write::settle`), and the processing jobs are few
//! however many finished ones the table keeps. Only a job's rows held by a worker are counted
//! from `result`, through the lease index, which holds no more rows than the fleet has slots.

use super::sql::{LEASED, PROCESSING};
use super::{Store, StoreResult, now};
use crate::model::QueueStanding;
use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DbBackend, Statement};
use uuid::Uuid;

/// A job's domains not finished, from its counters.
const LEFT: &str = "j.total - j.completed - j.failed";

/// The standing of job `$1` at `$2`: its work left and leased rows, and the processing jobs
/// and clients beside it. One row, whatever the queue holds (zeros when nothing is
/// processing). The clauses repeat the partial indexes' word for word so SQLite uses them.
///
/// The job's leases are found from the lease index alone: every write that finishes or
/// retries a row clears its lease, so a leased row is a pending one, and the lease index
/// holds about as many rows as the fleet has slots, where the job's own rows may be 100,000.
/// SQLite, which the service never gives statistics, would walk the job's pending rows by
/// `idx_result_job_status` instead; a unary `+` takes `job_id` out of its choice. PostgreSQL
/// does the same while its statistics lag a job just created (13 ms a read, measured mid-job,
/// against 0.4 ms from the lease index), and has no `+` for a UUID: an `OFFSET 0` fence
/// makes it read the leases first and only then pick the job's.
pub(super) fn standing_sql(backend: DbBackend) -> String {
    let processing = PROCESSING.replace("status", "j.status");
    let leased = LEASED.replace("lease_owner", "r.lease_owner");
    let in_flight = match backend {
        DbBackend::Sqlite => format!(
            "SELECT COUNT(*) FROM result r WHERE {leased} AND +r.job_id = $1 \
               AND r.lease_until >= $2"
        ),
        _ => format!(
            "SELECT COUNT(*) FROM (SELECT r.job_id FROM result r WHERE {leased} \
               AND r.lease_until >= $2 OFFSET 0) AS l WHERE l.job_id = $1"
        ),
    };
    format!(
        "SELECT \
           COALESCE(SUM(CASE WHEN j.id = $1 THEN {LEFT} ELSE 0 END), 0) AS pending, \
           COUNT(CASE WHEN j.id <> $1 THEN 1 END) AS other_jobs, \
           COUNT(DISTINCT CASE WHEN j.client_id <> me.client_id THEN j.client_id END) \
             AS other_clients, \
           COALESCE(SUM(CASE WHEN j.client_id <> me.client_id THEN {LEFT} ELSE 0 END), 0) \
             AS other_clients_pending, \
           ({in_flight}) AS in_flight \
         FROM job me, job j \
         WHERE me.id = $1 AND {processing} AND j.completed + j.failed < j.total"
    )
}

/// Every processing job with work left: its id, its client's name and its domains not
/// finished. The client is a primary-key probe per job, so the processing jobs drive the
/// read (a join let SQLite without statistics walk every client's jobs, finished ones too).
pub(super) fn left_by_job_sql() -> String {
    let processing = PROCESSING.replace("status", "j.status");
    format!(
        "SELECT j.id AS job, \
           (SELECT c.client_id FROM client c WHERE c.id = j.client_id) AS client, \
           CAST({LEFT} AS BIGINT) AS pending \
         FROM job j WHERE {processing} AND j.completed + j.failed < j.total"
    )
}

/// The statement of [`standing_sql`] for job `id` at `at`.
pub(super) fn standing_statement(backend: DbBackend, id: Uuid, at: DateTime<Utc>) -> Statement {
    Statement::from_sql_and_values(backend, standing_sql(backend), [id.into(), at.into()])
}

/// A count as the APIs show it (they count in 32 bits, as a job's own counters do).
fn count(n: i64) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

impl Store {
    /// Where job `id` stands now (see [`QueueStanding`]); zeros for a job that is not
    /// processing. The caller decides whether the job may be shown: this names no client.
    pub async fn queue_standing(&self, id: Uuid) -> StoreResult<QueueStanding> {
        let row = self
            .db
            .query_one_raw(standing_statement(self.backend(), id, now()))
            .await?;
        let Some(row) = row else {
            return Ok(QueueStanding::default());
        };
        let get = |column: &str| row.try_get::<i64>("", column).map(count);
        Ok(QueueStanding {
            pending: get("pending")?,
            in_flight: get("in_flight")?,
            other_jobs: get("other_jobs")?,
            other_clients: get("other_clients")?,
            other_clients_pending: get("other_clients_pending")?,
        })
    }

    /// Every processing job with domains left: (job id, client name, domains left).
    pub async fn work_left_by_job(&self) -> StoreResult<Vec<(Uuid, String, i64)>> {
        let rows = self
            .db
            .query_all_raw(Statement::from_string(self.backend(), left_by_job_sql()))
            .await?;
        Ok(rows
            .into_iter()
            .map(|row| {
                Ok((
                    row.try_get("", "job")?,
                    row.try_get("", "client")?,
                    row.try_get("", "pending")?,
                ))
            })
            .collect::<Result<_, sea_orm::DbErr>>()?)
    }
}
