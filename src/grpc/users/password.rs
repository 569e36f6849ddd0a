//! ChangePassword. Wrong current passwords count toward the same lockout as failed logins.

use chrono::TimeDelta;
use diesel_async::AsyncConnection;
use secrecy::SecretString;
use tracing::info;

use super::rules;
use super::{Caller, UserApi, load_user, stored_role};
use crate::audit::{self, AuditEvent, Severity};
use crate::auth::{RequestContext, password};
use crate::db::retry::with_retry;
use crate::grpc::{ApiError, validate};
use crate::models::{self, User};
use crate::proto::ally::v1 as pb;
use crate::repo;

/// Builds the error for a wrong current password. A locked account gets the same error, so that
/// the response does not tell whether a guess was right.
fn wrong_current_password() -> ApiError {
    ApiError::invalid(
        "current_password",
        "is not the user's current password, or the account is locked after repeated failures",
    )
}

impl UserApi {
    pub(super) async fn set_password(
        &self,
        context: &RequestContext,
        request: pb::ChangePasswordRequest,
    ) -> Result<pb::ChangePasswordResponse, ApiError> {
        let caller = Caller::of(context)?;
        if caller.api_key {
            return Err(ApiError::permission_denied(
                "API_KEY_NOT_ALLOWED",
                "API keys cannot change passwords; call with an access token from Login",
            ));
        }
        let id = caller.user_id_or_self("id", &request.id)?;
        let new_password = validate::new_password("new_password", &request.new_password)?;
        let own = id == caller.user_id;
        if !own {
            rules::check_may_manage_others(caller.role)?;
        }

        let user = {
            let mut conn = self.database.read().await?;
            load_user(&mut conn, &caller.tenant_id, &id).await?
        };
        if own {
            self.check_current_password(context, &user, &request.current_password)
                .await?;
        } else {
            rules::check_may_manage(caller.role, stored_role(&user)?)?;
        }

        let password_hash = password::hash(new_password)
            .await
            .map_err(ApiError::internal)?;
        with_retry(|| async {
            let mut conn = self.database.write().await?;
            conn.transaction(async |conn| {
                // The user was loaded outside this transaction; fail if it no longer exists.
                load_user(conn, &caller.tenant_id, &id).await?;
                let now = models::now();
                repo::users::set_password(conn, &caller.tenant_id, &id, &password_hash, now)
                    .await?;
                let revoked =
                    repo::users::revoke_refresh_tokens(conn, &caller.tenant_id, &id, now).await?;
                let entry = audit::entry(
                    context,
                    &caller.tenant_id,
                    AuditEvent::change("user.password_changed")
                        .severity(Severity::Warning)
                        .resource("user", &id)
                        .detail("own_password", own)
                        .detail("revoked_refresh_tokens", revoked),
                );
                repo::audit::insert(conn, &entry).await?;
                Ok::<_, ApiError>(())
            })
            .await
        })
        .await?;

        Ok(pb::ChangePasswordResponse {})
    }

    /// Checks the caller's current password before they change their own. A user without a
    /// password sets the first one without it. A wrong password counts as a failed login and
    /// locks the account after `max_failed_logins` failures in a row, unless that is 0.
    async fn check_current_password(
        &self,
        context: &RequestContext,
        user: &User,
        current: &str,
    ) -> Result<(), ApiError> {
        if user.password_hash.is_none() {
            return Ok(());
        }
        if current.is_empty() {
            return Err(ApiError::invalid(
                "current_password",
                "is required to change your own password",
            ));
        }
        if current.len() > password::MAX_PASSWORD_BYTES {
            return Err(wrong_current_password());
        }
        let now = models::now();
        let locked = user.locked_until.is_some_and(|until| until > now);
        let matches = password::verify(
            SecretString::from(current.to_string()),
            user.password_hash.clone(),
        )
        .await
        .map_err(ApiError::internal)?;
        if matches && !locked {
            return Ok(());
        }

        let lockout = TimeDelta::from_std(self.lockout).map_err(ApiError::internal)?;
        let max_failures = i32::try_from(self.max_failed_logins).unwrap_or(i32::MAX);
        let failures = with_retry(|| async {
            let mut conn = self.database.write().await?;
            conn.transaction(async |conn| {
                // A locked account stays locked for its original period: failures while it is
                // locked are recorded in the audit trail but neither counted nor extend it.
                let failures = if locked {
                    user.failed_login_count
                } else {
                    let (failures, locked_until) =
                        repo::users::record_failed_login(conn, &user.tenant_id, &user.id, now)
                            .await?;
                    // A maximum of 0 turns locking off, and a lock set by a concurrent failure
                    // keeps its expiry.
                    if locked_until.is_none() && max_failures > 0 && failures >= max_failures {
                        repo::users::lock_login(conn, &user.tenant_id, &user.id, now + lockout)
                            .await?;
                    }
                    failures
                };
                let reason = if locked {
                    "account_locked"
                } else {
                    "wrong_password"
                };
                let entry = audit::entry(
                    context,
                    &user.tenant_id,
                    AuditEvent::security("user.password_change_failed")
                        .resource("user", &user.id)
                        .detail("reason", reason)
                        .detail("failed_attempts", failures),
                );
                repo::audit::insert(conn, &entry).await?;
                Ok::<_, ApiError>(failures)
            })
            .await
        })
        .await?;
        info!(
            request.id = %context.request_id,
            tenant.id = %user.tenant_id,
            user.id = %user.id,
            locked,
            failed_attempts = failures,
            "current password rejected"
        );
        Err(wrong_current_password())
    }
}
