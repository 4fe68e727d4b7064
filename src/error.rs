//! The one error type of the API, and how it shows over REST and GraphQL.
//!
//! Policy: a client error carries a stable `code` and a message that says what to fix; it is
//! not logged above debug. An internal error is logged with its cause chain where it is turned
//! into a response, and the client sees only a generic message, never SQL or stack details.

use async_graphql::ErrorExtensions;
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// Stable machine-readable codes, shared by REST (`error.code`) and GraphQL
/// (`extensions.code`); [`Code::as_str`] is the one spelling of each on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    /// The body is not valid JSON.
    InvalidJson,
    /// A field is missing or has the wrong type or value.
    InvalidInput,
    /// One or more domain entries are not valid public hostnames.
    InvalidDomains,
    /// More domains than `MAX_DOMAINS_PER_JOB`.
    TooManyDomains,
    /// A job id that is not a UUID.
    InvalidId,
    /// `page` or `per_page` out of range.
    InvalidPage,
    /// No such job, or no such path.
    NotFound,
    /// The path exists but does not take this method (405, with `Allow`).
    MethodNotAllowed,
    /// The `Accept` header allows none of the media types the endpoint answers in (406).
    NotAcceptable,
    /// The request body is larger than `MAX_REQUEST_BYTES`.
    PayloadTooLarge,
    /// The request body did not arrive within `HTTP_BODY_TIMEOUT_MS`.
    RequestTimeout,
    /// Something failed on our side.
    Internal,
    /// The client is over its hourly allowance; retry after the time given.
    RateLimited,
    /// The WebSocket connection already runs the most subscriptions it may.
    TooManySubscriptions,
    /// The request body is not `application/json`.
    UnsupportedMediaType,
    /// Too many open WebSocket connections, from this address or in all.
    TooManyConnections,
    /// A stored icon could not be decoded or resized within the limits.
    IconUndecodable,
    /// No API key, or one that is unknown, malformed or revoked.
    Unauthorized,
    /// The key (or link, or origin) is known but may not do this.
    Forbidden,
    /// A signed download link whose expiry has passed.
    LinkExpired,
    /// GraphQL only: the query text is not GraphQL.
    GraphqlParseFailed,
    /// GraphQL only: the query does not fit the schema (unknown field, missing argument, …).
    GraphqlValidationFailed,
    /// GraphQL only: deeper than `GRAPHQL_MAX_DEPTH`.
    QueryTooDeep,
    /// GraphQL only: more complex than `GRAPHQL_MAX_COMPLEXITY`.
    QueryTooComplex,
    /// A webhook URL that is not `http(s)`, carries credentials, does not resolve, or
    /// resolves to a non-public address.
    WebhookUrlRefused,
    /// Webhooks are off on this server: `WEBHOOK_SECRET_KEY` is not set.
    WebhooksNotConfigured,
}

impl Code {
    /// The code as clients see it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidJson => "INVALID_JSON",
            Self::InvalidInput => "INVALID_INPUT",
            Self::InvalidDomains => "INVALID_DOMAINS",
            Self::TooManyDomains => "TOO_MANY_DOMAINS",
            Self::InvalidId => "INVALID_ID",
            Self::InvalidPage => "INVALID_PAGE",
            Self::NotFound => "NOT_FOUND",
            Self::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            Self::NotAcceptable => "NOT_ACCEPTABLE",
            Self::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            Self::RequestTimeout => "REQUEST_TIMEOUT",
            Self::Internal => "INTERNAL",
            Self::RateLimited => "RATE_LIMITED",
            Self::TooManySubscriptions => "TOO_MANY_SUBSCRIPTIONS",
            Self::UnsupportedMediaType => "UNSUPPORTED_MEDIA_TYPE",
            Self::TooManyConnections => "TOO_MANY_CONNECTIONS",
            Self::IconUndecodable => "ICON_UNDECODABLE",
            Self::Unauthorized => "UNAUTHORIZED",
            Self::Forbidden => "FORBIDDEN",
            Self::LinkExpired => "LINK_EXPIRED",
            Self::GraphqlParseFailed => "GRAPHQL_PARSE_FAILED",
            Self::GraphqlValidationFailed => "GRAPHQL_VALIDATION_FAILED",
            Self::QueryTooDeep => "QUERY_TOO_DEEP",
            Self::QueryTooComplex => "QUERY_TOO_COMPLEX",
            Self::WebhookUrlRefused => "WEBHOOK_URL_REFUSED",
            Self::WebhooksNotConfigured => "WEBHOOKS_NOT_CONFIGURED",
        }
    }
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The REST body of every error: `{"error": {"code", "message", "details"?}}`.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorObject,
}

/// One error, as REST shows it.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorObject {
    /// A stable code to branch on (`INVALID_DOMAINS`, `NOT_FOUND`, `RATE_LIMITED`, …); GraphQL
    /// gives the same code in `extensions.code`.
    #[schema(value_type = String, example = "NOT_FOUND")]
    pub code: &'static str,
    /// What was wrong, for a person: what to fix.
    pub message: String,
    /// The request's id (its `x-request-id`), to quote when asking about it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Structured specifics, such as every bad domain with its position.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
}

/// Everything an API call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The request was wrong; `details` may list every offending item.
    #[error("{message}")]
    BadRequest {
        /// What kind of mistake.
        code: Code,
        /// What was wrong, for a person.
        message: String,
        /// Structured specifics (for example every bad domain with its position).
        details: Option<Value>,
    },
    /// The named thing does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The path does not take this method; `allow` lists the methods it does take.
    #[error("{message}")]
    MethodNotAllowed {
        /// What was refused, and what to do instead.
        message: String,
        /// The `Allow` header, the methods the path takes; `None` where the router sets it.
        allow: Option<&'static str>,
    },
    /// No media type the client accepts can carry the answer.
    #[error("{0}")]
    NotAcceptable(String),
    /// The body was over the size limit.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// The body did not arrive in time (408).
    #[error("{0}")]
    RequestTimeout(String),
    /// Over a rate limit; the client may try again after `retry_after_secs`.
    #[error("{message}")]
    RateLimited {
        /// What limit was hit.
        message: String,
        /// Seconds until the request would be accepted.
        retry_after_secs: u64,
    },
    /// The body's media type is not one the endpoint reads.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// Over a connection cap: `per_client` for one address's cap (429), else the process's
    /// (503).
    #[error("{message}")]
    TooManyConnections {
        /// Which cap was hit.
        message: String,
        /// The client's own cap rather than the whole process's.
        per_client: bool,
    },
    /// The request was well-formed but what it names cannot be processed (422).
    #[error("{message}")]
    Unprocessable {
        /// Which failure.
        code: Code,
        /// What could not be done, for a person.
        message: String,
    },
    /// No usable API key; the message never contains the key, only what was wrong with it.
    #[error("{0}")]
    Unauthorized(String),
    /// Authenticated (or a signed link) but not allowed: `code` is [`Code::Forbidden`] or
    /// [`Code::LinkExpired`].
    #[error("{message}")]
    Forbidden {
        /// Which refusal.
        code: Code,
        /// What was refused, for a person.
        message: String,
    },
    /// A failure on our side; the cause is logged, not shown.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl AppError {
    /// A client error with a code and a message.
    pub fn bad_request(code: Code, message: impl Into<String>) -> Self {
        Self::BadRequest {
            code,
            message: message.into(),
            details: None,
        }
    }

    /// The HTTP status this error maps to.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::NotAcceptable(_) => StatusCode::NOT_ACCEPTABLE,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::TooManyConnections {
                per_client: true, ..
            } => StatusCode::TOO_MANY_REQUESTS,
            Self::TooManyConnections { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden { .. } => StatusCode::FORBIDDEN,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable code.
    pub fn code(&self) -> Code {
        match self {
            Self::BadRequest { code, .. } => *code,
            Self::NotFound(_) => Code::NotFound,
            Self::MethodNotAllowed { .. } => Code::MethodNotAllowed,
            Self::NotAcceptable(_) => Code::NotAcceptable,
            Self::PayloadTooLarge(_) => Code::PayloadTooLarge,
            Self::RequestTimeout(_) => Code::RequestTimeout,
            Self::RateLimited { .. } => Code::RateLimited,
            Self::UnsupportedMediaType(_) => Code::UnsupportedMediaType,
            Self::TooManyConnections { .. } => Code::TooManyConnections,
            Self::Unauthorized(_) => Code::Unauthorized,
            Self::Forbidden { code, .. } => *code,
            Self::Unprocessable { code, .. } => *code,
            Self::Internal(_) => Code::Internal,
        }
    }

    /// The message a client sees; internal causes are logged here and hidden.
    fn public_message(&self) -> String {
        match self {
            Self::Internal(err) => {
                tracing::error!(error = format!("{err:#}"), "internal error");
                "internal error; the cause has been logged".to_owned()
            }
            other => other.to_string(),
        }
    }

    fn details(&self) -> Option<&Value> {
        match self {
            Self::BadRequest { details, .. } => details.as_ref(),
            _ => None,
        }
    }

    /// The GraphQL form: the same message, with `extensions.code` (and `details`).
    pub fn into_graphql(self) -> async_graphql::Error {
        let message = self.public_message();
        let code = self.code();
        let details = self.details().cloned();
        let retry_after = match &self {
            Self::RateLimited {
                retry_after_secs, ..
            } => Some(*retry_after_secs),
            _ => None,
        };
        async_graphql::Error::new(message).extend_with(|_, ext| {
            ext.set("code", code.as_str());
            if let Some(secs) = retry_after {
                ext.set("retryAfterSeconds", secs);
            }
            if let Some(details) = details
                && let Ok(value) = async_graphql::Value::from_json(details)
            {
                ext.set("details", value);
            }
        })
    }
}

impl AppError {
    /// The GraphQL-over-HTTP form of an error that stopped a request before any GraphQL ran
    /// (a body that is not JSON, too large, the wrong content type): the same status, with a
    /// GraphQL body `{"errors": [{"message", "extensions": {"code"}}]}`.
    pub fn into_graphql_response(self) -> Response {
        let status = self.status();
        let mut extensions = json!({ "code": self.code().as_str() });
        if let Some(id) = request_id() {
            extensions["requestId"] = id.into();
        }
        if let Some(details) = self.details() {
            extensions["details"] = details.clone();
        }
        let body = json!({
            "errors": [{ "message": self.public_message(), "extensions": extensions }]
        });
        let mut response = (status, Json(body)).into_response();
        self.allow_header(&mut response);
        response
    }

    /// A 405 says which methods the path does take (RFC 9110 requires `Allow` on it).
    fn allow_header(&self, response: &mut Response) {
        if let Self::MethodNotAllowed {
            allow: Some(allow), ..
        } = self
        {
            response.headers_mut().insert(
                axum::http::header::ALLOW,
                axum::http::HeaderValue::from_static(allow),
            );
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = ErrorBody {
            error: ErrorObject {
                code: self.code().as_str(),
                message: self.public_message(),
                request_id: request_id(),
                details: self.details().cloned(),
            },
        };
        let unauthorized = matches!(self, Self::Unauthorized(_));
        let mut response = (status, Json(body)).into_response();
        self.allow_header(&mut response);
        if unauthorized {
            // RFC 6750: a 401 names the scheme the client should use.
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        if let Self::RateLimited {
            retry_after_secs, ..
        } = self
        {
            error_retry_after(&mut response, retry_after_secs);
        }
        response
    }
}

fn error_retry_after(response: &mut Response, secs: u64) {
    response.headers_mut().insert(
        axum::http::header::RETRY_AFTER,
        axum::http::HeaderValue::from(secs.max(1)),
    );
}

tokio::task_local! {
    /// The id of the HTTP request being answered, for the error bodies made while answering.
    static REQUEST_ID: String;
}

/// Runs `work` (answering one request) with `id` as the request id its error bodies show.
pub fn with_request_id<F: Future>(id: String, work: F) -> impl Future<Output = F::Output> {
    REQUEST_ID.scope(id, work)
}

/// The id of the request being answered, outside of one `None`.
pub fn request_id() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

/// Results of API operations.
pub type AppResult<T> = Result<T, AppError>;
