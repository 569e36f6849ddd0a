//! Integration tests: the real server on 127.0.0.1:0, generated clients, and fresh databases
//! on SQLite and MariaDB. One binary, so the crate links once.

mod common;

mod migrations;
mod outage;
mod pool;
mod schema_roundtrip;
mod server;
mod shutdown;
mod tenants;
mod tls;
