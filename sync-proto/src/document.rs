//! How an insight lives in an Automerge document, and what the server writes back into it.
//!
//! One document per insight (see `docs/data-model.md`): the cost of a new insight never grows with a collector's
//! history, and erasing an insight is deleting its document. The layout, all at the document root:
//!
//! | key            | type                      | written by |
//! | -------------- | ------------------------- | ---------- |
//! | `schema`       | uint, [`SCHEMA_VERSION`]  | phone      |
//! | `type`         | `"insight"`               | phone      |
//! | `id`           | UUID string               | phone      |
//! | `captured_at`  | RFC 3339 with offset      | phone      |
//! | `campaign`     | slug                      | phone      |
//! | `category`     | slug                      | phone      |
//! | `text`         | string or text object     | phone      |
//! | `feeling_safe` | int 1–5, or absent / null | phone      |
//! | `channel`      | slug                      | phone      |
//! | `location`     | map, or absent / null     | phone      |
//! | `withdrawn`    | bool, or absent           | phone      |
//! | `server`       | map                       | server     |
//!
//! `location` is `{kind: "gps", lat, lon, accuracy_m}`, `{kind: "area", code}` or `{kind: "postcode", postcode}`.
//! `withdrawn: true` means the person took the insight back: it counts nowhere, whatever else it says. `server` is
//! `{status, area_code?, area_name?, code?, message?, processed_at}` with `status` one of `filed`, `outside_coverage`,
//! `rejected`, `withdrawn`.

use automerge::transaction::{CommitOptions, Transactable};
use automerge::{AutoCommit, ObjId, ObjType, ReadDoc, ScalarValue, Value, ROOT};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::codes::ErrorCode;
use crate::insight::{Channel, Insight, InsightChanges, InvalidInsight, Location, SCHEMA_VERSION};

/// What the server decided about an insight, as written back into its document.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerStatus {
    /// Geotagged into an area.
    Filed { area_code: String, area_name: String },
    /// Stored and counted, but its point lies outside every area.
    OutsideCoverage,
    /// Refused: never counted. The document keeps what was sent.
    Rejected { code: ErrorCode, message: String },
    /// Taken back by the person who captured it: no longer counted.
    Withdrawn,
}

/// The server's record in an insight document.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerRecord {
    pub status: ServerStatus,
    pub processed_at: OffsetDateTime,
}

/// Writes a new insight into an empty document.
///
/// # Errors
/// Only Automerge's own errors, which do not happen on a fresh document.
pub fn write_insight(doc: &mut AutoCommit, insight: &Insight) -> Result<(), automerge::AutomergeError> {
    doc.put(ROOT, "schema", SCHEMA_VERSION)?;
    doc.put(ROOT, "type", "insight")?;
    doc.put(ROOT, "id", insight.id.to_string())?;
    doc.put(ROOT, "captured_at", format_time(insight.captured_at))?;
    doc.put(ROOT, "campaign", insight.campaign.as_str())?;
    doc.put(ROOT, "category", insight.category.as_str())?;
    doc.put(ROOT, "text", insight.text.as_str())?;
    put_feeling_safe(doc, insight.feeling_safe)?;
    doc.put(ROOT, "channel", insight.channel.as_str())?;
    put_location(doc, &insight.location)?;
    stamp(doc);
    Ok(())
}

/// Ends the change being written, stamped with the writer's clock (seconds since 1970), so the insight's history
/// can say when each version was made. Automerge keeps the time as advice only: it never decides a merge.
fn stamp(doc: &mut AutoCommit) {
    doc.commit_with(CommitOptions::default().with_time(OffsetDateTime::now_utc().unix_timestamp()));
}

fn put_feeling_safe(doc: &mut AutoCommit, feeling_safe: Option<u8>) -> Result<(), automerge::AutomergeError> {
    match feeling_safe {
        Some(score) => doc.put(ROOT, "feeling_safe", i64::from(score)),
        None => doc.put(ROOT, "feeling_safe", ScalarValue::Null),
    }
}

fn put_location(doc: &mut AutoCommit, location: &Location) -> Result<(), automerge::AutomergeError> {
    match location {
        Location::Gps { lat, lon, accuracy_m } => {
            let location = doc.put_object(ROOT, "location", ObjType::Map)?;
            doc.put(&location, "kind", "gps")?;
            doc.put(&location, "lat", *lat)?;
            doc.put(&location, "lon", *lon)?;
            doc.put(&location, "accuracy_m", *accuracy_m)?;
        }
        Location::Area { code } => {
            let location = doc.put_object(ROOT, "location", ObjType::Map)?;
            doc.put(&location, "kind", "area")?;
            doc.put(&location, "code", code.as_str())?;
        }
        Location::Postcode { postcode } => {
            let location = doc.put_object(ROOT, "location", ObjType::Map)?;
            doc.put(&location, "kind", "postcode")?;
            doc.put(&location, "postcode", postcode.as_str())?;
        }
        Location::None => doc.put(ROOT, "location", ScalarValue::Null)?,
    }
    Ok(())
}

/// Writes a person's edit into an insight's document: only the fields `changes` names, each as one Automerge change
/// to its key, so an edit merges with whatever the server or another device wrote meanwhile. Text is trimmed as
/// capture trims it. The caller validates the result (`read_insight`, then `Insight::validate`).
///
/// # Errors
/// Only Automerge's own errors.
pub fn write_changes(doc: &mut AutoCommit, changes: &InsightChanges) -> Result<(), automerge::AutomergeError> {
    if let Some(category) = &changes.category {
        doc.put(ROOT, "category", category.as_str())?;
    }
    if let Some(text) = &changes.text {
        doc.put(ROOT, "text", crate::insight::normalise_text(text))?;
    }
    if let Some(feeling_safe) = changes.feeling_safe {
        put_feeling_safe(doc, feeling_safe)?;
    }
    if let Some(location) = &changes.location {
        put_location(doc, location)?;
    }
    stamp(doc);
    Ok(())
}

/// Marks the insight withdrawn: the person took it back. It stays in the document (erasing is deleting the document),
/// and the server stops counting it.
///
/// # Errors
/// Only Automerge's own errors.
pub fn write_withdrawn(doc: &mut AutoCommit) -> Result<(), automerge::AutomergeError> {
    doc.put(ROOT, "withdrawn", true)?;
    stamp(doc);
    Ok(())
}

/// Whether the person withdrew the insight. Anything but a `true` boolean (absent, null, another type) is not a
/// withdrawal.
#[must_use]
pub fn is_withdrawn(doc: &AutoCommit) -> bool {
    matches!(doc.get(ROOT, "withdrawn"), Ok(Some((Value::Scalar(value), _))) if value.as_ref() == &ScalarValue::Boolean(true))
}

/// Reads the insight out of a document, whoever wrote it. It checks shape (fields present, of the right type) but not
/// the rules: call [`Insight::validate`] on the result.
///
/// # Errors
/// The first field that is missing or of the wrong type, with its stable code.
pub fn read_insight(doc: &AutoCommit) -> Result<Insight, InvalidInsight> {
    let schema = read_uint(doc, &ROOT, "schema")?
        .ok_or_else(|| malformed("schema", "the document has no schema version; is it an insight?"))?;
    if schema > SCHEMA_VERSION {
        return Err(InvalidInsight::new(
            ErrorCode::InsightSchemaUnsupported,
            "schema",
            format!("schema version {schema} is newer than this server understands ({SCHEMA_VERSION})"),
        ));
    }
    let kind = read_string(doc, &ROOT, "type")?;
    if kind.as_deref() != Some("insight") {
        return Err(malformed("type", "the document's type is not 'insight'"));
    }
    let id = required_string(doc, &ROOT, "id")?;
    let id = Uuid::parse_str(&id).map_err(|_| malformed("id", format!("'{id}' is not a UUID")))?;
    let captured_at = required_string(doc, &ROOT, "captured_at")?;
    let captured_at = OffsetDateTime::parse(&captured_at, &Rfc3339).map_err(|_| {
        InvalidInsight::new(
            ErrorCode::InsightCapturedAtInvalid,
            "captured_at",
            format!("'{captured_at}' is not an RFC 3339 date and time with an offset"),
        )
    })?;
    let channel = required_string(doc, &ROOT, "channel")?;
    let channel = Channel::parse(&channel).ok_or_else(|| {
        InvalidInsight::new(ErrorCode::InsightChannelUnknown, "channel", format!("channel '{channel}' is not known"))
    })?;
    let feeling_safe = match read_number(doc, &ROOT, "feeling_safe")? {
        None => None,
        Some(score) if score.fract() == 0.0 && (0.0..=255.0).contains(&score) => {
            // Checked above to be a whole number in u8's range.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            Some(score as u8)
        }
        Some(score) => {
            return Err(InvalidInsight::new(
                ErrorCode::InsightFeelingSafeOutOfRange,
                "feeling_safe",
                format!("feeling safe must be a whole number from 1 to 5, not {score}"),
            ))
        }
    };
    Ok(Insight {
        id,
        captured_at,
        campaign: required_string(doc, &ROOT, "campaign")?,
        category: required_string(doc, &ROOT, "category")?,
        text: required_string(doc, &ROOT, "text")?,
        feeling_safe,
        location: read_location(doc)?,
        channel,
    })
}

/// Reads only the insight's location (the server looks a postcode up before deciding, without reading the rest).
///
/// # Errors
/// The location is malformed.
pub fn read_location(doc: &AutoCommit) -> Result<Location, InvalidInsight> {
    let location = match doc.get(ROOT, "location").map_err(|_| malformed("location", "unreadable"))? {
        None | Some((Value::Scalar(_), _)) => {
            // Absent, null, or a stray scalar: a scalar other than null is a shape error.
            return match read_scalar(doc, &ROOT, "location")? {
                None | Some(ScalarValue::Null) => Ok(Location::None),
                Some(_) => Err(malformed("location", "location must be a map or null")),
            };
        }
        Some((Value::Object(ObjType::Map), id)) => id,
        Some((Value::Object(_), _)) => return Err(malformed("location", "location must be a map or null")),
    };
    let invalid = |message: &str| InvalidInsight::new(ErrorCode::InsightLocationInvalid, "location", message);
    match read_string(doc, &location, "kind")?.as_deref() {
        Some("gps") => {
            let lat = read_number(doc, &location, "lat")?.ok_or_else(|| invalid("a GPS fix needs 'lat'"))?;
            let lon = read_number(doc, &location, "lon")?.ok_or_else(|| invalid("a GPS fix needs 'lon'"))?;
            let accuracy_m = read_number(doc, &location, "accuracy_m")?.unwrap_or(0.0);
            Ok(Location::Gps { lat, lon, accuracy_m })
        }
        Some("area") => {
            let code = read_string(doc, &location, "code")?.ok_or_else(|| invalid("an area needs its 'code'"))?;
            Ok(Location::Area { code })
        }
        Some("postcode") => {
            let postcode = read_string(doc, &location, "postcode")?
                .ok_or_else(|| invalid("a postcode location needs 'postcode'"))?;
            Ok(Location::Postcode { postcode })
        }
        _ => Err(invalid("location.kind must be 'gps', 'area' or 'postcode'")),
    }
}

/// Writes the server's decision into the document, unless the document already says exactly that (so that syncing
/// an unchanged insight again makes no new change). Returns whether it wrote.
///
/// # Errors
/// Only Automerge's own errors.
pub fn write_server_record(doc: &mut AutoCommit, record: &ServerRecord) -> Result<bool, automerge::AutomergeError> {
    if read_server_record(doc).is_some_and(|existing| existing.status == record.status) {
        return Ok(false);
    }
    let server = doc.put_object(ROOT, "server", ObjType::Map)?;
    match &record.status {
        ServerStatus::Filed { area_code, area_name } => {
            doc.put(&server, "status", "filed")?;
            doc.put(&server, "area_code", area_code.as_str())?;
            doc.put(&server, "area_name", area_name.as_str())?;
        }
        ServerStatus::OutsideCoverage => doc.put(&server, "status", "outside_coverage")?,
        ServerStatus::Rejected { code, message } => {
            doc.put(&server, "status", "rejected")?;
            doc.put(&server, "code", code.as_str())?;
            doc.put(&server, "message", message.as_str())?;
        }
        ServerStatus::Withdrawn => doc.put(&server, "status", "withdrawn")?,
    }
    doc.put(&server, "processed_at", format_time(record.processed_at))?;
    stamp(doc);
    Ok(true)
}

/// Reads the server's decision, if the server has made one and this build understands it.
#[must_use]
pub fn read_server_record(doc: &AutoCommit) -> Option<ServerRecord> {
    let Ok(Some((Value::Object(ObjType::Map), server))) = doc.get(ROOT, "server") else {
        return None;
    };
    let text = |key: &'static str| read_string(doc, &server, key).ok().flatten();
    let processed_at = OffsetDateTime::parse(&text("processed_at")?, &Rfc3339).ok()?;
    let status = match text("status")?.as_str() {
        "filed" => ServerStatus::Filed { area_code: text("area_code")?, area_name: text("area_name")? },
        "outside_coverage" => ServerStatus::OutsideCoverage,
        "rejected" => ServerStatus::Rejected {
            code: ErrorCode::parse(&text("code")?).unwrap_or(ErrorCode::InsightMalformed),
            message: text("message").unwrap_or_default(),
        },
        "withdrawn" => ServerStatus::Withdrawn,
        _ => return None,
    };
    Some(ServerRecord { status, processed_at })
}

/// Formats a time the way documents store it (RFC 3339, offset kept).
///
/// # Panics
/// Never for times in years 0–9999, which is every time a phone can report.
#[must_use]
pub fn format_time(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).expect("RFC 3339 formats every time in years 0-9999")
}

fn malformed(field: &'static str, message: impl Into<String>) -> InvalidInsight {
    InvalidInsight::new(ErrorCode::InsightMalformed, field, message)
}

fn read_scalar(doc: &AutoCommit, obj: &ObjId, key: &'static str) -> Result<Option<ScalarValue>, InvalidInsight> {
    match doc.get(obj, key).map_err(|_| malformed(key, "unreadable"))? {
        None => Ok(None),
        Some((Value::Scalar(value), _)) => Ok(Some(value.into_owned())),
        Some((Value::Object(_), _)) => Err(malformed(key, format!("'{key}' must be a single value"))),
    }
}

/// A string, stored either as a scalar string or as an Automerge text object (JavaScript clients write the latter).
fn read_string(doc: &AutoCommit, obj: &ObjId, key: &'static str) -> Result<Option<String>, InvalidInsight> {
    match doc.get(obj, key).map_err(|_| malformed(key, "unreadable"))? {
        None => Ok(None),
        Some((Value::Scalar(value), _)) => match value.as_ref() {
            ScalarValue::Str(text) => Ok(Some(text.to_string())),
            ScalarValue::Null => Ok(None),
            _ => Err(malformed(key, format!("'{key}' must be text"))),
        },
        Some((Value::Object(ObjType::Text), text_id)) => {
            doc.text(&text_id).map(Some).map_err(|_| malformed(key, "unreadable text"))
        }
        Some((Value::Object(_), _)) => Err(malformed(key, format!("'{key}' must be text"))),
    }
}

fn required_string(doc: &AutoCommit, obj: &ObjId, key: &'static str) -> Result<String, InvalidInsight> {
    read_string(doc, obj, key)?.ok_or_else(|| malformed(key, format!("'{key}' is missing")))
}

fn read_uint(doc: &AutoCommit, obj: &ObjId, key: &'static str) -> Result<Option<u64>, InvalidInsight> {
    match read_scalar(doc, obj, key)? {
        None | Some(ScalarValue::Null) => Ok(None),
        Some(ScalarValue::Uint(n)) => Ok(Some(n)),
        Some(ScalarValue::Int(n)) => u64::try_from(n).map(Some).map_err(|_| malformed(key, "must not be negative")),
        Some(ScalarValue::F64(n)) if n.fract() == 0.0 && (0.0..1e15).contains(&n) =>
        {
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            Ok(Some(n as u64))
        }
        Some(_) => Err(malformed(key, format!("'{key}' must be a whole number"))),
    }
}

fn read_number(doc: &AutoCommit, obj: &ObjId, key: &'static str) -> Result<Option<f64>, InvalidInsight> {
    // Integers from phones are small (scores, coordinates as whole degrees), so the conversions are exact.
    #[allow(clippy::cast_precision_loss)]
    match read_scalar(doc, obj, key)? {
        None | Some(ScalarValue::Null) => Ok(None),
        Some(ScalarValue::F64(n)) => Ok(Some(n)),
        Some(ScalarValue::Int(n)) => Ok(Some(n as f64)),
        Some(ScalarValue::Uint(n)) => Ok(Some(n as f64)),
        Some(_) => Err(malformed(key, format!("'{key}' must be a number"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::insight::tests::sample;

    #[test]
    fn an_insight_round_trips_through_its_document() {
        for location in [
            Location::Gps { lat: 52.99, lon: -2.13, accuracy_m: 8.5 },
            Location::Area { code: "E05008714".into() },
            Location::Postcode { postcode: "ST4 2DE".into() },
            Location::None,
        ] {
            let mut insight = sample();
            insight.location = location;
            let mut doc = AutoCommit::new();
            write_insight(&mut doc, &insight).unwrap();
            let reloaded = AutoCommit::load(&doc.save()).unwrap();
            assert_eq!(read_insight(&reloaded), Ok(insight));
        }
    }

    #[test]
    fn text_objects_and_integer_coordinates_are_read_like_javascript_writes_them() {
        let mut doc = AutoCommit::new();
        write_insight(&mut doc, &sample()).unwrap();
        let text = doc.put_object(ROOT, "text", ObjType::Text).unwrap();
        doc.splice_text(&text, 0, 0, "Written as collaborative text").unwrap();
        let location = doc.put_object(ROOT, "location", ObjType::Map).unwrap();
        doc.put(&location, "kind", "gps").unwrap();
        doc.put(&location, "lat", 53_i64).unwrap();
        doc.put(&location, "lon", -2_i64).unwrap();
        let insight = read_insight(&doc).unwrap();
        assert_eq!(insight.text, "Written as collaborative text");
        assert_eq!(insight.location, Location::Gps { lat: 53.0, lon: -2.0, accuracy_m: 0.0 });
    }

    #[test]
    fn shape_errors_name_the_field() {
        let mut doc = AutoCommit::new();
        assert_eq!(read_insight(&doc).unwrap_err().field, "schema");
        write_insight(&mut doc, &sample()).unwrap();
        doc.delete(ROOT, "category").unwrap();
        let error = read_insight(&doc).unwrap_err();
        assert_eq!((error.code, error.field), (ErrorCode::InsightMalformed, "category"));

        let mut doc = AutoCommit::new();
        write_insight(&mut doc, &sample()).unwrap();
        doc.put(ROOT, "captured_at", "yesterday").unwrap();
        assert_eq!(read_insight(&doc).unwrap_err().code, ErrorCode::InsightCapturedAtInvalid);

        let mut doc = AutoCommit::new();
        write_insight(&mut doc, &sample()).unwrap();
        doc.put(ROOT, "schema", SCHEMA_VERSION + 1).unwrap();
        assert_eq!(read_insight(&doc).unwrap_err().code, ErrorCode::InsightSchemaUnsupported);

        let mut doc = AutoCommit::new();
        write_insight(&mut doc, &sample()).unwrap();
        doc.put(ROOT, "feeling_safe", 2.5).unwrap();
        assert_eq!(read_insight(&doc).unwrap_err().code, ErrorCode::InsightFeelingSafeOutOfRange);
    }

    #[test]
    fn edits_change_only_the_fields_named_and_withdrawal_is_a_flag() {
        let mut doc = AutoCommit::new();
        let insight = sample();
        write_insight(&mut doc, &insight).unwrap();
        assert!(!is_withdrawn(&doc));
        let changes = InsightChanges {
            text: Some("  Moved on to the park  ".into()),
            feeling_safe: Some(None),
            location: Some(Location::Area { code: "E05008714".into() }),
            ..InsightChanges::default()
        };
        write_changes(&mut doc, &changes).unwrap();
        let edited = read_insight(&AutoCommit::load(&doc.save()).unwrap()).unwrap();
        assert_eq!(edited, changes.applied_to(&insight));
        assert_eq!(edited.text, "Moved on to the park");
        assert_eq!((edited.category, edited.feeling_safe), (insight.category, None));

        write_withdrawn(&mut doc).unwrap();
        assert!(is_withdrawn(&AutoCommit::load(&doc.save()).unwrap()));
        doc.put(ROOT, "withdrawn", "yes").unwrap();
        assert!(!is_withdrawn(&doc), "only a true boolean withdraws");
    }

    #[test]
    fn the_server_record_is_written_once_per_decision() {
        let mut doc = AutoCommit::new();
        write_insight(&mut doc, &sample()).unwrap();
        assert_eq!(read_server_record(&doc), None);
        let filed = ServerRecord {
            status: ServerStatus::Filed { area_code: "E05008714".into(), area_name: "Abbey Hulton".into() },
            processed_at: time::macros::datetime!(2026-11-21 09:00 UTC),
        };
        assert!(write_server_record(&mut doc, &filed).unwrap());
        let heads = doc.get_heads();
        assert!(!write_server_record(&mut doc, &filed).unwrap(), "the same decision writes nothing");
        assert_eq!(doc.get_heads(), heads);
        assert_eq!(read_server_record(&doc), Some(filed));

        let rejected = ServerRecord {
            status: ServerStatus::Rejected { code: ErrorCode::InsightAreaUnknown, message: "no such area".into() },
            processed_at: time::macros::datetime!(2026-11-21 10:00 UTC),
        };
        assert!(write_server_record(&mut doc, &rejected).unwrap());
        assert_eq!(read_server_record(&doc), Some(rejected));

        let withdrawn = ServerRecord {
            status: ServerStatus::Withdrawn,
            processed_at: time::macros::datetime!(2026-11-21 11:00 UTC),
        };
        assert!(write_server_record(&mut doc, &withdrawn).unwrap());
        assert_eq!(read_server_record(&doc), Some(withdrawn));
    }
}

/// Who made a version of an insight: the phone (the person capturing or editing it) or the server (its decision).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Author {
    Phone,
    Server,
}

/// One version of an insight, as its document's history holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct Version {
    /// When the change was made, by its writer's clock; `None` when the writer did not stamp it.
    pub at: Option<OffsetDateTime>,
    pub by: Author,
    /// The fields it changed, each with its value after the change (as text; `None` when removed or null).
    pub changed: Vec<(&'static str, Option<String>)>,
}

/// The most versions `history` reads; an insight's document has a handful.
pub const MAX_HISTORY: usize = 500;

/// The fields a history compares, as text: what a person would read.
fn history_fields(doc: &AutoCommit) -> Vec<(&'static str, Option<String>)> {
    let text = |key: &str| match doc.get(ROOT, key) {
        Ok(Some((Value::Scalar(value), _))) => match value.as_ref() {
            ScalarValue::Str(text) => Some(text.to_string()),
            ScalarValue::Int(number) => Some(number.to_string()),
            ScalarValue::Uint(number) => Some(number.to_string()),
            ScalarValue::Boolean(flag) => Some(flag.to_string()),
            ScalarValue::F64(number) => Some(number.to_string()),
            _ => None,
        },
        Ok(Some((Value::Object(ObjType::Text), id))) => doc.text(&id).ok(),
        _ => None,
    };
    let location = read_location(doc).ok().and_then(|location| match location {
        Location::Gps { lat, lon, accuracy_m } => Some(format!("{lat:.5}, {lon:.5} (±{accuracy_m:.0} m)")),
        Location::Area { code } => Some(format!("area {code}")),
        Location::Postcode { postcode } => Some(format!("postcode {postcode}")),
        Location::None => None,
    });
    let server = read_server_record(doc).map(|record| match record.status {
        ServerStatus::Filed { area_code, area_name } => format!("filed in {area_name} ({area_code})"),
        ServerStatus::OutsideCoverage => "outside coverage".to_owned(),
        ServerStatus::Rejected { code, .. } => format!("rejected ({code})"),
        ServerStatus::Withdrawn => "withdrawn".to_owned(),
    });
    vec![
        ("captured_at", text("captured_at")),
        ("category", text("category")),
        ("text", text("text")),
        ("feeling_safe", text("feeling_safe")),
        ("channel", text("channel")),
        ("location", location),
        ("withdrawn", text("withdrawn")),
        ("status", server),
    ]
}

/// The insight's versions, oldest first: each change of its document replayed in order, with the fields it changed.
/// A change that touched none of them (nothing a person would see) is left out.
#[must_use]
pub fn history(doc: &mut AutoCommit) -> Vec<Version> {
    let changes: Vec<automerge::Change> = doc.get_changes(&[]);
    let mut replay = AutoCommit::new();
    let mut before = history_fields(&replay);
    let mut versions = Vec::new();
    for change in changes.into_iter().take(MAX_HISTORY) {
        let time = change.timestamp();
        if replay.apply_changes([change]).is_err() {
            break;
        }
        let after = history_fields(&replay);
        let changed: Vec<(&'static str, Option<String>)> =
            after.iter().zip(&before).filter(|(now, then)| now != then).map(|(now, _)| now.clone()).collect();
        if !changed.is_empty() {
            let by = if changed.iter().all(|(field, _)| *field == "status") { Author::Server } else { Author::Phone };
            // Stamped in seconds; a writer that stamps milliseconds (some JavaScript clients) is read as such.
            let seconds = if time > 100_000_000_000 { time / 1000 } else { time };
            let at = (time > 0).then(|| OffsetDateTime::from_unix_timestamp(seconds).ok()).flatten();
            versions.push(Version { at, by, changed });
        }
        before = after;
    }
    versions
}
