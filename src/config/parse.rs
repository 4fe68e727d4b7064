//! Reading and checking values: the typed accessors over the environment ([`Vars`]) and the
//! checks of values with a shape of their own (secrets, origins, URLs, header values). Each
//! error names its variable; a secret's never shows its value.

use super::{ConfigError, ProxyHeader};
use crate::redact::redact_url;
use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A value sent as an HTTP header as it is: visible ASCII and spaces only, so a typo cannot
/// fail every response at run time.
pub(super) fn check_header_value(var: &'static str, value: String) -> Result<String, ConfigError> {
    if value.bytes().all(|b| b == b' ' || b.is_ascii_graphic()) {
        Ok(value)
    } else {
        Err(ConfigError {
            var,
            value,
            reason: "must be printable ASCII (it is sent as an HTTP header)".into(),
        })
    }
}

/// A secret must be long enough not to be guessed; the error never shows its value.
pub(super) fn check_secret(var: &'static str, value: String) -> Result<String, ConfigError> {
    if value.len() < 32 || value.chars().any(|c| !c.is_ascii_graphic()) {
        return Err(ConfigError {
            var,
            value: "***".into(),
            reason: "must be at least 32 printable ASCII characters without spaces (for example \
                     `openssl rand -base64 32`, or a key from `favicon-finder keys create`)"
                .into(),
        });
    }
    // The examples' placeholders (deploy/k8s/secret.example.yaml) are public: a secret that
    // still holds one is known to everyone who read them.
    if value.to_ascii_lowercase().contains("change-me") {
        return Err(ConfigError {
            var,
            value: "***".into(),
            reason: "is still the example's placeholder (it says CHANGE-ME); put in a real \
                     secret (for example `openssl rand -base64 32`)"
                .into(),
        });
    }
    Ok(value)
}

/// Exact origins, comma-separated: `scheme://host[:port]`, no path, no wildcard. A browser
/// sends its `Origin` in exactly this form, so anything else could never match.
pub fn parse_origins(value: &str) -> Result<Vec<String>, String> {
    let mut origins = Vec::new();
    for raw in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let url = url::Url::parse(raw).map_err(|e| format!("{raw:?} is not an origin: {e}"))?;
        let origin = url.origin().ascii_serialization();
        // No wildcards or odd characters: a host is letters, digits, dots and hyphens (or an
        // IP address).
        let plain_host = match url.host() {
            Some(url::Host::Domain(d)) => d
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.'),
            Some(_) => true,
            None => false,
        };
        if !matches!(url.scheme(), "http" | "https") || origin != raw || !plain_host {
            return Err(format!(
                "{raw:?} is not an exact origin; write scheme://host[:port] with no path or \
                 trailing slash, as a browser sends it (here: {origin:?})"
            ));
        }
        origins.push(origin);
    }
    Ok(origins)
}

/// `ALLOWED_HOSTS`: host names (no scheme or port), lowercased; `*` alone allows any.
pub fn parse_hosts(value: &str) -> Result<Vec<String>, String> {
    let mut hosts = Vec::new();
    for raw in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let host = raw.to_ascii_lowercase();
        let plain = host == "*"
            || host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
        if !plain {
            return Err(format!(
                "{raw:?} is not a host name; write names such as favicons.example.com, without \
                 scheme or port (or * alone to allow any)"
            ));
        }
        hosts.push(host);
    }
    Ok(hosts)
}

/// An `http(s)` URL without query or fragment; the trailing slash is dropped so a path can
/// follow it.
pub(super) fn parse_public_url(value: &str) -> Result<String, String> {
    let url = url::Url::parse(value.trim()).map_err(|e| format!("not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err("must be an http:// or https:// URL with a host".into());
    }
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return Err("must have no user, query or fragment".into());
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

/// `x-forwarded-for`, `x-real-ip` and `forwarded`, comma-separated, in the order to try.
pub(super) fn parse_proxy_headers(value: &str) -> Result<Vec<ProxyHeader>, String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|name| match name.to_ascii_lowercase().as_str() {
            "x-forwarded-for" => Ok(ProxyHeader::XForwardedFor),
            "x-real-ip" => Ok(ProxyHeader::XRealIp),
            "forwarded" => Ok(ProxyHeader::Forwarded),
            _ => Err(format!(
                "unknown header {name:?}; expected x-forwarded-for, x-real-ip or forwarded"
            )),
        })
        .collect()
}

/// Accepts the Redis URL schemes this build can serve: `redis://` in clear text and
/// `rediss://` over TLS. Anything else (cluster, sentinel, unix sockets) is refused at start
/// rather than half-working.
pub(super) fn check_redis_url(value: String) -> Result<String, ConfigError> {
    let scheme = value.split_once("://").map(|(scheme, _)| scheme);
    match scheme {
        Some("redis" | "rediss") => Ok(value),
        _ => Err(ConfigError {
            var: "REDIS_URL",
            value: redact_url(&value),
            reason: "expected redis://HOST[:PORT][/DB] or rediss://… (TLS); no other scheme is \
                     supported by this build"
                .into(),
        }),
    }
}

/// The environment as read: each accessor names its variable in any error.
pub(super) struct Vars(pub(super) HashMap<String, String>);

impl Vars {
    /// A set, non-empty value; an empty string counts as unset, as in most `.env` tooling.
    pub(super) fn optional(&self, var: &str) -> Option<String> {
        self.0
            .get(var)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    pub(super) fn string(&self, var: &str, default: &str) -> String {
        self.optional(var).unwrap_or_else(|| default.to_owned())
    }

    pub(super) fn parse<T: FromStr>(&self, var: &'static str, default: T) -> Result<T, ConfigError>
    where
        T::Err: fmt::Display,
    {
        match self.optional(var) {
            None => Ok(default),
            Some(value) => value.parse().map_err(|e: T::Err| ConfigError {
                var,
                reason: e.to_string(),
                value,
            }),
        }
    }

    pub(super) fn parse_in<T>(
        &self,
        var: &'static str,
        default: T,
        range: std::ops::RangeInclusive<T>,
    ) -> Result<T, ConfigError>
    where
        T: FromStr + PartialOrd + fmt::Display + Copy,
        T::Err: fmt::Display,
    {
        let value = self.parse(var, default)?;
        if range.contains(&value) {
            Ok(value)
        } else {
            Err(ConfigError {
                var,
                value: value.to_string(),
                reason: format!("must be between {} and {}", range.start(), range.end()),
            })
        }
    }

    /// A duration in milliseconds, from 10 ms to one hour.
    pub(super) fn millis(&self, var: &'static str, default: u64) -> Result<Duration, ConfigError> {
        Ok(Duration::from_millis(self.parse_in(
            var,
            default,
            10..=3_600_000,
        )?))
    }

    /// A count of things from one to `max` (a cap, where zero would mean nothing works).
    pub(super) fn count(
        &self,
        var: &'static str,
        default: usize,
        max: usize,
    ) -> Result<usize, ConfigError> {
        self.parse_in(var, default, 1..=max)
    }

    /// A share of something, from 0 to 1.
    pub(super) fn share(&self, var: &'static str, default: f32) -> Result<f32, ConfigError> {
        self.parse_in(var, default, 0.0..=1.0)
    }

    /// A fraction of something that must not be nothing: more than 0, at most 1.
    pub(super) fn fraction(&self, var: &'static str, default: f64) -> Result<f64, ConfigError> {
        let value = self.parse(var, default)?;
        if value > 0.0 && value <= 1.0 {
            Ok(value)
        } else {
            Err(ConfigError {
                var,
                value: value.to_string(),
                reason: "must be more than 0 and at most 1".into(),
            })
        }
    }

    /// A cap on what one client address or key may hold open at once, up to a million.
    pub(super) fn client_cap(
        &self,
        var: &'static str,
        default: usize,
    ) -> Result<usize, ConfigError> {
        self.count(var, default, 1_000_000)
    }

    /// A duration in whole seconds within `range`.
    pub(super) fn secs(
        &self,
        var: &'static str,
        default: u64,
        range: std::ops::RangeInclusive<u64>,
    ) -> Result<Duration, ConfigError> {
        Ok(Duration::from_secs(self.parse_in(var, default, range)?))
    }

    /// A duration in milliseconds within `range`, for settings whose bounds are not
    /// [`Vars::millis`]'s.
    pub(super) fn millis_in(
        &self,
        var: &'static str,
        default: u64,
        range: std::ops::RangeInclusive<u64>,
    ) -> Result<Duration, ConfigError> {
        Ok(Duration::from_millis(self.parse_in(var, default, range)?))
    }

    /// A set value run through `check`, whose reason names what is wrong; unset is `None`.
    pub(super) fn checked<T>(
        &self,
        var: &'static str,
        check: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<Option<T>, ConfigError> {
        let Some(value) = self.optional(var) else {
            return Ok(None);
        };
        check(&value)
            .map(Some)
            .map_err(|reason| ConfigError { var, value, reason })
    }

    /// A comma-separated list read by `parse_list`; unset is empty.
    pub(super) fn list<T>(
        &self,
        var: &'static str,
        parse_list: impl FnOnce(&str) -> Result<Vec<T>, String>,
    ) -> Result<Vec<T>, ConfigError> {
        Ok(self.checked(var, parse_list)?.unwrap_or_default())
    }

    /// A value with no default: unset is `None`, a set one must parse.
    pub(super) fn parse_opt<T: FromStr>(&self, var: &'static str) -> Result<Option<T>, ConfigError>
    where
        T::Err: fmt::Display,
    {
        self.checked(var, |v| v.parse().map_err(|e: T::Err| e.to_string()))
    }

    /// A secret (see [`check_secret`]); unset is `None`.
    pub(super) fn secret(&self, var: &'static str) -> Result<Option<String>, ConfigError> {
        self.optional(var)
            .map(|value| check_secret(var, value))
            .transpose()
    }

    /// One of a few words, each standing for a value; unset is `default`.
    pub(super) fn choice<T: Copy>(
        &self,
        var: &'static str,
        words: &[(&str, T)],
        default: T,
    ) -> Result<T, ConfigError> {
        Ok(self.choice_opt(var, words)?.unwrap_or(default))
    }

    /// One of a few words, each standing for a value; unset is `None`.
    pub(super) fn choice_opt<T: Copy>(
        &self,
        var: &'static str,
        words: &[(&str, T)],
    ) -> Result<Option<T>, ConfigError> {
        self.checked(var, |v| {
            words
                .iter()
                .find(|(word, _)| *word == v)
                .map(|(_, value)| *value)
                .ok_or_else(|| {
                    let names: Vec<String> = words.iter().map(|(w, _)| format!("`{w}`")).collect();
                    format!("expected {}", names.join(" or "))
                })
        })
    }

    /// A value sent as an HTTP header as it is (see [`check_header_value`]).
    pub(super) fn header_value(
        &self,
        var: &'static str,
        default: &str,
    ) -> Result<String, ConfigError> {
        check_header_value(var, self.string(var, default))
    }

    pub(super) fn bool(&self, var: &'static str, default: bool) -> Result<bool, ConfigError> {
        match self.optional(var) {
            None => Ok(default),
            Some(value) => match value.to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => Ok(true),
                "0" | "false" | "no" | "off" => Ok(false),
                _ => Err(ConfigError {
                    var,
                    value,
                    reason: "expected true or false".into(),
                }),
            },
        }
    }
}
