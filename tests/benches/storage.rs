//! Storage benchmark for issue #5: fill a database to N insights through the store's own write path, beside a plain
//! batched INSERT of the same rows (the anchor); then, at N stored, measure end-to-end ingest from 200 concurrent
//! devices, roll-up query latency over HTTP, storage bytes per insight and (PostgreSQL) cross-node delivery.
//!
//! cargo bench -p grapevine-tests --bench storage -- --backend sqlite --insights 10000,1000000
//!
//! With several sizes, the database is filled to each in turn and measured there.
//!
//! To measure the re-tag alone on a database kept between runs (filling a million takes a quarter of an hour):
//!
//! cargo bench -p grapevine-tests --bench storage -- --backend postgres --insights 1000000 \
//!     --database postgres://postgres@127.0.0.1:5432/grapevine_retag --only retag
//!
//! A kept database is filled only up to the size asked, is left in place, and loses the generation the re-tag
//! added, so the next run starts where this one did.
//!
//! It prints Markdown rows for docs/benchmarks.md. Numbers are medians and percentiles of this run only.

use std::time::{Duration, Instant};

use grapevine_client_sdk::{Draft, Store as PhoneStore, SyncConnection};
use grapevine_server::geo::atlas::{stored_area, tag_in, Atlas, Whereabouts, DEFAULT_SET};
use grapevine_server::ingest::decide;
use grapevine_server::store::{self, DocumentBytes, DocumentWrite, InsightRow, Role};
use grapevine_server::{Application, ServeConfig};
use grapevine_sync_proto::automerge::AutoCommit;
use grapevine_sync_proto::document::{write_insight, write_server_record};
use grapevine_sync_proto::DocumentId;
use grapevine_tests::synthetic::{home, insight_near, random_insight};
use grapevine_tests::timing::{ms, percentile};
use grapevine_tests::{fresh_database, Backend, ServerProcess};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const BATCH: usize = 1_000;
const N_DEVICES: usize = 200;
const INSIGHTS_PER_DEVICE: usize = 10;
const N_QUERIES: usize = 200;

struct Args {
    backend: Backend,
    sizes: Vec<usize>,
    /// A database to fill (up to the size) and keep, instead of a fresh one dropped at the end.
    database: Option<String>,
    /// Only the fill and the re-tag.
    retag_only: bool,
}

fn args() -> Args {
    let mut backend = Backend::Sqlite;
    let mut sizes = vec![10_000];
    let (mut database, mut retag_only) = (None, false);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--backend" => {
                backend = match args.next().as_deref() {
                    Some("postgres") => Backend::Postgres,
                    _ => Backend::Sqlite,
                }
            }
            "--insights" => {
                sizes = args
                    .next()
                    .expect("--insights N[,N…]")
                    .split(',')
                    .map(|n| n.parse().expect("--insights takes whole numbers"))
                    .collect();
            }
            "--database" => database = Some(args.next().expect("--database URL")),
            "--only" => retag_only = args.next().as_deref() == Some("retag"),
            _ => {} // cargo bench passes --bench
        }
    }
    Args { backend, sizes, database, retag_only }
}

/// Collectors in the fill: each reports around a home point, as a barber does around the shop.
const N_COLLECTORS: usize = 2_000;

/// The insights a kept database already holds.
async fn stored_insights(raw: &RawPool) -> usize {
    let n: i64 = match raw {
        RawPool::Sqlite(pool) => sqlx::query_scalar("SELECT COUNT(*) FROM insights").fetch_one(pool).await.unwrap(),
        RawPool::Postgres(pool) => sqlx::query_scalar("SELECT COUNT(*) FROM insights").fetch_one(pool).await.unwrap(),
    };
    usize::try_from(n).unwrap()
}

/// Takes the generation a re-tag added out of a kept database, so the next run re-tags the same insights again.
/// Benchmark housekeeping, not a product feature: a boundary generation is history and is never removed.
async fn forget_generation(raw: &RawPool, generation_id: i64) {
    let rows = [
        format!("DELETE FROM insight_areas WHERE generation_id = {generation_id}"),
        format!("DELETE FROM rollups WHERE generation_id = {generation_id}"),
    ];
    // On PostgreSQL the generation's rows are partitions of their own (migration 0009).
    let partitions = [format!("DROP TABLE insight_areas_g{generation_id}, rollups_g{generation_id}")];
    let generation = [
        format!("DELETE FROM boundary_areas WHERE generation_id = {generation_id}"),
        format!("DELETE FROM boundary_generations WHERE id = {generation_id}"),
    ];
    match raw {
        RawPool::Sqlite(pool) => {
            for statement in rows.iter().chain(&generation) {
                sqlx::query(statement).execute(pool).await.unwrap();
            }
        }
        RawPool::Postgres(pool) => {
            for statement in partitions.iter().chain(&generation) {
                sqlx::query(statement).execute(pool).await.unwrap();
            }
        }
    }
}

#[allow(clippy::cast_precision_loss)]
fn per_second(n: usize, elapsed: Duration) -> f64 {
    n as f64 / elapsed.as_secs_f64()
}

async fn raw_insert(pool: &RawPool, rows: &[InsightRow]) -> Duration {
    let started = Instant::now();
    match pool {
        RawPool::Sqlite(pool) => {
            let mut builder = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                "INSERT INTO bench_raw_insights (id, captured_at, category, text, feeling_safe, channel, lat, lon, status, area_code) ",
            );
            builder.push_values(rows, |mut row, insight| {
                let (status, area_code, _, _) = outcome_columns(insight);
                row.push_bind(insight.id.to_string())
                    .push_bind(insight.captured_at.map(grapevine_sync_proto::document::format_time))
                    .push_bind(insight.category.clone())
                    .push_bind(insight.text.clone())
                    .push_bind(insight.feeling_safe.map(i64::from))
                    .push_bind(insight.channel.clone())
                    .push_bind(insight.gps.map(|g| g.0))
                    .push_bind(insight.gps.map(|g| g.1))
                    .push_bind(status)
                    .push_bind(area_code);
            });
            builder.build().execute(pool).await.unwrap();
        }
        RawPool::Postgres(pool) => {
            let mut builder = sqlx::QueryBuilder::<sqlx::Postgres>::new(
                "INSERT INTO bench_raw_insights (id, captured_at, category, text, feeling_safe, channel, lat, lon, status, area_code) ",
            );
            builder.push_values(rows, |mut row, insight| {
                let (status, area_code, _, _) = outcome_columns(insight);
                row.push_bind(insight.id)
                    .push_bind(insight.captured_at)
                    .push_bind(insight.category.clone())
                    .push_bind(insight.text.clone())
                    .push_bind(insight.feeling_safe.map(i16::from))
                    .push_bind(insight.channel.clone())
                    .push_bind(insight.gps.map(|g| g.0))
                    .push_bind(insight.gps.map(|g| g.1))
                    .push_bind(status)
                    .push_bind(area_code);
            });
            builder.build().execute(pool).await.unwrap();
        }
    }
    started.elapsed()
}

fn outcome_columns(row: &InsightRow) -> (String, Option<String>, (), ()) {
    match &row.outcome {
        grapevine_server::store::Outcome::Filed { area_code } => ("filed".into(), Some(area_code.clone()), (), ()),
        grapevine_server::store::Outcome::OutsideCoverage => ("outside_coverage".into(), None, (), ()),
        grapevine_server::store::Outcome::Rejected { .. } => ("rejected".into(), None, (), ()),
        grapevine_server::store::Outcome::Withdrawn => ("withdrawn".into(), None, (), ()),
    }
}

enum RawPool {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

async fn raw_pool(backend: Backend, database_url: &str) -> RawPool {
    match backend {
        Backend::Sqlite => {
            use std::str::FromStr;
            let options = sqlx::sqlite::SqliteConnectOptions::from_str(database_url)
                .unwrap()
                .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                .synchronous(sqlx::sqlite::SqliteSynchronous::Full);
            let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
            sqlx::query(
                "CREATE TABLE IF NOT EXISTS bench_raw_insights (id TEXT PRIMARY KEY, captured_at TEXT, category TEXT, text TEXT,
                 feeling_safe INTEGER, channel TEXT, lat REAL, lon REAL, status TEXT, area_code TEXT)",
            )
            .execute(&pool)
            .await
            .unwrap();
            RawPool::Sqlite(pool)
        }
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(database_url).await.unwrap();
            sqlx::query(
                "CREATE TABLE IF NOT EXISTS bench_raw_insights (id UUID PRIMARY KEY, captured_at TIMESTAMPTZ, category TEXT, text TEXT,
                 feeling_safe SMALLINT, channel TEXT, lat DOUBLE PRECISION, lon DOUBLE PRECISION, status TEXT,
                 area_code TEXT)",
            )
            .execute(&pool)
            .await
            .unwrap();
            RawPool::Postgres(pool)
        }
    }
}

/// What the database's own housekeeping does after a bulk load: PostgreSQL's autovacuum (here `VACUUM ANALYZE`),
/// SQLite's `ANALYZE`.
async fn housekeeping(raw: &RawPool) {
    match raw {
        RawPool::Sqlite(pool) => {
            sqlx::query("ANALYZE").execute(pool).await.unwrap();
        }
        RawPool::Postgres(pool) => {
            sqlx::query("VACUUM ANALYZE").execute(pool).await.unwrap();
        }
    }
}

/// PostgreSQL on the benchmark machine runs with `autovacuum = off`; a deployment runs it, eager on the roll-ups
/// (their partitions are made with a 2 % scale factor). Without it, every rewritten roll-up row stays behind as a dead
/// tuple for the whole fill. So the fill vacuums the tables it rewrites every 100,000 insights, as autovacuum would.
async fn autovacuum_stand_in(raw: &RawPool) {
    if let RawPool::Postgres(pool) = raw {
        sqlx::query("VACUUM rollups, documents").execute(pool).await.unwrap();
    }
}

async fn storage_bytes(raw: &RawPool) -> (u64, u64) {
    match raw {
        RawPool::Sqlite(pool) => {
            sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(pool).await.unwrap();
            // The pages in use (a kept database may hold free pages a forgotten generation left).
            let pages: i64 = sqlx::query_scalar(
                "SELECT (SELECT page_count FROM pragma_page_count()) - (SELECT freelist_count FROM pragma_freelist_count())",
            )
            .fetch_one(pool)
            .await
            .unwrap();
            let page_size: i64 = sqlx::query_scalar("PRAGMA page_size").fetch_one(pool).await.unwrap();
            let db = u64::try_from(pages * page_size).unwrap();
            // The anchor table shares the file; take its pages out.
            let raw_bytes: i64 = sqlx::query_scalar("SELECT SUM(pgsize) FROM dbstat WHERE name LIKE '%bench_raw%'")
                .fetch_one(pool)
                .await
                .unwrap_or(0);
            let chunks: i64 =
                sqlx::query_scalar("SELECT SUM(length(bytes)) FROM document_chunks").fetch_one(pool).await.unwrap();
            (db - u64::try_from(raw_bytes).unwrap_or(0), u64::try_from(chunks).unwrap())
        }
        RawPool::Postgres(pool) => {
            let total: i64 = sqlx::query_scalar(
                "SELECT pg_database_size(current_database()) - pg_total_relation_size('bench_raw_insights')",
            )
            .fetch_one(pool)
            .await
            .unwrap();
            let chunks: i64 = sqlx::query_scalar("SELECT SUM(length(bytes))::BIGINT FROM document_chunks")
                .fetch_one(pool)
                .await
                .unwrap();
            (u64::try_from(total).unwrap(), u64::try_from(chunks).unwrap())
        }
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let Args { backend, sizes, database, retag_only } = args();
    // The store logs the phases of a re-tag; RUST_LOG overrides what is shown.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("grapevine_server::store=info"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let label = match backend {
        Backend::Sqlite => "SQLite",
        Backend::Postgres => "PostgreSQL",
    };
    let dir = tempfile::tempdir().unwrap();
    let kept = database.is_some();
    let (database_url, postgres_database) = match database {
        Some(url) => {
            if backend == Backend::Postgres {
                grapevine_tests::create_postgres_database_if_missing(&url).await;
            }
            (url, None)
        }
        None => fresh_database(backend, &dir).await,
    };
    let mut rng_for_homes = StdRng::seed_from_u64(6);
    let store = store::open(&database_url).await.unwrap();
    let atlas = Atlas::load(store.as_ref(), DEFAULT_SET).await.unwrap();
    let raw = raw_pool(backend, &database_url).await;
    let mut filled = stored_insights(&raw).await;
    let n_collectors = if filled < sizes.iter().copied().max().unwrap_or(0) { N_COLLECTORS } else { 0 };
    let mut collectors = Vec::with_capacity(n_collectors);
    for i in 0..n_collectors {
        let (device, _) =
            grapevine_server::auth::issue_device(store.as_ref(), &format!("collector {i}"), None).await.unwrap();
        let point = home(&mut rng_for_homes);
        collectors.push((device, point));
    }
    // A kept database continues its sequence instead of repeating the insights it already holds.
    let mut rng = StdRng::seed_from_u64(5 + u64::try_from(filled).unwrap());
    let mut n_ingested = 0;
    let (mut store_time, mut raw_time) = (Duration::ZERO, Duration::ZERO);
    for n_insights in sizes {
        // 1. Fill: the store's write path (document + row + roll-ups, one transaction per batch) beside a plain INSERT.
        while filled < n_insights {
            let n_batch = BATCH.min(n_insights - filled);
            let mut writes = Vec::with_capacity(n_batch);
            for _ in 0..n_batch {
                let (device, point) = &collectors[rng.random_range(0..N_COLLECTORS)];
                let insight = insight_near(&mut rng, *point);
                let doc_id = DocumentId::for_insight(insight.id);
                let mut doc = AutoCommit::new();
                write_insight(&mut doc, &insight).unwrap();
                let decision = decide(&doc, doc_id, &atlas, None, time::OffsetDateTime::now_utc());
                write_server_record(&mut doc, &decision.record).unwrap();
                writes.push(DocumentWrite {
                    doc_id,
                    collector_id: device.collector_id,
                    device_id: device.device_id,
                    writer: uuid::Uuid::nil(),
                    bytes: DocumentBytes::Snapshot(doc.save()),
                    expected_version: None,
                    insight: decision.row,
                });
            }
            let rows: Vec<InsightRow> = writes.iter().map(|write| write.insight.clone()).collect();
            raw_time += raw_insert(&raw, &rows).await;
            let started = Instant::now();
            store.save_documents(writes).await.unwrap();
            store_time += started.elapsed();
            filled += n_batch;
            if filled % 100_000 == 0 {
                eprintln!("{label}: {filled} stored");
                autovacuum_stand_in(&raw).await;
            }
        }
        if retag_only {
            continue;
        }
        let fill_rate = per_second(filled, store_time);
        let raw_rate = per_second(filled, raw_time);

        // 2. End-to-end ingest at N stored: 200 devices, each syncing 10 offline insights at once.
        let app =
            Application::build(ServeConfig::new("127.0.0.1:0".parse().unwrap(), database_url.clone())).await.unwrap();
        let addr = app.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(app.run_until_stopped(async move {
            let _ = stopped.await;
        }));
        let sync_url = format!("ws://{addr}/sync");
        let mut phones = Vec::new();
        for i in 0..N_DEVICES {
            let (_, token) =
                grapevine_server::auth::issue_device(store.as_ref(), &format!("device {i}"), None).await.unwrap();
            let phone = PhoneStore::open(dir.path().join(format!("phone-{n_insights}-{i}"))).await.unwrap();
            for _ in 0..INSIGHTS_PER_DEVICE {
                let insight = random_insight(&mut rng);
                let draft = Draft {
                    category: insight.category,
                    text: insight.text,
                    feeling_safe: insight.feeling_safe,
                    location: insight.location,
                    channel: insight.channel,
                    captured_at: Some(insight.captured_at),
                    campaign: None,
                };
                phone.capture(draft).await.unwrap();
            }
            phones.push((phone, token));
        }
        let started = Instant::now();
        let syncs: Vec<_> = phones
            .into_iter()
            .map(|(phone, token)| {
                let url = sync_url.clone();
                tokio::spawn(async move { grapevine_client_sdk::sync(&phone, &url, &token).await.unwrap().sent })
            })
            .collect();
        let mut n_sent = 0;
        for sync in syncs {
            n_sent += sync.await.unwrap();
        }
        let ingest_elapsed = started.elapsed();
        assert_eq!(n_sent, N_DEVICES * INSIGHTS_PER_DEVICE);
        let ingest_rate = per_second(n_sent, ingest_elapsed);

        // 3. Roll-up latency over HTTP: every area for a 12-month period, one area's detail, and a ragged period.
        let (_, analyst) =
            grapevine_server::auth::issue_api_token(store.as_ref(), Role::Analyst, "bench").await.unwrap();
        let http = reqwest::Client::new();
        let queries = [
            ("all areas, 12 whole months", "/api/v1/areas?from=2025-11-01&to=2026-11-01".to_owned()),
            (
                "one area by category, 12 whole months",
                "/api/v1/areas/E05008737?from=2025-11-01&to=2026-11-01".to_owned(),
            ),
            ("all areas, 2025-11-22 to 2026-11-22", "/api/v1/areas?from=2025-11-22&to=2026-11-22".to_owned()),
            (
                "one area by month, with contributors, 2025-11-22 to 2026-11-22",
                "/api/v1/areas/E05008737?from=2025-11-22&to=2026-11-22&period=month".to_owned(),
            ),
            (
                "priorities, every area, 12 whole months against the 12 before",
                "/api/v1/priorities?from=2025-11-01&to=2026-11-01".to_owned(),
            ),
        ];
        // Measured twice: straight after the bulk load (every roll-up cell freshly rewritten thousands of times), and
        // after the housekeeping the database does by itself soon after (autovacuum; SQLite's ANALYZE), done here
        // explicitly so the run does not wait for it.
        let mut latency_rows = Vec::new();
        for when in ["right after the load", "after VACUUM ANALYZE"] {
            if when != "right after the load" {
                housekeeping(&raw).await;
            }
            for (what, path) in &queries {
                let mut latencies = Vec::with_capacity(N_QUERIES);
                for _ in 0..N_QUERIES {
                    let started = Instant::now();
                    let response = http.get(format!("http://{addr}{path}")).bearer_auth(&analyst).send().await.unwrap();
                    assert!(response.status().is_success());
                    let _ = response.bytes().await.unwrap();
                    latencies.push(started.elapsed());
                }
                latencies.sort();
                latency_rows.push((
                    format!("{what}, {when}"),
                    percentile(&latencies, 0.5),
                    percentile(&latencies, 0.95),
                ));
            }
        }
        let _ = stop.send(());
        server.await.unwrap().unwrap();

        let (db_bytes, chunk_bytes) = storage_bytes(&raw).await;
        n_ingested += n_sent;
        let n_total = n_insights + n_ingested;

        println!("\n### {label}, {n_insights} insights stored\n");
        println!("| measure | Grapevine | anchor: plain batched INSERT | ratio |");
        println!("| --- | --- | --- | --- |");
        if store_time.is_zero() {
            println!("| fill | (a kept database, filled by an earlier run) | | |");
        } else {
            println!(
            "| fill through `Store::save_documents` (document, row, roll-ups; 1,000 per transaction) | {fill_rate:.0} insights/s | {raw_rate:.0} rows/s | {:.2} |",
            fill_rate / raw_rate
        );
        }
        println!(
        "| end-to-end ingest at {n_insights} stored ({N_DEVICES} devices × {INSIGHTS_PER_DEVICE} insights, frame in → durable → geotagged → counted) | {ingest_rate:.0} insights/s ({} total) | | |",
        ms(ingest_elapsed)
    );
        for (what, p50, p95) in latency_rows {
            println!(
                "| roll-up query over HTTP: {what} ({N_QUERIES} requests) | p50 {}, p95 {} | | |",
                ms(p50),
                ms(p95)
            );
        }
        println!(
            "| storage per insight (whole database, anchor table excluded) | {} bytes | | |",
            db_bytes / u64::try_from(n_total).unwrap()
        );
        println!(
            "| of which Automerge document bytes per insight | {} bytes | | |",
            chunk_bytes / u64::try_from(n_total).unwrap()
        );
    }

    // 4. Re-tagging everything stored to a new generation of the wards (the same areas, so the roll-ups can be
    // compared): tag, write the tags and build the generation's roll-ups, in one transaction.
    let wards = Atlas::bundled();
    let areas: Vec<_> = wards.filing().boundaries.areas().iter().map(stored_area).collect();
    let tagger = |insight: &grapevine_server::store::TaggableInsight| {
        tag_in(&wards.filing().boundaries, &Whereabouts::from(insight))
    };
    let started = Instant::now();
    let info = store.add_generation("wards", "bench: the same wards again", areas, &tagger).await.unwrap();
    let retag = started.elapsed();
    let before = store.rollup(1, store::DayRange::default(), None, false, false).await.unwrap();
    let after = store.rollup(info.id, store::DayRange::default(), None, false, false).await.unwrap();
    assert_eq!(before, after, "the new generation rolls up exactly like the old");
    println!(
        "| re-tag every stored insight ({}) to a new generation, in one transaction | {} ({:.0} insights/s) | | |",
        filled + n_ingested,
        ms(retag),
        per_second(filled + n_ingested, retag)
    );
    if kept {
        forget_generation(&raw, info.id).await;
    }
    if retag_only {
        return;
    }

    // 5. PostgreSQL: two nodes; how long until an insight synced through node A reaches the same collector's device
    // connected to node B.
    if backend == Backend::Postgres {
        let binary = env!("CARGO_BIN_EXE_grapevine-under-test");
        let node_a = ServerProcess::start(binary, &database_url).await;
        let node_b = ServerProcess::start(binary, &database_url).await;
        let (first, first_token) = grapevine_server::auth::issue_device(store.as_ref(), "A", None).await.unwrap();
        let (_, second_token) =
            grapevine_server::auth::issue_device(store.as_ref(), "B", Some(first.collector_id)).await.unwrap();
        let mut on_b = SyncConnection::open(&node_b.sync_url(), &second_token, "b").await.unwrap();
        let mut latencies = Vec::new();
        let mut docs = std::collections::HashMap::new();
        for round in 1..=50 {
            let mut batch = vec![{
                let insight = random_insight(&mut rng);
                let mut doc = AutoCommit::new();
                write_insight(&mut doc, &insight).unwrap();
                (DocumentId::for_insight(insight.id), doc)
            }];
            let started = Instant::now();
            grapevine_client_sdk::sync_documents(&node_a.sync_url(), &first_token, "a", &mut batch).await.unwrap();
            let arrived = on_b
                .follow(&mut docs, Duration::from_secs(10), |docs| {
                    docs.len() == round
                        && docs.values().all(|doc| grapevine_sync_proto::document::read_server_record(doc).is_some())
                })
                .await
                .unwrap();
            assert!(arrived);
            latencies.push(started.elapsed());
        }
        latencies.sort();
        println!(
            "| node A → node B: an insight synced through A reaches the collector's device on B (50 rounds, from the start of A's sync) | p50 {}, p95 {} | | |",
            ms(percentile(&latencies, 0.5)),
            ms(percentile(&latencies, 0.95))
        );
    }
    if let Some(name) = postgres_database {
        grapevine_tests::drop_postgres_database(&name);
    }
}
