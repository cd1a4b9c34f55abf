//! Who may read what: devices sync only their collector's documents; only analysts read the API.

use grapevine_client_sdk::{sync_documents, DocOutcome};
use grapevine_server::store::Role;
use grapevine_sync_proto::automerge::transaction::Transactable;
use grapevine_sync_proto::automerge::{AutoCommit, ReadDoc, ROOT};
use grapevine_sync_proto::DocumentId;
use grapevine_tests::points::JOINERS_SQUARE;
use grapevine_tests::{Backend, Phone, TestApp};

async fn the_analyst_api_needs_an_analyst_token(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let device_token = app.add_device("Phone").await;
    let (_, board_token) =
        grapevine_server::auth::issue_api_token(app.store.as_ref(), Role::Board, "Partnership board").await.unwrap();
    for path in ["/api/v1/areas", "/api/v1/areas/E05008737"] {
        let (status, body) = app.get(path, None).await;
        assert_eq!((status, body["code"].as_str()), (401, Some("unauthorized")), "{path}");
        let (status, body) = app.get(path, Some("gva_unknown")).await;
        assert_eq!((status, body["code"].as_str()), (401, Some("unauthorized")), "{path}");
        let (status, body) = app.get(path, Some(&device_token)).await;
        assert_eq!((status, body["code"].as_str()), (403, Some("forbidden")), "{path}");
        let (status, _) = app.get(path, Some(&board_token)).await;
        assert_eq!(status, 403, "{path}: boards get suppressed summaries, not analyst counts");
        let (status, _) = app.get(path, Some(&app.analyst_token)).await;
        assert_eq!(status, 200, "{path}");
    }
    let (status, body) = app.get("/healthz", None).await;
    assert_eq!((status, body), (200, serde_json::Value::Null), "health needs no token");
}

async fn bad_queries_get_a_stable_code(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let token = Some(app.analyst_token.as_str());
    let (status, body) = app.get("/api/v1/areas/E05999999", token).await;
    assert_eq!((status, body["code"].as_str()), (404, Some("area_not_found")));
    for query in ["from=2026-02-30", "from=2026-03-01&to=2026-02-01", "from=last-week", "area=E05008737"] {
        let (status, body) = app.get(&format!("/api/v1/areas?{query}"), token).await;
        assert_eq!((status, body["code"].as_str()), (422, Some("invalid_query")), "{query}: {body}");
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
}

async fn another_collectors_document_looks_exactly_like_a_missing_one(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let owner = Phone::new(&app, "Owner").await;
    let (_, lat, lon) = JOINERS_SQUARE;
    let id = owner.capture_at("domestic-abuse-vawg", lat, lon, Some(1)).await;
    owner.sync(&app).await.unwrap();
    let owned_doc = DocumentId::for_insight(id);

    let intruder_token = app.add_device("Intruder").await;
    // Asking for it, or asking for a document that does not exist, gets the same answer.
    let mut asks = vec![(owned_doc, AutoCommit::new()), (DocumentId::random(), AutoCommit::new())];
    let outcomes = sync_documents(&app.sync_url(), &intruder_token, "intruder", &mut asks).await.unwrap();
    assert_eq!(outcomes, vec![DocOutcome::Unavailable, DocOutcome::Unavailable]);
    assert!(asks[0].1.get(ROOT, "text").unwrap().is_none(), "nothing of the owner's document leaked");

    // Writing into it is refused the same way, and the document is untouched.
    let before = app.store.load_document(owned_doc).await.unwrap().unwrap();
    let mut forged = AutoCommit::new();
    forged.put(ROOT, "category", "other").unwrap();
    let mut writes = vec![(owned_doc, forged)];
    let outcomes = sync_documents(&app.sync_url(), &intruder_token, "intruder", &mut writes).await.unwrap();
    assert_eq!(outcomes, vec![DocOutcome::Unavailable]);
    let after = app.store.load_document(owned_doc).await.unwrap().unwrap();
    assert_eq!((after.version, after.bytes), (before.version, before.bytes));
    assert_eq!(app.totals().await, (vec![(JOINERS_SQUARE.0.into(), 1)], 0));
}

on_both_backends!(
    the_analyst_api_needs_an_analyst_token,
    bad_queries_get_a_stable_code,
    another_collectors_document_looks_exactly_like_a_missing_one,
);
