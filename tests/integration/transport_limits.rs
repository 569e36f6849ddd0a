//! The deliberate limits of `server.limits`: an oversized message or header fails with the code
//! tonic and hyper give it, and other tenants are served normally at the same time.

use std::time::Duration;

use ally::proto::ally::v1 as pb;
use diesel_async::RunQueryDsl;
use tonic::Code;
use tonic::metadata::MetadataValue;

use crate::backend_tests;
use crate::common::clients::{Credential, create_tenant, tenants, users};
use crate::common::{TestBackend, TestServer, wait_until};

backend_tests!(oversized_message_rejected, oversized_header_rejected);

/// Limits of the test servers: small enough that a test can pass them cheaply.
const MAX_MESSAGE_BYTES: usize = 64 * 1024;
const MAX_HEADER_BYTES: u32 = 8 * 1024;

async fn start(backend: TestBackend) -> TestServer {
    TestServer::start_with(backend, |settings| {
        settings.server.limits.max_decoding_message_size = MAX_MESSAGE_BYTES;
        settings.server.limits.max_header_list_size = MAX_HEADER_BYTES;
    })
    .await
}

/// A tenant created through the API, by its owner's credential.
struct Tenant {
    owner: Credential,
}

async fn tenant(test: &TestServer, subdomain: &str) -> Tenant {
    let created = create_tenant(&test.channel, subdomain, subdomain).await;
    let id = created.tenant.expect("tenant").id;
    let owner_id = created.owner.expect("owner").id;
    Tenant {
        owner: Credential::user(&id, &owner_id, "owner"),
    }
}

fn new_user(email: &str, display_name: String) -> pb::CreateUserRequest {
    pb::CreateUserRequest {
        email: email.to_string(),
        display_name,
        role: pb::Role::Member.into(),
        password: "correct horse battery staple".into(),
        ..Default::default()
    }
}

/// Makes 20 calls as `tenant`, 5 ms apart, and returns the failed ones.
async fn steady_calls(test: &TestServer, tenant: &Tenant) -> Vec<tonic::Status> {
    let mut client = tenants(&test.channel, tenant.owner.clone());
    let mut failures = Vec::new();
    for _ in 0..20 {
        if let Err(status) = client.get_tenant(pb::GetTenantRequest::default()).await {
            failures.push(status);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    failures
}

async fn user_count(test: &TestServer, tenant: &Tenant) -> usize {
    users(&test.channel, tenant.owner.clone())
        .list_users(pb::ListUsersRequest::default())
        .await
        .expect("list users")
        .into_inner()
        .users
        .len()
}

async fn oversized_message_rejected(backend: TestBackend) {
    let test = start(backend).await;
    let sender = tenant(&test, "sender").await;
    let bystander = tenant(&test, "bystander").await;
    let mut sender_users = users(&test.channel, sender.owner.clone());

    let oversized = new_user("big@sender.example", "x".repeat(MAX_MESSAGE_BYTES + 1));
    let (rejected, bystander_failures) = tokio::join!(
        sender_users.create_user(oversized),
        steady_calls(&test, &bystander)
    );
    let fitting = sender_users
        .create_user(new_user("small@sender.example", "Small".into()))
        .await;

    let status = rejected.expect_err("an oversized message was accepted");
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    assert!(
        status.message().contains("message length too large"),
        "{status:?}"
    );
    assert!(bystander_failures.is_empty(), "{bystander_failures:?}");
    assert!(fitting.is_ok(), "{fitting:?}");
    assert_eq!(
        user_count(&test, &sender).await,
        2,
        "owner and the fitting user"
    );
    test.stop().await;
}

async fn oversized_header_rejected(backend: TestBackend) {
    let test = start(backend).await;
    let sender = tenant(&test, "sender").await;
    let bystander = tenant(&test, "bystander").await;

    let padding: MetadataValue<_> = "x"
        .repeat(MAX_HEADER_BYTES as usize)
        .parse()
        .expect("ASCII metadata");
    let mut request = tonic::Request::new(pb::GetTenantRequest::default());
    sender.owner.apply(&mut request);
    request.metadata_mut().insert("x-padding", padding);
    let mut sender_tenants = tenants(&test.channel, sender.owner.clone());
    let (rejected, bystander_failures) = tokio::join!(
        sender_tenants.get_tenant(request),
        steady_calls(&test, &bystander)
    );
    let afterwards = sender_tenants
        .get_tenant(pb::GetTenantRequest::default())
        .await;

    let status = rejected.expect_err("an oversized header list was accepted");
    // hyper responds with HTTP 431 and no gRPC status, which tonic's client maps to UNKNOWN.
    assert_eq!(status.code(), Code::Unknown, "{status:?}");
    assert!(status.message().contains("431"), "{status:?}");
    assert!(bystander_failures.is_empty(), "{bystander_failures:?}");
    assert!(afterwards.is_ok(), "{afterwards:?}");
    test.stop().await;
}

/// Runs on MariaDB only: the test blocks CreateUser by holding the tenant row lock from its own
/// connection, and on SQLite writes go through one connection that the server holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_timeout_cancels_call() {
    let test = TestServer::start_with(TestBackend::Mariadb, |settings| {
        settings.server.limits.request_timeout = Some(Duration::from_secs(1));
    })
    .await;
    let sender = tenant(&test, "slow").await;
    let tenant_id = {
        let mut client = tenants(&test.channel, sender.owner.clone());
        let response = client.get_tenant(pb::GetTenantRequest::default()).await;
        response
            .expect("get tenant")
            .into_inner()
            .tenant
            .expect("tenant")
            .id
    };
    let mut lock = test.server.database().write().await.expect("connection");
    diesel::sql_query("START TRANSACTION")
        .execute(&mut *lock)
        .await
        .expect("start transaction");
    diesel::sql_query("SELECT id FROM tenants WHERE id = ? FOR UPDATE")
        .bind::<diesel::sql_types::Text, _>(&tenant_id)
        .execute(&mut *lock)
        .await
        .expect("lock the tenant row");

    let blocked = users(&test.channel, sender.owner.clone())
        .create_user(new_user("late@slow.example", "Late".into()))
        .await;
    diesel::sql_query("ROLLBACK")
        .execute(&mut *lock)
        .await
        .expect("release the lock");
    drop(lock);

    let status = blocked.expect_err("a call blocked past the timeout succeeded");
    assert_eq!(status.code(), Code::Cancelled, "{status:?}");
    assert!(status.message().contains("Timeout expired"), "{status:?}");
    let served_again = wait_until(Duration::from_secs(5), || async {
        users(&test.channel, sender.owner.clone())
            .create_user(new_user("next@slow.example", "Next".into()))
            .await
            .is_ok()
    })
    .await;
    assert!(served_again, "writes fail after a cancelled call");
    assert_eq!(
        user_count(&test, &sender).await,
        2,
        "owner and the user created after the lock, not the cancelled one"
    );
    test.stop().await;
}
