//! Exports (docs/exports.md), opened with the tools people open them with: insights captured on real phones, with
//! text full of commas, quotes, line breaks, Welsh and a would-be formula, exported in every format and read back
//! field by field against the API's own answer for the same insights: the CSV with the `csv` crate, the GeoJSON and
//! the GeoPackage with GDAL (`ogrinfo` checks each file opens as one point layer in WGS 84 without a warning, and
//! `ogr2ogr` reads every row out), the XLSX with `calamine`. Around them: an export of nothing is an empty but valid
//! file, a board is refused, a bad filter is `invalid_query`, every export is in the audit trail with its filter and
//! row count, and an export reads one snapshot, whatever is written while it runs.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use futures_util::TryStreamExt;
use grapevine_client_sdk::{Channel, Draft, InsightChanges, Location};
use grapevine_server::audit::{AuditEntry, AuditFilter};
use grapevine_server::domain::insight_query::InsightQuery;
use grapevine_server::domain::{Actor, DayRange, PeriodKind, Principal, RequestContext, Role, Scope};
use grapevine_server::export::columns::{INSIGHT_COLUMNS, ROLLUP_COLUMNS};
use grapevine_server::export::InsightFormat;
use grapevine_server::export::{Column, Kind};
use grapevine_server::geo::atlas::{Atlas, DEFAULT_SET};
use grapevine_server::store::insights::{InsightFilter, InsightRecord};
use grapevine_server::usecase::exports::{RollupExport, EXPORTS_AT_ONCE};
use grapevine_server::usecase::{UseCaseError, UseCases};
use grapevine_tests::points::{ABBEY_HULTON, JOINERS_SQUARE, WESTMINSTER};
use grapevine_tests::{Backend, Phone, TestApp};
use serde_json::{json, Value};
use time::macros::datetime;

on_both_backends!(
    every_format_holds_every_insight_field_by_field,
    exports_of_nothing_are_empty_valid_files,
    exports_are_refused_as_the_one_door_says,
    the_rollup_table_holds_the_cells_the_api_counts,
    an_export_reads_one_snapshot,
    every_filter_narrows_an_export_as_it_narrows_the_list,
    only_a_few_exports_run_at_once,
);

/// Texts a spreadsheet, a CSV parser or a GIS could trip on. (An insight's text is one line, by the protocol; line
/// breaks come in the cohort's label, `COHORT`.)
const AWKWARD_TEXTS: [&str; 6] = [
    "dealing outside the chip shop, after school, most days",
    "she said \"run\" and we ran; \"again\",\"again\"",
    "Mae'r plant yn ofnus ger yr ysgol; ŵyr a ŷd, café",
    "=cmd|' /C calc'!A0",
    "+44 7700 900123 called, then \u{1F6A8}",
    "-2 knives seen, @ the park",
];

/// The label of the invitation one phone enrolled with: its insights' cohort, with a comma, quotes and line breaks.
const COHORT: &str = "Hanley barbers, \"Stoke\"\nsecond line\r\nthird line";

/// What the server holds after `seed`.
struct Seeded {
    /// The filing set and its generation, which the exports read by default.
    set: String,
    generation: i64,
    n_insights: usize,
}

/// Insights from two phones (one enrolled with an invitation, so it has a cohort), placed every way a phone places
/// one (GPS inside and outside the boundaries, a picked ward, an unknown postcode, nowhere), at three UTC offsets,
/// then synced; one is triaged with a tag and a priority.
async fn seed(app: &TestApp) -> Seeded {
    let code = app.create_invitation(COHORT, 5, time::Duration::days(1)).await;
    let barber = Phone::enrolled(app, &code, "Barber's phone").await.unwrap();
    let pupil = Phone::new(app, "Pupil's phone").await;
    let (_, js_lat, js_lon) = JOINERS_SQUARE;
    let (ah_code, ah_lat, ah_lon) = ABBEY_HULTON;
    let places = [
        Location::Gps { lat: js_lat, lon: js_lon, accuracy_m: 12.5 },
        Location::Gps { lat: ah_lat, lon: ah_lon, accuracy_m: 40.0 },
        Location::Area { code: ah_code.to_owned() },
        Location::Gps { lat: WESTMINSTER.0, lon: WESTMINSTER.1, accuracy_m: 8.0 },
        Location::Postcode { postcode: "ZZ9 9ZZ".to_owned() },
        Location::None,
    ];
    let times = [
        datetime!(2026-11-20 17:45 +01:00),
        datetime!(2026-11-20 08:05:30 -05:00),
        datetime!(2026-11-19 23:59:59 +00:00),
    ];
    let categories = ["drugs", "asb", "road-safety"];
    let mut n_insights = 0;
    for (at, text) in AWKWARD_TEXTS.iter().enumerate() {
        for (phone, channel) in [(&barber, Channel::BarberHairdresser), (&pupil, Channel::Pupil)] {
            let n = n_insights;
            phone
                .store
                .capture(Draft {
                    category: categories[n % categories.len()].to_owned(),
                    text: (*text).to_owned(),
                    feeling_safe: (n % 3 != 0).then(|| u8::try_from(1 + n % 5).unwrap()),
                    location: places[(at + n) % places.len()].clone(),
                    channel,
                    captured_at: Some(times[n % times.len()]),
                    campaign: None,
                })
                .await
                .unwrap();
            n_insights += 1;
        }
    }
    barber.sync(app).await.unwrap();
    pupil.sync(app).await.unwrap();
    let listed = app.areas("").await;
    let set = listed["boundaries"]["set"].as_str().unwrap().to_owned();
    let generation = listed["boundaries"]["generation"].as_i64().unwrap();
    // Triage the newest insight in Joiner's Square.
    let items = list(app, &format!("area={}", JOINERS_SQUARE.0)).await;
    let id = items[0]["id"].as_str().unwrap();
    let body = json!({
        "version": 0,
        "state": "reviewed",
        "note": "seen by the neighbourhood team",
        "add_tags": ["chip shop", "after-school"],
        "link_priorities": [format!("{set}:{}:drugs", JOINERS_SQUARE.0)],
    });
    triage(app, id, &body).await;
    Seeded { set, generation, n_insights }
}

/// Writes an insight's triage as the analyst; panics unless it is written.
async fn triage(app: &TestApp, id: &str, body: &Value) {
    let response = reqwest::Client::new()
        .post(format!("{}/api/v1/insights/{id}/triage", app.http_url()))
        .bearer_auth(&app.analyst_token)
        .json(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200, "{}", response.text().await.unwrap());
}

/// Every insight the filter lets through, as the API lists them (newest first).
async fn list(app: &TestApp, filter: &str) -> Vec<Value> {
    let (status, body) = app.get(&format!("/api/v1/insights?limit=200&{filter}"), Some(&app.analyst_token)).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["next_cursor"].is_null(), "one page holds them all");
    body["items"].as_array().unwrap().clone()
}

/// A download: its status, its headers and its bytes.
struct Download {
    status: u16,
    headers: reqwest::header::HeaderMap,
    bytes: Vec<u8>,
}

impl Download {
    fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|value| value.to_str().ok()).unwrap_or_default()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.bytes).unwrap_or(Value::Null)
    }
}

async fn download(app: &TestApp, path: &str, token: &str) -> Download {
    let response =
        reqwest::Client::new().get(format!("{}{path}", app.http_url())).bearer_auth(token).send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = response.bytes().await.expect("the whole body arrives").to_vec();
    Download { status, headers, bytes }
}

/// What a field must read as: empty, this text (a number compared as a number), or anything (a value the API does
/// not show, checked across the formats instead).
#[derive(Debug, Clone, PartialEq)]
enum Expect {
    Empty,
    Is(String),
    Any,
}

fn text_of(value: &Value) -> Expect {
    match value {
        Value::Null => Expect::Empty,
        Value::String(text) => Expect::Is(text.clone()),
        other => Expect::Is(other.to_string()),
    }
}

/// An insight's export row, from the API's item for it (the same meanings, docs/exports.md), in `INSIGHT_COLUMNS`'
/// order.
fn expected_row(item: &Value, set: &str, generation: i64) -> Vec<Expect> {
    let areas = item["areas"].as_array().unwrap();
    let here = areas.iter().find(|area| area["set"] == set && area["generation"] == generation);
    let joined = |list: &Value| {
        let items: Vec<&str> = list.as_array().unwrap().iter().map(|item| item.as_str().unwrap()).collect();
        if items.is_empty() {
            Expect::Empty
        } else {
            Expect::Is(items.join("; "))
        }
    };
    let every_area: Vec<String> = areas
        .iter()
        .map(|area| {
            format!("{}/{}={}", area["set"].as_str().unwrap(), area["generation"], area["code"].as_str().unwrap_or(""))
        })
        .collect();
    let gps = &item["location"];
    INSIGHT_COLUMNS
        .iter()
        .map(|column| match column.name {
            "lat" | "lon" | "accuracy_m" => text_of(&gps[column.name]),
            "point_lat" if !gps.is_null() => text_of(&gps["lat"]),
            "point_lon" if !gps.is_null() => text_of(&gps["lon"]),
            "point_lat" | "point_lon" => Expect::Any,
            "boundary_set" => Expect::Is(set.to_owned()),
            "boundary_generation" => Expect::Is(generation.to_string()),
            "area_code" => here.map_or(Expect::Empty, |area| text_of(&area["code"])),
            "area_name" => here.map_or(Expect::Empty, |area| text_of(&area["name"])),
            "near_boundary" => here.map_or(Expect::Empty, |area| text_of(&area["near_boundary"])),
            "areas" if every_area.is_empty() => Expect::Empty,
            "areas" => Expect::Is(every_area.join("; ")),
            "rejection_code" => text_of(&item["rejection"]["code"]),
            "rejection_message" => text_of(&item["rejection"]["message"]),
            "picked_area" => text_of(&item["picked_area"]),
            "triage_state" => text_of(&item["triage"]["state"]),
            "triage_version" => text_of(&item["triage"]["version"]),
            "triage_updated_at" => text_of(&item["triage"]["updated_at"]),
            "triage_updated_by" => text_of(&item["triage"]["updated_by"]),
            "triage_tags" => joined(&item["triage"]["tags"]),
            "priorities" => joined(&item["triage"]["priorities"]),
            name => text_of(&item[name]),
        })
        .collect()
}

/// Whether a field read back as `got` is what `expected` says, for a column of `kind`.
fn matches(kind: Kind, expected: &Expect, got: &str) -> bool {
    match expected {
        Expect::Any => true,
        Expect::Empty => got.is_empty(),
        Expect::Is(want) => match kind {
            Kind::Text => got == want,
            Kind::Integer | Kind::Real => match (want.parse::<f64>(), got.parse::<f64>()) {
                (Ok(want), Ok(got)) => (want - got).abs() <= 1e-9 * want.abs().max(1.0),
                _ => false,
            },
            Kind::Boolean => {
                let truth = |text: &str| match text {
                    "true" | "1" => Some(true),
                    "false" | "0" => Some(false),
                    _ => None,
                };
                truth(want).is_some() && truth(want) == truth(got)
            }
        },
    }
}

/// A row read back from a file: each column's text ("" when empty).
type ReadRow = BTreeMap<String, String>;

/// Compares the rows read back from `what` with the expected rows, field by field, in order.
fn assert_rows(what: &str, columns: &[Column], expected: &[Vec<Expect>], got: &[ReadRow], guard_text: bool) {
    assert_eq!(got.len(), expected.len(), "{what}: every insight, once");
    for (at, (expected, got)) in expected.iter().zip(got).enumerate() {
        for (column, expected) in columns.iter().zip(expected) {
            let expected = match expected {
                Expect::Is(text) if guard_text && column.kind == Kind::Text => {
                    Expect::Is(grapevine_server::export::csv::guarded(text).into_owned())
                }
                other => other.clone(),
            };
            let value = got.get(column.name).unwrap_or_else(|| panic!("{what} has no column {}", column.name));
            assert!(
                matches(column.kind, &expected, value),
                "{what}, row {at}, {}: {expected:?}, read {value:?}",
                column.name
            );
        }
    }
}

/// A CSV's rows by its header (the `csv` crate reads it as Excel does: quotes, commas and line breaks in fields).
fn read_csv(bytes: &[u8]) -> (Vec<String>, Vec<ReadRow>) {
    let mut reader = csv::ReaderBuilder::new().from_reader(bytes);
    let header: Vec<String> = reader.headers().unwrap().iter().map(str::to_owned).collect();
    let rows = reader
        .records()
        .map(|record| header.iter().cloned().zip(record.unwrap().iter().map(str::to_owned)).collect())
        .collect();
    (header, rows)
}

/// Runs a GDAL tool; panics with its words unless it succeeds without a warning or an error.
fn gdal(tool: &str, args: &[&str]) -> String {
    let output = std::process::Command::new(tool)
        .args(args)
        .output()
        .unwrap_or_else(|error| panic!("{tool} (Debian's gdal-bin, which .ci/run installs) does not run: {error}"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success() && stderr.trim().is_empty(), "{tool} {args:?}: {stderr}");
    String::from_utf8(output.stdout).unwrap()
}

/// Opens a GeoJSON or GeoPackage file as QGIS would (GDAL): one point layer of `n_features` in WGS 84, then every
/// feature, its geometry as `X` and `Y`.
fn read_with_gdal(path: &Path, n_features: usize, open_options: &[&str]) -> Vec<ReadRow> {
    let path = path.to_str().unwrap();
    let mut args = vec!["-ro", "-so", "-al"];
    args.extend(open_options);
    args.push(path);
    let summary = gdal("ogrinfo", &args);
    assert!(summary.contains("Geometry: Point"), "{summary}");
    assert!(summary.contains(&format!("Feature Count: {n_features}\n")), "{summary}");
    assert!(summary.contains("WGS 84") || summary.contains("WGS84"), "{summary}");
    let mut args = vec!["-f", "CSV", "/vsistdout/", "-lco", "GEOMETRY=AS_XY"];
    args.extend(open_options);
    args.push(path);
    let (_, rows) = read_csv(gdal("ogr2ogr", &args).as_bytes());
    rows
}

/// A calamine cell as text.
fn cell_text(cell: &calamine::Data) -> String {
    match cell {
        calamine::Data::Empty => String::new(),
        calamine::Data::String(text) => text.clone(),
        calamine::Data::Float(number) => number.to_string(),
        calamine::Data::Int(number) => number.to_string(),
        calamine::Data::Bool(flag) => flag.to_string(),
        other => panic!("an XLSX cell of an unexpected type: {other:?}"),
    }
}

/// An XLSX file's one sheet as rows by its header, and the type of each cell of the first row.
fn read_xlsx(bytes: &[u8]) -> (Vec<String>, Vec<ReadRow>, Vec<calamine::Data>) {
    use calamine::Reader;
    let mut workbook = calamine::Xlsx::new(std::io::Cursor::new(bytes.to_vec())).expect("the XLSX opens");
    assert_eq!(workbook.sheet_names(), ["Insights"]);
    let range = workbook.worksheet_range("Insights").unwrap();
    let mut rows = range.rows();
    let header: Vec<String> = rows.next().expect("a header row").iter().map(cell_text).collect();
    let mut first = Vec::new();
    let read = rows
        .map(|row| {
            if first.is_empty() {
                first = row.to_vec();
            }
            header.iter().cloned().zip(row.iter().map(cell_text)).collect()
        })
        .collect();
    (header, read, first)
}

fn names(columns: &[Column]) -> Vec<String> {
    columns.iter().map(|column| column.name.to_owned()).collect()
}

/// Every `action` entry of the trail, oldest first.
async fn entries_of(app: &TestApp, action: &str) -> Vec<AuditEntry> {
    let door = UseCases::new(app.store.clone());
    let filter = AuditFilter { action: Some(action.to_owned()), ..AuditFilter::default() };
    door.audit_entries(&Principal::operator(), filter).await.unwrap().try_collect().await.unwrap()
}

async fn every_format_holds_every_insight_field_by_field(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let seeded = seed(&app).await;
    let items = list(&app, "").await;
    assert_eq!(items.len(), seeded.n_insights);
    let statuses: Vec<&str> = items.iter().map(|item| item["status"].as_str().unwrap()).collect();
    for status in ["filed", "outside_coverage", "rejected"] {
        assert!(statuses.contains(&status), "the seed covers {status}: {statuses:?}");
    }
    let expected: Vec<Vec<Expect>> =
        items.iter().map(|item| expected_row(item, &seeded.set, seeded.generation)).collect();
    let token = app.analyst_token.clone();
    let dir = tempfile::tempdir().unwrap();

    // CSV, with and without the byte-order mark; read back with the csv crate.
    let csv = download(&app, "/api/v1/exports/insights.csv", &token).await;
    assert_eq!(csv.status, 200, "{}", String::from_utf8_lossy(&csv.bytes));
    assert_eq!(csv.header("content-type"), "text/csv; charset=utf-8");
    let disposition = csv.header("content-disposition");
    assert!(disposition.starts_with("attachment; filename=\"grapevine-insights-") && disposition.ends_with(".csv\""));
    assert!(!csv.bytes.starts_with(b"\xef\xbb\xbf"), "no BOM unless asked");
    let (header, csv_rows) = read_csv(&csv.bytes);
    assert_eq!(header, names(&INSIGHT_COLUMNS));
    assert_rows("CSV", &INSIGHT_COLUMNS, &expected, &csv_rows, true);
    let text = String::from_utf8(csv.bytes.clone()).unwrap();
    assert!(text.contains("\"dealing outside the chip shop, after school, most days\""), "commas are quoted");
    assert!(text.contains("\"Hanley barbers, \"\"Stoke\"\"\nsecond line\r\nthird line\""), "line breaks kept, quoted");
    assert!(csv_rows.iter().any(|row| row["cohort"] == COHORT));
    assert!(text.contains("'=cmd|"), "a formula is guarded");
    assert!(text.contains(",-2.1"), "a negative longitude stays a number");
    assert!(text.contains("+01:00") && text.contains("-05:00"), "times keep the phone's offset");
    let with_bom = download(&app, "/api/v1/exports/insights.csv?bom=true", &token).await;
    assert!(with_bom.bytes.starts_with(b"\xef\xbb\xbf"));
    assert_eq!(&with_bom.bytes[3..], &csv.bytes[..], "the same file after the BOM");

    // GeoJSON, opened by GDAL.
    let geojson = download(&app, "/api/v1/exports/insights.geojson", &token).await;
    assert_eq!((geojson.status, geojson.header("content-type")), (200, "application/geo+json"));
    let collection = geojson.json();
    assert_eq!(collection["type"], "FeatureCollection");
    assert!(collection.get("crs").is_none(), "RFC 7946: WGS 84, said by no member");
    let path = dir.path().join("insights.geojson");
    std::fs::write(&path, &geojson.bytes).unwrap();
    // Read as strings, as the file has them (GDAL would otherwise make date-times of the times).
    let read = read_with_gdal(&path, items.len(), &["-oo", "DATE_AS_STRING=YES"]);
    assert_rows("GeoJSON", &INSIGHT_COLUMNS, &expected, &read, false);
    assert_points("GeoJSON", &csv_rows, &read);

    // GeoPackage, opened by GDAL.
    let gpkg = download(&app, "/api/v1/exports/insights.gpkg", &token).await;
    assert_eq!((gpkg.status, gpkg.header("content-type")), (200, "application/geopackage+sqlite3"));
    assert_eq!(&gpkg.bytes[..16], b"SQLite format 3\0");
    assert_eq!(&gpkg.bytes[68..72], b"GPKG", "application_id");
    assert_eq!(u32::from_be_bytes(gpkg.bytes[60..64].try_into().unwrap()), 10_300, "user_version: 1.3");
    let path = dir.path().join("insights.gpkg");
    std::fs::write(&path, &gpkg.bytes).unwrap();
    let read = read_with_gdal(&path, items.len(), &[]);
    assert_rows("GeoPackage", &INSIGHT_COLUMNS, &expected, &read, false);
    assert_points("GeoPackage", &csv_rows, &read);

    // XLSX, read back with calamine: text as text (nothing guarded: a string cell is never a formula), numbers as
    // numbers.
    let xlsx = download(&app, "/api/v1/exports/insights.xlsx", &token).await;
    assert_eq!(xlsx.status, 200, "{}", String::from_utf8_lossy(&xlsx.bytes));
    assert_eq!(xlsx.header("content-type"), "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet");
    let (header, read, first) = read_xlsx(&xlsx.bytes);
    assert_eq!(header, names(&INSIGHT_COLUMNS));
    assert_rows("XLSX", &INSIGHT_COLUMNS, &expected, &read, false);
    let triage_version = INSIGHT_COLUMNS.iter().position(|column| column.name == "triage_version").unwrap();
    assert!(matches!(first[triage_version], calamine::Data::Float(_)), "{first:?}");
    assert_points("XLSX", &csv_rows, &read);

    // A filter narrows every format alike, and a scoped analyst gets only the scope.
    let filtered = download(&app, &format!("/api/v1/exports/insights.csv?area={}", JOINERS_SQUARE.0), &token).await;
    let (_, rows) = read_csv(&filtered.bytes);
    let in_area = list(&app, &format!("area={}", JOINERS_SQUARE.0)).await;
    assert!(!in_area.is_empty() && rows.len() == in_area.len());
    assert!(rows.iter().all(|row| row["area_code"] == JOINERS_SQUARE.0));
    let door = UseCases::new(app.store.clone());
    let email = "stoke.analyst@example.org";
    let scope = format!("{}:{}", seeded.set, JOINERS_SQUARE.0);
    door.add_person(&Principal::operator(), email, "analyst", Some(&scope)).await.unwrap();
    let scoped = door.issue_person_token(&Principal::operator(), email, "exports test", None).await.unwrap().token;
    let (_, rows) = read_csv(&download(&app, "/api/v1/exports/insights.csv", &scoped).await.bytes);
    let ids: Vec<&str> = rows.iter().map(|row| row["id"].as_str()).collect();
    let expected_ids: Vec<&str> = in_area.iter().map(|item| item["id"].as_str().unwrap()).collect();
    assert_eq!(ids, expected_ids, "a scoped analyst's export holds its scope and nothing else");

    // Each export is in the trail: its filter, its format and its row count.
    let entries = entries_of(&app, "export.insights").await;
    let recorded: Vec<(String, String, Value, Value)> = entries
        .iter()
        .map(|entry| {
            (
                entry.target.clone(),
                entry.outcome.as_str().to_owned(),
                entry.detail["format"].clone(),
                entry.detail["rows"].clone(),
            )
        })
        .collect();
    let n = json!(items.len());
    let in_js = json!(in_area.len());
    let area_filter = format!("area={}", JOINERS_SQUARE.0);
    let all = "all".to_owned();
    let allowed = "allowed".to_owned();
    assert_eq!(
        recorded,
        vec![
            (all.clone(), allowed.clone(), json!("csv"), n.clone()),
            (all.clone(), allowed.clone(), json!("csv"), n.clone()),
            (all.clone(), allowed.clone(), json!("geojson"), n.clone()),
            (all.clone(), allowed.clone(), json!("gpkg"), n.clone()),
            (all.clone(), allowed.clone(), json!("xlsx"), n.clone()),
            (area_filter, allowed.clone(), json!("csv"), in_js.clone()),
            (all, allowed, json!("csv"), in_js),
        ]
    );
    assert!(entries.iter().all(|entry| entry.detail.to_string().len() < 200), "counts, never content");
}

/// The map points of every row read from a format are those of the CSV's `point_lon`/`point_lat` (the GPS fix, else
/// the tag point), or none; a format with geometry gives them as `X`, `Y`.
fn assert_points(what: &str, csv_rows: &[ReadRow], read: &[ReadRow]) {
    for (at, (csv, row)) in csv_rows.iter().zip(read).enumerate() {
        let (x, y) = match (row.get("X"), row.get("Y")) {
            (Some(x), Some(y)) => (x, y),
            _ => (&row["point_lon"], &row["point_lat"]),
        };
        assert!(
            matches(
                Kind::Real,
                &if csv["point_lon"].is_empty() { Expect::Empty } else { Expect::Is(csv["point_lon"].clone()) },
                x
            ),
            "{what} row {at}: x {x}"
        );
        assert!(
            matches(
                Kind::Real,
                &if csv["point_lat"].is_empty() { Expect::Empty } else { Expect::Is(csv["point_lat"].clone()) },
                y
            ),
            "{what} row {at}: y {y}"
        );
    }
}

/// Each filter, and several together, let through the same insights in an export as in the list, in the same order
/// (PostgreSQL's export binds the filter's values another way than its pages: `postgres_export::export_copy`).
async fn every_filter_narrows_an_export_as_it_narrows_the_list(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    seed(&app).await;
    let (js, ah) = (JOINERS_SQUARE.0, ABBEY_HULTON.0);
    let filters = [
        String::new(),
        format!("area={js}"),
        format!("area={js}&area={ah}"),
        format!("area={ah}&near_boundary=true"),
        "category=drugs&category=asb".to_owned(),
        "channel=pupil".to_owned(),
        "status=rejected&status=outside_coverage".to_owned(),
        "feeling_safe_min=2&feeling_safe_max=4".to_owned(),
        "from=2026-11-20&to=2026-11-21".to_owned(),
        "triage=reviewed".to_owned(),
        "triage=new&category=drugs".to_owned(),
        "tag=chip-shop".to_owned(),
        "q=plant".to_owned(),
        "q=%22chip%20shop%22%20NEAR%20-after*".to_owned(),
        format!("q=school&area={js}&channel=barber-hairdresser"),
    ];
    let mut narrowed = 0;
    for filter in filters {
        let listed: Vec<String> =
            list(&app, &filter).await.iter().map(|item| item["id"].as_str().unwrap().to_owned()).collect();
        let csv = download(&app, &format!("/api/v1/exports/insights.csv?{filter}"), &app.analyst_token).await;
        assert_eq!(csv.status, 200, "{filter}: {}", String::from_utf8_lossy(&csv.bytes));
        let (_, rows) = read_csv(&csv.bytes);
        let exported: Vec<String> = rows.iter().map(|row| row["id"].clone()).collect();
        assert_eq!(exported, listed, "{filter}");
        narrowed += usize::from(!listed.is_empty());
    }
    assert!(narrowed >= 12, "the filters find something to compare: {narrowed}");
}

/// A node runs `EXPORTS_AT_ONCE` exports at a time: one more is refused (`rate_limited`, recorded) while they run, and
/// taken again once one of them ends, whether its file was read to the end or abandoned.
async fn only_a_few_exports_run_at_once(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    seed(&app).await;
    let door = UseCases::new(app.store.clone());
    let atlas = Arc::new(Atlas::load(app.store.as_ref(), DEFAULT_SET).await.unwrap());
    let analyst = Principal {
        actor: Actor::ServiceAccount { token_id: uuid::Uuid::new_v4(), label: "exports test".to_owned() },
        role: Role::Analyst,
        scope: Scope::Everything,
        context: RequestContext::default(),
    };
    let (query, _) = InsightQuery::parse(None, &[]).unwrap();
    let csv = InsightFormat::Csv { bom: false };
    let export = || door.export_insights(&analyst, Arc::clone(&atlas), &query, csv);
    let mut running = Vec::new();
    for _ in 0..EXPORTS_AT_ONCE {
        running.push(export().await.unwrap());
    }
    let refused = export().await.unwrap_err();
    assert!(matches!(refused, UseCaseError::RateLimited { .. }), "{refused}");
    assert!(refused.to_string().contains("too many exports are running"), "{refused}");
    let rollups =
        RollupExport { set: None, generation: None, kind: PeriodKind::Month, days: DayRange::default(), bom: false };
    let refused = door.export_rollups(&analyst, Arc::clone(&atlas), &rollups).await.unwrap_err();
    assert!(matches!(refused, UseCaseError::RateLimited { .. }), "the roll-up table shares the slots: {refused}");
    let entries = entries_of(&app, "export.insights").await;
    assert!(entries.iter().any(|entry| entry.detail["code"] == "rate_limited"), "the refusal is recorded");

    // One read to its end frees its slot; so does one abandoned.
    let whole: Vec<Vec<u8>> = running.pop().unwrap().chunks.into_stream().try_collect().await.unwrap();
    assert!(whole.concat().starts_with(b"id,"));
    running.push(export().await.unwrap());
    assert!(export().await.is_err());
    drop(running.pop());
    let read: Vec<Vec<u8>> = export().await.unwrap().chunks.into_stream().try_collect().await.unwrap();
    let (_, rows) = read_csv(&read.concat());
    assert_eq!(rows.len(), list(&app, "").await.len());
    assert!(door.export_rollups(&analyst, atlas, &rollups).await.is_ok(), "a slot is free again");
}

async fn exports_of_nothing_are_empty_valid_files(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    seed(&app).await;
    let token = app.analyst_token.clone();
    let dir = tempfile::tempdir().unwrap();
    let nothing = "from=2001-01-01&to=2001-01-02";

    let csv = download(&app, &format!("/api/v1/exports/insights.csv?{nothing}"), &token).await;
    assert_eq!(csv.status, 200);
    let (header, rows) = read_csv(&csv.bytes);
    assert_eq!((header, rows.len()), (names(&INSIGHT_COLUMNS), 0));

    let geojson = download(&app, &format!("/api/v1/exports/insights.geojson?{nothing}"), &token).await;
    assert_eq!(geojson.json(), json!({ "type": "FeatureCollection", "features": [] }));
    let path = dir.path().join("nothing.geojson");
    std::fs::write(&path, &geojson.bytes).unwrap();
    let summary = gdal("ogrinfo", &["-ro", "-so", "-al", path.to_str().unwrap()]);
    assert!(summary.contains("Feature Count: 0"), "{summary}");

    let gpkg = download(&app, &format!("/api/v1/exports/insights.gpkg?{nothing}"), &token).await;
    let path = dir.path().join("nothing.gpkg");
    std::fs::write(&path, &gpkg.bytes).unwrap();
    assert!(read_with_gdal(&path, 0, &[]).is_empty());

    let xlsx = download(&app, &format!("/api/v1/exports/insights.xlsx?{nothing}"), &token).await;
    let (header, rows, _) = read_xlsx(&xlsx.bytes);
    assert_eq!((header, rows.len()), (names(&INSIGHT_COLUMNS), 0));

    let rollups = download(&app, &format!("/api/v1/exports/rollups.csv?{nothing}"), &token).await;
    let (header, rows) = read_csv(&rollups.bytes);
    assert_eq!((header, rows.len()), (names(&ROLLUP_COLUMNS), 0));

    for entry in entries_of(&app, "export.insights").await.iter().chain(&entries_of(&app, "export.rollups").await) {
        assert_eq!((entry.outcome.as_str(), &entry.detail["rows"]), ("allowed", &json!(0)), "{entry:?}");
    }
}

async fn exports_are_refused_as_the_one_door_says(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_, board) =
        grapevine_server::auth::issue_api_token(app.store.as_ref(), Role::Board, "a partnership board").await.unwrap();
    let paths = [
        "/api/v1/exports/insights.csv",
        "/api/v1/exports/insights.geojson",
        "/api/v1/exports/insights.gpkg",
        "/api/v1/exports/insights.xlsx",
        "/api/v1/exports/rollups.csv",
    ];
    for path in paths {
        let refused = download(&app, path, &board).await;
        assert_eq!((refused.status, refused.json()["code"].as_str()), (403, Some("forbidden")), "{path}");
        let bad = download(&app, &format!("{path}?category=unicorns"), &app.analyst_token).await;
        assert_eq!((bad.status, bad.json()["code"].as_str()), (422, Some("invalid_query")), "{path}");
        let unknown_area = download(&app, &format!("{path}?set=no-such-set"), &app.analyst_token).await;
        assert_eq!(
            (unknown_area.status, unknown_area.json()["code"].as_str()),
            (404, Some("area_not_found")),
            "{path}"
        );
    }
    for (path, said) in [
        ("/api/v1/exports/insights.csv?bom=maybe", "bom=maybe"),
        ("/api/v1/exports/insights.geojson?bom=true", "unknown parameter 'bom'"),
        ("/api/v1/exports/rollups.csv?period=fortnight", "period=fortnight"),
        ("/api/v1/exports/insights.csv?limit=5", "unknown parameter 'limit'"),
    ] {
        let bad = download(&app, path, &app.analyst_token).await;
        let message = bad.json()["message"].as_str().unwrap_or_default().to_owned();
        assert_eq!((bad.status, bad.json()["code"].as_str()), (422, Some("invalid_query")), "{path}");
        assert!(message.contains(said), "{path}: {message}");
    }
    // The board's refusals are in the trail; so is the unknown generation, as a failed export with its code.
    let entries = entries_of(&app, "export.insights").await;
    let refused = entries.iter().filter(|entry| entry.outcome.as_str() == "refused").count();
    assert_eq!(refused, 4);
    assert!(entries.iter().any(|entry| entry.outcome.as_str() == "failed" && entry.detail["code"] == "area_not_found"));
    let rollups = entries_of(&app, "export.rollups").await;
    assert_eq!(rollups.iter().filter(|entry| entry.outcome.as_str() == "refused").count(), 1);
}

async fn the_rollup_table_holds_the_cells_the_api_counts(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let seeded = seed(&app).await;
    let token = app.analyst_token.clone();
    let (day, next) = ("2026-11-20", "2026-11-21");
    let table =
        download(&app, &format!("/api/v1/exports/rollups.csv?period=day&from={day}&to={next}&bom=true"), &token).await;
    assert_eq!(table.status, 200, "{}", String::from_utf8_lossy(&table.bytes));
    assert_eq!(table.header("content-type"), "text/csv; charset=utf-8");
    assert!(table.bytes.starts_with(b"\xef\xbb\xbf"));
    let (header, rows) = read_csv(&table.bytes[3..]);
    assert_eq!(header, names(&ROLLUP_COLUMNS));
    assert!(!rows.is_empty());
    // Every area's row for every category (and all of them together) says what the API says of that day.
    for row in &rows {
        assert_eq!((row["boundary_set"].as_str(), row["period"].as_str()), (seeded.set.as_str(), "day"));
        assert_eq!((row["period_start"].as_str(), row["period_last_day"].as_str()), (day, day));
        if row["area_code"].is_empty() {
            continue; // outside every area: no area to ask the API about
        }
        let area = app.area(&row["area_code"], &format!("from={day}&to={next}")).await;
        assert_eq!(row["area_name"], area["name"].as_str().unwrap());
        let (n, contributors) = if row["category"] == "all" {
            (area["total"].clone(), area["contributors"].clone())
        } else {
            let category = area["categories"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["category"] == row["category"].as_str())
                .unwrap();
            assert_eq!(row["category_label"], category["label"].as_str().unwrap());
            (category["total"].clone(), category["contributors"].clone())
        };
        assert_eq!(
            (row["insights"].clone(), row["contributors"].clone()),
            (n.to_string(), contributors.to_string()),
            "{row:?}"
        );
    }
    let totals: i64 =
        rows.iter().filter(|row| row["category"] == "all").map(|row| row["insights"].parse::<i64>().unwrap()).sum();
    let categories: i64 =
        rows.iter().filter(|row| row["category"] != "all").map(|row| row["insights"].parse::<i64>().unwrap()).sum();
    assert_eq!(totals, categories, "the all-categories rows total the others");
    // A month's table holds that day's counts in its November cell.
    let month = download(&app, "/api/v1/exports/rollups.csv", &token).await;
    let (_, months) = read_csv(&month.bytes);
    let november: i64 = months
        .iter()
        .filter(|row| row["category"] == "all" && row["period_start"] == "2026-11-01")
        .map(|row| {
            assert_eq!(row["period_last_day"], "2026-11-30");
            row["insights"].parse::<i64>().unwrap()
        })
        .sum();
    assert!(november >= totals);
    let entries = entries_of(&app, "export.rollups").await;
    assert_eq!(entries[0].target, format!("period=day&from={day}&to={next}"));
    assert_eq!(entries[0].detail["rows"], json!(rows.len()));

    // The store pages through the cells in key order: two at a time reads exactly what one read does.
    let generations = app.store.generations().await.unwrap();
    let generation = generations.iter().find(|info| info.set_name == seeded.set).unwrap().id;
    let cells = |batch: u32| {
        let store = app.store.clone();
        async move {
            let (sender, mut receiver) = tokio::sync::mpsc::channel(1);
            let read = tokio::spawn(async move {
                store.export_cells(generation, PeriodKind::Week, DayRange::default(), batch, sender).await
            });
            let mut cells = Vec::new();
            while let Some(batch) = receiver.recv().await {
                cells.extend(batch.unwrap());
            }
            read.await.unwrap().unwrap();
            cells
        }
    };
    let whole = cells(1000).await;
    assert!(whole.len() > 4, "{whole:?}");
    assert_eq!(cells(2).await, whole);
    // (In the database's own order of text, which on PostgreSQL is its collation's: so only "each once" here.)
    let keys: std::collections::BTreeSet<_> =
        whole.iter().map(|cell| (&cell.category, cell.period_start, &cell.area_code)).collect();
    assert_eq!(keys.len(), whole.len(), "each cell once");
}

/// One insight as an export row shows it, for comparing before and after a write.
fn seen(record: &InsightRecord) -> (Option<String>, Vec<String>, &'static str, i64) {
    let areas = record.row.tags.iter().map(|tag| format!("{}={}", tag.generation_id, tag.area_code)).collect();
    (record.row.text.clone(), areas, record.triage.state.as_str(), record.triage.version)
}

/// An export reads one snapshot: read a row at a time, with an insight edited (text and place), another triaged,
/// and a new one arriving between the first row and the rest, it holds every insight as it stood before, each
/// whole, and not the new one.
async fn an_export_reads_one_snapshot(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let phone = Phone::new(&app, "Barber").await;
    let (_, lat, lon) = JOINERS_SQUARE;
    let mut ids = Vec::new();
    for n in 0..12 {
        ids.push(phone.capture_at(if n % 2 == 0 { "drugs" } else { "asb" }, lat, lon, Some(3)).await);
    }
    phone.sync(&app).await.unwrap();
    let (query, _) = InsightQuery::parse(None, &[]).unwrap();
    let filter = InsightFilter { query, generation_id: 0, areas: None };
    let read_all = || async {
        let (sender, mut receiver) = tokio::sync::mpsc::channel(1);
        app.store.export_insights(filter.clone(), 100, None, sender).await.unwrap();
        let mut records = Vec::new();
        while let Some(batch) = receiver.recv().await {
            records.extend(batch.unwrap());
        }
        records
    };
    let before = read_all().await;
    assert_eq!(before.len(), ids.len());

    // A row at a time through a channel of one: after the first row the read waits, mid-export.
    let (sender, mut receiver) = tokio::sync::mpsc::channel(1);
    let store = app.store.clone();
    let read = tokio::spawn({
        let filter = filter.clone();
        async move { store.export_insights(filter, 1, None, sender).await }
    });
    let mut exported = receiver.recv().await.unwrap().unwrap();

    // The oldest insight (exported last) is edited, moved and triaged; a new one arrives.
    let oldest = ids[0];
    let (_, ah_lat, ah_lon) = ABBEY_HULTON;
    let changes = InsightChanges {
        text: Some("edited while the export ran".to_owned()),
        location: Some(Location::Gps { lat: ah_lat, lon: ah_lon, accuracy_m: 5.0 }),
        ..InsightChanges::default()
    };
    phone.store.edit(oldest, &changes).await.unwrap();
    let newcomer = phone.capture_at("drugs", lat, lon, None).await;
    phone.sync(&app).await.unwrap();
    triage(&app, &ids[1].to_string(), &json!({ "version": 0, "state": "actioned" })).await;
    let after = read_all().await;
    let edited = after.iter().find(|record| record.row.id == oldest).unwrap();
    assert_eq!(edited.row.text.as_deref(), Some("edited while the export ran"), "the edit is stored");
    assert_ne!(seen(edited), seen(before.iter().find(|record| record.row.id == oldest).unwrap()));

    while let Some(batch) = receiver.recv().await {
        exported.extend(batch.unwrap());
    }
    read.await.unwrap().unwrap();
    assert!(exported.iter().all(|record| record.row.id != newcomer), "the insight that arrived is not in it");
    let as_before: Vec<_> = before.iter().map(seen).collect();
    let as_exported: Vec<_> = exported.iter().map(seen).collect();
    assert_eq!(as_exported, as_before, "every insight as it stood when the export began, text, place and triage");
}
