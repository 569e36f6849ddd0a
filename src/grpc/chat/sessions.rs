//! CreateSession, GetSession, ListSessions, UpdateSession, DeleteSession, UndeleteSession and
//! SearchSessions.

use diesel_async::AsyncConnection;
use tonic::Request;

use super::{
    Caller, ChatApi, MAX_METADATA_BYTES, SESSION_NOT_FOUND, session_to_proto, status_from_proto,
};
use crate::audit::{self, AuditEvent};
use crate::auth::RequestContext;
use crate::db::DbConnection;
use crate::db::retry::with_retry;
use crate::grpc::convert::struct_to_json;
use crate::grpc::{ApiError, context, paging, validate};
use crate::models::{self, ChatSession};
use crate::plans::Plan;
use crate::proto::ally::v1 as pb;
use crate::repo;
use crate::repo::chat_sessions::{ActivityCursor, SessionFilter};

/// Maximum length of a session title, in characters (the column is `VARCHAR(500)`).
const MAX_TITLE_CHARS: usize = 500;
/// Maximum length of a SearchSessions query, in characters.
const MAX_QUERY_CHARS: usize = 200;
/// Fields UpdateSession may change.
const UPDATABLE_FIELDS: &[&str] = &["title", "status", "metadata"];

/// Access the caller needs to a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Intent {
    Read,
    Write,
}

/// Loads a session of the caller's tenant that the caller may read or change. Anything else,
/// including a deleted session unless `include_deleted` is set, is NOT_FOUND.
pub(super) async fn load_session(
    conn: &mut DbConnection,
    caller: &Caller<'_>,
    id: &str,
    intent: Intent,
    include_deleted: bool,
) -> Result<ChatSession, ApiError> {
    let session = repo::chat_sessions::find(conn, caller.tenant_id, id)
        .await?
        .ok_or(SESSION_NOT_FOUND)?;
    let allowed = match intent {
        Intent::Read => caller.may_read(&session),
        Intent::Write => caller.may_write(&session),
    };
    if !allowed || (session.deleted_at.is_some() && !include_deleted) {
        return Err(SESSION_NOT_FOUND);
    }
    Ok(session)
}

/// Fails with RESOURCE_EXHAUSTED when the tenant has as many sessions that are not deleted as
/// its plan allows. Call it after [`repo::tenants::lock_for_update`] in the transaction that
/// adds the session, so that concurrent calls cannot both pass.
async fn check_session_quota(conn: &mut DbConnection, tenant_id: &str) -> Result<(), ApiError> {
    let tenant = repo::tenants::find(conn, tenant_id)
        .await?
        .ok_or(ApiError::NotFound { resource: "tenant" })?;
    let plan = Plan::parse(&tenant.plan).unwrap_or(Plan::Free);
    let Some(limit) = plan.quotas().chat_sessions else {
        return Ok(());
    };
    let live = repo::chat_sessions::count_live(conn, tenant_id).await?;
    if live >= limit {
        return Err(ApiError::QuotaExceeded {
            subject: "tenant:chat_sessions".into(),
            description: format!(
                "the {} plan allows {limit} chat sessions that are not deleted and the tenant has \
                 {live}; delete a session or upgrade the plan",
                plan.as_str()
            ),
        });
    }
    Ok(())
}

/// Returns the next page token of a session listing whose page is `rows` out of `limit + 1`
/// rows loaded.
fn next_session_token(fingerprint: &str, rows: &mut Vec<ChatSession>, size: i64) -> String {
    let more = rows.len() as i64 > size;
    rows.truncate(size as usize);
    match (more, rows.last()) {
        (true, Some(last)) => paging::encode(
            fingerprint,
            (last.last_message_at, last.created_at, last.id.clone()),
        ),
        _ => String::new(),
    }
}

impl ChatApi {
    /// Runs `change` on a session the caller owns in a transaction with its audit entry.
    pub(super) async fn change_session<F>(
        &self,
        context: &RequestContext,
        id: &str,
        include_deleted: bool,
        event: AuditEvent,
        change: F,
    ) -> Result<ChatSession, ApiError>
    where
        F: Fn(&mut ChatSession) -> Result<bool, ApiError> + Sync,
    {
        let caller = Caller::of(context)?;
        let id = validate::id("id", id)?;
        with_retry(|| async {
            let mut conn = self.database.write().await?;
            conn.transaction(async |conn| {
                let mut session =
                    load_session(conn, &caller, &id, Intent::Write, include_deleted).await?;
                if !change(&mut session)? {
                    return Ok(session);
                }
                session.updated_at = models::now();
                repo::chat_sessions::update(conn, &session).await?;
                let entry = audit::entry(
                    context,
                    caller.tenant_id,
                    event.clone().resource("chat_session", &session.id),
                );
                repo::audit::insert(conn, &entry).await?;
                Ok(session)
            })
            .await
        })
        .await
    }

    pub(super) async fn create_session_impl(
        &self,
        request: Request<pb::CreateSessionRequest>,
    ) -> Result<pb::CreateSessionResponse, ApiError> {
        let context = context(&request)?;
        let caller = Caller::of(&context)?;
        let request = request.into_inner();
        let title = validate::optional_text("title", &request.title, MAX_TITLE_CHARS)?;
        let metadata = match &request.metadata {
            Some(metadata) => struct_to_json("metadata", metadata, MAX_METADATA_BYTES)?,
            None => "{}".to_string(),
        };
        let now = models::now();
        let session = ChatSession {
            tenant_id: caller.tenant_id.to_string(),
            id: models::new_id(),
            user_id: caller.user_id.to_string(),
            title: title.unwrap_or_default(),
            status: "active".into(),
            is_shared: false,
            share_token: None,
            share_expires_at: None,
            message_count: 0,
            last_message_at: None,
            metadata,
            created_at: now,
            updated_at: now,
            deleted_at: None,
        };
        let entry = audit::entry(
            &context,
            caller.tenant_id,
            AuditEvent::change("chat_session.created").resource("chat_session", &session.id),
        );
        with_retry(|| async {
            let mut conn = self.database.write().await?;
            conn.transaction(async |conn| {
                repo::tenants::lock_for_update(conn, caller.tenant_id).await?;
                check_session_quota(conn, caller.tenant_id).await?;
                repo::chat_sessions::insert(conn, &session).await?;
                repo::audit::insert(conn, &entry).await?;
                Ok::<_, ApiError>(())
            })
            .await
        })
        .await?;
        Ok(pb::CreateSessionResponse {
            session: Some(session_to_proto(&session)),
        })
    }

    pub(super) async fn get_session_impl(
        &self,
        request: Request<pb::GetSessionRequest>,
    ) -> Result<pb::GetSessionResponse, ApiError> {
        let context = context(&request)?;
        let caller = Caller::of(&context)?;
        let id = validate::id("id", &request.get_ref().id)?;
        let mut conn = self.database.read().await?;
        let session = load_session(&mut conn, &caller, &id, Intent::Read, true).await?;
        Ok(pb::GetSessionResponse {
            session: Some(session_to_proto(&session)),
        })
    }

    pub(super) async fn list_sessions_impl(
        &self,
        request: Request<pb::ListSessionsRequest>,
    ) -> Result<pb::ListSessionsResponse, ApiError> {
        let context = context(&request)?;
        let caller = Caller::of(&context)?;
        let request = request.into_inner();
        let size = paging::page_size(request.page_size)?;
        let filter = SessionFilter {
            user_id: Some(caller.user_id.to_string()),
            status: status_from_proto("status", request.status)?.map(str::to_string),
            shared: request.shared,
            show_deleted: request.show_deleted,
            pattern: None,
        };
        let fingerprint = paging::fingerprint(&filter);
        let after: Option<ActivityCursor> = paging::decode(&request.page_token, &fingerprint)?;

        let mut conn = self.database.read().await?;
        let mut rows =
            repo::chat_sessions::list(&mut conn, caller.tenant_id, &filter, after, size + 1)
                .await?;
        let next_page_token = next_session_token(&fingerprint, &mut rows, size);
        Ok(pb::ListSessionsResponse {
            sessions: rows.iter().map(session_to_proto).collect(),
            next_page_token,
        })
    }

    pub(super) async fn search_sessions_impl(
        &self,
        request: Request<pb::SearchSessionsRequest>,
    ) -> Result<pb::SearchSessionsResponse, ApiError> {
        let context = context(&request)?;
        let caller = Caller::of(&context)?;
        let request = request.into_inner();
        if request.query.chars().count() > MAX_QUERY_CHARS {
            return Err(ApiError::invalid(
                "query",
                format!("must be at most {MAX_QUERY_CHARS} characters"),
            ));
        }
        if request.query.trim().is_empty() {
            return Err(ApiError::invalid("query", "is required"));
        }
        let size = paging::page_size(request.page_size)?;
        let filter = SessionFilter {
            user_id: (!caller.may_read_all).then(|| caller.user_id.to_string()),
            status: None,
            shared: None,
            show_deleted: false,
            pattern: Some(repo::chat_sessions::contains_pattern(&request.query)),
        };
        let fingerprint = paging::fingerprint(&filter);
        let after: Option<ActivityCursor> = paging::decode(&request.page_token, &fingerprint)?;

        let mut conn = self.database.read().await?;
        let mut rows =
            repo::chat_sessions::list(&mut conn, caller.tenant_id, &filter, after, size + 1)
                .await?;
        let next_page_token = next_session_token(&fingerprint, &mut rows, size);
        Ok(pb::SearchSessionsResponse {
            sessions: rows.iter().map(session_to_proto).collect(),
            next_page_token,
        })
    }

    pub(super) async fn update_session_impl(
        &self,
        request: Request<pb::UpdateSessionRequest>,
    ) -> Result<pb::UpdateSessionResponse, ApiError> {
        let context = context(&request)?;
        let request = request.into_inner();
        let update = request
            .session
            .ok_or_else(|| ApiError::invalid("session", "is required"))?;
        let paths = request
            .update_mask
            .map(|mask| mask.paths)
            .unwrap_or_default();
        if paths.is_empty() {
            return Err(ApiError::invalid(
                "update_mask",
                "name at least one field to change",
            ));
        }
        if let Some(unknown) = paths
            .iter()
            .find(|path| !UPDATABLE_FIELDS.contains(&path.as_str()))
        {
            return Err(ApiError::invalid(
                "update_mask",
                format!(
                    "`{unknown}` cannot be updated; use {}",
                    UPDATABLE_FIELDS.join(", ")
                ),
            ));
        }
        let has = |field: &str| paths.iter().any(|path| path == field);
        let title = has("title")
            .then(|| validate::optional_text("session.title", &update.title, MAX_TITLE_CHARS))
            .transpose()?
            .map(Option::unwrap_or_default);
        let status = match has("status") {
            true => Some(
                status_from_proto("session.status", update.status)?
                    .ok_or_else(|| ApiError::invalid("session.status", "is required"))?,
            ),
            false => None,
        };
        let metadata = match (has("metadata"), &update.metadata) {
            (false, _) => None,
            (true, Some(metadata)) => Some(struct_to_json(
                "session.metadata",
                metadata,
                MAX_METADATA_BYTES,
            )?),
            (true, None) => Some("{}".to_string()),
        };

        let event = AuditEvent::change("chat_session.updated").detail("fields", paths.clone());
        let session = self
            .change_session(&context, &update.id, false, event, |session| {
                if let Some(title) = &title {
                    session.title = title.clone();
                }
                if let Some(status) = status {
                    session.status = status.to_string();
                }
                if let Some(metadata) = &metadata {
                    session.metadata = metadata.clone();
                }
                Ok(true)
            })
            .await?;
        Ok(pb::UpdateSessionResponse {
            session: Some(session_to_proto(&session)),
        })
    }

    pub(super) async fn delete_session_impl(
        &self,
        request: Request<pb::DeleteSessionRequest>,
    ) -> Result<pb::DeleteSessionResponse, ApiError> {
        let context = context(&request)?;
        let event = AuditEvent::change("chat_session.deleted");
        let session = self
            .change_session(&context, &request.get_ref().id, true, event, |session| {
                if session.deleted_at.is_some() {
                    return Ok(false);
                }
                session.deleted_at = Some(models::now());
                Ok(true)
            })
            .await?;
        Ok(pb::DeleteSessionResponse {
            session: Some(session_to_proto(&session)),
        })
    }

    pub(super) async fn undelete_session_impl(
        &self,
        request: Request<pb::UndeleteSessionRequest>,
    ) -> Result<pb::UndeleteSessionResponse, ApiError> {
        let context = context(&request)?;
        let caller = Caller::of(&context)?;
        let id = validate::id("id", &request.get_ref().id)?;
        let session = with_retry(|| async {
            let mut conn = self.database.write().await?;
            conn.transaction(async |conn| {
                repo::tenants::lock_for_update(conn, caller.tenant_id).await?;
                let mut session = load_session(conn, &caller, &id, Intent::Write, true).await?;
                if session.deleted_at.is_none() {
                    return Ok(session);
                }
                check_session_quota(conn, caller.tenant_id).await?;
                session.deleted_at = None;
                session.updated_at = models::now();
                repo::chat_sessions::update(conn, &session).await?;
                let entry = audit::entry(
                    &context,
                    caller.tenant_id,
                    AuditEvent::change("chat_session.undeleted")
                        .resource("chat_session", &session.id),
                );
                repo::audit::insert(conn, &entry).await?;
                Ok::<_, ApiError>(session)
            })
            .await
        })
        .await?;
        Ok(pb::UndeleteSessionResponse {
            session: Some(session_to_proto(&session)),
        })
    }
}
