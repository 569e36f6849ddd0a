//! `ally legacy import DIR`: imports every legacy document in a folder, and optionally migrates
//! it, against the database directly.
//!
//! File names give the client id and version: `<client_id>@<version>.<ext>` with `ext` one of
//! `json`, `ini` and `env`, or `.env.<client_id>@<version>`. Without an `@`, the whole name
//! before the extension is the client id and the version is "1". The extension sets the format.

use std::path::{Path, PathBuf};

use clap::Subcommand;

use super::Format;
use crate::auth::RequestContext;
use crate::cache::{ConfigCache, RedisLink};
use crate::config::Settings;
use crate::db::migrations;
use crate::db::{Database, PoolOptions};
use crate::grpc::client_configurations::operations::{self, Outcome};
use crate::grpc::{ApiError, validate};
use crate::repo;

/// Actions of `ally legacy`.
#[derive(Debug, Subcommand)]
pub enum LegacyAction {
    /// Import every *.json, *.ini, *.env and .env.* file in DIR as a legacy client
    /// configuration, named <client_id>@<version>.<ext> (the version defaults to 1).
    Import {
        /// Folder to read; subfolders are not searched.
        dir: PathBuf,
        /// Id of the tenant that receives the documents.
        #[arg(long, value_name = "TENANT_ID")]
        tenant: String,
        /// Also migrate each document that is not migrated yet into configuration types.
        #[arg(long)]
        migrate: bool,
    },
}

/// Client id, version and format of a document, taken from its file name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamedDocument {
    pub format: Format,
    pub client_id: String,
    pub legacy_version: String,
}

/// Reads a file name by the rule in the module documentation. Returns `None` for files that are
/// not legacy documents, and an error for a legacy file whose name gives no client id.
pub fn parse_file_name(name: &str) -> Option<Result<NamedDocument, String>> {
    let (format, base) = if let Some(rest) = name.strip_prefix(".env") {
        match rest.strip_prefix('.') {
            Some(base) => (Format::Env, base),
            None if rest.is_empty() => (Format::Env, ""),
            None => return None,
        }
    } else {
        let (stem, extension) = name.rsplit_once('.')?;
        let format = match extension.to_ascii_lowercase().as_str() {
            "json" => Format::Json,
            "ini" => Format::Ini,
            "env" => Format::Env,
            _ => return None,
        };
        (format, stem)
    };
    if base.is_empty() {
        return Some(Err(
            "the file name gives no client id; name it <client_id>@<version>.<ext> or \
             .env.<client_id>@<version>"
                .into(),
        ));
    }
    let (client_id, legacy_version) = match base.rsplit_once('@') {
        Some((client_id, version)) if !client_id.is_empty() && !version.is_empty() => {
            (client_id, version)
        }
        _ => (base, "1"),
    };
    Some(Ok(NamedDocument {
        format,
        client_id: client_id.to_string(),
        legacy_version: legacy_version.to_string(),
    }))
}

/// Counts of one run, for the summary line.
#[derive(Debug, Default)]
struct Summary {
    files: usize,
    imported: usize,
    unchanged: usize,
    migrated: usize,
    failed: usize,
}

/// Opens a two-connection pool for a one-off command that writes into `tenant_id`, after
/// checking that the schema is current and the tenant exists and is not deleted.
pub(crate) async fn open_for_tenant(
    settings: &Settings,
    tenant_id: &str,
) -> anyhow::Result<Database> {
    let options = PoolOptions {
        max_connections: 2,
        ..PoolOptions::from(&settings.database)
    };
    let database = Database::connect(settings.database_url()?, &options).await?;
    let mut conn = database.read().await?;
    let status = migrations::status(&mut conn).await?;
    if let Some(missing) = status.pending().next() {
        anyhow::bail!(
            "the schema is outdated: migration {missing} is not applied; run `ally migrate run`"
        );
    }
    match repo::tenants::find(&mut conn, tenant_id).await? {
        None => anyhow::bail!("tenant {tenant_id} not found; check --tenant"),
        Some(tenant) if tenant.deleted_at.is_some() => {
            anyhow::bail!("tenant {tenant_id} is deleted; undelete it first")
        }
        Some(_) => {}
    }
    drop(conn);
    Ok(database)
}

/// Runs `ally legacy`.
pub async fn run(settings: Settings, action: LegacyAction) -> anyhow::Result<()> {
    let LegacyAction::Import {
        dir,
        tenant,
        migrate,
    } = action;
    let tenant_id =
        validate::id("--tenant", &tenant).map_err(|error| anyhow::anyhow!(message(error)))?;
    let database = open_for_tenant(&settings, &tenant_id).await?;

    // With `redis.url` set, running servers read the Redis entries this command invalidates.
    // NOTE: without `redis.url`, running servers keep serving a migrated type's earlier value
    // from memory for up to `cache.ttl`.
    let redis = match &settings.redis.url {
        Some(url) => Some(RedisLink::new(secrecy::ExposeSecret::expose_secret(url))?),
        None => None,
    };
    let cache = ConfigCache::new(settings.cache.ttl, redis);

    let files = legacy_files(&dir)?;
    let context = RequestContext::system("legacy import");
    let mut summary = Summary::default();
    for (path, name) in files {
        summary.files += 1;
        let outcome = import_file(
            &database, &cache, &context, &tenant_id, &path, &name, migrate,
        );
        match outcome.await {
            Ok(lines) => {
                for (status, text) in lines {
                    match status {
                        "imported" => summary.imported += 1,
                        "unchanged" => summary.unchanged += 1,
                        "migrated" => summary.migrated += 1,
                        _ => summary.failed += 1,
                    }
                    println!("{status:<9} {name}: {text}");
                }
            }
            Err(reason) => {
                summary.failed += 1;
                println!("{:<9} {name}: {reason}", "failed");
            }
        }
    }
    println!(
        "{} files: {} imported, {} unchanged, {} migrated, {} failed",
        summary.files, summary.imported, summary.unchanged, summary.migrated, summary.failed
    );
    if summary.failed > 0 {
        anyhow::bail!(
            "{} of {} legacy files failed; see the lines marked failed",
            summary.failed,
            summary.files
        );
    }
    Ok(())
}

/// Lists the legacy files of `dir`, sorted by name.
fn legacy_files(dir: &Path) -> anyhow::Result<Vec<(PathBuf, String)>> {
    let entries = std::fs::read_dir(dir)
        .map_err(|error| anyhow::anyhow!("reading folder {} failed: {error}", dir.display()))?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry?;
        if !entry.file_type()?.is_file() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        if parse_file_name(&name).is_some() {
            files.push((entry.path(), name));
        }
    }
    files.sort_by(|a, b| a.1.cmp(&b.1));
    Ok(files)
}

/// Imports one file and, with `migrate`, migrates it. Returns the output lines as
/// (status, text) pairs, or the reason the file failed.
async fn import_file(
    database: &Database,
    cache: &ConfigCache,
    context: &RequestContext,
    tenant_id: &str,
    path: &Path,
    name: &str,
    migrate: bool,
) -> Result<Vec<(&'static str, String)>, String> {
    let named = parse_file_name(name).unwrap_or_else(|| Err("not a legacy file".into()))?;
    let bytes = std::fs::read(path).map_err(|error| format!("reading the file failed: {error}"))?;
    let text = String::from_utf8(bytes).map_err(|_| "the file is not UTF-8 text".to_string())?;
    let new = operations::validate_import(
        &named.client_id,
        &named.legacy_version,
        Some(named.format),
        text,
    )
    .map_err(message)?;
    let imported = operations::import(database, context, tenant_id, &new)
        .await
        .map_err(|error| match error {
            ApiError::AlreadyExists { .. } => format!(
                "client {} version {} is already stored with a different text; import the \
                 changed file under a new version",
                new.client_id, new.legacy_version
            ),
            other => message(other),
        })?;
    let row = imported.row;
    let status = if imported.created {
        "imported"
    } else {
        "unchanged"
    };
    let mut lines = vec![(
        status,
        format!(
            "client {}, version {}, id {}",
            row.client_id, row.legacy_version, row.id
        ),
    )];
    if migrate && row.migration_status != operations::MIGRATED {
        let migration = operations::migrate(database, cache, context, tenant_id, &row.id, false)
            .await
            .map_err(message)?;
        let report = &migration.report;
        lines.push(match report.outcome {
            Outcome::Migrated => (
                "migrated",
                format!(
                    "{} configuration types, {} unmapped keys, {} skipped secrets",
                    report.types.len(),
                    report.unmapped.len(),
                    report.secrets.len()
                ),
            ),
            Outcome::Failed => (
                "failed",
                format!(
                    "migration failed: {}",
                    migration.row.migration_error.unwrap_or_default()
                ),
            ),
        });
    }
    Ok(lines)
}

/// Returns the message a gRPC caller would see, which names invalid fields.
fn message(error: ApiError) -> String {
    tonic::Status::from(error).message().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(name: &str) -> (Format, String, String) {
        let named = parse_file_name(name).unwrap().unwrap();
        (named.format, named.client_id, named.legacy_version)
    }

    #[test]
    fn client_and_version_from_name() {
        assert_eq!(
            named("acme@3.json"),
            (Format::Json, "acme".into(), "3".into())
        );
        assert_eq!(
            named("a@b@2.1.INI"),
            (Format::Ini, "a@b".into(), "2.1".into())
        );
        assert_eq!(named("acme.env"), (Format::Env, "acme".into(), "1".into()));
        assert_eq!(
            named(".env.acme@7"),
            (Format::Env, "acme".into(), "7".into())
        );
        assert_eq!(
            named("acme@.env"),
            (Format::Env, "acme@".into(), "1".into())
        );
    }

    #[test]
    fn other_files_ignored() {
        for name in [
            "README.md",
            "acme.yaml",
            "noextension",
            ".envrc",
            ".gitignore",
        ] {
            assert!(parse_file_name(name).is_none(), "{name}");
        }
    }

    #[test]
    fn nameless_files_rejected() {
        for name in [".env", ".json", ".env."] {
            assert!(matches!(parse_file_name(name), Some(Err(_))), "{name}");
        }
    }
}
