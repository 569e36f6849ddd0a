//! The `ally` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};
use tracing::error;

use crate::auth::jwt::TokenKeys;
use crate::bootstrap::Bootstrap;
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
    /// Maintain the audit trail.
    Audit {
        #[command(subcommand)]
        action: AuditAction,
    },
    /// Maintain chat sessions.
    Chat {
        #[command(subcommand)]
        action: ChatAction,
    },
    /// Create a tenant and its owner, and print the owner's API key once.
    Bootstrap {
        /// Name of the tenant.
        #[arg(long, default_value = "Default")]
        tenant_name: String,
        /// Subdomain that routes to the tenant, e.g. `acme`.
        #[arg(long, default_value = "default")]
        subdomain: String,
        /// Email address of the owner.
        #[arg(long)]
        owner_email: String,
        /// Display name of the owner.
        #[arg(long, default_value = "Owner")]
        owner_name: String,
    },
    /// Import conversations exported from other chat products.
    Import {
        #[command(subcommand)]
        action: crate::import::command::ImportAction,
    },
    /// Import configuration files of the earlier Python platform.
    Legacy {
        #[command(subcommand)]
        action: crate::legacy::directory::LegacyAction,
    },
    /// Print an access token for a platform operator, signed with auth.jwt_secret.
    OperatorToken {
        /// The operator's name, recorded as the actor in audit entries.
        #[arg(long)]
        name: String,
    },
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
    // The OTLP exporter opens its connection on the runtime, so it is built inside it.
    let telemetry = match runtime.block_on(async { crate::telemetry::init(settings.environment) }) {
        Ok(telemetry) => telemetry,
        Err(error) => {
            eprintln!("ally: {error}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(run(cli.command.unwrap_or(CliCommand::Serve), settings));
    let code = match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            error!("{error:#}");
            ExitCode::FAILURE
        }
    };
    telemetry.shutdown();
    code
}

async fn run(command: CliCommand, settings: Settings) -> anyhow::Result<()> {
    match command {
        CliCommand::Serve => {
            crate::server::serve(settings, shutdown_signal()).await?;
        }
        CliCommand::Config => print!("{}", settings.to_masked_toml()),
        CliCommand::Migrate { action } => migrate(settings, action).await?,
        CliCommand::Audit {
            action: AuditAction::Prune { before, dry_run },
        } => prune_audit(settings, before, dry_run).await?,
        CliCommand::Chat {
            action: ChatAction::Purge { dry_run },
        } => purge_chat_sessions(settings, dry_run).await?,
        CliCommand::Bootstrap {
            tenant_name,
            subdomain,
            owner_email,
            owner_name,
        } => {
            let bootstrap = Bootstrap {
                tenant_name,
                subdomain,
                owner_email,
                owner_name,
            };
            bootstrap_tenant(settings, &bootstrap).await?;
        }
        CliCommand::Legacy { action } => crate::legacy::directory::run(settings, action).await?,
        CliCommand::Import { action } => crate::import::command::run(settings, action).await?,
        CliCommand::OperatorToken { name } => {
            let Some(secret) = &settings.auth.jwt_secret else {
                anyhow::bail!(
                    "auth.jwt_secret is not set, so a token signed now would not match the server's; set ALLY_AUTH__JWT_SECRET"
                );
            };
            let keys = TokenKeys::new(
                secret,
                &settings.auth.issuer,
                &settings.auth.audience,
                settings.auth.access_token_ttl,
            )?;
            println!("{}", keys.issue_operator(&name)?);
        }
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

async fn bootstrap_tenant(settings: Settings, bootstrap: &Bootstrap) -> anyhow::Result<()> {
    let options = PoolOptions {
        max_connections: 1,
        ..PoolOptions::from(&settings.database)
    };
    let database = Database::connect(settings.database_url()?, &options).await?;
    let mut conn = database.read().await?;
    let status = migrations::status(&mut conn).await?;
    drop(conn);
    if let Some(missing) = status.pending().next() {
        anyhow::bail!(
            "the schema is outdated: migration {missing} is not applied; run `ally migrate run`"
        );
    }
    let created = crate::bootstrap::create(&database, bootstrap)
        .await
        .map_err(|error| anyhow::anyhow!("{error}"))?;
    println!("tenant id:     {}", created.tenant.id);
    println!("owner id:      {}", created.owner.id);
    println!("owner API key: {}", created.owner_api_key);
    println!("The key is shown only now. Store it in a secret store.");
    Ok(())
}

#[derive(Clone, Copy, Debug, Subcommand)]
pub enum AuditAction {
    /// Delete audit entries of every tenant older than audit.retention, and print how many.
    Prune {
        /// Delete the entries created before this time instead, for example
        /// 2026-01-01T00:00:00Z.
        #[arg(long, value_name = "RFC3339_TIME", value_parser = parse_rfc3339)]
        before: Option<DateTime<Utc>>,
        /// Print how many entries would be deleted, and delete nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

fn parse_rfc3339(value: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(value)
        .map(|time| time.with_timezone(&Utc))
        .map_err(|error| format!("{error}; expected an RFC 3339 time such as 2026-01-01T00:00:00Z"))
}

/// Rows that one DELETE of `ally audit prune` removes at most, so that MySQL never locks a large
/// part of the table at once.
const PRUNE_BATCH: i64 = 10_000;

async fn prune_audit(
    settings: Settings,
    before: Option<DateTime<Utc>>,
    dry_run: bool,
) -> anyhow::Result<()> {
    let cutoff = match before {
        Some(before) => before.naive_utc(),
        None if settings.audit.retention.is_zero() => {
            println!("nothing to do: audit.retention is 0, which keeps audit entries forever");
            return Ok(());
        }
        None => {
            let retention = chrono::Duration::from_std(settings.audit.retention)?;
            match crate::models::now().checked_sub_signed(retention) {
                Some(cutoff) => cutoff,
                None => {
                    println!("nothing to do: no audit entry is older than audit.retention");
                    return Ok(());
                }
            }
        }
    };
    let cutoff_text = cutoff.and_utc().to_rfc3339();
    let options = PoolOptions {
        max_connections: 1,
        ..PoolOptions::from(&settings.database)
    };
    let database = Database::connect(settings.database_url()?, &options).await?;
    let mut conn = database.write().await?;

    if dry_run {
        let count = crate::repo::audit::count_before(&mut conn, cutoff).await?;
        println!(
            "would delete {} created before {cutoff_text}",
            audit_entries(count)
        );
        return Ok(());
    }
    // Each batch commits on its own, so an interrupted prune keeps what it deleted and a second
    // run continues where it stopped.
    let mut deleted = 0;
    loop {
        let batch = crate::repo::audit::delete_before(&mut conn, cutoff, PRUNE_BATCH).await?;
        deleted += batch as i64;
        if (batch as i64) < PRUNE_BATCH {
            break;
        }
    }
    println!(
        "deleted {} created before {cutoff_text}",
        audit_entries(deleted)
    );
    Ok(())
}

fn audit_entries(count: i64) -> String {
    match count {
        1 => "1 audit entry".to_string(),
        _ => format!("{count} audit entries"),
    }
}

#[derive(Clone, Copy, Debug, Subcommand)]
pub enum ChatAction {
    /// Delete chat sessions of every tenant that were soft-deleted longer ago than
    /// chat.session_retention, with their messages, and print how many.
    Purge {
        /// Print how many sessions would be deleted, and delete nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

/// Sessions that one round of `ally chat purge` deletes at most. Each session takes its
/// messages with it, so batches stay smaller than those of `ally audit prune`.
const PURGE_SESSION_BATCH: i64 = 1_000;

async fn purge_chat_sessions(settings: Settings, dry_run: bool) -> anyhow::Result<()> {
    if settings.chat.session_retention.is_zero() {
        println!("nothing to do: chat.session_retention is 0, which keeps deleted sessions");
        return Ok(());
    }
    let retention = chrono::Duration::from_std(settings.chat.session_retention)?;
    let Some(cutoff) = crate::models::now().checked_sub_signed(retention) else {
        println!("nothing to do: no session was deleted before chat.session_retention");
        return Ok(());
    };
    let cutoff_text = cutoff.and_utc().to_rfc3339();
    let options = PoolOptions {
        max_connections: 1,
        ..PoolOptions::from(&settings.database)
    };
    let database = Database::connect(settings.database_url()?, &options).await?;
    let mut conn = database.write().await?;

    if dry_run {
        let count = crate::repo::chat_sessions::count_deleted_before(&mut conn, cutoff).await?;
        println!("would delete {count} chat session(s) deleted before {cutoff_text}");
        return Ok(());
    }
    // Each session is deleted in its own statement, so an interrupted purge keeps what it
    // deleted and a second run continues.
    let mut deleted = 0;
    loop {
        let batch = crate::repo::chat_sessions::purge_deleted_before(
            &mut conn,
            cutoff,
            PURGE_SESSION_BATCH,
        )
        .await?;
        deleted += batch;
        if (batch as i64) < PURGE_SESSION_BATCH {
            break;
        }
    }
    println!("deleted {deleted} chat session(s) deleted before {cutoff_text}");
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
