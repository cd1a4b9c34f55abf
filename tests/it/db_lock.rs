//! A server holds its SQLite database: `restore`, `migrate` and a second `serve` on the same file are refused while it
//! runs, naming it; `backup` and the import commands run beside it; a server killed with SIGKILL leaves no lock in
//! the way. (PostgreSQL takes no lock: several nodes over one PostgreSQL is the supported way to run more than one
//! server, and `it/nodes.rs` runs two.)

use grapevine_server::store::{self, DayRange};
use grapevine_tests::points::ABBEY_HULTON;
use grapevine_tests::{fresh_database, Backend, Phone, ServerProcess};

const SERVER: &str = env!("CARGO_BIN_EXE_grapevine-under-test");

/// Counted insights in the roll-up, over all time and every area.
async fn counted(database_url: &str) -> i64 {
    let store = store::open(database_url).await.unwrap();
    store.rollup(1, DayRange::default(), None, false, false).await.unwrap().into_iter().map(|rollup| rollup.all.n).sum()
}

fn grapevine(args: &[&str]) -> std::process::Output {
    std::process::Command::new(SERVER).args(args).env("RUST_LOG", "warn").output().expect("grapevine runs")
}

/// Before the lock, a restore under a running server exited 0 and deleted the `-wal` file the server was still
/// writing: an insight acknowledged as filed was gone after the next restart. Now the restore is refused, naming the
/// server, and nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_and_a_second_server_are_refused_while_a_server_holds_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let (database_url, _) = fresh_database(Backend::Sqlite, &dir).await;
    let token = {
        let store = store::open(&database_url).await.unwrap();
        grapevine_server::auth::issue_device(store.as_ref(), "phone", None).await.unwrap().1
    };
    let phone = Phone::with_token(token).await;
    let mut server = ServerProcess::start(SERVER, &database_url).await;
    let pid = server.pid().expect("the server runs").to_string();
    for _ in 0..2 {
        phone.capture_at("fraud-scams", ABBEY_HULTON.1, ABBEY_HULTON.2, Some(4)).await;
    }
    phone.sync_with(&server.sync_url()).await.unwrap();

    // A backup is meant to run beside the server.
    let backup = dir.path().join("backup.db");
    let backed_up = grapevine(&["backup", "--to", backup.to_str().unwrap(), "--database-url", &database_url]);
    assert!(backed_up.status.success(), "{}", String::from_utf8_lossy(&backed_up.stderr));

    // One more insight, acknowledged as filed by the running server.
    let third = phone.capture_at("fraud-scams", ABBEY_HULTON.1, ABBEY_HULTON.2, Some(4)).await;
    phone.sync_with(&server.sync_url()).await.unwrap();
    let status = phone.store.get(third).await.unwrap().status;
    assert!(matches!(status, grapevine_client_sdk::Status::Filed { .. }), "{status:?}");
    assert_eq!(counted(&database_url).await, 3);

    let restore = grapevine(&["restore", "--from", backup.to_str().unwrap(), "--database-url", &database_url]);
    let message = String::from_utf8_lossy(&restore.stderr);
    assert!(!restore.status.success(), "a restore under a running server must be refused: {message}");
    assert!(message.contains(&format!("pid {pid}")), "the refusal names the server's process: {message}");
    assert!(message.contains(&server.addr.to_string()), "the refusal names where the server listens: {message}");
    assert!(message.contains("stop it before restoring"), "{message}");

    let migrate = grapevine(&["migrate", "--database-url", &database_url]);
    assert!(!migrate.status.success(), "a migration under a running server must be refused");
    assert!(String::from_utf8_lossy(&migrate.stderr).contains(&format!("pid {pid}")));

    let second = ServerProcess::try_start(SERVER, &database_url, &[], "info,sqlx=warn").await;
    let Err(second_log) = second else { panic!("a second server on the same SQLite file must not start") };
    assert!(second_log.contains(&format!("pid {pid}")), "the refusal names the first server: {second_log}");
    assert!(second_log.contains("grapevine serve"), "{second_log}");

    // The running server is unharmed: it still files, and after a crash and a restart everything acknowledged is
    // there (before the lock, the restart found one insight fewer).
    phone.capture_at("fraud-scams", ABBEY_HULTON.1, ABBEY_HULTON.2, Some(4)).await;
    phone.sync_with(&server.sync_url()).await.unwrap();
    assert!(!server.has_exited());
    server.kill().await;

    // The SIGKILLed server's lock went with it: a new server starts, and it names itself in the lock file.
    let restarted = ServerProcess::start(SERVER, &database_url).await;
    assert_eq!(counted(&database_url).await, 4, "nothing acknowledged was lost");
    let lock_file = dir.path().join("grapevine.db.lock");
    let holder = std::fs::read_to_string(&lock_file).unwrap();
    assert!(holder.contains(&format!("pid={}", restarted.pid().unwrap())), "{holder}");
    assert!(holder.contains(&format!("listen={}", restarted.addr)), "{holder}");
    let report = phone.sync_with(&restarted.sync_url()).await.unwrap();
    assert_eq!(report.sent, 0, "the phone has nothing the server lacks: {report:?}");
}
