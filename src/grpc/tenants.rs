//! `ally.v1.TenantService`: tenants and their subscriptions, managed by platform operators.

use chrono::{Datelike, NaiveDate};
use diesel_async::AsyncConnection;
use tonic::{Request, Response, Status};

use super::convert::{from_timestamp, struct_to_json};
use super::resources::{etag, plan_from_proto, plan_to_proto, tenant_to_proto, user_to_proto};
use super::{ApiError, context, paging, validate};
use crate::audit::{self, AuditEvent, Severity};
use crate::auth::{CallerCache, RequestContext, Role, api_key, password};
use crate::db::Database;
use crate::db::retry::with_retry;
use crate::models::{self, Tenant};
use crate::plans::Plan;
use crate::proto::ally::v1 as pb;
use crate::proto::ally::v1::tenant_service_server::TenantService;
use crate::repo;

/// Largest `settings` document, as JSON.
const MAX_SETTINGS_BYTES: usize = 64 * 1024;
/// Fields UpdateTenant may change.
const UPDATABLE_FIELDS: &[&str] = &["name", "domain", "subdomain", "settings"];

/// The TenantService handlers.
#[derive(Clone)]
pub struct TenantApi {
    database: Database,
    callers: CallerCache,
}

impl TenantApi {
    pub fn new(database: Database) -> TenantApi {
        TenantApi {
            database,
            callers: CallerCache::disabled(),
        }
    }

    /// Sets `callers`, the cache the tenant layer reads, so that every change to a tenant
    /// removes the tenant's row from it.
    pub fn with_caller_cache(mut self, callers: CallerCache) -> TenantApi {
        self.callers = callers;
        self
    }

    /// Loads a tenant the caller may see: operators see every tenant, including soft-deleted
    /// ones; tenant members see only their own. Anything else is NOT_FOUND.
    async fn visible(&self, context: &RequestContext, id: &str) -> Result<Tenant, ApiError> {
        let id = if id.is_empty() {
            context
                .tenant_id
                .clone()
                .ok_or_else(|| ApiError::invalid("id", "is required for operators"))?
        } else {
            validate::id("id", id)?
        };
        if !context.is_operator() && context.tenant_id.as_deref() != Some(id.as_str()) {
            return Err(ApiError::NotFound { resource: "tenant" });
        }
        let mut conn = self.database.read().await?;
        repo::tenants::find(&mut conn, &id)
            .await?
            .ok_or(ApiError::NotFound { resource: "tenant" })
    }

    /// Applies `change` to tenant `id` in a transaction that checks the etag, bumps the version
    /// and writes the audit entry, retrying on deadlocks.
    async fn mutate<F>(
        &self,
        context: &RequestContext,
        id: &str,
        expected_etag: &str,
        event: AuditEvent,
        change: F,
    ) -> Result<Tenant, ApiError>
    where
        F: Fn(&mut Tenant) -> Result<(), ApiError> + Sync,
    {
        let id = validate::id("id", id)?;
        let updated = with_retry(|| async {
            let mut conn = self.database.write().await?;
            conn.transaction(async |conn| {
                let mut tenant = repo::tenants::find(conn, &id)
                    .await?
                    .ok_or(ApiError::NotFound { resource: "tenant" })?;
                if !expected_etag.is_empty() && expected_etag != etag(tenant.version) {
                    return Err(ApiError::Aborted {
                        reason: "ETAG_MISMATCH",
                        message: "the tenant changed since it was read; read it again".into(),
                    });
                }
                let previous_version = tenant.version;
                change(&mut tenant)?;
                if let Some(field) = repo::tenants::taken_host(
                    conn,
                    &tenant.id,
                    tenant.domain.as_deref(),
                    tenant.subdomain.as_deref(),
                )
                .await?
                {
                    return Err(ApiError::AlreadyExists {
                        resource: "tenant",
                        field,
                    });
                }
                tenant.version += 1;
                tenant.updated_at = models::now();
                if !repo::tenants::replace(conn, &tenant, previous_version).await? {
                    return Err(ApiError::Aborted {
                        reason: "CONCURRENT_UPDATE",
                        message: "the tenant changed during the update; try again".into(),
                    });
                }
                let entry = audit::entry(
                    context,
                    &tenant.id,
                    event.clone().resource("tenant", &tenant.id),
                );
                repo::audit::insert(conn, &entry).await?;
                Ok(tenant)
            })
            .await
        })
        .await?;
        self.callers.forget_tenant(&updated.id);
        Ok(updated)
    }
}

fn reject_deleted(tenant: &Tenant) -> Result<(), ApiError> {
    match tenant.deleted_at {
        Some(_) => Err(ApiError::failed_precondition(
            "TENANT_DELETED",
            "the tenant is deleted; undelete it first",
        )),
        None => Ok(()),
    }
}

fn parse_plan(field: &str, value: i32) -> Result<pb::Plan, ApiError> {
    pb::Plan::try_from(value)
        .map_err(|_| ApiError::invalid(field, format!("{value} is not a plan")))
}

/// Validated fields of a CreateTenant request.
pub struct NewTenant {
    tenant: Tenant,
    owner_email: String,
    owner_name: String,
    owner_password: Option<secrecy::SecretString>,
    request_id: Option<String>,
}

fn validate_create(request: pb::CreateTenantRequest) -> Result<NewTenant, ApiError> {
    let name = validate::text("name", &request.name, 255)?;
    let domain = validate::domain("domain", &request.domain)?;
    let subdomain = validate::subdomain("subdomain", &request.subdomain)?;
    let plan = plan_from_proto(parse_plan("plan", request.plan)?);
    let settings = match &request.settings {
        Some(settings) => struct_to_json("settings", settings, MAX_SETTINGS_BYTES)?,
        None => "{}".to_string(),
    };
    let request_id = validate::request_id("request_id", &request.request_id)?;
    let owner = request
        .owner
        .ok_or_else(|| ApiError::invalid("owner", "is required"))?;
    let owner_email = validate::email("owner.email", &owner.email)?;
    let owner_name = validate::text("owner.display_name", &owner.display_name, 255)?;
    let owner_password = match owner.password.as_str() {
        "" => None,
        password => Some(validate::new_password("owner.password", password)?),
    };

    let now = models::now();
    Ok(NewTenant {
        tenant: Tenant {
            id: models::new_id(),
            name,
            domain,
            subdomain,
            plan: plan.as_str().to_string(),
            status: "active".into(),
            suspended_reason: None,
            settings,
            version: 1,
            subscription_expires_at: None,
            created_at: now,
            updated_at: now,
            deleted_at: None,
        },
        owner_email,
        owner_name,
        owner_password,
        request_id,
    })
}

/// A tenant created with its first owner.
pub struct CreatedTenant {
    pub tenant: Tenant,
    pub owner: models::User,
    /// The owner's API key, shown once.
    pub owner_api_key: String,
}

/// Checks a CreateTenant request and returns the rows to write.
pub fn validate_create_request(request: pb::CreateTenantRequest) -> Result<NewTenant, ApiError> {
    validate_create(request)
}

/// Inserts a tenant, its owner and the owner's API key with their audit entries in one
/// transaction.
pub async fn insert_with_owner(
    database: &Database,
    context: &RequestContext,
    new: NewTenant,
) -> Result<CreatedTenant, ApiError> {
    let password_hash = match new.owner_password.clone() {
        Some(password) => Some(password::hash(password).await.map_err(ApiError::internal)?),
        None => None,
    };
    let tenant = new.tenant;
    let now = tenant.created_at;
    let owner = models::User {
        tenant_id: tenant.id.clone(),
        id: models::new_id(),
        email: new.owner_email.clone(),
        display_name: new.owner_name.clone(),
        password_hash,
        role: Role::Owner.as_str().into(),
        is_active: true,
        email_verified_at: None,
        failed_login_count: 0,
        locked_until: None,
        last_login_at: None,
        created_at: now,
        updated_at: now,
    };
    let key = api_key::generate();
    let key_row = models::ApiKey {
        tenant_id: tenant.id.clone(),
        id: models::new_id(),
        user_id: owner.id.clone(),
        name: "owner key".into(),
        key_id: key.key_id.clone(),
        key_hash: key.secret_hash.clone(),
        scopes: "[]".into(),
        expires_at: None,
        last_used_at: None,
        use_count: 0,
        revoked_at: None,
        created_at: now,
        updated_at: now,
    };
    let entries = [
        audit::entry(
            context,
            &tenant.id,
            AuditEvent::change("tenant.created")
                .resource("tenant", &tenant.id)
                .detail("plan", tenant.plan.as_str()),
        ),
        audit::entry(
            context,
            &tenant.id,
            AuditEvent::change("user.created")
                .resource("user", &owner.id)
                .detail("role", "owner"),
        ),
        audit::entry(
            context,
            &tenant.id,
            AuditEvent::change("api_key.created")
                .resource("api_key", &key_row.id)
                .detail("key_id", key_row.key_id.as_str()),
        ),
    ];
    let request_row = new.request_id.as_ref().map(|request_id| models::RequestId {
        scope: repo::request_ids::PLATFORM_SCOPE.into(),
        method: "CreateTenant".into(),
        request_id: request_id.clone(),
        resource_id: tenant.id.clone(),
        created_at: now,
    });

    with_retry(|| async {
        let mut conn = database.write().await?;
        conn.transaction(async |conn| {
            if let Some(field) = repo::tenants::taken_host(
                conn,
                &tenant.id,
                tenant.domain.as_deref(),
                tenant.subdomain.as_deref(),
            )
            .await?
            {
                return Err(ApiError::AlreadyExists {
                    resource: "tenant",
                    field,
                });
            }
            repo::tenants::insert(conn, &tenant).await?;
            repo::users::insert(conn, &owner).await?;
            repo::api_keys::insert(conn, &key_row).await?;
            if let Some(row) = &request_row {
                repo::request_ids::insert(conn, row).await?;
            }
            for entry in &entries {
                repo::audit::insert(conn, entry).await?;
            }
            Ok::<_, ApiError>(())
        })
        .await
    })
    .await?;

    Ok(CreatedTenant {
        tenant,
        owner,
        owner_api_key: key.full_key,
    })
}

#[tonic::async_trait]
impl TenantService for TenantApi {
    async fn create_tenant(
        &self,
        request: Request<pb::CreateTenantRequest>,
    ) -> Result<Response<pb::CreateTenantResponse>, Status> {
        let context = context(&request)?;
        let new = validate_create(request.into_inner())?;

        if let Some(request_id) = &new.request_id {
            let mut conn = self.database.read().await.map_err(ApiError::from)?;
            let earlier = repo::request_ids::find(
                &mut conn,
                repo::request_ids::PLATFORM_SCOPE,
                "CreateTenant",
                request_id,
            )
            .await
            .map_err(ApiError::from)?;
            if let Some(tenant_id) = earlier {
                let tenant = repo::tenants::find(&mut conn, &tenant_id)
                    .await
                    .map_err(ApiError::from)?
                    .ok_or(ApiError::NotFound { resource: "tenant" })?;
                let owner = repo::users::find_by_email(&mut conn, &tenant_id, &new.owner_email)
                    .await
                    .map_err(ApiError::from)?;
                return Ok(Response::new(pb::CreateTenantResponse {
                    tenant: Some(tenant_to_proto(&tenant)),
                    owner: owner.as_ref().map(user_to_proto),
                    owner_api_key: String::new(),
                }));
            }
        }

        let created = insert_with_owner(&self.database, &context, new).await?;
        Ok(Response::new(pb::CreateTenantResponse {
            tenant: Some(tenant_to_proto(&created.tenant)),
            owner: Some(user_to_proto(&created.owner)),
            owner_api_key: created.owner_api_key,
        }))
    }

    async fn get_tenant(
        &self,
        request: Request<pb::GetTenantRequest>,
    ) -> Result<Response<pb::GetTenantResponse>, Status> {
        let context = context(&request)?;
        let tenant = self.visible(&context, &request.get_ref().id).await?;
        Ok(Response::new(pb::GetTenantResponse {
            tenant: Some(tenant_to_proto(&tenant)),
        }))
    }

    async fn get_tenant_by_domain(
        &self,
        request: Request<pb::GetTenantByDomainRequest>,
    ) -> Result<Response<pb::GetTenantByDomainResponse>, Status> {
        use pb::get_tenant_by_domain_request::Lookup;

        let (domain, subdomain) = match &request.get_ref().lookup {
            Some(Lookup::Domain(domain)) => (
                Some(
                    validate::domain("domain", domain)?
                        .ok_or_else(|| ApiError::invalid("domain", "is required"))?,
                ),
                None,
            ),
            Some(Lookup::Subdomain(subdomain)) => (
                None,
                Some(
                    validate::subdomain("subdomain", subdomain)?
                        .ok_or_else(|| ApiError::invalid("subdomain", "is required"))?,
                ),
            ),
            None => return Err(ApiError::invalid("lookup", "set domain or subdomain").into()),
        };
        let mut conn = self.database.read().await.map_err(ApiError::from)?;
        let tenant =
            repo::tenants::find_by_host(&mut conn, domain.as_deref(), subdomain.as_deref())
                .await
                .map_err(ApiError::from)?
                .ok_or(ApiError::NotFound { resource: "tenant" })?;
        Ok(Response::new(pb::GetTenantByDomainResponse {
            tenant: Some(tenant_to_proto(&tenant)),
        }))
    }

    async fn list_tenants(
        &self,
        request: Request<pb::ListTenantsRequest>,
    ) -> Result<Response<pb::ListTenantsResponse>, Status> {
        let request = request.into_inner();
        let size = paging::page_size(request.page_size)?;
        let status = match pb::TenantState::try_from(request.state) {
            Ok(pb::TenantState::Unspecified) => None,
            Ok(pb::TenantState::Active) => Some("active".to_string()),
            Ok(pb::TenantState::Suspended) => Some("suspended".to_string()),
            Err(_) => return Err(ApiError::invalid("state", "is not a tenant state").into()),
        };
        let filter = repo::tenants::TenantFilter {
            status,
            show_deleted: request.show_deleted,
        };
        let fingerprint = paging::fingerprint(&filter);
        let after: Option<(chrono::NaiveDateTime, String)> =
            paging::decode(&request.page_token, &fingerprint)?;

        let mut conn = self.database.read().await.map_err(ApiError::from)?;
        let mut rows = repo::tenants::list(&mut conn, &filter, after, size + 1)
            .await
            .map_err(ApiError::from)?;
        let more = rows.len() as i64 > size;
        rows.truncate(size as usize);
        let next_page_token = match (more, rows.last()) {
            (true, Some(last)) => paging::encode(&fingerprint, (last.created_at, last.id.clone())),
            _ => String::new(),
        };
        Ok(Response::new(pb::ListTenantsResponse {
            tenants: rows.iter().map(tenant_to_proto).collect(),
            next_page_token,
        }))
    }

    async fn update_tenant(
        &self,
        request: Request<pb::UpdateTenantRequest>,
    ) -> Result<Response<pb::UpdateTenantResponse>, Status> {
        let context = context(&request)?;
        let request = request.into_inner();
        let update = request
            .tenant
            .ok_or_else(|| ApiError::invalid("tenant", "is required"))?;
        let paths = request
            .update_mask
            .map(|mask| mask.paths)
            .unwrap_or_default();
        if paths.is_empty() {
            return Err(
                ApiError::invalid("update_mask", "name at least one field to change").into(),
            );
        }
        if let Some(unknown) = paths
            .iter()
            .find(|p| !UPDATABLE_FIELDS.contains(&p.as_str()))
        {
            return Err(ApiError::invalid(
                "update_mask",
                format!(
                    "`{unknown}` cannot be updated; use {}",
                    UPDATABLE_FIELDS.join(", ")
                ),
            )
            .into());
        }
        let has = |field: &str| paths.iter().any(|p| p == field);
        let name = has("name")
            .then(|| validate::text("tenant.name", &update.name, 255))
            .transpose()?;
        let domain = has("domain")
            .then(|| validate::domain("tenant.domain", &update.domain))
            .transpose()?;
        let subdomain = has("subdomain")
            .then(|| validate::subdomain("tenant.subdomain", &update.subdomain))
            .transpose()?;
        let settings = match (has("settings"), &update.settings) {
            (false, _) => None,
            (true, Some(s)) => Some(struct_to_json("tenant.settings", s, MAX_SETTINGS_BYTES)?),
            (true, None) => Some("{}".to_string()),
        };

        let event = AuditEvent::change("tenant.updated").detail("fields", paths.clone());
        let tenant = self
            .mutate(&context, &update.id, &update.etag, event, |tenant| {
                reject_deleted(tenant)?;
                if let Some(name) = &name {
                    tenant.name = name.clone();
                }
                if let Some(domain) = &domain {
                    tenant.domain = domain.clone();
                }
                if let Some(subdomain) = &subdomain {
                    tenant.subdomain = subdomain.clone();
                }
                if let Some(settings) = &settings {
                    tenant.settings = settings.clone();
                }
                Ok(())
            })
            .await?;
        Ok(Response::new(pb::UpdateTenantResponse {
            tenant: Some(tenant_to_proto(&tenant)),
        }))
    }

    async fn update_subscription(
        &self,
        request: Request<pb::UpdateSubscriptionRequest>,
    ) -> Result<Response<pb::UpdateSubscriptionResponse>, Status> {
        let context = context(&request)?;
        let request = request.into_inner();
        let plan = match parse_plan("plan", request.plan)? {
            pb::Plan::Unspecified => return Err(ApiError::invalid("plan", "is required").into()),
            plan => plan_from_proto(plan),
        };
        let expires = request
            .subscription_expire_time
            .as_ref()
            .map(|t| from_timestamp("subscription_expire_time", t))
            .transpose()?;

        let event = AuditEvent::change("tenant.subscription_updated").detail("plan", plan.as_str());
        let tenant = self
            .mutate(
                &context,
                &request.tenant_id,
                &request.etag,
                event,
                |tenant| {
                    reject_deleted(tenant)?;
                    tenant.plan = plan.as_str().to_string();
                    tenant.subscription_expires_at = expires;
                    Ok(())
                },
            )
            .await?;
        Ok(Response::new(pb::UpdateSubscriptionResponse {
            tenant: Some(tenant_to_proto(&tenant)),
        }))
    }

    async fn get_tenant_usage(
        &self,
        request: Request<pb::GetTenantUsageRequest>,
    ) -> Result<Response<pb::GetTenantUsageResponse>, Status> {
        let context = context(&request)?;
        let tenant = self.visible(&context, &request.get_ref().tenant_id).await?;
        let plan = Plan::parse(&tenant.plan).unwrap_or(Plan::Free);
        let quotas = plan.quotas();
        let now = models::now();
        let month_start = NaiveDate::from_ymd_opt(now.year(), now.month(), 1)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .unwrap_or(now);

        let mut conn = self.database.read().await.map_err(ApiError::from)?;
        let counts = repo::usage::counts(&mut conn, &tenant.id, month_start, now)
            .await
            .map_err(ApiError::from)?;
        let usage = |used: i64, limit: Option<i64>| pb::QuotaUsage {
            used,
            limit: limit.unwrap_or(-1),
        };
        Ok(Response::new(pb::GetTenantUsageResponse {
            usage: Some(pb::TenantUsage {
                tenant_id: tenant.id.clone(),
                plan: plan_to_proto(plan).into(),
                users: Some(usage(counts.active_users, quotas.users)),
                chat_sessions: Some(usage(counts.chat_sessions, quotas.chat_sessions)),
                messages_this_month: Some(usage(
                    counts.messages_this_month,
                    quotas.messages_per_month,
                )),
                api_keys: Some(usage(counts.live_api_keys, quotas.api_keys)),
                requests_per_second_limit: quotas.requests_per_second.unwrap_or(-1),
            }),
        }))
    }

    async fn suspend_tenant(
        &self,
        request: Request<pb::SuspendTenantRequest>,
    ) -> Result<Response<pb::SuspendTenantResponse>, Status> {
        let context = context(&request)?;
        let request = request.into_inner();
        let reason = validate::text("reason", &request.reason, 500)?;

        let event = AuditEvent::change("tenant.suspended")
            .severity(Severity::Critical)
            .detail("reason", reason.as_str());
        let tenant = self
            .mutate(&context, &request.id, "", event, |tenant| {
                reject_deleted(tenant)?;
                tenant.status = "suspended".into();
                tenant.suspended_reason = Some(reason.clone());
                Ok(())
            })
            .await?;
        Ok(Response::new(pb::SuspendTenantResponse {
            tenant: Some(tenant_to_proto(&tenant)),
        }))
    }

    async fn resume_tenant(
        &self,
        request: Request<pb::ResumeTenantRequest>,
    ) -> Result<Response<pb::ResumeTenantResponse>, Status> {
        let context = context(&request)?;
        let event = AuditEvent::change("tenant.resumed").severity(Severity::Warning);
        let tenant = self
            .mutate(&context, &request.get_ref().id, "", event, |tenant| {
                reject_deleted(tenant)?;
                tenant.status = "active".into();
                tenant.suspended_reason = None;
                Ok(())
            })
            .await?;
        Ok(Response::new(pb::ResumeTenantResponse {
            tenant: Some(tenant_to_proto(&tenant)),
        }))
    }

    async fn delete_tenant(
        &self,
        request: Request<pb::DeleteTenantRequest>,
    ) -> Result<Response<pb::DeleteTenantResponse>, Status> {
        let context = context(&request)?;
        let request = request.into_inner();
        let event = AuditEvent::change("tenant.deleted").severity(Severity::Critical);
        let tenant = self
            .mutate(&context, &request.id, &request.etag, event, |tenant| {
                if tenant.deleted_at.is_some() {
                    return Err(ApiError::NotFound { resource: "tenant" });
                }
                tenant.deleted_at = Some(models::now());
                Ok(())
            })
            .await?;
        Ok(Response::new(pb::DeleteTenantResponse {
            tenant: Some(tenant_to_proto(&tenant)),
        }))
    }

    async fn undelete_tenant(
        &self,
        request: Request<pb::UndeleteTenantRequest>,
    ) -> Result<Response<pb::UndeleteTenantResponse>, Status> {
        let context = context(&request)?;
        let event = AuditEvent::change("tenant.undeleted").severity(Severity::Warning);
        let tenant = self
            .mutate(&context, &request.get_ref().id, "", event, |tenant| {
                if tenant.deleted_at.is_none() {
                    return Err(ApiError::AlreadyExists {
                        resource: "tenant",
                        field: "id",
                    });
                }
                tenant.deleted_at = None;
                Ok(())
            })
            .await?;
        Ok(Response::new(pb::UndeleteTenantResponse {
            tenant: Some(tenant_to_proto(&tenant)),
        }))
    }
}
