//! Importing and migrating legacy documents, shared by the gRPC handlers and
//! `ally legacy import`.

use diesel_async::AsyncConnection;
use serde_json::{Map, Value};

use super::super::{ApiError, validate};
use crate::audit::{self, AuditEvent, Severity};
use crate::auth::{Principal, RequestContext};
use crate::cache::ConfigCache;
use crate::db::retry::with_retry;
use crate::db::{Database, DbConnection};
use crate::legacy::mapping::{self, FieldChange, KeyError, MappedDocument};
use crate::legacy::{self, Format};
use crate::models::{self, ClientConfiguration};
use crate::repo;

/// Largest document ImportClientConfiguration accepts, in bytes.
pub const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;
/// Maximum length of `client_id`, in characters.
const MAX_CLIENT_ID_CHARS: usize = 255;
/// Maximum length of `legacy_version`, in characters.
const MAX_VERSION_CHARS: usize = 64;
/// Maximum length of `migration_error`, in characters, as the column allows.
const MAX_ERROR_CHARS: usize = 2000;
/// Maximum length of a configuration version description, in characters, as the column allows.
const MAX_DESCRIPTION_CHARS: usize = 500;

pub(super) const RESOURCE: &str = "client configuration";

/// Migration states as stored in `client_configurations.migration_status`.
pub const PENDING: &str = "pending";
pub const MIGRATED: &str = "migrated";
pub const FAILED: &str = "failed";

/// A checked import request whose document parses in `format`.
#[derive(Clone, Debug)]
pub struct ValidImport {
    pub client_id: String,
    pub legacy_version: String,
    pub format: Format,
    /// Whether the caller named the format instead of leaving it to detection.
    pub format_requested: bool,
    pub document: String,
}

/// Checks the fields of an import and parses the document. `format` `None` detects it.
pub fn validate_import(
    client_id: &str,
    legacy_version: &str,
    format: Option<Format>,
    document: String,
) -> Result<ValidImport, ApiError> {
    let client_id = validate::text("client_id", client_id, MAX_CLIENT_ID_CHARS)?;
    let legacy_version = validate::text("legacy_version", legacy_version, MAX_VERSION_CHARS)?;
    if document.is_empty() {
        return Err(ApiError::invalid("document", "is required"));
    }
    if document.len() > MAX_DOCUMENT_BYTES {
        return Err(ApiError::invalid(
            "document",
            format!(
                "is {} bytes; the limit is {MAX_DOCUMENT_BYTES} bytes (1 MiB)",
                document.len()
            ),
        ));
    }
    let format_requested = format.is_some();
    let format = format.unwrap_or_else(|| Format::detect(&document));
    if let Err(error) = legacy::parse(format, &document) {
        let detected_note = if format_requested { "" } else { " (detected)" };
        return Err(ApiError::invalid(
            "document",
            format!("is not valid {format}{detected_note}: {error}"),
        ));
    }
    Ok(ValidImport {
        client_id,
        legacy_version,
        format,
        format_requested,
        document,
    })
}

/// A stored document and whether this import stored it.
#[derive(Clone, Debug)]
pub struct Imported {
    pub row: ClientConfiguration,
    pub created: bool,
}

/// Stores a validated document in `tenant_id` with its audit entry, or returns the stored one
/// when the same text was imported before under the same client id and version.
pub async fn import(
    database: &Database,
    context: &RequestContext,
    tenant_id: &str,
    new: &ValidImport,
) -> Result<Imported, ApiError> {
    with_retry(|| async {
        let mut conn = database.write().await?;
        conn.transaction(async |conn| {
            // Serializes imports of the tenant, so two imports of the same version cannot both
            // pass the lookup below.
            repo::tenants::lock_for_update(conn, tenant_id).await?;
            let existing = repo::client_configurations::find_by_version(
                conn,
                tenant_id,
                &new.client_id,
                &new.legacy_version,
            )
            .await?;
            if let Some(existing) = existing {
                let same_format =
                    !new.format_requested || existing.source_format == new.format.as_str();
                if existing.original_text == new.document && same_format {
                    return Ok(Imported {
                        row: existing,
                        created: false,
                    });
                }
                return Err(ApiError::AlreadyExists {
                    resource: RESOURCE,
                    field: "legacy_version",
                });
            }
            let now = models::now();
            let row = ClientConfiguration {
                tenant_id: tenant_id.to_string(),
                id: models::new_id(),
                client_id: new.client_id.clone(),
                legacy_version: new.legacy_version.clone(),
                source_format: new.format.as_str().to_string(),
                original_text: new.document.clone(),
                migration_status: PENDING.to_string(),
                migration_error: None,
                migrated_at: None,
                created_at: now,
                updated_at: now,
            };
            repo::client_configurations::insert(conn, &row).await?;
            let event = AuditEvent::change("client_configuration.imported")
                .resource("client_configuration", &row.id)
                .detail("client_id", row.client_id.as_str())
                .detail("legacy_version", row.legacy_version.as_str())
                .detail("format", row.source_format.as_str());
            repo::audit::insert(conn, &audit::entry(context, tenant_id, event)).await?;
            Ok(Imported { row, created: true })
        })
        .await
    })
    .await
}

/// Whether a migration succeeded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Migrated,
    Failed,
}

/// The fields a migration sets in one configuration type.
#[derive(Clone, Debug, PartialEq)]
pub struct TypeReport {
    pub config_type: String,
    pub fields_set: Vec<String>,
    pub changes: Vec<FieldChange>,
    /// The version written; 0 on a dry run, a failure, or when no field changes.
    pub version: i32,
}

/// Report of the changes a migration made, or on a dry run would make.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    pub outcome: Outcome,
    pub types: Vec<TypeReport>,
    pub unmapped: Vec<String>,
    pub secrets: Vec<String>,
    pub errors: Vec<KeyError>,
}

/// A document after a migration, with the migration's report.
#[derive(Clone, Debug)]
pub struct Migration {
    pub row: ClientConfiguration,
    pub report: Report,
}

/// Migrates document `id` of `tenant_id` as MigrateClientConfiguration describes, and removes
/// the configuration types it wrote from `cache` after the transaction commits.
pub async fn migrate(
    database: &Database,
    cache: &ConfigCache,
    context: &RequestContext,
    tenant_id: &str,
    id: &str,
    dry_run: bool,
) -> Result<Migration, ApiError> {
    let row = {
        let mut conn = database.read().await?;
        repo::client_configurations::find(&mut conn, tenant_id, id)
            .await?
            .ok_or(ApiError::NotFound { resource: RESOURCE })?
    };
    let mapped = map_document(&row);

    if dry_run || !mapped.errors.is_empty() {
        let mut conn = database.read().await?;
        let planned = plan(&mut conn, tenant_id, &mapped).await?;
        drop(conn);
        let types = planned.into_iter().map(|(report, _)| report).collect();
        let report = report(&mapped, types);
        if dry_run {
            return Ok(Migration { row, report });
        }
        let row = record_failure(database, context, tenant_id, id, &mapped).await?;
        return Ok(Migration { row, report });
    }

    let description = truncate(
        &format!(
            "Migrated from legacy client configuration {}@{}",
            row.client_id, row.legacy_version
        ),
        MAX_DESCRIPTION_CHARS,
    );
    let created_by = match &context.principal {
        Some(Principal::User { user_id }) => Some(user_id.clone()),
        Some(Principal::ApiKey { api_key_id, .. }) => Some(api_key_id.clone()),
        _ => None,
    };
    let migration = with_retry(|| async {
        let mut conn = database.write().await?;
        conn.transaction(async |conn| {
            repo::tenants::lock_for_update(conn, tenant_id).await?;
            let mut row = repo::client_configurations::find(conn, tenant_id, id)
                .await?
                .ok_or(ApiError::NotFound { resource: RESOURCE })?;
            let now = models::now();
            let mut types = Vec::new();
            let mut versions = Map::new();
            for (mut type_report, merged) in plan(conn, tenant_id, &mapped).await? {
                if !type_report.changes.is_empty() {
                    let value = Value::Object(merged).to_string();
                    let written = repo::configurations::append_version(
                        conn,
                        &repo::configurations::NewVersion {
                            tenant_id,
                            config_type: &type_report.config_type,
                            value: &value,
                            description: Some(&description),
                            created_by: created_by.as_deref(),
                            now,
                        },
                    )
                    .await?;
                    type_report.version = written.version;
                    versions.insert(type_report.config_type.clone(), written.version.into());
                }
                types.push(type_report);
            }
            row.migration_status = MIGRATED.to_string();
            row.migration_error = None;
            row.migrated_at = Some(now);
            row.updated_at = now;
            repo::client_configurations::set_migration_state(conn, &row).await?;
            let event = AuditEvent::change("client_configuration.migrated")
                .resource("client_configuration", &row.id)
                .detail("configuration_versions", Value::Object(versions))
                .detail("unmapped_keys", mapped.unmapped.len())
                .detail("skipped_secrets", mapped.secrets.len());
            repo::audit::insert(conn, &audit::entry(context, tenant_id, event)).await?;
            Ok::<_, ApiError>(Migration {
                row,
                report: report(&mapped, types),
            })
        })
        .await
    })
    .await?;
    for written in migration.report.types.iter().filter(|t| t.version > 0) {
        cache.invalidate(tenant_id, &written.config_type).await;
    }
    Ok(migration)
}

/// Parses a stored document and maps its entries. A document that no longer parses, which only
/// happens if the parser changed since the import, fails as a whole.
fn map_document(row: &ClientConfiguration) -> MappedDocument {
    let parsed = Format::parse(&row.source_format)
        .ok_or_else(|| format!("the stored format `{}` is unknown", row.source_format))
        .and_then(|format| {
            legacy::parse(format, &row.original_text).map_err(|error| error.to_string())
        });
    match parsed {
        Ok(entries) => mapping::map_entries(&entries),
        Err(reason) => MappedDocument {
            errors: vec![KeyError {
                key: "document".into(),
                reason,
            }],
            ..MappedDocument::default()
        },
    }
}

/// Merges the mapped fields of each type over its active value. Returns each type's report
/// (with version 0) and merged value, sorted by type.
async fn plan(
    conn: &mut DbConnection,
    tenant_id: &str,
    mapped: &MappedDocument,
) -> Result<Vec<(TypeReport, Map<String, Value>)>, ApiError> {
    let mut planned = Vec::new();
    for (config_type, fields) in &mapped.types {
        let current = match repo::configurations::active(conn, tenant_id, config_type).await? {
            Some(active) => match serde_json::from_str::<Value>(&active.value) {
                Ok(Value::Object(object)) => object,
                _ => Map::new(),
            },
            None => Map::new(),
        };
        let (merged, changes) = mapping::merge(&current, fields);
        planned.push((
            TypeReport {
                config_type: config_type.clone(),
                fields_set: fields.keys().cloned().collect(),
                changes,
                version: 0,
            },
            merged,
        ));
    }
    Ok(planned)
}

fn report(mapped: &MappedDocument, types: Vec<TypeReport>) -> Report {
    Report {
        outcome: if mapped.errors.is_empty() {
            Outcome::Migrated
        } else {
            Outcome::Failed
        },
        types,
        unmapped: mapped.unmapped.clone(),
        secrets: mapped.secrets.clone(),
        errors: mapped.errors.clone(),
    }
}

/// Records a failed migration and its audit entry in their own transaction. The configuration
/// types stay as they are.
async fn record_failure(
    database: &Database,
    context: &RequestContext,
    tenant_id: &str,
    id: &str,
    mapped: &MappedDocument,
) -> Result<ClientConfiguration, ApiError> {
    let reason = truncate(&mapped.error_summary(), MAX_ERROR_CHARS);
    let failed_keys: Vec<Value> = mapped
        .errors
        .iter()
        .map(|error| Value::from(error.key.as_str()))
        .collect();
    with_retry(|| async {
        let mut conn = database.write().await?;
        conn.transaction(async |conn| {
            let mut row = repo::client_configurations::find(conn, tenant_id, id)
                .await?
                .ok_or(ApiError::NotFound { resource: RESOURCE })?;
            row.migration_status = FAILED.to_string();
            row.migration_error = Some(reason.clone());
            row.updated_at = models::now();
            repo::client_configurations::set_migration_state(conn, &row).await?;
            // Only key names go into the audit entry, because the reasons quote document values.
            let event = AuditEvent::change("client_configuration.migration_failed")
                .severity(Severity::Warning)
                .resource("client_configuration", &row.id)
                .detail("failed_keys", failed_keys.clone());
            repo::audit::insert(conn, &audit::entry(context, tenant_id, event)).await?;
            Ok(row)
        })
        .await
    })
    .await
}

/// Shortens `text` to at most `max` characters, ending in "…" when it cut.
fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut short: String = text.chars().take(max - 1).collect();
    short.push('…');
    short
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncate_counts_characters() {
        assert_eq!(truncate("abc", 3), "abc");
        assert_eq!(truncate("🦀🦀🦀🦀", 3), "🦀🦀…");
    }

    #[test]
    fn import_rejects_malformed_document() {
        let error = validate_import("acme", "1", Some(Format::Json), "{\"a\": }".into())
            .unwrap_err()
            .to_string();
        assert_eq!(error, "invalid request");

        let status = tonic::Status::from(
            validate_import("acme", "1", None, "[llm]\nmodel".into()).unwrap_err(),
        );
        assert!(
            status
                .message()
                .contains("document: is not valid INI (detected): line 2, column 1"),
            "{}",
            status.message()
        );
    }

    #[test]
    fn import_checks_sizes() {
        assert!(validate_import("", "1", None, "A=1".into()).is_err());
        assert!(validate_import("acme", &"9".repeat(65), None, "A=1".into()).is_err());
        assert!(validate_import("acme", "1", None, String::new()).is_err());
        let large = format!("A={}", "x".repeat(MAX_DOCUMENT_BYTES));
        assert!(validate_import("acme", "1", None, large).is_err());
        let valid = validate_import(" acme ", "2", None, "A=1".into()).unwrap();
        assert_eq!(valid.client_id, "acme");
        assert_eq!(valid.format, Format::Env);
        assert!(!valid.format_requested);
    }
}
