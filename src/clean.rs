//! Bounds on everything taken from the web before it is stored or shown.
//!
//! A website controls the bytes of its pages, manifests and error answers. Whatever of it we
//! keep (URLs, declared sizes and types, messages) passes through here first, so that no
//! string can break a database write (PostgreSQL refuses NUL in text) or bloat a row. The
//! finder applies the count and length caps where it parses; the store applies [`text`] to
//! every string once more at its one write boundary, so a path that forgot is still safe.

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
            while out.len() + MARK.len() > max {
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

/// Returns `bytes` as UTF-8 (invalid sequences replaced) passed through [`text`].
pub fn bytes(bytes: &[u8], max: usize) -> String {
    text(&String::from_utf8_lossy(bytes), max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_go_and_length_is_capped_on_a_char_boundary() {
        assert_eq!(text("a\u{0}b\u{7}c\td", 64), "abc d");
        let cut = text("ééééé", 5);
        assert!(cut.len() <= 5, "{cut:?}");
        assert!(cut.ends_with('…'));
        assert_eq!(text("short", 5), "short");
        assert_eq!(bytes(b"x\xff\x00y", 64), "x\u{fffd}y");
    }
}
