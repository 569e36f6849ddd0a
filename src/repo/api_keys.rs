//! Queries on `api_keys`.

use diesel::{
    BoolExpressionMethods, ExpressionMethods, JoinOnDsl, OptionalExtension, QueryDsl, QueryResult,
    SelectableHelper,
};
use diesel_async::RunQueryDsl;

use crate::db::DbConnection;
use crate::models::{ApiKey, User};
use crate::schema::{api_keys, users};

/// Loads a key by its public key id, with the user it belongs to. This lookup runs before the
/// tenant is known, on the key id's own unique index.
pub async fn find_with_owner(
    conn: &mut DbConnection,
    key_id: &str,
) -> QueryResult<Option<(ApiKey, User)>> {
    api_keys::table
        .inner_join(
            users::table.on(users::tenant_id
                .eq(api_keys::tenant_id)
                .and(users::id.eq(api_keys::user_id))),
        )
        .filter(api_keys::key_id.eq(key_id))
        .select((ApiKey::as_select(), User::as_select()))
        .first(conn)
        .await
        .optional()
}

pub async fn insert(conn: &mut DbConnection, key: &ApiKey) -> QueryResult<()> {
    diesel::insert_into(api_keys::table)
        .values(key)
        .execute(conn)
        .await
        .map(drop)
}

/// Counts keys that are neither revoked nor expired, the figure the plan's key quota limits.
pub async fn count_live(
    conn: &mut DbConnection,
    tenant_id: &str,
    now: chrono::NaiveDateTime,
) -> QueryResult<i64> {
    api_keys::table
        .filter(api_keys::tenant_id.eq(tenant_id))
        .filter(api_keys::revoked_at.is_null())
        .filter(
            api_keys::expires_at
                .is_null()
                .or(api_keys::expires_at.gt(now)),
        )
        .count()
        .get_result(conn)
        .await
}
