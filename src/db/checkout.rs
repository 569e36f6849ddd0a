//! The check that the pool runs on a connection before it hands it out.
//!
//! A MySQL connection can be closed by the server (a restart, `KILL`, `wait_timeout`) while it
//! sits in the pool. So the pool sends `SELECT 1` before it hands out a connection, unless that
//! connection finished a query without error within the last [`FRESH_FOR`]. Under load every
//! connection comes back within milliseconds, so the round trip is skipped exactly where it
//! costs most. Skipping it opens no new failure mode, because a connection can also drop
//! between the check and the caller's query: the check only narrows that window.
//!
//! A SQLite connection is a handle on a local file that nothing outside this process can close,
//! so it is not checked.

use std::time::{Duration, Instant};

use diesel::connection::{Instrumentation, InstrumentationEvent};
use diesel_async::pooled_connection::PoolableConnection;
use diesel_async::{AsyncConnection, RunQueryDsl};

use super::DbConnection;

/// How long after a successful query a MySQL connection is handed out without a check.
pub const FRESH_FOR: Duration = Duration::from_millis(50);

/// Records when a connection last finished a query without error. A failed query clears the
/// record, so the next checkout checks the connection.
#[derive(Debug, Default)]
struct QueryClock {
    last_success: Option<Instant>,
}

impl Instrumentation for QueryClock {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        if let InstrumentationEvent::FinishQuery { error, .. } = event {
            self.last_success = error.is_none().then(Instant::now);
        }
    }
}

/// Starts recording query times on a new connection.
pub fn track(conn: &mut DbConnection) {
    if let DbConnection::Mysql(mysql) = conn {
        mysql.set_instrumentation(QueryClock::default());
    }
}

/// Checks a pooled connection before the pool hands it out.
pub async fn check(conn: &mut DbConnection) -> diesel::QueryResult<()> {
    let DbConnection::Mysql(mysql) = conn else {
        return Ok(());
    };
    // The derived pool support for the enum checks only the transaction state, not whether a
    // MySQL command was abandoned midway, so check that here.
    if PoolableConnection::is_broken(mysql) {
        return Err(diesel::result::Error::BrokenTransactionManager);
    }
    // `instrumentation` is hidden from diesel-async's documentation but public, and returns the
    // recorder that `track` installed.
    let fresh = AsyncConnection::instrumentation(mysql)
        .downcast_ref::<QueryClock>()
        .and_then(|clock| clock.last_success)
        .is_some_and(|at| at.elapsed() < FRESH_FOR);
    if fresh {
        return Ok(());
    }
    diesel::select(diesel::dsl::sql::<diesel::sql_types::Integer>("1"))
        .get_result::<i32>(mysql)
        .await
        .map(drop)
}
