//! The API's description is checked against the live server by schemathesis (PyPI): it reads
//! `/api/v1/openapi.json`, sends what the description allows (and what it does not), as an analyst, and fails on any
//! 5xx or any answer the description does not say. Its pinned version is in `tests/python/requirements-openapi.txt`;
//! it is installed into a virtual environment under the build directory the first time (pip, by package name).

use std::path::PathBuf;
use std::process::Command;

use grapevine_tests::points::{ABBEY_HULTON, JOINERS_SQUARE};
use grapevine_tests::{Backend, Phone, TestApp};

/// The schemathesis command, installed on first use.
fn schemathesis() -> PathBuf {
    let venv = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("schemathesis-venv");
    let command = venv.join("bin/schemathesis");
    let requirements = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("python/requirements-openapi.txt");
    let pinned = std::fs::read_to_string(&requirements).unwrap();
    let stamp = venv.join("installed-requirements.txt");
    if command.exists() && std::fs::read_to_string(&stamp).is_ok_and(|installed| installed == pinned) {
        return command;
    }
    let run = |program: &std::path::Path, args: &[&str]| {
        let status = Command::new(program).args(args).status().unwrap_or_else(|error| panic!("{program:?}: {error}"));
        assert!(status.success(), "{program:?} {args:?} failed: schemathesis is needed to check the API description");
    };
    run(std::path::Path::new("python3"), &["-m", "venv", venv.to_str().unwrap()]);
    run(&venv.join("bin/pip"), &["install", "--quiet", "-r", requirements.to_str().unwrap()]);
    std::fs::write(&stamp, pinned).unwrap();
    command
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_and_every_answer_as_described() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    // Something to read, so the insight routes answer with items and not only refusals.
    let phone = Phone::new(&app, "Barber").await;
    phone.capture_at("drugs", JOINERS_SQUARE.1, JOINERS_SQUARE.2, Some(2)).await;
    phone.capture_at("asb", ABBEY_HULTON.1, ABBEY_HULTON.2, None).await;
    phone.sync(&app).await.unwrap();
    let command = schemathesis();
    let url = format!("{}/api/v1/openapi.json", app.http_url());
    let header = format!("Authorization: Bearer {}", app.analyst_token);
    let output = tokio::task::spawn_blocking(move || {
        Command::new(command)
            .args([
                "run",
                &url,
                "--header",
                &header,
                "--checks",
                "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
                "--max-examples",
                "25",
                "--seed",
                "18",
                "--no-color",
            ])
            .env("SCHEMATHESIS_HOOKS", "")
            // Its cache of what it found goes beside its environment, not into the repository.
            .current_dir(env!("CARGO_TARGET_TMPDIR"))
            .output()
            .expect("schemathesis runs")
    })
    .await
    .unwrap();
    let said = format!("{}\n{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "schemathesis found problems:\n{said}");
    assert!(said.contains("/api/v1/insights"), "it tried the insight routes:\n{said}");
}
