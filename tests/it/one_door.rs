//! One door: the adapters (HTTP, the web pages, the sync endpoint, the command line) parse, call a use case and render; none of them
//! reaches the store around the use cases, where the permission check and the audit entry are. (The health probes,
//! `/readyz` and `/metrics`, read the database's state, never anyone's data, and are not adapters of an action.)

use std::path::{Path, PathBuf};

/// The adapters' source, relative to the workspace.
const ADAPTERS: &[&str] =
    &["server/src/http", "server/src/web", "server/src/sync.rs", "server/src/cli.rs", "server/src/cli"];

/// What reaching the store looks like in source: holding it, opening it, or calling it through the state.
const REACHING_THE_STORE: &[&str] = &["state.store", "dyn Store", "store::open(", ".store.as_ref()", "store.as_ref()"];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn rust_files(path: &Path) -> Vec<PathBuf> {
    if path.is_file() {
        return vec![path.to_owned()];
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .unwrap_or_else(|error| panic!("{}: {error}", path.display()))
        .flat_map(|entry| rust_files(&entry.unwrap().path()))
        .filter(|file| file.extension().is_some_and(|extension| extension == "rs"))
        .collect();
    files.sort();
    files
}

/// The lines of `file` (relative to the workspace) that reach the store, comments left out.
fn reaching_lines(file: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(workspace().join(file)).unwrap();
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim_start().starts_with("//"))
        .filter(|(_, line)| REACHING_THE_STORE.iter().any(|pattern| line.contains(pattern)))
        .map(|(n, line)| format!("{}:{}: {}", file.display(), n + 1, line.trim()))
        .collect()
}

#[test]
fn no_adapter_reaches_the_store_around_the_use_cases() {
    let mut found = Vec::new();
    for adapter in ADAPTERS {
        let files = rust_files(&workspace().join(adapter));
        assert!(!files.is_empty(), "{adapter} holds no Rust file: has it moved? (update ADAPTERS)");
        for file in files {
            found.extend(reaching_lines(file.strip_prefix(workspace()).unwrap()));
        }
    }
    assert!(
        found.is_empty(),
        "adapters must call a use case (server/src/usecase), not the store:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_check_sees_a_store_call_in_an_adapter() {
    // The patterns catch what an adapter would write; if this fails, the check above proves nothing.
    let line = "    let rollups = state.store.rollup(id, days, None, false, false).await?;";
    assert!(REACHING_THE_STORE.iter().any(|pattern| line.contains(pattern)));
    assert!(!REACHING_THE_STORE.iter().any(|pattern| "state.usecases.area_totals(&principal)".contains(pattern)));
}
