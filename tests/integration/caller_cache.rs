//! The cache of verified API keys and tenant rows: changes to a key, its owner or a tenant
//! apply at once, on the server that made them and, through Redis, on the others.

use std::time::Duration;

use ally::proto::ally::v1 as pb;
use tonic::Code;
use tonic::transport::Channel;
use tonic_types::StatusExt;

use crate::backend_tests;
use crate::common::clients::{Credential, api_keys, create_tenant, tenants, users};
use crate::common::private_redis::PrivateRedis;
use crate::common::server_process::ServerProcess;
use crate::common::{TestBackend, TestDatabase, TestServer, wait_until};

backend_tests!(
    deactivated_owner_key_rejected,
    role_change_applies_to_key,
    wrong_secret_rejected_after_use,
    suspension_applies_to_cached_tenant,
);

/// A tenant and an admin with an API key of their own.
struct Admin {
    tenant_id: String,
    owner: Credential,
    admin_id: String,
    key: String,
}

async fn admin_with_key(channel: &Channel, subdomain: &str) -> Admin {
    let created = create_tenant(channel, "Cache test", subdomain).await;
    let tenant_id = created.tenant.expect("tenant").id;
    let owner = Credential::user(&tenant_id, &created.owner.expect("owner").id, "owner");
    let admin_id = users(channel, owner.clone())
        .create_user(pb::CreateUserRequest {
            email: format!("admin@{subdomain}.example"),
            display_name: "Admin".into(),
            role: pb::Role::Admin.into(),
            ..Default::default()
        })
        .await
        .expect("create admin")
        .into_inner()
        .user
        .expect("user")
        .id;
    let key = api_keys(channel, Credential::user(&tenant_id, &admin_id, "admin"))
        .create_api_key(pb::CreateApiKeyRequest {
            name: "admin key".into(),
            ..Default::default()
        })
        .await
        .expect("create key")
        .into_inner()
        .secret;
    Admin {
        tenant_id,
        owner,
        admin_id,
        key,
    }
}

async fn get_tenant(channel: &Channel, key: &str) -> Result<pb::Tenant, tonic::Status> {
    tenants(channel, Credential::api_key(key))
        .get_tenant(pb::GetTenantRequest::default())
        .await
        .map(|response| response.into_inner().tenant.expect("tenant"))
}

async fn deactivated_owner_key_rejected(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    let admin = admin_with_key(&test.channel, "deactivate").await;
    let tenant = get_tenant(&test.channel, &admin.key)
        .await
        .expect("the key works before");
    assert_eq!(tenant.id, admin.tenant_id);

    users(&test.channel, admin.owner.clone())
        .deactivate_user(pb::DeactivateUserRequest {
            id: admin.admin_id.clone(),
        })
        .await
        .expect("deactivate");

    let status = get_tenant(&test.channel, &admin.key)
        .await
        .expect_err("the key of a deactivated user");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    test.stop().await;
}

async fn role_change_applies_to_key(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    let admin = admin_with_key(&test.channel, "demote").await;
    let create = |email: &str| pb::CreateUserRequest {
        email: email.to_string(),
        display_name: "Someone".into(),
        ..Default::default()
    };
    let mut with_key = users(&test.channel, Credential::api_key(&admin.key));
    with_key
        .create_user(create("first@demote.example"))
        .await
        .expect("an admin's key creates users");

    users(&test.channel, admin.owner.clone())
        .update_user_role(pb::UpdateUserRoleRequest {
            id: admin.admin_id.clone(),
            role: pb::Role::Viewer.into(),
        })
        .await
        .expect("demote");

    let status = with_key
        .create_user(create("second@demote.example"))
        .await
        .expect_err("a viewer's key creates a user");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    test.stop().await;
}

async fn wrong_secret_rejected_after_use(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    let admin = admin_with_key(&test.channel, "secret").await;
    get_tenant(&test.channel, &admin.key)
        .await
        .expect("the key works");
    let parsed = ally::auth::api_key::parse(&admin.key).expect("key format");
    let other_secret = ally::auth::api_key::generate().full_key;
    let other = ally::auth::api_key::parse(&other_secret).expect("key format");
    let forged = format!("ally_{}_{}", parsed.key_id, other.secret);

    let status = get_tenant(&test.channel, &forged)
        .await
        .expect_err("a known key id with another secret");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    test.stop().await;
}

/// Two `ally` processes on one MariaDB database and a private Redis, with an admin's key that
/// both servers have accepted, so that the second server keeps it and its tenant in memory.
struct Replicas {
    _redis: PrivateRedis,
    _database: TestDatabase,
    first: ServerProcess,
    second: ServerProcess,
    first_channel: Channel,
    second_channel: Channel,
    admin: Admin,
}

impl Replicas {
    /// Starts both servers with `ttl_setting` at ten minutes, so that only a removal through
    /// Redis can end the second server's entries within a test.
    async fn start(ttl_setting: &str, subdomain: &str) -> Replicas {
        let redis = PrivateRedis::start();
        let database = TestDatabase::create(TestBackend::Mariadb).await;
        let redis_url = redis.url();
        let extra = [("REDIS_URL", redis_url.as_str()), (ttl_setting, "10m")];
        // One after the other, so that only the first applies the migrations.
        let first = ServerProcess::start(&database, &extra);
        let second = ServerProcess::start(&database, &extra);
        let (first_channel, second_channel) = (first.channel().await, second.channel().await);
        let admin = admin_with_key(&first_channel, subdomain).await;
        get_tenant(&second_channel, &admin.key)
            .await
            .expect("the key works on the second server");
        Replicas {
            _redis: redis,
            _database: database,
            first,
            second,
            first_channel,
            second_channel,
            admin,
        }
    }

    /// Waits up to 5 seconds for the second server to reject the admin's key with `code`.
    async fn second_rejects_key(&self, code: Code) -> bool {
        wait_until(Duration::from_secs(5), || {
            let (channel, key) = (self.second_channel.clone(), self.admin.key.clone());
            async move {
                matches!(
                    get_tenant(&channel, &key).await,
                    Err(status) if status.code() == code
                )
            }
        })
        .await
    }

    async fn stop(self) {
        self.first.stop().await;
        self.second.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_reaches_other_server() {
    let replicas = Replicas::start("ALLY_AUTH__API_KEY_CACHE_TTL", "replicas").await;
    let key_id = api_keys(
        &replicas.first_channel,
        Credential::api_key(&replicas.admin.key),
    )
    .list_api_keys(pb::ListApiKeysRequest::default())
    .await
    .expect("list keys")
    .into_inner()
    .api_keys
    .into_iter()
    .next()
    .expect("the admin's key")
    .id;

    api_keys(&replicas.first_channel, replicas.admin.owner.clone())
        .revoke_api_key(pb::RevokeApiKeyRequest { id: key_id })
        .await
        .expect("revoke on the first server");

    assert!(
        replicas.second_rejects_key(Code::Unauthenticated).await,
        "the second server still accepts the revoked key"
    );
    replicas.stop().await;
}

async fn suspend(channel: &Channel, tenant_id: &str) {
    tenants(channel, Credential::operator())
        .suspend_tenant(pb::SuspendTenantRequest {
            id: tenant_id.to_string(),
            reason: "unpaid invoice".into(),
        })
        .await
        .expect("suspend");
}

fn assert_suspended(result: Result<pb::Tenant, tonic::Status>, case: &str) {
    let status = result.expect_err(case);
    assert_eq!(status.code(), Code::PermissionDenied, "{case}: {status:?}");
    assert_eq!(
        status.get_details_error_info().map(|info| info.reason),
        Some("TENANT_SUSPENDED".to_string()),
        "{case}"
    );
}

async fn suspension_applies_to_cached_tenant(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    let admin = admin_with_key(&test.channel, "suspend").await;
    let by_token = || async {
        tenants(&test.channel, admin.owner.clone())
            .get_tenant(pb::GetTenantRequest::default())
            .await
            .map(|response| response.into_inner().tenant.expect("tenant"))
    };
    get_tenant(&test.channel, &admin.key)
        .await
        .expect("the key works before");
    by_token().await.expect("the token works before");

    suspend(&test.channel, &admin.tenant_id).await;

    assert_suspended(get_tenant(&test.channel, &admin.key).await, "key");
    assert_suspended(by_token().await, "token");
    tenants(&test.channel, Credential::operator())
        .resume_tenant(pb::ResumeTenantRequest {
            id: admin.tenant_id.clone(),
        })
        .await
        .expect("resume");
    let resumed = get_tenant(&test.channel, &admin.key)
        .await
        .expect("the key works after the resume");
    assert_eq!(resumed.state, pb::TenantState::Active as i32);
    test.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspension_reaches_other_server() {
    let replicas = Replicas::start("ALLY_AUTH__TENANT_CACHE_TTL", "suspendreplicas").await;

    suspend(&replicas.first_channel, &replicas.admin.tenant_id).await;

    assert!(
        replicas.second_rejects_key(Code::PermissionDenied).await,
        "the second server still serves the suspended tenant"
    );
    replicas.stop().await;
}
