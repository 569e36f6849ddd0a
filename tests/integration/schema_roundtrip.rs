//! Every column of every table is written and read back through diesel on both backends, which
//! catches a `schema.rs` that does not match the SQL of either migration set.

use ally::db::{Database, DbConnection, PoolOptions, migrations};
use ally::models::{
    ApiKey, AuditLog, ChatSession, ClientConfiguration, Configuration, EmailVerification, Message,
    RefreshToken, RequestId, Tenant, User,
};
use ally::schema::{
    api_keys, audit_logs, chat_sessions, client_configurations, configurations,
    email_verifications, messages, refresh_tokens, request_ids, tenants, users,
};
use chrono::{NaiveDate, NaiveDateTime};
use diesel::{ExpressionMethods, QueryDsl, SelectableHelper};
use diesel_async::RunQueryDsl;

use crate::backend_tests;
use crate::common::{TestBackend, TestDatabase, test_settings};

backend_tests!(
    every_column_round_trips,
    auth_tables_round_trip,
    four_byte_text_round_trips,
    updated_at_maintained
);

/// Text with characters outside the Basic Multilingual Plane, which need 4 bytes in UTF-8.
const FOUR_BYTE: &str = "emoji 😀🎉🧑‍💻, math 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝒳, CJK ext-B 𠀀𠜎, flag 🇳🇴";

fn at(micros: u32) -> NaiveDateTime {
    NaiveDate::from_ymd_opt(2025, 3, 14)
        .and_then(|d| d.and_hms_micro_opt(17, 30, 45, micros))
        .expect("valid time")
}

async fn migrated(test_db: &TestDatabase) -> Database {
    let settings = test_settings(&test_db.url, test_db.dir());
    let database = Database::connect(
        settings.database_url().expect("valid url"),
        &PoolOptions::from(&settings.database),
    )
    .await
    .expect("database connects");
    migrations::execute(&database, migrations::Command::Run)
        .await
        .expect("migrations run");
    database
}

struct Rows {
    tenant: Tenant,
    user: User,
    configuration: Configuration,
    session: ChatSession,
    message: Message,
    api_key: ApiKey,
    audit: AuditLog,
    client_configuration: ClientConfiguration,
}

fn full_rows(tenant_id: &str) -> Rows {
    let user_id = "0193a0a0-0000-7000-8000-000000000002".to_string();
    let session_id = "0193a0a0-0000-7000-8000-000000000004".to_string();
    Rows {
        tenant: Tenant {
            id: tenant_id.to_string(),
            name: format!("Acme {FOUR_BYTE}"),
            domain: Some("chat.acme.example".into()),
            subdomain: Some("acme".into()),
            plan: "professional".into(),
            status: "suspended".into(),
            suspended_reason: Some("unpaid invoice".into()),
            settings: r#"{"theme":"dark","nested":{"n":1}}"#.into(),
            version: 7,
            subscription_expires_at: Some(at(999_999)),
            created_at: at(1),
            updated_at: at(2),
            deleted_at: Some(at(3)),
        },
        user: User {
            tenant_id: tenant_id.to_string(),
            id: user_id.clone(),
            email: "owner@acme.example".into(),
            display_name: format!("Ada {FOUR_BYTE}"),
            password_hash: Some("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into()),
            role: "owner".into(),
            is_active: false,
            email_verified_at: Some(at(4)),
            failed_login_count: 3,
            locked_until: Some(at(5)),
            last_login_at: Some(at(6)),
            created_at: at(7),
            updated_at: at(8),
        },
        configuration: Configuration {
            tenant_id: tenant_id.to_string(),
            id: "0193a0a0-0000-7000-8000-000000000003".into(),
            config_type: "llm.defaults".into(),
            value: r#"{"model":"gpt-4o","temperature":0.2}"#.into(),
            version: 3,
            is_active: true,
            description: Some("defaults".into()),
            created_by: Some(user_id.clone()),
            created_at: at(9),
            updated_at: at(10),
            deleted_at: Some(at(11)),
        },
        session: ChatSession {
            tenant_id: tenant_id.to_string(),
            id: session_id.clone(),
            user_id: user_id.clone(),
            title: format!("Plans {FOUR_BYTE}"),
            status: "archived".into(),
            is_shared: true,
            share_token: Some("shr_abcdefghijklmnopqrstuvwxyz012345".into()),
            share_expires_at: Some(at(12)),
            message_count: 1,
            last_message_at: Some(at(13)),
            metadata: r#"{"source":"import"}"#.into(),
            created_at: at(14),
            updated_at: at(15),
            deleted_at: Some(at(16)),
        },
        message: Message {
            tenant_id: tenant_id.to_string(),
            id: "0193a0a0-0000-7000-8000-000000000005".into(),
            session_id: session_id.clone(),
            user_id: Some(user_id.clone()),
            parent_id: Some("0193a0a0-0000-7000-8000-000000000099".into()),
            role: "assistant".into(),
            content: FOUR_BYTE.repeat(10),
            content_type: "code".into(),
            model: Some("gpt-4o-2024-08-06".into()),
            prompt_tokens: Some(120),
            completion_tokens: Some(340),
            latency_ms: Some(1_250),
            finish_reason: Some("stop".into()),
            metadata: format!(r#"{{"note":"{FOUR_BYTE}"}}"#),
            request_id: Some("req-1".into()),
            version: 2,
            created_at: at(17),
            updated_at: at(18),
            deleted_at: Some(at(19)),
        },
        api_key: ApiKey {
            tenant_id: tenant_id.to_string(),
            id: "0193a0a0-0000-7000-8000-000000000006".into(),
            user_id: user_id.clone(),
            name: "ci".into(),
            key_id: "k_0123456789abcdef".into(),
            key_hash: "c2hhMjU2LWhhc2gtb2YtdGhlLXNlY3JldC1wYXJ0".into(),
            scopes: r#"["chat:read","chat:write"]"#.into(),
            expires_at: Some(at(20)),
            last_used_at: Some(at(21)),
            use_count: 9_000_000_000,
            revoked_at: Some(at(22)),
            created_at: at(23),
            updated_at: at(24),
        },
        audit: AuditLog {
            tenant_id: tenant_id.to_string(),
            id: "0193a0a0-0000-7000-8000-000000000007".into(),
            actor_type: "api_key".into(),
            actor_id: Some("k_0123456789abcdef".into()),
            event_type: "user.created".into(),
            resource_type: Some("user".into()),
            resource_id: Some(user_id.clone()),
            severity: "critical".into(),
            request_id: Some("req-1".into()),
            ip_address: Some("2001:db8::1".into()),
            metadata: r#"{"fields":["email"]}"#.into(),
            created_at: at(25),
        },
        client_configuration: ClientConfiguration {
            tenant_id: tenant_id.to_string(),
            id: "0193a0a0-0000-7000-8000-000000000008".into(),
            client_id: "legacy-web".into(),
            legacy_version: "2.3.1".into(),
            source_format: "ini".into(),
            original_text: format!("[llm]\nmodel = gpt-4\n; {FOUR_BYTE}\n"),
            migration_status: "failed".into(),
            migration_error: Some("unknown key llm.foo".into()),
            migrated_at: Some(at(26)),
            created_at: at(27),
            updated_at: at(28),
        },
    }
}

/// Builds the same rows with every nullable column empty and every flag at its other value.
fn sparse_rows(tenant_id: &str) -> Rows {
    let mut rows = full_rows(tenant_id);
    rows.tenant.domain = None;
    rows.tenant.subdomain = None;
    rows.tenant.suspended_reason = None;
    rows.tenant.subscription_expires_at = None;
    rows.tenant.deleted_at = None;
    rows.user.password_hash = None;
    rows.user.is_active = true;
    rows.user.email_verified_at = None;
    rows.user.locked_until = None;
    rows.user.last_login_at = None;
    rows.configuration.is_active = false;
    rows.configuration.description = None;
    rows.configuration.created_by = None;
    rows.configuration.deleted_at = None;
    rows.session.is_shared = false;
    rows.session.share_token = None;
    rows.session.share_expires_at = None;
    rows.session.last_message_at = None;
    rows.session.deleted_at = None;
    rows.message.user_id = None;
    rows.message.parent_id = None;
    rows.message.model = None;
    rows.message.prompt_tokens = None;
    rows.message.completion_tokens = None;
    rows.message.latency_ms = None;
    rows.message.finish_reason = None;
    rows.message.request_id = None;
    rows.message.deleted_at = None;
    rows.api_key.key_id = "k_fedcba9876543210".into();
    rows.api_key.key_hash = "YW5vdGhlci1oYXNoLW9mLWFub3RoZXItc2VjcmV0".into();
    rows.api_key.expires_at = None;
    rows.api_key.last_used_at = None;
    rows.api_key.revoked_at = None;
    rows.audit.actor_id = None;
    rows.audit.resource_type = None;
    rows.audit.resource_id = None;
    rows.audit.request_id = None;
    rows.audit.ip_address = None;
    rows.client_configuration.migration_error = None;
    rows.client_configuration.migrated_at = None;
    rows
}

async fn insert_all(conn: &mut DbConnection, rows: &Rows) {
    diesel::insert_into(tenants::table)
        .values(&rows.tenant)
        .execute(conn)
        .await
        .expect("tenant");
    diesel::insert_into(users::table)
        .values(&rows.user)
        .execute(conn)
        .await
        .expect("user");
    diesel::insert_into(configurations::table)
        .values(&rows.configuration)
        .execute(conn)
        .await
        .expect("configuration");
    diesel::insert_into(chat_sessions::table)
        .values(&rows.session)
        .execute(conn)
        .await
        .expect("chat session");
    diesel::insert_into(messages::table)
        .values(&rows.message)
        .execute(conn)
        .await
        .expect("message");
    diesel::insert_into(api_keys::table)
        .values(&rows.api_key)
        .execute(conn)
        .await
        .expect("api key");
    diesel::insert_into(audit_logs::table)
        .values(&rows.audit)
        .execute(conn)
        .await
        .expect("audit");
    diesel::insert_into(client_configurations::table)
        .values(&rows.client_configuration)
        .execute(conn)
        .await
        .expect("client configuration");
}

async fn assert_read_back(conn: &mut DbConnection, rows: &Rows) {
    let tenant_id = rows.tenant.id.as_str();
    let tenant = tenants::table
        .filter(tenants::id.eq(tenant_id))
        .select(Tenant::as_select())
        .first(conn)
        .await
        .expect("read tenant");
    assert_eq!(tenant, rows.tenant);
    let user = users::table
        .filter(users::tenant_id.eq(tenant_id))
        .select(User::as_select())
        .first(conn)
        .await
        .expect("read user");
    assert_eq!(user, rows.user);
    let configuration = configurations::table
        .filter(configurations::tenant_id.eq(tenant_id))
        .select(Configuration::as_select())
        .first(conn)
        .await
        .expect("read configuration");
    assert_eq!(configuration, rows.configuration);
    let session = chat_sessions::table
        .filter(chat_sessions::tenant_id.eq(tenant_id))
        .select(ChatSession::as_select())
        .first(conn)
        .await
        .expect("read chat session");
    assert_eq!(session, rows.session);
    let message = messages::table
        .filter(messages::tenant_id.eq(tenant_id))
        .select(Message::as_select())
        .first(conn)
        .await
        .expect("read message");
    assert_eq!(message, rows.message);
    let api_key = api_keys::table
        .filter(api_keys::tenant_id.eq(tenant_id))
        .select(ApiKey::as_select())
        .first(conn)
        .await
        .expect("read api key");
    assert_eq!(api_key, rows.api_key);
    let audit = audit_logs::table
        .filter(audit_logs::tenant_id.eq(tenant_id))
        .select(AuditLog::as_select())
        .first(conn)
        .await
        .expect("read audit entry");
    assert_eq!(audit, rows.audit);
    let client_configuration = client_configurations::table
        .filter(client_configurations::tenant_id.eq(tenant_id))
        .select(ClientConfiguration::as_select())
        .first(conn)
        .await
        .expect("read client configuration");
    assert_eq!(client_configuration, rows.client_configuration);
}

async fn every_column_round_trips(backend: TestBackend) {
    let test_db = TestDatabase::create(backend).await;
    let database = migrated(&test_db).await;
    let mut conn = database.write().await.expect("connection");

    let full = full_rows("0193a0a0-0000-7000-8000-000000000001");
    let mut sparse = sparse_rows("0193a0a0-0000-7000-8000-0000000000f1");
    sparse.tenant.name = "Sparse".into();
    insert_all(&mut conn, &full).await;
    insert_all(&mut conn, &sparse).await;

    assert_read_back(&mut conn, &full).await;
    assert_read_back(&mut conn, &sparse).await;
}

async fn four_byte_text_round_trips(backend: TestBackend) {
    let test_db = TestDatabase::create(backend).await;
    let database = migrated(&test_db).await;
    let mut conn = database.write().await.expect("connection");
    let rows = full_rows("0193a0a0-0000-7000-8000-0000000000a1");
    insert_all(&mut conn, &rows).await;

    let content: String = messages::table
        .filter(messages::id.eq(&rows.message.id))
        .select(messages::content)
        .first(&mut conn)
        .await
        .expect("read content");
    assert_eq!(content.as_bytes(), FOUR_BYTE.repeat(10).as_bytes());

    let name: String = tenants::table
        .filter(tenants::id.eq(&rows.tenant.id))
        .select(tenants::name)
        .first(&mut conn)
        .await
        .expect("read name");
    assert_eq!(name.as_bytes(), format!("Acme {FOUR_BYTE}").as_bytes());

    let found: i64 = messages::table
        .filter(messages::content.eq(FOUR_BYTE.repeat(10)))
        .count()
        .get_result(&mut conn)
        .await
        .expect("filter by 4-byte text");
    assert_eq!(
        found, 1,
        "a query parameter with 4-byte characters must match"
    );
}

async fn updated_at_maintained(backend: TestBackend) {
    let test_db = TestDatabase::create(backend).await;
    let database = migrated(&test_db).await;
    let mut conn = database.write().await.expect("connection");
    let rows = full_rows("0193a0a0-0000-7000-8000-0000000000b1");
    insert_all(&mut conn, &rows).await;

    diesel::update(tenants::table.filter(tenants::id.eq(&rows.tenant.id)))
        .set(tenants::name.eq("Renamed"))
        .execute(&mut conn)
        .await
        .expect("update without updated_at");

    let updated: NaiveDateTime = tenants::table
        .filter(tenants::id.eq(&rows.tenant.id))
        .select(tenants::updated_at)
        .first(&mut conn)
        .await
        .expect("read updated_at");
    assert!(
        updated > rows.tenant.updated_at,
        "updated_at stayed {updated} after an update"
    );
}

async fn auth_tables_round_trip(backend: TestBackend) {
    let test_db = TestDatabase::create(backend).await;
    let database = migrated(&test_db).await;
    let mut conn = database.write().await.expect("connection");
    let rows = full_rows("0193a0a0-0000-7000-8000-0000000000c1");
    insert_all(&mut conn, &rows).await;
    let tenant_id = rows.tenant.id.clone();
    let user_id = rows.user.id.clone();

    for used in [Some(at(40)), None] {
        let token = RefreshToken {
            tenant_id: tenant_id.clone(),
            id: ally::models::new_id(),
            user_id: user_id.clone(),
            family_id: ally::models::new_id(),
            token_hash: ally::auth::secret_token::hash(&ally::models::new_id()),
            expires_at: at(41),
            used_at: used,
            revoked_at: used,
            created_at: at(42),
        };
        diesel::insert_into(refresh_tokens::table)
            .values(&token)
            .execute(&mut conn)
            .await
            .expect("insert");
        let read = refresh_tokens::table
            .filter(refresh_tokens::id.eq(&token.id))
            .select(RefreshToken::as_select())
            .first(&mut conn)
            .await
            .expect("read");
        assert_eq!(read, token);

        let verification = EmailVerification {
            tenant_id: tenant_id.clone(),
            id: ally::models::new_id(),
            user_id: user_id.clone(),
            email: format!("ü{FOUR_BYTE}@example.com"),
            token_hash: ally::auth::secret_token::hash(&ally::models::new_id()),
            expires_at: at(43),
            used_at: used,
            created_at: at(44),
        };
        diesel::insert_into(email_verifications::table)
            .values(&verification)
            .execute(&mut conn)
            .await
            .expect("insert");
        let read = email_verifications::table
            .filter(email_verifications::id.eq(&verification.id))
            .select(EmailVerification::as_select())
            .first(&mut conn)
            .await
            .expect("read");
        assert_eq!(read, verification);
    }

    let request = RequestId {
        scope: tenant_id.clone(),
        method: "CreateUser".into(),
        request_id: "retry-1".into(),
        resource_id: user_id.clone(),
        created_at: at(45),
    };
    diesel::insert_into(request_ids::table)
        .values(&request)
        .execute(&mut conn)
        .await
        .expect("insert");
    let read = request_ids::table
        .filter(request_ids::request_id.eq("retry-1"))
        .select(RequestId::as_select())
        .first(&mut conn)
        .await
        .expect("read");
    assert_eq!(read, request);
}
