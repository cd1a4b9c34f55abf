//! `/exports` (analysts): the insights filter, and a download of the insights it chooses in each format (CSV,
//! Excel, GeoJSON, GeoPackage), and of the roll-up table. The downloads are the API's own exports
//! (`http::exports::insights_response`, `rollups_response`), answered with the session's person: the same files,
//! checked, scoped and recorded by the same use case. This page only reads the filter as the pages spell it (the
//! last day included) and turns a refusal into a page.

use askama::Template;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use time::Date;

use super::filter::{FilterChoices, InsightFilterForm};
use super::insights::generation_of;
use super::page::{render, FormErrors, Nav, PageError, Shell};
use super::session::Signed;
use crate::app::AppState;
use crate::domain::period::parse_day;
use crate::domain::Action;
use crate::http::error::ApiError;
use crate::http::exports::{insights_response, rollups_response, FileFormat};
use crate::usecase::sign_in::SignedIn;

const EXPORTS: &str = "/exports";
const INSIGHTS_CSV: &str = "/exports/insights.csv";
const INSIGHTS_XLSX: &str = "/exports/insights.xlsx";
const INSIGHTS_GEOJSON: &str = "/exports/insights.geojson";
const INSIGHTS_GPKG: &str = "/exports/insights.gpkg";
const ROLLUPS_CSV: &str = "/exports/rollups.csv";

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route(EXPORTS, get(exports))
        .route(INSIGHTS_CSV, get(insights_csv))
        .route(INSIGHTS_XLSX, get(insights_xlsx))
        .route(INSIGHTS_GEOJSON, get(insights_geojson))
        .route(INSIGHTS_GPKG, get(insights_gpkg))
        .route(ROLLUPS_CSV, get(rollups_csv))
}

/// A format offered: its link, name and what it is for.
struct Download {
    href: String,
    name: &'static str,
    what: &'static str,
}

#[derive(Template)]
#[template(path = "exports.html")]
struct ExportsPage {
    shell: Shell,
    errors: FormErrors,
    filter: InsightFilterForm,
    choices: FilterChoices,
    downloads: Vec<Download>,
    rollups: Option<String>,
}

/// The insight formats, in the order offered: (path, name, what it is for).
const FORMATS: [(&str, &str, &str); 4] = [
    (INSIGHTS_CSV, "CSV", "for Excel and Power BI; one row per insight"),
    (INSIGHTS_XLSX, "Excel workbook (XLSX)", "up to 1,048,575 insights"),
    (INSIGHTS_GEOJSON, "GeoJSON", "for QGIS and web maps; a point per insight"),
    (INSIGHTS_GPKG, "GeoPackage", "for QGIS and ArcGIS"),
];

async fn exports(State(state): State<AppState>, Signed(signed): Signed, RawQuery(query): RawQuery) -> Response {
    let filter = InsightFilterForm::read(query.as_deref());
    let atlas = state.atlas.get();
    let generation = generation_of(&atlas, &filter);
    let areas = state
        .usecases
        .areas_in_scope(&signed.principal, &atlas, generation, Action::ExportInsights, "export.insights")
        .await;
    let areas = match areas {
        Ok(areas) => areas,
        Err(error) => return PageError::from_use_case(error, &signed).into_response(),
    };
    let choices = FilterChoices::new(areas.into_iter().map(|area| (area.code.clone(), area.name.clone())));
    let downloads = if filter.errors.is_empty() {
        FORMATS.iter().map(|(path, name, what)| Download { href: filter.link(path, ""), name, what }).collect()
    } else {
        Vec::new()
    };
    // The roll-up table over the filter's days (its other fields do not apply to counts), a row per month.
    let rollups = filter.errors.is_empty().then(|| {
        let mut query = form_urlencoded::Serializer::new(String::new());
        for (name, value) in
            filter.kept().into_iter().chain([("from", filter.value("from")), ("until", filter.value("until"))])
        {
            if !value.is_empty() {
                query.append_pair(name, value);
            }
        }
        let query = query.finish();
        if query.is_empty() {
            ROLLUPS_CSV.to_owned()
        } else {
            format!("{ROLLUPS_CSV}?{query}")
        }
    });
    let status = if filter.errors.is_empty() { StatusCode::OK } else { StatusCode::UNPROCESSABLE_ENTITY };
    let page = ExportsPage {
        shell: Shell::signed(&signed, "Exports", Nav::Exports).with_errors(&filter.errors),
        errors: filter.errors.clone(),
        filter,
        choices,
        downloads,
        rollups,
    };
    render(status, &page)
}

/// An export's refusal as a page (nothing of the file was sent).
fn refusal(error: ApiError, signed: &SignedIn) -> Response {
    let heading = match error.status {
        StatusCode::FORBIDDEN => "You cannot use this page",
        StatusCode::NOT_FOUND => "Page not found",
        status if status.is_server_error() => "Sorry, there is a problem with the service",
        _ => "That could not be exported",
    };
    PageError::new(error.status, heading, error.message).for_person(signed).into_response()
}

/// A filter that is wrong, as a page saying what.
fn wrong_filter(errors: &FormErrors, signed: &SignedIn) -> Option<Response> {
    let error = errors.list.first()?;
    let page = PageError::new(StatusCode::UNPROCESSABLE_ENTITY, "The filter is not right", error.message.clone());
    Some(page.for_person(signed).into_response())
}

async fn insights(state: &AppState, signed: &SignedIn, query: Option<&str>, format: FileFormat) -> Response {
    let filter = InsightFilterForm::read(query);
    if let Some(refused) = wrong_filter(&filter.errors, signed) {
        return refused;
    }
    // A CSV from the page opens in Excel: it starts with a byte order mark.
    let mut api_query = filter.api_query;
    if format == FileFormat::Csv {
        api_query = [api_query, "bom=true".to_owned()]
            .into_iter()
            .filter(|part| !part.is_empty())
            .collect::<Vec<_>>()
            .join("&");
    }
    match insights_response(state, &signed.principal, Some(&api_query), format).await {
        Ok(download) => download,
        Err(error) => refusal(error, signed),
    }
}

async fn insights_csv(State(state): State<AppState>, Signed(signed): Signed, RawQuery(query): RawQuery) -> Response {
    insights(&state, &signed, query.as_deref(), FileFormat::Csv).await
}

async fn insights_xlsx(State(state): State<AppState>, Signed(signed): Signed, RawQuery(query): RawQuery) -> Response {
    insights(&state, &signed, query.as_deref(), FileFormat::Xlsx).await
}

async fn insights_geojson(
    State(state): State<AppState>,
    Signed(signed): Signed,
    RawQuery(query): RawQuery,
) -> Response {
    insights(&state, &signed, query.as_deref(), FileFormat::GeoJson).await
}

async fn insights_gpkg(State(state): State<AppState>, Signed(signed): Signed, RawQuery(query): RawQuery) -> Response {
    insights(&state, &signed, query.as_deref(), FileFormat::GeoPackage).await
}

/// The roll-up table, a row per area, category and month: `set`, `generation`, and the days as the pages spell
/// them (`from`, and `until`, the last day, included).
async fn rollups_csv(State(state): State<AppState>, Signed(signed): Signed, RawQuery(query): RawQuery) -> Response {
    let api_query = match rollups_query(query.as_deref()) {
        Ok(api_query) => api_query,
        Err(errors) => return wrong_filter(&errors, &signed).unwrap_or_else(|| PageError::not_found().into_response()),
    };
    match rollups_response(&state, &signed.principal, Some(&api_query)).await {
        Ok(download) => download,
        Err(error) => refusal(error, &signed),
    }
}

/// The roll-up export's query as the API spells it, from the page's.
fn rollups_query(query: Option<&str>) -> Result<String, FormErrors> {
    let mut api = form_urlencoded::Serializer::new(String::new());
    api.append_pair("period", "month").append_pair("bom", "true");
    let mut errors = FormErrors::default();
    for (name, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        let value = value.trim();
        if value.is_empty() {
            continue;
        }
        match name.as_ref() {
            "set" | "generation" | "from" => {
                api.append_pair(&name, value);
            }
            "until" => match parse_day("until", value).ok().and_then(Date::next_day) {
                Some(to) => {
                    api.append_pair("to", &to.to_string());
                }
                None => errors.add("until", "Enter the last day as year-month-day, for example 2026-03-31"),
            },
            _ => {}
        }
    }
    if errors.is_empty() {
        Ok(api.finish())
    } else {
        Err(errors)
    }
}
