//! The gRPC baseline: a tonic service that does no work, run in a child process with the same
//! server and runtime settings as Ally.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Server};
use tonic::{Request, Response, Status};

use crate::load::AsyncOp;
use crate::proto::noop_service_client::NoopServiceClient;
use crate::proto::noop_service_server::{NoopService, NoopServiceServer};
use crate::proto::{EchoRequest, EchoResponse};

struct Noop;

#[tonic::async_trait]
impl NoopService for Noop {
    async fn echo(&self, request: Request<EchoRequest>) -> Result<Response<EchoResponse>, Status> {
        let size = request.get_ref().response_bytes as usize;
        Ok(Response::new(EchoResponse {
            payload: vec![b'x'; size],
        }))
    }
}

/// Runs the no-op server until SIGTERM, on a multi-threaded runtime built as `ally` builds its
/// own, with the HTTP/2 keep-alive and TCP_NODELAY settings of Ally's server.
pub fn serve() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let mut terminate = signal(SignalKind::terminate())?;
        eprintln!("noop server listening address={address}");
        Server::builder()
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .add_service(NoopServiceServer::new(Noop))
            .serve_with_incoming_shutdown(
                TcpIncoming::from(listener).with_nodelay(Some(true)),
                async move {
                    terminate.recv().await;
                },
            )
            .await?;
        Ok(())
    })
}

/// Sizes and metadata of the Ally call that a no-op call stands for.
#[derive(Clone, Debug)]
pub struct Shape {
    pub request_bytes: usize,
    pub response_bytes: usize,
    /// Metadata the Ally call sends, such as its credential.
    pub metadata: Vec<(&'static str, String)>,
}

/// Returns a load operation that calls Echo with requests and responses of `shape`'s sizes,
/// spreading the workers over `channels`.
pub fn echo_op(channels: &[Channel], shape: &Shape) -> AsyncOp {
    let clients: Vec<NoopServiceClient<Channel>> = channels
        .iter()
        .map(|channel| NoopServiceClient::new(channel.clone()))
        .collect();
    // Field 1's tag and length prefix and field 2 take about 6 bytes of the request.
    let payload = vec![b'x'; shape.request_bytes.saturating_sub(6)];
    let response_bytes = u32::try_from(shape.response_bytes).unwrap_or(u32::MAX);
    let metadata: Vec<(&'static str, tonic::metadata::MetadataValue<_>)> = shape
        .metadata
        .iter()
        .map(|(key, value)| (*key, value.parse().expect("ASCII metadata")))
        .collect();
    let clients = Arc::new(clients);
    let metadata = Arc::new(metadata);
    Arc::new(move |worker, _sequence| {
        let mut client = clients[worker % clients.len()].clone();
        let mut request = Request::new(EchoRequest {
            payload: payload.clone(),
            response_bytes,
        });
        for (key, value) in metadata.iter() {
            request.metadata_mut().insert(*key, value.clone());
        }
        Box::pin(async move {
            client
                .echo(request)
                .await
                .map(drop)
                .map_err(|status| format!("Echo failed: {status}"))
        })
    })
}
