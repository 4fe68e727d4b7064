//! A span per GraphQL operation, named by its type and name (`mutation createJob`): never its
//! variables or arguments (they may hold keys, domains, signatures).

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextExecute, NextParseQuery,
};
use async_graphql::parser::types::{DocumentOperations, ExecutableDocument, OperationType};
use async_graphql::{Response, ServerResult, Variables};
use std::sync::{Arc, Mutex};
use tracing::Instrument;

/// The longest operation name a span carries.
const MAX_NAME: usize = 100;

/// Installs [`Traced`] on a schema: one per operation.
pub struct TracedFactory;

impl ExtensionFactory for TracedFactory {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(Traced::default())
    }
}

/// Notes the operation's type once its document parsed, and runs its execution in a span.
#[derive(Default)]
struct Traced {
    kinds: Mutex<Vec<(Option<String>, &'static str)>>,
}

/// The word for an operation type, as documents write it.
fn kind(ty: OperationType) -> &'static str {
    match ty {
        OperationType::Query => "query",
        OperationType::Mutation => "mutation",
        OperationType::Subscription => "subscription",
    }
}

#[async_trait::async_trait]
impl Extension for Traced {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let document = next.run(ctx, query, variables).await?;
        let kinds = match &document.operations {
            DocumentOperations::Single(op) => vec![(None, kind(op.node.ty))],
            DocumentOperations::Multiple(ops) => ops
                .iter()
                .map(|(name, op)| (Some(name.to_string()), kind(op.node.ty)))
                .collect(),
        };
        if let Ok(mut slot) = self.kinds.lock() {
            *slot = kinds;
        }
        Ok(document)
    }

    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        let ty = self.kinds.lock().ok().and_then(|kinds| {
            kinds
                .iter()
                .find(|(name, _)| name.is_none() || name.as_deref() == operation_name)
                .map(|(_, ty)| *ty)
        });
        let ty = ty.unwrap_or("query");
        let name: String = operation_name
            .unwrap_or("anonymous")
            .chars()
            .take(MAX_NAME)
            .collect();
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
