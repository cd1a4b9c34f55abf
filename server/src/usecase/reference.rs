//! Reference data: boundary generations and the postcode directory (`grapevine boundaries …`, `grapevine postcodes
//! import`), and the operator's database chores (`migrate`, `backup`).

use std::path::Path;

use serde_json::json;

use super::{UseCaseError, UseCases};
use crate::audit::AuditOutcome;
use crate::domain::{Action, Principal};
use crate::geo::atlas::{stored_area, tag_in, Atlas, Whereabouts, DEFAULT_SET};
use crate::geo::boundaries::{Area, Boundaries};
use crate::store::{GenerationInfo, ImportedPostcodes, SqliteStore, TaggableInsight};

impl UseCases {
    /// Imports `areas` as the next generation of `set` and tags every stored insight in it.
    ///
    /// # Errors
    /// Refused; the areas cannot be indexed; the store fails.
    pub async fn import_boundaries(
        &self,
        principal: &Principal,
        set: &str,
        source: &str,
        areas: Vec<Area>,
    ) -> Result<GenerationInfo, UseCaseError> {
        let detail = json!({ "source": source, "areas": areas.len() });
        self.audited(principal, Action::ImportBoundaries, "boundaries.import", &format!("set:{set}"), detail, async {
            // A new database gets the bundled wards first, as the server would.
            let _ = Atlas::load(self.store.as_ref(), DEFAULT_SET).await?;
            let stored: Vec<_> = areas.iter().map(stored_area).collect();
            let boundaries = Boundaries::new(areas)?;
            let tagger = |insight: &TaggableInsight| tag_in(&boundaries, &Whereabouts::from(insight));
            Ok(self.store.add_generation(set, source, stored, &tagger).await?)
        })
        .await
    }

    /// Every boundary generation, oldest first (the bundled wards added on a new database, as the server would).
    ///
    /// # Errors
    /// Refused; the store fails.
    pub async fn boundary_generations(&self, principal: &Principal) -> Result<Vec<GenerationInfo>, UseCaseError> {
        self.authorize_audited(principal, Action::ImportBoundaries, "boundaries.list", "generations").await?;
        let _ = Atlas::load(self.store.as_ref(), DEFAULT_SET).await?;
        Ok(self.store.generations().await?)
    }

    /// Imports postcode centroids (`postcodes::read_postcodes` has read and checked them).
    ///
    /// # Errors
    /// Refused; the store fails.
    pub async fn import_postcodes(
        &self,
        principal: &Principal,
        source: &str,
        rows: &[(String, f64, f64)],
    ) -> Result<ImportedPostcodes, UseCaseError> {
        let detail = json!({ "source": source, "rows": rows.len() });
        self.audited(principal, Action::ImportPostcodes, "postcodes.import", "postcodes", detail, async {
            Ok(self.store.import_postcodes(rows).await?)
        })
        .await
    }

    /// The database's schema version, after opening has migrated it.
    ///
    /// # Errors
    /// The store fails.
    pub async fn schema_version(&self) -> Result<i64, UseCaseError> {
        Ok(self.store.schema_version().await?)
    }
}

/// `grapevine backup`: a consistent copy of a SQLite database, recorded in its own audit trail first (the copy holds
/// everything, people's words included).
///
/// # Errors
/// Not SQLite; the entry cannot be written; the copy fails.
pub async fn backup(principal: &Principal, sqlite_url: &str, to: &Path) -> Result<(), UseCaseError> {
    let store = std::sync::Arc::new(SqliteStore::open(sqlite_url).await?);
    let usecases = UseCases::new(store.clone());
    let target = to.display().to_string();
    usecases
        .audited(principal, Action::Backup, "database.backup", &target, json!({}), async {
            Ok(store.backup_to(to).await?)
        })
        .await
}

/// `grapevine restore`: replaces a SQLite database with a backup, then records the restore in the restored trail
/// (entries written after the backup was taken are gone with the rest of that data; `docs/audit.md`).
///
/// # Errors
/// Refused; the restore fails; the entry cannot be written.
pub async fn restore(principal: &Principal, from: &Path, sqlite_url: &str) -> Result<(), UseCaseError> {
    UseCases::authorize(principal, Action::Backup)?;
    SqliteStore::restore(from, sqlite_url).await?;
    let usecases = UseCases::new(std::sync::Arc::new(SqliteStore::open(sqlite_url).await?));
    let detail = json!({ "from": from.display().to_string() });
    usecases.record(principal, "database.restore", "database", AuditOutcome::Allowed, detail).await
}
