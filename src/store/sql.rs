//! The SQL text the store's parts share: the partial-index clauses the queries repeat, and the
//! job's rules (final status, cancel, cache reuse) written as SQL from the model's enums and
//! [`crate::model::job`]'s types, so each rule has one SQL form beside its Rust one.
//!
//! A leaf: it names only the model, so every other store file may use it and none of them
//! needs another.

use crate::model::{ErrorCategory, JobStatus, ResultColumns, ResultStatus};

/// The claim index's clause (`idx_result_job_due`): rows still to be found. Written as a
/// literal because a bound parameter in its place would not match the index.
pub(super) const PENDING: &str = "status = 'pending'";
/// The lease index's clause (`idx_result_leased`): rows some worker holds.
pub(super) const LEASED: &str = "lease_owner IS NOT NULL";
/// The cache index's clause (`idx_result_fetched`): outcomes fetched by this service, not
/// copied from another job and not pending; the cross-job cache looks only at these.
pub(super) const FETCHED: &str = "cached = false AND status <> 'pending'";
/// The icon-reference index's clause (`idx_result_icon`): results that point at a stored
/// icon, probed by the icon collector, whose equality terms imply it.
pub(super) const HAS_ICON: &str = "icon_sha256 IS NOT NULL";
/// The clause of `idx_result_dark_icon`: results that point at a stored dark variant.
pub(super) const HAS_DARK_ICON: &str = "dark_icon_sha256 IS NOT NULL";
/// The failure index's clause (`idx_result_job_failure`): a job's finished failures, read by
/// the error-code filter and the failure groups.
pub(super) const FAILED: &str = "status = 'failed'";
/// The finished-order index's clause (`idx_result_finished_seq`): rows with their place in
/// their job's order of finishing; a cursor's `finished_seq > n` implies it.
pub(super) const NUMBERED: &str = "finished_seq IS NOT NULL";
/// The unnumbered index's clause (`idx_result_unnumbered`): rows finished in a transaction
/// that has not numbered them yet (none between transactions).
pub(super) const UNNUMBERED: &str = "finished_seq IS NULL AND status <> 'pending'";

/// The processing-job index's clause (`idx_job_processing`): jobs with work left. A fixed
/// word, not a bound value, so SQLite can use the partial index.
pub(super) const PROCESSING: &str = "status = 'processing'";

/// Jobs not being deleted: a deleted job is hidden from every read at once, while its
/// results are removed in batches (`lifecycle`).
pub(super) const NOT_DELETED: &str = "job.deleted_at IS NULL";

/// Jobs a client submitted, not a watch's checks (which job lists and allowances leave out).
pub(super) const NOT_A_CHECK: &str = "job.watch_id IS NULL";

/// The jobs a claim shares slots between: processing and not being deleted, at most `$3`,
/// read from `idx_job_processing` (whose clause [`PROCESSING`] is), answered oldest first;
/// with `due`, whether the job has a row a claim at `$1` with `$2` tries allowed would take,
/// one probe of the claim index for each job kept.
///
/// The bound takes every client's oldest job before any client's second (`turn`), so a
/// client with more running jobs than the bound cannot keep another client's only job out
/// of the claim.
pub(super) fn active_jobs_sql() -> String {
    format!(
        "SELECT id, client_id, priority, EXISTS (SELECT 1 FROM result \
             WHERE result.job_id = kept.id AND {claimable}) AS due \
         FROM (SELECT id, client_id, priority, created_at FROM \
                 (SELECT id, client_id, priority, created_at, row_number() OVER \
                    (PARTITION BY client_id ORDER BY created_at) AS turn \
                  FROM job WHERE {PROCESSING} AND {NOT_DELETED}) AS turns \
               ORDER BY turn, created_at LIMIT $3) AS kept \
         ORDER BY created_at",
        claimable = claimable("$1", "$2"),
    )
}

/// A result row a claim at `now` may take, `tries` being the tries allowed: pending (the
/// claim index's clause, so SQLite uses the index), due, its lease (if any) run out, tries
/// left.
pub(super) fn claimable(now: &str, tries: &str) -> String {
    format!(
        "{PENDING} AND run_at <= {now} \
         AND (lease_until IS NULL OR lease_until < {now}) AND tries < {tries}"
    )
}

/// The claim's guard against cancelled jobs: a primary-key probe per candidate row.
pub(super) fn not_cancelled() -> String {
    format!(
        "NOT EXISTS (SELECT 1 FROM job WHERE job.id = result.job_id AND job.status = '{}')",
        JobStatus::Cancelled.as_str()
    )
}

/// [`crate::model::job::final_status`] over a job row's columns, for a job whose counters
/// reached its total.
fn final_status_case() -> String {
    format!(
        "CASE WHEN completed = 0 AND total > 0 THEN '{}' ELSE '{}' END",
        JobStatus::Failed.as_str(),
        JobStatus::Completed.as_str()
    )
}

/// Adds a [`crate::model::job::Tally`] to job `$1`: `$2` completed, `$3` failed, changed at
/// `$4`.
pub(super) const COUNT: &str = "UPDATE job SET completed = completed + $2, \
     failed = failed + $3, updated_at = $4 WHERE id = $1";

/// Gives job `$1` its final status once its counters reach its total. Only a processing job
/// moves, so a cancelled one stays cancelled whatever its rows do afterwards.
pub(super) fn finish_sql() -> String {
    format!(
        "UPDATE job SET status = {} WHERE id = $1 AND status = '{}' \
         AND completed + failed >= total",
        final_status_case(),
        JobStatus::Processing.as_str()
    )
}

/// Moves job `$1` to cancelled at `$2`: only a processing job that is not being deleted, so a
/// finished job keeps its final status.
pub(super) fn cancel_job_sql() -> String {
    format!(
        "UPDATE job SET status = '{cancelled}', updated_at = $2 \
         WHERE id = $1 AND status = '{processing}' AND deleted_at IS NULL",
        cancelled = JobStatus::Cancelled.as_str(),
        processing = JobStatus::Processing.as_str(),
    )
}

/// Cancelled jobs that still have pending rows no worker holds (or whose lease ran out at
/// `$1`), a few at a time.
pub(super) fn cancelled_with_leftovers_sql() -> String {
    format!(
        "SELECT id FROM job WHERE status = '{cancelled}' AND EXISTS (SELECT 1 FROM result r \
           WHERE r.job_id = job.id AND r.status = '{pending}' \
             AND (r.lease_until IS NULL OR r.lease_until < $1)) \
         LIMIT 20",
        cancelled = JobStatus::Cancelled.as_str(),
        pending = ResultStatus::Pending.as_str(),
    )
}

/// Finishes the pending rows of job `$1` that no worker holds (or whose lease ran out at
/// `$2`) as `failed` with the code `cancelled` and the message `$3`.
pub(super) fn cancel_rows_sql() -> String {
    format!(
        "UPDATE result SET status = '{failed}', error_code = '{cancelled}', error = $3, \
           lease_owner = NULL, lease_until = NULL, updated_at = $2 \
         WHERE job_id = $1 AND status = '{pending}' \
           AND (lease_owner IS NULL OR lease_until < $2)",
        failed = ResultStatus::Failed.as_str(),
        cancelled = ErrorCategory::Cancelled.as_str(),
        pending = ResultStatus::Pending.as_str(),
    )
}

/// [`crate::model::CachePolicy::reusable`] over the fetch `t`, whose time is already at or
/// after the success cutoff: a success, or a permanent failure fetched at or after the
/// failure cutoff (the bound parameter `failure`).
pub(super) fn reusable(t: &str, failure: &str) -> String {
    format!(
        "({t}.status = '{success}' OR ({t}.fetched_at >= {failure} \
         AND {t}.error_code IN ({permanent})))",
        success = ResultStatus::Success.as_str(),
        permanent = permanent_codes(),
    )
}

/// The failure categories that are a permanent answer about a site, as an SQL list.
fn permanent_codes() -> String {
    ErrorCategory::ALL
        .iter()
        .filter(|c| c.is_cacheable())
        .map(|c| format!("'{}'", c.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A decisive fetch (columns prefixed by `t`, e.g. `r.` or nothing): a success whose icon was
/// kept, or a permanent failure. What `GET /icons/{domain}` serves is the newest of these: a
/// transient failure never replaces a good icon.
pub(super) fn decisive(t: &str) -> String {
    format!(
        "(({t}status = '{success}' AND {t}icon_sha256 IS NOT NULL) \
         OR ({t}status = '{failed}' AND {t}error_code IN ({permanent})))",
        success = ResultStatus::Success.as_str(),
        failed = ResultStatus::Failed.as_str(),
        permanent = permanent_codes(),
    )
}

/// The newest fetch of domain `$1` (`columns` of it), among this service's own fetches that
/// `also` admits and the rows kept in `domain_cache` when their job was purged, whichever is
/// newer. The results' part repeats the cache index's clause ([`FETCHED`]) so SQLite uses it.
pub(super) fn newest_fetch(columns: &str, also: &str) -> String {
    format!(
        "SELECT {columns} FROM (SELECT {columns} FROM result \
           WHERE domain = $1 AND {FETCHED} AND {also} ORDER BY fetched_at DESC LIMIT 1) AS r \
         UNION ALL SELECT {columns} FROM domain_cache WHERE domain = $1 AND {also} \
         ORDER BY fetched_at DESC LIMIT 1"
    )
}

/// The columns a cache hit copies from the earlier result: every column the views show
/// except the row's own (its domain, status, tries and whether it is a copy), the
/// candidates, and the stored icons' addresses (the chosen and the dark one; the blob itself is shared, not copied; the
/// views make `icon_url` from it). Each is nullable, so a domain without a hit gets NULL in each.
pub(super) fn copied_columns() -> Vec<&'static str> {
    ResultColumns::NAMES
        .into_iter()
        .filter(|c| !matches!(*c, "domain" | "status" | "tries" | "cached" | "icon_url"))
        .chain(["candidates", "icon_sha256", "dark_icon_sha256"])
        .collect()
}

/// The columns of a `domain_cache` row: the domain, its status and what a cache hit copies.
pub(super) fn cached_columns() -> Vec<&'static str> {
    ["domain", "status"]
        .into_iter()
        .chain(copied_columns())
        .chain(["candidates_dropped"])
        .collect()
}

/// The numbering statement: gives the rows of job `$1` finished and not numbered yet their
/// places after the largest so far, in position order among themselves.
pub(super) fn number_sql(returning: bool) -> String {
    format!(
        "UPDATE result SET finished_seq = s.base + s.rn \
         FROM (SELECT id AS rid, row_number() OVER (ORDER BY position) AS rn, \
                 (SELECT COALESCE(MAX(finished_seq), 0) FROM result \
                  WHERE job_id = $1 AND {NUMBERED}) AS base \
               FROM result WHERE job_id = $1 AND {UNNUMBERED}) AS s \
         WHERE result.id = s.rid{}",
        if returning {
            " RETURNING id, finished_seq"
        } else {
            ""
        }
    )
}
