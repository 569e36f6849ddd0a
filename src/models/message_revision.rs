use chrono::NaiveDateTime;

use crate::schema::message_revisions;

/// A row of `message_revisions`.
#[derive(
    Clone, Debug, PartialEq, Eq, diesel::Queryable, diesel::Selectable, diesel::Insertable,
)]
#[diesel(table_name = message_revisions)]
#[diesel(check_for_backend(diesel::mysql::Mysql, diesel::sqlite::Sqlite))]
pub struct MessageRevision {
    pub tenant_id: String,
    pub id: String,
    pub message_id: String,
    pub version: i32,
    pub content: String,
    pub created_at: NaiveDateTime,
}
