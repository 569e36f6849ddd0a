//! A MariaDB server of the test's own: its own data folder, port and settings, so a test can
//! require TLS or stop and restart the server without touching the shared one.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::certs::TlsFiles;

/// Password of the `ally` account on private servers.
pub const PASSWORD: &str = "s3cret;pass=word'\"";

/// Returns a data folder initialised once per test process and copied for each server, because
/// `mariadb-install-db` takes seconds.
fn template() -> &'static Path {
    static TEMPLATE: OnceLock<TempDir> = OnceLock::new();
    TEMPLATE
        .get_or_init(|| {
            let dir = tempfile::tempdir().expect("template folder");
            let status = Command::new("mariadb-install-db")
                .arg("--no-defaults")
                .arg(format!("--datadir={}", dir.path().join("data").display()))
                .arg("--auth-root-authentication-method=normal")
                .arg("--skip-test-db")
                .arg("--user=root")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .expect("mariadb-install-db is installed");
            assert!(status.success(), "mariadb-install-db failed");
            dir
        })
        .path()
}

/// TLS settings for a private server.
pub struct ServerTls<'a> {
    pub files: &'a TlsFiles,
    /// Reject connections that do not use TLS.
    pub require: bool,
}

pub struct PrivateMariadb {
    pub port: u16,
    dir: TempDir,
    tls_args: Vec<String>,
    child: Option<Child>,
}

impl PrivateMariadb {
    /// Starts a server and creates database `ally` and account `ally` with [`PASSWORD`].
    pub fn start(tls: Option<ServerTls<'_>>) -> PrivateMariadb {
        let dir = tempfile::tempdir().expect("server folder");
        let status = Command::new("cp")
            .arg("-a")
            .arg(template().join("data"))
            .arg(dir.path())
            .status()
            .expect("copy template data folder");
        assert!(status.success());

        let tls_args = match &tls {
            None => Vec::new(),
            Some(tls) => vec![
                format!("--ssl-ca={}", tls.files.ca.display()),
                format!("--ssl-cert={}", tls.files.server_cert.display()),
                format!("--ssl-key={}", tls.files.server_key.display()),
                format!(
                    "--require-secure-transport={}",
                    if tls.require { "ON" } else { "OFF" }
                ),
            ],
        };
        let mut server = PrivateMariadb {
            port: free_port(),
            dir,
            tls_args,
            child: None,
        };
        server.launch();
        server.admin_sql(&format!(
            "CREATE DATABASE ally CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci; \
             CREATE USER 'ally'@'%' IDENTIFIED BY '{}'; \
             GRANT ALL ON ally.* TO 'ally'@'%';",
            PASSWORD.replace('\'', "''").replace('\\', "\\\\")
        ));
        server
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("mysqld.sock")
    }

    fn launch(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("server.log")).expect("log file");
        let child = Command::new("mariadbd")
            .arg("--no-defaults")
            .arg(format!(
                "--datadir={}",
                self.dir.path().join("data").display()
            ))
            .arg(format!("--port={}", self.port))
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--socket={}", self.socket().display()))
            .arg(format!(
                "--pid-file={}",
                self.dir.path().join("mysqld.pid").display()
            ))
            .arg("--user=root")
            .arg("--skip-name-resolve")
            .arg("--innodb-buffer-pool-size=16M")
            .arg("--innodb-log-file-size=8M")
            .arg("--performance-schema=OFF")
            .args(&self.tls_args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("mariadbd is installed");
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("mariadbd exited early with {status}: {}", self.log());
            }
            let ping = Command::new("mariadb-admin")
                .arg("--no-defaults")
                .arg(format!("--socket={}", self.socket().display()))
                .arg("--user=root")
                .arg("ping")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            if ping.is_ok_and(|s| s.success()) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("mariadbd did not become ready: {}", self.log());
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// Runs SQL as root over the unix socket.
    pub fn admin_sql(&self, sql: &str) {
        let output = Command::new("mariadb")
            .arg("--no-defaults")
            .arg(format!("--socket={}", self.socket().display()))
            .arg("--user=root")
            .arg("-e")
            .arg(sql)
            .output()
            .expect("mariadb client is installed");
        assert!(
            output.status.success(),
            "admin SQL failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Stops the server and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and data folder.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }
}

impl Drop for PrivateMariadb {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Returns a port that was free a moment ago.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("free port")
}
