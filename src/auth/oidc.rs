//! Access tokens from an external OpenID Connect issuer, such as Microsoft Entra ID.
//!
//! The issuer's public keys come from a JWKS document read from a file at start-up. Only
//! asymmetric keys are accepted, and a token's `alg` must belong to the family of the key its
//! `kid` names, so an HMAC token can never be checked against a public key. The token must have
//! the configured issuer and audience, and a valid `exp` and `nbf`.
//!
//! A verified token names an Ally user through its email claim, looked up inside the tenant
//! that the tenant claim maps to. The user's role comes from Ally's database. A role claim
//! that the role map maps to `operator` makes the caller a platform operator instead.

use std::collections::HashMap;
use std::path::PathBuf;

use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Settings of an external issuer, under `auth.oidc`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OidcSettings {
    /// Expected `iss`, e.g. `https://login.microsoftonline.com/<tenant>/v2.0`.
    pub issuer: String,
    /// Expected `aud`, usually the application (client) id.
    pub audience: String,
    /// JWKS document with the issuer's signing keys.
    pub jwks_file: PathBuf,
    /// Claim naming the caller's organisation. Default `tid` (Entra's directory id).
    #[serde(default = "default_tenant_claim")]
    pub tenant_claim: String,
    /// Maps values of the tenant claim to Ally tenant ids. A value missing from the map is
    /// rejected.
    #[serde(default)]
    pub tenant_map: HashMap<String, String>,
    /// Claim holding the caller's email address. Default `email`, then `preferred_username`.
    #[serde(default = "default_email_claim")]
    pub email_claim: String,
    /// Claim holding role names (a string or an array of strings). Default `roles`.
    #[serde(default = "default_role_claim")]
    pub role_claim: String,
    /// Role names that make the caller a platform operator.
    #[serde(default)]
    pub operator_roles: Vec<String>,
}

fn default_tenant_claim() -> String {
    "tid".into()
}

fn default_email_claim() -> String {
    "email".into()
}

fn default_role_claim() -> String {
    "roles".into()
}

/// A failure to load the keys or to verify a token.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct OidcError(String);

/// What a verified external token says about its holder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExternalIdentity {
    /// A platform operator, named by the token's subject.
    Operator { name: String },
    /// A member of an Ally tenant, to be matched to a user by email.
    Member { tenant_id: String, email: String },
}

/// Verifies tokens of one external issuer.
pub struct OidcVerifier {
    settings: OidcSettings,
    keys: HashMap<String, (DecodingKey, Vec<Algorithm>)>,
}

impl std::fmt::Debug for OidcVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcVerifier")
            .field("issuer", &self.settings.issuer)
            .field("keys", &self.keys.len())
            .finish_non_exhaustive()
    }
}

impl OidcVerifier {
    /// Reads the JWKS file and keeps its asymmetric keys that carry a `kid`.
    pub fn load(settings: OidcSettings) -> Result<OidcVerifier, OidcError> {
        let text = std::fs::read_to_string(&settings.jwks_file).map_err(|error| {
            OidcError(format!(
                "auth.oidc.jwks_file {} cannot be read: {error}",
                settings.jwks_file.display()
            ))
        })?;
        let set: JwkSet = serde_json::from_str(&text).map_err(|error| {
            OidcError(format!(
                "auth.oidc.jwks_file is not a JWKS document: {error}"
            ))
        })?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            let Some(kid) = jwk.common.key_id.clone() else {
                continue;
            };
            let algorithms = match &jwk.algorithm {
                AlgorithmParameters::RSA(_) => vec![
                    Algorithm::RS256,
                    Algorithm::RS384,
                    Algorithm::RS512,
                    Algorithm::PS256,
                    Algorithm::PS384,
                    Algorithm::PS512,
                ],
                AlgorithmParameters::EllipticCurve(_) => vec![Algorithm::ES256, Algorithm::ES384],
                AlgorithmParameters::OctetKeyPair(_) => vec![Algorithm::EdDSA],
                // Symmetric keys in a public key set would let anyone holding the set sign, so
                // they are skipped along with kinds this code does not know.
                _ => continue,
            };
            let key = DecodingKey::from_jwk(jwk)
                .map_err(|error| OidcError(format!("JWKS key {kid}: {error}")))?;
            keys.insert(kid, (key, algorithms));
        }
        if keys.is_empty() {
            return Err(OidcError(
                "auth.oidc.jwks_file holds no asymmetric key with a kid".into(),
            ));
        }
        Ok(OidcVerifier { settings, keys })
    }

    /// Returns whether `issuer` is this verifier's issuer.
    pub fn issuer(&self) -> &str {
        &self.settings.issuer
    }

    /// Verifies a token and maps its claims.
    pub fn verify(&self, token: &str) -> Result<ExternalIdentity, OidcError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|error| OidcError(format!("malformed token header: {error}")))?;
        let kid = header
            .kid
            .ok_or_else(|| OidcError("the token header has no kid".into()))?;
        let (key, algorithms) = self
            .keys
            .get(&kid)
            .ok_or_else(|| OidcError(format!("no key with kid {kid}")))?;
        if !algorithms.contains(&header.alg) {
            return Err(OidcError(format!(
                "algorithm {:?} does not fit key {kid}",
                header.alg
            )));
        }

        let mut validation = Validation::new(header.alg);
        validation.algorithms = vec![header.alg];
        validation.set_issuer(&[&self.settings.issuer]);
        validation.set_audience(&[&self.settings.audience]);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = 30;
        let claims =
            jsonwebtoken::decode::<serde_json::Map<String, Value>>(token, key, &validation)
                .map_err(|error| OidcError(error.to_string()))?
                .claims;
        self.map_claims(&claims)
    }

    fn map_claims(
        &self,
        claims: &serde_json::Map<String, Value>,
    ) -> Result<ExternalIdentity, OidcError> {
        let text = |name: &str| claims.get(name).and_then(Value::as_str).map(str::to_string);
        let roles: Vec<String> = match claims.get(&self.settings.role_claim) {
            Some(Value::String(role)) => vec![role.clone()],
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(|item| item.as_str().map(str::to_string))
                .collect(),
            _ => Vec::new(),
        };
        if roles
            .iter()
            .any(|role| self.settings.operator_roles.contains(role))
        {
            let name = text("sub").ok_or_else(|| OidcError("sub must be a string".into()))?;
            return Ok(ExternalIdentity::Operator { name });
        }

        let organisation = text(&self.settings.tenant_claim).ok_or_else(|| {
            OidcError(format!(
                "the token has no {} claim",
                self.settings.tenant_claim
            ))
        })?;
        let tenant_id = self
            .settings
            .tenant_map
            .get(&organisation)
            .cloned()
            .ok_or_else(|| OidcError(format!("{organisation} is not mapped to a tenant")))?;
        let email = text(&self.settings.email_claim)
            .or_else(|| text("preferred_username"))
            .ok_or_else(|| OidcError("the token has no email claim".into()))?;
        Ok(ExternalIdentity::Member {
            tenant_id,
            email: email.trim().to_lowercase(),
        })
    }
}
