//! Boundary import benchmark for issue 15, item 12: reading, repairing and checking a boundary file whose rings
//! have many vertices, at 25,000, 100,000 and 1,000,000 vertices, beside `geo`'s own pairwise `Validation` (the
//! check the import ran before) where it finishes in reasonable time.
//!
//! cargo bench -p grapevine-tests --bench boundary_import -- --runs 5
//!
//! The file: four areas, the quarters of a disc about 100 km across at 53°N, meeting at its centre along straight
//! radii (shared exactly, so the overlap and gap checks have neighbours to compare). Each quarter's outer edge is a
//! coastline of `vertices / 4` points: bays a few kilometres across, plus seeded noise of about one vertex spacing,
//! so each segment is short beside the shape and no three points are collinear, as in a real file. It is written
//! as GeoJSON to a temporary file and read with `read_boundary_file`, as `grapevine boundaries import --check` does
//! (parsing, repairs, validity, overlaps and gaps), then loaded with `Boundaries::new` (the R-tree and the point grid
//! a server builds). Times are medians of `--runs` runs.
//!
//! It prints Markdown rows for docs/benchmarks.md.

use std::time::{Duration, Instant};

use geo::{Coord, LineString, MultiPolygon, Polygon, Validation};
use grapevine_server::geo::boundaries::validity::invalidities;
use grapevine_server::geo::boundaries::Boundaries;
use grapevine_server::geo::boundary_files::{read_boundary_file, ReadOptions};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Above this many vertices `geo`'s pairwise check is not run: it grows with the square (about 46 s at 100,000
/// vertices per the issue, so about 80 minutes at 1,000,000).
const MAX_VERTICES_FOR_PAIRWISE: usize = 100_000;

struct Args {
    n_runs: usize,
    sizes: Vec<usize>,
}

fn args() -> Args {
    let mut parsed = Args { n_runs: 5, sizes: vec![25_000, 100_000, 1_000_000] };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--runs" => {
                parsed.n_runs =
                    args.next().and_then(|n| n.parse::<usize>().ok()).expect("--runs takes a whole number").max(1);
            }
            "--vertices" => {
                let list = args.next().expect("--vertices takes a comma-separated list");
                parsed.sizes = list.split(',').map(|n| n.trim().parse().expect("a whole number")).collect();
            }
            _ => {} // cargo bench passes --bench
        }
    }
    parsed
}

/// The four quarters of a wiggly disc, `n_vertices` vertices in all, each ring closed and counter-clockwise.
fn quarters(n_vertices: usize, seed: u64) -> Vec<Polygon<f64>> {
    let mut rng = StdRng::seed_from_u64(seed);
    let centre = Coord { x: -2.0, y: 53.0 };
    let (radius_lon, radius_lat) = (0.75, 0.45);
    let per_arc = (n_vertices / 4).max(4) - 2;
    #[allow(clippy::cast_precision_loss)]
    let step = std::f64::consts::FRAC_PI_2 / per_arc as f64;
    (0..4)
        .map(|quarter| {
            let start = std::f64::consts::FRAC_PI_2 * f64::from(quarter);
            let mut coords = vec![centre];
            for vertex_idx in 0..=per_arc {
                // The ends are on the radii shared with the neighbours: computed alike on both sides, unwiggled.
                let (angle, wiggle) = if vertex_idx == 0 {
                    (start, 1.0)
                } else if vertex_idx == per_arc {
                    (std::f64::consts::FRAC_PI_2 * f64::from(quarter + 1), 1.0)
                } else {
                    // A coastline: bays a few kilometres across, and digitising noise of about one vertex spacing,
                    // so each segment is short beside the shape, as in a real file.
                    #[allow(clippy::cast_precision_loss)]
                    let angle = start + step * vertex_idx as f64;
                    (angle, 1.0 + 0.01 * (40.0 * angle).sin() + rng.random_range(-0.5..0.5) * step)
                };
                coords.push(Coord {
                    x: centre.x + radius_lon * wiggle * angle.cos(),
                    y: centre.y + radius_lat * wiggle * angle.sin(),
                });
            }
            coords.push(centre);
            Polygon::new(LineString::new(coords), vec![])
        })
        .collect()
}

fn geojson(polygons: &[Polygon<f64>]) -> String {
    let features: Vec<serde_json::Value> = polygons
        .iter()
        .enumerate()
        .map(|(quarter, polygon)| {
            let ring: Vec<[f64; 2]> = polygon.exterior().coords().map(|coord| [coord.x, coord.y]).collect();
            serde_json::json!({
                "type": "Feature",
                "properties": {"code": format!("Q{quarter}"), "name": format!("Quarter {quarter}")},
                "geometry": {"type": "Polygon", "coordinates": [ring]},
            })
        })
        .collect();
    serde_json::json!({"type": "FeatureCollection", "features": features}).to_string()
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn ms(duration: Duration) -> String {
    format!("{:.1} ms", duration.as_secs_f64() * 1000.0)
}

fn main() {
    let args = args();
    let dir = tempfile::tempdir().expect("a temporary directory");
    println!("| vertices | file | read, repair and check (`read_boundary_file`) | load (`Boundaries::new`) | validity check, ours (`invalidities`) | validity check, before (`geo` `Validation`) |");
    println!("| --- | --- | --- | --- | --- | --- |");
    for &n_vertices in &args.sizes {
        let polygons = quarters(n_vertices, 12);
        let n_written: usize = polygons.iter().map(|polygon| polygon.exterior().0.len()).sum();
        let text = geojson(&polygons);
        let path = dir.path().join(format!("quarters-{n_vertices}.geojson"));
        std::fs::write(&path, &text).expect("the file is written");

        let (mut reads, mut loads, mut ours, mut before) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for run in 0..args.n_runs {
            let started = Instant::now();
            let imported = read_boundary_file(&path, &ReadOptions::default()).expect("the generated file reads");
            reads.push(started.elapsed());
            assert_eq!(imported.areas.len(), 4);
            assert!(imported.report.repairs.is_empty() && imported.report.overlaps.is_empty(), "{}", imported.report);

            let started = Instant::now();
            let boundaries = Boundaries::new(imported.areas).expect("the areas load");
            loads.push(started.elapsed());
            assert!(boundaries.locate(-2.0 + 0.1, 53.0 + 0.1).is_some());

            for polygon in &polygons {
                let shape = MultiPolygon::new(vec![polygon.clone()]);
                let started = Instant::now();
                assert!(invalidities(&shape).is_empty());
                ours.push(started.elapsed());
                // Once, not every run: it takes seconds to minutes.
                if run == 0 && n_vertices <= MAX_VERTICES_FOR_PAIRWISE {
                    let started = Instant::now();
                    assert!(shape.is_valid());
                    before.push(started.elapsed());
                }
            }
        }
        // The validity checks are timed per ring; the four rings of a run are added up.
        let per_file = |samples: Vec<Duration>| {
            let runs: Vec<Duration> = samples.chunks(4).map(|ring_times| ring_times.iter().sum()).collect();
            median(runs)
        };
        let before = if before.is_empty() {
            "not run (quadratic)".to_owned()
        } else {
            format!("{} (one run)", ms(per_file(before)))
        };
        println!(
            "| {n_written} | {:.1} MB | {} | {} | {} | {before} |",
            text.len() as f64 / 1e6,
            ms(median(reads)),
            ms(median(loads)),
            ms(per_file(ours)),
        );
    }
}
