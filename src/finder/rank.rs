//! The ranking policy, pure so it can be tested on its own.
//!
//! Before verification only declared hints exist (`sizes`, `type`, the URL's extension), so
//! [`rank`] orders candidates on those and the finder verifies in that order. Once a candidate
//! passes, the finder also verifies a few more of the same tier and [`pick`] chooses among
//! everything verified using the *real* dimensions, so a lying `sizes` attribute cannot win.
//!
//! Order, best first:
//! 0. an icon whose `media` targets a non-default colour scheme (`(prefers-color-scheme: dark)`)
//!    comes after every other candidate: a browser in its default (light) scheme would not use
//!    it, so it is chosen only when nothing else verifies;
//! 1. square before non-square: an image whose ratio is outside 0.9–1.1 (a wordmark) is a last
//!    resort, whatever its kind;
//! 2. tier: head `rel=icon`, apple-touch, fluid-icon, manifest, tile; then the same kinds found
//!    in `<body>`; then well-known default paths (`/favicon.ico`, ...); `mask-icon` is last and
//!    never picked;
//! 3. SVG first (scalable), then the square raster closest to [`TARGET`] px from above, then the
//!    largest below it, then unknown sizes;
//! 4. PNG over ICO over other formats;
//! 5. among equals, the later declaration wins (as browsers do).

use super::{Candidate, CandidateSource};
use std::cmp::Reverse;

/// The size the pick aims for: the smallest square at least this big is best.
pub const TARGET: u32 = 64;

/// Sort key; smaller is better. Built from real dimensions when verified, else declared ones.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    other_scheme: bool,
    non_square: bool,
    tier: u8,
    size_class: u8,
    size_rank: u32,
    format: u8,
}

/// Orders candidates best first; input order is declaration order (later ones win ties).
pub fn rank(mut candidates: Vec<Candidate>) -> Vec<Candidate> {
    let mut keyed: Vec<(Key, Reverse<usize>, Candidate)> = candidates
        .drain(..)
        .enumerate()
        .map(|(i, c)| (key(&c), Reverse(i), c))
        .collect();
    keyed.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    keyed.into_iter().map(|(_, _, c)| c).collect()
}

/// Index of the best verified, pickable candidate in an already ranked list.
pub fn pick(ranked: &[Candidate]) -> Option<usize> {
    ranked
        .iter()
        .enumerate()
        .filter(|(_, c)| is_verified(c) && c.source != CandidateSource::MaskIcon)
        .min_by_key(|(i, c)| (key(c), *i))
        .map(|(i, _)| i)
}

/// Index of the best verified candidate the site declares for a dark (non-default) colour
/// scheme, in an already ranked list: the variant served for `?theme=dark`.
pub fn pick_dark(ranked: &[Candidate]) -> Option<usize> {
    ranked
        .iter()
        .enumerate()
        .filter(|(_, c)| is_verified(c) && c.source != CandidateSource::MaskIcon && is_dark(c))
        .min_by_key(|(i, c)| (key(c), *i))
        .map(|(i, _)| i)
}

/// Whether the candidate's `media` targets a non-default colour scheme.
pub fn is_dark(c: &Candidate) -> bool {
    c.media.as_deref().is_some_and(targets_other_scheme)
}

/// Whether verification fetched this candidate and found a real image.
pub fn is_verified(c: &Candidate) -> bool {
    c.mime.is_some() && c.error.is_none()
}

/// The tier of a candidate (lower is better); the finder verifies extra candidates of the
/// winner's tier so that real sizes can decide within it.
pub fn tier(c: &Candidate) -> u8 {
    let base = match c.source {
        CandidateSource::Icon => 0,
        CandidateSource::AppleTouch => 1,
        CandidateSource::FluidIcon => 2,
        CandidateSource::Manifest => 3,
        CandidateSource::Tile => 4,
        CandidateSource::DefaultPath => return 20,
        CandidateSource::MaskIcon => return 30,
    };
    if c.in_body { base + 10 } else { base }
}

fn key(c: &Candidate) -> Key {
    let svg = is_svg(c);
    let dims = match (c.width, c.height) {
        (Some(w), Some(h)) if is_verified(c) && w > 0 && h > 0 => Some((w, h)),
        _ => declared_best(c.declared_sizes.as_deref()),
    };
    let non_square = dims.is_some_and(|(w, h)| {
        let r = w as f64 / h as f64;
        !(0.9..=1.1).contains(&r)
    });
    let (size_class, size_rank) = if svg {
        (0, 0)
    } else {
        match dims.map(|(w, h)| w.max(h)) {
            Some(s) if s >= TARGET => (1, s),
            Some(s) => (2, u32::MAX - s),
            None => (3, 0),
        }
    };
    Key {
        other_scheme: is_dark(c),
        tier: tier(c),
        non_square,
        size_class,
        size_rank,
        format: format_rank(c),
    }
}

/// Whether a `media` query list applies only under a non-default colour scheme: every query in
/// it asks for `prefers-color-scheme` other than `light` (or `not … light`). A query without
/// that feature (`screen`, `(min-width: 1px)`) applies in the default scheme too.
pub fn targets_other_scheme(media: &str) -> bool {
    const FEATURE: &str = "prefers-color-scheme:";
    let media = media.to_ascii_lowercase();
    let mut any = false;
    for query in media.split(',') {
        let query = query.trim();
        let negated = query.starts_with("not ") || query.starts_with("not(");
        let squeezed: String = query.chars().filter(|c| !c.is_whitespace()).collect();
        let Some(at) = squeezed.find(FEATURE) else {
            return false;
        };
        let value: String = squeezed[at + FEATURE.len()..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect();
        if (value == "light") != negated {
            return false;
        }
        any = true;
    }
    any
}

fn is_svg(c: &Candidate) -> bool {
    if let Some(m) = &c.mime {
        return m == "image/svg+xml";
    }
    let declared = c
        .declared_type
        .as_deref()
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("image/svg+xml"));
    declared || extension(&c.url).as_deref() == Some("svg")
}

fn format_rank(c: &Candidate) -> u8 {
    let kind = c
        .mime
        .clone()
        .or_else(|| {
            c.declared_type
                .as_ref()
                .map(|t| t.trim().to_ascii_lowercase())
        })
        .unwrap_or_default();
    let ext = extension(&c.url).unwrap_or_default();
    if kind == "image/png" || ext == "png" {
        0
    } else if kind.contains("icon") || ext == "ico" {
        1
    } else {
        2
    }
}

fn extension(url: &str) -> Option<String> {
    if let Some(body) = crate::clean::data_url_body(url) {
        return body
            .strip_prefix("image/")
            .map(|r| r.split([';', ',', '+']).next().unwrap_or("").to_string());
    }
    let path = url.split(['?', '#']).next()?;
    let last = path.rsplit('/').next()?;
    let (_, ext) = last.rsplit_once('.')?;
    Some(ext.to_ascii_lowercase())
}

/// Parses a `sizes` value leniently (`32X32`, `32×32`, `192x192+`, `32`) and returns the best
/// square-ish size for the pick rule; `any` counts as scalable (treated as very large).
pub fn declared_best(sizes: Option<&str>) -> Option<(u32, u32)> {
    let all = parse_sizes(sizes?);
    all.iter()
        .copied()
        .filter(|&(w, _)| w >= TARGET)
        .min_by_key(|&(w, h)| w.max(h))
        .or_else(|| all.iter().copied().max_by_key(|&(w, h)| w.max(h)))
}

/// Every size in a `sizes` value that parses; what does not parse is ignored.
pub fn parse_sizes(sizes: &str) -> Vec<(u32, u32)> {
    sizes
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter_map(|tok| {
            let t = tok.trim().to_ascii_lowercase();
            if t == "any" {
                return Some((4096, 4096));
            }
            let t = t.replace('×', "x");
            let digits = |s: &str| -> Option<u32> {
                let d: String = s.chars().take_while(|c| c.is_ascii_digit()).collect();
                d.parse().ok().filter(|&n| n > 0)
            };
            match t.split_once('x') {
                Some((w, h)) => Some((digits(w)?, digits(h)?)),
                None => digits(&t).map(|n| (n, n)),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(url: &str, source: CandidateSource, sizes: Option<&str>) -> Candidate {
        Candidate {
            declared_sizes: sizes.map(Into::into),
            ..Candidate::new(url, source)
        }
    }

    fn urls(v: &[Candidate]) -> Vec<&str> {
        v.iter().map(|c| c.url.as_str()).collect()
    }

    use CandidateSource::*;

    #[test]
    fn case_14_pick_rule_svg_then_closest_above_64() {
        let v = vec![
            c("https://x/16.png", Icon, Some("16x16")),
            c("https://x/32.png", Icon, Some("32x32")),
            c("https://x/apple.png", AppleTouch, Some("180x180")),
            c("https://x/m192.png", Manifest, Some("192x192")),
            c("https://x/i.svg", Icon, None),
            c("https://x/favicon.ico", DefaultPath, None),
            c("https://x/pin.svg", MaskIcon, None),
        ];
        let r = rank(v.clone());
        assert_eq!(
            urls(&r),
            [
                "https://x/i.svg",
                "https://x/32.png",
                "https://x/16.png",
                "https://x/apple.png",
                "https://x/m192.png",
                "https://x/favicon.ico",
                "https://x/pin.svg"
            ]
        );
        let no_svg: Vec<_> = v.into_iter().filter(|c| !c.url.ends_with(".svg")).collect();
        let mut more = no_svg.clone();
        more.push(c("https://x/96.png", Icon, Some("96x96")));
        more.push(c("https://x/512.png", Icon, Some("512x512")));
        assert_eq!(
            urls(&rank(more))[..3],
            ["https://x/96.png", "https://x/512.png", "https://x/32.png"]
        );
    }

    #[test]
    fn later_declaration_wins_and_body_ranks_lower() {
        let mut b = c("https://x/body.png", Icon, None);
        b.in_body = true;
        let v = vec![
            c("https://x/a.png", Icon, None),
            b,
            c("https://x/b.png", Icon, None),
            c("https://x/t.png", Tile, None),
            c("https://x/f.png", FluidIcon, Some("512x512")),
        ];
        assert_eq!(
            urls(&rank(v)),
            [
                "https://x/b.png",
                "https://x/a.png",
                "https://x/f.png",
                "https://x/t.png",
                "https://x/body.png"
            ]
        );
    }

    #[test]
    fn png_over_ico_and_non_square_last() {
        let v = vec![
            c("https://x/a.png", Icon, Some("300x100")),
            c("https://x/b.png", Icon, Some("32x32")),
            c("https://x/c.ico", Icon, Some("32x32")),
        ];
        assert_eq!(
            urls(&rank(v)),
            ["https://x/b.png", "https://x/c.ico", "https://x/a.png"]
        );
    }

    #[test]
    fn pick_uses_real_sizes_and_never_mask_icon() {
        let mut lying = c("https://x/lie.png", Icon, Some("192x192"));
        lying.mime = Some("image/png".into());
        (lying.width, lying.height) = (Some(16), Some(16));
        let mut real = c("https://x/real.png", Icon, Some("16x16"));
        real.mime = Some("image/png".into());
        (real.width, real.height) = (Some(128), Some(128));
        let mut mask = c("https://x/pin.svg", MaskIcon, None);
        mask.mime = Some("image/svg+xml".into());
        let ranked = rank(vec![lying, real, mask.clone()]);
        assert_eq!(ranked[0].url, "https://x/real.png");
        let i = pick(&ranked).unwrap();
        assert_eq!(ranked[i].url, "https://x/real.png");
        assert_eq!(pick(&[mask]), None);
    }

    #[test]
    fn case_15_non_square_after_every_square_kind() {
        let mut wide = c("https://x/wide.png", Icon, None);
        wide.mime = Some("image/png".into());
        (wide.width, wide.height) = (Some(300), Some(100));
        let mut ico = c("https://x/favicon.ico", DefaultPath, None);
        ico.mime = Some("image/x-icon".into());
        (ico.width, ico.height) = (Some(32), Some(32));
        let ranked = rank(vec![wide.clone(), ico]);
        assert_eq!(
            urls(&ranked),
            ["https://x/favicon.ico", "https://x/wide.png"]
        );
        assert_eq!(pick(&ranked), Some(0));
        assert_eq!(pick(&[wide]), Some(0), "still better than nothing");
    }

    #[test]
    fn other_colour_scheme_is_last_and_picked_only_alone() {
        let mut dark = c("https://x/dark.svg", Icon, None);
        dark.media = Some("(prefers-color-scheme: dark)".into());
        dark.mime = Some("image/svg+xml".into());
        let mut small = c("https://x/favicon.ico", DefaultPath, None);
        small.mime = Some("image/x-icon".into());
        (small.width, small.height) = (Some(16), Some(16));
        let ranked = rank(vec![small.clone(), dark.clone()]);
        assert_eq!(
            urls(&ranked),
            ["https://x/favicon.ico", "https://x/dark.svg"]
        );
        assert_eq!(pick(&ranked), Some(0));
        assert_eq!(pick(&[dark]), Some(0), "still better than nothing");
    }

    #[test]
    fn colour_scheme_queries() {
        for dark in [
            "(prefers-color-scheme: dark)",
            "(PREFERS-COLOR-SCHEME:DARK)",
            "screen and (prefers-color-scheme: dark)",
            "(prefers-color-scheme: dark), print and (prefers-color-scheme: dark)",
            "not all and (prefers-color-scheme: light)",
        ] {
            assert!(targets_other_scheme(dark), "{dark}");
        }
        for default in [
            "",
            "screen",
            "(prefers-color-scheme: light)",
            "(prefers-color-scheme: dark), (prefers-color-scheme: light)",
            "(prefers-color-scheme: dark), screen",
            "not all and (prefers-color-scheme: dark)",
        ] {
            assert!(!targets_other_scheme(default), "{default}");
        }
    }

    #[test]
    fn case_12_lenient_sizes() {
        assert_eq!(parse_sizes("32X32"), [(32, 32)]);
        assert_eq!(parse_sizes("32×32"), [(32, 32)]);
        assert_eq!(parse_sizes("192x192+"), [(192, 192)]);
        assert_eq!(parse_sizes("32"), [(32, 32)]);
        assert_eq!(parse_sizes("16x16 junk 48x48"), [(16, 16), (48, 48)]);
        assert_eq!(declared_best(Some("16x16 32x32 48x48")), Some((48, 48)));
        assert_eq!(declared_best(Some("16x16 96x96 256x256")), Some((96, 96)));
        assert_eq!(declared_best(Some("nonsense")), None);
    }
}
