use chrono::NaiveDateTime;

use crate::schema::chat_sessions;

/// A row of `chat_sessions`.
#[derive(
    Clone, Debug, PartialEq, Eq, diesel::Queryable, diesel::Selectable, diesel::Insertable,
)]
#[diesel(table_name = chat_sessions)]
#[diesel(check_for_backend(diesel::mysql::Mysql, diesel::sqlite::Sqlite))]
pub struct ChatSession {
    pub tenant_id: String,
    pub id: String,
    pub user_id: String,
    pub title: String,
    pub status: String,
    pub is_shared: bool,
    pub share_token: Option<String>,
    pub share_expires_at: Option<NaiveDateTime>,
    pub message_count: i64,
    pub last_message_at: Option<NaiveDateTime>,
    pub metadata: String,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    pub deleted_at: Option<NaiveDateTime>,
}
