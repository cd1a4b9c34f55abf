//! Ingest: how a stored document changes on the server, whoever changes it.
//!
//! - `decide`: what a changed insight document means (extract, validate, geotag), as the row to store and the record
//!   to write back into the document. Pure: no I/O.
//! - `service`: the one loop every change goes through, `Service`: load → authorise → apply the change → decide →
//!   save → again if another writer saved first or a boundary generation arrived. A device's sync message (`sync`)
//!   and the published campaign (`campaign`) go through it; erasure and re-processing are meant to as well.

mod decide;
mod service;

pub use decide::{decide, is_withdrawn, postcode_of, withdrawn, Decision};
pub use service::{
    document_work, process_actor, Access, Author, Change, Changed, DocGuard, DocLocks, Service, Settled,
    COMPACT_AT_CHUNKS,
};
