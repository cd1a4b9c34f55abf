//! Reading insights for the analysts, and their triage: one filtered, keyset-paged query both backends build from
//! the same pieces (`FilterSql`), the consistent snapshot an export streams from, and triage written with versions
//! (docs/workbench.md). Writing insights stays with `documents`, which keeps `seq` and the search index in step.

/// The insight's own columns, with which every record read begins (`RECORD_COLUMNS`; a PostgreSQL export's, which
/// reads the cohort and triage beside them): 21 columns, `i` being `insights`.
macro_rules! insight_columns {
    () => {
        "i.seq, i.id, i.collector_id, i.captured_at, i.campaign, i.category, i.text, i.feeling_safe, i.channel, i.lat,
        i.lon, i.accuracy_m, i.picked_area_code, i.status, i.area_code, i.reject_code, i.reject_message, i.processed_at,
        i.postcode, i.tag_lat, i.tag_lon"
    };
}

mod pg_copy;
mod postgres;
mod postgres_export;
mod sqlite;
mod sqlite_export;

use time::OffsetDateTime;
use uuid::Uuid;

use super::{AreaTag, InsightRow, Outcome};
use crate::domain::insight_query::{InsightQuery, TriageState};

/// What to read: the analyst's filter, the generation its areas are in, and the areas the principal may see.
#[derive(Debug, Clone)]
pub struct InsightFilter {
    pub query: InsightQuery,
    /// The generation `areas` (and `near_boundary`) are read in.
    pub generation_id: i64,
    /// The area codes an insight must lie in (in that generation), or `None` for anywhere, rejected insights (which
    /// lie nowhere) included.
    pub areas: Option<Vec<String>>,
}

/// One insight as an analyst reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct InsightRecord {
    /// The order it arrived in: pages run newest first by it.
    pub seq: i64,
    pub row: InsightRow,
    pub collector_id: Uuid,
    /// The label of the invitation its device enrolled with (the cohort), if any.
    pub cohort: Option<String>,
    pub triage: Triage,
}

/// The analysts' triage of one insight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Triage {
    pub state: TriageState,
    /// How many times it was written; 0 until the first write. A write names the version it read.
    pub version: i64,
    pub updated_at: Option<OffsetDateTime>,
    /// The audit name of who last wrote it.
    pub updated_by: Option<String>,
    pub tags: Vec<String>,
    /// Oldest first.
    pub notes: Vec<TriageNote>,
    /// `SET:AREA:CATEGORY`.
    pub priorities: Vec<String>,
}

impl Default for Triage {
    fn default() -> Self {
        Triage {
            state: TriageState::New,
            version: 0,
            updated_at: None,
            updated_by: None,
            tags: Vec::new(),
            notes: Vec::new(),
            priorities: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TriageNote {
    pub at: OffsetDateTime,
    pub author: String,
    pub text: String,
}

/// A triage write: what to change, against the version read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TriageChange {
    pub state: Option<TriageState>,
    /// Appended.
    pub note: Option<String>,
    pub add_tags: Vec<String>,
    pub remove_tags: Vec<String>,
    pub link_priorities: Vec<String>,
    pub unlink_priorities: Vec<String>,
}

/// Why a triage write did not happen.
#[derive(Debug, thiserror::Error)]
pub enum TriageError {
    /// Another analyst wrote it after the version named: nothing was written; here is what it is now.
    #[error("the triage changed since version {expected}")]
    Changed { expected: i64, current: Box<Triage> },
    #[error("no insight has this id")]
    Unknown,
    #[error(transparent)]
    Database(#[from] anyhow::Error),
}

impl From<sqlx::Error> for TriageError {
    fn from(error: sqlx::Error) -> Self {
        TriageError::Database(error.into())
    }
}

/// Rows an export receives at a time.
pub type ExportBatch = anyhow::Result<Vec<InsightRecord>>;

/// The analysts' reading of insights, and triage.
#[async_trait::async_trait]
pub trait InsightStore: Send + Sync {
    /// Up to `limit` insights matching `filter` that arrived before `before_seq` (all, when `None`), newest first.
    async fn insight_page(
        &self,
        filter: &InsightFilter,
        before_seq: Option<i64>,
        limit: u32,
    ) -> anyhow::Result<Vec<InsightRecord>>;

    /// One insight with its tags and whole triage, if it exists.
    async fn insight_record(&self, id: Uuid) -> anyhow::Result<Option<InsightRecord>>;

    /// Every insight matching `filter`, newest first, read from one snapshot (an insight stored meanwhile is in it
    /// whole or not at all), sent `batch` at a time; stops early when the receiver is dropped. With `count`, the
    /// insights matching are counted first, in the same snapshot, and the count sent there before any row is read
    /// (a caller refusing an export too large for its format drops the receivers, and nothing more is read).
    async fn export_insights(
        &self,
        filter: InsightFilter,
        batch: u32,
        count: Option<tokio::sync::oneshot::Sender<u64>>,
        sink: tokio::sync::mpsc::Sender<ExportBatch>,
    ) -> anyhow::Result<()>;

    /// Applies a triage change if the stored version is still `expected_version`, by `author` (an audit name).
    async fn update_triage(
        &self,
        id: Uuid,
        expected_version: i64,
        change: &TriageChange,
        author: &str,
    ) -> Result<Triage, TriageError>;

    /// The key collector pseudonyms are made with (made by the migration; the same on every node).
    async fn pseudonym_key(&self) -> anyhow::Result<Vec<u8>>;
}

/// `captured_at` as the phone wrote it: the instant, in the offset kept beside it (UTC when none is kept).
#[must_use]
pub(crate) fn with_offset(at: Option<OffsetDateTime>, offset_minutes: Option<i16>) -> Option<OffsetDateTime> {
    let offset = offset_minutes.and_then(|minutes| time::UtcOffset::from_whole_seconds(i32::from(minutes) * 60).ok());
    at.map(|at| at.to_offset(offset.unwrap_or(time::UtcOffset::UTC)))
}

/// The key in `meta`.
const PSEUDONYM_KEY: &str = "SELECT value FROM meta WHERE key = 'pseudonym_key'";

/// The hex text of the key as bytes.
fn key_bytes(hex: &str) -> anyhow::Result<Vec<u8>> {
    anyhow::ensure!(hex.len() == 64, "the pseudonym key is not 64 hexadecimal digits");
    (0..32).map(|at| Ok(u8::from_str_radix(&hex[at * 2..at * 2 + 2], 16)?)).collect()
}

/// The columns a record is read from, `i` being `insights` (and `cohort` the invitation's label). The readers take
/// them by position (`sqlite_export::record`, `postgres::insight`): a column moved here moves there.
const RECORD_COLUMNS: &str = concat!(
    insight_columns!(),
    ", inv.label AS cohort, t.state AS triage_state, t.version AS triage_version, t.updated_at AS triage_updated_at,
    t.updated_by AS triage_updated_by"
);

/// The joins every record read makes.
const RECORD_JOINS: &str = "LEFT JOIN devices d ON d.id = i.device_id
    LEFT JOIN invitations inv ON inv.id = d.invitation_id
    LEFT JOIN triage t ON t.insight_id = i.id";

/// A page's area tags are read by `seq` as one range when its insights lie close together in that order (a wide
/// list, an export), else by the insights one by one.
const DENSE: i64 = 4;

/// Up to this many areas, SQLite reads an area filter through `insight_areas_by_area`.
const FEW_AREAS: usize = 8;

/// The two SQL dialects the filter is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dialect {
    Sqlite,
    Postgres,
}

/// A value the filter binds, in order (`$1`, `$2`, …).
#[derive(Debug, Clone, PartialEq)]
enum Bind {
    Int(i64),
    Text(String),
    /// A list of texts: a JSON array on SQLite (`json_each`), a `text[]` on PostgreSQL.
    Texts(Vec<String>),
    Date(time::Date),
    Bool(bool),
}

/// A filtered query's SQL and what it binds.
#[derive(Debug, Default)]
struct FilterSql {
    sql: String,
    binds: Vec<Bind>,
}

impl FilterSql {
    /// Binds `value`, returning its placeholder.
    fn bind(&mut self, value: Bind) -> String {
        self.binds.push(value);
        format!("${}", self.binds.len())
    }

    /// `SELECT … FROM insights i … WHERE <filter> [AND i.seq < before] ORDER BY i.seq DESC [LIMIT n]`.
    fn select(dialect: Dialect, filter: &InsightFilter, before_seq: Option<i64>, limit: Option<u32>) -> FilterSql {
        let (mut built, joins, condition) = FilterSql::matching(dialect, filter, before_seq);
        built.sql = format!(
            "SELECT {RECORD_COLUMNS} FROM insights i {joins}{RECORD_JOINS} WHERE {condition} ORDER BY i.seq DESC"
        );
        if let Some(limit) = limit {
            let limit = built.bind(Bind::Int(limit.into()));
            built.sql.push_str(&format!(" LIMIT {limit}"));
        }
        built
    }

    /// `SELECT COUNT(*) …`: how many insights the filter lets through (the joins a record read makes are left out,
    /// except triage's, which the `triage` filter reads).
    fn count(dialect: Dialect, filter: &InsightFilter) -> FilterSql {
        let (mut built, joins, condition) = FilterSql::matching(dialect, filter, None);
        built.sql = format!(
            "SELECT COUNT(*) FROM insights i {joins}LEFT JOIN triage t ON t.insight_id = i.id WHERE {condition}"
        );
        built
    }

    /// The binds, the joins and the condition of the filter (the joins end with a space).
    fn matching(dialect: Dialect, filter: &InsightFilter, before_seq: Option<i64>) -> (FilterSql, String, String) {
        let mut built = FilterSql::default();
        let query = &filter.query;
        let mut conditions: Vec<String> = Vec::new();
        let mut joins = String::new();
        if filter.areas.is_some() || query.near_boundary.is_some() {
            let generation = built.bind(Bind::Int(filter.generation_id));
            // A few areas are read through `insight_areas_by_area` and the few insights found sorted. SQLite cannot
            // tell how many a bound list holds, so with more areas (a wide scope), or none, it is made to walk the
            // newest insights first (`CROSS JOIN` fixes the order), which fills a page soon when the areas hold
            // many: 1.8 s against 6 ms for 60 wards at a million insights.
            let few = filter.areas.as_ref().is_some_and(|areas| areas.len() <= FEW_AREAS);
            let join = if dialect == Dialect::Sqlite && !few { "CROSS JOIN" } else { "JOIN" };
            joins.push_str(&format!(
                "{join} insight_areas ia ON ia.insight_id = i.id AND ia.generation_id = {generation} "
            ));
        }
        if let Some(areas) = &filter.areas {
            let list = built.bind(Bind::Texts(areas.clone()));
            conditions.push(in_list(dialect, "ia.area_code", &list));
        }
        if let Some(near) = query.near_boundary {
            let near = built.bind(Bind::Bool(near));
            conditions.push(format!("ia.near_boundary = {near}"));
        }
        if !query.categories.is_empty() {
            let list = built.bind(Bind::Texts(query.categories.clone()));
            conditions.push(in_list(dialect, "i.category", &list));
        }
        if let Some(channel) = query.channel {
            let channel = built.bind(Bind::Text(channel.as_str().to_owned()));
            conditions.push(format!("i.channel = {channel}"));
        }
        if let Some(from) = query.days.from {
            let from = built.bind(Bind::Date(from));
            conditions.push(format!("i.captured_day >= {from}"));
        }
        if let Some(to) = query.days.to {
            let to = built.bind(Bind::Date(to));
            conditions.push(format!("i.captured_day < {to}"));
        }
        if !query.statuses.is_empty() {
            let list = built.bind(Bind::Texts(query.statuses.iter().map(|status| (*status).to_owned()).collect()));
            conditions.push(in_list(dialect, "i.status", &list));
        }
        if let Some((low, high)) = query.feeling_safe {
            let (low, high) = (built.bind(Bind::Int(low.into())), built.bind(Bind::Int(high.into())));
            conditions.push(format!("i.feeling_safe BETWEEN {low} AND {high}"));
        }
        if let Some(state) = query.triage {
            let state = built.bind(Bind::Text(state.as_str().to_owned()));
            conditions.push(format!("COALESCE(t.state, 'new') = {state}"));
        }
        if let Some(tag) = &query.tag {
            let tag = built.bind(Bind::Text(tag.clone()));
            conditions
                .push(format!("EXISTS (SELECT 1 FROM triage_tags tt WHERE tt.insight_id = i.id AND tt.tag = {tag})"));
        }
        if !query.words.is_empty() {
            match dialect {
                Dialect::Sqlite => {
                    // Every word quoted: FTS5 reads it as a string to find, never as syntax (NEAR, *, -, AND).
                    let phrase: Vec<String> =
                        query.words.iter().map(|word| format!("\"{}\"", word.replace('"', ""))).collect();
                    let phrase = built.bind(Bind::Text(phrase.join(" ")));
                    conditions
                        .push(format!("i.seq IN (SELECT rowid FROM insights_fts WHERE insights_fts MATCH {phrase})"));
                }
                Dialect::Postgres => {
                    for word in &query.words {
                        let word = built.bind(Bind::Text(word.clone()));
                        conditions.push(format!(
                            "i.search @@ (plainto_tsquery('english', {word}) || plainto_tsquery('simple', {word}))"
                        ));
                    }
                }
            }
        }
        if let Some(before) = before_seq {
            let before = built.bind(Bind::Int(before));
            conditions.push(format!("i.seq < {before}"));
        }
        let condition = if conditions.is_empty() { "TRUE".to_owned() } else { conditions.join(" AND ") };
        (built, joins, condition)
    }
}

/// `column` is one of the texts in the list bound at `placeholder`.
fn in_list(dialect: Dialect, column: &str, placeholder: &str) -> String {
    match dialect {
        Dialect::Sqlite => format!("{column} IN (SELECT value FROM json_each({placeholder}))"),
        Dialect::Postgres => format!("{column} = ANY({placeholder})"),
    }
}

/// The columns of a record both backends read as the same types, in the order of `RECORD_COLUMNS`.
struct RecordColumns {
    seq: i64,
    campaign: Option<String>,
    category: Option<String>,
    text: Option<String>,
    channel: Option<String>,
    lat: Option<f64>,
    lon: Option<f64>,
    accuracy_m: Option<f64>,
    picked_area_code: Option<String>,
    status: String,
    area_code: Option<String>,
    reject_code: Option<String>,
    reject_message: Option<String>,
    postcode: Option<String>,
    tag_lat: Option<f64>,
    tag_lon: Option<f64>,
    cohort: Option<String>,
    triage: TriageColumns,
}

/// A record's triage columns, as `RECORD_COLUMNS` names them (all `None`: an insight never triaged).
#[derive(Default)]
struct TriageColumns {
    state: Option<String>,
    version: Option<i64>,
    updated_at: Option<OffsetDateTime>,
    updated_by: Option<String>,
}

impl TriageColumns {
    /// Writes them into `triage`: an insight never triaged is `new`, at version 0.
    fn apply(self, triage: &mut Triage) {
        triage.state = self.state.as_deref().and_then(TriageState::parse).unwrap_or(TriageState::New);
        triage.version = self.version.unwrap_or(0);
        triage.updated_at = self.updated_at;
        triage.updated_by = self.updated_by;
    }
}

/// What each backend reads itself (the types differ): ids, times and the score.
struct RecordParts {
    id: Uuid,
    collector_id: Uuid,
    captured_at: Option<OffsetDateTime>,
    feeling_safe: Option<i64>,
    processed_at: OffsetDateTime,
}

impl RecordColumns {
    fn into_record(self, parts: RecordParts) -> InsightRecord {
        let mut triage = Triage::default();
        self.triage.apply(&mut triage);
        InsightRecord {
            seq: self.seq,
            row: InsightRow {
                id: parts.id,
                captured_at: parts.captured_at,
                campaign: self.campaign,
                category: self.category,
                text: self.text,
                feeling_safe: parts.feeling_safe.and_then(|score| u8::try_from(score).ok()),
                channel: self.channel,
                gps: self.lat.zip(self.lon).map(|(lat, lon)| (lat, lon, self.accuracy_m.unwrap_or(0.0))),
                picked_area_code: self.picked_area_code,
                postcode: self.postcode,
                tag_point: self.tag_lat.zip(self.tag_lon),
                outcome: Outcome::from_columns(&self.status, self.area_code, self.reject_code, self.reject_message),
                processed_at: parts.processed_at,
                tags: Vec::new(),
            },
            collector_id: parts.collector_id,
            cohort: self.cohort,
            triage,
        }
    }
}

/// Hands each record its area tags, triage tags and priority links, from rows read for the whole page at once
/// (`(insight id, …)`).
fn attach(
    records: &mut [InsightRecord],
    areas: Vec<(Uuid, AreaTag)>,
    tags: Vec<(Uuid, String)>,
    priorities: Vec<(Uuid, String)>,
) {
    let index: std::collections::HashMap<Uuid, usize> =
        records.iter().enumerate().map(|(at, record)| (record.row.id, at)).collect();
    for (id, tag) in areas {
        if let Some(&at) = index.get(&id) {
            records[at].row.tags.push(tag);
        }
    }
    for (id, tag) in tags {
        if let Some(&at) = index.get(&id) {
            records[at].triage.tags.push(tag);
        }
    }
    for (id, priority) in priorities {
        if let Some(&at) = index.get(&id) {
            records[at].triage.priorities.push(priority);
        }
    }
    for record in records {
        record.row.tags.sort_by_key(|tag| tag.generation_id);
        record.triage.tags.sort();
        record.triage.priorities.sort();
    }
}

/// The area tags of a page's insights (`$1` the ids).
const PAGE_AREAS: &str = "SELECT insight_id, generation_id, area_code, near_boundary FROM insight_areas";
const PAGE_TAGS: &str = "SELECT insight_id, tag FROM triage_tags";
const PAGE_PRIORITIES: &str = "SELECT insight_id, priority FROM insight_priorities";

/// An insight's notes, oldest first.
const NOTES: &str = "SELECT at, author, text FROM triage_notes WHERE insight_id = $1 ORDER BY at";

/// Writes an insight's triage row (`$1` id, `$2` state, `$3` version, `$4` when, `$5` who).
const SAVE_TRIAGE: &str = "INSERT INTO triage (insight_id, state, version, updated_at, updated_by)
    VALUES ($1, $2, $3, $4, $5)
    ON CONFLICT (insight_id) DO UPDATE SET state = excluded.state, version = excluded.version,
        updated_at = excluded.updated_at, updated_by = excluded.updated_by";

/// Appends a note (`$1` id, `$2` when, `$3` who, `$4` the text).
const ADD_NOTE: &str = "INSERT INTO triage_notes (insight_id, at, author, text) VALUES ($1, $2, $3, $4)";

impl TriageChange {
    /// The statements that add and remove its tags and priority links, each run once per value (`$1` the
    /// insight's id, `$2` the value).
    fn statements(&self) -> [(&'static str, &[String]); 4] {
        [
            ("INSERT INTO triage_tags (insight_id, tag) VALUES ($1, $2) ON CONFLICT DO NOTHING", &self.add_tags),
            ("DELETE FROM triage_tags WHERE insight_id = $1 AND tag = $2", &self.remove_tags),
            (
                "INSERT INTO insight_priorities (insight_id, priority) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &self.link_priorities,
            ),
            ("DELETE FROM insight_priorities WHERE insight_id = $1 AND priority = $2", &self.unlink_priorities),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(query: &str, areas: Option<Vec<String>>) -> InsightFilter {
        let (query, _) = InsightQuery::parse(Some(query), &[]).unwrap();
        InsightFilter { query, generation_id: 3, areas }
    }

    #[test]
    fn the_filter_binds_every_value_and_never_splices_one_in() {
        let filter =
            filter("q=it%27s+%22NEAR%22&category=drugs&tag=x&triage=new", Some(vec!["E1'; DROP TABLE x".into()]));
        for dialect in [Dialect::Sqlite, Dialect::Postgres] {
            let built = FilterSql::select(dialect, &filter, Some(10), Some(50));
            assert!(!built.sql.contains("DROP") && !built.sql.contains("NEAR") && !built.sql.contains("it's"));
            let placeholders = built.sql.matches('$').count();
            assert!(placeholders >= built.binds.len(), "{dialect:?}: {}", built.sql);
            assert!(built.sql.ends_with(&format!("LIMIT ${}", built.binds.len())), "{}", built.sql);
        }
        let sqlite = FilterSql::select(Dialect::Sqlite, &filter, None, None);
        assert!(sqlite.binds.contains(&Bind::Text("\"it\" \"s\" \"near\"".into())), "{:?}", sqlite.binds);
    }

    #[test]
    fn an_unscoped_filter_of_nothing_reads_every_insight_without_joining_areas() {
        let built = FilterSql::select(Dialect::Postgres, &filter("", None), None, Some(5));
        assert!(!built.sql.contains("insight_areas"), "{}", built.sql);
        assert!(built.sql.contains("WHERE TRUE ORDER BY i.seq DESC LIMIT $1"), "{}", built.sql);
    }

    #[test]
    fn a_count_reads_the_same_filter_with_the_same_binds() {
        let filter = filter("category=drugs&near_boundary=true&triage=new&q=chip", Some(vec!["E1".into()]));
        for dialect in [Dialect::Sqlite, Dialect::Postgres] {
            let (rows, count) = (FilterSql::select(dialect, &filter, None, None), FilterSql::count(dialect, &filter));
            assert_eq!(rows.binds, count.binds, "{dialect:?}");
            let condition =
                |sql: &str| sql.split(" WHERE ").nth(1).unwrap().split(" ORDER BY").next().unwrap().to_owned();
            assert_eq!(condition(&rows.sql), condition(&count.sql), "{dialect:?}");
            assert!(count.sql.starts_with("SELECT COUNT(*) FROM insights i JOIN insight_areas ia"), "{}", count.sql);
        }
    }

    #[test]
    fn the_pseudonym_key_reads_from_hex() {
        assert_eq!(key_bytes(&"0f".repeat(32)).unwrap(), vec![15u8; 32]);
        assert!(key_bytes("abc").is_err());
    }
}
