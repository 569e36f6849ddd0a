//! Access tokens: JWTs signed with HS256 and checked against an explicit allow-list.
//!
//! Verification accepts only HS256, so a token signed with another algorithm (including
//! `none`, or an RS256 token that would trick an HMAC check with a public key) fails before
//! its signature is looked at. `iss`, `aud`, `sub`, `exp` and `nbf` are required, with 30
//! seconds of leeway for clock skew, and every claim must have its JSON type.
//!
//! Each token that passes is kept in memory for [`VERIFIED_TTL`], keyed by its exact text, so
//! that the next calls with it skip the signature and the JSON decoding. A hit still checks
//! `exp` and `nbf` against the clock. Only a token that this server verified with its current
//! secret can be found, and the secret changes only with a restart.

use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

/// Shortest accepted HS256 secret, the hash's output size.
pub const MIN_SECRET_BYTES: usize = 32;
/// Clock skew tolerated on `exp` and `nbf`.
const LEEWAY_SECONDS: u64 = 30;
/// How long a verified token is kept in memory.
const VERIFIED_TTL: Duration = Duration::from_secs(60);
/// Maximum number of verified tokens kept. When full, moka evicts the entries least likely to
/// be used.
const MAX_VERIFIED: u64 = 20_000;
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
    verified: moka::sync::Cache<String, Arc<Claims>>,
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
            verified: moka::sync::Cache::builder()
                .max_capacity(MAX_VERIFIED)
                .time_to_live(VERIFIED_TTL)
                .build(),
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
    /// claims. A token verified before is taken from memory, with its validity period checked
    /// again.
    pub fn verify(&self, token: &str) -> Result<Arc<Claims>, TokenError> {
        match self.verified_before(token) {
            Some(claims) => Ok(claims),
            None => self.verify_new(token),
        }
    }

    /// Verifies a token that [`TokenKeys::verified_before`] did not find, and keeps it in
    /// memory when it passes.
    pub fn verify_new(&self, token: &str) -> Result<Arc<Claims>, TokenError> {
        let claims = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|data| Arc::new(data.claims))
            .map_err(|error| TokenError(error.to_string()))?;
        self.verified.insert(token.to_string(), claims.clone());
        Ok(claims)
    }

    /// Returns the claims of `token` when this server verified it before and it is still within
    /// its validity period, with the same leeway as a full verification.
    pub fn verified_before(&self, token: &str) -> Option<Arc<Claims>> {
        let claims = self.verified.get(token)?;
        let now = chrono::Utc::now().timestamp();
        let leeway = LEEWAY_SECONDS as i64;
        let current = claims.exp >= now - leeway && claims.nbf <= now + leeway;
        if !current {
            self.verified.invalidate(token);
            return None;
        }
        Some(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> TokenKeys {
        let secret = SecretString::from("0123456789abcdef0123456789abcdef");
        TokenKeys::new(&secret, "ally", "ally", Duration::from_secs(900)).unwrap()
    }

    #[test]
    fn second_verify_from_memory() {
        let keys = keys();
        let (token, issued) = keys.issue("u1", Some("t1"), "member").unwrap();

        let first = keys.verify(&token).unwrap();
        let second = keys.verify(&token).unwrap();

        assert_eq!(*first, issued);
        assert!(Arc::ptr_eq(&first, &second));
    }

    #[test]
    fn altered_token_still_rejected() {
        let keys = keys();
        let (token, _) = keys.issue("u1", Some("t1"), "member").unwrap();
        keys.verify(&token).unwrap();
        let (payload_end, _) = token.rsplit_once('.').unwrap();
        let altered = format!("{payload_end}.AAAA{}", &token[payload_end.len() + 5..]);

        assert!(keys.verified_before(&altered).is_none());
        assert!(keys.verify(&altered).is_err());
    }

    #[test]
    fn expired_token_leaves_memory() {
        let keys = keys();
        let (token, mut claims) = keys.issue("u1", Some("t1"), "member").unwrap();
        let now = chrono::Utc::now().timestamp();
        claims.exp = now - LEEWAY_SECONDS as i64 - 1;
        keys.verified.insert(token.clone(), Arc::new(claims));

        assert!(keys.verified_before(&token).is_none());
        assert!(keys.verified.get(&token).is_none());
    }

    #[test]
    fn token_before_nbf_not_served() {
        let keys = keys();
        let (token, mut claims) = keys.issue("u1", Some("t1"), "member").unwrap();
        claims.nbf = chrono::Utc::now().timestamp() + LEEWAY_SECONDS as i64 + 60;
        keys.verified.insert(token.clone(), Arc::new(claims));

        assert!(keys.verified_before(&token).is_none());
    }
}
