//! The analyst's home page: the priorities table for their scope and a period (by default the last full month
//! against the month before) — the table pasted into the Police and Crime Plan — and `/priorities.csv`, the same
//! table as a download. Both read `UseCases::priority_counts` and rank it with `PriorityCounts::ranked`, as the API
//! does.

use askama::Template;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use time::OffsetDateTime;

use super::filter::{describe_days, PeriodForm};
use super::page::{render, FormErrors, Nav, PageError, Shell};
use super::session::{Form, Signed};
use super::table::{Cell, Column, Table};
use crate::app::AppState;
use crate::domain::{DayRange, Scope};
use crate::geo::atlas::Atlas;
use crate::usecase::rollups::{AreaPriorities, RankedCategory};
use crate::usecase::sign_in::SignedIn;

const PRIORITIES_CSV: &str = "/priorities.csv";

pub(crate) fn router() -> Router<AppState> {
    Router::new().route(PRIORITIES_CSV, get(priorities_csv))
}

/// A change as the table writes it: `+3`, `-2`, `0`.
pub(crate) fn signed_number(change: i64) -> String {
    if change > 0 {
        format!("+{change}")
    } else {
        change.to_string()
    }
}

/// A change in percent: `+25.0%`, or `new` when the period before had none (and this one has some).
pub(crate) fn change_percent(ranked: &RankedCategory) -> String {
    match ranked.change_percent {
        Some(percent) if percent > 0.0 => format!("+{percent:.1}%"),
        Some(percent) => format!("{percent:.1}%"),
        None if ranked.total > 0 => "new".to_owned(),
        None => String::new(),
    }
}

/// A person's scope in words, with the areas' names where the atlas knows them.
pub(crate) fn scope_words(scope: &Scope, atlas: &Atlas) -> String {
    match scope {
        Scope::Everything => "everywhere".to_owned(),
        Scope::Areas(areas) => areas
            .iter()
            .map(|area| {
                let name = atlas.newest_of(&area.set).and_then(|generation| generation.boundaries.area(&area.code));
                match name {
                    Some(found) => format!("{} ({area})", found.name),
                    None => area.to_string(),
                }
            })
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// The priorities table: one row per area with anything in either period, busiest first.
fn priorities_table(areas: &[AreaPriorities<'_>], period: &PeriodForm) -> Table {
    let caption =
        format!("Priorities by area: {} compared with {}", describe_days(period.days), describe_days(period.previous));
    let mut table = Table::new(
        caption,
        vec![
            Column::text("Area"),
            Column::text("Area code"),
            Column::number("Insights"),
            Column::number("Period before"),
            Column::number("Change"),
            Column::text("Top concern"),
            Column::text("Second concern"),
            Column::text("Third concern"),
        ],
    )
    .with_row_headers();
    for area in areas {
        let mut concerns: Vec<Cell> =
            area.top_concerns().map(|ranked| Cell::text(format!("{} ({})", ranked.label, ranked.total))).collect();
        concerns.resize(3, Cell::text(""));
        let mut row = vec![
            Cell::link(area.area.name.clone(), format!("/areas/{}?{}", area.area.code, period.query())),
            Cell::text(area.area.code.clone()),
            Cell::number(area.total),
            Cell::number(area.previous_total),
            Cell::text(signed_number(area.total - area.previous_total)),
        ];
        row.extend(concerns);
        table.push(row);
    }
    table
}

/// One area's categories, ranked: the area page's priorities.
pub(crate) fn area_priorities_table(area: Option<&AreaPriorities<'_>>, name: &str, period: &PeriodForm) -> Table {
    let caption = format!(
        "Priorities in {name}: {} compared with {}",
        describe_days(period.days),
        describe_days(period.previous)
    );
    let mut table = Table::new(
        caption,
        vec![
            Column::text("Category"),
            Column::number("Insights"),
            Column::number("Period before"),
            Column::number("Change"),
            Column::text("Change in percent"),
        ],
    )
    .with_row_headers();
    for ranked in area.map(|area| area.categories.as_slice()).unwrap_or_default() {
        table.push(vec![
            Cell::text(ranked.label),
            Cell::number(ranked.total),
            Cell::number(ranked.previous),
            Cell::text(signed_number(ranked.change)),
            Cell::text(change_percent(ranked)),
        ]);
    }
    table
}

#[derive(Template)]
#[template(path = "priorities.html")]
struct PrioritiesPage {
    shell: Shell,
    errors: FormErrors,
    from: String,
    until: String,
    scope: String,
    period: String,
    previous: String,
    table: Option<Table>,
    csv: String,
}

/// The table for the period a query asks for, or the form's errors.
async fn read_table(state: &AppState, signed: &SignedIn, period: &PeriodForm) -> Result<Table, Response> {
    let atlas = state.atlas.get();
    let generation = atlas.filing();
    let counts = state
        .usecases
        .priority_counts(&signed.principal, &atlas, generation, None, period.days, period.previous)
        .await
        .map_err(|error| PageError::from_use_case(error, signed).into_response())?;
    Ok(priorities_table(&counts.ranked(), period))
}

/// The home page of a person who reads priorities.
pub(crate) async fn home(state: &AppState, signed: &SignedIn, query: Option<&str>) -> Response {
    let period = PeriodForm::read(&Form::from_query(query), OffsetDateTime::now_utc().date());
    let table = if period.errors.is_empty() {
        match read_table(state, signed, &period).await {
            Ok(table) => Some(table),
            Err(refused) => return refused,
        }
    } else {
        None
    };
    let status = if period.errors.is_empty() { StatusCode::OK } else { StatusCode::UNPROCESSABLE_ENTITY };
    let page = PrioritiesPage {
        shell: Shell::signed(signed, "Priorities", Nav::Home).with_errors(&period.errors),
        scope: scope_words(&signed.person.scope, &state.atlas.get()),
        period: describe_days(period.days),
        previous: describe_days(period.previous),
        csv: format!("{PRIORITIES_CSV}?{}", period.query()),
        table: table.filter(|table| !table.rows.is_empty()),
        errors: period.errors,
        from: period.from,
        until: period.until,
    };
    render(status, &page)
}

/// The name of the download: `grapevine-priorities-FROM-to-LAST.csv`.
fn csv_name(days: DayRange) -> String {
    let (from, to) = days.bounds();
    format!("grapevine-priorities-{from}-to-{}.csv", to.previous_day().unwrap_or(to))
}

async fn priorities_csv(State(state): State<AppState>, Signed(signed): Signed, RawQuery(query): RawQuery) -> Response {
    let period = PeriodForm::read(&Form::from_query(query.as_deref()), OffsetDateTime::now_utc().date());
    if let Some(error) = period.errors.list.first() {
        let page = PageError::new(StatusCode::UNPROCESSABLE_ENTITY, "The period is not right", error.message.clone());
        return page.for_person(&signed).into_response();
    }
    match read_table(&state, &signed, &period).await {
        Ok(table) => table.csv_download(&csv_name(period.days)),
        Err(refused) => refused,
    }
}
