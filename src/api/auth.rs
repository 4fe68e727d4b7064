//! Authentication at the door: every request to the API passes [`authenticate`], which turns
//! `Authorization: Bearer <key>` (or a signed download link) into a [`Caller`] in the
//! request's extensions. Handlers and resolvers read it; nothing here writes anything but a
//! key's throttled `last_used_at`.
//!
//! - `AUTH_MODE=required`: no key (or a bad one) is a 401 `UNAUTHORIZED` in the error shape
//!   of the API called. WebSocket upgrades may come without a header, since browsers cannot
//!   set one: their key is checked at `connection_init` instead ([`connection_caller`]).
//! - `AUTH_MODE=off`: no key acts as [`Caller::Anonymous`], as before keys existed; a key
//!   that is sent is still checked, so a client that believes it is authenticated learns
//!   otherwise.
//!
//! Probes (`/healthz`, `/readyz`) need nothing; `/metrics` has its own guard
//! ([`metrics_guard`]). Keys never appear in a log line or an error message; key ids may.

use super::{AppState, error_response, is_graphql};
use crate::auth::signed::download_job;
use crate::auth::{Caller, secrets_equal};
use crate::config::{AuthMode, ProxyHeader};
use crate::error::{AppError, Code};
use crate::model::ICONS_PREFIX;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::net::IpAddr;

/// Close code of graphql-transport-ws for a `connection_init` the server refuses ("4403:
/// Forbidden" in the protocol); the legacy `graphql-ws` answers `connection_error` instead.
pub const CLOSE_FORBIDDEN: u16 = 4403;

/// What an `Authorization` header held.
enum Bearer<'a> {
    Missing,
    Malformed,
    Key(&'a str),
}

fn bearer(headers: &HeaderMap) -> Bearer<'_> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Bearer::Missing;
    };
    let Ok(value) = value.to_str() else {
        return Bearer::Malformed;
    };
    match value.split_once(' ') {
        Some((scheme, key)) if scheme.eq_ignore_ascii_case("bearer") && !key.trim().is_empty() => {
            Bearer::Key(key.trim())
        }
        _ => Bearer::Malformed,
    }
}

fn unauthorized(message: &str) -> AppError {
    AppError::Unauthorized(message.to_owned())
}

const MISSING_KEY: &str = "an API key is required: send Authorization: Bearer <key>";
const BAD_KEY: &str = "the API key is not valid (unknown, malformed or revoked)";
const MALFORMED_HEADER: &str = "the Authorization header must be `Bearer <key>`";

/// Whether the request asks to become a WebSocket.
fn is_websocket_upgrade(request: &Request) -> bool {
    request.method() == Method::GET
        && request
            .headers()
            .get(header::UPGRADE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// A download link's `expires` and `sig`, when the query has a `sig`.
fn link_params(request: &Request) -> Option<(Option<String>, String)> {
    let query = request.uri().query()?;
    let mut expires = None;
    let mut sig = None;
    for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
        match &*name {
            "expires" => expires = Some(value.into_owned()),
            "sig" => sig = Some(value.into_owned()),
            _ => {}
        }
    }
    Some((expires, sig?))
}

/// The middleware: resolves the caller, or answers 401/403 before any handler runs.
pub async fn authenticate(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    if let Err(refused) = check_host(&state, request.headers()) {
        return refused.into_response();
    }
    let graphql = is_graphql(&request);
    let path = request.uri().path();
    // The dashboard's files and the API's description are static and public; the page asks
    // for a key when it needs one.
    if matches!(
        path,
        "/healthz" | "/readyz" | "/metrics" | "/" | "/openapi.json"
    ) || path.starts_with("/assets/")
    {
        return next.run(request).await;
    }
    let upgrade = is_websocket_upgrade(&request);
    if upgrade && let Err(refused) = check_origin(&state, request.headers()) {
        return refused.into_response();
    }
    // A signed link stands in for a key, for its one job's CSV.
    if let Some(job_id) = download_job(path)
        && let Some((expires, sig)) = link_params(&request)
    {
        let now = chrono::Utc::now();
        return match state
            .accounts
            .signer()
            .verify(job_id, expires.as_deref(), Some(&sig), now)
        {
            Ok(()) => {
                request.extensions_mut().insert(Caller::Link { job_id });
                next.run(request).await
            }
            Err(refused) => refused.into_response(),
        };
    }
    let caller = match bearer(request.headers()) {
        Bearer::Key(key) => match state.accounts.authenticate(key).await {
            Ok(Some(key)) => {
                tracing::debug!(key_id = %key.key_id, client = %key.client_id, "authenticated");
                Some(Caller::Key(key))
            }
            Ok(None) => return error_response(graphql, unauthorized(BAD_KEY)),
            Err(e) => return error_response(graphql, e),
        },
        Bearer::Malformed => return error_response(graphql, unauthorized(MALFORMED_HEADER)),
        Bearer::Missing => match state.config.auth_mode {
            AuthMode::Off => Some(Caller::Anonymous),
            // Browsers cannot set headers on a WebSocket: the key comes in `connection_init`.
            AuthMode::Required if upgrade => None,
            // The GraphiQL page is static; the queries it sends carry the key.
            AuthMode::Required if graphql.is_some() && request.method() == Method::GET => None,
            // Stored icons may be public (`ICONS_PUBLIC`), and `<img>` cannot send a key: the
            // icons core refuses what needs one.
            AuthMode::Required if path.starts_with(ICONS_PREFIX) => None,
            AuthMode::Required => return error_response(graphql, unauthorized(MISSING_KEY)),
        },
    };
    if let Some(caller) = caller {
        request.extensions_mut().insert(caller);
    }
    next.run(request).await
}

/// A WebSocket upgrade from a browser page must come from this service's own origin, or one
/// listed in `CORS_ALLOWED_ORIGINS`: browsers let any page open a WebSocket anywhere, CORS
/// does not apply to them, and the socket would act with whatever the server grants its
/// caller (all of a keyless loopback server). Clients that are not browsers send no `Origin`
/// and are let in.
fn check_origin(state: &AppState, headers: &HeaderMap) -> Result<(), AppError> {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let listed = state
        .config
        .cors_allowed_origins
        .iter()
        .any(|a| a.as_bytes() == origin.as_bytes());
    if listed || same_origin(state, headers, origin.as_bytes()) {
        return Ok(());
    }
    Err(AppError::Forbidden {
        code: Code::Forbidden,
        message: "WebSocket connections from another origin are not allowed; list it in \
                  CORS_ALLOWED_ORIGINS"
            .into(),
    })
}

/// Whether `origin` is this service's own: `PUBLIC_URL`'s origin, or the scheme and the very
/// host and port the request was sent to (`Host`), as a page served from here has.
fn same_origin(state: &AppState, headers: &HeaderMap, origin: &[u8]) -> bool {
    let Ok(origin) = std::str::from_utf8(origin) else {
        return false;
    };
    if let Some(public) = &state.config.public_url
        && url::Url::parse(public).is_ok_and(|u| u.origin().ascii_serialization() == origin)
    {
        return true;
    }
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    // The scheme is not compared: behind a proxy that ends TLS the page is https while the
    // request here is http, and the host and port are what a cross-site page cannot fake.
    origin
        .split_once("://")
        .is_some_and(|(_, authority)| authority.eq_ignore_ascii_case(host))
}

/// The request must be addressed (`Host`) to a name this service answers to, so a web page
/// cannot reach it through a name of its own that it points at this server (DNS rebinding):
/// an IP address, `PUBLIC_URL`'s host, a name in `ALLOWED_HOSTS`, or `localhost`. A request without `Host` (HTTP/1.0) comes from no browser and passes.
fn check_host(state: &AppState, headers: &HeaderMap) -> Result<(), AppError> {
    let Some(value) = headers.get(header::HOST) else {
        return Ok(());
    };
    let Some(host) = value.to_str().ok().map(host_name) else {
        return Err(host_refused("(not text)"));
    };
    let config = &state.config;
    let public = config
        .public_url
        .as_deref()
        .and_then(|u| url::Url::parse(u).ok())
        .and_then(|u| u.host_str().map(str::to_ascii_lowercase));
    // No DNS answer can make a browser send `localhost` (browsers resolve it themselves), so
    // it is safe on any listener: `docker run -p 3000:3000` is reached as localhost.
    let loopback_name = host == "localhost" || host.ends_with(".localhost");
    let allowed = host.parse::<IpAddr>().is_ok()
        || public.as_deref() == Some(host.as_str())
        || loopback_name
        || config.allowed_hosts.iter().any(|a| a == "*" || *a == host);
    if allowed {
        Ok(())
    } else {
        Err(host_refused(&host))
    }
}

/// A `Host` header's name, lowercased, without its port or an IPv6 literal's brackets.
fn host_name(value: &str) -> String {
    let value = value.trim();
    let name = match value.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => value.rsplit_once(':').map_or(value, |(name, port)| {
            if port.bytes().all(|b| b.is_ascii_digit()) {
                name
            } else {
                value
            }
        }),
    };
    // `example.com.` names the same host as `example.com`.
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

fn host_refused(host: &str) -> AppError {
    AppError::Forbidden {
        code: Code::Forbidden,
        message: format!(
            "this server does not answer to the name {host:?}; list it in ALLOWED_HOSTS or \
             set PUBLIC_URL"
        ),
    }
}

/// The caller of a WebSocket at `connection_init`: a key in its payload
/// (`{"Authorization": "Bearer <key>"}` or `{"apiKey": "<key>"}`) wins over the upgrade's
/// header; without either, `AUTH_MODE=off` gives [`Caller::Anonymous`]. The error's message
/// says what was wrong, never the key.
pub async fn connection_caller(
    state: &AppState,
    from_header: Option<Caller>,
    payload: &serde_json::Value,
) -> Result<Caller, AppError> {
    let mut authorization = None;
    let mut api_key = None;
    if let Some(fields) = payload.as_object() {
        for (name, value) in fields {
            if name.eq_ignore_ascii_case("authorization") {
                authorization = Some(value.as_str().unwrap_or_default());
            } else if name == "apiKey" {
                api_key = Some(value.as_str().unwrap_or_default());
            }
        }
    }
    let key = match (authorization, api_key) {
        (Some(value), _) => match value.split_once(' ') {
            Some((scheme, key)) if scheme.eq_ignore_ascii_case("bearer") => Some(key.trim()),
            _ => return Err(unauthorized(MALFORMED_HEADER)),
        },
        (None, Some(key)) => Some(key.trim()),
        (None, None) => None,
    };
    match key {
        Some(key) => match state.accounts.authenticate(key).await? {
            Some(key) => Ok(Caller::Key(key)),
            None => Err(unauthorized(BAD_KEY)),
        },
        None => match (from_header, state.config.auth_mode) {
            (Some(caller), _) => Ok(caller),
            (None, AuthMode::Off) => Ok(Caller::Anonymous),
            (None, AuthMode::Required) => Err(unauthorized(
                "an API key is required: send it in connection_init's payload as {\"Authorization\": \"Bearer <key>\"} or {\"apiKey\": \"<key>\"}",
            )),
        },
    }
}

/// Guards `/metrics`: with `METRICS_TOKEN` set it wants `Authorization: Bearer <token>`
/// (compared in constant time). Without it, the API listener in `AUTH_MODE=required` wants an
/// admin key, so a shared network never reads the metrics for free; an ops listener
/// (`OPS_ADDR`, `WORKER_HTTP_PORT`) is private by where it listens.
pub async fn metrics_guard(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    guard_metrics(&state, request, next, true).await
}

/// [`metrics_guard`] for an ops listener.
pub async fn ops_metrics_guard(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    guard_metrics(&state, request, next, false).await
}

async fn guard_metrics(state: &AppState, request: Request, next: Next, api: bool) -> Response {
    let sent = match bearer(request.headers()) {
        Bearer::Key(key) => Some(key),
        _ => None,
    };
    let allowed = match (&state.config.metrics_token, sent) {
        (Some(token), Some(sent)) => secrets_equal(token.as_bytes(), sent.as_bytes()),
        (Some(_), None) => false,
        (None, _) if !api || state.config.auth_mode == AuthMode::Off => true,
        (None, Some(key)) => match state.accounts.authenticate(key).await {
            Ok(Some(key)) => Caller::Key(key).is_admin(),
            Ok(None) => false,
            Err(e) => return e.into_response(),
        },
        (None, None) => false,
    };
    if allowed {
        next.run(request).await
    } else {
        unauthorized(
            "/metrics needs Authorization: Bearer <METRICS_TOKEN> (or, without METRICS_TOKEN, an admin key)",
        )
        .into_response()
    }
}

/// The client's address for per-address limits: the TCP peer, or, when
/// `TRUSTED_PROXY_HEADERS` names headers our proxy sets, the address the first of them
/// present carries (the last entry of a list: the one our proxy appended; entries before it
/// are whatever the client wrote).
pub fn client_ip(headers: &HeaderMap, peer: IpAddr, trusted: &[ProxyHeader]) -> IpAddr {
    for header in trusted {
        let Some(value) = headers
            .get_all(header.name())
            .iter()
            .filter_map(|v| v.to_str().ok())
            .next_back()
        else {
            continue;
        };
        let last = value.rsplit(',').next().unwrap_or_default().trim();
        let found = match header {
            ProxyHeader::XForwardedFor | ProxyHeader::XRealIp => parse_ip(last),
            ProxyHeader::Forwarded => last
                .split(';')
                .filter_map(|pair| pair.trim().split_once('='))
                .find(|(name, _)| name.trim().eq_ignore_ascii_case("for"))
                .and_then(|(_, value)| parse_ip(value.trim().trim_matches('"'))),
        };
        if let Some(ip) = found {
            return ip;
        }
    }
    peer
}

/// An address as proxies write it: bare, `[v6]`, `[v6]:port` or `v4:port`.
fn parse_ip(value: &str) -> Option<IpAddr> {
    if let Ok(ip) = value.parse() {
        return Some(ip);
    }
    if let Some(rest) = value.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    value.split(':').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, value.parse().unwrap());
        }
        map
    }

    #[test]
    fn the_client_address_comes_from_trusted_headers_only() {
        let peer: IpAddr = "10.0.0.1".parse().unwrap();
        let sent = headers(&[
            ("x-forwarded-for", "6.6.6.6, 203.0.113.7"),
            ("forwarded", "for=\"[2001:db8::1]:4711\";proto=https"),
        ]);
        assert_eq!(client_ip(&sent, peer, &[]), peer);
        assert_eq!(
            client_ip(&sent, peer, &[ProxyHeader::XForwardedFor]),
            "203.0.113.7".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            client_ip(&sent, peer, &[ProxyHeader::Forwarded]),
            "2001:db8::1".parse::<IpAddr>().unwrap()
        );
        assert_eq!(client_ip(&sent, peer, &[ProxyHeader::XRealIp]), peer);
    }

    #[test]
    fn only_bearer_keys_are_read() {
        assert!(matches!(bearer(&headers(&[])), Bearer::Missing));
        assert!(matches!(
            bearer(&headers(&[("authorization", "Bearer ffk_abc")])),
            Bearer::Key("ffk_abc")
        ));
        assert!(matches!(
            bearer(&headers(&[("authorization", "Basic dXNlcg==")])),
            Bearer::Malformed
        ));
        assert!(matches!(
            bearer(&headers(&[("authorization", "Bearer ")])),
            Bearer::Malformed
        ));
    }
}
