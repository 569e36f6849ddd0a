//! Opening MySQL and MariaDB connections, with TLS as the connection string's SslMode sets it.

use std::time::Duration;

use diesel_async::{AsyncMysqlConnection, SimpleAsyncConnection};
use mysql_async::{Conn, OptsBuilder};
use secrecy::ExposeSecret;
use tracing::debug;

use super::{ConnectError, tls};
use crate::config::database_url::{MysqlTarget, SslMode};

/// Session settings on top of what diesel-async sets (UTC time zone, utf8mb4 client character
/// set): strict SQL mode, so bad data fails instead of being truncated, and utf8mb4 collation.
const SESSION_SETUP: &str = "SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_ZERO_IN_DATE,\
NO_ZERO_DATE,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION,ONLY_FULL_GROUP_BY'; \
SET NAMES utf8mb4 COLLATE utf8mb4_unicode_ci";

/// MySQL's and MariaDB's error codes for a server that requires TLS on a plain connection.
const SECURE_TRANSPORT_REQUIRED: [u16; 2] = [3159, 4036];

/// ER_ACCESS_DENIED_ERROR.
const ACCESS_DENIED: u16 = 1045;

pub(super) async fn connect(
    target: &MysqlTarget,
    timeout: Duration,
) -> Result<AsyncMysqlConnection, ConnectError> {
    let ssl = tls::ssl_opts(target, timeout).await?;
    let plain_fallback = target.ssl_mode == SslMode::Preferred;
    let conn = match open(target, ssl, timeout).await {
        Err(ConnectError::Mysql(mysql_async::Error::Driver(
            mysql_async::DriverError::NoClientSslFlagFromServer,
        ))) if plain_fallback => {
            debug!(host = %target.host, "server does not offer TLS; SslMode=Preferred connects without it");
            open(target, None, timeout).await?
        }
        other => other?,
    };

    let mut conn = AsyncMysqlConnection::try_from(conn)
        .await
        .map_err(|error| ConnectError::Setup(error.to_string()))?;
    conn.batch_execute(SESSION_SETUP)
        .await
        .map_err(|error| ConnectError::Setup(error.to_string()))?;
    Ok(conn)
}

async fn open(
    target: &MysqlTarget,
    ssl: Option<mysql_async::SslOpts>,
    timeout: Duration,
) -> Result<Conn, ConnectError> {
    let opts = OptsBuilder::default()
        .ip_or_hostname(target.host.clone())
        .tcp_port(target.port)
        .user(Some(target.user.clone()))
        .pass(
            target
                .password
                .as_ref()
                .map(|p| p.expose_secret().to_string()),
        )
        .db_name(Some(target.database.clone()))
        // Without this a `localhost` host moves to the unix socket and silently drops TLS.
        .prefer_socket(false)
        .ssl_opts(ssl);

    match tokio::time::timeout(timeout, Conn::new(opts)).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(mysql_async::Error::Server(error)))
            if SECURE_TRANSPORT_REQUIRED.contains(&error.code)
                && target.ssl_mode == SslMode::None =>
        {
            Err(ConnectError::TlsRequiredByServer(error.message))
        }
        // MariaDB rejects a plain connection to a server with require_secure_transport=ON with
        // a generic "access denied", so the error names TLS as a likely cause when the server
        // offers it.
        Ok(Err(mysql_async::Error::Server(error)))
            if error.code == ACCESS_DENIED
                && target.ssl_mode == SslMode::None
                && tls::server_offers_tls(target, timeout).await =>
        {
            Err(ConnectError::AccessDeniedWithoutTls(error.message))
        }
        Ok(Err(error)) => Err(ConnectError::Mysql(error)),
        Err(_) => Err(ConnectError::TimedOut {
            address: format!("{}:{}", target.host, target.port),
            timeout,
        }),
    }
}
