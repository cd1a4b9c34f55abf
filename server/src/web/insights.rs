//! `/insights` (the filter and search as a GET form, a page of insights newest first, paged by cursor with the
//! filter kept in every link), `/insights/{id}` (one insight: its words, where it is, its areas in every
//! generation, its history and its triage) and `POST /insights/{id}/triage` (the triage form, sent with its CSRF
//! token and the version it read; a stale version is told "someone else changed this first", with the triage as it
//! is now). Reading and writing are the use cases' (`usecase/insights.rs`): they check, scope and record.

use askama::Template;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use grapevine_sync_proto::campaign::DEFAULT_CAMPAIGN;
use grapevine_sync_proto::document::Author;
use grapevine_sync_proto::{Channel, ErrorCode};
use time::format_description::BorrowedFormatItem;
use time::macros::format_description;

use super::chart::AreaMap;
use super::filter::{channel_label, status_label, Choice, FilterChoices, InsightFilterForm};
use super::page::{page_time, render, FormErrors, Nav, PageError, Shell};
use super::session::{Form, Signed, SignedForm};
use super::table::{Cell, Column, Table};
use crate::app::AppState;
use crate::domain::insight_query::{Cursor, InsightPageRequest, TriageState, DEFAULT_PAGE, MAX_PAGE};
use crate::domain::Action;
use crate::geo::atlas::{Atlas, Generation};
use crate::store::insights::Triage;
use crate::store::{Outcome, OUTSIDE_COVERAGE};
use crate::usecase::insights::{InsightDetail, InsightView, TriageRequest};
use crate::usecase::sign_in::SignedIn;
use crate::usecase::UseCaseError;

const INSIGHTS: &str = "/insights";
const INSIGHT: &str = "/insights/{id}";
const TRIAGE: &str = "/insights/{id}/triage";

/// How many earlier pages a paging link remembers, for "Newer insights"; from further on, it leads to the first.
const PAGES_REMEMBERED: usize = 50;

/// How much of an insight's words a list shows.
const EXCERPT_CHARS: usize = 120;

pub(crate) fn router() -> Router<AppState> {
    Router::new().route(INSIGHTS, get(list)).route(INSIGHT, get(one)).route(TRIAGE, post(triage))
}

/// The path of one insight's page.
pub(crate) fn insight_path(id: impl std::fmt::Display) -> String {
    format!("/insights/{id}")
}

/// A capture time as the phone said it: its own local time and its offset from UTC.
const LOCAL_TIME: &[BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day] [hour]:[minute] (UTC[offset_hour sign:mandatory]:[offset_minute])");

fn captured(view: &InsightView) -> String {
    view.record.row.captured_at.and_then(|at| at.format(LOCAL_TIME).ok()).unwrap_or_else(|| "Not given".to_owned())
}

fn category_label(slug: Option<&str>) -> String {
    match slug {
        Some(slug) => {
            DEFAULT_CAMPAIGN.category(slug).map_or_else(|| slug.to_owned(), |category| category.label.to_owned())
        }
        None => "None".to_owned(),
    }
}

/// The start of what was said, for a list.
fn excerpt(text: &str) -> String {
    let mut words: String = text.chars().take(EXCERPT_CHARS).collect();
    if text.chars().nth(EXCERPT_CHARS).is_some() {
        words.push('…');
    }
    words
}

/// Where an insight lies in `generation`: the area's name, or that it lies outside every area.
fn area_in(view: &InsightView, generation: &Generation) -> String {
    let tag = view.record.row.tags.iter().find(|tag| tag.generation_id == generation.info.id);
    match tag {
        Some(tag) if tag.area_code != OUTSIDE_COVERAGE => {
            generation.boundaries.area(&tag.area_code).map_or_else(|| tag.area_code.clone(), |area| area.name.clone())
        }
        Some(_) => "Outside every area".to_owned(),
        None => "None".to_owned(),
    }
}

/// A table of insights, each row linking to the insight's page.
pub(crate) fn insights_table(caption: String, items: &[InsightView], generation: &Generation) -> Table {
    let mut table = Table::new(
        caption,
        vec![
            Column::text("Captured"),
            Column::text("Category"),
            Column::text("What they said"),
            Column::text("Area"),
            Column::number("Feeling safe"),
            Column::text("Triage"),
        ],
    );
    for view in items {
        let row = &view.record.row;
        let words = match row.text.as_deref().map(str::trim) {
            Some(text) if !text.is_empty() => excerpt(text),
            _ => format!("Insight {} (no words)", &row.id.simple().to_string()[..8]),
        };
        table.push(vec![
            Cell::text(captured(view)),
            Cell::text(category_label(row.category.as_deref())),
            Cell::link(words, insight_path(row.id)),
            Cell::text(area_in(view, generation)),
            Cell::text(row.feeling_safe.map(|score| format!("{score} of 5")).unwrap_or_default()),
            Cell::tag(view.record.triage.state.label()),
        ]);
    }
    table
}

#[derive(Template)]
#[template(path = "insights.html")]
struct InsightsPage {
    shell: Shell,
    errors: FormErrors,
    filter: InsightFilterForm,
    choices: FilterChoices,
    table: Option<Table>,
    newer: Option<String>,
    older: Option<String>,
    first_page: bool,
}

/// The cursors of the pages before this one (`back`, dot-separated, oldest first); none if any is not a cursor.
fn remembered(text: &str) -> Vec<Cursor> {
    let cursors: Result<Vec<Cursor>, String> =
        text.split('.').filter(|part| !part.is_empty()).map(Cursor::decode).collect();
    cursors.unwrap_or_default()
}

fn cursor_query(cursor: Cursor, back: &[Cursor]) -> String {
    let mut query = format!("cursor={}", cursor.encode());
    if !back.is_empty() {
        let back: Vec<String> = back.iter().map(|cursor| cursor.encode()).collect();
        query.push_str(&format!("&back={}", back.join(".")));
    }
    query
}

/// The filter's choices of area: those of the generation read that the person may see.
async fn choices(
    state: &AppState,
    signed: &SignedIn,
    atlas: &Atlas,
    generation: &Generation,
) -> Result<FilterChoices, UseCaseError> {
    let areas = state
        .usecases
        .areas_in_scope(&signed.principal, atlas, generation, Action::ReadInsights, "insights.read")
        .await?;
    Ok(FilterChoices::new(areas.into_iter().map(|area| (area.code.clone(), area.name.clone()))))
}

/// The generation a filter reads areas in: the one it names, or the filing set's newest.
pub(crate) fn generation_of<'a>(atlas: &'a Atlas, filter: &InsightFilterForm) -> &'a Generation {
    atlas.find(filter.query.set.as_deref(), filter.query.generation).unwrap_or_else(|| atlas.filing())
}

async fn list(State(state): State<AppState>, Signed(signed): Signed, RawQuery(query): RawQuery) -> Response {
    let filter = InsightFilterForm::read(query.as_deref());
    let sent = Form::from_query(query.as_deref());
    let cursor = Cursor::decode(sent.get("cursor")).ok();
    let back = if cursor.is_some() { remembered(sent.get("back")) } else { Vec::new() };
    // A page length other than the default, kept in the paging links.
    let limit = sent.get("limit").parse::<u32>().ok().filter(|limit| (1..=MAX_PAGE).contains(limit));
    let kept_limit = limit.map(|limit| format!("limit={limit}")).unwrap_or_default();
    let with_limit = |more: String| {
        [kept_limit.clone(), more].into_iter().filter(|part| !part.is_empty()).collect::<Vec<_>>().join("&")
    };
    let atlas = state.atlas.get();
    let generation = generation_of(&atlas, &filter);
    let (mut table, mut newer, mut older) = (None, None, None);
    if filter.errors.is_empty() {
        let request = InsightPageRequest { query: filter.query.clone(), cursor, limit: limit.unwrap_or(DEFAULT_PAGE) };
        let page = match state.usecases.list_insights(&signed.principal, &atlas, &request).await {
            Ok(page) => page,
            Err(error) => return PageError::from_use_case(error, &signed).into_response(),
        };
        if let Some(next) = page.next_cursor {
            let mut trail = back.clone();
            trail.extend(cursor);
            let skip = trail.len().saturating_sub(PAGES_REMEMBERED);
            older = Some(filter.link(INSIGHTS, &with_limit(cursor_query(next, &trail[skip..]))));
        }
        if cursor.is_some() {
            newer = Some(match back.split_last() {
                Some((previous, earlier)) => filter.link(INSIGHTS, &with_limit(cursor_query(*previous, earlier))),
                None => filter.link(INSIGHTS, &with_limit(String::new())),
            });
        }
        let caption = if cursor.is_some() {
            "Insights, the most recently received first (continued)"
        } else {
            "Insights, the most recently received first"
        };
        table =
            Some(insights_table(caption.to_owned(), &page.items, generation)).filter(|table| !table.rows.is_empty());
    }
    let choices = match choices(&state, &signed, &atlas, generation).await {
        Ok(choices) => choices,
        Err(error) => return PageError::from_use_case(error, &signed).into_response(),
    };
    let status = if filter.errors.is_empty() { StatusCode::OK } else { StatusCode::UNPROCESSABLE_ENTITY };
    let page = InsightsPage {
        shell: Shell::signed(&signed, "Insights", Nav::Insights).with_errors(&filter.errors),
        errors: filter.errors.clone(),
        first_page: cursor.is_none(),
        filter,
        choices,
        table,
        newer,
        older,
    };
    render(status, &page)
}

/// One line of an insight's triage notes.
struct NoteLine {
    at: String,
    author: String,
    text: String,
}

/// What the triage form held when it came back (so nothing typed is lost).
#[derive(Debug, Default)]
struct TriageSent {
    state: String,
    note: String,
    tag: String,
    priority: String,
}

/// What the page says at its top after the form.
enum TriageOutcome {
    Shown,
    Saved,
    /// Someone else wrote first: the form comes back with what was sent, against the triage as it is now.
    Changed(TriageSent),
    Refused(FormErrors, TriageSent),
}

#[derive(Template)]
#[template(path = "insight.html")]
struct InsightPage {
    shell: Shell,
    errors: FormErrors,
    saved: bool,
    changed: bool,
    heading: String,
    text: String,
    summary: Vec<(&'static str, String)>,
    map: Option<AreaMap>,
    place: String,
    areas: Table,
    history: Table,
    triage_state: &'static str,
    triage_summary: Vec<(&'static str, String)>,
    notes: Vec<NoteLine>,
    states: Vec<Choice>,
    priorities: Vec<Choice>,
    version: i64,
    current_state: &'static str,
    sent: TriageSent,
    action: String,
    csrf: String,
}

impl InsightPage {
    /// Whether the state `value` is the one to check: the one sent, or else the current one.
    fn state_checked(&self, value: &str) -> bool {
        if self.sent.state.is_empty() {
            value == self.current_state
        } else {
            value == self.sent.state
        }
    }
}

fn located_by(view: &InsightView) -> String {
    let row = &view.record.row;
    match (&row.gps, &row.postcode, &row.picked_area_code) {
        (Some((lat, lon, accuracy)), _, _) => format!("GPS: {lat:.5}, {lon:.5}, within {accuracy:.0} m"),
        (None, Some(postcode), _) => format!("Postcode {postcode} (its centre)"),
        (None, None, Some(code)) => format!("Picked from a list: area {code}"),
        _ => "Not placed".to_owned(),
    }
}

/// The insight's map: its area in the filing generation (else the first generation that places it in an area) with
/// its point.
fn map_of(view: &InsightView, atlas: &Atlas) -> (Option<AreaMap>, String) {
    let row = &view.record.row;
    let inside = |generation_id: i64| {
        row.tags.iter().find(|tag| tag.generation_id == generation_id && tag.area_code != OUTSIDE_COVERAGE)
    };
    let tag = inside(atlas.filing().info.id).or_else(|| row.tags.iter().find(|tag| tag.area_code != OUTSIDE_COVERAGE));
    let found = tag.and_then(|tag| {
        let generation = atlas.generation_by_id(tag.generation_id)?;
        Some((generation, generation.boundaries.area(&tag.area_code)?))
    });
    let point = row.gps.map(|(lat, lon, _)| (lat, lon)).or(row.tag_point);
    let Some((generation, area)) = found else {
        let why = if matches!(row.outcome, Outcome::Rejected { .. }) {
            "It was rejected, so it is in no area."
        } else {
            "It lies outside every area, so there is no area to draw."
        };
        return (None, why.to_owned());
    };
    let set = &generation.info.set_name;
    let title = format!("Where the insight is: in {} ({set} {})", area.name, generation.info.generation);
    let description = match point {
        Some((lat, lon)) => format!(
            "The outline of {}, with the insight's point marked by a dot at latitude {lat:.5}, longitude {lon:.5}.",
            area.name
        ),
        None => format!("The outline of {}; the insight has no point to mark.", area.name),
    };
    let place = format!("In {} ({set}, generation {}).", area.name, generation.info.generation);
    (Some(AreaMap::new(title, description, &area.shape, point)), place)
}

/// The insight's areas in every generation.
fn areas_table(view: &InsightView, atlas: &Atlas) -> Table {
    let mut table = Table::new(
        "Its area in every boundary generation",
        vec![
            Column::text("Boundary set"),
            Column::number("Generation"),
            Column::text("Area"),
            Column::text("Area code"),
            Column::text("Near a border"),
        ],
    );
    for tag in &view.record.row.tags {
        let Some(generation) = atlas.generation_by_id(tag.generation_id) else { continue };
        let inside = tag.area_code != OUTSIDE_COVERAGE;
        table.push(vec![
            Cell::text(generation.info.set_name.clone()),
            Cell::number(generation.info.generation),
            Cell::text(if inside {
                generation.boundaries.area(&tag.area_code).map_or_else(String::new, |area| area.name.clone())
            } else {
                "Outside every area".to_owned()
            }),
            Cell::text(if inside { tag.area_code.clone() } else { String::new() }),
            Cell::text(if tag.near_boundary { "Yes" } else { "No" }),
        ]);
    }
    table
}

fn history_table(detail: &InsightDetail) -> Table {
    let mut table = Table::new(
        "Its history: every version, oldest first",
        vec![Column::text("When"), Column::text("By"), Column::text("What changed")],
    );
    for version in &detail.history {
        let changed: Vec<String> = version
            .changed
            .iter()
            .map(|(field, value)| format!("{}: {}", field.replace('_', " "), value.as_deref().unwrap_or("removed")))
            .collect();
        table.push(vec![
            Cell::text(version.at.map_or_else(|| "Not stamped".to_owned(), page_time)),
            Cell::text(match version.by {
                Author::Phone => "Phone",
                Author::Server => "Server",
            }),
            Cell::text(changed.join("; ")),
        ]);
    }
    table
}

fn triage_summary(triage: &Triage) -> Vec<(&'static str, String)> {
    let none = |list: &[String]| if list.is_empty() { "None".to_owned() } else { list.join(", ") };
    vec![
        ("Tags", none(&triage.tags)),
        ("Linked priorities", none(&triage.priorities)),
        (
            "Last changed",
            match (&triage.updated_at, &triage.updated_by) {
                (Some(at), Some(by)) => format!("{} by {by} (version {})", page_time(*at), triage.version),
                (Some(at), None) => format!("{} (version {})", page_time(*at), triage.version),
                _ => "Never triaged".to_owned(),
            },
        ),
    ]
}

/// The priorities the form offers: every category of the campaign in the insight's area (its filing set's newest
/// generation), as `SET:AREA:CATEGORY`.
fn priority_choices(view: &InsightView, atlas: &Atlas) -> Vec<Choice> {
    let generation = atlas.filing();
    let Some(tag) = view
        .record
        .row
        .tags
        .iter()
        .find(|tag| tag.generation_id == generation.info.id && tag.area_code != OUTSIDE_COVERAGE)
    else {
        return Vec::new();
    };
    let name = generation.boundaries.area(&tag.area_code).map_or(tag.area_code.as_str(), |area| area.name.as_str());
    DEFAULT_CAMPAIGN
        .categories
        .iter()
        .map(|category| Choice {
            value: format!("{}:{}:{}", generation.info.set_name, tag.area_code, category.slug),
            label: format!("{}: {name}", category.label),
        })
        .collect()
}

async fn insight_page(state: &AppState, signed: &SignedIn, id: &str, outcome: TriageOutcome) -> Response {
    let atlas = state.atlas.get();
    let detail = match state.usecases.insight_detail(&signed.principal, &atlas, id).await {
        Ok(detail) => detail,
        Err(error) => return PageError::from_use_case(error, signed).into_response(),
    };
    let view = &detail.view;
    let row = &view.record.row;
    let triage = &view.record.triage;
    let (map, place) = map_of(view, &atlas);
    let mut summary = vec![
        ("Category", category_label(row.category.as_deref())),
        ("Captured", captured(view)),
        ("Feeling safe", row.feeling_safe.map_or_else(|| "Not given".to_owned(), |score| format!("{score} of 5"))),
        (
            "Channel",
            row.channel
                .as_deref()
                .map(|channel| {
                    Channel::parse(channel).map_or_else(|| channel.to_owned(), |known| channel_label(known).to_owned())
                })
                .unwrap_or_else(|| "Not given".to_owned()),
        ),
        ("Placed by", located_by(view)),
        ("Status", status_label(row.outcome.status()).to_owned()),
    ];
    if let Outcome::Rejected { message, .. } = &row.outcome {
        summary.push(("Why it was rejected", message.clone()));
    }
    summary.push(("Collector", view.collector.clone()));
    summary.push(("Cohort", view.record.cohort.clone().unwrap_or_else(|| "None".to_owned())));
    summary.push(("Received", page_time(row.processed_at)));
    let (errors, sent, saved, changed) = match outcome {
        TriageOutcome::Shown => (FormErrors::default(), TriageSent::default(), false, false),
        TriageOutcome::Saved => (FormErrors::default(), TriageSent::default(), true, false),
        TriageOutcome::Changed(sent) => (FormErrors::default(), sent, false, true),
        TriageOutcome::Refused(errors, sent) => (errors, sent, false, false),
    };
    let status = if changed {
        StatusCode::CONFLICT
    } else if errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    let action = format!("{}/triage", insight_path(row.id));
    let heading = format!("{} insight", category_label(row.category.as_deref()));
    let page = InsightPage {
        shell: Shell::signed(signed, &heading, Nav::Insights).with_errors(&errors),
        errors,
        saved,
        changed,
        heading,
        text: row.text.clone().unwrap_or_default(),
        summary,
        map,
        place,
        areas: areas_table(view, &atlas),
        history: history_table(&detail),
        triage_state: triage.state.label(),
        triage_summary: triage_summary(triage),
        notes: triage
            .notes
            .iter()
            .map(|note| NoteLine { at: page_time(note.at), author: note.author.clone(), text: note.text.clone() })
            .collect(),
        states: TriageState::ALL
            .iter()
            .map(|state| Choice { value: state.as_str().into(), label: state.label().into() })
            .collect(),
        priorities: priority_choices(view, &atlas),
        version: triage.version,
        current_state: triage.state.as_str(),
        sent,
        csrf: signed.csrf_token(&action),
        action,
    };
    render(status, &page)
}

async fn one(
    State(state): State<AppState>,
    Signed(signed): Signed,
    id: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
) -> Response {
    let Ok(Path(id)) = id else { return PageError::not_found().for_person(&signed).into_response() };
    let saved = Form::from_query(query.as_deref()).get("saved") == "1";
    let outcome = if saved { TriageOutcome::Saved } else { TriageOutcome::Shown };
    insight_page(&state, &signed, &id, outcome).await
}

/// The form field a refusal of the triage is about.
fn triage_field(message: &str) -> &'static str {
    if message.contains("note") {
        "note"
    } else if message.starts_with("tag") {
        "tag"
    } else if message.starts_with("priority") {
        "priority"
    } else {
        "state-new"
    }
}

async fn triage(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
    SignedForm { signed, form }: SignedForm,
) -> Response {
    let Ok(Path(id)) = id else { return PageError::not_found().for_person(&signed).into_response() };
    let sent = TriageSent {
        state: form.get("state").trim().to_owned(),
        note: form.get("note").to_owned(),
        tag: form.get("tag").trim().to_owned(),
        priority: form.get("priority").trim().to_owned(),
    };
    let Ok(version) = form.get("version").trim().parse::<i64>() else {
        let errors = FormErrors::one("state-new", "This form is out of date: here is the insight as it is now");
        return insight_page(&state, &signed, &id, TriageOutcome::Refused(errors, sent)).await;
    };
    let chosen = TriageState::parse(&sent.state);
    if chosen.is_none() && !sent.state.is_empty() {
        let errors = FormErrors::one("state-new", "Choose one of the triage states");
        return insight_page(&state, &signed, &id, TriageOutcome::Refused(errors, sent)).await;
    }
    let request = TriageRequest {
        version,
        // The state as read is sent back unchanged unless the analyst chose another.
        state: chosen.filter(|state| state.as_str() != form.get("state_read")),
        note: Some(sent.note.trim().to_owned()).filter(|note| !note.is_empty()),
        add_tags: [sent.tag.clone()].into_iter().filter(|tag| !tag.is_empty()).collect(),
        link_priorities: [sent.priority.clone()].into_iter().filter(|priority| !priority.is_empty()).collect(),
        ..TriageRequest::default()
    };
    let atlas = state.atlas.get();
    match state.usecases.update_triage(&signed.principal, &atlas, &id, request).await {
        Ok(_) => super::see_other(&format!("{}?saved=1", insight_path(id.trim()))),
        Err(UseCaseError::Conflict { code: ErrorCode::TriageChanged, .. }) => {
            insight_page(&state, &signed, &id, TriageOutcome::Changed(sent)).await
        }
        Err(UseCaseError::Invalid { code: ErrorCode::TriageInvalid, message }) => {
            let (field, message) = if message.contains("changes nothing") {
                ("state-new", "Choose another state, or add a note, a tag or a priority".to_owned())
            } else {
                (triage_field(&message), super::filter::sentence(&message))
            };
            let errors = FormErrors::one(field, message);
            insight_page(&state, &signed, &id, TriageOutcome::Refused(errors, sent)).await
        }
        Err(error) => PageError::from_use_case(error, &signed).into_response(),
    }
}
