//! Dotenv documents as python-dotenv reads them: `KEY=value` lines with an optional `export `
//! prefix, quoted values that may span lines, and `#` comments. Variables such as `${HOME}` are
//! kept as written, not expanded.

use serde_json::Value;

use super::{Entry, ParseError, column_of, numbered_lines};

/// Parses a dotenv document into one entry per assignment. A key assigned twice keeps both
/// entries in document order, so the later value wins when they are mapped, as in
/// python-dotenv.
///
/// Unquoted values end at a `#` that follows whitespace and lose surrounding whitespace.
/// Double-quoted values understand `\n`, `\r`, `\t`, `\"` and `\\`; single-quoted values are
/// literal. Both kinds of quoted values may span several lines.
pub(super) fn parse(text: &str) -> Result<Vec<Entry>, ParseError> {
    let lines: Vec<(usize, &str)> = numbered_lines(text).collect();
    let mut entries = Vec::new();
    let mut index = 0;
    while index < lines.len() {
        let (number, raw) = lines[index];
        index += 1;
        let trimmed = raw.trim_start();
        if trimmed.trim_end().is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let indent = raw.len() - trimmed.len();
        let statement = match trimmed.strip_prefix("export") {
            Some(rest) if rest.starts_with([' ', '\t']) => rest.trim_start(),
            _ => trimmed,
        };
        let key_start = raw.len() - statement.len();
        let Some(equals) = statement.find('=') else {
            return Err(ParseError::at(
                number,
                Some(column_of(raw, indent)),
                "expected `KEY=value`, `export KEY=value` or a `#` comment",
            ));
        };
        let key = statement[..equals].trim_end();
        if let Some(offset) = invalid_key_offset(key) {
            return Err(ParseError::at(
                number,
                Some(column_of(raw, key_start + offset)),
                format!(
                    "`{key}` is not a valid key; keys start with a letter or `_` and contain \
                     letters, digits, `_`, `.` and `-`"
                ),
            ));
        }
        let value_start = key_start + equals + 1;
        let rest = &raw[value_start..];
        let value = match rest.trim_start().chars().next() {
            Some(quote @ ('"' | '\'')) => {
                let quote_start = value_start + rest.len() - rest.trim_start().len();
                let (value, consumed) = quoted(&lines, index - 1, quote_start, quote)?;
                index += consumed;
                value
            }
            _ => unquoted(rest),
        };
        entries.push(Entry {
            key: key.to_string(),
            value: Value::String(value),
            line: Some(number),
        });
    }
    Ok(entries)
}

/// Returns the byte offset of the first character that makes `key` invalid.
fn invalid_key_offset(key: &str) -> Option<usize> {
    let mut chars = key.char_indices();
    match chars.next() {
        None => return Some(0),
        Some((_, first)) if !(first.is_ascii_alphabetic() || first == '_') => return Some(0),
        Some(_) => {}
    }
    chars
        .find(|(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
        .map(|(offset, _)| offset)
}

/// Reads an unquoted value: up to a `#` that follows whitespace, trimmed.
fn unquoted(rest: &str) -> String {
    let mut end = rest.len();
    let mut previous_is_space = true;
    for (offset, c) in rest.char_indices() {
        if c == '#' && previous_is_space && offset > 0 {
            end = offset;
            break;
        }
        previous_is_space = c.is_whitespace();
    }
    rest[..end].trim().to_string()
}

/// Reads a quoted value that opens at byte `start` of line `first` and may continue on later
/// lines. Returns the value and how many further lines it took.
fn quoted(
    lines: &[(usize, &str)],
    first: usize,
    start: usize,
    quote: char,
) -> Result<(String, usize), ParseError> {
    let (first_number, first_raw) = lines[first];
    let mut value = String::new();
    let mut line = first;
    let mut text = &first_raw[start + 1..];
    let mut text_start = start + 1;
    loop {
        let mut chars = text.char_indices();
        while let Some((offset, c)) = chars.next() {
            if c == '\\' && quote == '"' {
                match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, 'r')) => value.push('\r'),
                    Some((_, 't')) => value.push('\t'),
                    Some((_, escaped @ ('"' | '\\'))) => value.push(escaped),
                    Some((_, other)) => {
                        value.push('\\');
                        value.push(other);
                    }
                    None => value.push('\\'),
                }
                continue;
            }
            if c == quote {
                let (number, raw) = lines[line];
                let after = &text[offset + 1..];
                let remainder = after.trim_start();
                if !remainder.is_empty() && !remainder.starts_with('#') {
                    let column = text_start + offset + 1 + (after.len() - remainder.len());
                    return Err(ParseError::at(
                        number,
                        Some(column_of(raw, column)),
                        "unexpected text after the closing quote; start a comment with ` #`",
                    ));
                }
                return Ok((value, line - first));
            }
            value.push(c);
        }
        line += 1;
        let Some((_, next)) = lines.get(line) else {
            return Err(ParseError::at(
                first_number,
                Some(column_of(first_raw, start)),
                format!("the value's opening {quote} is never closed"),
            ));
        };
        value.push('\n');
        text = next;
        text_start = 0;
    }
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
    fn assignments_exports_and_comments() {
        let text = "# settings\nOPENAI_API_MODEL=gpt-4o\n  export MAX_TOKENS = 512  # limit\n\nTHEME=#1f2937\nEMPTY=\n";

        assert_eq!(
            values(text),
            vec![
                ("OPENAI_API_MODEL".to_string(), json!("gpt-4o")),
                ("MAX_TOKENS".to_string(), json!("512")),
                ("THEME".to_string(), json!("#1f2937")),
                ("EMPTY".to_string(), json!("")),
            ]
        );
    }

    #[test]
    fn lines_are_recorded() {
        let entries = parse("\n\nA=1\nB=\"x\ny\"\nC=3").unwrap();
        let lines: Vec<Option<usize>> = entries.iter().map(|e| e.line).collect();
        assert_eq!(lines, [Some(3), Some(4), Some(6)]);
    }

    #[test]
    fn quoted_values() {
        let text = "A=\"say \\\"hi\\\"\\n\" # note\nB='literal \\n # not a comment'\nC=\"line one\nline two\"\nD='x'\n";

        assert_eq!(
            values(text),
            vec![
                ("A".to_string(), json!("say \"hi\"\n")),
                ("B".to_string(), json!("literal \\n # not a comment")),
                ("C".to_string(), json!("line one\nline two")),
                ("D".to_string(), json!("x")),
            ]
        );
    }

    #[test]
    fn export_as_key_name() {
        assert_eq!(values("export=1")[0].0, "export");
        assert_eq!(values("exporter=1")[0].0, "exporter");
    }

    #[test]
    fn later_assignment_listed_last() {
        let keys: Vec<String> = values("A=1\nA=2").into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["A", "A"]);
    }

    #[test]
    fn four_byte_characters_kept() {
        assert_eq!(values("WELCOME=\"hi 🦀 𝄞\"")[0].1, json!("hi 🦀 𝄞"));
        assert_eq!(values("WELCOME=hi 🦀")[0].1, json!("hi 🦀"));
    }

    #[test]
    fn malformed_lines_rejected() {
        let cases = [
            ("A=1\nno equals sign", 2, Some(1), "expected `KEY=value`"),
            ("A=1\n\n1KEY=x", 3, Some(1), "not a valid key"),
            ("MY KEY=x", 1, Some(3), "not a valid key"),
            ("A=\"open\nB=2", 1, Some(3), "never closed"),
            ("A='x' y", 1, Some(7), "after the closing quote"),
            ("🦀=1", 1, Some(1), "not a valid key"),
            ("A=1\nB=\"🦀\" z", 2, Some(7), "after the closing quote"),
        ];
        for (text, line, column, reason) in cases {
            let error = parse(text).unwrap_err();
            assert_eq!(error.line, line, "{text:?}: {error}");
            assert_eq!(error.column, column, "{text:?}: {error}");
            assert!(error.reason.contains(reason), "{text:?}: {error}");
        }
    }
}
