//! Open WebUI chat export: a list of chats, each with `chat.history.messages`, an object from
//! message id to a message with `parentId` and `childrenIds`. The `parentId` links are
//! authoritative and `childrenIds` is ignored.

use serde_json::{Map, Value};

use super::ParseError;
use super::json::{Object, child, index, invalid, kind};
use super::tree::{SourceConversation, SourceMessage, SourceNode};

/// Parses the whole file: an array of chats, or one chat object.
pub fn parse(root: &Value) -> Result<Vec<SourceConversation>, ParseError> {
    match root {
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(position, item)| conversation(&index("$", position), item))
            .collect(),
        Value::Object(_) => Ok(vec![conversation("$", root)?]),
        other => Err(invalid(
            "$",
            format!("expected a list of Open WebUI chats, found {}", kind(other)),
        )),
    }
}

fn conversation(path: &str, value: &Value) -> Result<SourceConversation, ParseError> {
    let item = Object::of(path, value)?;
    // An export entry wraps the chat document in `chat`; a bare chat document has `history`.
    let chat_field = item.object("chat")?;
    let chat = match &chat_field {
        Some((path, map)) => Object { path, map },
        None => item,
    };
    let (history_path, history) = chat
        .object("history")?
        .ok_or_else(|| invalid(&chat.path_of("history"), "is required"))?;
    let history = Object {
        path: &history_path,
        map: history,
    };
    let (messages_path, messages) = history
        .object("messages")?
        .ok_or_else(|| invalid(&history.path_of("messages"), "is required"))?;
    let mut nodes = Vec::with_capacity(messages.len());
    for (key, message) in messages {
        nodes.push(node_of(&child(&messages_path, key), key, message)?);
    }

    let title = match item.string("title")? {
        Some(title) => title,
        None => chat.string("title")?.unwrap_or_default(),
    };
    let mut details = Map::new();
    for (object, key) in [
        (&chat, "models"),
        (&history, "currentId"),
        (&item, "updated_at"),
        (&item, "pinned"),
        (&item, "folder_id"),
        (&item, "meta"),
    ] {
        if let Some(value) = object.get(key) {
            details.insert(key.to_string(), value.clone());
        }
    }
    Ok(SourceConversation {
        path: path.to_string(),
        id: item.id("id")?.unwrap_or_else(|| super::content_id(value)),
        title: title.to_string(),
        created_at: item.unix_time("created_at")?,
        archived: item.flag("archived")?,
        details,
        nodes,
    })
}

fn node_of(path: &str, key: &str, value: &Value) -> Result<SourceNode, ParseError> {
    let message = Object::of(path, value)?;
    let role = super::role(&message, "role")?;
    let content = message.string("content")?.unwrap_or_default().to_string();
    // Reasoning and tool calls appear twice: as HTML <details> blocks inside `content`, which
    // is what Open WebUI shows, and as the structured `output` list kept here.
    let mut content_details = Map::new();
    if let Some(output) = message.get("output") {
        content_details.insert("output".into(), output.clone());
    }
    let (mut prompt_tokens, mut completion_tokens) = (None, None);
    if let Some((usage_path, usage)) = message.object("usage")? {
        let usage = Object {
            path: &usage_path,
            map: usage,
        };
        prompt_tokens = usage.count("prompt_tokens")?;
        completion_tokens = usage.count("completion_tokens")?;
    }
    Ok(SourceNode {
        path: path.to_string(),
        id: key.to_string(),
        parent_id: message.id("parentId")?,
        message: Some(SourceMessage {
            role,
            content,
            content_type: "text".into(),
            model: message.string("model")?.map(str::to_string),
            created_at: message.unix_time("timestamp")?,
            finish_reason: None,
            prompt_tokens,
            completion_tokens,
            hidden: false,
            content_details,
            source_fields: message.without(&[
                "id",
                "parentId",
                "childrenIds",
                "role",
                "content",
                "output",
                "model",
                "timestamp",
            ]),
        }),
    })
}
