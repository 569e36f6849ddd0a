//! API keys that passed verification, kept in memory for `auth.api_key_cache_ttl` so that a call
//! with a known key reads nothing from the database to identify its caller.
//!
//! Only accepted keys are stored, with the owner's role at that time. The secret is still
//! compared with the stored hash and the expiry time with the clock on every call. Revoking a
//! key removes its entry, and changing a user's role or deactivating a user empties the cache,
//! each after its transaction commits. A fill records the cache's generation before it reads the
//! database and is dropped when an invalidation came in between, so a read that raced with a
//! revocation cannot store the key again.
//!
//! With `redis.url` set, every invalidation is also published on [`CHANNEL`], and each server
//! applies the invalidations of the others. A server that lost its subscription empties its
//! cache when it subscribes again, because it may have missed some. While Redis is unreachable,
//! a change made through another server applies here after at most the TTL.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use chrono::NaiveDateTime;
use futures_util::StreamExt;
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::Role;

/// Redis channel of invalidations between servers.
pub const CHANNEL: &str = "ally:api-key-invalidations";
/// Maximum number of cached keys. When full, moka evicts the entries least likely to be used.
const MAX_ENTRIES: u64 = 100_000;
/// Invalidations queued for Redis before new ones are dropped.
const PUBLISH_QUEUE: usize = 1024;
/// Limit for connecting to Redis and for one command.
const REDIS_TIMEOUT: Duration = Duration::from_secs(2);
/// Maximum pause between attempts to subscribe again after Redis went away.
const MAX_RESUBSCRIBE_DELAY: Duration = Duration::from_secs(5);

/// The fields of an accepted key and its owner that a call needs.
#[derive(Clone, Debug)]
pub struct CachedKey {
    pub tenant_id: String,
    /// Row id of the key.
    pub id: String,
    pub key_id: String,
    pub key_hash: String,
    pub user_id: String,
    pub role: Role,
    pub scopes: Vec<String>,
    pub expires_at: Option<NaiveDateTime>,
}

/// An invalidation as published on Redis: one key, or every key when `key_id` is `None`.
#[derive(serde::Serialize, serde::Deserialize)]
struct Invalidation {
    origin: String,
    key_id: Option<String>,
}

/// The cache of verified API keys. Cheap to clone; a cache built with a TTL of zero stores
/// nothing.
#[derive(Clone)]
pub struct ApiKeyCache {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    entries: moka::sync::Cache<String, Arc<CachedKey>>,
    /// Incremented by every invalidation, local or from another server.
    generation: AtomicU64,
    /// Random id of this cache, so it can recognise its own publications in Redis.
    origin: String,
    publications: Option<mpsc::Sender<String>>,
}

impl ApiKeyCache {
    /// Creates a cache whose entries live `ttl`, sharing invalidations through the Redis at
    /// `redis_url` when given. It does not connect yet, so Redis may be down at start. With
    /// Redis it must be created inside a Tokio runtime, because it starts its tasks.
    pub fn new(
        ttl: Duration,
        redis_url: Option<&SecretString>,
    ) -> Result<ApiKeyCache, redis::RedisError> {
        if ttl.is_zero() {
            return Ok(ApiKeyCache { inner: None });
        }
        let origin = uuid::Uuid::now_v7().to_string();
        let client = redis_url
            .map(|url| redis::Client::open(url.expose_secret()))
            .transpose()?;
        let outage = Arc::new(OutageLog::default());
        let publications = client.as_ref().map(|client| {
            let (sender, queue) = mpsc::channel(PUBLISH_QUEUE);
            tokio::spawn(publish_loop(client.clone(), queue, outage.clone()));
            sender
        });
        let inner = Arc::new(Inner {
            entries: moka::sync::Cache::builder()
                .max_capacity(MAX_ENTRIES)
                .time_to_live(ttl)
                .build(),
            generation: AtomicU64::new(0),
            origin,
            publications,
        });
        if let Some(client) = client {
            tokio::spawn(subscribe_loop(client, Arc::downgrade(&inner), outage));
        }
        Ok(ApiKeyCache { inner: Some(inner) })
    }

    /// Creates a cache that stores nothing.
    pub fn disabled() -> ApiKeyCache {
        ApiKeyCache { inner: None }
    }

    /// Returns the cached key with public id `key_id`.
    pub fn get(&self, key_id: &str) -> Option<Arc<CachedKey>> {
        self.inner.as_ref()?.entries.get(key_id)
    }

    /// Returns the current generation. Read it before loading a key from the database and pass
    /// it to [`ApiKeyCache::insert`].
    pub fn generation(&self) -> u64 {
        self.inner
            .as_ref()
            .map_or(0, |inner| inner.generation.load(Ordering::SeqCst))
    }

    /// Stores `key` unless an invalidation happened since `generation` was read.
    pub fn insert(&self, generation: u64, key: CachedKey) {
        let Some(inner) = &self.inner else {
            return;
        };
        let key_id = key.key_id.clone();
        inner.entries.insert(key_id.clone(), Arc::new(key));
        // An invalidation that ran during the insert may have missed the new entry, so check
        // the generation after inserting and take the entry out again.
        if inner.generation.load(Ordering::SeqCst) != generation {
            inner.entries.invalidate(&key_id);
        }
    }

    /// Removes one key, here and, through Redis, on the other servers. Call it after the
    /// transaction that revoked the key committed.
    pub fn forget_key(&self, key_id: &str) {
        if let Some(inner) = &self.inner {
            inner.apply(Some(key_id));
            inner.publish(Some(key_id));
        }
    }

    /// Removes every key, here and on the other servers. Call it after a transaction that
    /// changed a user's role or active state committed.
    pub fn forget_all(&self) {
        if let Some(inner) = &self.inner {
            inner.apply(None);
            inner.publish(None);
        }
    }
}

impl Inner {
    fn apply(&self, key_id: Option<&str>) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        match key_id {
            Some(key_id) => self.entries.invalidate(key_id),
            None => self.entries.invalidate_all(),
        }
    }

    fn publish(&self, key_id: Option<&str>) {
        let Some(publications) = &self.publications else {
            return;
        };
        let payload = serde_json::to_string(&Invalidation {
            origin: self.origin.clone(),
            key_id: key_id.map(str::to_string),
        })
        .unwrap_or_default();
        if publications.try_send(payload).is_err() {
            warn!(
                "the queue of API key invalidations to publish is full; other servers apply \
                 the dropped ones when their entries expire"
            );
        }
    }
}

/// Logs the first failure of an outage and the recovery once.
#[derive(Default)]
struct OutageLog {
    down: AtomicBool,
}

impl OutageLog {
    fn failed(&self, error: &str) {
        if !self.down.swap(true, Ordering::SeqCst) {
            warn!(
                error,
                "Redis is unavailable; API key revocations reach other servers only when their \
                 cache entries expire"
            );
        }
    }

    fn recovered(&self) {
        if self.down.swap(false, Ordering::SeqCst) {
            info!("Redis is reachable again; sharing API key invalidations between servers");
        }
    }
}

async fn publish_loop(
    client: redis::Client,
    mut queue: mpsc::Receiver<String>,
    outage: Arc<OutageLog>,
) {
    let mut connection: Option<redis::aio::ConnectionManager> = None;
    while let Some(payload) = queue.recv().await {
        if connection.is_none() {
            let config = redis::aio::ConnectionManagerConfig::new()
                .set_connection_timeout(Some(REDIS_TIMEOUT))
                .set_response_timeout(Some(REDIS_TIMEOUT))
                .set_number_of_retries(1);
            match client.get_connection_manager_with_config(config).await {
                Ok(manager) => connection = Some(manager),
                Err(error) => {
                    outage.failed(&error.to_string());
                    continue;
                }
            }
        }
        let Some(manager) = connection.as_mut() else {
            continue;
        };
        let published = redis::cmd("PUBLISH")
            .arg(CHANNEL)
            .arg(&payload)
            .query_async::<i64>(manager)
            .await;
        match published {
            Ok(_) => outage.recovered(),
            Err(error) => {
                outage.failed(&error.to_string());
                connection = None;
            }
        }
    }
}

/// Applies the other servers' invalidations until the cache is dropped.
async fn subscribe_loop(
    client: redis::Client,
    inner: std::sync::Weak<Inner>,
    outage: Arc<OutageLog>,
) {
    let mut delay = Duration::from_millis(100);
    loop {
        match subscribe(&client).await {
            Ok(pubsub) => {
                outage.recovered();
                delay = Duration::from_millis(100);
                // Invalidations published while this server was not subscribed are lost.
                match inner.upgrade() {
                    Some(inner) => inner.apply(None),
                    None => return,
                }
                let mut messages = pubsub.into_on_message();
                while let Some(message) = messages.next().await {
                    let Some(inner) = inner.upgrade() else {
                        return;
                    };
                    let Ok(payload) = message.get_payload::<String>() else {
                        continue;
                    };
                    let Ok(invalidation) = serde_json::from_str::<Invalidation>(&payload) else {
                        warn!(
                            channel = CHANNEL,
                            "ignoring a malformed invalidation from Redis"
                        );
                        continue;
                    };
                    if invalidation.origin != inner.origin {
                        inner.apply(invalidation.key_id.as_deref());
                    }
                }
                outage.failed("the Redis subscription connection closed");
            }
            Err(error) => outage.failed(&error),
        }
        if inner.strong_count() == 0 {
            return;
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(MAX_RESUBSCRIBE_DELAY);
    }
}

async fn subscribe(client: &redis::Client) -> Result<redis::aio::PubSub, String> {
    let attempt = async {
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(CHANNEL).await?;
        Ok::<_, redis::RedisError>(pubsub)
    };
    match tokio::time::timeout(REDIS_TIMEOUT, attempt).await {
        Ok(Ok(pubsub)) => Ok(pubsub),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err(format!(
            "subscribing to Redis timed out after {REDIS_TIMEOUT:?}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(key_id: &str) -> CachedKey {
        CachedKey {
            tenant_id: "t1".into(),
            id: format!("row-{key_id}"),
            key_id: key_id.into(),
            key_hash: "hash".into(),
            user_id: "u1".into(),
            role: Role::Admin,
            scopes: Vec::new(),
            expires_at: None,
        }
    }

    #[tokio::test]
    async fn stored_key_found() {
        let cache = ApiKeyCache::new(Duration::from_secs(60), None).unwrap();

        cache.insert(cache.generation(), key("ak1"));

        assert_eq!(cache.get("ak1").unwrap().id, "row-ak1");
        assert!(cache.get("ak2").is_none());
    }

    #[tokio::test]
    async fn forget_key_removes_one() {
        let cache = ApiKeyCache::new(Duration::from_secs(60), None).unwrap();
        cache.insert(cache.generation(), key("ak1"));
        cache.insert(cache.generation(), key("ak2"));

        cache.forget_key("ak1");

        assert!(cache.get("ak1").is_none());
        assert!(cache.get("ak2").is_some());
    }

    #[tokio::test]
    async fn forget_all_removes_every_key() {
        let cache = ApiKeyCache::new(Duration::from_secs(60), None).unwrap();
        cache.insert(cache.generation(), key("ak1"));
        cache.insert(cache.generation(), key("ak2"));

        cache.forget_all();

        assert!(cache.get("ak1").is_none());
        assert!(cache.get("ak2").is_none());
    }

    #[tokio::test]
    async fn fill_after_invalidation_dropped() {
        let cache = ApiKeyCache::new(Duration::from_secs(60), None).unwrap();
        let before_read = cache.generation();

        cache.forget_key("ak1");
        cache.insert(before_read, key("ak1"));

        assert!(cache.get("ak1").is_none());
    }

    #[tokio::test]
    async fn entries_expire() {
        let cache = ApiKeyCache::new(Duration::from_millis(50), None).unwrap();
        cache.insert(cache.generation(), key("ak1"));

        tokio::time::sleep(Duration::from_millis(120)).await;

        assert!(cache.get("ak1").is_none());
    }

    #[test]
    fn zero_ttl_stores_nothing() {
        let cache = ApiKeyCache::new(Duration::ZERO, None).unwrap();

        cache.insert(cache.generation(), key("ak1"));

        assert!(cache.get("ak1").is_none());
    }
}
