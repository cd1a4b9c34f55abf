//! Signing in and out, and setting a password through a one-time link: `/sign-in` (a password, or the
//! organisation's identity provider through `/sign-in/oidc`), `POST /sign-out`, `/set-password/{token}`.

use askama::Template;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use grapevine_sync_proto::ErrorCode;
use secrecy::{ExposeSecret, SecretString};

use super::page::{render, FormErrors, PageError, Shell};
use super::session::{removed_cookie, session_cookie, AnonymousForm, Context, Form, SignedForm};
use crate::app::{AppState, WebConfig};
use crate::domain::local_path;
use crate::usecase::sign_in::NewSession;
use crate::usecase::UseCaseError;

/// The sign-out form's action (its CSRF token is made for it).
pub(crate) const SIGN_OUT: &str = "/sign-out";

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/sign-in", get(sign_in_form).post(sign_in))
        .route("/sign-in/oidc", get(oidc_begin))
        .route("/sign-in/oidc/callback", get(oidc_callback))
        .route(SIGN_OUT, post(sign_out))
        .route("/set-password/{token}", get(set_password_form).post(set_password))
}

#[derive(Template)]
#[template(path = "sign_in.html")]
struct SignInPage {
    shell: Shell,
    errors: FormErrors,
    email: String,
    /// The hidden field's value: empty for the home page.
    return_to: String,
    /// The link to sign in through the identity provider, when one is configured.
    oidc_href: Option<String>,
    /// Said above the form (after signing out).
    notice: Option<&'static str>,
}

impl SignInPage {
    fn new(state: &AppState, errors: FormErrors, email: &str, return_to: &str) -> SignInPage {
        let oidc_href = state.usecases.oidc_enabled().then(|| {
            let mut query = form_urlencoded::Serializer::new(String::new());
            if return_to != "/" {
                query.append_pair("return_to", return_to);
            }
            let query = query.finish();
            if query.is_empty() {
                "/sign-in/oidc".to_owned()
            } else {
                format!("/sign-in/oidc?{query}")
            }
        });
        SignInPage {
            shell: Shell::anonymous("Sign in").with_errors(&errors),
            errors,
            email: email.to_owned(),
            return_to: if return_to == "/" { String::new() } else { return_to.to_owned() },
            oidc_href,
            notice: None,
        }
    }
}

async fn sign_in_form(State(state): State<AppState>, RawQuery(query): RawQuery) -> Response {
    let query = Form::from_query(query.as_deref());
    let return_to = local_path(query.get("return_to")).unwrap_or("/");
    let mut errors = FormErrors::default();
    let mut notice = None;
    match query.get("reason") {
        "session_expired" => errors.add("email", ErrorCode::SessionExpired.explain().en),
        "person_disabled" => errors.add("email", ErrorCode::PersonDisabled.explain().en),
        "signed_out" => notice = Some("You have signed out."),
        _ => {}
    }
    let page = SignInPage { notice, ..SignInPage::new(&state, errors, "", return_to) };
    render(StatusCode::OK, &page)
}

async fn sign_in(State(state): State<AppState>, AnonymousForm { form, context }: AnonymousForm) -> Response {
    let email = form.get("email").trim();
    let return_to = local_path(form.get("return_to")).filter(|path| !path.is_empty()).unwrap_or("/");
    let mut errors = FormErrors::default();
    if email.is_empty() {
        errors.add("email", "Enter your email address");
    }
    if form.get("password").is_empty() {
        errors.add("password", "Enter your password");
    }
    if !errors.is_empty() {
        return render(StatusCode::UNPROCESSABLE_ENTITY, &SignInPage::new(&state, errors, email, return_to));
    }
    let password = SecretString::from(form.get("password").to_owned());
    match state.usecases.sign_in_with_password(email, &password, context).await {
        Ok(session) => signed_in(&state.config.web, &session, return_to),
        Err(error) => refused(&state, &error, "email", email, return_to),
    }
}

/// The browser is signed in: its cookie set, sent where it was going.
fn signed_in(web: &WebConfig, session: &NewSession, return_to: &str) -> Response {
    let mut response = super::see_other(return_to);
    response.headers_mut().append(header::SET_COOKIE, session_cookie(web, session.cookie_value.expose_secret()));
    response
}

/// The sign-in page again, saying why signing in was refused (the same words for an unknown email and a wrong
/// password), at `field`: the email for the password form, `ORGANISATION` (the provider's button) for the
/// identity provider.
fn refused(state: &AppState, error: &UseCaseError, field: &'static str, email: &str, return_to: &str) -> Response {
    let (status, message) = match error {
        UseCaseError::Internal(_) => {
            return PageError::internal(anyhow::anyhow!("signing in: {error}")).into_response();
        }
        UseCaseError::RateLimited { retry_after, .. } => (
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "There have been too many failed attempts to sign in. Wait {} minutes and try again.",
                retry_after.as_secs().div_ceil(60).max(1)
            ),
        ),
        other => {
            let code = other.code();
            let status = match code {
                ErrorCode::PersonDisabled => StatusCode::FORBIDDEN,
                ErrorCode::SignInStateInvalid => StatusCode::BAD_REQUEST,
                _ => StatusCode::UNAUTHORIZED,
            };
            let message = match code {
                ErrorCode::PersonUnknown => {
                    "Your organisation's account is not set up in Grapevine. Ask an administrator to add you."
                }
                ErrorCode::SignInRefused
                | ErrorCode::PersonDisabled
                | ErrorCode::SessionExpired
                | ErrorCode::IdentityRefused
                | ErrorCode::SignInStateInvalid => code.explain().en,
                _ => ErrorCode::SignInRefused.explain().en,
            };
            (status, message.to_owned())
        }
    };
    render(status, &SignInPage::new(state, FormErrors::one(field, message), email, return_to))
}

/// The id of the button to sign in with the organisation's identity provider, where its refusals are shown.
const ORGANISATION: &str = "organisation";

async fn oidc_begin(State(state): State<AppState>, RawQuery(query): RawQuery) -> Response {
    if !state.usecases.oidc_enabled() {
        return PageError::not_found().into_response();
    }
    let query = Form::from_query(query.as_deref());
    let return_to = local_path(query.get("return_to")).unwrap_or("/");
    match state.usecases.begin_oidc_sign_in(return_to).await {
        // The path to return to is kept with the sign-in's state, server-side.
        Ok(provider) => super::see_other(&provider),
        Err(UseCaseError::Internal(error)) => PageError::internal(error).into_response(),
        Err(error) => refused(&state, &error, ORGANISATION, "", return_to),
    }
}

async fn oidc_callback(
    State(state): State<AppState>,
    Context(context): Context,
    RawQuery(query): RawQuery,
) -> Response {
    let query = Form::from_query(query.as_deref());
    if !query.get("error").is_empty() {
        // The provider's own words are a code from a short list (RFC 6749 section 4.1.2.1); shown, never trusted.
        let message = format!(
            "Your organisation's sign-in did not finish ({}). Try again, or sign in with your email address and \
             password if you have one.",
            crate::domain::shown(query.get("error"))
        );
        render(StatusCode::UNAUTHORIZED, &SignInPage::new(&state, FormErrors::one(ORGANISATION, message), "", "/"))
    } else if query.get("code").is_empty() || query.get("state").is_empty() {
        let error = UseCaseError::Unauthenticated {
            code: ErrorCode::SignInStateInvalid,
            message: ErrorCode::SignInStateInvalid.explain().en.to_owned(),
        };
        refused(&state, &error, ORGANISATION, "", "/")
    } else {
        match state.usecases.finish_oidc_sign_in(query.get("code"), query.get("state"), context).await {
            Ok(finished) => signed_in(&state.config.web, &finished.session, &finished.return_to),
            Err(error) => refused(&state, &error, ORGANISATION, "", "/"),
        }
    }
}

async fn sign_out(State(state): State<AppState>, SignedForm { signed, .. }: SignedForm) -> Response {
    if let Err(error) = state.usecases.sign_out(&signed).await {
        return PageError::from_use_case(error, &signed).into_response();
    }
    let mut response = super::see_other("/sign-in?reason=signed_out");
    response.headers_mut().append(header::SET_COOKIE, removed_cookie(&state.config.web));
    response
}

#[derive(Template)]
#[template(path = "set_password.html")]
struct SetPasswordPage {
    shell: Shell,
    errors: FormErrors,
    email: String,
}

#[derive(Template)]
#[template(path = "password_set.html")]
struct PasswordSetPage {
    shell: Shell,
    email: String,
}

/// The page for a link that cannot be used (unknown, used, expired, or its person disabled): 404, as the link
/// names nothing that can be had.
fn link_invalid() -> Response {
    PageError::new(StatusCode::NOT_FOUND, "This link cannot be used", ErrorCode::PasswordLinkInvalid.explain().en)
        .into_response()
}

async fn set_password_form(State(state): State<AppState>, Path(token): Path<String>) -> Response {
    match state.usecases.password_link_holder(&token).await {
        Ok(person) => render(
            StatusCode::OK,
            &SetPasswordPage {
                shell: Shell::anonymous("Set your password"),
                errors: FormErrors::default(),
                email: person.email,
            },
        ),
        Err(UseCaseError::Internal(error)) => PageError::internal(error).into_response(),
        Err(_) => link_invalid(),
    }
}

async fn set_password(
    State(state): State<AppState>,
    Path(token): Path<String>,
    AnonymousForm { form, context }: AnonymousForm,
) -> Response {
    let person = match state.usecases.password_link_holder(&token).await {
        Ok(person) => person,
        Err(UseCaseError::Internal(error)) => return PageError::internal(error).into_response(),
        Err(_) => return link_invalid(),
    };
    let (password, confirm) = (form.get("password"), form.get("confirm"));
    let mut errors = FormErrors::default();
    if password.is_empty() {
        errors.add("password", "Enter a new password");
    }
    if confirm.is_empty() {
        errors.add("confirm", "Enter the new password again to confirm it");
    } else if !password.is_empty() && password != confirm {
        errors.add("confirm", "The passwords do not match; enter the same password in both fields");
    }
    if errors.is_empty() {
        let password = SecretString::from(password.to_owned());
        match state.usecases.set_password(&token, &password, context).await {
            Ok(person) => {
                let page = PasswordSetPage { shell: Shell::anonymous("Your password is set"), email: person.email };
                return render(StatusCode::OK, &page);
            }
            Err(UseCaseError::Invalid { code, message }) => {
                let message = match code {
                    ErrorCode::PasswordTooShort | ErrorCode::PasswordTooCommon => code.explain().en.to_owned(),
                    _ => message,
                };
                errors.add("password", message);
            }
            Err(UseCaseError::Internal(error)) => return PageError::internal(error).into_response(),
            Err(_) => return link_invalid(),
        }
    }
    let page = SetPasswordPage {
        shell: Shell::anonymous("Set your password").with_errors(&errors),
        errors,
        email: person.email,
    };
    render(StatusCode::UNPROCESSABLE_ENTITY, &page)
}
