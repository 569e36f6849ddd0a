//! gRPC handlers of the `ally.v1` services and what they share.

pub mod error;

pub use self::error::ApiError;
