//! The `ally` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing::error;

use crate::config::Settings;
use crate::db::migrations::{self, Command};
use crate::db::{Database, PoolOptions};

/// Ally: the multi-tenant data service of an AI chat platform, served over gRPC.
#[derive(Debug, Parser)]
#[command(name = "ally", version)]
pub struct Cli {
    /// Settings file to read instead of ./ally.toml.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Option<CliCommand>,
}

#[derive(Debug, Subcommand)]
pub enum CliCommand {
    /// Run the gRPC server (the default).
    Serve,
    /// Apply, revert or list schema migrations.
    Migrate {
        #[command(subcommand)]
        action: MigrateAction,
    },
    /// Print the resolved settings, with secrets masked.
    Config,
}

#[derive(Clone, Copy, Debug, Subcommand)]
pub enum MigrateAction {
    /// Apply every pending migration.
    Run,
    /// Revert the most recent migration.
    Revert {
        /// Revert every applied migration instead.
        #[arg(long)]
        all: bool,
    },
    /// Revert the most recent migration and apply it again.
    Redo,
    /// List the migrations and whether each is applied.
    Status,
}

/// Parses the arguments, runs the command and turns its outcome into an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::load(cli.config.as_deref()) {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("ally: {error}");
            return ExitCode::from(2);
        }
    };
    crate::telemetry::init(settings.environment);

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("ally: starting the async runtime failed: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(cli.command.unwrap_or(CliCommand::Serve), settings));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            error!("{error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: CliCommand, settings: Settings) -> anyhow::Result<()> {
    match command {
        CliCommand::Serve => {
            crate::server::serve(settings, shutdown_signal()).await?;
        }
        CliCommand::Config => print!("{}", settings.to_masked_toml()),
        CliCommand::Migrate { action } => migrate(settings, action).await?,
    }
    Ok(())
}

async fn migrate(settings: Settings, action: MigrateAction) -> anyhow::Result<()> {
    let options = PoolOptions {
        max_connections: 1,
        ..PoolOptions::from(&settings.database)
    };
    let database = Database::connect(settings.database_url()?, &options).await?;
    let command = match action {
        MigrateAction::Status => {
            let mut conn = database.read().await?;
            let status = migrations::status(&mut conn).await?;
            for migration in &status.migrations {
                let mark = if migration.applied {
                    "applied"
                } else {
                    "pending"
                };
                println!("{mark:8} {migration}");
            }
            for version in &status.unknown {
                println!("{:8} {version} (not in this release)", "unknown");
            }
            return Ok(());
        }
        MigrateAction::Run => Command::Run,
        MigrateAction::Revert { all: false } => Command::Revert,
        MigrateAction::Revert { all: true } => Command::RevertAll,
        MigrateAction::Redo => Command::Redo,
    };
    let versions = migrations::execute(&database, command).await?;
    let verb = match command {
        Command::Run => "applied",
        Command::Revert | Command::RevertAll => "reverted",
        Command::Redo => "redone",
    };
    if versions.is_empty() {
        println!("nothing to do: the schema is current");
    }
    for version in versions {
        println!("{verb} {version}");
    }
    Ok(())
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            error!(error = %error, "listening for SIGINT failed");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                error!(error = %error, "listening for SIGTERM failed");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {}
        _ = terminate => {}
    }
}
