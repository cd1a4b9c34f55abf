//! The `grapevine-collect` command line, built inside this package so the integration tests can run it as a process
//! (`CARGO_BIN_EXE_collect-under-test`). It is the same code path as `client-sdk/src/main.rs`.

use std::process::ExitCode;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    grapevine_client_sdk::cli::main().await
}
