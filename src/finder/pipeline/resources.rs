//! What a page points at, fetched within the domain's time: each icon candidate verified by
//! its bytes, and the optional files that list more icons (a manifest, `browserconfig.xml`).

use super::{BROWSERCONFIG_CAP, ICON_CAP, ICON_REDIRECTS, MANIFEST_CAP, decode_data_url};
use crate::clean::{self, MAX_MESSAGE_BYTES};
use crate::finder::clock::Deadline;
use crate::finder::fetch::{FetchError, Fetcher};
use crate::finder::{Candidate, CandidateError, ErrorCategory};
use crate::finder::{browserconfig, image, manifest};
use std::time::Duration;
use url::Url;

/// Fetches (or decodes) one candidate and records what it really is; returns its bytes when
/// it is an image, so the chosen one can be kept. Runs in a span of its own (the requests it
/// makes are its children).
pub(super) async fn verify(f: &Fetcher, c: &mut Candidate, deadline: &Deadline) -> Option<Vec<u8>> {
    let span = tracing::debug_span!("icon.verify", icon.accepted = tracing::field::Empty);
    let bytes = tracing::Instrument::instrument(verify_in(f, c, deadline), span.clone()).await;
    span.record("icon.accepted", bytes.is_some());
    bytes
}

/// [`verify`]'s work.
async fn verify_in(f: &Fetcher, c: &mut Candidate, deadline: &Deadline) -> Option<Vec<u8>> {
    let bytes = if crate::clean::is_data_url(&c.url) {
        decode_data_url(&c.url).map_err(CandidateError::rejected)
    } else {
        let mut bytes = fetch_icon(f, &c.url, deadline).await;
        // An http icon that cannot be reached may well exist over https.
        if let (Err(e), Some(rest)) = (&bytes, c.url.strip_prefix("http://"))
            && matches!(
                e.category(),
                Some(ErrorCategory::Connect | ErrorCategory::Tls)
            )
        {
            let https = format!("https://{rest}");
            if let Ok(b) = fetch_icon(f, &https, deadline).await {
                c.url = https;
                bytes = Ok(b);
            }
        }
        bytes
    };
    match bytes.and_then(|b| {
        image::sniff(&b)
            .map(|info| (info, b))
            .map_err(CandidateError::rejected)
    }) {
        Ok((info, b)) => {
            c.mime = Some(info.mime);
            c.width = Some(info.width);
            c.height = Some(info.height);
            c.error = None;
            Some(b)
        }
        Err(e) => {
            c.error = Some(e.map_text(|s| clean::text(s, MAX_MESSAGE_BYTES)));
            None
        }
    }
}

async fn fetch_icon(
    f: &Fetcher,
    url: &str,
    deadline: &Deadline,
) -> Result<Vec<u8>, CandidateError> {
    let url = Url::parse(url).map_err(|e| CandidateError::rejected(e.to_string()))?;
    let left = deadline.remaining();
    let budget = (left / 2).max(left.min(Duration::from_millis(1500)));
    let mut opened = f
        .open(url, ICON_REDIRECTS, false, budget, deadline)
        .await
        .map_err(|e| CandidateError::fetch(e.category, &e.message))?;
    let status = opened.resp.status();
    if status == reqwest::StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        // The server did not say whether this is an icon, only "not now": a later try may
        // well get the image, so this counts like a fetch that failed, not a rejection.
        return Err(CandidateError::fetch(
            ErrorCategory::RateLimited,
            &format!("HTTP {}", status.as_u16()),
        ));
    }
    if !status.is_success() {
        return Err(CandidateError::rejected(format!(
            "HTTP {}",
            status.as_u16()
        )));
    }
    let mut body = Vec::new();
    let over = Fetcher::read_capped(&mut opened, ICON_CAP, |c| {
        body.extend_from_slice(c);
        true
    })
    .await
    .map_err(|e| CandidateError::fetch(e.category, &e.message))?;
    if over {
        return Err(CandidateError::rejected(format!(
            "larger than the {ICON_CAP} byte cap"
        )));
    }
    Ok(body)
}

/// A file the page points at for more icons (a manifest, a `browserconfig.xml`), read up to
/// `cap`, with the URL that answered. `Ok(None)` when it is not there or not readable (such a
/// file is optional); `Err` when the SSRF guard refused to fetch it or it did not answer (a
/// timeout, a connection failure, a 429 or 5xx): its icons are then unknown, not absent.
async fn optional_file(
    f: &Fetcher,
    url: Url,
    cap: usize,
    deadline: &Deadline,
) -> Result<Option<(Vec<u8>, Url)>, FetchError> {
    // Optional, so a short budget: it must not starve the icons.
    let budget = (deadline.remaining() * 2 / 5).min(Duration::from_secs(4));
    let mut opened = match f
        .open(url.clone(), ICON_REDIRECTS, false, budget, deadline)
        .await
    {
        Ok(o) => o,
        Err(e) if e.category == ErrorCategory::Blocked || e.category.is_transient() => {
            return Err(e);
        }
        Err(_) => return Ok(None),
    };
    let status = opened.resp.status();
    if status == reqwest::StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        return Err(FetchError::new(
            ErrorCategory::RateLimited,
            format!("{url} answered HTTP {}", status.as_u16()),
        ));
    }
    if !status.is_success() {
        return Ok(None);
    }
    let mut body = Vec::new();
    let read = Fetcher::read_capped(&mut opened, cap, |c| {
        body.extend_from_slice(c);
        true
    })
    .await;
    Ok(matches!(read, Ok(false)).then(|| (body, opened.url)))
}

/// A manifest's icons and how many were dropped for a cap; `Err` as [`optional_file`].
pub(super) async fn manifest_icons(
    f: &Fetcher,
    url: Url,
    deadline: &Deadline,
) -> Result<(Vec<Candidate>, u32), FetchError> {
    Ok(optional_file(f, url, MANIFEST_CAP, deadline)
        .await?
        .map(|(body, url)| manifest::icons(&body, &url))
        .unwrap_or_default())
}

/// A `browserconfig.xml`'s square tiles and how many were dropped for a cap; `Err` as
/// [`optional_file`].
pub(super) async fn browserconfig_tiles(
    f: &Fetcher,
    url: Url,
    deadline: &Deadline,
) -> Result<(Vec<Candidate>, u32), FetchError> {
    Ok(optional_file(f, url, BROWSERCONFIG_CAP, deadline)
        .await?
        .map(|(body, url)| browserconfig::tiles(&body, &url))
        .unwrap_or_default())
}
