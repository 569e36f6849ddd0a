//! The Ally RPCs under load, called through the generated tonic clients.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use ally::proto::ally::v1 as pb;
use prost::Message;
use tonic::transport::Channel;

use crate::fixture::{CONFIG_TYPE, Fixture, message_content, with_metadata};
use crate::load::AsyncOp;
use crate::noop::Shape;

/// An RPC as the benchmark calls it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    /// ChatService.AddMessage of 256 bytes, with an access token.
    AddMessage,
    /// ChatService.ListMessages, the first page of 50, with an access token.
    ListMessages,
    /// ConfigurationService.GetConfiguration of a cached document, with an access token.
    GetConfiguration,
    /// TenantService.GetTenant of the caller's tenant, with an API key.
    GetTenantApiKey,
    /// TenantService.GetTenant of the caller's tenant, with an access token.
    GetTenantToken,
    /// AuthService.Login with email and password.
    Login,
    /// UserService.CreateUser of a member without a password, with an access token.
    CreateUser,
}

impl Scenario {
    pub const ALL: [Scenario; 7] = [
        Scenario::AddMessage,
        Scenario::ListMessages,
        Scenario::GetConfiguration,
        Scenario::GetTenantApiKey,
        Scenario::GetTenantToken,
        Scenario::Login,
        Scenario::CreateUser,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::AddMessage => "AddMessage",
            Scenario::ListMessages => "ListMessages",
            Scenario::GetConfiguration => "GetConfiguration",
            Scenario::GetTenantApiKey => "GetTenant (API key)",
            Scenario::GetTenantToken => "GetTenant (token)",
            Scenario::Login => "Login",
            Scenario::CreateUser => "CreateUser",
        }
    }

    /// Returns the short name used on the command line.
    pub fn key(self) -> &'static str {
        match self {
            Scenario::AddMessage => "add-message",
            Scenario::ListMessages => "list-messages",
            Scenario::GetConfiguration => "get-configuration",
            Scenario::GetTenantApiKey => "get-tenant-key",
            Scenario::GetTenantToken => "get-tenant-token",
            Scenario::Login => "login",
            Scenario::CreateUser => "create-user",
        }
    }

    pub fn parse(key: &str) -> Option<Scenario> {
        Scenario::ALL
            .into_iter()
            .find(|scenario| scenario.key() == key)
    }

    /// Returns whether the RPC writes, which on SQLite means it goes through the single writer
    /// connection.
    pub fn writes(self) -> bool {
        matches!(
            self,
            Scenario::AddMessage | Scenario::Login | Scenario::CreateUser
        )
    }

    /// Returns how many requests to keep in flight when `streams` are asked for. Login spends
    /// tens of milliseconds of CPU on argon2 per call, so more than twice the cores in flight
    /// only adds queueing (and argon2's 19 MiB per call) without adding throughput.
    pub fn workers(self, streams: usize) -> usize {
        match self {
            Scenario::Login => streams.min(LOGIN_WORKERS),
            _ => streams,
        }
    }

    /// Returns the credential metadata the call sends.
    fn credential(self, fixture: &Fixture) -> Option<(&'static str, String)> {
        match self {
            Scenario::GetTenantApiKey => Some(fixture.api_key_header()),
            Scenario::Login => None,
            _ => Some(fixture.bearer()),
        }
    }
}

/// Maximum number of Login calls in flight at once.
pub const LOGIN_WORKERS: usize = 4;

/// Generated clients over one connection.
#[derive(Clone)]
struct Clients {
    chat: pb::chat_service_client::ChatServiceClient<Channel>,
    configurations: pb::configuration_service_client::ConfigurationServiceClient<Channel>,
    tenants: pb::tenant_service_client::TenantServiceClient<Channel>,
    auth: pb::auth_service_client::AuthServiceClient<Channel>,
    users: pb::user_service_client::UserServiceClient<Channel>,
}

impl Clients {
    fn new(channel: &Channel) -> Clients {
        Clients {
            chat: pb::chat_service_client::ChatServiceClient::new(channel.clone()),
            configurations: pb::configuration_service_client::ConfigurationServiceClient::new(
                channel.clone(),
            ),
            tenants: pb::tenant_service_client::TenantServiceClient::new(channel.clone()),
            auth: pb::auth_service_client::AuthServiceClient::new(channel.clone()),
            users: pb::user_service_client::UserServiceClient::new(channel.clone()),
        }
    }
}

/// Numbers that make CreateUser's emails unique across all runs of one invocation.
static NEXT_USER: AtomicU64 = AtomicU64::new(0);

/// One call: its request size and the future that returns the response size.
struct Call {
    request_bytes: usize,
    response: futures_util::future::BoxFuture<'static, Result<usize, tonic::Status>>,
}

fn request<T>(message: T, credential: &Option<(&'static str, String)>) -> tonic::Request<T> {
    let request = tonic::Request::new(message);
    match credential {
        Some((key, value)) => with_metadata(request, key, value),
        None => request,
    }
}

fn call(scenario: Scenario, clients: &Clients, fixture: &Fixture, worker: usize) -> Call {
    let credential = scenario.credential(fixture);
    match scenario {
        Scenario::AddMessage => {
            let message = pb::AddMessageRequest {
                session_id: fixture.write_sessions[worker % fixture.write_sessions.len()].clone(),
                role: pb::MessageRole::User as i32,
                content: message_content(),
                ..Default::default()
            };
            let request_bytes = message.encoded_len();
            let mut client = clients.chat.clone();
            let request = request(message, &credential);
            Call {
                request_bytes,
                response: Box::pin(async move {
                    Ok(client.add_message(request).await?.get_ref().encoded_len())
                }),
            }
        }
        Scenario::ListMessages => {
            let message = pb::ListMessagesRequest {
                session_id: fixture.read_session.clone(),
                page_size: 50,
                ..Default::default()
            };
            let request_bytes = message.encoded_len();
            let mut client = clients.chat.clone();
            let request = request(message, &credential);
            Call {
                request_bytes,
                response: Box::pin(async move {
                    let response = client.list_messages(request).await?.into_inner();
                    if response.messages.len() != 50 {
                        return Err(tonic::Status::internal(format!(
                            "expected a page of 50 messages, got {}",
                            response.messages.len()
                        )));
                    }
                    Ok(response.encoded_len())
                }),
            }
        }
        Scenario::GetConfiguration => {
            let message = pb::GetConfigurationRequest {
                config_type: CONFIG_TYPE.into(),
            };
            let request_bytes = message.encoded_len();
            let mut client = clients.configurations.clone();
            let request = request(message, &credential);
            Call {
                request_bytes,
                response: Box::pin(async move {
                    Ok(client
                        .get_configuration(request)
                        .await?
                        .get_ref()
                        .encoded_len())
                }),
            }
        }
        Scenario::GetTenantApiKey | Scenario::GetTenantToken => {
            let message = pb::GetTenantRequest::default();
            let request_bytes = message.encoded_len();
            let mut client = clients.tenants.clone();
            let request = request(message, &credential);
            Call {
                request_bytes,
                response: Box::pin(async move {
                    Ok(client.get_tenant(request).await?.get_ref().encoded_len())
                }),
            }
        }
        Scenario::Login => {
            let message = pb::LoginRequest {
                tenant: Some(pb::login_request::Tenant::TenantId(
                    fixture.tenant_id.clone(),
                )),
                email: fixture.owner_email.clone(),
                password: fixture.password.clone(),
            };
            let request_bytes = message.encoded_len();
            let mut client = clients.auth.clone();
            let request = request(message, &credential);
            Call {
                request_bytes,
                response: Box::pin(async move {
                    Ok(client.login(request).await?.get_ref().encoded_len())
                }),
            }
        }
        Scenario::CreateUser => {
            let number = NEXT_USER.fetch_add(1, Ordering::Relaxed);
            let message = pb::CreateUserRequest {
                email: format!("user-{}-{number}@bench.example", fixture.run_tag),
                display_name: format!("Benchmark user {number}"),
                role: pb::Role::Member as i32,
                ..Default::default()
            };
            let request_bytes = message.encoded_len();
            let mut client = clients.users.clone();
            let request = request(message, &credential);
            Call {
                request_bytes,
                response: Box::pin(async move {
                    Ok(client.create_user(request).await?.get_ref().encoded_len())
                }),
            }
        }
    }
}

/// Returns a load operation that calls `scenario`, spreading the workers over `channels`.
pub fn op(scenario: Scenario, fixture: &Arc<Fixture>, channels: &[Channel]) -> AsyncOp {
    let clients: Arc<Vec<Clients>> = Arc::new(channels.iter().map(Clients::new).collect());
    let fixture = fixture.clone();
    Arc::new(move |worker, _sequence| {
        let call = call(scenario, &clients[worker % clients.len()], &fixture, worker);
        Box::pin(async move {
            call.response
                .await
                .map(drop)
                .map_err(|status| format!("{} failed: {status}", scenario.name()))
        })
    })
}

/// Calls `scenario` once and returns the sizes and metadata that a no-op call must copy.
pub async fn shape(
    scenario: Scenario,
    fixture: &Fixture,
    channel: &Channel,
) -> anyhow::Result<Shape> {
    let call = call(scenario, &Clients::new(channel), fixture, 0);
    let response_bytes = call
        .response
        .await
        .map_err(|status| anyhow::anyhow!("{} failed: {status}", scenario.name()))?;
    Ok(Shape {
        request_bytes: call.request_bytes,
        response_bytes,
        metadata: scenario.credential(fixture).into_iter().collect(),
    })
}
