//! The vocabulary every layer shares: statuses, failure categories, a page request, what the
//! finder found, the one view of a result, and the progress event.
//!
//! Nothing here does I/O or knows a layer above it: the store writes and reads these types,
//! the core hands them to the adapters, the adapters serialise them. A value is typed from
//! the edge on and serialised in one place: the statuses and categories are stored as text
//! through SeaORM's active enums and shown by serde (REST, events) and async-graphql with the
//! same lowercase words.

mod csv;
pub mod fair;
mod filter;
pub mod job;
mod outcome;
mod refresh;
mod view;
pub mod watch;
pub mod webhook;

pub use csv::{CsvRow, CsvWriter};
pub use filter::{
    Fields, ResultCursor, ResultFilter, parse_client_id, parse_error_code, parse_first,
    parse_priority, parse_status,
};
pub use job::{CachePolicy, Cutoffs, Job, QueueStanding, Tally};

pub use outcome::{
    Candidate, CandidateError, CandidateSource, DarkIcon, ErrorCategory, FindError, FindOutcome,
    Found, IconBytes,
};
pub use refresh::IconRefresh;
pub use view::{ICONS_PREFIX, IconView, ResultColumns, ResultView, icon_path};
pub use watch::ChangeSource;

use crate::error::{AppError, AppResult, Code};
use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A status stored as text and shown as the same lowercase word by every API: the one list
/// of derives and attributes both statuses share.
macro_rules! stored_words {
    ($(#[$meta:meta])* pub enum $name:ident { $($body:tt)* }) => {
        $(#[$meta])*
        #[derive(
            Clone, Copy, Debug, PartialEq, Eq, EnumIter, DeriveActiveEnum, async_graphql::Enum,
            Serialize, Deserialize, utoipa::ToSchema,
        )]
        #[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
        #[serde(rename_all = "lowercase")]
        pub enum $name { $($body)* }
    };
}

/// The most results (or jobs) a page may hold.
pub const MAX_PER_PAGE: u64 = 500;

/// The furthest item a page may reach: positions, counts and GraphQL's `Int` are i32, so no
/// list this service answers can hold more.
pub const MAX_PAGE_END: u64 = i32::MAX as u64;

/// A validated page request (`page` from 1, `per_page` in 1..=500, and the page's end,
/// `page × per_page`, at most [`MAX_PAGE_END`]), so its offset fits every integer the stores
/// and the APIs use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    /// 1-based page number.
    pub page: u64,
    /// Items per page.
    pub per_page: u64,
}

impl Page {
    /// Validates page numbers from either API. A page past any possible list is refused
    /// rather than answered empty: its offset would not fit the databases' integers, and a
    /// client that asks for it has a bug worth naming.
    pub fn new(page: i64, per_page: i64) -> AppResult<Self> {
        if page < 1 {
            return Err(AppError::bad_request(
                Code::InvalidPage,
                format!("page must be 1 or more, got {page}"),
            ));
        }
        if !(1..=MAX_PER_PAGE as i64).contains(&per_page) {
            return Err(AppError::bad_request(
                Code::InvalidPage,
                format!("per_page must be between 1 and {MAX_PER_PAGE}, got {per_page}"),
            ));
        }
        let (page, per_page) = (page as u64, per_page as u64);
        if page
            .checked_mul(per_page)
            .is_none_or(|end| end > MAX_PAGE_END)
        {
            return Err(AppError::bad_request(
                Code::InvalidPage,
                format!(
                    "page {page} of {per_page} starts past the most items a list can hold \
                     ({MAX_PAGE_END}): page × per_page must be at most that"
                ),
            ));
        }
        Ok(Self { page, per_page })
    }

    /// How many items come before this page; below [`MAX_PAGE_END`].
    pub fn offset(&self) -> u64 {
        (self.page - 1) * self.per_page
    }
}

stored_words! {
/// Where a job is in its life.
pub enum JobStatus {
    /// Some domains are still pending.
    #[sea_orm(string_value = "processing")]
    Processing,
    /// Every domain finished and at least one has an icon.
    #[sea_orm(string_value = "completed")]
    Completed,
    /// Every domain finished and none has an icon.
    #[sea_orm(string_value = "failed")]
    Failed,
    /// Stopped on request before finishing.
    #[sea_orm(string_value = "cancelled")]
    Cancelled,
}
}

impl JobStatus {
    /// The lowercase name used by the REST API and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Processing => "processing",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    /// Whether the job will change no more.
    pub fn is_final(self) -> bool {
        self != Self::Processing
    }
}

stored_words! {
/// How much of the workers' time a job asks for, next to other jobs (see `Priority::weight`).
#[derive(Default, PartialOrd, Ord)]
pub enum Priority {
    /// Background work (watches, bulk re-checks): half the share of a normal job.
    #[sea_orm(string_value = "low")]
    Low,
    /// The default.
    #[default]
    #[sea_orm(string_value = "normal")]
    Normal,
    /// Twice the share of a normal job; a key needs the `priority` scope to ask for it.
    #[sea_orm(string_value = "high")]
    High,
}
}

impl Priority {
    /// The lowercase name used by every API and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Normal => "normal",
            Self::High => "high",
        }
    }

    /// This priority's weight in the fair share of slots: a client's or a job's share is
    /// proportional to it.
    pub fn weight(self) -> u32 {
        match self {
            Self::Low => 1,
            Self::Normal => 2,
            Self::High => 4,
        }
    }
}

stored_words! {
/// Where one domain is.
#[derive(Default)]
pub enum ResultStatus {
    /// Not finished yet (queued, leased, or waiting for a retry).
    #[default]
    #[sea_orm(string_value = "pending")]
    Pending,
    /// A verified favicon was found.
    #[sea_orm(string_value = "success")]
    Success,
    /// Finished without a favicon.
    #[sea_orm(string_value = "failed")]
    Failed,
}
}

impl ResultStatus {
    /// The lowercase name used by the REST API, the CSV and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Success => "success",
            Self::Failed => "failed",
        }
    }
}

/// The state of a job at one moment, with the domains finished since the previous event:
/// what workers publish and `jobProgress` subscribers receive (over Redis as JSON).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProgressEvent {
    /// The job.
    pub job_id: Uuid,
    /// Its status at that moment.
    pub status: JobStatus,
    /// Distinct domains in the job.
    pub total: i32,
    /// Finished with an icon.
    pub completed: i32,
    /// Finished without one.
    pub failed: i32,
    /// `floor(100 · (completed + failed) / total)`.
    pub progress: i32,
    /// Domains finished since the previous event, as every view shows a result.
    #[serde(with = "view::wire")]
    pub finished: Vec<ResultColumns>,
    /// Where the event leaves a subscriber in the job's order of finishing: every domain up
    /// to this place has been named to it, or was finished before it subscribed. Resuming
    /// with `after: cursor` misses nothing (see [`ResultColumns::seq`]).
    #[serde(default)]
    pub cursor: i32,
}

impl ProgressEvent {
    /// Whether the job is finished in this event.
    pub fn is_final(&self) -> bool {
        self.status.is_final()
    }

    /// Domains finished, whatever the order events arrived in.
    pub fn done(&self) -> i32 {
        self.completed + self.failed
    }

    /// The same state without the finished domains (not cloned first: every subscriber of
    /// a job keeps one per event, and copying the domains only to drop them was about a
    /// quarter of the service's CPU with 1,000 subscribers).
    pub fn counts_only(&self) -> Self {
        Self {
            job_id: self.job_id,
            status: self.status,
            total: self.total,
            completed: self.completed,
            failed: self.failed,
            progress: self.progress,
            finished: Vec::new(),
            cursor: self.cursor,
        }
    }

    /// Folds a later event into this one: the most advanced counters win (events from
    /// several processes may arrive out of order) and finished domains accumulate. The one
    /// coalescing rule, used by publishers and subscribers alike.
    pub fn merge(&mut self, later: ProgressEvent) {
        if later.done() >= self.done() || later.is_final() {
            self.status = later.status;
            self.total = later.total;
            self.completed = later.completed;
            self.failed = later.failed;
            self.progress = later.progress;
        }
        self.cursor = self.cursor.max(later.cursor);
        self.finished.extend(later.finished);
    }
}

/// Whether a background part of the process keeps up; `/healthz` asks it. The worker's
/// recorder implements it, so the health endpoint needs no worker types.
pub trait Liveness: Send + Sync {
    /// Why the part is stuck, or `None` when it is fine.
    fn stalled(&self) -> Option<String>;
}

#[cfg(test)]
impl ProgressEvent {
    /// A ten-domain job's event in which `domains` just finished with an icon.
    pub(crate) fn sample(
        job_id: Uuid,
        status: JobStatus,
        completed: i32,
        failed: i32,
        domains: &[&str],
    ) -> Self {
        Self {
            job_id,
            status,
            total: 10,
            completed,
            failed,
            progress: (completed + failed) * 10,
            finished: domains
                .iter()
                .map(|d| ResultColumns {
                    domain: (*d).into(),
                    status: ResultStatus::Success,
                    ..ResultColumns::default()
                })
                .collect(),
            cursor: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(status: JobStatus, completed: i32, failed: i32, domains: &[&str]) -> ProgressEvent {
        ProgressEvent::sample(Uuid::nil(), status, completed, failed, domains)
    }

    #[test]
    fn merging_keeps_the_most_advanced_counts_and_every_domain() {
        let mut merged = event(JobStatus::Processing, 2, 0, &["a", "b"]);
        merged.merge(event(JobStatus::Processing, 5, 1, &["c"]));
        // An older event from another process arrives late: counts stay, domains add up.
        merged.merge(event(JobStatus::Processing, 3, 0, &["d"]));
        assert_eq!((merged.completed, merged.failed), (5, 1));
        let names: Vec<_> = merged.finished.iter().map(|f| f.domain.as_str()).collect();
        assert_eq!(names, ["a", "b", "c", "d"]);
        merged.merge(event(JobStatus::Completed, 9, 1, &["e"]));
        assert!(merged.is_final());
    }

    #[test]
    fn statuses_travel_as_the_stored_words() {
        let json = serde_json::to_value(event(JobStatus::Completed, 1, 0, &["a"])).unwrap();
        assert_eq!(json["status"], "completed");
        assert_eq!(json["finished"][0]["status"], "success");
        for status in [JobStatus::Processing, JobStatus::Cancelled] {
            assert_eq!(serde_json::to_value(status).unwrap(), status.as_str());
            assert_eq!(status.to_value(), status.as_str());
        }
        for status in [ResultStatus::Pending, ResultStatus::Failed] {
            assert_eq!(serde_json::to_value(status).unwrap(), status.as_str());
            assert_eq!(status.to_value(), status.as_str());
        }
    }

    #[test]
    fn pages_are_bounded() {
        assert!(Page::new(0, 20).is_err());
        assert!(Page::new(1, 0).is_err());
        assert!(Page::new(1, 501).is_err());
        assert_eq!(Page::new(2, 500).unwrap().per_page, 500);
        assert_eq!(Page::new(3, 500).unwrap().offset(), 1000);
        assert!(Page::new(i64::MAX, 500).is_err());
        assert!(Page::new(1 << 40, 500).is_err());
        assert!(Page::new(1 << 31, 1).is_err());
        assert_eq!(
            Page::new(i32::MAX as i64, 1).unwrap().offset(),
            i32::MAX as u64 - 1
        );
    }
}
