//! Bounds on what a document may become, checked on its encoded bytes before Automerge unpacks them.
//!
//! The frame limit bounds what a peer sends, not what Automerge makes of it: a change can be deflated (chunk type 2),
//! a saved document's columns can be deflated one by one, and every column but the raw values is run-length encoded,
//! so a few bytes can stand for a billion rows. A highly compressible 100 MiB string fits in a 100 KB frame. This
//! module walks Automerge's binary chunks (magic bytes, checksum, chunk type, LEB128 length; `docs/sync-protocol.md`,
//! "Limits") without building anything: it inflates every deflated part through a bounded inflater and counts every
//! column's rows without expanding them, and refuses as soon as a [`Budget`] is spent. Only what passes goes to
//! Automerge.
//!
//! The budget spans what a document would become: the stored document's bytes, then each message's changes, so a
//! document cannot be grown past the limit a message at a time either.

use std::io::Read;

use automerge::sync;
use flate2::read::DeflateDecoder;

use crate::codes::ErrorCode;

/// The most an insight document may take once inflated: 1 MiB.
///
/// An insight's largest field is its text, at most [`crate::insight::MAX_TEXT_CHARS`] (1,000) characters, so at
/// most 4 KB of UTF-8; every other field is a slug, a time, a UUID or a few numbers, well under 1 KB together, and
/// the server's record is as small. A full rewrite of the text costs at most about 5 KB, so 1 MiB holds some 200
/// rewrites of a full-length text: far more than a person edits one report, and far less than the hundreds of MiB
/// one deflated string can claim. Automerge's own save of an insight is about 1 KB.
pub const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;

/// The most rows any one column of a document may decode to: 100,000 operations (or changes).
///
/// A text written as an Automerge text object costs an operation per character typed, so 1,000-character text
/// rewritten in full 50 times is 100,000 operations; an insight written as Grapevine's SDK writes it has a few dozen.
/// Run-length encoding lets a handful of bytes claim billions of rows, each of which Automerge would allocate.
pub const MAX_COLUMN_ROWS: u64 = 100_000;

/// The most hash functions a peer's Bloom filter may ask to be probed per change (Automerge uses 7): each probe is
/// work the server does for every change it holds.
pub const MAX_BLOOM_PROBES: u32 = 32;

/// The most bits per entry a peer's Bloom filter may have (Automerge uses 10).
pub const MAX_BLOOM_BITS_PER_ENTRY: u32 = 64;

/// The four bytes every Automerge chunk starts with.
const MAGIC_BYTES: [u8; 4] = [0x85, 0x6f, 0x4a, 0x83];

/// What one document may become.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DocumentLimits {
    /// The most bytes its chunks may take once every deflated part is inflated.
    pub max_inflated_bytes: usize,
    /// The most rows any one column may decode to.
    pub max_column_rows: u64,
}

impl Default for DocumentLimits {
    fn default() -> Self {
        DocumentLimits { max_inflated_bytes: MAX_DOCUMENT_BYTES, max_column_rows: MAX_COLUMN_ROWS }
    }
}

/// Why encoded document data was refused before Automerge saw it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuardError {
    /// The document would inflate past its limit.
    #[error("the document would take more than {limit} bytes once inflated")]
    TooLarge { limit: usize },
    /// A column would decode to more rows than the limit.
    #[error("a column of the document would decode to more than {limit} rows")]
    TooManyRows { limit: u64 },
    /// A Bloom filter asks for more work per change than any real peer's.
    #[error("a Bloom filter with {probes} probes and {bits_per_entry} bits per entry is beyond what a peer sends")]
    BloomTooCostly { probes: u32, bits_per_entry: u32 },
    /// The bytes are not Automerge chunks this guard can account for, so they are not passed on.
    #[error("not an Automerge chunk: {0}")]
    Malformed(&'static str),
}

impl GuardError {
    /// The stable code a peer hears: a document too large is `document_too_large`; bytes that are not what a peer
    /// may send are a `protocol_violation`.
    #[must_use]
    pub fn code(&self) -> ErrorCode {
        match self {
            GuardError::TooLarge { .. } | GuardError::TooManyRows { .. } => ErrorCode::DocumentTooLarge,
            GuardError::BloomTooCostly { .. } | GuardError::Malformed(_) => ErrorCode::ProtocolViolation,
        }
    }
}

/// What one document has taken so far of its limits.
#[derive(Debug, Clone)]
pub struct Budget {
    limits: DocumentLimits,
    used_bytes: usize,
}

impl Budget {
    #[must_use]
    pub fn new(limits: DocumentLimits) -> Self {
        Budget { limits, used_bytes: 0 }
    }

    /// The bytes taken so far, inflated.
    #[must_use]
    pub fn used_bytes(&self) -> usize {
        self.used_bytes
    }

    /// Spends the budget on concatenated chunks: a saved document, or what `AutoCommit::load_incremental` takes.
    ///
    /// # Errors
    /// The chunks would take more than what is left, or are not chunks this guard can account for.
    pub fn spend_chunks(&mut self, mut bytes: &[u8]) -> Result<(), GuardError> {
        while !bytes.is_empty() {
            bytes = self.spend_one_chunk(bytes)?;
        }
        Ok(())
    }

    /// Spends the budget on the changes a sync message carries, and checks the cost of its Bloom filters.
    ///
    /// # Errors
    /// As [`Budget::spend_chunks`]; or a Bloom filter that would make every lookup costly.
    pub fn spend_message(&mut self, message: &sync::Message) -> Result<(), GuardError> {
        for have in &message.have {
            check_bloom(&have.bloom.to_bytes())?;
        }
        // Automerge concatenates the message's chunks before it parses them, so a chunk may span two of them.
        let joined: Vec<u8> = message.changes.iter().flatten().copied().collect();
        self.spend_chunks(&joined)
    }

    fn take_bytes(&mut self, n: usize) -> Result<(), GuardError> {
        let limit = self.limits.max_inflated_bytes;
        match self.used_bytes.checked_add(n) {
            Some(total) if total <= limit => {
                self.used_bytes = total;
                Ok(())
            }
            _ => Err(GuardError::TooLarge { limit }),
        }
    }

    fn left(&self) -> usize {
        self.limits.max_inflated_bytes - self.used_bytes
    }

    /// Inflates a raw DEFLATE stream, giving up once it would exceed what is left of the budget; spends what it took.
    fn inflate(&mut self, compressed: &[u8]) -> Result<Vec<u8>, GuardError> {
        let left = self.left();
        let mut inflated = Vec::new();
        // One byte past what is left tells "exactly fills the budget" from "more than the budget".
        let read_at_most = u64::try_from(left).unwrap_or(u64::MAX).saturating_add(1);
        DeflateDecoder::new(compressed)
            .take(read_at_most)
            .read_to_end(&mut inflated)
            .map_err(|_| GuardError::Malformed("a deflated part does not inflate"))?;
        if inflated.len() > left {
            return Err(GuardError::TooLarge { limit: self.limits.max_inflated_bytes });
        }
        self.take_bytes(inflated.len())?;
        Ok(inflated)
    }

    /// Accounts for the chunk at the start of `bytes`; returns what follows it.
    fn spend_one_chunk<'a>(&mut self, bytes: &'a [u8]) -> Result<&'a [u8], GuardError> {
        let mut reader = Reader(bytes);
        if reader.take(4)? != MAGIC_BYTES {
            return Err(GuardError::Malformed("no magic bytes"));
        }
        reader.take(4)?; // The checksum; Automerge verifies it.
        let chunk_type = reader.take(1)?[0];
        let length = reader.length()?;
        let header_bytes = bytes.len() - reader.0.len();
        let data = reader.take(length)?;
        let rest = reader.0;
        match chunk_type {
            0 => {
                self.take_bytes(header_bytes + data.len())?;
                self.spend_document(data)?;
            }
            1 => {
                self.take_bytes(header_bytes + data.len())?;
                self.spend_change(data)?;
            }
            2 => {
                self.take_bytes(header_bytes)?;
                let inflated = self.inflate(data)?;
                self.spend_change(&inflated)?;
            }
            // Bundles (type 3) are not part of the sync protocol; nothing else is a chunk.
            _ => return Err(GuardError::Malformed("a chunk type a peer may not send")),
        }
        Ok(rest)
    }

    /// A change chunk's body: its header fields, then its operation columns (never deflated in a change).
    fn spend_change(&mut self, data: &[u8]) -> Result<(), GuardError> {
        let mut reader = Reader(data);
        let n_deps = reader.length()?;
        for _ in 0..n_deps {
            reader.take(32)?;
        }
        reader.length_prefixed()?; // actor
        reader.uleb()?; // seq
        reader.uleb()?; // start op
        reader.sleb()?; // time
        reader.length_prefixed()?; // message
        let n_other_actors = reader.length()?;
        for _ in 0..n_other_actors {
            reader.length_prefixed()?;
        }
        let columns = reader.columns()?;
        for (spec, length) in columns {
            let column = reader.take(length)?;
            if spec & DEFLATE_FLAG != 0 {
                return Err(GuardError::Malformed("a deflated column in a change"));
            }
            self.check_rows(spec, column)?;
        }
        // Extra bytes after the columns are kept by Automerge as they are; they were counted with the chunk.
        Ok(())
    }

    /// A document chunk's body: actors, heads, the change and operation column metadata, the columns (each may be
    /// deflated on its own), then the head indices.
    fn spend_document(&mut self, data: &[u8]) -> Result<(), GuardError> {
        let mut reader = Reader(data);
        let n_actors = reader.length()?;
        for _ in 0..n_actors {
            reader.length_prefixed()?;
        }
        let n_heads = reader.length()?;
        for _ in 0..n_heads {
            reader.take(32)?;
        }
        let change_columns = reader.columns()?;
        let op_columns = reader.columns()?;
        for (spec, length) in change_columns.into_iter().chain(op_columns) {
            let column = reader.take(length)?;
            if spec & DEFLATE_FLAG == 0 {
                self.check_rows(spec, column)?;
            } else {
                // The deflated bytes were counted with the chunk; what they inflate to is counted on top.
                let inflated = self.inflate(column)?;
                self.check_rows(spec, &inflated)?;
            }
        }
        Ok(())
    }

    /// Counts the rows a column decodes to, without decoding them, and refuses past the limit.
    fn check_rows(&self, spec: u32, column: &[u8]) -> Result<(), GuardError> {
        let limit = self.limits.max_column_rows;
        let too_many = GuardError::TooManyRows { limit };
        let mut reader = Reader(column);
        let mut rows: u64 = 0;
        match spec & COLUMN_TYPE_MASK {
            BOOLEAN => {
                // Run lengths alone, alternating false and true.
                while !reader.0.is_empty() {
                    rows = rows.checked_add(reader.uleb()?).filter(|rows| *rows <= limit).ok_or(too_many.clone())?;
                }
            }
            VALUE => {} // Raw bytes: what they cost is their length, counted with the chunk.
            column_type => {
                // Run-length encoded: a signed count, then one value repeated (count > 0), -count literal values
                // (count < 0), or a number of nulls (count = 0).
                while !reader.0.is_empty() {
                    let count = reader.sleb()?;
                    let run = match count {
                        0 => reader.uleb()?,
                        count if count > 0 => {
                            reader.rle_value(column_type)?;
                            count.unsigned_abs()
                        }
                        count => {
                            let n_literals = count.unsigned_abs();
                            if n_literals > limit {
                                return Err(too_many);
                            }
                            for _ in 0..n_literals {
                                reader.rle_value(column_type)?;
                            }
                            n_literals
                        }
                    };
                    rows = rows.checked_add(run).filter(|rows| *rows <= limit).ok_or(too_many.clone())?;
                }
            }
        }
        Ok(())
    }
}

/// Checks a peer's Bloom filter (as `BloomFilter::to_bytes` spells it) asks for no more work than a real peer's.
fn check_bloom(bytes: &[u8]) -> Result<(), GuardError> {
    if bytes.is_empty() {
        return Ok(());
    }
    let mut reader = Reader(bytes);
    let _n_entries = reader.uleb()?;
    let bits_per_entry = u32::try_from(reader.uleb()?).unwrap_or(u32::MAX);
    let probes = u32::try_from(reader.uleb()?).unwrap_or(u32::MAX);
    if probes > MAX_BLOOM_PROBES || bits_per_entry > MAX_BLOOM_BITS_PER_ENTRY {
        return Err(GuardError::BloomTooCostly { probes, bits_per_entry });
    }
    Ok(())
}

/// A column specification's deflate bit, and the three bits of its type (Automerge's column specification).
const DEFLATE_FLAG: u32 = 0b1000;
const COLUMN_TYPE_MASK: u32 = 0b0111;
const DELTA_INTEGER: u32 = 3;
const BOOLEAN: u32 = 4;
const STRING: u32 = 5;
const VALUE: u32 = 7;

/// A cursor over bytes that refuses to read past their end.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], GuardError> {
        if n > self.0.len() {
            return Err(GuardError::Malformed("truncated"));
        }
        let (taken, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(taken)
    }

    fn uleb(&mut self) -> Result<u64, GuardError> {
        let mut value: u64 = 0;
        for shift in (0..64).step_by(7) {
            let byte = self.take(1)?[0];
            let bits = u64::from(byte & 0x7f);
            if shift == 63 && bits > 1 {
                return Err(GuardError::Malformed("a LEB128 number overflows 64 bits"));
            }
            value |= bits << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(GuardError::Malformed("a LEB128 number overflows 64 bits"))
    }

    fn sleb(&mut self) -> Result<i64, GuardError> {
        let mut value: i64 = 0;
        for shift in (0..64).step_by(7) {
            let byte = self.take(1)?[0];
            value |= i64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                if shift + 7 < 64 && byte & 0x40 != 0 {
                    value |= -1_i64 << (shift + 7);
                }
                return Ok(value);
            }
        }
        Err(GuardError::Malformed("a LEB128 number overflows 64 bits"))
    }

    /// A LEB128 length that must fit in what is left, since what it counts follows it.
    fn length(&mut self) -> Result<usize, GuardError> {
        let length = self.uleb()?;
        usize::try_from(length)
            .ok()
            .filter(|length| *length <= self.0.len())
            .ok_or(GuardError::Malformed("a length beyond the end of the data"))
    }

    fn length_prefixed(&mut self) -> Result<&'a [u8], GuardError> {
        let length = self.length()?;
        self.take(length)
    }

    /// Column metadata: a count, then a specification and a length per column.
    fn columns(&mut self) -> Result<Vec<(u32, usize)>, GuardError> {
        let n_columns = self.length()?;
        let mut columns = Vec::with_capacity(n_columns);
        for _ in 0..n_columns {
            let spec = u32::try_from(self.uleb()?).map_err(|_| GuardError::Malformed("a column specification"))?;
            let length = usize::try_from(self.uleb()?).map_err(|_| GuardError::Malformed("a column length"))?;
            columns.push((spec, length));
        }
        Ok(columns)
    }

    /// Skips one value of a run-length encoded column of this type.
    fn rle_value(&mut self, column_type: u32) -> Result<(), GuardError> {
        match column_type {
            STRING => {
                self.length_prefixed()?;
            }
            DELTA_INTEGER => {
                self.sleb()?;
            }
            _ => {
                self.uleb()?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use automerge::transaction::Transactable;
    use automerge::{AutoCommit, ObjType, ROOT};
    use flate2::{Compress, Compression, FlushCompress};

    use super::*;
    use crate::document::write_insight;
    use crate::insight::tests::sample;

    fn spend(bytes: &[u8]) -> Result<usize, GuardError> {
        let mut budget = Budget::new(DocumentLimits::default());
        budget.spend_chunks(bytes)?;
        Ok(budget.used_bytes())
    }

    /// A document holding one highly compressible string of `n` bytes, as Automerge saves it (columns deflated).
    fn bomb(n: usize) -> Vec<u8> {
        let mut doc = AutoCommit::new();
        doc.put(ROOT, "text", "a".repeat(n)).unwrap();
        doc.save()
    }

    #[test]
    fn a_real_insight_passes_with_room_to_spare() {
        let mut doc = AutoCommit::new();
        write_insight(&mut doc, &sample()).unwrap();
        let saved = doc.save();
        let used = spend(&saved).unwrap();
        assert!(used < MAX_DOCUMENT_BYTES / 100, "{used} bytes for one insight");
        // Its changes one by one, as a sync message carries them, pass too.
        for change in doc.get_changes(&[]) {
            spend(change.raw_bytes()).unwrap();
        }
        assert!(spend(&doc.save_nocompress()).unwrap() > 0, "an uncompressed save is read too");
    }

    #[test]
    fn a_saved_document_that_inflates_past_the_limit_is_refused() {
        let saved = bomb(8 * 1024 * 1024);
        assert!(saved.len() < 100_000, "the bomb is {} bytes on the wire", saved.len());
        assert_eq!(spend(&saved), Err(GuardError::TooLarge { limit: MAX_DOCUMENT_BYTES }));
        assert_eq!(GuardError::TooLarge { limit: 1 }.code(), ErrorCode::DocumentTooLarge);
        // Just under the limit passes: the limit is on what it becomes, not on a guess.
        spend(&bomb(MAX_DOCUMENT_BYTES / 2)).unwrap();
    }

    /// A compressed change (chunk type 2) claiming a gibibyte: refused after inflating no more than the limit.
    #[test]
    fn a_compressed_change_declaring_a_gibibyte_is_refused_quickly() {
        // One mebibyte of zeros deflated and flushed to a byte boundary, repeated 1,024 times, then an empty final
        // block: a valid raw DEFLATE stream of a gibibyte, made without compressing a gibibyte.
        let mut compressor = Compress::new(Compression::best(), false);
        let mut mebibyte = Vec::with_capacity(64 * 1024);
        compressor.compress_vec(&vec![0u8; 1024 * 1024], &mut mebibyte, FlushCompress::Sync).unwrap();
        assert_eq!(compressor.total_in(), 1024 * 1024);
        let mut deflated = mebibyte.repeat(1024);
        deflated.extend([0x03, 0x00]);
        let mut two_mebibytes = mebibyte.repeat(2);
        two_mebibytes.extend([0x03, 0x00]);
        let mut decoder = flate2::read::DeflateDecoder::new(&two_mebibytes[..]);
        let inflated = std::io::copy(&mut decoder, &mut std::io::sink()).unwrap();
        assert_eq!(inflated, 2 * 1024 * 1024, "the repeated blocks inflate as they claim");
        assert!(deflated.len() < 2 * 1024 * 1024, "{} bytes", deflated.len());
        let mut chunk = MAGIC_BYTES.to_vec();
        chunk.extend([0, 0, 0, 0, 2]);
        leb128_write(&mut chunk, deflated.len() as u64);
        chunk.extend(&deflated);
        let started = Instant::now();
        assert_eq!(spend(&chunk), Err(GuardError::TooLarge { limit: MAX_DOCUMENT_BYTES }));
        assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
    }

    #[test]
    fn a_run_length_bomb_is_refused_without_deflate() {
        // A list of many nulls is a run of one value in every column: a few bytes for any number of operations.
        let mut doc = AutoCommit::new();
        let list = doc.put_object(ROOT, "list", ObjType::List).unwrap();
        let nulls = vec![automerge::ScalarValue::Null; usize::try_from(MAX_COLUMN_ROWS).unwrap() + 1];
        doc.splice(&list, 0, 0, nulls).unwrap();
        let change = doc.get_last_local_change().unwrap().raw_bytes().to_vec();
        assert!(change.len() < 1_000, "the change is {} bytes", change.len());
        assert_eq!(spend(&change), Err(GuardError::TooManyRows { limit: MAX_COLUMN_ROWS }));
        assert_eq!(spend(&doc.save()), Err(GuardError::TooManyRows { limit: MAX_COLUMN_ROWS }));
    }

    #[test]
    fn the_budget_spans_the_stored_document_and_what_a_message_adds() {
        let mut budget = Budget::new(DocumentLimits::default());
        budget.spend_chunks(&bomb(MAX_DOCUMENT_BYTES * 3 / 4)).unwrap();
        assert_eq!(
            budget.spend_chunks(&bomb(MAX_DOCUMENT_BYTES / 2)),
            Err(GuardError::TooLarge { limit: MAX_DOCUMENT_BYTES })
        );
    }

    #[test]
    fn what_is_not_a_chunk_is_refused() {
        assert_eq!(spend(b"not automerge"), Err(GuardError::Malformed("no magic bytes")));
        let mut saved = bomb(10);
        saved.truncate(saved.len() - 3);
        assert!(matches!(spend(&saved), Err(GuardError::Malformed(_))));
        let mut bundle = MAGIC_BYTES.to_vec();
        bundle.extend([0, 0, 0, 0, 3, 0]);
        assert_eq!(spend(&bundle), Err(GuardError::Malformed("a chunk type a peer may not send")));
        assert_eq!(spend(&[]), Ok(0));
    }

    #[test]
    fn a_costly_bloom_filter_is_refused() {
        let mut bytes = Vec::new();
        for value in [1_u64, 10, 1_000_000] {
            leb128_write(&mut bytes, value);
        }
        assert!(matches!(check_bloom(&bytes), Err(GuardError::BloomTooCostly { probes: 1_000_000, .. })));
        let real = sync::BloomFilter::from_hashes(AutoCommit::new().get_heads().into_iter());
        check_bloom(&real.to_bytes()).unwrap();
    }

    fn leb128_write(out: &mut Vec<u8>, mut value: u64) {
        loop {
            let byte = (value & 0x7f) as u8;
            value >>= 7;
            if value == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
}
