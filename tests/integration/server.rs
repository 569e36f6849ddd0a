//! The server starts, reports health and lists its services through reflection.

use ally::proto;
use tokio_stream::StreamExt;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1alpha;

use crate::backend_tests;
use crate::common::{TestBackend, TestServer};

backend_tests!(health_serving, reflection_lists_services, reflection_v1alpha_answers);

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
    let response = responses.next().await.expect("one response").expect("no error");

    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection response: {response:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(names.contains(&"grpc.health.v1.Health".to_string()), "{names:?}");
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
    let response = responses.next().await.expect("one response").expect("no error");

    let Some(AlphaResponse::FileDescriptorResponse(files)) = response.message_response else {
        panic!("unexpected reflection response: {response:?}");
    };
    assert!(!files.file_descriptor_proto.is_empty());
    test.stop().await;
}
