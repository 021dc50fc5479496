//! `GET /dashboard`: one self-contained page that watches the statistics live.
//!
//! The page (`dashboard.html`) carries its CSS and JavaScript inline and only talks to this
//! service's own routes (`/stats/…`, `/messages`, `/live`), so it works with no outside network.
//! It is compiled into the binary, so it is always the one that matches the API it calls.

use axum::http::header;
use axum::response::IntoResponse;

/// The page, embedded at build time.
const PAGE: &str = include_str!("dashboard.html");

/// Allows only this origin plus the page's own inline script and style: a browser refuses
/// anything else, which proves (and keeps) the page free of CDNs and outside calls.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self' 'unsafe-inline'; \
    style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; \
    base-uri 'none'; form-action 'none'; frame-ancestors 'self'";

/// `GET /dashboard`.
#[utoipa::path(get, path = "/dashboard", tag = "service",
    responses((status = 200, description = "The dashboard page (HTML): messages per second, top words, nicks, rooms and emotes by window and room, the live feed, and nick and room summaries", content_type = "text/html")))]
pub(crate) async fn dashboard() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            // Revalidated on every load, so a new build's page is seen at once.
            (header::CACHE_CONTROL, "no-cache"),
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        PAGE,
    )
}
