//! The `grapevine` command line as a process, for the tests that drive it as an operator would.

/// The server binary this test run built (the same code path as `server/src/main.rs`).
pub const GRAPEVINE: &str = env!("CARGO_BIN_EXE_grapevine-under-test");

/// Runs `grapevine ARGS…` to its end.
pub fn grapevine(args: &[&str]) -> std::process::Output {
    std::process::Command::new(GRAPEVINE).args(args).output().expect("grapevine runs")
}

/// What a command that must succeed printed; its standard error if it failed.
pub fn stdout(output: &std::process::Output) -> String {
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}
