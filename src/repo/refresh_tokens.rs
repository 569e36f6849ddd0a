//! Queries on `refresh_tokens`.

use chrono::NaiveDateTime;
use diesel::{ExpressionMethods, OptionalExtension, QueryDsl, QueryResult, SelectableHelper};
use diesel_async::RunQueryDsl;

use crate::db::DbConnection;
use crate::models::RefreshToken;
use crate::schema::refresh_tokens;

#[tracing::instrument(name = "repo.refresh_tokens.insert", skip_all)]
pub async fn insert(conn: &mut DbConnection, token: &RefreshToken) -> QueryResult<()> {
    diesel::insert_into(refresh_tokens::table)
        .values(token)
        .execute(conn)
        .await
        .map(drop)
}

/// Loads a token by the hash of its secret. This lookup runs before the tenant is known, on the
/// hash's own unique index, and the row it returns names the tenant.
#[tracing::instrument(name = "repo.refresh_tokens.find_by_hash", skip_all)]
pub async fn find_by_hash(
    conn: &mut DbConnection,
    token_hash: &str,
) -> QueryResult<Option<RefreshToken>> {
    refresh_tokens::table
        .filter(refresh_tokens::token_hash.eq(token_hash))
        .select(RefreshToken::as_select())
        .first(conn)
        .await
        .optional()
}

/// Marks a token as exchanged if it is neither exchanged nor revoked yet. Returns false when
/// another call got there first, which makes concurrent exchanges of one token detectable.
#[tracing::instrument(name = "repo.refresh_tokens.mark_used", skip_all, fields(tenant.id = %tenant_id))]
pub async fn mark_used(
    conn: &mut DbConnection,
    tenant_id: &str,
    id: &str,
    now: NaiveDateTime,
) -> QueryResult<bool> {
    let changed = diesel::update(
        refresh_tokens::table
            .filter(refresh_tokens::tenant_id.eq(tenant_id))
            .filter(refresh_tokens::id.eq(id))
            .filter(refresh_tokens::used_at.is_null())
            .filter(refresh_tokens::revoked_at.is_null()),
    )
    .set(refresh_tokens::used_at.eq(now))
    .execute(conn)
    .await?;
    Ok(changed == 1)
}

/// Revokes every token of a family that is not revoked yet and returns how many it revoked.
#[tracing::instrument(name = "repo.refresh_tokens.revoke_family", skip_all, fields(tenant.id = %tenant_id))]
pub async fn revoke_family(
    conn: &mut DbConnection,
    tenant_id: &str,
    family_id: &str,
    now: NaiveDateTime,
) -> QueryResult<usize> {
    diesel::update(
        refresh_tokens::table
            .filter(refresh_tokens::tenant_id.eq(tenant_id))
            .filter(refresh_tokens::family_id.eq(family_id))
            .filter(refresh_tokens::revoked_at.is_null()),
    )
    .set(refresh_tokens::revoked_at.eq(now))
    .execute(conn)
    .await
}
