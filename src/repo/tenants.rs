//! Queries on `tenants`.

use diesel::{ExpressionMethods, OptionalExtension, QueryDsl, QueryResult, SelectableHelper};
use diesel_async::RunQueryDsl;

use crate::db::DbConnection;
use crate::models::Tenant;
use crate::schema::tenants;

/// Loads a tenant by id, including a soft-deleted one.
pub async fn find(conn: &mut DbConnection, id: &str) -> QueryResult<Option<Tenant>> {
    tenants::table
        .filter(tenants::id.eq(id))
        .select(Tenant::as_select())
        .first(conn)
        .await
        .optional()
}
