//! The analyst's workbench over the API (docs/workbench.md): reading insights with every filter, searching their
//! text in English and Welsh, paging soundly while insights arrive, one insight's history, and triage that two
//! analysts cannot silently overwrite. Every read is scoped and in the audit trail; a board gets none of it.

use std::collections::BTreeSet;

use futures_util::TryStreamExt;
use grapevine_client_sdk::{Channel, Draft, InsightChanges, Location};
use grapevine_server::audit::AuditFilter;
use grapevine_server::domain::{Principal, Role};
use grapevine_server::usecase::UseCases;
use grapevine_sync_proto::automerge::{AutoCommit, ReadDoc, ROOT};
use grapevine_sync_proto::DocumentId;
use grapevine_tests::points::{ABBEY_HULTON, JOINERS_SQUARE};
use grapevine_tests::{Backend, Phone, TestApp};
use serde_json::{json, Value};
use time::macros::datetime;

on_both_backends!(
    an_insight_reads_back_with_its_text_place_offset_pseudonym_and_cohort,
    filters_combine_and_search_finds_words_in_english_and_welsh,
    pages_never_repeat_or_skip_while_insights_arrive,
    bad_filters_and_cursors_get_a_stable_code,
    one_insight_has_its_history_and_a_scoped_analyst_sees_only_their_areas,
    two_analysts_triaging_at_once_lose_nothing_and_triage_stays_off_the_phone,
);

/// Captures an insight with its own words, where and when it says.
async fn capture(
    phone: &Phone,
    category: &str,
    text: &str,
    at: (f64, f64),
    captured_at: time::OffsetDateTime,
) -> uuid::Uuid {
    phone
        .store
        .capture(Draft {
            category: category.into(),
            text: text.into(),
            feeling_safe: Some(2),
            location: Location::Gps { lat: at.0, lon: at.1, accuracy_m: 8.0 },
            channel: Channel::Pupil,
            captured_at: Some(captured_at),
            campaign: None,
        })
        .await
        .unwrap()
}

const JOINERS: (f64, f64) = (JOINERS_SQUARE.1, JOINERS_SQUARE.2);
const ABBEY: (f64, f64) = (ABBEY_HULTON.1, ABBEY_HULTON.2);

/// `GET path` as `token`; panics unless 200.
async fn read(app: &TestApp, path: &str, token: &str) -> Value {
    let (status, body) = app.get(path, Some(token)).await;
    assert_eq!(status, 200, "{path}: {body}");
    body
}

/// The texts of a list's items, in order.
fn texts(body: &Value) -> Vec<String> {
    body["items"].as_array().unwrap().iter().map(|item| item["text"].as_str().unwrap_or_default().to_owned()).collect()
}

async fn triage(app: &TestApp, token: &str, id: &str, body: Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("{}/api/v1/insights/{id}/triage", app.http_url()))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

async fn an_insight_reads_back_with_its_text_place_offset_pseudonym_and_cohort(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let code = app.create_invitation("Hanley barbers", 5, time::Duration::days(1)).await;
    let phone = Phone::enrolled(&app, &code, "Amir's phone").await.unwrap();
    let words = "Dealing outside the chip shop, \"after school\", every day";
    let id = capture(&phone, "drugs", words, JOINERS, datetime!(2026-06-12 16:05 +01:00)).await;
    phone.sync(&app).await.unwrap();
    // The same collector on a second device, and somebody else.
    let (first, second) = app.add_two_devices_of_one_collector("two phones").await;
    let (first, second) = (Phone::with_token(first).await, Phone::with_token(second).await);
    capture(&first, "asb", "Bikes on the pavement", ABBEY, datetime!(2026-06-13 09:00 +01:00)).await;
    capture(&second, "asb", "More bikes", ABBEY, datetime!(2026-06-14 09:00 +01:00)).await;
    first.sync(&app).await.unwrap();
    second.sync(&app).await.unwrap();

    let body = read(&app, "/api/v1/insights", &app.analyst_token).await;
    assert_eq!(texts(&body), ["More bikes", "Bikes on the pavement", words], "newest first");
    assert!(body["next_cursor"].is_null());
    let items = body["items"].as_array().unwrap();
    let item = &items[2];
    assert_eq!(item["id"], id.to_string());
    assert_eq!(item["captured_at"], "2026-06-12T16:05:00+01:00", "the phone's own offset, on both backends");
    assert_eq!((item["category"].as_str(), item["category_label"].as_str()), (Some("drugs"), Some("Drugs")));
    assert_eq!((item["feeling_safe"].as_i64(), item["channel"].as_str()), (Some(2), Some("pupil")));
    assert_eq!(item["location"], json!({ "lat": JOINERS.0, "lon": JOINERS.1, "accuracy_m": 8.0 }));
    assert_eq!((item["located_by"].as_str(), item["status"].as_str()), (Some("gps"), Some("filed")));
    let areas = item["areas"].as_array().unwrap();
    assert_eq!(areas.len(), 1, "tagged in every generation there is: {areas:?}");
    assert_eq!((areas[0]["set"].as_str(), areas[0]["code"].as_str()), (Some("wards"), Some(JOINERS_SQUARE.0)));
    assert_eq!(areas[0]["near_boundary"], false);
    assert_eq!(item["cohort"], "Hanley barbers");
    assert_eq!(
        item["triage"],
        json!({ "state": "new", "version": 0, "updated_at": null, "updated_by": null, "tags": [], "priorities": [] })
    );
    // One pseudonym per collector, whichever device; another for somebody else; never an id the server holds.
    let collectors: Vec<&str> = items.iter().map(|item| item["collector"].as_str().unwrap()).collect();
    assert_eq!(collectors[0], collectors[1], "two devices of one collector");
    assert_ne!(collectors[0], collectors[2]);
    let devices = app.store.devices(None).await.unwrap();
    for device in devices {
        for said in [device.device_id.to_string(), device.collector_id.to_string()] {
            assert!(!body.to_string().contains(&said), "the list never shows {said}");
        }
    }
    // The read is in the audit trail, with its filter and row count but not the words.
    let filter = AuditFilter { action: Some("insights.read".into()), ..AuditFilter::default() };
    let entries: Vec<_> = app.store.audit_entries(filter).try_collect().await.unwrap();
    let entry = entries.last().expect("the read is recorded");
    assert_eq!((entry.target.as_str(), entry.detail["rows"].as_i64()), ("all", Some(3)));
}

async fn filters_combine_and_search_finds_words_in_english_and_welsh(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let phone = Phone::new(&app, "Youth worker").await;
    let june = datetime!(2026-06-10 12:00 +00:00);
    capture(&phone, "drugs", "Dealers outside the chip shop after school", JOINERS, june).await;
    capture(&phone, "drugs", "Somebody deals by the park gates", ABBEY, june + time::Duration::days(20)).await;
    capture(&phone, "asb", "Mae'r plant yn ofnus ger yr orsaf", JOINERS, june).await;
    capture(&phone, "asb", "NEAR the \"station\" -- lights * broken", ABBEY, june).await;
    phone.sync(&app).await.unwrap();
    let token = &app.analyst_token;
    let list = |query: &str| format!("/api/v1/insights?{query}");

    // English stemming: "dealing" finds "dealers"? No: Porter stems dealers to "dealer"; "deals" and "dealing" meet.
    assert_eq!(texts(&read(&app, &list("q=dealing"), token).await), ["Somebody deals by the park gates"]);
    assert_eq!(texts(&read(&app, &list("q=chip+shops"), token).await), ["Dealers outside the chip shop after school"]);
    // Welsh found by its words, as typed.
    assert_eq!(texts(&read(&app, &list("q=ofnus"), token).await), ["Mae'r plant yn ofnus ger yr orsaf"]);
    assert_eq!(texts(&read(&app, &list("q=plant+orsaf"), token).await), ["Mae'r plant yn ofnus ger yr orsaf"]);
    // Search syntax is only ever words: quotes, NEAR, '-' and '*' are searched for as text, never obeyed.
    for query in ["q=%22station%22", "q=NEAR+station", "q=-lights", "q=broken*", "q=%22NEAR%22+*station"] {
        assert_eq!(
            texts(&read(&app, &list(query), token).await),
            ["NEAR the \"station\" -- lights * broken"],
            "{query}"
        );
    }
    assert!(texts(&read(&app, &list("q=zebra"), token).await).is_empty());

    // Filters combine with "and"; repeated areas and categories with "or".
    let joiners = format!("area={}", JOINERS_SQUARE.0);
    assert_eq!(
        read(&app, &list(&format!("{joiners}&category=drugs")), token).await["items"].as_array().unwrap().len(),
        1
    );
    let both = format!("{joiners}&area={}", ABBEY_HULTON.0);
    assert_eq!(read(&app, &list(&both), token).await["items"].as_array().unwrap().len(), 4);
    assert_eq!(
        read(&app, &list("category=drugs&category=asb&from=2026-06-15"), token).await["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        read(&app, &list("to=2026-06-15&channel=pupil&status=filed"), token).await["items"].as_array().unwrap().len(),
        3
    );
    assert!(read(&app, &list("channel=staff"), token).await["items"].as_array().unwrap().is_empty());
    assert_eq!(
        read(&app, &list("feeling_safe_min=2&feeling_safe_max=2"), token).await["items"].as_array().unwrap().len(),
        4
    );
    assert!(read(&app, &list("feeling_safe_min=3"), token).await["items"].as_array().unwrap().is_empty());
    assert_eq!(read(&app, &list("near_boundary=false&triage=new"), token).await["items"].as_array().unwrap().len(), 4);
    assert!(read(&app, &list("status=rejected"), token).await["items"].as_array().unwrap().is_empty());
    assert!(read(&app, &list("tag=urgent"), token).await["items"].as_array().unwrap().is_empty());
}

async fn pages_never_repeat_or_skip_while_insights_arrive(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let phone = Phone::new(&app, "Barber").await;
    let start = datetime!(2026-06-01 10:00 +01:00);
    for n in 0..7 {
        capture(&phone, "asb", &format!("first batch {n}"), JOINERS, start + time::Duration::hours(n)).await;
    }
    phone.sync(&app).await.unwrap();
    let token = &app.analyst_token;
    let mut seen: Vec<String> = Vec::new();
    let mut path = "/api/v1/insights?limit=3".to_owned();
    let mut pages = 0;
    loop {
        let body = read(&app, &path, token).await;
        seen.extend(texts(&body));
        pages += 1;
        if pages == 1 {
            // New insights arrive while the analyst pages: they are newer than the cursor, never shift the pages
            // behind it.
            for n in 0..4 {
                capture(&phone, "asb", &format!("arrived meanwhile {n}"), JOINERS, start).await;
            }
            phone.sync(&app).await.unwrap();
        }
        match body["next_cursor"].as_str() {
            Some(cursor) => path = format!("/api/v1/insights?limit=3&cursor={cursor}"),
            None => break,
        }
    }
    let wanted: Vec<String> = (0..7).rev().map(|n| format!("first batch {n}")).collect();
    assert_eq!(seen, wanted, "every insight there was when paging began, once, newest first");
    assert_eq!(pages, 3);
    let unique: BTreeSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len());
    // Editing an insight keeps its place.
    let body = read(&app, "/api/v1/insights?limit=50", token).await;
    assert_eq!(body["items"].as_array().unwrap().len(), 11);
}

async fn bad_filters_and_cursors_get_a_stable_code(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let token = &app.analyst_token;
    for (query, said) in [
        ("category=unicorns", "category=unicorns"),
        ("cursor=not-a-cursor", "not a cursor"),
        ("cursor=aTEuMA", "not a cursor"),
        ("limit=100000", "limit"),
        ("limit=-1", "limit"),
        ("q=%22*%22", "no words"),
        ("q=NEAR(a+b)+", "NEAR"),
        ("triage=done", "triage"),
        ("sort=oldest", "unknown parameter 'sort'"),
        ("status=lost&status=filed", "status=lost"),
    ] {
        let (status, body) = app.get(&format!("/api/v1/insights?{query}"), Some(token)).await;
        if said == "NEAR" {
            // Search syntax is searched for as words: a valid query that finds nothing here.
            assert_eq!(status, 200, "{query}: {body}");
            continue;
        }
        assert_eq!((status, body["code"].as_str()), (422, Some("invalid_query")), "{query}: {body}");
        assert!(body["message"].as_str().unwrap().contains(said), "{query}: {body}");
    }
    let (status, body) = app.get("/api/v1/insights?area=E99999999", Some(token)).await;
    assert_eq!((status, body["code"].as_str()), (404, Some("area_not_found")), "{body}");
    let (status, body) = app.get("/api/v1/insights?set=nowhere", Some(token)).await;
    assert_eq!((status, body["code"].as_str()), (404, Some("area_not_found")), "{body}");
    for id in ["not-a-uuid", "00000000-0000-0000-0000-000000000000"] {
        let (status, body) = app.get(&format!("/api/v1/insights/{id}"), Some(token)).await;
        assert_eq!((status, body["code"].as_str()), (404, Some("insight_not_found")), "{body}");
    }
}

async fn one_insight_has_its_history_and_a_scoped_analyst_sees_only_their_areas(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let phone = Phone::new(&app, "Hairdresser").await;
    let id = capture(&phone, "drugs", "Dealing by the bus stop", JOINERS, datetime!(2026-06-12 16:05 +01:00)).await;
    let elsewhere = capture(&phone, "asb", "Fireworks at night", ABBEY, datetime!(2026-06-12 18:00 +01:00)).await;
    phone.sync(&app).await.unwrap();
    let changes =
        InsightChanges { text: Some("Dealing by the bus stop on Leek Road".into()), ..InsightChanges::default() };
    phone.store.edit(id, &changes).await.unwrap();
    phone.sync(&app).await.unwrap();

    let body = read(&app, &format!("/api/v1/insights/{id}"), &app.analyst_token).await;
    assert_eq!(body["text"], "Dealing by the bus stop on Leek Road");
    let history = body["history"].as_array().unwrap();
    let by: Vec<&str> = history.iter().map(|version| version["by"].as_str().unwrap()).collect();
    assert_eq!(by, ["phone", "server", "phone"], "{history:?}");
    assert_eq!(history[0]["changed"]["text"], "Dealing by the bus stop");
    assert_eq!(history[0]["changed"]["captured_at"], "2026-06-12T16:05:00+01:00");
    assert!(history[1]["changed"]["status"].as_str().unwrap().starts_with("filed in"), "{history:?}");
    assert_eq!(history[2]["changed"], json!({ "text": "Dealing by the bus stop on Leek Road" }));
    assert!(history.iter().all(|version| version["at"].is_string()), "every version says when: {history:?}");
    assert_eq!(body["triage"]["notes"], json!([]), "one insight's answer holds its notes");

    // A person scoped to Joiner's Square reads that insight, not the other, and lists only theirs.
    let usecases = UseCases::new(app.store.clone());
    let operator = Principal::operator();
    let scope = format!("wards:{}", JOINERS_SQUARE.0);
    usecases.add_person(&operator, "ann@example.org", "analyst", Some(&scope)).await.unwrap();
    let token = usecases.issue_person_token(&operator, "ann@example.org", "test", None).await.unwrap().token;
    assert_eq!(texts(&read(&app, "/api/v1/insights", &token).await), ["Dealing by the bus stop on Leek Road"]);
    read(&app, &format!("/api/v1/insights/{id}"), &token).await;
    let (status, body) = app.get(&format!("/api/v1/insights/{elsewhere}"), Some(&token)).await;
    assert_eq!((status, body["code"].as_str()), (404, Some("insight_not_found")), "as if absent: {body}");
    let (status, body) = app.get(&format!("/api/v1/insights?area={}", ABBEY_HULTON.0), Some(&token)).await;
    assert_eq!((status, body["code"].as_str()), (404, Some("area_not_found")), "{body}");

    // A board reads none of it.
    usecases.add_person(&operator, "board@example.org", Role::Board.as_str(), None).await.unwrap();
    let board = usecases.issue_person_token(&operator, "board@example.org", "test", None).await.unwrap().token;
    for path in ["/api/v1/insights".to_owned(), format!("/api/v1/insights/{id}")] {
        let (status, body) = app.get(&path, Some(&board)).await;
        assert_eq!((status, body["code"].as_str()), (403, Some("forbidden")), "{path}: {body}");
    }
    let (status, _) = triage(&app, &board, &id.to_string(), json!({ "version": 0, "state": "reviewed" })).await;
    assert_eq!(status, 403);
}

async fn two_analysts_triaging_at_once_lose_nothing_and_triage_stays_off_the_phone(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let phone = Phone::new(&app, "School").await;
    let id =
        capture(&phone, "violence-weapons", "A knife shown at the gates", JOINERS, datetime!(2026-06-12 08:40 +01:00))
            .await;
    phone.sync(&app).await.unwrap();
    let (id, token) = (id.to_string(), app.analyst_token.clone());

    let (status, first) =
        triage(&app, &token, &id, json!({ "version": 0, "state": "reviewed", "add_tags": ["School Gates"] })).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!((first["state"].as_str(), first["version"].as_i64()), (Some("reviewed"), Some(1)));
    assert_eq!(first["tags"], json!(["school-gates"]));
    // A second analyst who read version 0 is told it changed, and nothing of theirs is written.
    let (status, stale) =
        triage(&app, &token, &id, json!({ "version": 0, "state": "not_actionable", "note": "nothing to do" })).await;
    assert_eq!((status, stale["code"].as_str()), (409, Some("triage_changed")), "{stale}");
    let now = read(&app, &format!("/api/v1/insights/{id}"), &token).await;
    assert_eq!((now["triage"]["state"].as_str(), now["triage"]["version"].as_i64()), (Some("reviewed"), Some(1)));
    assert_eq!(now["triage"]["notes"], json!([]));
    // They read again and write: notes append, priorities link, states move on.
    let priority = format!("wards:{}:violence-weapons", JOINERS_SQUARE.0);
    let (status, second) = triage(&app, &token, &id, json!({ "version": 1, "state": "actioned", "note": "Passed to the school's safeguarding lead", "link_priorities": [priority] })).await;
    assert_eq!(status, 200, "{second}");
    let (status, third) = triage(&app, &token, &id, json!({ "version": 2, "note": "Followed up" })).await;
    assert_eq!(status, 200, "{third}");
    let notes: Vec<&str> =
        third["notes"].as_array().unwrap().iter().map(|note| note["text"].as_str().unwrap()).collect();
    assert_eq!(notes, ["Passed to the school's safeguarding lead", "Followed up"]);
    assert_eq!((third["state"].as_str(), third["version"].as_i64()), (Some("actioned"), Some(3)));
    assert_eq!(third["priorities"], json!([priority]));
    assert!(third["updated_by"].as_str().unwrap().starts_with("token:"), "{third}");

    // Triage filters the list.
    let list = read(&app, "/api/v1/insights?triage=actioned&tag=school-gates", &token).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert!(read(&app, "/api/v1/insights?triage=new", &token).await["items"].as_array().unwrap().is_empty());

    // Bad triage writes are refused by name, and change nothing.
    for (body, said) in [
        (json!({ "version": 3 }), "changes nothing"),
        (json!({ "version": 3, "note": "   " }), "note is empty"),
        (json!({ "version": 3, "note": "x".repeat(2001) }), "longer than 2000"),
        (json!({ "version": 3, "add_tags": ["<script>"] }), "is not a tag"),
        (json!({ "version": 3, "link_priorities": ["wards:E99999999:drugs"] }), "no area"),
        (json!({ "version": 3, "link_priorities": ["wards:E05008737:unicorns"] }), "no category"),
    ] {
        let (status, answer) = triage(&app, &token, &id, body.clone()).await;
        assert_eq!((status, answer["code"].as_str()), (422, Some("triage_invalid")), "{body}: {answer}");
        assert!(answer["message"].as_str().unwrap().contains(said), "{body}: {answer}");
    }
    let (status, answer) = triage(&app, &token, &id, json!({ "version": 3, "state": "closed" })).await;
    assert_eq!((status, answer["code"].as_str()), (422, Some("invalid_request")), "{answer}");
    assert_eq!(read(&app, &format!("/api/v1/insights/{id}"), &token).await["triage"]["version"], 3);

    // Triage is the analysts' own: the collector's document and phone never hold it.
    let stored = app.store.load_document(DocumentId::for_insight(id.parse().unwrap())).await.unwrap().unwrap();
    let doc = AutoCommit::load(&stored.bytes).unwrap();
    let keys: Vec<String> = doc.keys(ROOT).collect();
    assert!(keys.iter().all(|key| !key.contains("triage") && !key.contains("note")), "{keys:?}");
    phone.sync(&app).await.unwrap();
    let on_phone = format!("{:?}", phone.store.get(id.parse().unwrap()).await.unwrap());
    assert!(!on_phone.contains("safeguarding") && !on_phone.contains("actioned"), "{on_phone}");

    // Each write is audited with the fields it changed, never the note's words.
    let filter = AuditFilter { action: Some("triage.update".into()), ..AuditFilter::default() };
    let entries: Vec<_> = app.store.audit_entries(filter).try_collect().await.unwrap();
    let allowed: Vec<_> = entries.iter().filter(|entry| entry.outcome.as_str() == "allowed").collect();
    assert_eq!(allowed.len(), 4, "{entries:?}");
    assert!(entries.iter().all(|entry| !entry.detail.to_string().contains("safeguarding")));
}

/// PostgreSQL's `timestamptz` drops the offset a phone wrote `captured_at` with: migration 0015 keeps it beside it,
/// and insights stored before the migration get theirs back from their documents when the server starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insights_stored_before_the_offset_was_kept_read_back_in_the_phones_offset() {
    use sqlx::Connection;
    let app = TestApp::spawn(Backend::Postgres).await;
    let phone = Phone::new(&app, "Barber").await;
    capture(&phone, "asb", "Before the migration", JOINERS, datetime!(2026-03-29 01:30 -05:30)).await;
    capture(&phone, "asb", "Also before", ABBEY, datetime!(2026-03-29 03:30 +01:00)).await;
    phone.sync(&app).await.unwrap();
    // As the rows stood before 0015: the instant only.
    let mut connection = sqlx::PgConnection::connect(&app.database_url).await.unwrap();
    let forgotten = sqlx::query("UPDATE insights SET captured_offset_minutes = NULL").execute(&mut connection).await;
    assert_eq!(forgotten.unwrap().rows_affected(), 2);
    let app = app.restart().await;
    let body = read(&app, "/api/v1/insights", &app.analyst_token).await;
    let times: Vec<&str> =
        body["items"].as_array().unwrap().iter().map(|item| item["captured_at"].as_str().unwrap()).collect();
    assert_eq!(times, ["2026-03-29T03:30:00+01:00", "2026-03-29T01:30:00-05:30"]);
}

/// A rare word, which PostgreSQL finds through its text index rather than by walking the insights (migration 0018),
/// is found wherever it lies: matches far apart in the order insights arrived all come back, newest first, and
/// paging on from a cursor neither repeats nor skips one.
#[tokio::test]
async fn a_rare_word_is_found_however_far_back_it_lies() {
    use sqlx::Connection;
    let app = TestApp::spawn(Backend::Postgres).await;
    let phone = Phone::new(&app, "Youth worker").await;
    let june = datetime!(2026-06-10 12:00 +00:00);
    for text in ["zebracrossing faded", "zebracrossing gone", "lights out", "zebracrossing repainted", "newest"] {
        capture(&phone, "asb", text, JOINERS, june).await;
    }
    phone.sync(&app).await.unwrap();
    // Spread them far apart, as if tens of thousands of insights had arrived between them.
    let mut connection = sqlx::PgConnection::connect(&app.database_url).await.unwrap();
    sqlx::query("UPDATE insights SET seq = seq + 100000").execute(&mut connection).await.unwrap();
    for (text, seq) in [
        ("zebracrossing faded", 1),
        ("zebracrossing gone", 30_000),
        ("lights out", 45_000),
        ("zebracrossing repainted", 60_000),
        ("newest", 60_001),
    ] {
        sqlx::query("UPDATE insights SET seq = $2 WHERE text = $1")
            .bind(text)
            .bind(seq)
            .execute(&mut connection)
            .await
            .unwrap();
    }
    sqlx::query("UPDATE insight_areas AS a SET insight_seq = i.seq FROM insights AS i WHERE i.id = a.insight_id")
        .execute(&mut connection)
        .await
        .unwrap();
    let token = &app.analyst_token;
    let found = read(&app, "/api/v1/insights?q=zebracrossing", token).await;
    assert_eq!(texts(&found), ["zebracrossing repainted", "zebracrossing gone", "zebracrossing faded"]);
    assert!(found["items"].as_array().unwrap().iter().all(|item| item["areas"][0]["code"] == JOINERS_SQUARE.0));
    let first = read(&app, "/api/v1/insights?q=zebracrossing&limit=2", token).await;
    assert_eq!(texts(&first), ["zebracrossing repainted", "zebracrossing gone"]);
    let cursor = first["next_cursor"].as_str().unwrap();
    let rest = read(&app, &format!("/api/v1/insights?q=zebracrossing&limit=2&cursor={cursor}"), token).await;
    assert_eq!(texts(&rest), ["zebracrossing faded"]);
}
