//! The gRPC server: start-up checks, the services it hosts, and graceful shutdown.

mod health;
mod limits;
pub mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use crate::auth::jwt::TokenKeys;
use crate::auth::oidc::OidcVerifier;
use crate::auth::{ApiKeyUsage, Authenticator, CallerCache, TenantLayer, secret_token};
use crate::cache::{ConfigCache, RedisLink};
use crate::config::{Environment, Settings};
use crate::db::migrations::{self, Command, MigrationError};
use crate::db::{Database, DbError, PoolOptions};
use crate::grpc::api_keys::ApiKeyApi;
use crate::grpc::audit_service::AuditApi;
use crate::grpc::auth_service::AuthApi;
use crate::grpc::chat::ChatApi;
use crate::grpc::client_configurations::ClientConfigurationApi;
use crate::grpc::configurations::ConfigurationApi;
use crate::grpc::tenants::TenantApi;
use crate::grpc::users::UserApi;
use crate::proto::ally::v1::api_key_service_server::ApiKeyServiceServer;
use crate::proto::ally::v1::audit_service_server::AuditServiceServer;
use crate::proto::ally::v1::auth_service_server::AuthServiceServer;
use crate::proto::ally::v1::chat_service_server::ChatServiceServer;
use crate::proto::ally::v1::client_configuration_service_server::ClientConfigurationServiceServer;
use crate::proto::ally::v1::configuration_service_server::ConfigurationServiceServer;
use crate::proto::ally::v1::tenant_service_server::TenantServiceServer;
use crate::proto::ally::v1::user_service_server::UserServiceServer;
use crate::rate_limit::RateLimiter;

use self::limits::sized;

/// How often API key use counts are written to the database.
const API_KEY_USAGE_FLUSH: Duration = Duration::from_secs(5);

/// A failure to start the server, or an error that stopped it.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Database(#[from] DbError),
    #[error(transparent)]
    Migration(#[from] MigrationError),
    #[error(
        "the database schema is outdated: migration {missing} is not applied; run `ally migrate \
         run` or set database.migrate_on_start = true"
    )]
    SchemaOutdated { missing: String },
    #[error("creating the default tenant failed: {0}")]
    Bootstrap(#[source] crate::grpc::ApiError),
    #[error("the external token issuer cannot be used: {0}")]
    Oidc(#[from] crate::auth::oidc::OidcError),
    #[error("invalid token settings: {0}")]
    Tokens(#[from] crate::auth::jwt::TokenError),
    #[error(transparent)]
    Redis(#[from] crate::cache::InvalidRedisUrl),
    #[error(transparent)]
    Events(#[from] crate::events::EventBusError),
    #[error("invalid setting `redis.url` for the caller cache: {0}")]
    CallerCache(#[source] redis::RedisError),
    #[error("binding {address} failed: {source}")]
    Bind {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] tls::TlsFileError),
    #[error("the gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// A server running in the background, as tests and embedders use it.
pub struct RunningServer {
    local_addr: SocketAddr,
    database: Database,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<Result<(), ServeError>>,
}

impl RunningServer {
    /// Returns the address the server listens on, with the real port when port 0 was configured.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn database(&self) -> &Database {
        &self.database
    }

    /// Stops accepting calls, lets in-flight calls finish, and waits for the server to stop.
    pub async fn shutdown(self) -> Result<(), ServeError> {
        let _ = self.shutdown.send(true);
        match self.task.await {
            Ok(result) => result,
            Err(join) => {
                error!(error = %join, "the server task panicked");
                Ok(())
            }
        }
    }
}

/// Connects to the database, brings the schema up to date or checks it, binds the listen
/// address and serves until `shutdown` completes.
pub async fn serve(
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let server = start(settings.clone()).await?;
    shutdown.await;
    info!("shutdown requested; finishing in-flight calls");
    let grace = settings.server.shutdown_timeout;
    let _ = server.shutdown.send(true);
    match tokio::time::timeout(grace, server.task).await {
        Ok(Ok(result)) => result,
        Ok(Err(join)) => {
            error!(error = %join, "the server task panicked");
            Ok(())
        }
        Err(_) => {
            warn!(timeout = ?grace, "in-flight calls did not finish in time; stopping anyway");
            Ok(())
        }
    }
}

/// Starts the server in the background and returns once it listens.
pub async fn start(settings: Settings) -> Result<RunningServer, ServeError> {
    let url = settings.database_url()?;
    info!(
        environment = %settings.environment,
        database = %url.redacted(),
        "starting Ally {}",
        env!("CARGO_PKG_VERSION")
    );
    // TLS files are checked before the database is touched, so a bad file fails fast.
    let builder = limits::server_builder(&settings.server)?;
    let database = Database::connect(url, &PoolOptions::from(&settings.database)).await?;
    prepare_schema(&database, settings.migrate_on_start()).await?;
    crate::telemetry::metrics::observe_pools(&database);
    if settings.environment == Environment::Development {
        crate::bootstrap::on_first_start(&database, &settings.server.data_dir)
            .await
            .map_err(ServeError::Bootstrap)?;
    }

    let address = settings.listen_addr();
    let listener = TcpListener::bind(address)
        .await
        .map_err(|source| ServeError::Bind { address, source })?;
    let local_addr = listener
        .local_addr()
        .map_err(|source| ServeError::Bind { address, source })?;

    let tokens = Arc::new(token_keys(&settings)?);
    let usage = Arc::new(ApiKeyUsage::default());
    let oidc = match &settings.auth.oidc {
        Some(oidc) => Some(Arc::new(OidcVerifier::load(oidc.clone()).await?)),
        None => None,
    };
    let rate_limiter = RateLimiter::new(&settings.rate_limit, settings.redis.url.as_ref())?;
    let callers = CallerCache::new(
        settings.auth.api_key_cache_ttl,
        settings.auth.tenant_cache_ttl,
        settings.redis.url.as_ref(),
    )
    .map_err(ServeError::CallerCache)?;
    let authenticator = Arc::new(
        Authenticator::new(
            database.clone(),
            tokens.clone(),
            oidc,
            settings.auth.base_domain.clone(),
            usage.clone(),
        )
        .with_rate_limiter(rate_limiter.map(Arc::new))
        .with_caller_cache(callers.clone()),
    );

    let (shutdown, mut shutdown_rx) = watch::channel(false);
    let events = crate::events::EventBus::new(settings.redis.url.as_ref())?;
    let usage_task = {
        let usage = usage.clone();
        let database = database.clone();
        let stop = shutdown.subscribe();
        tokio::spawn(async move { usage.run(database, API_KEY_USAGE_FLUSH, stop).await })
    };
    let (reporter, health_service) = tonic_health::server::health_reporter();
    let monitor = health::Monitor::new(
        database.clone(),
        reporter,
        settings.database.health_check_interval,
    );
    let health_task = tokio::spawn(monitor.run(shutdown.subscribe()));
    let redis = match &settings.redis.url {
        Some(url) => Some(RedisLink::new(secrecy::ExposeSecret::expose_secret(url))?),
        None => None,
    };
    let config_cache = ConfigCache::new(settings.cache.ttl, redis);

    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|error| ServeError::Bind {
            address,
            source: std::io::Error::other(error),
        })?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .map_err(|error| ServeError::Bind {
            address,
            source: std::io::Error::other(error),
        })?;

    let size = &settings.server.limits;
    let router = builder
        .layer(crate::telemetry::RpcTelemetryLayer)
        .layer(TenantLayer::new(authenticator))
        .add_service(sized!(health_service, size))
        .add_service(sized!(reflection_v1, size))
        .add_service(sized!(reflection_v1alpha, size))
        .add_service(sized!(
            AuthServiceServer::new(AuthApi::new(
                database.clone(),
                tokens.clone(),
                settings.auth.clone(),
            )),
            size
        ))
        .add_service(sized!(
            TenantServiceServer::new(
                TenantApi::new(database.clone()).with_caller_cache(callers.clone()),
            ),
            size
        ))
        .add_service(sized!(
            ChatServiceServer::new(
                ChatApi::new(database.clone(), events, shutdown.subscribe())
                    .with_import_max_bytes(settings.chat.import_max_bytes),
            ),
            size
        ))
        .add_service(sized!(
            ClientConfigurationServiceServer::new(ClientConfigurationApi::new(
                database.clone(),
                config_cache.clone(),
            )),
            size
        ))
        .add_service(sized!(
            ConfigurationServiceServer::new(ConfigurationApi::new(database.clone(), config_cache,)),
            size
        ))
        .add_service(sized!(
            UserServiceServer::new(
                UserApi::new(database.clone(), &settings.auth).with_caller_cache(callers.clone()),
            ),
            size
        ))
        .add_service(sized!(
            ApiKeyServiceServer::new(
                ApiKeyApi::new(database.clone(), usage.clone()).with_caller_cache(callers),
            ),
            size
        ))
        .add_service(sized!(
            AuditServiceServer::new(AuditApi::new(database.clone())),
            size
        ));
    let incoming = limits::incoming(listener, &settings.server);
    info!(
        address = %local_addr,
        tls = settings.server.tls.is_some(),
        "serving gRPC"
    );

    let task = tokio::spawn(async move {
        let stop = async move {
            let _ = shutdown_rx.wait_for(|stop| *stop).await;
        };
        let result = router.serve_with_incoming_shutdown(incoming, stop).await;
        health_task.abort();
        if let Err(error) = usage_task.await {
            error!(error = %error, "the API key usage task failed");
        }
        info!("server stopped");
        result.map_err(ServeError::from)
    });

    Ok(RunningServer {
        local_addr,
        database,
        shutdown,
        task,
    })
}

/// Applies pending migrations, or refuses to serve when some are pending and applying them at
/// start is off.
async fn prepare_schema(database: &Database, migrate: bool) -> Result<(), ServeError> {
    let read_status = async {
        let mut conn = database.read().await?;
        migrations::status(&mut conn).await.map_err(DbError::from)
    };
    let mut status = read_status.await?;
    if migrate && !status.is_current() {
        let pending: Vec<String> = status.pending().map(|m| m.to_string()).collect();
        migrations::execute(database, Command::Run).await?;
        for migration in pending {
            info!(migration = %migration, "applied migration");
        }
        let mut conn = database.read().await?;
        status = migrations::status(&mut conn).await.map_err(DbError::from)?;
    }
    if let Some(missing) = status.pending().next() {
        return Err(ServeError::SchemaOutdated {
            missing: missing.to_string(),
        });
    }
    if !status.unknown.is_empty() {
        warn!(
            versions = ?status.unknown,
            "the database has migrations this release does not know; a newer release migrated it"
        );
    }
    Ok(())
}

/// Builds the token keys from `auth.jwt_secret`, or from a random secret where the settings
/// allow none (development and testing).
fn token_keys(settings: &Settings) -> Result<TokenKeys, ServeError> {
    let auth = &settings.auth;
    let secret = match &auth.jwt_secret {
        Some(secret) => secret.clone(),
        None => {
            warn!(
                "auth.jwt_secret is not set, so a random signing secret is used and access \
                 tokens stop working when the server stops"
            );
            SecretString::from(secret_token::generate())
        }
    };
    Ok(TokenKeys::new(
        &secret,
        &auth.issuer,
        &auth.audience,
        auth.access_token_ttl,
    )?)
}
