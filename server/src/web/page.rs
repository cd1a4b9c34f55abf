//! What every page shares: the `Shell` the layout reads (the title, the person in the header, the navigation), the
//! errors a form shows (`FormErrors`), rendering a template, and the error pages (`PageError`).

use askama::Template;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use grapevine_sync_proto::ErrorCode;
use time::format_description::BorrowedFormatItem;
use time::macros::format_description;
use time::OffsetDateTime;

use crate::domain::{permits, Action, Role};
use crate::usecase::sign_in::SignedIn;
use crate::usecase::UseCaseError;

/// How pages write a time: to the minute, in UTC, said so.
const PAGE_TIME: &[BorrowedFormatItem<'static>] = format_description!("[year]-[month]-[day] [hour]:[minute] UTC");

/// A time as pages show it.
pub(crate) fn page_time(at: OffsetDateTime) -> String {
    at.to_offset(time::UtcOffset::UTC).format(PAGE_TIME).unwrap_or_else(|_| at.to_string())
}

/// Which navigation link is the current page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Nav {
    Home,
    Insights,
    Exports,
    People,
    Audit,
    None,
}

/// The person in the header, and what their navigation shows.
#[derive(Debug)]
pub(crate) struct ShellPerson {
    pub email: String,
    pub role: &'static str,
    pub admin: bool,
    /// Reads insights: the analysts' pages are in the navigation.
    pub analyst: bool,
    /// The sign-out form's CSRF token.
    pub sign_out_csrf: String,
}

/// What the layout (`layout.html`) reads from every page.
#[derive(Debug)]
pub(crate) struct Shell {
    /// The whole `<title>`: the page's own name first, `Error: ` before it when a form came back with errors.
    pub title: String,
    pub person: Option<ShellPerson>,
    pub current: Nav,
    /// The stylesheet's path, with its content hash.
    pub stylesheet: &'static str,
}

impl Shell {
    /// A page for someone not signed in.
    pub fn anonymous(title: &str) -> Shell {
        Shell {
            title: format!("{title} – Grapevine"),
            person: None,
            current: Nav::None,
            stylesheet: super::assets::STYLESHEET.path(),
        }
    }

    /// A page for a signed-in person.
    pub fn signed(signed: &SignedIn, title: &str, current: Nav) -> Shell {
        Shell { person: Some(shell_person(signed)), current, ..Shell::anonymous(title) }
    }

    /// The same page, titled as having errors when `errors` has some.
    #[must_use]
    pub fn with_errors(mut self, errors: &FormErrors) -> Shell {
        if !errors.is_empty() {
            self.title = format!("Error: {}", self.title);
        }
        self
    }

    /// Whether the navigation link named `name` (`home`, `insights`, `exports`, `people`, `audit`) is this page's.
    pub fn current_is(&self, name: &str) -> bool {
        let current = match self.current {
            Nav::Home => "home",
            Nav::Insights => "insights",
            Nav::Exports => "exports",
            Nav::People => "people",
            Nav::Audit => "audit",
            Nav::None => "",
        };
        current == name
    }
}

fn shell_person(signed: &SignedIn) -> ShellPerson {
    ShellPerson {
        email: signed.person.email.clone(),
        role: signed.person.role.as_str(),
        admin: signed.person.role == Role::Admin,
        analyst: permits(signed.person.role, Action::ReadInsights),
        sign_out_csrf: signed.csrf_token(super::sign_in::SIGN_OUT),
    }
}

/// One field's error: the field's `id` (the error summary links to it) and what to do about it.
#[derive(Debug, Clone)]
pub(crate) struct FieldError {
    pub field: &'static str,
    pub message: String,
}

/// The errors a form came back with, in the order its fields are on the page.
#[derive(Debug, Clone, Default)]
pub(crate) struct FormErrors {
    pub list: Vec<FieldError>,
}

impl FormErrors {
    pub fn add(&mut self, field: &'static str, message: impl Into<String>) {
        self.list.push(FieldError { field, message: message.into() });
    }

    pub fn one(field: &'static str, message: impl Into<String>) -> FormErrors {
        let mut errors = FormErrors::default();
        errors.add(field, message);
        errors
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The message for the field with this id, if it has one.
    pub fn of(&self, field: &str) -> Option<&str> {
        self.list.iter().find(|error| error.field == field).map(|error| error.message.as_str())
    }

    /// The `aria-describedby` of a field: its hint's id (if it has a hint) and its error's id (if it has an error).
    pub fn describedby(&self, field: &str, hint: bool) -> String {
        let mut ids = Vec::new();
        if hint {
            ids.push(format!("{field}-hint"));
        }
        if self.of(field).is_some() {
            ids.push(format!("{field}-error"));
        }
        ids.join(" ")
    }
}

/// A rendered page with its status; a template that fails to render is a 500 page.
pub(crate) fn render(status: StatusCode, template: &impl Template) -> Response {
    match template.render() {
        Ok(html) => (status, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response(),
        Err(error) => PageError::internal(anyhow::anyhow!("rendering a page: {error}")).into_response(),
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    shell: Shell,
    heading: &'a str,
    message: &'a str,
    sign_in_link: bool,
}

/// A page that says why the request was not done: its status, heading and message. Nothing in it comes from an
/// internal error's detail, which goes to the log.
#[derive(Debug)]
pub(crate) struct PageError {
    pub status: StatusCode,
    pub heading: &'static str,
    pub message: String,
    /// The person, so the header still shows them (a refusal after signing in).
    pub shell: Option<Shell>,
    /// Offer a link to sign in.
    pub sign_in_link: bool,
}

impl PageError {
    pub fn new(status: StatusCode, heading: &'static str, message: impl Into<String>) -> PageError {
        PageError { status, heading, message: message.into(), shell: None, sign_in_link: false }
    }

    pub fn not_found() -> PageError {
        PageError::new(
            StatusCode::NOT_FOUND,
            "Page not found",
            "If you typed the web address, check it is correct. If you pasted it, check you copied all of it.",
        )
    }

    pub fn internal(error: anyhow::Error) -> PageError {
        tracing::error!(error = format!("{error:#}"), "a page failed");
        PageError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Sorry, there is a problem with the service",
            "Try again later. Nothing you sent has been lost or half done: an action either happened whole or not at all.",
        )
    }

    pub fn too_large() -> PageError {
        PageError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "What you sent is too large",
            "A form may hold at most 64 KiB. Nothing was changed; go back and send less.",
        )
    }

    pub fn csrf() -> PageError {
        PageError::new(StatusCode::FORBIDDEN, "This form could not be sent", ErrorCode::CsrfInvalid.explain().en)
    }

    pub fn not_signed_in(code: ErrorCode) -> PageError {
        let message = match code {
            ErrorCode::PersonDisabled => ErrorCode::PersonDisabled.explain().en,
            ErrorCode::SessionExpired => "You have been signed out, so nothing was changed. Sign in again.",
            _ => "You need to sign in first; nothing was changed.",
        };
        PageError { sign_in_link: true, ..PageError::new(StatusCode::UNAUTHORIZED, "You are not signed in", message) }
    }

    /// The same error, with the signed-in person in the header.
    #[must_use]
    pub fn for_person(self, signed: &SignedIn) -> PageError {
        let shell = Shell::signed(signed, self.heading, Nav::None);
        PageError { shell: Some(shell), ..self }
    }

    /// A use case's refusal as a page (a form's own errors are shown on its page, not here).
    pub fn from_use_case(error: UseCaseError, signed: &SignedIn) -> PageError {
        let page = match error {
            UseCaseError::Internal(error) => return PageError::internal(error),
            UseCaseError::Forbidden { role, .. } => PageError::new(
                StatusCode::FORBIDDEN,
                "You cannot use this page",
                format!("Your role ({role}) does not allow it. Ask an administrator if you need it."),
            ),
            UseCaseError::NotFound { .. } => PageError::not_found(),
            UseCaseError::Unauthenticated { code, .. } => PageError::not_signed_in(code),
            UseCaseError::Invalid { message, .. } => {
                PageError::new(StatusCode::UNPROCESSABLE_ENTITY, "That could not be done", message)
            }
            UseCaseError::Conflict { message, .. } => {
                PageError::new(StatusCode::CONFLICT, "Someone else changed this first", message)
            }
            limited @ UseCaseError::RateLimited { .. } => {
                PageError::new(StatusCode::TOO_MANY_REQUESTS, "Not just now", limited.to_string())
            }
        };
        page.for_person(signed)
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let shell = self.shell.unwrap_or_else(|| Shell::anonymous(self.heading));
        let page = ErrorPage { shell, heading: self.heading, message: &self.message, sign_in_link: self.sign_in_link };
        match page.render() {
            Ok(html) => (self.status, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response(),
            Err(error) => {
                tracing::error!(%error, "cannot render an error page");
                (
                    self.status,
                    [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                    "<!DOCTYPE html><title>Error</title>",
                )
                    .into_response()
            }
        }
    }
}
