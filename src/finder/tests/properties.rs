//! Hostile bytes through every parser: no panic, and what comes out stays within the
//! stated bounds. A fixed case budget keeps them to seconds in CI.
use super::*;
use crate::clean::{MAX_DATA_URL_BYTES, MAX_TOKEN_BYTES, MAX_URL_BYTES};
use proptest::prelude::*;

/// Pieces that steer random HTML into the extractor's interesting paths.
fn html_piece() -> impl Strategy<Value = String> {
    let attr = "[ -~\\u{e9}\\u{0}\\t&#;x0-9a-z]{0,40}";
    prop_oneof![
        (
            prop_oneof![
                Just("icon"),
                Just("apple-touch-icon"),
                Just("mask-icon"),
                Just("manifest"),
                Just("ICON shortcut")
            ],
            attr,
            attr,
            attr
        )
            .prop_map(|(rel, href, sizes, media)| format!(
                "<link rel=\"{rel}\" href=\"{href}\" sizes='{sizes}' media={media}>"
            )),
        attr.prop_map(|h| format!("<base href=\"{h}\">")),
        attr.prop_map(|c| format!("<meta name=msapplication-TileImage content=\"{c}\">")),
        attr.prop_map(|c| format!("<meta http-equiv=refresh content='{c}'>")),
        Just("<template>".to_string()),
        Just("</template>".to_string()),
        Just("<noscript><link rel=icon href=/n.png></noscript>".to_string()),
        Just("</head><body>".to_string()),
        "[ -~]{0,30}",
    ]
}

fn check_candidates(c: &[Candidate]) {
    for c in c {
        let cap = if c.url.starts_with("data:") {
            MAX_DATA_URL_BYTES
        } else {
            MAX_URL_BYTES
        };
        assert!(c.url.len() <= cap, "{}", c.url.len());
        assert!(!c.url.contains('\0'));
        for t in [&c.declared_sizes, &c.declared_type, &c.media]
            .into_iter()
            .flatten()
        {
            assert!(t.len() <= MAX_TOKEN_BYTES && !t.contains('\0'), "{t:?}");
        }
    }
}

fn check_html(bytes: &[u8], chunk: usize) {
    let mut p = html::HeadParser::new(Some("utf-8"));
    for c in bytes.chunks(chunk.max(1)) {
        p.write(c);
    }
    let ex = p.finish();
    html::tests::assert_bounded(&ex);
    let page = Url::parse("https://x.test/a/b").unwrap();
    let d = links::candidates(&ex, &page);
    assert!(d.candidates.len() <= html::MAX_LINKS + html::MAX_TILES);
    assert!(d.manifests.len() <= html::MAX_MANIFEST_LINKS);
    check_candidates(&d.candidates);
    check_candidates(&links::noscript_candidates(&ex, &page));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn html_extractor_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..4096), chunk in 1usize..512) {
        check_html(&bytes, chunk);
    }

    #[test]
    fn html_extractor_on_tag_soup(pieces in proptest::collection::vec(html_piece(), 0..200), chunk in 1usize..512) {
        check_html(pieces.concat().as_bytes(), chunk);
    }

    #[test]
    fn manifest_parser(body in prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..2048),
        proptest::collection::vec(
            ("[ -~\\u{0}]{0,30}", "[ -~\\u{0}]{0,30}", "(any|maskable|monochrome| ){0,3}")
                .prop_map(|(src, sizes, purpose)| serde_json::json!({"src": src, "sizes": sizes, "type": sizes, "purpose": purpose})),
            0..80,
        )
        .prop_map(|icons| serde_json::to_vec(&serde_json::json!({ "icons": icons })).unwrap()),
    ]) {
        let base = Url::parse("https://x.test/m/site.webmanifest").unwrap();
        let (icons, _dropped) = manifest::icons(&body, &base);
        assert!(icons.len() <= manifest::MAX_MANIFEST_ICONS);
        check_candidates(&icons);
    }

    #[test]
    fn image_sniffing(
        prefix in prop_oneof![
            Just(b"".to_vec()),
            Just(b"\x89PNG\r\n\x1a\n".to_vec()),
            Just(vec![0u8, 0, 1, 0]),
            Just(b"GIF89a".to_vec()),
            Just(b"\xef\xbb\xbf<?xml version='1.0'?><svg ".to_vec()),
            Just(b"<svg width='".to_vec()),
        ],
        rest in proptest::collection::vec(any::<u8>(), 0..1024),
    ) {
        let bytes = [prefix, rest].concat();
        match image::sniff(&bytes) {
            Ok(info) => {
                assert!(info.mime.starts_with("image/") && info.mime.len() <= MAX_TOKEN_BYTES);
                let svg = info.mime == "image/svg+xml";
                for side in [info.width, info.height] {
                    assert!(side <= image::MAX_SIDE);
                    assert!(side >= 2 || (svg && side == 0), "{info:?}");
                }
            }
            Err(e) => assert!(e.len() <= crate::clean::MAX_MESSAGE_BYTES, "{e}"),
        }
    }
}
