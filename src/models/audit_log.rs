use chrono::NaiveDateTime;

use crate::schema::audit_logs;

/// A row of `audit_logs`.
#[derive(
    Clone, Debug, PartialEq, Eq, diesel::Queryable, diesel::Selectable, diesel::Insertable,
)]
#[diesel(table_name = audit_logs)]
#[diesel(check_for_backend(diesel::mysql::Mysql, diesel::sqlite::Sqlite))]
pub struct AuditLog {
    pub tenant_id: String,
    pub id: String,
    pub actor_type: String,
    pub actor_id: Option<String>,
    pub event_type: String,
    pub resource_type: Option<String>,
    pub resource_id: Option<String>,
    pub severity: String,
    pub request_id: Option<String>,
    pub ip_address: Option<String>,
    pub metadata: String,
    pub created_at: NaiveDateTime,
}
