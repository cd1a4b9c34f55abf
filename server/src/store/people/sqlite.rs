//! `PeopleStore` on SQLite: ids and times are text (RFC 3339), compared as times in Rust, never as text.

use anyhow::Context;
use grapevine_sync_proto::document::format_time;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqlitePool};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{
    person_added, scope_column, AddPersonError, ApiTokenRow, PeopleStore, PersonInfo, PersonRow, TokenRow,
    AUTHENTICATE_TOKEN, DISABLE, INSERT_PERSON, INSERT_PERSON_TOKEN, LIST_TOKENS, PERSON_EXISTS, SET_ROLE, SET_SCOPE,
};
use crate::domain::{Authenticated, Role, Scope};
use crate::store::{ApiTokenInfo, Revoked, SqliteStore};

fn time_of(text: Option<String>) -> Option<OffsetDateTime> {
    text.and_then(|text| OffsetDateTime::parse(&text, &Rfc3339).ok())
}

fn uuid_of(text: &str) -> anyhow::Result<Uuid> {
    text.parse().with_context(|| format!("a stored id '{text}'"))
}

pub(in crate::store) fn person_of(row: &SqliteRow) -> anyhow::Result<PersonInfo> {
    let id: String = row.get("id");
    PersonRow {
        id: uuid_of(&id)?,
        email: row.get("email"),
        role: row.get("role"),
        scope: row.get("scope"),
        created_at: time_of(row.get("created_at")).unwrap_or(OffsetDateTime::UNIX_EPOCH),
        disabled_at: time_of(row.get("disabled_at")),
    }
    .into_info()
}

#[async_trait::async_trait]
impl PeopleStore for SqliteStore {
    async fn add_person(&self, email: &str, role: Role, scope: &Scope) -> Result<PersonInfo, AddPersonError> {
        let id = Uuid::new_v4();
        let inserted = sqlx::query(INSERT_PERSON)
            .bind(id.to_string())
            .bind(email)
            .bind(role.as_str())
            .bind(scope_column(scope))
            .bind(format_time(OffsetDateTime::now_utc()))
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
        let now = format_time(OffsetDateTime::now_utc());
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
            .bind(id.to_string())
            .bind(label)
            .bind(token_hash)
            .bind(format_time(OffsetDateTime::now_utc()))
            .bind(person_id.to_string())
            .bind(expires_at.map(format_time))
            .execute(&self.pool)
            .await?;
        Ok(id)
    }
}

/// The API-token half of `Store::authenticate`: who a live token with this hash acts for at `now`.
pub(crate) async fn authenticate_token(
    pool: &SqlitePool,
    token_hash: &str,
    now: OffsetDateTime,
) -> anyhow::Result<Option<Authenticated>> {
    let Some(row) = sqlx::query(AUTHENTICATE_TOKEN).bind(token_hash).fetch_optional(pool).await? else {
        return Ok(None);
    };
    let token_id: String = row.get("id");
    let person_id: Option<String> = row.get("person_id");
    let person = match person_id {
        Some(person_id) => Some((
            uuid_of(&person_id)?,
            row.get("email"),
            row.get("person_role"),
            row.get("scope"),
            row.get::<bool, _>("disabled"),
        )),
        None => None,
    };
    let token = TokenRow {
        token_id: uuid_of(&token_id)?,
        service_role: row.get("role"),
        label: row.get("label"),
        expires_at: time_of(row.get("expires_at")),
        person,
    };
    token.authenticated(now).map(Some)
}

/// `Store::api_tokens`: every token with its holder, oldest first.
pub(crate) async fn api_tokens(pool: &SqlitePool) -> anyhow::Result<Vec<ApiTokenInfo>> {
    let rows = sqlx::query(LIST_TOKENS).fetch_all(pool).await?;
    rows.iter()
        .map(|row| {
            let id: String = row.get("id");
            ApiTokenRow {
                id: uuid_of(&id)?,
                role: row.get("role"),
                label: row.get("label"),
                created_at: time_of(row.get("created_at")).unwrap_or(OffsetDateTime::UNIX_EPOCH),
                revoked_at: time_of(row.get("revoked_at")),
                expires_at: time_of(row.get("expires_at")),
                person_email: row.get("email"),
            }
            .into_info()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Actor, Principal};
    use crate::store::prelude::*;
    use crate::store::sqlite::tests::database_at;

    /// 0012 rebuilds `api_tokens` to loosen its role: a token made before people existed keeps its id, role, label
    /// and hash, authenticates as a service account and is listed as one.
    #[tokio::test]
    async fn a_token_made_before_people_existed_is_a_service_accounts_after_the_migration() {
        let (_dir, url, pool) = database_at(10).await;
        let id = "00000000-0000-0000-0000-0000000000b1";
        sqlx::query(
            "INSERT INTO api_tokens (id, role, label, token_hash, created_at)
             VALUES (?1, 'analyst', 'Old dashboards', 'old-hash', '2026-01-02T03:04:05Z')",
        )
        .bind(id)
        .execute(&pool)
        .await
        .unwrap();
        pool.close().await;

        let store = SqliteStore::open(&url).await.unwrap();
        let Some(Authenticated::Principal(Principal {
            actor: Actor::ServiceAccount { token_id, label },
            role,
            scope,
            ..
        })) = store.authenticate("old-hash").await.unwrap()
        else {
            panic!("a service account's token")
        };
        assert_eq!(
            (token_id.to_string(), label.as_str(), role, scope),
            (id.to_owned(), "Old dashboards", Role::Analyst, Scope::Everything)
        );
        let listed = store.api_tokens().await.unwrap();
        assert_eq!((listed.len(), listed[0].person_email.as_ref(), listed[0].expires_at), (1, None, None));
        assert_eq!(listed[0].created_at, OffsetDateTime::parse("2026-01-02T03:04:05Z", &Rfc3339).unwrap());
    }
}
