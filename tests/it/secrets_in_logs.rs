//! No secret reaches the log, even at `RUST_LOG=debug`: a real server process is driven with every kind of secret it
//! takes (a device token in the `Authorization` header and in a `/sync?token=` query, an analyst token, an invitation
//! code, the token an enrolment hands out, a PostgreSQL password in the database URL), then its whole log is searched
//! for each. Before the fix, the trace layer logged `uri=/sync?token=<the token>` on every upgrade.

use grapevine_server::store::{self, Role};
use grapevine_tests::points::JOINERS_SQUARE;
use grapevine_tests::{fresh_database, Backend, Phone, ServerProcess};

const SERVER: &str = env!("CARGO_BIN_EXE_grapevine-under-test");

/// A password PostgreSQL is given in the URL (the test server trusts local connections, so it is never checked).
const POSTGRES_PASSWORD: &str = "pg-password-7b1e5d";

async fn a_debug_level_log_holds_no_secret(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let (mut database_url, postgres_database) = fresh_database(backend, &dir).await;
    let _drop_database = grapevine_tests::DropDatabase(postgres_database);
    if backend == Backend::Postgres {
        database_url = database_url.replacen("postgres@", &format!("postgres:{POSTGRES_PASSWORD}@"), 1);
        assert!(database_url.contains(POSTGRES_PASSWORD));
    }
    let store = store::open(&database_url).await.unwrap();
    let device_token = grapevine_server::auth::issue_device(store.as_ref(), "phone", None).await.unwrap().1;
    let analyst_token = grapevine_server::auth::issue_api_token(store.as_ref(), Role::Analyst, "PCC").await.unwrap().1;
    let code = grapevine_server::invitations::new_code();
    let expires_at = time::OffsetDateTime::now_utc() + time::Duration::days(1);
    // The server is pointed at the same invitation secret the code is hashed with here.
    let secret_path = dir.path().join("invitation-secret");
    let secret =
        grapevine_server::invitations::open_secret(Some(&secret_path), &database_url, store.as_ref()).await.unwrap();
    let hash = secret.hash_code(&code);
    store.add_invitation("barbers", &hash, 1, expires_at).await.unwrap();

    let secret_flag = ["--invitation-secret", secret_path.to_str().unwrap()];
    let server =
        ServerProcess::try_start(SERVER, &database_url, &secret_flag, "debug").await.expect("the server starts");

    // A sync with the token in the header (the SDK) and an upgrade with it in the query (the JavaScript client).
    let phone = Phone::with_token(device_token.clone()).await;
    phone.capture_at("asb", JOINERS_SQUARE.1, JOINERS_SQUARE.2, Some(3)).await;
    phone.sync_with(&server.sync_url()).await.unwrap();
    let query_url = format!("{}?token={device_token}", server.sync_url());
    let (mut socket, _) = tokio_tungstenite::connect_async(query_url.as_str()).await.expect("a token in the query");
    socket.close(None).await.unwrap();

    // The analyst API, with the token as a header and (wrongly) in the query.
    let http = reqwest::Client::new();
    let areas = http.get(format!("{}/api/v1/areas", server.http_url())).bearer_auth(&analyst_token).send().await;
    assert_eq!(areas.unwrap().status(), 200);
    let _ = http.get(format!("{}/api/v1/areas?token={analyst_token}", server.http_url())).send().await.unwrap();

    // An enrolment: the code goes in, a new device token comes out.
    let enrolling = Phone::with_token(String::new()).await;
    let enrolment =
        grapevine_client_sdk::enrol(&enrolling.store, &server.http_url(), &code, "new phone").await.unwrap();
    let enrolled_token = enrolment.token().to_owned();

    // The log is read as it arrives: wait for the enrolment's request line, the last thing done.
    server.wait_for_log(|line| line.contains("route=/api/v1/enrol") && line.contains("answered")).await;
    let log = server.log().join("\n");
    assert!(log.contains("route=/sync"), "the debug log records the matched route:\n{log}");
    let normalised_code = grapevine_server::invitations::normalise_code(&code);
    let mut secrets = vec![
        ("device token", device_token.as_str()),
        ("analyst token", analyst_token.as_str()),
        ("invitation code", code.as_str()),
        ("invitation code, normalised", normalised_code.as_str()),
        ("enrolled device token", enrolled_token.as_str()),
    ];
    if backend == Backend::Postgres {
        secrets.push(("PostgreSQL password", POSTGRES_PASSWORD));
    }
    for (what, secret) in secrets {
        assert!(!secret.is_empty());
        let leaks: Vec<&str> = log.lines().filter(|line| line.contains(secret)).collect();
        assert!(leaks.is_empty(), "the {what} is in the log:\n{}", leaks.join("\n"));
    }
}

on_both_backends!(a_debug_level_log_holds_no_secret);
