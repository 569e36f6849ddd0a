//! ApiKeyService through the generated client, on both backends.

use std::time::Duration;

use ally::models::{User, new_id, now};
use ally::proto::ally::v1 as pb;
use prost_types::Timestamp;
use tonic::Code;
use tonic::transport::Channel;
use tonic_types::StatusExt;

use crate::backend_tests;
use crate::common::clients::{Authed, Credential, api_keys, tenants};
use crate::common::{TestBackend, TestServer, wait_until};

backend_tests!(
    create_get_list_revoke,
    create_validates_input,
    create_is_idempotent,
    scoped_key_only_narrows,
    quota_counts_live_keys,
    quota_holds_under_concurrency,
    revoked_key_fails_authentication,
    expired_key_fails_authentication,
    validate_results,
    validate_counts_use,
    members_see_only_own_keys,
    tenants_isolated,
    list_pages_through_every_key,
);

type Client = pb::api_key_service_client::ApiKeyServiceClient<Authed>;

/// A tenant created through the API, with its owner's id and a token for the owner.
struct TestTenant {
    id: String,
    owner_id: String,
    owner_key: String,
}

impl TestTenant {
    fn owner(&self) -> Credential {
        Credential::user(&self.id, &self.owner_id, "owner")
    }
}

/// Creates a tenant on `plan` with an owner and the owner's first key.
async fn tenant_on(channel: &Channel, subdomain: &str, plan: pb::Plan) -> TestTenant {
    let created = tenants(channel, Credential::operator())
        .create_tenant(pb::CreateTenantRequest {
            name: subdomain.to_string(),
            subdomain: subdomain.to_string(),
            plan: plan.into(),
            owner: Some(pb::InitialOwner {
                email: format!("owner@{subdomain}.example"),
                display_name: "Owner".into(),
                password: String::new(),
            }),
            ..Default::default()
        })
        .await
        .expect("create tenant")
        .into_inner();
    TestTenant {
        id: created.tenant.expect("tenant").id,
        owner_id: created.owner.expect("owner").id,
        owner_key: created.owner_api_key,
    }
}

/// Inserts an active user with `role` straight into the database and returns its id.
async fn insert_user(test: &TestServer, tenant_id: &str, role: &str) -> String {
    let id = new_id();
    let time = now();
    let user = User {
        tenant_id: tenant_id.to_string(),
        id: id.clone(),
        email: format!("{id}@users.example"),
        display_name: role.to_string(),
        password_hash: None,
        role: role.to_string(),
        is_active: true,
        email_verified_at: None,
        failed_login_count: 0,
        locked_until: None,
        last_login_at: None,
        created_at: time,
        updated_at: time,
    };
    let mut conn = test.server.database().write().await.expect("connection");
    ally::repo::users::insert(&mut conn, &user)
        .await
        .expect("insert user");
    id
}

fn create_request(name: &str, scopes: &[&str]) -> pb::CreateApiKeyRequest {
    pb::CreateApiKeyRequest {
        name: name.to_string(),
        scopes: scopes.iter().map(|scope| scope.to_string()).collect(),
        ..Default::default()
    }
}

async fn create(client: &mut Client, name: &str, scopes: &[&str]) -> pb::CreateApiKeyResponse {
    client
        .create_api_key(create_request(name, scopes))
        .await
        .unwrap_or_else(|status| panic!("create {name}: {status:?}"))
        .into_inner()
}

async fn get(client: &mut Client, id: &str) -> Result<pb::ApiKey, tonic::Status> {
    client
        .get_api_key(pb::GetApiKeyRequest { id: id.to_string() })
        .await
        .map(|response| response.into_inner().api_key.expect("api_key"))
}

async fn revoke(client: &mut Client, id: &str) -> Result<pb::ApiKey, tonic::Status> {
    client
        .revoke_api_key(pb::RevokeApiKeyRequest { id: id.to_string() })
        .await
        .map(|response| response.into_inner().api_key.expect("api_key"))
}

async fn list_all(client: &mut Client, include_revoked: bool) -> Vec<pb::ApiKey> {
    client
        .list_api_keys(pb::ListApiKeysRequest {
            page_size: 1000,
            include_revoked,
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner()
        .api_keys
}

async fn validate(client: &mut Client, key: &str) -> pb::ValidateApiKeyResponse {
    client
        .validate_api_key(pb::ValidateApiKeyRequest {
            key: key.to_string(),
        })
        .await
        .expect("validate")
        .into_inner()
}

fn seconds_from_now(seconds: i64) -> Timestamp {
    Timestamp {
        seconds: chrono::Utc::now().timestamp() + seconds,
        nanos: 0,
    }
}

fn strings(values: &[&str]) -> Vec<String> {
    values.iter().map(|value| value.to_string()).collect()
}

async fn create_get_list_revoke(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    let tenant = tenant_on(&test.channel, "acme", pb::Plan::Enterprise).await;
    let mut owner = api_keys(&test.channel, tenant.owner());
    let expire_time = seconds_from_now(3600);

    let created = owner
        .create_api_key(pb::CreateApiKeyRequest {
            name: " CI deploy ".into(),
            scopes: strings(&["users.read", "audit.read", "users.read"]),
            expire_time: Some(expire_time),
            request_id: String::new(),
        })
        .await
        .expect("create")
        .into_inner();
    let key = created.api_key.expect("api_key");
    assert!(created.secret.starts_with(&format!("ally_{}_", key.key_id)));
    assert_eq!(
        created.secret.len(),
        "ally_".len() + key.key_id.len() + 1 + 43
    );
    assert_eq!(key.name, "CI deploy");
    assert_eq!(key.user_id, tenant.owner_id);
    assert_eq!(key.scopes, ["users.read", "audit.read"]);
    assert_eq!(key.expire_time, Some(expire_time));
    assert_eq!(key.use_count, 0);
    assert!(key.last_use_time.is_none());
    assert!(key.revoke_time.is_none());
    assert!(key.create_time.is_some());

    let fetched = get(&mut owner, &key.id).await.expect("get");
    assert_eq!(fetched, key);

    let listed = list_all(&mut owner, false).await;
    assert_eq!(listed.len(), 2, "the owner key and the new key");
    assert_eq!(listed[0].id, key.id, "newest first");

    let revoked = revoke(&mut owner, &key.id).await.expect("revoke");
    let revoke_time = revoked.revoke_time.expect("revoke_time set");
    assert_eq!(revoked.id, key.id);
    let again = revoke(&mut owner, &key.id).await.expect("revoke again");
    assert_eq!(
        again.revoke_time,
        Some(revoke_time),
        "the first revoke_time"
    );

    let live = list_all(&mut owner, false).await;
    assert_eq!(live.len(), 1);
    assert!(live.iter().all(|listed| listed.id != key.id));
    let with_revoked = list_all(&mut owner, true).await;
    assert_eq!(with_revoked.len(), 2);
    assert_eq!(
        get(&mut owner, &key.id)
            .await
            .expect("get revoked")
            .revoke_time,
        Some(revoke_time)
    );
    test.stop().await;
}

async fn create_validates_input(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    let tenant = tenant_on(&test.channel, "acme", pb::Plan::Enterprise).await;
    let mut owner = api_keys(&test.channel, tenant.owner());
    let good = create_request("valid", &[]);
    let cases: Vec<(&str, pb::CreateApiKeyRequest)> = vec![
        ("name", create_request("  ", &[])),
        ("name", create_request(&"x".repeat(256), &[])),
        ("scopes[0]", create_request("a", &["users.delete"])),
        (
            "scopes[1]",
            create_request("a", &["users.read", "Users.Read"]),
        ),
        (
            "expire_time",
            pb::CreateApiKeyRequest {
                expire_time: Some(seconds_from_now(-60)),
                ..good.clone()
            },
        ),
        (
            "request_id",
            pb::CreateApiKeyRequest {
                request_id: "has space".into(),
                ..good.clone()
            },
        ),
    ];
    for (field, request) in cases {
        let status = owner.create_api_key(request).await.expect_err(field);
        assert_eq!(status.code(), Code::InvalidArgument, "{field}: {status:?}");
        let violations = status
            .get_details_bad_request()
            .expect("BadRequest")
            .field_violations;
        assert_eq!(violations[0].field, field, "{status:?}");
    }

    assert_eq!(
        list_all(&mut owner, true).await.len(),
        1,
        "a rejected request stored a key"
    );
    test.stop().await;
}

async fn create_is_idempotent(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    let tenant = tenant_on(&test.channel, "acme", pb::Plan::Enterprise).await;
    let mut owner = api_keys(&test.channel, tenant.owner());
    let request = pb::CreateApiKeyRequest {
        request_id: "create-key-1".into(),
        ..create_request("once", &["users.read"])
    };

    let first = owner
        .create_api_key(request.clone())
        .await
        .expect("first")
        .into_inner();
    let second = owner
        .create_api_key(request)
        .await
        .expect("retry")
        .into_inner();

    assert!(!first.secret.is_empty());
    assert!(
        second.secret.is_empty(),
        "the secret must not be shown twice"
    );
    assert_eq!(first.api_key, second.api_key);
    assert_eq!(list_all(&mut owner, true).await.len(), 2);

    // The request id is scoped to the tenant: another user's retry learns nothing of the key.
    let member_id = insert_user(&test, &tenant.id, "member").await;
    let mut member = api_keys(
        &test.channel,
        Credential::user(&tenant.id, &member_id, "member"),
    );
    let status = member
        .create_api_key(pb::CreateApiKeyRequest {
            request_id: "create-key-1".into(),
            ..create_request("once", &["users.read"])
        })
        .await
        .expect_err("another user's request id");
    assert_eq!(status.code(), Code::AlreadyExists, "{status:?}");
    assert_eq!(list_all(&mut owner, true).await.len(), 2);
    test.stop().await;
}

async fn scoped_key_only_narrows(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    let tenant = tenant_on(&test.channel, "acme", pb::Plan::Enterprise).await;
    let mut owner = api_keys(&test.channel, tenant.owner());
    let read_only = create(&mut owner, "read only", &["users.read"]).await;
    let read_only_id = read_only.api_key.expect("api_key").id;
    let mut with_read_only = api_keys(&test.channel, Credential::api_key(&read_only.secret));

    let status = with_read_only
        .create_api_key(create_request("child", &["users.read"]))
        .await
        .expect_err("create without api_keys.write");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    let status = revoke(&mut with_read_only, &read_only_id)
        .await
        .expect_err("revoke without api_keys.write");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    let status = get(&mut with_read_only, &read_only_id)
        .await
        .expect_err("get without api_keys.read");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");

    let writer = create(&mut owner, "writer", &["api_keys.write", "users.read"]).await;
    let mut with_writer = api_keys(&test.channel, Credential::api_key(&writer.secret));
    let status = with_writer
        .create_api_key(create_request("wider", &["users.read", "users.write"]))
        .await
        .expect_err("a key with a scope the caller lacks");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(status.message().contains("users.write"), "{status:?}");

    let inherited = create(&mut with_writer, "inherited", &[]).await;
    assert_eq!(
        inherited.api_key.expect("api_key").scopes,
        ["api_keys.write", "users.read"]
    );
    let narrowed = create(&mut with_writer, "narrowed", &["users.read"]).await;
    let narrowed = narrowed.api_key.expect("api_key");
    assert_eq!(narrowed.scopes, ["users.read"]);
    assert_eq!(narrowed.user_id, tenant.owner_id, "owned by the key's user");

    // A key without scopes acts with its user's full role and may grant any scope.
    let mut with_full = api_keys(&test.channel, Credential::api_key(&tenant.owner_key));
    let any = create(&mut with_full, "any", &["users.write", "audit.read"]).await;
    assert_eq!(
        any.api_key.expect("api_key").scopes,
        ["users.write", "audit.read"]
    );
    test.stop().await;
}

async fn quota_counts_live_keys(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    let tenant = tenant_on(&test.channel, "acme", pb::Plan::Free).await;
    let mut owner = api_keys(&test.channel, tenant.owner());

    // The free plan allows two live keys, and the owner key is the first.
    let second = create(&mut owner, "second", &[]).await;
    let status = owner
        .create_api_key(create_request("third", &[]))
        .await
        .expect_err("a key above the quota");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    let quota = status.get_details_quota_failure().expect("QuotaFailure");
    assert_eq!(quota.violations[0].subject, "tenant:api_keys");
    assert_eq!(list_all(&mut owner, true).await.len(), 2);

    revoke(&mut owner, &second.api_key.expect("api_key").id)
        .await
        .expect("revoke");
    create(&mut owner, "third", &[]).await;
    assert_eq!(list_all(&mut owner, false).await.len(), 2);
    test.stop().await;
}

async fn quota_holds_under_concurrency(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    let tenant = tenant_on(&test.channel, "acme", pb::Plan::Free).await;
    let owner = api_keys(&test.channel, tenant.owner());

    // One key is left under the free plan's two, and six calls race for it.
    let calls: Vec<_> = (0..6)
        .map(|index| {
            let mut owner = owner.clone();
            tokio::spawn(async move {
                owner
                    .create_api_key(create_request(&format!("racer {index}"), &[]))
                    .await
                    .map(drop)
                    .map_err(|status| status.code())
            })
        })
        .collect();
    let mut created = 0;
    let mut rejected = 0;
    for call in calls {
        match call.await.expect("task") {
            Ok(()) => created += 1,
            Err(Code::ResourceExhausted) => rejected += 1,
            Err(code) => panic!("unexpected {code:?}"),
        }
    }

    assert_eq!(created, 1);
    assert_eq!(rejected, 5);
    let mut owner = owner;
    assert_eq!(list_all(&mut owner, true).await.len(), 2);
    test.stop().await;
}

async fn revoked_key_fails_authentication(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    let tenant = tenant_on(&test.channel, "acme", pb::Plan::Enterprise).await;
    let mut owner = api_keys(&test.channel, tenant.owner());
    let created = create(&mut owner, "soon revoked", &[]).await;
    let id = created.api_key.expect("api_key").id;
    let mut with_key = api_keys(&test.channel, Credential::api_key(&created.secret));
    get(&mut with_key, &id).await.expect("the key works before");

    revoke(&mut owner, &id).await.expect("revoke");

    let status = get(&mut with_key, &id).await.expect_err("revoked key");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    let status = with_key
        .list_api_keys(pb::ListApiKeysRequest::default())
        .await
        .expect_err("revoked key");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    test.stop().await;
}

async fn expired_key_fails_authentication(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    let tenant = tenant_on(&test.channel, "acme", pb::Plan::Enterprise).await;
    let mut owner = api_keys(&test.channel, tenant.owner());
    let created = owner
        .create_api_key(pb::CreateApiKeyRequest {
            expire_time: Some(seconds_from_now(2)),
            ..create_request("short lived", &[])
        })
        .await
        .expect("create")
        .into_inner();
    let id = created.api_key.expect("api_key").id;
    let mut with_key = api_keys(&test.channel, Credential::api_key(&created.secret));

    let expired = wait_until(Duration::from_secs(5), || {
        let mut with_key = with_key.clone();
        let id = id.clone();
        async move {
            matches!(get(&mut with_key, &id).await, Err(status) if status.code() == Code::Unauthenticated)
        }
    })
    .await;

    assert!(expired, "the key still works after its expire_time");
    assert!(!validate(&mut owner, &created.secret).await.valid);
    let listed = list_all(&mut owner, false).await;
    assert!(
        listed.iter().any(|key| key.id == id),
        "expired keys are listed"
    );
    let status = get(&mut with_key, &id).await.expect_err("expired key");
    assert_eq!(status.code(), Code::Unauthenticated);
    test.stop().await;
}

async fn validate_results(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    let acme = tenant_on(&test.channel, "acme", pb::Plan::Enterprise).await;
    let other = tenant_on(&test.channel, "other", pb::Plan::Enterprise).await;
    let mut operator = api_keys(&test.channel, Credential::operator());
    let mut acme_owner = api_keys(&test.channel, acme.owner());
    let scoped = create(&mut acme_owner, "scoped", &["audit.read", "users.read"]).await;
    let scoped_key = scoped.api_key.expect("api_key");

    let result = validate(&mut operator, &scoped.secret).await;
    assert!(result.valid);
    assert_eq!(result.tenant_id, acme.id);
    assert_eq!(result.user_id, acme.owner_id);
    assert_eq!(result.api_key_id, scoped_key.id);
    assert_eq!(result.role(), pb::Role::Owner);
    assert_eq!(result.scopes, ["audit.read", "users.read"]);
    assert!(result.expire_time.is_none());

    let own_tenant = validate(&mut acme_owner, &scoped.secret).await;
    assert!(own_tenant.valid, "an admin validates keys of their tenant");
    assert_eq!(own_tenant.api_key_id, scoped_key.id);

    let other_tenant = validate(&mut acme_owner, &other.owner_key).await;
    assert_eq!(
        other_tenant,
        pb::ValidateApiKeyResponse::default(),
        "another tenant's key must look invalid"
    );
    assert!(validate(&mut operator, &other.owner_key).await.valid);

    let mut wrong_secret = scoped.secret.clone();
    let last = wrong_secret.pop().expect("non-empty");
    wrong_secret.push(if last == 'A' { 'B' } else { 'A' });
    let unknown = format!("ally_ak0000000000000000_{}", "A".repeat(43));
    for key in ["not a key", "ally_ak12_short", &unknown, &wrong_secret] {
        let result = validate(&mut operator, key).await;
        assert_eq!(result, pb::ValidateApiKeyResponse::default(), "{key}");
    }
    let status = operator
        .validate_api_key(pb::ValidateApiKeyRequest::default())
        .await
        .expect_err("an empty key");
    assert_eq!(status.code(), Code::InvalidArgument);

    revoke(&mut acme_owner, &scoped_key.id)
        .await
        .expect("revoke");
    assert!(!validate(&mut operator, &scoped.secret).await.valid);

    let member_id = insert_user(&test, &acme.id, "member").await;
    let mut member = api_keys(
        &test.channel,
        Credential::user(&acme.id, &member_id, "member"),
    );
    let status = member
        .validate_api_key(pb::ValidateApiKeyRequest {
            key: acme.owner_key.clone(),
        })
        .await
        .expect_err("members may not validate");
    assert_eq!(status.code(), Code::PermissionDenied);

    tenants(&test.channel, Credential::operator())
        .suspend_tenant(pb::SuspendTenantRequest {
            id: other.id.clone(),
            reason: "unpaid".into(),
        })
        .await
        .expect("suspend");
    assert!(
        !validate(&mut operator, &other.owner_key).await.valid,
        "keys of a suspended tenant are invalid"
    );
    test.stop().await;
}

async fn validate_counts_use(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    let tenant = tenant_on(&test.channel, "acme", pb::Plan::Enterprise).await;
    let mut owner = api_keys(&test.channel, tenant.owner());
    let created = create(&mut owner, "counted", &[]).await;
    let id = created.api_key.expect("api_key").id;
    let mut operator = api_keys(&test.channel, Credential::operator());

    assert!(validate(&mut operator, &created.secret).await.valid);
    assert!(validate(&mut operator, &created.secret).await.valid);

    // Uses are written in batches every few seconds.
    let counted = wait_until(Duration::from_secs(10), || {
        let mut owner = owner.clone();
        let id = id.clone();
        async move {
            get(&mut owner, &id)
                .await
                .is_ok_and(|key| key.use_count == 2)
        }
    })
    .await;
    assert!(counted, "use_count did not reach 2");
    let key = get(&mut owner, &id).await.expect("get");
    assert!(key.last_use_time.is_some());
    test.stop().await;
}

async fn members_see_only_own_keys(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    let tenant = tenant_on(&test.channel, "acme", pb::Plan::Enterprise).await;
    let mut owner = api_keys(&test.channel, tenant.owner());
    let owner_key = create(&mut owner, "owner's", &[]).await;
    let owner_key_id = owner_key.api_key.expect("api_key").id;
    let member_id = insert_user(&test, &tenant.id, "member").await;
    let mut member = api_keys(
        &test.channel,
        Credential::user(&tenant.id, &member_id, "member"),
    );
    let viewer_id = insert_user(&test, &tenant.id, "viewer").await;
    let mut viewer = api_keys(
        &test.channel,
        Credential::user(&tenant.id, &viewer_id, "viewer"),
    );

    let member_key = create(&mut member, "member's", &[]).await;
    let member_key = member_key.api_key.expect("api_key");
    assert_eq!(member_key.user_id, member_id);
    create(&mut viewer, "viewer's", &[]).await;

    let listed = list_all(&mut member, true).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, member_key.id);
    let status = get(&mut member, &owner_key_id)
        .await
        .expect_err("another user's key");
    assert_eq!(status.code(), Code::NotFound);
    let status = revoke(&mut member, &owner_key_id)
        .await
        .expect_err("another user's key");
    assert_eq!(status.code(), Code::NotFound);
    assert!(
        get(&mut owner, &owner_key_id)
            .await
            .expect("get")
            .revoke_time
            .is_none(),
        "a member revoked the owner's key"
    );

    assert_eq!(
        list_all(&mut owner, true).await.len(),
        4,
        "admins and owners see every key"
    );
    assert_eq!(
        get(&mut owner, &member_key.id).await.expect("get").user_id,
        member_id
    );
    let revoked = revoke(&mut owner, &member_key.id)
        .await
        .expect("an owner revokes a member's key");
    assert!(revoked.revoke_time.is_some());
    let viewer_key_id = list_all(&mut viewer, false).await[0].id.clone();
    revoke(&mut viewer, &viewer_key_id)
        .await
        .expect("a viewer revokes their own key");
    test.stop().await;
}

async fn tenants_isolated(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    let acme = tenant_on(&test.channel, "acme", pb::Plan::Enterprise).await;
    let other = tenant_on(&test.channel, "other", pb::Plan::Enterprise).await;
    let mut acme_owner = api_keys(&test.channel, acme.owner());
    let mut other_owner = api_keys(&test.channel, other.owner());
    let other_key = create(&mut other_owner, "other's", &[]).await;
    let other_key_id = other_key.api_key.expect("api_key").id;

    let status = get(&mut acme_owner, &other_key_id)
        .await
        .expect_err("another tenant's key");
    assert_eq!(status.code(), Code::NotFound);
    let status = revoke(&mut acme_owner, &other_key_id)
        .await
        .expect_err("another tenant's key");
    assert_eq!(status.code(), Code::NotFound);
    assert!(
        list_all(&mut acme_owner, true)
            .await
            .iter()
            .all(|key| key.id != other_key_id)
    );

    let mut with_other_key = api_keys(&test.channel, Credential::api_key(&other_key.secret));
    let still = get(&mut with_other_key, &other_key_id)
        .await
        .expect("the other tenant's key still works");
    assert!(still.revoke_time.is_none());
    test.stop().await;
}

async fn list_pages_through_every_key(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    let tenant = tenant_on(&test.channel, "acme", pb::Plan::Enterprise).await;
    let mut owner = api_keys(&test.channel, tenant.owner());
    for index in 0..6 {
        create(&mut owner, &format!("key {index}"), &[]).await;
    }
    let expected: Vec<String> = list_all(&mut owner, false)
        .await
        .into_iter()
        .map(|key| key.id)
        .collect();
    assert_eq!(expected.len(), 7);

    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = owner
            .list_api_keys(pb::ListApiKeysRequest {
                page_size: 3,
                page_token: token.clone(),
                include_revoked: false,
            })
            .await
            .expect("list")
            .into_inner();
        assert!(page.api_keys.len() <= 3);
        seen.extend(page.api_keys.into_iter().map(|key| key.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen, expected);

    let first = owner
        .list_api_keys(pb::ListApiKeysRequest {
            page_size: 3,
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner();
    let status = owner
        .list_api_keys(pb::ListApiKeysRequest {
            page_size: 3,
            page_token: first.next_page_token,
            include_revoked: true,
        })
        .await
        .expect_err("a token with other filters");
    assert_eq!(status.code(), Code::InvalidArgument);
    test.stop().await;
}
