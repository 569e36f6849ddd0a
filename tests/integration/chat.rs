//! ChatService through the generated client, on both backends: sessions, messages, threads,
//! sharing, quotas, isolation, Watch, concurrent writers, and Watch across two server processes
//! that share a database and a private Redis.

use std::time::Duration;

use ally::models::{self, ChatSession, User};
use ally::proto::ally::v1 as pb;
use ally::schema::{chat_sessions, messages, users};
use diesel::{ExpressionMethods, QueryDsl};
use diesel_async::{AsyncConnection, RunQueryDsl};
use prost_types::{FieldMask, Timestamp};
use tonic::Code;
use tonic::transport::Channel;
use tonic_types::StatusExt;

use crate::backend_tests;
use crate::common::clients::{Authed, Credential, create_tenant};
use crate::common::private_redis::{PrivateRedis, free_port};
use crate::common::server_process::ServerProcess;
use crate::common::{TestBackend, TestDatabase, TestServer, connect, test_settings};

backend_tests!(
    session_lifecycle,
    update_session_validates_mask,
    list_sessions_by_activity,
    add_message_updates_session,
    add_message_is_idempotent,
    add_message_validates_input,
    branching_conversation_lists_per_branch,
    edit_message_keeps_revisions,
    delete_message_is_soft,
    search_sessions_matches_text,
    share_token_lifecycle,
    share_token_stays_in_tenant,
    sessions_isolated_between_users,
    sessions_isolated_between_tenants,
    session_quota_enforced,
    message_quota_enforced,
    message_quota_exact_when_concurrent,
    message_counts_backfilled,
    watch_receives_new_messages,
    watch_resumes_after_message,
    concurrent_writers_all_stored,
    purge_removes_old_deleted_sessions,
);

type Client = pb::chat_service_client::ChatServiceClient<Authed>;

fn chat(channel: &Channel, credential: Credential) -> Client {
    pb::chat_service_client::ChatServiceClient::with_interceptor(channel.clone(), credential)
}

/// A tenant created through the API, with its owner.
struct TestTenant {
    id: String,
    owner_id: String,
}

impl TestTenant {
    fn owner(&self) -> Credential {
        Credential::user(&self.id, &self.owner_id, "owner")
    }
}

async fn tenant(test: &TestServer, subdomain: &str) -> TestTenant {
    let created = create_tenant(&test.channel, subdomain, subdomain).await;
    TestTenant {
        id: created.tenant.expect("tenant").id,
        owner_id: created.owner.expect("owner").id,
    }
}

/// Inserts a user with `role` and returns a credential for it.
async fn user(test: &TestServer, tenant: &TestTenant, role: &str) -> (String, Credential) {
    let now = models::now();
    let id = models::new_id();
    let row = User {
        tenant_id: tenant.id.clone(),
        id: id.clone(),
        email: format!("{role}-{id}@chat.example"),
        display_name: role.to_string(),
        password_hash: None,
        role: role.to_string(),
        is_active: true,
        email_verified_at: None,
        failed_login_count: 0,
        locked_until: None,
        last_login_at: None,
        created_at: now,
        updated_at: now,
    };
    let mut conn = test.server.database().write().await.expect("connection");
    diesel::insert_into(users::table)
        .values(&row)
        .execute(&mut *conn)
        .await
        .expect("insert user");
    let credential = Credential::user(&tenant.id, &id, role);
    (id, credential)
}

async fn create_session(client: &mut Client, title: &str) -> pb::Session {
    client
        .create_session(pb::CreateSessionRequest {
            title: title.to_string(),
            metadata: None,
        })
        .await
        .expect("create session")
        .into_inner()
        .session
        .expect("session")
}

async fn add(client: &mut Client, session_id: &str, content: &str, parent_id: &str) -> pb::Message {
    client
        .add_message(pb::AddMessageRequest {
            session_id: session_id.to_string(),
            role: pb::MessageRole::User.into(),
            content: content.to_string(),
            parent_id: parent_id.to_string(),
            ..Default::default()
        })
        .await
        .expect("add message")
        .into_inner()
        .message
        .expect("message")
}

async fn get_session(client: &mut Client, id: &str) -> Result<pb::Session, tonic::Status> {
    client
        .get_session(pb::GetSessionRequest { id: id.to_string() })
        .await
        .map(|response| response.into_inner().session.expect("session"))
}

/// Lists every page of a ListMessages request and returns the contents in order.
async fn list_contents(client: &mut Client, request: pb::ListMessagesRequest) -> Vec<String> {
    let mut contents = Vec::new();
    let mut token = String::new();
    loop {
        let page = client
            .list_messages(pb::ListMessagesRequest {
                page_token: token.clone(),
                ..request.clone()
            })
            .await
            .expect("list messages")
            .into_inner();
        contents.extend(page.messages.into_iter().map(|message| message.content));
        if page.next_page_token.is_empty() {
            return contents;
        }
        token = page.next_page_token;
    }
}

async fn list_session_titles(client: &mut Client, request: pb::ListSessionsRequest) -> Vec<String> {
    let mut titles = Vec::new();
    let mut token = String::new();
    loop {
        let page = client
            .list_sessions(pb::ListSessionsRequest {
                page_token: token.clone(),
                ..request
            })
            .await
            .expect("list sessions")
            .into_inner();
        titles.extend(page.sessions.into_iter().map(|session| session.title));
        if page.next_page_token.is_empty() {
            return titles;
        }
        token = page.next_page_token;
    }
}

fn seconds_from_now(seconds: i64) -> Timestamp {
    let now = chrono::Utc::now().timestamp();
    Timestamp {
        seconds: now + seconds,
        nanos: 0,
    }
}

fn strings(values: &[&str]) -> Vec<String> {
    values.iter().map(|value| value.to_string()).collect()
}

async fn session_lifecycle(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    let acme = tenant(&test, "acme").await;
    let mut client = chat(&test.channel, acme.owner());

    let session = client
        .create_session(pb::CreateSessionRequest {
            title: "  Trip planning  ".into(),
            metadata: Some(prost_types::Struct {
                fields: [(
                    "topic".to_string(),
                    prost_types::Value {
                        kind: Some(prost_types::value::Kind::StringValue("travel".into())),
                    },
                )]
                .into(),
            }),
        })
        .await
        .expect("create")
        .into_inner()
        .session
        .expect("session");
    assert_eq!(session.title, "Trip planning");
    assert_eq!(session.user_id, acme.owner_id);
    assert_eq!(session.status(), pb::SessionStatus::Active);
    assert_eq!(session.message_count, 0);
    assert!(session.last_message_time.is_none());
    assert!(!session.shared);
    assert!(
        session
            .metadata
            .as_ref()
            .unwrap()
            .fields
            .contains_key("topic")
    );

    let fetched = get_session(&mut client, &session.id).await.expect("get");
    assert_eq!(fetched, session);

    let updated = client
        .update_session(pb::UpdateSessionRequest {
            session: Some(pb::Session {
                id: session.id.clone(),
                title: "Renamed".into(),
                status: pb::SessionStatus::Archived.into(),
                ..Default::default()
            }),
            update_mask: Some(FieldMask {
                paths: strings(&["title", "status"]),
            }),
        })
        .await
        .expect("update")
        .into_inner()
        .session
        .expect("session");
    assert_eq!(updated.title, "Renamed");
    assert_eq!(updated.status(), pb::SessionStatus::Archived);
    assert!(
        updated
            .metadata
            .as_ref()
            .unwrap()
            .fields
            .contains_key("topic")
    );

    let archived_add = client
        .add_message(pb::AddMessageRequest {
            session_id: session.id.clone(),
            role: pb::MessageRole::User.into(),
            content: "hello".into(),
            ..Default::default()
        })
        .await
        .expect_err("archived sessions take no messages");
    assert_eq!(archived_add.code(), Code::FailedPrecondition);
    assert_eq!(
        archived_add
            .get_details_error_info()
            .map(|info| info.reason),
        Some("SESSION_ARCHIVED".to_string())
    );

    let deleted = client
        .delete_session(pb::DeleteSessionRequest {
            id: session.id.clone(),
        })
        .await
        .expect("delete")
        .into_inner()
        .session
        .expect("session");
    assert!(deleted.delete_time.is_some());
    let again = client
        .delete_session(pb::DeleteSessionRequest {
            id: session.id.clone(),
        })
        .await
        .expect("delete again")
        .into_inner()
        .session
        .expect("session");
    assert_eq!(again.delete_time, deleted.delete_time);

    let listed = list_session_titles(&mut client, pb::ListSessionsRequest::default()).await;
    assert!(listed.is_empty(), "{listed:?}");
    let with_deleted = list_session_titles(
        &mut client,
        pb::ListSessionsRequest {
            show_deleted: true,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(with_deleted, ["Renamed"]);
    let fetched_deleted = get_session(&mut client, &session.id)
        .await
        .expect("get deleted");
    assert!(fetched_deleted.delete_time.is_some());
    let update_deleted = client
        .update_session(pb::UpdateSessionRequest {
            session: Some(pb::Session {
                id: session.id.clone(),
                title: "x".into(),
                ..Default::default()
            }),
            update_mask: Some(FieldMask {
                paths: strings(&["title"]),
            }),
        })
        .await
        .expect_err("deleted sessions cannot change");
    assert_eq!(update_deleted.code(), Code::NotFound);

    let restored = client
        .undelete_session(pb::UndeleteSessionRequest {
            id: session.id.clone(),
        })
        .await
        .expect("undelete")
        .into_inner()
        .session
        .expect("session");
    assert!(restored.delete_time.is_none());
    let listed = list_session_titles(&mut client, pb::ListSessionsRequest::default()).await;
    assert_eq!(listed, ["Renamed"]);

    let missing = get_session(&mut client, &models::new_id())
        .await
        .expect_err("unknown id");
    assert_eq!(missing.code(), Code::NotFound);
    let malformed = get_session(&mut client, "nope")
        .await
        .expect_err("malformed id");
    assert_eq!(malformed.code(), Code::InvalidArgument);
    test.stop().await;
}

async fn update_session_validates_mask(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    let acme = tenant(&test, "acme").await;
    let mut client = chat(&test.channel, acme.owner());
    let session = create_session(&mut client, "Title").await;

    for paths in [vec![], strings(&["user_id"]), strings(&["status"])] {
        let status = client
            .update_session(pb::UpdateSessionRequest {
                session: Some(pb::Session {
                    id: session.id.clone(),
                    ..Default::default()
                }),
                update_mask: Some(FieldMask {
                    paths: paths.clone(),
                }),
            })
            .await
            .expect_err("invalid update");
        assert_eq!(status.code(), Code::InvalidArgument, "{paths:?}");
    }
    let long_title = client
        .create_session(pb::CreateSessionRequest {
            title: "t".repeat(501),
            metadata: None,
        })
        .await
        .expect_err("title too long");
    assert_eq!(long_title.code(), Code::InvalidArgument);
    test.stop().await;
}

async fn list_sessions_by_activity(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    let acme = tenant(&test, "acme").await;
    let mut client = chat(&test.channel, acme.owner());

    let first = create_session(&mut client, "first").await;
    let second = create_session(&mut client, "second").await;
    let _third = create_session(&mut client, "third").await;
    let fourth = create_session(&mut client, "fourth").await;
    let _fifth = create_session(&mut client, "fifth").await;
    add(&mut client, &second.id, "older activity", "").await;
    add(&mut client, &first.id, "newer activity", "").await;
    client
        .share_session(pb::ShareSessionRequest {
            id: fourth.id.clone(),
            expire_time: None,
        })
        .await
        .expect("share");

    // Sessions with messages by latest message, then the others newest first.
    let expected = ["first", "second", "fifth", "fourth", "third"];
    for page_size in [1, 2, 50] {
        let titles = list_session_titles(
            &mut client,
            pb::ListSessionsRequest {
                page_size,
                ..Default::default()
            },
        )
        .await;
        assert_eq!(titles, expected, "page size {page_size}");
    }

    let shared = list_session_titles(
        &mut client,
        pb::ListSessionsRequest {
            shared: Some(true),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(shared, ["fourth"]);
    let unshared = list_session_titles(
        &mut client,
        pb::ListSessionsRequest {
            shared: Some(false),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(unshared, ["first", "second", "fifth", "third"]);

    client
        .update_session(pb::UpdateSessionRequest {
            session: Some(pb::Session {
                id: second.id.clone(),
                status: pb::SessionStatus::Archived.into(),
                ..Default::default()
            }),
            update_mask: Some(FieldMask {
                paths: strings(&["status"]),
            }),
        })
        .await
        .expect("archive");
    let archived = list_session_titles(
        &mut client,
        pb::ListSessionsRequest {
            status: pb::SessionStatus::Archived.into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(archived, ["second"]);

    let page = client
        .list_sessions(pb::ListSessionsRequest {
            page_size: 1,
            ..Default::default()
        })
        .await
        .expect("first page")
        .into_inner();
    let mismatched = client
        .list_sessions(pb::ListSessionsRequest {
            page_size: 1,
            page_token: page.next_page_token,
            show_deleted: true,
            ..Default::default()
        })
        .await
        .expect_err("token of other filters");
    assert_eq!(mismatched.code(), Code::InvalidArgument);
    test.stop().await;
}

async fn add_message_updates_session(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    let acme = tenant(&test, "acme").await;
    let mut client = chat(&test.channel, acme.owner());
    let session = create_session(&mut client, "Chat").await;

    let question = add(&mut client, &session.id, "What is Rust?", "").await;
    let answer = client
        .add_message(pb::AddMessageRequest {
            session_id: session.id.clone(),
            role: pb::MessageRole::Assistant.into(),
            content: "A programming language.".into(),
            content_type: "markdown".into(),
            model: "gpt-test".into(),
            prompt_tokens: 12,
            completion_tokens: 5,
            latency_ms: 321,
            finish_reason: "stop".into(),
            parent_id: question.id.clone(),
            ..Default::default()
        })
        .await
        .expect("add answer")
        .into_inner()
        .message
        .expect("message");
    assert_eq!(question.content_type, "text");
    assert_eq!(question.version, 1);
    assert_eq!(question.user_id, acme.owner_id);
    assert_eq!(answer.role(), pb::MessageRole::Assistant);
    assert_eq!(answer.parent_id, question.id);
    assert_eq!(answer.model, "gpt-test");
    assert_eq!(answer.prompt_tokens, 12);
    assert_eq!(answer.completion_tokens, 5);
    assert_eq!(answer.latency_ms, 321);
    assert_eq!(answer.finish_reason, "stop");
    assert_eq!(answer.content_type, "markdown");

    let fetched = get_session(&mut client, &session.id).await.expect("get");
    assert_eq!(fetched.message_count, 2);
    assert_eq!(fetched.last_message_time, answer.create_time);
    assert_eq!(fetched.update_time, answer.create_time);

    let message = client
        .get_message(pb::GetMessageRequest {
            id: answer.id.clone(),
        })
        .await
        .expect("get message")
        .into_inner()
        .message
        .expect("message");
    assert_eq!(message, answer);

    let all = list_contents(
        &mut client,
        pb::ListMessagesRequest {
            session_id: session.id.clone(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(all, ["What is Rust?", "A programming language."]);

    let mut conn = test.server.database().read().await.expect("connection");
    let audit_metadata: Vec<String> = ally::schema::audit_logs::table
        .filter(ally::schema::audit_logs::event_type.eq("message.created"))
        .select(ally::schema::audit_logs::metadata)
        .load(&mut *conn)
        .await
        .expect("audit entries");
    assert_eq!(audit_metadata.len(), 2);
    for metadata in &audit_metadata {
        assert!(!metadata.contains("Rust"), "{metadata}");
        assert!(!metadata.contains("programming"), "{metadata}");
    }
    drop(conn);
    test.stop().await;
}

async fn add_message_is_idempotent(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    let acme = tenant(&test, "acme").await;
    let mut client = chat(&test.channel, acme.owner());
    let session = create_session(&mut client, "Chat").await;
    let request = pb::AddMessageRequest {
        session_id: session.id.clone(),
        role: pb::MessageRole::User.into(),
        content: "once".into(),
        request_id: "retry-1".into(),
        ..Default::default()
    };

    let first = client
        .add_message(request.clone())
        .await
        .expect("first")
        .into_inner()
        .message
        .expect("message");
    let second = client
        .add_message(pb::AddMessageRequest {
            content: "changed on retry".into(),
            ..request.clone()
        })
        .await
        .expect("retry")
        .into_inner()
        .message
        .expect("message");
    assert_eq!(second, first);
    assert_eq!(first.request_id, "retry-1");

    // Concurrent retries store one message as well.
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let mut client = client.clone();
        let request = pb::AddMessageRequest {
            request_id: "retry-2".into(),
            ..request.clone()
        };
        tasks.push(tokio::spawn(async move {
            client
                .add_message(request)
                .await
                .expect("concurrent add")
                .into_inner()
                .message
                .expect("message")
                .id
        }));
    }
    let mut ids = Vec::new();
    for task in tasks {
        ids.push(task.await.expect("task"));
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "{ids:?}");

    let fetched = get_session(&mut client, &session.id).await.expect("get");
    assert_eq!(fetched.message_count, 2);
    let contents = list_contents(
        &mut client,
        pb::ListMessagesRequest {
            session_id: session.id.clone(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(contents, ["once", "once"]);

    // The same request id in another session is another message.
    let other = create_session(&mut client, "Other").await;
    let elsewhere = client
        .add_message(pb::AddMessageRequest {
            session_id: other.id.clone(),
            ..request
        })
        .await
        .expect("other session")
        .into_inner()
        .message
        .expect("message");
    assert_ne!(elsewhere.id, first.id);
    test.stop().await;
}

async fn add_message_validates_input(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    let acme = tenant(&test, "acme").await;
    let mut client = chat(&test.channel, acme.owner());
    let session = create_session(&mut client, "Chat").await;
    let other = create_session(&mut client, "Other").await;
    let foreign_parent = add(&mut client, &other.id, "elsewhere", "").await;
    let valid = pb::AddMessageRequest {
        session_id: session.id.clone(),
        role: pb::MessageRole::User.into(),
        content: "hi".into(),
        ..Default::default()
    };

    let cases = [
        (
            "role",
            pb::AddMessageRequest {
                role: 0,
                ..valid.clone()
            },
        ),
        (
            "content",
            pb::AddMessageRequest {
                content: "x".repeat(1024 * 1024 + 1),
                ..valid.clone()
            },
        ),
        (
            "prompt_tokens",
            pb::AddMessageRequest {
                prompt_tokens: -1,
                ..valid.clone()
            },
        ),
        (
            "parent_id",
            pb::AddMessageRequest {
                parent_id: foreign_parent.id.clone(),
                ..valid.clone()
            },
        ),
        (
            "parent_id",
            pb::AddMessageRequest {
                parent_id: models::new_id(),
                ..valid.clone()
            },
        ),
        (
            "request_id",
            pb::AddMessageRequest {
                request_id: "has space".into(),
                ..valid.clone()
            },
        ),
    ];
    for (field, request) in cases {
        let status = client
            .add_message(request)
            .await
            .expect_err("invalid request");
        assert_eq!(status.code(), Code::InvalidArgument, "{field}");
        let violations = status
            .get_details_bad_request()
            .expect("BadRequest")
            .field_violations;
        assert_eq!(violations[0].field, field);
    }

    let at_limit = client
        .add_message(pb::AddMessageRequest {
            content: "y".repeat(1024 * 1024),
            ..valid.clone()
        })
        .await
        .expect("1 MiB is allowed")
        .into_inner()
        .message
        .expect("message");
    assert_eq!(at_limit.content.len(), 1024 * 1024);

    let unknown_session = client
        .add_message(pb::AddMessageRequest {
            session_id: models::new_id(),
            ..valid
        })
        .await
        .expect_err("unknown session");
    assert_eq!(unknown_session.code(), Code::NotFound);
    test.stop().await;
}

async fn branching_conversation_lists_per_branch(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    let acme = tenant(&test, "acme").await;
    let mut client = chat(&test.channel, acme.owner());
    let session = create_session(&mut client, "Branches").await;

    let root = add(&mut client, &session.id, "root", "").await;
    let mut children = Vec::new();
    for name in ["a", "b", "c"] {
        children.push(add(&mut client, &session.id, name, &root.id).await);
    }
    let mut replies = Vec::new();
    for (child, name) in children.iter().zip(["a1", "b1", "c1"]) {
        replies.push(add(&mut client, &session.id, name, &child.id).await);
    }
    let by_thread = |id: &str| pb::ListMessagesRequest {
        session_id: session.id.clone(),
        thread_message_id: id.to_string(),
        ..Default::default()
    };

    for (index, name) in ["a", "b", "c"].iter().enumerate() {
        let reply_name = format!("{name}1");
        let expected = vec!["root".to_string(), name.to_string(), reply_name];
        let through_reply = list_contents(&mut client, by_thread(&replies[index].id)).await;
        assert_eq!(
            through_reply, expected,
            "thread through the reply of {name}"
        );
        let through_child = list_contents(&mut client, by_thread(&children[index].id)).await;
        assert_eq!(through_child, expected, "thread through {name}");
        let paged = list_contents(
            &mut client,
            pb::ListMessagesRequest {
                page_size: 1,
                ..by_thread(&replies[index].id)
            },
        )
        .await;
        assert_eq!(paged, expected, "thread of {name} one message per page");
    }
    let from_root = list_contents(&mut client, by_thread(&root.id)).await;
    assert_eq!(from_root, ["root", "a", "a1"]);

    let forks = list_contents(
        &mut client,
        pb::ListMessagesRequest {
            session_id: session.id.clone(),
            parent_id: root.id.clone(),
            page_size: 2,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(forks, ["a", "b", "c"]);
    let everything = list_contents(
        &mut client,
        pb::ListMessagesRequest {
            session_id: session.id.clone(),
            page_size: 3,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(everything, ["root", "a", "b", "c", "a1", "b1", "c1"]);

    // Deleting branch a moves the default walk from the root to branch b.
    client
        .delete_message(pb::DeleteMessageRequest {
            id: children[0].id.clone(),
        })
        .await
        .expect("delete a");
    let from_root = list_contents(&mut client, by_thread(&root.id)).await;
    assert_eq!(from_root, ["root", "b", "b1"]);
    let orphan_thread = list_contents(&mut client, by_thread(&replies[0].id)).await;
    assert_eq!(orphan_thread, ["root", "a1"]);

    let both = client
        .list_messages(pb::ListMessagesRequest {
            session_id: session.id.clone(),
            thread_message_id: root.id.clone(),
            parent_id: root.id.clone(),
            ..Default::default()
        })
        .await
        .expect_err("both selectors");
    assert_eq!(both.code(), Code::InvalidArgument);
    let other = create_session(&mut client, "Other").await;
    let foreign = add(&mut client, &other.id, "elsewhere", "").await;
    let wrong_session = client
        .list_messages(by_thread(&foreign.id))
        .await
        .expect_err("thread message of another session");
    assert_eq!(wrong_session.code(), Code::InvalidArgument);
    test.stop().await;
}

async fn edit_message_keeps_revisions(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    let acme = tenant(&test, "acme").await;
    let mut client = chat(&test.channel, acme.owner());
    let session = create_session(&mut client, "Edits").await;
    let message = add(&mut client, &session.id, "draft one", "").await;

    for content in ["draft two", "final"] {
        client
            .edit_message(pb::EditMessageRequest {
                id: message.id.clone(),
                content: content.into(),
            })
            .await
            .expect("edit");
    }
    let edited = client
        .get_message(pb::GetMessageRequest {
            id: message.id.clone(),
        })
        .await
        .expect("get")
        .into_inner()
        .message
        .expect("message");
    assert_eq!(edited.content, "final");
    assert_eq!(edited.version, 3);
    assert_eq!(edited.create_time, message.create_time);

    let mut revisions = Vec::new();
    let mut token = String::new();
    loop {
        let page = client
            .list_message_revisions(pb::ListMessageRevisionsRequest {
                message_id: message.id.clone(),
                page_size: 1,
                page_token: token.clone(),
            })
            .await
            .expect("revisions")
            .into_inner();
        revisions.extend(page.revisions);
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let versions: Vec<(i32, &str)> = revisions
        .iter()
        .map(|revision| (revision.version, revision.content.as_str()))
        .collect();
    assert_eq!(versions, [(1, "draft one"), (2, "draft two")]);
    assert!(
        revisions
            .iter()
            .all(|revision| revision.message_id == message.id)
    );
    test.stop().await;
}

async fn delete_message_is_soft(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    let acme = tenant(&test, "acme").await;
    let mut client = chat(&test.channel, acme.owner());
    let session = create_session(&mut client, "Deletes").await;
    let first = add(&mut client, &session.id, "keep", "").await;
    let second = add(&mut client, &session.id, "drop", &first.id).await;
    let reply = add(&mut client, &session.id, "reply to drop", &second.id).await;

    client
        .delete_message(pb::DeleteMessageRequest {
            id: second.id.clone(),
        })
        .await
        .expect("delete");
    let gone = client
        .get_message(pb::GetMessageRequest {
            id: second.id.clone(),
        })
        .await
        .expect_err("deleted message");
    assert_eq!(gone.code(), Code::NotFound);
    let again = client
        .delete_message(pb::DeleteMessageRequest {
            id: second.id.clone(),
        })
        .await
        .expect_err("deleted twice");
    assert_eq!(again.code(), Code::NotFound);
    let edit = client
        .edit_message(pb::EditMessageRequest {
            id: second.id.clone(),
            content: "x".into(),
        })
        .await
        .expect_err("edit deleted");
    assert_eq!(edit.code(), Code::NotFound);

    let contents = list_contents(
        &mut client,
        pb::ListMessagesRequest {
            session_id: session.id.clone(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(contents, ["keep", "reply to drop"]);
    let kept_reply = client
        .get_message(pb::GetMessageRequest {
            id: reply.id.clone(),
        })
        .await
        .expect("reply stays")
        .into_inner()
        .message
        .expect("message");
    assert_eq!(kept_reply.parent_id, second.id);
    assert_eq!(
        get_session(&mut client, &session.id)
            .await
            .expect("get")
            .message_count,
        2
    );

    let mut conn = test.server.database().read().await.expect("connection");
    let stored: Option<chrono::NaiveDateTime> = messages::table
        .filter(messages::tenant_id.eq(&acme.id))
        .filter(messages::id.eq(&second.id))
        .select(messages::deleted_at)
        .first(&mut *conn)
        .await
        .expect("row kept");
    assert!(stored.is_some());
    drop(conn);
    test.stop().await;
}

async fn search_sessions_matches_text(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    let acme = tenant(&test, "acme").await;
    let (_, member) = user(&test, &acme, "member").await;
    let (_, admin) = user(&test, &acme, "admin").await;
    let mut owner_client = chat(&test.channel, acme.owner());
    let mut member_client = chat(&test.channel, member);
    let mut admin_client = chat(&test.channel, admin);

    let recipes = create_session(&mut owner_client, "Pasta Recipes").await;
    let budget = create_session(&mut owner_client, "Budget").await;
    add(&mut owner_client, &budget.id, "Save 50% on groceries", "").await;
    let deleted_hit = create_session(&mut owner_client, "pasta archive").await;
    owner_client
        .delete_session(pb::DeleteSessionRequest {
            id: deleted_hit.id.clone(),
        })
        .await
        .expect("delete");
    let members_own = create_session(&mut member_client, "Member pasta").await;
    let removed = create_session(&mut owner_client, "Removed").await;
    let removed_message = add(&mut owner_client, &removed.id, "secret pasta", "").await;
    owner_client
        .delete_message(pb::DeleteMessageRequest {
            id: removed_message.id,
        })
        .await
        .expect("delete message");

    let search = async |client: &mut Client, query: &str| -> Vec<String> {
        let mut ids = Vec::new();
        let mut token = String::new();
        loop {
            let page = client
                .search_sessions(pb::SearchSessionsRequest {
                    query: query.to_string(),
                    page_size: 1,
                    page_token: token.clone(),
                })
                .await
                .expect("search")
                .into_inner();
            ids.extend(page.sessions.into_iter().map(|session| session.id));
            if page.next_page_token.is_empty() {
                return ids;
            }
            token = page.next_page_token;
        }
    };

    // Owners are admins too, so they search the member's sessions as well.
    let mut owner_hits = search(&mut owner_client, "PASTA").await;
    owner_hits.sort();
    let mut expected = vec![recipes.id.clone(), members_own.id.clone()];
    expected.sort();
    assert_eq!(owner_hits, expected);
    assert_eq!(search(&mut owner_client, "50%").await, [budget.id.as_str()]);
    assert!(search(&mut owner_client, "5_%").await.is_empty());
    assert_eq!(search(&mut owner_client, "%").await, [budget.id.as_str()]);
    assert!(search(&mut owner_client, "_").await.is_empty());
    assert_eq!(
        search(&mut member_client, "pasta").await,
        [members_own.id.as_str()]
    );
    let mut admin_hits = search(&mut admin_client, "pasta").await;
    admin_hits.sort();
    assert_eq!(admin_hits, expected);
    assert!(search(&mut member_client, "groceries").await.is_empty());

    let empty = owner_client
        .search_sessions(pb::SearchSessionsRequest {
            query: "  ".into(),
            ..Default::default()
        })
        .await
        .expect_err("empty query");
    assert_eq!(empty.code(), Code::InvalidArgument);
    test.stop().await;
}

async fn share_token_lifecycle(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    let acme = tenant(&test, "acme").await;
    let (_, viewer) = user(&test, &acme, "viewer").await;
    let mut owner_client = chat(&test.channel, acme.owner());
    let mut viewer_client = chat(&test.channel, viewer);
    let session = create_session(&mut owner_client, "Shared").await;
    add(&mut owner_client, &session.id, "one", "").await;
    add(&mut owner_client, &session.id, "two", "").await;

    let shared = owner_client
        .share_session(pb::ShareSessionRequest {
            id: session.id.clone(),
            expire_time: Some(seconds_from_now(3600)),
        })
        .await
        .expect("share")
        .into_inner();
    assert_eq!(shared.share_token.len(), 43);
    let shared_session = shared.session.expect("session");
    assert!(shared_session.shared);
    assert!(shared_session.share_expire_time.is_some());

    let open = async |client: &mut Client, token: &str| {
        client
            .get_shared_session(pb::GetSharedSessionRequest {
                share_token: token.to_string(),
                page_size: 1,
                page_token: String::new(),
            })
            .await
            .map(|response| response.into_inner())
    };
    let opened = open(&mut viewer_client, &shared.share_token)
        .await
        .expect("viewer opens the link");
    assert_eq!(opened.session.expect("session").id, session.id);
    assert_eq!(opened.messages.len(), 1);
    assert_eq!(opened.messages[0].content, "one");
    let second_page = viewer_client
        .get_shared_session(pb::GetSharedSessionRequest {
            share_token: shared.share_token.clone(),
            page_size: 1,
            page_token: opened.next_page_token.clone(),
        })
        .await
        .expect("second page")
        .into_inner();
    assert_eq!(second_page.messages[0].content, "two");

    // The viewer may not open the session by id: the link is the only way in.
    let by_id = get_session(&mut viewer_client, &session.id)
        .await
        .expect_err("viewer reads by id");
    assert_eq!(by_id.code(), Code::NotFound);

    let mut conn = test.server.database().read().await.expect("connection");
    let stored: Option<String> = chat_sessions::table
        .filter(chat_sessions::tenant_id.eq(&acme.id))
        .filter(chat_sessions::id.eq(&session.id))
        .select(chat_sessions::share_token)
        .first(&mut *conn)
        .await
        .expect("session row");
    drop(conn);
    assert_ne!(stored.as_deref(), Some(shared.share_token.as_str()));
    assert_eq!(stored.map(|hash| hash.len()), Some(64));

    // A new share replaces the token.
    let reshared = owner_client
        .share_session(pb::ShareSessionRequest {
            id: session.id.clone(),
            expire_time: None,
        })
        .await
        .expect("share again")
        .into_inner();
    let old = open(&mut viewer_client, &shared.share_token)
        .await
        .expect_err("replaced token");
    assert_eq!(old.code(), Code::NotFound);
    open(&mut viewer_client, &reshared.share_token)
        .await
        .expect("new token works");

    // Expired tokens stop working.
    let mut conn = test.server.database().write().await.expect("connection");
    diesel::update(
        chat_sessions::table
            .filter(chat_sessions::tenant_id.eq(&acme.id))
            .filter(chat_sessions::id.eq(&session.id)),
    )
    .set(chat_sessions::share_expires_at.eq(Some(models::now() - chrono::Duration::seconds(1))))
    .execute(&mut *conn)
    .await
    .expect("expire the token");
    drop(conn);
    let expired = open(&mut viewer_client, &reshared.share_token)
        .await
        .expect_err("expired token");
    assert_eq!(expired.code(), Code::NotFound);

    let third = owner_client
        .share_session(pb::ShareSessionRequest {
            id: session.id.clone(),
            expire_time: None,
        })
        .await
        .expect("share a third time")
        .into_inner();
    let unshared = owner_client
        .unshare_session(pb::UnshareSessionRequest {
            id: session.id.clone(),
        })
        .await
        .expect("unshare")
        .into_inner()
        .session
        .expect("session");
    assert!(!unshared.shared);
    let revoked = open(&mut viewer_client, &third.share_token)
        .await
        .expect_err("revoked token");
    assert_eq!(revoked.code(), Code::NotFound);

    let past = owner_client
        .share_session(pb::ShareSessionRequest {
            id: session.id.clone(),
            expire_time: Some(seconds_from_now(-10)),
        })
        .await
        .expect_err("expiry in the past");
    assert_eq!(past.code(), Code::InvalidArgument);
    let unknown = open(&mut viewer_client, "not-a-token")
        .await
        .expect_err("unknown token");
    assert_eq!(unknown.code(), Code::NotFound);
    test.stop().await;
}

async fn share_token_stays_in_tenant(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    let acme = tenant(&test, "acme").await;
    let globex = tenant(&test, "globex").await;
    let mut acme_client = chat(&test.channel, acme.owner());
    let mut globex_client = chat(&test.channel, globex.owner());
    let session = create_session(&mut acme_client, "Acme only").await;
    let token = acme_client
        .share_session(pb::ShareSessionRequest {
            id: session.id.clone(),
            expire_time: None,
        })
        .await
        .expect("share")
        .into_inner()
        .share_token;

    let status = globex_client
        .get_shared_session(pb::GetSharedSessionRequest {
            share_token: token.clone(),
            ..Default::default()
        })
        .await
        .expect_err("token of another tenant");
    assert_eq!(status.code(), Code::NotFound);
    let anonymous = pb::chat_service_client::ChatServiceClient::new(test.channel.clone())
        .get_shared_session(pb::GetSharedSessionRequest {
            share_token: token,
            ..Default::default()
        })
        .await
        .expect_err("no credential");
    assert_eq!(anonymous.code(), Code::Unauthenticated);
    test.stop().await;
}

async fn sessions_isolated_between_users(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    let acme = tenant(&test, "acme").await;
    let (_, alice) = user(&test, &acme, "member").await;
    let (_, bob) = user(&test, &acme, "member").await;
    let (_, admin) = user(&test, &acme, "admin").await;
    let mut alice_client = chat(&test.channel, alice);
    let mut bob_client = chat(&test.channel, bob);
    let mut admin_client = chat(&test.channel, admin);
    let session = create_session(&mut alice_client, "Alice's").await;
    let message = add(&mut alice_client, &session.id, "private", "").await;

    let not_found = |result: Result<(), tonic::Status>, what: &str| {
        let status = result.expect_err(what);
        assert_eq!(status.code(), Code::NotFound, "{what}: {status:?}");
    };
    not_found(
        get_session(&mut bob_client, &session.id).await.map(drop),
        "bob reads alice's session",
    );
    not_found(
        bob_client
            .get_message(pb::GetMessageRequest {
                id: message.id.clone(),
            })
            .await
            .map(drop),
        "bob reads alice's message",
    );
    not_found(
        bob_client
            .add_message(pb::AddMessageRequest {
                session_id: session.id.clone(),
                role: pb::MessageRole::User.into(),
                content: "intrusion".into(),
                ..Default::default()
            })
            .await
            .map(drop),
        "bob writes to alice's session",
    );
    not_found(
        bob_client
            .delete_session(pb::DeleteSessionRequest {
                id: session.id.clone(),
            })
            .await
            .map(drop),
        "bob deletes alice's session",
    );
    not_found(
        bob_client
            .watch(pb::WatchRequest {
                session_id: session.id.clone(),
                ..Default::default()
            })
            .await
            .map(drop),
        "bob watches alice's session",
    );
    let bobs = list_session_titles(&mut bob_client, pb::ListSessionsRequest::default()).await;
    assert!(bobs.is_empty(), "{bobs:?}");

    // Admins read every session of the tenant, but do not write to others' sessions.
    let read = get_session(&mut admin_client, &session.id)
        .await
        .expect("admin reads");
    assert_eq!(read.id, session.id);
    let contents = list_contents(
        &mut admin_client,
        pb::ListMessagesRequest {
            session_id: session.id.clone(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(contents, ["private"]);
    not_found(
        admin_client
            .edit_message(pb::EditMessageRequest {
                id: message.id.clone(),
                content: "edited by admin".into(),
            })
            .await
            .map(drop),
        "admin edits alice's message",
    );
    test.stop().await;
}

async fn sessions_isolated_between_tenants(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    let acme = tenant(&test, "acme").await;
    let globex = tenant(&test, "globex").await;
    let mut acme_client = chat(&test.channel, acme.owner());
    let mut globex_client = chat(&test.channel, globex.owner());
    let session = create_session(&mut acme_client, "Acme").await;
    let message = add(&mut acme_client, &session.id, "acme data", "").await;
    let globex_session = create_session(&mut globex_client, "Globex").await;
    add(&mut globex_client, &globex_session.id, "acme data", "").await;

    let calls: Vec<(&str, Result<(), tonic::Status>)> = vec![
        (
            "get session",
            get_session(&mut globex_client, &session.id).await.map(drop),
        ),
        (
            "list messages",
            globex_client
                .list_messages(pb::ListMessagesRequest {
                    session_id: session.id.clone(),
                    ..Default::default()
                })
                .await
                .map(drop),
        ),
        (
            "get message",
            globex_client
                .get_message(pb::GetMessageRequest {
                    id: message.id.clone(),
                })
                .await
                .map(drop),
        ),
        (
            "revisions",
            globex_client
                .list_message_revisions(pb::ListMessageRevisionsRequest {
                    message_id: message.id.clone(),
                    ..Default::default()
                })
                .await
                .map(drop),
        ),
        (
            "add message",
            globex_client
                .add_message(pb::AddMessageRequest {
                    session_id: session.id.clone(),
                    role: pb::MessageRole::User.into(),
                    ..Default::default()
                })
                .await
                .map(drop),
        ),
        (
            "share",
            globex_client
                .share_session(pb::ShareSessionRequest {
                    id: session.id.clone(),
                    expire_time: None,
                })
                .await
                .map(drop),
        ),
        (
            "delete message",
            globex_client
                .delete_message(pb::DeleteMessageRequest {
                    id: message.id.clone(),
                })
                .await
                .map(drop),
        ),
        (
            "watch",
            globex_client
                .watch(pb::WatchRequest {
                    session_id: session.id.clone(),
                    ..Default::default()
                })
                .await
                .map(drop),
        ),
    ];
    for (what, result) in calls {
        let status = result.expect_err(what);
        assert_eq!(status.code(), Code::NotFound, "{what}: {status:?}");
    }
    let globex_hits = globex_client
        .search_sessions(pb::SearchSessionsRequest {
            query: "acme".into(),
            ..Default::default()
        })
        .await
        .expect("search")
        .into_inner()
        .sessions;
    assert_eq!(globex_hits.len(), 1);
    assert_ne!(globex_hits[0].id, session.id);
    test.stop().await;
}

fn session_row(tenant: &TestTenant, index: usize) -> ChatSession {
    let now = models::now();
    ChatSession {
        tenant_id: tenant.id.clone(),
        id: models::new_id(),
        user_id: tenant.owner_id.clone(),
        title: format!("bulk {index}"),
        status: "active".into(),
        is_shared: false,
        share_token: None,
        share_expires_at: None,
        message_count: 0,
        last_message_at: None,
        metadata: "{}".into(),
        created_at: now,
        updated_at: now,
        deleted_at: None,
    }
}

async fn session_quota_enforced(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    let acme = tenant(&test, "acme").await;
    let mut client = chat(&test.channel, acme.owner());
    let deletable = create_session(&mut client, "deletable").await;
    // The free plan allows 100 sessions that are not deleted.
    let rows: Vec<ChatSession> = (0..99).map(|index| session_row(&acme, index)).collect();
    // One transaction keeps this fast on SQLite. Diesel's batch insert is not available on the
    // connection type shared by both backends.
    let mut conn = test.server.database().write().await.expect("connection");
    conn.transaction(async |conn| {
        for row in &rows {
            diesel::insert_into(chat_sessions::table)
                .values(row)
                .execute(conn)
                .await?;
        }
        Ok::<_, diesel::result::Error>(())
    })
    .await
    .expect("insert rows");
    drop(conn);

    let status = client
        .create_session(pb::CreateSessionRequest::default())
        .await
        .expect_err("over the session quota");
    assert_eq!(status.code(), Code::ResourceExhausted);
    let quota = status.get_details_quota_failure().expect("QuotaFailure");
    assert_eq!(quota.violations[0].subject, "tenant:chat_sessions");

    client
        .delete_session(pb::DeleteSessionRequest {
            id: deletable.id.clone(),
        })
        .await
        .expect("delete");
    create_session(&mut client, "fits again").await;
    let undelete = client
        .undelete_session(pb::UndeleteSessionRequest {
            id: deletable.id.clone(),
        })
        .await
        .expect_err("undelete over the quota");
    assert_eq!(undelete.code(), Code::ResourceExhausted);
    test.stop().await;
}

async fn message_quota_enforced(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    let acme = tenant(&test, "acme").await;
    let mut client = chat(&test.channel, acme.owner());
    let session = create_session(&mut client, "busy").await;
    // The free plan allows 1,000 messages a month; the count starts at 999.
    set_message_count(&test, &acme, 999).await;

    add(&mut client, &session.id, "the last one this month", "").await;
    let status = client
        .add_message(pb::AddMessageRequest {
            session_id: session.id.clone(),
            role: pb::MessageRole::User.into(),
            content: "one too many".into(),
            ..Default::default()
        })
        .await
        .expect_err("over the message quota");
    assert_eq!(status.code(), Code::ResourceExhausted);
    let quota = status.get_details_quota_failure().expect("QuotaFailure");
    assert_eq!(quota.violations[0].subject, "tenant:messages_per_month");
    assert!(
        quota.violations[0].description.contains("created 1000"),
        "{}",
        quota.violations[0].description
    );
    assert_eq!(stored_messages(&test, &acme).await, 1);
    test.stop().await;
}

async fn message_quota_exact_when_concurrent(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    let acme = tenant(&test, "acme").await;
    let mut client = chat(&test.channel, acme.owner());
    let sessions = [
        create_session(&mut client, "first").await.id,
        create_session(&mut client, "second").await.id,
    ];
    // Five messages remain of the free plan's 1,000; twenty arrive at once.
    set_message_count(&test, &acme, 995).await;

    let mut calls = tokio::task::JoinSet::new();
    for index in 0..20 {
        let mut client = client.clone();
        let session_id = sessions[index % 2].clone();
        calls.spawn(async move {
            client
                .add_message(pb::AddMessageRequest {
                    session_id,
                    role: pb::MessageRole::User.into(),
                    content: format!("concurrent {index}"),
                    ..Default::default()
                })
                .await
                .map(|_| ())
                .map_err(|status| status.code())
        });
    }
    let mut accepted = 0;
    let mut exhausted = 0;
    while let Some(outcome) = calls.join_next().await {
        match outcome.expect("call task") {
            Ok(()) => accepted += 1,
            Err(Code::ResourceExhausted) => exhausted += 1,
            Err(code) => panic!("an add failed with {code:?}"),
        }
    }

    assert_eq!(accepted, 5);
    assert_eq!(exhausted, 15);
    assert_eq!(stored_messages(&test, &acme).await, 5);
    let mut conn = test.server.database().read().await.expect("connection");
    let counted = ally::repo::message_counts::get(&mut conn, &acme.id, models::now())
        .await
        .expect("count");
    assert_eq!(counted, 1000);
    drop(conn);
    test.stop().await;
}

async fn message_counts_backfilled(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    let acme = tenant(&test, "acme").await;
    let mut client = chat(&test.channel, acme.owner());
    let session = create_session(&mut client, "history").await;
    let mut added = Vec::new();
    for index in 0..3 {
        added.push(add(&mut client, &session.id, &format!("m{index}"), "").await);
    }
    // Move one message into the previous month, then recreate the counts from the messages.
    let now = models::now();
    let last_month = now - chrono::Duration::days(40);
    let mut conn = test.server.database().write().await.expect("connection");
    diesel::update(messages::table.filter(messages::id.eq(&added[0].id)))
        .set(messages::created_at.eq(last_month))
        .execute(&mut *conn)
        .await
        .expect("backdate a message");
    drop(conn);
    let database = test.server.database();
    ally::db::migrations::execute(database, ally::db::migrations::Command::Revert)
        .await
        .expect("revert the message counts");
    ally::db::migrations::execute(database, ally::db::migrations::Command::Run)
        .await
        .expect("run the message counts again");

    let mut conn = database.read().await.expect("connection");
    let this_month = ally::repo::message_counts::get(&mut conn, &acme.id, now)
        .await
        .expect("count");
    let previous = ally::repo::message_counts::get(&mut conn, &acme.id, last_month)
        .await
        .expect("count");
    assert_eq!(this_month, 2);
    assert_eq!(previous, 1);
    drop(conn);
    test.stop().await;
}

/// Sets the tenant's message count for this month, as if it had created `count` messages.
async fn set_message_count(test: &TestServer, tenant: &TestTenant, count: i64) {
    let mut conn = test.server.database().write().await.expect("connection");
    let added =
        ally::repo::message_counts::try_add(&mut conn, &tenant.id, models::now(), count, None)
            .await
            .expect("set the message count");
    assert!(added);
}

/// Counts the tenant's stored messages.
async fn stored_messages(test: &TestServer, tenant: &TestTenant) -> i64 {
    let mut conn = test.server.database().read().await.expect("connection");
    messages::table
        .filter(messages::tenant_id.eq(&tenant.id))
        .count()
        .get_result(&mut *conn)
        .await
        .expect("count messages")
}

/// Receives the next message of a Watch stream, failing after 10 s.
async fn next_watched(stream: &mut tonic::Streaming<pb::WatchResponse>) -> pb::Message {
    tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("a watched message within 10 s")
        .expect("stream item")
        .expect("stream open")
        .message
        .expect("message")
}

async fn watch_receives_new_messages(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    let acme = tenant(&test, "acme").await;
    let (_, admin) = user(&test, &acme, "admin").await;
    let mut owner_client = chat(&test.channel, acme.owner());
    let session = create_session(&mut owner_client, "Live").await;
    let other = create_session(&mut owner_client, "Quiet").await;
    add(&mut owner_client, &session.id, "before the watch", "").await;

    let mut stream = chat(&test.channel, admin)
        .watch(pb::WatchRequest {
            session_id: session.id.clone(),
            ..Default::default()
        })
        .await
        .expect("watch")
        .into_inner();

    // A second connection, like another client process.
    let writer_channel = connect(test.server.local_addr()).await;
    let mut writer = chat(&writer_channel, acme.owner());
    add(&mut writer, &other.id, "other session", "").await;
    let first = add(&mut writer, &session.id, "first live", "").await;
    let second = add(&mut writer, &session.id, "second live", &first.id).await;

    let received = next_watched(&mut stream).await;
    assert_eq!(received, first);
    let received = next_watched(&mut stream).await;
    assert_eq!(received, second);

    for index in 0..20 {
        add(&mut writer, &session.id, &format!("burst {index}"), "").await;
    }
    for index in 0..20 {
        let received = next_watched(&mut stream).await;
        assert_eq!(received.content, format!("burst {index}"));
    }
    drop(stream);
    test.stop().await;
}

async fn watch_resumes_after_message(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    let acme = tenant(&test, "acme").await;
    let mut client = chat(&test.channel, acme.owner());
    let session = create_session(&mut client, "Resume").await;
    let seen = add(&mut client, &session.id, "seen", "").await;
    add(&mut client, &session.id, "missed one", "").await;
    add(&mut client, &session.id, "missed two", "").await;

    let mut stream = client
        .watch(pb::WatchRequest {
            session_id: session.id.clone(),
            resume_after_message_id: seen.id.clone(),
        })
        .await
        .expect("watch")
        .into_inner();
    assert_eq!(next_watched(&mut stream).await.content, "missed one");
    assert_eq!(next_watched(&mut stream).await.content, "missed two");
    add(&mut client, &session.id, "live", "").await;
    assert_eq!(next_watched(&mut stream).await.content, "live");

    let status = client
        .watch(pb::WatchRequest {
            session_id: session.id.clone(),
            resume_after_message_id: models::new_id(),
        })
        .await
        .expect_err("unknown resume message");
    assert_eq!(status.code(), Code::InvalidArgument);

    // Shutting down ends open streams with UNAVAILABLE instead of waiting for them.
    let stopped = tokio::time::timeout(Duration::from_secs(10), test.stop()).await;
    assert!(
        stopped.is_ok(),
        "the server waited for the open Watch stream"
    );
    let ended = tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("the stream ends");
    assert!(!matches!(ended, Ok(Some(_))), "{ended:?}");
}

async fn concurrent_writers_all_stored(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    let acme = tenant(&test, "acme").await;
    let mut client = chat(&test.channel, acme.owner());
    let mut sessions = Vec::new();
    for index in 0..5 {
        sessions.push(
            create_session(&mut client, &format!("busy {index}"))
                .await
                .id,
        );
    }

    const WRITERS: usize = 50;
    const MESSAGES_EACH: usize = 4;
    let mut tasks = Vec::new();
    for writer in 0..WRITERS {
        let mut client = client.clone();
        let session_id = sessions[writer % sessions.len()].clone();
        tasks.push(tokio::spawn(async move {
            let mut stored = Vec::new();
            for index in 0..MESSAGES_EACH {
                let result = client
                    .add_message(pb::AddMessageRequest {
                        session_id: session_id.clone(),
                        role: pb::MessageRole::User.into(),
                        content: format!("writer {writer} message {index}"),
                        ..Default::default()
                    })
                    .await;
                match result {
                    Ok(response) => stored.push(response.into_inner().message.expect("message").id),
                    Err(status) => panic!("writer {writer} failed: {status:?}"),
                }
            }
            stored
        }));
    }
    let mut acknowledged = Vec::new();
    for task in tasks {
        acknowledged.extend(task.await.expect("writer task"));
    }
    assert_eq!(acknowledged.len(), WRITERS * MESSAGES_EACH);

    let mut conn = test.server.database().read().await.expect("connection");
    let stored_ids: Vec<String> = messages::table
        .filter(messages::tenant_id.eq(&acme.id))
        .select(messages::id)
        .load(&mut *conn)
        .await
        .expect("stored messages");
    drop(conn);
    assert_eq!(stored_ids.len(), WRITERS * MESSAGES_EACH);
    for id in &acknowledged {
        assert!(
            stored_ids.contains(id),
            "acknowledged message {id} is missing"
        );
    }
    let mut counted = 0;
    for session_id in &sessions {
        counted += get_session(&mut client, session_id)
            .await
            .expect("get")
            .message_count;
    }
    assert_eq!(counted, (WRITERS * MESSAGES_EACH) as i64);
    test.stop().await;
}

async fn purge_removes_old_deleted_sessions(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    let acme = tenant(&test, "acme").await;
    let mut client = chat(&test.channel, acme.owner());
    let old = create_session(&mut client, "old").await;
    let old_message = add(&mut client, &old.id, "old message", "").await;
    client
        .edit_message(pb::EditMessageRequest {
            id: old_message.id.clone(),
            content: "edited".into(),
        })
        .await
        .expect("edit");
    let recent = create_session(&mut client, "recent").await;
    let live = create_session(&mut client, "live").await;
    for id in [&old.id, &recent.id] {
        client
            .delete_session(pb::DeleteSessionRequest { id: id.clone() })
            .await
            .expect("delete");
    }
    let database = test.server.database().clone();
    let mut conn = database.write().await.expect("connection");
    diesel::update(
        chat_sessions::table
            .filter(chat_sessions::tenant_id.eq(&acme.id))
            .filter(chat_sessions::id.eq(&old.id)),
    )
    .set(chat_sessions::deleted_at.eq(Some(models::now() - chrono::Duration::days(40))))
    .execute(&mut *conn)
    .await
    .expect("age the deletion");

    let cutoff = models::now() - chrono::Duration::days(30);
    let due = ally::repo::chat_sessions::count_deleted_before(&mut conn, cutoff)
        .await
        .expect("count");
    assert_eq!(due, 1);
    let purged = ally::repo::chat_sessions::purge_deleted_before(&mut conn, cutoff, 1)
        .await
        .expect("purge");
    assert_eq!(purged, 1);
    let purged_again = ally::repo::chat_sessions::purge_deleted_before(&mut conn, cutoff, 1)
        .await
        .expect("purge again");
    assert_eq!(purged_again, 0);

    let remaining: Vec<String> = chat_sessions::table
        .filter(chat_sessions::tenant_id.eq(&acme.id))
        .select(chat_sessions::id)
        .load(&mut *conn)
        .await
        .expect("sessions");
    assert!(!remaining.contains(&old.id));
    assert!(remaining.contains(&recent.id));
    assert!(remaining.contains(&live.id));
    let orphans: i64 = messages::table
        .filter(messages::tenant_id.eq(&acme.id))
        .filter(messages::session_id.eq(&old.id))
        .count()
        .get_result(&mut *conn)
        .await
        .expect("messages");
    assert_eq!(orphans, 0);
    let revisions: i64 = ally::schema::message_revisions::table
        .filter(ally::schema::message_revisions::tenant_id.eq(&acme.id))
        .count()
        .get_result(&mut *conn)
        .await
        .expect("revisions");
    assert_eq!(revisions, 0);
    drop(conn);
    test.stop().await;
}

/// Starts a server on an existing database with Redis at `redis_url`.
async fn server_with_redis(
    database: &TestDatabase,
    redis_url: &str,
) -> ally::server::RunningServer {
    crate::common::init_logging();
    let mut settings = test_settings(&database.url, database.dir());
    settings.redis.url = Some(secrecy::SecretString::from(redis_url.to_string()));
    ally::server::start(settings).await.expect("server starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_across_two_servers() {
    let redis = PrivateRedis::start();
    let database = TestDatabase::create(TestBackend::Mariadb).await;
    let redis_url = redis.url();
    let first = ServerProcess::start(&database, &[("REDIS_URL", &redis_url)]);
    let second = ServerProcess::start(&database, &[("REDIS_URL", &redis_url)]);
    let first_channel = first.channel().await;
    let second_channel = second.channel().await;

    let created = create_tenant(&first_channel, "Acme", "acme").await;
    let acme = TestTenant {
        id: created.tenant.expect("tenant").id,
        owner_id: created.owner.expect("owner").id,
    };
    let mut on_first = chat(&first_channel, acme.owner());
    let mut on_second = chat(&second_channel, acme.owner());
    let session = create_session(&mut on_first, "Replicated").await;

    let mut stream = on_first
        .watch(pb::WatchRequest {
            session_id: session.id.clone(),
            ..Default::default()
        })
        .await
        .expect("watch")
        .into_inner();
    let sent = add(&mut on_second, &session.id, "through the second server", "").await;
    assert_eq!(next_watched(&mut stream).await, sent);
    let local = add(&mut on_first, &session.id, "through the first server", "").await;
    assert_eq!(next_watched(&mut stream).await, local);

    drop(stream);
    first.stop().await;
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_messages_still_saved() {
    let database = TestDatabase::create(TestBackend::Sqlite).await;
    // Nothing listens on this port.
    let server = server_with_redis(&database, &format!("redis://127.0.0.1:{}", free_port())).await;
    let channel = connect(server.local_addr()).await;
    let created = create_tenant(&channel, "Acme", "acme").await;
    let acme = TestTenant {
        id: created.tenant.expect("tenant").id,
        owner_id: created.owner.expect("owner").id,
    };
    let mut client = chat(&channel, acme.owner());
    let session = create_session(&mut client, "Offline relay").await;
    let mut stream = client
        .watch(pb::WatchRequest {
            session_id: session.id.clone(),
            ..Default::default()
        })
        .await
        .expect("watch")
        .into_inner();

    let message = add(&mut client, &session.id, "saved anyway", "").await;
    assert_eq!(next_watched(&mut stream).await, message);
    drop(stream);
    server.shutdown().await.expect("stops");
}
