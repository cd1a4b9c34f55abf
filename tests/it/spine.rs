//! The happy path, end to end: capture offline, sync, store, geotag, roll up.

use grapevine_client_sdk::Status;
use grapevine_tests::points::{ABBEY_HULTON, CANNOCK_NORTH, JOINERS_SQUARE, WESTMINSTER};
use grapevine_tests::{Backend, Phone, TestApp};

async fn two_devices_capture_offline_then_sync_and_the_roll_up_shows_exactly_their_insights(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let barber = Phone::new(&app, "Hanley barbers").await;
    let youth_worker = Phone::new(&app, "Cannock youth club").await;

    // Offline: nothing reaches the server while they capture.
    let (code_js, lat_js, lon_js) = JOINERS_SQUARE;
    let (code_ah, lat_ah, lon_ah) = ABBEY_HULTON;
    let (code_cn, lat_cn, lon_cn) = CANNOCK_NORTH;
    let first = barber.capture_at("drugs", lat_js, lon_js, Some(2)).await;
    barber.capture_at("drugs", lat_js, lon_js, Some(3)).await;
    barber.capture_at("asb", lat_ah, lon_ah, None).await;
    youth_worker.capture_at("road-safety", lat_cn, lon_cn, Some(4)).await;
    youth_worker.capture_at("asb", WESTMINSTER.0, WESTMINSTER.1, Some(1)).await;
    assert_eq!(app.totals().await, (vec![], 0));
    assert!(barber.store.list().await.unwrap().iter().all(|insight| insight.status == Status::Captured));

    let report = barber.sync(&app).await.unwrap();
    assert_eq!(report.sent, 3);
    assert_eq!(report.updated.len(), 3);
    let report = youth_worker.sync(&app).await.unwrap();
    assert_eq!(report.sent, 2);

    let (totals, outside) = app.totals().await;
    assert_eq!(totals, vec![(code_cn.into(), 1), (code_ah.into(), 1), (code_js.into(), 2)]);
    assert_eq!(outside, 1, "the Westminster point is counted outside coverage, not dropped");

    let joiners = app.area(code_js, "").await;
    assert_eq!(joiners["name"], "Joiner's Square");
    assert_eq!(joiners["total"], 2);
    assert_eq!(joiners["by_category"]["drugs"], 2);
    assert_eq!(joiners["by_category"]["asb"], 0);
    assert_eq!(joiners["feeling_safe_mean"], 2.5);
    assert_eq!(app.area(code_ah, "").await["feeling_safe_mean"], serde_json::Value::Null);

    // The collector sees where each insight was filed.
    let listed = barber.store.list().await.unwrap();
    let filed = listed.iter().find(|insight| insight.id == first).unwrap();
    assert_eq!(filed.status, Status::Filed { area_code: code_js.into(), area_name: "Joiner's Square".into() });
    let outside_status = youth_worker.store.list().await.unwrap()[1].status.clone();
    assert_eq!(outside_status, Status::OutsideCoverage);
}

async fn a_device_that_syncs_twice_duplicates_nothing(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let phone = Phone::new(&app, "Leek library").await;
    let (code, lat, lon) = ABBEY_HULTON;
    phone.capture_at("burglary-theft", lat, lon, Some(3)).await;
    phone.capture_at("criminal-damage", lat, lon, Some(3)).await;
    assert_eq!(phone.sync(&app).await.unwrap().sent, 2);
    let again = phone.sync(&app).await.unwrap();
    assert_eq!((again.sent, again.updated.len()), (0, 0), "nothing new moves: {again:?}");
    assert_eq!(app.totals().await, (vec![(code.into(), 2)], 0));

    // A third insight later: only it is new, and the first two still count once.
    phone.capture_at("asb", lat, lon, None).await;
    assert_eq!(phone.sync(&app).await.unwrap().sent, 1);
    assert_eq!(app.totals().await, (vec![(code.into(), 3)], 0));
}

async fn a_server_restarted_between_syncs_loses_nothing_it_acknowledged(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let first_phone = Phone::new(&app, "Stoke school").await;
    let second_phone = Phone::new(&app, "Cannock barbers").await;
    let (code_js, lat_js, lon_js) = JOINERS_SQUARE;
    let (code_cn, lat_cn, lon_cn) = CANNOCK_NORTH;
    first_phone.capture_at("violence-weapons", lat_js, lon_js, Some(1)).await;
    first_phone.sync(&app).await.unwrap();

    let app = app.restart().await;
    assert_eq!(app.totals().await, (vec![(code_js.into(), 1)], 0), "acknowledged before the restart, still there");

    second_phone.capture_at("vehicle-crime", lat_cn, lon_cn, Some(2)).await;
    second_phone.sync(&app).await.unwrap();
    let again = first_phone.sync(&app).await.unwrap();
    assert_eq!(again.sent, 0);
    assert_eq!(app.totals().await, (vec![(code_cn.into(), 1), (code_js.into(), 1)], 0));
    app.stop().await;
}

async fn periods_select_insights_by_the_day_they_were_captured(backend: Backend) {
    use grapevine_client_sdk::{Channel, Draft, Location};
    let app = TestApp::spawn(backend).await;
    let phone = Phone::new(&app, "Hanley barbers").await;
    let (code, lat, lon) = JOINERS_SQUARE;
    for captured_at in [
        time::macros::datetime!(2026-10-31 23:30 +00:00),
        // 00:30 on 1 November in British Summer Time is still 31 October in UTC: the collector's day counts.
        time::macros::datetime!(2026-11-01 00:30 +01:00),
        time::macros::datetime!(2026-11-15 12:00 +00:00),
    ] {
        let draft = Draft {
            category: "asb".into(),
            text: "Motorbikes on the footpath".into(),
            feeling_safe: Some(2),
            location: Location::Gps { lat, lon, accuracy_m: 5.0 },
            channel: Channel::Staff,
            captured_at: Some(captured_at),
            campaign: None,
        };
        phone.store.capture(draft).await.unwrap();
    }
    phone.sync(&app).await.unwrap();
    let total = |body: serde_json::Value| body["total"].as_i64().unwrap();
    assert_eq!(total(app.area(code, "").await), 3);
    assert_eq!(total(app.area(code, "from=2026-11-01").await), 2);
    assert_eq!(total(app.area(code, "from=2026-11-01&to=2026-11-15").await), 1);
    assert_eq!(total(app.area(code, "to=2026-11-01").await), 1);
    let areas = app.areas("from=2026-12-01&to=2027-01-01").await;
    assert!(areas["areas"].as_array().unwrap().iter().all(|area| area["total"] == 0));
    assert_eq!(areas["areas"].as_array().unwrap().len(), 211, "every ward is listed, zeros included");
}

on_both_backends!(
    two_devices_capture_offline_then_sync_and_the_roll_up_shows_exactly_their_insights,
    a_device_that_syncs_twice_duplicates_nothing,
    a_server_restarted_between_syncs_loses_nothing_it_acknowledged,
    periods_select_insights_by_the_day_they_were_captured,
);
