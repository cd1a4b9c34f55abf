//! Point-in-polygon benchmark for issue #6: `Boundaries::locate` on the bundled wards, on one thread, beside PostGIS
//! (a GiST-indexed `ST_Contains` join, and the same with `ST_Covers`, over the same points and polygons, one core) in
//! the same run.
//!
//! PostGIS gets GiST indexes on both tables, and the planner then runs the join polygon by polygon, fetching each
//! polygon's points from the points' index (so each polygon is prepared once and reused). That is the fast way to
//! run this join; the rate without the points' index (point by point, the polygons' index probed for each) is
//! measured once too, before that index is built.
//!
//! cargo bench -p grapevine-tests --bench geotag -- --points 1000000 --runs 5
//!
//! The points are seeded uniform random points over the wards' bounding box. The polygons go to PostgreSQL as WKT
//! written from the coordinates `Boundaries` holds, so both sides test the very same doubles. PostGIS runs in a fresh
//! scratch database (`CREATE EXTENSION postgis`; the Debian package is postgresql-15-postgis-3), dropped at the end.
//! Runs alternate (ours, `ST_Contains`, `ST_Covers`, ours, …) so machine noise hits both alike; rates are medians.
//!
//! It prints Markdown rows for docs/benchmarks.md.

use std::hint::black_box;
use std::time::{Duration, Instant};

use geo::LineString;
use grapevine_server::geo::boundaries::{Area, Boundaries};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sqlx::Connection;

/// Points sent to PostgreSQL per `INSERT`.
const INSERT_CHUNK: usize = 100_000;

struct Args {
    n_points: usize,
    n_runs: usize,
    seed: u64,
}

fn args() -> Args {
    let mut parsed = Args { n_points: 1_000_000, n_runs: 5, seed: 6 };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut number = |name: &str| -> u64 {
            args.next().and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("{name} takes a whole number"))
        };
        match arg.as_str() {
            "--points" => parsed.n_points = usize::try_from(number("--points")).unwrap(),
            "--runs" => parsed.n_runs = usize::try_from(number("--runs")).unwrap().max(1),
            "--seed" => parsed.seed = number("--seed"),
            _ => {} // cargo bench passes --bench
        }
    }
    parsed
}

/// The box around every area: (min lon, min lat, max lon, max lat).
fn bounding_box(areas: &[Area]) -> (f64, f64, f64, f64) {
    let mut bbox = (f64::INFINITY, f64::INFINITY, f64::NEG_INFINITY, f64::NEG_INFINITY);
    for coord in areas.iter().flat_map(|area| &area.shape.0).flat_map(|polygon| polygon.exterior().coords()) {
        bbox = (bbox.0.min(coord.x), bbox.1.min(coord.y), bbox.2.max(coord.x), bbox.3.max(coord.y));
    }
    bbox
}

/// `MULTIPOLYGON(((x y, …), …), …)`; Rust writes the shortest text that reads back as the same double.
fn wkt(area: &Area) -> String {
    let ring = |ring: &LineString<f64>| {
        let coords: Vec<String> = ring.coords().map(|c| format!("{} {}", c.x, c.y)).collect();
        format!("({})", coords.join(", "))
    };
    let polygons: Vec<String> = area
        .shape
        .0
        .iter()
        .map(|polygon| {
            let rings: Vec<String> = std::iter::once(polygon.exterior()).chain(polygon.interiors()).map(ring).collect();
            format!("({})", rings.join(", "))
        })
        .collect();
    format!("MULTIPOLYGON({})", polygons.join(", "))
}

#[allow(clippy::cast_precision_loss)]
fn per_second(n: usize, elapsed: Duration) -> f64 {
    n as f64 / elapsed.as_secs_f64()
}

fn median(mut durations: Vec<Duration>) -> Duration {
    durations.sort();
    durations[durations.len() / 2]
}

/// One pass of `locate` over every point on this thread: how many points fell in an area, and how long it took.
fn run_locate(boundaries: &Boundaries, points: &[(f64, f64)]) -> (usize, Duration) {
    let started = Instant::now();
    let mut n_inside = 0;
    for &(lon, lat) in points {
        if black_box(boundaries.locate(black_box(lon), black_box(lat))).is_some() {
            n_inside += 1;
        }
    }
    (n_inside, started.elapsed())
}

/// One run of the join inside PostgreSQL: its count, and the time the client waited for it.
async fn run_join(db: &mut sqlx::PgConnection, predicate: &str) -> (i64, Duration) {
    let query = format!("SELECT count(*) FROM bench_points p JOIN bench_areas a ON {predicate}(a.shape, p.geom)");
    let started = Instant::now();
    let n_matches: i64 = sqlx::query_scalar(&query).fetch_one(&mut *db).await.unwrap();
    (n_matches, started.elapsed())
}

/// Drops the scratch database however the run ends.
struct ScratchDatabase(String);

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        grapevine_tests::drop_postgres_database(&self.0);
    }
}

async fn load_postgis(boundaries: &Boundaries, points: &[(f64, f64)]) -> (sqlx::PgConnection, ScratchDatabase) {
    let admin_url = grapevine_tests::postgres_admin_url();
    let name = format!("grapevine_geotag_{}", uuid::Uuid::new_v4().simple());
    let mut admin = sqlx::PgConnection::connect(&admin_url).await.expect("PostgreSQL must answer on 127.0.0.1:5432");
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut admin).await.unwrap();
    let scratch = ScratchDatabase(name.clone());
    let base = admin_url.rsplit_once('/').map_or(admin_url.as_str(), |(base, _)| base);
    let mut db = sqlx::PgConnection::connect(&format!("{base}/{name}")).await.unwrap();
    sqlx::query("CREATE EXTENSION postgis")
        .execute(&mut db)
        .await
        .expect("PostGIS must be installed (Debian: apt-get install postgresql-15-postgis-3)");
    sqlx::query("CREATE TABLE bench_areas (code TEXT PRIMARY KEY, shape geometry(MultiPolygon, 4326) NOT NULL)")
        .execute(&mut db)
        .await
        .unwrap();
    for area in boundaries.areas() {
        sqlx::query("INSERT INTO bench_areas (code, shape) VALUES ($1, ST_GeomFromText($2, 4326))")
            .bind(&area.code)
            .bind(wkt(area))
            .execute(&mut db)
            .await
            .unwrap();
    }
    sqlx::query("CREATE TABLE bench_points (id INTEGER PRIMARY KEY, geom geometry(Point, 4326) NOT NULL)")
        .execute(&mut db)
        .await
        .unwrap();
    for (chunk_idx, chunk) in points.chunks(INSERT_CHUNK).enumerate() {
        let first_id = i32::try_from(chunk_idx * INSERT_CHUNK).unwrap();
        let (lons, lats): (Vec<f64>, Vec<f64>) = chunk.iter().copied().unzip();
        sqlx::query(
            "INSERT INTO bench_points (id, geom)
             SELECT $1 + ordinality::INTEGER - 1, ST_SetSRID(ST_MakePoint(lon, lat), 4326)
             FROM unnest($2::FLOAT8[], $3::FLOAT8[]) WITH ORDINALITY AS t(lon, lat, ordinality)",
        )
        .bind(first_id)
        .bind(lons)
        .bind(lats)
        .execute(&mut db)
        .await
        .unwrap();
    }
    for statement in [
        "CREATE INDEX bench_areas_shape ON bench_areas USING GIST (shape)",
        "VACUUM ANALYZE bench_areas",
        "VACUUM ANALYZE bench_points",
        // One core, like our side: no parallel workers for the join.
        "SET max_parallel_workers_per_gather = 0",
    ] {
        sqlx::query(statement).execute(&mut db).await.unwrap();
    }
    (db, scratch)
}

/// The planner's plan for the `ST_Contains` join.
async fn plan(db: &mut sqlx::PgConnection) -> Vec<String> {
    sqlx::query_scalar("EXPLAIN SELECT count(*) FROM bench_points p JOIN bench_areas a ON ST_Contains(a.shape, p.geom)")
        .fetch_all(&mut *db)
        .await
        .unwrap()
}

/// Builds the GiST index on the points: how long it took.
async fn index_points(db: &mut sqlx::PgConnection) -> Duration {
    let started = Instant::now();
    sqlx::query("CREATE INDEX bench_points_geom ON bench_points USING GIST (geom)").execute(&mut *db).await.unwrap();
    let elapsed = started.elapsed();
    sqlx::query("VACUUM ANALYZE bench_points").execute(&mut *db).await.unwrap();
    elapsed
}

fn main() {
    let Args { n_points, n_runs, seed } = args();
    let load_started = Instant::now();
    let boundaries = Boundaries::bundled();
    let load_time = load_started.elapsed();
    let (min_lon, min_lat, max_lon, max_lat) = bounding_box(boundaries.areas());
    let mut rng = StdRng::seed_from_u64(seed);
    let points: Vec<(f64, f64)> =
        (0..n_points).map(|_| (rng.random_range(min_lon..=max_lon), rng.random_range(min_lat..=max_lat))).collect();

    // PostgreSQL's client runs on this same thread, idle while the server works: our side keeps one thread.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (mut db, scratch) = runtime.block_on(load_postgis(&boundaries, &points));
    let postgis_version: String =
        runtime.block_on(sqlx::query_scalar("SELECT postgis_full_version()").fetch_one(&mut db)).unwrap();
    eprintln!("{postgis_version}");

    // Once, without the points' index: the planner probes the polygons' index point by point.
    let point_by_point_plan = runtime.block_on(plan(&mut db));
    eprintln!("ST_Contains plan without the points' index:\n{}", point_by_point_plan.join("\n"));
    assert!(point_by_point_plan.iter().any(|line| line.contains("bench_areas_shape")), "the join must use an index");
    let (n_point_by_point, point_by_point) = runtime.block_on(run_join(&mut db, "ST_Contains"));
    eprintln!("point by point: {:.0} points/s", per_second(n_points, point_by_point));

    let points_index_time = runtime.block_on(index_points(&mut db));
    let polygon_by_polygon_plan = runtime.block_on(plan(&mut db));
    eprintln!("ST_Contains plan with both indexes:\n{}", polygon_by_polygon_plan.join("\n"));
    assert!(
        polygon_by_polygon_plan.iter().any(|line| line.contains("bench_points_geom")),
        "the join must use an index"
    );

    let (mut ours, mut contains, mut covers) = (Vec::new(), Vec::new(), Vec::new());
    let (mut n_inside, mut n_contains, mut n_covers) = (0, 0, 0);
    for run in 0..n_runs {
        let (n, elapsed) = run_locate(&boundaries, &points);
        ours.push(elapsed);
        n_inside = n;
        let (n, elapsed) = runtime.block_on(run_join(&mut db, "ST_Contains"));
        contains.push(elapsed);
        n_contains = n;
        let (n, elapsed) = runtime.block_on(run_join(&mut db, "ST_Covers"));
        covers.push(elapsed);
        n_covers = n;
        eprintln!(
            "run {}: locate {:.0} points/s, ST_Contains {:.0} points/s, ST_Covers {:.0} points/s",
            run + 1,
            per_second(n_points, ours[run]),
            per_second(n_points, contains[run]),
            per_second(n_points, covers[run])
        );
    }
    drop(db);
    drop(scratch);

    let ours_rate = per_second(n_points, median(ours));
    let contains_rate = per_second(n_points, median(contains));
    let covers_rate = per_second(n_points, median(covers));
    println!("| measure | Grapevine `Boundaries::locate`, one thread | anchor: PostGIS GiST join, one core | ratio |");
    println!("| --- | --- | --- | --- |");
    println!(
        "| {n_points} random points over the wards' box, `ST_Contains` join, GiST on both tables (median of {n_runs}) | {ours_rate:.0} points/s ({n_inside} in a ward) | {contains_rate:.0} points/s ({n_contains} matches) | {:.1} |",
        ours_rate / contains_rate
    );
    println!(
        "| the same, `ST_Covers` join (median of {n_runs}) | {ours_rate:.0} points/s ({n_inside} in a ward) | {covers_rate:.0} points/s ({n_covers} matches) | {:.1} |",
        ours_rate / covers_rate
    );
    println!(
        "| the same, `ST_Contains`, without the points' GiST index (one run; the polygons' index probed per point) | {ours_rate:.0} points/s | {:.0} points/s ({n_point_by_point} matches) | {:.1} |",
        per_second(n_points, point_by_point),
        ours_rate / per_second(n_points, point_by_point)
    );
    println!(
        "| load and index the {} bundled wards (`Boundaries::bundled`) / build the points' GiST index | {:.2} ms | {:.2} ms | |",
        boundaries.areas().len(),
        load_time.as_secs_f64() * 1e3,
        points_index_time.as_secs_f64() * 1e3
    );
}
