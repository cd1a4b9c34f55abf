//! `SessionStore` on SQLite: a person's id is text.

use sqlx::Row;
use uuid::Uuid;

use super::{
    NewSessionRecord, PasswordLinkRecord, PendingSignIn, PendingSignInRow, SessionColumns, SessionRecord,
    SessionStore, COUNT_FAILURES, END_SESSION, END_SESSIONS_OF, FORGET_FAILURES, FORGET_SESSIONS,
    FORGET_SIGN_IN_STATES, INSERT_FAILURE, INSERT_PASSWORD_LINK, INSERT_SESSION, INSERT_SIGN_IN_STATE,
    PERSON_WITH_PASSWORD, SELECT_PASSWORD_LINK, SELECT_SESSION, SET_PASSWORD, TAKE_SIGN_IN_STATE, TOUCH_SESSION,
    USE_PASSWORD_LINK,
};
use crate::store::people::sqlite::person_of;
use crate::store::{PersonInfo, SqliteStore};

#[async_trait::async_trait]
impl SessionStore for SqliteStore {
    async fn person_with_password(&self, email: &str) -> anyhow::Result<Option<(PersonInfo, Option<String>)>> {
        let row = sqlx::query(PERSON_WITH_PASSWORD).bind(email).fetch_optional(&self.pool).await?;
        row.map(|row| Ok((person_of(&row)?, row.get("password_hash")))).transpose()
    }

    async fn add_password_link(
        &self,
        person_id: Uuid,
        token_hash: &str,
        created_at: i64,
        expires_at: i64,
    ) -> anyhow::Result<()> {
        sqlx::query(INSERT_PASSWORD_LINK)
            .bind(token_hash)
            .bind(person_id.to_string())
            .bind(created_at)
            .bind(expires_at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn password_link(&self, token_hash: &str) -> anyhow::Result<Option<PasswordLinkRecord>> {
        let row = sqlx::query(SELECT_PASSWORD_LINK).bind(token_hash).fetch_optional(&self.pool).await?;
        row.map(|row| {
            Ok(PasswordLinkRecord {
                person: person_of(&row)?,
                expires_at: row.get("link_expires_at"),
                used_at: row.get("link_used_at"),
            })
        })
        .transpose()
    }

    async fn use_password_link(&self, token_hash: &str, now: i64, password_hash: &str) -> anyhow::Result<bool> {
        let mut transaction = self.pool.begin().await?;
        let used = sqlx::query(USE_PASSWORD_LINK).bind(token_hash).bind(now).fetch_optional(&mut *transaction).await?;
        let Some(used) = used else { return Ok(false) };
        let person_id: String = used.get(0);
        sqlx::query(SET_PASSWORD).bind(&person_id).bind(password_hash).execute(&mut *transaction).await?;
        sqlx::query(END_SESSIONS_OF).bind(&person_id).bind(now).execute(&mut *transaction).await?;
        transaction.commit().await?;
        Ok(true)
    }

    async fn record_sign_in_failure(&self, email: &str, at: i64, forget_before: i64) -> anyhow::Result<()> {
        let mut transaction = self.pool.begin().await?;
        sqlx::query(FORGET_FAILURES).bind(email).bind(forget_before).execute(&mut *transaction).await?;
        sqlx::query(INSERT_FAILURE).bind(email).bind(at).execute(&mut *transaction).await?;
        transaction.commit().await?;
        Ok(())
    }

    async fn sign_in_failures_since(&self, email: &str, since: i64) -> anyhow::Result<i64> {
        Ok(sqlx::query_scalar(COUNT_FAILURES).bind(email).bind(since).fetch_one(&self.pool).await?)
    }

    async fn open_session(&self, session: &NewSessionRecord, forget_before: i64) -> anyhow::Result<()> {
        let mut transaction = self.pool.begin().await?;
        sqlx::query(FORGET_SESSIONS).bind(forget_before).execute(&mut *transaction).await?;
        sqlx::query(INSERT_SESSION)
            .bind(&session.id_hash)
            .bind(session.person_id.to_string())
            .bind(session.method.as_str())
            .bind(session.created_at)
            .bind(session.expires_at)
            .bind(&session.csrf_secret)
            .execute(&mut *transaction)
            .await?;
        transaction.commit().await?;
        Ok(())
    }

    async fn session(&self, id_hash: &str) -> anyhow::Result<Option<SessionRecord>> {
        let row = sqlx::query(SELECT_SESSION).bind(id_hash).fetch_optional(&self.pool).await?;
        row.map(|row| <SessionColumns as sqlx::FromRow<_>>::from_row(&row)?.into_record(person_of(&row)?))
            .transpose()
    }

    async fn touch_session(&self, id_hash: &str, at: i64) -> anyhow::Result<()> {
        sqlx::query(TOUCH_SESSION).bind(id_hash).bind(at).execute(&self.pool).await?;
        Ok(())
    }

    async fn end_session(&self, id_hash: &str, at: i64) -> anyhow::Result<bool> {
        let ended = sqlx::query(END_SESSION).bind(id_hash).bind(at).execute(&self.pool).await?;
        Ok(ended.rows_affected() == 1)
    }

    async fn save_sign_in_state(&self, pending: &PendingSignIn, forget_before: i64) -> anyhow::Result<()> {
        let mut transaction = self.pool.begin().await?;
        sqlx::query(FORGET_SIGN_IN_STATES).bind(forget_before).execute(&mut *transaction).await?;
        sqlx::query(INSERT_SIGN_IN_STATE)
            .bind(&pending.state_hash)
            .bind(&pending.nonce)
            .bind(&pending.pkce_verifier)
            .bind(&pending.return_to)
            .bind(pending.expires_at)
            .execute(&mut *transaction)
            .await?;
        transaction.commit().await?;
        Ok(())
    }

    async fn take_sign_in_state(&self, state_hash: &str) -> anyhow::Result<Option<PendingSignIn>> {
        let row: Option<PendingSignInRow> =
            sqlx::query_as(TAKE_SIGN_IN_STATE).bind(state_hash).fetch_optional(&self.pool).await?;
        Ok(row.map(PendingSignIn::from))
    }
}
