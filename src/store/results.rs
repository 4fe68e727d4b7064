//! A job's results: pages
//! in submission order, what finished after a place in the job's order of finishing (for
//! subscribers that missed events or resume),
//! and the CSV export's stream of rows.
//!
//! With the view's mapping next to the entity (`entities::result`), this file is where the
//! store meets the one result view: a new column is written in `write::finished_row` and
//! read by the export through [`EXPORT_SQL`] into a [`crate::model::CsvRow`] (`export`).

mod export;

pub use export::HOLD as EXPORT_HOLD;

use super::sql::{FAILED, NUMBERED};
use super::{Store, StoreError};
use crate::entities::icon_blob;
use crate::entities::result;
use crate::model::{CsvWriter, ErrorCategory, ResultColumns, ResultFilter, ResultView};
use bytes::Bytes;
use futures::Stream;
use sea_orm::sea_query::{Expr, ExprTrait, LikeExpr};
use sea_orm::{
    ColumnTrait, Condition, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect,
};
use uuid::Uuid;

/// The rows of a job that `filter` matches, as a condition every filtered read shares.
///
/// The status filter walks `idx_result_job_status` in position order; the error-code filter
/// repeats [`FAILED`] so both databases walk the partial `idx_result_job_failure` instead. The
/// domain search cannot use a B-tree, so it is checked on the rows of the index walked (or of
/// `idx_result_job_position`), still within the one job.
fn matching(job_id: Uuid, filter: &ResultFilter) -> Condition {
    let mut condition = Condition::all().add(result::Column::JobId.eq(job_id));
    if let Some(status) = filter.status {
        condition = condition.add(result::Column::Status.eq(status));
    }
    if let Some(code) = filter.error_code {
        condition = condition
            .add(Expr::cust(FAILED))
            .add(result::Column::ErrorCode.eq(code));
    }
    if let Some(text) = &filter.domain {
        // Domains are stored lowercase and the search is lowercased, so LIKE means the same
        // on PostgreSQL (case-sensitive) and SQLite (not, for ASCII).
        let escaped: String = text
            .chars()
            .flat_map(|c| match c {
                '%' | '_' | '\\' => vec!['\\', c],
                c => vec![c],
            })
            .collect();
        condition = condition.add(
            Expr::col(result::Column::Domain)
                .like(LikeExpr::new(format!("%{escaped}%")).escape('\\')),
        );
    }
    condition
}

impl Store {
    /// One page of a job's results that `filter` matches, in submission order: `per_page`
    /// of them after the first `start` (a validated [`crate::model::Page`]'s offset).
    ///
    /// Unfiltered, positions are dense, so a page is a range of positions: the cost does not
    /// grow with the page number the way `OFFSET` does. A filtered page skips the matching
    /// rows before it along an index (see [`matching`]); the cursor form
    /// ([`Store::results_after`]) does not, which is why infinite scroll uses it.
    pub async fn results_page(
        &self,
        job_id: Uuid,
        filter: &ResultFilter,
        start: u64,
        per_page: u64,
    ) -> Result<Vec<ResultView>, StoreError> {
        let rows = page_query(job_id, filter, start, per_page)
            .all(&self.db)
            .await?;
        self.with_icon_sizes(rows.into_iter().map(ResultView::from).collect())
            .await
    }

    /// At most `limit` of a job's results that `filter` matches, after position `after` (from
    /// the start when `None`), in submission order, each with its position.
    pub async fn results_after(
        &self,
        job_id: Uuid,
        filter: &ResultFilter,
        after: Option<i32>,
        limit: u64,
    ) -> Result<Vec<(i32, ResultView)>, StoreError> {
        let mut query = result::Entity::find()
            .filter(matching(job_id, filter))
            .order_by_asc(result::Column::Position)
            .limit(limit);
        if let Some(after) = after {
            query = query.filter(result::Column::Position.gt(after));
        }
        let rows = query.all(&self.db).await?;
        let positions: Vec<i32> = rows.iter().map(|row| row.position).collect();
        let views = self
            .with_icon_sizes(rows.into_iter().map(ResultView::from).collect())
            .await?;
        Ok(positions.into_iter().zip(views).collect())
    }

    /// How many of a job's results `filter` matches.
    pub async fn count_results(
        &self,
        job_id: Uuid,
        filter: &ResultFilter,
    ) -> Result<u64, StoreError> {
        Ok(result::Entity::find()
            .filter(matching(job_id, filter))
            .count(&self.db)
            .await?)
    }

    /// A job's finished failures counted by code, the largest group first (ties by code), in
    /// one grouped read of `idx_result_job_failure`.
    pub async fn failures_by_reason(
        &self,
        job_id: Uuid,
    ) -> Result<Vec<(ErrorCategory, i64)>, StoreError> {
        let mut groups = result::Entity::find()
            .select_only()
            .column(result::Column::ErrorCode)
            .column_as(result::Column::Id.count(), "n")
            .filter(result::Column::JobId.eq(job_id))
            .filter(Expr::cust(FAILED))
            .filter(result::Column::ErrorCode.is_not_null())
            .group_by(result::Column::ErrorCode)
            .into_tuple::<(ErrorCategory, i64)>()
            .all(&self.db)
            .await?;
        // At most one group per category: sorting here keeps the SQL the same on both
        // databases.
        groups.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.as_str().cmp(b.0.as_str())));
        Ok(groups)
    }

    /// Adds each stored icon's size, which lives on its blob, in one query per page.
    async fn with_icon_sizes(
        &self,
        mut views: Vec<ResultView>,
    ) -> Result<Vec<ResultView>, StoreError> {
        let shas: Vec<String> = views
            .iter()
            .filter_map(|v| v.icon.as_ref().map(|icon| icon.sha256.clone()))
            .collect();
        if shas.is_empty() {
            return Ok(views);
        }
        let sizes: std::collections::HashMap<String, i32> = icon_blob::Entity::find()
            .select_only()
            .column(icon_blob::Column::Sha256)
            .column(icon_blob::Column::Size)
            .filter(icon_blob::Column::Sha256.is_in(shas))
            .into_tuple::<(String, i32)>()
            .all(&self.db)
            .await?
            .into_iter()
            .collect();
        for view in &mut views {
            if let Some(icon) = &mut view.columns.icon {
                icon.bytes = sizes.get(&icon.sha256).copied().unwrap_or_default();
            }
        }
        Ok(views)
    }

    /// Domains of job `job_id` that finished after place `cursor` in its order of finishing,
    /// in that order, at most `limit`: a page of what a subscriber has not heard of yet.
    pub async fn finished_after(
        &self,
        job_id: Uuid,
        cursor: i32,
        limit: u64,
    ) -> Result<Vec<ResultColumns>, StoreError> {
        let rows = finished_after_query(job_id, cursor, limit)
            .all(&self.db)
            .await?;
        let views = self
            .with_icon_sizes(rows.into_iter().map(ResultView::from).collect())
            .await?;
        Ok(views.into_iter().map(|view| view.columns).collect())
    }

    /// A job's results as CSV rows written by `csv` after what it holds already (the
    /// header), in submission order, in chunks of at most `chunk_bytes` (a chunk longer
    /// than that holds a single row).
    ///
    /// One statement reads the whole job through the driver's row stream, each row's cells
    /// borrowed from it, so the export moves at the speed the database hands rows over. The
    /// stream is read ahead by at most one chunk: a client that reads slowly holds the
    /// statement (a pooled connection and, on SQLite, a read snapshot) no longer than
    /// [`EXPORT_HOLD`] per chunk; then the statement is let go and a new one starts after
    /// the last row sent once the client catches up.
    pub fn export_csv(
        &self,
        job_id: Uuid,
        csv: CsvWriter,
        chunk_bytes: usize,
    ) -> impl Stream<Item = Result<Bytes, StoreError>> + Send + Unpin + use<> {
        export::spawn(self.db.clone(), job_id, csv, chunk_bytes.max(1))
    }
}

/// The index a results page and the export read (`migration`'s `idx_result_job_position`).
#[cfg(test)]
pub(super) const JOB_POSITION_INDEX: &str = "idx_result_job_position";

/// A results page: `per_page` rows of `job_id` that `filter` matches, from the `start`-th
/// match, in position order. Unfiltered, positions are dense, so the page is a range of
/// positions; filtered, it skips the matches before it along an index.
pub(super) fn page_query(
    job_id: Uuid,
    filter: &ResultFilter,
    start: u64,
    per_page: u64,
) -> sea_orm::Select<result::Entity> {
    let query = result::Entity::find()
        .filter(matching(job_id, filter))
        .order_by_asc(result::Column::Position)
        .limit(per_page);
    if filter.is_empty() {
        query.filter(result::Column::Position.gte(Ord::min(start, i32::MAX as u64) as i32))
    } else {
        query.offset(start)
    }
}

/// The export's statement: the rows of job `$1` after position `$2`, in position order, with
/// what the CSV shows of each: its columns in CSV order, then whether the icon's bytes are
/// stored (`icon_url` is made from it and the domain) and the position (where a new statement
/// resumes).
pub(super) const EXPORT_SQL: &str = "SELECT domain, status, favicon_url, error, tries, \
     error_code, final_url, mime, width, height, fetched_at, cached, \
     icon_sha256 IS NOT NULL AS has_icon, position \
     FROM result WHERE job_id = $1 AND position > $2 ORDER BY position";

/// A job's finished rows after place `cursor` in its order of finishing, in that order.
pub(super) fn finished_after_query(
    job_id: Uuid,
    cursor: i32,
    limit: u64,
) -> sea_orm::Select<result::Entity> {
    result::Entity::find()
        .filter(result::Column::JobId.eq(job_id))
        .filter(Expr::cust(NUMBERED))
        .filter(result::Column::FinishedSeq.gt(cursor))
        .order_by_asc(result::Column::FinishedSeq)
        .limit(limit)
}
