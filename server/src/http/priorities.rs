//! `GET /api/v1/priorities`: per area, the categories ranked by volume over a period, with the change against the
//! previous period of equal length, and the top three concerns — the table an analyst pastes into the Police and
//! Crime Plan.

use axum::extract::{RawQuery, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use super::areas::GenerationRef;
use super::error::ApiError;
use super::query::ApiQuery;
use super::Caller;
use crate::app::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/priorities", get(priorities))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Ranked {
    category: String,
    label: String,
    total: i64,
    previous: i64,
    change: i64,
    /// `None` when the previous period had none (a new concern, not an infinite rise).
    change_percent: Option<f64>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct AreaPriorities {
    code: String,
    name: String,
    total: i64,
    previous_total: i64,
    /// The three categories with the most insights this period (fewer if fewer were raised).
    top_concerns: Vec<String>,
    categories: Vec<Ranked>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct PrioritiesResponse {
    boundaries: GenerationRef,
    from: String,
    to: String,
    previous_from: String,
    previous_to: String,
    areas: Vec<AreaPriorities>,
}

/// Per area, the categories ranked by volume, with the change against the period before of equal length.
#[utoipa::path(get, path = "/api/v1/priorities", tag = "roll-ups",
    params(super::openapi::Generation, super::openapi::Days,
        ("area" = Option<String>, Query, description = "One area's code")),
    responses((status = 200, body = PrioritiesResponse), super::openapi::Refusals))]
pub(crate) async fn priorities(
    State(state): State<AppState>,
    Caller(principal): Caller,
    RawQuery(query): RawQuery,
) -> Result<Json<PrioritiesResponse>, ApiError> {
    let query = ApiQuery::parse(query.as_deref(), &["set", "generation", "from", "to", "area"])?;
    let (Some(from), Some(to)) = (query.days.from, query.days.to) else {
        return Err(ApiError::invalid_query("priorities need both from and to, to compare with the period before"));
    };
    // The parser keeps dates where the period before always exists; this is the check that makes that so.
    let previous = query.days.previous().ok_or_else(|| {
        ApiError::invalid_query(format!("from={from}: the period before this one would start before the calendar does"))
    })?;
    let atlas = state.atlas.get();
    let generation = query.generation(&atlas)?;
    let counts = state
        .usecases
        .priority_counts(&principal, &atlas, generation, query.area.as_deref(), query.days, previous)
        .await?;
    let areas = counts
        .ranked()
        .into_iter()
        .map(|ranked| AreaPriorities {
            code: ranked.area.code.clone(),
            name: ranked.area.name.clone(),
            total: ranked.total,
            previous_total: ranked.previous_total,
            top_concerns: ranked.top_concerns().map(|category| category.slug.to_owned()).collect(),
            categories: ranked
                .categories
                .into_iter()
                .map(|category| Ranked {
                    category: category.slug.to_owned(),
                    label: category.label.to_owned(),
                    total: category.total,
                    previous: category.previous,
                    change: category.change,
                    change_percent: category.change_percent,
                })
                .collect(),
        })
        .collect();
    let (previous_from, previous_to) = (previous.from.unwrap_or(from), previous.to.unwrap_or(from));
    Ok(Json(PrioritiesResponse {
        boundaries: GenerationRef::from(generation),
        from: from.to_string(),
        to: to.to_string(),
        previous_from: previous_from.to_string(),
        previous_to: previous_to.to_string(),
        areas,
    }))
}
