//! The deliberate limits of `server.limits` and TLS, applied to tonic's server builder.

use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;

use super::ServeError;
use crate::config::ServerSettings;

/// Builds the server with TLS (when `server.tls` is set) and the connection limits.
pub(super) fn server_builder(settings: &ServerSettings) -> Result<Server, ServeError> {
    let limits = &settings.limits;
    let mut builder = Server::builder()
        .max_concurrent_streams(limits.max_concurrent_streams)
        .http2_max_header_list_size(limits.max_header_list_size)
        .http2_keepalive_interval(limits.keepalive_interval)
        .http2_keepalive_timeout(Some(limits.keepalive_timeout));
    if let Some(timeout) = limits.request_timeout {
        builder = builder.timeout(timeout);
    }
    if let Some(tls) = &settings.tls {
        builder = builder.tls_config(super::tls::server_config(tls)?)?;
    }
    Ok(builder)
}

/// Applies TCP options to accepted connections. The builder's own TCP settings apply only
/// when tonic binds the socket itself, which Ally does not.
pub(super) fn incoming(
    listener: tokio::net::TcpListener,
    settings: &ServerSettings,
) -> TcpIncoming {
    TcpIncoming::from(listener)
        .with_nodelay(Some(true))
        .with_keepalive(settings.limits.tcp_keepalive)
}

/// Sets the message size limits of `server.limits` on a generated service.
macro_rules! sized {
    ($service:expr, $limits:expr) => {
        $service
            .max_decoding_message_size($limits.max_decoding_message_size)
            .max_encoding_message_size($limits.max_encoding_message_size)
    };
}
pub(super) use sized;
