//! The data lifecycle: cancelling a job, deleting or purging one in small batches, the
//! per-domain cache that outlives a job's results, collecting icon blobs nothing points at,
//! a lease so one process of a fleet does the background part, and giving space back.
//!
//! The guarantees, in prose:
//!
//! - **A cancel is one transaction.** The job turns `cancelled` and its unleased pending rows
//!   turn `failed` / `cancelled` together, so no worker claims them afterwards. Rows already
//!   leased finish and are recorded normally; the recorder never moves a job out of
//!   `cancelled` (its final-status write only touches `processing` jobs), and a row of a
//!   cancelled job put back for a retry is cancelled in the same write (`queue.rs`).
//! - **A purge holds no lock for long.** A job's results go a range of positions at a time
//!   (`RETENTION_BATCH_ROWS`), each range in its own short transaction, and the job row goes
//!   last. A deleted job is hidden first (`deleted_at`), so it is 404 at once, and a process
//!   that stops half-way leaves the mark for the retention task to finish. A worker that
//!   records a row of a job being purged changes nothing: its guarded update finds no row.
//! - **The cache survives.** Before a range is deleted, its rows that are still the newest
//!   real fetch of their domain, and young enough to be reused, are upserted into
//!   `domain_cache` in the same transaction; the cache lookups read it beside the results.
//!   Nothing is added to the recording path.
//! - **Blobs are collected in two passes.** A pass marks blobs nothing references
//!   (`orphaned_at`); a later pass deletes those still unreferenced once the mark is older
//!   than a grace period, checking `orphaned_at` in the delete's own `WHERE` so a recorder
//!   that reuses the blob meanwhile (and clears the mark, see `icons::put_blob`) wins. The
//!   grace covers a transaction that copied a reference from a row deleted before the mark:
//!   it must have started before the mark, so it has committed long before the sweep.

use super::sql::{self, FETCHED, HAS_DARK_ICON, HAS_ICON, cached_columns};
use super::write::{cancel_rows, enqueue_job_event, read_job};
use super::{Store, StoreResult, now};
use crate::entities::job;
use crate::model::Job;
use crate::model::webhook::WebhookEvent;
use chrono::{DateTime, Utc};
use sea_orm::{
    ConnectionTrait, DbBackend, EntityTrait, FromQueryResult, Statement, TransactionTrait,
};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// What a purge removed, and its longest transaction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Purged {
    /// Job rows deleted.
    pub jobs: u64,
    /// Result rows deleted.
    pub results: u64,
    /// Results kept in `domain_cache` because the cache still needs them.
    pub kept_for_cache: u64,
    /// The longest single transaction the purge ran.
    pub longest: Duration,
}

impl Purged {
    /// Adds another purge's counts; the longest transaction is the longer one.
    pub fn add(&mut self, other: Purged) {
        self.jobs += other.jobs;
        self.results += other.results;
        self.kept_for_cache += other.kept_for_cache;
        self.longest = self.longest.max(other.longest);
    }
}

#[derive(Debug, FromQueryResult)]
struct Position {
    position: Option<i32>,
}

#[derive(Debug, FromQueryResult)]
struct Id {
    id: Uuid,
}

#[derive(Debug, FromQueryResult)]
struct Sha {
    sha256: String,
}

impl Store {
    /// Cancels a processing job: it turns `cancelled` and its pending rows no worker holds
    /// turn `failed` with the code `cancelled`, in one transaction. Returns the job after the
    /// write, or `None` when it was not processing (finished already, deleted or unknown).
    pub async fn cancel_job(&self, id: Uuid) -> StoreResult<Option<Job>> {
        let now = now();
        let txn = self.db.begin().await?;
        let cancelled = txn
            .execute_raw(Statement::from_sql_and_values(
                self.backend(),
                sql::cancel_job_sql(),
                [id.into(), now.into()],
            ))
            .await?;
        if cancelled.rows_affected() != 1 {
            txn.rollback().await?;
            return Ok(None);
        }
        cancel_rows(&txn, id, now).await?;
        enqueue_job_event(&txn, id, WebhookEvent::JobCancelled, now).await?;
        let job = read_job(&txn, id, false).await?;
        txn.commit().await?;
        Ok(job)
    }

    /// Hides a job from every read at once (it is then being deleted); false when it was
    /// already hidden or never existed.
    pub async fn mark_deleted(&self, id: Uuid) -> StoreResult<bool> {
        let res = self
            .db
            .execute_raw(Statement::from_sql_and_values(
                self.backend(),
                "UPDATE job SET deleted_at = $2 WHERE id = $1 AND deleted_at IS NULL",
                [id.into(), now().into()],
            ))
            .await?;
        Ok(res.rows_affected() == 1)
    }

    /// Deletes a job and its results, `batch` positions per transaction; first keeps in
    /// `domain_cache` each row that is still the newest real fetch of its domain and was
    /// fetched at or after `keep_since` (`None`: the cache is off, keep nothing).
    pub async fn purge_job(
        &self,
        id: Uuid,
        batch: usize,
        keep_since: Option<DateTime<Utc>>,
    ) -> StoreResult<Purged> {
        let backend = self.backend();
        let batch = batch.max(1) as i32;
        let mut purged = Purged::default();
        loop {
            // Read outside the transaction: a SQLite transaction that starts with a read may
            // not be able to write later if another writer commits meanwhile.
            let first = Position::find_by_statement(Statement::from_sql_and_values(
                backend,
                "SELECT MIN(position) AS position FROM result WHERE job_id = $1",
                [id.into()],
            ))
            .one(&self.db)
            .await?
            .and_then(|p| p.position);
            let Some(first) = first else { break };
            let end = first.saturating_add(batch);
            let started = Instant::now();
            let txn = self.db.begin().await?;
            if let Some(since) = keep_since {
                let kept = txn
                    .execute_raw(keep_for_cache(backend, id, first, end, since))
                    .await?;
                purged.kept_for_cache += kept.rows_affected();
            }
            let deleted = txn
                .execute_raw(Statement::from_sql_and_values(
                    backend,
                    "DELETE FROM result WHERE job_id = $1 AND position >= $2 AND position < $3",
                    [id.into(), first.into(), end.into()],
                ))
                .await?;
            txn.commit().await?;
            purged.longest = purged.longest.max(started.elapsed());
            purged.results += deleted.rows_affected();
        }
        let started = Instant::now();
        let deleted = job::Entity::delete_by_id(id).exec(&self.db).await?;
        purged.longest = purged.longest.max(started.elapsed());
        purged.jobs = deleted.rows_affected;
        Ok(purged)
    }

    /// Jobs the retention task should purge, oldest first, at most `limit`: finished jobs last
    /// updated before `finished_before` (`None`: keep every finished job), a watch's finished
    /// checks last updated before `checks_before`, and jobs whose deletion was marked before
    /// `deleted_before` and not finished (the process stopped).
    pub async fn jobs_to_purge(
        &self,
        finished_before: Option<DateTime<Utc>>,
        checks_before: DateTime<Utc>,
        deleted_before: DateTime<Utc>,
        limit: u64,
    ) -> StoreResult<Vec<Uuid>> {
        let (clause, mut values) = match finished_before {
            Some(cut) => (
                "(deleted_at < $1 OR (deleted_at IS NULL AND status <> 'processing' \
                 AND updated_at < $2))",
                vec![deleted_before.into(), cut.into()],
            ),
            None => ("deleted_at < $1", vec![deleted_before.into()]),
        };
        values.push(checks_before.into());
        let checks = format!(
            "(watch_id IS NOT NULL AND status <> 'processing' AND updated_at < ${})",
            values.len()
        );
        values.push((limit as i64).into());
        let n = values.len();
        let sql =
            format!("SELECT id FROM job WHERE {clause} OR {checks} ORDER BY updated_at LIMIT ${n}");
        let rows =
            Id::find_by_statement(Statement::from_sql_and_values(self.backend(), sql, values))
                .all(&self.db)
                .await?;
        Ok(rows.into_iter().map(|r| r.id).collect())
    }

    /// Deletes up to `limit` rows of `domain_cache` fetched before `before` (too old for any
    /// job to reuse); returns how many.
    pub async fn prune_domain_cache(&self, before: DateTime<Utc>, limit: u64) -> StoreResult<u64> {
        let res = self
            .db
            .execute_raw(Statement::from_sql_and_values(
                self.backend(),
                "DELETE FROM domain_cache WHERE domain IN (SELECT domain FROM domain_cache \
                 WHERE fetched_at < $1 LIMIT $2)",
                [before.into(), (limit as i64).into()],
            ))
            .await?;
        Ok(res.rows_affected())
    }

    /// One page of the blob marking pass, over the blobs after `after` in content-address
    /// order: marks those nothing references and clears the mark of those referenced again.
    /// Returns the page's last address, or `None` at the end.
    pub async fn mark_orphan_blobs(&self, after: &str, limit: u64) -> StoreResult<Option<String>> {
        let backend = self.backend();
        let page = Sha::find_by_statement(Statement::from_sql_and_values(
            backend,
            "SELECT sha256 FROM icon_blob WHERE sha256 > $1 ORDER BY sha256 LIMIT $2",
            [after.into(), (limit as i64).into()],
        ))
        .all(&self.db)
        .await?;
        let Some(last) = page.last().map(|s| s.sha256.clone()) else {
            return Ok(None);
        };
        let range = "sha256 > $1 AND sha256 <= $2";
        let unreferenced = unreferenced();
        let mark = format!(
            "UPDATE icon_blob SET orphaned_at = $3 WHERE {range} AND orphaned_at IS NULL \
             AND {unreferenced}"
        );
        let unmark = format!(
            "UPDATE icon_blob SET orphaned_at = NULL WHERE {range} AND orphaned_at IS NOT NULL \
             AND NOT ({unreferenced})"
        );
        for sql in [mark, unmark] {
            self.db
                .execute_raw(Statement::from_sql_and_values(
                    backend,
                    sql,
                    [after.into(), last.clone().into(), now().into()],
                ))
                .await?;
        }
        Ok(Some(last))
    }

    /// Deletes up to `limit` blobs marked before `marked_before` that nothing references
    /// now; returns how many.
    pub async fn sweep_orphan_blobs(
        &self,
        marked_before: DateTime<Utc>,
        limit: u64,
    ) -> StoreResult<u64> {
        // `orphaned_at` is checked on the row being deleted, not only in the subquery: on
        // PostgreSQL a recorder that reused the blob meanwhile cleared it, and the delete
        // re-checks its own row's conditions after waiting for that recorder's lock.
        let sql = format!(
            "DELETE FROM icon_blob WHERE orphaned_at < $1 AND sha256 IN (SELECT sha256 FROM \
             icon_blob WHERE orphaned_at < $1 AND {} ORDER BY sha256 LIMIT $2)",
            unreferenced()
        );
        let res = self
            .db
            .execute_raw(Statement::from_sql_and_values(
                self.backend(),
                sql,
                [marked_before.into(), (limit as i64).into()],
            ))
            .await?;
        Ok(res.rows_affected())
    }

    /// Takes (or keeps) the lease `name` for `owner` until `until`, unless another owner holds
    /// it unexpired; true when `owner` holds it now.
    ///
    /// A row rather than a PostgreSQL advisory lock: it works on SQLite as well (several
    /// processes may share one file), and it needs no connection held for the whole task
    /// (a session advisory lock belongs to one pooled connection; a transaction-scoped one
    /// would make the whole purge one long transaction, which is what batches avoid). A
    /// holder that dies lets its lease run out, and another process takes over.
    pub async fn take_lease(
        &self,
        name: &str,
        owner: Uuid,
        until: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let res = self
            .db
            .execute_raw(Statement::from_sql_and_values(
                self.backend(),
                "INSERT INTO maintenance_lease (name, owner, lease_until) VALUES ($1, $2, $3) \
                 ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, \
                   lease_until = excluded.lease_until \
                 WHERE maintenance_lease.owner = excluded.owner \
                   OR maintenance_lease.lease_until < $4",
                [name.into(), owner.into(), until.into(), now().into()],
            ))
            .await?;
        Ok(res.rows_affected() == 1)
    }

    /// Ends `owner`'s lease `name` now, so another process need not wait for it to run out.
    pub async fn release_lease(&self, name: &str, owner: Uuid) -> StoreResult<()> {
        self.db
            .execute_raw(Statement::from_sql_and_values(
                self.backend(),
                "UPDATE maintenance_lease SET lease_until = $3 WHERE name = $1 AND owner = $2",
                // Already over, whatever clock resolution the next taker compares with.
                [
                    name.into(),
                    owner.into(),
                    (now() - chrono::Duration::seconds(1)).into(),
                ],
            ))
            .await?;
        Ok(())
    }

    /// How many worker processes hold live row leases now: the fleet's size as the database
    /// knows it, without Redis (see `politeness`). An idle worker holds none and is not
    /// counted; a killed one is counted until its leases run out, which errs on the polite
    /// side. The partial index on `lease_owner` keeps this a read of the leased rows only.
    pub async fn live_workers(&self) -> StoreResult<usize> {
        let row = self
            .db
            .query_one_raw(Statement::from_sql_and_values(
                self.backend(),
                "SELECT COUNT(DISTINCT lease_owner) FROM result \
                 WHERE lease_owner IS NOT NULL AND lease_until > $1",
                [now().into()],
            ))
            .await?;
        let n = match row {
            Some(row) => row.try_get_by_index::<i64>(0)?,
            None => 0,
        };
        Ok(usize::try_from(n).unwrap_or(0))
    }

    /// Gives the pages freed by purges back to the file system (SQLite, in incremental
    /// auto-vacuum mode); PostgreSQL's autovacuum reuses the space by itself.
    pub async fn reclaim_space(&self) -> StoreResult<()> {
        if self.backend() == DbBackend::Sqlite {
            self.db
                .execute_unprepared("PRAGMA incremental_vacuum")
                .await?;
            // In WAL mode the file is cut short only when a checkpoint copies the vacuum's
            // pages back. A passive one waits for no reader or writer; if a reader holds it
            // back, the next automatic checkpoint finishes the job.
            self.db
                .execute_unprepared("PRAGMA wal_checkpoint(PASSIVE)")
                .await?;
        }
        Ok(())
    }

    /// Switches an SQLite file made before incremental auto-vacuum to it: the mode is only
    /// set on a new file's connection (`connect`), and an existing file needs one `VACUUM`
    /// (which rewrites it, so it is logged). Nothing to do on PostgreSQL.
    pub(super) async fn ensure_incremental_vacuum(&self) -> StoreResult<()> {
        if self.backend() != DbBackend::Sqlite {
            return Ok(());
        }
        let mode = super::number(&self.db, "PRAGMA auto_vacuum").await?;
        if mode != 2 {
            tracing::info!(
                auto_vacuum = mode,
                "switching the SQLite file to incremental auto-vacuum (one VACUUM; a large file takes a while)"
            );
            self.db
                .execute_unprepared("PRAGMA auto_vacuum = INCREMENTAL")
                .await?;
            self.db.execute_unprepared("VACUUM").await?;
            tracing::info!("the SQLite file now returns freed pages after purges");
        }
        Ok(())
    }
}

/// Blobs no result and no `domain_cache` row point at, as the chosen icon or as its dark
/// variant, and no change in the history names as its before or after (a change's versions
/// are shown beside it): index probes (`idx_result_icon` and `idx_result_dark_icon`, whose
/// clauses [`HAS_ICON`] and [`HAS_DARK_ICON`] are repeated for SQLite, their `domain_cache`
/// twins, and `idx_icon_change_before_sha256` and `…_after_sha256`).
fn unreferenced() -> String {
    format!(
        "NOT EXISTS (SELECT 1 FROM result r WHERE r.icon_sha256 = icon_blob.sha256 \
           AND {HAS_ICON}) \
         AND NOT EXISTS (SELECT 1 FROM result r WHERE r.dark_icon_sha256 = icon_blob.sha256 \
           AND {HAS_DARK_ICON}) \
         AND NOT EXISTS (SELECT 1 FROM domain_cache c WHERE c.icon_sha256 = icon_blob.sha256) \
         AND NOT EXISTS (SELECT 1 FROM domain_cache c \
           WHERE c.dark_icon_sha256 = icon_blob.sha256) \
         AND NOT EXISTS (SELECT 1 FROM icon_change h \
           WHERE h.before_sha256 = icon_blob.sha256) \
         AND NOT EXISTS (SELECT 1 FROM icon_change h \
           WHERE h.after_sha256 = icon_blob.sha256)"
    )
}

/// Upserts into `domain_cache` the rows of job `job_id` at positions `first..end` that are
/// real fetches made at or after `since` and still the newest fetch of their domain; a row
/// there already is replaced only by a newer fetch.
fn keep_for_cache(
    backend: DbBackend,
    job_id: Uuid,
    first: i32,
    end: i32,
    since: DateTime<Utc>,
) -> Statement {
    let columns = cached_columns();
    let into = columns.join(", ");
    let from = columns
        .iter()
        .map(|c| format!("r.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    let set = columns
        .iter()
        .filter(|c| **c != "domain")
        .map(|c| format!("{c} = excluded.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    // The newer-fetch probe repeats the cache index's clause ([`FETCHED`]) so SQLite uses it;
    // inside the subquery the bare column names are `q`'s.
    let sql = format!(
        "INSERT INTO domain_cache ({into}, updated_at) \
         SELECT {from}, $5 FROM result r \
         WHERE r.job_id = $1 AND r.position >= $2 AND r.position < $3 \
           AND r.cached = false AND r.status <> 'pending' AND r.fetched_at >= $4 \
           AND NOT EXISTS (SELECT 1 FROM result q WHERE q.domain = r.domain AND {FETCHED} \
             AND q.fetched_at > r.fetched_at) \
         ON CONFLICT (domain) DO UPDATE SET {set}, updated_at = excluded.updated_at \
         WHERE domain_cache.fetched_at < excluded.fetched_at"
    );
    Statement::from_sql_and_values(
        backend,
        sql,
        [
            job_id.into(),
            first.into(),
            end.into(),
            since.into(),
            now().into(),
        ],
    )
}
