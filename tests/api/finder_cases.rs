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
use std::time::Duration;

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
    /// `Head` with 3 MiB of script between these two parts (past the HTML cap).
    Huge(&'static str, &'static str),
    /// `Head` for browser-like requests; anything else gets a bot wall's 403.
    BrowserOnly(&'static str),
}

/// One row: a domain, the routes (host, path, body) of the sites it needs, what it must give.
struct Scenario {
    host: &'static str,
    expect: Expect,
    routes: &'static [(&'static str, &'static str, Body)],
}

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

/// Every scenario. Rel tokens and attributes (c01–c09), sizes and picking (c10–c18), URL
/// resolution (c19–c30), document structure (c31–c41), manifests, tiles and meta (c42–c47),
/// fetching and verification (c48–c60), redirects, hosts and network (c61–c70).
const SCENARIOS: &[Scenario] = &[
    Scenario {
        host: "c01-uppercase-rel.test",
        expect: Icon(SELF, "/Fav.ico"),
        routes: &[
            (
                SELF,
                "/",
                Head(r#"<LINK REL="SHORTCUT ICON" HREF="/Fav.ico">"#),
            ),
            (SELF, "/Fav.ico", Image(ICO, Ico(&[32]))),
            (SELF, "/fav.ico", Image(ICO, Ico(&[48]))),
        ],
    },
    Scenario {
        host: "c02-token-order.test",
        expect: Icon(SELF, "/a.png"),
        routes: &[
            (
                SELF,
                "/",
                Head(r#"<link rel="icon shortcut" href="/a.png">"#),
            ),
            (SELF, "/a.png", Image(PNG, Png(32, 32))),
        ],
    },
    Scenario {
        host: "c02-alternate-icon.test",
        expect: Icon(SELF, "/b.png"),
        routes: &[
            (
                SELF,
                "/",
                Head(r#"<link rel="alternate icon" href="/b.png">"#),
            ),
            (SELF, "/b.png", Image(PNG, Png(32, 32))),
        ],
    },
    Scenario {
        host: "c03-whitespace.test",
        expect: Icon(SELF, "/icon.png"),
        routes: &[
            (
                SELF,
                "/",
                Head("<link rel=\" icon\n\" href=\"\n /ic\ton.png \">"),
            ),
            (SELF, "/icon.png", Image(PNG, Png(32, 32))),
        ],
    },
    Scenario {
        host: "c04-substring-traps.test",
        expect: Icon(SELF, "/favicon.ico"),
        routes: &[
            (
                SELF,
                "/",
                Head(
                    r#"<link rel="apple-touch-startup-image" href="/s.png">
                   <link rel="icons" href="/n.png">
                   <link rel="preload" as="image" href="/favicon.png">"#,
                ),
            ),
            (SELF, "/s.png", Image(PNG, Png(64, 64))),
            (SELF, "/n.png", Image(PNG, Png(64, 64))),
            (SELF, "/favicon.png", Image(PNG, Png(64, 64))),
            (SELF, "/favicon.ico", Image(ICO, Ico(&[16]))),
        ],
    },
    Scenario {
        host: "c05-mask-icon.test",
        expect: Icon(SELF, "/favicon.ico"),
        routes: &[
            (
                SELF,
                "/",
                Head("<link rel=mask-icon href=/pin.svg color=#000>"),
            ),
            (SELF, "/pin.svg", Image(SVG, Svg)),
            (SELF, "/favicon.ico", Image(ICO, Ico(&[16]))),
        ],
    },
    Scenario {
        host: "c05-mask-icon-only.test",
        expect: Fail("no_icon"),
        routes: &[
            (
                SELF,
                "/",
                Head("<link rel=mask-icon href=/pin.svg color=#000>"),
            ),
            (SELF, "/pin.svg", Image(SVG, Svg)),
        ],
    },
    Scenario {
        host: "c06-fluid-below-apple.test",
        expect: Icon(SELF, "/apple.png"),
        routes: &[
            (
                SELF,
                "/",
                Head(
                    r#"<link rel="fluid-icon" href="/fluid.png"><link rel="apple-touch-icon" href="/apple.png">"#,
                ),
            ),
            (SELF, "/fluid.png", Image(PNG, Png(512, 512))),
            (SELF, "/apple.png", Image(PNG, Png(180, 180))),
        ],
    },
    // A real 512 px RGBA PNG stored uncompressed would pass the 1 MiB icon cap.
    Scenario {
        host: "c06-fluid-only.test",
        expect: Sized(SELF, "/fluid.png", 512, 512),
        routes: &[
            (
                SELF,
                "/",
                Head(r#"<link rel="fluid-icon" href="/fluid.png">"#),
            ),
            (SELF, "/fluid.png", Image(PNG, Claiming(512, 512))),
            (SELF, "/favicon.ico", Image(ICO, Ico(&[16]))),
        ],
    },
    Scenario {
        host: "c07-precomposed.test",
        expect: Sized(SELF, "/p.png", 180, 180),
        routes: &[
            (
                SELF,
                "/",
                Head(r#"<link rel="apple-touch-icon-precomposed" href="/p.png">"#),
            ),
            (SELF, "/p.png", Image(PNG, Png(180, 180))),
            (SELF, "/favicon.ico", Image(ICO, Ico(&[16]))),
        ],
    },
    Scenario {
        host: "c08-empty-href.test",
        expect: Icon(SELF, "/favicon.ico"),
        routes: &[
            (
                SELF,
                "/",
                Head(r##"<link rel="icon" href=""><link rel="icon" href="#"><link rel="icon">"##),
            ),
            (SELF, "/favicon.ico", Image(ICO, Ico(&[16]))),
        ],
    },
    Scenario {
        host: "c09-xhtml-unquoted.test",
        expect: Icon(SELF, "/f.png"),
        routes: &[
            (SELF, "/", Head("<LINK rel=icon href=/f.png />")),
            (SELF, "/f.png", Image(PNG, Png(32, 32))),
        ],
    },
    Scenario {
        host: "c09-slash-glued.test",
        expect: Icon(SELF, "/g.png/"),
        routes: &[
            (SELF, "/", Head("<link rel=icon href=/g.png/>")),
            (SELF, "/g.png/", Image(PNG, Png(32, 32))),
            (SELF, "/g.png", Image(PNG, Png(32, 32))),
        ],
    },
    Scenario {
        host: "c10-multi-size-ico.test",
        expect: Sized(SELF, "/m.ico", 48, 48),
        routes: &[
            (
                SELF,
                "/",
                Head(r#"<link rel="icon" href="/m.ico" sizes="16x16 32x32 48x48">"#),
            ),
            (SELF, "/m.ico", Image(ICO, Ico(&[16, 32, 48]))),
        ],
    },
    Scenario {
        host: "c11-svg-any.test",
        expect: Icon(SELF, "/s.svg"),
        routes: &[
            (
                SELF,
                "/",
                Head(
                    r#"<link rel="icon" href="/s.svg" sizes="any" type="image/svg+xml">
                   <link rel="icon" href="/p.png" sizes="32x32">"#,
                ),
            ),
            (SELF, "/s.svg", Image(SVG, Svg)),
            (SELF, "/p.png", Image(PNG, Png(32, 32))),
        ],
    },
    Scenario {
        host: "c12-malformed-sizes.test",
        expect: Sized(SELF, "/c.png", 96, 96),
        routes: &[
            (
                SELF,
                "/",
                Head(
                    r#"<link rel="icon" href="/a.png" sizes="32X32">
                   <link rel="icon" href="/b.png" sizes="48×48">
                   <link rel="icon" href="/c.png" sizes="96x96+">
                   <link rel="icon" href="/d.png" sizes="banana">"#,
                ),
            ),
            (SELF, "/a.png", Image(PNG, Png(32, 32))),
            (SELF, "/b.png", Image(PNG, Png(48, 48))),
            (SELF, "/c.png", Image(PNG, Png(96, 96))),
            (SELF, "/d.png", Image(PNG, Png(16, 16))),
        ],
    },
    Scenario {
        host: "c13-lying-sizes.test",
        expect: Sized(SELF, "/real.png", 64, 64),
        routes: &[
            (
                SELF,
                "/",
                Head(
                    r#"<link rel="icon" href="/big.png" sizes="192x192">
                   <link rel="icon" href="/real.png" sizes="16x16">"#,
                ),
            ),
            (SELF, "/big.png", Image(PNG, Png(16, 16))),
            (SELF, "/real.png", Image(PNG, Png(64, 64))),
        ],
    },
    Scenario {
        host: "c14-pick-svg.test",
        expect: Icon(SELF, "/i.svg"),
        routes: &[
            (
                SELF,
                "/",
                Head(
                    r#"<link rel="icon" href="/16.png" sizes="16x16">
                   <link rel="icon" href="/i.svg" type="image/svg+xml">
                   <link rel="icon" href="/32.png" sizes="32x32">
                   <link rel="apple-touch-icon" href="/180.png">
                   <link rel="manifest" href="/m.json">"#,
                ),
            ),
            (SELF, "/16.png", Image(PNG, Png(16, 16))),
            (SELF, "/32.png", Image(PNG, Png(32, 32))),
            (SELF, "/i.svg", Image(SVG, Svg)),
            (SELF, "/180.png", Image(PNG, Png(180, 180))),
            (SELF, "/m.json", File(JSON, MANIFEST_192)),
            (SELF, "/m192.png", Image(PNG, Png(192, 192))),
        ],
    },
    // Our policy: rel=icon is a tier above apple-touch and manifest, so among the icons the
    // largest below 64 wins rather than the 180 px apple-touch icon.
    Scenario {
        host: "c14-pick-raster.test",
        expect: Sized(SELF, "/32.png", 32, 32),
        routes: &[
            (
                SELF,
                "/",
                Head(
                    r#"<link rel="icon" href="/16.png" sizes="16x16">
                   <link rel="icon" href="/32.png" sizes="32x32">
                   <link rel="apple-touch-icon" href="/180.png">
                   <link rel="manifest" href="/m.json">"#,
                ),
            ),
            (SELF, "/16.png", Image(PNG, Png(16, 16))),
            (SELF, "/32.png", Image(PNG, Png(32, 32))),
            (SELF, "/180.png", Image(PNG, Png(180, 180))),
            (SELF, "/m.json", File(JSON, MANIFEST_192)),
            (SELF, "/m192.png", Image(PNG, Png(192, 192))),
        ],
    },
    Scenario {
        host: "c14-closest-above-64.test",
        expect: Sized(SELF, "/96.png", 96, 96),
        routes: &[
            (
                SELF,
                "/",
                Head(
                    r#"<link rel="icon" href="/512.png"><link rel="icon" href="/96.png">
                   <link rel="icon" href="/48.png">"#,
                ),
            ),
            (SELF, "/512.png", Image(PNG, Png(512, 512))),
            (SELF, "/96.png", Image(PNG, Png(96, 96))),
            (SELF, "/48.png", Image(PNG, Png(48, 48))),
        ],
    },
    Scenario {
        host: "c14-later-wins.test",
        expect: Icon(SELF, "/second.png"),
        routes: &[
            (
                SELF,
                "/",
                Head(r#"<link rel="icon" href="/first.png"><link rel="icon" href="/second.png">"#),
            ),
            (SELF, "/first.png", Image(PNG, Png(32, 32))),
            (SELF, "/second.png", Image(PNG, Png(32, 32))),
        ],
    },
    Scenario {
        host: "c14-png-over-ico.test",
        expect: Icon(SELF, "/x.png"),
        routes: &[
            (
                SELF,
                "/",
                Head(r#"<link rel="icon" href="/x.png"><link rel="icon" href="/x.ico">"#),
            ),
            (SELF, "/x.png", Image(PNG, Png(32, 32))),
            (SELF, "/x.ico", Image(ICO, Ico(&[32]))),
        ],
    },
    Scenario {
        host: "c15-non-square.test",
        expect: Icon(SELF, "/favicon.ico"),
        routes: &[
            (SELF, "/", Head(r#"<link rel="icon" href="/wide.png">"#)),
            (SELF, "/wide.png", Image(PNG, Png(300, 100))),
            (SELF, "/favicon.ico", Image(ICO, Ico(&[16]))),
        ],
    },
    Scenario {
        host: "c15-non-square-last-resort.test",
        expect: Sized(SELF, "/wide.png", 300, 100),
        routes: &[
            (SELF, "/", Head(r#"<link rel="icon" href="/wide.png">"#)),
            (SELF, "/wide.png", Image(PNG, Png(300, 100))),
        ],
    },
    Scenario {
        host: "c16-dark-variant.test",
        expect: Icon(SELF, "/light.png"),
        routes: &[
            (
                SELF,
                "/",
                Head(
                    r#"<link rel="icon" href="/light.png">
                   <link rel="icon" href="/dark.png" media="(prefers-color-scheme: dark)">"#,
                ),
            ),
            (SELF, "/light.png", Image(PNG, Png(32, 32))),
            (SELF, "/dark.png", Image(PNG, Png(32, 32))),
        ],
    },
    // Only the colour-scheme rule keeps the dark SVG (scalable, declared last) behind a 16 px
    // PNG; alone, it is still chosen.
    Scenario {
        host: "c16-dark-svg-loses.test",
        expect: Sized(SELF, "/light.png", 16, 16),
        routes: &[
            (
                SELF,
                "/",
                Head(
                    r#"<link rel="icon" href="/light.png" sizes="16x16">
                   <link rel="icon" href="/dark.svg" type="image/svg+xml" media="(prefers-color-scheme: dark)">"#,
                ),
            ),
            (SELF, "/light.png", Image(PNG, Png(16, 16))),
            (SELF, "/dark.svg", Image(SVG, Svg)),
        ],
    },
    Scenario {
        host: "c16-dark-only.test",
        expect: Icon(SELF, "/dark.png"),
        routes: &[
            (
                SELF,
                "/",
                Head(r#"<link rel="icon" href="/dark.png" media="(prefers-color-scheme: dark)">"#),
            ),
            (SELF, "/dark.png", Image(PNG, Png(32, 32))),
        ],
    },
    Scenario {
        host: "c17-type-lies.test",
        expect: Sized(SELF, "/t.svg", 32, 32),
        routes: &[
            (
                SELF,
                "/",
                Head(r#"<link rel="icon" type="image/svg+xml" href="/t.svg">"#),
            ),
            (SELF, "/t.svg", Image(SVG, Png(32, 32))),
        ],
    },
    Scenario {
        host: "c18-webp.test",
        expect: Sized(SELF, "/w.webp", 32, 32),
        routes: &[
            (SELF, "/", Head(r#"<link rel="icon" href="/w.webp">"#)),
            (SELF, "/w.webp", Image("image/webp", Webp(32, 32))),
        ],
    },
    Scenario {
        host: "c19-path-relative.test",
        expect: Icon(SELF, "/blog/img/f.png"),
        routes: &[
            (SELF, "/", Redirect(302, "/blog/post")),
            (
                SELF,
                "/blog/post",
                Head(r#"<link rel="icon" href="img/f.png">"#),
            ),
            (SELF, "/blog/img/f.png", Image(PNG, Png(32, 32))),
            (SELF, "/img/f.png", Image(PNG, Png(32, 32))),
        ],
    },
    Scenario {
        host: "c20-dot-segments.test",
        expect: Icon(SELF, "/a/assets/f.ico"),
        routes: &[
            (SELF, "/", Redirect(302, "/a/b/c/")),
            (
                SELF,
                "/a/b/c/",
                Head(r#"<link rel="icon" href="../../assets/f.ico">"#),
            ),
            (SELF, "/a/assets/f.ico", Image(ICO, Ico(&[32]))),
        ],
    },
    Scenario {
        host: "c21-protocol-relative.test",
        expect: Icon("cdn.c21-protocol-relative.test", "/i.ico"),
        routes: &[
            (
                SELF,
                "/",
                Head(r#"<link rel="SHORTCUT ICON" href=//cdn.c21-protocol-relative.test/i.ico>"#),
            ),
            (
                "cdn.c21-protocol-relative.test",
                "/i.ico",
                Image(ICO, Ico(&[32])),
            ),
        ],
    },
    Scenario {
        host: "c23-base-href.test",
        expect: Icon("static.c23-base-href.test", "/v2/i.png"),
        routes: &[
            (
                SELF,
                "/",
                Head(
                    r#"<base href="http://static.c23-base-href.test/v2/"><base href="/other/"><link rel="icon" href="i.png">"#,
                ),
            ),
            (
                "static.c23-base-href.test",
                "/v2/i.png",
                Image(PNG, Png(32, 32)),
            ),
            (SELF, "/other/i.png", Image(PNG, Png(32, 32))),
            (SELF, "/i.png", Image(PNG, Png(32, 32))),
        ],
    },
    Scenario {
        host: "c24-root-relative-base.test",
        expect: Icon(SELF, "/app/f.png"),
        routes: &[
            (SELF, "/", Redirect(302, "/en/home")),
            (
                SELF,
                "/en/home",
                Head(r#"<base href="/app/"><link rel="icon" href="f.png">"#),
            ),
            (SELF, "/app/f.png", Image(PNG, Png(32, 32))),
            (SELF, "/en/home/app/f.png", Image(PNG, Png(32, 32))),
        ],
    },
    Scenario {
        host: "c25-non-ascii-path.test",
        expect: Icon(SELF, "/%C3%ADcone%20final.png"),
        routes: &[
            (
                SELF,
                "/",
                Head(r#"<link rel="icon" href="/ícone final.png">"#),
            ),
            (SELF, "/%C3%ADcone%20final.png", Image(PNG, Png(32, 32))),
        ],
    },
    Scenario {
        host: "c26-cache-buster.test",
        expect: Icon(SELF, "/f.png?v=3"),
        routes: &[
            (SELF, "/", Head(r#"<link rel="icon" href="/f.png?v=3#x">"#)),
            (SELF, "/f.png", Image(PNG, Png(32, 32))),
        ],
    },
    // Character references in an attribute are decoded before the URL is resolved.
    Scenario {
        host: "c26-entity-in-href.test",
        expect: Icon(SELF, "/icons/a&b.png?v=3&s=32"),
        routes: &[
            (
                SELF,
                "/",
                Head(r#"<link rel="icon" href="/icons/a&amp;b.png?v=3&#38;s=32">"#),
            ),
            (SELF, "/icons/a&b.png", Image(PNG, Png(32, 32))),
        ],
    },
    Scenario {
        host: "c27-data-base64.test",
        expect: Data(DATA_PNG16, 16, 16),
        routes: &[
            (SELF, "/", Head(r#"<link rel="icon" href="$DATA_PNG16">"#)),
            (SELF, "/favicon.ico", Image(ICO, Ico(&[16]))),
        ],
    },
    Scenario {
        host: "c28-data-svg.test",
        expect: Data(
            "data:image/svg+xml,%3Csvg%20xmlns='http://www.w3.org/2000/svg'%20viewBox='0%200%2024%2024'%3E%3C/svg%3E",
            24,
            24,
        ),
        routes: &[(
            SELF,
            "/",
            Head(
                r#"<link rel="icon" href="data:image/svg+xml,%3Csvg%20xmlns='http://www.w3.org/2000/svg'%20viewBox='0%200%2024%2024'%3E%3C/svg%3E">"#,
            ),
        )],
    },
    Scenario {
        host: "c29-other-schemes.test",
        expect: Icon(SELF, "/favicon.ico"),
        routes: &[
            (
                SELF,
                "/",
                Head(
                    r#"<link rel="icon" href="javascript:alert(1)"><link rel="icon" href="blob:http://x/1">
                   <link rel="icon" href="file:///etc/passwd"><link rel="icon" href="ftp://c29-other-schemes.test/f.png">
                   <link rel="icon" href="about:blank">"#,
                ),
            ),
            (SELF, "/f.png", Image(PNG, Png(32, 32))),
            (SELF, "/favicon.ico", Image(ICO, Ico(&[16]))),
        ],
    },
    Scenario {
        host: "c30-cdn-host.test",
        expect: Icon("cdn30.test", "/icons/f.png"),
        routes: &[
            (
                SELF,
                "/",
                Head(r#"<link rel="icon" href="http://cdn30.test/icons/f.png">"#),
            ),
            ("cdn30.test", "/icons/f.png", Image(PNG, Png(32, 32))),
        ],
    },
    Scenario {
        host: "c31-body-link.test",
        expect: Icon(SELF, "/body.png"),
        routes: &[
            (
                SELF,
                "/",
                Html(
                    "<html><head><title>t</title></head><body><p>x</p><link rel=icon href=/body.png></body></html>",
                ),
            ),
            (SELF, "/body.png", Image(PNG, Png(32, 32))),
            (SELF, "/favicon.ico", Image(ICO, Ico(&[16]))),
        ],
    },
    Scenario {
        host: "c31-head-before-body.test",
        expect: Icon(SELF, "/head.png"),
        routes: &[
            (
                SELF,
                "/",
                Html(
                    "<html><head><link rel=icon href=/head.png></head><body><link rel=icon href=/body.svg></body></html>",
                ),
            ),
            (SELF, "/head.png", Image(PNG, Png(16, 16))),
            (SELF, "/body.svg", Image(SVG, Svg)),
        ],
    },
    Scenario {
        host: "c32-between-head-and-body.test",
        expect: Icon(SELF, "/between.png"),
        routes: &[
            (
                SELF,
                "/",
                Html(
                    "<html><head><title>t</title></head>\n<link rel=icon href=/between.png>\n<body>x</body></html>",
                ),
            ),
            (SELF, "/between.png", Image(PNG, Png(32, 32))),
        ],
    },
    Scenario {
        host: "c33-commented-out.test",
        expect: Icon(SELF, "/favicon.ico"),
        routes: &[
            (SELF, "/", Head("<!-- <link rel=icon href=/old.png> -->")),
            (SELF, "/old.png", Image(PNG, Png(32, 32))),
            (SELF, "/favicon.ico", Image(ICO, Ico(&[16]))),
        ],
    },
    Scenario {
        host: "c34-template.test",
        expect: Icon(SELF, "/favicon.ico"),
        routes: &[
            (
                SELF,
                "/",
                Head("<template><link rel=icon href=/tpl.png></template>"),
            ),
            (SELF, "/tpl.png", Image(PNG, Png(32, 32))),
            (SELF, "/favicon.ico", Image(ICO, Ico(&[16]))),
        ],
    },
    // A scripting browser ignores <noscript>: /favicon.ico first, the noscript icon only as
    // the last resort.
    Scenario {
        host: "c35-noscript.test",
        expect: Icon(SELF, "/favicon.ico"),
        routes: &[
            (
                SELF,
                "/",
                Head("<noscript><link rel=icon href=/ns.png></noscript>"),
            ),
            (SELF, "/ns.png", Image(PNG, Png(32, 32))),
            (SELF, "/favicon.ico", Image(ICO, Ico(&[16]))),
        ],
    },
    Scenario {
        host: "c35-noscript-last-resort.test",
        expect: Icon(SELF, "/ns.png"),
        routes: &[
            (
                SELF,
                "/",
                Head("<noscript><link rel=icon href=/ns.png></noscript>"),
            ),
            (SELF, "/ns.png", Image(PNG, Png(32, 32))),
        ],
    },
    Scenario {
        host: "c36-script-string.test",
        expect: Icon(SELF, "/favicon.ico"),
        routes: &[
            (
                SELF,
                "/",
                Head(r#"<script>document.write('<link rel="icon" href="/js.png">')</script>"#),
            ),
            (SELF, "/js.png", Image(PNG, Png(32, 32))),
            (SELF, "/favicon.ico", Image(ICO, Ico(&[16]))),
        ],
    },
    // Past the HTML cap: what came before it counts, what came after is never seen.
    Scenario {
        host: "c37-huge-html-late-link.test",
        expect: Icon(SELF, "/favicon.ico"),
        routes: &[
            (SELF, "/", Huge("", "<link rel=icon href=/late.png>")),
            (SELF, "/late.png", Image(PNG, Png(32, 32))),
            (SELF, "/favicon.ico", Image(ICO, Ico(&[16]))),
        ],
    },
    Scenario {
        host: "c37-huge-html-early-link.test",
        expect: Icon(SELF, "/early.png"),
        routes: &[
            (SELF, "/", Huge("<link rel=icon href=/early.png>", "")),
            (SELF, "/early.png", Image(PNG, Png(32, 32))),
            (SELF, "/favicon.ico", Image(ICO, Ico(&[16]))),
        ],
    },
    Scenario {
        host: "c38-gzip-page.test",
        expect: Icon(SELF, "/z.png"),
        routes: &[
            (SELF, "/", GzipHead(r#"<link rel="icon" href="/z.png">"#)),
            (SELF, "/z.png", Image(PNG, Png(32, 32))),
        ],
    },
    Scenario {
        host: "c38-deflate-page.test",
        expect: Icon(SELF, "/d.png"),
        routes: &[
            (SELF, "/", DeflateHead(r#"<link rel="icon" href="/d.png">"#)),
            (SELF, "/d.png", Image(PNG, Png(32, 32))),
        ],
    },
    Scenario {
        host: "c38-gzip-svg.test",
        expect: Icon(SELF, "/i.svg"),
        routes: &[
            (SELF, "/", Head(r#"<link rel="icon" href="/i.svg">"#)),
            (SELF, "/i.svg", GzipSvg),
        ],
    },
    // The href "/иконка.png" written in windows-1251: decoded first, then percent-encoded as
    // UTF-8; a wrong decoding gives a different URL.
    Scenario {
        host: "c39-charset-header.test",
        expect: Icon(SELF, CYR),
        routes: &[
            (SELF, "/", Cp1251("text/html; charset=windows-1251", "")),
            (SELF, CYR, Image(PNG, Png(32, 32))),
        ],
    },
    Scenario {
        host: "c39-charset-meta.test",
        expect: Icon(SELF, CYR),
        routes: &[
            (SELF, "/", Cp1251(HTML, r#"<meta charset="windows-1251">"#)),
            (SELF, CYR, Image(PNG, Png(32, 32))),
        ],
    },
    Scenario {
        host: "c39-bom-beats-header.test",
        expect: Icon(SELF, CYR),
        routes: &[
            (SELF, "/", Utf8Bom("text/html; charset=windows-1251")),
            (SELF, CYR, Image(PNG, Png(32, 32))),
        ],
    },
    Scenario {
        host: "c40-json-root.test",
        expect: Icon(SELF, "/favicon.ico"),
        routes: &[
            (
                SELF,
                "/",
                File(JSON, r#"{"link":"<link rel=icon href=/j.png>"}"#),
            ),
            (SELF, "/j.png", Image(PNG, Png(32, 32))),
            (SELF, "/favicon.ico", Image(ICO, Ico(&[16]))),
        ],
    },
    Scenario {
        host: "c40-pdf-root.test",
        expect: Icon(SELF, "/apple-touch-icon.png"),
        routes: &[
            (SELF, "/", File("application/pdf", "%PDF-1.4\n")),
            (SELF, "/apple-touch-icon.png", Image(PNG, Png(180, 180))),
        ],
    },
    Scenario {
        host: "c41-vite-default.test",
        expect: Icon(SELF, "/vite.svg"),
        routes: &[
            (
                SELF,
                "/",
                Html(
                    r#"<!doctype html><html><head><link rel="icon" type="image/svg+xml" href="/vite.svg" /></head><body><div id="root"></div><script type="module" src="/src/main.tsx"></script></body></html>"#,
                ),
            ),
            (SELF, "/vite.svg", Image(SVG, Svg)),
        ],
    },
    Scenario {
        host: "c42-manifest.test",
        expect: Sized(SELF, "/s/i/192.png", 192, 192),
        routes: &[
            (
                SELF,
                "/",
                Head(r#"<link rel="manifest" href="/s/site.webmanifest">"#),
            ),
            (
                SELF,
                "/s/site.webmanifest",
                File(
                    "application/manifest+json",
                    r#"{"name":"x","icons":[{"src":"i/192.png","sizes":"192x192","type":"image/png"}]}"#,
                ),
            ),
            (SELF, "/s/i/192.png", Image(PNG, Png(192, 192))),
            (SELF, "/i/192.png", Image(PNG, Png(192, 192))),
        ],
    },
    Scenario {
        host: "c42-manifest-text-plain.test",
        expect: Icon(SELF, "/m.png"),
        routes: &[
            (
                SELF,
                "/",
                Head(r#"<link rel="manifest" href="/manifest.json">"#),
            ),
            (
                SELF,
                "/manifest.json",
                File(
                    "text/plain",
                    r#"{"icons":[{"src":"/m.png","sizes":"144x144"}]}"#,
                ),
            ),
            (SELF, "/m.png", Image(PNG, Png(144, 144))),
        ],
    },
    Scenario {
        host: "c43-purpose.test",
        expect: Icon(SELF, "/any.png"),
        routes: &[
            (SELF, "/", Head(r#"<link rel="manifest" href="/m.json">"#)),
            (
                SELF,
                "/m.json",
                File(
                    JSON,
                    r#"{"icons":[{"src":"/mask.png","sizes":"512x512","purpose":"maskable"},
                {"src":"/mono.png","sizes":"192x192","purpose":"monochrome"},
                {"src":"/any.png","sizes":"192x192","purpose":"any"}]}"#,
                ),
            ),
            (SELF, "/mask.png", Image(PNG, Png(512, 512))),
            (SELF, "/mono.png", Image(PNG, Png(192, 192))),
            (SELF, "/any.png", Image(PNG, Png(192, 192))),
        ],
    },
    Scenario {
        host: "c43-monochrome-only.test",
        expect: Icon(SELF, "/favicon.ico"),
        routes: &[
            (SELF, "/", Head(r#"<link rel="manifest" href="/m.json">"#)),
            (
                SELF,
                "/m.json",
                File(
                    JSON,
                    r#"{"icons":[{"src":"/mono.png","sizes":"192x192","purpose":"monochrome"}]}"#,
                ),
            ),
            (SELF, "/mono.png", Image(PNG, Png(192, 192))),
            (SELF, "/favicon.ico", Image(ICO, Ico(&[16]))),
        ],
    },
    Scenario {
        host: "c44-partly-invalid-manifest.test",
        expect: Icon(SELF, "/good.png"),
        routes: &[
            (SELF, "/", Head(r#"<link rel="manifest" href="/m.json">"#)),
            (
                SELF,
                "/m.json",
                File(
                    JSON,
                    "\u{feff}{\"icons\":[{\"sizes\":\"512x512\"},{\"src\":7},{\"src\":\"/good.png\"}]} junk",
                ),
            ),
            (SELF, "/good.png", Image(PNG, Png(192, 192))),
        ],
    },
    Scenario {
        host: "c45-manifest-404.test",
        expect: Icon(SELF, "/favicon.ico"),
        routes: &[
            (
                SELF,
                "/",
                Head(r#"<link rel="manifest" href="/missing.json">"#),
            ),
            (SELF, "/favicon.ico", Image(ICO, Ico(&[16]))),
        ],
    },
    Scenario {
        host: "c45-manifest-html.test",
        expect: Icon(SELF, "/favicon.ico"),
        routes: &[
            (SELF, "/", Head(r#"<link rel="manifest" href="/m.json">"#)),
            (SELF, "/m.json", Html("<html><body>login</body></html>")),
            (SELF, "/favicon.ico", Image(ICO, Ico(&[16]))),
        ],
    },
    Scenario {
        host: "c46-tile.test",
        expect: Icon(SELF, "/tile.png"),
        routes: &[
            (
                SELF,
                "/",
                Head(r#"<meta name="msapplication-TileImage" content="/tile.png">"#),
            ),
            (SELF, "/tile.png", Image(PNG, Png(144, 144))),
            (SELF, "/favicon.ico", Image(ICO, Ico(&[16]))),
        ],
    },
    Scenario {
        host: "c46-tile-below-icon.test",
        expect: Icon(SELF, "/i.png"),
        routes: &[
            (
                SELF,
                "/",
                Head(
                    r#"<meta name="msapplication-TileImage" content="/tile.png"><link rel="icon" href="/i.png">"#,
                ),
            ),
            (SELF, "/tile.png", Image(PNG, Png(144, 144))),
            (SELF, "/i.png", Image(PNG, Png(32, 32))),
        ],
    },
    Scenario {
        host: "c47-og-image-only.test",
        expect: Fail("no_icon"),
        routes: &[
            (SELF, "/", Head(OG)),
            (SELF, "/og.png", Image(PNG, Png(1200, 630))),
            (SELF, "/tw.png", Image(PNG, Png(1200, 630))),
        ],
    },
    Scenario {
        host: "c47-og-image-and-favicon.test",
        expect: Icon(SELF, "/favicon.ico"),
        routes: &[
            (SELF, "/", Head(OG)),
            (SELF, "/og.png", Image(PNG, Png(630, 630))),
            (SELF, "/favicon.ico", Image(ICO, Ico(&[16]))),
        ],
    },
    Scenario {
        host: "c48-nothing-declared-apple.test",
        expect: Icon(SELF, "/apple-touch-icon.png"),
        routes: &[
            (SELF, "/", Head("")),
            (SELF, "/apple-touch-icon.png", Image(PNG, Png(180, 180))),
        ],
    },
    Scenario {
        host: "c48-nothing-declared-precomposed.test",
        expect: Icon(SELF, "/apple-touch-icon-precomposed.png"),
        routes: &[
            (SELF, "/", Head("")),
            (
                SELF,
                "/apple-touch-icon-precomposed.png",
                Image(PNG, Png(180, 180)),
            ),
        ],
    },
    Scenario {
        host: "c48-nothing-at-all.test",
        expect: Fail("no_icon"),
        routes: &[(SELF, "/", Head(""))],
    },
    Scenario {
        host: "c49-declared-404.test",
        expect: Icon(SELF, "/favicon.ico"),
        routes: &[
            (SELF, "/", Head(r#"<link rel="icon" href="/missing.png">"#)),
            (SELF, "/favicon.ico", Image(ICO, Ico(&[16]))),
        ],
    },
    Scenario {
        host: "c50-soft-404.test",
        expect: Fail("no_icon"),
        routes: &[
            (SELF, "/", Head("")),
            (
                SELF,
                "/favicon.ico",
                Html("<!doctype html><html><body>Not found</body></html>"),
            ),
            (
                SELF,
                "/apple-touch-icon.png",
                Html("<html><body>app shell</body></html>"),
            ),
        ],
    },
    Scenario {
        host: "c51-octet-stream.test",
        expect: Icon(SELF, "/i.png"),
        routes: &[
            (SELF, "/", Head(r#"<link rel="icon" href="/i.png">"#)),
            (
                SELF,
                "/i.png",
                Image("application/octet-stream", Png(32, 32)),
            ),
        ],
    },
    Scenario {
        host: "c51-svg-as-text.test",
        expect: Icon(SELF, "/i.svg"),
        routes: &[
            (SELF, "/", Head(r#"<link rel="icon" href="/i.svg">"#)),
            (SELF, "/i.svg", Image("text/plain", Svg)),
        ],
    },
    Scenario {
        host: "c52-empty-and-truncated.test",
        expect: Fail("no_icon"),
        routes: &[
            (SELF, "/", Head(r#"<link rel="icon" href="/t.png">"#)),
            (SELF, "/t.png", Image(PNG, Truncated)),
            (SELF, "/favicon.ico", File(ICO, "")),
        ],
    },
    Scenario {
        host: "c52-broken-then-good.test",
        expect: Icon(SELF, "/apple.png"),
        routes: &[
            (
                SELF,
                "/",
                Head(
                    r#"<link rel="icon" href="/t.png"><link rel="apple-touch-icon" href="/apple.png">"#,
                ),
            ),
            (SELF, "/t.png", Image(PNG, Truncated)),
            (SELF, "/apple.png", Image(PNG, Png(180, 180))),
            (SELF, "/favicon.ico", File(ICO, "")),
        ],
    },
    Scenario {
        host: "c53-placeholder-pixel.test",
        expect: Icon(SELF, "/favicon.ico"),
        routes: &[
            (SELF, "/", Head(r#"<link rel="icon" href="/pixel.gif">"#)),
            (SELF, "/pixel.gif", Image("image/gif", Gif(1, 1))),
            (SELF, "/favicon.ico", Image(ICO, Ico(&[16]))),
        ],
    },
    Scenario {
        host: "c55-oversized-bytes.test",
        expect: Icon(SELF, "/favicon.ico"),
        routes: &[
            (SELF, "/", Head(r#"<link rel="icon" href="/big.png">"#)),
            (SELF, "/big.png", Image(PNG, Oversized)),
            (SELF, "/favicon.ico", Image(ICO, Ico(&[16]))),
        ],
    },
    Scenario {
        host: "c55-pixel-bomb.test",
        expect: Icon(SELF, "/favicon.ico"),
        routes: &[
            (SELF, "/", Head(r#"<link rel="icon" href="/bomb.png">"#)),
            (SELF, "/bomb.png", Image(PNG, Claiming(30_000, 30_000))),
            (SELF, "/favicon.ico", Image(ICO, Ico(&[16]))),
        ],
    },
    Scenario {
        host: "c56-ico-256.test",
        expect: Sized(SELF, "/favicon.ico", 256, 256),
        routes: &[
            (SELF, "/", Head("")),
            (SELF, "/favicon.ico", Image(ICO, Ico(&[16, 256]))),
        ],
    },
    Scenario {
        host: "c57-animated-gif.test",
        expect: Sized(SELF, "/a.gif", 32, 32),
        routes: &[
            (SELF, "/", Head(r#"<link rel="icon" href="/a.gif">"#)),
            (SELF, "/a.gif", Image("image/gif", Gif(32, 32))),
        ],
    },
    Scenario {
        host: "c58-svg-with-script.test",
        expect: Icon(SELF, "/s.svg"),
        routes: &[
            (SELF, "/", Head(r#"<link rel="icon" href="/s.svg">"#)),
            (
                SELF,
                "/s.svg",
                File(
                    SVG,
                    r#"<?xml version="1.0"?><!-- logo --><svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32"><script>alert(1)</script><image href="http://elsewhere.test/x.png"/></svg>"#,
                ),
            ),
        ],
    },
    // The declared URL is what is reported; its redirects are followed to the bytes.
    Scenario {
        host: "c60-icon-redirect.test",
        expect: Icon(SELF, "/r.png"),
        routes: &[
            (SELF, "/", Head(r#"<link rel="icon" href="/r.png">"#)),
            (SELF, "/r.png", Redirect(302, "http://cdn60.test/real.png")),
            ("cdn60.test", "/real.png", Image(PNG, Png(32, 32))),
        ],
    },
    Scenario {
        host: "c60-icon-redirect-to-login.test",
        expect: Icon(SELF, "/favicon.ico"),
        routes: &[
            (SELF, "/", Head(r#"<link rel="icon" href="/r.png">"#)),
            (SELF, "/r.png", Redirect(302, "/login")),
            (SELF, "/login", Html("<html><body>Sign in</body></html>")),
            (SELF, "/favicon.ico", Image(ICO, Ico(&[16]))),
        ],
    },
    Scenario {
        host: "c60-icon-redirect-too-long.test",
        expect: Icon(SELF, "/favicon.ico"),
        routes: &[
            (SELF, "/", Head(r#"<link rel="icon" href="/r0.png">"#)),
            (SELF, "/r0.png", Redirect(302, "/r1.png")),
            (SELF, "/r1.png", Redirect(302, "/r2.png")),
            (SELF, "/r2.png", Redirect(302, "/r3.png")),
            (SELF, "/r3.png", Redirect(302, "/r4.png")),
            (SELF, "/r4.png", Redirect(302, "/r5.png")),
            (SELF, "/r5.png", Redirect(302, "/r6.png")),
            (SELF, "/r6.png", Image(PNG, Png(32, 32))),
            (SELF, "/favicon.ico", Image(ICO, Ico(&[16]))),
        ],
    },
    Scenario {
        host: "c61-http-www-chain.test",
        expect: Icon("www.c61-http-www-chain.test", "/home/i.png"),
        routes: &[
            (
                SELF,
                "/",
                Redirect(301, "http://www.c61-http-www-chain.test/"),
            ),
            ("www.c61-http-www-chain.test", "/", Redirect(302, "/home/")),
            (
                "www.c61-http-www-chain.test",
                "/home/",
                Head(r#"<link rel="icon" href="i.png">"#),
            ),
            (
                "www.c61-http-www-chain.test",
                "/home/i.png",
                Image(PNG, Png(32, 32)),
            ),
        ],
    },
    Scenario {
        host: "c62-cross-domain.test",
        expect: Icon("parent62.test", "/brand/p.png"),
        routes: &[
            (SELF, "/", Redirect(301, "http://parent62.test/brand/")),
            (SELF, "/favicon.ico", Image(ICO, Ico(&[16]))),
            (
                "parent62.test",
                "/brand/",
                Head(r#"<link rel="icon" href="p.png">"#),
            ),
            ("parent62.test", "/brand/p.png", Image(PNG, Png(32, 32))),
        ],
    },
    Scenario {
        host: "c63-redirect-loop.test",
        expect: Fail("too_many_redirects"),
        routes: &[
            (SELF, "/", Redirect(302, "/a")),
            (SELF, "/a", Redirect(302, "/")),
        ],
    },
    Scenario {
        host: "c63-loop-favicon-still-tried.test",
        expect: Icon(SELF, "/favicon.ico"),
        routes: &[
            (SELF, "/", Redirect(302, "/a")),
            (SELF, "/a", Redirect(302, "/")),
            (SELF, "/favicon.ico", Image(ICO, Ico(&[16]))),
        ],
    },
    Scenario {
        host: "c63-eleven-hops.test",
        expect: Fail("too_many_redirects"),
        routes: &[
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
        ],
    },
    Scenario {
        host: "c64-meta-refresh.test",
        expect: Icon(SELF, "/en/i.png"),
        routes: &[
            (
                SELF,
                "/",
                Head(r#"<meta http-equiv="Refresh" content="0; URL='/en/'">"#),
            ),
            (SELF, "/en/", Head(r#"<link rel="icon" href="i.png">"#)),
            (SELF, "/en/i.png", Image(PNG, Png(32, 32))),
        ],
    },
    Scenario {
        host: "c64-meta-refresh-odd-case.test",
        expect: Icon(SELF, "/fr/i.png"),
        routes: &[
            (
                SELF,
                "/",
                Head("<META HTTP-EQUIV=refresh CONTENT=\"5;url=/fr/\">"),
            ),
            (SELF, "/fr/", Head(r#"<link rel="icon" href="i.png">"#)),
            (SELF, "/fr/i.png", Image(PNG, Png(32, 32))),
        ],
    },
    // The dead hosts are in `DEAD`.
    Scenario {
        host: "c65-apex-dead-www-alive.test",
        expect: Icon("www.c65-apex-dead-www-alive.test", "/w.png"),
        routes: &[
            (
                "www.c65-apex-dead-www-alive.test",
                "/",
                Head(r#"<link rel="icon" href="/w.png">"#),
            ),
            (
                "www.c65-apex-dead-www-alive.test",
                "/w.png",
                Image(PNG, Png(32, 32)),
            ),
        ],
    },
    Scenario {
        host: "www.c65-www-dead-apex-alive.test",
        expect: Icon("c65-www-dead-apex-alive.test", "/a.png"),
        routes: &[
            (
                "c65-www-dead-apex-alive.test",
                "/",
                Head(r#"<link rel="icon" href="/a.png">"#),
            ),
            (
                "c65-www-dead-apex-alive.test",
                "/a.png",
                Image(PNG, Png(32, 32)),
            ),
        ],
    },
    Scenario {
        host: "c65-both-dead.test",
        expect: Fail("connect"),
        routes: &[],
    },
    Scenario {
        host: "c67-nxdomain.test",
        expect: Fail("dns"),
        routes: &[],
    },
    Scenario {
        host: "c69-bot-wall-browser-retry.test",
        expect: Icon(SELF, "/b.png"),
        routes: &[
            (SELF, "/", BrowserOnly(r#"<link rel="icon" href="/b.png">"#)),
            (SELF, "/b.png", Image(PNG, Png(32, 32))),
        ],
    },
    Scenario {
        host: "c69-bot-wall-403.test",
        expect: Fail("http_status"),
        routes: &[(SELF, "/", Status(403, HTML, CHALLENGE))],
    },
    Scenario {
        host: "c69-challenge-503.test",
        expect: Fail("http_status"),
        routes: &[(SELF, "/", Status(503, HTML, CHALLENGE))],
    },
    Scenario {
        host: "c69-403-page-but-favicon.test",
        expect: Icon(SELF, "/favicon.ico"),
        routes: &[
            (SELF, "/", Status(403, HTML, "<html>Forbidden</html>")),
            (SELF, "/favicon.ico", Image(ICO, Ico(&[16]))),
        ],
    },
    Scenario {
        host: "c70-429-retry-after.test",
        expect: Fail("rate_limited"),
        routes: &[(SELF, "/", TooManyRequests("120"))],
    },
    Scenario {
        host: "c70-500.test",
        expect: Fail("rate_limited"),
        routes: &[(SELF, "/", Status(500, HTML, "<html>oops</html>"))],
    },
    Scenario {
        host: "c70-404-home.test",
        expect: Fail("http_status"),
        routes: &[(SELF, "/", Status(404, HTML, "<html>gone</html>"))],
    },
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
    assert!(
        SCENARIOS.len() >= 80,
        "the suite must keep at least 80 scenarios, has {}",
        SCENARIOS.len()
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
    let job = app.wait_for_job(&job_id, Duration::from_secs(90)).await;
    assert_eq!(job["total"], SCENARIOS.len() as i64, "{job}");

    let rows = results_by_domain(&app, &job_id).await;
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
both_backends!(scenario_table, every_scenario);
