//! `PeopleStore` on PostgreSQL: ids are `UUID`, times `TIMESTAMPTZ`.

use anyhow::Context;
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{
    person_added, scope_column, AddPersonError, ApiTokenRow, PeopleStore, PersonInfo, PersonRow, TokenRow,
    AUTHENTICATE_TOKEN, DISABLE, INSERT_PERSON, INSERT_PERSON_TOKEN, LIST_TOKENS, PERSON_EXISTS, SET_ROLE, SET_SCOPE,
};
use crate::domain::{Authenticated, Role, Scope};
use crate::store::{ApiTokenInfo, PostgresStore, Revoked};

pub(in crate::store) fn person_of(row: &PgRow) -> anyhow::Result<PersonInfo> {
    PersonRow {
        id: row.get("id"),
        email: row.get("email"),
        role: row.get("role"),
        scope: row.get("scope"),
        created_at: row.get("created_at"),
        disabled_at: row.get("disabled_at"),
    }
    .into_info()
}

#[async_trait::async_trait]
impl PeopleStore for PostgresStore {
    async fn add_person(&self, email: &str, role: Role, scope: &Scope) -> Result<PersonInfo, AddPersonError> {
        let inserted = sqlx::query(INSERT_PERSON)
            .bind(Uuid::new_v4())
            .bind(email)
            .bind(role.as_str())
            .bind(scope_column(scope))
            .bind(OffsetDateTime::now_utc())
            .execute(&self.pool)
            .await;
        person_added(inserted, email)?;
        self.person_by_email(email).await?.context("the person just added").map_err(AddPersonError::Database)
    }

    async fn people(&self) -> anyhow::Result<Vec<PersonInfo>> {
        sqlx::query(&super::select_people()).fetch_all(&self.pool).await?.iter().map(person_of).collect()
    }

    async fn person_by_email(&self, email: &str) -> anyhow::Result<Option<PersonInfo>> {
        let row = sqlx::query(&super::select_person_by_email()).bind(email).fetch_optional(&self.pool).await?;
        row.as_ref().map(person_of).transpose()
    }

    async fn set_person_role(&self, email: &str, role: Role, scope: Option<&Scope>) -> anyhow::Result<bool> {
        let updated = sqlx::query(SET_ROLE)
            .bind(email)
            .bind(role.as_str())
            .bind(scope.is_some())
            .bind(scope.and_then(scope_column))
            .execute(&self.pool)
            .await?;
        Ok(updated.rows_affected() == 1)
    }

    async fn set_person_scope(&self, email: &str, scope: &Scope) -> anyhow::Result<bool> {
        let updated = sqlx::query(SET_SCOPE).bind(email).bind(scope_column(scope)).execute(&self.pool).await?;
        Ok(updated.rows_affected() == 1)
    }

    async fn disable_person(&self, email: &str) -> anyhow::Result<Revoked> {
        let now = OffsetDateTime::now_utc();
        if sqlx::query(DISABLE).bind(email).bind(now).execute(&self.pool).await?.rows_affected() == 1 {
            return Ok(Revoked::Now);
        }
        let exists = sqlx::query(PERSON_EXISTS).bind(email).fetch_optional(&self.pool).await?.is_some();
        Ok(Revoked::not_now(exists))
    }

    async fn add_person_token(
        &self,
        person_id: Uuid,
        label: &str,
        token_hash: &str,
        expires_at: Option<OffsetDateTime>,
    ) -> anyhow::Result<Uuid> {
        let id = Uuid::new_v4();
        sqlx::query(INSERT_PERSON_TOKEN)
            .bind(id)
            .bind(label)
            .bind(token_hash)
            .bind(OffsetDateTime::now_utc())
            .bind(person_id)
            .bind(expires_at)
            .execute(&self.pool)
            .await?;
        Ok(id)
    }
}

/// The API-token half of `Store::authenticate`: who a live token with this hash acts for at `now`.
pub(crate) async fn authenticate_token(
    pool: &PgPool,
    token_hash: &str,
    now: OffsetDateTime,
) -> anyhow::Result<Option<Authenticated>> {
    let Some(row) = sqlx::query(AUTHENTICATE_TOKEN).bind(token_hash).fetch_optional(pool).await? else {
        return Ok(None);
    };
    let person_id: Option<Uuid> = row.get("person_id");
    let person = person_id.map(|person_id| {
        (person_id, row.get("email"), row.get("person_role"), row.get("scope"), row.get::<bool, _>("disabled"))
    });
    let token = TokenRow {
        token_id: row.get("id"),
        service_role: row.get("role"),
        label: row.get("label"),
        expires_at: row.get("expires_at"),
        person,
    };
    token.authenticated(now).map(Some)
}

/// `Store::api_tokens`: every token with its holder, oldest first.
pub(crate) async fn api_tokens(pool: &PgPool) -> anyhow::Result<Vec<ApiTokenInfo>> {
    let rows = sqlx::query(LIST_TOKENS).fetch_all(pool).await?;
    rows.iter()
        .map(|row| {
            ApiTokenRow {
                id: row.get("id"),
                role: row.get("role"),
                label: row.get("label"),
                created_at: row.get("created_at"),
                revoked_at: row.get("revoked_at"),
                expires_at: row.get("expires_at"),
                person_email: row.get("email"),
            }
            .into_info()
        })
        .collect()
}
