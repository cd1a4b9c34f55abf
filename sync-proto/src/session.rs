//! The sans-IO sync engine for one connection: frames in, events out; documents are lent by the caller.
//!
//! A driver (the server's WebSocket handler, the SDK's sync client, a simulated network in tests) owns the socket and
//! the storage. It feeds every inbound frame to [`Session::receive`], acts on the [`Event`] (for a document: load it,
//! call [`Session::apply`], store it, then [`Session::generate`] the reply) and writes the frames the session returns.
//! The session keeps the handshake state and one Automerge sync state per document.

use std::collections::HashMap;

use automerge::sync::{self, SyncDoc};
use automerge::AutoCommit;
use serde_bytes::ByteBuf;

use crate::codes::ErrorCode;
use crate::compression::{Deflater, InflateError, Inflater, DEFLATE};
use crate::doc_id::DocumentId;
use crate::wire::{Message, PeerMetadata, PROTOCOL_V1};

/// The largest frame accepted by default: 1 MiB.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 1024 * 1024;

/// Which end of the connection this session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Sends `join`, waits for `peer`.
    Client,
    /// Waits for `join`, answers `peer`.
    Server,
}

/// Whether the sender of a document message holds the document (`sync`) or is asking for it (`request`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncKind {
    Request,
    Sync,
}

/// What an inbound frame means for the driver.
#[derive(Debug)]
pub enum Event {
    /// Server side: a peer joined, having seen the collector's writes up to `seen` (Grapevine's SDK says; other
    /// peers do not). Answer with [`Session::accept`] before anything else.
    Joined { peer_id: String, seen: Option<i64>, campaign: Option<String> },
    /// Client side: the server accepted the join. `storage_id` names the server's storage lineage: when it changes
    /// (a restore from backup), the client should offer every document again. `catch_up` lists the documents the
    /// server offers next (changed by the collector's other devices while this one was away).
    /// Once the phone holds them, it has seen the collector's writes up to `catch_up_to`.
    Accepted { peer_id: String, storage_id: Option<String>, catch_up: Vec<DocumentId>, catch_up_to: Option<i64> },
    /// A sync message for one document: load it, [`Session::apply`] it, store it, then [`Session::generate`].
    Sync { doc_id: DocumentId, kind: SyncKind, message: sync::Message },
    /// The other side does not have the document, or may not give it to us.
    DocUnavailable { doc_id: DocumentId },
    /// The other side reported an error and is closing the connection.
    RemoteError { code: Option<ErrorCode>, message: String },
    /// A message Grapevine does not act on (ephemeral messages, heads gossip).
    Ignored,
}

/// A frame that breaks the protocol. The driver sends [`Session::error_frame`] with its code, then closes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} ({code})")]
pub struct ProtocolError {
    pub code: ErrorCode,
    pub message: String,
}

impl ProtocolError {
    fn violation(message: impl Into<String>) -> Self {
        ProtocolError { code: ErrorCode::ProtocolViolation, message: message.into() }
    }
}

/// One connection's protocol state.
#[derive(Debug)]
pub struct Session {
    side: Side,
    our_peer_id: String,
    their_peer_id: Option<String>,
    storage_id: Option<String>,
    seen: Option<i64>,
    campaign: Option<String>,
    max_frame_bytes: usize,
    sync_states: HashMap<DocumentId, sync::State>,
    /// Client side: the server said it takes a new document whole in its first sync message.
    peer_takes_whole: bool,
    /// This side speaks the `deflate-1` coding: a client offers it in `join`, a server takes it when offered.
    speaks_deflate: bool,
    /// Server side: the client offered `deflate-1` and this server takes it, from `accept` on.
    deflate_agreed: bool,
    /// Set once the coding is agreed: every frame after the handshake, each way, goes through these.
    deflater: Option<Deflater>,
    inflater: Option<Inflater>,
}

impl Session {
    #[must_use]
    pub fn new(side: Side, our_peer_id: impl Into<String>) -> Self {
        Session {
            side,
            our_peer_id: our_peer_id.into(),
            their_peer_id: None,
            storage_id: None,
            seen: None,
            campaign: None,
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            sync_states: HashMap::new(),
            peer_takes_whole: false,
            speaks_deflate: false,
            deflate_agreed: false,
            deflater: None,
            inflater: None,
        }
    }

    /// Speaks the `deflate-1` coding of frames (`compression`): a client offers it in `join`; a server takes it when
    /// a client offers it. Either way the frames are plain CBOR unless both sides speak it.
    #[must_use]
    pub fn with_compression(mut self) -> Self {
        self.speaks_deflate = true;
        self
    }

    /// Whether frames after the handshake are compressed on this connection.
    #[must_use]
    pub fn is_compressed(&self) -> bool {
        self.deflater.is_some()
    }

    fn start_compressing(&mut self) {
        self.deflater = Some(Deflater::default());
        self.inflater = Some(Inflater::default());
    }

    /// One outbound message as its frame: compressed once the coding is agreed.
    fn seal(&mut self, message: &Message) -> Vec<u8> {
        self.seal_encoded(message.encode())
    }

    /// An encoded message as its frame: compressed once the coding is agreed.
    fn seal_encoded(&mut self, encoded: Vec<u8>) -> Vec<u8> {
        match &mut self.deflater {
            Some(deflater) => deflater.compress(&encoded),
            None => encoded,
        }
    }

    /// Sets the largest inbound frame accepted.
    #[must_use]
    pub fn with_max_frame_bytes(mut self, max_frame_bytes: usize) -> Self {
        self.max_frame_bytes = max_frame_bytes;
        self
    }

    /// Sets the storage id this peer announces in its handshake.
    #[must_use]
    pub fn with_storage_id(mut self, storage_id: impl Into<String>) -> Self {
        self.storage_id = Some(storage_id.into());
        self
    }

    /// Client side: how far this phone has seen the collector's writes, sent in `join`.
    #[must_use]
    pub fn with_seen(mut self, seen: i64) -> Self {
        self.seen = Some(seen);
        self
    }

    /// Client side: the fingerprint of the campaign document this phone holds (`campaign_doc::fingerprint`), sent in
    /// `join`.
    #[must_use]
    pub fn with_campaign(mut self, fingerprint: impl Into<String>) -> Self {
        self.campaign = Some(fingerprint.into());
        self
    }

    /// Server side: the `peer` frame answering a join, announcing the documents it offers next (`catch_up`) and the
    /// sequence number the phone will have seen once it holds them. Frames after it are compressed both ways when
    /// the client offered `deflate-1` and this server speaks it; the `peer` frame itself never is.
    #[must_use]
    pub fn accept(&mut self, catch_up: &[DocumentId], catch_up_to: Option<i64>) -> Vec<u8> {
        let frame = Message::Peer {
            sender_id: self.our_peer_id.clone(),
            target_id: self.their_peer_id.clone().unwrap_or_default(),
            selected_protocol_version: PROTOCOL_V1.to_owned(),
            peer_metadata: Some(PeerMetadata {
                storage_id: self.storage_id.clone(),
                is_ephemeral: Some(false),
                catch_up: (!catch_up.is_empty()).then(|| catch_up.iter().map(ToString::to_string).collect()),
                catch_up_to,
                seen: None,
                campaign: None,
                whole_documents: Some(true),
                compression: self.deflate_agreed.then(|| vec![DEFLATE.to_owned()]),
            }),
        }
        .encode();
        if self.deflate_agreed {
            self.start_compressing();
        }
        frame
    }

    /// Whether this session holds a sync state for the document yet.
    #[must_use]
    pub fn knows(&self, doc_id: DocumentId) -> bool {
        self.sync_states.contains_key(&doc_id)
    }

    /// Resumes from a persisted sync state (from [`Session::sync_state`] on an earlier connection).
    ///
    /// # Errors
    /// The bytes are not an encoded sync state; the session keeps a fresh state instead.
    pub fn resume(&mut self, doc_id: DocumentId, persisted: &[u8]) -> Result<(), ProtocolError> {
        let state = sync::State::decode(persisted)
            .map_err(|error| ProtocolError::violation(format!("document {doc_id}: unreadable sync state: {error}")))?;
        self.sync_states.insert(doc_id, state);
        Ok(())
    }

    /// Client side: the server has never seen this document (it was made here and never synced), so its first sync
    /// message carries it whole, instead of first telling the server its heads and waiting to hear what it lacks: one
    /// round trip and two messages fewer per new document, and the document goes in Automerge's compressed form. Does
    /// nothing unless the server said in `peer` that it takes whole documents, or if the document has no changes yet.
    /// Harmless if the server does have it after all (an earlier sync lost its sync state): it merges what it has.
    pub fn offer_whole(&mut self, doc_id: DocumentId, doc: &mut AutoCommit) {
        if !self.peer_takes_whole || doc.get_heads().is_empty() {
            return;
        }
        let state = self.sync_states.entry(doc_id).or_default();
        state.their_heads = Some(Vec::new());
        state.their_have = Some(Vec::new());
        state.their_need = Some(Vec::new());
        state.their_capabilities = Some(vec![sync::Capability::MessageV2]);
    }

    /// The sync state to persist for a document: what both sides are known to share.
    #[must_use]
    pub fn sync_state(&self, doc_id: DocumentId) -> Option<Vec<u8>> {
        self.sync_states.get(&doc_id).map(sync::State::encode)
    }

    /// The other peer's id, once the handshake is done.
    #[must_use]
    pub fn their_peer_id(&self) -> Option<&str> {
        self.their_peer_id.as_deref()
    }

    /// Client side: the `join` frame that opens the connection.
    #[must_use]
    pub fn join_frame(&self) -> Vec<u8> {
        Message::Join {
            sender_id: self.our_peer_id.clone(),
            supported_protocol_versions: Some(vec![PROTOCOL_V1.to_owned()]),
            peer_metadata: Some(PeerMetadata {
                is_ephemeral: Some(false),
                seen: self.seen,
                campaign: self.campaign.clone(),
                compression: self.speaks_deflate.then(|| vec![DEFLATE.to_owned()]),
                ..PeerMetadata::default()
            }),
        }
        .encode()
    }

    /// Interprets one inbound frame.
    ///
    /// # Errors
    /// A frame that is too large, undecodable, out of order, from another peer, or for an unreadable document.
    pub fn receive(&mut self, frame: &[u8]) -> Result<Event, ProtocolError> {
        if frame.len() > self.max_frame_bytes {
            return Err(ProtocolError {
                code: ErrorCode::FrameTooLarge,
                message: format!("frame of {} bytes exceeds the limit of {} bytes", frame.len(), self.max_frame_bytes),
            });
        }
        let inflated;
        let frame = match &mut self.inflater {
            Some(inflater) => {
                inflated = inflater.decompress(frame, self.max_frame_bytes).map_err(|error| match error {
                    InflateError::TooLarge { .. } => {
                        ProtocolError { code: ErrorCode::FrameTooLarge, message: error.to_string() }
                    }
                    InflateError::Corrupt(_) => ProtocolError::violation(error.to_string()),
                })?;
                &inflated[..]
            }
            None => frame,
        };
        let message = Message::decode(frame).map_err(|error| ProtocolError::violation(error.to_string()))?;
        match (self.side, &self.their_peer_id, message) {
            (_, _, Message::Error { code, message, .. }) => {
                Ok(Event::RemoteError { code: code.as_deref().and_then(ErrorCode::parse), message })
            }
            (Side::Server, None, Message::Join { sender_id, supported_protocol_versions, peer_metadata }) => {
                let speaks_v1 =
                    supported_protocol_versions.is_none_or(|versions| versions.iter().any(|v| v == PROTOCOL_V1));
                if !speaks_v1 {
                    return Err(ProtocolError {
                        code: ErrorCode::ProtocolVersionUnsupported,
                        message: format!("unsupported protocol version; this server speaks version {PROTOCOL_V1}"),
                    });
                }
                self.their_peer_id = Some(sender_id.clone());
                let metadata = peer_metadata.unwrap_or_default();
                self.deflate_agreed = self.speaks_deflate
                    && metadata.compression.is_some_and(|codings| codings.iter().any(|c| c == DEFLATE));
                let (seen, campaign) = (metadata.seen, metadata.campaign);
                Ok(Event::Joined { peer_id: sender_id, seen, campaign })
            }
            (Side::Client, None, Message::Peer { sender_id, target_id, selected_protocol_version, peer_metadata }) => {
                if target_id != self.our_peer_id {
                    return Err(ProtocolError::violation("'peer' addressed to another peer"));
                }
                if selected_protocol_version != PROTOCOL_V1 {
                    return Err(ProtocolError {
                        code: ErrorCode::ProtocolVersionUnsupported,
                        message: format!("server selected protocol version {selected_protocol_version}"),
                    });
                }
                let metadata = peer_metadata.unwrap_or_default();
                match metadata.compression.as_deref() {
                    None | Some([]) => {}
                    Some([coding]) if self.speaks_deflate && coding == DEFLATE => self.start_compressing(),
                    Some(codings) => {
                        return Err(ProtocolError::violation(format!(
                            "the server chose the frame coding {codings:?}, which this client did not offer"
                        )))
                    }
                }
                self.their_peer_id = Some(sender_id.clone());
                self.peer_takes_whole = metadata.whole_documents == Some(true);
                let catch_up = metadata.catch_up.unwrap_or_default().iter().filter_map(|id| id.parse().ok()).collect();
                Ok(Event::Accepted {
                    peer_id: sender_id,
                    storage_id: metadata.storage_id,
                    catch_up,
                    catch_up_to: metadata.catch_up_to,
                })
            }
            (_, None, _) => Err(ProtocolError::violation("the handshake must come first")),
            (_, Some(_), Message::Join { .. } | Message::Peer { .. }) => {
                Err(ProtocolError::violation("the handshake happens once per connection"))
            }
            (_, Some(_), Message::Unknown) => Ok(Event::Ignored),
            (_, Some(peer), Message::Request { sender_id, target_id, document_id, data }) => {
                self.check_addressing(peer, &sender_id, &target_id)?;
                Ok(Event::Sync {
                    doc_id: parse_doc_id(&document_id)?,
                    kind: SyncKind::Request,
                    message: parse_sync(&data)?,
                })
            }
            (_, Some(peer), Message::Sync { sender_id, target_id, document_id, data }) => {
                self.check_addressing(peer, &sender_id, &target_id)?;
                Ok(Event::Sync {
                    doc_id: parse_doc_id(&document_id)?,
                    kind: SyncKind::Sync,
                    message: parse_sync(&data)?,
                })
            }
            (_, Some(peer), Message::DocUnavailable { sender_id, target_id, document_id }) => {
                self.check_addressing(peer, &sender_id, &target_id)?;
                Ok(Event::DocUnavailable { doc_id: parse_doc_id(&document_id)? })
            }
        }
    }

    fn check_addressing(&self, peer: &str, sender_id: &str, target_id: &str) -> Result<(), ProtocolError> {
        if sender_id != peer {
            return Err(ProtocolError::violation(format!("message from '{sender_id}' on the connection of '{peer}'")));
        }
        if target_id != self.our_peer_id {
            return Err(ProtocolError::violation(format!("message addressed to '{target_id}', not to this peer")));
        }
        Ok(())
    }

    /// Applies an inbound sync message to the document, updating this connection's sync state for it.
    ///
    /// # Errors
    /// Automerge refuses the changes (corrupt or inconsistent); the document is left as it was.
    pub fn apply(
        &mut self,
        doc_id: DocumentId,
        doc: &mut AutoCommit,
        message: sync::Message,
    ) -> Result<(), ProtocolError> {
        let state = self.sync_states.entry(doc_id).or_default();
        doc.sync()
            .receive_sync_message(state, message)
            .map_err(|error| ProtocolError::violation(format!("document {doc_id}: sync message refused: {error}")))
    }

    /// The next frame to send for this document, if there is anything to say.
    pub fn generate(&mut self, doc_id: DocumentId, doc: &mut AutoCommit) -> Option<Vec<u8>> {
        let message = self.next_message(doc_id, doc)?;
        Some(self.seal(&message))
    }

    /// As [`Session::generate`], but never a frame over the frame limit (once inflated, as the peer reads it).
    ///
    /// # Errors
    /// The message would exceed the frame limit (`document_too_large`): the session forgets the document, since
    /// its sync state now records changes as sent that never were, and nothing is compressed, so the frames before
    /// and after still decode. The driver sends the error and closes.
    pub fn generate_within_limit(
        &mut self,
        doc_id: DocumentId,
        doc: &mut AutoCommit,
    ) -> Result<Option<Vec<u8>>, ProtocolError> {
        let Some(message) = self.next_message(doc_id, doc) else { return Ok(None) };
        let encoded = message.encode();
        if encoded.len() > self.max_frame_bytes {
            self.forget(doc_id);
            return Err(ProtocolError {
                code: ErrorCode::DocumentTooLarge,
                message: format!(
                    "document {doc_id}: the reply would be a frame of {} bytes, over the limit of {} bytes",
                    encoded.len(),
                    self.max_frame_bytes
                ),
            });
        }
        Ok(Some(self.seal_encoded(encoded)))
    }

    /// The next message for this document, if there is anything to say; its frame is made by `seal`.
    fn next_message(&mut self, doc_id: DocumentId, doc: &mut AutoCommit) -> Option<Message> {
        let their_peer_id = self.their_peer_id.clone()?;
        let state = self.sync_states.entry(doc_id).or_default();
        let is_empty = doc.get_heads().is_empty() && state.shared_heads.is_empty();
        // Automerge sends the whole document, not the changes the other side lacks, once those are more than a third
        // of it. An insight's document has two or three changes, so any change is more than a third, and the server
        // would echo every new insight back whole with its decision. The whole document is for a peer that holds
        // nothing of it (`offer_whole`); a peer that holds some of it gets only what it lacks.
        let peer_holds_some = state.their_heads.as_ref().is_some_and(|heads| !heads.is_empty());
        let capabilities = if peer_holds_some {
            state.their_capabilities.replace(vec![sync::Capability::MessageV1])
        } else {
            state.their_capabilities.clone()
        };
        let message = doc.sync().generate_sync_message(state);
        state.their_capabilities = capabilities;
        let mut message = message?;
        if peer_holds_some {
            add_what_the_filter_hid(doc, state, &mut message);
        }
        let data = ByteBuf::from(message.encode());
        let (sender_id, target_id, document_id) = (self.our_peer_id.clone(), their_peer_id, doc_id.to_string());
        let message = if is_empty && self.side == Side::Client {
            Message::Request { sender_id, target_id, document_id, data }
        } else {
            Message::Sync { sender_id, target_id, document_id, data }
        };
        Some(message)
    }

    /// True once the other side has told us it holds exactly the heads we hold: nothing is left to exchange.
    pub fn is_in_step(&self, doc_id: DocumentId, doc: &mut AutoCommit) -> bool {
        let Some(state) = self.sync_states.get(&doc_id) else {
            return false;
        };
        let ours = doc.get_heads();
        state
            .their_heads
            .as_ref()
            .is_some_and(|theirs| theirs.len() == ours.len() && ours.iter().all(|head| theirs.contains(head)))
    }

    /// True if the other side is known to hold every change we hold (it may hold more).
    pub fn peer_has_all_of(&self, doc_id: DocumentId, doc: &mut AutoCommit) -> bool {
        let Some(state) = self.sync_states.get(&doc_id) else {
            return false;
        };
        let ours = doc.get_heads();
        !ours.is_empty() && ours.iter().all(|head| state.shared_heads.contains(head))
    }

    /// A `doc-unavailable` frame for a document we do not have or will not share.
    #[must_use]
    pub fn doc_unavailable_frame(&mut self, doc_id: DocumentId) -> Vec<u8> {
        let message = Message::DocUnavailable {
            sender_id: self.our_peer_id.clone(),
            target_id: self.their_peer_id.clone().unwrap_or_default(),
            document_id: doc_id.to_string(),
        };
        self.seal(&message)
    }

    /// An `error` frame; the sender closes the connection after it.
    #[must_use]
    pub fn error_frame(&mut self, code: ErrorCode, message: &str) -> Vec<u8> {
        let message = Message::Error {
            sender_id: Some(self.our_peer_id.clone()),
            target_id: self.their_peer_id.clone(),
            code: Some(code.as_str().to_owned()),
            message: message.to_owned(),
        };
        self.seal(&message)
    }

    /// Drops the sync state of a document (after `doc-unavailable`, or when the driver unloads it).
    pub fn forget(&mut self, doc_id: DocumentId) {
        self.sync_states.remove(&doc_id);
    }
}

fn parse_doc_id(text: &str) -> Result<DocumentId, ProtocolError> {
    text.parse().map_err(|error: crate::doc_id::InvalidDocumentId| ProtocolError::violation(error.to_string()))
}

fn parse_sync(data: &[u8]) -> Result<sync::Message, ProtocolError> {
    sync::Message::decode(data)
        .map_err(|error| ProtocolError::violation(format!("not an Automerge sync message: {error}")))
}

/// Completes a message with the changes the peer lacks that Automerge's Bloom filter hid.
///
/// Automerge picks the changes to send by testing each against the peer's Bloom filter of what it holds, sized for
/// about one false positive in a hundred: a change can test positive although the peer lacks it. The peer then asks for it, which costs a round
/// trip more; and when the connection ends first, the phone never hears the server's decision on an insight the
/// server has stored. When every head the peer announced is one we hold, the changes it lacks are known exactly (all
/// changes since those heads), so any the filter hid are added here, and recorded as sent as Automerge records its
/// own.
fn add_what_the_filter_hid(doc: &mut AutoCommit, state: &mut sync::State, message: &mut sync::Message) {
    let Some(their_heads) = state.their_heads.as_ref() else { return };
    if message.version != sync::MessageVersion::V1
        || !their_heads.iter().all(|head| doc.get_change_by_hash(head).is_some())
    {
        return;
    }
    let hidden: Vec<_> =
        doc.get_changes(their_heads).into_iter().filter(|change| !state.sent_hashes.contains(&change.hash())).collect();
    if hidden.is_empty() {
        return;
    }
    let mut chunks: Vec<Vec<u8>> = message.changes.iter().map(<[u8]>::to_vec).collect();
    for change in hidden {
        state.sent_hashes.insert(change.hash());
        chunks.push(change.raw_bytes().to_vec());
    }
    message.changes = chunks.into();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compression::Deflater;
    use crate::document::{
        read_insight, read_server_record, write_insight, write_server_record, ServerRecord, ServerStatus,
    };
    use crate::insight::tests::sample;
    use crate::Insight;

    fn handshake() -> (Session, Session) {
        let (client, server, _) =
            handshake_between(Session::new(Side::Client, "phone"), Session::new(Side::Server, "server"));
        (client, server)
    }

    /// Runs `join` and `peer` between two fresh sessions; returns them and the `peer` frame.
    fn handshake_between(mut client: Session, server: Session) -> (Session, Session, Vec<u8>) {
        let mut server = server.with_storage_id("lineage-1");
        let Event::Joined { peer_id, seen, .. } = server.receive(&client.join_frame()).unwrap() else {
            panic!("server did not accept the join");
        };
        assert_eq!((peer_id.as_str(), seen), ("phone", None));
        let reply = server.accept(&[], None);
        let Event::Accepted { peer_id, storage_id, catch_up, .. } = client.receive(&reply).unwrap() else {
            panic!("client not accepted")
        };
        assert_eq!((peer_id.as_str(), storage_id.as_deref()), ("server", Some("lineage-1")));
        assert!(catch_up.is_empty());
        (client, server, reply)
    }

    /// Delivers frames both ways until neither side has anything to say; returns the number of frames.
    fn run(
        client: &mut Session,
        server: &mut Session,
        doc_id: DocumentId,
        phone_doc: &mut AutoCommit,
        server_doc: &mut AutoCommit,
    ) -> usize {
        let mut n_frames = 0;
        loop {
            let mut progressed = false;
            if let Some(frame) = client.generate(doc_id, phone_doc) {
                n_frames += 1;
                progressed = true;
                let Event::Sync { message, .. } = server.receive(&frame).unwrap() else { panic!("expected sync") };
                server.apply(doc_id, server_doc, message).unwrap();
            }
            if let Some(frame) = server.generate(doc_id, server_doc) {
                n_frames += 1;
                progressed = true;
                let Event::Sync { message, .. } = client.receive(&frame).unwrap() else { panic!("expected sync") };
                client.apply(doc_id, phone_doc, message).unwrap();
            }
            if !progressed {
                return n_frames;
            }
        }
    }

    #[test]
    fn an_insight_reaches_the_server_and_the_reply_comes_back() {
        let (mut client, mut server) = handshake();
        let insight = sample();
        let doc_id = DocumentId::for_insight(insight.id);
        let mut phone_doc = AutoCommit::new();
        write_insight(&mut phone_doc, &insight).unwrap();
        let mut server_doc = AutoCommit::new();
        run(&mut client, &mut server, doc_id, &mut phone_doc, &mut server_doc);
        assert_eq!(read_insight(&server_doc), Ok(insight));
        assert!(client.is_in_step(doc_id, &mut phone_doc));
        assert!(client.peer_has_all_of(doc_id, &mut phone_doc));

        automerge::transaction::Transactable::put(&mut server_doc, automerge::ROOT, "server", "ack").unwrap();
        run(&mut client, &mut server, doc_id, &mut phone_doc, &mut server_doc);
        assert_eq!(phone_doc.get_heads(), server_doc.get_heads());
    }

    #[test]
    fn a_persisted_sync_state_resumes_without_resending_what_is_shared() {
        let (mut client, mut server) = handshake();
        let insight = sample();
        let doc_id = DocumentId::for_insight(insight.id);
        let mut phone_doc = AutoCommit::new();
        write_insight(&mut phone_doc, &insight).unwrap();
        let mut server_doc = AutoCommit::new();
        run(&mut client, &mut server, doc_id, &mut phone_doc, &mut server_doc);
        let (client_state, server_state) = (client.sync_state(doc_id).unwrap(), server.sync_state(doc_id).unwrap());

        // A new connection, resumed: nothing new on either side costs one message each way.
        let (mut client, mut server) = handshake();
        client.resume(doc_id, &client_state).unwrap();
        server.resume(doc_id, &server_state).unwrap();
        let n_resumed = run(&mut client, &mut server, doc_id, &mut phone_doc, &mut server_doc);
        assert!(n_resumed <= 2, "{n_resumed} frames for nothing new");
        assert!(client.is_in_step(doc_id, &mut phone_doc));
        let (mut fresh_client, mut fresh_server) = handshake();
        let n_fresh = run(&mut fresh_client, &mut fresh_server, doc_id, &mut phone_doc, &mut server_doc);
        assert!(n_resumed <= n_fresh, "resumed {n_resumed} frames, fresh {n_fresh}");
        assert!(client.resume(doc_id, b"not a state").is_err());
    }

    /// Syncs a fresh insight from a fresh client; returns the frames and bytes it took, and the server's copy.
    fn first_sync(insight: &Insight, offer_whole: bool, client_takes_whole: bool) -> (usize, usize, AutoCommit) {
        let (mut client, mut server) = handshake();
        client.peer_takes_whole = client_takes_whole;
        let doc_id = DocumentId::for_insight(insight.id);
        let mut phone_doc = AutoCommit::new();
        write_insight(&mut phone_doc, insight).unwrap();
        if offer_whole {
            client.offer_whole(doc_id, &mut phone_doc);
        }
        let first = client.generate(doc_id, &mut phone_doc).unwrap();
        let mut server_doc = AutoCommit::new();
        let Event::Sync { message, .. } = server.receive(&first).unwrap() else { panic!("expected sync") };
        server.apply(doc_id, &mut server_doc, message).unwrap();
        let n_frames = 1 + run(&mut client, &mut server, doc_id, &mut phone_doc, &mut server_doc);
        assert!(client.peer_has_all_of(doc_id, &mut phone_doc));
        (n_frames, first.len(), server_doc)
    }

    #[test]
    fn a_new_document_goes_whole_in_its_first_message_to_a_server_that_takes_it() {
        let insight = sample();
        let (n_asked, _, asked) = first_sync(&insight, false, true);
        let (n_whole, first_bytes, whole) = first_sync(&insight, true, true);
        assert_eq!(read_insight(&asked).as_ref(), Ok(&insight));
        assert_eq!(read_insight(&whole).as_ref(), Ok(&insight));
        assert!(n_whole < n_asked, "whole: {n_whole} frames, asked first: {n_asked}");
        assert!(first_bytes > 200, "the first message carries the document ({first_bytes} bytes)");

        // A server that did not say it takes whole documents (the JavaScript automerge-repo) is asked first.
        let (n_not_offered, ..) = first_sync(&insight, true, false);
        assert_eq!(n_not_offered, n_asked);
        // The `peer` frame says it, and the client hears it.
        let (client, _) = handshake();
        assert!(client.peer_takes_whole);
    }

    /// A new insight on the phone, offered whole, and the server's copy made from that first message.
    struct Offered {
        client: Session,
        server: Session,
        insight: Insight,
        doc_id: DocumentId,
        phone_doc: AutoCommit,
        server_doc: AutoCommit,
        /// The phone's first frame.
        first: Vec<u8>,
    }

    fn offered() -> Offered {
        let (mut client, mut server) = handshake();
        let insight = sample();
        let doc_id = DocumentId::for_insight(insight.id);
        let mut phone_doc = AutoCommit::new();
        write_insight(&mut phone_doc, &insight).unwrap();
        client.offer_whole(doc_id, &mut phone_doc);
        let first = client.generate(doc_id, &mut phone_doc).unwrap();
        let Event::Sync { message, .. } = server.receive(&first).unwrap() else { panic!("expected sync") };
        let mut server_doc = AutoCommit::new();
        server.apply(doc_id, &mut server_doc, message).unwrap();
        Offered { client, server, insight, doc_id, phone_doc, server_doc, first }
    }

    /// Automerge would send the whole document back (its changes to send are more than a third of it); the phone
    /// already holds all of it but the server's decision.
    #[test]
    fn the_server_answers_a_new_document_with_its_decision_alone() {
        let Offered { mut client, mut server, insight, doc_id, mut phone_doc, mut server_doc, first } = offered();
        let record = ServerRecord { status: ServerStatus::OutsideCoverage, processed_at: insight.captured_at };
        write_server_record(&mut server_doc, &record).unwrap();

        let reply = server.generate(doc_id, &mut server_doc).unwrap();
        let text = insight.text.as_bytes();
        assert!(!reply.windows(text.len()).any(|window| window == text), "the insight came back");
        assert!(reply.len() < first.len(), "reply of {} bytes to a document of {}", reply.len(), first.len());
        let Event::Sync { message, .. } = client.receive(&reply).unwrap() else { panic!("expected sync") };
        client.apply(doc_id, &mut phone_doc, message).unwrap();
        assert_eq!(read_server_record(&phone_doc), Some(record));
        assert!(client.is_in_step(doc_id, &mut phone_doc));
    }

    /// Automerge tests each change against the peer's Bloom filter of what it holds, a filter sized for about one
    /// false positive in a hundred. Here the server's decision is such a change, found by trying decisions
    /// until the phone's filter claims one: it still goes in the reply, so the phone is in step without asking.
    #[test]
    fn a_decision_the_phones_bloom_filter_claims_still_reaches_the_phone() {
        let Offered { mut client, mut server, doc_id, mut phone_doc, mut server_doc, .. } = offered();
        assert_eq!(server_doc.get_heads(), phone_doc.get_heads(), "the first message carried the insight");

        let phone_holds = sync::BloomFilter::from_hashes(phone_doc.get_changes(&[]).iter().map(|change| change.hash()));
        let mut server_doc = (0..100_000)
            .map(|attempt| {
                let mut candidate = server_doc.fork();
                automerge::transaction::Transactable::put(&mut candidate, automerge::ROOT, "attempt", attempt).unwrap();
                candidate
            })
            .find_map(|mut candidate| phone_holds.contains_hash(&candidate.get_heads()[0]).then_some(candidate))
            .expect("a false positive within 100,000 tries");

        let reply = server.generate(doc_id, &mut server_doc).unwrap();
        let Event::Sync { message, .. } = client.receive(&reply).unwrap() else { panic!("expected sync") };
        client.apply(doc_id, &mut phone_doc, message).unwrap();
        assert_eq!(phone_doc.get_heads(), server_doc.get_heads(), "the phone holds the decision");
        assert!(client.is_in_step(doc_id, &mut phone_doc), "nothing left to ask for");
    }

    #[test]
    fn the_server_announces_its_catch_up_in_the_handshake() {
        let catch_up = vec![DocumentId::random(), DocumentId::random()];
        let mut client = Session::new(Side::Client, "phone").with_seen(7).with_campaign("ab12");
        let mut server = Session::new(Side::Server, "server");
        let Event::Joined { seen, campaign, .. } = server.receive(&client.join_frame()).unwrap() else {
            panic!("no join")
        };
        assert_eq!((seen, campaign.as_deref()), (Some(7), Some("ab12")));
        let reply = server.accept(&catch_up, Some(12));
        let Event::Accepted { catch_up: announced, catch_up_to, .. } = client.receive(&reply).unwrap() else {
            panic!("no peer")
        };
        assert_eq!((announced, catch_up_to), (catch_up, Some(12)));
    }

    #[test]
    fn the_first_message_for_a_document_we_lack_is_a_request() {
        let (mut client, _server) = handshake();
        let frame = client.generate(DocumentId::random(), &mut AutoCommit::new()).unwrap();
        assert!(matches!(Message::decode(&frame).unwrap(), Message::Request { .. }));
    }

    #[test]
    fn protocol_errors_carry_stable_codes() {
        let mut server = Session::new(Side::Server, "server").with_max_frame_bytes(64);
        assert_eq!(server.receive(&[0u8; 65]).unwrap_err().code, ErrorCode::FrameTooLarge);
        assert_eq!(server.receive(b"\x01garbage").unwrap_err().code, ErrorCode::ProtocolViolation);
        let mut server = Session::new(Side::Server, "server");
        let sync_first = Message::Sync {
            sender_id: "phone".into(),
            target_id: "server".into(),
            document_id: DocumentId::random().to_string(),
            data: ByteBuf::new(),
        };
        assert_eq!(server.receive(&sync_first.encode()).unwrap_err().code, ErrorCode::ProtocolViolation);
        let old_join = Message::Join {
            sender_id: "phone".into(),
            supported_protocol_versions: Some(vec!["0".into()]),
            peer_metadata: None,
        };
        assert_eq!(server.receive(&old_join.encode()).unwrap_err().code, ErrorCode::ProtocolVersionUnsupported);

        let (_client, mut server) = handshake();
        let spoofed = Message::Sync {
            sender_id: "someone-else".into(),
            target_id: "server".into(),
            document_id: DocumentId::random().to_string(),
            data: ByteBuf::new(),
        };
        assert_eq!(server.receive(&spoofed.encode()).unwrap_err().code, ErrorCode::ProtocolViolation);
        let bad_data = Message::Sync {
            sender_id: "phone".into(),
            target_id: "server".into(),
            document_id: DocumentId::random().to_string(),
            data: ByteBuf::from(vec![0xde, 0xad]),
        };
        assert_eq!(server.receive(&bad_data.encode()).unwrap_err().code, ErrorCode::ProtocolViolation);
    }

    /// Handshakes a client and a server, each speaking `deflate-1` or not; returns them with the `peer` frame.
    fn handshake_speaking(client_speaks: bool, server_speaks: bool) -> (Session, Session, Vec<u8>) {
        let mut client = Session::new(Side::Client, "phone");
        let mut server = Session::new(Side::Server, "server");
        if client_speaks {
            client = client.with_compression();
        }
        if server_speaks {
            server = server.with_compression();
        }
        handshake_between(client, server)
    }

    #[test]
    fn frames_are_compressed_after_the_handshake_only_when_both_sides_speak_deflate() {
        for (client_speaks, server_speaks) in [(true, true), (true, false), (false, true), (false, false)] {
            let (mut client, mut server, peer) = handshake_speaking(client_speaks, server_speaks);
            let both = client_speaks && server_speaks;
            assert_eq!((client.is_compressed(), server.is_compressed()), (both, both));
            // `peer` itself is always plain CBOR.
            assert!(matches!(Message::decode(&peer), Ok(Message::Peer { .. })));

            let insights: Vec<Insight> = (0..5).map(|_| sample()).collect();
            let mut sizes = Vec::new();
            for insight in &insights {
                let doc_id = DocumentId::for_insight(insight.id);
                let mut phone_doc = AutoCommit::new();
                write_insight(&mut phone_doc, insight).unwrap();
                let frame = client.generate(doc_id, &mut phone_doc).unwrap();
                assert_eq!(Message::decode(&frame).is_ok(), !both, "plain CBOR exactly when not compressed");
                sizes.push(frame.len());
                let mut server_doc = AutoCommit::new();
                let Event::Sync { message, .. } = server.receive(&frame).unwrap() else { panic!("expected sync") };
                server.apply(doc_id, &mut server_doc, message).unwrap();
                run(&mut client, &mut server, doc_id, &mut phone_doc, &mut server_doc);
                assert_eq!(read_insight(&server_doc).as_ref(), Ok(insight));
                assert_eq!(phone_doc.get_heads(), server_doc.get_heads());
            }
            // Errors are coded the same way, and still read.
            let error = server.error_frame(ErrorCode::RateLimited, "slow down");
            let Event::RemoteError { code, .. } = client.receive(&error).unwrap() else { panic!("not an error") };
            assert_eq!(code, Some(ErrorCode::RateLimited));
            if both {
                // The ids the envelope repeats cost next to nothing after the first message.
                assert!(sizes[4] * 10 < sizes[0] * 9, "{sizes:?}");
            }
        }
    }

    #[test]
    fn a_compressed_frame_is_held_to_the_frame_limit_once_inflated_and_must_be_deflate() {
        let (_client, server, _) = handshake_speaking(true, true);
        let mut server = Session { max_frame_bytes: 4096, ..server };
        let bomb = Deflater::default().compress(&[0u8; 100_000]);
        assert!(bomb.len() < 4096);
        let error = server.receive(&bomb).unwrap_err();
        assert_eq!(error.code, ErrorCode::FrameTooLarge, "{error}");
        assert!(error.message.contains("4096"), "{error}");

        let (_client, mut server, _) = handshake_speaking(true, true);
        let error = server.receive(&[0xff; 40]).unwrap_err();
        assert_eq!(error.code, ErrorCode::ProtocolViolation, "{error}");
        // A plain CBOR message where a compressed frame is due is refused too, not read as it stands.
        let (_client, mut server, _) = handshake_speaking(true, true);
        let doc_id = DocumentId::random();
        let plain = Message::Request {
            sender_id: "phone".into(),
            target_id: "server".into(),
            document_id: doc_id.to_string(),
            data: ByteBuf::from(
                AutoCommit::new().sync().generate_sync_message(&mut sync::State::new()).unwrap().encode(),
            ),
        }
        .encode();
        assert!(server.receive(&plain).is_err());
    }

    #[test]
    fn a_server_that_chooses_a_coding_the_client_did_not_offer_is_refused() {
        let mut client = Session::new(Side::Client, "phone");
        let peer = Message::Peer {
            sender_id: "server".into(),
            target_id: "phone".into(),
            selected_protocol_version: PROTOCOL_V1.into(),
            peer_metadata: Some(PeerMetadata { compression: Some(vec![DEFLATE.into()]), ..PeerMetadata::default() }),
        };
        assert_eq!(client.receive(&peer.encode()).unwrap_err().code, ErrorCode::ProtocolViolation);
        let mut client = Session::new(Side::Client, "phone").with_compression();
        let peer = Message::Peer {
            sender_id: "server".into(),
            target_id: "phone".into(),
            selected_protocol_version: PROTOCOL_V1.into(),
            peer_metadata: Some(PeerMetadata { compression: Some(vec!["zstd".into()]), ..PeerMetadata::default() }),
        };
        assert_eq!(client.receive(&peer.encode()).unwrap_err().code, ErrorCode::ProtocolViolation);
    }

    #[test]
    fn a_reply_over_the_frame_limit_is_refused_before_it_is_made() {
        let (client, server, _) = handshake_speaking(true, true);
        let mut server = Session { max_frame_bytes: 4096, ..server };
        let mut client = client;
        let doc_id = DocumentId::random();
        // Letters that do not compress much, so the whole document is over the limit even as Automerge saves it.
        let mut state = 7_u64;
        let text: String = (0..20_000)
            .map(|_| {
                state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                char::from(b'a' + u8::try_from(state >> 59).unwrap() % 26)
            })
            .collect();
        let mut server_doc = AutoCommit::new();
        automerge::transaction::Transactable::put(&mut server_doc, automerge::ROOT, "text", text).unwrap();
        // The phone asks for the document, holding nothing of it: the server would send it whole.
        let ask = client.generate(doc_id, &mut AutoCommit::new()).unwrap();
        let Event::Sync { message, .. } = server.receive(&ask).unwrap() else { panic!("expected a request") };
        server.apply(doc_id, &mut server_doc, message).unwrap();
        let error = server.generate_within_limit(doc_id, &mut server_doc).unwrap_err();
        assert_eq!(error.code, ErrorCode::DocumentTooLarge, "{error}");
        assert!(!server.knows(doc_id), "the refused document's sync state is dropped");
        // The compressed stream is untouched: the next frame still decodes.
        let frame = server.error_frame(error.code, &error.message);
        let Event::RemoteError { code, .. } = client.receive(&frame).unwrap() else { panic!("not an error") };
        assert_eq!(code, Some(ErrorCode::DocumentTooLarge));
        // A small document goes as before.
        let mut small = AutoCommit::new();
        automerge::transaction::Transactable::put(&mut small, automerge::ROOT, "text", "hello").unwrap();
        assert!(server.generate_within_limit(doc_id, &mut small).unwrap().is_some());
    }

    #[test]
    fn remote_errors_surface_their_code() {
        let (mut client, mut server) = handshake();
        let frame = server.error_frame(ErrorCode::Unauthorized, "revoked");
        let Event::RemoteError { code, message } = client.receive(&frame).unwrap() else { panic!("not an error") };
        assert_eq!((code, message.as_str()), (Some(ErrorCode::Unauthorized), "revoked"));
    }
}
