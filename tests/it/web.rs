//! The web pages over HTTP, as a browser without JavaScript uses them (a cookie jar, forms, redirects followed by
//! hand where the test asserts them), on both backends: security headers on every page, signing in with a password
//! set through a one-time link, the same words for an unknown email and a wrong password, CSRF refusals that change
//! nothing and are recorded, sessions that end at once (signed out elsewhere, the person disabled), the HTML 404,
//! the form size limit, and the people and audit pages end to end (adding an analyst, both actions in the trail,
//! the CSV download).

use futures_util::TryStreamExt;
use grapevine_server::audit::AuditFilter;
use grapevine_server::domain::Principal;
use grapevine_server::usecase::UseCases;
use grapevine_tests::{Backend, TestApp};
use reqwest::header::{self, HeaderMap};
use reqwest::StatusCode;

const ADMIN: &str = "admin@example.org";
pub(crate) const PASSWORD: &str = "correct horse battery staple";

/// A browser: its own cookie jar, redirects not followed (the tests look at them).
pub(crate) struct Browser {
    pub(crate) client: reqwest::Client,
    pub(crate) base: String,
}

/// A page as answered.
pub(crate) struct Page {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: String,
}

impl Page {
    pub(crate) fn location(&self) -> &str {
        self.headers.get(header::LOCATION).and_then(|value| value.to_str().ok()).unwrap_or_default()
    }

    /// The CSRF token of the form whose action is `action`.
    pub(crate) fn csrf(&self, action: &str) -> String {
        let form = self.body.find(&format!("action=\"{action}\"")).unwrap_or_else(|| panic!("no form {action}"));
        let rest = &self.body[form..];
        let field = rest.find("name=\"csrf\" value=\"").expect("the form has a csrf field") + 19;
        rest[field..].split('"').next().unwrap().to_owned()
    }
}

impl Browser {
    pub(crate) fn new(app: &TestApp) -> Browser {
        let client =
            reqwest::Client::builder().cookie_store(true).redirect(reqwest::redirect::Policy::none()).build().unwrap();
        Browser { client, base: app.http_url() }
    }

    async fn answer(request: reqwest::RequestBuilder) -> Page {
        let response = request.header(header::ACCEPT, "text/html,*/*;q=0.8").send().await.unwrap();
        let (status, headers) = (response.status(), response.headers().clone());
        Page { status, headers, body: response.text().await.unwrap() }
    }

    pub(crate) async fn get(&self, path: &str) -> Page {
        Browser::answer(self.client.get(format!("{}{path}", self.base))).await
    }

    pub(crate) async fn post(&self, path: &str, fields: &[(&str, &str)]) -> Page {
        Browser::answer(self.client.post(format!("{}{path}", self.base)).form(fields)).await
    }

    /// Signs in; the session cookie as `Set-Cookie` gave it.
    pub(crate) async fn sign_in(&self, email: &str, password: &str) -> String {
        let page = self.post("/sign-in", &[("email", email), ("password", password)]).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
        page.headers[header::SET_COOKIE].to_str().unwrap().split(';').next().unwrap().to_owned()
    }
}

/// The one door, beside the server, for setting the scene.
pub(crate) async fn usecases(app: &TestApp) -> UseCases {
    UseCases::open(&app.database_url).await.unwrap()
}

/// A person added by the operator, with a password set through their one-time link in `browser`.
pub(crate) async fn person_with_password(app: &TestApp, browser: &Browser, email: &str, role: &str) {
    let door = usecases(app).await;
    door.add_person(&Principal::operator(), email, role, None).await.unwrap();
    let link = door.issue_password_link(&Principal::operator(), email).await.unwrap();
    let path = format!("/set-password/{}", secrecy::ExposeSecret::expose_secret(&link.token));
    let form = browser.get(&path).await;
    assert_eq!(form.status, StatusCode::OK, "{}", form.body);
    assert!(form.body.contains(email), "the page names whose password it sets");
    let set = browser.post(&path, &[("password", PASSWORD), ("confirm", PASSWORD)]).await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.body);
    assert!(set.body.contains("Your password is set"), "{}", set.body);
}

/// Every action `action` recorded, oldest first.
async fn entries_of(app: &TestApp, action: &str) -> Vec<grapevine_server::audit::AuditEntry> {
    let door = usecases(app).await;
    let filter = AuditFilter { action: Some(action.to_owned()), ..AuditFilter::default() };
    door.audit_entries(&Principal::operator(), filter).await.unwrap().try_collect().await.unwrap()
}

fn assert_security_headers(page: &Page, what: &str) {
    let header = |name: &str| page.headers.get(name).and_then(|value| value.to_str().ok()).unwrap_or_default();
    assert_eq!(
        header("content-security-policy"),
        "default-src 'self'; script-src 'none'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'; \
         form-action 'self'; base-uri 'none'",
        "{what}"
    );
    assert_eq!(header("referrer-policy"), "no-referrer", "{what}");
    assert_eq!(header("x-content-type-options"), "nosniff", "{what}");
    assert!(page.headers.get("strict-transport-security").is_none(), "{what}: plain http sends no HSTS");
}

async fn every_page_carries_the_security_headers_and_a_password_set_by_link_signs_in(backend: Backend) {
    let app = TestApp::spawn_configured(backend, |_| {}).await;
    let browser = Browser::new(&app);

    let sign_in = browser.get("/sign-in").await;
    assert_eq!(sign_in.status, StatusCode::OK);
    assert!(sign_in.body.contains("<label class=\"label\" for=\"email\">Email address</label>"), "{}", sign_in.body);
    assert!(sign_in.body.contains("autocomplete=\"current-password\""));
    assert!(!sign_in.body.contains("<script"), "no page sends script");
    assert_security_headers(&sign_in, "/sign-in");
    let skip = sign_in.body.find("<a href=\"#main-content\" class=\"skip-link\">Skip to main content</a>").unwrap();
    let before = &sign_in.body[..skip];
    assert!(!before.contains("<a ") && !before.contains("<button") && !before.contains("<input"), "skip link first");

    // A page for signed-in people sends the browser to sign in, and back afterwards.
    let home = browser.get("/people?x=1").await;
    assert_eq!((home.status, home.location()), (StatusCode::SEE_OTHER, "/sign-in?return_to=%2Fpeople%3Fx%3D1"));
    assert_security_headers(&home, "a redirect to sign in");

    // The set-password link: the errors on its fields, then the password set; the link works once.
    let door = usecases(&app).await;
    door.add_person(&Principal::operator(), ADMIN, "admin", None).await.unwrap();
    let link = door.issue_password_link(&Principal::operator(), ADMIN).await.unwrap();
    let path = format!("/set-password/{}", secrecy::ExposeSecret::expose_secret(&link.token));
    let form = browser.get(&path).await;
    assert_security_headers(&form, "/set-password");
    assert!(form.body.contains("New password") && form.body.contains("Confirm new password"));
    let mismatch = browser.post(&path, &[("password", PASSWORD), ("confirm", "something else entirely")]).await;
    assert_eq!(mismatch.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(mismatch.body.contains("<a href=\"#confirm\">The passwords do not match"), "{}", mismatch.body);
    assert!(mismatch.body.contains("<title>Error: "), "an error's title says so");
    let short = browser.post(&path, &[("password", "short"), ("confirm", "short")]).await;
    assert!(short.body.contains("<a href=\"#password\">A password must be between 12"), "{}", short.body);
    // (One character repeated is refused as too common whatever the bundled list holds.)
    let common = browser.post(&path, &[("password", "aaaaaaaaaaaaaa"), ("confirm", "aaaaaaaaaaaaaa")]).await;
    assert!(common.body.contains("one of the most common"), "{}", common.body);
    let set = browser.post(&path, &[("password", PASSWORD), ("confirm", PASSWORD)]).await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.body);
    assert!(set.body.contains("Your password is set") && set.body.contains("href=\"/sign-in\""));
    let used = browser.get(&path).await;
    assert_eq!(used.status, StatusCode::NOT_FOUND, "a used link");
    assert!(used.body.contains("This link cannot be used"), "{}", used.body);
    assert_eq!(browser.get("/set-password/not-a-token").await.status, StatusCode::NOT_FOUND);

    // Signing in goes back where the browser was going.
    let signed = browser.post("/sign-in", &[("email", ADMIN), ("password", PASSWORD), ("return_to", "/people")]).await;
    assert_eq!((signed.status, signed.location()), (StatusCode::SEE_OTHER, "/people"));
    let cookie = signed.headers[header::SET_COOKIE].to_str().unwrap();
    assert!(cookie.starts_with("grapevine=") && cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"));
    assert!(!cookie.contains("Secure"), "plain http: {cookie}");
    let elsewhere =
        browser.post("/sign-in", &[("email", ADMIN), ("password", PASSWORD), ("return_to", "//evil.example")]).await;
    assert_eq!(elsewhere.location(), "/", "never to another site");

    let home = browser.get("/").await;
    assert_eq!(home.status, StatusCode::OK);
    assert!(home.body.contains(&format!("You are signed in as {ADMIN}")), "{}", home.body);
    assert!(home.body.contains("admin") && home.body.contains("Everywhere") && home.body.contains("password"));
    assert!(home.body.contains(">Sign out</button>") && home.body.contains(">Audit trail</a>"));
    assert_security_headers(&home, "/");
    for path in ["/accessibility"] {
        let page = browser.get(path).await;
        assert_eq!(page.status, StatusCode::OK, "{path}");
        assert_security_headers(&page, path);
    }
    let stylesheet = home.body.split("href=\"/static/").nth(1).unwrap().split('"').next().unwrap().to_owned();
    let css = browser.get(&format!("/static/{stylesheet}")).await;
    assert_eq!(css.status, StatusCode::OK);
    assert!(css.headers[header::CACHE_CONTROL].to_str().unwrap().contains("immutable"));
    assert!(css.body.contains("@media print"));
    assert_security_headers(&css, "the stylesheet");

    // Signing out ends the session, recorded.
    let out = browser.post("/sign-out", &[("csrf", &home.csrf("/sign-out"))]).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert_eq!(browser.get("/").await.status, StatusCode::SEE_OTHER);
    assert_eq!(entries_of(&app, "session.sign_out").await.len(), 1);
    assert!(!entries_of(&app, "session.sign_in").await.is_empty());
    app.stop().await;
}

async fn a_wrong_password_and_an_unknown_email_get_the_same_page(backend: Backend) {
    let app = TestApp::spawn_configured(backend, |_| {}).await;
    let browser = Browser::new(&app);
    person_with_password(&app, &browser, ADMIN, "admin").await;
    let wrong = browser.post("/sign-in", &[("email", ADMIN), ("password", "not the password at all")]).await;
    let unknown = browser.post("/sign-in", &[("email", "nobody@example.org"), ("password", "not the password")]).await;
    assert_eq!((wrong.status, unknown.status), (StatusCode::UNAUTHORIZED, StatusCode::UNAUTHORIZED));
    assert!(wrong.body.contains("<a href=\"#email\">"), "the error summary links to the field: {}", wrong.body);
    assert!(wrong.body.contains("id=\"email-error\""), "and the field has its own message");
    assert_eq!(wrong.body.replace(ADMIN, "EMAIL"), unknown.body.replace("nobody@example.org", "EMAIL"));
    let blank = browser.post("/sign-in", &[("email", ""), ("password", "")]).await;
    assert!(blank.body.contains("Enter your email address") && blank.body.contains("Enter your password"));
    assert_eq!(entries_of(&app, "session.refused").await.len(), 2, "each refusal recorded");
    app.stop().await;
}

async fn a_form_without_its_csrf_token_changes_nothing_and_is_recorded(backend: Backend) {
    let app = TestApp::spawn_configured(backend, |_| {}).await;
    let browser = Browser::new(&app);
    person_with_password(&app, &browser, ADMIN, "admin").await;
    browser.sign_in(ADMIN, PASSWORD).await;
    let people = browser.get("/people").await;
    let token = people.csrf("/people/add");
    let add = [("email", "ann@example.org"), ("role", "analyst"), ("areas", "")];
    for csrf in [None, Some("forged"), Some(people.csrf("/sign-out").as_str())] {
        let mut fields = add.to_vec();
        if let Some(csrf) = csrf {
            fields.push(("csrf", csrf));
        }
        let refused = browser.post("/people/add", &fields).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{csrf:?}: {}", refused.body);
        assert!(refused.body.contains("nothing was changed"), "{}", refused.body);
    }
    // From another site, even with the right token.
    let mut fields = add.to_vec();
    fields.push(("csrf", &token));
    let request = browser.client.post(format!("{}/people/add", browser.base)).header("origin", "https://evil.example");
    let cross = Browser::answer(request.form(&fields)).await;
    assert_eq!(cross.status, StatusCode::FORBIDDEN);
    let door = usecases(&app).await;
    let emails: Vec<String> = door.people(&Principal::operator()).await.unwrap().into_iter().map(|p| p.email).collect();
    assert_eq!(emails, [ADMIN], "nobody was added");
    let refusals = entries_of(&app, "csrf.refused").await;
    assert_eq!(refusals.len(), 4, "{refusals:?}");
    assert!(refusals.iter().all(|entry| entry.actor == format!("person:{ADMIN}") && entry.target == "/people/add"));
    // Signing out needs its token too.
    assert_eq!(browser.post("/sign-out", &[("csrf", "forged")]).await.status, StatusCode::FORBIDDEN);
    assert_eq!(browser.get("/").await.status, StatusCode::OK, "still signed in");
    // And the right token does what it says.
    let added = browser.post("/people/add", &fields).await;
    assert_eq!(added.status, StatusCode::OK, "{}", added.body);
    app.stop().await;
}

async fn a_session_ended_elsewhere_or_a_disabled_person_stops_at_once(backend: Backend) {
    let app = TestApp::spawn_configured(backend, |_| {}).await;
    let browser = Browser::new(&app);
    person_with_password(&app, &browser, ADMIN, "admin").await;
    let cookie = browser.sign_in(ADMIN, PASSWORD).await;
    // The same session's cookie in another browser, then signed out in the first.
    let other = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let home = || other.get(format!("{}/", app.http_url())).header(header::COOKIE, &cookie).send();
    assert_eq!(home().await.unwrap().status(), StatusCode::OK);
    let page = browser.get("/").await;
    browser.post("/sign-out", &[("csrf", &page.csrf("/sign-out"))]).await;
    let ended = home().await.unwrap();
    assert_eq!(ended.status(), StatusCode::SEE_OTHER);
    let location = ended.headers()[header::LOCATION].to_str().unwrap().to_owned();
    assert_eq!(location, "/sign-in?reason=session_expired");
    let told = browser.get(&location).await;
    assert!(told.body.contains("You have been signed out"), "{}", told.body);
    let post = other.post(format!("{}/sign-out", app.http_url())).header(header::COOKIE, &cookie).send().await.unwrap();
    assert_eq!(post.status(), StatusCode::UNAUTHORIZED, "a form from an ended session gets a page");

    // An analyst signed in, disabled by an admin: their next page is the sign-in page.
    let analyst = Browser::new(&app);
    person_with_password(&app, &analyst, "ann@example.org", "analyst").await;
    analyst.sign_in("ann@example.org", PASSWORD).await;
    assert_eq!(analyst.get("/").await.status, StatusCode::OK);
    let people = analyst.get("/people").await;
    assert_eq!(people.status, StatusCode::FORBIDDEN, "an analyst may not manage people");
    assert!(people.body.contains("ann@example.org"), "the header still shows who is signed in");
    assert!(!people.body.contains(">People</a>"), "navigation by role");
    usecases(&app).await.disable_person(&Principal::operator(), "ann@example.org").await.unwrap();
    let stopped = analyst.get("/").await;
    assert_eq!((stopped.status, stopped.location()), (StatusCode::SEE_OTHER, "/sign-in?reason=person_disabled"));
    app.stop().await;
}

async fn an_unknown_page_and_a_huge_form_get_pages(backend: Backend) {
    let app = TestApp::spawn_configured(backend, |_| {}).await;
    let browser = Browser::new(&app);
    let missing = browser.get("/no/such/page").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert!(missing.headers[header::CONTENT_TYPE].to_str().unwrap().starts_with("text/html"));
    assert!(missing.body.contains("Page not found"), "{}", missing.body);
    assert_security_headers(&missing, "the 404 page");
    // The API and clients that do not ask for HTML keep their JSON.
    for (path, accept) in [("/api/v1/nothing", "text/html"), ("/no/such/page", "application/json")] {
        let answer =
            reqwest::Client::new().get(format!("{}{path}", app.http_url())).header(header::ACCEPT, accept).send().await;
        let answer = answer.unwrap();
        assert_eq!(answer.status(), StatusCode::NOT_FOUND);
        let body: serde_json::Value = answer.json().await.unwrap();
        assert_eq!(body["code"], "not_found", "{path}");
    }
    let huge = "x".repeat(100 * 1024);
    let refused = browser.post("/sign-in", &[("email", huge.as_str()), ("password", "p")]).await;
    assert_eq!(refused.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(refused.body.contains("too large"), "{}", refused.body);
    assert_security_headers(&refused, "the 413 page");
    assert!(entries_of(&app, "session.refused").await.is_empty(), "nothing was tried");
    app.stop().await;
}

/// The text between `start` and the next `end` after it.
pub(crate) fn between<'a>(text: &'a str, start: &str, end: &str) -> &'a str {
    let from = text.find(start).unwrap_or_else(|| panic!("no {start} in {text}")) + start.len();
    text[from..].split(end).next().unwrap()
}

/// Where the paging link `rel` ("next", "prev") of the audit page goes.
pub(crate) fn paging_link(page: &Page, rel: &str) -> String {
    let end = page.body.find(&format!("\" rel=\"{rel}\">")).unwrap_or_else(|| panic!("no {rel} link"));
    page.body[..end].rsplit("<a href=\"").next().unwrap().replace("&#38;", "&").replace("&amp;", "&")
}

/// The seqs of the audit page's rows, in the order shown.
fn seqs_shown(page: &Page) -> Vec<i64> {
    page.body.split("<tr>\n      <td>").skip(1).map(|row| row.split("</td>").next().unwrap().parse().unwrap()).collect()
}

async fn the_people_page_adds_an_analyst_and_the_audit_page_shows_both_actions(backend: Backend) {
    let app = TestApp::spawn_configured(backend, |_| {}).await;
    let admin = Browser::new(&app);
    person_with_password(&app, &admin, ADMIN, "admin").await;
    admin.sign_in(ADMIN, PASSWORD).await;
    let people = admin.get("/people").await;
    assert_eq!(people.status, StatusCode::OK, "{}", people.body);
    assert_security_headers(&people, "/people");
    let admin = &admin;
    let add = |email: &'static str, role: &'static str, areas: &'static str, csrf: String| async move {
        admin.post("/people/add", &[("email", email), ("role", role), ("areas", areas), ("csrf", &csrf)]).await
    };
    let added = add(" Ann@Example.org ", "analyst", "", people.csrf("/people/add")).await;
    assert_eq!(added.status, StatusCode::OK, "{}", added.body);
    assert!(added.body.contains("ann@example.org was added as analyst."), "{}", added.body);
    let link = between(&added.body, "<code class=\"secret\">", "</code>").to_owned();
    assert!(link.starts_with(&format!("{}/set-password/", app.http_url())), "{link}");
    assert!(added.body.contains("<td>ann@example.org</td>"), "the list shows them");

    // Refusals name their field, and add nobody.
    for (email, role, areas, field) in [
        ("ann@example.org", "analyst", "", "add-email"),
        ("not an email", "analyst", "", "add-email"),
        ("bob@example.org", "wizard", "", "add-role"),
        ("bob@example.org", "analyst", "nowhere", "add-areas"),
    ] {
        let refused = add(email, role, areas, added.csrf("/people/add")).await;
        assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY, "{email} {role} {areas}");
        assert!(refused.body.contains(&format!("<li><a href=\"#{field}\">")), "{field}: {}", refused.body);
        assert!(refused.body.contains(&format!("id=\"{field}-error\"")), "{field}");
        assert!(refused.body.contains("<title>Error: People – Grapevine</title>"));
    }

    // The analyst sets a password with the link and signs in.
    let analyst = Browser::new(&app);
    let path = link.strip_prefix(&app.http_url()).unwrap();
    analyst.post(path, &[("password", PASSWORD), ("confirm", PASSWORD)]).await;
    analyst.sign_in("ann@example.org", PASSWORD).await;
    let home = analyst.get("/").await;
    // An analyst's home is the priorities table (tests/it/analyst_pages.rs), under their own name.
    assert!(home.body.contains("<h1 class=\"heading-l\">Priorities</h1>") && home.body.contains("ann@example.org"));
    assert!(!home.body.contains(">People</a>") && !home.body.contains(">Audit trail</a>"), "navigation by role");
    assert!(home.body.contains(">Insights</a>") && home.body.contains(">Exports</a>"), "navigation by role");
    assert_eq!(analyst.get("/audit").await.status, StatusCode::FORBIDDEN);

    // Change the role, issue a token (shown once), revoke it, disable.
    let page = admin.get("/people").await;
    let changed = admin
        .post("/people/role", &[("email", "ann@example.org"), ("role", "board"), ("csrf", &page.csrf("/people/role"))])
        .await;
    assert!(changed.body.contains("ann@example.org is now board, for everywhere."), "{}", changed.body);
    let issued = admin
        .post(
            "/people/token",
            &[
                ("email", "ann@example.org"),
                ("label", "reports"),
                ("expires", "90d"),
                ("csrf", &page.csrf("/people/token")),
            ],
        )
        .await;
    let token = between(&issued.body, "<code class=\"secret\">", "</code>").to_owned();
    let api = reqwest::Client::new().get(format!("{}/api/v1/areas", app.http_url())).bearer_auth(&token);
    assert_ne!(api.send().await.unwrap().status(), StatusCode::UNAUTHORIZED, "the token works");
    let listed = admin.get("/people").await;
    assert!(!listed.body.contains(&token), "a token is shown only once");
    let id = between(&listed.body, "name=\"id\" value=\"", "\"").to_owned();
    let revoked =
        admin.post("/people/token/revoke", &[("id", &id), ("csrf", &listed.csrf("/people/token/revoke"))]).await;
    assert!(revoked.body.contains("The token is revoked"), "{}", revoked.body);
    let disabled = admin
        .post("/people/disable", &[("email", "ann@example.org"), ("csrf", &revoked.csrf("/people/disable"))])
        .await;
    assert!(disabled.body.contains("ann@example.org is disabled"), "{}", disabled.body);
    assert_eq!(analyst.get("/").await.status, StatusCode::SEE_OTHER, "signed out at once");

    // Both actions (the person added, their sign-in) on the audit page, newest first.
    let audit = admin.get("/audit").await;
    assert_eq!(audit.status, StatusCode::OK, "{}", audit.body);
    assert_security_headers(&audit, "/audit");
    assert!(audit.body.contains("<td>person.add</td>") && audit.body.contains("<td>person:ann@example.org</td>"));
    assert!(audit.body.contains("<td>session.sign_in</td>"));
    let seqs = seqs_shown(&audit);
    assert!(seqs.windows(2).all(|pair| pair[0] > pair[1]), "newest first: {seqs:?}");
    let filtered = admin.get("/audit?action=person.add").await;
    assert!(filtered.body.contains("<td>person.add</td>") && !filtered.body.contains("<td>session.sign_in</td>"));
    let by_actor = admin.get("/audit?actor=Ann%40example.org").await;
    assert!(by_actor.body.contains("<td>session.sign_in</td>") && !by_actor.body.contains("<td>person.add</td>"));
    let bad = admin.get("/audit?from=yesterday").await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad.body.contains("<a href=\"#from\">"), "{}", bad.body);

    // The download: every entry the filter lets through, as CSV with a header row.
    let csv = admin.get("/audit.csv?action=person.add").await;
    assert_eq!(csv.status, StatusCode::OK);
    assert_eq!(csv.headers[header::CONTENT_TYPE], "text/csv; charset=utf-8");
    assert_security_headers(&csv, "/audit.csv");
    let mut reader = csv::Reader::from_reader(csv.body.as_bytes());
    let columns: Vec<String> = reader.headers().unwrap().iter().map(str::to_owned).collect();
    assert_eq!(columns[..7], ["seq", "at", "actor", "role", "action", "target", "outcome"]);
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), entries_of(&app, "person.add").await.len(), "every entry");
    assert!(rows.iter().all(|row| &row[4] == "person.add"));
    let ann = rows.iter().find(|row| &row[5] == "person:ann@example.org" && &row[6] == "allowed").unwrap();
    assert_eq!(&ann[2], &format!("person:{ADMIN}"));
    assert!(serde_json::from_str::<serde_json::Value>(&ann[9]).is_ok(), "the detail is JSON: {}", &ann[9]);
    app.stop().await;
}

async fn the_audit_page_pages_by_seq(backend: Backend) {
    let app = TestApp::spawn_configured(backend, |_| {}).await;
    let admin = Browser::new(&app);
    person_with_password(&app, &admin, ADMIN, "admin").await;
    let door = usecases(&app).await;
    for n in 0..60 {
        door.add_person(&Principal::operator(), &format!("person{n}@example.org"), "board", None).await.unwrap();
    }
    admin.sign_in(ADMIN, PASSWORD).await;
    let first = admin.get("/audit").await;
    let newest = seqs_shown(&first);
    assert_eq!(newest.len(), 50);
    assert!(!first.body.contains(">Newer entries</a>"));
    let older_href = paging_link(&first, "next");
    let second = admin.get(&older_href).await;
    let older = seqs_shown(&second);
    assert_eq!(older[0], newest[49] - 1, "the page after the last shown: {older:?}");
    assert!(older.windows(2).all(|pair| pair[0] == pair[1] + 1), "{older:?}");
    let newer_href = paging_link(&second, "prev");
    let back = seqs_shown(&admin.get(&newer_href).await);
    assert_eq!(back.last(), Some(&newest[49]), "newer again ends where the first page did");
    assert_eq!(back.len(), 50);
    let filtered = admin.get("/audit?action=person.add").await;
    let href = paging_link(&filtered, "next");
    assert!(href.starts_with("/audit?action=person.add&before="), "the filter is kept: {href}");
    app.stop().await;
}

on_both_backends!(
    the_people_page_adds_an_analyst_and_the_audit_page_shows_both_actions,
    the_audit_page_pages_by_seq,
    every_page_carries_the_security_headers_and_a_password_set_by_link_signs_in,
    a_wrong_password_and_an_unknown_email_get_the_same_page,
    a_form_without_its_csrf_token_changes_nothing_and_is_recorded,
    a_session_ended_elsewhere_or_a_disabled_person_stops_at_once,
    an_unknown_page_and_a_huge_form_get_pages,
);
