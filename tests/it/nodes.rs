//! Several devices of one collector, and several server nodes over one PostgreSQL, behaving as one service.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use grapevine_client_sdk::SyncConnection;
use grapevine_server::store::{self, Role};
use grapevine_sync_proto::automerge::transaction::Transactable;
use grapevine_sync_proto::automerge::{AutoCommit, ROOT};
use grapevine_sync_proto::document::{read_insight, read_server_record, write_insight};
use grapevine_sync_proto::{Channel, DocumentId, Insight, Location};
use grapevine_tests::points::JOINERS_SQUARE;
use grapevine_tests::{fresh_database, Backend, Phone, ServerProcess, TestApp};

const SERVER: &str = env!("CARGO_BIN_EXE_grapevine-under-test");

fn new_insight_doc(n: usize) -> (DocumentId, AutoCommit) {
    let insight = Insight {
        id: uuid::Uuid::new_v4(),
        captured_at: time::macros::datetime!(2026-11-21 16:00 +00:00),
        campaign: "community-safety".into(),
        category: "exploitation".into(),
        text: format!("Older lads recruiting kids outside the shop, report {n}"),
        feeling_safe: Some(2),
        location: Location::Gps { lat: JOINERS_SQUARE.1, lon: JOINERS_SQUARE.2, accuracy_m: 15.0 },
        channel: Channel::YouthWorker,
    };
    let mut doc = AutoCommit::new();
    write_insight(&mut doc, &insight).unwrap();
    (DocumentId::for_insight(insight.id), doc)
}

fn all_filed(docs: &HashMap<DocumentId, AutoCommit>, n_docs: usize) -> bool {
    docs.len() == n_docs && docs.values().all(|doc| read_server_record(doc).is_some())
}

async fn another_device_of_the_same_collector_hears_of_a_new_insight(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (first_token, second_token) = app.add_two_devices_of_one_collector("Youth club").await;
    let mut second = SyncConnection::open(&app.sync_url(), &second_token, "second-phone").await.unwrap();
    let mut stranger =
        SyncConnection::open(&app.sync_url(), &app.add_device("Stranger").await, "stranger").await.unwrap();

    let first = Phone::with_token(first_token).await;
    let id = first.capture_at("drugs", JOINERS_SQUARE.1, JOINERS_SQUARE.2, Some(2)).await;
    first.sync(&app).await.unwrap();

    let mut docs = HashMap::new();
    let heard = second.follow(&mut docs, Duration::from_secs(20), |docs| all_filed(docs, 1)).await.unwrap();
    assert!(heard, "the collector's other device was told of the new insight");
    let doc = &docs[&DocumentId::for_insight(id)];
    assert_eq!(read_insight(doc).unwrap().text, "drugs seen here");

    // Another collector's device, connected all along, hears nothing of it.
    let mut strangers_docs = HashMap::new();
    let heard =
        stranger.follow(&mut strangers_docs, Duration::from_millis(300), |docs| !docs.is_empty()).await.unwrap();
    assert!(!heard && strangers_docs.is_empty());
}

on_both_backends!(another_device_of_the_same_collector_hears_of_a_new_insight);

/// Two real server processes over one PostgreSQL: an insight synced through node A reaches the collector's other
/// device on node B; roll-ups read the same from both; and the same documents changed through both nodes at the same
/// moment lose no change and count each insight once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_over_one_postgres_behave_as_one_service() {
    const N_DOCS: usize = 10;
    let dir = tempfile::tempdir().unwrap();
    let (database_url, postgres_database) = fresh_database(Backend::Postgres, &dir).await;
    let _drop_database = grapevine_tests::DropDatabase(postgres_database);
    let node_a = ServerProcess::start(SERVER, &database_url).await;
    let node_b = ServerProcess::start(SERVER, &database_url).await;
    let store = store::open(&database_url).await.unwrap();
    let (first, first_token) = grapevine_server::auth::issue_device(store.as_ref(), "phone A", None).await.unwrap();
    let (_, second_token) =
        grapevine_server::auth::issue_device(store.as_ref(), "phone B", Some(first.collector_id)).await.unwrap();
    let (_, analyst) = grapevine_server::auth::issue_api_token(store.as_ref(), Role::Analyst, "PCC").await.unwrap();

    let mut on_b = SyncConnection::open(&node_b.sync_url(), &second_token, "phone-b").await.unwrap();
    let mut first_docs: Vec<_> = (0..N_DOCS).map(new_insight_doc).collect();
    let started = Instant::now();
    let outcomes = grapevine_client_sdk::sync_documents(&node_a.sync_url(), &first_token, "phone-a", &mut first_docs)
        .await
        .unwrap();
    assert!(outcomes.iter().all(|outcome| *outcome == grapevine_client_sdk::DocOutcome::InStep));
    let mut second_docs = HashMap::new();
    let heard = on_b.follow(&mut second_docs, Duration::from_secs(20), |docs| all_filed(docs, N_DOCS)).await.unwrap();
    assert!(heard, "every insight synced through node A reached the device on node B");
    eprintln!("{N_DOCS} insights through node A reached node B's device {:?} after the sync began", started.elapsed());

    let http = reqwest::Client::new();
    let areas = |addr: std::net::SocketAddr| {
        let request = http.get(format!("http://{addr}/api/v1/areas")).bearer_auth(&analyst);
        async move { request.send().await.unwrap().json::<serde_json::Value>().await.unwrap() }
    };
    let (from_a, from_b) = (areas(node_a.addr).await, areas(node_b.addr).await);
    assert_eq!(from_a, from_b, "roll-ups read the same from every node");
    assert_eq!(from_a["areas"][0]["total"], N_DOCS);

    // The same documents, changed on both devices, synced through both nodes at once.
    for (_, doc) in &mut first_docs {
        doc.put(ROOT, "feeling_safe", 5_i64).unwrap();
    }
    let mut second_batch: Vec<(DocumentId, AutoCommit)> = second_docs.into_iter().collect();
    for (_, doc) in &mut second_batch {
        doc.put(ROOT, "text", "Edited on the second phone").unwrap();
    }
    let url_a = node_a.sync_url();
    let through_a = grapevine_client_sdk::sync_documents(&url_a, &first_token, "phone-a", &mut first_docs);
    let through_b = on_b.sync_batch(&mut second_batch);
    let (through_a, through_b) = tokio::join!(through_a, through_b);
    through_a.unwrap();
    through_b.unwrap();

    for (doc_id, _) in &first_docs {
        let stored = store.load_document(*doc_id).await.unwrap().unwrap();
        let insight = read_insight(&AutoCommit::load(&stored.bytes).unwrap()).unwrap();
        assert_eq!(
            (insight.text.as_str(), insight.feeling_safe),
            ("Edited on the second phone", Some(5)),
            "neither node's change was lost"
        );
        let row = store.insight(doc_id.as_uuid()).await.unwrap().unwrap();
        assert_eq!((row.text.as_deref(), row.feeling_safe), (Some("Edited on the second phone"), Some(5)));
    }
    let (from_a, from_b) = (areas(node_a.addr).await, areas(node_b.addr).await);
    assert_eq!(from_a, from_b);
    assert_eq!(from_a["areas"][0]["total"], N_DOCS, "each insight counted once");
    let detail = http
        .get(format!("http://{}/api/v1/areas/{}", node_b.addr, JOINERS_SQUARE.0))
        .bearer_auth(&analyst)
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap();
    assert_eq!(detail["feeling_safe_mean"], 5.0, "the roll-up follows the merged edits");

    drop((node_a, node_b, on_b));
}

/// A collector's second phone, offline while the first captured, receives those insights (with the server's
/// decisions) at its next sync; and a reconnect with nothing new is one round trip whatever the phone holds.
async fn a_second_phone_catches_up_and_a_quiet_reconnect_costs_one_round_trip(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (first_token, second_token) = app.add_two_devices_of_one_collector("Barbershop").await;
    let first = Phone::with_token(first_token).await;
    let second = Phone::with_token(second_token).await;
    let mut ids = Vec::new();
    for _ in 0..20 {
        ids.push(first.capture_at("asb", JOINERS_SQUARE.1, JOINERS_SQUARE.2, Some(3)).await);
    }
    let own = second.capture_at("drugs", JOINERS_SQUARE.1, JOINERS_SQUARE.2, Some(2)).await;
    let report = first.sync(&app).await.unwrap();
    assert_eq!(report.sent, 20);
    // `join`, each insight whole in one frame, and a request for the campaign (new to this phone). The server's
    // decision comes back complete (none hidden by a Bloom filter's false positive) and is not answered: the phone
    // is in step with it.
    assert_eq!(report.traffic.frames_sent, 1 + 20 + 1, "{:?}", report.traffic);

    let report = second.sync(&app).await.unwrap();
    assert_eq!((report.sent, report.received), (1, 20), "{report:?}");
    let listed = second.store.list().await.unwrap();
    assert_eq!(listed.len(), 21);
    for id in &ids {
        let insight = listed.iter().find(|insight| insight.id == *id).expect("received");
        assert_eq!(insight.text, "asb seen here");
        assert!(matches!(insight.status, grapevine_client_sdk::Status::Filed { .. }));
    }

    // The first phone hears of the second's insight at its next sync, and nothing more.
    let report = first.sync(&app).await.unwrap();
    assert_eq!((report.sent, report.received), (0, 1), "{report:?}");
    assert!(first.store.list().await.unwrap().iter().any(|insight| insight.id == own));

    // Nothing new: join and peer, one frame each way, however many insights the phones hold.
    for phone in [&first, &second] {
        let quiet = phone.sync(&app).await.unwrap();
        assert_eq!((quiet.sent, quiet.received, quiet.updated.len()), (0, 0, 0));
        assert_eq!((quiet.traffic.frames_sent, quiet.traffic.frames_received), (1, 1), "{:?}", quiet.traffic);
        assert_eq!(quiet.traffic.round_trips, 1);
    }
    assert_eq!(app.totals().await, (vec![(JOINERS_SQUARE.0.into(), 21)], 0));
}

on_both_backends!(a_second_phone_catches_up_and_a_quiet_reconnect_costs_one_round_trip);
