//! Phone SDK benchmark for issue #4: capture latency with a durable commit, store open time with 10,000 insights,
//! bytes on disk per insight, and a full first sync of 1,000 offline insights.
//!
//! cargo bench -p grapevine-tests --bench phone
//!
//! Anchors measured in the same run: a bare SQLite INSERT with the same durability (WAL, synchronous=FULL) for
//! capture; for the first sync, the same 1,000 insights as one HTTP POST each (the OpenRosa way) is not run here —
//! see docs/benchmarks.md for the wire comparison. Numbers are medians and percentiles of this run only.

use std::str::FromStr;
use std::time::Instant;

use grapevine_client_sdk::{Channel, Draft, Location, Store};
use grapevine_server::{Application, ServeConfig};
use grapevine_tests::timing::{ms, percentile};
use grapevine_tests::{fresh_database, Backend};

fn draft(n: usize) -> Draft {
    Draft {
        category: "road-safety".into(),
        text: format!("Cars race past the school gate, report {n}"),
        feeling_safe: Some(2),
        location: Location::Gps { lat: 53.01869, lon: -2.16979, accuracy_m: 12.0 },
        channel: Channel::Pupil,
        captured_at: None,
        campaign: None,
    }
}

fn dir_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .filter_map(|entry| entry.metadata().ok())
        .map(|m| m.len())
        .sum()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let root = tempfile::tempdir().unwrap();

    // 1. Capture latency: 1,000 captures, each durable when it returns, beside a bare durable INSERT of a row of the
    // same size into a plain SQLite table (the floor any durable capture sits on).
    let store = Store::open(root.path().join("capture")).await.unwrap();
    let options =
        sqlx::sqlite::SqliteConnectOptions::from_str(&format!("sqlite://{}", root.path().join("anchor.db").display()))
            .unwrap()
            .create_if_missing(true)
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
            .synchronous(sqlx::sqlite::SqliteSynchronous::Full);
    let anchor = sqlx::SqlitePool::connect_with(options).await.unwrap();
    sqlx::query("CREATE TABLE rows (id TEXT PRIMARY KEY, body BLOB NOT NULL)").execute(&anchor).await.unwrap();
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for n in 0..1_000 {
        let started = Instant::now();
        store.capture(draft(n)).await.unwrap();
        ours.push(started.elapsed());
        let started = Instant::now();
        sqlx::query("INSERT INTO rows (id, body) VALUES (?1, ?2)")
            .bind(uuid::Uuid::new_v4().to_string())
            .bind(vec![7_u8; 600])
            .execute(&anchor)
            .await
            .unwrap();
        theirs.push(started.elapsed());
    }
    ours.sort();
    theirs.sort();
    println!("| measure | Grapevine SDK | anchor: bare durable SQLite INSERT | ratio |");
    println!("| --- | --- | --- | --- |");
    for (label, p) in [("p50", 0.5), ("p99", 0.99)] {
        let (a, b) = (percentile(&ours, p), percentile(&theirs, p));
        println!(
            "| capture latency {label}, durable (1,000 captures) | {} | {} | {:.2} |",
            ms(a),
            ms(b),
            a.as_secs_f64() / b.as_secs_f64()
        );
    }

    // 2. Store open time and bytes on disk with 10,000 insights.
    let big = root.path().join("ten-thousand");
    {
        let store = Store::open(&big).await.unwrap();
        for n in 0..10_000 {
            store.capture(draft(n)).await.unwrap();
        }
    }
    let mut opens = Vec::new();
    for _ in 0..11 {
        let started = Instant::now();
        let store = Store::open(&big).await.unwrap();
        opens.push(started.elapsed());
        drop(store);
    }
    opens.sort();
    println!("| store open with 10,000 insights (median of 11) | {} | | |", ms(percentile(&opens, 0.5)));
    // Fold the write-ahead log into the file first, as SQLite does on its own at a checkpoint.
    let file = big.join(grapevine_client_sdk::store::STORE_FILE);
    let raw = sqlx::SqlitePool::connect(&format!("sqlite://{}", file.display())).await.unwrap();
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&raw).await.unwrap();
    raw.close().await;
    println!("| bytes on disk per insight (store directory / 10,000) | {} bytes | | |", dir_bytes(&big) / 10_000);

    // 3. A full first sync of 1,000 offline insights, to a server on this machine.
    let server_dir = tempfile::tempdir().unwrap();
    let (database_url, _) = fresh_database(Backend::Sqlite, &server_dir).await;
    let app = Application::build(ServeConfig::new("127.0.0.1:0".parse().unwrap(), database_url.clone())).await.unwrap();
    let url = format!("ws://{}/sync", app.local_addr().unwrap());
    let server_store = grapevine_server::store::open(&database_url).await.unwrap();
    tokio::spawn(app.run_until_stopped(std::future::pending()));
    let (_, token) = grapevine_server::auth::issue_device(server_store.as_ref(), "bench", None).await.unwrap();
    let phone = Store::open(root.path().join("first-sync")).await.unwrap();
    for n in 0..1_000 {
        phone.capture(draft(n)).await.unwrap();
    }
    let started = Instant::now();
    let report = grapevine_client_sdk::sync(&phone, &url, &token).await.unwrap();
    let elapsed = started.elapsed();
    assert_eq!(report.sent, 1_000);
    println!(
        "| full first sync of 1,000 offline insights (stored, geotagged, counted, decisions back on the phone) | {} ({} bytes, {} round trips) | | |",
        ms(elapsed),
        report.traffic.bytes_sent + report.traffic.bytes_received,
        report.traffic.round_trips
    );
}
