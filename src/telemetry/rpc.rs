//! The RPC span and metrics: a tower layer, outermost in front of every service, that opens
//! one span per call and joins the caller's trace from the W3C `traceparent` header. When the
//! response's last frame is sent, it records the gRPC status code and the duration on the span,
//! in the `rpc.server.call.duration` histogram and in one log line.

use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use http::{HeaderMap, Request, Response};
use http_body::{Body as HttpBody, Frame, SizeHint};
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tonic::Code;
use tonic::body::Body;
use tower::{Layer, Service};
use tracing::{Instrument, Level, Span, field};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::metrics;
use crate::auth::policy;

/// Label of a service or method that the server does not serve.
const UNKNOWN: &str = "unknown";

/// Records the caller that the tenant layer resolved on the current RPC span.
pub fn record_caller(request_id: &str, tenant_id: Option<&str>) {
    let span = Span::current();
    span.record("request.id", request_id);
    if let Some(tenant_id) = tenant_id {
        span.record("tenant.id", tenant_id);
    }
}

/// Adds the RPC span and metrics to a server. Add it before the tenant layer, so that the
/// tenant layer runs inside the span.
#[derive(Clone, Copy, Debug, Default)]
pub struct RpcTelemetryLayer;

impl<S> Layer<S> for RpcTelemetryLayer {
    type Service = RpcTelemetryService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RpcTelemetryService { inner }
    }
}

/// The service [`RpcTelemetryLayer`] wraps around each gRPC service.
#[derive(Clone, Debug)]
pub struct RpcTelemetryService<S> {
    inner: S,
}

impl<S, B> Service<Request<B>> for RpcTelemetryService<S>
where
    S: Service<Request<B>, Response = Response<Body>>,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let call = CallRecord::start(request.uri().path(), request.headers());
        let span = call.span.clone();
        let response = self.inner.call(request).instrument(span);

        Box::pin(async move {
            let mut call = call;
            let response = response.await?;
            if let Some(code) = grpc_status(response.headers()) {
                call.code = Some(code);
            }
            Ok(response.map(|body| {
                Body::new(RecordedBody {
                    inner: body,
                    call: Some(call),
                })
            }))
        })
    }
}

/// One RPC in flight. Dropping it finishes the RPC: with the status code seen in the response,
/// or CANCELLED when the response ended before its trailers (the client went away).
struct CallRecord {
    span: Span,
    started: Instant,
    service: &'static str,
    method: &'static str,
    health_or_reflection: bool,
    code: Option<i32>,
}

impl CallRecord {
    fn start(path: &str, headers: &HeaderMap) -> CallRecord {
        // Metric labels come from the policy table, so a client cannot add label values.
        let (service, method) = match policy::rule_for(path) {
            Some(rule) => split_path(rule.method).unwrap_or((UNKNOWN, UNKNOWN)),
            None => (UNKNOWN, UNKNOWN),
        };
        let health_or_reflection =
            service.starts_with("grpc.health.") || service.starts_with("grpc.reflection.");
        let span = tracing::info_span!(
            "rpc",
            otel.name = path.trim_start_matches('/'),
            otel.kind = "server",
            otel.status_code = field::Empty,
            rpc.system = "grpc",
            rpc.service = service,
            rpc.method = method,
            request.id = field::Empty,
            tenant.id = field::Empty,
            rpc.grpc.status_code = field::Empty,
            duration_ms = field::Empty,
        );
        let parent = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
        // Fails only when no OpenTelemetry layer is installed, and then there is no trace to
        // join.
        let _ = span.set_parent(parent);

        CallRecord {
            span,
            started: Instant::now(),
            service,
            method,
            health_or_reflection,
            code: None,
        }
    }
}

impl Drop for CallRecord {
    fn drop(&mut self) {
        let code = self.code.unwrap_or(Code::Cancelled as i32);
        let elapsed = self.started.elapsed();
        let duration_ms = elapsed.as_secs_f64() * 1000.0;

        self.span.record("rpc.grpc.status_code", code);
        self.span.record("duration_ms", duration_ms);
        if is_server_error(code) {
            self.span.record("otel.status_code", "ERROR");
        }
        metrics::record_rpc(self.service, self.method, code, elapsed);

        let status = Code::from_i32(code).description();
        if self.health_or_reflection {
            tracing::event!(parent: &self.span, Level::DEBUG, rpc.grpc.status_code = code, duration_ms, "RPC finished: {status}");
        } else {
            tracing::event!(parent: &self.span, Level::INFO, rpc.grpc.status_code = code, duration_ms, "RPC finished: {status}");
        }
    }
}

/// Splits `/package.Service/Method` into the service and the method.
fn split_path(path: &'static str) -> Option<(&'static str, &'static str)> {
    path.strip_prefix('/')?.split_once('/')
}

/// Returns whether a status code means the server failed, as the OpenTelemetry conventions for
/// gRPC servers define it. Client errors such as NOT_FOUND leave the span's status unset.
fn is_server_error(code: i32) -> bool {
    matches!(
        Code::from_i32(code),
        Code::Unknown
            | Code::DeadlineExceeded
            | Code::Unimplemented
            | Code::Internal
            | Code::Unavailable
            | Code::DataLoss
    )
}

/// Reads `grpc-status` from response headers (a trailers-only response) or trailers.
fn grpc_status(headers: &HeaderMap) -> Option<i32> {
    headers
        .get("grpc-status")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse().ok())
}

struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|name| name.as_str()).collect()
    }
}

pin_project_lite::pin_project! {
    /// A response body that finishes its [`CallRecord`] once the last frame has gone out.
    struct RecordedBody {
        #[pin]
        inner: Body,
        call: Option<CallRecord>,
    }
}

impl HttpBody for RecordedBody {
    type Data = <Body as HttpBody>::Data;
    type Error = <Body as HttpBody>::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        match &frame {
            Some(Ok(frame)) => {
                if let Some(trailers) = frame.trailers_ref()
                    && let Some(call) = this.call.as_mut()
                {
                    call.code = grpc_status(trailers).or(call.code);
                }
            }
            Some(Err(_)) => {
                if let Some(call) = this.call.as_mut() {
                    call.code = call.code.or(Some(Code::Internal as i32));
                }
            }
            None => {
                this.call.take();
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
