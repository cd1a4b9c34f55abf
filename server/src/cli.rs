//! The `grapevine` command line: one clap struct, every flag with its environment twin and a doc comment, so
//! `--help` documents a deployment.

pub mod audit;

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use anyhow::Context;

use crate::app::{Application, ServeConfig};
use crate::database_url::DatabaseUrl;
use crate::db_lock::DatabaseLock;
use crate::domain::Principal;
use crate::domain::Scope;
use crate::geo::atlas::DEFAULT_SET;
use crate::geo::boundary_files::{read_boundary_file, BoundaryFormat, ReadOptions};
use crate::geo::postcodes::read_postcodes;
use crate::invitations;
use crate::people;
use crate::store::{self, ApiTokenInfo, Role, DEFAULT_DATABASE_URL};
use crate::telemetry::LogFormat;
use crate::usecase::cohorts::NewInvitation;
use crate::usecase::{reference, UseCaseError, UseCases};
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

/// Grapevine: community-safety insights from the people already there.
#[derive(Debug, Parser)]
#[command(name = "grapevine", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server: the /sync endpoint for phones and the analyst API. Applies pending migrations first.
    Serve(Box<ServeArgs>),
    /// Apply the database migrations and report the schema version, without starting the server (refused while a
    /// server holds a SQLite database).
    Migrate {
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Write a consistent copy of a SQLite database while the server runs (PostgreSQL: use pg_dump, see
    /// docs/operations.md).
    Backup {
        /// The file to write; it must not exist yet.
        #[arg(long)]
        to: PathBuf,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Replace a SQLite database with a backup. Refused while a server holds the database: stop it first.
    Restore {
        /// A file written by `grapevine backup`.
        #[arg(long)]
        from: PathBuf,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Manage collectors' devices.
    #[command(subcommand)]
    Device(DeviceCommand),
    /// Invitations: codes (and QR codes) a cohort's phones enrol with.
    #[command(subcommand)]
    Invite(InviteCommand),
    /// People: accounts with a role and a scope of areas (docs/access.md).
    #[command(subcommand)]
    User(UserCommand),
    /// Manage API tokens: a person's, or an unscoped service account's.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Boundary sets and their generations (docs/geotagging.md).
    #[command(subcommand)]
    Boundaries(BoundariesCommand),
    /// Postcode centroids, for insights located by postcode.
    #[command(subcommand)]
    Postcodes(PostcodesCommand),
    /// The audit trail: who did what, when, and whether it was allowed; list it, or verify its hash chain
    /// (docs/audit.md).
    #[command(subcommand)]
    Audit(audit::AuditCommand),
}

#[derive(Debug, Subcommand)]
pub enum BoundariesCommand {
    /// Import a boundary file as the next generation of a set: GeoJSON, KML/KMZ (data.police.uk neighbourhoods) or
    /// a police.uk boundary (a JSON list of latitude/longitude). Every stored insight is tagged in it; all of it
    /// happens, or none.
    Import {
        /// The file to read.
        file: PathBuf,
        /// The boundary set this is a generation of, e.g. `wards` or `neighbourhoods`.
        #[arg(long)]
        set: String,
        /// The property holding each area's code (detected when not given: e.g. WD23CD, code, id).
        #[arg(long)]
        code_field: Option<String>,
        /// The property holding each area's name (detected when not given: e.g. WD23NM, name).
        #[arg(long)]
        name_field: Option<String>,
        /// The file's format, when its name and content do not say: geojson, kml, kmz or police-uk.
        #[arg(long)]
        format: Option<BoundaryFormat>,
        /// Read and validate only; print the report and change nothing.
        #[arg(long)]
        check: bool,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// List every boundary set with its generations and area counts; the filing set is marked.
    List {
        #[command(flatten)]
        filing: FilingSetArgs,
        #[command(flatten)]
        database: DatabaseArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum PostcodesCommand {
    /// Import an ONS Postcode Directory CSV (columns pcds, lat, long): all of it, or nothing if a row is bad (a
    /// position outside WGS84, or a postcode given twice with different positions). A row repeated exactly is
    /// counted once; the ONS marker for "no position" (latitude 99.999999) is left out and counted.
    Import {
        /// The CSV file.
        file: PathBuf,
        #[command(flatten)]
        database: DatabaseArgs,
    },
}

#[derive(Debug, Args)]
pub struct DatabaseArgs {
    /// Where data lives: `sqlite://PATH` (created if missing) or `postgres://USER@HOST:PORT/DATABASE`.
    /// (A password in it is never printed: `DatabaseUrl` redacts it.)
    #[arg(long, env = "GRAPEVINE_DATABASE_URL", default_value = DEFAULT_DATABASE_URL, hide_env_values = true)]
    pub database_url: DatabaseUrl,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The address to listen on.
    #[arg(long, env = "GRAPEVINE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Close a sync connection after this many seconds without a frame from the device.
    #[arg(long, env = "GRAPEVINE_IDLE_TIMEOUT_SECS", default_value_t = 120)]
    pub idle_timeout_secs: u64,
    /// Ping each sync connection this often (seconds), so quiet devices and proxies keep it open.
    #[arg(long, env = "GRAPEVINE_KEEPALIVE_SECS", default_value_t = 30)]
    pub keepalive_secs: u64,
    /// Sustained sync messages per second allowed per device.
    #[arg(long, env = "GRAPEVINE_RATE_LIMIT", default_value_t = 500.0)]
    pub rate_limit: f64,
    /// Sync messages a device may send in one burst.
    #[arg(long, env = "GRAPEVINE_RATE_BURST", default_value_t = 20_000.0)]
    pub rate_burst: f64,
    /// Unknown invitation codes one network address may try at once (`POST /api/v1/enrol`).
    #[arg(long, env = "GRAPEVINE_ENROL_BURST", default_value_t = 20.0)]
    pub enrol_burst: f64,
    /// Unknown invitation codes one network address may try per minute after its burst.
    #[arg(long, env = "GRAPEVINE_ENROL_PER_MINUTE", default_value_t = 20.0)]
    pub enrol_per_minute: f64,
    /// A reverse proxy in front of the server (repeat, or separate with commas): its `X-Forwarded-For` names the
    /// address a request is counted against. Without one, that header is ignored.
    #[arg(long = "trusted-proxy", env = "GRAPEVINE_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// How log lines are written: `text` for people, `json` (one object a line, with the request id) for log
    /// shippers. `RUST_LOG` sets what is logged.
    #[arg(long, env = "GRAPEVINE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Close a connection that has not sent a request's whole header within this many seconds (slow clients and
    /// slowloris attacks hold sockets otherwise).
    #[arg(long, env = "GRAPEVINE_HEADER_READ_TIMEOUT_SECS", default_value_t = 10)]
    pub header_read_timeout_secs: u64,
    /// The most connections one network address (an IPv4 address or an IPv6 /64) may hold open at once, sync
    /// connections included; more are closed at once. A `--trusted-proxy` is not capped: cap its clients there.
    #[arg(long, env = "GRAPEVINE_MAX_CONNECTIONS_PER_ADDRESS", default_value_t = 128)]
    pub max_connections_per_address: usize,
    #[command(flatten)]
    pub web: WebArgs,
    #[command(flatten)]
    pub invitation_secret: InvitationSecretArgs,
    #[command(flatten)]
    pub filing: FilingSetArgs,
}

/// The web pages: where browsers reach them, how long sessions live, and the identity provider.
#[derive(Debug, Args)]
pub struct WebArgs {
    /// The address people's browsers use, e.g. `https://grapevine.example.org` (links the server prints, and the
    /// identity provider's redirect, are made from it). By default `http://` and the listen address.
    #[arg(long, env = "GRAPEVINE_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Browsers reach the server over https through a TLS proxy (cookies `Secure`, HSTS sent); implied by an https
    /// `--public-url`.
    #[arg(long, env = "GRAPEVINE_BEHIND_TLS_PROXY")]
    pub behind_tls_proxy: bool,
    /// A browser session ends after this many minutes without a request.
    #[arg(long, env = "GRAPEVINE_SESSION_IDLE_MINUTES", default_value_t = 30)]
    pub session_idle_minutes: u64,
    /// A browser session ends this many hours after signing in, however busy.
    #[arg(long, env = "GRAPEVINE_SESSION_LIFETIME_HOURS", default_value_t = 12)]
    pub session_lifetime_hours: u64,
    #[command(flatten)]
    pub oidc: OidcArgs,
}

/// Sign-in through an organisation's OpenID Connect identity provider (Microsoft Entra ID and the like).
#[derive(Debug, Args)]
pub struct OidcArgs {
    /// The provider's issuer URL (its discovery document is read at the first sign-in, then hourly); with it, the
    /// sign-in page offers the organisation's sign-in.
    #[arg(long, env = "GRAPEVINE_OIDC_ISSUER", requires_all = ["oidc_client_id", "oidc_client_secret"])]
    pub oidc_issuer: Option<String>,
    /// This server's client id at the provider.
    #[arg(long, env = "GRAPEVINE_OIDC_CLIENT_ID")]
    pub oidc_client_id: Option<String>,
    /// This server's client secret at the provider (never logged; prefer the environment variable).
    #[arg(long, env = "GRAPEVINE_OIDC_CLIENT_SECRET", hide_env_values = true)]
    pub oidc_client_secret: Option<secrecy::SecretString>,
    /// The ID token claim listing the person's groups; with `--oidc-role-map`, someone not added by an admin is
    /// added at first sign-in with their group's role.
    #[arg(long, env = "GRAPEVINE_OIDC_ROLE_CLAIM", requires = "oidc_role_map")]
    pub oidc_role_claim: Option<String>,
    /// `GROUP=ROLE` pairs, separated by commas; the first of a person's groups that matches names their role.
    #[arg(long, env = "GRAPEVINE_OIDC_ROLE_MAP", value_delimiter = ',', value_parser = parse_role_mapping)]
    pub oidc_role_map: Vec<(String, crate::domain::Role)>,
    /// Take an `email` claim without `email_verified` as verified, for a provider that only issues addresses its
    /// own organisation controls (a single-tenant Microsoft Entra ID sends no `email_verified`). Never for a
    /// provider where people choose their own address. An explicit `email_verified: false` is still refused.
    #[arg(long, env = "GRAPEVINE_OIDC_TRUST_EMAIL")]
    pub oidc_trust_email: bool,
}

fn parse_role_mapping(text: &str) -> Result<(String, crate::domain::Role), String> {
    let (group, role) = text.split_once('=').ok_or_else(|| format!("'{text}' is not GROUP=ROLE"))?;
    let role = crate::domain::Role::parse(role.trim()).ok_or_else(|| format!("'{role}' is not a role"))?;
    Ok((group.trim().to_owned(), role))
}

impl WebArgs {
    fn config(self) -> crate::app::WebConfig {
        let oidc = match (self.oidc.oidc_issuer, self.oidc.oidc_client_id, self.oidc.oidc_client_secret) {
            (Some(issuer), Some(client_id), Some(client_secret)) => Some(crate::identity::oidc::OidcConfig {
                issuer,
                client_id,
                client_secret,
                role_claim: self.oidc.oidc_role_claim,
                role_map: self.oidc.oidc_role_map,
                trust_email: self.oidc.oidc_trust_email,
            }),
            _ => None,
        };
        crate::app::WebConfig {
            public_url: self.public_url.map(|url| url.trim_end_matches('/').to_owned()),
            behind_tls_proxy: self.behind_tls_proxy,
            sessions: crate::usecase::sign_in::SessionPolicy {
                idle: std::time::Duration::from_secs(self.session_idle_minutes.max(1) * 60),
                lifetime: std::time::Duration::from_secs(self.session_lifetime_hours.max(1) * 60 * 60),
            },
            oidc,
        }
    }
}

#[derive(Debug, Args)]
pub struct InvitationSecretArgs {
    /// The file holding the secret invitation codes are hashed with (created with mode 0600 on first use). Every
    /// node and every `grapevine invite` command must read the same one; back it up with the database. By default
    /// `invitation-secret` beside the SQLite database, or `grapevine-data/invitation-secret` for PostgreSQL.
    #[arg(long = "invitation-secret", env = "GRAPEVINE_INVITATION_SECRET")]
    pub path: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct FilingSetArgs {
    /// The boundary set that files insights: its newest generation is what a phone is told and may pick areas from.
    /// The server refuses to start while the set has no boundaries (`grapevine boundaries list`).
    #[arg(long, env = "GRAPEVINE_FILING_SET", default_value = DEFAULT_SET)]
    pub filing_set: String,
}

#[derive(Debug, Subcommand)]
pub enum DeviceCommand {
    /// Register a collector's device and print its sync token (last line).
    Add {
        /// A label people recognise, e.g. "Hanley barbers".
        #[arg(long)]
        label: String,
        /// Add the device to this existing collector (a second phone of the same person); by default the device
        /// gets a new collector.
        #[arg(long)]
        collector: Option<Uuid>,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// List devices: id, collector, label, when created, when revoked.
    List {
        /// Only this collector's devices.
        #[arg(long)]
        collector: Option<Uuid>,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Revoke a device: its next sync is refused with `device_revoked`; what it already sent stays.
    Revoke {
        /// The device's id, from `grapevine device list`.
        id: Uuid,
        #[command(flatten)]
        database: DatabaseArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum InviteCommand {
    /// Create an invitation for a cohort: prints its code (last line, shown only now) and writes its QR code as SVG
    /// and PNG.
    Create {
        /// Who it is for, e.g. "Hanley barbers"; each enrolled device is labelled with it unless the phone names
        /// itself.
        #[arg(long)]
        label: String,
        /// How many phones may enrol with it.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(i64).range(1..=100_000))]
        uses: i64,
        /// How long it is valid: 30m, 12h, 14d, 2w.
        #[arg(long, default_value = "14d", value_parser = crate::invitations::parse_validity)]
        expires: std::time::Duration,
        /// The directory to write invitation-<ID>.svg and .png to.
        #[arg(long, default_value = ".")]
        qr_out: PathBuf,
        /// The server's public HTTP address, e.g. https://grapevine.example.org. Given, the QR code holds the link
        /// grapevine://enrol?server=<URL>&code=<CODE>; otherwise it holds the code alone.
        #[arg(long, env = "GRAPEVINE_PUBLIC_URL")]
        server_url: Option<String>,
        #[command(flatten)]
        secret: InvitationSecretArgs,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// List invitations with their uses left and expiry, newest first. A `legacy` hash is a plain SHA-256 (made
    /// before the invitation secret): revoke such an invitation if a copy of the database may have leaked.
    List {
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Revoke an invitation: its code enrols no one from now on. Devices it enrolled keep working.
    Revoke {
        /// The invitation's id, from `grapevine invite list`.
        id: Uuid,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Replace the invitation secret with a new one (after it was lost or may have leaked). Refused while an
    /// invitation made with the current secret is open; copy the new file to every node and restart them.
    NewSecret {
        #[command(flatten)]
        secret: InvitationSecretArgs,
        #[command(flatten)]
        database: DatabaseArgs,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RoleArg {
    Analyst,
    Board,
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add a person with a role (collector, coordinator, analyst, board, admin) and, optionally, a scope. Without an
    /// identity provider, prints a one-time link (valid 24 hours) for them to set a password and sign in.
    Add {
        /// Their email address (stored trimmed and lower-cased; unique).
        #[arg(long)]
        email: String,
        /// collector, coordinator, analyst, board or admin.
        #[arg(long)]
        role: String,
        /// The areas they may act in, SET:CODE separated by commas (e.g. districts:E07000197), each in the newest
        /// generation of its set; without it, everywhere.
        #[arg(long)]
        areas: Option<String>,
        #[command(flatten)]
        sign_in: SignInLinkArgs,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Print a new one-time link (valid 24 hours) for a person to set their password: a first one that was lost or
    /// expired, or a forgotten password. Setting it ends every session they had.
    PasswordLink {
        #[arg(long)]
        email: String,
        #[command(flatten)]
        sign_in: SignInLinkArgs,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// List people: email, role, scope, when added, when disabled.
    List {
        /// Print a JSON array instead of a table, for scripts.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Change a person's role and, with --areas, their scope: their tokens carry it from their next request.
    SetRole {
        #[arg(long)]
        email: String,
        /// collector, coordinator, analyst, board or admin.
        #[arg(long)]
        role: String,
        /// A new scope, SET:CODE separated by commas; without it, the scope stays as it is.
        #[arg(long)]
        areas: Option<String>,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Disable a person: every one of their tokens is refused (401 person_disabled) from its next request on.
    Disable {
        #[arg(long)]
        email: String,
        #[command(flatten)]
        database: DatabaseArgs,
    },
}

/// What a printed set-password link is made of.
#[derive(Debug, Args)]
pub struct SignInLinkArgs {
    /// The address people's browsers use (as `serve --public-url`).
    #[arg(long, env = "GRAPEVINE_PUBLIC_URL", default_value = "http://127.0.0.1:8080")]
    pub public_url: String,
    /// The identity provider the server signs people in through (as `serve --oidc-issuer`): with one, people sign in
    /// there and `user add` prints no password link.
    #[arg(long, env = "GRAPEVINE_OIDC_ISSUER")]
    pub oidc_issuer: Option<String>,
}

impl SignInLinkArgs {
    fn link(&self, link: &crate::usecase::sign_in::SetPasswordLink) -> String {
        use secrecy::ExposeSecret;
        format!("{}/set-password/{}", self.public_url.trim_end_matches('/'), link.token.expose_secret())
    }
}

/// Prints a set-password link for `email`, its validity and who may use it.
async fn print_password_link(usecases: &UseCases, email: &str, sign_in: &SignInLinkArgs) -> anyhow::Result<()> {
    let link = usecases.issue_password_link(&Principal::operator(), email).await?;
    println!(
        "Send {} this link to set a password and sign in; it works once, until {} (UTC):",
        link.person.email,
        minutes(link.expires_at)
    );
    println!("{}", sign_in.link(&link));
    Ok(())
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create an API token and print it (last line): a person's (--user), carrying their role and scope, or an
    /// unscoped service account's (--role).
    Add {
        /// The email of the person whose token it is.
        #[arg(long, conflicts_with = "role", required_unless_present = "role")]
        user: Option<String>,
        /// A service account's role: what the token may read, everywhere.
        #[arg(long, value_enum)]
        role: Option<RoleArg>,
        /// A person's token expires after this long: Nd (1d to 1825d) or Nh (1h to 43800h). Without it, it does not
        /// expire.
        #[arg(long, requires = "user")]
        expires: Option<String>,
        /// Who holds it.
        #[arg(long, default_value = "")]
        label: String,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// List API tokens: id, role, whose, label, when created, when it expires, when revoked. Tokens themselves are
    /// never shown again.
    List {
        /// Print a JSON array instead of a table, for scripts.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Revoke an API token: every node refuses it (401 unauthorized) from its next request on.
    Revoke {
        /// The token's id, from `grapevine token list`.
        id: Uuid,
        #[command(flatten)]
        database: DatabaseArgs,
    },
}

/// The server's configuration from `serve`'s flags; budgets are at least one.
fn serve_config(args: ServeArgs) -> ServeConfig {
    let mut config = ServeConfig::new(args.listen, args.database.database_url);
    config.limits.idle_timeout = std::time::Duration::from_secs(args.idle_timeout_secs.max(1));
    config.limits.keepalive_interval = std::time::Duration::from_secs(args.keepalive_secs.max(1));
    config.limits.messages_per_second = args.rate_limit;
    config.limits.burst = args.rate_burst.max(1.0);
    config.enrol_limit.burst = args.enrol_burst.max(1.0);
    config.enrol_limit.per_minute = args.enrol_per_minute.max(1.0);
    config.trusted_proxies = args.trusted_proxies;
    config.invitation_secret = args.invitation_secret.path;
    config.filing_set = args.filing.filing_set;
    config.connection_limits.header_read_timeout = std::time::Duration::from_secs(args.header_read_timeout_secs.max(1));
    config.connection_limits.max_per_address = args.max_connections_per_address.max(1);
    config.web = args.web.config();
    config
}

/// Runs a parsed command line.
///
/// # Errors
/// Whatever the command fails with, for `main` to print.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => {
            let app = Application::build(serve_config(*args)).await?;
            tracing::info!(address = %app.local_addr()?, "grapevine listening");
            app.run_until_stopped(shutdown_signal()).await
        }
        Command::Migrate { database } => {
            // A server migrates at start; a migration under a running one would change the schema it is using.
            let _lock = DatabaseLock::acquire(&database.database_url, "migrate", None)?;
            let usecases = UseCases::open(&database.database_url).await?;
            println!("The database is at schema version {}.", usecases.schema_version().await?);
            Ok(())
        }
        Command::Backup { to, database } => {
            reference::backup(&Principal::operator(), sqlite_url(&database.database_url)?, &to).await?;
            println!("Backed up to {}.", to.display());
            Ok(())
        }
        Command::Restore { from, database } => {
            // Held while the files are replaced, so no server starts on a half-restored database either.
            let _lock = DatabaseLock::acquire(sqlite_url(&database.database_url)?, "restore", None)?;
            reference::restore(&Principal::operator(), &from, sqlite_url(&database.database_url)?).await?;
            println!("Restored {} from {}.", database.database_url, from.display());
            Ok(())
        }
        Command::Device(command) => run_devices(command).await,
        Command::Invite(command) => run_invitations(command).await,
        Command::Boundaries(command) => run_boundaries(command).await,
        Command::Postcodes(command) => run_postcodes(command).await,
        Command::Token(command) => run_tokens(command).await,
        Command::Audit(command) => audit::run(command).await,
        Command::User(command) => run_people(command).await,
    }
}

async fn run_people(command: UserCommand) -> anyhow::Result<()> {
    match command {
        UserCommand::Add { email, role, areas, sign_in, database } => {
            let usecases = UseCases::open(&database.database_url).await?;
            let person = usecases.add_person(&Principal::operator(), &email, &role, areas.as_deref()).await?;
            println!("Added {} as {}, scope {}.", person.email, person.role, person.scope.describe());
            match &sign_in.oidc_issuer {
                Some(issuer) => println!("They sign in through {issuer} with this email address."),
                None => print_password_link(&usecases, &person.email, &sign_in).await?,
            }
        }
        UserCommand::PasswordLink { email, sign_in, database } => {
            let usecases = UseCases::open(&database.database_url).await?;
            print_password_link(&usecases, &email, &sign_in).await?;
        }
        UserCommand::List { json, database } => {
            let usecases = UseCases::open(&database.database_url).await?;
            let everyone = usecases.people(&Principal::operator()).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&people_json(&everyone)?)?);
            } else {
                println!("{:<32}  {:<11}  {:<20}  {:<20}  scope", "email", "role", "added", "disabled");
                for person in everyone {
                    println!(
                        "{:<32}  {:<11}  {:<20}  {:<20}  {}",
                        person.email,
                        person.role.as_str(),
                        minutes(person.created_at),
                        person.disabled_at.map_or_else(|| "-".to_owned(), minutes),
                        person.scope.describe()
                    );
                }
            }
        }
        UserCommand::SetRole { email, role, areas, database } => {
            let usecases = UseCases::open(&database.database_url).await?;
            let person = usecases.set_role(&Principal::operator(), &email, &role, areas.as_deref()).await?;
            println!(
                "{} is now {}, scope {}; their tokens carry it from their next request.",
                person.email,
                person.role,
                person.scope.describe()
            );
        }
        UserCommand::Disable { email, database } => {
            let usecases = UseCases::open(&database.database_url).await?;
            if usecases.disable_person(&Principal::operator(), &email).await? {
                println!("Disabled {}; every node refuses their tokens from the next request on.", email.trim());
            } else {
                println!("{} was disabled already; nothing changed.", email.trim());
            }
        }
    }
    Ok(())
}

/// `user list --json`: one object per person, times in RFC 3339 (UTC); `scope` null for everything, else a list of
/// `{set, code, generation}` (the id of the generation it was granted in).
fn people_json(everyone: &[store::PersonInfo]) -> anyhow::Result<serde_json::Value> {
    let entries = everyone
        .iter()
        .map(|person| {
            let scope = match &person.scope {
                Scope::Everything => serde_json::Value::Null,
                Scope::Areas(areas) => areas
                    .iter()
                    .map(|area| serde_json::json!({"set": area.set, "code": area.code, "generation": area.generation_id}))
                    .collect(),
            };
            Ok(serde_json::json!({
                "id": person.id,
                "email": person.email,
                "role": person.role.as_str(),
                "scope": scope,
                "created_at": rfc3339(person.created_at)?,
                "disabled_at": person.disabled_at.map(rfc3339).transpose()?,
            }))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(serde_json::Value::Array(entries))
}

async fn run_tokens(command: TokenCommand) -> anyhow::Result<()> {
    match command {
        TokenCommand::Add { user: Some(email), expires, label, database, .. } => {
            let expires = expires.as_deref().map(people::parse_expiry).transpose().map_err(UseCaseError::from)?;
            let usecases = UseCases::open(&database.database_url).await?;
            let issued = usecases.issue_person_token(&Principal::operator(), &email, &label, expires).await?;
            let until =
                issued.expires_at.map_or_else(|| "does not expire".to_owned(), |at| format!("expires {}", minutes(at)));
            println!(
                "Added a token {} of {} ({until}). The token, shown only now:",
                issued.id,
                email.trim().to_lowercase()
            );
            println!("{}", issued.token);
        }
        TokenCommand::Add { role, label, database, .. } => {
            let role = match role.context("a token needs --user EMAIL or --role ROLE")? {
                RoleArg::Analyst => Role::Analyst,
                RoleArg::Board => Role::Board,
            };
            let usecases = UseCases::open(&database.database_url).await?;
            let (id, token) = usecases.issue_service_token(&Principal::operator(), role, &label).await?;
            println!("Added {} token {id}. The token, shown only now:", role.as_str());
            println!("{token}");
        }
        TokenCommand::List { json, database } => {
            let usecases = UseCases::open(&database.database_url).await?;
            let tokens = usecases.api_tokens(&Principal::operator()).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&api_tokens_json(&tokens)?)?);
            } else {
                println!(
                    "{:<36}  {:<11}  {:<24}  {:<20}  {:<20}  {:<20}  label",
                    "token", "role", "whose", "created", "expires", "revoked"
                );
                for token in tokens {
                    println!(
                        "{:<36}  {:<11}  {:<24}  {:<20}  {:<20}  {:<20}  {}",
                        token.id,
                        token.role.as_str(),
                        token.person_email.as_deref().unwrap_or("service account"),
                        minutes(token.created_at),
                        token.expires_at.map_or_else(|| "never".to_owned(), minutes),
                        token.revoked_at.map_or_else(|| "-".to_owned(), minutes),
                        token.label
                    );
                }
            }
        }
        TokenCommand::Revoke { id, database } => {
            let usecases = UseCases::open(&database.database_url).await?;
            if usecases.revoke_api_token(&Principal::operator(), id).await? {
                println!("Revoked API token {id}; every node refuses it from its next request on.");
            } else {
                println!("API token {id} was revoked already; nothing changed.");
            }
        }
    }
    Ok(())
}

fn rfc3339(at: time::OffsetDateTime) -> Result<String, time::error::Format> {
    at.to_offset(time::UtcOffset::UTC).format(&Rfc3339)
}

/// `token list --json`: one object per token, times in RFC 3339 (UTC), `revoked_at` null while it is live,
/// `expires_at` null for a token that does not expire, `person` the email of the person whose token it is (null for
/// a service account's).
fn api_tokens_json(tokens: &[ApiTokenInfo]) -> anyhow::Result<serde_json::Value> {
    let entries = tokens
        .iter()
        .map(|token| {
            Ok(serde_json::json!({
                "id": token.id,
                "role": token.role.as_str(),
                "person": token.person_email,
                "label": token.label,
                "created_at": rfc3339(token.created_at)?,
                "expires_at": token.expires_at.map(rfc3339).transpose()?,
                "revoked_at": token.revoked_at.map(rfc3339).transpose()?,
            }))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(serde_json::Value::Array(entries))
}

async fn run_devices(command: DeviceCommand) -> anyhow::Result<()> {
    match command {
        DeviceCommand::Add { label, collector, database } => {
            let usecases = UseCases::open(&database.database_url).await?;
            let (device, token) = usecases.add_device(&Principal::operator(), &label, collector).await?;
            println!(
                "Added device {} for collector {} ({label}). Its token, shown only now:",
                device.device_id, device.collector_id
            );
            println!("{token}");
        }
        DeviceCommand::List { collector, database } => {
            let usecases = UseCases::open(&database.database_url).await?;
            let devices = usecases.devices(&Principal::operator(), collector).await?;
            println!("{:<36}  {:<36}  {:<20}  {:<20}  label", "device", "collector", "created", "revoked");
            for device in devices {
                println!(
                    "{:<36}  {:<36}  {:<20}  {:<20}  {}",
                    device.device_id,
                    device.collector_id,
                    minutes(device.created_at),
                    device.revoked_at.map_or_else(|| "-".to_owned(), minutes),
                    device.label
                );
            }
        }
        DeviceCommand::Revoke { id, database } => {
            let usecases = UseCases::open(&database.database_url).await?;
            if usecases.revoke_device(&Principal::operator(), id).await? {
                println!(
                    "Revoked device {id}. Its next sync is refused (device_revoked); what it sent stays, and what it \
                     has not sent stays on the phone."
                );
            } else {
                println!("Device {id} was revoked already; nothing changed.");
            }
        }
    }
    Ok(())
}

async fn run_invitations(command: InviteCommand) -> anyhow::Result<()> {
    match command {
        InviteCommand::Create { label, uses, expires, qr_out, server_url, secret, database } => {
            anyhow::ensure!(!label.trim().is_empty(), "an invitation needs a --label saying who it is for");
            let usecases = UseCases::open(&database.database_url).await?;
            let secret = usecases.invitation_secret(secret.path.as_deref(), &database.database_url).await?;
            let NewInvitation { id, code, expires_at } =
                usecases.create_invitation(&Principal::operator(), &secret, &label, uses, expires).await?;
            let (content, holds) = match &server_url {
                Some(url) => (invitations::enrol_link(url, &code), "the enrol link for this server"),
                None => (code.clone(), "the code alone"),
            };
            let (svg, png) = crate::qr::write_qr(&content, &qr_out, &format!("invitation-{id}"))?;
            println!("Created invitation {id} for \"{}\": {uses} use(s), until {}.", label.trim(), minutes(expires_at));
            println!("QR code, holding {holds}: {} and {}", svg.display(), png.display());
            if server_url.is_none() {
                println!(
                    "Give --server-url (or GRAPEVINE_PUBLIC_URL) to put this server's address in the QR code too."
                );
            }
            println!("The code, shown only now:");
            println!("{code}");
        }
        InviteCommand::List { database } => {
            let usecases = UseCases::open(&database.database_url).await?;
            let invitations = usecases.invitations(&Principal::operator()).await?;
            let now = time::OffsetDateTime::now_utc();
            println!(
                "{:<36}  {:>9}  {:<20}  {:<9}  {:<6}  label",
                "invitation", "uses left", "expires", "state", "hash"
            );
            for invitation in invitations {
                let state = if invitation.revoked_at.is_some() {
                    "revoked"
                } else if now >= invitation.expires_at {
                    "expired"
                } else if invitation.uses_left == 0 {
                    "used up"
                } else {
                    "open"
                };
                println!(
                    "{:<36}  {:>9}  {:<20}  {:<9}  {:<6}  {}",
                    invitation.id,
                    format!("{}/{}", invitation.uses_left, invitation.uses),
                    minutes(invitation.expires_at),
                    state,
                    if invitation.legacy_hash { "legacy" } else { "keyed" },
                    invitation.label
                );
            }
        }
        InviteCommand::Revoke { id, database } => {
            let usecases = UseCases::open(&database.database_url).await?;
            if usecases.revoke_invitation(&Principal::operator(), id).await? {
                println!("Revoked invitation {id}; its code enrols no one now.");
            } else {
                println!("Invitation {id} was revoked already; nothing changed.");
            }
        }
        InviteCommand::NewSecret { secret, database } => {
            let usecases = UseCases::open(&database.database_url).await?;
            let (path, secret) = usecases
                .new_invitation_secret(&Principal::operator(), secret.path.as_deref(), &database.database_url)
                .await?;
            println!(
                "Wrote a new invitation secret (fingerprint {}) to {}. Copy it to every node (same path, mode 0600), \
                 restart them, and back it up; invitations are made with it from now on.",
                secret.fingerprint(),
                path.display()
            );
        }
    }
    Ok(())
}

/// A time to the minute, in UTC, for tables people read.
fn minutes(at: time::OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    format!("{} {:02}:{:02}Z", at.date(), at.hour(), at.minute())
}

async fn run_boundaries(command: BoundariesCommand) -> anyhow::Result<()> {
    match command {
        BoundariesCommand::Import { file, set, code_field, name_field, format, check, database } => {
            use std::io::IsTerminal;
            let options = ReadOptions { format, code_field, name_field, progress: std::io::stderr().is_terminal() };
            let imported = read_boundary_file(&file, &options)
                .map_err(|error| anyhow::anyhow!("{} refused ({}): {error}", file.display(), error.code()))?;
            println!("Read {} areas from {} ({}).", imported.areas.len(), file.display(), imported.format);
            println!("{}", imported.report);
            if check {
                println!("Checked only: nothing imported.");
                return Ok(());
            }
            let usecases = UseCases::open(&database.database_url).await?;
            let source =
                file.file_name().map_or_else(|| file.display().to_string(), |name| name.to_string_lossy().into());
            let info = usecases.import_boundaries(&Principal::operator(), &set, &source, imported.areas).await?;
            println!(
                "Imported generation {} of '{}' ({} areas); every stored insight is tagged in it. Running servers \
                 pick it up within {} seconds.",
                info.generation,
                info.set_name,
                info.n_areas,
                crate::geo::atlas::RELOAD_EVERY.as_secs()
            );
            Ok(())
        }
        BoundariesCommand::List { filing, database } => {
            let usecases = UseCases::open(&database.database_url).await?;
            let generations = usecases.boundary_generations(&Principal::operator()).await?;
            println!("{:<20} {:>10} {:>6}  {:<20}  source", "set", "generation", "areas", "imported");
            for info in &generations {
                let set = if info.set_name == filing.filing_set {
                    format!("{} (filing)", info.set_name)
                } else {
                    info.set_name.clone()
                };
                println!(
                    "{:<20} {:>10} {:>6}  {:<20}  {}",
                    set, info.generation, info.n_areas, info.imported_at, info.source
                );
            }
            if !generations.iter().any(|info| info.set_name == filing.filing_set) {
                println!(
                    "The filing set '{}' has no boundaries: `grapevine serve` refuses to start until a generation of \
                     it is imported (`grapevine boundaries import --set {}`).",
                    filing.filing_set, filing.filing_set
                );
            }
            Ok(())
        }
    }
}

async fn run_postcodes(command: PostcodesCommand) -> anyhow::Result<()> {
    match command {
        PostcodesCommand::Import { file, database } => {
            let input = std::fs::File::open(&file).with_context(|| format!("opening {}", file.display()))?;
            let read = read_postcodes(std::io::BufReader::new(input))
                .map_err(|error| anyhow::anyhow!("{} ({}): {error}", file.display(), error.code()))?;
            let usecases = UseCases::open(&database.database_url).await?;
            let source = file.display().to_string();
            let imported = usecases.import_postcodes(&Principal::operator(), &source, &read.rows).await?;
            println!(
                "Imported {} postcodes from {}: {} new, {} replaced; {} without a position left out, {} repeated \
                 rows counted once.",
                read.rows.len(),
                file.display(),
                imported.added,
                imported.replaced,
                read.without_position,
                read.duplicates
            );
            Ok(())
        }
    }
}

fn sqlite_url(database_url: &str) -> anyhow::Result<&str> {
    if database_url.starts_with("sqlite:") {
        Ok(database_url)
    } else {
        anyhow::bail!(
            "backup and restore work on SQLite; for PostgreSQL use pg_dump and pg_restore (docs/operations.md)"
        )
    }
}

/// The whole program: logging, the runtime, the command line. Both `grapevine` binaries call this.
///
/// # Errors
/// Whatever the command fails with.
pub fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let log_format = match &cli.command {
        Command::Serve(args) => args.log_format,
        _ => LogFormat::Text,
    };
    crate::telemetry::init_logging(log_format);
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(run(cli))
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serve(flags: &[&str]) -> ServeConfig {
        let cli = Cli::try_parse_from(["grapevine", "serve"].iter().chain(flags)).unwrap();
        let Command::Serve(args) = cli.command else { panic!("not serve") };
        serve_config(*args)
    }

    #[test]
    fn serve_flags_set_the_enrolment_budget_and_a_budget_is_at_least_one() {
        let default = serve(&[]);
        assert_eq!((default.enrol_limit.burst, default.enrol_limit.per_minute), (20.0, 20.0));
        let set = serve(&["--enrol-burst", "5", "--enrol-per-minute", "2", "--rate-burst", "0"]);
        assert_eq!((set.enrol_limit.burst, set.enrol_limit.per_minute, set.limits.burst), (5.0, 2.0, 1.0));
        let zero = serve(&["--enrol-per-minute", "0"]);
        assert_eq!(zero.enrol_limit.per_minute, 1.0);
        assert!(default.trusted_proxies.is_empty());
        let proxied = serve(&["--trusted-proxy", "127.0.0.1,::1", "--trusted-proxy", "10.0.0.2"]);
        let expected: Vec<std::net::IpAddr> = ["127.0.0.1", "::1", "10.0.0.2"].map(|ip| ip.parse().unwrap()).into();
        assert_eq!(proxied.trusted_proxies, expected);
        assert!(Cli::try_parse_from(["grapevine", "serve", "--trusted-proxy", "proxy.local"]).is_err());
    }

    #[test]
    fn serve_flags_name_the_filing_set_and_the_invitation_secret() {
        let default = serve(&[]);
        assert_eq!((default.filing_set.as_str(), default.invitation_secret), ("wards", None));
        let set = serve(&["--filing-set", "neighbourhoods", "--invitation-secret", "/etc/grapevine/secret"]);
        assert_eq!(set.filing_set, "neighbourhoods");
        assert_eq!(set.invitation_secret, Some(PathBuf::from("/etc/grapevine/secret")));
    }

    #[test]
    fn serve_flags_set_the_connection_limits_and_each_is_at_least_one() {
        let default = serve(&[]);
        assert_eq!(default.connection_limits.header_read_timeout, std::time::Duration::from_secs(10));
        assert_eq!(default.connection_limits.max_per_address, 128);
        let set = serve(&["--header-read-timeout-secs", "3", "--max-connections-per-address", "16"]);
        assert_eq!(set.connection_limits.header_read_timeout, std::time::Duration::from_secs(3));
        assert_eq!(set.connection_limits.max_per_address, 16);
        let zero = serve(&["--header-read-timeout-secs", "0", "--max-connections-per-address", "0"]);
        assert_eq!(zero.connection_limits.header_read_timeout, std::time::Duration::from_secs(1));
        assert_eq!(zero.connection_limits.max_per_address, 1);
    }

    #[test]
    fn a_serve_config_debug_shows_no_database_password() {
        let config = serve(&["--database-url", "postgres://grapevine:hunter2@db.internal/grapevine"]);
        let shown = format!("{config:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("postgres://grapevine:[redacted]@db.internal/grapevine"), "{shown}");
        assert_eq!(config.database_url.expose(), "postgres://grapevine:hunter2@db.internal/grapevine");
    }
}
