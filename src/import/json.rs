//! Reading the export file as JSON: syntax and duplicate keys with their line and column, and
//! typed access to fields with the JSON path of each value for error messages.

use std::collections::HashSet;
use std::fmt;

use chrono::{DateTime, NaiveDateTime};
use serde::Deserializer as _;
use serde::de::{self, Deserialize, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use super::ParseError;

/// Deepest nesting of arrays and objects a file may have. LibreChat nests each reply inside its
/// parent, two levels per message, so this allows threads of about 5,000 messages.
pub const MAX_DEPTH: usize = 10_000;

/// Parses `data` as one JSON document. Fails with the line and column of the first syntax
/// error, of the first object key that appears twice in one object, or of the first value
/// nested deeper than [`MAX_DEPTH`].
///
/// The parser recurses once per nesting level, so call it on a thread with a stack of at least
/// [`super::PARSE_STACK_BYTES`].
pub fn parse(data: &[u8]) -> Result<Value, ParseError> {
    // serde_json silently keeps the last of repeated keys, which would lose a node of a ChatGPT
    // `mapping`. This first pass rejects them with their position.
    let mut checker = serde_json::Deserializer::from_slice(data);
    checker.disable_recursion_limit();
    checker
        .deserialize_any(KeyCheck { depth: 0 })
        .and_then(|()| checker.end())
        .map_err(syntax_error)?;

    let mut parser = serde_json::Deserializer::from_slice(data);
    parser.disable_recursion_limit();
    let value = Value::deserialize(&mut parser).map_err(syntax_error)?;
    parser.end().map_err(syntax_error)?;
    Ok(value)
}

fn syntax_error(error: serde_json::Error) -> ParseError {
    let text = error.to_string();
    // serde_json appends " at line L column C" to its message, and ParseError puts the
    // position first instead.
    let reason = match text.rfind(" at line ") {
        Some(end) => text[..end].to_string(),
        None => text,
    };
    ParseError {
        position: format!("line {} column {}", error.line(), error.column()),
        reason,
    }
}

/// Visits a whole document and fails on repeated keys or too deep nesting.
struct KeyCheck {
    depth: usize,
}

impl KeyCheck {
    fn nested<E: de::Error>(&self) -> Result<KeyCheck, E> {
        if self.depth >= MAX_DEPTH {
            return Err(E::custom(format!(
                "the document is nested more than {MAX_DEPTH} levels deep"
            )));
        }
        Ok(KeyCheck {
            depth: self.depth + 1,
        })
    }
}

impl<'de> de::DeserializeSeed<'de> for KeyCheck {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for KeyCheck {
    type Value = ();

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let inner = self.nested()?;
        while seq
            .next_element_seed(KeyCheck { depth: inner.depth })?
            .is_some()
        {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let inner = self.nested()?;
        let mut keys = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if keys.contains(&key) {
                return Err(de::Error::custom(format!(
                    "the key {key:?} appears twice in one object"
                )));
            }
            map.next_value_seed(KeyCheck { depth: inner.depth })?;
            keys.insert(key);
        }
        Ok(())
    }
}

/// Formats the path of `key` inside the value at `path`, such as `$[0].mapping["a-b"]`.
pub fn child(path: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !key.starts_with(|c: char| c.is_ascii_digit());
    if plain {
        format!("{path}.{key}")
    } else {
        format!("{path}[{}]", Value::String(key.to_string()))
    }
}

/// Formats the path of element `index` of the array at `path`.
pub fn index(path: &str, index: usize) -> String {
    format!("{path}[{index}]")
}

/// Builds the error for the value at `path`.
pub fn invalid(path: &str, reason: impl Into<String>) -> ParseError {
    ParseError {
        position: path.to_string(),
        reason: reason.into(),
    }
}

/// An object field: its path and its fields.
pub type NestedObject<'a> = (String, &'a Map<String, Value>);

/// An object of the file with its path, for typed access to its fields.
#[derive(Clone, Copy)]
pub struct Object<'a> {
    pub path: &'a str,
    pub map: &'a Map<String, Value>,
}

impl<'a> Object<'a> {
    /// Returns the object at `path`, or an error naming what it is instead.
    pub fn of(path: &'a str, value: &'a Value) -> Result<Object<'a>, ParseError> {
        match value {
            Value::Object(map) => Ok(Object { path, map }),
            other => Err(invalid(
                path,
                format!("expected an object, found {}", kind(other)),
            )),
        }
    }

    /// Returns a field, `None` when it is missing or null.
    pub fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|value| !value.is_null())
    }

    pub fn path_of(&self, key: &str) -> String {
        child(self.path, key)
    }

    /// Returns a string field, `None` when missing or null.
    pub fn string(&self, key: &str) -> Result<Option<&'a str>, ParseError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(text)) => Ok(Some(text)),
            Some(other) => Err(invalid(
                &self.path_of(key),
                format!("expected a string, found {}", kind(other)),
            )),
        }
    }

    /// Returns a string field that must be present.
    pub fn required_string(&self, key: &str) -> Result<&'a str, ParseError> {
        self.string(key)?
            .ok_or_else(|| invalid(&self.path_of(key), "is required"))
    }

    /// Returns an id field: a string, or a number written as its decimal text.
    pub fn id(&self, key: &str) -> Result<Option<String>, ParseError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(text)) => Ok(Some(text.clone())),
            Some(Value::Number(number)) => Ok(Some(number.to_string())),
            Some(other) => Err(invalid(
                &self.path_of(key),
                format!("expected an id string, found {}", kind(other)),
            )),
        }
    }

    /// Returns a boolean field, false when missing or null.
    pub fn flag(&self, key: &str) -> Result<bool, ParseError> {
        match self.get(key) {
            None => Ok(false),
            Some(Value::Bool(flag)) => Ok(*flag),
            Some(other) => Err(invalid(
                &self.path_of(key),
                format!("expected true or false, found {}", kind(other)),
            )),
        }
    }

    /// Returns an object field, `None` when missing or null.
    pub fn object(&self, key: &str) -> Result<Option<NestedObject<'a>>, ParseError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Object(map)) => Ok(Some((self.path_of(key), map))),
            Some(other) => Err(invalid(
                &self.path_of(key),
                format!("expected an object, found {}", kind(other)),
            )),
        }
    }

    /// Returns an array field, `None` when missing or null.
    pub fn array(&self, key: &str) -> Result<Option<&'a Vec<Value>>, ParseError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(items)) => Ok(Some(items)),
            Some(other) => Err(invalid(
                &self.path_of(key),
                format!("expected an array, found {}", kind(other)),
            )),
        }
    }

    /// Returns a time field given as Unix seconds (integer or fraction), `None` when missing
    /// or null.
    pub fn unix_time(&self, key: &str) -> Result<Option<NaiveDateTime>, ParseError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Number(number)) => unix_seconds(number)
                .map(Some)
                .ok_or_else(|| invalid(&self.path_of(key), "is outside the supported time range")),
            Some(other) => Err(invalid(
                &self.path_of(key),
                format!("expected Unix seconds, found {}", kind(other)),
            )),
        }
    }

    /// Returns a time field given as an RFC 3339 (ISO 8601) string, `None` when missing.
    pub fn iso_time(&self, key: &str) -> Result<Option<NaiveDateTime>, ParseError> {
        let Some(text) = self.string(key)? else {
            return Ok(None);
        };
        DateTime::parse_from_rfc3339(text)
            .map(|time| Some(truncate_to_micros(time.naive_utc())))
            .map_err(|error| {
                invalid(
                    &self.path_of(key),
                    format!("{text:?} is not an RFC 3339 time: {error}"),
                )
            })
    }

    /// Returns an integer field that fits `i32` and is not negative, `None` when missing.
    pub fn count(&self, key: &str) -> Result<Option<i32>, ParseError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Number(number)) => number
                .as_u64()
                .and_then(|n| i32::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| {
                    invalid(
                        &self.path_of(key),
                        format!("{number} is not a count from 0 to {}", i32::MAX),
                    )
                }),
            Some(other) => Err(invalid(
                &self.path_of(key),
                format!("expected a number, found {}", kind(other)),
            )),
        }
    }

    /// Returns a copy of the object without the fields in `keys`.
    pub fn without(&self, keys: &[&str]) -> Map<String, Value> {
        self.map
            .iter()
            .filter(|(key, _)| !keys.contains(&key.as_str()))
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect()
    }
}

/// Converts Unix seconds to a UTC time, rounded to the microsecond.
///
/// The integer and fractional parts are converted separately: a float such as
/// 1704629915.776371 is exact to about 0.2 µs, so rounding its fraction returns the
/// microseconds the exporter wrote.
pub fn unix_seconds(number: &serde_json::Number) -> Option<NaiveDateTime> {
    if let Some(seconds) = number.as_i64() {
        return DateTime::from_timestamp(seconds, 0).map(|time| time.naive_utc());
    }
    let value = number.as_f64()?;
    if !value.is_finite() {
        return None;
    }
    let whole = value.floor();
    let mut seconds = whole as i64;
    let mut micros = ((value - whole) * 1_000_000.0).round() as i64;
    if micros >= 1_000_000 {
        seconds += 1;
        micros -= 1_000_000;
    }
    DateTime::from_timestamp(seconds, (micros * 1_000) as u32).map(|time| time.naive_utc())
}

fn truncate_to_micros(time: NaiveDateTime) -> NaiveDateTime {
    chrono::SubsecRound::trunc_subsecs(time, 6)
}

/// Names the JSON type of `value` for error messages.
pub fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_key_has_position() {
        let error = parse(b"{\"a\": 1,\n \"a\": 2}").unwrap_err();

        assert_eq!(error.position, "line 2 column 4");
        assert!(error.reason.contains("\"a\" appears twice"), "{error}");
    }

    #[test]
    fn syntax_error_has_position() {
        let error = parse(b"[1,\n 2,,]").unwrap_err();

        assert_eq!(error.position, "line 2 column 4");
        assert!(!error.reason.contains(" at line "), "{error}");
    }

    #[test]
    fn deep_nesting_rejected() {
        let deep = "[".repeat(MAX_DEPTH + 1) + &"]".repeat(MAX_DEPTH + 1);
        let error = std::thread::Builder::new()
            .stack_size(super::super::PARSE_STACK_BYTES)
            .spawn(move || parse(deep.as_bytes()).unwrap_err())
            .unwrap()
            .join()
            .unwrap();

        assert!(error.reason.contains("nested more than"), "{error}");
    }

    #[test]
    fn float_seconds_keep_microseconds() {
        let number: serde_json::Number = serde_json::from_str("1704629915.776371").unwrap();

        let time = unix_seconds(&number).unwrap();

        assert_eq!(
            time.format("%Y-%m-%d %H:%M:%S%.6f").to_string(),
            "2024-01-07 12:18:35.776371"
        );
    }

    #[test]
    fn paths_quote_unusual_keys() {
        assert_eq!(child("$", "mapping"), "$.mapping");
        assert_eq!(child("$.mapping", "a-b"), "$.mapping[\"a-b\"]");
        assert_eq!(index("$", 3), "$[3]");
    }
}
