use super::*;
use crate::finder::links::*;
use url::Url;

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
    // rel is a case-insensitive token list (any order, extra tokens, odd whitespace); substring
    // look-alikes are not icons; mask-icon and fluid-icon keep their own kinds, precomposed is
    // apple-touch;
    // unquoted and XHTML syntax parse as a browser parses them.
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
    // Only what a browser would see counts: links in comments, <template> and script strings
    // are ignored; links between </head> and <body> are head links, later ones are marked as
    // body links.
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
    // The noscript link is kept apart, as a last resort.
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
        assert!(is_data_url(&l.href) || l.href.len() <= MAX_URL_BYTES);
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
    // The first <base href> wins, and a root-relative base resolves against the origin, not
    // the page's path.
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
    // Hrefs resolve as a browser resolves them: relative to the page's path, dot segments,
    // protocol-relative, non-ASCII percent-encoded, query kept and fragment dropped; empty
    // hrefs and schemes other than http(s) and data: give nothing.
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
    // A page in a legacy charset must be decoded before parsing: "ícone" in windows-1252 is
    // one byte 0xED.
    let body = b"<head><link rel=icon href=\"/\xedcone.png\"></head>";
    let ex = extract(body, Some("windows-1252"));
    assert_eq!(ex.links[0].href, "/ícone.png");
    let with_meta =
        b"<head><meta charset=windows-1252><link rel=icon href=\"/\xedcone.png\"></head>";
    assert_eq!(extract(with_meta, None).links[0].href, "/ícone.png");
}

#[test]
fn meta_refresh_targets() {
    // The content of a <meta refresh> comes in many spellings (case, spaces, quotes).
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

#[test]
fn utf16_behind_a_bom_is_decoded_whatever_the_header_says() {
    // Browsers look for a byte-order mark first; lol_html reads no UTF-16, so the page is
    // turned into UTF-8 on the way in, even when it arrives a byte at a time.
    let html = "<head><link rel=icon href=\"/ícone.png\"><meta charset=windows-1252></head><body>";
    for big_endian in [false, true] {
        let bytes = crate::finder::tests::shapes::utf16(html, big_endian);
        assert_eq!(extract(&bytes, Some("utf-8")).links[0].href, "/ícone.png");
        let mut p = HeadParser::new(Some("windows-1252"));
        for b in &bytes {
            p.write(std::slice::from_ref(b));
        }
        assert!(p.done());
        assert_eq!(p.finish().links[0].href, "/ícone.png");
    }
    // A UTF-8 BOM split over two writes still wins over the header.
    let mut p = HeadParser::new(Some("windows-1251"));
    p.write(b"\xef\xbb");
    p.write(b"\xbf<link rel=icon href=/\xc3\xadcone.png>");
    assert_eq!(p.finish().links[0].href, "/ícone.png");
}

#[test]
fn a_long_head_is_read_to_its_cap_and_a_body_scan_is_bounded() {
    // Megabytes of inline script before the icon link are read through; a head that never
    // ends is given up at its cap, and a body without links is scanned only so far.
    let filler = vec![b'a'; 64 * 1024];
    let mut p = HeadParser::new(None);
    p.write(b"<html><head><script>");
    for _ in 0..(3 << 20) / filler.len() {
        p.write(&filler);
    }
    assert!(!p.done());
    p.write(b"</script><link rel=icon href=/late.png></head><body>");
    assert!(p.done());
    assert_eq!(p.finish().links[0].href, "/late.png");

    let mut endless = HeadParser::new(None);
    endless.write(b"<html><head><script>");
    let mut fed = 0;
    while !endless.done() {
        endless.write(&filler);
        fed += filler.len();
        assert!(fed <= HEAD_CAP, "read past the head cap");
    }
    assert!(fed + filler.len() > HEAD_CAP);

    let mut body = HeadParser::new(None);
    body.write(b"<html><head></head><body>");
    let mut fed = 0;
    let text = "<p>text</p>".repeat(1000);
    while !body.done() {
        body.write(text.as_bytes());
        fed += text.len();
        assert!(fed <= BODY_SCAN + text.len(), "scanned past the body bound");
    }
}

#[test]
fn an_element_a_head_cannot_hold_starts_the_body() {
    // As the HTML parser does: a page that never writes `<body>` has one from its first
    // `<div>`, so its links after that are body links and its head ends there.
    let ex = extract(
        b"<title>t</title><link rel=icon href=/h.png><template><div></div></template>\
          <link rel=icon href=/t.png><div>x</div><link rel=icon href=/b.png>",
        None,
    );
    assert_eq!(
        hrefs(&ex),
        [
            ("/h.png", Icon, false),
            ("/t.png", Icon, false),
            ("/b.png", Icon, true)
        ]
    );
    assert!(ex.head_closed);
    let mut p = HeadParser::new(None);
    p.write(b"<html><p>no head, no icons");
    assert!(!p.done(), "body links are still looked for");
}
