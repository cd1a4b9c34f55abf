//! Browser sign-in: local accounts' passwords and set-password links, sessions, failed sign-ins per account, and
//! OpenID Connect sign-ins in progress (docs/web.md). Times are whole seconds since 1970 on both backends, so the
//! statements below run unchanged on each; only a person's id is bound differently (text on SQLite).

pub(super) mod postgres;
pub(super) mod sqlite;

use super::PersonInfo;
use uuid::Uuid;

/// How a session was signed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignInMethod {
    Password,
    OpenIdConnect,
}

impl SignInMethod {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            SignInMethod::Password => "password",
            SignInMethod::OpenIdConnect => "oidc",
        }
    }

    fn parse(text: &str) -> anyhow::Result<SignInMethod> {
        match text {
            "password" => Ok(SignInMethod::Password),
            "oidc" => Ok(SignInMethod::OpenIdConnect),
            other => anyhow::bail!("a stored sign-in method '{other}' this build does not know"),
        }
    }
}

/// A session as stored, with its person as they are now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    pub person: PersonInfo,
    pub method: SignInMethod,
    pub created_at: i64,
    pub last_seen_at: i64,
    pub expires_at: i64,
    pub csrf_secret: Vec<u8>,
    pub ended_at: Option<i64>,
}

/// A session to open.
#[derive(Debug, Clone)]
pub struct NewSessionRecord {
    pub id_hash: String,
    pub person_id: Uuid,
    pub method: SignInMethod,
    pub created_at: i64,
    pub expires_at: i64,
    pub csrf_secret: Vec<u8>,
}

/// A set-password link as stored, with the person it is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordLinkRecord {
    pub person: PersonInfo,
    pub expires_at: i64,
    pub used_at: Option<i64>,
}

/// An OpenID Connect sign-in begun here and not yet finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingSignIn {
    pub state_hash: String,
    pub nonce: String,
    pub pkce_verifier: String,
    /// Where the person goes once signed in: a path of this server.
    pub return_to: String,
    pub expires_at: i64,
}

#[async_trait::async_trait]
pub trait SessionStore: Send + Sync {
    /// The person with this email and their password hash (`None`: they have set none).
    async fn person_with_password(&self, email: &str) -> anyhow::Result<Option<(PersonInfo, Option<String>)>>;

    /// Stores a set-password link for a person (its hash).
    async fn add_password_link(
        &self,
        person_id: Uuid,
        token_hash: &str,
        created_at: i64,
        expires_at: i64,
    ) -> anyhow::Result<()>;

    /// The link with this hash, used or not.
    async fn password_link(&self, token_hash: &str) -> anyhow::Result<Option<PasswordLinkRecord>>;

    /// Uses the link and sets its person's password, in one transaction: `false` (nothing changed) if the link is
    /// unknown, used already or past `expires_at` at `now`. Every session the person had is ended, as a new password
    /// is how someone locks out whoever knew the old one.
    async fn use_password_link(&self, token_hash: &str, now: i64, password_hash: &str) -> anyhow::Result<bool>;

    /// Records a failed password sign-in for an account, and forgets that account's failures older than `forget_before`.
    async fn record_sign_in_failure(&self, email: &str, at: i64, forget_before: i64) -> anyhow::Result<()>;

    /// How many failed sign-ins an account has had since `since`.
    async fn sign_in_failures_since(&self, email: &str, since: i64) -> anyhow::Result<i64>;

    /// Opens a session, and forgets sessions that ended or expired before `forget_before`.
    async fn open_session(&self, session: &NewSessionRecord, forget_before: i64) -> anyhow::Result<()>;

    /// The session with this id hash, ended or not, with its person.
    async fn session(&self, id_hash: &str) -> anyhow::Result<Option<SessionRecord>>;

    /// Notes that the session was used at `at`.
    async fn touch_session(&self, id_hash: &str, at: i64) -> anyhow::Result<()>;

    /// Ends a session; `false` if it had ended already (or never was).
    async fn end_session(&self, id_hash: &str, at: i64) -> anyhow::Result<bool>;

    /// Keeps an OpenID Connect sign-in begun here, and forgets those that expired before `forget_before`.
    async fn save_sign_in_state(&self, pending: &PendingSignIn, forget_before: i64) -> anyhow::Result<()>;

    /// Takes (removes and returns) the sign-in begun with this state's hash: a second call finds nothing.
    async fn take_sign_in_state(&self, state_hash: &str) -> anyhow::Result<Option<PendingSignIn>>;
}

const PERSON_WITH_PASSWORD: &str =
    "SELECT id, email, role, scope, created_at, disabled_at, password_hash FROM people WHERE email = $1";

const INSERT_PASSWORD_LINK: &str =
    "INSERT INTO password_links (token_hash, person_id, created_at, expires_at) VALUES ($1, $2, $3, $4)";

const SELECT_PASSWORD_LINK: &str = "SELECT p.id, p.email, p.role, p.scope, p.created_at, p.disabled_at,
            l.expires_at AS link_expires_at, l.used_at AS link_used_at
     FROM password_links l JOIN people p ON p.id = l.person_id
     WHERE l.token_hash = $1";

/// Marks the link used, if it may be; `RETURNING` names its person.
const USE_PASSWORD_LINK: &str = "UPDATE password_links SET used_at = $2
     WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2
     RETURNING person_id";

const SET_PASSWORD: &str = "UPDATE people SET password_hash = $2 WHERE id = $1";

const END_SESSIONS_OF: &str = "UPDATE sessions SET ended_at = $2 WHERE person_id = $1 AND ended_at IS NULL";

const INSERT_FAILURE: &str = "INSERT INTO sign_in_failures (email, at) VALUES ($1, $2)";

const FORGET_FAILURES: &str = "DELETE FROM sign_in_failures WHERE email = $1 AND at < $2";

const COUNT_FAILURES: &str = "SELECT COUNT(*) FROM sign_in_failures WHERE email = $1 AND at >= $2";

const INSERT_SESSION: &str = "INSERT INTO sessions
        (id_hash, person_id, method, created_at, last_seen_at, expires_at, csrf_secret)
     VALUES ($1, $2, $3, $4, $4, $5, $6)";

const FORGET_SESSIONS: &str = "DELETE FROM sessions WHERE expires_at < $1 OR ended_at < $1";

const SELECT_SESSION: &str = "SELECT p.id, p.email, p.role, p.scope, p.created_at, p.disabled_at,
            s.method, s.created_at AS session_created_at, s.last_seen_at, s.expires_at, s.csrf_secret, s.ended_at
     FROM sessions s JOIN people p ON p.id = s.person_id
     WHERE s.id_hash = $1";

const TOUCH_SESSION: &str = "UPDATE sessions SET last_seen_at = $2 WHERE id_hash = $1 AND last_seen_at < $2";

const END_SESSION: &str = "UPDATE sessions SET ended_at = $2 WHERE id_hash = $1 AND ended_at IS NULL";

const INSERT_SIGN_IN_STATE: &str = "INSERT INTO sign_in_states (state_hash, nonce, pkce_verifier, return_to, expires_at)
     VALUES ($1, $2, $3, $4, $5)";

const FORGET_SIGN_IN_STATES: &str = "DELETE FROM sign_in_states WHERE expires_at < $1";

const TAKE_SIGN_IN_STATE: &str = "DELETE FROM sign_in_states WHERE state_hash = $1
     RETURNING state_hash, nonce, pkce_verifier, return_to, expires_at";

/// The session columns of `SELECT_SESSION`, read alike on both backends.
#[derive(sqlx::FromRow)]
struct SessionColumns {
    method: String,
    session_created_at: i64,
    last_seen_at: i64,
    expires_at: i64,
    csrf_secret: Vec<u8>,
    ended_at: Option<i64>,
}

impl SessionColumns {
    fn into_record(self, person: PersonInfo) -> anyhow::Result<SessionRecord> {
        Ok(SessionRecord {
            person,
            method: SignInMethod::parse(&self.method)?,
            created_at: self.session_created_at,
            last_seen_at: self.last_seen_at,
            expires_at: self.expires_at,
            csrf_secret: self.csrf_secret,
            ended_at: self.ended_at,
        })
    }
}

#[derive(sqlx::FromRow)]
struct PendingSignInRow {
    state_hash: String,
    nonce: String,
    pkce_verifier: String,
    return_to: String,
    expires_at: i64,
}

impl From<PendingSignInRow> for PendingSignIn {
    fn from(row: PendingSignInRow) -> Self {
        PendingSignIn {
            state_hash: row.state_hash,
            nonce: row.nonce,
            pkce_verifier: row.pkce_verifier,
            return_to: row.return_to,
            expires_at: row.expires_at,
        }
    }
}
