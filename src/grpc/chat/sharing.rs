//! ShareSession, GetSharedSession and UnshareSession.
//!
//! A share token is 256 random bits. The session stores only its SHA-256, so a copy of the
//! database does not reveal working links. The token column is unique across tenants, but a
//! token opens a session only for callers signed in to the session's tenant.

use tonic::Request;

use super::messages::list_page;
use super::{ChatApi, SESSION_NOT_FOUND, session_to_proto};
use crate::audit::AuditEvent;
use crate::auth::secret_token;
use crate::grpc::convert::from_timestamp;
use crate::grpc::{ApiError, context, paging};
use crate::models;
use crate::proto::ally::v1 as pb;
use crate::repo;
use crate::repo::messages::MessageCursor;

/// Maximum length of a share token, in bytes. Issued tokens have 43 characters.
const MAX_TOKEN_BYTES: usize = 128;

impl ChatApi {
    pub(super) async fn share_session_impl(
        &self,
        request: Request<pb::ShareSessionRequest>,
    ) -> Result<pb::ShareSessionResponse, ApiError> {
        let context = context(&request)?;
        let request = request.into_inner();
        let now = models::now();
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
        let token = secret_token::generate();
        let token_hash = secret_token::hash(&token);
        let mut event = AuditEvent::change("chat_session.shared");
        if let Some(at) = expires_at {
            event = event.detail("expire_time", at.and_utc().to_rfc3339());
        }
        let session = self
            .change_session(&context, &request.id, false, event, |session| {
                session.is_shared = true;
                session.share_token = Some(token_hash.clone());
                session.share_expires_at = expires_at;
                Ok(true)
            })
            .await?;
        Ok(pb::ShareSessionResponse {
            session: Some(session_to_proto(&session)),
            share_token: token,
        })
    }

    pub(super) async fn unshare_session_impl(
        &self,
        request: Request<pb::UnshareSessionRequest>,
    ) -> Result<pb::UnshareSessionResponse, ApiError> {
        let context = context(&request)?;
        let event = AuditEvent::change("chat_session.unshared");
        let session = self
            .change_session(&context, &request.get_ref().id, false, event, |session| {
                if !session.is_shared && session.share_token.is_none() {
                    return Ok(false);
                }
                session.is_shared = false;
                session.share_token = None;
                session.share_expires_at = None;
                Ok(true)
            })
            .await?;
        Ok(pb::UnshareSessionResponse {
            session: Some(session_to_proto(&session)),
        })
    }

    pub(super) async fn get_shared_session_impl(
        &self,
        request: Request<pb::GetSharedSessionRequest>,
    ) -> Result<pb::GetSharedSessionResponse, ApiError> {
        let context = context(&request)?;
        let tenant_id = context
            .tenant_id
            .as_deref()
            .ok_or_else(|| ApiError::internal("GetSharedSession ran without a tenant caller"))?;
        let request = request.into_inner();
        if request.share_token.is_empty() {
            return Err(ApiError::invalid("share_token", "is required"));
        }
        if request.share_token.len() > MAX_TOKEN_BYTES {
            return Err(ApiError::invalid(
                "share_token",
                format!("must be at most {MAX_TOKEN_BYTES} bytes"),
            ));
        }
        let size = paging::page_size(request.page_size)?;

        let mut conn = self.database.read().await?;
        let token_hash = secret_token::hash(&request.share_token);
        let now = models::now();
        let session = repo::chat_sessions::find_by_share_hash(&mut conn, &token_hash)
            .await?
            .filter(|session| {
                session.tenant_id == tenant_id
                    && session.is_shared
                    && session.deleted_at.is_none()
                    && session.share_expires_at.is_none_or(|at| at > now)
            })
            .ok_or(SESSION_NOT_FOUND)?;

        // The fingerprint covers the token hash, so a page token only continues the same link.
        let fingerprint = paging::fingerprint(&(&session.id, &token_hash));
        let after: Option<MessageCursor> = paging::decode(&request.page_token, &fingerprint)?;
        let (messages, next_page_token) = list_page(
            &mut conn,
            tenant_id,
            &session.id,
            None,
            &fingerprint,
            after,
            size,
        )
        .await?;
        Ok(pb::GetSharedSessionResponse {
            session: Some(session_to_proto(&session)),
            messages,
            next_page_token,
        })
    }
}
