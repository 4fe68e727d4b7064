//! Which icon wins: declared links, the manifest, the default paths, and the checks that
//! turn a declared icon down (soft 404s, placeholders, oversized inline data, dark-scheme
//! variants) so the next candidate gets its turn.

use super::*;

#[tokio::test]
async fn link_icon_found_via_http_fallback() {
    let s = Server::start(|r| match r.path.as_str() {
        "/" => html(
            r#"<html><head><link rel="icon" href="/i.png" sizes="32x32"></head><body></body></html>"#,
        ),
        "/i.png" => ok("application/octet-stream", png_bytes(32, 32)),
        _ => status(404),
    })
    .await;
    let found = find_on(&s, "site.test").await.unwrap();
    assert_eq!(found.favicon_url, "http://site.test/i.png");
    assert_eq!(found.final_url.as_deref(), Some("http://site.test/"));
    assert_eq!((found.mime.as_str(), found.width), ("image/png", 32));
    assert_eq!(found.candidates[0].source, CandidateSource::Icon);
    assert!(
        found
            .candidates
            .iter()
            .any(|c| c.url == "http://site.test/favicon.ico")
    );
}

#[tokio::test]
async fn only_default_favicon_ico() {
    let s = Server::start(|r| match r.path.as_str() {
        "/" => html("<html><head><title>x</title></head><body>hi</body></html>"),
        "/favicon.ico" => ok("image/x-icon", ico_bytes(&[16, 32])),
        _ => status(404),
    })
    .await;
    let found = find_on(&s, "site.test").await.unwrap();
    assert_eq!(found.favicon_url, "http://site.test/favicon.ico");
    assert_eq!((found.mime.as_str(), found.width), ("image/x-icon", 32));
    assert_eq!(found.candidates[0].source, CandidateSource::DefaultPath);
}

#[tokio::test]
async fn soft_404_favicon_is_rejected() {
    // A single-page app answers every path with its HTML and a 200: a "favicon" that is
    // really a page must be rejected by sniffing, not trusted for its status.
    let s = Server::start(|r| match r.path.as_str() {
        "/" => html("<html><head></head><body>app</body></html>"),
        _ => html("<!doctype html><html><head><title>App</title></head><body></body></html>"),
    })
    .await;
    let err = find_on(&s, "spa.test").await.unwrap_err();
    assert_eq!(err.category, ErrorCategory::NoIcon);
    let ico = err
        .candidates
        .iter()
        .find(|c| c.url == "http://spa.test/favicon.ico")
        .unwrap();
    assert!(ico.error.as_deref().unwrap().contains("soft 404"));
    // Nothing was declared, so the apple-touch paths were probed too.
    assert!(
        s.paths()
            .contains(&"spa.test/apple-touch-icon.png".to_string())
    );
}

#[tokio::test]
async fn missing_icon_is_no_icon_and_broken_candidates_fall_through() {
    // A declared 404, an empty file and a 1x1 placeholder are all rejected, and the finder
    // moves on to the next candidate instead of stopping at the first declared one.
    let s = Server::start(|r| match r.path.as_str() {
        "/" => html(
            r#"<head><link rel=icon href=/gone.png><link rel=icon href=/empty.ico><link rel=icon href=/pixel.gif></head>"#,
        ),
        "/empty.ico" => ok("image/x-icon", Vec::new()),
        "/pixel.gif" => ok("image/gif", gif_bytes(1, 1)),
        _ => status(404),
    })
    .await;
    let err = find_on(&s, "none.test").await.unwrap_err();
    assert_eq!(err.category, ErrorCategory::NoIcon);
    let errors: Vec<_> = err
        .candidates
        .iter()
        .map(|c| c.error.clone().unwrap_or_default())
        .collect();
    assert!(errors.iter().any(|e| e.contains("HTTP 404")), "{errors:?}");
    assert!(errors.iter().any(|e| e.contains("empty")), "{errors:?}");
    assert!(
        errors.iter().any(|e| e.contains("placeholder")),
        "{errors:?}"
    );
}

#[tokio::test]
async fn manifest_icons_and_real_sizes_decide() {
    // The manifest is fetched and resolved against its own URL; a lying `sizes`
    // loses to the real dimensions among verified head icons.
    let s = Server::start(|r| match r.path.as_str() {
        "/" => html(
            r#"<head><link rel=icon href=/lie.png sizes=192x192><link rel=icon href=/real.png sizes=16x16>
            <link rel=manifest href=/m/site.webmanifest></head>"#,
        ),
        "/lie.png" => ok("image/png", png_bytes(16, 16)),
        "/real.png" => ok("image/png", png_bytes(128, 128)),
        "/m/site.webmanifest" => ok(
            "application/manifest+json",
            r#"{"icons":[{"src":"a.png","sizes":"512x512"}]}"#,
        ),
        "/m/a.png" => ok("image/png", png_bytes(512, 512)),
        _ => status(404),
    })
    .await;
    let found = find_on(&s, "m.test").await.unwrap();
    assert_eq!(found.favicon_url, "http://m.test/real.png");
    assert!(
        found
            .candidates
            .iter()
            .any(|c| c.url == "http://m.test/m/a.png" && c.source == CandidateSource::Manifest)
    );
    let s = Server::start(|r| match r.path.as_str() {
        "/" => html(r#"<head><link rel=manifest href=/m/site.webmanifest></head>"#),
        "/m/site.webmanifest" => ok(
            "text/plain",
            r#"{"icons":[{"src":"a.png","sizes":"192x192"}]}"#,
        ),
        "/m/a.png" => ok("image/png", png_bytes(192, 192)),
        "/favicon.ico" => ok("image/x-icon", ico_bytes(&[16])),
        _ => status(404),
    })
    .await;
    let found = find_on(&s, "m.test").await.unwrap();
    assert_eq!(found.favicon_url, "http://m.test/m/a.png");
}

#[tokio::test]
async fn non_html_root_still_probes_defaults() {
    // A root that serves JSON (an API host) declares nothing, but its default icon paths may
    // still exist.
    let s = Server::start(|r| match r.path.as_str() {
        "/" => ok("application/json", "{\"hello\":1}"),
        "/apple-touch-icon.png" => ok("image/png", png_bytes(180, 180)),
        _ => status(404),
    })
    .await;
    let found = find_on(&s, "api.test").await.unwrap();
    assert_eq!(found.favicon_url, "http://api.test/apple-touch-icon.png");
}

#[tokio::test]
async fn body_links_rank_after_head_links_and_svg_wins() {
    // Links a CMS injected into <body> count, but below head links; an SVG is scalable, so it
    // beats every raster size.
    let s = Server::start(|r| match r.path.as_str() {
        "/" => html(
            r#"<head><link rel=icon href=/h.png sizes=32x32><link rel=icon type="image/svg+xml" href=/v.svg></head>
            <body><link rel=icon href=/b.png sizes=64x64></body>"#,
        ),
        "/h.png" => ok("image/png", png_bytes(32, 32)),
        "/b.png" => ok("image/png", png_bytes(64, 64)),
        "/v.svg" => ok("text/plain", "<svg viewBox='0 0 10 10'></svg>"),
        _ => status(404),
    })
    .await;
    let found = find_on(&s, "body.test").await.unwrap();
    assert_eq!(found.favicon_url, "http://body.test/v.svg");
    assert_eq!(found.mime, "image/svg+xml");
    let order: Vec<_> = found.candidates.iter().map(|c| c.url.as_str()).collect();
    assert_eq!(
        order[..3],
        [
            "http://body.test/v.svg",
            "http://body.test/h.png",
            "http://body.test/b.png"
        ]
    );
}

#[tokio::test]
async fn noscript_icon_is_a_last_resort() {
    // Browsers that run scripts ignore <noscript>, so its icon is used only when nothing else,
    // `/favicon.ico` included, verified.
    let s = Server::start(|r| match (r.host.as_str(), r.path.as_str()) {
        (_, "/") => html("<head><noscript><link rel=icon href=/ns.png></noscript></head>"),
        (_, "/ns.png") => ok("image/png", png_bytes(32, 32)),
        ("both.test", "/favicon.ico") => ok("image/x-icon", ico_bytes(&[16])),
        _ => status(404),
    })
    .await;
    let found = find_on(&s, "both.test").await.unwrap();
    assert_eq!(found.favicon_url, "http://both.test/favicon.ico");
    let found = find_on(&s, "only.test").await.unwrap();
    assert_eq!(found.favicon_url, "http://only.test/ns.png");
}

#[tokio::test]
async fn entity_in_href_is_fetched_decoded() {
    let s = Server::start(|r| match r.path.as_str() {
        "/" => html(r#"<head><link rel=icon href="/icon.png?v=3&amp;s=32"></head>"#),
        "/icon.png?v=3&s=32" => ok("image/png", png_bytes(32, 32)),
        _ => status(404),
    })
    .await;
    let found = find_on(&s, "amp.test").await.unwrap();
    assert_eq!(found.favicon_url, "http://amp.test/icon.png?v=3&s=32");
    assert!(
        !s.paths().iter().any(|p| p.contains("&amp;")),
        "{:?}",
        s.paths()
    );
}

#[tokio::test]
async fn dark_scheme_icon_loses_to_the_default_one_and_wins_alone() {
    // The dark icon is an SVG declared last: without the colour-scheme rule it would win.
    let s = Server::start(|r| match (r.host.as_str(), r.path.as_str()) {
        ("both.test", "/") => html(
            r#"<head><link rel=icon href=/light.png sizes=16x16>
               <link rel=icon href=/dark.svg type=image/svg+xml media="(prefers-color-scheme: dark)"></head>"#,
        ),
        ("dark.test", "/") => html(
            r#"<head><link rel=icon href=/dark.svg media="screen and (prefers-color-scheme:dark)"></head>"#,
        ),
        (_, "/light.png") => ok("image/png", png_bytes(16, 16)),
        (_, "/dark.svg") => ok(
            "image/svg+xml",
            "<svg xmlns='http://www.w3.org/2000/svg' width='64' height='64'></svg>",
        ),
        _ => status(404),
    })
    .await;
    let found = find_on(&s, "both.test").await.unwrap();
    assert_eq!(found.favicon_url, "http://both.test/light.png");
    let dark = found
        .candidates
        .iter()
        .find(|c| c.url == "http://both.test/dark.svg")
        .expect("the dark icon stays visible");
    assert_eq!(dark.media.as_deref(), Some("(prefers-color-scheme: dark)"));

    let found = find_on(&s, "dark.test").await.unwrap();
    assert_eq!(found.favicon_url, "http://dark.test/dark.svg");
    let dark = &found.candidates[rank::pick(&found.candidates).unwrap()];
    assert_eq!(
        dark.media.as_deref(),
        Some("screen and (prefers-color-scheme:dark)")
    );
    let json = serde_json::to_value(&found.candidates).unwrap();
    assert!(
        json.as_array()
            .unwrap()
            .iter()
            .filter(|c| c["url"] != "http://dark.test/dark.svg")
            .all(|c| c.get("media").is_none()),
        "media is left out when none was declared: {json}"
    );
}

#[tokio::test]
async fn dark_variant_is_verified_and_kept_beside_the_chosen_icon() {
    let dark_svg = "<svg xmlns='http://www.w3.org/2000/svg' width='64' height='64'><rect/></svg>";
    let s = Server::start(move |r| match (r.host.as_str(), r.path.as_str()) {
        ("both.test", "/") => html(
            r#"<head><link rel=icon href=/light.png sizes=32x32>
               <link rel=icon href=/dark.svg media="(prefers-color-scheme: dark)"></head>"#,
        ),
        ("dark.test", "/") => html(
            r#"<head><link rel=icon href=/dark.svg media="(prefers-color-scheme: dark)"></head>"#,
        ),
        ("light.test", "/") => html(r#"<head><link rel=icon href=/light.png></head>"#),
        (_, "/light.png") => ok("image/png", png_bytes(32, 32)),
        (_, "/dark.svg") => ok("image/svg+xml", dark_svg),
        _ => status(404),
    })
    .await;
    let found = find_on(&s, "both.test").await.unwrap();
    assert_eq!(found.favicon_url, "http://both.test/light.png");
    let dark = found.dark.expect("the declared dark variant is kept");
    assert_eq!(dark.url, "http://both.test/dark.svg");
    assert_eq!((dark.mime.as_str(), dark.width), ("image/svg+xml", 64));
    assert_eq!(&dark.icon.bytes[..], dark_svg.as_bytes());
    assert_ne!(found.icon.unwrap().sha256, dark.icon.sha256);
    let verified = found.candidates.iter().find(|c| c.url == dark.url).unwrap();
    assert!(rank::is_verified(verified), "{verified:?}");

    // A dark icon chosen for want of any other is the icon itself, not a variant of it.
    let alone = find_on(&s, "dark.test").await.unwrap();
    assert_eq!(alone.favicon_url, "http://dark.test/dark.svg");
    assert!(alone.dark.is_none());
    let light = find_on(&s, "light.test").await.unwrap();
    assert!(light.dark.is_none());
}

#[tokio::test]
async fn oversized_data_icon_is_never_chosen() {
    let big = format!(
        "data:image/png;base64,{}",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            png_bytes(64, 64)
                .into_iter()
                .chain(std::iter::repeat_n(0, crate::clean::MAX_DATA_URL_BYTES))
                .collect::<Vec<u8>>()
        )
    );
    let s = Server::start(move |r| match r.path.as_str() {
        "/" => html(&format!("<head><link rel=icon href=\"{big}\"></head>")),
        "/favicon.ico" => ok("image/x-icon", ico_bytes(&[16])),
        _ => status(404),
    })
    .await;
    let found = find_on(&s, "inline.test").await.unwrap();
    assert_eq!(found.favicon_url, "http://inline.test/favicon.ico");
    let data = found
        .candidates
        .iter()
        .find(|c| c.url.starts_with("data:"))
        .unwrap();
    assert!(data.url.len() <= 64, "{}", data.url);
    assert!(data.error.as_deref().unwrap().contains("cap"), "{data:?}");
    assert_eq!(data.mime, None);
}
