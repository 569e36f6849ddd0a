//! Versioned configuration documents: every write adds a row with the next version number and
//! makes it the only active row of its (tenant, type).

use chrono::NaiveDateTime;
use diesel::dsl::max;
use diesel::{ExpressionMethods, OptionalExtension, QueryDsl, QueryResult, SelectableHelper};
use diesel_async::RunQueryDsl;

use crate::db::DbConnection;
use crate::models::{self, Configuration};
use crate::schema::configurations;

/// Loads the active version of a configuration type, unless the type is deleted.
#[tracing::instrument(name = "repo.configurations.active", skip_all, fields(tenant.id = %tenant_id))]
pub async fn active(
    conn: &mut DbConnection,
    tenant_id: &str,
    config_type: &str,
) -> QueryResult<Option<Configuration>> {
    configurations::table
        .filter(configurations::tenant_id.eq(tenant_id))
        .filter(configurations::config_type.eq(config_type))
        .filter(configurations::is_active.eq(true))
        .filter(configurations::deleted_at.is_null())
        .select(Configuration::as_select())
        .first(conn)
        .await
        .optional()
}

/// Loads one version of a configuration type, deleted or not.
#[tracing::instrument(name = "repo.configurations.version", skip_all, fields(tenant.id = %tenant_id))]
pub async fn version(
    conn: &mut DbConnection,
    tenant_id: &str,
    config_type: &str,
    version: i32,
) -> QueryResult<Option<Configuration>> {
    configurations::table
        .filter(configurations::tenant_id.eq(tenant_id))
        .filter(configurations::config_type.eq(config_type))
        .filter(configurations::version.eq(version))
        .select(Configuration::as_select())
        .first(conn)
        .await
        .optional()
}

/// The contents of a new configuration version.
#[derive(Clone, Debug)]
pub struct NewVersion<'a> {
    pub tenant_id: &'a str,
    pub config_type: &'a str,
    /// A JSON object, already validated.
    pub value: &'a str,
    pub description: Option<&'a str>,
    /// Id of the user or API key that wrote it.
    pub created_by: Option<&'a str>,
    pub now: NaiveDateTime,
}

/// Adds the next version of a configuration type and makes it the only active one. Call it
/// inside a transaction after [`super::tenants::lock_for_update`], so that two writers cannot
/// pick the same version number.
#[tracing::instrument(name = "repo.configurations.append_version", skip_all)]
pub async fn append_version(
    conn: &mut DbConnection,
    new: &NewVersion<'_>,
) -> QueryResult<Configuration> {
    let latest: Option<i32> = configurations::table
        .filter(configurations::tenant_id.eq(new.tenant_id))
        .filter(configurations::config_type.eq(new.config_type))
        .select(max(configurations::version))
        .first(conn)
        .await?;
    diesel::update(
        configurations::table
            .filter(configurations::tenant_id.eq(new.tenant_id))
            .filter(configurations::config_type.eq(new.config_type))
            .filter(configurations::is_active.eq(true)),
    )
    .set((
        configurations::is_active.eq(false),
        configurations::updated_at.eq(new.now),
    ))
    .execute(conn)
    .await?;

    let row = Configuration {
        tenant_id: new.tenant_id.to_string(),
        id: models::new_id(),
        config_type: new.config_type.to_string(),
        value: new.value.to_string(),
        version: latest.unwrap_or(0) + 1,
        is_active: true,
        description: new.description.map(str::to_string),
        created_by: new.created_by.map(str::to_string),
        created_at: new.now,
        updated_at: new.now,
        deleted_at: None,
    };
    diesel::insert_into(configurations::table)
        .values(&row)
        .execute(conn)
        .await?;
    Ok(row)
}

/// Lists the versions of a configuration type newest first, `limit` rows below
/// `before_version`.
#[tracing::instrument(name = "repo.configurations.revisions", skip_all, fields(tenant.id = %tenant_id))]
pub async fn revisions(
    conn: &mut DbConnection,
    tenant_id: &str,
    config_type: &str,
    before_version: Option<i32>,
    limit: i64,
) -> QueryResult<Vec<Configuration>> {
    let mut query = configurations::table
        .filter(configurations::tenant_id.eq(tenant_id))
        .filter(configurations::config_type.eq(config_type))
        .select(Configuration::as_select())
        .into_boxed();
    if let Some(before) = before_version {
        query = query.filter(configurations::version.lt(before));
    }
    query
        .order(configurations::version.desc())
        .limit(limit)
        .load(conn)
        .await
}

/// Marks the active version of a configuration type deleted, unless it already is. Returns
/// whether a row changed.
#[tracing::instrument(name = "repo.configurations.mark_deleted", skip_all, fields(tenant.id = %tenant_id))]
pub async fn mark_deleted(
    conn: &mut DbConnection,
    tenant_id: &str,
    config_type: &str,
    now: NaiveDateTime,
) -> QueryResult<bool> {
    let changed = diesel::update(
        configurations::table
            .filter(configurations::tenant_id.eq(tenant_id))
            .filter(configurations::config_type.eq(config_type))
            .filter(configurations::is_active.eq(true))
            .filter(configurations::deleted_at.is_null()),
    )
    .set((
        configurations::deleted_at.eq(now),
        configurations::updated_at.eq(now),
    ))
    .execute(conn)
    .await?;
    Ok(changed > 0)
}
