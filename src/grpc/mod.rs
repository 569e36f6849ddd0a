//! gRPC handlers of the `ally.v1` services and what they share.

pub mod api_keys;
pub mod audit_service;
pub mod auth_service;
pub mod chat;
pub mod client_configurations;
pub mod configurations;
pub mod convert;
pub mod error;
pub mod paging;
pub mod resources;
pub mod tenants;
pub mod users;
pub mod validate;

pub use self::error::ApiError;

use crate::auth::RequestContext;

/// Returns the context the tenant layer stored for this call.
pub fn context<T>(request: &tonic::Request<T>) -> Result<RequestContext, ApiError> {
    request
        .extensions()
        .get::<RequestContext>()
        .cloned()
        .ok_or_else(|| ApiError::internal("the tenant layer did not run for this call"))
}
