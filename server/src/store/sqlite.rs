//! The SQLite backend: one file, WAL, `synchronous=FULL` so that a committed write survives a power cut.
//!
//! Writers take the database lock up front (`BEGIN IMMEDIATE`) so a read-then-write transaction never fails half-way
//! on a lock upgrade; `busy_timeout` queues them.
//!
//! Here: `SqliteStore`, opening and migrating it (`DatabaseStore`), backup and restore, and the helpers the
//! aggregates' SQLite implementations share (`now_text`, `parse_time`); those are in each aggregate's `sqlite.rs`.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use grapevine_sync_proto::document::format_time;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use uuid::Uuid;

use super::generations::sqlite::rebuild_pending_rollups;
use super::{check_not_newer, DatabaseStore, DocumentChanged, CHANGE_FEED_CAPACITY};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// The SQLite store.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pub(super) pool: SqlitePool,
    /// The database file, which an export opens a connection of its own to (`insights/sqlite_export.rs`).
    pub(super) path: std::path::PathBuf,
    /// One process owns a SQLite database, so the change feed is in memory.
    pub(super) changes: tokio::sync::broadcast::Sender<DocumentChanged>,
}

impl SqliteStore {
    /// Opens (creating the file and its directory if needed) and migrates.
    ///
    /// # Errors
    /// The file cannot be created or opened, or a migration fails.
    pub async fn open(database_url: &str) -> anyhow::Result<Self> {
        let options = SqliteConnectOptions::from_str(database_url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        if let Some(parent) = Path::new(options.get_filename()).parent() {
            if !parent.as_os_str().is_empty() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("creating the database directory {}", parent.display()))?;
            }
        }
        let path = options.get_filename().to_owned();
        let pool = SqlitePoolOptions::new().max_connections(4).connect_with(options).await?;
        let applied: Option<i64> = sqlx::query_scalar(
            "SELECT MAX(version) FROM _sqlx_migrations WHERE EXISTS
                 (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations')",
        )
        .fetch_optional(&pool)
        .await
        .unwrap_or(None);
        check_not_newer(applied, &MIGRATOR)?;
        MIGRATOR.run(&pool).await.context("applying SQLite migrations")?;
        rebuild_pending_rollups(&pool).await.context("rebuilding roll-ups after a migration")?;
        let (changes, _) = tokio::sync::broadcast::channel(CHANGE_FEED_CAPACITY);
        Ok(SqliteStore { pool, path, changes })
    }
}

impl SqliteStore {
    /// Writes a consistent copy of the database to `path` (`VACUUM INTO`), safe while the server runs.
    ///
    /// # Errors
    /// `path` exists already, or the copy fails.
    pub async fn backup_to(&self, path: &Path) -> anyhow::Result<()> {
        anyhow::ensure!(!path.exists(), "{} exists already; backups never overwrite", path.display());
        let path_text = path.to_str().context("the backup path must be UTF-8")?;
        sqlx::query("VACUUM INTO ?1").bind(path_text).execute(&self.pool).await.context("writing the backup")?;
        Ok(())
    }

    /// Replaces the database at `database_url` with the backup at `from`. The backup is checked (readable, not newer
    /// than this build, migrated to it) on a copy first, so a bad backup leaves the database as it was. The server
    /// must be stopped.
    ///
    /// # Errors
    /// The backup is unreadable or newer than this build, or the files cannot be written.
    pub async fn restore(from: &Path, database_url: &str) -> anyhow::Result<()> {
        let target = SqliteConnectOptions::from_str(database_url)?.get_filename().to_path_buf();
        let staging = target.with_extension("restoring");
        let _ = std::fs::remove_file(&staging);
        if let Some(parent) = target.parent().filter(|parent| !parent.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::copy(from, &staging).with_context(|| format!("reading the backup {}", from.display()))?;
        let staging_url = format!("sqlite://{}", staging.display());
        let checked = SqliteStore::open(&staging_url).await;
        match checked {
            Ok(store) => {
                // A restored database is a new lineage: phones must re-offer whatever it lacks.
                sqlx::query("UPDATE meta SET value = ?1 WHERE key = 'storage_id'")
                    .bind(Uuid::new_v4().simple().to_string())
                    .execute(&store.pool)
                    .await?;
                sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&store.pool).await?;
                store.pool.close().await;
            }
            Err(error) => {
                let _ = std::fs::remove_file(&staging);
                return Err(error.context(format!("{} is not a usable backup", from.display())));
            }
        }
        for suffix in ["-wal", "-shm"] {
            let mut side_file = target.clone().into_os_string();
            side_file.push(suffix);
            let _ = std::fs::remove_file(side_file);
        }
        std::fs::rename(&staging, &target).context("moving the restored database into place")?;
        Ok(())
    }
}

pub(super) fn now_text() -> String {
    format_time(OffsetDateTime::now_utc())
}

pub(super) fn parse_time(text: Option<String>) -> Option<OffsetDateTime> {
    text.and_then(|text| OffsetDateTime::parse(&text, &Rfc3339).ok())
}

#[async_trait::async_trait]
impl DatabaseStore for SqliteStore {
    async fn storage_id(&self) -> anyhow::Result<String> {
        Ok(sqlx::query_scalar(super::STORAGE_ID).fetch_one(&self.pool).await?)
    }

    async fn schema_version(&self) -> anyhow::Result<i64> {
        Ok(sqlx::query_scalar(super::SCHEMA_VERSION).fetch_one(&self.pool).await?)
    }

    fn latest_migration(&self) -> i64 {
        super::latest_of(&MIGRATOR)
    }

    fn pool_usage(&self) -> super::PoolUsage {
        super::PoolUsage::of(&self.pool)
    }
}

#[cfg(test)]
pub(super) mod tests {
    use sqlx::Row;

    use super::*;
    use crate::store::prelude::*;
    use crate::store::{CodeHashes, DayRange, RedeemError};

    /// The statements both backends share (in each aggregate's `mod.rs`) number their parameters `$n`, as PostgreSQL
    /// needs: sqlx's SQLite driver binds `$n` by its number, not by where it stands in the statement or how often it
    /// appears, which is what lets them be written once.
    #[tokio::test]
    async fn sqlite_binds_dollar_parameters_by_their_number() {
        let pool = SqlitePoolOptions::new().connect("sqlite::memory:").await.unwrap();
        let (text, sum): (String, i64) = sqlx::query_as("SELECT $2 || '-' || $1 || '-' || $2, $3 + $3")
            .bind("first")
            .bind("second")
            .bind(20_i64)
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!((text.as_str(), sum), ("second-first-second", 40));
    }

    /// The collector a fixture's insights belong to; `collector_and_device` makes it, with its phone `d1`.
    pub(in crate::store) const FIXTURE_COLLECTOR: &str = "00000000-0000-0000-0000-0000000000c1";

    /// The statements that make `FIXTURE_COLLECTOR` and its device `d1`, which a fixture's documents and insights
    /// reference.
    pub(in crate::store) fn collector_and_device() -> Vec<String> {
        let collector = FIXTURE_COLLECTOR;
        vec![
            format!("INSERT INTO collectors (id, label, created_at) VALUES ('{collector}', 'barber', 'now')"),
            format!(
                "INSERT INTO devices (id, collector_id, label, token_hash, created_at)
                 VALUES ('d1', '{collector}', 'phone', 'hash', 'now')"
            ),
        ]
    }

    /// A database file in a new temporary directory (gone with the directory), migrated as released up to `last`:
    /// the directory, the database's URL and a pool of one connection to it.
    pub(in crate::store) async fn database_at(last: i64) -> (tempfile::TempDir, String, SqlitePool) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("old.db").display());
        let options = SqliteConnectOptions::from_str(&url).unwrap().create_if_missing(true).foreign_keys(true);
        let pool = SqlitePoolOptions::new().max_connections(1).connect_with(options).await.unwrap();
        migrate_up_to(&pool, dir.path(), last).await;
        (dir, url, pool)
    }

    /// Runs the migrations as released up to `last`, by a migrator that knows no later ones.
    async fn migrate_up_to(pool: &SqlitePool, dir: &Path, last: i64) {
        let released = dir.join("migrations");
        std::fs::create_dir(&released).unwrap();
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/sqlite");
        for entry in std::fs::read_dir(source).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if name.get(..4).and_then(|number| number.parse::<i64>().ok()).is_some_and(|number| number <= last) {
                std::fs::copy(&path, released.join(name)).unwrap();
            }
        }
        let migrator = sqlx::migrate::Migrator::new(released.as_path()).await.unwrap();
        assert_eq!(migrator.iter().count(), usize::try_from(last).unwrap());
        migrator.run(pool).await.unwrap();
    }

    /// 0009 keys invitation codes with the invitation secret: an invitation stored before it keeps its plain SHA-256,
    /// is listed as legacy and still enrols; only the legacy hash finds it.
    #[tokio::test]
    async fn an_invitation_made_before_the_secret_still_enrols_after_the_migration() {
        use crate::invitations::{legacy_hash_code, InvitationSecret};
        let (_dir, url, pool) = database_at(8).await;
        let code = "HNLY-7K4Q-PX";
        sqlx::query(
            "INSERT INTO invitations (id, label, code_hash, uses, uses_left, expires_at, created_at)
             VALUES ('00000000-0000-0000-0000-0000000000a1', 'Old cohort', ?1, 2, 2, '2999-01-01T00:00:00Z', 'now')",
        )
        .bind(legacy_hash_code(code))
        .execute(&pool)
        .await
        .unwrap();
        pool.close().await;

        let store = SqliteStore::open(&url).await.unwrap();
        assert!(store.invitations().await.unwrap()[0].legacy_hash);
        let secret = InvitationSecret::generate();
        let now = OffsetDateTime::now_utc();
        let keyed_only = CodeHashes { keyed: legacy_hash_code(code), legacy: "0".repeat(64) };
        assert!(
            matches!(store.redeem_invitation(&keyed_only, "", "token-1", None, now).await, Err(RedeemError::Unknown)),
            "a legacy row is not found as if keyed"
        );
        store.redeem_invitation(&secret.code_hashes("hnly 7k4q px"), "", "token-2", None, now).await.unwrap();
        assert_eq!(store.invitations().await.unwrap()[0].uses_left, 1);
        assert_eq!(store.open_keyed_invitations(now).await.unwrap(), 0, "a legacy invitation needs no secret");
    }

    /// 0008 moves contributors into the cells' rows and leaves the roll-ups to be rebuilt: a database written at
    /// 0007, with a contributor row per collector and cell, opens with its roll-ups rebuilt from the stored tags.
    #[tokio::test]
    async fn the_contributor_sets_migration_rebuilds_the_roll_ups() {
        let (_dir, url, pool) = database_at(7).await;
        let collector = FIXTURE_COLLECTOR;
        let mut statements = collector_and_device();
        statements.push(
            "INSERT INTO boundary_generations (id, set_name, generation, source, imported_at)
                 VALUES (1, 'wards', 1, 'bundled', 'now')"
                .to_owned(),
        );
        for (i, (day, category)) in
            [("2026-11-20", "drugs"), ("2026-11-21", "drugs"), ("2026-11-21", "road-safety")].into_iter().enumerate()
        {
            statements.push(format!(
                "INSERT INTO documents (doc_id, collector_id, version, updated_at) VALUES ('doc{i}', '{collector}', 1, 'now')"
            ));
            statements.push(format!(
                "INSERT INTO insights (id, doc_id, collector_id, device_id, captured_at, captured_day, category,
                     feeling_safe, channel, status, area_code, processed_at, tag_lat, tag_lon)
                 VALUES ('i{i}', 'doc{i}', '{collector}', 'd1', '{day}T17:45:00Z', '{day}', '{category}', 2, 'staff',
                     'filed', 'E05008737', 'now', 53.0, -2.1)"
            ));
            statements.push(format!(
                "INSERT INTO insight_areas (insight_id, generation_id, area_code, near_boundary)
                 VALUES ('i{i}', 1, 'E05008737', 0)"
            ));
        }
        // What 0007 held for them (only the year cell, enough to show it is replaced, not kept).
        statements.push(
            "INSERT INTO rollups VALUES (1, 'year', '2026-01-01', 'E05008737', '*', 99, 9, 0, 0, 0, 0, 0, 0, 0)"
                .to_owned(),
        );
        statements.push(format!(
            "INSERT INTO rollup_contributors VALUES (1, 'year', '2026-01-01', 'E05008737', '*', '{collector}', 99)"
        ));
        for statement in &statements {
            sqlx::query(statement).execute(&pool).await.unwrap();
        }
        pool.close().await;

        let store = SqliteStore::open(&url).await.unwrap();
        let everything = store.rollup(1, DayRange::default(), None, true, true).await.unwrap();
        assert_eq!(everything.len(), 1);
        let area = &everything[0];
        assert_eq!(
            (area.all.n, area.all.feeling_safe_sum, area.all.channels[0], area.contributors),
            (3, 6, 3, Some(1))
        );
        let categories: Vec<(&str, i64)> =
            area.by_category.iter().map(|category| (category.category.as_str(), category.sums.n)).collect();
        assert_eq!(categories, vec![("drugs", 2), ("road-safety", 1)]);
        let days =
            DayRange { from: Some(time::macros::date!(2026 - 11 - 20)), to: Some(time::macros::date!(2026 - 11 - 22)) };
        let two_days = store.rollup(1, days, Some("E05008737"), false, true).await.unwrap();
        assert_eq!((two_days[0].all.n, two_days[0].contributors), (3, Some(1)), "sets are unioned over two day cells");
        let left: i64 = sqlx::query_scalar(
            "SELECT (SELECT COUNT(*) FROM rollups_pending)
                  + (SELECT COUNT(*) FROM sqlite_master WHERE name = 'rollup_contributors')",
        )
        .fetch_one(&store.pool)
        .await
        .unwrap();
        assert_eq!(left, 0, "nothing pending, and the old table is gone");
    }

    /// 0004 rebuilds `insights` (SQLite cannot change a CHECK in place) and sets `insight_areas` aside meanwhile: a
    /// database written at migration 0003 must come through with every row, and then take withdrawn insights.
    #[tokio::test]
    async fn the_withdrawn_migration_keeps_every_insight_and_tag() {
        let (_dir, url, pool) = database_at(3).await;
        for statement in [
            "INSERT INTO collectors (id, label, created_at) VALUES ('00000000-0000-0000-0000-0000000000c1', 'Hanley barbers', '2026-11-20T00:00:00Z')",
            "INSERT INTO devices (id, collector_id, label, token_hash, created_at)
                 VALUES ('d1', '00000000-0000-0000-0000-0000000000c1', 'phone', 'hash', '2026-11-20T00:00:00Z')",
            "INSERT INTO documents (doc_id, collector_id, version, updated_at) VALUES ('doc1', '00000000-0000-0000-0000-0000000000c1', 1, 'now')",
            "INSERT INTO insights (id, doc_id, collector_id, device_id, captured_at, captured_day, category, status,
                 area_code, processed_at, postcode, tag_lat, tag_lon)
                 VALUES ('i1', 'doc1', '00000000-0000-0000-0000-0000000000c1', 'd1', '2026-11-20T17:45:00Z', '2026-11-20', 'drugs', 'filed',
                 'E05008737', '2026-11-20T17:46:00Z', 'ST4 2DE', 53.0, -2.1)",
            "INSERT INTO boundary_generations (id, set_name, generation, source, imported_at)
                 VALUES (1, 'wards', 1, 'bundled', 'now')",
            "INSERT INTO insight_areas (insight_id, generation_id, area_code, near_boundary)
                 VALUES ('i1', 1, 'E05008737', 0)",
        ] {
            sqlx::query(statement).execute(&pool).await.unwrap();
        }
        pool.close().await;

        let store = SqliteStore::open(&url).await.unwrap();
        let row = sqlx::query("SELECT category, status, postcode, tag_lat FROM insights WHERE id = 'i1'")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        assert_eq!(row.get::<String, _>("category"), "drugs");
        assert_eq!(row.get::<String, _>("status"), "filed");
        assert_eq!(row.get::<String, _>("postcode"), "ST4 2DE");
        assert_eq!(row.get::<f64, _>("tag_lat"), 53.0);
        let tag: String = sqlx::query_scalar("SELECT area_code FROM insight_areas WHERE insight_id = 'i1'")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        assert_eq!(tag, "E05008737");
        sqlx::query("UPDATE insights SET status = 'withdrawn' WHERE id = 'i1'").execute(&store.pool).await.unwrap();
        let refused = sqlx::query("UPDATE insights SET status = 'lost' WHERE id = 'i1'").execute(&store.pool).await;
        assert!(refused.is_err(), "the CHECK still holds");
        let orphan = sqlx::query(
            "INSERT INTO insight_areas (insight_id, generation_id, area_code, near_boundary) VALUES ('nobody', 1, '', 0)",
        )
        .execute(&store.pool)
        .await;
        assert!(orphan.unwrap_err().to_string().contains("FOREIGN KEY"), "the tags still refer to insights");
        let kept: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM sqlite_master WHERE name IN ('insights_rebuilt', 'insight_areas_kept')",
        )
        .fetch_one(&store.pool)
        .await
        .unwrap();
        assert_eq!(kept, 0, "no scaffolding left behind");
    }

    /// 0016 keeps each insight's `seq` beside its area tags: a database written before it comes through with every
    /// tag numbered as its insight.
    #[tokio::test]
    async fn the_tags_of_insights_stored_before_0016_carry_their_seq() {
        let (_dir, url, pool) = database_at(15).await;
        let collector = FIXTURE_COLLECTOR;
        let mut statements = collector_and_device();
        statements.push("INSERT INTO boundary_generations (id, set_name, generation, source, imported_at) VALUES (1, 'wards', 1, 'bundled', 'now'), (2, 'wards', 2, 'upload', 'now')".to_owned());
        for (i, seq) in [(1, 40), (2, 7)] {
            statements.push(format!(
                "INSERT INTO documents (doc_id, collector_id, version, updated_at) VALUES ('doc{i}', '{collector}', 1, 'now')"
            ));
            statements.push(format!(
                "INSERT INTO insights (id, doc_id, collector_id, device_id, status, processed_at, seq)
                 VALUES ('i{i}', 'doc{i}', '{collector}', 'd1', 'filed', 'now', {seq})"
            ));
            for generation in [1, 2] {
                statements.push(format!(
                    "INSERT INTO insight_areas (insight_id, generation_id, area_code, near_boundary)
                     VALUES ('i{i}', {generation}, 'E0500873{i}', 0)"
                ));
            }
        }
        for statement in &statements {
            sqlx::query(statement).execute(&pool).await.unwrap();
        }
        pool.close().await;

        let store = SqliteStore::open(&url).await.unwrap();
        let tags: Vec<(String, i64, Option<i64>)> = sqlx::query_as(
            "SELECT insight_id, generation_id, insight_seq FROM insight_areas ORDER BY insight_id, generation_id",
        )
        .fetch_all(&store.pool)
        .await
        .unwrap();
        let expected = [("i1", 1, 40), ("i1", 2, 40), ("i2", 1, 7), ("i2", 2, 7)];
        let expected: Vec<(String, i64, Option<i64>)> =
            expected.iter().map(|(id, generation, seq)| ((*id).to_owned(), *generation, Some(*seq))).collect();
        assert_eq!(tags, expected);
    }
}
