//! `grapevine-collect`: the SDK from a terminal. The command line itself is `grapevine_client_sdk::cli`, so the
//! integration tests can build the same program as a process of their own.

use std::process::ExitCode;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    grapevine_client_sdk::cli::main().await
}
