//! `result`: one domain of one job — its outcome, and while pending, the unit of work.

use sea_orm::entity::prelude::*;

/// The status column's type, from the shared vocabulary.
pub use crate::model::ResultStatus;
use crate::model::{Candidate, ErrorCategory, IconView, ResultColumns, ResultView, icon_path};

/// One row of `result`.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "result")]
pub struct Model {
    /// Row id.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// The job it belongs to.
    pub job_id: Uuid,
    /// The domain's place among the job's distinct domains (0-based, dense), for ordering.
    pub position: i32,
    /// The normalised domain.
    pub domain: String,
    /// Outcome so far.
    pub status: ResultStatus,
    /// The chosen icon, on success.
    pub favicon_url: Option<String>,
    /// Human-readable failure (or the last transient failure while retrying).
    pub error: Option<String>,
    /// Failure category code (also while a transient failure waits for its retry).
    pub error_code: Option<ErrorCategory>,
    /// Tries started so far (stamped at claim).
    pub tries: i32,
    /// The home page after redirects.
    pub final_url: Option<String>,
    /// Sniffed mime of the chosen icon.
    pub mime: Option<String>,
    /// Real width of the chosen icon.
    pub width: Option<i32>,
    /// Real height of the chosen icon.
    pub height: Option<i32>,
    /// Every candidate found, as JSON (`Vec<model::Candidate>`).
    #[sea_orm(column_type = "JsonBinary", nullable)]
    pub candidates: Option<Json>,
    /// How many candidates the page declared beyond those kept in `candidates`.
    pub candidates_dropped: i32,
    /// When the finder produced the stored outcome (for a cached one: the original fetch).
    pub fetched_at: Option<DateTimeUtc>,
    /// Copied from an earlier job's result instead of fetched (the cross-job cache).
    pub cached: bool,
    /// Not to be claimed before this time (retry backoff).
    pub run_at: DateTimeUtc,
    /// The worker process holding the row, while leased.
    pub lease_owner: Option<Uuid>,
    /// The lease's end; after it any worker may claim the row again.
    pub lease_until: Option<DateTimeUtc>,
    /// The stored bytes of the chosen icon (`icon_blob.sha256`), on success when kept.
    pub icon_sha256: Option<String>,
    /// The stored bytes of the icon the site declares for a dark colour scheme, beside the
    /// chosen one (`icon_blob.sha256`), on success when the site has one and it was kept.
    pub dark_icon_sha256: Option<String>,
    /// The domain's place in the job's order of finishing (1, 2, ...), given in the transaction
    /// that finishes it; none while pending.
    pub finished_seq: Option<i32>,
    /// When the row was created.
    pub created_at: DateTimeUtc,
    /// When last changed.
    pub updated_at: DateTimeUtc,
}

/// A row as every view shows it.
impl From<Model> for ResultView {
    fn from(row: Model) -> Self {
        // Written by the store from `Vec<Candidate>`, so a row that does not read back is a
        // bug; it shows without candidates rather than failing the whole page.
        let candidates = match row.candidates.map(serde_json::from_value::<Vec<Candidate>>) {
            None => Vec::new(),
            Some(Ok(candidates)) => candidates,
            Some(Err(e)) => {
                tracing::warn!(result_id = %row.id, error = %e, "stored candidates do not read back");
                Vec::new()
            }
        };
        // The blob's size is not on the row: the store adds it (`Store::results_page`).
        let icon = row.icon_sha256.map(|sha256| IconView {
            url: icon_path(&row.domain),
            sha256,
            mime: row.mime.clone().unwrap_or_default(),
            width: row.width.unwrap_or_default(),
            height: row.height.unwrap_or_default(),
            bytes: 0,
        });
        Self {
            columns: ResultColumns {
                icon_url: icon.as_ref().map(|icon| icon.url.clone()),
                icon,
                domain: row.domain,
                status: row.status,
                favicon_url: row.favicon_url,
                error: row.error,
                tries: row.tries,
                error_code: row.error_code,
                final_url: row.final_url,
                mime: row.mime,
                width: row.width,
                height: row.height,
                fetched_at: row.fetched_at,
                cached: row.cached,
                seq: row.finished_seq,
            },
            candidates,
            candidates_dropped: row.candidates_dropped,
        }
    }
}

/// Relations of `result`: none the queries walk (a row's job is read by its id).
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
