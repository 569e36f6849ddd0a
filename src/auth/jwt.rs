//! Access tokens: JWTs signed with HS256 and checked against an explicit allow-list.
//!
//! Verification accepts only HS256, so a token signed with another algorithm (including
//! `none`, or an RS256 token that would trick an HMAC check with a public key) fails before
//! its signature is looked at. `iss`, `aud`, `sub`, `exp` and `nbf` are required, with 30
//! seconds of leeway for clock skew, and every claim must have its JSON type.

use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

/// Shortest accepted HS256 secret, the hash's output size.
pub const MIN_SECRET_BYTES: usize = 32;
/// Clock skew tolerated on `exp` and `nbf`.
const LEEWAY_SECONDS: u64 = 30;
/// The `role` claim of a platform operator's token.
pub const OPERATOR_ROLE: &str = "operator";

/// Claims of an access token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    /// The user id, or the operator's name for operator tokens.
    pub sub: String,
    /// The user's tenant; absent in operator tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// A tenant role name, or `operator`.
    pub role: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    /// Unique token id.
    pub jti: String,
}

/// A token that failed verification. The reason is for logs; callers see one message.
#[derive(Debug, thiserror::Error)]
#[error("invalid access token: {0}")]
pub struct TokenError(String);

/// Issues and verifies access tokens with one HS256 secret.
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    issuer: String,
    audience: String,
    lifetime: Duration,
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenKeys")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("lifetime", &self.lifetime)
            .finish_non_exhaustive()
    }
}

impl TokenKeys {
    pub fn new(
        secret: &SecretString,
        issuer: &str,
        audience: &str,
        lifetime: Duration,
    ) -> Result<TokenKeys, TokenError> {
        let bytes = secret.expose_secret().as_bytes();
        if bytes.len() < MIN_SECRET_BYTES {
            return Err(TokenError(format!(
                "the signing secret must be at least {MIN_SECRET_BYTES} bytes"
            )));
        }
        let encoding =
            EncodingKey::from_secret(bytes).map_err(|error| TokenError(error.to_string()))?;
        let decoding =
            DecodingKey::from_secret(bytes).map_err(|error| TokenError(error.to_string()))?;

        let mut validation = Validation::new(Algorithm::HS256);
        validation.algorithms = vec![Algorithm::HS256];
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.leeway = LEEWAY_SECONDS;

        Ok(TokenKeys {
            encoding,
            decoding,
            validation,
            issuer: issuer.to_string(),
            audience: audience.to_string(),
            lifetime,
        })
    }

    /// Returns how long issued tokens stay valid.
    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }

    /// Signs a token for `subject` valid from now for the configured lifetime.
    pub fn issue(
        &self,
        subject: &str,
        tenant: Option<&str>,
        role: &str,
    ) -> Result<(String, Claims), TokenError> {
        let now = chrono::Utc::now().timestamp();
        let lifetime = i64::try_from(self.lifetime.as_secs()).unwrap_or(i64::MAX / 2);
        let claims = Claims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: subject.to_string(),
            tenant: tenant.map(str::to_string),
            role: role.to_string(),
            iat: now,
            nbf: now,
            exp: now.saturating_add(lifetime),
            jti: uuid::Uuid::now_v7().to_string(),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|error| TokenError(error.to_string()))?;
        Ok((token, claims))
    }

    /// Signs a token for a platform operator, who belongs to no tenant.
    pub fn issue_operator(&self, name: &str) -> Result<String, TokenError> {
        self.issue(name, None, OPERATOR_ROLE)
            .map(|(token, _)| token)
    }

    /// Verifies signature, algorithm, issuer, audience and validity period, and decodes the
    /// claims.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|data| data.claims)
            .map_err(|error| TokenError(error.to_string()))
    }
}
