//! Counts that plan quotas limit.

use chrono::NaiveDateTime;
use diesel::{ExpressionMethods, QueryDsl, QueryResult};
use diesel_async::RunQueryDsl;

use crate::db::DbConnection;
use crate::schema::chat_sessions;

/// A tenant's use of each counted quota.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UsageCounts {
    pub active_users: i64,
    pub chat_sessions: i64,
    pub messages_this_month: i64,
    pub live_api_keys: i64,
}

/// Counts a tenant's active users, sessions that are not deleted, messages created in the month
/// of `month_start` (deleted ones included), and keys that are neither revoked nor expired.
#[tracing::instrument(name = "repo.usage.counts", skip_all, fields(tenant.id = %tenant_id))]
pub async fn counts(
    conn: &mut DbConnection,
    tenant_id: &str,
    month_start: NaiveDateTime,
    now: NaiveDateTime,
) -> QueryResult<UsageCounts> {
    let active_users = super::users::count_active(conn, tenant_id).await?;
    let chat_sessions = chat_sessions::table
        .filter(chat_sessions::tenant_id.eq(tenant_id))
        .filter(chat_sessions::deleted_at.is_null())
        .count()
        .get_result(conn)
        .await?;
    let messages_this_month = super::message_counts::get(conn, tenant_id, month_start).await?;
    let live_api_keys = super::api_keys::count_live(conn, tenant_id, now).await?;
    Ok(UsageCounts {
        active_users,
        chat_sessions,
        messages_this_month,
        live_api_keys,
    })
}
