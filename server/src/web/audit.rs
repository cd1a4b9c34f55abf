//! `/audit` (admins): the audit trail, filtered by actor, action and dates, newest first, `PER_PAGE` entries a page,
//! paged by seq ("Older entries" reads before the oldest shown, "Newer entries" after the newest); and
//! `/audit.csv`, every entry the same filter lets through, oldest first, streamed as CSV with a header row.
//! Each read is itself an entry in the trail (the use case records it).

use askama::Template;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures_util::{StreamExt, TryStreamExt};
use time::macros::format_description;
use time::{Date, Duration};

use super::page::{render, FormErrors, Nav, PageError, Shell};
use super::session::{Form, Signed};
use crate::app::AppState;
use crate::audit::{canonical_time, hex, AuditCursor, AuditEntry, AuditFilter};
// A cell a spreadsheet would take for a formula is written with a `'` before it, as in every CSV download.
use crate::export::csv::guarded as cell;

/// Entries on one page.
const PER_PAGE: usize = 50;

/// How many CSV rows may wait for a slow client before reading the next page of the trail waits too.
const IN_FLIGHT: usize = 256;

pub(crate) fn router() -> Router<AppState> {
    Router::new().route("/audit", get(audit)).route("/audit.csv", get(audit_csv))
}

/// The filter as typed (given back in the form and in the paging links) and as understood.
struct Filter {
    actor: String,
    action: String,
    from: String,
    until: String,
    understood: AuditFilter,
    errors: FormErrors,
}

impl Filter {
    fn read(query: &Form) -> Filter {
        let mut errors = FormErrors::default();
        let (actor, action) = (query.get("actor").trim(), query.get("action").trim());
        let date = |field: &'static str, errors: &mut FormErrors| {
            let typed = query.get(field).trim();
            if typed.is_empty() {
                return None;
            }
            let parsed = Date::parse(typed, format_description!("[year]-[month]-[day]")).ok();
            if parsed.is_none() {
                errors.add(field, "Enter a date as year-month-day, for example 2025-03-31");
            }
            parsed
        };
        let from = date("from", &mut errors);
        let until = date("until", &mut errors);
        if let (Some(from), Some(until)) = (from, until) {
            if until < from {
                errors.add("until", "The last day must be the same as or after the first day");
            }
        }
        // A person is named in the trail as `person:EMAIL`; an email alone means them.
        let actor_named = if actor.contains('@') && !actor.contains(':') {
            format!("person:{}", actor.to_lowercase())
        } else {
            actor.to_owned()
        };
        let understood = AuditFilter {
            actor: Some(actor_named).filter(|actor| !actor.is_empty()),
            action: Some(action.to_owned()).filter(|action| !action.is_empty()),
            since: from.map(|day| day.midnight().assume_utc()),
            // The last day is included: entries before the midnight after it.
            until: until.and_then(|day| day.checked_add(Duration::DAY)).map(|day| day.midnight().assume_utc()),
            cursor: AuditCursor::default(),
        };
        Filter {
            actor: actor.to_owned(),
            action: action.to_owned(),
            from: query.get("from").trim().to_owned(),
            until: query.get("until").trim().to_owned(),
            understood,
            errors,
        }
    }

    /// The filter as a query string, for the paging links and the download (`&` separated, to follow a `?`).
    fn query(&self) -> String {
        let mut query = form_urlencoded::Serializer::new(String::new());
        for (name, value) in
            [("actor", &self.actor), ("action", &self.action), ("from", &self.from), ("until", &self.until)]
        {
            if !value.is_empty() {
                query.append_pair(name, value);
            }
        }
        query.finish()
    }

    fn with(&self, name: &str, value: i64) -> String {
        let query = self.query();
        let joiner = if query.is_empty() { "" } else { "&" };
        format!("/audit?{query}{joiner}{name}={value}")
    }
}

struct Row {
    seq: i64,
    at: String,
    actor: String,
    role: String,
    action: String,
    target: String,
    outcome: &'static str,
    client_addr: String,
    detail: String,
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    shell: Shell,
    errors: FormErrors,
    actor: String,
    action: String,
    from: String,
    until: String,
    rows: Vec<Row>,
    /// The seqs of the first and last rows shown.
    newest_seq: i64,
    oldest_seq: i64,
    newer: Option<String>,
    older: Option<String>,
    csv: String,
    filtered: bool,
}

async fn audit(State(state): State<AppState>, Signed(signed): Signed, RawQuery(query): RawQuery) -> Response {
    let query = Form::from_query(query.as_deref());
    let filter = Filter::read(&query);
    let seq = |name: &str| query.get(name).trim().parse::<i64>().ok().filter(|seq| *seq >= 0);
    let cursor = match (seq("before"), seq("after")) {
        (Some(before), _) => AuditCursor::Before(before),
        (None, Some(after)) => AuditCursor::After(after),
        (None, None) => AuditCursor::Before(i64::MAX),
    };
    let mut entries: Vec<AuditEntry> = Vec::new();
    if filter.errors.is_empty() {
        let understood = AuditFilter { cursor, ..filter.understood.clone() };
        let read = match state.usecases.audit_entries(&signed.principal, understood).await {
            Ok(stream) => stream.take(PER_PAGE + 1).try_collect().await.map_err(crate::usecase::UseCaseError::from),
            Err(error) => Err(error),
        };
        match read {
            Ok(read) => entries = read,
            Err(error) => return PageError::from_use_case(error, &signed).into_response(),
        }
    }
    let more = entries.len() > PER_PAGE;
    entries.truncate(PER_PAGE);
    if let AuditCursor::After(_) = cursor {
        entries.reverse();
    }
    let (newest, oldest) = (entries.first().map(|entry| entry.seq), entries.last().map(|entry| entry.seq));
    let (newer, older) = match cursor {
        AuditCursor::Before(before) => (
            newest.filter(|_| before != i64::MAX).map(|newest| filter.with("after", newest)),
            oldest.filter(|_| more).map(|oldest| filter.with("before", oldest)),
        ),
        AuditCursor::After(after) => (
            newest.filter(|_| more).map(|newest| filter.with("after", newest)),
            Some(filter.with("before", oldest.unwrap_or(after.saturating_add(1)))),
        ),
    };
    let rows = entries
        .into_iter()
        .map(|entry| Row {
            seq: entry.seq,
            // To the second on the page; the CSV keeps the trail's microseconds.
            at: canonical_time(entry.at).replace('T', " ").split('.').next().unwrap_or_default().to_owned() + " UTC",
            outcome: entry.outcome.as_str(),
            client_addr: entry.client_addr.unwrap_or_default(),
            detail: entry.detail.to_string(),
            actor: entry.actor,
            role: entry.role,
            action: entry.action,
            target: entry.target,
        })
        .collect();
    let status = if filter.errors.is_empty() { StatusCode::OK } else { StatusCode::UNPROCESSABLE_ENTITY };
    let query = filter.query();
    let page = AuditPage {
        shell: Shell::signed(&signed, "Audit trail", Nav::Audit).with_errors(&filter.errors),
        filtered: !query.is_empty(),
        csv: if query.is_empty() { "/audit.csv".to_owned() } else { format!("/audit.csv?{query}") },
        errors: filter.errors,
        actor: filter.actor,
        action: filter.action,
        from: filter.from,
        until: filter.until,
        rows,
        newest_seq: newest.unwrap_or_default(),
        oldest_seq: oldest.unwrap_or_default(),
        newer,
        older,
    };
    render(status, &page)
}

/// The CSV's columns, in order.
const COLUMNS: [&str; 12] = [
    "seq",
    "at",
    "actor",
    "role",
    "action",
    "target",
    "outcome",
    "client_addr",
    "request_id",
    "detail",
    "prev_hash",
    "hash",
];

fn csv_record(entry: &AuditEntry) -> [String; 12] {
    [
        entry.seq.to_string(),
        canonical_time(entry.at),
        cell(&entry.actor).into_owned(),
        cell(&entry.role).into_owned(),
        cell(&entry.action).into_owned(),
        cell(&entry.target).into_owned(),
        entry.outcome.as_str().to_owned(),
        entry.client_addr.clone().unwrap_or_default(),
        cell(entry.request_id.as_deref().unwrap_or_default()).into_owned(),
        entry.detail.to_string(),
        hex(&entry.prev_hash),
        hex(&entry.hash),
    ]
}

/// One row (or the header) as CSV bytes.
fn csv_line<I, T>(record: I) -> Result<Bytes, csv::Error>
where
    I: IntoIterator<Item = T>,
    T: AsRef<[u8]>,
{
    let mut writer = csv::WriterBuilder::new().from_writer(Vec::new());
    writer.write_record(record)?;
    writer.into_inner().map(Bytes::from).map_err(|error| csv::Error::from(error.into_error()))
}

async fn audit_csv(State(state): State<AppState>, Signed(signed): Signed, RawQuery(query): RawQuery) -> Response {
    let filter = Filter::read(&Form::from_query(query.as_deref()));
    if let Some(error) = filter.errors.list.first() {
        let page = PageError::new(StatusCode::UNPROCESSABLE_ENTITY, "The filter is not right", error.message.clone());
        return page.for_person(&signed).into_response();
    }
    // The stream borrows the use cases, so it is read in a task of its own that owns them; the permission check and
    // the trail's own entry for this read come back first, so a refusal is a page, not a broken download.
    let usecases = state.usecases.clone();
    let principal = signed.principal.clone();
    let understood = filter.understood;
    let body = crate::http::stream::spawn(IN_FLIGHT, move |started, lines| async move {
        let mut entries = match usecases.audit_entries(&principal, understood).await {
            Ok(entries) => {
                started.begin();
                entries
            }
            Err(refused) => return started.refuse(refused),
        };
        if !lines.send(csv_line(COLUMNS).map_err(std::io::Error::other)).await {
            return;
        }
        while let Some(entry) = entries.next().await {
            let line = entry.and_then(|entry| Ok(csv_line(csv_record(&entry))?));
            let failed = line.is_err();
            let line = line.map_err(|error| {
                tracing::error!(error = format!("{error:#}"), "cannot read the audit trail; the download is cut short");
                std::io::Error::other("the audit trail could not be read to its end")
            });
            if !lines.send(line).await || failed {
                break;
            }
        }
    })
    .await;
    match body {
        Ok(body) => crate::http::stream::attachment("text/csv; charset=utf-8", "grapevine-audit.csv", body),
        Err(error) => PageError::from_use_case(error, &signed).into_response(),
    }
}
