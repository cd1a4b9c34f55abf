//! Signing in with a browser (docs/web.md): local accounts' passwords and their one-time set-password links,
//! sessions (opened, read at every request, ended), and the audit entries of each. OpenID Connect (`usecase::oidc`)
//! ends in `open_session` too.
//!
//! Secrets never rest in the database as themselves: the session id in the cookie, a set-password link's token and
//! an OpenID Connect `state` are stored as their SHA-256; passwords as argon2id hashes (`identity::password`).

use std::time::Duration;

use base64::Engine as _;
use grapevine_sync_proto::ErrorCode;
use hmac::{Hmac, Mac};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretBox, SecretString};
use serde_json::json;
use sha2::Sha256;
use time::OffsetDateTime;

use super::{UseCaseError, UseCases};
use crate::audit::{AuditOutcome, NewAuditEntry};
use crate::auth::hash_token;
use crate::domain::{Actor, Principal, RequestContext};
use crate::identity::password;
use crate::store::{NewSessionRecord, PersonInfo, SignInMethod};

/// How long a set-password link stays valid.
pub const PASSWORD_LINK_VALID: Duration = Duration::from_secs(24 * 60 * 60);

/// Failed password sign-ins an account may have in `FAILURE_WINDOW` before every sign-in to it is refused until the
/// oldest ages out. Counted in the database, so every node holds the same count.
pub const FAILURES_PER_ACCOUNT: i64 = 10;
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60 * 60);

/// Failed sign-ins one network (`RequestContext::network`) may make at once, and per minute after that.
pub const FAILURES_PER_NETWORK_BURST: f64 = 10.0;
pub const FAILURES_PER_NETWORK_PER_MINUTE: f64 = 10.0;

/// What a refused sign-in was too many of.
const TOO_MANY_ATTEMPTS: &str = "too many attempts";

/// A session's `last_seen_at` is written at most this often, so reading pages does not write on every request.
const TOUCH_EVERY: i64 = 60;

/// How long sessions live (flags `--session-idle`, `--session-lifetime`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionPolicy {
    /// Ended after this long without a request.
    pub idle: Duration,
    /// Ended this long after signing in, however busy.
    pub lifetime: Duration,
}

impl Default for SessionPolicy {
    fn default() -> Self {
        SessionPolicy { idle: Duration::from_secs(30 * 60), lifetime: Duration::from_secs(12 * 60 * 60) }
    }
}

/// A session just opened: the adapter sets `cookie_value` as the session cookie.
#[derive(Debug)]
pub struct NewSession {
    pub cookie_value: SecretString,
    pub person: PersonInfo,
    pub expires_at: OffsetDateTime,
}

/// A live session, read from its cookie at the start of a request.
#[derive(Debug)]
pub struct SignedIn {
    /// The person, with their role and scope as they are now.
    pub principal: Principal,
    pub person: PersonInfo,
    pub method: SignInMethod,
    pub signed_in_at: OffsetDateTime,
    /// When the session ends however it is used.
    pub expires_at: OffsetDateTime,
    id_hash: String,
    csrf_key: SecretBox<Vec<u8>>,
}

impl SignedIn {
    /// The token a form whose action is `form_action` carries: an HMAC of the action under the session's own key, so
    /// a token works only in this session and only for that form.
    #[must_use]
    pub fn csrf_token(&self, form_action: &str) -> String {
        let tag = self.csrf_mac(form_action).finalize().into_bytes();
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(tag)
    }

    /// Whether `token` is the one `csrf_token(form_action)` gives (compared in constant time).
    #[must_use]
    pub fn csrf_matches(&self, form_action: &str, token: &str) -> bool {
        let Ok(tag) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token.trim()) else { return false };
        self.csrf_mac(form_action).verify_slice(&tag).is_ok()
    }

    fn csrf_mac(&self, form_action: &str) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.csrf_key.expose_secret()).expect("HMAC takes any key");
        mac.update(form_action.as_bytes());
        mac
    }
}

/// A one-time link's secret part, to be put into `/set-password/<token>`.
#[derive(Debug)]
pub struct SetPasswordLink {
    pub token: SecretString,
    pub person: PersonInfo,
    pub expires_at: OffsetDateTime,
}

/// 256 random bits, URL-safe.
pub(crate) fn random_secret() -> SecretString {
    let mut bytes = [0_u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    SecretString::from(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

fn unix(at: OffsetDateTime) -> i64 {
    at.unix_timestamp()
}

fn seconds(duration: Duration) -> i64 {
    i64::try_from(duration.as_secs()).unwrap_or(i64::MAX)
}

fn time_of(unix: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(unix).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// The principal a person acts as.
pub(crate) fn person_principal(person: &PersonInfo, context: RequestContext) -> Principal {
    Principal {
        actor: Actor::Person { person_id: person.id, email: person.email.clone() },
        role: person.role,
        scope: person.scope.clone(),
        context,
    }
}

/// A refusal in the code's own words.
pub(super) fn refused(code: ErrorCode) -> UseCaseError {
    UseCaseError::Unauthenticated { code, message: code.explain().en.to_owned() }
}

impl UseCases {
    /// Signs a person in with their email and password. An unknown email, an account with no password yet and a
    /// wrong password are refused alike (`sign_in_refused`), after the same work; a disabled person is told so only
    /// once their password is right.
    ///
    /// # Errors
    /// `Unauthenticated` (`sign_in_refused`, `person_disabled`); `RateLimited` when the account or the network has
    /// failed too often; the store fails.
    pub async fn sign_in_with_password(
        &self,
        email: &str,
        password: &SecretString,
        context: RequestContext,
    ) -> Result<NewSession, UseCaseError> {
        let now = OffsetDateTime::now_utc();
        let network = context.network();
        if !self.sign_in_failures.allow(network) {
            let retry_after = self.sign_in_failures.wait(&network);
            self.record_refused_sign_in(&context, email, ErrorCode::RateLimited, "network").await?;
            return Err(UseCaseError::RateLimited { reason: TOO_MANY_ATTEMPTS, retry_after });
        }
        let email = crate::people::normalise_email(email).unwrap_or_else(|_| email.trim().to_lowercase());
        let since = unix(now) - seconds(FAILURE_WINDOW);
        if self.store.sign_in_failures_since(&email, since).await? >= FAILURES_PER_ACCOUNT {
            self.sign_in_failures.refund(&network);
            self.record_refused_sign_in(&context, &email, ErrorCode::RateLimited, "account").await?;
            return Err(UseCaseError::RateLimited { reason: TOO_MANY_ATTEMPTS, retry_after: FAILURE_WINDOW });
        }
        let found = self.store.person_with_password(&email).await?;
        let checked = password.clone();
        let verified = tokio::task::spawn_blocking(move || match found {
            Some((person, Some(phc))) => password::verify(&checked, &phc).then_some(person),
            _ => {
                password::verify_nothing(&checked);
                None
            }
        })
        .await
        .map_err(|error| anyhow::anyhow!("verifying a password: {error}"))?;
        let Some(person) = verified else {
            self.store.record_sign_in_failure(&email, unix(now), since).await?;
            self.record_refused_sign_in(&context, &email, ErrorCode::SignInRefused, "password").await?;
            return Err(refused(ErrorCode::SignInRefused));
        };
        // Only failures spend the network's budget.
        self.sign_in_failures.refund(&network);
        if person.disabled_at.is_some() {
            self.record_refused_sign_in(&context, &email, ErrorCode::PersonDisabled, "disabled").await?;
            return Err(refused(ErrorCode::PersonDisabled));
        }
        self.open_session(person, SignInMethod::Password, context).await
    }

    /// Opens a session for a person whose identity was just proved (a password, or the identity provider), and
    /// records the sign-in.
    ///
    /// # Errors
    /// The store fails (then there is no session).
    pub(crate) async fn open_session(
        &self,
        person: PersonInfo,
        method: SignInMethod,
        context: RequestContext,
    ) -> Result<NewSession, UseCaseError> {
        let now = OffsetDateTime::now_utc();
        let principal = person_principal(&person, context);
        let detail = json!({ "method": method.as_str() });
        self.record(&principal, "session.sign_in", &format!("person:{}", person.email), AuditOutcome::Allowed, detail)
            .await?;
        let cookie_value = random_secret();
        let mut csrf_secret = vec![0_u8; 32];
        rand::rng().fill_bytes(&mut csrf_secret);
        let expires_at = unix(now) + seconds(self.sessions.lifetime);
        let record = NewSessionRecord {
            id_hash: hash_token(cookie_value.expose_secret()),
            person_id: person.id,
            method,
            created_at: unix(now),
            expires_at,
            csrf_secret,
        };
        // Sessions that ended or expired a day ago are forgotten as new ones open.
        self.store.open_session(&record, unix(now) - 24 * 60 * 60).await?;
        Ok(NewSession { cookie_value, person, expires_at: time_of(expires_at) })
    }

    /// The live session a cookie names, with its person as they are now. Reading a session is not recorded (every
    /// page would be); signing in and out are.
    ///
    /// # Errors
    /// `Unauthenticated`: `unauthorized` (no such session), `session_expired` (signed out, idle too long, or past its
    /// lifetime), `person_disabled`; the store fails.
    pub async fn session(&self, cookie_value: &str, context: RequestContext) -> Result<SignedIn, UseCaseError> {
        let now = unix(OffsetDateTime::now_utc());
        let id_hash = hash_token(cookie_value);
        let Some(session) = self.store.session(&id_hash).await? else { return Err(UseCaseError::unauthorized()) };
        let idle_since = session.last_seen_at + seconds(self.sessions.idle);
        if session.ended_at.is_some() || now >= session.expires_at || now >= idle_since {
            if session.ended_at.is_none() {
                self.store.end_session(&id_hash, now).await?;
            }
            return Err(refused(ErrorCode::SessionExpired));
        }
        if session.person.disabled_at.is_some() {
            return Err(refused(ErrorCode::PersonDisabled));
        }
        if now - session.last_seen_at >= TOUCH_EVERY {
            self.store.touch_session(&id_hash, now).await?;
        }
        Ok(SignedIn {
            principal: person_principal(&session.person, context),
            person: session.person,
            method: session.method,
            signed_in_at: time_of(session.created_at),
            expires_at: time_of(session.expires_at),
            id_hash,
            csrf_key: SecretBox::new(Box::new(session.csrf_secret)),
        })
    }

    /// Ends the session, recorded.
    ///
    /// # Errors
    /// The entry cannot be written, or the store fails.
    pub async fn sign_out(&self, signed_in: &SignedIn) -> Result<(), UseCaseError> {
        let target = format!("person:{}", signed_in.person.email);
        self.record(&signed_in.principal, "session.sign_out", &target, AuditOutcome::Allowed, json!({})).await?;
        self.store.end_session(&signed_in.id_hash, unix(OffsetDateTime::now_utc())).await?;
        Ok(())
    }

    /// A form sent with a wrong or missing CSRF token (or from another origin): nothing was done; this records it.
    ///
    /// # Errors
    /// The entry cannot be written.
    pub async fn record_csrf_refusal(
        &self,
        signed_in: Option<&SignedIn>,
        context: &RequestContext,
        path: &str,
    ) -> Result<(), UseCaseError> {
        let detail = json!({ "code": ErrorCode::CsrfInvalid.as_str() });
        match signed_in {
            Some(signed_in) => {
                self.record(&signed_in.principal, "csrf.refused", path, AuditOutcome::Refused, detail).await
            }
            None => self.record_anonymous_refusal(context, "csrf.refused", path, detail).await,
        }
    }

    /// A refused sign-in in the trail (never the password): anonymous, within the network's budget of refusals.
    ///
    /// # Errors
    /// The entry cannot be written.
    pub(crate) async fn record_refused_sign_in(
        &self,
        context: &RequestContext,
        email: &str,
        code: ErrorCode,
        why: &str,
    ) -> Result<(), UseCaseError> {
        let detail = json!({ "code": code.as_str(), "why": why });
        self.record_anonymous_refusal(
            context,
            "session.refused",
            &format!("person:{}", crate::domain::shown(email)),
            detail,
        )
        .await
    }

    /// An entry with no known actor (`anonymous`: a refused credential, sign-in or form), within the per-network
    /// budget of `REFUSALS_RECORDED_PER_MINUTE`, so nobody can fill the trail; beyond it, said once in the log as the
    /// budget runs out.
    pub(super) async fn record_anonymous_refusal(
        &self,
        context: &RequestContext,
        verb: &str,
        target: &str,
        detail: serde_json::Value,
    ) -> Result<(), UseCaseError> {
        let network = context.network();
        if !self.refusals_recorded.allow(network) {
            return Ok(());
        }
        if !self.refusals_recorded.wait(&network).is_zero() {
            tracing::warn!(%network, "many refusals from this network; the rest are refused unrecorded for now");
        }
        let entry = NewAuditEntry {
            actor: "anonymous".into(),
            role: String::new(),
            action: verb.into(),
            target: target.into(),
            outcome: AuditOutcome::Refused,
            client_addr: context.client_addr.map(|address| address.to_string()),
            request_id: context.request_id.clone(),
            detail,
        };
        self.store.append_audit(entry).await?;
        Ok(())
    }
}

/// A set-password link that cannot be used: answered as absent, whichever the reason.
fn link_invalid() -> UseCaseError {
    UseCaseError::NotFound {
        code: ErrorCode::PasswordLinkInvalid,
        message: ErrorCode::PasswordLinkInvalid.explain().en.to_owned(),
    }
}

impl UseCases {
    /// A one-time link for a person to set their password (`grapevine user add` without an identity provider, or
    /// an admin's "new link" on the people page). It replaces none: each link is valid for 24 hours, once.
    ///
    /// # Errors
    /// Refused; no such person, or a disabled one; the store fails.
    pub async fn issue_password_link(
        &self,
        principal: &Principal,
        email: &str,
    ) -> Result<SetPasswordLink, UseCaseError> {
        let email = crate::people::normalise_email(email)?;
        let target = format!("person:{email}");
        self.audited(
            principal,
            crate::domain::Action::ManagePeople,
            "person.password_link",
            &target,
            json!({}),
            async {
                let (person, _) = self
                    .store
                    .person_with_password(&email)
                    .await?
                    .ok_or_else(|| UseCaseError::from(crate::people::PeopleError::PersonUnknown(email.clone())))?;
                if person.disabled_at.is_some() {
                    return Err(refused(ErrorCode::PersonDisabled));
                }
                let now = OffsetDateTime::now_utc();
                let token = random_secret();
                let expires_at = unix(now) + seconds(PASSWORD_LINK_VALID);
                self.store
                    .add_password_link(person.id, &hash_token(token.expose_secret()), unix(now), expires_at)
                    .await?;
                Ok(SetPasswordLink { token, person, expires_at: time_of(expires_at) })
            },
        )
        .await
    }

    /// The person a set-password link is for, while it may still be used (the page shows whose password is set).
    ///
    /// # Errors
    /// `NotFound` (`password_link_invalid`): unknown, used, expired, or its person disabled; the store fails.
    pub async fn password_link_holder(&self, token: &str) -> Result<PersonInfo, UseCaseError> {
        let now = unix(OffsetDateTime::now_utc());
        match self.store.password_link(&hash_token(token)).await? {
            Some(link) if link.used_at.is_none() && now < link.expires_at && link.person.disabled_at.is_none() => {
                Ok(link.person)
            }
            _ => Err(link_invalid()),
        }
    }

    /// Sets a password through a one-time link, which is used up; every session the person had is ended. Recorded
    /// as the person's own action.
    ///
    /// # Errors
    /// `NotFound` (`password_link_invalid`); `Invalid` (`password_too_short`, `password_too_common`: the link stays
    /// usable); the store fails.
    pub async fn set_password(
        &self,
        token: &str,
        new_password: &SecretString,
        context: RequestContext,
    ) -> Result<PersonInfo, UseCaseError> {
        let person = self.password_link_holder(token).await?;
        password::check_new(new_password)
            .map_err(|refusal| UseCaseError::Invalid { code: refusal.code(), message: refusal.to_string() })?;
        let principal = person_principal(&person, context);
        let target = format!("person:{}", person.email);
        self.record(&principal, "person.set_password", &target, AuditOutcome::Allowed, json!({})).await?;
        let to_hash = new_password.clone();
        let phc = tokio::task::spawn_blocking(move || password::hash(&to_hash))
            .await
            .map_err(|error| anyhow::anyhow!("hashing a password: {error}"))??;
        let now = unix(OffsetDateTime::now_utc());
        if self.store.use_password_link(&hash_token(token), now, &phc).await? {
            Ok(person)
        } else {
            // Used by a second request in the meantime.
            let detail = json!({ "code": ErrorCode::PasswordLinkInvalid.as_str() });
            self.record(&principal, "person.set_password", &target, AuditOutcome::Failed, detail).await?;
            Err(link_invalid())
        }
    }
}
