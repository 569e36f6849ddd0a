//! The server starts, reports health and lists its services through reflection.

use std::time::Duration;

use ally::db::migrations::{self, Command};
use ally::proto;
use tokio_stream::StreamExt;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
use tonic_reflection::pb::v1alpha;

use crate::backend_tests;
use crate::common::{TestBackend, TestServer, wait_until};

backend_tests!(
    health_serving,
    health_follows_schema,
    reflection_lists_services,
    reflection_v1alpha_answers
);

async fn health_serving(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    let mut health = HealthClient::new(test.channel.clone());

    let response = health
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("health check")
        .into_inner();

    assert_eq!(response.status(), ServingStatus::Serving);
    test.stop().await;
}

async fn reflection_lists_services(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    let mut reflection = ServerReflectionClient::new(test.channel.clone());
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };

    let mut responses = reflection
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .expect("reflection stream")
        .into_inner();
    let response = responses
        .next()
        .await
        .expect("one response")
        .expect("no error");

    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection response: {response:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(
        names.contains(&"grpc.health.v1.Health".to_string()),
        "{names:?}"
    );
    assert!(
        names.contains(&"grpc.reflection.v1.ServerReflection".to_string()),
        "{names:?}"
    );
    assert!(!proto::FILE_DESCRIPTOR_SET.is_empty());
    test.stop().await;
}

async fn reflection_v1alpha_answers(backend: TestBackend) {
    use v1alpha::server_reflection_client::ServerReflectionClient as AlphaClient;
    use v1alpha::server_reflection_request::MessageRequest as AlphaRequest;
    use v1alpha::server_reflection_response::MessageResponse as AlphaResponse;

    let test = TestServer::start(backend).await;
    let mut reflection = AlphaClient::new(test.channel.clone());
    let request = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(AlphaRequest::FileContainingSymbol(
            "ally.v1.Tenant".to_string(),
        )),
    };

    let mut responses = reflection
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .expect("reflection stream")
        .into_inner();
    let response = responses
        .next()
        .await
        .expect("one response")
        .expect("no error");

    let Some(AlphaResponse::FileDescriptorResponse(files)) = response.message_response else {
        panic!("unexpected reflection response: {response:?}");
    };
    assert!(!files.file_descriptor_proto.is_empty());
    test.stop().await;
}

async fn status(client: &HealthClient<tonic::transport::Channel>) -> ServingStatus {
    let mut client = client.clone();
    match client.check(HealthCheckRequest::default()).await {
        Ok(response) => response.into_inner().status(),
        Err(_) => ServingStatus::Unknown,
    }
}

async fn health_follows_schema(backend: TestBackend) {
    let test = TestServer::start(backend).await;
    let health = HealthClient::new(test.channel.clone());
    let database = test.server.database().clone();

    migrations::execute(&database, Command::Revert)
        .await
        .expect("revert one migration");
    let down = wait_until(Duration::from_secs(10), || async {
        status(&health).await == ServingStatus::NotServing
    })
    .await;
    assert!(down, "health stayed SERVING with a migration missing");

    migrations::execute(&database, Command::Run)
        .await
        .expect("apply it again");
    let up = wait_until(Duration::from_secs(10), || async {
        status(&health).await == ServingStatus::Serving
    })
    .await;
    assert!(
        up,
        "health did not return to SERVING after the migration was applied"
    );
    test.stop().await;
}
