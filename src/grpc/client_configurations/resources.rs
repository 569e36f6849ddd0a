//! Conversions between legacy document rows and reports and their API messages.

use prost_types::value::Kind;
use prost_types::{ListValue, Struct};

use super::operations::{self, Migration, Outcome, Report};
use crate::grpc::convert::{optional_timestamp, timestamp};
use crate::legacy::Format;
use crate::models::ClientConfiguration;
use crate::proto::ally::v1 as pb;

pub fn format_to_proto(format: Format) -> pb::LegacyFormat {
    match format {
        Format::Json => pb::LegacyFormat::Json,
        Format::Ini => pb::LegacyFormat::Ini,
        Format::Env => pb::LegacyFormat::Env,
    }
}

/// Returns the format a request names, or `None` for LEGACY_FORMAT_UNSPECIFIED.
pub fn format_from_proto(format: pb::LegacyFormat) -> Option<Format> {
    match format {
        pb::LegacyFormat::Unspecified => None,
        pb::LegacyFormat::Json => Some(Format::Json),
        pb::LegacyFormat::Ini => Some(Format::Ini),
        pb::LegacyFormat::Env => Some(Format::Env),
    }
}

pub fn status_to_proto(status: &str) -> pb::LegacyMigrationStatus {
    match status {
        operations::MIGRATED => pb::LegacyMigrationStatus::Migrated,
        operations::FAILED => pb::LegacyMigrationStatus::Failed,
        _ => pb::LegacyMigrationStatus::Pending,
    }
}

/// Returns the stored status a request names, or `None` for LEGACY_MIGRATION_STATUS_UNSPECIFIED.
pub fn status_from_proto(status: pb::LegacyMigrationStatus) -> Option<&'static str> {
    match status {
        pb::LegacyMigrationStatus::Unspecified => None,
        pb::LegacyMigrationStatus::Pending => Some(operations::PENDING),
        pb::LegacyMigrationStatus::Migrated => Some(operations::MIGRATED),
        pb::LegacyMigrationStatus::Failed => Some(operations::FAILED),
    }
}

/// Converts a row. `with_text` decides whether `original_text` is filled in, because only
/// admins and owners may read it.
pub fn client_configuration_to_proto(
    row: &ClientConfiguration,
    with_text: bool,
) -> pb::ClientConfiguration {
    let format = Format::parse(&row.source_format)
        .map(format_to_proto)
        .unwrap_or(pb::LegacyFormat::Unspecified);
    pb::ClientConfiguration {
        id: row.id.clone(),
        client_id: row.client_id.clone(),
        legacy_version: row.legacy_version.clone(),
        format: format.into(),
        original_text: if with_text {
            row.original_text.clone()
        } else {
            String::new()
        },
        migration_status: status_to_proto(&row.migration_status).into(),
        migration_error: row.migration_error.clone().unwrap_or_default(),
        migrate_time: optional_timestamp(row.migrated_at),
        create_time: Some(timestamp(row.created_at)),
        update_time: Some(timestamp(row.updated_at)),
    }
}

pub fn report_to_proto(report: &Report) -> pb::LegacyMigrationReport {
    let status = match report.outcome {
        Outcome::Migrated => pb::LegacyMigrationStatus::Migrated,
        Outcome::Failed => pb::LegacyMigrationStatus::Failed,
    };
    pb::LegacyMigrationReport {
        status: status.into(),
        configuration_types: report
            .types
            .iter()
            .map(|type_report| pb::LegacyConfigurationTypeReport {
                config_type: type_report.config_type.clone(),
                fields_set: type_report.fields_set.clone(),
                changed_fields: type_report
                    .changes
                    .iter()
                    .map(|change| pb::LegacyFieldChange {
                        field: change.field.clone(),
                        old_value: change.old.clone().map(json_to_value),
                        new_value: Some(json_to_value(change.new.clone())),
                    })
                    .collect(),
                version: type_report.version,
            })
            .collect(),
        unmapped_keys: report.unmapped.clone(),
        skipped_secrets: report.secrets.clone(),
        errors: report
            .errors
            .iter()
            .map(|error| pb::LegacyKeyError {
                key: error.key.clone(),
                reason: error.reason.clone(),
            })
            .collect(),
    }
}

pub fn migration_to_proto(
    migration: &Migration,
    with_text: bool,
) -> pb::MigrateClientConfigurationResponse {
    pb::MigrateClientConfigurationResponse {
        client_configuration: Some(client_configuration_to_proto(&migration.row, with_text)),
        report: Some(report_to_proto(&migration.report)),
    }
}

/// Converts a JSON value to a protobuf `Value`.
fn json_to_value(value: serde_json::Value) -> prost_types::Value {
    let kind = match value {
        serde_json::Value::Null => Kind::NullValue(0),
        serde_json::Value::Bool(flag) => Kind::BoolValue(flag),
        serde_json::Value::Number(number) => Kind::NumberValue(number.as_f64().unwrap_or_default()),
        serde_json::Value::String(text) => Kind::StringValue(text),
        serde_json::Value::Array(items) => Kind::ListValue(ListValue {
            values: items.into_iter().map(json_to_value).collect(),
        }),
        serde_json::Value::Object(map) => Kind::StructValue(Struct {
            fields: map
                .into_iter()
                .map(|(key, value)| (key, json_to_value(value)))
                .collect(),
        }),
    };
    prost_types::Value { kind: Some(kind) }
}
