//! People and their API tokens: accounts with a role and a scope, separate from devices (docs/access.md).
//!
//! The statements are written once here with `$n` placeholders and run on both backends (sqlx's SQLite driver binds
//! `$n` by its number); `sqlite.rs` and `postgres.rs` only bind and read the columns whose types differ (ids and
//! times are text on SQLite). A person's token carries no role of its own: `authenticate` joins the person, so a
//! change of role or scope, or a disabling, holds from the next request on every node.

pub(super) mod postgres;
pub(super) mod sqlite;

use std::collections::BTreeSet;

use anyhow::Context;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{ApiTokenInfo, Revoked};
use crate::domain::{Actor, AreaRef, Authenticated, Principal, RequestContext, Role, Scope};

/// A person as `grapevine user list` shows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonInfo {
    pub id: Uuid,
    /// Trimmed and lower-cased.
    pub email: String,
    pub role: Role,
    /// Where they may act; each area names the generation it was granted in.
    pub scope: Scope,
    pub created_at: OffsetDateTime,
    /// When they were disabled: their tokens are refused from then on.
    pub disabled_at: Option<OffsetDateTime>,
}

/// Why a person was not added.
#[derive(Debug, thiserror::Error)]
pub enum AddPersonError {
    #[error("a person with the email address {0} exists already")]
    EmailTaken(String),
    #[error(transparent)]
    Database(#[from] anyhow::Error),
}

/// People, their roles and scopes, and the tokens that act for them. Emails are given as `people::normalise_email`
/// leaves them (trimmed, lower-cased).
#[async_trait::async_trait]
pub trait PeopleStore: Send + Sync {
    /// Adds a person; refused with `AddPersonError::EmailTaken` if the email is someone's already.
    async fn add_person(&self, email: &str, role: Role, scope: &Scope) -> Result<PersonInfo, AddPersonError>;

    /// Every person, oldest first.
    async fn people(&self) -> anyhow::Result<Vec<PersonInfo>>;

    /// The person with this email, if any.
    async fn person_by_email(&self, email: &str) -> anyhow::Result<Option<PersonInfo>>;

    /// Gives a person a role and, if `scope` is given, a new scope, in one statement; whether the person exists.
    async fn set_person_role(&self, email: &str, role: Role, scope: Option<&Scope>) -> anyhow::Result<bool>;

    /// Gives a person a new scope; whether the person exists.
    async fn set_person_scope(&self, email: &str, scope: &Scope) -> anyhow::Result<bool>;

    /// Disables a person: every one of their tokens is refused (`person_disabled`) from the next request on.
    async fn disable_person(&self, email: &str) -> anyhow::Result<Revoked>;

    /// Adds an API token of a person (it carries their role and scope as they are at each request), stored as its
    /// hash, refused after `expires_at` if given.
    async fn add_person_token(
        &self,
        person_id: Uuid,
        label: &str,
        token_hash: &str,
        expires_at: Option<OffsetDateTime>,
    ) -> anyhow::Result<Uuid>;
}

const PERSON_COLUMNS: &str = "id, email, role, scope, created_at, disabled_at";

const INSERT_PERSON: &str = "INSERT INTO people (id, email, role, scope, created_at) VALUES ($1, $2, $3, $4, $5)";

fn select_people() -> String {
    format!("SELECT {PERSON_COLUMNS} FROM people ORDER BY created_at, email")
}

fn select_person_by_email() -> String {
    format!("SELECT {PERSON_COLUMNS} FROM people WHERE email = $1")
}

/// `$3` says whether to replace the scope with `$4` (NULL is a scope of everything, so it cannot mean "keep").
const SET_ROLE: &str = "UPDATE people SET role = $2, scope = CASE WHEN $3 THEN $4 ELSE scope END WHERE email = $1";

const SET_SCOPE: &str = "UPDATE people SET scope = $2 WHERE email = $1";

const DISABLE: &str = "UPDATE people SET disabled_at = $2 WHERE email = $1 AND disabled_at IS NULL";

const PERSON_EXISTS: &str = "SELECT 1 FROM people WHERE email = $1";

const INSERT_PERSON_TOKEN: &str = "INSERT INTO api_tokens (id, label, token_hash, created_at, person_id, expires_at)
     VALUES ($1, $2, $3, $4, $5, $6)";

/// A live token and, for a person's, the person as they are now.
const AUTHENTICATE_TOKEN: &str = "SELECT t.id, t.role, t.label, t.expires_at,
            p.id AS person_id, p.email, p.role AS person_role, p.scope, p.disabled_at IS NOT NULL AS disabled
     FROM api_tokens t LEFT JOIN people p ON p.id = t.person_id
     WHERE t.token_hash = $1 AND t.revoked_at IS NULL";

/// Every token with its holder: a person's shows the person's role now.
const LIST_TOKENS: &str = "SELECT t.id, COALESCE(t.role, p.role) AS role, t.label, t.created_at, t.revoked_at,
            t.expires_at, p.email
     FROM api_tokens t LEFT JOIN people p ON p.id = t.person_id
     ORDER BY t.created_at, t.id";

/// One area of a stored scope.
#[derive(serde::Serialize, serde::Deserialize)]
struct StoredArea {
    set: String,
    code: String,
    /// The id of the generation it was granted in.
    generation: Option<i64>,
}

/// The `scope` column: a JSON list of areas, or NULL for everything.
fn scope_column(scope: &Scope) -> Option<String> {
    match scope {
        Scope::Everything => None,
        Scope::Areas(areas) => {
            let stored: Vec<StoredArea> = areas
                .iter()
                .map(|area| StoredArea {
                    set: area.set.clone(),
                    code: area.code.clone(),
                    generation: area.generation_id,
                })
                .collect();
            Some(serde_json::json!(stored).to_string())
        }
    }
}

fn scope_of(column: Option<&str>) -> anyhow::Result<Scope> {
    let Some(text) = column else { return Ok(Scope::Everything) };
    let stored: Vec<StoredArea> = serde_json::from_str(text).context("a stored scope")?;
    Ok(Scope::Areas(
        stored
            .into_iter()
            .map(|area| AreaRef { set: area.set, code: area.code, generation_id: area.generation })
            .collect::<BTreeSet<_>>(),
    ))
}

fn role_of(text: &str) -> anyhow::Result<Role> {
    Role::parse(text).with_context(|| format!("a stored role '{text}' this build does not know"))
}

/// A person's row, its backend-specific columns already read.
struct PersonRow {
    id: Uuid,
    email: String,
    role: String,
    scope: Option<String>,
    created_at: OffsetDateTime,
    disabled_at: Option<OffsetDateTime>,
}

impl PersonRow {
    fn into_info(self) -> anyhow::Result<PersonInfo> {
        Ok(PersonInfo {
            id: self.id,
            role: role_of(&self.role)?,
            scope: scope_of(self.scope.as_deref()).with_context(|| format!("person {}", self.id))?,
            email: self.email,
            created_at: self.created_at,
            disabled_at: self.disabled_at,
        })
    }
}

/// A live API token's row from `AUTHENTICATE_TOKEN`, its backend-specific columns already read.
pub(crate) struct TokenRow {
    token_id: Uuid,
    service_role: Option<String>,
    label: String,
    expires_at: Option<OffsetDateTime>,
    /// The person's id, email, role, scope and whether they are disabled.
    person: Option<(Uuid, String, String, Option<String>, bool)>,
}

impl TokenRow {
    /// Who the token acts for at `now`: a disabled person's token and an expired token are refused, each by name.
    fn authenticated(self, now: OffsetDateTime) -> anyhow::Result<Authenticated> {
        let expired = self.expires_at.is_some_and(|expires_at| now >= expires_at);
        let (actor, role, scope) = match self.person {
            Some((_, _, _, _, true)) => return Ok(Authenticated::Disabled),
            _ if expired => return Ok(Authenticated::Expired),
            Some((person_id, email, role, scope, false)) => {
                (Actor::Person { person_id, email }, role_of(&role)?, scope_of(scope.as_deref())?)
            }
            None => {
                let role = self.service_role.context("a service account's token without a role")?;
                (
                    Actor::ServiceAccount { token_id: self.token_id, label: self.label },
                    role_of(&role)?,
                    Scope::Everything,
                )
            }
        };
        Ok(Authenticated::Principal(Principal { actor, role, scope, context: RequestContext::default() }))
    }
}

/// A live device's principal: the collector role, over its own documents only (the sync decides which those are).
pub(crate) fn device_principal(device_id: Uuid, collector_id: Uuid) -> Authenticated {
    Authenticated::Principal(Principal {
        actor: Actor::Device { device_id, collector_id },
        role: Role::Collector,
        scope: Scope::Everything,
        context: RequestContext::default(),
    })
}

/// An API token's row from `LIST_TOKENS`, its backend-specific columns already read.
struct ApiTokenRow {
    id: Uuid,
    role: String,
    label: String,
    created_at: OffsetDateTime,
    revoked_at: Option<OffsetDateTime>,
    expires_at: Option<OffsetDateTime>,
    person_email: Option<String>,
}

impl ApiTokenRow {
    fn into_info(self) -> anyhow::Result<ApiTokenInfo> {
        Ok(ApiTokenInfo {
            id: self.id,
            role: role_of(&self.role).with_context(|| format!("API token {}", self.id))?,
            label: self.label,
            created_at: self.created_at,
            revoked_at: self.revoked_at,
            expires_at: self.expires_at,
            person_email: self.person_email,
        })
    }
}

/// What inserting a person came to: `AddPersonError::EmailTaken` if the email is someone's already.
fn person_added<T>(inserted: Result<T, sqlx::Error>, email: &str) -> Result<(), AddPersonError> {
    match inserted {
        Err(error) if is_unique_violation(&error) => Err(AddPersonError::EmailTaken(email.to_owned())),
        other => Ok(other.map(drop).context("adding a person")?),
    }
}

/// Whether a database error is the unique index on `people.email`.
fn is_unique_violation(error: &sqlx::Error) -> bool {
    error.as_database_error().is_some_and(sqlx::error::DatabaseError::is_unique_violation)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scope_reads_back_what_it_wrote_with_its_generation() {
        let mut scope = Scope::parse_list("districts:E07000197,wards:E05008714").unwrap();
        if let Scope::Areas(areas) = &mut scope {
            *areas = areas.iter().cloned().map(|area| AreaRef { generation_id: Some(3), ..area }).collect();
        }
        let column = scope_column(&scope).unwrap();
        assert!(column.contains(r#""generation":3"#), "{column}");
        assert_eq!(scope_of(Some(&column)).unwrap(), scope);
        assert_eq!(scope_column(&Scope::Everything), None);
        assert_eq!(scope_of(None).unwrap(), Scope::Everything);
    }

    fn token(person: Option<(Uuid, String, String, Option<String>, bool)>, expires_in: i64) -> TokenRow {
        TokenRow {
            token_id: Uuid::new_v4(),
            service_role: person.is_none().then(|| "analyst".to_owned()),
            label: "office".into(),
            expires_at: Some(OffsetDateTime::now_utc() + time::Duration::hours(expires_in)),
            person,
        }
    }

    #[test]
    fn a_disabled_person_is_refused_before_an_expiry_and_a_live_token_carries_the_persons_role() {
        let now = OffsetDateTime::now_utc();
        let person = |disabled| Some((Uuid::new_v4(), "a@b.example".to_owned(), "board".to_owned(), None, disabled));
        assert_eq!(token(person(true), -1).authenticated(now).unwrap(), Authenticated::Disabled);
        assert_eq!(token(person(false), -1).authenticated(now).unwrap(), Authenticated::Expired);
        assert_eq!(token(None, -1).authenticated(now).unwrap(), Authenticated::Expired);
        let Authenticated::Principal(principal) = token(person(false), 1).authenticated(now).unwrap() else {
            panic!("a live person's token")
        };
        assert_eq!(principal.role, Role::Board);
        assert!(matches!(principal.actor, Actor::Person { .. }));
        let Authenticated::Principal(principal) = token(None, 1).authenticated(now).unwrap() else {
            panic!("a live service account's token")
        };
        assert_eq!((principal.role, principal.scope), (Role::Analyst, Scope::Everything));
    }
}
