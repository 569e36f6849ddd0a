//! Audit entries: who did what to which resource, written in the same transaction as the change
//! they describe, or on their own for security events.

use serde_json::{Map, Value};

use crate::auth::{Principal, RequestContext};
use crate::models::{self, AuditLog};

/// How much an event matters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// An event to record, before the actor and tenant are filled in.
#[derive(Clone, Debug)]
pub struct AuditEvent {
    pub event_type: &'static str,
    pub severity: Severity,
    pub resource_type: Option<&'static str>,
    pub resource_id: Option<String>,
    pub metadata: Map<String, Value>,
}

impl AuditEvent {
    /// Creates an event for a change made by the caller, such as `user.created`.
    pub fn change(event_type: &'static str) -> AuditEvent {
        AuditEvent {
            event_type,
            severity: Severity::Info,
            resource_type: None,
            resource_id: None,
            metadata: Map::new(),
        }
    }

    /// Creates a security event, such as a failed login or a denied call.
    pub fn security(event_type: &'static str) -> AuditEvent {
        AuditEvent {
            severity: Severity::Warning,
            ..AuditEvent::change(event_type)
        }
    }

    pub fn severity(mut self, severity: Severity) -> AuditEvent {
        self.severity = severity;
        self
    }

    pub fn resource(mut self, resource_type: &'static str, id: &str) -> AuditEvent {
        self.resource_type = Some(resource_type);
        self.resource_id = Some(id.to_string());
        self
    }

    /// Adds a metadata field. Never pass a secret or message text.
    pub fn detail(mut self, key: &str, value: impl Into<Value>) -> AuditEvent {
        self.metadata.insert(key.to_string(), value.into());
        self
    }
}

/// Builds the row for `event` in `tenant_id`, with the actor taken from the request context.
pub fn entry(context: &RequestContext, tenant_id: &str, event: AuditEvent) -> AuditLog {
    let (actor_type, actor_id) = match &context.principal {
        Some(Principal::User { user_id }) => ("user", Some(user_id.clone())),
        Some(Principal::ApiKey { api_key_id, .. }) => ("api_key", Some(api_key_id.clone())),
        Some(Principal::Operator { name }) => ("operator", Some(name.clone())),
        Some(Principal::System { name }) => ("system", Some(name.clone())),
        None => ("anonymous", None),
    };
    AuditLog {
        tenant_id: tenant_id.to_string(),
        id: models::new_id(),
        actor_type: actor_type.to_string(),
        actor_id,
        event_type: event.event_type.to_string(),
        resource_type: event.resource_type.map(str::to_string),
        resource_id: event.resource_id,
        severity: event.severity.as_str().to_string(),
        request_id: Some(context.request_id.clone()),
        ip_address: context.client_ip.clone(),
        metadata: Value::Object(event.metadata).to_string(),
        created_at: models::now(),
    }
}
