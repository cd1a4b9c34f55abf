//! The `grapevine` command line: one clap struct, every flag with its environment twin and a doc comment, so
//! `--help` documents a deployment.

use std::net::SocketAddr;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::app::{Application, ServeConfig};
use crate::auth::{issue_api_token, issue_device};
use crate::store::{self, Role, DEFAULT_DATABASE_URL};

/// Grapevine: community-safety insights from the people already there.
#[derive(Debug, Parser)]
#[command(name = "grapevine", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server: the /sync endpoint for phones and the analyst API.
    Serve(ServeArgs),
    /// Manage collectors' devices.
    #[command(subcommand)]
    Device(DeviceCommand),
    /// Manage API tokens for analysts and boards.
    #[command(subcommand)]
    Token(TokenCommand),
}

#[derive(Debug, Args)]
pub struct DatabaseArgs {
    /// Where data lives: `sqlite://PATH` (created if missing).
    #[arg(long, env = "GRAPEVINE_DATABASE_URL", default_value = DEFAULT_DATABASE_URL)]
    pub database_url: String,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The address to listen on.
    #[arg(long, env = "GRAPEVINE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub database: DatabaseArgs,
}

#[derive(Debug, Subcommand)]
pub enum DeviceCommand {
    /// Register a collector's device and print its sync token (last line).
    Add {
        /// A label people recognise, e.g. "Hanley barbers".
        #[arg(long)]
        label: String,
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
pub enum TokenCommand {
    /// Create an API token and print it (last line).
    Add {
        /// What the token may read.
        #[arg(long, value_enum)]
        role: RoleArg,
        /// Who holds it.
        #[arg(long, default_value = "")]
        label: String,
        #[command(flatten)]
        database: DatabaseArgs,
    },
}

/// Runs a parsed command line.
///
/// # Errors
/// Whatever the command fails with, for `main` to print.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => {
            let app = Application::build(ServeConfig::new(args.listen, args.database.database_url)).await?;
            tracing::info!(address = %app.local_addr()?, "grapevine listening");
            app.run_until_stopped(shutdown_signal()).await
        }
        Command::Device(DeviceCommand::Add { label, database }) => {
            let store = store::open(&database.database_url).await?;
            let (device, token) = issue_device(store.as_ref(), &label).await?;
            println!(
                "Added device {} for collector {} ({label}). Its token, shown only now:",
                device.device_id, device.collector_id
            );
            println!("{token}");
            Ok(())
        }
        Command::Token(TokenCommand::Add { role, label, database }) => {
            let store = store::open(&database.database_url).await?;
            let role = match role {
                RoleArg::Analyst => Role::Analyst,
                RoleArg::Board => Role::Board,
            };
            let (id, token) = issue_api_token(store.as_ref(), role, &label).await?;
            println!("Added {} token {id}. The token, shown only now:", role.as_str());
            println!("{token}");
            Ok(())
        }
    }
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
