//! UpdateUserRole, DeactivateUser and ReactivateUser: the changes that count a tenant's active
//! users or owners. Each runs after [`repo::tenants::lock_for_update`] in its transaction.

use diesel_async::AsyncConnection;

use super::rules;
use super::{Caller, UserApi, check_user_quota, load_user, stored_role};
use crate::audit::{self, AuditEvent, Severity};
use crate::auth::{RequestContext, Role};
use crate::db::retry::with_retry;
use crate::grpc::resources::user_to_proto;
use crate::grpc::{ApiError, validate};
use crate::models;
use crate::proto::ally::v1 as pb;
use crate::repo;

impl UserApi {
    pub(super) async fn change_role(
        &self,
        context: &RequestContext,
        request: pb::UpdateUserRoleRequest,
    ) -> Result<pb::UpdateUserRoleResponse, ApiError> {
        let caller = Caller::of(context)?;
        let id = validate::id("id", &request.id)?;
        let role = rules::parse_role("role", request.role)?
            .ok_or_else(|| ApiError::invalid("role", "is required"))?;
        rules::check_may_grant(caller.role, role)?;

        let updated = with_retry(|| async {
            let mut conn = self.database.write().await?;
            conn.transaction(async |conn| {
                repo::tenants::lock_for_update(conn, &caller.tenant_id).await?;
                let mut user = load_user(conn, &caller.tenant_id, &id).await?;
                let old_role = stored_role(&user)?;
                rules::check_may_manage(caller.role, old_role)?;
                if old_role == role {
                    return Ok(user);
                }
                if old_role == Role::Owner && user.is_active {
                    let owners = repo::users::count_active_owners(conn, &caller.tenant_id).await?;
                    if rules::removes_last_owner(old_role, user.is_active, false, owners) {
                        return Err(rules::last_owner_error());
                    }
                }
                let now = models::now();
                repo::users::set_role(conn, &caller.tenant_id, &user.id, role.as_str(), now)
                    .await?;
                let entry = audit::entry(
                    context,
                    &caller.tenant_id,
                    AuditEvent::change("user.role_changed")
                        .severity(Severity::Warning)
                        .resource("user", &user.id)
                        .detail("old_role", old_role.as_str())
                        .detail("new_role", role.as_str()),
                );
                repo::audit::insert(conn, &entry).await?;
                user.role = role.as_str().into();
                user.updated_at = now;
                Ok(user)
            })
            .await
        })
        .await?;
        self.callers.forget_all_keys();

        Ok(pb::UpdateUserRoleResponse {
            user: Some(user_to_proto(&updated)),
        })
    }

    pub(super) async fn deactivate(
        &self,
        context: &RequestContext,
        request: pb::DeactivateUserRequest,
    ) -> Result<pb::DeactivateUserResponse, ApiError> {
        let caller = Caller::of(context)?;
        let id = validate::id("id", &request.id)?;

        let updated = with_retry(|| async {
            let mut conn = self.database.write().await?;
            conn.transaction(async |conn| {
                repo::tenants::lock_for_update(conn, &caller.tenant_id).await?;
                let mut user = load_user(conn, &caller.tenant_id, &id).await?;
                let role = stored_role(&user)?;
                rules::check_may_manage(caller.role, role)?;
                if !user.is_active {
                    return Ok(user);
                }
                if role == Role::Owner {
                    let owners = repo::users::count_active_owners(conn, &caller.tenant_id).await?;
                    if rules::removes_last_owner(role, true, false, owners) {
                        return Err(rules::last_owner_error());
                    }
                }
                let now = models::now();
                repo::users::set_active(conn, &caller.tenant_id, &user.id, false, now).await?;
                let revoked =
                    repo::users::revoke_refresh_tokens(conn, &caller.tenant_id, &user.id, now)
                        .await?;
                let entry = audit::entry(
                    context,
                    &caller.tenant_id,
                    AuditEvent::change("user.deactivated")
                        .severity(Severity::Warning)
                        .resource("user", &user.id)
                        .detail("revoked_refresh_tokens", revoked),
                );
                repo::audit::insert(conn, &entry).await?;
                user.is_active = false;
                user.updated_at = now;
                Ok(user)
            })
            .await
        })
        .await?;
        self.callers.forget_all_keys();

        Ok(pb::DeactivateUserResponse {
            user: Some(user_to_proto(&updated)),
        })
    }

    pub(super) async fn reactivate(
        &self,
        context: &RequestContext,
        request: pb::ReactivateUserRequest,
    ) -> Result<pb::ReactivateUserResponse, ApiError> {
        let caller = Caller::of(context)?;
        let id = validate::id("id", &request.id)?;

        let updated = with_retry(|| async {
            let mut conn = self.database.write().await?;
            conn.transaction(async |conn| {
                repo::tenants::lock_for_update(conn, &caller.tenant_id).await?;
                let mut user = load_user(conn, &caller.tenant_id, &id).await?;
                rules::check_may_manage(caller.role, stored_role(&user)?)?;
                if user.is_active {
                    return Ok::<_, ApiError>(user);
                }
                check_user_quota(conn, &caller.tenant_id).await?;
                let now = models::now();
                repo::users::set_active(conn, &caller.tenant_id, &user.id, true, now).await?;
                let entry = audit::entry(
                    context,
                    &caller.tenant_id,
                    AuditEvent::change("user.reactivated").resource("user", &user.id),
                );
                repo::audit::insert(conn, &entry).await?;
                user.is_active = true;
                user.updated_at = now;
                Ok(user)
            })
            .await
        })
        .await?;

        Ok(pb::ReactivateUserResponse {
            user: Some(user_to_proto(&updated)),
        })
    }
}
