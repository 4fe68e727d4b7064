//! The work queue: claim, heartbeat, release, record and reap, on the result rows themselves.
//! The claim, shared fairly between the jobs with work left, is `claim`.
//!
//! Partial indexes keep the queue's searches (and the cache's) small. SQLite uses a partial
//! index only when the query repeats the index's clause, so the clauses live in `sql` as
//! constants that the queries splice in, and a test here checks each against the migrated
//! schema.

use super::sql::{self, LEASED, PENDING};
use super::write::{
    blobs, cancel_leftovers, cancel_rows, finished_row, is_cancelled, put_blob, read_job, settle,
};
use super::{Store, StoreResult, is_transient, now};
use crate::entities::result;
use crate::model::{
    ErrorCategory, FindError, FindOutcome, Job, ProgressEvent, ResultColumns, ResultStatus, Tally,
};
use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, PaginatorTrait,
    QueryFilter, QuerySelect, Statement, TransactionTrait,
};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;
use uuid::Uuid;

/// The lease owner of an abandoned row: no pool has this id, so no heartbeat renews it.
const ABANDONED: Uuid = Uuid::nil();

/// A row finished by a write, by its id, with the view events carry.
type FinishedRow = (Uuid, ResultColumns);

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
    /// The job's W3C `traceparent` (see `job.trace_context`): the find continues its trace.
    pub trace_context: Option<String>,
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

/// What [`Store::record`] wrote.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Recorded {
    /// The jobs whose counters moved, with the domains that moved them.
    pub updates: Vec<JobUpdate>,
    /// Rows the database refused for good, each finished as `failed` / `internal` instead.
    pub refused: Vec<Claimed>,
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
    pub job: Job,
    /// The domains that finished in that write, in their order of finishing.
    pub finished: Vec<ResultColumns>,
}

/// What subscribers hear about a record: the job after it and the domains it finished.
impl From<JobUpdate> for ProgressEvent {
    fn from(update: JobUpdate) -> Self {
        Self {
            finished: update.finished,
            ..Self::from(&update.job)
        }
    }
}

impl Store {
    /// Unfinished rows: (waiting to be claimed, leased by a worker now).
    pub async fn queue_depth(&self) -> StoreResult<(i64, i64)> {
        let now = now();
        let pending = pending_rows();
        let leased = pending
            .clone()
            .filter(result::Column::LeaseUntil.gte(now))
            .count(&self.db)
            .await?;
        let all = pending.count(&self.db).await?;
        Ok((all as i64 - leased as i64, leased as i64))
    }

    /// Extends the leases of every row `owner` still holds.
    pub async fn heartbeat(&self, owner: Uuid, lease: Duration) -> StoreResult<u64> {
        let now = now();
        let res = result::Entity::update_many()
            .col_expr(
                result::Column::LeaseUntil,
                Expr::value(lease_end(now, lease)),
            )
            .filter(Expr::cust(LEASED))
            .filter(result::Column::LeaseOwner.eq(owner))
            .filter(result::Column::Status.eq(ResultStatus::Pending))
            .exec(&self.db)
            .await?;
        Ok(res.rows_affected)
    }

    /// Gives back claimed rows that were not finished, claimable at once; their try is not
    /// counted.
    pub async fn release(&self, claims: &[Claimed]) -> StoreResult<u64> {
        let mut released = 0;
        let jobs: BTreeSet<Uuid> = claims.iter().map(|c| c.job_id).collect();
        for claim in claims {
            let row = result::ActiveModel {
                tries: Set(claim.tries - 1),
                ..unleased()
            };
            let res = result::Entity::update_many()
                .set(row)
                .filter(guard(claim))
                .exec(&self.db)
                .await?;
            released += res.rows_affected;
        }
        // A job cancelled while these rows were held: they finish now instead of waiting.
        for job_id in jobs {
            cancel_leftovers(&self.db, job_id).await?;
        }
        Ok(released)
    }

    /// Finishes the unheld pending rows of cancelled jobs (left by a worker that stopped or
    /// died after the cancel), a few jobs per call; returns how many rows.
    pub async fn reap_cancelled(&self) -> StoreResult<u64> {
        let rows = self
            .db
            .query_all_raw(Statement::from_sql_and_values(
                self.backend(),
                sql::cancelled_with_leftovers_sql(),
                [now().into()],
            ))
            .await?;
        let mut finished = 0;
        for row in rows {
            let id: Uuid = row.try_get("", "id")?;
            finished += cancel_leftovers(&self.db, id).await?;
        }
        Ok(finished)
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
    pub async fn record(&self, batch: Vec<(Claimed, Disposition)>) -> StoreResult<Recorded> {
        let mut recorded = Recorded::default();
        self.record_into(batch, &mut recorded).await?;
        Ok(recorded)
    }

    /// [`Store::record`], adding to `recorded` as each part commits. When a transient error
    /// ends it after a split, `recorded` still holds what the parts before the error
    /// committed: their progress must be published now, since a retry of the batch finds
    /// those rows written and moves nothing for them.
    pub async fn record_into(
        &self,
        batch: Vec<(Claimed, Disposition)>,
        recorded: &mut Recorded,
    ) -> StoreResult<()> {
        let batch = batch
            .into_iter()
            .map(|(claim, disposition)| (claim, clean_disposition(disposition)))
            .collect();
        self.record_splitting(batch, recorded).await
    }

    /// [`Store::record`] without cleaning: only for tests that need a row the database
    /// really refuses, to prove it cannot block its batch.
    #[doc(hidden)]
    pub async fn record_uncleaned(
        &self,
        batch: Vec<(Claimed, Disposition)>,
    ) -> StoreResult<Recorded> {
        let mut recorded = Recorded::default();
        self.record_splitting(batch, &mut recorded).await?;
        Ok(recorded)
    }

    async fn record_splitting(
        &self,
        batch: Vec<(Claimed, Disposition)>,
        recorded: &mut Recorded,
    ) -> StoreResult<()> {
        // Parts still to write, the next one last: halves are pushed second-half first so
        // rows are written in their batch order.
        let mut parts = vec![batch];
        while let Some(part) = parts.pop() {
            let err = match self.write_batch(&part).await {
                Ok(updates) => {
                    recorded.updates.extend(updates);
                    continue;
                }
                Err(err) if is_transient(&err) => return Err(err.into()),
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
            let stand_in =
                Disposition::Finish(Err(FindError::new(ErrorCategory::Internal, message)));
            match self.write_batch(&[(claim.clone(), stand_in)]).await {
                Ok(updates) => recorded.updates.extend(updates),
                Err(err) if is_transient(&err) => return Err(err.into()),
                // Nothing of the site is left in the stand-in, so this is not expected. The
                // row is let go (its lease ends now, and no pool's heartbeat renews it), so it
                // is fetched again while it has tries left, and then the reaper finishes it.
                Err(err) => {
                    tracing::error!(
                        job_id = %claim.job_id,
                        domain = %claim.domain,
                        error = %err,
                        "the database refused even the failure record of a row"
                    );
                    match self.abandon(&claim).await {
                        Err(err) if is_transient(&err) => return Err(err.into()),
                        Err(err) => tracing::error!(
                            domain = %claim.domain,
                            error = %err,
                            "could not let go of a refused row; its lease runs while this pool lives"
                        ),
                        Ok(()) => {}
                    }
                }
            }
            recorded.refused.push(claim);
        }
        Ok(())
    }

    /// Lets go of a claimed row: its lease ends now and passes to [`ABANDONED`], so no
    /// pool's heartbeat renews it, while the next claim or reap sees an expired lease to take
    /// (the reaper needs an owner to guard its write with). Its try stays counted.
    async fn abandon(&self, claim: &Claimed) -> Result<(), DbErr> {
        let ended = now() - chrono::Duration::seconds(1);
        result::Entity::update_many()
            .col_expr(result::Column::LeaseUntil, Expr::value(ended))
            .col_expr(result::Column::LeaseOwner, Expr::value(ABANDONED))
            .filter(guard(claim))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// Writes one batch in one transaction; returns the jobs whose counters moved, after the
    /// write, in job id order.
    async fn write_batch(&self, batch: &[(Claimed, Disposition)]) -> Result<Vec<JobUpdate>, DbErr> {
        let now = now();
        let txn = self.db.begin().await?;
        // Per job: what the batch finished, and the finished domains by row id.
        let mut moved: BTreeMap<Uuid, (Tally, Vec<FinishedRow>)> = BTreeMap::new();
        // Icons to store, written after the rows in content-address order: two batches that
        // share icons then lock their blob rows in the same order and cannot deadlock.
        let mut icons = Vec::new();
        // Jobs with a row put back for a retry: if the job was cancelled meanwhile, that row
        // must not wait for a worker.
        let mut retried = BTreeSet::new();
        let rows: Vec<_> = batch
            .iter()
            .map(|(claim, disposition)| written(claim, disposition, now))
            .collect();
        // The finished rows go in one statement; retries row by row.
        let mut records = Vec::new();
        let in_bulk: Vec<bool> = batch
            .iter()
            .zip(&rows)
            .map(|((claim, disposition), (row, _))| {
                let record = match disposition {
                    Disposition::Finish(_) => bulk::record(self.backend(), claim, row),
                    _ => None,
                };
                record.map(|r| records.push(r)).is_some()
            })
            .collect();
        let landed_in_bulk = bulk::finish(&txn, records, now).await?;
        for (((claim, disposition), (row, finished)), bulk) in batch.iter().zip(rows).zip(in_bulk) {
            let landed = if bulk {
                landed_in_bulk.contains(&(claim.id, claim.tries))
            } else {
                let res = result::Entity::update_many()
                    .set(row)
                    .filter(guard(claim))
                    .exec(&txn)
                    .await?;
                res.rows_affected == 1
            };
            if !landed {
                continue;
            }
            match disposition {
                Disposition::Finish(Ok(found)) => icons.push(found),
                Disposition::Retry { .. } => {
                    retried.insert(claim.job_id);
                }
                Disposition::Finish(Err(_)) => {}
            }
            if let Some(done) = finished {
                let entry = moved.entry(claim.job_id).or_default();
                entry.0.add(done.status, 1);
                entry.1.push((claim.id, done));
            }
        }
        // One write per content, not per row: sites that share an icon (a CDN's, a platform's
        // default) would otherwise cost a round trip each for the same blob row.
        let mut blobs: Vec<_> = icons.into_iter().flat_map(blobs).collect();
        blobs.sort_by(|a, b| a.sha().cmp(b.sha()));
        blobs.dedup_by(|a, b| a.sha() == b.sha());
        for blob in blobs {
            put_blob(&txn, blob, now).await?;
        }
        for job_id in retried {
            if is_cancelled(&txn, job_id).await? && cancel_rows(&txn, job_id, now).await? > 0 {
                // Counted already; the job's subscribers still hear of the move.
                moved.entry(job_id).or_default();
            }
        }
        let mut updates = Vec::with_capacity(moved.len());
        for (job_id, (tally, finished)) in moved {
            let places: HashMap<Uuid, i32> = settle(&txn, job_id, tally, now, true, true)
                .await?
                .into_iter()
                .collect();
            let mut finished: Vec<ResultColumns> = finished
                .into_iter()
                .map(|(id, mut done)| {
                    done.seq = places.get(&id).copied();
                    done
                })
                .collect();
            finished.sort_by_key(|done| done.seq);
            let job = read_job(&txn, job_id, true)
                .await?
                .ok_or(DbErr::RecordNotUpdated)?;
            updates.push(JobUpdate { job, finished });
        }
        txn.commit().await?;
        Ok(updates)
    }

    /// Finishes as `failed` the rows whose tries are used up and whose lease expired (their
    /// worker died or hung on every try), so no domain holds its job open forever.
    pub async fn reap_exhausted(&self, max_tries: u32) -> StoreResult<Vec<JobUpdate>> {
        let stuck = exhausted_rows(max_tries, now()).all(&self.db).await?;
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
                        trace_context: None,
                    },
                    Disposition::Finish(Err(FindError::new(ErrorCategory::Internal, message))),
                ))
            })
            .collect();
        Ok(self.record(batch).await?.updates)
    }
}

/// Every pending row, through the claim index (its clause repeated for SQLite).
fn pending_rows() -> sea_orm::Select<result::Entity> {
    result::Entity::find().filter(Expr::cust(PENDING))
}

/// Up to 500 pending rows whose tries are used up and whose lease expired by `now`.
fn exhausted_rows(max_tries: u32, now: DateTime<Utc>) -> sea_orm::Select<result::Entity> {
    pending_rows()
        .filter(result::Column::Tries.gte(max_tries as i32))
        .filter(result::Column::LeaseUntil.lt(now))
        .limit(500)
}

/// When a lease of length `lease` taken at `now` ends.
fn lease_end(now: DateTime<Utc>, lease: Duration) -> DateTime<Utc> {
    now + chrono::Duration::from_std(lease).unwrap_or_default()
}

/// The columns that clear a row's lease; every write of a claimed row starts from these.
fn unleased() -> result::ActiveModel {
    result::ActiveModel {
        lease_owner: Set(None),
        lease_until: Set(None),
        ..Default::default()
    }
}

/// The record guard: still pending, still ours, and not claimed again since.
fn guard(claim: &Claimed) -> sea_orm::Condition {
    sea_orm::Condition::all()
        .add(result::Column::Id.eq(claim.id))
        .add(result::Column::Status.eq(ResultStatus::Pending))
        .add(result::Column::LeaseOwner.eq(claim.owner))
        .add(result::Column::Tries.eq(claim.tries))
}

/// The columns a write of `disposition` sets on the claimed row, and for a finished row the
/// domain as progress events show it.
fn written(
    claim: &Claimed,
    disposition: &Disposition,
    now: DateTime<Utc>,
) -> (result::ActiveModel, Option<ResultColumns>) {
    match disposition {
        Disposition::Retry {
            run_at,
            category,
            message,
        } => {
            let row = result::ActiveModel {
                run_at: Set(*run_at),
                error_code: Set(Some(*category)),
                error: Set(Some(message.clone())),
                updated_at: Set(now),
                ..unleased()
            };
            (row, None)
        }
        Disposition::Finish(outcome) => {
            let (row, columns) = finished_row(&claim.domain, claim.tries, outcome, now);
            let row = result::ActiveModel {
                updated_at: Set(now),
                lease_owner: Set(None),
                lease_until: Set(None),
                ..row
            };
            (row, Some(columns))
        }
    }
}

mod bulk;
mod claim;

#[cfg(test)]
mod tests;
