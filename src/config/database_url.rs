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

use std::fmt;
use std::net::Ipv6Addr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use secrecy::SecretString;

/// Port used when neither the URL nor the connection string sets one.
pub const DEFAULT_MYSQL_PORT: u16 = 3306;

/// Maximum number of characters of an input value repeated in an error message.
const MAX_ECHO_CHARS: usize = 40;

/// Length of the shortest run of password characters that an echoed value may not contain.
const SECRET_RUN_CHARS: usize = 3;

const ACCEPTED_SCHEMES: &str =
    "sqlite, sqlite+DRIVER, mysql, mysql+DRIVER, mariadb and mariadb+DRIVER";

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
                format!("sqlite://{}", percent_encode(&path.to_string_lossy(), true))
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
        let mut url = format!("mysql://{}", percent_encode(&self.user, false));
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
            percent_encode(&self.database, false),
            self.ssl_mode
        ));

        let paths = [
            ("sslca", &self.ssl_ca),
            ("sslcert", &self.ssl_cert),
            ("sslkey", &self.ssl_key),
        ];
        for (name, path) in paths {
            if let Some(path) = path {
                let encoded = percent_encode(&path.to_string_lossy(), true);
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

fn parse_url(scheme: &str, rest: &str) -> Result<DatabaseUrl, DatabaseUrlError> {
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

fn parse_sqlite_memory(scheme: &str, rest: &str) -> Result<DatabaseUrl, DatabaseUrlError> {
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
// .NET connection strings
// ---------------------------------------------------------------------------

/// One `key=value` setting of a connection string.
struct Setting<'a> {
    key: &'a str,
    value: String,
    quoted: bool,
}

fn parse_connection_string(input: &str) -> Result<DatabaseUrl, DatabaseUrlError> {
    let settings = split_settings(input)?;
    if settings.is_empty() {
        let message = format!("the value contains no settings; {FORM_EXAMPLES}");
        return Err(Redactor::default().error(None, message));
    }

    let redactor = redactor_for(&settings);
    let mut parsed = Settings::default();
    for (index, setting) in settings.iter().enumerate() {
        let after_password = index > 0 && follows_unquoted_password(&settings[index - 1]);
        // After an unquoted password, the value may be the rest of a password that
        // contained `;`, so it is never echoed.
        let extended_redactor;
        let setting_redactor = if after_password {
            extended_redactor = redactor.with_secret(&setting.value);
            &extended_redactor
        } else {
            &redactor
        };
        parsed.apply(
            setting.key,
            &setting.value,
            Syntax::ConnectionString,
            setting_redactor,
            after_password,
        )?;
    }
    parsed.finish(&redactor).map(DatabaseUrl::Mysql)
}

/// Splits a connection string into settings with MySqlConnector's quoting rules.
///
/// Settings are separated by `;`, and empty ones are skipped. Whitespace around keys and
/// around unquoted values is dropped. A value starting with `'` or `"` runs to the
/// matching quote, `;` and `=` inside it are literal, and the quote character is written
/// twice to include it. An unquoted value runs to the next `;` and may contain `=`.
fn split_settings(input: &str) -> Result<Vec<Setting<'_>>, DatabaseUrlError> {
    let mut settings: Vec<Setting<'_>> = Vec::new();
    let mut position = 0;

    while position < input.len() {
        let rest = &input[position..];
        let delimiter = rest.find([';', '=']);
        let Some(equals) = delimiter.filter(|&index| rest.as_bytes()[index] == b'=') else {
            let end = delimiter.unwrap_or(rest.len());
            if rest[..end].trim().is_empty() {
                position += end + 1;
                continue;
            }
            return Err(missing_equals_error(input, settings.len() + 1));
        };

        let key = rest[..equals].trim();
        if key.is_empty() {
            let message = format!(
                "setting {} has an empty key before `=`; write each setting as KEY=VALUE",
                settings.len() + 1
            );
            return Err(redactor_for(&settings).error(None, message));
        }

        let after_equals = &rest[equals + 1..];
        let value_text = after_equals.trim_start();
        let value_offset = input.len() - value_text.len();

        match value_text.chars().next() {
            Some(quote @ ('\'' | '"')) => {
                let Some((value, length)) = read_quoted(&value_text[1..], quote) else {
                    let message = format!(
                        "the quoted value has no closing {quote} quote; close it, and write \
                         the quote character twice where the value contains it"
                    );
                    return Err(setting_error(&settings, key, message));
                };
                let after_quote = &value_text[1 + length..];
                let trailing = after_quote.trim_start();
                if !trailing.is_empty() && !trailing.starts_with(';') {
                    let message = format!(
                        "unexpected text after the closing {quote} quote; end the setting \
                         with `;`, or write the quote character twice where the value \
                         contains it"
                    );
                    return Err(setting_error(&settings, key, message));
                }
                settings.push(Setting {
                    key,
                    value,
                    quoted: true,
                });
                position = input.len() - trailing.len() + 1;
            }
            _ => {
                let end = value_text.find(';').unwrap_or(value_text.len());
                settings.push(Setting {
                    key,
                    value: value_text[..end].trim_end().to_owned(),
                    quoted: false,
                });
                position = value_offset + end + 1;
            }
        }
    }
    Ok(settings)
}

/// Reads a quoted value after its opening quote. Returns the value and the length of the
/// text it used up, closing quote included, or `None` when the closing quote is missing.
fn read_quoted(text: &str, quote: char) -> Option<(String, usize)> {
    let mut value = String::new();
    let mut chars = text.char_indices().peekable();
    while let Some((index, c)) = chars.next() {
        if c != quote {
            value.push(c);
        } else if chars.next_if(|&(_, next)| next == quote).is_some() {
            value.push(quote);
        } else {
            return Some((value, index + c.len_utf8()));
        }
    }
    None
}

/// Builds an error about a key found while splitting, before all passwords are known.
fn setting_error(settings: &[Setting<'_>], key: &str, message: String) -> DatabaseUrlError {
    let redactor = redactor_for(settings);
    if settings.last().is_some_and(follows_unquoted_password) {
        let message = format!("{message} (in the setting after the password)");
        return redactor.error(None, message);
    }
    redactor.error(Some(key), message)
}

/// Reports a setting without `=`. The text is never echoed because it may be the part
/// of an unquoted password after a `;`.
fn missing_equals_error(input: &str, number: usize) -> DatabaseUrlError {
    let message = if input.contains('=') {
        format!(
            "setting {number} has no `=`; write each setting as KEY=VALUE, and enclose \
             values that contain `;` in quotes, such as Password='a;b'"
        )
    } else {
        format!("the value is neither a URL nor a connection string; {FORM_EXAMPLES}")
    };
    Redactor::default().error(None, message)
}

fn redactor_for(settings: &[Setting<'_>]) -> Redactor {
    let passwords = settings
        .iter()
        .filter(|setting| OptionKey::find(setting.key) == Some(OptionKey::Password))
        .map(|setting| setting.value.as_str());
    Redactor::new(passwords)
}

/// Tells whether a setting is an unquoted password, after which a stray key may be the
/// rest of a password that contained `;`.
fn follows_unquoted_password(setting: &Setting<'_>) -> bool {
    !setting.quoted && OptionKey::find(setting.key) == Some(OptionKey::Password)
}

// ---------------------------------------------------------------------------
// Keys and values shared by connection strings and URL query parameters
// ---------------------------------------------------------------------------

/// Options known to the parser.
///
/// Names and synonyms follow MySqlConnector's `MySqlConnectionStringBuilder`
/// (mysql-net/MySqlConnector, src/MySqlConnector/MySqlConnectionStringBuilder.cs).
/// MySqlConnector compares keys ignoring case only. This parser also ignores spaces, `-`
/// and `_`, which accepts the MySQL client spellings such as `ssl-mode` and `ssl_ca`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OptionKey {
    Server,
    Port,
    UserId,
    Password,
    Database,
    SslMode,
    SslCa,
    SslCert,
    SslKey,
    ConnectionTimeout,
    CharacterSet,
    /// MySqlConnector's PKCS #12 client certificate, which Ally does not support.
    CertificateFile,
}

impl OptionKey {
    fn find(key: &str) -> Option<OptionKey> {
        let option = match normalize_name(key).as_str() {
            "server" | "host" | "datasource" | "address" | "addr" | "networkaddress" => {
                OptionKey::Server
            }
            "port" => OptionKey::Port,
            "userid" | "username" | "uid" | "user" => OptionKey::UserId,
            "password" | "pwd" => OptionKey::Password,
            "database" | "initialcatalog" => OptionKey::Database,
            "sslmode" => OptionKey::SslMode,
            "sslca" | "cacertificatefile" => OptionKey::SslCa,
            "sslcert" => OptionKey::SslCert,
            "sslkey" => OptionKey::SslKey,
            "connectiontimeout" | "connecttimeout" => OptionKey::ConnectionTimeout,
            "characterset" | "charset" => OptionKey::CharacterSet,
            "certificatefile" => OptionKey::CertificateFile,
            _ => return None,
        };
        Some(option)
    }

    /// MySqlConnector's main name for the option.
    fn canonical_name(self) -> &'static str {
        match self {
            OptionKey::Server => "Server",
            OptionKey::Port => "Port",
            OptionKey::UserId => "User ID",
            OptionKey::Password => "Password",
            OptionKey::Database => "Database",
            OptionKey::SslMode => "SSL Mode",
            OptionKey::SslCa => "SSL CA",
            OptionKey::SslCert => "SSL Cert",
            OptionKey::SslKey => "SSL Key",
            OptionKey::ConnectionTimeout => "Connection Timeout",
            OptionKey::CharacterSet => "Character Set",
            OptionKey::CertificateFile => "Certificate File",
        }
    }

    /// Tells whether a URL sets the option outside its query string.
    fn is_url_part(self) -> bool {
        matches!(
            self,
            OptionKey::Server
                | OptionKey::Port
                | OptionKey::UserId
                | OptionKey::Password
                | OptionKey::Database
        )
    }
}

fn normalize_name(name: &str) -> String {
    name.chars()
        .filter(|c| !c.is_whitespace() && *c != '-' && *c != '_')
        .flat_map(char::to_lowercase)
        .collect()
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Syntax {
    ConnectionString,
    UrlQuery,
}

/// Options collected from the input, before defaults and required keys are checked.
#[derive(Default)]
struct Settings {
    /// Options already set, with the key as the input spells it.
    seen: Vec<(OptionKey, String)>,
    host: Option<String>,
    port: Option<u16>,
    user: Option<String>,
    password: Option<String>,
    database: Option<String>,
    ssl_mode: Option<SslMode>,
    ssl_ca: Option<PathBuf>,
    ssl_cert: Option<PathBuf>,
    ssl_key: Option<PathBuf>,
    connect_timeout: Option<Duration>,
}

impl Settings {
    /// Records one option. `hide_key` keeps an unknown key out of the error because it may
    /// be part of a password.
    fn apply(
        &mut self,
        key: &str,
        value: &str,
        syntax: Syntax,
        redactor: &Redactor,
        hide_key: bool,
    ) -> Result<(), DatabaseUrlError> {
        let Some(option) = OptionKey::find(key) else {
            return Err(unknown_key_error(key, syntax, redactor, hide_key));
        };
        if syntax == Syntax::UrlQuery && option.is_url_part() {
            let message = "this belongs in the URL itself, not in the query string: \
                           write SCHEME://USER:PASSWORD@HOST:PORT/DATABASE";
            return Err(redactor.error(Some(key), message));
        }
        if let Some((_, first)) = self.seen.iter().find(|(seen, _)| *seen == option) {
            let first = redactor
                .quote(first)
                .unwrap_or_else(|| "an earlier key".to_owned());
            let message = format!(
                "the earlier key {first} already sets the same option; set each option once, \
                 because a later value would silently replace the earlier one"
            );
            return Err(redactor.error(Some(key), message));
        }
        self.seen.push((option, key.to_owned()));

        match option {
            OptionKey::Server => self.host = Some(parse_server(value, key, redactor)?),
            OptionKey::Port => self.port = Some(parse_port(value, key, redactor)?),
            OptionKey::UserId => self.user = Some(value.to_owned()),
            OptionKey::Password => self.password = Some(value.to_owned()),
            OptionKey::Database => self.database = Some(value.to_owned()),
            OptionKey::SslMode => {
                let mode = SslMode::from_name(value)
                    .ok_or_else(|| redactor.error(Some(key), ssl_mode_message(value, redactor)))?;
                self.ssl_mode = Some(mode);
            }
            OptionKey::SslCa => self.ssl_ca = Some(parse_file_path(value, key, redactor)?),
            OptionKey::SslCert => self.ssl_cert = Some(parse_file_path(value, key, redactor)?),
            OptionKey::SslKey => self.ssl_key = Some(parse_file_path(value, key, redactor)?),
            OptionKey::ConnectionTimeout => {
                self.connect_timeout = Some(parse_timeout(value, key, redactor)?)
            }
            OptionKey::CharacterSet => {
                if !value.trim().eq_ignore_ascii_case("utf8mb4") {
                    let message = format!(
                        "Ally always uses the utf8mb4 character set{}; \
                         remove the key or set it to utf8mb4",
                        redactor.got(value)
                    );
                    return Err(redactor.error(Some(key), message));
                }
            }
            OptionKey::CertificateFile => {
                let message = "PKCS #12 client certificates are not supported; \
                               set SslCert and SslKey to PEM files instead";
                return Err(redactor.error(Some(key), message));
            }
        }
        Ok(())
    }

    /// Returns the key spelling used for an option, or its canonical name when unset.
    fn spelling(&self, option: OptionKey) -> &str {
        self.seen
            .iter()
            .find(|(seen, _)| *seen == option)
            .map_or(option.canonical_name(), |(_, key)| key.as_str())
    }

    /// Checks required options and cross-option rules, and fills in defaults.
    fn finish(self, redactor: &Redactor) -> Result<MysqlTarget, DatabaseUrlError> {
        let Some(host) = self.host.clone() else {
            let message = "missing server; add Server=HOST with a host name or IP address";
            return Err(redactor.error(Some("Server"), message));
        };

        let user = self.user.clone().unwrap_or_default();
        if user.is_empty() {
            let mut message = "missing user name; add User ID=USER".to_owned();
            if looks_like_sqlite_file(&host) {
                message.push_str(
                    ". Connection strings always describe MySQL; \
                     for SQLite, use a URL such as sqlite://data/ally.db",
                );
            }
            return Err(redactor.error(Some(self.spelling(OptionKey::UserId)), message));
        }

        let database = self.database.clone().unwrap_or_default();
        if database.is_empty() {
            let message = "missing database name; add Database=NAME";
            return Err(redactor.error(Some(self.spelling(OptionKey::Database)), message));
        }

        match (&self.ssl_cert, &self.ssl_key) {
            (Some(_), None) => {
                let message = "a client certificate needs its private key; \
                               set SslKey as well, or remove this key";
                return Err(redactor.error(Some(self.spelling(OptionKey::SslCert)), message));
            }
            (None, Some(_)) => {
                let message = "a client private key needs its certificate; \
                               set SslCert as well, or remove this key";
                return Err(redactor.error(Some(self.spelling(OptionKey::SslKey)), message));
            }
            _ => {}
        }

        Ok(MysqlTarget {
            host,
            port: self.port.unwrap_or(DEFAULT_MYSQL_PORT),
            user,
            password: self
                .password
                .filter(|password| !password.is_empty())
                .map(SecretString::from),
            database,
            ssl_mode: self.ssl_mode.unwrap_or_default(),
            ssl_ca: self.ssl_ca,
            ssl_cert: self.ssl_cert,
            ssl_key: self.ssl_key,
            connect_timeout: self.connect_timeout,
        })
    }
}

fn unknown_key_error(
    key: &str,
    syntax: Syntax,
    redactor: &Redactor,
    hide_key: bool,
) -> DatabaseUrlError {
    match syntax {
        Syntax::ConnectionString if hide_key => {
            let message = "unknown key in the setting after the password; if the password \
                           contains `;`, enclose it in quotes, such as Password='a;b'";
            redactor.error(None, message)
        }
        Syntax::ConnectionString => {
            let message = "unknown key; supported keys are Server, Port, User ID, Password, \
                           Database, SslMode, SslCa, SslCert, SslKey, Connection Timeout and \
                           Character Set, with their MySqlConnector synonyms";
            redactor.error(Some(key), message)
        }
        Syntax::UrlQuery => {
            let message = "unknown query parameter; supported parameters are ssl-mode, ssl-ca, \
                           ssl-cert, ssl-key, connect-timeout and charset, also spelled as in \
                           MySqlConnector (such as SslMode)";
            redactor.error(Some(key), message)
        }
    }
}

fn looks_like_sqlite_file(host: &str) -> bool {
    let host = host.to_ascii_lowercase();
    [".db", ".sqlite", ".sqlite3"]
        .iter()
        .any(|extension| host.ends_with(extension))
}

/// Parses a connection string `Server` value: one host name, IPv4 address, or IPv6
/// address with or without brackets.
fn parse_server(value: &str, key: &str, redactor: &Redactor) -> Result<String, DatabaseUrlError> {
    let value = value.trim();
    if value.is_empty() {
        let message = "the host is empty; set it to a host name or IP address";
        return Err(redactor.error(Some(key), message));
    }
    if value.contains(',') {
        let message = format!(
            "several hosts are listed{}; Ally connects to a single server, so set one host",
            redactor.got(value)
        );
        return Err(redactor.error(Some(key), message));
    }
    if value.starts_with('/') || value.starts_with("./") {
        let message = format!(
            "Unix socket paths are not supported{}; set a host name or IP address \
             and the TCP port",
            redactor.got(value)
        );
        return Err(redactor.error(Some(key), message));
    }
    if let Some(bracketed) = value.strip_prefix('[') {
        let Some(inner) = bracketed.strip_suffix(']') else {
            let message = format!(
                "a bracketed IPv6 address must end with `]` and cannot carry a port{}; \
                 set the port with the Port key",
                redactor.got(value)
            );
            return Err(redactor.error(Some(key), message));
        };
        return parse_ipv6(inner, key, redactor);
    }
    if value.contains(':') {
        if value.parse::<Ipv6Addr>().is_ok() {
            return Ok(value.to_owned());
        }
        let message = format!(
            "not a valid host{}; set the port with the Port key, \
             and write IPv6 addresses as ::1 or [::1]",
            redactor.got(value)
        );
        return Err(redactor.error(Some(key), message));
    }
    parse_host_name(value, key, redactor)
}

/// Checks a host name or IPv4 address: ASCII letters, digits, `-`, `.` and `_`.
fn parse_host_name(host: &str, key: &str, redactor: &Redactor) -> Result<String, DatabaseUrlError> {
    if host.is_empty() {
        let message = "the host is empty; set it to a host name or IP address";
        return Err(redactor.error(Some(key), message));
    }
    let invalid = host
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_')));
    if let Some(invalid) = invalid {
        let mut message = format!(
            "not a valid host name{}: it contains {}",
            redactor.got(host),
            redactor
                .quote(&invalid.to_string())
                .unwrap_or_else(|| "a character that is not allowed".to_owned())
        );
        if !invalid.is_ascii() {
            message.push_str("; write international names in their xn-- (Punycode) form");
        }
        return Err(redactor.error(Some(key), message));
    }
    Ok(host.to_owned())
}

/// Checks an IPv6 address given without brackets and returns it unchanged.
///
/// NOTE: zone indices such as `fe80::1%eth0` are rejected because `Ipv6Addr` cannot hold them.
fn parse_ipv6(address: &str, key: &str, redactor: &Redactor) -> Result<String, DatabaseUrlError> {
    if address.parse::<Ipv6Addr>().is_err() {
        let message = format!(
            "not a valid IPv6 address{}; zone indices such as %eth0 are not supported",
            redactor.got(address)
        );
        return Err(redactor.error(Some(key), message));
    }
    Ok(address.to_owned())
}

fn parse_port(value: &str, key: &str, redactor: &Redactor) -> Result<u16, DatabaseUrlError> {
    let digits = value.trim();
    let port = Some(digits)
        .filter(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|digits| digits.parse::<u16>().ok())
        .filter(|&port| port != 0);
    port.ok_or_else(|| {
        let message = format!(
            "port must be a number from 1 to 65535{}",
            redactor.got(value)
        );
        redactor.error(Some(key), message)
    })
}

/// Parses whole seconds from 0 to `u32::MAX`, the range of MySqlConnector's
/// `ConnectionTimeout`.
fn parse_timeout(
    value: &str,
    key: &str,
    redactor: &Redactor,
) -> Result<Duration, DatabaseUrlError> {
    let digits = value.trim();
    let seconds = Some(digits)
        .filter(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|digits| digits.parse::<u32>().ok());
    match seconds {
        Some(seconds) => Ok(Duration::from_secs(u64::from(seconds))),
        None => {
            let message = format!(
                "the timeout must be a whole number of seconds from 0 to {}{}",
                u32::MAX,
                redactor.got(value)
            );
            Err(redactor.error(Some(key), message))
        }
    }
}

fn parse_file_path(
    value: &str,
    key: &str,
    redactor: &Redactor,
) -> Result<PathBuf, DatabaseUrlError> {
    if value.trim().is_empty() {
        let message = "the file path is empty; set it to a PEM file or remove the key";
        return Err(redactor.error(Some(key), message));
    }
    Ok(PathBuf::from(value))
}

// ---------------------------------------------------------------------------
// Percent-encoding
// ---------------------------------------------------------------------------

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
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'%' => {
                let high = bytes.get(index + 1).and_then(|&b| hex_value(b));
                let low = bytes.get(index + 2).and_then(|&b| hex_value(b));
                let (Some(high), Some(low)) = (high, low) else {
                    return Err(DecodeError::InvalidEscape);
                };
                decoded.push(high << 4 | low);
                index += 3;
            }
            b'+' if plus_as_space => {
                decoded.push(b' ');
                index += 1;
            }
            byte => {
                decoded.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8(decoded).map_err(|_| DecodeError::InvalidUtf8)
}

fn hex_value(byte: u8) -> Option<u8> {
    char::from(byte)
        .to_digit(16)
        .and_then(|digit| u8::try_from(digit).ok())
}

/// Encodes every byte except RFC 3986 unreserved characters, and `/` when `keep_slash`.
fn percent_encode(text: &str, keep_slash: bool) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        let unreserved = byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~');
        if unreserved || (keep_slash && byte == b'/') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

// ---------------------------------------------------------------------------
// Keeping passwords out of errors
// ---------------------------------------------------------------------------

/// Builds errors that never show a password found in the input.
#[derive(Default)]
struct Redactor {
    /// Non-empty passwords, as characters.
    secrets: Vec<Vec<char>>,
}

impl Redactor {
    fn new<'a>(secrets: impl IntoIterator<Item = &'a str>) -> Self {
        let secrets = secrets
            .into_iter()
            .filter(|secret| !secret.is_empty())
            .map(|secret| secret.chars().collect())
            .collect();
        Redactor { secrets }
    }

    /// Returns a copy that also hides `secret`.
    fn with_secret(&self, secret: &str) -> Redactor {
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
    fn quote(&self, text: &str) -> Option<String> {
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
    fn got(&self, text: &str) -> String {
        self.quote(text)
            .map(|quoted| format!(", got {quoted}"))
            .unwrap_or_default()
    }

    /// Builds an error, leaving out an unrecognised key that would reveal part of a
    /// password.
    ///
    /// Callers take every piece of input text in the message from `quote` or `got`.
    fn error(&self, key: Option<&str>, message: impl Into<String>) -> DatabaseUrlError {
        let key = key
            .filter(|key| OptionKey::find(key).is_some() || !self.reveals_secret(key))
            .map(str::to_owned);
        DatabaseUrlError {
            key,
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    const PASSWORD: &str = "S3cr3t-Pl4nt";

    // -----------------------------------------------------------------------
    // Accepted MySQL inputs
    // -----------------------------------------------------------------------

    struct MysqlExpect {
        host: &'static str,
        port: u16,
        user: &'static str,
        password: Option<&'static str>,
        database: &'static str,
        ssl_mode: SslMode,
        ssl_ca: Option<&'static str>,
        ssl_cert: Option<&'static str>,
        ssl_key: Option<&'static str>,
        connect_timeout: Option<u64>,
    }

    const BASE: MysqlExpect = MysqlExpect {
        host: "db.example.com",
        port: 3306,
        user: "ally",
        password: Some(PASSWORD),
        database: "ally",
        ssl_mode: SslMode::Preferred,
        ssl_ca: None,
        ssl_cert: None,
        ssl_key: None,
        connect_timeout: None,
    };

    struct MysqlCase {
        name: &'static str,
        input: &'static str,
        expect: MysqlExpect,
    }

    fn check_mysql_cases(cases: &[MysqlCase]) {
        for case in cases {
            let name = case.name;
            let parsed = DatabaseUrl::parse(case.input)
                .unwrap_or_else(|error| panic!("{name}: rejected: {error}"));
            let DatabaseUrl::Mysql(target) = parsed else {
                panic!("{name}: parsed as SQLite");
            };
            let expect = &case.expect;
            assert_eq!(target.host, expect.host, "{name}: host");
            assert_eq!(target.port, expect.port, "{name}: port");
            assert_eq!(target.user, expect.user, "{name}: user");
            assert_eq!(
                target.password.as_ref().map(|p| p.expose_secret()),
                expect.password,
                "{name}: password"
            );
            assert_eq!(target.database, expect.database, "{name}: database");
            assert_eq!(target.ssl_mode, expect.ssl_mode, "{name}: ssl_mode");
            assert_eq!(
                target.ssl_ca,
                expect.ssl_ca.map(PathBuf::from),
                "{name}: ssl_ca"
            );
            assert_eq!(
                target.ssl_cert,
                expect.ssl_cert.map(PathBuf::from),
                "{name}: ssl_cert"
            );
            assert_eq!(
                target.ssl_key,
                expect.ssl_key.map(PathBuf::from),
                "{name}: ssl_key"
            );
            assert_eq!(
                target.connect_timeout,
                expect.connect_timeout.map(Duration::from_secs),
                "{name}: connect_timeout"
            );
        }
    }

    #[test]
    fn dotnet_accepts() {
        check_mysql_cases(&[
            MysqlCase {
                name: "dotnet_basic",
                input: "Server=db.example.com;User ID=ally;Password=S3cr3t-Pl4nt;Database=ally",
                expect: BASE,
            },
            MysqlCase {
                name: "dotnet_host_synonym",
                input: "Host=db.example.com;Uid=ally;Pwd=S3cr3t-Pl4nt;Initial Catalog=ally",
                expect: BASE,
            },
            MysqlCase {
                name: "dotnet_data_source",
                input: "Data Source=db.example.com;UserID=ally;Password=S3cr3t-Pl4nt;Database=ally",
                expect: BASE,
            },
            MysqlCase {
                name: "dotnet_datasource",
                input: "DataSource=db.example.com;User Id=ally;Password=S3cr3t-Pl4nt;Database=ally",
                expect: BASE,
            },
            MysqlCase {
                name: "dotnet_address",
                input: "Address=db.example.com;Username=ally;Password=S3cr3t-Pl4nt;Database=ally",
                expect: BASE,
            },
            MysqlCase {
                name: "dotnet_addr",
                input: "Addr=db.example.com;User name=ally;Password=S3cr3t-Pl4nt;Database=ally",
                expect: BASE,
            },
            MysqlCase {
                name: "dotnet_network_address",
                input: "Network Address=db.example.com;User=ally;Password=S3cr3t-Pl4nt;Database=ally",
                expect: BASE,
            },
            MysqlCase {
                name: "dotnet_underscore_key",
                input: "server=db.example.com;user_id=ally;password=S3cr3t-Pl4nt;database=ally",
                expect: BASE,
            },
            MysqlCase {
                name: "dotnet_mixed_case",
                input: "SERVER=db.example.com;uSeR iD=ally;PaSsWoRd=S3cr3t-Pl4nt;DATABASE=ally",
                expect: BASE,
            },
            MysqlCase {
                name: "dotnet_quoted_semicolon",
                input: "Server=db.example.com;User ID=ally;Password='a;b=c';Database=ally",
                expect: MysqlExpect {
                    password: Some("a;b=c"),
                    ..BASE
                },
            },
            MysqlCase {
                name: "dotnet_doubled_single_quote",
                input: "Server=db.example.com;User ID=ally;Password='it''s;x';Database=ally",
                expect: MysqlExpect {
                    password: Some("it's;x"),
                    ..BASE
                },
            },
            MysqlCase {
                name: "dotnet_doubled_double_quote",
                input: r#"Server=db.example.com;User ID=ally;Password="say ""hi"";=";Database=ally"#,
                expect: MysqlExpect {
                    password: Some(r#"say "hi";="#),
                    ..BASE
                },
            },
            MysqlCase {
                name: "dotnet_other_quote_literal",
                input: r#"Server=db.example.com;User ID=ally;Password='a"b';Database="x'y""#,
                expect: MysqlExpect {
                    password: Some(r#"a"b"#),
                    database: "x'y",
                    ..BASE
                },
            },
            MysqlCase {
                name: "dotnet_whitespace_everywhere",
                input: "  Server = db.example.com ;\tUser ID =  ally ; Password = ' pw ' ; Database = my db ;; ",
                expect: MysqlExpect {
                    password: Some(" pw "),
                    database: "my db",
                    ..BASE
                },
            },
            MysqlCase {
                name: "dotnet_unquoted_equals",
                input: "Server=db.example.com;User ID=ally;Password=a=b==;Database=ally",
                expect: MysqlExpect {
                    password: Some("a=b=="),
                    ..BASE
                },
            },
            MysqlCase {
                name: "dotnet_raw_reserved_password",
                input: "Server=db.example.com;User ID=ally;Password=p@ss:w/rd?#%&'\";Database=ally",
                expect: MysqlExpect {
                    password: Some("p@ss:w/rd?#%&'\""),
                    ..BASE
                },
            },
            MysqlCase {
                name: "dotnet_quoted_reserved_password",
                input: "Server=db.example.com;User ID=ally;Password='p@ss:w/rd?#%&=;''';Database=ally",
                expect: MysqlExpect {
                    password: Some("p@ss:w/rd?#%&=;'"),
                    ..BASE
                },
            },
            MysqlCase {
                name: "dotnet_no_password",
                input: "Server=db.example.com;User ID=ally;Database=ally",
                expect: MysqlExpect {
                    password: None,
                    ..BASE
                },
            },
            MysqlCase {
                name: "dotnet_empty_password",
                input: "Server=db.example.com;User ID=ally;Password=;Database=ally",
                expect: MysqlExpect {
                    password: None,
                    ..BASE
                },
            },
            MysqlCase {
                name: "dotnet_port",
                input: "Server=db.example.com;Port=3307;User ID=ally;Password=S3cr3t-Pl4nt;Database=ally",
                expect: MysqlExpect { port: 3307, ..BASE },
            },
            MysqlCase {
                name: "dotnet_port_bounds",
                input: "Server=db.example.com;Port= 65535 ;User ID=ally;Password=S3cr3t-Pl4nt;Database=ally",
                expect: MysqlExpect {
                    port: 65535,
                    ..BASE
                },
            },
            MysqlCase {
                name: "dotnet_port_one",
                input: "Server=db.example.com;Port=1;User ID=ally;Password=S3cr3t-Pl4nt;Database=ally",
                expect: MysqlExpect { port: 1, ..BASE },
            },
            MysqlCase {
                name: "dotnet_ipv4",
                input: "Server=192.0.2.10;User ID=ally;Password=S3cr3t-Pl4nt;Database=ally",
                expect: MysqlExpect {
                    host: "192.0.2.10",
                    ..BASE
                },
            },
            MysqlCase {
                name: "dotnet_bare_ipv6",
                input: "Server=::1;User ID=ally;Password=S3cr3t-Pl4nt;Database=ally",
                expect: MysqlExpect {
                    host: "::1",
                    ..BASE
                },
            },
            MysqlCase {
                name: "dotnet_bare_ipv6_link_local",
                input: "Server=fe80::1;Port=3310;User ID=ally;Password=S3cr3t-Pl4nt;Database=ally",
                expect: MysqlExpect {
                    host: "fe80::1",
                    port: 3310,
                    ..BASE
                },
            },
            MysqlCase {
                name: "dotnet_bracketed_ipv6",
                input: "Server=[2001:db8::5];User ID=ally;Password=S3cr3t-Pl4nt;Database=ally",
                expect: MysqlExpect {
                    host: "2001:db8::5",
                    ..BASE
                },
            },
            MysqlCase {
                name: "dotnet_quoted_server",
                input: "Server=' db.example.com ';User ID=ally;Password=S3cr3t-Pl4nt;Database=ally",
                expect: BASE,
            },
            MysqlCase {
                name: "dotnet_tls_files",
                input: "Server=db.example.com;User ID=ally;Password=S3cr3t-Pl4nt;Database=ally;\
                        SslMode=VerifyFull;SslCa=/etc/ally/ca.pem;SslCert=/etc/ally/client.pem;\
                        SslKey=/etc/ally/client.key",
                expect: MysqlExpect {
                    ssl_mode: SslMode::VerifyFull,
                    ssl_ca: Some("/etc/ally/ca.pem"),
                    ssl_cert: Some("/etc/ally/client.pem"),
                    ssl_key: Some("/etc/ally/client.key"),
                    ..BASE
                },
            },
            MysqlCase {
                name: "dotnet_tls_file_synonyms",
                input: "Server=db.example.com;User ID=ally;Password=S3cr3t-Pl4nt;Database=ally;\
                        Ssl-Ca='C:\\certs\\ca;1.pem';Ssl-Cert=c.pem;Ssl-Key=k.pem",
                expect: MysqlExpect {
                    ssl_ca: Some("C:\\certs\\ca;1.pem"),
                    ssl_cert: Some("c.pem"),
                    ssl_key: Some("k.pem"),
                    ..BASE
                },
            },
            MysqlCase {
                name: "dotnet_ca_certificate_file",
                input: "Server=db.example.com;User ID=ally;Password=S3cr3t-Pl4nt;Database=ally;\
                        CACertificateFile=ca.pem;SSL Cert=c.pem;SSL Key=k.pem",
                expect: MysqlExpect {
                    ssl_ca: Some("ca.pem"),
                    ssl_cert: Some("c.pem"),
                    ssl_key: Some("k.pem"),
                    ..BASE
                },
            },
            MysqlCase {
                name: "dotnet_ca_certificate_file_spaced",
                input: "Server=db.example.com;User ID=ally;Password=S3cr3t-Pl4nt;Database=ally;\
                        CA Certificate File=ca.pem",
                expect: MysqlExpect {
                    ssl_ca: Some("ca.pem"),
                    ..BASE
                },
            },
            MysqlCase {
                name: "dotnet_ssl_ca_spaced",
                input: "Server=db.example.com;User ID=ally;Password=S3cr3t-Pl4nt;Database=ally;\
                        SSL CA=ca.pem",
                expect: MysqlExpect {
                    ssl_ca: Some("ca.pem"),
                    ..BASE
                },
            },
            MysqlCase {
                name: "dotnet_connect_timeout",
                input: "Server=db.example.com;User ID=ally;Password=S3cr3t-Pl4nt;Database=ally;\
                        Connect Timeout=30",
                expect: MysqlExpect {
                    connect_timeout: Some(30),
                    ..BASE
                },
            },
            MysqlCase {
                name: "dotnet_connection_timeout",
                input: "Server=db.example.com;User ID=ally;Password=S3cr3t-Pl4nt;Database=ally;\
                        Connection Timeout=0",
                expect: MysqlExpect {
                    connect_timeout: Some(0),
                    ..BASE
                },
            },
            MysqlCase {
                name: "dotnet_connecttimeout",
                input: "Server=db.example.com;User ID=ally;Password=S3cr3t-Pl4nt;Database=ally;\
                        ConnectTimeout=4294967295",
                expect: MysqlExpect {
                    connect_timeout: Some(4_294_967_295),
                    ..BASE
                },
            },
            MysqlCase {
                name: "dotnet_character_set",
                input: "Server=db.example.com;User ID=ally;Password=S3cr3t-Pl4nt;Database=ally;\
                        Character Set=utf8mb4",
                expect: BASE,
            },
            MysqlCase {
                name: "dotnet_charset",
                input: "Server=db.example.com;User ID=ally;Password=S3cr3t-Pl4nt;Database=ally;\
                        CharSet=UTF8MB4",
                expect: BASE,
            },
        ]);
    }

    #[test]
    fn dotnet_ssl_mode_spellings() {
        let spellings = [
            ("SslMode", "None", SslMode::None),
            ("Ssl Mode", "Disabled", SslMode::None),
            ("SSL Mode", "DISABLED", SslMode::None),
            ("Ssl-Mode", "Preferred", SslMode::Preferred),
            ("SSL MODE", "preferred", SslMode::Preferred),
            ("ssl_mode", "Required", SslMode::Required),
            ("sslmode", "REQUIRED", SslMode::Required),
            ("SslMode", "VerifyCA", SslMode::VerifyCa),
            ("SslMode", "VERIFY_CA", SslMode::VerifyCa),
            ("SslMode", "verify-ca", SslMode::VerifyCa),
            ("SslMode", "VerifyFull", SslMode::VerifyFull),
            ("SslMode", "VERIFY_IDENTITY", SslMode::VerifyFull),
            ("SslMode", " Verify Full ", SslMode::VerifyFull),
        ];
        for (key, value, expected) in spellings {
            let input = format!("Server=h;User ID=u;Database=d;{key}={value}");
            let Ok(DatabaseUrl::Mysql(target)) = DatabaseUrl::parse(&input) else {
                panic!("{input}: not parsed as MySQL");
            };
            assert_eq!(target.ssl_mode, expected, "{input}");
        }
    }

    #[test]
    fn url_accepts() {
        check_mysql_cases(&[
            MysqlCase {
                name: "url_basic",
                input: "mysql://ally:S3cr3t-Pl4nt@db.example.com/ally",
                expect: BASE,
            },
            MysqlCase {
                name: "url_upper_scheme",
                input: "  MySQL://ally:S3cr3t-Pl4nt@db.example.com/ally  ",
                expect: BASE,
            },
            MysqlCase {
                name: "url_mariadb",
                input: "mariadb://ally:S3cr3t-Pl4nt@db.example.com:3307/ally",
                expect: MysqlExpect { port: 3307, ..BASE },
            },
            MysqlCase {
                name: "url_sqlalchemy_aiomysql",
                input: "mysql+aiomysql://ally:S3cr3t-Pl4nt@db.example.com/ally?charset=utf8mb4",
                expect: BASE,
            },
            MysqlCase {
                name: "url_sqlalchemy_pymysql",
                input: "mysql+pymysql://ally:S3cr3t-Pl4nt@db.example.com/ally",
                expect: BASE,
            },
            MysqlCase {
                name: "url_sqlalchemy_asyncmy",
                input: "mysql+asyncmy://ally:S3cr3t-Pl4nt@db.example.com/ally",
                expect: BASE,
            },
            MysqlCase {
                name: "url_sqlalchemy_mysqldb",
                input: "MYSQL+MYSQLDB://ally:S3cr3t-Pl4nt@db.example.com/ally",
                expect: BASE,
            },
            MysqlCase {
                name: "url_sqlalchemy_mariadbconnector",
                input: "mariadb+mariadbconnector://ally:S3cr3t-Pl4nt@db.example.com/ally",
                expect: BASE,
            },
            MysqlCase {
                name: "url_encoded_password",
                input: "mysql://ally:p%40ss%3Aw%2Frd%3F%23%25%26%3D@db.example.com/ally",
                expect: MysqlExpect {
                    password: Some("p@ss:w/rd?#%&="),
                    ..BASE
                },
            },
            MysqlCase {
                name: "url_raw_at_in_password",
                input: "mysql://ally:p@ss/w?r#d@db.example.com/ally",
                expect: MysqlExpect {
                    password: Some("p@ss/w?r#d"),
                    ..BASE
                },
            },
            MysqlCase {
                name: "url_plus_in_password",
                input: "mysql://ally:a+b@db.example.com/ally",
                expect: MysqlExpect {
                    password: Some("a+b"),
                    ..BASE
                },
            },
            MysqlCase {
                name: "url_encoded_user_database",
                input: "mysql://al%20ly:S3cr3t-Pl4nt@db.example.com/my%2Fdb",
                expect: MysqlExpect {
                    user: "al ly",
                    database: "my/db",
                    ..BASE
                },
            },
            MysqlCase {
                name: "url_no_password",
                input: "mysql://ally@db.example.com/ally",
                expect: MysqlExpect {
                    password: None,
                    ..BASE
                },
            },
            MysqlCase {
                name: "url_empty_password",
                input: "mysql://ally:@db.example.com/ally",
                expect: MysqlExpect {
                    password: None,
                    ..BASE
                },
            },
            MysqlCase {
                name: "url_ipv6_port",
                input: "mysql://ally:S3cr3t-Pl4nt@[::1]:3307/ally",
                expect: MysqlExpect {
                    host: "::1",
                    port: 3307,
                    ..BASE
                },
            },
            MysqlCase {
                name: "url_ipv6_default_port",
                input: "mysql://ally:S3cr3t-Pl4nt@[fe80::1]/ally",
                expect: MysqlExpect {
                    host: "fe80::1",
                    ..BASE
                },
            },
            MysqlCase {
                name: "url_cli_ssl_options",
                input: "mysql://ally:S3cr3t-Pl4nt@db.example.com/ally?ssl-mode=VERIFY_IDENTITY\
                        &ssl-ca=/etc/ally/ca.pem&ssl-cert=/etc/c.pem&ssl-key=/etc/k.pem",
                expect: MysqlExpect {
                    ssl_mode: SslMode::VerifyFull,
                    ssl_ca: Some("/etc/ally/ca.pem"),
                    ssl_cert: Some("/etc/c.pem"),
                    ssl_key: Some("/etc/k.pem"),
                    ..BASE
                },
            },
            MysqlCase {
                name: "url_dotnet_query_names",
                input: "mysql://ally:S3cr3t-Pl4nt@db.example.com/ally?SslMode=VerifyCA\
                        &SslCa=ca.pem&Connect%20Timeout=5&",
                expect: MysqlExpect {
                    ssl_mode: SslMode::VerifyCa,
                    ssl_ca: Some("ca.pem"),
                    connect_timeout: Some(5),
                    ..BASE
                },
            },
            MysqlCase {
                name: "url_sqlalchemy_query_names",
                input: "mysql+aiomysql://ally:S3cr3t-Pl4nt@db.example.com/ally?ssl_ca=%2Fca%2B1.pem\
                        &connect_timeout=10&ssl_mode=disabled",
                expect: MysqlExpect {
                    ssl_mode: SslMode::None,
                    ssl_ca: Some("/ca+1.pem"),
                    connect_timeout: Some(10),
                    ..BASE
                },
            },
            MysqlCase {
                name: "url_query_plus_is_space",
                input: "mysql://ally:S3cr3t-Pl4nt@db.example.com/ally?sslmode=verify+full",
                expect: MysqlExpect {
                    ssl_mode: SslMode::VerifyFull,
                    ..BASE
                },
            },
            MysqlCase {
                name: "url_empty_query",
                input: "mysql://ally:S3cr3t-Pl4nt@db.example.com/ally?",
                expect: BASE,
            },
        ]);
    }

    // -----------------------------------------------------------------------
    // Accepted SQLite inputs
    // -----------------------------------------------------------------------

    #[test]
    fn sqlite_accepts() {
        let cases: [(&str, SqlitePath); 13] = [
            ("sqlite::memory:", SqlitePath::Memory),
            (" SQLite::memory: ", SqlitePath::Memory),
            ("sqlite::memory:?", SqlitePath::Memory),
            ("sqlite://:memory:", SqlitePath::Memory),
            ("sqlite://data/ally.db", file("data/ally.db")),
            ("sqlite:///var/lib/ally.db", file("/var/lib/ally.db")),
            ("SQLITE://ally.db?", file("ally.db")),
            ("sqlite://data/my%20db%3F.db", file("data/my db?.db")),
            ("sqlite+aiosqlite:///rel.db", file("rel.db")),
            ("sqlite+aiosqlite:////abs/x.db", file("/abs/x.db")),
            ("sqlite+pysqlite:///data/ally.db", file("data/ally.db")),
            ("sqlite+pysqlite:///:memory:", SqlitePath::Memory),
            ("SQLite+AioSqlite:///x%2By.db", file("x+y.db")),
        ];
        for (input, expected) in cases {
            let Ok(DatabaseUrl::Sqlite(target)) = DatabaseUrl::parse(input) else {
                panic!("{input}: not parsed as SQLite");
            };
            assert_eq!(target.path, expected, "{input}");
        }
    }

    fn file(path: &str) -> SqlitePath {
        SqlitePath::File(PathBuf::from(path))
    }

    // -----------------------------------------------------------------------
    // Rejected inputs
    // -----------------------------------------------------------------------

    struct RejectCase {
        name: &'static str,
        input: &'static str,
        key: Option<&'static str>,
        /// Text the message must contain.
        mentions: &'static str,
        /// Text that neither `Display` nor `Debug` may contain, besides `PASSWORD`.
        hidden: &'static [&'static str],
    }

    const GOOD_DOTNET: &str =
        "Server=db.example.com;User ID=ally;Password=S3cr3t-Pl4nt;Database=ally";

    fn check_reject_cases(cases: &[RejectCase]) {
        for case in cases {
            let name = case.name;
            let error = match DatabaseUrl::parse(case.input) {
                Ok(parsed) => panic!("{name}: accepted as {}", parsed.redacted()),
                Err(error) => error,
            };
            let display = error.to_string();
            let debug = format!("{error:?}");
            assert_eq!(error.key(), case.key, "{name}: key in {display}");
            assert!(
                display.starts_with("invalid DATABASE_URL: "),
                "{name}: {display}"
            );
            assert!(
                display.contains(case.mentions),
                "{name}: `{}` missing from {display}",
                case.mentions
            );
            for hidden in case.hidden.iter().chain([&PASSWORD]) {
                assert!(!display.contains(hidden), "{name}: Display shows {hidden}");
                assert!(!debug.contains(hidden), "{name}: Debug shows {hidden}");
            }
        }
    }

    #[test]
    fn dotnet_rejects() {
        check_reject_cases(&[
            RejectCase {
                name: "dotnet_empty",
                input: "   ",
                key: None,
                mentions: "empty",
                hidden: &[],
            },
            RejectCase {
                name: "dotnet_only_separators",
                input: " ; ;; ",
                key: None,
                mentions: "no settings",
                hidden: &[],
            },
            RejectCase {
                name: "dotnet_unterminated_password",
                input: "Server=h;User ID=u;Database=d;Password='S3cr3t-Pl4nt",
                key: Some("Password"),
                mentions: "no closing ' quote",
                hidden: &[],
            },
            RejectCase {
                name: "dotnet_unterminated_server",
                input: "Server=\"h;User ID=u;Password=S3cr3t-Pl4nt;Database=d",
                key: Some("Server"),
                mentions: "no closing \" quote",
                hidden: &[],
            },
            RejectCase {
                name: "dotnet_text_after_quote",
                input: "Server=h;User ID=u;Database=d;Password='S3cr3t-Pl4nt'junk99",
                key: Some("Password"),
                mentions: "after the closing ' quote",
                hidden: &["junk99"],
            },
            RejectCase {
                name: "dotnet_repeated_key",
                input: "Server=a;SERVER=b;User ID=u;Password=S3cr3t-Pl4nt;Database=d",
                key: Some("SERVER"),
                mentions: "the earlier key `Server` already sets",
                hidden: &[],
            },
            RejectCase {
                name: "dotnet_repeated_synonym",
                input: "Server=a;User ID=u;Password=S3cr3t-Pl4nt;Database=d;Host=b",
                key: Some("Host"),
                mentions: "the earlier key `Server` already sets the same option",
                hidden: &[],
            },
            RejectCase {
                name: "dotnet_repeated_ssl_mode",
                input: "SslMode=VerifyFull;Server=a;User ID=u;Password=S3cr3t-Pl4nt;Database=d;Ssl Mode=None",
                key: Some("Ssl Mode"),
                mentions: "silently replace",
                hidden: &[],
            },
            RejectCase {
                name: "dotnet_repeated_password",
                input: "Server=a;User ID=u;Password=S3cr3t-Pl4nt;Database=d;Pwd=S3cr3t-Pl4nt",
                key: Some("Pwd"),
                mentions: "earlier key `Password`",
                hidden: &[],
            },
            RejectCase {
                name: "dotnet_unknown_key",
                input: "Server=a;User ID=u;Password=S3cr3t-Pl4nt;Database=d;Pooling=false",
                key: Some("Pooling"),
                mentions: "unknown key",
                hidden: &[],
            },
            RejectCase {
                name: "dotnet_certificate_file",
                input: "Server=a;User ID=u;Password=S3cr3t-Pl4nt;Database=d;CertificateFile=c.pfx",
                key: Some("CertificateFile"),
                mentions: "PKCS #12",
                hidden: &[],
            },
            RejectCase {
                name: "dotnet_several_hosts",
                input: "Server=db1,db2;User ID=u;Password=S3cr3t-Pl4nt;Database=d",
                key: Some("Server"),
                mentions: "single server",
                hidden: &[],
            },
            RejectCase {
                name: "dotnet_empty_host",
                input: "Server=;User ID=u;Password=S3cr3t-Pl4nt;Database=d",
                key: Some("Server"),
                mentions: "host is empty",
                hidden: &[],
            },
            RejectCase {
                name: "dotnet_blank_quoted_host",
                input: "Host='  ';User ID=u;Password=S3cr3t-Pl4nt;Database=d",
                key: Some("Host"),
                mentions: "host is empty",
                hidden: &[],
            },
            RejectCase {
                name: "dotnet_host_with_port",
                input: "Server=db:3306;User ID=u;Password=S3cr3t-Pl4nt;Database=d",
                key: Some("Server"),
                mentions: "Port key",
                hidden: &[],
            },
            RejectCase {
                name: "dotnet_bracketed_host_with_port",
                input: "Server=[::1]:3306;User ID=u;Password=S3cr3t-Pl4nt;Database=d",
                key: Some("Server"),
                mentions: "Port key",
                hidden: &[],
            },
            RejectCase {
                name: "dotnet_bad_ipv6",
                input: "Server=[db.example.com];User ID=u;Password=S3cr3t-Pl4nt;Database=d",
                key: Some("Server"),
                mentions: "IPv6",
                hidden: &[],
            },
            RejectCase {
                name: "dotnet_host_bad_character",
                input: "Server=db example;User ID=u;Password=S3cr3t-Pl4nt;Database=d",
                key: Some("Server"),
                mentions: "not a valid host name",
                hidden: &[],
            },
            RejectCase {
                name: "dotnet_unix_socket",
                input: "Server=/var/run/mysqld/mysqld.sock;User ID=u;Password=S3cr3t-Pl4nt;Database=d",
                key: Some("Server"),
                mentions: "Unix socket",
                hidden: &[],
            },
            RejectCase {
                name: "dotnet_port_not_number",
                input: "Server=h;Port=abc;User ID=u;Password=S3cr3t-Pl4nt;Database=d",
                key: Some("Port"),
                mentions: "port must be a number from 1 to 65535, got `abc`",
                hidden: &[],
            },
            RejectCase {
                name: "dotnet_port_zero",
                input: "Server=h;port=0;User ID=u;Password=S3cr3t-Pl4nt;Database=d",
                key: Some("port"),
                mentions: "got `0`",
                hidden: &[],
            },
            RejectCase {
                name: "dotnet_port_too_large",
                input: "Server=h;Port=70000;User ID=u;Password=S3cr3t-Pl4nt;Database=d",
                key: Some("Port"),
                mentions: "got `70000`",
                hidden: &[],
            },
            RejectCase {
                name: "dotnet_port_negative",
                input: "Server=h;Port=-1;User ID=u;Password=S3cr3t-Pl4nt;Database=d",
                key: Some("Port"),
                mentions: "got `-1`",
                hidden: &[],
            },
            RejectCase {
                name: "dotnet_port_huge",
                input: "Server=h;Port=99999999999999999999;User ID=u;Password=S3cr3t-Pl4nt;Database=d",
                key: Some("Port"),
                mentions: "from 1 to 65535",
                hidden: &[],
            },
            RejectCase {
                name: "dotnet_unknown_ssl_mode",
                input: "Server=h;User ID=u;Password=S3cr3t-Pl4nt;Database=d;SslMode=Strict",
                key: Some("SslMode"),
                mentions: "VerifyFull (or VERIFY_IDENTITY)",
                hidden: &[],
            },
            RejectCase {
                name: "dotnet_missing_database",
                input: "Server=h;User ID=u;Password=S3cr3t-Pl4nt",
                key: Some("Database"),
                mentions: "missing database",
                hidden: &[],
            },
            RejectCase {
                name: "dotnet_empty_database",
                input: "Server=h;User ID=u;Password=S3cr3t-Pl4nt;Initial Catalog=",
                key: Some("Initial Catalog"),
                mentions: "missing database",
                hidden: &[],
            },
            RejectCase {
                name: "dotnet_missing_user",
                input: "Server=h;Password=S3cr3t-Pl4nt;Database=d",
                key: Some("User ID"),
                mentions: "missing user",
                hidden: &[],
            },
            RejectCase {
                name: "dotnet_sqlite_data_source",
                input: "Data Source=ally.db",
                key: Some("User ID"),
                mentions: "sqlite://",
                hidden: &[],
            },
            RejectCase {
                name: "dotnet_missing_server",
                input: "User ID=u;Password=S3cr3t-Pl4nt;Database=d",
                key: Some("Server"),
                mentions: "missing server",
                hidden: &[],
            },
            RejectCase {
                name: "dotnet_missing_equals",
                input: "Server=h;User ID=u;Password=S3cr3t-Pl4nt;Database;",
                key: None,
                mentions: "setting 4 has no `=`",
                hidden: &[],
            },
            RejectCase {
                name: "dotnet_not_a_setting",
                input: "ally.db",
                key: None,
                mentions: "neither a URL nor a connection string",
                hidden: &[],
            },
            RejectCase {
                name: "dotnet_empty_key",
                input: "Server=h;=S3cr3t-Pl4nt",
                key: None,
                mentions: "empty key",
                hidden: &[],
            },
            RejectCase {
                name: "dotnet_latin1_charset",
                input: "Server=h;User ID=u;Password=S3cr3t-Pl4nt;Database=d;CharSet=latin1",
                key: Some("CharSet"),
                mentions: "always uses the utf8mb4",
                hidden: &[],
            },
            RejectCase {
                name: "dotnet_timeout_negative",
                input: "Server=h;User ID=u;Password=S3cr3t-Pl4nt;Database=d;Connect Timeout=-5",
                key: Some("Connect Timeout"),
                mentions: "whole number of seconds",
                hidden: &[],
            },
            RejectCase {
                name: "dotnet_timeout_fraction",
                input: "Server=h;User ID=u;Password=S3cr3t-Pl4nt;Database=d;ConnectionTimeout=1.5",
                key: Some("ConnectionTimeout"),
                mentions: "got `1.5`",
                hidden: &[],
            },
            RejectCase {
                name: "dotnet_cert_without_key",
                input: "Server=h;User ID=u;Password=S3cr3t-Pl4nt;Database=d;Ssl-Cert=c.pem",
                key: Some("Ssl-Cert"),
                mentions: "set SslKey",
                hidden: &[],
            },
            RejectCase {
                name: "dotnet_key_without_cert",
                input: "Server=h;User ID=u;Password=S3cr3t-Pl4nt;Database=d;SslKey=k.pem",
                key: Some("SslKey"),
                mentions: "set SslCert",
                hidden: &[],
            },
            RejectCase {
                name: "dotnet_empty_ca_path",
                input: "Server=h;User ID=u;Password=S3cr3t-Pl4nt;Database=d;SslCa=",
                key: Some("SslCa"),
                mentions: "file path is empty",
                hidden: &[],
            },
        ]);
    }

    #[test]
    fn url_rejects() {
        check_reject_cases(&[
            RejectCase {
                name: "url_unknown_scheme_postgres",
                input: "postgres://ally:S3cr3t-Pl4nt@db.example.com/ally",
                key: None,
                mentions: "unsupported URL scheme `postgres`; accepted schemes are sqlite",
                hidden: &[],
            },
            RejectCase {
                name: "url_unknown_scheme_http",
                input: "http://db.example.com/",
                key: None,
                mentions: "`http`",
                hidden: &[],
            },
            RejectCase {
                name: "url_empty_driver",
                input: "mysql+://ally:S3cr3t-Pl4nt@db.example.com/ally",
                key: None,
                mentions: "unsupported URL scheme",
                hidden: &[],
            },
            RejectCase {
                name: "url_missing_slashes",
                input: "mysql:ally:S3cr3t-Pl4nt@db.example.com/ally",
                key: None,
                mentions: "missing `//`",
                hidden: &[],
            },
            RejectCase {
                name: "url_missing_user",
                input: "mysql://db.example.com/ally",
                key: Some("user"),
                mentions: "missing user",
                hidden: &[],
            },
            RejectCase {
                name: "url_empty_user",
                input: "mysql://:S3cr3t-Pl4nt@db.example.com/ally",
                key: Some("user"),
                mentions: "user name is empty",
                hidden: &[],
            },
            RejectCase {
                name: "url_missing_database",
                input: "mysql://ally:S3cr3t-Pl4nt@db.example.com",
                key: Some("database"),
                mentions: "missing database",
                hidden: &[],
            },
            RejectCase {
                name: "url_empty_database",
                input: "mariadb://ally:S3cr3t-Pl4nt@db.example.com:3306/?sslmode=Required",
                key: Some("database"),
                mentions: "missing database",
                hidden: &[],
            },
            RejectCase {
                name: "url_database_two_segments",
                input: "mysql://ally:S3cr3t-Pl4nt@db.example.com/a/b",
                key: Some("database"),
                mentions: "%2F",
                hidden: &[],
            },
            RejectCase {
                name: "url_missing_host",
                input: "mysql://ally:S3cr3t-Pl4nt@/ally",
                key: Some("host"),
                mentions: "missing host",
                hidden: &[],
            },
            RejectCase {
                name: "url_port_not_number",
                input: "mysql://ally:S3cr3t-Pl4nt@db.example.com:abc/ally",
                key: Some("port"),
                mentions: "port must be a number from 1 to 65535, got `abc`",
                hidden: &[],
            },
            RejectCase {
                name: "url_port_zero",
                input: "mysql://ally:S3cr3t-Pl4nt@db.example.com:0/ally",
                key: Some("port"),
                mentions: "got `0`",
                hidden: &[],
            },
            RejectCase {
                name: "url_port_too_large",
                input: "mysql://ally:S3cr3t-Pl4nt@[::1]:70000/ally",
                key: Some("port"),
                mentions: "got `70000`",
                hidden: &[],
            },
            RejectCase {
                name: "url_port_empty",
                input: "mysql://ally:S3cr3t-Pl4nt@db.example.com:/ally",
                key: Some("port"),
                mentions: "from 1 to 65535",
                hidden: &[],
            },
            RejectCase {
                name: "url_bare_ipv6",
                input: "mysql://ally:S3cr3t-Pl4nt@::1/ally",
                key: Some("host"),
                mentions: "brackets",
                hidden: &[],
            },
            RejectCase {
                name: "url_unclosed_ipv6",
                input: "mysql://ally:S3cr3t-Pl4nt@[::1/ally",
                key: Some("host"),
                mentions: "no closing `]`",
                hidden: &[],
            },
            RejectCase {
                name: "url_ipv6_zone",
                input: "mysql://ally:S3cr3t-Pl4nt@[fe80::1%25eth0]/ally",
                key: Some("host"),
                mentions: "zone indices",
                hidden: &[],
            },
            RejectCase {
                name: "url_unknown_query_key",
                input: "mysql://ally:S3cr3t-Pl4nt@db.example.com/ally?pool_size=5",
                key: Some("pool_size"),
                mentions: "unknown query parameter",
                hidden: &[],
            },
            RejectCase {
                name: "url_repeated_query_key",
                input: "mysql://ally:S3cr3t-Pl4nt@db.example.com/ally?sslmode=VerifyFull&ssl-mode=None",
                key: Some("ssl-mode"),
                mentions: "earlier key `sslmode`",
                hidden: &[],
            },
            RejectCase {
                name: "url_query_password",
                input: "mysql://ally@db.example.com/ally?password=S3cr3t-Pl4nt",
                key: Some("password"),
                mentions: "belongs in the URL itself",
                hidden: &[],
            },
            RejectCase {
                name: "url_query_without_value",
                input: "mysql://ally:S3cr3t-Pl4nt@db.example.com/ally?sslmode",
                key: Some("sslmode"),
                mentions: "no `=`",
                hidden: &[],
            },
            RejectCase {
                name: "url_unknown_ssl_mode",
                input: "mysql://ally:S3cr3t-Pl4nt@db.example.com/ally?ssl-mode=STRICT",
                key: Some("ssl-mode"),
                mentions: "got `STRICT`",
                hidden: &[],
            },
            RejectCase {
                name: "url_fragment",
                input: "mysql://ally:S3cr3t-Pl4nt@db.example.com/ally#x",
                key: None,
                mentions: "%23",
                hidden: &[],
            },
            RejectCase {
                name: "url_bad_password_escape",
                input: "mysql://ally:S3cr3t-Pl4nt%zz@db.example.com/ally",
                key: Some("password"),
                mentions: "two hex digits",
                hidden: &["%zz"],
            },
            RejectCase {
                name: "url_password_not_utf8",
                input: "mysql://ally:S3cr3t-Pl4nt%FF@db.example.com/ally",
                key: Some("password"),
                mentions: "UTF-8",
                hidden: &[],
            },
            RejectCase {
                name: "url_latin1_charset",
                input: "mysql://ally:S3cr3t-Pl4nt@db.example.com/ally?charset=latin1",
                key: Some("charset"),
                mentions: "utf8mb4",
                hidden: &[],
            },
        ]);
    }

    #[test]
    fn sqlite_rejects() {
        check_reject_cases(&[
            RejectCase {
                name: "sqlite_empty_path",
                input: "sqlite://",
                key: None,
                mentions: "missing SQLite file path",
                hidden: &[],
            },
            RejectCase {
                name: "sqlalchemy_empty_path",
                input: "sqlite+aiosqlite://",
                key: None,
                mentions: "missing SQLite file path",
                hidden: &[],
            },
            RejectCase {
                name: "sqlite_query",
                input: "sqlite://data/ally.db?mode=ro",
                key: None,
                mentions: "no query parameters; remove the text from `?` on",
                hidden: &[],
            },
            RejectCase {
                name: "sqlite_memory_query",
                input: "sqlite::memory:?cache=shared",
                key: None,
                mentions: "no query parameters",
                hidden: &[],
            },
            RejectCase {
                name: "sqlite_directory",
                input: "sqlite:///var/lib/",
                key: None,
                mentions: "add a file name",
                hidden: &[],
            },
            RejectCase {
                name: "sqlalchemy_host",
                input: "sqlite+aiosqlite://host/x.db",
                key: None,
                mentions: "empty host",
                hidden: &[],
            },
            RejectCase {
                name: "sqlite_without_slashes",
                input: "sqlite:data/ally.db",
                key: None,
                mentions: "sqlite://",
                hidden: &[],
            },
            RejectCase {
                name: "sqlite_fragment",
                input: "sqlite://ally#1.db",
                key: None,
                mentions: "%23",
                hidden: &[],
            },
        ]);
    }

    /// Inputs whose password contains the text around the rejected value, so an echo of
    /// that text would show part of the password.
    #[test]
    fn password_neighbourhood_hidden() {
        check_reject_cases(&[
            RejectCase {
                name: "neighbourhood_port",
                input: "Server=h;Port=abc9;User ID=u;Database=d;Password=xabc9y",
                key: Some("Port"),
                mentions: "from 1 to 65535",
                hidden: &["abc9", "xabc9y"],
            },
            RejectCase {
                name: "neighbourhood_url_port",
                input: "mysql://u:70000@h:70000/db",
                key: Some("port"),
                mentions: "from 1 to 65535",
                hidden: &["70000"],
            },
            RejectCase {
                name: "neighbourhood_hosts",
                input: "Server=db1,db2;User ID=u;Database=d;Password=pw-db1,db2-pw",
                key: Some("Server"),
                mentions: "single server",
                hidden: &["db1,db2"],
            },
            RejectCase {
                name: "neighbourhood_ssl_mode",
                input: "Server=h;User ID=u;Database=d;SslMode=Bogus7;Password=Bogus7!",
                key: Some("SslMode"),
                mentions: "valid values",
                hidden: &["Bogus7"],
            },
            RejectCase {
                name: "neighbourhood_unknown_key",
                input: "Server=h;Zorro7=1;User ID=u;Database=d;Password=xZorro7x",
                key: None,
                mentions: "unknown key",
                hidden: &["Zorro7"],
            },
            RejectCase {
                name: "neighbourhood_semicolon_no_equals",
                input: "Server=h;User ID=u;Database=d;Password=Pl4nt;Tail99;Port=1",
                key: None,
                mentions: "has no `=`",
                hidden: &["Tail99"],
            },
            RejectCase {
                name: "neighbourhood_semicolon_unknown_key",
                input: "Server=h;User ID=u;Database=d;Password=Pl4nt;Tail99=zz7",
                key: None,
                mentions: "enclose it in quotes",
                hidden: &["Tail99", "zz7"],
            },
            RejectCase {
                name: "neighbourhood_semicolon_quote",
                input: "Server=h;User ID=u;Database=d;Password=Pl4nt;Tail99='zz7",
                key: None,
                mentions: "after the password",
                hidden: &["Tail99", "zz7"],
            },
            RejectCase {
                name: "neighbourhood_after_quote",
                input: "Server=h;User ID=u;Database=d;Password='Pl4nt'Tail99",
                key: Some("Password"),
                mentions: "closing ' quote",
                hidden: &["Pl4nt", "Tail99"],
            },
            RejectCase {
                name: "neighbourhood_unterminated",
                input: "Server=h;User ID=u;Database=d;Password=\"Pl4nt;Port=1",
                key: Some("Password"),
                mentions: "no closing \" quote",
                hidden: &["Pl4nt", "Port=1"],
            },
            RejectCase {
                name: "neighbourhood_host_name",
                input: "Server=my host;User ID=u;Database=d;Password=is my host",
                key: Some("Server"),
                mentions: "not a valid host name",
                hidden: &["my host", "y h"],
            },
            RejectCase {
                name: "neighbourhood_semicolon_port",
                input: "Server=h;User ID=u;Database=d;Password=Pl4nt;Port=Tail99",
                key: Some("Port"),
                mentions: "from 1 to 65535",
                hidden: &["Tail99"],
            },
            RejectCase {
                name: "neighbourhood_key_is_password",
                input: "Server=h;User ID=u;Database=d;Password=Pooling;Pooling=1",
                key: None,
                mentions: "enclose it in quotes",
                hidden: &["Pooling"],
            },
        ]);
    }

    // -----------------------------------------------------------------------
    // Redaction and formatting
    // -----------------------------------------------------------------------

    fn mysql_target(input: &str) -> MysqlTarget {
        match DatabaseUrl::parse(input) {
            Ok(DatabaseUrl::Mysql(target)) => target,
            Ok(other) => panic!("{input}: parsed as {}", other.backend_name()),
            Err(error) => panic!("{input}: {error}"),
        }
    }

    #[test]
    fn target_debug_hides_password() {
        for input in [
            GOOD_DOTNET,
            "mysql://ally:S3cr3t-Pl4nt@db.example.com/ally",
            "mysql://ally:S3cr3t%2DPl4nt@db.example.com/ally",
        ] {
            let target = mysql_target(input);
            let debug = format!("{target:?}");
            assert!(!debug.contains(PASSWORD), "{input}: {debug}");
            assert!(debug.contains("REDACTED"), "{input}: {debug}");
            let wrapped = format!("{:?}", DatabaseUrl::Mysql(target));
            assert!(!wrapped.contains(PASSWORD), "{input}: {wrapped}");
        }
    }

    #[test]
    fn redacted_hides_password() {
        let target = mysql_target(&format!("{GOOD_DOTNET};SslMode=VerifyFull"));
        assert_eq!(
            target.redacted(),
            "mysql://ally:****@db.example.com:3306/ally?sslmode=VerifyFull"
        );
        let url = DatabaseUrl::Mysql(target);
        assert!(!url.redacted().contains(PASSWORD));
        assert_eq!(url.backend_name(), "mysql");
    }

    #[test]
    fn redacted_without_password() {
        let target = mysql_target("mysql://ally@[::1]:3307/ally");
        assert_eq!(
            target.redacted(),
            "mysql://ally@[::1]:3307/ally?sslmode=Preferred"
        );
    }

    #[test]
    fn redacted_round_trip() {
        let input = "Server=fe80::1;Port=3310;User ID='a l@y';Password=S3cr3t-Pl4nt;\
                     Database=db/x+y;SslMode=VerifyCA;SslCa=/etc/ca+1.pem;SslCert=c d.pem;\
                     SslKey=k.pem;Connect Timeout=7";
        let original = mysql_target(input);
        let redacted = original.redacted();
        assert!(!redacted.contains(PASSWORD), "{redacted}");

        let reparsed = mysql_target(&redacted.replace(":****@", "@"));
        assert_eq!(reparsed.host, original.host);
        assert_eq!(reparsed.port, original.port);
        assert_eq!(reparsed.user, original.user);
        assert!(reparsed.password.is_none());
        assert_eq!(reparsed.database, original.database);
        assert_eq!(reparsed.ssl_mode, original.ssl_mode);
        assert_eq!(reparsed.ssl_ca, original.ssl_ca);
        assert_eq!(reparsed.ssl_cert, original.ssl_cert);
        assert_eq!(reparsed.ssl_key, original.ssl_key);
        assert_eq!(reparsed.connect_timeout, original.connect_timeout);
    }

    #[test]
    fn sqlite_redacted_round_trip() {
        for input in [
            "sqlite::memory:",
            "sqlite://data/my%20db%3F.db",
            "sqlite:///var/lib/ally.db",
        ] {
            let Ok(DatabaseUrl::Sqlite(original)) = DatabaseUrl::parse(input) else {
                panic!("{input}: not parsed as SQLite");
            };
            let redacted = DatabaseUrl::Sqlite(original.clone()).redacted();
            let Ok(DatabaseUrl::Sqlite(reparsed)) = DatabaseUrl::parse(&redacted) else {
                panic!("{redacted}: not parsed as SQLite");
            };
            assert_eq!(reparsed.path, original.path, "{input}");
        }
        let memory = DatabaseUrl::parse("sqlite::memory:").expect("in-memory URL");
        assert_eq!(memory.backend_name(), "sqlite");
    }

    #[test]
    fn error_display_format() {
        let error = DatabaseUrl::parse("Server=h;Port=abc;User ID=u;Database=d")
            .expect_err("port `abc` is invalid");
        assert_eq!(
            error.to_string(),
            "invalid DATABASE_URL: key `Port`: port must be a number from 1 to 65535, got `abc`"
        );

        let error = DatabaseUrl::parse("").expect_err("empty input is invalid");
        assert!(error.key().is_none());
        assert!(
            error
                .to_string()
                .starts_with("invalid DATABASE_URL: the value is empty"),
            "{error}"
        );
    }

    #[test]
    fn error_short_password_keeps_key() {
        let error = DatabaseUrl::parse("mysql://u:b@h:abc/db").expect_err("port `abc`");
        assert_eq!(error.key(), Some("port"));
        let message = error.to_string();
        assert!(message.contains("port must be a number"), "{message}");
        assert!(!message.contains("abc"), "{message}");
    }

    #[test]
    fn error_echo_truncated() {
        let long_mode = "x".repeat(100);
        let input = format!("Server=h;User ID=u;Database=d;SslMode={long_mode}");
        let error = DatabaseUrl::parse(&input).expect_err("unknown SSL mode");
        let message = error.to_string();
        assert!(
            message.contains(&format!("`{}...`", "x".repeat(40))),
            "{message}"
        );
        assert!(!message.contains(&"x".repeat(41)), "{message}");
    }

    #[test]
    fn from_str_matches_parse() {
        let parsed: DatabaseUrl = GOOD_DOTNET.parse().expect("valid connection string");
        assert_eq!(parsed.backend_name(), "mysql");
        let error = "postgres://x"
            .parse::<DatabaseUrl>()
            .expect_err("unknown scheme");
        assert!(error.to_string().contains("postgres"), "{error}");
    }

    #[test]
    fn ssl_mode_display() {
        let names = [
            (SslMode::None, "None"),
            (SslMode::Preferred, "Preferred"),
            (SslMode::Required, "Required"),
            (SslMode::VerifyCa, "VerifyCA"),
            (SslMode::VerifyFull, "VerifyFull"),
        ];
        for (mode, name) in names {
            assert_eq!(mode.to_string(), name);
            assert_eq!(name.parse::<SslMode>().expect(name), mode);
        }
    }

    #[test]
    fn ssl_mode_from_str() {
        assert_eq!(
            "verify_identity".parse::<SslMode>().ok(),
            Some(SslMode::VerifyFull)
        );
        assert_eq!("DISABLED".parse::<SslMode>().ok(), Some(SslMode::None));
        let error = "strict".parse::<SslMode>().expect_err("unknown mode");
        assert!(error.key().is_none());
        assert!(error.to_string().contains("got `strict`"), "{error}");
    }

    #[test]
    fn ssl_mode_order() {
        assert!(SslMode::None < SslMode::Preferred);
        assert!(SslMode::Preferred < SslMode::Required);
        assert!(SslMode::Required < SslMode::VerifyCa);
        assert!(SslMode::VerifyCa < SslMode::VerifyFull);
        assert_eq!(SslMode::default(), SslMode::Preferred);
    }
}
