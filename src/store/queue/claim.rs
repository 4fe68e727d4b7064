//! The fair claim: the jobs with work left, and one statement that takes each planned job's
//! due rows in order (see [`crate::model::fair`] for how the rows are split between jobs).
//!
//! Each job's rows are read from `idx_result_job_due` (`job_id, run_at, position` over
//! pending rows): a bounded range scan per planned job, never a sort of every pending row.
//! A job that gives fewer rows than planned (its rows are leased elsewhere, waiting for a
//! retry, or gone) leaves its slots to the jobs that gave all they were asked for, in one
//! more statement at most.

use super::super::sql::{active_jobs_sql, claimable, not_cancelled};
use super::super::{Store, StoreResult, now};
use super::{Claimed, lease_end};
use crate::model::fair::{self, ActiveJob, Share};
use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DbBackend, DbErr, Statement, Value};
use std::collections::{HashMap, HashSet};
use std::time::Duration;
use uuid::Uuid;

/// The most jobs a claim considers: every client's oldest processing job first, then every
/// client's second, and so on, up to this many (see `sql::active_jobs_sql`). A client's
/// jobs beyond the bound wait until one of the considered ones ends. It is also the most
/// subselects SQLite's claim joins (`SQLITE_MAX_COMPOUND_SELECT` is 500 by default).
pub const MAX_ACTIVE_JOBS: u64 = 500;

/// The rows one claim statement asks for: (job, how many), jobs oldest first.
type Planned = [(Uuid, usize)];

impl Store {
    /// The jobs with work left (processing, not being deleted), oldest first, at most
    /// `MAX_ACTIVE_JOBS` (500) taken each client's oldest first, read from `idx_job_processing`; each says whether a claim with
    /// `max_tries` would find a row of it now.
    pub async fn active_jobs(&self, max_tries: u32) -> StoreResult<Vec<ActiveJob>> {
        let rows = self
            .db
            .query_all_raw(Statement::from_sql_and_values(
                self.backend(),
                active_jobs_sql(),
                [
                    now().into(),
                    (max_tries as i32).into(),
                    (MAX_ACTIVE_JOBS as i64).into(),
                ],
            ))
            .await?;
        let jobs = rows
            .into_iter()
            .map(|row| {
                Ok(ActiveJob {
                    id: row.try_get("", "id")?,
                    client: row.try_get("", "client_id")?,
                    priority: row.try_get("", "priority")?,
                    due: row.try_get("", "due")?,
                })
            })
            .collect::<Result<_, DbErr>>()?;
        Ok(jobs)
    }

    /// Claims up to `limit` due rows for `owner`, stamping a lease and counting a try, shared
    /// fairly between the jobs with work left as if the claimer held nothing.
    ///
    /// Rows whose tries are used up are not claimed; [`Store::reap_exhausted`] finishes them.
    /// Nor are rows of a cancelled job: one released or left by a stopped worker after the
    /// cancel is never fetched, and [`Store::reap_cancelled`] finishes it.
    pub async fn claim(
        &self,
        owner: Uuid,
        limit: usize,
        lease: Duration,
        max_tries: u32,
    ) -> StoreResult<Vec<Claimed>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let jobs = self.active_jobs(max_tries).await?;
        let share = Share {
            free: limit,
            per_job: limit,
            held: HashMap::new(),
        };
        self.claim_share(owner, &share, &jobs, lease, max_tries)
            .await
    }

    /// [`Store::claim`] for a worker pool: `share` says what it may take and what it holds,
    /// `jobs` are the jobs with work left as [`Store::active_jobs`] read them (oldest first).
    pub async fn claim_share(
        &self,
        owner: Uuid,
        share: &Share,
        jobs: &[ActiveJob],
        lease: Duration,
        max_tries: u32,
    ) -> StoreResult<Vec<Claimed>> {
        let first = fair::plan(share, jobs);
        if first.is_empty() {
            return Ok(Vec::new());
        }
        let now = now();
        let stamp = Stamp {
            owner,
            lease_until: lease_end(now, lease),
            now,
            max_tries,
        };
        let mut claimed = self.claim_planned(&stamp, &first).await?;
        let mut got: HashMap<Uuid, usize> = HashMap::new();
        for claim in &claimed {
            *got.entry(claim.job_id).or_default() += 1;
        }
        let short: HashSet<Uuid> = first
            .iter()
            .filter(|(job, n)| got.get(job).copied().unwrap_or(0) < *n)
            .map(|(job, _)| *job)
            .collect();
        let leftover = share.free.saturating_sub(claimed.len());
        if short.is_empty() || leftover == 0 {
            return Ok(claimed);
        }
        let mut held = share.held.clone();
        for (job, n) in got {
            *held.entry(job).or_default() += n;
        }
        let rest: Vec<ActiveJob> = jobs
            .iter()
            .filter(|job| !short.contains(&job.id))
            .copied()
            .collect();
        let again = Share {
            free: leftover,
            per_job: share.per_job,
            held,
        };
        let second = fair::plan(&again, &rest);
        if !second.is_empty() {
            claimed.extend(self.claim_planned(&stamp, &second).await?);
        }
        Ok(claimed)
    }

    /// Runs one claim statement for `planned`.
    async fn claim_planned(&self, stamp: &Stamp, planned: &Planned) -> StoreResult<Vec<Claimed>> {
        let backend = self.backend();
        let mut values: Vec<Value> = vec![
            stamp.owner.into(),
            stamp.lease_until.into(),
            stamp.now.into(),
            (stamp.max_tries as i32).into(),
        ];
        match backend {
            DbBackend::Postgres => {
                let ids: Vec<Uuid> = planned.iter().map(|(job, _)| *job).collect();
                let counts: Vec<i32> = planned.iter().map(|(_, n)| *n as i32).collect();
                values.push(ids.into());
                values.push(counts.into());
            }
            _ => {
                for (job, n) in planned {
                    values.push((*job).into());
                    values.push((*n as i64).into());
                }
            }
        }
        let sql = claim_sql(backend, planned.len());
        let rows = self
            .db
            .query_all_raw(Statement::from_sql_and_values(backend, sql, values))
            .await?;
        let claimed = rows
            .into_iter()
            .map(|row| {
                Ok(Claimed {
                    id: row.try_get("", "id")?,
                    job_id: row.try_get("", "job_id")?,
                    domain: row.try_get("", "domain")?,
                    tries: row.try_get("", "tries")?,
                    owner: stamp.owner,
                    trace_context: row.try_get("", "trace_context")?,
                })
            })
            .collect::<Result<_, DbErr>>()?;
        Ok(claimed)
    }
}

/// What a claim stamps on its rows, and the bounds it claims within.
struct Stamp {
    /// The claimer.
    owner: Uuid,
    /// Its lease's end.
    lease_until: DateTime<Utc>,
    /// The claim's clock: rows due by then, leases expired by then.
    now: DateTime<Utc>,
    /// Rows with this many tries are left to the reaper.
    max_tries: u32,
}

/// The claim statement for `jobs` planned jobs. Its parameters: owner, lease end, now, max
/// tries; then on PostgreSQL the planned jobs' ids and counts as two arrays, on SQLite each
/// planned job's id and count in turn.
pub(super) fn claim_sql(backend: DbBackend, jobs: usize) -> String {
    // One job's due rows in claim order, through idx_result_job_due.
    let due = |job: &str, n: &str, lock: &str| {
        format!(
            "SELECT id FROM result \
             WHERE job_id = {job} AND {claimable} AND {not_cancelled} \
             ORDER BY run_at, position LIMIT {n}{lock}",
            claimable = claimable("$3", "$4"),
            not_cancelled = not_cancelled()
        )
    };
    let chosen = match backend {
        DbBackend::Postgres => format!(
            "SELECT due.id FROM unnest($5::uuid[], $6::int4[]) AS plan(job_id, n) \
             CROSS JOIN LATERAL ({}) AS due",
            due("plan.job_id", "plan.n", " FOR UPDATE SKIP LOCKED")
        ),
        // SQLite has no SKIP LOCKED and needs none: it runs one writer at a time.
        _ => (0..jobs)
            .map(|i| {
                let inner = due(&format!("${}", 5 + 2 * i), &format!("${}", 6 + 2 * i), "");
                format!("SELECT id FROM ({inner})")
            })
            .collect::<Vec<_>>()
            .join(" UNION ALL "),
    };
    let (no_flush, gate) = match backend {
        DbBackend::Postgres => (NO_FLUSH, " AND EXISTS (SELECT 1 FROM no_flush)"),
        _ => ("", ""),
    };
    format!(
        "{no_flush}UPDATE result SET lease_owner = $1, lease_until = $2, tries = tries + 1, \
           updated_at = $3 \
         WHERE id IN ({chosen}){gate} \
         RETURNING id, job_id, domain, tries, \
           (SELECT trace_context FROM job WHERE job.id = result.job_id) AS trace_context"
    )
}

/// Lets a claim's commit on PostgreSQL return before its WAL reaches the disk
/// (`synchronous_commit` off for that one transaction), which saves a claim, on every worker's
/// path to its next domains, the flush's few milliseconds. A claim is the one write whose
/// loss costs nothing: after a crash of the database the row is as it was before the claim
/// (unleased, the try not counted), the worker that fetched it finds its record's guard
/// fails, and the row is fetched again, as after any lost lease. Every record still waits for
/// its flush, and takes the claims before it to the disk with it.
const NO_FLUSH: &str =
    "WITH no_flush AS MATERIALIZED (SELECT set_config('synchronous_commit', 'off', true)) ";
