//! The dashboard at `/` and its files under `/assets/`: hand-written HTML, CSS and ES modules
//! from `assets/`, embedded at compile time so the binary needs no Node, build step or
//! network. Every answer carries a strict CSP (this origin only) and a strong `ETag`.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};
use std::sync::LazyLock;

use super::AppState;

/// The dashboard's CSP: scripts, styles, images and connections (fetch and WebSocket) from
/// this origin only; `data:` images for the inline SVG placeholders.
pub const DASHBOARD_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; form-action 'none'; frame-ancestors 'none'; \
     base-uri 'none'";

/// One embedded file.
pub struct Asset {
    /// Its path under `/assets/` (or `index.html` for `/`).
    pub path: &'static str,
    /// Its media type.
    pub mime: &'static str,
    /// Its bytes.
    pub bytes: &'static [u8],
}

macro_rules! asset {
    ($path:literal, $mime:expr) => {
        Asset {
            path: $path,
            mime: $mime,
            bytes: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/", $path)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// Every file served under `/assets/`: the dashboard's, the GraphiQL page's and the vendored
/// libraries (assets/vendor/manifest.json says where those come from).
pub static ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("app.css", CSS),
    asset!("js/app.js", JS),
    asset!("js/api.js", JS),
    asset!("js/ws.js", JS),
    asset!("js/dom.js", JS),
    asset!("js/submit.js", JS),
    asset!("js/jobs.js", JS),
    asset!("js/job.js", JS),
    asset!("js/grid.js", JS),
    asset!("js/webhooks.js", JS),
    asset!("js/watches.js", JS),
    asset!("js/graphiql.js", JS),
    asset!("graphiql.css", CSS),
    asset!("graphiql.html", "text/html; charset=utf-8"),
    asset!("vendor/react/react.production.min.js", JS),
    asset!("vendor/react-dom/react-dom.production.min.js", JS),
    asset!("vendor/graphiql/graphiql.min.js", JS),
    asset!("vendor/graphiql/graphiql.min.css", CSS),
];

/// Strong validators, computed once: the files never change while the process runs.
static ETAGS: LazyLock<Vec<HeaderValue>> = LazyLock::new(|| {
    ASSETS
        .iter()
        .map(|a| {
            let digest = Sha256::digest(a.bytes);
            let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
            HeaderValue::from_str(&format!("\"{hex}\"")).unwrap_or(HeaderValue::from_static("\"\""))
        })
        .collect()
});

/// The dashboard routes: `/` and `/assets/{path}`. Authentication lets both through without
/// a key ([`super::auth`]): they are static, and the page asks for a key when it needs one.
pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/",
            get(|headers: HeaderMap| async move { serve("index.html", &headers, DASHBOARD_CSP) }),
        )
        .route(
            "/assets/{*path}",
            get(|Path(path): Path<String>, headers: HeaderMap| async move {
                serve(&path, &headers, DASHBOARD_CSP)
            }),
        )
}

/// Answers embedded file `path` with `csp`, or 304 when the client's copy is current.
pub fn serve(path: &str, headers: &HeaderMap, csp: &'static str) -> Response {
    let Some(index) = ASSETS.iter().position(|a| a.path == path) else {
        return crate::error::AppError::NotFound(format!("no asset {path:?}")).into_response();
    };
    let asset = &ASSETS[index];
    let etag = ETAGS[index].clone();
    let fresh = headers.get(header::IF_NONE_MATCH).is_some_and(|sent| {
        sent.as_bytes()
            .split(|b| *b == b',')
            .any(|t| t.trim_ascii() == etag.as_bytes())
    });
    let common = [
        (header::ETAG, etag),
        // Names carry no hash, so a client revalidates each time; the 304 is cheap.
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(csp),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
    ];
    if fresh {
        return (StatusCode::NOT_MODIFIED, common).into_response();
    }
    (
        common,
        [(header::CONTENT_TYPE, HeaderValue::from_static(asset.mime))],
        asset.bytes,
    )
        .into_response()
}
