//! People and their API tokens, as an operator manages them: add a person with a role and a scope, change the role,
//! disable them, issue a token of theirs. Plain functions over `&dyn Store`, checked whole before anything is written
//! (an unknown role or area writes nothing); the command line is their adapter (docs/access.md).

use std::collections::BTreeSet;
use std::collections::HashMap;

use grapevine_sync_proto::ErrorCode;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use crate::auth::{hash_token, new_token, TokenKind};
use crate::domain::{AreaRef, Role, Scope};
use crate::store::{AddPersonError, PersonInfo, Revoked, Store};

/// The longest an email address may be (RFC 5321's path limit).
const MAX_EMAIL_CHARS: usize = 254;

/// The longest a token may be issued for: five years, in days or in hours.
pub const MAX_EXPIRY_DAYS: i64 = 1825;
pub const MAX_EXPIRY_HOURS: i64 = MAX_EXPIRY_DAYS * 24;

/// Why a change to people or their tokens was refused; nothing was written. Each has its stable code.
#[derive(Debug, thiserror::Error)]
pub enum PeopleError {
    #[error("'{0}' is not a role; the roles are collector, coordinator, analyst, board and admin")]
    RoleUnknown(String),
    #[error("the scope part '{0}' is not SET:CODE (e.g. districts:E07000197)")]
    ScopeInvalid(String),
    #[error("the scope names the boundary set '{0}', which has no generation (see `grapevine boundaries list`)")]
    ScopeSetUnknown(String),
    #[error("the scope names the area {area}, which generation {generation} of '{set}' (its newest) does not have")]
    ScopeAreaUnknown { area: String, set: String, generation: i64 },
    #[error("'{0}' is not an email address")]
    EmailInvalid(String),
    #[error("a person with the email address {0} exists already")]
    EmailTaken(String),
    #[error("no person has the email address {0} (see `grapevine user list`)")]
    PersonUnknown(String),
    #[error("{0} is disabled; a disabled person gets no new token")]
    PersonDisabled(String),
    #[error(
        "the expiry '{0}' is not a number of days (1d to {MAX_EXPIRY_DAYS}d) or hours (1h to {MAX_EXPIRY_HOURS}h)"
    )]
    ExpiryInvalid(String),
    #[error(transparent)]
    Database(#[from] anyhow::Error),
}

impl PeopleError {
    /// The stable code from the one code table.
    #[must_use]
    pub fn code(&self) -> ErrorCode {
        match self {
            PeopleError::RoleUnknown(_) => ErrorCode::RoleUnknown,
            PeopleError::ScopeInvalid(_) => ErrorCode::ScopeInvalid,
            PeopleError::ScopeSetUnknown(_) | PeopleError::ScopeAreaUnknown { .. } => ErrorCode::ScopeAreaUnknown,
            PeopleError::EmailInvalid(_) => ErrorCode::PersonEmailInvalid,
            PeopleError::EmailTaken(_) => ErrorCode::PersonEmailTaken,
            PeopleError::PersonUnknown(_) => ErrorCode::PersonUnknown,
            PeopleError::PersonDisabled(_) => ErrorCode::PersonDisabled,
            PeopleError::ExpiryInvalid(_) => ErrorCode::TokenExpiryInvalid,
            PeopleError::Database(_) => ErrorCode::Internal,
        }
    }
}

/// An email address as stored and looked up: trimmed and lower-cased, so `Ann@Example.org ` is `ann@example.org`.
///
/// # Errors
/// `EmailInvalid`: empty, over 254 characters, holding a space or a control character, or not `LOCAL@DOMAIN`.
pub fn normalise_email(text: &str) -> Result<String, PeopleError> {
    let email = text.trim().to_lowercase();
    let well_formed = email.chars().count() <= MAX_EMAIL_CHARS
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && email
            .split_once('@')
            .is_some_and(|(local, domain)| !local.is_empty() && !domain.is_empty() && !domain.contains('@'));
    if well_formed {
        Ok(email)
    } else {
        Err(PeopleError::EmailInvalid(crate::http::error::shown(text)))
    }
}

/// A role by its name, exactly as `Role::as_str` spells it.
///
/// # Errors
/// `RoleUnknown`.
pub fn parse_role(text: &str) -> Result<Role, PeopleError> {
    Role::parse(text.trim()).ok_or_else(|| PeopleError::RoleUnknown(crate::http::error::shown(text)))
}

/// An expiry such as `90d` or `12h`, from 1 hour to five years.
///
/// # Errors
/// `ExpiryInvalid`: another unit, not a whole number, zero, or beyond the bound.
pub fn parse_expiry(text: &str) -> Result<Duration, PeopleError> {
    let invalid = || PeopleError::ExpiryInvalid(crate::http::error::shown(text));
    let text = text.trim();
    let whole = |number: &str, max: i64| number.parse::<i64>().ok().filter(|number| (1..=max).contains(number));
    if let Some(days) = text.strip_suffix('d').and_then(|number| whole(number, MAX_EXPIRY_DAYS)) {
        Ok(Duration::days(days))
    } else if let Some(hours) = text.strip_suffix('h').and_then(|number| whole(number, MAX_EXPIRY_HOURS)) {
        Ok(Duration::hours(hours))
    } else {
        Err(invalid())
    }
}

/// Checks a scope as typed (`SET:CODE,…`) against the boundaries: every set must have a generation and every area
/// must be in the set's newest one; the grant keeps that generation's id.
///
/// # Errors
/// `ScopeInvalid` for a part that is not `SET:CODE`, `ScopeSetUnknown` and `ScopeAreaUnknown` for what the
/// boundaries do not have.
pub async fn grant_scope(store: &dyn Store, typed: &str) -> Result<Scope, PeopleError> {
    let Scope::Areas(typed) = Scope::parse_list(typed).map_err(PeopleError::ScopeInvalid)? else {
        return Ok(Scope::Everything);
    };
    let generations = store.generations().await?;
    let mut newest_codes: HashMap<String, (i64, i64, BTreeSet<String>)> = HashMap::new();
    let mut granted = BTreeSet::new();
    for area in typed {
        if !newest_codes.contains_key(&area.set) {
            let newest = generations
                .iter()
                .filter(|generation| generation.set_name == area.set)
                .max_by_key(|generation| generation.generation)
                .ok_or_else(|| PeopleError::ScopeSetUnknown(area.set.clone()))?;
            let codes = store.generation_areas(newest.id).await?.into_iter().map(|stored| stored.code).collect();
            newest_codes.insert(area.set.clone(), (newest.id, newest.generation, codes));
        }
        let (generation_id, generation, codes) = &newest_codes[&area.set];
        if !codes.contains(&area.code) {
            return Err(PeopleError::ScopeAreaUnknown {
                area: area.to_string(),
                set: area.set.clone(),
                generation: *generation,
            });
        }
        granted.insert(AreaRef { generation_id: Some(*generation_id), ..area });
    }
    Ok(Scope::Areas(granted))
}

/// The scope typed, granted; `None` (no `--areas`) is everything.
async fn scope_or_everything(store: &dyn Store, areas: Option<&str>) -> Result<Scope, PeopleError> {
    match areas {
        Some(typed) => grant_scope(store, typed).await,
        None => Ok(Scope::Everything),
    }
}

/// Adds a person with a role and a scope (`None`: everything).
///
/// # Errors
/// A bad email, role or scope, an email taken, or the store fails; nothing is written.
pub async fn add_person(
    store: &dyn Store,
    email: &str,
    role: &str,
    areas: Option<&str>,
) -> Result<PersonInfo, PeopleError> {
    let email = normalise_email(email)?;
    let role = parse_role(role)?;
    let scope = scope_or_everything(store, areas).await?;
    store.add_person(&email, role, &scope).await.map_err(|error| match error {
        AddPersonError::EmailTaken(email) => PeopleError::EmailTaken(email),
        AddPersonError::Database(error) => PeopleError::Database(error),
    })
}

/// Gives a person a new role and, with `areas`, a new scope (without, the scope stays). Their tokens carry it from
/// their next request.
///
/// # Errors
/// A bad role or scope, no such person, or the store fails; nothing is written.
pub async fn set_role(
    store: &dyn Store,
    email: &str,
    role: &str,
    areas: Option<&str>,
) -> Result<PersonInfo, PeopleError> {
    let email = normalise_email(email)?;
    let role = parse_role(role)?;
    let scope = match areas {
        Some(typed) => Some(grant_scope(store, typed).await?),
        None => None,
    };
    if !store.set_person_role(&email, role, scope.as_ref()).await? {
        return Err(PeopleError::PersonUnknown(email));
    }
    store.person_by_email(&email).await?.ok_or(PeopleError::PersonUnknown(email))
}

/// Disables a person: their tokens are refused from the next request on every node.
///
/// # Errors
/// No such person, or the store fails.
pub async fn disable(store: &dyn Store, email: &str) -> Result<Revoked, PeopleError> {
    let email = normalise_email(email)?;
    match store.disable_person(&email).await? {
        Revoked::Unknown => Err(PeopleError::PersonUnknown(email)),
        done => Ok(done),
    }
}

/// A token issued to a person; the token itself is shown once and stored only as its hash.
#[derive(Clone)]
pub struct IssuedToken {
    pub id: Uuid,
    pub token: String,
    pub expires_at: Option<OffsetDateTime>,
}

impl std::fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedToken")
            .field("id", &self.id)
            .field("token", &"[redacted]")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// Issues an API token of a person (it carries their role and scope as they are at each request), expiring after
/// `expires` if given.
///
/// # Errors
/// No such person, a disabled one, or the store fails.
pub async fn issue_person_token(
    store: &dyn Store,
    email: &str,
    label: &str,
    expires: Option<Duration>,
) -> Result<IssuedToken, PeopleError> {
    let email = normalise_email(email)?;
    let person = store.person_by_email(&email).await?.ok_or_else(|| PeopleError::PersonUnknown(email.clone()))?;
    if person.disabled_at.is_some() {
        return Err(PeopleError::PersonDisabled(email));
    }
    let token = new_token(TokenKind::Api);
    let expires_at = expires.map(|expires| OffsetDateTime::now_utc() + expires);
    let id = store.add_person_token(person.id, label.trim(), &hash_token(&token), expires_at).await?;
    Ok(IssuedToken { id, token, expires_at })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_trimmed_and_lower_cased_and_bad_ones_named() {
        assert_eq!(normalise_email("  Ann.Lee@Example.ORG ").unwrap(), "ann.lee@example.org");
        for bad in ["", "ann", "@example.org", "ann@", "ann lee@example.org", "a@b@c"] {
            let error = normalise_email(bad).unwrap_err();
            assert_eq!(error.code(), ErrorCode::PersonEmailInvalid, "{bad}");
        }
    }

    #[test]
    fn expiries_are_days_or_hours_within_five_years() {
        assert_eq!(parse_expiry("90d").unwrap(), Duration::days(90));
        assert_eq!(parse_expiry("12h").unwrap(), Duration::hours(12));
        assert_eq!(parse_expiry("1825d").unwrap(), Duration::days(1825));
        for bad in ["", "d", "0d", "1826d", "43801h", "-1d", "90", "90m", "1.5d", "90 d", "9é"] {
            let error = parse_expiry(bad).unwrap_err();
            assert_eq!(error.code(), ErrorCode::TokenExpiryInvalid, "{bad}");
            assert!(error.to_string().contains("1d to 1825d"), "{error}");
        }
    }

    #[test]
    fn an_unknown_role_is_named() {
        assert_eq!(parse_role("analyst").unwrap(), Role::Analyst);
        let error = parse_role("superuser").unwrap_err();
        assert_eq!(error.code(), ErrorCode::RoleUnknown);
        assert!(error.to_string().contains("'superuser' is not a role"), "{error}");
    }

    #[test]
    fn an_issued_tokens_debug_shows_no_token() {
        let issued = IssuedToken { id: Uuid::nil(), token: "gva_secret".into(), expires_at: None };
        let shown = format!("{issued:?}");
        assert!(!shown.contains("gva_secret") && shown.contains("[redacted]"), "{shown}");
    }
}
