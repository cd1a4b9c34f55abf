//! Writes the seed corpus (`grapevine_server::fuzzing::seed_corpus`) into `fuzz/corpus/<target>/`.

fn main() -> std::io::Result<()> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    for (target, name, bytes) in grapevine_server::fuzzing::seed_corpus() {
        std::fs::create_dir_all(root.join(target))?;
        std::fs::write(root.join(target).join(name), bytes)?;
    }
    Ok(())
}
