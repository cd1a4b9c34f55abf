//! `PostcodeStore` on SQLite.

use sqlx::Row;

use crate::store::prelude::*;
use crate::store::{ImportedPostcodes, SqliteStore};

#[async_trait::async_trait]
impl PostcodeStore for SqliteStore {
    async fn postcode_centroid(&self, postcode: &str) -> anyhow::Result<Option<(f64, f64)>> {
        let row = sqlx::query(super::POSTCODE_CENTROID).bind(postcode).fetch_optional(&self.pool).await?;
        Ok(row.map(|row| (row.get("lat"), row.get("lon"))))
    }

    async fn import_postcodes(&self, rows: &[(String, f64, f64)]) -> anyhow::Result<ImportedPostcodes> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        // Counted inside the transaction, so the difference is this import's alone.
        let before: i64 = sqlx::query_scalar(super::POSTCODE_COUNT).fetch_one(&mut *tx).await?;
        for (postcode, lat, lon) in rows {
            sqlx::query(
                "INSERT INTO postcodes (postcode, lat, lon) VALUES (?1, ?2, ?3)
                 ON CONFLICT (postcode) DO UPDATE SET lat = excluded.lat, lon = excluded.lon",
            )
            .bind(postcode)
            .bind(lat)
            .bind(lon)
            .execute(&mut *tx)
            .await?;
        }
        let after: i64 = sqlx::query_scalar(super::POSTCODE_COUNT).fetch_one(&mut *tx).await?;
        tx.commit().await?;
        Ok(ImportedPostcodes::from_counts(before, after, rows.len()))
    }
}
