//! Database access: one connection type and one pool for SQLite and MySQL.
//!
//! Repository code takes a [`DbConnection`] from [`Database::read`] or [`Database::write`] and
//! runs diesel queries on it. On MySQL both return connections from the same pool. On SQLite,
//! writes go through a pool of one connection, because SQLite allows one writer at a time. A
//! deferred transaction that later upgrades to a write lock would fail at once with "database
//! is locked" instead of waiting for the busy timeout.

pub mod checkout;
pub mod connection;
pub mod migrations;
mod mysql;
pub mod retry;
mod sqlite;
mod tls;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use diesel_async::RunQueryDsl;
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod,
};
use futures_util::FutureExt;
use tracing::warn;

pub use self::connection::{Backend, Connector, DbConnection};
use crate::config::DatabaseSettings;
use crate::config::database_url::{DatabaseUrl, SqlitePath};

/// A bb8 pool of [`DbConnection`]s.
pub type Pool = bb8::Pool<AsyncDieselConnectionManager<DbConnection>>;
/// A connection checked out of a [`Pool`]; it returns to the pool when dropped.
pub type PooledConnection<'a> =
    bb8::PooledConnection<'a, AsyncDieselConnectionManager<DbConnection>>;

/// A failure to open a connection. No variant carries the password.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("connecting to MySQL failed: {0}")]
    Mysql(#[source] mysql_async::Error),
    #[error(
        "the server requires TLS but the connection string says SslMode=None; use Required, \
         VerifyCA or VerifyFull (server said: {0})"
    )]
    TlsRequiredByServer(String),
    #[error(
        "access denied with SslMode=None; the server offers TLS and may require it (MariaDB \
         reports a missing TLS as access denied), so try SslMode=Required or stronger \
         (server said: {0})"
    )]
    AccessDeniedWithoutTls(String),
    #[error("TLS certificate verification failed: {0}")]
    Tls(#[source] rustls::Error),
    #[error("TLS handshake with the server failed: {0}")]
    TlsProbe(#[source] std::io::Error),
    #[error("invalid TLS settings: {0}")]
    TlsConfig(String),
    #[error("connecting to {address} timed out after {timeout:?}")]
    TimedOut { address: String, timeout: Duration },
    #[error("setting up the MySQL session failed: {0}")]
    Setup(String),
    #[error("opening the SQLite database failed: {0}")]
    Sqlite(String),
    #[error("creating the database folder {path} failed: {source}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A failure to get a connection or run a query.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("no database connection became available within {0:?}")]
    PoolTimedOut(Duration),
    #[error("the database could not be reached: {0}")]
    Pool(String),
    #[error("database query failed: {0}")]
    Query(#[from] diesel::result::Error),
}

impl From<bb8::RunError<diesel_async::pooled_connection::PoolError>> for DbError {
    fn from(error: bb8::RunError<diesel_async::pooled_connection::PoolError>) -> Self {
        match error {
            bb8::RunError::TimedOut => DbError::PoolTimedOut(Duration::ZERO),
            bb8::RunError::User(error) => DbError::Pool(error.to_string()),
        }
    }
}

/// Pool sizes and timeouts.
#[derive(Clone, Debug)]
pub struct PoolOptions {
    pub max_connections: u32,
    pub min_idle: Option<u32>,
    pub connect_timeout: Duration,
    pub max_lifetime: Option<Duration>,
    pub idle_timeout: Option<Duration>,
    pub sqlite_busy_timeout: Duration,
}

impl From<&DatabaseSettings> for PoolOptions {
    fn from(settings: &DatabaseSettings) -> Self {
        PoolOptions {
            max_connections: settings.max_connections,
            min_idle: settings.min_idle,
            connect_timeout: settings.connect_timeout,
            max_lifetime: settings.max_lifetime,
            idle_timeout: settings.idle_timeout,
            sqlite_busy_timeout: settings.sqlite_busy_timeout,
        }
    }
}

/// The service's database: a connector and its pools. Cheap to clone.
#[derive(Clone)]
pub struct Database {
    inner: Arc<Inner>,
}

struct Inner {
    connector: Connector,
    pool: Pool,
    writer: Pool,
    /// Whether `writer` is a pool of its own rather than a clone of `pool`.
    separate_writer: bool,
    connect_timeout: Duration,
}

/// A handle to a [`Database`] that does not keep its pools open.
#[derive(Clone)]
pub struct WeakDatabase(std::sync::Weak<Inner>);

impl WeakDatabase {
    /// Returns the database while another handle still keeps it open.
    pub fn upgrade(&self) -> Option<Database> {
        self.0.upgrade().map(|inner| Database { inner })
    }
}

/// Connection counts of one pool, for metrics.
#[derive(Clone, Debug)]
pub struct PoolStatus {
    /// `main`, or `writer` for the single-connection write pool of a SQLite file.
    pub name: &'static str,
    /// Open connections, idle or handed out.
    pub open: u32,
    pub idle: u32,
    /// Requests waiting for a connection now.
    pub waiting: u64,
    /// Waits that ended in a timeout since the pool was built.
    pub timed_out: u64,
}

impl PoolStatus {
    fn read(name: &'static str, pool: &Pool) -> PoolStatus {
        let state = pool.state();
        PoolStatus {
            name,
            open: state.connections,
            idle: state.idle_connections,
            waiting: state.statistics.pending_gets(),
            timed_out: state.statistics.get_timed_out,
        }
    }
}

impl Database {
    /// Opens one connection directly, so that a bad password or a failed TLS handshake is
    /// reported with its cause rather than as a pool timeout, then builds the pools.
    pub async fn connect(url: DatabaseUrl, options: &PoolOptions) -> Result<Database, DbError> {
        let in_memory = matches!(
            &url,
            DatabaseUrl::Sqlite(target) if target.path == SqlitePath::Memory
        );
        let connector = Connector::new(url, options.connect_timeout, options.sqlite_busy_timeout);
        drop(connector.connect().await?);

        let pool = match (connector.backend(), in_memory) {
            // Every connection to `:memory:` opens a database of its own, so one connection is
            // shared by everything.
            (Backend::Sqlite, true) => {
                let single = PoolOptions {
                    max_connections: 1,
                    min_idle: Some(1),
                    max_lifetime: None,
                    idle_timeout: None,
                    ..options.clone()
                };
                build_pool(&connector, &single).await?
            }
            _ => build_pool(&connector, options).await?,
        };
        let separate_writer = connector.backend() == Backend::Sqlite && !in_memory;
        let writer = match (connector.backend(), in_memory) {
            (Backend::Sqlite, false) => {
                let single = PoolOptions {
                    max_connections: 1,
                    min_idle: None,
                    ..options.clone()
                };
                build_pool(&connector, &single).await?
            }
            _ => pool.clone(),
        };

        Ok(Database {
            inner: Arc::new(Inner {
                connector,
                pool,
                writer,
                separate_writer,
                connect_timeout: options.connect_timeout,
            }),
        })
    }

    pub fn backend(&self) -> Backend {
        self.inner.connector.backend()
    }

    pub fn connector(&self) -> &Connector {
        &self.inner.connector
    }

    /// Checks out a pooled connection for reads.
    pub async fn read(&self) -> Result<PooledConnection<'_>, DbError> {
        self.inner
            .pool
            .get()
            .await
            .map_err(|error| self.pool_error(error))
    }

    /// Checks out a pooled connection for transactions that write.
    pub async fn write(&self) -> Result<PooledConnection<'_>, DbError> {
        self.inner
            .writer
            .get()
            .await
            .map_err(|error| self.pool_error(error))
    }

    /// Counts of open and idle connections in the read pool.
    pub fn pool_state(&self) -> bb8::State {
        self.inner.pool.state()
    }

    /// Returns the connection counts of each pool: `main`, and `writer` on a SQLite file.
    pub fn pool_statuses(&self) -> Vec<PoolStatus> {
        let mut statuses = vec![PoolStatus::read("main", &self.inner.pool)];
        if self.inner.separate_writer {
            statuses.push(PoolStatus::read("writer", &self.inner.writer));
        }
        statuses
    }

    /// Returns a handle that does not keep the pools open.
    pub fn downgrade(&self) -> WeakDatabase {
        WeakDatabase(Arc::downgrade(&self.inner))
    }

    /// Runs `SELECT 1` on a pooled connection.
    pub async fn ping(&self) -> Result<(), DbError> {
        let mut conn = self.read().await?;
        diesel::select(diesel::dsl::sql::<diesel::sql_types::Integer>("1"))
            .get_result::<i32>(&mut *conn)
            .await?;
        Ok(())
    }

    fn pool_error(
        &self,
        error: bb8::RunError<diesel_async::pooled_connection::PoolError>,
    ) -> DbError {
        match DbError::from(error) {
            DbError::PoolTimedOut(_) => DbError::PoolTimedOut(self.inner.connect_timeout),
            other => other,
        }
    }
}

async fn build_pool(connector: &Connector, options: &PoolOptions) -> Result<Pool, DbError> {
    let mut config = ManagerConfig::<DbConnection>::default();
    let setup_connector = connector.clone();
    config.custom_setup = Box::new(move |_url| {
        let connector = setup_connector.clone();
        async move {
            let mut conn = connector
                .connect()
                .await
                .map_err(|error| diesel::ConnectionError::BadConnection(error.to_string()))?;
            checkout::track(&mut conn);
            Ok(conn)
        }
        .boxed()
    });
    config.recycling_method =
        RecyclingMethod::CustomFunction(Box::new(|conn| checkout::check(conn).boxed()));
    let manager =
        AsyncDieselConnectionManager::new_with_config(connector.target().redacted(), config);

    bb8::Pool::builder()
        .max_size(options.max_connections)
        .min_idle(options.min_idle)
        .connection_timeout(options.connect_timeout)
        .max_lifetime(options.max_lifetime)
        .idle_timeout(options.idle_timeout)
        .test_on_check_out(true)
        .error_sink(Box::new(LogErrorSink::default()))
        .build(manager)
        .await
        .map_err(|error| DbError::Pool(error.to_string()))
}

/// Logs connection failures inside the pool, which bb8 would otherwise swallow and report to
/// the caller only as a timeout. While the database stays down the pool retries constantly, so
/// repeats within [`LogErrorSink::QUIET_PERIOD`] are counted and reported with the next line.
#[derive(Clone, Debug, Default)]
struct LogErrorSink {
    state: Arc<std::sync::Mutex<SinkState>>,
}

#[derive(Debug, Default)]
struct SinkState {
    last_logged: Option<std::time::Instant>,
    suppressed: u64,
}

impl LogErrorSink {
    const QUIET_PERIOD: Duration = Duration::from_secs(10);
}

impl bb8::ErrorSink<diesel_async::pooled_connection::PoolError> for LogErrorSink {
    fn sink(&self, error: diesel_async::pooled_connection::PoolError) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        let now = std::time::Instant::now();
        if state
            .last_logged
            .is_some_and(|last| now.duration_since(last) < Self::QUIET_PERIOD)
        {
            state.suppressed += 1;
            return;
        }
        let suppressed = std::mem::take(&mut state.suppressed);
        state.last_logged = Some(now);
        drop(state);
        warn!(error = %error, repeats_suppressed = suppressed, "opening a pooled database connection failed");
    }

    fn boxed_clone(&self) -> Box<dyn bb8::ErrorSink<diesel_async::pooled_connection::PoolError>> {
        Box::new(self.clone())
    }
}
