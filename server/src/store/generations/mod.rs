//! Boundary generations: listing them and their areas, and importing a new one (tagging every stored insight in it
//! and building its roll-ups). The trait, and the statements both backends run alike.

pub(super) mod postgres;
pub(super) mod sqlite;

use super::{GenerationInfo, StoredArea, Tagger};

/// The id of the newest generation of any set, if any: what a write's tags are checked against.
pub(super) const NEWEST_GENERATION_ID: &str = "SELECT MAX(id) FROM boundary_generations";

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
