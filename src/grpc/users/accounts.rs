//! CreateUser, GetUser, ListUsers and UpdateUser.

use chrono::NaiveDateTime;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel_async::AsyncConnection;
use secrecy::SecretString;

use super::rules;
use super::{Caller, UserApi, check_user_quota, load_user, stored_role};
use crate::audit::{self, AuditEvent};
use crate::auth::{RequestContext, Role, password};
use crate::db::DbConnection;
use crate::db::retry::with_retry;
use crate::grpc::resources::user_to_proto;
use crate::grpc::{ApiError, paging, validate};
use crate::models::{self, User};
use crate::proto::ally::v1 as pb;
use crate::repo;
use crate::repo::users::UserFilter;

/// Method name under which CreateUser stores its request ids.
const CREATE_METHOD: &str = "CreateUser";
/// Maximum length of a display name, in characters.
const MAX_DISPLAY_NAME_CHARS: usize = 255;

/// Validated fields of a CreateUser request.
struct NewUser {
    email: String,
    display_name: String,
    role: Role,
    password: Option<SecretString>,
    request_id: Option<String>,
}

fn validate_create(request: &pb::CreateUserRequest) -> Result<NewUser, ApiError> {
    let email = validate::email("email", &request.email)?;
    let display_name = validate::text(
        "display_name",
        &request.display_name,
        MAX_DISPLAY_NAME_CHARS,
    )?;
    let role = rules::parse_role("role", request.role)?.unwrap_or(Role::Member);
    let password = match request.password.as_str() {
        "" => None,
        password => Some(validate::new_password("password", password)?),
    };
    let request_id = validate::request_id("request_id", &request.request_id)?;
    Ok(NewUser {
        email,
        display_name,
        role,
        password,
        request_id,
    })
}

/// Loads the user that an earlier CreateUser call with `request_id` created in the tenant.
async fn earlier_user(
    conn: &mut DbConnection,
    tenant_id: &str,
    request_id: &str,
) -> Result<Option<User>, ApiError> {
    let earlier = repo::request_ids::find(conn, tenant_id, CREATE_METHOD, request_id).await?;
    match earlier {
        Some(user_id) => load_user(conn, tenant_id, &user_id).await.map(Some),
        None => Ok(None),
    }
}

/// Turns a unique index violation into ALREADY_EXISTS on the email field. UpdateUser checks the
/// email before writing, so the index fires only when a concurrent call took the email first.
fn email_conflict(error: ApiError, field: &'static str) -> ApiError {
    match error {
        ApiError::Database(DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _)) => {
            ApiError::AlreadyExists {
                resource: "user",
                field,
            }
        }
        other => other,
    }
}

impl UserApi {
    pub(super) async fn create(
        &self,
        context: &RequestContext,
        request: pb::CreateUserRequest,
    ) -> Result<pb::CreateUserResponse, ApiError> {
        let caller = Caller::of(context)?;
        let new = validate_create(&request)?;
        rules::check_may_grant(caller.role, new.role)?;

        if let Some(request_id) = &new.request_id {
            let mut conn = self.database.read().await?;
            if let Some(user) = earlier_user(&mut conn, &caller.tenant_id, request_id).await? {
                return Ok(pb::CreateUserResponse {
                    user: Some(user_to_proto(&user)),
                });
            }
        }

        let password_hash = match new.password.clone() {
            Some(password) => Some(password::hash(password).await.map_err(ApiError::internal)?),
            None => None,
        };
        let now = models::now();
        let user = User {
            tenant_id: caller.tenant_id.clone(),
            id: models::new_id(),
            email: new.email.clone(),
            display_name: new.display_name.clone(),
            password_hash,
            role: new.role.as_str().into(),
            is_active: true,
            email_verified_at: None,
            failed_login_count: 0,
            locked_until: None,
            last_login_at: None,
            created_at: now,
            updated_at: now,
        };
        let request_row = new.request_id.as_ref().map(|request_id| models::RequestId {
            scope: caller.tenant_id.clone(),
            method: CREATE_METHOD.into(),
            request_id: request_id.clone(),
            resource_id: user.id.clone(),
            created_at: now,
        });
        let entry = audit::entry(
            context,
            &caller.tenant_id,
            AuditEvent::change("user.created")
                .resource("user", &user.id)
                .detail("role", new.role.as_str()),
        );

        let created = with_retry(|| async {
            let mut conn = self.database.write().await?;
            conn.transaction(async |conn| {
                repo::tenants::lock_for_update(conn, &user.tenant_id).await?;
                if let Some(request_id) = &new.request_id
                    && let Some(existing) = earlier_user(conn, &user.tenant_id, request_id).await?
                {
                    return Ok(existing);
                }
                if repo::users::find_by_email(conn, &user.tenant_id, &user.email)
                    .await?
                    .is_some()
                {
                    return Err(ApiError::AlreadyExists {
                        resource: "user",
                        field: "email",
                    });
                }
                check_user_quota(conn, &user.tenant_id).await?;
                repo::users::insert(conn, &user).await?;
                if let Some(row) = &request_row {
                    repo::request_ids::insert(conn, row).await?;
                }
                repo::audit::insert(conn, &entry).await?;
                Ok(user.clone())
            })
            .await
        })
        .await
        .map_err(|error| email_conflict(error, "email"))?;

        Ok(pb::CreateUserResponse {
            user: Some(user_to_proto(&created)),
        })
    }

    pub(super) async fn get(
        &self,
        context: &RequestContext,
        request: pb::GetUserRequest,
    ) -> Result<pb::GetUserResponse, ApiError> {
        let caller = Caller::of(context)?;
        let id = caller.user_id_or_self("id", &request.id)?;
        let mut conn = self.database.read().await?;
        let user = load_user(&mut conn, &caller.tenant_id, &id).await?;
        Ok(pb::GetUserResponse {
            user: Some(user_to_proto(&user)),
        })
    }

    pub(super) async fn list(
        &self,
        context: &RequestContext,
        request: pb::ListUsersRequest,
    ) -> Result<pb::ListUsersResponse, ApiError> {
        let caller = Caller::of(context)?;
        let size = paging::page_size(request.page_size)?;
        let role = rules::parse_role("role", request.role)?;
        let filter = UserFilter {
            role: role.map(|role| role.as_str().to_string()),
            active: request.active,
        };
        let fingerprint = paging::fingerprint(&filter);
        let after: Option<(NaiveDateTime, String)> =
            paging::decode(&request.page_token, &fingerprint)?;

        let mut conn = self.database.read().await?;
        let mut rows =
            repo::users::list(&mut conn, &caller.tenant_id, &filter, after, size + 1).await?;
        let more = rows.len() as i64 > size;
        rows.truncate(size as usize);
        let next_page_token = match (more, rows.last()) {
            (true, Some(last)) => paging::encode(&fingerprint, (last.created_at, last.id.clone())),
            _ => String::new(),
        };
        Ok(pb::ListUsersResponse {
            users: rows.iter().map(user_to_proto).collect(),
            next_page_token,
        })
    }

    pub(super) async fn update_profile(
        &self,
        context: &RequestContext,
        request: pb::UpdateUserRequest,
    ) -> Result<pb::UpdateUserResponse, ApiError> {
        let caller = Caller::of(context)?;
        let update = request
            .user
            .ok_or_else(|| ApiError::invalid("user", "is required"))?;
        let id = validate::id("user.id", &update.id)?;
        let fields = rules::profile_fields(request.update_mask.as_ref(), &update)?;
        let display_name = fields
            .display_name
            .then(|| {
                validate::text(
                    "user.display_name",
                    &update.display_name,
                    MAX_DISPLAY_NAME_CHARS,
                )
            })
            .transpose()?;
        let email = fields
            .email
            .then(|| validate::email("user.email", &update.email))
            .transpose()?;
        let own = id == caller.user_id;
        if !own {
            rules::check_may_manage_others(caller.role)?;
        }

        let updated = with_retry(|| async {
            let mut conn = self.database.write().await?;
            conn.transaction(async |conn| {
                let mut user = load_user(conn, &caller.tenant_id, &id).await?;
                if !own {
                    rules::check_may_manage(caller.role, stored_role(&user)?)?;
                }
                let mut changed: Vec<&str> = Vec::new();
                if let Some(name) = &display_name
                    && *name != user.display_name
                {
                    user.display_name = name.clone();
                    changed.push("display_name");
                }
                // Both sides are normalized, so a plain comparison is exact on every backend.
                if let Some(email) = &email
                    && *email != user.email
                {
                    let holder = repo::users::find_by_email(conn, &caller.tenant_id, email).await?;
                    if holder.is_some_and(|holder| holder.id != user.id) {
                        return Err(ApiError::AlreadyExists {
                            resource: "user",
                            field: "user.email",
                        });
                    }
                    user.email = email.clone();
                    user.email_verified_at = None;
                    changed.push("email");
                }
                if changed.is_empty() {
                    return Ok(user);
                }
                user.updated_at = models::now();
                repo::users::update_profile(conn, &user).await?;
                let entry = audit::entry(
                    context,
                    &caller.tenant_id,
                    AuditEvent::change("user.updated")
                        .resource("user", &user.id)
                        .detail("fields", changed),
                );
                repo::audit::insert(conn, &entry).await?;
                Ok(user)
            })
            .await
        })
        .await
        .map_err(|error| email_conflict(error, "user.email"))?;

        Ok(pb::UpdateUserResponse {
            user: Some(user_to_proto(&updated)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> pb::CreateUserRequest {
        pb::CreateUserRequest {
            email: " Ada@Example.COM ".into(),
            display_name: " Ada ".into(),
            role: 0,
            password: String::new(),
            request_id: String::new(),
        }
    }

    #[test]
    fn create_defaults_and_normalizes() {
        let new = validate_create(&request()).unwrap();

        assert_eq!(new.email, "ada@example.com");
        assert_eq!(new.display_name, "Ada");
        assert_eq!(new.role, Role::Member);
        assert!(new.password.is_none());
        assert!(new.request_id.is_none());
    }

    #[test]
    fn create_names_invalid_fields() {
        let cases = [
            (
                "email",
                pb::CreateUserRequest {
                    email: "nobody".into(),
                    ..request()
                },
            ),
            (
                "display_name",
                pb::CreateUserRequest {
                    display_name: " ".into(),
                    ..request()
                },
            ),
            (
                "role",
                pb::CreateUserRequest {
                    role: 42,
                    ..request()
                },
            ),
            (
                "password",
                pb::CreateUserRequest {
                    password: "short".into(),
                    ..request()
                },
            ),
            (
                "request_id",
                pb::CreateUserRequest {
                    request_id: "has space".into(),
                    ..request()
                },
            ),
        ];
        for (field, request) in cases {
            match validate_create(&request) {
                Err(ApiError::InvalidArgument(violations)) => {
                    assert_eq!(violations[0].field, field);
                }
                Err(other) => panic!("{field}: unexpected error {other:?}"),
                Ok(_) => panic!("{field}: accepted"),
            }
        }
    }

    #[test]
    fn unique_violation_becomes_already_exists() {
        let violation = ApiError::Database(DieselError::DatabaseError(
            DatabaseErrorKind::UniqueViolation,
            Box::new("duplicate".to_string()),
        ));

        assert!(matches!(
            email_conflict(violation, "user.email"),
            ApiError::AlreadyExists {
                field: "user.email",
                ..
            }
        ));
        assert!(matches!(
            email_conflict(ApiError::NotFound { resource: "user" }, "email"),
            ApiError::NotFound { .. }
        ));
    }
}
