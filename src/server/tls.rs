//! TLS and mTLS for the gRPC server, from `server.tls`.
//!
//! tonic parses the PEM files itself, but reports every problem as the same bare parse error.
//! The files are therefore read and checked here first with rustls, so that a bad file stops
//! the start with the setting and path that caused it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};

use crate::config::{ClientAuth, TlsSettings};

/// A TLS file that cannot be used. The message never contains the file's contents.
#[derive(Debug, thiserror::Error)]
#[error("invalid setting `{setting}`: {path}: {problem}")]
pub struct TlsFileError {
    pub setting: &'static str,
    pub path: PathBuf,
    pub problem: String,
}

impl TlsFileError {
    fn new(setting: &'static str, path: &Path, problem: impl Into<String>) -> TlsFileError {
        TlsFileError {
            setting,
            path: path.to_path_buf(),
            problem: problem.into(),
        }
    }
}

/// Reads and checks the files of `settings` and builds tonic's TLS configuration.
pub fn server_config(settings: &TlsSettings) -> Result<ServerTlsConfig, TlsFileError> {
    let cert_setting = "server.tls.cert_file";
    let key_setting = "server.tls.key_file";
    let cert_pem = read(cert_setting, &settings.cert_file)?;
    let chain = certificates(cert_setting, &settings.cert_file, &cert_pem)?;
    let key_pem = read(key_setting, &settings.key_file)?;
    // The parser's errors may quote lines of the file, so none of them is passed on.
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| {
        TlsFileError::new(
            key_setting,
            &settings.key_file,
            "contains no PEM private key (PKCS#8, PKCS#1 or SEC1)",
        )
    })?;
    rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|error| TlsFileError::new(cert_setting, &settings.cert_file, error.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|error| {
            TlsFileError::new(
                key_setting,
                &settings.key_file,
                format!("cannot be used with {cert_setting}: {error}"),
            )
        })?;

    let mut config = ServerTlsConfig::new()
        .identity(Identity::from_pem(cert_pem, key_pem))
        .timeout(settings.handshake_timeout);
    if let Some(ca_file) = &settings.client_ca_file {
        let ca_pem = client_ca(ca_file)?;
        let optional = settings.client_auth == Some(ClientAuth::Optional);
        config = config
            .client_ca_root(Certificate::from_pem(ca_pem))
            .client_auth_optional(optional);
    }
    Ok(config)
}

/// Reads the client CA bundle and checks that rustls can verify client certificates with it.
fn client_ca(path: &Path) -> Result<Vec<u8>, TlsFileError> {
    let setting = "server.tls.client_ca_file";
    let pem = read(setting, path)?;
    let mut roots = RootCertStore::empty();
    for certificate in certificates(setting, path, &pem)? {
        roots.add(certificate).map_err(|error| {
            TlsFileError::new(
                setting,
                path,
                format!("holds an unusable CA certificate: {error}"),
            )
        })?;
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(|error| TlsFileError::new(setting, path, error.to_string()))?;
    Ok(pem)
}

fn read(setting: &'static str, path: &Path) -> Result<Vec<u8>, TlsFileError> {
    std::fs::read(path)
        .map_err(|error| TlsFileError::new(setting, path, format!("cannot be read: {error}")))
}

/// Parses every certificate of a PEM file. A file with none is an error.
fn certificates(
    setting: &'static str,
    path: &Path,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, TlsFileError> {
    let certificates = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| TlsFileError::new(setting, path, format!("is not valid PEM: {error}")))?;
    if certificates.is_empty() {
        return Err(TlsFileError::new(
            setting,
            path,
            "contains no PEM certificate (-----BEGIN CERTIFICATE-----)",
        ));
    }
    Ok(certificates)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}
