//! `PostcodeStore` on PostgreSQL: an import is one `UNNEST` upsert per 50,000 postcodes.

use sqlx::Row;

use crate::store::prelude::*;
use crate::store::{ImportedPostcodes, PostgresStore};

#[async_trait::async_trait]
impl PostcodeStore for PostgresStore {
    async fn postcode_centroid(&self, postcode: &str) -> anyhow::Result<Option<(f64, f64)>> {
        let row = sqlx::query(super::POSTCODE_CENTROID).bind(postcode).fetch_optional(&self.pool).await?;
        Ok(row.map(|row| (row.get("lat"), row.get("lon"))))
    }

    async fn import_postcodes(&self, rows: &[(String, f64, f64)]) -> anyhow::Result<ImportedPostcodes> {
        let mut tx = self.pool.begin().await?;
        // Counted inside the transaction, so the difference is this import's alone.
        let before: i64 = sqlx::query_scalar(super::POSTCODE_COUNT).fetch_one(&mut *tx).await?;
        for slice in rows.chunks(50_000) {
            sqlx::query(
                "INSERT INTO postcodes (postcode, lat, lon)
                 SELECT * FROM UNNEST($1::text[], $2::float8[], $3::float8[])
                 ON CONFLICT (postcode) DO UPDATE SET lat = excluded.lat, lon = excluded.lon",
            )
            .bind(slice.iter().map(|(postcode, _, _)| postcode.as_str()).collect::<Vec<_>>())
            .bind(slice.iter().map(|(_, lat, _)| *lat).collect::<Vec<_>>())
            .bind(slice.iter().map(|(_, _, lon)| *lon).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await?;
        }
        let after: i64 = sqlx::query_scalar(super::POSTCODE_COUNT).fetch_one(&mut *tx).await?;
        tx.commit().await?;
        Ok(ImportedPostcodes::from_counts(before, after, rows.len()))
    }
}
