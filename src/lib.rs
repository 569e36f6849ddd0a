//! Ally: the multi-tenant data service of an AI chat platform, served over gRPC.
//!
//! The binary's subcommands live in [`cli`]; [`server`] builds and runs the gRPC server;
//! [`db`] owns connections, pools and migrations for SQLite and MySQL; [`config`] resolves the
//! layered settings.

pub mod audit;
pub mod auth;
pub mod bootstrap;
pub mod cache;
pub mod cli;
pub mod config;
pub mod db;
pub mod events;
pub mod grpc;
pub mod import;
pub mod legacy;
pub mod models;
pub mod plans;
pub mod proto;
pub mod rate_limit;
pub mod repo;
pub mod schema;
pub mod server;
pub mod telemetry;
