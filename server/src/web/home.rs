//! The home page (for an analyst, the priorities table, `priorities`; for everyone else, who they are signed in
//! as: role, scope, how) and the accessibility statement (for anyone).

use askama::Template;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::Router;

use super::page::{page_time, render, Nav, Shell};
use super::session::Signed;
use crate::app::AppState;
use crate::domain::{permits, Action, Scope};
use crate::store::SignInMethod;

pub(crate) fn router() -> Router<AppState> {
    Router::new().route("/", get(home)).route("/accessibility", get(accessibility))
}

#[derive(Template)]
#[template(path = "home.html")]
struct HomePage {
    shell: Shell,
    email: String,
    role: &'static str,
    scope: String,
    method: &'static str,
    signed_in_at: String,
    expires_at: String,
    idle_minutes: u64,
}

async fn home(State(state): State<AppState>, Signed(signed): Signed, RawQuery(query): RawQuery) -> Response {
    // A person who reads priorities starts at them; everyone else at who they are signed in as.
    if permits(signed.person.role, Action::ReadPriorities) {
        return super::priorities::home(&state, &signed, query.as_deref()).await;
    }
    let scope = match &signed.person.scope {
        Scope::Everything => "Everywhere (no limit by area)".to_owned(),
        areas => areas.describe(),
    };
    let method = match signed.method {
        SignInMethod::Password => "Email address and password",
        SignInMethod::OpenIdConnect => "Your organisation's account",
    };
    let page = HomePage {
        shell: Shell::signed(&signed, "Home", Nav::Home),
        email: signed.person.email.clone(),
        role: signed.person.role.as_str(),
        scope,
        method,
        signed_in_at: page_time(signed.signed_in_at),
        expires_at: page_time(signed.expires_at),
        idle_minutes: state.config.web.sessions.idle.as_secs().div_ceil(60),
    };
    render(StatusCode::OK, &page)
}

#[derive(Template)]
#[template(path = "accessibility.html")]
struct AccessibilityPage {
    shell: Shell,
}

async fn accessibility(signed: Option<Signed>) -> Response {
    let title = "Accessibility statement";
    let shell = match signed {
        Some(Signed(signed)) => Shell::signed(&signed, title, Nav::None),
        None => Shell::anonymous(title),
    };
    render(StatusCode::OK, &AccessibilityPage { shell })
}
