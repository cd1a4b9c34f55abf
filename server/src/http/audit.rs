//! `GET /api/v1/audit`: the audit trail for admins, oldest first, streamed as JSON Lines (one entry a line, every
//! field, hashes in hex) so a trail of any length is sent a page at a time. Filters: `actor`, `action`, and `from`/`to`
//! (dates, UTC, `to` exclusive) as the rest of the API.

use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures_util::StreamExt;
use tokio::sync::{mpsc, oneshot};

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
    let (started, allowed) = oneshot::channel();
    let (lines, body) = mpsc::channel::<Result<Bytes, std::io::Error>>(IN_FLIGHT);
    let usecases = state.usecases.clone();
    tokio::spawn(async move {
        let mut entries = match usecases.audit_entries(&principal, filter).await {
            Ok(entries) => {
                let _ = started.send(Ok(()));
                entries
            }
            Err(refused) => {
                let _ = started.send(Err(refused));
                return;
            }
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
            if lines.send(line).await.is_err() || failed {
                break;
            }
        }
    });
    allowed.await.map_err(|_| ApiError::from(anyhow::anyhow!("the audit reader stopped before it started")))??;
    Ok((
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(futures_util::stream::unfold(body, |mut body| async move {
            body.recv().await.map(|line| (line, body))
        })),
    )
        .into_response())
}
