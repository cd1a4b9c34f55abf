//! The automerge-repo network protocol v1, as CBOR maps: one message per WebSocket binary frame.
//!
//! Field names and types follow the JavaScript automerge-repo 2.x (`senderId`, `targetId`, `documentId` are text,
//! `data` is a byte string, protocol versions are the text `"1"`). Unknown fields are ignored and unknown message
//! types decode to [`Message::Unknown`], so a newer peer's additions never break an older one. See
//! `docs/sync-protocol.md`.

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

/// The only protocol version this build speaks.
pub const PROTOCOL_V1: &str = "1";

/// What a peer says about itself in `join` and `peer`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerMetadata {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_ephemeral: Option<bool>,
    /// Grapevine's addition to `peer`: the documents the server will offer straight after the handshake (written by
    /// the collector's other devices since this one last caught up). Other peers ignore it.
    #[serde(default, rename = "grapevineCatchUp", skip_serializing_if = "Option::is_none")]
    pub catch_up: Option<Vec<String>>,
    /// In `peer`: the sequence number the phone has seen once it holds the catch-up documents.
    #[serde(default, rename = "grapevineCatchUpTo", skip_serializing_if = "Option::is_none")]
    pub catch_up_to: Option<i64>,
    /// In `join`, from Grapevine's SDK: the sequence number of the collector's writes this phone has durably seen.
    /// Peers that send none (the JavaScript client) get live changes only, no catch-up.
    #[serde(default, rename = "grapevineSeen", skip_serializing_if = "Option::is_none")]
    pub seen: Option<i64>,
    /// In `join`, from Grapevine's SDK: the fingerprint of the campaign document the phone holds (`""` for none), so
    /// the server announces the campaign in `grapevineCatchUp` only when it has changed.
    #[serde(default, rename = "grapevineCampaign", skip_serializing_if = "Option::is_none")]
    pub campaign: Option<String>,
    /// In `peer`, from Grapevine's server: a document new to the server may come whole in its first sync message
    /// (Automerge's v2 sync message), without first asking what the server has.
    #[serde(default, rename = "grapevineWholeDocuments", skip_serializing_if = "Option::is_none")]
    pub whole_documents: Option<bool>,
    /// In `join`, from Grapevine's SDK: the frame codings it reads (`["deflate-1"]`). In `peer`, from Grapevine's
    /// server: the one it chose, as a list of one; absent, frames stay plain CBOR. See `compression`.
    #[serde(default, rename = "grapevineCompression", skip_serializing_if = "Option::is_none")]
    pub compression: Option<Vec<String>>,
}

/// One protocol message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", rename_all_fields = "camelCase")]
pub enum Message {
    /// Client → server, first: who I am and which versions I speak.
    Join {
        sender_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        supported_protocol_versions: Option<Vec<String>>,
        #[serde(default)]
        peer_metadata: Option<PeerMetadata>,
    },
    /// Server → client: accepted, with the version chosen.
    Peer {
        sender_id: String,
        target_id: String,
        selected_protocol_version: String,
        #[serde(default)]
        peer_metadata: Option<PeerMetadata>,
    },
    /// Either way: something went wrong and the sender closes the connection. `code` is Grapevine's addition (a stable
    /// code from `codes`); automerge-repo peers ignore it and log `message`.
    Error {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sender_id: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        target_id: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        code: Option<String>,
        message: String,
    },
    /// "I do not have this document; send it if you may." `data` is an Automerge sync message.
    Request { sender_id: String, target_id: String, document_id: String, data: ByteBuf },
    /// An Automerge sync message for one document.
    Sync { sender_id: String, target_id: String, document_id: String, data: ByteBuf },
    /// "I do not have this document, or you may not have it": the two are indistinguishable on purpose.
    DocUnavailable { sender_id: String, target_id: String, document_id: String },
    /// Any other type (`ephemeral`, `remote-heads-changed`, …): ignored by Grapevine.
    #[serde(other)]
    Unknown,
}

/// A frame that is not a protocol message.
#[derive(Debug, thiserror::Error)]
#[error("frame is not an automerge-repo message: {0}")]
pub struct DecodeError(String);

impl Message {
    /// Encodes the message as one CBOR map.
    ///
    /// # Panics
    /// Never in practice: encoding into a `Vec` cannot fail for these types.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(64);
        ciborium::into_writer(self, &mut bytes).expect("encoding a message into memory cannot fail");
        bytes
    }

    /// Decodes one frame.
    ///
    /// # Errors
    /// A frame that is not CBOR, is not a map with a text `type`, or lacks a field its type requires.
    pub fn decode(frame: &[u8]) -> Result<Message, DecodeError> {
        ciborium::from_reader(frame).map_err(|error| {
            // ciborium's `Display` is its `Debug` (`Semantic(None, "…")`); a peer is told in words.
            DecodeError(match error {
                ciborium::de::Error::Io(_) => "the frame ends inside a value".to_owned(),
                ciborium::de::Error::Syntax(offset) => format!("not CBOR (at byte {offset})"),
                ciborium::de::Error::Semantic(_, message) => message,
                ciborium::de::Error::RecursionLimitExceeded => "values nested too deeply".to_owned(),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_round_trips() {
        let messages = [
            Message::Join {
                sender_id: "phone-1".into(),
                supported_protocol_versions: Some(vec!["1".into()]),
                peer_metadata: Some(PeerMetadata { is_ephemeral: Some(false), ..PeerMetadata::default() }),
            },
            Message::Peer {
                sender_id: "server".into(),
                target_id: "phone-1".into(),
                selected_protocol_version: "1".into(),
                peer_metadata: None,
            },
            Message::Error {
                sender_id: None,
                target_id: None,
                code: Some("frame_too_large".into()),
                message: "too big".into(),
            },
            Message::Request {
                sender_id: "a".into(),
                target_id: "b".into(),
                document_id: "doc".into(),
                data: ByteBuf::from(vec![1, 2, 3]),
            },
            Message::Sync {
                sender_id: "a".into(),
                target_id: "b".into(),
                document_id: "doc".into(),
                data: ByteBuf::from(vec![0x42]),
            },
            Message::DocUnavailable { sender_id: "a".into(), target_id: "b".into(), document_id: "doc".into() },
        ];
        for message in messages {
            assert_eq!(Message::decode(&message.encode()).unwrap(), message);
        }
    }

    /// A `join` exactly as the JavaScript client writes it: cbor-x emits 16-bit map headers and writes an absent
    /// `storageId` as CBOR `undefined` (0xf7).
    #[test]
    fn decodes_a_join_written_by_cbor_x() {
        let mut frame = vec![0xb9, 0x00, 0x04];
        let text = |frame: &mut Vec<u8>, s: &str| {
            let len = u8::try_from(s.len()).unwrap();
            if len < 24 {
                frame.push(0x60 + len);
            } else {
                frame.extend_from_slice(&[0x78, len]);
            }
            frame.extend_from_slice(s.as_bytes());
        };
        text(&mut frame, "type");
        text(&mut frame, "join");
        text(&mut frame, "senderId");
        text(&mut frame, "js-peer");
        text(&mut frame, "peerMetadata");
        frame.extend_from_slice(&[0xb9, 0x00, 0x02]);
        text(&mut frame, "storageId");
        frame.push(0xf7);
        text(&mut frame, "isEphemeral");
        frame.push(0xf4);
        text(&mut frame, "supportedProtocolVersions");
        frame.push(0x81);
        text(&mut frame, "1");
        let message = Message::decode(&frame).unwrap();
        assert_eq!(
            message,
            Message::Join {
                sender_id: "js-peer".into(),
                supported_protocol_versions: Some(vec!["1".into()]),
                peer_metadata: Some(PeerMetadata { is_ephemeral: Some(false), ..PeerMetadata::default() }),
            }
        );
    }

    #[test]
    fn unknown_types_and_fields_are_tolerated_but_garbage_is_not() {
        #[derive(Serialize)]
        struct Ephemeral<'a> {
            r#type: &'a str,
            #[serde(rename = "senderId")]
            sender_id: &'a str,
            count: u32,
        }
        let mut frame = Vec::new();
        ciborium::into_writer(&Ephemeral { r#type: "ephemeral", sender_id: "x", count: 3 }, &mut frame).unwrap();
        assert_eq!(Message::decode(&frame).unwrap(), Message::Unknown);

        assert!(Message::decode(&[]).is_err());
        assert!(Message::decode(&[0xff, 0x00, 0x13]).is_err());
        let mut no_data = Vec::new();
        ciborium::into_writer(
            &ciborium::Value::Map(vec![
                (ciborium::Value::Text("type".into()), ciborium::Value::Text("sync".into())),
                (ciborium::Value::Text("senderId".into()), ciborium::Value::Text("a".into())),
            ]),
            &mut no_data,
        )
        .unwrap();
        assert!(Message::decode(&no_data).is_err(), "a sync without its fields is refused");
    }

    #[test]
    fn a_refused_frame_is_described_in_words_not_in_the_decoder_s_debug_form() {
        let mut no_type = Vec::new();
        ciborium::into_writer(
            &ciborium::Value::Map(vec![(ciborium::Value::Text("senderId".into()), ciborium::Value::Text("a".into()))]),
            &mut no_type,
        )
        .unwrap();
        for (frame, said) in [
            (no_type.as_slice(), "missing field `type`"),
            (&[][..], "the frame ends inside a value"),
            (&[0x1c][..], "not CBOR"),
        ] {
            let message = Message::decode(frame).unwrap_err().to_string();
            assert!(message.contains(said), "{message}");
            assert!(!message.contains("Semantic") && !message.contains("Syntax("), "{message}");
        }
    }
}
