//! The `grapevine` server binary, built inside this package so the integration tests can start, kill and restart
//! real server processes (`CARGO_BIN_EXE_grapevine-under-test`). It is the same code path as `server/src/main.rs`.

fn main() -> anyhow::Result<()> {
    grapevine_server::cli::main()
}
