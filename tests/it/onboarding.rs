//! Onboarding and the outbox (#4): invitations redeemed for device tokens (uses and expiry enforced, the last use
//! to exactly one phone), devices listed and revoked (a revoked phone keeps its insights), and insights edited and
//! withdrawn after capture with the roll-ups following. The `grapevine invite` and `grapevine device` commands are
//! driven through the real binary.

use std::path::Path;

use crate::command::{grapevine, stdout};
use grapevine_client_sdk::{sync_enrolled, ErrorCode, InsightChanges, Location, Status};
use grapevine_server::store::{Outcome, Revoked};
use grapevine_sync_proto::automerge::transaction::Transactable;
use grapevine_sync_proto::automerge::{AutoCommit, ROOT};
use grapevine_sync_proto::document::is_withdrawn;
use grapevine_sync_proto::DocumentId;
use grapevine_tests::points::{ABBEY_HULTON, JOINERS_SQUARE};
use grapevine_tests::{Backend, Phone, TestApp};
use serde_json::json;
use time::Duration;

async fn enrol_code(app: &TestApp, code: &str) -> (u16, serde_json::Value) {
    let response = enrol_as(app, code, "").await;
    (response.status().as_u16(), response.json().await.unwrap_or(serde_json::Value::Null))
}

/// `POST /api/v1/enrol` with a code, saying it was forwarded for `forwarded_for` (if not empty).
async fn enrol_as(app: &TestApp, code: &str, forwarded_for: &str) -> reqwest::Response {
    let mut request = reqwest::Client::new()
        .post(format!("http://{}/api/v1/enrol", app.addr))
        .header("content-type", "application/json")
        .body(json!({ "code": code, "label": "" }).to_string());
    if !forwarded_for.is_empty() {
        request = request.header("x-forwarded-for", forwarded_for);
    }
    request.send().await.unwrap()
}

async fn a_phone_enrols_with_a_code_and_syncs_with_the_stored_token(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let code = app.create_invitation("Hanley barbers", 20, Duration::days(14)).await;
    // Typed the way people type it: lower case, spaces for dashes.
    let typed = code.to_lowercase().replace('-', " ");
    let phone = Phone::enrolled(&app, &typed, "Sam's phone").await.unwrap();
    let enrolment = phone.store.enrolment().await.unwrap().expect("the phone keeps its enrolment");
    assert_eq!(enrolment.server_url, app.http_url());

    let (_, lat, lon) = JOINERS_SQUARE;
    let id = phone.capture_at("drugs", lat, lon, Some(2)).await;
    let report = sync_enrolled(&phone.store).await.unwrap();
    assert_eq!(report.sent, 1);
    assert!(
        matches!(phone.store.get(id).await.unwrap().status, Status::Filed { ref area_code, .. } if area_code == JOINERS_SQUARE.0)
    );

    let devices = app.store.devices(Some(enrolment.collector_id)).await.unwrap();
    assert_eq!(devices.len(), 1, "one redemption, one collector with one device");
    assert_eq!((devices[0].device_id, devices[0].label.as_str()), (enrolment.device_id, "Sam's phone"));
    let invitation = &app.store.invitations().await.unwrap()[0];
    assert_eq!(devices[0].invitation_id, Some(invitation.id));
    assert_eq!((invitation.uses, invitation.uses_left), (20, 19));

    // Without a label the device takes the invitation's; each redemption is a new collector.
    let (status, body) = enrol_code(&app, &code).await;
    assert_eq!(status, 201, "{body}");
    let second = body["collector_id"].as_str().unwrap().parse().unwrap();
    assert_ne!(second, enrolment.collector_id);
    assert_eq!(app.store.devices(Some(second)).await.unwrap()[0].label, "Hanley barbers");
}

async fn codes_unknown_expired_used_up_or_revoked_are_refused_with_their_codes(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let refused = |error: grapevine_client_sdk::SdkError| error.code();

    let unknown = Phone::enrolled(&app, "2222-3333-44", "").await.err().map(refused);
    assert_eq!(unknown, Some(Some(ErrorCode::InvitationUnknown)));
    assert_eq!(enrol_code(&app, "2222-3333-44").await.0, 404);

    let expired = app.create_invitation("Last term", 5, Duration::seconds(-1)).await;
    let (status, body) = enrol_code(&app, &expired).await;
    assert_eq!((status, body["code"].as_str()), (410, Some("invitation_expired")), "{body}");

    let once = app.create_invitation("One phone", 1, Duration::days(1)).await;
    Phone::enrolled(&app, &once, "").await.unwrap();
    let used_up = Phone::enrolled(&app, &once, "").await.err().map(refused);
    assert_eq!(used_up, Some(Some(ErrorCode::InvitationUsedUp)));
    assert_eq!(enrol_code(&app, &once).await.0, 410);

    let revoked = app.create_invitation("Withdrawn cohort", 5, Duration::days(1)).await;
    let id = app.store.invitations().await.unwrap().into_iter().find(|i| i.label == "Withdrawn cohort").unwrap().id;
    assert_eq!(app.store.revoke_invitation(id).await.unwrap(), Revoked::Now);
    assert_eq!(app.store.revoke_invitation(id).await.unwrap(), Revoked::Already);
    assert_eq!(app.store.revoke_invitation(uuid::Uuid::new_v4()).await.unwrap(), Revoked::Unknown);
    let (status, body) = enrol_code(&app, &revoked).await;
    assert_eq!((status, body["code"].as_str()), (410, Some("invitation_revoked")), "{body}");

    // Bad requests: not JSON, a missing code, an unknown field, a label that is too long or not one line.
    let open = app.create_invitation("Open", 5, Duration::days(1)).await;
    for body in [
        "not json".to_owned(),
        json!({ "label": "x" }).to_string(),
        json!({ "code": open, "colour": "red" }).to_string(),
        json!({ "code": open, "label": "x".repeat(101) }).to_string(),
        json!({ "code": open, "label": "two\nlines" }).to_string(),
    ] {
        let (status, answer) = app.post_json("/api/v1/enrol", &body).await;
        assert_eq!((status, answer["code"].as_str()), (422, Some("invalid_request")), "{body}: {answer}");
    }
    let invitation = app.store.invitations().await.unwrap().into_iter().find(|i| i.label == "Open").unwrap();
    assert_eq!(invitation.uses_left, 5, "refused requests take no use");
}

/// Guessing codes is limited per address: 20 unknown codes at once, then 20 a minute. Once the budget is spent every
/// code is refused, a right one too, without being looked up; codes that exist (expired, used up) cost nothing.
async fn unknown_codes_from_one_address_are_limited(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let expired = app.create_invitation("Last term", 5, Duration::seconds(-1)).await;
    for _ in 0..25 {
        assert_eq!(enrol_code(&app, &expired).await.0, 410, "an existing code is not a guess");
    }
    // Twenty guesses at once: the budget is taken before the lookup, so parallel guesses cannot outrun it.
    let app = &app;
    let guesses = (0..25).map(|i| async move { enrol_code(app, &format!("2222-3333-{i:02}")).await });
    let answers = futures_util::future::join_all(guesses).await;
    let statuses: Vec<u16> = answers.iter().map(|(status, _)| *status).collect();
    assert_eq!(statuses.iter().filter(|status| **status == 404).count(), 20, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|status| **status == 429).count(), 5, "{statuses:?}");
    let (_, body) = answers.iter().find(|(status, _)| *status == 429).unwrap();
    assert_eq!(body["code"], "rate_limited", "{body}");

    // A right code now waits too, and takes no use; the SDK surfaces the code.
    let right = app.create_invitation("This term", 5, Duration::days(1)).await;
    let response = enrol_as(app, &right, "").await;
    assert_eq!(response.status().as_u16(), 429);
    let retry_after: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=3).contains(&retry_after), "one guess back every 3 s: retry after {retry_after} s");
    let refused = Phone::enrolled(app, &right, "").await.err().map(|error| error.code());
    assert_eq!(refused, Some(Some(ErrorCode::RateLimited)));
    let invitation = app.store.invitations().await.unwrap().into_iter().find(|i| i.label == "This term").unwrap();
    assert_eq!(invitation.uses_left, 5);

    // After the wait the server asked for, the right code goes through.
    tokio::time::sleep(std::time::Duration::from_secs(retry_after)).await;
    let (status, body) = enrol_code(app, &right).await;
    assert_eq!(status, 201, "{body}");
}

/// Behind a trusted reverse proxy the budget is the forwarded address's, so one guesser does not lock every phone
/// out; from anyone else `X-Forwarded-For` changes nothing, so a guesser cannot name a fresh address per guess.
async fn behind_a_trusted_proxy_each_forwarded_address_has_its_own_budget(backend: Backend) {
    async fn guess(app: &TestApp, code: &str, forwarded_for: &str) -> u16 {
        enrol_as(app, code, forwarded_for).await.status().as_u16()
    }

    let proxied =
        TestApp::spawn_configured(backend, |config| config.trusted_proxies = vec!["127.0.0.1".parse().unwrap()]).await;
    for i in 0..20 {
        assert_eq!(guess(&proxied, &format!("2222-3333-{i:02}"), "198.51.100.1").await, 404);
    }
    assert_eq!(guess(&proxied, "2222-3333-99", "198.51.100.1").await, 429, "the guesser's budget is spent");
    let right = proxied.create_invitation("Behind the proxy", 1, Duration::days(1)).await;
    assert_eq!(guess(&proxied, &right, "203.0.113.9, 198.51.100.2").await, 201, "another phone is not locked out");

    let direct = TestApp::spawn(backend).await;
    for i in 0..20 {
        assert_eq!(guess(&direct, &format!("2222-3333-{i:02}"), &format!("198.51.100.{i}")).await, 404);
    }
    assert_eq!(guess(&direct, "2222-3333-99", "198.51.100.99").await, 429, "the header is not believed");
}

async fn the_last_uses_go_to_exactly_as_many_phones_as_there_are(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let code = app.create_invitation("Three phones", 3, Duration::days(1)).await;
    let attempts = (0..8).map(|_| enrol_code(&app, &code));
    let answers = futures_util::future::join_all(attempts).await;
    let enrolled = answers.iter().filter(|(status, _)| *status == 201).count();
    let used_up =
        answers.iter().filter(|(status, body)| *status == 410 && body["code"] == "invitation_used_up").count();
    assert_eq!((enrolled, used_up), (3, 5), "{answers:?}");
    assert_eq!(app.store.invitations().await.unwrap()[0].uses_left, 0);
    assert_eq!(app.store.devices(None).await.unwrap().len(), 3);
}

async fn a_revoked_device_is_refused_and_keeps_its_insights(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let code = app.create_invitation("Bentilee youth club", 2, Duration::days(1)).await;
    let phone = Phone::enrolled(&app, &code, "").await.unwrap();
    let (_, lat, lon) = JOINERS_SQUARE;
    let sent = phone.capture_at("asb", lat, lon, None).await;
    phone.sync(&app).await.unwrap();
    let unsent = phone.capture_at("drugs", lat, lon, None).await;

    let device_id = phone.store.enrolment().await.unwrap().unwrap().device_id;
    assert_eq!(app.store.revoke_device(device_id).await.unwrap(), Revoked::Now);
    let error = sync_enrolled(&phone.store).await.unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::DeviceRevoked), "{error}");
    let (status, body) = app.get("/sync", Some(&phone.token)).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("device_revoked")), "refused before the upgrade");

    assert!(matches!(phone.store.get(sent).await.unwrap().status, Status::Filed { .. }));
    assert_eq!(phone.store.get(unsent).await.unwrap().status, Status::Captured, "the unsent insight stays");
    let devices = app.store.devices(None).await.unwrap();
    assert!(devices.iter().find(|device| device.device_id == device_id).unwrap().revoked_at.is_some());
    assert_eq!(app.store.revoke_device(device_id).await.unwrap(), Revoked::Already);
    assert_eq!(app.store.revoke_device(uuid::Uuid::new_v4()).await.unwrap(), Revoked::Unknown);

    // Another phone of the cohort is not affected.
    let other = Phone::enrolled(&app, &code, "").await.unwrap();
    other.capture_at("asb", lat, lon, None).await;
    assert_eq!(sync_enrolled(&other.store).await.unwrap().sent, 1);
}

async fn an_edit_moves_the_insight_and_its_count(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let phone = Phone::new(&app, "Hanley barbers").await;
    let (joiners, lat, lon) = JOINERS_SQUARE;
    let id = phone.capture_at("drugs", lat, lon, Some(2)).await;
    phone.sync(&app).await.unwrap();
    assert_eq!(app.totals().await, (vec![(joiners.to_owned(), 1)], 0));

    let (abbey, lat, lon) = ABBEY_HULTON;
    let changes = InsightChanges {
        category: Some("asb".into()),
        text: Some("It moved up the road".into()),
        location: Some(Location::Gps { lat, lon, accuracy_m: 5.0 }),
        ..InsightChanges::default()
    };
    let edited = phone.store.edit(id, &changes).await.unwrap();
    assert!(
        edited.unsent_change && matches!(edited.status, Status::Filed { ref area_code, .. } if area_code == joiners)
    );
    assert!(edited.describe().ends_with("the edit is not sent yet"), "{}", edited.describe());
    let report = phone.sync(&app).await.unwrap();
    assert_eq!(report.sent, 0, "an edit is not a new insight");

    let listed = phone.store.get(id).await.unwrap();
    assert!(!listed.unsent_change);
    assert!(matches!(listed.status, Status::Filed { ref area_code, .. } if area_code == abbey), "{listed:?}");
    assert_eq!((listed.category.as_str(), listed.text.as_str()), ("asb", "It moved up the road"));
    assert_eq!(app.totals().await, (vec![(abbey.to_owned(), 1)], 0), "the count moved with it");
    let area = app.area(abbey, "").await;
    assert_eq!((area["by_category"]["asb"].as_i64(), area["by_category"]["drugs"].as_i64()), (Some(1), Some(0)));

    // An edit that breaks a rule changes nothing, on the phone or the server.
    let breaking = InsightChanges { category: Some("parking".into()), ..Default::default() };
    let error = phone.store.edit(id, &breaking).await.unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::InsightCategoryUnknown));
    assert!(!phone.store.get(id).await.unwrap().unsent_change);
    assert_eq!(phone.store.insight(id).await.unwrap().category, "asb");
}

async fn a_withdrawn_insight_stops_counting_and_the_phone_shows_it(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let phone = Phone::new(&app, "Hanley barbers").await;
    let (joiners, lat, lon) = JOINERS_SQUARE;
    let kept = phone.capture_at("drugs", lat, lon, Some(2)).await;
    let taken_back = phone.capture_at("asb", lat, lon, Some(4)).await;
    let never_sent = phone.capture_at("asb", lat, lon, None).await;
    phone.store.withdraw(never_sent).await.unwrap();
    phone.sync(&app).await.unwrap();
    assert_eq!(app.totals().await, (vec![(joiners.to_owned(), 2)], 0), "withdrawn before sending: never counted");
    assert_eq!(phone.store.get(never_sent).await.unwrap().status, Status::Withdrawn);

    let withdrawing = phone.store.withdraw(taken_back).await.unwrap();
    assert!(withdrawing.withdrawn && withdrawing.unsent_change);
    assert!(withdrawing.describe().ends_with("the withdrawal is not sent yet"), "{}", withdrawing.describe());
    phone.sync(&app).await.unwrap();
    let listed = phone.store.get(taken_back).await.unwrap();
    assert_eq!((listed.status, listed.unsent_change), (Status::Withdrawn, false));
    assert_eq!(app.totals().await, (vec![(joiners.to_owned(), 1)], 0));
    let area = app.area(joiners, "").await;
    assert_eq!((area["by_category"]["asb"].as_i64(), area["feeling_safe_mean"].as_f64()), (Some(0), Some(2.0)));
    let row = app.store.insight(taken_back).await.unwrap().unwrap();
    assert_eq!((row.outcome, row.text), (Outcome::Withdrawn, None), "the server's row keeps no content");
    assert!(matches!(phone.store.get(kept).await.unwrap().status, Status::Filed { .. }));

    // A withdrawn insight is not edited.
    let edit = InsightChanges { text: Some("again".into()), ..Default::default() };
    let error = phone.store.edit(taken_back, &edit).await.unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::InsightWithdrawn));

    // Withdrawal is final: another app of the same collector writing `withdrawn: false` does not count it again.
    let doc_id = DocumentId::for_insight(taken_back);
    let stored = app.store.load_document(doc_id).await.unwrap().unwrap();
    let mut doc = AutoCommit::load(&stored.bytes).unwrap();
    doc.put(ROOT, "withdrawn", false).unwrap();
    let mut docs = vec![(doc_id, doc)];
    grapevine_client_sdk::sync_documents(&app.sync_url(), &phone.token, "another-app", &mut docs).await.unwrap();
    let stored = AutoCommit::load(&app.store.load_document(doc_id).await.unwrap().unwrap().bytes).unwrap();
    assert!(!is_withdrawn(&stored), "the document took the change (it is a CRDT)");
    let row = app.store.insight(taken_back).await.unwrap().unwrap();
    assert_eq!((row.outcome, row.text), (Outcome::Withdrawn, None), "but the server keeps it withdrawn");
    assert_eq!(app.totals().await, (vec![(joiners.to_owned(), 1)], 0), "and it still does not count");
}

async fn invitations_and_devices_from_the_command_line(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let database_url = app.database_url.clone();
    let secret = app.invitation_secret_path.to_str().unwrap();
    let cards = tempfile::tempdir().unwrap();
    let created = stdout(&grapevine(&[
        "invite",
        "create",
        "--label",
        "Hanley barbers",
        "--uses",
        "20",
        "--expires",
        "14d",
        "--qr-out",
        cards.path().to_str().unwrap(),
        "--server-url",
        &app.http_url(),
        "--invitation-secret",
        secret,
        "--database-url",
        &database_url,
    ]));
    let code = created.lines().last().unwrap().trim().to_owned();
    assert_eq!(code.len(), 12, "{created}");
    assert!(created.contains("grapevine://") || created.contains("enrol link"), "{created}");
    let files: Vec<_> = std::fs::read_dir(cards.path()).unwrap().map(|entry| entry.unwrap().path()).collect();
    let with_extension = |extension: &str| files.iter().find(|path| path.extension().unwrap() == extension).cloned();
    let svg = std::fs::read_to_string(with_extension("svg").expect("an SVG")).unwrap();
    assert!(svg.starts_with("<?xml") || svg.starts_with("<svg"), "{}", &svg[..40]);
    let png = std::fs::read(with_extension("png").expect("a PNG")).unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"));

    let (status, body) = enrol_code(&app, &code).await;
    assert_eq!(status, 201, "{body}");
    let listed = stdout(&grapevine(&["invite", "list", "--database-url", &database_url]));
    assert!(listed.contains("19/20") && listed.contains("open") && listed.contains("Hanley barbers"), "{listed}");

    let device_id = body["device_id"].as_str().unwrap().to_owned();
    let devices = stdout(&grapevine(&["device", "list", "--database-url", &database_url]));
    let line = devices.lines().find(|line| line.starts_with(&device_id)).unwrap_or_else(|| panic!("{devices}"));
    assert!(line.contains(body["collector_id"].as_str().unwrap()) && line.contains(" - "), "not revoked: {line}");
    let collector = body["collector_id"].as_str().unwrap();
    let of_collector =
        stdout(&grapevine(&["device", "list", "--collector", collector, "--database-url", &database_url]));
    assert_eq!(of_collector.lines().count(), 2, "a header and one device: {of_collector}");

    let revoked = stdout(&grapevine(&["device", "revoke", &device_id, "--database-url", &database_url]));
    assert!(revoked.contains("Revoked device"), "{revoked}");
    let again = stdout(&grapevine(&["device", "revoke", &device_id, "--database-url", &database_url]));
    assert!(again.contains("revoked already"), "{again}");
    let (status, answer) = app.get("/sync", Some(body["token"].as_str().unwrap())).await;
    assert_eq!((status, answer["code"].as_str()), (403, Some("device_revoked")));
    let devices = stdout(&grapevine(&["device", "list", "--database-url", &database_url]));
    assert!(!devices.lines().find(|line| line.starts_with(&device_id)).unwrap().contains(" - "), "{devices}");

    let unknown = uuid::Uuid::new_v4().to_string();
    let refused = grapevine(&["device", "revoke", &unknown, "--database-url", &database_url]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("no device has the id"));

    let invitation_id = listed.lines().nth(1).unwrap().split_whitespace().next().unwrap().to_owned();
    stdout(&grapevine(&["invite", "revoke", &invitation_id, "--database-url", &database_url]));
    assert_eq!(enrol_code(&app, &code).await.1["code"], "invitation_revoked");
    let refused = grapevine(&["invite", "revoke", &unknown, "--database-url", &database_url]);
    assert!(!refused.status.success());

    // Without --server-url the QR code holds the code alone; a validity of nothing is refused.
    let plain = stdout(&grapevine(&[
        "invite",
        "create",
        "--label",
        "Pupils",
        "--qr-out",
        cards.path().join("plain").to_str().unwrap(),
        "--invitation-secret",
        secret,
        "--database-url",
        &database_url,
    ]));
    let plain_dir = cards.path().join("plain");
    let qr_line = plain.lines().find(|line| line.starts_with("QR code")).unwrap_or_else(|| panic!("{plain}"));
    let id = plain.split_whitespace().nth(2).unwrap();
    assert_eq!(
        qr_line,
        format!(
            "QR code, holding the code alone: {} and {}",
            plain_dir.join(format!("invitation-{id}.svg")).display(),
            plain_dir.join(format!("invitation-{id}.png")).display()
        ),
        "one level of brackets at most: {plain}"
    );
    assert!(plain.contains("Give --server-url"), "{plain}");
    assert!(Path::new(&cards.path().join("plain")).read_dir().unwrap().count() == 2);
    let never = grapevine(&["invite", "create", "--label", "x", "--expires", "0d", "--database-url", &database_url]);
    assert!(!never.status.success());
    assert!(String::from_utf8_lossy(&never.stderr).contains("above zero"));
}

on_both_backends!(
    unknown_codes_from_one_address_are_limited,
    behind_a_trusted_proxy_each_forwarded_address_has_its_own_budget,
    a_phone_enrols_with_a_code_and_syncs_with_the_stored_token,
    codes_unknown_expired_used_up_or_revoked_are_refused_with_their_codes,
    the_last_uses_go_to_exactly_as_many_phones_as_there_are,
    a_revoked_device_is_refused_and_keeps_its_insights,
    an_edit_moves_the_insight_and_its_count,
    a_withdrawn_insight_stops_counting_and_the_phone_shows_it,
    invitations_and_devices_from_the_command_line,
);
