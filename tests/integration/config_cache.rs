//! The Redis-backed configuration cache against a private Redis: a server that read the
//! database before another server's write committed cannot store the superseded row after it.

use std::time::Duration;

use ally::cache::{ConfigCache, RedisLink, generation_key, redis_key};
use ally::models::Configuration;
use redis::AsyncCommands;

use crate::common::private_redis::PrivateRedis;

fn row(version: i32) -> Configuration {
    let now = chrono::Utc::now().naive_utc();
    Configuration {
        tenant_id: "tenant-a".into(),
        id: format!("row-{version}"),
        config_type: "llm.defaults".into(),
        value: format!(r#"{{"v":{version}}}"#),
        version,
        is_active: true,
        description: None,
        created_by: None,
        created_at: now,
        updated_at: now,
        deleted_at: None,
    }
}

fn cache(redis: &PrivateRedis) -> ConfigCache {
    let link = RedisLink::new(&redis.url()).expect("Redis URL");
    ConfigCache::new(Duration::from_secs(60), Some(link))
}

async fn version(cache: &ConfigCache, loaded: i32) -> Option<i32> {
    cache
        .get_or_load("tenant-a", "llm.defaults", async move {
            Ok::<_, ()>(Some(row(loaded)))
        })
        .await
        .expect("lookup")
        .map(|row| row.version)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_entry_serves_both_servers() {
    let redis = PrivateRedis::start();
    let first = cache(&redis);
    let second = cache(&redis);

    assert_eq!(version(&first, 1).await, Some(1));
    // The second server finds the first one's entry and never calls its loader.
    assert_eq!(version(&second, 99).await, Some(1));
    second.invalidate("tenant-a", "llm.defaults").await;
    assert_eq!(version(&first, 2).await, Some(2));
    assert_eq!(version(&second, 99).await, Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fill_after_write_is_refused() {
    let redis = PrivateRedis::start();
    let reader = cache(&redis);
    let writer = cache(&redis);

    // The reader misses, and while its database query runs, the writer's change commits and
    // invalidates. The reader still returns what it read, but must not store it.
    let racing = writer.clone();
    let stale = reader
        .get_or_load("tenant-a", "llm.defaults", async move {
            racing.invalidate("tenant-a", "llm.defaults").await;
            Ok::<_, ()>(Some(row(1)))
        })
        .await
        .expect("lookup");
    assert_eq!(stale.map(|row| row.version), Some(1));

    let mut connection = redis.connection().await;
    let stored: Option<String> = connection
        .get(redis_key("tenant-a", "llm.defaults"))
        .await
        .expect("GET");
    assert_eq!(stored, None, "the superseded row was stored");
    let generation: Option<String> = connection
        .get(generation_key("tenant-a", "llm.defaults"))
        .await
        .expect("GET");
    assert!(generation.is_some(), "the write left a generation");
    assert_eq!(version(&reader, 2).await, Some(2));
    assert_eq!(version(&writer, 99).await, Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_expire_with_ttl() {
    let redis = PrivateRedis::start();
    let link = RedisLink::new(&redis.url()).expect("Redis URL");
    let cache = ConfigCache::new(Duration::from_millis(300), Some(link));

    assert_eq!(version(&cache, 1).await, Some(1));
    let mut connection = redis.connection().await;
    let value_ttl: i64 = connection
        .pttl(redis_key("tenant-a", "llm.defaults"))
        .await
        .expect("PTTL");
    let generation_ttl: i64 = connection
        .pttl(generation_key("tenant-a", "llm.defaults"))
        .await
        .expect("PTTL");
    assert!((1..=300).contains(&value_ttl), "value TTL {value_ttl} ms");
    assert!(
        generation_ttl > value_ttl,
        "generation TTL {generation_ttl} ms is not longer than the value's {value_ttl} ms"
    );

    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(version(&cache, 2).await, Some(2));
}
