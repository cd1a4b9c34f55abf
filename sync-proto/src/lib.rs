//! Grapevine's shared core: the insight data model, its validation, how it lives in an Automerge document, and a
//! sans-IO engine for the automerge-repo network protocol v1. The phone SDK and the server both build on it; it does
//! no I/O of its own (no sockets, no files, no clock except where a caller passes a time in).
//!
//! # Layout
//! - `codes`: the one table of stable error codes shared by the protocol, the API and the SDK.
//! - `campaign`: campaigns and the bundled default, "Community safety — Police and Crime Plan", in English and Welsh.
//! - `campaign_doc`: the campaign as a read-only document phones sync down (categories, prompts, areas).
//! - `insight`: the `Insight` type and the validation rules both ends run.
//! - `doc_id`: document identifiers, base58check as automerge-repo spells them.
//! - `document`: an insight's Automerge document layout, and the server's record written back into it.
//! - `wire`: the protocol's CBOR messages.
//! - `guard`: bounds on what a document may become, checked on its encoded bytes before Automerge unpacks them.
//! - `compression`: the `deflate-1` coding of frames after the handshake, when both sides take it.
//! - `session`: the per-connection engine (handshake, per-document sync state).
//! - `simulation` (tests only): property tests on a simulated network with faults.

pub mod campaign;
pub mod campaign_doc;
pub mod codes;
pub mod compression;
pub mod doc_id;
pub mod document;
pub mod guard;
pub mod insight;
pub mod session;
#[cfg(test)]
mod simulation;
pub mod wire;

pub use automerge;
pub use codes::ErrorCode;
pub use doc_id::DocumentId;
pub use insight::{Channel, Insight, InsightChanges, InvalidInsight, Location};
