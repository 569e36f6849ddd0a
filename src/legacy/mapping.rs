//! Mapping of legacy keys: the table from legacy key names to configuration types and fields,
//! typed conversion of values, secret detection, and merging over active values.
//!
//! docs/legacy-configuration.md shows the same table for readers of the API.

use std::collections::BTreeMap;

use serde_json::{Map, Number, Value};

use super::Entry;

/// Configuration type that keeps keys without a mapping, under their original names.
pub const UNMAPPED_TYPE: &str = "legacy.unmapped";

/// The type a mapped value must convert to.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Kind {
    Text,
    /// A finite number from `min` to `max`, inclusive.
    Number {
        min: f64,
        max: f64,
    },
    /// A whole number of at least `min`.
    Integer {
        min: i64,
    },
    /// `true` or `false`; text values also accept yes/no, on/off and 1/0, as Python's
    /// configparser does.
    Boolean,
}

/// One row of the mapping table.
#[derive(Clone, Copy, Debug)]
pub struct Mapping {
    /// Legacy names in normalized form (see [`normalize`]). Besides these, every mapping also
    /// matches its own type and field, such as `llm_defaults_model`.
    pub names: &'static [&'static str],
    pub config_type: &'static str,
    pub field: &'static str,
    pub kind: Kind,
}

const fn mapping(
    config_type: &'static str,
    field: &'static str,
    kind: Kind,
    names: &'static [&'static str],
) -> Mapping {
    Mapping {
        names,
        config_type,
        field,
        kind,
    }
}

const TEXT: Kind = Kind::Text;
const BOOLEAN: Kind = Kind::Boolean;
const COUNT: Kind = Kind::Integer { min: 0 };

/// The mapping table. A JSON key `llm.model`, an INI key `model` in section `[llm]` and a
/// dotenv key `LLM_MODEL` all normalize to `llm_model`.
pub const MAPPINGS: &[Mapping] = &[
    mapping(
        "llm.defaults",
        "model",
        TEXT,
        &[
            "llm_model",
            "openai_api_model",
            "openai_model",
            "model_name",
            "default_model",
        ],
    ),
    mapping("llm.defaults", "provider", TEXT, &["llm_provider"]),
    mapping(
        "llm.defaults",
        "temperature",
        Kind::Number { min: 0.0, max: 2.0 },
        &["llm_temperature", "openai_temperature", "temperature"],
    ),
    mapping(
        "llm.defaults",
        "max_tokens",
        Kind::Integer { min: 1 },
        &["llm_max_tokens", "openai_max_tokens", "max_tokens"],
    ),
    mapping(
        "llm.defaults",
        "top_p",
        Kind::Number { min: 0.0, max: 1.0 },
        &["llm_top_p", "openai_top_p", "top_p"],
    ),
    mapping(
        "llm.defaults",
        "base_url",
        TEXT,
        &[
            "llm_base_url",
            "llm_api_base",
            "openai_api_base",
            "openai_base_url",
        ],
    ),
    mapping(
        "llm.defaults",
        "timeout_seconds",
        Kind::Integer { min: 1 },
        &["llm_timeout", "openai_timeout", "request_timeout"],
    ),
    mapping(
        "chat.defaults",
        "system_prompt",
        TEXT,
        &[
            "chat_system_prompt",
            "system_prompt",
            "llm_system_prompt",
            "default_system_prompt",
        ],
    ),
    mapping(
        "chat.defaults",
        "streaming",
        BOOLEAN,
        &[
            "chat_streaming",
            "enable_streaming",
            "chat_enable_streaming",
            "streaming",
        ],
    ),
    mapping(
        "chat.defaults",
        "welcome_message",
        TEXT,
        &["chat_welcome_message", "welcome_message", "greeting"],
    ),
    mapping(
        "chat.defaults",
        "max_history_messages",
        COUNT,
        &[
            "chat_max_history",
            "max_history",
            "chat_history_length",
            "history_length",
        ],
    ),
    mapping(
        "ui.branding",
        "theme",
        TEXT,
        &["ui_theme", "theme", "branding_theme"],
    ),
    mapping(
        "ui.branding",
        "primary_color",
        TEXT,
        &[
            "ui_primary_color",
            "primary_color",
            "brand_color",
            "branding_primary_color",
            "theme_color",
        ],
    ),
    mapping(
        "ui.branding",
        "logo_url",
        TEXT,
        &["ui_logo_url", "logo_url", "branding_logo_url"],
    ),
    mapping(
        "ui.branding",
        "favicon_url",
        TEXT,
        &["ui_favicon_url", "favicon_url", "branding_favicon_url"],
    ),
    mapping(
        "ui.branding",
        "app_name",
        TEXT,
        &[
            "ui_app_name",
            "app_name",
            "brand_name",
            "branding_app_name",
            "app_title",
        ],
    ),
    mapping(
        "limits",
        "requests_per_minute",
        COUNT,
        &[
            "rate_limit",
            "rate_limit_per_minute",
            "rate_limit_rpm",
            "requests_per_minute",
        ],
    ),
    mapping(
        "limits",
        "tokens_per_day",
        COUNT,
        &[
            "rate_limit_tokens_per_day",
            "tokens_per_day",
            "daily_token_limit",
        ],
    ),
    mapping(
        "limits",
        "max_upload_mb",
        COUNT,
        &["max_upload_mb", "max_upload_size_mb"],
    ),
    mapping(
        "limits",
        "max_concurrent_requests",
        COUNT,
        &["max_concurrent_requests"],
    ),
];

/// Normalizes a legacy key name for lookup: lowercase, with `.`, `-`, spaces and repeated
/// underscores turned into one `_`.
pub fn normalize(key: &str) -> String {
    let mut normalized = String::with_capacity(key.len());
    for c in key.chars() {
        let c = match c {
            '.' | '-' | ' ' => '_',
            c => c.to_ascii_lowercase(),
        };
        if c == '_' && normalized.ends_with('_') {
            continue;
        }
        normalized.push(c);
    }
    normalized.trim_matches('_').to_string()
}

/// Finds the mapping of a normalized key name.
pub fn find(normalized: &str) -> Option<&'static Mapping> {
    MAPPINGS.iter().find(|mapping| {
        mapping.names.contains(&normalized)
            || normalized
                .strip_prefix(&mapping.config_type.replace('.', "_"))
                .and_then(|rest| rest.strip_prefix('_'))
                == Some(mapping.field)
    })
}

/// Name parts that mark a key as a secret wherever they appear.
const SECRET_PARTS: &[&str] = &[
    "secret",
    "secrets",
    "password",
    "passwd",
    "pwd",
    "credential",
    "credentials",
    "apikey",
];
/// Last name parts that mark a key as a secret, as in `OPENAI_API_KEY` or `BOT_TOKEN`.
const SECRET_ENDINGS: &[&str] = &["key", "token"];

/// Returns whether a key contains a secret. Its name then contains a part such as `secret` or
/// `password` or ends in `key` or `token`. Otherwise its value is a URL with a password, or it
/// looks like an OpenAI key: `sk-` and at least 20 more characters.
pub fn is_secret(normalized: &str, value: &Value) -> bool {
    let parts: Vec<&str> = normalized.split('_').collect();
    if parts.iter().any(|part| SECRET_PARTS.contains(part))
        || parts
            .last()
            .is_some_and(|last| SECRET_ENDINGS.contains(last))
    {
        return true;
    }
    let Value::String(text) = value else {
        return false;
    };
    let text = text.trim();
    if text
        .strip_prefix("sk-")
        .is_some_and(|rest| rest.len() >= 20 && !rest.contains(char::is_whitespace))
    {
        return true;
    }
    url::Url::parse(text).is_ok_and(|url| url.password().is_some())
}

/// A key whose value could not be converted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyError {
    pub key: String,
    pub reason: String,
}

/// Destinations of a document's entries.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MappedDocument {
    /// Fields to set per configuration type, including [`UNMAPPED_TYPE`].
    pub types: BTreeMap<String, Map<String, Value>>,
    /// Original names of keys without a mapping, in document order.
    pub unmapped: Vec<String>,
    /// Original names of secret keys, in document order. Their values are dropped.
    pub secrets: Vec<String>,
    pub errors: Vec<KeyError>,
}

impl MappedDocument {
    /// Returns the errors as one line, such as "OPENAI_TEMPERATURE: `hot` is not a number".
    pub fn error_summary(&self) -> String {
        self.errors
            .iter()
            .map(|error| format!("{}: {}", error.key, error.reason))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// Maps a document's entries to configuration fields. An entry that repeats an earlier key
/// replaces its value. Two different keys that map to the same field with different values are
/// an error.
pub fn map_entries(entries: &[Entry]) -> MappedDocument {
    let mut document = MappedDocument::default();
    // (type, field) → the original key that set it.
    let mut sources: BTreeMap<(String, String), String> = BTreeMap::new();
    for entry in entries {
        let normalized = normalize(&entry.key);
        if is_secret(&normalized, &entry.value) {
            push_once(&mut document.secrets, &entry.key);
            continue;
        }
        let (config_type, field, value) = match find(&normalized) {
            Some(mapping) => match convert(&entry.value, mapping.kind) {
                Ok(value) => (mapping.config_type, mapping.field.to_string(), value),
                Err(reason) => {
                    document.errors.push(KeyError {
                        key: entry.key.clone(),
                        reason,
                    });
                    continue;
                }
            },
            None => {
                push_once(&mut document.unmapped, &entry.key);
                (UNMAPPED_TYPE, entry.key.clone(), entry.value.clone())
            }
        };
        let fields = document.types.entry(config_type.to_string()).or_default();
        let source = (config_type.to_string(), field.clone());
        match sources.get(&source) {
            Some(earlier) if *earlier != entry.key && fields.get(&field) != Some(&value) => {
                document.errors.push(KeyError {
                    key: entry.key.clone(),
                    reason: format!(
                        "sets {config_type} field `{field}` to a different value than `{earlier}`; \
                         keep one of the two keys"
                    ),
                });
            }
            _ => {
                sources.insert(source, entry.key.clone());
                fields.insert(field, value);
            }
        }
    }
    document
}

fn push_once(names: &mut Vec<String>, name: &str) {
    if !names.iter().any(|known| known == name) {
        names.push(name.to_string());
    }
}

/// Converts a legacy value to `kind`, or returns the reason it cannot be converted.
pub fn convert(value: &Value, kind: Kind) -> Result<Value, String> {
    match (kind, value) {
        (_, Value::Null) => Err("is null; give it a value or remove the key".into()),
        (Kind::Text, Value::String(text)) => Ok(Value::String(text.clone())),
        (Kind::Text, other) => Err(format!("`{other}` is not text; quote it")),
        (Kind::Number { min, max }, value) => {
            let number = match value {
                Value::Number(number) => number.as_f64(),
                Value::String(text) => text.trim().parse::<f64>().ok(),
                _ => None,
            }
            .filter(|number| number.is_finite())
            .ok_or_else(|| format!("`{}` is not a number", display(value)))?;
            if !(min..=max).contains(&number) {
                return Err(format!("{number} is outside the range {min} to {max}"));
            }
            Number::from_f64(number)
                .map(Value::Number)
                .ok_or_else(|| format!("`{}` is not a number", display(value)))
        }
        (Kind::Integer { min }, value) => {
            let number = match value {
                Value::Number(number) => number.as_i64(),
                Value::String(text) => text.trim().parse::<i64>().ok(),
                _ => None,
            }
            .ok_or_else(|| format!("`{}` is not a whole number", display(value)))?;
            if number < min {
                return Err(format!("{number} is less than the minimum {min}"));
            }
            Ok(Value::from(number))
        }
        (Kind::Boolean, Value::Bool(flag)) => Ok(Value::Bool(*flag)),
        (Kind::Boolean, value) => {
            let text = match value {
                Value::String(text) => text.trim().to_ascii_lowercase(),
                Value::Number(number) => number.to_string(),
                _ => String::new(),
            };
            match text.as_str() {
                "true" | "yes" | "on" | "1" => Ok(Value::Bool(true)),
                "false" | "no" | "off" | "0" => Ok(Value::Bool(false)),
                _ => Err(format!(
                    "`{}` is not a boolean; use true or false",
                    display(value)
                )),
            }
        }
    }
}

/// Shows a value in an error message: text without its JSON quotes, anything else as JSON.
fn display(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// A field whose value a migration changes.
#[derive(Clone, Debug, PartialEq)]
pub struct FieldChange {
    pub field: String,
    /// `None` when the field was not set.
    pub old: Option<Value>,
    pub new: Value,
}

/// Merges `fields` over the active value `current` of a configuration type. Returns the merged
/// object and the fields whose value changes, sorted by field.
pub fn merge(
    current: &Map<String, Value>,
    fields: &Map<String, Value>,
) -> (Map<String, Value>, Vec<FieldChange>) {
    let mut merged = current.clone();
    let mut changes = Vec::new();
    for (field, value) in fields {
        let old = current.get(field);
        if old != Some(value) {
            changes.push(FieldChange {
                field: field.clone(),
                old: old.cloned(),
                new: value.clone(),
            });
        }
        merged.insert(field.clone(), value.clone());
    }
    changes.sort_by(|a, b| a.field.cmp(&b.field));
    (merged, changes)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::legacy::{Format, parse};

    fn map(format: Format, text: &str) -> MappedDocument {
        map_entries(&parse(format, text).unwrap())
    }

    #[test]
    fn normalize_joins_separators() {
        assert_eq!(normalize("OPENAI_API_MODEL"), "openai_api_model");
        assert_eq!(normalize("llm.model"), "llm_model");
        assert_eq!(normalize("LLM__Max-Tokens"), "llm_max_tokens");
    }

    #[test]
    fn same_field_from_every_format() {
        let documents = [
            (Format::Env, "OPENAI_API_MODEL=gpt-4o"),
            (Format::Ini, "[llm]\nmodel = gpt-4o"),
            (Format::Json, r#"{"llm": {"model": "gpt-4o"}}"#),
            (Format::Json, r#"{"llm.defaults": {"model": "gpt-4o"}}"#),
        ];
        for (format, text) in documents {
            let mapped = map(format, text);
            assert_eq!(
                mapped.types["llm.defaults"]["model"],
                json!("gpt-4o"),
                "{text}"
            );
            assert!(mapped.unmapped.is_empty(), "{text}");
        }
    }

    #[test]
    fn values_converted_by_kind() {
        let mapped = map(
            Format::Env,
            "OPENAI_TEMPERATURE=0.7\nMAX_TOKENS=512\nENABLE_STREAMING=yes\nSYSTEM_PROMPT=Be brief\nRATE_LIMIT_PER_MINUTE=60\nUI_THEME=dark",
        );

        assert!(mapped.errors.is_empty(), "{:?}", mapped.errors);
        assert_eq!(mapped.types["llm.defaults"]["temperature"], json!(0.7));
        assert_eq!(mapped.types["llm.defaults"]["max_tokens"], json!(512));
        assert_eq!(mapped.types["chat.defaults"]["streaming"], json!(true));
        assert_eq!(
            mapped.types["chat.defaults"]["system_prompt"],
            json!("Be brief")
        );
        assert_eq!(mapped.types["limits"]["requests_per_minute"], json!(60));
        assert_eq!(mapped.types["ui.branding"]["theme"], json!("dark"));
    }

    #[test]
    fn conversion_errors_name_the_key() {
        let mapped = map(
            Format::Env,
            "OPENAI_TEMPERATURE=hot\nMAX_TOKENS=1.5\nENABLE_STREAMING=maybe\nTOP_P=3",
        );
        let errors: Vec<(&str, &str)> = mapped
            .errors
            .iter()
            .map(|e| (e.key.as_str(), e.reason.as_str()))
            .collect();

        assert_eq!(
            errors,
            [
                ("OPENAI_TEMPERATURE", "`hot` is not a number"),
                ("MAX_TOKENS", "`1.5` is not a whole number"),
                (
                    "ENABLE_STREAMING",
                    "`maybe` is not a boolean; use true or false"
                ),
                ("TOP_P", "3 is outside the range 0 to 1"),
            ]
        );
        assert!(
            mapped
                .error_summary()
                .starts_with("OPENAI_TEMPERATURE: `hot`")
        );
    }

    #[test]
    fn json_types_checked() {
        let mapped = map(
            Format::Json,
            r#"{"llm": {"model": 4, "temperature": null, "max_tokens": 256}, "chat": {"streaming": false}}"#,
        );

        assert_eq!(mapped.errors.len(), 2, "{:?}", mapped.errors);
        assert_eq!(mapped.types["llm.defaults"]["max_tokens"], json!(256));
        assert_eq!(mapped.types["chat.defaults"]["streaming"], json!(false));
    }

    #[test]
    fn secrets_skipped() {
        let mapped = map(
            Format::Env,
            "OPENAI_API_KEY=sk-abc\nJWT_SECRET=s3cr3t\nDB_PASSWORD=pw\nBOT_TOKEN=t\nDATABASE_URL=mysql://u:pw@db/x\nHELPER=sk-0123456789abcdefghijklmnop\nMODEL=gpt-4o",
        );

        assert_eq!(
            mapped.secrets,
            [
                "OPENAI_API_KEY",
                "JWT_SECRET",
                "DB_PASSWORD",
                "BOT_TOKEN",
                "DATABASE_URL",
                "HELPER"
            ]
        );
        let stored = serde_json::to_string(&mapped.types).unwrap();
        for secret in ["sk-abc", "s3cr3t", "pw", "sk-0123"] {
            assert!(!stored.contains(secret), "{secret} leaked: {stored}");
        }
    }

    #[test]
    fn unmapped_keys_kept_with_original_names() {
        let mapped = map(Format::Ini, "[llm]\nmodel = x\n[extra]\nFancy_Flag = on");

        assert_eq!(mapped.unmapped, ["extra.Fancy_Flag"]);
        assert_eq!(mapped.types[UNMAPPED_TYPE]["extra.Fancy_Flag"], json!("on"));
    }

    #[test]
    fn repeated_key_later_wins() {
        let mapped = map(Format::Env, "MAX_TOKENS=1\nMAX_TOKENS=2");

        assert!(mapped.errors.is_empty());
        assert_eq!(mapped.types["llm.defaults"]["max_tokens"], json!(2));
    }

    #[test]
    fn conflicting_aliases_rejected() {
        let same = map(Format::Env, "LLM_MODEL=a\nOPENAI_API_MODEL=a");
        assert!(same.errors.is_empty());

        let different = map(Format::Env, "LLM_MODEL=a\nOPENAI_API_MODEL=b");
        assert_eq!(different.errors.len(), 1);
        assert_eq!(different.errors[0].key, "OPENAI_API_MODEL");
        assert!(different.errors[0].reason.contains("`LLM_MODEL`"));
    }

    #[test]
    fn table_names_are_normalized_and_not_secret() {
        for mapping in MAPPINGS {
            for name in mapping.names {
                assert_eq!(normalize(name), *name);
                assert!(!is_secret(name, &Value::Null), "{name} looks like a secret");
                assert_eq!(
                    find(name).map(|m| (m.config_type, m.field)),
                    Some((mapping.config_type, mapping.field)),
                    "{name} maps to two fields"
                );
            }
        }
    }

    #[test]
    fn merge_reports_changed_fields() {
        let current = json!({"model": "old", "temperature": 0.5, "keep": true});
        let fields = json!({"model": "new", "temperature": 0.5, "max_tokens": 10});
        let (merged, changes) = merge(current.as_object().unwrap(), fields.as_object().unwrap());

        assert_eq!(
            Value::Object(merged),
            json!({"model": "new", "temperature": 0.5, "max_tokens": 10, "keep": true})
        );
        assert_eq!(
            changes,
            [
                FieldChange {
                    field: "max_tokens".into(),
                    old: None,
                    new: json!(10)
                },
                FieldChange {
                    field: "model".into(),
                    old: Some(json!("old")),
                    new: json!("new")
                },
            ]
        );
    }
}
