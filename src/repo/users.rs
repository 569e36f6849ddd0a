//! Queries on `users`, and on the refresh tokens that user changes revoke. Every query is
//! limited to one tenant.

use chrono::NaiveDateTime;
use diesel::{
    BoolExpressionMethods, ExpressionMethods, OptionalExtension, QueryDsl, QueryResult,
    SelectableHelper,
};
use diesel_async::RunQueryDsl;

use crate::db::DbConnection;
use crate::models::User;
use crate::schema::{refresh_tokens, users};

#[tracing::instrument(name = "repo.users.insert", skip_all)]
pub async fn insert(conn: &mut DbConnection, user: &User) -> QueryResult<()> {
    diesel::insert_into(users::table)
        .values(user)
        .execute(conn)
        .await
        .map(drop)
}

#[tracing::instrument(name = "repo.users.find", skip_all, fields(tenant.id = %tenant_id))]
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
#[tracing::instrument(name = "repo.users.find_by_email", skip_all, fields(tenant.id = %tenant_id))]
pub async fn find_by_email(
    conn: &mut DbConnection,
    tenant_id: &str,
    email: &str,
) -> QueryResult<Option<User>> {
    users::table
        .filter(users::tenant_id.eq(tenant_id))
        .filter(users::email.eq(email))
        .select(User::as_select())
        // A unique key, so no LIMIT: see `tenants::find`.
        .get_result(conn)
        .await
        .optional()
}

/// Counts active users, the figure the plan's user quota limits.
#[tracing::instrument(name = "repo.users.count_active", skip_all, fields(tenant.id = %tenant_id))]
pub async fn count_active(conn: &mut DbConnection, tenant_id: &str) -> QueryResult<i64> {
    users::table
        .filter(users::tenant_id.eq(tenant_id))
        .filter(users::is_active.eq(true))
        .count()
        .get_result(conn)
        .await
}

/// Counts active owners. Every tenant keeps at least one.
#[tracing::instrument(name = "repo.users.count_active_owners", skip_all, fields(tenant.id = %tenant_id))]
pub async fn count_active_owners(conn: &mut DbConnection, tenant_id: &str) -> QueryResult<i64> {
    users::table
        .filter(users::tenant_id.eq(tenant_id))
        .filter(users::is_active.eq(true))
        .filter(users::role.eq("owner"))
        .count()
        .get_result(conn)
        .await
}

/// Filters of a user listing. `None` matches every value.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct UserFilter {
    /// A stored role name such as `admin`.
    pub role: Option<String>,
    pub active: Option<bool>,
}

/// Lists a tenant's users oldest first, `limit` rows after the cursor `(created_at, id)`.
#[tracing::instrument(name = "repo.users.list", skip_all, fields(tenant.id = %tenant_id))]
pub async fn list(
    conn: &mut DbConnection,
    tenant_id: &str,
    filter: &UserFilter,
    after: Option<(NaiveDateTime, String)>,
    limit: i64,
) -> QueryResult<Vec<User>> {
    let mut query = users::table
        .filter(users::tenant_id.eq(tenant_id.to_string()))
        .select(User::as_select())
        .into_boxed();
    if let Some(role) = &filter.role {
        query = query.filter(users::role.eq(role.clone()));
    }
    if let Some(active) = filter.active {
        query = query.filter(users::is_active.eq(active));
    }
    if let Some((created_at, id)) = after {
        query = query.filter(
            users::created_at
                .gt(created_at)
                .or(users::created_at.eq(created_at).and(users::id.gt(id))),
        );
    }
    query
        .order((users::created_at.asc(), users::id.asc()))
        .limit(limit)
        .load(conn)
        .await
}

/// Writes a user's display name, email, email verification time and update time.
#[tracing::instrument(name = "repo.users.update_profile", skip_all)]
pub async fn update_profile(conn: &mut DbConnection, user: &User) -> QueryResult<()> {
    diesel::update(
        users::table
            .filter(users::tenant_id.eq(&user.tenant_id))
            .filter(users::id.eq(&user.id)),
    )
    .set((
        users::display_name.eq(&user.display_name),
        users::email.eq(&user.email),
        users::email_verified_at.eq(user.email_verified_at),
        users::updated_at.eq(user.updated_at),
    ))
    .execute(conn)
    .await
    .map(drop)
}

/// Stores a user's role, a stored name such as `admin`.
#[tracing::instrument(name = "repo.users.set_role", skip_all, fields(tenant.id = %tenant_id))]
pub async fn set_role(
    conn: &mut DbConnection,
    tenant_id: &str,
    id: &str,
    role: &str,
    now: NaiveDateTime,
) -> QueryResult<()> {
    diesel::update(
        users::table
            .filter(users::tenant_id.eq(tenant_id))
            .filter(users::id.eq(id)),
    )
    .set((users::role.eq(role), users::updated_at.eq(now)))
    .execute(conn)
    .await
    .map(drop)
}

/// Activates or deactivates a user.
#[tracing::instrument(name = "repo.users.set_active", skip_all, fields(tenant.id = %tenant_id))]
pub async fn set_active(
    conn: &mut DbConnection,
    tenant_id: &str,
    id: &str,
    active: bool,
    now: NaiveDateTime,
) -> QueryResult<()> {
    diesel::update(
        users::table
            .filter(users::tenant_id.eq(tenant_id))
            .filter(users::id.eq(id)),
    )
    .set((users::is_active.eq(active), users::updated_at.eq(now)))
    .execute(conn)
    .await
    .map(drop)
}

/// Stores a new password hash and clears the failed login count and any login lock, so that
/// the new password works at once.
#[tracing::instrument(name = "repo.users.set_password", skip_all, fields(tenant.id = %tenant_id))]
pub async fn set_password(
    conn: &mut DbConnection,
    tenant_id: &str,
    id: &str,
    password_hash: &str,
    now: NaiveDateTime,
) -> QueryResult<()> {
    diesel::update(
        users::table
            .filter(users::tenant_id.eq(tenant_id))
            .filter(users::id.eq(id)),
    )
    .set((
        users::password_hash.eq(password_hash),
        users::failed_login_count.eq(0),
        users::locked_until.eq(None::<NaiveDateTime>),
        users::updated_at.eq(now),
    ))
    .execute(conn)
    .await
    .map(drop)
}

/// Records that the user's current email was verified at `at`.
#[tracing::instrument(name = "repo.users.set_email_verified", skip_all, fields(tenant.id = %tenant_id))]
pub async fn set_email_verified(
    conn: &mut DbConnection,
    tenant_id: &str,
    id: &str,
    at: NaiveDateTime,
) -> QueryResult<()> {
    diesel::update(
        users::table
            .filter(users::tenant_id.eq(tenant_id))
            .filter(users::id.eq(id)),
    )
    .set((users::email_verified_at.eq(at), users::updated_at.eq(at)))
    .execute(conn)
    .await
    .map(drop)
}

/// Revokes every refresh token of a user that is not revoked yet, which ends all of the user's
/// sessions, and returns how many it revoked.
#[tracing::instrument(name = "repo.users.revoke_refresh_tokens", skip_all, fields(tenant.id = %tenant_id))]
pub async fn revoke_refresh_tokens(
    conn: &mut DbConnection,
    tenant_id: &str,
    user_id: &str,
    now: NaiveDateTime,
) -> QueryResult<usize> {
    diesel::update(
        refresh_tokens::table
            .filter(refresh_tokens::tenant_id.eq(tenant_id))
            .filter(refresh_tokens::user_id.eq(user_id))
            .filter(refresh_tokens::revoked_at.is_null()),
    )
    .set(refresh_tokens::revoked_at.eq(now))
    .execute(conn)
    .await
}

/// Counts one more failed login of a user and returns the new count with the current lock
/// expiry. A lock that expired before `now` is cleared first, so counting starts again from
/// one after a lockout. The increment locks the row on MySQL until the transaction ends, so
/// concurrent failures are all counted.
#[tracing::instrument(name = "repo.users.record_failed_login", skip_all, fields(tenant.id = %tenant_id))]
pub async fn record_failed_login(
    conn: &mut DbConnection,
    tenant_id: &str,
    id: &str,
    now: chrono::NaiveDateTime,
) -> QueryResult<(i32, Option<chrono::NaiveDateTime>)> {
    let row = users::table
        .filter(users::tenant_id.eq(tenant_id))
        .filter(users::id.eq(id));
    diesel::update(row.filter(users::locked_until.le(now)))
        .set((
            users::failed_login_count.eq(0),
            users::locked_until.eq(None::<chrono::NaiveDateTime>),
        ))
        .execute(conn)
        .await?;
    diesel::update(row)
        .set(users::failed_login_count.eq(users::failed_login_count + 1))
        .execute(conn)
        .await?;
    row.select((users::failed_login_count, users::locked_until))
        .first(conn)
        .await
}

/// Locks a user's password login until `until`.
#[tracing::instrument(name = "repo.users.lock_login", skip_all, fields(tenant.id = %tenant_id))]
pub async fn lock_login(
    conn: &mut DbConnection,
    tenant_id: &str,
    id: &str,
    until: chrono::NaiveDateTime,
) -> QueryResult<()> {
    diesel::update(
        users::table
            .filter(users::tenant_id.eq(tenant_id))
            .filter(users::id.eq(id)),
    )
    .set(users::locked_until.eq(until))
    .execute(conn)
    .await
    .map(drop)
}

/// Records a successful login: stores its time and clears the failure count and any lock.
#[tracing::instrument(name = "repo.users.record_login", skip_all, fields(tenant.id = %tenant_id))]
pub async fn record_login(
    conn: &mut DbConnection,
    tenant_id: &str,
    id: &str,
    now: chrono::NaiveDateTime,
) -> QueryResult<()> {
    diesel::update(
        users::table
            .filter(users::tenant_id.eq(tenant_id))
            .filter(users::id.eq(id)),
    )
    .set((
        users::failed_login_count.eq(0),
        users::locked_until.eq(None::<chrono::NaiveDateTime>),
        users::last_login_at.eq(now),
    ))
    .execute(conn)
    .await
    .map(drop)
}
