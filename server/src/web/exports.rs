//! `/exports` (analysts): the insights filter, and a download of the insights it chooses in each format (CSV,
//! GeoJSON, GeoPackage, Excel). The downloads are the exports' (`http/exports.rs`), called with the session's
//! person; this page only chooses the filter.

use askama::Template;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::filter::{FilterChoices, InsightFilterForm};
use super::insights::generation_of;
use super::page::{render, FormErrors, Nav, PageError, Shell};
use super::session::Signed;
use crate::app::AppState;
use crate::domain::Action;
use crate::usecase::UseCases;

const EXPORTS: &str = "/exports";

pub(crate) fn router() -> Router<AppState> {
    Router::new().route(EXPORTS, get(exports))
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
}

/// The formats, in the order offered: (file extension, name, what it is for).
const FORMATS: [(&str, &str, &str); 4] = [
    ("csv", "CSV", "for Excel and Power BI; UTF-8, one row per insight"),
    ("xlsx", "Excel workbook (XLSX)", "up to 1,048,575 insights"),
    ("geojson", "GeoJSON", "for QGIS and web maps; a point per insight"),
    ("gpkg", "GeoPackage", "for QGIS and ArcGIS"),
];

async fn exports(State(state): State<AppState>, Signed(signed): Signed, RawQuery(query): RawQuery) -> Response {
    let filter = InsightFilterForm::read(query.as_deref());
    let atlas = state.atlas.get();
    let generation = generation_of(&atlas, &filter);
    let areas = match UseCases::areas_in_scope(&signed.principal, &atlas, generation, Action::ExportInsights) {
        Ok(areas) => areas,
        Err(error) => return PageError::from_use_case(error, &signed).into_response(),
    };
    let choices = FilterChoices::new(areas.into_iter().map(|area| (area.code.clone(), area.name.clone())));
    let downloads = if filter.errors.is_empty() {
        FORMATS
            .iter()
            .map(|(extension, name, what)| Download {
                href: filter.link(&format!("{EXPORTS}/insights.{extension}"), ""),
                name,
                what,
            })
            .collect()
    } else {
        Vec::new()
    };
    let status = if filter.errors.is_empty() { StatusCode::OK } else { StatusCode::UNPROCESSABLE_ENTITY };
    let page = ExportsPage {
        shell: Shell::signed(&signed, "Exports", Nav::Exports).with_errors(&filter.errors),
        errors: filter.errors.clone(),
        filter,
        choices,
        downloads,
    };
    render(status, &page)
}
