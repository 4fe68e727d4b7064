//! Streaming extraction of icon declarations with lol_html (an HTML5 tokenizer, so comments,
//! `<script>`/`<style>`/`<noscript>` raw text and attribute quoting behave as in browsers).
//!
//! Policy: the caller feeds body chunks and stops reading once the head has ended (`</head>`,
//! `<body>`, or an element a head cannot hold) *and* at least one icon link was found; when the head declared no icon it keeps reading
//! for [`BODY_SCAN`] more bytes so that links a CMS injected into `<body>` are still found
//! (ranked lower). A head may be long (server-rendered apps inline megabytes of state before
//! their icon links), so it is read up to [`HEAD_CAP`] bytes; the tokenizer streams, so a long
//! head costs time, not memory.
//! Links between `</head>` and `<body>` count as head links, as the HTML parser moves them there.
//! `<template>` content is inert and ignored. `<noscript>` content is raw text for lol_html (a
//! scripting browser ignores it too), so its links are not head links; the text is kept
//! (bounded) and parsed on its own at the end, and its icon links are offered separately as a
//! last resort, tried only when nothing else, `/favicon.ico` included, verified.
//!
//! Bounds: whatever the page holds, what is kept is bounded by the constants below: at most
//! [`MAX_LINKS`] distinct links, [`MAX_TILES`] tiles and [`MAX_MANIFEST_LINKS`] manifests, hrefs
//! and bases within [`MAX_URL_BYTES`] (`data:` within [`MAX_DATA_URL_BYTES`]), declared tokens
//! within [`MAX_TOKEN_BYTES`], and lol_html's own buffers within [`PARSER_MEMORY`]. Exact
//! repeats are removed before anything is resolved, so 20,000 copies of one link cost one.
//! Attribute values are decoded as a browser decodes them before any of this.
//!
//! Encodings: as in browsers, a byte-order mark wins over the Content-Type's charset, which
//! wins over `<meta charset>`. lol_html reads only ASCII-compatible encodings, so a UTF-16 page
//! is turned into UTF-8 on the way in.

use super::CandidateSource;
use crate::clean::{self, MAX_DATA_URL_BYTES, MAX_TOKEN_BYTES, MAX_URL_BYTES, is_data_url};
use lol_html::AsciiCompatibleEncoding;
use lol_html::send::HtmlRewriter;
use std::sync::{Arc, Mutex, PoisonError};

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
/// Bytes of a page read at most while its head is still open: pages inlining several
/// megabytes of script or JSON before their icon links exist, and browsers read them all.
pub const HEAD_CAP: usize = 8 * 1024 * 1024;
/// Bytes read past the head's end looking for icon links in `<body>`, when the head had none.
pub const BODY_SCAN: usize = 1024 * 1024;
/// The elements a head holds (the HTML parser's "in head" and "after head" rules); any other
/// start tag begins the body.
const IN_HEAD: [&str; 13] = [
    "html", "head", "base", "basefont", "bgsound", "link", "meta", "title", "noscript", "noframes",
    "style", "script", "template",
];
/// Bytes of a byte-order mark at most (UTF-8's).
const BOM_BYTES: usize = 3;
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
    /// The first `msapplication-config` content: where the site's `browserconfig.xml` is, or
    /// `none` when the site says it has none (within [`MAX_URL_BYTES`]).
    pub browserconfig: Option<String>,
    /// Icon links found inside `<noscript>` (a last resort: scripting browsers ignore them).
    pub noscript_links: Vec<RawLink>,
    /// `</head>` was reached, or the body started (`<body>`, or an element a head cannot hold).
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
            + opt(&self.browserconfig)
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

/// The longest href kept: a URL is never cut (a cut URL is another URL), so a longer one is
/// dropped; a `data:` URL may be longer, up to the inline icon cap.
fn href_cap(href: &str) -> usize {
    if is_data_url(href) {
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
    /// The first bytes, held until there are enough to look for a byte-order mark.
    sniffed: Vec<u8>,
    /// Turns a UTF-16 page into the UTF-8 that lol_html is given.
    utf16: Option<encoding_rs::Decoder>,
    state: Shared,
    failed: bool,
    /// Bytes of the page written so far, as they came.
    fed: usize,
    /// `fed` when the head was first seen closed.
    head_end: Option<usize>,
}

impl HeadParser {
    /// A parser for a page whose Content-Type named `charset` (if any).
    pub fn new(charset: Option<&str>) -> Self {
        Self {
            charset: charset.map(str::to_string),
            rewriter: None,
            sniffed: Vec::new(),
            utf16: None,
            state: Shared::default(),
            failed: false,
            fed: 0,
            head_end: None,
        }
    }

    /// Parses one more chunk; the first bytes decide the encoding (BOM, header, then meta).
    pub fn write(&mut self, chunk: &[u8]) {
        if self.failed {
            return;
        }
        self.fed = self.fed.saturating_add(chunk.len());
        if self.rewriter.is_some() {
            self.decode(chunk, false);
        } else if self.sniffed.len() + chunk.len() < BOM_BYTES {
            // Too few bytes to tell a byte-order mark yet (a hostile server may send one at a
            // time).
            self.sniffed.extend_from_slice(chunk);
            return;
        } else if self.sniffed.is_empty() {
            self.start(chunk);
            self.decode(chunk, false);
        } else {
            let mut first = std::mem::take(&mut self.sniffed);
            first.extend_from_slice(chunk);
            self.start(&first);
            self.decode(&first, false);
        }
        if self.head_end.is_none() && with(&self.state, |s| s.head_closed) {
            self.head_end = Some(self.fed);
        }
    }

    /// Chooses the encoding from the page's first bytes and builds the rewriter.
    fn start(&mut self, first: &[u8]) {
        use encoding_rs::{UTF_16BE, UTF_16LE};
        let bom = encoding_rs::Encoding::for_bom(first).map(|(e, _)| e);
        let header = self
            .charset
            .as_deref()
            .and_then(|l| encoding_rs::Encoding::for_label(l.trim().as_bytes()));
        let enc = match bom.or(header) {
            Some(e) if e == UTF_16LE || e == UTF_16BE => {
                // The decoder removes the BOM itself (and would follow one that disagreed
                // with a header's label, as browsers do).
                self.utf16 = Some(e.new_decoder());
                None
            }
            Some(_) if bom.is_some() => None,
            Some(e) => AsciiCompatibleEncoding::new(e),
            None => None,
        };
        // Only a page whose encoding nothing else named may be switched by `<meta charset>`.
        let from_meta = bom.is_none() && enc.is_none() && self.utf16.is_none();
        let enc = enc.unwrap_or_else(AsciiCompatibleEncoding::utf_8);
        self.rewriter = Some(build(self.state.clone(), enc, from_meta));
    }

    /// Hands `bytes` to lol_html, through the UTF-16 decoder when the page needs it; `last`
    /// flushes the decoder.
    fn decode(&mut self, bytes: &[u8], last: bool) {
        let Some(mut decoder) = self.utf16.take() else {
            self.feed(bytes);
            return;
        };
        // UTF-16 becomes at most half again as many bytes of UTF-8; they are produced and
        // fed a slice at a time.
        let mut out = vec![0u8; FEED_SLICE];
        let mut input = bytes;
        loop {
            let (result, read, written, _) = decoder.decode_to_utf8(input, &mut out, last);
            input = &input[read..];
            self.feed(&out[..written]);
            if result == encoding_rs::CoderResult::InputEmpty || self.failed {
                break;
            }
        }
        self.utf16 = Some(decoder);
    }

    /// Hands already-decoded bytes to lol_html.
    fn feed(&mut self, bytes: &[u8]) {
        let Some(r) = self.rewriter.as_mut() else {
            return;
        };
        // lol_html appends a whole new chunk to any tag left unfinished by the previous one and
        // counts it against its memory limit, so a large network chunk could trip the limit on
        // an ordinary page: it is fed in slices, and only a really large tag trips it.
        if let Some(e) = bytes
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

    /// Whether reading can stop: the head is complete and declared an icon source, or
    /// [`BODY_SCAN`] bytes past its end found none, or [`HEAD_CAP`] bytes did not end it, or
    /// the parser gave up.
    pub fn done(&self) -> bool {
        if self.failed {
            return true;
        }
        let declared = with(&self.state, |s| {
            !(s.links.is_empty() && s.manifests.is_empty() && s.tiles.is_empty())
        });
        match self.head_end {
            Some(end) => declared || self.fed - end >= BODY_SCAN,
            None => self.fed >= HEAD_CAP,
        }
    }

    /// Ends parsing and returns what was found.
    pub fn finish(mut self) -> Extracted {
        if self.rewriter.is_none() && !self.sniffed.is_empty() {
            let first = std::mem::take(&mut self.sniffed);
            self.start(&first);
            self.decode(&first, false);
        }
        if !self.failed {
            self.decode(&[], true);
        }
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

mod handlers;
use handlers::build;

#[cfg(test)]
pub(crate) mod tests;
