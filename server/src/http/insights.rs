//! `GET /api/v1/insights` (filtered, searched, paged by cursor), `GET /api/v1/insights/{id}` (one insight with its
//! history) and `POST /api/v1/insights/{id}/triage` (docs/workbench.md). Parsing and rendering only: the reading,
//! the scope and the audit are the use cases'.

use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, RawQuery, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use grapevine_sync_proto::campaign::DEFAULT_CAMPAIGN;
use grapevine_sync_proto::document::{format_time, Author, Version};
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::Caller;
use crate::app::AppState;
use crate::domain::insight_query::{InsightPageRequest, TriageState};
use crate::geo::atlas::Atlas;
use crate::store::insights::Triage;
use crate::store::{Outcome, OUTSIDE_COVERAGE};
use crate::usecase::insights::{InsightView, TriageRequest};

pub const INSIGHTS: &str = "/api/v1/insights";
pub const INSIGHT: &str = "/api/v1/insights/{id}";
pub const TRIAGE: &str = "/api/v1/insights/{id}/triage";

pub fn router() -> Router<AppState> {
    Router::new().route(INSIGHTS, get(list)).route(INSIGHT, get(one)).route(TRIAGE, post(triage))
}

/// Where an insight lies in one boundary generation.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct AreaItem {
    pub set: String,
    pub generation: i64,
    /// `null` when outside every area of the generation.
    pub code: Option<String>,
    pub name: Option<String>,
    pub near_boundary: bool,
}

/// The GPS fix, as the phone reported it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Point {
    pub lat: f64,
    pub lon: f64,
    pub accuracy_m: f64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Rejection {
    pub code: String,
    pub message: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Note {
    pub at: String,
    pub author: String,
    pub text: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct TriageItem {
    pub state: TriageState,
    pub version: i64,
    pub updated_at: Option<String>,
    pub updated_by: Option<String>,
    pub tags: Vec<String>,
    pub priorities: Vec<String>,
    /// Only on one insight's own answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notes: Option<Vec<Note>>,
}

impl TriageItem {
    pub(crate) fn of(triage: &Triage, with_notes: bool) -> TriageItem {
        TriageItem {
            state: triage.state,
            version: triage.version,
            updated_at: triage.updated_at.map(format_time),
            updated_by: triage.updated_by.clone(),
            tags: triage.tags.clone(),
            priorities: triage.priorities.clone(),
            notes: with_notes.then(|| {
                triage
                    .notes
                    .iter()
                    .map(|note| Note { at: format_time(note.at), author: note.author.clone(), text: note.text.clone() })
                    .collect()
            }),
        }
    }
}

/// One insight as the API shows it (docs/workbench.md lists every field).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct InsightItem {
    pub id: String,
    /// RFC 3339 with the phone's own UTC offset.
    pub captured_at: Option<String>,
    pub category: Option<String>,
    pub category_label: Option<String>,
    pub text: Option<String>,
    pub feeling_safe: Option<u8>,
    pub channel: Option<String>,
    /// The GPS fix, if the phone had one.
    pub location: Option<Point>,
    /// How it was placed: `gps`, `postcode`, `area` (picked from a list), or `null` (not placed).
    pub located_by: Option<&'static str>,
    pub postcode: Option<String>,
    pub picked_area: Option<String>,
    /// Its area in every boundary generation.
    pub areas: Vec<AreaItem>,
    pub status: &'static str,
    pub rejection: Option<Rejection>,
    pub processed_at: String,
    /// The collector, as a pseudonym stable across their insights and devices.
    pub collector: String,
    /// The invitation the collector's device enrolled with.
    pub cohort: Option<String>,
    pub triage: TriageItem,
}

impl InsightItem {
    pub(crate) fn of(view: &InsightView, atlas: &Atlas, with_notes: bool) -> InsightItem {
        let row = &view.record.row;
        let located_by = row.located_by();
        let areas = row
            .tags
            .iter()
            .filter_map(|tag| {
                let generation = atlas.generation_by_id(tag.generation_id)?;
                let inside = tag.area_code != OUTSIDE_COVERAGE;
                Some(AreaItem {
                    set: generation.info.set_name.clone(),
                    generation: generation.info.generation,
                    code: inside.then(|| tag.area_code.clone()),
                    name: generation.boundaries.area(&tag.area_code).map(|area| area.name.clone()),
                    near_boundary: tag.near_boundary,
                })
            })
            .collect();
        let rejection = match &row.outcome {
            Outcome::Rejected { code, message } => {
                Some(Rejection { code: code.as_str().to_owned(), message: message.clone() })
            }
            _ => None,
        };
        let category_label = row
            .category
            .as_deref()
            .and_then(|slug| DEFAULT_CAMPAIGN.category(slug))
            .map(|category| category.label.to_owned());
        InsightItem {
            id: row.id.to_string(),
            captured_at: row.captured_at.map(format_time),
            category: row.category.clone(),
            category_label,
            text: row.text.clone(),
            feeling_safe: row.feeling_safe,
            channel: row.channel.clone(),
            location: row.gps.map(|(lat, lon, accuracy_m)| Point { lat, lon, accuracy_m }),
            located_by,
            postcode: row.postcode.clone(),
            picked_area: row.picked_area_code.clone(),
            areas,
            status: row.outcome.status(),
            rejection,
            processed_at: format_time(row.processed_at),
            collector: view.collector.clone(),
            cohort: view.record.cohort.clone(),
            triage: TriageItem::of(&view.record.triage, with_notes),
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct ListResponse {
    items: Vec<InsightItem>,
    /// Give it as `cursor` for the next page; `null` on the last.
    next_cursor: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct VersionItem {
    pub at: Option<String>,
    /// `phone` or `server`.
    pub by: &'static str,
    /// Each field the version changed, with its value after it.
    #[schema(value_type = Object)]
    pub changed: serde_json::Map<String, serde_json::Value>,
}

impl VersionItem {
    pub(crate) fn of(version: &Version) -> VersionItem {
        VersionItem {
            at: version.at.map(format_time),
            by: match version.by {
                Author::Phone => "phone",
                Author::Server => "server",
            },
            changed: version
                .changed
                .iter()
                .map(|(field, value)| ((*field).to_owned(), value.clone().map_or(serde_json::Value::Null, Into::into)))
                .collect(),
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct DetailResponse {
    #[serde(flatten)]
    item: InsightItem,
    /// Oldest first.
    history: Vec<VersionItem>,
}

/// Insights newest first, filtered and searched, a page at a time (docs/workbench.md).
#[utoipa::path(get, path = "/api/v1/insights", tag = "insights",
    params(super::openapi::InsightFilterParams, super::openapi::PageParams),
    responses((status = 200, body = ListResponse), super::openapi::Refusals))]
pub(crate) async fn list(
    State(state): State<AppState>,
    Caller(principal): Caller,
    RawQuery(query): RawQuery,
) -> Result<Json<ListResponse>, ApiError> {
    let request = InsightPageRequest::parse(query.as_deref()).map_err(ApiError::invalid_query)?;
    let atlas = state.atlas.get();
    let page = state.usecases.list_insights(&principal, &atlas, &request).await?;
    Ok(Json(ListResponse {
        items: page.items.iter().map(|view| InsightItem::of(view, &atlas, false)).collect(),
        next_cursor: page.next_cursor.map(|cursor| cursor.encode()),
    }))
}

/// One insight, with its notes and its history.
#[utoipa::path(get, path = "/api/v1/insights/{id}", tag = "insights",
    params(("id" = String, Path, description = "The insight's UUID")),
    responses((status = 200, body = DetailResponse), super::openapi::Refusals))]
pub(crate) async fn one(
    State(state): State<AppState>,
    Caller(principal): Caller,
    id: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
) -> Result<Json<DetailResponse>, ApiError> {
    let Path(id) = id?;
    if let Some(query) = query.filter(|query| !query.is_empty()) {
        return Err(ApiError::invalid_query(format!(
            "this endpoint takes no parameters; '{}' was given",
            super::error::shown(&query)
        )));
    }
    let atlas = state.atlas.get();
    let detail = state.usecases.insight_detail(&principal, &atlas, &id).await?;
    Ok(Json(DetailResponse {
        item: InsightItem::of(&detail.view, &atlas, true),
        history: detail.history.iter().map(VersionItem::of).collect(),
    }))
}

/// `POST /api/v1/insights/{id}/triage`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TriageBody {
    /// The triage's version as read (0 for one never triaged).
    version: i64,
    state: Option<TriageState>,
    note: Option<String>,
    #[serde(default)]
    add_tags: Vec<String>,
    #[serde(default)]
    remove_tags: Vec<String>,
    #[serde(default)]
    link_priorities: Vec<String>,
    #[serde(default)]
    unlink_priorities: Vec<String>,
}

const TRIAGE_EXPECTED: &str = "an object {version, state?, note?, add_tags?, remove_tags?, link_priorities?, \
                               unlink_priorities?} (docs/workbench.md)";

/// Changes an insight's triage, naming the version read; `409 triage_changed` if another analyst wrote first.
#[utoipa::path(post, path = "/api/v1/insights/{id}/triage", tag = "insights", request_body = TriageBody,
    params(("id" = String, Path, description = "The insight's UUID")),
    responses((status = 200, body = TriageItem), super::openapi::Refusals))]
pub(crate) async fn triage(
    State(state): State<AppState>,
    Caller(principal): Caller,
    id: Result<Path<String>, PathRejection>,
    body: Result<Json<TriageBody>, JsonRejection>,
) -> Result<Json<TriageItem>, ApiError> {
    let Path(id) = id?;
    let Json(body) = body.map_err(|rejection| ApiError::json_body(&rejection, TRIAGE_EXPECTED))?;
    let request = TriageRequest {
        version: body.version,
        state: body.state,
        note: body.note,
        add_tags: body.add_tags,
        remove_tags: body.remove_tags,
        link_priorities: body.link_priorities,
        unlink_priorities: body.unlink_priorities,
    };
    let atlas = state.atlas.get();
    let triage = state.usecases.update_triage(&principal, &atlas, &id, request).await?;
    Ok(Json(TriageItem::of(&triage, true)))
}
