use chrono::NaiveDateTime;

use crate::schema::tenants;

/// A row of `tenants`.
#[derive(
    Clone, Debug, PartialEq, Eq, diesel::Queryable, diesel::Selectable, diesel::Insertable,
)]
#[diesel(table_name = tenants)]
#[diesel(check_for_backend(diesel::mysql::Mysql, diesel::sqlite::Sqlite))]
pub struct Tenant {
    pub id: String,
    pub name: String,
    pub domain: Option<String>,
    pub subdomain: Option<String>,
    pub plan: String,
    pub status: String,
    pub suspended_reason: Option<String>,
    pub settings: String,
    pub version: i64,
    pub subscription_expires_at: Option<NaiveDateTime>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    pub deleted_at: Option<NaiveDateTime>,
}
