//! The cache of active configuration versions that ConfigurationService.GetConfiguration reads.
//!
//! Without Redis the cache lives in this process's memory: a read fills it from the database and
//! a write, after its transaction commits, removes the entry.
//!
//! With `redis.url` set the cache lives only in Redis, so every server reads the same entries and
//! a write through one server is read through any other at once. Each configuration type has a
//! generation key next to its value key. A write replaces the generation with a new random one
//! and deletes the value in one transaction. A read stores a value only through a script that
//! first checks that the generation it saw before reading the database is still current. So a
//! server that read the database just before another server's write commits cannot store the
//! superseded row after that write.
//! While Redis fails, reads go to the database.
//!
//! Every entry expires after `cache.ttl`, so an entry that a lost invalidation left behind (a
//! write while Redis was unreachable) is corrected within that time. Both tiers also store "no
//! active version", so reads of a missing or deleted type stay cheap.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::NaiveDateTime;
use serde::{Deserialize, Serialize};
use tracing::Instrument;

use super::redis_link::RedisLink;
use crate::models::Configuration;
use crate::telemetry::metrics::{CacheTier, record_cache_lookup};

/// Maximum number of entries in one process's memory. When full, moka evicts the entries least
/// likely to be read again.
const MAX_LOCAL_ENTRIES: u64 = 10_000;

/// Stores a value only while the generation the reader saw is current. KEYS: generation key,
/// value key. ARGV: the generation the reader saw (empty when there was none), the generation to
/// create when there is none, the encoded row, the value's TTL and the generation's TTL in
/// milliseconds. Returns 1 when it stored the value.
const FILL_SCRIPT: &str = r"
local current = redis.call('GET', KEYS[1])
if current == false then
  if ARGV[1] ~= '' then return 0 end
  current = ARGV[2]
  redis.call('SET', KEYS[1], current, 'PX', ARGV[5])
elseif current ~= ARGV[1] then
  return 0
else
  redis.call('PEXPIRE', KEYS[1], ARGV[5])
end
redis.call('SET', KEYS[2], current .. '\n' .. ARGV[3], 'PX', ARGV[4])
return 1
";

/// Returns the Redis key of a configuration type's cached value. The braces make the value and
/// generation keys of one type hash to the same Redis Cluster slot, as the fill script needs.
pub fn redis_key(tenant_id: &str, config_type: &str) -> String {
    format!("ally:config:{{{tenant_id}:{config_type}}}")
}

/// Returns the Redis key of a configuration type's generation.
pub fn generation_key(tenant_id: &str, config_type: &str) -> String {
    format!("ally:config:{{{tenant_id}:{config_type}}}:generation")
}

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct CacheKey {
    tenant_id: String,
    config_type: String,
}

/// A cached lookup: the active version, or `None` when the type has none.
pub type CachedConfiguration = Option<Arc<Configuration>>;

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

/// Decodes a stored Redis value (`generation`, a newline, the encoded row) when its generation
/// is `current`. Returns `None` for a superseded or unreadable value.
fn decode_current(stored: &str, current: Option<&str>) -> Option<CachedConfiguration> {
    let (generation, row) = stored.split_once('\n')?;
    if Some(generation) != current {
        return None;
    }
    decode(row)
}

/// Returns a new random generation.
fn new_generation() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// The cache of active configuration versions: in this process's memory, or in Redis when
/// configured. Clones share one cache.
#[derive(Clone)]
pub struct ConfigCache {
    inner: Arc<Inner>,
}

enum Store {
    Local {
        entries: moka::future::Cache<CacheKey, CachedConfiguration>,
        /// Incremented by every invalidation. A read that filled the cache while the number
        /// changed removes what it filled, because it may have read the database before the
        /// change committed.
        generation: AtomicU64,
    },
    Redis(RedisLink),
}

struct Inner {
    store: Store,
    ttl: Duration,
    fill: redis::Script,
}

impl ConfigCache {
    /// Creates a cache whose entries live for `ttl`: in Redis when `redis` is given, in this
    /// process's memory otherwise.
    pub fn new(ttl: Duration, redis: Option<RedisLink>) -> ConfigCache {
        let store = match redis {
            Some(redis) => Store::Redis(redis),
            None => Store::Local {
                entries: moka::future::Cache::builder()
                    .max_capacity(MAX_LOCAL_ENTRIES)
                    .time_to_live(ttl)
                    .build(),
                generation: AtomicU64::new(0),
            },
        };
        ConfigCache {
            inner: Arc::new(Inner {
                store,
                ttl,
                fill: redis::Script::new(FILL_SCRIPT),
            }),
        }
    }

    /// Returns the active version of a configuration type from the cache, calling `load` (the
    /// database query) and filling the cache on a miss.
    #[tracing::instrument(
        name = "cache.configuration.get",
        skip_all,
        fields(tenant.id = %tenant_id, config.type = %config_type, cache.tier, cache.result)
    )]
    pub async fn get_or_load<E, F>(
        &self,
        tenant_id: &str,
        config_type: &str,
        load: F,
    ) -> Result<CachedConfiguration, E>
    where
        F: Future<Output = Result<Option<Configuration>, E>>,
    {
        match &self.inner.store {
            Store::Local {
                entries,
                generation,
            } => {
                let key = CacheKey {
                    tenant_id: tenant_id.to_string(),
                    config_type: config_type.to_string(),
                };
                let cached = entries.get(&key).await;
                record_lookup(CacheTier::Memory, cached.is_some());
                if let Some(entry) = cached {
                    return Ok(entry);
                }
                let seen = generation.load(Ordering::SeqCst);
                let entry = load.await?.map(Arc::new);
                entries
                    .insert(key.clone(), entry.clone())
                    .instrument(put_span(CacheTier::Memory))
                    .await;
                // Checking after the insert closes the race with an invalidation that runs
                // between a check and the insert: either that invalidation removes the entry or
                // this check reads its new generation.
                if generation.load(Ordering::SeqCst) != seen {
                    entries.invalidate(&key).await;
                }
                Ok(entry)
            }
            Store::Redis(redis) => {
                let generation_key = generation_key(tenant_id, config_type);
                let value_key = redis_key(tenant_id, config_type);
                let seen = redis.get_pair(&generation_key, &value_key).await;
                let cached = match &seen {
                    Some((current, Some(stored))) => decode_current(stored, current.as_deref()),
                    _ => None,
                };
                record_lookup(CacheTier::Redis, cached.is_some());
                if let Some(entry) = cached {
                    return Ok(entry);
                }
                let entry = load.await?.map(Arc::new);
                if let Some((current, _)) = seen {
                    redis
                        .run_script(
                            &self.inner.fill,
                            &[&generation_key, &value_key],
                            &[
                                current.as_deref().unwrap_or(""),
                                &new_generation(),
                                &encode(&entry),
                                &millis(self.inner.ttl).to_string(),
                                &millis(self.inner.ttl * 2).to_string(),
                            ],
                        )
                        .instrument(put_span(CacheTier::Redis))
                        .await;
                }
                Ok(entry)
            }
        }
    }

    /// Removes a configuration type from the cache of every server. Call it after the
    /// transaction that changed the type commits. A Redis failure is logged and otherwise
    /// ignored: the entry then expires within `cache.ttl`.
    #[tracing::instrument(
        name = "cache.configuration.invalidate",
        skip_all,
        fields(tenant.id = %tenant_id, config.type = %config_type)
    )]
    pub async fn invalidate(&self, tenant_id: &str, config_type: &str) {
        match &self.inner.store {
            Store::Local {
                entries,
                generation,
            } => {
                generation.fetch_add(1, Ordering::SeqCst);
                let key = CacheKey {
                    tenant_id: tenant_id.to_string(),
                    config_type: config_type.to_string(),
                };
                entries.invalidate(&key).await;
            }
            Store::Redis(redis) => {
                redis
                    .replace_and_delete(
                        &generation_key(tenant_id, config_type),
                        &new_generation(),
                        self.inner.ttl * 2,
                        &redis_key(tenant_id, config_type),
                    )
                    .await;
            }
        }
    }
}

/// Records a lookup on the current `cache.configuration.get` span and in the
/// `ally.cache.lookups` metric. A Redis lookup that failed counts as a miss.
fn record_lookup(tier: CacheTier, hit: bool) {
    let span = tracing::Span::current();
    span.record("cache.tier", tier.as_str());
    span.record("cache.result", if hit { "hit" } else { "miss" });
    record_cache_lookup(tier, hit);
}

fn put_span(tier: CacheTier) -> tracing::Span {
    tracing::info_span!("cache.configuration.put", cache.tier = tier.as_str())
}

/// Returns `duration` in whole milliseconds, at least 1.
fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
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
    fn superseded_generation_is_miss() {
        let stored = format!("g1\n{}", encode(&Some(Arc::new(row(1)))));

        assert!(decode_current(&stored, Some("g1")).is_some());
        assert!(decode_current(&stored, Some("g2")).is_none());
        assert!(decode_current(&stored, None).is_none());
        assert!(decode_current("no generation", Some("g1")).is_none());
    }

    #[test]
    fn key_format() {
        assert_eq!(
            redis_key("t1", "llm.defaults"),
            "ally:config:{t1:llm.defaults}"
        );
        assert_eq!(
            generation_key("t1", "llm.defaults"),
            "ally:config:{t1:llm.defaults}:generation"
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
}
