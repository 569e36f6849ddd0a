//! Random secrets for API keys, refresh tokens and verification tokens, and the hashes stored in
//! their place.
//!
//! Every secret carries 256 bits from the thread-local CSPRNG (ChaCha, seeded from the
//! operating system). Such a secret cannot be guessed, so a single SHA-256 is a sufficient
//! hash; a slow password hash would only add latency to every request.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Bytes of randomness in every secret.
const SECRET_BYTES: usize = 32;

/// Returns 256 random bits as URL-safe base64 (43 characters).
pub fn generate() -> String {
    let mut bytes = [0u8; SECRET_BYTES];
    rand::fill(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Returns `bytes` random bytes as lowercase hex, for public identifiers.
pub fn generate_hex(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    rand::fill(buffer.as_mut_slice());
    buffer.iter().map(|b| format!("{b:02x}")).collect()
}

/// Returns the hex SHA-256 of `secret`, the form stored in the database.
pub fn hash(secret: &str) -> String {
    Sha256::digest(secret.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Compares `secret` with a stored hash in time that does not depend on where they differ.
pub fn matches(secret: &str, stored_hash: &str) -> bool {
    hash(secret).as_bytes().ct_eq(stored_hash.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secrets_differ() {
        let first = generate();
        let second = generate();

        assert_eq!(first.len(), 43);
        assert_ne!(first, second);
    }

    #[test]
    fn hash_matches_own_secret() {
        let secret = generate();
        let stored = hash(&secret);

        assert!(matches(&secret, &stored));
        assert!(!matches(&generate(), &stored));
        assert!(!matches(&secret, &stored[..10]));
    }
}
