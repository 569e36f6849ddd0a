//! AddMessage, ListMessages, GetMessage, EditMessage, ListMessageRevisions and DeleteMessage.

use std::collections::{HashMap, HashSet};

use chrono::NaiveDateTime;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel_async::AsyncConnection;
use tonic::Request;

use super::sessions::{Intent, load_session};
use super::{
    Caller, ChatApi, MAX_METADATA_BYTES, MESSAGE_NOT_FOUND, message_to_proto, revision_to_proto,
};
use crate::audit::{self, AuditEvent};
use crate::db::DbConnection;
use crate::db::retry::with_retry;
use crate::grpc::convert::struct_to_json;
use crate::grpc::{ApiError, context, paging, validate};
use crate::models::{self, ChatSession, Message, MessageRevision};
use crate::plans::Plan;
use crate::proto::ally::v1 as pb;
use crate::repo;
use crate::repo::messages::{MessageCursor, TreeNode};

/// Maximum message content: 1 MiB of UTF-8.
pub const MAX_CONTENT_BYTES: usize = 1024 * 1024;
/// Maximum length of `content_type`, in characters (the column is `VARCHAR(64)`).
const MAX_CONTENT_TYPE_CHARS: usize = 64;
/// Maximum length of `model`, in characters (the column is `VARCHAR(255)`).
const MAX_MODEL_CHARS: usize = 255;
/// Maximum length of `finish_reason`, in characters (the column is `VARCHAR(64)`).
const MAX_FINISH_REASON_CHARS: usize = 64;

/// Loads a message that is not deleted, in a session that is not deleted and that the caller
/// may read or change. Anything else is NOT_FOUND.
pub(super) async fn load_message(
    conn: &mut DbConnection,
    caller: &Caller<'_>,
    id: &str,
    intent: Intent,
) -> Result<(Message, ChatSession), ApiError> {
    let message = repo::messages::find(conn, caller.tenant_id, id)
        .await?
        .filter(|message| message.deleted_at.is_none())
        .ok_or(MESSAGE_NOT_FOUND)?;
    let session = load_session(conn, caller, &message.session_id, intent, false)
        .await
        .map_err(|_| MESSAGE_NOT_FOUND)?;
    Ok((message, session))
}

fn validate_content(field: &str, content: &str) -> Result<(), ApiError> {
    if content.len() > MAX_CONTENT_BYTES {
        return Err(ApiError::invalid(
            field,
            format!(
                "is {} bytes; the limit is {MAX_CONTENT_BYTES} bytes (1 MiB)",
                content.len()
            ),
        ));
    }
    Ok(())
}

/// Parses a count from a request: `None` for 0, which means not given.
fn optional_count(field: &str, value: i32) -> Result<Option<i32>, ApiError> {
    match value {
        ..0 => Err(ApiError::invalid(field, "must not be negative")),
        0 => Ok(None),
        value => Ok(Some(value)),
    }
}

fn role_from_proto(value: i32) -> Result<&'static str, ApiError> {
    match pb::MessageRole::try_from(value) {
        Ok(pb::MessageRole::User) => Ok("user"),
        Ok(pb::MessageRole::Assistant) => Ok("assistant"),
        Ok(pb::MessageRole::System) => Ok("system"),
        Ok(pb::MessageRole::Tool) => Ok("tool"),
        Ok(pb::MessageRole::Unspecified) => Err(ApiError::invalid("role", "is required")),
        Err(_) => Err(ApiError::invalid(
            "role",
            format!("{value} is not a message role"),
        )),
    }
}

/// Validated fields of an AddMessage request. The id, author and times are set in the
/// transaction.
struct NewMessage {
    session_id: String,
    parent_id: Option<String>,
    role: &'static str,
    content: String,
    content_type: String,
    model: Option<String>,
    prompt_tokens: Option<i32>,
    completion_tokens: Option<i32>,
    latency_ms: Option<i32>,
    finish_reason: Option<String>,
    metadata: String,
    request_id: Option<String>,
}

fn validate_add(request: pb::AddMessageRequest) -> Result<NewMessage, ApiError> {
    let session_id = validate::id("session_id", &request.session_id)?;
    let role = role_from_proto(request.role)?;
    validate_content("content", &request.content)?;
    let content_type = validate::optional_text(
        "content_type",
        &request.content_type,
        MAX_CONTENT_TYPE_CHARS,
    )?
    .unwrap_or_else(|| "text".to_string());
    let model = validate::optional_text("model", &request.model, MAX_MODEL_CHARS)?;
    let finish_reason = validate::optional_text(
        "finish_reason",
        &request.finish_reason,
        MAX_FINISH_REASON_CHARS,
    )?;
    let metadata = match &request.metadata {
        Some(metadata) => struct_to_json("metadata", metadata, MAX_METADATA_BYTES)?,
        None => "{}".to_string(),
    };
    let parent_id = match request.parent_id.as_str() {
        "" => None,
        parent_id => Some(validate::id("parent_id", parent_id)?),
    };
    Ok(NewMessage {
        session_id,
        parent_id,
        role,
        content: request.content,
        content_type,
        model,
        prompt_tokens: optional_count("prompt_tokens", request.prompt_tokens)?,
        completion_tokens: optional_count("completion_tokens", request.completion_tokens)?,
        latency_ms: optional_count("latency_ms", request.latency_ms)?,
        finish_reason,
        metadata,
        request_id: validate::request_id("request_id", &request.request_id)?,
    })
}

/// Adds `count` new messages to the tenant's count for this month, or fails with
/// RESOURCE_EXHAUSTED when that would pass its plan's monthly limit. Call it last in the
/// transaction that stores the messages, because the count row stays locked until the
/// transaction ends and every add of the tenant queues on it.
pub(crate) async fn count_new_messages(
    conn: &mut DbConnection,
    tenant_id: &str,
    now: NaiveDateTime,
    count: i64,
) -> Result<(), ApiError> {
    let tenant = repo::tenants::find(conn, tenant_id)
        .await?
        .ok_or(ApiError::NotFound { resource: "tenant" })?;
    let plan = Plan::parse(&tenant.plan).unwrap_or(Plan::Free);
    let limit = plan.quotas().messages_per_month;
    if repo::message_counts::try_add(conn, tenant_id, now, count, limit).await? {
        return Ok(());
    }
    let created = repo::message_counts::get(conn, tenant_id, now).await?;
    Err(ApiError::QuotaExceeded {
        subject: "tenant:messages_per_month".into(),
        description: format!(
            "the {} plan allows {} messages a calendar month (UTC) and the tenant created \
             {created} this month; wait for the next month or upgrade the plan",
            plan.as_str(),
            limit.unwrap_or(i64::MAX),
        ),
    })
}

/// Outcome of the AddMessage transaction.
enum Added {
    /// It stored this new message.
    New(Message),
    /// An earlier call with the same request id stored this message.
    Earlier(Message),
}

fn is_unique_violation(error: &ApiError) -> bool {
    matches!(
        error,
        ApiError::Database(DieselError::DatabaseError(
            DatabaseErrorKind::UniqueViolation,
            _
        ))
    )
}

/// Returns the ids of one thread of a conversation: the ancestors of `target` from the root,
/// `target`, then its descendants along the oldest reply that is not deleted at each step.
/// `nodes` must be in storage order, oldest first. Deleted ancestors stay in the result, so
/// that page tokens keep their place; callers leave them out of responses. Returns `None` when
/// `target` is not in `nodes`.
pub fn thread_path(nodes: &[TreeNode], target: &str) -> Option<Vec<String>> {
    let by_id: HashMap<&str, &TreeNode> =
        nodes.iter().map(|node| (node.id.as_str(), node)).collect();
    let mut first_reply: HashMap<&str, &str> = HashMap::new();
    for node in nodes.iter().filter(|node| !node.deleted) {
        if let Some(parent) = node.parent_id.as_deref() {
            first_reply.entry(parent).or_insert(node.id.as_str());
        }
    }

    let start = by_id.get(target)?;
    // No foreign key guards parent_id, so both walks stop at a repeated id instead of looping.
    let mut seen: HashSet<&str> = HashSet::from([start.id.as_str()]);
    let mut ancestors = Vec::new();
    let mut current = *start;
    while let Some(parent) = current.parent_id.as_deref().and_then(|id| by_id.get(id)) {
        if !seen.insert(parent.id.as_str()) {
            break;
        }
        ancestors.push(parent.id.clone());
        current = parent;
    }
    ancestors.reverse();
    ancestors.push(start.id.clone());

    let mut current = start.id.as_str();
    while let Some(reply) = first_reply.get(current) {
        if !seen.insert(reply) {
            break;
        }
        ancestors.push(reply.to_string());
        current = reply;
    }
    Some(ancestors)
}

impl ChatApi {
    pub(super) async fn add_message_impl(
        &self,
        request: Request<pb::AddMessageRequest>,
    ) -> Result<pb::AddMessageResponse, ApiError> {
        let context = context(&request)?;
        let caller = Caller::of(&context)?;
        let new = validate_add(request.into_inner())?;

        let attempt = with_retry(|| async {
            let mut conn = self.database.write().await?;
            conn.transaction(async |conn| self.store_message(conn, &context, &caller, &new).await)
                .await
        })
        .await;
        let added = match attempt {
            Ok(added) => added,
            // A concurrent call with the same request id stored its message first.
            Err(error) if is_unique_violation(&error) && new.request_id.is_some() => {
                let mut conn = self.database.read().await?;
                let request_id = new.request_id.as_deref().unwrap_or_default();
                let earlier = repo::messages::find_by_request_id(
                    &mut conn,
                    caller.tenant_id,
                    &new.session_id,
                    request_id,
                )
                .await?
                .ok_or(error)?;
                Added::Earlier(earlier)
            }
            Err(error) => return Err(error),
        };
        let message = match added {
            Added::New(message) => {
                self.events
                    .publish_message(caller.tenant_id, &message.session_id, &message.id);
                message
            }
            Added::Earlier(message) => message,
        };
        Ok(pb::AddMessageResponse {
            message: Some(message_to_proto(&message)),
        })
    }

    /// Runs the body of the AddMessage transaction.
    ///
    /// On MySQL the session row is locked first, by the UPDATE of its message count, and the
    /// message is inserted after. The other order deadlocks: the insert's foreign key check takes
    /// a shared lock on the session row, and two concurrent adds then both wait to upgrade it.
    /// The message time is taken after the lock, so the messages of a session are stored in
    /// time order.
    async fn store_message(
        &self,
        conn: &mut DbConnection,
        context: &crate::auth::RequestContext,
        caller: &Caller<'_>,
        new: &NewMessage,
    ) -> Result<Added, ApiError> {
        let session = load_session(conn, caller, &new.session_id, Intent::Write, false).await?;
        if let Some(request_id) = &new.request_id
            && let Some(earlier) =
                repo::messages::find_by_request_id(conn, caller.tenant_id, &session.id, request_id)
                    .await?
        {
            return Ok(Added::Earlier(earlier));
        }
        if session.status == "archived" {
            return Err(ApiError::failed_precondition(
                "SESSION_ARCHIVED",
                "the session is archived; set its status to active to add messages",
            ));
        }
        if let Some(parent_id) = &new.parent_id {
            let parent = repo::messages::find(conn, caller.tenant_id, parent_id).await?;
            let valid = parent.is_some_and(|parent| {
                parent.session_id == session.id && parent.deleted_at.is_none()
            });
            if !valid {
                return Err(ApiError::invalid(
                    "parent_id",
                    "names no message of this session; reply to a message of the same session",
                ));
            }
        }

        if !repo::chat_sessions::count_new_message(
            conn,
            caller.tenant_id,
            &session.id,
            caller.user_id,
        )
        .await?
        {
            return Err(ApiError::Aborted {
                reason: "CONCURRENT_UPDATE",
                message: "the session changed during the call; try again".into(),
            });
        }
        let now = models::now();
        let message = Message {
            tenant_id: caller.tenant_id.to_string(),
            id: models::new_id(),
            session_id: session.id.clone(),
            user_id: Some(caller.user_id.to_string()),
            parent_id: new.parent_id.clone(),
            role: new.role.to_string(),
            content: new.content.clone(),
            content_type: new.content_type.clone(),
            model: new.model.clone(),
            prompt_tokens: new.prompt_tokens,
            completion_tokens: new.completion_tokens,
            latency_ms: new.latency_ms,
            finish_reason: new.finish_reason.clone(),
            metadata: new.metadata.clone(),
            request_id: new.request_id.clone(),
            version: 1,
            created_at: now,
            updated_at: now,
            deleted_at: None,
        };
        repo::messages::insert(conn, &message).await?;
        repo::chat_sessions::set_last_message_at(conn, caller.tenant_id, &session.id, now).await?;
        let entry = audit::entry(
            context,
            caller.tenant_id,
            AuditEvent::change("message.created")
                .resource("message", &message.id)
                .detail("session_id", session.id.as_str())
                .detail("role", new.role),
        );
        repo::audit::insert(conn, &entry).await?;
        count_new_messages(conn, caller.tenant_id, now, 1).await?;
        Ok(Added::New(message))
    }

    pub(super) async fn list_messages_impl(
        &self,
        request: Request<pb::ListMessagesRequest>,
    ) -> Result<pb::ListMessagesResponse, ApiError> {
        let context = context(&request)?;
        let caller = Caller::of(&context)?;
        let request = request.into_inner();
        let session_id = validate::id("session_id", &request.session_id)?;
        let size = paging::page_size(request.page_size)?;
        let thread_id = match request.thread_message_id.as_str() {
            "" => None,
            id => Some(validate::id("thread_message_id", id)?),
        };
        let parent_id = match request.parent_id.as_str() {
            "" => None,
            id => Some(validate::id("parent_id", id)?),
        };
        if thread_id.is_some() && parent_id.is_some() {
            return Err(ApiError::invalid(
                "thread_message_id",
                "set either thread_message_id or parent_id, not both",
            ));
        }

        let mut conn = self.database.read().await?;
        let session = load_session(&mut conn, &caller, &session_id, Intent::Read, false).await?;
        if let Some(thread_id) = thread_id {
            return list_thread(
                &mut conn,
                &caller,
                &session,
                &thread_id,
                &request.page_token,
                size,
            )
            .await;
        }
        if let Some(parent_id) = &parent_id {
            let parent = repo::messages::find(&mut conn, caller.tenant_id, parent_id).await?;
            if parent.is_none_or(|parent| parent.session_id != session.id) {
                return Err(ApiError::invalid(
                    "parent_id",
                    "names no message of this session",
                ));
            }
        }
        let fingerprint = paging::fingerprint(&(&session.id, &parent_id));
        let after: Option<MessageCursor> = paging::decode(&request.page_token, &fingerprint)?;
        let (messages, next_page_token) = list_page(
            &mut conn,
            caller.tenant_id,
            &session.id,
            parent_id.as_deref(),
            &fingerprint,
            after,
            size,
        )
        .await?;
        Ok(pb::ListMessagesResponse {
            messages,
            next_page_token,
        })
    }

    pub(super) async fn get_message_impl(
        &self,
        request: Request<pb::GetMessageRequest>,
    ) -> Result<pb::GetMessageResponse, ApiError> {
        let context = context(&request)?;
        let caller = Caller::of(&context)?;
        let id = validate::id("id", &request.get_ref().id)?;
        let mut conn = self.database.read().await?;
        let (message, _) = load_message(&mut conn, &caller, &id, Intent::Read).await?;
        Ok(pb::GetMessageResponse {
            message: Some(message_to_proto(&message)),
        })
    }

    pub(super) async fn edit_message_impl(
        &self,
        request: Request<pb::EditMessageRequest>,
    ) -> Result<pb::EditMessageResponse, ApiError> {
        let context = context(&request)?;
        let caller = Caller::of(&context)?;
        let request = request.into_inner();
        let id = validate::id("id", &request.id)?;
        validate_content("content", &request.content)?;

        let message = with_retry(|| async {
            let mut conn = self.database.write().await?;
            conn.transaction(async |conn| {
                let (mut message, _) = load_message(conn, &caller, &id, Intent::Write).await?;
                let now = models::now();
                let revision = MessageRevision {
                    tenant_id: caller.tenant_id.to_string(),
                    id: models::new_id(),
                    message_id: message.id.clone(),
                    version: message.version,
                    content: message.content.clone(),
                    created_at: now,
                };
                repo::messages::insert_revision(conn, &revision).await?;
                if !repo::messages::replace_content(
                    conn,
                    caller.tenant_id,
                    &message.id,
                    message.version,
                    &request.content,
                    now,
                )
                .await?
                {
                    return Err(ApiError::Aborted {
                        reason: "CONCURRENT_UPDATE",
                        message: "the message changed during the edit; read it and try again"
                            .into(),
                    });
                }
                message.version += 1;
                message.content = request.content.clone();
                message.updated_at = now;
                let entry = audit::entry(
                    &context,
                    caller.tenant_id,
                    AuditEvent::change("message.edited")
                        .resource("message", &message.id)
                        .detail("session_id", message.session_id.as_str())
                        .detail("version", message.version),
                );
                repo::audit::insert(conn, &entry).await?;
                Ok::<_, ApiError>(message)
            })
            .await
        })
        .await?;
        Ok(pb::EditMessageResponse {
            message: Some(message_to_proto(&message)),
        })
    }

    pub(super) async fn list_message_revisions_impl(
        &self,
        request: Request<pb::ListMessageRevisionsRequest>,
    ) -> Result<pb::ListMessageRevisionsResponse, ApiError> {
        let context = context(&request)?;
        let caller = Caller::of(&context)?;
        let request = request.into_inner();
        let id = validate::id("message_id", &request.message_id)?;
        let size = paging::page_size(request.page_size)?;
        let fingerprint = paging::fingerprint(&id);
        let after: Option<i32> = paging::decode(&request.page_token, &fingerprint)?;

        let mut conn = self.database.read().await?;
        let (message, _) = load_message(&mut conn, &caller, &id, Intent::Read).await?;
        let mut rows = repo::messages::list_revisions(
            &mut conn,
            caller.tenant_id,
            &message.id,
            after,
            size + 1,
        )
        .await?;
        let more = rows.len() as i64 > size;
        rows.truncate(size as usize);
        let next_page_token = match (more, rows.last()) {
            (true, Some(last)) => paging::encode(&fingerprint, last.version),
            _ => String::new(),
        };
        Ok(pb::ListMessageRevisionsResponse {
            revisions: rows.iter().map(revision_to_proto).collect(),
            next_page_token,
        })
    }

    pub(super) async fn delete_message_impl(
        &self,
        request: Request<pb::DeleteMessageRequest>,
    ) -> Result<pb::DeleteMessageResponse, ApiError> {
        let context = context(&request)?;
        let caller = Caller::of(&context)?;
        let id = validate::id("id", &request.get_ref().id)?;
        with_retry(|| async {
            let mut conn = self.database.write().await?;
            conn.transaction(async |conn| {
                let (message, session) = load_message(conn, &caller, &id, Intent::Write).await?;
                let now = models::now();
                // The session row first, in the same lock order as AddMessage.
                repo::chat_sessions::forget_message(conn, caller.tenant_id, &session.id, now)
                    .await?;
                if !repo::messages::soft_delete(conn, caller.tenant_id, &message.id, now).await? {
                    return Err(MESSAGE_NOT_FOUND);
                }
                let entry = audit::entry(
                    &context,
                    caller.tenant_id,
                    AuditEvent::change("message.deleted")
                        .resource("message", &message.id)
                        .detail("session_id", session.id.as_str()),
                );
                repo::audit::insert(conn, &entry).await?;
                Ok::<_, ApiError>(())
            })
            .await
        })
        .await?;
        Ok(pb::DeleteMessageResponse {})
    }
}

/// Loads one page of a session's messages in storage order and returns them with the next
/// page token.
pub(super) async fn list_page(
    conn: &mut DbConnection,
    tenant_id: &str,
    session_id: &str,
    parent_id: Option<&str>,
    fingerprint: &str,
    after: Option<MessageCursor>,
    size: i64,
) -> Result<(Vec<pb::Message>, String), ApiError> {
    let mut rows =
        repo::messages::list(conn, tenant_id, session_id, parent_id, after, size + 1).await?;
    let more = rows.len() as i64 > size;
    rows.truncate(size as usize);
    let next_page_token = match (more, rows.last()) {
        (true, Some(last)) => paging::encode(fingerprint, (last.created_at, last.id.clone())),
        _ => String::new(),
    };
    Ok((rows.iter().map(message_to_proto).collect(), next_page_token))
}

/// Lists one page of the thread through `thread_id`. The page token contains the id of the last
/// message returned.
async fn list_thread(
    conn: &mut DbConnection,
    caller: &Caller<'_>,
    session: &ChatSession,
    thread_id: &str,
    page_token: &str,
    size: i64,
) -> Result<pb::ListMessagesResponse, ApiError> {
    let nodes = repo::messages::tree(conn, caller.tenant_id, &session.id).await?;
    let no_message = || {
        ApiError::invalid(
            "thread_message_id",
            "names no message of this session that is not deleted",
        )
    };
    if !nodes
        .iter()
        .any(|node| node.id == thread_id && !node.deleted)
    {
        return Err(no_message());
    }
    let path = thread_path(&nodes, thread_id).ok_or_else(no_message)?;
    let deleted: HashSet<&str> = nodes
        .iter()
        .filter(|node| node.deleted)
        .map(|node| node.id.as_str())
        .collect();

    let fingerprint = paging::fingerprint(&(&session.id, "thread", thread_id));
    let start = match paging::decode::<String>(page_token, &fingerprint)? {
        None => 0,
        Some(last) => {
            path.iter().position(|id| *id == last).ok_or_else(|| {
                ApiError::invalid(
                    "page_token",
                    "the thread changed since this token was issued; list it from the start",
                )
            })? + 1
        }
    };
    let visible: Vec<&String> = path[start..]
        .iter()
        .filter(|id| !deleted.contains(id.as_str()))
        .collect();
    let page: Vec<String> = visible
        .iter()
        .take(size as usize)
        .map(|id| id.to_string())
        .collect();
    let next_page_token = match (visible.len() as i64 > size, page.last()) {
        (true, Some(last)) => paging::encode(&fingerprint, last.clone()),
        _ => String::new(),
    };

    let mut loaded: HashMap<String, Message> =
        repo::messages::find_many(conn, caller.tenant_id, &page)
            .await?
            .into_iter()
            .map(|message| (message.id.clone(), message))
            .collect();
    let messages = page
        .iter()
        .filter_map(|id| loaded.remove(id))
        .map(|message| message_to_proto(&message))
        .collect();
    Ok(pb::ListMessagesResponse {
        messages,
        next_page_token,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, parent: Option<&str>) -> TreeNode {
        TreeNode {
            id: id.to_string(),
            parent_id: parent.map(str::to_string),
            deleted: false,
        }
    }

    /// root -> a, b, c (branches), each with one reply a1, b1, c1.
    fn branching() -> Vec<TreeNode> {
        vec![
            node("root", None),
            node("a", Some("root")),
            node("b", Some("root")),
            node("c", Some("root")),
            node("a1", Some("a")),
            node("b1", Some("b")),
            node("c1", Some("c")),
        ]
    }

    #[test]
    fn thread_follows_each_branch() {
        let nodes = branching();

        assert_eq!(thread_path(&nodes, "b1").unwrap(), ["root", "b", "b1"]);
        assert_eq!(thread_path(&nodes, "c").unwrap(), ["root", "c", "c1"]);
        assert_eq!(thread_path(&nodes, "root").unwrap(), ["root", "a", "a1"]);
    }

    #[test]
    fn thread_skips_deleted_replies_downwards() {
        let mut nodes = branching();
        nodes[1].deleted = true;

        assert_eq!(thread_path(&nodes, "root").unwrap(), ["root", "b", "b1"]);
    }

    #[test]
    fn thread_of_unknown_message_is_none() {
        assert!(thread_path(&branching(), "zzz").is_none());
    }

    #[test]
    fn thread_stops_at_cycles() {
        let nodes = vec![node("x", Some("y")), node("y", Some("x"))];

        assert_eq!(thread_path(&nodes, "x").unwrap(), ["y", "x"]);
    }

    #[test]
    fn counts_checked() {
        assert_eq!(optional_count("n", 0).unwrap(), None);
        assert_eq!(optional_count("n", 5).unwrap(), Some(5));
        assert!(optional_count("n", -1).is_err());
    }
}
