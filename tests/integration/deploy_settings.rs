//! The settings files under `deploy/` load into valid production settings, so a renamed or
//! misspelt key there fails here instead of stopping a container at start-up.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ally::config::database_url::{DatabaseUrl, MysqlTarget, SslMode};
use ally::config::{Environment, Settings, Sources};
use secrecy::ExposeSecret;

/// A JWT secret of the accepted length, used only in these tests.
const JWT_SECRET: &str = "deploy-test-signing-secret-of-48-bytes-0123456789";

fn deploy_file(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(relative)
}

/// Reads a KEY=value file the way the server reads `.env.<ENVIRONMENT>`.
fn read_env_file(path: &Path) -> HashMap<String, String> {
    dotenvy::from_path_iter(path)
        .unwrap_or_else(|error| panic!("{} cannot be read: {error}", path.display()))
        .map(|entry| entry.unwrap_or_else(|error| panic!("{}: {error}", path.display())))
        .collect()
}

/// Loads settings from `env` alone, in an empty folder, so no local `ally.toml` interferes.
fn load(env: &HashMap<String, String>) -> Settings {
    let dir = tempfile::tempdir().expect("temporary folder");
    Settings::load_from(&Sources {
        dir: dir.path(),
        config_file: None,
        env,
    })
    .unwrap_or_else(|error| panic!("settings do not load: {error}"))
}

fn mysql_target(settings: &Settings) -> MysqlTarget {
    match settings.database_url().expect("database URL parses") {
        DatabaseUrl::Mysql(target) => target,
        DatabaseUrl::Sqlite(target) => panic!("expected MySQL, got SQLite {:?}", target.path),
    }
}

#[test]
fn kubernetes_settings_load() {
    let mut env = read_env_file(&deploy_file("k8s/settings.env"));
    // The three values the Deployment takes from the Secret, in the form docs/operations.md
    // gives for Azure Database for MySQL with the image's CA bundle.
    env.insert(
        "DATABASE_URL".into(),
        "Server=example.mysql.database.azure.com;Port=3306;User ID=ally;Password='p;a''ss';\
         Database=ally;SslMode=VerifyFull;SslCa=/etc/ally/tls/azure-mysql-ca.pem"
            .into(),
    );
    env.insert("REDIS_URL".into(), "redis://redis.example:6379".into());
    env.insert("ALLY_AUTH__JWT_SECRET".into(), JWT_SECRET.into());

    let settings = load(&env);

    assert_eq!(settings.environment, Environment::Production);
    assert_eq!(settings.listen_addr().to_string(), "0.0.0.0:50051");
    assert!(!settings.migrate_on_start());
    assert_eq!(settings.server.shutdown_timeout, Duration::from_secs(30));
    assert_eq!(settings.database.max_connections, 10);
    assert_eq!(settings.database.min_idle, Some(2));
    assert_eq!(
        settings.database.max_lifetime,
        Some(Duration::from_secs(30 * 60))
    );
    assert_eq!(
        settings.database.idle_timeout,
        Some(Duration::from_secs(10 * 60))
    );
    assert_eq!(settings.cache.ttl, Duration::from_secs(30));
    assert!(settings.redis.url.is_some());

    let target = mysql_target(&settings);
    assert_eq!(target.host, "example.mysql.database.azure.com");
    assert_eq!(target.ssl_mode, SslMode::VerifyFull);
    assert_eq!(
        target.ssl_ca.as_deref(),
        Some(Path::new("/etc/ally/tls/azure-mysql-ca.pem"))
    );
    let password = target.password.expect("password");
    assert_eq!(password.expose_secret(), "p;a'ss");
}

#[test]
fn kubernetes_settings_need_jwt_secret() {
    let mut env = read_env_file(&deploy_file("k8s/settings.env"));
    env.insert(
        "DATABASE_URL".into(),
        "mysql://ally:pass@db.example:3306/ally?ssl-mode=VerifyFull".into(),
    );

    let dir = tempfile::tempdir().expect("temporary folder");
    let error = Settings::load_from(&Sources {
        dir: dir.path(),
        config_file: None,
        env: &env,
    })
    .expect_err("production without a JWT secret must not load");

    assert!(
        error.to_string().contains("auth.jwt_secret"),
        "error does not name the setting: {error}"
    );
}

#[test]
fn compose_env_example_loads() {
    let mut env = read_env_file(&deploy_file("k8s/settings.env"));
    let example = read_env_file(&deploy_file("ally.env.example"));
    assert!(
        example.contains_key("DATABASE_URL"),
        "ally.env.example has no DATABASE_URL"
    );
    assert!(
        example.contains_key("ALLY_AUTH__JWT_SECRET"),
        "ally.env.example has no ALLY_AUTH__JWT_SECRET"
    );
    env.extend(example);
    // An operator fills in the empty password, of letters and digits as the example describes,
    // and the secret.
    let url = env["DATABASE_URL"].replace("Password=''", "Password='0a1b2c3d4e5f'");
    env.insert("DATABASE_URL".into(), url);
    env.insert("ALLY_AUTH__JWT_SECRET".into(), JWT_SECRET.into());

    let settings = load(&env);

    let target = mysql_target(&settings);
    assert_eq!(target.host, "mysql");
    assert_eq!(target.port, 3306);
    assert_eq!(target.user, "ally");
    assert_eq!(target.database, "ally");
    assert_eq!(target.ssl_mode, SslMode::Required);
    let password = target.password.expect("password");
    assert_eq!(password.expose_secret(), "0a1b2c3d4e5f");
}

#[test]
fn production_env_example_loads() {
    // The server reads `.env.production` itself, so the example is tested through that path,
    // with a password whose `;` and `'` need the quoting that the example shows.
    let dir = tempfile::tempdir().expect("temporary folder");
    let text = std::fs::read_to_string(deploy_file("env.production.example"))
        .expect("env.production.example");
    let text = text.replace(
        "Password='<from your secret store>'",
        "Password='s;e''cret'",
    );
    assert!(
        text.contains("s;e''cret"),
        "the example's password form changed"
    );
    std::fs::write(dir.path().join(".env.production"), text).expect("write .env.production");
    let env = HashMap::from([
        ("ENVIRONMENT".to_string(), "production".to_string()),
        ("ALLY_AUTH__JWT_SECRET".to_string(), JWT_SECRET.to_string()),
    ]);

    let settings = Settings::load_from(&Sources {
        dir: dir.path(),
        config_file: None,
        env: &env,
    })
    .unwrap_or_else(|error| panic!("settings do not load: {error}"));

    let target = mysql_target(&settings);
    assert_eq!(target.host, "example.mysql.database.azure.com");
    assert_eq!(target.ssl_mode, SslMode::VerifyFull);
    let password = target.password.expect("password");
    assert_eq!(password.expose_secret(), "s;e'cret");
}
