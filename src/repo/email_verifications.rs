//! Queries on `email_verifications`. Every query is limited to one tenant.

use chrono::NaiveDateTime;
use diesel::{ExpressionMethods, OptionalExtension, QueryDsl, QueryResult, SelectableHelper};
use diesel_async::RunQueryDsl;

use crate::db::DbConnection;
use crate::models::EmailVerification;
use crate::schema::email_verifications;

#[tracing::instrument(name = "repo.email_verifications.insert", skip_all)]
pub async fn insert(conn: &mut DbConnection, row: &EmailVerification) -> QueryResult<()> {
    diesel::insert_into(email_verifications::table)
        .values(row)
        .execute(conn)
        .await
        .map(drop)
}

/// Loads a token of the tenant by the hash of its secret.
#[tracing::instrument(name = "repo.email_verifications.find_by_hash", skip_all, fields(tenant.id = %tenant_id))]
pub async fn find_by_hash(
    conn: &mut DbConnection,
    tenant_id: &str,
    token_hash: &str,
) -> QueryResult<Option<EmailVerification>> {
    email_verifications::table
        .filter(email_verifications::tenant_id.eq(tenant_id))
        .filter(email_verifications::token_hash.eq(token_hash))
        .select(EmailVerification::as_select())
        .first(conn)
        .await
        .optional()
}

/// Marks a token as used if it is still unused. Returns false when another call used it first,
/// so that a token works once even under concurrent calls.
#[tracing::instrument(name = "repo.email_verifications.mark_used", skip_all, fields(tenant.id = %tenant_id))]
pub async fn mark_used(
    conn: &mut DbConnection,
    tenant_id: &str,
    id: &str,
    now: NaiveDateTime,
) -> QueryResult<bool> {
    let changed = diesel::update(
        email_verifications::table
            .filter(email_verifications::tenant_id.eq(tenant_id))
            .filter(email_verifications::id.eq(id))
            .filter(email_verifications::used_at.is_null()),
    )
    .set(email_verifications::used_at.eq(now))
    .execute(conn)
    .await?;
    Ok(changed == 1)
}
