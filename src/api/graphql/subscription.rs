//! `jobProgress`: the core's progress stream ([`crate::jobs::Jobs::progress`]) as GraphQL
//! objects, held against the connection's subscription limit and the address's and key's
//! ([`SubscriptionCaps`]).
//!
//! The core's events are frames shared by every subscriber of a job. Each frame is resolved
//! and serialised once per distinct selection (normalised: see `selection_key`), and over
//! WebSocket the JSON goes out as is through
//! [`RawFrames`]; elsewhere (e.g. a schema executed in tests) it is resolved as usual.

use super::*;
use crate::api::raw_frames::RawFrames;
use crate::jobs::ProgressFrame;
use async_graphql::Name;
use async_graphql::parser::types::{
    Directive, Field, FragmentDefinition, OperationDefinition, Selection, SelectionSet,
};
use async_graphql::registry::Registry;
use async_graphql::{ContextSelectionSet, OutputType, Positioned, ServerResult, Value};
use std::borrow::Cow;
use std::collections::HashMap;
use std::convert::Infallible;

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
        let held = match c.data_opt::<SubscriptionCaps>() {
            Some(caps) => Some(
                caps.enter(c.data_opt::<SourceIp>().map(|ip| ip.0), caller(c)?.key_id())
                    .map_err(AppError::into_graphql)?,
            ),
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
        // The slots and the gauge are held by the stream, so all are given back however it
        // ends.
        Ok(progress.map(move |frame| {
            let _held = (&slot, &held, &open);
            ProgressItem {
                frame,
                selection: selection.clone(),
                metrics: metrics.clone(),
            }
        }))
    }

    /// Every reported change of the icon of a domain the watch holds, from now on, once
    /// each: found by any check (the watch's, a refresh, a stale serve), in any process of
    /// the fleet. A flapping site's return to a state it had within 24 hours is not sent
    /// (see `IconChange.reported`). The stream completes when the watch is deleted.
    #[graphql(complexity = "read_cost(child_complexity)")]
    async fn icon_changed(
        &self,
        c: &Context<'_>,
        watch_id: ID,
    ) -> Result<impl Stream<Item = crate::model::watch::IconChange> + use<>> {
        let id = crate::watches::parse_watch_id(&watch_id).map_err(AppError::into_graphql)?;
        let slot = match c.data_opt::<ConnectionSubscriptions>() {
            Some(connection) => Some(connection.enter().map_err(AppError::into_graphql)?),
            None => None,
        };
        let held = match c.data_opt::<SubscriptionCaps>() {
            Some(caps) => Some(
                caps.enter(c.data_opt::<SourceIp>().map(|ip| ip.0), caller(c)?.key_id())
                    .map_err(AppError::into_graphql)?,
            ),
            None => None,
        };
        let api = ctx(c);
        let open = OpenSubscription::new(api.metrics.clone());
        let turn = db_turn(c).await;
        let changes: ChangeStream = Box::pin(
            api.watches
                .follow(caller(c)?, id)
                .await
                .map_err(AppError::into_graphql)?,
        );
        drop(turn);
        Ok(changes.map(move |change| {
            let _held = (&slot, &held, &open);
            change
        }))
    }
}

/// The `iconChanged` stream's items: each reported change once.
type ChangeStream = std::pin::Pin<Box<dyn Stream<Item = crate::model::watch::IconChange> + Send>>;

/// What decides a `jobProgress` rendering besides the event: the field's selection,
/// normalised. Fragments it spreads are written out in place, and every variable it reads
/// (in a directive or an argument) is replaced by its value; nothing else goes in: not the
/// variables it never reads, not fragments it does not spread, not where things sit in the
/// document, and not the field's own arguments (`jobId`, and `after`, which differs from
/// subscriber to subscriber but only decides where the stream starts). So subscribers that
/// ask for the same thing share renderings, however they write it; one that stamped a
/// different unused variable on each of 200 subscriptions used to render every event 200
/// times.
fn selection_key(c: &Context<'_>) -> Arc<str> {
    let env = &c.query_env;
    let mut normal = Normaliser {
        variables: &env.variables,
        operation: &env.operation.node,
        fragments: &env.fragments,
        expanding: Vec::new(),
        out: String::new(),
    };
    normal.selection_set(&c.item.node.selection_set.node);
    Arc::from(normal.out)
}

/// Writes a selection in one canonical text (see [`selection_key`]).
struct Normaliser<'a> {
    /// The request's variables, for the values of those the selection reads.
    variables: &'a async_graphql::Variables,
    /// The operation, for the defaults of variables the request leaves out.
    operation: &'a OperationDefinition,
    /// The document's fragments, written out where they are spread.
    fragments: &'a HashMap<Name, Positioned<FragmentDefinition>>,
    /// The fragments being written out, innermost last: a spread of one of them again is a
    /// cycle (validation refuses those; this only keeps the walk finite).
    expanding: Vec<&'a str>,
    /// The key written so far.
    out: String,
}

impl<'a> Normaliser<'a> {
    /// Writes `{item item …}`, each field as `alias:name(args)@directives{…}`.
    fn selection_set(&mut self, set: &'a SelectionSet) {
        self.out.push('{');
        for item in &set.items {
            match &item.node {
                Selection::Field(field) => {
                    let field = &field.node;
                    if let Some(alias) = &field.alias {
                        self.out.push_str(&alias.node);
                        self.out.push(':');
                    }
                    self.out.push_str(&field.name.node);
                    let lookup = self.lookup();
                    self.arguments(constants(&field.arguments, |v| {
                        v.into_const_with(lookup).unwrap_or(Value::Null)
                    }));
                    self.directives(&field.directives);
                    if !field.selection_set.node.items.is_empty() {
                        self.selection_set(&field.selection_set.node);
                    }
                }
                Selection::FragmentSpread(spread) => {
                    let name = spread.node.fragment_name.node.as_str();
                    let Some(fragment) = self.fragments.get(name) else {
                        continue;
                    };
                    if self.expanding.contains(&name) {
                        continue;
                    }
                    self.expanding.push(name);
                    self.out.push_str("...on ");
                    self.out
                        .push_str(&fragment.node.type_condition.node.on.node);
                    self.directives(&spread.node.directives);
                    self.directives(&fragment.node.directives);
                    self.selection_set(&fragment.node.selection_set.node);
                    self.expanding.pop();
                }
                Selection::InlineFragment(inline) => {
                    let inline = &inline.node;
                    self.out.push_str("...");
                    if let Some(on) = &inline.type_condition {
                        self.out.push_str("on ");
                        self.out.push_str(&on.node.on.node);
                    }
                    self.directives(&inline.directives);
                    self.selection_set(&inline.selection_set.node);
                }
            }
            self.out.push(' ');
        }
        self.out.push('}');
    }

    /// Writes `@name(args)` for each directive.
    fn directives(&mut self, directives: &'a [Positioned<Directive>]) {
        for directive in directives {
            self.out.push('@');
            self.out.push_str(&directive.node.name.node);
            let lookup = self.lookup();
            self.arguments(constants(&directive.node.arguments, |v| {
                v.into_const_with(lookup).unwrap_or(Value::Null)
            }));
        }
    }

    /// Writes `(name:value,…)`.
    fn arguments(&mut self, arguments: Vec<(&Name, Value)>) {
        if arguments.is_empty() {
            return;
        }
        self.out.push('(');
        for (name, value) in arguments {
            self.out.push_str(&format!("{name}:{value},"));
        }
        self.out.push(')');
    }

    /// Replaces a variable by its value (see [`Normaliser::variable`]).
    fn lookup(&self) -> impl Fn(Name) -> Result<Value, Infallible> + Copy + 'a {
        let (variables, operation) = (self.variables, self.operation);
        move |name| Ok(variable(variables, operation, &name))
    }
}

/// Arguments with their values made constant by `to_const` (the parser's value type is not
/// exported under a name of its own, so the conversion is written where it is known).
fn constants<'v, V: Clone + 'v>(
    arguments: &'v [(Positioned<Name>, Positioned<V>)],
    to_const: impl Fn(V) -> Value,
) -> Vec<(&'v Name, Value)> {
    arguments
        .iter()
        .map(|(name, value)| (&name.node, to_const(value.node.clone())))
        .collect()
}

/// A variable's value as the request gives it, else its declared default, else null.
fn variable(
    variables: &async_graphql::Variables,
    operation: &OperationDefinition,
    name: &str,
) -> Value {
    variables
        .get(name)
        .cloned()
        .or_else(|| {
            operation
                .variable_definitions
                .iter()
                .find(|d| d.node.name.node == name)
                .and_then(|d| d.node.default_value.as_ref())
                .map(|d| d.node.clone())
        })
        .unwrap_or(Value::Null)
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
