//! Shared test harness: fresh databases per test on both backends and a real server on an
//! ephemeral port.

pub mod certs;
pub mod clients;
pub mod otlp;
pub mod private_mariadb;
pub mod private_redis;
pub mod server_process;
pub mod tools;

use std::net::SocketAddr;
use std::time::Duration;

use ally::config::{Environment, Settings};
use ally::server::RunningServer;
use mysql_async::prelude::Queryable;
use secrecy::SecretString;
use tempfile::TempDir;
use tonic::transport::{Channel, Endpoint};

/// Signing secret of every test server, so tests can mint their own tokens.
pub const TEST_JWT_SECRET: &str = "test-signing-secret-of-at-least-32-bytes";
/// Issuer and audience of test servers (the defaults).
pub const TEST_ISSUER: &str = "ally";

/// Token keys matching the test servers' settings.
pub fn test_token_keys() -> ally::auth::jwt::TokenKeys {
    ally::auth::jwt::TokenKeys::new(
        &SecretString::from(TEST_JWT_SECRET),
        TEST_ISSUER,
        TEST_ISSUER,
        Duration::from_secs(900),
    )
    .expect("valid test keys")
}

/// Server of the shared MariaDB that tests create their databases in.
pub fn mariadb_admin_url() -> String {
    std::env::var("TEST_MARIADB_URL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".into())
}

/// Which database a test body runs against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TestBackend {
    Sqlite,
    Mariadb,
}

/// A database created for one test and removed when dropped.
pub struct TestDatabase {
    pub url: String,
    mariadb_name: Option<String>,
    _dir: TempDir,
}

impl TestDatabase {
    pub async fn create(backend: TestBackend) -> TestDatabase {
        let dir = tempfile::tempdir().expect("temporary folder");
        match backend {
            TestBackend::Sqlite => TestDatabase {
                url: format!("sqlite://{}", dir.path().join("ally.db").display()),
                mariadb_name: None,
                _dir: dir,
            },
            TestBackend::Mariadb => {
                let name = format!("ally_test_{}", uuid::Uuid::now_v7().simple());
                let admin = mariadb_admin_url();
                let mut conn = mysql_async::Conn::from_url(&admin)
                    .await
                    .unwrap_or_else(|e| panic!("MariaDB at {admin} is not reachable: {e}"));
                conn.query_drop(format!(
                    "CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
                ))
                .await
                .expect("create test database");
                conn.disconnect().await.ok();
                TestDatabase {
                    url: format!("{}/{name}", admin.trim_end_matches('/')),
                    mariadb_name: Some(name),
                    _dir: dir,
                }
            }
        }
    }

    /// Returns a folder that lives as long as this database, for files a test writes.
    pub fn dir(&self) -> &std::path::Path {
        self._dir.path()
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let Some(name) = self.mariadb_name.take() else {
            return;
        };
        // Drop runs inside the test's runtime, which cannot block on itself.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async {
                if let Ok(mut conn) = mysql_async::Conn::from_url(mariadb_admin_url()).await {
                    let _ = conn
                        .query_drop(format!("DROP DATABASE IF EXISTS `{name}`"))
                        .await;
                    let _ = conn.disconnect().await;
                }
            });
        })
        .join();
    }
}

/// Settings for a server on 127.0.0.1:0 against `url`, checking health often.
pub fn test_settings(url: &str, data_dir: &std::path::Path) -> Settings {
    let mut settings = Settings {
        environment: Environment::Testing,
        ..Settings::default()
    };
    settings.server.listen_addr = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    settings.server.data_dir = data_dir.to_path_buf();
    settings.server.shutdown_timeout = Duration::from_secs(5);
    settings.database.url = SecretString::from(url.to_string());
    settings.database.max_connections = 4;
    settings.database.connect_timeout = Duration::from_secs(3);
    settings.database.health_check_interval = Duration::from_millis(200);
    settings.auth.jwt_secret = Some(SecretString::from(TEST_JWT_SECRET));
    // Plan rates stay enforced but far above what tests that are not about rate limiting send.
    settings.rate_limit.scale = 1000.0;
    settings
}

/// A running server with its own database and a channel to it.
pub struct TestServer {
    pub server: RunningServer,
    pub channel: Channel,
    /// Kept so the database lives as long as the server.
    _database: TestDatabase,
}

impl TestServer {
    pub async fn start(backend: TestBackend) -> TestServer {
        TestServer::start_with(backend, |_| {}).await
    }

    /// Starts a server whose settings `configure` adjusts first.
    pub async fn start_with(
        backend: TestBackend,
        configure: impl FnOnce(&mut Settings),
    ) -> TestServer {
        init_logging();
        let database = TestDatabase::create(backend).await;
        let mut settings = test_settings(&database.url, database.dir());
        configure(&mut settings);
        let server = ally::server::start(settings).await.expect("server starts");
        let channel = connect(server.local_addr()).await;
        TestServer {
            server,
            channel,
            _database: database,
        }
    }

    pub async fn stop(self) {
        self.server.shutdown().await.expect("clean shutdown");
    }
}

/// Opens a channel to a server on `addr`.
pub async fn connect(addr: SocketAddr) -> Channel {
    Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .expect("connect to the test server")
}

/// Sends logs to the test output when `TEST_LOG` is set.
pub fn init_logging() {
    if std::env::var_os("TEST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
}

/// Polls `check` every 100 ms until it returns true or `limit` passes.
pub async fn wait_until<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Defines one test per backend for each named `async fn body(TestBackend)` in the calling
/// module, as `sqlite::<name>` and `mariadb::<name>`.
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::common::TestBackend::Sqlite).await
                }
            )*
        }
        mod mariadb {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::common::TestBackend::Mariadb).await
                }
            )*
        }
    };
}
