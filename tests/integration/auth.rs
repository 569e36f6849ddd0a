//! AuthService through the generated client, on both backends: login, lockout, refresh token
//! rotation and reuse detection, and logout.

use std::time::{Duration, Instant};

use ally::models::now;
use ally::proto::ally::v1 as pb;
use ally::proto::ally::v1::login_request::Tenant as LoginTenant;
use ally::schema::{audit_logs, refresh_tokens, tenants as tenant_rows, users};
use chrono::{NaiveDateTime, TimeDelta};
use diesel::{ExpressionMethods, QueryDsl};
use diesel_async::RunQueryDsl;
use tonic::{Code, Status};
use tonic_types::StatusExt;

use crate::backend_tests;
use crate::common::clients::{Credential, auth, create_tenant, tenants};
use crate::common::{TestBackend, TestServer, test_token_keys};

backend_tests!(
    login_by_id_and_subdomain,
    login_validates_input,
    failures_look_identical,
    lockout_after_max_failures,
    access_token_reaches_tenant_service,
    refresh_rotates_token,
    concurrent_refresh_one_wins,
    reuse_revokes_family,
    refresh_uses_current_role,
    refresh_rejects_inactive_accounts,
    logout_revokes_family,
    expired_refresh_rejected,
    suspended_tenant_denied,
);

/// Password of every owner that `create_tenant` creates.
const PASSWORD: &str = "correct horse battery staple";

fn owner_email(subdomain: &str) -> String {
    format!("owner@{subdomain}.example")
}

fn subdomain(label: &str) -> LoginTenant {
    LoginTenant::TenantDomain(label.to_string())
}

async fn login(
    test: &TestServer,
    tenant: LoginTenant,
    email: &str,
    password: &str,
) -> Result<pb::LoginResponse, Status> {
    auth(&test.channel)
        .login(pb::LoginRequest {
            tenant: Some(tenant),
            email: email.to_string(),
            password: password.to_string(),
        })
        .await
        .map(tonic::Response::into_inner)
}

async fn refresh(test: &TestServer, token: &str) -> Result<pb::RefreshResponse, Status> {
    auth(&test.channel)
        .refresh(pb::RefreshRequest {
            refresh_token: token.to_string(),
        })
        .await
        .map(tonic::Response::into_inner)
}

async fn logout(test: &TestServer, token: &str) -> Result<pb::LogoutResponse, Status> {
    auth(&test.channel)
        .logout(pb::LogoutRequest {
            refresh_token: token.to_string(),
        })
        .await
        .map(tonic::Response::into_inner)
}

/// Logs in as the owner of the tenant with subdomain `label`.
async fn login_owner(test: &TestServer, label: &str) -> pb::LoginResponse {
    login(test, subdomain(label), &owner_email(label), PASSWORD)
        .await
        .expect("owner login")
}

fn reason(status: &Status) -> Option<String> {
    status.get_details_error_info().map(|info| info.reason)
}

/// Asserts the one error every failed login returns.
fn assert_invalid_credentials(status: &Status, case: &str) {
    assert_eq!(status.code(), Code::Unauthenticated, "{case}: {status:?}");
    assert_eq!(
        status.message(),
        "invalid email or password",
        "{case}: {status:?}"
    );
    assert_eq!(
        reason(status).as_deref(),
        Some("INVALID_CREDENTIALS"),
        "{case}: {status:?}"
    );
}

fn assert_refresh_rejected(result: Result<pb::RefreshResponse, Status>, case: &str) {
    let status = result.expect_err(case);
    assert_eq!(status.code(), Code::Unauthenticated, "{case}: {status:?}");
    assert_eq!(
        reason(&status).as_deref(),
        Some("INVALID_REFRESH_TOKEN"),
        "{case}: {status:?}"
    );
}

async fn set_user_active(test: &TestServer, tenant_id: &str, user_id: &str, active: bool) {
    let mut conn = test.server.database().write().await.expect("connection");
    diesel::update(
        users::table
            .filter(users::tenant_id.eq(tenant_id))
            .filter(users::id.eq(user_id)),
    )
    .set(users::is_active.eq(active))
    .execute(&mut *conn)
    .await
    .expect("update users.is_active");
}

async fn login_state(
    test: &TestServer,
    tenant_id: &str,
    user_id: &str,
) -> (i32, Option<NaiveDateTime>) {
    let mut conn = test.server.database().read().await.expect("connection");
    users::table
        .filter(users::tenant_id.eq(tenant_id))
        .filter(users::id.eq(user_id))
        .select((users::failed_login_count, users::locked_until))
        .first(&mut *conn)
        .await
        .expect("user row")
}

async fn audit_count(test: &TestServer, tenant_id: &str, event_type: &str) -> i64 {
    let mut conn = test.server.database().read().await.expect("connection");
    audit_logs::table
        .filter(audit_logs::tenant_id.eq(tenant_id))
        .filter(audit_logs::event_type.eq(event_type))
        .count()
        .get_result(&mut *conn)
        .await
        .expect("count audit entries")
}

async fn audit_metadata(test: &TestServer, tenant_id: &str, event_type: &str) -> Vec<String> {
    let mut conn = test.server.database().read().await.expect("connection");
    audit_logs::table
        .filter(audit_logs::tenant_id.eq(tenant_id))
        .filter(audit_logs::event_type.eq(event_type))
        .select(audit_logs::metadata)
        .load(&mut *conn)
        .await
        .expect("load audit metadata")
}

async fn login_by_id_and_subdomain(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    let created = create_tenant(&test.channel, "Acme", "acme").await;
    let tenant = created.tenant.expect("tenant");
    let owner = created.owner.expect("owner");

    let by_id = login(
        &test,
        LoginTenant::TenantId(tenant.id.clone()),
        &owner_email("acme"),
        PASSWORD,
    )
    .await
    .expect("login by tenant id");
    assert_eq!(by_id.token_type, "Bearer");
    assert!(!by_id.access_token.is_empty());
    assert!(!by_id.refresh_token.is_empty());
    let user = by_id.user.expect("user");
    assert_eq!(user.id, owner.id);
    assert_eq!(user.role(), pb::Role::Owner);
    assert!(user.last_login_time.is_some());
    let now_seconds = chrono::Utc::now().timestamp();
    let access_expiry = by_id.access_token_expire_time.expect("access expiry");
    let refresh_expiry = by_id.refresh_token_expire_time.expect("refresh expiry");
    assert!(access_expiry.seconds > now_seconds);
    assert!(refresh_expiry.seconds > access_expiry.seconds);

    let claims = test_token_keys()
        .verify(&by_id.access_token)
        .expect("server-signed token");
    assert_eq!(claims.sub, owner.id);
    assert_eq!(claims.tenant.as_deref(), Some(tenant.id.as_str()));
    assert_eq!(claims.role, "owner");
    assert_eq!(claims.exp, access_expiry.seconds);

    let by_subdomain = login(&test, subdomain("ACME"), "Owner@Acme.Example", PASSWORD)
        .await
        .expect("login by subdomain with mixed-case email");
    assert_eq!(by_subdomain.user.map(|u| u.id), Some(owner.id.clone()));
    assert_ne!(by_subdomain.refresh_token, by_id.refresh_token);

    assert_eq!(audit_count(&test, &tenant.id, "auth.login").await, 2);
    test.stop().await;
}

async fn login_validates_input(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    create_tenant(&test.channel, "Acme", "acme").await;
    let good = pb::LoginRequest {
        tenant: Some(subdomain("acme")),
        email: owner_email("acme"),
        password: PASSWORD.into(),
    };
    let cases = [
        (
            "tenant",
            pb::LoginRequest {
                tenant: None,
                ..good.clone()
            },
        ),
        (
            "tenant_id",
            pb::LoginRequest {
                tenant: Some(LoginTenant::TenantId("acme".into())),
                ..good.clone()
            },
        ),
        (
            "tenant_domain",
            pb::LoginRequest {
                tenant: Some(subdomain("not valid")),
                ..good.clone()
            },
        ),
        (
            "email",
            pb::LoginRequest {
                email: "nobody".into(),
                ..good.clone()
            },
        ),
        (
            "password",
            pb::LoginRequest {
                password: String::new(),
                ..good.clone()
            },
        ),
        (
            "password",
            pb::LoginRequest {
                password: "x".repeat(1025),
                ..good.clone()
            },
        ),
    ];
    for (field, request) in cases {
        let status = auth(&test.channel).login(request).await.expect_err(field);
        assert_eq!(status.code(), Code::InvalidArgument, "{field}: {status:?}");
        let violations = status
            .get_details_bad_request()
            .expect("BadRequest")
            .field_violations;
        assert_eq!(violations[0].field, field, "{status:?}");
    }

    let empty_refresh = refresh(&test, "").await.expect_err("empty refresh token");
    assert_eq!(empty_refresh.code(), Code::InvalidArgument);
    let empty_logout = logout(&test, "").await.expect_err("empty logout token");
    assert_eq!(empty_logout.code(), Code::InvalidArgument);
    test.stop().await;
}

async fn failures_look_identical(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    let created = create_tenant(&test.channel, "Acme", "acme").await;
    let tenant = created.tenant.expect("tenant");
    let owner = created.owner.expect("owner");
    let deleted = create_tenant(&test.channel, "Gone", "gone").await;
    let deleted_tenant = deleted.tenant.expect("tenant");
    let email = owner_email("acme");

    let wrong_password = login(
        &test,
        subdomain("acme"),
        &email,
        "wrong horse battery staple",
    )
    .await
    .expect_err("wrong password");
    assert_invalid_credentials(&wrong_password, "wrong password");

    let unknown_email = login(&test, subdomain("acme"), "nobody@acme.example", PASSWORD)
        .await
        .expect_err("unknown email");
    assert_invalid_credentials(&unknown_email, "unknown email");

    let unknown_id = login(
        &test,
        LoginTenant::TenantId(ally::models::new_id()),
        &email,
        PASSWORD,
    )
    .await
    .expect_err("unknown tenant id");
    assert_invalid_credentials(&unknown_id, "unknown tenant id");

    let unknown_subdomain = login(&test, subdomain("nowhere"), &email, PASSWORD)
        .await
        .expect_err("unknown subdomain");
    assert_invalid_credentials(&unknown_subdomain, "unknown subdomain");

    let unknown_domain = login(&test, subdomain("chat.nowhere.example"), &email, PASSWORD)
        .await
        .expect_err("unknown custom domain");
    assert_invalid_credentials(&unknown_domain, "unknown custom domain");

    {
        let mut conn = test.server.database().write().await.expect("connection");
        diesel::update(tenant_rows::table.filter(tenant_rows::id.eq(&deleted_tenant.id)))
            .set(tenant_rows::deleted_at.eq(Some(now())))
            .execute(&mut *conn)
            .await
            .expect("soft-delete tenant");
    }
    let in_deleted_tenant = login(
        &test,
        LoginTenant::TenantId(deleted_tenant.id.clone()),
        &owner_email("gone"),
        PASSWORD,
    )
    .await
    .expect_err("soft-deleted tenant");
    assert_invalid_credentials(&in_deleted_tenant, "soft-deleted tenant");

    set_user_active(&test, &tenant.id, &owner.id, false).await;
    let deactivated = login(&test, subdomain("acme"), &email, PASSWORD)
        .await
        .expect_err("deactivated user");
    assert_invalid_credentials(&deactivated, "deactivated user");
    set_user_active(&test, &tenant.id, &owner.id, true).await;

    {
        let mut conn = test.server.database().write().await.expect("connection");
        diesel::update(users::table.filter(users::id.eq(&owner.id)))
            .set(users::password_hash.eq(None::<String>))
            .execute(&mut *conn)
            .await
            .expect("clear password hash");
    }
    let no_password = login(&test, subdomain("acme"), &email, PASSWORD)
        .await
        .expect_err("user without password");
    assert_invalid_credentials(&no_password, "user without password");

    // Wrong password, unknown email, deactivated user and no password, in the tenant. Unknown
    // tenants have nowhere to write an entry.
    assert_eq!(audit_count(&test, &tenant.id, "auth.login_failed").await, 4);
    assert_eq!(
        audit_count(&test, &deleted_tenant.id, "auth.login_failed").await,
        1
    );
    let metadata = audit_metadata(&test, &tenant.id, "auth.login_failed").await;
    for reason in [
        "wrong_password",
        "unknown_email",
        "user_deactivated",
        "no_password",
    ] {
        assert!(
            metadata.iter().any(|m| m.contains(reason)),
            "no entry with reason {reason}: {metadata:?}"
        );
    }
    for entry in &metadata {
        assert!(
            !entry.contains("horse"),
            "a password reached the audit log: {entry}"
        );
    }
    test.stop().await;
}

async fn lockout_after_max_failures(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    let created = create_tenant(&test.channel, "Acme", "acme").await;
    let tenant = created.tenant.expect("tenant");
    let owner = created.owner.expect("owner");
    let email = owner_email("acme");

    // The default auth.max_failed_logins is 5. Failures 3, 4 and 5 are held back 200, 400 and
    // 600 ms.
    for attempt in 1..=5 {
        let started = Instant::now();
        let status = login(
            &test,
            subdomain("acme"),
            &email,
            "wrong horse battery staple",
        )
        .await
        .expect_err("wrong password");
        assert_invalid_credentials(&status, &format!("failure {attempt}"));
        if attempt == 5 {
            assert!(
                started.elapsed() >= Duration::from_millis(600),
                "the fifth failure returned after {:?}",
                started.elapsed()
            );
        }
    }
    let (failures, locked_until) = login_state(&test, &tenant.id, &owner.id).await;
    assert_eq!(failures, 5);
    let locked_until = locked_until.expect("account locked");
    assert!(locked_until > now() + TimeDelta::minutes(14));

    let while_locked = login(&test, subdomain("acme"), &email, PASSWORD)
        .await
        .expect_err("right password while locked");
    assert_invalid_credentials(&while_locked, "right password while locked");
    let (_, still_locked_until) = login_state(&test, &tenant.id, &owner.id).await;
    assert_eq!(still_locked_until, Some(locked_until));

    assert_eq!(audit_count(&test, &tenant.id, "auth.login_failed").await, 6);
    assert_eq!(
        audit_count(&test, &tenant.id, "auth.account_locked").await,
        1
    );
    let metadata = audit_metadata(&test, &tenant.id, "auth.login_failed").await;
    assert!(
        metadata.iter().any(|m| m.contains("account_locked")),
        "{metadata:?}"
    );

    {
        let mut conn = test.server.database().write().await.expect("connection");
        diesel::update(users::table.filter(users::id.eq(&owner.id)))
            .set(users::locked_until.eq(Some(now() - TimeDelta::seconds(1))))
            .execute(&mut *conn)
            .await
            .expect("end lockout");
    }
    let after_lockout = login(&test, subdomain("acme"), &email, PASSWORD)
        .await
        .expect("login after the lockout ends");
    assert_eq!(after_lockout.user.map(|u| u.id), Some(owner.id.clone()));
    assert_eq!(
        login_state(&test, &tenant.id, &owner.id).await,
        (0, None),
        "success resets the failure count and the lock"
    );
    test.stop().await;
}

async fn access_token_reaches_tenant_service(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    let created = create_tenant(&test.channel, "Acme", "acme").await;
    let tenant = created.tenant.expect("tenant");
    let session = login_owner(&test, "acme").await;

    let own = tenants(&test.channel, Credential::bearer(&session.access_token))
        .get_tenant(pb::GetTenantRequest { id: String::new() })
        .await
        .expect("get own tenant with a login token")
        .into_inner()
        .tenant
        .expect("tenant");
    assert_eq!(own.id, tenant.id);
    test.stop().await;
}

async fn refresh_rotates_token(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    let created = create_tenant(&test.channel, "Acme", "acme").await;
    let tenant = created.tenant.expect("tenant");
    let session = login_owner(&test, "acme").await;

    let renewed = refresh(&test, &session.refresh_token)
        .await
        .expect("refresh");
    assert_eq!(renewed.token_type, "Bearer");
    assert_ne!(renewed.refresh_token, session.refresh_token);
    assert!(renewed.access_token_expire_time.is_some());
    assert!(renewed.refresh_token_expire_time.is_some());
    assert_eq!(
        renewed.user.as_ref().map(|u| u.id.as_str()),
        session.user.as_ref().map(|u| u.id.as_str())
    );
    let own = tenants(&test.channel, Credential::bearer(&renewed.access_token))
        .get_tenant(pb::GetTenantRequest { id: String::new() })
        .await
        .expect("get own tenant with a refreshed token")
        .into_inner();
    assert_eq!(own.tenant.map(|t| t.id), Some(tenant.id.clone()));

    let again = refresh(&test, &renewed.refresh_token)
        .await
        .expect("the new refresh token works");
    assert_ne!(again.refresh_token, renewed.refresh_token);
    assert_eq!(audit_count(&test, &tenant.id, "auth.refresh").await, 2);

    assert_refresh_rejected(
        refresh(&test, &session.refresh_token).await,
        "token that was already exchanged",
    );
    test.stop().await;
}

async fn concurrent_refresh_one_wins(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    let created = create_tenant(&test.channel, "Acme", "acme").await;
    let tenant = created.tenant.expect("tenant");
    let session = login_owner(&test, "acme").await;

    let (first, second) = tokio::join!(
        refresh(&test, &session.refresh_token),
        refresh(&test, &session.refresh_token)
    );
    let winners: Vec<pb::RefreshResponse> = [first, second].into_iter().flatten().collect();
    assert_eq!(
        winners.len(),
        1,
        "exactly one exchange of one token succeeds"
    );

    // The second exchange counts as reuse, so the winner's token is revoked with its family.
    assert_refresh_rejected(
        refresh(&test, &winners[0].refresh_token).await,
        "token issued to the winner of a race",
    );
    assert_eq!(
        audit_count(&test, &tenant.id, "auth.refresh_reuse").await,
        1
    );
    test.stop().await;
}

async fn reuse_revokes_family(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    let created = create_tenant(&test.channel, "Acme", "acme").await;
    let tenant = created.tenant.expect("tenant");
    let session = login_owner(&test, "acme").await;
    let other_session = login_owner(&test, "acme").await;
    let renewed = refresh(&test, &session.refresh_token)
        .await
        .expect("refresh");

    assert_refresh_rejected(
        refresh(&test, &session.refresh_token).await,
        "rotated token presented again",
    );
    assert_refresh_rejected(
        refresh(&test, &renewed.refresh_token).await,
        "newest token of a revoked family",
    );
    assert_eq!(
        audit_count(&test, &tenant.id, "auth.refresh_reuse").await,
        1
    );
    {
        let mut conn = test.server.database().read().await.expect("connection");
        let severity: String = audit_logs::table
            .filter(audit_logs::event_type.eq("auth.refresh_reuse"))
            .select(audit_logs::severity)
            .first(&mut *conn)
            .await
            .expect("reuse entry");
        assert_eq!(severity, "critical");
    }

    refresh(&test, &other_session.refresh_token)
        .await
        .expect("a login's own family is untouched");
    test.stop().await;
}

async fn refresh_uses_current_role(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    let created = create_tenant(&test.channel, "Acme", "acme").await;
    let tenant = created.tenant.expect("tenant");
    let owner = created.owner.expect("owner");
    let session = login_owner(&test, "acme").await;

    {
        let mut conn = test.server.database().write().await.expect("connection");
        diesel::update(
            users::table
                .filter(users::tenant_id.eq(&tenant.id))
                .filter(users::id.eq(&owner.id)),
        )
        .set(users::role.eq("viewer"))
        .execute(&mut *conn)
        .await
        .expect("change role");
    }
    let renewed = refresh(&test, &session.refresh_token)
        .await
        .expect("refresh");

    assert_eq!(renewed.user.map(|u| u.role()), Some(pb::Role::Viewer));
    let claims = test_token_keys()
        .verify(&renewed.access_token)
        .expect("server-signed token");
    assert_eq!(claims.role, "viewer");
    test.stop().await;
}

async fn refresh_rejects_inactive_accounts(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    let created = create_tenant(&test.channel, "Acme", "acme").await;
    let tenant = created.tenant.expect("tenant");
    let owner = created.owner.expect("owner");
    let session = login_owner(&test, "acme").await;

    set_user_active(&test, &tenant.id, &owner.id, false).await;
    assert_refresh_rejected(
        refresh(&test, &session.refresh_token).await,
        "deactivated user",
    );
    set_user_active(&test, &tenant.id, &owner.id, true).await;

    {
        let mut conn = test.server.database().write().await.expect("connection");
        diesel::update(tenant_rows::table.filter(tenant_rows::id.eq(&tenant.id)))
            .set(tenant_rows::deleted_at.eq(Some(now())))
            .execute(&mut *conn)
            .await
            .expect("soft-delete tenant");
    }
    assert_refresh_rejected(
        refresh(&test, &session.refresh_token).await,
        "soft-deleted tenant",
    );
    test.stop().await;
}

async fn logout_revokes_family(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    let created = create_tenant(&test.channel, "Acme", "acme").await;
    let tenant = created.tenant.expect("tenant");
    let session = login_owner(&test, "acme").await;
    let renewed = refresh(&test, &session.refresh_token)
        .await
        .expect("refresh");

    logout(&test, &renewed.refresh_token).await.expect("logout");
    assert_refresh_rejected(
        refresh(&test, &renewed.refresh_token).await,
        "token after logout",
    );
    {
        let mut conn = test.server.database().read().await.expect("connection");
        let live: i64 = refresh_tokens::table
            .filter(refresh_tokens::tenant_id.eq(&tenant.id))
            .filter(refresh_tokens::revoked_at.is_null())
            .count()
            .get_result(&mut *conn)
            .await
            .expect("count live tokens");
        assert_eq!(live, 0, "logout left tokens of the family live");
    }
    assert_eq!(audit_count(&test, &tenant.id, "auth.logout").await, 1);

    logout(&test, &renewed.refresh_token)
        .await
        .expect("logout of a revoked token succeeds");
    logout(&test, "never-issued-token")
        .await
        .expect("logout of an unknown token succeeds");
    assert_eq!(audit_count(&test, &tenant.id, "auth.logout").await, 2);
    test.stop().await;
}

async fn expired_refresh_rejected(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    let created = create_tenant(&test.channel, "Acme", "acme").await;
    let tenant = created.tenant.expect("tenant");
    let session = login_owner(&test, "acme").await;

    {
        let mut conn = test.server.database().write().await.expect("connection");
        diesel::update(refresh_tokens::table.filter(refresh_tokens::tenant_id.eq(&tenant.id)))
            .set(refresh_tokens::expires_at.eq(now() - TimeDelta::seconds(1)))
            .execute(&mut *conn)
            .await
            .expect("expire refresh tokens");
    }
    assert_refresh_rejected(
        refresh(&test, &session.refresh_token).await,
        "expired token",
    );
    test.stop().await;
}

async fn suspended_tenant_denied(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    let created = create_tenant(&test.channel, "Acme", "acme").await;
    let tenant = created.tenant.expect("tenant");
    let session = login_owner(&test, "acme").await;
    let mut operator = tenants(&test.channel, Credential::operator());
    operator
        .suspend_tenant(pb::SuspendTenantRequest {
            id: tenant.id.clone(),
            reason: "unpaid invoice".into(),
        })
        .await
        .expect("suspend");

    let rejected = refresh(&test, &session.refresh_token)
        .await
        .expect_err("refresh in a suspended tenant");
    assert_eq!(rejected.code(), Code::PermissionDenied, "{rejected:?}");
    assert_eq!(reason(&rejected).as_deref(), Some("TENANT_SUSPENDED"));

    let right_password = login(&test, subdomain("acme"), &owner_email("acme"), PASSWORD)
        .await
        .expect_err("login in a suspended tenant");
    assert_eq!(right_password.code(), Code::PermissionDenied);
    assert_eq!(reason(&right_password).as_deref(), Some("TENANT_SUSPENDED"));
    let wrong_password = login(
        &test,
        subdomain("acme"),
        &owner_email("acme"),
        "wrong horse battery staple",
    )
    .await
    .expect_err("wrong password in a suspended tenant");
    assert_invalid_credentials(&wrong_password, "wrong password in a suspended tenant");

    operator
        .resume_tenant(pb::ResumeTenantRequest {
            id: tenant.id.clone(),
        })
        .await
        .expect("resume");
    refresh(&test, &session.refresh_token)
        .await
        .expect("a rejected refresh leaves the token usable");
    test.stop().await;
}
