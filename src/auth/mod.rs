//! Authentication and authorization: credentials, roles, and the tenant layer that resolves
//! the caller and checks the policy before any handler runs.

pub mod api_key;
mod authenticate;
pub mod caller_cache;
mod context;
pub mod jwt;
mod layer;
pub mod oidc;
pub mod password;
pub mod policy;
mod role;
pub mod secret_token;
mod usage;

pub use self::authenticate::{Authenticator, headers};
pub use self::caller_cache::CallerCache;
pub use self::context::{Principal, RequestContext};
pub use self::layer::TenantLayer;
pub use self::role::Role;
pub use self::usage::ApiKeyUsage;
