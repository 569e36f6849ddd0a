use chrono::NaiveDateTime;

use crate::schema::messages;

/// A row of `messages`.
#[derive(
    Clone, Debug, PartialEq, Eq, diesel::Queryable, diesel::Selectable, diesel::Insertable,
)]
#[diesel(table_name = messages)]
#[diesel(check_for_backend(diesel::mysql::Mysql, diesel::sqlite::Sqlite))]
pub struct Message {
    pub tenant_id: String,
    pub id: String,
    pub session_id: String,
    pub user_id: Option<String>,
    pub parent_id: Option<String>,
    pub role: String,
    pub content: String,
    pub content_type: String,
    pub model: Option<String>,
    pub prompt_tokens: Option<i32>,
    pub completion_tokens: Option<i32>,
    pub latency_ms: Option<i32>,
    pub finish_reason: Option<String>,
    pub metadata: String,
    pub request_id: Option<String>,
    pub version: i32,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    pub deleted_at: Option<NaiveDateTime>,
}
