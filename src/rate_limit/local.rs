//! Buckets kept in this process's memory, one keyed `governor` limiter per plan.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};

use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota};

use super::{PlanRate, RateLimited};
use crate::plans::Plan;

/// Checks between two sweeps that drop the buckets of tenants idle long enough to be full again.
const SWEEP_EVERY: u64 = 4096;

const PLANS: [Plan; 4] = [
    Plan::Free,
    Plan::Starter,
    Plan::Professional,
    Plan::Enterprise,
];

pub(super) struct LocalLimiter {
    /// One limiter per entry of [`PLANS`], or `None` where the plan sets no rate.
    limiters: Vec<Option<DefaultKeyedRateLimiter<String>>>,
    checks: AtomicU64,
}

impl LocalLimiter {
    pub(super) fn new(scale: f64) -> LocalLimiter {
        let limiters = PLANS
            .iter()
            .map(|plan| {
                let rate = PlanRate::of(*plan, scale)?;
                Some(DefaultKeyedRateLimiter::keyed(quota(&rate)))
            })
            .collect();
        LocalLimiter {
            limiters,
            checks: AtomicU64::new(0),
        }
    }

    pub(super) fn check(&self, tenant_id: &str, rate: &PlanRate) -> Result<(), RateLimited> {
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.sweep();
        }
        let index = PLANS.iter().position(|plan| *plan == rate.plan);
        let Some(limiter) = index.and_then(|index| self.limiters[index].as_ref()) else {
            return Ok(());
        };
        limiter
            .check_key(&tenant_id.to_string())
            .map_err(|not_until| RateLimited {
                rate: *rate,
                retry_after: not_until.wait_time_from(limiter.clock().now()),
            })
    }

    fn sweep(&self) {
        for limiter in self.limiters.iter().flatten() {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
}

fn quota(rate: &PlanRate) -> Quota {
    let burst = NonZeroU32::new(rate.burst).unwrap_or(NonZeroU32::MIN);
    // `with_period` returns `None` only for a zero period, which only a rate above 10^9 per second
    // rounds to. The fallback then admits `burst` calls a second.
    Quota::with_period(rate.emission_interval())
        .unwrap_or_else(|| Quota::per_second(burst))
        .allow_burst(burst)
}
