//! The unmodified JavaScript automerge-repo client (2.5.6, pinned in tests/js/package-lock.json) against our server.
//! The JS client reports no error when a server refuses it, so these tests assert on the server's state and on what
//! the client could read.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use grapevine_server::store::Outcome;
use grapevine_tests::points::JOINERS_SQUARE;
use grapevine_tests::{Backend, TestApp};
use tokio::io::AsyncBufReadExt;

fn js_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("js")
}

/// Installs the pinned JavaScript client with `npm ci`, once per test run, exactly as the lockfile says. (package.json
/// pins `cbor-extract` to 2.2.2 through `overrides`: the registry has no platform packages for 2.2.3, and without
/// them in the lockfile npm 11 refuses `npm ci`.)
fn npm_ci() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        if js_dir().join("node_modules/@automerge/automerge-repo/package.json").exists() {
            return;
        }
        let installed = std::process::Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(js_dir())
            .status()
            .expect("npm runs (Node.js is needed for the compatibility tests)")
            .success();
        assert!(installed, "`npm ci` could not install tests/js from its lockfile");
    });
}

fn node(args: &[&str]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new("node");
    command.arg("client.mjs").args(args).current_dir(js_dir()).kill_on_drop(true);
    command.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::null());
    command
}

async fn read_as(app: &TestApp, token: &str, doc_url: &str) -> serde_json::Value {
    let output = node(&["read", &app.sync_url(), token, doc_url]).output().await.unwrap();
    let line = String::from_utf8(output.stdout).unwrap();
    serde_json::from_str(line.lines().last().unwrap_or_default()).unwrap_or(serde_json::Value::Null)
}

async fn the_javascript_client_syncs_an_insight_and_only_its_collector_reads_it(backend: Backend) {
    npm_ci();
    let app = TestApp::spawn(backend).await;
    let (first_token, second_token) = app.add_two_devices_of_one_collector("JS app").await;
    let stranger_token = app.add_device("Someone else").await;

    // A JS client creates an insight document in our schema.
    let mut creator = node(&["create", &app.sync_url(), &first_token]).spawn().unwrap();
    let mut lines = tokio::io::BufReader::new(creator.stdout.take().unwrap()).lines();
    let created: serde_json::Value = serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
    let (doc_url, id) = (created["url"].as_str().unwrap().to_owned(), created["id"].as_str().unwrap().parse().unwrap());

    // The server stores, validates, geotags and counts it.
    let row = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            if let Some(row) = app.store.insight(id).await.unwrap() {
                return row;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the JS client's insight reached the server");
    assert_eq!(row.outcome, Outcome::Filed { area_code: JOINERS_SQUARE.0.into() });
    assert_eq!(row.text.as_deref(), Some("Bus shelter glass smashed again"), "JS text objects are read");
    assert_eq!(app.totals().await, (vec![(JOINERS_SQUARE.0.into(), 1)], 0));
    creator.kill().await.unwrap();

    // A second JS client with the same collector's identity reads it back, with the server's decision.
    let read = read_as(&app, &second_token, &doc_url).await;
    assert_eq!(read["doc"]["text"], "Bus shelter glass smashed again", "{read}");
    assert_eq!(read["doc"]["server"]["status"], "filed", "{read}");
    assert_eq!(read["doc"]["server"]["area_code"], JOINERS_SQUARE.0);

    // A JS client with another identity cannot, and learns nothing about whether it exists.
    let refused = read_as(&app, &stranger_token, &doc_url).await;
    assert!(refused["doc"].is_null() && refused["unavailable"].is_string(), "{refused}");
    let missing = format!("automerge:{}", grapevine_sync_proto::DocumentId::random());
    let never_existed = read_as(&app, &second_token, &missing).await;
    assert_eq!(
        refused["unavailable"].as_str().map(|m| m.replace(&doc_url[10..], "ID")),
        never_existed["unavailable"].as_str().map(|m| m.replace(&missing[10..], "ID")),
        "a refused document looks exactly like a missing one"
    );
    assert_eq!(app.totals().await, (vec![(JOINERS_SQUARE.0.into(), 1)], 0));
}

on_both_backends!(the_javascript_client_syncs_an_insight_and_only_its_collector_reads_it);
