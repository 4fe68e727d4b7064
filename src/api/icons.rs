//! `GET /icons/{domain}` (and `HEAD`): the icon itself, for `<img src>`. Parses the request,
//! asks the icons core ([`crate::icons`]) and maps its answer to HTTP; every answer, errors
//! included, carries `nosniff` and a CSP that forbids script, since a stored SVG is the
//! site's markup served from this origin.

use super::AppState;
use super::auth::client_ip;
use crate::auth::Caller;
use crate::error::{AppError, Code, ErrorBody};
use crate::icons::{IconAnswer, Variant, parse_request};
use crate::model::{IconRefresh, icon_path};
use axum::Extension;
use axum::Json;
use axum::Router;
use axum::extract::{ConnectInfo, Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use std::net::SocketAddr;

/// The CSP of every icon answer: nothing may load or run; inline styles are allowed because
/// icon SVGs use them to draw. A stored SVG opened as a page is a document of this origin,
/// so it is also sandboxed (an opaque origin, no scripts, forms, popups or top navigation;
/// `navigate-to` is not implemented by browsers, the sandbox is what stops navigation) and
/// may post no form anywhere: a site's "paste your API key" form drawn from `/icons/` sends
/// nothing. One policy for every answer, images and errors alike, so no answer is missed.
const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; form-action 'none'; sandbox";
/// How long a client may keep a fallback: the domain may gain an icon soon.
const FALLBACK_CACHE_CONTROL: &str = "public, max-age=300";

/// The `/icons` routes.
pub fn router() -> Router<AppState> {
    // `get` answers HEAD too, with the same headers and no body.
    Router::new()
        .route(&icon_path("{domain}"), get(icon))
        .route(&refresh_path(), post(refresh))
}

/// The refresh route, under the icon's own path.
pub(crate) fn refresh_path() -> String {
    format!("{}/refresh", icon_path("{domain}"))
}

#[utoipa::path(
    post,
    path = refresh_path(),
    tag = "icons",
    summary = "Look a domain's icon up again now",
    description = "Runs the finder for the domain now, whatever the cache holds, and answers its outcome. A lookup already in flight for the domain (`?find=1`, another refresh, a stale icon's re-find) is shared. Admitted like `?find=1` (the `submit` scope; counted as a one-domain job against the client's hourly allowance) and limited to `ICON_REFRESH_PER_MINUTE` per client (or address without a key). What `GET /icons/{domain}` serves changes only with a decisive outcome: a transient failure (`timeout`, `connect`, ...) is answered as it is and the stored icon stays served (`changed: false`, `served` its SHA-256).",
    params(
        ("domain" = String, Path, description = "A domain name, as jobs take it"),
    ),
    request_body(
        content = Option<Object>,
        content_type = "application/json",
        description = "Empty or `{}`. The Content-Type must say application/json all the same, as for every POST, so that a cross-site HTML form cannot start a lookup",
    ),
    security((), ("api_key" = [])),
    responses(
        (status = 200, description = "The lookup's outcome and what is served now", body = IconRefresh),
        (status = 415, description = "No `Content-Type: application/json`", body = ErrorBody),
        (status = 400, description = "A bad domain (`INVALID_INPUT`)", body = ErrorBody),
        (status = 401, description = "A key is required and none was sent", body = ErrorBody),
        (status = 403, description = "The key lacks the `submit` scope (`FORBIDDEN`)", body = ErrorBody),
        (status = 429, description = "Over `ICON_REFRESH_PER_MINUTE` or the client's hourly allowance; see `Retry-After`", body = ErrorBody),
    )
)]
/// `POST /icons/{domain}/refresh`.
pub(crate) async fn refresh(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(domain): Path<String>,
    headers: HeaderMap,
) -> Result<Json<IconRefresh>, AppError> {
    let caller = caller.map(|Extension(caller)| caller);
    let source_ip = client_ip(&headers, peer.ip(), &state.config.trusted_proxy_headers);
    let request = parse_request(&domain, &[], None)?;
    let answer = state
        .icons
        .refresh(caller.as_ref(), Some(source_ip), &request.domain)
        .await?;
    Ok(Json(answer))
}

/// The query of `/icons/{domain}`, as OpenAPI shows it; [`parse_request`] reads the raw pairs
/// so that an unknown parameter (a cache buster) is ignored rather than refused.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(crate) struct IconQuery {
    /// Resize to this many pixels square (1 to 256); raster and SVG icons alike.
    #[param(minimum = 1, maximum = 256)]
    size: Option<u32>,
    /// `png` (needs `size`): always a PNG, whatever the stored format.
    #[param(pattern = "^png$")]
    format: Option<String>,
    /// Without a stored icon: `letter` (default) draws the domain's first letter as SVG,
    /// `404` answers 404.
    #[param(pattern = "^(letter|404)$")]
    fallback: Option<String>,
    /// `1`: a domain never seen is queued for finding (rate-limited per client).
    #[param(pattern = "^(0|1|true|false)$")]
    find: Option<String>,
    /// `dark`: the icon the site declares for `prefers-color-scheme: dark`; a site without
    /// one gets its default icon with `X-Icon-Theme-Fallback: default`. `light`: the default.
    #[param(pattern = "^(dark|light)$")]
    theme: Option<String>,
    /// One exact stored version of the domain's icon (its SHA-256, as results and refreshes
    /// name it), served with an immutable `Cache-Control`; a version no fetch of the domain
    /// (that the caller may read) names gets the fallback.
    #[param(pattern = "^[0-9a-f]{64}$")]
    sha: Option<String>,
}

#[utoipa::path(
    get,
    path = icon_path("{domain}"),
    tag = "icons",
    summary = "A domain's icon, for `<img src>`",
    description = "The icon of the domain's newest decisive fetch (a success whose icon was kept, or a permanent failure, which answers the fallback; a transient failure never replaces a good icon), its bytes as verified, with an `ETag` (their SHA-256); `HEAD` answers the same headers. A fetch older than `ICON_REFRESH_AFTER_SECS` is served at once and one background re-find starts (paid by the caller's client, else the on-demand client; none when over the allowance). Every answer carries `X-Content-Type-Options: nosniff` and a CSP that forbids script and forms and sandboxes the document. With `ICONS_PUBLIC=true` no key is needed; with `false`, a key with `read` reads the icons its own client found (an admin key every client's), and any other domain is answered as one without an icon.",
    params(
        ("domain" = String, Path, description = "A domain name, as jobs take it (`example.com`, `bücher.de`)"),
        IconQuery,
        ("If-None-Match" = Option<String>, Header, description = "The `ETag` held: 304 when it is still current"),
    ),
    security((), ("api_key" = [])),
    responses(
        (status = 200, description = "The icon (its own MIME type), or with `fallback=letter` a letter drawn as SVG (`X-Icon-Fallback: letter`). `Cache-Control` is `ICON_CACHE_CONTROL` with `stale-while-revalidate=<ICON_REFRESH_AFTER_SECS>` (with `sha=`: immutable). With `theme=dark` and no dark variant, the default icon with `X-Icon-Theme-Fallback: default`", content_type = "image/*", body = Vec<u8>),
        (status = 304, description = "`If-None-Match` names the current `ETag`"),
        (status = 400, description = "A bad domain or parameter (`INVALID_INPUT`)", body = ErrorBody),
        (status = 401, description = "A key is required (`ICONS_PUBLIC=false`) and none was sent", body = ErrorBody),
        (status = 403, description = "`find=1` without a key from a page of another site (`Sec-Fetch-Site: cross-site` or `same-site`): a lookup is not started for it (`FORBIDDEN`)", body = ErrorBody),
        (status = 404, description = "No stored icon and `fallback=404`", body = ErrorBody),
        (status = 422, description = "The stored icon cannot be resized within the limits, or an SVG is too complex to draw (`ICON_UNDECODABLE`); remembered for 10 minutes per icon and size", body = ErrorBody),
        (status = 429, description = "Over the client's rate of finds, or over its render time for resizing (`ICON_RENDER_MS_PER_MINUTE`); see `Retry-After`", body = ErrorBody),
    )
)]
/// The caller is absent where keys are required and none was sent: the door lets such a
/// request through to here, since `ICONS_PUBLIC=true` serves stored icons without a key
/// (`<img>` tags cannot send headers); the icons core decides.
pub(crate) async fn icon(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(domain): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let caller = caller.map(|Extension(caller)| caller);
    let source_ip = client_ip(&headers, peer.ip(), &state.config.trusted_proxy_headers);
    let mut response = match answer(
        &state,
        caller.as_ref(),
        source_ip,
        &domain,
        query.as_deref(),
        &headers,
    )
    .await
    {
        Ok(response) => response,
        Err(error) => error.into_response(),
    };
    let h = response.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    response
}

/// Whether a browser says the request comes from a page of another site (Fetch Metadata):
/// an `<img>` there must not make this service fetch anything. Clients that are not browsers
/// send no such header.
fn from_another_site(headers: &HeaderMap) -> bool {
    headers
        .get("sec-fetch-site")
        .is_some_and(|site| matches!(site.as_bytes(), b"cross-site" | b"same-site"))
}

/// Marks the default icon served for `theme=dark` (the site declares no dark variant).
fn with_variant(mut response: Response, variant: Variant) -> Response {
    if variant.theme_fallback {
        response
            .headers_mut()
            .insert("x-icon-theme-fallback", HeaderValue::from_static("default"));
    }
    response
}

async fn answer(
    state: &AppState,
    caller: Option<&Caller>,
    source_ip: std::net::IpAddr,
    domain: &str,
    query: Option<&str>,
    headers: &HeaderMap,
) -> Result<Response, AppError> {
    let query: Vec<(String, String)> = url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .into_owned()
        .collect();
    let if_none_match = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let request = parse_request(domain, &query, if_none_match)?;
    if request.lookup && !matches!(caller, Some(Caller::Key(_))) && from_another_site(headers) {
        return Err(AppError::Forbidden {
            code: Code::Forbidden,
            message: "find=1 starts a lookup, which a page of another site may not do without \
                      a key (Sec-Fetch-Site); leave find out to read the stored icon"
                .into(),
        });
    }
    let settings = state.icons.settings();
    Ok(
        match state
            .icons
            .answer(caller, Some(source_ip), &request)
            .await?
        {
            IconAnswer::Image {
                mime,
                etag,
                bytes,
                variant,
            } => with_variant(
                (
                    [
                        (header::CONTENT_TYPE, mime),
                        (header::ETAG, etag),
                        (header::CACHE_CONTROL, settings.cache_control_for(variant)),
                    ],
                    bytes,
                )
                    .into_response(),
                variant,
            ),
            IconAnswer::NotModified { etag, variant } => with_variant(
                (
                    StatusCode::NOT_MODIFIED,
                    [
                        (header::ETAG, etag),
                        (header::CACHE_CONTROL, settings.cache_control_for(variant)),
                    ],
                )
                    .into_response(),
                variant,
            ),
            IconAnswer::Letter { svg } => (
                [
                    (header::CONTENT_TYPE, "image/svg+xml"),
                    (header::CACHE_CONTROL, FALLBACK_CACHE_CONTROL),
                    (header::HeaderName::from_static("x-icon-fallback"), "letter"),
                ],
                svg,
            )
                .into_response(),
            IconAnswer::Missing { message } => {
                let mut response = AppError::NotFound(message).into_response();
                let h = response.headers_mut();
                // The header says a fallback was chosen (here, none), so a client can tell a
                // missing icon from a wrong URL either way.
                h.insert("x-icon-fallback", HeaderValue::from_static("letter"));
                h.insert(
                    header::CACHE_CONTROL,
                    HeaderValue::from_static(FALLBACK_CACHE_CONTROL),
                );
                response
            }
        },
    )
}
