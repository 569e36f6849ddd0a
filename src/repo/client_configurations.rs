//! Queries on `client_configurations`: imported legacy configuration documents.

use chrono::NaiveDateTime;
use diesel::{
    BoolExpressionMethods, ExpressionMethods, OptionalExtension, QueryDsl, QueryResult,
    SelectableHelper,
};
use diesel_async::RunQueryDsl;

use crate::db::DbConnection;
use crate::models::ClientConfiguration;
use crate::schema::client_configurations;

/// Loads one document of a tenant by id.
#[tracing::instrument(name = "repo.client_configurations.find", skip_all, fields(tenant.id = %tenant_id))]
pub async fn find(
    conn: &mut DbConnection,
    tenant_id: &str,
    id: &str,
) -> QueryResult<Option<ClientConfiguration>> {
    client_configurations::table
        .filter(client_configurations::tenant_id.eq(tenant_id))
        .filter(client_configurations::id.eq(id))
        .select(ClientConfiguration::as_select())
        .first(conn)
        .await
        .optional()
}

/// Loads the document of a tenant with this client id and legacy version.
#[tracing::instrument(name = "repo.client_configurations.find_by_version", skip_all, fields(tenant.id = %tenant_id))]
pub async fn find_by_version(
    conn: &mut DbConnection,
    tenant_id: &str,
    client_id: &str,
    legacy_version: &str,
) -> QueryResult<Option<ClientConfiguration>> {
    client_configurations::table
        .filter(client_configurations::tenant_id.eq(tenant_id))
        .filter(client_configurations::client_id.eq(client_id))
        .filter(client_configurations::legacy_version.eq(legacy_version))
        .select(ClientConfiguration::as_select())
        .first(conn)
        .await
        .optional()
}

#[tracing::instrument(name = "repo.client_configurations.insert", skip_all)]
pub async fn insert(conn: &mut DbConnection, row: &ClientConfiguration) -> QueryResult<()> {
    diesel::insert_into(client_configurations::table)
        .values(row)
        .execute(conn)
        .await
        .map(drop)
}

/// Writes a document's migration state: `migration_status`, `migration_error`, `migrated_at`
/// and `updated_at`. The original text is never written after the import.
#[tracing::instrument(name = "repo.client_configurations.set_migration_state", skip_all)]
pub async fn set_migration_state(
    conn: &mut DbConnection,
    row: &ClientConfiguration,
) -> QueryResult<()> {
    diesel::update(
        client_configurations::table
            .filter(client_configurations::tenant_id.eq(&row.tenant_id))
            .filter(client_configurations::id.eq(&row.id)),
    )
    .set((
        client_configurations::migration_status.eq(&row.migration_status),
        client_configurations::migration_error.eq(&row.migration_error),
        client_configurations::migrated_at.eq(row.migrated_at),
        client_configurations::updated_at.eq(row.updated_at),
    ))
    .execute(conn)
    .await
    .map(drop)
}

/// Filters of a document listing.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct ClientConfigurationFilter {
    pub migration_status: Option<String>,
    pub client_id: Option<String>,
}

/// Lists a tenant's documents oldest first, `limit` rows after the cursor `(created_at, id)`.
#[tracing::instrument(name = "repo.client_configurations.list", skip_all, fields(tenant.id = %tenant_id))]
pub async fn list(
    conn: &mut DbConnection,
    tenant_id: &str,
    filter: &ClientConfigurationFilter,
    after: Option<(NaiveDateTime, String)>,
    limit: i64,
) -> QueryResult<Vec<ClientConfiguration>> {
    let mut query = client_configurations::table
        .filter(client_configurations::tenant_id.eq(tenant_id.to_string()))
        .select(ClientConfiguration::as_select())
        .into_boxed();
    if let Some(status) = &filter.migration_status {
        query = query.filter(client_configurations::migration_status.eq(status.clone()));
    }
    if let Some(client_id) = &filter.client_id {
        query = query.filter(client_configurations::client_id.eq(client_id.clone()));
    }
    if let Some((created_at, id)) = after {
        query = query.filter(
            client_configurations::created_at
                .gt(created_at)
                .or(client_configurations::created_at
                    .eq(created_at)
                    .and(client_configurations::id.gt(id))),
        );
    }
    query
        .order((
            client_configurations::created_at.asc(),
            client_configurations::id.asc(),
        ))
        .limit(limit)
        .load(conn)
        .await
}
