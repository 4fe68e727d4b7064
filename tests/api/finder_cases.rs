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
mod table;
use table::SCENARIOS;

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
