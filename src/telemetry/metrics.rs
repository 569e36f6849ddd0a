//! Metric instruments, exported over OTLP when an endpoint is configured.
//!
//! Names follow the OpenTelemetry semantic conventions where one exists (`rpc.*`,
//! `db.client.connection.*`), and start with `ally.` otherwise. Without an endpoint the global
//! meter provider is OpenTelemetry's no-op one, so recording costs a function call and nothing
//! is kept.

use std::sync::OnceLock;
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram, Meter};

use crate::db::{Database, PoolStatus};

/// Histogram bucket bounds of RPC durations, in seconds.
const RPC_DURATION_BOUNDS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The instruments Ally records to.
struct Instruments {
    rpc_duration: Histogram<f64>,
    cache_lookups: Counter<u64>,
    audit_entries: Counter<u64>,
}

static INSTRUMENTS: OnceLock<Instruments> = OnceLock::new();

/// Creates the instruments from the global meter provider. Runs in
/// [`install`](super::install) after the provider is set, because an instrument created
/// earlier stays bound to the no-op provider.
pub(super) fn register() {
    if INSTRUMENTS.get().is_some() {
        tracing::warn!(
            "metric instruments were created before telemetry was installed, so metrics are \
             not exported"
        );
        return;
    }
    let _ = INSTRUMENTS.get_or_init(|| Instruments::new(&meter()));
}

fn meter() -> Meter {
    opentelemetry::global::meter(super::SERVICE_NAME)
}

fn instruments() -> &'static Instruments {
    INSTRUMENTS.get_or_init(|| Instruments::new(&meter()))
}

impl Instruments {
    fn new(meter: &Meter) -> Instruments {
        Instruments {
            rpc_duration: meter
                .f64_histogram("rpc.server.call.duration")
                .with_unit("s")
                .with_description("Duration of RPCs the server handled, until the last frame")
                .with_boundaries(RPC_DURATION_BOUNDS.to_vec())
                .build(),
            cache_lookups: meter
                .u64_counter("ally.cache.lookups")
                .with_unit("{lookup}")
                .with_description("Configuration cache lookups, by tier and result")
                .build(),
            audit_entries: meter
                .u64_counter("ally.audit.entries")
                .with_unit("{entry}")
                .with_description("Audit entries inserted, by event type and severity")
                .build(),
        }
    }
}

/// Records one finished RPC. `service` and `method` come from the policy table, or are
/// `unknown` for a path the server does not serve, so the label set stays bounded.
pub fn record_rpc(service: &'static str, method: &'static str, code: i32, duration: Duration) {
    instruments().rpc_duration.record(
        duration.as_secs_f64(),
        &[
            KeyValue::new("rpc.system", "grpc"),
            KeyValue::new("rpc.service", service),
            KeyValue::new("rpc.method", method),
            KeyValue::new("rpc.grpc.status_code", i64::from(code)),
        ],
    );
}

/// Cache tier that served a lookup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheTier {
    /// This process's memory.
    Memory,
    /// The shared Redis.
    Redis,
}

impl CacheTier {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheTier::Memory => "memory",
            CacheTier::Redis => "redis",
        }
    }
}

/// Records one lookup in a tier of the configuration cache.
pub fn record_cache_lookup(tier: CacheTier, hit: bool) {
    instruments().cache_lookups.add(
        1,
        &[
            KeyValue::new("cache.name", "configuration"),
            KeyValue::new("cache.tier", tier.as_str()),
            KeyValue::new("cache.result", if hit { "hit" } else { "miss" }),
        ],
    );
}

/// Records one inserted audit entry.
pub fn record_audit_entry(event_type: &str, severity: &str) {
    instruments().audit_entries.add(
        1,
        &[
            KeyValue::new("audit.event_type", event_type.to_string()),
            KeyValue::new("audit.severity", severity.to_string()),
        ],
    );
}

/// Reports the connection pools of `database` at each collection: open connections by state,
/// requests waiting for a connection, and waits that timed out. The callbacks hold only a weak
/// handle, so they report nothing once the database is dropped.
pub fn observe_pools(database: &Database) {
    let meter = meter();

    let weak = database.downgrade();
    meter
        .i64_observable_up_down_counter("db.client.connection.count")
        .with_unit("{connection}")
        .with_description("Open pooled database connections, by state (idle or used)")
        .with_callback(move |observer| {
            for pool in pool_statuses(&weak) {
                let idle = i64::from(pool.idle);
                let used = i64::from(pool.open) - idle;
                observer.observe(idle, &pool_attributes(pool.name, Some("idle")));
                observer.observe(used, &pool_attributes(pool.name, Some("used")));
            }
        })
        .build();

    let weak = database.downgrade();
    meter
        .i64_observable_up_down_counter("db.client.connection.pending_requests")
        .with_unit("{request}")
        .with_description("Requests waiting for a pooled database connection")
        .with_callback(move |observer| {
            for pool in pool_statuses(&weak) {
                let waiting = i64::try_from(pool.waiting).unwrap_or(i64::MAX);
                observer.observe(waiting, &pool_attributes(pool.name, None));
            }
        })
        .build();

    let weak = database.downgrade();
    meter
        .u64_observable_counter("db.client.connection.timeouts")
        .with_unit("{timeout}")
        .with_description("Waits for a pooled database connection that timed out")
        .with_callback(move |observer| {
            for pool in pool_statuses(&weak) {
                observer.observe(pool.timed_out, &pool_attributes(pool.name, None));
            }
        })
        .build();
}

fn pool_statuses(weak: &crate::db::WeakDatabase) -> Vec<PoolStatus> {
    weak.upgrade()
        .map(|database| database.pool_statuses())
        .unwrap_or_default()
}

fn pool_attributes(pool: &'static str, state: Option<&'static str>) -> Vec<KeyValue> {
    let mut attributes = vec![KeyValue::new("db.client.connection.pool.name", pool)];
    if let Some(state) = state {
        attributes.push(KeyValue::new("db.client.connection.state", state));
    }
    attributes
}
