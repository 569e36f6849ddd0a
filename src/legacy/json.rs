//! JSON documents: one object whose nested objects name keys with dots.

use serde_json::{Map, Value};

use super::{Entry, ParseError, column_of};

/// Parses a JSON object into one entry per leaf. Arrays, strings, numbers, booleans and null are
/// leaves; an empty nested object sets no key.
pub(super) fn parse(text: &str) -> Result<Vec<Entry>, ParseError> {
    let value: Value = serde_json::from_str(text).map_err(|error| syntax_error(text, &error))?;
    let Value::Object(object) = value else {
        let offset = text.len() - text.trim_start().len();
        let (line, column) = position_of(text, offset);
        return Err(ParseError::at(
            line,
            Some(column),
            "the document must be a JSON object, such as {\"llm\": {\"model\": \"gpt-4o\"}}",
        ));
    };
    let mut entries = Vec::new();
    flatten("", object, &mut entries);
    Ok(entries)
}

fn flatten(prefix: &str, object: Map<String, Value>, entries: &mut Vec<Entry>) {
    for (name, value) in object {
        let key = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}.{name}")
        };
        match value {
            Value::Object(inner) => flatten(&key, inner, entries),
            leaf => entries.push(Entry {
                key,
                value: leaf,
                line: None,
            }),
        }
    }
}

/// Converts serde_json's error, whose column counts bytes, to one whose column counts
/// characters, and drops the position serde_json appends to its message.
fn syntax_error(text: &str, error: &serde_json::Error) -> ParseError {
    let message = error.to_string();
    let reason = match message.rfind(" at line ") {
        Some(end) => message[..end].to_string(),
        None => message,
    };
    let line_number = error.line().max(1);
    let line = text.split('\n').nth(line_number - 1).unwrap_or_default();
    // serde_json reports the byte count up to and including the offending byte.
    let mut end = error.column().min(line.len());
    while !line.is_char_boundary(end) {
        end += 1;
    }
    let column = line[..end].chars().count().max(1);
    ParseError::at(line_number, Some(column), reason)
}

/// Returns the 1-based line and character column of byte offset `offset`.
fn position_of(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |index| index + 1);
    (line, column_of(&text[line_start..], offset - line_start))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn nested_objects_flatten_to_dotted_keys() {
        let entries =
            parse(r#"{"llm": {"model": "gpt-4o", "temperature": 0.2}, "tags": [1, 2], "x": null}"#)
                .unwrap();

        let keys: Vec<&str> = entries.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["llm.model", "llm.temperature", "tags", "x"]);
        assert_eq!(entries[1].value, json!(0.2));
        assert_eq!(entries[2].value, json!([1, 2]));
        assert_eq!(entries[3].value, Value::Null);
    }

    #[test]
    fn empty_nested_object_sets_nothing() {
        assert!(parse(r#"{"ui": {}}"#).unwrap().is_empty());
    }

    #[test]
    fn four_byte_characters_kept() {
        let entries = parse(r#"{"welcome": "hi 🦀 𝄞"}"#).unwrap();
        assert_eq!(entries[0].value, json!("hi 🦀 𝄞"));
    }

    #[test]
    fn syntax_error_names_line_and_column() {
        let error = parse("{\n  \"a\": 1,\n  \"b\" 2\n}").unwrap_err();

        assert_eq!(error.line, 3);
        assert_eq!(error.column, Some(7));
        assert!(error.reason.contains("expected `:`"), "{}", error.reason);
    }

    #[test]
    fn column_counts_characters() {
        // Each emoji is 4 bytes, and the error is at the character after them.
        let error = parse("{\"🦀🦀\" 1}").unwrap_err();

        assert_eq!(error.line, 1);
        assert_eq!(error.column, Some(7));
    }

    #[test]
    fn non_object_rejected() {
        let error = parse("\n  [1, 2]").unwrap_err();

        assert_eq!(error.line, 2);
        assert_eq!(error.column, Some(3));
        assert!(error.reason.contains("JSON object"));
    }

    #[test]
    fn truncated_document_rejected() {
        let error = parse("{\"a\": ").unwrap_err();
        assert_eq!(error.line, 1);
        assert!(error.reason.contains("EOF"), "{}", error.reason);
    }
}
