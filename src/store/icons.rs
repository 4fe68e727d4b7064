//! Stored icons: writing a chosen icon's bytes once per distinct content, reading the newest
//! one of a domain, and recording an on-demand lookup (`/icons/{domain}?find=1`) as a
//! finished one-domain job, so later jobs find it in the cross-job cache.

use super::changes::{Observed, Outcome, observe};
use super::sql::{FETCHED, decisive, newest_fetch};
use super::write::{finished_row, insert_job, put_blobs, settle};
use super::{Store, StoreResult};
use crate::entities::{icon_blob, result};
use crate::model::{
    CachePolicy, ChangeSource, ErrorCategory, FindOutcome, Priority, ResultStatus, Tally,
};
use chrono::{DateTime, Utc};
use sea_orm::{ActiveValue::Set, EntityTrait, FromQueryResult, Statement, TransactionTrait};
use std::net::IpAddr;
use uuid::Uuid;

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

/// The fetch `GET /icons/{domain}` serves: the newest decisive one (see [`Store::served`]).
#[derive(Clone, Debug, PartialEq, Eq, FromQueryResult)]
pub struct Served {
    /// The chosen icon's content address; none for a permanent failure (the fallback).
    pub icon_sha256: Option<String>,
    /// The dark variant's content address, when the site declares one and it was kept.
    pub dark_icon_sha256: Option<String>,
    /// When it was fetched: an old one is served and looked up again in the background.
    pub fetched_at: DateTime<Utc>,
}

/// Any row, for an existence probe.
#[derive(Debug, FromQueryResult)]
struct One {
    #[allow(dead_code, reason = "only whether a row came back matters")]
    one: i32,
}

impl Store {
    /// What `GET /icons/{domain}` serves: the newest *decisive* fetch of `domain` (a success
    /// whose icon was kept, or a permanent failure), so a transient failure never hides a good
    /// icon. Copies made by the cache are skipped (they repeat a fetch), so the lookup uses
    /// the cache's own index.
    ///
    /// With `client`, only what that client's own jobs hold, copies from the cache included
    /// (an icon only another client found is not its to see): a probe per job of the client
    /// by the (job, domain) index.
    pub async fn served(&self, domain: &str, client: Option<&str>) -> StoreResult<Option<Served>> {
        let (sql, values) = match client {
            // The newest in the results, or the one kept in `domain_cache` when its job was
            // purged, whichever is newer.
            None => (
                newest_fetch("icon_sha256, dark_icon_sha256, fetched_at", &decisive("")),
                vec![domain.into()],
            ),
            Some(client) => (
                format!(
                    "SELECT r.icon_sha256, r.dark_icon_sha256, r.fetched_at FROM {CLIENT_RESULTS} \
                     AND {} ORDER BY r.fetched_at DESC LIMIT 1",
                    decisive("r.")
                ),
                vec![domain.into(), client.into()],
            ),
        };
        Ok(
            Served::find_by_statement(Statement::from_sql_and_values(self.backend(), sql, values))
                .one(&self.db)
                .await?,
        )
    }

    /// Whether a fetch of `domain` names the icon `sha256` (as its chosen icon or its dark
    /// variant), or a change in its history does (as its before or after): a version of the
    /// domain's icon that `GET /icons/{domain}?sha=` may serve. With `client`, only that
    /// client's own results count, as for [`Store::served`], and the history of the domain
    /// only while one of the client's watches holds it (what its watch pages show).
    pub async fn names_icon(
        &self,
        domain: &str,
        sha256: &str,
        client: Option<&str>,
    ) -> StoreResult<bool> {
        let names = |t: &str| format!("({t}icon_sha256 = $2 OR {t}dark_icon_sha256 = $2)");
        let changes = |t: &str| format!("({t}before_sha256 = $2 OR {t}after_sha256 = $2)");
        let (sql, values) = match client {
            None => (
                format!(
                    "SELECT 1 AS one FROM result WHERE domain = $1 AND {FETCHED} AND {} \
                     UNION ALL SELECT 1 AS one FROM domain_cache WHERE domain = $1 AND {} \
                     UNION ALL SELECT 1 AS one FROM icon_change WHERE domain = $1 AND {}",
                    names(""),
                    names(""),
                    changes("")
                ),
                vec![domain.into(), sha256.into()],
            ),
            Some(client) => (
                format!(
                    "SELECT 1 AS one FROM client c JOIN job j ON j.client_id = c.id \
                     JOIN result r ON r.job_id = j.id AND r.domain = $1 \
                     WHERE c.client_id = $3 AND {} \
                     UNION ALL SELECT 1 AS one FROM client c JOIN watch w ON w.client_id = c.id \
                     JOIN watch_domain wd ON wd.watch_id = w.id AND wd.domain = $1 \
                     JOIN icon_change h ON h.domain = $1 \
                     WHERE c.client_id = $3 AND w.deleted_at IS NULL AND {}",
                    names("r."),
                    changes("h.")
                ),
                vec![domain.into(), sha256.into(), client.into()],
            ),
        };
        let row =
            One::find_by_statement(Statement::from_sql_and_values(self.backend(), sql, values))
                .one(&self.db)
                .await?;
        Ok(row.is_some())
    }

    /// One stored icon by its content address.
    pub async fn icon_blob(&self, sha256: &str) -> StoreResult<Option<icon_blob::Model>> {
        Ok(icon_blob::Entity::find_by_id(sha256.to_owned())
            .one(&self.db)
            .await?)
    }

    /// Whether a new job would take `domain` from the cache under `cache` (the same rule as
    /// [`Store::create_job`]): its newest fetch is a success within `max_age`, or a permanent
    /// failure within `failure_max_age`.
    ///
    /// With `client`, only that client's own results count (see [`Store::served`]):
    /// another client's fetch is not one it may read.
    pub async fn answered_by_cache(
        &self,
        domain: &str,
        cache: CachePolicy,
        client: Option<&str>,
    ) -> StoreResult<bool> {
        // Cancelled rows have no fetch time and say nothing; a fetch kept in `domain_cache`
        // when its job was purged counts as well.
        let (sql, values) = match client {
            None => (
                newest_fetch("status, error_code, fetched_at", "fetched_at IS NOT NULL"),
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
        Ok(cache.reusable(status, error_code, fetched_at, super::now()))
    }

    /// Records an on-demand lookup as a finished one-domain job of `client_name` (from
    /// `source_ip` for a caller without a key) with its result row (and the icon's bytes), in
    /// one transaction: it then counts against the client's (and the address's) hourly
    /// allowance like any job, and later jobs reuse it from the cache.
    ///
    /// Every string taken from the web is cleaned first ([`crate::clean::outcome`]), as the
    /// recorder does for the workers' outcomes.
    pub async fn record_lookup(
        &self,
        client_name: &str,
        source_ip: Option<IpAddr>,
        domain: &str,
        outcome: FindOutcome,
        source: ChangeSource,
    ) -> StoreResult<Uuid> {
        let outcome = crate::clean::outcome(outcome);
        let now = super::now();
        let txn = self.db.begin().await?;
        let job = insert_job(&txn, client_name, source_ip, Priority::Normal, 1, now).await?;
        if let Ok(found) = &outcome {
            put_blobs(&txn, found, now).await?;
        }
        let (row, columns) = finished_row(domain, 1, &outcome, now);
        result::Entity::insert(result::ActiveModel {
            id: Set(Uuid::now_v7()),
            job_id: Set(job.id),
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
        // Its one row is finished: counted, the job's final status, and its place in the
        // job's order of finishing, as a worker's record would.
        let mut tally = Tally::default();
        tally.add(columns.status, 1);
        settle(&txn, job.id, tally, now, false, false).await?;
        let outcome = Outcome {
            status: columns.status,
            error_code: columns.error_code,
            url: columns.favicon_url.as_deref(),
            sha256: columns.icon.as_ref().map(|i| i.sha256.as_str()),
            mime: columns.mime.as_deref(),
            width: columns.width,
            height: columns.height,
            bytes: columns.icon.as_ref().map(|i| i.bytes),
        };
        let observed = Observed::new(domain, outcome, now).into_iter().collect();
        observe(&txn, observed, source, now).await?;
        txn.commit().await?;
        tracing::debug!(domain, source = source.as_str(), job_id = %job.id, "lookup recorded");
        Ok(job.id)
    }
}
