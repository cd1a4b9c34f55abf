//! `GET /api/v1/areas` and `GET /api/v1/areas/{code}`: the neighbourhood roll-ups on any boundary generation, read
//! from the maintained roll-up cells, never by scanning insights (docs/geotagging.md).

use std::collections::{BTreeMap, HashMap};

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use grapevine_sync_proto::campaign::DEFAULT_CAMPAIGN;
use grapevine_sync_proto::{Channel, ErrorCode};
use serde::Serialize;
use time::Date;

use super::error::ApiError;
use super::Analyst;
use crate::app::AppState;
use crate::atlas::{Atlas, Generation};
use crate::store::rollup::PeriodKind;
use crate::store::{DayRange, Sums, OUTSIDE_COVERAGE};

pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/areas", get(list_areas)).route("/api/v1/areas/{code}", get(one_area))
}

/// Counts as the API shows them.
#[derive(Debug, Serialize)]
pub(crate) struct Counts {
    pub total: i64,
    pub feeling_safe_mean: Option<f64>,
    /// Insights per channel (staff, barber-hairdresser, pupil, youth-worker, other).
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
#[derive(Debug, Serialize)]
pub(crate) struct GenerationRef {
    pub set: String,
    pub generation: i64,
}

impl From<&Generation> for GenerationRef {
    fn from(generation: &Generation) -> Self {
        GenerationRef { set: generation.info.set_name.clone(), generation: generation.info.generation }
    }
}

#[derive(Debug, Serialize)]
struct AreaTotal {
    code: String,
    name: String,
    /// Distinct collectors, given when the period is one calendar period (a day, ISO week, month, quarter or year);
    /// `null` otherwise (ask one area for its exact count over any period).
    contributors: Option<i64>,
    #[serde(flatten)]
    counts: Counts,
}

#[derive(Debug, Serialize)]
struct AreasResponse {
    boundaries: GenerationRef,
    areas: Vec<AreaTotal>,
    outside_coverage: i64,
}

#[derive(Debug, Serialize)]
struct CategoryCounts {
    category: &'static str,
    label: &'static str,
    contributors: i64,
    #[serde(flatten)]
    counts: Counts,
}

#[derive(Debug, Serialize)]
struct SeriesEntry {
    /// The period's first day, YYYY-MM-DD.
    period_start: String,
    contributors: i64,
    #[serde(flatten)]
    counts: Counts,
}

#[derive(Debug, Serialize)]
struct AreaResponse {
    boundaries: GenerationRef,
    code: String,
    name: String,
    contributors: i64,
    #[serde(flatten)]
    counts: Counts,
    /// Every category of the campaign, zeros included, so charts line up period to period.
    by_category: BTreeMap<String, i64>,
    categories: Vec<CategoryCounts>,
    /// Per period of the kind asked for (`period=`), when asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    series: Option<Vec<SeriesEntry>>,
}

/// Every area of the generation with its totals (zeros included, so a map can shade every area), busiest first.
async fn list_areas(
    State(state): State<AppState>,
    _analyst: Analyst,
    RawQuery(query): RawQuery,
) -> Result<Json<AreasResponse>, ApiError> {
    let query = RollupQuery::parse(query.as_deref(), &["set", "generation", "from", "to"])?;
    let atlas = state.atlas.get();
    let generation = query.generation(&atlas)?;
    let rollups = state.store.rollup(generation.info.id, query.days, None, false, false).await?;
    let by_code: HashMap<&str, _> = rollups.iter().map(|rollup| (rollup.area_code.as_str(), rollup)).collect();
    let mut areas: Vec<AreaTotal> = generation
        .boundaries
        .areas()
        .iter()
        .map(|area| {
            let rollup = by_code.get(area.code.as_str());
            AreaTotal {
                code: area.code.clone(),
                name: area.name.clone(),
                contributors: rollup.map_or(Some(0), |rollup| rollup.contributors),
                counts: Counts::from(&rollup.map(|rollup| rollup.all).unwrap_or_default()),
            }
        })
        .collect();
    areas.sort_by(|a, b| b.counts.total.cmp(&a.counts.total).then_with(|| a.code.cmp(&b.code)));
    let outside_coverage = by_code.get(OUTSIDE_COVERAGE).map_or(0, |rollup| rollup.all.n);
    Ok(Json(AreasResponse { boundaries: GenerationRef::from(generation), areas, outside_coverage }))
}

async fn one_area(
    State(state): State<AppState>,
    _analyst: Analyst,
    Path(code): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Json<AreaResponse>, ApiError> {
    let query = RollupQuery::parse(query.as_deref(), &["set", "generation", "from", "to", "period"])?;
    let atlas = state.atlas.get();
    let generation = query.generation(&atlas)?;
    let area = generation.boundaries.area(&code).ok_or_else(|| {
        ApiError::new(StatusCode::NOT_FOUND, ErrorCode::AreaNotFound, format!("no area has the code '{code}'"))
    })?;
    let id = generation.info.id;
    let rollup =
        state.store.rollup(id, query.days, Some(&area.code), true, true).await?.into_iter().next().unwrap_or_default();
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
    let series = match query.period {
        None => None,
        Some(kind) => Some(
            state
                .store
                .series(id, &area.code, kind, query.days)
                .await?
                .iter()
                .map(|point| SeriesEntry {
                    period_start: point.period_start.to_string(),
                    contributors: point.contributors,
                    counts: Counts::from(&point.sums),
                })
                .collect(),
        ),
    };
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

/// The query parameters of the roll-up endpoints. Anything malformed or unknown is a 422 naming the parameter,
/// never a silent default.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct RollupQuery {
    pub set: Option<String>,
    pub generation: Option<i64>,
    /// `from` inclusive, `to` exclusive (ISO 8601 dates).
    pub days: DayRange,
    pub period: Option<PeriodKind>,
    pub area: Option<String>,
}

impl RollupQuery {
    pub(crate) fn parse(query: Option<&str>, allowed: &[&str]) -> Result<RollupQuery, ApiError> {
        let mut parsed = RollupQuery::default();
        for pair in query.unwrap_or_default().split('&').filter(|pair| !pair.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            if !allowed.contains(&key) {
                return Err(ApiError::invalid_query(format!(
                    "unknown parameter '{key}'; expected one of {}",
                    allowed.join(", ")
                )));
            }
            match key {
                "from" | "to" => {
                    let date =
                        Date::parse(value, &time::format_description::well_known::Iso8601::DATE).map_err(|_| {
                            ApiError::invalid_query(format!("{key}={value} is not an ISO 8601 date (YYYY-MM-DD)"))
                        })?;
                    *(if key == "from" { &mut parsed.days.from } else { &mut parsed.days.to }) = Some(date);
                }
                "set" if !value.is_empty() => parsed.set = Some(value.to_owned()),
                "area" if !value.is_empty() => parsed.area = Some(value.to_owned()),
                "generation" => {
                    let number = value.parse().ok().filter(|number| *number >= 1).ok_or_else(|| {
                        ApiError::invalid_query(format!("generation={value} is not a generation number (1, 2, …)"))
                    })?;
                    parsed.generation = Some(number);
                }
                "period" => {
                    let kind = PeriodKind::parse(value).ok_or_else(|| {
                        ApiError::invalid_query(format!("period={value} is not one of day, week, month, quarter, year"))
                    })?;
                    parsed.period = Some(kind);
                }
                _ => return Err(ApiError::invalid_query(format!("{key} needs a value"))),
            }
        }
        if let (Some(from), Some(to)) = (parsed.days.from, parsed.days.to) {
            if from >= to {
                return Err(ApiError::invalid_query(format!("from ({from}) must be before to ({to})")));
            }
        }
        Ok(parsed)
    }

    /// The generation asked for: the filing set's newest unless `set` and `generation` say otherwise.
    pub(crate) fn generation<'a>(&self, atlas: &'a Atlas) -> Result<&'a Generation, ApiError> {
        atlas.find(self.set.as_deref(), self.generation).ok_or_else(|| {
            let known: Vec<String> = atlas
                .generations()
                .iter()
                .map(|generation| format!("{} {}", generation.info.set_name, generation.info.generation))
                .collect();
            ApiError::new(
                StatusCode::NOT_FOUND,
                ErrorCode::AreaNotFound,
                format!("no such boundary set or generation; there are: {}", known.join(", ")),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    const ALL: &[&str] = &["set", "generation", "from", "to", "period", "area"];

    #[test]
    fn queries_parse_or_say_what_is_wrong() {
        assert_eq!(RollupQuery::parse(None, ALL).unwrap(), RollupQuery::default());
        let parsed =
            RollupQuery::parse(Some("from=2026-01-01&to=2026-02-01&set=wards&generation=2&period=week"), ALL).unwrap();
        assert_eq!(parsed.days, DayRange { from: Some(date!(2026 - 01 - 01)), to: Some(date!(2026 - 02 - 01)) });
        assert_eq!(
            (parsed.set.as_deref(), parsed.generation, parsed.period),
            (Some("wards"), Some(2), Some(PeriodKind::Week))
        );
        for bad in [
            "from=2026-13-01",
            "from=yesterday",
            "to=",
            "from=2026-02-01&to=2026-01-01",
            "since=2026-01-01",
            "generation=0",
            "generation=two",
            "period=fortnight",
            "set=",
        ] {
            let error = RollupQuery::parse(Some(bad), ALL).unwrap_err();
            assert_eq!(error.code, ErrorCode::InvalidQuery, "{bad}");
            assert_eq!(error.status, StatusCode::UNPROCESSABLE_ENTITY);
        }
        let error = RollupQuery::parse(Some("period=week"), &["from", "to"]).unwrap_err();
        assert!(error.message.contains("unknown parameter 'period'"), "{}", error.message);
    }
}
