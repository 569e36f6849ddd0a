//! UserService through the generated client, on both backends.

use ally::models::{RefreshToken, new_id, now};
use ally::proto::ally::v1 as pb;
use ally::schema::{audit_logs, refresh_tokens, users as user_rows};
use chrono::{NaiveDateTime, TimeDelta};
use diesel::{ExpressionMethods, QueryDsl};
use diesel_async::RunQueryDsl;
use prost_types::FieldMask;
use secrecy::SecretString;
use tonic::{Code, Status};
use tonic_types::StatusExt;

use crate::backend_tests;
use crate::common::clients::{Authed, Credential, create_tenant, users};
use crate::common::{TestBackend, TestServer};

backend_tests!(
    create_get_and_list,
    create_validates_input,
    create_rejects_taken_email,
    accented_emails_distinct,
    create_is_idempotent,
    quota_limits_active_users,
    role_escalation_rejected,
    update_user_profile,
    update_validates_input,
    role_change_and_last_owner,
    deactivate_and_reactivate,
    change_password_own_and_others,
    wrong_passwords_lock_account,
    verification_token_single_use,
    verification_rejects_foreign_tokens,
    other_tenant_users_not_found,
    list_filters_and_pages,
    concurrent_changes_keep_limits,
    settings_change_lockout_and_lifetime,
);

type Client = pb::user_service_client::UserServiceClient<Authed>;

/// Password of every tenant owner that `create_tenant` makes.
const OWNER_PASSWORD: &str = "correct horse battery staple";
const NEW_PASSWORD: &str = "a brand new passphrase";

/// A tenant made through the API, with its owner.
struct TestTenant {
    id: String,
    owner_id: String,
    owner_key: String,
}

impl TestTenant {
    async fn create(test: &TestServer, label: &str) -> TestTenant {
        let created = create_tenant(&test.channel, label, label).await;
        TestTenant {
            id: created.tenant.expect("tenant").id,
            owner_id: created.owner.expect("owner").id,
            owner_key: created.owner_api_key,
        }
    }

    /// Returns a client that calls with the owner's API key.
    fn owner_key_client(&self, test: &TestServer) -> Client {
        users(&test.channel, Credential::api_key(&self.owner_key))
    }

    /// Returns a client that calls with an access token of `user` in this tenant.
    fn client_as(&self, test: &TestServer, user: &pb::User) -> Client {
        let role = match user.role() {
            pb::Role::Owner => "owner",
            pb::Role::Admin => "admin",
            pb::Role::Member => "member",
            _ => "viewer",
        };
        users(&test.channel, Credential::user(&self.id, &user.id, role))
    }

    fn owner_client(&self, test: &TestServer) -> Client {
        users(
            &test.channel,
            Credential::user(&self.id, &self.owner_id, "owner"),
        )
    }
}

fn create_request(email: &str, role: pb::Role) -> pb::CreateUserRequest {
    pb::CreateUserRequest {
        email: email.to_string(),
        display_name: format!("User {email}"),
        role: role.into(),
        ..Default::default()
    }
}

async fn create_user(client: &mut Client, email: &str, role: pb::Role) -> pb::User {
    client
        .create_user(create_request(email, role))
        .await
        .unwrap_or_else(|status| panic!("create {email}: {status:?}"))
        .into_inner()
        .user
        .expect("user")
}

async fn get_user(client: &mut Client, id: &str) -> Result<pb::User, Status> {
    client
        .get_user(pb::GetUserRequest { id: id.to_string() })
        .await
        .map(|response| response.into_inner().user.expect("user"))
}

async fn list_all(client: &mut Client, role: pb::Role, active: Option<bool>) -> Vec<pb::User> {
    client
        .list_users(pb::ListUsersRequest {
            page_size: 1000,
            role: role.into(),
            active,
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner()
        .users
}

async fn set_role(client: &mut Client, id: &str, role: pb::Role) -> Result<pb::User, Status> {
    client
        .update_user_role(pb::UpdateUserRoleRequest {
            id: id.to_string(),
            role: role.into(),
        })
        .await
        .map(|response| response.into_inner().user.expect("user"))
}

async fn deactivate(client: &mut Client, id: &str) -> Result<pb::User, Status> {
    client
        .deactivate_user(pb::DeactivateUserRequest { id: id.to_string() })
        .await
        .map(|response| response.into_inner().user.expect("user"))
}

async fn reactivate(client: &mut Client, id: &str) -> Result<pb::User, Status> {
    client
        .reactivate_user(pb::ReactivateUserRequest { id: id.to_string() })
        .await
        .map(|response| response.into_inner().user.expect("user"))
}

async fn change_password(
    client: &mut Client,
    id: &str,
    current: &str,
    new: &str,
) -> Result<(), Status> {
    client
        .change_password(pb::ChangePasswordRequest {
            id: id.to_string(),
            current_password: current.to_string(),
            new_password: new.to_string(),
        })
        .await
        .map(drop)
}

async fn send_verification(
    client: &mut Client,
    id: &str,
) -> Result<pb::SendVerificationResponse, Status> {
    client
        .send_verification(pb::SendVerificationRequest { id: id.to_string() })
        .await
        .map(|response| response.into_inner())
}

async fn verify_email(client: &mut Client, token: &str) -> Result<pb::User, Status> {
    client
        .verify_email(pb::VerifyEmailRequest {
            token: token.to_string(),
        })
        .await
        .map(|response| response.into_inner().user.expect("user"))
}

fn reason(status: &Status) -> Option<String> {
    status.get_details_error_info().map(|info| info.reason)
}

/// Asserts INVALID_ARGUMENT with a BadRequest detail whose first violation names `field`.
fn assert_invalid_field(status: &Status, field: &str) {
    assert_eq!(status.code(), Code::InvalidArgument, "{field}: {status:?}");
    let violations = status
        .get_details_bad_request()
        .expect("BadRequest detail")
        .field_violations;
    assert_eq!(violations[0].field, field, "{status:?}");
}

fn assert_denied(result: Result<pb::User, Status>, case: &str) {
    let status = result.expect_err(case);
    assert_eq!(status.code(), Code::PermissionDenied, "{case}: {status:?}");
}

async fn audit_metadata(test: &TestServer, tenant_id: &str, event_type: &str) -> Vec<String> {
    let mut conn = test.server.database().read().await.expect("connection");
    audit_logs::table
        .filter(audit_logs::tenant_id.eq(tenant_id))
        .filter(audit_logs::event_type.eq(event_type))
        .select(audit_logs::metadata)
        .load(&mut *conn)
        .await
        .expect("audit entries")
}

/// Inserts a live refresh token of a user straight into the database and returns its id.
async fn insert_refresh_token(test: &TestServer, tenant_id: &str, user_id: &str) -> String {
    let time = now();
    let token = RefreshToken {
        tenant_id: tenant_id.to_string(),
        id: new_id(),
        user_id: user_id.to_string(),
        family_id: new_id(),
        token_hash: new_id(),
        expires_at: time + TimeDelta::days(1),
        used_at: None,
        revoked_at: None,
        created_at: time,
    };
    let mut conn = test.server.database().write().await.expect("connection");
    diesel::insert_into(refresh_tokens::table)
        .values(&token)
        .execute(&mut *conn)
        .await
        .expect("insert refresh token");
    token.id
}

async fn refresh_token_revoked_at(test: &TestServer, id: &str) -> Option<NaiveDateTime> {
    let mut conn = test.server.database().read().await.expect("connection");
    refresh_tokens::table
        .filter(refresh_tokens::id.eq(id))
        .select(refresh_tokens::revoked_at)
        .first(&mut *conn)
        .await
        .expect("refresh token")
}

/// Returns the stored password hash, failed login count and lock expiry of a user.
async fn password_state(
    test: &TestServer,
    tenant_id: &str,
    user_id: &str,
) -> (Option<String>, i32, Option<NaiveDateTime>) {
    let mut conn = test.server.database().read().await.expect("connection");
    user_rows::table
        .filter(user_rows::tenant_id.eq(tenant_id))
        .filter(user_rows::id.eq(user_id))
        .select((
            user_rows::password_hash,
            user_rows::failed_login_count,
            user_rows::locked_until,
        ))
        .first(&mut *conn)
        .await
        .expect("user row")
}

async fn password_matches(hash: Option<String>, password: &str) -> bool {
    ally::auth::password::verify(SecretString::from(password.to_string()), hash)
        .await
        .expect("verify")
}

async fn create_get_and_list(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    let tenant = TestTenant::create(&test, "acme").await;
    let mut owner = tenant.owner_key_client(&test);

    let created = owner
        .create_user(pb::CreateUserRequest {
            email: "  Ada@Example.COM ".into(),
            display_name: " Ada Lovelace ".into(),
            role: pb::Role::Admin.into(),
            password: "an initial passphrase".into(),
            request_id: String::new(),
        })
        .await
        .expect("create")
        .into_inner()
        .user
        .expect("user");
    assert_eq!(created.email, "ada@example.com");
    assert_eq!(created.display_name, "Ada Lovelace");
    assert_eq!(created.role(), pb::Role::Admin);
    assert!(created.active);
    assert!(!created.email_verified);
    assert!(created.email_verify_time.is_none());
    assert!(created.create_time.is_some());
    let (hash, _, _) = password_state(&test, &tenant.id, &created.id).await;
    assert!(password_matches(hash, "an initial passphrase").await);

    let member = create_user(&mut owner, "bob@example.com", pb::Role::Unspecified).await;
    assert_eq!(member.role(), pb::Role::Member);
    let (hash, _, _) = password_state(&test, &tenant.id, &member.id).await;
    assert!(hash.is_none());

    let fetched = get_user(&mut owner, &created.id).await.expect("get");
    assert_eq!(fetched, created);
    let mut as_member = tenant.client_as(&test, &member);
    let myself = get_user(&mut as_member, "").await.expect("get self");
    assert_eq!(myself.id, member.id);
    let own_key_user = get_user(&mut owner, "").await.expect("key owner");
    assert_eq!(own_key_user.id, tenant.owner_id);

    let listed = list_all(&mut as_member, pb::Role::Unspecified, None).await;
    let ids: Vec<&str> = listed.iter().map(|u| u.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            tenant.owner_id.as_str(),
            created.id.as_str(),
            member.id.as_str()
        ]
    );

    let entries = audit_metadata(&test, &tenant.id, "user.created").await;
    assert_eq!(entries.len(), 3, "{entries:?}");
    assert!(
        entries.iter().any(|m| m.contains("\"admin\"")),
        "{entries:?}"
    );
    assert!(
        entries.iter().all(|m| !m.contains("passphrase")),
        "{entries:?}"
    );
    test.stop().await;
}

async fn create_validates_input(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    let tenant = TestTenant::create(&test, "acme").await;
    let mut owner = tenant.owner_key_client(&test);
    let good = create_request("valid@example.com", pb::Role::Member);
    let cases: Vec<(&str, pb::CreateUserRequest)> = vec![
        (
            "email",
            pb::CreateUserRequest {
                email: "not an email".into(),
                ..good.clone()
            },
        ),
        (
            "email",
            pb::CreateUserRequest {
                email: String::new(),
                ..good.clone()
            },
        ),
        (
            "display_name",
            pb::CreateUserRequest {
                display_name: "  ".into(),
                ..good.clone()
            },
        ),
        (
            "display_name",
            pb::CreateUserRequest {
                display_name: "x".repeat(256),
                ..good.clone()
            },
        ),
        (
            "role",
            pb::CreateUserRequest {
                role: 17,
                ..good.clone()
            },
        ),
        (
            "password",
            pb::CreateUserRequest {
                password: "too short".into(),
                ..good.clone()
            },
        ),
        (
            "request_id",
            pb::CreateUserRequest {
                request_id: "x".repeat(129),
                ..good.clone()
            },
        ),
    ];
    for (field, request) in cases {
        let status = owner.create_user(request).await.expect_err(field);
        assert_invalid_field(&status, field);
    }

    let listed = list_all(&mut owner, pb::Role::Unspecified, None).await;
    assert_eq!(listed.len(), 1, "a rejected request wrote a user");
    assert!(
        audit_metadata(&test, &tenant.id, "user.created")
            .await
            .len()
            == 1
    );
    test.stop().await;
}

async fn create_rejects_taken_email(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    let tenant = TestTenant::create(&test, "acme").await;
    let other = TestTenant::create(&test, "other").await;
    let mut owner = tenant.owner_key_client(&test);
    create_user(&mut owner, "ada@example.com", pb::Role::Member).await;

    for email in ["ada@example.com", "ADA@Example.com", " ada@example.com"] {
        let status = owner
            .create_user(create_request(email, pb::Role::Viewer))
            .await
            .expect_err(email);
        assert_eq!(status.code(), Code::AlreadyExists, "{email}: {status:?}");
        let info = status.get_details_error_info().expect("ErrorInfo");
        assert_eq!(
            info.metadata.get("field").map(String::as_str),
            Some("email")
        );
    }
    assert_eq!(
        list_all(&mut owner, pb::Role::Unspecified, None)
            .await
            .len(),
        2
    );

    let mut other_owner = other.owner_key_client(&test);
    let same_email = create_user(&mut other_owner, "ada@example.com", pb::Role::Member).await;
    assert_eq!(same_email.email, "ada@example.com");
    test.stop().await;
}

async fn accented_emails_distinct(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    let tenant = TestTenant::create(&test, "accents").await;
    let mut owner = tenant.owner_key_client(&test);

    let plain = create_user(&mut owner, "jose@example.com", pb::Role::Member).await;
    let accented = create_user(&mut owner, "josé@example.com", pb::Role::Member).await;
    let sharp = create_user(&mut owner, "straße@example.com", pb::Role::Member).await;
    let doubled = create_user(&mut owner, "strasse@example.com", pb::Role::Member).await;

    assert_ne!(plain.id, accented.id);
    assert_eq!(accented.email, "josé@example.com");
    assert_ne!(sharp.id, doubled.id);
    test.stop().await;
}

async fn create_is_idempotent(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    let tenant = TestTenant::create(&test, "acme").await;
    let other = TestTenant::create(&test, "other").await;
    let mut owner = tenant.owner_key_client(&test);
    let request = pb::CreateUserRequest {
        request_id: "create-ada-1".into(),
        ..create_request("ada@example.com", pb::Role::Member)
    };

    let first = owner
        .create_user(request.clone())
        .await
        .expect("first")
        .into_inner()
        .user
        .expect("user");
    let retry = owner
        .create_user(pb::CreateUserRequest {
            email: "someone-else@example.com".into(),
            ..request.clone()
        })
        .await
        .expect("retry")
        .into_inner()
        .user
        .expect("user");

    assert_eq!(retry, first);
    assert_eq!(
        list_all(&mut owner, pb::Role::Unspecified, None)
            .await
            .len(),
        2
    );
    assert_eq!(
        audit_metadata(&test, &tenant.id, "user.created")
            .await
            .len(),
        2
    );

    // Request ids are scoped to the tenant, so another tenant's call creates its own user.
    let mut other_owner = other.owner_key_client(&test);
    let elsewhere = other_owner
        .create_user(request)
        .await
        .expect("other tenant")
        .into_inner()
        .user
        .expect("user");
    assert_ne!(elsewhere.id, first.id);
    test.stop().await;
}

async fn quota_limits_active_users(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    let tenant = TestTenant::create(&test, "acme").await;
    let mut owner = tenant.owner_key_client(&test);
    let mut created = Vec::new();
    for index in 0..4 {
        let email = format!("user{index}@example.com");
        created.push(create_user(&mut owner, &email, pb::Role::Member).await);
    }

    let status = owner
        .create_user(create_request("sixth@example.com", pb::Role::Member))
        .await
        .expect_err("the free plan allows 5 active users");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    let quota = status
        .get_details_quota_failure()
        .expect("QuotaFailure detail");
    assert_eq!(quota.violations[0].subject, "users");
    assert!(
        quota.violations[0].description.contains('5'),
        "{:?}",
        quota.violations[0]
    );
    assert_eq!(
        list_all(&mut owner, pb::Role::Unspecified, None)
            .await
            .len(),
        5
    );

    deactivate(&mut owner, &created[0].id)
        .await
        .expect("deactivate");
    let sixth = create_user(&mut owner, "sixth@example.com", pb::Role::Member).await;
    assert!(sixth.active);

    let status = reactivate(&mut owner, &created[0].id)
        .await
        .expect_err("reactivation counts against the quota");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(status.get_details_quota_failure().is_some());
    let still_inactive = get_user(&mut owner, &created[0].id).await.expect("get");
    assert!(!still_inactive.active);
    test.stop().await;
}

async fn role_escalation_rejected(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    let tenant = TestTenant::create(&test, "acme").await;
    let mut owner = tenant.owner_key_client(&test);
    let admin = create_user(&mut owner, "admin@example.com", pb::Role::Admin).await;
    let member = create_user(&mut owner, "member@example.com", pb::Role::Member).await;
    let viewer = create_user(&mut owner, "viewer@example.com", pb::Role::Viewer).await;
    let mut as_admin = tenant.client_as(&test, &admin);
    let mut as_member = tenant.client_as(&test, &member);

    let status = as_admin
        .create_user(create_request("boss@example.com", pb::Role::Owner))
        .await
        .expect_err("an admin cannot create an owner");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert_eq!(reason(&status).as_deref(), Some("ROLE_ABOVE_CALLER"));
    let peer = create_user(&mut as_admin, "peer@example.com", pb::Role::Admin).await;
    assert_eq!(peer.role(), pb::Role::Admin);

    let status = set_role(&mut as_admin, &member.id, pb::Role::Owner)
        .await
        .expect_err("an admin cannot grant owner");
    assert_eq!(reason(&status).as_deref(), Some("ROLE_ABOVE_CALLER"));
    assert_denied(
        set_role(&mut as_admin, &tenant.owner_id, pb::Role::Member).await,
        "an admin cannot demote an owner",
    );
    assert_denied(
        deactivate(&mut as_admin, &tenant.owner_id).await,
        "an admin cannot deactivate an owner",
    );
    let status = change_password(&mut as_admin, &tenant.owner_id, "", NEW_PASSWORD)
        .await
        .expect_err("an admin cannot set an owner's password");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");

    let status = as_member
        .update_user(pb::UpdateUserRequest {
            user: Some(pb::User {
                id: viewer.id.clone(),
                display_name: "Renamed".into(),
                ..Default::default()
            }),
            update_mask: None,
        })
        .await
        .expect_err("a member cannot update another user");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    let status = as_member
        .create_user(create_request("new@example.com", pb::Role::Viewer))
        .await
        .expect_err("a member cannot create users");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert_denied(
        set_role(&mut as_member, &member.id, pb::Role::Admin).await,
        "a member cannot promote themselves",
    );

    let owner_now = get_user(&mut owner, &tenant.owner_id).await.expect("owner");
    assert_eq!(owner_now.role(), pb::Role::Owner);
    assert!(owner_now.active);
    let member_now = get_user(&mut owner, &member.id).await.expect("member");
    assert_eq!(member_now.role(), pb::Role::Member);
    let viewer_now = get_user(&mut owner, &viewer.id).await.expect("viewer");
    assert_eq!(viewer_now.display_name, viewer.display_name);
    assert_eq!(
        list_all(&mut owner, pb::Role::Owner, None).await.len(),
        1,
        "no owner was created"
    );
    test.stop().await;
}

async fn update_user_profile(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    let tenant = TestTenant::create(&test, "acme").await;
    let mut owner = tenant.owner_key_client(&test);
    let member = create_user(&mut owner, "member@example.com", pb::Role::Member).await;
    let viewer = create_user(&mut owner, "viewer@example.com", pb::Role::Viewer).await;
    let mut as_member = tenant.client_as(&test, &member);

    let renamed = as_member
        .update_user(pb::UpdateUserRequest {
            user: Some(pb::User {
                id: member.id.clone(),
                display_name: " New Name ".into(),
                email: "ignored@example.com".into(),
                ..Default::default()
            }),
            update_mask: Some(FieldMask {
                paths: vec!["display_name".into()],
            }),
        })
        .await
        .expect("own update")
        .into_inner()
        .user
        .expect("user");
    assert_eq!(renamed.display_name, "New Name");
    assert_eq!(renamed.email, "member@example.com");

    // Verify the email, then change it: the new address is unverified.
    let token = send_verification(&mut owner, &member.id)
        .await
        .expect("send")
        .verification_token;
    let verified = verify_email(&mut as_member, &token).await.expect("verify");
    assert!(verified.email_verified);
    let moved = as_member
        .update_user(pb::UpdateUserRequest {
            user: Some(pb::User {
                id: member.id.clone(),
                email: "Member.New@Example.com".into(),
                ..Default::default()
            }),
            update_mask: None,
        })
        .await
        .expect("email change")
        .into_inner()
        .user
        .expect("user");
    assert_eq!(moved.email, "member.new@example.com");
    assert_eq!(moved.display_name, "New Name");
    assert!(!moved.email_verified);
    assert!(moved.email_verify_time.is_none());

    let by_owner = owner
        .update_user(pb::UpdateUserRequest {
            user: Some(pb::User {
                id: viewer.id.clone(),
                display_name: "Viewer Two".into(),
                email: "viewer2@example.com".into(),
                ..Default::default()
            }),
            update_mask: Some(FieldMask {
                paths: vec!["*".into()],
            }),
        })
        .await
        .expect("owner updates another user")
        .into_inner()
        .user
        .expect("user");
    assert_eq!(by_owner.display_name, "Viewer Two");
    assert_eq!(by_owner.email, "viewer2@example.com");

    let status = owner
        .update_user(pb::UpdateUserRequest {
            user: Some(pb::User {
                id: viewer.id.clone(),
                email: "MEMBER.new@example.com".into(),
                ..Default::default()
            }),
            update_mask: None,
        })
        .await
        .expect_err("the email belongs to another user");
    assert_eq!(status.code(), Code::AlreadyExists, "{status:?}");
    let info = status.get_details_error_info().expect("ErrorInfo");
    assert_eq!(
        info.metadata.get("field").map(String::as_str),
        Some("user.email")
    );
    let unchanged = get_user(&mut owner, &viewer.id).await.expect("viewer");
    assert_eq!(unchanged.email, "viewer2@example.com");

    let entries = audit_metadata(&test, &tenant.id, "user.updated").await;
    assert_eq!(entries.len(), 3, "{entries:?}");
    test.stop().await;
}

async fn update_validates_input(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    let tenant = TestTenant::create(&test, "acme").await;
    let mut owner = tenant.owner_key_client(&test);
    let member = create_user(&mut owner, "member@example.com", pb::Role::Member).await;
    let user = |display_name: &str, email: &str| pb::User {
        id: member.id.clone(),
        display_name: display_name.to_string(),
        email: email.to_string(),
        ..Default::default()
    };
    let mask = |paths: &[&str]| {
        Some(FieldMask {
            paths: paths.iter().map(|p| p.to_string()).collect(),
        })
    };
    let cases: Vec<(&str, pb::UpdateUserRequest)> = vec![
        (
            "user",
            pb::UpdateUserRequest {
                user: None,
                update_mask: None,
            },
        ),
        (
            "user.id",
            pb::UpdateUserRequest {
                user: Some(pb::User {
                    id: "not-a-uuid".into(),
                    ..user("Name", "")
                }),
                update_mask: None,
            },
        ),
        (
            "update_mask",
            pb::UpdateUserRequest {
                user: Some(user("", "")),
                update_mask: None,
            },
        ),
        (
            "update_mask",
            pb::UpdateUserRequest {
                user: Some(user("Name", "")),
                update_mask: mask(&["role"]),
            },
        ),
        (
            "user.display_name",
            pb::UpdateUserRequest {
                user: Some(user("", "")),
                update_mask: mask(&["display_name"]),
            },
        ),
        (
            "user.email",
            pb::UpdateUserRequest {
                user: Some(user("", "nobody")),
                update_mask: None,
            },
        ),
    ];
    for (field, request) in cases {
        let status = owner.update_user(request).await.expect_err(field);
        assert_invalid_field(&status, field);
    }

    let status = owner
        .update_user(pb::UpdateUserRequest {
            user: Some(pb::User {
                id: new_id(),
                display_name: "Ghost".into(),
                ..Default::default()
            }),
            update_mask: None,
        })
        .await
        .expect_err("unknown user");
    assert_eq!(status.code(), Code::NotFound, "{status:?}");

    let stored = get_user(&mut owner, &member.id).await.expect("member");
    assert_eq!(stored.display_name, member.display_name);
    assert_eq!(stored.email, member.email);
    assert!(
        audit_metadata(&test, &tenant.id, "user.updated")
            .await
            .is_empty()
    );
    test.stop().await;
}

async fn role_change_and_last_owner(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    let tenant = TestTenant::create(&test, "acme").await;
    let mut owner = tenant.owner_client(&test);
    let member = create_user(&mut owner, "member@example.com", pb::Role::Member).await;

    let promoted = set_role(&mut owner, &member.id, pb::Role::Admin)
        .await
        .expect("promote");
    assert_eq!(promoted.role(), pb::Role::Admin);
    let entries = audit_metadata(&test, &tenant.id, "user.role_changed").await;
    assert_eq!(entries.len(), 1);
    assert!(
        entries[0].contains("\"old_role\":\"member\""),
        "{entries:?}"
    );
    assert!(entries[0].contains("\"new_role\":\"admin\""), "{entries:?}");

    let status = set_role(&mut owner, &member.id, pb::Role::Unspecified)
        .await
        .expect_err("the role is required");
    assert_invalid_field(&status, "role");

    let status = set_role(&mut owner, &tenant.owner_id, pb::Role::Admin)
        .await
        .expect_err("the last owner cannot be demoted");
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert_eq!(reason(&status).as_deref(), Some("LAST_OWNER"));
    let still_owner = get_user(&mut owner, &tenant.owner_id).await.expect("owner");
    assert_eq!(still_owner.role(), pb::Role::Owner);

    // A second owner who is deactivated does not count.
    set_role(&mut owner, &member.id, pb::Role::Owner)
        .await
        .expect("make a second owner");
    deactivate(&mut owner, &member.id)
        .await
        .expect("deactivate the second owner");
    let status = set_role(&mut owner, &tenant.owner_id, pb::Role::Member)
        .await
        .expect_err("the only active owner cannot be demoted");
    assert_eq!(reason(&status).as_deref(), Some("LAST_OWNER"));

    reactivate(&mut owner, &member.id)
        .await
        .expect("reactivate the second owner");
    let demoted = set_role(&mut owner, &tenant.owner_id, pb::Role::Admin)
        .await
        .expect("demote with another active owner");
    assert_eq!(demoted.role(), pb::Role::Admin);
    assert_eq!(
        list_all(&mut owner, pb::Role::Owner, Some(true))
            .await
            .len(),
        1
    );
    assert_eq!(
        audit_metadata(&test, &tenant.id, "user.role_changed")
            .await
            .len(),
        3
    );
    test.stop().await;
}

async fn deactivate_and_reactivate(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    let tenant = TestTenant::create(&test, "acme").await;
    let mut owner = tenant.owner_client(&test);
    let member = create_user(&mut owner, "member@example.com", pb::Role::Member).await;
    let session = insert_refresh_token(&test, &tenant.id, &member.id).await;
    let owner_session = insert_refresh_token(&test, &tenant.id, &tenant.owner_id).await;

    let deactivated = deactivate(&mut owner, &member.id)
        .await
        .expect("deactivate");
    assert!(!deactivated.active);
    assert!(refresh_token_revoked_at(&test, &session).await.is_some());
    assert!(
        refresh_token_revoked_at(&test, &owner_session)
            .await
            .is_none()
    );
    let again = deactivate(&mut owner, &member.id)
        .await
        .expect("deactivating twice changes nothing");
    assert!(!again.active);
    assert_eq!(
        audit_metadata(&test, &tenant.id, "user.deactivated")
            .await
            .len(),
        1
    );

    let status = deactivate(&mut owner, &tenant.owner_id)
        .await
        .expect_err("the last owner cannot be deactivated");
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert_eq!(reason(&status).as_deref(), Some("LAST_OWNER"));
    assert!(
        refresh_token_revoked_at(&test, &owner_session)
            .await
            .is_none()
    );

    let reactivated = reactivate(&mut owner, &member.id)
        .await
        .expect("reactivate");
    assert!(reactivated.active);
    let again = reactivate(&mut owner, &member.id)
        .await
        .expect("reactivating twice changes nothing");
    assert!(again.active);
    assert_eq!(
        audit_metadata(&test, &tenant.id, "user.reactivated")
            .await
            .len(),
        1
    );
    let status = deactivate(&mut owner, "")
        .await
        .expect_err("the id is required");
    assert_invalid_field(&status, "id");
    test.stop().await;
}

async fn change_password_own_and_others(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    let tenant = TestTenant::create(&test, "acme").await;
    let mut owner = tenant.owner_client(&test);
    let member = create_user(&mut owner, "member@example.com", pb::Role::Member).await;
    let viewer = create_user(&mut owner, "viewer@example.com", pb::Role::Viewer).await;
    let session = insert_refresh_token(&test, &tenant.id, &tenant.owner_id).await;

    let status = change_password(&mut owner, "", "not the password", NEW_PASSWORD)
        .await
        .expect_err("wrong current password");
    assert_invalid_field(&status, "current_password");
    let status = change_password(&mut owner, "", "", NEW_PASSWORD)
        .await
        .expect_err("missing current password");
    assert_invalid_field(&status, "current_password");
    let status = change_password(&mut owner, "", OWNER_PASSWORD, "short")
        .await
        .expect_err("short new password");
    assert_invalid_field(&status, "new_password");
    let (hash, failures, _) = password_state(&test, &tenant.id, &tenant.owner_id).await;
    assert!(password_matches(hash, OWNER_PASSWORD).await);
    assert_eq!(failures, 1);
    assert!(refresh_token_revoked_at(&test, &session).await.is_none());

    change_password(&mut owner, "", OWNER_PASSWORD, NEW_PASSWORD)
        .await
        .expect("own password with the right current one");
    let (hash, failures, _) = password_state(&test, &tenant.id, &tenant.owner_id).await;
    assert!(password_matches(hash.clone(), NEW_PASSWORD).await);
    assert!(!password_matches(hash, OWNER_PASSWORD).await);
    assert_eq!(failures, 0);
    assert!(refresh_token_revoked_at(&test, &session).await.is_some());

    let status = change_password(
        &mut tenant.owner_key_client(&test),
        "",
        NEW_PASSWORD,
        "yet another passphrase",
    )
    .await
    .expect_err("API keys cannot change passwords");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert_eq!(reason(&status).as_deref(), Some("API_KEY_NOT_ALLOWED"));

    // A user without a password sets the first one without a current password.
    let mut as_member = tenant.client_as(&test, &member);
    change_password(&mut as_member, "", "", "the first passphrase")
        .await
        .expect("first password");
    let (hash, _, _) = password_state(&test, &tenant.id, &member.id).await;
    assert!(password_matches(hash, "the first passphrase").await);

    let status = change_password(&mut as_member, &viewer.id, "", NEW_PASSWORD)
        .await
        .expect_err("a member cannot set another user's password");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");

    change_password(&mut owner, &member.id, "ignored", "set by the owner")
        .await
        .expect("an owner sets another user's password");
    let (hash, _, _) = password_state(&test, &tenant.id, &member.id).await;
    assert!(password_matches(hash, "set by the owner").await);

    let entries = audit_metadata(&test, &tenant.id, "user.password_changed").await;
    assert_eq!(entries.len(), 3, "{entries:?}");
    for metadata in &entries {
        assert!(!metadata.contains("passphrase"), "{metadata}");
        assert!(!metadata.contains("owner"), "{metadata}");
    }
    test.stop().await;
}

async fn wrong_passwords_lock_account(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    let tenant = TestTenant::create(&test, "acme").await;
    let mut owner = tenant.owner_client(&test);

    // The default settings lock an account after 5 failures in a row.
    for attempt in 1..=5 {
        let status = change_password(&mut owner, "", "a wrong passphrase", NEW_PASSWORD)
            .await
            .expect_err("wrong current password");
        assert_invalid_field(&status, "current_password");
        let (_, failures, locked_until) = password_state(&test, &tenant.id, &tenant.owner_id).await;
        assert_eq!(failures, attempt);
        assert_eq!(locked_until.is_some(), attempt == 5, "attempt {attempt}");
    }

    let status = change_password(&mut owner, "", OWNER_PASSWORD, NEW_PASSWORD)
        .await
        .expect_err("a locked account rejects even the right password");
    assert_invalid_field(&status, "current_password");
    let (hash, _, _) = password_state(&test, &tenant.id, &tenant.owner_id).await;
    assert!(password_matches(hash, OWNER_PASSWORD).await);

    let entries = audit_metadata(&test, &tenant.id, "user.password_change_failed").await;
    assert_eq!(entries.len(), 6, "{entries:?}");
    assert!(
        entries.iter().any(|m| m.contains("account_locked")),
        "{entries:?}"
    );
    test.stop().await;
}

async fn verification_token_single_use(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    let tenant = TestTenant::create(&test, "acme").await;
    let mut owner = tenant.owner_key_client(&test);
    let member = create_user(&mut owner, "member@example.com", pb::Role::Member).await;
    let mut as_member = tenant.client_as(&test, &member);

    let status = send_verification(&mut as_member, &member.id)
        .await
        .expect_err("members cannot issue their own tokens");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");

    let before = chrono::Utc::now().timestamp();
    let sent = send_verification(&mut owner, &member.id)
        .await
        .expect("send");
    assert_eq!(sent.verification_token.len(), 43);
    let expires = sent.expire_time.expect("expire time").seconds;
    let day = 24 * 60 * 60;
    assert!(
        (before + day - 5..=before + day + 5).contains(&expires),
        "{expires}"
    );

    let verified = verify_email(&mut as_member, &sent.verification_token)
        .await
        .expect("verify");
    assert!(verified.email_verified);
    assert!(verified.email_verify_time.is_some());
    assert_eq!(verified.id, member.id);
    let stored = get_user(&mut owner, &member.id).await.expect("get");
    assert!(stored.email_verified);

    let status = verify_email(&mut as_member, &sent.verification_token)
        .await
        .expect_err("a token works once");
    assert_invalid_field(&status, "token");
    let status = send_verification(&mut owner, &member.id)
        .await
        .expect_err("already verified");
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert_eq!(reason(&status).as_deref(), Some("EMAIL_ALREADY_VERIFIED"));

    let status = verify_email(&mut as_member, "")
        .await
        .expect_err("empty token");
    assert_invalid_field(&status, "token");
    let status = verify_email(&mut as_member, "made-up-token")
        .await
        .expect_err("unknown token");
    assert_invalid_field(&status, "token");

    assert_eq!(
        audit_metadata(&test, &tenant.id, "user.verification_sent")
            .await
            .len(),
        1
    );
    assert_eq!(
        audit_metadata(&test, &tenant.id, "user.email_verified")
            .await
            .len(),
        1
    );
    test.stop().await;
}

async fn verification_rejects_foreign_tokens(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    let tenant = TestTenant::create(&test, "acme").await;
    let other = TestTenant::create(&test, "other").await;
    let mut owner = tenant.owner_key_client(&test);
    let mut other_owner = other.owner_key_client(&test);
    let member = create_user(&mut owner, "member@example.com", pb::Role::Member).await;

    // A token of tenant A is unknown in tenant B and stays usable in A.
    let token = send_verification(&mut owner, &member.id)
        .await
        .expect("send")
        .verification_token;
    let status = verify_email(&mut other_owner, &token)
        .await
        .expect_err("a token of another tenant");
    assert_invalid_field(&status, "token");
    let stored = get_user(&mut owner, &member.id).await.expect("get");
    assert!(!stored.email_verified);

    // A token issued before an email change no longer verifies anything.
    owner
        .update_user(pb::UpdateUserRequest {
            user: Some(pb::User {
                id: member.id.clone(),
                email: "moved@example.com".into(),
                ..Default::default()
            }),
            update_mask: None,
        })
        .await
        .expect("change email");
    let status = verify_email(&mut owner, &token)
        .await
        .expect_err("the email changed");
    assert_invalid_field(&status, "token");

    // An expired token is rejected.
    let fresh = send_verification(&mut owner, &member.id)
        .await
        .expect("send again")
        .verification_token;
    {
        use ally::schema::email_verifications;
        let mut conn = test.server.database().write().await.expect("connection");
        diesel::update(
            email_verifications::table
                .filter(email_verifications::token_hash.eq(ally::auth::secret_token::hash(&fresh))),
        )
        .set(email_verifications::expires_at.eq(now() - TimeDelta::minutes(1)))
        .execute(&mut *conn)
        .await
        .expect("expire token");
    }
    let status = verify_email(&mut owner, &fresh)
        .await
        .expect_err("an expired token");
    assert_invalid_field(&status, "token");
    let stored = get_user(&mut owner, &member.id).await.expect("get");
    assert!(!stored.email_verified);
    test.stop().await;
}

async fn other_tenant_users_not_found(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    let tenant_a = TestTenant::create(&test, "alpha").await;
    let tenant_b = TestTenant::create(&test, "beta").await;
    let mut owner_a = tenant_a.owner_client(&test);
    let mut owner_b = tenant_b.owner_key_client(&test);
    let target = create_user(&mut owner_b, "target@beta.example", pb::Role::Member).await;
    let session = insert_refresh_token(&test, &tenant_b.id, &target.id).await;
    let before = get_user(&mut owner_b, &target.id).await.expect("target");

    let mut results: Vec<(&str, Status)> = Vec::new();
    let id = target.id.clone();
    results.push(("GetUser", get_user(&mut owner_a, &id).await.unwrap_err()));
    results.push((
        "UpdateUser",
        owner_a
            .update_user(pb::UpdateUserRequest {
                user: Some(pb::User {
                    id: id.clone(),
                    display_name: "Hijacked".into(),
                    ..Default::default()
                }),
                update_mask: None,
            })
            .await
            .unwrap_err(),
    ));
    results.push((
        "UpdateUserRole",
        set_role(&mut owner_a, &id, pb::Role::Viewer)
            .await
            .unwrap_err(),
    ));
    results.push((
        "DeactivateUser",
        deactivate(&mut owner_a, &id).await.unwrap_err(),
    ));
    results.push((
        "ReactivateUser",
        reactivate(&mut owner_a, &id).await.unwrap_err(),
    ));
    results.push((
        "ChangePassword",
        change_password(&mut owner_a, &id, "", NEW_PASSWORD)
            .await
            .unwrap_err(),
    ));
    results.push((
        "SendVerification",
        send_verification(&mut owner_a, &id).await.unwrap_err(),
    ));
    for (rpc, status) in results {
        assert_eq!(status.code(), Code::NotFound, "{rpc}: {status:?}");
    }

    let after = get_user(&mut owner_b, &target.id).await.expect("target");
    assert_eq!(after, before);
    let (hash, _, _) = password_state(&test, &tenant_b.id, &target.id).await;
    assert!(hash.is_none(), "the password was set");
    assert!(refresh_token_revoked_at(&test, &session).await.is_none());
    let listed_a = list_all(&mut owner_a, pb::Role::Unspecified, None).await;
    assert!(listed_a.iter().all(|user| user.id != target.id));
    test.stop().await;
}

async fn list_filters_and_pages(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    let tenant = TestTenant::create(&test, "acme").await;
    let other = TestTenant::create(&test, "other").await;
    let mut owner = tenant.owner_key_client(&test);
    let mut other_owner = other.owner_key_client(&test);
    create_user(&mut other_owner, "stranger@other.example", pb::Role::Admin).await;
    let admin = create_user(&mut owner, "admin@example.com", pb::Role::Admin).await;
    let member_one = create_user(&mut owner, "m1@example.com", pb::Role::Member).await;
    let member_two = create_user(&mut owner, "m2@example.com", pb::Role::Member).await;
    let viewer = create_user(&mut owner, "viewer@example.com", pb::Role::Viewer).await;
    deactivate(&mut owner, &member_two.id)
        .await
        .expect("deactivate");

    let everyone = list_all(&mut owner, pb::Role::Unspecified, None).await;
    let ids: Vec<&str> = everyone.iter().map(|u| u.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            tenant.owner_id.as_str(),
            admin.id.as_str(),
            member_one.id.as_str(),
            member_two.id.as_str(),
            viewer.id.as_str(),
        ]
    );
    assert_eq!(list_all(&mut owner, pb::Role::Member, None).await.len(), 2);
    assert_eq!(list_all(&mut owner, pb::Role::Admin, None).await.len(), 1);
    assert_eq!(list_all(&mut owner, pb::Role::Owner, None).await.len(), 1);
    assert_eq!(
        list_all(&mut owner, pb::Role::Unspecified, Some(true))
            .await
            .len(),
        4
    );
    let inactive = list_all(&mut owner, pb::Role::Unspecified, Some(false)).await;
    assert_eq!(inactive.len(), 1);
    assert_eq!(inactive[0].id, member_two.id);
    assert_eq!(
        list_all(&mut owner, pb::Role::Member, Some(true))
            .await
            .len(),
        1
    );
    assert_eq!(
        list_all(&mut other_owner, pb::Role::Unspecified, None)
            .await
            .len(),
        2
    );

    let mut seen = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = owner
            .list_users(pb::ListUsersRequest {
                page_size: 2,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .expect("page")
            .into_inner();
        pages += 1;
        assert!(page.users.len() <= 2);
        seen.extend(page.users.into_iter().map(|u| u.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, ids);

    let first = owner
        .list_users(pb::ListUsersRequest {
            page_size: 2,
            ..Default::default()
        })
        .await
        .expect("first page")
        .into_inner();
    let status = owner
        .list_users(pb::ListUsersRequest {
            page_size: 2,
            page_token: first.next_page_token,
            role: pb::Role::Member.into(),
            ..Default::default()
        })
        .await
        .expect_err("a token with other filters");
    assert_invalid_field(&status, "page_token");
    let status = owner
        .list_users(pb::ListUsersRequest {
            page_size: -1,
            ..Default::default()
        })
        .await
        .expect_err("negative page size");
    assert_invalid_field(&status, "page_size");
    let status = owner
        .list_users(pb::ListUsersRequest {
            role: 12,
            ..Default::default()
        })
        .await
        .expect_err("unknown role");
    assert_invalid_field(&status, "role");
    test.stop().await;
}

async fn concurrent_changes_keep_limits(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    let tenant = TestTenant::create(&test, "acme").await;
    let mut owner = tenant.owner_client(&test);
    let second = create_user(&mut owner, "second@example.com", pb::Role::Owner).await;
    let mut as_second = tenant.client_as(&test, &second);

    // Two owners demote each other at once: one call must fail, so an owner remains.
    let (first_result, second_result) = tokio::join!(
        set_role(&mut owner, &second.id, pb::Role::Admin),
        set_role(&mut as_second, &tenant.owner_id, pb::Role::Admin),
    );
    let failures: Vec<Status> = [first_result, second_result]
        .into_iter()
        .filter_map(Result::err)
        .collect();
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(reason(&failures[0]).as_deref(), Some("LAST_OWNER"));
    assert_eq!(
        list_all(&mut owner, pb::Role::Owner, Some(true))
            .await
            .len(),
        1
    );

    // Four creates race for the three places left on the free plan.
    let mut clients: Vec<Client> = (0..4).map(|_| tenant.owner_key_client(&test)).collect();
    let calls = clients.iter_mut().enumerate().map(|(index, client)| {
        client.create_user(create_request(
            &format!("racer{index}@example.com"),
            pb::Role::Viewer,
        ))
    });
    let results = futures_util::future::join_all(calls).await;
    let created = results.iter().filter(|result| result.is_ok()).count();
    assert_eq!(created, 3, "{results:?}");
    for status in results.iter().filter_map(|result| result.as_ref().err()) {
        assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    }
    assert_eq!(
        list_all(&mut owner, pb::Role::Unspecified, Some(true))
            .await
            .len(),
        5
    );
    test.stop().await;
}

async fn settings_change_lockout_and_lifetime(backend: TestBackend) {
    let test = TestServer::start_with(backend, |settings| {
        settings.auth.max_failed_logins = 0;
        settings.auth.email_verification_ttl = std::time::Duration::from_secs(60 * 60);
    })
    .await;
    let tenant = TestTenant::create(&test, "acme").await;
    let mut owner = tenant.owner_client(&test);

    // A maximum of 0 failed logins turns locking off.
    for _ in 0..6 {
        let status = change_password(&mut owner, "", "a wrong passphrase", NEW_PASSWORD)
            .await
            .expect_err("wrong current password");
        assert_invalid_field(&status, "current_password");
    }
    let (_, failures, locked_until) = password_state(&test, &tenant.id, &tenant.owner_id).await;
    assert_eq!(failures, 6);
    assert!(locked_until.is_none());
    change_password(&mut owner, "", OWNER_PASSWORD, NEW_PASSWORD)
        .await
        .expect("the right password still works");

    let before = chrono::Utc::now().timestamp();
    let sent = send_verification(&mut owner, &tenant.owner_id)
        .await
        .expect("send");
    let expires = sent.expire_time.expect("expire time").seconds;
    let hour = 60 * 60;
    assert!(
        (before + hour - 5..=before + hour + 5).contains(&expires),
        "{expires}"
    );
    test.stop().await;
}
