//! What a failed request means: a reqwest error walked down its source chain to the
//! category that drives retries and the message a person reads.

use crate::finder::ErrorCategory;
use crate::finder::resolve::ResolveError;

/// Every error in the chain, outermost first, including the payloads of `io::Error`s (whose
/// `source()` skips the payload itself).
fn error_chain<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> Vec<&'a (dyn std::error::Error + 'static)> {
    let mut out = Vec::new();
    let mut cur = Some(err);
    while let Some(e) = cur {
        if out.len() > 32 {
            break;
        }
        out.push(e);
        cur = match e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        };
    }
    out
}

/// Whether the server answered with something that is not HTTP the client takes (hyper could
/// not parse it: too many headers, a header section over its buffer, a broken status line).
pub(super) fn malformed_answer(err: &reqwest::Error) -> bool {
    error_chain(err).iter().any(|e| {
        e.downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_parse)
    })
}

/// Classifies a reqwest error by walking its source chain: our resolver's error first, then
/// rustls and I/O errors, then reqwest's own flags. An answer the client could not parse is
/// `invalid_content`: the server works, what it sent cannot be used.
pub fn classify(err: &reqwest::Error) -> (ErrorCategory, String) {
    let mut message = err.to_string();
    let mut found = None;
    for e in error_chain(err) {
        message = e.to_string();
        if let Some(r) = e.downcast_ref::<ResolveError>() {
            return (r.category(), r.to_string());
        }
        if e.downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_parse)
        {
            found = Some((
                ErrorCategory::InvalidContent,
                format!("the answer could not be read: {e}"),
            ));
        }
        if e.downcast_ref::<rustls::Error>().is_some() {
            // The innermost cause wins over the I/O wrappers that carried it.
            found = Some((ErrorCategory::Tls, e.to_string()));
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind as K;
            let cat = match io.kind() {
                K::TimedOut => Some(ErrorCategory::Timeout),
                K::ConnectionRefused
                | K::ConnectionReset
                | K::ConnectionAborted
                | K::NotConnected
                | K::AddrNotAvailable
                | K::HostUnreachable
                | K::NetworkUnreachable
                | K::BrokenPipe
                | K::UnexpectedEof => Some(ErrorCategory::Connect),
                _ => None,
            };
            if let Some(c) = cat {
                found.get_or_insert((c, io.to_string()));
            }
        }
    }
    if let Some((c, m)) = found {
        return (c, m);
    }
    let lower = message.to_ascii_lowercase();
    let cat = if err.is_timeout() {
        ErrorCategory::Timeout
    } else if lower.contains("certificate") || lower.contains("tls") || lower.contains("handshake")
    {
        ErrorCategory::Tls
    } else if err.is_decode() {
        ErrorCategory::InvalidContent
    } else {
        ErrorCategory::Connect
    };
    (cat, message)
}
