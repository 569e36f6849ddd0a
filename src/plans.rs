//! Subscription plans and the quotas each one sets.

/// A tenant's subscription plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plan {
    Free,
    Starter,
    Professional,
    Enterprise,
}

/// Limits of one plan; `None` means no limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quotas {
    pub users: Option<i64>,
    pub chat_sessions: Option<i64>,
    pub messages_per_month: Option<i64>,
    pub api_keys: Option<i64>,
    pub requests_per_second: Option<i32>,
}

impl Plan {
    pub fn as_str(self) -> &'static str {
        match self {
            Plan::Free => "free",
            Plan::Starter => "starter",
            Plan::Professional => "professional",
            Plan::Enterprise => "enterprise",
        }
    }

    pub fn parse(name: &str) -> Option<Plan> {
        match name {
            "free" => Some(Plan::Free),
            "starter" => Some(Plan::Starter),
            "professional" => Some(Plan::Professional),
            "enterprise" => Some(Plan::Enterprise),
            _ => None,
        }
    }

    /// Returns the plan's quotas. The table in `proto/ally/v1/tenant.proto` (`PlanQuotas`) documents
    /// the same numbers for clients; change both together.
    pub fn quotas(self) -> Quotas {
        let limits = |users, sessions, messages, keys, rps| Quotas {
            users: Some(users),
            chat_sessions: Some(sessions),
            messages_per_month: Some(messages),
            api_keys: Some(keys),
            requests_per_second: Some(rps),
        };
        match self {
            Plan::Free => limits(5, 100, 1_000, 2, 5),
            Plan::Starter => limits(25, 1_000, 20_000, 10, 20),
            Plan::Professional => limits(100, 10_000, 200_000, 50, 100),
            Plan::Enterprise => Quotas {
                users: None,
                chat_sessions: None,
                messages_per_month: None,
                api_keys: None,
                requests_per_second: Some(500),
            },
        }
    }
}
