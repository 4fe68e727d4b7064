//! The finder against the catalogue (`FINDER-CASES.md`), end to end: one fake internet with a
//! site per scenario, one job holding every scenario domain, worked by the real app, and each
//! result row checked for the exact `favicon_url` or the exact failure category.
//!
//! Every scenario host is named `cNN-what.test` after its catalogue number, so a failure names
//! the case it breaks. The fake internet is plain HTTP, so every site is also an https→http
//! fallback; it is reached only through `FETCH_RESOLVE` rules naming each host (no wildcard),
//! so a name without a site does not resolve and nothing can leak to real DNS.

use crate::fake::{FakeInternet, Route, Sites, dead_addr, gif, ico, png, png_claiming, svg, webp};
use crate::helpers::{Backend, TestApp, both_backends};
use base64::Engine as _;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

/// What the job must say about one scenario domain.
#[derive(Clone, Debug, PartialEq)]
enum Expect {
    /// Success with exactly this `favicon_url` (and these real dimensions, when given).
    Icon(String, Option<(i64, i64)>),
    /// Failure with exactly this `error_code`.
    Fail(&'static str),
}

/// `http://{host}{path}` as the expected favicon.
fn icon(host: &str, path: &str) -> Expect {
    Expect::Icon(format!("http://{host}{path}"), None)
}

/// The same with the real dimensions the finder must report.
fn icon_sized(host: &str, path: &str, w: i64, h: i64) -> Expect {
    Expect::Icon(format!("http://{host}{path}"), Some((w, h)))
}

/// The sites and what each scenario domain must give.
#[derive(Default)]
struct World {
    sites: Sites,
    cases: Vec<(String, Expect)>,
    /// Host-specific resolution (dead ports), before the per-site rules.
    rules: Vec<(String, SocketAddr)>,
}

impl World {
    /// Registers scenario `host` with its expectation and hands back the sites to build it.
    fn case(&mut self, host: &str, expect: Expect) -> &mut Sites {
        assert!(
            !self.cases.iter().any(|(h, _)| h == host),
            "duplicate scenario {host}"
        );
        self.cases.push((host.to_owned(), expect));
        &mut self.sites
    }
}

fn head(links: &str) -> String {
    format!("<!doctype html><html><head><title>t</title>{links}</head><body>hello</body></html>")
}

const ICO: &str = "image/x-icon";
const PNG: &str = "image/png";
const SVG: &str = "image/svg+xml";

/// Rel tokens and attributes: cases 1–9.
fn rel_tokens(w: &mut World) {
    let h = "c01-uppercase-rel.test";
    w.case(h, icon(h, "/Fav.ico"))
        .page(h, &head(r#"<LINK REL="SHORTCUT ICON" HREF="/Fav.ico">"#))
        .file(h, "/Fav.ico", ICO, &ico(&[32]))
        .file(h, "/fav.ico", ICO, &ico(&[48]));

    let h = "c02-token-order.test";
    w.case(h, icon(h, "/a.png"))
        .page(h, &head(r#"<link rel="icon shortcut" href="/a.png">"#))
        .file(h, "/a.png", PNG, &png(32, 32));
    let h = "c02-alternate-icon.test";
    w.case(h, icon(h, "/b.png"))
        .page(h, &head(r#"<link rel="alternate icon" href="/b.png">"#))
        .file(h, "/b.png", PNG, &png(32, 32));

    let h = "c03-whitespace.test";
    w.case(h, icon(h, "/icon.png"))
        .page(h, &head("<link rel=\" icon\n\" href=\"\n /ic\ton.png \">"))
        .file(h, "/icon.png", PNG, &png(32, 32));

    let h = "c04-substring-traps.test";
    w.case(h, icon(h, "/favicon.ico"))
        .page(
            h,
            &head(
                r#"<link rel="apple-touch-startup-image" href="/s.png">
                   <link rel="icons" href="/n.png">
                   <link rel="preload" as="image" href="/favicon.png">"#,
            ),
        )
        .file(h, "/s.png", PNG, &png(64, 64))
        .file(h, "/n.png", PNG, &png(64, 64))
        .file(h, "/favicon.png", PNG, &png(64, 64))
        .file(h, "/favicon.ico", ICO, &ico(&[16]));

    let h = "c05-mask-icon.test";
    w.case(h, icon(h, "/favicon.ico"))
        .page(h, &head("<link rel=mask-icon href=/pin.svg color=#000>"))
        .file(h, "/pin.svg", SVG, &svg())
        .file(h, "/favicon.ico", ICO, &ico(&[16]));
    let h = "c05-mask-icon-only.test";
    w.case(h, Expect::Fail("no_icon"))
        .page(h, &head("<link rel=mask-icon href=/pin.svg color=#000>"))
        .file(h, "/pin.svg", SVG, &svg());

    let h = "c06-fluid-below-apple.test";
    w.case(h, icon(h, "/apple.png"))
        .page(
            h,
            &head(
                r#"<link rel="fluid-icon" href="/fluid.png"><link rel="apple-touch-icon" href="/apple.png">"#,
            ),
        )
        .file(h, "/fluid.png", PNG, &png(512, 512))
        .file(h, "/apple.png", PNG, &png(180, 180));
    let h = "c06-fluid-only.test";
    w.case(h, icon_sized(h, "/fluid.png", 512, 512))
        .page(h, &head(r#"<link rel="fluid-icon" href="/fluid.png">"#))
        // A real 512 px RGBA PNG stored uncompressed would pass the 1 MiB icon cap.
        .file(h, "/fluid.png", PNG, &png_claiming(512, 512))
        .file(h, "/favicon.ico", ICO, &ico(&[16]));

    let h = "c07-precomposed.test";
    w.case(h, icon_sized(h, "/p.png", 180, 180))
        .page(
            h,
            &head(r#"<link rel="apple-touch-icon-precomposed" href="/p.png">"#),
        )
        .file(h, "/p.png", PNG, &png(180, 180))
        .file(h, "/favicon.ico", ICO, &ico(&[16]));

    let h = "c08-empty-href.test";
    w.case(h, icon(h, "/favicon.ico"))
        .page(
            h,
            &head(r##"<link rel="icon" href=""><link rel="icon" href="#"><link rel="icon">"##),
        )
        .file(h, "/favicon.ico", ICO, &ico(&[16]));

    let h = "c09-xhtml-unquoted.test";
    w.case(h, icon(h, "/f.png"))
        .page(h, &head("<LINK rel=icon href=/f.png />"))
        .file(h, "/f.png", PNG, &png(32, 32));
    let h = "c09-slash-glued.test";
    w.case(h, icon(h, "/g.png/"))
        .page(h, &head("<link rel=icon href=/g.png/>"))
        .file(h, "/g.png/", PNG, &png(32, 32))
        .file(h, "/g.png", PNG, &png(32, 32));
}

/// Sizes and picking: cases 10–18.
fn sizes(w: &mut World) {
    let h = "c10-multi-size-ico.test";
    w.case(h, icon_sized(h, "/m.ico", 48, 48))
        .page(
            h,
            &head(r#"<link rel="icon" href="/m.ico" sizes="16x16 32x32 48x48">"#),
        )
        .file(h, "/m.ico", ICO, &ico(&[16, 32, 48]));

    let h = "c11-svg-any.test";
    w.case(h, icon(h, "/s.svg"))
        .page(
            h,
            &head(
                r#"<link rel="icon" href="/s.svg" sizes="any" type="image/svg+xml">
                   <link rel="icon" href="/p.png" sizes="32x32">"#,
            ),
        )
        .file(h, "/s.svg", SVG, &svg())
        .file(h, "/p.png", PNG, &png(32, 32));

    let h = "c12-malformed-sizes.test";
    w.case(h, icon_sized(h, "/c.png", 96, 96))
        .page(
            h,
            &head(
                r#"<link rel="icon" href="/a.png" sizes="32X32">
                   <link rel="icon" href="/b.png" sizes="48×48">
                   <link rel="icon" href="/c.png" sizes="96x96+">
                   <link rel="icon" href="/d.png" sizes="banana">"#,
            ),
        )
        .file(h, "/a.png", PNG, &png(32, 32))
        .file(h, "/b.png", PNG, &png(48, 48))
        .file(h, "/c.png", PNG, &png(96, 96))
        .file(h, "/d.png", PNG, &png(16, 16));

    let h = "c13-lying-sizes.test";
    w.case(h, icon_sized(h, "/real.png", 64, 64))
        .page(
            h,
            &head(
                r#"<link rel="icon" href="/big.png" sizes="192x192">
                   <link rel="icon" href="/real.png" sizes="16x16">"#,
            ),
        )
        .file(h, "/big.png", PNG, &png(16, 16))
        .file(h, "/real.png", PNG, &png(64, 64));

    let manifest = br#"{"icons":[{"src":"/m192.png","sizes":"192x192","type":"image/png"}]}"#;
    let h = "c14-pick-svg.test";
    w.case(h, icon(h, "/i.svg"))
        .page(
            h,
            &head(
                r#"<link rel="icon" href="/16.png" sizes="16x16">
                   <link rel="icon" href="/i.svg" type="image/svg+xml">
                   <link rel="icon" href="/32.png" sizes="32x32">
                   <link rel="apple-touch-icon" href="/180.png">
                   <link rel="manifest" href="/m.json">"#,
            ),
        )
        .file(h, "/16.png", PNG, &png(16, 16))
        .file(h, "/32.png", PNG, &png(32, 32))
        .file(h, "/i.svg", SVG, &svg())
        .file(h, "/180.png", PNG, &png(180, 180))
        .file(h, "/m.json", "application/json", manifest)
        .file(h, "/m192.png", PNG, &png(192, 192));
    // Our policy: rel=icon is a tier above apple-touch and manifest, so among the icons the
    // largest below 64 wins rather than the 180 px apple-touch icon.
    let h = "c14-pick-raster.test";
    w.case(h, icon_sized(h, "/32.png", 32, 32))
        .page(
            h,
            &head(
                r#"<link rel="icon" href="/16.png" sizes="16x16">
                   <link rel="icon" href="/32.png" sizes="32x32">
                   <link rel="apple-touch-icon" href="/180.png">
                   <link rel="manifest" href="/m.json">"#,
            ),
        )
        .file(h, "/16.png", PNG, &png(16, 16))
        .file(h, "/32.png", PNG, &png(32, 32))
        .file(h, "/180.png", PNG, &png(180, 180))
        .file(h, "/m.json", "application/json", manifest)
        .file(h, "/m192.png", PNG, &png(192, 192));
    let h = "c14-closest-above-64.test";
    w.case(h, icon_sized(h, "/96.png", 96, 96))
        .page(
            h,
            &head(
                r#"<link rel="icon" href="/512.png"><link rel="icon" href="/96.png">
                   <link rel="icon" href="/48.png">"#,
            ),
        )
        .file(h, "/512.png", PNG, &png(512, 512))
        .file(h, "/96.png", PNG, &png(96, 96))
        .file(h, "/48.png", PNG, &png(48, 48));
    let h = "c14-later-wins.test";
    w.case(h, icon(h, "/second.png"))
        .page(
            h,
            &head(r#"<link rel="icon" href="/first.png"><link rel="icon" href="/second.png">"#),
        )
        .file(h, "/first.png", PNG, &png(32, 32))
        .file(h, "/second.png", PNG, &png(32, 32));
    let h = "c14-png-over-ico.test";
    w.case(h, icon(h, "/x.png"))
        .page(
            h,
            &head(r#"<link rel="icon" href="/x.png"><link rel="icon" href="/x.ico">"#),
        )
        .file(h, "/x.png", PNG, &png(32, 32))
        .file(h, "/x.ico", ICO, &ico(&[32]));

    let h = "c15-non-square.test";
    w.case(h, icon(h, "/favicon.ico"))
        .page(h, &head(r#"<link rel="icon" href="/wide.png">"#))
        .file(h, "/wide.png", PNG, &png(300, 100))
        .file(h, "/favicon.ico", ICO, &ico(&[16]));
    let h = "c15-non-square-last-resort.test";
    w.case(h, icon_sized(h, "/wide.png", 300, 100))
        .page(h, &head(r#"<link rel="icon" href="/wide.png">"#))
        .file(h, "/wide.png", PNG, &png(300, 100));

    let h = "c16-dark-variant.test";
    w.case(h, icon(h, "/light.png"))
        .page(
            h,
            &head(
                r#"<link rel="icon" href="/light.png">
                   <link rel="icon" href="/dark.png" media="(prefers-color-scheme: dark)">"#,
            ),
        )
        .file(h, "/light.png", PNG, &png(32, 32))
        .file(h, "/dark.png", PNG, &png(32, 32));

    // Only the colour-scheme rule keeps the dark SVG (scalable, declared last) behind a 16 px
    // PNG; alone, it is still chosen.
    let h = "c16-dark-svg-loses.test";
    w.case(h, icon_sized(h, "/light.png", 16, 16))
        .page(
            h,
            &head(
                r#"<link rel="icon" href="/light.png" sizes="16x16">
                   <link rel="icon" href="/dark.svg" type="image/svg+xml" media="(prefers-color-scheme: dark)">"#,
            ),
        )
        .file(h, "/light.png", PNG, &png(16, 16))
        .file(h, "/dark.svg", SVG, &svg());
    let h = "c16-dark-only.test";
    w.case(h, icon(h, "/dark.png"))
        .page(
            h,
            &head(r#"<link rel="icon" href="/dark.png" media="(prefers-color-scheme: dark)">"#),
        )
        .file(h, "/dark.png", PNG, &png(32, 32));

    let h = "c17-type-lies.test";
    w.case(h, icon_sized(h, "/t.svg", 32, 32))
        .page(
            h,
            &head(r#"<link rel="icon" type="image/svg+xml" href="/t.svg">"#),
        )
        .file(h, "/t.svg", SVG, &png(32, 32));

    let h = "c18-webp.test";
    w.case(h, icon_sized(h, "/w.webp", 32, 32))
        .page(h, &head(r#"<link rel="icon" href="/w.webp">"#))
        .file(h, "/w.webp", "image/webp", &webp(32, 32));
}

/// URL resolution: cases 19–30 (22 needs https, see the unit tests).
fn urls(w: &mut World) {
    let h = "c19-path-relative.test";
    w.case(h, icon(h, "/blog/img/f.png"))
        .route(h, "/", Route::redirect(302, "/blog/post"))
        .route(
            h,
            "/blog/post",
            Route::html(&head(r#"<link rel="icon" href="img/f.png">"#)),
        )
        .file(h, "/blog/img/f.png", PNG, &png(32, 32))
        .file(h, "/img/f.png", PNG, &png(32, 32));

    let h = "c20-dot-segments.test";
    w.case(h, icon(h, "/a/assets/f.ico"))
        .route(h, "/", Route::redirect(302, "/a/b/c/"))
        .route(
            h,
            "/a/b/c/",
            Route::html(&head(r#"<link rel="icon" href="../../assets/f.ico">"#)),
        )
        .file(h, "/a/assets/f.ico", ICO, &ico(&[32]));

    let h = "c21-protocol-relative.test";
    let cdn = "cdn.c21-protocol-relative.test";
    w.case(h, icon(cdn, "/i.ico"))
        .page(
            h,
            &head(&format!(r#"<link rel="SHORTCUT ICON" href=//{cdn}/i.ico>"#)),
        )
        .file(cdn, "/i.ico", ICO, &ico(&[32]));

    let h = "c23-base-href.test";
    let st = "static.c23-base-href.test";
    w.case(h, icon(st, "/v2/i.png"))
        .page(
            h,
            &head(&format!(
                r#"<base href="http://{st}/v2/"><base href="/other/"><link rel="icon" href="i.png">"#
            )),
        )
        .file(st, "/v2/i.png", PNG, &png(32, 32))
        .file(h, "/other/i.png", PNG, &png(32, 32))
        .file(h, "/i.png", PNG, &png(32, 32));

    let h = "c24-root-relative-base.test";
    w.case(h, icon(h, "/app/f.png"))
        .route(h, "/", Route::redirect(302, "/en/home"))
        .route(
            h,
            "/en/home",
            Route::html(&head(
                r#"<base href="/app/"><link rel="icon" href="f.png">"#,
            )),
        )
        .file(h, "/app/f.png", PNG, &png(32, 32))
        .file(h, "/en/home/app/f.png", PNG, &png(32, 32));

    let h = "c25-non-ascii-path.test";
    w.case(h, icon(h, "/%C3%ADcone%20final.png"))
        .page(h, &head(r#"<link rel="icon" href="/ícone final.png">"#))
        .file(h, "/%C3%ADcone%20final.png", PNG, &png(32, 32));

    let h = "c26-cache-buster.test";
    w.case(h, icon(h, "/f.png?v=3"))
        .page(h, &head(r#"<link rel="icon" href="/f.png?v=3#x">"#))
        .file(h, "/f.png", PNG, &png(32, 32));

    // Character references in an attribute are decoded before the URL is resolved.
    let h = "c26-entity-in-href.test";
    w.case(h, icon(h, "/icons/a&b.png?v=3&s=32"))
        .page(
            h,
            &head(r#"<link rel="icon" href="/icons/a&amp;b.png?v=3&#38;s=32">"#),
        )
        .file(h, "/icons/a&b.png", PNG, &png(32, 32));

    let h = "c27-data-base64.test";
    let b64 = base64::engine::general_purpose::STANDARD.encode(png(16, 16));
    let data = format!("data:image/png;base64,{b64}");
    w.case(h, Expect::Icon(data.clone(), Some((16, 16))))
        .page(h, &head(&format!(r#"<link rel="icon" href="{data}">"#)))
        .file(h, "/favicon.ico", ICO, &ico(&[16]));

    let h = "c28-data-svg.test";
    let data = "data:image/svg+xml,%3Csvg%20xmlns='http://www.w3.org/2000/svg'%20viewBox='0%200%2024%2024'%3E%3C/svg%3E";
    w.case(h, Expect::Icon(data.to_owned(), Some((24, 24))))
        .page(h, &head(&format!(r#"<link rel="icon" href="{data}">"#)));

    let h = "c29-other-schemes.test";
    w.case(h, icon(h, "/favicon.ico"))
        .page(
            h,
            &head(
                r#"<link rel="icon" href="javascript:alert(1)"><link rel="icon" href="blob:http://x/1">
                   <link rel="icon" href="file:///etc/passwd"><link rel="icon" href="ftp://c29-other-schemes.test/f.png">
                   <link rel="icon" href="about:blank">"#,
            ),
        )
        .file(h, "/f.png", PNG, &png(32, 32))
        .file(h, "/favicon.ico", ICO, &ico(&[16]));

    let h = "c30-cdn-host.test";
    w.case(h, icon("cdn30.test", "/icons/f.png"))
        .page(
            h,
            &head(r#"<link rel="icon" href="http://cdn30.test/icons/f.png">"#),
        )
        .file("cdn30.test", "/icons/f.png", PNG, &png(32, 32));
}

/// Document structure: cases 31–41.
fn structure(w: &mut World) {
    let h = "c31-body-link.test";
    w.case(h, icon(h, "/body.png"))
        .page(
            h,
            "<html><head><title>t</title></head><body><p>x</p><link rel=icon href=/body.png></body></html>",
        )
        .file(h, "/body.png", PNG, &png(32, 32))
        .file(h, "/favicon.ico", ICO, &ico(&[16]));
    let h = "c31-head-before-body.test";
    w.case(h, icon(h, "/head.png"))
        .page(
            h,
            "<html><head><link rel=icon href=/head.png></head><body><link rel=icon href=/body.svg></body></html>",
        )
        .file(h, "/head.png", PNG, &png(16, 16))
        .file(h, "/body.svg", SVG, &svg());

    let h = "c32-between-head-and-body.test";
    w.case(h, icon(h, "/between.png"))
        .page(
            h,
            "<html><head><title>t</title></head>\n<link rel=icon href=/between.png>\n<body>x</body></html>",
        )
        .file(h, "/between.png", PNG, &png(32, 32));

    let h = "c33-commented-out.test";
    w.case(h, icon(h, "/favicon.ico"))
        .page(h, &head("<!-- <link rel=icon href=/old.png> -->"))
        .file(h, "/old.png", PNG, &png(32, 32))
        .file(h, "/favicon.ico", ICO, &ico(&[16]));

    let h = "c34-template.test";
    w.case(h, icon(h, "/favicon.ico"))
        .page(
            h,
            &head("<template><link rel=icon href=/tpl.png></template>"),
        )
        .file(h, "/tpl.png", PNG, &png(32, 32))
        .file(h, "/favicon.ico", ICO, &ico(&[16]));

    // A scripting browser ignores <noscript>: /favicon.ico first, the noscript icon only as
    // the last resort.
    let h = "c35-noscript.test";
    w.case(h, icon(h, "/favicon.ico"))
        .page(
            h,
            &head("<noscript><link rel=icon href=/ns.png></noscript>"),
        )
        .file(h, "/ns.png", PNG, &png(32, 32))
        .file(h, "/favicon.ico", ICO, &ico(&[16]));
    let h = "c35-noscript-last-resort.test";
    w.case(h, icon(h, "/ns.png"))
        .page(
            h,
            &head("<noscript><link rel=icon href=/ns.png></noscript>"),
        )
        .file(h, "/ns.png", PNG, &png(32, 32));

    let h = "c36-script-string.test";
    w.case(h, icon(h, "/favicon.ico"))
        .page(
            h,
            &head(r#"<script>document.write('<link rel="icon" href="/js.png">')</script>"#),
        )
        .file(h, "/js.png", PNG, &png(32, 32))
        .file(h, "/favicon.ico", ICO, &ico(&[16]));

    // Past the HTML cap: what came before it counts, what came after is never seen.
    let json = format!(
        "<script>window.__DATA__=\"{}\"</script>",
        "a".repeat(3 * 1024 * 1024)
    );
    let h = "c37-huge-html-late-link.test";
    w.case(h, icon(h, "/favicon.ico"))
        .page(h, &head(&format!("{json}<link rel=icon href=/late.png>")))
        .file(h, "/late.png", PNG, &png(32, 32))
        .file(h, "/favicon.ico", ICO, &ico(&[16]));
    let h = "c37-huge-html-early-link.test";
    w.case(h, icon(h, "/early.png"))
        .page(h, &head(&format!("<link rel=icon href=/early.png>{json}")))
        .file(h, "/early.png", PNG, &png(32, 32))
        .file(h, "/favicon.ico", ICO, &ico(&[16]));

    let h = "c38-gzip-page.test";
    w.case(h, icon(h, "/z.png"))
        .route(
            h,
            "/",
            Route::gzip(
                "text/html",
                head(r#"<link rel="icon" href="/z.png">"#).as_bytes(),
            ),
        )
        .file(h, "/z.png", PNG, &png(32, 32));
    let h = "c38-deflate-page.test";
    w.case(h, icon(h, "/d.png"))
        .route(
            h,
            "/",
            Route::deflate(
                "text/html",
                head(r#"<link rel="icon" href="/d.png">"#).as_bytes(),
            ),
        )
        .file(h, "/d.png", PNG, &png(32, 32));
    let h = "c38-gzip-svg.test";
    w.case(h, icon(h, "/i.svg"))
        .page(h, &head(r#"<link rel="icon" href="/i.svg">"#))
        .route(h, "/i.svg", Route::gzip(SVG, &svg()));

    // The href "/иконка.png" written in windows-1251: decoded first, then percent-encoded
    // as UTF-8; a wrong decoding gives a different URL.
    let cyr = |charset_meta: &str| {
        let html = head(&format!(
            "{charset_meta}<link rel=icon href=\"/иконка.png\">"
        ));
        encoding_rs::WINDOWS_1251.encode(&html).0.into_owned()
    };
    let path = "/%D0%B8%D0%BA%D0%BE%D0%BD%D0%BA%D0%B0.png";
    let h = "c39-charset-header.test";
    w.case(h, icon(h, path))
        .route(
            h,
            "/",
            Route::new(200, "text/html; charset=windows-1251", cyr("")),
        )
        .file(h, path, PNG, &png(32, 32));
    let h = "c39-charset-meta.test";
    w.case(h, icon(h, path))
        .route(
            h,
            "/",
            Route::new(200, "text/html", cyr(r#"<meta charset="windows-1251">"#)),
        )
        .file(h, path, PNG, &png(32, 32));
    let h = "c39-bom-beats-header.test";
    let mut bom = b"\xef\xbb\xbf".to_vec();
    bom.extend_from_slice(head("<link rel=icon href=\"/иконка.png\">").as_bytes());
    w.case(h, icon(h, path))
        .route(
            h,
            "/",
            Route::new(200, "text/html; charset=windows-1251", bom),
        )
        .file(h, path, PNG, &png(32, 32));

    let h = "c40-json-root.test";
    w.case(h, icon(h, "/favicon.ico"))
        .route(
            h,
            "/",
            Route::new(
                200,
                "application/json",
                r#"{"link":"<link rel=icon href=/j.png>"}"#,
            ),
        )
        .file(h, "/j.png", PNG, &png(32, 32))
        .file(h, "/favicon.ico", ICO, &ico(&[16]));
    let h = "c40-pdf-root.test";
    w.case(h, icon(h, "/apple-touch-icon.png"))
        .route(
            h,
            "/",
            Route::new(200, "application/pdf", b"%PDF-1.4\n".to_vec()),
        )
        .file(h, "/apple-touch-icon.png", PNG, &png(180, 180));

    let h = "c41-vite-default.test";
    w.case(h, icon(h, "/vite.svg"))
        .page(
            h,
            r#"<!doctype html><html><head><link rel="icon" type="image/svg+xml" href="/vite.svg" /></head><body><div id="root"></div><script type="module" src="/src/main.tsx"></script></body></html>"#,
        )
        .file(h, "/vite.svg", SVG, &svg());
}

/// Manifest, tiles, meta: cases 42–47.
fn manifests(w: &mut World) {
    let h = "c42-manifest.test";
    w.case(h, icon_sized(h, "/s/i/192.png", 192, 192))
        .page(
            h,
            &head(r#"<link rel="manifest" href="/s/site.webmanifest">"#),
        )
        .file(
            h,
            "/s/site.webmanifest",
            "application/manifest+json",
            br#"{"name":"x","icons":[{"src":"i/192.png","sizes":"192x192","type":"image/png"}]}"#,
        )
        .file(h, "/s/i/192.png", PNG, &png(192, 192))
        .file(h, "/i/192.png", PNG, &png(192, 192));
    let h = "c42-manifest-text-plain.test";
    w.case(h, icon(h, "/m.png"))
        .page(h, &head(r#"<link rel="manifest" href="/manifest.json">"#))
        .file(
            h,
            "/manifest.json",
            "text/plain",
            br#"{"icons":[{"src":"/m.png","sizes":"144x144"}]}"#,
        )
        .file(h, "/m.png", PNG, &png(144, 144));

    let h = "c43-purpose.test";
    w.case(h, icon(h, "/any.png"))
        .page(h, &head(r#"<link rel="manifest" href="/m.json">"#))
        .file(
            h,
            "/m.json",
            "application/json",
            br#"{"icons":[{"src":"/mask.png","sizes":"512x512","purpose":"maskable"},
                {"src":"/mono.png","sizes":"192x192","purpose":"monochrome"},
                {"src":"/any.png","sizes":"192x192","purpose":"any"}]}"#,
        )
        .file(h, "/mask.png", PNG, &png(512, 512))
        .file(h, "/mono.png", PNG, &png(192, 192))
        .file(h, "/any.png", PNG, &png(192, 192));
    let h = "c43-monochrome-only.test";
    w.case(h, icon(h, "/favicon.ico"))
        .page(h, &head(r#"<link rel="manifest" href="/m.json">"#))
        .file(
            h,
            "/m.json",
            "application/json",
            br#"{"icons":[{"src":"/mono.png","sizes":"192x192","purpose":"monochrome"}]}"#,
        )
        .file(h, "/mono.png", PNG, &png(192, 192))
        .file(h, "/favicon.ico", ICO, &ico(&[16]));

    let h = "c44-partly-invalid-manifest.test";
    w.case(h, icon(h, "/good.png"))
        .page(h, &head(r#"<link rel="manifest" href="/m.json">"#))
        .file(
            h,
            "/m.json",
            "application/json",
            "\u{feff}{\"icons\":[{\"sizes\":\"512x512\"},{\"src\":7},{\"src\":\"/good.png\"}]} junk"
                .as_bytes(),
        )
        .file(h, "/good.png", PNG, &png(192, 192));

    let h = "c45-manifest-404.test";
    w.case(h, icon(h, "/favicon.ico"))
        .page(h, &head(r#"<link rel="manifest" href="/missing.json">"#))
        .file(h, "/favicon.ico", ICO, &ico(&[16]));
    let h = "c45-manifest-html.test";
    w.case(h, icon(h, "/favicon.ico"))
        .page(h, &head(r#"<link rel="manifest" href="/m.json">"#))
        .route(h, "/m.json", Route::html("<html><body>login</body></html>"))
        .file(h, "/favicon.ico", ICO, &ico(&[16]));

    let h = "c46-tile.test";
    w.case(h, icon(h, "/tile.png"))
        .page(
            h,
            &head(r#"<meta name="msapplication-TileImage" content="/tile.png">"#),
        )
        .file(h, "/tile.png", PNG, &png(144, 144))
        .file(h, "/favicon.ico", ICO, &ico(&[16]));
    let h = "c46-tile-below-icon.test";
    w.case(h, icon(h, "/i.png"))
        .page(
            h,
            &head(
                r#"<meta name="msapplication-TileImage" content="/tile.png"><link rel="icon" href="/i.png">"#,
            ),
        )
        .file(h, "/tile.png", PNG, &png(144, 144))
        .file(h, "/i.png", PNG, &png(32, 32));

    let og = r#"<meta property="og:image" content="/og.png"><meta name="twitter:image" content="/tw.png">"#;
    let h = "c47-og-image-only.test";
    w.case(h, Expect::Fail("no_icon"))
        .page(h, &head(og))
        .file(h, "/og.png", PNG, &png(1200, 630))
        .file(h, "/tw.png", PNG, &png(1200, 630));
    let h = "c47-og-image-and-favicon.test";
    w.case(h, icon(h, "/favicon.ico"))
        .page(h, &head(og))
        .file(h, "/og.png", PNG, &png(630, 630))
        .file(h, "/favicon.ico", ICO, &ico(&[16]));
}

/// Fetching and verification: cases 48–60.
fn verification(w: &mut World) {
    let h = "c48-nothing-declared-apple.test";
    w.case(h, icon(h, "/apple-touch-icon.png"))
        .page(h, &head(""))
        .file(h, "/apple-touch-icon.png", PNG, &png(180, 180));
    let h = "c48-nothing-declared-precomposed.test";
    w.case(h, icon(h, "/apple-touch-icon-precomposed.png"))
        .page(h, &head(""))
        .file(h, "/apple-touch-icon-precomposed.png", PNG, &png(180, 180));
    let h = "c48-nothing-at-all.test";
    w.case(h, Expect::Fail("no_icon")).page(h, &head(""));

    let h = "c49-declared-404.test";
    w.case(h, icon(h, "/favicon.ico"))
        .page(h, &head(r#"<link rel="icon" href="/missing.png">"#))
        .file(h, "/favicon.ico", ICO, &ico(&[16]));

    let h = "c50-soft-404.test";
    w.case(h, Expect::Fail("no_icon"))
        .page(h, &head(""))
        .route(
            h,
            "/favicon.ico",
            Route::html("<!doctype html><html><body>Not found</body></html>"),
        )
        .route(
            h,
            "/apple-touch-icon.png",
            Route::html("<html><body>app shell</body></html>"),
        );

    let h = "c51-octet-stream.test";
    w.case(h, icon(h, "/i.png"))
        .page(h, &head(r#"<link rel="icon" href="/i.png">"#))
        .file(h, "/i.png", "application/octet-stream", &png(32, 32));
    let h = "c51-svg-as-text.test";
    w.case(h, icon(h, "/i.svg"))
        .page(h, &head(r#"<link rel="icon" href="/i.svg">"#))
        .file(h, "/i.svg", "text/plain", &svg());

    let h = "c52-empty-and-truncated.test";
    let mut truncated = png(32, 32);
    truncated.truncate(truncated.len() - 20);
    w.case(h, Expect::Fail("no_icon"))
        .page(h, &head(r#"<link rel="icon" href="/t.png">"#))
        .file(h, "/t.png", PNG, &truncated)
        .file(h, "/favicon.ico", ICO, b"");
    let h = "c52-broken-then-good.test";
    w.case(h, icon(h, "/apple.png"))
        .page(
            h,
            &head(
                r#"<link rel="icon" href="/t.png"><link rel="apple-touch-icon" href="/apple.png">"#,
            ),
        )
        .file(h, "/t.png", PNG, &truncated)
        .file(h, "/apple.png", PNG, &png(180, 180))
        .file(h, "/favicon.ico", ICO, b"");

    let h = "c53-placeholder-pixel.test";
    w.case(h, icon(h, "/favicon.ico"))
        .page(h, &head(r#"<link rel="icon" href="/pixel.gif">"#))
        .file(h, "/pixel.gif", "image/gif", &gif(1, 1))
        .file(h, "/favicon.ico", ICO, &ico(&[16]));

    let h = "c55-oversized-bytes.test";
    let mut big = png(32, 32);
    big.resize(2 * 1024 * 1024, 0);
    w.case(h, icon(h, "/favicon.ico"))
        .page(h, &head(r#"<link rel="icon" href="/big.png">"#))
        .file(h, "/big.png", PNG, &big)
        .file(h, "/favicon.ico", ICO, &ico(&[16]));
    let h = "c55-pixel-bomb.test";
    w.case(h, icon(h, "/favicon.ico"))
        .page(h, &head(r#"<link rel="icon" href="/bomb.png">"#))
        .file(h, "/bomb.png", PNG, &png_claiming(30_000, 30_000))
        .file(h, "/favicon.ico", ICO, &ico(&[16]));

    let h = "c56-ico-256.test";
    w.case(h, icon_sized(h, "/favicon.ico", 256, 256))
        .page(h, &head(""))
        .file(h, "/favicon.ico", ICO, &ico(&[16, 256]));

    let h = "c57-animated-gif.test";
    w.case(h, icon_sized(h, "/a.gif", 32, 32))
        .page(h, &head(r#"<link rel="icon" href="/a.gif">"#))
        .file(h, "/a.gif", "image/gif", &gif(32, 32));

    let h = "c58-svg-with-script.test";
    w.case(h, icon(h, "/s.svg"))
        .page(h, &head(r#"<link rel="icon" href="/s.svg">"#))
        .file(
            h,
            "/s.svg",
            SVG,
            br#"<?xml version="1.0"?><!-- logo --><svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32"><script>alert(1)</script><image href="http://elsewhere.test/x.png"/></svg>"#,
        );

    // The declared URL is what is reported; its redirects are followed to the bytes.
    let h = "c60-icon-redirect.test";
    w.case(h, icon(h, "/r.png"))
        .page(h, &head(r#"<link rel="icon" href="/r.png">"#))
        .route(
            h,
            "/r.png",
            Route::redirect(302, "http://cdn60.test/real.png"),
        )
        .file("cdn60.test", "/real.png", PNG, &png(32, 32));
    let h = "c60-icon-redirect-to-login.test";
    w.case(h, icon(h, "/favicon.ico"))
        .page(h, &head(r#"<link rel="icon" href="/r.png">"#))
        .route(h, "/r.png", Route::redirect(302, "/login"))
        .route(
            h,
            "/login",
            Route::html("<html><body>Sign in</body></html>"),
        )
        .file(h, "/favicon.ico", ICO, &ico(&[16]));
    let h = "c60-icon-redirect-too-long.test";
    w.case(h, icon(h, "/favicon.ico"))
        .page(h, &head(r#"<link rel="icon" href="/r0.png">"#))
        .file(h, "/r6.png", PNG, &png(32, 32))
        .file(h, "/favicon.ico", ICO, &ico(&[16]));
    for i in 0..6 {
        w.sites.route(
            h,
            &format!("/r{i}.png"),
            Route::redirect(302, &format!("/r{}.png", i + 1)),
        );
    }
}

/// Redirects, hosts, network: cases 61–70.
fn network(w: &mut World, dead: SocketAddr) {
    let h = "c61-http-www-chain.test";
    let www = "www.c61-http-www-chain.test";
    w.case(h, icon(www, "/home/i.png"))
        .route(h, "/", Route::redirect(301, &format!("http://{www}/")))
        .route(www, "/", Route::redirect(302, "/home/"))
        .route(
            www,
            "/home/",
            Route::html(&head(r#"<link rel="icon" href="i.png">"#)),
        )
        .file(www, "/home/i.png", PNG, &png(32, 32));

    let h = "c62-cross-domain.test";
    w.case(h, icon("parent62.test", "/brand/p.png"))
        .route(h, "/", Route::redirect(301, "http://parent62.test/brand/"))
        .file(h, "/favicon.ico", ICO, &ico(&[16]))
        .route(
            "parent62.test",
            "/brand/",
            Route::html(&head(r#"<link rel="icon" href="p.png">"#)),
        )
        .file("parent62.test", "/brand/p.png", PNG, &png(32, 32));

    let h = "c63-redirect-loop.test";
    w.case(h, Expect::Fail("too_many_redirects"))
        .route(h, "/", Route::redirect(302, "/a"))
        .route(h, "/a", Route::redirect(302, "/"));
    let h = "c63-loop-favicon-still-tried.test";
    w.case(h, icon(h, "/favicon.ico"))
        .route(h, "/", Route::redirect(302, "/a"))
        .route(h, "/a", Route::redirect(302, "/"))
        .file(h, "/favicon.ico", ICO, &ico(&[16]));
    let h = "c63-eleven-hops.test";
    w.case(h, Expect::Fail("too_many_redirects"))
        .route(h, "/", Route::redirect(302, "/h1"));
    for i in 1..=11 {
        w.sites.route(
            h,
            &format!("/h{i}"),
            Route::redirect(302, &format!("/h{}", i + 1)),
        );
    }
    w.sites
        .route(h, "/h12", Route::html(&head("<link rel=icon href=/i.png>")))
        .file(h, "/i.png", PNG, &png(32, 32));

    let h = "c64-meta-refresh.test";
    w.case(h, icon(h, "/en/i.png"))
        .page(
            h,
            &head(r#"<meta http-equiv="Refresh" content="0; URL='/en/'">"#),
        )
        .route(
            h,
            "/en/",
            Route::html(&head(r#"<link rel="icon" href="i.png">"#)),
        )
        .file(h, "/en/i.png", PNG, &png(32, 32));
    let h = "c64-meta-refresh-odd-case.test";
    w.case(h, icon(h, "/fr/i.png"))
        .page(h, &head("<META HTTP-EQUIV=refresh CONTENT=\"5;url=/fr/\">"))
        .route(
            h,
            "/fr/",
            Route::html(&head(r#"<link rel="icon" href="i.png">"#)),
        )
        .file(h, "/fr/i.png", PNG, &png(32, 32));

    let h = "c65-apex-dead-www-alive.test";
    let www = "www.c65-apex-dead-www-alive.test";
    w.rules.push((h.to_owned(), dead));
    w.case(h, icon(www, "/w.png"))
        .page(www, &head(r#"<link rel="icon" href="/w.png">"#))
        .file(www, "/w.png", PNG, &png(32, 32));
    let h = "www.c65-www-dead-apex-alive.test";
    let apex = "c65-www-dead-apex-alive.test";
    w.rules.push((h.to_owned(), dead));
    w.case(h, icon(apex, "/a.png"))
        .page(apex, &head(r#"<link rel="icon" href="/a.png">"#))
        .file(apex, "/a.png", PNG, &png(32, 32));
    let h = "c65-both-dead.test";
    w.rules.push((h.to_owned(), dead));
    w.rules.push((format!("www.{h}"), dead));
    w.case(h, Expect::Fail("connect"));

    let h = "c67-nxdomain.test";
    w.case(h, Expect::Fail("dns"));

    let h = "c69-bot-wall-browser-retry.test";
    w.case(h, icon(h, "/b.png"))
        .browser_only(
            h,
            "/",
            Route::html(&head(r#"<link rel="icon" href="/b.png">"#)),
        )
        .file(h, "/b.png", PNG, &png(32, 32));
    let challenge = "<html><head><title>Just a moment...</title></head><body>cf-chl</body></html>";
    let h = "c69-bot-wall-403.test";
    w.case(h, Expect::Fail("http_status"))
        .route(h, "/", Route::new(403, "text/html", challenge));
    let h = "c69-challenge-503.test";
    w.case(h, Expect::Fail("http_status"))
        .route(h, "/", Route::new(503, "text/html", challenge));
    let h = "c69-403-page-but-favicon.test";
    w.case(h, icon(h, "/favicon.ico"))
        .route(
            h,
            "/",
            Route::new(403, "text/html", "<html>Forbidden</html>"),
        )
        .file(h, "/favicon.ico", ICO, &ico(&[16]));

    let h = "c70-429-retry-after.test";
    w.case(h, Expect::Fail("rate_limited")).route(
        h,
        "/",
        Route::new(429, "text/plain", "slow down").with_header("retry-after", "120"),
    );
    let h = "c70-500.test";
    w.case(h, Expect::Fail("rate_limited")).route(
        h,
        "/",
        Route::new(500, "text/html", "<html>oops</html>"),
    );
    let h = "c70-404-home.test";
    w.case(h, Expect::Fail("http_status")).route(
        h,
        "/",
        Route::new(404, "text/html", "<html>gone</html>"),
    );
}

async fn build_world() -> (World, FakeInternet, String) {
    let dead = dead_addr().await;
    let mut w = World::default();
    rel_tokens(&mut w);
    sizes(&mut w);
    urls(&mut w);
    structure(&mut w);
    manifests(&mut w);
    verification(&mut w);
    network(&mut w, dead);
    let internet = FakeInternet::start(w.sites.clone()).await;
    let rules: Vec<(&str, SocketAddr)> = w.rules.iter().map(|(h, a)| (h.as_str(), *a)).collect();
    let resolve = internet.resolve_exact(&rules);
    (w, internet, resolve)
}

/// Every result row of a job, keyed by domain, through the REST pages.
async fn results_by_domain(app: &TestApp, job_id: &str) -> HashMap<String, Value> {
    let mut out = HashMap::new();
    for page in 1.. {
        let (status, body) = app
            .get_json(&format!("/jobs/{job_id}/results?page={page}&per_page=50"))
            .await;
        assert_eq!(status, 200, "{body}");
        let rows = body["results"].as_array().unwrap();
        if rows.is_empty() {
            break;
        }
        for row in rows {
            out.insert(row["domain"].as_str().unwrap().to_owned(), row.clone());
        }
    }
    out
}

fn outcome(row: &Value) -> Expect {
    match row["status"].as_str() {
        Some("success") => {
            let size = row["width"].as_i64().zip(row["height"].as_i64());
            Expect::Icon(row["favicon_url"].as_str().unwrap_or("").to_owned(), size)
        }
        _ => Expect::Fail(known_code(row["error_code"].as_str().unwrap_or("<none>"))),
    }
}

/// The `&'static str` of a known error code, so outcomes compare with expectations.
fn known_code(code: &str) -> &'static str {
    const KNOWN: [&str; 12] = [
        "dns",
        "dns_transient",
        "connect",
        "tls",
        "timeout",
        "http_status",
        "rate_limited",
        "too_many_redirects",
        "no_icon",
        "blocked",
        "invalid_content",
        "internal",
    ];
    KNOWN
        .into_iter()
        .find(|k| *k == code)
        .unwrap_or("<unknown or missing code>")
}

async fn every_catalogue_scenario(backend: Backend) {
    let (world, internet, resolve) = build_world().await;
    assert!(
        world.cases.len() >= 80,
        "the suite must keep at least 80 scenarios, has {}",
        world.cases.len()
    );
    let app = TestApp::spawn(
        backend,
        &[
            ("FETCH_RESOLVE", &resolve),
            // One try: transient categories are asserted as such, not retried away.
            ("FETCH_MAX_TRIES", "1"),
            ("WORKER_CONCURRENCY", "32"),
            ("FETCH_TIMEOUT_SECS", "8"),
            ("CACHE_MAX_AGE_SECS", "0"),
        ],
    )
    .await;
    // Case 68: a messy spelling is normalised to the scenario's host name.
    let mut submitted: Vec<String> = world.cases.iter().map(|(h, _)| h.clone()).collect();
    submitted.push("C01-Uppercase-REL.TEST.".into());
    let (status, created) = app
        .post_json(
            "/jobs",
            &json!({"client_id": "finder-cases", "domains": submitted}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let job_id = created["job_id"].as_str().unwrap().to_owned();
    let job = app.wait_for_job(&job_id, Duration::from_secs(90)).await;
    assert_eq!(job["total"], world.cases.len() as i64, "{job}");

    let rows = results_by_domain(&app, &job_id).await;
    let mut wrong = Vec::new();
    for (host, expect) in &world.cases {
        let row = rows
            .get(host)
            .unwrap_or_else(|| panic!("no result row for {host}"));
        let got = outcome(row);
        let matches = match (expect, &got) {
            (Expect::Icon(url, None), Expect::Icon(got_url, _)) => url == got_url,
            _ => *expect == got,
        };
        if !matches {
            wrong.push(format!(
                "{host}: expected {expect:?}, got {got:?} (error: {}, candidates: {})",
                row["error"], row["candidates"]
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} scenarios wrong:\n{}",
        wrong.len(),
        world.cases.len(),
        wrong.join("\n")
    );

    // Provenance: what was declared and what verification found are both kept.
    let candidate = |host: &str, url: &str| -> Value {
        rows[host]["candidates"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["url"] == url)
            .cloned()
            .unwrap_or_else(|| panic!("{host}: no candidate {url}: {}", rows[host]))
    };
    let pin = candidate("c05-mask-icon.test", "http://c05-mask-icon.test/pin.svg");
    assert_eq!(pin["source"], "mask_icon", "{pin}");
    let liar = candidate(
        "c13-lying-sizes.test",
        "http://c13-lying-sizes.test/big.png",
    );
    assert_eq!(
        (&liar["declared_sizes"], &liar["width"]),
        (&json!("192x192"), &json!(16)),
        "{liar}"
    );
    let tile = candidate("c46-tile.test", "http://c46-tile.test/tile.png");
    assert_eq!(tile["source"], "tile", "{tile}");
    let from_manifest = candidate("c42-manifest.test", "http://c42-manifest.test/s/i/192.png");
    assert_eq!(from_manifest["source"], "manifest", "{from_manifest}");
    let rejected = candidate("c50-soft-404.test", "http://c50-soft-404.test/favicon.ico");
    assert!(
        rejected["error"]
            .as_str()
            .unwrap_or("")
            .contains("soft 404"),
        "{rejected}"
    );
    assert_eq!(
        rows["c61-http-www-chain.test"]["final_url"],
        "http://www.c61-http-www-chain.test/home/"
    );
    assert_eq!(
        rows["c70-429-retry-after.test"]["tries"], 1,
        "FETCH_MAX_TRIES=1: asserted as transient, not retried away"
    );

    // What must never have been fetched: hidden, inert, non-icon and og: declarations.
    for (host, path) in [
        ("c04-substring-traps.test", "/s.png"),
        ("c04-substring-traps.test", "/n.png"),
        ("c04-substring-traps.test", "/favicon.png"),
        ("c05-mask-icon-only.test", "/pin.svg"),
        ("c33-commented-out.test", "/old.png"),
        ("c34-template.test", "/tpl.png"),
        ("c35-noscript.test", "/ns.png"),
        ("c36-script-string.test", "/js.png"),
        ("c37-huge-html-late-link.test", "/late.png"),
        ("c43-purpose.test", "/mono.png"),
        ("c47-og-image-only.test", "/og.png"),
        ("c47-og-image-only.test", "/tw.png"),
        ("c29-other-schemes.test", "/f.png"),
    ] {
        assert_eq!(
            internet.hits(host, path),
            0,
            "{host}{path} must not be fetched"
        );
    }
    // Base href and path resolution really went to the right place, not the wrong one.
    assert_eq!(internet.hits("c23-base-href.test", "/other/i.png"), 0);
    assert_eq!(
        internet.hits("c24-root-relative-base.test", "/en/home/app/f.png"),
        0
    );
    assert_eq!(internet.hits("c19-path-relative.test", "/img/f.png"), 0);
    // The dead apex was never answered, the bot wall saw the browser-like retry.
    assert!(internet.hits("c69-bot-wall-browser-retry.test", "/") >= 2);
    // data: icons are never fetched.
    assert_eq!(internet.hits("c27-data-base64.test", "/favicon.ico"), 0);
    // The dark variant that lost stays visible with its media query.
    let dark = candidate(
        "c16-dark-svg-loses.test",
        "http://c16-dark-svg-loses.test/dark.svg",
    );
    assert_eq!(dark["media"], "(prefers-color-scheme: dark)", "{dark}");
    // The raw attribute text was never requested.
    assert_eq!(
        internet.hits("c26-entity-in-href.test", "/icons/a&amp;b.png"),
        0
    );
    app.stop().await;
}
both_backends!(catalogue_scenarios, every_catalogue_scenario);
