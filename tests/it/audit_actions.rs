//! What the server writes into the audit trail as people act (docs/audit.md, "What is recorded"), and the trail over
//! HTTP for admins: changes, refused credentials and refusals by the permission check are entries; the API streams the
//! trail as JSON Lines, filtered, to admins alone.

use futures_util::TryStreamExt;
use grapevine_server::audit::{AuditEntry, AuditFilter, AuditOutcome};
use grapevine_server::domain::Principal;
use grapevine_server::usecase::UseCases;
use grapevine_tests::{Backend, TestApp};
use serde_json::Value;

async fn entries(app: &TestApp, action: &str) -> Vec<AuditEntry> {
    let filter = AuditFilter { action: Some(action.to_owned()), ..AuditFilter::default() };
    app.store.audit_entries(filter).try_collect().await.unwrap()
}

/// `GET path` with a token; the status and the body's lines, each parsed as JSON.
async fn json_lines(app: &TestApp, path: &str, token: &str) -> (u16, Option<String>, Vec<Value>) {
    let response =
        reqwest::Client::new().get(format!("{}{path}", app.http_url())).bearer_auth(token).send().await.unwrap();
    let status = response.status().as_u16();
    let content_type = response.headers().get("content-type").map(|value| value.to_str().unwrap().to_owned());
    let body = response.text().await.unwrap();
    let lines =
        body.lines().map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}"))).collect();
    (status, content_type, lines)
}

async fn actions_refusals_and_credentials_are_recorded_and_admins_read_them(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let usecases = UseCases::new(app.store.clone());
    let operator = Principal::operator();
    usecases.add_person(&operator, "board@example.org", "board", None).await.unwrap();
    usecases.add_person(&operator, "admin@example.org", "admin", None).await.unwrap();
    let board = usecases.issue_person_token(&operator, "board@example.org", "test", None).await.unwrap().token;
    let admin = usecases.issue_person_token(&operator, "admin@example.org", "test", None).await.unwrap().token;

    // A change: recorded before it happened, naming the operator and what was given, never a token.
    let added = entries(&app, "person.add").await;
    assert_eq!(added.len(), 2);
    assert!(added[0].actor.starts_with("operator:") && added[0].role == "admin", "{:?}", added[0]);
    assert_eq!((added[0].target.as_str(), added[0].outcome), ("person:board@example.org", AuditOutcome::Allowed));
    let issued = entries(&app, "token.add").await;
    assert_eq!(issued.len(), 2);
    assert!(!serde_json::to_string(&issued[0].detail).unwrap().contains("gva_"), "no token in the trail");

    // A refusal by the permission check: the board may not read roll-ups.
    let (status, body) = app.get("/api/v1/areas", Some(&board)).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("forbidden")));
    let refused = entries(&app, "rollups.read").await;
    assert_eq!(refused.len(), 1);
    assert_eq!((refused[0].actor.as_str(), refused[0].role.as_str()), ("person:board@example.org", "board"));
    assert_eq!(refused[0].outcome, AuditOutcome::Refused);
    assert!(
        refused[0].request_id.is_some() && refused[0].client_addr.as_deref() == Some("127.0.0.1"),
        "{:?}",
        refused[0]
    );

    // A refused credential: nobody is known, the code says why, the token is not written.
    let (status, _) = app.get("/api/v1/areas", Some("gva_not-a-token")).await;
    assert_eq!(status, 401);
    let credentials = entries(&app, "credential.refused").await;
    assert_eq!(credentials.len(), 1);
    assert_eq!(
        (credentials[0].actor.as_str(), &credentials[0].detail["code"]),
        ("anonymous", &Value::from("unauthorized"))
    );
    assert!(!credentials[0].to_json().to_string().contains("not-a-token"));

    // The admin reads the trail over HTTP, filtered, streamed as JSON Lines; reading it is itself an entry.
    let (status, content_type, lines) = json_lines(&app, "/api/v1/audit?action=person.add", &admin).await;
    assert_eq!((status, content_type.as_deref()), (200, Some("application/x-ndjson")));
    let targets: Vec<&str> = lines.iter().map(|line| line["target"].as_str().unwrap()).collect();
    assert_eq!(targets, ["person:board@example.org", "person:admin@example.org"]);
    assert!(lines.iter().all(|line| line["hash"].as_str().is_some_and(|hash| hash.len() == 64)));
    let (_, _, everything) = json_lines(&app, "/api/v1/audit", &admin).await;
    let seqs: Vec<i64> = everything.iter().map(|line| line["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs, (1..=i64::try_from(seqs.len()).unwrap()).collect::<Vec<_>>(), "the whole chain, in order");
    assert!(everything
        .iter()
        .any(|line| line["action"] == "audit.list" && line["actor"] == "person:admin@example.org"));

    // Nobody else reads it, and a bad filter is refused by name.
    let (status, body) = app.get("/api/v1/audit", Some(&board)).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("forbidden")));
    let (status, body) = app.get("/api/v1/audit?since=2026-01-01", Some(&admin)).await;
    assert_eq!((status, body["code"].as_str()), (422, Some("invalid_query")));
    assert!(body["message"].as_str().unwrap().contains("since"), "{body}");

    // And the whole trail still verifies.
    let verified = usecases.verify_audit(&operator).await.unwrap();
    assert!(matches!(verified, grapevine_server::audit::Verified::Intact { .. }), "{verified:?}");
}

on_both_backends!(actions_refusals_and_credentials_are_recorded_and_admins_read_them);

/// Spraying bad tokens cannot fill the trail: refused credentials from one network are recorded one by one up to a
/// budget (20, then 20 a minute), refused all the same beyond it, and a good token from that network still works.
async fn refused_credentials_are_recorded_within_a_budget_per_network(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for attempt in 0..40 {
        let (status, body) = app.get("/api/v1/areas", Some(&format!("gva_guess{attempt}"))).await;
        assert_eq!((status, body["code"].as_str()), (401, Some("unauthorized")), "attempt {attempt}");
    }
    let recorded = entries(&app, "credential.refused").await.len();
    assert!((20..=22).contains(&recorded), "{recorded} of 40 recorded");
    let (status, _) = app.get("/api/v1/areas", Some(&app.analyst_token)).await;
    assert_eq!(status, 200, "the network is not locked out");
}

on_both_backends!(refused_credentials_are_recorded_within_a_budget_per_network);
