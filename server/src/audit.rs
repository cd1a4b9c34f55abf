//! The audit trail: who did what to which thing, when, and whether it was allowed (docs/audit.md).
//!
//! Entries form one hash chain: each entry's `hash` is SHA-256 over a canonical encoding of its fields and the
//! previous entry's hash, so an entry changed or removed behind the server's back breaks the chain at that entry, and
//! `verify` names it. The database refuses `UPDATE` and `DELETE` on the table besides (a trigger on both backends);
//! the chain is what catches someone who drops the trigger first.
//!
//! This module is the domain: the entry, its canonical encoding and hash, and the verification walk. It knows no SQL;
//! the store (`store::audit`) appends and reads entries, and the command line renders them.

use std::fmt;

use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use serde_json::Value;
use sha2::{Digest, Sha256};
use time::format_description::BorrowedFormatItem;
use time::macros::format_description;
use time::{OffsetDateTime, UtcOffset};

use crate::store::AuditStore;

/// The previous hash of the first entry: 32 zero bytes.
pub const GENESIS_HASH: [u8; 32] = [0; 32];

/// The first field of every hashed encoding, so a later encoding can be told apart from this one.
const ENCODING_VERSION: &str = "grapevine-audit-v1";

/// How `at` is written wherever it is hashed or stored as text: RFC 3339 in UTC with exactly six fractional digits
/// (PostgreSQL keeps microseconds, so every entry's time is cut to them before it is hashed).
const CANONICAL_TIME: &[BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z");

/// What became of an audited action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditOutcome {
    /// The permission check allowed it and it happened.
    Allowed,
    /// The permission check (or the credential check) refused it.
    Refused,
    /// It was allowed but failed (bad input, a conflict, the database).
    Failed,
}

impl AuditOutcome {
    /// The stored and hashed spelling.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            AuditOutcome::Allowed => "allowed",
            AuditOutcome::Refused => "refused",
            AuditOutcome::Failed => "failed",
        }
    }

    #[must_use]
    pub fn parse(text: &str) -> Option<AuditOutcome> {
        match text {
            "allowed" => Some(AuditOutcome::Allowed),
            "refused" => Some(AuditOutcome::Refused),
            "failed" => Some(AuditOutcome::Failed),
            _ => None,
        }
    }
}

impl fmt::Display for AuditOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An entry to append: what the caller knows. The store adds its place in the chain and the time.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAuditEntry {
    /// Who acted: a person's email, a device id, `operator` for the command line.
    pub actor: String,
    /// The role the actor acted in.
    pub role: String,
    /// What was attempted, e.g. `token.add`, `insights.read`.
    pub action: String,
    /// What it was done to: an id, an area code; empty when the action has no single target.
    pub target: String,
    pub outcome: AuditOutcome,
    /// The network address the request came from (none for the command line).
    pub client_addr: Option<String>,
    /// The request id (`X-Request-Id`), so a log line and an entry can be joined.
    pub request_id: Option<String>,
    /// A filter and a row count, never content. Numbers in it must be integers (see `canonical_json`).
    pub detail: Value,
}

/// An entry as stored: the caller's fields, its place in the chain, its time and its hash.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    /// 1 for the first entry, then one more than the entry before it: no gaps.
    pub seq: i64,
    /// When it was appended, to the microsecond, never earlier than the entry before it.
    pub at: OffsetDateTime,
    pub actor: String,
    pub role: String,
    pub action: String,
    pub target: String,
    pub outcome: AuditOutcome,
    pub client_addr: Option<String>,
    pub request_id: Option<String>,
    pub detail: Value,
    /// The hash of the entry before it; `GENESIS_HASH` for the first.
    pub prev_hash: [u8; 32],
    /// SHA-256 of this entry's canonical encoding (`AuditEntry::compute_hash`).
    pub hash: [u8; 32],
}

/// Where reading the trail starts, and which way it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditCursor {
    /// Oldest first, from the entry after this seq (0: from the first entry).
    After(i64),
    /// Newest first, from the entry before this seq (`i64::MAX`: from the newest). The audit page reads this way.
    Before(i64),
}

impl Default for AuditCursor {
    fn default() -> Self {
        AuditCursor::After(0)
    }
}

/// Which entries `audit list` (and the store's `audit_entries`) returns; every field left `None` lets all through.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// Only this actor's entries.
    pub actor: Option<String>,
    /// Only entries of this action.
    pub action: Option<String>,
    /// Only entries at or after this time.
    pub since: Option<OffsetDateTime>,
    /// Only entries before this time.
    pub until: Option<OffsetDateTime>,
    /// Where to start and which way to read: oldest first from the beginning, unless said.
    pub cursor: AuditCursor,
}

/// The entry at the head of the chain, as the store reads it under its append lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainHead {
    pub seq: i64,
    pub at: OffsetDateTime,
    pub hash: [u8; 32],
}

/// Why an entry's detail cannot be hashed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DetailError {
    /// A fractional number reads back from JSON text as a float that need not print the same again, which would
    /// break an intact chain; a filter's coordinates or a ratio go as strings.
    #[error("the audit detail holds a fractional number ({0}); write it as a string")]
    FractionalNumber(String),
}

/// `at` as it is hashed (and stored as text on SQLite): RFC 3339, UTC, six fractional digits.
#[must_use]
pub fn canonical_time(at: OffsetDateTime) -> String {
    at.to_offset(UtcOffset::UTC).format(CANONICAL_TIME).expect("a UTC time between the years 0 and 9999 formats")
}

/// Reads a time written by `canonical_time`.
///
/// # Errors
/// The text is not in that exact form.
pub fn parse_canonical_time(text: &str) -> Result<OffsetDateTime, time::error::Parse> {
    time::PrimitiveDateTime::parse(text, CANONICAL_TIME).map(time::PrimitiveDateTime::assume_utc)
}

/// `at` in UTC, cut to whole microseconds: what PostgreSQL keeps and what is hashed.
#[must_use]
pub fn to_microseconds(at: OffsetDateTime) -> OffsetDateTime {
    let at = at.to_offset(UtcOffset::UTC);
    at.replace_nanosecond(at.nanosecond() / 1_000 * 1_000).expect("a truncated nanosecond is in range")
}

/// The detail as canonical JSON: no whitespace, object keys sorted by their UTF-8 bytes, strings escaped as
/// `serde_json` escapes them, integers in decimal.
///
/// # Errors
/// The detail holds a fractional number (`DetailError::FractionalNumber`).
pub fn canonical_json(detail: &Value) -> Result<String, DetailError> {
    let mut out = String::new();
    write_canonical_json(detail, &mut out)?;
    Ok(out)
}

fn write_canonical_json(value: &Value, out: &mut String) -> Result<(), DetailError> {
    match value {
        Value::Null | Value::Bool(_) | Value::String(_) => out.push_str(&value.to_string()),
        Value::Number(number) => {
            if number.is_f64() {
                return Err(DetailError::FractionalNumber(number.to_string()));
            }
            out.push_str(&number.to_string());
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical_json(item, out)?;
            }
            out.push(']');
        }
        Value::Object(object) => {
            let mut keys: Vec<&String> = object.keys().collect();
            keys.sort_unstable();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical_json(&object[key], out)?;
            }
            out.push('}');
        }
    }
    Ok(())
}

/// The bytes an entry's hash is taken over. Each field is its UTF-8 bytes preceded by their length as an unsigned
/// 64-bit big-endian integer; an optional field is one byte first, 0 when absent (nothing follows) or 1 when present.
/// Fields in this order: the version `grapevine-audit-v1`, `seq` in decimal, `at` (`canonical_time`), actor, role,
/// action, target, outcome, client_addr (optional), request_id (optional), detail (`canonical_json`), and
/// `prev_hash` as its 32 raw bytes (length-prefixed like the rest).
struct Encoding(Vec<u8>);

impl Encoding {
    fn field(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
        self.0.extend_from_slice(bytes);
    }

    fn optional(&mut self, text: Option<&str>) {
        match text {
            None => self.0.push(0),
            Some(text) => {
                self.0.push(1);
                self.field(text.as_bytes());
            }
        }
    }
}

impl AuditEntry {
    /// The hash this entry's fields and `prev_hash` give (its stored `hash` should equal it).
    ///
    /// # Errors
    /// The detail cannot be encoded canonically (`DetailError`).
    /// The entry as `audit list --json` and `GET /api/v1/audit` give it: every field, hashes in hex, the time as it
    /// is hashed.
    #[must_use]
    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "seq": self.seq,
            "at": canonical_time(self.at),
            "actor": self.actor,
            "role": self.role,
            "action": self.action,
            "target": self.target,
            "outcome": self.outcome.as_str(),
            "client_addr": self.client_addr,
            "request_id": self.request_id,
            "detail": self.detail,
            "prev_hash": hex(&self.prev_hash),
            "hash": hex(&self.hash),
        })
    }

    pub fn compute_hash(&self) -> Result<[u8; 32], DetailError> {
        let mut encoding = Encoding(Vec::with_capacity(256));
        encoding.field(ENCODING_VERSION.as_bytes());
        encoding.field(self.seq.to_string().as_bytes());
        encoding.field(canonical_time(self.at).as_bytes());
        encoding.field(self.actor.as_bytes());
        encoding.field(self.role.as_bytes());
        encoding.field(self.action.as_bytes());
        encoding.field(self.target.as_bytes());
        encoding.field(self.outcome.as_str().as_bytes());
        encoding.optional(self.client_addr.as_deref());
        encoding.optional(self.request_id.as_deref());
        encoding.field(canonical_json(&self.detail)?.as_bytes());
        encoding.field(&self.prev_hash);
        Ok(Sha256::digest(&encoding.0).into())
    }

    /// The entry that follows `head` (or starts the chain): the next `seq`, `head`'s hash as `prev_hash`, `now` cut to
    /// microseconds but never earlier than `head`'s time (nodes' clocks differ; the chain's times do not go back),
    /// and its hash.
    ///
    /// # Errors
    /// The detail cannot be encoded canonically (`DetailError`).
    pub fn next(new: NewAuditEntry, head: Option<ChainHead>, now: OffsetDateTime) -> Result<AuditEntry, DetailError> {
        let now = to_microseconds(now);
        let (seq, at, prev_hash) = match head {
            None => (1, now, GENESIS_HASH),
            Some(head) => (head.seq + 1, now.max(head.at), head.hash),
        };
        let NewAuditEntry { actor, role, action, target, outcome, client_addr, request_id, detail } = new;
        let mut entry = AuditEntry {
            seq,
            at,
            actor,
            role,
            action,
            target,
            outcome,
            client_addr,
            request_id,
            detail,
            prev_hash,
            hash: [0; 32],
        };
        entry.hash = entry.compute_hash()?;
        Ok(entry)
    }
}

/// What walking the chain found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verified {
    /// Every entry from seq 1 on is in place and unchanged; `head` is the last entry's hash (`GENESIS_HASH` for an
    /// empty trail), worth noting down outside the database: removing entries from the end leaves an intact chain,
    /// and only a recorded head shows it.
    Intact { n: u64, head: [u8; 32] },
    /// The first entry that does not hold: every entry before it is intact.
    Broken { seq: i64, reason: BrokenLink },
}

/// Why an entry breaks the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrokenLink {
    /// The entry with this seq is not there; the next one present has `found`.
    Missing { found: i64 },
    /// An entry with this seq came again, or out of order, where `expected` was due.
    OutOfOrder { expected: i64 },
    /// Its `prev_hash` is not the hash of the entry before it.
    PrevHashMismatch,
    /// Its fields do not give its hash: one of them was changed.
    HashMismatch,
    /// Its detail cannot be encoded canonically, so it cannot be an entry the server wrote.
    Undecodable(DetailError),
}

impl fmt::Display for BrokenLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BrokenLink::Missing { found } => write!(f, "the entry is missing (the next entry present is {found})"),
            BrokenLink::OutOfOrder { expected } => write!(f, "it came where entry {expected} was due"),
            BrokenLink::PrevHashMismatch => f.write_str("its prev_hash is not the hash of the entry before it"),
            BrokenLink::HashMismatch => f.write_str("its fields do not give its hash: the entry was changed"),
            BrokenLink::Undecodable(error) => write!(f, "{error}"),
        }
    }
}

/// Walks the chain an entry at a time, so a trail of any length is verified in constant memory.
#[derive(Debug, Clone)]
pub struct ChainVerifier {
    expected_seq: i64,
    prev_hash: [u8; 32],
    n: u64,
}

impl Default for ChainVerifier {
    fn default() -> Self {
        ChainVerifier { expected_seq: 1, prev_hash: GENESIS_HASH, n: 0 }
    }
}

impl ChainVerifier {
    /// Checks the next entry (in seq order) against the chain so far.
    ///
    /// # Errors
    /// The first broken link: the seq it is at and why. Stop there; later entries are not judged.
    pub fn check(&mut self, entry: &AuditEntry) -> Result<(), (i64, BrokenLink)> {
        let expected = self.expected_seq;
        if entry.seq > expected {
            return Err((expected, BrokenLink::Missing { found: entry.seq }));
        }
        if entry.seq < expected {
            return Err((entry.seq, BrokenLink::OutOfOrder { expected }));
        }
        if entry.prev_hash != self.prev_hash {
            return Err((entry.seq, BrokenLink::PrevHashMismatch));
        }
        match entry.compute_hash() {
            Err(error) => return Err((entry.seq, BrokenLink::Undecodable(error))),
            Ok(hash) if hash != entry.hash => return Err((entry.seq, BrokenLink::HashMismatch)),
            Ok(_) => {}
        }
        // The stored hash, not a recomputed one, links to the next entry: a changed entry is named, not its successor.
        self.prev_hash = entry.hash;
        self.expected_seq += 1;
        self.n += 1;
        Ok(())
    }

    /// The verdict on an intact chain of the entries checked.
    #[must_use]
    pub fn finish(self) -> Verified {
        Verified::Intact { n: self.n, head: self.prev_hash }
    }
}

/// Verifies a whole trail given in seq order, naming its first broken link.
pub fn verify<'a>(entries: impl IntoIterator<Item = &'a AuditEntry>) -> Verified {
    let mut verifier = ChainVerifier::default();
    for entry in entries {
        if let Err((seq, reason)) = verifier.check(entry) {
            return Verified::Broken { seq, reason };
        }
    }
    verifier.finish()
}

/// `grapevine audit list`: the entries a filter lets through, in seq order, as a stream.
///
/// # Errors
/// `since` is not before `until` (nothing could match: more likely a mistake than a question).
pub fn list<S: AuditStore + ?Sized>(
    store: &S,
    filter: AuditFilter,
) -> anyhow::Result<BoxStream<'_, anyhow::Result<AuditEntry>>> {
    if let (Some(since), Some(until)) = (filter.since, filter.until) {
        anyhow::ensure!(
            since < until,
            "--since ({}) must be before --until ({})",
            canonical_time(since),
            canonical_time(until)
        );
    }
    Ok(store.audit_entries(filter))
}

/// `grapevine audit verify`: walks the whole stored trail in seq order, an entry at a time.
///
/// # Errors
/// The store cannot be read, or an entry's row cannot be read as an entry at all (the error names its seq).
pub async fn verify_store<S: AuditStore + ?Sized>(store: &S) -> anyhow::Result<Verified> {
    let mut entries = store.audit_entries(AuditFilter::default());
    let mut verifier = ChainVerifier::default();
    while let Some(entry) = entries.next().await {
        if let Err((seq, reason)) = verifier.check(&entry?) {
            return Ok(Verified::Broken { seq, reason });
        }
    }
    Ok(verifier.finish())
}

/// A hash as lowercase hex, for people and JSON.
#[must_use]
pub fn hex(hash: &[u8; 32]) -> String {
    use fmt::Write;
    hash.iter().fold(String::with_capacity(64), |mut out, byte| {
        let _ = write!(out, "{byte:02x}");
        out
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use time::macros::datetime;

    use super::*;

    fn new_entry(actor: &str, action: &str) -> NewAuditEntry {
        NewAuditEntry {
            actor: actor.into(),
            role: "admin".into(),
            action: action.into(),
            target: "7d0c1f0e-0000-4000-8000-000000000001".into(),
            outcome: AuditOutcome::Allowed,
            client_addr: Some("192.0.2.7".into()),
            request_id: Some("req-1".into()),
            detail: json!({"filter": {"area": "E05008737"}, "rows": 12}),
        }
    }

    /// A chain of `n` entries, a second apart.
    fn chain(n: i64) -> Vec<AuditEntry> {
        let start = datetime!(2026-12-06 10:00:00.123456789 UTC);
        let mut entries: Vec<AuditEntry> = Vec::new();
        for i in 0..n {
            let head = entries.last().map(|last| ChainHead { seq: last.seq, at: last.at, hash: last.hash });
            let new = new_entry(&format!("person{i}@example.org"), "insights.read");
            entries.push(AuditEntry::next(new, head, start + time::Duration::seconds(i)).unwrap());
        }
        entries
    }

    #[test]
    fn a_new_chain_starts_at_one_on_the_genesis_hash_and_links_each_entry_to_the_last() {
        let entries = chain(3);
        assert_eq!(entries.iter().map(|entry| entry.seq).collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(entries[0].prev_hash, GENESIS_HASH);
        assert_eq!(entries[1].prev_hash, entries[0].hash);
        assert_eq!(entries[2].prev_hash, entries[1].hash);
        assert_eq!(entries[0].at, datetime!(2026-12-06 10:00:00.123456 UTC), "cut to microseconds");
        assert_eq!(verify(&entries), Verified::Intact { n: 3, head: entries[2].hash });
        assert_eq!(verify(&[]), Verified::Intact { n: 0, head: GENESIS_HASH });
    }

    #[test]
    fn the_hash_is_the_published_encoding() {
        // Pinned, so a change to the encoding cannot pass unnoticed: docs/audit.md describes this one, byte for byte.
        let entry = AuditEntry {
            seq: 1,
            at: datetime!(2026-12-06 10:00:00 UTC),
            actor: "a".into(),
            role: "b".into(),
            action: "c".into(),
            target: String::new(),
            outcome: AuditOutcome::Refused,
            client_addr: None,
            request_id: Some("r".into()),
            detail: json!({"z": 1, "a": [true, null]}),
            prev_hash: GENESIS_HASH,
            hash: [0; 32],
        };
        let mut expected = Vec::new();
        let mut field = |bytes: &[u8]| {
            expected.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
            expected.extend_from_slice(bytes);
        };
        field(b"grapevine-audit-v1");
        field(b"1");
        field(b"2026-12-06T10:00:00.000000Z");
        field(b"a");
        field(b"b");
        field(b"c");
        field(b"");
        field(b"refused");
        expected.push(0);
        expected.push(1);
        let mut tail = Vec::new();
        for bytes in [&b"r"[..], br#"{"a":[true,null],"z":1}"#, &GENESIS_HASH[..]] {
            tail.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
            tail.extend_from_slice(bytes);
        }
        expected.extend_from_slice(&tail);
        let want: [u8; 32] = Sha256::digest(&expected).into();
        assert_eq!(entry.compute_hash().unwrap(), want);
    }

    #[test]
    fn every_field_is_in_the_hash_and_no_two_encodings_run_together() {
        let base = chain(1).remove(0);
        let original = base.compute_hash().unwrap();
        /// One field changed, as a tamperer would.
        type Change = fn(&mut AuditEntry);
        let changes: Vec<(&str, Change)> = vec![
            ("seq", |entry| entry.seq = 2),
            ("at", |entry| entry.at += time::Duration::microseconds(1)),
            ("actor", |entry| entry.actor.push('x')),
            ("role", |entry| entry.role = "analyst".into()),
            ("action", |entry| entry.action = "insights.export".into()),
            ("target", |entry| entry.target = String::new()),
            ("outcome", |entry| entry.outcome = AuditOutcome::Failed),
            ("client_addr", |entry| entry.client_addr = None),
            ("client_addr empty", |entry| entry.client_addr = Some(String::new())),
            ("request_id", |entry| entry.request_id = None),
            ("detail", |entry| entry.detail["rows"] = json!(13)),
            ("prev_hash", |entry| entry.prev_hash[31] ^= 1),
            // Bytes moved from one field into the next keep the concatenation the same; the lengths do not.
            ("a byte moved from role to action", |entry| {
                entry.role = "admi".into();
                entry.action = format!("n{}", entry.action);
            }),
        ];
        for (name, change) in changes {
            let mut changed = base.clone();
            change(&mut changed);
            assert_ne!(changed.compute_hash().unwrap(), original, "{name} is not in the hash");
        }
        // The stored hash does not take part in its own computation.
        let mut rehashed = base.clone();
        rehashed.hash = [7; 32];
        assert_eq!(rehashed.compute_hash().unwrap(), original);
    }

    #[test]
    fn the_detail_is_hashed_in_canonical_form_and_a_fraction_is_refused() {
        let ordered = json!({"rows": 3, "filter": {"b": "x", "a": [1, -2, "é\n"]}});
        assert_eq!(canonical_json(&ordered).unwrap(), r#"{"filter":{"a":[1,-2,"é\n"],"b":"x"},"rows":3}"#);
        // The same detail parsed from any spelling hashes alike.
        let respelled: Value =
            serde_json::from_str(r#"{ "filter" : { "b":"x","a":[1,-2,"\u00e9\n"] }, "rows":3 }"#).unwrap();
        assert_eq!(canonical_json(&respelled).unwrap(), canonical_json(&ordered).unwrap());
        assert_eq!(canonical_json(&json!({"ratio": 0.5})), Err(DetailError::FractionalNumber("0.5".into())));
        let mut new = new_entry("a@example.org", "insights.read");
        new.detail = json!([1.5]);
        assert!(AuditEntry::next(new, None, OffsetDateTime::now_utc()).is_err());
    }

    #[test]
    fn canonical_time_has_a_fixed_width_in_utc_and_reads_back() {
        let at = datetime!(2026-03-01 01:02:03.5 +02:00);
        assert_eq!(canonical_time(at), "2026-02-28T23:02:03.500000Z");
        assert_eq!(parse_canonical_time("2026-02-28T23:02:03.500000Z").unwrap(), at);
        assert!(parse_canonical_time("2026-02-28T23:02:03Z").is_err());
    }

    #[test]
    fn the_chain_time_never_goes_back_when_a_node_clock_is_behind() {
        let first = AuditEntry::next(new_entry("a", "x"), None, datetime!(2026-12-06 10:00:05 UTC)).unwrap();
        let head = ChainHead { seq: first.seq, at: first.at, hash: first.hash };
        let second = AuditEntry::next(new_entry("b", "y"), Some(head), datetime!(2026-12-06 10:00:01 UTC)).unwrap();
        assert_eq!(second.at, first.at);
        let head = second.hash;
        assert_eq!(verify(&[first, second]), Verified::Intact { n: 2, head });
    }

    #[test]
    fn a_changed_field_breaks_the_chain_at_that_entry() {
        let mut entries = chain(5);
        entries[2].target = "someone else".into();
        assert_eq!(verify(&entries), Verified::Broken { seq: 3, reason: BrokenLink::HashMismatch });
    }

    #[test]
    fn a_changed_entry_whose_hash_was_recomputed_breaks_the_chain_at_the_next() {
        let mut entries = chain(5);
        entries[2].outcome = AuditOutcome::Allowed;
        entries[2].actor = "innocent@example.org".into();
        entries[2].hash = entries[2].compute_hash().unwrap();
        assert_eq!(verify(&entries), Verified::Broken { seq: 4, reason: BrokenLink::PrevHashMismatch });
    }

    #[test]
    fn a_missing_entry_is_named_by_its_seq() {
        let mut entries = chain(5);
        entries.remove(1);
        assert_eq!(verify(&entries), Verified::Broken { seq: 2, reason: BrokenLink::Missing { found: 3 } });
        let mut first_gone = chain(3);
        first_gone.remove(0);
        assert_eq!(verify(&first_gone), Verified::Broken { seq: 1, reason: BrokenLink::Missing { found: 2 } });
    }

    #[test]
    fn a_repeated_entry_or_a_reordering_is_named() {
        let entries = chain(3);
        let repeated = [entries[0].clone(), entries[1].clone(), entries[1].clone()];
        assert_eq!(verify(&repeated), Verified::Broken { seq: 2, reason: BrokenLink::OutOfOrder { expected: 3 } });
        let swapped = [entries[0].clone(), entries[2].clone(), entries[1].clone()];
        assert_eq!(verify(&swapped), Verified::Broken { seq: 2, reason: BrokenLink::Missing { found: 3 } });
    }

    #[test]
    fn a_first_entry_that_does_not_start_on_the_genesis_hash_is_broken() {
        let mut entries = chain(2);
        entries[0].prev_hash = [1; 32];
        entries[0].hash = entries[0].compute_hash().unwrap();
        assert_eq!(verify(&entries), Verified::Broken { seq: 1, reason: BrokenLink::PrevHashMismatch });
    }

    #[test]
    fn only_the_first_break_is_named() {
        let mut entries = chain(6);
        entries[4].role = "admin2".into();
        entries[1].role = "admin2".into();
        assert_eq!(verify(&entries), Verified::Broken { seq: 2, reason: BrokenLink::HashMismatch });
    }

    #[test]
    fn outcomes_round_trip_through_their_stored_spelling() {
        for outcome in [AuditOutcome::Allowed, AuditOutcome::Refused, AuditOutcome::Failed] {
            assert_eq!(AuditOutcome::parse(outcome.as_str()), Some(outcome));
        }
        assert_eq!(AuditOutcome::parse("ALLOWED"), None);
    }

    #[test]
    fn hex_spells_a_hash_in_lowercase() {
        let mut hash = [0; 32];
        hash[0] = 0xab;
        hash[31] = 0x01;
        assert_eq!(hex(&hash), format!("ab{}01", "0".repeat(60)));
    }
}
