//! Why a domain has no icon: the failure's category and message, chosen from the home page's
//! answer and what the search met on the way (see the parent module for the rules).

use super::html;
use crate::finder::clock::Deadline;
use crate::finder::fetch::FetchError;
use crate::finder::page::HomePage;
use crate::finder::{Candidate, ErrorCategory, FindError};

/// What the search learned besides the candidates themselves, kept because the failure's
/// classification depends on it.
#[derive(Default)]
pub(super) struct Trail {
    /// A fetch besides the candidates (the `<meta refresh>` target, a manifest) that did not
    /// answer: the icons it would have named are unknown, not absent.
    pub(super) unanswered_fetch: Option<(ErrorCategory, String)>,
    /// A manifest or `browserconfig.xml` URL the SSRF guard refused.
    pub(super) file_refused: Option<String>,
    /// The parser's own failure on the home page (its memory limit).
    pub(super) parse_error: Option<String>,
    /// Verification skipped or stopped at a candidate because its time had run out.
    pub(super) timed_out: bool,
    /// Icons fetched in all.
    pub(super) fetched: usize,
}

/// Whether verification refused this candidate because of the SSRF guard.
fn refused(c: &Candidate) -> bool {
    c.error
        .as_ref()
        .is_some_and(|e| e.category() == Some(ErrorCategory::Blocked))
}

/// The first fetch failure among the candidates that a later try may not meet (a timeout, a
/// refused or reset connection, a 429 or 5xx): such a candidate never said whether it is an
/// icon, so the domain cannot be called `no_icon`.
fn unanswered(ranked: &[Candidate]) -> Option<(ErrorCategory, &str)> {
    ranked.iter().find_map(|c| {
        let e = c.error.as_ref()?;
        let category = e.category().filter(|c| c.is_transient())?;
        Some((category, e.as_str()))
    })
}

/// The failure a home page that refused us explains on its own (a bot wall, a 403, a 429 or
/// 5xx); these outrank everything the candidates could say.
fn home_page_refusal(p: &HomePage) -> Option<FindError> {
    if p.status >= 400 && p.challenge {
        return Some(FindError::new(
            ErrorCategory::HttpStatus,
            format!(
                "bot wall: home page answered HTTP {} with a challenge page, also to a browser-like retry",
                p.status
            ),
        ));
    }
    if p.status == 403 {
        return Some(FindError::new(
            ErrorCategory::HttpStatus,
            "home page answered HTTP 403, also to a browser-like retry (bot wall?)",
        ));
    }
    if p.status == 429 || p.status >= 500 {
        let mut e = FindError::new(
            ErrorCategory::RateLimited,
            format!("home page answered HTTP {}", p.status),
        );
        e.retry_after_secs = p.retry_after;
        return Some(e);
    }
    None
}

/// Classifies a domain where no candidate verified, in the order of the parent module's rules.
pub(super) fn failure(
    page: &Result<HomePage, FetchError>,
    ranked: &[Candidate],
    trail: Trail,
    deadline: &Deadline,
) -> FindError {
    let p = match page {
        Err(e) => return FindError::new(e.category, e.message.clone()),
        Ok(p) => p,
    };
    if let Some(e) = home_page_refusal(p) {
        return e;
    }
    // A candidate, a manifest or a refresh target that did not answer leaves the question
    // open: a later try may find the icon there, so the failure is transient and never
    // `no_icon`.
    let unanswered = unanswered(ranked)
        .map(|(category, what)| (category, what.to_owned()))
        .or(trail.unanswered_fetch);
    if let Some((category, what)) = unanswered {
        return FindError::new(
            category,
            format!("no icon verified; a candidate did not answer ({what})"),
        );
    }
    if p.status >= 400 {
        return FindError::new(
            ErrorCategory::HttpStatus,
            format!("home page answered HTTP {}", p.status),
        );
    }
    if trail.file_refused.is_some() || ranked.iter().any(refused) {
        let what = ranked
            .iter()
            .find(|c| refused(c))
            .and_then(|c| c.error.as_ref().map(ToString::to_string))
            .or(trail.file_refused)
            .unwrap_or_default();
        return FindError::new(
            ErrorCategory::Blocked,
            format!("no usable icon; refused a non-public target ({what})"),
        );
    }
    if trail.timed_out || deadline.remaining().is_zero() {
        return FindError::new(
            ErrorCategory::Timeout,
            "deadline passed before an icon was verified",
        );
    }
    // A page the client could not read to its end is not an empty page: its own failure
    // (undecodable: `invalid_content`; too slow: `timeout`) says why nothing was found.
    if let Some(e) = &p.read_error {
        return FindError::new(
            e.category,
            format!(
                "no usable icon; the home page could not be read ({})",
                e.message
            ),
        );
    }
    // The page's markup broke the parser's memory limit before anything usable was found:
    // the page, not the network, is why there is no icon.
    if let Some(parse_error) = &trail.parse_error {
        return FindError::new(
            ErrorCategory::InvalidContent,
            format!(
                "no usable icon; the home page could not be parsed within the {}-byte parser memory limit ({parse_error})",
                html::PARSER_MEMORY,
            ),
        );
    }
    FindError::new(
        ErrorCategory::NoIcon,
        format!("no candidate was a real image ({} tried)", trail.fetched),
    )
}
