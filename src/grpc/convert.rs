//! Conversions between stored values and protobuf well-known types.

use chrono::{DateTime, NaiveDateTime, SubsecRound};
use prost_types::value::Kind;
use prost_types::{ListValue, Struct, Timestamp, Value};
use serde_json::{Map, Number};

use super::ApiError;

/// Converts a stored UTC time to a protobuf timestamp.
pub fn timestamp(time: NaiveDateTime) -> Timestamp {
    let utc = time.and_utc();
    Timestamp {
        seconds: utc.timestamp(),
        nanos: utc.timestamp_subsec_nanos() as i32,
    }
}

/// Converts an optional stored time.
pub fn optional_timestamp(time: Option<NaiveDateTime>) -> Option<Timestamp> {
    time.map(timestamp)
}

/// Converts a protobuf timestamp from field `field` to the stored form, truncated to
/// microseconds.
pub fn from_timestamp(field: &str, value: &Timestamp) -> Result<NaiveDateTime, ApiError> {
    let nanos = u32::try_from(value.nanos)
        .ok()
        .filter(|n| *n < 1_000_000_000)
        .ok_or_else(|| ApiError::invalid(field, "nanos must be from 0 to 999,999,999"))?;
    DateTime::from_timestamp(value.seconds, nanos)
        .map(|time| time.naive_utc().trunc_subsecs(6))
        .ok_or_else(|| ApiError::invalid(field, "is outside the supported time range"))
}

/// Converts a stored JSON object to a protobuf `Struct`. A stored value that is not an object
/// becomes an empty struct.
pub fn json_to_struct(text: &str) -> Struct {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Object(map)) => object_to_struct(map),
        _ => Struct::default(),
    }
}

fn object_to_struct(map: Map<String, serde_json::Value>) -> Struct {
    Struct {
        fields: map
            .into_iter()
            .map(|(k, v)| (k, json_to_value(v)))
            .collect(),
    }
}

fn json_to_value(value: serde_json::Value) -> Value {
    let kind = match value {
        serde_json::Value::Null => Kind::NullValue(0),
        serde_json::Value::Bool(b) => Kind::BoolValue(b),
        serde_json::Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or_default()),
        serde_json::Value::String(s) => Kind::StringValue(s),
        serde_json::Value::Array(items) => Kind::ListValue(ListValue {
            values: items.into_iter().map(json_to_value).collect(),
        }),
        serde_json::Value::Object(map) => Kind::StructValue(object_to_struct(map)),
    };
    Value { kind: Some(kind) }
}

/// Converts a protobuf `Struct` from field `field` to JSON text of at most `max_bytes`.
pub fn struct_to_json(field: &str, value: &Struct, max_bytes: usize) -> Result<String, ApiError> {
    let object = serde_json::Value::Object(
        value
            .fields
            .iter()
            .map(|(k, v)| Ok((k.clone(), value_to_json(field, v)?)))
            .collect::<Result<Map<_, _>, ApiError>>()?,
    );
    let text = object.to_string();
    if text.len() > max_bytes {
        return Err(ApiError::invalid(
            field,
            format!("is {} bytes as JSON; the limit is {max_bytes}", text.len()),
        ));
    }
    Ok(text)
}

fn value_to_json(field: &str, value: &Value) -> Result<serde_json::Value, ApiError> {
    Ok(match &value.kind {
        None | Some(Kind::NullValue(_)) => serde_json::Value::Null,
        Some(Kind::BoolValue(b)) => serde_json::Value::Bool(*b),
        Some(Kind::NumberValue(n)) => Number::from_f64(*n)
            .map(serde_json::Value::Number)
            .ok_or_else(|| ApiError::invalid(field, "numbers must be finite"))?,
        Some(Kind::StringValue(s)) => serde_json::Value::String(s.clone()),
        Some(Kind::ListValue(list)) => serde_json::Value::Array(
            list.values
                .iter()
                .map(|v| value_to_json(field, v))
                .collect::<Result<_, _>>()?,
        ),
        Some(Kind::StructValue(s)) => serde_json::Value::Object(
            s.fields
                .iter()
                .map(|(k, v)| Ok((k.clone(), value_to_json(field, v)?)))
                .collect::<Result<Map<_, _>, ApiError>>()?,
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_round_trip() {
        let time = DateTime::from_timestamp(1_764_870_000, 123_456_000)
            .unwrap()
            .naive_utc();

        assert_eq!(from_timestamp("t", &timestamp(time)).unwrap(), time);
    }

    #[test]
    fn timestamp_truncated_to_micros() {
        let value = Timestamp {
            seconds: 10,
            nanos: 123_456_789,
        };

        let stored = from_timestamp("t", &value).unwrap();
        assert_eq!(stored.and_utc().timestamp_subsec_nanos(), 123_456_000);
    }

    #[test]
    fn negative_nanos_rejected() {
        let value = Timestamp {
            seconds: 10,
            nanos: -1,
        };

        assert!(from_timestamp("expire_time", &value).is_err());
    }

    #[test]
    fn json_struct_round_trip() {
        let text = r#"{"a":1.5,"b":[true,null,"x"],"c":{"d":"😀"}}"#;
        let back = struct_to_json("settings", &json_to_struct(text), 1024).unwrap();

        let expected: serde_json::Value = serde_json::from_str(text).unwrap();
        let actual: serde_json::Value = serde_json::from_str(&back).unwrap();
        assert_eq!(actual, expected);
    }

    #[test]
    fn oversized_struct_rejected() {
        let value = json_to_struct(r#"{"key":"a long enough value"}"#);

        let error = struct_to_json("settings", &value, 10).unwrap_err();
        assert!(error.to_string().contains("invalid"), "{error}");
    }
}
