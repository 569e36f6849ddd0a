//! Redaction of passwords from error messages.

use super::DatabaseUrlError;
use super::connection_string::OptionKey;

/// Maximum number of characters of an input value repeated in an error message.
const MAX_ECHO_CHARS: usize = 40;

/// Length of the shortest run of password characters that an echoed value may not contain.
const SECRET_RUN_CHARS: usize = 3;

/// Builds errors that never show a password found in the input.
#[derive(Default)]
pub(super) struct Redactor {
    /// Non-empty passwords, as characters.
    secrets: Vec<Vec<char>>,
}

impl Redactor {
    pub(super) fn new<'a>(secrets: impl IntoIterator<Item = &'a str>) -> Self {
        let secrets = secrets
            .into_iter()
            .filter(|secret| !secret.is_empty())
            .map(|secret| secret.chars().collect())
            .collect();
        Redactor { secrets }
    }

    /// Returns a copy that also hides `secret`.
    pub(super) fn with_secret(&self, secret: &str) -> Redactor {
        let mut secrets = self.secrets.clone();
        if !secret.is_empty() {
            secrets.push(secret.chars().collect());
        }
        Redactor { secrets }
    }

    /// Tells whether `text` contains a run of `SECRET_RUN_CHARS` characters of a
    /// password, or a whole password shorter than that, ignoring case.
    fn reveals_secret(&self, text: &str) -> bool {
        let text = text.to_lowercase();
        self.secrets.iter().any(|secret| {
            let run = secret.len().min(SECRET_RUN_CHARS);
            secret.windows(run).any(|window| {
                let window: String = window.iter().collect();
                text.contains(&window.to_lowercase())
            })
        })
    }

    /// Formats `text` in backticks for an error message, shortened to `MAX_ECHO_CHARS`
    /// characters with control characters escaped.
    ///
    /// Returns `None` when the excerpt would reveal part of a known password, or when it
    /// names a password key, because it then probably contains a password that the
    /// parser did not recognise. A recognised key name is always returned, because it is
    /// never password text.
    pub(super) fn quote(&self, text: &str) -> Option<String> {
        let mut excerpt = String::new();
        for c in text.chars().take(MAX_ECHO_CHARS) {
            if c.is_control() {
                excerpt.extend(c.escape_default());
            } else {
                excerpt.push(c);
            }
        }
        if text.chars().count() > MAX_ECHO_CHARS {
            excerpt.push_str("...");
        }
        if OptionKey::find(text).is_some() {
            return Some(format!("`{excerpt}`"));
        }

        let lowercase = excerpt.to_lowercase();
        let names_password = ["password", "pwd"]
            .iter()
            .any(|name| lowercase.contains(name));
        (!names_password && !self.reveals_secret(&excerpt)).then(|| format!("`{excerpt}`"))
    }

    /// Returns `, got `text`` for the end of a message, or nothing when `quote` hides it.
    pub(super) fn got(&self, text: &str) -> String {
        self.quote(text)
            .map(|quoted| format!(", got {quoted}"))
            .unwrap_or_default()
    }

    /// Builds an error, leaving out an unrecognised key that would reveal part of a
    /// password.
    ///
    /// Callers take every piece of input text in the message from `quote` or `got`.
    pub(super) fn error(&self, key: Option<&str>, message: impl Into<String>) -> DatabaseUrlError {
        let key = key
            .filter(|key| OptionKey::find(key).is_some() || !self.reveals_secret(key))
            .map(str::to_owned);
        DatabaseUrlError {
            key,
            message: message.into(),
        }
    }
}
