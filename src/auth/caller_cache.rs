//! An in-memory cache of the rows that identify the caller of an RPC, so that most calls read
//! nothing from the database before their handler runs. It stores API keys that passed
//! verification for `auth.api_key_cache_ttl` and tenant rows for `auth.tenant_cache_ttl`.
//!
//! Only accepted keys are stored, with the owner's role at that time. The secret is still
//! compared with the stored hash and the expiry time with the clock on every call. Revoking a
//! key removes its entry, and changing a user's role or deactivating a user removes every key.
//! Updating a tenant (its plan, status, hosts, deletion) removes that tenant. Each removal runs
//! after its transaction commits. A fill records the cache's generation before it reads the
//! database and is dropped when a removal came in between, so a read that raced with a
//! revocation or a suspension cannot store the old row again.
//!
//! With `redis.url` set, every removal is also published on [`CHANNEL`], and each server
//! applies the removals of the others. A server that lost its subscription empties its cache
//! when it subscribes again, because it may have missed some. While Redis is unreachable, a
//! change made through another server applies here after at most the TTL.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::NaiveDateTime;
use futures_util::StreamExt;
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::mpsc;
use tracing::warn;

use super::Role;
use crate::cache::pubsub::{OutageLog, publish_loop, subscribe};
use crate::models::Tenant;

/// Redis channel of removals between servers.
pub const CHANNEL: &str = "ally:caller-cache-invalidations";
/// Maximum number of cached keys, and of cached tenants. When full, moka evicts the entries
/// least likely to be used.
const MAX_ENTRIES: u64 = 100_000;
/// Removals queued for Redis before new ones are dropped.
const PUBLISH_QUEUE: usize = 1024;
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

/// The entries that one removal takes out of the cache.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "forget", content = "id", rename_all = "snake_case")]
enum Removal {
    /// The API key with this public id.
    Key(String),
    /// Every API key.
    AllKeys,
    /// The tenant with this id.
    Tenant(String),
    /// Everything, after a gap in the removals received from other servers.
    All,
}

/// A removal as published on Redis.
#[derive(serde::Serialize, serde::Deserialize)]
struct Invalidation {
    origin: String,
    #[serde(flatten)]
    removal: Removal,
}

/// The cache of verified API keys and of tenant rows. Cheap to clone. A TTL of zero turns that
/// part of the cache off.
#[derive(Clone)]
pub struct CallerCache {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    keys: Option<moka::sync::Cache<String, Arc<CachedKey>>>,
    tenants: Option<moka::sync::Cache<String, Arc<Tenant>>>,
    /// Incremented by every removal, local or from another server.
    generation: AtomicU64,
    /// Random id of this cache, so it can recognise its own publications in Redis.
    origin: String,
    publications: Option<mpsc::Sender<(String, String)>>,
}

impl CallerCache {
    /// Creates a cache that keeps API keys for `key_ttl` and tenants for `tenant_ttl`, sharing
    /// removals through the Redis at `redis_url` when given. It does not connect yet, so Redis
    /// may be down at start. With Redis it must be created inside a Tokio runtime, because it
    /// starts its tasks.
    pub fn new(
        key_ttl: Duration,
        tenant_ttl: Duration,
        redis_url: Option<&SecretString>,
    ) -> Result<CallerCache, redis::RedisError> {
        if key_ttl.is_zero() && tenant_ttl.is_zero() {
            return Ok(CallerCache { inner: None });
        }
        let origin = uuid::Uuid::now_v7().to_string();
        let client = redis_url
            .map(|url| redis::Client::open(url.expose_secret()))
            .transpose()?;
        let outage = Arc::new(OutageLog::new(
            "Redis is unavailable; API key revocations and tenant changes reach other servers \
             only when their cache entries expire",
            "Redis is reachable again; sharing cache removals between servers",
        ));
        let publications = client.as_ref().map(|client| {
            let (sender, queue) = mpsc::channel(PUBLISH_QUEUE);
            tokio::spawn(publish_loop(client.clone(), queue, outage.clone()));
            sender
        });
        let inner = Arc::new(Inner {
            keys: bounded_cache(key_ttl),
            tenants: bounded_cache(tenant_ttl),
            generation: AtomicU64::new(0),
            origin,
            publications,
        });
        if let Some(client) = client {
            tokio::spawn(subscribe_loop(client, Arc::downgrade(&inner), outage));
        }
        Ok(CallerCache { inner: Some(inner) })
    }

    /// Creates a cache that stores nothing.
    pub fn disabled() -> CallerCache {
        CallerCache { inner: None }
    }

    /// Returns the current generation. Read it before loading a key or a tenant from the
    /// database and pass it to [`CallerCache::insert_key`] or [`CallerCache::insert_tenant`].
    pub fn generation(&self) -> u64 {
        self.inner
            .as_ref()
            .map_or(0, |inner| inner.generation.load(Ordering::SeqCst))
    }

    /// Returns the cached key with public id `key_id`.
    pub fn key(&self, key_id: &str) -> Option<Arc<CachedKey>> {
        self.inner.as_ref()?.keys.as_ref()?.get(key_id)
    }

    /// Stores `key` unless a removal happened since `generation` was read.
    pub fn insert_key(&self, generation: u64, key: CachedKey) {
        if let Some(inner) = &self.inner
            && let Some(keys) = &inner.keys
        {
            inner.insert(keys, generation, key.key_id.clone(), Arc::new(key));
        }
    }

    /// Returns the cached row of tenant `id`.
    pub fn tenant(&self, id: &str) -> Option<Arc<Tenant>> {
        self.inner.as_ref()?.tenants.as_ref()?.get(id)
    }

    /// Stores `tenant` unless a removal happened since `generation` was read.
    pub fn insert_tenant(&self, generation: u64, tenant: Arc<Tenant>) {
        if let Some(inner) = &self.inner
            && let Some(tenants) = &inner.tenants
        {
            inner.insert(tenants, generation, tenant.id.clone(), tenant);
        }
    }

    /// Removes one key, here and, through Redis, on the other servers. Call it after the
    /// transaction that revoked the key committed.
    pub fn forget_key(&self, key_id: &str) {
        self.forget(Removal::Key(key_id.to_string()));
    }

    /// Removes every key, here and on the other servers. Call it after a transaction that
    /// changed a user's role or active state committed.
    pub fn forget_all_keys(&self) {
        self.forget(Removal::AllKeys);
    }

    /// Removes one tenant, here and on the other servers. Call it after the transaction that
    /// changed the tenant committed.
    pub fn forget_tenant(&self, tenant_id: &str) {
        self.forget(Removal::Tenant(tenant_id.to_string()));
    }

    fn forget(&self, removal: Removal) {
        if let Some(inner) = &self.inner {
            inner.apply(&removal);
            inner.publish(removal);
        }
    }
}

fn bounded_cache<V: Send + Sync + 'static>(
    ttl: Duration,
) -> Option<moka::sync::Cache<String, Arc<V>>> {
    (!ttl.is_zero()).then(|| {
        moka::sync::Cache::builder()
            .max_capacity(MAX_ENTRIES)
            .time_to_live(ttl)
            .build()
    })
}

impl Inner {
    fn insert<V: Send + Sync + 'static>(
        &self,
        cache: &moka::sync::Cache<String, Arc<V>>,
        generation: u64,
        id: String,
        value: Arc<V>,
    ) {
        cache.insert(id.clone(), value);
        // A removal that ran during the insert may have missed the new entry, so check the
        // generation after inserting and take the entry out again.
        if self.generation.load(Ordering::SeqCst) != generation {
            cache.invalidate(&id);
        }
    }

    fn apply(&self, removal: &Removal) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        let forget_keys = |key_id: Option<&str>| {
            if let Some(keys) = &self.keys {
                match key_id {
                    Some(key_id) => keys.invalidate(key_id),
                    None => keys.invalidate_all(),
                }
            }
        };
        let forget_tenants = |tenant_id: Option<&str>| {
            if let Some(tenants) = &self.tenants {
                match tenant_id {
                    Some(tenant_id) => tenants.invalidate(tenant_id),
                    None => tenants.invalidate_all(),
                }
            }
        };
        match removal {
            Removal::Key(key_id) => forget_keys(Some(key_id)),
            Removal::AllKeys => forget_keys(None),
            Removal::Tenant(tenant_id) => forget_tenants(Some(tenant_id)),
            Removal::All => {
                forget_keys(None);
                forget_tenants(None);
            }
        }
    }

    fn publish(&self, removal: Removal) {
        let Some(publications) = &self.publications else {
            return;
        };
        let payload = serde_json::to_string(&Invalidation {
            origin: self.origin.clone(),
            removal,
        })
        .unwrap_or_default();
        if publications
            .try_send((CHANNEL.to_string(), payload))
            .is_err()
        {
            warn!(
                "the queue of cache removals to publish is full; other servers apply the \
                 dropped ones when their entries expire"
            );
        }
    }
}

/// Applies the other servers' removals until the cache is dropped.
async fn subscribe_loop(
    client: redis::Client,
    inner: std::sync::Weak<Inner>,
    outage: Arc<OutageLog>,
) {
    let mut delay = Duration::from_millis(100);
    loop {
        match subscribe(&client, CHANNEL).await {
            Ok(pubsub) => {
                outage.recovered();
                delay = Duration::from_millis(100);
                // Removals published while this server was not subscribed are lost.
                match inner.upgrade() {
                    Some(inner) => inner.apply(&Removal::All),
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
                            "ignoring a malformed cache removal from Redis"
                        );
                        continue;
                    };
                    if invalidation.origin != inner.origin {
                        inner.apply(&invalidation.removal);
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
        let cache =
            CallerCache::new(Duration::from_secs(60), Duration::from_secs(60), None).unwrap();

        cache.insert_key(cache.generation(), key("ak1"));

        assert_eq!(cache.key("ak1").unwrap().id, "row-ak1");
        assert!(cache.key("ak2").is_none());
    }

    #[tokio::test]
    async fn forget_key_removes_one() {
        let cache =
            CallerCache::new(Duration::from_secs(60), Duration::from_secs(60), None).unwrap();
        cache.insert_key(cache.generation(), key("ak1"));
        cache.insert_key(cache.generation(), key("ak2"));

        cache.forget_key("ak1");

        assert!(cache.key("ak1").is_none());
        assert!(cache.key("ak2").is_some());
    }

    #[tokio::test]
    async fn forget_all_removes_every_key() {
        let cache =
            CallerCache::new(Duration::from_secs(60), Duration::from_secs(60), None).unwrap();
        cache.insert_key(cache.generation(), key("ak1"));
        cache.insert_key(cache.generation(), key("ak2"));

        cache.forget_all_keys();

        assert!(cache.key("ak1").is_none());
        assert!(cache.key("ak2").is_none());
    }

    #[tokio::test]
    async fn fill_after_invalidation_dropped() {
        let cache =
            CallerCache::new(Duration::from_secs(60), Duration::from_secs(60), None).unwrap();
        let before_read = cache.generation();

        cache.forget_key("ak1");
        cache.insert_key(before_read, key("ak1"));

        assert!(cache.key("ak1").is_none());
    }

    #[tokio::test]
    async fn entries_expire() {
        let cache =
            CallerCache::new(Duration::from_millis(50), Duration::from_millis(50), None).unwrap();
        cache.insert_key(cache.generation(), key("ak1"));

        tokio::time::sleep(Duration::from_millis(120)).await;

        assert!(cache.key("ak1").is_none());
    }

    #[test]
    fn zero_ttl_stores_nothing() {
        let cache = CallerCache::new(Duration::ZERO, Duration::ZERO, None).unwrap();

        cache.insert_key(cache.generation(), key("ak1"));

        assert!(cache.key("ak1").is_none());
    }

    fn tenant(id: &str) -> Tenant {
        let now = chrono::Utc::now().naive_utc();
        Tenant {
            id: id.into(),
            name: "Acme".into(),
            domain: None,
            subdomain: Some("acme".into()),
            plan: "free".into(),
            status: "active".into(),
            suspended_reason: None,
            settings: "{}".into(),
            version: 1,
            subscription_expires_at: None,
            created_at: now,
            updated_at: now,
            deleted_at: None,
        }
    }

    fn both_cached() -> CallerCache {
        let cache =
            CallerCache::new(Duration::from_secs(60), Duration::from_secs(60), None).unwrap();
        cache.insert_key(cache.generation(), key("ak1"));
        cache.insert_tenant(cache.generation(), Arc::new(tenant("t1")));
        cache.insert_tenant(cache.generation(), Arc::new(tenant("t2")));
        cache
    }

    #[tokio::test]
    async fn forget_tenant_removes_only_that_tenant() {
        let cache = both_cached();

        cache.forget_tenant("t1");

        assert!(cache.tenant("t1").is_none());
        assert_eq!(cache.tenant("t2").unwrap().id, "t2");
        assert!(cache.key("ak1").is_some());
    }

    #[tokio::test]
    async fn forget_all_keys_keeps_tenants() {
        let cache = both_cached();

        cache.forget_all_keys();

        assert!(cache.key("ak1").is_none());
        assert!(cache.tenant("t1").is_some());
    }

    #[tokio::test]
    async fn tenant_fill_after_removal_dropped() {
        let cache =
            CallerCache::new(Duration::from_secs(60), Duration::from_secs(60), None).unwrap();
        let before_read = cache.generation();

        cache.forget_tenant("t1");
        cache.insert_tenant(before_read, Arc::new(tenant("t1")));

        assert!(cache.tenant("t1").is_none());
    }

    #[tokio::test]
    async fn each_part_has_its_own_ttl() {
        let cache = CallerCache::new(Duration::from_secs(60), Duration::ZERO, None).unwrap();

        cache.insert_key(cache.generation(), key("ak1"));
        cache.insert_tenant(cache.generation(), Arc::new(tenant("t1")));

        assert!(cache.key("ak1").is_some());
        assert!(cache.tenant("t1").is_none());
    }

    #[test]
    fn removal_wire_format() {
        let encoded = |removal: Removal| {
            serde_json::to_string(&Invalidation {
                origin: "o".into(),
                removal,
            })
            .unwrap()
        };

        assert_eq!(
            encoded(Removal::Tenant("t1".into())),
            r#"{"origin":"o","forget":"tenant","id":"t1"}"#
        );
        assert_eq!(
            encoded(Removal::AllKeys),
            r#"{"origin":"o","forget":"all_keys"}"#
        );
        let decoded: Invalidation =
            serde_json::from_str(r#"{"origin":"o","forget":"key","id":"ak1"}"#).unwrap();
        assert_eq!(decoded.removal, Removal::Key("ak1".into()));
    }
}
