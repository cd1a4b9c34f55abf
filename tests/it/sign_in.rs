//! Local accounts and browser sessions through the use cases (docs/web.md): one-time set-password links, the
//! password rules, signing in and out, the limits on failed sign-ins, session expiry and disabling, and what the
//! audit trail says of each. The pages over these are `web.rs`; the identity provider is `oidc.rs`.

use std::net::IpAddr;
use std::time::Duration;

use futures_util::TryStreamExt;
use grapevine_server::audit::{AuditEntry, AuditFilter, AuditOutcome};
use grapevine_server::domain::{Principal, RequestContext};
use grapevine_server::usecase::sign_in::{SessionPolicy, FAILURES_PER_ACCOUNT, FAILURES_PER_NETWORK_BURST};
use grapevine_server::usecase::{UseCaseError, UseCases};
use grapevine_sync_proto::ErrorCode;
use grapevine_tests::{Backend, TestApp};
use secrecy::{ExposeSecret, SecretString};

const PASSWORD: &str = "heard it at the barber's, twice";

fn from(address: &str) -> RequestContext {
    RequestContext { request_id: None, client_addr: Some(address.parse::<IpAddr>().unwrap()) }
}

fn secret(text: &str) -> SecretString {
    SecretString::from(text)
}

fn code<T: std::fmt::Debug>(result: Result<T, UseCaseError>) -> ErrorCode {
    result.expect_err("refused").code()
}

async fn entries(app: &TestApp, action: &str) -> Vec<AuditEntry> {
    let filter = AuditFilter { action: Some(action.to_owned()), ..AuditFilter::default() };
    app.store.audit_entries(filter).try_collect().await.unwrap()
}

/// An added person with a password set through their link; the link's token is returned too.
async fn person_with_password(usecases: &UseCases, email: &str, role: &str) -> String {
    usecases.add_person(&Principal::operator(), email, role, None).await.unwrap();
    let link = usecases.issue_password_link(&Principal::operator(), email).await.unwrap();
    let token = link.token.expose_secret().to_owned();
    usecases.set_password(&token, &secret(PASSWORD), from("192.0.2.1")).await.unwrap();
    token
}

async fn a_link_sets_a_password_once_and_the_rules_hold(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let usecases = UseCases::new(app.store.clone());
    let operator = Principal::operator();
    usecases.add_person(&operator, "ada@example.org", "admin", None).await.unwrap();
    let link = usecases.issue_password_link(&operator, "ADA@example.org").await.unwrap();
    let token = link.token.expose_secret().to_owned();
    assert!(token.len() >= 43, "256 bits: {token}");
    let hours = (link.expires_at - time::OffsetDateTime::now_utc()).whole_minutes();
    assert!((23 * 60..=24 * 60).contains(&hours), "valid 24 hours: {hours} minutes");
    assert_eq!(usecases.password_link_holder(&token).await.unwrap().email, "ada@example.org");

    // Refused passwords leave the link usable.
    let short = usecases.set_password(&token, &secret("too short"), from("192.0.2.1")).await;
    assert_eq!(code(short), ErrorCode::PasswordTooShort);
    let common = usecases.set_password(&token, &secret("Password123456!"), from("192.0.2.1")).await;
    assert_eq!(code(common), ErrorCode::PasswordTooCommon);
    assert!(usecases.password_link_holder(&token).await.is_ok());

    // Set once; the link is then spent, and a made-up one was never valid.
    usecases.set_password(&token, &secret(PASSWORD), from("192.0.2.1")).await.unwrap();
    assert_eq!(code(usecases.password_link_holder(&token).await), ErrorCode::PasswordLinkInvalid);
    let again = usecases.set_password(&token, &secret("a different long passphrase"), from("192.0.2.1")).await;
    assert_eq!(code(again), ErrorCode::PasswordLinkInvalid);
    assert_eq!(code(usecases.password_link_holder("made-up").await), ErrorCode::PasswordLinkInvalid);
    usecases.sign_in_with_password("ada@example.org", &secret(PASSWORD), from("192.0.2.1")).await.unwrap();

    // Links are for people who exist and may sign in; only admins issue them.
    let nobody = usecases.issue_password_link(&operator, "nobody@example.org").await;
    assert_eq!(code(nobody), ErrorCode::PersonUnknown);
    usecases.add_person(&operator, "bo@example.org", "analyst", None).await.unwrap();
    let analyst = usecases.sign_in_with_password("ada@example.org", &secret(PASSWORD), from("192.0.2.1")).await;
    let admin = usecases.session(analyst.unwrap().cookie_value.expose_secret(), from("192.0.2.1")).await.unwrap();
    assert!(usecases.issue_password_link(&admin.principal, "bo@example.org").await.is_ok());
    person_with_password(&usecases, "cy@example.org", "analyst").await;
    let cy = usecases.sign_in_with_password("cy@example.org", &secret(PASSWORD), from("192.0.2.1")).await.unwrap();
    let cy = usecases.session(cy.cookie_value.expose_secret(), from("192.0.2.1")).await.unwrap();
    assert_eq!(code(usecases.issue_password_link(&cy.principal, "bo@example.org").await), ErrorCode::Forbidden);

    // The trail names who set a password and who made the link, never the password or the link.
    let set = entries(&app, "person.set_password").await;
    assert_eq!(set.iter().filter(|entry| entry.outcome == AuditOutcome::Allowed).count(), 2, "{set:?}");
    assert_eq!(set[0].actor, "person:ada@example.org");
    let links = entries(&app, "person.password_link").await;
    assert!(links.iter().any(|entry| entry.outcome == AuditOutcome::Refused), "the analyst's attempt");
    let everything: Vec<AuditEntry> = app.store.audit_entries(AuditFilter::default()).try_collect().await.unwrap();
    let trail = format!("{everything:?}");
    assert!(!trail.contains(PASSWORD) && !trail.contains(&token), "no secret in the trail");
}

async fn sessions_open_carry_csrf_keys_and_end(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let usecases = UseCases::new(app.store.clone());
    person_with_password(&usecases, "ada@example.org", "analyst").await;

    // An unknown email and a wrong password are refused alike.
    let unknown = usecases.sign_in_with_password("nobody@example.org", &secret(PASSWORD), from("192.0.2.1")).await;
    let wrong = usecases.sign_in_with_password("ada@example.org", &secret("not the password"), from("192.0.2.1")).await;
    let (unknown, wrong) = (unknown.unwrap_err(), wrong.unwrap_err());
    assert_eq!((unknown.code(), wrong.code()), (ErrorCode::SignInRefused, ErrorCode::SignInRefused));
    assert_eq!(unknown.to_string(), wrong.to_string());

    let opened = usecases.sign_in_with_password(" Ada@Example.org ", &secret(PASSWORD), from("192.0.2.1")).await;
    let cookie = opened.unwrap().cookie_value.expose_secret().to_owned();
    let signed_in = usecases.session(&cookie, from("192.0.2.7")).await.unwrap();
    assert_eq!(signed_in.person.email, "ada@example.org");
    assert_eq!(signed_in.principal.role.as_str(), "analyst");
    assert_eq!(signed_in.principal.context.client_addr, Some("192.0.2.7".parse().unwrap()), "this request's");

    // A CSRF token fits one form of one session.
    let token = signed_in.csrf_token("/people");
    assert!(signed_in.csrf_matches("/people", &token));
    assert!(!signed_in.csrf_matches("/people/disable", &token));
    assert!(!signed_in.csrf_matches("/people", "forged"));
    let second = usecases.sign_in_with_password("ada@example.org", &secret(PASSWORD), from("192.0.2.1")).await;
    let second = usecases.session(second.unwrap().cookie_value.expose_secret(), from("192.0.2.1")).await.unwrap();
    assert!(!second.csrf_matches("/people", &token), "another session's token");

    // Signing out ends this session and not the other.
    usecases.sign_out(&signed_in).await.unwrap();
    assert_eq!(code(usecases.session(&cookie, from("192.0.2.1")).await), ErrorCode::SessionExpired);
    assert!(usecases.session(&format!("{cookie}x"), from("192.0.2.1")).await.is_err());
    assert_eq!(code(usecases.session("never issued", from("192.0.2.1")).await), ErrorCode::Unauthorized);

    let sign_ins = entries(&app, "session.sign_in").await;
    assert_eq!(sign_ins.len(), 2);
    assert_eq!(
        (sign_ins[0].actor.as_str(), &sign_ins[0].detail["method"]),
        ("person:ada@example.org", &"password".into())
    );
    let refused = entries(&app, "session.refused").await;
    assert_eq!(refused.len(), 2, "{refused:?}");
    assert!(refused.iter().all(|entry| entry.actor == "anonymous" && entry.detail["code"] == "sign_in_refused"));
    assert_eq!(refused[0].target, "person:nobody@example.org");
    assert_eq!(entries(&app, "session.sign_out").await.len(), 1);
}

async fn idle_and_lifetime_limits_and_disabling_end_sessions(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let usecases = UseCases::new(app.store.clone());
    person_with_password(&usecases, "ada@example.org", "analyst").await;
    let sign_in = |usecases: UseCases| async move {
        let opened = usecases.sign_in_with_password("ada@example.org", &secret(PASSWORD), from("192.0.2.1")).await;
        opened.unwrap().cookie_value.expose_secret().to_owned()
    };

    let idle = usecases.clone().with_sessions(SessionPolicy { idle: Duration::ZERO, ..SessionPolicy::default() });
    let cookie = sign_in(idle.clone()).await;
    assert_eq!(code(idle.session(&cookie, from("192.0.2.1")).await), ErrorCode::SessionExpired);
    assert_eq!(code(usecases.session(&cookie, from("192.0.2.1")).await), ErrorCode::SessionExpired, "ended for good");

    let short = usecases.clone().with_sessions(SessionPolicy { lifetime: Duration::ZERO, ..SessionPolicy::default() });
    let cookie = sign_in(short.clone()).await;
    assert_eq!(code(short.session(&cookie, from("192.0.2.1")).await), ErrorCode::SessionExpired);

    // Disabling a person ends their sessions at once; their right password is then refused by name, a wrong one
    // is not told apart from any other.
    let cookie = sign_in(usecases.clone()).await;
    assert!(usecases.session(&cookie, from("192.0.2.1")).await.is_ok());
    usecases.disable_person(&Principal::operator(), "ada@example.org").await.unwrap();
    assert_eq!(code(usecases.session(&cookie, from("192.0.2.1")).await), ErrorCode::PersonDisabled);
    let right = usecases.sign_in_with_password("ada@example.org", &secret(PASSWORD), from("192.0.2.1")).await;
    assert_eq!(code(right), ErrorCode::PersonDisabled);
    let wrong = usecases.sign_in_with_password("ada@example.org", &secret("a wrong password"), from("192.0.2.1")).await;
    assert_eq!(code(wrong), ErrorCode::SignInRefused);
    let link = usecases.issue_password_link(&Principal::operator(), "ada@example.org").await;
    assert_eq!(code(link), ErrorCode::PersonDisabled);
}

async fn a_new_password_ends_the_sessions_of_the_old(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let usecases = UseCases::new(app.store.clone());
    person_with_password(&usecases, "ada@example.org", "analyst").await;
    let opened = usecases.sign_in_with_password("ada@example.org", &secret(PASSWORD), from("192.0.2.1")).await;
    let cookie = opened.unwrap().cookie_value.expose_secret().to_owned();
    let link = usecases.issue_password_link(&Principal::operator(), "ada@example.org").await.unwrap();
    let new_password = secret("a brand new passphrase for ada");
    usecases.set_password(link.token.expose_secret(), &new_password, from("192.0.2.1")).await.unwrap();
    assert_eq!(code(usecases.session(&cookie, from("192.0.2.1")).await), ErrorCode::SessionExpired);
    let old = usecases.sign_in_with_password("ada@example.org", &secret(PASSWORD), from("192.0.2.1")).await;
    assert_eq!(code(old), ErrorCode::SignInRefused);
    usecases.sign_in_with_password("ada@example.org", &new_password, from("192.0.2.1")).await.unwrap();
}

async fn failed_sign_ins_are_limited_per_account_and_per_network(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let usecases = UseCases::new(app.store.clone());
    person_with_password(&usecases, "ada@example.org", "analyst").await;
    person_with_password(&usecases, "bo@example.org", "analyst").await;

    // Per account, whatever the address: after its failures, even the right password waits.
    for attempt in 0..FAILURES_PER_ACCOUNT {
        let address = format!("198.51.100.{attempt}");
        let wrong =
            usecases.sign_in_with_password("ada@example.org", &secret("guess guess guess"), from(&address)).await;
        assert_eq!(code(wrong), ErrorCode::SignInRefused);
    }
    let right = usecases.sign_in_with_password("ada@example.org", &secret(PASSWORD), from("198.51.100.200")).await;
    assert!(matches!(right, Err(UseCaseError::RateLimited { .. })), "{right:?}");
    // Another account is not held up.
    usecases.sign_in_with_password("bo@example.org", &secret(PASSWORD), from("198.51.100.201")).await.unwrap();

    // Per network: one address's failures across many accounts (a budget that does not refill while argon2 works).
    let usecases = usecases.with_sign_in_budget(FAILURES_PER_NETWORK_BURST, 0.0);
    for n in 0..FAILURES_PER_NETWORK_BURST as usize {
        let wrong = usecases
            .sign_in_with_password(&format!("guess{n}@example.org"), &secret("guess guess"), from("203.0.113.9"))
            .await;
        assert_eq!(code(wrong), ErrorCode::SignInRefused, "attempt {n}");
    }
    let limited = usecases.sign_in_with_password("bo@example.org", &secret(PASSWORD), from("203.0.113.9")).await;
    assert!(matches!(limited, Err(UseCaseError::RateLimited { .. })), "{limited:?}");
    usecases.sign_in_with_password("bo@example.org", &secret(PASSWORD), from("203.0.113.10")).await.unwrap();

    let limits = entries(&app, "session.refused").await;
    let why: Vec<&str> = limits
        .iter()
        .filter(|entry| entry.detail["code"] == "rate_limited")
        .map(|entry| entry.detail["why"].as_str().unwrap())
        .collect();
    assert!(why.contains(&"account") && why.contains(&"network"), "{why:?}");
}

on_both_backends!(
    a_link_sets_a_password_once_and_the_rules_hold,
    sessions_open_carry_csrf_keys_and_end,
    idle_and_lifetime_limits_and_disabling_end_sessions,
    a_new_password_ends_the_sessions_of_the_old,
    failed_sign_ins_are_limited_per_account_and_per_network,
);
