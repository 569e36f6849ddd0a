//! Queries on `tenants`.

use chrono::NaiveDateTime;
use diesel::{
    BoolExpressionMethods, ExpressionMethods, OptionalExtension, QueryDsl, QueryResult,
    SelectableHelper,
};
use diesel_async::RunQueryDsl;

use crate::db::DbConnection;
use crate::models::Tenant;
use crate::schema::tenants;

/// Loads a tenant by id, including a soft-deleted one.
#[tracing::instrument(name = "repo.tenants.find", skip_all)]
pub async fn find(conn: &mut DbConnection, id: &str) -> QueryResult<Option<Tenant>> {
    tenants::table
        .filter(tenants::id.eq(id))
        .select(Tenant::as_select())
        // A lookup by a unique key needs no LIMIT. SQLite 3.54 (bundled by libsqlite3-sys)
        // prepares a cached statement again whenever a `LIMIT ?` bound to 0 or 1 is bound anew,
        // and diesel binds anew on every run. In a callgrind profile that cost about 150,000
        // instructions, a third of a cached read.
        .get_result(conn)
        .await
        .optional()
}

/// Locks the tenant's row until the transaction ends, so that transactions which count a
/// tenant's rows against a quota or an invariant (users, owners, API keys, configuration
/// versions) and then change them run one after another. Only MySQL needs the lock: SQLite runs
/// every write transaction on its single writer connection.
#[tracing::instrument(name = "repo.tenants.lock_for_update", skip_all, fields(tenant.id = %tenant_id))]
pub async fn lock_for_update(conn: &mut DbConnection, tenant_id: &str) -> QueryResult<()> {
    if let DbConnection::Mysql(mysql) = conn {
        tenants::table
            .filter(tenants::id.eq(tenant_id))
            .select(tenants::id)
            .for_update()
            .load::<String>(mysql)
            .await?;
    }
    Ok(())
}

/// Loads a tenant that is not soft-deleted by its custom domain or its subdomain.
#[tracing::instrument(name = "repo.tenants.find_by_host", skip_all)]
pub async fn find_by_host(
    conn: &mut DbConnection,
    domain: Option<&str>,
    subdomain: Option<&str>,
) -> QueryResult<Option<Tenant>> {
    let mut query = tenants::table
        .filter(tenants::deleted_at.is_null())
        .select(Tenant::as_select())
        .into_boxed();
    query = match (domain, subdomain) {
        (Some(domain), _) => query.filter(tenants::domain.eq(domain.to_string())),
        (None, Some(subdomain)) => query.filter(tenants::subdomain.eq(subdomain.to_string())),
        (None, None) => return Ok(None),
    };
    query.first(conn).await.optional()
}

/// Returns which of `domain` and `subdomain` another tenant already uses, soft-deleted
/// tenants included: `Some("domain")`, `Some("subdomain")` or `None`.
#[tracing::instrument(name = "repo.tenants.taken_host", skip_all)]
pub async fn taken_host(
    conn: &mut DbConnection,
    except_id: &str,
    domain: Option<&str>,
    subdomain: Option<&str>,
) -> QueryResult<Option<&'static str>> {
    if let Some(domain) = domain {
        let count: i64 = tenants::table
            .filter(tenants::domain.eq(domain).and(tenants::id.ne(except_id)))
            .count()
            .get_result(conn)
            .await?;
        if count > 0 {
            return Ok(Some("domain"));
        }
    }
    if let Some(subdomain) = subdomain {
        let count: i64 = tenants::table
            .filter(
                tenants::subdomain
                    .eq(subdomain)
                    .and(tenants::id.ne(except_id)),
            )
            .count()
            .get_result(conn)
            .await?;
        if count > 0 {
            return Ok(Some("subdomain"));
        }
    }
    Ok(None)
}

#[tracing::instrument(name = "repo.tenants.insert", skip_all)]
pub async fn insert(conn: &mut DbConnection, tenant: &Tenant) -> QueryResult<()> {
    diesel::insert_into(tenants::table)
        .values(tenant)
        .execute(conn)
        .await
        .map(drop)
}

/// Writes every column of `tenant` over the stored row if its version is still
/// `expected_version`. Returns false when someone else changed the row first.
#[tracing::instrument(name = "repo.tenants.replace", skip_all)]
pub async fn replace(
    conn: &mut DbConnection,
    tenant: &Tenant,
    expected_version: i64,
) -> QueryResult<bool> {
    let changed = diesel::update(
        tenants::table.filter(
            tenants::id
                .eq(&tenant.id)
                .and(tenants::version.eq(expected_version)),
        ),
    )
    .set((
        tenants::name.eq(&tenant.name),
        tenants::domain.eq(&tenant.domain),
        tenants::subdomain.eq(&tenant.subdomain),
        tenants::plan.eq(&tenant.plan),
        tenants::status.eq(&tenant.status),
        tenants::suspended_reason.eq(&tenant.suspended_reason),
        tenants::settings.eq(&tenant.settings),
        tenants::version.eq(tenant.version),
        tenants::subscription_expires_at.eq(tenant.subscription_expires_at),
        tenants::updated_at.eq(tenant.updated_at),
        tenants::deleted_at.eq(tenant.deleted_at),
    ))
    .execute(conn)
    .await?;
    Ok(changed == 1)
}

/// Filters of a tenant listing.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct TenantFilter {
    pub status: Option<String>,
    pub show_deleted: bool,
}

/// Lists tenants oldest first, `limit` rows after the cursor `(created_at, id)`.
#[tracing::instrument(name = "repo.tenants.list", skip_all)]
pub async fn list(
    conn: &mut DbConnection,
    filter: &TenantFilter,
    after: Option<(NaiveDateTime, String)>,
    limit: i64,
) -> QueryResult<Vec<Tenant>> {
    let mut query = tenants::table.select(Tenant::as_select()).into_boxed();
    if let Some(status) = &filter.status {
        query = query.filter(tenants::status.eq(status.clone()));
    }
    if !filter.show_deleted {
        query = query.filter(tenants::deleted_at.is_null());
    }
    if let Some((created_at, id)) = after {
        query = query.filter(
            tenants::created_at
                .gt(created_at)
                .or(tenants::created_at.eq(created_at).and(tenants::id.gt(id))),
        );
    }
    query
        .order((tenants::created_at.asc(), tenants::id.asc()))
        .limit(limit)
        .load(conn)
        .await
}
