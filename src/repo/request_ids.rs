//! Idempotency keys of create calls.

use diesel::{ExpressionMethods, OptionalExtension, QueryDsl, QueryResult};
use diesel_async::RunQueryDsl;

use crate::db::DbConnection;
use crate::models::RequestId;
use crate::schema::request_ids;

/// The scope of operator calls, which belong to no tenant.
pub const PLATFORM_SCOPE: &str = "platform";

/// Returns the id of the resource an earlier call with this request id created.
#[tracing::instrument(name = "repo.request_ids.find", skip_all)]
pub async fn find(
    conn: &mut DbConnection,
    scope: &str,
    method: &str,
    request_id: &str,
) -> QueryResult<Option<String>> {
    request_ids::table
        .filter(request_ids::scope.eq(scope))
        .filter(request_ids::method.eq(method))
        .filter(request_ids::request_id.eq(request_id))
        .select(request_ids::resource_id)
        .first(conn)
        .await
        .optional()
}

#[tracing::instrument(name = "repo.request_ids.insert", skip_all)]
pub async fn insert(conn: &mut DbConnection, row: &RequestId) -> QueryResult<()> {
    diesel::insert_into(request_ids::table)
        .values(row)
        .execute(conn)
        .await
        .map(drop)
}
