//! The cache of active configuration versions that ConfigurationService.GetConfiguration reads.
//!
//! A read looks in this process's memory, then in Redis (when `redis.url` is set), then in the
//! database, and fills the tiers it missed. A write, after its transaction commits, removes the
//! entry here and in Redis and publishes an invalidation message, which every server's
//! subscriber applies to its own memory. Every entry expires after `cache.ttl`, so an entry that
//! an invalidation missed is corrected within that time.
//!
//! Both tiers also store "no active version", so reads of a missing or deleted type stay cheap.
//! Writes invalidate that entry like any other.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::NaiveDateTime;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tracing::warn;

use super::redis_link::RedisLink;
use crate::models::Configuration;

/// Redis channel of invalidation messages.
pub const INVALIDATION_CHANNEL: &str = "ally:config:invalidate";
/// Maximum number of entries in one process's memory. When full, moka evicts the entries least
/// likely to be read again.
const MAX_LOCAL_ENTRIES: u64 = 10_000;

/// Returns the Redis key of a configuration type.
pub fn redis_key(tenant_id: &str, config_type: &str) -> String {
    format!("ally:config:{tenant_id}:{config_type}")
}

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct CacheKey {
    tenant_id: String,
    config_type: String,
}

/// A cached lookup: the active version, or `None` when the type has none.
pub type CachedConfiguration = Option<Arc<Configuration>>;

/// The payload of an invalidation message.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Invalidation {
    tenant_id: String,
    config_type: String,
}

/// The Redis form of a configuration row.
#[derive(Debug, Serialize, Deserialize)]
struct StoredRow {
    tenant_id: String,
    id: String,
    config_type: String,
    value: String,
    version: i32,
    description: Option<String>,
    created_by: Option<String>,
    created_at: NaiveDateTime,
    updated_at: NaiveDateTime,
}

impl From<&Configuration> for StoredRow {
    fn from(row: &Configuration) -> StoredRow {
        StoredRow {
            tenant_id: row.tenant_id.clone(),
            id: row.id.clone(),
            config_type: row.config_type.clone(),
            value: row.value.clone(),
            version: row.version,
            description: row.description.clone(),
            created_by: row.created_by.clone(),
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

impl From<StoredRow> for Configuration {
    fn from(row: StoredRow) -> Configuration {
        Configuration {
            tenant_id: row.tenant_id,
            id: row.id,
            config_type: row.config_type,
            value: row.value,
            version: row.version,
            is_active: true,
            description: row.description,
            created_by: row.created_by,
            created_at: row.created_at,
            updated_at: row.updated_at,
            deleted_at: None,
        }
    }
}

/// Encodes a lookup for Redis: the row as JSON, or `null` for "no active version".
fn encode(entry: &CachedConfiguration) -> String {
    let stored = entry.as_deref().map(StoredRow::from);
    serde_json::to_string(&stored).unwrap_or_else(|_| "null".to_string())
}

/// Decodes a Redis value. Returns `None` for a value this release cannot read, which then
/// counts as a miss.
fn decode(text: &str) -> Option<CachedConfiguration> {
    serde_json::from_str::<Option<StoredRow>>(text)
        .ok()
        .map(|stored| stored.map(|row| Arc::new(Configuration::from(row))))
}

/// The two-tier cache of active configuration versions. Clones share one cache.
#[derive(Clone)]
pub struct ConfigCache {
    inner: Arc<Inner>,
}

struct Inner {
    local: moka::future::Cache<CacheKey, CachedConfiguration>,
    redis: Option<RedisLink>,
    ttl: Duration,
    /// Incremented by every invalidation this process learns of. A read that filled a tier
    /// while the number changed removes what it filled, because it may have read the database
    /// before the change committed.
    generation: AtomicU64,
}

impl ConfigCache {
    /// Creates a cache whose entries live for `ttl`, sharing entries and invalidations through
    /// `redis` when given.
    pub fn new(ttl: Duration, redis: Option<RedisLink>) -> ConfigCache {
        let local = moka::future::Cache::builder()
            .max_capacity(MAX_LOCAL_ENTRIES)
            .time_to_live(ttl)
            .build();
        ConfigCache {
            inner: Arc::new(Inner {
                local,
                redis,
                ttl,
                generation: AtomicU64::new(0),
            }),
        }
    }

    /// Returns whether this process's memory may serve reads. With Redis configured it may only
    /// while the subscriber is connected, because otherwise it would miss invalidations from
    /// other servers.
    fn local_usable(&self) -> bool {
        self.inner
            .redis
            .as_ref()
            .is_none_or(RedisLink::is_subscribed)
    }

    /// Returns the active version of a configuration type from the first tier that has it,
    /// calling `load` (the database query) when none has.
    pub async fn get_or_load<E, F>(
        &self,
        tenant_id: &str,
        config_type: &str,
        load: F,
    ) -> Result<CachedConfiguration, E>
    where
        F: Future<Output = Result<Option<Configuration>, E>>,
    {
        let key = CacheKey {
            tenant_id: tenant_id.to_string(),
            config_type: config_type.to_string(),
        };
        let use_local = self.local_usable();
        if use_local && let Some(entry) = self.inner.local.get(&key).await {
            return Ok(entry);
        }
        let generation = self.inner.generation.load(Ordering::SeqCst);
        let redis_key = redis_key(tenant_id, config_type);

        if let Some(redis) = &self.inner.redis
            && let Some(entry) = redis.get(&redis_key).await.as_deref().and_then(decode)
        {
            if use_local {
                self.fill_local(key, entry.clone(), generation).await;
            }
            return Ok(entry);
        }

        let entry = load.await?.map(Arc::new);
        // NOTE: a server that read the database just before another server's write committed
        // can store the old row in Redis after that write deleted the key, when the
        // invalidation message has not reached it yet. The old row then stays in Redis until
        // `cache.ttl` passes.
        if let Some(redis) = &self.inner.redis {
            redis.set(&redis_key, &encode(&entry), self.inner.ttl).await;
            if self.inner.generation.load(Ordering::SeqCst) != generation {
                redis.delete(&redis_key).await;
            }
        }
        if use_local {
            self.fill_local(key, entry.clone(), generation).await;
        }
        Ok(entry)
    }

    /// Stores an entry in memory unless an invalidation arrived since `generation` was read.
    async fn fill_local(&self, key: CacheKey, entry: CachedConfiguration, generation: u64) {
        self.inner.local.insert(key.clone(), entry).await;
        // Checking after the insert closes the race with an invalidation that runs between a
        // check and the insert: either that invalidation removes the entry or this check reads
        // its new generation.
        if self.inner.generation.load(Ordering::SeqCst) != generation {
            self.inner.local.invalidate(&key).await;
        }
    }

    /// Removes a configuration type from this process's memory.
    async fn invalidate_local(&self, tenant_id: &str, config_type: &str) {
        self.inner.generation.fetch_add(1, Ordering::SeqCst);
        let key = CacheKey {
            tenant_id: tenant_id.to_string(),
            config_type: config_type.to_string(),
        };
        self.inner.local.invalidate(&key).await;
    }

    /// Removes a configuration type from every tier and publishes an invalidation message so
    /// that the other servers do the same.
    /// Call it after the transaction that changed the type commits. A Redis failure is logged
    /// and otherwise ignored: the other servers then correct their entries within `cache.ttl`.
    pub async fn invalidate(&self, tenant_id: &str, config_type: &str) {
        self.invalidate_local(tenant_id, config_type).await;
        if let Some(redis) = &self.inner.redis {
            let message = Invalidation {
                tenant_id: tenant_id.to_string(),
                config_type: config_type.to_string(),
            };
            let payload = serde_json::to_string(&message).unwrap_or_default();
            redis
                .delete_and_publish(
                    &redis_key(tenant_id, config_type),
                    INVALIDATION_CHANNEL,
                    &payload,
                )
                .await;
        }
    }

    /// Applies one invalidation message from another server.
    async fn apply_message(&self, payload: &str) {
        match serde_json::from_str::<Invalidation>(payload) {
            Ok(message) => {
                self.invalidate_local(&message.tenant_id, &message.config_type)
                    .await;
            }
            Err(error) => {
                warn!(error = %error, "ignored an invalidation message that is not valid");
            }
        }
    }

    /// Removes every entry from this process's memory.
    fn clear_local(&self) {
        self.inner.generation.fetch_add(1, Ordering::SeqCst);
        self.inner.local.invalidate_all();
    }

    /// Returns the task that applies other servers' invalidation messages until `stop` turns
    /// true, or `None` without Redis.
    pub fn subscriber(
        &self,
        stop: watch::Receiver<bool>,
    ) -> Option<impl Future<Output = ()> + Send + 'static> {
        let redis = self.inner.redis.clone()?;
        let cache = self.clone();
        Some(async move {
            let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel::<String>();
            let applier = {
                let cache = cache.clone();
                tokio::spawn(async move {
                    while let Some(payload) = receiver.recv().await {
                        cache.apply_message(&payload).await;
                    }
                })
            };
            redis
                .run_subscriber(
                    INVALIDATION_CHANNEL,
                    || cache.clear_local(),
                    |payload| {
                        let _ = sender.send(payload.to_string());
                    },
                    stop,
                )
                .await;
            drop(sender);
            let _ = applier.await;
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(version: i32) -> Configuration {
        let now = chrono::DateTime::from_timestamp(1_764_870_000, 0)
            .unwrap()
            .naive_utc();
        Configuration {
            tenant_id: "t1".into(),
            id: "r1".into(),
            config_type: "llm.defaults".into(),
            value: r#"{"model":"m"}"#.into(),
            version,
            is_active: true,
            description: Some("first".into()),
            created_by: None,
            created_at: now,
            updated_at: now,
            deleted_at: None,
        }
    }

    #[test]
    fn redis_value_round_trip() {
        let entry = Some(Arc::new(row(3)));

        let decoded = decode(&encode(&entry)).expect("decodes");

        assert_eq!(decoded.as_deref(), Some(&row(3)));
    }

    #[test]
    fn missing_type_round_trip() {
        assert_eq!(encode(&None), "null");
        assert!(matches!(decode("null"), Some(None)));
    }

    #[test]
    fn unreadable_redis_value_is_miss() {
        assert!(decode("{\"unexpected\":true}").is_none());
        assert!(decode("not json").is_none());
    }

    #[test]
    fn key_format() {
        assert_eq!(
            redis_key("t1", "llm.defaults"),
            "ally:config:t1:llm.defaults"
        );
    }

    #[tokio::test]
    async fn local_tier_serves_until_invalidated() {
        let cache = ConfigCache::new(Duration::from_secs(60), None);
        let load = |version| async move { Ok::<_, ()>(Some(row(version))) };

        let first = cache.get_or_load("t1", "llm.defaults", load(1)).await;
        let cached = cache.get_or_load("t1", "llm.defaults", load(2)).await;
        cache.invalidate("t1", "llm.defaults").await;
        let reloaded = cache.get_or_load("t1", "llm.defaults", load(3)).await;

        assert_eq!(first.unwrap().map(|r| r.version), Some(1));
        assert_eq!(cached.unwrap().map(|r| r.version), Some(1));
        assert_eq!(reloaded.unwrap().map(|r| r.version), Some(3));
    }

    #[tokio::test]
    async fn tenants_have_separate_entries() {
        let cache = ConfigCache::new(Duration::from_secs(60), None);

        let _ = cache
            .get_or_load("t1", "llm.defaults", async { Ok::<_, ()>(Some(row(1))) })
            .await;
        let other = cache
            .get_or_load("t2", "llm.defaults", async { Ok::<_, ()>(None) })
            .await;

        assert!(other.unwrap().is_none());
    }

    #[tokio::test]
    async fn invalidation_during_load_is_not_cached() {
        let cache = ConfigCache::new(Duration::from_secs(60), None);

        let racing = cache.clone();
        let stale = cache
            .get_or_load("t1", "llm.defaults", async move {
                racing.invalidate("t1", "llm.defaults").await;
                Ok::<_, ()>(Some(row(1)))
            })
            .await;
        let fresh = cache
            .get_or_load("t1", "llm.defaults", async { Ok::<_, ()>(Some(row(2))) })
            .await;

        assert_eq!(stale.unwrap().map(|r| r.version), Some(1));
        assert_eq!(fresh.unwrap().map(|r| r.version), Some(2));
    }

    #[tokio::test]
    async fn invalidation_messages_applied() {
        let cache = ConfigCache::new(Duration::from_secs(60), None);
        let _ = cache
            .get_or_load("t1", "llm.defaults", async { Ok::<_, ()>(Some(row(1))) })
            .await;

        cache
            .apply_message(r#"{"tenant_id":"t1","config_type":"llm.defaults"}"#)
            .await;
        let reloaded = cache
            .get_or_load("t1", "llm.defaults", async { Ok::<_, ()>(Some(row(2))) })
            .await;

        assert_eq!(reloaded.unwrap().map(|r| r.version), Some(2));
    }
}
