//! Writing and reading `audit_logs`.

use diesel::QueryResult;
use diesel_async::RunQueryDsl;

use crate::db::DbConnection;
use crate::models::AuditLog;
use crate::schema::audit_logs;

/// Appends one entry.
pub async fn insert(conn: &mut DbConnection, entry: &AuditLog) -> QueryResult<()> {
    diesel::insert_into(audit_logs::table)
        .values(entry)
        .execute(conn)
        .await
        .map(drop)
}
