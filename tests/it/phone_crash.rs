//! The outbox never loses an insight (issue #4): a real phone process killed with SIGKILL at random moments, mid-capture
//! and mid-sync, in a loop. Every insight whose capture returned is still there afterwards, exactly once, and reaches
//! the server exactly once.

use std::collections::HashSet;
use std::time::Duration;

use grapevine_client_sdk::Store as PhoneStore;
use grapevine_tests::{Backend, TestApp};
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncBufReadExt, BufReader};

const PHONE: &str = env!("CARGO_BIN_EXE_phone-under-test");

/// Runs the phone with `args`, kills it `after` its start (or, `after_first_line`, after it printed its first line, so
/// a busy machine's slow start cannot eat the whole window), and returns the lines it printed before dying.
async fn run_and_kill(args: &[&str], after: Duration, after_first_line: bool) -> Vec<String> {
    let mut child = tokio::process::Command::new(PHONE)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut printed = Vec::new();
    if after_first_line {
        match lines.next_line().await.unwrap() {
            Some(line) => printed.push(line),
            None => return printed,
        }
    }
    let deadline = tokio::time::sleep(after);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            () = &mut deadline => break,
            line = lines.next_line() => match line.unwrap() {
                Some(line) => printed.push(line),
                None => break,
            },
        }
    }
    let _ = child.start_kill();
    let _ = child.wait().await;
    // Whatever was printed before the kill landed is still in the pipe.
    while let Ok(Some(line)) = lines.next_line().await {
        printed.push(line);
    }
    printed
}

async fn a_phone_killed_at_random_moments_loses_and_duplicates_nothing(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let token = app.add_device("phone that keeps dying").await;
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().to_str().unwrap().to_owned();
    let sync_url = app.sync_url();
    let mut rng = rand::rngs::StdRng::seed_from_u64(4);
    let mut returned = HashSet::new();
    let mut rounds_timed_from_a_capture = 0;
    for round in 0..16 {
        let after = Duration::from_millis(rng.random_range(20..250));
        let printed = match round % 3 {
            2 => run_and_kill(&["sync", &store_dir, &sync_url, &token], after, false).await,
            // Killed anywhere from its start, opening the store included.
            0 => run_and_kill(&["capture", &store_dir, "10000"], after, false).await,
            // Killed mid-capture for certain, however slowly the machine starts the process.
            _ => {
                rounds_timed_from_a_capture += 1;
                run_and_kill(&["capture", &store_dir, "10000"], after, true).await
            }
        };
        for line in printed {
            if let Some(id) = line.strip_prefix("captured ") {
                assert!(returned.insert(id.parse::<uuid::Uuid>().unwrap()), "one capture, one id");
            }
        }
    }
    assert!(
        returned.len() >= rounds_timed_from_a_capture,
        "the phone captured something between kills ({} in {rounds_timed_from_a_capture} rounds timed from a capture)",
        returned.len()
    );

    // After all that, the store opens, holds every insight whose capture returned, once, and a clean sync counts
    // each of them once on the server.
    let phone = PhoneStore::open(dir.path()).await.unwrap();
    let listed = phone.list().await.unwrap();
    let on_phone: HashSet<uuid::Uuid> = listed.iter().map(|insight| insight.id).collect();
    assert_eq!(on_phone.len(), listed.len(), "no insight twice");
    assert!(returned.is_subset(&on_phone), "every insight whose capture returned survived");
    grapevine_client_sdk::sync(&phone, &sync_url, &token).await.unwrap();
    let (totals, outside) = app.totals().await;
    let counted: i64 = totals.iter().map(|(_, n)| n).sum::<i64>() + outside;
    assert_eq!(counted, i64::try_from(listed.len()).unwrap(), "each insight counted once on the server");
    let again = grapevine_client_sdk::sync(&phone, &sync_url, &token).await.unwrap();
    assert_eq!(again.sent, 0, "nothing left to send");
}

on_both_backends!(a_phone_killed_at_random_moments_loses_and_duplicates_nothing);
