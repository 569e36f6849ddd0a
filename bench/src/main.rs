//! `ally-bench`: drives a release build of `ally` over loopback and compares each RPC with
//! baselines measured in the same invocation. `docs/benchmarks.md` describes the method.

mod capture;
mod child;
mod fixture;
mod load;
mod noop;
mod options;
mod proc_stats;
mod raw;
mod report;
mod run;
mod scaling;
mod service;
mod sql;

/// Code generated from `proto/allybench/v1/noop.proto`.
mod proto {
    tonic::include_proto!("allybench.v1");
}

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::bail;
use clap::{Parser, Subcommand};

use crate::capture::{Captured, Probe};
use crate::fixture::Fixture;
use crate::options::Options;
use crate::raw::Backend;

#[derive(Parser)]
#[command(
    about = "Load generator for Ally with raw-driver and no-op gRPC baselines in the same run",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    options: Options,
}

#[derive(Subcommand)]
enum Command {
    /// Print the SQL that each RPC sends, recorded on a private MariaDB server and on an
    /// in-process SQLite server, and how it compares with the raw-driver baselines.
    CaptureSql {
        /// The `ally` binary to run against MariaDB.
        #[arg(long, default_value = "target/release/ally")]
        ally: PathBuf,
    },
    /// Serve the no-op baseline service (the benchmark starts this itself).
    #[command(hide = true)]
    NoopServer,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::NoopServer) => noop::serve(),
        Some(Command::CaptureSql { ally }) => block_on(print_captured(ally)),
        None => Options::resolve(cli.options).and_then(|options| block_on(bench(options))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("ally-bench: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn block_on(future: impl Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(future)
}

/// Records the SQL of every probe on both backends.
async fn capture_both(ally: &Path) -> anyhow::Result<Vec<(Backend, Fixture, Vec<Captured>)>> {
    let probes = Probe::all();
    let (sqlite_fixture, sqlite) = capture::capture_sqlite(&probes).await?;
    let (mariadb_fixture, mariadb) = capture::capture_mariadb(ally, &probes).await?;
    Ok(vec![
        (Backend::Sqlite, sqlite_fixture, sqlite),
        (Backend::Mariadb, mariadb_fixture, mariadb),
    ])
}

async fn print_captured(ally: PathBuf) -> anyhow::Result<()> {
    for (backend, fixture, entries) in capture_both(&ally).await? {
        for entry in entries {
            println!("## {}: {}", backend.name(), entry.probe.name());
            for statement in &entry.statements {
                println!("{statement}");
            }
            for line in entry.compare(backend, &fixture) {
                println!("! {line}");
            }
            println!();
        }
    }
    Ok(())
}

async fn bench(options: Options) -> anyhow::Result<()> {
    proc_stats::check_available()?;
    let machine = report::Machine::read();
    let captured = if options.capture_sql {
        capture_both(&options.ally).await?
    } else {
        Vec::new()
    };

    let mut reports = Vec::new();
    for backend in options.backends()? {
        reports.push(run::run_backend(backend, &options).await?);
    }
    print!(
        "{}",
        report::render(&options, &machine, &reports, &captured)
    );

    let mut failures = Vec::new();
    for report in &reports {
        if let Some((count, first)) = report.first_error() {
            failures.push(format!(
                "{count} request(s) failed on {}; the first: {first}",
                report.backend.name()
            ));
        }
    }
    for (backend, fixture, entries) in &captured {
        for entry in entries {
            failures.extend(entry.compare(*backend, fixture));
        }
    }
    if !failures.is_empty() {
        bail!("{}", failures.join("\n"));
    }
    Ok(())
}
