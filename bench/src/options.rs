//! Command-line settings of a benchmark run.

use std::path::PathBuf;
use std::time::Duration;

use crate::load::Window;
use crate::raw::Backend;
use crate::service::Scenario;

/// Settings of a benchmark run.
#[derive(clap::Args, Clone, Debug)]
pub struct Options {
    /// The `ally` binary to measure.
    #[arg(long, default_value = "target/release/ally")]
    pub ally: PathBuf,
    /// Databases to run on, comma-separated: sqlite, mariadb.
    #[arg(long, value_delimiter = ',', default_value = "sqlite,mariadb")]
    pub backends: Vec<String>,
    /// MariaDB server in which the benchmark creates, and at the end drops, a database of its
    /// own. The user needs the right to create databases.
    #[arg(long, default_value = "mysql://root@127.0.0.1:3306")]
    pub mariadb_url: String,
    /// HTTP/2 connections to each gRPC server.
    #[arg(long, default_value_t = 4)]
    pub connections: usize,
    /// Requests in flight at once, spread over the connections.
    #[arg(long, default_value_t = 32)]
    pub streams: usize,
    /// Ally's `database.max_connections`, which is also the number of raw-driver workers.
    #[arg(long, default_value_t = 10)]
    pub pool_size: u32,
    /// Measured seconds of each run.
    #[arg(long, default_value_t = 5.0)]
    pub seconds: f64,
    /// Warm-up seconds before each measured run.
    #[arg(long, default_value_t = 1.0)]
    pub warmup: f64,
    /// Rounds per scenario. Each round runs the raw-driver, no-op and service measurements back
    /// to back.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Scenarios to run, comma-separated: add-message, list-messages, get-configuration,
    /// get-tenant-key, get-tenant-token, login, create-user. Default: all.
    #[arg(long, value_delimiter = ',')]
    pub scenarios: Vec<String>,
    /// Messages in the paged session, and audit entries, for the scaling runs, comma-separated
    /// in ascending order.
    #[arg(long, value_delimiter = ',', default_value = "10000,1000000")]
    pub sizes: Vec<u64>,
    /// Requests in flight in the memory run.
    #[arg(long, default_value_t = 1000)]
    pub memory_streams: usize,
    /// Skip the scaling runs.
    #[arg(long)]
    pub skip_scaling: bool,
    /// Skip the memory run.
    #[arg(long)]
    pub skip_memory: bool,
    /// Run briefly on small data, as CI does: 0.3 s runs after 0.2 s of warm-up, one round,
    /// scaling sizes of 1,000 and 4,000, and 200 streams in the memory run. Fails unless every
    /// request succeeds.
    #[arg(long)]
    pub smoke: bool,
    /// A server setting as an environment variable, such as `ALLY_CACHE__TTL=60s`. Repeat for
    /// more. Use it to turn off or raise a limiter that would reject the benchmark's load.
    #[arg(long = "server-env", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub server_env: Vec<(String, String)>,
    /// Also record the SQL that Ally sends (on a private MariaDB server and an in-process SQLite
    /// server) and fail when the raw-driver baselines send different statements.
    #[arg(long)]
    pub capture_sql: bool,
}

fn parse_key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(format!("`{text}` is not KEY=VALUE")),
    }
}

impl Options {
    /// Applies `--smoke`.
    pub fn resolve(mut self) -> anyhow::Result<Options> {
        if self.smoke {
            self.seconds = 0.3;
            self.warmup = 0.2;
            self.rounds = 1;
            self.sizes = vec![1_000, 4_000];
            self.memory_streams = 200;
        }
        if self.connections == 0 || self.streams == 0 || self.pool_size == 0 || self.rounds == 0 {
            anyhow::bail!("--connections, --streams, --pool-size and --rounds must be at least 1");
        }
        if !self.sizes.is_sorted() || self.sizes.contains(&0) {
            anyhow::bail!("--sizes must be positive and in ascending order");
        }
        self.backends()?;
        self.selected_scenarios()?;
        Ok(self)
    }

    pub fn window(&self) -> Window {
        Window {
            warmup: Duration::from_secs_f64(self.warmup),
            measure: Duration::from_secs_f64(self.seconds),
        }
    }

    pub fn backends(&self) -> anyhow::Result<Vec<Backend>> {
        self.backends
            .iter()
            .map(|name| match name.as_str() {
                "sqlite" => Ok(Backend::Sqlite),
                "mariadb" | "mysql" => Ok(Backend::Mariadb),
                other => Err(anyhow::anyhow!(
                    "unknown backend `{other}` in --backends; use sqlite or mariadb"
                )),
            })
            .collect()
    }

    pub fn selected_scenarios(&self) -> anyhow::Result<Vec<Scenario>> {
        if self.scenarios.is_empty() {
            return Ok(Scenario::ALL.to_vec());
        }
        self.scenarios
            .iter()
            .map(|key| {
                Scenario::parse(key).ok_or_else(|| {
                    anyhow::anyhow!("unknown scenario `{key}` in --scenarios; see --help")
                })
            })
            .collect()
    }
}
