//! `GET /api/v1/audit`: the audit trail for admins, oldest first, streamed as JSON Lines (one entry a line, every
//! field, hashes in hex) so a trail of any length is sent a page at a time. Filters: `actor`, `action`, and `from`/`to`
//! (dates, UTC, `to` exclusive) as the rest of the API.

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures_util::StreamExt;

use super::error::ApiError;
use super::query::ApiQuery;
use super::Caller;
use crate::app::AppState;
use crate::audit::AuditFilter;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/audit", get(audit_trail))
}

/// How many encoded entries may wait for a slow client before reading the next page waits too.
const IN_FLIGHT: usize = 256;

/// The audit trail, oldest first, as JSON Lines (one entry a line; docs/audit.md lists the fields). Admins only.
#[utoipa::path(get, path = "/api/v1/audit", tag = "audit",
    params(("actor" = Option<String>, Query), ("action" = Option<String>, Query), super::openapi::Days),
    responses((status = 200, description = "One JSON object a line", content_type = "application/x-ndjson", body = String),
        super::openapi::Refusals))]
pub(crate) async fn audit_trail(
    State(state): State<AppState>,
    Caller(principal): Caller,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let query = ApiQuery::parse(query.as_deref(), &["actor", "action", "from", "to"])?;
    let midnight = |date: time::Date| date.midnight().assume_utc();
    let filter = AuditFilter {
        actor: query.actor,
        action: query.action,
        since: query.days.from.map(midnight),
        until: query.days.to.map(midnight),
        ..AuditFilter::default()
    };
    // The stream borrows the use cases, so it is read in a task of its own that owns them; the check and the
    // trail's own entry for this read come back first, so a refusal is a status, not a broken stream.
    let usecases = state.usecases.clone();
    let body = super::stream::spawn(IN_FLIGHT, move |started, lines| async move {
        let mut entries = match usecases.audit_entries(&principal, filter).await {
            Ok(entries) => {
                started.begin();
                entries
            }
            Err(refused) => return started.refuse(refused),
        };
        while let Some(entry) = entries.next().await {
            let line = entry.and_then(|entry| {
                let mut line = serde_json::to_vec(&entry.to_json())?;
                line.push(b'\n');
                Ok(Bytes::from(line))
            });
            let failed = line.is_err();
            let line = line.map_err(|error| {
                tracing::error!(error = format!("{error:#}"), "cannot read the audit trail; the stream is cut short");
                std::io::Error::other("the audit trail could not be read to its end")
            });
            if !lines.send(line).await || failed {
                break;
            }
        }
    })
    .await
    .map_err(ApiError::from)?;
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response())
}
