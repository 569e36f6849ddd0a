//! Parsing of `sqlite:` URLs and of MySQL and MariaDB URLs with their query parameters, and
//! the percent-encoding of URL parts.

use std::borrow::Cow;
use std::path::PathBuf;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str};

use super::connection_string::{Settings, Syntax};
use super::redact::Redactor;
use super::values::{parse_host_name, parse_ipv6, parse_port};
use super::{
    Backend, DatabaseUrl, DatabaseUrlError, MysqlTarget, SqlitePath, SqliteTarget,
    backend_for_scheme,
};

const ACCEPTED_SCHEMES: &str =
    "sqlite, sqlite+DRIVER, mysql, mysql+DRIVER, mariadb and mariadb+DRIVER";

pub(super) fn parse_url(scheme: &str, rest: &str) -> Result<DatabaseUrl, DatabaseUrlError> {
    match backend_for_scheme(scheme) {
        Some(Backend::Sqlite { sqlalchemy }) => parse_sqlite_url(scheme, rest, sqlalchemy),
        Some(Backend::Mysql) => parse_mysql_url(scheme, rest).map(DatabaseUrl::Mysql),
        None => {
            let redactor = Redactor::default();
            let quoted_scheme = redactor
                .quote(scheme)
                .map(|quoted| format!(" {quoted}"))
                .unwrap_or_default();
            let message = format!(
                "unsupported URL scheme{quoted_scheme}; accepted schemes are {ACCEPTED_SCHEMES}"
            );
            Err(redactor.error(None, message))
        }
    }
}

// ---------------------------------------------------------------------------
// SQLite URLs
// ---------------------------------------------------------------------------

pub(super) fn parse_sqlite_memory(
    scheme: &str,
    rest: &str,
) -> Result<DatabaseUrl, DatabaseUrlError> {
    let redactor = Redactor::default();
    if !rest.is_empty() && rest != "?" {
        let message = format!(
            "{scheme}::memory: takes no query parameters or other text after it; \
             remove the text after `{scheme}::memory:`"
        );
        return Err(redactor.error(None, message));
    }
    Ok(sqlite(SqlitePath::Memory))
}

fn parse_sqlite_url(
    scheme: &str,
    rest: &str,
    sqlalchemy: bool,
) -> Result<DatabaseUrl, DatabaseUrlError> {
    let redactor = Redactor::default();
    let (location, query) = match rest.split_once('?') {
        Some((location, query)) => (location, Some(query)),
        None => (rest, None),
    };
    if query.is_some_and(|query| !query.is_empty()) {
        let message = "SQLite URLs take no query parameters; remove the text from `?` on, \
                       or write a `?` in the file name as %3F";
        return Err(redactor.error(None, message));
    }
    if location.contains('#') {
        let message = "the SQLite path contains `#`; write it as %23";
        return Err(redactor.error(None, message));
    }

    // SQLAlchemy reads `sqlite+DRIVER://HOST/PATH` and requires an empty HOST, so the path
    // starts after the third `/`.
    let raw_path = if sqlalchemy && !location.is_empty() {
        match location.strip_prefix('/') {
            Some(path) => path,
            None => {
                let message = format!(
                    "{scheme} URLs need an empty host: write {scheme}:///relative/path.db \
                     or {scheme}:////absolute/path.db"
                );
                return Err(redactor.error(None, message));
            }
        }
    } else {
        location
    };

    let path = percent_decode(raw_path, false).map_err(|error| {
        let message = format!("the SQLite path {}", error.describe());
        redactor.error(None, message)
    })?;
    // SQLAlchemy opens an in-memory database for an empty path. An empty path is rejected
    // here so that a truncated setting cannot make the service keep data only in memory.
    if path.is_empty() {
        let message = "missing SQLite file path; write sqlite://PATH for a file \
                       or sqlite::memory: for an in-memory database";
        return Err(redactor.error(None, message));
    }
    if path == ":memory:" {
        return Ok(sqlite(SqlitePath::Memory));
    }
    if path.ends_with('/') {
        let message = format!(
            "the SQLite path ends with `/`{}; add a file name",
            redactor.got(&path)
        );
        return Err(redactor.error(None, message));
    }
    Ok(sqlite(SqlitePath::File(PathBuf::from(path))))
}

fn sqlite(path: SqlitePath) -> DatabaseUrl {
    DatabaseUrl::Sqlite(SqliteTarget { path })
}

// ---------------------------------------------------------------------------
// MySQL URLs
// ---------------------------------------------------------------------------

fn parse_mysql_url(scheme: &str, rest: &str) -> Result<MysqlTarget, DatabaseUrlError> {
    // The user information ends at the last `@`. A password containing an unencoded `/`, `?`,
    // `#` or `@` then stays inside it, and everything that errors may echo comes after
    // the password. The cost is that an `@` in the database name or a query value must be
    // written as %40.
    let (user_info, location) = match rest.rfind('@') {
        Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
        None => (None, rest),
    };
    let (raw_user, raw_password) = match user_info {
        Some(info) => match info.split_once(':') {
            Some((user, password)) => (Some(user), Some(password)),
            None => (Some(info), None),
        },
        None => (None, None),
    };

    let password = match raw_password {
        Some(raw) => Some(percent_decode(raw, false).map_err(|error| {
            let message = format!(
                "the password {}; write reserved characters in percent-encoded form, \
                 such as %25 for `%`",
                error.describe()
            );
            Redactor::default().error(Some("password"), message)
        })?),
        None => None,
    };
    let redactor = Redactor::new(raw_password.into_iter().chain(password.as_deref()));

    let Some(raw_user) = raw_user else {
        let message =
            format!("missing user name; write {scheme}://USER:PASSWORD@HOST:PORT/DATABASE");
        return Err(redactor.error(Some("user"), message));
    };
    let user = percent_decode(raw_user, false).map_err(|error| {
        let message = format!("the user name {}", error.describe());
        redactor.error(Some("user"), message)
    })?;
    if user.is_empty() {
        let message =
            format!("the user name is empty; write {scheme}://USER:PASSWORD@HOST:PORT/DATABASE");
        return Err(redactor.error(Some("user"), message));
    }

    let settings = Settings {
        user: Some(user),
        password,
        ..Settings::default()
    };
    let target = parse_mysql_location(scheme, location, settings, &redactor);

    // With an `@` in the database name or a query value, the user information wrongly
    // takes in the host, and it then usually contains `/` or `?`.
    let user_info_may_be_too_long = user_info.is_some_and(|info| info.contains(['/', '?']));
    target.map_err(|mut error| {
        if user_info_may_be_too_long {
            error.message.push_str(
                "; if the database name or a query value contains `@`, write that `@` as %40",
            );
        }
        error
    })
}

/// Parses `HOST[:PORT]/DATABASE[?QUERY]`, the part of a MySQL URL after the user information.
fn parse_mysql_location(
    scheme: &str,
    location: &str,
    mut settings: Settings,
    redactor: &Redactor,
) -> Result<MysqlTarget, DatabaseUrlError> {
    if location.contains('#') {
        let message = "the URL contains `#`, which would start a fragment; write it as %23";
        return Err(redactor.error(None, message));
    }
    let (before_query, query) = match location.split_once('?') {
        Some((before, query)) => (before, Some(query)),
        None => (location, None),
    };
    let (host_port, path) = match before_query.split_once('/') {
        Some((host_port, path)) => (host_port, Some(path)),
        None => (before_query, None),
    };

    let (host, port) = parse_url_host_port(scheme, host_port, redactor)?;
    settings.host = Some(host);
    settings.port = port;
    settings.database = Some(parse_url_database(scheme, path, redactor)?);
    if let Some(query) = query {
        apply_url_query(&mut settings, query, redactor)?;
    }
    settings.finish(redactor)
}

fn parse_url_host_port(
    scheme: &str,
    host_port: &str,
    redactor: &Redactor,
) -> Result<(String, Option<u16>), DatabaseUrlError> {
    if host_port.is_empty() {
        let message = format!("missing host; write {scheme}://USER:PASSWORD@HOST:PORT/DATABASE");
        return Err(redactor.error(Some("host"), message));
    }

    let (host, port_text) = if let Some(bracketed) = host_port.strip_prefix('[') {
        let Some((inner, after)) = bracketed.split_once(']') else {
            let message = "the IPv6 address has no closing `]`";
            return Err(redactor.error(Some("host"), message));
        };
        let port_text = match after {
            "" => None,
            _ => match after.strip_prefix(':') {
                Some(port) => Some(port),
                None => {
                    let message = format!(
                        "unexpected text after the IPv6 address{}; write [ADDRESS]:PORT",
                        redactor.got(after)
                    );
                    return Err(redactor.error(Some("host"), message));
                }
            },
        };
        (parse_ipv6(inner, "host", redactor)?, port_text)
    } else {
        let (host, port_text) = match host_port.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (host_port, None),
        };
        if port_text.is_some_and(|port| port.contains(':')) {
            let message = format!(
                "the host looks like an IPv6 address{}; write it in brackets, \
                 such as [::1]:3306",
                redactor.got(host_port)
            );
            return Err(redactor.error(Some("host"), message));
        }
        (parse_host_name(host, "host", redactor)?, port_text)
    };

    let port = match port_text {
        Some(text) => Some(parse_port(text, "port", redactor)?),
        None => None,
    };
    Ok((host, port))
}

fn parse_url_database(
    scheme: &str,
    path: Option<&str>,
    redactor: &Redactor,
) -> Result<String, DatabaseUrlError> {
    let path = path.unwrap_or_default();
    if path.is_empty() {
        let message =
            format!("missing database name; write {scheme}://USER:PASSWORD@HOST:PORT/DATABASE");
        return Err(redactor.error(Some("database"), message));
    }
    if path.contains('/') {
        let message = format!(
            "the path has more than one segment{}; the path is the database name, \
             so write any `/` inside it as %2F",
            redactor.got(path)
        );
        return Err(redactor.error(Some("database"), message));
    }
    percent_decode(path, false).map_err(|error| {
        let message = format!("the database name {}", error.describe());
        redactor.error(Some("database"), message)
    })
}

/// Applies `key=value&...` query parameters. Keys and values are form-decoded, so `+`
/// stands for a space as in sqlx and SQLAlchemy, and a literal `+` is written %2B.
fn apply_url_query(
    settings: &mut Settings,
    query: &str,
    redactor: &Redactor,
) -> Result<(), DatabaseUrlError> {
    for parameter in query.split('&').filter(|parameter| !parameter.is_empty()) {
        let (raw_key, raw_value) = parameter.split_once('=').unwrap_or((parameter, ""));
        let key = percent_decode(raw_key, true).map_err(|error| {
            let message = format!("a query parameter name {}", error.describe());
            redactor.error(None, message)
        })?;
        if !parameter.contains('=') {
            let message = "the query parameter has no `=`; write KEY=VALUE";
            return Err(redactor.error(Some(&key), message));
        }
        let value = percent_decode(raw_value, true).map_err(|error| {
            let message = format!("the value {}", error.describe());
            redactor.error(Some(&key), message)
        })?;
        settings.apply(&key, &value, Syntax::UrlQuery, redactor, false)?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Percent-encoding
// ---------------------------------------------------------------------------

/// Bytes escaped in user and database names: every byte except the RFC 3986 unreserved
/// characters `A-Z`, `a-z`, `0-9`, `-`, `.`, `_` and `~`. Non-ASCII bytes are always escaped.
pub(super) const ESCAPED_IN_NAMES: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Bytes escaped in file paths: those of [`ESCAPED_IN_NAMES`] except `/`.
pub(super) const ESCAPED_IN_PATHS: &AsciiSet = &ESCAPED_IN_NAMES.remove(b'/');

#[derive(Debug)]
enum DecodeError {
    InvalidEscape,
    InvalidUtf8,
}

impl DecodeError {
    fn describe(&self) -> &'static str {
        match self {
            DecodeError::InvalidEscape => "contains a `%` that is not followed by two hex digits",
            DecodeError::InvalidUtf8 => "is not valid UTF-8 after percent-decoding",
        }
    }
}

/// Decodes `%XX` escapes. With `plus_as_space`, `+` decodes to a space as in HTML forms.
fn percent_decode(text: &str, plus_as_space: bool) -> Result<String, DecodeError> {
    // `percent_decode_str` keeps a `%` without two hex digits after it as a literal `%`,
    // so such escapes are rejected before decoding.
    if has_invalid_escape(text) {
        return Err(DecodeError::InvalidEscape);
    }
    // Replacing `+` before decoding is safe because an escape never contains `+`, and it
    // keeps `%2B` decoding to a literal `+`.
    let text = if plus_as_space {
        Cow::Owned(text.replace('+', " "))
    } else {
        Cow::Borrowed(text)
    };
    percent_decode_str(&text)
        .decode_utf8()
        .map(Cow::into_owned)
        .map_err(|_| DecodeError::InvalidUtf8)
}

/// Tells whether `text` contains a `%` that is not followed by two hex digits.
fn has_invalid_escape(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes
        .iter()
        .enumerate()
        .filter(|&(_, &byte)| byte == b'%')
        .any(|(index, _)| {
            let digits = bytes.get(index + 1..index + 3);
            !digits.is_some_and(|digits| digits.iter().all(u8::is_ascii_hexdigit))
        })
}
