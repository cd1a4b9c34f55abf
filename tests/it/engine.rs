//! The background sync engine (issue #4): on demand with progress, triggers folded so two syncs never overlap, on a
//! schedule, exponential backoff on failure cut short by "the network is back", no retry when the device is revoked,
//! and a clean stop.

use std::time::Duration;

use grapevine_client_sdk::engine::{EngineConfig, EngineEvent, SyncEngine, Trigger};
use grapevine_sync_proto::ErrorCode;
use grapevine_tests::points::JOINERS_SQUARE;
use grapevine_tests::{Backend, Phone, TestApp};
use tokio::sync::broadcast::Receiver;

/// The events until `until` matches one (included), or panics after `timeout`.
async fn events_until(
    events: &mut Receiver<EngineEvent>,
    timeout: Duration,
    until: impl Fn(&EngineEvent) -> bool,
) -> Vec<EngineEvent> {
    let mut seen = Vec::new();
    tokio::time::timeout(timeout, async {
        loop {
            let event = events.recv().await.unwrap();
            let done = until(&event);
            seen.push(event);
            if done {
                break;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no matching event within {timeout:?}; saw {seen:?}"));
    seen
}

/// Every event that arrives within `window`.
async fn events_within(events: &mut Receiver<EngineEvent>, window: Duration) -> Vec<EngineEvent> {
    let mut seen = Vec::new();
    let _ = tokio::time::timeout(window, async {
        while let Ok(event) = events.recv().await {
            seen.push(event);
        }
    })
    .await;
    seen
}

fn config(url: String, token: String) -> EngineConfig {
    let mut config = EngineConfig::new(url, token);
    config.every = None;
    config.backoff_initial = Duration::from_millis(300);
    config.backoff_max = Duration::from_secs(5);
    config
}

async fn the_engine_syncs_on_demand_with_progress_and_never_twice_at_once(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let phone = Phone::new(&app, "Hanley barbers").await;
    let (_, lat, lon) = JOINERS_SQUARE;
    for _ in 0..3 {
        phone.capture_at("drugs", lat, lon, Some(2)).await;
    }
    let engine = SyncEngine::start(phone.store.clone(), config(app.sync_url(), phone.token.clone()));
    let mut events = engine.subscribe();
    for _ in 0..5 {
        engine.sync_now();
    }
    let first =
        events_until(&mut events, Duration::from_secs(20), |event| matches!(event, EngineEvent::Finished { .. })).await;
    assert_eq!(first.first(), Some(&EngineEvent::Started { trigger: Trigger::Demand }));
    assert!(first.contains(&EngineEvent::Progress { done: 3, total: 3 }), "{first:?}");
    assert!(matches!(first.last(), Some(EngineEvent::Finished { sent: 3, .. })), "{first:?}");
    // The four other requests, made while the first ran, fold into one more sync, which has nothing to send.
    let rest = events_within(&mut events, Duration::from_secs(3)).await;
    let starts = rest.iter().filter(|event| matches!(event, EngineEvent::Started { .. })).count();
    assert!(starts <= 1, "{rest:?}");
    let mut running = false;
    for event in first.iter().chain(&rest) {
        match event {
            EngineEvent::Started { .. } => {
                assert!(!running, "two syncs at once: {first:?} {rest:?}");
                running = true;
            }
            EngineEvent::Finished { .. } | EngineEvent::Failed { .. } => running = false,
            _ => {}
        }
    }
    engine.stop().await;
    assert_eq!(app.totals().await.0.iter().map(|(_, n)| n).sum::<i64>(), 3);
}

async fn the_engine_syncs_on_a_schedule(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let phone = Phone::new(&app, "Cannock youth club").await;
    let mut config = config(app.sync_url(), phone.token.clone());
    config.every = Some(Duration::from_millis(300));
    let engine = SyncEngine::start(phone.store.clone(), config);
    let mut events = engine.subscribe();
    let seen = events_within(&mut events, Duration::from_secs(3)).await;
    let scheduled = seen.iter().filter(|event| **event == EngineEvent::Started { trigger: Trigger::Schedule }).count();
    assert!(scheduled >= 2, "{seen:?}");
    let mut events = engine.subscribe();
    engine.stop().await;
    // A scheduled sync may start in the moment before the stop lands; the engine then stops all the same.
    let until_stopped = async { while events.recv().await.unwrap() != EngineEvent::Stopped {} };
    tokio::time::timeout(Duration::from_secs(5), until_stopped).await.expect("the engine says it stopped");
}

async fn failures_back_off_until_the_network_returns_and_a_revoked_device_is_not_retried(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let phone = Phone::new(&app, "Leek library").await;
    // Nothing listens on this port: every attempt fails to connect.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let engine = SyncEngine::start(phone.store.clone(), config(format!("ws://{closed}/sync"), phone.token.clone()));
    let mut events = engine.subscribe();
    engine.sync_now();
    let seen = events_until(&mut events, Duration::from_secs(20), |event| {
        *event == EngineEvent::Started { trigger: Trigger::Retry }
    })
    .await;
    let Some(EngineEvent::Failed { retry_in: Some(wait), .. }) =
        seen.iter().find(|event| matches!(event, EngineEvent::Failed { .. }))
    else {
        panic!("no failure with a retry: {seen:?}")
    };
    assert!(*wait >= Duration::from_millis(150) && *wait <= Duration::from_millis(450), "{wait:?}");
    // Told the network is back, it tries straight away instead of waiting out the (now longer) backoff.
    let _ =
        events_until(&mut events, Duration::from_secs(20), |event| matches!(event, EngineEvent::Failed { .. })).await;
    engine.network_up();
    let started = std::time::Instant::now();
    let _ = events_until(&mut events, Duration::from_secs(5), |event| {
        *event == EngineEvent::Started { trigger: Trigger::NetworkUp }
    })
    .await;
    assert!(started.elapsed() < Duration::from_millis(250), "{:?}", started.elapsed());
    engine.stop().await;

    // A revoked device: the failure says so and is not retried.
    let device_id = app.store.authenticate(&grapevine_server::auth::hash_token(&phone.token)).await.unwrap();
    use grapevine_server::domain::{Actor, Authenticated, Principal};
    let Some(Authenticated::Principal(Principal { actor: Actor::Device { device_id, .. }, .. })) = device_id else {
        panic!("a device")
    };
    app.store.revoke_device(device_id).await.unwrap();
    let engine = SyncEngine::start(phone.store.clone(), config(app.sync_url(), phone.token.clone()));
    let mut events = engine.subscribe();
    engine.sync_now();
    let seen =
        events_until(&mut events, Duration::from_secs(20), |event| matches!(event, EngineEvent::Failed { .. })).await;
    assert!(
        matches!(seen.last(), Some(EngineEvent::Failed { code: Some(ErrorCode::DeviceRevoked), retry_in: None, .. })),
        "{seen:?}"
    );
    let after = events_within(&mut events, Duration::from_secs(1)).await;
    assert!(after.is_empty(), "no retry after revocation: {after:?}");
    engine.stop().await;
}

on_both_backends!(
    the_engine_syncs_on_demand_with_progress_and_never_twice_at_once,
    the_engine_syncs_on_a_schedule,
    failures_back_off_until_the_network_returns_and_a_revoked_device_is_not_retried,
);
