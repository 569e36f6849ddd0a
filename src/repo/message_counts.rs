//! Messages created per tenant and calendar month, the figure a plan's monthly message quota
//! limits.

use chrono::NaiveDateTime;
use diesel::{ExpressionMethods, OptionalExtension, QueryDsl, QueryResult};
use diesel_async::RunQueryDsl;

use crate::db::DbConnection;
use crate::schema::tenant_message_counts;

/// Returns the month of `time` as stored: `YYYY-MM`.
pub fn month_of(time: NaiveDateTime) -> String {
    time.format("%Y-%m").to_string()
}

/// Adds `count` messages to a tenant's count for the month of `now` unless the sum would pass
/// `limit` (`None`: no limit). Returns whether it added them.
///
/// The UPDATE locks the tenant's row until the transaction ends, so concurrent calls queue and
/// each reads the count the previous one wrote. The row of a new month is created on first use.
#[tracing::instrument(name = "repo.message_counts.try_add", skip_all, fields(tenant.id = %tenant_id))]
pub async fn try_add(
    conn: &mut DbConnection,
    tenant_id: &str,
    now: NaiveDateTime,
    count: i64,
    limit: Option<i64>,
) -> QueryResult<bool> {
    let month = month_of(now);
    if increment(conn, tenant_id, &month, count, limit).await? {
        return Ok(true);
    }
    create_row(conn, tenant_id, &month).await?;
    increment(conn, tenant_id, &month, count, limit).await
}

/// Returns a tenant's count for the month of `now`.
#[tracing::instrument(name = "repo.message_counts.get", skip_all, fields(tenant.id = %tenant_id))]
pub async fn get(conn: &mut DbConnection, tenant_id: &str, now: NaiveDateTime) -> QueryResult<i64> {
    let count = tenant_message_counts::table
        .filter(tenant_message_counts::tenant_id.eq(tenant_id))
        .filter(tenant_message_counts::usage_month.eq(month_of(now)))
        .select(tenant_message_counts::messages)
        .first::<i64>(conn)
        .await
        .optional()?;
    Ok(count.unwrap_or(0))
}

async fn increment(
    conn: &mut DbConnection,
    tenant_id: &str,
    month: &str,
    count: i64,
    limit: Option<i64>,
) -> QueryResult<bool> {
    let row = tenant_message_counts::table
        .filter(tenant_message_counts::tenant_id.eq(tenant_id))
        .filter(tenant_message_counts::usage_month.eq(month));
    let changed = match limit {
        Some(limit) => {
            diesel::update(row.filter(tenant_message_counts::messages.le(limit - count)))
                .set(tenant_message_counts::messages.eq(tenant_message_counts::messages + count))
                .execute(conn)
                .await?
        }
        None => {
            diesel::update(row)
                .set(tenant_message_counts::messages.eq(tenant_message_counts::messages + count))
                .execute(conn)
                .await?
        }
    };
    Ok(changed == 1)
}

/// Creates a tenant's row for `month` with a count of 0 unless it exists.
async fn create_row(conn: &mut DbConnection, tenant_id: &str, month: &str) -> QueryResult<()> {
    let values = (
        tenant_message_counts::tenant_id.eq(tenant_id),
        tenant_message_counts::usage_month.eq(month),
        tenant_message_counts::messages.eq(0_i64),
    );
    match conn {
        DbConnection::Mysql(mysql) => {
            diesel::insert_or_ignore_into(tenant_message_counts::table)
                .values(values)
                .execute(mysql)
                .await?
        }
        DbConnection::Sqlite(sqlite) => {
            diesel::insert_or_ignore_into(tenant_message_counts::table)
                .values(values)
                .execute(sqlite)
                .await?
        }
    };
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn month_format() {
        let time = chrono::NaiveDate::from_ymd_opt(2026, 3, 31)
            .unwrap()
            .and_hms_opt(23, 59, 59)
            .unwrap();
        assert_eq!(month_of(time), "2026-03");
    }
}
