//! `AccessStore` on PostgreSQL: ids are `uuid`, times `timestamptz` set by the database.

use anyhow::Context;
use grapevine_sync_proto::doc_id::ID_KEY_BYTES;
use sqlx::postgres::PgPool;
use sqlx::Row;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::store::prelude::*;
use crate::store::{
    ApiTokenInfo, Authenticated, CodeHashes, DeviceInfo, InvitationInfo, InvitationState, NewDevice, PostgresStore,
    RedeemError, Revoked, Role,
};

/// Sets `revoked_at` on one row of `table` (`devices` or `invitations`, never input) unless it is set already.
async fn revoke(pool: &PgPool, table: &'static str, id: Uuid) -> anyhow::Result<Revoked> {
    let revoked = sqlx::query(&format!("UPDATE {table} SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL"))
        .bind(id)
        .execute(pool)
        .await?;
    if revoked.rows_affected() == 1 {
        return Ok(Revoked::Now);
    }
    let exists =
        sqlx::query(&format!("SELECT 1 FROM {table} WHERE id = $1")).bind(id).fetch_optional(pool).await?.is_some();
    Ok(Revoked::not_now(exists))
}

/// Adds a collector (a device's owner, enrolled with it).
async fn add_collector(tx: &mut sqlx::PgConnection, collector_id: Uuid, label: &str) -> sqlx::Result<()> {
    sqlx::query("INSERT INTO collectors (id, label) VALUES ($1, $2)")
        .bind(collector_id)
        .bind(label)
        .execute(tx)
        .await?;
    Ok(())
}

#[async_trait::async_trait]
impl AccessStore for PostgresStore {
    async fn add_device(&self, label: &str, token_hash: &str, collector: Option<Uuid>) -> anyhow::Result<NewDevice> {
        let new = NewDevice { device_id: Uuid::new_v4(), collector_id: collector.unwrap_or_else(Uuid::new_v4) };
        let mut tx = self.pool.begin().await?;
        if collector.is_some() {
            let known: Option<Uuid> =
                sqlx::query_scalar(super::COLLECTOR_BY_ID).bind(new.collector_id).fetch_optional(&mut *tx).await?;
            anyhow::ensure!(known.is_some(), "no collector has the id {}", new.collector_id);
        } else {
            add_collector(&mut tx, new.collector_id, label).await?;
        }
        sqlx::query("INSERT INTO devices (id, collector_id, label, token_hash) VALUES ($1, $2, $3, $4)")
            .bind(new.device_id)
            .bind(new.collector_id)
            .bind(label)
            .bind(token_hash)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(new)
    }

    async fn devices(&self, collector: Option<Uuid>) -> anyhow::Result<Vec<DeviceInfo>> {
        let rows = sqlx::query(
            "SELECT id, collector_id, label, created_at, revoked_at, invitation_id FROM devices
             WHERE $1::uuid IS NULL OR collector_id = $1 ORDER BY created_at, id",
        )
        .bind(collector)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|row| DeviceInfo {
                device_id: row.get("id"),
                collector_id: row.get("collector_id"),
                label: row.get("label"),
                created_at: row.get("created_at"),
                revoked_at: row.get("revoked_at"),
                invitation_id: row.get("invitation_id"),
            })
            .collect())
    }

    async fn revoke_device(&self, device_id: Uuid) -> anyhow::Result<Revoked> {
        revoke(&self.pool, "devices", device_id).await
    }

    async fn device_revoked(&self, device_id: Uuid) -> anyhow::Result<bool> {
        let live: i64 = sqlx::query_scalar(super::LIVE_DEVICE_COUNT).bind(device_id).fetch_one(&self.pool).await?;
        Ok(live == 0)
    }

    async fn add_invitation(
        &self,
        label: &str,
        code_hash: &str,
        uses: i64,
        expires_at: OffsetDateTime,
    ) -> anyhow::Result<Uuid> {
        let id = Uuid::new_v4();
        sqlx::query(
            "INSERT INTO invitations (id, label, code_hash, uses, uses_left, expires_at, code_hash_scheme)
             VALUES ($1, $2, $3, $4, $4, $5, 'hmac-sha256')",
        )
        .bind(id)
        .bind(label)
        .bind(code_hash)
        .bind(uses)
        .bind(expires_at)
        .execute(&self.pool)
        .await?;
        Ok(id)
    }

    async fn invitations(&self) -> anyhow::Result<Vec<InvitationInfo>> {
        let rows = sqlx::query(super::INVITATIONS).fetch_all(&self.pool).await?;
        Ok(rows
            .iter()
            .map(|row| InvitationInfo {
                id: row.get("id"),
                label: row.get("label"),
                uses: row.get("uses"),
                uses_left: row.get("uses_left"),
                expires_at: row.get("expires_at"),
                created_at: row.get("created_at"),
                revoked_at: row.get("revoked_at"),
                legacy_hash: super::is_legacy_scheme(&row.get::<String, _>("code_hash_scheme")),
            })
            .collect())
    }

    async fn revoke_invitation(&self, id: Uuid) -> anyhow::Result<Revoked> {
        revoke(&self.pool, "invitations", id).await
    }

    async fn redeem_invitation(
        &self,
        code_hashes: &CodeHashes,
        label: &str,
        token_hash: &str,
        id_key: Option<&[u8; ID_KEY_BYTES]>,
        now: OffsetDateTime,
    ) -> Result<NewDevice, RedeemError> {
        let mut tx = self.pool.begin().await?;
        // The row lock serialises redemptions of one invitation across nodes: a second phone waits here and then
        // reads the use the first one took.
        let row = sqlx::query(&format!(
            "SELECT id, label, uses_left, expires_at, revoked_at IS NOT NULL AS revoked FROM invitations WHERE {} FOR UPDATE",
            super::BY_CODE_HASHES
        ))
        .bind(&code_hashes.keyed)
        .bind(&code_hashes.legacy)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(RedeemError::Unknown)?;
        let invitation = InvitationState {
            id: row.get("id"),
            label: row.get("label"),
            uses_left: row.get("uses_left"),
            expires_at: row.get("expires_at"),
            revoked: row.get("revoked"),
        };
        invitation.check(now)?;
        sqlx::query(super::TAKE_INVITATION_USE).bind(invitation.id).execute(&mut *tx).await?;
        let label = if label.is_empty() { invitation.label.as_str() } else { label };
        let new = NewDevice { device_id: Uuid::new_v4(), collector_id: Uuid::new_v4() };
        add_collector(&mut tx, new.collector_id, label).await?;
        sqlx::query(
            "INSERT INTO devices (id, collector_id, label, token_hash, invitation_id, id_key) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(new.device_id)
        .bind(new.collector_id)
        .bind(label)
        .bind(token_hash)
        .bind(invitation.id)
        .bind(id_key.map(|key| key.to_vec()))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(new)
    }

    async fn device_id_key(&self, device_id: Uuid) -> anyhow::Result<Option<[u8; ID_KEY_BYTES]>> {
        let key: Option<Option<Vec<u8>>> =
            sqlx::query_scalar(super::DEVICE_ID_KEY).bind(device_id).fetch_optional(&self.pool).await?;
        Ok(key.flatten().and_then(|key| key.try_into().ok()))
    }

    async fn add_api_token(&self, role: Role, label: &str, token_hash: &str) -> anyhow::Result<Uuid> {
        let id = Uuid::new_v4();
        sqlx::query("INSERT INTO api_tokens (id, role, label, token_hash) VALUES ($1, $2, $3, $4)")
            .bind(id)
            .bind(role.as_str())
            .bind(label)
            .bind(token_hash)
            .execute(&self.pool)
            .await?;
        Ok(id)
    }

    async fn invitation_secret_fingerprint(&self) -> anyhow::Result<Option<String>> {
        Ok(sqlx::query_scalar(super::INVITATION_SECRET_FINGERPRINT).fetch_optional(&self.pool).await?)
    }

    async fn claim_invitation_secret(&self, fingerprint: &str) -> anyhow::Result<String> {
        sqlx::query(super::CLAIM_INVITATION_SECRET).bind(fingerprint).execute(&self.pool).await?;
        self.invitation_secret_fingerprint().await?.context("the invitation secret's fingerprint was just recorded")
    }

    async fn replace_invitation_secret(&self, fingerprint: &str) -> anyhow::Result<()> {
        sqlx::query(super::REPLACE_INVITATION_SECRET).bind(fingerprint).execute(&self.pool).await?;
        Ok(())
    }

    async fn open_keyed_invitations(&self, now: OffsetDateTime) -> anyhow::Result<i64> {
        Ok(sqlx::query_scalar(
            "SELECT COUNT(*) FROM invitations
             WHERE code_hash_scheme = 'hmac-sha256' AND revoked_at IS NULL AND uses_left > 0 AND expires_at > $1",
        )
        .bind(now)
        .fetch_one(&self.pool)
        .await?)
    }

    async fn api_tokens(&self) -> anyhow::Result<Vec<ApiTokenInfo>> {
        crate::store::people::postgres::api_tokens(&self.pool).await
    }

    async fn revoke_api_token(&self, id: Uuid) -> anyhow::Result<Revoked> {
        revoke(&self.pool, "api_tokens", id).await
    }

    async fn authenticate(&self, token_hash: &str) -> anyhow::Result<Option<Authenticated>> {
        let device = sqlx::query(
            "SELECT id, collector_id, revoked_at IS NOT NULL AS revoked FROM devices WHERE token_hash = $1",
        )
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?;
        if let Some(row) = device {
            if row.get::<bool, _>("revoked") {
                return Ok(Some(Authenticated::RevokedDevice { device_id: row.get("id") }));
            }
            return Ok(Some(crate::store::people::device_principal(row.get("id"), row.get("collector_id"))));
        }
        crate::store::people::postgres::authenticate_token(&self.pool, token_hash, OffsetDateTime::now_utc()).await
    }
}
