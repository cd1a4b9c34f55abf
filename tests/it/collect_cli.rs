//! The `grapevine-collect` command line as a person or a script uses it, run as a real process: `--store` anywhere on
//! the line, errors that say what is actually missing or wrong (with their stable code under `--json`, on standard
//! error), and the invitation code read from standard input so it never shows in the process list.

use std::path::Path;
use std::process::{Output, Stdio};

use grapevine_tests::{Backend, TestApp};
use serde_json::Value;
use time::Duration;
use tokio::io::AsyncWriteExt;

const COLLECT: &str = env!("CARGO_BIN_EXE_collect-under-test");

/// Runs `grapevine-collect` with `args`, feeding `stdin` (closed at once when `None`), with none of its environment
/// variables set, so only the arguments decide.
async fn collect(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = tokio::process::Command::new(COLLECT)
        .args(args)
        .env_remove("GRAPEVINE_STORE")
        .env_remove("GRAPEVINE_SERVER")
        .env_remove("GRAPEVINE_TOKEN")
        .env_remove("GRAPEVINE_CA_FILE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut pipe = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        pipe.write_all(text.as_bytes()).await.unwrap();
    }
    drop(pipe);
    tokio::time::timeout(std::time::Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("grapevine-collect finished within a minute")
        .unwrap()
}

fn stdout(output: &Output) -> String {
    assert!(output.status.success(), "grapevine-collect failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A failed run under `--json`: nothing on standard output, one `{"code", "message"}` line on standard error.
fn json_error(output: &Output) -> (String, String) {
    assert!(!output.status.success(), "expected a failure: {}", String::from_utf8_lossy(&output.stdout));
    assert!(output.stdout.is_empty(), "an error is not data: {}", String::from_utf8_lossy(&output.stdout));
    let error: Value = serde_json::from_slice(&output.stderr)
        .unwrap_or_else(|_| panic!("one JSON error on stderr, not {}", String::from_utf8_lossy(&output.stderr)));
    (error["code"].as_str().unwrap_or_default().to_owned(), error["message"].as_str().unwrap_or_default().to_owned())
}

fn store_arg(dir: &Path) -> &str {
    dir.to_str().unwrap()
}

#[tokio::test]
async fn store_is_a_global_flag_like_json_and_lang() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_arg(dir.path());
    let captured = stdout(
        &collect(
            &["capture", "--category", "drugs", "--text", "Dealing by the shops", "--channel", "staff"]
                .into_iter()
                .chain(["--store", store, "--json"])
                .collect::<Vec<_>>(),
            None,
        )
        .await,
    );
    let captured: Value = serde_json::from_str(&captured).unwrap();
    let id = captured["id"].as_str().unwrap().to_owned();

    // The README's own line: the store named after the subcommand and its argument.
    let withdrawn: Value =
        serde_json::from_str(&stdout(&collect(&["withdraw", &id, "--store", store, "--json"], None).await)).unwrap();
    assert_eq!(withdrawn["withdrawn"], Value::Bool(true));
    let status = stdout(&collect(&["status", &id, "--store", store], None).await);
    assert!(status.contains(&id), "{status}");
    // Before the subcommand, as before.
    let listed: Value =
        serde_json::from_str(&stdout(&collect(&["--store", store, "--json", "list"], None).await)).unwrap();
    assert_eq!(listed.as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn a_store_emptied_since_it_was_used_is_refused_with_its_code_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_arg(dir.path());
    stdout(
        &collect(
            &["capture", "--category", "asb", "--text", "Noise at night", "--channel", "pupil", "--store", store],
            None,
        )
        .await,
    );
    let file = dir.path().join(grapevine_client_sdk::store::STORE_FILE);
    std::fs::File::create(&file).unwrap(); // truncated to 0 bytes, as a full disk or a bad copy leaves it

    let (code, message) = json_error(&collect(&["list", "--store", store, "--json"], None).await);
    assert_eq!(code, "store_damaged");
    assert!(message.contains("empty") && message.contains("restore it from a backup"), "{message}");
    let output =
        collect(&["capture", "--category", "asb", "--text", "Again", "--channel", "pupil", "--store", store], None)
            .await;
    assert!(!output.status.success(), "no capture into a fresh store over the emptied one");
    assert!(String::from_utf8_lossy(&output.stderr).starts_with("error: the store at"), "{output:?}");
    assert_eq!(std::fs::metadata(&file).unwrap().len(), 0, "the emptied file is left for whoever recovers it");
}

#[tokio::test]
async fn a_sync_that_cannot_start_says_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_arg(dir.path());

    // A token but no server, on a phone that never enrolled: the server is what is missing, not a token.
    let (code, message) = json_error(&collect(&["sync", "--token", "nope", "--store", store, "--json"], None).await);
    assert_eq!(code, "not_enrolled");
    assert!(message.contains("no server to sync with") && message.contains("--server"), "{message}");
    assert!(!message.contains("give a device token"), "a token was given: {message}");

    // A server but no token.
    let (code, message) =
        json_error(&collect(&["sync", "--server", "ws://127.0.0.1:9/sync", "--store", store, "--json"], None).await);
    assert_eq!(code, "not_enrolled");
    assert!(message.contains("no device token") && message.contains("--token"), "{message}");

    // Neither.
    let (code, message) = json_error(&collect(&["sync", "--store", store, "--json"], None).await);
    assert_eq!(code, "not_enrolled");
    assert!(message.contains("not enrolled") && message.contains("enrol"), "{message}");

    // Without --json, the same sentence for a person, on standard error.
    let output = collect(&["sync", "--token", "nope", "--store", store], None).await;
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).starts_with("error: no server to sync with"));
}

async fn a_refused_token_is_named_as_refused(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let store = store_arg(dir.path());
    let sync_url = app.sync_url();
    let (code, message) = json_error(
        &collect(&["sync", "--server", &sync_url, "--token", "nope", "--store", store, "--json"], None).await,
    );
    assert_eq!(code, "unauthorized");
    assert!(message.contains("refused the device token given with --token"), "{message}");

    // The phone enrols, then a wrong token given on the line is still the one named (not the kept one).
    let invitation = app.create_invitation("Hanley barbers", 1, Duration::days(1)).await;
    stdout(&collect(&["enrol", "--server", &app.http_url(), "--code", &invitation, "--store", store], None).await);
    let (code, message) = json_error(&collect(&["sync", "--token", "nope", "--store", store, "--json"], None).await);
    assert_eq!(code, "unauthorized");
    assert!(message.contains("given with --token"), "{message}");
    app.stop().await;
}

async fn the_invitation_code_can_come_on_standard_input(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let server = app.http_url();

    // `--code -`: the first line of standard input.
    let invitation = app.create_invitation("Hanley barbers", 5, Duration::days(1)).await;
    let first = tempfile::tempdir().unwrap();
    let enrolled = collect(
        &["enrol", "--server", &server, "--code", "-", "--store", store_arg(first.path()), "--json"],
        Some(&format!("{invitation}\n")),
    )
    .await;
    let enrolled: Value = serde_json::from_str(&stdout(&enrolled)).unwrap();
    assert!(enrolled["device_id"].is_string(), "{enrolled}");
    let synced = stdout(&collect(&["sync", "--store", store_arg(first.path()), "--json"], None).await);
    assert!(synced.contains("\"sent\":0"), "the kept token syncs: {synced}");

    // No --code with standard input not a terminal: read from it too.
    let second = tempfile::tempdir().unwrap();
    stdout(&collect(&["enrol", "--server", &server, "--store", store_arg(second.path())], Some(&invitation)).await);

    // The argument still works, and nothing on standard input is an error that says so.
    let third = tempfile::tempdir().unwrap();
    stdout(
        &collect(&["enrol", "--server", &server, "--code", &invitation, "--store", store_arg(third.path())], None)
            .await,
    );
    let fourth = tempfile::tempdir().unwrap();
    let (code, message) = json_error(
        &collect(
            &["enrol", "--server", &server, "--code", "-", "--store", store_arg(fourth.path()), "--json"],
            Some("\n"),
        )
        .await,
    );
    assert_eq!(code, "invalid_request");
    assert!(message.contains("no invitation code"), "{message}");

    // A wrong code on standard input is the server's refusal, with its code.
    let (code, _) = json_error(
        &collect(&["enrol", "--server", &server, "--store", store_arg(fourth.path()), "--json"], Some("WRONG-CODE\n"))
            .await,
    );
    assert_eq!(code, "invitation_unknown");
    app.stop().await;
}

on_both_backends!(a_refused_token_is_named_as_refused, the_invitation_code_can_come_on_standard_input);
