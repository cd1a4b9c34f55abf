//! `/areas/{code}` (analysts, in scope): one area of the filing generation — its trend by category over the twelve
//! months that end with the chosen period (an SVG line chart drawn here, with the same numbers in a table beside
//! it), its priorities for the period against the one before, and its latest insights with a link to all of them.

use std::collections::HashMap;

use askama::Template;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use grapevine_sync_proto::campaign::DEFAULT_CAMPAIGN;
use time::{Date, OffsetDateTime};

use super::chart::{LineChart, Series};
use super::filter::{describe_days, month_name, short_month, PeriodForm};
use super::insights::insights_table;
use super::page::{render, FormErrors, Nav, PageError, Shell};
use super::priorities::area_priorities_table;
use super::session::{Form, Signed};
use super::table::{Cell, Column, Table};
use crate::app::AppState;
use crate::domain::insight_query::{InsightPageRequest, InsightQuery};
use crate::domain::{DayRange, PeriodKind};
use crate::store::CategoryPoint;

const AREA: &str = "/areas/{code}";

/// Categories the chart draws a line each for; the rest are one line together.
const CHART_CATEGORIES: usize = 5;

/// How many of the area's latest insights the page lists.
const LATEST: u32 = 10;

pub(crate) fn router() -> Router<AppState> {
    Router::new().route(AREA, get(area))
}

#[derive(Template)]
#[template(path = "area.html")]
struct AreaPage {
    shell: Shell,
    errors: FormErrors,
    action: String,
    name: String,
    code: String,
    generation: String,
    from: String,
    until: String,
    period: String,
    trend_months: String,
    chart: Option<LineChart>,
    trend: Table,
    priorities: Option<Table>,
    latest: Option<Table>,
    all_insights: String,
}

/// The first day of each month of `months` (whole months).
fn month_starts(months: DayRange) -> Vec<Date> {
    let (mut month, to) = months.bounds();
    let mut starts = Vec::new();
    while month < to {
        starts.push(month);
        month = PeriodKind::Month.end_of(month);
    }
    starts
}

/// The trend's lines: the categories with most insights over the months, then the rest together; each a value per
/// month. The chart draws these and the table beside it shows these, so the two hold the same numbers.
fn trend_series(points: &[CategoryPoint], months: &[Date]) -> Vec<Series> {
    let mut by_category: HashMap<&str, Vec<i64>> = HashMap::new();
    for point in points {
        let Some(index) = months.iter().position(|month| *month == point.period_start) else { continue };
        by_category.entry(point.category.as_str()).or_insert_with(|| vec![0; months.len()])[index] += point.n;
    }
    let mut ranked: Vec<(&str, Vec<i64>)> = by_category.into_iter().collect();
    ranked.sort_by(|(a_slug, a), (b_slug, b)| {
        b.iter().sum::<i64>().cmp(&a.iter().sum::<i64>()).then_with(|| a_slug.cmp(b_slug))
    });
    let label = |slug: &str| DEFAULT_CAMPAIGN.category(slug).map_or_else(|| slug.to_owned(), |c| c.label.to_owned());
    let mut series: Vec<Series> = ranked
        .iter()
        .take(CHART_CATEGORIES)
        .map(|(slug, values)| Series { label: label(slug), values: values.clone() })
        .collect();
    let rest = &ranked[ranked.len().min(CHART_CATEGORIES)..];
    if !rest.is_empty() {
        let values = (0..months.len()).map(|index| rest.iter().map(|(_, values)| values[index]).sum()).collect();
        let label = if rest.len() == 1 { label(rest[0].0) } else { format!("Other categories ({})", rest.len()) };
        series.push(Series { label, values });
    }
    series
}

/// The chart's numbers: a row per month (oldest first, as the chart reads left to right), a column per line.
fn trend_table(name: &str, series: &[Series], months: &[Date]) -> Table {
    let mut columns = vec![Column::text("Month")];
    columns.extend(series.iter().map(|line| Column::number(line.label.clone())));
    let mut table = Table::new(format!("Insights in {name} per month, by category"), columns).with_row_headers();
    for (index, month) in months.iter().enumerate() {
        let mut row = vec![Cell::text(month_name(*month))];
        row.extend(series.iter().map(|line| Cell::number(line.values[index])));
        table.push(row);
    }
    table
}

async fn area(
    State(state): State<AppState>,
    Signed(signed): Signed,
    code: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
) -> Response {
    let Ok(Path(code)) = code else { return PageError::not_found().for_person(&signed).into_response() };
    let period = PeriodForm::read(&Form::from_query(query.as_deref()), OffsetDateTime::now_utc().date());
    let atlas = state.atlas.get();
    let generation = atlas.filing();
    let principal = &signed.principal;
    let trend_months = period.trend_months();
    let trend = match state.usecases.area_trend(principal, &atlas, generation, &code, trend_months).await {
        Ok(trend) => trend,
        Err(error) => return PageError::from_use_case(error, &signed).into_response(),
    };
    let area = trend.area;
    let months = month_starts(trend_months);
    let series = trend_series(&trend.points, &months);
    let labels: Vec<String> = months.iter().map(|month| short_month(*month)).collect();
    let span = match (months.first(), months.last()) {
        (Some(first), Some(last)) => format!("{} to {}", month_name(*first), month_name(*last)),
        _ => String::new(),
    };
    let chart = (!series.is_empty()).then(|| {
        let lines = if series.len() == 1 { "One line".to_owned() } else { format!("{} lines", series.len()) };
        LineChart::new(
            "trend",
            format!("Insights in {} per month by category, {span}", area.name),
            format!(
                "{lines}, one per category with the most insights (the rest together); each line's label gives its \
                 last month's count. The table below has every number."
            ),
            &labels,
            &series,
        )
    });
    let mut priorities = None;
    if period.errors.is_empty() {
        let counts = state
            .usecases
            .priority_counts(principal, &atlas, generation, Some(&area.code), period.days, period.previous)
            .await;
        match counts {
            Ok(counts) => {
                let ranked = counts.ranked();
                priorities = Some(area_priorities_table(ranked.first(), &area.name, &period));
            }
            Err(error) => return PageError::from_use_case(error, &signed).into_response(),
        }
    }
    let query = InsightQuery { areas: vec![area.code.clone()], ..InsightQuery::default() };
    let request = InsightPageRequest { query, cursor: None, limit: LATEST };
    let latest = match state.usecases.list_insights(principal, &atlas, &request).await {
        Ok(page) => insights_table(format!("The insights received last in {}", area.name), &page.items, generation),
        Err(error) => return PageError::from_use_case(error, &signed).into_response(),
    };
    let status = if period.errors.is_empty() { StatusCode::OK } else { StatusCode::UNPROCESSABLE_ENTITY };
    let page = AreaPage {
        shell: Shell::signed(&signed, &area.name, Nav::Home).with_errors(&period.errors),
        action: format!("/areas/{}", area.code),
        name: area.name.clone(),
        code: area.code.clone(),
        generation: format!("{}, generation {}", generation.info.set_name, generation.info.generation),
        period: describe_days(period.days),
        trend_months: span,
        chart,
        trend: trend_table(&area.name, &series, &months),
        priorities,
        latest: Some(latest).filter(|table| !table.rows.is_empty()),
        all_insights: format!("/insights?area={}", area.code),
        errors: period.errors,
        from: period.from,
        until: period.until,
    };
    render(status, &page)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    #[test]
    fn the_trend_draws_the_busiest_categories_and_the_rest_together() {
        let months = month_starts(DayRange { from: Some(date!(2026 - 01 - 01)), to: Some(date!(2026 - 04 - 01)) });
        assert_eq!(months, [date!(2026 - 01 - 01), date!(2026 - 02 - 01), date!(2026 - 03 - 01)]);
        let point =
            |month: Date, category: &str, n: i64| CategoryPoint { period_start: month, category: category.into(), n };
        let mut points = Vec::new();
        for (rank, category) in DEFAULT_CAMPAIGN.categories.iter().take(7).enumerate() {
            let n = 10 - i64::try_from(rank).unwrap();
            points.push(point(months[0], category.slug, n));
            points.push(point(months[2], category.slug, 1));
        }
        let series = trend_series(&points, &months);
        assert_eq!(series.len(), CHART_CATEGORIES + 1);
        assert_eq!(series[0].label, DEFAULT_CAMPAIGN.categories[0].label);
        assert_eq!(series[0].values, [10, 0, 1]);
        assert_eq!(series[CHART_CATEGORIES].label, "Other categories (2)");
        assert_eq!(series[CHART_CATEGORIES].values, [5 + 4, 0, 2]);
        let total: i64 = series.iter().flat_map(|line| line.values.iter()).sum();
        assert_eq!(total, points.iter().map(|point| point.n).sum::<i64>(), "every insight is in some line");
    }
}
