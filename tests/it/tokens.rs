//! API tokens from the command line: `grapevine token add|list|revoke`, driven through the real binary. A listing
//! never shows a token or its hash; a revoked token is refused by every node from its next request on, and devices
//! are untouched by it.

use crate::command::{grapevine, stdout, GRAPEVINE};
use grapevine_tests::{fresh_database, Backend, ServerProcess, TestApp};
use serde_json::Value;

/// The token `token add` printed (its last line) and its id (from its first line, "Added … token <ID>. …").
fn added(output: &str) -> (String, String) {
    let token = output.lines().last().unwrap().trim().to_owned();
    let id = output.split_whitespace().find_map(|word| word.trim_end_matches('.').parse::<uuid::Uuid>().ok());
    (id.unwrap_or_else(|| panic!("no id in {output}")).to_string(), token)
}

fn listed(database_url: &str) -> Vec<Value> {
    let json = stdout(&grapevine(&["token", "list", "--json", "--database-url", database_url]));
    serde_json::from_str::<Value>(&json).unwrap().as_array().unwrap().clone()
}

async fn tokens_are_listed_without_secrets_and_revoked_at_once(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let database_url = app.database_url.clone();
    let (board_id, board_token) = added(&stdout(&grapevine(&[
        "token",
        "add",
        "--role",
        "board",
        "--label",
        "Stoke partnership board",
        "--database-url",
        &database_url,
    ])));
    let (analyst_id, analyst_token) = added(&stdout(&grapevine(&[
        "token",
        "add",
        "--role",
        "analyst",
        "--label",
        "Commissioner's office",
        "--database-url",
        &database_url,
    ])));
    let device_token = app.add_device("Youth club").await;

    let tokens = listed(&database_url);
    assert_eq!(tokens.len(), 3, "the test analyst and the two added: {tokens:?}");
    let analyst = tokens.iter().find(|token| token["id"] == analyst_id.as_str()).expect("the analyst token is listed");
    assert_eq!(analyst["role"], "analyst");
    assert_eq!(analyst["label"], "Commissioner's office");
    assert!(analyst["created_at"].as_str().unwrap().ends_with('Z'), "{analyst}");
    assert_eq!(analyst["revoked_at"], Value::Null);
    let keys: Vec<&String> = analyst.as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 7, "id, role, person, label, created_at, expires_at, revoked_at and nothing else: {keys:?}");
    assert_eq!((&analyst["person"], &analyst["expires_at"]), (&Value::Null, &Value::Null), "a service account's");
    let table = stdout(&grapevine(&["token", "list", "--database-url", &database_url]));
    assert!(table.lines().any(|line| line.starts_with(&board_id) && line.contains("board")), "{table}");
    for secret in [&board_token, &analyst_token, &app.analyst_token] {
        let hash = grapevine_server::auth::hash_token(secret);
        for printed in [&table, &tokens.iter().map(Value::to_string).collect::<String>()] {
            assert!(!printed.contains(secret.as_str()) && !printed.contains(&hash), "a secret was listed: {printed}");
        }
    }

    assert_eq!(app.get("/api/v1/areas", Some(&analyst_token)).await.0, 200);
    let revoked = stdout(&grapevine(&["token", "revoke", &analyst_id, "--database-url", &database_url]));
    assert!(revoked.contains("Revoked API token"), "{revoked}");
    let (status, answer) = app.get("/api/v1/areas", Some(&analyst_token)).await;
    assert_eq!((status, answer["code"].as_str()), (401, Some("unauthorized")), "refused at the next request");
    assert_eq!(app.get("/api/v1/areas", Some(&app.analyst_token)).await.0, 200, "other tokens keep working");
    let (status, answer) = app.get("/sync", Some(&device_token)).await;
    assert!(status != 401 && status != 403, "devices are untouched: {status} {answer}");

    let again = stdout(&grapevine(&["token", "revoke", &analyst_id, "--database-url", &database_url]));
    assert!(again.contains("revoked already"), "{again}");
    let unknown = uuid::Uuid::new_v4().to_string();
    let refused = grapevine(&["token", "revoke", &unknown, "--database-url", &database_url]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("no API token has the id"));
    let not_an_id = grapevine(&["token", "revoke", "gva_0123", "--database-url", &database_url]);
    assert!(!not_an_id.status.success(), "a token is not an id");

    let tokens = listed(&database_url);
    let analyst = tokens.iter().find(|token| token["id"] == analyst_id.as_str()).unwrap();
    assert!(analyst["revoked_at"].as_str().is_some_and(|at| at.ends_with('Z')), "{analyst}");
    let table = stdout(&grapevine(&["token", "list", "--database-url", &database_url]));
    let line = table.lines().find(|line| line.starts_with(&analyst_id)).unwrap();
    assert!(!line.contains(" - "), "the table shows when it was revoked: {line}");
}

on_both_backends!(tokens_are_listed_without_secrets_and_revoked_at_once);

/// Every node looks a token up on every request, so a revocation made anywhere holds on every node at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_revoked_through_one_node_is_refused_by_another() {
    let dir = tempfile::tempdir().unwrap();
    let (database_url, database) = fresh_database(Backend::Postgres, &dir).await;
    let _drop = grapevine_tests::DropDatabase(database);
    let (id, token) =
        added(&stdout(&grapevine(&["token", "add", "--role", "analyst", "--database-url", &database_url])));
    let first = ServerProcess::start(GRAPEVINE, &database_url).await;
    let second = ServerProcess::start(GRAPEVINE, &database_url).await;
    let http = reqwest::Client::new();
    let status = |node: &ServerProcess| {
        let request = http.get(format!("http://{}/api/v1/areas", node.addr)).bearer_auth(&token).send();
        async move { request.await.unwrap().status().as_u16() }
    };
    assert_eq!((status(&first).await, status(&second).await), (200, 200));
    stdout(&grapevine(&["token", "revoke", &id, "--database-url", &database_url]));
    assert_eq!((status(&first).await, status(&second).await), (401, 401));
}
