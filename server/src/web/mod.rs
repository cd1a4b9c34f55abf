//! The web pages (docs/web.md): one more adapter of the one door. A page handler parses the form or query, calls a
//! `UseCases` method with the signed-in `Principal`, and renders an askama template (`server/templates/`, checked at
//! compile time). It never reaches the store (`tests/it/one_door.rs` reads this directory too).
//!
//! No page needs JavaScript, and none is sent: the Content-Security-Policy allows no script at all.
//!
//! # Layout
//! - `mod.rs`: the router, the security headers every page carries, the HTML answer for an unknown page.
//! - `session`: the session cookie, the `Signed` extractor (cookie → `SignedIn`), forms (read within 64 KiB, checked
//!   for their origin and their CSRF token), where to return after signing in.
//! - `page`: what every page shares (`Shell`: the title, the person in the header, the navigation; `FormErrors`) and
//!   the error pages (`PageError`).
//! - `sign_in`: signing in (a password, or the organisation's identity provider), signing out, setting a password.
//! - `home`: the home page and the accessibility statement.
//! - `priorities`: the analyst's home (the priorities table for a period) and its CSV download.
//! - `areas`: one area: its trend by category over months (a chart and a table), its priorities, its latest
//!   insights.
//! - `insights`: the insights, filtered, searched and paged; one insight with its place, history and triage form.
//! - `exports`: the insights filter and a download in each format.
//! - `filter`: the analysts' GET forms (a period; the insights filter, read as the API reads it).
//! - `table`: one table value for a page and its CSV download (`templates/table.html` draws them all).
//! - `chart`: pictures drawn on the server as SVG: a line chart, an area's map with a point.
//! - `people`: people, their roles and scopes, and API tokens (admins).
//! - `audit`: the audit trail, filtered and paged, and its CSV download (admins).
//! - `assets`: the one stylesheet, served under its content hash.

mod areas;
mod assets;
mod audit;
mod chart;
mod exports;
mod filter;
mod home;
mod insights;
mod page;
mod people;
mod priorities;
mod session;
mod sign_in;
mod table;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;

use crate::app::{AppState, WebConfig};

/// What a page may load: its own stylesheet and images, no script at all, never inside another site's frame.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'none'; style-src 'self'; img-src 'self' data:; \
                                       frame-ancestors 'none'; form-action 'self'; base-uri 'none'";

/// Two years, the preload lists' minimum.
const STRICT_TRANSPORT_SECURITY: &str = "max-age=63072000; includeSubDomains";

/// Every page, each answered with the security headers.
pub fn router(web: &WebConfig) -> Router<AppState> {
    if !web.https() {
        tracing::warn!(
            "the web pages are served over plain http: the session cookie is not Secure; give --public-url https://… \
             or --behind-tls-proxy when browsers reach this server over https"
        );
    }
    let https = web.https();
    Router::new()
        .merge(sign_in::router())
        .merge(home::router())
        .merge(people::router())
        .merge(audit::router())
        .merge(priorities::router())
        .merge(areas::router())
        .merge(insights::router())
        .merge(exports::router())
        .merge(assets::router())
        .layer(axum::middleware::map_response(move |mut response: Response| async move {
            add_security_headers(&mut response, https);
            response
        }))
}

/// The headers every web response carries. Pages are not stored by caches or the browser's history (they may show
/// a one-time link or token); the stylesheet sets its own long cache.
fn add_security_headers(response: &mut Response, https: bool) {
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if https {
        headers.insert(header::STRICT_TRANSPORT_SECURITY, HeaderValue::from_static(STRICT_TRANSPORT_SECURITY));
    }
    headers.entry(header::CACHE_CONTROL).or_insert(HeaderValue::from_static("no-store"));
}

/// What the server answers for a path no route has: a page for a browser asking for one outside the API and the
/// sync endpoint, and the API's `{code, message}` for everyone else.
pub async fn no_such_route(State(state): State<AppState>, request: Request) -> Response {
    if wants_a_page(&request) {
        let mut response = page::PageError::not_found().into_response();
        add_security_headers(&mut response, state.config.web.https());
        return response;
    }
    crate::http::error::no_such_route(request.uri().clone()).await.into_response()
}

/// A browser's navigation: a GET (or HEAD) that accepts HTML, for a path that is not the API's or the sync
/// endpoint's.
fn wants_a_page(request: &Request) -> bool {
    let path = request.uri().path();
    let machine_path = ["/api", "/sync"]
        .iter()
        .any(|prefix| path.strip_prefix(prefix).is_some_and(|rest| rest.is_empty() || rest.starts_with('/')));
    let accepts_html = request
        .headers()
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .any(|value| value.contains("text/html"));
    matches!(*request.method(), Method::GET | Method::HEAD) && !machine_path && accepts_html
}

/// A `303 See Other` to `location` (after a form, the browser GETs it).
fn see_other(location: &str) -> Response {
    match HeaderValue::try_from(location) {
        Ok(location) => (StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response(),
        Err(_) => page::PageError::internal(anyhow::anyhow!("a redirect to an unwritable location")).into_response(),
    }
}
