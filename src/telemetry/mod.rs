//! Logs, traces and metrics.
//!
//! Log lines go to stderr: readable text in development and testing, JSON lines in production,
//! at the level `RUST_LOG` sets (default `info`). When `OTEL_EXPORTER_OTLP_ENDPOINT` is set,
//! Ally's spans and metrics are also exported over OTLP/gRPC to that endpoint. Without it no
//! exporter is built and nothing leaves the process. `docs/observability.md` lists the span
//! and metric names and `docs/logging.md` the logging policy.

pub mod metrics;
mod rpc;

use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Level;
use tracing_subscriber::filter::{EnvFilter, FilterExt, Targets};
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, fmt};

pub use self::rpc::{RpcTelemetryLayer, RpcTelemetryService, record_caller};
use crate::config::Environment;

/// The standard OpenTelemetry variable that turns OTLP export on.
pub const OTLP_ENDPOINT_VARIABLE: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";

/// Name under which spans and metrics are exported, unless `OTEL_SERVICE_NAME` sets another.
pub const SERVICE_NAME: &str = "ally";

/// Maximum wait for one OTLP export, so an unreachable collector cannot hold up shutdown long.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// Dependencies whose events the log output never shows below a level, whatever `RUST_LOG`
/// sets. mysql_async (0.37, `src/conn/routines/exec.rs`) records every bound parameter of a
/// statement, which includes password hashes and message bodies, on its spans when DEBUG is on
/// and its `tracing` feature is built. That feature is off in Ally's build today, so the cap
/// guards against a dependency turning it on.
///
/// The integration test `telemetry_secrets` logs a login, an API key creation and a message at
/// TRACE for every target and checks that no secret reaches the output.
const DEPENDENCY_LEVEL_CAPS: &[(&str, Level)] = &[("mysql_async", Level::INFO)];

/// Settings of [`install`].
pub struct TelemetryOptions {
    /// Chooses text or JSON log lines.
    pub environment: Environment,
    /// Log filter directives in `RUST_LOG` syntax, such as `info,ally=debug`.
    pub log_filter: String,
    /// OTLP/gRPC endpoint, such as `http://127.0.0.1:4317`. `None`: nothing is exported.
    pub otlp_endpoint: Option<String>,
    /// Destination of log lines.
    pub writer: BoxMakeWriter,
}

impl TelemetryOptions {
    /// Reads `RUST_LOG` and `OTEL_EXPORTER_OTLP_ENDPOINT` from the process environment, and
    /// writes logs to stderr.
    pub fn from_env(environment: Environment) -> TelemetryOptions {
        let log_filter = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".to_string());
        let otlp_endpoint = std::env::var(OTLP_ENDPOINT_VARIABLE)
            .ok()
            .filter(|endpoint| !endpoint.trim().is_empty());
        TelemetryOptions {
            environment,
            log_filter,
            otlp_endpoint,
            writer: BoxMakeWriter::new(std::io::stderr),
        }
    }
}

/// A failure to set up logging or export.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error(
        "invalid log filter `{filter}`: {message}; see the RUST_LOG syntax of tracing-subscriber"
    )]
    Filter { filter: String, message: String },
    #[error("building the OTLP exporter for {endpoint} failed: {message}")]
    Exporter { endpoint: String, message: String },
    #[error("a global tracing subscriber is already installed")]
    AlreadyInstalled,
}

/// The installed exporters. Call [`Telemetry::shutdown`] before the process exits so buffered
/// spans and metrics are sent.
#[must_use = "dropping the handle without shutdown() loses the spans and metrics still buffered"]
pub struct Telemetry {
    tracer_provider: Option<SdkTracerProvider>,
    meter_provider: Option<SdkMeterProvider>,
}

impl Telemetry {
    /// Returns whether spans and metrics are exported over OTLP.
    pub fn is_exporting(&self) -> bool {
        self.tracer_provider.is_some()
    }

    /// Sends buffered spans and metrics now. Blocks until the exporters respond or time out, so
    /// async code calls it through `spawn_blocking`.
    pub fn flush(&self) {
        if let Some(provider) = &self.tracer_provider
            && let Err(error) = provider.force_flush()
        {
            tracing::warn!(error = %error, "flushing spans to the OTLP endpoint failed");
        }
        if let Some(provider) = &self.meter_provider
            && let Err(error) = provider.force_flush()
        {
            tracing::warn!(error = %error, "flushing metrics to the OTLP endpoint failed");
        }
    }

    /// Flushes and stops the exporters. Blocks like [`Telemetry::flush`].
    pub fn shutdown(self) {
        if let Some(provider) = self.tracer_provider
            && let Err(error) = provider.shutdown()
        {
            eprintln!("ally: sending the last spans to the OTLP endpoint failed: {error}");
        }
        if let Some(provider) = self.meter_provider
            && let Err(error) = provider.shutdown()
        {
            eprintln!("ally: sending the last metrics to the OTLP endpoint failed: {error}");
        }
    }
}

/// Installs the global subscriber from the process environment. Must run inside a Tokio runtime
/// when `OTEL_EXPORTER_OTLP_ENDPOINT` is set, because the gRPC exporter starts its connection
/// there.
pub fn init(environment: Environment) -> Result<Telemetry, TelemetryError> {
    install(TelemetryOptions::from_env(environment))
}

/// Installs the global subscriber and, with an endpoint, the OTLP exporters and the global
/// meter provider.
pub fn install(options: TelemetryOptions) -> Result<Telemetry, TelemetryError> {
    let log_filter = EnvFilter::builder()
        .parse(&options.log_filter)
        .map_err(|error| TelemetryError::Filter {
            filter: options.log_filter.clone(),
            message: error.to_string(),
        })?;
    let log_filter = log_filter.and(dependency_caps());
    let log_layer = match options.environment {
        Environment::Production => fmt::layer()
            .json()
            .flatten_event(true)
            .with_writer(options.writer)
            .boxed(),
        Environment::Development | Environment::Testing => {
            fmt::layer().with_writer(options.writer).boxed()
        }
    }
    .with_filter(log_filter);

    let (telemetry, trace_layer) = match &options.otlp_endpoint {
        Some(endpoint) => {
            let resource = resource();
            let tracer_provider = tracer_provider(endpoint, resource.clone())?;
            let meter_provider = meter_provider(endpoint, resource)?;
            let tracer = tracer_provider.tracer(SERVICE_NAME);
            // Only Ally's own spans are exported: the exporter's own gRPC calls create h2 and
            // tonic spans, which would otherwise be exported in turn.
            let layer = tracing_opentelemetry::layer()
                .with_tracer(tracer)
                .with_filter(Targets::new().with_target("ally", Level::INFO));
            let telemetry = Telemetry {
                tracer_provider: Some(tracer_provider),
                meter_provider: Some(meter_provider),
            };
            (telemetry, Some(layer))
        }
        None => {
            let telemetry = Telemetry {
                tracer_provider: None,
                meter_provider: None,
            };
            (telemetry, None)
        }
    };

    let installed = tracing_subscriber::registry()
        .with(log_layer)
        .with(trace_layer)
        .try_init();
    if installed.is_err() {
        telemetry.shutdown();
        return Err(TelemetryError::AlreadyInstalled);
    }
    if let Some(provider) = &telemetry.meter_provider {
        opentelemetry::global::set_meter_provider(provider.clone());
    }
    metrics::register();
    Ok(telemetry)
}

/// Builds the filter that keeps the targets of [`DEPENDENCY_LEVEL_CAPS`] at their cap.
fn dependency_caps() -> Targets {
    DEPENDENCY_LEVEL_CAPS.iter().fold(
        Targets::new().with_default(Level::TRACE),
        |targets, (target, level)| targets.with_target(*target, *level),
    )
}

/// Describes this process: `service.name` (`ally`, or `OTEL_SERVICE_NAME`), `service.version`,
/// and what `OTEL_RESOURCE_ATTRIBUTES` adds.
fn resource() -> Resource {
    let mut builder = Resource::builder()
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")));
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        builder = builder.with_service_name(SERVICE_NAME);
    }
    builder.build()
}

fn tracer_provider(
    endpoint: &str,
    resource: Resource,
) -> Result<SdkTracerProvider, TelemetryError> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .with_timeout(EXPORT_TIMEOUT)
        .build()
        .map_err(|error| TelemetryError::Exporter {
            endpoint: endpoint.to_string(),
            message: error.to_string(),
        })?;
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}

fn meter_provider(endpoint: &str, resource: Resource) -> Result<SdkMeterProvider, TelemetryError> {
    let exporter = opentelemetry_otlp::MetricExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .with_timeout(EXPORT_TIMEOUT)
        .build()
        .map_err(|error| TelemetryError::Exporter {
            endpoint: endpoint.to_string(),
            message: error.to_string(),
        })?;
    Ok(SdkMeterProvider::builder()
        .with_periodic_exporter(exporter)
        .with_resource(resource)
        .build())
}
