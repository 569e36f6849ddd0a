//! `ally.v1.ChatService`: chat sessions, their messages, sharing by link, and watching a
//! session for new messages.
//!
//! Members and above write to their own sessions, viewers read their own, and admins and owners
//! read every session of the tenant. A session the caller may not read is NOT_FOUND, the same
//! as one that does not exist.

mod import;
mod messages;
mod sessions;
mod sharing;
mod watch;

pub(crate) use self::messages::count_new_messages;

use tokio::sync::watch as signal;
use tonic::{Request, Response, Status};

use super::ApiError;
use super::convert::{json_to_struct, optional_timestamp, timestamp};
use crate::auth::{RequestContext, Role};
use crate::db::Database;
use crate::events::EventBus;
use crate::models::{ChatSession, Message, MessageRevision};
use crate::proto::ally::v1 as pb;
use crate::proto::ally::v1::chat_service_server::ChatService;

/// Largest `metadata` document of a session or message, as JSON.
const MAX_METADATA_BYTES: usize = 64 * 1024;

/// The ChatService handlers.
#[derive(Clone)]
pub struct ChatApi {
    database: Database,
    events: EventBus,
    /// Becomes true when the server shuts down, which ends every Watch stream.
    shutdown: signal::Receiver<bool>,
    /// Largest file ImportConversations accepts, in bytes.
    import_max_bytes: usize,
}

impl ChatApi {
    pub fn new(database: Database, events: EventBus, shutdown: signal::Receiver<bool>) -> ChatApi {
        ChatApi {
            database,
            events,
            shutdown,
            import_max_bytes: crate::config::ChatSettings::default().import_max_bytes,
        }
    }

    /// Sets the largest file ImportConversations accepts, in bytes.
    pub fn with_import_max_bytes(mut self, max_bytes: usize) -> ChatApi {
        self.import_max_bytes = max_bytes;
        self
    }
}

/// The caller of a chat RPC: every one of them is a user of a tenant, signed in or through an
/// API key. The policy table admits no one else.
struct Caller<'a> {
    tenant_id: &'a str,
    user_id: &'a str,
    may_read_all: bool,
}

impl<'a> Caller<'a> {
    fn of(context: &'a RequestContext) -> Result<Caller<'a>, ApiError> {
        let tenant_id = context
            .tenant_id
            .as_deref()
            .ok_or_else(|| ApiError::internal("a chat RPC ran without a tenant caller"))?;
        let user_id = context
            .user_id()
            .ok_or_else(|| ApiError::internal("a chat RPC ran without a user caller"))?;
        Ok(Caller {
            tenant_id,
            user_id,
            may_read_all: context.has_role(Role::Admin),
        })
    }

    fn may_read(&self, session: &ChatSession) -> bool {
        self.may_read_all || session.user_id == self.user_id
    }

    fn may_write(&self, session: &ChatSession) -> bool {
        session.user_id == self.user_id
    }
}

const SESSION_NOT_FOUND: ApiError = ApiError::NotFound {
    resource: "chat session",
};
const MESSAGE_NOT_FOUND: ApiError = ApiError::NotFound {
    resource: "message",
};

fn status_to_proto(status: &str) -> pb::SessionStatus {
    match status {
        "archived" => pb::SessionStatus::Archived,
        _ => pb::SessionStatus::Active,
    }
}

/// Returns the stored status a request names, `None` for unspecified.
fn status_from_proto(field: &str, value: i32) -> Result<Option<&'static str>, ApiError> {
    match pb::SessionStatus::try_from(value) {
        Ok(pb::SessionStatus::Unspecified) => Ok(None),
        Ok(pb::SessionStatus::Active) => Ok(Some("active")),
        Ok(pb::SessionStatus::Archived) => Ok(Some("archived")),
        Err(_) => Err(ApiError::invalid(
            field,
            format!("{value} is not a session status"),
        )),
    }
}

fn role_to_proto(role: &str) -> pb::MessageRole {
    match role {
        "user" => pb::MessageRole::User,
        "assistant" => pb::MessageRole::Assistant,
        "system" => pb::MessageRole::System,
        "tool" => pb::MessageRole::Tool,
        _ => pb::MessageRole::Unspecified,
    }
}

fn session_to_proto(session: &ChatSession) -> pb::Session {
    pb::Session {
        id: session.id.clone(),
        user_id: session.user_id.clone(),
        title: session.title.clone(),
        status: status_to_proto(&session.status).into(),
        shared: session.is_shared,
        share_expire_time: optional_timestamp(
            session.share_expires_at.filter(|_| session.is_shared),
        ),
        message_count: session.message_count,
        last_message_time: optional_timestamp(session.last_message_at),
        metadata: Some(json_to_struct(&session.metadata)),
        create_time: Some(timestamp(session.created_at)),
        update_time: Some(timestamp(session.updated_at)),
        delete_time: optional_timestamp(session.deleted_at),
    }
}

fn message_to_proto(message: &Message) -> pb::Message {
    pb::Message {
        id: message.id.clone(),
        session_id: message.session_id.clone(),
        user_id: message.user_id.clone().unwrap_or_default(),
        parent_id: message.parent_id.clone().unwrap_or_default(),
        role: role_to_proto(&message.role).into(),
        content: message.content.clone(),
        content_type: message.content_type.clone(),
        model: message.model.clone().unwrap_or_default(),
        prompt_tokens: message.prompt_tokens.unwrap_or_default(),
        completion_tokens: message.completion_tokens.unwrap_or_default(),
        latency_ms: message.latency_ms.unwrap_or_default(),
        finish_reason: message.finish_reason.clone().unwrap_or_default(),
        metadata: Some(json_to_struct(&message.metadata)),
        request_id: message.request_id.clone().unwrap_or_default(),
        version: message.version,
        create_time: Some(timestamp(message.created_at)),
        update_time: Some(timestamp(message.updated_at)),
    }
}

fn revision_to_proto(revision: &MessageRevision) -> pb::MessageRevision {
    pb::MessageRevision {
        id: revision.id.clone(),
        message_id: revision.message_id.clone(),
        version: revision.version,
        content: revision.content.clone(),
        create_time: Some(timestamp(revision.created_at)),
    }
}

#[tonic::async_trait]
impl ChatService for ChatApi {
    async fn create_session(
        &self,
        request: Request<pb::CreateSessionRequest>,
    ) -> Result<Response<pb::CreateSessionResponse>, Status> {
        Ok(Response::new(self.create_session_impl(request).await?))
    }

    async fn get_session(
        &self,
        request: Request<pb::GetSessionRequest>,
    ) -> Result<Response<pb::GetSessionResponse>, Status> {
        Ok(Response::new(self.get_session_impl(request).await?))
    }

    async fn list_sessions(
        &self,
        request: Request<pb::ListSessionsRequest>,
    ) -> Result<Response<pb::ListSessionsResponse>, Status> {
        Ok(Response::new(self.list_sessions_impl(request).await?))
    }

    async fn update_session(
        &self,
        request: Request<pb::UpdateSessionRequest>,
    ) -> Result<Response<pb::UpdateSessionResponse>, Status> {
        Ok(Response::new(self.update_session_impl(request).await?))
    }

    async fn delete_session(
        &self,
        request: Request<pb::DeleteSessionRequest>,
    ) -> Result<Response<pb::DeleteSessionResponse>, Status> {
        Ok(Response::new(self.delete_session_impl(request).await?))
    }

    async fn undelete_session(
        &self,
        request: Request<pb::UndeleteSessionRequest>,
    ) -> Result<Response<pb::UndeleteSessionResponse>, Status> {
        Ok(Response::new(self.undelete_session_impl(request).await?))
    }

    async fn search_sessions(
        &self,
        request: Request<pb::SearchSessionsRequest>,
    ) -> Result<Response<pb::SearchSessionsResponse>, Status> {
        Ok(Response::new(self.search_sessions_impl(request).await?))
    }

    async fn add_message(
        &self,
        request: Request<pb::AddMessageRequest>,
    ) -> Result<Response<pb::AddMessageResponse>, Status> {
        Ok(Response::new(self.add_message_impl(request).await?))
    }

    async fn list_messages(
        &self,
        request: Request<pb::ListMessagesRequest>,
    ) -> Result<Response<pb::ListMessagesResponse>, Status> {
        Ok(Response::new(self.list_messages_impl(request).await?))
    }

    async fn get_message(
        &self,
        request: Request<pb::GetMessageRequest>,
    ) -> Result<Response<pb::GetMessageResponse>, Status> {
        Ok(Response::new(self.get_message_impl(request).await?))
    }

    async fn edit_message(
        &self,
        request: Request<pb::EditMessageRequest>,
    ) -> Result<Response<pb::EditMessageResponse>, Status> {
        Ok(Response::new(self.edit_message_impl(request).await?))
    }

    async fn list_message_revisions(
        &self,
        request: Request<pb::ListMessageRevisionsRequest>,
    ) -> Result<Response<pb::ListMessageRevisionsResponse>, Status> {
        Ok(Response::new(
            self.list_message_revisions_impl(request).await?,
        ))
    }

    async fn delete_message(
        &self,
        request: Request<pb::DeleteMessageRequest>,
    ) -> Result<Response<pb::DeleteMessageResponse>, Status> {
        Ok(Response::new(self.delete_message_impl(request).await?))
    }

    async fn share_session(
        &self,
        request: Request<pb::ShareSessionRequest>,
    ) -> Result<Response<pb::ShareSessionResponse>, Status> {
        Ok(Response::new(self.share_session_impl(request).await?))
    }

    async fn get_shared_session(
        &self,
        request: Request<pb::GetSharedSessionRequest>,
    ) -> Result<Response<pb::GetSharedSessionResponse>, Status> {
        Ok(Response::new(self.get_shared_session_impl(request).await?))
    }

    async fn unshare_session(
        &self,
        request: Request<pb::UnshareSessionRequest>,
    ) -> Result<Response<pb::UnshareSessionResponse>, Status> {
        Ok(Response::new(self.unshare_session_impl(request).await?))
    }

    async fn import_conversations(
        &self,
        request: Request<tonic::Streaming<pb::ImportConversationsRequest>>,
    ) -> Result<Response<pb::ImportConversationsResponse>, Status> {
        Ok(Response::new(
            self.import_conversations_impl(request).await?,
        ))
    }

    type WatchStream = watch::WatchStream;

    async fn watch(
        &self,
        request: Request<pb::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        Ok(Response::new(self.watch_impl(request).await?))
    }
}
