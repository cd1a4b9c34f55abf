//! `GET /api/v1/areas` and `GET /api/v1/areas/{code}`: the neighbourhood roll-up, read from the maintained daily
//! table, never by scanning insights.

use std::collections::{BTreeMap, HashMap};

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use grapevine_sync_proto::campaign::DEFAULT_CAMPAIGN;
use grapevine_sync_proto::ErrorCode;
use serde::Serialize;
use time::Date;

use super::error::ApiError;
use super::Analyst;
use crate::app::AppState;
use crate::store::{DayRange, OUTSIDE_COVERAGE};

pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/areas", get(list_areas)).route("/api/v1/areas/{code}", get(one_area))
}

#[derive(Debug, Serialize)]
struct AreaTotal {
    code: String,
    name: String,
    total: i64,
}

#[derive(Debug, Serialize)]
struct AreasResponse {
    areas: Vec<AreaTotal>,
    outside_coverage: i64,
}

#[derive(Debug, Serialize)]
struct AreaResponse {
    code: String,
    name: String,
    total: i64,
    by_category: BTreeMap<String, i64>,
    feeling_safe_mean: Option<f64>,
}

/// Every area with its total (zeros included, so a map can shade every area), busiest first.
async fn list_areas(
    State(state): State<AppState>,
    _analyst: Analyst,
    RawQuery(query): RawQuery,
) -> Result<Json<AreasResponse>, ApiError> {
    let days = parse_days(query.as_deref())?;
    let totals: HashMap<String, i64> = state.store.area_totals(days).await?.into_iter().collect();
    let mut areas: Vec<AreaTotal> = state
        .boundaries
        .areas()
        .iter()
        .map(|area| AreaTotal {
            code: area.code.clone(),
            name: area.name.clone(),
            total: totals.get(&area.code).copied().unwrap_or(0),
        })
        .collect();
    areas.sort_by(|a, b| b.total.cmp(&a.total).then_with(|| a.code.cmp(&b.code)));
    let outside_coverage = totals.get(OUTSIDE_COVERAGE).copied().unwrap_or(0);
    Ok(Json(AreasResponse { areas, outside_coverage }))
}

async fn one_area(
    State(state): State<AppState>,
    _analyst: Analyst,
    Path(code): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Json<AreaResponse>, ApiError> {
    let days = parse_days(query.as_deref())?;
    let area = state.boundaries.area(&code).ok_or_else(|| {
        ApiError::new(StatusCode::NOT_FOUND, ErrorCode::AreaNotFound, format!("no area has the code '{code}'"))
    })?;
    let counts = state.store.area_counts(&area.code, days).await?;
    // Every category of the campaign appears, zeros included, so charts line up period to period.
    let mut by_category: BTreeMap<String, i64> =
        DEFAULT_CAMPAIGN.categories.iter().map(|category| (category.slug.to_owned(), 0)).collect();
    for (category, n) in counts.by_category {
        by_category.insert(category, n);
    }
    #[allow(clippy::cast_precision_loss)] // counts far below 2^52
    let feeling_safe_mean =
        (counts.feeling_safe_n > 0).then(|| counts.feeling_safe_sum as f64 / counts.feeling_safe_n as f64);
    Ok(Json(AreaResponse {
        code: area.code.clone(),
        name: area.name.clone(),
        total: counts.total,
        by_category,
        feeling_safe_mean,
    }))
}

/// Reads `from` and `to` (ISO 8601 dates; `from` inclusive, `to` exclusive). Anything else is a 422 naming the
/// parameter, never a silent default.
fn parse_days(query: Option<&str>) -> Result<DayRange, ApiError> {
    let mut days = DayRange::default();
    for pair in query.unwrap_or_default().split('&').filter(|pair| !pair.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let slot = match key {
            "from" => &mut days.from,
            "to" => &mut days.to,
            other => return Err(ApiError::invalid_query(format!("unknown parameter '{other}'; expected from, to"))),
        };
        let date = Date::parse(value, &time::format_description::well_known::Iso8601::DATE)
            .map_err(|_| ApiError::invalid_query(format!("{key}={value} is not an ISO 8601 date (YYYY-MM-DD)")))?;
        *slot = Some(date);
    }
    if let (Some(from), Some(to)) = (days.from, days.to) {
        if from >= to {
            return Err(ApiError::invalid_query(format!("from ({from}) must be before to ({to})")));
        }
    }
    Ok(days)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    #[test]
    fn periods_parse_or_say_what_is_wrong() {
        assert_eq!(parse_days(None).unwrap(), DayRange::default());
        assert_eq!(
            parse_days(Some("from=2026-01-01&to=2026-02-01")).unwrap(),
            DayRange { from: Some(date!(2026 - 01 - 01)), to: Some(date!(2026 - 02 - 01)) }
        );
        for bad in ["from=2026-13-01", "from=yesterday", "to=", "from=2026-02-01&to=2026-01-01", "since=2026-01-01"] {
            let error = parse_days(Some(bad)).unwrap_err();
            assert_eq!(error.code, ErrorCode::InvalidQuery, "{bad}");
            assert_eq!(error.status, StatusCode::UNPROCESSABLE_ENTITY);
        }
    }
}
