//! `ally.v1.AuthService`: password login, refresh token rotation and logout.
//!
//! Refresh tokens are random secrets stored as SHA-256 hashes. Refresh marks the presented token
//! as used and issues its successor in the same family. A used token that comes back can only be
//! a copy, so the whole family is revoked and every holder has to log in again.
//!
//! Every failed login returns the same error and costs one argon2 verification, whether or not
//! the tenant, the user or a password hash exists.

use std::sync::Arc;
use std::time::Duration;

use chrono::{NaiveDate, NaiveDateTime, TimeDelta};
use diesel_async::AsyncConnection;
use secrecy::SecretString;
use tonic::{Request, Response, Status};
use tracing::{info, warn};

use super::resources::user_to_proto;
use super::{ApiError, context, validate};
use crate::audit::{self, AuditEvent, Severity};
use crate::auth::jwt::TokenKeys;
use crate::auth::password::{self, MAX_PASSWORD_BYTES};
use crate::auth::{Principal, RequestContext, Role, secret_token};
use crate::config::AuthSettings;
use crate::db::retry::with_retry;
use crate::db::{Database, DbConnection};
use crate::models::{self, RefreshToken, Tenant, User};
use crate::proto::ally::v1 as pb;
use crate::proto::ally::v1::auth_service_server::AuthService;
use crate::repo;

/// Consecutive failed logins of one account that get an immediate response.
const UNDELAYED_FAILURES: i32 = 2;
/// Most (tenant, email) pairs whose failed logins are counted in memory; the oldest are
/// forgotten first.
const FAILURE_TRACKING_CAPACITY: u64 = 100_000;
/// Delay added for each consecutive failure beyond [`UNDELAYED_FAILURES`].
const FAILURE_DELAY_STEP: Duration = Duration::from_millis(200);
/// Maximum delay of a failed login response.
const MAX_FAILURE_DELAY: Duration = Duration::from_secs(2);
/// Maximum length of an accepted refresh token. Issued tokens are 43 characters.
const MAX_REFRESH_TOKEN_BYTES: usize = 256;
/// Authorization scheme of issued access tokens.
const TOKEN_TYPE: &str = "Bearer";

/// Builds the one error every failed login returns, so that a caller learns nothing about which
/// part was wrong.
fn invalid_credentials() -> ApiError {
    ApiError::unauthenticated("INVALID_CREDENTIALS", "invalid email or password")
}

/// Builds the one error every rejected refresh token returns.
fn invalid_refresh_token() -> ApiError {
    ApiError::unauthenticated(
        "INVALID_REFRESH_TOKEN",
        "the refresh token is invalid, expired or revoked; log in again",
    )
}

/// Reason of a failed login, for the audit trail and the logs but never for the response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LoginFailure {
    UnknownTenant,
    TenantDeleted,
    UnknownEmail,
    UserDeactivated,
    NoPassword,
    AccountLocked,
    WrongPassword,
    TenantSuspended,
}

impl LoginFailure {
    fn as_str(self) -> &'static str {
        match self {
            LoginFailure::UnknownTenant => "unknown_tenant",
            LoginFailure::TenantDeleted => "tenant_deleted",
            LoginFailure::UnknownEmail => "unknown_email",
            LoginFailure::UserDeactivated => "user_deactivated",
            LoginFailure::NoPassword => "no_password",
            LoginFailure::AccountLocked => "account_locked",
            LoginFailure::WrongPassword => "wrong_password",
            LoginFailure::TenantSuspended => "tenant_suspended",
        }
    }

    /// Returns whether the failure counts towards the user's lockout. A suspended tenant does
    /// not count, because the password was right.
    fn counts_towards_lockout(self) -> bool {
        !matches!(self, LoginFailure::TenantSuspended)
    }
}

/// Decides whether `user` may log in, given whether the presented password matched its hash.
fn check_user(user: &User, password_matches: bool, now: NaiveDateTime) -> Result<(), LoginFailure> {
    if !user.is_active {
        return Err(LoginFailure::UserDeactivated);
    }
    if user.password_hash.is_none() {
        return Err(LoginFailure::NoPassword);
    }
    if user.locked_until.is_some_and(|until| until > now) {
        return Err(LoginFailure::AccountLocked);
    }
    if !password_matches {
        return Err(LoginFailure::WrongPassword);
    }
    Ok(())
}

/// Returns how long to hold back the response to the `failures`-th consecutive failed login:
/// nothing for the first two, then 200 ms more for each further one, at most 2 s.
fn failure_delay(failures: i32) -> Duration {
    let beyond = failures.saturating_sub(UNDELAYED_FAILURES);
    if beyond <= 0 {
        return Duration::ZERO;
    }
    FAILURE_DELAY_STEP
        .saturating_mul(beyond.unsigned_abs())
        .min(MAX_FAILURE_DELAY)
}

/// Returns `now + duration`, capped at the last second both backends can store.
fn expiry(now: NaiveDateTime, duration: Duration) -> NaiveDateTime {
    let latest = NaiveDate::from_ymd_opt(9999, 12, 31)
        .and_then(|day| day.and_hms_opt(23, 59, 59))
        .unwrap_or(NaiveDateTime::MAX);
    TimeDelta::from_std(duration)
        .ok()
        .and_then(|delta| now.checked_add_signed(delta))
        .map_or(latest, |time| time.min(latest))
}

/// The tenant a login names.
#[derive(Clone, Debug, PartialEq, Eq)]
enum TenantLookup {
    Id(String),
    Subdomain(String),
    Domain(String),
}

/// Validated fields of a LoginRequest.
struct LoginInput {
    tenant: TenantLookup,
    email: String,
    password: SecretString,
}

fn validate_login(request: pb::LoginRequest) -> Result<LoginInput, ApiError> {
    use pb::login_request::Tenant as Choice;

    let tenant = match &request.tenant {
        Some(Choice::TenantId(id)) => TenantLookup::Id(validate::id("tenant_id", id)?),
        Some(Choice::TenantDomain(host)) if host.contains('.') => {
            validate::domain("tenant_domain", host)?
                .map(TenantLookup::Domain)
                .ok_or_else(|| ApiError::invalid("tenant_domain", "is required"))?
        }
        Some(Choice::TenantDomain(label)) => validate::subdomain("tenant_domain", label)?
            .map(TenantLookup::Subdomain)
            .ok_or_else(|| ApiError::invalid("tenant_domain", "is required"))?,
        None => {
            return Err(ApiError::invalid(
                "tenant",
                "set tenant_id or tenant_domain",
            ));
        }
    };
    let email = validate::email("email", &request.email)?;
    if request.password.is_empty() {
        return Err(ApiError::invalid("password", "is required"));
    }
    if request.password.len() > MAX_PASSWORD_BYTES {
        return Err(ApiError::invalid(
            "password",
            format!("must be at most {MAX_PASSWORD_BYTES} bytes"),
        ));
    }
    Ok(LoginInput {
        tenant,
        email,
        password: SecretString::from(request.password),
    })
}

fn validate_refresh_token(value: &str) -> Result<&str, ApiError> {
    if value.is_empty() {
        return Err(ApiError::invalid("refresh_token", "is required"));
    }
    if value.len() > MAX_REFRESH_TOKEN_BYTES {
        return Err(ApiError::invalid(
            "refresh_token",
            format!("must be at most {MAX_REFRESH_TOKEN_BYTES} bytes"),
        ));
    }
    Ok(value)
}

/// Returns `context` with `user_id` of `tenant_id` as the actor, for audit entries of calls in
/// which a password or refresh token proved who the caller is.
fn acting_user(context: &RequestContext, tenant_id: &str, user_id: &str) -> RequestContext {
    RequestContext {
        tenant_id: Some(tenant_id.to_string()),
        principal: Some(Principal::User {
            user_id: user_id.to_string(),
        }),
        ..context.clone()
    }
}

/// An access token and a refresh token issued together.
struct IssuedTokens {
    access_token: String,
    access_token_expire_time: prost_types::Timestamp,
    refresh_token: String,
    refresh_token_expire_time: prost_types::Timestamp,
}

/// Outcome of Refresh for a presented token.
enum Exchange {
    Issued(IssuedTokens, Box<User>),
    /// The token had already been exchanged, and its family is now revoked.
    Reused,
}

fn password_error(error: password::PasswordError) -> ApiError {
    ApiError::internal(error)
}

/// The AuthService handlers.
#[derive(Clone)]
pub struct AuthApi {
    database: Database,
    tokens: Arc<TokenKeys>,
    settings: AuthSettings,
    /// Consecutive failed logins per (tenant, email), existing account or not, so that the
    /// delay they cause does not tell which emails have accounts.
    failures: moka::sync::Cache<(String, String), i32>,
}

impl AuthApi {
    pub fn new(database: Database, tokens: Arc<TokenKeys>, settings: AuthSettings) -> AuthApi {
        let failures = moka::sync::Cache::builder()
            .max_capacity(FAILURE_TRACKING_CAPACITY)
            .time_to_idle(settings.lockout.max(Duration::from_secs(60)))
            .build();
        AuthApi {
            database,
            tokens,
            settings,
            failures,
        }
    }

    async fn find_tenant(&self, lookup: &TenantLookup) -> Result<Option<Tenant>, ApiError> {
        let mut conn = self.database.read().await?;
        let tenant = match lookup {
            TenantLookup::Id(id) => repo::tenants::find(&mut conn, id).await?,
            TenantLookup::Subdomain(label) => {
                repo::tenants::find_by_host(&mut conn, None, Some(label)).await?
            }
            TenantLookup::Domain(host) => {
                repo::tenants::find_by_host(&mut conn, Some(host), None).await?
            }
        };
        Ok(tenant)
    }

    async fn login(
        &self,
        context: &RequestContext,
        input: LoginInput,
    ) -> Result<pb::LoginResponse, ApiError> {
        let Some(tenant) = self.find_tenant(&input.tenant).await? else {
            password::verify(input.password, None)
                .await
                .map_err(password_error)?;
            info!(
                request.id = %context.request_id,
                tenant = ?input.tenant,
                reason = LoginFailure::UnknownTenant.as_str(),
                "login failed"
            );
            return Err(invalid_credentials());
        };
        if tenant.deleted_at.is_some() {
            password::verify(input.password, None)
                .await
                .map_err(password_error)?;
            self.record_failure(
                context,
                &tenant.id,
                &input.email,
                None,
                LoginFailure::TenantDeleted,
            )
            .await?;
            return Err(invalid_credentials());
        }

        let user = {
            let mut conn = self.database.read().await?;
            repo::users::find_by_email(&mut conn, &tenant.id, &input.email).await?
        };
        let Some(user) = user else {
            password::verify(input.password, None)
                .await
                .map_err(password_error)?;
            self.record_failure(
                context,
                &tenant.id,
                &input.email,
                None,
                LoginFailure::UnknownEmail,
            )
            .await?;
            return Err(invalid_credentials());
        };

        let password_matches = password::verify(input.password, user.password_hash.clone())
            .await
            .map_err(password_error)?;
        if let Err(failure) = check_user(&user, password_matches, models::now()) {
            // The response delay comes from the throttle in the handler, which counts unknown
            // emails too; the stored count only decides the lock.
            self.record_failure(context, &tenant.id, &input.email, Some(&user.id), failure)
                .await?;
            return Err(invalid_credentials());
        }
        if tenant.status == "suspended" {
            self.record_failure(
                context,
                &tenant.id,
                &input.email,
                Some(&user.id),
                LoginFailure::TenantSuspended,
            )
            .await?;
            return Err(ApiError::TenantSuspended {
                reason: tenant.suspended_reason.clone().unwrap_or_default(),
            });
        }
        self.complete_login(context, user).await
    }

    /// Writes the audit entry of a failed login and, for a known user, counts the failure and
    /// locks the account once the count reaches `auth.max_failed_logins`, all in one
    /// transaction. Returns the user's consecutive failures, or 0 when none were counted.
    async fn record_failure(
        &self,
        context: &RequestContext,
        tenant_id: &str,
        email: &str,
        user_id: Option<&str>,
        failure: LoginFailure,
    ) -> Result<i32, ApiError> {
        info!(
            request.id = %context.request_id,
            tenant.id = %tenant_id,
            user.id = user_id.unwrap_or(""),
            reason = failure.as_str(),
            "login failed"
        );
        let counted_user = user_id.filter(|_| failure.counts_towards_lockout());
        let max_failures = i32::try_from(self.settings.max_failed_logins).unwrap_or(i32::MAX);

        with_retry(|| async {
            let mut conn = self.database.write().await?;
            conn.transaction(async |conn| {
                let mut event = AuditEvent::security("auth.login_failed")
                    .detail("reason", failure.as_str())
                    .detail("email", email);
                if let Some(user_id) = user_id {
                    event = event.resource("user", user_id);
                }
                let mut failures = 0;
                let mut lock_event = None;
                if let Some(user_id) = counted_user {
                    let now = models::now();
                    let (count, locked_until) =
                        repo::users::record_failed_login(conn, tenant_id, user_id, now).await?;
                    failures = count;
                    event = event.detail("failed_logins", count);
                    // A max of 0 turns locking off.
                    if locked_until.is_none() && max_failures > 0 && count >= max_failures {
                        let until = expiry(now, self.settings.lockout);
                        repo::users::lock_login(conn, tenant_id, user_id, until).await?;
                        lock_event = Some(
                            AuditEvent::security("auth.account_locked")
                                .resource("user", user_id)
                                .detail("failed_logins", count)
                                .detail("locked_until", until.and_utc().to_rfc3339()),
                        );
                    }
                }
                repo::audit::insert(conn, &audit::entry(context, tenant_id, event)).await?;
                if let Some(lock_event) = lock_event {
                    warn!(
                        request.id = %context.request_id,
                        tenant.id = %tenant_id,
                        user.id = counted_user.unwrap_or(""),
                        failures,
                        "account locked after repeated failed logins"
                    );
                    repo::audit::insert(conn, &audit::entry(context, tenant_id, lock_event))
                        .await?;
                }
                Ok::<_, ApiError>(failures)
            })
            .await
        })
        .await
    }

    /// Records the login and issues the tokens of a new family.
    async fn complete_login(
        &self,
        context: &RequestContext,
        user: User,
    ) -> Result<pb::LoginResponse, ApiError> {
        let actor = acting_user(context, &user.tenant_id, &user.id);
        let (issued, now) = with_retry(|| async {
            let mut conn = self.database.write().await?;
            conn.transaction(async |conn| {
                let now = models::now();
                repo::users::record_login(conn, &user.tenant_id, &user.id, now).await?;
                let family_id = models::new_id();
                let issued = self.issue_tokens(conn, &user, &family_id, now).await?;
                let event = AuditEvent::change("auth.login")
                    .resource("user", &user.id)
                    .detail("family_id", family_id.as_str());
                repo::audit::insert(conn, &audit::entry(&actor, &user.tenant_id, event)).await?;
                Ok::<_, ApiError>((issued, now))
            })
            .await
        })
        .await?;

        let user = User {
            failed_login_count: 0,
            locked_until: None,
            last_login_at: Some(now),
            ..user
        };
        Ok(pb::LoginResponse {
            access_token: issued.access_token,
            access_token_expire_time: Some(issued.access_token_expire_time),
            refresh_token: issued.refresh_token,
            refresh_token_expire_time: Some(issued.refresh_token_expire_time),
            token_type: TOKEN_TYPE.into(),
            user: Some(user_to_proto(&user)),
        })
    }

    /// Stores a new refresh token of `family_id` for `user` and signs an access token with the
    /// user's role as stored.
    async fn issue_tokens(
        &self,
        conn: &mut DbConnection,
        user: &User,
        family_id: &str,
        now: NaiveDateTime,
    ) -> Result<IssuedTokens, ApiError> {
        let role = Role::parse(&user.role).ok_or_else(|| {
            ApiError::internal(format!(
                "user {} of tenant {} has the unknown role {:?}",
                user.id, user.tenant_id, user.role
            ))
        })?;
        let (access_token, claims) = self
            .tokens
            .issue(&user.id, Some(&user.tenant_id), role.as_str())
            .map_err(ApiError::internal)?;

        let refresh_token = secret_token::generate();
        let row = RefreshToken {
            tenant_id: user.tenant_id.clone(),
            id: models::new_id(),
            user_id: user.id.clone(),
            family_id: family_id.to_string(),
            token_hash: secret_token::hash(&refresh_token),
            expires_at: expiry(now, self.settings.refresh_token_ttl),
            used_at: None,
            revoked_at: None,
            created_at: now,
        };
        repo::refresh_tokens::insert(conn, &row).await?;

        Ok(IssuedTokens {
            access_token,
            access_token_expire_time: prost_types::Timestamp {
                seconds: claims.exp,
                nanos: 0,
            },
            refresh_token,
            refresh_token_expire_time: super::convert::timestamp(row.expires_at),
        })
    }

    async fn refresh(
        &self,
        context: &RequestContext,
        token: &str,
    ) -> Result<pb::RefreshResponse, ApiError> {
        let token_hash = secret_token::hash(token);
        let exchange = with_retry(|| async {
            let mut conn = self.database.write().await?;
            conn.transaction(async |conn| self.exchange(conn, context, &token_hash).await)
                .await
        })
        .await?;

        match exchange {
            Exchange::Issued(issued, user) => Ok(pb::RefreshResponse {
                access_token: issued.access_token,
                access_token_expire_time: Some(issued.access_token_expire_time),
                refresh_token: issued.refresh_token,
                refresh_token_expire_time: Some(issued.refresh_token_expire_time),
                token_type: TOKEN_TYPE.into(),
                user: Some(user_to_proto(&user)),
            }),
            Exchange::Reused => Err(invalid_refresh_token()),
        }
    }

    /// Checks and exchanges a refresh token inside Refresh's transaction. A detected reuse returns
    /// `Ok` so that the revocation commits, and the caller turns it into an error.
    async fn exchange(
        &self,
        conn: &mut DbConnection,
        context: &RequestContext,
        token_hash: &str,
    ) -> Result<Exchange, ApiError> {
        let now = models::now();
        let token = repo::refresh_tokens::find_by_hash(conn, token_hash)
            .await?
            .ok_or_else(invalid_refresh_token)?;
        if token.revoked_at.is_some() {
            return Err(invalid_refresh_token());
        }
        // A used token means a copy exists, whether or not the token has also expired.
        if token.used_at.is_some() {
            self.revoke_reused(conn, context, &token, now).await?;
            return Ok(Exchange::Reused);
        }
        if token.expires_at <= now {
            return Err(invalid_refresh_token());
        }

        let user = repo::users::find(conn, &token.tenant_id, &token.user_id)
            .await?
            .filter(|user| user.is_active)
            .ok_or_else(invalid_refresh_token)?;
        let tenant = repo::tenants::find(conn, &token.tenant_id)
            .await?
            .filter(|tenant| tenant.deleted_at.is_none())
            .ok_or_else(invalid_refresh_token)?;
        if tenant.status == "suspended" {
            return Err(ApiError::TenantSuspended {
                reason: tenant.suspended_reason.clone().unwrap_or_default(),
            });
        }

        // Another call may have exchanged the token since it was read. Losing that race is
        // reuse too.
        if !repo::refresh_tokens::mark_used(conn, &token.tenant_id, &token.id, now).await? {
            self.revoke_reused(conn, context, &token, now).await?;
            return Ok(Exchange::Reused);
        }
        let issued = self
            .issue_tokens(conn, &user, &token.family_id, now)
            .await?;
        let actor = acting_user(context, &user.tenant_id, &user.id);
        let event = AuditEvent::change("auth.refresh")
            .resource("user", &user.id)
            .detail("family_id", token.family_id.as_str());
        repo::audit::insert(conn, &audit::entry(&actor, &user.tenant_id, event)).await?;
        Ok(Exchange::Issued(issued, Box::new(user)))
    }

    /// Revokes the family of a refresh token that was presented after it had been exchanged.
    async fn revoke_reused(
        &self,
        conn: &mut DbConnection,
        context: &RequestContext,
        token: &RefreshToken,
        now: NaiveDateTime,
    ) -> Result<(), ApiError> {
        let revoked =
            repo::refresh_tokens::revoke_family(conn, &token.tenant_id, &token.family_id, now)
                .await?;
        warn!(
            request.id = %context.request_id,
            tenant.id = %token.tenant_id,
            user.id = %token.user_id,
            family.id = %token.family_id,
            revoked,
            "an exchanged refresh token was presented again; revoked its family"
        );
        let event = AuditEvent::security("auth.refresh_reuse")
            .severity(Severity::Critical)
            .resource("user", &token.user_id)
            .detail("family_id", token.family_id.as_str())
            .detail("revoked_tokens", revoked);
        repo::audit::insert(conn, &audit::entry(context, &token.tenant_id, event)).await?;
        Ok(())
    }

    async fn logout(&self, context: &RequestContext, token: &str) -> Result<(), ApiError> {
        let token_hash = secret_token::hash(token);
        with_retry(|| async {
            let mut conn = self.database.write().await?;
            conn.transaction(async |conn| {
                let Some(token) = repo::refresh_tokens::find_by_hash(conn, &token_hash).await?
                else {
                    return Ok::<_, ApiError>(());
                };
                let now = models::now();
                let revoked = repo::refresh_tokens::revoke_family(
                    conn,
                    &token.tenant_id,
                    &token.family_id,
                    now,
                )
                .await?;
                let actor = acting_user(context, &token.tenant_id, &token.user_id);
                let event = AuditEvent::change("auth.logout")
                    .resource("user", &token.user_id)
                    .detail("family_id", token.family_id.as_str())
                    .detail("revoked_tokens", revoked);
                repo::audit::insert(conn, &audit::entry(&actor, &token.tenant_id, event)).await?;
                Ok(())
            })
            .await
        })
        .await
    }
}

#[tonic::async_trait]
impl AuthService for AuthApi {
    async fn login(
        &self,
        request: Request<pb::LoginRequest>,
    ) -> Result<Response<pb::LoginResponse>, Status> {
        let context = context(&request)?;
        let input = validate_login(request.into_inner())?;
        let throttle_key = (format!("{:?}", input.tenant), input.email.clone());
        match AuthApi::login(self, &context, input).await {
            Ok(response) => {
                self.failures.invalidate(&throttle_key);
                Ok(Response::new(response))
            }
            Err(error) => {
                if matches!(error, ApiError::Unauthenticated { .. }) {
                    let failures = self.failures.get(&throttle_key).unwrap_or(0) + 1;
                    self.failures.insert(throttle_key, failures);
                    tokio::time::sleep(failure_delay(failures)).await;
                }
                Err(error.into())
            }
        }
    }

    async fn refresh(
        &self,
        request: Request<pb::RefreshRequest>,
    ) -> Result<Response<pb::RefreshResponse>, Status> {
        let context = context(&request)?;
        let token = validate_refresh_token(&request.get_ref().refresh_token)?;
        let response = AuthApi::refresh(self, &context, token).await?;
        Ok(Response::new(response))
    }

    async fn logout(
        &self,
        request: Request<pb::LogoutRequest>,
    ) -> Result<Response<pb::LogoutResponse>, Status> {
        let context = context(&request)?;
        let token = validate_refresh_token(&request.get_ref().refresh_token)?;
        AuthApi::logout(self, &context, token).await?;
        Ok(Response::new(pb::LogoutResponse {}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user() -> User {
        let now = models::now();
        User {
            tenant_id: models::new_id(),
            id: models::new_id(),
            email: "ada@example.com".into(),
            display_name: "Ada".into(),
            password_hash: Some("$argon2id$stored".into()),
            role: "member".into(),
            is_active: true,
            email_verified_at: None,
            failed_login_count: 0,
            locked_until: None,
            last_login_at: None,
            created_at: now,
            updated_at: now,
        }
    }

    #[test]
    fn delay_grows_then_caps() {
        let cases = [
            (0, 0),
            (1, 0),
            (2, 0),
            (3, 200),
            (4, 400),
            (12, 2000),
            (13, 2000),
            (i32::MAX, 2000),
        ];
        for (failures, millis) in cases {
            assert_eq!(
                failure_delay(failures),
                Duration::from_millis(millis),
                "after {failures} failures"
            );
        }
    }

    #[test]
    fn right_password_passes() {
        assert_eq!(check_user(&user(), true, models::now()), Ok(()));
    }

    #[test]
    fn user_failures_in_order() {
        let now = models::now();
        let later = now + TimeDelta::minutes(5);
        let earlier = now - TimeDelta::minutes(5);

        assert_eq!(
            check_user(&user(), false, now),
            Err(LoginFailure::WrongPassword)
        );
        let locked = User {
            locked_until: Some(later),
            ..user()
        };
        assert_eq!(
            check_user(&locked, true, now),
            Err(LoginFailure::AccountLocked)
        );
        let lock_expired = User {
            locked_until: Some(earlier),
            ..user()
        };
        assert_eq!(check_user(&lock_expired, true, now), Ok(()));
        let no_password = User {
            password_hash: None,
            ..user()
        };
        assert_eq!(
            check_user(&no_password, false, now),
            Err(LoginFailure::NoPassword)
        );
        let deactivated = User {
            is_active: false,
            ..user()
        };
        assert_eq!(
            check_user(&deactivated, true, now),
            Err(LoginFailure::UserDeactivated)
        );
    }

    #[test]
    fn suspended_tenant_not_counted() {
        assert!(!LoginFailure::TenantSuspended.counts_towards_lockout());
        assert!(LoginFailure::WrongPassword.counts_towards_lockout());
        assert!(LoginFailure::AccountLocked.counts_towards_lockout());
    }

    #[test]
    fn expiry_caps_at_year_9999() {
        let now = models::now();

        assert_eq!(
            expiry(now, Duration::from_secs(60)),
            now + TimeDelta::seconds(60)
        );
        let capped = expiry(now, Duration::MAX);
        assert_eq!(capped.format("%Y-%m-%d").to_string(), "9999-12-31");
    }

    #[test]
    fn login_tenant_forms() {
        let request = |tenant| pb::LoginRequest {
            tenant: Some(tenant),
            email: "Ada@Example.com".into(),
            password: "correct horse battery staple".into(),
        };
        use pb::login_request::Tenant as Choice;

        let by_label = validate_login(request(Choice::TenantDomain("Acme".into()))).unwrap();
        assert_eq!(by_label.tenant, TenantLookup::Subdomain("acme".into()));
        assert_eq!(by_label.email, "ada@example.com");
        let by_host =
            validate_login(request(Choice::TenantDomain("Chat.Example.com".into()))).unwrap();
        assert_eq!(
            by_host.tenant,
            TenantLookup::Domain("chat.example.com".into())
        );
        assert!(validate_login(request(Choice::TenantId("not-a-uuid".into()))).is_err());
        assert!(validate_login(request(Choice::TenantDomain(String::new()))).is_err());
    }

    #[test]
    fn login_requires_fields() {
        let valid = pb::LoginRequest {
            tenant: Some(pb::login_request::Tenant::TenantDomain("acme".into())),
            email: "ada@example.com".into(),
            password: "correct horse battery staple".into(),
        };
        let without_tenant = pb::LoginRequest {
            tenant: None,
            ..valid.clone()
        };
        let without_password = pb::LoginRequest {
            password: String::new(),
            ..valid.clone()
        };
        let long_password = pb::LoginRequest {
            password: "x".repeat(MAX_PASSWORD_BYTES + 1),
            ..valid.clone()
        };

        assert!(validate_login(valid).is_ok());
        assert!(validate_login(without_tenant).is_err());
        assert!(validate_login(without_password).is_err());
        assert!(validate_login(long_password).is_err());
    }

    #[test]
    fn refresh_token_limits() {
        assert!(validate_refresh_token("").is_err());
        assert!(validate_refresh_token(&"a".repeat(MAX_REFRESH_TOKEN_BYTES + 1)).is_err());
        assert!(validate_refresh_token(&secret_token::generate()).is_ok());
    }
}
