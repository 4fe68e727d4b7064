//! Watches: creating one with its domains' spread first checks, reading them with their
//! domains and changes, deleting, the scheduler's claim of due domains (one low-priority job
//! per watch, marked with `job.watch_id`), the reported changes a subscription polls, and the
//! purge of old history and deleted watches.

use super::changes::{prefixed, snapshot};
use super::write::{client_named, insert_job, upsert_client};
use super::{Store, StoreResult, now};
use crate::domain::Domain;
use crate::model::watch::{IconChange, Watch, WatchedDomain, first_due, next_due};
use crate::model::{Page, Priority};
use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DbBackend, DbErr, QueryResult, Statement, TransactionTrait, Value};
use std::collections::BTreeMap;
use uuid::Uuid;

/// Rows per insert statement when a watch's domains or a check job's rows are written: well
/// under either database's limit of bound values.
const INSERT_CHUNK: usize = 500;

/// A due watched domain: its name, the slot it was due at, and its watch's period.
type Due = (String, DateTime<Utc>, i64);

/// The columns a [`Watch`] is read from (`w` the watch, `c` its client), for a `WHERE` to
/// follow: its domain count and its changes' count and newest time come along.
const WATCH_COLUMNS: &str = "w.id, w.name, w.every_secs, w.created_at, c.client_id AS client_name, \
     (SELECT COUNT(*) FROM watch_domain wd WHERE wd.watch_id = w.id) AS domain_count, \
     (SELECT COUNT(*) FROM icon_change ic WHERE ic.detected_at >= w.created_at \
        AND ic.domain IN (SELECT domain FROM watch_domain wd WHERE wd.watch_id = w.id)) \
       AS change_count, \
     (SELECT MAX(ic.detected_at) FROM icon_change ic WHERE ic.detected_at >= w.created_at \
        AND ic.domain IN (SELECT domain FROM watch_domain wd WHERE wd.watch_id = w.id)) \
       AS last_change_at \
     FROM watch w JOIN client c ON c.id = w.client_id";

/// The changes of watch `$1`'s domains since it was created, for a `WHERE` to continue.
const WATCH_CHANGES: &str = "FROM icon_change ic JOIN watch w ON w.id = $1 \
     WHERE ic.detected_at >= w.created_at \
       AND ic.domain IN (SELECT domain FROM watch_domain wd WHERE wd.watch_id = $1)";

impl Store {
    /// Creates a watch of `domains` (distinct, in order) for the client named `client_name`
    /// (created if new), checked every `every_secs`; domain `i` of `n` is first due at
    /// `created + every × i / n`. One transaction.
    pub async fn create_watch(
        &self,
        client_name: &str,
        name: Option<&str>,
        every_secs: i64,
        domains: &[Domain],
    ) -> StoreResult<Watch> {
        let now = now();
        let txn = self.db.begin().await?;
        let client = upsert_client(&txn, client_name, now).await?;
        let id = Uuid::now_v7();
        txn.execute_raw(self.watch_sql(
            "INSERT INTO watch (id, client_id, name, every_secs, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
            vec![
                id.into(),
                client.id.into(),
                name.map(str::to_owned).into(),
                every_secs.into(),
                now.into(),
            ],
        ))
        .await?;
        for (n, chunk) in domains.chunks(INSERT_CHUNK).enumerate() {
            let mut values: Vec<Value> = Vec::with_capacity(chunk.len() * 4 + 1);
            values.push(id.into());
            let rows: Vec<String> = chunk
                .iter()
                .enumerate()
                .map(|(i, domain)| {
                    let position = n * INSERT_CHUNK + i;
                    let at = values.len() + 1;
                    values.push(domain.as_str().into());
                    values.push((position as i32).into());
                    values.push(first_due(now, every_secs, position, domains.len()).into());
                    format!("($1, ${at}, ${}, ${})", at + 1, at + 2)
                })
                .collect();
            txn.execute_raw(self.watch_sql(
                &format!(
                    "INSERT INTO watch_domain (watch_id, domain, position, next_check_at) \
                     VALUES {}",
                    rows.join(", ")
                ),
                values,
            ))
            .await?;
        }
        let watch = read_watch(&txn, id)
            .await?
            .ok_or(DbErr::RecordNotInserted)?;
        txn.commit().await?;
        Ok(watch)
    }

    /// How many domains the live watches of client `client_name` hold.
    pub async fn watched_domain_count(&self, client_name: &str) -> StoreResult<u64> {
        let Some(client) = client_named(&self.db, client_name).await? else {
            return Ok(0);
        };
        let row = self
            .db
            .query_one_raw(self.watch_sql(
                "SELECT COUNT(*) AS n FROM watch_domain wd JOIN watch w ON w.id = wd.watch_id \
                 WHERE w.client_id = $1 AND w.deleted_at IS NULL",
                vec![client.id.into()],
            ))
            .await?;
        Ok(row.map_or(Ok(0), |r| r.try_get::<i64>("", "n"))? as u64)
    }

    /// The live watches of client `client_name` (every client's with `None`), oldest first.
    pub async fn watches(&self, client_name: Option<&str>) -> StoreResult<Vec<Watch>> {
        let (clause, values) = match client_name {
            Some(name) => ("AND c.client_id = $1", vec![name.into()]),
            None => ("", vec![]),
        };
        let rows = self
            .db
            .query_all_raw(self.watch_sql(
                &format!(
                    "SELECT {WATCH_COLUMNS} WHERE w.deleted_at IS NULL {clause} \
                     ORDER BY w.created_at, w.id"
                ),
                values,
            ))
            .await?;
        Ok(rows.iter().map(watch_row).collect::<Result<_, _>>()?)
    }

    /// Live watch `id`.
    pub async fn watch(&self, id: Uuid) -> StoreResult<Option<Watch>> {
        Ok(read_watch(&self.db, id).await?)
    }

    /// A page of watch `id`'s domains in the order given, each with its icon state, and how
    /// many it has.
    pub async fn watched_domains(
        &self,
        id: Uuid,
        page: Page,
    ) -> StoreResult<(Vec<WatchedDomain>, u64)> {
        let total = self
            .count(
                "SELECT COUNT(*) AS n FROM watch_domain WHERE watch_id = $1",
                id,
            )
            .await?;
        let rows = self
            .db
            .query_all_raw(self.watch_sql(
                "SELECT wd.domain, wd.last_checked_at, wd.last_status, wd.last_error_code, \
                   wd.next_check_at, s.status, s.url, s.sha256, s.mime, s.width, s.height, \
                   s.bytes, s.error_code, s.checked_at AS at \
                 FROM watch_domain wd LEFT JOIN icon_state s ON s.domain = wd.domain \
                 WHERE wd.watch_id = $1 ORDER BY wd.position LIMIT $2 OFFSET $3",
                vec![
                    id.into(),
                    (page.per_page as i64).into(),
                    (page.offset() as i64).into(),
                ],
            ))
            .await?;
        let items = rows
            .iter()
            .map(|row| {
                let status: Option<String> = row.try_get("", "status")?;
                Ok(WatchedDomain {
                    domain: row.try_get("", "domain")?,
                    last_checked_at: row.try_get("", "last_checked_at")?,
                    last_status: row.try_get("", "last_status")?,
                    last_error: row.try_get("", "last_error_code")?,
                    next_check_at: row.try_get("", "next_check_at")?,
                    current: status.map(|_| snapshot(row, "")).transpose()?,
                })
            })
            .collect::<Result<_, DbErr>>()?;
        Ok((items, total))
    }

    /// A page of the changes of watch `id`'s domains since it was created, newest first, and
    /// how many there are.
    pub async fn watch_changes(&self, id: Uuid, page: Page) -> StoreResult<(Vec<IconChange>, u64)> {
        let total = self
            .count(&format!("SELECT COUNT(*) AS n {WATCH_CHANGES}"), id)
            .await?;
        let rows = self
            .db
            .query_all_raw(self.watch_sql(
                &format!(
                    "SELECT {} {WATCH_CHANGES} ORDER BY ic.detected_at DESC, ic.id DESC \
                     LIMIT $2 OFFSET $3",
                    change_columns()
                ),
                vec![
                    id.into(),
                    (page.per_page as i64).into(),
                    (page.offset() as i64).into(),
                ],
            ))
            .await?;
        Ok((
            rows.iter().map(change_row).collect::<Result<_, _>>()?,
            total,
        ))
    }

    /// The reported changes of watch `id`'s domains detected at or after `since`, oldest
    /// first: what a subscription polls.
    pub async fn reported_changes_since(
        &self,
        id: Uuid,
        since: DateTime<Utc>,
    ) -> StoreResult<Vec<IconChange>> {
        let rows = self
            .db
            .query_all_raw(self.watch_sql(
                &format!(
                    "SELECT {} {WATCH_CHANGES} AND ic.reported = true AND ic.detected_at >= $2 \
                     ORDER BY ic.detected_at, ic.id LIMIT 1000",
                    change_columns()
                ),
                vec![id.into(), since.into()],
            ))
            .await?;
        Ok(rows.iter().map(change_row).collect::<Result<_, _>>()?)
    }

    /// Whether watch `id` is live (not deleted): an `iconChanged` stream ends when it is not.
    pub async fn watch_is_live(&self, id: Uuid) -> StoreResult<bool> {
        let row = self
            .db
            .query_one_raw(self.watch_sql(
                "SELECT 1 AS one FROM watch WHERE id = $1 AND deleted_at IS NULL",
                vec![id.into()],
            ))
            .await?;
        Ok(row.is_some())
    }

    /// Marks watch `id` deleted (its rows go with the retention task's next pass); false if
    /// there was no such live watch.
    pub async fn delete_watch(&self, id: Uuid) -> StoreResult<bool> {
        let res = self
            .db
            .execute_raw(self.watch_sql(
                "UPDATE watch SET deleted_at = $2 WHERE id = $1 AND deleted_at IS NULL",
                vec![id.into(), now().into()],
            ))
            .await?;
        Ok(res.rows_affected() == 1)
    }

    /// Takes up to `limit` due watched domains and makes their checks: per watch one
    /// low-priority job of its client (`job.watch_id` set, no copy from the cache, so every
    /// domain is fetched), and each domain's next slot one period on, in one transaction.
    /// Answers how many domains were scheduled.
    ///
    /// Processes of a fleet each run this on their tick; they never take one row twice:
    /// PostgreSQL skips rows another transaction holds, and on SQLite a write first takes the
    /// database's write lock before anything is read.
    pub async fn schedule_watch_checks(&self, limit: u64) -> StoreResult<usize> {
        let txn = self.db.begin().await?;
        let lock = match self.backend() {
            DbBackend::Postgres => " FOR UPDATE OF wd SKIP LOCKED",
            _ => {
                txn.execute_unprepared("UPDATE watch_domain SET position = position WHERE 1 = 0")
                    .await?;
                ""
            }
        };
        let now = now();
        let due = txn
            .query_all_raw(self.watch_sql(
                &format!(
                    "SELECT wd.watch_id, wd.domain, wd.next_check_at, w.every_secs, \
                       c.client_id AS client_name \
                     FROM watch_domain wd JOIN watch w ON w.id = wd.watch_id \
                     JOIN client c ON c.id = w.client_id \
                     WHERE wd.next_check_at <= $1 AND w.deleted_at IS NULL \
                     ORDER BY wd.next_check_at LIMIT $2{lock}"
                ),
                vec![now.into(), (limit as i64).into()],
            ))
            .await?;
        let mut watches: BTreeMap<Uuid, (String, Vec<Due>)> = BTreeMap::new();
        for row in &due {
            let entry = watches
                .entry(row.try_get("", "watch_id")?)
                .or_insert_with(|| (String::new(), Vec::new()));
            entry.0 = row.try_get("", "client_name")?;
            entry.1.push((
                row.try_get("", "domain")?,
                row.try_get("", "next_check_at")?,
                row.try_get("", "every_secs")?,
            ));
        }
        for (watch_id, (client_name, domains)) in watches {
            self.make_check(&txn, watch_id, &client_name, &domains, now)
                .await?;
        }
        txn.commit().await?;
        Ok(due.len())
    }

    /// One check job of `domains` for watch `watch_id`, and their next slots.
    async fn make_check(
        &self,
        txn: &impl ConnectionTrait,
        watch_id: Uuid,
        client_name: &str,
        domains: &[Due],
        now: DateTime<Utc>,
    ) -> Result<(), DbErr> {
        let total = domains.len() as i32;
        let job = insert_job(txn, client_name, None, Priority::Low, total, now).await?;
        txn.execute_raw(self.watch_sql(
            "UPDATE job SET watch_id = $2 WHERE id = $1",
            vec![job.id.into(), watch_id.into()],
        ))
        .await?;
        for (n, chunk) in domains.chunks(INSERT_CHUNK).enumerate() {
            let mut values: Vec<Value> = vec![job.id.into(), now.into()];
            let rows: Vec<String> = chunk
                .iter()
                .enumerate()
                .map(|(i, (domain, _, _))| {
                    let at = values.len() + 1;
                    values.push(Uuid::now_v7().into());
                    values.push(((n * INSERT_CHUNK + i) as i32).into());
                    values.push(domain.clone().into());
                    format!(
                        "(${at}, $1, ${}, ${}, 'pending', 0, false, $2, $2, $2)",
                        at + 1,
                        at + 2
                    )
                })
                .collect();
            txn.execute_raw(self.watch_sql(
                &format!(
                    "INSERT INTO result (id, job_id, position, domain, status, tries, cached, \
                       run_at, created_at, updated_at) VALUES {}",
                    rows.join(", ")
                ),
                values,
            ))
            .await?;
        }
        for (domain, due, every) in domains {
            txn.execute_raw(self.watch_sql(
                "UPDATE watch_domain SET next_check_at = $3 WHERE watch_id = $1 AND domain = $2",
                vec![
                    watch_id.into(),
                    domain.clone().into(),
                    next_due(*due, *every, now).into(),
                ],
            ))
            .await?;
        }
        Ok(())
    }

    /// Deletes up to `limit` changes detected before `before`; returns how many.
    pub async fn prune_icon_changes(&self, before: DateTime<Utc>, limit: u64) -> StoreResult<u64> {
        let res = self
            .db
            .execute_raw(self.watch_sql(
                "DELETE FROM icon_change WHERE id IN \
                   (SELECT id FROM icon_change WHERE detected_at < $1 LIMIT $2)",
                vec![before.into(), (limit as i64).into()],
            ))
            .await?;
        Ok(res.rows_affected())
    }

    /// Deletes up to `limit` domain rows of deleted watches, and the watches left without
    /// any; returns how many rows went.
    pub async fn purge_deleted_watches(&self, limit: u64) -> StoreResult<u64> {
        let deleted = self
            .db
            .query_all_raw(self.watch_sql(
                "SELECT id FROM watch WHERE deleted_at IS NOT NULL LIMIT 100",
                vec![],
            ))
            .await?;
        let mut purged = 0;
        for row in deleted {
            let id: Uuid = row.try_get("", "id")?;
            let res = self
                .db
                .execute_raw(self.watch_sql(
                    "DELETE FROM watch_domain WHERE watch_id = $1 AND domain IN \
                       (SELECT domain FROM watch_domain WHERE watch_id = $1 LIMIT $2)",
                    vec![id.into(), (limit.saturating_sub(purged) as i64).into()],
                ))
                .await?;
            purged += res.rows_affected();
            if purged >= limit {
                break;
            }
            self.db
                .execute_raw(self.watch_sql("DELETE FROM watch WHERE id = $1", vec![id.into()]))
                .await?;
            purged += 1;
        }
        Ok(purged)
    }

    /// A query's count of rows for id `$1`.
    async fn count(&self, sql: &str, id: Uuid) -> Result<u64, DbErr> {
        let row = self
            .db
            .query_one_raw(self.watch_sql(sql, vec![id.into()]))
            .await?;
        Ok(row.map_or(Ok(0), |r| r.try_get::<i64>("", "n"))? as u64)
    }

    /// A statement with positional values for this database.
    fn watch_sql(&self, sql: &str, values: Vec<Value>) -> Statement {
        Statement::from_sql_and_values(self.backend(), sql, values)
    }
}

/// Live watch `id`, read in `db`.
async fn read_watch(db: &impl ConnectionTrait, id: Uuid) -> Result<Option<Watch>, DbErr> {
    let row = db
        .query_one_raw(Statement::from_sql_and_values(
            db.get_database_backend(),
            format!("SELECT {WATCH_COLUMNS} WHERE w.id = $1 AND w.deleted_at IS NULL"),
            [id.into()],
        ))
        .await?;
    row.as_ref().map(watch_row).transpose()
}

/// A watch from a row of [`WATCH_COLUMNS`].
fn watch_row(row: &QueryResult) -> Result<Watch, DbErr> {
    let every: i64 = row.try_get("", "every_secs")?;
    let count = |c: &str| -> Result<i32, DbErr> {
        Ok(i32::try_from(row.try_get::<i64>("", c)?).unwrap_or(i32::MAX))
    };
    Ok(Watch {
        id: row.try_get::<Uuid>("", "id")?.to_string().into(),
        name: row.try_get("", "name")?,
        every: i32::try_from(every).unwrap_or(i32::MAX),
        domain_count: count("domain_count")?,
        created_at: row.try_get("", "created_at")?,
        client_id: row.try_get("", "client_name")?,
        change_count: count("change_count")?,
        last_change_at: row.try_get("", "last_change_at")?,
    })
}

/// The columns a change is read from (`ic`).
fn change_columns() -> String {
    format!(
        "ic.id, ic.domain, {}, {}, ic.detected_at, ic.source, ic.reported",
        prefixed("ic.before_"),
        prefixed("ic.after_")
    )
}

/// A change from a row of [`change_columns`].
fn change_row(row: &QueryResult) -> Result<IconChange, DbErr> {
    Ok(IconChange {
        id: row.try_get::<Uuid>("", "id")?.to_string().into(),
        domain: row.try_get("", "domain")?,
        before: snapshot(row, "before_")?,
        after: snapshot(row, "after_")?,
        detected_at: row.try_get("", "detected_at")?,
        source: row.try_get("", "source")?,
        reported: row.try_get("", "reported")?,
    })
}
