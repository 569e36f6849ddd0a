//! The per-tenant rate limit at the plans' published rates: a burst over a tenant's rate fails
//! with RESOURCE_EXHAUSTED while other tenants, operators and health checks are served; with
//! Redis the limit holds across two servers, and without Redis it holds in each server.

use std::time::{Duration, Instant};

use ally::config::Settings;
use ally::proto::ally::v1 as pb;
use ally::server::RunningServer;
use futures_util::future::join_all;
use tonic::Code;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;
use tonic_types::StatusExt;

use crate::backend_tests;
use crate::common::clients::{Credential, create_tenant, tenants};
use crate::common::private_redis::PrivateRedis;
use crate::common::{TestBackend, TestDatabase, connect, init_logging, test_settings, wait_until};

backend_tests!(
    burst_over_rate_rejected,
    redis_limit_spans_servers,
    redis_outage_limits_in_process,
);

/// Calls a tenant makes at once in a burst: more than the free plan's burst of 5.
const BURST_CALLS: usize = 12;
const FREE_RATE: f64 = 5.0;
const FREE_BURST: usize = 5;

/// Servers on one database, at the plans' published rates.
struct Servers {
    servers: Vec<(RunningServer, Channel)>,
    _database: TestDatabase,
}

impl Servers {
    async fn start(backend: TestBackend, count: usize, redis_url: Option<String>) -> Servers {
        init_logging();
        let database = TestDatabase::create(backend).await;
        let mut servers = Vec::new();
        for _ in 0..count {
            let mut settings: Settings = test_settings(&database.url, database.dir());
            settings.rate_limit.scale = 1.0;
            settings.redis.url = redis_url.clone().map(secrecy::SecretString::from);
            let server = ally::server::start(settings).await.expect("server starts");
            let channel = connect(server.local_addr()).await;
            servers.push((server, channel));
        }
        Servers {
            servers,
            _database: database,
        }
    }

    fn channel(&self, index: usize) -> &Channel {
        &self.servers[index].1
    }

    async fn stop(self) {
        for (server, _) in self.servers {
            server.shutdown().await.expect("clean shutdown");
        }
    }
}

/// Creates a tenant on `plan` and returns its id with its owner's credential.
async fn tenant(channel: &Channel, subdomain: &str, plan: pb::Plan) -> (String, Credential) {
    let created = create_tenant(channel, subdomain, subdomain).await;
    let id = created.tenant.expect("tenant").id;
    let owner_id = created.owner.expect("owner").id;
    if plan != pb::Plan::Free {
        tenants(channel, Credential::operator())
            .update_subscription(pb::UpdateSubscriptionRequest {
                tenant_id: id.clone(),
                plan: plan.into(),
                ..Default::default()
            })
            .await
            .expect("change plan");
    }
    let owner = Credential::user(&id, &owner_id, "owner");
    (id, owner)
}

/// Outcome of calls sent at once.
struct Burst {
    admitted: usize,
    rejected: Vec<tonic::Status>,
    other_failures: Vec<tonic::Status>,
    elapsed: Duration,
}

impl Burst {
    /// Most calls a GCRA at the free plan's rate can admit in `elapsed`, from a full bucket.
    fn free_plan_allowance(&self) -> usize {
        FREE_BURST + (self.elapsed.as_secs_f64() * FREE_RATE).ceil() as usize
    }
}

/// Sends `calls` GetTenant calls as `credential` at once, spread over `channels` in turn.
async fn burst(channels: &[&Channel], credential: &Credential, calls: usize) -> Burst {
    let started = Instant::now();
    let results = join_all((0..calls).map(|index| {
        let mut client = tenants(channels[index % channels.len()], credential.clone());
        async move { client.get_tenant(pb::GetTenantRequest::default()).await }
    }))
    .await;
    let elapsed = started.elapsed();
    let mut outcome = Burst {
        admitted: 0,
        rejected: Vec::new(),
        other_failures: Vec::new(),
        elapsed,
    };
    for result in results {
        match result {
            Ok(_) => outcome.admitted += 1,
            Err(status) if status.code() == Code::ResourceExhausted => {
                outcome.rejected.push(status)
            }
            Err(status) => outcome.other_failures.push(status),
        }
    }
    outcome
}

/// Checks the details of a rejection at the free plan's rate, and returns its retry delay.
fn free_plan_rejection(status: &tonic::Status) -> Duration {
    let retry = status
        .get_details_retry_info()
        .and_then(|info| info.retry_delay)
        .expect("RetryInfo with a delay");
    let quota = status
        .get_details_quota_failure()
        .expect("QuotaFailure detail");
    let reason = status.get_details_error_info().map(|info| info.reason);

    assert_eq!(reason.as_deref(), Some("RATE_LIMITED"), "{status:?}");
    assert_eq!(quota.violations[0].subject, "tenant:requests_per_second");
    assert!(
        quota.violations[0]
            .description
            .contains("free plan allows 5 requests per second"),
        "{:?}",
        quota.violations[0]
    );
    assert!(retry > Duration::ZERO, "{retry:?}");
    assert!(retry <= Duration::from_millis(200), "{retry:?}");
    retry
}

fn assert_limited(burst: &Burst) {
    assert!(
        burst.other_failures.is_empty(),
        "{:?}",
        burst.other_failures
    );
    assert!(burst.admitted >= FREE_BURST, "admitted {}", burst.admitted);
    assert!(
        burst.admitted <= burst.free_plan_allowance(),
        "admitted {} in {:?}",
        burst.admitted,
        burst.elapsed
    );
    assert!(!burst.rejected.is_empty(), "no call was rejected");
}

async fn redis_ttl_millis(redis: &PrivateRedis, tenant_id: &str) -> i64 {
    let mut connection = redis.connection().await;
    redis::cmd("PTTL")
        .arg(format!("ally:rate_limit:{tenant_id}"))
        .query_async(&mut connection)
        .await
        .expect("PTTL")
}

async fn burst_over_rate_rejected(backend: TestBackend) {
    let servers = Servers::start(backend, 1, None).await;
    let channel = servers.channel(0);
    let (_, limited) = tenant(channel, "limited", pb::Plan::Free).await;
    let (_, bystander) = tenant(channel, "bystander", pb::Plan::Starter).await;
    let mut operator = tenants(channel, Credential::operator());
    let mut health = HealthClient::new(channel.clone());

    let only = [channel];
    let (over, bystander_burst, operator_calls, health_calls) = tokio::join!(
        burst(&only, &limited, BURST_CALLS),
        burst(&only, &bystander, 10),
        join_all((0..BURST_CALLS).map(|_| {
            let mut operator = operator.clone();
            async move {
                operator
                    .list_tenants(pb::ListTenantsRequest::default())
                    .await
            }
        })),
        join_all((0..BURST_CALLS).map(|_| {
            let mut health = health.clone();
            async move { health.check(HealthCheckRequest::default()).await }
        })),
    );

    assert_limited(&over);
    let retry = over.rejected.iter().map(free_plan_rejection).max().unwrap();
    assert_eq!(
        bystander_burst.admitted, 10,
        "{:?}",
        bystander_burst.rejected
    );
    assert!(
        operator_calls.iter().all(Result::is_ok),
        "{operator_calls:?}"
    );
    assert!(health_calls.iter().all(Result::is_ok), "{health_calls:?}");

    tokio::time::sleep(retry).await;
    let after_wait = tenants(channel, limited.clone())
        .get_tenant(pb::GetTenantRequest::default())
        .await;
    assert!(after_wait.is_ok(), "{after_wait:?}");
    let still_served = operator
        .list_tenants(pb::ListTenantsRequest::default())
        .await;
    assert!(still_served.is_ok(), "{still_served:?}");
    assert!(health.check(HealthCheckRequest::default()).await.is_ok());
    servers.stop().await;
}

async fn redis_limit_spans_servers(backend: TestBackend) {
    let redis = PrivateRedis::start();
    let servers = Servers::start(backend, 2, Some(redis.url())).await;
    let (tenant_id, limited) = tenant(servers.channel(0), "shared", pb::Plan::Free).await;

    let both = [servers.channel(0), servers.channel(1)];
    let over = burst(&both, &limited, BURST_CALLS).await;

    // Each server alone would admit a full burst, so two would admit at least 10.
    assert_limited(&over);
    for status in &over.rejected {
        free_plan_rejection(status);
    }
    let ttl = redis_ttl_millis(&redis, &tenant_id).await;
    assert!(ttl > 0, "the tenant's key has no expiry: PTTL {ttl}");
    assert!(
        ttl <= 1_100,
        "the tenant's key outlives its bucket: PTTL {ttl}"
    );
    servers.stop().await;
}

async fn redis_outage_limits_in_process(backend: TestBackend) {
    let mut redis = PrivateRedis::start();
    let servers = Servers::start(backend, 1, Some(redis.url())).await;
    let channel = servers.channel(0);
    let (tenant_id, limited) = tenant(channel, "outage", pb::Plan::Free).await;

    let with_redis = burst(&[channel], &limited, BURST_CALLS).await;
    assert_limited(&with_redis);
    assert!(redis_ttl_millis(&redis, &tenant_id).await > 0);

    redis.stop();
    let without_redis = burst(&[channel], &limited, BURST_CALLS).await;
    assert_limited(&without_redis);
    for status in &without_redis.rejected {
        free_plan_rejection(status);
    }

    redis.restart();
    let shared_again = wait_until(Duration::from_secs(10), || {
        let limited = limited.clone();
        let redis = &redis;
        let tenant_id = &tenant_id;
        async move {
            let _ = tenants(channel, limited)
                .get_tenant(pb::GetTenantRequest::default())
                .await;
            redis_ttl_millis(redis, tenant_id).await > 0
        }
    })
    .await;
    assert!(shared_again, "the limiter did not return to Redis");
    servers.stop().await;
}
