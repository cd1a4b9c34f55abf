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
//!   resident memory (VmHWM) and its resident memory after each tenth of the insights (flat or growing?).
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
}

fn args() -> Args {
    let mut parsed = Args { devices: 200, insights: 50, rounds: 3, memory_devices: 2_000 };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut number = || args.next().and_then(|n| n.parse().ok()).expect("a whole number");
        match arg.as_str() {
            "--devices" => parsed.devices = number(),
            "--insights" => parsed.insights = number(),
            "--rounds" => parsed.rounds = number(),
            "--memory-devices" => parsed.memory_devices = number(),
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
    let _ = grapevine_server::atlas::Atlas::load(store.as_ref(), grapevine_server::atlas::DEFAULT_SET).await.unwrap();
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
        // npm 11 may refuse `npm ci` on its own lockfile (cbor-extract's optional platform packages): then install
        // the same pinned versions with `npm install`, as tests/it/js_client.rs does.
        let npm = |command: &str| {
            std::process::Command::new("npm")
                .args([command, "--no-audit", "--no-fund"])
                .current_dir(&js)
                .status()
                .is_ok_and(|status| status.success())
        };
        assert!(npm("ci") || npm("install"), "installing tests/js-server with npm");
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

#[derive(Clone, Copy, PartialEq)]
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
    let Args { devices, insights, rounds, memory_devices } = args();
    let mut rng = StdRng::seed_from_u64(3);
    let both = [Which::Grapevine, Which::Node];

    // 1. Throughput: rounds alternate between the servers, each on a fresh store.
    let mut rates = [Vec::new(), Vec::new()];
    let mut failed = [0, 0];
    for _ in 0..rounds {
        for (slot, which) in both.into_iter().enumerate() {
            let dir = tempfile::tempdir().unwrap();
            let server = start(which, dir.path(), devices).await;
            let batches = (0..devices).map(|_| insight_docs(&mut rng, insights)).collect();
            let outcome = wave(&server, batches, 0).await;
            rates[slot].push(per_second(outcome.n_synced, outcome.elapsed));
            failed[slot] += outcome.n_failed;
        }
    }
    let (ours, theirs) = (median(rates[0].clone()), median(rates[1].clone()));
    println!("\n| measure | Grapevine | anchor: JS automerge-repo server | ratio |");
    println!("| --- | --- | --- | --- |");
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

    // 2. Memory: many devices in waves; peak and resident memory as the stored documents grow.
    let mut peaks = Vec::new();
    let mut curves = Vec::new();
    for which in both {
        let dir = tempfile::tempdir().unwrap();
        let server = start(which, dir.path(), memory_devices).await;
        let mut curve = Vec::new();
        let started = Instant::now();
        let (mut first, mut n_synced, mut n_failed) = (0, 0, 0);
        while first < memory_devices {
            let n = devices.min(memory_devices - first);
            let batches = (0..n).map(|_| insight_docs(&mut rng, insights)).collect();
            let outcome = wave(&server, batches, first).await;
            n_synced += outcome.n_synced;
            n_failed += outcome.n_failed;
            first += n;
            curve.push(((first * insights), memory_kib(server.pid, "VmRSS:")));
        }
        let elapsed = started.elapsed();
        peaks.push((memory_kib(server.pid, "VmHWM:"), per_second(n_synced, elapsed), n_failed));
        curves.push(curve);
    }
    let total = memory_devices * insights;
    println!(
        "| peak resident memory while {memory_devices} devices sync {total} insights ({devices} at a time) | {} MiB | {} MiB | {:.2} |",
        peaks[0].0 / 1024,
        peaks[1].0 / 1024,
        peaks[0].0 as f64 / peaks[1].0 as f64
    );
    println!(
        "| throughput over that run | {:.0} insights/s | {:.0} insights/s | {:.2} |",
        peaks[0].1,
        peaks[1].1,
        peaks[0].1 / peaks[1].1
    );
    println!("| device syncs that failed in that run, of {memory_devices} | {} | {} | |", peaks[0].2, peaks[1].2);
    // Five readings spread over the run, the last one included.
    let n_readings = curves[0].len();
    let mut shown: Vec<usize> = (1..=5).map(|k| (n_readings * k / 5).max(1) - 1).collect();
    shown.dedup();
    for index in shown {
        let ((stored, ours), (_, theirs)) = (curves[0][index], curves[1][index]);
        println!("| resident memory with {stored} insights stored | {} MiB | {} MiB | |", ours / 1024, theirs / 1024);
    }
}
