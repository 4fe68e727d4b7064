//! Shapes of the real web that browsers read and a finder easily misses: pages in UTF-16,
//! raw deflate, icon links after megabytes of inline script, icons declared only in
//! `browserconfig.xml`, and answers with more headers than an HTTP library allows by default.

use super::*;

/// `html` as UTF-16 behind its byte-order mark, little- or big-endian.
pub(crate) fn utf16(html: &str, big_endian: bool) -> Vec<u8> {
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
    bytes
}

/// `resp` with these extra headers.
fn with_headers(mut resp: Resp, headers: impl IntoIterator<Item = (&'static str, String)>) -> Resp {
    resp.headers.extend(headers);
    resp
}

#[tokio::test]
async fn utf16_pages_behind_a_bom_are_read_whatever_the_header_says() {
    // Browsers look for a byte-order mark before anything else, so a UTF-16 page that its
    // server labels utf-8 still shows (and declares its icon) in browsers.
    let page = r#"<html><head><link rel="icon" href="/ícone.png"></head><body></body></html>"#;
    let (le, be) = (utf16(page, false), utf16(page, true));
    let s = Server::start(move |r| match (r.host.as_str(), r.path.as_str()) {
        ("le.test", "/") => ok("text/html; charset=utf-8", le.clone()),
        ("be.test", "/") => ok("text/html; charset=utf-8", be.clone()),
        (_, "/%C3%ADcone.png") => ok("image/png", png_bytes(32, 32)),
        _ => status(404),
    })
    .await;
    for host in ["le.test", "be.test"] {
        let found = find_on(&s, host).await;
        assert_eq!(
            found.map(|f| f.favicon_url),
            Ok(format!("http://{host}/%C3%ADcone.png")),
            "{host}"
        );
    }
}

/// `body` as raw deflate (RFC 1951, no zlib header), as some servers send `deflate`.
fn raw_deflate(body: &[u8]) -> Vec<u8> {
    use flate2::{Compression, write::DeflateEncoder};
    use std::io::Write;
    let mut enc = DeflateEncoder::new(Vec::new(), Compression::default());
    enc.write_all(body).unwrap();
    enc.finish().unwrap()
}

#[tokio::test]
async fn deflate_pages_are_read_with_or_without_the_zlib_header() {
    // HTTP's `deflate` is zlib, but servers also send raw deflate; browsers read both.
    use flate2::{Compression, write::ZlibEncoder};
    use std::io::Write;
    let page = b"<head><link rel=icon href=/d.png></head><body>";
    let mut zlib = ZlibEncoder::new(Vec::new(), Compression::default());
    zlib.write_all(page).unwrap();
    let zlib = zlib.finish().unwrap();
    let raw = raw_deflate(page);
    let s = Server::start(move |r| {
        let deflated = |body: &Vec<u8>| {
            with_headers(
                ok("text/html", body.clone()),
                [("Content-Encoding", "deflate".into())],
            )
        };
        match (r.host.as_str(), r.path.as_str()) {
            ("raw.test", "/") => deflated(&raw),
            ("zlib.test", "/") => deflated(&zlib),
            (_, "/d.png") => ok("image/png", png_bytes(32, 32)),
            _ => status(404),
        }
    })
    .await;
    for host in ["raw.test", "zlib.test"] {
        let found = find_on(&s, host).await;
        assert_eq!(
            found.map(|f| f.favicon_url),
            Ok(format!("http://{host}/d.png")),
            "{host}"
        );
    }
    let asked = s.requests.lock().unwrap()[0].head.to_ascii_lowercase();
    assert!(
        asked.contains("deflate"),
        "deflate is still offered: {asked}"
    );
}

#[tokio::test]
async fn a_page_that_cannot_be_decoded_is_invalid_content_not_no_icon() {
    // A body the client cannot decode is not an empty page: the default paths are still
    // tried, and when nothing verifies the failure says why.
    let s = Server::start(|r| match (r.host.as_str(), r.path.as_str()) {
        (_, "/") => with_headers(
            ok("text/html", b"\x1f\x8b\x08\0garbage, not gzip".to_vec()),
            [("Content-Encoding", "gzip".into())],
        ),
        ("ico.test", "/favicon.ico") => ok("image/x-icon", ico_bytes(&[32])),
        _ => status(404),
    })
    .await;
    let err = find_on(&s, "broken.test").await.unwrap_err();
    assert_eq!(err.category, ErrorCategory::InvalidContent, "{err:?}");
    assert!(err.message.contains("home page"), "{}", err.message);
    assert!(!err.category.is_transient());
    assert!(s.paths().contains(&"broken.test/favicon.ico".to_string()));
    let found = find_on(&s, "ico.test").await.unwrap();
    assert_eq!(found.favicon_url, "http://ico.test/favicon.ico");
}

#[tokio::test]
async fn an_icon_link_after_megabytes_of_inline_script_is_found() {
    // Server-rendered apps inline megabytes of state in the head before their icon links.
    let script = format!(
        "<script>window.__STATE__=\"{}\"</script>",
        "a".repeat(3 << 20)
    );
    let page = format!("<html><head>{script}<link rel=icon href=/late.png></head><body>");
    assert!(page.len() > 2 * 1024 * 1024);
    let s = Server::start(move |r| match r.path.as_str() {
        "/" => html(&page),
        "/late.png" => ok("image/png", png_bytes(32, 32)),
        "/favicon.ico" => ok("image/x-icon", ico_bytes(&[16])),
        _ => status(404),
    })
    .await;
    let found = find_on(&s, "late.test").await.unwrap();
    assert_eq!(found.favicon_url, "http://late.test/late.png");
}

#[tokio::test]
async fn browserconfig_tiles_are_candidates() {
    // IE and Edge took tiles from `browserconfig.xml`: the one a page names in
    // `msapplication-config`, else `/browserconfig.xml`. For some sites they are the only
    // icons.
    const CONFIG: &str = r#"<?xml version="1.0" encoding="utf-8"?>
        <browserconfig><msapplication><tile>
          <square150x150logo src="/t/mstile-150x150.png"/>
          <wide310x150logo src="/t/wide.png"/>
          <TileColor>#2b5797</TileColor>
        </tile></msapplication></browserconfig>"#;
    let s = Server::start(|r| match (r.host.as_str(), r.path.as_str()) {
        ("named.test", "/") => html(
            r#"<head><meta name="msapplication-config" content="/ie/config.xml"></head><body>"#,
        ),
        ("named.test", "/ie/config.xml") => ok("application/xml", CONFIG),
        ("default.test", "/") => html("<head><title>no icons</title></head><body>"),
        ("default.test", "/browserconfig.xml") => ok(
            "text/xml",
            r#"<browserconfig><msapplication><tile><TileImage src="tile.png"/></tile></msapplication></browserconfig>"#,
        ),
        ("default.test", "/tile.png") => ok("image/png", png_bytes(144, 144)),
        (_, "/t/mstile-150x150.png") => ok("image/png", png_bytes(150, 150)),
        (_, "/t/wide.png") => ok("image/png", png_bytes(310, 150)),
        ("none.test", "/") => html(
            r#"<head><meta name="msapplication-config" content="none"></head><body>"#,
        ),
        _ => status(404),
    })
    .await;
    let found = find_on(&s, "named.test").await.unwrap();
    assert_eq!(found.favicon_url, "http://named.test/t/mstile-150x150.png");
    let tile = &found.candidates[0];
    assert_eq!(
        (tile.source, tile.declared_sizes.as_deref()),
        (CandidateSource::Tile, Some("150x150"))
    );
    assert!(
        !found.candidates.iter().any(|c| c.url.ends_with("wide.png")),
        "a wide tile is no icon: {:?}",
        found.candidates
    );
    let found = find_on(&s, "default.test").await.unwrap();
    assert_eq!(found.favicon_url, "http://default.test/tile.png");
    let err = find_on(&s, "none.test").await.unwrap_err();
    assert_eq!(err.category, ErrorCategory::NoIcon);
    assert!(
        !s.paths()
            .contains(&"none.test/browserconfig.xml".to_string()),
        "`none` turns browserconfig off: {:?}",
        s.paths()
    );
}

#[tokio::test]
async fn a_home_page_with_many_headers_is_read() {
    // Misconfigured servers repeat a header a few hundred times; browsers do not count them.
    let s = Server::start(|r| match r.path.as_str() {
        "/" => with_headers(
            html("<head><link rel=icon href=/i.png></head><body>"),
            (0..150).map(|i| ("X-Pad", i.to_string())),
        ),
        "/i.png" => ok("image/png", png_bytes(32, 32)),
        _ => status(404),
    })
    .await;
    let found = find_on(&s, "headers.test").await.unwrap();
    assert_eq!(found.favicon_url, "http://headers.test/i.png");
}

#[tokio::test]
async fn a_home_page_the_client_refuses_still_gets_its_favicon_tried() {
    // An answer the HTTP client cannot take (here more headers than any bound allows) came
    // from a working server: its `/favicon.ico` is tried, not the www twin instead.
    let s = Server::start(|r| match (r.host.as_str(), r.path.as_str()) {
        ("apex.test", "/") => with_headers(
            html("<head><link rel=icon href=/i.png></head><body>"),
            (0..5000).map(|i| ("X-Pad", i.to_string())),
        ),
        ("apex.test", "/favicon.ico") => ok("image/x-icon", ico_bytes(&[32])),
        _ => status(404),
    })
    .await;
    let found = find_on(&s, "apex.test").await.unwrap();
    assert_eq!(found.favicon_url, "http://apex.test/favicon.ico");
    assert!(
        !s.paths().iter().any(|p| p.starts_with("www.")),
        "{:?}",
        s.paths()
    );
}
