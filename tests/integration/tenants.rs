//! TenantService through the generated client, on both backends.

use ally::proto::ally::v1 as pb;
use prost_types::FieldMask;
use tonic::Code;
use tonic_types::StatusExt;

use crate::backend_tests;
use crate::common::clients::{Credential, create_tenant, tenants};
use crate::common::{TestBackend, TestServer};

backend_tests!(
    create_get_and_list,
    create_validates_input,
    create_rejects_taken_subdomain,
    create_is_idempotent,
    owner_key_authenticates,
    update_with_etag,
    subscription_and_usage,
    suspend_resume_delete_undelete,
    members_see_only_own_tenant,
);

async fn create_get_and_list(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    let created = create_tenant(&test.channel, "Acme", "acme").await;
    let tenant = created.tenant.expect("tenant");
    let owner = created.owner.expect("owner");
    let mut operator = tenants(&test.channel, Credential::operator());

    assert_eq!(tenant.name, "Acme");
    assert_eq!(tenant.subdomain, "acme");
    assert_eq!(tenant.state(), pb::TenantState::Active);
    assert_eq!(tenant.plan(), pb::Plan::Free);
    assert_eq!(tenant.quotas.as_ref().map(|q| q.users), Some(5));
    assert_eq!(owner.role(), pb::Role::Owner);
    assert_eq!(owner.email, "owner@acme.example");
    assert!(created.owner_api_key.starts_with("ally_ak"));

    let fetched = operator
        .get_tenant(pb::GetTenantRequest {
            id: tenant.id.clone(),
        })
        .await
        .expect("get")
        .into_inner()
        .tenant
        .expect("tenant");
    assert_eq!(fetched, tenant);

    let by_subdomain = operator
        .get_tenant_by_domain(pb::GetTenantByDomainRequest {
            lookup: Some(pb::get_tenant_by_domain_request::Lookup::Subdomain(
                "ACME".into(),
            )),
        })
        .await
        .expect("get by subdomain")
        .into_inner();
    assert_eq!(by_subdomain.tenant.map(|t| t.id), Some(tenant.id.clone()));

    for index in 0..4 {
        create_tenant(&test.channel, &format!("T{index}"), &format!("t{index}")).await;
    }
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = operator
            .list_tenants(pb::ListTenantsRequest {
                page_size: 2,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .expect("list")
            .into_inner();
        assert!(page.tenants.len() <= 2);
        seen.extend(page.tenants.into_iter().map(|t| t.name));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen, ["Acme", "T0", "T1", "T2", "T3"]);
    test.stop().await;
}

async fn create_validates_input(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    let mut operator = tenants(&test.channel, Credential::operator());
    let good = pb::CreateTenantRequest {
        name: "Valid".into(),
        subdomain: "valid".into(),
        owner: Some(pb::InitialOwner {
            email: "a@valid.example".into(),
            display_name: "A".into(),
            password: String::new(),
        }),
        ..Default::default()
    };
    let cases: Vec<(&str, pb::CreateTenantRequest)> = vec![
        (
            "name",
            pb::CreateTenantRequest {
                name: " ".into(),
                ..good.clone()
            },
        ),
        (
            "subdomain",
            pb::CreateTenantRequest {
                subdomain: "not valid".into(),
                ..good.clone()
            },
        ),
        (
            "domain",
            pb::CreateTenantRequest {
                domain: "localhost".into(),
                ..good.clone()
            },
        ),
        (
            "plan",
            pb::CreateTenantRequest {
                plan: 99,
                ..good.clone()
            },
        ),
        (
            "owner",
            pb::CreateTenantRequest {
                owner: None,
                ..good.clone()
            },
        ),
        (
            "owner.email",
            pb::CreateTenantRequest {
                owner: Some(pb::InitialOwner {
                    email: "nobody".into(),
                    ..good.owner.clone().unwrap()
                }),
                ..good.clone()
            },
        ),
        (
            "owner.password",
            pb::CreateTenantRequest {
                owner: Some(pb::InitialOwner {
                    password: "short".into(),
                    ..good.owner.clone().unwrap()
                }),
                ..good.clone()
            },
        ),
    ];
    for (field, request) in cases {
        let status = operator.create_tenant(request).await.expect_err(field);
        assert_eq!(status.code(), Code::InvalidArgument, "{field}: {status:?}");
        let violations = status
            .get_details_bad_request()
            .expect("BadRequest")
            .field_violations;
        assert_eq!(violations[0].field, field, "{status:?}");
    }

    let listed = operator
        .list_tenants(pb::ListTenantsRequest::default())
        .await
        .expect("list")
        .into_inner();
    assert!(
        listed.tenants.is_empty(),
        "a rejected request wrote a tenant"
    );
    test.stop().await;
}

async fn create_rejects_taken_subdomain(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    create_tenant(&test.channel, "First", "taken").await;

    let status = tenants(&test.channel, Credential::operator())
        .create_tenant(pb::CreateTenantRequest {
            name: "Second".into(),
            subdomain: "TAKEN".into(),
            owner: Some(pb::InitialOwner {
                email: "b@b.example".into(),
                display_name: "B".into(),
                password: String::new(),
            }),
            ..Default::default()
        })
        .await
        .expect_err("a taken subdomain must be rejected");

    assert_eq!(status.code(), Code::AlreadyExists);
    let info = status.get_details_error_info().expect("ErrorInfo");
    assert_eq!(
        info.metadata.get("field").map(String::as_str),
        Some("subdomain")
    );
    test.stop().await;
}

async fn create_is_idempotent(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    let mut operator = tenants(&test.channel, Credential::operator());
    let request = pb::CreateTenantRequest {
        name: "Once".into(),
        subdomain: "once".into(),
        request_id: "create-once-1".into(),
        owner: Some(pb::InitialOwner {
            email: "o@once.example".into(),
            display_name: "O".into(),
            password: String::new(),
        }),
        ..Default::default()
    };

    let first = operator
        .create_tenant(request.clone())
        .await
        .expect("first")
        .into_inner();
    let second = operator
        .create_tenant(request)
        .await
        .expect("retry")
        .into_inner();

    assert_eq!(
        first.tenant.as_ref().map(|t| &t.id),
        second.tenant.as_ref().map(|t| &t.id)
    );
    assert_eq!(
        first.owner.as_ref().map(|u| &u.id),
        second.owner.as_ref().map(|u| &u.id)
    );
    assert!(
        second.owner_api_key.is_empty(),
        "the secret must not be shown twice"
    );
    let listed = operator
        .list_tenants(pb::ListTenantsRequest::default())
        .await
        .expect("list")
        .into_inner();
    assert_eq!(listed.tenants.len(), 1);
    test.stop().await;
}

async fn owner_key_authenticates(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    let created = create_tenant(&test.channel, "Keyed", "keyed").await;
    let mut owner = tenants(&test.channel, Credential::api_key(&created.owner_api_key));

    let own = owner
        .get_tenant(pb::GetTenantRequest::default())
        .await
        .expect("the owner reads their tenant")
        .into_inner();
    assert_eq!(own.tenant.map(|t| t.id), created.tenant.map(|t| t.id));

    let status = owner
        .list_tenants(pb::ListTenantsRequest::default())
        .await
        .expect_err("owners are not operators");
    assert_eq!(status.code(), Code::PermissionDenied);
    test.stop().await;
}

async fn update_with_etag(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    let tenant = create_tenant(&test.channel, "Before", "before")
        .await
        .tenant
        .unwrap();
    let mut operator = tenants(&test.channel, Credential::operator());
    let mask = |paths: &[&str]| {
        Some(FieldMask {
            paths: paths.iter().map(|p| p.to_string()).collect(),
        })
    };

    let updated = operator
        .update_tenant(pb::UpdateTenantRequest {
            tenant: Some(pb::Tenant {
                name: "After".into(),
                domain: "chat.after.example".into(),
                subdomain: "ignored".into(),
                ..tenant.clone()
            }),
            update_mask: mask(&["name", "domain"]),
        })
        .await
        .expect("update")
        .into_inner()
        .tenant
        .unwrap();
    assert_eq!(updated.name, "After");
    assert_eq!(updated.domain, "chat.after.example");
    assert_eq!(
        updated.subdomain, "before",
        "a field outside the mask changed"
    );
    assert_ne!(updated.etag, tenant.etag);

    let stale = operator
        .update_tenant(pb::UpdateTenantRequest {
            tenant: Some(pb::Tenant {
                name: "Stale".into(),
                ..tenant.clone()
            }),
            update_mask: mask(&["name"]),
        })
        .await
        .expect_err("a stale etag must be rejected");
    assert_eq!(stale.code(), Code::Aborted);

    let bad_mask = operator
        .update_tenant(pb::UpdateTenantRequest {
            tenant: Some(updated.clone()),
            update_mask: mask(&["plan"]),
        })
        .await
        .expect_err("plan is not updatable here");
    assert_eq!(bad_mask.code(), Code::InvalidArgument);

    let current = operator
        .get_tenant(pb::GetTenantRequest {
            id: tenant.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .tenant
        .unwrap();
    assert_eq!(current.name, "After");
    test.stop().await;
}

async fn subscription_and_usage(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    let tenant = create_tenant(&test.channel, "Plan", "plan")
        .await
        .tenant
        .unwrap();
    let mut operator = tenants(&test.channel, Credential::operator());

    let upgraded = operator
        .update_subscription(pb::UpdateSubscriptionRequest {
            tenant_id: tenant.id.clone(),
            plan: pb::Plan::Professional.into(),
            subscription_expire_time: Some(prost_types::Timestamp {
                seconds: 1_900_000_000,
                nanos: 0,
            }),
            etag: tenant.etag.clone(),
        })
        .await
        .expect("upgrade")
        .into_inner()
        .tenant
        .unwrap();
    assert_eq!(upgraded.plan(), pb::Plan::Professional);
    assert_eq!(upgraded.quotas.as_ref().map(|q| q.users), Some(100));

    let usage = operator
        .get_tenant_usage(pb::GetTenantUsageRequest {
            tenant_id: tenant.id.clone(),
        })
        .await
        .expect("usage")
        .into_inner()
        .usage
        .unwrap();
    assert_eq!(usage.users.map(|u| (u.used, u.limit)), Some((1, 100)));
    assert_eq!(usage.api_keys.map(|u| (u.used, u.limit)), Some((1, 50)));
    assert_eq!(usage.chat_sessions.map(|u| u.used), Some(0));
    assert_eq!(usage.requests_per_second_limit, 100);
    test.stop().await;
}

async fn suspend_resume_delete_undelete(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    let created = create_tenant(&test.channel, "Cycle", "cycle").await;
    let id = created.tenant.unwrap().id;
    let mut operator = tenants(&test.channel, Credential::operator());
    let mut owner = tenants(&test.channel, Credential::api_key(&created.owner_api_key));

    let missing_reason = operator
        .suspend_tenant(pb::SuspendTenantRequest {
            id: id.clone(),
            reason: String::new(),
        })
        .await
        .expect_err("a reason is required");
    assert_eq!(missing_reason.code(), Code::InvalidArgument);

    let suspended = operator
        .suspend_tenant(pb::SuspendTenantRequest {
            id: id.clone(),
            reason: "unpaid invoice".into(),
        })
        .await
        .expect("suspend")
        .into_inner()
        .tenant
        .unwrap();
    assert_eq!(suspended.state(), pb::TenantState::Suspended);
    let denied = owner
        .get_tenant(pb::GetTenantRequest::default())
        .await
        .expect_err("a suspended tenant's key is refused");
    assert_eq!(denied.code(), Code::PermissionDenied);
    let info = denied.get_details_error_info().expect("ErrorInfo");
    assert_eq!(info.reason, "TENANT_SUSPENDED");
    assert_eq!(
        info.metadata.get("suspended_reason").map(String::as_str),
        Some("unpaid invoice")
    );

    operator
        .resume_tenant(pb::ResumeTenantRequest { id: id.clone() })
        .await
        .expect("resume");
    owner
        .get_tenant(pb::GetTenantRequest::default())
        .await
        .expect("works again after resume");

    let deleted = operator
        .delete_tenant(pb::DeleteTenantRequest {
            id: id.clone(),
            etag: String::new(),
        })
        .await
        .expect("delete")
        .into_inner()
        .tenant
        .unwrap();
    assert!(deleted.delete_time.is_some());
    let gone = owner
        .get_tenant(pb::GetTenantRequest::default())
        .await
        .expect_err("deleted");
    assert_eq!(gone.code(), Code::Unauthenticated);
    let twice = operator
        .delete_tenant(pb::DeleteTenantRequest {
            id: id.clone(),
            etag: String::new(),
        })
        .await
        .expect_err("deleting twice");
    assert_eq!(twice.code(), Code::NotFound);

    let hidden = operator
        .list_tenants(pb::ListTenantsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(hidden.tenants.is_empty());
    let shown = operator
        .list_tenants(pb::ListTenantsRequest {
            show_deleted: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(shown.tenants.len(), 1);

    operator
        .undelete_tenant(pb::UndeleteTenantRequest { id: id.clone() })
        .await
        .expect("undelete");
    owner
        .get_tenant(pb::GetTenantRequest::default())
        .await
        .expect("works again after undelete");
    let live = operator
        .undelete_tenant(pb::UndeleteTenantRequest { id })
        .await
        .expect_err("undeleting a live tenant");
    assert_eq!(live.code(), Code::AlreadyExists);
    test.stop().await;
}

async fn members_see_only_own_tenant(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    let a = create_tenant(&test.channel, "A", "tenant-a").await;
    let b = create_tenant(&test.channel, "B", "tenant-b").await;
    let b_id = b.tenant.unwrap().id;
    let mut a_owner = tenants(&test.channel, Credential::api_key(&a.owner_api_key));

    let other = a_owner
        .get_tenant(pb::GetTenantRequest { id: b_id.clone() })
        .await
        .expect_err("another tenant is invisible");
    assert_eq!(other.code(), Code::NotFound);
    let usage = a_owner
        .get_tenant_usage(pb::GetTenantUsageRequest { tenant_id: b_id })
        .await
        .expect_err("another tenant's usage is invisible");
    assert_eq!(usage.code(), Code::NotFound);
    test.stop().await;
}
