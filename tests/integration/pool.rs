//! Pool behaviour: broken connections are replaced, and SQLite connections carry their pragmas.

use std::time::Duration;

use ally::db::{Database, PoolOptions};
use diesel::QueryableByName;
use diesel_async::RunQueryDsl;
use mysql_async::prelude::Queryable;

use crate::common::{TestBackend, TestDatabase, mariadb_admin_url, test_settings};

async fn open(test_db: &TestDatabase, max_connections: u32) -> Database {
    let settings = test_settings(&test_db.url, test_db.dir());
    let options = PoolOptions {
        max_connections,
        ..PoolOptions::from(&settings.database)
    };
    Database::connect(settings.database_url().expect("valid url"), &options)
        .await
        .expect("database connects")
}

#[derive(QueryableByName)]
struct Id {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    id: i64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_connection_replaced() {
    let test_db = TestDatabase::create(TestBackend::Mariadb).await;
    let database = open(&test_db, 1).await;
    let first = {
        let mut conn = database.read().await.expect("connection");
        diesel::sql_query("SELECT CAST(CONNECTION_ID() AS SIGNED) AS id")
            .get_result::<Id>(&mut *conn)
            .await
            .expect("connection id")
            .id
    };

    let mut admin = mysql_async::Conn::from_url(mariadb_admin_url())
        .await
        .expect("admin");
    admin
        .query_drop(format!("KILL CONNECTION {first}"))
        .await
        .expect("kill");
    admin.disconnect().await.ok();
    tokio::time::sleep(Duration::from_millis(100)).await;

    database
        .ping()
        .await
        .expect("the pool hands out a working connection");
    let mut conn = database.read().await.expect("connection");
    let second = diesel::sql_query("SELECT CAST(CONNECTION_ID() AS SIGNED) AS id")
        .get_result::<Id>(&mut *conn)
        .await
        .expect("connection id")
        .id;
    assert_ne!(first, second, "the killed connection was handed out again");
}

#[derive(QueryableByName)]
struct Pragma {
    #[diesel(sql_type = diesel::sql_types::Text)]
    value: String,
}

async fn pragma(database: &Database, name: &str, column: &str) -> String {
    let mut conn = database.read().await.expect("connection");
    diesel::sql_query(format!(
        "SELECT CAST({column} AS TEXT) AS value FROM pragma_{name}"
    ))
    .get_result::<Pragma>(&mut *conn)
    .await
    .unwrap_or_else(|e| panic!("read pragma {name}: {e}"))
    .value
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_pragmas_set() {
    let test_db = TestDatabase::create(TestBackend::Sqlite).await;
    let database = open(&test_db, 2).await;

    assert_eq!(
        pragma(&database, "journal_mode", "journal_mode").await,
        "wal"
    );
    assert_eq!(pragma(&database, "foreign_keys", "foreign_keys").await, "1");
    assert_eq!(pragma(&database, "busy_timeout", "timeout").await, "5000");
}

/// Returns the statements the server has counted for the session of the connection that the
/// pool hands out.
async fn questions(database: &Database) -> i64 {
    let mut conn = database.read().await.expect("connection");
    diesel::sql_query(
        "SELECT CAST(VARIABLE_VALUE AS SIGNED) AS id FROM information_schema.SESSION_STATUS \
         WHERE VARIABLE_NAME = 'QUESTIONS'",
    )
    .get_result::<Id>(&mut *conn)
    .await
    .expect("read the session's statement count")
    .id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recently_used_connection_not_checked() {
    let test_db = TestDatabase::create(TestBackend::Mariadb).await;
    let database = open(&test_db, 1).await;
    let idle = ally::db::checkout::FRESH_FOR * 3;
    // Two rounds first, so that both statements are prepared on the connection.
    for _ in 0..2 {
        questions(&database).await;
        tokio::time::sleep(idle).await;
    }

    let before_idle = questions(&database).await;
    tokio::time::sleep(idle).await;
    let after_idle = questions(&database).await;
    // Take the smallest of a few immediate checkouts, in case the machine paused past the limit.
    let mut after_use = i64::MAX;
    let mut previous = after_idle;
    for _ in 0..3 {
        let now = questions(&database).await;
        after_use = after_use.min(now - previous);
        previous = now;
    }

    assert_eq!(
        after_idle - before_idle,
        after_use + 1,
        "an idle connection gets one SELECT 1 more than a connection used just before"
    );
}
