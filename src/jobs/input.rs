//! Parsing a job request at the edge into typed values, with errors that name the field as
//! the caller wrote it. Both APIs hand their raw values here (through [`super::Jobs::submit`]);
//! neither re-implements a rule found here.

use crate::domain::Domain;
use crate::error::{AppError, AppResult, Code};
use crate::model::Priority;
pub use crate::model::{Fields, parse_client_id};
use serde_json::json;
use std::collections::HashSet;
use uuid::Uuid;

/// Bad entries listed in an error's message; `details` lists them all.
const BAD_ENTRIES_IN_MESSAGE: usize = 10;

/// Parses a job id given by a client.
pub fn parse_job_id(raw: &str) -> AppResult<Uuid> {
    Uuid::parse_str(raw.trim()).map_err(|_| {
        AppError::bad_request(
            Code::InvalidId,
            format!("job id {raw:?} is not a valid id (expected a UUID)"),
        )
    })
}

/// A job request as an adapter read it from its wire format: each field is its raw value, or
/// the error of a field the format could not read as the right kind of value. Errors are
/// reported in field order (client, domains, cache age), whichever kind they are.
pub struct NewJob<'a> {
    /// The client's name for itself, as sent (optional with an API key, which names the
    /// client itself).
    pub client_id: AppResult<Option<&'a str>>,
    /// The domain entries, as sent.
    pub domains: AppResult<Vec<Entry<'a>>>,
    /// The job's own cache age in seconds, if sent.
    pub max_age_seconds: AppResult<Option<i64>>,
    /// The job's priority, if sent (default `normal`).
    pub priority: AppResult<Option<Priority>>,
    /// How the caller's API names these fields, for error messages.
    pub fields: Fields,
    /// The address the request came from (see `TRUSTED_PROXY_HEADERS`): a caller without a
    /// key is also held to the hourly allowances per address.
    pub source_ip: Option<std::net::IpAddr>,
}

/// One submitted domain entry: a string, or something else a JSON client sent by mistake.
pub enum Entry<'a> {
    /// A string to parse as a domain.
    Text(&'a str),
    /// A value of another JSON type, described for the error message.
    NotText(&'static str),
}

/// Parses every entry, merging duplicates in first-seen order; names every bad entry.
pub fn parse_domains<'a>(
    entries: impl ExactSizeIterator<Item = Entry<'a>>,
    max: usize,
    fields: Fields,
) -> AppResult<Vec<Domain>> {
    let count = entries.len();
    if count == 0 {
        return Err(AppError::bad_request(
            Code::InvalidInput,
            format!("{} must not be empty", fields.domains),
        ));
    }
    if count > max {
        return Err(AppError::bad_request(
            Code::TooManyDomains,
            format!("a job may hold at most {max} domains; this request has {count}"),
        ));
    }
    let mut domains = Vec::with_capacity(count);
    let mut bad = Vec::new();
    for (position, entry) in entries.enumerate() {
        match entry {
            Entry::Text(raw) => match Domain::parse(raw) {
                Ok(domain) => domains.push(domain),
                Err(err) => bad.push((position, json!(raw), err.to_string())),
            },
            Entry::NotText(kind) => bad.push((
                position,
                json!(null),
                format!("is a JSON {kind}, not a string"),
            )),
        }
    }
    if bad.is_empty() {
        // Duplicates are found by reference, so no domain is copied to be remembered.
        let mut seen = HashSet::with_capacity(domains.len());
        let first: Vec<bool> = domains.iter().map(|d| seen.insert(d.as_str())).collect();
        drop(seen);
        if first.iter().all(|&f| f) {
            return Ok(domains);
        }
        let mut first = first.into_iter();
        domains.retain(|_| first.next().unwrap_or(false));
        return Ok(domains);
    }
    let listed: Vec<String> = bad
        .iter()
        .take(BAD_ENTRIES_IN_MESSAGE)
        .map(|(pos, value, reason)| format!("{}[{pos}] {value} {reason}", fields.domains))
        .collect();
    let more = bad.len().saturating_sub(BAD_ENTRIES_IN_MESSAGE);
    let message = format!(
        "{} of {count} domain entries are invalid: {}{}",
        bad.len(),
        listed.join("; "),
        if more > 0 {
            format!("; and {more} more (see details)")
        } else {
            String::new()
        }
    );
    let details: Vec<_> = bad
        .into_iter()
        .map(|(position, value, reason)| json!({"position": position, "value": value, "reason": reason}))
        .collect();
    Err(AppError::BadRequest {
        code: Code::InvalidDomains,
        message,
        details: Some(json!(details)),
    })
}

/// The longest `max_age_seconds` a job may ask for (one year).
pub const MAX_CACHE_AGE_SECS: i64 = 31_536_000;

/// Validates a job's own `max_age_seconds`.
pub fn parse_max_age(raw: Option<i64>, fields: Fields) -> AppResult<Option<u64>> {
    match raw {
        None => Ok(None),
        Some(secs) if (0..=MAX_CACHE_AGE_SECS).contains(&secs) => Ok(Some(secs as u64)),
        Some(secs) => Err(AppError::bad_request(
            Code::InvalidInput,
            format!(
                "{} must be between 0 and {MAX_CACHE_AGE_SECS}, got {secs}",
                fields.max_age
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(items: &[&'static str]) -> Vec<Entry<'static>> {
        items.iter().map(|s| Entry::Text(s)).collect()
    }

    #[test]
    fn duplicates_merge_in_first_seen_order() {
        let domains = parse_domains(
            texts(&["b.com", "A.com", "https://b.com/x", "a.com."]).into_iter(),
            10,
            Fields::REST,
        )
        .unwrap();
        let names: Vec<_> = domains.iter().map(|d| d.as_str()).collect();
        assert_eq!(names, ["b.com", "a.com"]);
    }

    #[test]
    fn every_bad_entry_is_named_with_its_position() {
        let err = parse_domains(
            texts(&["ok.com", "localhost", "ok.org", "1.2.3.4"]).into_iter(),
            10,
            Fields::REST,
        )
        .unwrap_err();
        let AppError::BadRequest {
            code,
            message,
            details,
        } = err
        else {
            panic!("expected a bad request");
        };
        assert_eq!(code, Code::InvalidDomains);
        assert!(message.contains("domains[1] \"localhost\""), "{message}");
        assert!(message.contains("domains[3] \"1.2.3.4\""), "{message}");
        let details = details.unwrap();
        assert_eq!(details.as_array().unwrap().len(), 2);
        assert_eq!(details[1]["position"], 3);
    }

    #[test]
    fn limits_and_names() {
        assert!(parse_domains(texts(&[]).into_iter(), 10, Fields::REST).is_err());
        let err =
            parse_domains(texts(&["a.com", "b.com"]).into_iter(), 1, Fields::REST).unwrap_err();
        assert_eq!(err.code(), Code::TooManyDomains);
        assert!(parse_job_id("not-a-uuid").is_err());
        assert!(parse_client_id("  ", Fields::REST).is_err());
    }
}
