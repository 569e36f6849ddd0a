//! Forged, malformed and valid credentials against the tenant layer of a real server.
//!
//! A call that the tenant layer accepts reaches tonic's router, which returns OK from the
//! registered TenantService or UNIMPLEMENTED while no service for the path is registered.
//! These tests count both as "passed the layer", so they hold before and after the ally.v1
//! services are wired in.

use ally::auth::api_key;
use ally::db::Database;
use ally::models::{ApiKey, Tenant, User, new_id, now};
use ally::proto::ally::v1::tenant_service_client::TenantServiceClient;
use ally::proto::ally::v1::{GetTenantRequest, ListTenantsRequest};
use ally::schema::{api_keys, tenants, users};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use diesel_async::RunQueryDsl;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Value, json};
use tonic::metadata::AsciiMetadataValue;
use tonic::transport::Channel;
use tonic::{Code, Status};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_types::StatusExt;

use crate::backend_tests;
use crate::common::{TEST_ISSUER, TEST_JWT_SECRET, TestBackend, TestServer, test_token_keys};

backend_tests!(
    forged_credentials_rejected,
    oversized_token_rejected,
    valid_tokens_accepted,
    member_denied_operator_rpc,
    suspended_tenant_denied,
    deleted_tenant_rejected,
    api_key_states,
    api_key_scopes,
    tenant_hints,
    request_id_echoed,
    request_id_generated,
    health_without_credential,
);

/// A secret of valid length that the test servers do not use.
const OTHER_SECRET: &str = "another-signing-secret-of-at-least-32-bytes";

/// One metadata entry of a call: an ASCII key and the raw bytes of its value.
type Entry = (&'static str, Vec<u8>);

/// What became of a call at the tenant layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    /// The call reached the router: OK from a registered service, or UNIMPLEMENTED.
    Passed,
    /// The call failed with this code, from the layer, the transport or a handler.
    Failed(Code),
}

fn verdict(status: &Status) -> Verdict {
    match status.code() {
        Code::Ok | Code::Unimplemented => Verdict::Passed,
        code => Verdict::Failed(code),
    }
}

const PASSED: Verdict = Verdict::Passed;
const UNAUTHENTICATED: Verdict = Verdict::Failed(Code::Unauthenticated);
const PERMISSION_DENIED: Verdict = Verdict::Failed(Code::PermissionDenied);
const INVALID_ARGUMENT: Verdict = Verdict::Failed(Code::InvalidArgument);

fn entry(name: &'static str, value: impl Into<Vec<u8>>) -> Entry {
    (name, value.into())
}

fn bearer(token: &str) -> Entry {
    entry("authorization", format!("Bearer {token}"))
}

fn api_key_entry(key: &str) -> Entry {
    entry("x-api-key", key)
}

fn request<T>(message: T, metadata: &[Entry]) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    for (name, value) in metadata {
        let value = AsciiMetadataValue::try_from(value.as_slice())
            .unwrap_or_else(|error| panic!("metadata value of {name} is invalid: {error}"));
        request.metadata_mut().append(*name, value);
    }
    request
}

/// Makes TenantService calls about one existing tenant, and returns each call's status: the
/// error, or `Code::Ok` with the response metadata.
struct Caller {
    channel: Channel,
    tenant_id: String,
}

impl Caller {
    fn new(channel: &Channel, tenant: &Tenant) -> Caller {
        Caller {
            channel: channel.clone(),
            tenant_id: tenant.id.clone(),
        }
    }

    /// Calls GetTenant, which operators and every member of the tenant may call.
    async fn get_tenant(&self, metadata: &[Entry]) -> Status {
        let message = GetTenantRequest {
            id: self.tenant_id.clone(),
        };
        let result = TenantServiceClient::new(self.channel.clone())
            .get_tenant(request(message, metadata))
            .await;
        match result {
            Ok(response) => Status::with_metadata(Code::Ok, "", response.metadata().clone()),
            Err(status) => status,
        }
    }

    /// Calls ListTenants, which only operators may call.
    async fn list_tenants(&self, metadata: &[Entry]) -> Status {
        let result = TenantServiceClient::new(self.channel.clone())
            .list_tenants(request(ListTenantsRequest::default(), metadata))
            .await;
        match result {
            Ok(response) => Status::with_metadata(Code::Ok, "", response.metadata().clone()),
            Err(status) => status,
        }
    }
}

fn error_reason(status: &Status) -> Option<String> {
    status.get_details_error_info().map(|info| info.reason)
}

fn response_request_id(status: &Status) -> Option<String> {
    let value = status.metadata().get("x-request-id")?;
    value.to_str().ok().map(str::to_string)
}

// Tokens are built by hand so that the header, the claims and the signature can each be wrong.

fn encode_part(json: &str) -> String {
    URL_SAFE_NO_PAD.encode(json)
}

/// Returns the base64url HMAC of `input` under `algorithm`, which must be an HS algorithm.
fn hmac_signature(input: &str, secret: &str, algorithm: Algorithm) -> String {
    let key = EncodingKey::from_secret(secret.as_bytes()).expect("HMAC key");
    jsonwebtoken::crypto::sign(input.as_bytes(), &key, algorithm).expect("HMAC signature")
}

/// Builds a JWT from raw header and claims JSON, signed with HMAC under `algorithm` whatever
/// the header names.
fn raw_token(header: &str, claims: &str, secret: &str, algorithm: Algorithm) -> String {
    let input = format!("{}.{}", encode_part(header), encode_part(claims));
    let signature = hmac_signature(&input, secret, algorithm);
    format!("{input}.{signature}")
}

/// Builds a JWT with the given header, signed with HMAC-SHA256 and the test secret.
fn token_with_header(header: &Value, claims: &Value) -> String {
    raw_token(
        &header.to_string(),
        &claims.to_string(),
        TEST_JWT_SECRET,
        Algorithm::HS256,
    )
}

/// Builds a JWT that the test servers accept when `claims` are valid.
fn hs256(claims: &Value) -> String {
    token_with_header(&json!({"alg": "HS256", "typ": "JWT"}), claims)
}

/// Returns claims as the server issues them: valid for 15 minutes from now.
fn claims(sub: &str, tenant: Option<&str>, role: &str) -> Value {
    let issued_at = chrono::Utc::now().timestamp();
    let mut claims = json!({
        "iss": TEST_ISSUER,
        "aud": TEST_ISSUER,
        "sub": sub,
        "role": role,
        "iat": issued_at,
        "nbf": issued_at,
        "exp": issued_at + 900,
        "jti": new_id(),
    });
    if let Some(tenant) = tenant {
        claims["tenant"] = json!(tenant);
    }
    claims
}

fn with_claim(claims: &Value, name: &str, value: Value) -> Value {
    let mut changed = claims.clone();
    changed[name] = value;
    changed
}

fn without_claim(claims: &Value, name: &str) -> Value {
    let mut changed = claims.clone();
    changed
        .as_object_mut()
        .expect("claims are a JSON object")
        .remove(name);
    changed
}

fn operator_token() -> String {
    test_token_keys()
        .issue_operator("root")
        .expect("operator token")
}

fn member_token(user: &User) -> String {
    let (token, _) = test_token_keys()
        .issue(&user.id, Some(&user.tenant_id), &user.role)
        .expect("member token");
    token
}

// Rows are written straight to the server's database, so these tests need no service to
// create them.

/// Inserts an active tenant after `edit` has adjusted the row.
async fn insert_tenant(database: &Database, edit: impl FnOnce(&mut Tenant)) -> Tenant {
    let created_at = now();
    let mut tenant = Tenant {
        id: new_id(),
        name: "Acme".to_string(),
        domain: None,
        subdomain: None,
        plan: "free".to_string(),
        status: "active".to_string(),
        suspended_reason: None,
        settings: "{}".to_string(),
        version: 1,
        subscription_expires_at: None,
        created_at,
        updated_at: created_at,
        deleted_at: None,
    };
    edit(&mut tenant);
    let mut conn = database.write().await.expect("database connection");
    diesel::insert_into(tenants::table)
        .values(&tenant)
        .execute(&mut *conn)
        .await
        .expect("insert tenant");
    tenant
}

/// Inserts a user of `tenant` with `role`.
async fn insert_user(database: &Database, tenant: &Tenant, role: &str, is_active: bool) -> User {
    let created_at = now();
    let id = new_id();
    let user = User {
        tenant_id: tenant.id.clone(),
        email: format!("{id}@example.com"),
        id,
        display_name: "Test User".to_string(),
        password_hash: None,
        role: role.to_string(),
        is_active,
        email_verified_at: None,
        failed_login_count: 0,
        locked_until: None,
        last_login_at: None,
        created_at,
        updated_at: created_at,
    };
    let mut conn = database.write().await.expect("database connection");
    diesel::insert_into(users::table)
        .values(&user)
        .execute(&mut *conn)
        .await
        .expect("insert user");
    user
}

/// Inserts an API key of `user` after `edit` has adjusted the row, and returns the full key.
async fn insert_api_key(
    database: &Database,
    user: &User,
    edit: impl FnOnce(&mut ApiKey),
) -> String {
    let generated = api_key::generate();
    let created_at = now();
    let mut key = ApiKey {
        tenant_id: user.tenant_id.clone(),
        id: new_id(),
        user_id: user.id.clone(),
        name: "test key".to_string(),
        key_id: generated.key_id,
        key_hash: generated.secret_hash,
        scopes: "[]".to_string(),
        expires_at: None,
        last_used_at: None,
        use_count: 0,
        revoked_at: None,
        created_at,
        updated_at: created_at,
    };
    edit(&mut key);
    let mut conn = database.write().await.expect("database connection");
    diesel::insert_into(api_keys::table)
        .values(&key)
        .execute(&mut *conn)
        .await
        .expect("insert API key");
    generated.full_key
}

/// Returns `key` with the last character of its secret changed, so the key id still finds the
/// row.
fn with_wrong_secret(key: &str) -> String {
    let (prefix, last) = key.split_at(key.len() - 1);
    let replacement = if last == "A" { "B" } else { "A" };
    format!("{prefix}{replacement}")
}

async fn forged_credentials_rejected(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    let database = test.server.database().clone();
    let tenant = insert_tenant(&database, |_| {}).await;
    let caller = Caller::new(&test.channel, &tenant);
    let user = insert_user(&database, &tenant, "member", true).await;
    let real_key = insert_api_key(&database, &user, |_| {}).await;
    let operator = operator_token();
    let member = claims(&user.id, Some(&tenant.id), "member");
    let operator_claims = claims("root", None, "operator");
    let valid_member = hs256(&member);
    let hs256_header = json!({"alg": "HS256", "typ": "JWT"});

    // Without these controls, a bug in the token builders would make every case below pass.
    let control = caller.get_tenant(&[bearer(&valid_member)]).await;
    assert_eq!(
        verdict(&control),
        PASSED,
        "hand-built member token: {control:?}"
    );
    let control = caller
        .list_tenants(&[bearer(&hs256(&operator_claims))])
        .await;
    assert_eq!(
        verdict(&control),
        PASSED,
        "hand-built operator token: {control:?}"
    );
    let control = caller.get_tenant(&[api_key_entry(&real_key)]).await;
    assert_eq!(verdict(&control), PASSED, "inserted API key: {control:?}");

    let now_seconds = chrono::Utc::now().timestamp();
    let unsigned_none = format!(
        "{}.{}.",
        encode_part(r#"{"alg":"none","typ":"JWT"}"#),
        encode_part(&operator_claims.to_string())
    );
    let signed_none = raw_token(
        r#"{"alg":"none","typ":"JWT"}"#,
        &operator_claims.to_string(),
        TEST_JWT_SECRET,
        Algorithm::HS256,
    );
    let (member_input, member_signature) = valid_member.rsplit_once('.').expect("three segments");
    let (member_header, _) = member_input.split_once('.').expect("three segments");
    let elevated_payload = format!(
        "{member_header}.{}.{member_signature}",
        encode_part(&operator_claims.to_string())
    );
    // serde_json 1.0 rejects JSON nested deeper than 128 levels by default, so a header or
    // claims nested 1000 deep must fail cleanly instead of exhausting the stack.
    let nested_json = format!("{}{}", "[".repeat(1000), "]".repeat(1000));
    let mut unknown_key_id = api_key::generate().full_key;
    // Bytes 7..23 are the 16 hex digits of the key id, after `ally_ak`.
    unknown_key_id.replace_range(7..23, "0123456789abcdef");
    // Well inside the 16 KiB HTTP/2 header list limit, so the call reaches the tenant layer.
    let long_garbage = "A".repeat(8 * 1024);

    let cases: Vec<(&str, Vec<Entry>)> = vec![
        ("no credential", vec![]),
        ("empty authorization", vec![entry("authorization", "")]),
        (
            "Bearer without token",
            vec![entry("authorization", "Bearer")],
        ),
        (
            "Bearer with empty token",
            vec![entry("authorization", "Bearer ")],
        ),
        (
            "Basic scheme",
            vec![entry("authorization", "Basic cm9vdDpyb290")],
        ),
        (
            "token without scheme",
            vec![entry("authorization", operator.clone())],
        ),
        (
            "Token scheme",
            vec![entry("authorization", format!("Token {operator}"))],
        ),
        ("garbage token", vec![bearer("not-a-jwt")]),
        ("alg none without signature", vec![bearer(&unsigned_none)]),
        ("alg none with HS256 signature", vec![bearer(&signed_none)]),
        (
            "HS256 with another secret",
            vec![bearer(&raw_token(
                &hs256_header.to_string(),
                &operator_claims.to_string(),
                OTHER_SECRET,
                Algorithm::HS256,
            ))],
        ),
        (
            "RS256 header with HMAC signature",
            vec![bearer(&token_with_header(
                &json!({"alg": "RS256", "typ": "JWT"}),
                &operator_claims,
            ))],
        ),
        (
            "ES256 header with HMAC signature",
            vec![bearer(&token_with_header(
                &json!({"alg": "ES256", "typ": "JWT"}),
                &operator_claims,
            ))],
        ),
        (
            "HS512 with the server secret",
            vec![bearer(&raw_token(
                r#"{"alg":"HS512","typ":"JWT"}"#,
                &operator_claims.to_string(),
                TEST_JWT_SECRET,
                Algorithm::HS512,
            ))],
        ),
        (
            "HS384 with the server secret",
            vec![bearer(&raw_token(
                r#"{"alg":"HS384","typ":"JWT"}"#,
                &operator_claims.to_string(),
                TEST_JWT_SECRET,
                Algorithm::HS384,
            ))],
        ),
        (
            "header without alg",
            vec![bearer(&token_with_header(
                &json!({"typ": "JWT"}),
                &operator_claims,
            ))],
        ),
        (
            "deeply nested header",
            vec![bearer(&raw_token(
                &nested_json,
                &operator_claims.to_string(),
                TEST_JWT_SECRET,
                Algorithm::HS256,
            ))],
        ),
        (
            "deeply nested claims",
            vec![bearer(&raw_token(
                &hs256_header.to_string(),
                &nested_json,
                TEST_JWT_SECRET,
                Algorithm::HS256,
            ))],
        ),
        (
            "exp an hour past",
            vec![bearer(&hs256(&with_claim(
                &operator_claims,
                "exp",
                json!(now_seconds - 3600),
            )))],
        ),
        (
            "exp two minutes past, beyond the 30 s leeway",
            vec![bearer(&hs256(&with_claim(
                &operator_claims,
                "exp",
                json!(now_seconds - 120),
            )))],
        ),
        (
            "nbf an hour ahead",
            vec![bearer(&hs256(&with_claim(
                &operator_claims,
                "nbf",
                json!(now_seconds + 3600),
            )))],
        ),
        (
            "wrong iss",
            vec![bearer(&hs256(&with_claim(
                &operator_claims,
                "iss",
                json!("evil"),
            )))],
        ),
        (
            "wrong aud",
            vec![bearer(&hs256(&with_claim(
                &operator_claims,
                "aud",
                json!("evil"),
            )))],
        ),
        (
            "aud as array",
            vec![bearer(&hs256(&with_claim(
                &operator_claims,
                "aud",
                json!([TEST_ISSUER]),
            )))],
        ),
        (
            "missing sub",
            vec![bearer(&hs256(&without_claim(&operator_claims, "sub")))],
        ),
        (
            "missing exp",
            vec![bearer(&hs256(&without_claim(&operator_claims, "exp")))],
        ),
        (
            "missing nbf",
            vec![bearer(&hs256(&without_claim(&operator_claims, "nbf")))],
        ),
        (
            "missing iss",
            vec![bearer(&hs256(&without_claim(&operator_claims, "iss")))],
        ),
        (
            "exp as string",
            vec![bearer(&hs256(&with_claim(
                &operator_claims,
                "exp",
                json!("9999999999"),
            )))],
        ),
        (
            "nbf as string",
            vec![bearer(&hs256(&with_claim(
                &operator_claims,
                "nbf",
                json!("0"),
            )))],
        ),
        (
            "negative exp",
            vec![bearer(&hs256(&with_claim(
                &operator_claims,
                "exp",
                json!(-1),
            )))],
        ),
        (
            "role as number",
            vec![bearer(&hs256(&with_claim(&member, "role", json!(3))))],
        ),
        (
            "tenant as array",
            vec![bearer(&hs256(&with_claim(
                &member,
                "tenant",
                json!([tenant.id.clone()]),
            )))],
        ),
        (
            "unknown role superuser",
            vec![bearer(&hs256(&with_claim(
                &member,
                "role",
                json!("superuser"),
            )))],
        ),
        (
            "role in upper case",
            vec![bearer(&hs256(&with_claim(&member, "role", json!("Owner"))))],
        ),
        (
            "member token without tenant",
            vec![bearer(&hs256(&without_claim(&member, "tenant")))],
        ),
        (
            "operator token with tenant",
            vec![bearer(&hs256(&with_claim(
                &operator_claims,
                "tenant",
                json!(tenant.id.clone()),
            )))],
        ),
        (
            "tenant that does not exist",
            vec![bearer(&hs256(&with_claim(
                &member,
                "tenant",
                json!(new_id()),
            )))],
        ),
        (
            "tenant id in upper case",
            vec![bearer(&hs256(&with_claim(
                &member,
                "tenant",
                json!(tenant.id.to_uppercase()),
            )))],
        ),
        (
            "tenant id with trailing space",
            vec![bearer(&hs256(&with_claim(
                &member,
                "tenant",
                json!(format!("{} ", tenant.id)),
            )))],
        ),
        (
            "unknown claim",
            vec![bearer(&hs256(&with_claim(
                &operator_claims,
                "admin",
                json!(true),
            )))],
        ),
        (
            "truncated signature",
            vec![bearer(&valid_member[..valid_member.len() - 4])],
        ),
        (
            "signature removed",
            vec![bearer(&format!("{member_input}."))],
        ),
        (
            "payload changed, signature kept",
            vec![bearer(&elevated_payload)],
        ),
        ("two segments", vec![bearer(member_input)]),
        (
            "four segments",
            vec![bearer(&format!("{valid_member}.{member_signature}"))],
        ),
        ("8 KiB garbage token", vec![bearer(&long_garbage)]),
        ("empty API key", vec![api_key_entry("")]),
        (
            "API key with wrong prefix",
            vec![api_key_entry(&real_key.replacen("ally_", "alli_", 1))],
        ),
        ("unknown API key id", vec![api_key_entry(&unknown_key_id)]),
        (
            "API key with wrong secret",
            vec![api_key_entry(&with_wrong_secret(&real_key))],
        ),
        (
            "API key in upper case",
            vec![api_key_entry(&real_key.to_uppercase())],
        ),
        (
            "API key with trailing space",
            vec![api_key_entry(&format!("{real_key} "))],
        ),
        ("API key as bearer token", vec![bearer(&real_key)]),
        (
            "API key and token together",
            vec![bearer(&operator), api_key_entry(&real_key)],
        ),
    ];
    assert!(cases.len() >= 25, "only {} cases", cases.len());

    for (name, metadata) in &cases {
        let status = caller.get_tenant(metadata).await;
        assert_eq!(
            verdict(&status),
            UNAUTHENTICATED,
            "{name}: expected UNAUTHENTICATED, got {status:?}"
        );
        let after = caller.get_tenant(&[bearer(&operator)]).await;
        assert_eq!(
            verdict(&after),
            PASSED,
            "a valid call after `{name}` failed: {after:?}"
        );
    }

    // A repeated authorization entry is a malformed request rather than a bad credential.
    let repeated = caller
        .get_tenant(&[bearer(&operator), bearer(&operator)])
        .await;
    assert_eq!(
        verdict(&repeated),
        INVALID_ARGUMENT,
        "authorization sent twice: {repeated:?}"
    );
    test.stop().await;
}

async fn oversized_token_rejected(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    let tenant = insert_tenant(test.server.database(), |_| {}).await;
    let caller = Caller::new(&test.channel, &tenant);

    // 64 KiB exceeds the 16 KiB header list limit that hyper 1.13 sets by default, so the
    // transport fails the call before the tenant layer runs. The server closes the connection
    // with GOAWAY ENHANCE_YOUR_CALM, which tonic 0.14 reports as RESOURCE_EXHAUSTED. Any failure
    // code is correct as long as the call does not pass and the server accepts new connections.
    let oversized = caller.get_tenant(&[bearer(&"A".repeat(64 * 1024))]).await;
    assert_ne!(
        verdict(&oversized),
        PASSED,
        "64 KiB token passed the layer: {oversized:?}"
    );

    let fresh = Caller::new(
        &crate::common::connect(test.server.local_addr()).await,
        &tenant,
    );
    let after = fresh.get_tenant(&[bearer(&operator_token())]).await;
    assert_eq!(
        verdict(&after),
        PASSED,
        "a valid call after the 64 KiB token failed: {after:?}"
    );
    test.stop().await;
}

async fn valid_tokens_accepted(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    let database = test.server.database().clone();
    let tenant = insert_tenant(&database, |_| {}).await;
    let caller = Caller::new(&test.channel, &tenant);
    let operator = operator_token();

    let status = caller.get_tenant(&[bearer(&operator)]).await;
    assert_eq!(verdict(&status), PASSED, "operator GetTenant: {status:?}");
    let status = caller.list_tenants(&[bearer(&operator)]).await;
    assert_eq!(verdict(&status), PASSED, "operator ListTenants: {status:?}");
    let lowercase = entry("authorization", format!("bearer {operator}"));
    let status = caller.get_tenant(&[lowercase]).await;
    assert_eq!(
        verdict(&status),
        PASSED,
        "operator token with lowercase scheme: {status:?}"
    );

    for role in ["viewer", "member", "admin", "owner"] {
        let user = insert_user(&database, &tenant, role, true).await;
        let status = caller.get_tenant(&[bearer(&member_token(&user))]).await;
        assert_eq!(verdict(&status), PASSED, "{role} GetTenant: {status:?}");
    }
    test.stop().await;
}

async fn member_denied_operator_rpc(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    let database = test.server.database().clone();
    let tenant = insert_tenant(&database, |_| {}).await;
    let caller = Caller::new(&test.channel, &tenant);
    let owner = insert_user(&database, &tenant, "owner", true).await;

    let status = caller.list_tenants(&[bearer(&member_token(&owner))]).await;
    assert_eq!(
        verdict(&status),
        PERMISSION_DENIED,
        "owner ListTenants: {status:?}"
    );
    assert_eq!(
        error_reason(&status).as_deref(),
        Some("ROLE_NOT_ALLOWED"),
        "owner ListTenants reason: {status:?}"
    );
    test.stop().await;
}

async fn suspended_tenant_denied(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    let database = test.server.database().clone();
    let tenant = insert_tenant(&database, |tenant| {
        tenant.status = "suspended".to_string();
        tenant.suspended_reason = Some("unpaid".to_string());
    })
    .await;
    let caller = Caller::new(&test.channel, &tenant);
    let user = insert_user(&database, &tenant, "owner", true).await;
    let key = insert_api_key(&database, &user, |_| {}).await;

    let status = caller.get_tenant(&[bearer(&member_token(&user))]).await;
    assert_eq!(
        verdict(&status),
        PERMISSION_DENIED,
        "token of a suspended tenant: {status:?}"
    );
    let info = status
        .get_details_error_info()
        .expect("ErrorInfo on a suspended tenant's call");
    assert_eq!(info.reason, "TENANT_SUSPENDED", "suspended tenant reason");
    assert_eq!(
        info.metadata.get("suspended_reason").map(String::as_str),
        Some("unpaid"),
        "suspended tenant's suspended_reason"
    );

    let status = caller.get_tenant(&[api_key_entry(&key)]).await;
    assert_eq!(
        verdict(&status),
        PERMISSION_DENIED,
        "API key of a suspended tenant: {status:?}"
    );
    assert_eq!(
        error_reason(&status).as_deref(),
        Some("TENANT_SUSPENDED"),
        "API key of a suspended tenant reason: {status:?}"
    );

    // Operators keep access, so that they can resume the tenant.
    let status = caller.get_tenant(&[bearer(&operator_token())]).await;
    assert_eq!(
        verdict(&status),
        PASSED,
        "operator GetTenant of a suspended tenant: {status:?}"
    );
    test.stop().await;
}

async fn deleted_tenant_rejected(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    let database = test.server.database().clone();
    let tenant = insert_tenant(&database, |tenant| tenant.deleted_at = Some(now())).await;
    let caller = Caller::new(&test.channel, &tenant);
    let user = insert_user(&database, &tenant, "owner", true).await;
    let key = insert_api_key(&database, &user, |_| {}).await;

    let status = caller.get_tenant(&[bearer(&member_token(&user))]).await;
    assert_eq!(
        verdict(&status),
        UNAUTHENTICATED,
        "token of a deleted tenant: {status:?}"
    );
    let status = caller.get_tenant(&[api_key_entry(&key)]).await;
    assert_eq!(
        verdict(&status),
        UNAUTHENTICATED,
        "API key of a deleted tenant: {status:?}"
    );
    test.stop().await;
}

async fn api_key_states(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    let database = test.server.database().clone();
    let tenant = insert_tenant(&database, |_| {}).await;
    let caller = Caller::new(&test.channel, &tenant);
    let active = insert_user(&database, &tenant, "member", true).await;
    let inactive = insert_user(&database, &tenant, "member", false).await;
    let hour = chrono::Duration::hours(1);

    let valid = insert_api_key(&database, &active, |_| {}).await;
    let expires_later = insert_api_key(&database, &active, |key| {
        key.expires_at = Some(now() + hour);
    })
    .await;
    let revoked = insert_api_key(&database, &active, |key| key.revoked_at = Some(now())).await;
    let expired = insert_api_key(&database, &active, |key| {
        key.expires_at = Some(now() - hour);
    })
    .await;
    let deactivated_owner = insert_api_key(&database, &inactive, |_| {}).await;

    let cases = [
        ("valid key", valid.as_str(), PASSED),
        ("key expiring in an hour", expires_later.as_str(), PASSED),
        ("revoked key", revoked.as_str(), UNAUTHENTICATED),
        ("key expired an hour ago", expired.as_str(), UNAUTHENTICATED),
        (
            "key of a deactivated user",
            deactivated_owner.as_str(),
            UNAUTHENTICATED,
        ),
    ];
    for (name, key, expected) in cases {
        let status = caller.get_tenant(&[api_key_entry(key)]).await;
        assert_eq!(verdict(&status), expected, "{name}: {status:?}");
    }

    let status = caller.list_tenants(&[api_key_entry(&valid)]).await;
    assert_eq!(
        verdict(&status),
        PERMISSION_DENIED,
        "valid key calling ListTenants: {status:?}"
    );
    test.stop().await;
}

async fn api_key_scopes(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    let database = test.server.database().clone();
    let tenant = insert_tenant(&database, |_| {}).await;
    let caller = Caller::new(&test.channel, &tenant);
    let user = insert_user(&database, &tenant, "admin", true).await;
    let granted = insert_api_key(&database, &user, |key| {
        key.scopes = r#"["tenants.read"]"#.to_string();
    })
    .await;
    let other_scope = insert_api_key(&database, &user, |key| {
        key.scopes = r#"["users.read"]"#.to_string();
    })
    .await;

    let status = caller.get_tenant(&[api_key_entry(&granted)]).await;
    assert_eq!(
        verdict(&status),
        PASSED,
        "key with tenants.read: {status:?}"
    );
    let status = caller.get_tenant(&[api_key_entry(&other_scope)]).await;
    assert_eq!(
        verdict(&status),
        PERMISSION_DENIED,
        "key with only users.read: {status:?}"
    );
    assert_eq!(
        error_reason(&status).as_deref(),
        Some("SCOPE_NOT_GRANTED"),
        "key with only users.read reason: {status:?}"
    );
    test.stop().await;
}

async fn tenant_hints(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    let database = test.server.database().clone();
    let own = insert_tenant(&database, |tenant| {
        tenant.domain = Some(format!("{}.example.com", tenant.id));
    })
    .await;
    let other = insert_tenant(&database, |tenant| {
        tenant.domain = Some(format!("{}.example.com", tenant.id));
    })
    .await;
    let caller = Caller::new(&test.channel, &own);
    let user = insert_user(&database, &own, "member", true).await;
    let key = insert_api_key(&database, &user, |_| {}).await;
    let token = bearer(&member_token(&user));
    let own_domain = own.domain.clone().expect("domain set above");
    let other_domain = other.domain.clone().expect("domain set above");

    let cases: Vec<(&str, Vec<Entry>, Verdict)> = vec![
        (
            "x-tenant-id of the caller's tenant",
            vec![token.clone(), entry("x-tenant-id", own.id.clone())],
            PASSED,
        ),
        (
            "x-tenant-id of another tenant",
            vec![token.clone(), entry("x-tenant-id", other.id.clone())],
            PERMISSION_DENIED,
        ),
        (
            "x-tenant-id of another tenant with an API key",
            vec![api_key_entry(&key), entry("x-tenant-id", other.id.clone())],
            PERMISSION_DENIED,
        ),
        (
            "x-tenant-id sent twice",
            vec![
                token.clone(),
                entry("x-tenant-id", own.id.clone()),
                entry("x-tenant-id", own.id.clone()),
            ],
            INVALID_ARGUMENT,
        ),
        // tonic sends any bytes that `http::HeaderValue` allows, including 0x80 to 0xff.
        (
            "x-tenant-id that is not UTF-8",
            vec![token.clone(), entry("x-tenant-id", vec![0xff, 0xfe, 0x80])],
            INVALID_ARGUMENT,
        ),
        (
            "x-tenant-domain of the caller's tenant",
            vec![token.clone(), entry("x-tenant-domain", own_domain.clone())],
            PASSED,
        ),
        (
            "x-tenant-domain of the caller's tenant in upper case",
            vec![
                token.clone(),
                entry("x-tenant-domain", own_domain.to_uppercase()),
            ],
            PASSED,
        ),
        (
            "x-tenant-domain of another tenant",
            vec![token.clone(), entry("x-tenant-domain", other_domain)],
            PERMISSION_DENIED,
        ),
        (
            "x-tenant-domain of no tenant",
            vec![
                token.clone(),
                entry("x-tenant-domain", "unknown.example.com"),
            ],
            PERMISSION_DENIED,
        ),
    ];
    for (name, metadata, expected) in &cases {
        let status = caller.get_tenant(metadata).await;
        assert_eq!(verdict(&status), *expected, "{name}: {status:?}");
        if *expected == PERMISSION_DENIED {
            assert_eq!(
                error_reason(&status).as_deref(),
                Some("TENANT_MISMATCH"),
                "{name} reason: {status:?}"
            );
        }
        if *expected == INVALID_ARGUMENT {
            let field = status
                .get_details_bad_request()
                .and_then(|bad_request| bad_request.field_violations.first().cloned())
                .map(|violation| violation.field);
            assert_eq!(
                field.as_deref(),
                Some("x-tenant-id"),
                "{name} field: {status:?}"
            );
        }
    }
    test.stop().await;
}

async fn request_id_echoed(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    let tenant = insert_tenant(test.server.database(), |_| {}).await;
    let caller = Caller::new(&test.channel, &tenant);
    let operator = operator_token();
    let id = entry("x-request-id", "abc-123");

    let passed = caller.get_tenant(&[bearer(&operator), id.clone()]).await;
    assert_eq!(verdict(&passed), PASSED, "accepted call: {passed:?}");
    assert_eq!(
        response_request_id(&passed).as_deref(),
        Some("abc-123"),
        "x-request-id of an accepted call"
    );

    let rejected = caller.get_tenant(&[bearer("garbage"), id]).await;
    assert_eq!(
        verdict(&rejected),
        UNAUTHENTICATED,
        "rejected call: {rejected:?}"
    );
    assert_eq!(
        response_request_id(&rejected).as_deref(),
        Some("abc-123"),
        "x-request-id of a rejected call"
    );

    let too_long = entry("x-request-id", "r".repeat(129));
    let status = caller.get_tenant(&[bearer(&operator), too_long]).await;
    assert_eq!(
        verdict(&status),
        INVALID_ARGUMENT,
        "x-request-id of 129 characters: {status:?}"
    );
    test.stop().await;
}

async fn request_id_generated(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    let tenant = insert_tenant(test.server.database(), |_| {}).await;
    let caller = Caller::new(&test.channel, &tenant);

    for (name, metadata, expected) in [
        ("accepted call", vec![bearer(&operator_token())], PASSED),
        ("rejected call", vec![], UNAUTHENTICATED),
    ] {
        let status = caller.get_tenant(&metadata).await;
        assert_eq!(verdict(&status), expected, "{name}: {status:?}");
        let id = response_request_id(&status)
            .unwrap_or_else(|| panic!("{name}: no x-request-id in the response"));
        let uuid = uuid::Uuid::parse_str(&id)
            .unwrap_or_else(|error| panic!("{name}: x-request-id {id:?} is not a UUID: {error}"));
        assert_eq!(
            uuid.get_version_num(),
            7,
            "{name}: x-request-id {id} is not a UUIDv7"
        );
    }
    test.stop().await;
}

async fn health_without_credential(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    let mut health = HealthClient::new(test.channel.clone());

    let response = health
        .check(HealthCheckRequest::default())
        .await
        .expect("health check without credential");

    assert_eq!(response.into_inner().status(), ServingStatus::Serving);
    test.stop().await;
}
