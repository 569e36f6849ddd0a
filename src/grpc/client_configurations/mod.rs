//! `ally.v1.ClientConfigurationService`: legacy client configuration documents, imported as
//! text and migrated into configuration types.

pub mod operations;
mod resources;

use tonic::{Request, Response, Status};

use self::resources::{
    client_configuration_to_proto, format_from_proto, migration_to_proto, status_from_proto,
};
use super::{ApiError, context, paging, validate};
use crate::auth::{RequestContext, Role};
use crate::cache::ConfigCache;
use crate::db::Database;
use crate::proto::ally::v1 as pb;
use crate::proto::ally::v1::client_configuration_service_server::ClientConfigurationService;
use crate::repo;
use crate::repo::client_configurations::ClientConfigurationFilter;

/// The ClientConfigurationService handlers.
#[derive(Clone)]
pub struct ClientConfigurationApi {
    database: Database,
    /// The cache of active configuration versions that migrations invalidate.
    cache: ConfigCache,
}

impl ClientConfigurationApi {
    pub fn new(database: Database, cache: ConfigCache) -> ClientConfigurationApi {
        ClientConfigurationApi { database, cache }
    }
}

/// Returns the caller's tenant, which the policy table guarantees for this service.
fn tenant_of(context: &RequestContext) -> Result<&str, ApiError> {
    context.tenant_id.as_deref().ok_or_else(|| {
        ApiError::internal("a tenant-only call reached the handler without a tenant")
    })
}

/// Returns whether the caller may read original texts, which often contain secrets.
fn may_read_text(context: &RequestContext) -> bool {
    context.has_role(Role::Admin)
}

#[tonic::async_trait]
impl ClientConfigurationService for ClientConfigurationApi {
    async fn import_client_configuration(
        &self,
        request: Request<pb::ImportClientConfigurationRequest>,
    ) -> Result<Response<pb::ImportClientConfigurationResponse>, Status> {
        let context = context(&request)?;
        let tenant_id = tenant_of(&context)?;
        let request = request.into_inner();
        let format = pb::LegacyFormat::try_from(request.format)
            .map_err(|_| ApiError::invalid("format", "is not a legacy format"))?;
        let new = operations::validate_import(
            &request.client_id,
            &request.legacy_version,
            format_from_proto(format),
            request.document,
        )?;
        let imported = operations::import(&self.database, &context, tenant_id, &new).await?;
        Ok(Response::new(pb::ImportClientConfigurationResponse {
            client_configuration: Some(client_configuration_to_proto(
                &imported.row,
                may_read_text(&context),
            )),
            created: imported.created,
        }))
    }

    async fn migrate_client_configuration(
        &self,
        request: Request<pb::MigrateClientConfigurationRequest>,
    ) -> Result<Response<pb::MigrateClientConfigurationResponse>, Status> {
        let context = context(&request)?;
        let tenant_id = tenant_of(&context)?;
        let request = request.into_inner();
        let id = validate::id("id", &request.id)?;
        let migration = operations::migrate(
            &self.database,
            &self.cache,
            &context,
            tenant_id,
            &id,
            request.dry_run,
        )
        .await?;
        Ok(Response::new(migration_to_proto(
            &migration,
            may_read_text(&context),
        )))
    }

    async fn get_client_configuration(
        &self,
        request: Request<pb::GetClientConfigurationRequest>,
    ) -> Result<Response<pb::GetClientConfigurationResponse>, Status> {
        let context = context(&request)?;
        let tenant_id = tenant_of(&context)?;
        let id = validate::id("id", &request.get_ref().id)?;
        let mut conn = self.database.read().await.map_err(ApiError::from)?;
        let row = repo::client_configurations::find(&mut conn, tenant_id, &id)
            .await
            .map_err(ApiError::from)?
            .ok_or(ApiError::NotFound {
                resource: operations::RESOURCE,
            })?;
        Ok(Response::new(pb::GetClientConfigurationResponse {
            client_configuration: Some(client_configuration_to_proto(
                &row,
                may_read_text(&context),
            )),
        }))
    }

    async fn list_client_configurations(
        &self,
        request: Request<pb::ListClientConfigurationsRequest>,
    ) -> Result<Response<pb::ListClientConfigurationsResponse>, Status> {
        let context = context(&request)?;
        let tenant_id = tenant_of(&context)?;
        let request = request.into_inner();
        let size = paging::page_size(request.page_size)?;
        let status = pb::LegacyMigrationStatus::try_from(request.migration_status)
            .map_err(|_| ApiError::invalid("migration_status", "is not a migration status"))?;
        let filter = ClientConfigurationFilter {
            migration_status: status_from_proto(status).map(str::to_string),
            client_id: (!request.client_id.is_empty()).then(|| request.client_id.clone()),
        };
        let fingerprint = paging::fingerprint(&filter);
        let after: Option<(chrono::NaiveDateTime, String)> =
            paging::decode(&request.page_token, &fingerprint)?;

        let mut conn = self.database.read().await.map_err(ApiError::from)?;
        let mut rows =
            repo::client_configurations::list(&mut conn, tenant_id, &filter, after, size + 1)
                .await
                .map_err(ApiError::from)?;
        let more = rows.len() as i64 > size;
        rows.truncate(size as usize);
        let next_page_token = match (more, rows.last()) {
            (true, Some(last)) => paging::encode(&fingerprint, (last.created_at, last.id.clone())),
            _ => String::new(),
        };
        let with_text = may_read_text(&context);
        Ok(Response::new(pb::ListClientConfigurationsResponse {
            client_configurations: rows
                .iter()
                .map(|row| client_configuration_to_proto(row, with_text))
                .collect(),
            next_page_token,
        }))
    }
}
