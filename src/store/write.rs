//! The writes the store's parts share: one way to create a job, one way to count finished rows
//! (counters, final status, order of finishing), one way to cancel rows, how an outcome
//! becomes a row, the client row, and the icon bytes.
//!
//! Below every other part but [`super::sql`]: the parts call it, it calls none of them.

use super::changes::{Observed, Outcome, insert_delivery, observe};
use super::sql::{self, COUNT, NOT_DELETED};
use crate::entities::{client, icon_blob, job, result};
use crate::model::webhook::WebhookEvent;
use crate::model::{
    Candidate, ChangeSource, ErrorCategory, FindOutcome, Found, IconBytes, IconView, Job,
    JobStatus, Priority, ResultColumns, ResultStatus, Tally, icon_path,
};
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Alias, Expr, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait,
    QueryFilter, Statement, TransactionTrait,
};
use std::net::IpAddr;
use uuid::Uuid;

/// The error text of a domain a cancel finished (after its `cancelled: ` code, as stored).
pub const CANCELLED_MESSAGE: &str = "job cancelled before this domain was fetched";

/// Creates the job row of `total` domains for the client named `client_name` (created if
/// this is its first job), `processing` with nothing counted: the one way a job comes to be.
/// Its rows and any counts follow in the same transaction. The job keeps the trace context
/// of the span this runs in, so the work it starts joins that trace.
pub(super) async fn insert_job(
    db: &impl ConnectionTrait,
    client_name: &str,
    source_ip: Option<IpAddr>,
    priority: Priority,
    total: i32,
    now: DateTime<Utc>,
) -> Result<Job, DbErr> {
    let client = upsert_client(db, client_name, now).await?;
    let row = job::Model {
        id: Uuid::now_v7(),
        client_ref: client.id,
        status: JobStatus::Processing,
        total,
        completed: 0,
        failed: 0,
        created_at: now,
        updated_at: now,
        source_ip: source_ip.map(|ip| ip.to_string()),
        priority,
        trace_context: crate::telemetry::current_traceparent(),
    };
    job::Entity::insert(job::ActiveModel::from(row.clone()))
        .exec_without_returning(db)
        .await?;
    Ok(row.into_job(client.client_id))
}

/// Counts rows of job `job_id` that this transaction finished: adds `tally` to the counters,
/// sets the final status when they reach the total, and numbers the rows in the job's order
/// of finishing (returning each row's place when `returning`).
///
/// The counter write holds the job row's lock to the end of the transaction, so no two
/// transactions number one job at once and the numbers follow commit order. A job that is
/// not there (a count that did not move) fails the write: it would otherwise stay open.
///
/// When `notify` and this write ends the job, its webhook deliveries are queued in the same
/// transaction ([`enqueue_job_event`]), so an end that commits always has its events.
pub(super) async fn settle(
    db: &impl ConnectionTrait,
    job_id: Uuid,
    tally: Tally,
    now: DateTime<Utc>,
    returning: bool,
    notify: bool,
) -> Result<Vec<(Uuid, i32)>, DbErr> {
    let backend = db.get_database_backend();
    let counted = db
        .execute_raw(Statement::from_sql_and_values(
            backend,
            COUNT,
            [
                job_id.into(),
                tally.completed.into(),
                tally.failed.into(),
                now.into(),
            ],
        ))
        .await?;
    if counted.rows_affected() != 1 {
        return Err(DbErr::RecordNotUpdated);
    }
    let finished = db
        .execute_raw(Statement::from_sql_and_values(
            backend,
            sql::finish_sql(),
            [job_id.into()],
        ))
        .await?;
    if finished.rows_affected() == 1 {
        let ended = db
            .query_one_raw(Statement::from_sql_and_values(
                backend,
                "SELECT status, watch_id FROM job WHERE id = $1",
                [job_id.into()],
            ))
            .await?;
        let (status, watch) = match ended {
            Some(row) => (
                Some(row.try_get::<JobStatus>("", "status")?),
                row.try_get::<Option<Uuid>>("", "watch_id")?,
            ),
            None => (None, None),
        };
        // A watch's check sends no job events: its end is what its domains now show.
        if watch.is_some() {
            observe_check(db, job_id, now).await?;
        } else if let Some(event) = status.filter(|_| notify).and_then(WebhookEvent::ending) {
            enqueue_job_event(db, job_id, event, now).await?;
        }
    }
    number_finished(db, job_id, returning).await
}

/// Hands what a watch's check job `job_id` found for each of its domains to change
/// detection ([`observe`]), in the transaction that ends the job.
async fn observe_check(
    db: &impl ConnectionTrait,
    job_id: Uuid,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    let rows = db
        .query_all_raw(Statement::from_sql_and_values(
            db.get_database_backend(),
            "SELECT r.domain, r.status, r.error_code, r.favicon_url, r.icon_sha256, r.mime,                r.width, r.height, r.fetched_at, b.size              FROM result r LEFT JOIN icon_blob b ON b.sha256 = r.icon_sha256              WHERE r.job_id = $1",
            [job_id.into()],
        ))
        .await?;
    let mut observed = Vec::with_capacity(rows.len());
    for row in rows {
        let domain: String = row.try_get("", "domain")?;
        let url: Option<String> = row.try_get("", "favicon_url")?;
        let sha256: Option<String> = row.try_get("", "icon_sha256")?;
        let mime: Option<String> = row.try_get("", "mime")?;
        let at: Option<DateTime<Utc>> = row.try_get("", "fetched_at")?;
        let outcome = Outcome {
            status: row.try_get("", "status")?,
            error_code: row.try_get::<Option<ErrorCategory>>("", "error_code")?,
            url: url.as_deref(),
            sha256: sha256.as_deref(),
            mime: mime.as_deref(),
            width: row.try_get("", "width")?,
            height: row.try_get("", "height")?,
            bytes: row.try_get("", "size")?,
        };
        observed.extend(Observed::new(&domain, outcome, at.unwrap_or(now)));
    }
    observe(db, observed, ChangeSource::Watch, now).await?;
    Ok(())
}

/// Gives the rows of job `job_id` that the transaction `db` has finished and not numbered yet
/// their places in the job's order of finishing; returns each row's id and place when
/// `returning`. Only [`settle`] calls it (and tests), after the counter write that holds the
/// job's lock.
pub(super) async fn number_finished(
    db: &impl ConnectionTrait,
    job_id: Uuid,
    returning: bool,
) -> Result<Vec<(Uuid, i32)>, DbErr> {
    let statement = Statement::from_sql_and_values(
        db.get_database_backend(),
        sql::number_sql(returning),
        [job_id.into()],
    );
    if !returning {
        db.execute_raw(statement).await?;
        return Ok(Vec::new());
    }
    db.query_all_raw(statement)
        .await?
        .into_iter()
        .map(|row| Ok((row.try_get("", "id")?, row.try_get("", "finished_seq")?)))
        .collect()
}

/// Finishes the unheld pending rows of job `job_id` as cancelled and counts them (each as
/// failed, [`Tally::cancelled`]); returns how many. The caller has checked the job is
/// cancelled, in this transaction or before it (a cancelled job never changes status again).
pub(super) async fn cancel_rows(
    db: &impl ConnectionTrait,
    job_id: Uuid,
    now: DateTime<Utc>,
) -> Result<u64, DbErr> {
    let res = db
        .execute_raw(Statement::from_sql_and_values(
            db.get_database_backend(),
            sql::cancel_rows_sql(),
            [
                job_id.into(),
                now.into(),
                format!("cancelled: {CANCELLED_MESSAGE}").into(),
            ],
        ))
        .await?;
    let n = res.rows_affected();
    if n > 0 {
        settle(db, job_id, Tally::cancelled(n), now, false, false).await?;
    }
    Ok(n)
}

/// If job `job_id` is cancelled, finishes and counts its unheld pending rows in a
/// transaction of their own; returns how many.
pub(super) async fn cancel_leftovers(db: &DatabaseConnection, job_id: Uuid) -> Result<u64, DbErr> {
    // Read outside the transaction (SQLite: a transaction that starts with a read may not be
    // able to write later); a cancelled job never changes status again.
    if !is_cancelled(db, job_id).await? {
        return Ok(0);
    }
    let txn = db.begin().await?;
    let n = cancel_rows(&txn, job_id, super::now()).await?;
    txn.commit().await?;
    Ok(n)
}

/// Whether job `job_id` is cancelled.
pub(super) async fn is_cancelled(db: &impl ConnectionTrait, job_id: Uuid) -> Result<bool, DbErr> {
    Ok(job::Entity::find_by_id(job_id)
        .filter(job::Column::Status.eq(JobStatus::Cancelled))
        .one(db)
        .await?
        .is_some())
}

/// One job with its client's name; one being deleted only `with_deleted` (a worker still
/// records the rows it held when the job was cancelled and hidden).
pub(super) async fn read_job(
    db: &impl ConnectionTrait,
    id: Uuid,
    with_deleted: bool,
) -> Result<Option<Job>, DbErr> {
    let mut query = job::Entity::find_by_id(id);
    if !with_deleted {
        query = query.filter(Expr::cust(NOT_DELETED));
    }
    let found = query.find_also_related(client::Entity).one(db).await?;
    Ok(found.map(|(job, client)| job.into_job(client.map(|c| c.client_id).unwrap_or_default())))
}

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

/// The client a caller's name stands for, if it ever created a job.
pub(super) async fn client_named(
    db: &impl ConnectionTrait,
    name: &str,
) -> Result<Option<client::Model>, DbErr> {
    client::Entity::find()
        .filter(client::Column::ClientId.eq(name))
        .one(db)
        .await
}

/// One icon's bytes to store, with what `icon_blob` keeps beside them.
#[derive(Clone, Copy, Debug)]
pub(super) struct Blob<'a> {
    /// The bytes and their content address.
    pub icon: &'a IconBytes,
    /// Their sniffed type.
    pub mime: &'a str,
    /// Real width.
    pub width: u32,
    /// Real height.
    pub height: u32,
}

impl Blob<'_> {
    /// The content address.
    pub fn sha(&self) -> &str {
        &self.icon.sha256
    }
}

/// The icons a found outcome carries, to store: the chosen one and its dark variant, each
/// when its bytes were kept.
pub(super) fn blobs(found: &Found) -> impl Iterator<Item = Blob<'_>> {
    let chosen = found.icon.as_ref().map(|icon| Blob {
        icon,
        mime: &found.mime,
        width: found.width,
        height: found.height,
    });
    let dark = found.dark.as_ref().map(|dark| Blob {
        icon: &dark.icon,
        mime: &dark.mime,
        width: dark.width,
        height: dark.height,
    });
    chosen.into_iter().chain(dark)
}

/// Stores the icons a found outcome carries (see [`blobs`]), each unless that content is
/// stored already, in content-address order (so two writers lock shared blobs in one order).
pub(super) async fn put_blobs(
    db: &impl ConnectionTrait,
    found: &Found,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    let mut all: Vec<Blob<'_>> = blobs(found).collect();
    all.sort_by(|a, b| a.sha().cmp(b.sha()));
    all.dedup_by(|a, b| a.sha() == b.sha());
    for blob in all {
        put_blob(db, blob, now).await?;
    }
    Ok(())
}

/// Stores one icon, unless that content is stored already.
///
/// A blob stored already that the collector has marked unreferenced (`orphaned_at`, see
/// `lifecycle`) gets its mark cleared: it is referenced again, and on PostgreSQL the write
/// makes a sweep that reached the same blob meanwhile wait and then leave it. Unmarked blobs
/// are not written (only locked until the recorder commits).
pub(super) async fn put_blob(
    db: &impl ConnectionTrait,
    blob: Blob<'_>,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    let icon = blob.icon;
    let size = i32::try_from(icon.bytes.len()).map_err(|_| DbErr::RecordNotInserted)?;
    let inserted = icon_blob::Entity::insert(icon_blob::ActiveModel {
        sha256: Set(icon.sha256.clone()),
        mime: Set(blob.mime.to_owned()),
        bytes: Set(icon.bytes.to_vec()),
        width: Set(i32::try_from(blob.width).unwrap_or(i32::MAX)),
        height: Set(i32::try_from(blob.height).unwrap_or(i32::MAX)),
        size: Set(size),
        created_at: Set(now),
    })
    .on_conflict(
        OnConflict::column(icon_blob::Column::Sha256)
            .value(Alias::new("orphaned_at"), Expr::cust("NULL"))
            .action_and_where(Expr::cust("icon_blob.orphaned_at IS NOT NULL"))
            .to_owned(),
    )
    .exec_without_returning(db)
    .await;
    match inserted {
        Ok(_) | Err(DbErr::RecordNotInserted) => Ok(()),
        Err(e) => Err(e),
    }
}

/// The columns a finished outcome writes on its row, and the row as the views show it (what
/// progress events carry), both made from one [`ResultColumns`].
///
/// Counts are converted with `as`: [`crate::clean::outcome`] keeps them within `i32`, and an
/// outcome that skipped it shows up as a negative count the database refuses.
pub(super) fn finished_row(
    domain: &str,
    tries: i32,
    outcome: &FindOutcome,
    now: DateTime<Utc>,
) -> (result::ActiveModel, ResultColumns) {
    let fetched = ResultColumns {
        domain: domain.to_owned(),
        tries,
        fetched_at: Some(now),
        cached: false,
        ..ResultColumns::default()
    };
    let (columns, candidates, dropped) = match outcome {
        Ok(found) => (
            ResultColumns {
                status: ResultStatus::Success,
                icon_url: found.icon.as_ref().map(|_| icon_path(domain)),
                icon: found.icon.as_ref().map(|icon| IconView {
                    url: icon_path(domain),
                    sha256: icon.sha256.clone(),
                    mime: found.mime.clone(),
                    width: found.width as i32,
                    height: found.height as i32,
                    bytes: i32::try_from(icon.bytes.len()).unwrap_or(i32::MAX),
                }),
                favicon_url: Some(found.favicon_url.clone()),
                final_url: found.final_url.clone(),
                mime: Some(found.mime.clone()),
                width: Some(found.width as i32),
                height: Some(found.height as i32),
                ..fetched
            },
            &found.candidates,
            found.candidates_dropped,
        ),
        Err(err) => (
            ResultColumns {
                status: ResultStatus::Failed,
                error: Some(format!("{}: {}", err.category.as_str(), err.message)),
                error_code: Some(err.category),
                final_url: err.final_url.clone(),
                ..fetched
            },
            &err.candidates,
            err.candidates_dropped,
        ),
    };
    let stored = |c: &[Candidate]| serde_json::to_value(c).ok().filter(|_| !c.is_empty());
    let row = result::ActiveModel {
        status: Set(columns.status),
        favicon_url: Set(columns.favicon_url.clone()),
        error: Set(columns.error.clone()),
        error_code: Set(columns.error_code),
        final_url: Set(columns.final_url.clone()),
        mime: Set(columns.mime.clone()),
        width: Set(columns.width),
        height: Set(columns.height),
        fetched_at: Set(columns.fetched_at),
        candidates: Set(stored(candidates)),
        candidates_dropped: Set(dropped as i32),
        icon_sha256: Set(outcome
            .as_ref()
            .ok()
            .and_then(|found| found.icon.as_ref())
            .map(|icon| icon.sha256.clone())),
        dark_icon_sha256: Set(outcome
            .as_ref()
            .ok()
            .and_then(|found| found.dark.as_ref())
            .map(|dark| dark.icon.sha256.clone())),
        ..Default::default()
    };
    (row, columns)
}

/// Queues `event` of job `job_id` for every enabled endpoint of the job's client that takes
/// it: one delivery each, all with one event id (the `webhook-id` they are sent with). Runs
/// in the transaction that ends (or cancels) the job.
pub(super) async fn enqueue_job_event(
    db: &impl ConnectionTrait,
    job_id: Uuid,
    event: WebhookEvent,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    let endpoints = db
        .query_all_raw(Statement::from_sql_and_values(
            db.get_database_backend(),
            "SELECT e.id FROM webhook_endpoint e JOIN job j ON j.client_id = e.client_id \
             WHERE j.id = $1 AND e.deleted_at IS NULL AND e.disabled_at IS NULL \
               AND (',' || e.events || ',') LIKE $2",
            [job_id.into(), format!("%,{},%", event.as_str()).into()],
        ))
        .await?;
    let event_id = Uuid::now_v7();
    for row in endpoints {
        let endpoint: Uuid = row.try_get("", "id")?;
        insert_delivery(
            db,
            Uuid::now_v7(),
            endpoint,
            event_id,
            event,
            Some(job_id),
            None,
            now,
        )
        .await?;
    }
    Ok(())
}
