//! Generated clients that send a credential with every call.

use ally::proto::ally::v1 as pb;
use tonic::metadata::MetadataValue;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use super::test_token_keys;

/// Adds one metadata entry to every call.
#[derive(Clone)]
pub struct Credential {
    key: &'static str,
    value: MetadataValue<tonic::metadata::Ascii>,
}

impl Credential {
    pub fn bearer(token: &str) -> Credential {
        Credential {
            key: "authorization",
            value: format!("Bearer {token}").parse().expect("ASCII token"),
        }
    }

    pub fn api_key(key: &str) -> Credential {
        Credential {
            key: "x-api-key",
            value: key.parse().expect("ASCII key"),
        }
    }

    /// Builds an operator token signed with the test servers' secret.
    pub fn operator() -> Credential {
        let token = test_token_keys()
            .issue_operator("test-operator")
            .expect("token");
        Credential::bearer(&token)
    }
}

impl Credential {
    /// Builds an access token for user `user_id` of `tenant_id` with `role` (`owner`, `admin`,
    /// `member` or `viewer`), signed with the test servers' secret. The user row must exist
    /// for calls that load it.
    pub fn user(tenant_id: &str, user_id: &str, role: &str) -> Credential {
        let (token, _) = test_token_keys()
            .issue(user_id, Some(tenant_id), role)
            .expect("token");
        Credential::bearer(&token)
    }
}

impl Credential {
    /// Adds the credential to a request built by hand.
    pub fn apply<T>(&self, request: &mut tonic::Request<T>) {
        request.metadata_mut().insert(self.key, self.value.clone());
    }
}

impl Interceptor for Credential {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        request.metadata_mut().insert(self.key, self.value.clone());
        Ok(request)
    }
}

pub type Authed = InterceptedService<Channel, Credential>;

pub fn tenants(
    channel: &Channel,
    credential: Credential,
) -> pb::tenant_service_client::TenantServiceClient<Authed> {
    pb::tenant_service_client::TenantServiceClient::with_interceptor(channel.clone(), credential)
}

pub fn users(
    channel: &Channel,
    credential: Credential,
) -> pb::user_service_client::UserServiceClient<Authed> {
    pb::user_service_client::UserServiceClient::with_interceptor(channel.clone(), credential)
}

pub fn api_keys(
    channel: &Channel,
    credential: Credential,
) -> pb::api_key_service_client::ApiKeyServiceClient<Authed> {
    pb::api_key_service_client::ApiKeyServiceClient::with_interceptor(channel.clone(), credential)
}

pub fn audit(
    channel: &Channel,
    credential: Credential,
) -> pb::audit_service_client::AuditServiceClient<Authed> {
    pb::audit_service_client::AuditServiceClient::with_interceptor(channel.clone(), credential)
}

/// Builds an AuthService client that sends no credential, because Login needs none.
pub fn auth(channel: &Channel) -> pb::auth_service_client::AuthServiceClient<Channel> {
    pb::auth_service_client::AuthServiceClient::new(channel.clone())
}

/// Creates a tenant with an owner through the API and returns the response.
pub async fn create_tenant(
    channel: &Channel,
    name: &str,
    subdomain: &str,
) -> pb::CreateTenantResponse {
    tenants(channel, Credential::operator())
        .create_tenant(pb::CreateTenantRequest {
            name: name.to_string(),
            subdomain: subdomain.to_string(),
            owner: Some(pb::InitialOwner {
                email: format!("owner@{subdomain}.example"),
                display_name: format!("{name} owner"),
                password: "correct horse battery staple".into(),
            }),
            ..Default::default()
        })
        .await
        .expect("create tenant")
        .into_inner()
}
