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
use super::fetch::{FetchError, Fetcher};
use super::html;
use super::page::{HomePage, fetch_page, home_page};
use super::{Candidate, CandidateSource, DarkIcon, ErrorCategory, FindError, FindOutcome, Found};
use super::{links, rank};
use crate::clean::MAX_CANDIDATES;
use base64::Engine as _;
use std::time::Duration;
use url::Url;

mod resources;
mod verdict;
use resources::{browserconfig_tiles, manifest_icons, verify};
use std::collections::{HashMap, HashSet};
use verdict::Trail;

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

/// Runs the whole pipeline for one domain; the chosen icon's bytes come along when they are
/// at most `keep` bytes.
pub async fn find(f: &Fetcher, domain: &str, deadline: &Deadline, keep: usize) -> FindOutcome {
    let mut trail = Trail::default();
    let page = start_page(f, domain, deadline, &mut trail).await?;
    let (origin, final_url) = match &page {
        Ok(p) => (p.url.clone(), Some(p.url.to_string())),
        Err(e) => match e.origin.clone() {
            Some(o) => (o, None),
            None => return Err(FindError::new(e.category, e.message.clone())),
        },
    };
    let mut declared = match &page {
        Ok(p) => declarations(f, p, deadline, &mut trail).await,
        Err(_) => Declared::default(),
    };
    add_default_paths(&mut declared.cands, &origin);

    let mut search = Search::new(f, deadline, keep);
    let mut ranked = search.rank_unseen(std::mem::take(&mut declared.cands));
    search.verify_ranked(&mut ranked).await;
    search.last_resorts(&mut ranked, &mut declared).await;
    search.verify_dark(&mut ranked).await;
    trail.timed_out = search.timed_out;
    trail.fetched = search.fetched;

    let (ranked, over) = keep_candidates(ranked, &search.tried);
    let candidates_dropped = declared.dropped.saturating_add(over);

    if let Some(i) = rank::pick(&ranked) {
        let dark = rank::pick_dark(&ranked).filter(|d| *d != i).and_then(|d| {
            let c = &ranked[d];
            Some(Box::new(DarkIcon {
                url: c.url.clone(),
                mime: c.mime.clone()?,
                width: c.width.unwrap_or(0),
                height: c.height.unwrap_or(0),
                icon: super::IconBytes::new(search.kept.remove(&c.url)?),
            }))
        });
        let c = &ranked[i];
        return Ok(Found {
            favicon_url: c.url.clone(),
            final_url,
            mime: c.mime.clone().unwrap_or_default(),
            width: c.width.unwrap_or(0),
            height: c.height.unwrap_or(0),
            icon: search.kept.remove(&c.url).map(super::IconBytes::new),
            dark,
            candidates: ranked,
            candidates_dropped,
        });
    }
    let mut err = verdict::failure(&page, &ranked, trail, deadline);
    err.final_url = final_url;
    err.candidates = ranked;
    err.candidates_dropped = candidates_dropped;
    Err(err)
}

/// The home page, or its failure when it still gives an origin to try the default paths on;
/// a failure without one ends the search at once. A page that declared nothing but a
/// `<meta refresh>` is replaced by the page it points to (followed once).
async fn start_page(
    f: &Fetcher,
    domain: &str,
    deadline: &Deadline,
    trail: &mut Trail,
) -> Result<Result<HomePage, FetchError>, FindError> {
    let mut page = match home_page(f, domain, deadline).await {
        Ok(p) => p,
        Err(e) if e.origin.is_some() => return Ok(Err(e)),
        Err(e) => return Err(FindError::new(e.category, e.message)),
    };
    if let Some(ex) = &page.extracted
        && ex.links.is_empty()
        && ex.manifests.is_empty()
        && ex.tiles.is_empty()
        && let Some(target) = ex.refresh.as_deref().and_then(links::refresh_target)
        && let Some(next) = links::resolve_href(&page.url, &target)
        && let Ok(next) = Url::parse(&next)
        && next != page.url
    {
        match fetch_page(f, next, deadline).await {
            Ok(p2) if (200..300).contains(&p2.status) => page = p2,
            Err(e) if e.category.is_transient() => {
                trail.unanswered_fetch = Some((e.category, e.message));
            }
            _ => {}
        }
    }
    Ok(Ok(page))
}

/// What the home page declared, with the files it named (manifests, `browserconfig.xml`)
/// already read.
#[derive(Default)]
struct Declared {
    /// Links, tiles and manifest icons, in the page's order.
    cands: Vec<Candidate>,
    /// `<noscript>` icons, ranked, tried only when nothing else verified.
    last_resort: Vec<Candidate>,
    /// `/browserconfig.xml`, asked for as IE and Edge did when a page named none, but only as
    /// a last resort: its tiles are often white on transparent, and `/favicon.ico` is better.
    default_browserconfig: Option<Url>,
    /// Candidates left out past the parsing caps.
    dropped: u32,
}

/// Reads the page's declarations and fetches the manifests and `browserconfig.xml` it names.
async fn declarations(
    f: &Fetcher,
    page: &HomePage,
    deadline: &Deadline,
    trail: &mut Trail,
) -> Declared {
    let mut out = Declared::default();
    let (url, Some(ex)) = (&page.url, &page.extracted) else {
        return out;
    };
    let declared = links::candidates(ex, url);
    out.dropped = declared.dropped;
    trail.parse_error.clone_from(&ex.parse_error);
    out.cands.extend(declared.candidates);
    out.last_resort = rank::rank(links::noscript_candidates(ex, url));
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
                out.cands.extend(icons);
                out.dropped = out.dropped.saturating_add(n);
            }
            Err(e) if e.category == ErrorCategory::Blocked => {
                trail.file_refused = Some(e.message);
            }
            Err(e) => {
                trail
                    .unanswered_fetch
                    .get_or_insert((e.category, e.message));
            }
        }
    }
    if out.cands.is_empty() && !named_config && !declared.browserconfig_off {
        out.default_browserconfig = url.join("/browserconfig.xml").ok();
    }
    out
}

/// Adds the well-known paths: `/favicon.ico` always, the apple-touch icons only when the page
/// declared nothing.
fn add_default_paths(cands: &mut Vec<Candidate>, origin: &Url) {
    let mut defaults = vec!["/favicon.ico"];
    if cands.is_empty() {
        defaults.extend(["/apple-touch-icon.png", "/apple-touch-icon-precomposed.png"]);
    }
    for path in defaults {
        if let Ok(u) = origin.join(path) {
            cands.push(Candidate::new(u.as_str(), CandidateSource::DefaultPath));
        }
    }
}

/// The verification of one domain's candidates: which were fetched, the bytes held for the
/// pick, and the budget (`MAX_VERIFY`, the deadline) they share.
struct Search<'a> {
    f: &'a Fetcher,
    deadline: &'a Deadline,
    /// Largest icon whose bytes are held for the outcome.
    keep: usize,
    /// Every candidate URL already listed, so a last resort never repeats one.
    seen: HashSet<String>,
    /// The candidate URLs fetched: the evidence `keep_candidates` never drops.
    tried: HashSet<String>,
    /// Verified icons' bytes by URL (at most `MAX_VERIFY` of at most `keep` bytes each).
    kept: HashMap<String, Vec<u8>>,
    /// Icons fetched so far.
    fetched: usize,
    /// A candidate was skipped or the search stopped because its time had run out.
    timed_out: bool,
}

impl<'a> Search<'a> {
    /// A search with nothing fetched yet.
    fn new(f: &'a Fetcher, deadline: &'a Deadline, keep: usize) -> Self {
        Self {
            f,
            deadline,
            keep,
            seen: HashSet::new(),
            tried: HashSet::new(),
            kept: HashMap::new(),
            fetched: 0,
            timed_out: false,
        }
    }

    /// Ranks the candidates and drops those already seen (the first of equal URLs stays).
    fn rank_unseen(&mut self, cands: Vec<Candidate>) -> Vec<Candidate> {
        let mut ranked = rank::rank(cands);
        ranked.retain(|c| self.seen.insert(c.url.clone()));
        ranked
    }

    /// Whether another icon may be fetched at all.
    fn has_room(&self) -> bool {
        self.fetched < MAX_VERIFY && !self.deadline.remaining().is_zero()
    }

    /// Fetches one candidate by `until`, holding its bytes when they are small enough.
    async fn check(&mut self, c: &mut Candidate, until: &Deadline) {
        if let Some(b) = verify(self.f, c, until)
            .await
            .filter(|b| b.len() <= self.keep)
        {
            self.kept.insert(c.url.clone(), b);
        }
        self.tried.insert(c.url.clone());
        self.fetched += 1;
    }

    /// Verifies the ranked candidates in order until a square icon verified and a few more of
    /// its tier had their say; declared icons stop short of the deadline so the default paths
    /// keep time of their own.
    async fn verify_ranked(&mut self, ranked: &mut [Candidate]) {
        let reserve = (self.deadline.remaining() / 3).min(DEFAULT_RESERVE_MAX);
        let declared_deadline = self.deadline.less(reserve);
        let mut declared_fetched = 0;
        let mut winner_tier: Option<u8> = None;
        let mut extra = 0;
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
            if self.fetched >= MAX_VERIFY {
                break;
            }
            let is_default = c.source == CandidateSource::DefaultPath;
            let until = if is_default {
                self.deadline
            } else {
                &declared_deadline
            };
            if !is_default && declared_fetched >= MAX_DECLARED_VERIFY {
                // Skipped, not stopped: the default paths further down still get their turn.
                continue;
            }
            if until.remaining().is_zero() {
                self.timed_out = true;
                if is_default {
                    break;
                }
                continue;
            }
            self.check(c, until).await;
            if !is_default {
                declared_fetched += 1;
            }
            if winner_tier.is_none() && rank::is_verified(c) && square(c) {
                winner_tier = Some(rank::tier(c));
            }
        }
    }

    /// The best dark-scheme icon the site declares, verified too when the pick is another
    /// icon: dark variants rank last, so the search above stops before them. Stops at the
    /// first that verifies (in rank order), within the same budget as every other fetch.
    async fn verify_dark(&mut self, ranked: &mut [Candidate]) {
        if rank::pick(ranked).is_none_or(|i| rank::is_dark(&ranked[i])) {
            return;
        }
        for c in ranked.iter_mut() {
            if !rank::is_dark(c) || c.source == CandidateSource::MaskIcon {
                continue;
            }
            if rank::is_verified(c) {
                return;
            }
            if c.error.is_some() || self.tried.contains(&c.url) {
                continue;
            }
            if !self.has_room() {
                return;
            }
            self.check(c, self.deadline).await;
            if rank::is_verified(c) {
                return;
            }
        }
    }

    /// `<noscript>` icons only when nothing else, `/favicon.ico` included, verified: browsers
    /// that run scripts ignore them. Then the default `browserconfig.xml`'s tiles.
    async fn last_resorts(&mut self, ranked: &mut Vec<Candidate>, declared: &mut Declared) {
        for resort in 0..2 {
            if rank::pick(ranked).is_some() {
                break;
            }
            let list = if resort == 0 {
                std::mem::take(&mut declared.last_resort)
            } else {
                match declared.default_browserconfig.take() {
                    Some(u) if self.has_room() => {
                        let (tiles, n) = browserconfig_tiles(self.f, u, self.deadline)
                            .await
                            .unwrap_or_default();
                        declared.dropped = declared.dropped.saturating_add(n);
                        rank::rank(tiles)
                    }
                    _ => Vec::new(),
                }
            };
            for mut c in list {
                if !self.seen.insert(c.url.clone()) {
                    continue;
                }
                if self.has_room() {
                    self.check(&mut c, self.deadline).await;
                }
                let done = rank::is_verified(&c);
                ranked.push(c);
                if done {
                    break;
                }
            }
        }
    }
}

/// Whether an icon is near enough square to win: a non-square image is a last resort, so the
/// search keeps looking for a square one. Unknown sizes count as square.
fn square(c: &Candidate) -> bool {
    match (c.width, c.height) {
        (Some(w), Some(h)) if w > 0 && h > 0 => {
            (0.9..=1.1).contains(&(f64::from(w) / f64::from(h)))
        }
        _ => true,
    }
}

/// Keeps at most [`MAX_CANDIDATES`] of the ranked candidates, in rank order: first every one
/// that was fetched (the evidence for the outcome; at most `MAX_VERIFY`) and the default
/// paths, then the best-ranked of the rest. Returns them with how many were left out.
fn keep_candidates(ranked: Vec<Candidate>, tried: &HashSet<String>) -> (Vec<Candidate>, u32) {
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
