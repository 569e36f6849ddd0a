//! The shared Redis tier of the caches: commands through a [`ConnectionManager`].
//!
//! Redis is optional and may fail at any time. Every command runs with a short time limit, and a
//! failure only makes the caller fall back to the database. The log gets one warning when Redis
//! becomes unreachable and one message when it is reachable again, not one line per failed call.

use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, RedisError};
use tracing::{debug, info, warn};

/// Time limit of one command, connecting included.
const COMMAND_TIMEOUT: Duration = Duration::from_millis(500);
/// Time limit of one connection attempt.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(300);
/// After a failed command, reads skip Redis for this long, so that an unreachable Redis does
/// not add a time-out to every read. Writes always try, because their invalidations matter more.
const READ_PAUSE: Duration = Duration::from_secs(1);
/// A Redis URL that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("invalid setting `redis.url`: {reason}")]
pub struct InvalidRedisUrl {
    reason: String,
}

/// A failed [`RedisLink::invoke_script`] call.
#[derive(Debug, thiserror::Error)]
pub enum ScriptError {
    #[error(transparent)]
    Redis(RedisError),
    #[error("timed out after {0:?}")]
    TimedOut(Duration),
}

/// Connections to one Redis server, shared by every clone.
#[derive(Clone)]
pub struct RedisLink {
    commands: ConnectionManager,
    health: std::sync::Arc<Health>,
}

/// Outcome of the last Redis command, kept to log each outage once.
struct Health {
    reachable: AtomicBool,
    /// When reads may use Redis again after a failure.
    read_pause_until: Mutex<Option<Instant>>,
}

impl Health {
    fn new() -> Health {
        Health {
            reachable: AtomicBool::new(true),
            read_pause_until: Mutex::new(None),
        }
    }

    /// Records a failed command. Returns whether it started an outage, which is then logged.
    fn failed(&self, operation: &str, error: &dyn std::fmt::Display) -> bool {
        *self
            .read_pause_until
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(Instant::now() + READ_PAUSE);
        let started = self.reachable.swap(false, Ordering::SeqCst);
        if started {
            warn!(
                error = %error,
                operation,
                "Redis is unreachable; configuration reads use the database until it is back"
            );
        } else {
            debug!(error = %error, operation, "Redis is still unreachable");
        }
        started
    }

    /// Records a successful command. Returns whether it ended an outage, which is then logged.
    fn succeeded(&self) -> bool {
        let ended = !self.reachable.swap(true, Ordering::SeqCst);
        if ended {
            info!("Redis is reachable again");
        }
        ended
    }

    fn reads_paused(&self) -> bool {
        let pause = self
            .read_pause_until
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        pause.is_some_and(|until| Instant::now() < until)
    }
}

impl RedisLink {
    /// Prepares connections to `url` without opening them, so the server starts even when
    /// Redis is down.
    pub fn new(url: &str) -> Result<RedisLink, InvalidRedisUrl> {
        // The URL parse errors of redis 1.8 name the problem but never echo the URL, so a
        // password in it stays out of the message.
        let client = Client::open(url).map_err(|error| InvalidRedisUrl {
            reason: error.to_string(),
        })?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(COMMAND_TIMEOUT))
            .set_number_of_retries(1);
        let commands =
            ConnectionManager::new_lazy_with_config(client, config).map_err(|error| {
                InvalidRedisUrl {
                    reason: error.to_string(),
                }
            })?;
        Ok(RedisLink {
            commands,
            health: std::sync::Arc::new(Health::new()),
        })
    }

    /// Runs one command with the time limit and records the outcome.
    async fn run<T, F>(&self, operation: &'static str, command: F) -> Option<T>
    where
        F: Future<Output = Result<T, RedisError>>,
    {
        match tokio::time::timeout(COMMAND_TIMEOUT, command).await {
            Ok(Ok(value)) => {
                self.health.succeeded();
                Some(value)
            }
            Ok(Err(error)) => {
                self.health.failed(operation, &error);
                None
            }
            Err(_) => {
                self.health
                    .failed(operation, &format!("timed out after {COMMAND_TIMEOUT:?}"));
                None
            }
        }
    }

    /// Reads two keys in one round trip. Returns `None` when Redis fails and while reads are
    /// paused after a failure.
    pub async fn get_pair(
        &self,
        first: &str,
        second: &str,
    ) -> Option<(Option<String>, Option<String>)> {
        if self.health.reads_paused() {
            return None;
        }
        let mut connection = self.commands.clone();
        self.run("MGET", async move {
            redis::cmd("MGET")
                .arg(first)
                .arg(second)
                .query_async::<(Option<String>, Option<String>)>(&mut connection)
                .await
        })
        .await
    }

    /// Runs a Lua script by its SHA-1, loading it first when Redis does not know it, and
    /// records the outcome in the cache's outage state. Returns the script's integer result,
    /// or `None` when Redis fails.
    pub async fn run_script(
        &self,
        script: &redis::Script,
        keys: &[&str],
        args: &[&str],
    ) -> Option<i64> {
        let mut invocation = script.prepare_invoke();
        for key in keys {
            invocation.key(*key);
        }
        for arg in args {
            invocation.arg(*arg);
        }
        match self.invoke_script::<i64>(&invocation).await {
            Ok(value) => {
                self.health.succeeded();
                Some(value)
            }
            Err(error) => {
                self.health.failed("EVALSHA", &error);
                None
            }
        }
    }

    /// Sets `key` to `value` for `ttl` (whole milliseconds, at least 1) and deletes `delete`
    /// in one MULTI/EXEC transaction. Returns whether Redis applied both.
    pub async fn replace_and_delete(
        &self,
        key: &str,
        value: &str,
        ttl: Duration,
        delete: &str,
    ) -> bool {
        let millis = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let mut pipeline = redis::pipe();
        pipeline
            .atomic()
            .cmd("SET")
            .arg(key)
            .arg(value)
            .arg("PX")
            .arg(millis)
            .ignore()
            .del(delete)
            .ignore();
        let mut connection = self.commands.clone();
        self.run("SET and DEL", async move {
            pipeline.query_async::<()>(&mut connection).await
        })
        .await
        .is_some()
    }

    /// Runs a Lua script with the command time limit. The outcome is not recorded in the
    /// cache's outage state, so a caller that logs outages in its own words uses this one.
    pub async fn invoke_script<T>(
        &self,
        invocation: &redis::ScriptInvocation<'_>,
    ) -> Result<T, ScriptError>
    where
        T: redis::FromRedisValue,
    {
        let mut connection = self.commands.clone();
        match tokio::time::timeout(COMMAND_TIMEOUT, invocation.invoke_async(&mut connection)).await
        {
            Ok(result) => result.map_err(ScriptError::Redis),
            Err(_) => Err(ScriptError::TimedOut(COMMAND_TIMEOUT)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outage_logged_once() {
        let health = Health::new();

        let first = health.failed("GET", &"connection refused");
        let second = health.failed("GET", &"connection refused");
        let recovered = health.succeeded();
        let still_up = health.succeeded();
        let next_outage = health.failed("SET", &"timed out");

        assert!(first);
        assert!(!second);
        assert!(recovered);
        assert!(!still_up);
        assert!(next_outage);
    }

    #[test]
    fn reads_paused_after_failure() {
        let health = Health::new();
        assert!(!health.reads_paused());

        health.failed("GET", &"connection refused");

        assert!(health.reads_paused());
    }

    #[tokio::test]
    async fn url_checked_without_connecting() {
        assert!(RedisLink::new("redis://127.0.0.1:1").is_ok());
        assert!(RedisLink::new("not a url").is_err());
    }
}
