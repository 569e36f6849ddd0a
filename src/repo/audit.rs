//! Writing, reading and pruning `audit_logs`.

use chrono::NaiveDateTime;
use diesel::sql_types::{BigInt, Timestamp};
use diesel::{BoolExpressionMethods, ExpressionMethods, QueryDsl, QueryResult, SelectableHelper};
use diesel_async::RunQueryDsl;

use crate::db::DbConnection;
use crate::models::AuditLog;
use crate::schema::audit_logs;

/// Appends one entry.
///
/// NOTE: the `ally.audit.entries` metric counts the insert here, so an entry whose transaction
/// later rolls back (and is retried) is counted again.
#[tracing::instrument(name = "repo.audit.insert", skip_all)]
pub async fn insert(conn: &mut DbConnection, entry: &AuditLog) -> QueryResult<()> {
    diesel::insert_into(audit_logs::table)
        .values(entry)
        .execute(conn)
        .await?;
    crate::telemetry::metrics::record_audit_entry(&entry.event_type, &entry.severity);
    Ok(())
}

/// Conditions that listed entries all meet. `None` and empty fields match every entry.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct AuditFilter {
    pub event_type: Option<String>,
    /// Stored severity names to match; empty matches every severity.
    pub severities: Vec<String>,
    pub actor_id: Option<String>,
    pub resource_type: Option<String>,
    pub resource_id: Option<String>,
    /// Only entries created at or after this time.
    pub start: Option<NaiveDateTime>,
    /// Only entries created before this time.
    pub end: Option<NaiveDateTime>,
}

/// The order of a listing, which also decides which side of the cursor the next rows are on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    /// `(created_at, id)` descending.
    NewestFirst,
    /// `(created_at, id)` ascending.
    OldestFirst,
}

/// Lists a tenant's entries that match `filter`, `limit` rows after the cursor
/// `(created_at, id)` in `order`.
#[tracing::instrument(name = "repo.audit.list", skip_all, fields(tenant.id = %tenant_id))]
pub async fn list(
    conn: &mut DbConnection,
    tenant_id: &str,
    filter: &AuditFilter,
    order: Order,
    after: Option<(NaiveDateTime, String)>,
    limit: i64,
) -> QueryResult<Vec<AuditLog>> {
    let mut query = audit_logs::table
        .filter(audit_logs::tenant_id.eq(tenant_id.to_string()))
        .select(AuditLog::as_select())
        .into_boxed();
    if let Some(event_type) = &filter.event_type {
        query = query.filter(audit_logs::event_type.eq(event_type.clone()));
    }
    if !filter.severities.is_empty() {
        query = query.filter(audit_logs::severity.eq_any(filter.severities.clone()));
    }
    if let Some(actor_id) = &filter.actor_id {
        query = query.filter(audit_logs::actor_id.eq(actor_id.clone()));
    }
    if let Some(resource_type) = &filter.resource_type {
        query = query.filter(audit_logs::resource_type.eq(resource_type.clone()));
    }
    if let Some(resource_id) = &filter.resource_id {
        query = query.filter(audit_logs::resource_id.eq(resource_id.clone()));
    }
    if let Some(start) = filter.start {
        query = query.filter(audit_logs::created_at.ge(start));
    }
    if let Some(end) = filter.end {
        query = query.filter(audit_logs::created_at.lt(end));
    }
    // Each cursor repeats its bound outside the OR, because SQLite cannot seek an index to a
    // range inside an OR and would walk the tenant's entries from the first one.
    match (order, after) {
        (Order::NewestFirst, Some((created_at, id))) => {
            query = query.filter(audit_logs::created_at.le(created_at)).filter(
                audit_logs::created_at
                    .lt(created_at)
                    .or(audit_logs::created_at
                        .eq(created_at)
                        .and(audit_logs::id.lt(id))),
            );
        }
        (Order::OldestFirst, Some((created_at, id))) => {
            query = query.filter(audit_logs::created_at.ge(created_at)).filter(
                audit_logs::created_at
                    .gt(created_at)
                    .or(audit_logs::created_at
                        .eq(created_at)
                        .and(audit_logs::id.gt(id))),
            );
        }
        (_, None) => {}
    }
    query = match order {
        Order::NewestFirst => query.order((audit_logs::created_at.desc(), audit_logs::id.desc())),
        Order::OldestFirst => query.order((audit_logs::created_at.asc(), audit_logs::id.asc())),
    };
    query.limit(limit).load(conn).await
}

/// Counts the entries of every tenant created before `cutoff`.
#[tracing::instrument(name = "repo.audit.count_before", skip_all)]
pub async fn count_before(conn: &mut DbConnection, cutoff: NaiveDateTime) -> QueryResult<i64> {
    audit_logs::table
        .filter(audit_logs::created_at.lt(cutoff))
        .count()
        .get_result(conn)
        .await
}

/// Deletes at most `limit` of the oldest entries of every tenant created before `cutoff`, and
/// returns how many it deleted. Callers repeat it until it returns less than `limit`, so that no
/// single statement holds locks on a large part of the table.
#[tracing::instrument(name = "repo.audit.delete_before", skip_all)]
pub async fn delete_before(
    conn: &mut DbConnection,
    cutoff: NaiveDateTime,
    limit: i64,
) -> QueryResult<usize> {
    // Diesel has no DELETE ... LIMIT, so each backend gets its own statement. MySQL walks
    // ix_audit_logs_created_at. SQLite accepts LIMIT on DELETE only when compiled with an option,
    // so it picks the rows by rowid in a subquery.
    match conn {
        DbConnection::Mysql(mysql) => {
            diesel::sql_query(
                "DELETE FROM audit_logs WHERE created_at < ? ORDER BY created_at LIMIT ?",
            )
            .bind::<Timestamp, _>(cutoff)
            .bind::<BigInt, _>(limit)
            .execute(mysql)
            .await
        }
        DbConnection::Sqlite(sqlite) => {
            diesel::sql_query(
                "DELETE FROM audit_logs WHERE rowid IN (SELECT rowid FROM audit_logs \
                 WHERE created_at < ? ORDER BY created_at LIMIT ?)",
            )
            .bind::<Timestamp, _>(cutoff)
            .bind::<BigInt, _>(limit)
            .execute(sqlite)
            .await
        }
    }
}
