//! The data every scenario needs, created through Ally's own API: an enterprise tenant, its
//! owner with a password and an API key, a configuration and chat sessions.

use std::net::SocketAddr;
use std::time::Duration;

use ally::proto::ally::v1 as pb;
use anyhow::{Context, anyhow};
use secrecy::SecretString;
use tonic::transport::{Channel, Endpoint};

use crate::child::JWT_SECRET;

/// Password of the tenant owner, who is also the user that Login signs in.
const OWNER_PASSWORD: &str = "bench password of the owner";

/// Configuration type that GetConfiguration reads.
pub const CONFIG_TYPE: &str = "llm.defaults";

/// Messages added to the session that ListMessages reads, enough for a full page of 50.
const READ_SESSION_MESSAGES: usize = 60;

/// Content of every message the benchmark adds: 256 bytes of text.
pub fn message_content() -> String {
    "The quick brown fox jumps over the lazy dog. ".repeat(6)[..256].to_string()
}

/// What the scenarios use, with the credentials the server accepts.
#[derive(Clone, Debug)]
pub struct Fixture {
    pub tenant_id: String,
    pub owner_id: String,
    pub owner_email: String,
    pub password: String,
    /// The owner's API key, as sent in `x-api-key`.
    pub api_key: String,
    /// An access token of the owner, valid for a day.
    pub token: String,
    /// Sessions that AddMessage writes to, one per worker at most.
    pub write_sessions: Vec<String>,
    /// A session with [`READ_SESSION_MESSAGES`] messages that ListMessages reads.
    pub read_session: String,
    /// Tag in generated emails, unique to this run.
    pub run_tag: String,
}

impl Fixture {
    pub fn bearer(&self) -> (&'static str, String) {
        ("authorization", format!("Bearer {}", self.token))
    }

    pub fn api_key_header(&self) -> (&'static str, String) {
        ("x-api-key", self.api_key.clone())
    }
}

/// Opens `count` HTTP/2 connections to `address`.
pub async fn connect(address: SocketAddr, count: usize) -> anyhow::Result<Vec<Channel>> {
    let mut channels = Vec::with_capacity(count);
    for _ in 0..count {
        let channel = Endpoint::from_shared(format!("http://{address}"))?
            .connect_timeout(Duration::from_secs(10))
            .tcp_nodelay(true)
            .connect()
            .await
            .with_context(|| format!("connecting to {address}"))?;
        channels.push(channel);
    }
    Ok(channels)
}

/// Returns token keys that match the server's settings, with tokens valid for a day so that
/// long runs never see one expire.
pub fn token_keys() -> anyhow::Result<ally::auth::jwt::TokenKeys> {
    ally::auth::jwt::TokenKeys::new(
        &SecretString::from(JWT_SECRET),
        "ally",
        "ally",
        Duration::from_secs(24 * 60 * 60),
    )
    .map_err(|error| anyhow!("building token keys: {error}"))
}

/// Adds `value` as metadata entry `key` to `request`.
pub fn with_metadata<T>(
    mut request: tonic::Request<T>,
    key: &'static str,
    value: &str,
) -> tonic::Request<T> {
    request
        .metadata_mut()
        .insert(key, value.parse().expect("ASCII metadata"));
    request
}

/// Creates the tenant on the enterprise plan (no quotas on users, sessions or messages) through
/// the operator API, then the configuration and sessions.
pub async fn create(channel: &Channel, write_sessions: usize) -> anyhow::Result<Fixture> {
    let keys = token_keys()?;
    let operator = format!(
        "Bearer {}",
        keys.issue_operator("ally-bench")
            .map_err(|error| anyhow!("{error}"))?
    );
    let run_tag = uuid::Uuid::now_v7().simple().to_string()[20..].to_string();
    let subdomain = format!("bench-{run_tag}");
    let owner_email = format!("owner-{run_tag}@bench.example");

    let mut tenants = pb::tenant_service_client::TenantServiceClient::new(channel.clone());
    let created = tenants
        .create_tenant(with_metadata(
            tonic::Request::new(pb::CreateTenantRequest {
                name: format!("Benchmark {run_tag}"),
                subdomain: subdomain.clone(),
                plan: pb::Plan::Enterprise as i32,
                owner: Some(pb::InitialOwner {
                    email: owner_email.clone(),
                    display_name: "Benchmark owner".into(),
                    password: OWNER_PASSWORD.into(),
                }),
                ..Default::default()
            }),
            "authorization",
            &operator,
        ))
        .await
        .context("CreateTenant")?
        .into_inner();
    let tenant_id = created
        .tenant
        .context("CreateTenant returned no tenant")?
        .id;
    let owner_id = created.owner.context("CreateTenant returned no owner")?.id;
    let (token, _) = keys
        .issue(&owner_id, Some(&tenant_id), "owner")
        .map_err(|error| anyhow!("{error}"))?;
    let bearer = format!("Bearer {token}");

    let mut configurations =
        pb::configuration_service_client::ConfigurationServiceClient::new(channel.clone());
    configurations
        .update_configuration(with_metadata(
            tonic::Request::new(pb::UpdateConfigurationRequest {
                config_type: CONFIG_TYPE.into(),
                value_source: Some(pb::update_configuration_request::ValueSource::ValueJson(
                    r#"{"model": "gpt-4o-mini", "temperature": 0.7, "max_tokens": 1024}"#.into(),
                )),
                ..Default::default()
            }),
            "authorization",
            &bearer,
        ))
        .await
        .context("UpdateConfiguration")?;

    let mut chat = pb::chat_service_client::ChatServiceClient::new(channel.clone());
    let mut sessions = Vec::with_capacity(write_sessions + 1);
    for index in 0..=write_sessions {
        let session = chat
            .create_session(with_metadata(
                tonic::Request::new(pb::CreateSessionRequest {
                    title: format!("Benchmark session {index}"),
                    metadata: None,
                }),
                "authorization",
                &bearer,
            ))
            .await
            .context("CreateSession")?
            .into_inner()
            .session
            .context("CreateSession returned no session")?;
        sessions.push(session.id);
    }
    let read_session = sessions.pop().expect("at least one session");
    for _ in 0..READ_SESSION_MESSAGES {
        chat.add_message(with_metadata(
            tonic::Request::new(pb::AddMessageRequest {
                session_id: read_session.clone(),
                role: pb::MessageRole::User as i32,
                content: message_content(),
                ..Default::default()
            }),
            "authorization",
            &bearer,
        ))
        .await
        .context("AddMessage to the read session")?;
    }

    Ok(Fixture {
        tenant_id,
        owner_id,
        owner_email,
        password: OWNER_PASSWORD.into(),
        api_key: created.owner_api_key,
        token,
        write_sessions: sessions,
        read_session,
        run_tag,
    })
}
