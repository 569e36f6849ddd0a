use chrono::NaiveDateTime;

use crate::schema::client_configurations;

/// A row of `client_configurations`: one imported legacy document.
#[derive(
    Clone, Debug, PartialEq, Eq, diesel::Queryable, diesel::Selectable, diesel::Insertable,
)]
#[diesel(table_name = client_configurations)]
#[diesel(check_for_backend(diesel::mysql::Mysql, diesel::sqlite::Sqlite))]
pub struct ClientConfiguration {
    pub tenant_id: String,
    pub id: String,
    pub client_id: String,
    pub legacy_version: String,
    pub source_format: String,
    pub original_text: String,
    pub migration_status: String,
    pub migration_error: Option<String>,
    pub migrated_at: Option<NaiveDateTime>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}
