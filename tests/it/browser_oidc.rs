//! Signing in through the organisation in Chromium: the real provider of oidc.rs (npm's `oidc-provider` under Node)
//! and the browser harness of browser.rs, on both backends. The browser scenario is
//! `tests/browser/scenarios/oidc_sign_in.mjs`; a tampered ID token's refusal page is fetched over HTTP, as the
//! browser would be sent to it.

use futures_util::TryStreamExt;
use grapevine_server::audit::{AuditEntry, AuditFilter, AuditOutcome};
use grapevine_server::domain::Principal;
use grapevine_tests::{Backend, TestApp};
use serde_json::json;

use crate::browser::run_scenario;
use crate::oidc::{server_with, sign_in_at_provider, Provider, PROVIDER_PASSWORD};

/// Someone the admin added, and someone nobody added; the test provider knows both.
const ADDED_EMAIL: &str = "ada@example.org";
const STRANGER_EMAIL: &str = "stranger@example.org";

async fn entries(app: &TestApp, action: &str) -> Vec<AuditEntry> {
    let filter = AuditFilter { action: Some(action.to_owned()), ..AuditFilter::default() };
    app.store.audit_entries(filter).try_collect().await.unwrap()
}

async fn an_added_person_signs_in_through_the_organisation_and_a_stranger_is_refused(backend: Backend) {
    let provider = Provider::start(0, false).await;
    let (app, usecases) = server_with(backend, &provider.config()).await;
    // A board member: their home page says who they are signed in as and how, which the scenario reads (an
    // analyst's home is the priorities table).
    usecases.add_person(&Principal::operator(), ADDED_EMAIL, "board", None).await.unwrap();

    let inputs = json!({
        "issuer": provider.issuer,
        "added_email": ADDED_EMAIL,
        "stranger_email": STRANGER_EMAIL,
        "provider_password": PROVIDER_PASSWORD,
    });
    run_scenario(&app.http_url(), "oidc_sign_in", inputs).await;

    // What the browser did is what the trail holds: Ada in through the provider and out again, the stranger refused.
    let signed_in = entries(&app, "session.sign_in").await;
    assert_eq!(signed_in.len(), 1, "{signed_in:?}");
    assert_eq!(signed_in[0].actor, format!("person:{ADDED_EMAIL}"));
    assert_eq!(signed_in[0].detail["method"], "oidc");
    let signed_out = entries(&app, "session.sign_out").await;
    assert_eq!(signed_out.len(), 1, "{signed_out:?}");
    let refused = entries(&app, "session.refused").await;
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(
        (refused[0].target.as_str(), refused[0].outcome),
        ("person:stranger@example.org", AuditOutcome::Refused)
    );
    assert_eq!(refused[0].detail["code"], "person_unknown");
    assert_eq!(entries(&app, "person.add").await.len(), 1, "only Ada, whom the operator added");
    app.stop().await;
}

async fn a_tampered_id_token_shows_that_the_sign_in_could_not_be_verified(backend: Backend) {
    let provider = Provider::start(0, true).await;
    let (app, usecases) = server_with(backend, &provider.config()).await;
    usecases.add_person(&Principal::operator(), ADDED_EMAIL, "analyst", None).await.unwrap();

    // The browser's way: the organisation's button, the provider's form, and back to the callback.
    let browser =
        reqwest::Client::builder().cookie_store(true).redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let begun = browser.get(format!("{}/sign-in/oidc", app.http_url())).send().await.unwrap();
    assert_eq!(begun.status(), 303);
    let to_provider = begun.headers()["location"].to_str().unwrap().to_owned();
    let callback = sign_in_at_provider(&to_provider, ADDED_EMAIL, &app, &provider).await;
    let page = browser.get(callback).send().await.unwrap();
    let status = page.status();
    let set_cookie = page.headers().get_all("set-cookie").iter().count();
    let html = page.text().await.unwrap();

    assert_eq!(status, 401, "{html}");
    assert_eq!(set_cookie, 0, "a refused sign-in sets no cookie");
    assert!(html.contains(r#"class="error-summary" role="alert""#), "{html}");
    assert!(html.contains("sign-in could not be verified"), "{html}");
    assert!(!html.contains("Sign out"), "nobody is signed in: {html}");
    let refused = entries(&app, "session.refused").await;
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(
        (refused[0].detail["code"].as_str(), refused[0].detail["why"].as_str()),
        (Some("identity_refused"), Some("id_token"))
    );
    assert!(entries(&app, "session.sign_in").await.is_empty());
    app.stop().await;
}

on_both_backends!(
    an_added_person_signs_in_through_the_organisation_and_a_stranger_is_refused,
    a_tampered_id_token_shows_that_the_sign_in_could_not_be_verified,
);
