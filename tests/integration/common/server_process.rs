//! The `ally` binary as a separate server process, for tests that need replicas which share
//! nothing but the database and Redis.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use tonic::transport::Channel;

use super::{TEST_JWT_SECRET, TestDatabase, connect};

/// A running `ally serve` process, killed when dropped.
pub struct ServerProcess {
    child: Child,
    address: SocketAddr,
}

impl ServerProcess {
    /// Starts `ally` on 127.0.0.1 with a free port, the test settings and `database`, adding
    /// the environment variables in `extra`, and waits until it listens.
    pub fn start(database: &TestDatabase, extra: &[(&str, &str)]) -> ServerProcess {
        let mut command = Command::new(env!("CARGO_BIN_EXE_ally"));
        command
            .current_dir(database.dir())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("ENVIRONMENT", "testing")
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "info")
            .env("DATABASE_URL", &database.url)
            .env("ALLY_SERVER__LISTEN_ADDR", "127.0.0.1:0")
            .env("ALLY_SERVER__SHUTDOWN_TIMEOUT", "5s")
            .env("ALLY_DATABASE__MAX_CONNECTIONS", "4")
            .env("ALLY_DATABASE__HEALTH_CHECK_INTERVAL", "200ms")
            .env("ALLY_AUTH__JWT_SECRET", TEST_JWT_SECRET)
            // As in `test_settings`: the limiter stays on, far above what tests send.
            .env("ALLY_RATE_LIMIT__SCALE", "1000")
            .envs(extra.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("start the ally binary");
        let stderr = child.stderr.take().expect("piped stderr");

        // The server logs its real address once it listens. The thread keeps forwarding the
        // log to the test output so the pipe never fills.
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("serving gRPC")
                    && let Some(address) = listen_address(&line)
                {
                    let _ = sender.send(address);
                }
                eprintln!("[ally {}] {line}", std::process::id());
            }
        });
        let address = match receiver.recv_timeout(Duration::from_secs(60)) {
            Ok(address) => address,
            Err(_) => {
                let _ = child.kill();
                let status = child.wait().expect("wait for ally");
                panic!("ally did not start serving within 60 s (exit status {status})");
            }
        };
        ServerProcess { child, address }
    }

    /// Opens a channel to the process.
    pub async fn channel(&self) -> Channel {
        connect(self.address).await
    }

    /// Sends SIGTERM and asserts that the process drains and exits 0.
    pub async fn stop(mut self) {
        let sent = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM failed");
        let mut child = std::mem::replace(
            &mut self.child,
            Command::new("true").spawn().expect("spawn true"),
        );
        let status = tokio::task::spawn_blocking(move || child.wait())
            .await
            .expect("wait thread")
            .expect("wait for ally");
        assert_eq!(status.code(), Some(0), "ally exited with {status}");
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Extracts `address=IP:PORT` from a log line.
fn listen_address(line: &str) -> Option<SocketAddr> {
    line.split_whitespace()
        .find_map(|field| field.strip_prefix("address="))
        .and_then(|address| address.parse().ok())
}
