//! The Grapevine server: it accepts phones on `/sync`, stores every insight document, extracts and validates the
//! insight, geotags it into an area, keeps the neighbourhood roll-up current, and answers analysts over HTTP.
//!
//! # Layout
//! - `cli`: the `grapevine` command line (`serve`, `migrate`, `backup`, `restore`, `device`, `invite`, `user`, `token`,
//!   `boundaries`, `postcodes`, `audit`), acting as the operator through `usecase`.
//! - `app`: state, router, listener and graceful shutdown; `Application::build` binds port 0 for tests.
//! - `sync`: the `/sync` WebSocket driver around the sans-IO session from `grapevine-sync-proto`: frames, the session,
//!   rate limits, the change feed and timeouts; each document message goes to `ingest::Service`.
//! - `database_url`: `DatabaseUrl`, a database URL whose `Debug` and `Display` redact its password.
//! - `db_lock`: the lock file beside a SQLite database: one server per file, no restore under a running one.
//! - `group_commit`: one writer task per node committing every connection's document writes in batches.
//! - `domain`: the types above the store: `Principal`, `Role`, `Scope`, `Action` and which role may take which.
//! - `ingest`: how a stored document changes: `ingest::decide`, what a changed insight document means (extract,
//!   validate, geotag; pure), and `ingest::Service`, the one load → authorise → apply → decide → save → retry loop
//!   the sync, the campaign and (later) erasure and re-processing go through.
//! - `geo`: where things are: `geo::boundaries` (areas, the R-tree and point → area), `geo::atlas` (every boundary
//!   generation in memory, the tagging rule, `near_boundary`, scopes' `areas_within`, the reload),
//!   `geo::boundary_files` (GeoJSON, KML/KMZ and police.uk files; repairs, overlaps and gaps) and `geo::postcodes`
//!   (an ONS Postcode Directory CSV).
//! - `campaign`: publishing the campaign (categories, prompts, areas) as a read-only document phones sync down,
//!   through `ingest::Service::publish`.
//! - `store`: `Store`, the sum of one trait per aggregate (access, audit, documents, generations, people, postcodes,
//!   roll-ups), each with its SQLite and PostgreSQL implementation side by side; the only module that knows SQL.
//! - `audit`: the audit trail's entries, their hash chain and its verification (docs/audit.md).
//! - `auth`: bearer tokens, made and hashed; enrolling a phone with an invitation.
//! - `people`: the rules for people and their API tokens (an email, a role, a scope granted, an expiry), which the
//!   use cases apply.
//! - `invitations`: invitation codes (made, normalised, hashed), validities and the enrol link.
//! - `qr`: QR codes for invitation cards, as SVG and PNG.
//! - `http`: the analyst API, the enrolment endpoint and the one error type.
//! - `web`: the pages people use in a browser (sign-in, their account, people, the audit trail): another adapter of
//!   the one door, templates checked at compile time (`server/templates/`), no script.
//! - `metrics`: the Prometheus metrics (`GET /metrics`), recorded with one-line calls from anywhere.
//! - `readiness`: `GET /readyz`, each check named.
//! - `serve_loop`: the accept loop: hyper's HTTP/1 with a header-read timeout, a per-address connection cap.
//! - `telemetry`: log format, request ids and the per-request span and log line (the matched route, never the URI).
//! - `usecase`: the one door: one method per action, taking the acting `Principal`, checking it, then calling the
//!   store. HTTP, sync and the CLI are adapters around it.
//! - `export`: the export files (CSV, GeoJSON, GeoPackage, XLSX; the roll-up table): their columns and one writer
//!   per format, streaming rows from the store to the client in batches (docs/exports.md).
//! - `fuzzing`: entry points for `fuzz/` and the corpus replay.

pub mod app;
pub mod audit;
pub mod auth;
pub mod campaign;
pub mod cli;
pub mod database_url;
pub mod db_lock;
pub mod domain;
pub mod export;
pub mod fuzzing;
pub mod geo;
pub mod group_commit;
pub mod http;
pub mod identity;
pub mod ingest;
pub mod invitations;
pub mod metrics;
pub mod people;
pub mod qr;
pub mod readiness;
pub mod serve_loop;
pub mod store;
pub mod sync;
pub mod telemetry;
pub mod usecase;
pub mod web;

pub use app::{Application, ServeConfig};

/// The allocator of every program built on this library (the `grapevine` binary, and the test and benchmark
/// builds of it, so what is measured is what ships): mimalloc, which frees on one thread what another allocated
/// without the lock glibc's allocator takes there. An export makes its rows on the thread reading the database and
/// frees them on the one writing the file (docs/benchmarks.md, issue 18).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
