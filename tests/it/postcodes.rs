//! `grapevine postcodes import` through the real binary: a repeated row is counted once and said so, a postcode
//! given twice with different positions or a position outside WGS84 refuses the whole file with the line and a
//! stable code, and the report tells new postcodes from replaced ones.

use crate::command::GRAPEVINE;
use grapevine_tests::{Backend, TestApp};

fn import(database_url: &str, dir: &std::path::Path, name: &str, csv: &str) -> std::process::Output {
    let file = dir.join(name);
    std::fs::write(&file, csv).unwrap();
    std::process::Command::new(GRAPEVINE)
        .args(["postcodes", "import", file.to_str().unwrap(), "--database-url", database_url])
        .output()
        .unwrap()
}

fn succeeded(output: &std::process::Output) -> String {
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn refused(output: &std::process::Output) -> String {
    assert!(!output.status.success(), "expected a refusal: {}", String::from_utf8_lossy(&output.stdout));
    String::from_utf8_lossy(&output.stderr).into_owned()
}

async fn duplicates_are_reported_and_out_of_range_positions_refused(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let url = &app.database_url;
    let directory = "pcds,lat,long\n\
                     ST4 2DE,53.003,-2.179\n\
                     ST5 1AA,53.01,-2.23\n\
                     st42de,53.003,-2.179\n\
                     ZZ9 9ZZ,99.999999,0.000000\n";
    let said = succeeded(&import(url, dir.path(), "directory.csv", directory));
    assert!(
        said.contains("Imported 2 postcodes") && said.contains("2 new, 0 replaced"),
        "two postcodes, not three rows: {said}"
    );
    assert!(said.contains("1 without a position left out, 1 repeated rows counted once"), "{said}");
    assert_eq!(app.store.postcode_centroid("ST4 2DE").await.unwrap(), Some((53.003, -2.179)));

    let conflicting = "pcds,lat,long\nST6 3BB,53.05,-2.2\nST4 2DE,53.003,-2.179\nST4 2DE,52.9,-2.179\n";
    let error = refused(&import(url, dir.path(), "conflicting.csv", conflicting));
    assert!(error.contains("postcodes_duplicate_conflict"), "{error}");
    assert!(error.contains("line 4: ST4 2DE is also on line 3 with another position"), "{error}");

    let out_of_range = "pcds,lat,long\nST6 3BB,53.05,-2.2\nST7 1AA,95.5,-2.2\n";
    let error = refused(&import(url, dir.path(), "out-of-range.csv", out_of_range));
    assert!(error.contains("postcodes_position_out_of_range"), "{error}");
    assert!(error.contains("line 3: ST7 1AA has latitude 95.5"), "{error}");
    assert_eq!(app.store.postcode_centroid("ST6 3BB").await.unwrap(), None, "a refused file imports nothing");
    assert_eq!(app.store.postcode_centroid("ST4 2DE").await.unwrap(), Some((53.003, -2.179)), "nor changes anything");

    let again = succeeded(&import(url, dir.path(), "directory.csv", directory));
    assert!(again.contains("0 new, 2 replaced"), "{again}");
}

on_both_backends!(duplicates_are_reported_and_out_of_range_positions_refused);
