//! The `ally` binary drains and exits 0 on SIGTERM and SIGINT.

use std::process::{Command, Stdio};
use std::time::Duration;

use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::common::wait_until;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

async fn exits_cleanly_on(signal: &str) {
    let folder = tempfile::tempdir().expect("folder");
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ally"))
        .current_dir(folder.path())
        .env_clear()
        .env("ENVIRONMENT", "testing")
        .env("ALLY_SERVER__LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start ally");

    let address = format!("http://127.0.0.1:{port}");
    let serving = wait_until(Duration::from_secs(30), || {
        let address = address.clone();
        async move {
            let Ok(channel) = tonic::transport::Endpoint::from_shared(address)
                .expect("endpoint")
                .connect()
                .await
            else {
                return false;
            };
            let response = HealthClient::new(channel)
                .check(HealthCheckRequest::default())
                .await;
            response.is_ok_and(|r| r.into_inner().status() == ServingStatus::Serving)
        }
    })
    .await;
    assert!(serving, "ally did not start serving");
    assert!(
        folder.path().join("data/ally.db").exists(),
        "the default SQLite file was not created under ./data"
    );

    let sent = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(child.id().to_string())
        .status()
        .expect("kill");
    assert!(sent.success());
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .expect("wait thread")
        .expect("wait");
    assert_eq!(status.code(), Some(0), "ally exited with {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_zero() {
    exits_cleanly_on("TERM").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_exits_zero() {
    exits_cleanly_on("INT").await;
}
