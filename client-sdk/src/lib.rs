//! The Grapevine phone SDK: capture insights offline into a durable local store, sync them when a connection comes,
//! and see what happened to each.
//!
//! ```no_run
//! # async fn example() -> Result<(), grapevine_client_sdk::SdkError> {
//! use grapevine_client_sdk::{Channel, Draft, Location, Store};
//! let store = Store::open("phone-data").await?;
//! store
//!     .capture(Draft {
//!         category: "road-safety".into(),
//!         text: "Cars race past the school gate".into(),
//!         feeling_safe: Some(2),
//!         location: Location::Gps { lat: 53.02, lon: -2.17, accuracy_m: 10.0 },
//!         channel: Channel::Pupil,
//!         captured_at: None,
//!         campaign: None,
//!     })
//!     .await?;
//! let report = grapevine_client_sdk::sync(&store, "ws://127.0.0.1:8080/sync", "gvd_…").await?;
//! println!("sent {}", report.sent);
//! # Ok(()) }
//! ```
//!
//! # Layout
//! - `store`: the SQLite store: `capture`, `edit`, `withdraw`, `list`, statuses, the kept enrolment.
//! - `engine`: the background sync engine (`SyncEngine`): on demand, on a schedule, on network-up; backoff, progress.
//! - `enrol`: redeeming an invitation code for a device token (`enrol`), and syncing with it (`sync_enrolled`).
//! - `sync`: the WebSocket sync client on the sans-IO session from `grapevine-sync-proto`.
//! - `tls`: TLS for `https://` and `wss://` servers (Mozilla's roots, and any the app adds).
//! - `error`: `SdkError`, carrying the stable codes the server sends.
//! - `cli`: the `grapevine-collect` command line (`main.rs` only calls `cli::main`).

pub mod cli;
pub mod engine;
pub mod enrol;
pub mod error;
pub mod store;
pub mod sync;
pub mod tls;

pub use engine::{EngineConfig, EngineEvent, SyncEngine, Trigger};
pub use enrol::{enrol, sync_enrolled, Enrolment};
pub use error::SdkError;
pub use grapevine_sync_proto::campaign_doc::{AreaEntry, CampaignSheet, CategoryEntry, Text};
pub use grapevine_sync_proto::{Channel, ErrorCode, InsightChanges, Location};
pub use store::{Draft, Language, Listed, Status, Store};
pub use sync::{sync, sync_documents, sync_with_progress, DocOutcome, SyncConnection, SyncReport, Traffic};
pub use tls::trust_root_certificates;
