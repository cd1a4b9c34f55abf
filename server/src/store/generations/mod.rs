//! Boundary generations: listing them and their areas, and importing a new one (tagging every stored insight in it
//! and building its roll-ups). The trait, and the statements both backends run alike.

pub(super) mod postgres;
pub(super) mod sqlite;

use anyhow::Context;

use super::{GenerationInfo, StoredArea, Tagger};

// The statements both backends run as they are (`$n` parameters; see `store::sqlite`'s test of how SQLite binds them).

/// The id of the newest generation of any set, if any: what a write's tags are checked against.
pub(super) const NEWEST_GENERATION_ID: &str = "SELECT MAX(id) FROM boundary_generations";

/// The areas of generation `$1`, by code.
const GENERATION_AREAS: &str = "SELECT code, name, geometry FROM boundary_areas WHERE generation_id = $1 ORDER BY code";

/// The number the next generation of set `$1` takes.
const NEXT_GENERATION: &str = "SELECT COALESCE(MAX(generation), 0) + 1 FROM boundary_generations WHERE set_name = $1";

/// The oldest generation whose roll-ups a migration left to be rebuilt, if any.
const NEXT_PENDING_ROLLUP: &str = "SELECT generation_id FROM rollups_pending ORDER BY generation_id LIMIT 1";

/// Marks the roll-ups of generation `$1` rebuilt.
const PENDING_ROLLUP_DONE: &str = "DELETE FROM rollups_pending WHERE generation_id = $1";

/// The generations, oldest first, with `imported_at` the expression that reads the import time as RFC 3339 text
/// (the backends store it as different types).
fn list_generations(imported_at: &str) -> String {
    format!(
        "SELECT g.id, g.set_name, g.generation, g.source, {imported_at} AS imported_at,
                (SELECT COUNT(*) FROM boundary_areas AS a WHERE a.generation_id = g.id) AS n_areas
         FROM boundary_generations AS g ORDER BY g.id"
    )
}

/// What importing a set's first generation found when the set has one already: its generation, not added.
fn set_has_generation(generations: Vec<GenerationInfo>, set_name: &str) -> anyhow::Result<(GenerationInfo, bool)> {
    let existing = generations.into_iter().find(|info| info.set_name == set_name);
    Ok((existing.context("the set has a generation")?, false))
}

/// A generation just imported, with its number in its set and its import time as listed: added.
fn imported_generation(
    id: i64,
    set_name: &str,
    generation: i64,
    source: &str,
    imported_at: String,
    n_areas: usize,
) -> anyhow::Result<(GenerationInfo, bool)> {
    let n_areas = i64::try_from(n_areas)?;
    Ok((
        GenerationInfo {
            id,
            set_name: set_name.to_owned(),
            generation,
            source: source.to_owned(),
            imported_at,
            n_areas,
        },
        true,
    ))
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
