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

use super::{Candidate, CandidateSource};
use lol_html::send::{EndTagHandler, HtmlRewriter, Settings};
use lol_html::{AsciiCompatibleEncoding, element, text};
use std::sync::{Arc, Mutex, PoisonError};
use url::Url;

/// A data: URL longer than this is skipped (it would be a huge inline image).
const MAX_DATA_URL: usize = 256 * 1024;
/// `<noscript>` text kept for the last-resort parse.
const MAX_NOSCRIPT: usize = 64 * 1024;

/// An icon-ish `<link>` as written in the page.
#[derive(Debug, Clone, PartialEq)]
pub struct RawLink {
    /// Which kind of declaration it is.
    pub source: CandidateSource,
    /// The href, untrimmed.
    pub href: String,
    /// The `sizes` attribute.
    pub sizes: Option<String>,
    /// The `type` attribute.
    pub type_: Option<String>,
    /// Seen after `<body>` started.
    pub in_body: bool,
    /// The `media` attribute (`(prefers-color-scheme: dark)` marks a dark variant).
    pub media: Option<String>,
}

impl RawLink {
    fn is_dark_variant(&self) -> bool {
        self.media.as_deref().is_some_and(|m| {
            let m: String = m
                .chars()
                .filter(|c| !c.is_whitespace())
                .collect::<String>()
                .to_ascii_lowercase();
            m.contains("prefers-color-scheme:dark")
        })
    }
}

/// Everything the page declared that matters for icons.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Extracted {
    /// The first `<base href>`.
    pub base: Option<String>,
    /// Icon links in document order.
    pub links: Vec<RawLink>,
    /// `<link rel=manifest>` hrefs.
    pub manifests: Vec<String>,
    /// `msapplication-TileImage` contents.
    pub tiles: Vec<String>,
    /// The first `<meta http-equiv=refresh>` content.
    pub refresh: Option<String>,
    /// Icon links found inside `<noscript>` (a last resort: scripting browsers ignore them).
    pub noscript_links: Vec<RawLink>,
    /// `</head>` or `<body>` was reached.
    pub head_closed: bool,
    /// Raw `<noscript>` text seen so far (bounded), parsed when the page ends.
    noscript_text: String,
    /// Nesting depth of `<template>` (content inside is ignored).
    template_depth: usize,
    in_body: bool,
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
        if let Some(r) = self.rewriter.as_mut()
            && r.write(chunk).is_err()
        {
            // Keep what was found so far; a parse failure must not lose earlier links.
            self.failed = true;
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
        .append_element_content_handler(element!("link", move |el| {
            let rel = el.get_attribute("rel").unwrap_or_default();
            let href = el.get_attribute("href");
            let sizes = el.get_attribute("sizes");
            let type_ = el.get_attribute("type");
            let media = el.get_attribute("media");
            with(&s_link, |s| {
                if s.template_depth > 0 {
                    return;
                }
                let Some(href) = href else { return };
                match rel_kind(&rel) {
                    Some(RelKind::Manifest) => s.manifests.push(href),
                    Some(RelKind::Icon(source)) => s.links.push(RawLink {
                        source,
                        href,
                        sizes,
                        type_,
                        in_body: s.in_body,
                        media,
                    }),
                    None => {}
                }
            });
            Ok(())
        }))
        .append_element_content_handler(element!("base", move |el| {
            let href = el.get_attribute("href");
            with(&s_base, |s| {
                if s.template_depth == 0 && s.base.is_none() {
                    s.base = href;
                }
            });
            Ok(())
        }))
        .append_element_content_handler(element!("meta", move |el| {
            let name = el.get_attribute("name").unwrap_or_default();
            let equiv = el.get_attribute("http-equiv").unwrap_or_default();
            let content = el.get_attribute("content");
            with(&s_meta, |s| {
                if s.template_depth > 0 {
                    return;
                }
                let Some(content) = content else { return };
                if name.trim().eq_ignore_ascii_case("msapplication-TileImage") {
                    s.tiles.push(content);
                } else if equiv.trim().eq_ignore_ascii_case("refresh") && s.refresh.is_none() {
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
                if s.template_depth == 0 && s.noscript_text.len() < MAX_NOSCRIPT {
                    s.noscript_text.push_str(t.as_str());
                }
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

/// Resolves an href the way a browser would, keeping only http(s) (fragment dropped) and
/// bounded `data:` URLs; empty, `#…`, `javascript:` and other schemes give `None`.
pub fn resolve_href(base: &Url, href: &str) -> Option<String> {
    let href = href.trim_matches(|c: char| c.is_ascii_whitespace());
    if href.is_empty() || href.starts_with('#') {
        return None;
    }
    if href
        .get(..5)
        .is_some_and(|p| p.eq_ignore_ascii_case("data:"))
    {
        return (href.len() <= MAX_DATA_URL).then(|| format!("data:{}", &href[5..]));
    }
    let mut url = base.join(href).ok()?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return None;
    }
    url.set_fragment(None);
    Some(url.into())
}

/// The base URL for hrefs: the first `<base href>` resolved against the page, else the page.
pub fn base_url(ex: &Extracted, page: &Url) -> Url {
    ex.base
        .as_deref()
        .map(|b| b.trim_matches(|c: char| c.is_ascii_whitespace()))
        .filter(|b| !b.is_empty())
        .and_then(|b| page.join(b).ok())
        .filter(|u| matches!(u.scheme(), "http" | "https"))
        .unwrap_or_else(|| page.clone())
}

/// Turns the page's declarations into candidates (declaration order) and manifest URLs.
pub fn candidates(ex: &Extracted, page: &Url) -> (Vec<Candidate>, Vec<Url>) {
    let base = base_url(ex, page);
    let mut out = Vec::new();
    // Case 16: the light/default icon is primary. Ranking lets the later of two equal
    // declarations win, so dark variants are listed first and lose ties to the others.
    let (dark, rest): (Vec<&RawLink>, Vec<&RawLink>) =
        ex.links.iter().partition(|l| l.is_dark_variant());
    out.extend(
        dark.into_iter()
            .chain(rest)
            .filter_map(|l| link_candidate(&base, l, l.in_body)),
    );
    for t in &ex.tiles {
        if let Some(url) = resolve_href(&base, t) {
            out.push(Candidate::new(url, CandidateSource::Tile));
        }
    }
    let manifests = ex
        .manifests
        .iter()
        .filter_map(|m| resolve_href(&base, m))
        .filter(|m| !m.starts_with("data:"))
        .filter_map(|m| Url::parse(&m).ok())
        .collect();
    (out, manifests)
}

/// The `<noscript>` icon links as candidates (marked `in_body`), resolved like the others: the
/// finder tries them only when no other candidate verified.
pub fn noscript_candidates(ex: &Extracted, page: &Url) -> Vec<Candidate> {
    let base = base_url(ex, page);
    ex.noscript_links
        .iter()
        .filter(|l| l.source != CandidateSource::MaskIcon)
        .filter_map(|l| link_candidate(&base, l, true))
        .collect()
}

/// A `<link>` as a candidate, with what it declared; `None` when its href is unusable.
fn link_candidate(base: &Url, l: &RawLink, in_body: bool) -> Option<Candidate> {
    Some(Candidate {
        declared_sizes: l.sizes.clone(),
        declared_type: l.type_.clone(),
        in_body,
        ..Candidate::new(resolve_href(base, &l.href)?, l.source)
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
mod tests {
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
        let (c, _) = candidates(&ex, &page("https://x.test/"));
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
    fn dark_variant_loses_ties() {
        let ex = extract(
            br#"<head><link rel=icon href=/light.svg type=image/svg+xml>
            <link rel=icon href=/dark.svg type=image/svg+xml media="(prefers-color-scheme: dark)"></head>"#,
            None,
        );
        let (c, _) = candidates(&ex, &page("https://x.test/"));
        let ranked = crate::finder::rank::rank(c);
        assert_eq!(ranked[0].url, "https://x.test/light.svg");
    }

    #[test]
    fn base_href_first_wins_and_root_relative() {
        // Cases 23, 24.
        let ex = extract(
            br#"<head><base href="https://static.x.test/v2/"><base href="/other/"><link rel=icon href="i.png"></head>"#,
            None,
        );
        let (c, _) = candidates(&ex, &page("https://x.test/en/home"));
        assert_eq!(c[0].url, "https://static.x.test/v2/i.png");
        let ex = extract(
            br#"<head><base href="/app/"><link rel=icon href="i.png"></head>"#,
            None,
        );
        let (c, _) = candidates(&ex, &page("https://x.test/en/home"));
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
