//! Helpers for Grapevine's end-to-end tests: the real server on port 0 over a fresh SQLite file, real phones (the SDK
//! over a temporary store), and an HTTP client with one method per endpoint.
//!
//! # Layout
//! - `TestApp`: start, restart and stop the server; create devices and tokens; call the API.
//! - `Phone`: a device with its own store directory.
//! - `it/`: the one integration-test binary, a module per concern.

use std::net::SocketAddr;
use std::sync::Arc;

use grapevine_client_sdk::{Channel, Draft, Location, Store as PhoneStore, SyncReport};
use grapevine_server::store::{Role, Store};
use grapevine_server::{Application, ServeConfig};
use serde_json::Value;
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The database a test runs on. Every integration test runs on both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The PostgreSQL server tests create their databases on (`GRAPEVINE_TEST_POSTGRES_URL` overrides it).
pub fn postgres_admin_url() -> String {
    std::env::var("GRAPEVINE_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A fresh, empty database on `backend`: its URL, and (for PostgreSQL) its name, to drop afterwards.
pub async fn fresh_database(backend: Backend, dir: &TempDir) -> (String, Option<String>) {
    match backend {
        Backend::Sqlite => (format!("sqlite://{}", dir.path().join("grapevine.db").display()), None),
        Backend::Postgres => {
            use sqlx::Connection;
            let admin_url = postgres_admin_url();
            let name = format!("grapevine_test_{}", uuid::Uuid::new_v4().simple());
            let mut admin = sqlx::PgConnection::connect(&admin_url)
                .await
                .expect("PostgreSQL must answer on 127.0.0.1:5432 (see .ci/run)");
            sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut admin).await.unwrap();
            let base = admin_url.rsplit_once('/').map_or(admin_url.as_str(), |(base, _)| base);
            (format!("{base}/{name}"), Some(name))
        }
    }
}

/// Creates the PostgreSQL database a URL names unless it exists (for a benchmark's kept database).
pub async fn create_postgres_database_if_missing(database_url: &str) {
    use sqlx::Connection;
    let name = database_url.rsplit('/').next().unwrap_or_default().to_owned();
    let mut admin = sqlx::PgConnection::connect(&postgres_admin_url()).await.expect("PostgreSQL must answer");
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
        .bind(&name)
        .fetch_one(&mut admin)
        .await
        .unwrap();
    if !exists {
        sqlx::query(&format!("CREATE DATABASE \"{name}\"")).execute(&mut admin).await.unwrap();
    }
}

/// Drops a test database, whoever is still connected.
pub fn drop_postgres_database(name: &str) {
    let name = name.to_owned();
    // Drop runs inside a test's runtime, which must not block on itself: use a thread with its own.
    let dropper = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            use sqlx::Connection;
            if let Ok(mut admin) = sqlx::PgConnection::connect(&postgres_admin_url()).await {
                let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut admin).await;
            }
        });
    });
    let _ = dropper.join();
}

/// Drops a test's PostgreSQL database when it goes out of scope, a failed assertion's unwinding included.
#[derive(Debug)]
pub struct DropDatabase(pub Option<String>);

impl Drop for DropDatabase {
    fn drop(&mut self) {
        if let Some(name) = self.0.take() {
            drop_postgres_database(&name);
        }
    }
}

/// A running server with its own database.
pub struct TestApp {
    pub addr: SocketAddr,
    pub database_url: String,
    pub analyst_token: String,
    pub store: Arc<dyn Store>,
    /// The invitation secret's file, in the test's directory (give it to `grapevine invite create`).
    pub invitation_secret_path: std::path::PathBuf,
    http: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
    /// The PostgreSQL database to drop when the test is done.
    postgres_database: Option<String>,
    // Held so the database outlives the server; dropped last.
    dir: Arc<TempDir>,
}

impl TestApp {
    /// Starts the real server on 127.0.0.1:0 with a fresh database on `backend` and an analyst token.
    pub async fn spawn(backend: Backend) -> TestApp {
        let dir = Arc::new(tempfile::tempdir().expect("temporary directory"));
        let (database_url, postgres_database) = fresh_database(backend, &dir).await;
        let mut app = TestApp::start(dir, database_url).await;
        app.postgres_database = postgres_database;
        let (_, token) =
            grapevine_server::auth::issue_api_token(app.store.as_ref(), Role::Analyst, "test analyst").await.unwrap();
        app.analyst_token = token;
        app
    }

    /// Starts the real server with its sync limits set by `limits` (the rest as `spawn`, without the analyst token).
    pub async fn spawn_with_limits(backend: Backend, limits: grapevine_server::app::SyncLimits) -> TestApp {
        TestApp::spawn_configured(backend, |config| config.limits = limits).await
    }

    /// Starts the real server with its configuration changed by `configure` (the rest as `spawn`, without the
    /// analyst token).
    pub async fn spawn_configured(backend: Backend, configure: impl FnOnce(&mut ServeConfig)) -> TestApp {
        let dir = Arc::new(tempfile::tempdir().expect("temporary directory"));
        let (database_url, postgres_database) = fresh_database(backend, &dir).await;
        let mut config = ServeConfig::new("127.0.0.1:0".parse().unwrap(), database_url);
        configure(&mut config);
        let mut app = TestApp::start_with(dir, config).await;
        app.postgres_database = postgres_database;
        app
    }

    async fn start(dir: Arc<TempDir>, database_url: String) -> TestApp {
        TestApp::start_with(dir, ServeConfig::new("127.0.0.1:0".parse().unwrap(), database_url)).await
    }

    async fn start_with(dir: Arc<TempDir>, mut config: ServeConfig) -> TestApp {
        let database_url = config.database_url.expose().to_owned();
        let invitation_secret_path =
            config.invitation_secret.get_or_insert_with(|| dir.path().join("invitation-secret")).clone();
        let app = Application::build(config).await.expect("server builds");
        let addr = app.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(app.run_until_stopped(async move {
            let _ = stopped.await;
        }));
        let store = grapevine_server::store::open(&database_url).await.expect("store opens beside the server");
        TestApp {
            addr,
            database_url,
            analyst_token: String::new(),
            store,
            invitation_secret_path,
            http: reqwest::Client::new(),
            stop: Some(stop),
            task: Some(task),
            postgres_database: None,
            dir,
        }
    }

    /// Stops the server gracefully and waits until it has.
    pub async fn stop(mut self) {
        self.shutdown().await;
    }

    async fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("server task").expect("server stopped cleanly");
        }
    }

    /// Stops the server and starts a new one over the same database (on a new port).
    pub async fn restart(mut self) -> TestApp {
        self.shutdown().await;
        let mut app = TestApp::start(self.dir.clone(), self.database_url.clone()).await;
        app.analyst_token = self.analyst_token.clone();
        app.postgres_database = self.postgres_database.take();
        app
    }

    /// The WebSocket URL devices sync through.
    pub fn sync_url(&self) -> String {
        format!("ws://{}/sync", self.addr)
    }

    /// The server's HTTP base URL, as a phone enrols with it.
    pub fn http_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The invitation secret the server hashes codes with.
    pub async fn invitation_secret(&self) -> grapevine_server::invitations::InvitationSecret {
        grapevine_server::invitations::InvitationSecret::read(&self.invitation_secret_path)
            .expect("the invitation secret reads")
            .expect("the server made its invitation secret")
    }

    /// Creates an invitation as `grapevine invite create` does, valid for `valid_for` from now (negative: expired
    /// already); returns its code.
    pub async fn create_invitation(&self, label: &str, uses: i64, valid_for: time::Duration) -> String {
        let code = grapevine_server::invitations::new_code();
        let hash = self.invitation_secret().await.hash_code(&code);
        let expires_at = time::OffsetDateTime::now_utc() + valid_for;
        self.store.add_invitation(label, &hash, uses, expires_at).await.unwrap();
        code
    }

    /// A POST with a raw body as JSON: the status and the JSON answer.
    pub async fn post_json(&self, path: &str, body: &str) -> (u16, Value) {
        let response = self
            .http
            .post(format!("http://{}{path}", self.addr))
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .expect("request sent");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Registers a device for a new collector, as `grapevine device add` does; returns its token.
    pub async fn add_device(&self, label: &str) -> String {
        grapevine_server::auth::issue_device(self.store.as_ref(), label, None).await.unwrap().1
    }

    /// Registers two devices of one collector; returns their tokens.
    pub async fn add_two_devices_of_one_collector(&self, label: &str) -> (String, String) {
        let (first, first_token) =
            grapevine_server::auth::issue_device(self.store.as_ref(), label, None).await.unwrap();
        let (_, second_token) =
            grapevine_server::auth::issue_device(self.store.as_ref(), label, Some(first.collector_id)).await.unwrap();
        (first_token, second_token)
    }

    /// A GET with an optional bearer token: the status and the JSON body.
    pub async fn get(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        let mut request = self.http.get(format!("http://{}{path}", self.addr));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("request sent");
        let status = response.status().as_u16();
        let body = response.json().await.unwrap_or(Value::Null);
        (status, body)
    }

    /// `GET /api/v1/areas?{query}` as the analyst; panics unless 200.
    pub async fn areas(&self, query: &str) -> Value {
        let (status, body) = self.get(&format!("/api/v1/areas?{query}"), Some(&self.analyst_token)).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// `GET /api/v1/areas/{code}?{query}` as the analyst; panics unless 200.
    pub async fn area(&self, code: &str, query: &str) -> Value {
        let (status, body) = self.get(&format!("/api/v1/areas/{code}?{query}"), Some(&self.analyst_token)).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// The non-zero totals of `GET /api/v1/areas` as (code, total) pairs, sorted by code, and `outside_coverage`.
    pub async fn totals(&self) -> (Vec<(String, i64)>, i64) {
        let body = self.areas("").await;
        let mut totals: Vec<(String, i64)> = body["areas"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|area| area["total"].as_i64().unwrap() > 0)
            .map(|area| (area["code"].as_str().unwrap().to_owned(), area["total"].as_i64().unwrap()))
            .collect();
        totals.sort();
        (totals, body["outside_coverage"].as_i64().unwrap())
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
        if let Some(name) = self.postgres_database.take() {
            drop_postgres_database(&name);
        }
    }
}

/// A real `grapevine serve` process, for tests that kill, signal and restart it.
pub struct ServerProcess {
    child: tokio::process::Child,
    pub addr: SocketAddr,
    pub database_url: String,
    /// Every line the server has logged so far (standard error), kept for tests that read its log.
    log: Arc<std::sync::Mutex<Vec<String>>>,
}

impl ServerProcess {
    /// Starts `grapevine serve --listen 127.0.0.1:0` over `database_url` and waits until it listens.
    ///
    /// # Panics
    /// The binary is missing or the server does not start within 30 seconds.
    pub async fn start(binary: &str, database_url: &str) -> ServerProcess {
        match ServerProcess::try_start(binary, database_url, &[], "info,sqlx=warn").await {
            Ok(server) => server,
            Err(log) => panic!("the server exited before listening:\n{log}"),
        }
    }

    /// Starts `grapevine serve --listen 127.0.0.1:0` over `database_url` with more flags and a `RUST_LOG` filter,
    /// and waits until it listens; if it exits first, its whole log is the error.
    ///
    /// # Panics
    /// The binary is missing, or the server neither listens nor exits within 30 seconds.
    pub async fn try_start(
        binary: &str,
        database_url: &str,
        flags: &[&str],
        rust_log: &str,
    ) -> Result<ServerProcess, String> {
        use tokio::io::{AsyncBufReadExt, BufReader};
        let mut command = tokio::process::Command::new(binary);
        // A SQLite database keeps its invitation secret beside it; the nodes of one PostgreSQL database share one
        // in the temporary directory, not in the working directory.
        if let Some((_, name)) = database_url.rsplit_once('/').filter(|_| database_url.starts_with("postgres")) {
            let secret = std::env::temp_dir().join("grapevine-test-secrets").join(name).join("invitation-secret");
            command.env("GRAPEVINE_INVITATION_SECRET", secret);
        }
        let mut child = command
            .args(["serve", "--listen", "127.0.0.1:0", "--database-url", database_url])
            .args(flags)
            .env("RUST_LOG", rust_log)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("the server binary starts");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let log = Arc::new(std::sync::Mutex::new(Vec::new()));
        let listening = tokio::time::timeout(std::time::Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await.unwrap() {
                log.lock().unwrap().push(line.clone());
                if line.contains("grapevine listening") {
                    return Some(listening_address(&line));
                }
            }
            None
        })
        .await
        .expect("the server listens or exits within 30 s");
        let Some(addr) = listening else {
            let _ = child.wait().await;
            return Err(log.lock().unwrap().join("\n"));
        };
        // Keep draining its log so it never blocks on a full pipe.
        let kept = log.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                kept.lock().unwrap().push(line);
            }
        });
        Ok(ServerProcess { child, addr, database_url: database_url.to_owned(), log })
    }

    /// Every line the server has logged so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// Waits until a logged line satisfies `wanted` (the log is read as it arrives); returns that line.
    ///
    /// # Panics
    /// No such line within 10 seconds.
    pub async fn wait_for_log(&self, wanted: impl Fn(&str) -> bool) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            if let Some(line) = self.log.lock().unwrap().iter().find(|line| wanted(line)) {
                return line.clone();
            }
            assert!(std::time::Instant::now() < deadline, "no such log line within 10 s:\n{}", self.log().join("\n"));
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// The server's HTTP base URL.
    pub fn http_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Whether the process has exited (without waiting).
    pub fn has_exited(&mut self) -> bool {
        self.child.try_wait().expect("the process can be polled").is_some()
    }

    pub fn sync_url(&self) -> String {
        format!("ws://{}/sync", self.addr)
    }

    /// The process id, while it runs (benchmarks read its memory from `/proc`).
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// SIGKILL: no chance to flush or close anything.
    pub async fn kill(&mut self) {
        self.child.kill().await.expect("SIGKILL delivered");
    }

    /// SIGTERM, then wait for the exit: graceful shutdown.
    pub async fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().expect("still running").to_string();
        let sent = std::process::Command::new("kill").args(["-TERM", &pid]).status().expect("kill runs");
        assert!(sent.success());
        tokio::time::timeout(std::time::Duration::from_secs(30), self.child.wait())
            .await
            .expect("the server stops within 30 s of SIGTERM")
            .expect("exit status")
    }
}

/// The address in the server's "grapevine listening" line, in its plain (`address=…`) or JSON (`"address":"…"`) form.
fn listening_address(line: &str) -> SocketAddr {
    let start = line
        .find("address=")
        .map(|at| at + "address=".len())
        .or_else(|| line.find("\"address\":\"").map(|at| at + "\"address\":\"".len()));
    let rest = &line[start.expect("the listening line names the address")..];
    let end = rest.find(|c: char| c == '"' || c.is_whitespace()).unwrap_or(rest.len());
    rest[..end].parse().expect("the listening address parses")
}

/// A phone: the SDK over its own store directory.
pub struct Phone {
    pub store: PhoneStore,
    pub token: String,
    _dir: TempDir,
}

impl Phone {
    /// A new phone registered with the server.
    pub async fn new(app: &TestApp, label: &str) -> Phone {
        let token = app.add_device(label).await;
        Phone::with_token(token).await
    }

    /// A new phone enrolled with an invitation code through the SDK; its token is the one the server gave it.
    ///
    /// # Errors
    /// Whatever `enrol` refuses with.
    pub async fn enrolled(app: &TestApp, code: &str, label: &str) -> Result<Phone, grapevine_client_sdk::SdkError> {
        let mut phone = Phone::with_token(String::new()).await;
        let enrolment = grapevine_client_sdk::enrol(&phone.store, &app.http_url(), code, label).await?;
        phone.token = enrolment.token().to_owned();
        Ok(phone)
    }

    /// A phone holding a given token (which the server may not know).
    pub async fn with_token(token: String) -> Phone {
        let dir = tempfile::tempdir().unwrap();
        let store = PhoneStore::open(dir.path()).await.unwrap();
        Phone { store, token, _dir: dir }
    }

    /// Captures an insight at a point.
    pub async fn capture_at(&self, category: &str, lat: f64, lon: f64, feeling_safe: Option<u8>) -> uuid::Uuid {
        self.store
            .capture(Draft {
                category: category.into(),
                text: format!("{category} seen here"),
                feeling_safe,
                location: Location::Gps { lat, lon, accuracy_m: 10.0 },
                channel: Channel::BarberHairdresser,
                captured_at: Some(time::macros::datetime!(2026-11-20 17:45 +00:00)),
                campaign: None,
            })
            .await
            .unwrap()
    }

    pub async fn sync(&self, app: &TestApp) -> Result<SyncReport, grapevine_client_sdk::SdkError> {
        self.sync_with(&app.sync_url()).await
    }

    pub async fn sync_with(&self, sync_url: &str) -> Result<SyncReport, grapevine_client_sdk::SdkError> {
        grapevine_client_sdk::sync(&self.store, sync_url, &self.token).await
    }
}

/// Points whose ward was checked independently (Shapely `covers` on the bundled wards, each a few hundred metres
/// from any border).
/// What the benchmarks report latencies with.
pub mod timing {
    use std::time::Duration;

    /// The `p` quantile (0 to 1) of durations sorted ascending, nearest rank.
    #[must_use]
    pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]
        let index = ((sorted.len() - 1) as f64 * p).round() as usize;
        sorted[index]
    }

    /// Milliseconds with two decimals.
    #[must_use]
    pub fn ms(duration: Duration) -> String {
        format!("{:.2} ms", duration.as_secs_f64() * 1e3)
    }
}

pub mod points {
    /// Joiner's Square, Stoke-on-Trent.
    pub const JOINERS_SQUARE: (&str, f64, f64) = ("E05008737", 53.01869, -2.16979);
    /// Abbey Hulton and Townsend, Stoke-on-Trent.
    pub const ABBEY_HULTON: (&str, f64, f64) = ("E05008714", 53.03228, -2.13610);
    /// Cannock North, Cannock Chase.
    pub const CANNOCK_NORTH: (&str, f64, f64) = ("E05006904", 52.70520, -2.02560);
    /// Westminster, London: outside every Staffordshire ward.
    pub const WESTMINSTER: (f64, f64) = (51.50070, -0.12460);
}

/// Made-up insights for the benchmarks: collectors who each report around a home point in Staffordshire, on random
/// days of a year, in words drawn from a small phrasebook, so a search has common words and rare ones to find.
pub mod synthetic {
    use grapevine_sync_proto::campaign::DEFAULT_CAMPAIGN;
    use grapevine_sync_proto::{Channel, Insight, Location};
    use rand::rngs::StdRng;
    use rand::Rng;

    /// A word one insight in about ten thousand holds (a search for it finds a handful among a million).
    pub const RARE_WORD: &str = "zebracrossing";

    /// A word about one insight in three holds.
    pub const COMMON_WORD: &str = "school";

    const OPENINGS: [&str; 8] = [
        "Groups gathering",
        "Young people dealing",
        "Cars speeding",
        "Bikes ridden on the pavement",
        "Shouting and fighting",
        "Needles left",
        "Windows smashed",
        "People feel unsafe walking",
    ];
    const PLACES: [&str; 6] = [
        "by the underpass",
        "outside the chip shop",
        "near the school gates",
        "in the park",
        "at the bus station",
        "behind the shops",
    ];
    const TIMES: [&str; 5] = ["most evenings", "after school", "at weekends", "late at night", "every morning"];

    /// A home point in the bundled wards' part of Staffordshire.
    pub fn home(rng: &mut StdRng) -> (f64, f64) {
        (rng.random_range(52.43..53.22), rng.random_range(-2.46..-1.59))
    }

    /// An insight around a random home point.
    pub fn random_insight(rng: &mut StdRng) -> Insight {
        let point = home(rng);
        insight_near(rng, point)
    }

    /// A sentence from the phrasebook; `RARE_WORD` in about one in ten thousand.
    pub fn sentence(rng: &mut StdRng) -> String {
        let mut text = format!(
            "{} {} {}",
            OPENINGS[rng.random_range(0..OPENINGS.len())],
            PLACES[rng.random_range(0..PLACES.len())],
            TIMES[rng.random_range(0..TIMES.len())]
        );
        if rng.random_range(0..10_000) == 0 {
            text.push_str(&format!(" by the {RARE_WORD}"));
        }
        text
    }

    /// An insight within about a kilometre of a point, on a random day of the year to 2026-11-22.
    pub fn insight_near(rng: &mut StdRng, (lat, lon): (f64, f64)) -> Insight {
        let day_offset = rng.random_range(0..365);
        let captured_at = time::macros::datetime!(2025-11-22 12:00 +00:00) + time::Duration::days(day_offset);
        let category = DEFAULT_CAMPAIGN.categories[rng.random_range(0..DEFAULT_CAMPAIGN.categories.len())].slug;
        Insight {
            id: uuid::Uuid::new_v4(),
            captured_at,
            campaign: "community-safety".into(),
            category: category.into(),
            text: sentence(rng),
            feeling_safe: Some(rng.random_range(1..=5)),
            location: Location::Gps {
                lat: lat + rng.random_range(-0.01..0.01),
                lon: lon + rng.random_range(-0.015..0.015),
                accuracy_m: 12.0,
            },
            channel: Channel::ALL[rng.random_range(0..Channel::ALL.len())],
        }
    }
}
