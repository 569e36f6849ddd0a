//! Caches in front of the database.
//!
//! [`ConfigCache`] keeps active configuration versions in this process's memory and, when
//! `redis.url` is set, in Redis, which also carries invalidation messages between servers.

mod config;
mod redis_link;

pub use self::config::{CachedConfiguration, ConfigCache, INVALIDATION_CHANNEL, redis_key};
pub use self::redis_link::{InvalidRedisUrl, RedisLink, ScriptError};
