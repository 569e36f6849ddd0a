//! Caches in front of the database.
//!
//! [`ConfigCache`] keeps active configuration versions in this process's memory, or in Redis
//! when `redis.url` is set so that every server reads the same entries.

mod config;
pub mod pubsub;
mod redis_link;

pub use self::config::{CachedConfiguration, ConfigCache, generation_key, redis_key};
pub use self::redis_link::{InvalidRedisUrl, RedisLink, ScriptError};
