//! Notifications of new chat messages for ChatService.Watch, within one process and, with
//! `redis.url` set, between every server that shares the Redis.
//!
//! Each watched session has one `tokio::sync::broadcast` channel, created for its first
//! subscriber and dropped with its last. An event carries only a message id: watchers read the
//! message from the database in their own tenant and session before they send it, so nothing a
//! Redis publisher writes decides what a watcher may see.
//!
//! With Redis, AddMessage publishes the id on `ally:session:{tenant_id}:{session_id}` after its
//! transaction commits, and each server subscribes to the channels of the sessions watched
//! through it and forwards the ids into the local channel. Local watchers get events straight
//! from the local channel, and the server skips its own events when they come back from Redis.
//! Publishing runs on a background task, so a slow or unreachable Redis never delays a writer.
//! While Redis is unreachable, events between servers are lost: each relay sends
//! [`SessionEvent::Resync`] once it is subscribed again, so watchers read what they missed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;
use tracing::warn;

use crate::cache::pubsub::{OutageLog, publish_loop, subscribe};

/// Capacity of each session's broadcast channel. A watcher that falls further behind receives
/// `RecvError::Lagged`.
const CHANNEL_CAPACITY: usize = 256;
/// Publications queued for Redis before new ones are dropped.
const PUBLISH_QUEUE: usize = 4096;
/// How long a new subscription waits for its Redis subscription before it goes on without one.
const SUBSCRIBE_WAIT: Duration = Duration::from_secs(3);
/// Maximum pause between attempts to subscribe again after Redis went away.
const MAX_RESUBSCRIBE_DELAY: Duration = Duration::from_secs(5);

/// Something that happened to a watched session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionEvent {
    /// A message with this id was stored.
    MessageAdded { message_id: String },
    /// Events may have been lost, so watchers should read the session again.
    Resync,
}

/// A failure to set up the event bus.
#[derive(Debug, thiserror::Error)]
#[error("invalid redis.url: {0}")]
pub struct EventBusError(#[source] redis::RedisError);

/// The message events of every watched session of this process. Cheap to clone.
#[derive(Clone)]
pub struct EventBus {
    inner: Arc<Inner>,
}

type SessionKey = (String, String);

struct Inner {
    /// Random id of this bus, so it can recognise its own publications in Redis.
    origin: String,
    topics: Mutex<HashMap<SessionKey, Topic>>,
    redis: Option<Redis>,
}

struct Topic {
    sender: broadcast::Sender<SessionEvent>,
    subscribers: usize,
    /// Becomes true once the Redis subscription is active or has failed.
    ready: watch::Receiver<bool>,
    relay: Option<JoinHandle<()>>,
}

struct Redis {
    client: redis::Client,
    publications: mpsc::Sender<(String, String)>,
    outage: Arc<OutageLog>,
}

/// The JSON payload of a Redis publication.
#[derive(serde::Serialize, serde::Deserialize)]
struct Publication {
    origin: String,
    message_id: String,
}

impl EventBus {
    /// Creates a bus for this process alone.
    pub fn local() -> EventBus {
        EventBus::build(None)
    }

    /// Creates a bus that relays events through the Redis at `url`, or a local bus when `url`
    /// is `None`. It does not connect yet, so Redis may be down at start. It must run inside a
    /// Tokio runtime because it starts the publishing task.
    pub fn new(url: Option<&SecretString>) -> Result<EventBus, EventBusError> {
        let Some(url) = url else {
            return Ok(EventBus::local());
        };
        let client = redis::Client::open(url.expose_secret()).map_err(EventBusError)?;
        let outage = Arc::new(OutageLog::new(
            "Redis is unavailable; chat messages still save, but watchers on other servers miss \
             them until it is back",
            "Redis is reachable again; relaying chat events between servers",
        ));
        let (publications, queue) = mpsc::channel(PUBLISH_QUEUE);
        tokio::spawn(publish_loop(client.clone(), queue, outage.clone()));
        Ok(EventBus::build(Some(Redis {
            client,
            publications,
            outage,
        })))
    }

    fn build(redis: Option<Redis>) -> EventBus {
        EventBus {
            inner: Arc::new(Inner {
                origin: uuid::Uuid::now_v7().to_string(),
                topics: Mutex::new(HashMap::new()),
                redis,
            }),
        }
    }

    /// Returns the Redis channel of a session.
    pub fn channel_name(tenant_id: &str, session_id: &str) -> String {
        format!("ally:session:{tenant_id}:{session_id}")
    }

    /// Announces a stored message to the session's watchers here and, through Redis, on every
    /// other server. Call it after the transaction that stored the message committed.
    pub fn publish_message(&self, tenant_id: &str, session_id: &str, message_id: &str) {
        let key = (tenant_id.to_string(), session_id.to_string());
        if let Some(topic) = self.inner.lock_topics().get(&key) {
            // An error only means no receiver is left, which is fine.
            let _ = topic.sender.send(SessionEvent::MessageAdded {
                message_id: message_id.to_string(),
            });
        }
        let Some(redis) = &self.inner.redis else {
            return;
        };
        let payload = serde_json::to_string(&Publication {
            origin: self.inner.origin.clone(),
            message_id: message_id.to_string(),
        })
        .unwrap_or_default();
        let channel = EventBus::channel_name(tenant_id, session_id);
        if redis.publications.try_send((channel, payload)).is_err() {
            redis
                .outage
                .failed("the queue of events to publish is full; dropping events");
        }
    }

    /// Subscribes to the events of one session. With Redis, waits until the relay of the
    /// session is subscribed there, or for at most a few seconds when Redis is unreachable.
    pub async fn subscribe(&self, tenant_id: &str, session_id: &str) -> Subscription {
        let key = (tenant_id.to_string(), session_id.to_string());
        let (receiver, mut ready) = {
            let mut topics = self.inner.lock_topics();
            let topic = topics
                .entry(key.clone())
                .or_insert_with(|| self.inner.open_topic(&key));
            topic.subscribers += 1;
            (topic.sender.subscribe(), topic.ready.clone())
        };
        let subscription = Subscription {
            receiver,
            key,
            inner: self.inner.clone(),
        };
        // A relay that stopped drops its sender, which ends the wait as well.
        let _ = tokio::time::timeout(SUBSCRIBE_WAIT, ready.wait_for(|ready| *ready)).await;
        subscription
    }

    /// Number of sessions with at least one subscriber.
    pub fn watched_sessions(&self) -> usize {
        self.inner.lock_topics().len()
    }
}

impl Inner {
    fn lock_topics(&self) -> std::sync::MutexGuard<'_, HashMap<SessionKey, Topic>> {
        // A panic while holding the lock leaves the map consistent, because every change to it
        // is a single insert or remove.
        self.topics
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn open_topic(&self, key: &SessionKey) -> Topic {
        let (sender, _) = broadcast::channel(CHANNEL_CAPACITY);
        let (ready_sender, ready) = watch::channel(self.redis.is_none());
        let relay = self.redis.as_ref().map(|redis| {
            tokio::spawn(relay_loop(
                redis.client.clone(),
                EventBus::channel_name(&key.0, &key.1),
                self.origin.clone(),
                sender.clone(),
                ready_sender,
                redis.outage.clone(),
            ))
        });
        Topic {
            sender,
            subscribers: 0,
            ready,
            relay,
        }
    }
}

/// The events of one session for one watcher. Dropping it unsubscribes.
pub struct Subscription {
    receiver: broadcast::Receiver<SessionEvent>,
    key: SessionKey,
    inner: Arc<Inner>,
}

impl Subscription {
    /// Waits for the next event. [`broadcast::error::RecvError::Lagged`] means the watcher fell
    /// behind and missed events, which it must recover from the database.
    pub async fn recv(&mut self) -> Result<SessionEvent, broadcast::error::RecvError> {
        self.receiver.recv().await
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut topics = self.inner.lock_topics();
        let Some(topic) = topics.get_mut(&self.key) else {
            return;
        };
        topic.subscribers = topic.subscribers.saturating_sub(1);
        if topic.subscribers == 0
            && let Some(topic) = topics.remove(&self.key)
            && let Some(relay) = topic.relay
        {
            relay.abort();
        }
    }
}

/// Forwards the events other servers publish for one session into its local channel, and
/// subscribes again whenever the Redis connection breaks. Aborted with its last subscriber.
async fn relay_loop(
    client: redis::Client,
    channel: String,
    origin: String,
    sender: broadcast::Sender<SessionEvent>,
    ready: watch::Sender<bool>,
    outage: Arc<OutageLog>,
) {
    let mut delay = Duration::from_millis(100);
    let mut resubscribing = false;
    loop {
        match subscribe(&client, &channel).await {
            Ok(pubsub) => {
                outage.recovered();
                ready.send_replace(true);
                delay = Duration::from_millis(100);
                if resubscribing {
                    let _ = sender.send(SessionEvent::Resync);
                }
                let mut messages = pubsub.into_on_message();
                while let Some(message) = messages.next().await {
                    let Ok(payload) = message.get_payload::<String>() else {
                        continue;
                    };
                    let Ok(publication) = serde_json::from_str::<Publication>(&payload) else {
                        warn!(channel, "ignoring a malformed event from Redis");
                        continue;
                    };
                    if publication.origin != origin {
                        let _ = sender.send(SessionEvent::MessageAdded {
                            message_id: publication.message_id,
                        });
                    }
                }
                outage.failed("the Redis subscription connection closed");
            }
            Err(error) => {
                outage.failed(&error.to_string());
                // Watchers go on with local events rather than wait for Redis.
                ready.send_replace(true);
            }
        }
        resubscribing = true;
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(MAX_RESUBSCRIBE_DELAY);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_events_reach_subscribers() {
        let bus = EventBus::local();
        let mut first = bus.subscribe("t1", "s1").await;
        let mut second = bus.subscribe("t1", "s1").await;
        let mut other = bus.subscribe("t1", "s2").await;

        bus.publish_message("t1", "s1", "m1");

        let expected = SessionEvent::MessageAdded {
            message_id: "m1".into(),
        };
        assert_eq!(first.recv().await.unwrap(), expected);
        assert_eq!(second.recv().await.unwrap(), expected);
        assert!(other.receiver.try_recv().is_err());
    }

    #[tokio::test]
    async fn topic_dropped_with_last_subscriber() {
        let bus = EventBus::local();
        let first = bus.subscribe("t1", "s1").await;
        let second = bus.subscribe("t1", "s1").await;
        assert_eq!(bus.watched_sessions(), 1);

        drop(first);
        assert_eq!(bus.watched_sessions(), 1);
        drop(second);
        assert_eq!(bus.watched_sessions(), 0);
    }

    #[tokio::test]
    async fn same_session_id_other_tenant_isolated() {
        let bus = EventBus::local();
        let mut watcher = bus.subscribe("t1", "s1").await;

        bus.publish_message("t2", "s1", "m1");

        assert!(watcher.receiver.try_recv().is_err());
    }

    #[tokio::test]
    async fn laggard_told_it_lagged() {
        let bus = EventBus::local();
        let mut watcher = bus.subscribe("t1", "s1").await;

        for index in 0..CHANNEL_CAPACITY + 10 {
            bus.publish_message("t1", "s1", &format!("m{index}"));
        }

        assert!(matches!(
            watcher.recv().await,
            Err(broadcast::error::RecvError::Lagged(_))
        ));
    }

    #[test]
    fn channel_names_include_tenant() {
        assert_eq!(EventBus::channel_name("t", "s"), "ally:session:t:s");
    }
}
