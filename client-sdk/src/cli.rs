//! `grapevine-collect`: the SDK from a terminal, the way a field tester or a script drives a phone.
//!
//! Every failure ends the process with a nonzero status. With `--json` it is one line on standard error,
//! `{"code": "...", "message": "..."}` (and `"field"` for an invalid insight), so standard output holds only answers and
//! a script that captures it never mistakes an error for data; `code` is a stable code from `ErrorCode`, or `null` for
//! a failure that has none (the network, a certificate file, the disk).

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{Channel, Draft, ErrorCode, InsightChanges, Language, Listed, Location, SdkError, Status, Store};

/// Capture community-safety insights offline and sync them to a Grapevine server.
#[derive(Debug, Parser)]
#[command(name = "grapevine-collect", version)]
struct Cli {
    /// The directory holding this device's store (created if missing).
    #[arg(long, global = true, env = "GRAPEVINE_STORE", default_value = "grapevine-phone")]
    store: PathBuf,
    /// Print machine-readable JSON instead of sentences.
    #[arg(long, global = true)]
    json: bool,
    /// The language of what is shown: en or cy (Welsh).
    #[arg(long, global = true, default_value = "en", value_parser = parse_language)]
    lang: Language,
    /// Also trust the certificate authorities in this PEM file for https:// and wss:// servers (a server whose
    /// certificate comes from an organisation's own authority).
    #[arg(long, global = true, env = "GRAPEVINE_CA_FILE")]
    ca_file: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Capture an insight; it is durable when this returns.
    Capture {
        /// A category slug: asb, drugs, violence-weapons, vehicle-crime, burglary-theft, criminal-damage,
        /// road-safety, domestic-abuse-vawg, hate-crime, fraud-scams, rural-wildlife, exploitation, feeling-unsafe,
        /// other.
        #[arg(long)]
        category: String,
        /// What the person said (1 to 1,000 characters, one line).
        #[arg(long)]
        text: String,
        /// Who captured it: staff, barber-hairdresser, pupil, youth-worker or other.
        #[arg(long, value_parser = parse_channel)]
        channel: Channel,
        /// How safe the person feels, 1 (very unsafe) to 5 (very safe).
        #[arg(long)]
        feeling_safe: Option<u8>,
        /// Latitude of a GPS fix (WGS84); needs --lon.
        #[arg(long, requires = "lon", allow_hyphen_values = true)]
        lat: Option<f64>,
        /// Longitude of a GPS fix (WGS84); needs --lat.
        #[arg(long, requires = "lat", allow_hyphen_values = true)]
        lon: Option<f64>,
        /// The fix's accuracy radius in metres.
        #[arg(long, default_value_t = 10.0)]
        accuracy_m: f64,
        /// An area code the person picked instead of a GPS fix.
        #[arg(long, conflicts_with_all = ["lat", "lon"])]
        area: Option<String>,
        /// A UK postcode the person gave instead of a GPS fix; the server files it by the postcode's centroid.
        #[arg(long, conflicts_with_all = ["lat", "lon", "area"])]
        postcode: Option<String>,
        /// When it was captured (RFC 3339 with offset); defaults to now.
        #[arg(long, value_parser = parse_time)]
        captured_at: Option<OffsetDateTime>,
    },
    /// Redeem an invitation code for this device's own token, kept in the store for later syncs.
    Enrol {
        /// The server's HTTP address, e.g. http://127.0.0.1:8080.
        #[arg(long)]
        server: String,
        /// The invitation code, as printed (case, dashes and spaces do not matter). `-`, or leaving it out when
        /// standard input is not a terminal, reads it from the first line of standard input instead, so it does not
        /// show in the process list; left out on a terminal, it is asked for.
        #[arg(long)]
        code: Option<String>,
        /// A label for this device, e.g. "Sam's phone"; by default the invitation's label.
        #[arg(long, default_value = "")]
        label: String,
    },
    /// Sync once with a server: the one this device enrolled with, unless --server and --token say otherwise.
    Sync {
        /// The server's sync endpoint, e.g. ws://127.0.0.1:8080/sync; by default the enrolled server's.
        #[arg(long, env = "GRAPEVINE_SERVER")]
        server: Option<String>,
        /// This device's token, from `grapevine device add`; by default the token kept at enrolment.
        #[arg(long, env = "GRAPEVINE_TOKEN", hide_env_values = true)]
        token: Option<String>,
    },
    /// List every insight on this device with its status.
    List,
    /// Show the campaign the capture form offers, as last synced: categories, prompts and the areas to pick.
    Campaign,
    /// Show one insight and where it is: captured, stored, filed (or rejected, or withdrawn), and any change not
    /// sent yet.
    Status {
        /// The insight's id, as capture printed it.
        id: Uuid,
    },
    /// Edit a captured insight; the edit syncs and the server decides again.
    Edit {
        /// The insight's id.
        id: Uuid,
        /// A new category slug.
        #[arg(long)]
        category: Option<String>,
        /// New text.
        #[arg(long)]
        text: Option<String>,
        /// A new feeling-safe score, 1 to 5.
        #[arg(long, conflicts_with = "clear_feeling_safe")]
        feeling_safe: Option<u8>,
        /// Remove the feeling-safe score.
        #[arg(long)]
        clear_feeling_safe: bool,
        /// Latitude of a new GPS fix; needs --lon.
        #[arg(long, requires = "lon", allow_hyphen_values = true)]
        lat: Option<f64>,
        /// Longitude of a new GPS fix; needs --lat.
        #[arg(long, requires = "lat", allow_hyphen_values = true)]
        lon: Option<f64>,
        /// The new fix's accuracy radius in metres.
        #[arg(long, default_value_t = 10.0)]
        accuracy_m: f64,
        /// A new area code instead of a GPS fix.
        #[arg(long, conflicts_with_all = ["lat", "lon"])]
        area: Option<String>,
        /// A new postcode instead of a GPS fix.
        #[arg(long, conflicts_with_all = ["lat", "lon", "area"])]
        postcode: Option<String>,
        /// Remove the location.
        #[arg(long, conflicts_with_all = ["lat", "lon", "area", "postcode"])]
        no_location: bool,
    },
    /// Withdraw an insight: it syncs, and the server stops counting it.
    Withdraw {
        /// The insight's id.
        id: Uuid,
    },
}

fn parse_channel(text: &str) -> Result<Channel, String> {
    Channel::parse(text).ok_or_else(|| {
        let known: Vec<_> = Channel::ALL.iter().map(|channel| channel.as_str()).collect();
        format!("unknown channel '{text}'; expected one of {}", known.join(", "))
    })
}

fn parse_time(text: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(text, &Rfc3339)
        .map_err(|_| format!("'{text}' is not RFC 3339, e.g. 2026-11-20T17:45:00+00:00"))
}

/// Why the command line stopped: an SDK error, or something it worked out itself before calling the SDK. Either way
/// there is a stable code where one fits and a sentence that names what is missing or wrong.
#[derive(Debug, thiserror::Error)]
enum CliError {
    #[error(transparent)]
    Sdk(#[from] SdkError),
    #[error("{message}")]
    Refused { code: ErrorCode, message: String },
}

impl CliError {
    fn code(&self) -> Option<String> {
        match self {
            CliError::Sdk(SdkError::Server { code, .. }) => Some(code.clone()),
            CliError::Sdk(error) => error.code().map(|code| code.as_str().to_owned()),
            CliError::Refused { code, .. } => Some(code.as_str().to_owned()),
        }
    }

    fn field(&self) -> Option<&'static str> {
        match self {
            CliError::Sdk(SdkError::Invalid(invalid)) => Some(invalid.field),
            _ => None,
        }
    }
}

/// Runs `grapevine-collect` on the process's arguments and returns its exit status.
pub async fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = cli.json;
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            if json {
                let mut body = json!({ "code": error.code(), "message": error.to_string() });
                if let Some(field) = error.field() {
                    body["field"] = json!(field);
                }
                eprintln!("{body}");
            } else {
                eprintln!("error: {error}");
            }
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), CliError> {
    if let Some(path) = &cli.ca_file {
        let pem = std::fs::read(path)
            .map_err(|error| SdkError::Certificate(format!("cannot read {}: {error}", path.display())))?;
        crate::trust_root_certificates(&pem)?;
    }
    let store = Store::open(&cli.store).await?;
    match cli.command {
        Command::Capture {
            category,
            text,
            channel,
            feeling_safe,
            lat,
            lon,
            accuracy_m,
            area,
            postcode,
            captured_at,
        } => {
            let location = match (lat, lon, area, postcode) {
                (Some(lat), Some(lon), _, _) => Location::Gps { lat, lon, accuracy_m },
                (_, _, Some(code), _) => Location::Area { code },
                (_, _, _, Some(postcode)) => Location::Postcode { postcode },
                _ => Location::None,
            };
            let draft = Draft { category, text, feeling_safe, location, channel, captured_at, campaign: None };
            let id = store.capture(draft).await?;
            if cli.json {
                println!("{}", json!({ "id": id, "status": "captured" }));
            } else {
                println!("Captured {id}. It is safe on this device; sync to send it.");
            }
        }
        Command::Enrol { server, code, label } => {
            let code = invitation_code(code)?;
            let enrolment = crate::enrol(&store, &server, &code, &label).await?;
            if cli.json {
                println!(
                    "{}",
                    json!({
                        "device_id": enrolment.device_id,
                        "collector_id": enrolment.collector_id,
                        "server": enrolment.server_url,
                    })
                );
            } else {
                println!(
                    "Enrolled as device {} of collector {}. Sync with `grapevine-collect sync`.",
                    enrolment.device_id, enrolment.collector_id
                );
            }
        }
        Command::Sync { server, token } => {
            let enrolment = store.enrolment().await?;
            let (server, token, token_given) = sync_target(server, token, enrolment.as_ref())?;
            let report = crate::sync(&store, &server, &token).await.map_err(|error| match error {
                SdkError::Server { code, message } if code == ErrorCode::Unauthorized.as_str() => CliError::Refused {
                    code: ErrorCode::Unauthorized,
                    message: if token_given {
                        format!(
                            "the server at {server} refused the device token given with --token (or \
                             GRAPEVINE_TOKEN): {message}"
                        )
                    } else {
                        format!(
                            "the server at {server} refused the device token this phone kept at enrolment: \
                             {message}; enrol again with a new invitation code"
                        )
                    },
                },
                other => CliError::Sdk(other),
            })?;
            if cli.json {
                let updated: Vec<Value> = report
                    .updated
                    .iter()
                    .map(|(id, status)| json!({ "id": id, "status": status_json(status) }))
                    .collect();
                println!("{}", json!({ "sent": report.sent, "updated": updated, "unavailable": report.unavailable }));
            } else {
                println!("Sent {} new insight(s); {} status change(s).", report.sent, report.updated.len());
                for (id, status) in &report.updated {
                    println!("  {id}: {}", status.describe_in(cli.lang));
                }
                for id in &report.unavailable {
                    println!("  {id}: the server would not take it");
                }
            }
        }
        Command::List => {
            let listed = store.list().await?;
            if cli.json {
                let rows: Vec<Value> = listed.iter().map(|listed| listed_json(listed, cli.lang)).collect();
                println!("{}", Value::Array(rows));
            } else if listed.is_empty() {
                println!("No insights on this device yet.");
            } else {
                for insight in &listed {
                    println!(
                        "{}  {}  {:<16} {}",
                        insight.id,
                        insight.captured_at,
                        insight.category,
                        insight.describe_in(cli.lang)
                    );
                }
            }
        }
        Command::Status { id } => print_one(&store.get(id).await?, cli.json, cli.lang),
        Command::Campaign => {
            let sheet = store.campaign().await?;
            let pick = |text: &crate::Text| {
                if cli.lang == Language::Welsh {
                    text.cy.clone()
                } else {
                    text.en.clone()
                }
            };
            if cli.json {
                let categories: Vec<_> = sheet
                    .categories
                    .iter()
                    .map(|category| serde_json::json!({ "slug": category.slug, "label": pick(&category.label) }))
                    .collect();
                let areas: Vec<_> = sheet
                    .areas
                    .iter()
                    .map(|area| serde_json::json!({ "code": area.code, "name": area.name }))
                    .collect();
                let body = serde_json::json!({
                    "slug": sheet.slug,
                    "name": pick(&sheet.name),
                    "prompts": {
                        "text": pick(&sheet.prompt_text),
                        "feeling_safe": pick(&sheet.prompt_feeling_safe),
                        "location": pick(&sheet.prompt_location),
                    },
                    "categories": categories,
                    "areas": areas,
                    "boundaries": sheet.boundaries,
                });
                println!("{body}");
            } else {
                println!("{}", pick(&sheet.name));
                println!("{}", pick(&sheet.prompt_text));
                for category in &sheet.categories {
                    println!("  {:<22} {}", category.slug, pick(&category.label));
                }
                if sheet.areas.is_empty() {
                    println!("No areas yet: sync once to get the list of areas.");
                } else {
                    println!("{} areas to pick from ({}).", sheet.areas.len(), sheet.boundaries);
                }
            }
        }
        Command::Edit {
            id,
            category,
            text,
            feeling_safe,
            clear_feeling_safe,
            lat,
            lon,
            accuracy_m,
            area,
            postcode,
            no_location,
        } => {
            let location = match (lat, lon, area, postcode) {
                (Some(lat), Some(lon), _, _) => Some(Location::Gps { lat, lon, accuracy_m }),
                (_, _, Some(code), _) => Some(Location::Area { code }),
                (_, _, _, Some(postcode)) => Some(Location::Postcode { postcode }),
                _ => no_location.then_some(Location::None),
            };
            let feeling_safe = if clear_feeling_safe { Some(None) } else { feeling_safe.map(Some) };
            let changes = InsightChanges { category, text, feeling_safe, location };
            print_one(&store.edit(id, &changes).await?, cli.json, cli.lang);
        }
        Command::Withdraw { id } => print_one(&store.withdraw(id).await?, cli.json, cli.lang),
    }
    Ok(())
}

/// The server and token a sync uses: those given, else the enrolment's. When neither says, the error names exactly
/// what is missing. The flag says whether the token was given (rather than kept at enrolment).
fn sync_target(
    server: Option<String>,
    token: Option<String>,
    enrolment: Option<&crate::Enrolment>,
) -> Result<(String, String, bool), CliError> {
    let token_given = token.is_some();
    let server = server.or_else(|| enrolment.map(crate::Enrolment::sync_url));
    let token = token.or_else(|| enrolment.map(|enrolment| enrolment.token().to_owned()));
    match (server, token) {
        (Some(server), Some(token)) => Ok((server, token, token_given)),
        (None, Some(_)) => Err(CliError::Refused {
            code: ErrorCode::NotEnrolled,
            message: "no server to sync with: this phone is not enrolled, so give the server's sync endpoint with \
                      --server (e.g. ws://127.0.0.1:8080/sync) beside --token"
                .to_owned(),
        }),
        (Some(_), None) => Err(CliError::Refused {
            code: ErrorCode::NotEnrolled,
            message: "no device token: this phone is not enrolled, so give its token with --token (from \
                      `grapevine device add`) beside --server, or enrol with an invitation code"
                .to_owned(),
        }),
        (None, None) => Err(CliError::Refused {
            code: ErrorCode::NotEnrolled,
            message: "this phone is not enrolled: enrol with an invitation code (`grapevine-collect enrol`), or give \
                      --server and --token"
                .to_owned(),
        }),
    }
}

/// The invitation code: as given, or from standard input for `-` or when it is left out (asked for on a terminal).
/// Read this way it never appears in the process list.
fn invitation_code(given: Option<String>) -> Result<String, CliError> {
    match given {
        Some(code) if code != "-" => return Ok(code),
        Some(_) => {}
        None => {
            if std::io::stdin().is_terminal() {
                eprint!("Invitation code: ");
                // The prompt is a courtesy; a failure to show it does not stop the code being read.
                let _ = std::io::stderr().flush();
            }
        }
    }
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).map_err(|error| CliError::Refused {
        code: ErrorCode::InvalidRequest,
        message: format!("cannot read the invitation code from standard input: {error}"),
    })?;
    let code = line.trim();
    if code.is_empty() {
        return Err(CliError::Refused {
            code: ErrorCode::InvalidRequest,
            message: "no invitation code: give it with --code, or on the first line of standard input".to_owned(),
        });
    }
    Ok(code.to_owned())
}

fn print_one(listed: &Listed, json: bool, language: Language) {
    if json {
        println!("{}", listed_json(listed, language));
    } else {
        println!("{}  {}  {:<16} {}", listed.id, listed.captured_at, listed.category, listed.describe_in(language));
        println!("  {}", listed.text);
    }
}

fn status_json(status: &Status) -> Value {
    match status {
        Status::Filed { area_code, area_name } => {
            json!({ "state": "filed", "area_code": area_code, "area_name": area_name })
        }
        Status::Rejected { code, message } => {
            json!({ "state": "rejected", "code": code, "message": message })
        }
        other => json!({ "state": other.as_str() }),
    }
}

fn listed_json(listed: &Listed, language: Language) -> Value {
    json!({
        "id": listed.id,
        "description": listed.describe_in(language),
        "captured_at": listed.captured_at,
        "category": listed.category,
        "text": listed.text,
        "status": status_json(&listed.status),
        "withdrawn": listed.withdrawn,
        "unsent_change": listed.unsent_change,
    })
}

fn parse_language(tag: &str) -> Result<Language, String> {
    Language::parse(tag).ok_or_else(|| format!("'{tag}' is not a language this campaign has: en or cy"))
}
