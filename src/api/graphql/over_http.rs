//! GraphQL over HTTP, as the GraphQL-over-HTTP spec and its audit suite (npm `graphql-http`)
//! read it: `POST /graphql` and `GET /graphql?query=…`, the answer's media type chosen from
//! `Accept`, and the status of a request that failed before it ran.
//!
//! Two media types: `application/graphql-response+json`, whose status says whether the
//! request ran (400 and no `data` when it failed to parse, validate or coerce its variables),
//! and `application/json` (also for `*/*` or no `Accept`), which answers 200 for every GraphQL
//! response, as clients written before the spec expect. The phase a request failed in is
//! known from [`HttpPhaseFactory`], an extension that notes when execution began.

use super::AppSchema;
use crate::api::{AppState, auth, graphiql, payload_too_large, ws::graphql_ws};
use crate::auth::Caller;
use crate::error::{AppError, Code};
use async_graphql::extensions::ExtensionContext;
use async_graphql::parser::types::{DocumentOperations, ExecutableDocument, OperationType};
use async_graphql::{ParseRequestError, ServerError, ServerResult, Variables};
use async_graphql_axum::GraphQLProtocol;
use async_graphql_axum::GraphQLRequest;
use async_graphql_axum::rejection::GraphQLRejection;
use axum::extract::rejection::QueryRejection;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension as Ext, Json};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// The media type a GraphQL answer is sent in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wire {
    /// `application/graphql-response+json`: 4xx for a request that did not run.
    GraphqlResponse,
    /// `application/json`: 200 for every GraphQL response.
    Json,
}

impl Wire {
    /// The `Content-Type` of an answer in this media type (always UTF-8).
    fn content_type(self) -> HeaderValue {
        HeaderValue::from_static(match self {
            Self::GraphqlResponse => "application/graphql-response+json; charset=utf-8",
            Self::Json => "application/json; charset=utf-8",
        })
    }
}

/// The media ranges of an `Accept` header with their weights, lower-cased.
fn accept_ranges(headers: &HeaderMap) -> Vec<(String, f32)> {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|range| {
            let mut parts = range.split(';');
            let essence = parts.next()?.trim().to_ascii_lowercase();
            if essence.is_empty() {
                return None;
            }
            let q = parts
                .filter_map(|p| {
                    let p = p.trim();
                    p.strip_prefix("q=").or_else(|| p.strip_prefix("Q="))
                })
                .find_map(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            Some((essence, q))
        })
        .collect()
}

/// The weight `Accept` gives `wanted`: its own entry, else the most specific wildcard that
/// covers it; `None` when nothing covers it.
fn weight(ranges: &[(String, f32)], wanted: &str, wildcards: &[&str]) -> Option<f32> {
    let of = |name: &str| ranges.iter().find(|(e, _)| e == name).map(|(_, q)| *q);
    of(wanted).or_else(|| wildcards.iter().find_map(|w| of(w)))
}

/// The media type to answer in, per `Accept`: the spec's own type when the client names it
/// (preferred on a tie, as the spec asks clients to list both), JSON for `application/json`,
/// `application/*`, `*/*` or no `Accept` at all; `None` when the client accepts neither.
pub fn negotiate(headers: &HeaderMap) -> Option<Wire> {
    let ranges = accept_ranges(headers);
    if ranges.is_empty() {
        return Some(Wire::Json);
    }
    // A wildcard means "anything will do": answer in the type every client can read.
    let graphql = weight(&ranges, "application/graphql-response+json", &[]).unwrap_or(0.0);
    let json = weight(&ranges, "application/json", &["application/*", "*/*"]).unwrap_or(0.0);
    if graphql > 0.0 && graphql >= json {
        Some(Wire::GraphqlResponse)
    } else if json > 0.0 {
        Some(Wire::Json)
    } else {
        None
    }
}

/// Whether `Accept` allows an HTML page (a browser's navigation, `*/*`, or no `Accept`).
fn accepts_html(headers: &HeaderMap) -> bool {
    let ranges = accept_ranges(headers);
    ranges.is_empty() || weight(&ranges, "text/html", &["text/*", "*/*"]).is_some_and(|q| q > 0.0)
}

/// What the handler tells the schema's extension ([`admit`], [`executing`]) about one HTTP request, and
/// what the extension tells back.
#[derive(Clone, Default)]
struct HttpPhase(Arc<PhaseInner>);

/// The shared state behind [`HttpPhase`].
#[derive(Default)]
struct PhaseInner {
    /// The request came as a `GET`: only queries may run.
    get: bool,
    /// The request's `operationName`, to find the operation whose variables are checked.
    operation_name: Option<String>,
    /// Set when execution began: an error before it is a request error.
    executed: AtomicBool,
    /// Set when a `GET` asked for a mutation: the answer is 405.
    mutation_over_get: AtomicBool,
}

/// The HTTP checks of one operation once its document parsed: the operation a `GET` may run
/// and variables coerced before execution. A request without an [`HttpPhase`] (a
/// WebSocket's) passes untouched. Called by the schema's one extension (`ErrorCodes`).
pub(super) fn admit(
    ctx: &ExtensionContext<'_>,
    document: &ExecutableDocument,
    variables: &Variables,
) -> ServerResult<()> {
    match ctx.data_opt::<HttpPhase>() {
        Some(phase) => phase.admit(document, variables),
        None => Ok(()),
    }
}

/// Notes that execution began: an error after it is a field error, answered with `data`.
pub(super) fn executing(ctx: &ExtensionContext<'_>) {
    if let Some(phase) = ctx.data_opt::<HttpPhase>() {
        phase.0.executed.store(true, Ordering::Release);
    }
}

/// A GraphQL error with our code, raised before execution.
fn refusal(code: Code, message: String) -> ServerError {
    let mut error = ServerError::new(message, None);
    error
        .extensions
        .get_or_insert_with(Default::default)
        .set("code", code.as_str());
    error
}

impl HttpPhase {
    /// Refuses what may not run over HTTP: a mutation over `GET` (405), a subscription (it
    /// needs a socket), and variables that cannot be coerced to their declared types.
    /// An operation that cannot be picked is left to async-graphql, which names the problem.
    fn admit(&self, document: &ExecutableDocument, variables: &Variables) -> ServerResult<()> {
        let operation = match (&document.operations, &self.0.operation_name) {
            (DocumentOperations::Single(op), _) => Some(op),
            (DocumentOperations::Multiple(ops), Some(name)) => ops.get(name.as_str()),
            (DocumentOperations::Multiple(ops), None) if ops.len() == 1 => ops.values().next(),
            (DocumentOperations::Multiple(_), None) => None,
        };
        let Some(operation) = operation else {
            return Ok(());
        };
        match operation.node.ty {
            OperationType::Mutation if self.0.get => {
                self.0.mutation_over_get.store(true, Ordering::Release);
                return Err(refusal(
                    Code::MethodNotAllowed,
                    "a GET runs queries only: POST mutations to /graphql".into(),
                ));
            }
            OperationType::Subscription => {
                return Err(refusal(
                    Code::InvalidInput,
                    "subscriptions need a WebSocket: subscribe at /graphql/ws \
                     (graphql-transport-ws)"
                        .into(),
                ));
            }
            _ => {}
        }
        // Values used as arguments are checked by validation; what it cannot see is a
        // required variable that is missing or null, which would otherwise fail mid-run.
        let missing: Vec<String> = operation
            .node
            .variable_definitions
            .iter()
            .map(|d| &d.node)
            .filter(|d| !d.var_type.node.nullable && d.default_value.is_none())
            .filter(|d| {
                variables
                    .get(&d.name.node)
                    .is_none_or(|v| matches!(v, async_graphql::Value::Null))
            })
            .map(|d| format!("${} ({})", d.name.node, d.var_type.node))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        Err(refusal(
            Code::InvalidInput,
            format!(
                "required variables missing or null: {}; give each a value in `variables`",
                missing.join(", ")
            ),
        ))
    }
}

/// Runs one GraphQL request for a caller and renders the answer in `wire`.
async fn run(
    schema: &AppSchema,
    wire: Wire,
    request: async_graphql::Request,
    phase: HttpPhase,
) -> Response {
    let response = schema.execute(request.data(phase.clone())).await;
    let inner = &phase.0;
    if inner.executed.load(Ordering::Acquire) || response.errors.is_empty() {
        return render(wire, StatusCode::OK, &response, true);
    }
    // It never ran: the spec's request error, without a `data` entry.
    if inner.mutation_over_get.load(Ordering::Acquire) {
        let mut answer = render(wire, StatusCode::METHOD_NOT_ALLOWED, &response, false);
        answer
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return answer;
    }
    let status = match wire {
        Wire::GraphqlResponse => StatusCode::BAD_REQUEST,
        Wire::Json => StatusCode::OK,
    };
    render(wire, status, &response, false)
}

/// A GraphQL response as sent: serialised straight from async-graphql's values, with no
/// `data` entry for a request that never ran.
#[derive(serde::Serialize)]
struct Body<'a> {
    /// What the operation produced; absent when it did not run.
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a async_graphql::Value>,
    /// Every error, each with `extensions.code`.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    errors: &'a [ServerError],
    /// What extensions added to the response.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    extensions: &'a std::collections::BTreeMap<String, async_graphql::Value>,
}

/// The answer's body and headers; `ran` says whether it has a `data` entry.
fn render(
    wire: Wire,
    status: StatusCode,
    response: &async_graphql::Response,
    ran: bool,
) -> Response {
    let body = Body {
        data: ran.then_some(&response.data),
        errors: &response.errors,
        extensions: &response.extensions,
    };
    let mut answer = (status, Json(body)).into_response();
    let headers = answer.headers_mut();
    headers.insert(header::CONTENT_TYPE, wire.content_type());
    if response.is_ok()
        && let Some(value) = response.cache_control.value()
        && let Ok(value) = HeaderValue::from_str(&value)
    {
        headers.insert(header::CACHE_CONTROL, value);
    }
    headers.extend(response.http_headers.clone());
    answer
}

/// An error that stopped a request before GraphQL saw it, in the negotiated media type.
pub(crate) fn refused(wire: Wire, error: AppError) -> Response {
    let mut answer = error.into_graphql_response();
    answer
        .headers_mut()
        .insert(header::CONTENT_TYPE, wire.content_type());
    answer
}

/// 406 for an `Accept` that allows neither media type; in JSON, which every client reads.
fn not_acceptable() -> Response {
    AppError::NotAcceptable(
        "/graphql answers in application/graphql-response+json or application/json; \
         send one of them in Accept"
            .into(),
    )
    .into_graphql_response()
}

/// Adds who asked and from where to a request's data, as resolvers look for them there;
/// `None` (so a 401) when the door let a request through without a caller.
fn for_caller(
    state: &AppState,
    request: async_graphql::Request,
    caller: Option<Ext<Caller>>,
    headers: &HeaderMap,
    peer: SocketAddr,
) -> Option<async_graphql::Request> {
    let Ext(caller) = caller?;
    let ip = auth::client_ip(headers, peer.ip(), &state.config.trusted_proxy_headers);
    Some(request.data(super::SourceIp(ip)).data(caller))
}

/// The `GET /graphql` query string: the spec's parameters, JSON ones as JSON text.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetParams {
    /// The GraphQL document; without it the request is for GraphiQL.
    query: Option<String>,
    /// The variables, a JSON object.
    variables: Option<String>,
    /// Which operation of the document to run.
    operation_name: Option<String>,
    /// Protocol extensions, a JSON object.
    extensions: Option<String>,
}

/// A JSON-object query parameter, `name` naming it in the error.
fn json_param<T: serde::de::DeserializeOwned + Default>(
    name: &str,
    text: Option<&str>,
) -> Result<T, AppError> {
    match text.map(str::trim) {
        None | Some("") | Some("null") => Ok(T::default()),
        Some(text) if text.starts_with('{') => serde_json::from_str(text).map_err(|e| {
            AppError::bad_request(Code::InvalidInput, format!("`{name}` is not valid: {e}"))
        }),
        Some(_) => Err(AppError::bad_request(
            Code::InvalidInput,
            format!("`{name}` must be a JSON object"),
        )),
    }
}

/// `GET /graphql`: a WebSocket upgrade runs subscriptions (as on `/graphql/ws`); a `query`
/// parameter runs that query; a browser without one gets GraphiQL.
#[allow(clippy::too_many_arguments, reason = "an axum handler's extractors")]
pub async fn get(
    state: State<AppState>,
    Ext(schema): Ext<AppSchema>,
    peer: ConnectInfo<SocketAddr>,
    caller: Option<Ext<Caller>>,
    headers: HeaderMap,
    params: Result<Query<GetParams>, QueryRejection>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    protocol: Result<GraphQLProtocol, StatusCode>,
) -> Response {
    if let (Ok(upgrade), Ok(protocol)) = (upgrade, protocol) {
        return graphql_ws(state, Ext(schema), peer, caller, headers, protocol, upgrade).await;
    }
    let params = params.map_err(|e| AppError::bad_request(Code::InvalidInput, e.body_text()));
    // A browser's navigation accepts no JSON type; it is asked for the page, not a query.
    if let Ok(Query(GetParams { query: None, .. })) = &params
        && accepts_html(&headers)
    {
        return graphiql_page(&state, &headers);
    }
    let Some(wire) = negotiate(&headers) else {
        return not_acceptable();
    };
    let params = match params {
        Ok(Query(params)) => params,
        Err(error) => return refused(wire, error),
    };
    let Some(query) = params.query else {
        let error = AppError::bad_request(
            Code::InvalidInput,
            "GET /graphql runs the query in its `query` parameter (with `variables` and \
             `operationName`); browsers asking for text/html get GraphiQL",
        );
        return refused(wire, error);
    };
    if query.trim().is_empty() {
        return refused(wire, no_query("the `query` parameter is empty"));
    }
    let parsed =
        json_param::<Variables>("variables", params.variables.as_deref()).and_then(|variables| {
            let extensions = json_param("extensions", params.extensions.as_deref())?;
            let mut request = async_graphql::Request::new(query).variables(variables);
            request.extensions = extensions;
            request.operation_name = params.operation_name.filter(|n| !n.is_empty());
            Ok(request)
        });
    let request = match parsed {
        Ok(request) => request,
        Err(error) => return refused(wire, error),
    };
    let phase = HttpPhase(Arc::new(PhaseInner {
        get: true,
        operation_name: request.operation_name.clone(),
        ..Default::default()
    }));
    match for_caller(&state, request, caller, &headers, peer.0) {
        Some(request) => run(&schema, wire, request, phase).await,
        None => refused(wire, AppError::Unauthorized(MISSING_KEY.into())),
    }
}

/// A request with no GraphQL document in it.
fn no_query(what: &str) -> AppError {
    AppError::bad_request(Code::InvalidInput, what)
}

/// What a request without a caller is told, as the door tells a `POST`.
const MISSING_KEY: &str = "an API key is required: send Authorization: Bearer <key>";

/// GraphiQL, or 404 where it is turned off.
fn graphiql_page(state: &AppState, headers: &HeaderMap) -> Response {
    if !state.config.graphiql {
        return AppError::NotFound(
            "GraphiQL is not served here (GRAPHIQL=false); send queries to /graphql".into(),
        )
        .into_graphql_response();
    }
    graphiql::page(headers)
}

/// `POST /graphql`. A body that is not a GraphQL request in JSON gets a GraphQL error with a
/// code, like every other GraphQL error, rather than the extractor's plain-text 400.
pub async fn post(
    State(state): State<AppState>,
    Ext(schema): Ext<AppSchema>,
    caller: Option<Ext<Caller>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    request: Result<GraphQLRequest, GraphQLRejection>,
) -> Response {
    let Some(wire) = negotiate(&headers) else {
        return not_acceptable();
    };
    let request = match request {
        Ok(request) => request.into_inner(),
        Err(GraphQLRejection(err)) => return refused(wire, unreadable(err)),
    };
    // async-graphql reads a body without `query` (a typo such as `qeury`) as an empty
    // document; it is a malformed request, not a GraphQL syntax error.
    if request.query.trim().is_empty() {
        return refused(
            wire,
            no_query("the body has no `query`: send {\"query\": …}"),
        );
    }
    let phase = HttpPhase(Arc::new(PhaseInner {
        operation_name: request.operation_name.clone(),
        ..Default::default()
    }));
    match for_caller(&state, request, caller, &headers, peer) {
        Some(request) => run(&schema, wire, request, phase).await,
        None => refused(wire, AppError::Unauthorized(MISSING_KEY.into())),
    }
}

/// The error for a body that could not be read as a GraphQL request.
fn unreadable(err: ParseRequestError) -> AppError {
    match err {
        ParseRequestError::PayloadTooLarge => payload_too_large(),
        // The body limit cuts a streamed body short while it is being read.
        ParseRequestError::Io(e) if e.to_string().contains("length limit") => payload_too_large(),
        ParseRequestError::Io(e) => AppError::bad_request(
            Code::InvalidJson,
            format!("the request body could not be read: {e}"),
        ),
        other => AppError::bad_request(
            Code::InvalidJson,
            format!(
                "the body is not a GraphQL request in JSON ({{\"query\": …, \"variables\": …}}): {}",
                short_reason(&other)
            ),
        ),
    }
}

/// The parser's reason, without the request text it may quote at length.
fn short_reason(err: &ParseRequestError) -> String {
    let reason = err.to_string();
    match reason.char_indices().nth(200) {
        Some((cut, _)) => format!("{}…", &reason[..cut]),
        None => reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(value: Option<&str>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(value) = value {
            headers.insert(header::ACCEPT, HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    #[test]
    fn accept_picks_the_media_type() {
        let cases = [
            (None, Some(Wire::Json)),
            (Some("*/*"), Some(Wire::Json)),
            (Some("application/*"), Some(Wire::Json)),
            (Some("application/json"), Some(Wire::Json)),
            (Some("application/json; charset=utf-8"), Some(Wire::Json)),
            (
                Some("application/graphql-response+json"),
                Some(Wire::GraphqlResponse),
            ),
            (
                Some("application/graphql-response+json, application/json;q=0.9"),
                Some(Wire::GraphqlResponse),
            ),
            (
                Some("application/json, application/graphql-response+json;q=0.5"),
                Some(Wire::Json),
            ),
            (
                Some("application/graphql-response+json, */*"),
                Some(Wire::GraphqlResponse),
            ),
            (
                Some("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
                Some(Wire::Json),
            ),
            (Some("application/json;q=0, */*"), None),
            (Some("text/html"), None),
            (Some("image/png, text/plain"), None),
        ];
        for (header, wire) in cases {
            assert_eq!(negotiate(&accept(header)), wire, "{header:?}");
        }
    }

    #[test]
    fn html_is_for_browsers_and_wildcards() {
        assert!(accepts_html(&accept(None)));
        assert!(accepts_html(&accept(Some("text/html,*/*;q=0.8"))));
        assert!(accepts_html(&accept(Some("*/*"))));
        assert!(!accepts_html(&accept(Some("application/json"))));
        assert!(!accepts_html(&accept(Some("text/html;q=0, */*"))));
    }
}
