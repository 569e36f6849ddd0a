//! The connection type shared by both backends, and how one is opened.

use std::sync::Arc;
use std::time::Duration;

use diesel::SqliteConnection;
use diesel_async::AsyncMysqlConnection;
use diesel_async::sync_connection_wrapper::SyncConnectionWrapper;

use super::{ConnectError, mysql, sqlite};
use crate::config::database_url::DatabaseUrl;

/// SQLite behind diesel-async's wrapper, which runs each query on the blocking thread pool.
/// A type alias because the `MultiConnection` derive cannot parse a generic path.
pub type SqliteAsyncConnection = SyncConnectionWrapper<SqliteConnection>;

/// A connection to either backend. Repository code is written once against this type; diesel
/// dispatches each query to the variant in use. SQLite must stay the last variant.
#[derive(diesel::MultiConnection)]
#[diesel_async]
pub enum DbConnection {
    Mysql(AsyncMysqlConnection),
    Sqlite(SqliteAsyncConnection),
}

/// The database product a [`DbConnection`] talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Mysql,
    Sqlite,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Mysql => "mysql",
            Backend::Sqlite => "sqlite",
        }
    }
}

impl DbConnection {
    pub fn backend(&self) -> Backend {
        match self {
            DbConnection::Mysql(_) => Backend::Mysql,
            DbConnection::Sqlite(_) => Backend::Sqlite,
        }
    }
}

/// Opens new connections to the configured database.
#[derive(Clone)]
pub struct Connector {
    target: Arc<DatabaseUrl>,
    connect_timeout: Duration,
    sqlite_busy_timeout: Duration,
}

impl Connector {
    pub fn new(
        target: DatabaseUrl,
        connect_timeout: Duration,
        sqlite_busy_timeout: Duration,
    ) -> Self {
        Connector {
            target: Arc::new(target),
            connect_timeout,
            sqlite_busy_timeout,
        }
    }

    pub fn target(&self) -> &DatabaseUrl {
        &self.target
    }

    pub fn backend(&self) -> Backend {
        match *self.target {
            DatabaseUrl::Mysql(_) => Backend::Mysql,
            DatabaseUrl::Sqlite(_) => Backend::Sqlite,
        }
    }

    /// Opens one connection, with TLS and session settings applied.
    pub async fn connect(&self) -> Result<DbConnection, ConnectError> {
        match &*self.target {
            DatabaseUrl::Mysql(target) => mysql::connect(target, self.connect_timeout)
                .await
                .map(DbConnection::Mysql),
            DatabaseUrl::Sqlite(target) => sqlite::connect(&target.path, self.sqlite_busy_timeout)
                .await
                .map(DbConnection::Sqlite),
        }
    }
}
