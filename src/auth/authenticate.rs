//! Resolving the caller of one RPC: request id, credential, tenant, role, and the policy check.

use std::sync::Arc;

use chrono::Utc;
use http::HeaderMap;
use tracing::{debug, info, warn};

use super::caller_cache::{CachedKey, CallerCache};
use super::jwt::{OPERATOR_ROLE, TokenKeys};
use super::oidc::{ExternalIdentity, OidcVerifier};
use super::policy::{self, Access};
use super::usage::ApiKeyUsage;
use super::{Principal, RequestContext, Role, api_key, secret_token};
use crate::audit::{self, AuditEvent};
use crate::db::Database;
use crate::grpc::ApiError;
use crate::models::Tenant;
use crate::plans::Plan;
use crate::rate_limit::RateLimiter;
use crate::repo;

/// Longest accepted `x-request-id`.
const MAX_REQUEST_ID_CHARS: usize = 128;

/// Metadata keys the tenant layer reads.
pub mod headers {
    pub const AUTHORIZATION: &str = "authorization";
    pub const API_KEY: &str = "x-api-key";
    pub const REQUEST_ID: &str = "x-request-id";
    pub const TENANT_ID: &str = "x-tenant-id";
    pub const TENANT_DOMAIN: &str = "x-tenant-domain";
}

/// The parts of an HTTP/2 request that authentication looks at.
pub struct Call<'a> {
    pub method: &'a str,
    pub headers: &'a HeaderMap,
    /// The `:authority` pseudo-header, such as `acme.ally.example:443`.
    pub authority: Option<&'a str>,
    pub client_ip: Option<String>,
}

/// Resolves callers against the database and the token keys.
pub struct Authenticator {
    database: Database,
    tokens: Arc<TokenKeys>,
    oidc: Option<Arc<OidcVerifier>>,
    base_domain: Option<String>,
    usage: Arc<ApiKeyUsage>,
    rate_limiter: Option<Arc<RateLimiter>>,
    callers: CallerCache,
}

impl Authenticator {
    pub fn new(
        database: Database,
        tokens: Arc<TokenKeys>,
        oidc: Option<Arc<OidcVerifier>>,
        base_domain: Option<String>,
        usage: Arc<ApiKeyUsage>,
    ) -> Authenticator {
        Authenticator {
            database,
            tokens,
            oidc,
            base_domain: base_domain.map(|d| d.trim_matches('.').to_ascii_lowercase()),
            usage,
            rate_limiter: None,
            callers: CallerCache::disabled(),
        }
    }

    /// Checks every call of a tenant member against the tenant's plan rate. Operators and
    /// calls that need no credential are not counted.
    pub fn with_rate_limiter(mut self, limiter: Option<Arc<RateLimiter>>) -> Authenticator {
        self.rate_limiter = limiter;
        self
    }

    /// Uses `callers` to skip the database reads for API keys verified and tenants read
    /// recently.
    pub fn with_caller_cache(mut self, callers: CallerCache) -> Authenticator {
        self.callers = callers;
        self
    }

    /// Returns the request id of a call: the client's `x-request-id` when it is valid, or a
    /// new UUIDv7.
    pub fn request_id(headers: &HeaderMap) -> Result<String, ApiError> {
        match single_header(headers, headers::REQUEST_ID)? {
            None => Ok(uuid::Uuid::now_v7().to_string()),
            Some(id)
                if !id.is_empty()
                    && id.len() <= MAX_REQUEST_ID_CHARS
                    && id.bytes().all(|b| b.is_ascii_graphic()) =>
            {
                Ok(id.to_string())
            }
            Some(_) => Err(ApiError::invalid(
                headers::REQUEST_ID,
                format!("must be 1 to {MAX_REQUEST_ID_CHARS} printable ASCII characters"),
            )),
        }
    }

    /// Resolves the caller and checks the policy table. Denied calls by known tenant members
    /// are written to the audit log.
    pub async fn authenticate(
        &self,
        call: &Call<'_>,
        request_id: String,
    ) -> Result<RequestContext, ApiError> {
        let Some(rule) = policy::rule_for(call.method) else {
            return Err(ApiError::permission_denied(
                "METHOD_NOT_ALLOWED",
                format!("{} is not open to any caller", call.method),
            ));
        };
        let mut context = RequestContext {
            request_id,
            tenant_id: None,
            principal: None,
            role: None,
            scopes: None,
            client_ip: call.client_ip.clone(),
        };
        if rule.access == Access::Public {
            return Ok(context);
        }

        let hints = TenantHints::read(call, self.base_domain.as_deref())?;
        self.identify(call.headers, &mut context).await?;
        let tenant = match context.tenant_id.clone() {
            Some(tenant_id) => Some(self.check_tenant(&tenant_id, &hints).await?),
            None => None,
        };
        if let Some(tenant) = &tenant {
            self.check_rate(tenant, &context).await?;
        }

        if let Err(denial) = check_access(rule, &context) {
            if let Some(tenant) = &tenant {
                self.record_denial(&context, &tenant.id, call.method);
            }
            return Err(denial);
        }
        if let Some(Principal::ApiKey { api_key_id, .. }) = &context.principal
            && let Some(tenant_id) = &context.tenant_id
        {
            self.usage.record(tenant_id, api_key_id);
        }
        Ok(context)
    }

    async fn identify(
        &self,
        headers: &HeaderMap,
        context: &mut RequestContext,
    ) -> Result<(), ApiError> {
        let bearer = single_header(headers, headers::AUTHORIZATION)?;
        let api_key = single_header(headers, headers::API_KEY)?;
        match (bearer, api_key) {
            (Some(_), Some(_)) => Err(ApiError::unauthenticated(
                "AMBIGUOUS_CREDENTIALS",
                "send either an authorization token or an x-api-key, not both",
            )),
            (None, None) => Err(ApiError::unauthenticated(
                "MISSING_CREDENTIALS",
                "missing credentials: send `authorization: Bearer <token>` or `x-api-key: <key>`",
            )),
            (Some(authorization), None) => self.identify_token(authorization, context).await,
            (None, Some(key)) => self.identify_api_key(key, context).await,
        }
    }

    async fn identify_token(
        &self,
        authorization: &str,
        context: &mut RequestContext,
    ) -> Result<(), ApiError> {
        let invalid = || ApiError::unauthenticated("INVALID_TOKEN", "invalid access token");
        // Authentication schemes are case-insensitive (RFC 9110, section 11.1).
        let token = authorization
            .split_once(' ')
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .ok_or_else(invalid)?;
        let rejected = |reason: &dyn std::fmt::Display| {
            info!(request.id = %context.request_id, reason = %reason, "access token rejected");
            invalid()
        };

        let claims = match self.tokens.verified_before(token) {
            Some(claims) => claims,
            None => {
                // Ally signs with HS256 only, so any other algorithm can only be the external
                // issuer's.
                let algorithm = jsonwebtoken::decode_header(token)
                    .map_err(|error| rejected(&error))?
                    .alg;
                if algorithm != jsonwebtoken::Algorithm::HS256
                    && let Some(oidc) = &self.oidc
                {
                    let identity = oidc.verify(token).await.map_err(|error| rejected(&error))?;
                    return self.identify_external(identity, context).await;
                }
                self.tokens
                    .verify_new(token)
                    .map_err(|error| rejected(&error))?
            }
        };
        if claims.role == OPERATOR_ROLE {
            if claims.tenant.is_some() {
                return Err(invalid());
            }
            context.principal = Some(Principal::Operator {
                name: claims.sub.clone(),
            });
            return Ok(());
        }
        let role = Role::parse(&claims.role).ok_or_else(invalid)?;
        let tenant = claims.tenant.clone().ok_or_else(invalid)?;
        context.tenant_id = Some(tenant);
        context.role = Some(role);
        context.principal = Some(Principal::User {
            user_id: claims.sub.clone(),
        });
        Ok(())
    }

    /// Matches an external identity to an operator or to an active Ally user.
    async fn identify_external(
        &self,
        identity: ExternalIdentity,
        context: &mut RequestContext,
    ) -> Result<(), ApiError> {
        let (tenant_id, email) = match identity {
            ExternalIdentity::Operator { name } => {
                context.principal = Some(Principal::Operator { name });
                return Ok(());
            }
            ExternalIdentity::Member { tenant_id, email } => (tenant_id, email),
        };
        let user = {
            let mut conn = self.database.read().await?;
            repo::users::find_by_email(&mut conn, &tenant_id, &email).await?
        };
        let Some(user) = user.filter(|u| u.is_active) else {
            info!(request.id = %context.request_id, tenant.id = %tenant_id, "external token names no active user");
            return Err(ApiError::unauthenticated(
                "UNKNOWN_USER",
                "the token's identity has no active account in this tenant",
            ));
        };
        context.role =
            Some(Role::parse(&user.role).ok_or_else(|| {
                ApiError::internal(format!("user {} has an unknown role", user.id))
            })?);
        context.tenant_id = Some(tenant_id);
        context.principal = Some(Principal::User { user_id: user.id });
        Ok(())
    }

    async fn identify_api_key(
        &self,
        presented: &str,
        context: &mut RequestContext,
    ) -> Result<(), ApiError> {
        let invalid = || ApiError::unauthenticated("INVALID_API_KEY", "invalid API key");
        let parsed = api_key::parse(presented).ok_or_else(invalid)?;
        let now = Utc::now().naive_utc();
        if let Some(cached) = self.callers.key(parsed.key_id)
            && cached.expires_at.is_none_or(|at| at > now)
        {
            if !secret_token::matches(parsed.secret, &cached.key_hash) {
                return Err(invalid());
            }
            set_key_caller(context, &cached);
            return Ok(());
        }

        let generation = self.callers.generation();
        let found = {
            let mut conn = self.database.read().await?;
            repo::api_keys::find_with_owner(&mut conn, parsed.key_id).await?
        };
        let Some((key, owner)) = found else {
            return Err(invalid());
        };
        if !secret_token::matches(parsed.secret, &key.key_hash) {
            return Err(invalid());
        }

        let expired = key.expires_at.is_some_and(|at| at <= now);
        if key.revoked_at.is_some() || expired || !owner.is_active {
            info!(
                request.id = %context.request_id,
                api_key.id = %key.key_id,
                revoked = key.revoked_at.is_some(),
                expired,
                "API key rejected"
            );
            self.record(
                context,
                &key.tenant_id,
                AuditEvent::security("auth.api_key_rejected")
                    .resource("api_key", &key.id)
                    .detail("key_id", key.key_id.as_str()),
            );
            return Err(invalid());
        }

        let scopes: Vec<String> = serde_json::from_str(&key.scopes).map_err(ApiError::internal)?;
        let accepted = CachedKey {
            tenant_id: key.tenant_id,
            id: key.id,
            key_id: key.key_id,
            key_hash: key.key_hash,
            user_id: owner.id,
            role: Role::parse(&owner.role).ok_or_else(invalid)?,
            scopes,
            expires_at: key.expires_at,
        };
        set_key_caller(context, &accepted);
        self.callers.insert_key(generation, accepted);
        Ok(())
    }

    async fn check_tenant(
        &self,
        tenant_id: &str,
        hints: &TenantHints,
    ) -> Result<Arc<Tenant>, ApiError> {
        let tenant = match self.callers.tenant(tenant_id) {
            Some(tenant) => Some(tenant),
            None => {
                let generation = self.callers.generation();
                let found = {
                    let mut conn = self.database.read().await?;
                    repo::tenants::find(&mut conn, tenant_id).await?
                };
                found.map(|tenant| {
                    let tenant = Arc::new(tenant);
                    self.callers.insert_tenant(generation, tenant.clone());
                    tenant
                })
            }
        };
        // MariaDB compares ids ignoring trailing spaces, so a claim of "<id> " would find the row.
        let Some(tenant) = tenant.filter(|t| t.deleted_at.is_none() && t.id == tenant_id) else {
            return Err(ApiError::unauthenticated(
                "TENANT_NOT_FOUND",
                "the credential's tenant does not exist",
            ));
        };
        hints.check(&tenant)?;
        if tenant.status == "suspended" {
            return Err(ApiError::TenantSuspended {
                reason: tenant.suspended_reason.clone().unwrap_or_default(),
            });
        }
        Ok(tenant)
    }

    async fn check_rate(&self, tenant: &Tenant, context: &RequestContext) -> Result<(), ApiError> {
        let (Some(limiter), Some(plan)) = (&self.rate_limiter, Plan::parse(&tenant.plan)) else {
            return Ok(());
        };
        limiter.check(&tenant.id, plan).await.map_err(|limited| {
            debug!(
                request.id = %context.request_id,
                tenant.id = %tenant.id,
                retry_after_ms = limited.retry_after.as_millis() as u64,
                "call rejected by the tenant's rate limit"
            );
            ApiError::from(limited)
        })
    }

    fn record_denial(&self, context: &RequestContext, tenant_id: &str, method: &str) {
        warn!(request.id = %context.request_id, tenant.id = %tenant_id, rpc.method = %method, "call denied by role or scope");
        self.record(
            context,
            tenant_id,
            AuditEvent::security("access.denied").detail("method", method),
        );
    }

    /// Writes a security event without delaying the response.
    fn record(&self, context: &RequestContext, tenant_id: &str, event: AuditEvent) {
        let entry = audit::entry(context, tenant_id, event);
        let database = self.database.clone();
        tokio::spawn(async move {
            let result = async {
                let mut conn = database.write().await?;
                repo::audit::insert(&mut conn, &entry).await?;
                Ok::<_, ApiError>(())
            };
            if let Err(error) = result.await {
                warn!(error = %error, event.type = %entry.event_type, "writing a security audit entry failed");
            }
        });
    }
}

/// Makes the owner of an accepted API key the caller of `context`.
fn set_key_caller(context: &mut RequestContext, key: &CachedKey) {
    context.tenant_id = Some(key.tenant_id.clone());
    context.role = Some(key.role);
    context.scopes = (!key.scopes.is_empty()).then(|| key.scopes.clone());
    context.principal = Some(Principal::ApiKey {
        api_key_id: key.id.clone(),
        key_id: key.key_id.clone(),
        user_id: key.user_id.clone(),
    });
}

/// Checks the policy rule against a resolved caller.
fn check_access(rule: &policy::Rule, context: &RequestContext) -> Result<(), ApiError> {
    let role_allows = |least: Role| context.role.is_some_and(|role| role >= least);
    let allowed = match rule.access {
        Access::Public => true,
        Access::Operator => context.is_operator(),
        Access::Tenant(least) => role_allows(least),
        Access::OperatorOrTenant(least) => context.is_operator() || role_allows(least),
    };
    if !allowed {
        return Err(ApiError::permission_denied(
            "ROLE_NOT_ALLOWED",
            format!("the caller's role may not call {}", rule.method),
        ));
    }
    if let Some(scopes) = &context.scopes
        && !scopes.iter().any(|scope| scope == rule.scope)
    {
        return Err(ApiError::permission_denied(
            "SCOPE_NOT_GRANTED",
            format!("the API key lacks the `{}` scope", rule.scope),
        ));
    }
    Ok(())
}

/// Tenant names a call carries besides its credential. Each must agree with the credential.
#[derive(Debug, Default)]
struct TenantHints {
    tenant_id: Option<String>,
    domain: Option<String>,
    subdomain: Option<String>,
}

impl TenantHints {
    fn read(call: &Call<'_>, base_domain: Option<&str>) -> Result<TenantHints, ApiError> {
        let subdomain = match (base_domain, call.authority) {
            (Some(base), Some(authority)) => subdomain_of(authority, base),
            _ => None,
        };
        Ok(TenantHints {
            tenant_id: single_header(call.headers, headers::TENANT_ID)?.map(str::to_string),
            domain: single_header(call.headers, headers::TENANT_DOMAIN)?
                .map(|d| d.trim_end_matches('.').to_ascii_lowercase()),
            subdomain,
        })
    }

    fn check(&self, tenant: &Tenant) -> Result<(), ApiError> {
        let mismatch = |what: &str| {
            ApiError::permission_denied(
                "TENANT_MISMATCH",
                format!("{what} names a different tenant than the credential"),
            )
        };
        if self.tenant_id.as_deref().is_some_and(|id| id != tenant.id) {
            return Err(mismatch(headers::TENANT_ID));
        }
        if let Some(domain) = &self.domain {
            let matches_domain = tenant
                .domain
                .as_deref()
                .is_some_and(|d| d.eq_ignore_ascii_case(domain));
            let matches_subdomain = tenant
                .subdomain
                .as_deref()
                .is_some_and(|s| s.eq_ignore_ascii_case(domain));
            if !matches_domain && !matches_subdomain {
                return Err(mismatch(headers::TENANT_DOMAIN));
            }
        }
        if let Some(subdomain) = &self.subdomain
            && !tenant
                .subdomain
                .as_deref()
                .is_some_and(|s| s.eq_ignore_ascii_case(subdomain))
        {
            return Err(mismatch(":authority"));
        }
        Ok(())
    }
}

/// Returns the first label of `authority` when it is a direct subdomain of `base`.
fn subdomain_of(authority: &str, base: &str) -> Option<String> {
    let host = authority
        .rsplit_once(':')
        .map_or(authority, |(host, port)| {
            if port.bytes().all(|b| b.is_ascii_digit()) {
                host
            } else {
                authority
            }
        });
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let label = host.strip_suffix(base)?.strip_suffix('.')?;
    (!label.is_empty() && !label.contains('.')).then(|| label.to_string())
}

/// Reads a metadata entry that may appear at most once, as UTF-8 text.
fn single_header<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, ApiError> {
    let mut values = headers.get_all(name).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(ApiError::invalid(name, "must be sent at most once"));
    }
    std::str::from_utf8(first.as_bytes())
        .map(Some)
        .map_err(|_| ApiError::invalid(name, "must be valid UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subdomain_under_base() {
        assert_eq!(
            subdomain_of("acme.ally.example", "ally.example").as_deref(),
            Some("acme")
        );
        assert_eq!(
            subdomain_of("ACME.ally.example:443", "ally.example").as_deref(),
            Some("acme")
        );
        assert_eq!(subdomain_of("ally.example", "ally.example"), None);
        assert_eq!(subdomain_of("a.b.ally.example", "ally.example"), None);
        assert_eq!(subdomain_of("acme.evilally.example", "ally.example"), None);
        assert_eq!(subdomain_of("127.0.0.1:50051", "ally.example"), None);
    }

    #[test]
    fn repeated_header_rejected() {
        let mut headers = HeaderMap::new();
        headers.append(headers::TENANT_ID, "a".parse().unwrap());
        headers.append(headers::TENANT_ID, "b".parse().unwrap());

        assert!(single_header(&headers, headers::TENANT_ID).is_err());
    }

    #[test]
    fn non_utf8_header_rejected() {
        let mut headers = HeaderMap::new();
        headers.insert(
            headers::TENANT_ID,
            http::HeaderValue::from_bytes(&[0xff, 0xfe]).unwrap(),
        );

        assert!(single_header(&headers, headers::TENANT_ID).is_err());
    }
}
