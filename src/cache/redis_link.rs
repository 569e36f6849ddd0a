//! The shared Redis tier of the caches: plain commands through a [`ConnectionManager`] and a
//! separate pub/sub connection that receives invalidation messages.
//!
//! Redis is optional and may fail at any time. Every command runs with a short time limit, and a
//! failure only makes the caller fall back to the database. The log gets one warning when Redis
//! becomes unreachable and one message when it is reachable again, not one line per failed call.

use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, Client, RedisError};
use tokio::sync::watch;
use tracing::{debug, info, warn};

/// Time limit of one command, connecting included.
const COMMAND_TIMEOUT: Duration = Duration::from_millis(500);
/// Time limit of one connection attempt.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(300);
/// After a failed command, reads skip Redis for this long, so that an unreachable Redis does
/// not add a time-out to every read. Writes always try, because their invalidations matter more.
const READ_PAUSE: Duration = Duration::from_secs(1);
/// First and largest wait between attempts to reopen the pub/sub connection.
const SUBSCRIBE_BACKOFF_MIN: Duration = Duration::from_millis(100);
const SUBSCRIBE_BACKOFF_MAX: Duration = Duration::from_secs(2);

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
    client: Client,
    commands: ConnectionManager,
    health: std::sync::Arc<Health>,
}

/// Outcome of the last Redis command, kept to log each outage once.
struct Health {
    reachable: AtomicBool,
    /// When reads may use Redis again after a failure.
    read_pause_until: Mutex<Option<Instant>>,
    /// Whether the pub/sub connection is subscribed right now.
    subscribed: AtomicBool,
}

impl Health {
    fn new() -> Health {
        Health {
            reachable: AtomicBool::new(true),
            read_pause_until: Mutex::new(None),
            subscribed: AtomicBool::new(false),
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
            ConnectionManager::new_lazy_with_config(client.clone(), config).map_err(|error| {
                InvalidRedisUrl {
                    reason: error.to_string(),
                }
            })?;
        Ok(RedisLink {
            client,
            commands,
            health: std::sync::Arc::new(Health::new()),
        })
    }

    /// Returns whether the subscriber currently receives invalidation messages.
    pub fn is_subscribed(&self) -> bool {
        self.health.subscribed.load(Ordering::SeqCst)
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

    /// Reads `key`. Returns `None` when it is missing, when Redis fails, and while reads are
    /// paused after a failure.
    pub async fn get(&self, key: &str) -> Option<String> {
        if self.health.reads_paused() {
            return None;
        }
        let mut connection = self.commands.clone();
        self.run("GET", async move {
            connection.get::<_, Option<String>>(key).await
        })
        .await
        .flatten()
    }

    /// Stores `value` under `key` for `ttl`, rounded to whole milliseconds and at least 1 ms.
    pub async fn set(&self, key: &str, value: &str, ttl: Duration) {
        if self.health.reads_paused() {
            return;
        }
        let millis = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let mut connection = self.commands.clone();
        self.run("SET", async move {
            redis::cmd("SET")
                .arg(key)
                .arg(value)
                .arg("PX")
                .arg(millis)
                .query_async::<()>(&mut connection)
                .await
        })
        .await;
    }

    /// Deletes `key`.
    pub async fn delete(&self, key: &str) {
        let mut connection = self.commands.clone();
        self.run("DEL", async move { connection.del::<_, ()>(key).await })
            .await;
    }

    /// Deletes `key` and publishes `message` on `channel` in one round trip. Returns whether
    /// Redis accepted both.
    pub async fn delete_and_publish(&self, key: &str, channel: &str, message: &str) -> bool {
        let mut connection = self.commands.clone();
        let mut pipeline = redis::pipe();
        pipeline
            .del(key)
            .ignore()
            .publish(channel, message)
            .ignore();
        self.run("DEL and PUBLISH", async move {
            pipeline.query_async::<()>(&mut connection).await
        })
        .await
        .is_some()
    }

    /// Runs a Lua script with the command time limit. The outcome is not recorded in the
    /// cache's outage state, because the caller logs outages in its own words.
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

    /// Subscribes to `channel` and calls `on_message` with each payload until `stop` turns
    /// true. `on_subscribed` runs after every successful (re)subscription, because messages
    /// sent while the connection was down are lost. A lost connection is reopened with
    /// exponential backoff.
    pub async fn run_subscriber(
        &self,
        channel: &str,
        on_subscribed: impl Fn() + Send,
        on_message: impl Fn(&str) + Send,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut backoff = SUBSCRIBE_BACKOFF_MIN;
        loop {
            if *stop.borrow() {
                break;
            }
            let opened = tokio::time::timeout(COMMAND_TIMEOUT, async {
                let mut pubsub = self.client.get_async_pubsub().await?;
                pubsub.subscribe(channel).await?;
                Ok::<_, RedisError>(pubsub)
            })
            .await;
            let pubsub = match opened {
                Ok(Ok(pubsub)) => pubsub,
                Ok(Err(error)) => {
                    self.health.failed("SUBSCRIBE", &error);
                    if wait_or_stop(&mut stop, backoff).await {
                        break;
                    }
                    backoff = (backoff * 2).min(SUBSCRIBE_BACKOFF_MAX);
                    continue;
                }
                Err(_) => {
                    self.health
                        .failed("SUBSCRIBE", &format!("timed out after {COMMAND_TIMEOUT:?}"));
                    if wait_or_stop(&mut stop, backoff).await {
                        break;
                    }
                    backoff = (backoff * 2).min(SUBSCRIBE_BACKOFF_MAX);
                    continue;
                }
            };
            self.health.succeeded();
            self.health.subscribed.store(true, Ordering::SeqCst);
            on_subscribed();
            debug!(channel, "subscribed to cache invalidations");
            backoff = SUBSCRIBE_BACKOFF_MIN;

            let mut messages = pubsub.into_on_message();
            let stopped = loop {
                tokio::select! {
                    message = messages.next() => match message {
                        Some(message) => match message.get_payload::<String>() {
                            Ok(payload) => on_message(&payload),
                            Err(error) => {
                                warn!(error = %error, channel, "ignored an invalidation message that is not text");
                            }
                        },
                        None => break false,
                    },
                    _ = stop.changed() => break true,
                }
            };
            self.health.subscribed.store(false, Ordering::SeqCst);
            if stopped || *stop.borrow() {
                break;
            }
            self.health
                .failed("SUBSCRIBE", &"the pub/sub connection closed");
        }
        self.health.subscribed.store(false, Ordering::SeqCst);
        debug!(channel, "cache invalidation subscriber stopped");
    }
}

/// Sleeps for `duration` unless `stop` turns true first. Returns whether to stop.
async fn wait_or_stop(stop: &mut watch::Receiver<bool>, duration: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(duration) => *stop.borrow(),
        changed = stop.changed() => changed.is_err() || *stop.borrow(),
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
