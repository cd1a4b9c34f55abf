//! Real boundary files as published: the ONS districts of 2022, 15 of them invalid, are repaired (each repair
//! reported with the area it changed), imported whole, and file points in the right district.

use std::path::{Path, PathBuf};

use crate::command::grapevine;
use grapevine_server::geo::boundaries::Boundaries;
use grapevine_server::geo::boundary_files::{read_boundary_file, ReadOptions, RepairKind};
use grapevine_tests::Backend;

fn districts_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/boundaries/uk-local-authority-districts-2022.geojson")
}

/// The districts whose geometry is invalid as published: rings crossing, touching or doubling back on themselves
/// (found with the checks of OGC simple features), or rings with fewer than three distinct points.
const INVALID_AS_PUBLISHED: [&str; 15] = [
    "E06000058", // Bournemouth, Christchurch and Poole: a ring of two distinct points
    "E07000045", // Teignbridge: a spike doubling back
    "E07000091", // New Forest
    "E07000123", // Preston
    "E08000014", // Sefton: a ring crossing itself
    "N09000004", // Causeway Coast and Glens
    "N09000005", // Derry City and Strabane
    "N09000010", // Newry, Mourne and Down
    "S12000013", // Na h-Eileanan Siar
    "S12000014", // Falkirk
    "S12000017", // Highland
    "S12000023", // Orkney Islands
    "S12000027", // Shetland Islands
    "S12000033", // Aberdeen City
    "W06000011", // Swansea
];

#[test]
fn the_ons_districts_are_repaired_and_every_repair_is_reported_with_its_area() {
    let imported = read_boundary_file(&districts_file(), &ReadOptions::default()).unwrap();
    assert_eq!(imported.areas.len(), 374);
    let report = &imported.report;
    let mut repaired: Vec<&str> = report.repairs.iter().map(|repair| repair.code.as_str()).collect();
    repaired.dedup();
    assert_eq!(repaired, INVALID_AS_PUBLISHED, "{report}");
    for repair in &report.repairs {
        match repair.kind {
            RepairKind::MadeValid { area_as_drawn_m2, .. } => {
                // The crossings are digitising slips: the rebuild moves well under a thousandth of a percent.
                let share = repair.kind.area_changed_m2() / area_as_drawn_m2;
                assert!(share < 1e-5, "{repair}");
            }
            RepairKind::DroppedDegenerateRings { .. } => assert_eq!(repair.kind.area_changed_m2(), 0.0),
            _ => panic!("unexpected repair: {repair}"),
        }
    }
    let text = report.to_string();
    assert!(text.starts_with("17 repair(s) in 15 feature(s), "), "{text}");
    assert!(
        text.contains("\n  feature 83 (E07000045 'Teignbridge'): rebuilt 1 polygon(s) whose rings cross or touch"),
        "{text}"
    );
    assert!(
        text.contains(": 962,209,441 m² as drawn, 962,209,274 m² after, 167 m² changed (under 0.001% of the area)\n"),
        "{text}"
    );
    assert!(
        text.contains("\n  feature 54 (E06000058 'Bournemouth, Christchurch and Poole'): dropped 1 ring(s) with fewer"),
        "{text}"
    );
    // Every exterior of the file is wound clockwise: reversing them is said apart, as no repair.
    assert_eq!(report.normalisations.iter().filter(|n| n.kind.label().starts_with("rings reversed")).count(), 374);
}

#[test]
fn points_in_the_repaired_districts_land_in_the_right_district() {
    let imported = read_boundary_file(&districts_file(), &ReadOptions::default()).unwrap();
    let boundaries = Boundaries::new(imported.areas).unwrap();
    let known = [
        ((-3.6106, 50.5290), "E07000045", "Newton Abbot, in Teignbridge (repaired)"),
        ((-3.5300, 50.7226), "E07000041", "Exeter, beside Teignbridge"),
        ((-1.5727, 50.8722), "E07000091", "Lyndhurst, in the New Forest (repaired)"),
        ((-2.6990, 53.7590), "E07000123", "Preston (repaired)"),
        ((-3.0053, 53.6475), "E08000014", "Southport, in Sefton (repaired)"),
        ((-6.3865, 58.2090), "S12000013", "Stornoway, in Na h-Eileanan Siar (repaired)"),
        ((-1.1450, 60.1530), "S12000027", "Lerwick, in Shetland (repaired)"),
        ((-4.2247, 57.4778), "S12000017", "Inverness, in Highland (repaired)"),
        ((-2.9590, 58.9810), "S12000023", "Kirkwall, in Orkney (repaired)"),
        ((-5.9301, 54.5967), "N09000003", "Belfast"),
        ((-3.1791, 51.4816), "W06000015", "Cardiff"),
        ((-2.1794, 53.0027), "E06000021", "Stoke-on-Trent"),
    ];
    for ((lon, lat), code, what) in known {
        let found = boundaries.locate(lon, lat).map(|area| area.code.as_str());
        assert_eq!(found, Some(code), "{what}");
    }
    assert!(boundaries.locate(-12.0, 55.0).is_none(), "the Atlantic is in no district");
}

async fn the_ons_districts_import_whole_from_the_command_line(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let (database_url, postgres_database) = grapevine_tests::fresh_database(backend, &dir).await;
    let _drop_database = grapevine_tests::DropDatabase(postgres_database);
    let file = districts_file();
    let imported = grapevine(&[
        "boundaries",
        "import",
        file.to_str().unwrap(),
        "--set",
        "districts",
        "--database-url",
        &database_url,
    ]);
    let stdout = String::from_utf8_lossy(&imported.stdout);
    assert!(imported.status.success(), "{stdout}{}", String::from_utf8_lossy(&imported.stderr));
    assert!(stdout.contains("17 repair(s) in 15 feature(s), "), "{stdout}");
    assert!(stdout.contains("Imported generation 1 of 'districts' (374 areas)"), "{stdout}");
    let listed = grapevine(&["boundaries", "list", "--database-url", &database_url]);
    let listing = String::from_utf8_lossy(&listed.stdout);
    assert!(listing.lines().any(|line| line.starts_with("districts") && line.contains(" 374 ")), "{listing}");
}

on_both_backends!(the_ons_districts_import_whole_from_the_command_line);
