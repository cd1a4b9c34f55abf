//! Postcode centroids: looking one up, and importing them. The trait, and the statements both backends run alike.

mod postgres;
mod sqlite;

use super::ImportedPostcodes;

// The statements both backends run as they are (`$n` parameters; see `store::sqlite`'s test of how SQLite binds them).

/// The centroid of postcode `$1`.
const POSTCODE_CENTROID: &str = "SELECT lat, lon FROM postcodes WHERE postcode = $1";

/// How many postcodes are stored: counted before and after an import, inside its transaction.
const POSTCODE_COUNT: &str = "SELECT COUNT(*) FROM postcodes";

/// Postcode centroids, for insights located by postcode.
#[async_trait::async_trait]
pub trait PostcodeStore: Send + Sync {
    /// The centroid (latitude, longitude) of a postcode, in the normalised form `normalise_postcode` gives.
    async fn postcode_centroid(&self, postcode: &str) -> anyhow::Result<Option<(f64, f64)>>;

    /// Adds or replaces postcode centroids, in one transaction. Each postcode at most once in `rows`.
    async fn import_postcodes(&self, rows: &[(String, f64, f64)]) -> anyhow::Result<ImportedPostcodes>;
}
