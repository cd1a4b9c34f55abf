fn main() -> anyhow::Result<()> {
    grapevine_server::cli::main()
}
