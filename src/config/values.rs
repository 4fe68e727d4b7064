//! The kinds of values settings take besides numbers and strings, and the error that names a
//! setting whose value cannot be used.

/// Whether the chosen icon's bytes are stored (`ICON_STORE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IconStore {
    /// Keep the chosen icon's bytes, up to `ICON_MAX_BYTES`.
    Chosen,
    /// Keep none: `/icons/{domain}` answers with the fallback.
    Off,
}

/// Whether requests need an API key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// Every request (but health, readiness and metrics) needs a valid key.
    Required,
    /// Requests without a key act as before keys existed; a key that is sent is still checked.
    Off,
}

/// A header a trusted reverse proxy sets to the client's address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyHeader {
    /// `X-Forwarded-For: client, proxy1, …`: the last entry our proxy appended.
    XForwardedFor,
    /// `X-Real-IP: client`.
    XRealIp,
    /// RFC 7239 `Forwarded: for=client`: the last `for=` element.
    Forwarded,
}

impl ProxyHeader {
    /// The header's name, lower-case.
    pub fn name(self) -> &'static str {
        match self {
            Self::XForwardedFor => "x-forwarded-for",
            Self::XRealIp => "x-real-ip",
            Self::Forwarded => "forwarded",
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// A configuration value that could not be used; the message names the variable.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {var}={value:?}: {reason}")]
pub struct ConfigError {
    /// The environment variable at fault.
    pub var: &'static str,
    /// The value it had.
    pub value: String,
    /// What was wrong with it.
    pub reason: String,
}
