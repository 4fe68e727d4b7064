//! Streaming extraction of icon declarations with lol_html (an HTML5 tokenizer, so comments,
//! `<script>`/`<style>`/`<noscript>` raw text and attribute quoting behave as in browsers).
//!
//! Policy: the caller feeds body chunks and stops reading once `</head>` (or `<body>`) has been
//! seen *and* at least one icon link was found; when the head declared no icon it keeps reading
//! up to its byte cap so that links a CMS injected into `<body>` are still found (ranked lower).
//! Links between `</head>` and `<body>` count as head links, as the HTML parser moves them there.
//! `<template>` content is inert and ignored. `<noscript>` content is raw text for lol_html (a
//! scripting browser ignores it too), so its links are not head links; the text is kept
//! (bounded) and parsed on its own at the end, and its icon links are offered separately as a
//! last resort (case 35), tried only when nothing else, `/favicon.ico` included, verified.
//!
//! Bounds: whatever the page holds, what is kept is bounded by the constants below: at most
//! [`MAX_LINKS`] distinct links, [`MAX_TILES`] tiles and [`MAX_MANIFEST_LINKS`] manifests, hrefs
//! and bases within [`MAX_URL_BYTES`] (`data:` within [`MAX_DATA_URL_BYTES`]), declared tokens
//! within [`MAX_TOKEN_BYTES`], and lol_html's own buffers within [`PARSER_MEMORY`]. Exact
//! repeats are removed before anything is resolved, so 20,000 copies of one link cost one.
//! Attribute values are decoded as a browser decodes them before any of this.

use super::{Candidate, CandidateSource};
use crate::clean::{self, MAX_DATA_URL_BYTES, MAX_TOKEN_BYTES, MAX_URL_BYTES};
use lol_html::send::{EndTagHandler, HtmlRewriter, Settings};
use lol_html::{AsciiCompatibleEncoding, MemorySettings, element, text};
use std::sync::{Arc, Mutex, PoisonError};
use url::Url;

/// Distinct icon `<link>`s kept per page (and per `<noscript>` fragment). Past it every further
/// declaration is only counted: a page of 20,000 links must cost what a page of 64 does.
pub const MAX_LINKS: usize = 64;
/// Distinct `msapplication-TileImage` values kept per page.
pub const MAX_TILES: usize = 4;
/// Distinct `<link rel=manifest>` hrefs kept per page (the finder fetches at most 2).
pub const MAX_MANIFEST_LINKS: usize = 4;
/// `<noscript>` text kept for the last-resort parse.
const MAX_NOSCRIPT: usize = 64 * 1024;
/// lol_html's own memory limit for the bytes it must buffer (a tag split across chunks). A tag
/// larger than this stops the parse; what was found before it is kept. No icon declaration
/// needs more: the longest kept value is a 32 KiB `data:` URL.
pub const PARSER_MEMORY: usize = 256 * 1024;
/// Largest slice of input handed to lol_html at once (see [`HeadParser::write`]).
const FEED_SLICE: usize = 16 * 1024;
/// Bytes of an over-long `data:` URL kept, so the candidate still shows what it was.
const DATA_URL_PREVIEW: usize = 64;

/// An icon-ish `<link>` as written in the page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawLink {
    /// Which kind of declaration it is.
    pub source: CandidateSource,
    /// The href, character references decoded, untrimmed; at most [`MAX_URL_BYTES`]
    /// ([`MAX_DATA_URL_BYTES`] for `data:`), or a short preview when `oversized` is set.
    pub href: String,
    /// The `sizes` attribute (at most [`MAX_TOKEN_BYTES`]).
    pub sizes: Option<String>,
    /// The `type` attribute (at most [`MAX_TOKEN_BYTES`]).
    pub type_: Option<String>,
    /// Seen after `<body>` started.
    pub in_body: bool,
    /// The `media` attribute (at most [`MAX_TOKEN_BYTES`]).
    pub media: Option<String>,
    /// Bytes of a `data:` href too large to keep: the candidate is shown, never chosen.
    pub oversized: Option<usize>,
}

/// Everything the page declared that matters for icons, within the caps above.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Extracted {
    /// The first `<base href>` (at most [`MAX_URL_BYTES`]; see `base_too_long`).
    pub base: Option<String>,
    /// The first `<base href>` was longer than [`MAX_URL_BYTES`]: only absolute hrefs resolve.
    pub base_too_long: bool,
    /// Distinct icon links in document order, at most [`MAX_LINKS`].
    pub links: Vec<RawLink>,
    /// Distinct `<link rel=manifest>` hrefs, at most [`MAX_MANIFEST_LINKS`].
    pub manifests: Vec<String>,
    /// Distinct `msapplication-TileImage` contents, at most [`MAX_TILES`].
    pub tiles: Vec<String>,
    /// The first `<meta http-equiv=refresh>` content (dropped when longer than a URL may be).
    pub refresh: Option<String>,
    /// Icon links found inside `<noscript>` (a last resort: scripting browsers ignore them).
    pub noscript_links: Vec<RawLink>,
    /// `</head>` or `<body>` was reached.
    pub head_closed: bool,
    /// Declarations not kept because of a count or length cap (exact repeats are not counted:
    /// they would be the same candidate).
    pub dropped: u32,
    /// Why parsing stopped early (lol_html's memory limit, or an encoding it refused), if it did.
    pub parse_error: Option<String>,
    /// Raw `<noscript>` text seen so far (bounded), parsed when the page ends.
    noscript_text: String,
    /// Nesting depth of `<template>` (content inside is ignored).
    template_depth: usize,
    in_body: bool,
}

impl Extracted {
    /// Heap bytes held by the kept declarations: what one page can make this parser keep.
    pub fn heap_bytes(&self) -> usize {
        let opt = |s: &Option<String>| s.as_ref().map_or(0, String::capacity);
        let link = |l: &RawLink| l.href.capacity() + opt(&l.sizes) + opt(&l.type_) + opt(&l.media);
        opt(&self.base)
            + opt(&self.refresh)
            + opt(&self.parse_error)
            + self.noscript_text.capacity()
            + self.links.iter().map(link).sum::<usize>()
            + self.noscript_links.iter().map(link).sum::<usize>()
            + self.manifests.iter().map(String::capacity).sum::<usize>()
            + self.tiles.iter().map(String::capacity).sum::<usize>()
            + (self.links.capacity() + self.noscript_links.capacity())
                * std::mem::size_of::<RawLink>()
            + (self.manifests.capacity() + self.tiles.capacity()) * std::mem::size_of::<String>()
    }

    /// Keeps `link` unless it repeats a kept one; past [`MAX_LINKS`] it is only counted.
    fn push_link(&mut self, link: RawLink) {
        if self.links.contains(&link) {
            return;
        }
        if self.links.len() >= MAX_LINKS {
            self.count_dropped();
            return;
        }
        self.links.push(link);
    }

    fn count_dropped(&mut self) {
        self.dropped = self.dropped.saturating_add(1);
    }
}

/// Keeps `value` in `list` unless it repeats a kept one or the list is full (then counted).
fn push_distinct(list: &mut Vec<String>, value: String, cap: usize, dropped: &mut u32) {
    if list.contains(&value) {
        return;
    }
    if list.len() >= cap {
        *dropped = dropped.saturating_add(1);
        return;
    }
    list.push(value);
}

/// An attribute value as a browser sees it: lol_html hands back the raw text, so character
/// references (`&amp;`, `&#38;`, `&#x26;`, and the legacy named ones without `;`) are decoded
/// here with the attribute-value rules of the HTML spec (`&copy=` stays as written).
fn decoded(raw: Option<String>) -> Option<String> {
    raw.map(|raw| match htmlize::unescape_attribute(raw.as_str()) {
        std::borrow::Cow::Borrowed(_) => raw,
        // Decoding only shrinks the text (almost: `&nGt;` is 5 bytes for 6), so what is kept
        // must not hold on to the raw value's larger buffer.
        std::borrow::Cow::Owned(mut d) => {
            d.shrink_to_fit();
            d
        }
    })
}

/// A declared token (`sizes`, `type`, `media`, `content` of a tile) within [`MAX_TOKEN_BYTES`],
/// without control characters.
fn token(v: Option<String>) -> Option<String> {
    v.map(|v| clean::text(&v, MAX_TOKEN_BYTES))
}

/// Whether an href starts with the `data:` scheme (ASCII case-insensitive, after trimming).
fn is_data(href: &str) -> bool {
    href.trim_start_matches(|c: char| c.is_ascii_whitespace() || c.is_ascii_control())
        .get(..5)
        .is_some_and(|p| p.eq_ignore_ascii_case("data:"))
}

/// The longest href kept: a URL is never cut (a cut URL is another URL), so a longer one is
/// dropped; a `data:` URL may be longer, up to the inline icon cap.
fn href_cap(href: &str) -> usize {
    if is_data(href) {
        MAX_DATA_URL_BYTES
    } else {
        MAX_URL_BYTES
    }
}

type Shared = Arc<Mutex<Extracted>>;
/// The rewriter only reads; its output is thrown away.
type Rewriter = HtmlRewriter<'static, fn(&[u8])>;

fn with<R>(s: &Shared, f: impl FnOnce(&mut Extracted) -> R) -> R {
    f(&mut s.lock().unwrap_or_else(PoisonError::into_inner))
}

/// Feeds HTML chunks through lol_html and collects [`Extracted`].
pub struct HeadParser {
    charset: Option<String>,
    rewriter: Option<Rewriter>,
    state: Shared,
    failed: bool,
}

impl HeadParser {
    /// A parser for a page whose Content-Type named `charset` (if any).
    pub fn new(charset: Option<&str>) -> Self {
        Self {
            charset: charset.map(str::to_string),
            rewriter: None,
            state: Shared::default(),
            failed: false,
        }
    }

    /// Parses one more chunk; the first chunk decides the encoding (BOM, header, then meta).
    pub fn write(&mut self, chunk: &[u8]) {
        if self.failed {
            return;
        }
        if self.rewriter.is_none() {
            let bom = chunk.starts_with(b"\xef\xbb\xbf");
            let header = self
                .charset
                .as_deref()
                .and_then(|l| encoding_rs::Encoding::for_label(l.trim().as_bytes()))
                .and_then(AsciiCompatibleEncoding::new);
            let (enc, from_meta) = match (bom, header) {
                (true, _) => (AsciiCompatibleEncoding::utf_8(), false),
                (false, Some(e)) => (e, false),
                (false, None) => (AsciiCompatibleEncoding::utf_8(), true),
            };
            self.rewriter = Some(build(self.state.clone(), enc, from_meta));
        }
        let Some(r) = self.rewriter.as_mut() else {
            return;
        };
        // lol_html appends a whole new chunk to any tag left unfinished by the previous one and
        // counts it against its memory limit, so a large network chunk could trip the limit on
        // an ordinary page: it is fed in slices, and only a really large tag trips it.
        if let Some(e) = chunk
            .chunks(FEED_SLICE)
            .find_map(|slice| r.write(slice).err())
        {
            // Keep what was found so far; a parse failure must not lose earlier links. The
            // rewriter is poisoned after an error, so nothing more is fed to it.
            self.failed = true;
            let msg = clean::text(
                &format!("HTML parser stopped: {e}"),
                clean::MAX_MESSAGE_BYTES,
            );
            with(&self.state, |s| s.parse_error = Some(msg));
        }
    }

    /// Whether the head is complete and declared at least one icon source, so reading can stop.
    pub fn done(&self) -> bool {
        with(&self.state, |s| {
            s.head_closed && !(s.links.is_empty() && s.manifests.is_empty() && s.tiles.is_empty())
        })
    }

    /// Ends parsing and returns what was found.
    pub fn finish(mut self) -> Extracted {
        if let Some(r) = self.rewriter.take()
            && !self.failed
        {
            let _ = r.end();
        }
        let mut ex = with(&self.state, std::mem::take);
        let noscript = std::mem::take(&mut ex.noscript_text);
        if !noscript.is_empty() {
            // Parsed as a fragment of its own; nested noscript content is not looked into.
            let inner = extract(noscript.as_bytes(), Some("utf-8"));
            ex.dropped = ex.dropped.saturating_add(inner.dropped);
            ex.noscript_links = inner
                .links
                .into_iter()
                .map(|l| RawLink { in_body: true, ..l })
                .collect();
        }
        ex
    }
}

/// Parses a whole document at once.
pub fn extract(html: &[u8], charset: Option<&str>) -> Extracted {
    let mut p = HeadParser::new(charset);
    p.write(html);
    p.finish()
}

fn build(state: Shared, enc: AsciiCompatibleEncoding, from_meta: bool) -> Rewriter {
    let (s_link, s_base, s_meta, s_tpl, s_head, s_body, s_nos) = (
        state.clone(),
        state.clone(),
        state.clone(),
        state.clone(),
        state.clone(),
        state.clone(),
        state,
    );
    let settings = Settings::new_send()
        .with_encoding(enc)
        .with_adjust_charset_on_meta_tag(from_meta)
        .with_memory_settings(MemorySettings::new().with_max_allowed_memory_usage(PARSER_MEMORY))
        .append_element_content_handler(element!("link", move |el| {
            let rel = decoded(el.get_attribute("rel")).unwrap_or_default();
            let Some(kind) = rel_kind(&rel) else {
                return Ok(());
            };
            let href = decoded(el.get_attribute("href"));
            let (sizes, type_, media) = match kind {
                RelKind::Manifest => (None, None, None),
                RelKind::Icon(_) => (
                    token(decoded(el.get_attribute("sizes"))),
                    token(decoded(el.get_attribute("type"))),
                    token(decoded(el.get_attribute("media"))),
                ),
            };
            with(&s_link, |s| {
                if s.template_depth > 0 {
                    return;
                }
                let Some(href) = href else { return };
                let too_long = href.len() > href_cap(&href);
                match kind {
                    RelKind::Manifest if too_long || is_data(&href) => s.count_dropped(),
                    RelKind::Manifest => {
                        push_distinct(&mut s.manifests, href, MAX_MANIFEST_LINKS, &mut s.dropped)
                    }
                    RelKind::Icon(_) if too_long && !is_data(&href) => s.count_dropped(),
                    RelKind::Icon(source) => {
                        // An inline icon over the cap stays visible as a rejected candidate,
                        // but only a short preview of its URL is kept.
                        let (href, oversized) = if too_long {
                            let preview = clean::text(href.trim(), DATA_URL_PREVIEW);
                            (preview, Some(href.len()))
                        } else {
                            (href, None)
                        };
                        let in_body = s.in_body;
                        s.push_link(RawLink {
                            source,
                            href,
                            sizes,
                            type_,
                            in_body,
                            media,
                            oversized,
                        });
                    }
                }
            });
            Ok(())
        }))
        .append_element_content_handler(element!("base", move |el| {
            let href = decoded(el.get_attribute("href"));
            with(&s_base, |s| {
                if s.template_depth == 0 && s.base.is_none() && !s.base_too_long {
                    match href {
                        Some(h) if h.len() > MAX_URL_BYTES => s.base_too_long = true,
                        h => s.base = h,
                    }
                }
            });
            Ok(())
        }))
        .append_element_content_handler(element!("meta", move |el| {
            let name = decoded(el.get_attribute("name")).unwrap_or_default();
            let equiv = decoded(el.get_attribute("http-equiv")).unwrap_or_default();
            let is_tile = name.trim().eq_ignore_ascii_case("msapplication-TileImage");
            let is_refresh = equiv.trim().eq_ignore_ascii_case("refresh");
            if !is_tile && !is_refresh {
                return Ok(());
            }
            let content = decoded(el.get_attribute("content"));
            with(&s_meta, |s| {
                if s.template_depth > 0 {
                    return;
                }
                let Some(content) = content else { return };
                // A refresh content is a delay, `;` and a URL: a few bytes past a URL's cap.
                if content.len() > MAX_URL_BYTES + MAX_TOKEN_BYTES || (is_tile && is_data(&content))
                {
                    if is_tile {
                        s.count_dropped();
                    }
                    return;
                }
                if is_tile {
                    push_distinct(&mut s.tiles, content, MAX_TILES, &mut s.dropped);
                } else if s.refresh.is_none() {
                    s.refresh = Some(content);
                }
            });
            Ok(())
        }))
        .append_element_content_handler(element!("template", move |el| {
            with(&s_tpl, |s| s.template_depth += 1);
            let st = s_tpl.clone();
            if let Some(h) = el.end_tag_handlers() {
                let end: EndTagHandler<'static> = Box::new(move |_| {
                    with(&st, |s| {
                        s.template_depth = s.template_depth.saturating_sub(1)
                    });
                    Ok(())
                });
                h.push(end);
            }
            Ok(())
        }))
        .append_element_content_handler(element!("head", move |el| {
            let st = s_head.clone();
            if let Some(h) = el.end_tag_handlers() {
                let end: EndTagHandler<'static> = Box::new(move |_| {
                    with(&st, |s| s.head_closed = true);
                    Ok(())
                });
                h.push(end);
            }
            Ok(())
        }))
        .append_element_content_handler(text!("noscript", move |t| {
            with(&s_nos, |s| {
                if s.template_depth > 0 {
                    return;
                }
                // Cut on a character boundary so the kept text never exceeds the cap.
                let room = MAX_NOSCRIPT.saturating_sub(s.noscript_text.len());
                let text = t.as_str();
                let mut end = text.len().min(room);
                while !text.is_char_boundary(end) {
                    end -= 1;
                }
                s.noscript_text.push_str(&text[..end]);
            });
            Ok(())
        }))
        .append_element_content_handler(element!("body", move |_| {
            with(&s_body, |s| {
                s.head_closed = true;
                s.in_body = true;
            });
            Ok(())
        }));
    let sink: fn(&[u8]) = |_| {};
    HtmlRewriter::new(settings, sink)
}

#[derive(Clone, Copy)]
enum RelKind {
    Icon(CandidateSource),
    Manifest,
}

/// Classifies a rel attribute as an ASCII case-insensitive whitespace-separated token list.
fn rel_kind(rel: &str) -> Option<RelKind> {
    let tokens: Vec<String> = rel
        .split_ascii_whitespace()
        .map(str::to_ascii_lowercase)
        .collect();
    let has = |t: &str| tokens.iter().any(|x| x == t);
    if has("icon") {
        Some(RelKind::Icon(CandidateSource::Icon))
    } else if has("apple-touch-icon") || has("apple-touch-icon-precomposed") {
        Some(RelKind::Icon(CandidateSource::AppleTouch))
    } else if has("fluid-icon") {
        Some(RelKind::Icon(CandidateSource::FluidIcon))
    } else if has("mask-icon") {
        Some(RelKind::Icon(CandidateSource::MaskIcon))
    } else if has("manifest") {
        Some(RelKind::Manifest)
    } else {
        None
    }
}

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
    if is_data(href) {
        if href.len() > MAX_DATA_URL_BYTES {
            return Err(Skip::TooLong);
        }
        return Ok(data_url(href));
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

/// A `data:` URL as stored: the scheme lower-cased, tabs and newlines removed and other
/// control characters percent-encoded (as the URL parser does), so that storage, which drops
/// control characters, cannot change what the URL says.
fn data_url(href: &str) -> String {
    let mut out = String::with_capacity(href.len());
    out.push_str("data:");
    for ch in href[5..].chars() {
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
        .filter(|m| !m.starts_with("data:"))
        .filter_map(|m| Url::parse(&m).ok())
        .collect();
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
            Some(format!(
                "data: URL of {n} bytes is over the {MAX_DATA_URL_BYTES}-byte cap for inline icons; not used"
            )),
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn page(u: &str) -> Url {
        Url::parse(u).unwrap()
    }

    fn hrefs(ex: &Extracted) -> Vec<(&str, CandidateSource, bool)> {
        ex.links
            .iter()
            .map(|l| (l.href.as_str(), l.source, l.in_body))
            .collect()
    }

    use CandidateSource::*;

    #[test]
    fn rel_token_cases() {
        // Cases 1, 2, 3, 4, 5, 6, 7, 9.
        let html = br#"<html><head>
            <LINK REL="SHORTCUT ICON" HREF="/Fav.ico">
            <link rel="icon shortcut" href="/a.png">
            <link rel="alternate icon" href="/b.png">
            <link rel=" icon
" href="
 /c.png ">
            <link rel="apple-touch-startup-image" href="/no1.png">
            <link rel="icons" href="/no2.png">
            <link rel="preload" as="image" href="/favicon.png">
            <link rel=mask-icon href=pin.svg color=#000>
            <link rel="fluid-icon" href="/fluid.png">
            <link rel="apple-touch-icon-precomposed" href="/apple.png">
            <link rel=icon href=/f.png />
            <link rel=icon href=/g.png/>
            <link rel="manifest" href="/site.webmanifest">
            <meta name="msapplication-TileImage" content="/tile.png">
            </head><body></body></html>"#;
        let ex = extract(html, None);
        assert_eq!(
            hrefs(&ex),
            [
                ("/Fav.ico", Icon, false),
                ("/a.png", Icon, false),
                ("/b.png", Icon, false),
                ("\n /c.png ", Icon, false),
                ("pin.svg", MaskIcon, false),
                ("/fluid.png", FluidIcon, false),
                ("/apple.png", AppleTouch, false),
                ("/f.png", Icon, false),
                ("/g.png/", Icon, false),
            ]
        );
        assert_eq!(ex.manifests, ["/site.webmanifest"]);
        assert_eq!(ex.tiles, ["/tile.png"]);
        assert!(ex.head_closed);
        let c = candidates(&ex, &page("https://x.test/")).candidates;
        assert_eq!(c[3].url, "https://x.test/c.png");
    }

    #[test]
    fn comments_template_script_ignored_body_links_marked() {
        // Cases 31, 32, 33, 34, 36.
        let html = br#"<html><head>
            <!-- <link rel=icon href=old.ico> -->
            <template><link rel=icon href=/tpl.png></template>
            <script>document.write('<link rel=icon href=/js.png>')</script>
            <noscript><link rel=icon href=/nos.png></noscript>
            <link rel=icon href=/head.png>
            </head>
            <link rel=icon href=/between.png>
            <body><div><link rel=icon href=/body.png></div></body></html>"#;
        let ex = extract(html, None);
        assert_eq!(
            hrefs(&ex),
            [
                ("/head.png", Icon, false),
                ("/between.png", Icon, false),
                ("/body.png", Icon, true),
            ]
        );
        // Case 35: the noscript link is kept apart, as a last resort.
        let ns: Vec<_> = ex.noscript_links.iter().map(|l| l.href.as_str()).collect();
        assert_eq!(ns, ["/nos.png"]);
        let c = noscript_candidates(&ex, &page("https://x.test/a/"));
        assert_eq!(c[0].url, "https://x.test/nos.png");
        assert!(c[0].in_body);
    }

    #[test]
    fn streaming_done_only_after_head_with_icons() {
        let mut p = HeadParser::new(None);
        p.write(b"<html><head><link rel=icon href=/a");
        assert!(!p.done());
        p.write(b".png></head><body>");
        assert!(p.done());
        let mut q = HeadParser::new(None);
        q.write(b"<html><head><title>x</title></head><body>");
        assert!(!q.done(), "no icon in head: keep reading for body links");
    }

    #[test]
    fn dark_variant_ranks_after_the_default_one_and_keeps_its_media() {
        // The dark one is declared later and as an SVG, so only the colour-scheme rule keeps
        // it behind the small PNG.
        let ex = extract(
            br#"<head><link rel=icon href=/light.png sizes=16x16>
            <link rel=icon href=/dark.svg type=image/svg+xml media="(prefers-color-scheme: dark)"></head>"#,
            None,
        );
        let c = candidates(&ex, &page("https://x.test/")).candidates;
        let ranked = crate::finder::rank::rank(c);
        assert_eq!(ranked[0].url, "https://x.test/light.png");
        assert_eq!(ranked[1].url, "https://x.test/dark.svg");
        assert_eq!(
            ranked[1].media.as_deref(),
            Some("(prefers-color-scheme: dark)")
        );
    }

    #[test]
    fn attribute_values_are_decoded_as_a_browser_does() {
        let ex = extract(
            br#"<head><link rel=icon href="/icon.png?v=3&amp;s=32" sizes="32&#x78;32" media="&#40;prefers-color-scheme: dark&#41;">
            <link rel=icon href="/a?x=1&copy=2&lt;&#38;&#X26;&amp">
            <link rel="&#105;con" href="/by-entity.png">
            <base href="https://cdn.x.test/&#118;2/"></head>"#,
            None,
        );
        assert_eq!(ex.links[0].href, "/icon.png?v=3&s=32");
        assert_eq!(ex.links[0].sizes.as_deref(), Some("32x32"));
        assert_eq!(
            ex.links[0].media.as_deref(),
            Some("(prefers-color-scheme: dark)")
        );
        // `&copy=` is left alone in an attribute (the legacy rule); `&amp` without `;` is not.
        assert_eq!(ex.links[1].href, "/a?x=1&copy=2<&&&");
        assert_eq!(ex.links[2].href, "/by-entity.png", "rel is decoded too");
        assert_eq!(ex.base.as_deref(), Some("https://cdn.x.test/v2/"));
        let c = candidates(&ex, &page("https://x.test/")).candidates;
        assert_eq!(c[0].url, "https://cdn.x.test/icon.png?v=3&s=32");
    }

    /// The page that took the process past 3 GB: a 100 KB `<base href>` and 20,000 identical
    /// relative icon links (700 KB), fed in network-sized chunks. What the parser keeps is
    /// bounded by the caps, not by the page.
    #[test]
    fn huge_base_and_20000_identical_links_stay_within_the_caps() {
        let mut html = format!(
            "<html><head><base href=\"https://x.test/{}/\">",
            "a".repeat(100_000)
        );
        for _ in 0..20_000 {
            html.push_str(r#"<link rel="icon" href="i.png" sizes="16x16">"#);
        }
        html.push_str("</head><body></body></html>");
        assert!(html.len() > 700_000 && html.len() < 1024 * 1024);
        let started = std::time::Instant::now();
        let mut p = HeadParser::new(None);
        for chunk in html.as_bytes().chunks(16 * 1024) {
            p.write(chunk);
        }
        let ex = p.finish();
        assert!(ex.base_too_long && ex.base.is_none());
        assert_eq!(ex.links.len(), 1, "identical links are one");
        assert_bounded(&ex);
        let d = candidates(&ex, &page("https://x.test/"));
        assert!(
            d.candidates.is_empty(),
            "a relative href needs the unusable base"
        );
        assert_eq!(d.dropped, 1);
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn distinct_links_tiles_and_manifests_are_capped_and_counted() {
        let mut html = String::from("<head>");
        for i in 0..1000 {
            html.push_str(&format!(
                "<link rel=icon href=/{i}.png><link rel=manifest href=/{i}.json>\
                 <meta name=msapplication-TileImage content=/t{i}.png>"
            ));
        }
        html.push_str(&format!(
            "<link rel=icon href=/{}.png>",
            "x".repeat(MAX_URL_BYTES)
        ));
        html.push_str("</head>");
        let ex = extract(html.as_bytes(), None);
        assert_eq!(ex.links.len(), MAX_LINKS);
        assert_eq!(ex.tiles.len(), MAX_TILES);
        assert_eq!(ex.manifests.len(), MAX_MANIFEST_LINKS);
        let expected = (1000 - MAX_LINKS) + (1000 - MAX_TILES) + (1000 - MAX_MANIFEST_LINKS) + 1;
        assert_eq!(ex.dropped as usize, expected);
        assert_eq!(ex.links[0].href, "/0.png", "the first ones are kept");
        assert_bounded(&ex);
    }

    #[test]
    fn oversized_data_icon_is_shown_rejected_and_not_kept_whole() {
        let big = format!("data:image/png;base64,{}", "A".repeat(MAX_DATA_URL_BYTES));
        let small = "data:image/png;base64,iVBORw0KGgo=";
        let html =
            format!("<head><link rel=icon href=\"{big}\"><link rel=icon href=\"{small}\"></head>");
        let ex = extract(html.as_bytes(), None);
        let c = candidates(&ex, &page("https://x.test/")).candidates;
        assert!(c[0].url.starts_with("data:image/png;base64,AAAA") && c[0].url.len() <= 64);
        let err = c[0].error.as_deref().unwrap();
        assert!(
            err.contains(&format!("{MAX_DATA_URL_BYTES}-byte cap")),
            "{err}"
        );
        assert_eq!(c[1].url, small);
        assert_eq!(c[1].error, None);
    }

    #[test]
    fn a_tag_over_the_parser_memory_limit_stops_cleanly_keeping_earlier_links() {
        let mut p = HeadParser::new(None);
        p.write(b"<html><head><link rel=icon href=/before.png><meta name=x content=\"");
        let filler = vec![b'a'; 16 * 1024];
        for _ in 0..(2 * PARSER_MEMORY / filler.len()) {
            p.write(&filler);
        }
        p.write(b"\"><link rel=icon href=/after.png></head>");
        let ex = p.finish();
        let msg = ex
            .parse_error
            .as_deref()
            .expect("the memory limit stops the parse");
        assert!(msg.contains("memory"), "{msg}");
        let hrefs: Vec<_> = ex.links.iter().map(|l| l.href.as_str()).collect();
        assert_eq!(hrefs, ["/before.png"]);
    }

    #[test]
    fn a_large_chunk_after_a_split_tag_is_not_over_the_memory_limit() {
        // Network chunks can be far larger than the limit; only a large *tag* may trip it.
        let mut rest = String::new();
        for i in 0..20_000 {
            rest.push_str(&format!("<link rel=icon href=/i{i}.png>"));
        }
        rest.push_str("</head>");
        assert!(rest.len() > PARSER_MEMORY);
        let mut p = HeadParser::new(None);
        p.write(b"<html><head><link rel=icon hr");
        p.write(format!("ef=/first.png>{rest}").as_bytes());
        let ex = p.finish();
        assert_eq!(ex.parse_error, None);
        assert_eq!(ex.links[0].href, "/first.png");
        assert_eq!(ex.dropped as usize, 20_001 - MAX_LINKS);
    }

    #[test]
    fn declared_tokens_are_capped_and_cleaned() {
        let long = "1".repeat(10 * MAX_TOKEN_BYTES);
        let html = format!(
            "<head><link rel=icon href=/a.png sizes=\"{long}\" type=\"image/png&#0;\" media=\"{long}\"></head>"
        );
        let ex = extract(html.as_bytes(), None);
        let l = &ex.links[0];
        assert!(l.sizes.as_ref().unwrap().len() <= MAX_TOKEN_BYTES);
        assert!(l.media.as_ref().unwrap().len() <= MAX_TOKEN_BYTES);
        // `&#0;` decodes to U+FFFD, as a browser does; never a NUL.
        assert_eq!(l.type_.as_deref(), Some("image/png\u{fffd}"));
    }

    /// Every kept string within its cap, every list within its count.
    pub(crate) fn assert_bounded(ex: &Extracted) {
        assert!(ex.links.len() <= MAX_LINKS);
        assert!(ex.noscript_links.len() <= MAX_LINKS);
        assert!(ex.tiles.len() <= MAX_TILES);
        assert!(ex.manifests.len() <= MAX_MANIFEST_LINKS);
        assert!(ex.base.as_ref().is_none_or(|b| b.len() <= MAX_URL_BYTES));
        for l in ex.links.iter().chain(&ex.noscript_links) {
            assert!(l.href.len() <= MAX_DATA_URL_BYTES, "{}", l.href.len());
            assert!(is_data(&l.href) || l.href.len() <= MAX_URL_BYTES);
            for t in [&l.sizes, &l.type_, &l.media].into_iter().flatten() {
                assert!(t.len() <= MAX_TOKEN_BYTES);
            }
        }
        for m in ex.manifests.iter().chain(&ex.tiles) {
            assert!(m.len() <= MAX_URL_BYTES + MAX_TOKEN_BYTES);
        }
        assert!(
            ex.heap_bytes() <= MAX_EXTRACTED_BYTES,
            "{}",
            ex.heap_bytes()
        );
    }

    /// What [`Extracted`] may hold at most, from the caps: every link a full `data:` URL with
    /// full tokens, every manifest and tile a full URL, the noscript text and a refresh.
    pub(crate) const MAX_EXTRACTED_BYTES: usize =
        2 * MAX_LINKS * (MAX_DATA_URL_BYTES + 3 * MAX_TOKEN_BYTES + std::mem::size_of::<RawLink>())
            + (MAX_TILES + MAX_MANIFEST_LINKS + 2) * (MAX_URL_BYTES + MAX_TOKEN_BYTES + 24)
            + MAX_NOSCRIPT
            + clean::MAX_MESSAGE_BYTES;

    #[test]
    fn base_href_first_wins_and_root_relative() {
        // Cases 23, 24.
        let ex = extract(
            br#"<head><base href="https://static.x.test/v2/"><base href="/other/"><link rel=icon href="i.png"></head>"#,
            None,
        );
        let c = candidates(&ex, &page("https://x.test/en/home")).candidates;
        assert_eq!(c[0].url, "https://static.x.test/v2/i.png");
        let ex = extract(
            br#"<head><base href="/app/"><link rel=icon href="i.png"></head>"#,
            None,
        );
        let c = candidates(&ex, &page("https://x.test/en/home")).candidates;
        assert_eq!(c[0].url, "https://x.test/app/i.png");
    }

    #[test]
    fn url_resolution() {
        // Cases 8, 19, 20, 21, 25, 26, 29.
        let b = page("https://x.test/blog/post");
        let r = |h: &str| resolve_href(&b, h);
        assert_eq!(r("img/f.png").unwrap(), "https://x.test/blog/img/f.png");
        assert_eq!(
            r("../../assets/f.ico").unwrap(),
            "https://x.test/assets/f.ico"
        );
        assert_eq!(r("//cdn.x.test/i.ico").unwrap(), "https://cdn.x.test/i.ico");
        assert_eq!(
            r("/ícone final.png").unwrap(),
            "https://x.test/%C3%ADcone%20final.png"
        );
        assert_eq!(r("/f.ico?v=3#x").unwrap(), "https://x.test/f.ico?v=3");
        assert_eq!(r("  "), None);
        assert_eq!(r("#"), None);
        assert_eq!(r(""), None);
        assert_eq!(r("javascript:alert(1)"), None);
        assert_eq!(r("blob:https://x.test/1"), None);
        assert_eq!(r("file:///etc/passwd"), None);
        assert_eq!(r("ftp://x.test/f.ico"), None);
        assert_eq!(r("about:blank"), None);
        assert!(r("data:image/png;base64,AAAA").is_some());
        assert_eq!(r("DATA:image/png,x").unwrap(), "data:image/png,x");
        // Not a scheme (é is not allowed in one): a relative path, and no panic on the slice.
        assert_eq!(r("dataé:x").unwrap(), "https://x.test/blog/data%C3%A9:x");
        assert_eq!(
            resolve_href(&page("http://x.test/"), "\thttps://cdn.test/a\n.png").unwrap(),
            "https://cdn.test/a.png"
        );
    }

    #[test]
    fn charset_from_header_and_meta() {
        // Case 39: "ícone" in windows-1252 is one byte 0xED.
        let body = b"<head><link rel=icon href=\"/\xedcone.png\"></head>";
        let ex = extract(body, Some("windows-1252"));
        assert_eq!(ex.links[0].href, "/ícone.png");
        let with_meta =
            b"<head><meta charset=windows-1252><link rel=icon href=\"/\xedcone.png\"></head>";
        assert_eq!(extract(with_meta, None).links[0].href, "/ícone.png");
    }

    #[test]
    fn meta_refresh_targets() {
        // Case 64.
        assert_eq!(refresh_target("0; URL='/en/'").unwrap(), "/en/");
        assert_eq!(refresh_target("0;url=/x").unwrap(), "/x");
        assert_eq!(refresh_target("5 ; Url = \"/y\"").unwrap(), "/y");
        assert_eq!(refresh_target("0;/z").unwrap(), "/z");
        assert_eq!(refresh_target("30"), None);
        let ex = extract(
            br#"<head><META HTTP-EQUIV="Refresh" CONTENT="0; URL='/en/'"></head>"#,
            None,
        );
        assert_eq!(ex.refresh.as_deref(), Some("0; URL='/en/'"));
    }
}
