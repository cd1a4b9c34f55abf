//! Workbench benchmark for issue 18: at N stored insights, the exports beside the database's own CSV dump of the same
//! rows (the limit), with the server's peak memory above idle and the time to the first byte; full-text search (a
//! common word and a rare one) and a filtered page; and the analyst pages' render time.
//!
//! cargo bench -p grapevine-tests --bench workbench -- --backend sqlite --insights 1000000 [--database URL]
//!
//! The fill goes through the store's own write path (`Store::save_documents`, as the storage benchmark's), which takes
//! a quarter of an hour per million; with `--database` a kept database is filled only up to N and reused. The server
//! runs as its own process (`grapevine-under-test`), so its memory is its own: sampled from `/proc/PID/status` every
//! 10 ms while an export runs. It prints Markdown rows for docs/benchmarks.md.

use std::time::{Duration, Instant};

use grapevine_server::domain::{Principal, RequestContext};
use grapevine_server::geo::atlas::{Atlas, DEFAULT_SET};
use grapevine_server::ingest::decide;
use grapevine_server::store::{self, DocumentBytes, DocumentWrite, Role};
use grapevine_server::usecase::UseCases;
use grapevine_sync_proto::automerge::AutoCommit;
use grapevine_sync_proto::document::{write_insight, write_server_record};
use grapevine_sync_proto::DocumentId;
use grapevine_tests::synthetic::{home, insight_near, COMMON_WORD, RARE_WORD};
use grapevine_tests::timing::{ms, percentile};
use grapevine_tests::{fresh_database, Backend, ServerProcess};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use secrecy::{ExposeSecret, SecretString};

const BATCH: usize = 1_000;
const N_COLLECTORS: usize = 2_000;
const N_REQUESTS: usize = 200;
const N_PAGE_REQUESTS: usize = 100;
const CSV_RUNS: usize = 3;

struct Args {
    backend: Backend,
    insights: usize,
    database: Option<String>,
}

fn args() -> Args {
    let (mut backend, mut insights, mut database) = (Backend::Sqlite, 10_000, None);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--backend" => {
                backend = if args.next().as_deref() == Some("postgres") { Backend::Postgres } else { Backend::Sqlite };
            }
            "--insights" => insights = args.next().and_then(|n| n.parse().ok()).expect("--insights N"),
            "--database" => database = Some(args.next().expect("--database URL")),
            _ => {} // cargo bench passes --bench
        }
    }
    Args { backend, insights, database }
}

/// How many insights the database holds.
async fn stored(backend: Backend, database_url: &str) -> usize {
    use sqlx::Connection;
    let count: i64 = match backend {
        Backend::Sqlite => {
            let mut connection = sqlx::SqliteConnection::connect(database_url).await.unwrap();
            sqlx::query_scalar("SELECT COUNT(*) FROM insights").fetch_one(&mut connection).await.unwrap()
        }
        Backend::Postgres => {
            let mut connection = sqlx::PgConnection::connect(database_url).await.unwrap();
            sqlx::query_scalar("SELECT COUNT(*) FROM insights").fetch_one(&mut connection).await.unwrap()
        }
    };
    usize::try_from(count).unwrap()
}

/// Fills the database up to `target` insights through the store's write path.
async fn fill(backend: Backend, database_url: &str, target: usize) {
    let mut filled = stored(backend, database_url).await;
    if filled >= target {
        return;
    }
    let store = store::open(database_url).await.unwrap();
    let atlas = Atlas::load(store.as_ref(), DEFAULT_SET).await.unwrap();
    let mut rng = StdRng::seed_from_u64(18 + u64::try_from(filled).unwrap());
    let mut collectors = Vec::with_capacity(N_COLLECTORS);
    for i in 0..N_COLLECTORS {
        let (device, _) =
            grapevine_server::auth::issue_device(store.as_ref(), &format!("collector {i}"), None).await.unwrap();
        collectors.push((device, home(&mut rng)));
    }
    let started = Instant::now();
    while filled < target {
        let n_batch = BATCH.min(target - filled);
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
        store.save_documents(writes).await.unwrap();
        filled += n_batch;
        if filled % 100_000 == 0 {
            eprintln!("{filled} stored ({:.0} s)", started.elapsed().as_secs_f64());
        }
    }
}

/// The server process's resident memory now, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// What one export measured.
struct Exported {
    bytes: u64,
    lines: u64,
    first_byte: Duration,
    total: Duration,
    /// Peak resident memory above what it was just before, in MiB.
    peak_above_idle_mib: f64,
}

/// Streams `GET url` to its end, counting, while sampling the server's memory.
async fn export(client: &reqwest::Client, url: &str, token: &str, pid: u32) -> Option<Exported> {
    let idle = rss_kib(pid);
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let sampler = tokio::spawn(async move {
        let mut peak = idle;
        loop {
            peak = peak.max(rss_kib(pid));
            tokio::select! {
                _ = &mut stopped => return peak,
                () = tokio::time::sleep(Duration::from_millis(10)) => {}
            }
        }
    });
    let started = Instant::now();
    let mut response = client.get(url).bearer_auth(token).send().await.unwrap();
    if !response.status().is_success() {
        let _ = stop.send(());
        eprintln!("{url}: {}", response.status());
        return None;
    }
    let (mut bytes, mut lines, mut first_byte) = (0u64, 0u64, None);
    while let Some(chunk) = response.chunk().await.unwrap() {
        first_byte.get_or_insert_with(|| started.elapsed());
        bytes += chunk.len() as u64;
        lines += chunk.iter().filter(|byte| **byte == b'\n').count() as u64;
    }
    let total = started.elapsed();
    let _ = stop.send(());
    let peak = sampler.await.unwrap();
    #[allow(clippy::cast_precision_loss)]
    let peak_above_idle_mib = peak.saturating_sub(idle) as f64 / 1024.0;
    Some(Exported { bytes, lines, first_byte: first_byte.unwrap_or(total), total, peak_above_idle_mib })
}

/// Runs a shell-free command with its standard output thrown away; how long it took.
fn timed_command(program: &str, args: &[&str]) -> Duration {
    let started = Instant::now();
    let status = std::process::Command::new(program)
        .args(args)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap_or_else(|error| panic!("{program}: {error}"));
    assert!(status.success(), "{program} {args:?}");
    started.elapsed()
}

/// The columns the anchor dumps: the same rows and fields the CSV export writes, from the insight table alone.
const ANCHOR_SELECT: &str = "SELECT id, captured_at, category, text, feeling_safe, channel, lat, lon, accuracy_m, \
    postcode, picked_area_code, status, area_code, processed_at FROM insights ORDER BY seq DESC";

/// The database's own CSV dump of the rows: `sqlite3 -csv`, or `COPY … TO STDOUT CSV` through psql.
fn anchor(backend: Backend, database_url: &str) -> Duration {
    match backend {
        Backend::Sqlite => {
            let path = database_url.trim_start_matches("sqlite://").split('?').next().unwrap();
            timed_command("sqlite3", &["-csv", "-readonly", path, ANCHOR_SELECT])
        }
        Backend::Postgres => {
            let copy = format!("COPY ({ANCHOR_SELECT}) TO STDOUT WITH CSV HEADER");
            timed_command("psql", &["-X", "-q", database_url, "-c", &copy])
        }
    }
}

async fn timed_gets(client: &reqwest::Client, url: &str, auth: &Auth, n: usize) -> Option<Vec<Duration>> {
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let request = match auth {
            Auth::Token(token) => client.get(url).bearer_auth(token),
            Auth::Cookie(cookie) => client.get(url).header("cookie", cookie),
        };
        let started = Instant::now();
        let response = request.send().await.unwrap();
        let status = response.status();
        let _ = response.bytes().await.unwrap();
        times.push(started.elapsed());
        if !status.is_success() {
            eprintln!("{url}: {status}");
            return None;
        }
    }
    times.sort();
    Some(times)
}

enum Auth {
    Token(String),
    Cookie(String),
}

fn latency_row(what: &str, times: Option<Vec<Duration>>, goal: &str) {
    match times {
        Some(times) => println!(
            "| {what} ({} requests) | p50 {}, p95 {} | {goal} |",
            times.len(),
            ms(percentile(&times, 0.5)),
            ms(percentile(&times, 0.95))
        ),
        None => println!("| {what} | not answered (see the log) | {goal} |"),
    }
}

#[allow(clippy::cast_precision_loss)]
fn rate(rows: u64, elapsed: Duration) -> f64 {
    rows as f64 / elapsed.as_secs_f64()
}

#[tokio::main]
async fn main() {
    let Args { backend, insights, database } = args();
    let dir = tempfile::tempdir().unwrap();
    let (database_url, _drop_database) = match database {
        Some(url) => {
            if backend == Backend::Postgres {
                grapevine_tests::create_postgres_database_if_missing(&url).await;
            }
            (url, None)
        }
        None => {
            let (url, name) = fresh_database(backend, &dir).await;
            (url, Some(grapevine_tests::DropDatabase(name)))
        }
    };
    // Migrated (and its backfills run) before the fill counts.
    drop(store::open(&database_url).await.unwrap());
    fill(backend, &database_url, insights).await;
    let n = stored(backend, &database_url).await;
    let store = store::open(&database_url).await.unwrap();
    let (_, token) = grapevine_server::auth::issue_api_token(store.as_ref(), Role::Analyst, "bench").await.unwrap();
    let usecases = UseCases::new(store.clone());
    let email = format!("bench-{}@example.org", uuid::Uuid::new_v4().simple());
    let operator = Principal::operator();
    usecases.add_person(&operator, &email, "analyst", None).await.unwrap();
    let link = usecases.issue_password_link(&operator, &email).await.unwrap();
    let password = SecretString::from("a long passphrase for the bench");
    usecases.set_password(link.token.expose_secret(), &password, RequestContext::default()).await.unwrap();
    let opened = usecases.sign_in_with_password(&email, &password, RequestContext::default()).await.unwrap();
    let cookie = format!("grapevine={}", opened.cookie_value.expose_secret());

    let server = ServerProcess::start(env!("CARGO_BIN_EXE_grapevine-under-test"), &database_url).await;
    let pid = server.pid().unwrap();
    let base = server.http_url();
    let client = reqwest::Client::new();
    let label = if backend == Backend::Sqlite { "SQLite" } else { "PostgreSQL" };
    println!("### {label}, {n} insights stored\n");
    println!("| measure | Grapevine | anchor: the database's own CSV dump | ratio / goal |");
    println!("| --- | --- | --- | --- |");

    // The CSV export three times, each run after a run of the anchor, and the anchor once more at the end (the
    // machine is noisy: the medians of both are compared, and every run is printed).
    let mut anchors = vec![anchor(backend, &database_url)];
    let mut runs = Vec::new();
    for _ in 0..CSV_RUNS {
        runs.extend(export(&client, &format!("{base}/api/v1/exports/insights.csv"), &token, pid).await);
        anchors.push(anchor(backend, &database_url));
    }
    anchors.sort();
    let limit = anchors[anchors.len() / 2];
    let limit_rate = rate(n as u64, limit);
    runs.sort_by_key(|run| run.total);
    match runs.get(runs.len() / 2) {
        Some(csv) if runs.len() == CSV_RUNS => {
            let rows = csv.lines.saturating_sub(1);
            let export_rate = rate(rows, csv.total);
            let seconds = |times: Vec<Duration>| {
                times.iter().map(|time| format!("{:.1}", time.as_secs_f64())).collect::<Vec<_>>().join(", ")
            };
            println!(
                "| CSV export of every insight ({rows} rows, {:.0} MB), median of {CSV_RUNS} | {export_rate:.0} rows/s ({:.1} s; runs {} s) | {limit_rate:.0} rows/s ({:.1} s; runs {} s) | {:.2} (goal ≥ 0.5) |",
                csv.bytes as f64 / 1e6,
                csv.total.as_secs_f64(),
                seconds(runs.iter().map(|run| run.total).collect()),
                limit.as_secs_f64(),
                seconds(anchors.clone()),
                export_rate / limit_rate,
            );
            let mut first_bytes: Vec<Duration> = runs.iter().map(|run| run.first_byte).collect();
            first_bytes.sort();
            let worst_memory = runs.iter().map(|run| run.peak_above_idle_mib).fold(0.0, f64::max);
            println!(
                "| CSV export: first byte (median, worst) | {}, {} | | goal < 200 ms |",
                ms(first_bytes[CSV_RUNS / 2]),
                ms(first_bytes[CSV_RUNS - 1])
            );
            println!("| CSV export: server's peak memory above idle (worst run) | {worst_memory:.1} MiB | | goal < 100 MiB |");
        }
        _ => println!("| CSV export | not answered | {limit_rate:.0} rows/s | |"),
    }
    for (format, what) in [("geojson", "GeoJSON"), ("gpkg", "GeoPackage")] {
        match export(&client, &format!("{base}/api/v1/exports/insights.{format}"), &token, pid).await {
            Some(done) => println!(
                "| {what} export of every insight ({:.0} MB) | {:.0} rows/s ({:.1} s), first byte {}, peak {:.1} MiB above idle | | {:.2} of the CSV limit |",
                done.bytes as f64 / 1e6,
                rate(n as u64, done.total),
                done.total.as_secs_f64(),
                ms(done.first_byte),
                done.peak_above_idle_mib,
                rate(n as u64, done.total) / limit_rate,
            ),
            None => println!("| {what} export | not answered | | |"),
        }
    }

    // Search and a filtered page over the API.
    let token = Auth::Token(token);
    let api = |query: &str| format!("{base}/api/v1/insights?{query}");
    let area = "E05008737";
    for (what, query) in [
        ("the newest page, no filter", "limit=50".to_owned()),
        (
            "a filtered page: one area, two categories, a quarter",
            format!("area={area}&category=drugs&category=asb&from=2026-04-01&to=2026-07-01&limit=50"),
        ),
        ("search for a common word", format!("q={COMMON_WORD}&limit=50")),
        ("search for a rare word", format!("q={RARE_WORD}&limit=50")),
        ("search for a common word in one area", format!("q={COMMON_WORD}&area={area}&limit=50")),
    ] {
        latency_row(
            &format!("{what} over HTTP"),
            timed_gets(&client, &api(&query), &token, N_REQUESTS).await,
            "goal p95 < 50 ms",
        );
    }
    let first = reqwest::Client::new()
        .get(api("limit=1"))
        .bearer_auth(match &token {
            Auth::Token(token) => token,
            Auth::Cookie(_) => unreachable!(),
        })
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap();
    let id = first["items"][0]["id"].as_str().unwrap_or_default().to_owned();

    // The analyst pages, signed in.
    let cookie = Auth::Cookie(cookie);
    for (what, path) in [
        ("home page (priorities)", "/".to_owned()),
        ("insights page", "/insights".to_owned()),
        ("insights page, searched", format!("/insights?q={COMMON_WORD}")),
        ("one insight's page", format!("/insights/{id}")),
        ("an area's page", format!("/areas/{area}")),
    ] {
        latency_row(
            what,
            timed_gets(&client, &format!("{base}{path}"), &cookie, N_PAGE_REQUESTS).await,
            "goal p95 < 100 ms",
        );
    }
    println!();
}
