//! The per-tenant rate limit: each tenant may make its plan's `requests_per_second`, with a
//! burst of the same number of calls (one second's allowance at once).
//!
//! The limit is a GCRA (generic cell rate algorithm), equivalent to a token bucket that
//! contains up to `burst` tokens and gains one every `1 / rate` seconds. With `redis.url` set,
//! the bucket of each tenant is in Redis, so the limit applies across replicas. Without Redis,
//! or while Redis is unreachable, each server keeps its own buckets in memory.

mod local;
mod shared;

use std::time::Duration;

use tracing::info;

use self::local::LocalLimiter;
use self::shared::SharedLimiter;
use secrecy::{ExposeSecret, SecretString};

use crate::cache::{InvalidRedisUrl, RedisLink};
use crate::config::RateLimitSettings;
use crate::plans::Plan;

/// The rate and burst a tenant gets, after `rate_limit.scale`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PlanRate {
    pub plan: Plan,
    /// Calls per second.
    pub per_second: f64,
    /// Calls allowed at once after a quiet period.
    pub burst: u32,
}

impl PlanRate {
    /// Returns the scaled rate of `plan`, or `None` when the plan sets no limit.
    pub fn of(plan: Plan, scale: f64) -> Option<PlanRate> {
        let published = plan.quotas().requests_per_second?;
        let per_second = f64::from(published) * scale;
        // Clamped to 1 so that a small scale still admits single calls.
        let burst = per_second.round().clamp(1.0, f64::from(u32::MAX)) as u32;
        Some(PlanRate {
            plan,
            per_second,
            burst,
        })
    }

    /// Time between two calls at the sustained rate.
    pub fn emission_interval(&self) -> Duration {
        Duration::from_secs_f64(1.0 / self.per_second)
    }
}

/// A call over the tenant's limit.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateLimited {
    pub rate: PlanRate,
    /// Time until the tenant's next call is admitted.
    pub retry_after: Duration,
}

/// Checks tenant calls against their plan's rate.
pub struct RateLimiter {
    scale: f64,
    local: LocalLimiter,
    shared: Option<SharedLimiter>,
}

impl RateLimiter {
    /// Builds the limiter, or returns `None` when `rate_limit.enabled` is off. With a Redis
    /// URL the limiter opens its own connection, so that its commands cannot fail the cache's.
    /// A shared connection lost the cache's first invalidation after a Redis restart in
    /// `configurations::redis_outage_keeps_serving`.
    pub fn new(
        settings: &RateLimitSettings,
        redis_url: Option<&SecretString>,
    ) -> Result<Option<RateLimiter>, InvalidRedisUrl> {
        if !settings.enabled {
            info!("the per-tenant rate limit is off");
            return Ok(None);
        }
        let shared = match redis_url {
            Some(url) => Some(SharedLimiter::new(RedisLink::new(url.expose_secret())?)),
            None => None,
        };
        Ok(Some(RateLimiter {
            scale: settings.scale,
            local: LocalLimiter::new(settings.scale),
            shared,
        }))
    }

    /// Counts one call of `tenant_id` and returns an error when it is over the plan's rate.
    pub async fn check(&self, tenant_id: &str, plan: Plan) -> Result<(), RateLimited> {
        let Some(rate) = PlanRate::of(plan, self.scale) else {
            return Ok(());
        };
        if let Some(shared) = &self.shared
            && let Some(outcome) = shared.check(tenant_id, &rate).await
        {
            return outcome;
        }
        self.local.check(tenant_id, &rate)
    }
}

impl From<RateLimited> for crate::grpc::ApiError {
    fn from(limited: RateLimited) -> Self {
        let rate = limited.rate;
        crate::grpc::ApiError::RateLimited {
            description: format!(
                "the {} plan allows {} requests per second with bursts of {}",
                rate.plan.as_str(),
                rate.per_second,
                rate.burst
            ),
            retry_after: limited.retry_after,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_rate_scaled() {
        let free = PlanRate::of(Plan::Free, 1.0).unwrap();
        let raised = PlanRate::of(Plan::Free, 10.0).unwrap();
        let lowered = PlanRate::of(Plan::Free, 0.01).unwrap();

        assert_eq!(free.per_second, 5.0);
        assert_eq!(free.burst, 5);
        assert_eq!(free.emission_interval(), Duration::from_millis(200));
        assert_eq!(raised.burst, 50);
        assert_eq!(lowered.burst, 1);
        assert_eq!(lowered.emission_interval(), Duration::from_secs(20));
    }

    #[tokio::test]
    async fn burst_then_rejected() {
        let settings = RateLimitSettings::default();
        let limiter = RateLimiter::new(&settings, None).unwrap().unwrap();

        for call in 0..5 {
            assert!(
                limiter.check("tenant-a", Plan::Free).await.is_ok(),
                "call {call} within the burst"
            );
        }
        let rejected = limiter.check("tenant-a", Plan::Free).await.unwrap_err();
        let other_tenant = limiter.check("tenant-b", Plan::Free).await;

        assert_eq!(rejected.rate.plan, Plan::Free);
        assert!(rejected.retry_after > Duration::ZERO);
        assert!(rejected.retry_after <= Duration::from_millis(200));
        assert!(other_tenant.is_ok());
    }

    #[test]
    fn disabled_builds_nothing() {
        let settings = RateLimitSettings {
            enabled: false,
            ..RateLimitSettings::default()
        };

        assert!(RateLimiter::new(&settings, None).unwrap().is_none());
    }
}
