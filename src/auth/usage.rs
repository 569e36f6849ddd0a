//! API key use counts and last-use times, gathered in memory and written in batches, so that an
//! authenticated call does not cost a database write.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use chrono::NaiveDateTime;
use diesel::{BoolExpressionMethods, ExpressionMethods, QueryDsl};
use diesel_async::{AsyncConnection, RunQueryDsl};
use tokio::sync::watch;
use tracing::warn;

use crate::db::{Database, DbError};
use crate::models;
use crate::schema::api_keys;

#[derive(Debug)]
struct Pending {
    uses: i64,
    last_used_at: NaiveDateTime,
}

/// Uses of API keys not yet written, keyed by (tenant id, key row id).
#[derive(Debug, Default)]
pub struct ApiKeyUsage {
    pending: Mutex<HashMap<(String, String), Pending>>,
}

impl ApiKeyUsage {
    /// Counts one use of a key now.
    pub fn record(&self, tenant_id: &str, api_key_id: &str) {
        let now = models::now();
        let Ok(mut pending) = self.pending.lock() else {
            return;
        };
        pending
            .entry((tenant_id.to_string(), api_key_id.to_string()))
            .and_modify(|p| {
                p.uses += 1;
                p.last_used_at = now;
            })
            .or_insert(Pending {
                uses: 1,
                last_used_at: now,
            });
    }

    /// Writes every pending use in one transaction. Uses that fail to be written are kept for
    /// the next flush.
    pub async fn flush(&self, database: &Database) -> Result<(), DbError> {
        let batch: HashMap<(String, String), Pending> = match self.pending.lock() {
            Ok(mut pending) => std::mem::take(&mut *pending),
            Err(_) => return Ok(()),
        };
        if batch.is_empty() {
            return Ok(());
        }
        let written = async {
            let mut conn = database.write().await?;
            conn.transaction(async |conn| {
                for ((tenant_id, id), use_) in &batch {
                    diesel::update(
                        api_keys::table
                            .filter(api_keys::tenant_id.eq(tenant_id).and(api_keys::id.eq(id))),
                    )
                    .set((
                        api_keys::use_count.eq(api_keys::use_count + use_.uses),
                        api_keys::last_used_at.eq(use_.last_used_at),
                    ))
                    .execute(conn)
                    .await?;
                }
                Ok::<_, diesel::result::Error>(())
            })
            .await?;
            Ok::<_, DbError>(())
        }
        .await;
        if let Err(error) = written {
            self.restore(batch);
            return Err(error);
        }
        Ok(())
    }

    fn restore(&self, batch: HashMap<(String, String), Pending>) {
        let Ok(mut pending) = self.pending.lock() else {
            return;
        };
        for (key, use_) in batch {
            pending
                .entry(key)
                .and_modify(|p| {
                    p.uses += use_.uses;
                    p.last_used_at = p.last_used_at.max(use_.last_used_at);
                })
                .or_insert(use_);
        }
    }

    /// Flushes every `interval` until `shutdown` turns true, then flushes once more.
    pub async fn run(
        &self,
        database: Database,
        interval: Duration,
        mut shutdown: watch::Receiver<bool>,
    ) {
        loop {
            let stop = tokio::select! {
                _ = tokio::time::sleep(interval) => false,
                _ = async { shutdown.wait_for(|stop| *stop).await.map(drop) } => true,
            };
            if let Err(error) = self.flush(&database).await {
                warn!(error = %error, "writing API key usage failed; it is kept for the next attempt");
            }
            if stop {
                return;
            }
        }
    }
}
