//! Layered settings.
//!
//! Sources, later ones winning: built-in defaults, an optional `ally.toml`, the file
//! `.env.<ENVIRONMENT>`, then the process environment. Environment variables use the prefix
//! `ALLY_` and `__` between nested keys (`ALLY_DATABASE__MAX_CONNECTIONS=20`); `DATABASE_URL`,
//! `REDIS_URL` and `ENVIRONMENT` are accepted as well. `docs/configuration.md` lists every key.

pub mod database_url;
mod masked;
mod transport;

use std::collections::HashMap;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use self::database_url::{DatabaseUrl, DatabaseUrlError, SslMode};
pub use self::transport::{ClientAuth, LimitSettings, RateLimitSettings, TlsSettings};

/// Default gRPC port.
pub const DEFAULT_PORT: u16 = 50051;

/// Deployment environment, which chooses some defaults and how strict start-up checks are.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    #[default]
    Development,
    Testing,
    Production,
}

impl Environment {
    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Development => "development",
            Environment::Testing => "testing",
            Environment::Production => "production",
        }
    }

    fn parse(value: &str) -> Result<Self, ConfigError> {
        match value.trim().to_ascii_lowercase().as_str() {
            "development" | "dev" => Ok(Environment::Development),
            "testing" | "test" => Ok(Environment::Testing),
            "production" | "prod" => Ok(Environment::Production),
            other => Err(ConfigError::Invalid {
                key: "environment".into(),
                message: format!(
                    "`{other}` is not an environment; use development, testing or production"
                ),
            }),
        }
    }
}

impl fmt::Display for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Every setting of the service, after all sources are merged.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub environment: Environment,
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub redis: RedisSettings,
    pub auth: AuthSettings,
    pub audit: AuditSettings,
    pub cache: CacheSettings,
    pub chat: ChatSettings,
    pub rate_limit: RateLimitSettings,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChatSettings {
    /// Age after which `ally chat purge` deletes soft-deleted chat sessions with their messages.
    /// Zero keeps them forever. The server itself never purges.
    #[serde(with = "humantime_serde")]
    pub session_retention: Duration,
    /// Largest export file that `ChatService.ImportConversations` and `ally import
    /// conversations` accept, in bytes.
    pub import_max_bytes: usize,
}

impl Default for ChatSettings {
    fn default() -> Self {
        ChatSettings {
            session_retention: Duration::from_secs(30 * 24 * 60 * 60),
            import_max_bytes: 64 * 1024 * 1024,
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheSettings {
    /// Lifetime of cached configuration documents, in the in-process cache or in Redis. A
    /// change made through another server without Redis, or while Redis was unreachable, shows
    /// here after at most this long.
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
}

impl Default for CacheSettings {
    fn default() -> Self {
        CacheSettings {
            ttl: Duration::from_secs(30),
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditSettings {
    /// Age after which `ally audit prune` deletes audit entries. Zero keeps them forever. The
    /// server itself never deletes entries.
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
}

impl Default for AuditSettings {
    fn default() -> Self {
        AuditSettings {
            retention: Duration::from_secs(365 * 24 * 60 * 60),
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    /// HS256 secret that signs access tokens, at least 32 bytes. Required in production; in
    /// development and testing a random one is generated at start, so tokens do not survive a
    /// restart.
    #[serde(serialize_with = "masked::optional_secret")]
    pub jwt_secret: Option<SecretString>,
    /// `iss` claim of issued tokens, and the only issuer accepted.
    pub issuer: String,
    /// `aud` claim of issued tokens, and the only audience accepted.
    pub audience: String,
    /// Lifetime of access tokens.
    #[serde(with = "humantime_serde")]
    pub access_token_ttl: Duration,
    /// Lifetime of refresh tokens.
    #[serde(with = "humantime_serde")]
    pub refresh_token_ttl: Duration,
    /// Platform domain whose subdomains name tenants, e.g. `ally.example` for
    /// `acme.ally.example`. Unset: the `:authority` header is not used.
    pub base_domain: Option<String>,
    /// Failed logins in a row after which an account is locked. 0 turns locking off.
    pub max_failed_logins: u32,
    /// How long a locked account stays locked.
    #[serde(with = "humantime_serde")]
    pub lockout: Duration,
    /// Lifetime of the email verification tokens that UserService.SendVerification issues.
    #[serde(with = "humantime_serde")]
    pub email_verification_ttl: Duration,
    /// How long a verified API key is kept in memory, so that calls with it need no database
    /// read to identify the caller. Zero turns the cache off.
    #[serde(with = "humantime_serde")]
    pub api_key_cache_ttl: Duration,
    /// How long a tenant's row is kept in memory, so that calls of its members need no
    /// database read to check that the tenant exists and is not suspended. Zero turns the
    /// cache off.
    #[serde(with = "humantime_serde")]
    pub tenant_cache_ttl: Duration,
    /// An external OpenID Connect issuer whose access tokens are accepted too. Unset: none.
    pub oidc: Option<crate::auth::oidc::OidcSettings>,
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            jwt_secret: None,
            issuer: "ally".into(),
            audience: "ally".into(),
            access_token_ttl: Duration::from_secs(15 * 60),
            refresh_token_ttl: Duration::from_secs(30 * 24 * 60 * 60),
            base_domain: None,
            max_failed_logins: 5,
            lockout: Duration::from_secs(15 * 60),
            email_verification_ttl: Duration::from_secs(24 * 60 * 60),
            api_key_cache_ttl: Duration::from_secs(30),
            tenant_cache_ttl: Duration::from_secs(30),
            oidc: None,
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSettings {
    /// Address the gRPC server binds. Default: 127.0.0.1:50051 in development and testing,
    /// 0.0.0.0:50051 in production.
    pub listen_addr: Option<SocketAddr>,
    /// How long in-flight RPCs may run after SIGINT or SIGTERM before the server stops anyway.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    /// Folder for the SQLite database file and other local state.
    pub data_dir: PathBuf,
    /// TLS for the gRPC server. Unset: plain HTTP/2.
    pub tls: Option<TlsSettings>,
    /// Limits on connections, calls and messages.
    pub limits: LimitSettings,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseSettings {
    /// Database location: a URL or a .NET connection string. Contains the password.
    #[serde(serialize_with = "masked::database_url")]
    pub url: SecretString,
    /// Maximum number of pooled connections.
    pub max_connections: u32,
    /// Connections the pool keeps open even when idle. Default: none.
    pub min_idle: Option<u32>,
    /// How long opening a connection or waiting for a pooled one may take.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Age after which a connection is closed instead of reused.
    #[serde(with = "humantime_serde")]
    pub max_lifetime: Option<Duration>,
    /// Idle time after which a connection above `min_idle` is closed.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Option<Duration>,
    /// Apply pending migrations when the server starts. Default: on in development and testing,
    /// off in production.
    pub migrate_on_start: Option<bool>,
    /// Allow SslMode None or Preferred in production.
    pub allow_insecure_transport: bool,
    /// How often the health check queries the database.
    #[serde(with = "humantime_serde")]
    pub health_check_interval: Duration,
    /// How long SQLite waits for a lock before it reports "database is locked".
    #[serde(with = "humantime_serde")]
    pub sqlite_busy_timeout: Duration,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisSettings {
    /// Redis URL, for example `redis://127.0.0.1:6379`. Unset: no Redis.
    #[serde(serialize_with = "masked::optional_url")]
    pub url: Option<SecretString>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            environment: Environment::Development,
            server: ServerSettings::default(),
            database: DatabaseSettings::default(),
            redis: RedisSettings::default(),
            auth: AuthSettings::default(),
            audit: AuditSettings::default(),
            cache: CacheSettings::default(),
            chat: ChatSettings::default(),
            rate_limit: RateLimitSettings::default(),
        }
    }
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            listen_addr: None,
            shutdown_timeout: Duration::from_secs(30),
            data_dir: PathBuf::from("data"),
            tls: None,
            limits: LimitSettings::default(),
        }
    }
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        DatabaseSettings {
            url: SecretString::from("sqlite://data/ally.db"),
            max_connections: 10,
            min_idle: None,
            connect_timeout: Duration::from_secs(10),
            max_lifetime: Some(Duration::from_secs(60 * 60)),
            idle_timeout: Some(Duration::from_secs(10 * 60)),
            migrate_on_start: None,
            allow_insecure_transport: false,
            health_check_interval: Duration::from_secs(5),
            sqlite_busy_timeout: Duration::from_secs(5),
        }
    }
}

impl Settings {
    /// Loads settings from the working directory and the process environment.
    pub fn load(config_file: Option<&Path>) -> Result<Settings, ConfigError> {
        let env: HashMap<String, String> = std::env::vars().collect();
        let dir = std::env::current_dir().map_err(|error| ConfigError::Invalid {
            key: "working directory".into(),
            message: error.to_string(),
        })?;
        Settings::load_from(&Sources {
            dir: &dir,
            config_file,
            env: &env,
        })
    }

    /// Loads settings from explicit sources, so tests never touch the process environment.
    pub fn load_from(sources: &Sources<'_>) -> Result<Settings, ConfigError> {
        let default_file = sources.dir.join("ally.toml");
        let (file, required) = match sources.config_file {
            Some(path) => (sources.dir.join(path), true),
            None => (default_file, false),
        };
        let file_table = read_toml(&file, required)?;

        let environment = match lookup(sources.env, &["ALLY_ENVIRONMENT", "ENVIRONMENT"]) {
            Some(value) => Environment::parse(&value)?,
            None => match file_table
                .get("environment")
                .and_then(|value| value.as_str())
            {
                Some(value) => Environment::parse(value)?,
                None => Environment::Development,
            },
        };

        let mut env = read_env_file(&sources.dir.join(format!(".env.{environment}")))?;
        env.extend(sources.env.iter().map(|(k, v)| (k.clone(), v.clone())));

        let mut builder = config::Config::builder()
            .add_source(config::File::from(file.as_path()).required(required))
            .add_source(
                config::Environment::with_prefix("ALLY")
                    .prefix_separator("_")
                    .separator("__")
                    .try_parsing(true)
                    .source(Some(env.clone())),
            )
            .set_override("environment", environment.as_str())
            .map_err(ConfigError::from)?;
        for (variable, key) in [("DATABASE_URL", "database.url"), ("REDIS_URL", "redis.url")] {
            let prefixed = format!("ALLY_{}", key.replace('.', "__").to_ascii_uppercase());
            if let (Some(value), false) = (env.get(variable), env.contains_key(&prefixed)) {
                builder = builder
                    .set_override(key, value.as_str())
                    .map_err(ConfigError::from)?;
            }
        }

        let settings: Settings = builder
            .build()
            .and_then(|config| config.try_deserialize())
            .map_err(ConfigError::from)?;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let database = &self.database;
        let url = self.database_url()?;
        if database.max_connections == 0 {
            return Err(ConfigError::invalid(
                "database.max_connections",
                "must be at least 1",
            ));
        }
        if let Some(min_idle) = database.min_idle
            && min_idle > database.max_connections
        {
            return Err(ConfigError::invalid(
                "database.min_idle",
                format!(
                    "{min_idle} is more than database.max_connections ({})",
                    database.max_connections
                ),
            ));
        }
        if database.connect_timeout.is_zero() {
            return Err(ConfigError::invalid(
                "database.connect_timeout",
                "must be longer than zero",
            ));
        }
        self.server.limits.validate()?;
        if let Some(tls) = &self.server.tls {
            tls.validate()?;
        }
        self.rate_limit.validate()?;
        if self.cache.ttl.is_zero() {
            return Err(ConfigError::invalid(
                "cache.ttl",
                "must be longer than zero",
            ));
        }
        match &self.auth.jwt_secret {
            Some(secret) if secret.expose_secret().len() < crate::auth::jwt::MIN_SECRET_BYTES => {
                return Err(ConfigError::invalid(
                    "auth.jwt_secret",
                    format!(
                        "must be at least {} bytes",
                        crate::auth::jwt::MIN_SECRET_BYTES
                    ),
                ));
            }
            None if self.environment == Environment::Production => {
                return Err(ConfigError::invalid(
                    "auth.jwt_secret",
                    "is required in production; set ALLY_AUTH__JWT_SECRET to at least 32 random \
                     bytes",
                ));
            }
            _ => {}
        }
        if let DatabaseUrl::Mysql(target) = &url
            && self.environment == Environment::Production
            && target.ssl_mode < SslMode::Required
            && !database.allow_insecure_transport
        {
            return Err(ConfigError::invalid(
                "database.url",
                format!(
                    "SslMode={} is not allowed in production; use Required, VerifyCA or \
                     VerifyFull, or set database.allow_insecure_transport = true",
                    target.ssl_mode
                ),
            ));
        }
        Ok(())
    }

    /// Parses `database.url`.
    pub fn database_url(&self) -> Result<DatabaseUrl, ConfigError> {
        DatabaseUrl::parse(self.database.url.expose_secret()).map_err(ConfigError::DatabaseUrl)
    }

    /// Address to bind, with the environment's default when none is set.
    pub fn listen_addr(&self) -> SocketAddr {
        self.server.listen_addr.unwrap_or_else(|| {
            let ip = match self.environment {
                Environment::Production => Ipv4Addr::UNSPECIFIED,
                Environment::Development | Environment::Testing => Ipv4Addr::LOCALHOST,
            };
            SocketAddr::from((ip, DEFAULT_PORT))
        })
    }

    /// Returns whether `serve` applies pending migrations, with the environment's default.
    pub fn migrate_on_start(&self) -> bool {
        self.database
            .migrate_on_start
            .unwrap_or(self.environment != Environment::Production)
    }

    /// Renders the settings as TOML with every secret masked, for `ally config`.
    pub fn to_masked_toml(&self) -> String {
        let mut resolved = self.clone();
        resolved.server.listen_addr = Some(self.listen_addr());
        resolved.database.migrate_on_start = Some(self.migrate_on_start());
        toml::to_string_pretty(&resolved)
            .unwrap_or_else(|error| format!("# settings could not be rendered: {error}\n"))
    }
}

/// Locations that [`Settings::load_from`] reads.
pub struct Sources<'a> {
    /// Folder holding `ally.toml` and `.env.<ENVIRONMENT>`.
    pub dir: &'a Path,
    /// A settings file to read instead of `ally.toml`; it must exist.
    pub config_file: Option<&'a Path>,
    /// Environment variables.
    pub env: &'a HashMap<String, String>,
}

fn lookup(env: &HashMap<String, String>, names: &[&str]) -> Option<String> {
    names.iter().find_map(|name| env.get(*name).cloned())
}

fn read_toml(path: &Path, required: bool) -> Result<toml::Table, ConfigError> {
    match std::fs::read_to_string(path) {
        Ok(text) => text
            .parse::<toml::Table>()
            .map_err(|error| ConfigError::Invalid {
                key: path.display().to_string(),
                message: error.message().to_string(),
            }),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound && !required => {
            Ok(toml::Table::new())
        }
        Err(error) => Err(ConfigError::Invalid {
            key: path.display().to_string(),
            message: format!("cannot be read: {error}"),
        }),
    }
}

fn read_env_file(path: &Path) -> Result<HashMap<String, String>, ConfigError> {
    let entries = match dotenvy::from_path_iter(path) {
        Ok(entries) => entries,
        Err(dotenvy::Error::Io(error)) if error.kind() == std::io::ErrorKind::NotFound => {
            return Ok(HashMap::new());
        }
        Err(error) => return Err(env_file_error(path, &error)),
    };
    entries
        .map(|entry| entry.map_err(|error| env_file_error(path, &error)))
        .collect()
}

fn env_file_error(path: &Path, error: &dotenvy::Error) -> ConfigError {
    // dotenvy's parse errors quote the offending line, which may hold a password, so only the
    // position is kept.
    let message = match error {
        dotenvy::Error::LineParse(_, index) => format!("cannot be parsed near character {index}"),
        dotenvy::Error::Io(error) => format!("cannot be read: {error}"),
        _ => "cannot be parsed".to_string(),
    };
    ConfigError::Invalid {
        key: path.display().to_string(),
        message,
    }
}

/// A setting that is missing, malformed or not allowed.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid setting `{key}`: {message}")]
    Invalid { key: String, message: String },
    #[error(transparent)]
    DatabaseUrl(#[from] DatabaseUrlError),
}

impl ConfigError {
    fn invalid(key: &str, message: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key: key.to_string(),
            message: message.into(),
        }
    }
}

impl From<config::ConfigError> for ConfigError {
    fn from(error: config::ConfigError) -> Self {
        // config-rs names the key and the expected type. It echoes a value only for a type
        // mismatch, and the secret settings are strings, which accept any value.
        ConfigError::Invalid {
            key: "settings".into(),
            message: error.to_string(),
        }
    }
}

#[cfg(test)]
mod tests;
