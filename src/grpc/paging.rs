//! Page sizes and opaque page tokens for keyset pagination.
//!
//! A page token is URL-safe base64 of a small JSON cursor: the sort key of the last row
//! returned and a fingerprint of the request's filters. A token used with other filters is
//! rejected, because its position would mean nothing there. Tokens are not signed: every query
//! is limited to the caller's tenant, so an edited token can only move within data the caller
//! may read anyway.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use super::ApiError;

/// Page size when the request sets none.
pub const DEFAULT_PAGE_SIZE: i64 = 50;
/// Largest page size; larger requests get this many.
pub const MAX_PAGE_SIZE: i64 = 1000;

/// Returns the page size for a request's `page_size`.
pub fn page_size(requested: i32) -> Result<i64, ApiError> {
    match requested {
        ..0 => Err(ApiError::invalid("page_size", "must not be negative")),
        0 => Ok(DEFAULT_PAGE_SIZE),
        n => Ok(i64::from(n).min(MAX_PAGE_SIZE)),
    }
}

/// Returns a short fingerprint of the filters a token belongs to.
pub fn fingerprint(filters: &impl Serialize) -> String {
    let text = serde_json::to_string(filters).unwrap_or_default();
    let digest = Sha256::digest(text.as_bytes());
    URL_SAFE_NO_PAD.encode(&digest[..9])
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Envelope<C> {
    /// Filter fingerprint.
    f: String,
    /// Cursor: the sort key of the last row returned.
    c: C,
}

/// Encodes the cursor after the last row of a page.
pub fn encode<C: Serialize>(filters: &str, cursor: C) -> String {
    let envelope = Envelope {
        f: filters.to_string(),
        c: cursor,
    };
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(&envelope).unwrap_or_default())
}

/// Decodes a request's `page_token`; an empty token means the first page.
pub fn decode<C: DeserializeOwned>(token: &str, filters: &str) -> Result<Option<C>, ApiError> {
    if token.is_empty() {
        return Ok(None);
    }
    let invalid = || ApiError::invalid("page_token", "is not a token this list returned");
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid())?;
    let envelope: Envelope<C> = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
    if envelope.f != filters {
        return Err(ApiError::invalid(
            "page_token",
            "belongs to a request with other filters; send the same filters or start over",
        ));
    }
    Ok(Some(envelope.c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_size_defaults_and_caps() {
        assert_eq!(page_size(0).unwrap(), DEFAULT_PAGE_SIZE);
        assert_eq!(page_size(10).unwrap(), 10);
        assert_eq!(page_size(5000).unwrap(), MAX_PAGE_SIZE);
        assert!(page_size(-1).is_err());
    }

    #[test]
    fn token_round_trip() {
        let filters = fingerprint(&("role", "admin"));
        let token = encode(&filters, ("2026-12-04 10:00:00.000001", "id-1"));

        let cursor: (String, String) = decode(&token, &filters).unwrap().unwrap();
        assert_eq!(cursor.1, "id-1");
    }

    #[test]
    fn token_with_other_filters_rejected() {
        let token = encode(&fingerprint(&"a"), ("x", "y"));

        assert!(decode::<(String, String)>(&token, &fingerprint(&"b")).is_err());
    }

    #[test]
    fn garbage_token_rejected() {
        assert!(decode::<(String, String)>("not base64 !", "f").is_err());
        assert!(decode::<(String, String)>("e30", "f").is_err());
    }
}
