//! Configuration files of the earlier Python platform: parsing its three formats into flat
//! key-value entries, and mapping those entries to configuration types.
//!
//! [`parse`] turns a document into [`Entry`] values, [`mapping::map_entries`] decides where each
//! key goes, and [`directory`] implements `ally legacy import DIR`.

pub mod directory;
mod env;
mod ini;
mod json;
pub mod mapping;

use std::fmt;

use serde_json::Value;

/// Format of a legacy document.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Json,
    Ini,
    Env,
}

impl Format {
    /// Returns the name stored in `client_configurations.source_format`.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Ini => "ini",
            Format::Env => "env",
        }
    }

    /// Parses a stored format name.
    pub fn parse(name: &str) -> Option<Format> {
        match name {
            "json" => Some(Format::Json),
            "ini" => Some(Format::Ini),
            "env" => Some(Format::Env),
            _ => None,
        }
    }

    /// Detects the format from the first line that is neither blank nor a comment: `{` starts a
    /// JSON object, `[` an INI section header, and anything else a dotenv line.
    pub fn detect(text: &str) -> Format {
        let first = text
            .trim_start_matches('\u{feff}')
            .lines()
            .map(str::trim)
            .find(|line| !line.is_empty() && !line.starts_with('#') && !line.starts_with(';'));
        match first {
            Some(line) if line.starts_with('{') => Format::Json,
            Some(line) if line.starts_with('[') => Format::Ini,
            _ => Format::Env,
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Json => "JSON",
            Format::Ini => "INI",
            Format::Env => ".env",
        })
    }
}

/// One key of a legacy document with its value.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// The key as the document names it: `KEY` in .env files, `section.key` in INI files, and
    /// the dotted path of nested objects in JSON, such as `llm.model`.
    pub key: String,
    /// A JSON value for JSON documents. INI and .env values are always strings.
    pub value: Value,
    /// 1-based line of the key, when the parser tracks lines (INI and .env).
    pub line: Option<usize>,
}

/// Parse failure of a document, with its 1-based position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    /// 1-based column in characters, when known.
    pub column: Option<usize>,
    pub reason: String,
}

impl ParseError {
    fn at(line: usize, column: Option<usize>, reason: impl Into<String>) -> ParseError {
        ParseError {
            line,
            column,
            reason: reason.into(),
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.column {
            Some(column) => write!(f, "line {}, column {column}: {}", self.line, self.reason),
            None => write!(f, "line {}: {}", self.line, self.reason),
        }
    }
}

impl std::error::Error for ParseError {}

/// Parses a document in `format` into its entries, in document order.
pub fn parse(format: Format, text: &str) -> Result<Vec<Entry>, ParseError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    match format {
        Format::Json => json::parse(text),
        Format::Ini => ini::parse(text),
        Format::Env => env::parse(text),
    }
}

/// Splits `text` into lines numbered from 1, without their `\n` or `\r\n` ends.
fn numbered_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.split('\n')
        .map(|line| line.strip_suffix('\r').unwrap_or(line))
        .enumerate()
        .map(|(index, line)| (index + 1, line))
}

/// Returns the 1-based character column of byte offset `byte` in `line`.
fn column_of(line: &str, byte: usize) -> usize {
    line[..byte.min(line.len())].chars().count() + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detect_by_first_line() {
        assert_eq!(Format::detect("  {\"a\": 1}"), Format::Json);
        assert_eq!(Format::detect("; comment\n[llm]\nmodel = x"), Format::Ini);
        assert_eq!(Format::detect("# comment\nexport A=1"), Format::Env);
        assert_eq!(Format::detect(""), Format::Env);
    }

    #[test]
    fn byte_order_mark_ignored() {
        let entries = parse(Format::Env, "\u{feff}A=1").unwrap();
        assert_eq!(entries[0].key, "A");
    }

    #[test]
    fn error_display_names_position() {
        let error = ParseError::at(3, Some(7), "unexpected end");
        assert_eq!(error.to_string(), "line 3, column 7: unexpected end");
        assert_eq!(
            ParseError::at(2, None, "bad").to_string(),
            "line 2: bad".to_string()
        );
    }
}
