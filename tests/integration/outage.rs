//! Health follows the database: a stopped MariaDB turns it NOT_SERVING, and a restarted one
//! turns it back to SERVING without restarting Ally.

use std::time::Duration;

use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::common::private_mariadb::{PASSWORD, PrivateMariadb};
use crate::common::{connect, init_logging, test_settings, wait_until};

async fn status(client: &mut HealthClient<tonic::transport::Channel>) -> Option<ServingStatus> {
    let response = client
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .ok()?;
    Some(response.into_inner().status())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_mariadb_not_serving() {
    init_logging();
    let mut mariadb = tokio::task::spawn_blocking(|| PrivateMariadb::start(None))
        .await
        .expect("server thread");
    let folder = tempfile::tempdir().expect("folder");
    let url = format!(
        "Server=127.0.0.1;Port={};User ID=ally;Password=\"{}\";Database=ally;SslMode=None",
        mariadb.port,
        PASSWORD.replace('"', "\"\"")
    );
    let mut settings = test_settings(&url, folder.path());
    settings.database.connect_timeout = Duration::from_secs(1);
    let server = ally::server::start(settings).await.expect("server starts");
    let mut health = HealthClient::new(connect(server.local_addr()).await);
    assert_eq!(status(&mut health).await, Some(ServingStatus::Serving));

    mariadb = tokio::task::spawn_blocking(move || {
        mariadb.stop();
        mariadb
    })
    .await
    .expect("stop thread");
    let down = wait_until(Duration::from_secs(20), || {
        let mut health = health.clone();
        async move { status(&mut health).await == Some(ServingStatus::NotServing) }
    })
    .await;
    assert!(down, "health stayed SERVING with the database stopped");

    let mariadb = tokio::task::spawn_blocking(move || {
        mariadb.restart();
        mariadb
    })
    .await
    .expect("restart thread");
    let up = wait_until(Duration::from_secs(20), || {
        let mut health = health.clone();
        async move { status(&mut health).await == Some(ServingStatus::Serving) }
    })
    .await;
    assert!(
        up,
        "health did not return to SERVING after the database came back"
    );

    server.shutdown().await.expect("clean shutdown");
    drop(mariadb);
}
