//! `InsightStore` on SQLite: ids are text, times RFC 3339 text (the phone's offset kept as written), lists bound as
//! JSON arrays read with `json_each`; an export reads inside one read transaction (a WAL snapshot).

use std::borrow::Cow;
use std::collections::HashMap;

use anyhow::Context;
use sqlx::sqlite::SqliteArguments;
use sqlx::{Row, Sqlite, SqliteConnection};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{
    attach, Bind, Dialect, ExportBatch, FilterSql, InsightFilter, InsightRecord, InsightStore, RecordColumns,
    RecordParts, Triage, TriageChange, TriageColumns, TriageError, TriageNote, NOTES, RECORD_JOINS,
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

/// A page of records, packed by SQLite into one JSON array of `PackedRecord`s: one value crosses from SQLite per page
/// instead of two dozen per insight (an export, which reads every row, steps them itself: `sqlite_export.rs`). Reals
/// are printed with 17 significant digits, so they read back exactly.
fn packed_select(filter: &InsightFilter, before_seq: Option<i64>, limit: u32) -> FilterSql {
    let (mut built, joins, condition) = FilterSql::matching(Dialect::Sqlite, filter, before_seq);
    let limit = built.bind(Bind::Int(limit.into()));
    built.sql = format!(
        "SELECT '[' || group_concat(record, ',') || ']' FROM (
            SELECT i.seq AS seq, {PACKED_RECORD} AS record FROM insights i {joins}{RECORD_JOINS}
            WHERE {condition} ORDER BY i.seq DESC LIMIT {limit})"
    );
    built
}

/// `RECORD_COLUMNS` as one JSON array, in `PackedRecord`'s order.
const PACKED_RECORD: &str = "json_array(i.seq, i.id, i.collector_id, i.captured_at, i.campaign, i.category, i.text,
    i.feeling_safe, i.channel, iif(i.lat IS NULL, NULL, printf('%!.17g', i.lat)),
    iif(i.lon IS NULL, NULL, printf('%!.17g', i.lon)), iif(i.accuracy_m IS NULL, NULL, printf('%!.17g', i.accuracy_m)),
    i.picked_area_code, i.status, i.area_code, i.reject_code, i.reject_message, i.processed_at, i.postcode,
    iif(i.tag_lat IS NULL, NULL, printf('%!.17g', i.tag_lat)), iif(i.tag_lon IS NULL, NULL, printf('%!.17g', i.tag_lon)),
    inv.label, t.state, t.version, t.updated_at, t.updated_by)";

/// One insight of a packed page, in the order of `PACKED_RECORD`; what is only parsed is borrowed from the page.
#[derive(serde::Deserialize)]
struct PackedRecord<'a> {
    seq: i64,
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(borrow)]
    collector_id: Cow<'a, str>,
    #[serde(borrow)]
    captured_at: Option<Cow<'a, str>>,
    campaign: Option<String>,
    category: Option<String>,
    text: Option<String>,
    feeling_safe: Option<i64>,
    channel: Option<String>,
    #[serde(borrow)]
    lat: Option<Cow<'a, str>>,
    #[serde(borrow)]
    lon: Option<Cow<'a, str>>,
    #[serde(borrow)]
    accuracy_m: Option<Cow<'a, str>>,
    picked_area_code: Option<String>,
    status: String,
    area_code: Option<String>,
    reject_code: Option<String>,
    reject_message: Option<String>,
    #[serde(borrow)]
    processed_at: Cow<'a, str>,
    postcode: Option<String>,
    #[serde(borrow)]
    tag_lat: Option<Cow<'a, str>>,
    #[serde(borrow)]
    tag_lon: Option<Cow<'a, str>>,
    cohort: Option<String>,
    triage_state: Option<String>,
    triage_version: Option<i64>,
    #[serde(borrow)]
    triage_updated_at: Option<Cow<'a, str>>,
    triage_updated_by: Option<String>,
}

impl PackedRecord<'_> {
    fn into_record(self) -> anyhow::Result<InsightRecord> {
        let number = |text: Option<Cow<'_, str>>, what: &str| {
            text.as_deref()
                .map(str::parse::<f64>)
                .transpose()
                .with_context(|| format!("the {what} of insight {}", self.id))
        };
        let time = |text: Option<Cow<'_, str>>| text.and_then(|text| OffsetDateTime::parse(&text, &Rfc3339).ok());
        let parts = RecordParts {
            id: self.id.parse()?,
            collector_id: self.collector_id.parse()?,
            captured_at: time(self.captured_at),
            feeling_safe: self.feeling_safe,
            processed_at: time(Some(self.processed_at)).unwrap_or(OffsetDateTime::UNIX_EPOCH),
        };
        let columns = RecordColumns {
            seq: self.seq,
            campaign: self.campaign,
            category: self.category,
            text: self.text,
            channel: self.channel,
            lat: number(self.lat, "latitude")?,
            lon: number(self.lon, "longitude")?,
            accuracy_m: number(self.accuracy_m, "accuracy")?,
            picked_area_code: self.picked_area_code,
            status: self.status,
            area_code: self.area_code,
            reject_code: self.reject_code,
            reject_message: self.reject_message,
            postcode: self.postcode,
            tag_lat: number(self.tag_lat, "tag latitude")?,
            tag_lon: number(self.tag_lon, "tag longitude")?,
            cohort: self.cohort,
            triage: TriageColumns {
                state: self.triage_state,
                version: self.triage_version,
                updated_at: time(self.triage_updated_at),
                updated_by: self.triage_updated_by,
            },
        };
        Ok(columns.into_record(parts))
    }
}

/// The records of a packed page (none when SQLite packed nothing).
async fn read_packed(connection: &mut SqliteConnection, built: &FilterSql) -> anyhow::Result<Vec<InsightRecord>> {
    let json: Option<String> =
        bind_all(sqlx::query(&built.sql), &built.binds).fetch_one(&mut *connection).await?.get(0);
    let Some(json) = json else { return Ok(Vec::new()) };
    let page: Vec<PackedRecord> =
        serde_json::from_str(&json).context("reading a page of insights as SQLite packed it")?;
    let mut records = page.into_iter().map(PackedRecord::into_record).collect::<anyhow::Result<Vec<_>>>()?;
    // `group_concat` keeps the order its rows come in, newest first, but is not bound to: sorting what is already
    // sorted costs one comparison per insight.
    records.sort_by_key(|record| std::cmp::Reverse(record.seq));
    Ok(records)
}

/// Reads the page's area tags, triage tags and priority links, and hands them out.
async fn complete(connection: &mut SqliteConnection, records: &mut [InsightRecord]) -> anyhow::Result<()> {
    let (Some(first), Some(last)) = (records.first(), records.last()) else { return Ok(()) };
    let (high, low) = (first.seq.max(last.seq), first.seq.min(last.seq));
    let id_of: HashMap<i64, Uuid> = records.iter().map(|record| (record.seq, record.row.id)).collect();
    let areas = if high - low < super::DENSE * records.len() as i64 {
        sqlx::query(PACKED_AREAS_BETWEEN).bind(low).bind(high)
    } else {
        sqlx::query(PACKED_AREAS_OF).bind(serde_json::to_string(&id_of.keys().collect::<Vec<_>>())?)
    };
    let areas: Vec<(i64, i64, String, i64)> = fetch_packed(areas, connection).await?;
    let areas = areas
        .into_iter()
        .filter_map(|(seq, generation_id, area_code, near_boundary)| {
            let near_boundary = near_boundary != 0;
            Some((*id_of.get(&seq)?, AreaTag { generation_id, area_code, near_boundary }))
        })
        .collect();
    let ids: Vec<String> = records.iter().map(|record| record.row.id.to_string()).collect();
    let ids = serde_json::to_string(&ids)?;
    let tags = fetch_packed(sqlx::query(PACKED_TAGS).bind(&ids), connection).await?;
    let priorities = fetch_packed(sqlx::query(PACKED_PRIORITIES).bind(&ids), connection).await?;
    attach(records, areas, tags, priorities);
    Ok(())
}

/// The rows of a query that packs them into one JSON array (as `PACKED_RECORD`, for the same reason).
async fn fetch_packed<T: serde::de::DeserializeOwned>(
    query: Query<'_>,
    connection: &mut SqliteConnection,
) -> anyhow::Result<Vec<T>> {
    let json: Option<String> = query.fetch_one(connection).await?.get(0);
    let Some(json) = json else { return Ok(Vec::new()) };
    serde_json::from_str(&json).context("reading rows as SQLite packed them")
}

/// The area tags of a page's insights by their `seq` (SQLite keeps it beside each tag): those between two (`$1`,
/// `$2`), or those of a list (`$1`, a JSON array).
const PACKED_AREAS_BETWEEN: &str = "SELECT json_group_array(json_array(insight_seq, generation_id, area_code,
    near_boundary)) FROM insight_areas WHERE insight_seq BETWEEN $1 AND $2";
const PACKED_AREAS_OF: &str = "SELECT json_group_array(json_array(insight_seq, generation_id, area_code,
    near_boundary)) FROM insight_areas WHERE insight_seq IN (SELECT value FROM json_each($1))";
/// The triage tags and priority links of a page's insights (`$1`, their ids as a JSON array).
const PACKED_TAGS: &str = "SELECT json_group_array(json_array(insight_id, tag)) FROM triage_tags
    WHERE insight_id IN (SELECT value FROM json_each($1))";
const PACKED_PRIORITIES: &str = "SELECT json_group_array(json_array(insight_id, priority)) FROM insight_priorities
    WHERE insight_id IN (SELECT value FROM json_each($1))";

async fn page(
    connection: &mut SqliteConnection,
    filter: &InsightFilter,
    before_seq: Option<i64>,
    limit: u32,
) -> anyhow::Result<Vec<InsightRecord>> {
    let mut records = read_packed(connection, &packed_select(filter, before_seq, limit)).await?;
    complete(connection, &mut records).await?;
    Ok(records)
}

/// One insight's whole triage (notes included).
async fn read_triage(connection: &mut SqliteConnection, id: Uuid) -> anyhow::Result<Option<InsightRecord>> {
    let mut built = FilterSql::default();
    let id_text = built.bind(Bind::Text(id.to_string()));
    built.sql = format!(
        "SELECT '[' || group_concat({PACKED_RECORD}) || ']' FROM insights i {RECORD_JOINS}
         WHERE i.id = {id_text}"
    );
    let mut records = read_packed(connection, &built).await?;
    if records.is_empty() {
        return Ok(None);
    }
    complete(connection, &mut records).await?;
    let notes: Vec<(String, String, String)> =
        sqlx::query_as(NOTES).bind(id.to_string()).fetch_all(&mut *connection).await?;
    let mut record = records.pop().expect("one record");
    record.triage.notes = notes
        .into_iter()
        .map(|(at, author, text)| TriageNote {
            at: parse_time(Some(at)).unwrap_or(OffsetDateTime::UNIX_EPOCH),
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
        let path = self.path.clone();
        let reader = sink.clone();
        let read =
            tokio::task::spawn_blocking(move || super::sqlite_export::export(&path, &filter, batch, count, &reader));
        let read = match read.await {
            Ok(read) => read,
            Err(stopped) => Err(anyhow::anyhow!("the export's read stopped: {stopped}")),
        };
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::insight_query::InsightQuery;
    use crate::store::sqlite::tests::{collector_and_device, FIXTURE_COLLECTOR};

    /// A page's area tags are read by `seq`, as one range when the page is dense and one by one when it is sparse:
    /// either way each insight gets its own tags and nobody else's, and its coordinates read back exactly.
    #[tokio::test]
    async fn every_insight_of_a_page_gets_its_own_tags_whether_the_page_is_dense_or_sparse() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&format!("sqlite://{}", dir.path().join("p.db").display())).await.unwrap();
        let collector = FIXTURE_COLLECTOR;
        let mut statements = collector_and_device();
        let generation = 1;
        statements.push(
            "INSERT INTO boundary_generations (id, set_name, generation, source, imported_at)
             VALUES (1, 'wards', 1, 'bundled', 'now')"
                .to_owned(),
        );
        for seq in 1..=40_i64 {
            let id = Uuid::from_u128(u128::try_from(seq).unwrap());
            let category = if seq == 3 || seq == 38 { "drugs" } else { "asb" };
            statements.push(format!(
                "INSERT INTO documents (doc_id, collector_id, version, updated_at) VALUES ('doc{seq}', '{collector}', 1, 'now')"
            ));
            statements.push(format!(
                "INSERT INTO insights (id, doc_id, collector_id, device_id, category, status, processed_at, lat, lon, seq)
                 VALUES ('{id}', 'doc{seq}', '{collector}', 'd1', '{category}', 'filed', '2026-12-07T10:00:00Z',
                     {}, -2.1, {seq})",
                f64::from_bits(52.9_f64.to_bits() + u64::try_from(seq).unwrap())
            ));
            statements.push(format!(
                "INSERT INTO insight_areas (insight_id, generation_id, area_code, near_boundary, insight_seq)
                 VALUES ('{id}', {generation}, 'E{seq}', {}, {seq})",
                seq % 2
            ));
        }
        for statement in &statements {
            sqlx::query(statement).execute(&store.pool).await.unwrap();
        }
        let filter = |query: &str| InsightFilter {
            query: InsightQuery::parse(Some(query), &[]).unwrap().0,
            generation_id: generation,
            areas: None,
        };
        let seqs_and_areas = |records: &[InsightRecord]| -> Vec<(i64, Vec<AreaTag>)> {
            records.iter().map(|record| (record.seq, record.row.tags.clone())).collect()
        };
        let tag =
            |seq: i64| AreaTag { generation_id: generation, area_code: format!("E{seq}"), near_boundary: seq % 2 == 1 };
        // Dense: the newest ten.
        let newest = store.insight_page(&filter(""), None, 10).await.unwrap();
        let expected: Vec<_> = (31..=40).rev().map(|seq| (seq, vec![tag(seq)])).collect();
        assert_eq!(seqs_and_areas(&newest), expected);
        assert_eq!(newest[0].row.gps.unwrap().0.to_bits(), 52.9_f64.to_bits() + 40, "coordinates read back exactly");
        // Sparse: two insights 35 apart.
        let drugs = store.insight_page(&filter("category=drugs"), None, 10).await.unwrap();
        let expected = vec![(38, vec![tag(38)]), (3, vec![tag(3)])];
        assert_eq!(seqs_and_areas(&drugs), expected);
        let one = store.insight_record(Uuid::from_u128(3)).await.unwrap().unwrap();
        assert_eq!(seqs_and_areas(&[one]), expected[1..]);
    }
}
