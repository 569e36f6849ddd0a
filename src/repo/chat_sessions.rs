//! Queries on `chat_sessions`.

use chrono::NaiveDateTime;
use diesel::expression_methods::EscapeExpressionMethods;
use diesel::{
    BoolExpressionMethods, ExpressionMethods, OptionalExtension, QueryDsl, QueryResult,
    SelectableHelper, TextExpressionMethods,
};
use diesel_async::RunQueryDsl;

use crate::db::DbConnection;
use crate::models::ChatSession;
use crate::schema::{chat_sessions, messages};

/// Sort key of a session listing: `(last_message_at, created_at, id)`.
pub type ActivityCursor = (Option<NaiveDateTime>, NaiveDateTime, String);

#[tracing::instrument(name = "repo.chat_sessions.insert", skip_all)]
pub async fn insert(conn: &mut DbConnection, session: &ChatSession) -> QueryResult<()> {
    diesel::insert_into(chat_sessions::table)
        .values(session)
        .execute(conn)
        .await
        .map(drop)
}

/// Loads one session of a tenant, deleted or not.
#[tracing::instrument(name = "repo.chat_sessions.find", skip_all, fields(tenant.id = %tenant_id))]
pub async fn find(
    conn: &mut DbConnection,
    tenant_id: &str,
    id: &str,
) -> QueryResult<Option<ChatSession>> {
    chat_sessions::table
        .filter(chat_sessions::tenant_id.eq(tenant_id))
        .filter(chat_sessions::id.eq(id))
        .select(ChatSession::as_select())
        // The primary key, so no LIMIT: see `tenants::find`.
        .get_result(conn)
        .await
        .optional()
}

/// Loads the session whose share token has the hash `token_hash`. This lookup runs on the
/// token's unique index across all tenants, so the caller must compare the session's tenant with
/// its own before it returns anything.
#[tracing::instrument(name = "repo.chat_sessions.find_by_share_hash", skip_all)]
pub async fn find_by_share_hash(
    conn: &mut DbConnection,
    token_hash: &str,
) -> QueryResult<Option<ChatSession>> {
    chat_sessions::table
        .filter(chat_sessions::share_token.eq(token_hash))
        .select(ChatSession::as_select())
        .first(conn)
        .await
        .optional()
}

/// Writes every mutable column of `session`.
#[tracing::instrument(name = "repo.chat_sessions.update", skip_all)]
pub async fn update(conn: &mut DbConnection, session: &ChatSession) -> QueryResult<()> {
    diesel::update(
        chat_sessions::table
            .filter(chat_sessions::tenant_id.eq(&session.tenant_id))
            .filter(chat_sessions::id.eq(&session.id)),
    )
    .set((
        chat_sessions::title.eq(&session.title),
        chat_sessions::status.eq(&session.status),
        chat_sessions::is_shared.eq(session.is_shared),
        chat_sessions::share_token.eq(&session.share_token),
        chat_sessions::share_expires_at.eq(session.share_expires_at),
        chat_sessions::metadata.eq(&session.metadata),
        chat_sessions::updated_at.eq(session.updated_at),
        chat_sessions::deleted_at.eq(session.deleted_at),
    ))
    .execute(conn)
    .await
    .map(drop)
}

/// Counts a new message of a session and locks the session's row until the transaction ends:
/// increments `message_count` of the session if it belongs to `user_id`, is active and is not
/// deleted. Returns false when no such session exists. AddMessage runs this before anything
/// else that writes, so that concurrent adds to one session queue on this row lock.
#[tracing::instrument(name = "repo.chat_sessions.count_new_message", skip_all, fields(tenant.id = %tenant_id))]
pub async fn count_new_message(
    conn: &mut DbConnection,
    tenant_id: &str,
    id: &str,
    user_id: &str,
) -> QueryResult<bool> {
    let changed = diesel::update(
        chat_sessions::table
            .filter(chat_sessions::tenant_id.eq(tenant_id))
            .filter(chat_sessions::id.eq(id))
            .filter(chat_sessions::user_id.eq(user_id))
            .filter(chat_sessions::status.eq("active"))
            .filter(chat_sessions::deleted_at.is_null()),
    )
    .set(chat_sessions::message_count.eq(chat_sessions::message_count + 1))
    .execute(conn)
    .await?;
    Ok(changed == 1)
}

/// Sets `last_message_at` and `updated_at` of a session to `at`, the time of its newest
/// message.
#[tracing::instrument(name = "repo.chat_sessions.set_last_message_at", skip_all, fields(tenant.id = %tenant_id))]
pub async fn set_last_message_at(
    conn: &mut DbConnection,
    tenant_id: &str,
    id: &str,
    at: NaiveDateTime,
) -> QueryResult<()> {
    diesel::update(
        chat_sessions::table
            .filter(chat_sessions::tenant_id.eq(tenant_id))
            .filter(chat_sessions::id.eq(id)),
    )
    .set((
        chat_sessions::last_message_at.eq(at),
        chat_sessions::updated_at.eq(at),
    ))
    .execute(conn)
    .await
    .map(drop)
}

/// Decrements `message_count` after a message was deleted, never below zero.
#[tracing::instrument(name = "repo.chat_sessions.forget_message", skip_all, fields(tenant.id = %tenant_id))]
pub async fn forget_message(
    conn: &mut DbConnection,
    tenant_id: &str,
    id: &str,
    now: NaiveDateTime,
) -> QueryResult<()> {
    diesel::update(
        chat_sessions::table
            .filter(chat_sessions::tenant_id.eq(tenant_id))
            .filter(chat_sessions::id.eq(id))
            .filter(chat_sessions::message_count.gt(0)),
    )
    .set((
        chat_sessions::message_count.eq(chat_sessions::message_count - 1),
        chat_sessions::updated_at.eq(now),
    ))
    .execute(conn)
    .await
    .map(drop)
}

/// Counts a tenant's sessions that are not deleted, the figure the plan's session quota limits.
#[tracing::instrument(name = "repo.chat_sessions.count_live", skip_all, fields(tenant.id = %tenant_id))]
pub async fn count_live(conn: &mut DbConnection, tenant_id: &str) -> QueryResult<i64> {
    chat_sessions::table
        .filter(chat_sessions::tenant_id.eq(tenant_id))
        .filter(chat_sessions::deleted_at.is_null())
        .count()
        .get_result(conn)
        .await
}

/// Filters of a session listing or search.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct SessionFilter {
    /// Only sessions of this user; `None` means every user of the tenant.
    pub user_id: Option<String>,
    /// Only sessions with this status.
    pub status: Option<String>,
    /// Only shared (true) or unshared (false) sessions.
    pub shared: Option<bool>,
    pub show_deleted: bool,
    /// Only sessions whose title, or the content of a message that is not deleted, matches this
    /// LIKE pattern. Build it with [`contains_pattern`].
    pub pattern: Option<String>,
}

/// The escape character of the patterns [`contains_pattern`] builds.
const LIKE_ESCAPE: char = '\\';

/// Returns a LIKE pattern that matches text containing `text` literally.
pub fn contains_pattern(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len() + 2);
    pattern.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | LIKE_ESCAPE) {
            pattern.push(LIKE_ESCAPE);
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// Lists a tenant's sessions by latest activity: `last_message_at` descending with sessions
/// without messages last, then `created_at` and `id` descending. Returns `limit` rows after
/// the cursor.
#[tracing::instrument(name = "repo.chat_sessions.list", skip_all, fields(tenant.id = %tenant_id))]
pub async fn list(
    conn: &mut DbConnection,
    tenant_id: &str,
    filter: &SessionFilter,
    after: Option<ActivityCursor>,
    limit: i64,
) -> QueryResult<Vec<ChatSession>> {
    let mut query = chat_sessions::table
        .filter(chat_sessions::tenant_id.eq(tenant_id.to_string()))
        .select(ChatSession::as_select())
        .into_boxed();
    if let Some(user_id) = &filter.user_id {
        query = query.filter(chat_sessions::user_id.eq(user_id.clone()));
    }
    if let Some(status) = &filter.status {
        query = query.filter(chat_sessions::status.eq(status.clone()));
    }
    if let Some(shared) = filter.shared {
        query = query.filter(chat_sessions::is_shared.eq(shared));
    }
    if !filter.show_deleted {
        query = query.filter(chat_sessions::deleted_at.is_null());
    }
    if let Some(pattern) = &filter.pattern {
        let in_messages = diesel::dsl::exists(
            messages::table
                .filter(messages::tenant_id.eq(chat_sessions::tenant_id))
                .filter(messages::session_id.eq(chat_sessions::id))
                .filter(messages::deleted_at.is_null())
                .filter(messages::content.like(pattern.clone()).escape(LIKE_ESCAPE)),
        );
        query = query.filter(
            chat_sessions::title
                .like(pattern.clone())
                .escape(LIKE_ESCAPE)
                .or(in_messages),
        );
    }
    if let Some((last, created_at, id)) = after {
        let same_activity_later =
            chat_sessions::created_at
                .lt(created_at)
                .or(chat_sessions::created_at
                    .eq(created_at)
                    .and(chat_sessions::id.lt(id)));
        query = match last {
            // NULL sorts last in descending order on both backends, so every session without
            // messages comes after any session with one.
            Some(last) => query.filter(
                chat_sessions::last_message_at
                    .lt(last)
                    .or(chat_sessions::last_message_at
                        .eq(last)
                        .and(same_activity_later))
                    .or(chat_sessions::last_message_at.is_null()),
            ),
            None => query.filter(
                chat_sessions::last_message_at
                    .is_null()
                    .and(same_activity_later),
            ),
        };
    }
    query
        .order((
            chat_sessions::last_message_at.desc(),
            chat_sessions::created_at.desc(),
            chat_sessions::id.desc(),
        ))
        .limit(limit)
        .load(conn)
        .await
}

/// Counts sessions of every tenant deleted before `cutoff`.
#[tracing::instrument(name = "repo.chat_sessions.count_deleted_before", skip_all)]
pub async fn count_deleted_before(
    conn: &mut DbConnection,
    cutoff: NaiveDateTime,
) -> QueryResult<i64> {
    chat_sessions::table
        .filter(chat_sessions::deleted_at.lt(cutoff))
        .count()
        .get_result(conn)
        .await
}

/// Deletes at most `limit` sessions of any tenant that were soft-deleted before `cutoff`, with
/// their messages and revisions through the foreign keys, and returns how many sessions it
/// deleted. Callers repeat it until it returns less than `limit`.
#[tracing::instrument(name = "repo.chat_sessions.purge_deleted_before", skip_all)]
pub async fn purge_deleted_before(
    conn: &mut DbConnection,
    cutoff: NaiveDateTime,
    limit: i64,
) -> QueryResult<usize> {
    let batch: Vec<(String, String)> = chat_sessions::table
        .filter(chat_sessions::deleted_at.lt(cutoff))
        .select((chat_sessions::tenant_id, chat_sessions::id))
        .order(chat_sessions::deleted_at.asc())
        .limit(limit)
        .load(conn)
        .await?;
    let mut deleted = 0;
    for (tenant_id, id) in &batch {
        // Replies have no foreign key to their parent, but every message of the session goes
        // with the session, so no reply is left behind.
        deleted += diesel::delete(
            chat_sessions::table
                .filter(chat_sessions::tenant_id.eq(tenant_id))
                .filter(chat_sessions::id.eq(id))
                .filter(chat_sessions::deleted_at.lt(cutoff)),
        )
        .execute(conn)
        .await?;
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::contains_pattern;

    #[test]
    fn pattern_escapes_wildcards() {
        assert_eq!(contains_pattern("50%_off"), "%50\\%\\_off%");
        assert_eq!(contains_pattern("a\\b"), "%a\\\\b%");
        assert_eq!(contains_pattern("plain"), "%plain%");
    }
}
