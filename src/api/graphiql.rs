//! GraphiQL for a browser's `GET /graphql` (one with no `query`), served offline: our own
//! small page (assets/graphiql.html) loading the vendored React, ReactDOM and GraphiQL builds
//! from `/assets/vendor/` (pinned in assets/vendor/manifest.json), with subscriptions over
//! graphql-transport-ws at `/graphql/ws` through the dashboard's own client
//! (assets/js/ws.js). async-graphql's built-in page loads its code from a public CDN, which a
//! machine without internet cannot reach.

use super::dashboard::serve;
use axum::http::HeaderMap;
use axum::response::Response;

/// The page's CSP: like the dashboard's, with inline styles, which GraphiQL's editor sets,
/// and `data:` fonts from its stylesheet.
pub const GRAPHIQL_CSP: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; \
     connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'";

/// The GraphiQL page (304 when the client's copy is current).
pub fn page(headers: &HeaderMap) -> Response {
    serve("graphiql.html", headers, GRAPHIQL_CSP)
}
