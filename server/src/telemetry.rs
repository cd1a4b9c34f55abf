//! What the server says about itself: the log (plain or JSON lines), a request id on every request and connection,
//! and one line per HTTP request naming its matched route, never its URI (a `/sync?token=…` query holds a secret).

use std::fmt;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use clap::ValueEnum;
use tracing::Instrument;

/// The header a request id comes in and goes out in.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The longest incoming request id taken as it is; a longer one is replaced by a new id.
const MAX_REQUEST_ID_LEN: usize = 64;

/// The route recorded for a request that matched none (a 404), so an unknown path never reaches the log or a metric
/// label (a scanner's paths would otherwise make a label per path).
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// One request's id: taken from a sane incoming `X-Request-Id` (a proxy's, so its log and ours join up), otherwise
/// made here. It is in the request's span (so in every log line the request causes, the sync connection's included),
/// in the response's `X-Request-Id`, and in the request's extensions for handlers (the audit trail) to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(String);

impl RequestId {
    /// A new random id (a UUID's 32 hex digits).
    #[must_use]
    pub fn new() -> Self {
        RequestId(uuid::Uuid::new_v4().simple().to_string())
    }

    /// The incoming header's id if it is sane (1 to 64 of `A-Z a-z 0-9 - _ . : /`), otherwise a new one: nothing a
    /// client sends reaches the log unless it is plainly an id.
    #[must_use]
    pub fn from_headers(headers: &HeaderMap) -> Self {
        headers
            .get(REQUEST_ID_HEADER)
            .and_then(|value| value.to_str().ok())
            .filter(|id| is_sane_request_id(id))
            .map_or_else(RequestId::new, |id| RequestId(id.to_owned()))
    }

    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for RequestId {
    fn default() -> Self {
        RequestId::new()
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

fn is_sane_request_id(id: &str) -> bool {
    (1..=MAX_REQUEST_ID_LEN).contains(&id.len())
        && id.bytes().all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b':' | b'/'))
}

/// The middleware around every route: gives the request its id and span, counts it, logs its outcome at debug
/// (a server error at error) with the method, matched route, status and latency, and returns the id in
/// `X-Request-Id`. It records no URI, query or header: those can hold tokens and invitation codes.
pub async fn observe_request(mut request: Request, next: Next) -> Response {
    let request_id = RequestId::from_headers(request.headers());
    request.extensions_mut().insert(request_id.clone());
    let route = request.extensions().get::<MatchedPath>().map_or(UNMATCHED_ROUTE, MatchedPath::as_str).to_owned();
    let method = request.method().clone();
    let span = tracing::info_span!("request", request_id = %request_id, %method, %route);
    let started = Instant::now();
    let mut response = next.run(request).instrument(span.clone()).await;
    let latency = started.elapsed();
    let status = response.status();
    crate::metrics::http_request_answered(method.as_str(), &route, status.as_u16(), latency);
    span.in_scope(|| {
        let latency_ms = latency.as_secs_f64() * 1e3;
        if status.is_server_error() {
            tracing::error!(status = status.as_u16(), latency_ms, "answered with a server error");
        } else {
            tracing::debug!(status = status.as_u16(), latency_ms, "answered");
        }
    });
    if let Ok(value) = HeaderValue::from_str(request_id.as_str()) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    response
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Lines for people (coloured on a terminal).
    #[default]
    Text,
    /// One JSON object a line, with the span fields (the request id among them), for log shippers.
    Json,
}

/// Installs the process's log subscriber: `RUST_LOG` (default `info,sqlx=warn`) to standard error, as text or JSON.
pub fn init_logging(format: LogFormat) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder.json().with_current_span(true).with_span_list(true).init(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(request_id: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(REQUEST_ID_HEADER, HeaderValue::from_str(request_id).unwrap());
        headers
    }

    #[test]
    fn a_sane_incoming_request_id_is_kept_and_anything_else_replaced() {
        assert_eq!(RequestId::from_headers(&headers("lb-4f1c:92/a.b_c")).as_str(), "lb-4f1c:92/a.b_c");
        for insane in ["", "has space", "quote\"", "x".repeat(65).as_str(), "\u{1b}[31m"] {
            let Ok(value) = HeaderValue::from_str(insane) else { continue };
            let mut map = HeaderMap::new();
            map.insert(REQUEST_ID_HEADER, value);
            let id = RequestId::from_headers(&map);
            assert_ne!(id.as_str(), insane);
            assert_eq!(id.as_str().len(), 32, "a new id replaces {insane:?}");
        }
        let made = RequestId::from_headers(&HeaderMap::new());
        assert!(made.as_str().bytes().all(|byte| byte.is_ascii_hexdigit()));
        assert_ne!(made, RequestId::from_headers(&HeaderMap::new()), "each request gets its own");
    }
}
