//! `GET /api/v1/priorities`: per area, the categories ranked by volume over a period, with the change against the
//! previous period of equal length, and the top three concerns — the table an analyst pastes into the Police and
//! Crime Plan.

use std::collections::HashMap;

use axum::extract::{RawQuery, State};
use axum::routing::get;
use axum::{Json, Router};
use grapevine_sync_proto::campaign::DEFAULT_CAMPAIGN;
use serde::Serialize;

use super::areas::GenerationRef;
use super::error::ApiError;
use super::query::ApiQuery;
use super::Caller;
use crate::app::AppState;
use crate::store::CategoryCount;

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

/// Each area's count per category (every category, the campaign's or not, so the totals are whole).
struct Counts(HashMap<String, HashMap<String, i64>>);

impl Counts {
    fn of(rows: Vec<CategoryCount>) -> Counts {
        let mut areas: HashMap<String, HashMap<String, i64>> = HashMap::new();
        for row in rows {
            areas.entry(row.area_code).or_default().insert(row.category, row.n);
        }
        Counts(areas)
    }

    fn area(&self, code: &str) -> Option<&HashMap<String, i64>> {
        self.0.get(code)
    }
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
    let (now, before) = (Counts::of(counts.now), Counts::of(counts.before));
    let mut areas: Vec<AreaPriorities> = counts
        .areas
        .iter()
        .filter_map(|area| {
            let (current, previous) = (now.area(&area.code), before.area(&area.code));
            if current.is_none() && previous.is_none() {
                return None;
            }
            let count = |counts: Option<&HashMap<String, i64>>, category: &str| {
                counts.and_then(|counts| counts.get(category)).copied().unwrap_or(0)
            };
            let mut categories: Vec<Ranked> = DEFAULT_CAMPAIGN
                .categories
                .iter()
                .map(|category| {
                    let (total, earlier) = (count(current, category.slug), count(previous, category.slug));
                    #[allow(clippy::cast_precision_loss)] // counts far below 2^52
                    let change_percent =
                        (earlier > 0).then(|| ((total - earlier) as f64 * 1000.0 / earlier as f64).round() / 10.0);
                    Ranked {
                        category: category.slug.to_owned(),
                        label: category.label.to_owned(),
                        total,
                        previous: earlier,
                        change: total - earlier,
                        change_percent,
                    }
                })
                .collect();
            categories.sort_by(|a, b| {
                b.total.cmp(&a.total).then_with(|| b.change.cmp(&a.change)).then(a.category.cmp(&b.category))
            });
            let top_concerns = categories
                .iter()
                .filter(|ranked| ranked.total > 0)
                .take(3)
                .map(|ranked| ranked.category.clone())
                .collect();
            Some(AreaPriorities {
                code: area.code.clone(),
                name: area.name.clone(),
                total: current.map_or(0, |counts| counts.values().sum()),
                previous_total: previous.map_or(0, |counts| counts.values().sum()),
                top_concerns,
                categories,
            })
        })
        .collect();
    areas.sort_by(|a, b| b.total.cmp(&a.total).then_with(|| a.code.cmp(&b.code)));
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
