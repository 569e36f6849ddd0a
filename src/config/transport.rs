//! Settings of the gRPC transport: TLS, the deliberate limits on connections and messages, and
//! the per-tenant rate limit.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// TLS for the gRPC server (`server.tls`). Without this section the server speaks plain
/// HTTP/2.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// PEM file with the server certificate first, followed by any intermediate certificates.
    pub cert_file: PathBuf,
    /// PEM file with the private key of the certificate (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// PEM file with the CA certificates that sign client certificates. Setting it turns on
    /// client-certificate verification (mTLS).
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
    /// Whether a client must present a certificate, `required` when unset. Valid only with
    /// `client_ca_file`. A client that presents a certificate must present a valid one.
    #[serde(default)]
    pub client_auth: Option<ClientAuth>,
    /// How long a client may take to complete the TLS handshake.
    #[serde(default = "default_handshake_timeout", with = "humantime_serde")]
    pub handshake_timeout: Duration,
}

/// Whether a client certificate is required or only checked when presented.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuth {
    Required,
    Optional,
}

fn default_handshake_timeout() -> Duration {
    Duration::from_secs(10)
}

/// Deliberate limits on connections, calls and messages (`server.limits`).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitSettings {
    /// Largest request message a service decodes, in bytes. Larger ones fail with
    /// OUT_OF_RANGE.
    pub max_decoding_message_size: usize,
    /// Largest response message a service encodes, in bytes. Larger ones fail with
    /// OUT_OF_RANGE.
    pub max_encoding_message_size: usize,
    /// Concurrent HTTP/2 streams (calls) one connection may open.
    pub max_concurrent_streams: u32,
    /// Largest HTTP/2 header list (all metadata of one call, decoded), in bytes.
    pub max_header_list_size: u32,
    /// Time a handler has to produce its response. A client's shorter `grpc-timeout` wins.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Option<Duration>,
    /// Interval of HTTP/2 PING frames on idle connections.
    #[serde(with = "humantime_serde")]
    pub keepalive_interval: Option<Duration>,
    /// How long the server waits for a PING acknowledgement before it closes the connection.
    #[serde(with = "humantime_serde")]
    pub keepalive_timeout: Duration,
    /// Idle time after which the operating system sends TCP keepalive probes.
    #[serde(with = "humantime_serde")]
    pub tcp_keepalive: Option<Duration>,
}

impl Default for LimitSettings {
    fn default() -> Self {
        LimitSettings {
            max_decoding_message_size: 4 * 1024 * 1024,
            max_encoding_message_size: 16 * 1024 * 1024,
            max_concurrent_streams: 200,
            max_header_list_size: 16 * 1024,
            request_timeout: Some(Duration::from_secs(30)),
            keepalive_interval: Some(Duration::from_secs(30)),
            keepalive_timeout: Duration::from_secs(20),
            tcp_keepalive: Some(Duration::from_secs(60)),
        }
    }
}

impl LimitSettings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let positive = [
            (
                "server.limits.max_decoding_message_size",
                self.max_decoding_message_size as u64,
            ),
            (
                "server.limits.max_encoding_message_size",
                self.max_encoding_message_size as u64,
            ),
            (
                "server.limits.max_concurrent_streams",
                u64::from(self.max_concurrent_streams),
            ),
            (
                "server.limits.max_header_list_size",
                u64::from(self.max_header_list_size),
            ),
        ];
        for (key, value) in positive {
            if value == 0 {
                return Err(ConfigError::invalid(key, "must be at least 1"));
            }
        }
        let durations = [
            ("server.limits.request_timeout", self.request_timeout),
            ("server.limits.keepalive_interval", self.keepalive_interval),
            (
                "server.limits.keepalive_timeout",
                Some(self.keepalive_timeout),
            ),
            ("server.limits.tcp_keepalive", self.tcp_keepalive),
        ];
        for (key, value) in durations {
            if value.is_some_and(|duration| duration.is_zero()) {
                return Err(ConfigError::invalid(
                    key,
                    "must be longer than zero; leave it unset to turn it off",
                ));
            }
        }
        Ok(())
    }
}

impl TlsSettings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.handshake_timeout.is_zero() {
            return Err(ConfigError::invalid(
                "server.tls.handshake_timeout",
                "must be longer than zero",
            ));
        }
        if self.client_auth.is_some() && self.client_ca_file.is_none() {
            return Err(ConfigError::invalid(
                "server.tls.client_auth",
                "needs server.tls.client_ca_file, the CA that signs client certificates",
            ));
        }
        Ok(())
    }
}

/// The per-tenant rate limit (`rate_limit`), set by each tenant's plan.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitSettings {
    /// Whether tenant calls are rate-limited at all.
    pub enabled: bool,
    /// Factor applied to every plan's requests per second and burst, for tests and
    /// benchmarks. 1 applies the plans as published.
    pub scale: f64,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        RateLimitSettings {
            enabled: true,
            scale: 1.0,
        }
    }
}

impl RateLimitSettings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if !self.scale.is_finite() || self.scale <= 0.0 {
            return Err(ConfigError::invalid(
                "rate_limit.scale",
                format!("{} is not a positive number", self.scale),
            ));
        }
        Ok(())
    }
}
