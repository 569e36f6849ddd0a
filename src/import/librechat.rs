//! LibreChat export: a conversation object with either `messagesTree`, where each message
//! contains its replies in `children`, or a flat `messages` list linked by `parentMessageId`.
//! In the nested form the nesting is authoritative; in the flat form `parentMessageId` is.

use serde_json::{Map, Value};

use super::ParseError;
use super::json::{Object, index, invalid, kind};
use super::tree::{SourceConversation, SourceMessage, SourceNode};

/// The `parentMessageId` LibreChat gives root messages.
const NO_PARENT: &str = "00000000-0000-0000-0000-000000000000";

/// Parses the whole file: one conversation object, or an array of them.
pub fn parse(root: &Value) -> Result<Vec<SourceConversation>, ParseError> {
    match root {
        Value::Object(_) => Ok(vec![conversation("$", root)?]),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(position, item)| conversation(&index("$", position), item))
            .collect(),
        other => Err(invalid(
            "$",
            format!(
                "expected a LibreChat conversation object, found {}",
                kind(other)
            ),
        )),
    }
}

fn conversation(path: &str, value: &Value) -> Result<SourceConversation, ParseError> {
    let object = Object::of(path, value)?;
    let options_field = object.object("options")?;
    let options = options_field
        .as_ref()
        .map(|(path, map)| Object { path, map });
    // Messages name their model only sometimes; the conversation's options always do.
    let default_model = match &options {
        Some(options) => options.string("model")?,
        None => None,
    };
    let default_model = match default_model {
        Some(model) => Some(model),
        None => object.string("model")?,
    };

    let mut nodes = Vec::new();
    if let Some(tree) = object.array("messagesTree")? {
        let tree_path = object.path_of("messagesTree");
        // The nesting can be thousands of levels deep, so walk it with an explicit stack.
        let mut pending: Vec<(String, &Value, Option<String>)> = tree
            .iter()
            .enumerate()
            .rev()
            .map(|(position, item)| (index(&tree_path, position), item, None))
            .collect();
        while let Some((path, item, parent)) = pending.pop() {
            let node = node_of(&Object::of(&path, item)?, parent, default_model)?;
            let children_path = super::json::child(&path, "children");
            let children = match item.get("children") {
                None | Some(Value::Null) => &[][..],
                Some(Value::Array(children)) => children.as_slice(),
                Some(other) => {
                    return Err(invalid(
                        &children_path,
                        format!("expected an array, found {}", kind(other)),
                    ));
                }
            };
            for (position, child) in children.iter().enumerate().rev() {
                pending.push((
                    index(&children_path, position),
                    child,
                    Some(node.id.clone()),
                ));
            }
            nodes.push(node);
        }
    } else if let Some(messages) = object.array("messages")? {
        let list_path = object.path_of("messages");
        for (position, item) in messages.iter().enumerate() {
            let path = index(&list_path, position);
            let message = Object::of(&path, item)?;
            let parent = message
                .id("parentMessageId")?
                .filter(|parent| parent != NO_PARENT);
            nodes.push(node_of(&message, parent, default_model)?);
        }
    } else {
        return Err(invalid(
            path,
            "has neither `messagesTree` nor `messages`; expected one of them",
        ));
    }

    let mut details = Map::new();
    for key in ["endpoint", "endpointType", "options", "exportAt"] {
        if let Some(value) = object.get(key) {
            details.insert(key.to_string(), value.clone());
        }
    }
    Ok(SourceConversation {
        path: path.to_string(),
        id: object
            .id("conversationId")?
            .unwrap_or_else(|| super::content_id(value)),
        title: object.string("title")?.unwrap_or_default().to_string(),
        created_at: object.iso_time("createdAt")?,
        archived: object.flag("isArchived")?,
        details,
        nodes,
    })
}

fn node_of(
    message: &Object<'_>,
    parent: Option<String>,
    default_model: Option<&str>,
) -> Result<SourceNode, ParseError> {
    let id = match message.id("messageId")? {
        Some(id) => id,
        None => message
            .id("_id")?
            .ok_or_else(|| invalid(&message.path_of("messageId"), "is required"))?,
    };
    let from_user = message.flag("isCreatedByUser")?;
    let role = if from_user { "user" } else { "assistant" };
    let model = match message.string("model")? {
        Some(model) => Some(model.to_string()),
        None if !from_user => default_model.map(str::to_string),
        None => None,
    };

    let mut text = message.string("text")?.unwrap_or_default().to_string();
    let mut content_details = Map::new();
    // Agent conversations keep their turns as a typed `content` list (text, reasoning, tool
    // calls); the list is kept whole, and its text parts become the content when `text` is
    // empty.
    if let Some(parts) = message.array("content")? {
        if text.trim().is_empty() {
            text = parts
                .iter()
                .filter(|part| part.get("type").and_then(Value::as_str) == Some("text"))
                .filter_map(|part| match part.get("text") {
                    Some(Value::String(text)) => Some(text.as_str()),
                    Some(Value::Object(text)) => text.get("value").and_then(Value::as_str),
                    _ => None,
                })
                .collect::<Vec<_>>()
                .join("\n\n");
        }
        content_details.insert("content".into(), Value::Array(parts.clone()));
    }
    Ok(SourceNode {
        path: message.path.to_string(),
        id,
        parent_id: parent,
        message: Some(SourceMessage {
            role,
            content: text,
            content_type: "text".into(),
            model,
            created_at: message.iso_time("createdAt")?,
            finish_reason: message.string("finish_reason")?.map(str::to_string),
            prompt_tokens: None,
            completion_tokens: None,
            hidden: false,
            content_details,
            source_fields: message.without(&[
                "messageId",
                "parentMessageId",
                "conversationId",
                "children",
                "text",
                "content",
                "createdAt",
                "model",
                "isCreatedByUser",
                "finish_reason",
            ]),
        }),
    })
}
