//! Reading a job's results: a page (`page`/`perPage`, the original API's form), a slice after
//! a cursor (infinite scroll), either one filtered; and the job's failures grouped by code.
//! Each read first checks the caller may see the job, as [`Jobs::find`] does.

use super::Jobs;
use crate::auth::{Caller, Scope};
use crate::error::AppResult;
use crate::model::Job;
use crate::model::{ErrorCategory, Page, ResultCursor, ResultFilter, ResultView};
use serde::Serialize;
use uuid::Uuid;

/// One page of a job's results, in submission order; REST answers it as is.
#[derive(Clone, Debug, Serialize, async_graphql::SimpleObject, utoipa::ToSchema)]
pub struct ResultPage {
    /// The results on this page.
    pub results: Vec<ResultView>,
    /// This page's number (from 1).
    pub page: u64,
    /// Page size.
    pub per_page: u64,
    /// Results the filters match in the whole job (all of them without filters).
    pub total: i32,
}

/// A slice of a job's results after a cursor, in submission order.
#[derive(Clone, Debug)]
pub struct ResultSlice {
    /// The results, each with its cursor.
    pub results: Vec<(ResultCursor, ResultView)>,
    /// Whether more results match after the last one.
    pub has_next_page: bool,
}

impl ResultSlice {
    /// The last result's cursor: where the next slice starts.
    pub fn end_cursor(&self) -> Option<ResultCursor> {
        self.results.last().map(|(cursor, _)| *cursor)
    }
}

/// How many of a job's finished failures have one error code.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, async_graphql::SimpleObject, utoipa::ToSchema)]
pub struct FailureGroup {
    /// The failure code (`dns`, `timeout`, …), as results show it in `error_code`.
    #[graphql(name = "errorCode")]
    pub error_code: ErrorCategory,
    /// Failed results with this code.
    pub count: i32,
}

impl Jobs {
    /// One page of a job's results that `filter` matches, in submission order, with how many
    /// match in all; or `NOT_FOUND` (as [`Jobs::find`]).
    pub async fn results(
        &self,
        caller: &Caller,
        id: Uuid,
        page: Page,
        filter: &ResultFilter,
    ) -> AppResult<ResultPage> {
        let view = self.job(caller, id).await?;
        let mut results = self
            .store
            .results_page(id, filter, page.offset(), page.per_page)
            .await?;
        self.link_icons(&mut results);
        // The job keeps its own count; only a filtered total costs a count.
        let total = if filter.is_empty() {
            view.total
        } else {
            i32::try_from(self.store.count_results(id, filter).await?).unwrap_or(i32::MAX)
        };
        Ok(ResultPage {
            results,
            page: page.page,
            per_page: page.per_page,
            total,
        })
    }

    /// At most `first` of a job's results that `filter` matches after `after` (from the start
    /// without one), in submission order; or `NOT_FOUND` (as [`Jobs::find`]). A slice costs
    /// the same wherever it starts.
    pub async fn results_after(
        &self,
        caller: &Caller,
        id: Uuid,
        after: Option<ResultCursor>,
        first: u64,
        filter: &ResultFilter,
    ) -> AppResult<ResultSlice> {
        self.job(caller, id).await?;
        // One row more than asked says whether there is a next page without a count.
        let mut rows = self
            .store
            .results_after(id, filter, after.map(|c| c.0), first + 1)
            .await?;
        let has_next_page = rows.len() as u64 > first;
        rows.truncate(first as usize);
        let (positions, mut views): (Vec<i32>, Vec<ResultView>) = rows.into_iter().unzip();
        self.link_icons(&mut views);
        Ok(ResultSlice {
            results: positions.into_iter().map(ResultCursor).zip(views).collect(),
            has_next_page,
        })
    }

    /// A job's finished failures grouped by error code, the largest group first; `None` for
    /// a caller who may not read the job's results (see [`Jobs::may_read`]). It takes the job
    /// as read for the caller (by [`Jobs::job`], [`Jobs::cancel`] and the like), so only a
    /// job the caller may see is counted.
    pub async fn failures_by_reason(
        &self,
        caller: &Caller,
        job: &Job,
    ) -> AppResult<Option<Vec<FailureGroup>>> {
        if !Self::may_read(caller) {
            return Ok(None);
        }
        Ok(Some(
            self.store
                .failures_by_reason(job.id)
                .await?
                .into_iter()
                .map(|(code, count): (ErrorCategory, i64)| FailureGroup {
                    error_code: code,
                    count: i32::try_from(count).unwrap_or(i32::MAX),
                })
                .collect(),
        ))
    }

    /// Whether an answer about a job may carry what reads its results: failure groups, and
    /// the signed download link (which serves the whole CSV to whoever holds it). A caller
    /// with `submit` alone is answered the job's counts when it creates or cancels one, and
    /// nothing more: a key without `read` must not read by the back door.
    pub fn may_read(caller: &Caller) -> bool {
        caller.may(Scope::Read)
    }

    /// Makes the results' icon links absolute under `PUBLIC_URL`, when it is set.
    fn link_icons(&self, views: &mut [ResultView]) {
        for view in views {
            view.columns.link_icon(self.public_url.as_deref());
        }
    }
}
