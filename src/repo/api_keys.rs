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
