//! The raw-driver baseline: the statements of each scenario, sent straight through mysql_async or
//! rusqlite with no gRPC and no diesel in between.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{Datelike, NaiveDateTime, Timelike, Utc};
use mysql_async::prelude::Queryable;

use crate::fixture::{Fixture, message_content};
use crate::load::{AsyncOp, BlockingOp};
use crate::service::Scenario;
use crate::sql;

/// The database a statement list is written for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Mariadb,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "SQLite",
            Backend::Mariadb => "MariaDB",
        }
    }
}

/// A bound value.
#[derive(Clone, Debug)]
pub enum Param {
    Text(String),
    Int(i64),
    Bool(bool),
    Time(NaiveDateTime),
    Null,
}

/// One statement and its values. `BEGIN` and `COMMIT` go as plain text, the rest as prepared
/// statements, as diesel sends them.
#[derive(Clone, Debug)]
pub struct Statement {
    pub sql: &'static str,
    pub params: Vec<Param>,
}

fn text(value: &str) -> Param {
    Param::Text(value.to_string())
}

fn statement(sql: &'static str, params: Vec<Param>) -> Statement {
    Statement { sql, params }
}

/// Numbers that keep generated emails unique across all runs of one invocation.
static NEXT_USER: AtomicU64 = AtomicU64::new(0);

fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Returns the current time truncated to microseconds, as Ally stores times.
fn now() -> NaiveDateTime {
    let now = Utc::now().naive_utc();
    now.with_nanosecond(now.nanosecond() / 1000 * 1000)
        .unwrap_or(now)
}

fn audit_entry(fixture: &Fixture, event: &str, resource: &str, resource_id: &str) -> Statement {
    statement(
        sql::INSERT_AUDIT,
        vec![
            text(&fixture.tenant_id),
            text(&new_id()),
            text("user"),
            text(&fixture.owner_id),
            text(event),
            text(resource),
            text(resource_id),
            text("info"),
            text(&new_id()),
            text("127.0.0.1"),
            text(r#"{"session_id":"0193a0a0-0000-7000-8000-000000000001","role":"user"}"#),
            Param::Time(now()),
        ],
    )
}

fn tenant_by_id(fixture: &Fixture) -> Statement {
    statement(sql::TENANT_BY_ID, vec![text(&fixture.tenant_id)])
}

/// Returns the statements of one call of `scenario` by `worker`, in the order Ally sends them.
pub fn statements(
    scenario: Scenario,
    backend: Backend,
    fixture: &Fixture,
    worker: usize,
) -> Vec<Statement> {
    let mysql = backend == Backend::Mariadb;
    let begin = || statement("BEGIN", vec![]);
    let commit = || statement("COMMIT", vec![]);
    match scenario {
        Scenario::AddMessage => {
            let session = &fixture.write_sessions[worker % fixture.write_sessions.len()];
            let id = new_id();
            let at = now();
            let insert = if mysql {
                sql::INSERT_MESSAGE_MYSQL
            } else {
                sql::INSERT_MESSAGE_SQLITE
            };
            vec![
                begin(),
                statement(
                    sql::SESSION_BY_ID,
                    vec![text(&fixture.tenant_id), text(session)],
                ),
                statement(
                    sql::SESSION_COUNT_MESSAGE,
                    vec![
                        Param::Int(1),
                        text(&fixture.tenant_id),
                        text(session),
                        text(&fixture.owner_id),
                        text("active"),
                    ],
                ),
                statement(
                    insert,
                    vec![
                        text(&fixture.tenant_id),
                        text(&id),
                        text(session),
                        text(&fixture.owner_id),
                        text("user"),
                        text(&message_content()),
                        text("text"),
                        text("{}"),
                        Param::Int(1),
                        Param::Time(at),
                        Param::Time(at),
                    ],
                ),
                statement(
                    sql::SESSION_LAST_MESSAGE,
                    vec![
                        Param::Time(at),
                        Param::Time(at),
                        text(&fixture.tenant_id),
                        text(session),
                    ],
                ),
                audit_entry(fixture, "message.created", "message", &id),
                tenant_by_id(fixture),
                statement(
                    sql::COUNT_TENANT_MESSAGES,
                    vec![
                        Param::Int(1),
                        text(&fixture.tenant_id),
                        text(&format!("{:04}-{:02}", at.year(), at.month())),
                    ],
                ),
                commit(),
            ]
        }
        Scenario::ListMessages => vec![
            statement(
                sql::SESSION_BY_ID,
                vec![text(&fixture.tenant_id), text(&fixture.read_session)],
            ),
            statement(
                sql::LIST_MESSAGES,
                vec![
                    text(&fixture.tenant_id),
                    text(&fixture.read_session),
                    Param::Int(51),
                ],
            ),
        ],
        // Ally serves the configuration from its cache.
        Scenario::GetConfiguration => vec![],
        // Ally keeps a key it accepted in memory (`auth.api_key_cache_ttl`), so after the first
        // call the key costs no statement and the call reads what an access token's does: the
        // handler's read of the tenant.
        Scenario::GetTenantApiKey => vec![tenant_by_id(fixture)],
        Scenario::GetTenantToken => vec![tenant_by_id(fixture)],
        Scenario::Login => {
            let at = now();
            let record_login = if mysql {
                statement(
                    sql::RECORD_LOGIN_MYSQL,
                    vec![
                        Param::Int(0),
                        Param::Time(at),
                        text(&fixture.tenant_id),
                        text(&fixture.owner_id),
                    ],
                )
            } else {
                statement(
                    sql::RECORD_LOGIN_SQLITE,
                    vec![
                        Param::Int(0),
                        Param::Null,
                        Param::Time(at),
                        text(&fixture.tenant_id),
                        text(&fixture.owner_id),
                    ],
                )
            };
            let mut token = vec![
                text(&fixture.tenant_id),
                text(&new_id()),
                text(&fixture.owner_id),
                text(&new_id()),
                // A SHA-256 in hex is 64 characters, as many as two UUIDs without dashes.
                text(&format!(
                    "{}{}",
                    uuid::Uuid::now_v7().simple(),
                    uuid::Uuid::now_v7().simple()
                )),
                Param::Time(at + chrono::Duration::days(30)),
            ];
            token.push(Param::Time(at));
            let insert_token = if mysql {
                sql::INSERT_REFRESH_TOKEN_MYSQL
            } else {
                sql::INSERT_REFRESH_TOKEN_SQLITE
            };
            vec![
                tenant_by_id(fixture),
                statement(
                    sql::USER_BY_EMAIL,
                    vec![text(&fixture.tenant_id), text(&fixture.owner_email)],
                ),
                begin(),
                record_login,
                statement(insert_token, token),
                audit_entry(fixture, "auth.login", "user", &fixture.owner_id),
                commit(),
            ]
        }
        Scenario::CreateUser => {
            let id = new_id();
            let at = now();
            let email = format!(
                "raw-{}-{}@bench.example",
                fixture.run_tag,
                NEXT_USER.fetch_add(1, Ordering::Relaxed)
            );
            let mut statements = vec![begin()];
            if mysql {
                statements.push(statement(
                    sql::LOCK_TENANT_MYSQL,
                    vec![text(&fixture.tenant_id)],
                ));
            }
            statements.push(statement(
                sql::USER_BY_EMAIL,
                vec![text(&fixture.tenant_id), text(&email)],
            ));
            statements.push(tenant_by_id(fixture));
            statements.push(statement(
                if mysql {
                    sql::INSERT_USER_MYSQL
                } else {
                    sql::INSERT_USER_SQLITE
                },
                vec![
                    text(&fixture.tenant_id),
                    text(&id),
                    text(&email),
                    text("Benchmark user"),
                    text("member"),
                    Param::Bool(true),
                    Param::Int(0),
                    Param::Time(at),
                    Param::Time(at),
                ],
            ));
            statements.push(audit_entry(fixture, "user.created", "user", &id));
            statements.push(commit());
            statements
        }
    }
}

// === MySQL and MariaDB ===

/// Opens a mysql_async pool with the driver's best settings for this comparison: TCP as Ally
/// connects, no connection reset on return (a reset empties the prepared statement cache), and
/// Ally's session settings.
pub fn mysql_pool(url: &str, size: usize) -> anyhow::Result<mysql_async::Pool> {
    let constraints = mysql_async::PoolConstraints::new(size, size)
        .ok_or_else(|| anyhow::anyhow!("invalid pool size {size}"))?;
    let options = mysql_async::OptsBuilder::from_opts(mysql_async::Opts::from_url(url)?)
        .prefer_socket(false)
        .pool_opts(
            mysql_async::PoolOpts::default()
                .with_constraints(constraints)
                .with_reset_connection(false),
        )
        .init(vec![
            "SET time_zone = '+00:00'",
            "SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_ZERO_IN_DATE,NO_ZERO_DATE,\
             ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION,ONLY_FULL_GROUP_BY'",
            "SET NAMES utf8mb4 COLLATE utf8mb4_unicode_ci",
        ]);
    Ok(mysql_async::Pool::new(options))
}

pub fn mysql_value(param: &Param) -> mysql_async::Value {
    match param {
        Param::Text(value) => mysql_async::Value::Bytes(value.as_bytes().to_vec()),
        Param::Int(value) => mysql_async::Value::Int(*value),
        Param::Bool(value) => mysql_async::Value::Int(i64::from(*value)),
        Param::Time(at) => mysql_async::Value::Date(
            u16::try_from(at.year()).unwrap_or(0),
            at.month() as u8,
            at.day() as u8,
            at.hour() as u8,
            at.minute() as u8,
            at.second() as u8,
            at.nanosecond() / 1000,
        ),
        Param::Null => mysql_async::Value::NULL,
    }
}

/// Runs `statements` on one connection of `pool`, reading every row of every result.
pub async fn run_mysql(
    pool: &mysql_async::Pool,
    statements: Vec<Statement>,
) -> Result<(), mysql_async::Error> {
    let mut conn = pool.get_conn().await?;
    for statement in statements {
        if statement.params.is_empty() && !statement.sql.contains('?') {
            conn.query_drop(statement.sql).await?;
            continue;
        }
        let params: Vec<mysql_async::Value> = statement.params.iter().map(mysql_value).collect();
        let rows: Vec<mysql_async::Row> = conn.exec(statement.sql, params).await?;
        std::hint::black_box(rows);
    }
    Ok(())
}

/// Returns a load operation that sends `scenario`'s statements through `pool`.
pub fn mysql_op(scenario: Scenario, fixture: &Arc<Fixture>, pool: &mysql_async::Pool) -> AsyncOp {
    let fixture = fixture.clone();
    let pool = pool.clone();
    Arc::new(move |worker, _number| {
        let statements = statements(scenario, Backend::Mariadb, &fixture, worker);
        let pool = pool.clone();
        Box::pin(async move {
            run_mysql(&pool, statements)
                .await
                .map_err(|error| format!("raw {} failed: {error}", scenario.name()))
        })
    })
}

// === SQLite ===

/// Opens `path` with the pragmas Ally sets on every connection.
pub fn sqlite_connection(path: &std::path::Path) -> anyhow::Result<rusqlite::Connection> {
    let conn = rusqlite::Connection::open(path)?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; \
         PRAGMA busy_timeout = 5000;",
    )?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

pub fn sqlite_value(param: &Param) -> rusqlite::types::Value {
    use rusqlite::types::Value;
    match param {
        Param::Text(value) => Value::Text(value.clone()),
        Param::Int(value) => Value::Integer(*value),
        Param::Bool(value) => Value::Integer(i64::from(*value)),
        // diesel stores SQLite timestamps as text in this form.
        Param::Time(at) => Value::Text(at.format("%Y-%m-%d %H:%M:%S%.f").to_string()),
        Param::Null => Value::Null,
    }
}

/// Runs `statements` on `conn`, reading every column of every row.
pub fn run_sqlite(conn: &rusqlite::Connection, statements: &[Statement]) -> rusqlite::Result<()> {
    for statement in statements {
        if statement.params.is_empty() && !statement.sql.contains('?') {
            conn.execute_batch(statement.sql)?;
            continue;
        }
        let mut prepared = conn.prepare_cached(statement.sql)?;
        let columns = prepared.column_count();
        let params = rusqlite::params_from_iter(statement.params.iter().map(sqlite_value));
        let mut rows = prepared.query(params)?;
        while let Some(row) = rows.next()? {
            for index in 0..columns {
                let value: rusqlite::types::Value = row.get(index)?;
                std::hint::black_box(value);
            }
        }
    }
    Ok(())
}

/// Returns a blocking operation that sends `scenario`'s statements on its own connection to
/// the database file at `path`. A failed statement rolls back an open transaction.
pub fn sqlite_op(
    scenario: Scenario,
    fixture: &Arc<Fixture>,
    path: &std::path::Path,
    worker: usize,
) -> anyhow::Result<BlockingOp> {
    let conn = sqlite_connection(path)?;
    let fixture = fixture.clone();
    Ok(Box::new(move |_number| {
        let statements = statements(scenario, Backend::Sqlite, &fixture, worker);
        run_sqlite(&conn, &statements).map_err(|error| {
            if !conn.is_autocommit() {
                let _ = conn.execute_batch("ROLLBACK");
            }
            format!("raw {} failed: {error}", scenario.name())
        })
    }))
}
