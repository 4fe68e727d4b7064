//! The tiles of IE and Edge's `browserconfig.xml` (the file a page names in
//! `<meta name=msapplication-config>`, else `/browserconfig.xml`): for some sites the only
//! square images they publish.
//!
//! Read with lol_html rather than an XML parser: its tokenizer sees the elements and their
//! attributes (`<?xml?>` is a comment to it, names match case-insensitively as in IE), and it
//! is already here with its memory limit. Wide tiles are not icons and are left out.

use super::links::{Skip, resolve};
use super::{Candidate, CandidateSource};
use lol_html::{HtmlRewriter, MemorySettings, Settings, element};
use std::cell::RefCell;
use url::Url;

/// Tiles kept at most: a file has one of each kind.
pub const MAX_BROWSERCONFIG_TILES: usize = 4;
/// lol_html's memory limit for one file; a real `browserconfig.xml` is under a kilobyte.
const PARSER_MEMORY: usize = 64 * 1024;

/// The elements [`TILES`] names.
const SELECTOR: &str = "square70x70logo, square150x150logo, square310x310logo, tileimage";
/// The square tile elements and the size each one declares (`TileImage` declares none).
const TILES: [(&str, Option<&str>); 4] = [
    ("square70x70logo", Some("70x70")),
    ("square150x150logo", Some("150x150")),
    ("square310x310logo", Some("310x310")),
    ("tileimage", None),
];

/// The square tiles of a `browserconfig.xml`, in file order, each `src` resolved against the
/// file's own URL, and how many were dropped for a cap. Anything unreadable gives no tiles.
pub fn tiles(body: &[u8], config_url: &Url) -> (Vec<Candidate>, u32) {
    let found: RefCell<Vec<(String, Option<&str>)>> = RefCell::new(Vec::new());
    let settings = Settings::new()
        .with_memory_settings(MemorySettings::new().with_max_allowed_memory_usage(PARSER_MEMORY))
        .append_element_content_handler(element!(SELECTOR, |el| {
            let name = el.tag_name();
            let size = TILES
                .iter()
                .find(|(n, _)| name.eq_ignore_ascii_case(n))
                .and_then(|(_, size)| *size);
            if let Some(src) = el.get_attribute("src") {
                found.borrow_mut().push((src, size));
            }
            Ok(())
        }));
    let mut rewriter = HtmlRewriter::new(settings, |_: &[u8]| {});
    if rewriter.write(body).is_ok() {
        let _ = rewriter.end();
    } else {
        drop(rewriter);
    }
    let mut out: Vec<Candidate> = Vec::new();
    let mut dropped = 0u32;
    for (src, size) in found.into_inner() {
        let src = htmlize::unescape_attribute(src.as_str());
        let url = match resolve(Some(config_url), &src) {
            Ok(u) if !crate::clean::is_data_url(&u) => u,
            Err(Skip::TooLong) => {
                dropped = dropped.saturating_add(1);
                continue;
            }
            _ => continue,
        };
        if out.iter().any(|c| c.url == url) {
            continue;
        }
        if out.len() >= MAX_BROWSERCONFIG_TILES {
            dropped = dropped.saturating_add(1);
            continue;
        }
        out.push(Candidate {
            declared_sizes: size.map(str::to_owned),
            ..Candidate::new(url, CandidateSource::Tile)
        });
    }
    (out, dropped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn square_tiles_in_file_order_resolved_against_the_file() {
        let xml = br#"<?xml version="1.0" encoding="utf-8"?>
            <!-- <square70x70logo src="/commented.png"/> -->
            <browserconfig><msapplication><tile>
              <square150x150logo src="mstile-150x150.png?v=2&amp;x=1"/>
              <wide310x150logo src="/wide.png"/>
              <square310x310logo src="/big.png"></square310x310logo>
              <TileImage src="javascript:alert(1)"/>
              <TileImage src="//cdn.test/t.png"/>
              <TileColor>#2b5797</TileColor>
            </tile></msapplication></browserconfig>"#;
        let base = Url::parse("https://x.test/ie/browserconfig.xml").unwrap();
        let (found, dropped) = tiles(xml, &base);
        let got: Vec<_> = found
            .iter()
            .map(|c| (c.url.as_str(), c.declared_sizes.as_deref()))
            .collect();
        assert_eq!(
            got,
            [
                (
                    "https://x.test/ie/mstile-150x150.png?v=2&x=1",
                    Some("150x150")
                ),
                ("https://x.test/big.png", Some("310x310")),
                ("https://cdn.test/t.png", None),
            ]
        );
        assert_eq!(dropped, 0);
        assert!(found.iter().all(|c| c.source == CandidateSource::Tile));
        assert!(tiles(b"\xff\xfe<not xml", &base).0.is_empty());
        assert!(tiles(b"{\"json\":1}", &base).0.is_empty());
    }
}
