//! `ally.v1.ConfigurationService`: versioned JSON configuration documents of the caller's
//! tenant, read through [`ConfigCache`].
//!
//! Every change appends a version in a transaction that first locks the tenant row, so two
//! writers of one tenant never pick the same version number, and writes its audit entry in the
//! same transaction. The cache is invalidated after the commit. DeleteConfiguration sets
//! `deleted_at` on the active row only, so the history stays readable and the next write simply
//! appends the next version, which undeletes the type.

use diesel_async::AsyncConnection;
use tonic::{Request, Response, Status};

use super::convert::{json_to_struct, optional_timestamp, struct_to_json, timestamp};
use super::resources::etag;
use super::{ApiError, context, paging, validate};
use crate::audit::{self, AuditEvent, Severity};
use crate::auth::{Principal, RequestContext};
use crate::cache::ConfigCache;
use crate::db::Database;
use crate::db::retry::with_retry;
use crate::models::{self, Configuration};
use crate::proto::ally::v1 as pb;
use crate::proto::ally::v1::configuration_service_server::ConfigurationService;
use crate::repo;
use crate::repo::configurations::NewVersion;

/// Largest configuration document, as JSON text.
pub const MAX_VALUE_BYTES: usize = 256 * 1024;
/// Maximum length of a configuration type name, in characters.
const MAX_CONFIG_TYPE_CHARS: usize = 100;
/// Maximum length of a version description, in characters.
const MAX_DESCRIPTION_CHARS: usize = 500;
/// The ErrorInfo reason of a failed etag or version check.
const VERSION_MISMATCH: &str = "VERSION_MISMATCH";

/// The ConfigurationService handlers.
#[derive(Clone)]
pub struct ConfigurationApi {
    database: Database,
    cache: ConfigCache,
}

/// The version a write expects to be current.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Expected {
    /// No check.
    Any,
    /// The etag of the current version.
    Etag(String),
    /// The current version number, 0 for "no current version".
    Version(i32),
}

/// The content source of a new version.
#[derive(Clone, Debug)]
enum Source {
    /// A value from the request.
    Value {
        value: String,
        description: Option<String>,
    },
    /// The value and description of an earlier version.
    Revision(i32),
}

impl ConfigurationApi {
    pub fn new(database: Database, cache: ConfigCache) -> ConfigurationApi {
        ConfigurationApi { database, cache }
    }

    /// Appends a version from `source` after checking `expected`, with its audit entry, and
    /// invalidates the cache after the commit.
    async fn write_version(
        &self,
        context: &RequestContext,
        config_type: &str,
        expected: &Expected,
        source: &Source,
    ) -> Result<Configuration, ApiError> {
        let tenant_id = tenant_of(context)?;
        let created_by = author(context);
        let row = with_retry(|| async {
            let mut conn = self.database.write().await?;
            conn.transaction(async |conn| {
                repo::tenants::lock_for_update(conn, tenant_id).await?;
                let current = repo::configurations::active(conn, tenant_id, config_type).await?;
                check_expected(expected, current.as_ref())?;

                let (value, description, event) = match source {
                    Source::Value { value, description } => (
                        value.clone(),
                        description.clone(),
                        AuditEvent::change("configuration.updated"),
                    ),
                    Source::Revision(version) => {
                        let revision =
                            repo::configurations::version(conn, tenant_id, config_type, *version)
                                .await?
                                .ok_or(ApiError::NotFound {
                                    resource: "configuration revision",
                                })?;
                        (
                            revision.value,
                            revision.description,
                            AuditEvent::change("configuration.rolled_back")
                                .severity(Severity::Warning)
                                .detail("from_version", *version),
                        )
                    }
                };
                let new = NewVersion {
                    tenant_id,
                    config_type,
                    value: &value,
                    description: description.as_deref(),
                    created_by: created_by.as_deref(),
                    now: models::now(),
                };
                let row = repo::configurations::append_version(conn, &new).await?;
                let entry = audit::entry(
                    context,
                    tenant_id,
                    event
                        .resource("configuration", &row.id)
                        .detail("config_type", config_type)
                        .detail("version", row.version),
                );
                repo::audit::insert(conn, &entry).await?;
                Ok::<_, ApiError>(row)
            })
            .await
        })
        .await?;
        self.cache.invalidate(tenant_id, config_type).await;
        Ok(row)
    }
}

/// Returns the caller's tenant; the policy table admits only tenant members to this service.
fn tenant_of(context: &RequestContext) -> Result<&str, ApiError> {
    context
        .tenant_id
        .as_deref()
        .ok_or_else(|| ApiError::internal("a configuration RPC ran without a tenant caller"))
}

/// Returns the id stored in `created_by`: the user's id, or the API key's row id.
fn author(context: &RequestContext) -> Option<String> {
    match &context.principal {
        Some(Principal::User { user_id }) => Some(user_id.clone()),
        Some(Principal::ApiKey { api_key_id, .. }) => Some(api_key_id.clone()),
        Some(Principal::Operator { .. } | Principal::System { .. }) | None => None,
    }
}

/// Checks a configuration type name: 1 to 100 characters of `a-z`, `0-9`, `.`, `_` and `-`.
pub fn config_type(field: &str, value: &str) -> Result<String, ApiError> {
    if value.is_empty() {
        return Err(ApiError::invalid(field, "is required"));
    }
    let allowed = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b);
    if value.len() > MAX_CONFIG_TYPE_CHARS || !value.bytes().all(allowed) {
        return Err(ApiError::invalid(
            field,
            format!(
                "must be 1 to {MAX_CONFIG_TYPE_CHARS} characters from a-z, 0-9, '.', '_' and \
                 '-', such as llm.defaults"
            ),
        ));
    }
    Ok(value.to_string())
}

/// Parses JSON text from field `field` that must encode an object of at most `max_bytes`, and
/// returns it in compact form.
pub fn json_object(field: &str, text: &str, max_bytes: usize) -> Result<String, ApiError> {
    let too_large = |bytes: usize| {
        ApiError::invalid(
            field,
            format!("is {bytes} bytes as JSON; the limit is {max_bytes}"),
        )
    };
    if text.len() > max_bytes {
        return Err(too_large(text.len()));
    }
    // serde_json's message ends with "at line L column C", counted from 1.
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|error| ApiError::invalid(field, format!("is not valid JSON: {error}")))?;
    let kind = match &value {
        serde_json::Value::Object(_) => None,
        serde_json::Value::Array(_) => Some("an array"),
        serde_json::Value::String(_) => Some("a string"),
        serde_json::Value::Number(_) => Some("a number"),
        serde_json::Value::Bool(_) => Some("a boolean"),
        serde_json::Value::Null => Some("null"),
    };
    if let Some(kind) = kind {
        return Err(ApiError::invalid(
            field,
            format!("must be a JSON object, not {kind}"),
        ));
    }
    let compact = value.to_string();
    if compact.len() > max_bytes {
        return Err(too_large(compact.len()));
    }
    Ok(compact)
}

/// Reads the optional version check of a write. `expected_version` is `None` where the request
/// has no such field.
fn expected(etag: &str, expected_version: Option<i32>) -> Result<Expected, ApiError> {
    match (etag.is_empty(), expected_version) {
        (true, None) => Ok(Expected::Any),
        (false, None) => Ok(Expected::Etag(etag.to_string())),
        (true, Some(version)) if version < 0 => Err(ApiError::invalid(
            "expected_version",
            "must not be negative",
        )),
        (true, Some(version)) => Ok(Expected::Version(version)),
        (false, Some(_)) => Err(ApiError::invalid(
            "expected_version",
            "set etag or expected_version, not both",
        )),
    }
}

/// Fails with ABORTED when `current` is not the version the caller expects.
fn check_expected(expected: &Expected, current: Option<&Configuration>) -> Result<(), ApiError> {
    let current_version = current.map_or(0, |row| row.version);
    let matches = match expected {
        Expected::Any => true,
        Expected::Etag(tag) => current.is_some() && *tag == etag(i64::from(current_version)),
        Expected::Version(version) => *version == current_version,
    };
    if matches {
        return Ok(());
    }
    let message = match current {
        Some(row) => format!(
            "the configuration is at version {} now; read it again and retry",
            row.version
        ),
        None => "the configuration has no current version now; read it again and retry".into(),
    };
    Err(ApiError::Aborted {
        reason: VERSION_MISMATCH,
        message,
    })
}

fn configuration_to_proto(row: &Configuration) -> pb::Configuration {
    pb::Configuration {
        config_type: row.config_type.clone(),
        version: row.version,
        value: Some(json_to_struct(&row.value)),
        description: row.description.clone().unwrap_or_default(),
        etag: etag(i64::from(row.version)),
        create_time: Some(timestamp(row.created_at)),
        created_by: row.created_by.clone().unwrap_or_default(),
        delete_time: optional_timestamp(row.deleted_at),
    }
}

#[tonic::async_trait]
impl ConfigurationService for ConfigurationApi {
    async fn get_configuration(
        &self,
        request: Request<pb::GetConfigurationRequest>,
    ) -> Result<Response<pb::GetConfigurationResponse>, Status> {
        let context = context(&request)?;
        let tenant_id = tenant_of(&context)?;
        let config_type = config_type("config_type", &request.get_ref().config_type)?;

        let load = async {
            let mut conn = self.database.read().await?;
            let row = repo::configurations::active(&mut conn, tenant_id, &config_type).await?;
            Ok::<_, ApiError>(row)
        };
        let row = self
            .cache
            .get_or_load(tenant_id, &config_type, load)
            .await?
            .ok_or(ApiError::NotFound {
                resource: "configuration",
            })?;
        Ok(Response::new(pb::GetConfigurationResponse {
            configuration: Some(configuration_to_proto(&row)),
        }))
    }

    async fn update_configuration(
        &self,
        request: Request<pb::UpdateConfigurationRequest>,
    ) -> Result<Response<pb::UpdateConfigurationResponse>, Status> {
        use pb::update_configuration_request::ValueSource;

        let context = context(&request)?;
        let request = request.into_inner();
        let config_type = config_type("config_type", &request.config_type)?;
        let value = match &request.value_source {
            Some(ValueSource::Value(value)) => struct_to_json("value", value, MAX_VALUE_BYTES)?,
            Some(ValueSource::ValueJson(text)) => json_object("value_json", text, MAX_VALUE_BYTES)?,
            None => return Err(ApiError::invalid("value", "set value or value_json").into()),
        };
        let description =
            validate::optional_text("description", &request.description, MAX_DESCRIPTION_CHARS)?;
        let expected = expected(&request.etag, request.expected_version)?;

        let source = Source::Value { value, description };
        let row = self
            .write_version(&context, &config_type, &expected, &source)
            .await?;
        Ok(Response::new(pb::UpdateConfigurationResponse {
            configuration: Some(configuration_to_proto(&row)),
        }))
    }

    async fn list_configuration_revisions(
        &self,
        request: Request<pb::ListConfigurationRevisionsRequest>,
    ) -> Result<Response<pb::ListConfigurationRevisionsResponse>, Status> {
        let context = context(&request)?;
        let tenant_id = tenant_of(&context)?;
        let request = request.into_inner();
        let config_type = config_type("config_type", &request.config_type)?;
        let size = paging::page_size(request.page_size)?;
        let fingerprint = paging::fingerprint(&config_type);
        let before: Option<i32> = paging::decode(&request.page_token, &fingerprint)?;

        let mut conn = self.database.read().await.map_err(ApiError::from)?;
        let mut rows =
            repo::configurations::revisions(&mut conn, tenant_id, &config_type, before, size + 1)
                .await
                .map_err(ApiError::from)?;
        let more = rows.len() as i64 > size;
        rows.truncate(size as usize);
        let next_page_token = match (more, rows.last()) {
            (true, Some(last)) => paging::encode(&fingerprint, last.version),
            _ => String::new(),
        };
        Ok(Response::new(pb::ListConfigurationRevisionsResponse {
            revisions: rows.iter().map(configuration_to_proto).collect(),
            next_page_token,
        }))
    }

    async fn rollback_configuration(
        &self,
        request: Request<pb::RollbackConfigurationRequest>,
    ) -> Result<Response<pb::RollbackConfigurationResponse>, Status> {
        let context = context(&request)?;
        let request = request.into_inner();
        let config_type = config_type("config_type", &request.config_type)?;
        if request.version < 1 {
            return Err(ApiError::invalid("version", "must be at least 1").into());
        }
        let expected = expected(&request.etag, None)?;

        let source = Source::Revision(request.version);
        let row = self
            .write_version(&context, &config_type, &expected, &source)
            .await?;
        Ok(Response::new(pb::RollbackConfigurationResponse {
            configuration: Some(configuration_to_proto(&row)),
        }))
    }

    async fn delete_configuration(
        &self,
        request: Request<pb::DeleteConfigurationRequest>,
    ) -> Result<Response<pb::DeleteConfigurationResponse>, Status> {
        let context = context(&request)?;
        let tenant_id = tenant_of(&context)?;
        let request = request.into_inner();
        let config_type = config_type("config_type", &request.config_type)?;
        let expected = expected(&request.etag, None)?;

        let deleted = with_retry(|| async {
            let mut conn = self.database.write().await?;
            conn.transaction(async |conn| {
                repo::tenants::lock_for_update(conn, tenant_id).await?;
                let mut row = repo::configurations::active(conn, tenant_id, &config_type)
                    .await?
                    .ok_or(ApiError::NotFound {
                        resource: "configuration",
                    })?;
                check_expected(&expected, Some(&row))?;
                let now = models::now();
                repo::configurations::mark_deleted(conn, tenant_id, &config_type, now).await?;
                row.deleted_at = Some(now);
                row.updated_at = now;
                let entry = audit::entry(
                    &context,
                    tenant_id,
                    AuditEvent::change("configuration.deleted")
                        .severity(Severity::Warning)
                        .resource("configuration", &row.id)
                        .detail("config_type", config_type.as_str())
                        .detail("version", row.version),
                );
                repo::audit::insert(conn, &entry).await?;
                Ok::<_, ApiError>(row)
            })
            .await
        })
        .await?;
        self.cache.invalidate(tenant_id, &config_type).await;
        Ok(Response::new(pb::DeleteConfigurationResponse {
            configuration: Some(configuration_to_proto(&deleted)),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;
    use tonic_types::StatusExt;

    fn violation(error: ApiError) -> (String, String) {
        let status = Status::from(error);
        let bad_request = status.get_details_bad_request().expect("BadRequest detail");
        let violation = &bad_request.field_violations[0];
        (violation.field.clone(), violation.description.clone())
    }

    fn row(version: i32) -> Configuration {
        let now = models::now();
        Configuration {
            tenant_id: "t".into(),
            id: "r".into(),
            config_type: "llm.defaults".into(),
            value: "{}".into(),
            version,
            is_active: true,
            description: None,
            created_by: None,
            created_at: now,
            updated_at: now,
            deleted_at: None,
        }
    }

    #[test]
    fn config_type_accepts_namespaces() {
        for good in ["llm.defaults", "a", "x_y-z.0", &"a".repeat(100)] {
            assert_eq!(config_type("config_type", good).unwrap(), good);
        }
    }

    #[test]
    fn config_type_rejects() {
        for bad in [
            "",
            "LLM",
            "llm defaults",
            "llm/defaults",
            "é",
            &"a".repeat(101),
        ] {
            assert!(config_type("config_type", bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn json_error_names_line_and_column() {
        let error = json_object("value_json", "{\n  \"a\": 1,\n  \"b\": }", 1024).unwrap_err();

        let (field, description) = violation(error);
        assert_eq!(field, "value_json");
        assert!(
            description.contains("line 3 column 8"),
            "description: {description}"
        );
    }

    #[test]
    fn json_non_object_rejected() {
        let (field, description) = violation(json_object("value_json", "[1]", 1024).unwrap_err());

        assert_eq!(field, "value_json");
        assert!(description.contains("not an array"), "{description}");
        assert!(json_object("value_json", "null", 1024).is_err());
        assert!(json_object("value_json", "\"x\"", 1024).is_err());
    }

    #[test]
    fn json_size_limit() {
        let text = format!("{{\"a\":\"{}\"}}", "x".repeat(100));

        assert!(json_object("value_json", &text, 50).is_err());
        assert!(json_object("value_json", &text, 200).is_ok());
    }

    #[test]
    fn json_compacted() {
        let compact = json_object("value_json", "{ \"b\" : [1, 2],\n \"a\": true }", 1024);

        assert_eq!(compact.unwrap(), r#"{"a":true,"b":[1,2]}"#);
    }

    #[test]
    fn expected_parses_fields() {
        assert_eq!(expected("", None).unwrap(), Expected::Any);
        assert_eq!(
            expected("\"v2\"", None).unwrap(),
            Expected::Etag("\"v2\"".into())
        );
        assert_eq!(expected("", Some(0)).unwrap(), Expected::Version(0));
        assert!(expected("", Some(-1)).is_err());
        assert!(expected("\"v2\"", Some(2)).is_err());
    }

    #[test]
    fn version_checks() {
        let current = row(2);

        assert!(check_expected(&Expected::Any, None).is_ok());
        assert!(check_expected(&Expected::Etag(etag(2)), Some(&current)).is_ok());
        assert!(check_expected(&Expected::Version(2), Some(&current)).is_ok());
        assert!(check_expected(&Expected::Version(0), None).is_ok());

        for (expected, current) in [
            (Expected::Etag(etag(1)), Some(&current)),
            (Expected::Etag(etag(2)), None),
            (Expected::Version(1), Some(&current)),
            (Expected::Version(0), Some(&current)),
        ] {
            let status = Status::from(check_expected(&expected, current).unwrap_err());
            assert_eq!(status.code(), Code::Aborted, "{expected:?}");
            assert_eq!(
                status.get_details_error_info().map(|info| info.reason),
                Some(VERSION_MISMATCH.to_string())
            );
        }
    }
}
