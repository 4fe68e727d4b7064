//! `Domain`: a validated, normalised public hostname, parsed once at the API edge.
//!
//! Users paste domains in every shape (`Example.COM`, `example.com.`, `https://x.com:443/path`,
//! `user@x.com`, `bücher.de`). `Domain::parse` reduces each to the lowercase ASCII (IDNA
//! punycode) host the finder fetches, and refuses anything that cannot be a public website
//! name, with a reason a person can act on. The rest of the code never re-checks these strings.

use std::fmt;
use std::net::Ipv6Addr;

/// The longest DNS name, in ASCII, without the trailing dot (RFC 1035).
const MAX_NAME_LEN: usize = 253;
/// The longest DNS label (RFC 1035).
const MAX_LABEL_LEN: usize = 63;
/// Special-use suffixes that never name a public website (RFC 6761, 6762, 7686, 8375).
const RESERVED_SUFFIXES: [&str; 7] = [
    "localhost",
    "local",
    "localdomain",
    "invalid",
    "internal",
    "arpa",
    "onion",
];

/// A normalised public hostname such as `example.com` or `xn--bcher-kva.de`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Domain(String);

/// Why an entry is not a domain we can look up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    /// Nothing left after trimming.
    #[error("is empty")]
    Empty,
    /// An IPv4 or IPv6 address rather than a name.
    #[error("is an IP address, not a domain name")]
    IpLiteral,
    /// A name without a dot, such as `intranet`.
    #[error("has a single label; a public domain has at least two (like example.com)")]
    SingleLabel,
    /// `localhost`, `.local` and other names that are never public.
    #[error("uses the reserved name `{0}`, which is never a public website")]
    Reserved(String),
    /// A character a hostname cannot hold.
    #[error("contains the character {0:?}, which is not allowed in a domain name")]
    BadCharacter(char),
    /// Two dots in a row, or a dot at the start.
    #[error("has an empty label (two dots in a row or a leading dot)")]
    EmptyLabel,
    /// A label that starts or ends with a hyphen.
    #[error("has a label that starts or ends with a hyphen: `{0}`")]
    BadHyphen(String),
    /// A label longer than 63 characters.
    #[error("has a label longer than 63 characters")]
    LabelTooLong,
    /// A name longer than 253 characters.
    #[error("is longer than 253 characters")]
    TooLong,
    /// A port that is not a number.
    #[error("has an invalid port `{0}`")]
    BadPort(String),
    /// The internationalised name could not be converted to ASCII.
    #[error("is not a valid internationalised domain name")]
    BadIdna,
}

impl Domain {
    /// Normalises and validates one user-supplied entry.
    pub fn parse(input: &str) -> Result<Self, DomainError> {
        let host = extract_host(input)?;
        if host.starts_with('[') || host.parse::<Ipv6Addr>().is_ok() {
            return Err(DomainError::IpLiteral);
        }
        let host = host.strip_suffix('.').unwrap_or(host);
        if host.is_empty() {
            return Err(DomainError::Empty);
        }
        if let Some(c) = host.chars().find(|c| {
            c.is_whitespace() || c.is_control() || "/\\?#@:%<>\"'`{}|^*,;=!$&()+[]~".contains(*c)
        }) {
            return Err(DomainError::BadCharacter(c));
        }
        // UTS 46 mapping: lowercases, maps full-width dots, converts Unicode labels to punycode.
        let ascii = idna::domain_to_ascii(host).map_err(|_| DomainError::BadIdna)?;
        if ascii.len() > MAX_NAME_LEN {
            return Err(DomainError::TooLong);
        }
        let labels: Vec<&str> = ascii.split('.').collect();
        if labels.iter().any(|l| l.is_empty()) {
            return Err(DomainError::EmptyLabel);
        }
        for label in &labels {
            if label.len() > MAX_LABEL_LEN {
                return Err(DomainError::LabelTooLong);
            }
            if let Some(c) = label
                .chars()
                .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
            {
                return Err(DomainError::BadCharacter(c));
            }
            if label.starts_with('-') || label.ends_with('-') {
                return Err(DomainError::BadHyphen((*label).to_owned()));
            }
        }
        // A numeric last label makes URL parsers read the whole host as an IPv4 address
        // (`2130706433`, `0x7f.1`, `127.1`), so such a name can only ever be an address.
        let last = labels[labels.len() - 1];
        if last.chars().all(|c| c.is_ascii_digit())
            || (last.starts_with("0x") && last[2..].chars().all(|c| c.is_ascii_hexdigit()))
        {
            return Err(DomainError::IpLiteral);
        }
        // Compared in place: a `format!` per suffix was seven allocations per domain.
        let under = |s: &str| {
            ascii == s
                || (ascii.len() > s.len()
                    && ascii.ends_with(s)
                    && ascii.as_bytes()[ascii.len() - s.len() - 1] == b'.')
        };
        if let Some(reserved) = RESERVED_SUFFIXES.iter().find(|s| under(s)) {
            return Err(DomainError::Reserved((*reserved).to_owned()));
        }
        if labels.len() < 2 {
            return Err(DomainError::SingleLabel);
        }
        Ok(Self(ascii))
    }

    /// The normalised hostname.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Wraps a hostname read back from our own database, where it was stored normalised.
    pub fn from_trusted(stored: String) -> Self {
        Self(stored)
    }
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Strips whitespace, a scheme, userinfo, path, query, fragment and port from an entry.
fn extract_host(input: &str) -> Result<&str, DomainError> {
    let mut rest = input.trim();
    if rest.is_empty() {
        return Err(DomainError::Empty);
    }
    if let Some(idx) = rest.find("://") {
        let scheme = &rest[..idx];
        if !scheme.is_empty()
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        {
            rest = &rest[idx + 3..];
        }
    } else if let Some(stripped) = rest.strip_prefix("//") {
        rest = stripped;
    }
    let end = rest.find(['/', '?', '#', '\\']).unwrap_or(rest.len());
    rest = &rest[..end];
    if let Some(at) = rest.rfind('@') {
        rest = &rest[at + 1..];
    }
    if rest.starts_with('[') {
        return Err(DomainError::IpLiteral);
    }
    // More than one colon without brackets is a bare IPv6 address, not host:port.
    if rest.matches(':').count() > 1 {
        return if rest.parse::<Ipv6Addr>().is_ok() {
            Err(DomainError::IpLiteral)
        } else {
            Err(DomainError::BadCharacter(':'))
        };
    }
    if let Some((host, port)) = rest.split_once(':') {
        if !port.is_empty() && !port.chars().all(|c| c.is_ascii_digit()) || port.len() > 5 {
            return Err(DomainError::BadPort(port.to_owned()));
        }
        rest = host;
    }
    if rest.is_empty() {
        return Err(DomainError::Empty);
    }
    Ok(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_what_people_paste() {
        let cases = [
            ("example.com", "example.com"),
            ("Example.COM", "example.com"),
            ("  example.com \n", "example.com"),
            ("example.com.", "example.com"),
            ("https://example.com", "example.com"),
            ("http://example.com/", "example.com"),
            ("https://example.com/path/to?q=1#frag", "example.com"),
            ("https://example.com:443/path", "example.com"),
            ("example.com:8080", "example.com"),
            ("user@example.com", "example.com"),
            ("https://user:pw@www.example.com/", "www.example.com"),
            ("//cdn.example.com/x", "cdn.example.com"),
            ("HTTPS://WWW.Example.Co.UK/", "www.example.co.uk"),
            ("bücher.de", "xn--bcher-kva.de"),
            ("Bücher.DE.", "xn--bcher-kva.de"),
            ("https://bücher.de/ä", "xn--bcher-kva.de"),
            ("xn--bcher-kva.de", "xn--bcher-kva.de"),
            ("例え.jp", "xn--r8jz45g.jp"),
            ("пример.рф", "xn--e1afmkfd.xn--p1ai"),
            ("a-b.example.com", "a-b.example.com"),
            ("123.example.com", "123.example.com"),
            ("example.com?x", "example.com"),
            ("sub.domain.example.test", "sub.domain.example.test"),
            ("ftp://files.example.org", "files.example.org"),
            ("example。com", "example.com"),
        ];
        for (input, expected) in cases {
            assert_eq!(
                Domain::parse(input).map(|d| d.to_string()),
                Ok(expected.to_owned()),
                "input {input:?}"
            );
        }
    }

    #[test]
    fn rejects_what_is_not_a_public_hostname() {
        use DomainError::*;
        let long_label = format!("{}.com", "a".repeat(64));
        let long_name = format!("{}com", "abcdefghi.".repeat(26));
        let cases: Vec<(&str, DomainError)> = vec![
            ("", Empty),
            ("   ", Empty),
            ("https://", Empty),
            (".", Empty),
            ("127.0.0.1", IpLiteral),
            ("8.8.8.8", IpLiteral),
            ("http://10.0.0.1/", IpLiteral),
            ("2130706433", IpLiteral),
            ("0x7f.1", IpLiteral),
            ("127.1", IpLiteral),
            ("[::1]", IpLiteral),
            ("::1", IpLiteral),
            ("http://[fe80::1]:80/", IpLiteral),
            ("localhost", Reserved("localhost".into())),
            ("LOCALHOST.", Reserved("localhost".into())),
            ("app.localhost", Reserved("localhost".into())),
            ("printer.local", Reserved("local".into())),
            ("foo.invalid", Reserved("invalid".into())),
            ("1.0.0.127.in-addr.arpa", Reserved("arpa".into())),
            ("intranet", SingleLabel),
            ("com", SingleLabel),
            ("exa mple.com", BadCharacter(' ')),
            ("exam_ple.com", BadCharacter('_')),
            ("example.com,other.com", BadCharacter(',')),
            ("ex*ample.com", BadCharacter('*')),
            ("a..b.com", EmptyLabel),
            (".example.com", EmptyLabel),
            ("-example.com", BadHyphen("-example".into())),
            ("example-.com", BadHyphen("example-".into())),
            (long_label.as_str(), LabelTooLong),
            (long_name.as_str(), TooLong),
            ("example.com:http", BadPort("http".into())),
            ("example.com:1:2", BadCharacter(':')),
        ];
        for (input, expected) in cases {
            assert_eq!(Domain::parse(input), Err(expected), "input {input:?}");
        }
    }

    #[test]
    fn every_error_reads_as_a_sentence_fragment() {
        let err = Domain::parse("intranet").unwrap_err();
        assert!(err.to_string().contains("single label"));
        let err = Domain::parse("exa mple.com").unwrap_err();
        assert!(err.to_string().contains("' '"), "{err}");
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// Whatever is pasted, parsing never panics, and a name it accepts is a normalised
        /// hostname within the DNS limits; an error names the input without amplifying it.
        fn check(input: &str) {
            match Domain::parse(input) {
                Ok(d) => {
                    let s = d.as_str();
                    assert!(s.len() <= MAX_NAME_LEN, "{s}");
                    assert!(s.split('.').count() >= 2, "{s}");
                    for label in s.split('.') {
                        assert!(!label.is_empty() && label.len() <= MAX_LABEL_LEN, "{s}");
                        assert!(!label.starts_with('-') && !label.ends_with('-'), "{s}");
                    }
                    assert!(
                        s.bytes().all(|b| b.is_ascii_lowercase()
                            || b.is_ascii_digit()
                            || b == b'.'
                            || b == b'-'),
                        "{s}"
                    );
                    // Normalised: parsing it again gives it back.
                    assert_eq!(Domain::parse(s).unwrap().as_str(), s);
                }
                Err(e) => assert!(e.to_string().len() <= input.len() + 128, "{e}"),
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            #[test]
            fn any_string(input in any::<String>()) {
                check(&input);
            }

            #[test]
            fn host_like_strings(input in "(https?://)?([a-zA-Z0-9\u{e9}\u{ff0e}-]{0,70}[.]){0,5}[a-zA-Z0-9-]{0,70}[.]?(:[0-9]{1,6})?(/.{0,10})?") {
                check(&input);
            }
        }
    }
}
