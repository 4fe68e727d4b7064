//! Bounds on everything taken from the web before it is stored or shown.
//!
//! A website controls the bytes of its pages, manifests and error answers. Whatever of it we
//! keep (URLs, declared sizes and types, messages) passes through here first, so that no
//! string can break a database write (PostgreSQL refuses NUL in text) or bloat a row. The
//! finder applies the count and length caps where it parses; the store applies [`outcome`]
//! once more wherever it writes one (a worker's record and an on-demand lookup alike), so a
//! path that forgot is still safe.

use crate::model::{Candidate, DarkIcon, ErrorCategory, FindError, FindOutcome, Found};

/// Longest http(s) URL kept, in bytes: longer hrefs are dropped as candidates, not cut.
pub const MAX_URL_BYTES: usize = 4096;
/// Longest `data:` URL kept as an icon, in bytes; a larger inline icon is never chosen.
pub const MAX_DATA_URL_BYTES: usize = 32 * 1024;
/// Longest human-readable message (errors, candidate rejections), in bytes.
pub const MAX_MESSAGE_BYTES: usize = 512;
/// Longest declared token (`sizes`, `type`, `media`, mime), in bytes.
pub const MAX_TOKEN_BYTES: usize = 128;
/// Most candidates kept per domain; the rest are counted in `candidates_dropped`.
pub const MAX_CANDIDATES: usize = 32;

/// Returns `s` without NUL or other control characters (tabs and newlines become spaces),
/// cut on a character boundary to at most `max` bytes, with "…" marking a cut.
pub fn text(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max));
    for ch in s.chars() {
        let ch = match ch {
            '\t' | '\n' | '\r' => ' ',
            c if c.is_control() => continue,
            c => c,
        };
        if out.len() + ch.len_utf8() > max {
            const MARK: &str = "…";
            while !out.is_empty() && out.len() + MARK.len() > max {
                out.pop();
            }
            if max >= MARK.len() {
                out.push_str(MARK);
            }
            return out;
        }
        out.push(ch);
    }
    out
}

/// What follows the `data:` scheme of `url`, or `None` when it is another URL. Read as the
/// URL parser reads a scheme: C0 controls and spaces before it are skipped, tabs and newlines
/// within it ignored, its letters matched in any case. DEL is not a C0 control, so a URL
/// that starts with one has no scheme at all.
pub fn data_url_body(url: &str) -> Option<&str> {
    let url = url.trim_start_matches(|c: char| c <= ' ');
    let mut scheme = b"data:".iter();
    let mut wanted = scheme.next();
    for (at, byte) in url.bytes().enumerate() {
        let Some(want) = wanted else {
            // Every byte before `at` was ASCII, so `at` is a character boundary.
            return Some(&url[at..]);
        };
        match byte {
            b'\t' | b'\n' | b'\r' => {}
            b if b.eq_ignore_ascii_case(want) => wanted = scheme.next(),
            _ => return None,
        }
    }
    wanted.is_none().then_some("")
}

/// Whether `url` is a `data:` URL; see [`data_url_body`].
pub fn is_data_url(url: &str) -> bool {
    data_url_body(url).is_some()
}

/// The byte cap for a URL: `data:` URLs may be up to [`MAX_DATA_URL_BYTES`], others
/// [`MAX_URL_BYTES`].
pub fn url_cap(url: &str) -> usize {
    if is_data_url(url) {
        MAX_DATA_URL_BYTES
    } else {
        MAX_URL_BYTES
    }
}

/// Returns `outcome` as it may be stored: every string cleaned and capped, at most
/// [`MAX_CANDIDATES`] candidates (a candidate whose URL is over its cap is dropped, not cut,
/// since a cut URL names another resource) with the cut ones added to `candidates_dropped`,
/// and counts within the database's integer range.
///
/// A found icon whose URL is over its cap cannot be stored truthfully, so the outcome becomes
/// an `invalid_content` failure that says why.
pub fn outcome(outcome: FindOutcome) -> FindOutcome {
    match outcome {
        Ok(found) if found.favicon_url.len() > url_cap(&found.favicon_url) => {
            let mut err = FindError::new(
                ErrorCategory::InvalidContent,
                format!(
                    "the chosen icon's URL is longer than {} bytes",
                    url_cap(&found.favicon_url)
                ),
            );
            err.final_url = found.final_url;
            err.candidates = found.candidates;
            err.candidates_dropped = found.candidates_dropped;
            outcome_err(err)
        }
        Ok(found) => {
            let (candidates, dropped) =
                self::candidates(found.candidates, found.candidates_dropped);
            Ok(Found {
                favicon_url: text(&found.favicon_url, url_cap(&found.favicon_url)),
                final_url: found.final_url.map(|u| text(&u, MAX_URL_BYTES)),
                mime: text(&found.mime, MAX_TOKEN_BYTES),
                width: found.width.min(i32::MAX as u32),
                height: found.height.min(i32::MAX as u32),
                candidates,
                candidates_dropped: dropped,
                icon: found.icon,
                dark: found.dark.map(|dark| {
                    Box::new(DarkIcon {
                        mime: text(&dark.mime, MAX_TOKEN_BYTES),
                        width: dark.width.min(i32::MAX as u32),
                        height: dark.height.min(i32::MAX as u32),
                        ..*dark
                    })
                }),
            })
        }
        Err(err) => outcome_err(err),
    }
}

fn outcome_err(err: FindError) -> FindOutcome {
    let (candidates, dropped) = self::candidates(err.candidates, err.candidates_dropped);
    Err(FindError {
        category: err.category,
        message: text(&err.message, MAX_MESSAGE_BYTES),
        final_url: err.final_url.map(|u| text(&u, MAX_URL_BYTES)),
        retry_after_secs: err.retry_after_secs,
        candidates,
        candidates_dropped: dropped,
    })
}

/// Keeps the first [`MAX_CANDIDATES`] storable candidates, cleaned; returns them with
/// `dropped` plus however many were cut, at most `i32::MAX` (the column's range).
pub fn candidates(all: Vec<Candidate>, dropped: u32) -> (Vec<Candidate>, u32) {
    let total = all.len();
    let kept: Vec<Candidate> = all
        .into_iter()
        .filter(|c| c.url.len() <= url_cap(&c.url))
        .take(MAX_CANDIDATES)
        .map(|c| Candidate {
            url: text(&c.url, url_cap(&c.url)),
            source: c.source,
            declared_sizes: c.declared_sizes.map(|s| text(&s, MAX_TOKEN_BYTES)),
            declared_type: c.declared_type.map(|s| text(&s, MAX_TOKEN_BYTES)),
            in_body: c.in_body,
            mime: c.mime.map(|s| text(&s, MAX_TOKEN_BYTES)),
            width: c.width.map(|w| w.min(i32::MAX as u32)),
            height: c.height.map(|h| h.min(i32::MAX as u32)),
            error: c.error.map(|e| e.map_text(|s| text(s, MAX_MESSAGE_BYTES))),
            media: c.media.map(|s| text(&s, MAX_TOKEN_BYTES)),
        })
        .collect();
    let cut = u32::try_from(total - kept.len()).unwrap_or(u32::MAX);
    let dropped = dropped.saturating_add(cut).min(i32::MAX as u32);
    (kept, dropped)
}

/// Returns `bytes` as UTF-8 (invalid sequences replaced) passed through [`text`].
pub fn bytes(bytes: &[u8], max: usize) -> String {
    text(&String::from_utf8_lossy(bytes), max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{CandidateError, CandidateSource};

    #[test]
    fn control_characters_go_and_length_is_capped_on_a_char_boundary() {
        assert_eq!(text("a\u{0}b\u{7}c\td", 64), "abc d");
        let cut = text("ééééé", 5);
        assert!(cut.len() <= 5, "{cut:?}");
        assert!(cut.ends_with('…'));
        assert_eq!(text("short", 5), "short");
        assert_eq!(bytes(b"x\xff\x00y", 64), "x\u{fffd}y");
        // A cap too small for the mark still ends (empty) rather than looping.
        assert_eq!(text("abcdef", 2), "");
        assert_eq!(text("abcdef", 0), "");
    }

    #[test]
    fn a_data_url_is_recognised_as_the_url_parser_reads_its_scheme() {
        for (url, body) in [
            ("data:image/png,x", Some("image/png,x")),
            ("DATA:image/png,x", Some("image/png,x")),
            ("DaTa:,", Some(",")),
            ("data:", Some("")),
            // Leading C0 controls and spaces go; tabs and newlines inside the scheme too.
            ("   data:x", Some("x")),
            ("\u{0}\u{1f} \tdata:x", Some("x")),
            ("d\ta\nt\ra:x", Some("x")),
            ("data\n:x", Some("x")),
            // DEL is no C0 control: not stripped, so no scheme.
            ("\u{7f}data:x", None),
            ("da\u{7f}ta:x", None),
            // Other characters in or before the scheme, or another scheme.
            ("\u{a0}data:x", None),
            ("da ta:x", None),
            ("data", None),
            ("dat", None),
            ("datax:y", None),
            ("https://data:x@example.com/", None),
            ("", None),
        ] {
            assert_eq!(data_url_body(url), body, "{url:?}");
            assert_eq!(is_data_url(url), body.is_some(), "{url:?}");
        }
        // Whatever follows the scheme is kept as it is, multi-byte characters included.
        assert_eq!(data_url_body(" data:é\t"), Some("é\t"));
        assert_eq!(url_cap("\tDATA:x"), MAX_DATA_URL_BYTES);
        assert_eq!(url_cap("\u{7f}data:x"), MAX_URL_BYTES);
    }

    fn dirty_candidate(n: usize) -> Candidate {
        let mut c = Candidate::new(
            format!("https://a.test/{n}\u{0}.png"),
            CandidateSource::Icon,
        );
        c.declared_sizes = Some("\u{0}".repeat(3) + &"9".repeat(1000));
        c.declared_type = Some("image/\u{0}png".into());
        c.error = Some(CandidateError::rejected("x".repeat(10_000)));
        c.width = Some(u32::MAX);
        c
    }

    fn assert_clean(s: &str, max: usize) {
        assert!(s.len() <= max, "{} bytes > {max}", s.len());
        assert!(!s.chars().any(char::is_control), "{s:?}");
    }

    #[test]
    fn outcomes_are_cleaned_capped_and_count_what_they_cut() {
        let mut candidates: Vec<Candidate> = (0..100).map(dirty_candidate).collect();
        // Over its cap: dropped, not cut.
        candidates.insert(
            0,
            Candidate::new(
                format!("https://a.test/{}", "a".repeat(5000)),
                CandidateSource::Icon,
            ),
        );
        let found = Found {
            favicon_url: "data:image/png;base64,\u{0}AAAA".into(),
            final_url: Some(format!("https://a.test/\u{0}{}", "p".repeat(9000))),
            mime: "image/png\u{0}".into(),
            width: u32::MAX,
            height: 16,
            candidates,
            candidates_dropped: 7,
            icon: None,
            dark: None,
        };
        let Ok(clean) = outcome(Ok(found)) else {
            panic!("a storable icon stays found")
        };
        assert_eq!(clean.favicon_url, "data:image/png;base64,AAAA");
        assert_clean(clean.final_url.as_deref().unwrap(), MAX_URL_BYTES);
        assert_eq!(clean.mime, "image/png");
        assert_eq!(clean.width, i32::MAX as u32);
        assert_eq!(clean.candidates.len(), MAX_CANDIDATES);
        assert_eq!(clean.candidates_dropped, 7 + 101 - MAX_CANDIDATES as u32);
        for c in &clean.candidates {
            assert_clean(&c.url, MAX_URL_BYTES);
            assert_clean(c.declared_sizes.as_deref().unwrap(), MAX_TOKEN_BYTES);
            assert_eq!(c.declared_type.as_deref(), Some("image/png"));
            assert_clean(c.error.as_deref().unwrap(), MAX_MESSAGE_BYTES);
        }

        let mut err = FindError::new(
            ErrorCategory::HttpStatus,
            "404 Not\u{0}Found\r\n".repeat(100),
        );
        err.candidates_dropped = u32::MAX;
        let Err(clean) = outcome(Err(err)) else {
            panic!("a failure stays one")
        };
        assert_clean(&clean.message, MAX_MESSAGE_BYTES);
        assert!(
            clean.message.starts_with("404 NotFound  "),
            "{}",
            clean.message
        );
        assert_eq!(clean.candidates_dropped, i32::MAX as u32);
    }

    #[test]
    fn an_icon_url_over_its_cap_is_a_failure_not_a_cut_url() {
        let found = Found {
            favicon_url: format!("data:image/png;base64,{}", "A".repeat(MAX_DATA_URL_BYTES)),
            final_url: None,
            mime: "image/png".into(),
            width: 16,
            height: 16,
            candidates: vec![],
            candidates_dropped: 0,
            icon: None,
            dark: None,
        };
        let Err(err) = outcome(Ok(found)) else {
            panic!("an icon too large to store is not reported as found")
        };
        assert_eq!(err.category, ErrorCategory::InvalidContent);
        assert!(err.message.contains("32768 bytes"), "{}", err.message);
    }
}
