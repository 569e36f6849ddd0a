use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use secrecy::ExposeSecret;

use super::{ConfigError, Environment, Settings, Sources};

const PASSWORD: &str = "Pa55;w=rd";
const JWT_SECRET: &str = "0123456789abcdef0123456789abcdef-signing";

struct Fixture {
    dir: tempfile::TempDir,
    env: HashMap<String, String>,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture {
            dir: tempfile::tempdir().expect("temporary folder"),
            env: HashMap::new(),
        }
    }

    fn file(self, name: &str, text: &str) -> Fixture {
        std::fs::write(self.dir.path().join(name), text).expect("write file");
        self
    }

    fn var(mut self, name: &str, value: &str) -> Fixture {
        self.env.insert(name.to_string(), value.to_string());
        self
    }

    fn load(&self) -> Result<Settings, ConfigError> {
        Settings::load_from(&Sources {
            dir: self.dir.path(),
            config_file: None,
            env: &self.env,
        })
    }
}

fn mysql_url(ssl_mode: &str) -> String {
    format!(
        "Server=db.example.com;User ID=ally;Password='{PASSWORD}';Database=ally;SslMode={ssl_mode}"
    )
}

#[test]
fn defaults_for_development() {
    let settings = Fixture::new().load().expect("defaults load");

    assert_eq!(settings.environment, Environment::Development);
    assert_eq!(
        settings.listen_addr(),
        "127.0.0.1:50051".parse::<SocketAddr>().unwrap()
    );
    assert!(settings.migrate_on_start());
    assert_eq!(
        settings.database.url.expose_secret(),
        "sqlite://data/ally.db"
    );
    assert_eq!(
        settings.database.max_lifetime,
        Some(Duration::from_secs(3600))
    );
}

#[test]
fn production_defaults() {
    let settings = Fixture::new()
        .var("ENVIRONMENT", "production")
        .var("ALLY_AUTH__JWT_SECRET", JWT_SECRET)
        .load()
        .expect("production loads");

    assert_eq!(
        settings.listen_addr(),
        "0.0.0.0:50051".parse::<SocketAddr>().unwrap()
    );
    assert!(!settings.migrate_on_start());
}

#[test]
fn layers_override_in_order() {
    let fixture = Fixture::new()
        .file(
            "ally.toml",
            "[database]\nmax_connections = 3\nconnect_timeout = \"3s\"\nidle_timeout = \"3m\"\n",
        )
        .file(
            ".env.development",
            "ALLY_DATABASE__CONNECT_TIMEOUT=4s\nALLY_DATABASE__IDLE_TIMEOUT=4m\n",
        )
        .var("ALLY_DATABASE__IDLE_TIMEOUT", "5m");

    let settings = fixture.load().expect("layers load");

    assert_eq!(
        settings.database.max_connections, 3,
        "ally.toml over defaults"
    );
    assert_eq!(
        settings.database.connect_timeout,
        Duration::from_secs(4),
        ".env over ally.toml"
    );
    assert_eq!(
        settings.database.idle_timeout,
        Some(Duration::from_secs(300)),
        "env over .env"
    );
}

#[test]
fn env_file_follows_environment() {
    let settings = Fixture::new()
        .file(".env.testing", "ALLY_DATABASE__MAX_CONNECTIONS=7\n")
        .file(".env.development", "ALLY_DATABASE__MAX_CONNECTIONS=2\n")
        .var("ENVIRONMENT", "testing")
        .load()
        .expect("testing loads");

    assert_eq!(settings.environment, Environment::Testing);
    assert_eq!(settings.database.max_connections, 7);
}

#[test]
fn environment_from_toml() {
    let settings = Fixture::new()
        .file("ally.toml", "environment = \"testing\"\n")
        .file(".env.testing", "ALLY_DATABASE__MAX_CONNECTIONS=6\n")
        .load()
        .expect("loads");

    assert_eq!(settings.environment, Environment::Testing);
    assert_eq!(settings.database.max_connections, 6);
}

#[test]
fn database_url_variable() {
    let settings = Fixture::new()
        .var("DATABASE_URL", "sqlite:///var/lib/ally/ally.db")
        .load()
        .expect("loads");

    assert_eq!(
        settings.database.url.expose_secret(),
        "sqlite:///var/lib/ally/ally.db"
    );
}

#[test]
fn prefixed_database_url_wins() {
    let settings = Fixture::new()
        .var("DATABASE_URL", "sqlite://a.db")
        .var("ALLY_DATABASE__URL", "sqlite://b.db")
        .load()
        .expect("loads");

    assert_eq!(settings.database.url.expose_secret(), "sqlite://b.db");
}

#[test]
fn production_rejects_weak_ssl_mode() {
    for mode in ["None", "Preferred"] {
        let error = Fixture::new()
            .var("ENVIRONMENT", "production")
            .var("ALLY_AUTH__JWT_SECRET", JWT_SECRET)
            .var("DATABASE_URL", &mysql_url(mode))
            .load()
            .expect_err("weak TLS must be rejected in production");

        let text = error.to_string();
        assert!(text.contains("database.url"), "{text}");
        assert!(text.contains(&format!("SslMode={mode}")), "{text}");
        assert!(!text.contains(PASSWORD), "{text}");
    }
}

#[test]
fn production_allows_weak_ssl_mode_explicitly() {
    let settings = Fixture::new()
        .var("ENVIRONMENT", "production")
        .var("ALLY_AUTH__JWT_SECRET", JWT_SECRET)
        .var("DATABASE_URL", &mysql_url("Preferred"))
        .var("ALLY_DATABASE__ALLOW_INSECURE_TRANSPORT", "true")
        .load();

    assert!(settings.is_ok(), "{:?}", settings.err());
}

#[test]
fn production_accepts_required() {
    for mode in ["Required", "VerifyCA", "VerifyFull"] {
        let settings = Fixture::new()
            .var("ENVIRONMENT", "production")
            .var("ALLY_AUTH__JWT_SECRET", JWT_SECRET)
            .var("DATABASE_URL", &mysql_url(mode))
            .load();

        assert!(settings.is_ok(), "{mode}: {:?}", settings.err());
    }
}

#[test]
fn development_accepts_weak_ssl_mode() {
    let settings = Fixture::new()
        .var("DATABASE_URL", &mysql_url("None"))
        .load();

    assert!(settings.is_ok(), "{:?}", settings.err());
}

#[test]
fn unknown_key_rejected() {
    let error = Fixture::new()
        .file("ally.toml", "[database]\nmax_conections = 3\n")
        .load()
        .expect_err("a misspelt key must be rejected");

    assert!(error.to_string().contains("max_conections"), "{error}");
}

#[test]
fn bad_duration_rejected() {
    let error = Fixture::new()
        .var("ALLY_DATABASE__CONNECT_TIMEOUT", "soon")
        .load()
        .expect_err("a bad duration must be rejected");

    assert!(error.to_string().contains("connect_timeout"), "{error}");
}

#[test]
fn unknown_environment_rejected() {
    let error = Fixture::new()
        .var("ENVIRONMENT", "staging")
        .load()
        .expect_err("an unknown environment must be rejected");

    assert!(error.to_string().contains("staging"), "{error}");
}

#[test]
fn min_idle_above_max_rejected() {
    let error = Fixture::new()
        .var("ALLY_DATABASE__MAX_CONNECTIONS", "2")
        .var("ALLY_DATABASE__MIN_IDLE", "3")
        .load()
        .expect_err("min_idle above max_connections must be rejected");

    assert!(error.to_string().contains("database.min_idle"), "{error}");
}

#[test]
fn bad_database_url_hides_password() {
    let error = Fixture::new()
        .var(
            "DATABASE_URL",
            &format!("Server=db;Colour=blue;Pwd={PASSWORD};Database=x"),
        )
        .load()
        .expect_err("an unknown key must be rejected");

    let text = error.to_string();
    assert!(text.contains("Colour"), "{text}");
    assert!(!text.contains(PASSWORD), "{text}");
}

#[test]
fn masked_output_hides_secrets() {
    let settings = Fixture::new()
        .var("DATABASE_URL", &mysql_url("VerifyFull"))
        .var("REDIS_URL", "redis://:redis-secret@127.0.0.1:6379/0")
        .load()
        .expect("loads");

    let text = settings.to_masked_toml();

    assert!(!text.contains(PASSWORD), "{text}");
    assert!(!text.contains("redis-secret"), "{text}");
    assert!(text.contains("db.example.com"), "{text}");
    assert!(text.contains("127.0.0.1:6379"), "{text}");
}

#[test]
fn debug_hides_secrets() {
    let settings = Fixture::new()
        .var("DATABASE_URL", &mysql_url("VerifyFull"))
        .var("REDIS_URL", "redis://:redis-secret@127.0.0.1:6379/0")
        .load()
        .expect("loads");

    let text = format!("{settings:?}");

    assert!(!text.contains(PASSWORD), "{text}");
    assert!(!text.contains("redis-secret"), "{text}");
}

#[test]
fn env_file_parse_error_hides_line() {
    let error = Fixture::new()
        .file(
            ".env.development",
            "DATABASE_URL=ok\nnot a valid line with Pa55 'unterminated\n",
        )
        .load()
        .expect_err("a malformed .env file must be rejected");

    let text = error.to_string();
    assert!(text.contains(".env.development"), "{text}");
    assert!(!text.contains("Pa55"), "{text}");
}

#[test]
fn example_settings_file_loads() {
    let env = HashMap::from([
        ("DATABASE_URL".to_string(), mysql_url("VerifyFull")),
        ("ALLY_AUTH__JWT_SECRET".to_string(), JWT_SECRET.to_string()),
    ]);
    let settings = Settings::load_from(&Sources {
        dir: std::path::Path::new(env!("CARGO_MANIFEST_DIR")),
        config_file: Some(std::path::Path::new("deploy/ally.example.toml")),
        env: &env,
    })
    .expect("the example settings file loads");

    assert_eq!(settings.environment, Environment::Production);
    assert_eq!(settings.database.max_connections, 20);
}

#[test]
fn production_requires_jwt_secret() {
    let error = Fixture::new()
        .var("ENVIRONMENT", "production")
        .load()
        .expect_err("production without a signing secret must be rejected");

    assert!(error.to_string().contains("auth.jwt_secret"), "{error}");
}

#[test]
fn short_jwt_secret_rejected() {
    let error = Fixture::new()
        .var("ALLY_AUTH__JWT_SECRET", "too-short")
        .load()
        .expect_err("a short signing secret must be rejected");

    let text = error.to_string();
    assert!(text.contains("auth.jwt_secret"), "{text}");
    assert!(!text.contains("too-short"), "{text}");
}

#[test]
fn masked_output_hides_jwt_secret() {
    let settings = Fixture::new()
        .var("ALLY_AUTH__JWT_SECRET", JWT_SECRET)
        .load()
        .expect("loads");

    assert!(!settings.to_masked_toml().contains(JWT_SECRET));
    assert!(!format!("{settings:?}").contains(JWT_SECRET));
}

#[test]
fn transport_defaults() {
    let settings = Fixture::new().load().expect("defaults load");

    let limits = &settings.server.limits;
    assert!(settings.server.tls.is_none());
    assert_eq!(limits.max_decoding_message_size, 4 * 1024 * 1024);
    assert_eq!(limits.max_header_list_size, 16 * 1024);
    assert_eq!(limits.request_timeout, Some(Duration::from_secs(30)));
    assert!(settings.rate_limit.enabled);
    assert_eq!(settings.rate_limit.scale, 1.0);
}

#[test]
fn tls_section_from_environment() {
    let settings = Fixture::new()
        .var("ALLY_SERVER__TLS__CERT_FILE", "/etc/ally/cert.pem")
        .var("ALLY_SERVER__TLS__KEY_FILE", "/etc/ally/key.pem")
        .var("ALLY_SERVER__TLS__CLIENT_CA_FILE", "/etc/ally/ca.pem")
        .var("ALLY_SERVER__TLS__CLIENT_AUTH", "optional")
        .load()
        .expect("TLS settings load");

    let tls = settings.server.tls.expect("TLS section");
    assert_eq!(
        tls.cert_file,
        std::path::PathBuf::from("/etc/ally/cert.pem")
    );
    assert_eq!(tls.client_auth, Some(super::ClientAuth::Optional));
    assert_eq!(tls.handshake_timeout, Duration::from_secs(10));
}

#[test]
fn tls_without_key_file_rejected() {
    let error = Fixture::new()
        .file("ally.toml", "[server.tls]\ncert_file = \"cert.pem\"\n")
        .load()
        .unwrap_err()
        .to_string();

    assert!(error.contains("key_file"), "{error}");
}

#[test]
fn client_auth_without_ca_rejected() {
    let error = Fixture::new()
        .file(
            "ally.toml",
            "[server.tls]\ncert_file = \"c.pem\"\nkey_file = \"k.pem\"\nclient_auth = \"required\"\n",
        )
        .load()
        .unwrap_err()
        .to_string();

    assert!(error.contains("server.tls.client_auth"), "{error}");
    assert!(error.contains("client_ca_file"), "{error}");
}

#[test]
fn zero_limits_rejected() {
    let cases = [
        (
            "ALLY_SERVER__LIMITS__MAX_DECODING_MESSAGE_SIZE",
            "0",
            "max_decoding_message_size",
        ),
        (
            "ALLY_SERVER__LIMITS__MAX_CONCURRENT_STREAMS",
            "0",
            "max_concurrent_streams",
        ),
        (
            "ALLY_SERVER__LIMITS__REQUEST_TIMEOUT",
            "0s",
            "request_timeout",
        ),
        ("ALLY_RATE_LIMIT__SCALE", "0", "rate_limit.scale"),
        ("ALLY_RATE_LIMIT__SCALE", "-2", "rate_limit.scale"),
    ];
    for (variable, value, key) in cases {
        let error = Fixture::new()
            .var(variable, value)
            .load()
            .unwrap_err()
            .to_string();

        assert!(error.contains(key), "{variable}={value}: {error}");
    }
}
