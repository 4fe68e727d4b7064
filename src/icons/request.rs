//! What a client asks `/icons/{domain}` for, parsed and checked at the edge: the domain, a
//! size, a fallback, `find`, a theme, an exact version (`sha`), and `If-None-Match`.

use super::render;
use crate::domain::Domain;
use crate::error::{AppError, AppResult, Code};

/// What the client asked for, parsed at the edge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IconRequest {
    /// The domain, normalised (Unicode and punycode spellings are the same value).
    pub domain: Domain,
    /// `?size=N`: a PNG of N×N instead of the stored bytes.
    pub size: Option<u32>,
    /// `?fallback=`: what to answer without a stored icon.
    pub fallback: Fallback,
    /// `?find=1`: look the domain up now if the cache would not answer it.
    pub lookup: bool,
    /// `?theme=`: the default icon or the site's dark-scheme variant.
    pub theme: Theme,
    /// `?sha=`: this exact stored version of the domain's icon (lowercase hex SHA-256).
    pub sha: Option<String>,
    /// `If-None-Match`, as sent.
    pub if_none_match: Option<String>,
}

/// Which variant of a domain's icon is asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Theme {
    /// The chosen icon (`theme=light`, or no theme).
    Default,
    /// The icon the site declares for `prefers-color-scheme: dark`, else the default one.
    Dark,
}

/// What to answer when a domain has no stored icon.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fallback {
    /// A generated SVG monogram (the default).
    Letter,
    /// A 404 with the error shape.
    NotFound,
}

/// Whether `If-None-Match` names `etag` (a list, `*`, or a weak form of it).
pub(super) fn etag_matches(if_none_match: &str, etag: &str) -> bool {
    if_none_match
        .split(',')
        .map(str::trim)
        .any(|t| t == "*" || t.strip_prefix("W/").unwrap_or(t) == etag)
}

/// Parses the query of `/icons/{domain}` and the path's domain; each bad value is a 400
/// naming it.
pub fn parse_request(
    raw_domain: &str,
    query: &[(String, String)],
    if_none_match: Option<String>,
) -> AppResult<IconRequest> {
    let domain = Domain::parse(raw_domain).map_err(|e| {
        AppError::bad_request(
            Code::InvalidInput,
            format!("{raw_domain:?} {e}; /icons/ takes a domain like example.com"),
        )
    })?;
    let mut request = IconRequest {
        domain,
        size: None,
        fallback: Fallback::Letter,
        lookup: false,
        theme: Theme::Default,
        sha: None,
        if_none_match,
    };
    let mut format = None;
    for (key, value) in query {
        match key.as_str() {
            "size" => {
                request.size = Some(
                    value
                        .parse::<u32>()
                        .ok()
                        .filter(|n| (1..=render::MAX_SIZE).contains(n))
                        .ok_or_else(|| {
                            AppError::bad_request(
                                Code::InvalidInput,
                                format!(
                                    "size must be a whole number from 1 to {}, got {value:?}",
                                    render::MAX_SIZE
                                ),
                            )
                        })?,
                )
            }
            "format" => format = Some(value.clone()),
            "fallback" => {
                request.fallback = match value.as_str() {
                    "letter" => Fallback::Letter,
                    "404" => Fallback::NotFound,
                    _ => {
                        return Err(AppError::bad_request(
                            Code::InvalidInput,
                            format!("fallback must be `letter` or `404`, got {value:?}"),
                        ));
                    }
                }
            }
            "find" => {
                request.lookup = match value.as_str() {
                    "1" | "true" => true,
                    "0" | "false" => false,
                    _ => {
                        return Err(AppError::bad_request(
                            Code::InvalidInput,
                            format!("find must be 1 or 0, got {value:?}"),
                        ));
                    }
                }
            }
            "theme" => {
                request.theme = match value.as_str() {
                    "dark" => Theme::Dark,
                    "light" | "default" => Theme::Default,
                    _ => {
                        return Err(AppError::bad_request(
                            Code::InvalidInput,
                            format!("theme must be `dark` or `light`, got {value:?}"),
                        ));
                    }
                }
            }
            "sha" => {
                if value.len() != 64
                    || !value
                        .bytes()
                        .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
                {
                    return Err(AppError::bad_request(
                        Code::InvalidInput,
                        format!("sha must be 64 lowercase hex digits (a SHA-256), got {value:?}"),
                    ));
                }
                request.sha = Some(value.clone());
            }
            // Unknown parameters (cache busters, trackers) are ignored, as image URLs get them.
            _ => {}
        }
    }
    match (format.as_deref(), request.size) {
        (None, _) | (Some("png"), Some(_)) => Ok(request),
        (Some("png"), None) => Err(AppError::bad_request(
            Code::InvalidInput,
            "format=png needs size=N (1 to 256); without a size the stored icon is served as it is",
        )),
        (Some(other), _) => Err(AppError::bad_request(
            Code::InvalidInput,
            format!("format must be png, got {other:?}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn query_parsing() {
        let r = parse_request("BÜCHER.de", &q(&[("size", "64"), ("format", "png")]), None).unwrap();
        assert_eq!(r.domain.as_str(), "xn--bcher-kva.de");
        assert_eq!(r.size, Some(64));
        for bad in [
            q(&[("size", "0")]),
            q(&[("size", "257")]),
            q(&[("size", "x")]),
            q(&[("size", "16"), ("format", "gif")]),
            q(&[("format", "png")]),
            q(&[("fallback", "none")]),
            q(&[("find", "yes")]),
            q(&[("theme", "blue")]),
            q(&[("sha", "abc")]),
            q(&[("sha", "A".repeat(64).as_str())]),
        ] {
            let err = parse_request("a.com", &bad, None).unwrap_err();
            assert_eq!(err.status(), 400, "{bad:?}");
        }
        assert!(parse_request("localhost", &[], None).is_err());
        let r = parse_request("a.com", &q(&[("fallback", "404"), ("find", "1")]), None).unwrap();
        assert_eq!((r.fallback, r.lookup), (Fallback::NotFound, true));
        let sha = "0a".repeat(32);
        let r = parse_request("a.com", &q(&[("theme", "dark"), ("sha", &sha)]), None).unwrap();
        assert_eq!(
            (r.theme, r.sha.as_deref()),
            (Theme::Dark, Some(sha.as_str()))
        );
    }

    #[test]
    fn etags() {
        assert!(etag_matches("\"a\"", "\"a\""));
        assert!(etag_matches("W/\"a\", \"b\"", "\"a\""));
        assert!(etag_matches("*", "\"a\""));
        assert!(!etag_matches("\"b\"", "\"a\""));
    }
}
