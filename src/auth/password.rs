//! Password hashing with argon2id at the OWASP-recommended cost (19 MiB of memory, two passes,
//! one lane), on the blocking thread pool so that hashing never stalls the async workers.

use argon2::{Argon2, PasswordHasher, PasswordVerifier};
use secrecy::{ExposeSecret, SecretString};

/// Shortest password accepted for a new or changed password.
pub const MIN_PASSWORD_CHARS: usize = 12;
/// Maximum password length in bytes, which bounds the hashing work one request can cause.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// A failure of the hashing itself, not a wrong password.
#[derive(Debug, thiserror::Error)]
#[error("password hashing failed: {0}")]
pub struct PasswordError(String);

/// Hashes `password` into a PHC string such as `$argon2id$v=19$m=19456,t=2,p=1$...`.
pub async fn hash(password: SecretString) -> Result<String, PasswordError> {
    tokio::task::spawn_blocking(move || {
        Argon2::default()
            .hash_password(password.expose_secret().as_bytes())
            .map(|hash| hash.to_string())
            .map_err(|error| PasswordError(error.to_string()))
    })
    .await
    .map_err(|error| PasswordError(error.to_string()))?
}

/// Checks `password` against a stored PHC string. With no stored hash (an unknown email or an
/// SSO-only user) it still hashes once, so the response time does not tell the cases apart.
pub async fn verify(password: SecretString, stored: Option<String>) -> Result<bool, PasswordError> {
    tokio::task::spawn_blocking(move || {
        let argon2 = Argon2::default();
        match stored {
            Some(stored) => Ok(argon2
                .verify_password(password.expose_secret().as_bytes(), stored.as_str())
                .is_ok()),
            None => {
                let _ = argon2.hash_password(password.expose_secret().as_bytes());
                Ok(false)
            }
        }
    })
    .await
    .map_err(|error| PasswordError(error.to_string()))?
}

#[cfg(test)]
mod tests {
    use secrecy::SecretString;

    use super::{hash, verify};

    #[tokio::test]
    async fn hash_then_verify() {
        let stored = hash(SecretString::from("correct horse battery"))
            .await
            .unwrap();

        assert!(
            stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{stored}"
        );
        assert!(
            verify(
                SecretString::from("correct horse battery"),
                Some(stored.clone())
            )
            .await
            .unwrap()
        );
        assert!(
            !verify(SecretString::from("wrong horse battery"), Some(stored))
                .await
                .unwrap()
        );
    }

    #[tokio::test]
    async fn verify_without_hash_fails() {
        assert!(
            !verify(SecretString::from("anything at all"), None)
                .await
                .unwrap()
        );
    }
}
