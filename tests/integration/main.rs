//! Integration tests: the real server on 127.0.0.1:0, generated clients, and fresh databases
//! on SQLite and MariaDB. One binary, so the crate links once.

mod common;

mod api_keys;
mod audit;
mod audit_atomicity;
mod auth;
mod auth_tokens;
mod bootstrap;
mod chat;
mod chat_purge;
mod client_configurations;
mod config_cache;
mod configurations;
mod isolation;
mod migrations;
mod oidc;
mod outage;
mod pool;
mod role_matrix;
mod schema_roundtrip;
mod server;
mod shutdown;
mod telemetry;
mod tenants;
mod tls;
mod users;
