//! ChatService.ImportConversations through the generated client, and `ally import
//! conversations` through the binary, on both backends.
//!
//! The expected figures for the files in tests/fixtures/exports come from a separate Python 3
//! pass over the files, written while writing these tests. It loaded each file with
//! `json.load` and counted per conversation the `mapping` nodes that have a `message` without
//! `metadata.is_visually_hidden_from_conversation` (ChatGPT), the entries of
//! `chat.history.messages` (Open WebUI) or the nodes of `messagesTree` (LibreChat). It
//! formatted Unix times with `datetime.fromtimestamp(t, timezone.utc)` and copied ISO 8601
//! times from the file.

use std::collections::BTreeMap;
use std::process::{Command, Output};

use ally::proto::ally::v1 as pb;
use ally::schema::audit_logs;
use diesel::{ExpressionMethods, QueryDsl};
use diesel_async::RunQueryDsl;
use serde_json::json;
use tonic::Code;
use tonic::transport::Channel;
use tonic_types::StatusExt;

use crate::backend_tests;
use crate::common::clients::{Authed, Credential, create_tenant};
use crate::common::{TestBackend, TestDatabase, TestServer};

backend_tests!(
    chatgpt_export_imported,
    openwebui_export_imported,
    librechat_export_imported,
    branches_kept,
    empty_mapping_imported,
    missing_parent_becomes_root,
    cycle_rejected,
    duplicate_ids_rejected,
    huge_and_emoji_content,
    chunked_upload,
    second_import_changes_nothing,
    malformed_file_rejected,
    tenants_and_users_isolated,
    quotas_enforced,
    size_limit_enforced,
    import_command,
);

type Client = pb::chat_service_client::ChatServiceClient<Authed>;

fn chat(channel: &Channel, credential: Credential) -> Client {
    pb::chat_service_client::ChatServiceClient::with_interceptor(channel.clone(), credential)
}

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/tests/fixtures/exports/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|error| panic!("reading {path} failed: {error}"))
}

/// Starts a server and creates a tenant. Returns the server, the tenant id and the owner id.
async fn setup(backend: TestBackend) -> (TestServer, String, String) {
    let test = TestServer::start(backend).await;
    let created = create_tenant(&test.channel, "Importers", "importers").await;
    let tenant_id = created.tenant.expect("tenant").id;
    let owner_id = created.owner.expect("owner").id;
    (test, tenant_id, owner_id)
}

/// Streams `data` in chunks of `chunk` bytes, the format set in the first request only.
async fn import_chunked(
    client: &mut Client,
    data: &[u8],
    format: pb::ImportFormat,
    chunk: usize,
) -> Result<pb::ImportConversationsResponse, tonic::Status> {
    let requests: Vec<pb::ImportConversationsRequest> = data
        .chunks(chunk)
        .enumerate()
        .map(|(index, bytes)| pb::ImportConversationsRequest {
            format: if index == 0 { format.into() } else { 0 },
            data: bytes.to_vec(),
        })
        .collect();
    client
        .import_conversations(tokio_stream::iter(requests))
        .await
        .map(|response| response.into_inner())
}

/// Sends `data` in one request with the format detected.
async fn import(
    client: &mut Client,
    data: &[u8],
) -> Result<pb::ImportConversationsResponse, tonic::Status> {
    import_chunked(
        client,
        data,
        pb::ImportFormat::Unspecified,
        data.len().max(1),
    )
    .await
}

async fn import_json(
    client: &mut Client,
    value: serde_json::Value,
) -> Result<pb::ImportConversationsResponse, tonic::Status> {
    import(client, value.to_string().as_bytes()).await
}

async fn all_messages(client: &mut Client, session_id: &str) -> Vec<pb::Message> {
    client
        .list_messages(pb::ListMessagesRequest {
            session_id: session_id.to_string(),
            page_size: 1000,
            ..Default::default()
        })
        .await
        .expect("list messages")
        .into_inner()
        .messages
}

async fn thread(client: &mut Client, session_id: &str, message_id: &str) -> Vec<pb::Message> {
    client
        .list_messages(pb::ListMessagesRequest {
            session_id: session_id.to_string(),
            page_size: 1000,
            thread_message_id: message_id.to_string(),
            ..Default::default()
        })
        .await
        .expect("list thread")
        .into_inner()
        .messages
}

async fn sessions(client: &mut Client) -> Vec<pb::Session> {
    client
        .list_sessions(pb::ListSessionsRequest {
            page_size: 1000,
            show_deleted: true,
            ..Default::default()
        })
        .await
        .expect("list sessions")
        .into_inner()
        .sessions
}

async fn get_session(client: &mut Client, id: &str) -> Result<pb::Session, tonic::Status> {
    client
        .get_session(pb::GetSessionRequest { id: id.to_string() })
        .await
        .map(|response| response.into_inner().session.expect("session"))
}

/// Formats a timestamp as RFC 3339 with microseconds.
fn time(timestamp: &Option<prost_types::Timestamp>) -> String {
    let timestamp = timestamp.as_ref().expect("timestamp");
    chrono::DateTime::from_timestamp(timestamp.seconds, timestamp.nanos as u32)
        .expect("valid time")
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

/// Returns the metadata value at `path`, such as `["import", "message_id"]`.
fn metadata(message: &pb::Message, path: &[&str]) -> Option<serde_json::Value> {
    let mut value = struct_json(message.metadata.as_ref()?);
    for key in path {
        value = value.get(key)?.clone();
    }
    Some(value)
}

fn struct_json(value: &prost_types::Struct) -> serde_json::Value {
    serde_json::Value::Object(
        value
            .fields
            .iter()
            .map(|(key, value)| (key.clone(), value_json(value)))
            .collect(),
    )
}

fn value_json(value: &prost_types::Value) -> serde_json::Value {
    use prost_types::value::Kind;
    match &value.kind {
        Some(Kind::StringValue(text)) => json!(text),
        Some(Kind::NumberValue(number)) => json!(number),
        Some(Kind::BoolValue(flag)) => json!(flag),
        Some(Kind::StructValue(inner)) => struct_json(inner),
        Some(Kind::ListValue(list)) => {
            serde_json::Value::Array(list.values.iter().map(value_json).collect())
        }
        Some(Kind::NullValue(_)) | None => serde_json::Value::Null,
    }
}

/// Finds the stored message that has `source_id` in the file.
fn by_source_id<'a>(messages: &'a [pb::Message], source_id: &str) -> &'a pb::Message {
    messages
        .iter()
        .find(|message| metadata(message, &["import", "message_id"]) == Some(json!(source_id)))
        .unwrap_or_else(|| panic!("no message imported from {source_id}"))
}

fn count_by<F: Fn(&pb::Message) -> String>(
    messages: &[pb::Message],
    key: F,
) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for message in messages {
        *counts.entry(key(message)).or_insert(0) += 1;
    }
    counts
}

/// Asserts that `messages` form one chain in the given order: each message replies to the one
/// before it.
fn assert_chain(messages: &[pb::Message]) {
    assert_eq!(messages[0].parent_id, "", "the first message is a root");
    for pair in messages.windows(2) {
        assert_eq!(
            pair[1].parent_id, pair[0].id,
            "{} replies to {}",
            pair[1].id, pair[0].id
        );
    }
}

fn field_violation(status: &tonic::Status) -> (String, String) {
    let bad_request = status.get_details_bad_request().expect("BadRequest detail");
    let violation = &bad_request.field_violations[0];
    (violation.field.clone(), violation.description.clone())
}

async fn count_import_audit_entries(test: &TestServer, tenant_id: &str) -> i64 {
    let mut conn = test.server.database().read().await.expect("connection");
    audit_logs::table
        .filter(audit_logs::tenant_id.eq(tenant_id))
        .filter(audit_logs::event_type.eq("chat.conversations_imported"))
        .count()
        .get_result(&mut *conn)
        .await
        .expect("count audit entries")
}

/// A ChatGPT conversation of `nodes`, each `(id, parent, role, text)`; a `None` role makes a
/// node without a message. Node `i` is created at 1700000000 + i seconds.
fn chatgpt_conversation(
    id: &str,
    nodes: &[(&str, Option<&str>, Option<&str>, &str)],
) -> serde_json::Value {
    let mut mapping = serde_json::Map::new();
    for (index, (node_id, parent, role, text)) in nodes.iter().enumerate() {
        let message = role.map(|role| {
            json!({
                "id": node_id,
                "author": {"role": role},
                "create_time": 1_700_000_000 + index as i64,
                "content": {"content_type": "text", "parts": [text]},
                "metadata": {"model_slug": if role == "assistant" { Some("gpt-4o") } else { None }},
            })
        });
        mapping.insert(
            node_id.to_string(),
            json!({"id": node_id, "message": message, "parent": parent, "children": []}),
        );
    }
    json!({"id": id, "title": format!("conversation {id}"), "create_time": 1_700_000_000, "mapping": mapping})
}

async fn chatgpt_export_imported(backend: TestBackend) {
    let (test, tenant_id, owner_id) = setup(backend).await;
    let mut client = chat(
        &test.channel,
        Credential::user(&tenant_id, &owner_id, "owner"),
    );

    let response = import(&mut client, &fixture("chatgpt-export.json"))
        .await
        .expect("import");

    assert_eq!(response.format(), pb::ImportFormat::Chatgpt);
    assert_eq!(response.conversations_imported, 2);
    assert_eq!(response.conversations_present, 0);
    assert_eq!(response.messages_imported, 19);
    // Two roots without a message and two hidden system messages with one empty part.
    assert_eq!(response.skipped_nodes, 4);
    assert_eq!(response.reattached_messages, 0);
    let first = &response.conversations[0];
    assert_eq!(first.source_id, "d6523d1e-7ec3-474f-a363-0e9dffdb3d93");
    assert_eq!(first.title, "Conversation 1. Web Search");
    assert_eq!(first.messages_imported, 15);
    let second = &response.conversations[1];
    assert_eq!(second.source_id, "7c5ab593-dbab-43bd-862d-2c3c1eeebf6a");
    assert_eq!(second.messages_imported, 4);

    let session = get_session(&mut client, &first.session_id)
        .await
        .expect("session");
    assert_eq!(session.user_id, owner_id);
    assert_eq!(session.message_count, 15);
    assert_eq!(time(&session.create_time), "2024-01-07T12:18:35.775304Z");
    assert_eq!(
        time(&session.last_message_time),
        "2024-01-07T12:20:34.629284Z"
    );

    let messages = all_messages(&mut client, &first.session_id).await;
    assert_eq!(messages.len(), 15);
    let last = by_source_id(&messages, "88a0cf9f-e860-4b34-8e7e-65f8346f4862");
    let chain = thread(&mut client, &first.session_id, &last.id).await;
    assert_eq!(chain.len(), 15, "one linear thread");
    assert_chain(&chain);
    assert_eq!(
        chain[0].content,
        "What is the fuel consumption of vw  transporter with 8 people in l/km"
    );
    assert_eq!(chain[0].role(), pb::MessageRole::User);
    assert_eq!(time(&chain[0].create_time), "2024-01-07T12:18:35.776371Z");
    assert_eq!(chain[0].model, "");
    assert_eq!(chain[14].id, last.id);
    assert_eq!(time(&last.create_time), "2024-01-07T12:20:34.629284Z");
    assert_eq!(last.model, "gpt-4");
    assert_eq!(last.finish_reason, "stop");
    assert!(
        last.content
            .starts_with("The fuel consumption figures for the 2014 Volkswagen Transporter"),
        "{}",
        last.content
    );

    let types = count_by(&messages, |m| m.content_type.clone());
    assert_eq!(types.get("text"), Some(&6));
    assert_eq!(types.get("code"), Some(&4));
    assert_eq!(types.get("tether_quote"), Some(&3));
    assert_eq!(types.get("tether_browsing_display"), Some(&2));
    let roles = count_by(&messages, |m| format!("{:?}", m.role()));
    assert_eq!(roles.get("User"), Some(&3));
    assert_eq!(roles.get("Assistant"), Some(&7));
    assert_eq!(roles.get("Tool"), Some(&5));
    assert_eq!(
        roles.get("System"),
        None,
        "the hidden system message is skipped"
    );

    let quote = by_source_id(&messages, "b87c7f57-a6f4-4f4f-999f-38bd70981ae0");
    assert_eq!(quote.content_type, "tether_quote");
    assert_eq!(quote.role(), pb::MessageRole::Tool);
    assert_eq!(
        metadata(quote, &["content", "url"]),
        Some(json!(
            "https://www.ultimatespecs.com/car-specs/Volkswagen/118424/2021-Volkswagen-Transporter-T61-L2H1-20-TDI-110HP.html"
        ))
    );
    assert!(
        quote
            .content
            .starts_with("\nURL: https://www.ultimatespecs.com/")
    );
    let code = by_source_id(&messages, "412dd50f-40c9-4f21-9102-fe148eb41a0b");
    assert_eq!(code.content_type, "code");
    assert!(
        code.content
            .starts_with("search(\"Volkswagen Transporter fuel consumption")
    );
    assert_eq!(
        metadata(code, &["content", "language"]),
        Some(json!("unknown"))
    );

    let messages = all_messages(&mut client, &second.session_id).await;
    let last = by_source_id(&messages, "73a2fe12-36bd-4cc2-8460-8108d16cc42d");
    assert_eq!(last.model, "text-davinci-002-render-sha");
    assert_eq!(time(&last.create_time), "2023-10-15T12:32:03.970743Z");
    assert_chain(&thread(&mut client, &second.session_id, &last.id).await);
    assert_eq!(count_import_audit_entries(&test, &tenant_id).await, 1);
    test.stop().await;
}

async fn openwebui_export_imported(backend: TestBackend) {
    let (test, tenant_id, owner_id) = setup(backend).await;
    let mut client = chat(
        &test.channel,
        Credential::user(&tenant_id, &owner_id, "owner"),
    );

    let response = import(&mut client, &fixture("openwebui-export.json"))
        .await
        .expect("import");

    assert_eq!(response.format(), pb::ImportFormat::OpenWebui);
    assert_eq!(response.conversations_imported, 3);
    assert_eq!(response.messages_imported, 6);
    assert_eq!(response.skipped_nodes, 0);
    let titles: Vec<&str> = response
        .conversations
        .iter()
        .map(|c| c.title.as_str())
        .collect();
    assert_eq!(
        titles,
        [
            "Chat with reasoning",
            "Chat with tool call",
            "Simple linear chat"
        ]
    );
    for conversation in &response.conversations {
        assert_eq!(conversation.messages_imported, 2, "{}", conversation.title);
    }

    let reasoning = &response.conversations[0];
    let messages = all_messages(&mut client, &reasoning.session_id).await;
    let question = by_source_id(&messages, "ra1");
    let answer = by_source_id(&messages, "ra2");
    assert_eq!(question.content, "What is 15 * 17?");
    assert_eq!(question.role(), pb::MessageRole::User);
    assert_eq!(time(&question.create_time), "2023-11-14T22:13:20.000000Z");
    assert_eq!(answer.parent_id, question.id);
    assert_eq!(answer.role(), pb::MessageRole::Assistant);
    assert_eq!(answer.model, "deepseek-r1");
    assert_eq!(time(&answer.create_time), "2023-11-14T22:13:30.000000Z");
    assert!(
        answer.content.ends_with("</details>255"),
        "{}",
        answer.content
    );
    assert_eq!(
        metadata(answer, &["content", "output"])
            .and_then(|output| output[0]["type"].as_str().map(str::to_string)),
        Some("reasoning".to_string())
    );

    let tool = &response.conversations[1];
    let messages = all_messages(&mut client, &tool.session_id).await;
    let answer = by_source_id(&messages, "ta2");
    assert_eq!(answer.model, "gpt-4o");
    let output = metadata(answer, &["content", "output"]).expect("output kept");
    assert_eq!(output[0]["type"], "function_call");
    assert_eq!(output[0]["name"], "get_weather");
    assert_eq!(output[1]["type"], "function_call_output");
    test.stop().await;
}

async fn librechat_export_imported(backend: TestBackend) {
    let (test, tenant_id, owner_id) = setup(backend).await;
    let mut client = chat(
        &test.channel,
        Credential::user(&tenant_id, &owner_id, "owner"),
    );

    let response = import(&mut client, &fixture("librechat-export.json"))
        .await
        .expect("import");

    assert_eq!(response.format(), pb::ImportFormat::Librechat);
    assert_eq!(response.conversations_imported, 1);
    assert_eq!(response.messages_imported, 6);
    let conversation = &response.conversations[0];
    assert_eq!(
        conversation.source_id,
        "af1ea676-f525-444f-a9ed-7c8dbf062733"
    );
    assert_eq!(conversation.title, "Conversation 1. Web Search");

    let messages = all_messages(&mut client, &conversation.session_id).await;
    let last = by_source_id(&messages, "645b925b-ef14-451f-9be3-814de55a5ae4");
    let chain = thread(&mut client, &conversation.session_id, &last.id).await;
    assert_eq!(chain.len(), 6);
    assert_chain(&chain);
    let times: Vec<String> = chain.iter().map(|m| time(&m.create_time)).collect();
    assert_eq!(
        times,
        [
            "2024-04-09T14:32:05.230000Z",
            "2024-04-09T14:32:05.242000Z",
            "2024-04-09T14:32:05.247000Z",
            "2024-04-09T14:32:05.256000Z",
            "2024-04-09T14:32:05.261000Z",
            "2024-04-09T14:32:05.266000Z",
        ]
    );
    let roles: Vec<pb::MessageRole> = chain.iter().map(|m| m.role()).collect();
    assert_eq!(
        roles,
        [
            pb::MessageRole::User,
            pb::MessageRole::Assistant,
            pb::MessageRole::User,
            pb::MessageRole::Assistant,
            pb::MessageRole::User,
            pb::MessageRole::Assistant,
        ]
    );
    assert_eq!(
        chain[0].content,
        "What is the fuel consumption of vw  transporter with 8 people in l/km"
    );
    assert_eq!(chain[0].model, "");
    assert_eq!(chain[1].model, "gpt-3.5-turbo", "taken from options.model");
    assert_eq!(chain[2].content, "What about 10 year old model");
    test.stop().await;
}

async fn branches_kept(backend: TestBackend) {
    let (test, tenant_id, owner_id) = setup(backend).await;
    let mut client = chat(
        &test.channel,
        Credential::user(&tenant_id, &owner_id, "owner"),
    );
    // A regenerated answer: the question has two answers, and the second one has a reply.
    let file = json!([chatgpt_conversation(
        "branching",
        &[
            ("root", None, None, ""),
            ("q1", Some("root"), Some("user"), "question"),
            ("a1", Some("q1"), Some("assistant"), "first answer"),
            ("a2", Some("q1"), Some("assistant"), "second answer"),
            ("q2", Some("a2"), Some("user"), "follow-up"),
        ],
    )]);

    let response = import_json(&mut client, file).await.expect("import");

    assert_eq!(response.messages_imported, 4);
    assert_eq!(response.skipped_nodes, 1);
    let session_id = &response.conversations[0].session_id;
    let messages = all_messages(&mut client, session_id).await;
    let question = by_source_id(&messages, "q1");
    let replies = client
        .list_messages(pb::ListMessagesRequest {
            session_id: session_id.clone(),
            parent_id: question.id.clone(),
            ..Default::default()
        })
        .await
        .expect("replies")
        .into_inner()
        .messages;
    let contents: Vec<&str> = replies.iter().map(|m| m.content.as_str()).collect();
    assert_eq!(contents, ["first answer", "second answer"]);
    let first = thread(&mut client, session_id, &by_source_id(&messages, "a1").id).await;
    let contents: Vec<&str> = first.iter().map(|m| m.content.as_str()).collect();
    assert_eq!(contents, ["question", "first answer"]);
    let second = thread(&mut client, session_id, &by_source_id(&messages, "q2").id).await;
    let contents: Vec<&str> = second.iter().map(|m| m.content.as_str()).collect();
    assert_eq!(contents, ["question", "second answer", "follow-up"]);
    assert_eq!(by_source_id(&messages, "a2").model, "gpt-4o");
    test.stop().await;
}

async fn empty_mapping_imported(backend: TestBackend) {
    let (test, tenant_id, owner_id) = setup(backend).await;
    let mut client = chat(
        &test.channel,
        Credential::user(&tenant_id, &owner_id, "owner"),
    );

    let empty_file = import(&mut client, b"[]").await.expect("empty list");
    assert_eq!(empty_file.conversations_imported, 0);
    assert_eq!(count_import_audit_entries(&test, &tenant_id).await, 0);

    let file = json!([{"id": "empty", "title": "nothing said", "create_time": 1_700_000_000, "mapping": {}}]);
    let response = import_json(&mut client, file).await.expect("import");

    assert_eq!(response.conversations_imported, 1);
    assert_eq!(response.messages_imported, 0);
    let session = get_session(&mut client, &response.conversations[0].session_id)
        .await
        .expect("session");
    assert_eq!(session.title, "nothing said");
    assert_eq!(session.message_count, 0);
    assert!(session.last_message_time.is_none());
    assert_eq!(time(&session.create_time), "2023-11-14T22:13:20.000000Z");
    test.stop().await;
}

async fn missing_parent_becomes_root(backend: TestBackend) {
    let (test, tenant_id, owner_id) = setup(backend).await;
    let mut client = chat(
        &test.channel,
        Credential::user(&tenant_id, &owner_id, "owner"),
    );
    let file = json!([{
        "id": "orphans",
        "title": "orphans",
        "chat": {"history": {"messages": {
            "m1": {"id": "m1", "parentId": null, "role": "user", "content": "first", "timestamp": 1_700_000_000},
            "m2": {"id": "m2", "parentId": "gone", "role": "assistant", "content": "orphan", "timestamp": 1_700_000_001},
        }}},
    }]);

    let response = import_json(&mut client, file).await.expect("import");

    assert_eq!(response.messages_imported, 2);
    assert_eq!(response.reattached_messages, 1);
    let messages = all_messages(&mut client, &response.conversations[0].session_id).await;
    let orphan = by_source_id(&messages, "m2");
    assert_eq!(orphan.parent_id, "");
    assert_eq!(
        metadata(orphan, &["import", "missing_parent_id"]),
        Some(json!("gone"))
    );
    test.stop().await;
}

async fn cycle_rejected(backend: TestBackend) {
    let (test, tenant_id, owner_id) = setup(backend).await;
    let mut client = chat(
        &test.channel,
        Credential::user(&tenant_id, &owner_id, "owner"),
    );
    let file = json!([
        chatgpt_conversation(
            "fine",
            &[("x", None, Some("user"), "stored only if all is valid")]
        ),
        chatgpt_conversation(
            "looping",
            &[
                ("a", Some("c"), Some("user"), "one"),
                ("b", Some("a"), Some("assistant"), "two"),
                ("c", Some("b"), Some("user"), "three"),
            ],
        ),
    ]);

    let status = import_json(&mut client, file).await.expect_err("cycle");

    assert_eq!(status.code(), Code::InvalidArgument);
    let (field, description) = field_violation(&status);
    assert_eq!(field, "data");
    assert!(description.starts_with("$[1].mapping."), "{description}");
    assert!(description.contains("cycle"), "{description}");
    assert!(sessions(&mut client).await.is_empty(), "nothing stored");
    test.stop().await;
}

async fn duplicate_ids_rejected(backend: TestBackend) {
    let (test, tenant_id, owner_id) = setup(backend).await;
    let mut client = chat(
        &test.channel,
        Credential::user(&tenant_id, &owner_id, "owner"),
    );
    let repeated_key = br#"[{"id": "c", "mapping": {
"n1": {"message": null, "parent": null, "children": []},
"n1": {"message": null, "parent": null, "children": []}}}]"#;

    let status = import(&mut client, repeated_key)
        .await
        .expect_err("repeated key");

    assert_eq!(status.code(), Code::InvalidArgument);
    let (field, description) = field_violation(&status);
    assert_eq!(field, "data");
    assert!(description.starts_with("line 3 column 4:"), "{description}");
    assert!(
        description.contains("\"n1\" appears twice"),
        "{description}"
    );

    let repeated_id = json!({
        "conversationId": "dup",
        "title": "duplicates",
        "messages": [
            {"messageId": "m1", "parentMessageId": "00000000-0000-0000-0000-000000000000", "isCreatedByUser": true, "text": "a", "createdAt": "2024-04-09T14:32:05.230Z"},
            {"messageId": "m1", "parentMessageId": "m1", "isCreatedByUser": false, "text": "b", "createdAt": "2024-04-09T14:32:06.230Z"},
        ],
    });
    let status = import_json(&mut client, repeated_id)
        .await
        .expect_err("repeated id");

    assert_eq!(status.code(), Code::InvalidArgument);
    let (_, description) = field_violation(&status);
    assert!(description.starts_with("$.messages[1]:"), "{description}");
    assert!(
        description.contains("also used at $.messages[0]"),
        "{description}"
    );
    assert!(sessions(&mut client).await.is_empty(), "nothing stored");
    test.stop().await;
}

async fn huge_and_emoji_content(backend: TestBackend) {
    let (test, tenant_id, owner_id) = setup(backend).await;
    let mut client = chat(
        &test.channel,
        Credential::user(&tenant_id, &owner_id, "owner"),
    );
    // 250,000 crabs of 4 bytes each: just under the 1 MiB limit.
    let huge = "🦀".repeat(250_000);
    let mut conversation = chatgpt_conversation(
        "emoji",
        &[
            ("big", None, Some("user"), &huge),
            ("small", Some("big"), Some("assistant"), "👍🏽 done"),
        ],
    );
    conversation["title"] = json!("Crabs 🦀🦀");

    let response = import_json(&mut client, json!([conversation]))
        .await
        .expect("import");

    let session_id = &response.conversations[0].session_id;
    let session = get_session(&mut client, session_id).await.expect("session");
    assert_eq!(session.title, "Crabs 🦀🦀");
    let messages = all_messages(&mut client, session_id).await;
    assert_eq!(by_source_id(&messages, "big").content, huge);
    assert_eq!(by_source_id(&messages, "small").content, "👍🏽 done");

    let too_big = "a".repeat(1024 * 1024 + 1);
    let file = json!([chatgpt_conversation(
        "too-big",
        &[("n", None, Some("user"), &too_big)]
    )]);
    let status = import_json(&mut client, file)
        .await
        .expect_err("over 1 MiB");

    assert_eq!(status.code(), Code::InvalidArgument);
    let (_, description) = field_violation(&status);
    assert!(description.starts_with("$[0].mapping.n:"), "{description}");
    assert!(description.contains("1048577 bytes"), "{description}");
    assert_eq!(
        sessions(&mut client).await.len(),
        1,
        "only the first import is stored"
    );
    test.stop().await;
}

async fn chunked_upload(backend: TestBackend) {
    let (test, tenant_id, owner_id) = setup(backend).await;
    let mut client = chat(
        &test.channel,
        Credential::user(&tenant_id, &owner_id, "owner"),
    );
    let data = fixture("chatgpt-export.json");

    let response = import_chunked(&mut client, &data, pb::ImportFormat::Chatgpt, 1000)
        .await
        .expect("import");

    assert_eq!(response.conversations_imported, 2);
    assert_eq!(response.messages_imported, 19);
    let messages = all_messages(&mut client, &response.conversations[0].session_id).await;
    assert_eq!(messages.len(), 15);

    let requests = vec![
        pb::ImportConversationsRequest {
            format: pb::ImportFormat::Chatgpt.into(),
            data: data[..10].to_vec(),
        },
        pb::ImportConversationsRequest {
            format: pb::ImportFormat::Librechat.into(),
            data: data[10..].to_vec(),
        },
    ];
    let status = client
        .import_conversations(tokio_stream::iter(requests))
        .await
        .expect_err("two formats");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(field_violation(&status).0, "format");
    test.stop().await;
}

async fn second_import_changes_nothing(backend: TestBackend) {
    let (test, tenant_id, owner_id) = setup(backend).await;
    let mut client = chat(
        &test.channel,
        Credential::user(&tenant_id, &owner_id, "owner"),
    );
    let data = fixture("chatgpt-export.json");
    let first = import(&mut client, &data).await.expect("first import");
    let before = sessions(&mut client).await;

    let second = import(&mut client, &data).await.expect("second import");

    assert_eq!(second.conversations_imported, 0);
    assert_eq!(second.conversations_present, 2);
    assert_eq!(second.messages_imported, 0);
    assert_eq!(second.messages_present, 19);
    let first_ids: Vec<&str> = first
        .conversations
        .iter()
        .map(|c| c.session_id.as_str())
        .collect();
    let second_ids: Vec<&str> = second
        .conversations
        .iter()
        .map(|c| c.session_id.as_str())
        .collect();
    assert_eq!(first_ids, second_ids);
    assert_eq!(sessions(&mut client).await, before, "sessions unchanged");
    assert_eq!(count_import_audit_entries(&test, &tenant_id).await, 1);

    // A later export of the same conversation with one more message adds only that message.
    let mut file: serde_json::Value = serde_json::from_slice(&data).unwrap();
    file[1]["mapping"]["extra"] = json!({
        "message": {
            "author": {"role": "user"},
            "create_time": 1_697_373_200.5,
            "content": {"content_type": "text", "parts": ["one more question"]},
        },
        "parent": "73a2fe12-36bd-4cc2-8460-8108d16cc42d",
        "children": [],
    });
    let third = import_json(&mut client, file).await.expect("third import");

    assert_eq!(third.messages_imported, 1);
    assert_eq!(third.messages_present, 19);
    let session = get_session(&mut client, &third.conversations[1].session_id)
        .await
        .expect("session");
    assert_eq!(session.message_count, 5);
    assert_eq!(
        time(&session.last_message_time),
        "2023-10-15T12:33:20.500000Z"
    );
    test.stop().await;
}

async fn malformed_file_rejected(backend: TestBackend) {
    let (test, tenant_id, owner_id) = setup(backend).await;
    let mut client = chat(
        &test.channel,
        Credential::user(&tenant_id, &owner_id, "owner"),
    );
    let data = fixture("chatgpt-export.json");

    let truncated = import(&mut client, &data[..data.len() / 2])
        .await
        .expect_err("truncated");
    assert_eq!(truncated.code(), Code::InvalidArgument);
    let (field, description) = field_violation(&truncated);
    assert_eq!(field, "data");
    assert!(description.starts_with("line "), "{description}");
    assert!(description.contains("EOF while parsing"), "{description}");

    let unknown_shape = import(&mut client, br#"{"foo": 1}"#)
        .await
        .expect_err("shape");
    let (_, description) = field_violation(&unknown_shape);
    assert!(
        description.contains("matches no supported export"),
        "{description}"
    );

    let mut bad_role: serde_json::Value = serde_json::from_slice(&data).unwrap();
    bad_role[1]["mapping"]["aaa2e334-b386-4ed8-b33b-5d788c882f1d"]["message"]["author"]["role"] =
        json!("critic");
    let status = import_json(&mut client, bad_role).await.expect_err("role");
    let (_, description) = field_violation(&status);
    assert!(
        description.starts_with(
            "$[1].mapping[\"aaa2e334-b386-4ed8-b33b-5d788c882f1d\"].message.author.role:"
        ),
        "{description}"
    );
    assert!(
        description.contains("\"critic\" is not a supported role"),
        "{description}"
    );

    let empty = import(&mut client, b"").await.expect_err("empty");
    assert_eq!(field_violation(&empty).0, "data");
    assert!(sessions(&mut client).await.is_empty(), "nothing stored");
    assert_eq!(count_import_audit_entries(&test, &tenant_id).await, 0);
    test.stop().await;
}

async fn tenants_and_users_isolated(backend: TestBackend) {
    let (test, tenant_id, owner_id) = setup(backend).await;
    let other = create_tenant(&test.channel, "Others", "others").await;
    let other_tenant = other.tenant.expect("tenant").id;
    let other_owner = other.owner.expect("owner").id;
    let mut client = chat(
        &test.channel,
        Credential::user(&tenant_id, &owner_id, "owner"),
    );
    let mut other_client = chat(
        &test.channel,
        Credential::user(&other_tenant, &other_owner, "owner"),
    );
    let data = fixture("librechat-export.json");

    let mine = import(&mut client, &data).await.expect("import");
    let theirs = import(&mut other_client, &data)
        .await
        .expect("other tenant's import");

    assert_eq!(
        theirs.conversations_imported, 1,
        "a new session in the other tenant"
    );
    assert_eq!(theirs.messages_imported, 6);
    let my_session = &mine.conversations[0].session_id;
    let their_session = &theirs.conversations[0].session_id;
    assert_ne!(my_session, their_session);
    let status = get_session(&mut other_client, my_session)
        .await
        .expect_err("hidden");
    assert_eq!(status.code(), Code::NotFound);
    assert_eq!(sessions(&mut client).await.len(), 1);
    assert_eq!(sessions(&mut other_client).await.len(), 1);

    // The admin of the first tenant imports the same file: the sessions are the admin's own.
    let admin = ally::models::User {
        tenant_id: tenant_id.clone(),
        id: ally::models::new_id(),
        email: "admin@importers.example".into(),
        display_name: "Admin".into(),
        password_hash: None,
        role: "admin".into(),
        is_active: true,
        email_verified_at: None,
        failed_login_count: 0,
        locked_until: None,
        last_login_at: None,
        created_at: ally::models::now(),
        updated_at: ally::models::now(),
    };
    {
        let mut conn = test.server.database().write().await.expect("connection");
        diesel::insert_into(ally::schema::users::table)
            .values(&admin)
            .execute(&mut *conn)
            .await
            .expect("insert admin");
    }
    let mut admin_client = chat(
        &test.channel,
        Credential::user(&tenant_id, &admin.id, "admin"),
    );
    let admins = import(&mut admin_client, &data)
        .await
        .expect("admin's import");
    assert_eq!(admins.conversations_imported, 1);
    let admin_session = get_session(&mut admin_client, &admins.conversations[0].session_id)
        .await
        .expect("admin's session");
    assert_eq!(admin_session.user_id, admin.id);
    assert_eq!(
        sessions(&mut client).await.len(),
        1,
        "the owner's list is unchanged"
    );
    test.stop().await;
}

async fn quotas_enforced(backend: TestBackend) {
    let (test, tenant_id, owner_id) = setup(backend).await;
    let mut client = chat(
        &test.channel,
        Credential::user(&tenant_id, &owner_id, "owner"),
    );
    // The free plan allows 100 sessions and 1,000 messages a month.
    let many: Vec<serde_json::Value> = (0..101)
        .map(|index| chatgpt_conversation(&format!("c{index}"), &[("n", None, Some("user"), "hi")]))
        .collect();

    let status = import_json(&mut client, json!(many))
        .await
        .expect_err("sessions");

    assert_eq!(status.code(), Code::ResourceExhausted);
    let quota = status.get_details_quota_failure().expect("QuotaFailure");
    assert_eq!(quota.violations[0].subject, "tenant:chat_sessions");
    assert!(sessions(&mut client).await.is_empty(), "nothing stored");

    let ids: Vec<String> = (0..1001).map(|index| format!("m{index}")).collect();
    let nodes: Vec<(&str, Option<&str>, Option<&str>, &str)> = ids
        .iter()
        .enumerate()
        .map(|(index, id)| {
            let parent = index.checked_sub(1).map(|previous| ids[previous].as_str());
            (id.as_str(), parent, Some("user"), "hello")
        })
        .collect();
    let long = json!([chatgpt_conversation("long", &nodes)]);
    let status = import_json(&mut client, long).await.expect_err("messages");

    assert_eq!(status.code(), Code::ResourceExhausted);
    let quota = status.get_details_quota_failure().expect("QuotaFailure");
    assert_eq!(quota.violations[0].subject, "tenant:messages_per_month");
    assert!(sessions(&mut client).await.is_empty(), "nothing stored");
    test.stop().await;
}

async fn size_limit_enforced(backend: TestBackend) {
    let test = TestServer::start_with(backend, |settings| {
        settings.chat.import_max_bytes = 4096;
    })
    .await;
    let created = create_tenant(&test.channel, "Small", "small").await;
    let tenant_id = created.tenant.expect("tenant").id;
    let owner_id = created.owner.expect("owner").id;
    let mut client = chat(
        &test.channel,
        Credential::user(&tenant_id, &owner_id, "owner"),
    );

    let status = import_chunked(
        &mut client,
        &fixture("chatgpt-export.json"),
        pb::ImportFormat::Unspecified,
        1000,
    )
    .await
    .expect_err("too large");

    assert_eq!(status.code(), Code::InvalidArgument);
    let (field, description) = field_violation(&status);
    assert_eq!(field, "data");
    assert!(
        description.contains("larger than 4096 bytes"),
        "{description}"
    );
    assert!(
        description.contains("chat.import_max_bytes"),
        "{description}"
    );
    let small = import(&mut client, b"[]").await.expect("a small file");
    assert_eq!(small.conversations_imported, 0);
    test.stop().await;
}

fn ally(database: &TestDatabase, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ally"))
        .args(args)
        .current_dir(database.dir())
        .env_clear()
        .env("ENVIRONMENT", "testing")
        .env("DATABASE_URL", &database.url)
        .env("RUST_LOG", "error")
        .output()
        .expect("run ally")
}

fn line(output: &Output, label: &str) -> String {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|line| line.strip_prefix(label).map(|v| v.trim().to_string()))
        .unwrap_or_else(|| {
            panic!(
                "no `{label}` line in {}",
                String::from_utf8_lossy(&output.stdout)
            )
        })
}

async fn import_command(backend: TestBackend) {
    let database = TestDatabase::create(backend).await;
    assert!(ally(&database, &["migrate", "run"]).status.success());
    let created = ally(
        &database,
        &["bootstrap", "--owner-email", "owner@cli.example"],
    );
    assert!(created.status.success());
    let tenant_id = line(&created, "tenant id:");
    let owner_id = line(&created, "owner id:");
    let file = format!(
        "{}/tests/fixtures/exports/chatgpt-export.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let args = [
        "import",
        "conversations",
        file.as_str(),
        "--tenant",
        tenant_id.as_str(),
        "--user",
        owner_id.as_str(),
    ];

    let first = ally(&database, &args);

    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert_eq!(line(&first, "format:"), "chatgpt");
    assert_eq!(line(&first, "conversations imported:"), "2");
    assert_eq!(line(&first, "messages imported:"), "19");
    assert_eq!(line(&first, "skipped nodes:"), "4");
    let second = ally(&database, &args);
    assert!(second.status.success());
    assert_eq!(line(&second, "conversations imported:"), "0");
    assert_eq!(line(&second, "messages present:"), "19");

    let broken = database.dir().join("broken.json");
    std::fs::write(&broken, b"[{\"mapping\": {]").expect("write file");
    let broken = broken.display().to_string();
    let failed = ally(
        &database,
        &[
            "import",
            "conversations",
            &broken,
            "--tenant",
            &tenant_id,
            "--user",
            &owner_id,
        ],
    );
    assert!(!failed.status.success());
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(
        stderr.contains("is not a valid export: line 1 column"),
        "{stderr}"
    );

    let stranger = ally::models::new_id();
    let unknown_user = ally(
        &database,
        &[
            "import",
            "conversations",
            &file,
            "--tenant",
            &tenant_id,
            "--user",
            &stranger,
        ],
    );
    assert!(!unknown_user.status.success());
    assert!(String::from_utf8_lossy(&unknown_user.stderr).contains("not found"));
}
