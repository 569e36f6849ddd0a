//! Redis publish/subscribe plumbing shared by the chat event relay and the caller cache: a task
//! that publishes queued messages, a subscription with a time limit, and an outage log.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::{info, warn};

/// Limit for connecting to Redis, for one command and for subscribing.
pub const REDIS_TIMEOUT: Duration = Duration::from_secs(2);

/// A record of whether Redis is down, which logs the start and the end of each outage once,
/// however many calls fail in between.
pub struct OutageLog {
    down: AtomicBool,
    /// The warning logged when an outage starts, saying what the outage costs.
    unavailable: &'static str,
    /// The line logged when Redis is reachable again.
    restored: &'static str,
}

impl OutageLog {
    pub fn new(unavailable: &'static str, restored: &'static str) -> OutageLog {
        OutageLog {
            down: AtomicBool::new(false),
            unavailable,
            restored,
        }
    }

    /// Records a failed Redis call, logging it when it starts an outage.
    pub fn failed(&self, error: &str) {
        if !self.down.swap(true, Ordering::SeqCst) {
            warn!(error, "{}", self.unavailable);
        }
    }

    /// Records a successful Redis call, logging it when it ends an outage.
    pub fn recovered(&self) {
        if self.down.swap(false, Ordering::SeqCst) {
            info!("{}", self.restored);
        }
    }
}

/// Publishes queued `(channel, payload)` messages in order until the queue closes, connecting
/// to Redis when needed. A message that fails is dropped, because its receivers recover when
/// they subscribe again or when their entries expire.
pub async fn publish_loop(
    client: redis::Client,
    mut queue: mpsc::Receiver<(String, String)>,
    outage: Arc<OutageLog>,
) {
    let mut connection: Option<redis::aio::ConnectionManager> = None;
    while let Some((channel, payload)) = queue.recv().await {
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
            .arg(&channel)
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

/// Opens a subscription to `channel`, or fails after [`REDIS_TIMEOUT`].
pub async fn subscribe(
    client: &redis::Client,
    channel: &str,
) -> Result<redis::aio::PubSub, String> {
    let attempt = async {
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(channel).await?;
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
