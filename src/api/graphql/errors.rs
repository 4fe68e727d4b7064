//! Every GraphQL error carries `extensions.code`, like every REST error carries `code`.
//!
//! Errors raised by our resolvers already have one (from [`crate::error::AppError`]). Those
//! async-graphql raises itself (a query that does not parse, fails validation, is too deep or
//! too complex, or has an argument of the wrong type) have none, so clients would have to
//! match on English messages. This extension gives each one the code of the phase it failed
//! in; the HTTP layer does the same for bodies that are not JSON or are too large. It is
//! also where the HTTP checks run (`over_http::admit` once a document parsed, and the note
//! that execution began), so one extension sees every phase of a request.

use crate::error::Code;
use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextExecute, NextParseQuery, NextRequest,
    NextSubscribe, NextValidation,
};
use async_graphql::parser::types::ExecutableDocument;
use async_graphql::{Response, ServerError, ServerResult, ValidationResult, Variables};
use futures::StreamExt;
use futures::stream::BoxStream;
use std::sync::Arc;

/// Installs `ErrorCodes` on a schema.
pub struct ErrorCodesFactory;

impl ExtensionFactory for ErrorCodesFactory {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(ErrorCodes)
    }
}

/// Adds the code of the failing phase to every error that has none.
struct ErrorCodes;

fn has_code(err: &ServerError) -> bool {
    err.extensions
        .as_ref()
        .is_some_and(|e| e.get("code").is_some())
}

fn with_code(mut err: ServerError, code: Code) -> ServerError {
    if !has_code(&err) {
        err.extensions
            .get_or_insert_with(Default::default)
            .set("code", code.as_str());
    }
    err
}

/// The code of an error async-graphql's validation returned: its limits are only told
/// apart by their messages ("Query is nested too deep.", "Query is too complex.").
fn validation_code(err: &ServerError) -> Code {
    if err.message.contains("nested too deep") {
        Code::QueryTooDeep
    } else if err.message.contains("too complex") {
        Code::QueryTooComplex
    } else {
        Code::GraphqlValidationFailed
    }
}

/// Every error gets a code, and, inside an HTTP request, the request's id.
fn coded(mut response: Response) -> Response {
    let request_id = crate::error::request_id();
    response.errors = response
        .errors
        .into_iter()
        .map(|e| {
            let mut e = with_code(e, Code::InvalidInput);
            if let Some(id) = &request_id {
                e.extensions
                    .get_or_insert_with(Default::default)
                    .set("requestId", id.as_str());
            }
            e
        })
        .collect();
    response
}

#[async_trait::async_trait]
impl Extension for ErrorCodes {
    async fn request(&self, ctx: &ExtensionContext<'_>, next: NextRequest<'_>) -> Response {
        coded(next.run(ctx).await)
    }

    fn subscribe<'s>(
        &self,
        ctx: &ExtensionContext<'_>,
        stream: BoxStream<'s, Response>,
        next: NextSubscribe<'_>,
    ) -> BoxStream<'s, Response> {
        next.run(ctx, stream).map(coded).boxed()
    }

    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let document = next
            .run(ctx, query, variables)
            .await
            .map_err(|e| with_code(e, Code::GraphqlParseFailed))?;
        super::over_http::admit(ctx, &document, variables)?;
        Ok(document)
    }

    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        super::over_http::executing(ctx);
        next.run(ctx, operation_name).await
    }

    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        next.run(ctx).await.map_err(|errors| {
            errors
                .into_iter()
                .map(|e| {
                    let code = validation_code(&e);
                    with_code(e, code)
                })
                .collect()
        })
    }
}
