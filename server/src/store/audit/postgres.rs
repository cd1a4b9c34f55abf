//! `AuditStore` on PostgreSQL: appenders on every node serialise on one transaction-level advisory lock,
//! `AUDIT_CHAIN_LOCK`, taken before the head is read.

use anyhow::Context;
use futures_util::stream::BoxStream;
use sqlx::postgres::PgRow;
use sqlx::{FromRow, PgConnection, Row};
use time::OffsetDateTime;

use super::{chain_head, page_parameters, page_query, paged, AuditRow, AuditStore, HEAD, INSERT};
use crate::audit::{canonical_json, AuditEntry, AuditFilter, NewAuditEntry};
use crate::store::PostgresStore;

/// The advisory lock key of the audit chain: the ASCII bytes of `gv-audit` as a big-endian integer. Only appending to
/// the audit trail takes it.
pub(crate) const AUDIT_CHAIN_LOCK: i64 = i64::from_be_bytes(*b"gv-audit");

/// Appends an entry inside the caller's transaction, so an action and its entry commit together or not at all. Takes
/// `AUDIT_CHAIN_LOCK` (held to the transaction's end) before it reads the head: in READ COMMITTED the read that
/// follows sees every append committed before the lock was granted, on any node.
///
/// # Errors
/// The detail holds a fractional number, or the database refused.
pub(crate) async fn append_in_transaction(
    connection: &mut PgConnection,
    new: NewAuditEntry,
) -> anyhow::Result<AuditEntry> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(AUDIT_CHAIN_LOCK).execute(&mut *connection).await?;
    let head: Option<(i64, OffsetDateTime, Vec<u8>)> = sqlx::query_as(HEAD).fetch_optional(&mut *connection).await?;
    let head = head.map(|(seq, at, hash)| chain_head(seq, at, hash)).transpose()?;
    let entry = AuditEntry::next(new, head, OffsetDateTime::now_utc())?;
    sqlx::query(INSERT)
        .bind(entry.seq)
        .bind(entry.at)
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

/// An entry from a row of a page.
fn audit_entry(row: &PgRow) -> anyhow::Result<AuditEntry> {
    AuditRow::from_row(row)?.into_entry(row.try_get("at")?)
}

#[async_trait::async_trait]
impl AuditStore for PostgresStore {
    async fn append_audit(&self, entry: NewAuditEntry) -> anyhow::Result<AuditEntry> {
        let mut tx = self.pool.begin().await.context("appending to the audit trail")?;
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
                    query = query.bind(at);
                }
                let rows = query.fetch_all(pool).await.context("reading the audit trail")?;
                rows.iter().map(audit_entry).collect()
            }
        })
    }
}
