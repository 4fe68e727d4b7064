//! One domain, start to finish: home page (https→http, apex↔www), declarations, manifest,
//! default paths, verification in rank order, and the final classification.
//!
//! Error mapping for the home page status when no icon was found anywhere: 429 and every 5xx
//! become [`ErrorCategory::RateLimited`] (the server is overloaded, failing or asked us to slow
//! down, so a later try may work: it is transient, as the design wants for 5xx; the message
//! keeps the real status), every 4xx becomes [`ErrorCategory::HttpStatus`] (permanent). This
//! keeps the public category set and `is_transient` unchanged.
//!
//! Time: the page gets two thirds of what is left, each icon at most half of what is left
//! (but at least 1.5 s when that much remains), a manifest two fifths (at most 4 s), so one
//! slow resource cannot starve the rest; every request is also capped at 10 s.

use super::fetch::{FetchError, Fetcher, retry_after};
use super::html::{self, HeadParser};
use super::{Candidate, CandidateSource, ErrorCategory, FindError, FindOutcome, Found};
use super::{image, manifest, rank};
use base64::Engine as _;
use std::time::Duration;
use tokio::time::Instant;
use url::Url;

/// Decompressed bytes of HTML read at most.
pub const HTML_CAP: usize = 1024 * 1024;
/// Decompressed bytes of one icon read at most (a larger icon is rejected).
pub const ICON_CAP: usize = 1024 * 1024;
/// Decompressed bytes of a manifest read at most.
pub const MANIFEST_CAP: usize = 256 * 1024;
/// Redirects followed for the home page.
const PAGE_REDIRECTS: usize = 10;
/// Redirects followed for an icon or a manifest.
const ICON_REDIRECTS: usize = 5;
/// Icons fetched at most per domain.
const MAX_VERIFY: usize = 12;
/// Extra candidates of the winner's tier verified so real sizes can decide.
const EXTRA_SAME_TIER: usize = 3;
/// Manifests fetched at most.
const MAX_MANIFESTS: usize = 2;

/// The home page as fetched.
struct Page {
    url: Url,
    status: u16,
    retry_after: Option<u64>,
    extracted: Option<html::Extracted>,
}

fn remaining(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

/// The other host to try when one does not resolve or connect.
fn host_variants(domain: &str) -> Vec<String> {
    let alt = match domain.strip_prefix("www.") {
        Some(rest) if rest.contains('.') => rest.to_string(),
        Some(_) => return vec![domain.to_string()],
        None => format!("www.{domain}"),
    };
    vec![domain.to_string(), alt]
}

/// Fetches one page URL and streams its head through the parser.
async fn fetch_page(f: &Fetcher, url: Url, deadline: Instant) -> Result<Page, FetchError> {
    // The page gets two thirds of what is left so that default paths can still be tried.
    let budget = remaining(deadline) * 2 / 3;
    let mut opened = f
        .open(url.clone(), PAGE_REDIRECTS, false, budget, deadline)
        .await?;
    let s = opened.resp.status().as_u16();
    if s == 403 || s == 503 {
        // Bot walls often answer non-browser requests this way: one retry looking like one.
        let budget = remaining(deadline) * 2 / 3;
        if let Ok(again) = f.open(url, PAGE_REDIRECTS, true, budget, deadline).await {
            opened = again;
        }
    }
    let status = opened.resp.status().as_u16();
    let headers = opened.resp.headers().clone();
    let content_type = headers
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let mut page = Page {
        url: opened.url.clone(),
        status,
        retry_after: retry_after(&headers),
        extracted: None,
    };
    let htmlish = content_type.is_empty()
        || content_type.contains("html")
        || content_type.contains("xml")
        || content_type.starts_with("text/plain");
    if !(200..300).contains(&status) || !htmlish {
        return Ok(page);
    }
    let charset = content_type
        .split(';')
        .filter_map(|p| p.trim().strip_prefix("charset="))
        .map(|c| c.trim_matches(['"', '\'']).to_string())
        .next();
    let mut parser = HeadParser::new(charset.as_deref());
    // A body that fails or stalls midway still yields what was parsed so far.
    let _ = Fetcher::read_capped(&mut opened, HTML_CAP, |chunk| {
        parser.write(chunk);
        !parser.done()
    })
    .await;
    page.extracted = Some(parser.finish());
    Ok(page)
}

/// The home page over the https/http × domain/alternate matrix; `Err` carries the first
/// (most telling) failure.
async fn home_page(f: &Fetcher, domain: &str, deadline: Instant) -> Result<Page, FetchError> {
    let mut first: Option<FetchError> = None;
    'hosts: for host in host_variants(domain) {
        for scheme in ["https", "http"] {
            let Ok(url) = Url::parse(&format!("{scheme}://{host}/")) else {
                return Err(FetchError::new(
                    ErrorCategory::Dns,
                    format!("{host:?} is not a valid host name"),
                ));
            };
            match fetch_page(f, url, deadline).await {
                Ok(p) => return Ok(p),
                Err(e) => {
                    use ErrorCategory as C;
                    let cat = e.category;
                    if e.origin.is_some() {
                        // The host works; the failure is the site's own and says the most.
                        return Err(e);
                    }
                    first.get_or_insert(e);
                    if scheme == "https" && matches!(cat, C::Tls | C::Connect) {
                        continue;
                    }
                    if matches!(
                        cat,
                        C::Dns | C::DnsTransient | C::Connect | C::Tls | C::Blocked
                    ) {
                        continue 'hosts;
                    }
                    break 'hosts;
                }
            }
        }
    }
    Err(first.unwrap_or_else(|| FetchError::new(ErrorCategory::Internal, "no host tried")))
}

fn candidate(url: String, source: CandidateSource) -> Candidate {
    Candidate {
        url,
        source,
        declared_sizes: None,
        declared_type: None,
        in_body: false,
        mime: None,
        width: None,
        height: None,
        error: None,
    }
}

/// Decodes a `data:` URL (base64 or percent-encoded) without fetching anything.
pub(crate) fn decode_data_url(u: &str) -> Result<Vec<u8>, String> {
    let rest = &u[5..];
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

/// Fetches (or decodes) one candidate and records what it really is.
async fn verify(f: &Fetcher, c: &mut Candidate, deadline: Instant) {
    let bytes = if c.url.starts_with("data:") {
        decode_data_url(&c.url)
    } else {
        let mut bytes = fetch_icon(f, &c.url, deadline).await;
        // Case 22: an http icon that cannot be reached may well exist over https.
        if let (Err(e), Some(rest)) = (&bytes, c.url.strip_prefix("http://"))
            && (e.starts_with("connect") || e.starts_with("tls"))
        {
            let https = format!("https://{rest}");
            if let Ok(b) = fetch_icon(f, &https, deadline).await {
                c.url = https;
                bytes = Ok(b);
            }
        }
        bytes
    };
    match bytes.and_then(|b| image::sniff(&b)) {
        Ok(info) => {
            c.mime = Some(info.mime);
            c.width = Some(info.width);
            c.height = Some(info.height);
            c.error = None;
        }
        Err(e) => c.error = Some(e),
    }
}

async fn fetch_icon(f: &Fetcher, url: &str, deadline: Instant) -> Result<Vec<u8>, String> {
    let url = Url::parse(url).map_err(|e| e.to_string())?;
    let left = remaining(deadline);
    let budget = (left / 2).max(left.min(Duration::from_millis(1500)));
    let mut opened = f
        .open(url, ICON_REDIRECTS, false, budget, deadline)
        .await
        .map_err(|e| format!("{}: {}", e.category.as_str(), e.message))?;
    let status = opened.resp.status();
    if !status.is_success() {
        return Err(format!("HTTP {}", status.as_u16()));
    }
    let mut body = Vec::new();
    let over = Fetcher::read_capped(&mut opened, ICON_CAP, |c| {
        body.extend_from_slice(c);
        true
    })
    .await
    .map_err(|e| format!("{}: {}", e.category.as_str(), e.message))?;
    if over {
        return Err(format!("larger than the {ICON_CAP} byte cap"));
    }
    Ok(body)
}

async fn manifest_icons(f: &Fetcher, url: Url, deadline: Instant) -> Vec<Candidate> {
    // A manifest is optional: a short budget, and any failure just means no icons from it.
    let budget = (remaining(deadline) * 2 / 5).min(Duration::from_secs(4));
    let Ok(mut opened) = f
        .open(url.clone(), ICON_REDIRECTS, false, budget, deadline)
        .await
    else {
        return Vec::new();
    };
    if !opened.resp.status().is_success() {
        return Vec::new();
    }
    let mut body = Vec::new();
    match Fetcher::read_capped(&mut opened, MANIFEST_CAP, |c| {
        body.extend_from_slice(c);
        true
    })
    .await
    {
        Ok(false) => manifest::icons(&body, &opened.url),
        _ => Vec::new(),
    }
}

/// Runs the whole pipeline for one domain.
pub async fn find(f: &Fetcher, domain: &str, deadline: Instant) -> FindOutcome {
    let mut page = match home_page(f, domain, deadline).await {
        Ok(p) => Ok(p),
        Err(e) if e.origin.is_some() => Err(e),
        Err(e) => {
            return Err(FindError::new(e.category, e.message));
        }
    };

    // Meta refresh is followed once, only when the page itself declared nothing.
    if let Ok(p) = &page
        && let Some(ex) = &p.extracted
        && ex.links.is_empty()
        && ex.manifests.is_empty()
        && ex.tiles.is_empty()
        && let Some(target) = ex.refresh.as_deref().and_then(html::refresh_target)
        && let Some(next) = html::resolve_href(&p.url, &target)
        && let Ok(next) = Url::parse(&next)
        && next != p.url
        && let Ok(p2) = fetch_page(f, next, deadline).await
        && (200..300).contains(&p2.status)
    {
        page = Ok(p2);
    }

    let (origin, final_url) = match &page {
        Ok(p) => (p.url.clone(), Some(p.url.to_string())),
        Err(e) => match e.origin.clone() {
            Some(o) => (o, None),
            None => return Err(FindError::new(e.category, e.message.clone())),
        },
    };

    let mut cands = Vec::new();
    if let Ok(Page {
        url,
        extracted: Some(ex),
        ..
    }) = &page
    {
        let (declared, manifests) = html::candidates(ex, url);
        cands.extend(declared);
        for m in manifests.into_iter().take(MAX_MANIFESTS) {
            cands.extend(manifest_icons(f, m, deadline).await);
        }
    }
    let declared_any = !cands.is_empty();
    let mut defaults = vec!["/favicon.ico"];
    if !declared_any {
        defaults.extend(["/apple-touch-icon.png", "/apple-touch-icon-precomposed.png"]);
    }
    for path in defaults {
        if let Ok(u) = origin.join(path) {
            cands.push(candidate(u.into(), CandidateSource::DefaultPath));
        }
    }

    let mut ranked = rank::rank(cands);
    let mut seen = std::collections::HashSet::new();
    ranked.retain(|c| seen.insert(c.url.clone()));

    let mut fetched = 0;
    let mut winner_tier: Option<u8> = None;
    let mut extra = 0;
    let mut timed_out = false;
    for c in ranked.iter_mut() {
        if c.source == CandidateSource::MaskIcon {
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
        if remaining(deadline).is_zero() {
            timed_out = true;
            break;
        }
        verify(f, c, deadline).await;
        fetched += 1;
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

    if let Some(i) = rank::pick(&ranked) {
        let c = &ranked[i];
        return Ok(Found {
            favicon_url: c.url.clone(),
            final_url,
            mime: c.mime.clone().unwrap_or_default(),
            width: c.width.unwrap_or(0),
            height: c.height.unwrap_or(0),
            candidates: ranked,
        });
    }

    let mut err = match &page {
        Err(e) => FindError::new(e.category, e.message.clone()),
        Ok(p) if p.status >= 400 => {
            let cat = if p.status == 429 || p.status >= 500 {
                ErrorCategory::RateLimited
            } else {
                ErrorCategory::HttpStatus
            };
            let mut e = FindError::new(cat, format!("home page answered HTTP {}", p.status));
            e.retry_after_secs = p.retry_after;
            e
        }
        Ok(_) if timed_out || remaining(deadline).is_zero() => FindError::new(
            ErrorCategory::Timeout,
            "deadline passed before an icon was verified",
        ),
        Ok(_) => FindError::new(
            ErrorCategory::NoIcon,
            format!("no candidate was a real image ({fetched} tried)"),
        ),
    };
    err.final_url = final_url;
    err.candidates = ranked;
    Err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn www_variants() {
        assert_eq!(host_variants("x.test"), ["x.test", "www.x.test"]);
        assert_eq!(host_variants("www.x.test"), ["www.x.test", "x.test"]);
        assert_eq!(host_variants("www.test"), ["www.test"]);
    }

    #[test]
    fn data_urls() {
        // Cases 27, 28.
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
