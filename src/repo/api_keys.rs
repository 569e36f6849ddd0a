//! Queries on `api_keys`.

use chrono::NaiveDateTime;
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
#[tracing::instrument(name = "repo.api_keys.find_with_owner", skip_all)]
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
        // A unique key, so no LIMIT: see `tenants::find`.
        .get_result(conn)
        .await
        .optional()
}

#[tracing::instrument(name = "repo.api_keys.insert", skip_all)]
pub async fn insert(conn: &mut DbConnection, key: &ApiKey) -> QueryResult<()> {
    diesel::insert_into(api_keys::table)
        .values(key)
        .execute(conn)
        .await
        .map(drop)
}

/// Counts keys that are neither revoked nor expired, the figure the plan's key quota limits.
#[tracing::instrument(name = "repo.api_keys.count_live", skip_all, fields(tenant.id = %tenant_id))]
pub async fn count_live(
    conn: &mut DbConnection,
    tenant_id: &str,
    now: NaiveDateTime,
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

/// Loads one key of a tenant by its row id.
#[tracing::instrument(name = "repo.api_keys.find", skip_all, fields(tenant.id = %tenant_id))]
pub async fn find(
    conn: &mut DbConnection,
    tenant_id: &str,
    id: &str,
) -> QueryResult<Option<ApiKey>> {
    api_keys::table
        .filter(api_keys::tenant_id.eq(tenant_id))
        .filter(api_keys::id.eq(id))
        .select(ApiKey::as_select())
        .first(conn)
        .await
        .optional()
}

/// Filters of a key listing.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct ApiKeyFilter {
    /// Only keys of this user; `None` lists every user's keys.
    pub user_id: Option<String>,
    pub include_revoked: bool,
}

/// Lists a tenant's keys newest first, `limit` rows after the cursor `(created_at, id)`.
#[tracing::instrument(name = "repo.api_keys.list", skip_all, fields(tenant.id = %tenant_id))]
pub async fn list(
    conn: &mut DbConnection,
    tenant_id: &str,
    filter: &ApiKeyFilter,
    after: Option<(NaiveDateTime, String)>,
    limit: i64,
) -> QueryResult<Vec<ApiKey>> {
    let mut query = api_keys::table
        .filter(api_keys::tenant_id.eq(tenant_id.to_string()))
        .select(ApiKey::as_select())
        .into_boxed();
    if let Some(user_id) = &filter.user_id {
        query = query.filter(api_keys::user_id.eq(user_id.clone()));
    }
    if !filter.include_revoked {
        query = query.filter(api_keys::revoked_at.is_null());
    }
    if let Some((created_at, id)) = after {
        query = query.filter(
            api_keys::created_at
                .lt(created_at)
                .or(api_keys::created_at.eq(created_at).and(api_keys::id.lt(id))),
        );
    }
    query
        .order((api_keys::created_at.desc(), api_keys::id.desc()))
        .limit(limit)
        .load(conn)
        .await
}

/// Sets `revoked_at` of a key that is not revoked yet. Returns false when the key was already
/// revoked or does not exist, and then changes nothing.
#[tracing::instrument(name = "repo.api_keys.revoke", skip_all, fields(tenant.id = %tenant_id))]
pub async fn revoke(
    conn: &mut DbConnection,
    tenant_id: &str,
    id: &str,
    now: NaiveDateTime,
) -> QueryResult<bool> {
    let changed = diesel::update(
        api_keys::table
            .filter(api_keys::tenant_id.eq(tenant_id))
            .filter(api_keys::id.eq(id))
            .filter(api_keys::revoked_at.is_null()),
    )
    .set((api_keys::revoked_at.eq(now), api_keys::updated_at.eq(now)))
    .execute(conn)
    .await?;
    Ok(changed == 1)
}
