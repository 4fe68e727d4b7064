//! One domain, start to finish: home page (https→http, apex↔www), declarations, manifest,
//! default paths, verification in rank order, and the final classification.
//!
//! Error mapping for the home page status when no icon was found anywhere: 429 and every 5xx
//! become [`ErrorCategory::RateLimited`] (the server is overloaded, failing or asked us to slow
//! down, so a later try may work: it is transient, as the design wants for 5xx; the message
//! keeps the real status), every 4xx becomes [`ErrorCategory::HttpStatus`] (permanent). This
//! keeps the public category set and `is_transient` unchanged.
//!
//! `no_icon` means every candidate answered and none was an icon (a 404 or 410, a non-image,
//! a broken image). A candidate, manifest or `<meta refresh>` target that did not answer (a timeout, a refused or reset
//! connection, a 429 or 5xx) makes the failure transient instead, in that fetch's category
//! (`timeout`, `connect`, `rate_limited`): it is retried with backoff, and the cross-job cache
//! never reuses it. A home page that answered 429/5xx keeps `rate_limited` with its
//! `Retry-After`; a bot wall or a 403 stays `http_status`.
//!
//! Bot walls: a 403 or 503 home page is asked again once with browser-like headers.
//! If the answer is still an error and looks like a challenge page ("Just a moment...",
//! `cf-mitigated: challenge`, ...), the failure is `http_status` (permanent: the same client
//! will meet the same wall) with a message starting "bot wall:", even for a 503; a plain 403
//! that survives the retry is `http_status` too. `blocked` stays reserved for the SSRF guard,
//! so that code always means "we refused to connect". The site's `/favicon.ico` is still tried.
//!
//! SSRF refusals past the home page: an icon or manifest URL the guard refuses is recorded on
//! the candidate (a `blocked` fetch error); when nothing verified and something was refused, the
//! failure is `blocked` rather than `no_icon`, so the refusal is visible in the result.
//!
//! Time is the site's own (see `clock`): waiting for one of our politeness slots is not
//! charged to the deadline or to a request's budget. The page gets two thirds of what is left,
//! each icon at most half of what is left (but at least 1.5 s when that much remains), a
//! manifest or `browserconfig.xml` two fifths (at most 4 s), so one
//! slow resource cannot starve the rest; every request is also capped at 10 s.
//!
//! The fallback always gets its turn: declared candidates are verified at most
//! [`MAX_DECLARED_VERIFY`] per domain and only until a reserve before the deadline (a third of
//! what is left when verification starts, at most [`DEFAULT_RESERVE_MAX`]), so however many
//! declared icons fail or stall, `/favicon.ico` and the other default paths are still fetched.
//! At most [`MAX_CANDIDATES`] candidates are kept in the outcome: every one that was fetched,
//! the default paths, then the best-ranked of the rest; the others are counted in
//! `candidates_dropped`, with those the page declared past the parsing caps.

use super::clock::Deadline;
use super::fetch::Fetcher;
use super::html;
use super::page::{Page, fetch_page, home_page};
use super::{Candidate, CandidateSource, ErrorCategory, FindError, FindOutcome, Found};
use super::{links, rank};
use crate::clean::MAX_CANDIDATES;
use base64::Engine as _;
use std::time::Duration;
use url::Url;

mod resources;
use resources::{browserconfig_tiles, manifest_icons, verify};

/// Decompressed bytes of one icon read at most (a larger icon is rejected).
pub const ICON_CAP: usize = 1024 * 1024;
/// Decompressed bytes of a manifest read at most.
pub const MANIFEST_CAP: usize = 256 * 1024;
/// Decompressed bytes of a `browserconfig.xml` read at most (a real one is under 1 KiB).
pub const BROWSERCONFIG_CAP: usize = 64 * 1024;
/// Redirects followed for an icon or a manifest.
const ICON_REDIRECTS: usize = 5;
/// Icons fetched at most per domain (declared, default paths and `<noscript>` together).
const MAX_VERIFY: usize = 12;
/// Declared icons (links, tiles, manifest entries) fetched at most per domain, so that the
/// default paths always have fetches left.
const MAX_DECLARED_VERIFY: usize = 8;
/// The most time held back from declared icons for the default paths.
const DEFAULT_RESERVE_MAX: Duration = Duration::from_secs(5);
/// Extra candidates of the winner's tier verified so real sizes can decide.
const EXTRA_SAME_TIER: usize = 3;
/// Manifests fetched at most.
const MAX_MANIFESTS: usize = 2;

/// Site time left until `deadline`, zero once it has passed.
pub(super) fn remaining(deadline: &Deadline) -> Duration {
    deadline.remaining()
}

/// Decodes a `data:` URL (base64 or percent-encoded) without fetching anything.
pub(crate) fn decode_data_url(u: &str) -> Result<Vec<u8>, String> {
    let rest = crate::clean::data_url_body(u).ok_or("not a data: URL")?;
    let (meta, data) = rest.split_once(',').ok_or("data: URL without a comma")?;
    if meta.to_ascii_lowercase().ends_with(";base64") {
        let clean: String = percent_encoding::percent_decode_str(data)
            .decode_utf8_lossy()
            .chars()
            .filter(|c| !c.is_ascii_whitespace())
            .collect();
        let engine = base64::engine::GeneralPurpose::new(
            &base64::alphabet::STANDARD,
            base64::engine::GeneralPurposeConfig::new()
                .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
        );
        engine
            .decode(clean.trim_end_matches('=').as_bytes())
            .map_err(|e| format!("bad base64 in data: URL: {e}"))
    } else {
        Ok(percent_encoding::percent_decode_str(data).collect())
    }
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

/// Runs the whole pipeline for one domain; the chosen icon's bytes come along when they are
/// at most `keep` bytes.
pub async fn find(f: &Fetcher, domain: &str, deadline: &Deadline, keep: usize) -> FindOutcome {
    let mut page = match home_page(f, domain, deadline).await {
        Ok(p) => Ok(p),
        Err(e) if e.origin.is_some() => Err(e),
        Err(e) => {
            return Err(FindError::new(e.category, e.message));
        }
    };

    // A fetch besides the candidates (the `<meta refresh>` target, a manifest) that did not
    // answer: the icons it would have named are unknown, not absent.
    let mut unanswered_fetch: Option<(ErrorCategory, String)> = None;
    // Meta refresh is followed once, only when the page itself declared nothing.
    if let Ok(p) = &page
        && let Some(ex) = &p.extracted
        && ex.links.is_empty()
        && ex.manifests.is_empty()
        && ex.tiles.is_empty()
        && let Some(target) = ex.refresh.as_deref().and_then(links::refresh_target)
        && let Some(next) = links::resolve_href(&p.url, &target)
        && let Ok(next) = Url::parse(&next)
        && next != p.url
    {
        match fetch_page(f, next, deadline).await {
            Ok(p2) if (200..300).contains(&p2.status) => page = Ok(p2),
            Err(e) if e.category.is_transient() => unanswered_fetch = Some((e.category, e.message)),
            _ => {}
        }
    }

    let (origin, final_url) = match &page {
        Ok(p) => (p.url.clone(), Some(p.url.to_string())),
        Err(e) => match e.origin.clone() {
            Some(o) => (o, None),
            None => return Err(FindError::new(e.category, e.message.clone())),
        },
    };

    let mut cands = Vec::new();
    let mut last_resort = Vec::new();
    let mut file_refused: Option<String> = None;
    let mut dropped: u32 = 0;
    let mut parse_error: Option<String> = None;
    // `/browserconfig.xml`, asked for as IE and Edge did when a page named none, but only as a
    // last resort: its tiles are often white on transparent, and `/favicon.ico` is better.
    let mut default_browserconfig = None;
    if let Ok(Page {
        url,
        extracted: Some(ex),
        ..
    }) = &page
    {
        let declared = links::candidates(ex, url);
        dropped = declared.dropped;
        parse_error.clone_from(&ex.parse_error);
        cands.extend(declared.candidates);
        last_resort = rank::rank(links::noscript_candidates(ex, url));
        let named_config = declared.browserconfig.is_some();
        let files = declared
            .manifests
            .into_iter()
            .take(MAX_MANIFESTS)
            .map(|m| (m, false))
            .chain(declared.browserconfig.map(|b| (b, true)));
        for (file, is_config) in files {
            let icons = if is_config {
                browserconfig_tiles(f, file, deadline).await
            } else {
                manifest_icons(f, file, deadline).await
            };
            match icons {
                Ok((icons, n)) => {
                    cands.extend(icons);
                    dropped = dropped.saturating_add(n);
                }
                Err(e) if e.category == ErrorCategory::Blocked => {
                    file_refused = Some(e.message);
                }
                Err(e) => {
                    unanswered_fetch.get_or_insert((e.category, e.message));
                }
            }
        }
        if cands.is_empty() && !named_config && !declared.browserconfig_off {
            default_browserconfig = url.join("/browserconfig.xml").ok();
        }
    }
    let declared_any = !cands.is_empty();
    let mut defaults = vec!["/favicon.ico"];
    if !declared_any {
        defaults.extend(["/apple-touch-icon.png", "/apple-touch-icon-precomposed.png"]);
    }
    for path in defaults {
        if let Ok(u) = origin.join(path) {
            cands.push(Candidate::new(u.as_str(), CandidateSource::DefaultPath));
        }
    }

    let mut ranked = rank::rank(cands);
    let mut seen = std::collections::HashSet::new();
    ranked.retain(|c| seen.insert(c.url.clone()));

    // Declared icons stop short of the deadline so the default paths keep time of their own.
    let reserve = (remaining(deadline) / 3).min(DEFAULT_RESERVE_MAX);
    let declared_deadline = deadline.less(reserve);
    let mut tried = std::collections::HashSet::new();
    let mut kept: std::collections::HashMap<String, Vec<u8>> = std::collections::HashMap::new();
    let mut fetched = 0;
    let mut declared_fetched = 0;
    let mut winner_tier: Option<u8> = None;
    let mut extra = 0;
    let mut timed_out = false;
    for c in ranked.iter_mut() {
        // A mask icon is never picked; a candidate that already carries its rejection (an
        // inline icon over the cap) is shown, never fetched.
        if c.source == CandidateSource::MaskIcon || c.error.is_some() {
            continue;
        }
        if let Some(t) = winner_tier {
            if rank::tier(c) != t || extra >= EXTRA_SAME_TIER {
                break;
            }
            extra += 1;
        }
        if fetched >= MAX_VERIFY {
            break;
        }
        let is_default = c.source == CandidateSource::DefaultPath;
        let until = if is_default {
            deadline
        } else {
            &declared_deadline
        };
        if !is_default && declared_fetched >= MAX_DECLARED_VERIFY {
            // Skipped, not stopped: the default paths further down still get their turn.
            continue;
        }
        if !is_default && remaining(until).is_zero() {
            timed_out = true;
            continue;
        }
        if remaining(until).is_zero() {
            timed_out = true;
            break;
        }
        if let Some(b) = verify(f, c, until).await.filter(|b| b.len() <= keep) {
            // At most MAX_VERIFY icons of at most `keep` bytes each are held until the pick.
            kept.insert(c.url.clone(), b);
        }
        tried.insert(c.url.clone());
        fetched += 1;
        if !is_default {
            declared_fetched += 1;
        }
        // A non-square image is a last resort: keep looking for a square one.
        let square = match (c.width, c.height) {
            (Some(w), Some(h)) if w > 0 && h > 0 => {
                (0.9..=1.1).contains(&(f64::from(w) / f64::from(h)))
            }
            _ => true,
        };
        if winner_tier.is_none() && rank::is_verified(c) && square {
            winner_tier = Some(rank::tier(c));
        }
    }
    // `<noscript>` icons only when nothing else, `/favicon.ico` included, verified: browsers
    // that run scripts ignore them. Then the default `browserconfig.xml`'s tiles.
    for resort in 0..2 {
        if rank::pick(&ranked).is_some() {
            break;
        }
        let list = if resort == 0 {
            std::mem::take(&mut last_resort)
        } else {
            match default_browserconfig.take() {
                Some(u) if fetched < MAX_VERIFY && !remaining(deadline).is_zero() => {
                    let (tiles, n) = browserconfig_tiles(f, u, deadline)
                        .await
                        .unwrap_or_default();
                    dropped = dropped.saturating_add(n);
                    rank::rank(tiles)
                }
                _ => Vec::new(),
            }
        };
        for mut c in list {
            if !seen.insert(c.url.clone()) {
                continue;
            }
            if fetched < MAX_VERIFY && !remaining(deadline).is_zero() {
                if let Some(b) = verify(f, &mut c, deadline)
                    .await
                    .filter(|b| b.len() <= keep)
                {
                    kept.insert(c.url.clone(), b);
                }
                tried.insert(c.url.clone());
                fetched += 1;
            }
            let done = rank::is_verified(&c);
            ranked.push(c);
            if done {
                break;
            }
        }
    }

    let (ranked, over) = keep_candidates(ranked, &tried);
    let candidates_dropped = dropped.saturating_add(over);

    if let Some(i) = rank::pick(&ranked) {
        let c = &ranked[i];
        return Ok(Found {
            favicon_url: c.url.clone(),
            final_url,
            mime: c.mime.clone().unwrap_or_default(),
            width: c.width.unwrap_or(0),
            height: c.height.unwrap_or(0),
            icon: kept.remove(&c.url).map(super::IconBytes::new),
            candidates: ranked,
            candidates_dropped,
        });
    }

    // A candidate, a manifest or a refresh target that did not answer leaves the question open: a later try may
    // find the icon there, so the failure is transient and never `no_icon`.
    let unanswered = unanswered(&ranked)
        .map(|(category, what)| (category, what.to_owned()))
        .or(unanswered_fetch);
    let mut err = match &page {
        Err(e) => FindError::new(e.category, e.message.clone()),
        Ok(p) if p.status >= 400 && p.challenge => FindError::new(
            ErrorCategory::HttpStatus,
            format!(
                "bot wall: home page answered HTTP {} with a challenge page, also to a browser-like retry",
                p.status
            ),
        ),
        Ok(p) if p.status == 403 => FindError::new(
            ErrorCategory::HttpStatus,
            "home page answered HTTP 403, also to a browser-like retry (bot wall?)",
        ),
        Ok(p) if p.status == 429 || p.status >= 500 => {
            let mut e = FindError::new(
                ErrorCategory::RateLimited,
                format!("home page answered HTTP {}", p.status),
            );
            e.retry_after_secs = p.retry_after;
            e
        }
        Ok(_) if let Some((category, what)) = &unanswered => FindError::new(
            *category,
            format!("no icon verified; a candidate did not answer ({what})"),
        ),
        Ok(p) if p.status >= 400 => FindError::new(
            ErrorCategory::HttpStatus,
            format!("home page answered HTTP {}", p.status),
        ),
        Ok(_) if file_refused.is_some() || ranked.iter().any(refused) => {
            let what = ranked
                .iter()
                .find(|c| refused(c))
                .and_then(|c| c.error.as_ref().map(ToString::to_string))
                .or(file_refused)
                .unwrap_or_default();
            FindError::new(
                ErrorCategory::Blocked,
                format!("no usable icon; refused a non-public target ({what})"),
            )
        }
        Ok(_) if timed_out || remaining(deadline).is_zero() => FindError::new(
            ErrorCategory::Timeout,
            "deadline passed before an icon was verified",
        ),
        // A page the client could not read to its end is not an empty page: its own failure
        // (undecodable: `invalid_content`; too slow: `timeout`) says why nothing was found.
        Ok(Page {
            read_error: Some(e),
            ..
        }) => FindError::new(
            e.category,
            format!(
                "no usable icon; the home page could not be read ({})",
                e.message
            ),
        ),
        // The page's markup broke the parser's memory limit before anything usable was found:
        // the page, not the network, is why there is no icon.
        Ok(_) if parse_error.is_some() => FindError::new(
            ErrorCategory::InvalidContent,
            format!(
                "no usable icon; the home page could not be parsed within the {}-byte parser memory limit ({})",
                html::PARSER_MEMORY,
                parse_error.as_deref().unwrap_or_default()
            ),
        ),
        Ok(_) => FindError::new(
            ErrorCategory::NoIcon,
            format!("no candidate was a real image ({fetched} tried)"),
        ),
    };
    err.final_url = final_url;
    err.candidates = ranked;
    err.candidates_dropped = candidates_dropped;
    Err(err)
}

/// Keeps at most [`MAX_CANDIDATES`] of the ranked candidates, in rank order: first every one
/// that was fetched (the evidence for the outcome; at most `MAX_VERIFY`) and the default
/// paths, then the best-ranked of the rest. Returns them with how many were left out.
fn keep_candidates(
    ranked: Vec<Candidate>,
    tried: &std::collections::HashSet<String>,
) -> (Vec<Candidate>, u32) {
    if ranked.len() <= MAX_CANDIDATES {
        return (ranked, 0);
    }
    let evidence =
        |c: &Candidate| tried.contains(&c.url) || c.source == CandidateSource::DefaultPath;
    let mut keep: Vec<bool> = ranked.iter().map(evidence).collect();
    let mut room = MAX_CANDIDATES.saturating_sub(keep.iter().filter(|k| **k).count());
    for k in keep.iter_mut() {
        if room == 0 {
            break;
        }
        if !*k {
            *k = true;
            room -= 1;
        }
    }
    let total = ranked.len();
    let kept: Vec<Candidate> = ranked
        .into_iter()
        .zip(keep)
        .filter_map(|(c, k)| k.then_some(c))
        .take(MAX_CANDIDATES)
        .collect();
    let over = u32::try_from(total - kept.len()).unwrap_or(u32::MAX);
    (kept, over)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::finder::image;

    #[test]
    fn data_urls() {
        // Base64 and percent-encoded (or raw utf8) `data:` URLs both decode; broken base64 is
        // an error, not an empty image.
        let png = crate::finder::image::tests::png_bytes(16, 16);
        let b64 = base64::engine::general_purpose::STANDARD.encode(&png);
        let u = format!("data:image/png;base64,{b64}");
        assert_eq!(decode_data_url(&u).unwrap(), png);
        let svg = "data:image/svg+xml,%3Csvg%20xmlns='http://www.w3.org/2000/svg'%20viewBox='0%200%2016%2016'%3E%3C/svg%3E";
        let info = image::sniff(&decode_data_url(svg).unwrap()).unwrap();
        assert_eq!((info.mime.as_str(), info.width), ("image/svg+xml", 16));
        let utf8 = "data:image/svg+xml;utf8,<svg width='32' height='32'></svg>";
        assert_eq!(
            image::sniff(&decode_data_url(utf8).unwrap()).unwrap().width,
            32
        );
        assert!(decode_data_url("data:image/png;base64,!!!").is_err());
    }
}
