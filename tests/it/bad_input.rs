//! Bad input: refused with a stable code, never counted, and nothing else lost.

use futures_util::{SinkExt, StreamExt};
use grapevine_client_sdk::{
    sync_documents, Channel, DocOutcome, Draft, ErrorCode, Language, Location, SdkError, Status,
};
use grapevine_sync_proto::automerge::transaction::Transactable;
use grapevine_sync_proto::automerge::{AutoCommit, ROOT};
use grapevine_sync_proto::compression::Deflater;
use grapevine_sync_proto::document::{read_server_record, write_insight, ServerStatus};
use grapevine_sync_proto::session::{Event, Session, Side};
use grapevine_sync_proto::{DocumentId, Insight};
use grapevine_tests::points::JOINERS_SQUARE;
use grapevine_tests::{Backend, Phone, TestApp};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message as WsMessage;

fn insight_doc(category: &str) -> (DocumentId, AutoCommit) {
    let insight = Insight {
        id: uuid::Uuid::new_v4(),
        captured_at: time::macros::datetime!(2026-11-20 09:00 +00:00),
        campaign: "community-safety".into(),
        category: category.into(),
        text: "Written by another client".into(),
        feeling_safe: Some(3),
        location: Location::Gps { lat: JOINERS_SQUARE.1, lon: JOINERS_SQUARE.2, accuracy_m: 5.0 },
        channel: Channel::Other,
    };
    let mut doc = AutoCommit::new();
    write_insight(&mut doc, &insight).unwrap();
    (DocumentId::for_insight(insight.id), doc)
}

fn rejection(doc: &AutoCommit) -> (ErrorCode, String) {
    match read_server_record(doc).map(|record| record.status) {
        Some(ServerStatus::Rejected { code, message }) => (code, message),
        other => panic!("expected a rejection, got {other:?}"),
    }
}

async fn the_sdk_refuses_an_invalid_insight_naming_the_field(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let phone = Phone::new(&app, "Pupil").await;
    let draft = Draft {
        category: "road-safety".into(),
        text: "x".repeat(1_001),
        feeling_safe: None,
        location: Location::None,
        channel: Channel::Pupil,
        captured_at: None,
        campaign: None,
    };
    let error = phone.store.capture(draft).await.unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::InsightTextTooLong));
    assert!(matches!(error, SdkError::Invalid(ref invalid) if invalid.field == "text"));
    assert!(phone.store.list().await.unwrap().is_empty());
}

async fn invalid_documents_from_another_client_are_kept_marked_rejected_and_never_counted(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let token = app.add_device("A script").await;
    let (good_id, good) = insight_doc("drugs");
    let (bad_category_id, bad_category) = insight_doc("parking");
    let not_an_insight_id = DocumentId::random();
    let mut not_an_insight = AutoCommit::new();
    not_an_insight.put(ROOT, "hello", "world").unwrap();
    let (mismatched_id, mismatched) = {
        let (_, doc) = insight_doc("asb");
        (DocumentId::random(), doc)
    };
    let mut docs = vec![
        (good_id, good),
        (bad_category_id, bad_category),
        (not_an_insight_id, not_an_insight),
        (mismatched_id, mismatched),
    ];
    let outcomes = sync_documents(&app.sync_url(), &token, "script", &mut docs).await.unwrap();
    assert_eq!(outcomes, vec![DocOutcome::InStep; 4], "every document is stored, good or bad");

    // The one good insight in the batch counts; the bad ones never do.
    assert_eq!(app.totals().await, (vec![(JOINERS_SQUARE.0.into(), 1)], 0));
    assert!(matches!(read_server_record(&docs[0].1).unwrap().status, ServerStatus::Filed { .. }));
    let (code, message) = rejection(&docs[1].1);
    assert_eq!(code, ErrorCode::InsightCategoryUnknown);
    assert!(message.contains("parking"), "{message}");
    assert_eq!(rejection(&docs[2].1).0, ErrorCode::InsightMalformed);
    assert_eq!(rejection(&docs[3].1).0, ErrorCode::InsightIdMismatch);
    // The document keeps what was sent.
    assert!(app.store.load_document(not_an_insight_id).await.unwrap().is_some());
}

async fn a_rejection_reaches_the_collector_on_the_next_sync(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let phone = Phone::new(&app, "Youth worker").await;
    // The phone does not know the campaign's areas yet, so an unknown area passes on the phone and fails on the server.
    let draft = Draft {
        category: "hate-crime".into(),
        text: "Graffiti on the mosque wall".into(),
        feeling_safe: Some(1),
        location: Location::Area { code: "E05999999".into() },
        channel: Channel::YouthWorker,
        captured_at: None,
        campaign: None,
    };
    let id = phone.store.capture(draft).await.unwrap();
    let report = phone.sync(&app).await.unwrap();
    let (_, status) = report.updated.iter().find(|(updated, _)| *updated == id).unwrap();
    let Status::Rejected { code, message } = status else { panic!("expected rejected, got {status:?}") };
    assert_eq!(code, "insight_area_unknown");
    assert!(message.contains("E05999999"));
    assert_eq!(phone.store.list().await.unwrap()[0].status, status.clone());
    // The person reads why in their language, with the code beside it.
    let listed = phone.store.get(id).await.unwrap();
    assert_eq!(
        listed.describe_in(Language::Welsh),
        "gwrthodwyd: Nid yw'r ardal a ddewiswyd ar restr yr ymgyrch. (insight_area_unknown)"
    );
    assert!(listed.describe_in(Language::English).contains("not on the campaign's list"));
    assert_eq!(app.totals().await, (vec![], 0));
}

async fn an_unknown_or_missing_token_is_refused_and_nothing_is_stored(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let stranger = Phone::with_token("gvd_not-a-real-token".into()).await;
    let (_, lat, lon) = JOINERS_SQUARE;
    let id = stranger.capture_at("drugs", lat, lon, None).await;
    let error = stranger.sync(&app).await.unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::Unauthorized), "{error}");
    assert!(app.store.load_document(DocumentId::for_insight(id)).await.unwrap().is_none());
    assert_eq!(stranger.store.list().await.unwrap()[0].status, Status::Captured, "still safe on the phone");

    let request = app.sync_url().into_client_request().unwrap();
    let Err(tokio_tungstenite::tungstenite::Error::Http(response)) = tokio_tungstenite::connect_async(request).await
    else {
        panic!("a connection without a token must be refused");
    };
    assert_eq!(response.status(), 401);
    let body: serde_json::Value = serde_json::from_slice(response.body().as_deref().unwrap()).unwrap();
    assert_eq!(body["code"], "unauthorized");

    // An analyst token is not a device token.
    let error = Phone::with_token(app.analyst_token.clone()).await.sync(&app).await.unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::Forbidden));
    assert_eq!(app.totals().await, (vec![], 0));
}

async fn an_oversized_frame_gets_a_coded_error_then_the_connection_closes(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let token = app.add_device("Big sender").await;
    let mut request = app.sync_url().into_client_request().unwrap();
    request.headers_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    socket.send(WsMessage::Binary(vec![0u8; 1024 * 1024 + 1].into())).await.unwrap();
    let Some(Ok(WsMessage::Binary(frame))) = socket.next().await else { panic!("expected an error frame") };
    let mut session = Session::new(Side::Client, "big");
    let Ok(Event::RemoteError { code, message }) = session.receive(&frame) else { panic!("expected an error message") };
    assert_eq!(code, Some(ErrorCode::FrameTooLarge));
    assert!(message.contains("1048577"), "{message}");
    assert!(matches!(socket.next().await, Some(Ok(WsMessage::Close(_))) | None));
}

/// A compressed frame is held to the frame limit once inflated (a small frame can inflate to gigabytes), and one that
/// does not inflate is a protocol violation; either way the device hears the code, compressed as agreed.
async fn a_compressed_frame_over_the_limit_once_inflated_or_not_deflate_gets_a_coded_error(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let token = app.add_device("Zip bomber").await;
    for (frame, expected) in [
        (Deflater::default().compress(&vec![0u8; 64 << 20]), ErrorCode::FrameTooLarge),
        (vec![0xff; 64], ErrorCode::ProtocolViolation),
    ] {
        let mut request = app.sync_url().into_client_request().unwrap();
        request.headers_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
        let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
        let mut session = Session::new(Side::Client, "bomber").with_compression();
        socket.send(WsMessage::Binary(session.join_frame().into())).await.unwrap();
        let Some(Ok(WsMessage::Binary(peer))) = socket.next().await else { panic!("expected peer") };
        assert!(matches!(session.receive(&peer), Ok(Event::Accepted { .. })));
        assert!(session.is_compressed(), "the server takes deflate");
        assert!(frame.len() < 100_000, "{} bytes on the wire", frame.len());
        socket.send(WsMessage::Binary(frame.into())).await.unwrap();
        let Some(Ok(WsMessage::Binary(frame))) = socket.next().await else { panic!("expected an error frame") };
        let Ok(Event::RemoteError { code, message }) = session.receive(&frame) else { panic!("expected an error") };
        assert_eq!(code, Some(expected), "{message}");
        assert!(matches!(socket.next().await, Some(Ok(WsMessage::Close(_))) | None));
    }
    assert_eq!(app.totals().await, (vec![], 0));
}

on_both_backends!(
    the_sdk_refuses_an_invalid_insight_naming_the_field,
    a_compressed_frame_over_the_limit_once_inflated_or_not_deflate_gets_a_coded_error,
    invalid_documents_from_another_client_are_kept_marked_rejected_and_never_counted,
    a_rejection_reaches_the_collector_on_the_next_sync,
    an_unknown_or_missing_token_is_refused_and_nothing_is_stored,
    an_oversized_frame_gets_a_coded_error_then_the_connection_closes,
);
