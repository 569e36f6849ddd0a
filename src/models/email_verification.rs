use chrono::NaiveDateTime;

use crate::schema::email_verifications;

/// A row of `email_verifications`.
#[derive(
    Clone, Debug, PartialEq, Eq, diesel::Queryable, diesel::Selectable, diesel::Insertable,
)]
#[diesel(table_name = email_verifications)]
#[diesel(check_for_backend(diesel::mysql::Mysql, diesel::sqlite::Sqlite))]
pub struct EmailVerification {
    pub tenant_id: String,
    pub id: String,
    pub user_id: String,
    pub email: String,
    pub token_hash: String,
    pub expires_at: NaiveDateTime,
    pub used_at: Option<NaiveDateTime>,
    pub created_at: NaiveDateTime,
}
