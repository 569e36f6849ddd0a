//! Serializers that print settings holding secrets without the secret, for `ally config`.

use secrecy::{ExposeSecret, SecretString};
use serde::Serializer;

use super::database_url::DatabaseUrl;

const MASK: &str = "[redacted]";

/// Writes the database URL with its password replaced, or a mask when it does not parse.
pub(super) fn database_url<S: Serializer>(
    url: &SecretString,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match DatabaseUrl::parse(url.expose_secret()) {
        Ok(parsed) => serializer.serialize_str(&parsed.redacted()),
        Err(_) => serializer.serialize_str(MASK),
    }
}

/// Writes a URL with its user info replaced, or a mask when it does not parse.
pub(super) fn optional_url<S: Serializer>(
    url: &Option<SecretString>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let Some(url) = url else {
        return serializer.serialize_none();
    };
    match url::Url::parse(url.expose_secret()) {
        Ok(mut parsed) => {
            if parsed.password().is_some() {
                let _ = parsed.set_password(Some("****"));
            }
            serializer.serialize_str(parsed.as_str())
        }
        Err(_) => serializer.serialize_str(MASK),
    }
}

/// Writes a mask for a set secret.
pub(super) fn optional_secret<S: Serializer>(
    secret: &Option<SecretString>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match secret {
        Some(_) => serializer.serialize_str(MASK),
        None => serializer.serialize_none(),
    }
}
