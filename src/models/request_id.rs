use chrono::NaiveDateTime;

use crate::schema::request_ids;

/// A row of `request_ids`.
#[derive(
    Clone, Debug, PartialEq, Eq, diesel::Queryable, diesel::Selectable, diesel::Insertable,
)]
#[diesel(table_name = request_ids)]
#[diesel(check_for_backend(diesel::mysql::Mysql, diesel::sqlite::Sqlite))]
pub struct RequestId {
    pub scope: String,
    pub method: String,
    pub request_id: String,
    pub resource_id: String,
    pub created_at: NaiveDateTime,
}
