//! TLS to MariaDB against a server of the test's own that requires TLS, with a CA and server
//! certificate generated for the run. The certificate names `localhost` only, so connecting to
//! 127.0.0.1 is a host-name mismatch.

use std::path::Path;
use std::time::Duration;

use ally::config::database_url::DatabaseUrl;
use ally::db::{Connector, Database, DbConnection, PoolOptions};
use diesel::QueryableByName;
use diesel_async::RunQueryDsl;

use crate::common::certs::{self, TlsFiles};
use crate::common::init_logging;
use crate::common::private_mariadb::{PASSWORD, PrivateMariadb, ServerTls};

fn url(host: &str, port: u16, ssl_mode: &str, ca: Option<&Path>) -> DatabaseUrl {
    let mut text = format!(
        "Server={host};Port={port};User ID=ally;Password='{}';Database=ally;SslMode={ssl_mode}",
        PASSWORD.replace('\'', "''")
    );
    if let Some(ca) = ca {
        text.push_str(&format!(";SslCa={}", ca.display()));
    }
    DatabaseUrl::parse(&text).expect("valid connection string")
}

#[derive(QueryableByName)]
struct Status {
    #[diesel(sql_type = diesel::sql_types::Text)]
    #[diesel(column_name = Value)]
    value: String,
}

async fn cipher(conn: &mut DbConnection) -> String {
    diesel::sql_query("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
        .get_result::<Status>(conn)
        .await
        .expect("read Ssl_cipher")
        .value
}

async fn try_connect(target: DatabaseUrl) -> Result<DbConnection, String> {
    Connector::new(target, Duration::from_secs(5), Duration::from_secs(1))
        .connect()
        .await
        .map_err(|error| error.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_modes_against_real_server() {
    init_logging();
    let folder = tempfile::tempdir().expect("folder");
    let files: TlsFiles = certs::generate(folder.path(), &["localhost"]);
    let ca = files.ca.clone();
    let other_ca = files.other_ca.clone();
    let mariadb = tokio::task::spawn_blocking(move || {
        PrivateMariadb::start(Some(ServerTls {
            files: &files,
            require: true,
        }))
    })
    .await
    .expect("server thread");
    let port = mariadb.port;

    let accepted = [
        (
            "VerifyCA, right CA, name mismatch",
            url("127.0.0.1", port, "VerifyCA", Some(&ca)),
        ),
        (
            "VerifyFull, right CA, matching name",
            url("localhost", port, "VerifyFull", Some(&ca)),
        ),
        (
            "VerifyCA, right CA, matching name",
            url("localhost", port, "VerifyCA", Some(&ca)),
        ),
        (
            "Required, right CA",
            url("127.0.0.1", port, "Required", Some(&ca)),
        ),
        (
            "Required without CA",
            url("127.0.0.1", port, "Required", None),
        ),
        ("Preferred", url("127.0.0.1", port, "Preferred", None)),
    ];
    for (case, target) in accepted {
        let mut conn = try_connect(target)
            .await
            .unwrap_or_else(|error| panic!("{case}: expected to connect, got: {error}"));
        assert!(
            !cipher(&mut conn).await.is_empty(),
            "{case}: the connection is not encrypted"
        );
    }

    let rejected = [
        (
            "VerifyCA, wrong CA",
            url("127.0.0.1", port, "VerifyCA", Some(&other_ca)),
            "certificate",
        ),
        (
            "VerifyFull, wrong CA",
            url("localhost", port, "VerifyFull", Some(&other_ca)),
            "certificate",
        ),
        (
            "VerifyFull, name mismatch",
            url("127.0.0.1", port, "VerifyFull", Some(&ca)),
            "not valid for name",
        ),
        (
            "Required, wrong CA",
            url("127.0.0.1", port, "Required", Some(&other_ca)),
            "certificate",
        ),
        (
            "VerifyFull, built-in roots",
            url("localhost", port, "VerifyFull", None),
            "certificate",
        ),
        (
            "None against TLS-only server",
            url("127.0.0.1", port, "None", None),
            "SslMode=None",
        ),
    ];
    for (case, target, expected) in rejected {
        let error = match try_connect(target).await {
            Ok(_) => panic!("{case}: connected, but must be rejected"),
            Err(error) => error,
        };
        assert!(
            error.contains(expected),
            "{case}: error should mention `{expected}`: {error}"
        );
        assert!(
            !error.contains(PASSWORD),
            "{case}: the error shows the password"
        );
    }

    // Start-up reports the handshake's cause, not a pool timeout.
    let options = PoolOptions {
        max_connections: 2,
        min_idle: None,
        connect_timeout: Duration::from_secs(2),
        max_lifetime: None,
        idle_timeout: None,
        sqlite_busy_timeout: Duration::from_secs(1),
    };
    let error = match Database::connect(
        url("127.0.0.1", port, "VerifyCA", Some(&other_ca)),
        &options,
    )
    .await
    {
        Ok(_) => panic!("a pool with the wrong CA connected"),
        Err(error) => error.to_string(),
    };
    assert!(
        error.contains("UnknownIssuer"),
        "start-up error lacks the cause: {error}"
    );
    assert!(
        !error.contains("timed out"),
        "start-up error is a timeout: {error}"
    );

    drop(mariadb);
}
