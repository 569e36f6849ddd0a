//! Repositories: the queries of each table group, written once for both backends.
//!
//! Functions take a [`DbConnection`](crate::db::DbConnection) and return diesel results; they
//! never import tonic. Every query on a tenant-owned table filters by the tenant id it is given,
//! which callers take from the request context, never from a request body.

pub mod api_keys;
pub mod audit;
pub mod chat_sessions;
pub mod client_configurations;
pub mod configurations;
pub mod email_verifications;
pub mod message_counts;
pub mod messages;
pub mod refresh_tokens;
pub mod request_ids;
pub mod tenants;
pub mod usage;
pub mod users;
