//! Every protected RPC called by every kind of caller: allowed or PERMISSION_DENIED exactly as
//! the roles table in docs/authentication.md sets.
//!
//! Each call sends an empty request message, which the server decodes as a request with every
//! field at its default. An allowed call may then fail for other reasons (a missing field, an
//! unknown id), but only a refused one fails with PERMISSION_DENIED.

use ally::models::{self, ApiKey, User};
use ally::schema::{api_keys, users};
use diesel_async::RunQueryDsl;
use tonic::Code;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;
use tonic_prost::ProstCodec;

use crate::backend_tests;
use crate::common::clients::{Credential, create_tenant};
use crate::common::{TestBackend, TestServer};

backend_tests!(every_rpc_every_caller);

/// Kinds of callers, in the order of the columns below.
const CALLERS: [&str; 6] = [
    "viewer",
    "member",
    "admin",
    "owner",
    "operator",
    "scoped key",
];

/// One row per RPC: whether each caller in [`CALLERS`] may make the call. The scoped key
/// belongs to an admin and has only the `users.read` scope.
const MATRIX: &[(&str, [bool; 6])] = &[
    (
        "/ally.v1.TenantService/CreateTenant",
        [false, false, false, false, true, false],
    ),
    (
        "/ally.v1.TenantService/GetTenant",
        [true, true, true, true, true, false],
    ),
    (
        "/ally.v1.TenantService/GetTenantByDomain",
        [false, false, false, false, true, false],
    ),
    (
        "/ally.v1.TenantService/ListTenants",
        [false, false, false, false, true, false],
    ),
    (
        "/ally.v1.TenantService/UpdateTenant",
        [false, false, false, false, true, false],
    ),
    (
        "/ally.v1.TenantService/UpdateSubscription",
        [false, false, false, false, true, false],
    ),
    (
        "/ally.v1.TenantService/GetTenantUsage",
        [false, false, true, true, true, false],
    ),
    (
        "/ally.v1.TenantService/SuspendTenant",
        [false, false, false, false, true, false],
    ),
    (
        "/ally.v1.TenantService/ResumeTenant",
        [false, false, false, false, true, false],
    ),
    (
        "/ally.v1.TenantService/DeleteTenant",
        [false, false, false, false, true, false],
    ),
    (
        "/ally.v1.TenantService/UndeleteTenant",
        [false, false, false, false, true, false],
    ),
    (
        "/ally.v1.UserService/CreateUser",
        [false, false, true, true, false, false],
    ),
    (
        "/ally.v1.UserService/GetUser",
        [true, true, true, true, false, true],
    ),
    (
        "/ally.v1.UserService/ListUsers",
        [true, true, true, true, false, true],
    ),
    (
        "/ally.v1.UserService/UpdateUser",
        [true, true, true, true, false, false],
    ),
    (
        "/ally.v1.UserService/UpdateUserRole",
        [false, false, true, true, false, false],
    ),
    (
        "/ally.v1.UserService/DeactivateUser",
        [false, false, true, true, false, false],
    ),
    (
        "/ally.v1.UserService/ReactivateUser",
        [false, false, true, true, false, false],
    ),
    (
        "/ally.v1.UserService/ChangePassword",
        [true, true, true, true, false, false],
    ),
    (
        "/ally.v1.UserService/SendVerification",
        [false, false, true, true, false, false],
    ),
    (
        "/ally.v1.UserService/VerifyEmail",
        [true, true, true, true, false, false],
    ),
    (
        "/ally.v1.ApiKeyService/CreateApiKey",
        [true, true, true, true, false, false],
    ),
    (
        "/ally.v1.ApiKeyService/ListApiKeys",
        [true, true, true, true, false, false],
    ),
    (
        "/ally.v1.ApiKeyService/GetApiKey",
        [true, true, true, true, false, false],
    ),
    (
        "/ally.v1.ApiKeyService/RevokeApiKey",
        [true, true, true, true, false, false],
    ),
    (
        "/ally.v1.ApiKeyService/ValidateApiKey",
        [false, false, true, true, true, false],
    ),
    (
        "/ally.v1.AuditService/ListAuditEntries",
        [false, false, true, true, true, false],
    ),
    (
        "/ally.v1.AuditService/ExportAuditEntries",
        [false, false, true, true, true, false],
    ),
    (
        "/ally.v1.ChatService/CreateSession",
        [false, true, true, true, false, false],
    ),
    (
        "/ally.v1.ChatService/GetSession",
        [true, true, true, true, false, false],
    ),
    (
        "/ally.v1.ChatService/ListSessions",
        [true, true, true, true, false, false],
    ),
    (
        "/ally.v1.ChatService/UpdateSession",
        [false, true, true, true, false, false],
    ),
    (
        "/ally.v1.ChatService/DeleteSession",
        [false, true, true, true, false, false],
    ),
    (
        "/ally.v1.ChatService/UndeleteSession",
        [false, true, true, true, false, false],
    ),
    (
        "/ally.v1.ChatService/SearchSessions",
        [true, true, true, true, false, false],
    ),
    (
        "/ally.v1.ChatService/AddMessage",
        [false, true, true, true, false, false],
    ),
    (
        "/ally.v1.ChatService/ListMessages",
        [true, true, true, true, false, false],
    ),
    (
        "/ally.v1.ChatService/GetMessage",
        [true, true, true, true, false, false],
    ),
    (
        "/ally.v1.ChatService/EditMessage",
        [false, true, true, true, false, false],
    ),
    (
        "/ally.v1.ChatService/ListMessageRevisions",
        [true, true, true, true, false, false],
    ),
    (
        "/ally.v1.ChatService/DeleteMessage",
        [false, true, true, true, false, false],
    ),
    (
        "/ally.v1.ChatService/ShareSession",
        [false, true, true, true, false, false],
    ),
    (
        "/ally.v1.ChatService/GetSharedSession",
        [true, true, true, true, false, false],
    ),
    (
        "/ally.v1.ChatService/UnshareSession",
        [false, true, true, true, false, false],
    ),
    (
        "/ally.v1.ChatService/Watch",
        [true, true, true, true, false, false],
    ),
    (
        "/ally.v1.ChatService/ImportConversations",
        [false, true, true, true, false, false],
    ),
    (
        "/ally.v1.ConfigurationService/GetConfiguration",
        [true, true, true, true, false, false],
    ),
    (
        "/ally.v1.ConfigurationService/UpdateConfiguration",
        [false, false, true, true, false, false],
    ),
    (
        "/ally.v1.ConfigurationService/ListConfigurationRevisions",
        [true, true, true, true, false, false],
    ),
    (
        "/ally.v1.ConfigurationService/RollbackConfiguration",
        [false, false, true, true, false, false],
    ),
    (
        "/ally.v1.ConfigurationService/DeleteConfiguration",
        [false, false, true, true, false, false],
    ),
    (
        "/ally.v1.ClientConfigurationService/ImportClientConfiguration",
        [false, false, true, true, false, false],
    ),
    (
        "/ally.v1.ClientConfigurationService/MigrateClientConfiguration",
        [false, false, true, true, false, false],
    ),
    (
        "/ally.v1.ClientConfigurationService/GetClientConfiguration",
        [true, true, true, true, false, false],
    ),
    (
        "/ally.v1.ClientConfigurationService/ListClientConfigurations",
        [true, true, true, true, false, false],
    ),
];

const STREAMING: &[&str] = &[
    "/ally.v1.AuditService/ExportAuditEntries",
    "/ally.v1.ChatService/Watch",
];

/// Client-streaming RPCs: the call sends a stream of one empty request message.
const CLIENT_STREAMING: &[&str] = &["/ally.v1.ChatService/ImportConversations"];

/// Sends an empty request to `method` and returns the status code, OK included.
async fn call(channel: &Channel, credential: &Credential, method: &'static str) -> Code {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await.expect("channel ready");
    let mut request = tonic::Request::new(());
    credential.apply(&mut request);
    let path = PathAndQuery::from_static(method);
    let codec: ProstCodec<(), ()> = ProstCodec::default();
    if CLIENT_STREAMING.contains(&method) {
        let mut request = tonic::Request::new(tokio_stream::once(()));
        credential.apply(&mut request);
        return match grpc.client_streaming(request, path, codec).await {
            Ok(_) => Code::Ok,
            Err(status) => status.code(),
        };
    }
    if STREAMING.contains(&method) {
        match grpc.server_streaming(request, path, codec).await {
            Ok(response) => {
                let mut stream = response.into_inner();
                match stream.message().await {
                    Ok(_) => Code::Ok,
                    Err(status) => status.code(),
                }
            }
            Err(status) => status.code(),
        }
    } else {
        match grpc.unary(request, path, codec).await {
            Ok(_) => Code::Ok,
            Err(status) => status.code(),
        }
    }
}

async fn insert_user(test: &TestServer, tenant_id: &str, role: &str) -> User {
    let now = models::now();
    let user = User {
        tenant_id: tenant_id.to_string(),
        id: models::new_id(),
        email: format!("{role}@matrix.example"),
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
        .values(&user)
        .execute(&mut *conn)
        .await
        .expect("user");
    user
}

async fn insert_scoped_key(test: &TestServer, owner: &User, scopes: &str) -> String {
    let key = ally::auth::api_key::generate();
    let now = models::now();
    let row = ApiKey {
        tenant_id: owner.tenant_id.clone(),
        id: models::new_id(),
        user_id: owner.id.clone(),
        name: "scoped".into(),
        key_id: key.key_id.clone(),
        key_hash: key.secret_hash.clone(),
        scopes: scopes.to_string(),
        expires_at: None,
        last_used_at: None,
        use_count: 0,
        revoked_at: None,
        created_at: now,
        updated_at: now,
    };
    let mut conn = test.server.database().write().await.expect("connection");
    diesel::insert_into(api_keys::table)
        .values(&row)
        .execute(&mut *conn)
        .await
        .expect("key");
    key.full_key
}

async fn every_rpc_every_caller(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    let created = create_tenant(&test.channel, "Matrix", "matrix").await;
    let tenant_id = created.tenant.unwrap().id;
    let owner_id = created.owner.unwrap().id;
    let viewer = insert_user(&test, &tenant_id, "viewer").await;
    let member = insert_user(&test, &tenant_id, "member").await;
    let admin = insert_user(&test, &tenant_id, "admin").await;
    let scoped_key = insert_scoped_key(&test, &admin, r#"["users.read"]"#).await;
    let credentials = [
        Credential::user(&tenant_id, &viewer.id, "viewer"),
        Credential::user(&tenant_id, &member.id, "member"),
        Credential::user(&tenant_id, &admin.id, "admin"),
        Credential::user(&tenant_id, &owner_id, "owner"),
        Credential::operator(),
        Credential::api_key(&scoped_key),
    ];

    let mut wrong = Vec::new();
    for (method, allowed) in MATRIX {
        for (index, credential) in credentials.iter().enumerate() {
            let code = call(&test.channel, credential, method).await;
            assert_ne!(
                code,
                Code::Unauthenticated,
                "{method} as {}",
                CALLERS[index]
            );
            assert_ne!(code, Code::Unimplemented, "{method} is not served");
            let denied = code == Code::PermissionDenied;
            if denied == allowed[index] {
                wrong.push(format!("{method} as {}: got {code:?}", CALLERS[index]));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "calls that do not match the roles table:\n{}",
        wrong.join("\n")
    );

    let listed: Vec<&str> = ally::auth::policy::RULES
        .iter()
        .filter(|rule| rule.access != ally::auth::policy::Access::Public)
        .map(|rule| rule.method)
        .collect();
    let covered: Vec<&str> = MATRIX.iter().map(|(method, _)| *method).collect();
    assert_eq!(
        listed, covered,
        "the matrix must cover every protected RPC of the policy table"
    );
    test.stop().await;
}
