//! Queries of conversation imports on `chat_sessions` and `messages`.

use chrono::NaiveDateTime;
use diesel::{ExpressionMethods, QueryDsl, QueryResult, SelectableHelper};
use diesel_async::RunQueryDsl;

use crate::db::DbConnection;
use crate::models::{ChatSession, Message};
use crate::schema::{chat_sessions, messages};

/// Rows per INSERT and ids per `IN (..)` list. A message row has 19 columns, so a batch stays
/// far below SQLite's 32,766 and MySQL's 65,535 bound parameters.
pub const BATCH: usize = 500;

/// Loads the sessions of a tenant with the given ids, deleted or not, in no particular order.
pub async fn find_sessions(
    conn: &mut DbConnection,
    tenant_id: &str,
    ids: &[String],
) -> QueryResult<Vec<ChatSession>> {
    let mut found = Vec::new();
    for batch in ids.chunks(BATCH) {
        let rows: Vec<ChatSession> = chat_sessions::table
            .filter(chat_sessions::tenant_id.eq(tenant_id))
            .filter(chat_sessions::id.eq_any(batch))
            .select(ChatSession::as_select())
            .load(conn)
            .await?;
        found.extend(rows);
    }
    Ok(found)
}

/// Returns which of `ids` are messages of the session, deleted or not.
pub async fn existing_message_ids(
    conn: &mut DbConnection,
    tenant_id: &str,
    session_id: &str,
    ids: &[String],
) -> QueryResult<Vec<String>> {
    let mut found = Vec::new();
    for batch in ids.chunks(BATCH) {
        let rows: Vec<String> = messages::table
            .filter(messages::tenant_id.eq(tenant_id))
            .filter(messages::session_id.eq(session_id))
            .filter(messages::id.eq_any(batch))
            .select(messages::id)
            .load(conn)
            .await?;
        found.extend(rows);
    }
    Ok(found)
}

/// Inserts sessions: on MySQL [`BATCH`] rows per statement, on SQLite one row per statement.
/// diesel's batch INSERT is not available through the `MultiConnection` enum, and on SQLite
/// not for rows with nullable columns, because SQLite has no `DEFAULT` keyword for the values
/// of a multi-row INSERT. One row per statement costs little there, because SQLite runs
/// in-process.
pub async fn insert_sessions(conn: &mut DbConnection, rows: &[ChatSession]) -> QueryResult<()> {
    for batch in rows.chunks(BATCH) {
        let statement = diesel::insert_into(chat_sessions::table).values(batch);
        match conn {
            DbConnection::Mysql(mysql) => statement.execute(mysql).await?,
            DbConnection::Sqlite(sqlite) => {
                for row in batch {
                    diesel::insert_into(chat_sessions::table)
                        .values(row)
                        .execute(sqlite)
                        .await?;
                }
                0
            }
        };
    }
    Ok(())
}

/// Inserts messages, batched as [`insert_sessions`] describes.
pub async fn insert_messages(conn: &mut DbConnection, rows: &[Message]) -> QueryResult<()> {
    for batch in rows.chunks(BATCH) {
        let statement = diesel::insert_into(messages::table).values(batch);
        match conn {
            DbConnection::Mysql(mysql) => statement.execute(mysql).await?,
            DbConnection::Sqlite(sqlite) => {
                for row in batch {
                    diesel::insert_into(messages::table)
                        .values(row)
                        .execute(sqlite)
                        .await?;
                }
                0
            }
        };
    }
    Ok(())
}

/// Counts `added` imported messages of a session: increments `message_count` and sets
/// `last_message_at` and `updated_at`.
pub async fn count_imported_messages(
    conn: &mut DbConnection,
    tenant_id: &str,
    id: &str,
    added: i64,
    last_message_at: Option<NaiveDateTime>,
    now: NaiveDateTime,
) -> QueryResult<()> {
    diesel::update(
        chat_sessions::table
            .filter(chat_sessions::tenant_id.eq(tenant_id))
            .filter(chat_sessions::id.eq(id)),
    )
    .set((
        chat_sessions::message_count.eq(chat_sessions::message_count + added),
        chat_sessions::last_message_at.eq(last_message_at),
        chat_sessions::updated_at.eq(now),
    ))
    .execute(conn)
    .await
    .map(drop)
}
