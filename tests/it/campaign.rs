//! Campaigns down (issue #4): the campaign syncs to any device as a read-only document — categories in English and
//! Welsh, prompts, and the filing generation's areas (codes and names, no polygons) — and follows boundary changes.

use std::time::Duration;

use geo::polygon;
use grapevine_server::geo::atlas::{stored_area, tag_in, Whereabouts};
use grapevine_server::geo::boundaries::{Area, Boundaries};
use grapevine_server::store::{Store, TaggableInsight};
use grapevine_sync_proto::automerge::transaction::Transactable;
use grapevine_sync_proto::automerge::{AutoCommit, ROOT};
use grapevine_sync_proto::campaign::{campaign_document, DEFAULT_CAMPAIGN_SLUG};
use grapevine_sync_proto::campaign_doc::{read_campaign, CampaignSheet, Text};
use grapevine_sync_proto::ErrorCode;
use grapevine_tests::{Backend, Phone, TestApp};

/// Asks the server for the campaign document, as a phone with nothing does.
async fn fetch_campaign(app: &TestApp, token: &str) -> CampaignSheet {
    let doc_id = campaign_document(DEFAULT_CAMPAIGN_SLUG).unwrap();
    let mut batch = vec![(doc_id, AutoCommit::new())];
    grapevine_client_sdk::sync_documents(&app.sync_url(), token, "phone", &mut batch).await.unwrap();
    read_campaign(&batch[0].1).expect("the campaign arrived")
}

async fn the_campaign_syncs_down_read_only_and_follows_the_boundaries(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let token = app.add_device("Hanley barbers").await;
    let sheet = fetch_campaign(&app, &token).await;
    assert_eq!(sheet.categories.len(), 14);
    let drugs = sheet.categories.iter().find(|category| category.slug == "drugs").unwrap();
    assert_eq!(drugs.label, Text { en: "Drugs".into(), cy: "Cyffuriau".into() });
    assert!(!sheet.prompt_text.en.is_empty() && !sheet.prompt_text.cy.is_empty());
    assert_eq!((sheet.areas.len(), sheet.boundaries.as_str()), (211, "wards 1"));
    assert!(sheet.areas.iter().any(|area| area.code == "E05008737" && area.name == "Joiner's Square"));

    // A device that edits its copy is refused, and the published campaign does not change.
    let doc_id = campaign_document(DEFAULT_CAMPAIGN_SLUG).unwrap();
    let mut batch = vec![(doc_id, AutoCommit::new())];
    grapevine_client_sdk::sync_documents(&app.sync_url(), &token, "phone", &mut batch).await.unwrap();
    batch[0].1.put(ROOT, "slug", "vandalised").unwrap();
    let refused = grapevine_client_sdk::sync_documents(&app.sync_url(), &token, "phone", &mut batch).await.unwrap_err();
    assert_eq!(refused.code(), Some(ErrorCode::DocumentReadOnly), "{refused}");
    assert_eq!(fetch_campaign(&app, &token).await, sheet);

    // A new generation of the filing set: the picker's areas follow, without a restart.
    boundary_review(&app).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let sheet = fetch_campaign(&app, &token).await;
        if sheet.boundaries == "wards 2" {
            assert_eq!(sheet.areas.len(), 1);
            assert_eq!(sheet.areas[0].code, "N1");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the campaign did not follow the new generation");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Through the SDK: the first sync brings the campaign for the form to render offline, later syncs leave it alone
/// (a quiet reconnect stays one round trip) until it changes.
async fn a_phone_keeps_the_campaign_and_syncs_it_only_when_it_changed(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let phone = Phone::new(&app, "Leek library").await;
    let before = phone.store.campaign().await.unwrap();
    assert_eq!((before.categories.len(), before.areas.len()), (14, 0), "the bundled campaign, no areas yet");

    let first = phone.sync(&app).await.unwrap();
    assert!(first.campaign_updated);
    let sheet = phone.store.campaign().await.unwrap();
    assert_eq!((sheet.areas.len(), sheet.boundaries.as_str()), (211, "wards 1"));
    let quiet = phone.sync(&app).await.unwrap();
    assert!(!quiet.campaign_updated);
    assert_eq!(quiet.traffic.round_trips, 1, "{:?}", quiet.traffic);

    // A boundary review: the next sync brings the new list of areas.
    boundary_review(&app).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !phone.sync(&app).await.unwrap().campaign_updated {
        assert!(std::time::Instant::now() < deadline, "the phone never got the new campaign");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let sheet = phone.store.campaign().await.unwrap();
    assert_eq!((sheet.areas.len(), sheet.boundaries.as_str()), (1, "wards 2"));
}

/// A boundary review: a second generation of the wards set, one neighbourhood over the whole county.
async fn boundary_review(app: &TestApp) {
    add_one_big_neighbourhood(app.store.as_ref(), "wards", "a boundary review").await;
}

/// Adds the next generation of `set`: one neighbourhood, N1, over the whole county.
pub(crate) async fn add_one_big_neighbourhood(store: &dyn Store, set: &str, source: &str) {
    let areas = vec![Area {
        code: "N1".into(),
        name: "One big neighbourhood".into(),
        shape: geo::MultiPolygon::new(vec![polygon![
            (x: -2.6, y: 52.3), (x: -1.5, y: 52.3), (x: -1.5, y: 53.3), (x: -2.6, y: 53.3)
        ]]),
    }];
    let boundaries = Boundaries::new(areas.clone()).unwrap();
    let tagger = |insight: &TaggableInsight| tag_in(&boundaries, &Whereabouts::from(insight));
    let stored = areas.iter().map(stored_area).collect();
    store.add_generation(set, source, stored, &tagger).await.unwrap();
}

on_both_backends!(
    the_campaign_syncs_down_read_only_and_follows_the_boundaries,
    a_phone_keeps_the_campaign_and_syncs_it_only_when_it_changed,
);
