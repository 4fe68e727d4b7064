//! What the finder says about a domain, as stored and shown: the failure categories, the
//! candidates with their typed errors, and the outcome itself.
//!
//! The finder produces these, the store writes them, and every view shows them; they live
//! here so that neither the store nor the views depend on the finder.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Why a domain has no favicon: a small fixed set that drives retries and reporting.
///
/// Stored as text (`result.error_code`), shown as that text by every API and in events.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    EnumIter,
    DeriveActiveEnum,
    async_graphql::Enum,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
// The same words in GraphQL as stored and shown by REST, so a `Result.errorCode` read back
// is a value of the `errorCode` argument as it stands.
#[graphql(rename_items = "snake_case")]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(32))")]
pub enum ErrorCategory {
    /// The name does not resolve (NXDOMAIN, or no usable address).
    #[sea_orm(string_value = "dns")]
    Dns,
    /// A temporary resolution failure (SERVFAIL, resolver timeout).
    #[sea_orm(string_value = "dns_transient")]
    DnsTransient,
    /// TCP connection refused, reset or unreachable.
    #[sea_orm(string_value = "connect")]
    Connect,
    /// TLS handshake or certificate failure.
    #[sea_orm(string_value = "tls")]
    Tls,
    /// The per-request or per-domain deadline passed.
    #[sea_orm(string_value = "timeout")]
    Timeout,
    /// The home page answered with an HTTP error status.
    #[sea_orm(string_value = "http_status")]
    HttpStatus,
    /// The server asked to slow down (429) or is unavailable (503).
    #[sea_orm(string_value = "rate_limited")]
    RateLimited,
    /// More than the redirect limit, or a loop.
    #[sea_orm(string_value = "too_many_redirects")]
    TooManyRedirects,
    /// Every candidate answered and none was a real image (a candidate that did not answer
    /// makes the failure transient instead).
    #[sea_orm(string_value = "no_icon")]
    NoIcon,
    /// The target address is not public (SSRF guard) or the port is not allowed.
    #[sea_orm(string_value = "blocked")]
    Blocked,
    /// The response could not be used (too large, undecodable, not what was expected).
    #[sea_orm(string_value = "invalid_content")]
    InvalidContent,
    /// A bug or a panic while handling the domain.
    #[sea_orm(string_value = "internal")]
    Internal,
    /// The job was cancelled (or deleted) before this domain was fetched.
    #[sea_orm(string_value = "cancelled")]
    Cancelled,
}

impl ErrorCategory {
    /// Every category, in documentation order.
    pub const ALL: [ErrorCategory; 13] = [
        Self::Dns,
        Self::DnsTransient,
        Self::Connect,
        Self::Tls,
        Self::Timeout,
        Self::HttpStatus,
        Self::RateLimited,
        Self::TooManyRedirects,
        Self::NoIcon,
        Self::Blocked,
        Self::InvalidContent,
        Self::Internal,
        Self::Cancelled,
    ];

    /// The stable snake_case code stored and shown to clients.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Dns => "dns",
            Self::DnsTransient => "dns_transient",
            Self::Connect => "connect",
            Self::Tls => "tls",
            Self::Timeout => "timeout",
            Self::HttpStatus => "http_status",
            Self::RateLimited => "rate_limited",
            Self::TooManyRedirects => "too_many_redirects",
            Self::NoIcon => "no_icon",
            Self::Blocked => "blocked",
            Self::InvalidContent => "invalid_content",
            Self::Internal => "internal",
            Self::Cancelled => "cancelled",
        }
    }

    /// Whether trying again later may give a different answer (so the worker retries).
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            Self::DnsTransient | Self::Connect | Self::Timeout | Self::RateLimited | Self::Internal
        )
    }

    /// Whether a later job may reuse a failure of this kind from the cross-job cache: a
    /// permanent answer about the site. A cancelled domain says nothing about the site.
    pub fn is_cacheable(self) -> bool {
        !self.is_transient() && self != Self::Cancelled
    }
}

/// Where a candidate was found.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, async_graphql::Enum, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum CandidateSource {
    /// `<link rel=icon>` / `shortcut icon` in the head.
    Icon,
    /// `apple-touch-icon` or `apple-touch-icon-precomposed`.
    AppleTouch,
    /// `rel=fluid-icon`.
    FluidIcon,
    /// Safari's monochrome `mask-icon`: recorded, never chosen.
    MaskIcon,
    /// An entry of the web app manifest.
    Manifest,
    /// `msapplication-TileImage`, or a square tile of the site's `browserconfig.xml`.
    Tile,
    /// A well-known path probed on the final origin (`/favicon.ico`, ...).
    DefaultPath,
}

/// One possible icon, with what was declared and what verification found. Stored as JSON in
/// `result.candidates` and shown as is by REST and GraphQL.
#[derive(
    Debug, Clone, PartialEq, Serialize, Deserialize, async_graphql::SimpleObject, utoipa::ToSchema,
)]
pub struct Candidate {
    /// Absolute URL (http, https or data).
    pub url: String,
    /// Where it was found.
    pub source: CandidateSource,
    /// The declared `sizes` (or manifest `sizes`), as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub declared_sizes: Option<String>,
    /// The declared `type`, as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub declared_type: Option<String>,
    /// True when the link was in `<body>` rather than `<head>` (ranked lower).
    #[serde(default)]
    pub in_body: bool,
    /// The declared `media` query, as written (capped): one that targets a non-default colour
    /// scheme makes the icon a candidate only when nothing else verifies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media: Option<String>,
    /// Sniffed mime type, when the candidate was fetched and was an image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mime: Option<String>,
    /// Real width in pixels (0 for a scalable SVG without size), when verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    /// Real height in pixels, when verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    /// Why verification rejected it, when it was fetched and rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub error: Option<CandidateError>,
}

impl Candidate {
    /// A candidate as found, with nothing declared or verified yet.
    pub fn new(url: impl Into<String>, source: CandidateSource) -> Self {
        Self {
            url: url.into(),
            source,
            declared_sizes: None,
            declared_type: None,
            in_body: false,
            media: None,
            mime: None,
            width: None,
            height: None,
            error: None,
        }
    }
}

/// A found favicon.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Found {
    /// The chosen, verified icon.
    pub favicon_url: String,
    /// The home page URL after redirects, when the page was fetched.
    pub final_url: Option<String>,
    /// Sniffed mime of the chosen icon.
    pub mime: String,
    /// Real width of the chosen icon (0 when an SVG has no intrinsic size).
    pub width: u32,
    /// Real height of the chosen icon.
    pub height: u32,
    /// Every candidate found, in rank order (at most `clean::MAX_CANDIDATES`, which the store enforces).
    pub candidates: Vec<Candidate>,
    /// How many more candidates the page declared than were kept.
    #[serde(default)]
    pub candidates_dropped: u32,
    /// The chosen icon's own bytes, when kept (see `FinderConfig::icon_max_bytes`). Not
    /// serialised: the bytes go to `icon_blob`, never into a result's JSON.
    #[serde(skip)]
    pub icon: Option<IconBytes>,
    /// The best verified icon the site declares for a dark colour scheme, with its bytes,
    /// when it has one besides the chosen icon and its bytes were kept. Not serialised, as
    /// `icon`.
    #[serde(skip)]
    pub dark: Option<Box<DarkIcon>>,
}

/// The dark-scheme variant of a found icon, verified and kept like the chosen one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DarkIcon {
    /// Where it was fetched from.
    pub url: String,
    /// Its sniffed mime.
    pub mime: String,
    /// Its real width (0 when an SVG has no intrinsic size).
    pub width: u32,
    /// Its real height.
    pub height: u32,
    /// Its bytes with their content address.
    pub icon: IconBytes,
}

/// The bytes of a chosen icon, as verified, with their content address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IconBytes {
    /// Lowercase hex SHA-256 of `bytes`.
    pub sha256: String,
    /// The icon exactly as the site served it (or as its `data:` URL decoded).
    pub bytes: bytes::Bytes,
}

impl IconBytes {
    /// Hashes `bytes`.
    pub fn new(bytes: impl Into<bytes::Bytes>) -> Self {
        use sha2::Digest;
        let bytes = bytes.into();
        let digest = sha2::Sha256::digest(&bytes);
        let sha256 = digest.iter().map(|b| format!("{b:02x}")).collect();
        Self { sha256, bytes }
    }
}

/// Why no favicon was found, classified.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FindError {
    /// The category that drives retry and reporting.
    pub category: ErrorCategory,
    /// A human-readable explanation.
    pub message: String,
    /// The home page URL after redirects, when the page was fetched.
    pub final_url: Option<String>,
    /// Seconds the server asked us to wait (`Retry-After`), if any.
    pub retry_after_secs: Option<u64>,
    /// Candidates found and rejected, in rank order (at most `clean::MAX_CANDIDATES`, which the store enforces).
    pub candidates: Vec<Candidate>,
    /// How many more candidates the page declared than were kept.
    #[serde(default)]
    pub candidates_dropped: u32,
}

impl FindError {
    /// A failure with no page and no candidates.
    pub fn new(category: ErrorCategory, message: impl Into<String>) -> Self {
        Self {
            category,
            message: message.into(),
            final_url: None,
            retry_after_secs: None,
            candidates: Vec::new(),
            candidates_dropped: 0,
        }
    }
}

/// What the finder says about one domain.
pub type FindOutcome = Result<Found, FindError>;
/// Why verification rejected a candidate.
///
/// Stored (in the candidates JSON) and shown as one string, as it always has been: a fetch
/// failure reads `"{category}: {message}"` (`"blocked: …"` when the SSRF guard refused the
/// target), anything else is the reason alone (`"HTTP 404"`, `"empty body"`). The code reads
/// the variant, never the text; the text is parsed only when stored JSON is read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CandidateError {
    /// The request failed before an answer was read, classified like a domain's failure.
    Fetch {
        /// What kind of failure (`blocked` for the SSRF guard).
        category: ErrorCategory,
        /// The whole text, `"{category}: {message}"`.
        text: String,
    },
    /// An answer came but is not a usable icon (error status, too large, not an image).
    Rejected(String),
}

impl CandidateError {
    /// A fetch that failed with `category`.
    pub fn fetch(category: ErrorCategory, message: &str) -> Self {
        Self::Fetch {
            category,
            text: format!("{}: {message}", category.as_str()),
        }
    }

    /// An answer that is not a usable icon.
    pub fn rejected(reason: impl Into<String>) -> Self {
        Self::Rejected(reason.into())
    }

    /// The failure category of a fetch failure.
    pub fn category(&self) -> Option<ErrorCategory> {
        match self {
            Self::Fetch { category, .. } => Some(*category),
            Self::Rejected(_) => None,
        }
    }

    /// The same error with its text passed through `clean` (the store's bounds).
    pub fn map_text(self, clean: impl FnOnce(&str) -> String) -> Self {
        match self {
            Self::Fetch { category, text } => Self::Fetch {
                category,
                text: clean(&text),
            },
            Self::Rejected(text) => Self::Rejected(clean(&text)),
        }
    }

    /// The error as stored and shown.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Fetch { text, .. } | Self::Rejected(text) => text,
        }
    }

    /// Reads the stored text back: a `"{category}: "` prefix makes it a fetch failure.
    fn from_text(text: String) -> Self {
        let category = text
            .split_once(": ")
            .and_then(|(code, _)| ErrorCategory::ALL.into_iter().find(|c| c.as_str() == code));
        match category {
            Some(category) => Self::Fetch { category, text },
            None => Self::Rejected(text),
        }
    }
}

impl Default for CandidateError {
    fn default() -> Self {
        Self::Rejected(String::new())
    }
}

/// Reads as its text, so a check of what a candidate's error says stays a string check.
impl std::ops::Deref for CandidateError {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Display for CandidateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for CandidateError {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for CandidateError {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Self::from_text)
    }
}

/// GraphQL shows a candidate's error as the same `String` REST shows, so the schema keeps its
/// type and the two APIs their values. (A category is a GraphQL enum of the same words.)
macro_rules! graphql_as_string {
    ($ty:ty, $text:expr) => {
        impl async_graphql::OutputType for $ty {
            fn type_name() -> std::borrow::Cow<'static, str> {
                <String as async_graphql::OutputType>::type_name()
            }

            fn create_type_info(registry: &mut async_graphql::registry::Registry) -> String {
                <String as async_graphql::OutputType>::create_type_info(registry)
            }

            async fn resolve(
                &self,
                _: &async_graphql::ContextSelectionSet<'_>,
                _: &async_graphql::Positioned<async_graphql::parser::types::Field>,
            ) -> async_graphql::ServerResult<async_graphql::Value> {
                let text: fn(&$ty) -> &str = $text;
                Ok(async_graphql::Value::String(text(self).to_owned()))
            }
        }
    };
}

graphql_as_string!(CandidateError, |e| e.as_str());

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidate_errors_keep_their_text_and_kind_through_storage() {
        for error in [
            CandidateError::fetch(ErrorCategory::Blocked, "10.0.0.1 is not public"),
            CandidateError::fetch(ErrorCategory::Connect, "refused"),
            CandidateError::rejected("HTTP 404"),
            CandidateError::rejected("corrupt image/png: bad: header"),
        ] {
            let stored = serde_json::to_value(&error).unwrap();
            assert!(stored.is_string(), "{stored}");
            let back: CandidateError = serde_json::from_value(stored).unwrap();
            assert_eq!(back, error);
        }
        assert_eq!(
            CandidateError::fetch(ErrorCategory::Blocked, "x").as_str(),
            "blocked: x"
        );
    }

    #[test]
    fn categories_are_stored_as_their_codes() {
        for category in ErrorCategory::ALL {
            assert_eq!(category.to_value(), category.as_str());
            assert_eq!(
                serde_json::to_value(category).unwrap(),
                serde_json::json!(category.as_str())
            );
        }
    }
}
