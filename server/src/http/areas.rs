//! `GET /api/v1/areas` and `GET /api/v1/areas/{code}`: the neighbourhood roll-ups on any boundary generation, read
//! from the maintained roll-up cells, never by scanning insights (docs/geotagging.md).

use std::collections::BTreeMap;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::routing::get;
use axum::{Json, Router};
use grapevine_sync_proto::campaign::DEFAULT_CAMPAIGN;
use grapevine_sync_proto::Channel;
use serde::Serialize;

use super::error::ApiError;
use super::query::ApiQuery;
use super::Caller;
use crate::app::AppState;
use crate::geo::atlas::Generation;
use crate::store::Sums;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/areas", get(list_areas)).route("/api/v1/areas/{code}", get(one_area))
}

/// Counts as the API shows them.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Counts {
    pub total: i64,
    pub feeling_safe_mean: Option<f64>,
    /// Insights per channel (staff, barber-hairdresser, pupil, youth-worker, other).
    #[schema(value_type = BTreeMap<String, i64>)]
    pub channels: BTreeMap<&'static str, i64>,
}

impl From<&Sums> for Counts {
    fn from(sums: &Sums) -> Self {
        #[allow(clippy::cast_precision_loss)] // counts far below 2^52
        let feeling_safe_mean =
            (sums.feeling_safe_n > 0).then(|| sums.feeling_safe_sum as f64 / sums.feeling_safe_n as f64);
        Counts {
            total: sums.n,
            feeling_safe_mean,
            channels: Channel::ALL.iter().map(|channel| channel.as_str()).zip(sums.channels).collect(),
        }
    }
}

/// Which generation a query reads.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct GenerationRef {
    pub set: String,
    pub generation: i64,
}

impl From<&Generation> for GenerationRef {
    fn from(generation: &Generation) -> Self {
        GenerationRef { set: generation.info.set_name.clone(), generation: generation.info.generation }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct AreaTotal {
    code: String,
    name: String,
    /// Distinct collectors, given when the period is one calendar period (a day, ISO week, month, quarter or year);
    /// `null` otherwise (ask one area for its exact count over any period).
    contributors: Option<i64>,
    #[serde(flatten)]
    counts: Counts,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct AreasResponse {
    boundaries: GenerationRef,
    areas: Vec<AreaTotal>,
    /// Insights outside every area; `null` for a caller with a scope (they lie in nobody's).
    outside_coverage: Option<i64>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct CategoryCounts {
    category: &'static str,
    label: &'static str,
    contributors: i64,
    #[serde(flatten)]
    counts: Counts,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct SeriesEntry {
    /// The period's first day, YYYY-MM-DD.
    period_start: String,
    contributors: i64,
    #[serde(flatten)]
    counts: Counts,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct AreaResponse {
    boundaries: GenerationRef,
    code: String,
    name: String,
    contributors: i64,
    #[serde(flatten)]
    counts: Counts,
    /// Every category of the campaign, zeros included, so charts line up period to period.
    pub(crate) by_category: BTreeMap<String, i64>,
    categories: Vec<CategoryCounts>,
    /// Per period of the kind asked for (`period=`), when asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    series: Option<Vec<SeriesEntry>>,
}

/// Every area of the generation (within the caller's scope) with its totals (zeros included, so a map can shade
/// every area), busiest first.
#[utoipa::path(get, path = "/api/v1/areas", tag = "roll-ups",
    params(super::openapi::Generation, super::openapi::Days),
    responses((status = 200, body = AreasResponse), super::openapi::Refusals))]
pub(crate) async fn list_areas(
    State(state): State<AppState>,
    Caller(principal): Caller,
    RawQuery(query): RawQuery,
) -> Result<Json<AreasResponse>, ApiError> {
    let query = ApiQuery::parse(query.as_deref(), &["set", "generation", "from", "to"])?;
    let atlas = state.atlas.get();
    let generation = query.generation(&atlas)?;
    let totals = state.usecases.area_totals(&principal, &atlas, generation, query.days).await?;
    let mut areas: Vec<AreaTotal> = totals
        .areas
        .iter()
        .map(|(area, rollup)| AreaTotal {
            code: area.code.clone(),
            name: area.name.clone(),
            contributors: rollup.contributors,
            counts: Counts::from(&rollup.all),
        })
        .collect();
    areas.sort_by(|a, b| b.counts.total.cmp(&a.counts.total).then_with(|| a.code.cmp(&b.code)));
    Ok(Json(AreasResponse {
        boundaries: GenerationRef::from(generation),
        areas,
        outside_coverage: totals.outside_coverage,
    }))
}

/// One area's totals, by category, and (with `period`) its series.
#[utoipa::path(get, path = "/api/v1/areas/{code}", tag = "roll-ups",
    params(("code" = String, Path, description = "The area's code"), super::openapi::Generation, super::openapi::Days,
        ("period" = Option<String>, Query, description = "day, week, month, quarter or year: adds the series")),
    responses((status = 200, body = AreaResponse), super::openapi::Refusals))]
pub(crate) async fn one_area(
    State(state): State<AppState>,
    Caller(principal): Caller,
    code: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
) -> Result<Json<AreaResponse>, ApiError> {
    let Path(code) = code?;
    let query = ApiQuery::parse(query.as_deref(), &["set", "generation", "from", "to", "period"])?;
    let atlas = state.atlas.get();
    let generation = query.generation(&atlas)?;
    let detail = state.usecases.area_detail(&principal, &atlas, generation, &code, query.days, query.period).await?;
    let (area, rollup) = (detail.area, detail.rollup);
    let mut by_category: BTreeMap<String, i64> =
        DEFAULT_CAMPAIGN.categories.iter().map(|category| (category.slug.to_owned(), 0)).collect();
    let categories = DEFAULT_CAMPAIGN
        .categories
        .iter()
        .map(|category| {
            let found = rollup.by_category.iter().find(|rollup| rollup.category == category.slug);
            let sums = found.map(|found| found.sums).unwrap_or_default();
            by_category.insert(category.slug.to_owned(), sums.n);
            CategoryCounts {
                category: category.slug,
                label: category.label,
                contributors: found.and_then(|found| found.contributors).unwrap_or(0),
                counts: Counts::from(&sums),
            }
        })
        .collect();
    let series = detail.series.map(|points| {
        points
            .iter()
            .map(|point| SeriesEntry {
                period_start: point.period_start.to_string(),
                contributors: point.contributors,
                counts: Counts::from(&point.sums),
            })
            .collect()
    });
    Ok(Json(AreaResponse {
        boundaries: GenerationRef::from(generation),
        code: area.code.clone(),
        name: area.name.clone(),
        contributors: rollup.contributors.unwrap_or(0),
        counts: Counts::from(&rollup.all),
        by_category,
        categories,
        series,
    }))
}
