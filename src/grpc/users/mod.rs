//! `ally.v1.UserService`: the user accounts of the caller's tenant.
//!
//! The policy table admits each RPC by the caller's least role. The handlers add the checks that
//! depend on the target user (see [`rules`]), and every query is limited to the tenant of the
//! caller's credential, so another tenant's user id is NOT_FOUND.

mod accounts;
mod membership;
mod password;
mod rules;
mod verification;

use std::time::Duration;

use tonic::{Request, Response, Status};

use super::{ApiError, context, validate};
use crate::auth::{CallerCache, Principal, RequestContext, Role};
use crate::config::AuthSettings;
use crate::db::{Database, DbConnection};
use crate::models::User;
use crate::plans::Plan;
use crate::proto::ally::v1 as pb;
use crate::proto::ally::v1::user_service_server::UserService;
use crate::repo;

/// The UserService handlers.
#[derive(Clone)]
pub struct UserApi {
    database: Database,
    /// Failed password checks in a row after which an account is locked, shared with Login.
    max_failed_logins: u32,
    /// How long a locked account stays locked.
    lockout: Duration,
    /// Lifetime of email verification tokens.
    verification_ttl: Duration,
    /// Verified API keys with their owners' roles, emptied when a role or active state changes.
    callers: CallerCache,
}

impl UserApi {
    pub fn new(database: Database, auth: &AuthSettings) -> UserApi {
        UserApi {
            database,
            max_failed_logins: auth.max_failed_logins,
            lockout: auth.lockout,
            verification_ttl: auth.email_verification_ttl,
            callers: CallerCache::disabled(),
        }
    }

    /// Sets `callers`, the cache the tenant layer reads. UpdateUserRole and DeactivateUser
    /// remove its API keys, because cached keys carry their owner's role.
    pub fn with_caller_cache(mut self, callers: CallerCache) -> UserApi {
        self.callers = callers;
        self
    }
}

/// The caller of a UserService RPC: a tenant user or one of their API keys, because the policy
/// table admits no one else.
struct Caller {
    tenant_id: String,
    user_id: String,
    role: Role,
    /// Whether the call carries an API key rather than an access token.
    api_key: bool,
}

impl Caller {
    fn of(context: &RequestContext) -> Result<Caller, ApiError> {
        let (Some(tenant_id), Some(user_id), Some(role)) =
            (&context.tenant_id, context.user_id(), context.role)
        else {
            return Err(ApiError::internal(
                "the tenant layer admitted a UserService call without a tenant user",
            ));
        };
        Ok(Caller {
            tenant_id: tenant_id.clone(),
            user_id: user_id.to_string(),
            role,
            api_key: matches!(context.principal, Some(Principal::ApiKey { .. })),
        })
    }

    /// Returns the user id that the request field `field` names, or the caller's own id when
    /// the field is empty.
    fn user_id_or_self(&self, field: &str, id: &str) -> Result<String, ApiError> {
        if id.is_empty() {
            Ok(self.user_id.clone())
        } else {
            validate::id(field, id)
        }
    }
}

fn user_not_found() -> ApiError {
    ApiError::NotFound { resource: "user" }
}

/// Loads a user of the tenant, or fails with NOT_FOUND.
async fn load_user(conn: &mut DbConnection, tenant_id: &str, id: &str) -> Result<User, ApiError> {
    repo::users::find(conn, tenant_id, id)
        .await?
        .ok_or_else(user_not_found)
}

/// Returns the role stored for a user.
fn stored_role(user: &User) -> Result<Role, ApiError> {
    Role::parse(&user.role).ok_or_else(|| {
        ApiError::internal(format!(
            "user {} has the unknown stored role {:?}",
            user.id, user.role
        ))
    })
}

/// Fails with RESOURCE_EXHAUSTED when the tenant already has as many active users as its plan
/// allows. Call it after [`repo::tenants::lock_for_update`] in the transaction that adds the
/// active user, so that concurrent calls cannot both pass.
async fn check_user_quota(conn: &mut DbConnection, tenant_id: &str) -> Result<(), ApiError> {
    let tenant = repo::tenants::find(conn, tenant_id)
        .await?
        .ok_or(ApiError::NotFound { resource: "tenant" })?;
    let plan = Plan::parse(&tenant.plan).unwrap_or(Plan::Free);
    let Some(limit) = plan.quotas().users else {
        return Ok(());
    };
    let active = repo::users::count_active(conn, tenant_id).await?;
    if active >= limit {
        return Err(ApiError::QuotaExceeded {
            subject: "users".into(),
            description: format!(
                "the {} plan allows {limit} active users and the tenant has {active}; \
                 deactivate a user or upgrade the plan",
                plan.as_str()
            ),
        });
    }
    Ok(())
}

#[tonic::async_trait]
impl UserService for UserApi {
    async fn create_user(
        &self,
        request: Request<pb::CreateUserRequest>,
    ) -> Result<Response<pb::CreateUserResponse>, Status> {
        let context = context(&request)?;
        Ok(Response::new(
            self.create(&context, request.into_inner()).await?,
        ))
    }

    async fn get_user(
        &self,
        request: Request<pb::GetUserRequest>,
    ) -> Result<Response<pb::GetUserResponse>, Status> {
        let context = context(&request)?;
        Ok(Response::new(
            self.get(&context, request.into_inner()).await?,
        ))
    }

    async fn list_users(
        &self,
        request: Request<pb::ListUsersRequest>,
    ) -> Result<Response<pb::ListUsersResponse>, Status> {
        let context = context(&request)?;
        Ok(Response::new(
            self.list(&context, request.into_inner()).await?,
        ))
    }

    async fn update_user(
        &self,
        request: Request<pb::UpdateUserRequest>,
    ) -> Result<Response<pb::UpdateUserResponse>, Status> {
        let context = context(&request)?;
        Ok(Response::new(
            self.update_profile(&context, request.into_inner()).await?,
        ))
    }

    async fn update_user_role(
        &self,
        request: Request<pb::UpdateUserRoleRequest>,
    ) -> Result<Response<pb::UpdateUserRoleResponse>, Status> {
        let context = context(&request)?;
        Ok(Response::new(
            self.change_role(&context, request.into_inner()).await?,
        ))
    }

    async fn deactivate_user(
        &self,
        request: Request<pb::DeactivateUserRequest>,
    ) -> Result<Response<pb::DeactivateUserResponse>, Status> {
        let context = context(&request)?;
        Ok(Response::new(
            self.deactivate(&context, request.into_inner()).await?,
        ))
    }

    async fn reactivate_user(
        &self,
        request: Request<pb::ReactivateUserRequest>,
    ) -> Result<Response<pb::ReactivateUserResponse>, Status> {
        let context = context(&request)?;
        Ok(Response::new(
            self.reactivate(&context, request.into_inner()).await?,
        ))
    }

    async fn change_password(
        &self,
        request: Request<pb::ChangePasswordRequest>,
    ) -> Result<Response<pb::ChangePasswordResponse>, Status> {
        let context = context(&request)?;
        Ok(Response::new(
            self.set_password(&context, request.into_inner()).await?,
        ))
    }

    async fn send_verification(
        &self,
        request: Request<pb::SendVerificationRequest>,
    ) -> Result<Response<pb::SendVerificationResponse>, Status> {
        let context = context(&request)?;
        Ok(Response::new(
            self.issue_verification(&context, request.into_inner())
                .await?,
        ))
    }

    async fn verify_email(
        &self,
        request: Request<pb::VerifyEmailRequest>,
    ) -> Result<Response<pb::VerifyEmailResponse>, Status> {
        let context = context(&request)?;
        Ok(Response::new(
            self.verify(&context, request.into_inner()).await?,
        ))
    }
}
