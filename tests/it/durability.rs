//! Nothing acknowledged is ever lost: real server processes killed with SIGKILL mid-sync, stopped with SIGTERM, backed
//! up and restored, and refused on a database newer than themselves.

use std::collections::HashSet;

use grapevine_client_sdk::Status;
use grapevine_server::store::{self, DayRange};
use grapevine_tests::points::{ABBEY_HULTON, JOINERS_SQUARE};
use grapevine_tests::{fresh_database, Backend, Phone, ServerProcess};
use rand::{Rng, SeedableRng};

const SERVER: &str = env!("CARGO_BIN_EXE_grapevine-under-test");

fn acknowledged(status: &Status) -> bool {
    !matches!(status, Status::Captured)
}

/// Counted insights in the roll-up, over all time and every area.
async fn counted(database_url: &str) -> i64 {
    let store = store::open(database_url).await.unwrap();
    store.rollup(1, DayRange::default(), None, false, false).await.unwrap().into_iter().map(|rollup| rollup.all.n).sum()
}

async fn phones(database_url: &str, n_phones: usize) -> Vec<Phone> {
    let store = store::open(database_url).await.unwrap();
    let mut phones = Vec::new();
    for i in 0..n_phones {
        let token = grapevine_server::auth::issue_device(store.as_ref(), &format!("phone {i}"), None).await.unwrap().1;
        phones.push(Phone::with_token(token).await);
    }
    phones
}

async fn sigkill_at_random_moments_loses_nothing_acknowledged(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let (database_url, postgres_database) = fresh_database(backend, &dir).await;
    let _drop_database = grapevine_tests::DropDatabase(postgres_database);
    let phones = phones(&database_url, 4).await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(20_261_122);
    let mut acknowledged_ids = HashSet::new();
    let mut n_captured = 0;
    for _round in 0..8 {
        let mut server = ServerProcess::start(SERVER, &database_url).await;
        for (i, phone) in phones.iter().enumerate() {
            let (_, lat, lon) = if i % 2 == 0 { JOINERS_SQUARE } else { ABBEY_HULTON };
            for _ in 0..3 {
                phone.capture_at("asb", lat, lon, Some(3)).await;
                n_captured += 1;
            }
        }
        let url = server.sync_url();
        // The first phone's sync completes every round, so there is always something acknowledged to lose.
        phones[0].sync_with(&url).await.unwrap();
        let syncs: Vec<_> = phones[1..]
            .iter()
            .map(|phone| {
                let (store, token, url) = (phone.store.clone(), phone.token.clone(), url.clone());
                tokio::spawn(async move { grapevine_client_sdk::sync(&store, &url, &token).await })
            })
            .collect();
        tokio::time::sleep(std::time::Duration::from_millis(rng.random_range(0..800))).await;
        server.kill().await;
        for sync in syncs {
            // Some syncs finish before the kill, some are cut off; either is fine, losing an acknowledgement is not.
            let _ = sync.await.unwrap();
        }
        for phone in &phones {
            for insight in phone.store.list().await.unwrap() {
                if acknowledged(&insight.status) {
                    acknowledged_ids.insert(insight.id);
                }
            }
        }
        // What was acknowledged is on disk even though the process died without a word.
        let store = store::open(&database_url).await.unwrap();
        for id in &acknowledged_ids {
            assert!(store.insight(*id).await.unwrap().is_some(), "acknowledged insight {id} was lost");
        }
    }

    let server = ServerProcess::start(SERVER, &database_url).await;
    for phone in &phones {
        phone.sync_with(&server.sync_url()).await.unwrap();
        assert!(phone.store.list().await.unwrap().iter().all(|insight| acknowledged(&insight.status)));
    }
    assert!(acknowledged_ids.len() >= 8 * 3, "every round acknowledged the first phone's insights at least");
    assert_eq!(counted(&database_url).await, n_captured, "every insight counted exactly once");
    drop(server);
}

async fn sigterm_drains_connections_and_loses_nothing(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let (database_url, postgres_database) = fresh_database(backend, &dir).await;
    let _drop_database = grapevine_tests::DropDatabase(postgres_database);
    let phones = phones(&database_url, 3).await;
    let mut server = ServerProcess::start(SERVER, &database_url).await;
    for phone in &phones {
        for _ in 0..5 {
            phone.capture_at("drugs", JOINERS_SQUARE.1, JOINERS_SQUARE.2, None).await;
        }
    }
    let url = server.sync_url();
    let syncs: Vec<_> = phones
        .iter()
        .map(|phone| {
            let (store, token, url) = (phone.store.clone(), phone.token.clone(), url.clone());
            tokio::spawn(async move { grapevine_client_sdk::sync(&store, &url, &token).await })
        })
        .collect();
    let status = server.terminate().await;
    assert!(status.success(), "graceful shutdown exits 0, got {status}");
    let mut n_acknowledged = 0;
    for sync in syncs {
        let _ = sync.await.unwrap();
    }
    let store = store::open(&database_url).await.unwrap();
    for phone in &phones {
        for insight in phone.store.list().await.unwrap() {
            if acknowledged(&insight.status) {
                n_acknowledged += 1;
                assert!(store.insight(insight.id).await.unwrap().is_some());
            }
        }
    }
    // Stored but not yet acknowledged is allowed (the reply may not have reached the phone before the close); the
    // phone offers it again and it is counted once.
    assert!(counted(&database_url).await >= n_acknowledged, "acknowledged means stored and counted");
    let server = ServerProcess::start(SERVER, &database_url).await;
    for phone in &phones {
        phone.sync_with(&server.sync_url()).await.unwrap();
    }
    assert_eq!(counted(&database_url).await, 3 * 5, "every insight counted exactly once");
    drop(server);
}

async fn a_database_newer_than_the_server_is_refused(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let (database_url, postgres_database) = fresh_database(backend, &dir).await;
    let _drop_database = grapevine_tests::DropDatabase(postgres_database);
    let migrate =
        std::process::Command::new(SERVER).args(["migrate", "--database-url", &database_url]).output().unwrap();
    assert!(migrate.status.success(), "{}", String::from_utf8_lossy(&migrate.stderr));
    // The newest migration this build carries, by its number.
    let backend_dir = if backend == Backend::Postgres { "postgres" } else { "sqlite" };
    let migrations = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../server/migrations").join(backend_dir);
    let newest = std::fs::read_dir(migrations)
        .unwrap()
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.split('_').next()?.parse::<u32>().ok())
        .max()
        .unwrap();
    let stdout = String::from_utf8_lossy(&migrate.stdout);
    assert!(stdout.contains(&format!("schema version {newest}")), "{stdout}");

    // A later grapevine migrated this database further.
    let insert = "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
                  VALUES (9999, 'from the future', TRUE, X'00', 0)";
    let insert = if backend == Backend::Postgres { insert.replace("X'00'", "'\\x00'::bytea") } else { insert.into() };
    match backend {
        Backend::Sqlite => {
            use sqlx::Connection;
            let mut connection = sqlx::SqliteConnection::connect(&database_url).await.unwrap();
            sqlx::query(&insert).execute(&mut connection).await.unwrap();
        }
        Backend::Postgres => {
            use sqlx::Connection;
            let mut connection = sqlx::PgConnection::connect(&database_url).await.unwrap();
            sqlx::query(&insert).execute(&mut connection).await.unwrap();
        }
    }
    for command in [vec!["migrate"], vec!["serve", "--listen", "127.0.0.1:0"]] {
        let output =
            std::process::Command::new(SERVER).args(&command).args(["--database-url", &database_url]).output().unwrap();
        assert!(!output.status.success(), "{command:?} must refuse a newer database");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("newer than this grapevine knows"), "{command:?}: {stderr}");
    }
}

on_both_backends!(
    sigkill_at_random_moments_loses_nothing_acknowledged,
    sigterm_drains_connections_and_loses_nothing,
    a_database_newer_than_the_server_is_refused,
);

/// `grapevine backup` while the server runs, `grapevine restore` after it stops: the database is as it was at the
/// backup, and the server serves it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_backup_and_restore_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let (database_url, _) = fresh_database(Backend::Sqlite, &dir).await;
    let phones = phones(&database_url, 1).await;
    let phone = &phones[0];
    let mut server = ServerProcess::start(SERVER, &database_url).await;
    for _ in 0..3 {
        phone.capture_at("fraud-scams", ABBEY_HULTON.1, ABBEY_HULTON.2, Some(4)).await;
    }
    phone.sync_with(&server.sync_url()).await.unwrap();

    let backup = dir.path().join("backup.db");
    let output = std::process::Command::new(SERVER)
        .args(["backup", "--to", backup.to_str().unwrap(), "--database-url", &database_url])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let again = std::process::Command::new(SERVER)
        .args(["backup", "--to", backup.to_str().unwrap(), "--database-url", &database_url])
        .output()
        .unwrap();
    assert!(!again.status.success(), "a backup never overwrites a file");

    // After the backup, more arrives; then disaster, and a restore.
    phone.capture_at("fraud-scams", ABBEY_HULTON.1, ABBEY_HULTON.2, Some(4)).await;
    phone.sync_with(&server.sync_url()).await.unwrap();
    assert_eq!(counted(&database_url).await, 4);
    assert!(server.terminate().await.success());

    let not_a_backup = dir.path().join("notes.txt");
    std::fs::write(&not_a_backup, "not a database").unwrap();
    let refused = std::process::Command::new(SERVER)
        .args(["restore", "--from", not_a_backup.to_str().unwrap(), "--database-url", &database_url])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert_eq!(counted(&database_url).await, 4, "a bad backup leaves the database as it was");

    let restored = std::process::Command::new(SERVER)
        .args(["restore", "--from", backup.to_str().unwrap(), "--database-url", &database_url])
        .output()
        .unwrap();
    assert!(restored.status.success(), "{}", String::from_utf8_lossy(&restored.stderr));
    assert_eq!(counted(&database_url).await, 3, "the database is as it was at the backup");

    // The phone still holds the fourth insight; syncing to the restored server brings it back.
    let server = ServerProcess::start(SERVER, &database_url).await;
    // The restored database is a new lineage, so the phone offers everything again and the lost insight returns.
    let report = phone.sync_with(&server.sync_url()).await.unwrap();
    assert_eq!(report.sent, 0, "the phone had every insight acknowledged already: {report:?}");
    assert_eq!(counted(&database_url).await, 4);
    let again = phone.sync_with(&server.sync_url()).await.unwrap();
    assert_eq!((again.sent, again.updated.len()), (0, 0));
    assert_eq!(counted(&database_url).await, 4);
}
