//! Tenant isolation across services. A caller of tenant A who names tenant B's resources gets
//! NOT_FOUND (or an invalid result), and nothing of B changes. Lists show only A's rows.

use ally::proto::ally::v1 as pb;
use tonic::{Code, Status};

use crate::backend_tests;
use crate::common::clients::{Credential, api_keys, audit, create_tenant, tenants, users};
use crate::common::{TestBackend, TestServer};

backend_tests!(foreign_ids_not_found);

fn assert_not_found<T: std::fmt::Debug>(case: &str, result: Result<T, Status>) {
    match result {
        Ok(value) => panic!("{case}: tenant A reached tenant B's resource: {value:?}"),
        Err(status) => assert_eq!(status.code(), Code::NotFound, "{case}: {status:?}"),
    }
}

async fn foreign_ids_not_found(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    let a = create_tenant(&test.channel, "A", "iso-a").await;
    let b = create_tenant(&test.channel, "B", "iso-b").await;
    let b_tenant = b.tenant.clone().unwrap();
    let b_owner = b.owner.clone().unwrap();
    let a_key = Credential::api_key(&a.owner_api_key);
    let b_key = Credential::api_key(&b.owner_api_key);

    let b_key_id = api_keys(&test.channel, b_key.clone())
        .list_api_keys(pb::ListApiKeysRequest::default())
        .await
        .expect("B lists its keys")
        .into_inner()
        .api_keys[0]
        .id
        .clone();

    let mut a_tenants = tenants(&test.channel, a_key.clone());
    let mut a_users = users(&test.channel, a_key.clone());
    let mut a_keys = api_keys(&test.channel, a_key.clone());
    let mut a_audit = audit(&test.channel, a_key.clone());
    let b_user_id = b_owner.id.clone();

    assert_not_found(
        "GetTenant",
        a_tenants
            .get_tenant(pb::GetTenantRequest {
                id: b_tenant.id.clone(),
            })
            .await,
    );
    assert_not_found(
        "GetTenantUsage",
        a_tenants
            .get_tenant_usage(pb::GetTenantUsageRequest {
                tenant_id: b_tenant.id.clone(),
            })
            .await,
    );
    assert_not_found(
        "GetUser",
        a_users
            .get_user(pb::GetUserRequest {
                id: b_user_id.clone(),
            })
            .await,
    );
    assert_not_found(
        "UpdateUser",
        a_users
            .update_user(pb::UpdateUserRequest {
                user: Some(pb::User {
                    id: b_user_id.clone(),
                    display_name: "Hijacked".into(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["display_name".into()],
                }),
            })
            .await,
    );
    assert_not_found(
        "UpdateUserRole",
        a_users
            .update_user_role(pb::UpdateUserRoleRequest {
                id: b_user_id.clone(),
                role: pb::Role::Viewer.into(),
            })
            .await,
    );
    assert_not_found(
        "DeactivateUser",
        a_users
            .deactivate_user(pb::DeactivateUserRequest {
                id: b_user_id.clone(),
            })
            .await,
    );
    assert_not_found(
        "ReactivateUser",
        a_users
            .reactivate_user(pb::ReactivateUserRequest {
                id: b_user_id.clone(),
            })
            .await,
    );
    let owner_token = Credential::user(
        &a.tenant.clone().unwrap().id,
        &a.owner.clone().unwrap().id,
        "owner",
    );
    assert_not_found(
        "ChangePassword",
        users(&test.channel, owner_token)
            .change_password(pb::ChangePasswordRequest {
                id: b_user_id.clone(),
                current_password: String::new(),
                new_password: "a takeover passphrase".into(),
            })
            .await,
    );
    assert_not_found(
        "SendVerification",
        a_users
            .send_verification(pb::SendVerificationRequest {
                id: b_user_id.clone(),
            })
            .await,
    );
    assert_not_found(
        "GetApiKey",
        a_keys
            .get_api_key(pb::GetApiKeyRequest {
                id: b_key_id.clone(),
            })
            .await,
    );
    assert_not_found(
        "RevokeApiKey",
        a_keys
            .revoke_api_key(pb::RevokeApiKeyRequest {
                id: b_key_id.clone(),
            })
            .await,
    );
    let validated = a_keys
        .validate_api_key(pb::ValidateApiKeyRequest {
            key: b.owner_api_key.clone(),
        })
        .await
        .expect("validate")
        .into_inner();
    assert!(!validated.valid, "tenant A validated tenant B's key");
    assert!(validated.tenant_id.is_empty(), "B's tenant id leaked");
    assert_not_found(
        "ListAuditEntries",
        a_audit
            .list_audit_entries(pb::ListAuditEntriesRequest {
                tenant_id: b_tenant.id.clone(),
                ..Default::default()
            })
            .await,
    );

    // Nothing of B changed.
    let b_user = users(&test.channel, b_key.clone())
        .get_user(pb::GetUserRequest {
            id: b_user_id.clone(),
        })
        .await
        .expect("B's owner is still there")
        .into_inner()
        .user
        .unwrap();
    assert_eq!(b_user.role(), pb::Role::Owner);
    assert!(b_user.active);
    assert_eq!(b_user.display_name, b_owner.display_name);
    assert_eq!(b_user.update_time, b_owner.update_time);
    tenants(&test.channel, b_key.clone())
        .get_tenant(pb::GetTenantRequest::default())
        .await
        .expect("B's key still works");

    // Lists show only A's rows.
    let a_user_list = a_users
        .list_users(pb::ListUsersRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(a_user_list.users.len(), 1);
    assert_eq!(a_user_list.users[0].id, a.owner.clone().unwrap().id);
    let a_key_list = a_keys
        .list_api_keys(pb::ListApiKeysRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(a_key_list.api_keys.len(), 1);
    let a_entries = a_audit
        .list_audit_entries(pb::ListAuditEntriesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .audit_entries;
    let a_id = a.tenant.unwrap().id;
    assert!(!a_entries.is_empty());
    assert!(
        a_entries.iter().all(|entry| entry.tenant_id == a_id),
        "A's audit list shows another tenant"
    );
    test.stop().await;
}
