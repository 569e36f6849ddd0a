//! ChatGPT `conversations.json`: a list of conversations, each a `mapping` object from node id
//! to `{message, parent, children}`. The `parent` links are authoritative and `children` is
//! ignored, so the two cannot disagree.

use serde_json::{Map, Value};

use super::ParseError;
use super::json::{Object, child, index, invalid, kind};
use super::tree::{SourceConversation, SourceMessage, SourceNode};

/// Parses the whole file: an array of conversations, or one conversation object.
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
            format!(
                "expected a list of ChatGPT conversations, found {}",
                kind(other)
            ),
        )),
    }
}

fn conversation(path: &str, value: &Value) -> Result<SourceConversation, ParseError> {
    let object = Object::of(path, value)?;
    let id = match object.id("id")? {
        Some(id) => id,
        None => match object.id("conversation_id")? {
            Some(id) => id,
            None => super::content_id(value),
        },
    };
    let (mapping_path, mapping) = object
        .object("mapping")?
        .ok_or_else(|| invalid(&object.path_of("mapping"), "is required"))?;
    let mut nodes = Vec::with_capacity(mapping.len());
    for (key, node) in mapping {
        nodes.push(node_of(&child(&mapping_path, key), key, node)?);
    }

    let mut details = Map::new();
    for key in [
        "default_model_slug",
        "current_node",
        "update_time",
        "gizmo_id",
        "conversation_template_id",
    ] {
        if let Some(value) = object.get(key) {
            details.insert(key.to_string(), value.clone());
        }
    }
    Ok(SourceConversation {
        path: path.to_string(),
        id,
        title: object.string("title")?.unwrap_or_default().to_string(),
        created_at: object.unix_time("create_time")?,
        archived: object.flag("is_archived")?,
        details,
        nodes,
    })
}

fn node_of(path: &str, key: &str, value: &Value) -> Result<SourceNode, ParseError> {
    let node = Object::of(path, value)?;
    let message = match node.get("message") {
        None => None,
        Some(message) => Some(message_of(&node.path_of("message"), message)?),
    };
    Ok(SourceNode {
        path: path.to_string(),
        id: key.to_string(),
        parent_id: node.id("parent")?,
        message,
    })
}

fn message_of(path: &str, value: &Value) -> Result<SourceMessage, ParseError> {
    let message = Object::of(path, value)?;
    let (author_path, author) = message
        .object("author")?
        .ok_or_else(|| invalid(&message.path_of("author"), "is required"))?;
    let author = Object {
        path: &author_path,
        map: author,
    };
    let role = super::role(&author, "role")?;
    let metadata_field = message.object("metadata")?;
    let metadata = metadata_field
        .as_ref()
        .map(|(path, map)| Object { path, map });
    let (content_path, content) = message
        .object("content")?
        .ok_or_else(|| invalid(&message.path_of("content"), "is required"))?;
    let content = Object {
        path: &content_path,
        map: content,
    };
    let (text, content_type, content_details) = content_of(&content)?;

    let model = match &metadata {
        Some(metadata) => metadata.string("model_slug")?.map(str::to_string),
        None => None,
    };
    let hidden = match &metadata {
        Some(metadata) => metadata.flag("is_visually_hidden_from_conversation")?,
        None => false,
    };
    let mut finish_reason = None;
    if let Some(metadata) = &metadata
        && let Some((path, details)) = metadata.object("finish_details")?
    {
        let details = Object {
            path: &path,
            map: details,
        };
        finish_reason = details.string("type")?.map(str::to_string);
    }
    Ok(SourceMessage {
        role,
        content: text,
        content_type,
        model,
        created_at: message.unix_time("create_time")?,
        finish_reason,
        prompt_tokens: None,
        completion_tokens: None,
        hidden,
        content_details,
        source_fields: message.without(&["id", "content", "create_time"]),
    })
}

/// Splits a ChatGPT `content` object into the text stored as the message's content, its
/// `content_type`, and the remaining fields. Text comes from `parts` (the strings among them,
/// joined by blank lines), else `text` (code, quotes, execution output), else `result`
/// (browsing results). Non-string parts, such as image pointers, stay in the remaining fields
/// with the whole `parts` list.
fn content_of(content: &Object<'_>) -> Result<(String, String, Map<String, Value>), ParseError> {
    let content_type = content.required_string("content_type")?.to_string();
    if let Some(parts) = content.array("parts")? {
        let texts: Vec<&str> = parts.iter().filter_map(Value::as_str).collect();
        let details = if texts.len() == parts.len() && parts.len() <= 1 {
            content.without(&["content_type", "parts"])
        } else {
            content.without(&["content_type"])
        };
        return Ok((texts.join("\n\n"), content_type, details));
    }
    for field in ["text", "result"] {
        if let Some(text) = content.string(field)? {
            return Ok((
                text.to_string(),
                content_type,
                content.without(&["content_type", field]),
            ));
        }
    }
    Ok((
        String::new(),
        content_type,
        content.without(&["content_type"]),
    ))
}
