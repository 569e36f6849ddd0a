//! SendVerification and VerifyEmail: single-use tokens that prove control of an email address.

use chrono::{SubsecRound, TimeDelta};
use diesel_async::AsyncConnection;
use tracing::info;

use super::{Caller, UserApi, load_user};
use crate::audit::{self, AuditEvent};
use crate::auth::{RequestContext, secret_token};
use crate::db::retry::with_retry;
use crate::grpc::convert::timestamp;
use crate::grpc::resources::user_to_proto;
use crate::grpc::{ApiError, validate};
use crate::models::{self, EmailVerification};
use crate::proto::ally::v1 as pb;
use crate::repo;

/// Builds the error for a rejected token. Every cause gets the same error, so that a caller
/// learns nothing about tokens of other tenants or tokens issued for other addresses.
fn invalid_token() -> ApiError {
    ApiError::invalid(
        "token",
        "is not a valid verification token: it is unknown, expired or already used, or the \
         user's email changed since it was issued; request a new one with SendVerification",
    )
}

impl UserApi {
    pub(super) async fn issue_verification(
        &self,
        context: &RequestContext,
        request: pb::SendVerificationRequest,
    ) -> Result<pb::SendVerificationResponse, ApiError> {
        let caller = Caller::of(context)?;
        let id = validate::id("id", &request.id)?;
        let token = secret_token::generate();
        let token_hash = secret_token::hash(&token);
        let lifetime = TimeDelta::from_std(self.verification_ttl).map_err(ApiError::internal)?;
        let now = models::now();
        let expires_at = (now + lifetime).trunc_subsecs(6);
        let verification_id = models::new_id();

        with_retry(|| async {
            let mut conn = self.database.write().await?;
            conn.transaction(async |conn| {
                let user = load_user(conn, &caller.tenant_id, &id).await?;
                if user.email_verified_at.is_some() {
                    return Err(ApiError::failed_precondition(
                        "EMAIL_ALREADY_VERIFIED",
                        "the user's email is already verified",
                    ));
                }
                let row = EmailVerification {
                    tenant_id: caller.tenant_id.clone(),
                    id: verification_id.clone(),
                    user_id: user.id.clone(),
                    email: user.email.clone(),
                    token_hash: token_hash.clone(),
                    expires_at,
                    used_at: None,
                    created_at: now,
                };
                repo::email_verifications::insert(conn, &row).await?;
                let entry = audit::entry(
                    context,
                    &caller.tenant_id,
                    AuditEvent::change("user.verification_sent")
                        .resource("user", &user.id)
                        .detail("verification_id", verification_id.as_str()),
                );
                repo::audit::insert(conn, &entry).await?;
                Ok::<_, ApiError>(())
            })
            .await
        })
        .await?;

        Ok(pb::SendVerificationResponse {
            verification_token: token,
            expire_time: Some(timestamp(expires_at)),
        })
    }

    pub(super) async fn verify(
        &self,
        context: &RequestContext,
        request: pb::VerifyEmailRequest,
    ) -> Result<pb::VerifyEmailResponse, ApiError> {
        let caller = Caller::of(context)?;
        if request.token.is_empty() {
            return Err(ApiError::invalid("token", "is required"));
        }
        let token_hash = secret_token::hash(&request.token);

        let verified = with_retry(|| async {
            let mut conn = self.database.write().await?;
            conn.transaction(async |conn| {
                let reject = |reason: &str| {
                    info!(request.id = %context.request_id, reason, "verification token rejected");
                    invalid_token()
                };
                let Some(row) =
                    repo::email_verifications::find_by_hash(conn, &caller.tenant_id, &token_hash)
                        .await?
                else {
                    return Err(reject("unknown in the tenant"));
                };
                let now = models::now();
                if row.used_at.is_some() {
                    return Err(reject("already used"));
                }
                if row.expires_at <= now {
                    return Err(reject("expired"));
                }
                let Some(mut user) =
                    repo::users::find(conn, &caller.tenant_id, &row.user_id).await?
                else {
                    return Err(reject("user not found"));
                };
                // Both addresses are stored normalized, so a plain comparison is exact on every
                // backend, whatever the column collation.
                if user.email != row.email {
                    return Err(reject("email changed"));
                }
                if !repo::email_verifications::mark_used(conn, &caller.tenant_id, &row.id, now)
                    .await?
                {
                    return Err(reject("used concurrently"));
                }
                if user.email_verified_at.is_none() {
                    repo::users::set_email_verified(conn, &caller.tenant_id, &user.id, now).await?;
                    user.email_verified_at = Some(now);
                    user.updated_at = now;
                }
                let entry = audit::entry(
                    context,
                    &caller.tenant_id,
                    AuditEvent::change("user.email_verified")
                        .resource("user", &user.id)
                        .detail("verification_id", row.id.as_str()),
                );
                repo::audit::insert(conn, &entry).await?;
                Ok(user)
            })
            .await
        })
        .await?;

        Ok(pb::VerifyEmailResponse {
            user: Some(user_to_proto(&verified)),
        })
    }
}
