//! Reading a job's results: pages in submission order, what finished since a moment (for
//! subscribers that missed events), and the CSV export's stream of rows.

use super::Store;
use crate::entities::result;
use crate::entities::result::ResultStatus;
use chrono::{DateTime, Utc};
use futures::Stream;
use sea_orm::{
    ColumnTrait, DbBackend, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Statement,
};
use uuid::Uuid;

/// Rows per read when streaming a job's results. Larger chunks were no faster once only the
/// exported columns are read, and 5,000 grew the RSS by 26 MB instead of 10 (BENCHMARKS.md).
pub const STREAM_CHUNK: usize = 1_000;
/// What a CSV row costs besides its text columns (status, numbers, timestamp, separators),
/// counted against the export's byte budget.
const ROW_FIXED_BYTES: i64 = 64;

/// The columns of one result that the CSV export writes.
#[derive(Clone, Debug, PartialEq, sea_orm::FromQueryResult)]
pub struct ExportRow {
    /// Place in the job, for paging through it.
    pub position: i32,
    /// The domain.
    pub domain: String,
    /// Outcome so far.
    pub status: ResultStatus,
    /// The chosen icon, on success.
    pub favicon_url: Option<String>,
    /// Human-readable failure.
    pub error: Option<String>,
    /// Tries started so far.
    pub tries: i32,
    /// Failure category code.
    pub error_code: Option<String>,
    /// The home page after redirects.
    pub final_url: Option<String>,
    /// Sniffed mime of the chosen icon.
    pub mime: Option<String>,
    /// Real width of the chosen icon.
    pub width: Option<i32>,
    /// Real height of the chosen icon.
    pub height: Option<i32>,
    /// When the outcome was produced.
    pub fetched_at: Option<DateTime<Utc>>,
    /// Copied from an earlier job's result.
    pub cached: bool,
}

/// One domain that just finished, as carried by progress events.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FinishedDomain {
    /// The domain.
    pub domain: String,
    /// `success` or `failed`.
    pub status: String,
    /// The icon, on success.
    pub favicon_url: Option<String>,
    /// The failure category, on failure.
    pub error_code: Option<String>,
}

impl FinishedDomain {
    /// A finished domain as events carry it.
    pub(super) fn new(
        domain: String,
        status: ResultStatus,
        favicon_url: Option<String>,
        error_code: Option<String>,
    ) -> Self {
        Self {
            domain,
            status: status.as_str().to_owned(),
            favicon_url,
            error_code,
        }
    }
}

impl Store {
    /// One page of a job's results in submission order (`page` starts at 1).
    ///
    /// Positions are dense, so a page is a range of positions: the cost does not grow with
    /// the page number the way `OFFSET` does.
    pub async fn results_page(
        &self,
        job_id: Uuid,
        page: u64,
        per_page: u64,
    ) -> Result<Vec<result::Model>, DbErr> {
        let start = (page - 1).saturating_mul(per_page);
        if start >= i32::MAX as u64 {
            return Ok(Vec::new());
        }
        self.results_from(job_id, start as i32, per_page).await
    }

    async fn results_from(
        &self,
        job_id: Uuid,
        start: i32,
        limit: u64,
    ) -> Result<Vec<result::Model>, DbErr> {
        result::Entity::find()
            .filter(result::Column::JobId.eq(job_id))
            .filter(result::Column::Position.gte(start))
            .order_by_asc(result::Column::Position)
            .limit(limit)
            .all(&self.db)
            .await
    }

    /// Domains of a job finished at or after `since`, at most `limit`: what a subscriber that
    /// missed events still has to hear about.
    pub async fn finished_since(
        &self,
        job_id: Uuid,
        since: DateTime<Utc>,
        limit: u64,
    ) -> Result<Vec<FinishedDomain>, DbErr> {
        let rows = result::Entity::find()
            .filter(result::Column::JobId.eq(job_id))
            .filter(result::Column::Status.ne(ResultStatus::Pending))
            .filter(result::Column::UpdatedAt.gte(since))
            .order_by_asc(result::Column::UpdatedAt)
            .limit(limit)
            .all(&self.db)
            .await?;
        Ok(rows
            .into_iter()
            .map(|row| FinishedDomain::new(row.domain, row.status, row.favicon_url, row.error_code))
            .collect())
    }

    /// Streams a job's results in submission order, as chunks of at most [`STREAM_CHUNK`] rows
    /// and about `max_bytes` of text: a chunk ends before the row that would take it past
    /// `max_bytes` (every chunk holds at least one row), so memory stays bounded however large
    /// the rows are.
    pub fn results_stream(
        &self,
        job_id: Uuid,
        max_bytes: usize,
    ) -> impl Stream<Item = Result<Vec<ExportRow>, DbErr>> + Send + 'static {
        let store = self.clone();
        let backend = self.backend();
        // Only the exported columns: decoding the candidates JSON of every row cost more than
        // writing the CSV (see BENCHMARKS.md). The database sums the rows' sizes, so rows
        // past the byte budget are never sent to this process; the first row always is
        // (`upto = size`), so the export moves on however large a row is.
        let octets = |column: &str| match backend {
            DbBackend::Postgres => format!("COALESCE(OCTET_LENGTH({column}), 0)"),
            _ => format!("COALESCE(LENGTH(CAST({column} AS BLOB)), 0)"),
        };
        let size = format!(
            "({} + {} + {} + {} + {} + {} + {ROW_FIXED_BYTES})",
            octets("domain"),
            octets("favicon_url"),
            octets("error"),
            octets("error_code"),
            octets("final_url"),
            octets("mime"),
        );
        let columns = "position, domain, status, favicon_url, error, tries, error_code, \
                       final_url, mime, width, height, fetched_at, cached";
        let [p1, p2, p3, p4] = match backend {
            DbBackend::Postgres => ["$1", "$2", "$3", "$4"],
            _ => ["?", "?", "?", "?"],
        };
        let sql = format!(
            "SELECT {columns} FROM (\
               SELECT {columns}, {size} AS size, \
                 SUM({size}) OVER (ORDER BY position) AS upto \
               FROM (SELECT {columns} FROM result WHERE job_id = {p1} AND position >= {p2} \
                 ORDER BY position LIMIT {p3}) AS page\
             ) AS sized WHERE upto <= {p4} OR upto = size ORDER BY position"
        );
        let budget = i64::try_from(max_bytes).unwrap_or(i64::MAX);
        futures::stream::try_unfold(0i32, move |next| {
            let store = store.clone();
            let sql = sql.clone();
            async move {
                let statement = Statement::from_sql_and_values(
                    backend,
                    sql,
                    [
                        job_id.into(),
                        next.into(),
                        (STREAM_CHUNK as i64).into(),
                        budget.into(),
                    ],
                );
                let rows = <ExportRow as sea_orm::FromQueryResult>::find_by_statement(statement)
                    .all(&store.db)
                    .await?;
                match rows.last() {
                    None => Ok(None),
                    Some(last) => {
                        let after = last.position + 1;
                        Ok(Some((rows, after)))
                    }
                }
            }
        })
    }
}
