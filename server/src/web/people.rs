//! `/people` (admins): everyone with their role, scope and status; adding a person (and, without an identity
//! provider, the one-time link to set their password), changing a role and scope, disabling, new set-password links,
//! and API tokens (issued and shown once, listed, revoked). Every form is a POST with its CSRF token; each answers
//! with the page again, saying what was done or what was wrong with which field.

use askama::Template;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use grapevine_sync_proto::ErrorCode;
use secrecy::ExposeSecret;
use time::OffsetDateTime;

use super::page::{page_time, render, FormErrors, Nav, PageError, Shell};
use super::session::{Form, Signed, SignedForm};
use crate::app::AppState;
use crate::domain::{Role, Scope};
use crate::usecase::sign_in::SignedIn;
use crate::usecase::UseCaseError;

const ADD: &str = "/people/add";
const ROLE: &str = "/people/role";
const DISABLE: &str = "/people/disable";
const LINK: &str = "/people/password-link";
const TOKEN: &str = "/people/token";
const REVOKE: &str = "/people/token/revoke";

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/people", get(people))
        .route(ADD, post(add))
        .route(ROLE, post(change_role))
        .route(DISABLE, post(disable))
        .route(LINK, post(password_link))
        .route(TOKEN, post(issue_token))
        .route(REVOKE, post(revoke_token))
}

/// What was just done, said at the top of the page; `secret` is a one-time link or token, shown this once.
#[derive(Debug, Default)]
struct Notice {
    message: String,
    secret: Option<String>,
    after: Option<String>,
}

impl Notice {
    fn said(message: impl Into<String>) -> Notice {
        Notice { message: message.into(), ..Notice::default() }
    }
}

struct PersonRow {
    email: String,
    role: &'static str,
    scope: String,
    active: bool,
    status: String,
}

struct TokenRow {
    id: String,
    label: String,
    whose: String,
    role: &'static str,
    created: String,
    expires: String,
    active: bool,
    status: String,
}

/// The CSRF tokens of the page's forms.
struct Tokens {
    add: String,
    role: String,
    disable: String,
    link: String,
    token: String,
    revoke: String,
}

#[derive(Template)]
#[template(path = "people.html")]
struct PeoplePage {
    shell: Shell,
    errors: FormErrors,
    notice: Option<Notice>,
    people: Vec<PersonRow>,
    tokens: Vec<TokenRow>,
    roles: [&'static str; 5],
    /// The form that came back with errors (its action), and what it held.
    sent: Option<(&'static str, Form)>,
    csrf: Tokens,
    /// No identity provider: people sign in with passwords set through one-time links.
    local_accounts: bool,
}

impl PeoplePage {
    /// The value the field `name` of the form `action` had, when that form came back with errors (else empty).
    fn value(&self, action: &str, name: &str) -> &str {
        match &self.sent {
            Some((sent, form)) if *sent == action => form.get(name),
            _ => "",
        }
    }

    /// Whether `role` is the one to select in the form `action` (`analyst` unless it came back with another).
    fn role_selected(&self, action: &str, role: &str) -> bool {
        match self.value(action, "role") {
            "" => role == "analyst",
            chosen => chosen == role,
        }
    }

    /// Whether `email` is the one to select in the form `action`.
    fn email_selected(&self, action: &str, email: &str) -> bool {
        self.value(action, "email").trim().eq_ignore_ascii_case(email)
    }
}

/// What the page says after a form.
enum Outcome {
    /// Nothing was sent.
    Shown,
    Done(Notice),
    /// The form `action` was refused: its errors, and what it held.
    Refused {
        action: &'static str,
        errors: FormErrors,
        form: Form,
    },
}

/// The people page, after whatever was done or refused.
async fn page(state: &AppState, signed: &SignedIn, outcome: Outcome) -> Response {
    let (errors, notice, sent) = match outcome {
        Outcome::Shown => (FormErrors::default(), None, None),
        Outcome::Done(notice) => (FormErrors::default(), Some(notice), None),
        Outcome::Refused { action, errors, form } => (errors, None, Some((action, form))),
    };
    let principal = &signed.principal;
    let (people, tokens) = match (state.usecases.people(principal).await, state.usecases.api_tokens(principal).await) {
        (Ok(people), Ok(tokens)) => (people, tokens),
        (Err(error), _) | (_, Err(error)) => return PageError::from_use_case(error, signed).into_response(),
    };
    let now = OffsetDateTime::now_utc();
    let people = people
        .into_iter()
        .map(|person| PersonRow {
            role: person.role.as_str(),
            scope: match &person.scope {
                Scope::Everything => "Everywhere".to_owned(),
                areas => areas.describe(),
            },
            active: person.disabled_at.is_none(),
            status: person.disabled_at.map_or_else(|| "Active".to_owned(), |at| format!("Disabled {}", page_time(at))),
            email: person.email,
        })
        .collect();
    let tokens = tokens
        .into_iter()
        .map(|token| {
            let expired = token.expires_at.is_some_and(|at| at <= now);
            TokenRow {
                id: token.id.to_string(),
                whose: token.person_email.unwrap_or_else(|| "Service account".to_owned()),
                role: token.role.as_str(),
                created: page_time(token.created_at),
                expires: token.expires_at.map_or_else(|| "Never".to_owned(), page_time),
                active: token.revoked_at.is_none() && !expired,
                status: match (token.revoked_at, expired) {
                    (Some(at), _) => format!("Revoked {}", page_time(at)),
                    (None, true) => "Expired".to_owned(),
                    (None, false) => "Active".to_owned(),
                },
                label: token.label,
            }
        })
        .collect();
    let status = if errors.is_empty() { StatusCode::OK } else { StatusCode::UNPROCESSABLE_ENTITY };
    let csrf = Tokens {
        add: signed.csrf_token(ADD),
        role: signed.csrf_token(ROLE),
        disable: signed.csrf_token(DISABLE),
        link: signed.csrf_token(LINK),
        token: signed.csrf_token(TOKEN),
        revoke: signed.csrf_token(REVOKE),
    };
    let page = PeoplePage {
        shell: Shell::signed(signed, "People", Nav::People).with_errors(&errors),
        errors,
        notice,
        people,
        tokens,
        roles: Role::ALL.map(Role::as_str),
        sent,
        csrf,
        local_accounts: !state.usecases.oidc_enabled(),
    };
    render(status, &page)
}

async fn people(State(state): State<AppState>, Signed(signed): Signed) -> Response {
    page(&state, &signed, Outcome::Shown).await
}

/// A refusal of a form: its field's error on the page, or (refused outright, a failure) a page of its own.
async fn refused(
    state: &AppState,
    signed: &SignedIn,
    error: UseCaseError,
    (action, form): (&'static str, Form),
    field_of: impl Fn(ErrorCode) -> &'static str,
) -> Response {
    let (code, message) = match error {
        UseCaseError::Invalid { code, message } | UseCaseError::NotFound { code, message } => (code, message),
        UseCaseError::Unauthenticated { code: code @ ErrorCode::PersonDisabled, message } => (code, message),
        other => return PageError::from_use_case(other, signed).into_response(),
    };
    let said = match code {
        ErrorCode::ScopeInvalid | ErrorCode::ScopeAreaUnknown | ErrorCode::TokenExpiryInvalid => {
            format!("{} ({message})", code.explain().en)
        }
        _ => code.explain().en.to_owned(),
    };
    page(state, signed, Outcome::Refused { action, errors: FormErrors::one(field_of(code), said), form }).await
}

/// The areas field: empty is none given.
fn areas(form: &Form) -> Option<&str> {
    Some(form.get("areas").trim()).filter(|areas| !areas.is_empty())
}

/// Where people's browsers reach this server: the public URL, or the host this request was sent to.
fn base_url(state: &AppState, headers: &HeaderMap) -> String {
    if let Some(public) = &state.config.web.public_url {
        return public.trim_end_matches('/').to_owned();
    }
    let scheme = if state.config.web.https() { "https" } else { "http" };
    let host = headers.get(header::HOST).and_then(|host| host.to_str().ok()).unwrap_or("localhost");
    format!("{scheme}://{host}")
}

/// The notice for a one-time set-password link.
fn link_notice(
    state: &AppState,
    headers: &HeaderMap,
    link: &crate::usecase::sign_in::SetPasswordLink,
    first: &str,
) -> Notice {
    Notice {
        message: format!("{first} Send them this link to set their password:"),
        secret: Some(format!("{}/set-password/{}", base_url(state, headers), link.token.expose_secret())),
        after: Some(format!(
            "It works once, until {} (24 hours). It is shown only now: copy it before you leave this page.",
            page_time(link.expires_at)
        )),
    }
}

async fn add(State(state): State<AppState>, headers: HeaderMap, SignedForm { signed, form }: SignedForm) -> Response {
    let principal = &signed.principal;
    let added = state.usecases.add_person(principal, form.get("email"), form.get("role"), areas(&form)).await;
    let person = match added {
        Ok(person) => person,
        Err(error) => {
            return refused(&state, &signed, error, (ADD, form), |code| match code {
                ErrorCode::RoleUnknown => "add-role",
                ErrorCode::ScopeInvalid | ErrorCode::ScopeAreaUnknown => "add-areas",
                _ => "add-email",
            })
            .await;
        }
    };
    let first = format!("{} was added as {}.", person.email, person.role);
    let notice = if state.usecases.oidc_enabled() {
        Notice::said(format!("{first} They sign in with their organisation's account."))
    } else {
        match state.usecases.issue_password_link(principal, &person.email).await {
            Ok(link) => link_notice(&state, &headers, &link, &first),
            Err(error) => return PageError::from_use_case(error, &signed).into_response(),
        }
    };
    page(&state, &signed, Outcome::Done(notice)).await
}

async fn change_role(State(state): State<AppState>, SignedForm { signed, form }: SignedForm) -> Response {
    let changed = state.usecases.set_role(&signed.principal, form.get("email"), form.get("role"), areas(&form)).await;
    match changed {
        Ok(person) => {
            let notice = Notice::said(format!(
                "{} is now {}, for {}.",
                person.email,
                person.role,
                match &person.scope {
                    Scope::Everything => "everywhere".to_owned(),
                    areas => areas.describe(),
                }
            ));
            page(&state, &signed, Outcome::Done(notice)).await
        }
        Err(error) => {
            refused(&state, &signed, error, (ROLE, form), |code| match code {
                ErrorCode::RoleUnknown => "change-role",
                ErrorCode::ScopeInvalid | ErrorCode::ScopeAreaUnknown => "change-areas",
                _ => "change-email",
            })
            .await
        }
    }
}

async fn disable(State(state): State<AppState>, SignedForm { signed, form }: SignedForm) -> Response {
    let email = form.get("email").trim().to_lowercase();
    match state.usecases.disable_person(&signed.principal, &email).await {
        Ok(now) => {
            let said = if now {
                format!("{email} is disabled: they are signed out, and their tokens no longer work.")
            } else {
                format!("{email} was disabled already.")
            };
            page(&state, &signed, Outcome::Done(Notice::said(said))).await
        }
        Err(error) => refused(&state, &signed, error, (DISABLE, form), |_| "disable-email").await,
    }
}

async fn password_link(
    State(state): State<AppState>,
    headers: HeaderMap,
    SignedForm { signed, form }: SignedForm,
) -> Response {
    match state.usecases.issue_password_link(&signed.principal, form.get("email")).await {
        Ok(link) => {
            let notice = link_notice(&state, &headers, &link, &format!("A new link for {}.", link.person.email));
            page(&state, &signed, Outcome::Done(notice)).await
        }
        Err(error) => refused(&state, &signed, error, (LINK, form), |_| "link-email").await,
    }
}

async fn issue_token(State(state): State<AppState>, SignedForm { signed, form }: SignedForm) -> Response {
    let label = form.get("label").trim();
    if label.is_empty() {
        let errors = FormErrors::one("token-label", "Enter a label that says what the token is for");
        return page(&state, &signed, Outcome::Refused { action: TOKEN, errors, form }).await;
    }
    let expires = match form.get("expires").trim() {
        "" => None,
        typed => match crate::people::parse_expiry(typed) {
            Ok(expires) => Some(expires),
            Err(error) => return refused(&state, &signed, error.into(), (TOKEN, form), |_| "token-expires").await,
        },
    };
    match state.usecases.issue_person_token(&signed.principal, form.get("email"), label, expires).await {
        Ok(issued) => {
            let notice = Notice {
                message: format!("A token for {} ({label}):", form.get("email").trim().to_lowercase()),
                secret: Some(issued.token.clone()),
                after: Some(
                    "It is shown only now: copy it before you leave this page. It is sent in the header \
                     Authorization: Bearer <token>."
                        .to_owned(),
                ),
            };
            page(&state, &signed, Outcome::Done(notice)).await
        }
        Err(error) => refused(&state, &signed, error, (TOKEN, form), |_| "token-email").await,
    }
}

async fn revoke_token(State(state): State<AppState>, SignedForm { signed, form }: SignedForm) -> Response {
    let Ok(id) = form.get("id").trim().parse::<uuid::Uuid>() else {
        return PageError::not_found().for_person(&signed).into_response();
    };
    match state.usecases.revoke_api_token(&signed.principal, id).await {
        Ok(now) => {
            let said =
                if now { "The token is revoked: it no longer works." } else { "That token was revoked already." };
            page(&state, &signed, Outcome::Done(Notice::said(said))).await
        }
        Err(error) => PageError::from_use_case(error, &signed).into_response(),
    }
}
