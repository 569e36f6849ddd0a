//! The API key format: `ally_<key id>_<secret>`.
//!
//! The key id (`ak` and 16 hex digits) is public: it is shown in listings and is how a key is
//! found in the database. The secret is 256 random bits and is stored only as a hash.

use super::secret_token;

const PREFIX: &str = "ally_";
const KEY_ID_PREFIX: &str = "ak";
/// Hex digits after `ak` in a key id.
const KEY_ID_HEX: usize = 16;

/// A newly created key, before it is stored.
pub struct NewApiKey {
    /// Public lookup id, e.g. `ak0123456789abcdef`.
    pub key_id: String,
    /// The full key to hand to the caller once.
    pub full_key: String,
    /// The hash the database stores instead of the secret.
    pub secret_hash: String,
}

/// Generates a key.
pub fn generate() -> NewApiKey {
    let key_id = format!(
        "{KEY_ID_PREFIX}{}",
        secret_token::generate_hex(KEY_ID_HEX / 2)
    );
    let secret = secret_token::generate();
    NewApiKey {
        full_key: format!("{PREFIX}{key_id}_{secret}"),
        secret_hash: secret_token::hash(&secret),
        key_id,
    }
}

/// A presented key split into its parts.
pub struct PresentedKey<'a> {
    pub key_id: &'a str,
    pub secret: &'a str,
}

/// Splits a presented key, or returns `None` when it does not have the key format.
pub fn parse(key: &str) -> Option<PresentedKey<'_>> {
    let rest = key.strip_prefix(PREFIX)?;
    let (key_id, secret) = rest.split_once('_')?;
    let hex = key_id.strip_prefix(KEY_ID_PREFIX)?;
    let well_formed = hex.len() == KEY_ID_HEX
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        && secret.len() == 43
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    well_formed.then_some(PresentedKey { key_id, secret })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_key_parses() {
        let key = generate();
        let parsed = parse(&key.full_key).expect("well formed");

        assert_eq!(parsed.key_id, key.key_id);
        assert!(secret_token::matches(parsed.secret, &key.secret_hash));
    }

    #[test]
    fn malformed_keys_rejected() {
        let good = generate().full_key;
        let cases = [
            String::new(),
            "ally_".to_string(),
            good.replace("ally_", "ally-"),
            good.replace("_ak", "_zz"),
            good[..good.len() - 1].to_string(),
            format!("{good}x"),
            good.to_uppercase(),
            good.replace('_', "%"),
        ];
        for case in cases {
            assert!(parse(&case).is_none(), "accepted {case:?}");
        }
    }
}
