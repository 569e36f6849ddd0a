//! Importing conversations exported from other chat products: ChatGPT, Open WebUI and
//! LibreChat.
//!
//! Each format has a parser that reads the JSON document into the common tree model of
//! [`tree`]; [`tree::resolve`] then applies the rules every format shares, and [`store`]
//! writes the result in one transaction. docs/importing-conversations.md describes the
//! mapping for users.

mod chatgpt;
pub mod command;
mod json;
mod librechat;
mod openwebui;
pub mod store;
pub mod tree;

use chrono::NaiveDateTime;
use serde_json::Value;
use sha2::{Digest, Sha256};

use self::json::{Object, invalid};
use self::tree::{Conversation, SourceConversation};

/// Stack size of the thread that parses a file. Parsing recurses once per nesting level of the
/// JSON document, up to [`json::MAX_DEPTH`] levels, and so does dropping the parsed document.
pub const PARSE_STACK_BYTES: usize = 256 * 1024 * 1024;

/// The product that wrote an export file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    ChatGpt,
    OpenWebUi,
    LibreChat,
}

impl Format {
    /// Returns the name stored in metadata and accepted by `ally import conversations --format`.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::ChatGpt => "chatgpt",
            Format::OpenWebUi => "openwebui",
            Format::LibreChat => "librechat",
        }
    }

    pub fn parse(name: &str) -> Option<Format> {
        match name {
            "chatgpt" => Some(Format::ChatGpt),
            "openwebui" => Some(Format::OpenWebUi),
            "librechat" => Some(Format::LibreChat),
            _ => None,
        }
    }
}

/// Why a file cannot be imported, and where: a line and column for JSON syntax, else the JSON
/// path of the offending value, such as `$[0].mapping["a1"].message.author.role`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{position}: {reason}")]
pub struct ParseError {
    pub position: String,
    pub reason: String,
}

/// The conversations of one file, checked and ready to store.
#[derive(Debug)]
pub struct Export {
    pub format: Format,
    pub conversations: Vec<Conversation>,
}

/// Parses an export file. With `format` unset, the format is detected from the JSON shape.
/// Runs on the calling thread, which needs a stack of [`PARSE_STACK_BYTES`], as
/// [`parse_on_own_thread`] provides.
pub fn parse(
    data: &[u8],
    format: Option<Format>,
    now: NaiveDateTime,
) -> Result<Export, ParseError> {
    let root = json::parse(data)?;
    let format = match format {
        Some(format) => format,
        None => detect(&root)?,
    };
    let sources = match format {
        Format::ChatGpt => chatgpt::parse(&root),
        Format::OpenWebUi => openwebui::parse(&root),
        Format::LibreChat => librechat::parse(&root),
    }?;
    drop(root);

    check_unique_conversations(&sources)?;
    let conversations = sources
        .into_iter()
        .map(|source| tree::resolve(source, format.as_str(), now))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Export {
        format,
        conversations,
    })
}

/// Runs [`parse`] on a new thread with a stack of [`PARSE_STACK_BYTES`], so that deeply nested
/// files cannot overflow the caller's stack, and without blocking an async runtime.
pub async fn parse_on_own_thread(
    data: Vec<u8>,
    format: Option<Format>,
    now: NaiveDateTime,
) -> Result<Result<Export, ParseError>, std::io::Error> {
    let (sender, receiver) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("conversation-import".into())
        .stack_size(PARSE_STACK_BYTES)
        .spawn(move || {
            let _ = sender.send(parse(&data, format, now));
        })?;
    receiver
        .await
        .map_err(|_| std::io::Error::other("the conversation import parser thread panicked"))
}

/// Detects the format from the JSON shape of the file, or of its first element when it is an
/// array. An empty array is a ChatGPT file without conversations.
fn detect(root: &Value) -> Result<Format, ParseError> {
    let sample = match root {
        Value::Array(items) => match items.first() {
            Some(first) => first,
            None => return Ok(Format::ChatGpt),
        },
        other => other,
    };
    if let Value::Object(map) = sample {
        if map.contains_key("mapping") {
            return Ok(Format::ChatGpt);
        }
        let chat_history = map
            .get("chat")
            .and_then(|chat| chat.get("history"))
            .is_some();
        if chat_history || map.contains_key("history") {
            return Ok(Format::OpenWebUi);
        }
        if map.contains_key("messagesTree")
            || (map.contains_key("conversationId") && map.contains_key("messages"))
        {
            return Ok(Format::LibreChat);
        }
    }
    let position = if root.is_array() { "$[0]" } else { "$" };
    Err(invalid(
        position,
        "matches no supported export: expected a ChatGPT conversations.json (objects with \
         `mapping`), an Open WebUI chat export (objects with `chat.history.messages`) or a \
         LibreChat export (an object with `messagesTree` or `messages`); set the format \
         explicitly to see what is missing",
    ))
}

/// Fails when two conversations of the file have the same id, because both would be stored
/// as the same session.
fn check_unique_conversations(sources: &[SourceConversation]) -> Result<(), ParseError> {
    let mut seen = std::collections::HashMap::new();
    for source in sources {
        if let Some(first) = seen.insert(source.id.as_str(), source.path.as_str()) {
            return Err(invalid(
                &source.path,
                format!(
                    "the conversation id {:?} is also used at {first}; ids must be unique in a \
                     file",
                    source.id
                ),
            ));
        }
    }
    Ok(())
}

/// Reads a message role from `field` of `object`.
fn role(object: &Object<'_>, field: &str) -> Result<&'static str, ParseError> {
    let role = object.required_string(field)?;
    match role {
        "user" => Ok("user"),
        "assistant" => Ok("assistant"),
        "system" => Ok("system"),
        "tool" => Ok("tool"),
        other => Err(invalid(
            &object.path_of(field),
            format!("{other:?} is not a supported role; expected user, assistant, system or tool"),
        )),
    }
}

/// Returns an id for a conversation that has none in the file: a hash of its JSON text, so
/// that importing the same file again finds the same session.
fn content_id(value: &Value) -> String {
    let digest = Sha256::digest(value.to_string().as_bytes());
    let hex: String = digest[..16]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    format!("sha256:{hex}")
}
