//! What lol_html does at each element that matters: one handler per kind of tag, each
//! writing what it found into the shared [`Extracted`](super::Extracted), and the rewriter
//! that runs them.

use super::{
    DATA_URL_PREVIEW, IN_HEAD, MAX_NOSCRIPT, PARSER_MEMORY, RawLink, Rewriter, Shared, decoded,
    href_cap, push_distinct, token, with,
};
use super::{MAX_MANIFEST_LINKS, MAX_TILES};
use crate::clean::{self, MAX_TOKEN_BYTES, MAX_URL_BYTES, is_data_url};
use crate::finder::CandidateSource;
use lol_html::html_content::TextChunk;
use lol_html::send::{Element, ElementContentHandlers, EndTagHandler, HtmlRewriter, Settings};
use lol_html::{AsciiCompatibleEncoding, HandlerResult, MemorySettings, Selector};
use std::borrow::Cow;
use std::sync::LazyLock;

/// The handlers' selectors, parsed once: parsing them again for every page was a percent of
/// the finder's CPU (see BENCHMARKS.md, issue 29).
static SELECTORS: LazyLock<[Selector; 7]> = LazyLock::new(|| {
    ["link", "base", "meta", "template", "head", "noscript", "*"]
        .map(|s| s.parse().expect("the handlers' selectors are valid"))
});

/// One element handler on a selector parsed once.
fn on<'h>(
    selector: &'static Selector,
    handler: impl FnMut(&mut Element<'_, '_>) -> HandlerResult + Send + 'h,
) -> (Cow<'static, Selector>, ElementContentHandlers<'h>) {
    (
        Cow::Borrowed(selector),
        ElementContentHandlers::default().element(handler),
    )
}

/// The rewriter for one page: its encoding, the parser's memory limit, and the handlers.
pub(super) fn build(state: Shared, enc: AsciiCompatibleEncoding, from_meta: bool) -> Rewriter {
    let (s_link, s_base, s_meta, s_tpl, s_head, s_body, s_nos) = (
        state.clone(),
        state.clone(),
        state.clone(),
        state.clone(),
        state.clone(),
        state.clone(),
        state,
    );
    let [link, base, meta, template, head, noscript, any] = &*SELECTORS;
    let settings = Settings::new_send()
        .with_encoding(enc)
        .with_adjust_charset_on_meta_tag(from_meta)
        .with_memory_settings(MemorySettings::new().with_max_allowed_memory_usage(PARSER_MEMORY))
        .append_element_content_handler(on(link, move |el| on_link(&s_link, el)))
        .append_element_content_handler(on(base, move |el| on_base(&s_base, el)))
        .append_element_content_handler(on(meta, move |el| on_meta(&s_meta, el)))
        .append_element_content_handler(on(template, move |el| on_template(&s_tpl, el)))
        .append_element_content_handler(on(head, move |el| on_head(&s_head, el)))
        .append_element_content_handler((
            Cow::Borrowed(noscript),
            ElementContentHandlers::default()
                .text(move |t: &mut TextChunk<'_>| on_noscript(&s_nos, t)),
        ))
        .append_element_content_handler(on(any, move |el| on_any(&s_body, el)));
    let sink: fn(&[u8]) = |_| {};
    HtmlRewriter::new(settings, sink)
}

/// `<link rel=icon|apple-touch-icon|…|manifest>`: a declared icon or manifest.
fn on_link(state: &Shared, el: &Element<'_, '_>) -> HandlerResult {
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
    with(state, |s| {
        if s.template_depth > 0 {
            return;
        }
        let Some(href) = href else { return };
        let too_long = href.len() > href_cap(&href);
        match kind {
            RelKind::Manifest if too_long || is_data_url(&href) => s.count_dropped(),
            RelKind::Manifest => {
                push_distinct(&mut s.manifests, href, MAX_MANIFEST_LINKS, &mut s.dropped)
            }
            RelKind::Icon(_) if too_long && !is_data_url(&href) => s.count_dropped(),
            RelKind::Icon(source) => {
                // An inline icon over the cap stays visible as a rejected candidate, but only
                // a short preview of its URL is kept.
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
}

/// `<base href>`: the first one outside a template, if it fits.
fn on_base(state: &Shared, el: &Element<'_, '_>) -> HandlerResult {
    let href = decoded(el.get_attribute("href"));
    with(state, |s| {
        if s.template_depth == 0 && s.base.is_none() && !s.base_too_long {
            match href {
                Some(h) if h.len() > MAX_URL_BYTES => s.base_too_long = true,
                h => s.base = h,
            }
        }
    });
    Ok(())
}

/// `<meta>`: a tile image, a `browserconfig.xml`, or a refresh to follow.
fn on_meta(state: &Shared, el: &Element<'_, '_>) -> HandlerResult {
    let name = decoded(el.get_attribute("name")).unwrap_or_default();
    let equiv = decoded(el.get_attribute("http-equiv")).unwrap_or_default();
    let is_tile = name.trim().eq_ignore_ascii_case("msapplication-TileImage");
    let is_config = name.trim().eq_ignore_ascii_case("msapplication-config");
    let is_refresh = equiv.trim().eq_ignore_ascii_case("refresh");
    if !is_tile && !is_config && !is_refresh {
        return Ok(());
    }
    let content = decoded(el.get_attribute("content"));
    with(state, |s| {
        if s.template_depth > 0 {
            return;
        }
        let Some(content) = content else { return };
        // A refresh content is a delay, `;` and a URL: a few bytes past a URL's cap.
        if content.len() > MAX_URL_BYTES + MAX_TOKEN_BYTES || (is_tile && is_data_url(&content)) {
            if is_tile {
                s.count_dropped();
            }
            return;
        }
        if is_tile {
            push_distinct(&mut s.tiles, content, MAX_TILES, &mut s.dropped);
        } else if is_config {
            if s.browserconfig.is_none() && content.len() <= MAX_URL_BYTES {
                s.browserconfig = Some(content);
            }
        } else if s.refresh.is_none() {
            s.refresh = Some(content);
        }
    });
    Ok(())
}

/// `<template>`: its content is inert, so the depth is counted until its end tag.
fn on_template(state: &Shared, el: &mut Element<'_, '_>) -> HandlerResult {
    with(state, |s| s.template_depth += 1);
    let st = state.clone();
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
}

/// `<head>`: its end tag closes the head.
fn on_head(state: &Shared, el: &mut Element<'_, '_>) -> HandlerResult {
    let st = state.clone();
    if let Some(h) = el.end_tag_handlers() {
        let end: EndTagHandler<'static> = Box::new(move |_| {
            with(&st, |s| s.head_closed = true);
            Ok(())
        });
        h.push(end);
    }
    Ok(())
}

/// `<noscript>` raw text, kept (bounded) for the last-resort parse.
fn on_noscript(state: &Shared, t: &TextChunk<'_>) -> HandlerResult {
    with(state, |s| {
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
}

/// Any element: as the HTML parser does, `<body>`, or any element a head cannot hold (`<div>`
/// on a page without a `<body>` tag), starts the body. Without it, a page that never writes
/// `<body>` would be read to the head's cap.
fn on_any(state: &Shared, el: &Element<'_, '_>) -> HandlerResult {
    let name = el.tag_name();
    with(state, |s| {
        if !s.in_body && s.template_depth == 0 && !IN_HEAD.contains(&name.as_str()) {
            s.head_closed = true;
            s.in_body = true;
        }
    });
    Ok(())
}

/// What an icon-ish `rel` declares.
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
