//! INI documents as Python's configparser reads them with its defaults: `[section]` headers,
//! `key = value` or `key: value` lines, whole-line comments, indented continuation lines, and
//! no duplicate sections or keys.

use std::collections::HashMap;

use serde_json::Value;

use super::{Entry, ParseError, column_of, numbered_lines};

/// Parses an INI document into one entry per key, named `section.key`.
///
/// Values may be wrapped in single or double quotes, which are removed. A `;` or `#` starts a
/// comment only at the start of a line, because values such as the color `#1f2937` contain them.
/// Keys keep their case but are compared without it, as configparser does.
pub(super) fn parse(text: &str) -> Result<Vec<Entry>, ParseError> {
    let mut entries: Vec<Entry> = Vec::new();
    let mut section: Option<String> = None;
    let mut sections: HashMap<String, usize> = HashMap::new();
    let mut keys: HashMap<String, usize> = HashMap::new();
    // Index in `entries` of the last key, which an indented line continues. A blank line or a
    // comment ends the value.
    let mut continued: Option<usize> = None;

    for (number, raw) in numbered_lines(text) {
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with(';') || trimmed.starts_with('#') {
            continued = None;
            continue;
        }
        let indented = raw.starts_with([' ', '\t']);
        if indented && let Some(index) = continued {
            let entry = &mut entries[index];
            if let Value::String(value) = &mut entry.value {
                value.push('\n');
                value.push_str(trimmed);
            }
            continue;
        }
        let indent = raw.len() - raw.trim_start().len();
        if trimmed.starts_with('[') {
            let Some(name) = trimmed
                .strip_prefix('[')
                .and_then(|rest| rest.strip_suffix(']'))
            else {
                return Err(ParseError::at(
                    number,
                    Some(column_of(raw, indent + trimmed.len())),
                    "the section header is missing its closing `]`",
                ));
            };
            let name = name.trim();
            if name.is_empty() {
                return Err(ParseError::at(
                    number,
                    Some(column_of(raw, indent)),
                    "the section name is empty",
                ));
            }
            if let Some(first) = sections.insert(name.to_lowercase(), number) {
                return Err(ParseError::at(
                    number,
                    Some(column_of(raw, indent)),
                    format!("section [{name}] is repeated; it first appears on line {first}"),
                ));
            }
            section = Some(name.to_string());
            continued = None;
            continue;
        }

        let Some(separator) = trimmed.find(['=', ':']) else {
            return Err(ParseError::at(
                number,
                Some(column_of(raw, indent)),
                "expected `key = value`, a [section] header or a comment",
            ));
        };
        let name = trimmed[..separator].trim();
        if name.is_empty() {
            return Err(ParseError::at(
                number,
                Some(column_of(raw, indent)),
                "the key before `=` is empty",
            ));
        }
        let Some(section_name) = &section else {
            return Err(ParseError::at(
                number,
                Some(column_of(raw, indent)),
                format!("key `{name}` appears before any [section] header"),
            ));
        };
        let key = format!("{section_name}.{name}");
        if let Some(first) = keys.insert(key.to_lowercase(), number) {
            return Err(ParseError::at(
                number,
                Some(column_of(raw, indent)),
                format!(
                    "key `{name}` is repeated in [{section_name}]; it first appears on line {first}"
                ),
            ));
        }
        let value_start = indent + separator + 1;
        let value = unquote(&raw[value_start..]).map_err(|(offset, reason)| {
            ParseError::at(number, Some(column_of(raw, value_start + offset)), reason)
        })?;
        entries.push(Entry {
            key,
            value: Value::String(value),
            line: Some(number),
        });
        continued = Some(entries.len() - 1);
    }
    Ok(entries)
}

/// Removes surrounding whitespace and one pair of matching quotes from a value. Double-quoted
/// values understand the escapes `\"`, `\\`, `\n` and `\t`; single-quoted values are literal.
/// After the closing quote only whitespace or a `;` or `#` comment may follow. Errors carry the
/// byte offset in `raw` they refer to.
fn unquote(raw: &str) -> Result<String, (usize, String)> {
    let leading = raw.len() - raw.trim_start().len();
    let value = raw.trim();
    let Some(quote) = value.chars().next().filter(|c| *c == '"' || *c == '\'') else {
        return Ok(value.to_string());
    };
    let mut unquoted = String::new();
    let mut chars = value[1..].char_indices();
    while let Some((index, c)) = chars.next() {
        match c {
            '\\' if quote == '"' => match chars.next() {
                Some((_, 'n')) => unquoted.push('\n'),
                Some((_, 't')) => unquoted.push('\t'),
                Some((_, other @ ('"' | '\\'))) => unquoted.push(other),
                Some((_, other)) => {
                    unquoted.push('\\');
                    unquoted.push(other);
                }
                None => unquoted.push('\\'),
            },
            c if c == quote => {
                let rest = value[1 + index + 1..].trim_start();
                if !rest.is_empty() && !rest.starts_with([';', '#']) {
                    let offset = leading + value.len() - rest.len();
                    return Err((
                        offset,
                        "unexpected text after the closing quote; put a comment after `;` or `#`"
                            .into(),
                    ));
                }
                return Ok(unquoted);
            }
            c => unquoted.push(c),
        }
    }
    Err((
        leading,
        format!("the value's opening {quote} is never closed"),
    ))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn values(text: &str) -> Vec<(String, Value)> {
        parse(text)
            .unwrap()
            .into_iter()
            .map(|entry| (entry.key, entry.value))
            .collect()
    }

    #[test]
    fn sections_keys_and_comments() {
        let text = "; client settings\n# second comment\n[llm]\nmodel = gpt-4o\ntemperature: 0.3\n\n[ui]\n  theme=dark  \n";

        assert_eq!(
            values(text),
            vec![
                ("llm.model".to_string(), json!("gpt-4o")),
                ("llm.temperature".to_string(), json!("0.3")),
                ("ui.theme".to_string(), json!("dark")),
            ]
        );
    }

    #[test]
    fn lines_are_recorded() {
        let entries = parse("[llm]\n\nmodel = x").unwrap();
        assert_eq!(entries[0].line, Some(3));
    }

    #[test]
    fn quotes_removed() {
        let text =
            "[chat]\na = \"say \\\"hi\\\"\\n\" ; note\nb = 'it''s'x\nc = 'C:\\path'\nd = #1f2937\n";
        let error = parse(text).unwrap_err();
        assert_eq!(error.line, 3);

        let fixed = text.replace("b = 'it''s'x\n", "");
        assert_eq!(
            values(&fixed),
            vec![
                ("chat.a".to_string(), json!("say \"hi\"\n")),
                ("chat.c".to_string(), json!("C:\\path")),
                ("chat.d".to_string(), json!("#1f2937")),
            ]
        );
    }

    #[test]
    fn continuation_lines_join_value() {
        let text = "[chat]\nsystem_prompt = You are helpful.\n  Answer briefly.\nnext = 1\n";

        assert_eq!(
            values(text)[0].1,
            json!("You are helpful.\nAnswer briefly.")
        );
    }

    #[test]
    fn four_byte_characters_kept() {
        assert_eq!(values("[ui]\nwelcome = hi 🦀\n")[0].1, json!("hi 🦀"));
    }

    #[test]
    fn crlf_line_ends() {
        assert_eq!(values("[a]\r\nb = c\r\n")[0].1, json!("c"));
    }

    #[test]
    fn key_before_section_rejected() {
        let error = parse("model = x\n[llm]").unwrap_err();
        assert_eq!(error.line, 1);
        assert!(error.reason.contains("before any [section]"));
    }

    #[test]
    fn malformed_lines_rejected() {
        let cases = [
            ("[llm\nmodel = x", 1, "closing `]`"),
            ("[llm]\njust words", 2, "expected `key = value`"),
            ("[llm]\n = x", 2, "key before `=` is empty"),
            ("[llm]\na = 1\n[LLM]", 3, "repeated"),
            ("[llm]\nmodel = 1\nModel = 2", 3, "repeated"),
            ("[llm]\nmodel = \"open", 2, "never closed"),
            ("[]\n", 1, "empty"),
        ];
        for (text, line, reason) in cases {
            let error = parse(text).unwrap_err();
            assert_eq!(error.line, line, "{text:?}: {error}");
            assert!(error.reason.contains(reason), "{text:?}: {error}");
        }
    }

    #[test]
    fn unterminated_quote_column() {
        let error = parse("[a]\nk =  \"x").unwrap_err();
        assert_eq!(error.column, Some(6));
        let error = parse("[a]\n🦀 =  \"x").unwrap_err();
        assert_eq!(error.line, 2);
        assert_eq!(error.column, Some(6));
    }
}
