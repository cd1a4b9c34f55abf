//! A hostile device over `/sync`: decompression bombs, undoing a withdrawal, probing for other collectors' documents,
//! and the close codes it hears. Each attack is refused with a stable code, stores nothing, and leaves the server
//! answering everyone else.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use grapevine_client_sdk::sync_documents;
use grapevine_server::store::Outcome;
use grapevine_sync_proto::automerge::sync::{self, SyncDoc};
use grapevine_sync_proto::automerge::transaction::Transactable;
use grapevine_sync_proto::automerge::{ActorId, AutoCommit, ROOT};
use grapevine_sync_proto::document::write_insight;
use grapevine_sync_proto::session::{Event, Session, Side};
use grapevine_sync_proto::wire::Message;
use grapevine_sync_proto::{Channel, DocumentId, ErrorCode, Insight, Location};
use grapevine_tests::points::JOINERS_SQUARE;
use grapevine_tests::{Backend, Phone, TestApp};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_bytes::ByteBuf;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message as WsMessage;

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A device's connection past the handshake (frames uncompressed), with the server's peer id.
struct Raw {
    socket: Socket,
    session: Session,
    peer_id: String,
    server_peer_id: String,
}

async fn joined(app: &TestApp, token: &str, peer_id: &str) -> Raw {
    let mut request = app.sync_url().into_client_request().unwrap();
    request.headers_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let mut session = Session::new(Side::Client, peer_id);
    socket.send(WsMessage::Binary(session.join_frame().into())).await.unwrap();
    let frame = next_binary(&mut socket).await.expect("the server answers the join");
    let Ok(Event::Accepted { peer_id: server_peer_id, .. }) = session.receive(&frame) else { panic!("no peer frame") };
    Raw { socket, session, peer_id: peer_id.to_owned(), server_peer_id }
}

/// The next binary frame, skipping pings; `None` once the connection is closed.
async fn next_binary(socket: &mut Socket) -> Option<Vec<u8>> {
    loop {
        match tokio::time::timeout(Duration::from_secs(30), socket.next()).await.expect("an answer within 30 s")? {
            Ok(WsMessage::Binary(frame)) => return Some(frame.to_vec()),
            Ok(WsMessage::Ping(_) | WsMessage::Pong(_)) => {}
            Ok(_) | Err(_) => return None,
        }
    }
}

/// Reads the server's `error` frame and then its close frame: the error's code and the close code.
async fn refusal(raw: &mut Raw) -> (Option<ErrorCode>, Option<CloseCode>) {
    let frame = next_binary(&mut raw.socket).await.expect("an error frame");
    let Ok(Event::RemoteError { code, .. }) = raw.session.receive(&frame) else { panic!("expected an error frame") };
    let close = loop {
        match tokio::time::timeout(Duration::from_secs(10), raw.socket.next()).await.expect("closed within 10 s") {
            Some(Ok(WsMessage::Close(frame))) => break frame.map(|frame| frame.code),
            Some(Ok(_)) => {}
            Some(Err(_)) | None => break None,
        }
    };
    (code, close)
}

fn insight() -> Insight {
    Insight {
        id: uuid::Uuid::new_v4(),
        captured_at: time::macros::datetime!(2026-11-20 09:00 +00:00),
        campaign: "community-safety".into(),
        category: "asb".into(),
        text: "Bins set alight behind the shops".into(),
        feeling_safe: Some(2),
        location: Location::Gps { lat: JOINERS_SQUARE.1, lon: JOINERS_SQUARE.2, accuracy_m: 5.0 },
        channel: Channel::Other,
    }
}

/// A valid insight whose text is then overwritten with `n` bytes of one letter: a few KB once Automerge deflates it.
fn bomb(n: usize) -> (DocumentId, AutoCommit) {
    let insight = insight();
    let mut doc = AutoCommit::new();
    write_insight(&mut doc, &insight).unwrap();
    doc.put(ROOT, "text", "a".repeat(n)).unwrap();
    (DocumentId::for_insight(insight.id), doc)
}

/// A `sync` message for one document carrying these chunks, as any peer may spell it.
fn sync_frame(
    raw: &Raw,
    doc_id: DocumentId,
    heads: Vec<grapevine_sync_proto::automerge::ChangeHash>,
    chunks: Vec<Vec<u8>>,
) -> Vec<u8> {
    let message = sync::Message {
        heads,
        need: Vec::new(),
        have: Vec::new(),
        changes: chunks.into(),
        supported_capabilities: None,
        version: sync::MessageVersion::V1,
    };
    Message::Sync {
        sender_id: raw.peer_id.clone(),
        target_id: raw.server_peer_id.clone(),
        document_id: doc_id.to_string(),
        data: ByteBuf::from(message.encode()),
    }
    .encode()
}

/// A change chunk (type 1) re-spelled as a deflated change chunk (type 2), as Automerge itself writes large changes.
fn deflated_change(change: &[u8]) -> Vec<u8> {
    // Header: magic (4), checksum (4), type (1), LEB128 length; the checksum stays that of the inflated change.
    let mut at = 9;
    let mut length = 0_usize;
    let mut shift = 0;
    loop {
        let byte = change[at];
        length |= usize::from(byte & 0x7f) << shift;
        at += 1;
        shift += 7;
        if byte & 0x80 == 0 {
            break;
        }
    }
    let mut encoder = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
    std::io::Write::write_all(&mut encoder, &change[at..at + length]).unwrap();
    let deflated = encoder.finish().unwrap();
    let mut chunk = change[..8].to_vec();
    chunk.push(2);
    let mut n = deflated.len();
    loop {
        let byte = u8::try_from(n & 0x7f).unwrap();
        n >>= 7;
        if n == 0 {
            chunk.push(byte);
            break;
        }
        chunk.push(byte | 0x80);
    }
    chunk.extend(deflated);
    chunk
}

async fn assert_nothing_stored(app: &TestApp, doc_id: DocumentId) {
    assert!(app.store.load_document(doc_id).await.unwrap().is_none(), "the document was stored");
    assert!(app.store.insight(doc_id.as_uuid()).await.unwrap().is_none(), "the insight was stored");
}

/// A saved document whose text inflates to 4 MiB (four times the limit) is a few KB on the wire; so is a deflated
/// change holding the same. Both are refused with `document_too_large` and close code 1009 before Automerge unpacks
/// them, nothing is stored, and `/healthz` answers promptly while several arrive at once.
async fn a_decompression_bomb_is_refused_with_its_code_and_nothing_is_stored(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let token = app.add_device("Bomber").await;

    // The whole document in the first message, as the SDK offers a new insight.
    let (doc_id, mut doc) = bomb(4 << 20);
    let mut raw = joined(&app, &token, "bomber").await;
    raw.session.offer_whole(doc_id, &mut doc);
    let frame = raw.session.generate(doc_id, &mut doc).unwrap();
    assert!(frame.len() < 100_000, "{} bytes on the wire", frame.len());
    raw.socket.send(WsMessage::Binary(frame.into())).await.unwrap();
    assert_eq!(refusal(&mut raw).await, (Some(ErrorCode::DocumentTooLarge), Some(CloseCode::Size)));
    assert_nothing_stored(&app, doc_id).await;

    // Its changes one by one, the large one deflated (chunk type 2).
    let (doc_id, mut doc) = bomb(4 << 20);
    let mut raw = joined(&app, &token, "bomber").await;
    let chunks: Vec<Vec<u8>> = doc.get_changes(&[]).iter().map(|change| deflated_change(change.raw_bytes())).collect();
    assert!(chunks.iter().map(Vec::len).sum::<usize>() < 100_000);
    let frame = sync_frame(&raw, doc_id, doc.get_heads(), chunks);
    raw.socket.send(WsMessage::Binary(frame.into())).await.unwrap();
    assert_eq!(refusal(&mut raw).await, (Some(ErrorCode::DocumentTooLarge), Some(CloseCode::Size)));
    assert_nothing_stored(&app, doc_id).await;

    // Several at once, while an operator's health check keeps being answered.
    let mut bombers = Vec::new();
    for n in 0..4 {
        let (doc_id, mut doc) = bomb(4 << 20);
        let mut raw = joined(&app, &token, &format!("bomber-{n}")).await;
        // Made here, not in the task: the test's own Automerge work would hold the runtime's workers (which the
        // in-process server shares) and slow `/healthz` for reasons of its own.
        raw.session.offer_whole(doc_id, &mut doc);
        let frame = raw.session.generate(doc_id, &mut doc).unwrap();
        bombers.push(tokio::spawn(async move {
            raw.socket.send(WsMessage::Binary(frame.into())).await.unwrap();
            refusal(&mut raw).await.0
        }));
    }
    let client = reqwest::Client::new();
    for _ in 0..10 {
        let started = Instant::now();
        let response = client.get(format!("{}/healthz", app.http_url())).send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert!(started.elapsed() < Duration::from_secs(1), "/healthz took {:?}", started.elapsed());
    }
    for bomber in bombers {
        assert_eq!(bomber.await.unwrap(), Some(ErrorCode::DocumentTooLarge));
    }
    // A real phone is served as ever.
    let phone = Phone::with_token(token).await;
    phone.capture_at("asb", JOINERS_SQUARE.1, JOINERS_SQUARE.2, None).await;
    assert_eq!(phone.sync(&app).await.unwrap().sent, 1);
    assert_eq!(app.totals().await, (vec![(JOINERS_SQUARE.0.into(), 1)], 0));
}

/// A change Automerge refuses (a second change with the same actor and sequence number) is answered with
/// `protocol_violation`, and the connection is closed, not kept open for more.
async fn a_change_automerge_refuses_closes_the_connection(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let token = app.add_device("Forger").await;
    let insight = insight();
    let doc_id = DocumentId::for_insight(insight.id);
    let actor = ActorId::random();
    let mut first = AutoCommit::new().with_actor(actor.clone());
    write_insight(&mut first, &insight).unwrap();
    let mut forged = AutoCommit::new().with_actor(actor);
    forged.put(ROOT, "text", "the same actor and sequence number, other content").unwrap();

    let mut docs = vec![(doc_id, first)];
    sync_documents(&app.sync_url(), &token, "forger", &mut docs).await.unwrap();
    let mut raw = joined(&app, &token, "forger").await;
    let chunks = forged.get_changes(&[]).iter().map(|change| change.raw_bytes().to_vec()).collect();
    let frame = sync_frame(&raw, doc_id, forged.get_heads(), chunks);
    raw.socket.send(WsMessage::Binary(frame.into())).await.unwrap();
    let (code, _) = refusal(&mut raw).await;
    assert_eq!(code, Some(ErrorCode::ProtocolViolation));
    assert!(next_binary(&mut raw.socket).await.is_none(), "the connection is closed after the refusal");
}

/// An oversized frame is answered with `frame_too_large`, then closed with 1009 (message too big).
async fn an_oversized_frame_is_closed_with_1009(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let token = app.add_device("Big sender").await;
    let mut raw = joined(&app, &token, "big").await;
    raw.socket.send(WsMessage::Binary(vec![0u8; 1024 * 1024 + 1].into())).await.unwrap();
    assert_eq!(refusal(&mut raw).await, (Some(ErrorCode::FrameTooLarge), Some(CloseCode::Size)));
}

/// The answer to one message about a document, with the document's id taken out: what the device learns.
async fn answer_to(app: &TestApp, token: &str, doc_id: DocumentId, request: bool) -> (String, Vec<u8>) {
    let mut raw = joined(app, token, "prober").await;
    let empty = AutoCommit::new().sync().generate_sync_message(&mut sync::State::new()).unwrap();
    let (sender_id, target_id, document_id) = (raw.peer_id.clone(), raw.server_peer_id.clone(), doc_id.to_string());
    let data = ByteBuf::from(empty.encode());
    let message = if request {
        Message::Request { sender_id, target_id, document_id, data }
    } else {
        Message::Sync { sender_id, target_id, document_id, data }
    };
    raw.socket.send(WsMessage::Binary(message.encode().into())).await.unwrap();
    let frame = next_binary(&mut raw.socket).await.expect("an answer");
    match Message::decode(&frame).unwrap() {
        Message::Sync { data, .. } => ("sync".into(), data.into_vec()),
        Message::DocUnavailable { .. } => ("doc-unavailable".into(), Vec::new()),
        other => panic!("unexpected answer {other:?}"),
    }
}

/// A device probing for a document that another collector holds hears exactly what it hears for an id nobody holds,
/// whatever message it sends.
async fn another_collectors_document_is_answered_like_an_unknown_id(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let owner = Phone::new(&app, "Owner").await;
    let id = owner.capture_at("asb", JOINERS_SQUARE.1, JOINERS_SQUARE.2, None).await;
    owner.sync(&app).await.unwrap();
    let prober = app.add_device("Prober").await;
    for request in [true, false] {
        let held = answer_to(&app, &prober, DocumentId::for_insight(id), request).await;
        let unknown = answer_to(&app, &prober, DocumentId::random(), request).await;
        assert_eq!(held, unknown, "request: {request}");
    }
    // Nothing changed for the owner.
    let row = app.store.insight(id).await.unwrap().unwrap();
    assert!(matches!(row.outcome, Outcome::Filed { .. }));
}

/// One step of a collector's two devices on one insight.
#[derive(Debug, Clone)]
enum Step {
    Edit { device: usize, text: u8 },
    SetWithdrawn { device: usize, withdrawn: bool },
    Sync { device: usize },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0..2_usize, any::<u8>()).prop_map(|(device, text)| Step::Edit { device, text }),
        (0..2_usize, any::<bool>()).prop_map(|(device, withdrawn)| Step::SetWithdrawn { device, withdrawn }),
        (0..2_usize).prop_map(|device| Step::Sync { device }),
        (0..2_usize).prop_map(|device| Step::Sync { device }),
    ]
}

/// Runs the steps on a fresh insight captured by the first device and synced; after every sync, checks that once the
/// server has stored the insight withdrawn it never counts again and its row never regains content.
async fn withdrawal_stays_final(app: &TestApp, tokens: &[String; 2], steps: &[Step]) -> Result<(), String> {
    let insight = insight();
    let doc_id = DocumentId::for_insight(insight.id);
    let mut first = AutoCommit::new();
    write_insight(&mut first, &insight).unwrap();
    let second = first.fork();
    let mut devices = [vec![(doc_id, first)], vec![(doc_id, second)]];
    sync_documents(&app.sync_url(), &tokens[0], "device-0", &mut devices[0])
        .await
        .map_err(|error| error.to_string())?;
    let mut stored_withdrawn = false;
    for step in steps {
        match *step {
            Step::Edit { device, text } => {
                devices[device][0].1.put(ROOT, "text", format!("Edited {text}")).unwrap();
            }
            Step::SetWithdrawn { device, withdrawn } => {
                devices[device][0].1.put(ROOT, "withdrawn", withdrawn).unwrap();
            }
            Step::Sync { device } => {
                let peer_id = format!("device-{device}");
                sync_documents(&app.sync_url(), &tokens[device], &peer_id, &mut devices[device])
                    .await
                    .map_err(|error| error.to_string())?;
                let row = app.store.insight(insight.id).await.unwrap().ok_or("the insight is not stored")?;
                if stored_withdrawn {
                    if row.outcome != Outcome::Withdrawn {
                        return Err(format!("withdrawn, then {:?} after {step:?}", row.outcome));
                    }
                    if row.text.is_some() || row.category.is_some() || row.gps.is_some() {
                        return Err(format!("the withdrawn row regained content after {step:?}: {row:?}"));
                    }
                }
                stored_withdrawn |= row.outcome == Outcome::Withdrawn;
            }
        }
    }
    if stored_withdrawn && app.totals().await.1 != 0 {
        return Err("a withdrawn insight counts".into());
    }
    Ok(())
}

/// ARCHITECTURE.md: "Withdrawal is final". The attack first (withdraw, un-withdraw, edit), then random sequences of
/// edits, withdrawals and syncs from two devices of one collector.
async fn withdrawal_is_final_whatever_either_device_writes_later(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (first, second) = app.add_two_devices_of_one_collector("Two phones").await;
    let tokens = [first, second];
    let attack = [
        Step::SetWithdrawn { device: 0, withdrawn: true },
        Step::Sync { device: 0 },
        Step::SetWithdrawn { device: 0, withdrawn: false },
        Step::Sync { device: 0 },
        Step::Edit { device: 0, text: 1 },
        Step::Sync { device: 0 },
        Step::SetWithdrawn { device: 1, withdrawn: false },
        Step::Edit { device: 1, text: 2 },
        Step::Sync { device: 1 },
    ];
    withdrawal_stays_final(&app, &tokens, &attack).await.unwrap();

    let handle = tokio::runtime::Handle::current();
    let config = Config { cases: 12, failure_persistence: None, ..Config::default() };
    let mut runner = TestRunner::new(config);
    let outcome = tokio::task::block_in_place(|| {
        runner.run(&prop::collection::vec(step(), 1..10), |steps| {
            handle.block_on(withdrawal_stays_final(&app, &tokens, &steps)).map_err(TestCaseError::fail)
        })
    });
    if let Err(failure) = outcome {
        panic!("{failure}");
    }
}

/// Someone who learns an insight's id before its owner syncs cannot store a document under it first: an enrolled
/// phone makes its ids with its own id key, and only the device holding that key may create them. The owner then
/// syncs as if nothing had happened, and keeps that right after it is revoked and enrolled again (the key belongs to
/// the phone's store, not to the device).
async fn a_learned_id_cannot_be_stored_before_its_owner_syncs(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let code = app.create_invitation("Hanley barbers", 2, time::Duration::days(1)).await;
    // A key that is not 64 hex digits is refused by name, and takes none of the invitation's uses.
    let (status, body) = app.post_json("/api/v1/enrol", &format!(r#"{{"code": "{code}", "id_key": "not hex"}}"#)).await;
    assert_eq!((status, body["code"].as_str()), (422, Some("invalid_request")), "{body}");
    assert!(body["message"].as_str().unwrap().contains("id_key"), "{body}");
    let mut owner = Phone::enrolled(&app, &code, "owner").await.unwrap();
    let squatter = Phone::enrolled(&app, &code, "squatter").await.unwrap();
    let id = owner.capture_at("asb", JOINERS_SQUARE.1, JOINERS_SQUARE.2, Some(2)).await;
    assert_eq!(id.get_version_num(), 8, "an enrolled phone's ids name it");
    let by_token = Phone::new(&app, "registered by token").await;
    let plain = by_token.capture_at("asb", JOINERS_SQUARE.1, JOINERS_SQUARE.2, None).await;
    assert_eq!(plain.get_version_num(), 4, "a phone the server holds no key for makes plain ids");

    // The squatter sends a whole document under the owner's id, an insight of its own inside.
    let doc_id = DocumentId::for_insight(id);
    let mut forged = AutoCommit::new();
    write_insight(&mut forged, &Insight { id, ..insight() }).unwrap();
    let mut raw = joined(&app, &squatter.token, "squatter").await;
    let frame = sync_frame(&raw, doc_id, forged.get_heads(), vec![forged.save()]);
    raw.socket.send(WsMessage::Binary(frame.into())).await.unwrap();
    let answer = next_binary(&mut raw.socket).await.expect("an answer");
    assert!(
        matches!(Message::decode(&answer).unwrap(), Message::DocUnavailable { .. }),
        "the squatter hears what any unknown document gets"
    );
    assert_nothing_stored(&app, doc_id).await;

    // The owner syncs as if nothing had happened.
    owner.sync(&app).await.unwrap();
    let row = app.store.insight(id).await.unwrap().expect("the owner's insight is stored");
    assert!(matches!(row.outcome, Outcome::Filed { .. }), "{:?}", row.outcome);

    // Revoked, then enrolled again with a new invitation: what it captured before still goes through.
    let later = owner.capture_at("drugs", JOINERS_SQUARE.1, JOINERS_SQUARE.2, None).await;
    let device_id = owner.store.enrolment().await.unwrap().expect("enrolled").device_id;
    app.store.revoke_device(device_id).await.unwrap();
    let again = app.create_invitation("Hanley barbers, again", 1, time::Duration::days(1)).await;
    let enrolment = grapevine_client_sdk::enrol(&owner.store, &app.http_url(), &again, "owner").await.unwrap();
    owner.token = enrolment.token().to_owned();
    owner.sync(&app).await.unwrap();
    let row = app.store.insight(later).await.unwrap().expect("captured before the re-enrolment, stored after it");
    assert!(matches!(row.outcome, Outcome::Filed { .. }), "{:?}", row.outcome);
}

on_both_backends!(
    a_decompression_bomb_is_refused_with_its_code_and_nothing_is_stored,
    a_change_automerge_refuses_closes_the_connection,
    an_oversized_frame_is_closed_with_1009,
    another_collectors_document_is_answered_like_an_unknown_id,
    a_learned_id_cannot_be_stored_before_its_owner_syncs,
    withdrawal_is_final_whatever_either_device_writes_later,
);
