//! Queries on `users`. Every query is limited to one tenant.

use diesel::{ExpressionMethods, OptionalExtension, QueryDsl, QueryResult, SelectableHelper};
use diesel_async::RunQueryDsl;

use crate::db::DbConnection;
use crate::models::User;
use crate::schema::users;

pub async fn insert(conn: &mut DbConnection, user: &User) -> QueryResult<()> {
    diesel::insert_into(users::table)
        .values(user)
        .execute(conn)
        .await
        .map(drop)
}

pub async fn find(conn: &mut DbConnection, tenant_id: &str, id: &str) -> QueryResult<Option<User>> {
    users::table
        .filter(users::tenant_id.eq(tenant_id))
        .filter(users::id.eq(id))
        .select(User::as_select())
        .first(conn)
        .await
        .optional()
}

/// Loads a user by normalized email.
pub async fn find_by_email(
    conn: &mut DbConnection,
    tenant_id: &str,
    email: &str,
) -> QueryResult<Option<User>> {
    users::table
        .filter(users::tenant_id.eq(tenant_id))
        .filter(users::email.eq(email))
        .select(User::as_select())
        .first(conn)
        .await
        .optional()
}

/// Counts active users, the figure the plan's user quota limits.
pub async fn count_active(conn: &mut DbConnection, tenant_id: &str) -> QueryResult<i64> {
    users::table
        .filter(users::tenant_id.eq(tenant_id))
        .filter(users::is_active.eq(true))
        .count()
        .get_result(conn)
        .await
}
