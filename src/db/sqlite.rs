//! Opening SQLite connections.

use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::{Connection, SqliteConnection};
use diesel_async::sync_connection_wrapper::SyncConnectionWrapper;

use super::ConnectError;
use super::connection::SqliteAsyncConnection;
use crate::config::database_url::SqlitePath;

/// Opens the database file, creating it and its folder on first use, and sets the pragmas every
/// connection needs. WAL lets readers run while a writer writes. Foreign keys are off in SQLite
/// by default. The busy timeout makes a writer wait for a lock instead of failing at once.
pub(super) async fn connect(
    path: &SqlitePath,
    busy_timeout: Duration,
) -> Result<SqliteAsyncConnection, ConnectError> {
    let path = path.clone();
    tokio::task::spawn_blocking(move || {
        let location = match &path {
            SqlitePath::Memory => ":memory:".to_string(),
            SqlitePath::File(file) => {
                if let Some(parent) = file.parent().filter(|p| !p.as_os_str().is_empty()) {
                    std::fs::create_dir_all(parent).map_err(|source| ConnectError::CreateDir {
                        path: parent.to_path_buf(),
                        source,
                    })?;
                }
                file.to_str()
                    .ok_or_else(|| ConnectError::Sqlite("the path is not valid UTF-8".into()))?
                    .to_string()
            }
        };
        let mut conn = SqliteConnection::establish(&location)
            .map_err(|error| ConnectError::Sqlite(error.to_string()))?;
        let journal = match path {
            SqlitePath::Memory => "",
            SqlitePath::File(_) => "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;",
        };
        conn.batch_execute(&format!(
            "{journal} PRAGMA foreign_keys = ON; PRAGMA busy_timeout = {};",
            busy_timeout.as_millis()
        ))
        .map_err(|error| ConnectError::Sqlite(error.to_string()))?;
        Ok(SyncConnectionWrapper::new(conn))
    })
    .await
    .map_err(|error| ConnectError::Sqlite(format!("the connecting task failed: {error}")))?
}
