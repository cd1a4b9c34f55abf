//! The audit trail's storage: `AuditStore`, with its SQLite and PostgreSQL implementations side by side.
//!
//! Appending reads the chain's head and inserts the next entry in one transaction under a lock that every appender
//! takes (SQLite's write lock, taken up front with `BEGIN IMMEDIATE`; on PostgreSQL a transaction-level advisory lock
//! on `AUDIT_CHAIN_LOCK`), so appends from every connection and every node serialise into one gap-free chain. The
//! table refuses `UPDATE` and `DELETE` itself (triggers in the migrations); nothing here tries either.
//!
//! Reading goes a page at a time in seq order (`seq > last` on the primary key), so a stream over a trail of any
//! length holds one page in memory and no transaction open between pages; entries are only ever added at the end, so
//! the pages are consistent.

// Each has `append_in_transaction`, for an action that writes its entry in its own transaction.
pub(crate) mod postgres;
pub(crate) mod sqlite;

use std::future::Future;

use anyhow::Context;
use futures_util::stream::{self, BoxStream};
use futures_util::{StreamExt, TryStreamExt};
use time::OffsetDateTime;

use crate::audit::{AuditCursor, AuditEntry, AuditFilter, AuditOutcome, ChainHead, NewAuditEntry};

/// Storage of the audit trail: append an entry, read entries in seq order.
#[async_trait::async_trait]
pub trait AuditStore: Send + Sync {
    /// Appends an entry at the head of the chain (seq one more than the head's, the head's hash as `prev_hash`, the
    /// time now, its hash) in one transaction, and returns it as stored.
    ///
    /// # Errors
    /// The detail holds a fractional number (`audit::DetailError`), or the database refused or could not be reached:
    /// then nothing was appended, and the action it records must not happen either.
    async fn append_audit(&self, entry: NewAuditEntry) -> anyhow::Result<AuditEntry>;

    /// The entries `filter` lets through, in seq order (or newest first, as its cursor says), a page at a time (the
    /// filter applied in SQL). A row that cannot be read as an entry is an error naming its seq.
    fn audit_entries(&self, filter: AuditFilter) -> BoxStream<'_, anyhow::Result<AuditEntry>>;
}

/// How many entries one page of `audit_entries` reads.
const PAGE_SIZE: usize = 1000;

/// The chain's head: the entry the next append follows.
const HEAD: &str = "SELECT seq, at, hash FROM audit_log ORDER BY seq DESC LIMIT 1";

/// Inserts an entry; the columns in `COLUMNS`' order.
const INSERT: &str = "INSERT INTO audit_log (seq, at, actor, role, action, target, outcome, client_addr, request_id, \
                      detail, prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)";

/// What a page reads, in the order `AuditRow` takes them.
const COLUMNS: &str = "seq, at, actor, role, action, target, outcome, client_addr, request_id, detail, prev_hash, hash";

/// The query for one page after seq `$1` (before it, newest first, for an `AuditCursor::Before`): the filter's
/// conditions for the fields it sets, bound in the order actor, action, since, until (each from `$2` on), then
/// `LIMIT`.
fn page_query(filter: &AuditFilter) -> String {
    let (from, order) = match filter.cursor {
        AuditCursor::After(_) => ("seq > $1", "seq"),
        AuditCursor::Before(_) => ("seq < $1", "seq DESC"),
    };
    let mut sql = format!("SELECT {COLUMNS} FROM audit_log WHERE {from}");
    let mut n = 1;
    let mut condition = |sql: &mut String, test: &str| {
        n += 1;
        sql.push_str(&format!(" AND {test} ${n}"));
    };
    if filter.actor.is_some() {
        condition(&mut sql, "actor =");
    }
    if filter.action.is_some() {
        condition(&mut sql, "action =");
    }
    if filter.since.is_some() {
        condition(&mut sql, "at >=");
    }
    if filter.until.is_some() {
        condition(&mut sql, "at <");
    }
    sql.push_str(&format!(" ORDER BY {order} LIMIT {PAGE_SIZE}"));
    sql
}

/// The values `page_query` binds after `$1`, in its order: the texts (actor, action), then the times (since, until),
/// each only if the filter sets it.
fn page_parameters(filter: &AuditFilter) -> (Vec<String>, Vec<OffsetDateTime>) {
    let texts = [&filter.actor, &filter.action].into_iter().flatten().cloned().collect();
    (texts, [filter.since, filter.until].into_iter().flatten().collect())
}

/// An audit row as read, but for its time (which the backends store as different types), before it is checked into
/// an `AuditEntry`.
#[derive(sqlx::FromRow)]
struct AuditRow {
    seq: i64,
    actor: String,
    role: String,
    action: String,
    target: String,
    outcome: String,
    client_addr: Option<String>,
    request_id: Option<String>,
    detail: String,
    prev_hash: Vec<u8>,
    hash: Vec<u8>,
}

impl AuditRow {
    fn into_entry(self, at: OffsetDateTime) -> anyhow::Result<AuditEntry> {
        let seq = self.seq;
        let hash_of = |bytes: Vec<u8>, column: &str| -> anyhow::Result<[u8; 32]> {
            let n = bytes.len();
            <[u8; 32]>::try_from(bytes)
                .map_err(|_| anyhow::anyhow!("audit entry {seq}: its {column} is {n} bytes, not 32"))
        };
        Ok(AuditEntry {
            seq,
            at,
            outcome: AuditOutcome::parse(&self.outcome)
                .with_context(|| format!("audit entry {seq}: '{}' is not an outcome", self.outcome))?,
            detail: serde_json::from_str(&self.detail)
                .with_context(|| format!("audit entry {seq}: its detail is not JSON"))?,
            prev_hash: hash_of(self.prev_hash, "prev_hash")?,
            hash: hash_of(self.hash, "hash")?,
            actor: self.actor,
            role: self.role,
            action: self.action,
            target: self.target,
            client_addr: self.client_addr,
            request_id: self.request_id,
        })
    }
}

/// The chain's head from a row of `HEAD`, its time already read.
fn chain_head(seq: i64, at: OffsetDateTime, hash: Vec<u8>) -> anyhow::Result<ChainHead> {
    let hash =
        <[u8; 32]>::try_from(hash).map_err(|_| anyhow::anyhow!("audit entry {seq}: its hash is not 32 bytes"))?;
    Ok(ChainHead { seq, at, hash })
}

/// The entries of every page `fetch_page(seq)` gives, from the cursor's seq on, until a page comes back short; each
/// page starts past the last entry of the one before (`page_query` says which way).
fn paged<'a, F, Fut>(cursor: AuditCursor, fetch_page: F) -> BoxStream<'a, anyhow::Result<AuditEntry>>
where
    F: Fn(i64) -> Fut + Send + 'a,
    Fut: Future<Output = anyhow::Result<Vec<AuditEntry>>> + Send + 'a,
{
    let (AuditCursor::After(start) | AuditCursor::Before(start)) = cursor;
    stream::try_unfold((start, false), move |(after, finished)| {
        let page = (!finished).then(|| fetch_page(after));
        async move {
            let Some(page) = page else { return Ok(None) };
            let page = page.await?;
            let Some(last) = page.last() else { return Ok(None) };
            let next = (last.seq, page.len() < PAGE_SIZE);
            Ok::<_, anyhow::Error>(Some((stream::iter(page.into_iter().map(Ok::<_, anyhow::Error>)), next)))
        }
    })
    .try_flatten()
    .boxed()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// A trail of `n` entries in memory, read through `paged` as the backends read theirs: every entry once, in
    /// order, over as many pages as it takes, and a full last page followed by one empty read.
    async fn read_paged(n: usize) -> (Vec<i64>, usize) {
        let mut trail: Vec<AuditEntry> = Vec::new();
        for _ in 0..n {
            let head = trail.last().map(|last| ChainHead { seq: last.seq, at: last.at, hash: last.hash });
            let new = NewAuditEntry {
                actor: "a".into(),
                role: "admin".into(),
                action: "x".into(),
                target: String::new(),
                outcome: AuditOutcome::Allowed,
                client_addr: None,
                request_id: None,
                detail: serde_json::Value::Null,
            };
            trail.push(AuditEntry::next(new, head, OffsetDateTime::UNIX_EPOCH).unwrap());
        }
        let reads = AtomicUsize::new(0);
        let seqs: Vec<i64> = paged(AuditCursor::default(), |after| {
            reads.fetch_add(1, Ordering::Relaxed);
            let page: Vec<AuditEntry> =
                trail.iter().filter(|entry| entry.seq > after).take(PAGE_SIZE).cloned().collect();
            async move { Ok(page) }
        })
        .map_ok(|entry| entry.seq)
        .try_collect()
        .await
        .unwrap();
        (seqs, reads.into_inner())
    }

    #[tokio::test]
    async fn a_trail_is_read_a_page_at_a_time_to_its_end() {
        for (n, n_reads) in [(0, 1), (1, 1), (PAGE_SIZE, 2), (2 * PAGE_SIZE + 500, 3)] {
            let (seqs, reads) = read_paged(n).await;
            assert_eq!(seqs, (1..=n as i64).collect::<Vec<_>>(), "{n} entries");
            assert_eq!(reads, n_reads, "{n} entries");
        }
    }

    #[test]
    fn a_page_query_numbers_the_conditions_it_has_in_a_fixed_order() {
        let all = page_query(&AuditFilter::default());
        assert!(all.ends_with("FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT 1000"), "{all}");
        let some = page_query(&AuditFilter {
            action: Some("token.add".into()),
            until: Some(OffsetDateTime::UNIX_EPOCH),
            ..AuditFilter::default()
        });
        assert!(some.ends_with("WHERE seq > $1 AND action = $2 AND at < $3 ORDER BY seq LIMIT 1000"), "{some}");
        let until = OffsetDateTime::UNIX_EPOCH + time::Duration::days(1);
        let filter = AuditFilter {
            actor: Some("a".into()),
            action: Some("b".into()),
            since: Some(OffsetDateTime::UNIX_EPOCH),
            until: Some(until),
            cursor: AuditCursor::Before(i64::MAX),
        };
        let every = page_query(&filter);
        assert!(
            every.contains("WHERE seq < $1 AND actor = $2 AND action = $3 AND at >= $4 AND at < $5 ORDER"),
            "{every}"
        );
        assert!(every.ends_with("ORDER BY seq DESC LIMIT 1000"), "newest first: {every}");
        let parameters = (vec!["a".to_owned(), "b".to_owned()], vec![OffsetDateTime::UNIX_EPOCH, until]);
        assert_eq!(page_parameters(&filter), parameters, "bound in the order the query numbers them");
        let action_only = AuditFilter { action: Some("b".into()), until: Some(until), ..AuditFilter::default() };
        assert_eq!(page_parameters(&action_only), (vec!["b".to_owned()], vec![until]));
    }
}
