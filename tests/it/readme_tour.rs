//! The README's five-minute tour, run as written: its shell block goes to bash unchanged but for the server's
//! address (a free port instead of 8080), against a real `grapevine serve` started with zero configuration in an
//! empty directory, as a newcomer would. `cargo run -q --bin NAME -- …` runs the binaries this test run built, so
//! the tour costs no nested build. If the README and the binaries drift apart, this fails with the whole transcript.
//!
//! It runs on SQLite alone: the tour is the zero-configuration default.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};

/// Stands in for `cargo` inside the tour: only `cargo run -q --bin NAME -- ARGS…`, which runs the built binary.
const CARGO_SHIM: &str = r#"
cargo() {
  if [ "$#" -lt 5 ] || [ "$1" != run ] || [ "$2" != -q ] || [ "$3" != --bin ] || [ "$5" != -- ]; then
    echo "the tour ran a cargo command this test does not know: cargo $*" >&2
    return 97
  fi
  local bin=$4
  shift 5
  case "$bin" in
    grapevine) "$TOUR_GRAPEVINE" "$@" ;;
    grapevine-collect) "$TOUR_COLLECT" "$@" ;;
    *) echo "the tour ran an unknown binary: $bin" >&2; return 97 ;;
  esac
}
"#;

fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ sits in the repository").to_path_buf()
}

/// The first `sh` block after the tour's heading.
fn tour_block(readme: &str) -> String {
    let tour = readme.split_once("## A five-minute tour").expect("README.md has a five-minute tour").1;
    let block = tour.split_once("```sh\n").expect("the tour has a sh block").1;
    block.split_once("\n```").expect("the tour's sh block ends").0.to_owned()
}

/// Starts `grapevine serve` in `dir` with nothing but a free port, and returns it with the address it listens on.
async fn serve_in(dir: &Path) -> (tokio::process::Child, String) {
    let mut server = tokio::process::Command::new(env!("CARGO_BIN_EXE_grapevine-under-test"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .current_dir(dir)
        .env("RUST_LOG", "info,sqlx=warn")
        .env_remove("GRAPEVINE_DATABASE_URL")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the server binary starts");
    let mut lines = BufReader::new(server.stderr.take().expect("piped")).lines();
    let address = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.expect("the server's log reads") {
            if let Some((_, address)) = line.split_once("address=") {
                return address.trim().to_owned();
            }
        }
        panic!("the server exited before listening");
    })
    .await
    .expect("the server listens within 60 s");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (server, address)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_tour_runs_as_written() {
    let root = repository_root();
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md reads");
    let block = tour_block(&readme);
    assert!(block.contains("127.0.0.1:8080"), "the tour talks to the server at its default address");

    // An empty directory, as on a fresh clone's root: the tour's one repository path (a boundary file) resolves
    // through a link to the real `server/`.
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(root.join("server"), dir.path().join("server")).unwrap();
    let (mut server, address) = serve_in(dir.path()).await;

    let script = format!("set -eu\nexec 2>&1\n{CARGO_SHIM}\n{}", block.replace("127.0.0.1:8080", &address));
    let run = tokio::process::Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(dir.path())
        .env("TOUR_GRAPEVINE", env!("CARGO_BIN_EXE_grapevine-under-test"))
        .env("TOUR_COLLECT", env!("CARGO_BIN_EXE_collect-under-test"))
        .env("RUST_LOG", "warn")
        .env_remove("GRAPEVINE_DATABASE_URL")
        .env_remove("GRAPEVINE_STORE")
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(300), run).await.expect("the tour ends within 5 minutes");
    let output = output.expect("bash runs");
    let transcript = String::from_utf8_lossy(&output.stdout);
    // Shown with --nocapture: what a newcomer would see.
    println!("{transcript}");
    assert!(output.status.success(), "the tour failed ({}); its transcript:\n{transcript}", output.status);

    // What the README says the tour shows.
    let expect = |needle: &str, what: &str| {
        assert!(transcript.contains(needle), "the tour should show {what} ({needle:?}); its transcript:\n{transcript}");
    };
    expect("E05008737", "the first insight filed under Joiner's Square");
    expect("E05008714", "the edit moving it to Abbey Hulton and Townsend");
    expect("E05006904", "the second insight filed under Cannock North");
    expect("insight_area_unknown", "an unknown area rejected with its code");
    expect("withdrawn", "a withdrawn insight");
    expect("unauthorized", "a bad token refused");
    expect("device_revoked", "a revoked device refused");
    expect("grapevine_insights_decided_total", "the server's metrics");
    expect("area_not_found", "a ward outside the officer's scope answered as absent");
    expect("ward.officer@example.org", "the person added, in the list and the audit trail");
    expect("intact: ", "the audit trail verified");
    expect("\"text\":\"Cars race past the school gate\"", "the insight found by a stemmed word");
    expect("\"cohort\":\"Hanley barbers\"", "the insight's cohort");
    expect("\"collector\":\"c-", "the collector as a pseudonym");
    expect("\"state\":\"reviewed\"", "the insight triaged");
    server.kill().await.expect("the server stops");
}
