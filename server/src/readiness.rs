//! `GET /readyz`: whether this node should be sent traffic. `/healthz` says only that the process answers; `/readyz`
//! checks what serving needs (the database answers, the boundaries are loaded, the schema is the one this build
//! knows, the node is not shutting down) and names each check, so a load balancer drains a node that is not ready
//! and an operator sees why.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use crate::app::AppState;

/// How long the database check waits: a readiness probe must answer even when the database does not.
const DATABASE_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

pub fn router() -> Router<AppState> {
    Router::new().route("/readyz", get(readyz))
}

/// The answer: `ready` is true only when every check passed.
#[derive(Debug, Serialize)]
struct Readiness {
    ready: bool,
    checks: Vec<Check>,
}

#[derive(Debug, Serialize)]
struct Check {
    name: &'static str,
    ok: bool,
    detail: String,
}

impl Check {
    fn new(name: &'static str, outcome: Result<String, String>) -> Check {
        match outcome {
            Ok(detail) => Check { name, ok: true, detail },
            Err(detail) => Check { name, ok: false, detail },
        }
    }
}

async fn readyz(State(state): State<AppState>) -> Response {
    let schema = tokio::time::timeout(DATABASE_CHECK_TIMEOUT, state.store.schema_version()).await;
    let known = state.store.latest_migration();
    let (database, migrations) = match schema {
        Err(_) => {
            let timed_out = format!("no answer within {DATABASE_CHECK_TIMEOUT:?}");
            (Err(timed_out), Err("unknown: the database did not answer".to_owned()))
        }
        Ok(Err(error)) => {
            // The detail goes to the log; the probe's body says only which check failed.
            tracing::warn!(error = format!("{error:#}"), "readiness: the database did not answer");
            (Err("the database did not answer (see the server log)".to_owned()), Err("unknown".to_owned()))
        }
        Ok(Ok(applied)) if applied == known => (Ok("answered".to_owned()), Ok(format!("at migration {applied}"))),
        Ok(Ok(applied)) => (
            Ok("answered".to_owned()),
            Err(format!("the database is at migration {applied}, this server knows up to {known}")),
        ),
    };
    let atlas = state.atlas.get();
    let filing = atlas.filing();
    let n_areas = filing.boundaries.areas().len();
    let boundaries = if n_areas > 0 {
        Ok(format!(
            "{} generation {} ({n_areas} areas; {} generations loaded)",
            filing.info.set_name,
            filing.info.generation,
            atlas.generations().len()
        ))
    } else {
        Err(format!("{} generation {} has no areas", filing.info.set_name, filing.info.generation))
    };
    let accepting =
        if state.shutdown.is_cancelled() { Err("shutting down".to_owned()) } else { Ok("accepting".to_owned()) };
    let checks = vec![
        Check::new("database", database),
        Check::new("migrations", migrations),
        Check::new("boundaries", boundaries),
        Check::new("accepting", accepting),
    ];
    let ready = checks.iter().all(|check| check.ok);
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(Readiness { ready, checks })).into_response()
}
