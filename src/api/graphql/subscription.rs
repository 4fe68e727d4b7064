//! `jobProgress`: the core's progress stream ([`crate::jobs::Jobs::progress`]) as GraphQL
//! objects, held against the connection's subscription limit.
//!
//! The core's events are frames shared by every subscriber of a job. Each frame is resolved
//! and serialised once per distinct selection (the selection set, the fragments and the
//! variables it may read), and over WebSocket the JSON goes out as is through
//! [`RawFrames`]; elsewhere (e.g. a schema executed in tests) it is resolved as usual.

use super::*;
use crate::api::raw_frames::RawFrames;
use crate::jobs::ProgressFrame;
use async_graphql::parser::types::Field;
use async_graphql::registry::Registry;
use async_graphql::{ContextSelectionSet, OutputType, Positioned, ServerResult, Value};
use std::borrow::Cow;

/// A job's progress at one moment, with the domains finished since the previous event.
#[derive(SimpleObject, Clone)]
pub struct JobProgress {
    /// The job.
    job_id: ID,
    /// Life-cycle state.
    status: JobStatus,
    /// Distinct domains in the job.
    total: i32,
    /// Finished with an icon.
    completed: i32,
    /// Finished without one.
    failed: i32,
    /// Percent finished, rounded down.
    progress: i32,
    /// Domains finished since the previous event (empty in the first, snapshot event, unless
    /// the subscription resumes with `after`), with the same columns as a `Result` short of
    /// its candidates.
    results: Vec<ResultColumns>,
    /// Where this event leaves the subscriber in the job's order of finishing: every domain
    /// up to this place has been named to it (or had finished before it subscribed without
    /// `after`). Subscribe again with `after: cursor` to miss nothing.
    cursor: i32,
}

impl From<ProgressEvent> for JobProgress {
    fn from(event: ProgressEvent) -> Self {
        Self {
            job_id: ID(event.job_id.to_string()),
            status: event.status,
            total: event.total,
            completed: event.completed,
            failed: event.failed,
            progress: event.progress,
            results: event.finished,
            cursor: event.cursor,
        }
    }
}

/// Live operations.
pub struct SubscriptionRoot;

#[Subscription]
impl SubscriptionRoot {
    /// Live progress of a job: the current state at once, then events (at most about ten a
    /// second) carrying the domains finished since the previous one; completes after the
    /// job's final event. With `after` (the `cursor` of the last event a client received,
    /// or 0 for all), it starts instead with every domain that finished after that place,
    /// in events of at most 1,000 domains, and then goes on live: a client that reconnects
    /// this way misses no domain (one may be named twice).
    #[graphql(complexity = "read_cost(child_complexity)")]
    async fn job_progress(
        &self,
        c: &Context<'_>,
        job_id: ID,
        after: Option<i32>,
    ) -> Result<impl Stream<Item = ProgressItem> + use<>> {
        let id = jobs::parse_job_id(&job_id).map_err(AppError::into_graphql)?;
        let slot = match c.data_opt::<ConnectionSubscriptions>() {
            Some(connection) => Some(connection.enter().map_err(AppError::into_graphql)?),
            None => None,
        };
        let api = ctx(c);
        let open = OpenSubscription::new(api.metrics.clone());
        // The turn covers the first read only; the feed's later reads are shared by every
        // subscriber of the job, not this operation's.
        let turn = db_turn(c).await;
        let progress = api
            .jobs
            .progress(caller(c)?, id, after)
            .await
            .map_err(AppError::into_graphql)?;
        drop(turn);
        let selection = selection_key(c);
        let metrics = api.metrics.clone();
        // The slot and the gauge are held by the stream, so both are given back however it
        // ends.
        Ok(progress.map(move |frame| {
            let _held = (&slot, &open);
            ProgressItem {
                frame,
                selection: selection.clone(),
                metrics: metrics.clone(),
            }
        }))
    }
}

/// What decides a `jobProgress` rendering besides the event: the field's selection set, the
/// fragments it may spread and the variables its directives may read. Subscribers that send
/// the same document share renderings; positions are part of the key, so documents laid out
/// differently merely do not share.
fn selection_key(c: &Context<'_>) -> Arc<str> {
    let env = &c.query_env;
    let mut fragments: Vec<_> = env.fragments.iter().collect();
    fragments.sort_by(|a, b| a.0.cmp(b.0));
    Arc::from(format!(
        "{:?}|{:?}|{:?}",
        c.item.node.selection_set, fragments, env.variables
    ))
}

/// One `jobProgress` event: a shared frame, rendered once per selection.
pub struct ProgressItem {
    frame: Arc<ProgressFrame>,
    selection: Arc<str>,
    metrics: Arc<crate::metrics::Metrics>,
}

impl OutputType for ProgressItem {
    fn type_name() -> Cow<'static, str> {
        JobProgress::type_name()
    }

    fn create_type_info(registry: &mut Registry) -> String {
        JobProgress::create_type_info(registry)
    }

    async fn resolve(
        &self,
        ctx: &ContextSelectionSet<'_>,
        field: &Positioned<Field>,
    ) -> ServerResult<Value> {
        let resolve = || JobProgress::from(self.frame.event().clone());
        let Some(raw) = ctx.data_opt::<Arc<RawFrames>>() else {
            return resolve().resolve(ctx, field).await;
        };
        let rendered = self
            .frame
            .rendered(&self.selection, || async {
                let value = resolve().resolve(ctx, field).await?;
                serde_json::to_string(&value)
                    .map_err(|e| async_graphql::ServerError::new(e.to_string(), None))
            })
            .await?;
        if rendered.fresh {
            self.metrics.progress_renders.inc();
        }
        Ok(Value::String(raw.hold(rendered.text)))
    }
}

/// Keeps the open-subscriptions gauge right: up on creation, down on drop.
struct OpenSubscription(Arc<crate::metrics::Metrics>);

impl OpenSubscription {
    fn new(metrics: Arc<crate::metrics::Metrics>) -> Self {
        metrics.subscriptions.inc();
        Self(metrics)
    }
}

impl Drop for OpenSubscription {
    fn drop(&mut self) {
        self.0.subscriptions.dec();
    }
}
