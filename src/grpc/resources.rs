//! Conversions from stored rows to the API's resource messages.

use super::convert::{json_to_struct, optional_timestamp, timestamp};
use crate::auth::Role;
use crate::models;
use crate::plans::{Plan, Quotas};
use crate::proto::ally::v1 as pb;

/// Returns a tenant's etag: its version, quoted so it reads as opaque.
pub fn etag(version: i64) -> String {
    format!("\"v{version}\"")
}

pub fn plan_to_proto(plan: Plan) -> pb::Plan {
    match plan {
        Plan::Free => pb::Plan::Free,
        Plan::Starter => pb::Plan::Starter,
        Plan::Professional => pb::Plan::Professional,
        Plan::Enterprise => pb::Plan::Enterprise,
    }
}

/// Returns the plan a request names; unspecified means free.
pub fn plan_from_proto(plan: pb::Plan) -> Plan {
    match plan {
        pb::Plan::Unspecified | pb::Plan::Free => Plan::Free,
        pb::Plan::Starter => Plan::Starter,
        pb::Plan::Professional => Plan::Professional,
        pb::Plan::Enterprise => Plan::Enterprise,
    }
}

pub fn quotas_to_proto(quotas: Quotas) -> pb::PlanQuotas {
    let limit = |value: Option<i64>| value.unwrap_or(-1);
    pb::PlanQuotas {
        users: limit(quotas.users),
        chat_sessions: limit(quotas.chat_sessions),
        messages_per_month: limit(quotas.messages_per_month),
        api_keys: limit(quotas.api_keys),
        requests_per_second: quotas.requests_per_second.unwrap_or(-1),
    }
}

pub fn tenant_to_proto(tenant: &models::Tenant) -> pb::Tenant {
    let plan = Plan::parse(&tenant.plan).unwrap_or(Plan::Free);
    let state = match tenant.status.as_str() {
        "suspended" => pb::TenantState::Suspended,
        _ => pb::TenantState::Active,
    };
    pb::Tenant {
        id: tenant.id.clone(),
        name: tenant.name.clone(),
        domain: tenant.domain.clone().unwrap_or_default(),
        subdomain: tenant.subdomain.clone().unwrap_or_default(),
        plan: plan_to_proto(plan).into(),
        state: state.into(),
        suspended_reason: tenant.suspended_reason.clone().unwrap_or_default(),
        settings: Some(json_to_struct(&tenant.settings)),
        subscription_expire_time: optional_timestamp(tenant.subscription_expires_at),
        etag: etag(tenant.version),
        create_time: Some(timestamp(tenant.created_at)),
        update_time: Some(timestamp(tenant.updated_at)),
        delete_time: optional_timestamp(tenant.deleted_at),
        quotas: Some(quotas_to_proto(plan.quotas())),
    }
}

pub fn role_to_proto(role: Role) -> pb::Role {
    match role {
        Role::Viewer => pb::Role::Viewer,
        Role::Member => pb::Role::Member,
        Role::Admin => pb::Role::Admin,
        Role::Owner => pb::Role::Owner,
    }
}

/// Returns the role a request names, or `None` for `ROLE_UNSPECIFIED`.
pub fn role_from_proto(role: pb::Role) -> Option<Role> {
    match role {
        pb::Role::Unspecified => None,
        pb::Role::Viewer => Some(Role::Viewer),
        pb::Role::Member => Some(Role::Member),
        pb::Role::Admin => Some(Role::Admin),
        pb::Role::Owner => Some(Role::Owner),
    }
}

pub fn user_to_proto(user: &models::User) -> pb::User {
    let role = Role::parse(&user.role).unwrap_or(Role::Viewer);
    pb::User {
        id: user.id.clone(),
        email: user.email.clone(),
        display_name: user.display_name.clone(),
        role: role_to_proto(role).into(),
        active: user.is_active,
        email_verified: user.email_verified_at.is_some(),
        email_verify_time: optional_timestamp(user.email_verified_at),
        last_login_time: optional_timestamp(user.last_login_at),
        create_time: Some(timestamp(user.created_at)),
        update_time: Some(timestamp(user.updated_at)),
    }
}
