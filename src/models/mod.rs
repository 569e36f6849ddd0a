//! Rows of the database tables, one struct per table, mapped field for field.
//!
//! Ids are UUIDv7 strings, JSON columns are strings validated by the code that writes them,
//! and timestamps are UTC without a zone, truncated to microseconds.

mod api_key;
mod audit_log;
mod chat_session;
mod client_configuration;
mod configuration;
mod email_verification;
mod message;
mod message_revision;
mod refresh_token;
mod request_id;
mod tenant;
mod user;

pub use self::api_key::ApiKey;
pub use self::audit_log::AuditLog;
pub use self::chat_session::ChatSession;
pub use self::client_configuration::ClientConfiguration;
pub use self::configuration::Configuration;
pub use self::email_verification::EmailVerification;
pub use self::message::Message;
pub use self::message_revision::MessageRevision;
pub use self::refresh_token::RefreshToken;
pub use self::request_id::RequestId;
pub use self::tenant::Tenant;
pub use self::user::User;

use chrono::{NaiveDateTime, SubsecRound, Utc};

/// Returns the current UTC time at the precision both backends store: microseconds.
pub fn now() -> NaiveDateTime {
    Utc::now().naive_utc().trunc_subsecs(6)
}

/// Generates a UUIDv7 id as text. UUIDv7 sorts by creation time, so new rows land at the end of
/// their index.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}
