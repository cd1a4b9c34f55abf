//! Limits with clear errors: rate, idleness, keep-alive and revocation while connected (frame size is in bad_input.rs).

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use grapevine_client_sdk::Status;
use grapevine_server::app::SyncLimits;
use grapevine_server::domain::{Actor, Authenticated, Principal};
use grapevine_server::store::Revoked;
use grapevine_sync_proto::session::{Event, Session, Side};
use grapevine_sync_proto::ErrorCode;
use grapevine_tests::points::JOINERS_SQUARE;
use grapevine_tests::{Backend, Phone, TestApp};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message as WsMessage;

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(app: &TestApp, token: &str) -> Socket {
    let mut request = app.sync_url().into_client_request().unwrap();
    request.headers_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    tokio_tungstenite::connect_async(request).await.unwrap().0
}

/// Reads until the server's `error` frame; returns its code.
async fn error_code(socket: &mut Socket) -> Option<ErrorCode> {
    let mut session = Session::new(Side::Client, "raw");
    while let Some(message) = socket.next().await {
        if let Ok(WsMessage::Binary(frame)) = message {
            if let Ok(Event::RemoteError { code, .. }) = session.receive(&frame) {
                return code;
            }
        }
    }
    None
}

async fn a_device_over_its_message_budget_is_told_and_disconnected(backend: Backend) {
    let limits = SyncLimits { messages_per_second: 1.0, burst: 5.0, ..SyncLimits::default() };
    let app = TestApp::spawn_with_limits(backend, limits).await;
    let token = app.add_device("Chatty").await;
    let mut socket = connect(&app, &token).await;
    socket.send(WsMessage::Binary(Session::new(Side::Client, "chatty").join_frame().into())).await.unwrap();
    // Messages the protocol allows and ignores (automerge-repo ephemeral messages), as fast as the socket takes them.
    let mut ephemeral = Vec::new();
    ciborium::into_writer(
        &ciborium::Value::Map(vec![
            (ciborium::Value::Text("type".into()), ciborium::Value::Text("ephemeral".into())),
            (ciborium::Value::Text("senderId".into()), ciborium::Value::Text("chatty".into())),
        ]),
        &mut ephemeral,
    )
    .unwrap();
    for _ in 0..10 {
        if socket.send(WsMessage::Binary(ephemeral.clone().into())).await.is_err() {
            break;
        }
    }
    assert_eq!(error_code(&mut socket).await, Some(ErrorCode::RateLimited));

    // The SDK surfaces the same code; a well-behaved phone of another device is unaffected.
    let phone = Phone::with_token(token).await;
    phone.capture_at("asb", JOINERS_SQUARE.1, JOINERS_SQUARE.2, None).await;
    let error = phone.sync(&app).await.unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::RateLimited), "{error}");
    let other = Phone::new(&app, "Quiet").await;
    other.capture_at("asb", JOINERS_SQUARE.1, JOINERS_SQUARE.2, None).await;
    assert_eq!(other.sync(&app).await.unwrap().sent, 1);
}

async fn an_idle_connection_is_closed_but_keepalive_pongs_hold_it_open(backend: Backend) {
    let limits = SyncLimits {
        idle_timeout: Duration::from_millis(600),
        keepalive_interval: Duration::from_millis(100),
        ..SyncLimits::default()
    };
    let app = TestApp::spawn_with_limits(backend, limits).await;
    let token = app.add_device("Sleepy").await;

    // A device that reads (and so answers pings with pongs) stays connected well past the idle timeout.
    let mut alive = connect(&app, &token).await;
    let held = tokio::time::timeout(Duration::from_millis(1_500), async {
        while let Some(Ok(message)) = alive.next().await {
            assert!(matches!(message, WsMessage::Ping(_)), "only pings while idle, got {message:?}");
        }
        panic!("the connection closed although the device answered every ping");
    })
    .await;
    assert!(held.is_err(), "still open after 1.5 s");

    // A device that sends nothing is told why after the timeout, then closed. (Pings are spaced out here so the
    // client library has no pongs queued when it reads the error.) Not reading for a while is the behaviour under
    // test, not a wait for something else.
    let limits = SyncLimits {
        idle_timeout: Duration::from_millis(300),
        keepalive_interval: Duration::from_secs(60),
        ..SyncLimits::default()
    };
    let app = TestApp::spawn_with_limits(backend, limits).await;
    let token = app.add_device("Silent").await;
    let mut silent = connect(&app, &token).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(error_code(&mut silent).await, Some(ErrorCode::IdleTimeout));
}

async fn a_device_revoked_while_connected_is_told_and_closed(backend: Backend) {
    let limits = SyncLimits { keepalive_interval: Duration::from_millis(100), ..SyncLimits::default() };
    let app = TestApp::spawn_with_limits(backend, limits).await;
    let token = app.add_device("Lost phone").await;
    let principal = app.store.authenticate(&grapevine_server::auth::hash_token(&token)).await.unwrap();
    let Some(Authenticated::Principal(Principal { actor: Actor::Device { device_id, .. }, .. })) = principal else {
        panic!("a device token: {principal:?}")
    };
    let mut socket = connect(&app, &token).await;

    // Connected and answering pings: the connection stays up while the device is valid.
    let held = tokio::time::timeout(Duration::from_millis(400), socket.next()).await;
    assert!(matches!(held, Ok(Some(Ok(WsMessage::Ping(_))))), "pinged, not closed: {held:?}");

    // Revoked from elsewhere (the CLI writes the database): the open connection learns at its next keep-alive.
    assert_eq!(app.store.revoke_device(device_id).await.unwrap(), Revoked::Now);
    let told = tokio::time::timeout(Duration::from_secs(5), error_code(&mut socket)).await;
    assert_eq!(told.expect("closed within a few keep-alive intervals"), Some(ErrorCode::DeviceRevoked));
}

/// A sync cut off mid-batch keeps what the server decided before the cut: on the phone, exactly the insights the
/// server stored are acknowledged, and the rest stay captured for the next sync. The cut here is the rate limit: the
/// server answers the messages within the budget, then says `rate_limited` and closes.
async fn decisions_that_arrived_before_a_cut_are_kept_on_the_phone(backend: Backend) {
    let limits = SyncLimits { messages_per_second: 0.01, burst: 5.0, ..SyncLimits::default() };
    let app = TestApp::spawn_with_limits(backend, limits).await;
    let phone = Phone::new(&app, "Backlog").await;
    for _ in 0..8 {
        phone.capture_at("asb", JOINERS_SQUARE.1, JOINERS_SQUARE.2, None).await;
    }
    let error = phone.sync(&app).await.unwrap_err();
    let listed = phone.store.list().await.unwrap();
    let n_acknowledged = listed.iter().filter(|insight| insight.status != Status::Captured).count();
    // The cut is the server's `rate_limited`, or a reset (no code) if the close overtakes the phone's replies.
    assert!(matches!(error.code(), Some(ErrorCode::RateLimited) | None), "{error}");
    assert!((1..8).contains(&n_acknowledged), "some insights decided before the cut, not all: {n_acknowledged}");
    for insight in &listed {
        let stored = app.store.insight(insight.id).await.unwrap().is_some();
        assert_eq!(stored, insight.status != Status::Captured, "stored on the server if and only if acknowledged");
    }
}

on_both_backends!(
    decisions_that_arrived_before_a_cut_are_kept_on_the_phone,
    a_device_over_its_message_budget_is_told_and_disconnected,
    an_idle_connection_is_closed_but_keepalive_pongs_hold_it_open,
    a_device_revoked_while_connected_is_told_and_closed,
);
