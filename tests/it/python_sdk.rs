//! The phone SDK through its generated Python bindings (UniFFI), against a live server: the bindings are generated
//! from the native library this build made, exactly as client-sdk/ffi/README.md tells a mobile team, and
//! tests/python/test_sdk.py drives them with Python's standard library alone.

use std::path::{Path, PathBuf};

use grapevine_tests::points::JOINERS_SQUARE;
use grapevine_tests::{Backend, TestApp};

/// The native library cargo built for the `grapevine-ffi` dependency of these tests.
fn native_library() -> PathBuf {
    let file = format!("{}grapevine_ffi{}", std::env::consts::DLL_PREFIX, std::env::consts::DLL_SUFFIX);
    let exe = std::env::current_exe().expect("the test binary knows its path");
    let deps = exe.parent().expect("the test binary is in target/<profile>/deps");
    [deps.join(&file), deps.join("..").join(&file)]
        .into_iter()
        .find(|path| path.exists())
        .unwrap_or_else(|| panic!("{file} was not built next to {}", exe.display()))
}

/// Generates `languages`' bindings into `out`, with the settings a mobile team uses.
fn generate(languages: Vec<uniffi::TargetLanguage>, library: &Path, out: &Path) {
    let utf8 = |path: &Path| camino::Utf8PathBuf::from_path_buf(path.to_path_buf()).expect("a UTF-8 path");
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("../client-sdk/ffi/bindgen.toml");
    uniffi::generate(uniffi::GenerateOptions {
        languages,
        source: utf8(library),
        out_dir: utf8(out),
        config_override: Some(utf8(&config)),
        format: false,
        crate_filter: Some("grapevine_ffi".to_owned()),
        metadata_no_deps: true,
    })
    .expect("the bindings generate");
}

async fn python_captures_enrols_syncs_and_reads_status(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let code = app.create_invitation("Python phones", 1, time::Duration::days(1)).await;
    let library = native_library();
    let bindings = tempfile::tempdir().unwrap();
    generate(vec![uniffi::TargetLanguage::Python], &library, bindings.path());
    // The generated module loads the library from its own directory.
    std::fs::copy(&library, bindings.path().join(library.file_name().unwrap())).unwrap();

    let (area, lat, lon) = JOINERS_SQUARE;
    let result = bindings.path().join("result.json");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/test_sdk.py");
    let output = tokio::process::Command::new("python3")
        .arg(&script)
        .env("PYTHONPATH", bindings.path())
        .env("GRAPEVINE_SERVER", app.http_url())
        .env("GRAPEVINE_CODE", &code)
        .env("GRAPEVINE_POINT", format!("{lat},{lon},{area}"))
        .env("GRAPEVINE_RESULT", &result)
        .output()
        .await
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "the Python test failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );

    // What Python saw is what the server holds: the kept insight counts in its ward, the withdrawn one does not.
    let synced: serde_json::Value = serde_json::from_slice(&std::fs::read(&result).unwrap()).unwrap();
    let (areas, outside_coverage) = app.totals().await;
    assert_eq!(areas, vec![(area.to_owned(), 1)], "only the insight Python kept counts");
    assert_eq!(outside_coverage, 0);
    let devices = app.store.devices(None).await.unwrap();
    assert_eq!(devices.len(), 1);
    assert_eq!(devices[0].device_id.to_string(), synced["device"].as_str().unwrap());
    assert_eq!(devices[0].label, "Python phone");
    app.stop().await;
}

/// The Kotlin and Swift sources come out of the same command; compiling them needs the Android and Apple
/// toolchains, which this machine has not got.
#[test]
fn the_kotlin_and_swift_sources_generate() {
    let out = tempfile::tempdir().unwrap();
    generate(vec![uniffi::TargetLanguage::Kotlin, uniffi::TargetLanguage::Swift], &native_library(), out.path());
    let kotlin = std::fs::read_to_string(out.path().join("org/grapevine/sdk/grapevine_ffi.kt")).unwrap();
    assert!(kotlin.contains("package org.grapevine.sdk"));
    assert!(kotlin.contains("suspend fun `capture`(`draft`: Draft): kotlin.String"), "capture is a suspend fun");
    let swift = std::fs::read_to_string(out.path().join("Grapevine.swift")).unwrap();
    assert!(swift.contains("func capture(draft: Draft)async throws  -> String"), "capture is async in Swift");
    assert!(out.path().join("GrapevineFFI.h").exists() && out.path().join("GrapevineFFI.modulemap").exists());
}

on_both_backends!(python_captures_enrols_syncs_and_reads_status);
