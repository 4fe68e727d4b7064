//! Web app manifest icons, parsed leniently: a BOM, trailing junk or one bad entry must not
//! lose the good entries.

use super::links::{Skip, resolve};
use super::{Candidate, CandidateSource};
use crate::clean::{self, MAX_TOKEN_BYTES};
use serde_json::Value;
use url::Url;

/// Entries of a manifest's `icons` list looked at: a real manifest lists a handful, and every
/// one kept may be fetched and stored.
pub const MAX_MANIFEST_ICONS: usize = 32;

/// Icons of a manifest, `src` resolved against the manifest's own URL, and how many entries
/// were dropped for a cap (past [`MAX_MANIFEST_ICONS`], or a URL over the length cap).
/// Monochrome-only entries are dropped (not counted: they are never icons); maskable-only
/// entries are kept only when the manifest has no `any` entry, because maskable icons carry
/// safe-zone padding.
pub fn icons(body: &[u8], manifest_url: &Url) -> (Vec<Candidate>, u32) {
    let body = body.strip_prefix(b"\xef\xbb\xbf").unwrap_or(body);
    let Some(Ok(root)) = serde_json::Deserializer::from_slice(body)
        .into_iter::<Value>()
        .next()
    else {
        return (Vec::new(), 0);
    };
    let Some(list) = root.get("icons").and_then(Value::as_array) else {
        return (Vec::new(), 0);
    };
    let mut dropped =
        u32::try_from(list.len().saturating_sub(MAX_MANIFEST_ICONS)).unwrap_or(u32::MAX);
    let mut any = Vec::new();
    let mut maskable = Vec::new();
    let token = |v: Option<&Value>| {
        v.and_then(Value::as_str)
            .map(|s| clean::text(s, MAX_TOKEN_BYTES))
    };
    for entry in list.iter().take(MAX_MANIFEST_ICONS) {
        let Some(src) = entry.get("src").and_then(Value::as_str) else {
            continue;
        };
        let purpose = entry
            .get("purpose")
            .and_then(Value::as_str)
            .unwrap_or("any")
            .to_ascii_lowercase();
        let tokens: Vec<&str> = purpose.split_ascii_whitespace().collect();
        let is_any = tokens.is_empty() || tokens.contains(&"any");
        if !is_any && !tokens.contains(&"maskable") {
            continue; // monochrome (or unknown) only
        }
        let url = match resolve(Some(manifest_url), src) {
            Ok(u) => u,
            Err(Skip::TooLong) => {
                dropped = dropped.saturating_add(1);
                continue;
            }
            Err(Skip::Unusable) => continue,
        };
        let c = Candidate {
            declared_sizes: token(entry.get("sizes")),
            declared_type: token(entry.get("type")),
            ..Candidate::new(url, CandidateSource::Manifest)
        };
        if is_any {
            any.push(c)
        } else {
            maskable.push(c)
        }
    }
    (if any.is_empty() { maskable } else { any }, dropped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lenient_and_resolved_against_manifest_url() {
        // Sources resolve against the manifest's URL; a maskable icon (padded for a safe zone)
        // is used only when nothing else is offered, a monochrome one never; a BOM, trailing
        // junk and bad entries lose only themselves.
        let m = "\u{feff}{\"icons\":[{\"src\":\"i/192.png\",\"sizes\":\"192x192\",\"type\":\"image/png\"},\
                 {\"src\":5},{\"sizes\":\"1x1\"},{\"src\":\"m.png\",\"purpose\":\"maskable\"},\
                 {\"src\":\"mono.png\",\"purpose\":\"monochrome\"},\
                 {\"src\":\"both.png\",\"purpose\":\"any maskable\"}]} trailing junk";
        let base = Url::parse("https://x.test/s/site.webmanifest").unwrap();
        let (c, dropped) = icons(m.as_bytes(), &base);
        assert_eq!(dropped, 0);
        let urls: Vec<_> = c.iter().map(|c| c.url.as_str()).collect();
        assert_eq!(
            urls,
            ["https://x.test/s/i/192.png", "https://x.test/s/both.png"]
        );
        assert_eq!(c[0].declared_sizes.as_deref(), Some("192x192"));
        let only_mask = br#"{"icons":[{"src":"/m.png","purpose":"maskable"}]}"#;
        assert_eq!(icons(only_mask, &base).0.len(), 1);
        assert!(icons(b"<html>404</html>", &base).0.is_empty());
        assert!(icons(b"{\"name\":1}", &base).0.is_empty());
    }
}
