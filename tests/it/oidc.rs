//! Signing in through a real OpenID Connect provider: npm's certified `oidc-provider` (pinned in
//! tests/oidc/package-lock.json), run under Node by `tests/oidc/provider.mjs`, with one client and a few people. The
//! test plays the browser over HTTP (a cookie jar, each redirect followed by hand) from the authorization URL the
//! server makes, through the provider's sign-in form, to the server's callback, and finishes there.
//!
//! The provider's starting code here (`Provider`, `server_with`, `sign_in_at_provider`) serves the browser journey
//! through it too (browser_oidc.rs).

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use futures_util::TryStreamExt;
use grapevine_server::audit::{AuditEntry, AuditFilter, AuditOutcome};
use grapevine_server::domain::{Principal, RequestContext, Role, Scope};
use grapevine_server::identity::oidc::{OidcClient, OidcConfig};
use grapevine_server::store::SignInMethod;
use grapevine_server::usecase::UseCases;
use grapevine_sync_proto::ErrorCode;
use grapevine_tests::{Backend, TestApp};
use secrecy::{ExposeSecret, SecretString};
use tokio::io::{AsyncBufReadExt, AsyncReadExt};

const CLIENT_ID: &str = "grapevine-test";
const CLIENT_SECRET: &str = "a-client-secret-for-tests-only";
/// Every account at the test provider has this password.
pub(crate) const PROVIDER_PASSWORD: &str = "provider-password";

fn provider_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("oidc")
}

/// Installs the pinned provider with `npm ci`, once per test run, exactly as the lockfile says.
fn npm_ci() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        if provider_dir().join("node_modules/oidc-provider/package.json").exists() {
            return;
        }
        let installed = std::process::Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(provider_dir())
            .status()
            .expect("npm runs (Node.js is needed for the OpenID Connect tests)")
            .success();
        assert!(installed, "`npm ci` could not install tests/oidc from its lockfile");
    });
}

/// The provider under Node, killed when dropped.
pub(crate) struct Provider {
    pub(crate) issuer: String,
    /// What it wrote (after its first line), for a failing test's message.
    stderr: Arc<Mutex<String>>,
    _child: tokio::process::Child,
}

impl Provider {
    /// Starts the provider on `port` (0: any), its ID tokens' signatures changed if `tamper`.
    pub(crate) async fn start(port: u16, tamper: bool) -> Provider {
        npm_ci();
        let mut command = tokio::process::Command::new("node");
        command
            .arg("provider.mjs")
            .args(["--port", &port.to_string(), "--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET])
            // A native client's loopback redirect matches on any port: the server's is known only once it is bound.
            .args(["--redirect-uri", "http://127.0.0.1/sign-in/oidc/callback"])
            .current_dir(provider_dir())
            .kill_on_drop(true)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if tamper {
            command.arg("--tamper-id-token");
        }
        let mut child = command.spawn().expect("node runs");
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut errors = child.stderr.take().unwrap();
        let collected = stderr.clone();
        tokio::spawn(async move {
            let mut buffer = [0_u8; 4096];
            while let Ok(n) = errors.read(&mut buffer).await {
                if n == 0 {
                    break;
                }
                collected.lock().unwrap().push_str(&String::from_utf8_lossy(&buffer[..n]));
            }
        });
        let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("the provider did not start in 30 s:\n{}", stderr.lock().unwrap()))
            .unwrap()
            .unwrap_or_else(|| panic!("the provider exited:\n{}", stderr.lock().unwrap()));
        let started: serde_json::Value = serde_json::from_str(&line).unwrap();
        // Read on, so the provider never writes into a closed pipe (which would end it).
        let collected = stderr.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                collected.lock().unwrap().push_str(&format!("{line}\n"));
            }
        });
        Provider { issuer: started["issuer"].as_str().unwrap().to_owned(), stderr, _child: child }
    }

    pub(crate) fn config(&self) -> OidcConfig {
        config_for(&self.issuer)
    }

    pub(crate) fn log(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }
}

fn config_for(issuer: &str) -> OidcConfig {
    OidcConfig {
        issuer: issuer.to_owned(),
        client_id: CLIENT_ID.into(),
        client_secret: SecretString::from(CLIENT_SECRET),
        role_claim: None,
        role_map: Vec::new(),
        trust_email: false,
    }
}

/// The server with `config` as its identity provider, and a door onto the same database with the same provider,
/// coming back to the address the server bound (as the server does when it has no public URL).
pub(crate) async fn server_with(backend: Backend, config: &OidcConfig) -> (TestApp, UseCases) {
    let for_server = config.clone();
    let app = TestApp::spawn_configured(backend, move |serve| serve.web.oidc = Some(for_server)).await;
    let client = OidcClient::new(config.clone(), &app.http_url()).unwrap();
    let usecases = UseCases::new(app.store.clone()).with_oidc(client);
    (app, usecases)
}

fn context() -> RequestContext {
    RequestContext { request_id: Some("test-request".into()), client_addr: Some("127.0.0.1".parse().unwrap()) }
}

/// The provider's redirect back to the server, reached the way a browser would from `start_url`: each redirect
/// followed by hand, the sign-in form filled in as `email`.
pub(crate) async fn sign_in_at_provider(
    start_url: &str,
    email: &str,
    app: &TestApp,
    provider: &Provider,
) -> reqwest::Url {
    let browser =
        reqwest::Client::builder().cookie_store(true).redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let callback = format!("{}/sign-in/oidc/callback", app.http_url());
    let mut url = reqwest::Url::parse(start_url).unwrap();
    let mut form_sent = false;
    for _ in 0..12 {
        if url.as_str().starts_with(&callback) {
            return url;
        }
        let response = browser.get(url.clone()).send().await.unwrap();
        let status = response.status();
        if status.is_redirection() {
            url = url.join(response.headers()["location"].to_str().unwrap()).unwrap();
            continue;
        }
        let page = response.text().await.unwrap();
        assert_eq!(status, 200, "{url}: {page}\n{}", provider.log());
        assert!(!form_sent, "the provider showed a page again after signing in: {page}");
        assert!(
            page.contains(r#"<label for="email">Email address</label>"#)
                && page.contains(r#"<label for="password">Password</label>"#),
            "{page}"
        );
        let action = page.split(r#"action=""#).nth(1).and_then(|rest| rest.split('"').next()).expect("a form");
        let response = browser
            .post(url.join(action).unwrap())
            .form(&[("email", email), ("password", PROVIDER_PASSWORD)])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 303, "signing in at the provider as {email}\n{}", provider.log());
        url = url.join(response.headers()["location"].to_str().unwrap()).unwrap();
        form_sent = true;
    }
    panic!("never came back to {callback}; last at {url}\n{}", provider.log());
}

/// The `code` and `state` of the provider's redirect back.
fn code_and_state(callback: &reqwest::Url) -> (String, String) {
    let parameter = |name: &str| {
        callback
            .query_pairs()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.into_owned())
            .unwrap_or_else(|| panic!("no {name} in {callback}"))
    };
    (parameter("code"), parameter("state"))
}

/// Begins a sign-in, signs in at the provider as `email`, and gives the redirect's `code` and `state`.
async fn through_provider(usecases: &UseCases, app: &TestApp, provider: &Provider, email: &str) -> (String, String) {
    let start = usecases.begin_oidc_sign_in("/people").await.unwrap();
    let callback = sign_in_at_provider(&start, email, app, provider).await;
    code_and_state(&callback)
}

async fn entries(app: &TestApp, action: &str) -> Vec<AuditEntry> {
    let filter = AuditFilter { action: Some(action.to_owned()), ..AuditFilter::default() };
    app.store.audit_entries(filter).try_collect().await.unwrap()
}

async fn add(usecases: &UseCases, email: &str, role: &str) {
    usecases.add_person(&Principal::operator(), email, role, None).await.unwrap();
}

async fn an_added_person_signs_in_through_the_identity_provider(backend: Backend) {
    let provider = Provider::start(0, false).await;
    let (app, usecases) = server_with(backend, &provider.config()).await;
    assert!(usecases.oidc_enabled());
    add(&usecases, "ada@example.org", "analyst").await;

    let start = usecases.begin_oidc_sign_in("/people").await.unwrap();
    let start_url = reqwest::Url::parse(&start).unwrap();
    assert!(start.starts_with(&format!("{}/auth?", provider.issuer)), "{start}");
    let asked: std::collections::HashMap<_, _> = start_url.query_pairs().into_owned().collect();
    assert_eq!(asked["code_challenge_method"], "S256");
    assert_eq!(asked["redirect_uri"], format!("{}/sign-in/oidc/callback", app.http_url()));
    assert_eq!(asked["scope"], "openid email profile");
    assert!(asked.contains_key("nonce") && asked.contains_key("state"), "{start}");

    let callback = sign_in_at_provider(&start, "ada@example.org", &app, &provider).await;
    let (code, state) = code_and_state(&callback);
    let finished = usecases.finish_oidc_sign_in(&code, &state, context()).await.unwrap();
    assert_eq!(finished.return_to, "/people");
    assert_eq!(finished.session.person.email, "ada@example.org");

    // The cookie's session is Ada's, signed in through the provider.
    let signed_in = usecases.session(finished.session.cookie_value.expose_secret(), context()).await.unwrap();
    assert_eq!((signed_in.person.email.as_str(), signed_in.method), ("ada@example.org", SignInMethod::OpenIdConnect));
    assert_eq!(signed_in.principal.role, Role::Analyst);

    let signed = entries(&app, "session.sign_in").await;
    assert_eq!(signed.len(), 1, "{signed:?}");
    assert_eq!((signed[0].actor.as_str(), signed[0].outcome), ("person:ada@example.org", AuditOutcome::Allowed));
    assert_eq!(signed[0].detail["method"], "oidc");
    assert!(entries(&app, "session.refused").await.is_empty());
    app.stop().await;
}

async fn a_person_nobody_added_is_refused(backend: Backend) {
    let provider = Provider::start(0, false).await;
    let (app, usecases) = server_with(backend, &provider.config()).await;
    add(&usecases, "ada@example.org", "analyst").await;

    let (code, state) = through_provider(&usecases, &app, &provider, "stranger@example.org").await;
    let refused = usecases.finish_oidc_sign_in(&code, &state, context()).await.unwrap_err();
    assert_eq!(refused.code(), ErrorCode::PersonUnknown, "{refused}");
    assert!(refused.to_string().contains("ask an administrator"), "{refused}");

    let entries_refused = entries(&app, "session.refused").await;
    assert_eq!(entries_refused.len(), 1, "{entries_refused:?}");
    assert_eq!(entries_refused[0].target, "person:stranger@example.org");
    assert_eq!(entries_refused[0].outcome, AuditOutcome::Refused);
    assert_eq!(entries_refused[0].detail["code"], "person_unknown");
    assert!(entries(&app, "session.sign_in").await.is_empty());
    assert_eq!(entries(&app, "person.add").await.len(), 1, "only Ada, whom the operator added");
    app.stop().await;
}

async fn a_tampered_id_token_is_refused(backend: Backend) {
    let provider = Provider::start(0, true).await;
    let (app, usecases) = server_with(backend, &provider.config()).await;
    add(&usecases, "ada@example.org", "analyst").await;

    let (code, state) = through_provider(&usecases, &app, &provider, "ada@example.org").await;
    let refused = usecases.finish_oidc_sign_in(&code, &state, context()).await.unwrap_err();
    assert_eq!(refused.code(), ErrorCode::IdentityRefused, "{refused}");

    let entries_refused = entries(&app, "session.refused").await;
    assert_eq!(entries_refused.len(), 1, "{entries_refused:?}");
    assert_eq!(entries_refused[0].detail["code"], "identity_refused");
    assert_eq!(entries_refused[0].detail["why"], "id_token", "the signature, not anything before it, was refused");
    assert!(entries(&app, "session.sign_in").await.is_empty());
    app.stop().await;
}

async fn a_replayed_state_is_refused(backend: Backend) {
    let provider = Provider::start(0, false).await;
    let (app, usecases) = server_with(backend, &provider.config()).await;
    add(&usecases, "ada@example.org", "analyst").await;

    let (code, state) = through_provider(&usecases, &app, &provider, "ada@example.org").await;
    usecases.finish_oidc_sign_in(&code, &state, context()).await.unwrap();
    let replayed = usecases.finish_oidc_sign_in(&code, &state, context()).await.unwrap_err();
    assert_eq!(replayed.code(), ErrorCode::SignInStateInvalid, "{replayed}");
    let unknown = usecases.finish_oidc_sign_in(&code, "a-state-never-begun", context()).await.unwrap_err();
    assert_eq!(unknown.code(), ErrorCode::SignInStateInvalid, "{unknown}");

    assert_eq!(entries(&app, "session.sign_in").await.len(), 1, "one session, from the first finish");
    let entries_refused = entries(&app, "session.refused").await;
    assert_eq!(entries_refused.len(), 2, "{entries_refused:?}");
    assert!(entries_refused.iter().all(|entry| entry.detail["code"] == "sign_in_state_invalid"), "{entries_refused:?}");
    app.stop().await;
}

async fn with_a_role_map_someone_in_a_mapped_group_is_added_with_its_role(backend: Backend) {
    let provider = Provider::start(0, false).await;
    let config = OidcConfig {
        role_claim: Some("groups".into()),
        role_map: vec![("board-members".into(), Role::Board), ("analysts".into(), Role::Analyst)],
        ..provider.config()
    };
    let (app, usecases) = server_with(backend, &config).await;

    // The provider gives the groups claim only when asked for it, as the server does with a role claim.
    let start = usecases.begin_oidc_sign_in("/").await.unwrap();
    let asked: std::collections::HashMap<_, _> =
        reqwest::Url::parse(&start).unwrap().query_pairs().into_owned().collect();
    assert_eq!(asked["claims"], r#"{"id_token":{"groups":null}}"#);
    let (code, state) = code_and_state(&sign_in_at_provider(&start, "stranger@example.org", &app, &provider).await);
    let session = usecases.finish_oidc_sign_in(&code, &state, context()).await.unwrap().session;
    assert_eq!(session.person.email, "stranger@example.org");
    assert_eq!((session.person.role, &session.person.scope), (Role::Analyst, &Scope::Everything));

    let added = entries(&app, "person.add").await;
    assert_eq!(added.len(), 1, "{added:?}");
    assert_eq!(added[0].actor, format!("identity_provider:{}", provider.issuer));
    assert_eq!((added[0].target.as_str(), added[0].outcome), ("person:stranger@example.org", AuditOutcome::Allowed));
    assert_eq!((&added[0].detail["role"], &added[0].detail["group"]), (&"analyst".into(), &"analysts".into()));
    assert_eq!(entries(&app, "session.sign_in").await.len(), 1);

    // Ada's group maps to nothing: still refused. Someone whose email the provider has not verified is refused
    // whatever their group, and not added.
    let (code, state) = through_provider(&usecases, &app, &provider, "ada@example.org").await;
    let refused = usecases.finish_oidc_sign_in(&code, &state, context()).await.unwrap_err();
    assert_eq!(refused.code(), ErrorCode::PersonUnknown, "{refused}");
    let (code, state) = through_provider(&usecases, &app, &provider, "unverified@example.org").await;
    let refused = usecases.finish_oidc_sign_in(&code, &state, context()).await.unwrap_err();
    assert_eq!(refused.code(), ErrorCode::IdentityRefused, "{refused}");
    assert_eq!(entries(&app, "person.add").await.len(), 1, "nobody else was added");
    let why: Vec<_> = entries(&app, "session.refused").await.iter().map(|entry| entry.detail["why"].clone()).collect();
    assert_eq!(why, ["not_added", "email_unverified"]);
    app.stop().await;
}

/// An email with no `email_verified` claim (as Microsoft Entra ID sends its directory's addresses) is refused unless
/// the provider is trusted for its emails; an email marked unverified is refused even then.
async fn an_email_without_email_verified_is_taken_only_from_a_provider_trusted_for_it(backend: Backend) {
    let provider = Provider::start(0, false).await;
    for trust_email in [false, true] {
        let config = OidcConfig { trust_email, ..provider.config() };
        let (app, usecases) = server_with(backend, &config).await;
        for email in ["directory@example.org", "unverified@example.org"] {
            usecases.add_person(&Principal::operator(), email, "analyst", None).await.unwrap();
        }
        let (code, state) = through_provider(&usecases, &app, &provider, "directory@example.org").await;
        let finished = usecases.finish_oidc_sign_in(&code, &state, context()).await;
        if trust_email {
            assert_eq!(finished.unwrap().session.person.email, "directory@example.org");
        } else {
            assert_eq!(finished.unwrap_err().code(), ErrorCode::IdentityRefused);
        }
        let (code, state) = through_provider(&usecases, &app, &provider, "unverified@example.org").await;
        let refused = usecases.finish_oidc_sign_in(&code, &state, context()).await.unwrap_err();
        assert_eq!(refused.code(), ErrorCode::IdentityRefused, "explicitly unverified, trusted or not");
        app.stop().await;
    }
}

async fn the_server_starts_while_the_provider_is_down_and_signs_in_once_it_is_up(backend: Backend) {
    // A port nothing listens on, for now.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let issuer = format!("http://127.0.0.1:{port}");
    let (app, usecases) = server_with(backend, &config_for(&issuer)).await;
    add(&usecases, "ada@example.org", "analyst").await;
    let down = usecases.begin_oidc_sign_in("/").await.unwrap_err();
    assert_eq!(down.code(), ErrorCode::Internal, "{down}");

    let provider = Provider::start(port, false).await;
    assert_eq!(provider.issuer, issuer);
    let (code, state) = through_provider(&usecases, &app, &provider, "ada@example.org").await;
    let session = usecases.finish_oidc_sign_in(&code, &state, context()).await.unwrap().session;
    assert_eq!(session.person.email, "ada@example.org");
    app.stop().await;
}

on_both_backends!(
    an_added_person_signs_in_through_the_identity_provider,
    a_person_nobody_added_is_refused,
    a_tampered_id_token_is_refused,
    a_replayed_state_is_refused,
    with_a_role_map_someone_in_a_mapped_group_is_added_with_its_role,
    an_email_without_email_verified_is_taken_only_from_a_provider_trusted_for_it,
    the_server_starts_while_the_provider_is_down_and_signs_in_once_it_is_up,
);
