//! The finder against its scenario table, end to end: one fake internet with a site per
//! scenario, one job holding every scenario domain, worked by the real app, and each result
//! row checked for the exact `favicon_url` or the exact failure category.
//!
//! The scenarios are data (`SCENARIOS`): each row is a domain, the routes of the sites it
//! needs, and what its result must be; `every_scenario` is the one driver. Each host is named
//! `cNN-what.test`, so a failure names the scenario it breaks. The finder's first try, https,
//! fails for every site here (the app does not trust the fake internet's test CA), so every
//! site is also an https→http fallback; tests/api/https.rs covers https itself. Sites are
//! reached only through `FETCH_RESOLVE` rules naming each host (no wildcard), so a name
//! without a site does not resolve and nothing can leak to real DNS.

use crate::fake::{FakeInternet, Route, Sites, dead_addr, gif, ico, png, png_claiming, svg, webp};
use crate::helpers::{Backend, TestApp, both_backends};
use base64::Engine as _;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::SocketAddr;

use Body::*;
use Expect::*;
use Img::*;

/// In a row's routes and expectation: the scenario's own host.
const SELF: &str = "";
const ICO: &str = "image/x-icon";
const PNG: &str = "image/png";
const SVG: &str = "image/svg+xml";
const JSON: &str = "application/json";
const HTML: &str = "text/html";
/// In a `Head` or a `Data` expectation: a `data:` URL of a 16×16 PNG.
const DATA_PNG16: &str = "$DATA_PNG16";

/// What the job must say about one scenario domain.
#[derive(Clone, Copy, Debug)]
enum Expect {
    /// Success with exactly `http://{host}{path}`, any size.
    Icon(&'static str, &'static str),
    /// The same, with these real dimensions.
    Sized(&'static str, &'static str, i64, i64),
    /// Success with exactly this (`data:`) URL and these dimensions.
    Data(&'static str, i64, i64),
    /// Failure with exactly this `error_code`.
    Fail(&'static str),
}

/// An image, made when the sites are built.
#[derive(Clone, Copy, Debug)]
enum Img {
    Png(u32, u32),
    Ico(&'static [u32]),
    Svg,
    Gif(u16, u16),
    Webp(u32, u32),
    /// A PNG whose header claims these dimensions, with no pixels behind them.
    Claiming(u32, u32),
    /// A 32 px PNG missing its last 20 bytes.
    Truncated,
    /// A 32 px PNG padded to 2 MiB, past the icon cap.
    Oversized,
}

/// One response.
#[derive(Clone, Copy, Debug)]
enum Body {
    /// A 200 HTML page whose `<head>` holds these declarations.
    Head(&'static str),
    /// A 200 HTML page, verbatim.
    Html(&'static str),
    /// A 200 answer of this content type and text.
    File(&'static str, &'static str),
    /// A 200 answer of this content type and image.
    Image(&'static str, Img),
    Redirect(u16, &'static str),
    /// Status, content type, body.
    Status(u16, &'static str, &'static str),
    /// A 429 with `Retry-After` of this many seconds.
    TooManyRequests(&'static str),
    /// `Head`, gzip- or deflate-encoded.
    GzipHead(&'static str),
    DeflateHead(&'static str),
    GzipSvg,
    /// `Head` of these tags then `<link rel=icon href="/иконка.png">`, in windows-1251, with
    /// this content type.
    Cp1251(&'static str, &'static str),
    /// The same link in UTF-8 behind a byte-order mark, labelled with this content type.
    Utf8Bom(&'static str),
    /// `Head` with 3 MiB of script between these two parts (past the first MiB).
    Huge(&'static str, &'static str),
    /// The same link in UTF-16 behind its byte-order mark (big-endian when true), labelled
    /// `charset=utf-8`.
    Utf16(bool),
    /// `Head`, raw-deflate-encoded (no zlib header) as `Content-Encoding: deflate`.
    RawDeflateHead(&'static str),
    /// A page labelled `Content-Encoding: gzip` that is not gzip.
    Undecodable,
    /// `Head` answered with this many extra header lines.
    ManyHeaders(usize, &'static str),
    /// `Head` for browser-like requests; anything else gets a bot wall's 403.
    BrowserOnly(&'static str),
}

/// One row: a domain, the routes (host, path, body) of the sites it needs, what it must give.
struct Scenario {
    host: &'static str,
    expect: Expect,
    routes: &'static [(&'static str, &'static str, Body)],
}

/// A row of the table.
const fn row(
    host: &'static str,
    expect: Expect,
    routes: &'static [(&'static str, &'static str, Body)],
) -> Scenario {
    Scenario {
        host,
        expect,
        routes,
    }
}

/// The default icon most sites serve beside what they declare.
const FAVICON: (&str, &str, Body) = (SELF, "/favicon.ico", Image(ICO, Ico(&[16])));

/// Hosts that resolve to an address refusing every connection.
const DEAD: &[&str] = &[
    "c65-apex-dead-www-alive.test",
    "www.c65-www-dead-apex-alive.test",
    "c65-both-dead.test",
    "www.c65-both-dead.test",
];

const MANIFEST_192: &str =
    r#"{"icons":[{"src":"/m192.png","sizes":"192x192","type":"image/png"}]}"#;
const OG: &str =
    r#"<meta property="og:image" content="/og.png"><meta name="twitter:image" content="/tw.png">"#;
const CHALLENGE: &str =
    "<html><head><title>Just a moment...</title></head><body>cf-chl</body></html>";
const CYR: &str = "/%D0%B8%D0%BA%D0%BE%D0%BD%D0%BA%D0%B0.png";
const BROWSERCONFIG: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<browserconfig><msapplication><tile>
  <square150x150logo src="/t/150.png"/><wide310x150logo src="/t/wide.png"/>
  <TileColor>#da532c</TileColor>
</tile></msapplication></browserconfig>"#;
const XML: &str = "application/xml";

/// Every scenario. Rel tokens and attributes (c01–c09), sizes and picking (c10–c18), URL
/// resolution (c19–c30), document structure (c31–c41), manifests, tiles and meta (c42–c47),
/// fetching and verification (c48–c60), redirects, hosts and network (c61–c70).
#[rustfmt::skip]
const SCENARIOS: &[Scenario] = &[
    row("c01-uppercase-rel.test", Icon(SELF, "/Fav.ico"), &[
        (SELF, "/", Head(r#"<LINK REL="SHORTCUT ICON" HREF="/Fav.ico">"#)),
        (SELF, "/Fav.ico", Image(ICO, Ico(&[32]))),
        (SELF, "/fav.ico", Image(ICO, Ico(&[48]))),
    ]),
    row("c02-token-order.test", Icon(SELF, "/a.png"), &[
        (SELF, "/", Head(r#"<link rel="icon shortcut" href="/a.png">"#)),
        (SELF, "/a.png", Image(PNG, Png(32, 32))),
    ]),
    row("c02-alternate-icon.test", Icon(SELF, "/b.png"), &[
        (SELF, "/", Head(r#"<link rel="alternate icon" href="/b.png">"#)),
        (SELF, "/b.png", Image(PNG, Png(32, 32))),
    ]),
    row("c03-whitespace.test", Icon(SELF, "/icon.png"), &[
        (SELF, "/", Head("<link rel=\" icon\n\" href=\"\n /ic\ton.png \">")),
        (SELF, "/icon.png", Image(PNG, Png(32, 32))),
    ]),
    row("c04-substring-traps.test", Icon(SELF, "/favicon.ico"), &[
        (SELF, "/", Head(r#"<link rel="apple-touch-startup-image" href="/s.png">
                   <link rel="icons" href="/n.png">
                   <link rel="preload" as="image" href="/favicon.png">"#)),
        (SELF, "/s.png", Image(PNG, Png(64, 64))),
        (SELF, "/n.png", Image(PNG, Png(64, 64))),
        (SELF, "/favicon.png", Image(PNG, Png(64, 64))),
        FAVICON,
    ]),
    row("c05-mask-icon.test", Icon(SELF, "/favicon.ico"), &[
        (SELF, "/", Head("<link rel=mask-icon href=/pin.svg color=#000>")),
        (SELF, "/pin.svg", Image(SVG, Svg)),
        FAVICON,
    ]),
    row("c05-mask-icon-only.test", Fail("no_icon"), &[
        (SELF, "/", Head("<link rel=mask-icon href=/pin.svg color=#000>")),
        (SELF, "/pin.svg", Image(SVG, Svg)),
    ]),
    row("c06-fluid-below-apple.test", Icon(SELF, "/apple.png"), &[
        (SELF, "/", Head(r#"<link rel="fluid-icon" href="/fluid.png"><link rel="apple-touch-icon" href="/apple.png">"#)),
        (SELF, "/fluid.png", Image(PNG, Png(512, 512))),
        (SELF, "/apple.png", Image(PNG, Png(180, 180))),
    ]),
    // A real 512 px RGBA PNG stored uncompressed would pass the 1 MiB icon cap.
    row("c06-fluid-only.test", Sized(SELF, "/fluid.png", 512, 512), &[
        (SELF, "/", Head(r#"<link rel="fluid-icon" href="/fluid.png">"#)),
        (SELF, "/fluid.png", Image(PNG, Claiming(512, 512))),
        FAVICON,
    ]),
    row("c07-precomposed.test", Sized(SELF, "/p.png", 180, 180), &[
        (SELF, "/", Head(r#"<link rel="apple-touch-icon-precomposed" href="/p.png">"#)),
        (SELF, "/p.png", Image(PNG, Png(180, 180))),
        FAVICON,
    ]),
    row("c08-empty-href.test", Icon(SELF, "/favicon.ico"), &[
        (SELF, "/", Head(r##"<link rel="icon" href=""><link rel="icon" href="#"><link rel="icon">"##)),
        FAVICON,
    ]),
    row("c09-xhtml-unquoted.test", Icon(SELF, "/f.png"), &[
        (SELF, "/", Head("<LINK rel=icon href=/f.png />")),
        (SELF, "/f.png", Image(PNG, Png(32, 32))),
    ]),
    row("c09-slash-glued.test", Icon(SELF, "/g.png/"), &[
        (SELF, "/", Head("<link rel=icon href=/g.png/>")),
        (SELF, "/g.png/", Image(PNG, Png(32, 32))),
        (SELF, "/g.png", Image(PNG, Png(32, 32))),
    ]),
    row("c10-multi-size-ico.test", Sized(SELF, "/m.ico", 48, 48), &[
        (SELF, "/", Head(r#"<link rel="icon" href="/m.ico" sizes="16x16 32x32 48x48">"#)),
        (SELF, "/m.ico", Image(ICO, Ico(&[16, 32, 48]))),
    ]),
    row("c11-svg-any.test", Icon(SELF, "/s.svg"), &[
        (SELF, "/", Head(r#"<link rel="icon" href="/s.svg" sizes="any" type="image/svg+xml">
                   <link rel="icon" href="/p.png" sizes="32x32">"#)),
        (SELF, "/s.svg", Image(SVG, Svg)),
        (SELF, "/p.png", Image(PNG, Png(32, 32))),
    ]),
    row("c12-malformed-sizes.test", Sized(SELF, "/c.png", 96, 96), &[
        (SELF, "/", Head(r#"<link rel="icon" href="/a.png" sizes="32X32">
                   <link rel="icon" href="/b.png" sizes="48×48">
                   <link rel="icon" href="/c.png" sizes="96x96+">
                   <link rel="icon" href="/d.png" sizes="banana">"#)),
        (SELF, "/a.png", Image(PNG, Png(32, 32))),
        (SELF, "/b.png", Image(PNG, Png(48, 48))),
        (SELF, "/c.png", Image(PNG, Png(96, 96))),
        (SELF, "/d.png", Image(PNG, Png(16, 16))),
    ]),
    row("c13-lying-sizes.test", Sized(SELF, "/real.png", 64, 64), &[
        (SELF, "/", Head(r#"<link rel="icon" href="/big.png" sizes="192x192">
                   <link rel="icon" href="/real.png" sizes="16x16">"#)),
        (SELF, "/big.png", Image(PNG, Png(16, 16))),
        (SELF, "/real.png", Image(PNG, Png(64, 64))),
    ]),
    row("c14-pick-svg.test", Icon(SELF, "/i.svg"), &[
        (SELF, "/", Head(r#"<link rel="icon" href="/16.png" sizes="16x16">
                   <link rel="icon" href="/i.svg" type="image/svg+xml">
                   <link rel="icon" href="/32.png" sizes="32x32">
                   <link rel="apple-touch-icon" href="/180.png">
                   <link rel="manifest" href="/m.json">"#)),
        (SELF, "/16.png", Image(PNG, Png(16, 16))),
        (SELF, "/32.png", Image(PNG, Png(32, 32))),
        (SELF, "/i.svg", Image(SVG, Svg)),
        (SELF, "/180.png", Image(PNG, Png(180, 180))),
        (SELF, "/m.json", File(JSON, MANIFEST_192)),
        (SELF, "/m192.png", Image(PNG, Png(192, 192))),
    ]),
    // Our policy: rel=icon is a tier above apple-touch and manifest, so among the icons the
    // largest below 64 wins rather than the 180 px apple-touch icon.
    row("c14-pick-raster.test", Sized(SELF, "/32.png", 32, 32), &[
        (SELF, "/", Head(r#"<link rel="icon" href="/16.png" sizes="16x16">
                   <link rel="icon" href="/32.png" sizes="32x32">
                   <link rel="apple-touch-icon" href="/180.png">
                   <link rel="manifest" href="/m.json">"#)),
        (SELF, "/16.png", Image(PNG, Png(16, 16))),
        (SELF, "/32.png", Image(PNG, Png(32, 32))),
        (SELF, "/180.png", Image(PNG, Png(180, 180))),
        (SELF, "/m.json", File(JSON, MANIFEST_192)),
        (SELF, "/m192.png", Image(PNG, Png(192, 192))),
    ]),
    row("c14-closest-above-64.test", Sized(SELF, "/96.png", 96, 96), &[
        (SELF, "/", Head(r#"<link rel="icon" href="/512.png"><link rel="icon" href="/96.png">
                   <link rel="icon" href="/48.png">"#)),
        (SELF, "/512.png", Image(PNG, Png(512, 512))),
        (SELF, "/96.png", Image(PNG, Png(96, 96))),
        (SELF, "/48.png", Image(PNG, Png(48, 48))),
    ]),
    row("c14-later-wins.test", Icon(SELF, "/second.png"), &[
        (SELF, "/", Head(r#"<link rel="icon" href="/first.png"><link rel="icon" href="/second.png">"#)),
        (SELF, "/first.png", Image(PNG, Png(32, 32))),
        (SELF, "/second.png", Image(PNG, Png(32, 32))),
    ]),
    row("c14-png-over-ico.test", Icon(SELF, "/x.png"), &[
        (SELF, "/", Head(r#"<link rel="icon" href="/x.png"><link rel="icon" href="/x.ico">"#)),
        (SELF, "/x.png", Image(PNG, Png(32, 32))),
        (SELF, "/x.ico", Image(ICO, Ico(&[32]))),
    ]),
    row("c15-non-square.test", Icon(SELF, "/favicon.ico"), &[
        (SELF, "/", Head(r#"<link rel="icon" href="/wide.png">"#)),
        (SELF, "/wide.png", Image(PNG, Png(300, 100))),
        FAVICON,
    ]),
    row("c15-non-square-last-resort.test", Sized(SELF, "/wide.png", 300, 100), &[
        (SELF, "/", Head(r#"<link rel="icon" href="/wide.png">"#)),
        (SELF, "/wide.png", Image(PNG, Png(300, 100))),
    ]),
    row("c16-dark-variant.test", Icon(SELF, "/light.png"), &[
        (SELF, "/", Head(r#"<link rel="icon" href="/light.png">
                   <link rel="icon" href="/dark.png" media="(prefers-color-scheme: dark)">"#)),
        (SELF, "/light.png", Image(PNG, Png(32, 32))),
        (SELF, "/dark.png", Image(PNG, Png(32, 32))),
    ]),
    // Only the colour-scheme rule keeps the dark SVG (scalable, declared last) behind a 16 px
    // PNG; alone, it is still chosen.
    row("c16-dark-svg-loses.test", Sized(SELF, "/light.png", 16, 16), &[
        (SELF, "/", Head(r#"<link rel="icon" href="/light.png" sizes="16x16">
                   <link rel="icon" href="/dark.svg" type="image/svg+xml" media="(prefers-color-scheme: dark)">"#)),
        (SELF, "/light.png", Image(PNG, Png(16, 16))),
        (SELF, "/dark.svg", Image(SVG, Svg)),
    ]),
    row("c16-dark-only.test", Icon(SELF, "/dark.png"), &[
        (SELF, "/", Head(r#"<link rel="icon" href="/dark.png" media="(prefers-color-scheme: dark)">"#)),
        (SELF, "/dark.png", Image(PNG, Png(32, 32))),
    ]),
    row("c17-type-lies.test", Sized(SELF, "/t.svg", 32, 32), &[
        (SELF, "/", Head(r#"<link rel="icon" type="image/svg+xml" href="/t.svg">"#)),
        (SELF, "/t.svg", Image(SVG, Png(32, 32))),
    ]),
    row("c18-webp.test", Sized(SELF, "/w.webp", 32, 32), &[
        (SELF, "/", Head(r#"<link rel="icon" href="/w.webp">"#)),
        (SELF, "/w.webp", Image("image/webp", Webp(32, 32))),
    ]),
    row("c19-path-relative.test", Icon(SELF, "/blog/img/f.png"), &[
        (SELF, "/", Redirect(302, "/blog/post")),
        (SELF, "/blog/post", Head(r#"<link rel="icon" href="img/f.png">"#)),
        (SELF, "/blog/img/f.png", Image(PNG, Png(32, 32))),
        (SELF, "/img/f.png", Image(PNG, Png(32, 32))),
    ]),
    row("c20-dot-segments.test", Icon(SELF, "/a/assets/f.ico"), &[
        (SELF, "/", Redirect(302, "/a/b/c/")),
        (SELF, "/a/b/c/", Head(r#"<link rel="icon" href="../../assets/f.ico">"#)),
        (SELF, "/a/assets/f.ico", Image(ICO, Ico(&[32]))),
    ]),
    row("c21-protocol-relative.test", Icon("cdn.c21-protocol-relative.test", "/i.ico"), &[
        (SELF, "/", Head(r#"<link rel="SHORTCUT ICON" href=//cdn.c21-protocol-relative.test/i.ico>"#)),
        ("cdn.c21-protocol-relative.test", "/i.ico", Image(ICO, Ico(&[32]))),
    ]),
    row("c23-base-href.test", Icon("static.c23-base-href.test", "/v2/i.png"), &[
        (SELF, "/", Head(r#"<base href="http://static.c23-base-href.test/v2/"><base href="/other/"><link rel="icon" href="i.png">"#)),
        ("static.c23-base-href.test", "/v2/i.png", Image(PNG, Png(32, 32))),
        (SELF, "/other/i.png", Image(PNG, Png(32, 32))),
        (SELF, "/i.png", Image(PNG, Png(32, 32))),
    ]),
    row("c24-root-relative-base.test", Icon(SELF, "/app/f.png"), &[
        (SELF, "/", Redirect(302, "/en/home")),
        (SELF, "/en/home", Head(r#"<base href="/app/"><link rel="icon" href="f.png">"#)),
        (SELF, "/app/f.png", Image(PNG, Png(32, 32))),
        (SELF, "/en/home/app/f.png", Image(PNG, Png(32, 32))),
    ]),
    row("c25-non-ascii-path.test", Icon(SELF, "/%C3%ADcone%20final.png"), &[
        (SELF, "/", Head(r#"<link rel="icon" href="/ícone final.png">"#)),
        (SELF, "/%C3%ADcone%20final.png", Image(PNG, Png(32, 32))),
    ]),
    row("c26-cache-buster.test", Icon(SELF, "/f.png?v=3"), &[
        (SELF, "/", Head(r#"<link rel="icon" href="/f.png?v=3#x">"#)),
        (SELF, "/f.png", Image(PNG, Png(32, 32))),
    ]),
    // Character references in an attribute are decoded before the URL is resolved.
    row("c26-entity-in-href.test", Icon(SELF, "/icons/a&b.png?v=3&s=32"), &[
        (SELF, "/", Head(r#"<link rel="icon" href="/icons/a&amp;b.png?v=3&#38;s=32">"#)),
        (SELF, "/icons/a&b.png", Image(PNG, Png(32, 32))),
    ]),
    row("c27-data-base64.test", Data(DATA_PNG16, 16, 16), &[
        (SELF, "/", Head(r#"<link rel="icon" href="$DATA_PNG16">"#)),
        FAVICON,
    ]),
    row("c28-data-svg.test", Data("data:image/svg+xml,%3Csvg%20xmlns='http://www.w3.org/2000/svg'%20viewBox='0%200%2024%2024'%3E%3C/svg%3E", 24, 24), &[
        (SELF, "/", Head(r#"<link rel="icon" href="data:image/svg+xml,%3Csvg%20xmlns='http://www.w3.org/2000/svg'%20viewBox='0%200%2024%2024'%3E%3C/svg%3E">"#)),
    ]),
    row("c29-other-schemes.test", Icon(SELF, "/favicon.ico"), &[
        (SELF, "/", Head(r#"<link rel="icon" href="javascript:alert(1)"><link rel="icon" href="blob:http://x/1">
                   <link rel="icon" href="file:///etc/passwd"><link rel="icon" href="ftp://c29-other-schemes.test/f.png">
                   <link rel="icon" href="about:blank">"#)),
        (SELF, "/f.png", Image(PNG, Png(32, 32))),
        FAVICON,
    ]),
    row("c30-cdn-host.test", Icon("cdn30.test", "/icons/f.png"), &[
        (SELF, "/", Head(r#"<link rel="icon" href="http://cdn30.test/icons/f.png">"#)),
        ("cdn30.test", "/icons/f.png", Image(PNG, Png(32, 32))),
    ]),
    row("c31-body-link.test", Icon(SELF, "/body.png"), &[
        (SELF, "/", Html("<html><head><title>t</title></head><body><p>x</p><link rel=icon href=/body.png></body></html>")),
        (SELF, "/body.png", Image(PNG, Png(32, 32))),
        FAVICON,
    ]),
    row("c31-head-before-body.test", Icon(SELF, "/head.png"), &[
        (SELF, "/", Html("<html><head><link rel=icon href=/head.png></head><body><link rel=icon href=/body.svg></body></html>")),
        (SELF, "/head.png", Image(PNG, Png(16, 16))),
        (SELF, "/body.svg", Image(SVG, Svg)),
    ]),
    row("c32-between-head-and-body.test", Icon(SELF, "/between.png"), &[
        (SELF, "/", Html("<html><head><title>t</title></head>\n<link rel=icon href=/between.png>\n<body>x</body></html>")),
        (SELF, "/between.png", Image(PNG, Png(32, 32))),
    ]),
    row("c33-commented-out.test", Icon(SELF, "/favicon.ico"), &[
        (SELF, "/", Head("<!-- <link rel=icon href=/old.png> -->")),
        (SELF, "/old.png", Image(PNG, Png(32, 32))),
        FAVICON,
    ]),
    row("c34-template.test", Icon(SELF, "/favicon.ico"), &[
        (SELF, "/", Head("<template><link rel=icon href=/tpl.png></template>")),
        (SELF, "/tpl.png", Image(PNG, Png(32, 32))),
        FAVICON,
    ]),
    // A scripting browser ignores <noscript>: /favicon.ico first, the noscript icon only as
    // the last resort.
    row("c35-noscript.test", Icon(SELF, "/favicon.ico"), &[
        (SELF, "/", Head("<noscript><link rel=icon href=/ns.png></noscript>")),
        (SELF, "/ns.png", Image(PNG, Png(32, 32))),
        FAVICON,
    ]),
    row("c35-noscript-last-resort.test", Icon(SELF, "/ns.png"), &[
        (SELF, "/", Head("<noscript><link rel=icon href=/ns.png></noscript>")),
        (SELF, "/ns.png", Image(PNG, Png(32, 32))),
    ]),
    row("c36-script-string.test", Icon(SELF, "/favicon.ico"), &[
        (SELF, "/", Head(r#"<script>document.write('<link rel="icon" href="/js.png">')</script>"#)),
        (SELF, "/js.png", Image(PNG, Png(32, 32))),
        FAVICON,
    ]),
    // A long head (megabytes of inline state) is read to its end, as browsers read it.
    row("c37-huge-html-late-link.test", Icon(SELF, "/late.png"), &[
        (SELF, "/", Huge("", "<link rel=icon href=/late.png>")),
        (SELF, "/late.png", Image(PNG, Png(32, 32))),
        FAVICON,
    ]),
    row("c37-huge-html-early-link.test", Icon(SELF, "/early.png"), &[
        (SELF, "/", Huge("<link rel=icon href=/early.png>", "")),
        (SELF, "/early.png", Image(PNG, Png(32, 32))),
        FAVICON,
    ]),
    row("c38-gzip-page.test", Icon(SELF, "/z.png"), &[
        (SELF, "/", GzipHead(r#"<link rel="icon" href="/z.png">"#)),
        (SELF, "/z.png", Image(PNG, Png(32, 32))),
    ]),
    row("c38-deflate-page.test", Icon(SELF, "/d.png"), &[
        (SELF, "/", DeflateHead(r#"<link rel="icon" href="/d.png">"#)),
        (SELF, "/d.png", Image(PNG, Png(32, 32))),
    ]),
    // HTTP's deflate is zlib, but servers also send raw deflate; browsers read both.
    row("c38-raw-deflate-page.test", Icon(SELF, "/r.png"), &[
        (SELF, "/", RawDeflateHead(r#"<link rel="icon" href="/r.png">"#)),
        (SELF, "/r.png", Image(PNG, Png(32, 32))),
    ]),
    // A page that cannot be decoded is not an empty page.
    row("c38-undecodable-page.test", Fail("invalid_content"), &[
        (SELF, "/", Undecodable),
    ]),
    row("c38-undecodable-page-favicon.test", Icon(SELF, "/favicon.ico"), &[
        (SELF, "/", Undecodable),
        FAVICON,
    ]),
    row("c38-gzip-svg.test", Icon(SELF, "/i.svg"), &[
        (SELF, "/", Head(r#"<link rel="icon" href="/i.svg">"#)),
        (SELF, "/i.svg", GzipSvg),
    ]),
    // The href "/иконка.png" written in windows-1251: decoded first, then percent-encoded as
    // UTF-8; a wrong decoding gives a different URL.
    row("c39-charset-header.test", Icon(SELF, CYR), &[
        (SELF, "/", Cp1251("text/html; charset=windows-1251", "")),
        (SELF, CYR, Image(PNG, Png(32, 32))),
    ]),
    row("c39-charset-meta.test", Icon(SELF, CYR), &[
        (SELF, "/", Cp1251(HTML, r#"<meta charset="windows-1251">"#)),
        (SELF, CYR, Image(PNG, Png(32, 32))),
    ]),
    row("c39-bom-beats-header.test", Icon(SELF, CYR), &[
        (SELF, "/", Utf8Bom("text/html; charset=windows-1251")),
        (SELF, CYR, Image(PNG, Png(32, 32))),
    ]),
    row("c39-utf16le-bom.test", Icon(SELF, CYR), &[
        (SELF, "/", Utf16(false)),
        (SELF, CYR, Image(PNG, Png(32, 32))),
    ]),
    row("c39-utf16be-bom.test", Icon(SELF, CYR), &[
        (SELF, "/", Utf16(true)),
        (SELF, CYR, Image(PNG, Png(32, 32))),
    ]),
    row("c40-json-root.test", Icon(SELF, "/favicon.ico"), &[
        (SELF, "/", File(JSON, r#"{"link":"<link rel=icon href=/j.png>"}"#)),
        (SELF, "/j.png", Image(PNG, Png(32, 32))),
        FAVICON,
    ]),
    row("c40-pdf-root.test", Icon(SELF, "/apple-touch-icon.png"), &[
        (SELF, "/", File("application/pdf", "%PDF-1.4\n")),
        (SELF, "/apple-touch-icon.png", Image(PNG, Png(180, 180))),
    ]),
    row("c41-vite-default.test", Icon(SELF, "/vite.svg"), &[
        (SELF, "/", Html(r#"<!doctype html><html><head><link rel="icon" type="image/svg+xml" href="/vite.svg" /></head><body><div id="root"></div><script type="module" src="/src/main.tsx"></script></body></html>"#)),
        (SELF, "/vite.svg", Image(SVG, Svg)),
    ]),
    row("c42-manifest.test", Sized(SELF, "/s/i/192.png", 192, 192), &[
        (SELF, "/", Head(r#"<link rel="manifest" href="/s/site.webmanifest">"#)),
        (SELF, "/s/site.webmanifest", File("application/manifest+json", r#"{"name":"x","icons":[{"src":"i/192.png","sizes":"192x192","type":"image/png"}]}"#)),
        (SELF, "/s/i/192.png", Image(PNG, Png(192, 192))),
        (SELF, "/i/192.png", Image(PNG, Png(192, 192))),
    ]),
    row("c42-manifest-text-plain.test", Icon(SELF, "/m.png"), &[
        (SELF, "/", Head(r#"<link rel="manifest" href="/manifest.json">"#)),
        (SELF, "/manifest.json", File("text/plain", r#"{"icons":[{"src":"/m.png","sizes":"144x144"}]}"#)),
        (SELF, "/m.png", Image(PNG, Png(144, 144))),
    ]),
    row("c43-purpose.test", Icon(SELF, "/any.png"), &[
        (SELF, "/", Head(r#"<link rel="manifest" href="/m.json">"#)),
        (SELF, "/m.json", File(JSON, r#"{"icons":[{"src":"/mask.png","sizes":"512x512","purpose":"maskable"},
                {"src":"/mono.png","sizes":"192x192","purpose":"monochrome"},
                {"src":"/any.png","sizes":"192x192","purpose":"any"}]}"#)),
        (SELF, "/mask.png", Image(PNG, Png(512, 512))),
        (SELF, "/mono.png", Image(PNG, Png(192, 192))),
        (SELF, "/any.png", Image(PNG, Png(192, 192))),
    ]),
    row("c43-monochrome-only.test", Icon(SELF, "/favicon.ico"), &[
        (SELF, "/", Head(r#"<link rel="manifest" href="/m.json">"#)),
        (SELF, "/m.json", File(JSON, r#"{"icons":[{"src":"/mono.png","sizes":"192x192","purpose":"monochrome"}]}"#)),
        (SELF, "/mono.png", Image(PNG, Png(192, 192))),
        FAVICON,
    ]),
    row("c44-partly-invalid-manifest.test", Icon(SELF, "/good.png"), &[
        (SELF, "/", Head(r#"<link rel="manifest" href="/m.json">"#)),
        (SELF, "/m.json", File(JSON, "\u{feff}{\"icons\":[{\"sizes\":\"512x512\"},{\"src\":7},{\"src\":\"/good.png\"}]} junk")),
        (SELF, "/good.png", Image(PNG, Png(192, 192))),
    ]),
    row("c45-manifest-404.test", Icon(SELF, "/favicon.ico"), &[
        (SELF, "/", Head(r#"<link rel="manifest" href="/missing.json">"#)),
        FAVICON,
    ]),
    row("c45-manifest-html.test", Icon(SELF, "/favicon.ico"), &[
        (SELF, "/", Head(r#"<link rel="manifest" href="/m.json">"#)),
        (SELF, "/m.json", Html("<html><body>login</body></html>")),
        FAVICON,
    ]),
    row("c46-tile.test", Icon(SELF, "/tile.png"), &[
        (SELF, "/", Head(r#"<meta name="msapplication-TileImage" content="/tile.png">"#)),
        (SELF, "/tile.png", Image(PNG, Png(144, 144))),
        FAVICON,
    ]),
    row("c46-tile-below-icon.test", Icon(SELF, "/i.png"), &[
        (SELF, "/", Head(r#"<meta name="msapplication-TileImage" content="/tile.png"><link rel="icon" href="/i.png">"#)),
        (SELF, "/tile.png", Image(PNG, Png(144, 144))),
        (SELF, "/i.png", Image(PNG, Png(32, 32))),
    ]),
    // The tiles of browserconfig.xml: the one the page names, else `/browserconfig.xml`, which
    // is asked for only when nothing else verified (`/favicon.ico` is the better icon).
    row("c46-browserconfig-named.test", Sized(SELF, "/t/150.png", 150, 150), &[
        (SELF, "/", Head(r#"<meta name="msapplication-config" content="/ie/browserconfig.xml">"#)),
        (SELF, "/ie/browserconfig.xml", File(XML, BROWSERCONFIG)),
        (SELF, "/t/150.png", Image(PNG, Png(150, 150))),
        (SELF, "/t/wide.png", Image(PNG, Png(310, 150))),
    ]),
    row("c46-browserconfig-default.test", Sized(SELF, "/t/150.png", 150, 150), &[
        (SELF, "/", Head("")),
        (SELF, "/browserconfig.xml", File("text/xml", BROWSERCONFIG)),
        (SELF, "/t/150.png", Image(PNG, Png(150, 150))),
    ]),
    row("c46-browserconfig-after-favicon.test", Icon(SELF, "/favicon.ico"), &[
        (SELF, "/", Head("")),
        (SELF, "/browserconfig.xml", File(XML, BROWSERCONFIG)),
        (SELF, "/t/150.png", Image(PNG, Png(150, 150))),
        FAVICON,
    ]),
    row("c47-og-image-only.test", Fail("no_icon"), &[
        (SELF, "/", Head(OG)),
        (SELF, "/og.png", Image(PNG, Png(1200, 630))),
        (SELF, "/tw.png", Image(PNG, Png(1200, 630))),
    ]),
    row("c47-og-image-and-favicon.test", Icon(SELF, "/favicon.ico"), &[
        (SELF, "/", Head(OG)),
        (SELF, "/og.png", Image(PNG, Png(630, 630))),
        FAVICON,
    ]),
    row("c48-nothing-declared-apple.test", Icon(SELF, "/apple-touch-icon.png"), &[
        (SELF, "/", Head("")),
        (SELF, "/apple-touch-icon.png", Image(PNG, Png(180, 180))),
    ]),
    row("c48-nothing-declared-precomposed.test", Icon(SELF, "/apple-touch-icon-precomposed.png"), &[
        (SELF, "/", Head("")),
        (SELF, "/apple-touch-icon-precomposed.png", Image(PNG, Png(180, 180))),
    ]),
    row("c48-nothing-at-all.test", Fail("no_icon"), &[(SELF, "/", Head(""))]),
    row("c49-declared-404.test", Icon(SELF, "/favicon.ico"), &[
        (SELF, "/", Head(r#"<link rel="icon" href="/missing.png">"#)),
        FAVICON,
    ]),
    row("c50-soft-404.test", Fail("no_icon"), &[
        (SELF, "/", Head("")),
        (SELF, "/favicon.ico", Html("<!doctype html><html><body>Not found</body></html>")),
        (SELF, "/apple-touch-icon.png", Html("<html><body>app shell</body></html>")),
    ]),
    row("c51-octet-stream.test", Icon(SELF, "/i.png"), &[
        (SELF, "/", Head(r#"<link rel="icon" href="/i.png">"#)),
        (SELF, "/i.png", Image("application/octet-stream", Png(32, 32))),
    ]),
    row("c51-svg-as-text.test", Icon(SELF, "/i.svg"), &[
        (SELF, "/", Head(r#"<link rel="icon" href="/i.svg">"#)),
        (SELF, "/i.svg", Image("text/plain", Svg)),
    ]),
    row("c52-empty-and-truncated.test", Fail("no_icon"), &[
        (SELF, "/", Head(r#"<link rel="icon" href="/t.png">"#)),
        (SELF, "/t.png", Image(PNG, Truncated)),
        (SELF, "/favicon.ico", File(ICO, "")),
    ]),
    row("c52-broken-then-good.test", Icon(SELF, "/apple.png"), &[
        (SELF, "/", Head(r#"<link rel="icon" href="/t.png"><link rel="apple-touch-icon" href="/apple.png">"#)),
        (SELF, "/t.png", Image(PNG, Truncated)),
        (SELF, "/apple.png", Image(PNG, Png(180, 180))),
        (SELF, "/favicon.ico", File(ICO, "")),
    ]),
    row("c53-placeholder-pixel.test", Icon(SELF, "/favicon.ico"), &[
        (SELF, "/", Head(r#"<link rel="icon" href="/pixel.gif">"#)),
        (SELF, "/pixel.gif", Image("image/gif", Gif(1, 1))),
        FAVICON,
    ]),
    row("c55-oversized-bytes.test", Icon(SELF, "/favicon.ico"), &[
        (SELF, "/", Head(r#"<link rel="icon" href="/big.png">"#)),
        (SELF, "/big.png", Image(PNG, Oversized)),
        FAVICON,
    ]),
    row("c55-pixel-bomb.test", Icon(SELF, "/favicon.ico"), &[
        (SELF, "/", Head(r#"<link rel="icon" href="/bomb.png">"#)),
        (SELF, "/bomb.png", Image(PNG, Claiming(30_000, 30_000))),
        FAVICON,
    ]),
    row("c56-ico-256.test", Sized(SELF, "/favicon.ico", 256, 256), &[
        (SELF, "/", Head("")),
        (SELF, "/favicon.ico", Image(ICO, Ico(&[16, 256]))),
    ]),
    row("c57-animated-gif.test", Sized(SELF, "/a.gif", 32, 32), &[
        (SELF, "/", Head(r#"<link rel="icon" href="/a.gif">"#)),
        (SELF, "/a.gif", Image("image/gif", Gif(32, 32))),
    ]),
    row("c58-svg-with-script.test", Icon(SELF, "/s.svg"), &[
        (SELF, "/", Head(r#"<link rel="icon" href="/s.svg">"#)),
        (SELF, "/s.svg", File(SVG, r#"<?xml version="1.0"?><!-- logo --><svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32"><script>alert(1)</script><image href="http://elsewhere.test/x.png"/></svg>"#)),
    ]),
    // The declared URL is what is reported; its redirects are followed to the bytes.
    row("c60-icon-redirect.test", Icon(SELF, "/r.png"), &[
        (SELF, "/", Head(r#"<link rel="icon" href="/r.png">"#)),
        (SELF, "/r.png", Redirect(302, "http://cdn60.test/real.png")),
        ("cdn60.test", "/real.png", Image(PNG, Png(32, 32))),
    ]),
    row("c60-icon-redirect-to-login.test", Icon(SELF, "/favicon.ico"), &[
        (SELF, "/", Head(r#"<link rel="icon" href="/r.png">"#)),
        (SELF, "/r.png", Redirect(302, "/login")),
        (SELF, "/login", Html("<html><body>Sign in</body></html>")),
        FAVICON,
    ]),
    row("c60-icon-redirect-too-long.test", Icon(SELF, "/favicon.ico"), &[
        (SELF, "/", Head(r#"<link rel="icon" href="/r0.png">"#)),
        (SELF, "/r0.png", Redirect(302, "/r1.png")),
        (SELF, "/r1.png", Redirect(302, "/r2.png")),
        (SELF, "/r2.png", Redirect(302, "/r3.png")),
        (SELF, "/r3.png", Redirect(302, "/r4.png")),
        (SELF, "/r4.png", Redirect(302, "/r5.png")),
        (SELF, "/r5.png", Redirect(302, "/r6.png")),
        (SELF, "/r6.png", Image(PNG, Png(32, 32))),
        FAVICON,
    ]),
    row("c61-http-www-chain.test", Icon("www.c61-http-www-chain.test", "/home/i.png"), &[
        (SELF, "/", Redirect(301, "http://www.c61-http-www-chain.test/")),
        ("www.c61-http-www-chain.test", "/", Redirect(302, "/home/")),
        ("www.c61-http-www-chain.test", "/home/", Head(r#"<link rel="icon" href="i.png">"#)),
        ("www.c61-http-www-chain.test", "/home/i.png", Image(PNG, Png(32, 32))),
    ]),
    row("c62-cross-domain.test", Icon("parent62.test", "/brand/p.png"), &[
        (SELF, "/", Redirect(301, "http://parent62.test/brand/")),
        FAVICON,
        ("parent62.test", "/brand/", Head(r#"<link rel="icon" href="p.png">"#)),
        ("parent62.test", "/brand/p.png", Image(PNG, Png(32, 32))),
    ]),
    row("c63-redirect-loop.test", Fail("too_many_redirects"), &[
        (SELF, "/", Redirect(302, "/a")),
        (SELF, "/a", Redirect(302, "/")),
    ]),
    row("c63-loop-favicon-still-tried.test", Icon(SELF, "/favicon.ico"), &[
        (SELF, "/", Redirect(302, "/a")),
        (SELF, "/a", Redirect(302, "/")),
        FAVICON,
    ]),
    row("c63-eleven-hops.test", Fail("too_many_redirects"), &[
        (SELF, "/", Redirect(302, "/h1")),
        (SELF, "/h1", Redirect(302, "/h2")),
        (SELF, "/h2", Redirect(302, "/h3")),
        (SELF, "/h3", Redirect(302, "/h4")),
        (SELF, "/h4", Redirect(302, "/h5")),
        (SELF, "/h5", Redirect(302, "/h6")),
        (SELF, "/h6", Redirect(302, "/h7")),
        (SELF, "/h7", Redirect(302, "/h8")),
        (SELF, "/h8", Redirect(302, "/h9")),
        (SELF, "/h9", Redirect(302, "/h10")),
        (SELF, "/h10", Redirect(302, "/h11")),
        (SELF, "/h11", Redirect(302, "/h12")),
        (SELF, "/h12", Head("<link rel=icon href=/i.png>")),
        (SELF, "/i.png", Image(PNG, Png(32, 32))),
    ]),
    row("c64-meta-refresh.test", Icon(SELF, "/en/i.png"), &[
        (SELF, "/", Head(r#"<meta http-equiv="Refresh" content="0; URL='/en/'">"#)),
        (SELF, "/en/", Head(r#"<link rel="icon" href="i.png">"#)),
        (SELF, "/en/i.png", Image(PNG, Png(32, 32))),
    ]),
    row("c64-meta-refresh-odd-case.test", Icon(SELF, "/fr/i.png"), &[
        (SELF, "/", Head("<META HTTP-EQUIV=refresh CONTENT=\"5;url=/fr/\">")),
        (SELF, "/fr/", Head(r#"<link rel="icon" href="i.png">"#)),
        (SELF, "/fr/i.png", Image(PNG, Png(32, 32))),
    ]),
    // The dead hosts are in `DEAD`.
    row("c65-apex-dead-www-alive.test", Icon("www.c65-apex-dead-www-alive.test", "/w.png"), &[
        ("www.c65-apex-dead-www-alive.test", "/", Head(r#"<link rel="icon" href="/w.png">"#)),
        ("www.c65-apex-dead-www-alive.test", "/w.png", Image(PNG, Png(32, 32))),
    ]),
    row("www.c65-www-dead-apex-alive.test", Icon("c65-www-dead-apex-alive.test", "/a.png"), &[
        ("c65-www-dead-apex-alive.test", "/", Head(r#"<link rel="icon" href="/a.png">"#)),
        ("c65-www-dead-apex-alive.test", "/a.png", Image(PNG, Png(32, 32))),
    ]),
    row("c65-both-dead.test", Fail("connect"), &[]),
    // Browsers do not count header lines: a few hundred repeated ones are read.
    row("c65-many-headers.test", Icon(SELF, "/i.png"), &[
        (SELF, "/", ManyHeaders(150, "<link rel=icon href=/i.png>")),
        (SELF, "/i.png", Image(PNG, Png(32, 32))),
    ]),
    // An answer past every header bound came from a working server: its `/favicon.ico` is
    // tried, not the www twin.
    row("c65-headers-over-bound.test", Icon(SELF, "/favicon.ico"), &[
        (SELF, "/", ManyHeaders(5000, "<link rel=icon href=/i.png>")),
        (SELF, "/i.png", Image(PNG, Png(32, 32))),
        FAVICON,
        ("www.c65-headers-over-bound.test", "/", Head("<link rel=icon href=/w.png>")),
        ("www.c65-headers-over-bound.test", "/w.png", Image(PNG, Png(32, 32))),
    ]),
    row("c67-nxdomain.test", Fail("dns"), &[]),
    row("c69-bot-wall-browser-retry.test", Icon(SELF, "/b.png"), &[
        (SELF, "/", BrowserOnly(r#"<link rel="icon" href="/b.png">"#)),
        (SELF, "/b.png", Image(PNG, Png(32, 32))),
    ]),
    row("c69-bot-wall-403.test", Fail("http_status"), &[(SELF, "/", Status(403, HTML, CHALLENGE))]),
    row("c69-challenge-503.test", Fail("http_status"), &[
        (SELF, "/", Status(503, HTML, CHALLENGE)),
    ]),
    row("c69-403-page-but-favicon.test", Icon(SELF, "/favicon.ico"), &[
        (SELF, "/", Status(403, HTML, "<html>Forbidden</html>")),
        FAVICON,
    ]),
    row("c70-429-retry-after.test", Fail("rate_limited"), &[(SELF, "/", TooManyRequests("120"))]),
    row("c70-500.test", Fail("rate_limited"), &[
        (SELF, "/", Status(500, HTML, "<html>oops</html>")),
    ]),
    row("c70-404-home.test", Fail("http_status"), &[
        (SELF, "/", Status(404, HTML, "<html>gone</html>")),
    ]),
];

fn head(links: &str) -> String {
    format!("<!doctype html><html><head><title>t</title>{links}</head><body>hello</body></html>")
}

/// The `data:` URL `DATA_PNG16` stands for.
fn data_png16() -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(png(16, 16));
    format!("data:image/png;base64,{b64}")
}

fn image(img: Img) -> Vec<u8> {
    match img {
        Png(w, h) => png(w, h),
        Ico(sizes) => ico(sizes),
        Svg => svg(),
        Gif(w, h) => gif(w, h),
        Webp(w, h) => webp(w, h),
        Claiming(w, h) => png_claiming(w, h),
        Truncated => {
            let mut bytes = png(32, 32);
            bytes.truncate(bytes.len() - 20);
            bytes
        }
        Oversized => {
            let mut bytes = png(32, 32);
            bytes.resize(2 * 1024 * 1024, 0);
            bytes
        }
    }
}

/// Serves `body` at `host` and `path`.
fn serve(sites: &mut Sites, host: &str, path: &str, body: Body) {
    let cyrillic_link = "<link rel=icon href=\"/иконка.png\">";
    let route = match body {
        Head(links) => Route::html(&head(&links.replace(DATA_PNG16, &data_png16()))),
        Html(html) => Route::html(html),
        File(content_type, text) => Route::new(200, content_type, text),
        Image(content_type, img) => Route::new(200, content_type, image(img)),
        Redirect(status, location) => Route::redirect(status, location),
        Status(status, content_type, text) => Route::new(status, content_type, text),
        TooManyRequests(secs) => {
            Route::new(429, "text/plain", "slow down").with_header("retry-after", secs)
        }
        GzipHead(links) => Route::gzip(HTML, head(links).as_bytes()),
        DeflateHead(links) => Route::deflate(HTML, head(links).as_bytes()),
        GzipSvg => Route::gzip(SVG, &svg()),
        Cp1251(content_type, tags) => {
            let html = head(&format!("{tags}{cyrillic_link}"));
            let bytes = encoding_rs::WINDOWS_1251.encode(&html).0.into_owned();
            Route::new(200, content_type, bytes)
        }
        Utf8Bom(content_type) => {
            let mut bytes = b"\xef\xbb\xbf".to_vec();
            bytes.extend_from_slice(head(cyrillic_link).as_bytes());
            Route::new(200, content_type, bytes)
        }
        Huge(before, after) => {
            let script = format!(
                "<script>window.__DATA__=\"{}\"</script>",
                "a".repeat(3 * 1024 * 1024)
            );
            Route::html(&head(&format!("{before}{script}{after}")))
        }
        Utf16(big_endian) => {
            let html = head(cyrillic_link);
            let mut bytes = if big_endian {
                vec![0xfe, 0xff]
            } else {
                vec![0xff, 0xfe]
            };
            for unit in html.encode_utf16() {
                bytes.extend(if big_endian {
                    unit.to_be_bytes()
                } else {
                    unit.to_le_bytes()
                });
            }
            Route::new(200, "text/html; charset=utf-8", bytes)
        }
        RawDeflateHead(links) => Route::raw_deflate(HTML, head(links).as_bytes()),
        Undecodable => Route::new(200, HTML, b"\x1f\x8b\x08\0not gzip at all".to_vec())
            .with_header("content-encoding", "gzip"),
        ManyHeaders(count, links) => (0..count).fold(Route::html(&head(links)), |r, i| {
            r.with_header("x-pad", &i.to_string())
        }),
        BrowserOnly(links) => {
            sites.browser_only(host, path, Route::html(&head(links)));
            return;
        }
    };
    sites.route(host, path, route);
}

/// What a row's result must be, as `outcome` reads a result row.
fn expected(scenario: &Scenario) -> Outcome {
    let at = |host: &str, path: &str| {
        let host = if host == SELF { scenario.host } else { host };
        format!("http://{host}{path}")
    };
    match scenario.expect {
        Icon(host, path) => Outcome::Icon(at(host, path), None),
        Sized(host, path, w, h) => Outcome::Icon(at(host, path), Some((w, h))),
        Data(url, w, h) => Outcome::Icon(url.replace(DATA_PNG16, &data_png16()), Some((w, h))),
        Fail(code) => Outcome::Fail(code.to_owned()),
    }
}

/// What a result row says.
#[derive(Clone, Debug, PartialEq)]
enum Outcome {
    /// Success with this `favicon_url` (and these dimensions, when the expectation has them).
    Icon(String, Option<(i64, i64)>),
    /// Failure with this `error_code`.
    Fail(String),
}

/// Every scenario's sites on one fake internet, and the `FETCH_RESOLVE` that reaches them
/// (the `DEAD` hosts at an address that refuses connections).
async fn build_world() -> (FakeInternet, String) {
    let mut sites = Sites::default();
    let mut seen = std::collections::HashSet::new();
    for scenario in SCENARIOS {
        assert!(
            seen.insert(scenario.host),
            "duplicate scenario {}",
            scenario.host
        );
        for &(host, path, body) in scenario.routes {
            let host = if host == SELF { scenario.host } else { host };
            serve(&mut sites, host, path, body);
        }
    }
    let internet = FakeInternet::start(sites).await;
    let dead = dead_addr().await;
    let rules: Vec<(&str, SocketAddr)> = DEAD.iter().map(|h| (*h, dead)).collect();
    let resolve = internet.resolve_exact(&rules);
    (internet, resolve)
}

/// Whether the finder really went to a scenario's sites: some host it serves was asked
/// something. A scenario whose every host is `DEAD` has nothing to ask, and runs if its row
/// is there.
fn ran(scenario: &Scenario, internet: &FakeInternet) -> bool {
    let hosts: Vec<&str> = scenario
        .routes
        .iter()
        .map(|&(host, _, _)| if host == SELF { scenario.host } else { host })
        .filter(|host| !DEAD.contains(host))
        .collect();
    hosts.is_empty() || hosts.iter().any(|host| internet.host_hits(host) > 0)
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

fn outcome(row: &Value) -> Outcome {
    match row["status"].as_str() {
        Some("success") => {
            let size = row["width"].as_i64().zip(row["height"].as_i64());
            Outcome::Icon(row["favicon_url"].as_str().unwrap_or("").to_owned(), size)
        }
        _ => Outcome::Fail(row["error_code"].as_str().unwrap_or("<none>").to_owned()),
    }
}

async fn every_scenario(backend: Backend) {
    let (internet, resolve) = build_world().await;
    let app = TestApp::spawn_drained(
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
    // A messy spelling is normalised to the scenario's host name.
    let mut submitted: Vec<String> = SCENARIOS.iter().map(|s| s.host.to_owned()).collect();
    submitted.push("C01-Uppercase-REL.TEST.".into());
    let (status, created) = app
        .post_json(
            "/jobs",
            &json!({"client_id": "finder-cases", "domains": submitted}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let job_id = created["job_id"].as_str().unwrap().to_owned();
    // One try each, so one drain finishes every row.
    assert_eq!(
        app.drain().await,
        SCENARIOS.len() as u64,
        "every row finished"
    );
    let (_, job) = app.get_json(&format!("/jobs/{job_id}")).await;
    assert_ne!(job["status"], "processing", "{job}");
    assert_eq!(job["total"], SCENARIOS.len() as i64, "{job}");

    let rows = results_by_domain(&app, &job_id).await;
    assert_eq!(
        rows.len(),
        SCENARIOS.len(),
        "one row per scenario, no other"
    );
    for scenario in SCENARIOS {
        assert!(
            ran(scenario, &internet),
            "{}: none of its sites was asked anything",
            scenario.host
        );
    }
    let mut wrong = Vec::new();
    for scenario in SCENARIOS {
        let host = scenario.host;
        let row = rows
            .get(host)
            .unwrap_or_else(|| panic!("no result row for {host}"));
        let expect = expected(scenario);
        let got = outcome(row);
        let matches = match (&expect, &got) {
            (Outcome::Icon(url, None), Outcome::Icon(got_url, _)) => url == got_url,
            _ => expect == got,
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
        SCENARIOS.len(),
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
    let from_config = candidate(
        "c46-browserconfig-named.test",
        "http://c46-browserconfig-named.test/t/150.png",
    );
    assert_eq!(
        (&from_config["source"], &from_config["declared_sizes"]),
        (&json!("tile"), &json!("150x150")),
        "{from_config}"
    );
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
        ("c46-browserconfig-after-favicon.test", "/browserconfig.xml"),
        ("c46-browserconfig-named.test", "/browserconfig.xml"),
        ("c46-browserconfig-named.test", "/t/wide.png"),
        ("www.c65-headers-over-bound.test", "/"),
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
both_backends!(scenario_table, every_scenario);
