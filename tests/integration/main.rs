//! Integration tests: the real server on 127.0.0.1:0, generated clients, and fresh databases
//! on SQLite and MariaDB. One binary, so the crate links once.

mod common;

mod api_keys;
mod audit;
mod audit_atomicity;
mod auth;
mod auth_tokens;
mod bootstrap;
mod caller_cache;
mod chat;
mod chat_import;
mod chat_purge;
mod client_configurations;
mod config_cache;
mod configurations;
mod deploy_settings;
mod isolation;
mod migrations;
mod oidc;
mod outage;
mod pool;
mod python_client;
mod rate_limit;
mod readme_session;
mod role_matrix;
mod schema_roundtrip;
mod server;
mod server_tls;
mod shutdown;
mod telemetry;
mod tenants;
mod tls;
mod transport_limits;
mod users;
