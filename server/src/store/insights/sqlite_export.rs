//! A SQLite export's read. sqlx hands each SQLite row over from its worker thread, value by value; packed as JSON a
//! page at a time (`PACKED_RECORD`) the rows still cost SQLite more to build than `sqlite3 -csv` takes to dump them
//! (docs/benchmarks.md, issue 18). So an export reads on a connection of its own, through rusqlite on a blocking
//! thread, stepping the rows in place: one read transaction (a WAL snapshot) over the filtered insights newest first,
//! and beside them, in the same order, their area tags (by `insight_seq`), triage tags and priority links, merged as
//! they come. Memory holds a batch, whatever the number of rows; the server's pool is not held while it runs.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use rusqlite::{Connection, OpenFlags, Row, Rows};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};

use super::{
    Bind, Dialect, ExportBatch, FilterSql, InsightFilter, InsightRecord, RecordColumns, RecordParts, TriageColumns,
};
use crate::store::AreaTag;

/// The area tags, triage tags and priority links of every insight, newest insight first (`seq` descending), so they
/// can be merged with the insights as both are read. Area tags are read down their `seq` index. Triage tags and links
/// are the analysts' own, far fewer than the insights: SQLite is made to read them first (`CROSS JOIN`) and sort
/// them, where left to itself it walked every insight to find the few with one, before the export's first byte.
const AREAS_BY_SEQ: &str = "SELECT insight_seq, generation_id, area_code, near_boundary FROM insight_areas
    WHERE insight_seq IS NOT NULL ORDER BY insight_seq DESC";
const TAGS_BY_SEQ: &str =
    "SELECT i.seq, t.tag FROM triage_tags t CROSS JOIN insights i ON i.id = t.insight_id ORDER BY i.seq DESC";
const PRIORITIES_BY_SEQ: &str = "SELECT i.seq, p.priority FROM insight_priorities p CROSS JOIN insights i
    ON i.id = p.insight_id ORDER BY i.seq DESC";

/// Reads every insight `filter` lets through from the database at `path`, as `InsightStore::export_insights`.
///
/// # Errors
/// The database cannot be opened or read, or holds a value it should not (an id that is not a UUID).
pub(super) fn export(
    path: &Path,
    filter: &InsightFilter,
    batch: u32,
    count: Option<oneshot::Sender<u64>>,
    sink: &mpsc::Sender<ExportBatch>,
) -> anyhow::Result<()> {
    let connection = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI,
    )
    .with_context(|| format!("opening {} to export from", path.display()))?;
    connection.busy_timeout(Duration::from_secs(10))?;
    // One read transaction: every statement below reads the database as it was at the first read.
    connection.execute_batch("BEGIN")?;
    if let Some(count) = count {
        let built = FilterSql::count(Dialect::Sqlite, filter);
        let mut statement = connection.prepare(&built.sql)?;
        bind(&mut statement, &built.binds)?;
        let n: i64 = statement.raw_query().next()?.context("a count answers one row")?.get(0)?;
        if count.send(u64::try_from(n).unwrap_or(0)).is_err() || sink.is_closed() {
            return Ok(());
        }
    }
    let built = FilterSql::select(Dialect::Sqlite, filter, None, None);
    let mut insights = connection.prepare(&built.sql)?;
    bind(&mut insights, &built.binds)?;
    let mut insights = insights.raw_query();
    let (mut areas, mut tags, mut priorities) =
        (connection.prepare(AREAS_BY_SEQ)?, connection.prepare(TAGS_BY_SEQ)?, connection.prepare(PRIORITIES_BY_SEQ)?);
    let mut areas = Beside::new(areas.raw_query(), |row| {
        Ok(AreaTag { generation_id: row.get(1)?, area_code: row.get(2)?, near_boundary: row.get(3)? })
    })?;
    let mut tags = Beside::new(tags.raw_query(), |row| row.get::<_, String>(1))?;
    let mut priorities = Beside::new(priorities.raw_query(), |row| row.get::<_, String>(1))?;
    let capacity = usize::try_from(batch).unwrap_or(1).max(1);
    let mut records = Vec::with_capacity(capacity);
    while let Some(row) = insights.next()? {
        let mut record = record(row)?;
        areas.take(record.seq, &mut record.row.tags)?;
        tags.take(record.seq, &mut record.triage.tags)?;
        priorities.take(record.seq, &mut record.triage.priorities)?;
        record.row.tags.sort_by_key(|tag| tag.generation_id);
        record.triage.tags.sort();
        record.triage.priorities.sort();
        records.push(record);
        if records.len() == capacity {
            let full = std::mem::replace(&mut records, Vec::with_capacity(capacity));
            if sink.blocking_send(Ok(full)).is_err() {
                return Ok(());
            }
        }
    }
    if !records.is_empty() {
        // A receiver gone now has nothing left to miss.
        let _ = sink.blocking_send(Ok(records));
    }
    Ok(())
}

/// Binds the filter's values where `FilterSql` placed them (`$1`, `$2`, …), as sqlx binds them on SQLite.
fn bind(statement: &mut rusqlite::Statement<'_>, binds: &[Bind]) -> anyhow::Result<()> {
    for (at, value) in binds.iter().enumerate() {
        let name = format!("${}", at + 1);
        let index = statement.parameter_index(&name)?.with_context(|| format!("{name} is not in the query"))?;
        match value {
            Bind::Int(number) => statement.raw_bind_parameter(index, number)?,
            Bind::Text(text) => statement.raw_bind_parameter(index, text)?,
            Bind::Texts(texts) => statement.raw_bind_parameter(index, serde_json::to_string(texts)?)?,
            Bind::Date(day) => statement.raw_bind_parameter(index, day.to_string())?,
            Bind::Bool(flag) => statement.raw_bind_parameter(index, i64::from(*flag))?,
        }
    }
    Ok(())
}

/// A time as SQLite keeps it (RFC 3339 text).
fn time(text: Option<&str>) -> Option<OffsetDateTime> {
    text.and_then(|text| OffsetDateTime::parse(text, &Rfc3339).ok())
}

/// One row of `FilterSql::select` (the columns of `RECORD_COLUMNS`, in order) as a record, its lists still empty.
fn record(row: &Row<'_>) -> anyhow::Result<InsightRecord> {
    let text =
        |at: usize| -> anyhow::Result<Option<String>> { Ok(row.get_ref(at)?.as_str_or_null()?.map(str::to_owned)) };
    let id: &str = row.get_ref(1)?.as_str()?;
    let collector_id: &str = row.get_ref(2)?.as_str()?;
    let parts = RecordParts {
        id: id.parse().with_context(|| format!("the id of insight {id}"))?,
        collector_id: collector_id.parse().with_context(|| format!("the collector of insight {id}"))?,
        captured_at: time(row.get_ref(3)?.as_str_or_null()?),
        feeling_safe: row.get(7)?,
        processed_at: time(row.get_ref(17)?.as_str_or_null()?).unwrap_or(OffsetDateTime::UNIX_EPOCH),
    };
    let columns = RecordColumns {
        seq: row.get(0)?,
        campaign: text(4)?,
        category: text(5)?,
        text: text(6)?,
        channel: text(8)?,
        lat: row.get(9)?,
        lon: row.get(10)?,
        accuracy_m: row.get(11)?,
        picked_area_code: text(12)?,
        status: text(13)?.unwrap_or_default(),
        area_code: text(14)?,
        reject_code: text(15)?,
        reject_message: text(16)?,
        postcode: text(18)?,
        tag_lat: row.get(19)?,
        tag_lon: row.get(20)?,
        cohort: text(21)?,
        triage: TriageColumns {
            state: text(22)?,
            version: row.get(23)?,
            updated_at: time(row.get_ref(24)?.as_str_or_null()?),
            updated_by: text(25)?,
        },
    };
    Ok(columns.into_record(parts))
}

/// Rows read beside the insights, in the same order (`seq` descending, the first column): each insight takes the
/// ones of its `seq`, and those of insights the filter left out are passed over.
struct Beside<'s, T> {
    rows: Rows<'s>,
    read: fn(&Row<'_>) -> rusqlite::Result<T>,
    next: Option<(i64, T)>,
}

impl<'s, T> Beside<'s, T> {
    fn new(rows: Rows<'s>, read: fn(&Row<'_>) -> rusqlite::Result<T>) -> rusqlite::Result<Self> {
        let mut beside = Beside { rows, read, next: None };
        beside.advance()?;
        Ok(beside)
    }

    fn advance(&mut self) -> rusqlite::Result<()> {
        self.next = match self.rows.next()? {
            Some(row) => Some((row.get(0)?, (self.read)(row)?)),
            None => None,
        };
        Ok(())
    }

    /// Moves the rows of `seq` into `into`, passing over those of newer insights.
    fn take(&mut self, seq: i64, into: &mut Vec<T>) -> rusqlite::Result<()> {
        while let Some((at, _)) = &self.next {
            if *at < seq {
                break;
            }
            let (at, value) = self.next.take().expect("just seen");
            if at == seq {
                into.push(value);
            }
            self.advance()?;
        }
        Ok(())
    }
}
