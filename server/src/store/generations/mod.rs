//! Boundary generations: listing them and their areas, and importing a new one (tagging every stored insight in it
//! and building its roll-ups). The trait, and the statements both backends run alike.

pub(super) mod postgres;
pub(super) mod sqlite;

use sqlx::{ColumnIndex, Decode, Row, Type};

use super::{GenerationInfo, StoredArea, Tagger};

// The statements both backends run as they are (`$n` parameters; see `store::sqlite`'s test of how SQLite binds them).

/// The id of the newest generation of any set, if any: what a write's tags are checked against.
pub(super) const NEWEST_GENERATION_ID: &str = "SELECT MAX(id) FROM boundary_generations";

/// The areas of generation `$1`, by code (read by `stored_area`).
const GENERATION_AREAS: &str = "SELECT code, name, geometry FROM boundary_areas WHERE generation_id = $1 ORDER BY code";

/// The number the next generation of set `$1` takes.
const NEXT_GENERATION: &str = "SELECT COALESCE(MAX(generation), 0) + 1 FROM boundary_generations WHERE set_name = $1";

/// The oldest generation whose roll-ups a migration left to be rebuilt, if any.
const NEXT_PENDING_ROLLUP: &str = "SELECT generation_id FROM rollups_pending ORDER BY generation_id LIMIT 1";

/// Marks the roll-ups of generation `$1` rebuilt.
const PENDING_ROLLUP_DONE: &str = "DELETE FROM rollups_pending WHERE generation_id = $1";

/// A generation as listed, from a row with its columns (the backends spell `imported_at` differently).
fn generation_info<R>(row: &R) -> GenerationInfo
where
    R: Row,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    &'static str: ColumnIndex<R>,
{
    GenerationInfo {
        id: row.get("id"),
        set_name: row.get("set_name"),
        generation: row.get("generation"),
        source: row.get("source"),
        imported_at: row.get("imported_at"),
        n_areas: row.get("n_areas"),
    }
}

/// An area from a row of `GENERATION_AREAS`.
fn stored_area<R>(row: &R) -> StoredArea
where
    R: Row,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    &'static str: ColumnIndex<R>,
{
    StoredArea { code: row.get("code"), name: row.get("name"), geometry: row.get("geometry") }
}

/// Boundary generations and their areas.
#[async_trait::async_trait]
pub trait GenerationStore: Send + Sync {
    /// The id of the newest generation of any set (`None` before the first): what a node polls to learn of an
    /// import elsewhere.
    async fn newest_generation_id(&self) -> anyhow::Result<Option<i64>>;

    /// The boundary generations, oldest first.
    async fn generations(&self) -> anyhow::Result<Vec<GenerationInfo>>;

    /// The areas of a generation, by code.
    async fn generation_areas(&self, generation_id: i64) -> anyhow::Result<Vec<StoredArea>>;

    /// Adds the next generation of a boundary set and tags every stored insight in it (with `tagger`), building its
    /// roll-ups, in one transaction: the import happens whole or not at all.
    async fn add_generation(
        &self,
        set_name: &str,
        source: &str,
        areas: Vec<StoredArea>,
        tagger: Tagger<'_>,
    ) -> anyhow::Result<GenerationInfo>;

    /// Adds generation 1 of a set if the set has no generation yet (the bundled wards on a new database); whether it
    /// did.
    async fn add_first_generation(
        &self,
        set_name: &str,
        source: &str,
        areas: Vec<StoredArea>,
        tagger: Tagger<'_>,
    ) -> anyhow::Result<bool>;
}
