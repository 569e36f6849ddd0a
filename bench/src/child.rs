//! Servers under test as child processes, so their CPU time and memory are their own.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};

/// Signing secret that the benchmark gives the server, so it can mint its own tokens.
pub const JWT_SECRET: &str = "ally-bench-signing-secret-of-at-least-32-bytes";

/// A server process, killed when dropped.
pub struct ChildServer {
    child: Child,
    name: &'static str,
    pub address: SocketAddr,
}

impl ChildServer {
    /// Starts `command` and waits until a line of its standard error contains the listen address
    /// as `address=IP:PORT`. Later lines at WARN or ERROR level are copied to this process's
    /// standard error; the rest are dropped.
    fn spawn(mut command: Command, name: &'static str) -> anyhow::Result<ChildServer> {
        command.stdout(Stdio::null()).stderr(Stdio::piped());
        let program = command.get_program().to_string_lossy().into_owned();
        let mut child = command
            .spawn()
            .with_context(|| format!("starting {name} ({program}) failed"))?;
        let stderr = child.stderr.take().expect("stderr is piped");
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(address) = listen_address(&line) {
                    let _ = sender.send(address);
                } else if line.contains("WARN") || line.contains("ERROR") {
                    eprintln!("[{name}] {line}");
                }
            }
        });
        match receiver.recv_timeout(Duration::from_secs(120)) {
            Ok(address) => Ok(ChildServer {
                child,
                name,
                address,
            }),
            Err(_) => {
                let _ = child.kill();
                let status = child.wait()?;
                bail!("{name} did not report a listen address within 120 s (exit status {status})")
            }
        }
    }

    /// Starts `binary` (an `ally` build) as `ally serve` on 127.0.0.1 with a free port.
    ///
    /// The server runs in the `testing` environment from `work_dir`, so no `ally.toml` or `.env`
    /// file of the caller applies. `extra_env` comes last and can override any setting, for
    /// example to raise a rate limit.
    pub fn start_ally(
        binary: &Path,
        database_url: &str,
        work_dir: &Path,
        pool_size: u32,
        extra_env: &[(String, String)],
    ) -> anyhow::Result<ChildServer> {
        if !binary.is_file() {
            bail!(
                "{} does not exist; build it with `cargo build --release --bin ally`, or name \
                 another build with --ally",
                binary.display()
            );
        }
        // The server runs in `work_dir`, so a relative path would no longer name the binary.
        let binary = binary
            .canonicalize()
            .with_context(|| format!("resolving {}", binary.display()))?;
        let mut command = Command::new(binary);
        command
            .arg("serve")
            .current_dir(work_dir)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("ENVIRONMENT", "testing")
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "warn,ally::server=info")
            .env("DATABASE_URL", database_url)
            .env("ALLY_SERVER__LISTEN_ADDR", "127.0.0.1:0")
            .env("ALLY_SERVER__DATA_DIR", work_dir)
            .env("ALLY_DATABASE__MAX_CONNECTIONS", pool_size.to_string())
            .env("ALLY_AUTH__JWT_SECRET", JWT_SECRET)
            // The benchmark measures the service, not the plan's rate limit, which would reject
            // most calls of a load test; `--server-env ALLY_RATE_LIMIT__ENABLED=true` turns it on.
            .env("ALLY_RATE_LIMIT__ENABLED", "false")
            .envs(extra_env.iter().map(|(key, value)| (key, value)));
        ChildServer::spawn(command, "ally")
    }

    /// Starts this program's hidden `noop-server` command.
    pub fn start_noop() -> anyhow::Result<ChildServer> {
        let program = std::env::current_exe().context("locating the ally-bench program")?;
        let mut command = Command::new(program);
        command.arg("noop-server");
        ChildServer::spawn(command, "noop server")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits for the process to exit. Fails when it exits with an error.
    pub fn stop(mut self) -> anyhow::Result<()> {
        let sent = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .context("running kill")?;
        if !sent.success() {
            bail!("kill -TERM {} failed", self.child.id());
        }
        let status = self.child.wait()?;
        if !status.success() {
            return Err(anyhow!("{} exited with {status}", self.name));
        }
        Ok(())
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Extracts `address=IP:PORT` from a log line.
fn listen_address(line: &str) -> Option<SocketAddr> {
    line.split_whitespace()
        .find_map(|field| field.strip_prefix("address="))
        .and_then(|address| address.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_from_log_line() {
        let line = "2026-12-04T20:00:00Z  INFO ally::server: serving gRPC address=127.0.0.1:40123";

        assert_eq!(
            listen_address(line),
            Some("127.0.0.1:40123".parse().unwrap())
        );
        assert_eq!(listen_address("address=not-an-address"), None);
    }
}
