use chrono::NaiveDateTime;

use crate::schema::configurations;

/// A row of `configurations`: one version of one configuration type.
#[derive(
    Clone, Debug, PartialEq, Eq, diesel::Queryable, diesel::Selectable, diesel::Insertable,
)]
#[diesel(table_name = configurations)]
#[diesel(check_for_backend(diesel::mysql::Mysql, diesel::sqlite::Sqlite))]
pub struct Configuration {
    pub tenant_id: String,
    pub id: String,
    pub config_type: String,
    pub value: String,
    pub version: i32,
    pub is_active: bool,
    pub description: Option<String>,
    pub created_by: Option<String>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    pub deleted_at: Option<NaiveDateTime>,
}
