//! Entry points for the fuzzers in `fuzz/` and for replaying their corpus in the normal test suite: everything a
//! device's frames reach on the server short of the database (the frame decoder, the session, Automerge's sync,
//! extraction, validation, geotagging and the write-back).

use std::collections::HashMap;
use std::sync::OnceLock;

use grapevine_sync_proto::automerge::AutoCommit;
use grapevine_sync_proto::compression::Deflater;
use grapevine_sync_proto::document::write_server_record;
use grapevine_sync_proto::session::{Event, Session, Side};
use grapevine_sync_proto::wire::Message;
use grapevine_sync_proto::DocumentId;

use grapevine_sync_proto::document::write_insight;
use grapevine_sync_proto::{Channel, Insight, Location};

use crate::atlas::Atlas;
use crate::ingest::decide;

fn atlas() -> &'static Atlas {
    static ATLAS: OnceLock<Atlas> = OnceLock::new();
    ATLAS.get_or_init(Atlas::bundled)
}

/// A server session past a valid join, speaking `deflate-1` with the joiner or not.
fn joined_server(compressed: bool) -> Session {
    let (mut server, mut client) = (Session::new(Side::Server, "server"), Session::new(Side::Client, "fuzzer"));
    if compressed {
        (server, client) = (server.with_compression(), client.with_compression());
    }
    let _ = server.receive(&client.join_frame());
    let _ = server.accept(&[], None);
    server
}

/// One frame through the decoder, a fresh server session, and a joined session expecting compressed frames. Must
/// never panic.
pub fn decode_frame(data: &[u8]) {
    let _ = Message::decode(data);
    let _ = Session::new(Side::Server, "server").receive(data);
    let _ = joined_server(true).receive(data);
}

/// A connection's worth of frames (each prefixed by a little-endian u16 length) through the server's message
/// handler, after a valid join: once as they are, once each compressed as a `deflate-1` client would send it (so the
/// handler is reached through the decompressor too). Must never panic, whatever the frames say.
pub fn handle_frames(data: &[u8]) {
    handle_frames_with(joined_server(false), data, <[u8]>::to_vec);
    let mut deflater = Deflater::default();
    handle_frames_with(joined_server(true), data, |frame| deflater.compress(frame));
}

fn handle_frames_with(mut session: Session, data: &[u8], mut seal: impl FnMut(&[u8]) -> Vec<u8>) {
    let mut docs: HashMap<DocumentId, AutoCommit> = HashMap::new();
    let mut rest = data;
    while rest.len() >= 2 {
        let len = usize::from(u16::from_le_bytes([rest[0], rest[1]])).min(rest.len() - 2);
        let (frame, tail) = rest[2..].split_at(len);
        rest = tail;
        let Ok(Event::Sync { doc_id, message, .. }) = session.receive(&seal(frame)) else { continue };
        let doc = docs.entry(doc_id).or_default();
        let before = doc.get_heads();
        if session.apply(doc_id, doc, message).is_err() {
            continue;
        }
        if doc.get_heads() != before {
            // A fixed clock keeps runs reproducible; a recent one lets plausible capture times through to geotagging.
            let decision = decide(doc, doc_id, atlas(), None, time::macros::datetime!(2030-01-01 00:00 UTC));
            let _ = write_server_record(doc, &decision.record);
        }
        let _ = session.generate(doc_id, doc);
    }
}

/// Frames a connection's messages the way `handle_frames` reads them.
#[must_use]
pub fn frame_all(frames: &[Vec<u8>]) -> Vec<u8> {
    let mut data = Vec::new();
    for frame in frames {
        let len = u16::try_from(frame.len()).expect("seed frames are small");
        data.extend_from_slice(&len.to_le_bytes());
        data.extend_from_slice(frame);
    }
    data
}

/// A real phone's first sync of one insight, as the frames it sends.
pub fn seed_connection() -> Vec<Vec<u8>> {
    let insight = Insight {
        id: uuid::Uuid::from_u128(7),
        captured_at: time::macros::datetime!(2026-11-20 17:45 +00:00),
        campaign: "community-safety".into(),
        category: "drugs".into(),
        text: "Dealing by the park gates".into(),
        feeling_safe: Some(2),
        location: Location::Gps { lat: 53.01869, lon: -2.16979, accuracy_m: 10.0 },
        channel: Channel::BarberHairdresser,
    };
    let doc_id = DocumentId::for_insight(insight.id);
    let mut phone = Session::new(Side::Client, "fuzzer");
    let mut server = Session::new(Side::Server, "server");
    let _ = server.receive(&phone.join_frame());
    let _ = phone.receive(&server.accept(&[], None));
    let mut phone_doc = AutoCommit::new();
    write_insight(&mut phone_doc, &insight).unwrap();
    let mut server_doc = AutoCommit::new();
    let mut frames = Vec::new();
    for _ in 0..4 {
        if let Some(frame) = phone.generate(doc_id, &mut phone_doc) {
            if let Ok(Event::Sync { message, .. }) = server.receive(&frame) {
                server.apply(doc_id, &mut server_doc, message).unwrap();
            }
            frames.push(frame);
        }
        if let Some(frame) = server.generate(doc_id, &mut server_doc) {
            if let Ok(Event::Sync { message, .. }) = phone.receive(&frame) {
                phone.apply(doc_id, &mut phone_doc, message).unwrap();
            }
        }
    }
    frames
}

/// The seed corpus: `(target, file name, bytes)`. `fuzz/` has a `write_seeds` binary that writes it out.
#[must_use]
pub fn seed_corpus() -> Vec<(&'static str, String, Vec<u8>)> {
    let frames = seed_connection();
    let mut seeds = vec![("frame_decoder", "join".to_owned(), Session::new(Side::Client, "fuzzer").join_frame())];
    for (i, frame) in frames.iter().enumerate() {
        seeds.push(("frame_decoder", format!("sync-{i}"), frame.clone()));
    }
    // What a `deflate-1` client sends first after the handshake: the compressed session in `decode_frame` reads it.
    seeds.push(("frame_decoder", "sync-0-deflated".to_owned(), Deflater::default().compress(&frames[0])));
    seeds.push(("server_handler", "first-sync".to_owned(), frame_all(&frames)));
    seeds
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;

    fn corpus_files(target: &str) -> Vec<PathBuf> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
        let mut files = Vec::new();
        for dir in [root.join("corpus").join(target), root.join("artifacts").join(target)] {
            if let Ok(entries) = std::fs::read_dir(dir) {
                files.extend(entries.filter_map(Result::ok).map(|entry| entry.path()).filter(|path| path.is_file()));
            }
        }
        files
    }

    #[test]
    fn the_seed_connection_is_a_real_sync() {
        let frames = seed_connection();
        assert!(frames.len() >= 2, "the phone sends its heads, then its changes");
        handle_frames(&frame_all(&frames));
    }

    /// Every input the fuzzers keep (and every crash they ever found) replays without a panic.
    #[test]
    fn the_fuzz_corpus_replays() {
        let decoder = corpus_files("frame_decoder");
        let handler = corpus_files("server_handler");
        assert!(!decoder.is_empty() && !handler.is_empty(), "the corpus is committed under fuzz/corpus");
        for path in decoder {
            decode_frame(&std::fs::read(&path).unwrap());
        }
        for path in handler {
            handle_frames(&std::fs::read(&path).unwrap());
        }
        for (target, _, bytes) in seed_corpus() {
            if target == "frame_decoder" {
                decode_frame(&bytes);
            } else {
                handle_frames(&bytes);
            }
        }
    }
}
