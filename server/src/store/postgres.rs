//! The PostgreSQL backend: for real deployments and for several server nodes over one database.
//!
//! Conflicts between nodes surface as `SaveError::Conflict` (a version check failed, or PostgreSQL aborted a
//! transaction as a deadlock or serialization failure); the sync handler reloads, merges and tries again.
//!
//! Here: `PostgresStore`, opening and migrating it (`DatabaseStore`), the `LISTEN` connection behind the change feed,
//! and `classify`, which the aggregates' PostgreSQL implementations share; those are in each aggregate's
//! `postgres.rs`.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sqlx::postgres::{PgListener, PgPool, PgPoolOptions};

use super::generations::postgres::rebuild_pending_rollups;
use super::{check_not_newer, DatabaseStore, DocumentChanged, SaveError, CHANGE_FEED_CAPACITY};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The PostgreSQL store.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pub(super) pool: PgPool,
    /// Fed by one `LISTEN` connection, started on the first subscription, so every node hears every node's writes.
    pub(super) changes: tokio::sync::broadcast::Sender<DocumentChanged>,
    pub(super) listening: Arc<AtomicBool>,
}

/// The channel writes are announced on, in the transaction that makes them (PostgreSQL delivers on commit).
pub(super) const CHANGES_CHANNEL: &str = "grapevine_documents";

impl PostgresStore {
    /// Connects and migrates.
    ///
    /// # Errors
    /// The database cannot be reached, is newer than this build, or a migration fails.
    pub async fn open(database_url: &str) -> anyhow::Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(10))
            .connect(database_url)
            .await
            .context("connecting to PostgreSQL")?;
        let applied: Option<i64> = sqlx::query_scalar(
            "SELECT MAX(version) FROM _sqlx_migrations WHERE to_regclass('_sqlx_migrations') IS NOT NULL",
        )
        .fetch_optional(&pool)
        .await
        .unwrap_or(None);
        check_not_newer(applied, &MIGRATOR)?;
        MIGRATOR.run(&pool).await.context("applying PostgreSQL migrations")?;
        rebuild_pending_rollups(&pool).await.context("rebuilding roll-ups after a migration")?;
        fill_capture_offsets(&pool).await.context("keeping the phones' offsets of insights stored before 0015")?;
        let (changes, _) = tokio::sync::broadcast::channel(CHANGE_FEED_CAPACITY);
        Ok(PostgresStore { pool, changes, listening: Arc::new(AtomicBool::new(false)) })
    }

    /// Relays notifications into the broadcast channel. `PgListener` reconnects on its own; what is announced while
    /// it is reconnecting is missed, and devices catch up at their next sync.
    pub(super) async fn listen(pool: PgPool, changes: tokio::sync::broadcast::Sender<DocumentChanged>) {
        let mut listener = loop {
            match PgListener::connect_with(&pool).await {
                Ok(mut listener) => match listener.listen(CHANGES_CHANNEL).await {
                    Ok(()) => break listener,
                    Err(error) => tracing::warn!(%error, "LISTEN failed; retrying"),
                },
                Err(error) => tracing::warn!(%error, "cannot open the LISTEN connection; retrying"),
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        };
        loop {
            match listener.recv().await {
                Ok(notification) => {
                    if let Some(change) = parse_change(notification.payload()) {
                        let _ = changes.send(change);
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "LISTEN connection lost; reconnecting");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }
}

/// Insights stored before migration 0015 kept `captured_at` as an instant only; their documents still hold the
/// RFC 3339 text the phone wrote, so the offset is read back from there (a thousand at a time; a document that
/// cannot be read keeps UTC, `0`). Runs at every start and finds nothing once done.
async fn fill_capture_offsets(pool: &PgPool) -> anyhow::Result<()> {
    use automerge::ReadDoc;
    loop {
        let pending: Vec<(uuid::Uuid, String)> = sqlx::query_as(
            "SELECT id, doc_id FROM insights WHERE captured_at IS NOT NULL AND captured_offset_minutes IS NULL
             LIMIT 1000",
        )
        .fetch_all(pool)
        .await?;
        if pending.is_empty() {
            return Ok(());
        }
        for (id, doc_id) in pending {
            let chunks: Vec<Vec<u8>> =
                sqlx::query_scalar("SELECT bytes FROM document_chunks WHERE doc_id = $1 ORDER BY seq")
                    .bind(&doc_id)
                    .fetch_all(pool)
                    .await?;
            let written = automerge::AutoCommit::load(&chunks.concat()).ok().and_then(|doc| {
                match doc.get(automerge::ROOT, "captured_at") {
                    Ok(Some((automerge::Value::Scalar(value), _))) => value.to_str().map(str::to_owned),
                    _ => None,
                }
            });
            let minutes = written
                .and_then(|text| {
                    time::OffsetDateTime::parse(&text, &time::format_description::well_known::Rfc3339).ok()
                })
                .map_or(0, crate::store::documents::offset_minutes);
            sqlx::query("UPDATE insights SET captured_offset_minutes = $2 WHERE id = $1")
                .bind(id)
                .bind(minutes)
                .execute(pool)
                .await?;
        }
    }
}

fn parse_change(payload: &str) -> Option<DocumentChanged> {
    let mut parts = payload.split(' ');
    let collector_id = parts.next()?.parse().ok()?;
    let doc_id = parts.next()?.parse().ok()?;
    let writer = parts.next()?.parse().ok()?;
    Some(DocumentChanged { doc_id, collector_id, writer })
}

/// Deadlocks and serialization failures are another writer winning a race: retry, like a version conflict.
pub(super) fn classify(error: sqlx::Error) -> SaveError {
    if let sqlx::Error::Database(database_error) = &error {
        if matches!(database_error.code().as_deref(), Some("40001" | "40P01")) {
            return SaveError::Conflict;
        }
    }
    SaveError::Database(error.into())
}

#[async_trait::async_trait]
impl DatabaseStore for PostgresStore {
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
