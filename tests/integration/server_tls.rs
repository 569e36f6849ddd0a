//! TLS and mutual TLS on the gRPC server, with certificates generated for the run. The server
//! certificate names `localhost`, and clients connect to 127.0.0.1 with that name for SNI.

use std::path::Path;
use std::time::Duration;

use ally::config::{ClientAuth, Settings, TlsSettings};
use ally::server::{RunningServer, ServeError};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use crate::common::certs::{self, MtlsFiles};
use crate::common::{TestBackend, TestDatabase, init_logging, test_settings};

/// A server of the test's own with `tls` set, and the database it uses.
struct TlsServer {
    server: RunningServer,
    _database: TestDatabase,
}

async fn start(tls: TlsSettings) -> TlsServer {
    init_logging();
    let database = TestDatabase::create(TestBackend::Sqlite).await;
    let mut settings = test_settings(&database.url, database.dir());
    settings.server.tls = Some(tls);
    let server = ally::server::start(settings).await.expect("server starts");
    TlsServer {
        server,
        _database: database,
    }
}

async fn start_error(tls: TlsSettings) -> String {
    init_logging();
    let database = TestDatabase::create(TestBackend::Sqlite).await;
    let mut settings: Settings = test_settings(&database.url, database.dir());
    settings.server.tls = Some(tls);
    match ally::server::start(settings).await {
        Ok(server) => {
            server.shutdown().await.expect("clean shutdown");
            panic!("the server started with unusable TLS files")
        }
        Err(error @ ServeError::Tls(_)) => error.to_string(),
        Err(other) => panic!("expected a TLS file error, got: {other}"),
    }
}

fn tls_settings(files: &MtlsFiles, client_auth: Option<ClientAuth>) -> TlsSettings {
    TlsSettings {
        cert_file: files.server.server_cert.clone(),
        key_file: files.server.server_key.clone(),
        client_ca_file: client_auth.map(|_| files.client_ca.clone()),
        client_auth,
        handshake_timeout: Duration::from_secs(5),
    }
}

fn pem(path: &Path) -> Vec<u8> {
    std::fs::read(path).expect("read PEM file")
}

/// Connects with TLS trusting `ca`, presenting `identity` when given, and calls Health.Check.
async fn health_over_tls(
    server: &TlsServer,
    ca: &Path,
    identity: Option<(&Path, &Path)>,
) -> Result<(), String> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(pem(ca)))
        .domain_name("localhost");
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(pem(cert), pem(key)));
    }
    let endpoint = Endpoint::from_shared(format!("https://{}", server.server.local_addr()))
        .expect("endpoint")
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(5))
        .tls_config(tls)
        .expect("client TLS settings");
    let channel: Channel = endpoint
        .connect()
        .await
        .map_err(|error| format!("connect: {error:?}"))?;
    let response = HealthClient::new(channel)
        .check(HealthCheckRequest::default())
        .await
        .map_err(|status| format!("call: {status:?}"))?;
    assert_eq!(response.into_inner().status, 1, "health is SERVING");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_trusted_client_connects() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let files = certs::generate_mtls(dir.path(), &["localhost"]);
    let server = start(tls_settings(&files, None)).await;

    let trusted = health_over_tls(&server, &files.server.ca, None).await;
    let untrusted = health_over_tls(&server, &files.server.other_ca, None).await;
    let plaintext = async {
        let channel = Endpoint::from_shared(format!("http://{}", server.server.local_addr()))
            .expect("endpoint")
            .timeout(Duration::from_secs(5))
            .connect()
            .await?;
        HealthClient::new(channel)
            .check(HealthCheckRequest::default())
            .await
            .map_err(Box::<dyn std::error::Error + Send + Sync>::from)?;
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
    }
    .await;

    assert_eq!(trusted, Ok(()));
    assert!(untrusted.is_err(), "a client not trusting the CA connected");
    assert!(plaintext.is_err(), "a plaintext client was served");
    server.server.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_required_checks_client() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let files = certs::generate_mtls(dir.path(), &["localhost"]);
    let server = start(tls_settings(&files, Some(ClientAuth::Required))).await;
    let ca = &files.server.ca;

    let with_client_cert =
        health_over_tls(&server, ca, Some((&files.client_cert, &files.client_key))).await;
    let without_cert = health_over_tls(&server, ca, None).await;
    let stranger_cert = health_over_tls(
        &server,
        ca,
        Some((&files.stranger_cert, &files.stranger_key)),
    )
    .await;

    assert_eq!(with_client_cert, Ok(()));
    assert!(
        without_cert.is_err(),
        "a client without a certificate was served"
    );
    assert!(
        stranger_cert.is_err(),
        "a client certificate from another CA was accepted"
    );
    server.server.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_optional_checks_presented_cert() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let files = certs::generate_mtls(dir.path(), &["localhost"]);
    let server = start(tls_settings(&files, Some(ClientAuth::Optional))).await;
    let ca = &files.server.ca;

    let with_client_cert =
        health_over_tls(&server, ca, Some((&files.client_cert, &files.client_key))).await;
    let without_cert = health_over_tls(&server, ca, None).await;
    let stranger_cert = health_over_tls(
        &server,
        ca,
        Some((&files.stranger_cert, &files.stranger_key)),
    )
    .await;

    assert_eq!(with_client_cert, Ok(()));
    assert_eq!(without_cert, Ok(()));
    assert!(
        stranger_cert.is_err(),
        "a client certificate from another CA was accepted"
    );
    server.server.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unusable_tls_files_stop_start() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let files = certs::generate_mtls(dir.path(), &["localhost"]);
    let missing = dir.path().join("missing.pem");
    let garbage = dir.path().join("garbage.pem");
    let secret_text = "not-a-key-but-treated-as-secret";
    std::fs::write(&garbage, secret_text).expect("write garbage file");

    let missing_cert = start_error(TlsSettings {
        cert_file: missing.clone(),
        ..tls_settings(&files, None)
    })
    .await;
    let bad_key = start_error(TlsSettings {
        key_file: garbage.clone(),
        ..tls_settings(&files, None)
    })
    .await;
    let foreign_key = start_error(TlsSettings {
        key_file: files.client_key.clone(),
        ..tls_settings(&files, None)
    })
    .await;
    let bad_client_ca = start_error(TlsSettings {
        client_ca_file: Some(garbage.clone()),
        ..tls_settings(&files, Some(ClientAuth::Required))
    })
    .await;

    assert!(
        missing_cert.contains("server.tls.cert_file"),
        "{missing_cert}"
    );
    assert!(
        missing_cert.contains(&missing.display().to_string()),
        "{missing_cert}"
    );
    assert!(missing_cert.contains("cannot be read"), "{missing_cert}");
    assert!(bad_key.contains("server.tls.key_file"), "{bad_key}");
    assert!(
        bad_key.contains(&garbage.display().to_string()),
        "{bad_key}"
    );
    assert!(!bad_key.contains(secret_text), "{bad_key}");
    assert!(foreign_key.contains("server.tls.key_file"), "{foreign_key}");
    assert!(
        foreign_key.contains("cannot be used with server.tls.cert_file"),
        "{foreign_key}"
    );
    assert!(
        bad_client_ca.contains("server.tls.client_ca_file"),
        "{bad_client_ca}"
    );
    assert!(
        bad_client_ca.contains("no PEM certificate"),
        "{bad_client_ca}"
    );
}
