//! Stored icons: writing a chosen icon's bytes once per distinct content, reading the newest
//! one of a domain, and recording an on-demand lookup (`/icons/{domain}?find=1`) as a
//! finished one-domain job, so later jobs find it in the cross-job cache.

use super::jobs::upsert_client;
use super::queue::FETCHED;
use super::results::finished_row;
use super::{CachePolicy, Store};
use crate::entities::{icon_blob, job, job::JobStatus, result};
use crate::model::{ErrorCategory, FindOutcome, Found, ResultStatus};
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Alias, Expr, OnConflict};
use sea_orm::{
    ActiveValue::Set, ConnectionTrait, DbErr, EntityTrait, FromQueryResult, Statement,
    TransactionTrait,
};
use std::net::IpAddr;
use uuid::Uuid;

/// Stores the icon a found outcome carries, unless that content is stored already.
///
/// A blob stored already that the collector has marked unreferenced (`orphaned_at`, see
/// `lifecycle`) gets its mark cleared: it is referenced again, and on PostgreSQL the write
/// makes a sweep that reached the same blob meanwhile wait and then leave it. Unmarked blobs
/// are not written (only locked until the recorder commits).
pub(super) async fn put_blob(
    db: &impl ConnectionTrait,
    found: &Found,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    let Some(icon) = &found.icon else {
        return Ok(());
    };
    let size = i32::try_from(icon.bytes.len()).map_err(|_| DbErr::RecordNotInserted)?;
    let inserted = icon_blob::Entity::insert(icon_blob::ActiveModel {
        sha256: Set(icon.sha256.clone()),
        mime: Set(found.mime.clone()),
        bytes: Set(icon.bytes.to_vec()),
        width: Set(i32::try_from(found.width).unwrap_or(i32::MAX)),
        height: Set(i32::try_from(found.height).unwrap_or(i32::MAX)),
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

/// The newest fetch of a domain, as the cross-job cache judges it.
#[derive(Debug, FromQueryResult)]
struct Newest {
    status: ResultStatus,
    error_code: Option<ErrorCategory>,
    fetched_at: Option<DateTime<Utc>>,
}

/// The results of domain `$1` in the jobs of the client named `$2` (`r`), for a `WHERE`
/// clause to continue with `AND`.
const CLIENT_RESULTS: &str = "client c JOIN job j ON j.client_id = c.id \
     JOIN result r ON r.job_id = j.id AND r.domain = $1 WHERE c.client_id = $2";

#[derive(Debug, FromQueryResult)]
struct Sha {
    icon_sha256: String,
}

impl Store {
    /// The content address of the newest stored icon of `domain`: the newest success whose
    /// icon was kept. Copies made by the cache are skipped (they repeat a fetch), so the
    /// lookup uses the cache's own index.
    ///
    /// With `client`, only what that client's own jobs hold, copies from the cache included
    /// (an icon only another client found is not its to see): a probe per job of the client
    /// by the (job, domain) index.
    pub async fn newest_icon_sha(
        &self,
        domain: &str,
        client: Option<&str>,
    ) -> Result<Option<String>, DbErr> {
        let (sql, values) = match client {
            // The newest in the results, or the one kept in `domain_cache` when its job was
            // purged, whichever is newer.
            None => (
                format!(
                    "SELECT icon_sha256, fetched_at FROM (SELECT icon_sha256, fetched_at \
                       FROM result WHERE domain = $1 AND {FETCHED} \
                       AND status = 'success' AND icon_sha256 IS NOT NULL \
                       ORDER BY fetched_at DESC LIMIT 1) AS r \
                     UNION ALL SELECT icon_sha256, fetched_at FROM domain_cache \
                       WHERE domain = $1 AND status = 'success' AND icon_sha256 IS NOT NULL \
                     ORDER BY fetched_at DESC LIMIT 1"
                ),
                vec![domain.into()],
            ),
            Some(client) => (
                format!(
                    "SELECT r.icon_sha256 FROM {CLIENT_RESULTS} \
                     AND r.status = 'success' AND r.icon_sha256 IS NOT NULL \
                     ORDER BY r.fetched_at DESC LIMIT 1"
                ),
                vec![domain.into(), client.into()],
            ),
        };
        let row =
            Sha::find_by_statement(Statement::from_sql_and_values(self.backend(), sql, values))
                .one(&self.db)
                .await?;
        Ok(row.map(|r| r.icon_sha256))
    }

    /// One stored icon by its content address.
    pub async fn icon_blob(&self, sha256: &str) -> Result<Option<icon_blob::Model>, DbErr> {
        icon_blob::Entity::find_by_id(sha256.to_owned())
            .one(&self.db)
            .await
    }

    /// Whether a new job would take `domain` from the cache under `cache` (the same rule as
    /// [`Store::create_job`]): its newest fetch is a success within `max_age`, or a permanent
    /// failure within `failure_max_age`.
    ///
    /// With `client`, only that client's own results count (see [`Store::newest_icon_sha`]):
    /// another client's fetch is not one it may read.
    pub async fn answered_by_cache(
        &self,
        domain: &str,
        cache: CachePolicy,
        client: Option<&str>,
    ) -> Result<bool, DbErr> {
        // Cancelled rows have no fetch time and say nothing; a fetch kept in `domain_cache`
        // when its job was purged counts as well.
        let (sql, values) = match client {
            None => (
                format!(
                    "SELECT status, error_code, fetched_at FROM (SELECT status, error_code, \
                       fetched_at FROM result WHERE domain = $1 AND {FETCHED} \
                       AND fetched_at IS NOT NULL ORDER BY fetched_at DESC LIMIT 1) AS r \
                     UNION ALL SELECT status, error_code, fetched_at FROM domain_cache \
                       WHERE domain = $1 ORDER BY fetched_at DESC LIMIT 1"
                ),
                vec![domain.into()],
            ),
            Some(client) => (
                format!(
                    "SELECT r.status, r.error_code, r.fetched_at FROM {CLIENT_RESULTS} \
                     AND r.status <> 'pending' AND r.fetched_at IS NOT NULL \
                     ORDER BY r.fetched_at DESC LIMIT 1"
                ),
                vec![domain.into(), client.into()],
            ),
        };
        let newest =
            Newest::find_by_statement(Statement::from_sql_and_values(self.backend(), sql, values))
                .one(&self.db)
                .await?;
        let Some(Newest {
            status,
            error_code,
            fetched_at: Some(fetched_at),
        }) = newest
        else {
            return Ok(false);
        };
        let age = (super::now() - fetched_at).to_std().unwrap_or_default();
        Ok(match status {
            ResultStatus::Success => age <= cache.max_age,
            _ => {
                let permanent = error_code.is_some_and(|c| c.is_cacheable());
                permanent && age <= cache.failure_max_age.min(cache.max_age)
            }
        })
    }

    /// Records an on-demand lookup as a finished one-domain job of `client_name` (from
    /// `source_ip` for a caller without a key) with its result row (and the icon's bytes), in
    /// one transaction: it then counts against the client's (and the address's) hourly
    /// allowance like any job, and later jobs reuse it from the cache.
    pub async fn record_lookup(
        &self,
        client_name: &str,
        source_ip: Option<IpAddr>,
        domain: &str,
        outcome: FindOutcome,
    ) -> Result<Uuid, DbErr> {
        let now = super::now();
        let txn = self.db.begin().await?;
        let client = upsert_client(&txn, client_name, now).await?;
        let found = outcome.is_ok();
        let job_id = Uuid::now_v7();
        job::Entity::insert(job::ActiveModel {
            id: Set(job_id),
            client_id: Set(client.id),
            status: Set(if found {
                JobStatus::Completed
            } else {
                JobStatus::Failed
            }),
            total: Set(1),
            source_ip: Set(source_ip.map(|ip| ip.to_string())),
            completed: Set(i32::from(found)),
            failed: Set(i32::from(!found)),
            created_at: Set(now),
            updated_at: Set(now),
        })
        .exec_without_returning(&txn)
        .await?;
        if let Ok(found) = &outcome {
            put_blob(&txn, found, now).await?;
        }
        let (row, _) = finished_row(domain, 1, &outcome, now);
        result::Entity::insert(result::ActiveModel {
            id: Set(Uuid::now_v7()),
            job_id: Set(job_id),
            position: Set(0),
            domain: Set(domain.to_owned()),
            tries: Set(1),
            cached: Set(false),
            run_at: Set(now),
            created_at: Set(now),
            updated_at: Set(now),
            ..row
        })
        .exec_without_returning(&txn)
        .await?;
        // Its one row is finished: it takes its place in the job's order of finishing.
        super::results::number_finished(&txn, job_id, false).await?;
        txn.commit().await?;
        Ok(job_id)
    }
}
