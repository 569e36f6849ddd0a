//! Buckets kept in Redis, shared by every replica, with the in-process limiter as fallback
//! while Redis is unreachable.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use redis::Script;
use tracing::{debug, info, warn};

use super::{PlanRate, RateLimited};
use crate::cache::{RedisLink, ScriptError};

/// After a failed Redis call, checks use the in-process buckets for this long, so that an
/// unreachable Redis does not add a time-out to every call.
const RETRY_PAUSE: Duration = Duration::from_secs(1);

/// GCRA on one key, timed by the Redis server's clock so that replicas with skewed clocks
/// share one schedule. The key stores the theoretical arrival time (TAT) in microseconds.
///
/// KEYS[1]: the tenant's key. ARGV[1]: emission interval in microseconds. ARGV[2]: burst.
/// Returns `{1, 0}` when the call is admitted, or `{0, µs until the next admitted call}`.
const GCRA_SCRIPT: &str = r#"
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local emission = tonumber(ARGV[1])
local tolerance = emission * (tonumber(ARGV[2]) - 1)
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then
  tat = now
end
if tat - now > tolerance then
  return {0, math.ceil(tat - now - tolerance)}
end
local next_tat = tat + emission
local ttl_millis = math.ceil((next_tat - now) / 1000) + 1
redis.call('SET', KEYS[1], string.format('%d', next_tat), 'PX', ttl_millis)
return {1, 0}
"#;

/// Prefix of the Redis keys, followed by the tenant id.
pub const KEY_PREFIX: &str = "ally:rate_limit:";

pub(super) struct SharedLimiter {
    redis: RedisLink,
    script: Script,
    reachable: AtomicBool,
    /// When checks may try Redis again after a failure.
    pause_until: Mutex<Option<Instant>>,
}

impl SharedLimiter {
    pub(super) fn new(redis: RedisLink) -> SharedLimiter {
        SharedLimiter {
            redis,
            script: Script::new(GCRA_SCRIPT),
            reachable: AtomicBool::new(true),
            pause_until: Mutex::new(None),
        }
    }

    /// Counts one call in Redis. Returns `None` when Redis cannot decide, so the caller falls
    /// back to the in-process buckets.
    pub(super) async fn check(
        &self,
        tenant_id: &str,
        rate: &PlanRate,
    ) -> Option<Result<(), RateLimited>> {
        if self.paused() {
            return None;
        }
        let emission_micros = rate.emission_interval().as_micros().max(1);
        let emission_micros = u64::try_from(emission_micros).unwrap_or(u64::MAX);
        let mut invocation = self.script.key(format!("{KEY_PREFIX}{tenant_id}"));
        invocation.arg(emission_micros).arg(rate.burst);

        match self.redis.invoke_script::<(i64, i64)>(&invocation).await {
            Ok((admitted, wait_micros)) => {
                self.succeeded();
                if admitted == 1 {
                    return Some(Ok(()));
                }
                let wait_micros = u64::try_from(wait_micros).unwrap_or(0);
                Some(Err(RateLimited {
                    rate: *rate,
                    retry_after: Duration::from_micros(wait_micros),
                }))
            }
            Err(error) => {
                self.failed(&error);
                None
            }
        }
    }

    fn paused(&self) -> bool {
        let pause = self.pause_until.lock().unwrap_or_else(|e| e.into_inner());
        pause.is_some_and(|until| Instant::now() < until)
    }

    fn failed(&self, error: &ScriptError) {
        *self.pause_until.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(Instant::now() + RETRY_PAUSE);
        if self.reachable.swap(false, Ordering::SeqCst) {
            warn!(
                error = %error,
                "Redis is unreachable; each server enforces tenant rate limits on its own until \
                 it is back"
            );
        } else {
            debug!(error = %error, "Redis is still unreachable for rate limiting");
        }
    }

    fn succeeded(&self) {
        if !self.reachable.swap(true, Ordering::SeqCst) {
            info!("Redis is reachable again; tenant rate limits are shared across servers");
        }
    }
}
