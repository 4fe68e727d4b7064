//! A job's life as plain values: its counters, its progress, when it is finished and how, what
//! a cancel counts, and when an earlier result may be reused. The store writes these rules
//! into its SQL (`store::sql`), so each is stated here once and tested without a database.

use super::{ErrorCategory, JobStatus, Priority, ProgressEvent, ResultStatus};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::time::Duration;
use uuid::Uuid;

/// A job as every layer sees it: the one shape REST serialises, GraphQL flattens into its
/// `Job` and events start from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema, async_graphql::SimpleObject)]
#[graphql(name = "JobFields")]
#[schema(as = JobFields)]
pub struct Job {
    /// The job id.
    #[serde(rename = "job_id")]
    #[graphql(skip)]
    pub id: Uuid,
    /// The submitting client's `client_id` (`clientId` over GraphQL).
    #[serde(rename = "client_id")]
    #[graphql(name = "clientId")]
    pub client: String,
    /// `processing`, `completed`, `failed` or `cancelled`.
    pub status: JobStatus,
    /// Percent of domains finished, rounded down.
    pub progress: i32,
    /// `low`, `normal` or `high`: the job's weight in the workers' fair share.
    pub priority: Priority,
    /// Distinct domains in the job.
    pub total: i32,
    /// Domains finished with an icon.
    pub completed: i32,
    /// Domains finished without one.
    pub failed: i32,
    /// When submitted.
    pub created_at: DateTime<Utc>,
    /// When last changed.
    pub updated_at: DateTime<Utc>,
}

impl Job {
    /// Domains finished, with an icon or without.
    pub fn done(&self) -> i32 {
        self.completed + self.failed
    }
}

/// The event that says where the job stands, with no finished domains.
impl From<&Job> for ProgressEvent {
    fn from(job: &Job) -> Self {
        Self {
            job_id: job.id,
            status: job.status,
            total: job.total,
            completed: job.completed,
            failed: job.failed,
            progress: job.progress,
            finished: Vec::new(),
            // Finished domains are numbered in the transaction that counts them.
            cursor: job.done(),
        }
    }
}

/// Where a processing job stands among the work the workers share: its own domains left and
/// held, and how much other work waits beside it. Counts only: a client learns how busy the
/// service is, never who else uses it.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Serialize,
    utoipa::ToSchema,
    async_graphql::SimpleObject,
)]
#[graphql(name = "JobQueue")]
#[schema(as = JobQueue)]
pub struct QueueStanding {
    /// This job's domains not finished yet.
    pub pending: i32,
    /// This job's domains a worker is fetching right now (a live lease).
    pub in_flight: i32,
    /// Other processing jobs with domains not finished, this client's own among them.
    pub other_jobs: i32,
    /// Other clients with such jobs: how many the workers' slots are shared with.
    pub other_clients: i32,
    /// The domains not finished of those other clients' jobs.
    pub other_clients_pending: i32,
}

/// `floor(100 · (completed + failed) / total)`; an empty job counts as done.
pub fn progress(total: i32, completed: i32, failed: i32) -> i32 {
    if total <= 0 {
        100
    } else {
        ((i64::from(completed + failed) * 100) / i64::from(total)).min(100) as i32
    }
}

/// The status a processing job takes once these are its counters: none while domains are
/// left; `failed` when every domain failed; `completed` otherwise (an empty job too).
pub fn final_status(total: i32, completed: i32, failed: i32) -> Option<JobStatus> {
    if completed + failed < total {
        None
    } else if completed == 0 && total > 0 {
        Some(JobStatus::Failed)
    } else {
        Some(JobStatus::Completed)
    }
}

/// What finishing some rows adds to a job's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Rows finished with an icon.
    pub completed: i32,
    /// Rows finished without one (failures and cancelled rows).
    pub failed: i32,
}

impl Tally {
    /// Rows a cancel finished: none was fetched, so each counts as failed.
    pub fn cancelled(rows: u64) -> Self {
        Self {
            completed: 0,
            failed: i32::try_from(rows).unwrap_or(i32::MAX),
        }
    }

    /// Counts `rows` rows finished as `status`; a pending row is not finished and counts
    /// nothing.
    pub fn add(&mut self, status: ResultStatus, rows: i32) {
        match status {
            ResultStatus::Success => self.completed += rows,
            ResultStatus::Failed => self.failed += rows,
            ResultStatus::Pending => {}
        }
    }

    /// Whether the tally moves nothing.
    pub fn is_empty(&self) -> bool {
        self.completed == 0 && self.failed == 0
    }
}

/// How a new job may reuse earlier jobs' results instead of fetching (the cross-job cache).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CachePolicy {
    /// Reuse a success fetched at most this long ago; zero turns the cache off.
    pub max_age: Duration,
    /// Reuse a permanent failure (no such domain, no icon, blocked…) fetched at most this long
    /// ago. Transient failures are never reused.
    pub failure_max_age: Duration,
}

/// The moments a [`CachePolicy`] draws at one time: what was fetched at or after them may be
/// reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cutoffs {
    /// A success fetched at or after this may be reused.
    pub success: DateTime<Utc>,
    /// A permanent failure fetched at or after this may be reused; never older than
    /// `success`, which therefore bounds any search.
    pub failure: DateTime<Utc>,
}

impl CachePolicy {
    /// Always fetch.
    pub const OFF: Self = Self {
        max_age: Duration::ZERO,
        failure_max_age: Duration::ZERO,
    };

    /// The cutoffs at `now`; `None` when the cache is off.
    pub fn cutoffs(&self, now: DateTime<Utc>) -> Option<Cutoffs> {
        if self.max_age.is_zero() {
            return None;
        }
        let age =
            |d: Duration| now - chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX);
        Some(Cutoffs {
            success: age(self.max_age),
            failure: age(self.failure_max_age.min(self.max_age)),
        })
    }

    /// Whether a domain's newest fetch (its status, failure code and time) answers a new job
    /// at `now` instead of a fetch.
    pub fn reusable(
        &self,
        status: ResultStatus,
        error_code: Option<ErrorCategory>,
        fetched_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> bool {
        let Some(cut) = self.cutoffs(now) else {
            return false;
        };
        match status {
            ResultStatus::Success => fetched_at >= cut.success,
            ResultStatus::Failed => {
                error_code.is_some_and(ErrorCategory::is_cacheable) && fetched_at >= cut.failure
            }
            ResultStatus::Pending => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_rounds_down_and_an_empty_job_is_done() {
        assert_eq!(progress(3, 1, 0), 33);
        assert_eq!(progress(3, 1, 1), 66);
        assert_eq!(progress(3, 2, 1), 100);
        assert_eq!(progress(0, 0, 0), 100);
        // Counters near i32::MAX do not overflow the multiplication.
        assert_eq!(progress(i32::MAX, i32::MAX - 1, 0), 99);
    }

    #[test]
    fn a_job_ends_failed_only_when_every_domain_failed() {
        assert_eq!(final_status(3, 2, 0), None);
        assert_eq!(final_status(3, 0, 3), Some(JobStatus::Failed));
        assert_eq!(final_status(3, 1, 2), Some(JobStatus::Completed));
        assert_eq!(final_status(0, 0, 0), Some(JobStatus::Completed));
    }

    #[test]
    fn cancelled_rows_count_as_failed_and_pending_counts_nothing() {
        let mut tally = Tally::cancelled(2);
        tally.add(ResultStatus::Success, 3);
        tally.add(ResultStatus::Pending, 5);
        tally.add(ResultStatus::Failed, 1);
        assert_eq!(
            tally,
            Tally {
                completed: 3,
                failed: 3
            }
        );
        assert!(Tally::default().is_empty());
        assert!(!tally.is_empty());
    }

    #[test]
    fn reuse_follows_the_ages_and_only_permanent_failures() {
        let now = Utc::now();
        let hours = |h: i64| now - chrono::Duration::hours(h);
        let policy = CachePolicy {
            max_age: Duration::from_secs(10 * 3600),
            failure_max_age: Duration::from_secs(2 * 3600),
        };
        let permanent = ErrorCategory::ALL
            .into_iter()
            .find(|c| c.is_cacheable())
            .unwrap();
        let transient = ErrorCategory::ALL
            .into_iter()
            .find(|c| !c.is_cacheable())
            .unwrap();
        assert!(policy.reusable(ResultStatus::Success, None, hours(9), now));
        assert!(!policy.reusable(ResultStatus::Success, None, hours(11), now));
        assert!(policy.reusable(ResultStatus::Failed, Some(permanent), hours(1), now));
        assert!(!policy.reusable(ResultStatus::Failed, Some(permanent), hours(3), now));
        assert!(!policy.reusable(ResultStatus::Failed, Some(transient), hours(1), now));
        assert!(!policy.reusable(ResultStatus::Failed, None, hours(1), now));
        assert!(!policy.reusable(ResultStatus::Pending, None, hours(1), now));
        assert!(!CachePolicy::OFF.reusable(ResultStatus::Success, None, now, now));
        // A failure age above the success age is capped by it.
        let wide = CachePolicy {
            max_age: Duration::from_secs(3600),
            failure_max_age: Duration::from_secs(10 * 3600),
        };
        let cut = wide.cutoffs(now).unwrap();
        assert_eq!(cut.failure, cut.success);
        assert_eq!(CachePolicy::OFF.cutoffs(now), None);
    }
}
