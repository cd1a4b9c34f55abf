//! `InsightStore` on PostgreSQL: ids are UUIDs, `captured_at` a `timestamptz` read back in the phone's own offset
//! (`captured_offset_minutes`), lists bound as arrays; an export streams from one snapshot on connections of its own
//! (`postgres_export`), and a triage write locks its insight's row so two analysts' writes take turns.

use anyhow::Context as _;
use sqlx::postgres::{PgArguments, PgRow};
use sqlx::{PgConnection, Postgres, Row};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{
    attach, Bind, Dialect, ExportBatch, FilterSql, InsightFilter, InsightRecord, InsightStore, RecordColumns,
    RecordParts, Triage, TriageChange, TriageColumns, TriageError, TriageNote, NOTES, PAGE_AREAS, PAGE_PRIORITIES,
    PAGE_TAGS, RECORD_COLUMNS, RECORD_JOINS,
};
use crate::store::{AreaTag, PostgresStore};

type Query<'q> = sqlx::query::Query<'q, Postgres, PgArguments>;

pub(super) fn bind_all<'q>(mut query: Query<'q>, binds: &'q [Bind]) -> Query<'q> {
    for value in binds {
        query = match value {
            Bind::Int(number) => query.bind(*number),
            Bind::Text(text) => query.bind(text.as_str()),
            Bind::Texts(texts) => query.bind(texts.as_slice()),
            Bind::Date(day) => query.bind(*day),
            Bind::Bool(flag) => query.bind(*flag),
        };
    }
    query
}

/// One row of `FilterSql::select` (the columns of `RECORD_COLUMNS` in order, then the offset, as `columns`) as a
/// record, its lists still empty.
pub(super) fn record(row: &PgRow) -> anyhow::Result<InsightRecord> {
    let mut record = insight(&mut ByPosition(row))?;
    record.cohort = row.try_get(21)?;
    let triage = TriageColumns {
        state: row.try_get(22)?,
        version: row.try_get(23)?,
        updated_at: row.try_get(24)?,
        updated_by: row.try_get(25)?,
    };
    triage.apply(&mut record.triage);
    record.row.captured_at = super::with_offset(record.row.captured_at, row.try_get(26)?);
    Ok(record)
}

/// A row read by position, a column at a time and in order (so that a binary `COPY` row, read front to back, is one
/// too: `pg_copy::Tuple`). Values are read without sqlx's type check: `insight` names each column's type itself.
pub(super) trait Columns {
    fn int8(&mut self, at: usize) -> anyhow::Result<Option<i64>>;
    fn int2(&mut self, at: usize) -> anyhow::Result<Option<i16>>;
    fn float8(&mut self, at: usize) -> anyhow::Result<Option<f64>>;
    fn text(&mut self, at: usize) -> anyhow::Result<Option<String>>;
    fn uuid(&mut self, at: usize) -> anyhow::Result<Option<Uuid>>;
    fn timestamptz(&mut self, at: usize) -> anyhow::Result<Option<OffsetDateTime>>;
}

/// A row of sqlx's, read by position.
struct ByPosition<'r>(&'r PgRow);

impl Columns for ByPosition<'_> {
    fn int8(&mut self, at: usize) -> anyhow::Result<Option<i64>> {
        Ok(self.0.try_get_unchecked(at)?)
    }
    fn int2(&mut self, at: usize) -> anyhow::Result<Option<i16>> {
        Ok(self.0.try_get_unchecked(at)?)
    }
    fn float8(&mut self, at: usize) -> anyhow::Result<Option<f64>> {
        Ok(self.0.try_get_unchecked(at)?)
    }
    fn text(&mut self, at: usize) -> anyhow::Result<Option<String>> {
        Ok(self.0.try_get_unchecked(at)?)
    }
    fn uuid(&mut self, at: usize) -> anyhow::Result<Option<Uuid>> {
        Ok(self.0.try_get_unchecked(at)?)
    }
    fn timestamptz(&mut self, at: usize) -> anyhow::Result<Option<OffsetDateTime>> {
        Ok(self.0.try_get_unchecked(at)?)
    }
}

/// The insight's own columns, the first 21 of `RECORD_COLUMNS` (`i.seq` to `i.tag_lon`), as a record: its lists
/// empty, no cohort, untriaged, and captured at a time in UTC (the offset is read after). Read by position: an
/// export reads a million rows, and looking each column up by its name was a tenth of the server's work
/// (docs/benchmarks.md, issue 18).
pub(super) fn insight(columns: &mut impl Columns) -> anyhow::Result<InsightRecord> {
    let present = |name: &str| format!("an insight's {name} is NULL");
    let seq = columns.int8(0)?.with_context(|| present("seq"))?;
    let id = columns.uuid(1)?.with_context(|| present("id"))?;
    let collector_id = columns.uuid(2)?.with_context(|| present("collector"))?;
    let captured_at = columns.timestamptz(3)?;
    let (campaign, category, text) = (columns.text(4)?, columns.text(5)?, columns.text(6)?);
    let feeling_safe = columns.int2(7)?;
    let channel = columns.text(8)?;
    let (lat, lon, accuracy_m) = (columns.float8(9)?, columns.float8(10)?, columns.float8(11)?);
    let picked_area_code = columns.text(12)?;
    let status = columns.text(13)?.with_context(|| present("status"))?;
    let (area_code, reject_code, reject_message) = (columns.text(14)?, columns.text(15)?, columns.text(16)?);
    let processed_at = columns.timestamptz(17)?.with_context(|| present("processed_at"))?;
    let postcode = columns.text(18)?;
    let (tag_lat, tag_lon) = (columns.float8(19)?, columns.float8(20)?);
    let parts = RecordParts { id, collector_id, captured_at, feeling_safe: feeling_safe.map(i64::from), processed_at };
    let columns = RecordColumns {
        seq,
        campaign,
        category,
        text,
        channel,
        lat,
        lon,
        accuracy_m,
        picked_area_code,
        status,
        area_code,
        reject_code,
        reject_message,
        postcode,
        tag_lat,
        tag_lon,
        cohort: None,
        triage: TriageColumns::default(),
    };
    Ok(columns.into_record(parts))
}

/// The PostgreSQL record columns: the shared ones and the offset.
pub(super) fn columns() -> String {
    format!("{RECORD_COLUMNS}, i.captured_offset_minutes")
}

async fn complete(connection: &mut PgConnection, records: &mut [InsightRecord]) -> anyhow::Result<()> {
    if records.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = records.iter().map(|record| record.row.id).collect();
    let within = " WHERE insight_id = ANY($1)";
    // Read by `seq` as one range when the page is dense, else by id (as SQLite's `complete`).
    let (first, last) = (records[0].seq, records[records.len() - 1].seq);
    let (high, low) = (first.max(last), first.min(last));
    let areas: Vec<(Uuid, i64, String, bool)> = if high - low < super::DENSE * records.len() as i64 {
        sqlx::query_as(&format!("{PAGE_AREAS} WHERE insight_seq BETWEEN $1 AND $2"))
            .bind(low)
            .bind(high)
            .fetch_all(&mut *connection)
            .await?
    } else {
        sqlx::query_as(&format!("{PAGE_AREAS}{within}")).bind(&ids).fetch_all(&mut *connection).await?
    };
    let tags: Vec<(Uuid, String)> =
        sqlx::query_as(&format!("{PAGE_TAGS}{within}")).bind(&ids).fetch_all(&mut *connection).await?;
    let priorities: Vec<(Uuid, String)> =
        sqlx::query_as(&format!("{PAGE_PRIORITIES}{within}")).bind(&ids).fetch_all(&mut *connection).await?;
    let areas = areas
        .into_iter()
        .map(|(id, generation_id, area_code, near_boundary)| (id, AreaTag { generation_id, area_code, near_boundary }))
        .collect();
    attach(records, areas, tags, priorities);
    Ok(())
}

async fn page(
    connection: &mut PgConnection,
    filter: &InsightFilter,
    before_seq: Option<i64>,
    limit: u32,
) -> anyhow::Result<Vec<InsightRecord>> {
    let built = FilterSql::select(Dialect::Postgres, filter, before_seq, Some(limit));
    let sql = built.sql.replacen(RECORD_COLUMNS, &columns(), 1);
    // A search is planned for its own words every time (an unnamed statement): a plan kept for any word walks the
    // insights newest first, right for a common word and half a million rows too many for a rare one (migration
    // 0018 gives the planner the words' figures to choose by).
    let searched = !filter.query.words.is_empty();
    let query = bind_all(sqlx::query(&sql).persistent(!searched), &built.binds);
    let rows = query.fetch_all(&mut *connection).await?;
    let mut records = rows.iter().map(record).collect::<anyhow::Result<Vec<_>>>()?;
    complete(connection, &mut records).await?;
    Ok(records)
}

async fn read_whole(connection: &mut PgConnection, id: Uuid) -> anyhow::Result<Option<InsightRecord>> {
    let row = sqlx::query(&format!("SELECT {} FROM insights i {RECORD_JOINS} WHERE i.id = $1", columns()))
        .bind(id)
        .fetch_optional(&mut *connection)
        .await?;
    let Some(row) = row else { return Ok(None) };
    let mut records = vec![record(&row)?];
    complete(connection, &mut records).await?;
    let notes: Vec<(OffsetDateTime, String, String)> =
        sqlx::query_as(NOTES).bind(id).fetch_all(&mut *connection).await?;
    let mut record = records.pop().expect("one record");
    record.triage.notes = notes.into_iter().map(|(at, author, text)| TriageNote { at, author, text }).collect();
    Ok(Some(record))
}

#[async_trait::async_trait]
impl InsightStore for PostgresStore {
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
        read_whole(&mut connection, id).await
    }

    async fn export_insights(
        &self,
        filter: InsightFilter,
        batch: u32,
        count: Option<tokio::sync::oneshot::Sender<u64>>,
        sink: tokio::sync::mpsc::Sender<ExportBatch>,
    ) -> anyhow::Result<()> {
        let read = super::postgres_export::export(&self.pool.connect_options(), &filter, batch, count, &sink).await;
        if let Err(error) = &read {
            let _ = sink.send(Err(anyhow::anyhow!("{error:#}"))).await;
        }
        read
    }

    async fn update_triage(
        &self,
        id: Uuid,
        expected_version: i64,
        change: &TriageChange,
        author: &str,
    ) -> Result<Triage, TriageError> {
        let mut tx = self.pool.begin().await?;
        // Writes to one insight's triage take turns behind its row's lock.
        let exists: Option<Uuid> = sqlx::query_scalar("SELECT id FROM insights WHERE id = $1 FOR UPDATE")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_none() {
            return Err(TriageError::Unknown);
        }
        let current = read_whole(&mut tx, id).await?.ok_or(TriageError::Unknown)?;
        if current.triage.version != expected_version {
            return Err(TriageError::Changed { expected: expected_version, current: Box::new(current.triage) });
        }
        let now = OffsetDateTime::now_utc();
        let state = change.state.unwrap_or(current.triage.state);
        sqlx::query(super::SAVE_TRIAGE)
            .bind(id)
            .bind(state.as_str())
            .bind(expected_version + 1)
            .bind(now)
            .bind(author)
            .execute(&mut *tx)
            .await?;
        if let Some(note) = &change.note {
            sqlx::query(super::ADD_NOTE).bind(id).bind(now).bind(author).bind(note).execute(&mut *tx).await?;
        }
        for (statement, values) in change.statements() {
            for value in values {
                sqlx::query(statement).bind(id).bind(value).execute(&mut *tx).await?;
            }
        }
        let written = read_whole(&mut tx, id).await?.ok_or(TriageError::Unknown)?;
        tx.commit().await?;
        Ok(written.triage)
    }

    async fn pseudonym_key(&self) -> anyhow::Result<Vec<u8>> {
        let hex: String = sqlx::query_scalar(super::PSEUDONYM_KEY).fetch_one(&self.pool).await?;
        super::key_bytes(&hex)
    }
}
