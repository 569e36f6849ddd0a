//! Parsing of .NET connection strings with MySqlConnector's keys and quoting rules, and the
//! option keys and `Settings` that URL query parameters also use.

use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;

use super::redact::Redactor;
use super::values::{parse_file_path, parse_port, parse_server, parse_timeout};
use super::{
    DEFAULT_MYSQL_PORT, DatabaseUrl, DatabaseUrlError, FORM_EXAMPLES, MysqlTarget, SslMode,
    ssl_mode_message,
};

/// One `key=value` setting of a connection string.
struct Setting<'a> {
    key: &'a str,
    value: String,
    quoted: bool,
}

pub(super) fn parse_connection_string(input: &str) -> Result<DatabaseUrl, DatabaseUrlError> {
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
// Keys shared by connection strings and URL query parameters
// ---------------------------------------------------------------------------

/// Options known to the parser.
///
/// Names and synonyms follow MySqlConnector's `MySqlConnectionStringBuilder`
/// (mysql-net/MySqlConnector, src/MySqlConnector/MySqlConnectionStringBuilder.cs).
/// MySqlConnector compares keys ignoring case only. This parser also ignores spaces, `-`
/// and `_`, which accepts the MySQL client spellings such as `ssl-mode` and `ssl_ca`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum OptionKey {
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
    pub(super) fn find(key: &str) -> Option<OptionKey> {
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

pub(super) fn normalize_name(name: &str) -> String {
    name.chars()
        .filter(|c| !c.is_whitespace() && *c != '-' && *c != '_')
        .flat_map(char::to_lowercase)
        .collect()
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Syntax {
    ConnectionString,
    UrlQuery,
}

/// Options collected from the input, before defaults and required keys are checked.
#[derive(Default)]
pub(super) struct Settings {
    /// Options already set, with the key as the input spells it.
    pub(super) seen: Vec<(OptionKey, String)>,
    pub(super) host: Option<String>,
    pub(super) port: Option<u16>,
    pub(super) user: Option<String>,
    pub(super) password: Option<String>,
    pub(super) database: Option<String>,
    pub(super) ssl_mode: Option<SslMode>,
    pub(super) ssl_ca: Option<PathBuf>,
    pub(super) ssl_cert: Option<PathBuf>,
    pub(super) ssl_key: Option<PathBuf>,
    pub(super) connect_timeout: Option<Duration>,
}

impl Settings {
    /// Records one option. `hide_key` keeps an unknown key out of the error because it may
    /// be part of a password.
    pub(super) fn apply(
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
    pub(super) fn finish(self, redactor: &Redactor) -> Result<MysqlTarget, DatabaseUrlError> {
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
