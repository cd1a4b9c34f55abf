//! People and their API tokens from the command line (`grapevine user …`, `grapevine token add --user`), driven
//! through the real binary on both backends: a person's token carries the person's role as it is now, stops at once
//! when they are disabled, and expires; every bad input is refused by its code and writes nothing.

use crate::command::{grapevine, stdout};
use grapevine_tests::{Backend, TestApp};
use serde_json::Value;

/// `grapevine ARGS… --database-url URL`.
fn run(database_url: &str, args: &[&str]) -> std::process::Output {
    let mut all = args.to_vec();
    all.extend(["--database-url", database_url]);
    grapevine(&all)
}

/// What a command that must be refused wrote to standard error; it must name `code`.
fn refused(output: &std::process::Output, code: &str) -> String {
    assert!(!output.status.success(), "succeeded: {}", String::from_utf8_lossy(&output.stdout));
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(stderr.contains(&format!("({code})")), "expected {code}: {stderr}");
    stderr
}

fn listed(database_url: &str, what: &str) -> Vec<Value> {
    let json = stdout(&run(database_url, &[what, "list", "--json"]));
    serde_json::from_str::<Value>(&json).unwrap().as_array().unwrap().clone()
}

/// The token `token add` printed: its last line.
fn token_of(output: &str) -> String {
    output.lines().last().unwrap().trim().to_owned()
}

async fn people_are_added_listed_changed_and_disabled_and_their_tokens_follow(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let db = app.database_url.clone();
    let added = stdout(&run(&db, &["user", "add", "--email", " Ann.Lee@Example.org ", "--role", "analyst"]));
    assert!(added.contains("ann.lee@example.org") && added.contains("everything"), "{added}");
    stdout(&run(&db, &["user", "add", "--email", "bob@example.org", "--role", "board", "--areas", "wards:E05008714"]));

    let people = listed(&db, "user");
    assert_eq!(people.len(), 2, "{people:?}");
    let ann = &people[0];
    let keys: Vec<&String> = ann.as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 6, "id, email, role, scope, created_at, disabled_at: {keys:?}");
    assert_eq!(
        (&ann["email"], &ann["role"], &ann["scope"]),
        (&"ann.lee@example.org".into(), &"analyst".into(), &Value::Null)
    );
    assert!(ann["created_at"].as_str().unwrap().ends_with('Z') && ann["disabled_at"].is_null(), "{ann}");
    assert!(ann["id"].as_str().unwrap().parse::<uuid::Uuid>().is_ok(), "{ann}");
    let bob_scope = people[1]["scope"].as_array().unwrap();
    assert_eq!(bob_scope.len(), 1);
    assert_eq!((&bob_scope[0]["set"], &bob_scope[0]["code"]), (&"wards".into(), &"E05008714".into()));
    let wards_generation = app.store.generations().await.unwrap().iter().find(|g| g.set_name == "wards").unwrap().id;
    assert_eq!(bob_scope[0]["generation"], wards_generation, "the grant keeps the generation's id");
    let table = stdout(&run(&db, &["user", "list"]));
    assert!(
        table.lines().any(|line| line.starts_with("bob@example.org") && line.contains("wards:E05008714")),
        "{table}"
    );

    // A token of Ann's reads as an analyst, and a listing shows whose it is without showing it.
    let token =
        token_of(&stdout(&run(&db, &["token", "add", "--user", "ANN.LEE@example.org", "--label", "Ann's laptop"])));
    assert!(token.starts_with("gva_"), "{token}");
    assert_eq!(app.get("/api/v1/areas", Some(&token)).await.0, 200);
    let tokens = listed(&db, "token");
    let anns = tokens.iter().find(|listed| listed["person"] == "ann.lee@example.org").expect("Ann's token is listed");
    assert_eq!(
        (&anns["role"], &anns["label"], &anns["expires_at"]),
        (&"analyst".into(), &"Ann's laptop".into(), &Value::Null)
    );
    let token_table = stdout(&run(&db, &["token", "list"]));
    assert!(token_table.contains("ann.lee@example.org") && token_table.contains("service account"), "{token_table}");
    for printed in [token_table, tokens.iter().map(Value::to_string).collect()] {
        assert!(!printed.contains(&token) && !printed.contains(&grapevine_server::auth::hash_token(&token)));
    }

    // Her role is read at every request: a board member may not read roll-ups, an analyst again may.
    let changed = stdout(&run(&db, &["user", "set-role", "--email", "ann.lee@example.org", "--role", "board"]));
    assert!(changed.contains("now board"), "{changed}");
    let (status, answer) = app.get("/api/v1/areas", Some(&token)).await;
    assert_eq!((status, answer["code"].as_str()), (403, Some("forbidden")), "{answer}");
    stdout(&run(&db, &["user", "set-role", "--email", "ann.lee@example.org", "--role", "analyst"]));
    assert_eq!(app.get("/api/v1/areas", Some(&token)).await.0, 200);
    let scoped = stdout(&run(
        &db,
        &["user", "set-role", "--email", "ann.lee@example.org", "--role", "analyst", "--areas", "wards:E05008714"],
    ));
    assert!(scoped.contains("wards:E05008714"), "{scoped}");
    assert_eq!(listed(&db, "user")[0]["scope"][0]["code"], "E05008714");

    // Disabled, she is refused at once, by name; other tokens keep working.
    let disabled = stdout(&run(&db, &["user", "disable", "--email", "ann.lee@example.org"]));
    assert!(disabled.contains("Disabled ann.lee@example.org"), "{disabled}");
    let (status, answer) = app.get("/api/v1/areas", Some(&token)).await;
    assert_eq!((status, answer["code"].as_str()), (401, Some("person_disabled")), "{answer}");
    assert!(answer["message"].as_str().unwrap().contains("disabled"), "{answer}");
    assert!(!answer.to_string().contains(&token), "the token is not repeated: {answer}");
    assert_eq!(app.get("/api/v1/areas", Some(&app.analyst_token)).await.0, 200, "other tokens keep working");
    assert!(listed(&db, "user")[0]["disabled_at"].as_str().is_some_and(|at| at.ends_with('Z')));
    let again = stdout(&run(&db, &["user", "disable", "--email", "ann.lee@example.org"]));
    assert!(again.contains("disabled already"), "{again}");
    let stderr = refused(&run(&db, &["token", "add", "--user", "ann.lee@example.org"]), "person_disabled");
    assert!(stderr.contains("ann.lee@example.org is disabled"), "{stderr}");
    app.stop().await;
}

async fn an_expired_token_is_refused_and_expiry_is_listed(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let db = app.database_url.clone();
    stdout(&run(&db, &["user", "add", "--email", "cat@example.org", "--role", "analyst"]));
    let token = token_of(&stdout(&run(&db, &["token", "add", "--user", "cat@example.org", "--expires", "90d"])));
    assert_eq!(app.get("/api/v1/areas", Some(&token)).await.0, 200);
    let listed_token = listed(&db, "token").into_iter().find(|listed| listed["person"] == "cat@example.org").unwrap();
    let expires_at = time::OffsetDateTime::parse(
        listed_token["expires_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let in_days = (expires_at - time::OffsetDateTime::now_utc()).whole_hours();
    assert!((89 * 24..=90 * 24).contains(&in_days), "expires in 90 days: {listed_token}");

    // A token whose time has come: made through the store, since the command line issues none shorter than an hour.
    let cat = app.store.person_by_email("cat@example.org").await.unwrap().unwrap();
    let expired = grapevine_server::auth::new_token(grapevine_server::auth::TokenKind::Api);
    let yesterday = time::OffsetDateTime::now_utc() - time::Duration::days(1);
    let hash = grapevine_server::auth::hash_token(&expired);
    app.store.add_person_token(cat.id, "old", &hash, Some(yesterday)).await.unwrap();
    let (status, answer) = app.get("/api/v1/areas", Some(&expired)).await;
    assert_eq!((status, answer["code"].as_str()), (401, Some("token_expired")), "{answer}");
    assert_eq!(app.get("/api/v1/areas", Some(&token)).await.0, 200, "her live token still works");
    app.stop().await;
}

async fn bad_input_is_refused_by_code_and_writes_nothing(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let db = app.database_url.clone();
    let add = |email: &str, role: &str, areas: Option<&str>| {
        let mut args = vec!["user", "add", "--email", email, "--role", role];
        args.extend(areas.map(|areas| ["--areas", areas]).into_iter().flatten());
        run(&db, &args)
    };
    let stderr = refused(&add("dee@example.org", "superuser", None), "role_unknown");
    assert!(stderr.contains("'superuser' is not a role"), "{stderr}");
    let stderr =
        refused(&add("dee@example.org", "analyst", Some("wards:E05008714,wards:E99999999")), "scope_area_unknown");
    assert!(stderr.contains("wards:E99999999") && stderr.contains("generation 1 of 'wards'"), "{stderr}");
    let stderr = refused(&add("dee@example.org", "analyst", Some("parishes:P1")), "scope_area_unknown");
    assert!(stderr.contains("'parishes'"), "{stderr}");
    let stderr = refused(&add("dee@example.org", "analyst", Some("wards:E05008714,E05008737")), "scope_invalid");
    assert!(stderr.contains("'E05008737'"), "{stderr}");
    let stderr = refused(&add("not an email", "analyst", None), "person_email_invalid");
    assert!(stderr.contains("'not an email'"), "{stderr}");
    assert!(listed(&db, "user").is_empty(), "nothing was written");

    stdout(&add("dee@example.org", "board", None));
    let stderr = refused(&add(" DEE@example.org", "analyst", None), "person_email_taken");
    assert!(stderr.contains("dee@example.org"), "{stderr}");
    let people = listed(&db, "user");
    assert_eq!((people.len(), &people[0]["role"]), (1, &"board".into()), "the first stays as it was");

    let n_tokens = listed(&db, "token").len();
    for args in [
        vec!["user", "set-role", "--email", "nobody@example.org", "--role", "analyst"],
        vec!["user", "disable", "--email", "nobody@example.org"],
        vec!["token", "add", "--user", "nobody@example.org"],
    ] {
        let stderr = refused(&run(&db, &args), "person_unknown");
        assert!(stderr.contains("nobody@example.org"), "{stderr}");
    }
    for expiry in ["0d", "90m", "1826d", "soon"] {
        let stderr = refused(
            &run(&db, &["token", "add", "--user", "dee@example.org", "--expires", expiry]),
            "token_expiry_invalid",
        );
        assert!(stderr.contains(&format!("'{expiry}'")), "{stderr}");
    }
    assert_eq!(listed(&db, "token").len(), n_tokens, "no token was written");

    // A change with a bad scope changes nothing, not even the role.
    refused(
        &run(&db, &["user", "set-role", "--email", "dee@example.org", "--role", "analyst", "--areas", "wards:E0"]),
        "scope_area_unknown",
    );
    refused(&run(&db, &["user", "set-role", "--email", "dee@example.org", "--role", "root"]), "role_unknown");
    let dee = &listed(&db, "user")[0];
    assert_eq!((&dee["role"], &dee["scope"]), (&"board".into(), &Value::Null));

    // The service-account form is as it was.
    let token = token_of(&stdout(&run(&db, &["token", "add", "--role", "analyst", "--label", "Dashboards"])));
    assert_eq!(app.get("/api/v1/areas", Some(&token)).await.0, 200);
    let service = listed(&db, "token").into_iter().find(|listed| listed["label"] == "Dashboards").unwrap();
    assert_eq!((&service["role"], &service["person"]), (&"analyst".into(), &Value::Null));
    assert!(!run(&db, &["token", "add", "--label", "neither"]).status.success(), "--user or --role is needed");
    assert!(
        !run(&db, &["token", "add", "--role", "analyst", "--user", "dee@example.org"]).status.success(),
        "not both"
    );
    app.stop().await;
}

on_both_backends!(
    people_are_added_listed_changed_and_disabled_and_their_tokens_follow,
    an_expired_token_is_refused_and_expiry_is_listed,
    bad_input_is_refused_by_code_and_writes_nothing,
);
