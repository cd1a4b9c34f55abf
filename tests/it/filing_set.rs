//! The filing set is configuration (`grapevine serve --filing-set`, `GRAPEVINE_FILING_SET`): its newest generation
//! files insights and is the list phones pick from; a set with no boundaries is refused at start, saying so.

use crate::command::GRAPEVINE;
use grapevine_server::app::ServeConfig;
use grapevine_server::Application;
use grapevine_sync_proto::automerge::AutoCommit;
use grapevine_sync_proto::campaign::{campaign_document, DEFAULT_CAMPAIGN_SLUG};
use grapevine_sync_proto::campaign_doc::read_campaign;
use grapevine_tests::{fresh_database, Backend, DropDatabase};

fn config(database_url: &str, dir: &std::path::Path, filing_set: &str) -> ServeConfig {
    let mut config = ServeConfig::new("127.0.0.1:0".parse().unwrap(), database_url);
    config.invitation_secret = Some(dir.join("invitation-secret"));
    config.filing_set = filing_set.to_owned();
    config
}

async fn serve_files_by_the_configured_set_and_refuses_one_without_boundaries(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let (database_url, database) = fresh_database(backend, &dir).await;
    let _drop = DropDatabase(database);

    let refused = Application::build(config(&database_url, dir.path(), "neighbourhoods")).await.unwrap_err();
    assert!(
        refused.to_string().contains("the filing set 'neighbourhoods' has no boundaries"),
        "refused at start, saying why: {refused}"
    );
    // Through the binary too: the flag is read, and the server exits at once with the reason.
    let serve = tokio::process::Command::new(GRAPEVINE)
        .args(["serve", "--listen", "127.0.0.1:0", "--filing-set", "nowhere", "--database-url", &database_url])
        .env("GRAPEVINE_INVITATION_SECRET", dir.path().join("invitation-secret"))
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(std::time::Duration::from_secs(30), serve).await.expect("exits").unwrap();
    assert!(!output.status.success());
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(said.contains("the filing set 'nowhere' has no boundaries"), "{said}");

    let store = grapevine_server::store::open(&database_url).await.unwrap();
    crate::campaign::add_one_big_neighbourhood(store.as_ref(), "neighbourhoods", "a test file").await;
    let listed = std::process::Command::new(GRAPEVINE)
        .args(["boundaries", "list", "--filing-set", "neighbourhoods", "--database-url", &database_url])
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(listed.lines().any(|line| line.starts_with("neighbourhoods (filing)")), "{listed}");
    assert!(listed.lines().any(|line| line.starts_with("wards ")), "the bundled wards are there, not filing: {listed}");

    let app = Application::build(config(&database_url, dir.path(), "neighbourhoods")).await.unwrap();
    let sync_url = format!("ws://{}/sync", app.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async move {
        let _ = stopped.await;
    }));
    let (_, token) = grapevine_server::auth::issue_device(store.as_ref(), "Leek library", None).await.unwrap();
    let mut batch = vec![(campaign_document(DEFAULT_CAMPAIGN_SLUG).unwrap(), AutoCommit::new())];
    grapevine_client_sdk::sync_documents(&sync_url, &token, "phone", &mut batch).await.unwrap();
    let sheet = read_campaign(&batch[0].1).expect("the campaign arrived");
    assert_eq!(sheet.boundaries, "neighbourhoods 1", "phones are told the configured set");
    assert_eq!(sheet.areas.iter().map(|area| area.code.as_str()).collect::<Vec<_>>(), ["N1"]);
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}

on_both_backends!(serve_files_by_the_configured_set_and_refuses_one_without_boundaries);
