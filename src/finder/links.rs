//! From what a page declared to candidates: hrefs resolved the way a browser resolves them
//! (against `<base href>`, `data:` kept, anything but http(s) dropped), the length caps applied
//! to what would be stored, and the `<meta refresh>` target read.

use super::html::{Extracted, RawLink};
use super::{Candidate, CandidateError, CandidateSource};
use crate::clean::{MAX_DATA_URL_BYTES, MAX_URL_BYTES, data_url_body, is_data_url};
use url::Url;

/// Why an href gave no candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// Empty, `#…`, unparsable, or a scheme other than http(s) and `data:`: not an icon URL.
    Unusable,
    /// Usable, but its resolved URL is longer than [`MAX_URL_BYTES`] (or the `<base>` it needs
    /// was): dropped, and counted.
    TooLong,
}

/// Resolves an href the way a browser would, keeping only http(s) (fragment dropped) and
/// `data:` URLs; `base` is `None` when the page's `<base href>` was too long to use, so only
/// absolute hrefs resolve.
pub fn resolve(base: Option<&Url>, href: &str) -> Result<String, Skip> {
    // The URL parser strips C0 controls and spaces at both ends and tabs/newlines inside.
    let href = href.trim_matches(|c: char| c <= ' ');
    if href.is_empty() || href.starts_with('#') {
        return Err(Skip::Unusable);
    }
    if let Some(body) = data_url_body(href) {
        if href.len() > MAX_DATA_URL_BYTES {
            return Err(Skip::TooLong);
        }
        return Ok(data_url(body));
    }
    if href.len() > MAX_URL_BYTES {
        return Err(Skip::TooLong);
    }
    let parsed = match base {
        Some(b) => b.join(href),
        None => Url::parse(href),
    };
    let mut url = match parsed {
        Ok(u) => u,
        Err(url::ParseError::RelativeUrlWithoutBase) => return Err(Skip::TooLong),
        Err(_) => return Err(Skip::Unusable),
    };
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return Err(Skip::Unusable);
    }
    url.set_fragment(None);
    let url: String = url.into();
    // Percent-encoding can grow a URL up to threefold: the cap is on what would be stored.
    if url.len() > MAX_URL_BYTES {
        return Err(Skip::TooLong);
    }
    Ok(url)
}

/// [`resolve`] against a known base, when why it failed does not matter.
pub fn resolve_href(base: &Url, href: &str) -> Option<String> {
    resolve(Some(base), href).ok()
}

/// A `data:` URL as stored, from what follows its scheme: the scheme lower-cased, tabs and
/// newlines removed and other control characters percent-encoded (as the URL parser does), so
/// that storage, which drops control characters, cannot change what the URL says.
fn data_url(body: &str) -> String {
    let mut out = String::with_capacity(body.len() + 5);
    out.push_str("data:");
    for ch in body.chars() {
        match ch {
            '\t' | '\n' | '\r' => {}
            c if c.is_ascii_control() => out.push_str(&format!("%{:02X}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// The base URL for hrefs: the first `<base href>` resolved against the page, else the page;
/// `None` when that `<base href>` was over the length cap.
pub fn base_url(ex: &Extracted, page: &Url) -> Option<Url> {
    if ex.base_too_long {
        return None;
    }
    Some(
        ex.base
            .as_deref()
            .map(|b| b.trim_matches(|c: char| c.is_ascii_whitespace()))
            .filter(|b| !b.is_empty())
            .and_then(|b| page.join(b).ok())
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .unwrap_or_else(|| page.clone()),
    )
}

/// What a page declared, resolved.
#[derive(Debug, Default)]
pub struct Declared {
    /// Icon links and tiles as candidates, in declaration order.
    pub candidates: Vec<Candidate>,
    /// Manifest URLs to fetch, in declaration order.
    pub manifests: Vec<Url>,
    /// The `browserconfig.xml` the page named, to fetch for its tiles.
    pub browserconfig: Option<Url>,
    /// The page said it has no `browserconfig.xml` (`content="none"`), so the default one is
    /// not asked for either.
    pub browserconfig_off: bool,
    /// Declarations dropped for a cap, here and during extraction.
    pub dropped: u32,
}

/// Turns the page's declarations into candidates (declaration order) and manifest URLs.
pub fn candidates(ex: &Extracted, page: &Url) -> Declared {
    let base = base_url(ex, page);
    let mut out = Declared {
        dropped: ex.dropped,
        ..Declared::default()
    };
    let mut count = |r: Result<String, Skip>| match r {
        Ok(u) => Some(u),
        Err(Skip::TooLong) => {
            out.dropped = out.dropped.saturating_add(1);
            None
        }
        Err(Skip::Unusable) => None,
    };
    let mut cands: Vec<Candidate> = ex
        .links
        .iter()
        .filter_map(|l| link_candidate(base.as_ref(), l, l.in_body, &mut count))
        .collect();
    for t in &ex.tiles {
        if let Some(url) = count(resolve(base.as_ref(), t)) {
            cands.push(Candidate::new(url, CandidateSource::Tile));
        }
    }
    let manifests = ex
        .manifests
        .iter()
        .filter_map(|m| count(resolve(base.as_ref(), m)))
        .filter(|m| !is_data_url(m))
        .filter_map(|m| Url::parse(&m).ok())
        .collect();
    let config = ex.browserconfig.as_deref().map(str::trim);
    out.browserconfig_off = config.is_some_and(|c| c.eq_ignore_ascii_case("none"));
    out.browserconfig = config
        .filter(|_| !out.browserconfig_off)
        .and_then(|c| count(resolve(base.as_ref(), c)))
        .filter(|c| !is_data_url(c))
        .and_then(|c| Url::parse(&c).ok());
    out.candidates = cands;
    out.manifests = manifests;
    out
}

/// The `<noscript>` icon links as candidates (marked `in_body`), resolved like the others: the
/// finder tries them only when no other candidate verified.
pub fn noscript_candidates(ex: &Extracted, page: &Url) -> Vec<Candidate> {
    let base = base_url(ex, page);
    ex.noscript_links
        .iter()
        .filter(|l| l.source != CandidateSource::MaskIcon)
        .filter_map(|l| link_candidate(base.as_ref(), l, true, &mut |r| r.ok()))
        .collect()
}

/// A `<link>` as a candidate, with what it declared; `None` when its href is unusable. An
/// over-long `data:` icon becomes a candidate that already carries its rejection.
fn link_candidate(
    base: Option<&Url>,
    l: &RawLink,
    in_body: bool,
    count: &mut impl FnMut(Result<String, Skip>) -> Option<String>,
) -> Option<Candidate> {
    let (url, error) = match l.oversized {
        Some(n) => (
            l.href.clone(),
            Some(CandidateError::rejected(format!(
                "data: URL of {n} bytes is over the {MAX_DATA_URL_BYTES}-byte cap for inline icons; not used"
            ))),
        ),
        None => (count(resolve(base, &l.href))?, None),
    };
    Some(Candidate {
        declared_sizes: l.sizes.clone(),
        declared_type: l.type_.clone(),
        media: l.media.clone(),
        in_body,
        error,
        ..Candidate::new(url, l.source)
    })
}

/// The target of a `<meta http-equiv=refresh>` content (`0; URL='/en/'`, `5;url=x`, `0;/x`).
pub fn refresh_target(content: &str) -> Option<String> {
    let (_, rest) = content.split_once([';', ','])?;
    let rest = rest.trim_start();
    let rest = match rest.get(..3) {
        Some(p) if p.eq_ignore_ascii_case("url") => {
            let after = rest[3..].trim_start();
            after.strip_prefix('=').map_or(rest, str::trim_start)
        }
        _ => rest,
    };
    let rest = rest.trim();
    let unquoted = match rest.chars().next() {
        Some(q @ ('"' | '\'')) => rest[1..].split(q).next().unwrap_or(""),
        _ => rest,
    };
    let t = unquoted.trim();
    (!t.is_empty()).then(|| t.to_string())
}
