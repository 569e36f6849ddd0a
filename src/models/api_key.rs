use chrono::NaiveDateTime;

use crate::schema::api_keys;

/// A row of `api_keys`. `key_hash` is the hash of the secret, never the secret.
#[derive(
    Clone, Debug, PartialEq, Eq, diesel::Queryable, diesel::Selectable, diesel::Insertable,
)]
#[diesel(table_name = api_keys)]
#[diesel(check_for_backend(diesel::mysql::Mysql, diesel::sqlite::Sqlite))]
pub struct ApiKey {
    pub tenant_id: String,
    pub id: String,
    pub user_id: String,
    pub name: String,
    pub key_id: String,
    pub key_hash: String,
    pub scopes: String,
    pub expires_at: Option<NaiveDateTime>,
    pub last_used_at: Option<NaiveDateTime>,
    pub use_count: i64,
    pub revoked_at: Option<NaiveDateTime>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}
