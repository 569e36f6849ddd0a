//! The one table that sets who may call which RPC.
//!
//! The tenant layer looks up every call here before any handler runs. An RPC missing from the
//! table is rejected, so a new RPC stays unreachable until it has a rule. Rules give the least
//! role needed to make the call at all; handlers add the checks that depend on the target, such
//! as "any role for your own record, admin for others'".

use super::Role;

/// The callers a rule admits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Anyone; no credential is read.
    Public,
    /// Platform operators only.
    Operator,
    /// Members of a tenant with at least this role.
    Tenant(Role),
    /// Platform operators, or members of a tenant with at least this role.
    OperatorOrTenant(Role),
}

/// One RPC's rule.
#[derive(Clone, Copy, Debug)]
pub struct Rule {
    /// Full gRPC method path, `/package.Service/Method`.
    pub method: &'static str,
    pub access: Access,
    /// The API key scope the call needs; keys without scopes may make every call their role
    /// allows. Empty for calls that API keys can never make.
    pub scope: &'static str,
}

const fn rule(method: &'static str, access: Access, scope: &'static str) -> Rule {
    Rule {
        method,
        access,
        scope,
    }
}

use Access::{Operator, OperatorOrTenant, Public, Tenant};
use Role::{Admin, Member, Viewer};

/// Every RPC the server offers and who may call it.
pub const RULES: &[Rule] = &[
    // Health and reflection are for load balancers and tools.
    rule("/grpc.health.v1.Health/Check", Public, ""),
    rule("/grpc.health.v1.Health/Watch", Public, ""),
    rule(
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        Public,
        "",
    ),
    rule(
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        Public,
        "",
    ),
    // Signing in is how a caller gets a credential in the first place.
    rule("/ally.v1.AuthService/Login", Public, ""),
    rule("/ally.v1.AuthService/Refresh", Public, ""),
    rule("/ally.v1.AuthService/Logout", Public, ""),
    rule("/ally.v1.TenantService/CreateTenant", Operator, ""),
    rule(
        "/ally.v1.TenantService/GetTenant",
        OperatorOrTenant(Viewer),
        "tenants.read",
    ),
    rule("/ally.v1.TenantService/GetTenantByDomain", Operator, ""),
    rule("/ally.v1.TenantService/ListTenants", Operator, ""),
    rule("/ally.v1.TenantService/UpdateTenant", Operator, ""),
    rule("/ally.v1.TenantService/UpdateSubscription", Operator, ""),
    rule(
        "/ally.v1.TenantService/GetTenantUsage",
        OperatorOrTenant(Admin),
        "tenants.read",
    ),
    rule("/ally.v1.TenantService/SuspendTenant", Operator, ""),
    rule("/ally.v1.TenantService/ResumeTenant", Operator, ""),
    rule("/ally.v1.TenantService/DeleteTenant", Operator, ""),
    rule("/ally.v1.TenantService/UndeleteTenant", Operator, ""),
    rule(
        "/ally.v1.UserService/CreateUser",
        Tenant(Admin),
        "users.write",
    ),
    rule("/ally.v1.UserService/GetUser", Tenant(Viewer), "users.read"),
    rule(
        "/ally.v1.UserService/ListUsers",
        Tenant(Viewer),
        "users.read",
    ),
    rule(
        "/ally.v1.UserService/UpdateUser",
        Tenant(Viewer),
        "users.write",
    ),
    rule(
        "/ally.v1.UserService/UpdateUserRole",
        Tenant(Admin),
        "users.write",
    ),
    rule(
        "/ally.v1.UserService/DeactivateUser",
        Tenant(Admin),
        "users.write",
    ),
    rule(
        "/ally.v1.UserService/ReactivateUser",
        Tenant(Admin),
        "users.write",
    ),
    rule(
        "/ally.v1.UserService/ChangePassword",
        Tenant(Viewer),
        "users.write",
    ),
    rule(
        "/ally.v1.UserService/SendVerification",
        Tenant(Admin),
        "users.write",
    ),
    rule(
        "/ally.v1.UserService/VerifyEmail",
        Tenant(Viewer),
        "users.write",
    ),
    rule(
        "/ally.v1.ApiKeyService/CreateApiKey",
        Tenant(Viewer),
        "api_keys.write",
    ),
    rule(
        "/ally.v1.ApiKeyService/ListApiKeys",
        Tenant(Viewer),
        "api_keys.read",
    ),
    rule(
        "/ally.v1.ApiKeyService/GetApiKey",
        Tenant(Viewer),
        "api_keys.read",
    ),
    rule(
        "/ally.v1.ApiKeyService/RevokeApiKey",
        Tenant(Viewer),
        "api_keys.write",
    ),
    rule(
        "/ally.v1.ApiKeyService/ValidateApiKey",
        OperatorOrTenant(Admin),
        "api_keys.read",
    ),
    rule(
        "/ally.v1.AuditService/ListAuditEntries",
        OperatorOrTenant(Admin),
        "audit.read",
    ),
    rule(
        "/ally.v1.AuditService/ExportAuditEntries",
        OperatorOrTenant(Admin),
        "audit.read",
    ),
    // Chat: viewers read their own sessions, members and above also write them. The handlers
    // let admins and owners read every session of the tenant.
    rule(
        "/ally.v1.ChatService/CreateSession",
        Tenant(Member),
        "chat.write",
    ),
    rule(
        "/ally.v1.ChatService/GetSession",
        Tenant(Viewer),
        "chat.read",
    ),
    rule(
        "/ally.v1.ChatService/ListSessions",
        Tenant(Viewer),
        "chat.read",
    ),
    rule(
        "/ally.v1.ChatService/UpdateSession",
        Tenant(Member),
        "chat.write",
    ),
    rule(
        "/ally.v1.ChatService/DeleteSession",
        Tenant(Member),
        "chat.write",
    ),
    rule(
        "/ally.v1.ChatService/UndeleteSession",
        Tenant(Member),
        "chat.write",
    ),
    rule(
        "/ally.v1.ChatService/SearchSessions",
        Tenant(Viewer),
        "chat.read",
    ),
    rule(
        "/ally.v1.ChatService/AddMessage",
        Tenant(Member),
        "chat.write",
    ),
    rule(
        "/ally.v1.ChatService/ListMessages",
        Tenant(Viewer),
        "chat.read",
    ),
    rule(
        "/ally.v1.ChatService/GetMessage",
        Tenant(Viewer),
        "chat.read",
    ),
    rule(
        "/ally.v1.ChatService/EditMessage",
        Tenant(Member),
        "chat.write",
    ),
    rule(
        "/ally.v1.ChatService/ListMessageRevisions",
        Tenant(Viewer),
        "chat.read",
    ),
    rule(
        "/ally.v1.ChatService/DeleteMessage",
        Tenant(Member),
        "chat.write",
    ),
    rule(
        "/ally.v1.ChatService/ShareSession",
        Tenant(Member),
        "chat.write",
    ),
    rule(
        "/ally.v1.ChatService/GetSharedSession",
        Tenant(Viewer),
        "chat.read",
    ),
    rule(
        "/ally.v1.ChatService/UnshareSession",
        Tenant(Member),
        "chat.write",
    ),
    rule("/ally.v1.ChatService/Watch", Tenant(Viewer), "chat.read"),
    rule(
        "/ally.v1.ChatService/ImportConversations",
        Tenant(Member),
        "chat.write",
    ),
    rule(
        "/ally.v1.ConfigurationService/GetConfiguration",
        Tenant(Viewer),
        "configurations.read",
    ),
    rule(
        "/ally.v1.ConfigurationService/UpdateConfiguration",
        Tenant(Admin),
        "configurations.write",
    ),
    rule(
        "/ally.v1.ConfigurationService/ListConfigurationRevisions",
        Tenant(Viewer),
        "configurations.read",
    ),
    rule(
        "/ally.v1.ConfigurationService/RollbackConfiguration",
        Tenant(Admin),
        "configurations.write",
    ),
    rule(
        "/ally.v1.ConfigurationService/DeleteConfiguration",
        Tenant(Admin),
        "configurations.write",
    ),
    // Legacy client configurations: any role reads them, and admins and owners import and
    // migrate. Handlers return the original texts to admins and owners only, because they
    // often contain secrets.
    rule(
        "/ally.v1.ClientConfigurationService/ImportClientConfiguration",
        Tenant(Admin),
        "legacy.write",
    ),
    rule(
        "/ally.v1.ClientConfigurationService/MigrateClientConfiguration",
        Tenant(Admin),
        "legacy.write",
    ),
    rule(
        "/ally.v1.ClientConfigurationService/GetClientConfiguration",
        Tenant(Viewer),
        "legacy.read",
    ),
    rule(
        "/ally.v1.ClientConfigurationService/ListClientConfigurations",
        Tenant(Viewer),
        "legacy.read",
    ),
];

/// Finds the rule for a method path.
pub fn rule_for(method: &str) -> Option<&'static Rule> {
    RULES.iter().find(|rule| rule.method == method)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_listed_once() {
        for (index, rule) in RULES.iter().enumerate() {
            let repeats = RULES[index + 1..]
                .iter()
                .filter(|r| r.method == rule.method)
                .count();
            assert_eq!(repeats, 0, "{} is listed twice", rule.method);
        }
    }

    #[test]
    fn unknown_method_has_no_rule() {
        assert!(rule_for("/ally.v1.TenantService/DropEverything").is_none());
    }

    #[test]
    fn tenant_methods_have_scopes() {
        let tenant_reachable =
            |rule: &&Rule| matches!(rule.access, Access::Tenant(_) | Access::OperatorOrTenant(_));
        for rule in RULES.iter().filter(tenant_reachable) {
            assert!(!rule.scope.is_empty(), "{} has no scope", rule.method);
        }
    }
}
