//! Parsing of the `DATABASE_URL` setting into a SQLite or MySQL/MariaDB target.
//!
//! Two input forms are accepted:
//!
//! * URLs. `sqlite::memory:` and `sqlite://:memory:` select an in-memory database.
//!   `sqlite://PATH` takes PATH verbatim (the sqlx convention), so `sqlite://data/ally.db`
//!   is relative and `sqlite:///var/lib/ally.db` is absolute. `sqlite+DRIVER:///PATH`
//!   follows SQLAlchemy, where the path starts after the third `/`. MySQL and MariaDB use
//!   `mysql://`, `mariadb://`, `mysql+DRIVER://` or `mariadb+DRIVER://` followed by
//!   `USER[:PASSWORD]@HOST[:PORT]/DATABASE[?KEY=VALUE&...]`.
//! * .NET connection strings such as `Server=db;User ID=ally;Password=pw;Database=ally`,
//!   with the key names, synonyms and quoting rules of MySqlConnector. They always
//!   describe a MySQL or MariaDB server.
//!
//! Error messages never echo a password. They repeat input text only when it shares no
//! run of three characters with a password found in the input, except recognised key
//! names, which are always shown. Text that may be part of a password written without
//! quotes is not repeated at all.

mod connection_string;
mod redact;
#[cfg(test)]
mod tests;
mod url;
mod values;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use percent_encoding::utf8_percent_encode;
use secrecy::SecretString;

use self::connection_string::{normalize_name, parse_connection_string};
use self::redact::Redactor;
use self::url::{ESCAPED_IN_NAMES, ESCAPED_IN_PATHS, parse_sqlite_memory, parse_url};

/// Port used when neither the URL nor the connection string sets one.
pub const DEFAULT_MYSQL_PORT: u16 = 3306;

const FORM_EXAMPLES: &str = "use a URL such as sqlite://data/ally.db or \
     mysql://USER:PASSWORD@HOST:PORT/DATABASE, or a connection string such as \
     Server=HOST;User ID=USER;Password=PASSWORD;Database=DATABASE";

const SSL_MODE_CHOICES: &str = "None (or Disabled), Preferred, Required, \
     VerifyCA (or VERIFY_CA) and VerifyFull (or VERIFY_IDENTITY)";

/// Database selected by `DATABASE_URL`.
#[derive(Clone, Debug)]
pub enum DatabaseUrl {
    Sqlite(SqliteTarget),
    Mysql(MysqlTarget),
}

/// SQLite database location.
#[derive(Clone, Debug)]
pub struct SqliteTarget {
    pub path: SqlitePath,
}

/// In-memory database or database file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SqlitePath {
    Memory,
    /// File path exactly as written after percent-decoding. A relative path is resolved
    /// against the working directory when the file is opened.
    File(PathBuf),
}

/// MySQL or MariaDB server, account and TLS settings.
///
/// `Debug` prints the password as `[REDACTED]`, and [`MysqlTarget::redacted`] replaces it
/// with `****`.
#[derive(Clone, Debug)]
pub struct MysqlTarget {
    /// Host name, IPv4 address, or IPv6 address without brackets.
    pub host: String,
    pub port: u16,
    pub user: String,
    /// Password, or `None` when the input sets none or an empty one.
    pub password: Option<SecretString>,
    pub database: String,
    pub ssl_mode: SslMode,
    /// PEM file with the certificate authorities that sign the server certificate.
    pub ssl_ca: Option<PathBuf>,
    /// PEM file with the client certificate. The parser sets it only together with `ssl_key`.
    pub ssl_cert: Option<PathBuf>,
    /// PEM file with the client private key. The parser sets it only together with `ssl_cert`.
    pub ssl_key: Option<PathBuf>,
    /// Connection timeout in whole seconds as written, including 0.
    /// NOTE: the parser gives 0 no special meaning, so the connecting code decides what it does.
    pub connect_timeout: Option<Duration>,
}

/// TLS requirement for MySQL connections, ordered from weakest to strongest.
///
/// The variants and their `Display` names are those of MySqlConnector's `MySqlSslMode`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SslMode {
    /// No TLS.
    None,
    /// TLS when the server supports it, otherwise plain text.
    #[default]
    Preferred,
    /// TLS without certificate checks.
    Required,
    /// TLS with a certificate signed by a trusted authority, for any host name.
    VerifyCa,
    /// TLS with a trusted certificate that also matches the host name.
    VerifyFull,
}

/// Invalid `DATABASE_URL` value.
///
/// Neither `Display` nor `Debug` contains the password from the input.
#[derive(Debug, thiserror::Error)]
#[error("invalid DATABASE_URL: {}{message}", key_prefix(.key.as_deref()))]
pub struct DatabaseUrlError {
    key: Option<String>,
    message: String,
}

impl DatabaseUrlError {
    /// Returns the key or URL part that the error concerns, as the input spells it.
    pub fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }
}

fn key_prefix(key: Option<&str>) -> String {
    match key {
        Some(key) => format!("key `{key}`: "),
        None => String::new(),
    }
}

impl DatabaseUrl {
    /// Parses a URL or a .NET connection string. Whitespace around the input is ignored.
    pub fn parse(input: &str) -> Result<Self, DatabaseUrlError> {
        let input = input.trim();
        if input.is_empty() {
            let message = format!("the value is empty; {FORM_EXAMPLES}");
            return Err(Redactor::default().error(None, message));
        }

        match classify(input) {
            InputForm::Url { scheme, rest } => parse_url(scheme, rest),
            InputForm::SqliteMemory { scheme, rest } => parse_sqlite_memory(scheme, rest),
            InputForm::UrlWithoutSlashes { scheme } => {
                let message = format!(
                    "the URL is missing `//` after `{scheme}:`; write {scheme}://... \
                     (for example sqlite://data/ally.db)"
                );
                Err(Redactor::default().error(None, message))
            }
            InputForm::ConnectionString => parse_connection_string(input),
        }
    }

    /// Formats the target for logs, with any password replaced by `****`.
    pub fn redacted(&self) -> String {
        match self {
            DatabaseUrl::Sqlite(target) => target.redacted(),
            DatabaseUrl::Mysql(target) => target.redacted(),
        }
    }

    /// Returns `"sqlite"` or `"mysql"`.
    pub fn backend_name(&self) -> &'static str {
        match self {
            DatabaseUrl::Sqlite(_) => "sqlite",
            DatabaseUrl::Mysql(_) => "mysql",
        }
    }
}

impl FromStr for DatabaseUrl {
    type Err = DatabaseUrlError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        Self::parse(input)
    }
}

impl SqliteTarget {
    /// Formats the target as a `sqlite:` URL that [`DatabaseUrl::parse`] reads back.
    pub fn redacted(&self) -> String {
        match &self.path {
            SqlitePath::Memory => "sqlite::memory:".to_owned(),
            SqlitePath::File(path) => {
                let path = path.to_string_lossy();
                format!("sqlite://{}", utf8_percent_encode(&path, ESCAPED_IN_PATHS))
            }
        }
    }
}

impl MysqlTarget {
    /// Formats the target as a `mysql://` URL with the password replaced by `****`.
    ///
    /// Without the `****`, the result parses back to an equal target without a password,
    /// provided the paths are valid UTF-8.
    pub fn redacted(&self) -> String {
        let mut url = format!(
            "mysql://{}",
            utf8_percent_encode(&self.user, ESCAPED_IN_NAMES)
        );
        if self.password.is_some() {
            url.push_str(":****");
        }
        url.push('@');
        if self.host.contains(':') {
            url.push_str(&format!("[{}]", self.host));
        } else {
            url.push_str(&self.host);
        }
        url.push_str(&format!(
            ":{}/{}?sslmode={}",
            self.port,
            utf8_percent_encode(&self.database, ESCAPED_IN_NAMES),
            self.ssl_mode
        ));

        let paths = [
            ("sslca", &self.ssl_ca),
            ("sslcert", &self.ssl_cert),
            ("sslkey", &self.ssl_key),
        ];
        for (name, path) in paths {
            if let Some(path) = path {
                let path = path.to_string_lossy();
                let encoded = utf8_percent_encode(&path, ESCAPED_IN_PATHS);
                url.push_str(&format!("&{name}={encoded}"));
            }
        }
        if let Some(timeout) = self.connect_timeout {
            url.push_str(&format!("&connecttimeout={}", timeout.as_secs()));
        }
        url
    }
}

impl SslMode {
    /// Reads a mode name, ignoring case, spaces, `-` and `_`. Accepts MySqlConnector's
    /// names plus the MySQL client's `DISABLED`, `VERIFY_CA` and `VERIFY_IDENTITY`.
    fn from_name(name: &str) -> Option<SslMode> {
        match normalize_name(name).as_str() {
            "none" | "disabled" => Some(SslMode::None),
            "preferred" => Some(SslMode::Preferred),
            "required" => Some(SslMode::Required),
            "verifyca" => Some(SslMode::VerifyCa),
            "verifyfull" | "verifyidentity" => Some(SslMode::VerifyFull),
            _ => None,
        }
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            SslMode::None => "None",
            SslMode::Preferred => "Preferred",
            SslMode::Required => "Required",
            SslMode::VerifyCa => "VerifyCA",
            SslMode::VerifyFull => "VerifyFull",
        };
        formatter.write_str(name)
    }
}

impl FromStr for SslMode {
    type Err = DatabaseUrlError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        let redactor = Redactor::default();
        SslMode::from_name(name).ok_or_else(|| {
            let message = ssl_mode_message(name, &redactor);
            redactor.error(None, message)
        })
    }
}

fn ssl_mode_message(value: &str, redactor: &Redactor) -> String {
    format!(
        "unknown SSL mode{}; valid values are {SSL_MODE_CHOICES}",
        redactor.got(value)
    )
}

// ---------------------------------------------------------------------------
// Input form detection
// ---------------------------------------------------------------------------

enum InputForm<'a> {
    /// `scheme://rest`
    Url {
        scheme: &'a str,
        rest: &'a str,
    },
    /// `sqlite::memory:` followed by `rest`
    SqliteMemory {
        scheme: &'a str,
        rest: &'a str,
    },
    /// `scheme:rest` with a known scheme but without `//`
    UrlWithoutSlashes {
        scheme: &'a str,
    },
    ConnectionString,
}

enum Backend {
    Sqlite { sqlalchemy: bool },
    Mysql,
}

fn classify(input: &str) -> InputForm<'_> {
    let Some((scheme, after_colon)) = split_scheme(input) else {
        return InputForm::ConnectionString;
    };
    if let Some(rest) = after_colon.strip_prefix("//") {
        return InputForm::Url { scheme, rest };
    }

    let backend = backend_for_scheme(scheme);
    if let Some(Backend::Sqlite { sqlalchemy: false }) = backend
        && let Some(rest) = after_colon.strip_prefix(":memory:")
    {
        return InputForm::SqliteMemory { scheme, rest };
    }
    if backend.is_some() {
        return InputForm::UrlWithoutSlashes { scheme };
    }
    InputForm::ConnectionString
}

/// Splits `scheme:rest` where the scheme matches `[A-Za-z][A-Za-z0-9+._-]*`.
///
/// `_` is allowed beyond RFC 3986 because SQLAlchemy driver names may contain it.
fn split_scheme(input: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = input.split_once(':')?;
    let mut chars = scheme.chars();
    let first = chars.next()?;
    let valid = first.is_ascii_alphabetic()
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '.' | '-' | '_'));
    valid.then_some((scheme, rest))
}

fn backend_for_scheme(scheme: &str) -> Option<Backend> {
    let scheme = scheme.to_ascii_lowercase();
    let (base, driver) = match scheme.split_once('+') {
        Some((base, driver)) => (base, Some(driver)),
        None => (scheme.as_str(), None),
    };
    if let Some(driver) = driver {
        let valid_driver = !driver.is_empty()
            && driver
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid_driver {
            return None;
        }
    }

    match base {
        "sqlite" => Some(Backend::Sqlite {
            sqlalchemy: driver.is_some(),
        }),
        "mysql" | "mariadb" => Some(Backend::Mysql),
        _ => None,
    }
}
