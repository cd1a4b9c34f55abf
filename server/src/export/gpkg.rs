//! GeoPackage (OGC 12-128r18, version 1.3): a SQLite file with the tables the standard requires
//! (`gpkg_spatial_ref_sys` with WGS 84 and the two undefined systems, `gpkg_contents`, `gpkg_geometry_columns`) and
//! one point layer, `insights`, whose rows are the export's columns and whose geometry is the standard's binary (a
//! `GP` header, then the point as little-endian WKB). A SQLite file cannot be written front to back, so it is
//! written to a temporary file through sqlx's SQLite driver, then streamed, and the file deleted however the
//! download ends.

use anyhow::Context;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection};
use tokio::io::AsyncReadExt;

use super::{ByteSink, Column, Cut, Kind, Rows, Value};

/// The layer's table.
pub const LAYER: &str = "insights";

/// `PRAGMA application_id`: "GPKG" as a big-endian 32-bit number.
const APPLICATION_ID: i32 = 0x4750_4B47;

/// `PRAGMA user_version`: version 1.3.0 of the standard.
const USER_VERSION: i32 = 10_300;

/// The coordinate reference system of every point: WGS 84 longitude, latitude.
const WGS84: i32 = 4326;

/// WGS 84's well-known text, as the EPSG registry defines it.
const WGS84_DEFINITION: &str = "GEOGCS[\"WGS 84\",DATUM[\"WGS_1984\",SPHEROID[\"WGS 84\",6378137,298.257223563,\
AUTHORITY[\"EPSG\",\"7030\"]],AUTHORITY[\"EPSG\",\"6326\"]],PRIMEM[\"Greenwich\",0,AUTHORITY[\"EPSG\",\"8901\"]],\
UNIT[\"degree\",0.0174532925199433,AUTHORITY[\"EPSG\",\"9122\"]],AUTHORITY[\"EPSG\",\"4326\"]]";

/// The tables the standard requires, and the rows it requires in them.
const REQUIRED_TABLES: &str = "
CREATE TABLE gpkg_spatial_ref_sys (
    srs_name TEXT NOT NULL,
    srs_id INTEGER NOT NULL PRIMARY KEY,
    organization TEXT NOT NULL,
    organization_coordsys_id INTEGER NOT NULL,
    definition TEXT NOT NULL,
    description TEXT
);
CREATE TABLE gpkg_contents (
    table_name TEXT NOT NULL PRIMARY KEY,
    data_type TEXT NOT NULL,
    identifier TEXT UNIQUE,
    description TEXT DEFAULT '',
    last_change DATETIME NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    min_x DOUBLE,
    min_y DOUBLE,
    max_x DOUBLE,
    max_y DOUBLE,
    srs_id INTEGER,
    CONSTRAINT fk_gc_r_srs_id FOREIGN KEY (srs_id) REFERENCES gpkg_spatial_ref_sys (srs_id)
);
CREATE TABLE gpkg_geometry_columns (
    table_name TEXT NOT NULL,
    column_name TEXT NOT NULL,
    geometry_type_name TEXT NOT NULL,
    srs_id INTEGER NOT NULL,
    z TINYINT NOT NULL,
    m TINYINT NOT NULL,
    CONSTRAINT pk_geom_cols PRIMARY KEY (table_name, column_name),
    CONSTRAINT uk_gc_table_name UNIQUE (table_name),
    CONSTRAINT fk_gc_tn FOREIGN KEY (table_name) REFERENCES gpkg_contents (table_name),
    CONSTRAINT fk_gc_srs FOREIGN KEY (srs_id) REFERENCES gpkg_spatial_ref_sys (srs_id)
);
INSERT INTO gpkg_spatial_ref_sys VALUES
    ('Undefined cartesian SRS', -1, 'NONE', -1, 'undefined', 'undefined cartesian coordinate reference system'),
    ('Undefined geographic SRS', 0, 'NONE', 0, 'undefined', 'undefined geographic coordinate reference system');
";

/// A point in the standard's geometry binary: `GP`, version 0, flags (little-endian, no envelope, not empty), the
/// system's id, then the point as WKB (little-endian, type 1, x = longitude, y = latitude).
#[must_use]
pub fn point_blob(lon: f64, lat: f64) -> Vec<u8> {
    let mut blob = Vec::with_capacity(29);
    blob.extend_from_slice(b"GP");
    blob.push(0);
    blob.push(0b0000_0001);
    blob.extend_from_slice(&WGS84.to_le_bytes());
    blob.push(1);
    blob.extend_from_slice(&1u32.to_le_bytes());
    blob.extend_from_slice(&lon.to_le_bytes());
    blob.extend_from_slice(&lat.to_le_bytes());
    blob
}

/// The SQL type a column is declared with (the standard's names).
fn declared(kind: Kind) -> &'static str {
    match kind {
        Kind::Text => "TEXT",
        Kind::Integer => "INTEGER",
        Kind::Real => "DOUBLE",
        Kind::Boolean => "BOOLEAN",
    }
}

/// A name as a quoted SQL identifier (the columns' names are plain, but `text` and the like are words SQL knows).
fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The smallest box holding every point so far.
#[derive(Debug, Default)]
struct Extent(Option<(f64, f64, f64, f64)>);

impl Extent {
    fn add(&mut self, (lon, lat): (f64, f64)) {
        self.0 = Some(match self.0 {
            None => (lon, lat, lon, lat),
            Some((min_x, min_y, max_x, max_y)) => (min_x.min(lon), min_y.min(lat), max_x.max(lon), max_y.max(lat)),
        });
    }
}

/// The statements that create the layer (and enter it in the GeoPackage's tables) and insert one feature (`$1` the
/// geometry, then the columns).
fn layer_statements(columns: &[Column]) -> (String, String) {
    let declarations: Vec<String> =
        columns.iter().map(|column| format!("{} {}", quoted(column.name), declared(column.kind))).collect();
    let create = format!(
        "CREATE TABLE {LAYER} (fid INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL, geom POINT, {});
         INSERT INTO gpkg_contents (table_name, data_type, identifier, description, srs_id)
             VALUES ('{LAYER}', 'features', 'Grapevine insights', 'Insights exported from Grapevine', {WGS84});
         INSERT INTO gpkg_geometry_columns VALUES ('{LAYER}', 'geom', 'POINT', {WGS84}, 0, 0);",
        declarations.join(", ")
    );
    let names: Vec<String> = columns.iter().map(|column| quoted(column.name)).collect();
    let placeholders: Vec<String> = (2..=columns.len() + 1).map(|at| format!("${at}")).collect();
    let insert = format!("INSERT INTO {LAYER} (geom, {}) VALUES ($1, {})", names.join(", "), placeholders.join(", "));
    (create, insert)
}

/// Inserts a batch of rows in one transaction.
async fn insert_batch(
    connection: &mut sqlx::SqliteConnection,
    insert: &str,
    batch: Vec<super::Row>,
) -> Result<(), sqlx::Error> {
    let mut tx = connection.begin().await?;
    for row in batch {
        let mut query = sqlx::query(insert).bind(row.point.map(|(lon, lat)| point_blob(lon, lat)));
        for value in row.values {
            query = match value {
                Value::Null => query.bind(None::<String>),
                Value::Text(text) => query.bind(text),
                Value::Integer(number) => query.bind(number),
                Value::Real(number) => query.bind(number),
                Value::Boolean(flag) => query.bind(flag),
            };
        }
        query.execute(&mut *tx).await?;
    }
    tx.commit().await
}

/// Writes the GeoPackage at `path`, returning when the file is closed.
async fn build(
    path: &std::path::Path,
    columns: &'static [Column],
    rows: &mut Rows,
    sink: &ByteSink,
) -> Result<(), Cut> {
    let mut connection = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        // The standard's files are rollback-journal SQLite; the file is thrown away if anything fails, so nothing
        // needs to survive a crash.
        .journal_mode(SqliteJournalMode::Delete)
        .synchronous(SqliteSynchronous::Off)
        .foreign_keys(true)
        .connect()
        .await
        .context("creating the GeoPackage")?;
    let identity = format!("PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = {USER_VERSION};");
    sqlx::query(&identity).execute(&mut connection).await.context("the file's identity")?;
    sqlx::query(REQUIRED_TABLES).execute(&mut connection).await.context("the GeoPackage's own tables")?;
    sqlx::query(
        "INSERT INTO gpkg_spatial_ref_sys VALUES ('WGS 84 geodetic', $1, 'EPSG', $1, $2,
             'longitude/latitude coordinates in decimal degrees on the WGS 84 spheroid')",
    )
    .bind(WGS84)
    .bind(WGS84_DEFINITION)
    .execute(&mut connection)
    .await
    .context("WGS 84")?;
    let (create_layer, insert) = layer_statements(columns);
    sqlx::query(&create_layer).execute(&mut connection).await.context("the insights layer")?;
    let mut extent = Extent::default();
    while let Some(batch) = rows.next().await {
        let batch = batch?;
        if sink.is_closed() {
            return Err(Cut::ClientGone);
        }
        for row in &batch {
            if let Some(point) = row.point {
                extent.add(point);
            }
        }
        insert_batch(&mut connection, &insert, batch).await.context("writing a batch of features")?;
    }
    if let Some((min_x, min_y, max_x, max_y)) = extent.0 {
        sqlx::query("UPDATE gpkg_contents SET min_x = $1, min_y = $2, max_x = $3, max_y = $4 WHERE table_name = $5")
            .bind(min_x)
            .bind(min_y)
            .bind(max_x)
            .bind(max_y)
            .bind(LAYER)
            .execute(&mut connection)
            .await
            .context("the layer's extent")?;
    }
    connection.close().await.context("closing the GeoPackage")?;
    Ok(())
}

/// Writes `rows` as a GeoPackage of `columns`, then sends the file.
///
/// # Errors
/// The rows cannot be read, the file cannot be written or read, or the client stopped reading.
pub async fn write(columns: &'static [Column], mut rows: Rows, sink: &mut ByteSink) -> Result<(), Cut> {
    // Deleted when dropped: after the file is sent, and on every way out before.
    let dir = tempfile::Builder::new().prefix("grapevine-export-").tempdir().context("a temporary directory")?;
    let path = dir.path().join("insights.gpkg");
    build(&path, columns, &mut rows, sink).await?;
    let mut file = tokio::fs::File::open(&path).await.context("opening the GeoPackage written")?;
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buffer).await.context("reading the GeoPackage written")?;
        if n == 0 {
            break;
        }
        sink.write(&buffer[..n]).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_point_is_a_header_then_little_endian_wkb() {
        let blob = point_blob(-2.25, 53.5);
        assert_eq!(blob.len(), 29);
        assert_eq!(&blob[..8], &[b'G', b'P', 0, 1, 0xE6, 0x10, 0, 0], "magic, version, flags, srs 4326");
        assert_eq!(&blob[8..13], &[1, 1, 0, 0, 0], "little-endian point");
        assert_eq!(f64::from_le_bytes(blob[13..21].try_into().unwrap()), -2.25);
        assert_eq!(f64::from_le_bytes(blob[21..29].try_into().unwrap()), 53.5);
        assert_eq!(APPLICATION_ID.to_be_bytes(), *b"GPKG");
    }
}
