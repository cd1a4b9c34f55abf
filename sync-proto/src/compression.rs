//! The `deflate-1` coding of frames after the handshake (`docs/sync-protocol.md`, "Compression"). Each frame is one
//! message compressed on its own as a complete raw DEFLATE stream (RFC 1951), with a preset dictionary: Grapevine's
//! fixed [`WORDS`], then the last [`HISTORY_BYTES`] of the messages sent before it the same way on the connection.
//!
//! Most of a message is what the connection has already carried (the envelope's ids, the schema's keys), which the
//! history catches; the words help the first messages. A connection keeps only its two histories (4 KiB), not a
//! compressor's window and tables (about 400 KiB with zlib): the compressor and decompressor are per thread and
//! start afresh for every frame.

use std::cell::RefCell;
use std::sync::OnceLock;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// The name of the coding in `grapevineCompression`. The `1` names the dictionary: other [`WORDS`] would be another
/// coding, with another name.
pub const DEFLATE: &str = "deflate-1";

/// How much of the messages already sent one way is in the dictionary of the next.
pub const HISTORY_BYTES: usize = 2048;

/// The start of every frame's dictionary: the envelope's and the insight schema's words, and values every insight
/// repeats. Part of the coding: never change it without naming a new coding.
pub const WORDS: [&str; 40] = [
    "type",
    "sync",
    "senderId",
    "phone-",
    "targetId",
    "grapevine-server-",
    "documentId",
    "data",
    "campaign",
    "captured_at",
    "category",
    "channel",
    "feeling_safe",
    "id",
    "location",
    "schema",
    "server",
    "text",
    "type",
    "accuracy_m",
    "kind",
    "lat",
    "lon",
    "area_code",
    "area_name",
    "processed_at",
    "status",
    "community-safety",
    "insight",
    "gps",
    "filed",
    "outside_coverage",
    "pupil",
    "barber-hairdresser",
    "youth-worker",
    "road-safety",
    "asb",
    "drugs",
    "feeling-unsafe",
    "2026-11-",
];

thread_local! {
    /// This thread's compressor and decompressor, reset for every frame.
    static ENGINES: RefCell<(Option<Compress>, Option<Decompress>)> = const { RefCell::new((None, None)) };
}

/// The messages already sent one way on a connection: the last [`HISTORY_BYTES`] of them.
#[derive(Debug, Default)]
struct History(Vec<u8>);

impl History {
    fn dictionary(&self) -> Vec<u8> {
        static WORDS_BYTES: OnceLock<Vec<u8>> = OnceLock::new();
        let words = WORDS_BYTES.get_or_init(|| WORDS.concat().into_bytes());
        let mut dictionary = Vec::with_capacity(words.len() + self.0.len());
        dictionary.extend_from_slice(words);
        dictionary.extend_from_slice(&self.0);
        dictionary
    }

    fn remember(&mut self, message: &[u8]) {
        self.0.extend_from_slice(&message[message.len().saturating_sub(HISTORY_BYTES)..]);
        let excess = self.0.len().saturating_sub(HISTORY_BYTES);
        self.0.drain(..excess);
    }
}

/// One direction's writer.
#[derive(Debug, Default)]
pub struct Deflater(History);

impl Deflater {
    /// The frame for one message. Frames must reach the reader in this order, every one of them: each is
    /// compressed against the ones before.
    ///
    /// # Panics
    /// Never in practice: compressing into memory cannot fail.
    pub fn compress(&mut self, message: &[u8]) -> Vec<u8> {
        let dictionary = self.0.dictionary();
        let frame = ENGINES.with_borrow_mut(|(compress, _)| {
            let compress = compress.get_or_insert_with(|| Compress::new(Compression::default(), false));
            compress.reset();
            compress.set_dictionary(&dictionary).expect("a fresh compressor takes a dictionary");
            let mut frame = Vec::with_capacity(message.len() / 2 + 64);
            let start = compress.total_in();
            loop {
                let consumed = usize::try_from(compress.total_in() - start).expect("a frame fits in memory");
                if frame.capacity() - frame.len() < 16 {
                    frame.reserve(frame.capacity().max(64));
                }
                let status = compress
                    .compress_vec(&message[consumed..], &mut frame, FlushCompress::Finish)
                    .expect("compressing into memory cannot fail");
                if status == Status::StreamEnd {
                    return frame;
                }
            }
        });
        self.0.remember(message);
        frame
    }
}

/// Why a frame did not inflate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InflateError {
    #[error("frame inflates past the limit of {limit} bytes")]
    TooLarge { limit: usize },
    #[error("frame is not a deflate-1 frame: {0}")]
    Corrupt(String),
}

/// One direction's reader.
#[derive(Debug, Default)]
pub struct Inflater(History);

impl Inflater {
    /// The message in one frame, refusing to inflate past `limit` bytes (the memory it takes is bounded by the
    /// limit, whatever the frame claims). After an error the connection must close: the frames after this one are
    /// compressed against it.
    ///
    /// # Errors
    /// The frame inflates past `limit`, or is not one whole DEFLATE stream against this connection's dictionary.
    pub fn decompress(&mut self, frame: &[u8], limit: usize) -> Result<Vec<u8>, InflateError> {
        let dictionary = self.0.dictionary();
        let message = ENGINES.with_borrow_mut(|(_, decompress)| {
            let decompress = decompress.get_or_insert_with(|| Decompress::new(false));
            decompress.reset(false);
            decompress.set_dictionary(&dictionary).map_err(|error| InflateError::Corrupt(error.to_string()))?;
            let mut message = Vec::with_capacity(frame.len().saturating_mul(4).clamp(256, limit.saturating_add(1)));
            let start = decompress.total_in();
            loop {
                let consumed = usize::try_from(decompress.total_in() - start).expect("a frame fits in memory");
                if message.len() == message.capacity() {
                    if message.len() > limit {
                        return Err(InflateError::TooLarge { limit });
                    }
                    message.reserve_exact(message.capacity().max(256).min(limit + 1 - message.len()));
                }
                let status = decompress
                    .decompress_vec(&frame[consumed..], &mut message, FlushDecompress::None)
                    .map_err(|error| InflateError::Corrupt(error.to_string()))?;
                if message.len() > limit {
                    return Err(InflateError::TooLarge { limit });
                }
                let consumed = usize::try_from(decompress.total_in() - start).expect("a frame fits in memory");
                match status {
                    Status::StreamEnd if consumed == frame.len() => return Ok(message),
                    Status::StreamEnd => return Err(InflateError::Corrupt("bytes after the end of the stream".into())),
                    // No progress with room to spare: the frame stopped mid-stream.
                    Status::BufError if message.len() < message.capacity() => {
                        return Err(InflateError::Corrupt("the frame ends mid-stream".into()))
                    }
                    Status::Ok | Status::BufError => {}
                }
            }
        })?;
        self.0.remember(&message);
        Ok(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages() -> Vec<Vec<u8>> {
        let mut messages: Vec<Vec<u8>> = (0..50)
            .map(|i| format!("{{\"type\":\"sync\",\"senderId\":\"phone-1\",\"n\":{i},\"text\":\"report number {i}\"}}"))
            .map(String::into_bytes)
            .collect();
        messages.push(Vec::new());
        // Incompressible and larger than any first guess at the output's size.
        let mut noise = 0x2545_f491_u32;
        messages.push(
            (0..200_000)
                .map(|_| {
                    noise ^= noise << 13;
                    noise ^= noise >> 17;
                    noise ^= noise << 5;
                    noise.to_le_bytes()[0]
                })
                .collect(),
        );
        messages.push(vec![b'a'; 300_000]);
        messages.push(b"after the big ones".to_vec());
        messages
    }

    #[test]
    fn frames_inflate_to_their_messages_in_order_and_repeats_get_cheaper() {
        let (mut deflater, mut inflater) = (Deflater::default(), Inflater::default());
        let mut sizes = Vec::new();
        for message in messages() {
            let frame = deflater.compress(&message);
            assert_eq!(inflater.decompress(&frame, 1 << 20).unwrap(), message);
            sizes.push(frame.len());
            // A connection keeps no more than its history, whatever it carried.
            assert!(deflater.0 .0.len() <= HISTORY_BYTES && inflater.0 .0.len() <= HISTORY_BYTES);
        }
        // The dictionary spans frames: the tenth similar message costs far less than the first.
        assert!(sizes[10] * 2 < sizes[0], "{sizes:?}");
    }

    #[test]
    fn a_frame_that_inflates_past_the_limit_is_refused_without_inflating_it_all() {
        let bomb = Deflater::default().compress(&vec![0u8; 10 << 20]);
        assert!(bomb.len() < 20_000, "{} bytes", bomb.len());
        let error = Inflater::default().decompress(&bomb, 1 << 20).unwrap_err();
        assert_eq!(error, InflateError::TooLarge { limit: 1 << 20 });
        // Exactly at the limit is fine.
        let frame = Deflater::default().compress(&vec![7u8; 1 << 20]);
        assert_eq!(Inflater::default().decompress(&frame, 1 << 20).unwrap().len(), 1 << 20);
    }

    #[test]
    fn garbage_a_cut_frame_or_a_frame_with_bytes_after_it_is_refused() {
        let corrupt = |result| matches!(result, Err(InflateError::Corrupt(_)));
        assert!(corrupt(Inflater::default().decompress(&[0xff; 32], 1 << 20)));
        let frame = Deflater::default().compress(b"a message long enough to be cut short somewhere in its middle");
        assert!(corrupt(Inflater::default().decompress(&frame[..frame.len() / 2], 1 << 20)));
        assert!(corrupt(Inflater::default().decompress(&[&frame[..], b"x"].concat(), 1 << 20)));
        assert!(corrupt(Inflater::default().decompress(&[], 1 << 20)));
    }

    /// The words are part of the coding: a phone and a server with different words cannot read each other.
    #[test]
    fn the_words_are_those_of_deflate_1() {
        assert_eq!(DEFLATE, "deflate-1");
        assert_eq!(WORDS.concat().len(), 316);
        assert!(WORDS.concat().starts_with("typesyncsenderIdphone-targetIdgrapevine-server-"));
    }
}
