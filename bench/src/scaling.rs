//! Scaling: ListMessages first and deep pages of one session, and audit listings of one tenant,
//! at several data sizes, with the query plans the databases choose.
//!
//! The rows are written straight into the database with multi-row INSERTs in transactions,
//! because adding a million messages through the API would take most of an hour here.

use std::sync::Arc;
use std::time::Instant;

use ally::proto::ally::v1 as pb;
use chrono::{NaiveDate, NaiveDateTime};
use mysql_async::prelude::Queryable;
use tonic::transport::Channel;

use crate::fixture::{self, Fixture, with_metadata};
use crate::load::{self, AsyncOp, Measurement};
use crate::options::Options;
use crate::raw::{self, Backend, Param, Statement};
use crate::run::{BenchDatabase, progress};
use crate::sql;

/// Workers of each scaling run. Few, because these runs measure latency rather than capacity.
const WORKERS: usize = 4;

/// Rows per INSERT statement when populating.
const ROWS_PER_INSERT: usize = 500;

/// INSERT statements per transaction when populating.
const INSERTS_PER_TRANSACTION: usize = 20;

/// Audit entries of the rare event type that the filtered listing requests: one in this many.
const RARE_EVENT_EVERY: u64 = 100;
pub const RARE_EVENT: &str = "auth.login_failed";

/// Content of every populated message: 128 bytes.
fn populated_content() -> String {
    "Populated message for the scaling runs of the Ally benchmark. ".repeat(3)[..128].to_string()
}

/// The service and the raw-driver run of one query.
pub struct Pair {
    pub service: Measurement,
    pub raw: Measurement,
}

/// The query plan of one statement, one line per row of `EXPLAIN` or `EXPLAIN QUERY PLAN`.
pub struct Plan {
    pub query: &'static str,
    pub lines: Vec<String>,
}

/// The runs at one size.
pub struct SizeRuns {
    pub size: u64,
    pub messages_first: Pair,
    pub messages_deep: Pair,
    pub audit_newest: Pair,
    pub audit_by_event: Pair,
    pub plans: Vec<Plan>,
    /// Seconds spent adding rows to reach this size.
    pub populate_seconds: f64,
}

pub struct ScalingReport {
    pub sizes: Vec<SizeRuns>,
}

impl ScalingReport {
    pub fn measurements(&self) -> impl Iterator<Item = &Measurement> {
        self.sizes.iter().flat_map(|size| {
            [
                &size.messages_first,
                &size.messages_deep,
                &size.audit_newest,
                &size.audit_by_event,
            ]
            .into_iter()
            .flat_map(|pair| [&pair.service, &pair.raw])
        })
    }
}

/// The tenant and session that the scaling rows go into, and where populating stopped.
struct Target {
    fixture: Fixture,
    session: String,
    messages: u64,
    audit_entries: u64,
    /// Sort key of the message 100 rows before the end, the cursor of the deep page.
    deep_cursor: (NaiveDateTime, String),
}

/// Returns the time of populated row `index`: one microsecond apart from 2025-01-01, so every
/// row has its own time and the rows sort before anything the API adds.
fn row_time(index: u64) -> NaiveDateTime {
    let base = NaiveDate::from_ymd_opt(2025, 1, 1)
        .and_then(|day| day.and_hms_opt(0, 0, 0))
        .expect("valid date");
    base + chrono::Duration::microseconds(index as i64)
}

/// Calls ListMessages for one page of 50 of `session` after `page_token`.
pub async fn list_messages(
    channel: &Channel,
    bearer: &str,
    session: &str,
    page_token: &str,
) -> Result<pb::ListMessagesResponse, tonic::Status> {
    let mut client = pb::chat_service_client::ChatServiceClient::new(channel.clone());
    let request = with_metadata(
        tonic::Request::new(pb::ListMessagesRequest {
            session_id: session.to_string(),
            page_size: 50,
            page_token: page_token.to_string(),
            ..Default::default()
        }),
        "authorization",
        bearer,
    );
    Ok(client.list_messages(request).await?.into_inner())
}

/// Calls ListAuditEntries for the newest 50 entries of the caller's tenant, only those of
/// `event_type` when given.
pub async fn list_audit(
    channel: &Channel,
    bearer: &str,
    event_type: Option<&str>,
) -> Result<pb::ListAuditEntriesResponse, tonic::Status> {
    let mut client = pb::audit_service_client::AuditServiceClient::new(channel.clone());
    let request = with_metadata(
        tonic::Request::new(pb::ListAuditEntriesRequest {
            page_size: 50,
            filter: event_type.map(|event_type| pb::AuditEntryFilter {
                event_type: event_type.to_string(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        "authorization",
        bearer,
    );
    Ok(client.list_audit_entries(request).await?.into_inner())
}

/// Returns the page token Ally would return after the message with sort key `cursor`, built
/// with Ally's own encoding (tokens are unsigned).
fn page_token(session: &str, cursor: &(NaiveDateTime, String)) -> String {
    let filters = ally::grpc::paging::fingerprint(&(&session.to_string(), &Option::<String>::None));
    ally::grpc::paging::encode(&filters, cursor)
}

fn service_op<F, Fut, T>(call: F) -> AsyncOp
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<T, tonic::Status>> + Send + 'static,
{
    let call = Arc::new(call);
    Arc::new(move |_, _| {
        let future = call();
        Box::pin(async move { future.await.map(drop).map_err(|status| status.to_string()) })
    })
}

/// Returns the raw statements of the four scaling queries, in the order of [`SizeRuns`].
fn raw_queries(target: &Target) -> [(&'static str, Vec<Statement>); 4] {
    let tenant = &target.fixture.tenant_id;
    let text = |value: &str| Param::Text(value.to_string());
    let session_row = || Statement {
        sql: sql::SESSION_BY_ID,
        params: vec![text(tenant), text(&target.session)],
    };
    let (after_time, after_id) = &target.deep_cursor;
    [
        (
            "ListMessages, first page",
            vec![
                session_row(),
                Statement {
                    sql: sql::LIST_MESSAGES,
                    params: vec![text(tenant), text(&target.session), Param::Int(51)],
                },
            ],
        ),
        (
            "ListMessages, deep page",
            vec![
                session_row(),
                Statement {
                    sql: sql::LIST_MESSAGES_AFTER,
                    params: vec![
                        text(tenant),
                        text(&target.session),
                        Param::Time(*after_time),
                        Param::Time(*after_time),
                        Param::Time(*after_time),
                        text(after_id),
                        Param::Int(51),
                    ],
                },
            ],
        ),
        (
            "ListAuditEntries, newest first",
            vec![Statement {
                sql: sql::LIST_AUDIT,
                params: vec![text(tenant), Param::Int(51)],
            }],
        ),
        (
            "ListAuditEntries, one event type",
            vec![Statement {
                sql: sql::LIST_AUDIT_BY_EVENT,
                params: vec![text(tenant), text(RARE_EVENT), Param::Int(51)],
            }],
        ),
    ]
}

/// Populates and measures each size in `options.sizes`.
pub async fn run(
    backend: Backend,
    options: &Options,
    database: &BenchDatabase,
    channels: &[Channel],
    mysql_pool: Option<&mysql_async::Pool>,
    ally_pid: u32,
) -> anyhow::Result<ScalingReport> {
    let fixture = fixture::create(&channels[0], 0).await?;
    let bearer = fixture.bearer().1;
    let session = fixture.read_session.clone();
    let mut target = Target {
        fixture,
        session,
        messages: 0,
        audit_entries: 0,
        deep_cursor: (row_time(0), String::new()),
    };
    // The session already contains the fixture's messages, added through the API.
    let listed = list_messages(&channels[0], &bearer, &target.session, "").await?;
    if listed.messages.len() != 50 {
        anyhow::bail!("the scaling session should start with a full page of messages");
    }

    let mut sizes = Vec::new();
    for &size in &options.sizes {
        let started = Instant::now();
        match (backend, mysql_pool) {
            (Backend::Mariadb, Some(pool)) => populate_mysql(pool, &mut target, size).await?,
            _ => {
                let path = database.sqlite_path();
                let mut moved = target;
                target = tokio::task::spawn_blocking(move || {
                    populate_sqlite(&path, &mut moved, size).map(|()| moved)
                })
                .await??;
            }
        }
        let populate_seconds = started.elapsed().as_secs_f64();
        progress(&format!(
            "{}: {size} messages and audit entries added in {populate_seconds:.1} s",
            backend.name()
        ));

        let deep_token = page_token(&target.session, &target.deep_cursor);
        let deep = list_messages(&channels[0], &bearer, &target.session, &deep_token).await?;
        if deep.messages.len() != 50 {
            anyhow::bail!(
                "the deep page returned {} messages instead of 50",
                deep.messages.len()
            );
        }

        let window = options.window();
        let services: [AsyncOp; 4] = {
            let first = {
                let (channel, bearer, session) =
                    (channels[0].clone(), bearer.clone(), target.session.clone());
                service_op(move || {
                    let (channel, bearer, session) =
                        (channel.clone(), bearer.clone(), session.clone());
                    async move { list_messages(&channel, &bearer, &session, "").await }
                })
            };
            let deep = {
                let (channel, bearer, session, token) = (
                    channels[0].clone(),
                    bearer.clone(),
                    target.session.clone(),
                    deep_token.clone(),
                );
                service_op(move || {
                    let (channel, bearer, session, token) = (
                        channel.clone(),
                        bearer.clone(),
                        session.clone(),
                        token.clone(),
                    );
                    async move { list_messages(&channel, &bearer, &session, &token).await }
                })
            };
            let audit = |event_type: Option<&'static str>| {
                let (channel, bearer) = (channels[0].clone(), bearer.clone());
                service_op(move || {
                    let (channel, bearer) = (channel.clone(), bearer.clone());
                    async move { list_audit(&channel, &bearer, event_type).await }
                })
            };
            [first, deep, audit(None), audit(Some(RARE_EVENT))]
        };

        let queries = raw_queries(&target);
        let mut pairs = Vec::new();
        for ((_, statements), service) in queries.iter().zip(services) {
            let raw = run_raw(backend, database, mysql_pool, statements.clone(), window).await?;
            let service = load::run_async(WORKERS, window, service, ally_pid).await?;
            pairs.push(Pair { service, raw });
        }
        let plans = explain(backend, database, mysql_pool, &queries).await?;
        let mut pairs = pairs.into_iter();
        let mut next = || pairs.next().expect("four pairs");
        sizes.push(SizeRuns {
            size,
            messages_first: next(),
            messages_deep: next(),
            audit_newest: next(),
            audit_by_event: next(),
            plans,
            populate_seconds,
        });
    }
    Ok(ScalingReport { sizes })
}

async fn run_raw(
    backend: Backend,
    database: &BenchDatabase,
    mysql_pool: Option<&mysql_async::Pool>,
    statements: Vec<Statement>,
    window: load::Window,
) -> anyhow::Result<Measurement> {
    let me = std::process::id();
    match (backend, mysql_pool) {
        (Backend::Mariadb, Some(pool)) => {
            let pool = pool.clone();
            let statements = Arc::new(statements);
            let op: AsyncOp = Arc::new(move |_, _| {
                let (pool, statements) = (pool.clone(), statements.clone());
                Box::pin(async move {
                    raw::run_mysql(&pool, statements.to_vec())
                        .await
                        .map_err(|error| error.to_string())
                })
            });
            load::run_async(WORKERS, window, op, me).await
        }
        _ => {
            let path = database.sqlite_path();
            tokio::task::spawn_blocking(move || {
                load::run_threads(
                    WORKERS,
                    window,
                    |_| {
                        let conn = raw::sqlite_connection(&path)?;
                        let statements = statements.clone();
                        Ok(Box::new(move |_| {
                            raw::run_sqlite(&conn, &statements).map_err(|error| error.to_string())
                        }))
                    },
                    me,
                )
            })
            .await?
        }
    }
}

/// Returns the plan of the last statement of each query, the one that reads the table.
async fn explain(
    backend: Backend,
    database: &BenchDatabase,
    mysql_pool: Option<&mysql_async::Pool>,
    queries: &[(&'static str, Vec<Statement>); 4],
) -> anyhow::Result<Vec<Plan>> {
    let mut plans = Vec::new();
    for (name, statements) in queries {
        let statement = statements.last().expect("each query has statements");
        let lines = match (backend, mysql_pool) {
            (Backend::Mariadb, Some(pool)) => explain_mysql(pool, statement).await?,
            _ => explain_sqlite(&database.sqlite_path(), statement)?,
        };
        plans.push(Plan { query: name, lines });
    }
    Ok(plans)
}

async fn explain_mysql(
    pool: &mysql_async::Pool,
    statement: &Statement,
) -> anyhow::Result<Vec<String>> {
    let mut conn = pool.get_conn().await?;
    let params: Vec<mysql_async::Value> = statement.params.iter().map(raw::mysql_value).collect();
    let rows: Vec<mysql_async::Row> = conn
        .exec(format!("EXPLAIN {}", statement.sql), params)
        .await?;
    let mut lines = Vec::new();
    for row in rows {
        let column = |name: &str| -> String {
            row.get_opt::<Option<String>, _>(name)
                .and_then(Result::ok)
                .flatten()
                .unwrap_or_else(|| "NULL".into())
        };
        lines.push(format!(
            "table={} type={} key={} key_len={} ref={} rows={} Extra={}",
            column("table"),
            column("type"),
            column("key"),
            column("key_len"),
            column("ref"),
            column("rows"),
            column("Extra"),
        ));
    }
    Ok(lines)
}

fn explain_sqlite(path: &std::path::Path, statement: &Statement) -> anyhow::Result<Vec<String>> {
    let conn = raw::sqlite_connection(path)?;
    let mut prepared = conn.prepare(&format!("EXPLAIN QUERY PLAN {}", statement.sql))?;
    let params = rusqlite::params_from_iter(statement.params.iter().map(raw::sqlite_value));
    let lines = prepared
        .query_map(params, |row| row.get::<_, String>(3))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(lines)
}

// === Populating ===

/// Returns a new message id and the values of its row, in the order of [`MESSAGE_COLUMNS`].
fn message_row(target: &Target, index: u64, content: &str) -> (String, Vec<Param>) {
    let id = uuid::Uuid::now_v7().to_string();
    let at = row_time(index);
    let role = if index.is_multiple_of(2) {
        "user"
    } else {
        "assistant"
    };
    let text = |value: &str| Param::Text(value.to_string());
    let values = vec![
        text(&target.fixture.tenant_id),
        text(&id),
        text(&target.session),
        text(&target.fixture.owner_id),
        text(role),
        text(content),
        text("text"),
        text("{}"),
        Param::Int(1),
        Param::Time(at),
        Param::Time(at),
    ];
    (id, values)
}

fn audit_row(target: &Target, index: u64) -> Vec<Param> {
    let text = |value: &str| Param::Text(value.to_string());
    let rare = index.is_multiple_of(RARE_EVENT_EVERY);
    vec![
        text(&target.fixture.tenant_id),
        text(&uuid::Uuid::now_v7().to_string()),
        text("user"),
        text(&target.fixture.owner_id),
        text(if rare { RARE_EVENT } else { "message.created" }),
        text("message"),
        text(&uuid::Uuid::now_v7().to_string()),
        text(if rare { "warning" } else { "info" }),
        Param::Null,
        text("127.0.0.1"),
        text("{}"),
        Param::Time(row_time(index)),
    ]
}

const MESSAGE_COLUMNS: &str = "tenant_id, id, session_id, user_id, role, content, content_type, \
                               metadata, version, created_at, updated_at";
const AUDIT_COLUMNS: &str = "tenant_id, id, actor_type, actor_id, event_type, resource_type, \
                             resource_id, severity, request_id, ip_address, metadata, created_at";

fn multi_row_insert(table: &str, columns: &str, column_count: usize, rows: usize) -> String {
    let row = format!("({})", vec!["?"; column_count].join(", "));
    format!(
        "INSERT INTO {table} ({columns}) VALUES {}",
        vec![row; rows].join(", ")
    )
}

/// Keeps the sort key of row `index` as the deep-page cursor when it is 100 rows before `size`.
fn note_cursor(target: &mut Target, index: u64, id: &str, size: u64) {
    if index + 100 == size {
        target.deep_cursor = (row_time(index), id.to_string());
    }
}

async fn populate_mysql(
    pool: &mysql_async::Pool,
    target: &mut Target,
    size: u64,
) -> anyhow::Result<()> {
    let content = populated_content();
    let mut conn = pool.get_conn().await?;
    let batch = ROWS_PER_INSERT as u64;
    while target.messages < size || target.audit_entries < size {
        conn.query_drop("BEGIN").await?;
        for _ in 0..INSERTS_PER_TRANSACTION {
            if target.messages < size {
                let rows = batch.min(size - target.messages);
                let mut params = Vec::with_capacity(rows as usize * 11);
                for index in target.messages..target.messages + rows {
                    let (id, values) = message_row(target, index, &content);
                    note_cursor(target, index, &id, size);
                    params.extend(values.iter().map(raw::mysql_value));
                }
                let sql = multi_row_insert("messages", MESSAGE_COLUMNS, 11, rows as usize);
                conn.exec_drop(sql, params).await?;
                target.messages += rows;
            }
            if target.audit_entries < size {
                let rows = batch.min(size - target.audit_entries);
                let mut params = Vec::with_capacity(rows as usize * 12);
                for index in target.audit_entries..target.audit_entries + rows {
                    params.extend(audit_row(target, index).iter().map(raw::mysql_value));
                }
                let sql = multi_row_insert("audit_logs", AUDIT_COLUMNS, 12, rows as usize);
                conn.exec_drop(sql, params).await?;
                target.audit_entries += rows;
            }
        }
        conn.query_drop("COMMIT").await?;
    }
    conn.query_drop("ANALYZE TABLE messages, audit_logs")
        .await?;
    Ok(())
}

fn populate_sqlite(path: &std::path::Path, target: &mut Target, size: u64) -> anyhow::Result<()> {
    let content = populated_content();
    let mut conn = raw::sqlite_connection(path)?;
    let batch = ROWS_PER_INSERT as u64;
    while target.messages < size || target.audit_entries < size {
        let transaction = conn.transaction()?;
        for _ in 0..INSERTS_PER_TRANSACTION {
            if target.messages < size {
                let rows = batch.min(size - target.messages);
                let mut params = Vec::with_capacity(rows as usize * 11);
                for index in target.messages..target.messages + rows {
                    let (id, values) = message_row(target, index, &content);
                    note_cursor(target, index, &id, size);
                    params.extend(values.iter().map(raw::sqlite_value));
                }
                let sql = multi_row_insert("messages", MESSAGE_COLUMNS, 11, rows as usize);
                transaction
                    .prepare_cached(&sql)?
                    .execute(rusqlite::params_from_iter(params))?;
                target.messages += rows;
            }
            if target.audit_entries < size {
                let rows = batch.min(size - target.audit_entries);
                let mut params = Vec::with_capacity(rows as usize * 12);
                for index in target.audit_entries..target.audit_entries + rows {
                    params.extend(audit_row(target, index).iter().map(raw::sqlite_value));
                }
                let sql = multi_row_insert("audit_logs", AUDIT_COLUMNS, 12, rows as usize);
                transaction
                    .prepare_cached(&sql)?
                    .execute(rusqlite::params_from_iter(params))?;
                target.audit_entries += rows;
            }
        }
        transaction.commit()?;
    }
    // No ANALYZE here: Ally never runs it, so SQLite plans without statistics as it would in
    // a deployment.
    Ok(())
}
