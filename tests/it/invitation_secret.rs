//! Invitation codes hashed with the server's invitation secret (HMAC-SHA256, a file outside the database): a copy of
//! the database holds no plain SHA-256 of a code; the server and `grapevine invite create` share the secret; a node
//! with another secret, or none, is refused at start rather than answering every code "unknown"; invitations made
//! before the secret keep working until they end.

use std::path::Path;

use crate::command::{grapevine, stdout};
use grapevine_server::app::ServeConfig;
use grapevine_server::invitations::{legacy_hash_code, InvitationSecret};
use grapevine_server::store::{CodeHashes, RedeemError, Revoked};
use grapevine_server::Application;
use grapevine_tests::{fresh_database, Backend, DropDatabase, TestApp};

fn stderr(output: &std::process::Output) -> String {
    assert!(!output.status.success(), "expected a refusal: {}", String::from_utf8_lossy(&output.stdout));
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `grapevine invite create` with the given secret file; returns the code (its last line).
fn invite(database_url: &str, secret: &Path, label: &str) -> String {
    let cards = tempfile::tempdir().unwrap();
    let created = stdout(&grapevine(&[
        "invite",
        "create",
        "--label",
        label,
        "--uses",
        "3",
        "--qr-out",
        cards.path().to_str().unwrap(),
        "--invitation-secret",
        secret.to_str().unwrap(),
        "--database-url",
        database_url,
    ]));
    created.lines().last().unwrap().trim().to_owned()
}

/// What the database holds for each invitation: its code hash and the scheme it was made with.
async fn stored_hashes(database_url: &str) -> Vec<(String, String)> {
    let select = "SELECT code_hash, code_hash_scheme FROM invitations ORDER BY created_at";
    if database_url.starts_with("sqlite") {
        let pool = sqlx::SqlitePool::connect(database_url).await.unwrap();
        sqlx::query_as(select).fetch_all(&pool).await.unwrap()
    } else {
        let pool = sqlx::PgPool::connect(database_url).await.unwrap();
        sqlx::query_as(select).fetch_all(&pool).await.unwrap()
    }
}

/// Runs one statement on the database behind the server's back (what an older version of Grapevine had written).
async fn execute(database_url: &str, statement: &str) {
    if database_url.starts_with("sqlite") {
        let pool = sqlx::SqlitePool::connect(database_url).await.unwrap();
        sqlx::query(statement).execute(&pool).await.unwrap();
    } else {
        let pool = sqlx::PgPool::connect(database_url).await.unwrap();
        sqlx::query(statement).execute(&pool).await.unwrap();
    }
}

async fn enrol(app: &TestApp, code: &str) -> (u16, serde_json::Value) {
    app.post_json("/api/v1/enrol", &serde_json::json!({ "code": code }).to_string()).await
}

fn config(database_url: &str, secret: &Path) -> ServeConfig {
    let mut config = ServeConfig::new("127.0.0.1:0".parse().unwrap(), database_url);
    config.invitation_secret = Some(secret.to_owned());
    config
}

async fn a_code_is_stored_keyed_and_enrols_across_a_restart(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let secret_path = app.invitation_secret_path.clone();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&secret_path).expect("created on first start").permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "only the server's user may read the secret");
    }
    let code = invite(&app.database_url, &secret_path, "Hanley barbers");
    let stored = stored_hashes(&app.database_url).await;
    assert_eq!(stored.len(), 1);
    let (hash, scheme) = &stored[0];
    assert_ne!(hash, &legacy_hash_code(&code), "a copy of the database does not hold the code's SHA-256");
    assert_eq!(hash, &app.invitation_secret().await.hash_code(&code), "it holds the code keyed with the secret");
    assert_eq!(scheme, "hmac-sha256");

    let app = app.restart().await;
    let (status, body) = enrol(&app, &code.to_lowercase()).await;
    assert_eq!(status, 201, "the same secret after a restart: {body}");
}

async fn another_secret_or_none_is_refused_and_does_not_open_old_codes(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let (database_url, database) = fresh_database(backend, &dir).await;
    let _drop = DropDatabase(database);
    let first = dir.path().join("first-secret");
    drop(Application::build(config(&database_url, &first)).await.expect("a first start creates the secret"));
    let code = invite(&database_url, &first, "Pupils");
    let first_secret = InvitationSecret::read(&first).unwrap().unwrap();

    // Another node given another secret: refused at start, naming both fingerprints and the file.
    let other = dir.path().join("other-secret");
    std::fs::write(&other, format!("{}\n", "ab".repeat(32))).unwrap();
    let refused = Application::build(config(&database_url, &other)).await.unwrap_err().to_string();
    assert!(refused.contains("is not the one this database's invitations are made with"), "{refused}");
    assert!(refused.contains(&first_secret.fingerprint()) && refused.contains("other-secret"), "{refused}");
    // And its hash of the code finds nothing: the code only opens with the secret it was made with.
    let store = grapevine_server::store::open(&database_url).await.unwrap();
    let other_secret = InvitationSecret::read(&other).unwrap().unwrap();
    let now = time::OffsetDateTime::now_utc();
    let with_other =
        grapevine_server::auth::redeem_invitation(store.as_ref(), &other_secret, &code, "", None, now).await;
    assert!(matches!(with_other, Err(RedeemError::Unknown)), "{with_other:?}");
    // `invite create` with a given secret file: the command line must refuse as the server does.
    let invite_create_with = |secret: &std::path::Path| {
        grapevine(&[
            "invite",
            "create",
            "--label",
            "x",
            "--invitation-secret",
            secret.to_str().unwrap(),
            "--database-url",
            &database_url,
        ])
    };
    let refused = stderr(&invite_create_with(&other));
    assert!(refused.contains("is not the one this database's invitations are made with"), "{refused}");

    // A node whose secret file is missing: refused, saying how many invitations need it; no new secret is made.
    let missing = dir.path().join("missing").join("invitation-secret");
    let refused = Application::build(config(&database_url, &missing)).await.unwrap_err().to_string();
    assert!(refused.contains("is missing") && refused.contains("1 invitation(s)"), "{refused}");
    assert!(!missing.exists(), "a secret that would answer every code 'unknown' is not made");
    let refused = stderr(&invite_create_with(&missing));
    assert!(refused.contains("is missing"), "{refused}");

    // With the right secret the code still enrols.
    let right = grapevine_server::auth::redeem_invitation(store.as_ref(), &first_secret, &code, "", None, now).await;
    assert!(right.is_ok(), "{right:?}");

    // A new secret is refused while an invitation made with the old one is open, and made once none is.
    let new_secret = |path: &Path| {
        grapevine(&[
            "invite",
            "new-secret",
            "--invitation-secret",
            path.to_str().unwrap(),
            "--database-url",
            &database_url,
        ])
    };
    assert!(stderr(&new_secret(&missing)).contains("still open"));
    let invitation = store.invitations().await.unwrap()[0].id;
    assert_eq!(store.revoke_invitation(invitation).await.unwrap(), Revoked::Now);
    let made = stdout(&new_secret(&missing));
    assert!(made.contains("Copy it to every node"), "{made}");
    drop(Application::build(config(&database_url, &missing)).await.expect("the new secret is the database's"));
    let refused = Application::build(config(&database_url, &first)).await.unwrap_err().to_string();
    assert!(refused.contains("is not the one"), "the old secret is refused from now on: {refused}");
}

async fn invitations_made_before_the_secret_enrol_until_they_end(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let legacy = app.create_invitation("Made last month", 2, time::Duration::days(3)).await;
    // As an older Grapevine stored it: the plain SHA-256 of the code.
    execute(
        &app.database_url,
        &format!("UPDATE invitations SET code_hash = '{}', code_hash_scheme = 'sha256'", legacy_hash_code(&legacy)),
    )
    .await;
    let keyed = app.create_invitation("Made today", 2, time::Duration::days(3)).await;

    let (status, body) = enrol(&app, &legacy).await;
    assert_eq!(status, 201, "a legacy invitation still enrols: {body}");
    let listed = stdout(&grapevine(&["invite", "list", "--database-url", &app.database_url]));
    let line = |label: &str| listed.lines().find(|line| line.ends_with(label)).unwrap_or_else(|| panic!("{listed}"));
    assert!(line("Made last month").contains("legacy"), "{listed}");
    assert!(line("Made today").contains("keyed"), "{listed}");

    // A legacy hash never opens a keyed invitation: someone with a database copy cannot search it with SHA-256.
    let by_sha256 = CodeHashes { keyed: "0".repeat(64), legacy: legacy_hash_code(&keyed) };
    let now = time::OffsetDateTime::now_utc();
    let found = app.store.redeem_invitation(&by_sha256, "", "not-a-token-hash", None, now).await;
    assert!(matches!(found, Err(RedeemError::Unknown)), "{found:?}");
    assert_eq!(enrol(&app, &keyed).await.0, 201);
}

on_both_backends!(
    a_code_is_stored_keyed_and_enrols_across_a_restart,
    another_secret_or_none_is_refused_and_does_not_open_old_codes,
    invitations_made_before_the_secret_enrol_until_they_end,
);
