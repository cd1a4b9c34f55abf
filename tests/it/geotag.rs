//! Geotagging and the Police and Crime Plan roll-ups (docs/geotagging.md): contributors, channel mix, periods and
//! priorities; boundary generations re-tagging history; postcodes; `near_boundary`.

use std::time::Duration;

use crate::command::grapevine;
use geo::polygon;
use grapevine_client_sdk::{Channel, Draft, Status};
use grapevine_server::geo::atlas::{stored_area, tag_in, Whereabouts};
use grapevine_server::geo::boundaries::{Area, Boundaries};
use grapevine_server::store::{DayRange, TaggableInsight};
use grapevine_sync_proto::Location;
use grapevine_tests::points::{ABBEY_HULTON, CANNOCK_NORTH, JOINERS_SQUARE};
use grapevine_tests::{Backend, Phone, TestApp};
use serde_json::Value;
use time::OffsetDateTime;

fn draft(category: &str, location: Location, channel: Channel, captured_at: OffsetDateTime) -> Draft {
    Draft {
        category: category.into(),
        text: format!("{category} again"),
        feeling_safe: Some(2),
        location,
        channel,
        captured_at: Some(captured_at),
        campaign: None,
    }
}

fn at(lat: f64, lon: f64) -> Location {
    Location::Gps { lat, lon, accuracy_m: 8.0 }
}

async fn insights_roll_up_with_contributors_channels_periods_and_priorities(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let barber = Phone::new(&app, "Hanley barbers").await;
    let youth_worker = Phone::new(&app, "Bentilee youth club").await;
    let (code, lat, lon) = JOINERS_SQUARE;
    let barbers = Channel::BarberHairdresser;
    for captured_at in
        [time::macros::datetime!(2026-11-20 17:45 +00:00), time::macros::datetime!(2026-11-20 18:10 +00:00)]
    {
        barber.store.capture(draft("drugs", at(lat, lon), barbers, captured_at)).await.unwrap();
    }
    barber
        .store
        .capture(draft("asb", at(lat, lon), barbers, time::macros::datetime!(2026-10-05 09:00 +00:00)))
        .await
        .unwrap();
    let evening = time::macros::datetime!(2026-11-18 20:00 +00:00);
    youth_worker.store.capture(draft("drugs", at(lat, lon), Channel::YouthWorker, evening)).await.unwrap();
    barber.sync(&app).await.unwrap();
    youth_worker.sync(&app).await.unwrap();

    let november = app.area(code, "from=2026-11-01&to=2026-12-01").await;
    assert_eq!((november["total"].as_i64(), november["contributors"].as_i64()), (Some(3), Some(2)));
    assert_eq!(november["channels"]["barber-hairdresser"], 2);
    assert_eq!(november["channels"]["youth-worker"], 1);
    assert_eq!(november["feeling_safe_mean"], 2.0);
    let drugs = november["categories"].as_array().unwrap().iter().find(|c| c["category"] == "drugs").unwrap().clone();
    assert_eq!((drugs["total"].as_i64(), drugs["contributors"].as_i64()), (Some(3), Some(2)));
    assert_eq!(drugs["label"], "Drugs");

    // Every area over one calendar month: contributors come from the month's cell.
    let joiners_in =
        |body: &Value| body["areas"].as_array().unwrap().iter().find(|area| area["code"] == code).unwrap().clone();
    let month = joiners_in(&app.areas("from=2026-11-01&to=2026-12-01").await);
    assert_eq!((month["total"].as_i64(), month["contributors"].as_i64()), (Some(3), Some(2)));
    // Over two months the listing gives no contributor count (cells cannot be added up) …
    let autumn = app.areas("from=2026-10-01&to=2026-12-01").await;
    let joiners = joiners_in(&autumn);
    assert_eq!((joiners["total"].as_i64(), joiners["contributors"].clone()), (Some(4), Value::Null));
    assert_eq!(autumn["boundaries"], serde_json::json!({ "set": "wards", "generation": 1 }));
    // … and one area counts them exactly: the barber once, over both months.
    let two_months = app.area(code, "from=2026-10-01&to=2026-12-01").await;
    assert_eq!((two_months["total"].as_i64(), two_months["contributors"].as_i64()), (Some(4), Some(2)));

    // Rolled to months and to ISO weeks.
    let months = app.area(code, "from=2026-01-01&to=2027-01-01&period=month").await;
    let series: Vec<(String, i64)> = months["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|point| (point["period_start"].as_str().unwrap().to_owned(), point["total"].as_i64().unwrap()))
        .collect();
    assert_eq!(series, vec![("2026-10-01".to_owned(), 1), ("2026-11-01".to_owned(), 3)]);
    let weeks = app.area(code, "from=2026-11-16&to=2026-11-23&period=week").await;
    assert_eq!(weeks["series"][0]["period_start"], "2026-11-16");
    assert_eq!((weeks["series"][0]["total"].as_i64(), weeks["series"][0]["contributors"].as_i64()), (Some(3), Some(2)));

    // Priorities: November against the 30 days before it.
    let (status, priorities) =
        app.get("/api/v1/priorities?from=2026-11-01&to=2026-12-01", Some(&app.analyst_token)).await;
    assert_eq!(status, 200, "{priorities}");
    assert_eq!(
        (priorities["previous_from"].as_str(), priorities["previous_to"].as_str()),
        (Some("2026-10-02"), Some("2026-11-01"))
    );
    let area = &priorities["areas"][0];
    assert_eq!(area["code"], code);
    assert_eq!(area["top_concerns"], serde_json::json!(["drugs"]));
    assert_eq!((area["total"].as_i64(), area["previous_total"].as_i64()), (Some(3), Some(1)));
    let ranked = area["categories"].as_array().unwrap();
    assert_eq!((ranked[0]["category"].as_str(), ranked[0]["change"].as_i64()), (Some("drugs"), Some(3)));
    assert_eq!(ranked[0]["change_percent"], Value::Null, "new this period: no percentage");
    let asb = ranked.iter().find(|ranked| ranked["category"] == "asb").unwrap();
    assert_eq!(
        (asb["total"].as_i64(), asb["previous"].as_i64(), asb["change_percent"].as_f64()),
        (Some(0), Some(1), Some(-100.0))
    );

    // Bad queries are refused with a code, not defaulted.
    for (path, status) in [
        ("/api/v1/priorities?from=2026-11-01", 422),
        ("/api/v1/areas?set=neighbourhoods", 404),
        ("/api/v1/areas/E05008737?period=fortnight", 422),
        ("/api/v1/priorities?from=2026-11-01&to=2026-12-01&area=X1", 404),
    ] {
        let (got, body) = app.get(path, Some(&app.analyst_token)).await;
        assert_eq!(got, status, "{path}: {body}");
        assert!(body["code"].is_string(), "{path}: {body}");
    }
}

/// Two made-up neighbourhoods splitting the county at 2.1° W.
fn neighbourhoods() -> Vec<Area> {
    let rectangle = |code: &str, west: f64, east: f64| {
        let polygon = polygon![(x: west, y: 52.3), (x: east, y: 52.3), (x: east, y: 53.3), (x: west, y: 53.3)];
        Area { code: code.into(), name: format!("Neighbourhood {code}"), shape: geo::MultiPolygon::new(vec![polygon]) }
    };
    vec![rectangle("NW", -2.6, -2.1), rectangle("NE", -2.1, -1.5)]
}

async fn totals_on(app: &TestApp, query: &str) -> Vec<(String, i64)> {
    let body = app.areas(query).await;
    let mut totals: Vec<(String, i64)> = body["areas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|area| (area["code"].as_str().unwrap().to_owned(), area["total"].as_i64().unwrap()))
        .filter(|(_, total)| *total > 0)
        .collect();
    totals.sort();
    totals
}

async fn a_new_generation_retags_history_and_tags_new_insights(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let phone = Phone::new(&app, "Leek library").await;
    for (_, lat, lon) in [JOINERS_SQUARE, ABBEY_HULTON, CANNOCK_NORTH] {
        phone.capture_at("asb", lat, lon, Some(3)).await;
    }
    phone.sync(&app).await.unwrap();
    let wards_before = totals_on(&app, "").await;

    let boundaries = Boundaries::new(neighbourhoods()).unwrap();
    let tagger = |insight: &TaggableInsight| tag_in(&boundaries, &Whereabouts::from(insight));
    let areas = neighbourhoods().iter().map(stored_area).collect();
    let info = app.store.add_generation("neighbourhoods", "test rectangles", areas, &tagger).await.unwrap();
    assert_eq!((info.generation, info.n_areas), (1, 2));

    // The running server picks the generation up by itself.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while app.get("/api/v1/areas?set=neighbourhoods", Some(&app.analyst_token)).await.0 != 200 {
        assert!(std::time::Instant::now() < deadline, "the new generation was not loaded");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Joiner's Square and Abbey Hulton lie west of 2.1° W, Cannock North east of it.
    assert_eq!(totals_on(&app, "set=neighbourhoods").await, vec![("NE".into(), 1), ("NW".into(), 2)]);
    assert_eq!(totals_on(&app, "set=neighbourhoods&generation=1").await, vec![("NE".into(), 1), ("NW".into(), 2)]);
    assert_eq!(totals_on(&app, "").await, wards_before, "the wards' history is untouched");

    // A new insight is tagged in both sets.
    let (_, lat, lon) = CANNOCK_NORTH;
    let id = phone.capture_at("drugs", lat, lon, None).await;
    phone.sync(&app).await.unwrap();
    assert_eq!(totals_on(&app, "set=neighbourhoods").await, vec![("NE".into(), 2), ("NW".into(), 2)]);
    let row = app.store.insight(id).await.unwrap().unwrap();
    let codes: Vec<&str> = row.tags.iter().map(|tag| tag.area_code.as_str()).collect();
    assert_eq!(codes, vec![CANNOCK_NORTH.0, "NE"]);
}

async fn postcodes_and_wide_accuracy_circles_file_by_their_point_and_flag_near_boundary(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (code, lat, lon) = JOINERS_SQUARE;
    app.store.import_postcodes(&[("ST4 2DE".into(), lat, lon)]).await.unwrap();
    let phone = Phone::new(&app, "Stoke pupils").await;
    let now = time::macros::datetime!(2026-11-20 08:30 +00:00);
    let by_postcode = Location::Postcode { postcode: "st42de".into() };
    let known = phone.store.capture(draft("road-safety", by_postcode, Channel::Pupil, now)).await.unwrap();
    let unknown = Location::Postcode { postcode: "ST99 9ZZ".into() };
    let refused = phone.store.capture(draft("road-safety", unknown, Channel::Pupil, now)).await.unwrap();
    let wide = Location::Gps { lat, lon, accuracy_m: 5_000.0 };
    let blurred = phone.store.capture(draft("road-safety", wide, Channel::Pupil, now)).await.unwrap();
    let precise = phone.store.capture(draft("road-safety", at(lat, lon), Channel::Pupil, now)).await.unwrap();
    phone.sync(&app).await.unwrap();

    let listed = phone.store.list().await.unwrap();
    let status_of = |id| listed.iter().find(|insight| insight.id == id).unwrap().status.clone();
    assert!(matches!(status_of(known), Status::Filed { area_code, .. } if area_code == code));
    assert!(matches!(status_of(refused), Status::Rejected { code, .. } if code == "insight_postcode_unknown"));
    assert!(matches!(status_of(blurred), Status::Filed { area_code, .. } if area_code == code));

    let near = |id| {
        let store = app.store.clone();
        async move { store.insight(id).await.unwrap().unwrap().tags[0].near_boundary }
    };
    assert!(near(known).await, "a postcode centroid stands for many addresses");
    assert!(near(blurred).await, "a 5 km circle crosses a ward border");
    assert!(!near(precise).await, "an 8 m fix well inside the ward is not near a border");
    let stored = app.store.insight(known).await.unwrap().unwrap();
    assert_eq!(stored.postcode.as_deref(), Some("ST4 2DE"));
    assert_eq!(app.area(code, "").await["total"], 3, "the rejected postcode is not counted");
}

/// A generation imported elsewhere (another node, the command line) while this server still tags with the
/// boundaries it loaded: an insight it files meanwhile must not miss the new generation. The store refuses a write
/// tagged before the newest generation, and the server reloads and tags again.
async fn an_insight_filed_before_the_server_reloads_is_tagged_in_the_new_generation(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let phone = Phone::new(&app, "Cannock barbers").await;
    let (ward, lat, lon) = CANNOCK_NORTH;
    let first = phone.capture_at("drugs", lat, lon, None).await;
    phone.sync(&app).await.unwrap();

    let boundaries = Boundaries::new(neighbourhoods()).unwrap();
    let tagger = |insight: &TaggableInsight| tag_in(&boundaries, &Whereabouts::from(insight));
    let areas = neighbourhoods().iter().map(stored_area).collect();
    app.store.add_generation("neighbourhoods", "test rectangles", areas, &tagger).await.unwrap();
    // At once, before the server's next reload (every few seconds): its boundaries are stale.
    let second = phone.capture_at("drugs", lat, lon, None).await;
    phone.sync(&app).await.unwrap();

    for id in [first, second] {
        let row = app.store.insight(id).await.unwrap().unwrap();
        let codes: Vec<&str> = row.tags.iter().map(|tag| tag.area_code.as_str()).collect();
        assert_eq!(codes, vec![ward, "NE"], "insight {id} is tagged in both generations");
    }
    let neighbourhoods_generation = app.store.newest_generation_id().await.unwrap().unwrap();
    let rollups = app.store.rollup(neighbourhoods_generation, DayRange::default(), None, false, true).await.unwrap();
    assert_eq!((rollups[0].area_code.as_str(), rollups[0].all.n), ("NE", 2), "and counted there");
}

on_both_backends!(
    insights_roll_up_with_contributors_channels_periods_and_priorities,
    a_new_generation_retags_history_and_tags_new_insights,
    an_insight_filed_before_the_server_reloads_is_tagged_in_the_new_generation,
    postcodes_and_wide_accuracy_circles_file_by_their_point_and_flag_near_boundary,
);

/// A GeoJSON feature collection of rectangles (code, west, east) between 52.3° N and 53.3° N.
fn rectangles_geojson(rectangles: &[(&str, f64, f64)]) -> String {
    let features: Vec<Value> = rectangles
        .iter()
        .map(|(code, west, east)| {
            serde_json::json!({
                "type": "Feature",
                "properties": { "NHCD": code, "NHNM": format!("Neighbourhood {code}") },
                "geometry": { "type": "Polygon", "coordinates": [[
                    [west, 52.3], [east, 52.3], [east, 53.3], [west, 53.3], [west, 52.3]
                ]] }
            })
        })
        .collect();
    serde_json::json!({ "type": "FeatureCollection", "features": features }).to_string()
}

async fn boundaries_import_from_the_command_line_whole_or_not_at_all(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let (database_url, postgres_database) = grapevine_tests::fresh_database(backend, &dir).await;
    let _drop_database = grapevine_tests::DropDatabase(postgres_database);
    let good = dir.path().join("neighbourhoods.geojson");
    std::fs::write(&good, rectangles_geojson(&[("NW", -2.6, -2.1), ("NE", -2.1, -1.5)])).unwrap();
    // A ring drawn out and back along itself encloses no ground, so it cannot be made valid: the whole file is
    // refused. (A bow tie would be repaired: tests/it/boundary_files.rs.)
    let bad = dir.path().join("broken.geojson");
    let mut broken: Value =
        serde_json::from_str(&rectangles_geojson(&[("OK", -2.6, -2.1), ("BOW", -2.1, -1.5)])).unwrap();
    broken["features"][1]["geometry"]["coordinates"] =
        serde_json::json!([[[-2.1, 52.3], [-1.5, 53.3], [-1.5, 52.3], [-1.5, 53.3], [-2.1, 52.3]]]);
    std::fs::write(&bad, broken.to_string()).unwrap();

    let refused = grapevine(&[
        "boundaries",
        "import",
        bad.to_str().unwrap(),
        "--set",
        "neighbourhoods",
        "--database-url",
        &database_url,
    ]);
    assert!(!refused.status.success());
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(message.contains("boundary_feature_invalid") && message.contains("BOW"), "{message}");

    let checked = grapevine(&[
        "boundaries",
        "import",
        good.to_str().unwrap(),
        "--set",
        "neighbourhoods",
        "--check",
        "--database-url",
        &database_url,
    ]);
    assert!(checked.status.success(), "{}", String::from_utf8_lossy(&checked.stderr));
    assert!(String::from_utf8_lossy(&checked.stdout).contains("Read 2 areas"));

    let listed = grapevine(&["boundaries", "list", "--database-url", &database_url]);
    let listing = String::from_utf8_lossy(&listed.stdout).into_owned();
    assert!(
        listing.contains("wards") && !listing.contains("neighbourhoods"),
        "refused and checked files change nothing: {listing}"
    );

    let imported = grapevine(&[
        "boundaries",
        "import",
        good.to_str().unwrap(),
        "--set",
        "neighbourhoods",
        "--database-url",
        &database_url,
    ]);
    assert!(imported.status.success(), "{}", String::from_utf8_lossy(&imported.stderr));
    assert!(String::from_utf8_lossy(&imported.stdout).contains("Imported generation 1 of 'neighbourhoods' (2 areas)"));
    let again = grapevine(&[
        "boundaries",
        "import",
        good.to_str().unwrap(),
        "--set",
        "neighbourhoods",
        "--database-url",
        &database_url,
    ]);
    assert!(String::from_utf8_lossy(&again.stdout).contains("Imported generation 2 of 'neighbourhoods'"));
    let listed = grapevine(&["boundaries", "list", "--database-url", &database_url]);
    let lines: Vec<String> = String::from_utf8_lossy(&listed.stdout).lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), 4, "a header, the wards and two generations: {lines:?}");
    assert!(lines[1].starts_with("wards") && lines[1].contains(" 211 "), "{lines:?}");
    assert!(lines[3].starts_with("neighbourhoods") && lines[3].contains(" 2 "), "{lines:?}");
}

async fn postcodes_import_from_the_command_line(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let (database_url, postgres_database) = grapevine_tests::fresh_database(backend, &dir).await;
    let _drop_database = grapevine_tests::DropDatabase(postgres_database);
    let csv = dir.path().join("onspd.csv");
    std::fs::write(&csv, "pcds,lat,long\nST4 2DE,53.01869,-2.16979\nZZ9 9ZZ,99.999999,0.000000\n").unwrap();
    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, "pcds,lat,long\nST4 2DE,53.01869,-2.16979\nST5 1AA,north,-2\n").unwrap();
    let refused = grapevine(&["postcodes", "import", bad.to_str().unwrap(), "--database-url", &database_url]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("line 3"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let store = grapevine_server::store::open(&database_url).await.unwrap();
    assert_eq!(store.postcode_centroid("ST4 2DE").await.unwrap(), None, "a refused file imports nothing");
    let imported = grapevine(&["postcodes", "import", csv.to_str().unwrap(), "--database-url", &database_url]);
    assert!(imported.status.success(), "{}", String::from_utf8_lossy(&imported.stderr));
    assert!(String::from_utf8_lossy(&imported.stdout).contains("Imported 1 postcodes"));
    assert_eq!(store.postcode_centroid("ST4 2DE").await.unwrap(), Some((53.01869, -2.16979)));
    drop(store);
}

on_both_backends!(boundaries_import_from_the_command_line_whole_or_not_at_all, postcodes_import_from_the_command_line);
