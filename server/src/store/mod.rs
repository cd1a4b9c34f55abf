//! Storage: the `Store` trait the rest of the server talks to, and the types it speaks in. Only this module knows SQL.
//!
//! `Store` is the sum of one trait per aggregate, each in a directory of its own with the trait and the statements
//! both backends run alike in its `mod.rs` and each backend's implementation beside it: `access` (`AccessStore`),
//! `documents` (`DocumentStore`), `generations` (`GenerationStore`), `rollup` (`RollupStore`, and the roll-up
//! arithmetic), `postcodes` (`PostcodeStore`), `people` (`PeopleStore`), `audit` (`AuditStore`), `insights` (`InsightStore`: the analysts' reading and triage) and `sessions`
//! (`SessionStore`: passwords, set-password links, browser sessions, sign-ins in progress); `DatabaseStore` (lineage, schema, pool) is here. Callers bring the
//! traits' methods into scope with `use crate::store::prelude::*;`.
//!
//! What an aggregate's two implementations may share lives once in its `mod.rs`: the statements (`$n` parameters),
//! rows read as plain structs (`sqlx::FromRow`, or a struct the backend fills with the columns whose types differ) and
//! the pure decisions on what a statement returned. What each still repeats is the sqlx call itself, on its own pool
//! and connection types: the backends stay concrete, with no generic executor or `AnyPool` standing in for both.
//!
//! Backends: `sqlite` (the embedded default) and `postgres` (production, several nodes); their files here hold the
//! store, opening and migrating, and (SQLite) backup and restore. Each owns its migrations under
//! `server/migrations/<backend>/`; both keep the same invariants:
//! - a document is stored as chunks (a snapshot plus appended changes) with a version counter; a write names the version
//!   it loaded and fails with `SaveError::Conflict` if another writer got there first, so no change and no decision is
//!   ever lost between nodes;
//! - the insight row and the roll-up delta commit in the same transaction as the document.

mod access;
mod audit;
pub(crate) mod documents;
mod generations;
pub mod insights;
mod people;
mod postcodes;
mod postgres;
pub mod rollup;
mod sessions;
mod sqlite;

use std::sync::Arc;

use anyhow::Context;
use grapevine_sync_proto::{DocumentId, ErrorCode};
use time::{Date, OffsetDateTime};

use rollup::Contribution;
use uuid::Uuid;

pub use access::AccessStore;
pub use audit::AuditStore;
pub use documents::DocumentStore;
pub use generations::GenerationStore;
pub use insights::InsightStore;
pub use people::{AddPersonError, PeopleStore, PersonInfo};
pub use postcodes::PostcodeStore;
pub use postgres::PostgresStore;
pub use rollup::RollupStore;
pub use sessions::{NewSessionRecord, PasswordLinkRecord, PendingSignIn, SessionRecord, SessionStore, SignInMethod};
pub use sqlite::SqliteStore;

/// The database an unconfigured server uses: a SQLite file in `./grapevine-data/`.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://grapevine-data/grapevine.db";

/// The roll-up key for insights that lie outside every area (or have no location).
pub const OUTSIDE_COVERAGE: &str = "";

pub use crate::domain::{Authenticated, Role};

/// A new device, as created by `grapevine device add`.
#[derive(Debug, Clone)]
pub struct NewDevice {
    pub device_id: Uuid,
    pub collector_id: Uuid,
}

/// A device as `grapevine device list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    pub device_id: Uuid,
    pub collector_id: Uuid,
    pub label: String,
    pub created_at: OffsetDateTime,
    pub revoked_at: Option<OffsetDateTime>,
    /// The invitation it enrolled with, if it did.
    pub invitation_id: Option<Uuid>,
}

/// An invitation as `grapevine invite list` shows it. The code itself is not stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvitationInfo {
    pub id: Uuid,
    pub label: String,
    pub uses: i64,
    pub uses_left: i64,
    pub expires_at: OffsetDateTime,
    pub created_at: OffsetDateTime,
    pub revoked_at: Option<OffsetDateTime>,
    /// Made before the invitation secret: its code is stored as a plain SHA-256, which a copy of the database could
    /// be searched for offline. Redeemable until it expires; revoke it to be rid of it sooner.
    pub legacy_hash: bool,
}

/// The hashes a typed invitation code is looked up under: keyed with the invitation secret (every invitation made
/// since it exists), and the plain SHA-256 invitations made before it were stored under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeHashes {
    pub keyed: String,
    pub legacy: String,
}

/// An API token as `grapevine token list` shows it. Neither the token nor its hash is part of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiTokenInfo {
    pub id: Uuid,
    /// A service account's own role, or the person's role now.
    pub role: Role,
    pub label: String,
    pub created_at: OffsetDateTime,
    pub revoked_at: Option<OffsetDateTime>,
    /// Refused from then on; `None` never expires.
    pub expires_at: Option<OffsetDateTime>,
    /// The email of the person whose token it is; `None` for a service account's.
    pub person_email: Option<String>,
}

/// What revoking a device, an invitation or an API token did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revoked {
    Now,
    /// It was revoked already; nothing changed.
    Already,
    /// Nothing has that id.
    Unknown,
}

impl Revoked {
    /// What a revocation that changed no row did: whether something has that id tells `Already` from `Unknown`.
    fn not_now(exists: bool) -> Self {
        if exists {
            Revoked::Already
        } else {
            Revoked::Unknown
        }
    }
}

/// Why an invitation code was not redeemed; each has its stable code.
#[derive(Debug, thiserror::Error)]
pub enum RedeemError {
    #[error("no invitation has this code")]
    Unknown,
    #[error("the invitation expired")]
    Expired,
    #[error("every use of the invitation has been taken")]
    UsedUp,
    #[error("the invitation was revoked")]
    Revoked,
    #[error(transparent)]
    Database(#[from] anyhow::Error),
}

impl RedeemError {
    /// The stable code of a refusal (`internal` for a database failure).
    #[must_use]
    pub fn code(&self) -> grapevine_sync_proto::ErrorCode {
        use grapevine_sync_proto::ErrorCode;
        match self {
            RedeemError::Unknown => ErrorCode::InvitationUnknown,
            RedeemError::Expired => ErrorCode::InvitationExpired,
            RedeemError::UsedUp => ErrorCode::InvitationUsedUp,
            RedeemError::Revoked => ErrorCode::InvitationRevoked,
            RedeemError::Database(_) => ErrorCode::Internal,
        }
    }
}

impl From<sqlx::Error> for RedeemError {
    fn from(error: sqlx::Error) -> Self {
        RedeemError::Database(error.into())
    }
}

/// What redeeming needs to check an invitation, read under the lock that serialises its redemptions.
pub(crate) struct InvitationState {
    pub id: Uuid,
    pub label: String,
    pub uses_left: i64,
    pub expires_at: OffsetDateTime,
    pub revoked: bool,
}

impl InvitationState {
    /// Whether it may be redeemed at `now`; the order of the checks decides which reason a person is told.
    pub(crate) fn check(&self, now: OffsetDateTime) -> Result<(), RedeemError> {
        if self.revoked {
            Err(RedeemError::Revoked)
        } else if now >= self.expires_at {
            Err(RedeemError::Expired)
        } else if self.uses_left <= 0 {
            Err(RedeemError::UsedUp)
        } else {
            Ok(())
        }
    }
}

/// A stored document with its owner and save counter.
#[derive(Debug, Clone)]
pub struct StoredDocument {
    pub collector_id: Uuid,
    /// Every chunk, concatenated in order: what `AutoCommit::load` takes.
    pub bytes: Vec<u8>,
    pub version: i64,
    /// How many chunks the document is stored as; the sync handler compacts when it grows.
    pub n_chunks: i64,
}

/// A document that was saved: the change feed every node's sync connections follow, so a collector's other devices
/// hear about it wherever they are connected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentChanged {
    pub doc_id: DocumentId,
    pub collector_id: Uuid,
    /// The connection that wrote it (it needs no telling).
    pub writer: Uuid,
}

/// How many changes a slow subscriber may fall behind before it misses some (it then catches up at its device's
/// next sync).
pub(crate) const CHANGE_FEED_CAPACITY: usize = 1024;

/// How a write stores a document.
#[derive(Debug, Clone)]
pub enum DocumentBytes {
    /// The whole document (`save()`): replaces every chunk. Used for new documents and to compact.
    Snapshot(Vec<u8>),
    /// Only the changes since the version loaded (`save_after`): appended as one chunk.
    Changes(Vec<u8>),
}

/// The server's decision about one insight document, as a row.
#[derive(Debug, Clone, PartialEq)]
pub struct InsightRow {
    pub id: Uuid,
    pub captured_at: Option<OffsetDateTime>,
    pub campaign: Option<String>,
    pub category: Option<String>,
    pub text: Option<String>,
    pub feeling_safe: Option<u8>,
    pub channel: Option<String>,
    /// The GPS fix: latitude, longitude, accuracy in metres.
    pub gps: Option<(f64, f64, f64)>,
    pub picked_area_code: Option<String>,
    pub postcode: Option<String>,
    /// The point the insight is tagged by in every generation (latitude, longitude): the GPS fix, the postcode's
    /// centroid, or the picked area's interior point.
    pub tag_point: Option<(f64, f64)>,
    pub outcome: Outcome,
    pub processed_at: OffsetDateTime,
    /// Its area in every boundary generation; empty when rejected.
    pub tags: Vec<AreaTag>,
}

impl InsightRow {
    /// How the insight was placed: by its GPS fix, else by its postcode, else by the area its collector picked.
    #[must_use]
    pub fn located_by(&self) -> Option<&'static str> {
        if self.gps.is_some() {
            Some("gps")
        } else if self.postcode.is_some() {
            Some("postcode")
        } else if self.picked_area_code.is_some() {
            Some("area")
        } else {
            None
        }
    }

    /// The row of a document no insight could be read from: only its id and the decision.
    #[must_use]
    pub fn without_content(id: Uuid, outcome: Outcome, processed_at: OffsetDateTime) -> Self {
        InsightRow {
            id,
            captured_at: None,
            campaign: None,
            category: None,
            text: None,
            feeling_safe: None,
            channel: None,
            gps: None,
            picked_area_code: None,
            postcode: None,
            tag_point: None,
            outcome,
            processed_at,
            tags: Vec::new(),
        }
    }

    /// Its parts in the roll-ups of every generation it is tagged in (none if it does not count).
    pub(crate) fn contributions(&self, collector_id: Uuid) -> Vec<Contribution> {
        let (Some(day), Some(category)) = (self.captured_at.map(OffsetDateTime::date), self.category.as_ref()) else {
            return Vec::new();
        };
        if !self.outcome.counts() {
            return Vec::new();
        }
        self.tags
            .iter()
            .map(|tag| Contribution {
                generation_id: tag.generation_id,
                area_code: tag.area_code.clone(),
                day,
                category: category.clone(),
                feeling_safe: self.feeling_safe.map(i64::from),
                channel: self.channel.clone(),
                collector_id,
            })
            .collect()
    }
}

/// Where an insight lies in one boundary generation.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct AreaTag {
    pub generation_id: i64,
    /// `OUTSIDE_COVERAGE` when in no area of the generation.
    pub area_code: String,
    /// The accuracy circle reaches a border, or the point stands for a postcode or a picked area.
    pub near_boundary: bool,
}

/// What re-tagging needs of a stored insight.
#[derive(Debug, Clone)]
pub struct TaggableInsight {
    pub tag_point: Option<(f64, f64)>,
    pub accuracy_m: Option<f64>,
    pub picked_area_code: Option<String>,
    pub postcode: Option<String>,
}

/// Tags a stored insight in a new generation: its area code (or `OUTSIDE_COVERAGE`) and whether it is near a border.
pub type Tagger<'a> = &'a (dyn Fn(&TaggableInsight) -> (String, bool) + Send + Sync);

/// A boundary generation as listed.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct GenerationInfo {
    pub id: i64,
    pub set_name: String,
    pub generation: i64,
    pub source: String,
    pub imported_at: String,
    pub n_areas: i64,
}

/// An area as stored: its geometry is a GeoJSON geometry (WGS84).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct StoredArea {
    pub code: String,
    pub name: String,
    pub geometry: String,
}

/// Counts summed over cells.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sums {
    pub n: i64,
    pub feeling_safe_sum: i64,
    pub feeling_safe_n: i64,
    /// Insights per channel, in `Channel::ALL` order.
    pub channels: [i64; 5],
}

/// One category of an area over a period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CategoryRollup {
    pub category: String,
    pub sums: Sums,
    /// Distinct collectors, when counted: for a period that is one calendar period, or for one area.
    pub contributors: Option<i64>,
}

/// One area over a period.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AreaRollup {
    pub area_code: String,
    pub all: Sums,
    /// Distinct collectors: exact when counted (see `RollupStore::rollup`), `None` when not.
    pub contributors: Option<i64>,
    pub by_category: Vec<CategoryRollup>,
}

/// One area's insight count in one category over a period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CategoryCount {
    pub area_code: String,
    pub category: String,
    pub n: i64,
}

/// One area's insight count in one category over one period of a trend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CategoryPoint {
    pub period_start: Date,
    pub category: String,
    pub n: i64,
}

/// One period of a series.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeriesPoint {
    pub period_start: Date,
    pub sums: Sums,
    pub contributors: i64,
}

pub use crate::domain::Outcome;

/// One save of a document and the insight extracted from it, committed together.
#[derive(Debug, Clone)]
pub struct DocumentWrite {
    pub doc_id: DocumentId,
    pub collector_id: Uuid,
    pub device_id: Uuid,
    /// The connection writing, for the change feed.
    pub writer: Uuid,
    pub bytes: DocumentBytes,
    /// The version loaded, or `None` for a new document: the write fails with `SaveError::Conflict` if another
    /// writer saved in between.
    pub expected_version: Option<i64>,
    pub insight: InsightRow,
}

/// Why a document write did not happen.
#[derive(Debug, thiserror::Error)]
pub enum SaveError {
    #[error("document was saved by another writer in between")]
    Conflict,
    /// The insight was tagged before a boundary generation the database now holds was added (another node imported
    /// it, or this one has not reloaded yet): reload the boundaries and decide again, so no insight misses a
    /// generation.
    #[error("a boundary generation was added since the insight was tagged")]
    StaleBoundaries,
    #[error(transparent)]
    Database(#[from] anyhow::Error),
}

pub use crate::domain::period::DayRange;

/// A connection pool's use at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolUsage {
    pub in_use: u32,
    pub idle: u32,
    /// The most connections the pool opens.
    pub max: u32,
}

impl PoolUsage {
    fn of<DB: sqlx::Database>(pool: &sqlx::Pool<DB>) -> PoolUsage {
        let (size, idle) = (pool.size(), u32::try_from(pool.num_idle()).unwrap_or(u32::MAX));
        PoolUsage { in_use: size.saturating_sub(idle), idle, max: pool.options().get_max_connections() }
    }
}

/// The newest migration a migrator holds.
fn latest_of(migrator: &sqlx::migrate::Migrator) -> i64 {
    migrator.iter().map(|migration| migration.version).max().unwrap_or(0)
}

/// The id of this database's lineage.
const STORAGE_ID: &str = "SELECT value FROM meta WHERE key = 'storage_id'";

/// The newest migration applied.
const SCHEMA_VERSION: &str = "SELECT COALESCE(MAX(version), 0) FROM _sqlx_migrations";

/// The database itself: its lineage, its schema and its connection pool.
#[async_trait::async_trait]
pub trait DatabaseStore: Send + Sync {
    /// The id of this database's lineage (new after every restore from backup).
    async fn storage_id(&self) -> anyhow::Result<String>;

    /// The newest migration applied.
    async fn schema_version(&self) -> anyhow::Result<i64>;

    /// The newest migration this build has for the backend: the schema is current when `schema_version` is this.
    fn latest_migration(&self) -> i64;

    /// How the connection pool is used now (for `/metrics`).
    fn pool_usage(&self) -> PoolUsage;
}

/// Everything the server stores: the sum of the aggregates' traits, each implemented by both backends. Anything that
/// implements them all is a `Store`.
pub trait Store:
    DatabaseStore
    + AccessStore
    + AuditStore
    + PeopleStore
    + DocumentStore
    + GenerationStore
    + InsightStore
    + RollupStore
    + PostcodeStore
    + SessionStore
    + std::fmt::Debug
    + Send
    + Sync
{
}

impl<T> Store for T where
    T: DatabaseStore
        + AccessStore
        + AuditStore
        + PeopleStore
        + DocumentStore
        + GenerationStore
        + InsightStore
        + RollupStore
        + PostcodeStore
        + SessionStore
        + std::fmt::Debug
        + Send
        + Sync
{
}

/// The store's traits, for calling its methods: `use crate::store::prelude::*;`.
pub mod prelude {
    pub use super::access::AccessStore;
    pub use super::audit::AuditStore;
    pub use super::documents::DocumentStore;
    pub use super::generations::GenerationStore;
    pub use super::insights::InsightStore;
    pub use super::people::PeopleStore;
    pub use super::postcodes::PostcodeStore;
    pub use super::rollup::RollupStore;
    pub use super::sessions::SessionStore;
    pub use super::{DatabaseStore, Store};
}

/// What an import of postcode centroids did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImportedPostcodes {
    /// Postcodes the database did not have.
    pub added: u64,
    /// Postcodes it had, whose centroid the import replaced.
    pub replaced: u64,
}

impl ImportedPostcodes {
    /// From the table's size before and after an import of `n_rows` distinct postcodes.
    pub(crate) fn from_counts(before: i64, after: i64, n_rows: usize) -> Self {
        let added = u64::try_from(after - before).unwrap_or(0);
        ImportedPostcodes { added, replaced: (n_rows as u64).saturating_sub(added) }
    }
}

/// A postcode as stored and looked up: upper case, one space before the inward code ("st4 2de" → "ST4 2DE").
#[must_use]
pub fn normalise_postcode(text: &str) -> String {
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect::<String>().to_uppercase();
    if compact.len() > 3 {
        let (outward, inward) = compact.split_at(compact.len() - 3);
        format!("{outward} {inward}")
    } else {
        compact
    }
}

/// Opens the store a database URL names, creating and migrating it as needed.
///
/// # Errors
/// An unsupported URL scheme, a database that cannot be opened or migrated, or one whose schema is newer than this
/// build.
pub async fn open(database_url: &str) -> anyhow::Result<Arc<dyn Store>> {
    if database_url.starts_with("sqlite:") {
        let store = SqliteStore::open(database_url).await.with_context(|| format!("opening {database_url}"))?;
        return Ok(Arc::new(store));
    }
    if database_url.starts_with("postgres:") || database_url.starts_with("postgresql:") {
        let store = PostgresStore::open(database_url).await.with_context(|| "opening the PostgreSQL database")?;
        return Ok(Arc::new(store));
    }
    let shown = crate::database_url::DatabaseUrl::from(database_url);
    anyhow::bail!("unsupported database URL '{shown}': expected sqlite://PATH or postgres://…")
}

/// Refuses a database migrated by a newer Grapevine: its schema may mean things this build does not know.
///
/// # Errors
/// The database has a migration this build does not have.
pub(crate) fn check_not_newer(applied: Option<i64>, migrator: &sqlx::migrate::Migrator) -> anyhow::Result<()> {
    let known = migrator.iter().map(|migration| migration.version).max().unwrap_or(0);
    match applied {
        Some(applied) if applied > known => anyhow::bail!(
            "the database's schema is at migration {applied}, newer than this grapevine knows (up to {known}): \
             run a newer grapevine, or restore a backup taken before the upgrade"
        ),
        _ => Ok(()),
    }
}

/// The newest generation the batch's insights were tagged in (every counted insight is tagged in every generation
/// its server knew of), or `None` when none is tagged.
pub(crate) fn tagged_up_to(writes: &[DocumentWrite]) -> Option<i64> {
    writes.iter().flat_map(|write| write.insight.tags.iter().map(|tag| tag.generation_id)).max()
}

/// Refuses a save that names one document twice: its writes could not both hold the version they claim.
pub(crate) fn ensure_distinct(writes: &[DocumentWrite]) -> Result<(), SaveError> {
    let mut seen = std::collections::HashSet::with_capacity(writes.len());
    match writes.iter().find(|write| !seen.insert(write.doc_id)) {
        Some(twice) => Err(SaveError::Database(anyhow::anyhow!("document {} appears twice in one save", twice.doc_id))),
        None => Ok(()),
    }
}

/// How an outcome is kept in the insight's row; only the store knows its columns.
impl Outcome {
    /// The stored columns: status, area code, rejection code and message.
    pub(crate) fn columns(&self) -> (&'static str, Option<&str>, Option<&str>, Option<&str>) {
        match self {
            Outcome::Filed { area_code } => (self.status(), Some(area_code.as_str()), None, None),
            Outcome::Rejected { code, message } => (self.status(), None, Some(code.as_str()), Some(message.as_str())),
            Outcome::OutsideCoverage | Outcome::Withdrawn => (self.status(), None, None, None),
        }
    }

    /// Whether a stored status counts in the roll-ups.
    #[must_use]
    pub(crate) fn status_counts(status: &str) -> bool {
        Outcome::COUNTED_STATUSES.contains(&status)
    }

    /// Rebuilds an outcome from its stored columns. A rejection code the table no longer has (none is ever removed)
    /// reads as `internal`, its message kept.
    pub(crate) fn from_columns(
        status: &str,
        area_code: Option<String>,
        code: Option<String>,
        message: Option<String>,
    ) -> Outcome {
        match status {
            "filed" => Outcome::Filed { area_code: area_code.unwrap_or_default() },
            "outside_coverage" => Outcome::OutsideCoverage,
            "withdrawn" => Outcome::Withdrawn,
            _ => Outcome::Rejected {
                code: code.as_deref().and_then(ErrorCode::parse).unwrap_or(ErrorCode::Internal),
                message: message.unwrap_or_default(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `status IN (…)` in the store's SQL names exactly the statuses `Outcome::COUNTED_STATUSES` does, so the
    /// filters and `Outcome::counts` cannot drift apart.
    #[test]
    fn every_sql_filter_on_status_names_the_counted_outcomes() {
        let quoted: Vec<String> = Outcome::COUNTED_STATUSES.iter().map(|status| format!("'{status}'")).collect();
        let wanted = format!("status IN ({})", quoted.join(", "));
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/store");
        let mut pending = vec![root];
        let mut n_filters = 0;
        while let Some(path) = pending.pop() {
            if path.is_dir() {
                pending.extend(std::fs::read_dir(&path).unwrap().map(|entry| entry.unwrap().path()));
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for piece in text.split("status IN (").skip(1) {
                // A filter lists quoted statuses; this test's own words and `format!` do not.
                if !piece.starts_with('\'') {
                    continue;
                }
                let filter = format!("status IN ({}", &piece[..=piece.find(')').unwrap()]);
                assert_eq!(filter, wanted, "{}", path.display());
                n_filters += 1;
            }
        }
        assert!(n_filters >= 4, "the filters were found ({n_filters})");
    }

    #[test]
    fn an_outcome_reads_back_from_its_columns() {
        for outcome in [
            Outcome::Filed { area_code: "E05008737".into() },
            Outcome::OutsideCoverage,
            Outcome::Rejected { code: ErrorCode::InsightAreaUnknown, message: "no such area".into() },
            Outcome::Withdrawn,
        ] {
            let (status, area, code, message) = outcome.columns();
            let read =
                Outcome::from_columns(status, area.map(Into::into), code.map(Into::into), message.map(Into::into));
            assert_eq!(read, outcome);
            assert_eq!(Outcome::status_counts(status), outcome.counts());
        }
    }
}
