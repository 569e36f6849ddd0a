//! Checks of request fields shared by several services. Each returns the cleaned value or an
//! INVALID_ARGUMENT error naming the field.

use secrecy::SecretString;

use super::ApiError;
use crate::auth::password::{MAX_PASSWORD_BYTES, MIN_PASSWORD_CHARS};

/// Checks a required free-text field of 1 to `max` characters and returns it trimmed.
pub fn text(field: &str, value: &str, max: usize) -> Result<String, ApiError> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(ApiError::invalid(field, "is required"));
    }
    optional_text(field, trimmed, max).map(|v| v.unwrap_or_default())
}

/// Checks an optional free-text field of at most `max` characters and returns it trimmed, or
/// `None` when it is empty.
pub fn optional_text(field: &str, value: &str, max: usize) -> Result<Option<String>, ApiError> {
    let trimmed = value.trim();
    if trimmed.chars().count() > max {
        return Err(ApiError::invalid(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    if trimmed.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            field,
            "must not contain control characters",
        ));
    }
    Ok((!trimmed.is_empty()).then(|| trimmed.to_string()))
}

/// Checks an email address and returns it lowercased and trimmed. The check is deliberately
/// loose (one `@`, no spaces, a dot in the domain), because only a sent message proves that an
/// address works.
pub fn email(field: &str, value: &str) -> Result<String, ApiError> {
    let email = value.trim().to_lowercase();
    if email.is_empty() {
        return Err(ApiError::invalid(field, "is required"));
    }
    if email.len() > 320 {
        return Err(ApiError::invalid(field, "must be at most 320 bytes"));
    }
    let valid = match email.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !domain.contains('@')
                && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        }
        None => false,
    };
    if !valid {
        return Err(ApiError::invalid(field, "is not an email address"));
    }
    Ok(email)
}

/// Checks a new password: 12 characters to 1024 bytes.
pub fn new_password(field: &str, value: &str) -> Result<SecretString, ApiError> {
    if value.chars().count() < MIN_PASSWORD_CHARS {
        return Err(ApiError::invalid(
            field,
            format!("must be at least {MIN_PASSWORD_CHARS} characters"),
        ));
    }
    if value.len() > MAX_PASSWORD_BYTES {
        return Err(ApiError::invalid(
            field,
            format!("must be at most {MAX_PASSWORD_BYTES} bytes"),
        ));
    }
    Ok(SecretString::from(value.to_string()))
}

/// Checks a DNS host name such as `chat.example.com` and returns it lowercased, or `None` when
/// it is empty.
pub fn domain(field: &str, value: &str) -> Result<Option<String>, ApiError> {
    let domain = value.trim().trim_end_matches('.').to_ascii_lowercase();
    if domain.is_empty() {
        return Ok(None);
    }
    if domain.len() > 253 || !domain.contains('.') || !domain.split('.').all(is_label) {
        return Err(ApiError::invalid(
            field,
            "must be a host name of dot-separated labels of letters, digits and hyphens",
        ));
    }
    Ok(Some(domain))
}

/// Checks a single DNS label such as `acme` and returns it lowercased, or `None` when it is
/// empty.
pub fn subdomain(field: &str, value: &str) -> Result<Option<String>, ApiError> {
    let label = value.trim().to_ascii_lowercase();
    if label.is_empty() {
        return Ok(None);
    }
    if !is_label(&label) {
        return Err(ApiError::invalid(
            field,
            "must be one label of 1 to 63 letters, digits and hyphens, not starting or ending \
             with a hyphen",
        ));
    }
    Ok(Some(label))
}

fn is_label(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= 63
        && !label.starts_with('-')
        && !label.ends_with('-')
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// Checks an optional client idempotency key of 1 to 128 printable ASCII characters.
pub fn request_id(field: &str, value: &str) -> Result<Option<String>, ApiError> {
    if value.is_empty() {
        return Ok(None);
    }
    if value.len() > 128 || !value.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::invalid(
            field,
            "must be 1 to 128 printable ASCII characters",
        ));
    }
    Ok(Some(value.to_string()))
}

/// Checks a resource id: a UUID in its hyphenated lowercase form.
pub fn id(field: &str, value: &str) -> Result<String, ApiError> {
    if value.is_empty() {
        return Err(ApiError::invalid(field, "is required"));
    }
    uuid::Uuid::parse_str(value)
        .ok()
        .filter(|parsed| parsed.hyphenated().to_string() == value)
        .map(|_| value.to_string())
        .ok_or_else(|| {
            ApiError::invalid(
                field,
                "must be a UUID such as 0193a0a0-0000-7000-8000-000000000001",
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_normalized() {
        assert_eq!(
            email("email", "  Ada@Example.COM ").unwrap(),
            "ada@example.com"
        );
    }

    #[test]
    fn email_rejects() {
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "ada@example",
            "a b@example.com",
            "a@b@c.com",
        ] {
            assert!(email("email", bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn domain_checks() {
        assert_eq!(
            domain("domain", "Chat.Example.com.").unwrap().as_deref(),
            Some("chat.example.com")
        );
        assert_eq!(domain("domain", "").unwrap(), None);
        for bad in ["localhost", "-a.example.com", "a_b.example.com", "a..b.com"] {
            assert!(domain("domain", bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn subdomain_checks() {
        assert_eq!(
            subdomain("subdomain", "Acme").unwrap().as_deref(),
            Some("acme")
        );
        for bad in ["a.b", "-acme", "acme-", &"a".repeat(64)] {
            assert!(subdomain("subdomain", bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn password_limits() {
        assert!(new_password("password", "short").is_err());
        assert!(new_password("password", &"x".repeat(1025)).is_err());
        assert!(new_password("password", "long enough password").is_ok());
    }

    #[test]
    fn text_limits() {
        assert!(text("name", "   ", 10).is_err());
        assert!(text("name", &"é".repeat(11), 10).is_err());
        assert_eq!(text("name", " Acme ", 10).unwrap(), "Acme");
        assert!(text("name", "a\u{0}b", 10).is_err());
    }

    #[test]
    fn id_format() {
        assert!(id("id", "0193a0a0-0000-7000-8000-000000000001").is_ok());
        assert!(id("id", "0193A0A0-0000-7000-8000-000000000001").is_err());
        assert!(id("id", "not-a-uuid").is_err());
        assert!(id("id", "").is_err());
    }
}
