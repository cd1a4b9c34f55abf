//! What an operator watches: `GET /metrics` moves with the work done, `GET /readyz` names each check and answers 503
//! when one fails, every request carries an id (returned in `X-Request-Id`, in its log lines and its sync
//! connection's), and `--log-format json` writes one JSON object a line.

use grapevine_server::store;
use grapevine_tests::points::{JOINERS_SQUARE, WESTMINSTER};
use grapevine_tests::{fresh_database, Backend, Phone, ServerProcess, TestApp};
use serde_json::Value;

const SERVER: &str = env!("CARGO_BIN_EXE_grapevine-under-test");

/// The value of one sample (`name{labels} value`) in a Prometheus text page; 0 when it is absent.
fn sample(page: &str, series: &str) -> f64 {
    page.lines()
        .find_map(|line| line.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .map_or(0.0, |value| value.trim().parse().expect("a sample's value is a number"))
}

async fn scrape(http: &reqwest::Client, server: &ServerProcess) -> String {
    let response = http.get(format!("{}/metrics", server.http_url())).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("application/openmetrics-text"), "{content_type}");
    response.text().await.unwrap()
}

/// A real process, so the counters are its own: a sync of two insights (one filed, one outside every area) moves
/// the connection, frame, sync, decision, group-commit and HTTP counters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_scraped_after_a_sync_show_the_work_done() {
    let dir = tempfile::tempdir().unwrap();
    let (database_url, _) = fresh_database(Backend::Sqlite, &dir).await;
    let token = {
        let store = store::open(&database_url).await.unwrap();
        grapevine_server::auth::issue_device(store.as_ref(), "phone", None).await.unwrap().1
    };
    let server = ServerProcess::start(SERVER, &database_url).await;
    let http = reqwest::Client::new();
    let before = scrape(&http, &server).await;
    assert_eq!(sample(&before, "grapevine_sync_connections_total"), 0.0);
    assert!(before.contains("# TYPE grapevine_group_commit_seconds histogram"), "{before}");
    assert_eq!(sample(&before, "grapevine_database_pool_connections{state=\"max\"}"), 4.0, "{before}");

    let phone = Phone::with_token(token).await;
    phone.capture_at("asb", JOINERS_SQUARE.1, JOINERS_SQUARE.2, Some(3)).await;
    phone.capture_at("asb", WESTMINSTER.0, WESTMINSTER.1, Some(3)).await;
    phone.sync_with(&server.sync_url()).await.unwrap();

    let after = scrape(&http, &server).await;
    assert_eq!(sample(&after, "grapevine_sync_connections_total"), 1.0, "{after}");
    assert_eq!(sample(&after, "grapevine_insights_decided_total{decision=\"filed\"}"), 1.0, "{after}");
    assert_eq!(sample(&after, "grapevine_insights_decided_total{decision=\"outside_coverage\"}"), 1.0, "{after}");
    assert!(sample(&after, "grapevine_sync_messages_total{outcome=\"stored\"}") >= 2.0, "{after}");
    assert!(sample(&after, "grapevine_websocket_frames_total{direction=\"in\"}") >= 3.0, "{after}");
    assert!(sample(&after, "grapevine_websocket_frames_total{direction=\"out\"}") >= 3.0, "{after}");
    assert!(sample(&after, "grapevine_websocket_frame_bytes_total{direction=\"in\"}") > 100.0, "{after}");
    assert!(sample(&after, "grapevine_group_commit_batch_size_count") >= 1.0, "{after}");
    assert!(sample(&after, "grapevine_group_commit_batch_size_sum") >= 2.0, "{after}");
    assert!(sample(&after, "grapevine_tcp_connections_total") >= 2.0, "a scrape and a sync at least: {after}");
    assert!(sample(&after, "grapevine_tcp_connections_open") >= 1.0, "the scrape's own: {after}");
    let sync_upgrades = "grapevine_http_requests_total{method=\"GET\",route=\"/sync\",status=\"101\"}";
    assert_eq!(sample(&after, sync_upgrades), 1.0, "{after}");
    let scrapes = "grapevine_http_requests_total{method=\"GET\",route=\"/metrics\",status=\"200\"}";
    assert_eq!(sample(&after, scrapes), 1.0, "the first scrape is counted by the second: {after}");

    // An unknown path is counted under one label, whatever the path.
    let _ = http.get(format!("{}/wp-admin/setup.php", server.http_url())).send().await.unwrap();
    let last = scrape(&http, &server).await;
    assert!(!last.contains("wp-admin"), "a raw path never becomes a label");
    assert_eq!(sample(&last, "grapevine_http_requests_total{method=\"GET\",route=\"unmatched\",status=\"404\"}"), 1.0);
}

/// `/readyz` answers 200 naming each check; a database migrated past what this server knows makes it 503, naming
/// the migrations check.
async fn readyz_names_each_check_and_fails_on_a_schema_newer_than_the_server(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (status, body) = app.get("/readyz", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["ready"], true);
    let names: Vec<&str> =
        body["checks"].as_array().unwrap().iter().map(|check| check["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["database", "migrations", "boundaries", "accepting"]);
    assert!(body["checks"][2]["detail"].as_str().unwrap().contains("areas"), "{body}");

    // Another node, newer than this one, migrated the database.
    let insert = "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
                  VALUES ($1, 'from a newer grapevine', TRUE, $2, 0)";
    match backend {
        Backend::Sqlite => {
            use sqlx::Connection;
            let mut connection = sqlx::SqliteConnection::connect(&app.database_url).await.unwrap();
            sqlx::query(insert).bind(99_999_i64).bind(vec![0_u8]).execute(&mut connection).await.unwrap();
        }
        Backend::Postgres => {
            use sqlx::Connection;
            let mut connection = sqlx::PgConnection::connect(&app.database_url).await.unwrap();
            sqlx::query(insert).bind(99_999_i64).bind(vec![0_u8]).execute(&mut connection).await.unwrap();
        }
    }
    let (status, body) = app.get("/readyz", None).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["ready"], false);
    let failing: Vec<&Value> = body["checks"].as_array().unwrap().iter().filter(|check| check["ok"] == false).collect();
    assert_eq!(failing.len(), 1, "{body}");
    assert_eq!(failing[0]["name"], "migrations");
    assert!(failing[0]["detail"].as_str().unwrap().contains("99999"), "{body}");
}

on_both_backends!(readyz_names_each_check_and_fails_on_a_schema_newer_than_the_server);

/// A sane incoming `X-Request-Id` comes back as it was; anything else is replaced by a new id; every answer has one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_carries_a_request_id_and_only_a_sane_incoming_one_is_kept() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let http = reqwest::Client::new();
    let request_id = |value: Option<&str>| {
        let mut request = http.get(format!("{}/healthz", app.http_url()));
        if let Some(value) = value {
            request = request.header("x-request-id", value);
        }
        async move { request.send().await.unwrap().headers()["x-request-id"].to_str().unwrap().to_owned() }
    };
    assert_eq!(request_id(Some("lb-7f3a.42")).await, "lb-7f3a.42");
    let replaced = request_id(Some("forged\tline")).await;
    assert_eq!(replaced.len(), 32, "{replaced}");
    let (first, second) = (request_id(None).await, request_id(None).await);
    assert!(first.bytes().all(|byte| byte.is_ascii_hexdigit()) && first.len() == 32, "{first}");
    assert_ne!(first, second);
}

/// `--log-format json`: every line is a JSON object, a request's line carries its request id, and a sync
/// connection's lines carry the id of the request that opened it and the TCP connection's peer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_log_lines_parse_and_carry_the_request_id() {
    let dir = tempfile::tempdir().unwrap();
    let (database_url, _) = fresh_database(Backend::Sqlite, &dir).await;
    let token = {
        let store = store::open(&database_url).await.unwrap();
        grapevine_server::auth::issue_device(store.as_ref(), "phone", None).await.unwrap().1
    };
    let server = ServerProcess::try_start(SERVER, &database_url, &["--log-format", "json"], "debug,sqlx=warn")
        .await
        .expect("the server starts");
    let http = reqwest::Client::new();
    let response =
        http.get(format!("{}/readyz", server.http_url())).header("x-request-id", "probe-42").send().await.unwrap();
    assert_eq!(response.status(), 200);
    let line = server.wait_for_log(|line| line.contains("probe-42")).await;
    let entry: Value = serde_json::from_str(&line).expect("a JSON log line");
    assert_eq!(entry["span"]["request_id"], "probe-42", "{entry}");
    assert_eq!(entry["span"]["route"], "/readyz", "{entry}");
    assert_eq!(entry["fields"]["status"], 200, "{entry}");

    let phone = Phone::with_token(token).await;
    phone.sync_with(&server.sync_url()).await.unwrap();
    let joined = server.wait_for_log(|line| line.contains("\"joined\"")).await;
    let joined: Value = serde_json::from_str(&joined).expect("a JSON log line");
    // connection (its peer) → request (its id, the upgrade) → sync (the device).
    let spans: Vec<&str> =
        joined["spans"].as_array().expect("the span list").iter().map(|span| span["name"].as_str().unwrap()).collect();
    assert_eq!(spans, ["connection", "request", "sync"], "{joined}");
    let request = &joined["spans"][1];
    assert_eq!(request["route"], "/sync", "{joined}");
    assert_eq!(request["request_id"].as_str().map(str::len), Some(32), "{joined}");
    assert!(joined["spans"][0]["peer"].as_str().unwrap().starts_with("127.0.0.1:"), "{joined}");

    for line in server.log() {
        let parsed: Result<Value, _> = serde_json::from_str(&line);
        assert!(parsed.is_ok_and(|entry| entry.is_object()), "not a JSON object: {line}");
    }
}
