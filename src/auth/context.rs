//! The request context: the resolved caller of the call a handler serves.

use super::Role;

/// The caller of a call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    /// A user signed in with an access token.
    User { user_id: String },
    /// A user's API key. `api_key_id` is the row id, `key_id` the public key id.
    ApiKey {
        api_key_id: String,
        key_id: String,
        user_id: String,
    },
    /// A platform operator, who manages tenants and belongs to none.
    Operator { name: String },
    /// Ally itself, for work started from the command line or at start-up.
    System { name: String },
}

/// The request context the tenant layer resolves before any handler runs, stored in the
/// request's extensions.
#[derive(Clone, Debug)]
pub struct RequestContext {
    /// Taken from `x-request-id` or generated, and echoed in the response metadata.
    pub request_id: String,
    /// The caller's tenant; `None` for operators and for calls that need no credential.
    pub tenant_id: Option<String>,
    /// `None` for calls that need no credential.
    pub principal: Option<Principal>,
    /// The caller's tenant role; `None` for operators and anonymous calls.
    pub role: Option<Role>,
    /// Scopes an API key is limited to; `None` means everything its role allows.
    pub scopes: Option<Vec<String>>,
    /// The peer's IP address, for audit entries.
    pub client_ip: Option<String>,
}

impl RequestContext {
    /// Returns a context for work Ally starts itself, such as bootstrapping a tenant.
    pub fn system(name: &str) -> RequestContext {
        RequestContext {
            request_id: uuid::Uuid::now_v7().to_string(),
            tenant_id: None,
            principal: Some(Principal::System {
                name: name.to_string(),
            }),
            role: None,
            scopes: None,
            client_ip: None,
        }
    }

    /// Returns whether the caller is a platform operator.
    pub fn is_operator(&self) -> bool {
        matches!(self.principal, Some(Principal::Operator { .. }))
    }

    /// Returns the id of the user behind the call, for users and their API keys.
    pub fn user_id(&self) -> Option<&str> {
        match &self.principal {
            Some(Principal::User { user_id } | Principal::ApiKey { user_id, .. }) => Some(user_id),
            Some(Principal::Operator { .. } | Principal::System { .. }) | None => None,
        }
    }

    /// Returns whether the caller has at least `role` in their tenant.
    pub fn has_role(&self, role: Role) -> bool {
        self.role.is_some_and(|own| own >= role)
    }
}
