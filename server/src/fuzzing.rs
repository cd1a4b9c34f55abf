//! Entry points for the fuzzers in `fuzz/` and for replaying their corpus in the normal test suite: everything a
//! device's frames reach on the server short of the database (the frame decoder, the session, Automerge's sync,
//! extraction, validation, geotagging and the write-back).

use std::collections::HashMap;
use std::sync::OnceLock;

use grapevine_sync_proto::automerge::AutoCommit;
use grapevine_sync_proto::compression::Deflater;
use grapevine_sync_proto::document::write_server_record;
use grapevine_sync_proto::guard::{Budget, DocumentLimits};
use grapevine_sync_proto::session::{Event, Session, Side};
use grapevine_sync_proto::wire::Message;
use grapevine_sync_proto::DocumentId;
use time::OffsetDateTime;

/// The clock the fuzzed server decides by. Fixed, so runs are reproducible; recent, so plausible capture times get
/// through to geotagging rather than all being refused as from the future.
const DECIDED_AT: OffsetDateTime = time::macros::datetime!(2030-01-01 00:00 UTC);

use grapevine_sync_proto::document::write_insight;
use grapevine_sync_proto::{Channel, Insight, Location};

use crate::geo::atlas::Atlas;
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
        // As the server does, nothing over the limits reaches Automerge (`crate::sync::load_and_apply`).
        if Budget::new(DocumentLimits::default()).spend_message(&message).is_err() {
            continue;
        }
        let doc = docs.entry(doc_id).or_default();
        let before = doc.get_heads();
        if crate::sync::apply_caught(&mut session, doc_id, doc, message).is_err() {
            continue;
        }
        if doc.get_heads() != before {
            let decision = decide(doc, doc_id, atlas(), None, DECIDED_AT);
            let _ = write_server_record(doc, &decision.record);
        }
        let _ = session.generate(doc_id, doc);
    }
}

/// How `sync_message` sends one chunk of its input: as it stands, or as the body of a chunk it frames (with a valid
/// checksum, so Automerge reads past it) as a change, a deflated change (chunk type 2) or a document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkForm {
    AsItStands = 0,
    Change = 1,
    DeflatedChange = 2,
    Document = 3,
}

/// A whole `sync` message with compressed changes, through what the server does with one: the session reads the
/// frame, the guard checks the changes against the limits, Automerge applies them to a new document
/// (`crate::sync::load_and_apply`), the server decides and writes its record back, and the reply is held to the frame
/// limit. The input is a u16 (little-endian) of two bits per chunk saying each chunk's [`ChunkForm`], then the
/// chunks, each prefixed by a little-endian u16 length: the fuzzer writes change and document bodies inflated, and
/// the harness frames and deflates them, so mutations reach Automerge's parsers rather than dying at a checksum or in
/// the inflater. Must never panic, and never take more than the limits allow.
pub fn sync_message(data: &[u8]) {
    let _ = sync_message_applied(data);
}

/// `sync_message`, saying what Automerge made of the message: the document's heads, or `None` if it was refused
/// (by the session, the guard or Automerge).
fn sync_message_applied(data: &[u8]) -> Option<Vec<grapevine_sync_proto::automerge::ChangeHash>> {
    let (forms, mut rest) = data.split_first_chunk::<2>()?;
    let forms = u16::from_le_bytes(*forms);
    let mut chunks = Vec::new();
    while rest.len() >= 2 {
        let len = usize::from(u16::from_le_bytes([rest[0], rest[1]])).min(rest.len() - 2);
        let (body, tail) = rest[2..].split_at(len);
        rest = tail;
        let form = match (forms >> ((chunks.len() % 8) * 2)) & 0b11 {
            0 => ChunkForm::AsItStands,
            1 => ChunkForm::Change,
            2 => ChunkForm::DeflatedChange,
            _ => ChunkForm::Document,
        };
        chunks.push(frame_chunk(form, body));
    }
    let heads = Vec::new();
    let message = grapevine_sync_proto::automerge::sync::Message {
        heads,
        need: Vec::new(),
        have: Vec::new(),
        changes: chunks.into(),
        supported_capabilities: None,
        version: grapevine_sync_proto::automerge::sync::MessageVersion::V1,
    };
    let doc_id = DocumentId::for_insight(uuid::Uuid::from_u128(7));
    let frame = Message::Sync {
        sender_id: "fuzzer".into(),
        target_id: "server".into(),
        document_id: doc_id.to_string(),
        data: message.encode().into(),
    }
    .encode();
    let mut session = joined_server(false);
    let Ok(Event::Sync { doc_id, message, .. }) = session.receive(&frame) else { return None };
    let actor = grapevine_sync_proto::automerge::ActorId::from(&[7_u8; 16][..]);
    let Ok(Ok(crate::ingest::Changed { mut doc, heads_before })) =
        crate::sync::load_and_apply(&mut session, doc_id, None, message, &actor)
    else {
        return None;
    };
    let heads = doc.get_heads();
    if heads != heads_before {
        let decision = decide(&doc, doc_id, atlas(), None, DECIDED_AT);
        let _ = write_server_record(&mut doc, &decision.record);
    }
    let _ = session.generate_within_limit(doc_id, &mut doc);
    Some(heads)
}

/// One chunk of `sync_message`'s input in its form: the body framed as Automerge frames a chunk (magic bytes, the
/// checksum of the inflated chunk, type, LEB128 length), deflated first for a compressed change.
#[must_use]
pub fn frame_chunk(form: ChunkForm, body: &[u8]) -> Vec<u8> {
    let chunk_type: u8 = match form {
        ChunkForm::AsItStands => return body.to_vec(),
        ChunkForm::Change | ChunkForm::DeflatedChange => 1,
        ChunkForm::Document => 0,
    };
    let mut hashed = vec![chunk_type];
    write_leb128(&mut hashed, body.len());
    hashed.extend_from_slice(body);
    let checksum: [u8; 32] = <sha2::Sha256 as sha2::Digest>::digest(&hashed).into();
    let (chunk_type, data) = if form == ChunkForm::DeflatedChange {
        let mut encoder = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
        let deflated = std::io::Write::write_all(&mut encoder, body).and_then(|()| encoder.finish());
        (2, deflated.unwrap_or_default())
    } else {
        (chunk_type, body.to_vec())
    };
    let mut chunk = vec![0x85, 0x6f, 0x4a, 0x83];
    chunk.extend_from_slice(&checksum[..4]);
    chunk.push(chunk_type);
    write_leb128(&mut chunk, data.len());
    chunk.extend(data);
    chunk
}

fn write_leb128(out: &mut Vec<u8>, mut value: usize) {
    loop {
        let byte = u8::try_from(value & 0x7f).unwrap_or(0);
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// A `sync_message` input: each chunk's body (its bytes after Automerge's chunk header) in the given form.
#[must_use]
pub fn sync_message_input(chunks: &[(ChunkForm, Vec<u8>)]) -> Vec<u8> {
    let forms =
        chunks.iter().take(8).enumerate().fold(0_u16, |forms, (i, (form, _))| forms | (*form as u16) << (i * 2));
    let mut data = forms.to_le_bytes().to_vec();
    for (_, body) in chunks {
        let len = u16::try_from(body.len()).expect("seed chunks are small");
        data.extend_from_slice(&len.to_le_bytes());
        data.extend_from_slice(body);
    }
    data
}

/// A chunk's body: its bytes after the header (magic, checksum, type, LEB128 length).
fn chunk_body(chunk: &[u8]) -> Vec<u8> {
    let mut at = 9;
    while chunk.get(at).is_some_and(|byte| byte & 0x80 != 0) {
        at += 1;
    }
    chunk.get(at + 1..).unwrap_or_default().to_vec()
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
    let insight = seed_insight();
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

/// The seeds' one insight.
fn seed_insight() -> Insight {
    Insight {
        id: uuid::Uuid::from_u128(7),
        captured_at: time::macros::datetime!(2026-11-20 17:45 +00:00),
        campaign: "community-safety".into(),
        category: "drugs".into(),
        text: "Dealing by the park gates".into(),
        feeling_safe: Some(2),
        location: Location::Gps { lat: 53.01869, lon: -2.16979, accuracy_m: 10.0 },
        channel: Channel::BarberHairdresser,
    }
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
    // The same insight as a whole message: its changes as they stand, deflated, and as a saved document.
    let mut doc = AutoCommit::new();
    write_insight(&mut doc, &seed_insight()).unwrap();
    let changes: Vec<Vec<u8>> = doc.get_changes(&[]).iter().map(|change| chunk_body(change.raw_bytes())).collect();
    let plain: Vec<(ChunkForm, Vec<u8>)> = changes.iter().map(|body| (ChunkForm::Change, body.clone())).collect();
    let deflated: Vec<(ChunkForm, Vec<u8>)> =
        changes.iter().map(|body| (ChunkForm::DeflatedChange, body.clone())).collect();
    let document = vec![(ChunkForm::Document, chunk_body(&doc.save()))];
    seeds.push(("sync_message", "sync-changes".to_owned(), sync_message_input(&plain)));
    seeds.push(("sync_message", "sync-deflated-changes".to_owned(), sync_message_input(&deflated)));
    seeds.push(("sync_message", "sync-document".to_owned(), sync_message_input(&document)));
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

    /// The `sync_message` seeds reach Automerge in every form, and the same message holding a bomb does not.
    #[test]
    fn the_sync_message_seeds_are_applied_and_a_bomb_is_not() {
        let mut doc = AutoCommit::new();
        write_insight(&mut doc, &seed_insight()).unwrap();
        for (target, name, bytes) in seed_corpus() {
            if target == "sync_message" {
                let heads = sync_message_applied(&bytes);
                assert!(heads.as_ref().is_some_and(|heads| heads.len() == 1), "{name}: {heads:?}");
            }
        }
        let mut bomb = doc.fork();
        grapevine_sync_proto::automerge::transaction::Transactable::put(
            &mut bomb,
            grapevine_sync_proto::automerge::ROOT,
            "text",
            "a".repeat(4 << 20),
        )
        .unwrap();
        let bodies: Vec<(ChunkForm, Vec<u8>)> = bomb
            .get_changes(&[])
            .iter()
            .map(|change| {
                // Deflated here, since a body of 4 MiB does not fit the input's u16 lengths; its chunk does.
                let deflated = frame_chunk(ChunkForm::DeflatedChange, &chunk_body(change.raw_bytes()));
                (ChunkForm::AsItStands, deflated)
            })
            .collect();
        assert!(bodies.iter().all(|(_, chunk)| chunk.len() < 65_536));
        assert_eq!(sync_message_applied(&sync_message_input(&bodies)), None);
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
        let messages = corpus_files("sync_message");
        assert!(!messages.is_empty(), "the sync_message seeds are committed under fuzz/corpus");
        for path in messages {
            sync_message(&std::fs::read(&path).unwrap());
        }
        for (target, _, bytes) in seed_corpus() {
            match target {
                "frame_decoder" => decode_frame(&bytes),
                "sync_message" => sync_message(&bytes),
                _ => handle_frames(&bytes),
            }
        }
    }
}
