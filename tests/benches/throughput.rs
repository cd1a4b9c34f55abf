//! Throughput and memory benchmark for issue #3: Grapevine beside the JavaScript automerge-repo server (nodefs
//! storage, websocket server adapter: tests/js-server/server.mjs) on the same workload, in the same run.
//!
//! cargo bench -p grapevine-tests --bench throughput
//! cargo bench -p grapevine-tests --bench throughput -- --devices 200 --insights 50 --rounds 3 --memory-devices 2000
//!
//! Both servers are real processes: `grapevine serve` on its default SQLite, and Node. The clients are the same
//! (Grapevine's SDK, speaking automerge-repo's protocol), one connection per device, each syncing its offline
//! insights as one batch. A device is done when the server's sync state says it holds every change.
//! - Throughput: `--devices` devices at once, `--insights` each; insights per second, median of `--rounds`.
//! - Memory: `--memory-devices` devices, `--insights` each, in waves of `--devices` at once; the server's peak
//!   resident memory (VmHWM) and its resident memory after each tenth of the insights (flat or growing?), divided
//!   into anonymous (heap), file-backed and shared pages.
//!
//! - `--memory-minutes M` gives each server at most M minutes for the memory run: a server that runs out starts no
//!   more waves, and the table says how far it got. (The JavaScript server slows as it accumulates documents; at
//!   100,000 insights it needs hours.) `--rounds 0` or `--memory-devices 0` leaves that part out.
//!
//! Needs Node; the bench installs tests/js-server's pinned packages with npm when node_modules is missing.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use grapevine_server::store::{self};
use grapevine_sync_proto::automerge::AutoCommit;
use grapevine_sync_proto::campaign::DEFAULT_CAMPAIGN;
use grapevine_sync_proto::document::write_insight;
use grapevine_sync_proto::{Channel, DocumentId, Insight, Location};
use grapevine_tests::ServerProcess;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncBufReadExt, BufReader};

struct Args {
    devices: usize,
    insights: usize,
    rounds: usize,
    memory_devices: usize,
    memory_budget: Option<Duration>,
}

fn args() -> Args {
    let mut parsed = Args { devices: 200, insights: 50, rounds: 3, memory_devices: 2_000, memory_budget: None };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut number = || args.next().and_then(|n| n.parse().ok()).expect("a whole number");
        match arg.as_str() {
            "--devices" => parsed.devices = number(),
            "--insights" => parsed.insights = number(),
            "--rounds" => parsed.rounds = number(),
            "--memory-devices" => parsed.memory_devices = number(),
            "--memory-minutes" => parsed.memory_budget = Some(Duration::from_secs(60 * number() as u64)),
            _ => {} // cargo bench passes --bench
        }
    }
    parsed
}

fn insight_docs(rng: &mut StdRng, n: usize) -> Vec<(DocumentId, AutoCommit)> {
    (0..n)
        .map(|_| {
            let category = DEFAULT_CAMPAIGN.categories[rng.random_range(0..DEFAULT_CAMPAIGN.categories.len())].slug;
            let insight = Insight {
                id: uuid::Uuid::new_v4(),
                captured_at: time::macros::datetime!(2026-11-20 12:00 +00:00)
                    - time::Duration::days(rng.random_range(0..300)),
                campaign: "community-safety".into(),
                category: category.into(),
                text: "Groups gathering by the underpass most evenings".into(),
                feeling_safe: Some(rng.random_range(1..=5)),
                location: Location::Gps {
                    lat: rng.random_range(52.43..53.22),
                    lon: rng.random_range(-2.46..-1.59),
                    accuracy_m: 12.0,
                },
                channel: Channel::ALL[rng.random_range(0..Channel::ALL.len())],
            };
            let mut doc = AutoCommit::new();
            write_insight(&mut doc, &insight).unwrap();
            (DocumentId::for_insight(insight.id), doc)
        })
        .collect()
}

/// A server under test: where devices connect, its tokens, and its process for memory readings.
struct Server {
    sync_url: String,
    tokens: Vec<String>,
    pid: u32,
    // Held so the process lives exactly as long as the server (both are killed on drop).
    _grapevine: Option<ServerProcess>,
    _node: Option<tokio::process::Child>,
}

fn memory_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|line| line.starts_with(field))
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|kib| kib.parse().ok())
        .unwrap_or(0)
}

async fn start_grapevine(dir: &Path, n_devices: usize) -> Server {
    let database_url = format!("sqlite://{}", dir.join("grapevine.db").display());
    let store = store::open(&database_url).await.unwrap();
    let _ = grapevine_server::geo::atlas::Atlas::load(store.as_ref(), grapevine_server::geo::atlas::DEFAULT_SET)
        .await
        .unwrap();
    let mut tokens = Vec::with_capacity(n_devices);
    for i in 0..n_devices {
        tokens
            .push(grapevine_server::auth::issue_device(store.as_ref(), &format!("device {i}"), None).await.unwrap().1);
    }
    drop(store);
    let process = ServerProcess::start(env!("CARGO_BIN_EXE_grapevine-under-test"), &database_url).await;
    Server { sync_url: process.sync_url(), tokens, pid: process.pid().unwrap(), _grapevine: Some(process), _node: None }
}

fn js_server_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("js-server")
}

async fn start_node(dir: &Path, n_devices: usize) -> Server {
    let js = js_server_dir();
    if !js.join("node_modules").exists() {
        let installed = std::process::Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&js)
            .status()
            .is_ok_and(|status| status.success());
        assert!(installed, "`npm ci` could not install tests/js-server from its lockfile");
    }
    let mut child = tokio::process::Command::new("node")
        .arg(js.join("server.mjs"))
        .arg(dir)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let port: u16 = loop {
        let line = lines.next_line().await.unwrap().expect("the JS server prints its port");
        if let Some(port) = line.strip_prefix("listening ") {
            break port.trim().parse().unwrap();
        }
    };
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let pid = child.id().unwrap();
    Server {
        sync_url: format!("ws://127.0.0.1:{port}/"),
        tokens: vec!["not-checked".to_owned(); n_devices],
        pid,
        _grapevine: None,
        _node: Some(child),
    }
}

/// What one wave of devices achieved.
#[derive(Default)]
struct WaveOutcome {
    elapsed: Duration,
    /// Insights the server holds (every document of a device whose sync completed).
    n_synced: usize,
    /// Devices whose sync failed (the server dropped the connection).
    n_failed: usize,
}

/// Devices `first..first + n` each sync their batch at once.
async fn wave(server: &Server, batches: Vec<Vec<(DocumentId, AutoCommit)>>, first: usize) -> WaveOutcome {
    let started = Instant::now();
    let syncs: Vec<_> = batches
        .into_iter()
        .enumerate()
        .map(|(i, mut batch)| {
            let url = server.sync_url.clone();
            let token = server.tokens[first + i].clone();
            tokio::spawn(async move {
                let peer = format!("device-{}", first + i);
                match grapevine_client_sdk::sync_documents(&url, &token, &peer, &mut batch).await {
                    Ok(outcomes) => {
                        assert!(outcomes.iter().all(|outcome| *outcome == grapevine_client_sdk::DocOutcome::InStep));
                        Some(batch.len())
                    }
                    Err(error) => {
                        eprintln!("{peer}: {error}");
                        None
                    }
                }
            })
        })
        .collect();
    let mut outcome = WaveOutcome::default();
    for sync in syncs {
        match sync.await.unwrap() {
            Some(n) => outcome.n_synced += n,
            None => outcome.n_failed += 1,
        }
    }
    outcome.elapsed = started.elapsed();
    outcome
}

#[allow(clippy::cast_precision_loss)]
fn per_second(n: usize, elapsed: Duration) -> f64 {
    n as f64 / elapsed.as_secs_f64()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Which {
    Grapevine,
    Node,
}

async fn start(which: Which, dir: &Path, n_devices: usize) -> Server {
    match which {
        Which::Grapevine => start_grapevine(dir, n_devices).await,
        Which::Node => start_node(dir, n_devices).await,
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = args();
    let mut rng = StdRng::seed_from_u64(3);
    println!("\n| measure | Grapevine | anchor: JS automerge-repo server | ratio |");
    println!("| --- | --- | --- | --- |");
    if args.rounds > 0 {
        throughput(&args, &mut rng).await;
    }
    if args.memory_devices > 0 {
        memory(&args, &mut rng).await;
    }
}

/// Rounds alternate between the servers, each on a fresh store.
async fn throughput(args: &Args, rng: &mut StdRng) {
    let Args { devices, insights, rounds, .. } = *args;
    let mut rates = [Vec::new(), Vec::new()];
    let mut failed = [0, 0];
    for _ in 0..rounds {
        for (slot, which) in [Which::Grapevine, Which::Node].into_iter().enumerate() {
            let dir = tempfile::tempdir().unwrap();
            let server = start(which, dir.path(), devices).await;
            let batches = (0..devices).map(|_| insight_docs(rng, insights)).collect();
            let outcome = wave(&server, batches, 0).await;
            rates[slot].push(per_second(outcome.n_synced, outcome.elapsed));
            failed[slot] += outcome.n_failed;
        }
    }
    let (ours, theirs) = (median(rates[0].clone()), median(rates[1].clone()));
    println!(
        "| throughput: {devices} devices at once, {insights} insights each (median of {rounds}; insights fully synced per second) | {ours:.0} insights/s | {theirs:.0} insights/s | {:.2} |",
        ours / theirs
    );
    println!(
        "| device syncs that failed (connection dropped by the server), of {} | {} | {} | |",
        devices * rounds,
        failed[0],
        failed[1]
    );
}

/// What one server did in the memory run.
struct MemoryRun {
    peak_kib: u64,
    /// Insights synced per second over the run.
    rate: f64,
    n_synced: usize,
    n_failed: usize,
    /// The server process exited during the run.
    ended: bool,
    /// A reading after each wave.
    curve: Vec<Reading>,
}

/// The server's resident memory after a wave, in KiB, whole and by kind (`/proc/<pid>/status`): anonymous pages
/// (the heap: documents, caches, SQLite's page cache), file pages (the binary, libraries, mapped files) and shared
/// memory (SQLite's WAL index).
#[derive(Clone, Copy)]
struct Reading {
    stored: usize,
    resident: u64,
    anon: u64,
    file: u64,
    shmem: u64,
}

impl Reading {
    fn of(pid: u32, stored: usize) -> Self {
        let field = |name| memory_kib(pid, name);
        Reading {
            stored,
            resident: field("VmRSS:"),
            anon: field("RssAnon:"),
            file: field("RssFile:"),
            shmem: field("RssShmem:"),
        }
    }
}

/// Many devices in waves; peak and resident memory as the stored documents grow.
async fn memory(args: &Args, rng: &mut StdRng) {
    let Args { devices, insights, memory_devices, memory_budget, .. } = *args;
    let mut runs = Vec::new();
    for which in [Which::Grapevine, Which::Node] {
        let dir = tempfile::tempdir().unwrap();
        let server = start(which, dir.path(), memory_devices).await;
        let mut curve = Vec::new();
        let started = Instant::now();
        let (mut first, mut n_synced, mut n_failed, mut peak_kib, mut ended) = (0, 0, 0, 0, false);
        while first < memory_devices && memory_budget.is_none_or(|budget| started.elapsed() < budget) {
            let n = devices.min(memory_devices - first);
            let batches = (0..n).map(|_| insight_docs(rng, insights)).collect();
            let outcome = wave(&server, batches, first).await;
            n_synced += outcome.n_synced;
            n_failed += outcome.n_failed;
            first += n;
            // A process that has exited has no /proc entry: its last readings stand.
            let (reading, peak) = (Reading::of(server.pid, first * insights), memory_kib(server.pid, "VmHWM:"));
            if reading.resident == 0 {
                ended = true;
                break;
            }
            peak_kib = peak;
            curve.push(reading);
            let Reading { stored, resident, anon, file, shmem } = reading;
            eprintln!(
                "memory run: {resident} KiB resident (anonymous {anon}, file {file}, shared {shmem}) with {stored} insights stored"
            );
        }
        // Said now, so that a run stopped before the table is printed keeps it.
        eprintln!("memory run: {which:?} peak {peak_kib} KiB resident, {n_synced} insights synced");
        let rate = per_second(n_synced, started.elapsed());
        runs.push(MemoryRun { peak_kib, rate, n_synced, n_failed, ended, curve });
    }
    let [ours, theirs] = <[MemoryRun; 2]>::try_from(runs).ok().unwrap();
    let total = memory_devices * insights;
    let reached = |run: &MemoryRun| {
        if run.ended {
            format!(" (the server process exited after {} insights)", run.n_synced)
        } else if run.n_synced + run.n_failed * insights < total {
            format!(" (stopped by the time limit at {} insights)", run.n_synced)
        } else {
            String::new()
        }
    };
    println!(
        "| peak resident memory while {memory_devices} devices sync {total} insights ({devices} at a time) | {} MiB{} | {} MiB{} | {:.2} |",
        ours.peak_kib / 1024,
        reached(&ours),
        theirs.peak_kib / 1024,
        reached(&theirs),
        ours.peak_kib as f64 / theirs.peak_kib as f64
    );
    println!(
        "| throughput over that run | {:.0} insights/s | {:.0} insights/s | {:.2} |",
        ours.rate,
        theirs.rate,
        ours.rate / theirs.rate
    );
    println!(
        "| device syncs that failed in that run, of {memory_devices} | {} | {} | |",
        ours.n_failed, theirs.n_failed
    );
    // Five readings spread over Grapevine's run, the last one included, beside the anchor's at the same point if
    // it got there.
    let n_readings = ours.curve.len();
    let mut shown: Vec<usize> = (1..=5).map(|k| (n_readings * k / 5).max(1) - 1).collect();
    shown.dedup();
    for index in shown {
        let Reading { stored, resident, anon, file, shmem } = ours.curve[index];
        let anchor = theirs
            .curve
            .iter()
            .find(|reading| reading.stored == stored)
            .map_or_else(|| "not reached".to_owned(), |reading| format!("{} MiB", reading.resident / 1024));
        println!(
            "| resident memory with {stored} insights stored (anonymous, file, shared) | {} MiB ({}, {}, {}) | {anchor} | |",
            resident / 1024,
            anon / 1024,
            file / 1024,
            shmem / 1024
        );
    }
    if let Some(last) = theirs.curve.last().filter(|_| theirs.curve.len() < n_readings) {
        println!(
            "| the anchor's last reading: resident memory with {} insights stored | | {} MiB | |",
            last.stored,
            last.resident / 1024
        );
    }
}
