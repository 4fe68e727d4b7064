//! What the REST and GraphQL APIs share: parsing their inputs at the edge into typed values,
//! and the operations both expose. Neither API re-implements a rule found here.

use crate::domain::Domain;
use crate::error::{AppError, AppResult, code};
use crate::events::Events;
use crate::store::Store;
use futures::Stream;
use sea_orm::DbErr;
use serde_json::json;
use std::collections::HashSet;
use uuid::Uuid;

/// The most results a page may hold.
pub const MAX_PER_PAGE: u64 = 500;
/// The longest `client_id` we store.
const MAX_CLIENT_ID_LEN: usize = 255;
/// Bad entries listed in an error's message; `details` lists them all.
const BAD_ENTRIES_IN_MESSAGE: usize = 10;

/// A validated page request (`page` from 1, `per_page` in 1..=500).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    /// 1-based page number.
    pub page: u64,
    /// Items per page.
    pub per_page: u64,
}

impl Page {
    /// Validates page numbers from either API.
    pub fn new(page: i64, per_page: i64) -> AppResult<Self> {
        if page < 1 {
            return Err(AppError::bad_request(
                code::INVALID_PAGE,
                format!("page must be 1 or more, got {page}"),
            ));
        }
        if !(1..=MAX_PER_PAGE as i64).contains(&per_page) {
            return Err(AppError::bad_request(
                code::INVALID_PAGE,
                format!("per_page must be between 1 and {MAX_PER_PAGE}, got {per_page}"),
            ));
        }
        Ok(Self {
            page: page as u64,
            per_page: per_page as u64,
        })
    }
}

/// Parses a job id given by a client.
pub fn parse_job_id(raw: &str) -> AppResult<Uuid> {
    Uuid::parse_str(raw.trim()).map_err(|_| {
        AppError::bad_request(
            code::INVALID_ID,
            format!("job id {raw:?} is not a valid id (expected a UUID)"),
        )
    })
}

/// How an API names the fields of a job request, so that an error names what the caller
/// wrote (`client_id` over REST, `input.clientId` over GraphQL).
#[derive(Clone, Copy, Debug)]
pub struct Fields {
    /// The client's name for itself.
    pub client_id: &'static str,
    /// The list of domains.
    pub domains: &'static str,
    /// The job's own cache age.
    pub max_age: &'static str,
}

impl Fields {
    /// The REST API's names (the original service's JSON).
    pub const REST: Fields = Fields {
        client_id: "client_id",
        domains: "domains",
        max_age: "max_age_seconds",
    };
    /// The GraphQL `createJob(input: …)` names.
    pub const GRAPHQL: Fields = Fields {
        client_id: "input.clientId",
        domains: "input.domains",
        max_age: "input.maxAgeSeconds",
    };
}

/// Validates a `client_id`.
pub fn parse_client_id(raw: &str, fields: Fields) -> AppResult<String> {
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Err(AppError::bad_request(
            code::INVALID_INPUT,
            format!("{} must not be empty", fields.client_id),
        ));
    }
    if trimmed.len() > MAX_CLIENT_ID_LEN {
        return Err(AppError::bad_request(
            code::INVALID_INPUT,
            format!(
                "{} must be at most {MAX_CLIENT_ID_LEN} characters",
                fields.client_id
            ),
        ));
    }
    Ok(trimmed.to_owned())
}

/// One submitted domain entry: a string, or something else a JSON client sent by mistake.
pub enum Entry<'a> {
    /// A string to parse as a domain.
    Text(&'a str),
    /// A value of another JSON type, described for the error message.
    NotText(&'static str),
}

/// Parses every entry, merging duplicates in first-seen order; names every bad entry.
pub fn parse_domains<'a>(
    entries: impl ExactSizeIterator<Item = Entry<'a>>,
    max: usize,
    fields: Fields,
) -> AppResult<Vec<Domain>> {
    let count = entries.len();
    if count == 0 {
        return Err(AppError::bad_request(
            code::INVALID_INPUT,
            format!("{} must not be empty", fields.domains),
        ));
    }
    if count > max {
        return Err(AppError::bad_request(
            code::TOO_MANY_DOMAINS,
            format!("a job may hold at most {max} domains; this request has {count}"),
        ));
    }
    let mut seen = HashSet::with_capacity(count);
    let mut domains = Vec::with_capacity(count);
    let mut bad = Vec::new();
    for (position, entry) in entries.enumerate() {
        match entry {
            Entry::Text(raw) => match Domain::parse(raw) {
                Ok(domain) => {
                    if seen.insert(domain.clone()) {
                        domains.push(domain);
                    }
                }
                Err(err) => bad.push((position, json!(raw), err.to_string())),
            },
            Entry::NotText(kind) => bad.push((
                position,
                json!(null),
                format!("is a JSON {kind}, not a string"),
            )),
        }
    }
    if bad.is_empty() {
        return Ok(domains);
    }
    let listed: Vec<String> = bad
        .iter()
        .take(BAD_ENTRIES_IN_MESSAGE)
        .map(|(pos, value, reason)| format!("{}[{pos}] {value} {reason}", fields.domains))
        .collect();
    let more = bad.len().saturating_sub(BAD_ENTRIES_IN_MESSAGE);
    let message = format!(
        "{} of {count} domain entries are invalid: {}{}",
        bad.len(),
        listed.join("; "),
        if more > 0 {
            format!("; and {more} more (see details)")
        } else {
            String::new()
        }
    );
    let details: Vec<_> = bad
        .into_iter()
        .map(|(position, value, reason)| json!({"position": position, "value": value, "reason": reason}))
        .collect();
    Err(AppError::BadRequest {
        code: code::INVALID_DOMAINS,
        message,
        details: Some(json!(details)),
    })
}

/// The longest `max_age_seconds` a job may ask for (one year).
pub const MAX_CACHE_AGE_SECS: i64 = 31_536_000;

/// Validates a job's own `max_age_seconds`.
pub fn parse_max_age(raw: Option<i64>, fields: Fields) -> AppResult<Option<u64>> {
    match raw {
        None => Ok(None),
        Some(secs) if (0..=MAX_CACHE_AGE_SECS).contains(&secs) => Ok(Some(secs as u64)),
        Some(secs) => Err(AppError::bad_request(
            code::INVALID_INPUT,
            format!(
                "{} must be between 0 and {MAX_CACHE_AGE_SECS}, got {secs}",
                fields.max_age
            ),
        )),
    }
}

/// Per-client allowances over a rolling hour (0 means no limit).
#[derive(Clone, Copy, Debug)]
pub struct RateLimits {
    /// Jobs per hour.
    pub jobs_per_hour: u64,
    /// Domains per hour.
    pub domains_per_hour: u64,
}

/// Refuses a new job of `domains` domains when the client is over an hourly allowance.
///
/// Counted from the job table, so the limit holds across every API process of a fleet; two
/// requests racing at the very edge may both pass.
pub async fn check_rate(
    store: &Store,
    limits: RateLimits,
    client_id: &str,
    domains: usize,
) -> AppResult<()> {
    if limits.jobs_per_hour == 0 && limits.domains_per_hour == 0 {
        return Ok(());
    }
    let hour = chrono::Duration::hours(1);
    let now = crate::store::now();
    // Waiting cannot help a job bigger than the whole allowance, so this is not a 429 with a
    // Retry-After that would send clients into a retry loop.
    if limits.domains_per_hour > 0 && domains as u64 > limits.domains_per_hour {
        return Err(AppError::bad_request(
            code::TOO_MANY_DOMAINS,
            format!(
                "this job alone has {domains} domains, more than the {} a client may submit per \
                 hour (RATE_LIMIT_DOMAINS_PER_HOUR); split it into smaller jobs",
                limits.domains_per_hour
            ),
        ));
    }
    let (jobs, submitted, oldest) = store.client_usage_since(client_id, now - hour).await?;
    let retry_after_secs = oldest
        .map(|t| (t + hour - now).num_seconds().max(1) as u64)
        .unwrap_or(1);
    if limits.jobs_per_hour > 0 && jobs >= limits.jobs_per_hour {
        return Err(AppError::RateLimited {
            message: format!(
                "client {client_id:?} created {jobs} jobs in the last hour; the limit is {}",
                limits.jobs_per_hour
            ),
            retry_after_secs,
        });
    }
    if limits.domains_per_hour > 0 && submitted + domains as u64 > limits.domains_per_hour {
        return Err(AppError::RateLimited {
            message: format!(
                "client {client_id:?} submitted {submitted} domains in the last hour; {domains} more would pass the limit of {}",
                limits.domains_per_hour
            ),
            retry_after_secs,
        });
    }
    Ok(())
}

/// Creates a job from validated input and wakes the workers (unless the cache answered all).
pub async fn create_job(
    store: &Store,
    events: &Events,
    client_id: &str,
    domains: &[Domain],
    cache: CachePolicy,
) -> AppResult<JobView> {
    let view = store.create_job(client_id, domains, cache).await?;
    let cached = view.job.completed + view.job.failed;
    if cached < view.job.total {
        events.notify_work();
    }
    let _span = tracing::info_span!("job", job_id = %view.job.id).entered();
    tracing::info!(client_id, total = view.job.total, cached, "job created");
    Ok(view)
}

/// Loads a job or fails with `NOT_FOUND`.
pub async fn find_job(store: &Store, id: Uuid) -> AppResult<JobView> {
    store
        .job(id)
        .await?
        .ok_or_else(|| AppError::NotFound(format!("no job with id {id}")))
}

/// The row shapes the adapters map to their answers; the store defines them.
pub use crate::store::{CachePolicy, ExportRow, FinishedDomain, JobView};

/// The core's handle: every use case the adapters (REST, GraphQL, health) call, so none of
/// them reaches the store. Reads keep the store's error type, which each adapter maps as
/// before.
#[derive(Clone)]
pub struct Jobs {
    store: Store,
    /// Wakes the workers when a job has work left.
    events: Events,
}

impl Jobs {
    /// The use cases over this database and these events.
    pub fn new(store: Store, events: Events) -> Self {
        Self { store, events }
    }

    /// See [`check_rate`].
    pub async fn check_rate(
        &self,
        limits: RateLimits,
        client_id: &str,
        domains: usize,
    ) -> AppResult<()> {
        check_rate(&self.store, limits, client_id, domains).await
    }

    /// See [`create_job`].
    pub async fn create(
        &self,
        client_id: &str,
        domains: &[Domain],
        cache: CachePolicy,
    ) -> AppResult<JobView> {
        create_job(&self.store, &self.events, client_id, domains, cache).await
    }

    /// See [`find_job`].
    pub async fn find(&self, id: Uuid) -> AppResult<JobView> {
        find_job(&self.store, id).await
    }

    /// A job, or `None` when there is none: a re-read where absence is not an error.
    pub async fn job(&self, id: Uuid) -> Result<Option<JobView>, DbErr> {
        self.store.job(id).await
    }

    /// One page of a client's jobs, newest first, and how many it has in all.
    pub async fn jobs_for_client(
        &self,
        client_id: &str,
        page: Page,
    ) -> Result<(Vec<JobView>, u64), DbErr> {
        self.store
            .jobs_for_client(client_id, page.page, page.per_page)
            .await
    }

    /// One page of a job's results, in submission order.
    pub async fn results_page(
        &self,
        id: Uuid,
        page: Page,
    ) -> Result<Vec<crate::entities::result::Model>, DbErr> {
        self.store.results_page(id, page.page, page.per_page).await
    }

    /// Domains of a job finished after `since`, at most `limit`: what a subscriber missed.
    pub async fn finished_since(
        &self,
        id: Uuid,
        since: chrono::DateTime<chrono::Utc>,
        limit: u64,
    ) -> Result<Vec<FinishedDomain>, DbErr> {
        self.store.finished_since(id, since, limit).await
    }

    /// Every result of a job for the export, in chunks of about `max_bytes`.
    pub fn export(
        &self,
        id: Uuid,
        max_bytes: usize,
    ) -> impl Stream<Item = Result<Vec<ExportRow>, DbErr>> + Send + 'static {
        self.store.results_stream(id, max_bytes)
    }

    /// How many jobs are in each status, fleet-wide (a metrics gauge).
    pub async fn job_status_counts(&self) -> Result<Vec<(String, i64)>, DbErr> {
        self.store.job_status_counts().await
    }

    /// Result rows waiting for a worker, and how many of them are leased now.
    pub async fn queue_depth(&self) -> Result<(i64, i64), DbErr> {
        self.store.queue_depth().await
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> Result<(), DbErr> {
        self.store.ping().await
    }

    /// Whether every migration has been applied.
    pub async fn migrations_applied(&self) -> Result<bool, DbErr> {
        self.store.migrations_applied().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(items: &[&'static str]) -> Vec<Entry<'static>> {
        items.iter().map(|s| Entry::Text(s)).collect()
    }

    #[test]
    fn duplicates_merge_in_first_seen_order() {
        let domains = parse_domains(
            texts(&["b.com", "A.com", "https://b.com/x", "a.com."]).into_iter(),
            10,
            Fields::REST,
        )
        .unwrap();
        let names: Vec<_> = domains.iter().map(|d| d.as_str()).collect();
        assert_eq!(names, ["b.com", "a.com"]);
    }

    #[test]
    fn every_bad_entry_is_named_with_its_position() {
        let err = parse_domains(
            texts(&["ok.com", "localhost", "ok.org", "1.2.3.4"]).into_iter(),
            10,
            Fields::REST,
        )
        .unwrap_err();
        let AppError::BadRequest {
            code,
            message,
            details,
        } = err
        else {
            panic!("expected a bad request");
        };
        assert_eq!(code, code::INVALID_DOMAINS);
        assert!(message.contains("domains[1] \"localhost\""), "{message}");
        assert!(message.contains("domains[3] \"1.2.3.4\""), "{message}");
        let details = details.unwrap();
        assert_eq!(details.as_array().unwrap().len(), 2);
        assert_eq!(details[1]["position"], 3);
    }

    #[test]
    fn limits_and_pages() {
        assert!(parse_domains(texts(&[]).into_iter(), 10, Fields::REST).is_err());
        let err =
            parse_domains(texts(&["a.com", "b.com"]).into_iter(), 1, Fields::REST).unwrap_err();
        assert_eq!(err.code(), code::TOO_MANY_DOMAINS);
        assert!(Page::new(0, 20).is_err());
        assert!(Page::new(1, 0).is_err());
        assert!(Page::new(1, 501).is_err());
        assert_eq!(Page::new(2, 500).unwrap().per_page, 500);
        assert!(parse_job_id("not-a-uuid").is_err());
        assert!(parse_client_id("  ", Fields::REST).is_err());
    }
}
