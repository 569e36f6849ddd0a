//! Watch: a stream of the messages added to one session.
//!
//! Each stream has a task that waits for events of the session on the [`EventBus`] and reads
//! the messages from the database before it sends them. It keeps a cursor, the `(created_at,
//! id)` of the newest message sent, and on every event first sends whatever was stored after
//! the cursor. So a watcher that lagged behind the broadcast channel, or missed events while
//! Redis was away, still receives every message, in storage order. The id named by an event is
//! read as well, which covers a message stored with an earlier time by a server whose clock is
//! behind.
//!
//! [`EventBus`]: crate::events::EventBus

use std::collections::{HashSet, VecDeque};

use tokio::sync::{broadcast, mpsc, watch as signal};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Status};

use super::sessions::{Intent, load_session};
use super::{Caller, ChatApi, message_to_proto};
use crate::db::Database;
use crate::events::{SessionEvent, Subscription};
use crate::grpc::{ApiError, context, validate};
use crate::models::Message;
use crate::proto::ally::v1 as pb;
use crate::repo;
use crate::repo::messages::MessageCursor;

/// The response stream of Watch.
pub type WatchStream = ReceiverStream<Result<pb::WatchResponse, Status>>;

/// Responses buffered for a client that reads slowly.
const STREAM_BUFFER: usize = 64;
/// Messages read from the database per query while catching up.
const CATCH_UP_PAGE: i64 = 200;
/// Ids of recently sent messages remembered, so that no message is sent twice.
const REMEMBERED_IDS: usize = 1024;

impl ChatApi {
    pub(super) async fn watch_impl(
        &self,
        request: Request<pb::WatchRequest>,
    ) -> Result<WatchStream, ApiError> {
        let context = context(&request)?;
        let caller = Caller::of(&context)?;
        let request = request.into_inner();
        let session_id = validate::id("session_id", &request.session_id)?;
        let resume_after = match request.resume_after_message_id.as_str() {
            "" => None,
            id => Some(validate::id("resume_after_message_id", id)?),
        };

        let mut conn = self.database.read().await?;
        let session = load_session(&mut conn, &caller, &session_id, Intent::Read, false).await?;
        // The cursor is read before subscribing, and the watcher catches up from it once
        // subscribed, so a message stored in between is not lost.
        let cursor = match &resume_after {
            Some(id) => {
                let message = repo::messages::find(&mut conn, caller.tenant_id, id)
                    .await?
                    .filter(|message| message.session_id == session.id)
                    .ok_or_else(|| {
                        ApiError::invalid(
                            "resume_after_message_id",
                            "names no message of this session",
                        )
                    })?;
                Some((message.created_at, message.id))
            }
            None => repo::messages::latest(&mut conn, caller.tenant_id, &session.id).await?,
        };
        drop(conn);

        let subscription = self.events.subscribe(caller.tenant_id, &session.id).await;
        let (sender, receiver) = mpsc::channel(STREAM_BUFFER);
        let watcher = Watcher {
            database: self.database.clone(),
            tenant_id: caller.tenant_id.to_string(),
            session_id: session.id,
            cursor,
            sent: RecentIds::default(),
            sender,
        };
        tokio::spawn(watcher.run(subscription, self.shutdown.clone()));
        Ok(ReceiverStream::new(receiver))
    }
}

/// Reason a watcher stops.
enum Stop {
    /// The client went away.
    Disconnected,
    /// Reading failed; the client gets this status.
    Failed(Status),
}

/// Stops a watcher because reading failed. A function rather than a `From` impl, so that `?`
/// on an [`ApiError`] elsewhere keeps one obvious target type.
fn failed(error: impl Into<ApiError>) -> Stop {
    Stop::Failed(error.into().into())
}

struct Watcher {
    database: Database,
    tenant_id: String,
    session_id: String,
    cursor: Option<MessageCursor>,
    sent: RecentIds,
    sender: mpsc::Sender<Result<pb::WatchResponse, Status>>,
}

impl Watcher {
    async fn run(mut self, mut events: Subscription, mut shutdown: signal::Receiver<bool>) {
        // Messages stored between reading the cursor and subscribing.
        let mut result = self.catch_up().await;
        let stop = loop {
            if let Err(stop) = result {
                break stop;
            }
            let event = tokio::select! {
                () = self.sender.closed() => break Stop::Disconnected,
                _ = shutdown.wait_for(|stop| *stop) => break Stop::Failed(Status::unavailable(
                    "the server is shutting down; watch again with resume_after_message_id set \
                     to the last message received",
                )),
                event = events.recv() => event,
            };
            result = match event {
                Ok(SessionEvent::MessageAdded { message_id }) => self.deliver(&message_id).await,
                // Events were lost, so read whatever was stored since the cursor.
                Ok(SessionEvent::Resync) | Err(broadcast::error::RecvError::Lagged(_)) => {
                    self.catch_up().await
                }
                Err(broadcast::error::RecvError::Closed) => Err(Stop::Disconnected),
            };
        };
        if let Stop::Failed(status) = stop {
            let _ = self.sender.send(Err(status)).await;
        }
    }

    /// Sends every message stored after the cursor.
    async fn catch_up(&mut self) -> Result<(), Stop> {
        loop {
            let rows = {
                let mut conn = self.database.read().await.map_err(failed)?;
                repo::messages::list(
                    &mut conn,
                    &self.tenant_id,
                    &self.session_id,
                    None,
                    self.cursor.clone(),
                    CATCH_UP_PAGE,
                )
                .await
                .map_err(failed)?
            };
            let complete = (rows.len() as i64) < CATCH_UP_PAGE;
            for message in rows {
                self.cursor = Some((message.created_at, message.id.clone()));
                self.send(message).await?;
            }
            if complete {
                return Ok(());
            }
        }
    }

    /// Sends the message an event names unless it was sent already. The catch-up before it
    /// normally has sent it.
    async fn deliver(&mut self, message_id: &str) -> Result<(), Stop> {
        self.catch_up().await?;
        if self.sent.contains(message_id) {
            return Ok(());
        }
        let message = {
            let mut conn = self.database.read().await.map_err(failed)?;
            repo::messages::find(&mut conn, &self.tenant_id, message_id)
                .await
                .map_err(failed)?
        };
        // The id came from the event bus, so only a message of the watched session is sent.
        match message {
            Some(message)
                if message.session_id == self.session_id && message.deleted_at.is_none() =>
            {
                self.send(message).await
            }
            _ => Ok(()),
        }
    }

    async fn send(&mut self, message: Message) -> Result<(), Stop> {
        if !self.sent.insert(&message.id) {
            return Ok(());
        }
        let response = pb::WatchResponse {
            message: Some(message_to_proto(&message)),
        };
        self.sender
            .send(Ok(response))
            .await
            .map_err(|_| Stop::Disconnected)
    }
}

/// The ids of the last [`REMEMBERED_IDS`] messages sent.
#[derive(Default)]
struct RecentIds {
    order: VecDeque<String>,
    ids: HashSet<String>,
}

impl RecentIds {
    fn contains(&self, id: &str) -> bool {
        self.ids.contains(id)
    }

    /// Remembers `id` and returns whether it was new.
    fn insert(&mut self, id: &str) -> bool {
        if !self.ids.insert(id.to_string()) {
            return false;
        }
        self.order.push_back(id.to_string());
        if self.order.len() > REMEMBERED_IDS
            && let Some(oldest) = self.order.pop_front()
        {
            self.ids.remove(&oldest);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_ids_forget_oldest() {
        let mut recent = RecentIds::default();
        for index in 0..=REMEMBERED_IDS {
            assert!(recent.insert(&format!("m{index}")));
        }

        assert!(!recent.contains("m0"));
        assert!(recent.contains("m1"));
        assert!(!recent.insert("m1"));
    }
}
