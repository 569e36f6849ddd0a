//! The tree model every format parses into, and the checks and rewrites shared by all of
//! them: duplicate ids, cycles, missing parents, skipped nodes and inherited times.

use std::collections::HashMap;

use chrono::NaiveDateTime;
use serde_json::{Map, Value};

use super::ParseError;
use super::json::invalid;

/// Largest message content, 1 MiB of UTF-8, the same limit as AddMessage.
pub const MAX_CONTENT_BYTES: usize = 1024 * 1024;
/// Maximum session title length, in characters (the column is `VARCHAR(500)`).
const MAX_TITLE_CHARS: usize = 500;
/// Maximum model name length, in characters (the column is `VARCHAR(255)`).
const MAX_MODEL_CHARS: usize = 255;
/// Maximum content type and finish reason length, in characters (the columns are `VARCHAR(64)`).
const MAX_SHORT_CHARS: usize = 64;

/// A conversation as a format parser read it, before the shared checks.
#[derive(Debug)]
pub struct SourceConversation {
    /// JSON path of the conversation, for errors.
    pub path: String,
    /// Id of the conversation in the file.
    pub id: String,
    pub title: String,
    pub created_at: Option<NaiveDateTime>,
    pub archived: bool,
    /// Fields of the conversation kept in the session's metadata under `import`.
    pub details: Map<String, Value>,
    /// Every node in file order, messages and structural nodes alike.
    pub nodes: Vec<SourceNode>,
}

/// One node of a conversation tree.
#[derive(Debug)]
pub struct SourceNode {
    /// JSON path of the node, for errors.
    pub path: String,
    pub id: String,
    /// Id of the parent node in the file, `None` for a root.
    pub parent_id: Option<String>,
    /// `None` for a node that carries no message, such as a ChatGPT root.
    pub message: Option<SourceMessage>,
}

/// The message of a node.
#[derive(Debug, Default)]
pub struct SourceMessage {
    /// One of `user`, `assistant`, `system`, `tool`.
    pub role: &'static str,
    pub content: String,
    pub content_type: String,
    pub model: Option<String>,
    pub created_at: Option<NaiveDateTime>,
    pub finish_reason: Option<String>,
    pub prompt_tokens: Option<i32>,
    pub completion_tokens: Option<i32>,
    /// Whether the source marks the message as not shown to the user.
    pub hidden: bool,
    /// Parts of the content that are not in `content`, such as a quote's URL or a reasoning
    /// block. A message with empty `content` and no details is skipped as empty.
    pub content_details: Map<String, Value>,
    /// The remaining fields of the source message, kept verbatim.
    pub source_fields: Map<String, Value>,
}

/// A conversation ready to store.
#[derive(Debug)]
pub struct Conversation {
    pub id: String,
    pub title: String,
    pub created_at: NaiveDateTime,
    pub archived: bool,
    /// The session's metadata document.
    pub metadata: Map<String, Value>,
    /// Messages in file order. Each parent comes from the same conversation.
    pub messages: Vec<ImportMessage>,
    /// Nodes that were not stored as messages.
    pub skipped_nodes: usize,
    /// Messages whose parent id names no node of the conversation.
    pub reattached_messages: usize,
}

/// A message ready to store.
#[derive(Debug)]
pub struct ImportMessage {
    /// Id of the message in the file.
    pub id: String,
    /// Id in the file of the nearest ancestor that is stored, `None` for a root message.
    pub parent_id: Option<String>,
    pub role: &'static str,
    pub content: String,
    pub content_type: String,
    pub model: Option<String>,
    pub created_at: NaiveDateTime,
    pub finish_reason: Option<String>,
    pub prompt_tokens: Option<i32>,
    pub completion_tokens: Option<i32>,
    /// The message's metadata document.
    pub metadata: Map<String, Value>,
}

impl SourceMessage {
    fn is_empty(&self) -> bool {
        self.content.trim().is_empty() && self.content_details.values().all(is_blank)
    }
}

fn is_blank(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(text) => text.trim().is_empty(),
        Value::Array(items) => items.iter().all(is_blank),
        Value::Object(map) => map.values().all(is_blank),
        Value::Bool(_) | Value::Number(_) => false,
    }
}

fn check_length(path: &str, value: &str, max: usize, what: &str) -> Result<(), ParseError> {
    let length = value.chars().count();
    if length > max {
        return Err(invalid(
            path,
            format!("the {what} is {length} characters long; the limit is {max}"),
        ));
    }
    Ok(())
}

/// Checks a parsed conversation and turns it into the form that is stored.
///
/// - A repeated node id is an error, because either node could be the parent its replies mean.
/// - A cycle of parent links is an error that lists the cycle.
/// - A parent id that names no node makes the message a root, counted in
///   `reattached_messages`; the metadata keeps the missing id as `import.missing_parent_id`.
/// - Nodes without a message, hidden messages and messages without content are skipped, and
///   their replies attach to the nearest stored ancestor.
/// - A message without a time takes the time of its nearest stored ancestor, else the
///   conversation's, else `now`.
pub fn resolve(
    source: SourceConversation,
    format: &str,
    now: NaiveDateTime,
) -> Result<Conversation, ParseError> {
    check_length(
        &super::json::child(&source.path, "title"),
        &source.title,
        MAX_TITLE_CHARS,
        "title",
    )?;
    let ids: Vec<String> = source.nodes.iter().map(|node| node.id.clone()).collect();
    let mut by_id: HashMap<&str, usize> = HashMap::with_capacity(ids.len());
    for (position, node) in source.nodes.iter().enumerate() {
        if let Some(first) = by_id.insert(ids[position].as_str(), position) {
            return Err(invalid(
                &node.path,
                format!(
                    "the message id {:?} is also used at {}; ids must be unique in a conversation",
                    node.id, source.nodes[first].path
                ),
            ));
        }
    }
    let parent_of: Vec<Option<usize>> = source
        .nodes
        .iter()
        .map(|node| {
            node.parent_id
                .as_deref()
                .and_then(|id| by_id.get(id).copied())
        })
        .collect();
    check_cycles(&source.nodes, &parent_of)?;

    let kept: Vec<bool> = source
        .nodes
        .iter()
        .map(|node| {
            node.message
                .as_ref()
                .is_some_and(|message| !message.hidden && !message.is_empty())
        })
        .collect();
    let stored_parent = nearest_kept_ancestors(&parent_of, &kept);

    for (position, node) in source.nodes.iter().enumerate() {
        if let Some(message) = node.message.as_ref().filter(|_| kept[position]) {
            if message.content.len() > MAX_CONTENT_BYTES {
                return Err(invalid(
                    &node.path,
                    format!(
                        "the content is {} bytes; the limit is {MAX_CONTENT_BYTES} bytes (1 MiB)",
                        message.content.len()
                    ),
                ));
            }
            check_length(
                &node.path,
                &message.content_type,
                MAX_SHORT_CHARS,
                "content type",
            )?;
            if let Some(model) = &message.model {
                check_length(&node.path, model, MAX_MODEL_CHARS, "model name")?;
            }
            if let Some(reason) = &message.finish_reason {
                check_length(&node.path, reason, MAX_SHORT_CHARS, "finish reason")?;
            }
        }
    }

    let times = inherited_times(&source, &stored_parent, &kept, now);
    let skipped_nodes = kept.iter().filter(|kept| !**kept).count();
    let mut reattached_messages = 0;
    let mut messages = Vec::new();
    for (position, node) in source.nodes.into_iter().enumerate() {
        if !kept[position] {
            continue;
        }
        let Some(message) = node.message else {
            continue;
        };
        let mut import = Map::new();
        import.insert("source".into(), format.into());
        import.insert("message_id".into(), node.id.clone().into());
        if let (Some(parent_id), None) = (&node.parent_id, parent_of[position]) {
            reattached_messages += 1;
            import.insert("missing_parent_id".into(), parent_id.clone().into());
        }
        let mut metadata = Map::new();
        metadata.insert("import".into(), Value::Object(import));
        if !message.content_details.is_empty() {
            metadata.insert("content".into(), Value::Object(message.content_details));
        }
        if !message.source_fields.is_empty() {
            metadata.insert("source".into(), Value::Object(message.source_fields));
        }
        messages.push(ImportMessage {
            id: node.id,
            parent_id: stored_parent[position].map(|parent| ids[parent].clone()),
            role: message.role,
            content: message.content,
            content_type: message.content_type,
            model: message.model,
            created_at: times[position],
            finish_reason: message.finish_reason,
            prompt_tokens: message.prompt_tokens,
            completion_tokens: message.completion_tokens,
            metadata,
        });
    }

    let created_at = source
        .created_at
        .or_else(|| messages.iter().map(|message| message.created_at).min())
        .unwrap_or(now);
    let mut import = source.details;
    import.insert("source".into(), format.into());
    import.insert("conversation_id".into(), source.id.clone().into());
    let mut metadata = Map::new();
    metadata.insert("import".into(), Value::Object(import));
    Ok(Conversation {
        id: source.id,
        title: source.title,
        created_at,
        archived: source.archived,
        metadata,
        messages,
        skipped_nodes,
        reattached_messages,
    })
}

/// Fails when parent links form a cycle, naming the nodes on it.
fn check_cycles(nodes: &[SourceNode], parent_of: &[Option<usize>]) -> Result<(), ParseError> {
    const NEW: u8 = 0;
    const ON_PATH: u8 = 1;
    const DONE: u8 = 2;
    let mut state = vec![NEW; nodes.len()];
    for start in 0..nodes.len() {
        let mut path = Vec::new();
        let mut current = Some(start);
        while let Some(node) = current {
            match state[node] {
                DONE => break,
                ON_PATH => {
                    let begin = path.iter().position(|n| *n == node).unwrap_or(0);
                    let mut names: Vec<&str> = path[begin..]
                        .iter()
                        .map(|n: &usize| nodes[*n].id.as_str())
                        .collect();
                    names.push(nodes[node].id.as_str());
                    return Err(invalid(
                        &nodes[node].path,
                        format!(
                            "the parent links form a cycle ({}); every chain of parents must \
                             end at a root",
                            names.join(" -> ")
                        ),
                    ));
                }
                _ => {
                    state[node] = ON_PATH;
                    path.push(node);
                    current = parent_of[node];
                }
            }
        }
        for node in path {
            state[node] = DONE;
        }
    }
    Ok(())
}

/// Returns for each node its nearest strict ancestor that is kept. `parent_of` must be
/// acyclic.
fn nearest_kept_ancestors(parent_of: &[Option<usize>], kept: &[bool]) -> Vec<Option<usize>> {
    let mut result: Vec<Option<Option<usize>>> = vec![None; parent_of.len()];
    for start in 0..parent_of.len() {
        // Walk up to a kept parent, a root or a node already resolved, then fill the chain.
        let mut chain = Vec::new();
        let mut node = start;
        let answer = loop {
            if let Some(known) = result[node] {
                break known;
            }
            match parent_of[node] {
                None => {
                    chain.push(node);
                    break None;
                }
                Some(parent) if kept[parent] => {
                    chain.push(node);
                    break Some(parent);
                }
                Some(parent) => {
                    chain.push(node);
                    node = parent;
                }
            }
        };
        // Every node of the chain below a skipped node has the same nearest kept ancestor.
        for node in chain {
            result[node] = Some(answer);
        }
    }
    result.into_iter().map(Option::flatten).collect()
}

/// Returns the stored time of each kept node: its own, else its nearest stored ancestor's,
/// else the conversation's, else `now`. Entries of skipped nodes are unused.
fn inherited_times(
    source: &SourceConversation,
    stored_parent: &[Option<usize>],
    kept: &[bool],
    now: NaiveDateTime,
) -> Vec<NaiveDateTime> {
    let fallback = source.created_at.unwrap_or(now);
    let own = |node: usize| {
        source.nodes[node]
            .message
            .as_ref()
            .and_then(|message| message.created_at)
    };
    let mut times: Vec<Option<NaiveDateTime>> = vec![None; source.nodes.len()];
    for start in (0..source.nodes.len()).filter(|node| kept[*node]) {
        let mut chain = Vec::new();
        let mut node = start;
        let time = loop {
            if let Some(time) = times[node].or_else(|| own(node)) {
                break time;
            }
            chain.push(node);
            match stored_parent[node] {
                Some(parent) => node = parent,
                None => break fallback,
            }
        };
        times[node] = Some(time);
        for node in chain {
            times[node] = Some(time);
        }
    }
    times
        .into_iter()
        .map(|time| time.unwrap_or(fallback))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn time(seconds: i64) -> NaiveDateTime {
        chrono::DateTime::from_timestamp(seconds, 0)
            .unwrap()
            .naive_utc()
    }

    fn node(id: &str, parent: Option<&str>, text: Option<&str>) -> SourceNode {
        SourceNode {
            path: format!("$.{id}"),
            id: id.to_string(),
            parent_id: parent.map(str::to_string),
            message: text.map(|text| SourceMessage {
                role: "user",
                content: text.to_string(),
                content_type: "text".into(),
                ..SourceMessage::default()
            }),
        }
    }

    fn conversation(nodes: Vec<SourceNode>) -> SourceConversation {
        SourceConversation {
            path: "$".into(),
            id: "c".into(),
            title: "t".into(),
            created_at: Some(time(1_000)),
            archived: false,
            details: Map::new(),
            nodes,
        }
    }

    fn parents(conversation: &Conversation) -> Vec<(String, Option<String>)> {
        conversation
            .messages
            .iter()
            .map(|m| (m.id.clone(), m.parent_id.clone()))
            .collect()
    }

    #[test]
    fn skipped_nodes_pass_children_up() {
        let source = conversation(vec![
            node("root", None, None),
            node("hidden", Some("root"), Some("")),
            node("a", Some("hidden"), Some("hello")),
            node("b", Some("a"), Some("reply one")),
            node("c", Some("a"), Some("reply two")),
        ]);

        let resolved = resolve(source, "chatgpt", time(5_000)).unwrap();

        assert_eq!(resolved.skipped_nodes, 2);
        assert_eq!(
            parents(&resolved),
            [
                ("a".to_string(), None),
                ("b".to_string(), Some("a".to_string())),
                ("c".to_string(), Some("a".to_string())),
            ]
        );
    }

    #[test]
    fn cycle_rejected_with_members() {
        let source = conversation(vec![
            node("a", Some("c"), Some("1")),
            node("b", Some("a"), Some("2")),
            node("c", Some("b"), Some("3")),
        ]);

        let error = resolve(source, "chatgpt", time(0)).unwrap_err();

        assert!(error.reason.contains("cycle"), "{error}");
        assert!(error.reason.contains("a -> c -> b -> a"), "{error}");
    }

    #[test]
    fn duplicate_id_rejected() {
        let source = conversation(vec![node("a", None, Some("1")), node("a", None, Some("2"))]);

        let error = resolve(source, "librechat", time(0)).unwrap_err();

        assert!(error.reason.contains("also used at $.a"), "{error}");
    }

    #[test]
    fn missing_parent_becomes_root() {
        let source = conversation(vec![node("a", Some("gone"), Some("1"))]);

        let resolved = resolve(source, "openwebui", time(0)).unwrap();

        assert_eq!(resolved.reattached_messages, 1);
        assert_eq!(resolved.messages[0].parent_id, None);
        assert_eq!(
            resolved.messages[0].metadata["import"]["missing_parent_id"],
            "gone"
        );
    }

    #[test]
    fn missing_time_inherited_from_parent() {
        let mut nodes = vec![node("a", None, Some("1")), node("b", Some("a"), Some("2"))];
        nodes[0].message.as_mut().unwrap().created_at = Some(time(2_000));

        let resolved = resolve(conversation(nodes), "chatgpt", time(9_000)).unwrap();

        assert_eq!(resolved.messages[1].created_at, time(2_000));
    }

    #[test]
    fn content_details_keep_message() {
        let mut nodes = vec![node("a", None, Some(""))];
        nodes[0]
            .message
            .as_mut()
            .unwrap()
            .content_details
            .insert("url".into(), "https://example.com".into());

        let resolved = resolve(conversation(nodes), "chatgpt", time(0)).unwrap();

        assert_eq!(resolved.messages.len(), 1);
    }
}
