//! Pages built to exhaust the finder: thousands of links, stalled icons, a huge base, a page
//! over the parser's memory limit, and mutated bytes through every parser. Each must end in
//! time with bounded output.

use super::*;

#[test]
fn hostile_bytes_never_panic() {
    use rand::{Rng, SeedableRng, rngs::StdRng};
    let mut rng = StdRng::seed_from_u64(7);
    let seeds: Vec<Vec<u8>> = vec![
        png_bytes(16, 16),
        ico_bytes(&[16, 256]),
        gif_bytes(8, 8),
        b"<svg width='1e309' height='-4' viewBox='0 0 NaN 1e400'>".to_vec(),
        "<html><head><link rel=icon href='data:é'><base href=javascript:x><meta http-equiv=refresh content='0;url=\u{fffd}'></head>".into(),
        br#"{"icons":[{"src":"//[::1]/x","sizes":"99999999999x1"}]}"#.to_vec(),
    ];
    let base = Url::parse("https://x.test/a/b").unwrap();
    for i in 0..3000 {
        let mut b = seeds[i % seeds.len()].clone();
        for _ in 0..rng.random_range(0..8) {
            if b.is_empty() {
                break;
            }
            let at = rng.random_range(0..b.len());
            match rng.random_range(0..3) {
                0 => b[at] = rng.random(),
                1 => b.truncate(at),
                _ => b.insert(at, rng.random()),
            }
        }
        let _ = image::sniff(&b);
        let ex = html::extract(&b, Some("shift_jis"));
        let _ = links::candidates(&ex, &base);
        let text = String::from_utf8_lossy(&b);
        let _ = links::refresh_target(&text);
        let _ = links::resolve_href(&base, &text);
        let _ = rank::parse_sizes(&text);
        let _ = manifest::icons(&b, &base);
        let _ = pipeline::decode_data_url(&format!("data:{text}"));
    }
}

#[tokio::test]
async fn twenty_thousand_broken_links_still_reach_favicon_ico() {
    let mut page = String::from("<html><head>");
    for i in 0..20_000 {
        page.push_str(&format!("<link rel=icon href=/i{i}.png>"));
    }
    page.push_str("</head><body></body></html>");
    assert!(page.len() < page::HTML_CAP);
    let s = Server::start(move |r| match r.path.as_str() {
        "/" => html(&page),
        "/favicon.ico" => ok("image/x-icon", ico_bytes(&[32])),
        _ => status(404),
    })
    .await;
    let timeout = Duration::from_millis(5000);
    let f = Finder::new(config(s.port, true, timeout.as_millis() as u64)).unwrap();
    let t = Instant::now();
    let found = f.find("many.test").await.unwrap();
    assert!(t.elapsed() < timeout, "took {:?}", t.elapsed());
    assert_eq!(found.favicon_url, "http://many.test/favicon.ico");
    assert!(found.candidates.len() <= crate::clean::MAX_CANDIDATES);
    // 20,000 declared and /favicon.ico, of which MAX_CANDIDATES kept.
    assert_eq!(
        found.candidates.len() + found.candidates_dropped as usize,
        20_001
    );
    let icon_requests = s.paths().iter().filter(|p| p.contains("/i")).count();
    assert!(
        icon_requests <= 12,
        "{icon_requests} declared icons fetched"
    );
}

#[tokio::test]
async fn stalled_declared_icons_leave_time_for_favicon_ico() {
    let s = Server::start(|r| match r.path.as_str() {
        "/" => {
            let links: String = (0..20)
                .map(|i| format!("<link rel=icon href=/slow{i}.png>"))
                .collect();
            html(&format!("<head>{links}</head>"))
        }
        "/favicon.ico" => ok("image/x-icon", ico_bytes(&[16])),
        _ => drip("image/png"),
    })
    .await;
    let timeout = Duration::from_millis(4000);
    let f = Finder::new(config(s.port, true, timeout.as_millis() as u64)).unwrap();
    let t = Instant::now();
    let found = f.find("stall.test").await.unwrap();
    assert!(t.elapsed() < timeout, "took {:?}", t.elapsed());
    assert_eq!(found.favicon_url, "http://stall.test/favicon.ico");
}

#[tokio::test]
async fn huge_base_and_identical_links_are_bounded_and_fast() {
    let mut page = format!(
        "<html><head><base href=\"http://hostile.test/{}/\">",
        "b".repeat(100_000)
    );
    for _ in 0..20_000 {
        page.push_str(r#"<link rel="icon" href="i.png">"#);
    }
    page.push_str("</head><body></body></html>");
    let s = Server::start(move |r| match r.path.as_str() {
        "/" => html(&page),
        "/favicon.ico" => ok("image/x-icon", ico_bytes(&[16])),
        _ => status(404),
    })
    .await;
    let t = Instant::now();
    let found = find_on(&s, "hostile.test").await.unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "took {:?}",
        t.elapsed()
    );
    assert_eq!(found.favicon_url, "http://hostile.test/favicon.ico");
    assert_eq!(
        found.candidates_dropped, 1,
        "the one distinct link needs the unusable base"
    );
    assert!(
        found
            .candidates
            .iter()
            .all(|c| c.url.len() <= crate::clean::MAX_URL_BYTES)
    );
    assert!(s.paths().iter().all(|p| p.len() < 100), "{:?}", s.paths());
}

#[tokio::test]
async fn page_over_the_parser_memory_limit_is_invalid_content() {
    let page = format!(
        "<html><head><meta name=x content=\"{}\"><link rel=icon href=/late.png></head>",
        "a".repeat(html::PARSER_MEMORY * 2)
    );
    let s = Server::start(move |r| match r.path.as_str() {
        "/" => html(&page),
        "/late.png" => ok("image/png", png_bytes(16, 16)),
        _ => status(404),
    })
    .await;
    let err = find_on(&s, "tagbomb.test").await.unwrap_err();
    assert_eq!(err.category, ErrorCategory::InvalidContent, "{err:?}");
    assert!(err.message.contains("memory limit"), "{}", err.message);
}
