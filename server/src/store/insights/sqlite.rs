//! `InsightStore` on SQLite: ids are text, times RFC 3339 text (the phone's offset kept as written), lists bound as
//! JSON arrays read with `json_each`; an export reads inside one read transaction (a WAL snapshot).

use sqlx::sqlite::{SqliteArguments, SqliteRow};
use sqlx::{FromRow, Row, Sqlite, SqliteConnection};
use uuid::Uuid;

use super::{
    attach, Bind, Dialect, ExportBatch, FilterSql, InsightFilter, InsightRecord, InsightStore, RecordColumns,
    RecordParts, Triage, TriageChange, TriageError, TriageNote, NOTES, PAGE_AREAS, PAGE_PRIORITIES, PAGE_TAGS,
    RECORD_COLUMNS, RECORD_JOINS,
};
use crate::store::sqlite::{now_text, parse_time};
use crate::store::{AreaTag, SqliteStore};

type Query<'q> = sqlx::query::Query<'q, Sqlite, SqliteArguments<'q>>;

fn bind_all<'q>(mut query: Query<'q>, binds: &'q [Bind]) -> Query<'q> {
    for value in binds {
        query = match value {
            Bind::Int(number) => query.bind(*number),
            Bind::Text(text) => query.bind(text.as_str()),
            Bind::Texts(texts) => query.bind(serde_json::to_string(texts).unwrap_or_else(|_| "[]".into())),
            Bind::Date(day) => query.bind(*day),
            Bind::Bool(flag) => query.bind(*flag),
        };
    }
    query
}

fn record(row: &SqliteRow) -> anyhow::Result<InsightRecord> {
    let id: String = row.get("id");
    let collector_id: String = row.get("collector_id");
    let parts = RecordParts {
        id: id.parse()?,
        collector_id: collector_id.parse()?,
        captured_at: parse_time(row.get("captured_at")),
        feeling_safe: row.get("feeling_safe"),
        processed_at: parse_time(row.get("processed_at")).unwrap_or(time::OffsetDateTime::UNIX_EPOCH),
        triage_updated_at: parse_time(row.get("triage_updated_at")),
    };
    Ok(RecordColumns::from_row(row)?.into_record(parts))
}

/// Reads the page's area tags, triage tags and priority links, and hands them out.
async fn complete(connection: &mut SqliteConnection, records: &mut [InsightRecord]) -> anyhow::Result<()> {
    if records.is_empty() {
        return Ok(());
    }
    let ids: Vec<String> = records.iter().map(|record| record.row.id.to_string()).collect();
    let ids = serde_json::to_string(&ids)?;
    let within = " WHERE insight_id IN (SELECT value FROM json_each($1))";
    let areas: Vec<(String, i64, String, bool)> =
        sqlx::query_as(&format!("{PAGE_AREAS}{within}")).bind(&ids).fetch_all(&mut *connection).await?;
    let tags: Vec<(String, String)> =
        sqlx::query_as(&format!("{PAGE_TAGS}{within}")).bind(&ids).fetch_all(&mut *connection).await?;
    let priorities: Vec<(String, String)> =
        sqlx::query_as(&format!("{PAGE_PRIORITIES}{within}")).bind(&ids).fetch_all(&mut *connection).await?;
    let id = |text: &str| text.parse::<Uuid>();
    let areas = areas
        .into_iter()
        .map(|(insight, generation_id, area_code, near_boundary)| {
            Ok((id(&insight)?, AreaTag { generation_id, area_code, near_boundary }))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let pairs = |rows: Vec<(String, String)>| {
        rows.into_iter().map(|(insight, value)| Ok((id(&insight)?, value))).collect::<anyhow::Result<Vec<_>>>()
    };
    attach(records, areas, pairs(tags)?, pairs(priorities)?);
    Ok(())
}

async fn page(
    connection: &mut SqliteConnection,
    filter: &InsightFilter,
    before_seq: Option<i64>,
    limit: u32,
) -> anyhow::Result<Vec<InsightRecord>> {
    let built = FilterSql::select(Dialect::Sqlite, filter, before_seq, Some(limit));
    let rows = bind_all(sqlx::query(&built.sql), &built.binds).fetch_all(&mut *connection).await?;
    let mut records = rows.iter().map(record).collect::<anyhow::Result<Vec<_>>>()?;
    complete(connection, &mut records).await?;
    Ok(records)
}

/// One insight's whole triage (notes included).
async fn read_triage(connection: &mut SqliteConnection, id: Uuid) -> anyhow::Result<Option<InsightRecord>> {
    let row = sqlx::query(&format!("SELECT {RECORD_COLUMNS} FROM insights i {RECORD_JOINS} WHERE i.id = $1"))
        .bind(id.to_string())
        .fetch_optional(&mut *connection)
        .await?;
    let Some(row) = row else { return Ok(None) };
    let mut records = vec![record(&row)?];
    complete(connection, &mut records).await?;
    let notes: Vec<(String, String, String)> =
        sqlx::query_as(NOTES).bind(id.to_string()).fetch_all(&mut *connection).await?;
    let mut record = records.pop().expect("one record");
    record.triage.notes = notes
        .into_iter()
        .map(|(at, author, text)| TriageNote {
            at: parse_time(Some(at)).unwrap_or(time::OffsetDateTime::UNIX_EPOCH),
            author,
            text,
        })
        .collect();
    Ok(Some(record))
}

#[async_trait::async_trait]
impl InsightStore for SqliteStore {
    async fn insight_page(
        &self,
        filter: &InsightFilter,
        before_seq: Option<i64>,
        limit: u32,
    ) -> anyhow::Result<Vec<InsightRecord>> {
        let mut connection = self.pool.acquire().await?;
        page(&mut connection, filter, before_seq, limit).await
    }

    async fn insight_record(&self, id: Uuid) -> anyhow::Result<Option<InsightRecord>> {
        let mut connection = self.pool.acquire().await?;
        read_triage(&mut connection, id).await
    }

    async fn export_insights(
        &self,
        filter: InsightFilter,
        batch: u32,
        count: Option<tokio::sync::oneshot::Sender<u64>>,
        sink: tokio::sync::mpsc::Sender<ExportBatch>,
    ) -> anyhow::Result<()> {
        // One read transaction: every page sees the database as it was at the first read.
        let mut tx = self.pool.begin().await?;
        if let Some(count) = count {
            let built = FilterSql::count(Dialect::Sqlite, &filter);
            let n: i64 = bind_all(sqlx::query(&built.sql), &built.binds).fetch_one(&mut *tx).await?.get(0);
            if count.send(u64::try_from(n).unwrap_or(0)).is_err() || sink.is_closed() {
                return Ok(());
            }
        }
        let mut before = None;
        loop {
            let records = match page(&mut tx, &filter, before, batch).await {
                Ok(records) => records,
                Err(error) => {
                    let _ = sink.send(Err(anyhow::anyhow!("{error:#}"))).await;
                    return Err(error);
                }
            };
            let (done, last) = (records.len() < batch as usize, records.last().map(|record| record.seq));
            if !records.is_empty() && sink.send(Ok(records)).await.is_err() {
                break;
            }
            if done {
                break;
            }
            before = last;
        }
        tx.rollback().await?;
        Ok(())
    }

    async fn update_triage(
        &self,
        id: Uuid,
        expected_version: i64,
        change: &TriageChange,
        author: &str,
    ) -> Result<Triage, TriageError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let Some(current) = read_triage(&mut tx, id).await? else { return Err(TriageError::Unknown) };
        if current.triage.version != expected_version {
            return Err(TriageError::Changed { expected: expected_version, current: Box::new(current.triage) });
        }
        let (id_text, now) = (id.to_string(), now_text());
        let state = change.state.unwrap_or(current.triage.state);
        sqlx::query(super::SAVE_TRIAGE)
            .bind(&id_text)
            .bind(state.as_str())
            .bind(expected_version + 1)
            .bind(&now)
            .bind(author)
            .execute(&mut *tx)
            .await?;
        if let Some(note) = &change.note {
            sqlx::query(super::ADD_NOTE).bind(&id_text).bind(&now).bind(author).bind(note).execute(&mut *tx).await?;
        }
        for (statement, values) in change.statements() {
            for value in values {
                sqlx::query(statement).bind(&id_text).bind(value).execute(&mut *tx).await?;
            }
        }
        let written = read_triage(&mut tx, id).await?.ok_or(TriageError::Unknown)?;
        tx.commit().await?;
        Ok(written.triage)
    }

    async fn pseudonym_key(&self) -> anyhow::Result<Vec<u8>> {
        let hex: String = sqlx::query_scalar(super::PSEUDONYM_KEY).fetch_one(&self.pool).await?;
        super::key_bytes(&hex)
    }
}
