//! Times every GraphQL query and mutation by its operation type, over HTTP and WebSocket
//! alike: the HTTP series says how long `/graphql` took, this one what kind of work it was.
//! The operation also runs in a span named by its type and name (`mutation createJob`): never
//! its variables or arguments (they may hold keys, domains, signatures).

use crate::api::AppState;
use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextExecute, NextParseQuery, NextRequest,
};
use async_graphql::parser::types::{ExecutableDocument, OperationType};
use async_graphql::{Response, ServerResult, Variables};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tracing::Instrument;

/// The longest operation name a span carries.
const MAX_NAME: usize = 100;

/// Installs [`Timing`] on a schema: one instance per request, so the operation type the
/// parse found reaches the request's end.
pub struct TimingFactory;

impl ExtensionFactory for TimingFactory {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(Timing::default())
    }
}

/// The operation types a request's document holds (by name), once it parsed, and the one
/// that ran, once execution began.
#[derive(Default)]
struct Timing {
    operations: Mutex<Vec<(Option<String>, &'static str)>>,
    kind: Mutex<Option<&'static str>>,
}

fn label(ty: OperationType) -> &'static str {
    match ty {
        OperationType::Query => "query",
        OperationType::Mutation => "mutation",
        OperationType::Subscription => "subscription",
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

#[async_trait::async_trait]
impl Extension for Timing {
    async fn request(&self, ctx: &ExtensionContext<'_>, next: NextRequest<'_>) -> Response {
        let started = Instant::now();
        let response = next.run(ctx).await;
        // A schema built without state (the `schema` command) has nothing to count into.
        if let Some(state) = ctx.data_opt::<AppState>() {
            // A document that did not parse or validate never ran: `invalid`.
            let kind = lock(&self.kind).unwrap_or("invalid");
            state
                .metrics
                .observe_graphql(kind, response.errors.is_empty(), started.elapsed());
        }
        response
    }

    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let document = next.run(ctx, query, variables).await?;
        *lock(&self.operations) = document
            .operations
            .iter()
            .map(|(name, op)| (name.map(|n| n.to_string()), label(op.node.ty)))
            .collect();
        Ok(document)
    }

    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        // Execution began, so the name picks one operation of the document (or it has one).
        let kind = lock(&self.operations)
            .iter()
            .find(|(name, _)| operation_name.is_none() || name.as_deref() == operation_name)
            .map(|(_, kind)| *kind);
        *lock(&self.kind) = kind;
        let name: String = operation_name
            .unwrap_or("anonymous")
            .chars()
            .take(MAX_NAME)
            .collect();
        let ty = kind.unwrap_or("query");
        let span = tracing::debug_span!(
            "graphql.operation",
            otel.name = %format_args!("{ty} {name}"),
            graphql.operation.type = ty,
            graphql.operation.name = %name,
            graphql.errors = tracing::field::Empty,
        );
        let response = next.run(ctx, operation_name).instrument(span.clone()).await;
        if !response.errors.is_empty() {
            span.record("graphql.errors", response.errors.len());
        }
        response
    }
}
