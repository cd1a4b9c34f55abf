//! `AccessStore` on SQLite: ids and times are stored as text.

use anyhow::Context;
use grapevine_sync_proto::doc_id::ID_KEY_BYTES;
use grapevine_sync_proto::document::format_time;
use sqlx::{Row, SqlitePool};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::store::prelude::*;
use crate::store::sqlite::{now_text, parse_time};
use crate::store::{
    ApiTokenInfo, Authenticated, CodeHashes, DeviceInfo, InvitationInfo, InvitationState, NewDevice, RedeemError,
    Revoked, Role, SqliteStore,
};

/// Sets `revoked_at` on one row of `table` (`devices` or `invitations`, never input) unless it is set already.
async fn revoke(pool: &SqlitePool, table: &'static str, id: Uuid) -> anyhow::Result<Revoked> {
    let revoked = sqlx::query(&format!("UPDATE {table} SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL"))
        .bind(id.to_string())
        .bind(now_text())
        .execute(pool)
        .await?;
    if revoked.rows_affected() == 1 {
        return Ok(Revoked::Now);
    }
    let exists = sqlx::query(&format!("SELECT 1 FROM {table} WHERE id = ?1"))
        .bind(id.to_string())
        .fetch_optional(pool)
        .await?
        .is_some();
    Ok(Revoked::not_now(exists))
}

/// Adds a collector (a device's owner, enrolled with it).
async fn add_collector(tx: &mut sqlx::SqliteConnection, collector_id: Uuid, label: &str) -> sqlx::Result<()> {
    sqlx::query("INSERT INTO collectors (id, label, created_at) VALUES (?1, ?2, ?3)")
        .bind(collector_id.to_string())
        .bind(label)
        .bind(now_text())
        .execute(tx)
        .await?;
    Ok(())
}

#[async_trait::async_trait]
impl AccessStore for SqliteStore {
    async fn add_device(&self, label: &str, token_hash: &str, collector: Option<Uuid>) -> anyhow::Result<NewDevice> {
        let new = NewDevice { device_id: Uuid::new_v4(), collector_id: collector.unwrap_or_else(Uuid::new_v4) };
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        if collector.is_some() {
            let known: Option<String> = sqlx::query_scalar(super::COLLECTOR_BY_ID)
                .bind(new.collector_id.to_string())
                .fetch_optional(&mut *tx)
                .await?;
            anyhow::ensure!(known.is_some(), "no collector has the id {}", new.collector_id);
        } else {
            add_collector(&mut tx, new.collector_id, label).await?;
        }
        sqlx::query(
            "INSERT INTO devices (id, collector_id, label, token_hash, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .bind(new.device_id.to_string())
        .bind(new.collector_id.to_string())
        .bind(label)
        .bind(token_hash)
        .bind(now_text())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(new)
    }

    async fn devices(&self, collector: Option<Uuid>) -> anyhow::Result<Vec<DeviceInfo>> {
        let rows = sqlx::query(
            "SELECT id, collector_id, label, created_at, revoked_at, invitation_id FROM devices
             WHERE ?1 IS NULL OR collector_id = ?1 ORDER BY created_at, id",
        )
        .bind(collector.map(|id| id.to_string()))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let uuid = |column: &str| -> anyhow::Result<Option<Uuid>> {
                    let text: Option<String> = row.get(column);
                    text.map(|text| text.parse().with_context(|| format!("{column} {text}"))).transpose()
                };
                Ok(DeviceInfo {
                    device_id: uuid("id")?.context("device id")?,
                    collector_id: uuid("collector_id")?.context("collector id")?,
                    label: row.get("label"),
                    created_at: parse_time(row.get("created_at")).unwrap_or(OffsetDateTime::UNIX_EPOCH),
                    revoked_at: parse_time(row.get("revoked_at")),
                    invitation_id: uuid("invitation_id")?,
                })
            })
            .collect()
    }

    async fn revoke_device(&self, device_id: Uuid) -> anyhow::Result<Revoked> {
        revoke(&self.pool, "devices", device_id).await
    }

    async fn device_revoked(&self, device_id: Uuid) -> anyhow::Result<bool> {
        let live: i64 =
            sqlx::query_scalar(super::LIVE_DEVICE_COUNT).bind(device_id.to_string()).fetch_one(&self.pool).await?;
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
            "INSERT INTO invitations (id, label, code_hash, uses, uses_left, expires_at, created_at, code_hash_scheme)
             VALUES (?1, ?2, ?3, ?4, ?4, ?5, ?6, 'hmac-sha256')",
        )
        .bind(id.to_string())
        .bind(label)
        .bind(code_hash)
        .bind(uses)
        .bind(format_time(expires_at.to_offset(time::UtcOffset::UTC)))
        .bind(now_text())
        .execute(&self.pool)
        .await?;
        Ok(id)
    }

    async fn invitations(&self) -> anyhow::Result<Vec<InvitationInfo>> {
        let rows = sqlx::query(super::INVITATIONS).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|row| {
                let id: String = row.get("id");
                Ok(InvitationInfo {
                    id: id.parse().context("invitation id")?,
                    label: row.get("label"),
                    uses: row.get("uses"),
                    uses_left: row.get("uses_left"),
                    expires_at: parse_time(row.get("expires_at")).context("invitation expiry")?,
                    created_at: parse_time(row.get("created_at")).unwrap_or(OffsetDateTime::UNIX_EPOCH),
                    revoked_at: parse_time(row.get("revoked_at")),
                    legacy_hash: super::is_legacy_scheme(&row.get::<String, _>("code_hash_scheme")),
                })
            })
            .collect()
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
        // The immediate transaction holds the database's write lock from the read on: redemptions serialise, and
        // the use counted is the use checked.
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let row = sqlx::query(&format!(
            "SELECT id, label, uses_left, expires_at, revoked_at FROM invitations WHERE {}",
            super::BY_CODE_HASHES
        ))
        .bind(&code_hashes.keyed)
        .bind(&code_hashes.legacy)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(RedeemError::Unknown)?;
        let id: String = row.get("id");
        let revoked_at: Option<String> = row.get("revoked_at");
        let invitation = InvitationState {
            id: id.parse().context("invitation id")?,
            label: row.get("label"),
            uses_left: row.get("uses_left"),
            expires_at: parse_time(row.get("expires_at")).context("invitation expiry")?,
            revoked: revoked_at.is_some(),
        };
        invitation.check(now)?;
        sqlx::query(super::TAKE_INVITATION_USE).bind(&id).execute(&mut *tx).await?;
        let label = if label.is_empty() { invitation.label.as_str() } else { label };
        let new = NewDevice { device_id: Uuid::new_v4(), collector_id: Uuid::new_v4() };
        add_collector(&mut tx, new.collector_id, label).await?;
        sqlx::query(
            "INSERT INTO devices (id, collector_id, label, token_hash, created_at, invitation_id, id_key)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )
        .bind(new.device_id.to_string())
        .bind(new.collector_id.to_string())
        .bind(label)
        .bind(token_hash)
        .bind(now_text())
        .bind(&id)
        .bind(id_key.map(|key| key.to_vec()))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(new)
    }

    async fn device_id_key(&self, device_id: Uuid) -> anyhow::Result<Option<[u8; ID_KEY_BYTES]>> {
        let key: Option<Option<Vec<u8>>> =
            sqlx::query_scalar(super::DEVICE_ID_KEY).bind(device_id.to_string()).fetch_optional(&self.pool).await?;
        Ok(key.flatten().and_then(|key| key.try_into().ok()))
    }

    async fn add_api_token(&self, role: Role, label: &str, token_hash: &str) -> anyhow::Result<Uuid> {
        let id = Uuid::new_v4();
        sqlx::query("INSERT INTO api_tokens (id, role, label, token_hash, created_at) VALUES (?1, ?2, ?3, ?4, ?5)")
            .bind(id.to_string())
            .bind(role.as_str())
            .bind(label)
            .bind(token_hash)
            .bind(now_text())
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
        // Expiry is compared as a time, not as text: RFC 3339 strings with and without fractions do not sort.
        let expiries: Vec<String> = sqlx::query_scalar(
            "SELECT expires_at FROM invitations
             WHERE code_hash_scheme = 'hmac-sha256' AND revoked_at IS NULL AND uses_left > 0",
        )
        .fetch_all(&self.pool)
        .await?;
        let open = expiries.into_iter().filter(|expiry| parse_time(Some(expiry.clone())).is_none_or(|at| at > now));
        Ok(i64::try_from(open.count())?)
    }

    async fn api_tokens(&self) -> anyhow::Result<Vec<ApiTokenInfo>> {
        crate::store::people::sqlite::api_tokens(&self.pool).await
    }

    async fn revoke_api_token(&self, id: Uuid) -> anyhow::Result<Revoked> {
        revoke(&self.pool, "api_tokens", id).await
    }

    async fn authenticate(&self, token_hash: &str) -> anyhow::Result<Option<Authenticated>> {
        let device = sqlx::query("SELECT id, collector_id, revoked_at FROM devices WHERE token_hash = ?1")
            .bind(token_hash)
            .fetch_optional(&self.pool)
            .await?;
        if let Some(row) = device {
            let device_id: String = row.get("id");
            let device_id = device_id.parse().context("device id")?;
            let revoked_at: Option<String> = row.get("revoked_at");
            if revoked_at.is_some() {
                return Ok(Some(Authenticated::RevokedDevice { device_id }));
            }
            let collector_id: String = row.get("collector_id");
            let collector_id = collector_id.parse().context("collector id")?;
            return Ok(Some(crate::store::people::device_principal(device_id, collector_id)));
        }
        crate::store::people::sqlite::authenticate_token(&self.pool, token_hash, OffsetDateTime::now_utc()).await
    }
}
