//! A PostgreSQL export's read. Read a page at a time, with the cohort and triage joined to every row and each page's
//! tags looked up, the export ran at a quarter of `COPY`'s rate: the server and the database took turns, and the
//! joins were a third of the database's work (docs/benchmarks.md, issue 18). So an export streams, on three
//! connections of its own reading one snapshot (`pg_export_snapshot`):
//! - the filtered insights newest first, their own columns only, as a binary `COPY` (`pg_copy`);
//! - beside them, in the same order, their area tags; and their triage, triage tags and priority links, each read
//!   and decoded on a task of its own and merged as they come (`Beside`);
//! - each device's cohort, read once before the first row.
//!
//! The database works ahead into the sockets while the server decodes, on both cores; memory holds a few batches and
//! what the sockets buffer, whatever the number of rows, and the server's pool is not held while an export runs.

use std::collections::HashMap;

use futures_util::TryStreamExt;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, PgConnection, Row};
use tokio::sync::{mpsc, oneshot};
use tokio_util::task::AbortOnDropHandle;
use uuid::Uuid;

use super::pg_copy::Tuple;
use super::postgres::{bind_all, insight};
use super::{Bind, Dialect, ExportBatch, FilterSql, InsightFilter, TriageColumns};
use crate::store::AreaTag;

/// An export's transaction: one snapshot, read only. Planned without JIT: a plan over a million rows costs enough
/// for PostgreSQL to compile it, which takes longer than the rows take to stream.
const BEGIN: &str = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY";
const NO_JIT: &str = "SET LOCAL jit = off";

/// The area tags of every insight, newest insight first (`seq` descending, the first column), so they can be merged
/// with the insights as both are read: down each generation's partition of the `seq` index, merged. Sorting is
/// switched off for it (`NO_SORT`): left to itself PostgreSQL reads the whole table and sorts it before its first row.
const AREAS_BY_SEQ: &str = "SELECT insight_seq, generation_id, area_code, near_boundary FROM insight_areas
    WHERE insight_seq IS NOT NULL ORDER BY insight_seq DESC";
const NO_SORT: &str = "SET LOCAL enable_sort = off";

/// An export's insights: their own columns (as every record read begins), then the device (whose cohort is looked up
/// in `COHORTS`) and the offset. The joins a page makes for the cohort and the triage were a third of PostgreSQL's
/// work on an export, a lookup per insight (docs/benchmarks.md, issue 18): triage is read beside, as the tags are,
/// and joined here only when the filter asks for a triage state.
const EXPORT_COLUMNS: &str = concat!(insight_columns!(), ", i.device_id, i.captured_offset_minutes");

/// Each enrolled device's cohort (its invitation's label): as many as there are phones, read before the first row.
const COHORTS: &str = "SELECT d.id, inv.label FROM devices d JOIN invitations inv ON inv.id = d.invitation_id";

/// The triage (`kind` 0), triage tags (1) and priority links (2) of every insight, in the same order. They are the
/// analysts' own, far fewer than the insights: found through their insights and sorted before the first row.
const TRIAGE_BY_SEQ: &str = "SELECT i.seq, 0 AS kind, t.state AS value, t.version, t.updated_at, t.updated_by
        FROM triage t JOIN insights i ON i.id = t.insight_id
    UNION ALL SELECT i.seq, 1, tt.tag, NULL, NULL, NULL FROM triage_tags tt JOIN insights i ON i.id = tt.insight_id
    UNION ALL SELECT i.seq, 2, p.priority, NULL, NULL, NULL FROM insight_priorities p JOIN insights i
        ON i.id = p.insight_id
    ORDER BY 1 DESC";

/// Reads every insight `filter` lets through, as `InsightStore::export_insights`.
///
/// # Errors
/// A connection cannot be made, or a read fails, or a row holds a value it should not.
pub(super) async fn export(
    options: &PgConnectOptions,
    filter: &InsightFilter,
    batch: u32,
    count: Option<oneshot::Sender<u64>>,
    sink: &mpsc::Sender<ExportBatch>,
) -> anyhow::Result<()> {
    let mut insights_connection: PgConnection = options.connect().await?;
    sqlx::query(BEGIN).execute(&mut insights_connection).await?;
    sqlx::query(NO_JIT).execute(&mut insights_connection).await?;
    let snapshot: String =
        sqlx::query_scalar("SELECT pg_export_snapshot()").fetch_one(&mut insights_connection).await?;
    // PostgreSQL names its snapshots in hexadecimal digits and dashes; `SET TRANSACTION SNAPSHOT` takes no parameter.
    anyhow::ensure!(
        snapshot.chars().all(|c| c.is_ascii_hexdigit() || c == '-'),
        "PostgreSQL named a snapshot {snapshot:?}"
    );
    let areas_connection = beside(options, &snapshot, &[NO_JIT, NO_SORT]).await?;
    let triage_connection = beside(options, &snapshot, &[NO_JIT]).await?;
    if let Some(count) = count {
        let built = FilterSql::count(Dialect::Postgres, filter);
        let n: i64 = bind_all(sqlx::query(&built.sql), &built.binds).fetch_one(&mut insights_connection).await?.get(0);
        if count.send(u64::try_from(n).unwrap_or(0)).is_err() || sink.is_closed() {
            return Ok(());
        }
    }
    let cohorts: HashMap<Uuid, String> =
        sqlx::query_as::<_, (Uuid, String)>(COHORTS).fetch_all(&mut insights_connection).await?.into_iter().collect();
    let copy = export_copy(&mut insights_connection, filter).await?;
    let mut messages = insights_connection.copy_out_raw(&copy).await?;
    let mut areas = Beside::spawn(areas_connection, AREAS_BY_SEQ, batch, |tuple| {
        Ok((
            tuple.int8_required()?,
            AreaTag {
                generation_id: tuple.int8_required()?,
                area_code: tuple.text_required()?,
                near_boundary: tuple.boolean_required()?,
            },
        ))
    });
    let mut triage = Beside::spawn(triage_connection, TRIAGE_BY_SEQ, batch, |tuple| {
        let (seq, kind, value) = (tuple.int8_required()?, tuple.int4()?, tuple.text_required()?);
        let (version, updated_at, updated_by) = (tuple.int8()?, tuple.timestamptz()?, tuple.text()?);
        let item = match kind {
            Some(0) => Triaged::State(TriageColumns { state: Some(value), version, updated_at, updated_by }),
            Some(1) => Triaged::Tag(value),
            _ => Triaged::Priority(value),
        };
        Ok((seq, item))
    });
    let capacity = usize::try_from(batch).unwrap_or(1).max(1);
    let mut records = Vec::with_capacity(capacity);
    let mut triaged = Vec::new();
    let mut first = true;
    while let Some(message) = messages.try_next().await? {
        let Some(mut tuple) = Tuple::of(&message, std::mem::take(&mut first))? else { continue };
        let mut record = insight(&mut tuple)?;
        let device = tuple.uuid()?;
        record.row.captured_at = super::with_offset(record.row.captured_at, tuple.int2()?);
        tuple.finish()?;
        record.cohort = device.and_then(|device| cohorts.get(&device)).cloned();
        areas.take(record.seq, &mut record.row.tags).await?;
        triage.take(record.seq, &mut triaged).await?;
        for item in triaged.drain(..) {
            match item {
                Triaged::State(columns) => columns.apply(&mut record.triage),
                Triaged::Tag(tag) => record.triage.tags.push(tag),
                Triaged::Priority(priority) => record.triage.priorities.push(priority),
            }
        }
        record.row.tags.sort_by_key(|tag| tag.generation_id);
        record.triage.tags.sort();
        record.triage.priorities.sort();
        records.push(record);
        if records.len() == capacity {
            let full = std::mem::replace(&mut records, Vec::with_capacity(capacity));
            if sink.send(Ok(full)).await.is_err() {
                return Ok(());
            }
        }
    }
    if !records.is_empty() {
        // A receiver gone now has nothing left to miss.
        let _ = sink.send(Ok(records)).await;
    }
    // The connections close as they drop; their read-only transactions end with them.
    Ok(())
}

/// A connection of the export's own reading `snapshot`, with `settings` for its one query.
async fn beside(options: &PgConnectOptions, snapshot: &str, settings: &[&str]) -> anyhow::Result<PgConnection> {
    let mut connection: PgConnection = options.connect().await?;
    sqlx::query(BEGIN).execute(&mut connection).await?;
    let set = format!("SET TRANSACTION SNAPSHOT '{snapshot}'");
    sqlx::query(&set).persistent(false).execute(&mut connection).await?;
    for setting in settings {
        sqlx::query(setting).execute(&mut connection).await?;
    }
    Ok(connection)
}

/// The `COPY` of the insights `filter` lets through, newest first. `COPY` takes no parameters, and no value of the
/// filter is ever written into SQL: each is bound, as a parameter of `set_config`, to a setting of the transaction
/// (`grapevine.export_N`), and the query reads it back once, typed (`current_setting`, in a subquery PostgreSQL runs
/// before the first row).
async fn export_copy(connection: &mut PgConnection, filter: &InsightFilter) -> anyhow::Result<String> {
    let (built, joins, condition) = FilterSql::matching(Dialect::Postgres, filter, None);
    let triage_join = if filter.query.triage.is_some() { "LEFT JOIN triage t ON t.insight_id = i.id " } else { "" };
    let mut sql =
        format!("SELECT {EXPORT_COLUMNS} FROM insights i {joins}{triage_join}WHERE {condition} ORDER BY i.seq DESC");
    // The highest first: `$1` is the start of `$12`. Each value is read in a subquery of its own, which PostgreSQL
    // runs once, before the first row.
    for (at, value) in built.binds.iter().enumerate().rev() {
        let name = format!("grapevine.export_{}", at + 1);
        let (text, read) = match value {
            Bind::Int(number) => (number.to_string(), format!("(SELECT current_setting('{name}')::bigint)")),
            Bind::Text(text) => (text.clone(), format!("(SELECT current_setting('{name}'))")),
            Bind::Texts(texts) => (
                serde_json::to_string(texts)?,
                format!("ARRAY(SELECT jsonb_array_elements_text(current_setting('{name}')::jsonb))"),
            ),
            Bind::Date(day) => (day.to_string(), format!("(SELECT current_setting('{name}')::date)")),
            Bind::Bool(flag) => (flag.to_string(), format!("(SELECT current_setting('{name}')::boolean)")),
        };
        sqlx::query("SELECT set_config($1, $2, true)").bind(&name).bind(text).execute(&mut *connection).await?;
        sql = sql.replace(&format!("${}", at + 1), &read);
    }
    Ok(format!("COPY ({sql}) TO STDOUT (FORMAT binary)"))
}

/// A row of `TRIAGE_BY_SEQ`.
enum Triaged {
    State(TriageColumns),
    Tag(String),
    Priority(String),
}

/// Rows read beside the insights, in the same order (`seq` descending, the first column): each insight takes the
/// ones of its `seq`, and those of insights the filter left out are passed over. They are read and decoded on a task
/// of their own, on the other core, and handed over a batch at a time.
struct Beside<T> {
    batches: mpsc::Receiver<anyhow::Result<Vec<(i64, T)>>>,
    batch: std::vec::IntoIter<(i64, T)>,
    next: Option<(i64, T)>,
    /// Ends the read when the export does (early, when its client goes).
    _reader: AbortOnDropHandle<()>,
}

impl<T: Send + 'static> Beside<T> {
    /// Reads `sql`'s rows on `connection` (as a binary `COPY`), each made a `T` by `read`, `batch` at a time.
    fn spawn(
        mut connection: PgConnection,
        sql: &'static str,
        batch: u32,
        read: fn(&mut Tuple<'_>) -> anyhow::Result<(i64, T)>,
    ) -> Self {
        let capacity = usize::try_from(batch).unwrap_or(1).max(1);
        let (sender, batches) = mpsc::channel(2);
        let reader = tokio::spawn(async move {
            let copy = format!("COPY ({sql}) TO STDOUT (FORMAT binary)");
            let mut decoded = Vec::with_capacity(capacity);
            let read_all = async {
                let mut messages = connection.copy_out_raw(&copy).await?;
                let mut first = true;
                while let Some(message) = messages.try_next().await? {
                    let Some(mut tuple) = Tuple::of(&message, std::mem::take(&mut first))? else { continue };
                    let item = read(&mut tuple)?;
                    tuple.finish()?;
                    decoded.push(item);
                    if decoded.len() == capacity {
                        let full = std::mem::replace(&mut decoded, Vec::with_capacity(capacity));
                        if sender.send(Ok(full)).await.is_err() {
                            return Ok(());
                        }
                    }
                }
                anyhow::Ok(())
            };
            match read_all.await {
                Ok(()) if !decoded.is_empty() => {
                    let _ = sender.send(Ok(decoded)).await;
                }
                Ok(()) => {}
                Err(error) => {
                    let _ = sender.send(Err(error)).await;
                }
            }
        });
        Beside { batches, batch: Vec::new().into_iter(), next: None, _reader: AbortOnDropHandle::new(reader) }
    }

    /// The next row, waiting for the next batch when this one is done.
    async fn advance(&mut self) -> anyhow::Result<()> {
        self.next = match self.batch.next() {
            Some(item) => Some(item),
            None => match self.batches.recv().await {
                Some(batch) => {
                    self.batch = batch?.into_iter();
                    self.batch.next()
                }
                None => None,
            },
        };
        Ok(())
    }

    /// Moves the rows of `seq` into `into`, passing over those of newer insights.
    async fn take(&mut self, seq: i64, into: &mut Vec<T>) -> anyhow::Result<()> {
        // Before the first row, or after the last (then the closed channel answers at once).
        if self.next.is_none() {
            self.advance().await?;
        }
        while let Some((at, _)) = &self.next {
            if *at < seq {
                break;
            }
            let (at, value) = self.next.take().expect("just seen");
            if at == seq {
                into.push(value);
            }
            self.advance().await?;
        }
        Ok(())
    }
}
