//! The letter fallback: an SVG monogram for a domain without a stored icon.
//!
//! The letter is the first character of the domain's Unicode form (after a leading `www.`),
//! so `xn--bcher-kva.de` shows `B`; the background hue comes from a hash of the domain, so a
//! domain keeps its colour across requests and processes.

use crate::domain::Domain;
use sha2::Digest;

/// The monogram of `domain`, a 64×64 SVG with no script and no external reference.
pub fn monogram(domain: &Domain) -> String {
    let (unicode, _) = idna::domain_to_unicode(domain.as_str());
    let name = unicode.strip_prefix("www.").unwrap_or(&unicode);
    let letter: String = name
        .chars()
        .next()
        .map(|c| c.to_uppercase().collect())
        .unwrap_or_else(|| "?".to_owned());
    let digest = sha2::Sha256::digest(domain.as_str().as_bytes());
    let hue = u16::from_be_bytes([digest[0], digest[1]]) % 360;
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"64\" height=\"64\" viewBox=\"0 0 64 64\">\
         <rect width=\"64\" height=\"64\" rx=\"12\" fill=\"hsl({hue},55%,42%)\"/>\
         <text x=\"32\" y=\"43\" font-family=\"sans-serif\" font-size=\"32\" font-weight=\"bold\" \
         text-anchor=\"middle\" fill=\"#fff\">{}</text></svg>",
        escape(&letter)
    )
}

/// Escapes text for an XML text node (or a quoted attribute).
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unicode_letter_stable_colour() {
        let d = Domain::parse("bücher.de").unwrap();
        let svg = monogram(&d);
        assert!(svg.contains(">B</text>"), "{svg}");
        assert_eq!(svg, monogram(&Domain::parse("xn--bcher-kva.de").unwrap()));
        let other = monogram(&Domain::parse("www.example.com").unwrap());
        assert!(other.contains(">E</text>"), "{other}");
        assert_ne!(svg.split("fill=").nth(1), other.split("fill=").nth(1));
    }

    #[test]
    fn escaping() {
        assert_eq!(escape("<&>\"'"), "&lt;&amp;&gt;&quot;&apos;");
    }
}
