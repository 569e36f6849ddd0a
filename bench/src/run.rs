//! One benchmark invocation: per database, the fixture, then for each scenario rounds of the
//! raw-driver baseline, the no-op gRPC baseline and the service, back to back.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use mysql_async::prelude::Queryable;
use secrecy::SecretString;

use crate::child::ChildServer;
use crate::fixture::{self, Fixture};
use crate::load::{self, AsyncOp, Measurement, Window};
use crate::noop::{self, Shape};
use crate::options::Options;
use crate::raw::{self, Backend};
use crate::scaling::{self, ScalingReport};
use crate::service::{self, Scenario};

/// The runs of one scenario.
pub struct ScenarioRuns {
    pub scenario: Scenario,
    pub shape: Shape,
    /// Workers of the raw-driver runs.
    pub raw_workers: usize,
    pub raw: Vec<Measurement>,
    pub noop: Vec<Measurement>,
    pub service: Vec<Measurement>,
}

/// The memory run: many requests in flight at once.
pub struct MemoryRun {
    pub streams: usize,
    pub connections: usize,
    pub scenario: Scenario,
    pub service: Measurement,
    pub noop: Measurement,
}

/// Everything measured on one database.
pub struct BackendReport {
    pub backend: Backend,
    pub scenarios: Vec<ScenarioRuns>,
    /// Password verifications with Ally's argon2id settings, in this process.
    pub argon2: Option<Measurement>,
    /// CPU time of one access token verification, in microseconds.
    pub token_verify: TokenVerifyCost,
    pub memory: Option<MemoryRun>,
    pub scaling: Option<ScalingReport>,
    /// Peak resident size of the server over the whole run, in bytes.
    pub server_peak_resident: u64,
}

impl BackendReport {
    /// Returns the first error of any run, with the number of failed requests. A run in which
    /// no request finished inside the measured window counts as a failure too.
    pub fn first_error(&self) -> Option<(u64, String)> {
        let mut all: Vec<&Measurement> = Vec::new();
        for runs in &self.scenarios {
            all.extend(runs.raw.iter().chain(&runs.noop).chain(&runs.service));
        }
        all.extend(self.argon2.iter());
        if let Some(memory) = &self.memory {
            all.extend([&memory.service, &memory.noop]);
        }
        if let Some(scaling) = &self.scaling {
            all.extend(scaling.measurements());
        }
        let errors: u64 = all.iter().map(|m| m.errors).sum();
        if let Some(first) = all.iter().find_map(|m| m.first_error.clone()) {
            return Some((errors, first));
        }
        all.iter().any(|m| m.requests == 0).then(|| {
            (
                0,
                "a run finished no request inside its measured window; lengthen --seconds"
                    .to_string(),
            )
        })
    }
}

/// A database created for the run, removed by [`BenchDatabase::remove`].
pub enum BenchDatabase {
    Sqlite { dir: tempfile::TempDir },
    Mariadb { admin_url: String, name: String },
}

impl BenchDatabase {
    async fn create(backend: Backend, options: &Options) -> anyhow::Result<BenchDatabase> {
        match backend {
            Backend::Sqlite => Ok(BenchDatabase::Sqlite {
                dir: tempfile::tempdir()?,
            }),
            Backend::Mariadb => {
                let name = format!("ally_bench_{}", uuid::Uuid::now_v7().simple());
                let admin_url = options.mariadb_url.trim_end_matches('/').to_string();
                let mut conn = mysql_async::Conn::from_url(admin_url.as_str())
                    .await
                    .with_context(|| format!("connecting to MariaDB at {}", redact(&admin_url)))?;
                conn.query_drop(format!(
                    "CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
                ))
                .await?;
                conn.disconnect().await?;
                Ok(BenchDatabase::Mariadb { admin_url, name })
            }
        }
    }

    /// Returns the URL Ally connects to.
    pub fn url(&self) -> String {
        match self {
            BenchDatabase::Sqlite { .. } => format!("sqlite://{}", self.sqlite_path().display()),
            BenchDatabase::Mariadb { admin_url, name } => format!("{admin_url}/{name}"),
        }
    }

    pub fn sqlite_path(&self) -> PathBuf {
        match self {
            BenchDatabase::Sqlite { dir } => dir.path().join("ally.db"),
            BenchDatabase::Mariadb { .. } => PathBuf::new(),
        }
    }

    async fn remove(self) -> anyhow::Result<()> {
        if let BenchDatabase::Mariadb { admin_url, name } = self {
            let mut conn = mysql_async::Conn::from_url(admin_url.as_str()).await?;
            conn.query_drop(format!("DROP DATABASE IF EXISTS `{name}`"))
                .await?;
            conn.disconnect().await?;
        }
        Ok(())
    }
}

/// Replaces the password of a `mysql://user:password@host` URL with `***`.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// Runs every selected scenario on `backend` and returns what was measured.
pub async fn run_backend(backend: Backend, options: &Options) -> anyhow::Result<BackendReport> {
    let database = BenchDatabase::create(backend, options).await?;
    let result = measure_backend(backend, options, &database).await;
    let removed = database.remove().await;
    let report = result?;
    removed.context("dropping the benchmark database")?;
    Ok(report)
}

async fn measure_backend(
    backend: Backend,
    options: &Options,
    database: &BenchDatabase,
) -> anyhow::Result<BackendReport> {
    let work = tempfile::tempdir()?;
    let ally = ChildServer::start_ally(
        &options.ally,
        &database.url(),
        work.path(),
        options.pool_size,
        &options.server_env,
    )?;
    let noop_server = ChildServer::start_noop()?;
    let channels = fixture::connect(ally.address, options.connections).await?;
    let noop_channels = fixture::connect(noop_server.address, options.connections).await?;
    let fixture = Arc::new(fixture::create(&channels[0], options.streams.min(64)).await?);
    progress(&format!("{}: fixture ready", backend.name()));

    let mysql_pool = match backend {
        Backend::Mariadb => Some(raw::mysql_pool(
            &database.url(),
            options.pool_size as usize,
        )?),
        Backend::Sqlite => None,
    };
    let window = options.window();
    let me = std::process::id();

    // Memory first, because memory that other scenarios allocated and freed (argon2 takes
    // 19 MiB per Login) can stay with the process and would count towards its peak.
    let memory = if options.skip_memory {
        None
    } else {
        Some(
            measure_memory(
                options,
                &fixture,
                &ally,
                &noop_server,
                (ally.address, noop_server.address),
            )
            .await?,
        )
    };

    let mut scenarios = Vec::new();
    for scenario in options.selected_scenarios()? {
        let shape = service::shape(scenario, &fixture, &channels[0]).await?;
        // An RPC that Ally serves from memory sends no SQL, so it has no raw baseline.
        let sends_sql = !raw::statements(scenario, backend, &fixture, 0).is_empty();
        let raw_workers = match backend {
            _ if !sends_sql => 0,
            Backend::Sqlite if scenario.writes() => 1,
            _ => options.pool_size as usize,
        };
        let mut runs = ScenarioRuns {
            scenario,
            shape: shape.clone(),
            raw_workers,
            raw: Vec::new(),
            noop: Vec::new(),
            service: Vec::new(),
        };
        for round in 0..options.rounds {
            let raw = match &mysql_pool {
                _ if !sends_sql => None,
                Some(pool) => {
                    let op = raw::mysql_op(scenario, &fixture, pool);
                    Some(load::run_async(raw_workers, window, op, me).await?)
                }
                None => {
                    let path = database.sqlite_path();
                    let fixture = fixture.clone();
                    Some(
                        tokio::task::spawn_blocking(move || {
                            load::run_threads(
                                raw_workers,
                                window,
                                |worker| raw::sqlite_op(scenario, &fixture, &path, worker),
                                me,
                            )
                        })
                        .await??,
                    )
                }
            };
            let workers = scenario.workers(options.streams);
            let noop_op = noop::echo_op(&noop_channels, &shape);
            let noop = load::run_async(workers, window, noop_op, noop_server.pid()).await?;
            let service_op = service::op(scenario, &fixture, &channels);
            let service = load::run_async(workers, window, service_op, ally.pid()).await?;
            let raw_rate = match &raw {
                Some(raw) => format!("{:.0}/s", raw.per_second()),
                None => "none (no SQL)".to_string(),
            };
            progress(&format!(
                "{}: {} round {}: raw {raw_rate}, no-op {:.0}/s, service {:.0}/s",
                backend.name(),
                scenario.name(),
                round + 1,
                noop.per_second(),
                service.per_second()
            ));
            runs.raw.extend(raw);
            runs.noop.push(noop);
            runs.service.push(service);
        }
        scenarios.push(runs);
    }

    let argon2 = if scenarios
        .iter()
        .any(|runs| runs.scenario == Scenario::Login)
    {
        Some(measure_argon2(Scenario::Login.workers(options.streams), window).await?)
    } else {
        None
    };

    let scaling = if options.skip_scaling {
        None
    } else {
        Some(
            scaling::run(
                backend,
                options,
                database,
                &channels,
                mysql_pool.as_ref(),
                ally.pid(),
            )
            .await?,
        )
    };

    let server_peak_resident = crate::proc_stats::peak_resident_bytes(ally.pid())?;
    drop(channels);
    drop(noop_channels);
    if let Some(pool) = mysql_pool {
        pool.disconnect().await?;
    }
    ally.stop().context("stopping ally")?;
    noop_server.stop().context("stopping the no-op server")?;

    Ok(BackendReport {
        backend,
        scenarios,
        argon2,
        token_verify: measure_token_verify()?,
        memory,
        scaling,
        server_peak_resident,
    })
}

/// Runs ListMessages with many requests in flight, spread over new connections of at most 100
/// streams each, then the same on the no-op server.
async fn measure_memory(
    options: &Options,
    fixture: &Arc<Fixture>,
    ally: &ChildServer,
    noop_server: &ChildServer,
    addresses: (std::net::SocketAddr, std::net::SocketAddr),
) -> anyhow::Result<MemoryRun> {
    let scenario = Scenario::ListMessages;
    let streams = options.memory_streams;
    let connections = streams.div_ceil(100).max(1);
    let window = options.window();

    let channels = fixture::connect(addresses.0, connections).await?;
    let service_op = service::op(scenario, fixture, &channels);
    let service = load::run_async(streams, window, service_op, ally.pid()).await?;
    let shape = service::shape(scenario, fixture, &channels[0]).await?;
    drop(channels);

    let noop_channels = fixture::connect(addresses.1, connections).await?;
    let noop_op = noop::echo_op(&noop_channels, &shape);
    let noop = load::run_async(streams, window, noop_op, noop_server.pid()).await?;
    progress(&format!(
        "memory: {streams} streams: service peak {:.1} MiB, no-op peak {:.1} MiB",
        mebibytes(service.peak_resident),
        mebibytes(noop.peak_resident)
    ));
    Ok(MemoryRun {
        streams,
        connections,
        scenario,
        service,
        noop,
    })
}

/// Verifies a password with Ally's own argon2id code on `workers` tasks, which bounds Login's
/// throughput on this machine.
async fn measure_argon2(workers: usize, window: Window) -> anyhow::Result<Measurement> {
    let password = "bench password of the owner";
    let stored = ally::auth::password::hash(SecretString::from(password)).await?;
    let op: AsyncOp = Arc::new(move |_, _| {
        let stored = stored.clone();
        Box::pin(async move {
            match ally::auth::password::verify(SecretString::from(password), Some(stored)).await {
                Ok(true) => Ok(()),
                Ok(false) => Err("argon2 rejected the right password".to_string()),
                Err(error) => Err(error.to_string()),
            }
        })
    });
    load::run_async(workers, window, op, std::process::id()).await
}

/// Time of one access token verification on one thread of this process.
pub struct TokenVerifyCost {
    /// Microseconds for a token seen for the first time, which checks the signature and decodes
    /// the JSON.
    pub new_micros: f64,
    /// Microseconds for a token verified before, found in memory.
    pub known_micros: f64,
}

/// Times the verification of 5,000 distinct tokens, once as new and once as known.
fn measure_token_verify() -> anyhow::Result<TokenVerifyCost> {
    const TOKENS: usize = 5_000;
    let keys = fixture::token_keys()?;
    let tokens = (0..TOKENS)
        .map(|_| {
            keys.issue(
                "0193a0a0-0000-7000-8000-000000000001",
                Some("0193a0a0-0000-7000-8000-000000000002"),
                "owner",
            )
            .map(|(token, _)| token)
            .map_err(|error| anyhow::anyhow!("{error}"))
        })
        .collect::<anyhow::Result<Vec<String>>>()?;
    let time_all = || -> anyhow::Result<f64> {
        let started = Instant::now();
        for token in &tokens {
            keys.verify(token)
                .map_err(|error| anyhow::anyhow!("{error}"))?;
        }
        Ok(started.elapsed().as_secs_f64() * 1e6 / TOKENS as f64)
    };
    let new_micros = time_all()?;
    let known_micros = time_all()?;
    Ok(TokenVerifyCost {
        new_micros,
        known_micros,
    })
}

pub fn mebibytes(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Prints a progress line to standard error.
pub fn progress(line: &str) {
    eprintln!("ally-bench: {line}");
}

/// Returns `path` relative to the current folder when it is inside it, for the report.
pub fn display_path(path: &Path) -> String {
    std::env::current_dir()
        .ok()
        .and_then(|here| path.strip_prefix(here).ok().map(Path::to_path_buf))
        .unwrap_or_else(|| path.to_path_buf())
        .display()
        .to_string()
}
