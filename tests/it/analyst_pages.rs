//! The analyst's pages over HTTP, as a browser without JavaScript uses them, on both backends, with insights sent by
//! real phones: the priorities table at home (and its CSV, holding the same rows), an area's trend as an SVG chart
//! with the same numbers in a table, the insights filtered, searched and paged by cursor with the filter kept, one
//! insight with its map, areas, history and triage form (saved; a stale version told someone else changed it
//! first; no CSRF token refused), a scoped analyst kept to their areas, and other roles refused.

use futures_util::TryStreamExt;
use grapevine_client_sdk::{Channel, Draft, Location};
use grapevine_server::audit::{AuditEntry, AuditFilter, AuditOutcome};
use grapevine_server::domain::{Principal, RequestContext};
use grapevine_tests::points::{ABBEY_HULTON, JOINERS_SQUARE};
use grapevine_tests::{Backend, Phone, TestApp};
use reqwest::StatusCode;
use time::macros::datetime;
use time::OffsetDateTime;

use crate::web::{between, paging_link, usecases, Browser, Page, PASSWORD};

/// A person of `role` with a password, signed in in a browser of their own.
async fn signed_in(app: &TestApp, email: &str, role: &str, scope: Option<&str>) -> Browser {
    use secrecy::ExposeSecret;
    let door = usecases(app).await;
    door.add_person(&Principal::operator(), email, role, scope).await.unwrap();
    let link = door.issue_password_link(&Principal::operator(), email).await.unwrap();
    door.set_password(link.token.expose_secret(), &secrecy::SecretString::from(PASSWORD), RequestContext::default())
        .await
        .unwrap();
    let browser = Browser::new(app);
    browser.sign_in(email, PASSWORD).await;
    browser
}

/// Captures an insight on `phone` (not yet synced).
async fn capture(phone: &Phone, category: &str, text: &str, point: (&str, f64, f64), at: OffsetDateTime) -> uuid::Uuid {
    let (_, lat, lon) = point;
    phone
        .store
        .capture(Draft {
            category: category.into(),
            text: text.into(),
            feeling_safe: Some(2),
            location: Location::Gps { lat, lon, accuracy_m: 15.0 },
            channel: Channel::Pupil,
            captured_at: Some(at),
            campaign: None,
        })
        .await
        .unwrap()
}

/// Joiner's Square: three about drugs and one about anti-social behaviour in November 2026, one about drugs in
/// October; Abbey Hulton: two about anti-social behaviour in November. Returns the first insight's id.
pub(crate) async fn the_neighbourhood(app: &TestApp) -> uuid::Uuid {
    let phone = Phone::new(app, "a barber's phone").await;
    let november = datetime!(2026-11-20 17:45 +00:00);
    let first = capture(&phone, "drugs", "Dealing outside the chip shop after school", JOINERS_SQUARE, november).await;
    capture(&phone, "drugs", "Needles in the park by the swings", JOINERS_SQUARE, november).await;
    capture(&phone, "drugs", "Cars stopping for a minute then going, every night", JOINERS_SQUARE, november).await;
    capture(&phone, "asb", "Fireworks at the bus stop", JOINERS_SQUARE, november).await;
    capture(&phone, "drugs", "Dealing by the chip shop again", JOINERS_SQUARE, datetime!(2026-10-03 09:00 +01:00))
        .await;
    capture(&phone, "asb", "Quad bikes on the field", ABBEY_HULTON, november).await;
    capture(&phone, "asb", "Shouting outside the shop at night", ABBEY_HULTON, november).await;
    phone.sync(app).await.unwrap();
    first
}

/// The set the bundled wards are in.
async fn ward_set(app: &TestApp) -> String {
    app.areas("").await["boundaries"]["set"].as_str().unwrap().to_owned()
}

/// The CSV's rows, header first.
fn csv_rows(text: &str) -> Vec<Vec<String>> {
    let text = text.strip_prefix('\u{feff}').expect("the CSV starts with a byte order mark, for Excel");
    let mut reader = csv::ReaderBuilder::new().has_headers(false).from_reader(text.as_bytes());
    reader.records().map(|record| record.unwrap().iter().map(str::to_owned).collect()).collect()
}

/// A page's text with askama's escapes undone, for comparing with what was said.
fn unescaped(page: &Page) -> String {
    page.body.replace("&#39;", "'").replace("&#38;", "&").replace("&amp;", "&").replace("&quot;", "\"")
}

const NOVEMBER: &str = "from=2026-11-01&until=2026-11-30";

async fn an_analyst_reads_the_priorities_an_area_and_downloads_the_table(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    the_neighbourhood(&app).await;
    let analyst = signed_in(&app, "analyst@example.org", "analyst", None).await;

    let home = analyst.get(&format!("/?{NOVEMBER}")).await;
    assert_eq!(home.status, StatusCode::OK, "{}", home.body);
    let text = unescaped(&home);
    assert!(text.contains("Priorities by area: November 2026 compared with October 2026"), "{text}");
    let joiners = text.find(&format!("/areas/{}?", JOINERS_SQUARE.0)).expect("a row for Joiner's Square");
    let abbey = text.find(&format!("/areas/{}?", ABBEY_HULTON.0)).expect("a row for Abbey Hulton");
    assert!(joiners < abbey, "the busiest area first");

    // The download holds the rows the page shows.
    let download = analyst.get(&format!("/priorities.csv?{NOVEMBER}")).await;
    assert_eq!(download.status, StatusCode::OK);
    assert!(download.headers["content-type"].to_str().unwrap().starts_with("text/csv"));
    assert!(download.headers["content-disposition"].to_str().unwrap().contains("2026-11-01-to-2026-11-30.csv"));
    let rows = csv_rows(&download.body);
    assert_eq!(
        rows[0],
        ["Area", "Area code", "Insights", "Period before", "Change", "Top concern", "Second concern", "Third concern"]
    );
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert_eq!(&rows[1][1..], [JOINERS_SQUARE.0, "4", "1", "+3", "Drugs (3)", "Anti-social behaviour (1)", ""]);
    assert_eq!(&rows[2][1..], [ABBEY_HULTON.0, "2", "0", "+2", "Anti-social behaviour (2)", "", ""]);
    for row in &rows[1..] {
        assert!(text.contains(&format!(">{}</a></th>", row[0])), "the page shows {}", row[0]);
    }

    // The area: its trend over the twelve months to November, drawn and tabled, its priorities, its insights.
    let area = analyst.get(&format!("/areas/{}?{NOVEMBER}", JOINERS_SQUARE.0)).await;
    assert_eq!(area.status, StatusCode::OK, "{}", area.body);
    let text = unescaped(&area);
    let chart = between(&text, "<svg class=\"chart\"", "</svg>");
    assert!(chart.contains("role=\"img\"") && chart.contains("aria-labelledby=\"trend-title trend-desc\""), "{chart}");
    assert!(between(chart, "<title id=\"trend-title\">", "</title>").ends_with("December 2025 to November 2026"));
    assert!(chart.contains(">Drugs (3)</text>") && chart.contains(">Anti-social behaviour (1)</text>"), "{chart}");
    let trend = between(&text, "per month, by category</caption>", "</table>");
    let headings = between(trend, "<thead>", "</thead>");
    assert!(headings.find(">Drugs</th>") < headings.find(">Anti-social behaviour</th>"), "busiest first: {headings}");
    let counts = |month: &str| -> Vec<String> {
        let row = between(trend, &format!("<th scope=\"row\">{month}</th>"), "</tr>");
        row.split("<td class=\"table__numeric\">")
            .skip(1)
            .map(|cell| cell.split('<').next().unwrap().to_owned())
            .collect()
    };
    assert_eq!(counts("December 2025"), ["0", "0"]);
    assert_eq!(counts("October 2026"), ["1", "0"]);
    assert_eq!(counts("November 2026"), ["3", "1"], "Drugs, then anti-social behaviour");
    let priorities = between(&text, "<caption>Priorities in", "</table>");
    assert!(priorities.contains("November 2026 compared with October 2026"), "{priorities}");
    assert!(text.contains("Dealing outside the chip shop after school"), "the latest insights are listed");
    assert!(text.contains(&format!("href=\"/insights?area={}\"", JOINERS_SQUARE.0)), "a link to all of them");
    app.stop().await;
}

async fn a_scoped_analyst_sees_only_their_areas_and_other_roles_none(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let first = the_neighbourhood(&app).await;
    let set = ward_set(&app).await;
    let scoped = signed_in(&app, "scoped@example.org", "analyst", Some(&format!("{set}:{}", ABBEY_HULTON.0))).await;

    let home = scoped.get(&format!("/?{NOVEMBER}")).await;
    assert_eq!(home.status, StatusCode::OK);
    assert!(home.body.contains(&format!("/areas/{}?", ABBEY_HULTON.0)) && !home.body.contains(JOINERS_SQUARE.0));
    let rows = csv_rows(&scoped.get(&format!("/priorities.csv?{NOVEMBER}")).await.body);
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[1][1], ABBEY_HULTON.0);
    // Outside the scope is answered as absent, everywhere.
    for path in [
        format!("/areas/{}", JOINERS_SQUARE.0),
        format!("/insights?area={}", JOINERS_SQUARE.0),
        format!("/insights/{first}"),
    ] {
        assert_eq!(scoped.get(&path).await.status, StatusCode::NOT_FOUND, "{path}");
    }
    let list = scoped.get("/insights").await;
    assert_eq!(list.status, StatusCode::OK);
    assert!(list.body.contains("Quad bikes on the field") && !list.body.contains("chip shop"), "{}", list.body);
    assert!(!list.body.contains(&format!("value=\"{}\"", JOINERS_SQUARE.0)), "no other area to choose");

    for role in ["board", "admin"] {
        let browser = signed_in(&app, &format!("{role}@example.org"), role, None).await;
        for path in ["/insights", &format!("/insights/{first}"), "/exports", "/priorities.csv"] {
            let page = browser.get(path).await;
            assert_eq!(page.status, StatusCode::FORBIDDEN, "{role} {path}");
            assert!(page.body.contains("You cannot use this page"), "{}", page.body);
        }
        let home = browser.get("/").await;
        assert!(home.body.contains(&format!("You are signed in as {role}@example.org")), "{}", home.body);
        assert!(!home.body.contains("href=\"/insights\""), "no analysts' pages in the navigation of a {role}");
    }
    // Each refusal is in the trail, the exports page's too.
    let door = usecases(&app).await;
    let filter = AuditFilter { action: Some("export.insights".into()), ..AuditFilter::default() };
    let refused: Vec<AuditEntry> =
        door.audit_entries(&Principal::operator(), filter).await.unwrap().try_collect().await.unwrap();
    for role in ["board", "admin"] {
        assert!(
            refused
                .iter()
                .any(|entry| entry.actor == format!("person:{role}@example.org")
                    && entry.outcome == AuditOutcome::Refused),
            "{role}: {refused:?}"
        );
    }
    app.stop().await;
}

async fn insights_are_filtered_searched_and_paged_with_the_filter_kept(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    the_neighbourhood(&app).await;
    let analyst = signed_in(&app, "analyst@example.org", "analyst", None).await;

    let searched = unescaped(&analyst.get("/insights?q=chip+shop&area=&category=").await);
    assert!(searched.contains("Dealing outside the chip shop after school"), "{searched}");
    assert!(searched.contains("Dealing by the chip shop again"));
    assert!(!searched.contains("Needles in the park"));
    assert!(searched.contains("value=\"chip shop\""), "the search is kept in the form");

    // Drugs in Joiner's Square, one a page: four pages, newest first, nothing twice, the filter in every link.
    let filter = format!("area={}&category=drugs", JOINERS_SQUARE.0);
    let mut page = analyst.get(&format!("/insights?{filter}&limit=1")).await;
    let mut seen: Vec<String> = Vec::new();
    loop {
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        let ids: Vec<String> = page
            .body
            .split("<a href=\"/insights/")
            .skip(1)
            .map(|link| link.split('"').next().unwrap().to_owned())
            .collect();
        assert_eq!(ids.len(), 1, "one a page");
        seen.extend(ids);
        if !page.body.contains("rel=\"next\"") {
            break;
        }
        let next = paging_link(&page, "next");
        assert!(next.contains(&filter) && next.contains("limit=1") && next.contains("cursor="), "{next}");
        page = analyst.get(&next).await;
    }
    assert_eq!(seen.len(), 4, "{seen:?}");
    let mut distinct = seen.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 4, "no insight twice: {seen:?}");
    // Back from the last page, a page at a time, to the first.
    for shown in (0..3).rev() {
        page = analyst.get(&paging_link(&page, "prev")).await;
        assert!(page.body.contains(&format!("/insights/{}\"", seen[shown])), "page {shown}: {}", page.body);
    }
    assert!(!page.body.contains("rel=\"prev\""), "the first page has no newer page");

    // A wrong field is said beside it, linked from the summary; nothing is listed.
    let wrong = analyst.get("/insights?category=unicorns&feeling_safe_min=3").await;
    assert_eq!(wrong.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(wrong.body.contains("<a href=\"#category\">") && wrong.body.contains("id=\"category-error\""));
    assert!(wrong.body.starts_with("<!DOCTYPE html>") && wrong.body.contains("<title>Error: Insights"));
    assert!(!wrong.body.contains("<a href=\"/insights/"), "nothing listed under a filter that is wrong");
    app.stop().await;
}

/// The value of the hidden field `name` in the page's triage form.
fn hidden(page: &Page, name: &str) -> String {
    between(&page.body, &format!("name=\"{name}\" value=\""), "\"").to_owned()
}

async fn triage_is_saved_and_a_stale_version_is_told_someone_else_changed_it_first(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let id = the_neighbourhood(&app).await;
    let set = ward_set(&app).await;
    let ann = signed_in(&app, "ann@example.org", "analyst", None).await;
    let bob = signed_in(&app, "bob@example.org", "analyst", None).await;
    let path = format!("/insights/{id}");
    let action = format!("{path}/triage");

    let page = ann.get(&path).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let text = unescaped(&page);
    assert!(text.contains("<blockquote class=\"quote\">Dealing outside the chip shop after school</blockquote>"));
    let map = between(&text, "<svg class=\"map\"", "</svg>");
    assert!(map.contains("role=\"img\"") && map.contains("<circle class=\"map__point\""), "{map}");
    assert!(between(map, "<title id=\"map-title\">", "</title>").starts_with("Where the insight is: in "));
    assert!(text.contains("2026-11-20 17:45 (UTC+00:00)"), "the time the phone said, with its offset");
    assert!(text.contains("Its area in every boundary generation") && text.contains(JOINERS_SQUARE.0));
    assert!(between(&text, "Its history", "</table>").contains("<td>Phone</td>"), "the phone's version");
    assert_eq!(hidden(&page, "version"), "0");

    // Bob reads it too, then Ann saves first.
    let bobs = bob.get(&path).await;
    let priority = format!("{set}:{}:drugs", JOINERS_SQUARE.0);
    let saved = ann
        .post(
            &action,
            &[
                ("csrf", &page.csrf(&action)),
                ("version", "0"),
                ("state_read", "new"),
                ("state", "reviewed"),
                ("note", "Passed to the neighbourhood team"),
                ("tag", "Chip Shop"),
                ("priority", &priority),
            ],
        )
        .await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);
    assert_eq!(saved.location(), format!("{path}?saved=1"));
    let after = unescaped(&ann.get(saved.location()).await);
    assert!(after.contains("The triage is saved."), "{after}");
    assert!(after.contains("<span class=\"tag\">Reviewed</span>"));
    assert!(after.contains("Passed to the neighbourhood team") && after.contains("chip-shop"));
    assert!(after.contains(&priority), "the linked priority");
    assert!(after.contains("name=\"version\" value=\"1\""));

    // Bob's form still says version 0: nothing of his is saved, and he sees the triage as it is now, his note kept.
    let stale = bob
        .post(
            &action,
            &[
                ("csrf", &bobs.csrf(&action)),
                ("version", "0"),
                ("state_read", "new"),
                ("state", "not_actionable"),
                ("note", "Bob's note"),
            ],
        )
        .await;
    assert_eq!(stale.status, StatusCode::CONFLICT, "{}", stale.body);
    let text = unescaped(&stale);
    assert!(text.contains("Someone else changed this first"), "{text}");
    assert!(text.contains("<span class=\"tag\">Reviewed</span>") && text.contains("Passed to the neighbourhood team"));
    assert!(text.contains(">Bob's note</textarea>"), "what he typed is still there");
    assert!(text.contains("name=\"version\" value=\"1\""), "sending it again applies it");
    assert!(between(&text, "id=\"state-not_actionable\"", ">").contains("checked"), "his choice is kept");
    let again = bob
        .post(
            &action,
            &[
                ("csrf", &bobs.csrf(&action)),
                ("version", "1"),
                ("state_read", "reviewed"),
                ("state", "not_actionable"),
                ("note", "Bob's note"),
            ],
        )
        .await;
    assert_eq!(again.status, StatusCode::SEE_OTHER, "{}", again.body);

    // No token, or nothing to change: refused, nothing written.
    let forged = ann.post(&action, &[("version", "2"), ("state", "actioned")]).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    let page = ann.get(&path).await;
    let nothing = ann
        .post(
            &action,
            &[
                ("csrf", &page.csrf(&action)),
                ("version", "2"),
                ("state_read", "not_actionable"),
                ("state", "not_actionable"),
            ],
        )
        .await;
    assert_eq!(nothing.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(nothing.body.contains("<a href=\"#state-new\">Choose another state, or add a note, a tag or a priority"));
    let bad_tag = ann
        .post(
            &action,
            &[("csrf", &page.csrf(&action)), ("version", "2"), ("state_read", "not_actionable"), ("tag", "<b>")],
        )
        .await;
    assert_eq!(bad_tag.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad_tag.body.contains("<a href=\"#tag\">"), "{}", bad_tag.body);
    let page = unescaped(&ann.get(&path).await);
    assert!(
        page.contains("<span class=\"tag\">Not actionable</span>") && page.contains("name=\"version\" value=\"2\"")
    );
    app.stop().await;
}

async fn the_exports_page_offers_every_format_for_the_filter(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    the_neighbourhood(&app).await;
    let analyst = signed_in(&app, "analyst@example.org", "analyst", None).await;
    let page = analyst.get("/exports?category=drugs&until=2026-11-30").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let text = unescaped(&page);
    for extension in ["csv", "xlsx", "geojson", "gpkg"] {
        assert!(
            text.contains(&format!("href=\"/exports/insights.{extension}?category=drugs&until=2026-11-30\"")),
            "{extension}: {text}"
        );
    }
    assert!(text.contains("<option value=\"drugs\" selected>"), "the filter is kept in the form");
    assert!(text.contains("href=\"/exports/rollups.csv?until=2026-11-30\""), "{text}");

    // Each download is the API's own export of the same filter, the last day included (October's drug insight and
    // November's three), for the signed-in analyst.
    let csv = analyst.get("/exports/insights.csv?category=drugs&until=2026-11-30").await;
    assert_eq!(csv.status, StatusCode::OK, "{}", csv.body);
    assert!(csv.headers["content-disposition"].to_str().unwrap().contains(".csv"));
    let rows = csv_rows(&csv.body);
    assert_eq!(rows.len(), 1 + 4, "a header and the four insights about drugs: {rows:?}");
    let api = app.get("/api/v1/insights?category=drugs&to=2026-12-01", Some(&app.analyst_token)).await.1;
    assert_eq!(api["items"].as_array().unwrap().len(), 4, "the API agrees");
    let none = csv_rows(&analyst.get("/exports/insights.csv?category=drugs&until=2026-10-02").await.body);
    assert_eq!(none.len(), 1, "until is the last day, included: nothing about drugs before 3 October");
    let geojson = analyst.get(&format!("/exports/insights.geojson?area={}", ABBEY_HULTON.0)).await;
    let features: serde_json::Value = serde_json::from_str(&geojson.body).unwrap();
    assert_eq!(features["features"].as_array().unwrap().len(), 2, "{}", geojson.body);
    let bytes = |path: &'static str| {
        let client = analyst.client.clone();
        let url = format!("{}{path}", analyst.base);
        async move { client.get(url).send().await.unwrap().bytes().await.unwrap() }
    };
    assert!(bytes("/exports/insights.gpkg").await.starts_with(b"SQLite format 3\0"), "a GeoPackage is SQLite");
    assert!(bytes("/exports/insights.xlsx").await.starts_with(b"PK"), "an XLSX is a zip");
    let rollups = csv_rows(&analyst.get("/exports/rollups.csv?from=2026-11-01&until=2026-11-30").await.body);
    assert!(
        rollups.len() > 1 && rollups[1..].iter().all(|row| row.iter().any(|cell| cell.starts_with("2026-11"))),
        "{rollups:?}"
    );
    let board = signed_in(&app, "board@example.org", "board", None).await;
    for path in ["/exports/insights.csv", "/exports/insights.gpkg", "/exports/rollups.csv"] {
        let refused = board.get(path).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{path}");
        assert!(refused.body.contains("You cannot use this page"), "a page, not a file: {}", refused.body);
    }
    let wrong_day = analyst.get("/exports/insights.csv?until=30-11-2026").await;
    assert_eq!(wrong_day.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(wrong_day.body.contains("Enter the last day as year-month-day"), "{}", wrong_day.body);
    let wrong = analyst.get("/exports?from=2026-12-01&until=2026-11-01").await;
    assert_eq!(wrong.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(!wrong.body.contains("/exports/insights."), "no download for a filter that is wrong");
    app.stop().await;
}

on_both_backends!(
    an_analyst_reads_the_priorities_an_area_and_downloads_the_table,
    a_scoped_analyst_sees_only_their_areas_and_other_roles_none,
    insights_are_filtered_searched_and_paged_with_the_filter_kept,
    triage_is_saved_and_a_stale_version_is_told_someone_else_changed_it_first,
    the_exports_page_offers_every_format_for_the_filter,
);
