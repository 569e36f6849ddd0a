//! Prints the cost of one rate-limit check: in memory, and in Redis when `BENCH_REDIS_URL` is
//! set (for example `redis://127.0.0.1:6379`). Run with `cargo bench --bench rate_limit`.

use std::time::{Duration, Instant};

use ally::config::RateLimitSettings;
use ally::plans::Plan;
use ally::rate_limit::RateLimiter;
use secrecy::SecretString;

/// Raises every plan's rate so far that no check is rejected, so the figures are the cost of
/// a check.
const SCALE: f64 = 1e6;

async fn measure(label: &str, limiter: &RateLimiter, tenants: usize, checks: usize) {
    let ids: Vec<String> = (0..tenants)
        .map(|index| format!("tenant-{index}"))
        .collect();
    let started = Instant::now();
    let mut rejected = 0;
    for check in 0..checks {
        if limiter
            .check(&ids[check % tenants], Plan::Free)
            .await
            .is_err()
        {
            rejected += 1;
        }
    }
    let elapsed = started.elapsed();
    let per_check = elapsed / checks as u32;
    println!(
        "{label:<34} {tenants:>6} tenants {checks:>8} checks  {:>10.0} checks/s  {:>8.2?} per check  {rejected} rejected",
        checks as f64 / elapsed.as_secs_f64(),
        per_check,
    );
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let settings = RateLimitSettings {
        enabled: true,
        scale: SCALE,
    };
    let local = RateLimiter::new(&settings, None)
        .expect("the limiter builds without Redis")
        .expect("the limiter is enabled");
    measure("in memory, one tenant", &local, 1, 1_000_000).await;
    measure("in memory, 10,000 tenants", &local, 10_000, 1_000_000).await;

    let Ok(url) = std::env::var("BENCH_REDIS_URL") else {
        println!("Redis: set BENCH_REDIS_URL to measure checks in Redis");
        return;
    };
    let redis = RateLimiter::new(&settings, Some(&SecretString::from(url.clone())))
        .expect("valid Redis URL")
        .expect("the limiter is enabled");
    // The first check loads the script into Redis.
    let _ = redis.check("warm-up", Plan::Free).await;
    tokio::time::sleep(Duration::from_millis(10)).await;
    let before = evalsha_calls(&url).await;
    measure("Redis, one tenant, sequential", &redis, 1, 20_000).await;
    measure("Redis, 10,000 tenants, sequential", &redis, 10_000, 20_000).await;

    let after = evalsha_calls(&url).await;
    // The limiter falls back to memory when Redis fails, which would make these figures
    // meaningless, so every check must have reached Redis.
    assert!(
        after - before >= 40_000,
        "only {} checks reached Redis",
        after - before
    );
}

/// Returns how many EVALSHA commands the Redis server has run.
async fn evalsha_calls(url: &str) -> u64 {
    let mut connection = redis::Client::open(url)
        .expect("Redis URL")
        .get_multiplexed_async_connection()
        .await
        .expect("connect to Redis");
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut connection)
        .await
        .expect("INFO commandstats");
    info.lines()
        .find_map(|line| line.strip_prefix("cmdstat_evalsha:calls="))
        .and_then(|rest| rest.split(',').next())
        .and_then(|calls| calls.parse().ok())
        .unwrap_or(0)
}
