//! The tenant layer: a tower layer in front of every service that resolves the caller before
//! any handler runs, stores a [`RequestContext`](super::RequestContext) in the request's
//! extensions, and returns the request id in the response metadata.

use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::future::BoxFuture;
use http::{HeaderValue, Request, Response};
use tonic::body::Body;
use tonic::transport::server::TcpConnectInfo;
use tower::{Layer, Service};

use super::authenticate::{Authenticator, Call, headers};

/// Adds the tenant layer to a server.
#[derive(Clone)]
pub struct TenantLayer {
    authenticator: Arc<Authenticator>,
}

impl TenantLayer {
    pub fn new(authenticator: Arc<Authenticator>) -> TenantLayer {
        TenantLayer { authenticator }
    }
}

impl<S> Layer<S> for TenantLayer {
    type Service = TenantService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TenantService {
            inner,
            authenticator: self.authenticator.clone(),
        }
    }
}

/// The service [`TenantLayer`] wraps around each gRPC service.
#[derive(Clone)]
pub struct TenantService<S> {
    inner: S,
    authenticator: Arc<Authenticator>,
}

impl<S, B> Service<Request<B>> for TenantService<S>
where
    S: Service<Request<B>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        // The clone is not ready yet, so call the instance that was polled and keep the clone.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let authenticator = self.authenticator.clone();

        Box::pin(async move {
            let request_id = match Authenticator::request_id(request.headers()) {
                Ok(id) => id,
                Err(error) => return Ok(tonic::Status::from(error).into_http()),
            };
            let client_ip = request
                .extensions()
                .get::<TcpConnectInfo>()
                .and_then(|info| info.remote_addr())
                .map(|addr| addr.ip().to_string());
            let call = Call {
                method: request.uri().path(),
                headers: request.headers(),
                authority: request.uri().authority().map(|a| a.as_str()),
                client_ip,
            };

            crate::telemetry::record_caller(&request_id, None);
            let mut response = match authenticator.authenticate(&call, request_id.clone()).await {
                Ok(context) => {
                    crate::telemetry::record_caller(&request_id, context.tenant_id.as_deref());
                    request.extensions_mut().insert(context);
                    inner.call(request).await?
                }
                Err(error) => tonic::Status::from(error).into_http(),
            };
            if let Ok(value) = HeaderValue::from_str(&request_id) {
                response.headers_mut().insert(headers::REQUEST_ID, value);
            }
            Ok(response)
        })
    }
}
