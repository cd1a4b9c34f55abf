//! `AuditStore` on SQLite: `at` is stored as `audit::canonical_time` text (fixed width, so text order is time order),
//! and the write lock, taken at `BEGIN IMMEDIATE`, serialises appenders.

use anyhow::Context;
use futures_util::stream::BoxStream;
use sqlx::sqlite::SqliteRow;
use sqlx::{FromRow, Row, SqliteConnection};
use time::OffsetDateTime;

use super::{chain_head, page_parameters, page_query, paged, AuditRow, AuditStore, HEAD, INSERT};
use crate::audit::NewAuditEntry;
use crate::audit::{canonical_json, canonical_time, parse_canonical_time, AuditEntry, AuditFilter};
use crate::store::SqliteStore;

/// Appends an entry inside the caller's transaction, so an action and its entry commit together or not at all.
/// The transaction must have been begun with `BEGIN IMMEDIATE`: it then holds the write lock from its first statement,
/// and no other connection can read the same head.
///
/// # Errors
/// The detail holds a fractional number, or the database refused.
pub(crate) async fn append_in_transaction(
    connection: &mut SqliteConnection,
    new: NewAuditEntry,
) -> anyhow::Result<AuditEntry> {
    let head: Option<(i64, String, Vec<u8>)> = sqlx::query_as(HEAD).fetch_optional(&mut *connection).await?;
    let head = head.map(|(seq, at, hash)| chain_head(seq, stored_time(seq, &at)?, hash)).transpose()?;
    let entry = AuditEntry::next(new, head, OffsetDateTime::now_utc())?;
    sqlx::query(INSERT)
        .bind(entry.seq)
        .bind(canonical_time(entry.at))
        .bind(&entry.actor)
        .bind(&entry.role)
        .bind(&entry.action)
        .bind(&entry.target)
        .bind(entry.outcome.as_str())
        .bind(&entry.client_addr)
        .bind(&entry.request_id)
        .bind(canonical_json(&entry.detail)?)
        .bind(&entry.prev_hash[..])
        .bind(&entry.hash[..])
        .execute(&mut *connection)
        .await?;
    Ok(entry)
}

/// An entry from a row of a page: its time is `audit::canonical_time` text.
fn audit_entry(row: &SqliteRow) -> anyhow::Result<AuditEntry> {
    let audit_row = AuditRow::from_row(row)?;
    let at = stored_time(audit_row.seq, row.try_get("at")?)?;
    audit_row.into_entry(at)
}

/// A stored time, which must be in `audit::canonical_time` form.
fn stored_time(seq: i64, text: &str) -> anyhow::Result<OffsetDateTime> {
    parse_canonical_time(text).with_context(|| format!("audit entry {seq}: its time is not in canonical form"))
}

#[async_trait::async_trait]
impl AuditStore for SqliteStore {
    async fn append_audit(&self, entry: NewAuditEntry) -> anyhow::Result<AuditEntry> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.context("appending to the audit trail")?;
        let entry = append_in_transaction(&mut tx, entry).await.context("appending to the audit trail")?;
        tx.commit().await.context("appending to the audit trail")?;
        Ok(entry)
    }

    fn audit_entries(&self, filter: AuditFilter) -> BoxStream<'_, anyhow::Result<AuditEntry>> {
        let pool = &self.pool;
        let (sql, (texts, times)) = (page_query(&filter), page_parameters(&filter));
        paged(filter.cursor, move |after| {
            let (sql, texts, times) = (sql.clone(), texts.clone(), times.clone());
            async move {
                let mut query = sqlx::query(&sql).bind(after);
                for text in texts {
                    query = query.bind(text);
                }
                for at in times {
                    query = query.bind(canonical_time(at));
                }
                let rows = query.fetch_all(pool).await.context("reading the audit trail")?;
                rows.iter().map(audit_entry).collect()
            }
        })
    }
}
