//! Access tokens from an external OpenID Connect issuer, such as Microsoft Entra ID.
//!
//! The issuer's public keys come from a JWKS document, read from a file or fetched from a URL at
//! start-up. A URL is fetched again, at most once a minute, when a token names a key id not seen
//! yet, because the issuer rotated its keys. Only asymmetric keys are accepted, and a token's
//! `alg` must belong to the family of the key its `kid` names, so an HMAC token can never be
//! checked against a public key. The token must have the configured issuer and audience, and a
//! valid `exp` and `nbf`.
//!
//! A verified token names an Ally user through its email claim, looked up inside the tenant
//! that the tenant claim maps to. The user's role comes from Ally's database. A role claim
//! listed in `operator_roles` makes the caller a platform operator instead.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

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
    /// File with the issuer's JWKS document. Set this or `jwks_url`.
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    /// URL of the issuer's JWKS document, e.g. Entra's
    /// `https://login.microsoftonline.com/<tenant>/discovery/v2.0/keys`. Must be `https`
    /// unless the host is a loopback address.
    #[serde(default)]
    pub jwks_url: Option<String>,
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

/// The holder of a verified external token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExternalIdentity {
    /// A platform operator, named by the token's subject.
    Operator { name: String },
    /// A member of an Ally tenant, to be matched to a user by email.
    Member { tenant_id: String, email: String },
}

/// Keys by `kid`, with the algorithms each may verify.
type KeySet = HashMap<String, (DecodingKey, Vec<Algorithm>)>;

/// Shortest time between two fetches of the JWKS URL.
const REFETCH_INTERVAL: Duration = Duration::from_secs(60);
/// Limit for one fetch of the JWKS URL.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Verifies tokens of one external issuer.
pub struct OidcVerifier {
    settings: OidcSettings,
    keys: RwLock<Arc<KeySet>>,
    last_fetch: Mutex<Instant>,
    client: Option<reqwest::Client>,
}

impl std::fmt::Debug for OidcVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcVerifier")
            .field("issuer", &self.settings.issuer)
            .finish_non_exhaustive()
    }
}

impl OidcVerifier {
    /// Loads the issuer's keys from the file or the URL.
    pub async fn load(settings: OidcSettings) -> Result<OidcVerifier, OidcError> {
        let (text, client) = match (&settings.jwks_file, &settings.jwks_url) {
            (Some(file), None) => {
                let text = std::fs::read_to_string(file).map_err(|error| {
                    OidcError(format!(
                        "auth.oidc.jwks_file {} cannot be read: {error}",
                        file.display()
                    ))
                })?;
                (text, None)
            }
            (None, Some(url)) => {
                check_url(url)?;
                // reqwest needs a process-wide rustls provider; an error means one is already
                // installed.
                let _ = rustls::crypto::ring::default_provider().install_default();
                let client = reqwest::Client::builder()
                    .timeout(FETCH_TIMEOUT)
                    .build()
                    .map_err(|error| {
                        OidcError(format!("building the HTTP client failed: {error}"))
                    })?;
                (fetch(&client, url).await?, Some(client))
            }
            _ => {
                return Err(OidcError(
                    "set exactly one of auth.oidc.jwks_file and auth.oidc.jwks_url".into(),
                ));
            }
        };
        let keys = parse_key_set(&text)?;
        Ok(OidcVerifier {
            settings,
            keys: RwLock::new(Arc::new(keys)),
            // A key id unknown right after start may be fetched at once.
            last_fetch: Mutex::new(
                Instant::now()
                    .checked_sub(REFETCH_INTERVAL)
                    .unwrap_or_else(Instant::now),
            ),
            client,
        })
    }

    /// Returns the key set, fetching it again first when `kid` is unknown, keys come from a
    /// URL, and the last fetch is at least a minute old.
    async fn keys_for(&self, kid: &str) -> Arc<KeySet> {
        let current = self
            .keys
            .read()
            .map(|keys| keys.clone())
            .unwrap_or_default();
        let (Some(client), Some(url)) = (&self.client, &self.settings.jwks_url) else {
            return current;
        };
        if current.contains_key(kid) {
            return current;
        }
        let due = match self.last_fetch.lock() {
            Ok(mut last) if last.elapsed() >= REFETCH_INTERVAL => {
                *last = Instant::now();
                true
            }
            _ => false,
        };
        if !due {
            return current;
        }
        match fetch(client, url)
            .await
            .and_then(|text| parse_key_set(&text))
        {
            Ok(fresh) => {
                let fresh = Arc::new(fresh);
                if let Ok(mut keys) = self.keys.write() {
                    *keys = fresh.clone();
                }
                fresh
            }
            Err(error) => {
                tracing::warn!(error = %error, "fetching the external issuer's keys failed; keeping the old ones");
                current
            }
        }
    }

    /// Verifies a token and maps its claims.
    pub async fn verify(&self, token: &str) -> Result<ExternalIdentity, OidcError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|error| OidcError(format!("malformed token header: {error}")))?;
        let kid = header
            .kid
            .ok_or_else(|| OidcError("the token header has no kid".into()))?;
        let keys = self.keys_for(&kid).await;
        let (key, algorithms) = keys
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

/// Accepts `https` URLs, and `http` only for loopback hosts such as a local test issuer.
fn check_url(url: &str) -> Result<(), OidcError> {
    let parsed = url::Url::parse(url)
        .map_err(|error| OidcError(format!("auth.oidc.jwks_url is not a URL: {error}")))?;
    let loopback = match parsed.host() {
        Some(url::Host::Domain(host)) => host == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        _ => Err(OidcError(
            "auth.oidc.jwks_url must use https (http only for loopback hosts)".into(),
        )),
    }
}

async fn fetch(client: &reqwest::Client, url: &str) -> Result<String, OidcError> {
    let response = client
        .get(url)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|error| OidcError(format!("fetching {url} failed: {error}")))?;
    response
        .text()
        .await
        .map_err(|error| OidcError(format!("reading {url} failed: {error}")))
}

/// Keeps a JWKS document's asymmetric keys that carry a `kid`.
fn parse_key_set(text: &str) -> Result<KeySet, OidcError> {
    let set: JwkSet = serde_json::from_str(text)
        .map_err(|error| OidcError(format!("the JWKS document is invalid: {error}")))?;
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
            "the JWKS document contains no asymmetric key with a kid".into(),
        ));
    }
    Ok(keys)
}
