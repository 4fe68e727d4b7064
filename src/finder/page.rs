//! The home page: fetched over https then http, on the domain then its www/apex twin, its head
//! streamed through the extractor, and a bot wall's challenge page recognised.

use super::ErrorCategory;
use super::clock::Deadline;
use super::fetch::{FetchError, Fetcher, Opened, retry_after};
use super::html::{self, HeadParser};
use url::Url;

/// Decompressed bytes of HTML read at most: a long head, then a scan of the body (the parser
/// says when to stop before this, see [`HeadParser::done`]).
pub const HTML_CAP: usize = html::HEAD_CAP + html::BODY_SCAN;
/// Redirects followed for the home page.
const PAGE_REDIRECTS: usize = 10;

/// The home page as fetched.
pub(super) struct HomePage {
    pub(super) url: Url,
    pub(super) status: u16,
    pub(super) retry_after: Option<u64>,
    /// The error page still looked like a bot-wall challenge after the browser-like retry.
    pub(super) challenge: bool,
    pub(super) extracted: Option<html::Extracted>,
    /// Why the body could not be read to its end (undecodable, cut off, too slow): what was
    /// parsed before still counts, and this is the failure when nothing verifies, rather than
    /// an empty page's `no_icon`.
    pub(super) read_error: Option<FetchError>,
}

/// Bytes of an error page read to recognise a challenge.
const CHALLENGE_SNIFF: usize = 32 * 1024;

/// Whether an error page is a bot-wall challenge (Cloudflare and look-alikes).
fn looks_like_challenge(headers: &reqwest::header::HeaderMap, body: &[u8]) -> bool {
    if headers
        .get("cf-mitigated")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("challenge"))
    {
        return true;
    }
    let lower = String::from_utf8_lossy(body).to_ascii_lowercase();
    [
        "just a moment...",
        "attention required!",
        "cf-chl",
        "challenge-platform",
        "checking your browser",
        "ddos-guard",
    ]
    .iter()
    .any(|m| lower.contains(m))
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
pub(super) async fn fetch_page(
    f: &Fetcher,
    url: Url,
    deadline: &Deadline,
) -> Result<HomePage, FetchError> {
    // The page gets two thirds of what is left so that default paths can still be tried.
    let budget = deadline.remaining() * 2 / 3;
    let mut opened = f
        .open(url.clone(), PAGE_REDIRECTS, false, budget, deadline)
        .await?;
    if is_wall(&opened) {
        // Bot walls often answer non-browser requests this way: one retry looking like one.
        // The first answer is read and let go before asking again: the retry needs slots of
        // its own, and holding the first one's could wait on ourselves when the per-host or
        // per-address limit is small.
        let first = wall_page(opened).await;
        let budget = deadline.remaining() * 2 / 3;
        match f.open(url, PAGE_REDIRECTS, true, budget, deadline).await {
            Ok(again) => opened = again,
            // Unanswered (a timeout, our own wait for a slot, a reset): what the wall says to a
            // browser is unknown, so the failure stays transient; the host did answer, so its
            // `/favicon.ico` is still tried.
            Err(e) if e.category.is_transient() => {
                return Err(FetchError {
                    origin: Some(first.url),
                    ..e
                });
            }
            Err(_) => return Ok(first),
        }
    }
    if is_wall(&opened) {
        return Ok(wall_page(opened).await);
    }
    let (mut page, content_type) = page_head(&opened);
    let status = page.status;
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
    let read = Fetcher::read_capped(&mut opened, HTML_CAP, |chunk| {
        parser.write(chunk);
        !parser.done()
    })
    .await;
    page.extracted = Some(parser.finish());
    page.read_error = read.err();
    Ok(page)
}

/// A 403 or 503: the answer bot walls give.
fn is_wall(opened: &Opened) -> bool {
    matches!(opened.resp.status().as_u16(), 403 | 503)
}

/// The page as its status line and headers describe it, and its lowercase content type.
fn page_head(opened: &Opened) -> (HomePage, String) {
    let headers = opened.resp.headers();
    let content_type = headers
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let page = HomePage {
        url: opened.url.clone(),
        status: opened.resp.status().as_u16(),
        retry_after: retry_after(headers),
        challenge: false,
        extracted: None,
        read_error: None,
    };
    (page, content_type)
}

/// A wall's page, with whether its first bytes look like a challenge; consumes the answer
/// so its connection and slots are free afterwards.
async fn wall_page(mut opened: Opened) -> HomePage {
    let (mut page, _) = page_head(&opened);
    let headers = opened.resp.headers().clone();
    let mut body = Vec::new();
    let _ = Fetcher::read_capped(&mut opened, CHALLENGE_SNIFF, |c| {
        body.extend_from_slice(c);
        true
    })
    .await;
    page.challenge = looks_like_challenge(&headers, &body);
    page
}

/// The home page over the https/http × domain/alternate matrix; `Err` carries the first
/// (most telling) failure.
pub(super) async fn home_page(
    f: &Fetcher,
    domain: &str,
    deadline: &Deadline,
) -> Result<HomePage, FetchError> {
    use ErrorCategory as C;
    let mut first: Option<FetchError> = None;
    for host in host_variants(domain) {
        // This host's most telling failure: a plain-HTTP site that then stalls or breaks says
        // more than the https handshake it could not do.
        let mut host_err: Option<FetchError> = None;
        let mut next_host = true;
        // A host that recently refused https while http worked goes straight to http.
        let schemes: &[&str] = if f.https_refusals.remembers(&host) {
            &["http"]
        } else {
            &["https", "http"]
        };
        let mut https_refused = false;
        for &scheme in schemes {
            let Ok(url) = Url::parse(&format!("{scheme}://{host}/")) else {
                return Err(FetchError::new(
                    ErrorCategory::Dns,
                    format!("{host:?} is not a valid host name"),
                ));
            };
            let outcome = fetch_page(f, url, deadline).await;
            let host_works = outcome
                .as_ref()
                .map_or_else(|e| e.origin.is_some(), |_| true);
            if https_refused && host_works {
                f.https_refusals.remember(&host);
            }
            match outcome {
                Ok(p) => return Ok(p),
                Err(e) => {
                    let cat = e.category;
                    if e.origin.is_some() {
                        // The host works; the failure is the site's own and says the most.
                        return Err(e);
                    }
                    let better = host_err.as_ref().is_none_or(|h| {
                        matches!(h.category, C::Tls | C::Connect)
                            && !matches!(cat, C::Connect | C::Dns | C::DnsTransient | C::Blocked)
                    });
                    if better {
                        host_err = Some(e);
                    }
                    if scheme == "https" && matches!(cat, C::Tls | C::Connect) {
                        https_refused = true;
                        continue;
                    }
                    next_host = matches!(
                        cat,
                        C::Dns | C::DnsTransient | C::Connect | C::Tls | C::Blocked
                    );
                    break;
                }
            }
        }
        if let Some(e) = host_err {
            first.get_or_insert(e);
        }
        if !next_host {
            break;
        }
    }
    Err(first.unwrap_or_else(|| FetchError::new(ErrorCategory::Internal, "no host tried")))
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
}
