//! TLS settings for MySQL connections, from the connection string's SslMode.
//!
//! | SslMode   | encrypts          | verifies the chain         | verifies the host name |
//! |-----------|-------------------|----------------------------|------------------------|
//! | None      | no                | no                         | no                     |
//! | Preferred | when offered      | no                         | no                     |
//! | Required  | yes               | only when SslCa is given   | no                     |
//! | VerifyCA  | yes               | yes                        | no                     |
//! | VerifyFull| yes               | yes                        | yes                    |
//!
//! A CA file, when given, replaces the built-in web PKI roots. Otherwise VerifyCA and
//! VerifyFull check against the built-in roots.
//!
//! mysql_async verifies the host name whenever it verifies the chain, and its switch to skip
//! the name check does not work with the rustls version it uses (0.23). So for chain-only modes
//! Ally first opens a short probe connection that performs the MySQL TLS upgrade and verifies
//! the server's chain without the name check. When the chain is valid but the name differs, the
//! real connection verifies the chain again under a name that the certificate does present.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mysql_async::{ClientIdentity, SslOpts};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::debug;

use super::ConnectError;
use crate::config::database_url::{MysqlTarget, SslMode};

/// Builds mysql_async's TLS options for `target`, probing the server's certificate first when
/// the mode verifies the chain but not the host name.
pub(super) async fn ssl_opts(
    target: &MysqlTarget,
    timeout: Duration,
) -> Result<Option<SslOpts>, ConnectError> {
    let verify_chain = match target.ssl_mode {
        SslMode::None => return Ok(None),
        SslMode::Preferred => false,
        SslMode::Required => target.ssl_ca.is_some(),
        SslMode::VerifyCa | SslMode::VerifyFull => true,
    };

    let mut opts = SslOpts::default();
    if let (Some(cert), Some(key)) = (&target.ssl_cert, &target.ssl_key) {
        opts = opts.with_client_identity(Some(ClientIdentity::new(
            cert.clone().into(),
            key.clone().into(),
        )));
    } else if target.ssl_cert.is_some() || target.ssl_key.is_some() {
        return Err(ConnectError::TlsConfig(
            "SslCert and SslKey must be given together".into(),
        ));
    }
    if !verify_chain {
        return Ok(Some(opts.with_danger_accept_invalid_certs(true)));
    }

    if let Some(ca) = &target.ssl_ca {
        check_readable(ca, "SslCa")?;
        opts = opts
            .with_root_certs(vec![ca.clone().into()])
            .with_disable_built_in_roots(true);
    }
    if target.ssl_mode != SslMode::VerifyFull
        && let Some(name) = probe_presented_name(target, timeout).await?
    {
        debug!(host = %target.host, certificate_name = %name, "verifying the server chain under a name its certificate presents");
        opts = opts.with_danger_tls_hostname_override(Some(name));
    }
    Ok(Some(opts))
}

fn check_readable(path: &Path, key: &str) -> Result<(), ConnectError> {
    std::fs::metadata(path).map(|_| ()).map_err(|error| {
        ConnectError::TlsConfig(format!(
            "{key} file {} cannot be read: {error}",
            path.display()
        ))
    })
}

/// Connects, upgrades to TLS as a MySQL client would, and verifies the server's certificate
/// chain. Returns `None` when the certificate is also valid for the host name, or a name the
/// certificate presents when only the name differs. Fails when the chain does not verify.
async fn probe_presented_name(
    target: &MysqlTarget,
    timeout: Duration,
) -> Result<Option<String>, ConnectError> {
    let address = format!("{}:{}", target.host, target.port);
    let verifier = Arc::new(ChainVerifier::new(root_store(target.ssl_ca.as_deref())?)?);
    let builder = rustls::ClientConfig::builder()
        .dangerous()
        .with_custom_certificate_verifier(verifier.clone());
    let config = match (&target.ssl_cert, &target.ssl_key) {
        (Some(cert), Some(key)) => {
            let chain = read_pem_certs(cert, "SslCert")?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|error| {
                ConnectError::TlsConfig(format!("SslKey {} cannot be read: {error}", key.display()))
            })?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|error| ConnectError::TlsConfig(format!("SslCert/SslKey: {error}")))?
        }
        _ => builder.with_no_client_auth(),
    };
    let server_name = ServerName::try_from(target.host.clone())
        .map_err(|error| ConnectError::TlsConfig(format!("host `{}`: {error}", target.host)))?;

    let handshake = async {
        let mut stream = TcpStream::connect(&address).await?;
        request_tls_upgrade(&mut stream).await?;
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        connector.connect(server_name, stream).await.map(drop)
    };
    let result = tokio::time::timeout(timeout, handshake).await;

    match verifier.outcome() {
        Some(Outcome::Verified) => Ok(None),
        Some(Outcome::NameMismatch(names)) => usable_name(&names).map(Some).ok_or_else(|| {
            ConnectError::TlsConfig(
                "the server certificate presents no DNS name or IP address to verify the chain \
                 under; add a subjectAltName to it or connect with SslMode=VerifyFull"
                    .into(),
            )
        }),
        Some(Outcome::Failed(error)) => Err(ConnectError::Tls(error)),
        None => match result {
            Err(_) => Err(ConnectError::TimedOut { address, timeout }),
            Ok(Err(error)) => Err(ConnectError::TlsProbe(error)),
            Ok(Ok(())) => Err(ConnectError::TlsConfig(
                "the server finished the TLS handshake without a certificate".into(),
            )),
        },
    }
}

/// Returns the DNS names and IP addresses of a certificate's subjectAltName extension.
fn subject_alt_names(certificate: &CertificateDer<'_>) -> Vec<String> {
    use x509_parser::extensions::GeneralName;

    let Ok((_, parsed)) = x509_parser::parse_x509_certificate(certificate.as_ref()) else {
        return Vec::new();
    };
    let Ok(Some(extension)) = parsed.subject_alternative_name() else {
        return Vec::new();
    };
    extension
        .value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::DNSName(dns) => Some(dns.to_string()),
            GeneralName::IPAddress(bytes) => match bytes.len() {
                4 => <[u8; 4]>::try_from(*bytes)
                    .ok()
                    .map(|b| std::net::IpAddr::from(b).to_string()),
                16 => <[u8; 16]>::try_from(*bytes)
                    .ok()
                    .map(|b| std::net::IpAddr::from(b).to_string()),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// Picks a name from a certificate's subject names that a TLS client can verify against. A
/// wildcard name gets a concrete first label so that it matches itself.
fn usable_name(names: &[String]) -> Option<String> {
    let concrete = names.iter().find(|name| !name.starts_with("*."));
    let chosen = concrete.or_else(|| names.first())?;
    match chosen.strip_prefix("*.") {
        Some(rest) => Some(format!("verify-ca.{rest}")),
        None => Some(chosen.clone()),
    }
}

/// Returns whether the server's greeting offers TLS, and false when the server cannot be
/// reached.
pub(super) async fn server_offers_tls(target: &MysqlTarget, timeout: Duration) -> bool {
    const CLIENT_SSL: u32 = 0x800;
    let read = async {
        let mut stream = TcpStream::connect((target.host.as_str(), target.port)).await?;
        let greeting = read_packet(&mut stream).await?.1;
        greeting_capabilities(&greeting)
    };
    matches!(
        tokio::time::timeout(timeout, read).await,
        Ok(Ok(capabilities)) if capabilities & CLIENT_SSL != 0
    )
}

/// Reads one protocol packet and returns its sequence number and payload.
async fn read_packet(stream: &mut TcpStream) -> std::io::Result<(u8, Vec<u8>)> {
    let mut header = [0u8; 4];
    stream.read_exact(&mut header).await?;
    let length = u32::from_le_bytes([header[0], header[1], header[2], 0]) as usize;
    let mut payload = vec![0u8; length];
    stream.read_exact(&mut payload).await?;
    Ok((header[3], payload))
}

/// Reads the server's greeting and sends the protocol's SSLRequest packet, after which the
/// server expects a TLS ClientHello.
async fn request_tls_upgrade(stream: &mut TcpStream) -> std::io::Result<()> {
    const CLIENT_LONG_PASSWORD: u32 = 0x1;
    const CLIENT_PROTOCOL_41: u32 = 0x200;
    const CLIENT_SSL: u32 = 0x800;
    const CLIENT_SECURE_CONNECTION: u32 = 0x8000;
    const UTF8MB4_GENERAL_CI: u8 = 45;
    const MAX_PACKET: u32 = 16 * 1024 * 1024;

    let (sequence, greeting) = read_packet(stream).await?;
    let capabilities = greeting_capabilities(&greeting)?;
    if capabilities & CLIENT_SSL == 0 {
        return Err(std::io::Error::other("the server does not offer TLS"));
    }

    let flags = CLIENT_LONG_PASSWORD | CLIENT_PROTOCOL_41 | CLIENT_SSL | CLIENT_SECURE_CONNECTION;
    let mut packet = Vec::with_capacity(36);
    packet.extend_from_slice(&[32, 0, 0, sequence.wrapping_add(1)]);
    packet.extend_from_slice(&flags.to_le_bytes());
    packet.extend_from_slice(&MAX_PACKET.to_le_bytes());
    packet.push(UTF8MB4_GENERAL_CI);
    packet.extend_from_slice(&[0u8; 23]);
    stream.write_all(&packet).await
}

/// Returns the lower capability flags of a protocol-10 greeting, or the server's error.
fn greeting_capabilities(greeting: &[u8]) -> std::io::Result<u32> {
    let invalid = || std::io::Error::other("the server sent a malformed greeting");
    match greeting.first() {
        Some(10) => {}
        Some(0xff) => {
            // An error packet: code (2 bytes), optional '#' and SQL state (6 bytes), message.
            let message = greeting.get(3..).unwrap_or_default();
            let message = message
                .strip_prefix(b"#")
                .map_or(message, |m| m.get(5..).unwrap_or_default());
            return Err(std::io::Error::other(format!(
                "the server refused the connection: {}",
                String::from_utf8_lossy(message)
            )));
        }
        _ => return Err(invalid()),
    }
    let version_end = greeting[1..]
        .iter()
        .position(|&b| b == 0)
        .ok_or_else(invalid)?
        + 1;
    // After the version: connection id (4), auth data (8), filler (1), capabilities (2).
    let offset = version_end + 1 + 4 + 8 + 1;
    let bytes = greeting.get(offset..offset + 2).ok_or_else(invalid)?;
    Ok(u32::from(u16::from_le_bytes([bytes[0], bytes[1]])))
}

fn root_store(ca: Option<&Path>) -> Result<RootCertStore, ConnectError> {
    let mut store = RootCertStore::empty();
    match ca {
        Some(path) => {
            for cert in read_pem_certs(path, "SslCa")? {
                store.add(cert).map_err(|error| {
                    ConnectError::TlsConfig(format!("SslCa {}: {error}", path.display()))
                })?;
            }
        }
        None => store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    Ok(store)
}

fn read_pem_certs(path: &Path, key: &str) -> Result<Vec<CertificateDer<'static>>, ConnectError> {
    let unreadable = |error: &dyn std::fmt::Display| {
        ConnectError::TlsConfig(format!("{key} {} cannot be read: {error}", path.display()))
    };
    let certs = CertificateDer::pem_file_iter(PathBuf::from(path))
        .map_err(|error| unreadable(&error))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| unreadable(&error))?;
    if certs.is_empty() {
        return Err(unreadable(&"no PEM certificate found"));
    }
    Ok(certs)
}

enum Outcome {
    Verified,
    NameMismatch(Vec<String>),
    Failed(rustls::Error),
}

/// Verifies the chain like rustls' web PKI verifier, and records instead of failing when only
/// the host name does not match. Used by the probe alone, never for a connection that carries
/// data.
struct ChainVerifier {
    inner: Arc<WebPkiServerVerifier>,
    outcome: Mutex<Option<Outcome>>,
}

impl std::fmt::Debug for ChainVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChainVerifier").finish_non_exhaustive()
    }
}

impl ChainVerifier {
    fn new(roots: RootCertStore) -> Result<Self, ConnectError> {
        let inner = WebPkiServerVerifier::builder(Arc::new(roots))
            .build()
            .map_err(|error| ConnectError::TlsConfig(format!("certificate roots: {error}")))?;
        Ok(ChainVerifier {
            inner,
            outcome: Mutex::new(None),
        })
    }

    fn outcome(&self) -> Option<Outcome> {
        self.outcome.lock().ok()?.take()
    }

    fn record(&self, outcome: Outcome) {
        if let Ok(mut slot) = self.outcome.lock() {
            *slot = Some(outcome);
        }
    }
}

impl ServerCertVerifier for ChainVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let result = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        );
        // webpki checks the chain before the name, so a name error means the chain is valid.
        match result {
            Ok(verified) => {
                self.record(Outcome::Verified);
                Ok(verified)
            }
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => {
                self.record(Outcome::NameMismatch(subject_alt_names(end_entity)));
                Ok(ServerCertVerified::assertion())
            }
            Err(error) => {
                self.record(Outcome::Failed(error.clone()));
                Err(error)
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usable_name_prefers_concrete_names() {
        let names = vec!["*.example.com".to_string(), "db.example.com".to_string()];
        assert_eq!(usable_name(&names).as_deref(), Some("db.example.com"));
    }

    #[test]
    fn usable_name_fills_wildcard() {
        let names = vec!["*.mysql.example.com".to_string()];
        assert_eq!(
            usable_name(&names).as_deref(),
            Some("verify-ca.mysql.example.com")
        );
    }

    #[test]
    fn usable_name_empty() {
        assert_eq!(usable_name(&[]), None);
    }

    #[test]
    fn greeting_error_packet() {
        let mut packet = vec![0xff, 0x6a, 0x04, b'#'];
        packet.extend_from_slice(b"HY000Host is blocked");
        let error = greeting_capabilities(&packet).unwrap_err();
        assert!(error.to_string().contains("Host is blocked"), "{error}");
    }

    #[test]
    fn greeting_capabilities_read() {
        let mut packet = vec![10];
        packet.extend_from_slice(b"10.11.19-MariaDB\0");
        packet.extend_from_slice(&[1, 0, 0, 0]);
        packet.extend_from_slice(&[0; 8]);
        packet.push(0);
        packet.extend_from_slice(&0xf7feu16.to_le_bytes());
        assert_eq!(greeting_capabilities(&packet).unwrap(), 0xf7fe);
    }

    #[test]
    fn greeting_truncated() {
        assert!(greeting_capabilities(&[10, b'x', 0, 1]).is_err());
    }
}
