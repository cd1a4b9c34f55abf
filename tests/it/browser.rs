//! The real-browser tests: Debian's `chromium` driven by `playwright-core` (pinned in tests/browser/package-lock.json,
//! never a browser download), with axe-core run on every page a scenario visits.
//!
//! A scenario is a file `tests/browser/scenarios/<name>.mjs`; `tests/browser/run.mjs` runs it against a server and
//! checks each page it names three ways: the response carries our Content-Security-Policy (`script-src 'none'`,
//! `frame-ancestors 'none'`), axe-core finds zero violations, and a full-page screenshot is saved into
//! `<target dir>/screenshots/<test name>/`. The harness's own tests below run it on fixture pages whose faults are
//! known, so a green page test means the checks ran and found nothing, not that they could not see.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use grapevine_server::domain::{Principal, RequestContext};
use grapevine_server::store::Role;
use grapevine_server::usecase::UseCases;
use grapevine_tests::{Backend, TestApp};
use serde_json::{json, Value};

/// Debian's chromium, installed by `.ci/run`; the tests never download a browser.
const CHROMIUM: &str = "/usr/bin/chromium";

/// How long one scenario may take, chromium's start included, on a loaded two-core CI machine.
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(180);

fn browser_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("browser")
}

/// The version of `package` the lockfile pins, and the version installed in node_modules (if any).
fn pinned_and_installed(package: &str) -> (Option<String>, Option<String>) {
    let read = |path: PathBuf| -> Option<Value> { serde_json::from_slice(&std::fs::read(path).ok()?).ok() };
    let pinned = read(browser_dir().join("package-lock.json"))
        .and_then(|lock| lock["packages"][format!("node_modules/{package}")]["version"].as_str().map(str::to_owned));
    let installed = read(browser_dir().join("node_modules").join(package).join("package.json"))
        .and_then(|manifest| manifest["version"].as_str().map(str::to_owned));
    (pinned, installed)
}

/// Installs tests/browser exactly as its lockfile says with `npm ci`, once per test run, unless node_modules already
/// holds the pinned versions. `PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD` makes sure no install step fetches a browser.
fn npm_ci() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let up_to_date = ["playwright-core", "axe-core"].into_iter().all(|package| {
            let (pinned, installed) = pinned_and_installed(package);
            pinned.is_some() && pinned == installed
        });
        if up_to_date {
            return;
        }
        let installed = std::process::Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
            .current_dir(browser_dir())
            .status()
            .expect("npm runs (Node.js is needed for the browser tests)")
            .success();
        assert!(installed, "`npm ci` could not install tests/browser from its lockfile");
    });
}

/// Fails the test, loudly, when the browser is missing: a browser test that skips itself proves nothing.
fn require_chromium() {
    assert!(
        Path::new(CHROMIUM).exists(),
        "the browser tests need Debian's chromium at {CHROMIUM}; install it with\n    \
         apt-get update && apt-get install -y --no-install-recommends chromium\n(.ci/run does this)"
    );
}

/// Where a test's screenshots go: `<target dir>/screenshots/<test name>/`, emptied first so every file in it is from
/// this run. The test's name is its thread's (libtest names each test's thread after it, and a `#[tokio::test]` body
/// runs on that thread); `fallback` names the directory when it is not.
fn screenshot_dir(fallback: &str) -> PathBuf {
    let test_name = std::thread::current().name().filter(|name| *name != "main").unwrap_or(fallback).replace("::", "/");
    let target_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).parent().expect("CARGO_TARGET_TMPDIR is <target>/tmp");
    let dir = target_dir.join("screenshots").join(test_name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("the screenshot directory can be made");
    dir
}

/// What one run of a scenario did.
#[derive(Debug)]
pub struct ScenarioRun {
    pub passed: bool,
    /// One JSON line per step, and a last line saying whether the scenario passed (or why it failed).
    pub stdout: String,
    pub stderr: String,
    pub screenshots: PathBuf,
}

impl ScenarioRun {
    /// The step lines the script printed, parsed.
    pub fn lines(&self) -> Vec<Value> {
        self.stdout.lines().filter_map(|line| serde_json::from_str(line).ok()).collect()
    }

    fn report(&self) -> String {
        format!(
            "--- stdout\n{}\n--- stderr\n{}\n--- screenshots in {}",
            self.stdout.trim_end(),
            self.stderr.trim_end(),
            self.screenshots.display()
        )
    }
}

/// Runs `tests/browser/scenarios/<scenario>.mjs` against the server at `app_url` with `inputs` (the emails, links
/// and passwords the scenario needs), and says what happened; `run_scenario` is the one that must pass.
pub async fn scenario_outcome(app_url: &str, scenario: &str, inputs: Value) -> ScenarioRun {
    require_chromium();
    npm_ci();
    let screenshots = screenshot_dir(scenario);
    let mut command = tokio::process::Command::new("node");
    command
        .arg("run.mjs")
        .arg(scenario)
        .current_dir(browser_dir())
        .env("GRAPEVINE_BASE_URL", app_url)
        .env("GRAPEVINE_SCREENSHOTS", &screenshots)
        .env("GRAPEVINE_INPUTS", inputs.to_string())
        .env("GRAPEVINE_CHROMIUM", CHROMIUM)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = command.spawn().expect("node runs (Node.js is needed for the browser tests)");
    // On a timeout the future holding the child is dropped, which kills node; its chromium exits with its pipe.
    let output = tokio::time::timeout(SCENARIO_TIMEOUT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| {
            panic!(
                "browser scenario {scenario} took longer than {SCENARIO_TIMEOUT:?}; screenshots so far in {}",
                screenshots.display()
            )
        })
        .expect("the scenario's output can be read");
    ScenarioRun {
        passed: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        screenshots,
    }
}

/// Runs a scenario that must pass, and fails the test with the script's output and the screenshots' place if not.
pub async fn run_scenario(app_url: &str, scenario: &str, inputs: Value) -> ScenarioRun {
    let run = scenario_outcome(app_url, scenario, inputs).await;
    assert!(run.passed, "browser scenario {scenario} failed\n{}", run.report());
    run
}

/// The harness's fixture pages are answered inside the browser, so no server is needed; the URL only names them.
const FIXTURE_BASE_URL: &str = "http://fixture.invalid";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_without_faults_passes_every_check_under_a_policy_that_forbids_all_script() {
    let run = run_scenario(FIXTURE_BASE_URL, "harness_good_page", json!({})).await;
    let lines = run.lines();
    assert_eq!(lines[0]["axe_violations"], 0, "{}", run.report());
    let screenshot = PathBuf::from(lines[0]["screenshot"].as_str().unwrap());
    assert!(screenshot.starts_with(&run.screenshots), "{}", run.report());
    let png = std::fs::read(&screenshot).expect("the page's screenshot was saved");
    assert!(png.starts_with(b"\x89PNG"), "{} is a PNG", screenshot.display());
    assert_eq!(lines.last().unwrap()["passed"], true, "{}", run.report());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unlabelled_field_fails_the_accessibility_check_and_says_which_rule() {
    let run = scenario_outcome(FIXTURE_BASE_URL, "harness_unlabelled_field", json!({})).await;
    assert!(!run.passed, "a page with an unlabelled field passed axe\n{}", run.report());
    let lines = run.lines();
    assert_eq!(lines[0]["axe"][0]["id"], "label", "{}", run.report());
    assert_eq!(lines[0]["axe"][0]["targets"][0][0], "input", "{}", run.report());
    assert!(run.stderr.contains("Form elements must have labels"), "{}", run.report());
    let failed = lines.last().unwrap();
    assert!(Path::new(failed["screenshot"].as_str().unwrap()).exists(), "the failure's screenshot: {}", run.report());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_without_our_content_security_policy_fails_the_header_check() {
    let run = scenario_outcome(FIXTURE_BASE_URL, "harness_no_policy", json!({})).await;
    assert!(!run.passed, "a page without script-src 'none' passed\n{}", run.report());
    let failed = run.lines().pop().unwrap();
    let message = failed["failed"].as_str().unwrap_or_default();
    assert!(message.contains("script-src 'none'") && message.contains("frame-ancestors 'none'"), "{}", run.report());
}

/// The people the page scenarios act as.
const ADMIN_EMAIL: &str = "admin@example.org";
const ANALYST_EMAIL: &str = "analyst@example.org";
/// The admin the README's newcomer makes with `grapevine user add`.
const NEWCOMER_EMAIL: &str = "you@example.org";
/// Long enough and on no list of common passwords.
const ADMIN_PASSWORD: &str = "correct horse battery staple 42";

/// Adds an admin as `grapevine user add` does without an identity provider (the operator at the console), and
/// returns the one-time link it prints for setting a password.
async fn admin_with_password_link(app: &TestApp, email: &str) -> String {
    use secrecy::ExposeSecret;
    let usecases = UseCases::new(app.store.clone());
    let operator = Principal::operator();
    usecases.add_person(&operator, email, "admin", None).await.unwrap();
    let link = usecases.issue_password_link(&operator, email).await.unwrap();
    format!("{}/set-password/{}", app.http_url(), link.token.expose_secret())
}

/// An admin who has set their password through the link already, for the scenarios that start at the sign-in page.
async fn admin_with_password(app: &TestApp, email: &str, password: &str) {
    let link = admin_with_password_link(app, email).await;
    let token = link.rsplit('/').next().unwrap();
    UseCases::new(app.store.clone())
        .set_password(token, &secrecy::SecretString::from(password), RequestContext::default())
        .await
        .unwrap();
}

/// The newcomer's path of issue 17, by the real command line: `grapevine user add` makes the admin and prints the
/// link; in the browser, the link, a password, sign-in, an analyst added, both actions in the audit page and its
/// CSV, sign-out.
async fn a_new_admin_sets_a_password_signs_in_adds_an_analyst_and_sees_both_in_the_audit_trail(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let added = crate::command::stdout(&crate::command::grapevine(&[
        "user",
        "add",
        "--email",
        NEWCOMER_EMAIL,
        "--role",
        "admin",
        "--public-url",
        &app.http_url(),
        "--database-url",
        &app.database_url,
    ]));
    let link = added.lines().last().unwrap_or_default().trim().to_owned();
    assert!(link.starts_with(&format!("{}/set-password/", app.http_url())), "`user add` printed:\n{added}");
    let inputs = json!({
        "set_password_link": link,
        "admin_email": NEWCOMER_EMAIL,
        "password": ADMIN_PASSWORD,
        "analyst_email": ANALYST_EMAIL,
    });
    run_scenario(&app.http_url(), "local_sign_in", inputs).await;

    // What the pages did is what the store holds.
    let people = UseCases::new(app.store.clone()).people(&Principal::operator()).await.unwrap();
    let analyst = people.iter().find(|person| person.email == ANALYST_EMAIL).expect("the analyst was added");
    assert_eq!(analyst.role, Role::Analyst);
    app.stop().await;
}

async fn a_wrong_password_shows_an_error_summary_linked_to_the_fields(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    admin_with_password(&app, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    run_scenario(&app.http_url(), "wrong_password", json!({ "admin_email": ADMIN_EMAIL })).await;
}

async fn a_keyboard_alone_reaches_the_skip_link_first_and_signs_in(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    admin_with_password(&app, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let inputs = json!({ "admin_email": ADMIN_EMAIL, "password": ADMIN_PASSWORD });
    run_scenario(&app.http_url(), "keyboard_only", inputs).await;
}

/// The analyst's workbench in the browser (issue 18): every page visited and checked with axe, the priorities CSV
/// downloaded, a triage saved after another tab's, on insights sent by a real phone.
async fn an_analyst_works_through_every_workbench_page(backend: Backend) {
    use secrecy::ExposeSecret;
    let app = TestApp::spawn(backend).await;
    crate::analyst_pages::the_neighbourhood(&app).await;
    let usecases = UseCases::new(app.store.clone());
    let operator = Principal::operator();
    usecases.add_person(&operator, ANALYST_EMAIL, "analyst", None).await.unwrap();
    let link = usecases.issue_password_link(&operator, ANALYST_EMAIL).await.unwrap();
    let password = secrecy::SecretString::from(ADMIN_PASSWORD);
    usecases.set_password(link.token.expose_secret(), &password, RequestContext::default()).await.unwrap();
    let inputs = json!({
        "analyst_email": ANALYST_EMAIL,
        "password": ADMIN_PASSWORD,
        "from": "2026-11-01",
        "until": "2026-11-30",
        "area_code": grapevine_tests::points::JOINERS_SQUARE.0,
        "search": "chip shop",
        "insight_text": "Dealing outside the chip shop after school",
    });
    run_scenario(&app.http_url(), "analyst_pages", inputs).await;

    // What the pages did is what the trail holds: two triage writes allowed (the other tab's, then the analyst's
    // after being told), and one refused as changed first.
    let filter = grapevine_server::audit::AuditFilter { action: Some("triage.update".into()), ..Default::default() };
    let entries: Vec<_> =
        futures_util::TryStreamExt::try_collect::<Vec<_>>(usecases.audit_entries(&operator, filter).await.unwrap())
            .await
            .unwrap();
    let outcomes: Vec<&str> = entries.iter().map(|entry| entry.outcome.as_str()).collect();
    assert_eq!(outcomes.iter().filter(|outcome| **outcome == "allowed").count(), 3, "{outcomes:?}");
    assert_eq!(outcomes.iter().filter(|outcome| **outcome == "failed").count(), 1, "{outcomes:?}");
    app.stop().await;
}

on_both_backends!(
    an_analyst_works_through_every_workbench_page,
    a_new_admin_sets_a_password_signs_in_adds_an_analyst_and_sees_both_in_the_audit_trail,
    a_wrong_password_shows_an_error_summary_linked_to_the_fields,
    a_keyboard_alone_reaches_the_skip_link_first_and_signs_in,
);
