//! The finished rows of a recording batch in one statement, where each used to be an `UPDATE`
//! of its own: on PostgreSQL one round trip per batch, not per domain; on SQLite one hand-off
//! to the driver's thread instead of one per row (each a pair of thread switches: with the
//! per-row icon writes, the recorder was about a tenth of the embedded service's CPU per
//! domain, and the switches a good part of the scheduling; see BENCHMARKS.md, issue 29). The
//! statement's text never changes, so each connection prepares it once.
//!
//! The rows travel as one JSON array (`jsonb_to_recordset`, `json_each`): arrays of nullable
//! values are not something the drivers bind. A row whose write sets other columns than the
//! statement's (a column added to [`super::written`] and not here) is left to the row-by-row
//! write, so the statement can never drop a column silently; a test checks that a finished row
//! goes here.

use super::Claimed;
use crate::entities::result;
use chrono::{DateTime, SecondsFormat, Utc};
use sea_orm::{
    ActiveEnum, ActiveModelTrait, ActiveValue, ConnectionTrait, DbBackend, DbErr, IdenStatic,
    Iterable, Statement,
};
use serde_json::{Value, json};
use std::collections::HashSet;
use uuid::Uuid;

/// Writes the finished rows of a batch, each under the record guard (still pending, still
/// ours, not claimed again). `$1`: the rows as a JSON array; `$2`: `updated_at`.
const FINISH_SQL: &str = "UPDATE result AS r SET \
       status = u.status, favicon_url = u.favicon_url, error = u.error, \
       error_code = u.error_code, final_url = u.final_url, mime = u.mime, width = u.width, \
       height = u.height, fetched_at = u.fetched_at, candidates = u.candidates, \
       candidates_dropped = u.candidates_dropped, icon_sha256 = u.icon_sha256, \
       dark_icon_sha256 = u.dark_icon_sha256, \
       updated_at = $2, lease_owner = NULL, lease_until = NULL \
     FROM jsonb_to_recordset($1::jsonb) AS u(id uuid, owner uuid, tries int4, status text, \
       favicon_url text, error text, error_code text, final_url text, mime text, width int4, \
       height int4, fetched_at timestamptz, candidates jsonb, candidates_dropped int4, \
       icon_sha256 text, dark_icon_sha256 text) \
     WHERE r.id = u.id AND r.status = 'pending' AND r.lease_owner = u.owner \
       AND r.tries = u.tries \
     RETURNING r.id, r.tries";

/// [`FINISH_SQL`] on SQLite: ids are kept as 16-byte blobs, times as the driver's RFC 3339
/// text (see [`stamp`]), JSON as its text.
const FINISH_SQLITE: &str = "UPDATE result SET \
       status = u.status, favicon_url = u.favicon_url, error = u.error, \
       error_code = u.error_code, final_url = u.final_url, mime = u.mime, width = u.width, \
       height = u.height, fetched_at = u.fetched_at, candidates = u.candidates, \
       candidates_dropped = u.candidates_dropped, icon_sha256 = u.icon_sha256, \
       dark_icon_sha256 = u.dark_icon_sha256, \
       updated_at = $2, lease_owner = NULL, lease_until = NULL \
     FROM (SELECT unhex(value ->> 'id', '-') AS id, unhex(value ->> 'owner', '-') AS owner, \
       value ->> 'tries' AS tries, value ->> 'status' AS status, \
       value ->> 'favicon_url' AS favicon_url, value ->> 'error' AS error, \
       value ->> 'error_code' AS error_code, value ->> 'final_url' AS final_url, \
       value ->> 'mime' AS mime, value ->> 'width' AS width, value ->> 'height' AS height, \
       value ->> 'fetched_at' AS fetched_at, value ->> 'candidates' AS candidates, \
       value ->> 'candidates_dropped' AS candidates_dropped, \
       value ->> 'icon_sha256' AS icon_sha256, \
       value ->> 'dark_icon_sha256' AS dark_icon_sha256 FROM json_each($1)) AS u \
     WHERE result.id = u.id AND result.status = 'pending' AND result.lease_owner = u.owner \
       AND result.tries = u.tries \
     RETURNING result.id, result.tries";

/// The columns [`FINISH_SQL`] writes; `updated_at` and the lease's are written whatever the row.
const WRITTEN: [result::Column; 16] = [
    result::Column::Status,
    result::Column::FaviconUrl,
    result::Column::Error,
    result::Column::ErrorCode,
    result::Column::FinalUrl,
    result::Column::Mime,
    result::Column::Width,
    result::Column::Height,
    result::Column::FetchedAt,
    result::Column::Candidates,
    result::Column::CandidatesDropped,
    result::Column::IconSha256,
    result::Column::DarkIconSha256,
    result::Column::UpdatedAt,
    result::Column::LeaseOwner,
    result::Column::LeaseUntil,
];

/// The value of a column the write sets.
fn set<T: Into<sea_orm::Value>>(value: &ActiveValue<T>) -> Option<&T> {
    match value {
        ActiveValue::Set(v) | ActiveValue::Unchanged(v) => Some(v),
        ActiveValue::NotSet => None,
    }
}

/// A time as the database keeps it: on PostgreSQL microseconds (truncated as the driver does);
/// on SQLite the text the driver writes for a bound time, to the character, since SQLite
/// compares times as text.
fn stamp(backend: DbBackend, at: &DateTime<Utc>) -> String {
    match backend {
        DbBackend::Postgres => at.to_rfc3339_opts(SecondsFormat::Micros, true),
        _ => at.to_rfc3339_opts(SecondsFormat::AutoSi, false),
    }
}

/// `claim`'s finished row as a record of [`FINISH_SQL`], or `None` when its write sets a
/// column the statement does not write (then it is written on its own).
pub(super) fn record(
    backend: DbBackend,
    claim: &Claimed,
    row: &result::ActiveModel,
) -> Option<Value> {
    let only_these = result::Column::iter().all(|c| {
        let written = WRITTEN.iter().any(|w| w.as_str() == c.as_str());
        row.get(c).is_not_set() != written
    });
    if !only_these {
        return None;
    }
    Some(json!({
        "id": claim.id,
        "owner": claim.owner,
        "tries": claim.tries,
        "status": set(&row.status)?.to_value(),
        "favicon_url": set(&row.favicon_url)?,
        "error": set(&row.error)?,
        "error_code": set(&row.error_code)?.as_ref().map(ActiveEnum::to_value),
        "final_url": set(&row.final_url)?,
        "mime": set(&row.mime)?,
        "width": set(&row.width)?,
        "height": set(&row.height)?,
        "fetched_at": set(&row.fetched_at)?.as_ref().map(|at| stamp(backend, at)),
        "candidates": set(&row.candidates)?,
        "candidates_dropped": set(&row.candidates_dropped)?,
        "icon_sha256": set(&row.icon_sha256)?,
        "dark_icon_sha256": set(&row.dark_icon_sha256)?,
    }))
}

/// Writes `records` in one statement; returns the (row, try) of each row it changed.
pub(super) async fn finish(
    db: &impl ConnectionTrait,
    records: Vec<Value>,
    now: DateTime<Utc>,
) -> Result<HashSet<(Uuid, i32)>, DbErr> {
    if records.is_empty() {
        return Ok(HashSet::new());
    }
    let backend = db.get_database_backend();
    let (sql, rows) = match backend {
        DbBackend::Postgres => (FINISH_SQL, sea_orm::Value::from(Value::Array(records))),
        // SQLite reads JSON from text.
        _ => (FINISH_SQLITE, Value::Array(records).to_string().into()),
    };
    let rows = db
        .query_all_raw(Statement::from_sql_and_values(
            backend,
            sql,
            [rows, now.into()],
        ))
        .await?;
    rows.into_iter()
        .map(|row| Ok((row.try_get("", "id")?, row.try_get("", "tries")?)))
        .collect()
}
