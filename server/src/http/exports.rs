//! `GET /api/v1/exports/insights.{csv,geojson,gpkg,xlsx}?<the insight filter>[&bom=true]` and
//! `GET /api/v1/exports/rollups.csv?set&generation&period&from&to[&bom=true]` (docs/exports.md). Parsing and naming
//! the file only: the check, the scope, the reading, the writing and the audit are the use cases'
//! (`usecase::exports`). The pages serve the very same downloads to a signed-in person by calling
//! `insights_response` and `rollups_response` with that person's principal.

use axum::extract::{RawQuery, State};
use axum::response::Response;
use axum::routing::get;
use axum::Router;

use super::error::ApiError;
use super::query::{parse_bom, ApiQuery};
use super::{stream, Caller};
use crate::app::AppState;
use crate::domain::insight_query::InsightQuery;
use crate::domain::{PeriodKind, Principal};
use crate::export::InsightFormat;
use crate::usecase::exports::{Download, RollupExport};

pub const INSIGHTS_CSV: &str = "/api/v1/exports/insights.csv";
pub const INSIGHTS_GEOJSON: &str = "/api/v1/exports/insights.geojson";
pub const INSIGHTS_GPKG: &str = "/api/v1/exports/insights.gpkg";
pub const INSIGHTS_XLSX: &str = "/api/v1/exports/insights.xlsx";
pub const ROLLUPS_CSV: &str = "/api/v1/exports/rollups.csv";

pub fn router() -> Router<AppState> {
    Router::new()
        .route(INSIGHTS_CSV, get(insights_csv))
        .route(INSIGHTS_GEOJSON, get(insights_geojson))
        .route(INSIGHTS_GPKG, get(insights_gpkg))
        .route(INSIGHTS_XLSX, get(insights_xlsx))
        .route(ROLLUPS_CSV, get(rollups_csv))
}

/// The files of the insight export, as their URLs name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    Csv,
    GeoJson,
    GeoPackage,
    Xlsx,
}

impl FileFormat {
    /// The media type each is registered under.
    #[must_use]
    pub fn content_type(self) -> &'static str {
        match self {
            FileFormat::Csv => CSV,
            FileFormat::GeoJson => "application/geo+json",
            FileFormat::GeoPackage => "application/geopackage+sqlite3",
            FileFormat::Xlsx => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        }
    }
}

const CSV: &str = "text/csv; charset=utf-8";

/// A file's bytes (described, never built).
#[derive(utoipa::ToSchema)]
#[schema(value_type = String, format = Binary)]
#[allow(dead_code)]
pub(crate) struct FileBytes(Vec<u8>);

/// An RFC 7946 `FeatureCollection` of points (or `null` geometries); each feature's `properties` are the export's
/// columns (docs/exports.md). Described, never built: the file is streamed a feature at a time.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[allow(dead_code)]
pub(crate) struct FeatureCollection {
    /// `FeatureCollection`.
    #[serde(rename = "type")]
    kind: String,
    features: Vec<serde_json::Value>,
}

/// A CSV download starts with a byte-order mark (for Excel) when `true`.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(crate) struct BomParam {
    bom: Option<bool>,
}

/// The insights the filter lets through, newest first, as CSV (docs/exports.md has the columns).
#[utoipa::path(get, path = "/api/v1/exports/insights.csv", tag = "exports",
    params(super::openapi::InsightFilterParams, BomParam),
    responses((status = 200, description = "A CSV file, a header row then an insight a record", content_type = "text/csv; charset=utf-8", body = String),
        super::openapi::Refusals))]
pub(crate) async fn insights_csv(
    state: State<AppState>,
    caller: Caller,
    query: RawQuery,
) -> Result<Response, ApiError> {
    insights(state, caller, query, FileFormat::Csv).await
}

/// The insights the filter lets through, newest first, as GeoJSON points (docs/exports.md).
#[utoipa::path(get, path = "/api/v1/exports/insights.geojson", tag = "exports",
    params(super::openapi::InsightFilterParams),
    responses((status = 200, description = "A GeoJSON FeatureCollection", content_type = "application/geo+json", body = FeatureCollection),
        super::openapi::Refusals))]
pub(crate) async fn insights_geojson(
    state: State<AppState>,
    caller: Caller,
    query: RawQuery,
) -> Result<Response, ApiError> {
    insights(state, caller, query, FileFormat::GeoJson).await
}

/// The insights the filter lets through, newest first, as a GeoPackage point layer (docs/exports.md).
#[utoipa::path(get, path = "/api/v1/exports/insights.gpkg", tag = "exports",
    params(super::openapi::InsightFilterParams),
    responses((status = 200, description = "A GeoPackage (SQLite) file", content_type = "application/geopackage+sqlite3", body = FileBytes),
        super::openapi::Refusals))]
pub(crate) async fn insights_gpkg(
    state: State<AppState>,
    caller: Caller,
    query: RawQuery,
) -> Result<Response, ApiError> {
    insights(state, caller, query, FileFormat::GeoPackage).await
}

/// The insights the filter lets through, newest first, as an Excel sheet; refused with `export_too_large` above
/// 1,048,575 insights (docs/exports.md).
#[utoipa::path(get, path = "/api/v1/exports/insights.xlsx", tag = "exports",
    params(super::openapi::InsightFilterParams),
    responses((status = 200, description = "An XLSX workbook", content_type = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", body = FileBytes),
        super::openapi::Refusals))]
pub(crate) async fn insights_xlsx(
    state: State<AppState>,
    caller: Caller,
    query: RawQuery,
) -> Result<Response, ApiError> {
    insights(state, caller, query, FileFormat::Xlsx).await
}

async fn insights(
    State(state): State<AppState>,
    Caller(principal): Caller,
    RawQuery(query): RawQuery,
    format: FileFormat,
) -> Result<Response, ApiError> {
    insights_response(&state, &principal, query.as_deref(), format).await
}

/// The roll-up table: a row per area, category and period (docs/exports.md has the columns).
#[utoipa::path(get, path = "/api/v1/exports/rollups.csv", tag = "exports",
    params(super::openapi::Generation,
        ("period" = Option<String>, Query, description = "day, week, month, quarter or year; month when not given"),
        super::openapi::Days, BomParam),
    responses((status = 200, description = "A CSV file, a header row then a cell a record", content_type = "text/csv; charset=utf-8", body = String),
        super::openapi::Refusals))]
pub(crate) async fn rollups_csv(
    State(state): State<AppState>,
    Caller(principal): Caller,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    rollups_response(&state, &principal, query.as_deref()).await
}

fn attachment(content_type: &'static str, download: Download) -> Response {
    stream::attachment(content_type, &download.filename, stream::body(download.chunks.into_stream()))
}

/// The insight export in `format` for `principal`, the filter read from `raw_query` (still percent-encoded), as the
/// API parses it everywhere (`InsightQuery`); a CSV also takes `bom`.
///
/// # Errors
/// `422 invalid_query` for a filter that does not parse; whatever the use case refuses with (403, 404, 422
/// `export_too_large`), before any byte of the file is sent.
pub async fn insights_response(
    state: &AppState,
    principal: &Principal,
    raw_query: Option<&str>,
    format: FileFormat,
) -> Result<Response, ApiError> {
    let extra: &[&str] = if format == FileFormat::Csv { &["bom"] } else { &[] };
    let (query, extras) = InsightQuery::parse(raw_query, extra).map_err(ApiError::invalid_query)?;
    let mut bom = false;
    for (_, value) in extras {
        bom = parse_bom(&value)?;
    }
    let export = match format {
        FileFormat::Csv => InsightFormat::Csv { bom },
        FileFormat::GeoJson => InsightFormat::GeoJson,
        FileFormat::GeoPackage => InsightFormat::GeoPackage,
        FileFormat::Xlsx => InsightFormat::Xlsx,
    };
    let download = state.usecases.export_insights(principal, state.atlas.get(), &query, export).await?;
    Ok(attachment(format.content_type(), download))
}

/// The roll-up table for `principal`: `set` and `generation` (the filing set's newest when left out), `period`
/// (`day`, `week`, `month`, `quarter` or `year`; `month` when left out), the periods starting from `from` up to (not
/// including) `to`, and `bom`.
///
/// # Errors
/// `422 invalid_query` for a query that does not parse; whatever the use case refuses with (403, 404).
pub async fn rollups_response(
    state: &AppState,
    principal: &Principal,
    raw_query: Option<&str>,
) -> Result<Response, ApiError> {
    let query = ApiQuery::parse(raw_query, &["set", "generation", "period", "from", "to", "bom"])?;
    let request = RollupExport {
        set: query.set,
        generation: query.generation,
        kind: query.period.unwrap_or(PeriodKind::Month),
        days: query.days,
        bom: query.bom.unwrap_or(false),
    };
    let download = state.usecases.export_rollups(principal, state.atlas.get(), &request).await?;
    Ok(attachment(CSV, download))
}
