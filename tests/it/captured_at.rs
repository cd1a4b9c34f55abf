//! A capture time must be plausible (issue 15, item 8): a forged document dated 9999 or 1066, sent raw by another
//! client, is stored and rejected with `insight_captured_at_implausible`, and never counted; a phone clock a little
//! ahead is not refused. The phone refusing such a draft itself is a unit test in `client-sdk/src/store.rs`.

use grapevine_client_sdk::{sync_documents, Channel, DocOutcome, ErrorCode, Location};
use grapevine_sync_proto::automerge::AutoCommit;
use grapevine_sync_proto::document::{read_server_record, write_insight, ServerStatus};
use grapevine_sync_proto::{DocumentId, Insight};
use grapevine_tests::points::JOINERS_SQUARE;
use grapevine_tests::{Backend, TestApp};
use time::OffsetDateTime;

fn forged(captured_at: OffsetDateTime) -> (DocumentId, AutoCommit) {
    let insight = Insight {
        id: uuid::Uuid::new_v4(),
        captured_at,
        campaign: "community-safety".into(),
        category: "drugs".into(),
        text: "Dated by a script, not a phone".into(),
        feeling_safe: Some(3),
        location: Location::Gps { lat: JOINERS_SQUARE.1, lon: JOINERS_SQUARE.2, accuracy_m: 5.0 },
        channel: Channel::Other,
    };
    let mut doc = AutoCommit::new();
    write_insight(&mut doc, &insight).unwrap();
    (DocumentId::for_insight(insight.id), doc)
}

async fn capture_times_before_2020_or_a_day_ahead_are_stored_rejected_and_never_counted(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let token = app.add_device("A script").await;
    let an_hour_ahead = OffsetDateTime::now_utc() + time::Duration::hours(1);
    let mut docs = vec![
        forged(time::macros::datetime!(9999-12-31 12:00 +00:00)),
        forged(time::macros::datetime!(1066-10-14 09:00 +00:00)),
        forged(OffsetDateTime::now_utc() + time::Duration::days(3)),
        forged(an_hour_ahead),
    ];
    let ids: Vec<DocumentId> = docs.iter().map(|(doc_id, _)| *doc_id).collect();
    let outcomes = sync_documents(&app.sync_url(), &token, "script", &mut docs).await.unwrap();
    assert_eq!(outcomes, vec![DocOutcome::InStep; 4], "every document is stored, plausible or not");

    for (doc_id, doc) in &docs[..3] {
        match read_server_record(doc).map(|record| record.status) {
            Some(ServerStatus::Rejected { code, message }) => {
                assert_eq!(code, ErrorCode::InsightCapturedAtImplausible, "{message}");
                assert!(message.starts_with("captured_at: "), "{message}");
            }
            other => panic!("{doc_id}: expected a rejection, got {other:?}"),
        }
    }
    assert!(
        matches!(read_server_record(&docs[3].1).map(|record| record.status), Some(ServerStatus::Filed { .. })),
        "a clock an hour ahead is within the allowance"
    );
    // Only the plausible one counts; the others are kept, as sent, for whoever looks into them.
    assert_eq!(app.totals().await, (vec![(JOINERS_SQUARE.0.into(), 1)], 0));
    for doc_id in ids {
        assert!(app.store.load_document(doc_id).await.unwrap().is_some(), "{doc_id} is stored");
    }
    app.stop().await;
}

on_both_backends!(capture_times_before_2020_or_a_day_ahead_are_stored_rejected_and_never_counted);
