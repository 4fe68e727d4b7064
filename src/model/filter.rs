//! How each API names a request's fields ([`Fields`]), the client's name every request and
//! key carries, and what a read of a job's results asks for besides a page: which results
//! (status, failure code, part of the domain), and for the cursor form where the previous
//! slice ended.
//!
//! Both APIs (and the keys command) parse their arguments here, so a bad value gets the same
//! message from each, naming the parameter as that API spells it.

use super::{ErrorCategory, MAX_PER_PAGE, Priority, ResultStatus};
use crate::error::{AppError, AppResult, Code};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// The longest domain search: no domain is longer, so a longer one can only be a mistake.
const MAX_DOMAIN_SEARCH: usize = 253;

/// How an API names the fields of a request, so that an error names what the caller wrote
/// (`client_id` and `error_code` over REST, `input.clientId` and `errorCode` over GraphQL).
#[derive(Clone, Copy, Debug)]
pub struct Fields {
    /// A job's client: its name for itself.
    pub client_id: &'static str,
    /// A job's list of domains.
    pub domains: &'static str,
    /// A job's own cache age.
    pub max_age: &'static str,
    /// A job's priority.
    pub priority: &'static str,
    /// The status filter.
    pub status: &'static str,
    /// The failure-code filter.
    pub error_code: &'static str,
    /// The domain search.
    pub domain: &'static str,
    /// The slice size of the cursor form.
    pub first: &'static str,
    /// The cursor the slice starts after.
    pub after: &'static str,
}

impl Fields {
    /// The REST API's names (the original service's JSON and query parameters).
    pub const REST: Fields = Fields {
        client_id: "client_id",
        domains: "domains",
        max_age: "max_age_seconds",
        priority: "priority",
        status: "status",
        error_code: "error_code",
        domain: "domain",
        first: "first",
        after: "after",
    };
    /// The GraphQL names: `createJob(input: …)` and the results' arguments.
    pub const GRAPHQL: Fields = Fields {
        client_id: "input.clientId",
        domains: "input.domains",
        max_age: "input.maxAgeSeconds",
        priority: "input.priority",
        status: "status",
        error_code: "errorCode",
        domain: "domain",
        first: "first",
        after: "after",
    };
}

/// The longest client name kept.
const MAX_CLIENT_ID_LEN: usize = 255;

/// Validates a client's name for itself, as a job request or a new API key gives it.
pub fn parse_client_id(raw: &str, fields: Fields) -> AppResult<String> {
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Err(invalid(format!("{} must not be empty", fields.client_id)));
    }
    if trimmed.len() > MAX_CLIENT_ID_LEN {
        return Err(invalid(format!(
            "{} must be at most {MAX_CLIENT_ID_LEN} characters",
            fields.client_id
        )));
    }
    Ok(trimmed.to_owned())
}

/// Which of a job's results a read wants; every condition given must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResultFilter {
    /// Only results in this state.
    pub status: Option<ResultStatus>,
    /// Only finished failures of this kind. A pending row waiting for a retry carries the
    /// code of its last try; it is not a failure yet, so it does not match.
    pub error_code: Option<ErrorCategory>,
    /// Only domains containing this text: lowercase, as domains are stored, so the search is
    /// case-insensitive on both databases.
    pub domain: Option<String>,
}

impl ResultFilter {
    /// Validates the filters from either API; an empty domain search is no search.
    pub fn new(
        status: Option<ResultStatus>,
        error_code: Option<ErrorCategory>,
        domain: Option<&str>,
        fields: Fields,
    ) -> AppResult<Self> {
        let domain = match domain.map(str::trim) {
            None | Some("") => None,
            Some(text) if text.len() > MAX_DOMAIN_SEARCH => {
                return Err(invalid(format!(
                    "{} must be at most {MAX_DOMAIN_SEARCH} characters",
                    fields.domain
                )));
            }
            Some(text) if text.chars().any(char::is_control) => {
                return Err(invalid(format!(
                    "{} must not hold control characters",
                    fields.domain
                )));
            }
            Some(text) => Some(text.to_lowercase()),
        };
        Ok(Self {
            status,
            error_code,
            domain,
        })
    }

    /// Whether every result matches (no condition given).
    pub fn is_empty(&self) -> bool {
        self.status.is_none() && self.error_code.is_none() && self.domain.is_none()
    }
}

/// Reads a status as REST writes it (`pending`, `success`, `failed`, in any case).
pub fn parse_status(raw: &str, fields: Fields) -> AppResult<ResultStatus> {
    let word = raw.trim().to_ascii_lowercase();
    [
        ResultStatus::Pending,
        ResultStatus::Success,
        ResultStatus::Failed,
    ]
    .into_iter()
    .find(|status| status.as_str() == word)
    .ok_or_else(|| {
        invalid(format!(
            "{} must be one of pending, success, failed; got {raw:?}",
            fields.status
        ))
    })
}

/// Reads a job's priority as REST writes it (`low`, `normal`, `high`, in any case); GraphQL's
/// enum argument takes the same words, checked by the schema.
pub fn parse_priority(raw: &str, fields: Fields) -> AppResult<Priority> {
    let word = raw.trim().to_ascii_lowercase();
    [Priority::Low, Priority::Normal, Priority::High]
        .into_iter()
        .find(|priority| priority.as_str() == word)
        .ok_or_else(|| {
            invalid(format!(
                "{} must be one of low, normal, high; got {raw:?}",
                fields.priority
            ))
        })
}

/// Reads a failure code as REST writes it (`dns`, `timeout`, …: [`ErrorCategory::as_str`],
/// in any case); GraphQL's enum argument takes the same words, checked by the schema.
pub fn parse_error_code(raw: &str, fields: Fields) -> AppResult<ErrorCategory> {
    let word = raw.trim().to_ascii_lowercase();
    ErrorCategory::ALL
        .into_iter()
        .find(|code| code.as_str() == word)
        .ok_or_else(|| {
            let known: Vec<&str> = ErrorCategory::ALL.iter().map(|c| c.as_str()).collect();
            invalid(format!(
                "{} must be one of {}; got {raw:?}",
                fields.error_code,
                known.join(", ")
            ))
        })
}

/// Validates the size of a cursor slice: the same bounds as a page's `per_page`.
pub fn parse_first(first: i64, fields: Fields) -> AppResult<u64> {
    if !(1..=MAX_PER_PAGE as i64).contains(&first) {
        return Err(AppError::bad_request(
            Code::InvalidPage,
            format!(
                "{} must be between 1 and {MAX_PER_PAGE}, got {first}",
                fields.first
            ),
        ));
    }
    Ok(first as u64)
}

/// Where a slice of a job's results ends: the last result's place in submission order.
/// Clients get it as an opaque string and hand it back as `after`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResultCursor(pub i32);

/// What a cursor's text says before the position, so a string from elsewhere (a job id, a
/// page number) is refused rather than read as a position.
const CURSOR_TAG: &str = "result:";

impl ResultCursor {
    /// The cursor as clients see it.
    pub fn encode(self) -> String {
        URL_SAFE_NO_PAD.encode(format!("{CURSOR_TAG}{}", self.0))
    }

    /// Reads a cursor this service made, or says which parameter was wrong.
    pub fn decode(raw: &str, fields: Fields) -> AppResult<Self> {
        URL_SAFE_NO_PAD
            .decode(raw.trim())
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .and_then(|text| text.strip_prefix(CURSOR_TAG)?.parse::<i32>().ok())
            .filter(|position| *position >= 0)
            .map(Self)
            .ok_or_else(|| {
                invalid(format!(
                    "{} is not a cursor this service gave out: pass a page's end cursor as is",
                    fields.after
                ))
            })
    }
}

/// The GraphQL connection's cursor. `resultsConnection` decodes `after` itself, so a bad one
/// is INVALID_INPUT like every other argument; this is what async-graphql needs to print one.
impl async_graphql::connection::CursorType for ResultCursor {
    type Error = AppError;

    fn decode_cursor(s: &str) -> Result<Self, AppError> {
        Self::decode(s, Fields::GRAPHQL)
    }

    fn encode_cursor(&self) -> String {
        self.encode()
    }
}

fn invalid(message: String) -> AppError {
    AppError::bad_request(Code::InvalidInput, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_strangers_are_refused() {
        for position in [0, 1, 99_999, i32::MAX] {
            let text = ResultCursor(position).encode();
            assert_eq!(
                ResultCursor::decode(&text, Fields::REST).unwrap(),
                ResultCursor(position)
            );
        }
        let other = URL_SAFE_NO_PAD.encode("result:-1");
        for bad in ["", "abc", "12", "cmVzdWx0Og", other.as_str()] {
            let err = ResultCursor::decode(bad, Fields::GRAPHQL).unwrap_err();
            assert!(err.to_string().starts_with("after "), "{bad:?}: {err}");
        }
    }

    #[test]
    fn filters_are_parsed_and_errors_name_the_parameter() {
        let dns = parse_error_code(" DNS ", Fields::REST).unwrap();
        assert_eq!(dns, ErrorCategory::Dns);
        let filter = ResultFilter::new(None, Some(dns), Some(" Shop. "), Fields::REST).unwrap();
        assert_eq!(filter.error_code, Some(ErrorCategory::Dns));
        assert_eq!(filter.domain.as_deref(), Some("shop."));
        assert!(
            ResultFilter::new(None, None, Some("  "), Fields::REST)
                .unwrap()
                .is_empty()
        );
        let err = parse_error_code("nope", Fields::REST).unwrap_err();
        let message = err.to_string();
        assert!(
            message.starts_with("error_code must be one of dns, dns_transient,"),
            "{message}"
        );
        assert!(message.ends_with("cancelled; got \"nope\""), "{message}");
        assert_eq!(
            parse_client_id(" acme ", Fields::GRAPHQL).unwrap(),
            "acme",
            "the name is trimmed"
        );
        let err = parse_client_id(&"a".repeat(256), Fields::GRAPHQL).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("input.clientId must be at most")
        );
        let err = parse_status("done", Fields::REST).unwrap_err();
        assert!(
            err.to_string().starts_with("status must be one of"),
            "{err}"
        );
        assert_eq!(
            parse_status("FAILED", Fields::REST).unwrap(),
            ResultStatus::Failed
        );
        let long = "a".repeat(254);
        let err = ResultFilter::new(None, None, Some(&long), Fields::REST).unwrap_err();
        assert!(
            err.to_string().starts_with("domain must be at most"),
            "{err}"
        );
        assert!(parse_first(0, Fields::REST).is_err());
        assert!(parse_first(501, Fields::REST).is_err());
        assert_eq!(parse_first(500, Fields::REST).unwrap(), 500);
    }
}
