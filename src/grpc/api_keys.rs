//! `ally.v1.ApiKeyService`: API keys of a tenant's users, and validating presented keys.

use std::sync::Arc;

use chrono::NaiveDateTime;
use diesel_async::AsyncConnection;
use tonic::{Request, Response, Status};

use super::convert::{from_timestamp, optional_timestamp, timestamp};
use super::resources::role_to_proto;
use super::{ApiError, context, paging, validate};
use crate::audit::{self, AuditEvent};
use crate::auth::{ApiKeyUsage, CallerCache, RequestContext, Role, api_key, secret_token};
use crate::db::Database;
use crate::db::retry::with_retry;
use crate::models::{self, ApiKey};
use crate::plans::Plan;
use crate::proto::ally::v1 as pb;
use crate::proto::ally::v1::api_key_service_server::ApiKeyService;
use crate::repo;
use crate::repo::api_keys::ApiKeyFilter;

/// Every scope a key may carry, as documented on `ApiKey.scopes`. Each is the `scope` of some
/// rule in [`crate::auth::policy::RULES`].
pub const SCOPES: &[&str] = &[
    "tenants.read",
    "users.read",
    "users.write",
    "api_keys.read",
    "api_keys.write",
    "audit.read",
    "chat.read",
    "chat.write",
    "configurations.read",
    "configurations.write",
    "legacy.read",
    "legacy.write",
];

/// The `request_ids.method` of CreateApiKey retries.
const CREATE_METHOD: &str = "CreateApiKey";

/// The ApiKeyService handlers.
#[derive(Clone)]
pub struct ApiKeyApi {
    database: Database,
    usage: Arc<ApiKeyUsage>,
    callers: CallerCache,
}

impl ApiKeyApi {
    /// `usage` is the counter the tenant layer also records key uses in, so that keys checked
    /// by ValidateApiKey count as used.
    pub fn new(database: Database, usage: Arc<ApiKeyUsage>) -> ApiKeyApi {
        ApiKeyApi {
            database,
            usage,
            callers: CallerCache::disabled(),
        }
    }

    /// Sets `callers`, the cache the tenant layer reads, so that RevokeApiKey removes revoked keys
    /// from it.
    pub fn with_caller_cache(mut self, callers: CallerCache) -> ApiKeyApi {
        self.callers = callers;
        self
    }

    /// Loads a key of the caller's tenant that the caller may see, or NOT_FOUND.
    async fn visible(&self, context: &RequestContext, id: &str) -> Result<ApiKey, ApiError> {
        let tenant_id = tenant_of(context)?;
        let id = validate::id("id", id)?;
        let mut conn = self.database.read().await?;
        repo::api_keys::find(&mut conn, tenant_id, &id)
            .await?
            .filter(|key| may_see(context, key))
            .ok_or(ApiError::NotFound {
                resource: "API key",
            })
    }

    /// Checks a presented key and returns the response for it, `valid` = false on any failure
    /// except a database error.
    async fn check_presented(
        &self,
        context: &RequestContext,
        presented: &str,
    ) -> Result<pb::ValidateApiKeyResponse, ApiError> {
        let invalid = pb::ValidateApiKeyResponse::default();
        let Some(parsed) = api_key::parse(presented) else {
            return Ok(invalid);
        };
        let mut conn = self.database.read().await?;
        let Some((key, owner)) = repo::api_keys::find_with_owner(&mut conn, parsed.key_id).await?
        else {
            return Ok(invalid);
        };
        if !secret_token::matches(parsed.secret, &key.key_hash) {
            return Ok(invalid);
        }
        // A tenant admin learns nothing about keys of other tenants, not even that they exist.
        if !context.is_operator() && context.tenant_id.as_deref() != Some(key.tenant_id.as_str()) {
            return Ok(invalid);
        }
        let expired = key.expires_at.is_some_and(|at| at <= models::now());
        if key.revoked_at.is_some() || expired || !owner.is_active {
            return Ok(invalid);
        }
        let Some(role) = Role::parse(&owner.role) else {
            return Ok(invalid);
        };
        let tenant = repo::tenants::find(&mut conn, &key.tenant_id).await?;
        let tenant_usable = tenant
            .is_some_and(|tenant| tenant.deleted_at.is_none() && tenant.status != "suspended");
        if !tenant_usable {
            return Ok(invalid);
        }

        self.usage.record(&key.tenant_id, &key.id);
        Ok(pb::ValidateApiKeyResponse {
            valid: true,
            tenant_id: key.tenant_id.clone(),
            user_id: key.user_id.clone(),
            api_key_id: key.id.clone(),
            role: role_to_proto(role).into(),
            scopes: stored_scopes(&key)?,
            expire_time: optional_timestamp(key.expires_at),
        })
    }
}

/// Returns the caller's tenant id. Every ApiKeyService RPC except ValidateApiKey is open to
/// tenant callers only, so a missing tenant means the policy table and this service disagree.
fn tenant_of(context: &RequestContext) -> Result<&str, ApiError> {
    context
        .tenant_id
        .as_deref()
        .ok_or_else(|| ApiError::internal("an API key RPC ran without a tenant caller"))
}

/// Returns whether the caller may see `key`: their own keys always, and every key of the
/// tenant as an admin or owner.
fn may_see(context: &RequestContext, key: &ApiKey) -> bool {
    context.has_role(Role::Admin) || context.user_id() == Some(key.user_id.as_str())
}

/// Parses the JSON array stored in `api_keys.scopes`.
fn stored_scopes(key: &ApiKey) -> Result<Vec<String>, ApiError> {
    serde_json::from_str(&key.scopes).map_err(ApiError::internal)
}

/// Converts a stored key to the API message, without its hash.
fn api_key_to_proto(key: &ApiKey) -> Result<pb::ApiKey, ApiError> {
    Ok(pb::ApiKey {
        id: key.id.clone(),
        name: key.name.clone(),
        key_id: key.key_id.clone(),
        user_id: key.user_id.clone(),
        scopes: stored_scopes(key)?,
        expire_time: optional_timestamp(key.expires_at),
        last_use_time: optional_timestamp(key.last_used_at),
        use_count: key.use_count,
        revoke_time: optional_timestamp(key.revoked_at),
        create_time: Some(timestamp(key.created_at)),
    })
}

/// Checks requested scope names and removes repeats, keeping the first occurrence of each.
fn validate_scopes(requested: &[String]) -> Result<Vec<String>, ApiError> {
    let mut scopes: Vec<String> = Vec::with_capacity(requested.len());
    for (index, scope) in requested.iter().enumerate() {
        if !SCOPES.contains(&scope.as_str()) {
            return Err(ApiError::invalid(
                format!("scopes[{index}]"),
                format!("`{scope}` is not a scope; use one of {}", SCOPES.join(", ")),
            ));
        }
        if !scopes.contains(scope) {
            scopes.push(scope.clone());
        }
    }
    Ok(scopes)
}

/// Returns the scopes of a key created by a caller limited to `caller_scopes`: the caller's
/// scopes when none are requested, else the requested ones if the caller has each of them.
/// A caller without a scope limit (`None`) may grant any scope.
fn narrow_scopes(
    requested: Vec<String>,
    caller_scopes: Option<&[String]>,
) -> Result<Vec<String>, ApiError> {
    let Some(caller_scopes) = caller_scopes else {
        return Ok(requested);
    };
    if requested.is_empty() {
        return Ok(caller_scopes.to_vec());
    }
    if let Some(extra) = requested
        .iter()
        .find(|scope| !caller_scopes.contains(scope))
    {
        return Err(ApiError::permission_denied(
            "SCOPE_NOT_GRANTED",
            format!(
                "the calling API key lacks the `{extra}` scope, so it cannot create a key with it"
            ),
        ));
    }
    Ok(requested)
}

/// Validated fields of a CreateApiKey request.
struct NewKey {
    name: String,
    scopes: Vec<String>,
    expires_at: Option<NaiveDateTime>,
    request_id: Option<String>,
}

fn validate_create(
    request: &pb::CreateApiKeyRequest,
    context: &RequestContext,
    now: NaiveDateTime,
) -> Result<NewKey, ApiError> {
    let name = validate::text("name", &request.name, 255)?;
    let scopes = validate_scopes(&request.scopes)?;
    let expires_at = match &request.expire_time {
        Some(value) => {
            let at = from_timestamp("expire_time", value)?;
            if at <= now {
                return Err(ApiError::invalid("expire_time", "must be in the future"));
            }
            Some(at)
        }
        None => None,
    };
    let request_id = validate::request_id("request_id", &request.request_id)?;
    let scopes = narrow_scopes(scopes, context.scopes.as_deref())?;
    Ok(NewKey {
        name,
        scopes,
        expires_at,
        request_id,
    })
}

/// Outcome of the CreateApiKey transaction.
enum Created {
    /// It stored the new key.
    New,
    /// An earlier call with the same request id created the key with this id.
    Earlier(String),
}

#[tonic::async_trait]
impl ApiKeyService for ApiKeyApi {
    async fn create_api_key(
        &self,
        request: Request<pb::CreateApiKeyRequest>,
    ) -> Result<Response<pb::CreateApiKeyResponse>, Status> {
        let context = context(&request)?;
        let tenant_id = tenant_of(&context)?;
        let user_id = context
            .user_id()
            .ok_or_else(|| ApiError::internal("CreateApiKey ran without a user caller"))?;
        let now = models::now();
        let new = validate_create(request.get_ref(), &context, now)?;

        let key = api_key::generate();
        let row = ApiKey {
            tenant_id: tenant_id.to_string(),
            id: models::new_id(),
            user_id: user_id.to_string(),
            name: new.name,
            key_id: key.key_id.clone(),
            key_hash: key.secret_hash.clone(),
            scopes: serde_json::to_string(&new.scopes).map_err(ApiError::internal)?,
            expires_at: new.expires_at,
            last_used_at: None,
            use_count: 0,
            revoked_at: None,
            created_at: now,
            updated_at: now,
        };
        let request_row = new.request_id.as_ref().map(|request_id| models::RequestId {
            scope: tenant_id.to_string(),
            method: CREATE_METHOD.into(),
            request_id: request_id.clone(),
            resource_id: row.id.clone(),
            created_at: now,
        });
        let entry = audit::entry(
            &context,
            tenant_id,
            AuditEvent::change("api_key.created")
                .resource("api_key", &row.id)
                .detail("key_id", row.key_id.as_str())
                .detail("name", row.name.as_str())
                .detail("scopes", new.scopes.clone()),
        );

        let created = with_retry(|| async {
            let mut conn = self.database.write().await?;
            conn.transaction(async |conn| {
                repo::tenants::lock_for_update(conn, tenant_id).await?;
                if let Some(request_id) = &new.request_id
                    && let Some(earlier) =
                        repo::request_ids::find(conn, tenant_id, CREATE_METHOD, request_id).await?
                {
                    return Ok(Created::Earlier(earlier));
                }

                let tenant = repo::tenants::find(conn, tenant_id)
                    .await?
                    .ok_or(ApiError::NotFound { resource: "tenant" })?;
                let plan = Plan::parse(&tenant.plan).unwrap_or(Plan::Free);
                if let Some(limit) = plan.quotas().api_keys {
                    let live = repo::api_keys::count_live(conn, tenant_id, now).await?;
                    if live >= limit {
                        return Err(ApiError::QuotaExceeded {
                            subject: "tenant:api_keys".into(),
                            description: format!(
                                "the {} plan allows {limit} API keys that are neither revoked \
                                 nor expired; revoke a key or upgrade the plan",
                                plan.as_str()
                            ),
                        });
                    }
                }

                repo::api_keys::insert(conn, &row).await?;
                if let Some(request_row) = &request_row {
                    repo::request_ids::insert(conn, request_row).await?;
                }
                repo::audit::insert(conn, &entry).await?;
                Ok(Created::New)
            })
            .await
        })
        .await?;

        let response = match created {
            Created::New => pb::CreateApiKeyResponse {
                api_key: Some(api_key_to_proto(&row)?),
                secret: key.full_key,
            },
            Created::Earlier(id) => {
                let earlier = self
                    .visible(&context, &id)
                    .await
                    .map_err(|error| match error {
                        // Another user's request id: report it as taken without showing that user's key.
                        ApiError::NotFound { .. } => ApiError::AlreadyExists {
                            resource: "request",
                            field: "request_id",
                        },
                        other => other,
                    })?;
                pb::CreateApiKeyResponse {
                    api_key: Some(api_key_to_proto(&earlier)?),
                    secret: String::new(),
                }
            }
        };
        Ok(Response::new(response))
    }

    async fn list_api_keys(
        &self,
        request: Request<pb::ListApiKeysRequest>,
    ) -> Result<Response<pb::ListApiKeysResponse>, Status> {
        let context = context(&request)?;
        let tenant_id = tenant_of(&context)?;
        let request = request.into_inner();
        let size = paging::page_size(request.page_size)?;
        let user_id = if context.has_role(Role::Admin) {
            None
        } else {
            Some(
                context
                    .user_id()
                    .ok_or_else(|| ApiError::internal("ListApiKeys ran without a user caller"))?
                    .to_string(),
            )
        };
        let filter = ApiKeyFilter {
            user_id,
            include_revoked: request.include_revoked,
        };
        let fingerprint = paging::fingerprint(&filter);
        let after: Option<(NaiveDateTime, String)> =
            paging::decode(&request.page_token, &fingerprint)?;

        let mut conn = self.database.read().await.map_err(ApiError::from)?;
        let mut rows = repo::api_keys::list(&mut conn, tenant_id, &filter, after, size + 1)
            .await
            .map_err(ApiError::from)?;
        let more = rows.len() as i64 > size;
        rows.truncate(size as usize);
        let next_page_token = match (more, rows.last()) {
            (true, Some(last)) => paging::encode(&fingerprint, (last.created_at, &last.id)),
            _ => String::new(),
        };
        let api_keys = rows
            .iter()
            .map(api_key_to_proto)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Response::new(pb::ListApiKeysResponse {
            api_keys,
            next_page_token,
        }))
    }

    async fn get_api_key(
        &self,
        request: Request<pb::GetApiKeyRequest>,
    ) -> Result<Response<pb::GetApiKeyResponse>, Status> {
        let context = context(&request)?;
        let key = self.visible(&context, &request.get_ref().id).await?;
        Ok(Response::new(pb::GetApiKeyResponse {
            api_key: Some(api_key_to_proto(&key)?),
        }))
    }

    async fn revoke_api_key(
        &self,
        request: Request<pb::RevokeApiKeyRequest>,
    ) -> Result<Response<pb::RevokeApiKeyResponse>, Status> {
        let context = context(&request)?;
        let tenant_id = tenant_of(&context)?;
        let id = validate::id("id", &request.get_ref().id)?;

        let key = with_retry(|| async {
            let mut conn = self.database.write().await?;
            conn.transaction(async |conn| {
                let not_found = || ApiError::NotFound {
                    resource: "API key",
                };
                let key = repo::api_keys::find(conn, tenant_id, &id)
                    .await?
                    .filter(|key| may_see(&context, key))
                    .ok_or_else(not_found)?;
                if key.revoked_at.is_some() {
                    return Ok(key);
                }
                let now = models::now();
                repo::api_keys::revoke(conn, tenant_id, &id, now).await?;
                let entry = audit::entry(
                    &context,
                    tenant_id,
                    AuditEvent::security("api_key.revoked")
                        .resource("api_key", &key.id)
                        .detail("key_id", key.key_id.as_str())
                        .detail("user_id", key.user_id.as_str()),
                );
                repo::audit::insert(conn, &entry).await?;
                repo::api_keys::find(conn, tenant_id, &id)
                    .await?
                    .ok_or_else(not_found)
            })
            .await
        })
        .await?;
        self.callers.forget_key(&key.key_id);
        Ok(Response::new(pb::RevokeApiKeyResponse {
            api_key: Some(api_key_to_proto(&key)?),
        }))
    }

    async fn validate_api_key(
        &self,
        request: Request<pb::ValidateApiKeyRequest>,
    ) -> Result<Response<pb::ValidateApiKeyResponse>, Status> {
        let context = context(&request)?;
        if request.get_ref().key.is_empty() {
            return Err(ApiError::invalid("key", "is required").into());
        }
        let response = self
            .check_presented(&context, &request.get_ref().key)
            .await?;
        Ok(Response::new(response))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::policy::RULES;

    fn strings(values: &[&str]) -> Vec<String> {
        values.iter().map(|value| value.to_string()).collect()
    }

    #[test]
    fn scopes_match_policy_table() {
        for rule in RULES.iter().filter(|rule| !rule.scope.is_empty()) {
            assert!(
                SCOPES.contains(&rule.scope),
                "{} needs `{}`, which is not a key scope",
                rule.method,
                rule.scope
            );
        }
        for scope in SCOPES {
            assert!(
                RULES.iter().any(|rule| rule.scope == *scope),
                "no RPC needs the `{scope}` scope"
            );
        }
    }

    #[test]
    fn unknown_scope_named_by_index() {
        let error = validate_scopes(&strings(&["users.read", "users.delete"])).unwrap_err();

        let status = Status::from(error);
        assert!(status.message().contains("scopes[1]"), "{status:?}");
    }

    #[test]
    fn repeated_scopes_removed() {
        let scopes = validate_scopes(&strings(&["audit.read", "users.read", "audit.read"]));

        assert_eq!(scopes.unwrap(), strings(&["audit.read", "users.read"]));
    }

    #[test]
    fn unscoped_caller_grants_any_scope() {
        let scopes = narrow_scopes(strings(&["users.write"]), None).unwrap();

        assert_eq!(scopes, strings(&["users.write"]));
    }

    #[test]
    fn scoped_caller_default_is_own_scopes() {
        let caller = strings(&["api_keys.write", "users.read"]);

        let scopes = narrow_scopes(Vec::new(), Some(&caller)).unwrap();

        assert_eq!(scopes, caller);
    }

    #[test]
    fn scoped_caller_may_narrow() {
        let caller = strings(&["api_keys.write", "users.read"]);

        let scopes = narrow_scopes(strings(&["users.read"]), Some(&caller)).unwrap();

        assert_eq!(scopes, strings(&["users.read"]));
    }

    #[test]
    fn scoped_caller_cannot_widen() {
        let caller = strings(&["api_keys.write", "users.read"]);

        let error = narrow_scopes(strings(&["users.read", "users.write"]), Some(&caller));

        let status = Status::from(error.unwrap_err());
        assert_eq!(status.code(), tonic::Code::PermissionDenied);
        assert!(status.message().contains("users.write"), "{status:?}");
    }
}
