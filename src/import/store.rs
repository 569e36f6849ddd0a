//! Storing parsed conversations as chat sessions of one user, all in one transaction.
//!
//! Ids are derived from the ids in the file, so a second import of the same conversation finds
//! its session and messages and stores only what is new. A session's id is a hash of the
//! tenant, the user, the format and the conversation id. A message's id is a hash of its
//! session id and its id in the file. Both are UUIDv8 strings.

use std::collections::{HashMap, HashSet};

use chrono::NaiveDateTime;
use diesel_async::AsyncConnection;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::Export;
use super::tree::Conversation;
use crate::audit::{self, AuditEvent};
use crate::auth::RequestContext;
use crate::db::retry::with_retry;
use crate::db::{Database, DbConnection};
use crate::grpc::ApiError;
use crate::grpc::chat::count_new_messages;
use crate::models::{self, ChatSession, Message};
use crate::plans::Plan;
use crate::repo;

/// Counts of one import, and the outcome of each conversation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub conversations_imported: usize,
    pub conversations_present: usize,
    pub messages_imported: usize,
    pub messages_present: usize,
    pub skipped_nodes: usize,
    pub reattached_messages: usize,
    /// One entry per conversation, in file order.
    pub conversations: Vec<Outcome>,
}

/// The outcome of importing one conversation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub session_id: String,
    /// Id of the conversation in the file.
    pub source_id: String,
    pub title: String,
    /// Whether this import created the session.
    pub created: bool,
    pub messages_imported: usize,
    pub messages_present: usize,
    /// Messages left out because the session is deleted or archived.
    pub messages_not_added: usize,
}

/// Hashes the parts, each prefixed with its length so that no two lists of parts collide, into
/// a UUIDv8.
fn derived_id(parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    let digest = hasher.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes)
        .into_uuid()
        .to_string()
}

/// Returns the id of the session that stores conversation `conversation_id` of a file in
/// `format` for one user.
pub fn session_id(tenant_id: &str, user_id: &str, format: &str, conversation_id: &str) -> String {
    derived_id(&[
        "ally.import.session",
        tenant_id,
        user_id,
        format,
        conversation_id,
    ])
}

/// Returns the id of the message that stores message `message_id` of a file in a session.
pub fn message_id(session_id: &str, message_id: &str) -> String {
    derived_id(&["ally.import.message", session_id, message_id])
}

/// Stores the conversations of `export` as sessions of `user_id`, with one audit entry, in one
/// transaction. Conversations and messages stored by an earlier import are left as they are.
/// Fails with RESOURCE_EXHAUSTED when the new sessions or messages would pass the plan's
/// quotas, and then stores nothing.
pub async fn store(
    database: &Database,
    context: &RequestContext,
    tenant_id: &str,
    user_id: &str,
    export: &Export,
) -> Result<Summary, ApiError> {
    with_retry(|| async {
        let mut conn = database.write().await?;
        conn.transaction(async |conn| {
            store_in_transaction(conn, context, tenant_id, user_id, export).await
        })
        .await
    })
    .await
}

/// The rows one import writes.
#[derive(Default)]
struct Changes {
    sessions: Vec<ChatSession>,
    messages: Vec<Message>,
    /// Existing sessions that receive messages: id, added count and new `last_message_at`.
    grown: Vec<(String, i64, Option<NaiveDateTime>)>,
}

async fn store_in_transaction(
    conn: &mut DbConnection,
    context: &RequestContext,
    tenant_id: &str,
    user_id: &str,
    export: &Export,
) -> Result<Summary, ApiError> {
    let now = models::now();
    let format = export.format.as_str();
    // Serializes imports and session creation of the tenant, so that the quota checks below
    // hold until commit and two imports of one file cannot both insert its sessions.
    repo::tenants::lock_for_update(conn, tenant_id).await?;

    let session_ids: Vec<String> = export
        .conversations
        .iter()
        .map(|conversation| session_id(tenant_id, user_id, format, &conversation.id))
        .collect();
    let existing: HashMap<String, ChatSession> =
        repo::imports::find_sessions(conn, tenant_id, &session_ids)
            .await?
            .into_iter()
            .map(|session| (session.id.clone(), session))
            .collect();

    let mut summary = Summary::default();
    let mut changes = Changes::default();
    for (conversation, session_id) in export.conversations.iter().zip(&session_ids) {
        summary.skipped_nodes += conversation.skipped_nodes;
        summary.reattached_messages += conversation.reattached_messages;
        let outcome = match existing.get(session_id) {
            None => plan_new_session(
                conversation,
                session_id,
                tenant_id,
                user_id,
                now,
                &mut changes,
            )?,
            Some(session) => {
                plan_existing_session(conn, conversation, session, user_id, now, &mut changes)
                    .await?
            }
        };
        if outcome.created {
            summary.conversations_imported += 1;
        } else {
            summary.conversations_present += 1;
        }
        summary.messages_imported += outcome.messages_imported;
        summary.messages_present += outcome.messages_present;
        summary.conversations.push(outcome);
    }

    check_quotas(conn, tenant_id, &changes).await?;
    repo::imports::insert_sessions(conn, &changes.sessions).await?;
    repo::imports::insert_messages(conn, &changes.messages).await?;
    for (id, added, last_message_at) in &changes.grown {
        repo::imports::count_imported_messages(conn, tenant_id, id, *added, *last_message_at, now)
            .await?;
    }
    if !changes.sessions.is_empty() || !changes.messages.is_empty() {
        let entry = audit::entry(
            context,
            tenant_id,
            AuditEvent::change("chat.conversations_imported")
                .detail("format", format)
                .detail("user_id", user_id)
                .detail("conversations_imported", summary.conversations_imported)
                .detail("conversations_present", summary.conversations_present)
                .detail("messages_imported", summary.messages_imported)
                .detail("messages_present", summary.messages_present)
                .detail("skipped_nodes", summary.skipped_nodes)
                .detail("reattached_messages", summary.reattached_messages),
        );
        repo::audit::insert(conn, &entry).await?;
    }
    if !changes.messages.is_empty() {
        let adding = i64::try_from(changes.messages.len()).unwrap_or(i64::MAX);
        count_new_messages(conn, tenant_id, now, adding).await?;
    }
    Ok(summary)
}

fn message_row(
    message: &super::tree::ImportMessage,
    session_id: &str,
    tenant_id: &str,
    user_id: &str,
    now: NaiveDateTime,
) -> Message {
    Message {
        tenant_id: tenant_id.to_string(),
        id: message_id(session_id, &message.id),
        session_id: session_id.to_string(),
        user_id: Some(user_id.to_string()),
        parent_id: message
            .parent_id
            .as_deref()
            .map(|parent| message_id(session_id, parent)),
        role: message.role.to_string(),
        content: message.content.clone(),
        content_type: message.content_type.clone(),
        model: message.model.clone(),
        prompt_tokens: message.prompt_tokens,
        completion_tokens: message.completion_tokens,
        latency_ms: None,
        finish_reason: message.finish_reason.clone(),
        metadata: Value::Object(message.metadata.clone()).to_string(),
        request_id: None,
        version: 1,
        created_at: message.created_at,
        updated_at: now,
        deleted_at: None,
    }
}

fn plan_new_session(
    conversation: &Conversation,
    session_id: &str,
    tenant_id: &str,
    user_id: &str,
    now: NaiveDateTime,
    changes: &mut Changes,
) -> Result<Outcome, ApiError> {
    let last_message_at = conversation
        .messages
        .iter()
        .map(|message| message.created_at)
        .max();
    changes.sessions.push(ChatSession {
        tenant_id: tenant_id.to_string(),
        id: session_id.to_string(),
        user_id: user_id.to_string(),
        title: conversation.title.clone(),
        status: if conversation.archived {
            "archived"
        } else {
            "active"
        }
        .to_string(),
        is_shared: false,
        share_token: None,
        share_expires_at: None,
        message_count: conversation.messages.len() as i64,
        last_message_at,
        metadata: Value::Object(conversation.metadata.clone()).to_string(),
        created_at: conversation.created_at,
        updated_at: now,
        deleted_at: None,
    });
    for message in &conversation.messages {
        changes
            .messages
            .push(message_row(message, session_id, tenant_id, user_id, now));
    }
    Ok(Outcome {
        session_id: session_id.to_string(),
        source_id: conversation.id.clone(),
        title: conversation.title.clone(),
        created: true,
        messages_imported: conversation.messages.len(),
        messages_present: 0,
        messages_not_added: 0,
    })
}

/// Plans the messages of a conversation whose session an earlier import stored: those not
/// stored yet are added, unless the session is deleted or archived.
async fn plan_existing_session(
    conn: &mut DbConnection,
    conversation: &Conversation,
    session: &ChatSession,
    user_id: &str,
    now: NaiveDateTime,
    changes: &mut Changes,
) -> Result<Outcome, ApiError> {
    let mut outcome = Outcome {
        session_id: session.id.clone(),
        source_id: conversation.id.clone(),
        title: session.title.clone(),
        created: false,
        messages_imported: 0,
        messages_present: 0,
        messages_not_added: 0,
    };
    let ids: Vec<String> = conversation
        .messages
        .iter()
        .map(|message| message_id(&session.id, &message.id))
        .collect();
    let present: HashSet<String> =
        repo::imports::existing_message_ids(conn, &session.tenant_id, &session.id, &ids)
            .await?
            .into_iter()
            .collect();
    outcome.messages_present = present.len();
    let missing: Vec<&super::tree::ImportMessage> = conversation
        .messages
        .iter()
        .zip(&ids)
        .filter(|(_, id)| !present.contains(*id))
        .map(|(message, _)| message)
        .collect();
    if missing.is_empty() {
        return Ok(outcome);
    }
    if session.deleted_at.is_some() || session.status != "active" {
        outcome.messages_not_added = missing.len();
        return Ok(outcome);
    }
    let mut last_message_at = session.last_message_at;
    for message in &missing {
        last_message_at = last_message_at.max(Some(message.created_at));
        changes.messages.push(message_row(
            message,
            &session.id,
            &session.tenant_id,
            user_id,
            now,
        ));
    }
    outcome.messages_imported = missing.len();
    changes
        .grown
        .push((session.id.clone(), missing.len() as i64, last_message_at));
    Ok(outcome)
}

/// Fails with RESOURCE_EXHAUSTED when the new sessions would take the tenant past its plan's
/// session quota. The monthly message quota is counted after the writes, by
/// [`count_new_messages`], like AddMessage does.
async fn check_quotas(
    conn: &mut DbConnection,
    tenant_id: &str,
    changes: &Changes,
) -> Result<(), ApiError> {
    if changes.sessions.is_empty() {
        return Ok(());
    }
    let tenant = repo::tenants::find(conn, tenant_id)
        .await?
        .ok_or(ApiError::NotFound { resource: "tenant" })?;
    let plan = Plan::parse(&tenant.plan).unwrap_or(Plan::Free);
    let quotas = plan.quotas();

    if let Some(limit) = quotas.chat_sessions
        && !changes.sessions.is_empty()
    {
        let live = repo::chat_sessions::count_live(conn, tenant_id).await?;
        let adding = changes.sessions.len() as i64;
        if live + adding > limit {
            return Err(ApiError::QuotaExceeded {
                subject: "tenant:chat_sessions".into(),
                description: format!(
                    "the import adds {adding} chat sessions, the tenant has {live} that are not \
                     deleted, and the {} plan allows {limit}; import fewer conversations, delete \
                     sessions or upgrade the plan",
                    plan.as_str()
                ),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_ids_are_uuid_v8() {
        let id = session_id("tenant", "user", "chatgpt", "conversation");
        let parsed = uuid::Uuid::parse_str(&id).unwrap();

        assert_eq!(parsed.get_version_num(), 8);
        assert_eq!(id, session_id("tenant", "user", "chatgpt", "conversation"));
    }

    #[test]
    fn derived_ids_differ_per_user() {
        assert_ne!(
            session_id("tenant", "user-a", "chatgpt", "c"),
            session_id("tenant", "user-b", "chatgpt", "c")
        );
        assert_ne!(message_id("s", "ab"), message_id("sa", "b"));
    }
}
